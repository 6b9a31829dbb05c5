//! Embedded migrations: from an empty schema, from a schema the previous release migrated (with rows), re-runs,
//! concurrent starters, edited migrations.

use offline_access_domain::events::{EventCounts, EventStore};
use offline_access_domain::risc::index_keys;
use offline_access_domain::{Credential, CredentialStore, Scopes, StoreError, testkit};
use tokio_postgres::types::Json;

use crate::support::{KEY_B, NOW, TestDb, access_of, credential, keys, refresh_of, ring, subject};

/// How many migrations this build embeds.
const MIGRATIONS: usize = 3;

/// The migrations earlier releases shipped, as they shipped them: name and SQL.
const RELEASED: [(&str, &str); 2] = [
    (
        "credentials",
        include_str!("../../migrations/0001_credentials.sql"),
    ),
    (
        "versions_revocations_access_scopes",
        include_str!("../../migrations/0002_versions_revocations_access_scopes.sql"),
    ),
];

/// The schema as an earlier release left it: the first `applied` migrations applied and recorded.
async fn released_schema(db: &TestDb, applied: usize) {
    let raw = db.raw().await;
    raw.batch_execute(&format!(
        "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".offline_access_migrations (version integer PRIMARY KEY, \
         name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        db.schema
    ))
    .await
    .unwrap();
    for (version, (name, sql)) in (1_i32..).zip(&RELEASED[..applied]) {
        raw.batch_execute(&format!(
            "SET search_path TO \"{}\"; {sql}; RESET search_path",
            db.schema
        ))
        .await
        .unwrap();
        let checksum = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            sql.as_bytes(),
        ));
        raw.execute(
            &format!(
                "INSERT INTO \"{}\".offline_access_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                db.schema
            ),
            &[&version, name, &checksum],
        )
        .await
        .unwrap();
    }
}

