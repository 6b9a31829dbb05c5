//! `keys rotate`: re-encryption of every row under the newest key.

use std::sync::Mutex;

use offline_access_domain::CredentialStore;

use crate::support::{KEY_A, KEY_B, TestDb, access_of, credential, refresh_of, ring, subject};

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn reencryption_moves_every_row_to_the_newest_key_and_a_rerun_does_nothing() {
    let db = TestDb::new();
    let old_only = db
        .store_with(ring(&format!("old:{KEY_A}")), db.options())
        .await;
    for i in 0..7 {
        let sub = format!("40{i:02}");
        old_only
            .put(&credential(
                &sub,
                Some(&format!("1//r{sub}")),
                &format!("ya29.a{sub}"),
            ))
            .await
            .unwrap();
    }
    let both = db
        .store_with(ring(&format!("new:{KEY_B},old:{KEY_A}")), db.options())
        .await;
    // A write under the new key that keeps the old refresh token leaves the row needing rotation.
    let mut kept = both.get(&subject("4000")).await.unwrap().unwrap();
    kept.refresh_token = None;
    let kept = both.put(&kept).await.unwrap();
    let calls = Mutex::new(Vec::new());
    let rewritten = both
        .reencrypt_all(3, |done, total| calls.lock().unwrap().push((done, total)))
        .await
        .unwrap();
    assert_eq!(rewritten, 7);
    assert_eq!(*calls.lock().unwrap(), [(0, 7), (3, 7), (6, 7), (7, 7)]);
    assert_eq!(both.reencrypt_all(3, |_, _| {}).await.unwrap(), 0);
    // The old key can now be removed: everything opens with the new key alone, versions unchanged.
    let new_only = db
        .store_with(ring(&format!("new:{KEY_B}")), db.options())
        .await;
    let page = new_only.list(None, 100).await.unwrap();
    assert_eq!(page.items.len(), 7);
    for c in &page.items {
        let sub = c.subject.as_str();
        assert_eq!(refresh_of(c), Some(format!("1//r{sub}")));
        assert_eq!(access_of(c), Some(format!("ya29.a{sub}")));
    }
    assert_eq!(
        new_only
            .get(&subject("4000"))
            .await
            .unwrap()
            .unwrap()
            .version,
        kept.version
    );
    let raw = db.raw().await;
    let stale: i64 = raw
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".credentials WHERE key_id <> 'new' \
                 OR refresh_token NOT LIKE 'v1.new.%' OR access_token NOT LIKE 'v1.new.%'",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stale, 0);
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn reencryption_stops_loudly_at_a_row_under_a_key_that_is_gone() {
    let db = TestDb::new();
    let lost = db
        .store_with(ring(&format!("lost:{KEY_A}")), db.options())
        .await;
    lost.put(&credential("4101", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    let current = db
        .store_with(ring(&format!("new:{KEY_B}")), db.options())
        .await;
    assert!(matches!(
        current.reencrypt_all(10, |_, _| {}).await,
        Err(offline_access_domain::StoreError::Corrupt { .. })
    ));
    // Nothing was lost: the row still opens with its key.
    assert!(lost.get(&subject("4101")).await.unwrap().is_some());
}
