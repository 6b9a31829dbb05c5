//! Shared set-up: key rings and stores in temp directories.

use std::path::Path;
use std::sync::Arc;

use offline_access_crypto::KeyRing;
use offline_access_store_file::FileStore;

/// Fixed test keys (standard base64 of 32 bytes).
pub(crate) const KEY_A: &str = "a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub(crate) const KEY_B: &str = "b:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

pub(crate) fn ring(spec: &str) -> Arc<KeyRing> {
    Arc::new(KeyRing::parse(spec).unwrap())
}

pub(crate) fn open(dir: &Path, spec: &str) -> FileStore {
    FileStore::open(dir, ring(spec)).unwrap()
}

/// The user hash naming `sub`'s files (its credential file's stem).
pub(crate) fn hash_of(store: &FileStore, sub: &str) -> String {
    store
        .credential_path(&offline_access_domain::testkit::subject(sub))
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// Every file under `dir`, recursively.
pub(crate) fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Names of the files in a directory, sorted.
pub(crate) fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// How long a test waits for a child process's next line before giving up (a guard against a hung child, never
/// an assertion about speed).
const CHILD_LINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Re-runs this test binary as a child running only the (ignored) test `test`, with `envs`, stdin and stdout piped.
pub(crate) fn spawn_test_child(
    test: &str,
    envs: &[(&str, &std::ffi::OsStr)],
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The child's next line (`None` when it exited); panics if it stays silent too long.
pub(crate) async fn next_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Option<String> {
    tokio::time::timeout(CHILD_LINE_TIMEOUT, lines.next_line())
        .await
        .expect("the child printed nothing for too long")
        .unwrap()
}

/// Reads the child's stdout until a line ends with one of `words` (libtest may print the test's name first);
/// returns that word.
pub(crate) async fn wait_for(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    words: &[&str],
) -> String {
    while let Some(line) = next_line(lines).await {
        if let Some(word) = words.iter().find(|w| line.trim_end().ends_with(**w)) {
            return (*word).to_owned();
        }
    }
    panic!("the child exited without printing any of {words:?}");
}
