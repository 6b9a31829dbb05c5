//! Recently read or written credentials, kept in memory for a short time so that a burst of Drive calls for one
//! user reads the store once, not once per call.
//!
//! What is kept is only what a Drive call needs: the consent state, the grant's scopes, and the
//! cached access token (never the refresh token or the profile). Every entry carries the instant the store state
//! it reflects was known (`as_of`): a read is stamped when it started, a write when it started (so both err on the
//! old side), and an invalidation — a forget, a revocation — when it finished. An entry never replaces one with a
//! later `as_of`, so a read that began before a forget can never bring the forgotten user back. Entries are trusted
//! for `ttl`, then the store is read again: another instance's forget or revocation is seen within `ttl` (Google
//! itself refuses the tokens at once when its revocation succeeded).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::credential::{CachedAccess, ConsentState, Credential};
use crate::identity::{Scopes, Subject};

/// What a Drive call needs of a stored credential.
#[derive(Debug, Clone)]
pub(crate) struct Usable {
    /// The consent state (never `Forgotten`: a forgotten credential is kept as absent).
    pub(crate) consent: ConsentState,
    /// The grant's scopes.
    pub(crate) scopes: Scopes,
    /// The cached access token, if any.
    pub(crate) access: Option<CachedAccess>,
    /// Whether Google disabled the account (no token is handed out).
    pub(crate) disabled: bool,
}

impl Usable {
    /// The summary of a stored credential; `None` for a forgotten one (absent to every use case).
    pub(crate) fn of(credential: &Credential) -> Option<Self> {
        (!credential.is_forgotten()).then(|| Self {
            consent: credential.consent,
            scopes: credential.scopes.clone(),
            access: credential.access.clone(),
            disabled: credential.disabled.is_some(),
        })
    }
}

#[derive(Debug)]
enum Entry {
    /// The credential as of `as_of`.
    Known { usable: Usable, as_of: Instant },
    /// Absent (deleted, forgotten) as of `as_of`: never answers a lookup; only blocks older entries.
    Gone { as_of: Instant },
}

impl Entry {
    fn as_of(&self) -> Instant {
        match self {
            Entry::Known { as_of, .. } | Entry::Gone { as_of } => *as_of,
        }
    }
}

/// The cache. A `ttl` of zero turns it off (every lookup misses, nothing is kept).
#[derive(Debug)]
pub(crate) struct RecentCredentials {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<Subject, Entry>>,
}

impl RecentCredentials {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The instant to stamp a read or write that starts now.
    pub(crate) fn now() -> Instant {
        Instant::now()
    }

    /// The user's credential, if known within the last `ttl`.
    pub(crate) fn get(&self, subject: &Subject) -> Option<Usable> {
        if !self.enabled() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(subject) {
            Some(Entry::Known { usable, as_of }) if as_of.elapsed() < self.ttl => {
                Some(usable.clone())
            }
            _ => None,
        }
    }

    /// Records the store state read or written at `as_of` (`None`: absent or forgotten), unless something newer
    /// is already known.
    pub(crate) fn record(&self, subject: &Subject, usable: Option<Usable>, as_of: Instant) {
        let entry = match usable {
            Some(usable) => Entry::Known { usable, as_of },
            None => Entry::Gone { as_of },
        };
        self.put(subject, entry);
    }

    /// Records that the user's credential changed in a way no earlier read may undo (a forget, a revocation):
    /// stamped now, after the change reached the store.
    pub(crate) fn invalidate(&self, subject: &Subject, usable: Option<Usable>) {
        self.record(subject, usable, Instant::now());
    }

    fn put(&self, subject: &Subject, entry: Entry) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries
            .get(subject)
            .is_some_and(|old| old.as_of() > entry.as_of())
        {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(subject) {
            // Entries older than the ttl answer nothing and block nothing a lookup could still see.
            let ttl = self.ttl;
            entries.retain(|_, e| e.as_of().elapsed() < ttl);
            if entries.len() >= self.capacity && matches!(entry, Entry::Known { .. }) {
                // Full of live entries: this one is simply not kept (a later call reads the store).
                return;
            }
        }
        entries.insert(subject.clone(), entry);
    }

