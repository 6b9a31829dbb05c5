//! The fake's known accounts: added by the control API or a `--config` file, listed by the
//! browser flow's account chooser.

use crate::model::{ControlError, UserSpec};
use crate::state::{Inner, Profile, profile_of, sub_for};

/// Whether `s` is shaped like an e-mail address: at most 254 characters, no whitespace or
/// control character, one `@` between non-empty parts.
pub(crate) fn is_email(s: &str) -> bool {
    s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && s.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
}

/// A known account.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub(crate) sub: String,
    pub(crate) profile: Profile,
}

impl Inner {
    /// Every known account with an e-mail, by e-mail (then sub).
    pub(crate) fn accounts(&self) -> Vec<Account> {
        let mut out: Vec<Account> = Vec::new();
        for shard in &self.users.shards {
            let users = shard.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(
                users
                    .iter()
                    .filter(|(_, u)| !u.profile.email.is_empty())
                    .map(|(sub, u)| Account {
                        sub: sub.clone(),
                        profile: u.profile.clone(),
                    }),
            );
        }
        out.sort_by(|a, b| {
            a.profile
                .email
                .to_ascii_lowercase()
                .cmp(&b.profile.email.to_ascii_lowercase())
                .then_with(|| a.sub.cmp(&b.sub))
        });
        out
    }

    /// The known account with this e-mail (case-insensitive), if any.
    pub(crate) fn account_by_email(&self, email: &str) -> Option<Account> {
        self.accounts()
            .into_iter()
            .find(|a| a.profile.email.eq_ignore_ascii_case(email))
    }

    /// The known account with this sub, if any.
    pub(crate) fn account_by_sub(&self, sub: &str) -> Option<Account> {
        self.users
            .shard(sub)
            .get(sub)
            .filter(|u| !u.profile.email.is_empty())
            .map(|u| Account {
                sub: sub.to_owned(),
                profile: u.profile.clone(),
            })
    }

    /// Adds (or updates) a user; an e-mail already taken by another sub is refused. Returns the sub.
    pub(crate) fn add_user(&self, spec: &UserSpec) -> Result<String, ControlError> {
        let profile = profile_of(
            &spec.email,
            spec.name.as_deref(),
            spec.given_name.as_deref(),
            spec.family_name.as_deref(),
            spec.picture.as_deref(),
            spec.locale.as_deref(),
            spec.email_verified,
            spec.hd.as_deref(),
        )?;
        let sub = sub_for(spec.sub.as_deref(), &spec.email)?;
        if let Some(other) = self.account_by_email(&spec.email)
            && other.sub != sub
        {
            return Err(ControlError(format!(
                "email {:?} already belongs to the user with sub {:?}",
                spec.email, other.sub
            )));
        }
        self.upsert_profile(&sub, profile);
        Ok(sub)
    }
}

#[cfg(test)]
mod tests {
    use crate::keys::KeyStore;
    use crate::model::{OAuthClient, UserSpec};
    use crate::state::Inner;

    fn inner() -> Inner {
        Inner::new(
            OAuthClient {
                client_id: "c".into(),
                client_secret: "s".into(),
            },
            KeyStore::new().unwrap(),
        )
    }

    #[test]
    fn users_are_listed_by_email_and_found_by_email_or_sub() {
        let inner = inner();
        let b = inner.add_user(&UserSpec::new("bob@example.com")).unwrap();
        let a = inner
            .add_user(&UserSpec {
                sub: Some("alice-1".into()),
                name: Some("Alice A".into()),
                ..UserSpec::new("Alice@example.com")
            })
            .unwrap();
        assert_eq!(a, "alice-1");
        let listed: Vec<String> = inner.accounts().into_iter().map(|a| a.sub).collect();
        assert_eq!(listed, vec![a.clone(), b.clone()]);
        assert_eq!(inner.account_by_email("alice@EXAMPLE.com").unwrap().sub, a);
        assert_eq!(
            inner.account_by_sub(&b).unwrap().profile.email,
            "bob@example.com"
        );
        assert!(inner.account_by_sub("nobody").is_none());
        // Same sub: an update; another sub with a taken e-mail: refused.
        inner
            .add_user(&UserSpec {
                sub: Some("alice-1".into()),
                name: Some("Alice B".into()),
                ..UserSpec::new("alice@example.com")
            })
            .unwrap();
        assert_eq!(
            inner
                .account_by_sub("alice-1")
                .unwrap()
                .profile
                .name
                .as_deref(),
            Some("Alice B")
        );
        let e = inner
            .add_user(&UserSpec {
                sub: Some("other".into()),
                ..UserSpec::new("alice@example.com")
            })
            .unwrap_err();
        assert!(e.0.contains("already belongs"), "{e}");
        assert!(inner.add_user(&UserSpec::new("not-an-email")).is_err());
    }
}
