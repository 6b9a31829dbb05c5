//! The storage contract: what every [`CredentialStore`] adapter MUST do, as reusable async checks.
//!
//! Run the whole port contract against a fresh, empty store per check:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use offline_access_domain::{CredentialStore, memory::MemoryStore};
//! # async fn example() {
//! offline_access_domain::testkit::run_contract(|| async {
//!     Arc::new(MemoryStore::new()) as Arc<dyn CredentialStore> // your adapter, fresh and empty
//! })
//! .await;
//! # }
//! ```
//!
//! Two more checks need more than the port: [`tokens_are_never_stored_in_clear`] reads the adapter's raw bytes
//! through [`RawStorage`], and [`a_record_under_an_unknown_key_is_a_loud_error`] needs two stores over the same
//! storage with different keys. Every check panics (it is an assertion) when the adapter breaks the contract.
//!
//! Run the suite on a multi-threaded runtime (`#[tokio::test(flavor = "multi_thread")]`): the concurrency checks
//! are meant to race.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Assertions are the point of a test kit.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::events::{
    DeliveryState, Event, EventCounts, EventData, EventFilter, EventRecord, EventStore,
    OutboxEvent, Settlement,
};
use crate::risc::index_keys;
use crate::{
    AccessToken, AccountDisabled, CachedAccess, ConsentState, Credential, CredentialStore, Email,
    Profile, RefreshToken, Scopes, StoreError, Subject,
};
use async_trait::async_trait;
use time::OffsetDateTime;
use time::macros::datetime;

/// A fixed instant (whole seconds, so every store round-trips it exactly).
pub const NOW: OffsetDateTime = datetime!(2026-11-24 12:00:00 UTC);
/// Prefix of the canary refresh tokens the checks store: search raw storage for it.
pub const CANARY_REFRESH: &str = "1//canary-refresh-";
/// Prefix of the canary access tokens the checks store: search raw storage for it.
pub const CANARY_ACCESS: &str = "ya29.canary-access-";

/// A subject from a test literal.
#[must_use]
pub fn subject(value: &str) -> Subject {
    Subject::parse(value).unwrap()
}

/// A new (version 0) credential for `sub` with the given refresh token (if any) and access token, a full
/// profile and two scopes.
#[must_use]
pub fn credential(sub: &str, refresh: Option<&str>, access: &str) -> Credential {
    Credential {
        subject: subject(sub),
        profile: Profile {
            email: Some(Email::parse(&format!("user{sub}@example.com")).unwrap()),
            email_verified: true,
            name: Some("Ada Lovelace".to_owned()),
            picture: Some("https://example.com/a.png".to_owned()),
            given_name: Some("Ada".to_owned()),
            family_name: Some("Lovelace".to_owned()),
            locale: Some("en-GB".to_owned()),
            hd: None,
        },
        scopes: Scopes::parse("openid email https://www.googleapis.com/auth/drive.appdata")
            .unwrap(),
        refresh_token: refresh.map(|t| RefreshToken::parse(t).unwrap()),
        access: Some(CachedAccess {
            token: AccessToken::parse(access).unwrap(),
            expires_at: NOW + time::Duration::hours(1),
            scopes: Scopes::parse("openid email").unwrap(),
        }),
        consent: ConsentState::Active,
        disabled: None,
        refresh_failing_since: None,
        version: 0,
        created_at: NOW,
        updated_at: NOW,
    }
}

/// A canary credential for `sub`: tokens `1//canary-refresh-<sub>` and `ya29.canary-access-<sub>`.
#[must_use]
pub fn canary_credential(sub: &str) -> Credential {
    credential(
        sub,
        Some(&format!("{CANARY_REFRESH}{sub}")),
        &format!("{CANARY_ACCESS}{sub}"),
    )
}

fn refresh_of(c: &Credential) -> Option<String> {
    c.refresh_token
        .as_ref()
        .map(|t| t.expose_secret().to_owned())
}

fn access_of(c: &Credential) -> Option<String> {
    c.access
        .as_ref()
        .map(|a| a.token.expose_secret().to_owned())
}

/// Asserts two credentials hold the same data (secret newtypes have no `PartialEq`).
pub fn assert_same_credential(actual: &Credential, expected: &Credential) {
    assert_eq!(actual.subject, expected.subject);
    assert_eq!(actual.profile, expected.profile);
    assert_eq!(actual.scopes, expected.scopes);
    assert_eq!(refresh_of(actual), refresh_of(expected), "refresh token");
    assert_eq!(access_of(actual), access_of(expected), "access token");
    assert_eq!(
        actual.access.as_ref().map(|a| a.expires_at),
        expected.access.as_ref().map(|a| a.expires_at)
    );
    assert_eq!(
        actual.access.as_ref().map(|a| &a.scopes),
        expected.access.as_ref().map(|a| &a.scopes),
        "access token scopes"
    );
    assert_eq!(actual.consent, expected.consent);
    assert_eq!(actual.version, expected.version);
    assert_eq!(actual.created_at, expected.created_at);
    assert_eq!(actual.updated_at, expected.updated_at);
}

