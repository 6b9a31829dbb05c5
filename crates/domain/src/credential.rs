//! The stored credential of one user, and the rules for merging new grants into it.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::identity::{Profile, Scopes, Subject};
use crate::secret::{AccessToken, RefreshToken};

/// Whether the user's grant still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    /// The refresh token is believed to work.
    Active,
    /// Google answered `invalid_grant`: the user revoked access (or the token expired). The app must ask again
    /// with forced consent; an access token from a later sign-in is still used until it expires.
    Revoked,
    /// The storage encoding of a **pending revocation**: the user asked to be forgotten but Google could not
    /// confirm the revocation yet. Such a record keeps only the refresh token (to revoke it later); the domain's
    /// update primitive reads it as a pending revocation, never as a credential, and a new sign-in replaces it
    /// in one conditional write (cancelling the revocation).
    Forgotten,
}

impl ConsentState {
    /// `"active"`, `"revoked"` or `"forgotten"`, as stored and as the API shows it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Forgotten => "forgotten",
        }
    }

    /// Parses the stored form.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            "forgotten" => Some(Self::Forgotten),
            _ => None,
        }
    }
}

/// Google disabled the account (RISC `account-disabled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDisabled {
    /// Google's reason (`hijacking`, `bulk-account`), when given.
    pub reason: Option<String>,
    /// When the event arrived.
    pub since: OffsetDateTime,
}

/// A cached access token, when it expires, and the scopes it carries.
#[derive(Debug, Clone)]
pub struct CachedAccess {
    /// The token.
    pub token: AccessToken,
    /// When Google says it stops working.
    pub expires_at: OffsetDateTime,
    /// The scopes this access token carries (may be fewer than the grant's: a sign-in that asked for fewer).
    pub scopes: Scopes,
}

impl CachedAccess {
    /// Whether the token stays valid for at least `margin` after `now`.
    #[must_use]
    pub fn is_fresh(&self, now: OffsetDateTime, margin: Duration) -> bool {
        self.expires_at - now >= margin
    }
}

/// Everything stored for one user. Tokens are held in memory as secrets; stores encrypt them at rest.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Google's stable account id.
    pub subject: Subject,
    /// Profile from the last verified ID token.
    pub profile: Profile,
    /// The scopes of the grant: what the stored refresh token can obtain. Only a refresh (Google reporting the
    /// grant) or a new grant replaces them; a sign-in without a new refresh token can only widen them
    /// (incremental authorization), never narrow them.
    pub scopes: Scopes,
    /// The long-lived refresh token, if Google ever returned one. Never replaced by absence.
    pub refresh_token: Option<RefreshToken>,
    /// The last access token, its expiry and its own scopes.
    pub access: Option<CachedAccess>,
    /// Whether the grant still stands.
    pub consent: ConsentState,
    /// Set while Google has disabled the account (RISC `account-disabled`): no token is handed out and Google is
    /// not called until it is lifted (`account-enabled`, or a new sign-in). The consent is kept as it was.
    pub disabled: Option<AccountDisabled>,
    /// Since when refreshes have kept failing with Google unavailable (`grant.refresh_failing` was reported); cleared
    /// by the next refresh that works (`grant.recovered`).
    pub refresh_failing_since: Option<OffsetDateTime>,
    /// Optimistic-concurrency version: 0 before the first store, then set by the store on each write (never
    /// repeating for a subject, also across deletes).
    pub version: u64,
    /// When the credential was first stored.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// What a code exchange (or a refresh) gave us, already verified.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Profile from the verified ID token (`None` without one, or when it could not be verified on a refresh).
    pub profile: Option<Profile>,
    /// Scopes Google reported (`None` when the response omitted `scope`).
    pub scopes: Option<Scopes>,
    /// The refresh token, when Google returned one (first consent, forced consent, or rotation).
    pub refresh_token: Option<RefreshToken>,
    /// The new access token (its scopes: those reported, else the grant's as far as known).
    pub access: CachedAccess,
}

impl Credential {
    /// Whether this credential can reach Google with no user present.
    #[must_use]
    pub fn offline_access(&self) -> bool {
        self.refresh_token.is_some() && self.consent == ConsentState::Active
    }

