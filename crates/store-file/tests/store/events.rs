//! The outbox and the `jti` register: the event contract suite (on the in-memory reference store too), the
//! on-disk layout, reopening, and two stores on one directory.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use offline_access_domain::events::{
    DeliveryState, EventCounts, EventFilter, EventRecord, EventStore, Settlement,
};
use offline_access_domain::memory::MemoryStore;
use offline_access_domain::testkit::{
    self, BothPorts, CANARY_ACCESS, CANARY_REFRESH, NOW, canary_credential, event, subject,
};
use offline_access_domain::{CredentialStore, StoreError};
use offline_access_store_file::FileStore;

use crate::helpers::{KEY_A, all_files, file_names, open};

fn both(store: &FileStore) -> BothPorts {
    (Arc::new(store.clone()), Arc::new(store.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_memory_store_meets_the_event_contract() {
    testkit::run_event_contract(|| async {
        let store = MemoryStore::new();
        (
            Arc::new(store.clone()) as Arc<dyn CredentialStore>,
            Arc::new(store) as Arc<dyn EventStore>,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_file_store_meets_the_event_contract() {
    let parent = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    testkit::run_event_contract(|| {
        let dir = parent
            .path()
            .join(n.fetch_add(1, Ordering::SeqCst).to_string());
        async move { both(&open(&dir, KEY_A)) }
    })
    .await;
}

/// The path below `due/` of the marker of an event due at `at`: its time bucket, then the time in unix milliseconds
/// (16 hex digits) and the id.
pub(crate) fn marker_at(event: &EventRecord, at: time::OffsetDateTime) -> String {
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    format!("t{:012x}/{ms:016x}.{}", ms >> 16, event.id)
}

/// The marker of a new event (first due when it was made).
pub(crate) fn marker(event: &EventRecord) -> String {
    marker_at(event, event.created_at)
}

/// Every due marker below `due`, as paths below it, sorted.
pub(crate) fn markers(due: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for name in file_names(due) {
        if due.join(&name).is_dir() {
            found.extend(
                file_names(&due.join(&name))
                    .into_iter()
                    .map(|inner| format!("{name}/{inner}")),
            );
        } else {
            found.push(name);
        }
    }
    found.sort();
    found
}

/// The ids of every event in the store, oldest first.
pub(crate) async fn all_event_ids(events: &dyn EventStore) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = events
            .list_events(EventFilter::All, cursor, 50)
            .await
            .unwrap();
        ids.extend(page.items.into_iter().map(|e| e.record.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// Claims (leases for an hour) the events due a second after [`NOW`], `limit` at a time, until none is left; their
/// ids.
pub(crate) async fn claim_all(store: &dyn EventStore, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let claimed = store
            .claim_due(NOW + time::Duration::SECOND, time::Duration::HOUR, limit)
            .await
            .unwrap();
        if claimed.is_empty() {
            return ids;
        }
        ids.extend(claimed.into_iter().map(|e| e.record.id));
    }
}

/// The names in `outbox/leases/`: `<until>.<write id>`, one per batch whose events are not all settled.
fn lease_names(outbox: &std::path::Path) -> Vec<String> {
    file_names(&outbox.join("leases"))
}

#[tokio::test]
async fn an_event_gets_its_file_when_it_is_settled_and_no_outbox_file_holds_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let e1 = event("61", NOW);
    let stored = store
        .put_with(&canary_credential("61"), std::slice::from_ref(&e1))
        .await
        .unwrap();
    let outbox = dir.path().join("outbox");
    let inode = |path: &std::path::Path| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
    };
    // The put's entry stays in `tentative/`: it is the record's file, so filing knows the write landed.
    let tentative = file_names(&outbox.join("tentative"));
    assert_eq!(tentative.len(), 1);
    assert_eq!(
        inode(&outbox.join("tentative").join(&tentative[0])),
        inode(&store.credential_path(&stored.subject))
    );
    assert!(file_names(&outbox.join("incoming")).is_empty());
    let e2 = event("61", NOW + time::Duration::SECOND);
    store
        .delete_with(&stored.subject, stored.version, std::slice::from_ref(&e2))
        .await
        .unwrap();
    // The delete moved the put's entry into `incoming/` before its own write, and confirmed its own events there.
    assert!(file_names(&outbox.join("tentative")).is_empty());
    assert_eq!(file_names(&outbox.join("incoming")).len(), 2);
    assert_eq!(store.counts().await.unwrap().pending, 2);
    assert_eq!(all_event_ids(&store).await, [e1.id.clone(), e2.id.clone()]);
    // Filed: each batch in `filed/` and named, claimed by no one, in `leases/` (a second name of the batch); no
    // event file, no due marker.
    assert!(file_names(&outbox.join("incoming")).is_empty());
    assert!(file_names(&outbox.join("events")).is_empty());
    assert!(markers(&outbox.join("due")).is_empty());
    let names = lease_names(&outbox);
    assert_eq!(names.len(), 2);
    for name in &names {
        let (until, write_id) = name.split_once('.').unwrap();
        assert_eq!(until, "0000000000000000");
        assert_eq!(
            inode(&outbox.join("leases").join(name)),
            inode(&outbox.join("filed").join(write_id))
        );
    }
    for path in all_files(dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        for canary in [CANARY_REFRESH, CANARY_ACCESS, "canary"] {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{canary} in {}",
                path.display()
            );
        }
    }
    // A claim renames the names to the lease's end (unix milliseconds, 16 hex digits) and writes no event file.
    let (at, lease) = (NOW + time::Duration::HOUR, time::Duration::MINUTE);
    let claimed = store.claim_due(at, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let until = format!("{:016x}", (at + lease).unix_timestamp_nanos() / 1_000_000);
    assert!(lease_names(&outbox).iter().all(|n| n.starts_with(&until)));
    assert!(file_names(&outbox.join("events")).is_empty());
    // Settled: delivered, the event gets its file, and its batch and name go.
    store
        .settle(&e1.id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    let event_file = |e: &EventRecord| outbox.join("events").join(format!("{}.json", e.id));
    let settled: serde_json::Value =
        serde_json::from_slice(&std::fs::read(event_file(&e1)).unwrap()).unwrap();
    assert_eq!(settled["id"], e1.id);
    assert_eq!(settled["body"], e1.body);
    assert_eq!(settled["state"], "delivered");
    assert!(settled.get("leased_until").is_none(), "{settled}");
    assert_eq!(lease_names(&outbox).len(), 1);
    assert_eq!(file_names(&outbox.join("filed")).len(), 1);
    // To be retried: a pending file and a due marker, a second name of it; its batch stays as its durable copy.
    let retry = NOW + time::Duration::hours(2);
    store
        .settle(
            &e2.id,
            &Settlement::RetryAt {
                at: retry,
                error: "HTTP 503".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(markers(&outbox.join("due")), [marker_at(&e2, retry)]);
    assert_eq!(
        inode(&outbox.join("due").join(marker_at(&e2, retry))),
        inode(&event_file(&e2))
    );
    assert!(lease_names(&outbox).is_empty());
    assert_eq!(file_names(&outbox.join("filed")).len(), 1);
    assert!(
        file_names(&outbox).iter().all(|n| !n.starts_with(".tmp.")),
        "no temp file left"
    );
    assert_eq!(
        store.counts().await.unwrap(),
        EventCounts {
            pending: 1,
            delivered: 1,
            failed: 0
        }
    );
}

#[tokio::test]
async fn a_put_with_events_gives_its_record_a_second_name_and_filing_keeps_only_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let events = [event("63", NOW), event("64", NOW)];
    let first = store
        .put_with(&canary_credential("63"), &events[..1])
        .await
        .unwrap();
    store
        .put_with(&canary_credential("64"), &events[1..])
        .await
        .unwrap();
    let outbox = dir.path().join("outbox");
    let inode = |path: &std::path::Path| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
    };
    // No file of its own: the tentative entry is the record's file (the events ride in it).
    let tentative = file_names(&outbox.join("tentative"));
    assert_eq!(tentative.len(), 2);
    let record = store.credential_path(&first.subject);
    assert!(
        tentative
            .iter()
            .any(|name| inode(&outbox.join("tentative").join(name)) == inode(&record)),
        "one tentative entry is the record itself"
    );
    assert!(file_names(&outbox.join("incoming")).is_empty());
    // Filing puts both records' events into one new batch that holds no token, sealed or not, and drops the
    // records' second names.
    assert_eq!(store.counts().await.unwrap().pending, 2);
    assert!(file_names(&outbox.join("tentative")).is_empty());
    assert!(file_names(&outbox.join("incoming")).is_empty());
    let filed = file_names(&outbox.join("filed"));
    assert_eq!(filed.len(), 1);
    let batch: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outbox.join("filed").join(&filed[0])).unwrap())
            .unwrap();
    assert_eq!(batch["events"].as_array().unwrap().len(), 2);
    assert!(batch.get("refresh_token").is_none() && batch.get("access").is_none());
    // The record reads as before, and its next write without events drops them.
    let stored = store.get(&first.subject).await.unwrap().unwrap();
    assert_eq!(stored.version, first.version);
    store.put(&stored).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert!(json.get("events").is_none() && json.get("write_id").is_none());
    assert_eq!(all_event_ids(&store).await.len(), 2);
}

#[tokio::test]
async fn settling_leaves_the_filing_of_new_events_to_the_next_claim() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let (e1, e2) = (event("65", NOW), event("66", NOW));
    store
        .put_with(&canary_credential("65"), std::slice::from_ref(&e1))
        .await
        .unwrap();
    assert_eq!(claim_all(&store, 10).await, std::slice::from_ref(&e1.id));
    store
        .put_with(&canary_credential("66"), std::slice::from_ref(&e2))
        .await
        .unwrap();
    let tentative = dir.path().join("outbox").join("tentative");
    store
        .settle(&e1.id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    assert_eq!(
        file_names(&tentative).len(),
        1,
        "not filed by the settlement"
    );
    assert_eq!(claim_all(&store, 10).await, std::slice::from_ref(&e2.id));
    assert!(file_names(&tentative).is_empty());
}

#[tokio::test]
async fn a_write_without_events_touches_no_outbox_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let v1 = store.put(&canary_credential("62")).await.unwrap();
    let v2 = store.put_with(&v1, &[]).await.unwrap();
    store
        .delete_with(&v2.subject, v2.version, &[])
        .await
        .unwrap();
    let outbox = dir.path().join("outbox");
    for sub in ["tentative", "incoming", "events", "due"] {
        assert!(file_names(&outbox.join(sub)).is_empty(), "{sub}");
    }
    // The record of a write without events carries no write id.
    let v3 = store.put(&canary_credential("62")).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.credential_path(&v3.subject)).unwrap())
            .unwrap();
    assert!(json.get("write_id").is_none());
    assert_eq!(store.counts().await.unwrap(), EventCounts::default());
}

#[tokio::test]
async fn an_event_id_that_is_not_one_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let mut bad = event("63", NOW);
    bad.id = "../credentials/x".into();
    assert!(matches!(
        store
            .put_with(&canary_credential("63"), std::slice::from_ref(&bad))
            .await,
        Err(StoreError::Other(_))
    ));
    assert!(store.get(&subject("63")).await.unwrap().is_none());
    assert!(matches!(
        store.append(std::slice::from_ref(&bad)).await,
        Err(StoreError::Other(_))
    ));
    assert_eq!(store.counts().await.unwrap(), EventCounts::default());
    assert!(store.event(&bad.id).await.unwrap().is_none());
    assert!(!store.replay(&bad.id, NOW).await.unwrap());
    assert!(matches!(
        store.list_events(EventFilter::All, Some(bad.id), 10).await,
        Err(StoreError::Other(_))
    ));
}

#[tokio::test]
async fn events_and_their_states_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (written, delivered, retried) = {
        let store = open(dir.path(), KEY_A);
        let a = event("64", NOW);
        let b = event("64", NOW + time::Duration::SECOND);
        let c = event("65", NOW + time::Duration::seconds(2));
        let stored = store
            .put_with(&canary_credential("64"), std::slice::from_ref(&a))
            .await
            .unwrap();
        store
            .delete_with(&stored.subject, stored.version, std::slice::from_ref(&b))
            .await
            .unwrap();
        store.append(std::slice::from_ref(&c)).await.unwrap();
        assert_eq!(
            store
                .claim_due(NOW + time::Duration::MINUTE, time::Duration::HOUR, 10)
                .await
                .unwrap()
                .len(),
            3
        );
        store
            .settle(&a.id, &Settlement::Delivered { at: NOW })
            .await
            .unwrap();
        store
            .settle(
                &b.id,
                &Settlement::RetryAt {
                    at: NOW + time::Duration::HOUR,
                    error: "HTTP 503".into(),
                },
            )
            .await
            .unwrap();
        (vec![a.id.clone(), b.id.clone(), c.id.clone()], a, b)
    };
    let store = open(dir.path(), KEY_A);
    assert_eq!(all_event_ids(&store).await, written);
    assert_eq!(
        store.counts().await.unwrap(),
        EventCounts {
            pending: 2,
            delivered: 1,
            failed: 0
        }
    );
    let got = store.event(&delivered.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.delivered_at, got.record),
        (DeliveryState::Delivered, Some(NOW), delivered)
    );
    let got = store.event(&retried.id).await.unwrap().unwrap();
    assert_eq!(got.attempts, 1);
    assert_eq!(got.last_error.as_deref(), Some("HTTP 503"));
    // The lease taken before the reopen still holds for the event not settled; the retried one is due later.
    assert!(
        store
            .claim_due(NOW + time::Duration::minutes(30), time::Duration::HOUR, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due: Vec<String> = store
        .claim_due(NOW + time::Duration::hours(2), time::Duration::HOUR, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.record.id)
        .collect();
    // In the order they fell due (as on Postgres): the appended one, then the one retried an hour later.
    assert_eq!(due, [written[2].clone(), written[1].clone()]);
}

/// What a power cut can do to the files the outbox writes without fsync, done by hand: `open` files the kept
/// batches again, so no pending event is lost and none is doubled.
#[tokio::test]
async fn a_pending_event_whose_unsynced_file_or_name_a_power_cut_tore_or_lost_is_restored_at_open()
{
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    // All due by the time `claim_all` claims.
    let (torn, lost, kept) = (event("66", NOW), event("66", NOW), event("66", NOW));
    let unnamed = event("67", NOW);
    {
        let store = open(dir.path(), KEY_A);
        store
            .put_with(
                &canary_credential("66"),
                &[torn.clone(), lost.clone(), kept.clone()],
            )
            .await
            .unwrap();
        // Claimed and to be retried at once: each a pending file and a marker, written without fsync.
        let claimed = store
            .claim_due(NOW, time::Duration::MINUTE, 10)
            .await
            .unwrap();
        let retries: Vec<_> = claimed
            .into_iter()
            .map(|e| {
                let retry = Settlement::RetryAt {
                    at: NOW,
                    error: "HTTP 503".into(),
                };
                (e.record.id, retry)
            })
            .collect();
        store.settle_all(&retries).await.unwrap();
        store
            .put_with(&canary_credential("67"), std::slice::from_ref(&unnamed))
            .await
            .unwrap();
        assert_eq!(store.counts().await.unwrap().pending, 4);
        assert_eq!(file_names(&outbox.join("filed")).len(), 2);
        assert_eq!(lease_names(&outbox).len(), 1);
    }
    let event_file = |id: &str| outbox.join("events").join(format!("{id}.json"));
    std::fs::write(event_file(&torn.id), b"").unwrap();
    std::fs::remove_file(event_file(&lost.id)).unwrap();
    std::fs::remove_file(outbox.join("due").join(marker(&lost))).unwrap();
    for name in lease_names(&outbox) {
        std::fs::remove_file(outbox.join("leases").join(name)).unwrap();
    }
    let store = open(dir.path(), KEY_A);
    assert_eq!(store.counts().await.unwrap().pending, 4);
    for e in [&torn, &lost, &kept, &unnamed] {
        assert_eq!(&store.event(&e.id).await.unwrap().unwrap().record, e);
    }
    let mut claimed = claim_all(&store, 10).await;
    claimed.sort();
    let mut expected = vec![
        torn.id.clone(),
        lost.id.clone(),
        kept.id.clone(),
        unnamed.id.clone(),
    ];
    expected.sort();
    assert_eq!(claimed, expected, "each once");
    // Delivered: the batches are released, and a reopen restores nothing.
    let outcomes: Vec<_> = expected
        .iter()
        .map(|id| (id.clone(), Settlement::Delivered { at: NOW }))
        .collect();
    store.settle_all(&outcomes).await.unwrap();
    assert!(file_names(&outbox.join("filed")).is_empty());
    let reopened = open(dir.path(), KEY_A);
    assert_eq!(reopened.counts().await.unwrap().delivered, 4);
    assert!(claim_all(&reopened, 10).await.is_empty());
}

/// A crash while a claimed event's file was being created at its settlement leaves it torn, with its batch still
/// named: the next `open` rewrites it whole from the batch, pending, leased as the claim was.
#[tokio::test]
async fn an_event_file_torn_while_settling_is_rewritten_from_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let e = event("68", NOW);
    {
        let store = open(dir.path(), KEY_A);
        store
            .put_with(&canary_credential("68"), std::slice::from_ref(&e))
            .await
            .unwrap();
        assert_eq!(
            store
                .claim_due(NOW, time::Duration::SECOND, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }
    let outbox = dir.path().join("outbox");
    std::fs::write(
        outbox.join("events").join(format!("{}.json", e.id)),
        b"{\"format\":1,\"id\":\"ev",
    )
    .unwrap();
    let store = open(dir.path(), KEY_A);
    assert_eq!(store.counts().await.unwrap().pending, 1);
    assert_eq!(store.event(&e.id).await.unwrap().unwrap().record, e);
    // Not before its lease ends.
    assert!(
        store
            .claim_due(NOW, time::Duration::HOUR, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(claim_all(&store, 10).await, vec![e.id.clone()]);
}

/// An event file damaged between the claim and the settlement does not stop the other settlements of the round.
#[tokio::test]
async fn a_damaged_event_file_does_not_stop_the_others_settlements() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let (damaged, fine) = (event("69", NOW), event("69", NOW));
    store
        .append(&[damaged.clone(), fine.clone()])
        .await
        .unwrap();
    assert_eq!(claim_all(&store, 10).await.len(), 2);
    std::fs::write(
        dir.path()
            .join("outbox")
            .join("events")
            .join(format!("{}.json", damaged.id)),
        b"{",
    )
    .unwrap();
    store
        .settle_all(&[
            (damaged.id.clone(), Settlement::Delivered { at: NOW }),
            (fine.id.clone(), Settlement::Delivered { at: NOW }),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.event(&fine.id).await.unwrap().unwrap().state,
        DeliveryState::Delivered
    );
}

/// A delivered event whose batch another pending event still keeps is purged and leaves the batch too: a reopen
/// does not file it again.
#[tokio::test]
async fn a_purged_event_leaves_the_batch_that_another_pending_event_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let (first, second) = (event("67", NOW), event("67", NOW + time::Duration::SECOND));
    store
        .put_with(&canary_credential("67"), &[first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(claim_all(&store, 10).await.len(), 2);
    store
        .settle(&first.id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    let later = NOW + time::Duration::DAY;
    assert_eq!(store.purge_delivered(later).await.unwrap(), 1);
    drop(store);
    let store = open(dir.path(), KEY_A);
    assert!(
        store.event(&first.id).await.unwrap().is_none(),
        "not filed again"
    );
    assert_eq!(
        store.event(&second.id).await.unwrap().unwrap().state,
        DeliveryState::Pending
    );
    store
        .settle(&second.id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    assert!(file_names(&dir.path().join("outbox").join("filed")).is_empty());
    assert_eq!(store.purge_delivered(later).await.unwrap(), 1);
    assert_eq!(store.counts().await.unwrap(), EventCounts::default());
}

#[tokio::test]
async fn settling_releases_a_batch_by_the_ids_it_was_filed_with_without_reading_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let events = [event("68", NOW), event("68", NOW + time::Duration::SECOND)];
    store
        .put_with(&canary_credential("68"), &events)
        .await
        .unwrap();
    assert_eq!(claim_all(&store, 10).await.len(), 2);
    let filed = dir.path().join("outbox").join("filed");
    let names = file_names(&filed);
    assert_eq!(names.len(), 1);
    // Damaged after this process filed it: settling asks the events' files, not the batch, whether it is still held.
    std::fs::write(filed.join(&names[0]), b"not a batch").unwrap();
    store
        .settle(&events[0].id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    assert_eq!(file_names(&filed), names, "kept while an event is pending");
    store
        .settle(&events[1].id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    assert!(file_names(&filed).is_empty());
    // A purge that rewrites a kept batch: the batch is then read again (another process may hold the old list).
    let more = [event("69", NOW), event("69", NOW + time::Duration::SECOND)];
    store
        .put_with(&canary_credential("69"), &more)
        .await
        .unwrap();
    assert_eq!(claim_all(&store, 10).await.len(), 2);
    store
        .settle(&more[0].id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    assert_eq!(
        store
            .purge_delivered(NOW + time::Duration::DAY)
            .await
            .unwrap(),
        3,
        "the first two and the delivered one of these"
    );
    assert_eq!(file_names(&filed).len(), 1);
    store
        .settle(&more[1].id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    assert!(file_names(&filed).is_empty());
    assert_eq!(store.counts().await.unwrap().pending, 0);
}

#[tokio::test]
async fn a_claim_reads_no_event_waiting_for_a_later_attempt_and_moves_an_early_marker() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let events: Vec<EventRecord> = (0..20)
        .map(|i| event("70", NOW + time::Duration::milliseconds(i)))
        .collect();
    store
        .put_with(&canary_credential("70"), &events)
        .await
        .unwrap();
    let claimed = claim_all(&store, 100).await;
    assert_eq!(claimed.len(), 20);
    let later = NOW + time::Duration::HOUR;
    let retry = || Settlement::RetryAt {
        at: later,
        error: "HTTP 503".into(),
    };
    let outcomes: Vec<_> = claimed.iter().map(|id| (id.clone(), retry())).collect();
    store.settle_all(&outcomes).await.unwrap();
    let due = dir.path().join("outbox").join("due");
    let at_later = |e: &EventRecord| marker_at(e, later);
    let mut expected: Vec<String> = events.iter().map(at_later).collect();
    expected.sort();
    assert_eq!(
        markers(&due),
        expected,
        "each marker moved to the next attempt"
    );
    let claimed_halfway = || async {
        store
            .claim_due(
                NOW + time::Duration::minutes(30),
                time::Duration::MINUTE,
                100,
            )
            .await
            .unwrap()
            .len()
    };
    let reads = store.event_reads();
    assert_eq!(claimed_halfway().await, 0);
    assert_eq!(store.event_reads(), reads, "no event file read");
    // A marker left at the old time (a crash between the event's rewrite and the marker's move) is read once and
    // moved.
    std::fs::create_dir_all(due.join(marker(&events[0])).parent().unwrap()).unwrap();
    std::fs::rename(due.join(at_later(&events[0])), due.join(marker(&events[0]))).unwrap();
    for _ in 0..2 {
        assert_eq!(claimed_halfway().await, 0);
        assert_eq!(store.event_reads(), reads + 1);
    }
    assert_eq!(markers(&due), expected);
    // An earlier version's marker (the id alone) is read and moved the same way.
    std::fs::rename(due.join(at_later(&events[1])), due.join(&events[1].id)).unwrap();
    assert_eq!(claimed_halfway().await, 0);
    assert_eq!(markers(&due), expected);
    assert_eq!(
        store
            .claim_due(later, time::Duration::MINUTE, 100)
            .await
            .unwrap()
            .len(),
        20
    );
}

#[tokio::test]
async fn counts_are_scanned_once_then_moved_along_with_the_store_s_own_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let events = [event("71", NOW), event("71", NOW + time::Duration::SECOND)];
    store
        .put_with(&canary_credential("71"), &events)
        .await
        .unwrap();
    let count = |pending, delivered, failed| EventCounts {
        pending,
        delivered,
        failed,
    };
    assert_eq!(store.counts().await.unwrap(), count(2, 0, 0));
    let reads = store.event_reads();
    assert_eq!(store.counts().await.unwrap(), count(2, 0, 0));
    assert_eq!(store.event_reads(), reads, "not scanned again");
    assert_eq!(claim_all(&store, 10).await.len(), 2);
    store
        .settle_all(&[
            (events[0].id.clone(), Settlement::Delivered { at: NOW }),
            (
                events[1].id.clone(),
                Settlement::Failed {
                    error: "HTTP 410".into(),
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(store.counts().await.unwrap(), count(0, 1, 1));
    assert!(store.replay(&events[1].id, NOW).await.unwrap());
    assert_eq!(store.counts().await.unwrap(), count(1, 1, 0));
    assert_eq!(
        store
            .purge_delivered(NOW + time::Duration::DAY)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.counts().await.unwrap(), count(1, 0, 0));
    // A new event, filed by the count's own filing pass without a read.
    store
        .put_with(
            &canary_credential("72"),
            &[event("72", NOW + time::Duration::SECOND)],
        )
        .await
        .unwrap();
    let reads = store.event_reads();
    assert_eq!(store.counts().await.unwrap(), count(2, 0, 0));
    assert_eq!(store.event_reads(), reads);
    // Another store on the directory scans at its first count.
    assert_eq!(
        open(dir.path(), KEY_A).counts().await.unwrap(),
        count(2, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_directory_claim_disjoint_events() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), KEY_A);
    let b = open(dir.path(), KEY_A);
    let all: Vec<EventRecord> = (0..60)
        .map(|i| event("66", NOW + time::Duration::milliseconds(i)))
        .collect();
    a.append(&all[..30]).await.unwrap();
    b.append(&all[30..]).await.unwrap();
    let claimers: Vec<_> = [a, b]
        .into_iter()
        .flat_map(|store| [store.clone(), store])
        .map(|store| tokio::spawn(async move { claim_all(&store, 3).await }))
        .collect();
    let mut seen = BTreeSet::new();
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
    }
    let expected: BTreeSet<String> = all.into_iter().map(|e| e.id).collect();
    assert_eq!(seen, expected);
}

/// A store that claimed events and then stopped settling (a process that hung or died): once the lease on their
/// batch ends, another store on the directory takes it over and claims them, with the same ids; the late
/// settlements of the first leave the batch to the second, which removes it when all are settled.
#[tokio::test]
async fn a_batch_whose_lease_ended_is_taken_over_by_another_store_on_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let (a, b) = (open(dir.path(), KEY_A), open(dir.path(), KEY_A));
    let events = [event("70", NOW), event("70", NOW)];
    a.append(&events).await.unwrap();
    let ids = |claimed: Vec<offline_access_domain::events::OutboxEvent>| -> Vec<String> {
        claimed.into_iter().map(|e| e.record.id).collect()
    };
    let expected: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(
        ids(a.claim_due(NOW, time::Duration::MINUTE, 10).await.unwrap()),
        expected
    );
    // Leased: not before the lease ends.
    let before_end = NOW + time::Duration::seconds(59);
    assert!(
        b.claim_due(before_end, time::Duration::MINUTE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        a.claim_due(before_end, time::Duration::MINUTE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let after = NOW + time::Duration::minutes(2);
    assert_eq!(
        ids(b
            .claim_due(after, time::Duration::MINUTE, 10)
            .await
            .unwrap()),
        expected
    );
    // `a` settles late: the events get their files; the batch is `b`'s now.
    let delivered: Vec<_> = expected
        .iter()
        .map(|id| (id.clone(), Settlement::Delivered { at: after }))
        .collect();
    a.settle_all(&delivered).await.unwrap();
    assert_eq!(file_names(&outbox.join("filed")).len(), 1);
    assert_eq!(lease_names(&outbox).len(), 1);
    assert!(
        a.claim_due(after, time::Duration::MINUTE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    b.settle_all(&delivered).await.unwrap();
    assert!(file_names(&outbox.join("filed")).is_empty());
    assert!(lease_names(&outbox).is_empty());
    for store in [&a, &b] {
        assert_eq!(store.counts().await.unwrap().delivered, 2);
    }
}

/// Both claimers of a taken-over batch settle with a retry: the event is a file waiting for its next attempt,
/// and its batch, the durable copy of that file, stays until it is delivered.
#[tokio::test]
async fn a_taken_over_batch_stays_while_an_event_of_it_waits_for_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let filed = dir.path().join("outbox").join("filed");
    let (a, b) = (open(dir.path(), KEY_A), open(dir.path(), KEY_A));
    let e = event("73", NOW);
    a.append(std::slice::from_ref(&e)).await.unwrap();
    let lease = time::Duration::MINUTE;
    assert_eq!(a.claim_due(NOW, lease, 10).await.unwrap().len(), 1);
    let later = NOW + time::Duration::minutes(2);
    assert_eq!(b.claim_due(later, lease, 10).await.unwrap().len(), 1);
    let retry = |hours: i64| Settlement::RetryAt {
        at: NOW + time::Duration::hours(hours),
        error: "HTTP 503".into(),
    };
    a.settle(&e.id, &retry(1)).await.unwrap();
    b.settle(&e.id, &retry(2)).await.unwrap();
    assert_eq!(file_names(&filed).len(), 1, "kept for the pending file");
    let got = b.event(&e.id).await.unwrap().unwrap();
    assert_eq!((got.state, got.attempts), (DeliveryState::Pending, 2));
    let due = b
        .claim_due(NOW + time::Duration::hours(3), lease, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    b.settle(&e.id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    assert!(file_names(&filed).is_empty());
}

/// A claim takes at most `limit` of a batch's events; the rest stay held for the next claims, and the batch goes
/// when the last is settled.
#[tokio::test]
async fn a_batch_is_claimed_a_limit_at_a_time_and_goes_with_its_last_settlement() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let store = open(dir.path(), KEY_A);
    let events: Vec<EventRecord> = (0..5)
        .map(|i| event("71", NOW + time::Duration::milliseconds(i)))
        .collect();
    store.append(&events).await.unwrap();
    let mut claimed = Vec::new();
    for expected in [2, 2, 1, 0] {
        let round = store
            .claim_due(NOW + time::Duration::SECOND, time::Duration::HOUR, 2)
            .await
            .unwrap();
        assert_eq!(round.len(), expected);
        claimed.extend(round.into_iter().map(|e| e.record.id));
    }
    let expected: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(claimed, expected, "oldest first, each once");
    for (i, id) in claimed.iter().enumerate() {
        assert_eq!(
            file_names(&outbox.join("filed")).len(),
            1,
            "before settling {i}"
        );
        store
            .settle(id, &Settlement::Delivered { at: NOW })
            .await
            .unwrap();
    }
    assert!(file_names(&outbox.join("filed")).is_empty());
    assert!(lease_names(&outbox).is_empty());
    assert_eq!(all_event_ids(&store).await, expected);
}

/// Replaying an event that has no file yet (filed, held in memory) makes it a file, due now, and it is claimed
/// once, not again from memory.
#[tokio::test]
async fn an_event_replayed_before_it_has_a_file_is_claimed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let e = event("72", NOW);
    store.append(std::slice::from_ref(&e)).await.unwrap();
    assert_eq!(store.counts().await.unwrap().pending, 1);
    assert!(store.replay(&e.id, NOW).await.unwrap());
    assert_eq!(claim_all(&store, 10).await, vec![e.id.clone()]);
    store
        .settle(&e.id, &Settlement::Delivered { at: NOW })
        .await
        .unwrap();
    assert!(file_names(&dir.path().join("outbox").join("filed")).is_empty());
    assert_eq!(store.counts().await.unwrap().delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_directory_admit_one_first_sight_per_jti() {
    let dir = tempfile::tempdir().unwrap();
    let stores = [open(dir.path(), KEY_A), open(dir.path(), KEY_A)];
    let keep = time::Duration::days(7);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                let mut firsts = Vec::new();
                for j in 0..20 {
                    let jti = format!("jti-{j}");
                    if store.first_sight(&jti, NOW, keep).await.unwrap() {
                        firsts.push(jti);
                    }
                }
                firsts
            })
        })
        .collect();
    let mut firsts = Vec::new();
    for task in tasks {
        firsts.extend(task.await.unwrap());
    }
    firsts.sort();
    let mut expected: Vec<String> = (0..20).map(|j| format!("jti-{j}")).collect();
    expected.sort();
    assert_eq!(firsts, expected, "each jti admitted exactly once");
    // The register keeps digests, not the jti.
    let names = file_names(&dir.path().join("risc").join("jti"));
    assert_eq!(names.len(), 20);
    assert!(names.iter().all(|n| n.len() == 64 && !n.contains("jti")));
}

#[tokio::test]
async fn expired_jtis_are_swept_and_a_jti_is_new_again_after_keep_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let keep = time::Duration::days(7);
    for j in 0..5 {
        assert!(
            store
                .first_sight(&format!("old-{j}"), NOW, keep)
                .await
                .unwrap()
        );
    }
    let register = dir.path().join("risc").join("jti");
    assert_eq!(file_names(&register).len(), 5);
    let later = NOW + keep + time::Duration::HOUR;
    assert!(store.first_sight("new", later, keep).await.unwrap());
    assert_eq!(
        file_names(&register).len(),
        1,
        "the expired entries were swept"
    );
    assert!(store.first_sight("old-0", later, keep).await.unwrap());
    assert!(!store.first_sight("old-0", later, keep).await.unwrap());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..proptest::prelude::ProptestConfig::default() })]

    /// Held events from several batches, created in any order, are claimed soonest due first (then by id), at most
    /// `limit` at a time, each once, whatever the batches they came in.
    #[test]
    fn held_events_are_claimed_soonest_due_first_a_limit_at_a_time(
        batches in proptest::collection::vec(proptest::collection::vec(0i64..5_000, 1..16), 1..6),
        limit in 1usize..9,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path(), KEY_A);
            let mut all = Vec::new();
            for offsets in &batches {
                let events: Vec<EventRecord> = offsets
                    .iter()
                    .map(|ms| event("75", NOW + time::Duration::milliseconds(*ms)))
                    .collect();
                store.append(&events).await.unwrap();
                all.extend(events);
            }
            all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            let mut claimed = Vec::new();
            loop {
                let round = store
                    .claim_due(NOW + time::Duration::seconds(10), time::Duration::HOUR, limit)
                    .await
                    .unwrap();
                assert!(round.len() <= limit);
                if round.is_empty() {
                    break;
                }
                claimed.extend(round.into_iter().map(|e| e.record.id));
            }
            let expected: Vec<String> = all.into_iter().map(|e| e.id).collect();
            assert_eq!(claimed, expected);
        });
    }
}
