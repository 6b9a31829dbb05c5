//! The refresh-token index (digests only, kept with each write, dropped with the token) and records written by the
//! previous version (no `disabled`, `refresh_failing_since`, `token_index` or `write_id`).

use offline_access_domain::risc::index_keys;
use offline_access_domain::testkit::{NOW, canary_credential, subject};
use offline_access_domain::{AccountDisabled, CredentialStore, RefreshToken};

use crate::helpers::{KEY_A, file_names, hash_of, open};

fn token(value: &str) -> RefreshToken {
    RefreshToken::parse(value).unwrap()
}

#[tokio::test]
async fn the_index_holds_digests_only_and_follows_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let v1 = store.put(&canary_credential("81")).await.unwrap();
    let first = v1.refresh_token.clone().unwrap();
    let tokens = dir.path().join("tokens");
    let mut keys = index_keys(&first);
    keys.sort();
    let hash = hash_of(&store, v1.subject.as_str());
    let entry = |key: &str| tokens.join(&key[..1]).join(format!("{key}.{hash}"));
    let mut entries: Vec<String> = file_names(&tokens)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .flat_map(|shard| {
            file_names(&tokens.join(&shard))
                .into_iter()
                .map(move |name| format!("{shard}/{name}"))
        })
        .collect();
    entries.sort();
    let mut expected: Vec<String> = keys
        .iter()
        .map(|key| format!("{}/{key}.{hash}", &key[..1]))
        .collect();
    expected.sort();
    assert_eq!(
        entries, expected,
        "one entry per index key, named by the digest and the user's hash, in the key's shard"
    );
    for key in &keys {
        assert!(std::fs::read(entry(key)).unwrap().is_empty());
    }
    // A write that keeps the token keeps its entries; one with a new token moves them.
    let mut v2 = store.put(&v1).await.unwrap();
    for key in &keys {
        assert_eq!(
            store.find_by_refresh_token(key).await.unwrap(),
            std::slice::from_ref(&v1.subject)
        );
    }
    v2.refresh_token = Some(token("1//0gRotated-token-for-81"));
    let v3 = store.put(&v2).await.unwrap();
    for key in &keys {
        assert!(store.find_by_refresh_token(key).await.unwrap().is_empty());
        assert!(!entry(key).exists(), "the old token's entries are gone");
    }
    for key in index_keys(&token("1//0gRotated-token-for-81")) {
        assert_eq!(
            store.find_by_refresh_token(&key).await.unwrap(),
            std::slice::from_ref(&v1.subject)
        );
    }
    // A delete drops them.
    store.delete(&v3.subject, v3.version).await.unwrap();
    for key in index_keys(&token("1//0gRotated-token-for-81")) {
        assert!(store.find_by_refresh_token(&key).await.unwrap().is_empty());
    }
    for shard in file_names(&tokens).iter().filter(|n| !n.starts_with('.')) {
        assert!(file_names(&tokens.join(shard)).is_empty(), "{shard}");
    }
    // Keys that are not digests find nothing (and name no file).
    assert!(
        store
            .find_by_refresh_token("../credentials")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_stale_index_entry_is_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let v1 = store.put(&canary_credential("82")).await.unwrap();
    let old_keys = index_keys(v1.refresh_token.as_ref().unwrap());
    let hash = hash_of(&store, v1.subject.as_str());
    let mut v2 = v1.clone();
    v2.refresh_token = Some(token("1//0gAnother-token-for-82"));
    store.put(&v2).await.unwrap();
    // As a crash between the record's write and the old entries' removal would leave them.
    for key in &old_keys {
        let shard = dir.path().join("tokens").join(&key[..1]);
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::write(shard.join(format!("{key}.{hash}")), b"").unwrap();
        assert!(store.find_by_refresh_token(key).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_record_of_the_previous_version_reads_and_is_indexed_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (sub, refresh) = {
        let store = open(dir.path(), KEY_A);
        let cred = store.put(&canary_credential("83")).await.unwrap();
        let path = store.credential_path(&cred.subject);
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        // As the previous version wrote it: none of the new fields, and no index at all.
        for field in [
            "disabled",
            "refresh_failing_since",
            "token_index",
            "write_id",
        ] {
            json.as_object_mut().unwrap().remove(field);
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
        std::fs::remove_dir_all(dir.path().join("tokens")).unwrap();
        (cred.subject, cred.refresh_token.unwrap())
    };
    let store = open(dir.path(), KEY_A);
    let read = store.get(&sub).await.unwrap().unwrap();
    assert_eq!(read.disabled, None);
    assert_eq!(read.refresh_failing_since, None);
    assert_eq!(
        read.refresh_token.as_ref().unwrap().expose_secret(),
        refresh.expose_secret()
    );
    for key in index_keys(&refresh) {
        assert_eq!(
            store.find_by_refresh_token(&key).await.unwrap(),
            std::slice::from_ref(&sub),
            "indexed when the store opened"
        );
    }
    // The next write stores the new fields (still format 1).
    let mut next = read.clone();
    next.disabled = Some(AccountDisabled {
        reason: Some("hijacking".into()),
        since: NOW,
    });
    next.refresh_failing_since = Some(NOW);
    store.put(&next).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.credential_path(&sub)).unwrap()).unwrap();
    assert_eq!(json["format"], 1);
    assert_eq!(
        json["disabled"],
        serde_json::json!({"reason": "hijacking", "since": "2026-11-24T12:00:00Z"})
    );
    assert_eq!(json["refresh_failing_since"], "2026-11-24T12:00:00Z");
    assert_eq!(json["token_index"].as_array().unwrap().len(), 2);
    let read = store.get(&subject("83")).await.unwrap().unwrap();
    assert_eq!(read.disabled, next.disabled);
}

#[tokio::test]
async fn a_lost_index_is_rebuilt_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let subs = ["84", "85"];
    {
        let store = open(dir.path(), KEY_A);
        for sub in subs {
            store.put(&canary_credential(sub)).await.unwrap();
        }
    }
    std::fs::remove_dir_all(dir.path().join("tokens")).unwrap();
    let store = open(dir.path(), KEY_A);
    for sub in subs {
        let cred = store.get(&subject(sub)).await.unwrap().unwrap();
        // The canary tokens share their 16-character prefix: the prefix key finds both users (the caller compares
        // the tokens); the hash key finds only this one.
        let [prefix, hash] =
            <[String; 2]>::try_from(index_keys(cred.refresh_token.as_ref().unwrap())).unwrap();
        let mut both = store.find_by_refresh_token(&prefix).await.unwrap();
        both.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(both, subs.map(subject));
        assert_eq!(
            store.find_by_refresh_token(&hash).await.unwrap(),
            std::slice::from_ref(&cred.subject)
        );
    }
}