/// Runs every port-level check, each against a new empty store from `fresh`.
pub async fn run_contract<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn CredentialStore>>,
{
    get_of_a_missing_user_is_none(fresh().await).await;
    put_then_get_round_trips_every_field(fresh().await).await;
    put_returns_a_greater_version_and_stale_versions_conflict(fresh().await).await;
    versions_never_repeat_across_deletes(fresh().await).await;
    put_never_replaces_a_stored_refresh_token_with_none(fresh().await).await;
    a_returned_refresh_token_replaces_the_stored_one(fresh().await).await;
    consent_state_transitions_are_stored(fresh().await).await;
    a_forgotten_credential_keeps_only_its_refresh_token(fresh().await).await;
    delete_removes_the_credential_and_says_whether_there_was_one(fresh().await).await;
    users_are_independent(fresh().await).await;
    list_pages_through_every_record_once(fresh().await).await;
    pending_revocations_lists_only_forgotten_records(fresh().await).await;
    concurrent_puts_never_lose_an_update(fresh().await).await;
    a_user_lock_excludes_other_lockers(fresh().await).await;
    writes_under_a_user_lock_follow_the_version_rule(fresh().await).await;
    dropping_a_user_lock_releases_it(fresh().await).await;
    ping_succeeds(fresh().await).await;
}

/// `get` of a user never stored is `Ok(None)`.
pub async fn get_of_a_missing_user_is_none(store: Arc<dyn CredentialStore>) {
    assert!(store.get(&subject("nobody")).await.unwrap().is_none());
}

/// What `put` stores, `get` returns, field for field, with a version above 0.
pub async fn put_then_get_round_trips_every_field(store: Arc<dyn CredentialStore>) {
    let cred = canary_credential("1001");
    let stored = store.put(&cred).await.unwrap();
    assert!(stored.version > 0);
    let mut expected = cred.clone();
    expected.version = stored.version;
    assert_same_credential(&stored, &expected);
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_same_credential(&read, &expected);
}

/// `put` returns a greater version each time; a write with a version other than the stored one conflicts and
/// changes nothing.
pub async fn put_returns_a_greater_version_and_stale_versions_conflict(
    store: Arc<dyn CredentialStore>,
) {
    let mut cred = canary_credential("1002");
    cred.version = 3;
    assert!(
        matches!(store.put(&cred).await, Err(StoreError::Conflict)),
        "absent record is version 0"
    );
    cred.version = 0;
    let v1 = store.put(&cred).await.unwrap();
    assert!(v1.version > 0);
    assert!(
        matches!(store.put(&cred).await, Err(StoreError::Conflict)),
        "second create"
    );
    let mut next = v1.clone();
    next.scopes = Scopes::parse("openid").unwrap();
    let v2 = store.put(&next).await.unwrap();
    assert!(v2.version > v1.version);
    let mut stale = v1.clone();
    stale.consent = ConsentState::Revoked;
    assert!(
        matches!(store.put(&stale).await, Err(StoreError::Conflict)),
        "stale version"
    );
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.version, v2.version);
    assert_eq!(read.consent, ConsentState::Active);
    assert_eq!(read.scopes, Scopes::parse("openid").unwrap());
}

/// Versions never repeat for a subject, also across deletes: a writer that read the record before a delete can
/// neither write nor delete the record of a later first write, and every version is greater than the last.
pub async fn versions_never_repeat_across_deletes(store: Arc<dyn CredentialStore>) {
    let cred = canary_credential("1010");
    let v1 = store.put(&cred).await.unwrap();
    let v2 = store.put(&v1).await.unwrap();
    store.delete(&cred.subject, v2.version).await.unwrap();
    let mut fresh = canary_credential("1010");
    fresh.refresh_token = Some(RefreshToken::parse("1//after-delete").unwrap());
    let v3 = store.put(&fresh).await.unwrap();
    assert!(
        v3.version > v2.version,
        "a record after a delete gets a version above the deleted one's ({} <= {})",
        v3.version,
        v2.version
    );
    for stale in [&v1, &v2] {
        assert!(
            matches!(store.put(stale).await, Err(StoreError::Conflict)),
            "a write read before the delete must conflict"
        );
        assert!(
            matches!(
                store.delete(&cred.subject, stale.version).await,
                Err(StoreError::Conflict)
            ),
            "a delete read before the delete must conflict"
        );
    }
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(refresh_of(&read).as_deref(), Some("1//after-delete"));
    // Many deletes and re-creates: strictly increasing versions throughout.
    let mut last = v3.version;
    let mut current = v3;
    for _ in 0..5 {
        store.delete(&cred.subject, current.version).await.unwrap();
        current = store.put(&canary_credential("1010")).await.unwrap();
        assert!(current.version > last);
        last = current.version;
    }
}

/// The refresh-token rule, enforced by the store too: a write without a refresh token keeps the stored one.
pub async fn put_never_replaces_a_stored_refresh_token_with_none(store: Arc<dyn CredentialStore>) {
    let v1 = store.put(&canary_credential("1003")).await.unwrap();
    let mut without = v1.clone();
    without.refresh_token = None;
    without.access = Some(CachedAccess {
        token: AccessToken::parse("ya29.second").unwrap(),
        expires_at: NOW + time::Duration::hours(2),
        scopes: Scopes::parse("openid").unwrap(),
    });
    let v2 = store.put(&without).await.unwrap();
    assert_eq!(refresh_of(&v2), refresh_of(&v1), "returned copy keeps it");
    let read = store.get(&v1.subject).await.unwrap().unwrap();
    assert_eq!(refresh_of(&read), refresh_of(&v1), "stored copy keeps it");
    assert_eq!(access_of(&read).as_deref(), Some("ya29.second"));
}