/// A row as the release of migration 1 wrote it (the columns it knew), sealed with the usual keys; with or without
/// `cred`'s tokens.
async fn old_row(db: &TestDb, cred: &Credential, version: i64, with_tokens: bool) {
    let sub = cred.subject.as_str();
    let keys = keys();
    let access = cred.access.as_ref().unwrap();
    let (refresh, token) = if with_tokens {
        (
            cred.refresh_token.as_ref().map(|t| {
                keys.seal(sub, "refresh_token", t.expose_secret().as_bytes())
                    .unwrap()
            }),
            Some(
                keys.seal(sub, "access_token", access.token.expose_secret().as_bytes())
                    .unwrap(),
            ),
        )
    } else {
        (None, None)
    };
    db.raw()
        .await
        .execute(
            &format!(
                "INSERT INTO \"{}\".credentials (subject, profile, scopes, consent, refresh_token, access_token, \
                 access_expires_at, key_id, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'active', $4, $5, $6, 'k1', $7, $8, $8)",
                db.schema
            ),
            &[
                &sub,
                &Json(&cred.profile),
                &Json(&cred.scopes),
                &refresh,
                &token,
                &token.as_ref().map(|_| access.expires_at),
                &version,
                &cred.created_at,
            ],
        )
        .await
        .unwrap();
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn migrations_apply_to_an_empty_schema_and_a_rerun_applies_nothing() {
    let db = TestDb::new();
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
    for (row, (name, _)) in rows.iter().zip(RELEASED) {
        assert_eq!(row.get::<_, String>(1), name);
    }
    assert_eq!(
        rows[2].get::<_, String>(1),
        "outbox_jtis_token_index_account_state"
    );
    assert!(rows.iter().all(|row| row.get::<_, i32>(2) == 64));
    // The migrated schema works.
    store
        .put(&credential("3001", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_migrating_at_once_apply_each_migration_exactly_once() {
    let db = TestDb::new();
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

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn an_edited_migration_is_refused_and_nothing_is_applied() {
    let db = TestDb::new();
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

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn migration_2_on_rows_of_the_previous_release_keeps_their_versions_and_only_goes_up_from_there()
 {
    let db = TestDb::new();
    // The schema as the release before the previous one left it: migration 1 applied and recorded, rows with
    // versions written by `version + 1`, one with a cached access token (no access scopes then).
    released_schema(&db, 1).await;
    let keys = keys();
    let old = credential("3301", Some("1//old"), "ya29.old");
    old_row(&db, &old, 41, true).await;
    old_row(&db, &credential("3302", None, "ya29.old"), 7, false).await;
    let store = db.connect_with(keys.clone(), db.options()).await;
    assert!(
        store.ping().await.is_err(),
        "a schema at migration 1 is not ready"
    );
    assert_eq!(store.migrate().await.unwrap(), MIGRATIONS - 1);
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

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn migration_3_on_rows_of_the_previous_release_keeps_them_reads_the_new_fields_as_none_and_indexes_their_tokens()
 {
    let db = TestDb::new();
    // The schema as the previous release left it (migrations 1 and 2), with rows it wrote: one with both tokens,
    // one without any, one whose refresh token is sealed under a key this build does not have.
    released_schema(&db, 2).await;
    let token = "1//0gPreviousReleaseRefreshToken-4001";
    let with_tokens = credential("4001", Some(token), "ya29.old");
    old_row(&db, &with_tokens, 5, true).await;
    old_row(&db, &credential("4002", None, "ya29.old"), 9, false).await;
    old_row(
        &db,
        &credential("4003", Some("1//lost-key"), "ya29.x"),
        3,
        false,
    )
    .await;
    let lost = ring(&format!("gone:{KEY_B}"))
        .seal("4003", "refresh_token", b"1//lost-key")
        .unwrap();
    db.raw()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".credentials SET refresh_token = $1 WHERE subject = '4003'",
                db.schema
            ),
            &[&lost],
        )
        .await
        .unwrap();

    let store = db.connect_with(keys(), db.options()).await;
    match store.ping().await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("at migration 2"), "{message}");
        }
        other => panic!("a schema at migration 2 is not ready, got {other:?}"),
    }
    assert_eq!(store.migrate().await.unwrap(), 1);
    store.ping().await.unwrap();

    // The data is kept; the new fields read as none.
    let read = store.get(&subject("4001")).await.unwrap().unwrap();
    assert_eq!(read.version, 5);
    assert_eq!(refresh_of(&read).as_deref(), Some(token));
    assert_eq!(access_of(&read).as_deref(), Some("ya29.old"));
    assert_eq!(read.profile, with_tokens.profile);
    assert_eq!(read.disabled, None);
    assert_eq!(read.refresh_failing_since, None);
    let bare = store.get(&subject("4002")).await.unwrap().unwrap();
    assert_eq!(bare.version, 9);
    assert_eq!((bare.disabled, bare.refresh_failing_since), (None, None));
    // `migrate` indexed the stored refresh token (a RISC event naming it finds its user) and left the row it
    // cannot open as it was (still a loud error, and no reason to refuse the migration).
    for key in index_keys(read.refresh_token.as_ref().unwrap()) {
        assert_eq!(
            store.find_by_refresh_token(&key).await.unwrap(),
            vec![subject("4001")]
        );
    }
    assert!(matches!(
        store.get(&subject("4003")).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(store.migrate().await.unwrap(), 0);
    // The outbox is there: a write records its event.
    store
        .put_with(&read, &[testkit::event("4001", NOW)])
        .await
        .unwrap();
    assert_eq!(
        store.counts().await.unwrap(),
        EventCounts {
            pending: 1,
            ..EventCounts::default()
        }
    );
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_store_on_an_unmigrated_schema_says_to_run_migrate() {
    let db = TestDb::new();
    let store = db.connect_with(keys(), db.options()).await;
    match store.get(&credential("3201", None, "ya29.a").subject).await {
        Err(StoreError::Other(message)) => assert!(message.contains("migrate"), "{message}"),
        other => panic!("expected a missing-table error, got {other:?}"),
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_test_schema_is_created_by_migrate_and_dropped_with_everything_in_it_at_the_end() {
    let schema = offline_access_store_postgres::testkit::TestSchema::new("oa_kit");
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

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn another_applications_credentials_table_fails_the_migration_with_the_advice_to_use_store_schema()
 {
    let db = TestDb::new();
    db.raw()
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".credentials (login text PRIMARY KEY)",
            db.schema
        ))
        .await
        .unwrap();
    let store = db.connect_with(keys(), db.options()).await;
    match store.migrate().await {
        Err(StoreError::Other(message)) => {
            assert!(message.contains("already exists"), "{message}");
            assert!(message.contains("store.schema"), "{message}");
        }
        other => panic!("expected the migration to stop, got {other:?}"),
    }
    // Nothing applied: the other table is untouched and no migration is recorded.
    let recorded: i64 = db
        .raw()
        .await
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".offline_access_migrations",
                db.schema
            ),
            &[],
        )
        .await
        .map_or(0, |row| row.get(0));
    assert_eq!(recorded, 0);
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_role_given_only_a_schema_of_its_own_migrates_and_works_without_create_on_the_database() {
    let db = TestDb::new();
    let role = format!("{}_role", db.schema);
    let raw = db.raw().await;
    raw.batch_execute(&format!(
        "CREATE ROLE \"{role}\" LOGIN; CREATE SCHEMA \"{}\" AUTHORIZATION \"{role}\"",
        db.schema
    ))
    .await
    .unwrap();
    // A new role may not create schemas in the database (PostgreSQL's default).
    let may_create: bool = raw
        .query_one(
            "SELECT has_database_privilege($1, current_database(), 'CREATE')",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!may_create);
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&role).unwrap();
    let store = db.connect_at(url.as_str()).await;
    assert_eq!(store.migrate().await.unwrap(), MIGRATIONS);
    store
        .put(&credential("3301", None, "ya29.a"))
        .await
        .unwrap();
    store.ping().await.unwrap();
    store.close();
    raw.batch_execute(&format!(
        "DROP SCHEMA \"{}\" CASCADE; DROP ROLE \"{role}\"",
        db.schema
    ))
    .await
    .unwrap();
}