/// A store indexed in the previous layout (a directory per key, `tokens/.indexed`) is indexed again in the current
/// one when it opens, and the previous directories are removed.
#[tokio::test]
async fn an_index_in_the_previous_layout_is_rebuilt_in_shards_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let (cred, hash) = {
        let store = open(dir.path(), KEY_A);
        let cred = store.put(&canary_credential("86")).await.unwrap();
        let hash = hash_of(&store, cred.subject.as_str());
        (cred, hash)
    };
    let keys = index_keys(cred.refresh_token.as_ref().unwrap());
    // As the previous version left it.
    std::fs::remove_dir_all(&tokens).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    for key in &keys {
        std::fs::create_dir(tokens.join(key)).unwrap();
        std::fs::write(tokens.join(key).join(&hash), b"").unwrap();
    }
    std::fs::write(tokens.join(".indexed"), b"").unwrap();
    let store = open(dir.path(), KEY_A);
    for key in &keys {
        assert_eq!(
            store.find_by_refresh_token(key).await.unwrap(),
            std::slice::from_ref(&cred.subject)
        );
        assert!(!tokens.join(key).exists(), "the previous layout is gone");
        assert!(
            tokens
                .join(&key[..1])
                .join(format!("{key}.{hash}"))
                .exists()
        );
    }
    assert!(!tokens.join(".indexed").exists());
    assert!(tokens.join(".indexed-2").exists());
}
