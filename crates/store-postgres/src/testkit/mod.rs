//! Test helpers for suites that need a real PostgreSQL (feature `testkit`): the test database, and one fresh
//! schema per test, dropped when the test ends (even when it fails).
//!
//! The test database is the server at `DATABASE_URL`; without it, a throwaway cluster that this test process
//! starts with the machine's `initdb` and `postgres` (one per process, shared by all its tests, stopped and deleted
//! when the process exits: [`ThrowawayCluster`]); without PostgreSQL installed at all, the tests are reported as
//! *ignored* (their crate's build script, [`probe::build_script`], sets `cfg(no_postgres)` and each test carries
//! `#[cfg_attr(no_postgres, ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL")]`), and under `CI`
//! they fail. Never a silent pass.
//!
//! ```no_run
//! # async fn example() {
//! use offline_access_store_postgres::testkit::TestSchema;
//! let db = TestSchema::new("oa_test"); // panics when there is no PostgreSQL (the test should be ignored then)
//! let mut options = db.options();
//! options.pool_size = 4;
//! # let _ = options;
//! # }
//! ```

mod cluster;
pub mod probe;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use cluster::{ClusterSetup, ThrowawayCluster};
pub use probe::{Binaries, Decision, Environment, RunAs, decide};

use crate::PgOptions;
use crate::tls::TlsSettings;

/// The test database's URL: `DATABASE_URL`, else this process's throwaway cluster (started on first use).
///
/// # Panics
/// When there is no PostgreSQL at all (under `CI`: the tests must run; otherwise the test should have been ignored
/// by `cfg(no_postgres)`: PostgreSQL was there when it was built), or the throwaway cluster cannot start. A test
/// needing PostgreSQL never passes without one.
#[allow(clippy::panic)]
#[must_use]
pub fn database_url() -> String {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    let url = URL.get_or_init(|| match decide(Environment::of_process()) {
        Decision::Url(url) => Ok(url),
        Decision::Throwaway(binaries) => shared_cluster(&binaries).map(|c| c.url().to_owned()),
        Decision::Ignored(reason) => Err(format!(
            "{reason}; this test should have been ignored (it was built when DATABASE_URL, CI or PostgreSQL was \
             there): rebuild it"
        )),
        Decision::Fail(reason) => Err(reason),
    });
    match url {
        Ok(url) => url.clone(),
        Err(reason) => panic!("{reason}"),
    }
}

/// This process's throwaway cluster, started on first use with `binaries` and shared by every test after.
///
/// # Errors
/// Why it could not start (the same answer for every caller).
pub fn shared_cluster(binaries: &Binaries) -> Result<&'static ThrowawayCluster, String> {
    static SHARED: OnceLock<Result<ThrowawayCluster, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            ThrowawayCluster::start(binaries, &ClusterSetup::default()).map_err(|e| {
                format!(
                    "DATABASE_URL is not set and a throwaway PostgreSQL cluster could not start ({e}); set \
                     DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test"
                )
            })
        })
        .as_ref()
        .map_err(Clone::clone)
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
    /// A fresh schema name starting with `prefix` (letters, digits and `_`) on the test database.
    ///
    /// # Panics
    /// When there is no test database (see [`database_url`]).
    #[must_use]
    pub fn new(prefix: &str) -> TestSchema {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let url = database_url();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}_{}_{nanos}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        TestSchema { url, name }
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
    pub async fn raw(&self) -> Result<tokio_postgres::Client, String> {
        raw_client(&self.url).await
    }
}

/// A plain driver connection to `url` (its connection task spawned on the current runtime), with TLS as the store
/// has it (`sslmode`, `sslrootcert`), so a `DATABASE_URL` with `sslmode=verify-full` works here too.
///
/// # Errors
/// When the URL or its TLS settings are invalid, or the database cannot be reached.
pub async fn raw_client(url: &str) -> Result<tokio_postgres::Client, String> {
    let (rest, tls) = TlsSettings::from_url(url, None)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
    config.ssl_mode(tls.mode.driver_mode());
    let (client, connection) = config
        .connect(tls.connector()?)
        .await
        .map_err(|e| e.to_string())?;
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
