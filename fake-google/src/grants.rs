//! Google's scope model: per user and client, one grant whose scope set only grows (the union of
//! everything the user consented to for that client) until a revocation empties it.
//!
//! Scopes join the grant when a code is *exchanged* (not when it is minted), like the grant's
//! refresh-token state: a code that is never exchanged changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{ControlError, GrantInfo};

/// `email`, expanded.
pub(crate) const SCOPE_EMAIL: &str = "https://www.googleapis.com/auth/userinfo.email";
/// `profile`, expanded.
pub(crate) const SCOPE_PROFILE: &str = "https://www.googleapis.com/auth/userinfo.profile";
/// Drive's application data folder.
pub(crate) const SCOPE_APPDATA: &str = "https://www.googleapis.com/auth/drive.appdata";
/// Full Drive access (also allows the appDataFolder).
const SCOPE_DRIVE: &str = "https://www.googleapis.com/auth/drive";

/// The sign-in scopes, which granular consent cannot untick.
pub(crate) const SIGN_IN_SCOPES: [&str; 3] = ["openid", SCOPE_EMAIL, SCOPE_PROFILE];

/// Expands `email`/`profile` to their URLs, checks, and removes duplicates (keeping order).
pub(crate) fn expand_scopes(scopes: &[String]) -> Result<Vec<String>, ControlError> {
    if scopes.is_empty() {
        return Err(ControlError("scopes must not be empty".to_owned()));
    }
    expand_list(scopes, "scope")
}

/// [`expand_scopes`] without the non-empty rule; `what` names the list in errors.
pub(crate) fn expand_list(scopes: &[String], what: &str) -> Result<Vec<String>, ControlError> {
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for s in scopes {
        if s.is_empty() || s.len() > 512 || s.chars().any(char::is_whitespace) {
            return Err(ControlError(format!("{what} {s:?} is not a valid scope")));
        }
        let full = match s.as_str() {
            "email" => SCOPE_EMAIL,
            "profile" => SCOPE_PROFILE,
            other => other,
        };
        if !out.iter().any(|o| o == full) {
            out.push(full.to_owned());
        }
    }
    Ok(out)
}

/// Granular consent: of the `requested` (expanded) scopes, those the user left ticked. `granted`
/// must be a subset of `requested` (after expansion); sign-in scopes are always kept. `None`
/// grants everything requested. Nothing granted is refused: Google answers `access_denied`
/// instead of a code then.
pub(crate) fn consented_scopes(
    requested: Vec<String>,
    granted: Option<&[String]>,
) -> Result<Vec<String>, ControlError> {
    let Some(granted) = granted else {
        return Ok(requested);
    };
    let granted = expand_list(granted, "granted scope")?;
    if let Some(extra) = granted.iter().find(|g| !requested.contains(g)) {
        return Err(ControlError(format!(
            "granted_scopes must be a subset of the requested scopes: {extra:?} was not requested"
        )));
    }
    let kept: Vec<String> = requested
        .into_iter()
        .filter(|s| SIGN_IN_SCOPES.contains(&s.as_str()) || granted.contains(s))
        .collect();
    if kept.is_empty() {
        return Err(ControlError(
            "granted_scopes leaves no scope granted (Google answers access_denied, not a code)"
                .to_owned(),
        ));
    }
    Ok(kept)
}

/// Whether a scope set allows Drive's appDataFolder.
pub(crate) fn has_appdata(scopes: &[String]) -> bool {
    scopes
        .iter()
        .any(|s| s == SCOPE_APPDATA || s == SCOPE_DRIVE)
}

/// `base` with the scopes of `more` it lacks appended (order kept: first grant first).
fn union(base: &[String], more: &[String]) -> Vec<String> {
    let mut out = base.to_vec();
    for s in more {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// One user's consent to one client.
#[derive(Clone, Debug, Default)]
struct Grant {
    /// Bumped on revocation: tokens of older generations are dead.
    generation: u64,
    /// Whether a refresh token of this generation was handed out.
    has_refresh: bool,
    /// Every scope granted since the last revocation, in first-granted order.
    scopes: Arc<[String]>,
}

impl Grant {
    fn revoke(&mut self) {
        self.generation += 1;
        self.has_refresh = false;
        self.scopes = Arc::from([]);
    }
}

/// What an authorization-code exchange gets from the grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Consent {
    /// The grant's generation the new tokens belong to.
    pub(crate) generation: u64,
    /// Whether to hand out a refresh token (first consent, after a revoke, or `prompt=consent`).
    pub(crate) issue_refresh: bool,
    /// The token response's `scope` and the access token's scopes.
    pub(crate) scopes: Arc<[String]>,
}

/// What a code carries into its exchange.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CodeConsent<'a> {
    /// The scopes the user granted on the consent screen.
    pub(crate) scopes: &'a Arc<[String]>,
    /// Answer the grant's earlier scopes too.
    pub(crate) include_granted_scopes: bool,
    /// `prompt=consent`: a refresh token even when one was already handed out.
    pub(crate) force_consent: bool,
    /// `access_type=offline`: a refresh token may be handed out (never with `online`, which
    /// leaves the grant without one, so a later offline code still gets it).
    pub(crate) offline: bool,
}

