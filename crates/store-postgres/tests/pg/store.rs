//! Reads and writes: round trips, the version rule, the refresh-token rule, paging, and what lies at rest.

use std::sync::Arc;

use offline_access_domain::{ConsentState, CredentialStore, RefreshToken, StoreError};

use crate::support::{KEY_A, KEY_B, access_of, credential, refresh_of, ring, subject, test_db};

#[tokio::test]
async fn get_of_a_missing_user_is_none() {
    let db = test_db!();
    let store = db.store().await;
    assert!(store.get(&subject("nobody")).await.unwrap().is_none());
}

#[tokio::test]
async fn put_then_get_round_trips_every_field() {
    let db = test_db!();
    let store = db.store().await;
    let cred = credential("1001", Some("1//refresh-1001"), "ya29.access-1001");
    let stored = store.put(&cred).await.unwrap();
    assert_eq!(stored.version, 1);
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    for c in [&stored, &read] {
        assert_eq!(c.subject, cred.subject);
        assert_eq!(c.profile, cred.profile);
        assert_eq!(c.scopes, cred.scopes);
        assert_eq!(refresh_of(c).as_deref(), Some("1//refresh-1001"));
        assert_eq!(access_of(c).as_deref(), Some("ya29.access-1001"));
        assert_eq!(
            c.access.as_ref().unwrap().expires_at,
            cred.access.as_ref().unwrap().expires_at
        );
        assert_eq!(c.consent, ConsentState::Active);
        assert_eq!(c.version, 1);
        assert_eq!(c.created_at, cred.created_at);
        assert_eq!(c.updated_at, cred.updated_at);
    }
}

#[tokio::test]
async fn a_credential_without_tokens_round_trips() {
    let db = test_db!();
    let store = db.store().await;
    let mut cred = credential("1002", None, "ya29.x");
    cred.access = None;
    store.put(&cred).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert!(read.refresh_token.is_none() && read.access.is_none());
}

#[tokio::test]
async fn a_write_with_a_stale_version_conflicts_and_changes_nothing() {
    let db = test_db!();
    let store = db.store().await;
    let cred = credential("1101", Some("1//r"), "ya29.a");
    let v1 = store.put(&cred).await.unwrap();
    // A second first write.
    assert!(matches!(store.put(&cred).await, Err(StoreError::Conflict)));
    let mut next = v1.clone();
    next.access = credential("1101", None, "ya29.b").access;
    let v2 = store.put(&next).await.unwrap();
    assert_eq!(v2.version, 2);
    // Writing again from version 1.
    let mut stale = v1.clone();
    stale.access = credential("1101", None, "ya29.stale").access;
    assert!(matches!(store.put(&stale).await, Err(StoreError::Conflict)));
    // A version that was never stored, for a user that does not exist.
    let mut phantom = credential("1102", Some("1//p"), "ya29.p");
    phantom.version = 5;
    assert!(matches!(
        store.put(&phantom).await,
        Err(StoreError::Conflict)
    ));
    assert!(store.get(&phantom.subject).await.unwrap().is_none());
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(access_of(&read).as_deref(), Some("ya29.b"));
}

#[tokio::test]
async fn a_write_without_a_refresh_token_keeps_the_stored_one() {
    let db = test_db!();
    let store = db.store().await;
    let v1 = store
        .put(&credential("1201", Some("1//keep-me"), "ya29.a"))
        .await
        .unwrap();
    let mut next = v1.clone();
    next.refresh_token = None;
    next.access = credential("1201", None, "ya29.b").access;
    let v2 = store.put(&next).await.unwrap();
    assert_eq!(refresh_of(&v2).as_deref(), Some("1//keep-me"));
    let read = store.get(&v1.subject).await.unwrap().unwrap();
    assert_eq!(refresh_of(&read).as_deref(), Some("1//keep-me"));
    assert_eq!(access_of(&read).as_deref(), Some("ya29.b"));
}

