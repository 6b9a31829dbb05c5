//! [`PgStore`]: the credential store port on PostgreSQL.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use offline_access_crypto::KeyRing;
use offline_access_domain::events::EventRecord;
use offline_access_domain::{
    Credential, CredentialPage, CredentialStore, StoreError, Subject, UserLock,
};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Errors, redact_url};
use crate::lock::{PgUserLock, TxConn, begin_locked};
use crate::migrate::{CREATE_MIGRATIONS_TABLE, LATEST_MIGRATION, MIGRATION_LOCK, MIGRATIONS};
use crate::options::{PgOptions, millis};
use crate::outbox::EventColumns;
use crate::row::{IndexKeys, Sealed, decode, open_refresh_token, version_param};
use crate::sql::Statements;
use crate::tls::{self, TlsSettings};

/// A pool of `size` connections with the store's timeouts.
fn build_pool(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    size: usize,
    options: &PgOptions,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(options.acquire_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Other(format!("building the PostgreSQL pool: {e}")))
}

/// How often a re-encryption retries a row that changed under it before giving up on the run.
const RESEAL_ATTEMPTS: usize = 5;

/// Longest listing cursor accepted: a subject (the `credentials.subject` CHECK allows 255 characters).
const MAX_CURSOR_CHARS: usize = 255;

/// Rows per step when `migrate` indexes refresh tokens stored without their index keys.
const INDEX_BATCH: i64 = 500;

/// A [`CredentialStore`] on PostgreSQL (one row per user in `credentials`), shared by any number of service
/// instances.
///
/// - Tokens are sealed with the [`KeyRing`] (AES-256-GCM, AAD = subject + column: the file store's format), so the
///   table holds only ciphertext; profile and scopes are `jsonb`, the consent state text.
/// - [`put`](CredentialStore::put) is one statement: `INSERT ... ON CONFLICT DO NOTHING` for a first write,
///   `UPDATE ... WHERE version = $expected` after; no row back means [`StoreError::Conflict`]. The refresh-token
///   rule is in the SQL (`COALESCE(new, stored)`). A version is `epoch << 32 | count`: a first write takes a new
///   epoch from the sequence `credentials_version`, later writes count up, so a subject's versions never repeat,
///   also across deletes. `delete` is conditional on the version like `put`.
/// - [`list`](CredentialStore::list) and [`pending_revocations`](CredentialStore::pending_revocations) page by
///   subject (the cursor is the last subject); the latter reads only the partial index of forgotten rows. A row
///   that cannot be read is reported in [`CredentialPage::unreadable`] and skipped.
/// - [`put_with`](CredentialStore::put_with) and [`delete_with`](CredentialStore::delete_with) write their events
///   into the `outbox` table in the same statement as the change (a data-modifying CTE: one statement, one
///   transaction, one round trip; events only when the row was written). Each write storing a refresh token
///   stores its RISC index keys (digests) in indexed columns, for
///   [`find_by_refresh_token`](CredentialStore::find_by_refresh_token).
/// - It is also the [`EventStore`](offline_access_domain::events::EventStore): the outbox (claimed with
///   `FOR UPDATE SKIP LOCKED`, so instances claim different events) and the RISC `jti` register.
/// - [`ping`](CredentialStore::ping) is readiness: reachable, migrated to this build's schema, writable.
/// - [`lock_user`](CredentialStore::lock_user) opens a transaction on a connection of a separate lock pool and
///   takes `pg_advisory_xact_lock(hashtext(namespace), hashtext(subject))` (it works for users without a row
///   yet). The guard reads on that connection; its writes are ordinary one-statement writes (same version rule)
///   on the main pool, durable as soon as `put` returns, so a refresh token Google rotated is never lost with the
///   lock. `release` ends the transaction, freeing the lock. Waiting is bounded by [`PgOptions::lock_wait`]; a
///   crashed holder's lock ends with its connection.
/// - No session state is used (names are schema-qualified, settings are `SET LOCAL`), so it runs behind PgBouncer
///   in transaction mode.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Reads and writes, one statement per checkout.
    pool: Pool,
    /// Connections holding user locks (a transaction each, for the length of a refresh).
    lock_pool: Pool,
    pub(crate) keys: Arc<KeyRing>,
    /// The configured key ids (for the write guard against rows sealed under another key).
    key_ids: Vec<String>,
    pub(crate) sql: Statements,
    pub(crate) errors: Errors,
    pub(crate) options: PgOptions,
    /// Key of this store's user locks (differs per schema, so stores in other schemas never contend).
    pub(crate) lock_namespace: String,
    /// `first_sight` calls so far: every so many, one purges expired `jti`s.
    pub(crate) jti_calls: AtomicU64,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.inner.pool.status();
        f.debug_struct("PgStore")
            .field("url", &self.inner.errors.url)
            .field("schema", &self.inner.options.schema)
            .field("pool_size", &status.max_size)
            .field("connections", &status.size)
            .field("keys", &self.inner.keys)
            .finish()
    }
}

