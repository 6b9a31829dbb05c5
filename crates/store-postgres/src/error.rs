//! Translation of driver and pool errors into [`StoreError`], and redaction of the connection URL.
//!
//! No driver type leaves this crate, and no message carries the database password or a token.

use deadpool_postgres::PoolError;
use deadpool_postgres::tokio_postgres::Error as PgError;
use deadpool_postgres::tokio_postgres::error::SqlState;
use offline_access_domain::StoreError;

/// Replaces the password of a PostgreSQL URL (or of a `key=value` connection string) with `REDACTED`.
pub(crate) fn redact_url(raw: &str) -> String {
    if let Ok(mut url) = url::Url::parse(raw) {
        if url.password().is_some() {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = url.set_password(Some("REDACTED"));
        }
        if url.query_pairs().any(|(k, _)| k == "password") {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "REDACTED".to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return url.to_string();
    }
    if let Some(scheme_end) = raw.find("://") {
        // A URL that does not parse (e.g. a bad port): redact the user-info password by hand.
        let (head, rest) = raw.split_at(scheme_end + 3);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rfind('@') {
            Some(at) => {
                let (userinfo, host) = authority.split_at(at);
                match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:REDACTED{host}"),
                    None => authority.to_owned(),
                }
            }
            None => authority.to_owned(),
        };
        return format!("{head}{authority}{}", redact_key_values(tail));
    }
    redact_key_values(raw)
}

/// Redacts the value after `password=` (quoted or not) in a `key=value` connection string or a query.
fn redact_key_values(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find("password") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let after_key = &after["password".len()..];
        let trimmed = after_key.trim_start();
        if let Some(value) = trimmed.strip_prefix('=') {
            let value = value.trim_start();
            let end = if let Some(quoted) = value.strip_prefix('\'') {
                quoted.find('\'').map_or(value.len(), |i| i + 2)
            } else {
                value.find(char::is_whitespace).unwrap_or(value.len())
            };
            out.push_str("password=REDACTED");
            rest = &value[end..];
        } else {
            out.push_str("password");
            rest = after_key;
        }
    }
    out.push_str(rest);
    out
}

/// Maps errors for one store; knows the redacted URL so "unavailable" messages can name `store.url`.
#[derive(Debug, Clone)]
pub(crate) struct Errors {
    pub(crate) url: String,
    /// The TLS settings in force (`sslmode=..., CAs from ...`), for TLS failures.
    pub(crate) tls: String,
}

