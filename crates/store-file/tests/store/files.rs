//! The file layout, encryption at rest, crash safety and corruption handling of the file store.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use offline_access_domain::testkit::{CANARY_ACCESS, CANARY_REFRESH, canary_credential, subject};
use offline_access_domain::{CredentialStore, StoreError};
use offline_access_store_file::FileStore;

use crate::helpers::{KEY_A, all_files, file_names, hash_of, open, ring};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn files_are_mode_0600_and_directories_0700() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("data");
    let store = open(&root, KEY_A);
    let cred = canary_credential("1");
    store.put(&cred).await.unwrap();
    store
        .lock_user(&cred.subject)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    // A pending revocation (a marker) and a deleted record (a tombstone).
    let mut forgotten = store.put(&canary_credential("2")).await.unwrap();
    forgotten.mark_forgotten(offline_access_domain::testkit::NOW);
    store.put(&forgotten).await.unwrap();
    let deleted = store.put(&canary_credential("3")).await.unwrap();
    store
        .delete(&deleted.subject, deleted.version)
        .await
        .unwrap();
    let dirs = ["", "credentials", "tombstones", "pending", "locks"];
    for dir in dirs.map(|d| root.join(d)) {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let counts: Vec<usize> = dirs[1..]
        .iter()
        .map(|d| file_names(&root.join(d)).len())
        .collect();
    assert_eq!(
        counts,
        [2, 1, 1, 4],
        "two credentials, a tombstone, a marker, four lock files"
    );
    for file in all_files(&root) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn nothing_on_disk_holds_a_plaintext_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    for sub in ["11", "12", "13"] {
        let v1 = store.put(&canary_credential(sub)).await.unwrap();
        let mut lock = store.lock_user(&v1.subject).await.unwrap();
        let mut v2 = lock.put(&v1).await.unwrap();
        lock.release().await.unwrap();
        if sub == "12" {
            v2.mark_forgotten(offline_access_domain::testkit::NOW);
            store.put(&v2).await.unwrap();
        }
        if sub == "13" {
            store.delete(&v2.subject, v2.version).await.unwrap();
        }
    }
    for file in all_files(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        for canary in [CANARY_REFRESH, CANARY_ACCESS, "canary"] {
            assert!(!contains(&bytes, canary), "{canary} in {}", file.display());
        }
        if file
            .extension()
            .is_some_and(|e| e == "lock" || e == "refresh")
            || file.parent().is_some_and(|d| d.ends_with("pending"))
        {
            assert!(bytes.is_empty(), "lock files and markers stay empty");
        }
    }
}

#[tokio::test]
async fn a_credential_file_keeps_metadata_in_clear_and_tokens_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let cred = store.put(&canary_credential("21")).await.unwrap();
    let path = store.credential_path(&cred.subject);
    let name = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        name.len(),
        64 + ".json".len(),
        "named by the hex SHA-256 of the subject"
    );
    assert!(!name.contains("21."));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["subject"], "21");
    assert_eq!(json["version"], 1);
    assert_eq!(json["consent"], "active");
    assert_eq!(json["key_id"], "a");
    assert_eq!(json["created_at"], "2026-11-24T12:00:00Z");
    assert_eq!(json["profile"]["email"], "user21@example.com");
    assert!(json["refresh_token"].as_str().unwrap().starts_with("v1.a."));
    assert!(
        json["access"]["token"]
            .as_str()
            .unwrap()
            .starts_with("v1.a.")
    );
    assert_eq!(
        json["access"]["scopes"],
        serde_json::json!(["https://www.googleapis.com/auth/userinfo.email", "openid"])
    );
}

#[tokio::test]
async fn a_record_written_without_access_scopes_reads_the_grants_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let cred = store.put(&canary_credential("22")).await.unwrap();
    let path = store.credential_path(&cred.subject);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // As the previous version wrote it.
    json["access"].as_object_mut().unwrap().remove("scopes");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_ne!(read.scopes, cred.access.as_ref().unwrap().scopes);
    assert_eq!(read.access.as_ref().unwrap().scopes, cred.scopes);
    // And a write stores them again.
    store.put(&read).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["format"], 1);
    assert!(json["access"]["scopes"].is_array());
}