impl PgStore {
    /// Connects to PostgreSQL at `url` (`postgres://user[:password]@host[:port]/db[?...]`, or `key=value` form) and
    /// checks that it answers.
    ///
    /// TLS follows libpq's `sslmode` in the URL: `disable`, `prefer` (the default: TLS when the server offers it),
    /// `require` (always encrypted, the certificate not authenticated), `verify-ca` (signed by a trusted CA),
    /// `verify-full` (and naming the host). The trusted CAs are [`PgOptions::ca_pem`], else the file named by
    /// `sslrootcert` in the URL, else the platform's roots.
    ///
    /// Does not create tables, nor require them: call [`PgStore::migrate`] (the service does on start unless
    /// disabled); until then [`ping`](CredentialStore::ping) reports the schema as not migrated.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached (the message names `store.url`, with any
    /// password redacted); [`StoreError::Other`] for an invalid URL, invalid options, unusable CA certificates, or
    /// a TLS handshake that fails (a certificate that is not trusted or does not name the host, a server without
    /// TLS under `sslmode=require`: the message says TLS and the `sslmode`).
    pub async fn connect(
        url: &str,
        keys: Arc<KeyRing>,
        options: PgOptions,
    ) -> Result<PgStore, StoreError> {
        options.validate()?;
        let mut errors = Errors {
            url: redact_url(url),
            tls: String::new(),
        };
        let (url, tls) = TlsSettings::from_url(url, options.ca_pem.as_deref())
            .map_err(|e| StoreError::Other(format!("{e} (store.url `{}`)", errors.url)))?;
        errors.tls = tls.describe();
        let connector = tls
            .connector()
            .map_err(|e| StoreError::Other(format!("TLS to PostgreSQL: {e}")))?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            StoreError::Other(format!(
                "store.url `{}` is not a valid PostgreSQL connection URL",
                errors.url
            ))
        })?;
        config.connect_timeout(options.connect_timeout);
        config.ssl_mode(tls.mode.driver_mode());
        if config.get_application_name().is_none() {
            config.application_name("offline-access");
        }
        if let Some(timeout) = options.statement_timeout {
            let mut startup = config.get_options().unwrap_or_default().to_owned();
            if !startup.is_empty() {
                startup.push(' ');
            }
            startup.push_str(&format!("-c statement_timeout={}", millis(timeout)));
            config.options(&startup);
        }
        let pool = build_pool(
            config.clone(),
            connector.clone(),
            options.pool_size,
            &options,
        )?;
        let lock_pool = build_pool(config, connector, options.lock_pool_size, &options)?;
        let lock_namespace = format!(
            "offline-access/user/{}",
            options.schema.as_deref().unwrap_or_default()
        );
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                lock_pool,
                key_ids: keys.key_ids().map(str::to_owned).collect(),
                keys,
                sql: Statements::new(options.schema.as_deref()),
                errors,
                options,
                lock_namespace,
                jti_calls: AtomicU64::new(0),
            }),
        };
        store.inner.check_reachable().await?;
        Ok(store)
    }

    /// The schema this store uses (`None`: the connection's `search_path`).
    #[must_use]
    pub fn schema(&self) -> Option<&str> {
        self.inner.options.schema.as_deref()
    }

    /// Applies the embedded migrations that are not applied yet, in one transaction under a transaction-level
    /// advisory lock (concurrent starters wait for each other; the loser finds nothing left to do). Creates the
    /// schema if one is configured. Returns how many were applied (0 when up to date).
    ///
    /// Then, outside that transaction, it gives every row that holds a refresh token but no index keys (written
    /// before migration 0003, or by an instance of the previous release during a rolling upgrade) its keys, in
    /// batches (see [`CredentialStore::find_by_refresh_token`]); a row whose token cannot be opened is logged and
    /// left as it is.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database is unreachable; [`StoreError::Other`] when an applied
    /// migration's checksum differs from this build's (someone edited it) or a statement fails. Nothing is applied
    /// then.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let inner = &*self.inner;
        let map = |e: tokio_postgres::Error| inner.errors.driver("applying migrations", &e);
        let mut conn = inner.conn().await?;
        let tx = conn.transaction().await.map_err(map)?;
        let count = match inner.migrate_in(&tx).await {
            Ok(count) => {
                tx.commit().await.map_err(map)?;
                count
            }
            Err(e) => {
                // Roll back now rather than when the transaction is dropped, so the locks go at once.
                let _ = tx.rollback().await;
                return Err(e);
            }
        };
        let indexed = inner.index_refresh_tokens(&conn).await?;
        if indexed > 0 {
            tracing::info!(
                indexed,
                "stored the RISC index keys of refresh tokens written without them"
            );
        }
        Ok(count)
    }

    /// Like [`CredentialStore::lock_user`], but returns `None` at once if another task or instance holds the
    /// user's lock.
    ///
    /// # Errors
    /// As [`CredentialStore::lock_user`].
    pub async fn try_lock_user(
        &self,
        subject: &Subject,
    ) -> Result<Option<Box<dyn UserLock>>, StoreError> {
        let mut tx = TxConn::new(self.inner.lock_conn().await?);
        if begin_locked(&self.inner, &mut tx, subject, false).await? {
            Ok(Some(self.guard(subject, tx)))
        } else {
            // Dropping `tx` rolls the empty transaction back before the connection is reused.
            Ok(None)
        }
    }

    fn guard(&self, subject: &Subject, tx: TxConn) -> Box<dyn UserLock> {
        Box::new(PgUserLock {
            inner: Arc::clone(&self.inner),
            subject: subject.clone(),
            tx,
        })
    }

    /// Re-encrypts every row holding a token sealed under a key other than the newest, `batch` rows per step,
    /// calling `progress(done, total)` first and after each step. Versions and timestamps are kept (the content does
    /// not change); each row is swapped with `UPDATE ... WHERE version = $read`, so a concurrent write is never
    /// overwritten (the row is re-read and retried). Idempotent and safe to interrupt: a re-run skips what is done.
    /// Returns how many rows were rewritten.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a row that cannot be read (including one sealed under a key that is no longer
    /// configured): fix or delete it and run again; the others as for `put`.
    pub async fn reencrypt_all(
        &self,
        batch: usize,
        progress: impl Fn(usize, usize),
    ) -> Result<usize, StoreError> {
        let inner = &*self.inner;
        let doing = "re-encrypting credentials";
        let map = |e: tokio_postgres::Error| inner.errors.driver(doing, &e);
        let newest = inner.keys.newest_id();
        let conn = inner.conn().await?;
        let count = conn
            .prepare_cached(&inner.sql.count_stale)
            .await
            .map_err(map)?;
        let total: i64 = conn
            .query_one(&count, &[&newest])
            .await
            .map_err(map)?
            .try_get(0)
            .map_err(map)?;
        let total = usize::try_from(total).unwrap_or_default();
        progress(0, total);
        let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let first = conn
            .prepare_cached(&inner.sql.stale_first)
            .await
            .map_err(map)?;
        let next = conn
            .prepare_cached(&inner.sql.stale_after)
            .await
            .map_err(map)?;
        let reseal = conn.prepare_cached(&inner.sql.reseal).await.map_err(map)?;
        let mut after: Option<String> = None;
        let (mut done, mut rewritten) = (0, 0);
        loop {
            let rows = match &after {
                None => conn.query(&first, &[&newest, &limit]).await,
                Some(after) => conn.query(&next, &[&newest, after, &limit]).await,
            }
            .map_err(map)?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let mut credential = decode(row, &inner.keys)?;
                after = Some(credential.subject.as_str().to_owned());
                let mut attempts = 0;
                loop {
                    let sealed = Sealed::seal(&credential, &inner.keys)?;
                    let changed = conn
                        .execute(
                            &reseal,
                            &[
                                &credential.subject.as_str(),
                                &sealed.refresh_token,
                                &sealed.access_token,
                                &sealed.key_id,
                                &version_param(credential.version)?,
                            ],
                        )
                        .await
                        .map_err(map)?;
                    if changed == 1 {
                        rewritten += 1;
                        break;
                    }
                    // Written meanwhile: re-read and retry; deleted meanwhile: nothing left to do.
                    attempts += 1;
                    if attempts >= RESEAL_ATTEMPTS {
                        return Err(StoreError::Conflict);
                    }
                    match inner.get_on(&conn, &credential.subject).await? {
                        Some(current) => credential = current,
                        None => break,
                    }
                }
                done += 1;
            }
            progress(done, total.max(done));
        }
        Ok(rewritten)
    }

    /// Closes the pool: idle connections are closed now, busy ones when returned. Later calls fail with
    /// [`StoreError::Unavailable`].
    pub fn close(&self) {
        self.inner.pool.close();
        self.inner.lock_pool.close();
    }
}

