//! `ping` is readiness: reachable, the schema at this build's migration, writable; each failure says why.

use offline_access_domain::{CredentialStore, StoreError};

use crate::support::{TestDb, credential, keys};

/// The message of an `Unavailable`, or a panic naming what came instead.
fn unavailable(result: Result<(), StoreError>) -> String {
    match result {
        Err(StoreError::Unavailable(message)) => message,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn an_unmigrated_schema_is_not_ready_until_migrate_runs() {
    let db = TestDb::new();
    // `connect` needs no tables (`store.migrate_on_start = false`, never migrated).
    let store = db.connect_with(keys(), db.options()).await;
    let message = unavailable(store.ping().await);
    assert!(message.contains("schema not migrated"), "{message}");
    assert!(message.contains("offline-access migrate"), "{message}");
    assert!(message.contains(&db.schema), "{message}");
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    store
        .put(&credential("3401", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    store.ping().await.unwrap();
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_schema_behind_this_build_is_not_ready_and_says_which_migration_it_lacks() {
    let db = TestDb::new();
    let store = db.store().await;
    store.ping().await.unwrap();
    // As if only the previous release had migrated it.
    db.raw()
        .await
        .execute(
            &format!(
                "DELETE FROM \"{}\".offline_access_migrations WHERE version = 3",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let message = unavailable(store.ping().await);
    assert!(message.contains("at migration 2"), "{message}");
    assert!(message.contains("needs migration 3"), "{message}");
    assert!(message.contains("offline-access migrate"), "{message}");
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_read_only_database_is_not_ready() {
    let db = TestDb::new();
    db.store().await.ping().await.unwrap();
    // A session that may only read, as on a standby after a failover.
    let separator = if db.url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{separator}options=-c%20default_transaction_read_only%3Don",
        db.url
    );
    let read_only = offline_access_store_postgres::PgStore::connect(&url, keys(), db.options())
        .await
        .unwrap();
    let message = unavailable(read_only.ping().await);
    assert!(message.contains("only accepts reads"), "{message}");
    assert!(message.contains("store.url"), "{message}");
}