/// One user's grants, by client ID.
#[derive(Debug, Default)]
pub(crate) struct Grants(HashMap<String, Grant>);

impl Grants {
    /// An exchanged code: its scopes join the client's grant.
    pub(crate) fn consent(&mut self, client_id: &str, code: CodeConsent<'_>) -> Consent {
        let grant = self.0.entry(client_id.to_owned()).or_default();
        let issue_refresh = code.offline && (!grant.has_refresh || code.force_consent);
        grant.has_refresh |= code.offline;
        if code.scopes.iter().any(|s| !grant.scopes.contains(s)) {
            grant.scopes = union(&grant.scopes, code.scopes).into();
        }
        let scopes = if code.include_granted_scopes {
            Arc::clone(&grant.scopes)
        } else {
            Arc::clone(code.scopes)
        };
        Consent {
            generation: grant.generation,
            issue_refresh,
            scopes,
        }
    }

    /// Whether tokens of `generation` for `client_id` are alive.
    pub(crate) fn alive(&self, client_id: &str, generation: u64) -> bool {
        self.0
            .get(client_id)
            .is_some_and(|g| g.generation == generation)
    }

    /// The grant's current scope set, if tokens of `generation` are alive (what a refresh answers).
    pub(crate) fn current_scopes(&self, client_id: &str, generation: u64) -> Option<Arc<[String]>> {
        self.0
            .get(client_id)
            .filter(|g| g.generation == generation)
            .map(|g| Arc::clone(&g.scopes))
    }

    /// Revokes the client's grant if tokens of `generation` are alive; returns whether it did.
    pub(crate) fn revoke(&mut self, client_id: &str, generation: u64) -> bool {
        match self.0.get_mut(client_id) {
            Some(g) if g.generation == generation => {
                g.revoke();
                true
            }
            _ => false,
        }
    }

    /// Revokes every grant (the user removes every app's access).
    pub(crate) fn revoke_all(&mut self) {
        self.0.values_mut().for_each(Grant::revoke);
    }

    /// Every client the user ever granted, by client ID; revoked ones with no scopes.
    pub(crate) fn infos(&self) -> Vec<GrantInfo> {
        let mut out: Vec<GrantInfo> = self
            .0
            .iter()
            .map(|(client_id, g)| GrantInfo {
                client_id: client_id.clone(),
                scopes: g.scopes.to_vec(),
                has_refresh_token: g.has_refresh,
            })
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    fn arc(scopes: &[&str]) -> Arc<[String]> {
        v(scopes).into()
    }

    fn code(scopes: &Arc<[String]>, include: bool) -> CodeConsent<'_> {
        CodeConsent {
            scopes,
            include_granted_scopes: include,
            force_consent: false,
            offline: true,
        }
    }

    #[test]
    fn email_and_profile_scopes_are_expanded_once() {
        let s = expand_scopes(&["openid".into(), "email".into(), SCOPE_EMAIL.into()]).unwrap();
        assert_eq!(s, vec!["openid".to_owned(), SCOPE_EMAIL.to_owned()]);
        assert!(expand_scopes(&[]).is_err());
        assert!(expand_scopes(&["a b".into()]).is_err());
    }

    #[test]
    fn the_scope_set_grows_with_each_exchange_and_include_granted_scopes_answers_it() {
        let mut grants = Grants::default();
        let first = arc(&["openid", SCOPE_APPDATA]);
        let c1 = grants.consent("c", code(&first, false));
        assert_eq!(&*c1.scopes, &*first);
        assert!(c1.issue_refresh);
        let second = arc(&["openid", SCOPE_EMAIL]);
        let c2 = grants.consent("c", code(&second, false));
        assert_eq!(
            &*c2.scopes, &*second,
            "without include: only the code's scopes"
        );
        assert!(!c2.issue_refresh);
        let third = arc(&["x"]);
        let c3 = grants.consent("c", code(&third, true));
        assert_eq!(
            &*c3.scopes,
            &v(&["openid", SCOPE_APPDATA, SCOPE_EMAIL, "x"])[..]
        );
        assert_eq!(
            grants.current_scopes("c", c3.generation).as_deref(),
            Some(&v(&["openid", SCOPE_APPDATA, SCOPE_EMAIL, "x"])[..])
        );
        // Another client's grant is separate.
        assert_eq!(grants.current_scopes("other", 0), None);
        let c4 = grants.consent("other", code(&third, true));
        assert_eq!(&*c4.scopes, &v(&["x"])[..]);
        assert!(c4.issue_refresh);
    }

