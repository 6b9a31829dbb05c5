//! The test database: one random schema per test (the crate's `testkit::TestSchema`), dropped when the test ends
//! (even when it fails).

use std::sync::Arc;

use offline_access_crypto::KeyRing;
use offline_access_domain::{
    AccessToken, CachedAccess, ConsentState, Credential, Email, Profile, RefreshToken, Scopes,
    Subject,
};
use offline_access_store_postgres::testkit::{self, TestSchema};
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

/// One test's schema on the test database (dropped with the [`TestSchema`] it holds).
pub(crate) struct TestDb {
    pub(crate) url: String,
    pub(crate) schema: String,
    dropped_at_the_end: TestSchema,
}

impl TestDb {
    /// A new random schema name (not created yet: `migrate` creates it) on the test database (`DATABASE_URL`, else
    /// this process's throwaway cluster).
    pub(crate) fn new() -> TestDb {
        let schema = TestSchema::new("oa_test");
        TestDb {
            url: schema.url.clone(),
            schema: schema.name.clone(),
            dropped_at_the_end: schema,
        }
    }

    /// Options using this test's schema.
    pub(crate) fn options(&self) -> PgOptions {
        PgOptions {
            pool_size: 4,
            ..self.dropped_at_the_end.options()
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

    /// A store on this schema, not migrated, connecting to `url` (this database as another role, say).
    pub(crate) async fn connect_at(&self, url: &str) -> PgStore {
        PgStore::connect(url, keys(), self.options()).await.unwrap()
    }

    /// This test's URL with another `application_name`, to find its connections in `pg_stat_activity`.
    pub(crate) fn url_named(&self, application_name: &str) -> String {
        self.dropped_at_the_end.url_named(application_name)
    }

    /// A plain driver connection, for raw queries.
    pub(crate) async fn raw(&self) -> tokio_postgres::Client {
        raw_client(&self.url).await
    }
}

/// A plain driver connection to `url`.
pub(crate) async fn raw_client(url: &str) -> tokio_postgres::Client {
    testkit::raw_client(url).await.unwrap()
}

/// A subject from a literal.
pub(crate) fn subject(value: &str) -> Subject {
    Subject::parse(value).unwrap()
}

/// A new (version 0) credential with a full profile, three granted scopes and the given tokens (the access token
/// with two of them).
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
            // Fewer than the grant's: the access token's own scopes are kept apart.
            scopes: Scopes::parse("openid email").unwrap(),
        }),
        consent: ConsentState::Active,
        disabled: None,
        refresh_failing_since: None,
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
