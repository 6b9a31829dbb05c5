//! The outbox, the RISC `jti` register and the refresh-token index on PostgreSQL: what the shared event contract
//! cannot see (two instances on one outbox, a new pool, atomicity with the credential write, indexes, purges).

use std::collections::BTreeSet;
use std::sync::Arc;

use offline_access_domain::events::{EventCounts, EventFilter, EventRecord, EventStore};
use offline_access_domain::risc::index_keys;
use offline_access_domain::testkit::event;
use offline_access_domain::{CredentialStore, RefreshToken, StoreError};
use tokio::sync::Barrier;

use crate::support::{KEY_B, NOW, TestDb, credential, ring, subject};

/// How many events the outbox holds, counted by SQL.
async fn outbox_rows(db: &TestDb) -> i64 {
    db.raw()
        .await
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".outbox", db.schema),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A row's index keys (those set) and the whole row as JSON text.
async fn index_columns(db: &TestDb, sub: &str) -> (Vec<String>, String) {
    let row = db
        .raw()
        .await
        .query_one(
            &format!(
                "SELECT rt_prefix_key, rt_hash_key, row_to_json(c)::text FROM \"{}\".credentials c \
                 WHERE subject = $1",
                db.schema
            ),
            &[&sub],
        )
        .await
        .unwrap();
    let keys = [row.get::<_, Option<String>>(0), row.get(1)];
    (keys.into_iter().flatten().collect(), row.get(2))
}

