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

#[tokio::test]
async fn a_test_schema_is_created_by_migrate_and_dropped_with_everything_in_it_at_the_end() {
    let Some(schema) = offline_access_store_postgres::testkit::TestSchema::new("oa_kit") else {
        return;
    };
    let (url, name) = (schema.url.clone(), schema.name.clone());
    let count = |client: tokio_postgres::Client, name: String| async move {
        client
            .query_one(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let store = offline_access_store_postgres::PgStore::connect(&url, keys(), schema.options())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
        .put(&credential("k1", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    assert_eq!(count(schema.raw().await.unwrap(), name.clone()).await, 1);
    drop(store);

    // Dropped from a thread of its own: works inside a runtime, as at the end of any async test.
    drop(schema);

    let client = offline_access_store_postgres::testkit::raw_client(&url)
        .await
        .unwrap();
    assert_eq!(count(client, name).await, 0);
}
