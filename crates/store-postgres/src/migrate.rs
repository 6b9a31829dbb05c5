//! Embedded schema migrations, applied in one transaction under a transaction-level advisory lock.

use aws_lc_rs::digest::{SHA256, digest};

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Its number, applied in ascending order.
    pub(crate) version: i32,
    /// A short name (the file name without the number).
    pub(crate) name: &'static str,
    /// The SQL, run with `search_path` set to the store's schema.
    pub(crate) sql: &'static str,
}

impl Migration {
    /// Hex SHA-256 of the SQL: an applied migration whose file changed afterwards is refused.
    pub(crate) fn checksum(&self) -> String {
        hex::encode(digest(&SHA256, self.sql.as_bytes()))
    }
}

/// Every migration this build knows, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "credentials",
    sql: include_str!("../migrations/0001_credentials.sql"),
}];

/// The bookkeeping table (in the store's schema).
pub(crate) const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS offline_access_migrations (\
     version integer PRIMARY KEY, \
     name text NOT NULL, \
     checksum text NOT NULL, \
     applied_at timestamptz NOT NULL DEFAULT now())";

/// Serializes concurrent migrators of one schema (`$1` = schema or `""`), for the transaction only.
pub(crate) const MIGRATION_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext('offline-access/migrate'), hashtext($1))";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(m.version).unwrap(), i + 1);
            assert!(!m.sql.trim().is_empty());
        }
    }

    #[test]
    fn the_checksum_is_a_stable_sha256() {
        let m = MIGRATIONS[0];
        assert_eq!(m.checksum().len(), 64);
        assert_eq!(m.checksum(), m.checksum());
    }
}
