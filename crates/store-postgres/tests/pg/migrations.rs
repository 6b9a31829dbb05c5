//! Embedded migrations: from an empty schema, re-runs, concurrent starters, edited migrations.

use offline_access_domain::{CredentialStore, StoreError};

use crate::support::{credential, keys, test_db};

#[tokio::test]
async fn migrations_apply_to_an_empty_schema_and_a_rerun_applies_nothing() {
    let db = test_db!();
    let store = db.connect_with(keys(), db.options()).await;
    assert_eq!(store.migrate().await.unwrap(), 1);
    assert_eq!(store.migrate().await.unwrap(), 0);
    let raw = db.raw().await;
    let rows = raw
        .query(
            &format!(
                "SELECT version, name, length(checksum) FROM \"{}\".offline_access_migrations",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), 1);
    assert_eq!(rows[0].get::<_, String>(1), "credentials");
    assert_eq!(rows[0].get::<_, i32>(2), 64);
    // The migrated schema works.
    store
        .put(&credential("3001", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_migrating_at_once_apply_each_migration_exactly_once() {
    let db = test_db!();
    let a = db.connect_with(keys(), db.options()).await;
    let b = db.connect_with(keys(), db.options()).await;
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    assert_eq!(ra.unwrap() + rb.unwrap(), 1);
    b.put(&credential("3101", None, "ya29.a")).await.unwrap();
    assert!(
        a.get(&credential("3101", None, "ya29.a").subject)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn an_edited_migration_is_refused_and_nothing_is_applied() {
    let db = test_db!();
    let store = db.store().await;
    let raw = db.raw().await;
    raw.execute(
        &format!(
            "UPDATE \"{}\".offline_access_migrations SET checksum = 'edited' WHERE version = 1",
            db.schema
        ),
        &[],
    )
    .await
    .unwrap();
    match store.migrate().await {
        Err(StoreError::Other(message)) => assert!(message.contains("checksum"), "{message}"),
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_store_on_an_unmigrated_schema_says_to_run_migrate() {
    let db = test_db!();
    let store = db.connect_with(keys(), db.options()).await;
    match store.get(&credential("3201", None, "ya29.a").subject).await {
        Err(StoreError::Other(message)) => assert!(message.contains("migrate"), "{message}"),
        other => panic!("expected a missing-table error, got {other:?}"),
    }
}
