//! A write with events killed (SIGKILL) at every step of its path: the old record and no event, or the new record
//! and all its events — never the change without its events, never events without the change. The test binary
//! re-runs itself as a child (`crash_child_process`) that stops at one named step (the `failpoints` feature) and
//! is killed there.

use std::ffi::OsStr;

use offline_access_domain::events::{EventFilter, EventRecord, EventStore, Settlement};
use offline_access_domain::testkit::{NOW, canary_credential, subject};
use offline_access_domain::{CredentialStore, RefreshToken};
use offline_access_store_file::FileStore;

use crate::events::all_event_ids;
use crate::helpers::{KEY_A, file_names, open, spawn_test_child, wait_for};

const DIR_VAR: &str = "OA_STORE_CRASH_DIR";
const OP_VAR: &str = "OA_STORE_CRASH_OP";
const STEP_VAR: &str = "OA_STORE_CRASH_STEP";
const SUB: &str = "crash-user";
const NEW_TOKEN: &str = "1//0g-the-token-of-the-new-record";

/// The two events the child's write records (fixed ids, so the parent knows them).
fn events() -> Vec<EventRecord> {
    (1..=2u8)
        .map(|i| EventRecord {
            id: format!("evt_{i:032x}"),
            kind: "user.signed_in".into(),
            created_at: NOW,
            body: format!("{{\"n\":{i}}}"),
        })
        .collect()
}

/// The child: opens the store, arms the hook for its step, runs its operation and says `FINISHED` (the parent
/// then fails: the step was never reached). At the step it prints `PAUSED` and waits to be killed.
#[tokio::test]
#[ignore = "child process of the crash tests; started by them"]
async fn crash_child_process() {
    let (Ok(dir), Ok(op), Ok(step)) = (
        std::env::var(DIR_VAR),
        std::env::var(OP_VAR),
        std::env::var(STEP_VAR),
    ) else {
        return; // Run by hand with --ignored: nothing to do without the parent.
    };
    let store = open(std::path::Path::new(&dir), KEY_A);
    let sub = subject(SUB);
    let current = store.get(&sub).await.unwrap().unwrap();
    offline_access_store_file::failpoints::set_hook(Box::new(move |name| {
        if name == step {
            println!("PAUSED {name}");
            loop {
                std::thread::park();
            }
        }
    }));
    match op.as_str() {
        "put" => {
            let mut next = current.clone();
            next.refresh_token = Some(RefreshToken::parse(NEW_TOKEN).unwrap());
            store.put_with(&next, &events()).await.unwrap();
        }
        "delete" => store
            .delete_with(&sub, current.version, &events())
            .await
            .unwrap(),
        "file" => {
            store.counts().await.unwrap();
        }
        "settle" => {
            let outcomes: Vec<_> = events()
                .into_iter()
                .map(|e| (e.id, Settlement::Delivered { at: NOW }))
                .collect();
            store.settle_all(&outcomes).await.unwrap();
        }
        "claim_settle" => {
            let outcomes: Vec<_> = store
                .claim_due(NOW, time::Duration::HOUR, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.record.id, Settlement::Delivered { at: NOW }))
                .collect();
            assert_eq!(outcomes.len(), 2);
            store.settle_all(&outcomes).await.unwrap();
        }
        other => panic!("unknown crash op {other}"),
    }
    println!("FINISHED");
}

/// Sets up a store with one record (and, for `file`, a landed write whose events wait to be filed), runs the
/// child until it pauses at `step`, kills it, and returns the store opened before the crash.
async fn crash_at(dir: &std::path::Path, op: &str, step: &str) -> FileStore {
    let store = open(dir, KEY_A);
    let v1 = store.put(&canary_credential(SUB)).await.unwrap();
    if matches!(op, "file" | "settle" | "claim_settle") {
        let mut next = v1.clone();
        next.refresh_token = Some(RefreshToken::parse(NEW_TOKEN).unwrap());
        store.put_with(&next, &events()).await.unwrap();
    }
    if op == "settle" {
        assert_eq!(
            store
                .claim_due(NOW, time::Duration::HOUR, 10)
                .await
                .unwrap()
                .len(),
            2
        );
    }
    let (mut child, mut lines) = spawn_test_child(
        "crash::crash_child_process",
        &[
            (DIR_VAR, dir.as_os_str()),
            (OP_VAR, OsStr::new(op)),
            (STEP_VAR, OsStr::new(step)),
        ],
    );
    let said = wait_for(&mut lines, &[step, "FINISHED"]).await;
    assert_eq!(said, step, "{op} never reached {step}");
    child.kill().await.unwrap(); // SIGKILL at exactly that step
    store
}

/// Old (version 1, its token, no event) or new (version 2 with the new token, or no record for a delete; both
/// events, whole): what a store sees after the crash, through both ports. Returns whether it was the new state.
async fn old_or_new_with_its_events(store: &FileStore, op: &str) -> bool {
    let ids = all_event_ids(store).await;
    let expected: Vec<String> = events().into_iter().map(|e| e.id).collect();
    let record = store.get(&subject(SUB)).await.unwrap();
    let new = match (op, &record) {
        ("put", Some(c)) if c.version == 2 => {
            assert_eq!(c.refresh_token.as_ref().unwrap().expose_secret(), NEW_TOKEN);
            true
        }
        ("delete", None) => true,
        (_, Some(c)) => {
            assert_eq!(c.version, 1, "a whole old record");
            assert_ne!(c.refresh_token.as_ref().unwrap().expose_secret(), NEW_TOKEN);
            false
        }
        (_, None) => panic!("the record vanished without its delete"),
    };
    if new {
        assert_eq!(ids, expected, "the change landed: all its events are there");
        for e in events() {
            assert_eq!(store.event(&e.id).await.unwrap().unwrap().record, e);
        }
    } else {
        assert!(
            ids.is_empty(),
            "the change did not land: no event ({ids:?})"
        );
    }
    // Nothing is left in between, and the user can be written again.
    assert!(file_names(&store.dir().join("outbox").join("tentative")).is_empty());
    let again = record.unwrap_or_else(|| canary_credential(SUB));
    store.put(&again).await.unwrap();
    assert_eq!(all_event_ids(store).await.len(), ids.len());
    new
}