    #[test]
    fn prompt_consent_issues_another_refresh_token() {
        let mut grants = Grants::default();
        let s = arc(&["openid"]);
        assert!(grants.consent("c", code(&s, false)).issue_refresh);
        let forced = CodeConsent {
            force_consent: true,
            ..code(&s, false)
        };
        assert!(grants.consent("c", forced).issue_refresh);
        assert!(!grants.consent("c", code(&s, false)).issue_refresh);
    }

    #[test]
    fn online_codes_get_no_refresh_token_and_leave_it_for_a_later_offline_one() {
        let mut grants = Grants::default();
        let s = arc(&["openid"]);
        let online = CodeConsent {
            offline: false,
            ..code(&s, false)
        };
        assert!(!grants.consent("c", online).issue_refresh);
        assert!(!grants.consent("c", online).issue_refresh);
        assert_eq!(grants.infos()[0].scopes, v(&["openid"]));
        assert!(!grants.infos()[0].has_refresh_token);
        assert!(grants.consent("c", code(&s, false)).issue_refresh);
        assert!(!grants.consent("c", online).issue_refresh);
        assert!(grants.infos()[0].has_refresh_token);
    }

    #[test]
    fn a_revocation_empties_the_set_kills_the_generation_and_reoffers_a_refresh_token() {
        let mut grants = Grants::default();
        let s = arc(&["openid", SCOPE_APPDATA]);
        let g0 = grants.consent("c", code(&s, false)).generation;
        assert!(grants.alive("c", g0));
        assert!(
            !grants.revoke("c", g0 + 1),
            "a stale generation revokes nothing"
        );
        assert!(grants.revoke("c", g0));
        assert!(!grants.alive("c", g0));
        assert!(!grants.revoke("c", g0), "already revoked");
        assert_eq!(grants.current_scopes("c", g0), None);
        assert_eq!(
            grants.infos(),
            vec![GrantInfo {
                client_id: "c".into(),
                scopes: vec![],
                has_refresh_token: false,
            }]
        );
        let narrow = arc(&["openid"]);
        let again = grants.consent("c", code(&narrow, true));
        assert_eq!(again.generation, g0 + 1);
        assert!(again.issue_refresh);
        assert_eq!(
            &*again.scopes, &*narrow,
            "nothing from before the revocation"
        );
    }

    #[test]
    fn revoke_all_revokes_every_client() {
        let mut grants = Grants::default();
        let s = arc(&["openid"]);
        let a = grants.consent("a", code(&s, false)).generation;
        let b = grants.consent("b", code(&s, false)).generation;
        grants.revoke_all();
        assert!(!grants.alive("a", a));
        assert!(!grants.alive("b", b));
        assert!(grants.infos().iter().all(|i| i.scopes.is_empty()));
        assert_eq!(grants.infos().len(), 2);
        assert_eq!(grants.infos()[0].client_id, "a");
    }

    #[test]
    fn granular_consent_keeps_sign_in_scopes_and_the_ticked_ones() {
        let requested = v(&["openid", SCOPE_EMAIL, SCOPE_PROFILE, SCOPE_APPDATA, "y"]);
        assert_eq!(
            consented_scopes(requested.clone(), None).unwrap(),
            requested
        );
        assert_eq!(
            consented_scopes(requested.clone(), Some(&v(&["y"]))).unwrap(),
            v(&["openid", SCOPE_EMAIL, SCOPE_PROFILE, "y"])
        );
        assert_eq!(
            consented_scopes(requested.clone(), Some(&[])).unwrap(),
            v(&["openid", SCOPE_EMAIL, SCOPE_PROFILE])
        );
        // Short names are expanded before the subset check.
        assert_eq!(
            consented_scopes(requested.clone(), Some(&v(&["email", SCOPE_APPDATA]))).unwrap(),
            v(&["openid", SCOPE_EMAIL, SCOPE_PROFILE, SCOPE_APPDATA])
        );
    }

    #[test]
    fn granular_consent_refuses_unrequested_invalid_or_empty_grants() {
        let requested = v(&["openid", SCOPE_APPDATA]);
        let e = consented_scopes(requested.clone(), Some(&v(&["z"]))).unwrap_err();
        assert!(e.0.contains("subset") && e.0.contains("\"z\""), "{e}");
        assert!(consented_scopes(requested, Some(&v(&["a b"]))).is_err());
        let e = consented_scopes(v(&[SCOPE_APPDATA]), Some(&[])).unwrap_err();
        assert!(e.0.contains("no scope"), "{e}");
    }

    #[test]
    fn appdata_is_allowed_by_drive_appdata_or_full_drive() {
        assert!(has_appdata(&v(&[SCOPE_APPDATA])));
        assert!(has_appdata(&v(&[SCOPE_DRIVE])));
        assert!(!has_appdata(&v(&["openid", SCOPE_EMAIL])));
    }
}
