//! Embedded migrations: from an empty schema, from a schema the previous release migrated (with rows), re-runs,
//! concurrent starters, edited migrations.

use offline_access_domain::{CredentialStore, Scopes, StoreError};
use tokio_postgres::types::Json;

use crate::support::{access_of, credential, keys, refresh_of, subject, test_db};

/// How many migrations this build embeds.
const MIGRATIONS: usize = 2;

#[tokio::test]
async fn migrations_apply_to_an_empty_schema_and_a_rerun_applies_nothing() {
    let db = test_db!();
    let store = db.connect_with(keys(), db.options()).await;
    assert_eq!(store.migrate().await.unwrap(), MIGRATIONS);
    assert_eq!(store.migrate().await.unwrap(), 0);
    let raw = db.raw().await;
    let rows = raw
        .query(
            &format!(
                "SELECT version, name, length(checksum) FROM \"{}\".offline_access_migrations \
                 ORDER BY version",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), MIGRATIONS);
    assert_eq!(rows[0].get::<_, i32>(0), 1);
    assert_eq!(rows[0].get::<_, String>(1), "credentials");
    assert_eq!(rows[1].get::<_, i32>(0), 2);
    assert_eq!(
        rows[1].get::<_, String>(1),
        "versions_revocations_access_scopes"
    );
    assert!(rows.iter().all(|row| row.get::<_, i32>(2) == 64));
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
    assert_eq!(ra.unwrap() + rb.unwrap(), MIGRATIONS);
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
async fn migration_2_on_rows_of_the_previous_release_keeps_their_versions_and_only_goes_up_from_there()
 {
    let db = test_db!();
    let raw = db.raw().await;
    // The schema as the previous release left it: migration 1 applied and recorded, rows with versions written by
    // `version + 1`, one with a cached access token (no access scopes then).
    let first = include_str!("../../migrations/0001_credentials.sql");
    let checksum = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        first.as_bytes(),
    ));
    raw.batch_execute(&format!(
        "CREATE SCHEMA \"{0}\"; SET search_path TO \"{0}\"; {first}; \
         CREATE TABLE offline_access_migrations (version integer PRIMARY KEY, name text NOT NULL, \
         checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()); RESET search_path",
        db.schema
    ))
    .await
    .unwrap();
    raw.execute(
        &format!(
            "INSERT INTO \"{}\".offline_access_migrations (version, name, checksum) VALUES (1, 'credentials', $1)",
            db.schema
        ),
        &[&checksum],
    )
    .await
    .unwrap();
    let keys = keys();
    let old = credential("3301", Some("1//old"), "ya29.old");
    let access = old.access.as_ref().unwrap();
    for (sub, version, with_tokens) in [("3301", 41_i64, true), ("3302", 7, false)] {
        let (refresh, token) = if with_tokens {
            (
                Some(keys.seal(sub, "refresh_token", b"1//old").unwrap()),
                Some(keys.seal(sub, "access_token", b"ya29.old").unwrap()),
            )
        } else {
            (None, None)
        };
        raw.execute(
            &format!(
                "INSERT INTO \"{}\".credentials (subject, profile, scopes, consent, refresh_token, access_token, \
                 access_expires_at, key_id, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'active', $4, $5, $6, 'k1', $7, $8, $8)",
                db.schema
            ),
            &[
                &sub,
                &Json(&old.profile),
                &Json(&old.scopes),
                &refresh,
                &token,
                &token.as_ref().map(|_| access.expires_at),
                &version,
                &old.created_at,
            ],
        )
        .await
        .unwrap();
    }
    let store = db.connect_with(keys.clone(), db.options()).await;
    assert!(
        store.ping().await.is_err(),
        "a schema at migration 1 is not ready"
    );
    assert_eq!(store.migrate().await.unwrap(), 1);
    store.ping().await.unwrap();

    // Existing rows keep their versions; an old access token carries the grant's scopes.
    let read = store.get(&subject("3301")).await.unwrap().unwrap();
    assert_eq!(read.version, 41);
    assert_eq!(refresh_of(&read).as_deref(), Some("1//old"));
    assert_eq!(access_of(&read).as_deref(), Some("ya29.old"));
    assert_eq!(read.access.as_ref().unwrap().scopes, old.scopes);
    assert_eq!(
        store.get(&subject("3302")).await.unwrap().unwrap().version,
        7
    );
    // Versions go on increasing: a write to the row at 7; a delete of the row at 41 and a new first write, above
    // every version stored before the migration (so above any version that subject ever had); a new user too.
    let low = store
        .put(&store.get(&subject("3302")).await.unwrap().unwrap())
        .await
        .unwrap();
    assert!(low.version > 7, "{}", low.version);
    store.delete(&read.subject, 41).await.unwrap();
    let again = store
        .put(&credential("3301", Some("1//new"), "ya29.new"))
        .await
        .unwrap();
    assert!(again.version > 41, "{}", again.version);
    assert_eq!(
        again.access.as_ref().unwrap().scopes,
        Scopes::parse("openid email").unwrap()
    );
    let fresh = store
        .put(&credential("3303", None, "ya29.x"))
        .await
        .unwrap();
    assert!(fresh.version > 41, "{}", fresh.version);
    assert_ne!(fresh.version, again.version);
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
