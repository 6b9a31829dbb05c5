//! The one way a use case changes a stored credential: read what is stored **now**, decide, write conditionally,
//! and on a conflict read again and decide again.
//!
//! Every write that follows a read goes through [`update`]: sign-in, refresh, revocation after `invalid_grant`,
//! forget and the pending-revocation sweep. The decision is always taken on the record as it is at the moment of
//! the write, never on a copy read before a slow call to Google, and the write lands only if nothing changed
//! since that read (the store's version check; versions never repeat for a subject, also across deletes). So a
//! refresh that started before a forget and a new sign-in cannot write back what it read before them: it finds
//! another refresh token (or no record) and leaves the record alone.
//!
//! Reads are typed: a record is a [`Stored::Credential`] or a [`Stored::PendingRevocation`] (a forgotten user
//! whose revocation at Google is still to be confirmed), so no use case can mistake one for the other.

use time::OffsetDateTime;

use crate::credential::Credential;
use crate::events::{Event, EventData, EventRecord};
use crate::identity::Subject;
use crate::ports::{CredentialStore, StoreError};
use crate::secret::RefreshToken;

/// How often [`update`] reads again after a conflict before it reports [`StoreError::Conflict`].
const ATTEMPTS: usize = 8;

/// What the store holds for a subject, as the use cases see it.
// Short-lived (one decision); boxing the credential would cost an allocation per read for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum Stored {
    /// Nothing.
    Absent,
    /// A credential (consent active or revoked).
    Credential(Credential),
    /// A forgotten user's grant whose revocation at Google is pending; only its refresh token is kept.
    PendingRevocation(Credential),
}

impl Stored {
    fn of(record: Option<Credential>) -> Stored {
        match record {
            None => Stored::Absent,
            Some(c) if c.is_forgotten() => Stored::PendingRevocation(c),
            Some(c) => Stored::Credential(c),
        }
    }

    /// The credential, if this is one (not a pending revocation).
    pub(crate) fn credential(self) -> Option<Credential> {
        match self {
            Stored::Credential(c) => Some(c),
            Stored::Absent | Stored::PendingRevocation(_) => None,
        }
    }

    /// The stored refresh token of either kind of record.
    pub(crate) fn refresh_token(&self) -> Option<&RefreshToken> {
        match self {
            Stored::Absent => None,
            Stored::Credential(c) | Stored::PendingRevocation(c) => c.refresh_token.as_ref(),
        }
    }

    fn version(&self) -> u64 {
        match self {
            Stored::Absent => 0,
            Stored::Credential(c) | Stored::PendingRevocation(c) => c.version,
        }
    }
}

/// What a decision does to the record.
#[allow(clippy::large_enum_variant)] // as `Stored`: one per decision
#[derive(Debug)]
pub(crate) enum Change<T> {
    /// Leave it as it is.
    Keep(T),
    /// Write this credential in its place (its version is set by [`update`]).
    Put(Credential, T),
    /// Delete it.
    Delete(T),
}

/// What [`update`] did.
#[allow(clippy::large_enum_variant)] // as `Stored`: one per decision
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Nothing was written.
    Kept,
    /// This was written (with its new version).
    Written(Credential),
    /// The record was deleted.
    Deleted,
}

/// Whether two optional refresh tokens are the same (in constant time when both are there).
pub(crate) fn same_token(a: Option<&RefreshToken>, b: Option<&RefreshToken>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.ct_eq(b),
        (None, None) => true,
        _ => false,
    }
}

/// Reads a subject's record, typed.
///
/// # Errors
/// The store's.
pub(crate) async fn read(
    store: &dyn CredentialStore,
    subject: &Subject,
) -> Result<Stored, StoreError> {
    Ok(Stored::of(store.get(subject).await?))
}

/// Reads the record, lets `decide` choose a change on it, and writes that change only if the record is still the
/// one read; on a conflict it reads again and asks `decide` again (at most a few times). `decide` may run more than
/// once and must not have side effects outside its result.
///
/// # Errors
/// The store's; [`StoreError::Conflict`] if the record kept changing under every attempt.
pub(crate) async fn update<T>(
    store: &dyn CredentialStore,
    subject: &Subject,
    mut decide: impl FnMut(Stored) -> Change<T>,
) -> Result<(T, Outcome), StoreError> {
    update_recording(
        store,
        subject,
        OffsetDateTime::UNIX_EPOCH,
        false,
        |stored| (decide(stored), Vec::new()),
    )
    .await
}