#[tokio::test]
async fn swapped_user_files_or_ciphertexts_fail_to_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let a = store.put(&canary_credential("31")).await.unwrap();
    let b = store.put(&canary_credential("32")).await.unwrap();
    let (path_a, path_b) = (
        store.credential_path(&a.subject),
        store.credential_path(&b.subject),
    );
    let (bytes_a, bytes_b) = (
        std::fs::read(&path_a).unwrap(),
        std::fs::read(&path_b).unwrap(),
    );

    // Whole files swapped: each file names the other user.
    std::fs::write(&path_a, &bytes_b).unwrap();
    std::fs::write(&path_b, &bytes_a).unwrap();
    assert!(matches!(
        store.get(&a.subject).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.get(&b.subject).await,
        Err(StoreError::Corrupt { .. })
    ));

    // Only the sealed tokens swapped, subjects left in place: the AAD binds them to their user.
    let mut json_a: serde_json::Value = serde_json::from_slice(&bytes_a).unwrap();
    let mut json_b: serde_json::Value = serde_json::from_slice(&bytes_b).unwrap();
    std::mem::swap(&mut json_a["refresh_token"], &mut json_b["refresh_token"]);
    std::fs::write(&path_a, serde_json::to_vec(&json_a).unwrap()).unwrap();
    std::fs::write(&path_b, serde_json::to_vec(&json_b).unwrap()).unwrap();
    let err = store.get(&a.subject).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { subject, .. } if subject == "31"),
        "{err}"
    );
    assert!(!err.to_string().contains("canary"));

    // The access token moved into the refresh-token field of the same user: the AAD binds the field too.
    let mut json_a: serde_json::Value = serde_json::from_slice(&bytes_a).unwrap();
    json_a["refresh_token"] = json_a["access"]["token"].clone();
    std::fs::write(&path_a, serde_json::to_vec(&json_a).unwrap()).unwrap();
    assert!(matches!(
        store.get(&a.subject).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn a_corrupt_file_is_reported_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let cred = store.put(&canary_credential("41")).await.unwrap();
    let path = store.credential_path(&cred.subject);
    let original = std::fs::read(&path).unwrap();
    let torn = &original[..original.len() / 2];
    std::fs::write(&path, torn).unwrap();

    let err = store.get(&cred.subject).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { subject, .. } if subject == "41"),
        "{err}"
    );
    for version in [0, 1] {
        let mut next = cred.clone();
        next.version = version;
        assert!(matches!(
            store.put(&next).await,
            Err(StoreError::Corrupt { .. })
        ));
        // Its version cannot be read: a delete cannot be conditional, so it is refused (an operator's job).
        assert!(matches!(
            store.delete(&cred.subject, version).await,
            Err(StoreError::Corrupt { .. })
        ));
    }
    let page = store.list(None, 10).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.unreadable.len(), 1, "{:?}", page.unreadable);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        torn,
        "the corrupt file is left for the operator"
    );
}

#[tokio::test]
async fn a_record_that_does_not_decrypt_is_deleted_only_at_its_version_and_versions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let v1 = store.put(&canary_credential("43")).await.unwrap();
    let v2 = store.put(&v1).await.unwrap();
    let path = store.credential_path(&v2.subject);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["refresh_token"] = json["access"]["token"].clone();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    assert!(matches!(
        store.get(&v2.subject).await,
        Err(StoreError::Corrupt { .. })
    ));
    let reported = store.list(None, 10).await.unwrap().unreadable;
    assert_eq!(reported.len(), 1);
    assert!(
        reported[0].contains(&format!("version {}", v2.version)),
        "the report names the version a delete needs: {reported:?}"
    );

    assert!(matches!(
        store.delete(&v2.subject, v1.version).await,
        Err(StoreError::Conflict)
    ));
    assert!(path.exists());
    store.delete(&v2.subject, v2.version).await.unwrap();
    assert!(!path.exists());
    let fresh = store.put(&canary_credential("43")).await.unwrap();
    assert_eq!(fresh.version, v2.version + 1);
}