#[tokio::test]
async fn a_returned_refresh_token_replaces_the_stored_one() {
    let db = test_db!();
    let store = db.store().await;
    let v1 = store
        .put(&credential("1202", Some("1//old"), "ya29.a"))
        .await
        .unwrap();
    let mut next = v1.clone();
    next.refresh_token = Some(RefreshToken::parse("1//new").unwrap());
    store.put(&next).await.unwrap();
    let read = store.get(&v1.subject).await.unwrap().unwrap();
    assert_eq!(refresh_of(&read).as_deref(), Some("1//new"));
}

#[tokio::test]
async fn consent_moves_from_active_to_revoked_and_back() {
    let db = test_db!();
    let store = db.store().await;
    let mut cred = store
        .put(&credential("1301", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    cred.mark_revoked(crate::support::NOW);
    let revoked = store.put(&cred).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.consent, ConsentState::Revoked);
    assert!(read.access.is_none());
    assert_eq!(refresh_of(&read).as_deref(), Some("1//r"));
    let mut again = revoked;
    again.refresh_token = Some(RefreshToken::parse("1//r2").unwrap());
    again.consent = ConsentState::Active;
    store.put(&again).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.consent, ConsentState::Active);
    assert!(read.offline_access());
}

#[tokio::test]
async fn a_forgotten_credential_keeps_only_its_refresh_token() {
    let db = test_db!();
    let store = db.store().await;
    let mut cred = store
        .put(&credential("1302", Some("1//pending-revocation"), "ya29.a"))
        .await
        .unwrap();
    cred.mark_forgotten(crate::support::NOW);
    store.put(&cred).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.consent, ConsentState::Forgotten);
    assert!(read.is_forgotten() && read.access.is_none());
    assert_eq!(refresh_of(&read).as_deref(), Some("1//pending-revocation"));
}