impl Inner {
    /// The body of [`PgStore::migrate`], inside its transaction.
    async fn migrate_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<usize, StoreError> {
        let map = |e: tokio_postgres::Error| self.errors.driver("applying migrations", &e);
        let schema_key = self.options.schema.as_deref().unwrap_or_default();
        tx.execute(MIGRATION_LOCK, &[&schema_key])
            .await
            .map_err(map)?;
        if let Some(schema) = &self.options.schema {
            // Created only when missing: `CREATE SCHEMA IF NOT EXISTS` needs CREATE on the database even when the
            // schema exists, which a role given a schema of its own (and nothing more) does not have.
            let exists = tx
                .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[schema])
                .await
                .map_err(map)?
                .is_some();
            let create = if exists {
                String::new()
            } else {
                format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"; ")
            };
            tx.batch_execute(&format!("{create}SET LOCAL search_path TO \"{schema}\""))
                .await
                .map_err(map)?;
        }
        tx.batch_execute(CREATE_MIGRATIONS_TABLE)
            .await
            .map_err(map)?;
        let applied: HashMap<i32, String> = tx
            .query(
                "SELECT version, checksum FROM offline_access_migrations",
                &[],
            )
            .await
            .map_err(map)?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(map)?;
        let mut count = 0;
        for migration in MIGRATIONS {
            let checksum = migration.checksum();
            match applied.get(&migration.version) {
                Some(stored) if *stored == checksum => {}
                Some(_) => {
                    return Err(StoreError::Other(format!(
                        "migration {} ({}) differs from the one applied to the database (checksum mismatch); \
                         migrations must never be edited once released",
                        migration.version, migration.name
                    )));
                }
                None => {
                    tx.batch_execute(migration.sql)
                        .await
                        .map_err(|e| self.migration_failed(&e))?;
                    tx.execute(
                        "INSERT INTO offline_access_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        &[&migration.version, &migration.name, &checksum],
                    )
                    .await
                    .map_err(map)?;
                    tracing::info!(
                        version = migration.version,
                        name = migration.name,
                        "applied migration"
                    );
                    count += 1;
                }
            }
        }
        let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
        if let Some(newest) = applied.keys().copied().filter(|v| *v > known).max() {
            tracing::warn!(
                newest,
                known,
                "the database has migrations newer than this build (a newer version ran against it)"
            );
        }
        Ok(count)
    }

    /// Gives rows holding a refresh token without index keys their keys (see [`PgStore::migrate`]); how many.
    /// Each row is updated only if it still holds the very ciphertext read, so a concurrent write is never undone.
    async fn index_refresh_tokens(&self, conn: &Object) -> Result<u64, StoreError> {
        let map = |e: tokio_postgres::Error| self.errors.driver("indexing refresh tokens", &e);
        let select = conn
            .prepare_cached(&self.sql.unindexed)
            .await
            .map_err(map)?;
        let update = conn
            .prepare_cached(&self.sql.index_tokens)
            .await
            .map_err(map)?;
        let (mut after, mut indexed) = (String::new(), 0);
        loop {
            let rows = conn
                .query(&select, &[&after, &INDEX_BATCH])
                .await
                .map_err(map)?;
            let (mut subjects, mut sealed, mut prefixes, mut hashes) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for row in &rows {
                let subject: &str = row.try_get(0).map_err(map)?;
                let ciphertext: &str = row.try_get(1).map_err(map)?;
                match open_refresh_token(&self.keys, subject, ciphertext) {
                    Ok(token) => {
                        let IndexKeys { prefix, hash } = IndexKeys::of(&token);
                        subjects.push(subject);
                        sealed.push(ciphertext);
                        prefixes.push(prefix);
                        hashes.push(hash);
                    }
                    Err(reason) => tracing::warn!(
                        subject,
                        %reason,
                        "a stored refresh token cannot be opened: not indexed for RISC lookups"
                    ),
                }
            }
            if !subjects.is_empty() {
                indexed += conn
                    .execute(&update, &[&subjects, &sealed, &prefixes, &hashes])
                    .await
                    .map_err(map)?;
            }
            match rows.last() {
                Some(last) if i64::try_from(rows.len()) == Ok(INDEX_BATCH) => {
                    after = last.try_get(0).map_err(map)?;
                }
                _ => return Ok(indexed),
            }
        }
    }

    /// Runs one statement on a pooled connection (prepared once per connection) and returns its rows.
    pub(crate) async fn query(
        &self,
        doing: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let map = |e: tokio_postgres::Error| self.errors.driver(doing, &e);
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(sql).await.map_err(map)?;
        conn.query(&statement, params).await.map_err(map)
    }

    /// Runs a statement answering one row of `bigint` counts (`count(*)`), and returns them.
    pub(crate) async fn query_counts(
        &self,
        doing: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<u64>, StoreError> {
        let rows = self.query(doing, sql, params).await?;
        let Some(row) = rows.first() else {
            return Ok(Vec::new());
        };
        (0..row.len())
            .map(|i| {
                row.try_get::<_, i64>(i)
                    .map(i64::unsigned_abs)
                    .map_err(|e| self.errors.driver(doing, &e))
            })
            .collect()
    }

    /// Runs one statement on a pooled connection and returns how many rows it changed.
    pub(crate) async fn execute(
        &self,
        doing: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let map = |e: tokio_postgres::Error| self.errors.driver(doing, &e);
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(sql).await.map_err(map)?;
        conn.execute(&statement, params).await.map_err(map)
    }

    /// Checks that the database answers (no table needed: used by `connect`, before any migration).
    async fn check_reachable(&self) -> Result<(), StoreError> {
        let conn = match self.pool.get().await {
            Ok(conn) => conn,
            // A failed handshake at start is configuration (the CA, the mode, the server's ssl), not an outage.
            Err(deadpool_postgres::PoolError::Backend(e)) if tls::tls_failure(&e).is_some() => {
                return Err(match self.errors.driver("connecting", &e) {
                    StoreError::Unavailable(message) => StoreError::Other(message),
                    other => other,
                });
            }
            Err(e) => return Err(unavailable(self.errors.pool(e))),
        };
        conn.simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(|e| unavailable(self.errors.driver("checking the connection", &e)))
    }

    /// Readiness: reachable, migrated to [`LATEST_MIGRATION`], writable; one statement.
    async fn ready(&self) -> Result<(), StoreError> {
        let doing = "checking readiness";
        let conn = self.conn().await.map_err(unavailable)?;
        let answer = async {
            let statement = conn.prepare_cached(&self.sql.ready).await?;
            let row = conn.query_one(&statement, &[]).await?;
            Ok::<_, tokio_postgres::Error>((row.try_get::<_, i32>(0)?, row.try_get::<_, bool>(1)?))
        }
        .await;
        let (applied, read_only) = match answer {
            Ok(answer) => answer,
            Err(e)
                if e.code().is_some_and(|code| {
                    *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME
                }) =>
            {
                (0, false)
            }
            Err(e) => return Err(unavailable(self.errors.driver(doing, &e))),
        };
        if applied < LATEST_MIGRATION {
            let schema = self
                .options
                .schema
                .as_deref()
                .map_or_else(|| "on search_path".to_owned(), |s| format!("`{s}`"));
            let state = if applied == 0 {
                "has no offline-access tables".to_owned()
            } else {
                format!("is at migration {applied}")
            };
            return Err(StoreError::Unavailable(format!(
                "schema not migrated: the PostgreSQL schema {schema} {state}; this build needs migration \
                 {LATEST_MIGRATION}: run `offline-access migrate` (or enable store.migrate_on_start)"
            )));
        }
        if read_only {
            return Err(StoreError::Unavailable(format!(
                "PostgreSQL at {} (store.url) only accepts reads (a standby, or default_transaction_read_only)",
                self.errors.url
            )));
        }
        Ok(())
    }

    /// One page of `first`/`after` (statements taking `[cursor,] limit` and returning [`COLUMNS`](crate::row)
    /// in subject order): readable rows in `items`, the others in `unreadable`, the cursor past both.
    async fn page(
        &self,
        doing: &str,
        (first, after): (&str, &str),
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        if let Some(cursor) = &cursor
            && (cursor.is_empty()
                || cursor.contains('\0')
                || cursor.chars().count() > MAX_CURSOR_CHARS)
        {
            return Err(StoreError::Other(
                "not a listing cursor of this PostgreSQL store".to_owned(),
            ));
        }
        if limit == 0 {
            return Ok(CredentialPage::default());
        }
        let map = |e: tokio_postgres::Error| self.errors.driver(doing, &e);
        // One more than asked, to know whether there is a next page.
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let conn = self.conn().await?;
        let rows = match &cursor {
            None => {
                let statement = conn.prepare_cached(first).await.map_err(map)?;
                conn.query(&statement, &[&fetch]).await
            }
            Some(cursor) => {
                let statement = conn.prepare_cached(after).await.map_err(map)?;
                conn.query(&statement, &[cursor, &fetch]).await
            }
        }
        .map_err(map)?;
        let mut page = CredentialPage::default();
        let mut last = None;
        for row in rows.iter().take(limit) {
            // The cursor moves past every row, readable or not, so one bad row never stops a listing.
            last = Some(row.try_get::<_, String>(0).map_err(map)?);
            match decode(row, &self.keys) {
                Ok(credential) => page.items.push(credential),
                Err(StoreError::Corrupt { subject, reason }) => {
                    page.unreadable.push(format!("{subject}: {reason}"));
                }
                Err(other) => return Err(other),
            }
        }
        if rows.len() > limit {
            page.next_cursor = last;
        }
        Ok(page)
    }

    /// A migration's statement failed. A name already taken (by another application's table in `public`, most
    /// likely) gets the advice to give offline-access a schema of its own.
    fn migration_failed(&self, error: &tokio_postgres::Error) -> StoreError {
        let failure = self.errors.driver("applying migrations", error);
        let taken = error.code().is_some_and(|code| {
            *code == SqlState::DUPLICATE_TABLE || *code == SqlState::DUPLICATE_OBJECT
        });
        match failure {
            StoreError::Other(message) if taken => {
                let place = match &self.options.schema {
                    Some(schema) => format!("schema `{schema}`"),
                    None => "the connection's search_path (normally `public`)".to_owned(),
                };
                StoreError::Other(format!(
                    "{message}: an object of another application has that name in {place}; give offline-access \
                     a schema of its own with store.schema (e.g. offline_access)"
                ))
            }
            other => other,
        }
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| self.errors.pool(e))
    }

    /// A connection of the lock pool.
    pub(crate) async fn lock_conn(&self) -> Result<Object, StoreError> {
        self.lock_pool.get().await.map_err(|e| self.errors.pool(e))
    }

    /// Reads one credential on `client` (inside or outside a transaction).
    pub(crate) async fn get_on(
        &self,
        client: &Object,
        subject: &Subject,
    ) -> Result<Option<Credential>, StoreError> {
        let doing = "reading a credential";
        let statement = client
            .prepare_cached(&self.sql.get)
            .await
            .map_err(|e| self.errors.driver(doing, &e))?;
        let row = client
            .query_opt(&statement, &[&subject.as_str()])
            .await
            .map_err(|e| self.errors.driver(doing, &e))?;
        row.map(|row| decode(&row, &self.keys)).transpose()
    }

    /// Writes one credential on `client` with the version rule, and its events (if any) into the outbox, in one
    /// statement: the events only if the row was written.
    pub(crate) async fn put_on(
        &self,
        client: &Object,
        credential: &Credential,
        events: &[EventRecord],
    ) -> Result<Credential, StoreError> {
        let doing = "writing a credential";
        let map = |e: tokio_postgres::Error| self.errors.driver(doing, &e);
        let sealed = Sealed::seal(credential, &self.keys)?;
        let subject = credential.subject.as_str();
        let profile = Json(&credential.profile);
        let scopes = Json(&credential.scopes);
        let consent = credential.consent.as_str();
        let access_scopes = credential.access.as_ref().map(|a| Json(&a.scopes));
        let disabled_since = credential.disabled.as_ref().map(|d| d.since);
        let disabled_reason = credential
            .disabled
            .as_ref()
            .and_then(|d| d.reason.as_deref());
        let expected = version_param(credential.version)?;
        let outboxed = EventColumns::new(events);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &subject,
            &profile,
            &scopes,
            &consent,
            &sealed.refresh_token,
            &sealed.access_token,
            &sealed.access_expires_at,
            &sealed.key_id,
        ];
        let sql = &self.sql;
        let statement = if credential.version == 0 {
            params.extend::<[&(dyn ToSql + Sync); 3]>([
                &credential.created_at,
                &credential.updated_at,
                &access_scopes,
            ]);
            if events.is_empty() {
                &sql.insert
            } else {
                &sql.insert_with_events
            }
        } else {
            params.extend::<[&(dyn ToSql + Sync); 4]>([
                &expected,
                &credential.updated_at,
                &self.key_ids,
                &access_scopes,
            ]);
            if events.is_empty() {
                &sql.update
            } else {
                &sql.update_with_events
            }
        };
        params.extend::<[&(dyn ToSql + Sync); 5]>([
            &disabled_since,
            &disabled_reason,
            &credential.refresh_failing_since,
            &sealed.index.prefix,
            &sealed.index.hash,
        ]);
        if !events.is_empty() {
            params.extend(outboxed.params());
        }
        let statement = client.prepare_cached(statement).await.map_err(map)?;
        let row = client.query_opt(&statement, &params).await.map_err(map)?;
        match row {
            Some(row) => decode(&row, &self.keys),
            // Another version is stored, or a row we cannot read (which is loud, and never overwritten).
            None => match self.get_on(client, &credential.subject).await {
                Err(corrupt @ StoreError::Corrupt { .. }) => Err(corrupt),
                _ => Err(StoreError::Conflict),
            },
        }
    }
}