/// Runs `op` killed at each of `steps`; `landed_from` is the first step at which the change has landed.
async fn every_step(op: &str, steps: &[&str], landed_from: usize) {
    for (i, step) in steps.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let before = crash_at(dir.path(), op, step).await;
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        // The store that was open during the crash settles what it finds (its outbox operations sweep first)...
        let seen_live = old_or_new_with_its_events(&before, op).await;
        assert_eq!(seen_live, i >= landed_from, "{op} killed at {step}");
        // ... and so does one opened afterwards (on a copy of the crashed directory).
        let reopened = open(copy.path(), KEY_A);
        assert_eq!(
            old_or_new_with_its_events(&reopened, op).await,
            seen_live,
            "{op} killed at {step}, reopened"
        );
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_events_killed_at_any_step_leaves_the_old_record_or_the_new_one_with_its_events()
{
    let steps = [
        "tentative:linked", // the record, with its events, written and linked, not synced yet
        "atomic:temp_synced",
        "tentative:durable",
        "atomic:renamed",
        "atomic:durable",
        "write:done",
    ];
    every_step("put", &steps, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_with_events_killed_at_any_step_leaves_the_record_or_its_removal_with_its_events()
{
    let steps = [
        "tentative:synced",
        "tentative:durable",
        "atomic:temp_synced", // the tombstone
        "atomic:renamed",
        "atomic:durable",
        "delete:removed",
        "delete:durable",
        "write:confirmed",
        "write:done",
    ];
    every_step("delete", &steps, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filing_events_killed_at_any_step_loses_and_doubles_none() {
    for step in [
        "outbox:records_batched", // the batch written and named, the records' names still in `incoming/`
        "outbox:batch_filed",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = crash_at(dir.path(), "file", step).await;
        let expected: Vec<String> = events().into_iter().map(|e| e.id).collect();
        assert_eq!(all_event_ids(&store).await, expected, "killed at {step}");
        let pending = store
            .list_events(EventFilter::Pending, None, 10)
            .await
            .unwrap();
        assert_eq!(pending.items.len(), 2, "killed at {step}");
        let claimed: Vec<String> = store
            .claim_due(NOW, time::Duration::HOUR, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.record.id)
            .collect();
        assert_eq!(
            claimed, expected,
            "each event claimable once, killed at {step}"
        );
        assert!(
            store
                .claim_due(NOW, time::Duration::HOUR, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let outbox = dir.path().join("outbox");
        assert!(file_names(&outbox.join("incoming")).is_empty());
        // The batch is kept while its events are pending, and released when they are delivered. A crash after the
        // batch was written leaves the records to be filed again into a second batch; the first, holding only
        // events the second holds, goes when it is taken over. A store opened meanwhile files the claimed events
        // as files with their lease: they are not claimed again.
        let reopened = open(dir.path(), KEY_A);
        assert!(
            reopened
                .claim_due(NOW, time::Duration::HOUR, 10)
                .await
                .unwrap()
                .is_empty(),
            "killed at {step}"
        );
        assert_eq!(
            file_names(&outbox.join("filed")).len(),
            1,
            "killed at {step}"
        );
        let delivered: Vec<_> = expected
            .iter()
            .map(|id| (id.clone(), Settlement::Delivered { at: NOW }))
            .collect();
        store.settle_all(&delivered).await.unwrap();
        assert!(
            file_names(&outbox.join("filed")).is_empty(),
            "killed at {step}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_events_killed_at_any_step_leaves_them_pending_or_delivered_and_their_batch_then_goes()
 {
    for (op, step) in [
        // Claimed by this process, settled by the child (which filed them as files at its `open`).
        ("settle", "outbox:event_written"), // the first event's new state, in place
        ("settle", "outbox:settled"),
        // Claimed and settled by the child from memory.
        ("claim_settle", "outbox:event_settled"), // the first event's file, created with its outcome
        ("claim_settle", "outbox:settled"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = crash_at(dir.path(), op, step).await;
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let reopened = open(copy.path(), KEY_A);
        for store in [&store, &reopened] {
            let counts = store.counts().await.unwrap();
            assert_eq!(counts.pending + counts.delivered, 2, "killed at {step}");
            assert_eq!(counts.failed, 0, "killed at {step}");
            // What is still pending is delivered again (its lease run out), and then nothing is left.
            let again: Vec<_> = store
                .claim_due(NOW + time::Duration::HOUR * 2, time::Duration::HOUR, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.record.id, Settlement::Delivered { at: NOW }))
                .collect();
            assert_eq!(again.len() as u64, counts.pending, "killed at {step}");
            store.settle_all(&again).await.unwrap();
            assert_eq!(
                store.counts().await.unwrap().delivered,
                2,
                "killed at {step}"
            );
        }
        // `open` released the batch of the delivered events; the hourly purge does in the store that crashed.
        store
            .purge_delivered(NOW - time::Duration::DAY)
            .await
            .unwrap();
        assert!(
            file_names(&copy.path().join("outbox").join("filed")).is_empty(),
            "killed at {step}"
        );
        assert!(
            file_names(&dir.path().join("outbox").join("filed")).is_empty(),
            "killed at {step}"
        );
    }
}