#[tokio::test]
async fn an_unknown_consent_state_in_a_row_is_a_corrupt_error() {
    let db = test_db!();
    let store = db.store().await;
    store
        .put(&credential("1303", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    db.raw()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".credentials SET consent = 'paused' WHERE subject = '1303'",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap();
    match store.get(&subject("1303")).await {
        Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains("paused"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn delete_removes_the_row_and_says_whether_there_was_one() {
    let db = test_db!();
    let store = db.store().await;
    let cred = credential("1401", Some("1//r"), "ya29.a");
    store.put(&cred).await.unwrap();
    assert!(store.delete(&cred.subject).await.unwrap());
    assert!(store.get(&cred.subject).await.unwrap().is_none());
    assert!(!store.delete(&cred.subject).await.unwrap());
    // A deleted user starts again at version 0.
    assert_eq!(store.put(&cred).await.unwrap().version, 1);
}

#[tokio::test]
async fn listing_pages_through_every_user_in_byte_order() {
    let db = test_db!();
    let store = db.store().await;
    // Mixed case and digits: byte order differs from most locale collations.
    let mut subjects: Vec<String> = (0..23)
        .map(|i| format!("{}{i:03}", ["a", "B", "c"][i % 3]))
        .collect();
    for s in &subjects {
        store
            .put(&credential(s, Some("1//r"), "ya29.a"))
            .await
            .unwrap();
    }
    subjects.sort();
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store.list(after.clone(), 10).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().map(|c| c.subject.as_str().to_owned()));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, subjects);
    assert!(store.list(None, 0).await.unwrap().items.is_empty());
    let exact = store.list(None, 23).await.unwrap();
    assert_eq!(exact.items.len(), 23);
    assert!(exact.next_after.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_of_one_version_have_exactly_one_winner() {
    const WRITERS: usize = 12;
    let db = test_db!();
    let store = Arc::new(db.store().await);
    for expected_version in [0_u64, 1] {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut cred = credential("1501", Some(&format!("1//writer-{i}")), "ya29.a");
                    cred.version = expected_version;
                    store.put(&cred).await
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(stored) => {
                    winners += 1;
                    assert_eq!(stored.version, expected_version + 1);
                }
                Err(StoreError::Conflict) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners, 1, "version {expected_version}");
    }
    assert_eq!(
        store.get(&subject("1501")).await.unwrap().unwrap().version,
        2
    );
}

#[tokio::test]
async fn rows_hold_only_ciphertext_bound_to_the_newest_key() {
    let db = test_db!();
    let store = db.store().await;
    let cred = credential(
        "1601",
        Some("1//canary-refresh-1601"),
        "ya29.canary-access-1601",
    );
    store.put(&cred).await.unwrap();
    let raw = db.raw().await;
    let row = raw
        .query_one(
            &format!(
                "SELECT c::text, refresh_token, access_token, key_id FROM \"{}\".credentials c WHERE subject = $1",
                db.schema
            ),
            &[&"1601"],
        )
        .await
        .unwrap();
    let whole: String = row.get(0);
    assert!(
        !whole.contains("canary"),
        "token text found at rest: {whole}"
    );
    let refresh: String = row.get(1);
    let access: String = row.get(2);
    assert!(refresh.starts_with("v1.k1.") && access.starts_with("v1.k1."));
    assert_eq!(row.get::<_, String>(3), "k1");
}

#[tokio::test]
async fn a_row_sealed_under_an_unknown_key_is_a_loud_corrupt_error_and_is_never_overwritten() {
    let db = test_db!();
    let writer = db
        .store_with(ring(&format!("old:{KEY_A}")), db.options())
        .await;
    let reader = db
        .store_with(ring(&format!("new:{KEY_B}")), db.options())
        .await;
    let cred = credential("1701", Some("1//r"), "ya29.a");
    writer.put(&cred).await.unwrap();
    match reader.get(&cred.subject).await {
        Err(StoreError::Corrupt { subject, reason }) => {
            assert_eq!(subject, "1701");
            assert!(reason.contains("old"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(
        reader.list(None, 10).await,
        Err(StoreError::Corrupt { .. })
    ));
    let mut overwrite = cred.clone();
    overwrite.version = 1;
    assert!(matches!(
        reader.put(&overwrite).await,
        Err(StoreError::Corrupt { .. })
    ));
    overwrite.refresh_token = None;
    assert!(matches!(
        reader.put(&overwrite).await,
        Err(StoreError::Corrupt { .. })
    ));
    let kept = writer.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(kept.version, 1);
    assert_eq!(refresh_of(&kept).as_deref(), Some("1//r"));
    assert!(reader.delete(&cred.subject).await.unwrap());
}

#[tokio::test]
async fn a_token_copied_to_another_users_row_does_not_open() {
    let db = test_db!();
    let store = db.store().await;
    store
        .put(&credential("1801", Some("1//alice"), "ya29.a"))
        .await
        .unwrap();
    store
        .put(&credential("1802", Some("1//bob"), "ya29.b"))
        .await
        .unwrap();
    let raw = db.raw().await;
    raw.execute(
        &format!(
            "UPDATE \"{0}\".credentials SET refresh_token = (SELECT refresh_token FROM \"{0}\".credentials \
             WHERE subject = '1801') WHERE subject = '1802'",
            db.schema
        ),
        &[],
    )
    .await
    .unwrap();
    assert!(matches!(
        store.get(&subject("1802")).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn the_table_refuses_a_token_that_is_not_ciphertext() {
    let db = test_db!();
    let store = db.store().await;
    store
        .put(&credential("1901", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    let raw = db.raw().await;
    let refused = raw
        .execute(
            &format!(
                "UPDATE \"{}\".credentials SET refresh_token = '1//plaintext' WHERE subject = '1901'",
                db.schema
            ),
            &[],
        )
        .await;
    assert!(refused.is_err());
}
