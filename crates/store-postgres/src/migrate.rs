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
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "credentials",
        sql: include_str!("../migrations/0001_credentials.sql"),
    },
    Migration {
        version: 2,
        name: "versions_revocations_access_scopes",
        sql: include_str!("../migrations/0002_versions_revocations_access_scopes.sql"),
    },
    Migration {
        version: 3,
        name: "outbox_jtis_token_index_account_state",
        sql: include_str!("../migrations/0003_outbox_jtis_token_index_account_state.sql"),
    },
];

/// The migration this build's statements need (the newest it knows): [`ping`](crate::PgStore) reports a schema
/// below it as not ready.
pub(crate) const LATEST_MIGRATION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

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
    fn the_latest_migration_is_the_highest() {
        assert_eq!(
            Some(LATEST_MIGRATION),
            MIGRATIONS.iter().map(|m| m.version).max()
        );
    }

    #[test]
    fn the_first_migration_is_never_edited() {
        // Applied databases record this checksum; an edit would make every `migrate` refuse to run.
        assert_eq!(
            MIGRATIONS[0].checksum(),
            "2a2b230e3c3bbc2983abf631ffd3049c699a4a0a77f4541b4d60bf965c8c494c"
        );
    }

    #[test]
    fn the_second_migration_is_never_edited() {
        // Released with the previous version: databases record this checksum.
        assert_eq!(
            MIGRATIONS[1].checksum(),
            "6b284d31b9e8022155ca89f5cf08b52a2a472fe0db0b5c65fa525cd2cd96db9f"
        );
    }

    #[test]
    fn the_checksum_is_a_stable_sha256() {
        let m = MIGRATIONS[0];
        assert_eq!(m.checksum().len(), 64);
        assert_eq!(m.checksum(), m.checksum());
    }
}
