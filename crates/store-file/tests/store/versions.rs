//! Versions never repeat for a user, also across deletes and store reopens: the tombstone.

use offline_access_domain::testkit::{canary_credential, subject};
use offline_access_domain::{CredentialStore, StoreError};
use offline_access_store_file::FileStore;

use crate::helpers::{KEY_A, file_names, open};

fn tombstone_path(store: &FileStore, sub: &str) -> std::path::PathBuf {
    let path = store.credential_path(&subject(sub));
    let hash = path.file_stem().unwrap().to_str().unwrap();
    store.dir().join("tombstones").join(hash)
}

#[tokio::test]
async fn a_deleted_records_version_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v3) = {
        let store = open(dir.path(), KEY_A);
        let v1 = store.put(&canary_credential("71")).await.unwrap();
        let v2 = store.put(&v1).await.unwrap();
        let v3 = store.put(&v2).await.unwrap();
        store.delete(&v3.subject, v3.version).await.unwrap();
        // The tombstone holds the version only: no subject, no token.
        let tombstone = std::fs::read_to_string(tombstone_path(&store, "71")).unwrap();
        assert_eq!(tombstone, format!("{}\n", v3.version));
        (v1, v3)
    };

    let reopened = open(dir.path(), KEY_A);
    for stale in [&v1, &v3] {
        assert!(matches!(
            reopened.put(stale).await,
            Err(StoreError::Conflict)
        ));
    }
    let again = reopened.put(&canary_credential("71")).await.unwrap();
    assert_eq!(again.version, v3.version + 1);
    assert!(
        !tombstone_path(&reopened, "71").exists(),
        "a record carries the highest version again: its tombstone is gone"
    );
    reopened
        .delete(&again.subject, again.version)
        .await
        .unwrap();

    let third = open(dir.path(), KEY_A);
    assert_eq!(
        third.put(&canary_credential("71")).await.unwrap().version,
        again.version + 1
    );
}

#[tokio::test]
async fn a_crash_between_the_tombstone_and_the_removal_keeps_the_record_and_versions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let v1 = store.put(&canary_credential("72")).await.unwrap();
    let v2 = store.put(&v1).await.unwrap();
    // What a delete leaves when the process dies after the tombstone and before the removal, plus the temp file
    // of a tombstone write that never landed.
    let tombstone = tombstone_path(&store, "72");
    std::fs::write(&tombstone, format!("{}\n", v2.version)).unwrap();
    let hash = tombstone.file_name().unwrap().to_str().unwrap().to_owned();
    let tombstones = tombstone.parent().unwrap().to_path_buf();
    std::fs::write(
        tombstones.join(format!(".tmp.{hash}.0123456789abcdef")),
        b"9",
    )
    .unwrap();

    let reopened = open(dir.path(), KEY_A);
    assert_eq!(file_names(&tombstones), [hash], "the temp file is swept");
    let read = reopened.get(&v2.subject).await.unwrap().unwrap();
    assert_eq!(read.version, v2.version);
    let v3 = reopened.put(&read).await.unwrap();
    assert_eq!(v3.version, v2.version + 1);
    reopened.delete(&v3.subject, v3.version).await.unwrap();
    assert_eq!(
        reopened
            .put(&canary_credential("72"))
            .await
            .unwrap()
            .version,
        v3.version + 1
    );
}

#[tokio::test]
async fn an_unreadable_tombstone_refuses_a_first_write_rather_than_guess_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let v1 = store.put(&canary_credential("73")).await.unwrap();
    store.delete(&v1.subject, v1.version).await.unwrap();
    let tombstone = tombstone_path(&store, "73");
    std::fs::write(&tombstone, b"not a number").unwrap();
    let err = store.put(&canary_credential("73")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { subject, reason } if subject == "73" && reason.contains("tombstone")),
        "{err}"
    );
    assert!(store.get(&v1.subject).await.unwrap().is_none());
    // Repaired by the operator: versions go on above it.
    std::fs::write(&tombstone, b"41\n").unwrap();
    assert_eq!(
        store.put(&canary_credential("73")).await.unwrap().version,
        42
    );
}
