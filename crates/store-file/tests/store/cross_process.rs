//! `lock_user` excludes another process on the same host: the test binary re-runs itself as a child that takes
//! or probes the lock (`lock_holder_child_process`, ignored unless the parent starts it).

use std::process::Stdio;

use offline_access_domain::testkit::{canary_credential, subject};
use offline_access_domain::{CredentialStore, RefreshToken};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::helpers::{KEY_A, open};

const DIR_VAR: &str = "OA_STORE_TEST_CHILD_DIR";
const MODE_VAR: &str = "OA_STORE_TEST_CHILD_MODE";
const SUBJECT: &str = "cross-process-user";

/// The child side. `write`: rewrites the user's credential in a loop, printing `ACK <version>` after each.
/// `hold`: takes the lock, writes a refresh token under it, prints `LOCKED`, waits for a line on
/// stdin, releases, prints `RELEASED`. `probe`: prints `BUSY` or `FREE` from a non-blocking attempt.
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
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_child(dir: &std::path::Path, mode: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cross_process::lock_holder_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .env(MODE_VAR, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Reads the child's stdout until a line ends with one of `words` (libtest may print the test's name first).
async fn wait_for(lines: &mut Lines<BufReader<ChildStdout>>, words: &[&str]) -> String {
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(word) = words.iter().find(|w| line.trim_end().ends_with(**w)) {
            return (*word).to_owned();
        }
    }
    panic!("the child exited without printing any of {words:?}");
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
