//! Key rotation: `reencrypt_all` moves every record to the newest key so the old key can be removed.

use std::sync::Mutex;

use offline_access_domain::testkit::{CANARY_REFRESH, canary_credential, subject};
use offline_access_domain::{CredentialStore, StoreError};

use crate::helpers::{KEY_A, KEY_B, open};

fn key_id_on_disk(store: &offline_access_store_file::FileStore, sub: &str) -> String {
    let bytes = std::fs::read(store.credential_path(&subject(sub))).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    json["key_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn after_reencrypting_under_a_new_key_the_old_key_can_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let old = open(dir.path(), KEY_A);
    let subs = ["1", "2", "3", "4", "5"];
    for s in subs {
        old.put(&canary_credential(s)).await.unwrap();
    }

    let both = open(dir.path(), &format!("{KEY_B},{KEY_A}"));
    let calls = Mutex::new(Vec::new());
    let rewritten = both
        .reencrypt_all(2, |done, total| calls.lock().unwrap().push((done, total)))
        .await
        .unwrap();
    assert_eq!(rewritten, 5);
    assert_eq!(*calls.lock().unwrap(), [(0, 5), (2, 5), (4, 5), (5, 5)]);
    for s in subs {
        assert_eq!(key_id_on_disk(&both, s), "b");
    }

    // Idempotent: a second run finds nothing to do.
    assert_eq!(both.reencrypt_all(2, |_, _| {}).await.unwrap(), 0);

    // The old key removed from the configuration: everything still opens, unchanged (versions included).
    let new_only = open(dir.path(), KEY_B);
    for s in subs {
        let cred = new_only.get(&subject(s)).await.unwrap().unwrap();
        assert_eq!(cred.version, 1, "re-encryption is not a logical change");
        assert_eq!(
            cred.refresh_token.unwrap().expose_secret(),
            format!("{CANARY_REFRESH}{s}")
        );
    }
    assert_eq!(new_only.list(None, 10).await.unwrap().items.len(), 5);
    // And the old key alone no longer opens them.
    let old_only = open(dir.path(), KEY_A);
    assert!(matches!(
        old_only.get(&subject("1")).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn an_interrupted_rotation_rewrites_only_what_is_left_on_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let old = open(dir.path(), KEY_A);
    for s in ["1", "2", "3"] {
        old.put(&canary_credential(s)).await.unwrap();
    }
    let both = open(dir.path(), &format!("{KEY_B},{KEY_A}"));
    // Some records were already rewritten under the new key (by a partial run or by ordinary writes).
    let cred = both.get(&subject("2")).await.unwrap().unwrap();
    both.put(&cred).await.unwrap();
    assert_eq!(key_id_on_disk(&both, "2"), "b");

    assert_eq!(both.reencrypt_all(10, |_, _| {}).await.unwrap(), 2);
    for s in ["1", "2", "3"] {
        assert_eq!(key_id_on_disk(&both, s), "b");
    }
}

#[tokio::test]
async fn rotation_stops_loudly_at_a_record_under_an_unconfigured_key() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), KEY_A)
        .put(&canary_credential("9"))
        .await
        .unwrap();
    let without_a = open(dir.path(), KEY_B);
    let err = without_a.reencrypt_all(10, |_, _| {}).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { subject, reason } if subject == "9" && reason.contains("`a`")),
        "{err}"
    );
}