/// [`update`], where `decide` also names the events its change reports: when `record` is set they are written in
/// the same store write as the change (the outbox), stamped `now`; a `Keep` records nothing.
///
/// # Errors
/// As [`update`].
pub(crate) async fn update_recording<T>(
    store: &dyn CredentialStore,
    subject: &Subject,
    now: OffsetDateTime,
    record: bool,
    mut decide: impl FnMut(Stored) -> (Change<T>, Vec<EventData>),
) -> Result<(T, Outcome), StoreError> {
    for _ in 0..ATTEMPTS {
        let stored = read(store, subject).await?;
        let version = stored.version();
        let (change, events) = decide(stored);
        let events: Vec<EventRecord> = if record {
            events
                .into_iter()
                .map(|data| Event::new(data, now).record())
                .collect()
        } else {
            Vec::new()
        };
        let result = match change {
            Change::Keep(value) => return Ok((value, Outcome::Kept)),
            Change::Put(mut credential, value) => {
                credential.version = version;
                store
                    .put_with(&credential, &events)
                    .await
                    .map(|written| (value, Outcome::Written(written)))
            }
            Change::Delete(value) if version == 0 => return Ok((value, Outcome::Kept)),
            Change::Delete(value) => store
                .delete_with(subject, version, &events)
                .await
                .map(|()| (value, Outcome::Deleted)),
        };
        match result {
            Err(StoreError::Conflict) => {}
            other => return other,
        }
    }
    Err(StoreError::Conflict)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::credential::{CachedAccess, ConsentState};
    use crate::identity::{Profile, Scopes};
    use crate::memory::MemoryStore;
    use crate::secret::AccessToken;

    const NOW: time::OffsetDateTime = time::macros::datetime!(2026-11-24 12:00 UTC);

    fn subject(s: &str) -> Subject {
        Subject::parse(s).unwrap()
    }

    fn credential(sub: &str, refresh: Option<&str>, access: &str) -> Credential {
        Credential {
            subject: subject(sub),
            profile: Profile::default(),
            scopes: Scopes::default(),
            refresh_token: refresh.map(|t| RefreshToken::parse(t).unwrap()),
            access: Some(CachedAccess {
                token: AccessToken::parse(access).unwrap(),
                expires_at: NOW + time::Duration::HOUR,
                scopes: Scopes::default(),
            }),
            consent: ConsentState::Active,
            disabled: None,
            refresh_failing_since: None,
            version: 0,
            created_at: NOW,
            updated_at: NOW,
        }
    }

    #[tokio::test]
    async fn a_decision_on_a_record_that_changed_is_taken_again_on_the_new_one() {
        let store = MemoryStore::new();
        let sub = subject("1");
        let first = store
            .put(&credential("1", Some("1//a"), "ya29.a"))
            .await
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let racing = store.clone();
        let (value, outcome) = update(&store, &sub, |stored| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let Stored::Credential(mut c) = stored else {
                return Change::Keep(None);
            };
            if n == 0 {
                // Someone writes between this read and the write: the write must conflict and be decided again.
                let mut other = first.clone();
                other.refresh_token = Some(RefreshToken::parse("1//b").unwrap());
                futures::executor::block_on(racing.put(&other)).unwrap();
            }
            let token = c.refresh_token.clone();
            c.updated_at += time::Duration::SECOND;
            Change::Put(c, token)
        })
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(value.unwrap().expose_secret(), "1//b");
        let Outcome::Written(written) = outcome else {
            panic!("expected a write")
        };
        assert!(written.version > first.version + 1);
    }

    #[tokio::test]
    async fn delete_of_an_absent_record_writes_nothing_and_pending_revocations_are_typed() {
        let store = MemoryStore::new();
        let sub = subject("1");
        let (_, outcome) = update(&store, &sub, |_| Change::Delete(())).await.unwrap();
        assert!(matches!(outcome, Outcome::Kept));
        let mut c = credential("1", Some("1//a"), "ya29.a");
        c.mark_forgotten(c.updated_at);
        store.put(&c).await.unwrap();
        assert!(matches!(
            read(&store, &sub).await.unwrap(),
            Stored::PendingRevocation(_)
        ));
        assert!(read(&store, &sub).await.unwrap().credential().is_none());
    }
}