/// A write with a new refresh token replaces the stored one.
pub async fn a_returned_refresh_token_replaces_the_stored_one(store: Arc<dyn CredentialStore>) {
    let v1 = store.put(&canary_credential("1004")).await.unwrap();
    let mut rotated = v1.clone();
    rotated.refresh_token = Some(RefreshToken::parse("1//rotated").unwrap());
    store.put(&rotated).await.unwrap();
    let read = store.get(&v1.subject).await.unwrap().unwrap();
    assert_eq!(refresh_of(&read).as_deref(), Some("1//rotated"));
}

/// Active → revoked (access token dropped) → active again with a new refresh token, each stored.
pub async fn consent_state_transitions_are_stored(store: Arc<dyn CredentialStore>) {
    let mut cred = store.put(&canary_credential("1005")).await.unwrap();
    cred.mark_revoked(NOW + time::Duration::minutes(5));
    let revoked = store.put(&cred).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.consent, ConsentState::Revoked);
    assert!(read.access.is_none());
    assert!(
        read.refresh_token.is_some(),
        "the revoked token is kept (for revocation)"
    );
    assert_eq!(read.updated_at, NOW + time::Duration::minutes(5));
    let mut again = revoked.clone();
    again.refresh_token = Some(RefreshToken::parse("1//reconsented").unwrap());
    again.consent = ConsentState::Active;
    store.put(&again).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.consent, ConsentState::Active);
    assert_eq!(refresh_of(&read).as_deref(), Some("1//reconsented"));
}

/// Forgotten with the revocation pending: stored as `forgotten` with the refresh token (to revoke later) and
/// nothing else: no access token, an empty profile, no scopes.
pub async fn a_forgotten_credential_keeps_only_its_refresh_token(store: Arc<dyn CredentialStore>) {
    let mut cred = store.put(&canary_credential("1006")).await.unwrap();
    cred.mark_forgotten(NOW + time::Duration::minutes(7));
    let forgotten = store.put(&cred).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_same_credential(&read, &forgotten);
    assert_eq!(read.consent, ConsentState::Forgotten);
    assert!(read.is_forgotten());
    assert!(read.access.is_none());
    assert_eq!(read.profile, Profile::default());
    assert!(read.scopes.is_empty());
    assert_eq!(
        refresh_of(&read).as_deref(),
        Some(format!("{CANARY_REFRESH}1006").as_str())
    );
}

/// `delete` removes the record only at the version given; at another version, or with no record, it conflicts
/// and changes nothing.
pub async fn delete_removes_the_credential_and_says_whether_there_was_one(
    store: Arc<dyn CredentialStore>,
) {
    let cred = canary_credential("1006");
    let stored = store.put(&cred).await.unwrap();
    assert!(matches!(
        store.delete(&cred.subject, stored.version + 1).await,
        Err(StoreError::Conflict)
    ));
    assert!(store.get(&cred.subject).await.unwrap().is_some());
    store.delete(&cred.subject, stored.version).await.unwrap();
    assert!(store.get(&cred.subject).await.unwrap().is_none());
    assert!(matches!(
        store.delete(&cred.subject, stored.version).await,
        Err(StoreError::Conflict)
    ));
    assert!(store.put(&cred).await.unwrap().version > stored.version);
}

/// Writes and deletes of one user never touch another.
pub async fn users_are_independent(store: Arc<dyn CredentialStore>) {
    let a = store.put(&canary_credential("2001")).await.unwrap();
    let b = store.put(&canary_credential("2002")).await.unwrap();
    store.delete(&a.subject, a.version).await.unwrap();
    let read = store.get(&b.subject).await.unwrap().unwrap();
    assert_same_credential(&read, &b);
    // A held lock on one user does not block another.
    let held = store.lock_user(&a.subject).await.unwrap();
    let other = store.lock_user(&b.subject).await.unwrap();
    other.release().await.unwrap();
    held.release().await.unwrap();
}

/// Pages through `list` with `limit` and the cursor: every record once, in a stable order.
async fn all_pages(
    store: &dyn CredentialStore,
    pending_only: bool,
    limit: usize,
) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = if pending_only {
            store.pending_revocations(cursor.clone(), limit).await
        } else {
            store.list(cursor.clone(), limit).await
        }
        .unwrap();
        pages += 1;
        assert!(page.items.len() <= limit);
        assert!(page.unreadable.is_empty());
        for item in &page.items {
            seen.push(item.subject.as_str().to_owned());
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 20, "paging does not end");
    }
    (seen, pages)
}

