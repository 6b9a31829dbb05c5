//! [`PgOptions`]: pool size, timeouts and schema of a [`PgStore`](crate::PgStore).

use std::time::Duration;

use offline_access_domain::StoreError;

/// Longest schema name PostgreSQL keeps (`NAMEDATALEN - 1`).
const MAX_SCHEMA_LEN: usize = 63;

/// Tuning of a [`PgStore`](crate::PgStore). `PgOptions::default()` suits one service instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Most connections the main pool opens (reads and writes, each held for one statement).
    pub pool_size: usize,
    /// Most user locks this store holds at once: each keeps one connection of a separate pool in a transaction for
    /// the length of a token refresh. Further lockers wait for a free one (up to `acquire_timeout`). Separate so
    /// that holders, which write through the main pool, can never starve it of connections.
    pub lock_pool_size: usize,
    /// How long opening one connection may take (TCP connect and start-up).
    pub connect_timeout: Duration,
    /// How long an operation waits for a free pooled connection before failing with `Unavailable`.
    pub acquire_timeout: Duration,
    /// How long [`lock_user`](offline_access_domain::CredentialStore::lock_user) waits for another holder
    /// (`SET LOCAL lock_timeout`); longer, the waiter gets [`StoreError::Unavailable`] (a 503). Must outlast the
    /// longest refresh the holder may be doing, or waiters fail while the store is fine. Default 60 s: a refresh
    /// with the default settings takes at most 40 s (3 attempts × the 10 s token-endpoint timeout, and at most 5 s
    /// of back-off between attempts).
    pub lock_wait: Duration,
    /// How long a lock holder may sit idle inside its transaction before PostgreSQL ends its session and frees the
    /// lock (`SET LOCAL idle_in_transaction_session_timeout`): the bound on a hung (not crashed) holder. Default
    /// 120 s, longer than a refresh with its retries.
    pub max_lock_idle: Duration,
    /// Server-side limit on one statement (`statement_timeout`, sent as a start-up option; `None` leaves the
    /// server's setting). Default 30 s.
    pub statement_timeout: Option<Duration>,
    /// The schema holding the tables (created by [`migrate`](crate::PgStore::migrate) if missing); `None` uses
    /// the connection's `search_path` (normally `public`). Lowercase letters, digits and `_`, not starting with a
    /// digit or `pg_`, at most 63 characters.
    pub schema: Option<String>,
    /// The CAs trusted to sign the server's certificate, PEM (`store.ca_file`'s contents), for `sslmode=verify-ca`
    /// and `verify-full` in the URL; `None` trusts the platform's roots (or the file named by `sslrootcert` in the
    /// URL). Given without any `sslmode` in the URL, the mode is `verify-full`; with `prefer` or `require`, the
    /// chain is checked too (as libpq does with a root certificate).
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            lock_pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(20),
            lock_wait: Duration::from_secs(60),
            max_lock_idle: Duration::from_secs(120),
            statement_timeout: Some(Duration::from_secs(30)),
            schema: None,
            ca_pem: None,
        }
    }
}

impl PgOptions {
    /// Checks the options; the error names the bad field.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.pool_size == 0 || self.lock_pool_size == 0 {
            return Err(StoreError::Other(
                "store pool size and lock pool size must be at least 1".to_owned(),
            ));
        }
        for (name, value) in [
            ("connect timeout", self.connect_timeout),
            ("acquire timeout", self.acquire_timeout),
            ("lock wait", self.lock_wait),
            ("max lock idle", self.max_lock_idle),
        ] {
            if value.is_zero() {
                return Err(StoreError::Other(format!(
                    "store {name} must be longer than zero"
                )));
            }
        }
        if let Some(schema) = &self.schema
            && !valid_schema(schema)
        {
            return Err(StoreError::Other(format!(
                "store schema `{schema}` is not a valid name (lowercase letters, digits and `_`, not starting \
                 with a digit or `pg_`, at most {MAX_SCHEMA_LEN} characters)"
            )));
        }
        Ok(())
    }
}

/// Whether `name` is a schema name we accept (so it can be double-quoted into SQL without escaping).
pub(crate) fn valid_schema(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    name.len() <= MAX_SCHEMA_LEN
        && (first.is_ascii_lowercase() || first == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with("pg_")
}

/// Milliseconds of a duration for a `SET` statement, at least 1 (0 would mean "no limit").
pub(crate) fn millis(d: Duration) -> u128 {
    d.as_millis().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_lowercase_identifiers() {
        for good in ["a", "offline_access", "_x1", "t_123_abc"] {
            assert!(valid_schema(good), "{good}");
        }
        for bad in [
            "",
            "1a",
            "A",
            "a-b",
            "a b",
            "a\"b",
            "pg_catalog",
            "Ä",
            &"a".repeat(64),
        ] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    /// The longest refresh a lock holder does with the default settings: 3 attempts × the 10 s token-endpoint
    /// timeout, and at most 5 s of back-off between attempts.
    const LONGEST_REFRESH: Duration = Duration::from_secs(3 * 10 + 2 * 5);

    #[test]
    fn defaults_are_valid_and_a_waiter_outlasts_the_longest_refresh() {
        let options = PgOptions::default();
        options.validate().unwrap();
        assert_eq!(options.lock_wait, Duration::from_secs(60));
        assert!(options.lock_wait > LONGEST_REFRESH);
        // A hung holder is cut off only after a waiter would have given up on a healthy one.
        assert!(options.max_lock_idle > options.lock_wait);
    }

    #[test]
    fn an_invalid_schema_or_a_zero_pool_is_refused_with_the_field_named() {
        let bad_schema = PgOptions {
            schema: Some("x; DROP TABLE credentials".to_owned()),
            ..PgOptions::default()
        };
        assert!(
            bad_schema
                .validate()
                .unwrap_err()
                .to_string()
                .contains("schema")
        );
        let no_pool = PgOptions {
            pool_size: 0,
            ..PgOptions::default()
        };
        assert!(
            no_pool
                .validate()
                .unwrap_err()
                .to_string()
                .contains("pool size")
        );
    }

    #[test]
    fn millis_never_rounds_to_the_no_limit_value() {
        assert_eq!(millis(Duration::from_micros(10)), 1);
        assert_eq!(millis(Duration::from_secs(60)), 60_000);
    }
}