impl Errors {
    /// The database cannot be reached.
    pub(crate) fn unreachable(&self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!(
            "PostgreSQL at {} (store.url) is unreachable: {detail}",
            self.url
        ))
    }

    /// A pool error (no connection available, or connecting failed).
    pub(crate) fn pool(&self, error: PoolError) -> StoreError {
        match error {
            PoolError::Timeout(kind) => match kind {
                deadpool_postgres::TimeoutType::Wait => StoreError::Unavailable(
                    "no free PostgreSQL connection in time (the pool is exhausted; raise its size or the database's \
                     capacity)"
                        .to_owned(),
                ),
                deadpool_postgres::TimeoutType::Create => {
                    self.unreachable("timed out while connecting")
                }
                deadpool_postgres::TimeoutType::Recycle => {
                    self.unreachable("timed out while checking a pooled connection")
                }
            },
            PoolError::Backend(e) => self.driver("connecting", &e),
            PoolError::Closed => {
                StoreError::Unavailable("the PostgreSQL connection pool is closed".to_owned())
            }
            PoolError::NoRuntimeSpecified => {
                StoreError::Other("the PostgreSQL pool has no runtime".to_owned())
            }
            PoolError::PostCreateHook(e) => self.unreachable(e),
        }
    }

    /// A driver error while `doing` something.
    pub(crate) fn driver(&self, doing: &str, error: &PgError) -> StoreError {
        let Some(code) = error.code() else {
            if let Some(failure) = crate::tls::tls_failure(error) {
                return StoreError::Unavailable(format!(
                    "TLS with PostgreSQL at {} (store.url; {}) failed while {doing}: {failure}",
                    self.url, self.tls
                ));
            }
            // No SQLSTATE: the connection failed or closed (I/O, protocol).
            return self.unreachable(format_args!("{doing}: {error}"));
        };
        let state = code.code();
        if *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            return StoreError::Conflict;
        }
        if *code == SqlState::LOCK_NOT_AVAILABLE {
            return StoreError::Unavailable(
                "timed out waiting for another instance holding this user's lock".to_owned(),
            );
        }
        if *code == SqlState::QUERY_CANCELED {
            return StoreError::Unavailable(format!(
                "PostgreSQL cancelled the statement while {doing} (statement timeout)"
            ));
        }
        if *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT {
            return StoreError::Unavailable(
                "PostgreSQL ended this user lock's session after it sat idle too long".to_owned(),
            );
        }
        if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME {
            return StoreError::Other(
                "the offline-access tables do not exist: run `offline-access migrate` (or enable \
                 store.migrate_on_start)"
                    .to_owned(),
            );
        }
        // Class 08 (connection exception), 53 (insufficient resources), 57P0x (shutdown, cannot connect now),
        // 28 (authentication) and 3D (no such database): the store is not usable right now.
        if state.starts_with("08")
            || state.starts_with("53")
            || state.starts_with("57P")
            || state.starts_with("28")
            || state.starts_with("3D")
        {
            let message = error.as_db_error().map_or("", |db| db.message());
            return self.unreachable(format_args!("{doing}: {message} (SQLSTATE {state})"));
        }
        // Server messages name objects and constraints, never row values (those are in DETAIL, not shown).
        let message = error.as_db_error().map_or("", |db| db.message());
        StoreError::Other(format!(
            "PostgreSQL error while {doing}: {message} (SQLSTATE {state})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_password_is_redacted_and_the_rest_kept() {
        let redacted = redact_url("postgres://app:s3cret@db.internal:5432/creds?sslmode=disable");
        assert!(!redacted.contains("s3cret"));
        assert!(redacted.contains("app:REDACTED@db.internal:5432/creds"));
        assert!(redacted.contains("sslmode=disable"));
    }

    #[test]
    fn a_url_without_a_password_is_unchanged() {
        let url = "postgres://postgres@127.0.0.1:5432/test";
        assert_eq!(redact_url(url), url);
    }

    #[test]
    fn a_password_query_parameter_is_redacted() {
        let redacted = redact_url("postgresql://app@h/db?password=s3cret&application_name=x");
        assert!(!redacted.contains("s3cret"));
        assert!(redacted.contains("application_name=x"));
    }

    #[test]
    fn a_key_value_password_is_redacted_quoted_or_not() {
        let redacted = redact_url("host=h user=app password=s3cret dbname=d");
        assert_eq!(redacted, "host=h user=app password=REDACTED dbname=d");
        let quoted = redact_url("host=h password = 'with space' dbname=d");
        assert!(!quoted.contains("with space"), "{quoted}");
        assert!(quoted.contains("dbname=d"));
    }

    #[test]
    fn an_unparseable_url_still_has_its_password_redacted() {
        let redacted = redact_url("postgres://app:hunter2@host:notaport/db?password=x2");
        assert_eq!(
            redacted,
            "postgres://app:REDACTED@host:notaport/db?password=REDACTED"
        );
    }

    #[test]
    fn unreachable_names_store_url() {
        let errors = Errors {
            url: redact_url("postgres://u:pw@h/db"),
            tls: String::new(),
        };
        let msg = errors.unreachable("refused").to_string();
        assert!(msg.contains("store.url") && msg.contains("REDACTED") && !msg.contains("pw@"));
    }
}