    /// How many entries are held (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::AccessToken;
    use time::OffsetDateTime;

    fn subject(s: &str) -> Subject {
        Subject::parse(s).unwrap()
    }

    fn usable(token: &str) -> Usable {
        Usable {
            consent: ConsentState::Active,
            scopes: Scopes::parse(crate::identity::DRIVE_APPDATA_SCOPE).unwrap(),
            disabled: false,
            access: Some(CachedAccess {
                token: AccessToken::parse(token).unwrap(),
                expires_at: OffsetDateTime::UNIX_EPOCH,
                scopes: Scopes::default(),
            }),
        }
    }

    fn token_of(u: &Usable) -> String {
        u.access.as_ref().unwrap().token.expose_secret().to_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_answers_for_the_ttl_then_the_store_is_read_again() {
        let cache = RecentCredentials::new(Duration::from_secs(1), 10);
        let alice = subject("1");
        cache.record(&alice, Some(usable("ya29.a")), RecentCredentials::now());
        assert_eq!(token_of(&cache.get(&alice).unwrap()), "ya29.a");
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(cache.get(&alice).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(cache.get(&alice).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_began_before_a_forget_never_brings_the_user_back() {
        let cache = RecentCredentials::new(Duration::from_secs(1), 10);
        let alice = subject("1");
        let read_started = RecentCredentials::now();
        tokio::time::advance(Duration::from_millis(5)).await;
        cache.invalidate(&alice, None);
        cache.record(&alice, Some(usable("ya29.stale")), read_started);
        assert!(cache.get(&alice).is_none());
        // A read that starts after the forget is recorded.
        tokio::time::advance(Duration::from_millis(5)).await;
        cache.record(&alice, Some(usable("ya29.new")), RecentCredentials::now());
        assert_eq!(token_of(&cache.get(&alice).unwrap()), "ya29.new");
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_state_never_replaces_a_newer_one() {
        let cache = RecentCredentials::new(Duration::from_secs(1), 10);
        let alice = subject("1");
        let older = RecentCredentials::now();
        tokio::time::advance(Duration::from_millis(5)).await;
        cache.record(&alice, Some(usable("ya29.new")), RecentCredentials::now());
        cache.record(&alice, Some(usable("ya29.old")), older);
        assert_eq!(token_of(&cache.get(&alice).unwrap()), "ya29.new");
        // A revocation recorded as an invalidation wins over both.
        let mut revoked = usable("ya29.new");
        revoked.consent = ConsentState::Revoked;
        cache.invalidate(&alice, Some(revoked));
        cache.record(&alice, Some(usable("ya29.old")), older);
        assert_eq!(cache.get(&alice).unwrap().consent, ConsentState::Revoked);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_drops_expired_entries_and_always_keeps_invalidations() {
        let cache = RecentCredentials::new(Duration::from_secs(1), 2);
        cache.record(
            &subject("1"),
            Some(usable("ya29.1")),
            RecentCredentials::now(),
        );
        cache.record(
            &subject("2"),
            Some(usable("ya29.2")),
            RecentCredentials::now(),
        );
        cache.record(
            &subject("3"),
            Some(usable("ya29.3")),
            RecentCredentials::now(),
        );
        assert!(cache.get(&subject("3")).is_none(), "full of live entries");
        cache.invalidate(&subject("3"), None);
        assert_eq!(cache.len(), 3, "an invalidation is kept even when full");
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.record(
            &subject("4"),
            Some(usable("ya29.4")),
            RecentCredentials::now(),
        );
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&subject("4")).is_some());
    }

    #[test]
    fn a_ttl_of_zero_keeps_nothing() {
        let cache = RecentCredentials::new(Duration::ZERO, 10);
        cache.record(
            &subject("1"),
            Some(usable("ya29.1")),
            RecentCredentials::now(),
        );
        assert!(cache.get(&subject("1")).is_none());
        assert_eq!(cache.len(), 0);
    }
}