#[async_trait]
impl CredentialStore for PgStore {
    async fn get(&self, subject: &Subject) -> Result<Option<Credential>, StoreError> {
        let conn = self.inner.conn().await?;
        self.inner.get_on(&conn, subject).await
    }

    async fn put_with(
        &self,
        credential: &Credential,
        events: &[EventRecord],
    ) -> Result<Credential, StoreError> {
        let conn = self.inner.conn().await?;
        self.inner.put_on(&conn, credential, events).await
    }

    async fn delete_with(
        &self,
        subject: &Subject,
        version: u64,
        events: &[EventRecord],
    ) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let doing = "deleting a credential";
        // A version beyond `bigint` was never stored.
        let expected = i64::try_from(version).map_err(|_| StoreError::Conflict)?;
        let subject = subject.as_str();
        // No decryption: a row sealed under a key that is gone can still be deleted (at its version).
        let deleted = if events.is_empty() {
            inner
                .execute(doing, &inner.sql.delete, &[&subject, &expected])
                .await?
        } else {
            let outboxed = EventColumns::new(events);
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&subject, &expected];
            params.extend(outboxed.params());
            let counts = inner
                .query_counts(doing, &inner.sql.delete_with_events, &params)
                .await?;
            counts.first().copied().unwrap_or(0)
        };
        match deleted {
            0 => Err(StoreError::Conflict),
            _ => Ok(()),
        }
    }

    async fn stored_version(&self, subject: &Subject) -> Result<Option<u64>, StoreError> {
        let inner = &*self.inner;
        let doing = "reading a credential's version";
        let rows = inner
            .query(doing, &inner.sql.version, &[&subject.as_str()])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let version: i64 = row.try_get(0).map_err(|e| inner.errors.driver(doing, &e))?;
        Ok(u64::try_from(version).ok())
    }

    async fn find_by_refresh_token(&self, index_key: &str) -> Result<Vec<Subject>, StoreError> {
        let inner = &*self.inner;
        let doing = "finding a refresh token";
        let rows = inner
            .query(doing, &inner.sql.find_by_refresh_token, &[&index_key])
            .await?;
        rows.iter()
            .map(|row| {
                let text: &str = row.try_get(0).map_err(|e| inner.errors.driver(doing, &e))?;
                Subject::parse(text).map_err(|_| StoreError::Corrupt {
                    subject: text.to_owned(),
                    reason: "invalid subject".to_owned(),
                })
            })
            .collect()
    }

    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        let sql = &self.inner.sql;
        self.inner
            .page(
                "listing credentials",
                (&sql.list_first, &sql.list_after),
                cursor,
                limit,
            )
            .await
    }

    async fn pending_revocations(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        let sql = &self.inner.sql;
        self.inner
            .page(
                "listing pending revocations",
                (&sql.pending_first, &sql.pending_after),
                cursor,
                limit,
            )
            .await
    }

    async fn lock_user(&self, subject: &Subject) -> Result<Box<dyn UserLock>, StoreError> {
        let mut tx = TxConn::new(self.inner.lock_conn().await?);
        begin_locked(&self.inner, &mut tx, subject, true).await?;
        Ok(self.guard(subject, tx))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }
}

/// For readiness, any failure means the store is not usable now.
fn unavailable(error: StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(message) => StoreError::Unavailable(message),
        other => StoreError::Unavailable(other.to_string()),
    }
}
