//! The storage contract suite and the event contract suite (from the domain's `testkit`), run against PostgreSQL;
//! and proof that a token sealed by the file store opens here (same format, same purposes, same keys).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use offline_access_domain::events::EventStore;
use offline_access_domain::testkit;
use offline_access_domain::{CredentialStore, Subject};
use offline_access_store_file::FileStore;
use offline_access_store_postgres::PgStore;

use crate::support::{KEY_A, KEY_B, TestDb, keys, raw_client, ring};

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_postgres_store_meets_the_storage_contract() {
    // One fresh schema per check, dropped when the test ends.
    let dbs = Mutex::new(Vec::new());
    testkit::run_contract(|| {
        let store = fresh_store(&dbs);
        async move { store.await as Arc<dyn CredentialStore> }
    })
    .await;
}

/// A migrated store on a new schema (kept in `dbs`, so it is dropped when the test ends).
fn fresh_store(dbs: &Mutex<Vec<TestDb>>) -> impl Future<Output = Arc<PgStore>> + use<> {
    let db = TestDb::new();
    let (url, options) = (db.url.clone(), db.options());
    dbs.lock().unwrap().push(db);
    async move {
        let store = PgStore::connect(&url, keys(), options).await.unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_postgres_store_meets_the_event_contract() {
    // One fresh schema per check; both ports are the same store (one pool), as the service composes them.
    let dbs = Mutex::new(Vec::new());
    testkit::run_event_contract(|| {
        let store = fresh_store(&dbs);
        async move {
            let store = store.await;
            (
                Arc::clone(&store) as Arc<dyn CredentialStore>,
                store as Arc<dyn EventStore>,
            )
        }
    })
    .await;
}

/// A row's every column, as text.
struct RowText {
    url: String,
    schema: String,
}

#[async_trait]
impl testkit::RawStorage for RowText {
    async fn raw_bytes(&self, subject: &Subject) -> Vec<u8> {
        let client = raw_client(&self.url).await;
        let row = client
            .query_one(
                &format!(
                    "SELECT row_to_json(c)::text FROM \"{}\".credentials c WHERE subject = $1",
                    self.schema
                ),
                &[&subject.as_str()],
            )
            .await
            .unwrap();
        row.get::<_, String>(0).into_bytes()
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn the_postgres_store_never_writes_a_token_in_clear() {
    let db = TestDb::new();
    let store = db.store().await;
    let raw = RowText {
        url: db.url.clone(),
        schema: db.schema.clone(),
    };
    testkit::tokens_are_never_stored_in_clear(Arc::new(store), &raw).await;
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn the_postgres_store_reports_a_row_under_an_unknown_key_loudly() {
    let db = TestDb::new();
    let writer = db
        .store_with(ring(&format!("a:{KEY_A}")), db.options())
        .await;
    let reader = db
        .store_with(ring(&format!("b:{KEY_B}")), db.options())
        .await;
    testkit::a_record_under_an_unknown_key_is_a_loud_error(Arc::new(writer), Arc::new(reader))
        .await;
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn tokens_sealed_by_the_file_store_open_in_the_postgres_store() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let file_store = FileStore::open(dir.path(), keys()).unwrap();
    let cred = testkit::canary_credential("6001");
    file_store.put(&cred).await.unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file_store.credential_path(&cred.subject)).unwrap())
            .unwrap();
    let sealed_refresh = record["refresh_token"].as_str().unwrap().to_owned();
    let sealed_access = record["access"]["token"].as_str().unwrap().to_owned();

    // The Postgres store writes the same credential; then its ciphertexts are swapped for the file store's.
    let store = db.store().await;
    store.put(&cred).await.unwrap();
    db.raw()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".credentials SET refresh_token = $1, access_token = $2 WHERE subject = $3",
                db.schema
            ),
            &[&sealed_refresh, &sealed_access, &cred.subject.as_str()],
        )
        .await
        .unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    testkit::assert_same_credential(&read, &store.get(&cred.subject).await.unwrap().unwrap());
    assert_eq!(
        read.refresh_token.unwrap().expose_secret(),
        cred.refresh_token.unwrap().expose_secret()
    );
    assert_eq!(
        read.access.unwrap().token.expose_secret(),
        cred.access.unwrap().token.expose_secret()
    );
}
