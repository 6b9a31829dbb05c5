//! The user lock: mutual exclusion across stores (as across instances), transaction semantics, and release by
//! drop, by a killed holder and by timeout.

use std::sync::Arc;
use std::time::Duration;

use offline_access_domain::{CredentialStore, StoreError};
use offline_access_store_postgres::PgOptions;
use tokio::time::timeout;

use crate::support::{TestDb, access_of, credential, keys, raw_client, refresh_of, subject};

/// Long enough that a working lock is never mistaken for a hang; only reached when something is broken.
const GENEROUS: Duration = Duration::from_secs(20);
/// How long we watch a blocked locker to see it stays blocked. Not a speed assertion: it may only wait longer.
const WATCH: Duration = Duration::from_millis(300);

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_locker_waits_until_the_first_releases() {
    let db = TestDb::new();
    // Two stores (pools) on one schema stand for two service instances.
    let first = db.store().await;
    let second = Arc::new(db.store().await);
    let sub = subject("2001");
    let held = first.lock_user(&sub).await.unwrap();
    let mut waiter = tokio::spawn({
        let second = Arc::clone(&second);
        let sub = sub.clone();
        async move {
            let lock = second.lock_user(&sub).await.unwrap();
            lock.release().await.unwrap();
        }
    });
    assert!(
        timeout(WATCH, &mut waiter).await.is_err(),
        "the second locker got the lock while the first held it"
    );
    held.release().await.unwrap();
    timeout(GENEROUS, waiter).await.unwrap().unwrap();
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_of_different_users_do_not_block_each_other() {
    let db = TestDb::new();
    let store = db.store().await;
    let alice = store.lock_user(&subject("2101")).await.unwrap();
    let bob = timeout(GENEROUS, store.lock_user(&subject("2102")))
        .await
        .unwrap()
        .unwrap();
    bob.release().await.unwrap();
    alice.release().await.unwrap();
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn try_lock_user_answers_none_while_another_holds_the_lock() {
    let db = TestDb::new();
    let store = db.store().await;
    let sub = subject("2201");
    let held = store.lock_user(&sub).await.unwrap();
    assert!(store.try_lock_user(&sub).await.unwrap().is_none());
    held.release().await.unwrap();
    let taken = store.try_lock_user(&sub).await.unwrap().unwrap();
    taken.release().await.unwrap();
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_user_without_a_row_can_be_locked_and_writes_under_the_lock_are_durable_at_once() {
    let db = TestDb::new();
    let store = db.store().await;
    let sub = subject("2301");
    // A first sign-in: no row yet.
    let mut lock = store.lock_user(&sub).await.unwrap();
    assert!(lock.get().await.unwrap().is_none());
    let v1 = lock
        .put(&credential("2301", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    assert!(v1.version > 0);
    assert_eq!(
        lock.get().await.unwrap().map(|c| c.version),
        Some(v1.version),
        "the holder reads its own write"
    );
    // Stored before release: a refresh token written under the lock cannot be lost with the lock.
    assert_eq!(store.get(&sub).await.unwrap().unwrap().version, v1.version);
    lock.release().await.unwrap();
    assert_eq!(store.get(&sub).await.unwrap().unwrap().version, v1.version);
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_plain_write_is_not_blocked_by_a_held_lock_and_the_holder_sees_it() {
    let db = TestDb::new();
    let store = db.store().await;
    let sub = subject("2302");
    let v1 = store
        .put(&credential("2302", Some("1//first"), "ya29.a"))
        .await
        .unwrap();
    let mut lock = store.lock_user(&sub).await.unwrap();
    assert_eq!(lock.get().await.unwrap().unwrap().version, v1.version);
    // A sign-in on another instance writes without the lock.
    let mut signed_in = v1.clone();
    signed_in.refresh_token =
        Some(offline_access_domain::RefreshToken::parse("1//second").unwrap());
    timeout(GENEROUS, store.put(&signed_in))
        .await
        .unwrap()
        .unwrap();
    // The holder's stale write conflicts; a re-read under the lock sees the sign-in.
    assert!(matches!(lock.put(&v1).await, Err(StoreError::Conflict)));
    let current = lock.get().await.unwrap().unwrap();
    assert_eq!(refresh_of(&current).as_deref(), Some("1//second"));
    lock.release().await.unwrap();
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn under_the_lock_a_stale_version_conflicts_and_the_refresh_token_rule_holds() {
    let db = TestDb::new();
    let store = db.store().await;
    let sub = subject("2401");
    let v1 = store
        .put(&credential("2401", Some("1//keep"), "ya29.a"))
        .await
        .unwrap();
    let mut lock = store.lock_user(&sub).await.unwrap();
    assert!(matches!(
        lock.put(&credential("2401", Some("1//x"), "ya29.x")).await,
        Err(StoreError::Conflict)
    ));
    let mut refreshed = lock.get().await.unwrap().unwrap();
    refreshed.refresh_token = None;
    refreshed.access = credential("2401", None, "ya29.fresh").access;
    let v2 = lock.put(&refreshed).await.unwrap();
    assert!(v2.version > v1.version);
    lock.release().await.unwrap();
    let read = store.get(&sub).await.unwrap().unwrap();
    assert_eq!(refresh_of(&read).as_deref(), Some("1//keep"));
    assert_eq!(access_of(&read).as_deref(), Some("ya29.fresh"));
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_guard_frees_the_lock_and_its_connection_comes_back_outside_the_transaction() {
    let db = TestDb::new();
    // One lock connection: if the dropped guard's transaction came back to the pool still open, the next lock
    // taken on it would run inside that transaction and the first user's lock would stay held.
    let store = db
        .store_with(
            keys(),
            PgOptions {
                lock_pool_size: 1,
                ..db.options()
            },
        )
        .await;
    let other = db.store().await;
    let (first, second) = (subject("2501"), subject("2502"));
    let mut lock = store.lock_user(&first).await.unwrap();
    let written = lock
        .put(&credential("2501", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    drop(lock);
    let next = timeout(GENEROUS, store.lock_user(&second))
        .await
        .unwrap()
        .unwrap();
    let again = timeout(GENEROUS, other.lock_user(&first))
        .await
        .unwrap()
        .unwrap();
    again.release().await.unwrap();
    next.release().await.unwrap();
    // What was written under the dropped guard is kept (writes are durable when `put` returns).
    assert_eq!(
        other.get(&first).await.unwrap().unwrap().version,
        written.version
    );
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_frees_the_lock_and_its_guard_reports_unavailable() {
    let db = TestDb::new();
    let name = format!("holder_{}", db.schema);
    let options = PgOptions {
        pool_size: 1,
        lock_pool_size: 1,
        ..db.options()
    };
    let holder_store =
        offline_access_store_postgres::PgStore::connect(&db.url_named(&name), keys(), options)
            .await
            .unwrap();
    holder_store.migrate().await.unwrap();
    let other = Arc::new(db.store().await);
    let sub = subject("2601");
    let mut holder = holder_store.lock_user(&sub).await.unwrap();
    let written = holder
        .put(&credential("2601", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    let mut waiter = tokio::spawn({
        let other = Arc::clone(&other);
        let sub = sub.clone();
        async move {
            let mut lock = other.lock_user(&sub).await.unwrap();
            let seen = lock.get().await.unwrap();
            lock.release().await.unwrap();
            seen
        }
    });
    assert!(timeout(WATCH, &mut waiter).await.is_err());
    // The holder's process "crashes": its server session ends.
    let admin = db.raw().await;
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert!(!killed.is_empty());
    let seen = timeout(GENEROUS, waiter).await.unwrap().unwrap();
    // The holder stored its write before it died: the next holder reads it.
    assert_eq!(seen.unwrap().version, written.version);
    assert!(matches!(
        holder.release().await,
        Err(StoreError::Unavailable(_))
    ));
    // The holder's store recovers with new connections.
    holder_store
        .lock_user(&sub)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_longer_than_the_lock_wait_is_unavailable() {
    let db = TestDb::new();
    let store = db.store().await;
    let impatient = db
        .store_with(
            keys(),
            PgOptions {
                lock_wait: Duration::from_millis(100),
                ..db.options()
            },
        )
        .await;
    let sub = subject("2701");
    let held = store.lock_user(&sub).await.unwrap();
    match timeout(GENEROUS, impatient.lock_user(&sub)).await.unwrap() {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("lock"), "{message}"),
        Err(e) => panic!("expected Unavailable, got {e:?}"),
        Ok(_) => panic!("got a lock another holder has"),
    }
    held.release().await.unwrap();
    // The timed-out locker's connection was not left inside its failed transaction.
    impatient
        .lock_user(&sub)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lock_wait_leaves_no_open_transaction_behind() {
    let db = TestDb::new();
    let name = format!("cancel_{}", db.schema);
    let options = PgOptions {
        pool_size: 1,
        lock_pool_size: 1,
        ..db.options()
    };
    let waiter_store =
        offline_access_store_postgres::PgStore::connect(&db.url_named(&name), keys(), options)
            .await
            .unwrap();
    waiter_store.migrate().await.unwrap();
    let holder_store = db.store().await;
    let sub = subject("2801");
    let held = holder_store.lock_user(&sub).await.unwrap();
    // The caller gives up (a request timeout): the lock_user future is dropped mid-wait.
    assert!(timeout(WATCH, waiter_store.lock_user(&sub)).await.is_err());
    held.release().await.unwrap();
    // The waiter's store works and holds no transaction open on the server.
    let lock = timeout(GENEROUS, waiter_store.lock_user(&sub))
        .await
        .unwrap()
        .unwrap();
    lock.release().await.unwrap();
    assert!(waiter_store.get(&sub).await.unwrap().is_none());
    // The cancelled waiter's backend may still be on its way out (its lock freed, its row not yet gone): a
    // connection left inside a transaction stays there, so poll for a while before concluding.
    let admin = raw_client(&db.url).await;
    let mut open = Vec::new();
    for _ in 0..50 {
        open = admin
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
                &[&name],
            )
            .await
            .unwrap();
        if open.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        open.is_empty(),
        "a connection was left inside a transaction"
    );
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_lockers_across_two_stores_never_overlap_and_lose_no_write() {
    const LOCKERS: usize = 10;
    let db = TestDb::new();
    let stores = [Arc::new(db.store().await), Arc::new(db.store().await)];
    let sub = subject("2901");
    let first = stores[0]
        .put(&credential("2901", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..LOCKERS)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let sub = sub.clone();
            tokio::spawn(async move {
                let mut lock = store.lock_user(&sub).await.unwrap();
                let cred = lock.get().await.unwrap().unwrap();
                tokio::task::yield_now().await;
                // Nobody may write between our read and our write: no conflict is possible under the lock.
                let written = lock.put(&cred).await.unwrap();
                lock.release().await.unwrap();
                (cred.version, written.version)
            })
        })
        .collect();
    let mut writes = Vec::new();
    for task in tasks {
        writes.push(timeout(GENEROUS, task).await.unwrap().unwrap());
    }
    // The writes form one chain: each read the version the previous one wrote, from the first write to the last.
    writes.sort_unstable();
    let mut expected = first.version;
    for (read, written) in &writes {
        assert_eq!(
            *read, expected,
            "a locker read a version that was not the latest"
        );
        assert!(*written > *read);
        expected = *written;
    }
    assert_eq!(
        stores[1].get(&sub).await.unwrap().unwrap().version,
        expected
    );
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stampede_over_two_instances_refreshes_an_expired_token_exactly_once() {
    const CALLERS: usize = 40;
    let db = TestDb::new();
    let instances = [Arc::new(db.store().await), Arc::new(db.store().await)];
    let sub = subject("2951");
    let mut expired = credential("2951", Some("1//r"), "ya29.expired");
    expired.access.as_mut().unwrap().expires_at = crate::support::NOW - time::Duration::minutes(5);
    let before = instances[0].put(&expired).await.unwrap();
    let refreshes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // The service's refresh pattern: lock, re-read, refresh only if still stale, write, release.
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let store = Arc::clone(&instances[i % 2]);
            let (sub, refreshes) = (sub.clone(), Arc::clone(&refreshes));
            tokio::spawn(async move {
                let mut lock = store.lock_user(&sub).await.unwrap();
                let mut cred = lock.get().await.unwrap().unwrap();
                let stale = cred
                    .access
                    .as_ref()
                    .is_none_or(|a| !a.is_fresh(crate::support::NOW, time::Duration::minutes(1)));
                if stale {
                    refreshes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    cred.access = credential("2951", None, "ya29.refreshed").access;
                    cred.refresh_token = None;
                    lock.put(&cred).await.unwrap();
                }
                let token = access_of(&lock.get().await.unwrap().unwrap());
                lock.release().await.unwrap();
                token
            })
        })
        .collect();
    for task in tasks {
        let token = timeout(GENEROUS, task).await.unwrap().unwrap();
        assert_eq!(token.as_deref(), Some("ya29.refreshed"));
    }
    assert_eq!(refreshes.load(std::sync::atomic::Ordering::SeqCst), 1);
    let stored = instances[1].get(&sub).await.unwrap().unwrap();
    assert!(stored.version > before.version);
    assert_eq!(refresh_of(&stored).as_deref(), Some("1//r"));
}