#[tokio::test]
async fn a_flipped_byte_in_a_sealed_token_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let cred = store.put(&canary_credential("42")).await.unwrap();
    let path = store.credential_path(&cred.subject);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let sealed = json["refresh_token"].as_str().unwrap().to_owned();
    let last = sealed.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &sealed[..sealed.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    json["refresh_token"] = flipped.into();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    assert!(matches!(
        store.get(&cred.subject).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn a_torn_write_left_by_a_crash_keeps_the_old_credential_and_is_cleaned_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let v1 = store.put(&canary_credential("51")).await.unwrap();
    let path = store.credential_path(&v1.subject);
    let hash = path.file_stem().unwrap().to_str().unwrap().to_owned();
    let credentials = path.parent().unwrap().to_path_buf();

    // A crash after writing a whole temp file but before the rename, and one in the middle of writing another.
    let mut v2 = v1.clone();
    v2.refresh_token = Some(offline_access_domain::RefreshToken::parse("1//never-landed").unwrap());
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(other_dir.path(), KEY_A);
    other.put(&canary_credential("51")).await.unwrap();
    other.put(&v2).await.unwrap();
    let complete = std::fs::read(other.credential_path(&v1.subject)).unwrap();
    std::fs::write(
        credentials.join(format!(".tmp.{hash}.0123456789abcdef")),
        &complete,
    )
    .unwrap();
    std::fs::write(
        credentials.join(format!(".tmp.{hash}.fedcba9876543210")),
        &complete[..40],
    )
    .unwrap();

    let read = store.get(&v1.subject).await.unwrap().unwrap();
    assert_eq!(read.version, 1);
    assert_eq!(
        read.refresh_token.unwrap().expose_secret(),
        format!("{CANARY_REFRESH}51")
    );
    assert_eq!(
        store.list(None, 10).await.unwrap().items.len(),
        1,
        "temp files are not records"
    );

    let reopened = open(dir.path(), KEY_A);
    assert_eq!(
        file_names(&credentials),
        [format!("{hash}.json")],
        "stale temp files removed"
    );
    let read = reopened.get(&v1.subject).await.unwrap().unwrap();
    assert_eq!(reopened.put(&read).await.unwrap().version, 2);
}

#[tokio::test]
async fn opening_with_a_background_sweep_serves_at_once_and_then_removes_stale_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let v1 = store.put(&canary_credential("52")).await.unwrap();
    let path = store.credential_path(&v1.subject);
    let hash = path.file_stem().unwrap().to_str().unwrap().to_owned();
    let credentials = path.parent().unwrap().to_path_buf();
    std::fs::write(
        credentials.join(format!(".tmp.{hash}.0123456789abcdef")),
        b"torn",
    )
    .unwrap();

    let reopened = FileStore::open_sweeping_in_background(dir.path(), ring(KEY_A)).unwrap();

    // The store serves at once, whatever the sweep's progress.
    let read = reopened.get(&v1.subject).await.unwrap().unwrap();
    assert_eq!(read.version, 1);
    // The sweep finishes on its own thread: wait for it (bounded by a minute, for a loaded machine), then the temp
    // file is gone.
    let mut names = file_names(&credentials);
    for _ in 0..2400 {
        if names.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        names = file_names(&credentials);
    }
    assert_eq!(
        names,
        [format!("{hash}.json")],
        "stale temp file removed in the background"
    );
    assert_eq!(reopened.put(&read).await.unwrap().version, 2);
}

#[tokio::test]
async fn puts_and_deletes_leave_no_temp_files_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let mut cred = store.put(&canary_credential("61")).await.unwrap();
    for _ in 0..3 {
        cred = store.put(&cred).await.unwrap();
    }
    let deleted = store.put(&canary_credential("62")).await.unwrap();
    store.delete(&subject("62"), deleted.version).await.unwrap();
    store.ping().await.unwrap();
    let hash_62 = hash_of(&store, "62");
    assert_eq!(
        file_names(&dir.path().join("tombstones")),
        [hash_62],
        "only the tombstone, no temp file"
    );
    let names = file_names(&dir.path().join("credentials"));
    assert_eq!(
        names,
        [store
            .credential_path(&cred.subject)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()]
    );
}

#[tokio::test]
async fn ping_fails_when_the_directory_is_gone() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("data");
    let store = open(&root, KEY_A);
    store.ping().await.unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.put(&canary_credential("71")).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn debug_output_shows_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let debug = format!("{store:?}");
    assert!(debug.contains("FileStore") && debug.contains("\"a\""));
    assert!(!debug.contains(&KEY_A[2..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_directory_never_lose_an_update() {
    // Two handles with their own in-process state, as two processes would have: only the file lock serializes.
    let dir = tempfile::tempdir().unwrap();
    let stores = [open(dir.path(), KEY_A), open(dir.path(), KEY_A)];
    let sub = subject("81");
    stores[0].put(&canary_credential("81")).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            let sub = sub.clone();
            tokio::spawn(async move {
                loop {
                    let mut cred = store.get(&sub).await.unwrap().unwrap();
                    let scope = format!("https://example.com/scope/{i}");
                    cred.scopes = offline_access_domain::Scopes::from_iter_checked(
                        cred.scopes.iter().chain([scope.as_str()]),
                    )
                    .unwrap();
                    match store.put(&cred).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict) => tokio::task::yield_now().await,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let read = stores[1].get(&sub).await.unwrap().unwrap();
    assert_eq!(read.version, 9);
    for i in 0..8 {
        assert!(
            read.scopes
                .contains(&format!("https://example.com/scope/{i}"))
        );
    }
}