/// The plan PostgreSQL uses for `sql` as a prepared statement with a parameter (a generic plan, as the store's
/// prepared statements get), sequential scans priced out as on a big table.
async fn generic_plan(db: &TestDb, sql: &str, argument: &str) -> String {
    let raw = db.raw().await;
    raw.batch_execute(&format!(
        "SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan; PREPARE q(text) AS {sql}"
    ))
    .await
    .unwrap();
    raw.simple_query(&format!("EXPLAIN EXECUTE q('{argument}')"))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_claiming_at_once_get_disjoint_events_and_together_all_of_them() {
    const EVENTS: usize = 100;
    let db = TestDb::new();
    // Two stores, two pools: two service instances on one outbox.
    let instances = [Arc::new(db.store().await), Arc::new(db.store().await)];
    let all: Vec<EventRecord> = (0..EVENTS)
        .map(|i| event(&format!("{}", 7000 + i), NOW))
        .collect();
    instances[0].append(&all).await.unwrap();
    let start = Arc::new(Barrier::new(instances.len()));
    let claimers: Vec<_> = instances
        .iter()
        .map(|store| {
            let (store, start) = (Arc::clone(store), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                let mut claimed = Vec::new();
                loop {
                    let batch = store
                        .claim_due(NOW + time::Duration::SECOND, time::Duration::HOUR, 7)
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return claimed;
                    }
                    claimed.extend(batch.into_iter().map(|e| e.record.id));
                }
            })
        })
        .collect();
    let mut got = Vec::new();
    for claimer in claimers {
        got.push(claimer.await.unwrap());
    }
    let (a, b): (BTreeSet<String>, BTreeSet<String>) = (
        got[0].iter().cloned().collect(),
        got[1].iter().cloned().collect(),
    );
    assert_eq!(
        a.len() + b.len(),
        got[0].len() + got[1].len(),
        "claimed twice by one instance"
    );
    assert!(
        a.is_disjoint(&b),
        "{} events claimed by both instances",
        a.intersection(&b).count()
    );
    let union: BTreeSet<String> = a.union(&b).cloned().collect();
    assert_eq!(
        union,
        all.iter().map(|e| e.id.clone()).collect::<BTreeSet<_>>()
    );
    // Every one is leased now: nothing is due for either instance until the lease ends.
    for store in &instances {
        assert!(
            store
                .claim_due(NOW + time::Duration::MINUTE, time::Duration::HOUR, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn events_written_with_a_change_survive_a_new_pool() {
    let db = TestDb::new();
    let first = db.store().await;
    let signed_in = [
        event("7101", NOW),
        event("7101", NOW + time::Duration::SECOND),
    ];
    let stored = first
        .put_with(&credential("7101", Some("1//r"), "ya29.a"), &signed_in)
        .await
        .unwrap();
    let forgotten = event("7101", NOW + time::Duration::seconds(2));
    first
        .delete_with(
            &stored.subject,
            stored.version,
            std::slice::from_ref(&forgotten),
        )
        .await
        .unwrap();
    first.close();
    drop(first);

    // Another pool (a restarted instance) finds them, as written, pending and due.
    let second = db.store().await;
    let page = second
        .list_events(EventFilter::All, None, 10)
        .await
        .unwrap();
    let records: Vec<&EventRecord> = page.items.iter().map(|e| &e.record).collect();
    assert_eq!(records, vec![&signed_in[0], &signed_in[1], &forgotten]);
    let due = second
        .claim_due(NOW + time::Duration::seconds(2), time::Duration::MINUTE, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 3);
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_write_that_fails_records_no_event() {
    let db = TestDb::new();
    let store = db.store().await;
    let stored = store
        .put(&credential("7201", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    // A second first write (the INSERT path), a stale version (the UPDATE path), a delete at another version and
    // of a user without a row.
    let again = credential("7201", Some("1//other"), "ya29.b");
    assert!(matches!(
        store.put_with(&again, &[event("7201", NOW)]).await,
        Err(StoreError::Conflict)
    ));
    let mut stale = stored.clone();
    stale.version += 1;
    assert!(matches!(
        store.put_with(&stale, &[event("7201", NOW)]).await,
        Err(StoreError::Conflict)
    ));
    for (sub, version) in [("7201", stored.version + 1), ("7202", 1)] {
        assert!(matches!(
            store
                .delete_with(&subject(sub), version, &[event(sub, NOW)])
                .await,
            Err(StoreError::Conflict)
        ));
    }
    // A row sealed under a key this store does not have is never overwritten, and reports no event either.
    let other = db
        .store_with(ring(&format!("b:{KEY_B}")), db.options())
        .await;
    let foreign = other
        .put(&credential("7203", Some("1//b"), "ya29.b"))
        .await
        .unwrap();
    assert!(matches!(
        store.put_with(&foreign, &[event("7203", NOW)]).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(outbox_rows(&db).await, 0);
    assert_eq!(store.counts().await.unwrap(), EventCounts::default());
    assert_eq!(
        store.get(&stored.subject).await.unwrap().unwrap().version,
        stored.version
    );
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn an_event_that_cannot_be_recorded_undoes_the_change_it_reports() {
    let db = TestDb::new();
    let store = db.store().await;
    // An event id already in the outbox: its insert fails, and with it the write it came with.
    let taken = event("7301", NOW);
    store.append(std::slice::from_ref(&taken)).await.unwrap();
    let first = store
        .put_with(
            &credential("7301", Some("1//r"), "ya29.a"),
            std::slice::from_ref(&taken),
        )
        .await;
    assert!(first.is_err(), "{first:?}");
    assert!(store.get(&subject("7301")).await.unwrap().is_none());
    let stored = store
        .put(&credential("7301", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    let mut next = stored.clone();
    next.refresh_token = Some(RefreshToken::parse("1//rotated").unwrap());
    assert!(
        store
            .put_with(&next, std::slice::from_ref(&taken))
            .await
            .is_err()
    );
    assert!(
        store
            .delete_with(
                &stored.subject,
                stored.version,
                std::slice::from_ref(&taken)
            )
            .await
            .is_err()
    );
    let read = store.get(&stored.subject).await.unwrap().unwrap();
    assert_eq!(read.version, stored.version);
    assert_eq!(read.refresh_token.unwrap().expose_secret(), "1//r");
    assert_eq!(outbox_rows(&db).await, 1);
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn refresh_tokens_are_found_through_the_indexes_by_their_digests_only() {
    let db = TestDb::new();
    let store = db.store().await;
    let token = "1//0gIndexedRefreshToken-7401";
    let stored = store
        .put(&credential("7401", Some(token), "ya29.a"))
        .await
        .unwrap();
    let keys = index_keys(stored.refresh_token.as_ref().unwrap());
    let (stored_keys, row) = index_columns(&db, "7401").await;
    assert_eq!(stored_keys, keys);
    assert!(!row.contains(&token[..16]), "the prefix is in clear: {row}");
    // A write without a refresh token keeps the stored one, and its keys.
    let mut without = stored.clone();
    without.refresh_token = None;
    store.put(&without).await.unwrap();
    assert_eq!(index_columns(&db, "7401").await.0, keys);
    assert_eq!(
        store.find_by_refresh_token(&keys[1]).await.unwrap(),
        vec![subject("7401")]
    );
    // The lookup, as prepared, reads the two indexes and nothing else.
    let plan = generic_plan(&db, &format!(
        "SELECT subject FROM \"{}\".credentials WHERE rt_prefix_key = $1 OR rt_hash_key = $1 ORDER BY subject",
        db.schema
    ), &keys[0])
    .await;
    assert!(plan.contains("credentials_rt_prefix_key"), "{plan}");
    assert!(plan.contains("credentials_rt_hash_key"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    // A token shorter than RISC's prefix has a hash key only.
    let short = store
        .put(&credential("7402", Some("1//short"), "ya29.b"))
        .await
        .unwrap();
    let short_keys = index_keys(short.refresh_token.as_ref().unwrap());
    assert_eq!(short_keys.len(), 1);
    assert_eq!(index_columns(&db, "7402").await.0, short_keys);
    assert_eq!(
        store.find_by_refresh_token(&short_keys[0]).await.unwrap(),
        vec![subject("7402")]
    );
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn the_claim_reads_the_due_index() {
    let db = TestDb::new();
    let store = db.store().await;
    store.append(&[event("7501", NOW)]).await.unwrap();
    let plan = generic_plan(
        &db,
        &format!(
            "SELECT id FROM \"{0}\".outbox WHERE state = 'pending' AND next_attempt_at <= $1::timestamptz \
             AND (lease_until IS NULL OR lease_until <= $1::timestamptz) ORDER BY next_attempt_at, id LIMIT 10 \
             FOR UPDATE SKIP LOCKED",
            db.schema
        ),
        "2026-11-24 12:00:00+00",
    )
    .await;
    assert!(plan.contains("outbox_due"), "{plan}");
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn expired_jtis_are_purged_in_bounded_batches_and_count_as_new() {
    /// Most expired `jti`s one purge deletes (the store's batch).
    const BATCH: i64 = 1000;
    let db = TestDb::new();
    let store = db.store().await;
    let keep = time::Duration::days(7);
    let raw = db.raw().await;
    raw.execute(
        &format!(
            "INSERT INTO \"{}\".risc_jtis (jti, seen_at) \
             SELECT 'old-' || n, $1::timestamptz FROM generate_series(1, $2::bigint) AS n \
             UNION ALL SELECT 'recent-' || n, $3::timestamptz FROM generate_series(1, 10) AS n",
            db.schema
        ),
        &[
            &(NOW - keep - time::Duration::DAY),
            &(BATCH + 500),
            &(NOW - time::Duration::DAY),
        ],
    )
    .await
    .unwrap();
    // The store's first `first_sight` purges one batch; the recent ones stay.
    assert!(store.first_sight("new-1", NOW, keep).await.unwrap());
    let count = |prefix: &'static str| {
        let sql = format!(
            "SELECT count(*) FROM \"{}\".risc_jtis WHERE jti LIKE $1",
            db.schema
        );
        let raw = &raw;
        async move {
            raw.query_one(&sql, &[&format!("{prefix}%")])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("old-").await, 500);
    assert_eq!(count("recent-").await, 10);
    assert_eq!(count("new-").await, 1);
    // Within its retention a jti is a duplicate; past it, new again (purged or not yet).
    assert!(!store.first_sight("recent-1", NOW, keep).await.unwrap());
    assert!(store.first_sight("old-1", NOW, keep).await.unwrap());
    assert!(!store.first_sight("old-1", NOW, keep).await.unwrap());
}
