//! `lock_user` excludes another process on the same host, and processes sharing a directory claim disjoint events
//! and admit each `jti` once: the test binary re-runs itself as a child that takes or probes the lock, claims
//! events or registers `jti`s (`lock_holder_child_process`, ignored unless the parent starts it).

use std::collections::BTreeSet;

use offline_access_domain::events::{EventRecord, EventStore};
use offline_access_domain::testkit::{NOW, canary_credential, event, subject};
use offline_access_domain::{CredentialStore, RefreshToken};
use tokio::io::{AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::events::claim_all;
use crate::helpers::{KEY_A, next_line, open, spawn_test_child, wait_for};

const DIR_VAR: &str = "OA_STORE_TEST_CHILD_DIR";
const MODE_VAR: &str = "OA_STORE_TEST_CHILD_MODE";
const SUBJECT: &str = "cross-process-user";

/// The child side. `write`: rewrites the user's credential in a loop, printing `ACK <version>` after each.
/// `hold`: takes the lock, writes a refresh token under it, prints `LOCKED`, waits for a line on
/// stdin, releases, prints `RELEASED`. `probe`: prints `BUSY` or `FREE` from a non-blocking attempt. `claim`:
/// claims due events one at a time until none is left, printing `CLAIMED <id>` for each, then `DONE`. `jti`:
/// prints `READY`, registers `jti-0` .. `jti-49`, printing `FIRST <jti>` for each it was first to see, then `DONE`.
#[tokio::test]
#[ignore = "child process of the cross-process lock tests; started by them"]
async fn lock_holder_child_process() {
    let (Ok(dir), Ok(mode)) = (std::env::var(DIR_VAR), std::env::var(MODE_VAR)) else {
        return; // Run by hand with --ignored: nothing to do without the parent.
    };
    let store = open(std::path::Path::new(&dir), KEY_A);
    let sub = subject(SUBJECT);
    match mode.as_str() {
        "hold" => {
            let mut lock = store.lock_user(&sub).await.unwrap();
            let mut cred = lock.get().await.unwrap().unwrap();
            cred.refresh_token = Some(RefreshToken::parse("1//written-by-the-child").unwrap());
            lock.put(&cred).await.unwrap();
            println!("LOCKED");
            tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).unwrap();
            })
            .await
            .unwrap();
            lock.release().await.unwrap();
            println!("RELEASED");
        }
        "probe" => {
            let state = if store.try_lock_user(&sub).await.unwrap().is_some() {
                "FREE"
            } else {
                "BUSY"
            };
            println!("{state}");
        }
        "write" => {
            // Rewrites the credential as fast as it can, acknowledging each stored version, until killed.
            let mut cred = store.get(&sub).await.unwrap().unwrap();
            for _ in 0..100_000 {
                let next = cred.version + 1;
                cred.refresh_token = Some(RefreshToken::parse(&format!("1//v{next}")).unwrap());
                cred = store.put(&cred).await.unwrap();
                println!("ACK {}", cred.version);
            }
        }
        "claim" => {
            for id in claim_all(&store, 1).await {
                println!("CLAIMED {id}");
            }
            println!("DONE");
        }
        "jti" => {
            println!("READY");
            for jti in first_sights(&store).await {
                println!("FIRST {jti}");
            }
            println!("DONE");
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_child(dir: &std::path::Path, mode: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    spawn_test_child(
        "cross_process::lock_holder_child_process",
        &[(DIR_VAR, dir.as_os_str()), (MODE_VAR, mode.as_ref())],
    )
}

async fn probe(dir: &std::path::Path) -> String {
    let (mut child, mut lines) = spawn_child(dir, "probe");
    let answer = wait_for(&mut lines, &["BUSY", "FREE"]).await;
    assert!(child.wait().await.unwrap().success());
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lock_held_by_another_process_excludes_this_one_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let sub = subject(SUBJECT);
    store.put(&canary_credential(SUBJECT)).await.unwrap();

    let (mut child, mut lines) = spawn_child(dir.path(), "hold");
    wait_for(&mut lines, &["LOCKED"]).await;
    assert!(
        store.try_lock_user(&sub).await.unwrap().is_none(),
        "the child holds the lock"
    );

    let waiter = {
        let store = store.clone();
        let sub = sub.clone();
        tokio::spawn(async move {
            let mut lock = store.lock_user(&sub).await.unwrap();
            let cred = lock.get().await.unwrap().unwrap();
            lock.release().await.unwrap();
            cred
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"release\n").await.unwrap();
    stdin.flush().await.unwrap();
    wait_for(&mut lines, &["RELEASED"]).await;
    assert!(child.wait().await.unwrap().success());

    let seen = waiter.await.unwrap();
    assert_eq!(seen.version, 2, "the waiter read what the holder wrote");
    assert_eq!(
        seen.refresh_token.unwrap().expose_secret(),
        "1//written-by-the-child"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lock_held_here_excludes_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let sub = subject(SUBJECT);
    let lock = store.lock_user(&sub).await.unwrap();
    assert_eq!(probe(dir.path()).await, "BUSY");
    lock.release().await.unwrap();
    assert_eq!(probe(dir.path()).await, "FREE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lock_holder_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let sub = subject(SUBJECT);
    store.put(&canary_credential(SUBJECT)).await.unwrap();
    let (mut child, mut lines) = spawn_child(dir.path(), "hold");
    wait_for(&mut lines, &["LOCKED"]).await;
    assert!(store.try_lock_user(&sub).await.unwrap().is_none());
    child.kill().await.unwrap();
    let lock = store.try_lock_user(&sub).await.unwrap();
    assert!(lock.is_some(), "the OS released the dead holder's lock");
    // What the holder committed before dying is there, whole.
    let cred = store.get(&sub).await.unwrap().unwrap();
    assert_eq!(
        cred.refresh_token.unwrap().expose_secret(),
        "1//written-by-the-child"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lock_excludes_a_second_locker_in_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    // A second store on the same directory in the same process (as a CLI command and the server might be).
    let other = open(dir.path(), KEY_A);
    let sub = subject(SUBJECT);
    let lock = store.lock_user(&sub).await.unwrap();
    assert!(
        store.try_lock_user(&sub).await.unwrap().is_none(),
        "same store"
    );
    assert!(
        other.try_lock_user(&sub).await.unwrap().is_none(),
        "another store, same directory"
    );
    assert!(
        store
            .try_lock_user(&subject("someone-else"))
            .await
            .unwrap()
            .is_some()
    );
    lock.release().await.unwrap();
    assert!(other.try_lock_user(&sub).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_mid_write_leaves_a_whole_credential_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let sub = subject(SUBJECT);
    store.put(&canary_credential(SUBJECT)).await.unwrap();

    let (mut child, mut lines) = spawn_child(dir.path(), "write");
    let mut acknowledged = 0u64;
    while acknowledged < 30 {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the writer exited early");
        if let Some(version) = line.trim_end().rsplit_once("ACK ").map(|(_, v)| v) {
            acknowledged = version.parse().unwrap();
        }
    }
    child.kill().await.unwrap(); // SIGKILL, most likely in the middle of a write

    let reopened = open(dir.path(), KEY_A);
    let cred = reopened
        .get(&sub)
        .await
        .unwrap()
        .expect("the credential survived");
    assert!(
        cred.version >= acknowledged,
        "an acknowledged write was lost"
    );
    assert_eq!(
        cred.refresh_token.unwrap().expose_secret(),
        format!("1//v{}", cred.version),
        "the file is one whole write"
    );
    let names = crate::helpers::file_names(&dir.path().join("credentials"));
    assert_eq!(
        names.len(),
        1,
        "temp files of the killed writer were cleaned: {names:?}"
    );
}

const JTIS: usize = 50;

/// Registers `jti-0` .. `jti-49`; those this store saw first.
async fn first_sights(store: &dyn EventStore) -> Vec<String> {
    let mut firsts = Vec::new();
    for j in 0..JTIS {
        let jti = format!("jti-{j}");
        if store
            .first_sight(&jti, NOW, time::Duration::days(7))
            .await
            .unwrap()
        {
            firsts.push(jti);
        }
    }
    firsts
}

/// The values of the child's lines `<word> <value>` until it prints `DONE`.
async fn child_values(lines: &mut Lines<BufReader<ChildStdout>>, word: &str) -> Vec<String> {
    let mut values = Vec::new();
    let marker = format!("{word} ");
    while let Some(line) = next_line(lines).await {
        if let Some((_, value)) = line.trim_end().rsplit_once(&marker) {
            values.push(value.to_owned());
        }
        if line.trim_end().ends_with("DONE") {
            return values;
        }
    }
    panic!("the child exited without printing DONE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_directory_claim_disjoint_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let all: Vec<EventRecord> = (0..150)
        .map(|i| event("91", NOW + time::Duration::milliseconds(i)))
        .collect();
    store.append(&all).await.unwrap();
    let (mut child, mut lines) = spawn_child(dir.path(), "claim");
    // Start claiming once the child does (so both claim at once), then collect what the child claimed.
    let mut theirs = Vec::new();
    while theirs.is_empty() {
        let line = next_line(&mut lines).await.expect("the child exited early");
        if let Some((_, id)) = line.trim_end().rsplit_once("CLAIMED ") {
            theirs.push(id.to_owned());
        }
        assert!(
            !line.trim_end().ends_with("DONE"),
            "the child claimed nothing"
        );
    }
    let mine = claim_all(&store, 1).await;
    theirs.extend(child_values(&mut lines, "CLAIMED").await);
    assert!(child.wait().await.unwrap().success());
    let mut seen = BTreeSet::new();
    for id in mine.iter().chain(&theirs) {
        assert!(
            seen.insert(id.clone()),
            "{id} was claimed by both processes"
        );
    }
    let expected: BTreeSet<String> = all.into_iter().map(|e| e.id).collect();
    assert_eq!(seen, expected, "every event was claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_directory_see_each_jti_first_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let (mut child, mut lines) = spawn_child(dir.path(), "jti");
    wait_for(&mut lines, &["READY"]).await;
    let mine = first_sights(&store).await;
    let theirs = child_values(&mut lines, "FIRST").await;
    assert!(child.wait().await.unwrap().success());
    let mut all: Vec<String> = mine.into_iter().chain(theirs).collect();
    all.sort();
    let mut expected: Vec<String> = (0..JTIS).map(|j| format!("jti-{j}")).collect();
    expected.sort();
    assert_eq!(all, expected, "each jti was first in exactly one process");
}
