//! The user lock: a transaction holding `pg_advisory_xact_lock(namespace, subject)`.
//!
//! Transaction-level only (never a session-level advisory lock), so it works behind PgBouncer in transaction mode
//! and ends with the transaction: on commit, on rollback, and when the holder's connection drops (a crashed
//! process). The transaction only holds the lock and reads: writes under the lock go through the main pool and
//! are durable when `put` returns (a rotated refresh token must never be lost with a failed commit).
//!
//! A guard dropped without [`UserLock::release`] never returns its connection to the pool inside the
//! transaction: it is rolled back first, or closed when that is not possible.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Object;
use offline_access_domain::{Credential, StoreError, Subject, UserLock};

use crate::options::millis;
use crate::store::Inner;

/// A pooled connection inside a transaction. Dropped while the transaction is open, it rolls back (when idle) or
/// is closed (when a statement may still be running), so the pool only ever gets connections outside a transaction.
pub(crate) struct TxConn {
    conn: Option<Object>,
    /// `BEGIN` was sent and neither `COMMIT` nor `ROLLBACK` has completed.
    open: bool,
    /// A statement was sent and its answer not yet received (the future was dropped mid-flight).
    busy: bool,
}

impl TxConn {
    pub(crate) fn new(conn: Object) -> TxConn {
        TxConn {
            conn: Some(conn),
            open: false,
            busy: false,
        }
    }

    /// Runs `op` on the connection, marking it busy until the answer is in (if the future is dropped meanwhile,
    /// `Drop` closes the connection instead of reusing it).
    async fn run<'a, T, F, Fut>(&'a mut self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(&'a Object) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + 'a,
    {
        let Self { conn, busy, .. } = self;
        let client = conn
            .as_ref()
            .ok_or_else(|| StoreError::Other("the user lock was already released".to_owned()))?;
        *busy = true;
        let result = op(client).await;
        *busy = false;
        result
    }
}

impl Drop for TxConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if !self.open {
            return; // Back to the pool, outside any transaction.
        }
        if !self.busy
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let mut pending = Discard(Some(conn));
            runtime.spawn(async move {
                let rolled_back = match pending.0.as_ref() {
                    Some(client) => client.batch_execute("ROLLBACK").await.is_ok(),
                    None => false,
                };
                if rolled_back {
                    drop(pending.0.take()); // Clean again: back to the pool.
                }
            });
            return;
        }
        drop(Discard(Some(conn)));
    }
}

/// Closes a connection instead of returning it to the pool (PostgreSQL then ends its transaction and frees its
/// locks).
struct Discard(Option<Object>);

impl Drop for Discard {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(Object::take(conn));
        }
    }
}

/// Starts a transaction on `tx` with the store's lock settings, then takes the user's advisory lock, waiting (up
/// to `lock_wait`) or not. Returns whether the lock is held.
pub(crate) async fn begin_locked(
    inner: &Inner,
    tx: &mut TxConn,
    subject: &Subject,
    wait: bool,
) -> Result<bool, StoreError> {
    let options = &inner.options;
    let lock_wait = millis(options.lock_wait);
    // The lock statement may wait `lock_wait`; give it that on top of the usual statement limit.
    let statement =
        millis(options.statement_timeout.unwrap_or(options.lock_wait)).saturating_add(lock_wait);
    let setup = format!(
        "BEGIN; SET LOCAL lock_timeout = {lock_wait}; SET LOCAL statement_timeout = {statement}; \
         SET LOCAL idle_in_transaction_session_timeout = {}",
        millis(options.max_lock_idle)
    );
    tx.open = true;
    tx.run(|client| async move {
        client
            .batch_execute(&setup)
            .await
            .map_err(|e| inner.errors.driver("starting a user lock", &e))
    })
    .await?;
    let sql = if wait {
        inner.sql.lock
    } else {
        inner.sql.try_lock
    };
    let namespace = inner.lock_namespace.as_str();
    let subject = subject.as_str();
    tx.run(|client| async move {
        let doing = "taking a user lock";
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| inner.errors.driver(doing, &e))?;
        let row = client
            .query_one(&statement, &[&namespace, &subject])
            .await
            .map_err(|e| inner.errors.driver(doing, &e))?;
        if wait {
            Ok(true)
        } else {
            row.try_get::<_, bool>(0)
                .map_err(|e| inner.errors.driver(doing, &e))
        }
    })
    .await
}

/// A held user lock (see the module documentation).
pub(crate) struct PgUserLock {
    pub(crate) inner: Arc<Inner>,
    pub(crate) subject: Subject,
    pub(crate) tx: TxConn,
}

#[async_trait]
impl UserLock for PgUserLock {
    async fn get(&mut self) -> Result<Option<Credential>, StoreError> {
        let inner = &*self.inner;
        let subject = &self.subject;
        self.tx
            .run(|client| async move { inner.get_on(client, subject).await })
            .await
    }

    async fn put(&mut self, credential: &Credential) -> Result<Credential, StoreError> {
        if credential.subject != self.subject {
            return Err(StoreError::Other(
                "a user lock can only write its own user's credential".to_owned(),
            ));
        }
        // An ordinary write on the main pool: durable when this returns, whatever happens to the lock later.
        let conn = self.inner.conn().await?;
        self.inner.put_on(&conn, credential, &[]).await
    }

    /// Ends the lock's transaction. An error means the lock may have been lost before this (its connection
    /// broke); what `put` wrote is stored either way.
    async fn release(mut self: Box<Self>) -> Result<(), StoreError> {
        let inner = &*self.inner;
        self.tx
            .run(|client| async move {
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(|e| inner.errors.driver("committing under a user lock", &e))
            })
            .await?;
        self.tx.open = false;
        Ok(())
    }
}
