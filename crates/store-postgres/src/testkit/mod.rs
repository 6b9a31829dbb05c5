//! Test helpers for suites that need a real PostgreSQL (feature `testkit`): the test database from
//! `DATABASE_URL`, and one fresh schema per test, dropped when the test ends (even when it fails).
//!
//! ```no_run
//! # async fn example() {
//! use offline_access_store_postgres::testkit::TestSchema;
//! // `None`: DATABASE_URL is not set and the test skips (it said so on stderr; under `CI` it panics instead).
//! let Some(db) = TestSchema::new("oa_test") else { return };
//! let mut options = db.options();
//! options.pool_size = 4;
//! # let _ = options;
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::PgOptions;

/// The database URL from `DATABASE_URL`, or `None` after saying loudly on stderr that the test skips.
///
/// # Panics
/// When `DATABASE_URL` is unset and `CI` is set: in CI the PostgreSQL tests must run, never skip.
#[allow(clippy::panic)]
#[must_use]
pub fn database_url() -> Option<String> {
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

/// One test's schema on the test database: a new random name (created by the first `migrate`), dropped with
/// everything in it when this value is dropped.
#[derive(Debug)]
pub struct TestSchema {
    /// The test database's URL.
    pub url: String,
    /// The schema's name: `{prefix}_{pid}_{nanos}_{n}`.
    pub name: String,
}

impl TestSchema {
    /// A fresh schema name starting with `prefix` (letters, digits and `_`), or `None` when the test skips.
    #[must_use]
    pub fn new(prefix: &str) -> Option<TestSchema> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let url = database_url()?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}_{}_{nanos}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Some(TestSchema { url, name })
    }

    /// Store options on this schema (the other options at their defaults).
    #[must_use]
    pub fn options(&self) -> PgOptions {
        PgOptions {
            schema: Some(self.name.clone()),
            ..PgOptions::default()
        }
    }

    /// This database's URL with an `application_name`, to find a store's connections in `pg_stat_activity`.
    #[must_use]
    pub fn url_named(&self, application_name: &str) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}application_name={application_name}", self.url)
    }

    /// A plain driver connection to the database, for raw queries (its connection task runs on the caller's
    /// runtime).
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn raw(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        raw_client(&self.url).await
    }
}

/// A plain driver connection to `url` (its connection task spawned on the current runtime).
///
/// # Errors
/// When the database cannot be reached.
pub async fn raw_client(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop is sync: drop the schema from a thread with its own runtime, and wait for it. A bounded lock wait:
        // a test that left a transaction open fails loudly here instead of hanging.
        let url = self.url.clone();
        let sql = format!(
            "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.name
        );
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let client = raw_client(&url).await.map_err(std::io::Error::other)?;
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}