/// `list` returns every record exactly once, `limit` at a time, with a cursor until the last page.
pub async fn list_pages_through_every_record_once(store: Arc<dyn CredentialStore>) {
    let empty = store.list(None, 10).await.unwrap();
    assert!(empty.items.is_empty() && empty.next_cursor.is_none());
    let subs = ["305", "101", "204", "102", "303"];
    for s in subs {
        store.put(&canary_credential(s)).await.unwrap();
    }
    let (mut seen, pages) = all_pages(&*store, false, 2).await;
    assert_eq!(pages, 3);
    let page = store.list(None, 10).await.unwrap();
    for item in &page.items {
        assert_eq!(
            refresh_of(item),
            Some(format!("{CANARY_REFRESH}{}", item.subject))
        );
    }
    seen.sort_unstable();
    let mut sorted: Vec<&str> = subs.to_vec();
    sorted.sort_unstable();
    assert_eq!(seen, sorted);
}

/// `pending_revocations` lists exactly the forgotten records, paged like `list`.
pub async fn pending_revocations_lists_only_forgotten_records(store: Arc<dyn CredentialStore>) {
    for s in ["401", "402", "403", "404", "405"] {
        let mut c = store.put(&canary_credential(s)).await.unwrap();
        if s != "402" && s != "404" {
            c.mark_forgotten(NOW);
            store.put(&c).await.unwrap();
        }
    }
    let (mut seen, pages) = all_pages(&*store, true, 1).await;
    seen.sort_unstable();
    assert_eq!(seen, ["401", "403", "405"]);
    assert!(pages >= 3);
    // A sign-in that replaces a pending revocation takes it off the list; a delete too.
    let mut back = store.get(&subject("401")).await.unwrap().unwrap();
    back.consent = ConsentState::Active;
    store.put(&back).await.unwrap();
    let gone = store.get(&subject("403")).await.unwrap().unwrap();
    store.delete(&gone.subject, gone.version).await.unwrap();
    let (seen, _) = all_pages(&*store, true, 10).await;
    assert_eq!(seen, ["405"]);
}