    /// A new credential from a first grant (or one replacing a pending revocation, see
    /// [`Credential::cancelling`]).
    #[must_use]
    pub fn first(subject: Subject, grant: Grant, now: OffsetDateTime) -> Credential {
        Credential {
            consent: ConsentState::Active,
            disabled: None,
            refresh_failing_since: None,
            subject,
            profile: grant.profile.unwrap_or_default(),
            scopes: grant.scopes.unwrap_or_else(|| grant.access.scopes.clone()),
            refresh_token: grant.refresh_token,
            access: Some(grant.access),
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// A sign-in that finds a pending revocation: the user's latest intent wins and the revocation is cancelled.
    /// The old refresh token still works at Google (it was never revoked), so it is kept unless the grant brings a
    /// new one. The result takes the pending record's version (one conditional write replaces it).
    #[must_use]
    pub fn cancelling(pending: Credential, grant: Grant, now: OffsetDateTime) -> Credential {
        let kept = pending.refresh_token;
        let mut credential = Credential::first(pending.subject, grant, now);
        if credential.refresh_token.is_none() {
            credential.refresh_token = kept;
        }
        credential.version = pending.version;
        credential
    }

    /// Merges a sign-in's verified grant into the stored credential (or starts one), applying the rules:
    /// - **a stored refresh token is never replaced by absence; a returned one replaces it** and makes the consent
    ///   active again;
    /// - the grant's scopes are only widened by a sign-in (incremental authorization); a new refresh token after a
    ///   revocation starts a new grant with the reported scopes.
    #[must_use]
    pub fn merge(
        existing: Option<Credential>,
        subject: Subject,
        grant: Grant,
        now: OffsetDateTime,
    ) -> Credential {
        match existing {
            None => Credential::first(subject, grant, now),
            Some(pending) if pending.is_forgotten() => Credential::cancelling(pending, grant, now),
            Some(mut cred) => {
                cred.apply_sign_in(grant, now);
                cred
            }
        }
    }

    /// Applies a sign-in's grant in place (see [`Credential::merge`] for the rules).
    pub fn apply_sign_in(&mut self, grant: Grant, now: OffsetDateTime) {
        let reported = grant.scopes.unwrap_or_else(|| grant.access.scopes.clone());
        let new_grant = grant.refresh_token.is_some() && self.consent == ConsentState::Revoked;
        self.scopes = if new_grant {
            reported
        } else {
            self.scopes.union(&reported)
        };
        if let Some(profile) = grant.profile {
            self.profile = profile;
        }
        if let Some(refresh) = grant.refresh_token {
            self.refresh_token = Some(refresh);
            self.consent = ConsentState::Active;
        }
        // Google just authenticated the user: the account works again.
        self.disabled = None;
        self.access = Some(grant.access);
        self.updated_at = now;
    }

    /// Applies a refresh's answer in place: Google reports the grant's scopes on a refresh, so they replace the
    /// stored ones when sent; a rotated refresh token replaces the stored one.
    pub fn apply_refresh(&mut self, grant: Grant, now: OffsetDateTime) {
        if let Some(scopes) = grant.scopes {
            self.scopes = scopes;
        }
        if let Some(profile) = grant.profile {
            self.profile = profile;
        }
        if let Some(refresh) = grant.refresh_token {
            self.refresh_token = Some(refresh);
        }
        self.access = Some(grant.access);
        self.refresh_failing_since = None;
        self.updated_at = now;
    }

    /// The consent as the API and operator commands show it: `disabled` while Google has disabled the account,
    /// else [`ConsentState::as_str`].
    #[must_use]
    pub fn shown_consent(&self) -> &'static str {
        if self.disabled.is_some() {
            "disabled"
        } else {
            self.consent.as_str()
        }
    }

    /// Whether this record is a pending revocation (see [`ConsentState::Forgotten`]).
    #[must_use]
    pub fn is_forgotten(&self) -> bool {
        self.consent == ConsentState::Forgotten
    }

    /// Turns the credential into a pending revocation: unusable at once, keeping only the refresh token (to
    /// revoke it later) and dropping the access token, profile and scopes.
    pub fn mark_forgotten(&mut self, now: OffsetDateTime) {
        self.consent = ConsentState::Forgotten;
        self.access = None;
        self.profile = Profile::default();
        self.scopes = Scopes::default();
        self.updated_at = now;
    }

    /// Marks the grant revoked and drops the cached access token (it cannot be trusted either).
    pub fn mark_revoked(&mut self, now: OffsetDateTime) {
        self.consent = ConsentState::Revoked;
        self.access = None;
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

    fn grant(refresh: Option<&str>, access: &str) -> Grant {
        Grant {
            profile: None,
            scopes: None,
            refresh_token: refresh.map(|r| RefreshToken::parse(r).unwrap()),
            access: CachedAccess {
                token: AccessToken::parse(access).unwrap(),
                expires_at: NOW + Duration::hours(1),
                scopes: Scopes::default(),
            },
        }
    }

    fn sub() -> Subject {
        Subject::parse("1234567890").unwrap()
    }

    #[test]
    fn a_second_sign_in_without_a_refresh_token_keeps_the_stored_one() {
        let first = Credential::merge(None, sub(), grant(Some("1//first"), "ya29.a"), NOW);
        let second = Credential::merge(Some(first), sub(), grant(None, "ya29.b"), NOW);
        assert_eq!(second.refresh_token.unwrap().expose_secret(), "1//first");
        assert_eq!(second.access.unwrap().token.expose_secret(), "ya29.b");
    }

    #[test]
    fn a_returned_refresh_token_replaces_the_stored_one_and_reactivates_consent() {
        let mut cred = Credential::merge(None, sub(), grant(Some("1//old"), "ya29.a"), NOW);
        cred.mark_revoked(NOW);
        assert!(!cred.offline_access());
        assert!(cred.access.is_none());
        cred.apply_sign_in(grant(Some("1//new"), "ya29.b"), NOW);
        assert_eq!(cred.consent, ConsentState::Active);
        assert_eq!(
            cred.refresh_token.as_ref().unwrap().expose_secret(),
            "1//new"
        );
        assert!(cred.offline_access());
    }

    #[test]
    fn a_forgotten_credential_keeps_only_the_refresh_token_and_a_new_sign_in_reactivates_it() {
        let mut cred = Credential::merge(None, sub(), grant(Some("1//old"), "ya29.a"), NOW);
        cred.mark_forgotten(NOW);
        assert!(cred.is_forgotten());
        assert!(!cred.offline_access());
        assert!(cred.access.is_none());
        assert_eq!(cred.profile, Profile::default());
        assert_eq!(
            ConsentState::parse(cred.consent.as_str()),
            Some(ConsentState::Forgotten)
        );
        let again = Credential::merge(Some(cred), sub(), grant(None, "ya29.b"), NOW);
        assert_eq!(again.consent, ConsentState::Active);
        assert_eq!(again.refresh_token.unwrap().expose_secret(), "1//old");
    }

    #[test]
    fn freshness_honours_the_margin() {
        let access = CachedAccess {
            token: AccessToken::parse("ya29.x").unwrap(),
            expires_at: NOW + Duration::seconds(60),
            scopes: Scopes::default(),
        };
        assert!(access.is_fresh(NOW, Duration::seconds(60)));
        assert!(!access.is_fresh(NOW + Duration::seconds(1), Duration::seconds(60)));
    }

    proptest! {
        /// The refresh-token rule over any sequence of grants: the stored token is the last one returned,
        /// and once one was returned there is always one.
        #[test]
        fn the_stored_refresh_token_is_always_the_last_one_returned(
            returned in proptest::collection::vec(proptest::option::of("1//[a-z0-9]{1,12}"), 1..20),
            revoke_at in proptest::option::of(0usize..20),
        ) {
            let mut cred: Option<Credential> = None;
            let mut last: Option<String> = None;
            for (i, r) in returned.iter().enumerate() {
                let mut next = Credential::merge(cred.take(), sub(), grant(r.as_deref(), "ya29.t"), NOW);
                if r.is_some() { last.clone_from(r); }
                if revoke_at == Some(i) { next.mark_revoked(NOW); }
                prop_assert_eq!(next.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()), last.clone());
                cred = Some(next);
            }
        }
    }
}
