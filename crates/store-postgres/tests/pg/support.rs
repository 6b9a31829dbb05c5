//! The test database: one random schema per test, dropped when the test ends (even when it fails).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use offline_access_crypto::KeyRing;
use offline_access_domain::{
    AccessToken, CachedAccess, ConsentState, Credential, Email, Profile, RefreshToken, Scopes,
    Subject,
};
use offline_access_store_postgres::{PgOptions, PgStore};
use time::OffsetDateTime;
use time::macros::datetime;

/// A fixed instant, whole seconds (PostgreSQL keeps microseconds).
pub(crate) const NOW: OffsetDateTime = datetime!(2026-11-24 12:00:00 UTC);

/// A 32-byte key, base64.
pub(crate) const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Another 32-byte key, base64url.
pub(crate) const KEY_B: &str = "_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-8";

/// A key ring from `ID:KEY,...`.
pub(crate) fn ring(spec: &str) -> Arc<KeyRing> {
    Arc::new(KeyRing::parse(spec).unwrap())
}

/// The usual ring: one key `k1`.
pub(crate) fn keys() -> Arc<KeyRing> {
    ring(&format!("k1:{KEY_A}"))
}

/// The database URL, or `None` (after saying so loudly) when tests must skip. Panics when `CI` is set.
pub(crate) fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("DATABASE_URL not set, and CI is set: the PostgreSQL tests must run in CI");
            }
            eprintln!(
                "SKIPPED: DATABASE_URL not set (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// One test's schema on the test database.
pub(crate) struct TestDb {
    pub(crate) url: String,
    pub(crate) schema: String,
}

impl TestDb {
    /// A new random schema name (not created yet: `migrate` creates it), or `None` when skipping.
    pub(crate) fn new() -> Option<TestDb> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let url = database_url()?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "oa_test_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Some(TestDb { url, schema })
    }

    /// Options using this test's schema.
    pub(crate) fn options(&self) -> PgOptions {
        PgOptions {
            schema: Some(self.schema.clone()),
            pool_size: 4,
            ..PgOptions::default()
        }
    }

    /// A migrated store on this schema with the usual keys.
    pub(crate) async fn store(&self) -> PgStore {
        self.store_with(keys(), self.options()).await
    }

    /// A migrated store on this schema with these keys and options.
    pub(crate) async fn store_with(&self, keys: Arc<KeyRing>, options: PgOptions) -> PgStore {
        let store = self.connect_with(keys, options).await;
        store.migrate().await.unwrap();
        store
    }

    /// A store on this schema, not migrated.
    pub(crate) async fn connect_with(&self, keys: Arc<KeyRing>, options: PgOptions) -> PgStore {
        PgStore::connect(&self.url, keys, options).await.unwrap()
    }

    /// This test's URL with another `application_name`, to find its connections in `pg_stat_activity`.
    pub(crate) fn url_named(&self, application_name: &str) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}application_name={application_name}", self.url)
    }

    /// A plain driver connection, for raw queries.
    pub(crate) async fn raw(&self) -> tokio_postgres::Client {
        raw_client(&self.url).await
    }
}

/// A plain driver connection to `url`.
pub(crate) async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop is sync: drop the schema from a thread with its own runtime, and wait for it.
        let url = self.url.clone();
        // A bounded lock wait: a test that left a transaction open fails loudly here instead of hanging.
        let sql = format!(
            "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        );
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = raw_client(&url).await;
                client.batch_execute(&sql).await
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.schema);
        }
    }
}

/// A subject from a literal.
pub(crate) fn subject(value: &str) -> Subject {
    Subject::parse(value).unwrap()
}

/// A new (version 0) credential with a full profile, two scopes and the given tokens.
pub(crate) fn credential(sub: &str, refresh: Option<&str>, access: &str) -> Credential {
    Credential {
        subject: subject(sub),
        profile: Profile {
            email: Some(Email::parse(&format!("u{sub}@example.com")).unwrap()),
            email_verified: true,
            name: Some("Grace Hopper".to_owned()),
            picture: None,
            given_name: Some("Grace".to_owned()),
            family_name: Some("Hopper".to_owned()),
            locale: Some("en".to_owned()),
            hd: Some("example.com".to_owned()),
        },
        scopes: Scopes::parse("openid email https://www.googleapis.com/auth/drive.appdata")
            .unwrap(),
        refresh_token: refresh.map(|t| RefreshToken::parse(t).unwrap()),
        access: Some(CachedAccess {
            token: AccessToken::parse(access).unwrap(),
            expires_at: NOW + time::Duration::hours(1),
        }),
        consent: ConsentState::Active,
        version: 0,
        created_at: NOW,
        updated_at: NOW,
    }
}

/// The refresh token in clear, for assertions.
pub(crate) fn refresh_of(c: &Credential) -> Option<String> {
    c.refresh_token
        .as_ref()
        .map(|t| t.expose_secret().to_owned())
}

/// The access token in clear, for assertions.
pub(crate) fn access_of(c: &Credential) -> Option<String> {
    c.access
        .as_ref()
        .map(|a| a.token.expose_secret().to_owned())
}

/// Skips the test (returning from it) when there is no database.
macro_rules! test_db {
    () => {
        match $crate::support::TestDb::new() {
            Some(db) => db,
            None => return,
        }
    };
}
pub(crate) use test_db;