/// Many tasks doing read-modify-write on one user, retrying on conflict: every change lands, versions count them.
pub async fn concurrent_puts_never_lose_an_update(store: Arc<dyn CredentialStore>) {
    const WRITERS: usize = 8;
    let sub = subject("3001");
    store.put(&canary_credential("3001")).await.unwrap();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = Arc::clone(&store);
            let sub = sub.clone();
            tokio::spawn(async move {
                loop {
                    let mut cred = store.get(&sub).await.unwrap().unwrap();
                    let scope = format!("https://example.com/scope/{i}");
                    cred.scopes =
                        Scopes::from_iter_checked(cred.scopes.iter().chain([scope.as_str()]))
                            .unwrap();
                    match store.put(&cred).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict) => tokio::task::yield_now().await,
                        Err(e) => panic!("unexpected store error: {e}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let read = store.get(&sub).await.unwrap().unwrap();
    assert_eq!(read.version, 1 + WRITERS as u64);
    for i in 0..WRITERS {
        assert!(
            read.scopes
                .contains(&format!("https://example.com/scope/{i}")),
            "update {i} lost"
        );
    }
}

/// Holders of `lock_user` on one user never overlap: each reads and writes under the lock without a conflict.
pub async fn a_user_lock_excludes_other_lockers(store: Arc<dyn CredentialStore>) {
    const LOCKERS: usize = 8;
    let sub = subject("4001");
    store.put(&canary_credential("4001")).await.unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..LOCKERS)
        .map(|_| {
            let (store, sub, inside) = (Arc::clone(&store), sub.clone(), Arc::clone(&inside));
            tokio::spawn(async move {
                let mut lock = store.lock_user(&sub).await.unwrap();
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two lock holders at once"
                );
                let cred = lock.get().await.unwrap().unwrap();
                tokio::task::yield_now().await;
                // Nobody else may write between our read and our write.
                lock.put(&cred).await.unwrap();
                inside.fetch_sub(1, Ordering::SeqCst);
                lock.release().await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        store.get(&sub).await.unwrap().unwrap().version,
        1 + LOCKERS as u64
    );
}

/// Under the lock, `put` follows the same version rule as the store's `put` (and does not wait on the lock
/// itself); a plain `put` from outside the lock is not blocked by it.
pub async fn writes_under_a_user_lock_follow_the_version_rule(store: Arc<dyn CredentialStore>) {
    let sub = subject("4002");
    let mut lock = store.lock_user(&sub).await.unwrap();
    assert!(lock.get().await.unwrap().is_none());
    let v1 = lock.put(&canary_credential("4002")).await.unwrap();
    assert_eq!(v1.version, 1);
    assert!(matches!(
        lock.put(&canary_credential("4002")).await,
        Err(StoreError::Conflict)
    ));
    // A sign-in writing without the lock meanwhile: the holder sees a conflict, re-reads, and sees the change.
    let mut outside = v1.clone();
    outside.refresh_token = Some(RefreshToken::parse("1//from-sign-in").unwrap());
    store.put(&outside).await.unwrap();
    assert!(matches!(lock.put(&v1).await, Err(StoreError::Conflict)));
    let current = lock.get().await.unwrap().unwrap();
    assert_eq!(refresh_of(&current).as_deref(), Some("1//from-sign-in"));
    let mut refreshed = current.clone();
    refreshed.refresh_token = None;
    let v3 = lock.put(&refreshed).await.unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(refresh_of(&v3).as_deref(), Some("1//from-sign-in"));
    lock.release().await.unwrap();
    assert_eq!(store.get(&sub).await.unwrap().unwrap().version, 3);
}

/// A guard dropped without `release` (a cancelled task) frees the lock.
pub async fn dropping_a_user_lock_releases_it(store: Arc<dyn CredentialStore>) {
    let sub = subject("4003");
    let lock = store.lock_user(&sub).await.unwrap();
    drop(lock);
    let again = store.lock_user(&sub).await.unwrap();
    again.release().await.unwrap();
}

/// A working store answers `ping`.
pub async fn ping_succeeds(store: Arc<dyn CredentialStore>) {
    store.ping().await.unwrap();
}

/// Raw access to what an adapter wrote, for the at-rest checks.
#[async_trait]
pub trait RawStorage: Send + Sync {
    /// Every byte stored for `subject` (a file's content, a row's columns, ...).
    async fn raw_bytes(&self, subject: &Subject) -> Vec<u8>;
}

/// Neither token appears in clear in what the store wrote; the record still reads back.
pub async fn tokens_are_never_stored_in_clear(
    store: Arc<dyn CredentialStore>,
    raw: &dyn RawStorage,
) {
    let cred = canary_credential("5001");
    store.put(&cred).await.unwrap();
    let bytes = raw.raw_bytes(&cred.subject).await;
    assert!(!bytes.is_empty(), "the adapter exposed no stored bytes");
    for canary in [CANARY_REFRESH, CANARY_ACCESS, "canary"] {
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "token text {canary:?} found at rest"
        );
    }
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(refresh_of(&read), refresh_of(&cred));
}

/// A record sealed under a key the reader does not have is a loud [`StoreError::Corrupt`] from `get`, `list` and
/// `put` (never `None`, never overwritten); `delete` still removes it. `writer` and `reader` share storage but
/// not keys.
pub async fn a_record_under_an_unknown_key_is_a_loud_error(
    writer: Arc<dyn CredentialStore>,
    reader: Arc<dyn CredentialStore>,
) {
    let cred = canary_credential("5002");
    let written = writer.put(&cred).await.unwrap();
    assert!(matches!(
        reader.get(&cred.subject).await,
        Err(StoreError::Corrupt { .. })
    ));
    // A listing reports it and goes on (it does not stop every later listing).
    let page = reader.list(None, 10).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.unreadable.len(), 1, "{:?}", page.unreadable);
    let mut overwrite = cred.clone();
    overwrite.version = written.version;
    assert!(matches!(
        reader.put(&overwrite).await,
        Err(StoreError::Corrupt { .. })
    ));
    // The writer still reads its record unchanged.
    assert_eq!(
        writer.get(&cred.subject).await.unwrap().unwrap().version,
        written.version
    );
    // Only a delete at its version removes it (an operator's way out when a key is lost); the version can be read
    // without the key.
    assert_eq!(
        reader.stored_version(&cred.subject).await.unwrap(),
        Some(written.version)
    );
    reader.delete(&cred.subject, written.version).await.unwrap();
    assert_eq!(reader.stored_version(&cred.subject).await.unwrap(), None);
    assert!(writer.get(&cred.subject).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------------------------
// The outbox, the RISC `jti` register and the refresh-token index
// ---------------------------------------------------------------------------------------------------------------

/// One store seen through both ports (the same storage): what [`run_event_contract`] checks.
pub type BothPorts = (Arc<dyn CredentialStore>, Arc<dyn EventStore>);

/// Runs every check of the outbox, the `jti` register and the refresh-token index, each against a new empty
/// store from `fresh`.
pub async fn run_event_contract<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = BothPorts>,
{
    events_written_with_a_change_are_pending_and_due(fresh().await).await;
    a_conflicting_write_records_no_event(fresh().await).await;
    a_claimed_event_is_leased_to_one_claimer(fresh().await).await;
    claims_take_the_soonest_due_first_then_by_id(fresh().await).await;
    settling_moves_an_event_through_its_states(fresh().await).await;
    settling_several_at_once_is_settling_each(fresh().await).await;
    events_list_oldest_first_by_page_and_filter(fresh().await).await;
    delivered_events_are_purged_by_age(fresh().await).await;
    a_jti_is_seen_first_once(fresh().await).await;
    concurrent_first_sights_admit_exactly_one(fresh().await).await;
    disabled_and_refresh_failing_round_trip(fresh().await).await;
    a_refresh_token_is_found_by_either_index_key(fresh().await).await;
}

/// An event record for tests.
#[must_use]
pub fn event(data_sub: &str, at: OffsetDateTime) -> EventRecord {
    Event::new(
        EventData::Forgotten {
            sub: data_sub.to_owned(),
        },
        at,
    )
    .record()
}

/// Events written with `put_with` and `delete_with` (and `append`) are pending, due at once, with their body.
pub async fn events_written_with_a_change_are_pending_and_due((store, events): BothPorts) {
    let first = event("2001", NOW);
    let stored = store
        .put_with(
            &credential("2001", Some("1//a"), "ya29.a"),
            std::slice::from_ref(&first),
        )
        .await
        .unwrap();
    let second = event("2001", NOW + time::Duration::SECOND);
    store
        .delete_with(
            &stored.subject,
            stored.version,
            std::slice::from_ref(&second),
        )
        .await
        .unwrap();
    let third = event("2002", NOW + time::Duration::seconds(2));
    events.append(std::slice::from_ref(&third)).await.unwrap();
    assert_eq!(
        events.counts().await.unwrap(),
        EventCounts {
            pending: 3,
            delivered: 0,
            failed: 0
        }
    );
    let due = events
        .claim_due(NOW + time::Duration::seconds(2), time::Duration::MINUTE, 10)
        .await
        .unwrap();
    let records: Vec<&EventRecord> = due.iter().map(|e| &e.record).collect();
    assert_eq!(
        records,
        vec![&first, &second, &third],
        "oldest first, exactly as written"
    );
    for e in &due {
        assert_eq!(e.state, DeliveryState::Pending);
        assert_eq!(e.attempts, 0);
        assert!(e.last_error.is_none());
    }
    assert_eq!(
        events.event(&first.id).await.unwrap().unwrap().record,
        first
    );
    assert!(
        events
            .event("evt_00000000000000000000000000000000")
            .await
            .unwrap()
            .is_none()
    );
}

/// A `put_with` or `delete_with` that conflicts writes no event.
pub async fn a_conflicting_write_records_no_event((store, events): BothPorts) {
    let stored = store
        .put(&credential("2101", Some("1//a"), "ya29.a"))
        .await
        .unwrap();
    let mut stale = stored.clone();
    stale.version = 0;
    assert!(matches!(
        store.put_with(&stale, &[event("2101", NOW)]).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store
            .delete_with(&stored.subject, stored.version + 1, &[event("2101", NOW)])
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(events.counts().await.unwrap(), EventCounts::default());
}

/// `claim_due` leases an event: a second claim before the lease ends gets nothing, one after gets it again.
pub async fn a_claimed_event_is_leased_to_one_claimer((_store, events): BothPorts) {
    let e = event("2201", NOW);
    events.append(std::slice::from_ref(&e)).await.unwrap();
    let lease = time::Duration::seconds(30);
    assert_eq!(events.claim_due(NOW, lease, 10).await.unwrap().len(), 1);
    assert!(
        events
            .claim_due(NOW + time::Duration::seconds(29), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = events
        .claim_due(NOW + time::Duration::seconds(31), lease, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].record.id, e.id, "the same id on every try");
    // Not due yet: not claimed.
    let later = event("2202", NOW + time::Duration::HOUR);
    events.append(std::slice::from_ref(&later)).await.unwrap();
    let claimed = events
        .claim_due(NOW + time::Duration::MINUTE * 2, lease, 10)
        .await
        .unwrap();
    assert!(claimed.iter().all(|c| c.record.id != later.id));
}

/// `claim_due` takes the events that fell due soonest first, and among those due at the same time the lowest ids:
/// an event waiting longest is never left behind by a `limit`.
pub async fn claims_take_the_soonest_due_first_then_by_id((_store, events): BothPorts) {
    let [a, b, c] = ["2251", "2252", "2253"].map(|sub| event(sub, NOW));
    events
        .append(&[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    let lease = time::Duration::MINUTE;
    let mut by_id = vec![a.id.clone(), b.id.clone(), c.id.clone()];
    by_id.sort();
    let ids = |claimed: Vec<OutboxEvent>| -> Vec<String> {
        claimed.into_iter().map(|e| e.record.id).collect()
    };
    assert_eq!(ids(events.claim_due(NOW, lease, 10).await.unwrap()), by_id);
    // `a` falls due last; `b` and `c` together, before it.
    for (id, after) in [(&a.id, 20), (&b.id, 10), (&c.id, 10)] {
        let settlement = Settlement::RetryAt {
            at: NOW + time::Duration::seconds(after),
            error: "HTTP 503".into(),
        };
        events.settle(id, &settlement).await.unwrap();
    }
    let mut b_and_c = vec![b.id.clone(), c.id.clone()];
    b_and_c.sort();
    let later = NOW + time::Duration::seconds(30);
    assert_eq!(
        ids(events.claim_due(later, lease, 2).await.unwrap()),
        b_and_c
    );
    assert_eq!(
        ids(events.claim_due(later, lease, 10).await.unwrap()),
        vec![a.id.clone()]
    );
}

/// `settle_all`: each outcome recorded as by `settle`; an unknown id is skipped, not an error.
pub async fn settling_several_at_once_is_settling_each((_store, events): BothPorts) {
    let [a, b, c] = ["2311", "2312", "2313"].map(|sub| event(sub, NOW));
    events
        .append(&[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    let lease = time::Duration::seconds(30);
    assert_eq!(events.claim_due(NOW, lease, 10).await.unwrap().len(), 3);
    let retry_at = NOW + time::Duration::seconds(5);
    let unknown = Event::new(EventData::Forgotten { sub: "2314".into() }, NOW)
        .record()
        .id;
    events
        .settle_all(&[
            (a.id.clone(), Settlement::Delivered { at: NOW }),
            (
                b.id.clone(),
                Settlement::RetryAt {
                    at: retry_at,
                    error: "HTTP 502".into(),
                },
            ),
            (unknown.clone(), Settlement::Delivered { at: NOW }),
            (
                c.id.clone(),
                Settlement::Failed {
                    error: "gave up".into(),
                },
            ),
        ])
        .await
        .unwrap();
    events.settle_all(&[]).await.unwrap();
    let got = |id: String| {
        let events = events.clone();
        async move { events.event(&id).await.unwrap().unwrap() }
    };
    let a = got(a.id).await;
    assert_eq!(
        (a.state, a.attempts, a.delivered_at),
        (DeliveryState::Delivered, 1, Some(NOW))
    );
    let b = got(b.id).await;
    assert_eq!(
        (
            b.state,
            b.attempts,
            b.next_attempt_at,
            b.last_error.as_deref()
        ),
        (DeliveryState::Pending, 1, retry_at, Some("HTTP 502"))
    );
    let c = got(c.id).await;
    assert_eq!(
        (c.state, c.attempts, c.last_error.as_deref()),
        (DeliveryState::Failed, 1, Some("gave up"))
    );
    assert!(events.event(&unknown).await.unwrap().is_none());
    // Only the retried one comes back, at its time.
    assert_eq!(
        due_at_and_not_before(&*events, retry_at, lease).await,
        vec![b.record.id]
    );
}

/// Claims at `at` (the ids claimed) after checking that nothing is due a second before.
async fn due_at_and_not_before(
    events: &dyn EventStore,
    at: OffsetDateTime,
    lease: time::Duration,
) -> Vec<String> {
    assert!(
        events
            .claim_due(at - time::Duration::SECOND, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = events.claim_due(at, lease, 10).await.unwrap();
    claimed.into_iter().map(|e| e.record.id).collect()
}

/// Retry, delivered, failed and replay, with attempts and the last error.
pub async fn settling_moves_an_event_through_its_states((_store, events): BothPorts) {
    let a = event("2301", NOW);
    let b = event("2302", NOW);
    events.append(&[a.clone(), b.clone()]).await.unwrap();
    let lease = time::Duration::seconds(30);
    assert_eq!(events.claim_due(NOW, lease, 10).await.unwrap().len(), 2);
    let retry_at = NOW + time::Duration::seconds(5);
    events
        .settle(
            &a.id,
            &Settlement::RetryAt {
                at: retry_at,
                error: "HTTP 500".into(),
            },
        )
        .await
        .unwrap();
    events
        .settle(&b.id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    let got = events.event(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.attempts, got.next_attempt_at),
        (DeliveryState::Pending, 1, retry_at)
    );
    assert_eq!(got.last_error.as_deref(), Some("HTTP 500"));
    let delivered = events.event(&b.id).await.unwrap().unwrap();
    assert_eq!(
        (delivered.state, delivered.attempts, delivered.delivered_at),
        (DeliveryState::Delivered, 1, Some(NOW))
    );
    // The retry frees the lease: due again at `retry_at`, not before; a delivered event never again.
    assert_eq!(
        due_at_and_not_before(&*events, retry_at, lease).await,
        vec![a.id.clone()]
    );
    events
        .settle(
            &a.id,
            &Settlement::Failed {
                error: "gave up".into(),
            },
        )
        .await
        .unwrap();
    let failed = events.event(&a.id).await.unwrap().unwrap();
    assert_eq!((failed.state, failed.attempts), (DeliveryState::Failed, 2));
    assert!(
        events
            .claim_due(NOW + time::Duration::DAY, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        events.counts().await.unwrap(),
        EventCounts {
            pending: 0,
            delivered: 1,
            failed: 1
        }
    );
    // Replay: pending and due again, attempts reset, same body.
    let replay_at = NOW + time::Duration::HOUR;
    assert!(events.replay(&a.id, replay_at).await.unwrap());
    assert!(
        !events
            .replay("evt_00000000000000000000000000000000", replay_at)
            .await
            .unwrap()
    );
    let replayed = events.claim_due(replay_at, lease, 10).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        (replayed[0].state, replayed[0].attempts),
        (DeliveryState::Pending, 0)
    );
    assert_eq!(replayed[0].record, a);
    // Settling an unknown id is not an error.
    events
        .settle(
            "evt_00000000000000000000000000000000",
            &Settlement::Delivered { at: NOW },
        )
        .await
        .unwrap();
}

/// `list_events` pages oldest first through every event once, and filters by state.
pub async fn events_list_oldest_first_by_page_and_filter((_store, events): BothPorts) {
    let all: Vec<EventRecord> = (0..7)
        .map(|i| event(&format!("240{i}"), NOW + time::Duration::milliseconds(i)))
        .collect();
    events.append(&all).await.unwrap();
    events
        .claim_due(NOW + time::Duration::SECOND, time::Duration::SECOND, 2)
        .await
        .unwrap();
    events
        .settle(&all[0].id, &Settlement::Failed { error: "x".into() })
        .await
        .unwrap();
    events
        .settle(&all[1].id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = events
            .list_events(EventFilter::All, cursor, 3)
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|e| e.record.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, all.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
    let failed = events
        .list_events(EventFilter::Failed, None, 10)
        .await
        .unwrap();
    assert_eq!(
        failed
            .items
            .iter()
            .map(|e| &e.record.id)
            .collect::<Vec<_>>(),
        vec![&all[0].id]
    );
    let pending = events
        .list_events(EventFilter::Pending, None, 10)
        .await
        .unwrap();
    assert_eq!(pending.items.len(), 5);
    assert!(
        pending
            .items
            .iter()
            .all(|e| e.state == DeliveryState::Pending)
    );
}

/// `purge_delivered` removes only delivered events delivered before the cut.
pub async fn delivered_events_are_purged_by_age((_store, events): BothPorts) {
    let old = event("2501", NOW);
    let new = event("2502", NOW);
    let pending = event("2503", NOW);
    events
        .append(&[old.clone(), new.clone(), pending.clone()])
        .await
        .unwrap();
    events
        .claim_due(NOW, time::Duration::SECOND, 10)
        .await
        .unwrap();
    events
        .settle(&old.id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    events
        .settle(
            &new.id,
            &Settlement::Delivered {
                at: NOW + time::Duration::DAY,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        events
            .purge_delivered(NOW + time::Duration::HOUR)
            .await
            .unwrap(),
        1
    );
    assert!(events.event(&old.id).await.unwrap().is_none());
    assert!(events.event(&new.id).await.unwrap().is_some());
    assert!(events.event(&pending.id).await.unwrap().is_some());
}

/// A `jti` is seen first once; `unsee` makes it new again; it is kept at least `keep_for`.
pub async fn a_jti_is_seen_first_once((_store, events): BothPorts) {
    let keep = time::Duration::days(7);
    assert!(events.first_sight("jti-1", NOW, keep).await.unwrap());
    assert!(
        !events
            .first_sight("jti-1", NOW + time::Duration::days(6), keep)
            .await
            .unwrap()
    );
    assert!(events.first_sight("jti-2", NOW, keep).await.unwrap());
    events.unsee("jti-2").await.unwrap();
    assert!(events.first_sight("jti-2", NOW, keep).await.unwrap());
    // Past its retention a jti may be forgotten (and then is new again); within it, never.
    assert!(
        !events
            .first_sight("jti-2", NOW + keep - time::Duration::SECOND, keep)
            .await
            .unwrap()
    );
}

/// Of concurrent `first_sight` calls for one `jti`, exactly one is first.
pub async fn concurrent_first_sights_admit_exactly_one((_store, events): BothPorts) {
    let firsts = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let events = Arc::clone(&events);
            let firsts = Arc::clone(&firsts);
            tokio::spawn(async move {
                if events
                    .first_sight("jti-race", NOW, time::Duration::days(7))
                    .await
                    .unwrap()
                {
                    firsts.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(firsts.load(Ordering::SeqCst), 1);
}

/// `disabled` (with and without a reason) and `refresh_failing_since` are stored and read back.
pub async fn disabled_and_refresh_failing_round_trip((store, _events): BothPorts) {
    let mut cred = credential("2601", Some("1//a"), "ya29.a");
    cred.disabled = Some(AccountDisabled {
        reason: Some("hijacking".into()),
        since: NOW,
    });
    cred.refresh_failing_since = Some(NOW - time::Duration::HOUR);
    let stored = store.put(&cred).await.unwrap();
    let got = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(got.disabled, cred.disabled);
    assert_eq!(got.refresh_failing_since, cred.refresh_failing_since);
    let mut enabled = got.clone();
    enabled.disabled = Some(AccountDisabled {
        reason: None,
        since: NOW,
    });
    enabled.refresh_failing_since = None;
    store.put(&enabled).await.unwrap();
    let got = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(
        got.disabled,
        Some(AccountDisabled {
            reason: None,
            since: NOW
        })
    );
    assert_eq!(got.refresh_failing_since, None);
    let mut cleared = got;
    cleared.disabled = None;
    store.put(&cleared).await.unwrap();
    assert_eq!(
        store.get(&cred.subject).await.unwrap().unwrap().disabled,
        None
    );
    assert!(stored.version > 0);
}

/// A stored refresh token is found by both of its index keys; another token's keys find nothing of it.
pub async fn a_refresh_token_is_found_by_either_index_key((store, _events): BothPorts) {
    let token = RefreshToken::parse("1//0gAbCdEfGhIjKlMnOpQrStUvWxYz-2701").unwrap();
    let mut cred = credential("2701", None, "ya29.a");
    cred.refresh_token = Some(token.clone());
    store.put(&cred).await.unwrap();
    store
        .put(&credential(
            "2702",
            Some("1//another-token-entirely"),
            "ya29.b",
        ))
        .await
        .unwrap();
    store
        .put(&credential("2703", None, "ya29.c"))
        .await
        .unwrap();
    let keys = index_keys(&token);
    assert_eq!(keys.len(), 2);
    for key in &keys {
        assert_eq!(
            store.find_by_refresh_token(key).await.unwrap(),
            vec![subject("2701")]
        );
    }
    let other = RefreshToken::parse("1//zzzzzzzzzzzzzzzzzzzz").unwrap();
    for key in index_keys(&other) {
        assert!(store.find_by_refresh_token(&key).await.unwrap().is_empty());
    }
    // A new token replaces the index entries: the new one is found.
    let current = store.get(&subject("2701")).await.unwrap().unwrap();
    let mut rotated = current.clone();
    let new_token = RefreshToken::parse("1//0gRotatedTokenValue-0000000000").unwrap();
    rotated.refresh_token = Some(new_token.clone());
    store.put(&rotated).await.unwrap();
    for key in index_keys(&new_token) {
        assert_eq!(
            store.find_by_refresh_token(&key).await.unwrap(),
            vec![subject("2701")]
        );
    }
}
