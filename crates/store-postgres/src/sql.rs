//! The statements of one store, with table and sequence names qualified by its schema (so no session
//! `search_path` is needed: safe behind PgBouncer in transaction mode). Built once; prepared per connection through
//! deadpool's statement cache.

use crate::row::COLUMNS;

/// Every statement a store runs.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `$1` subject.
    pub(crate) get: String,
    /// First write (expected version 0): `$1..$8` fields, `$9` created_at, `$10` updated_at, `$11` access scopes.
    /// The version is the first of a new epoch. No row = conflict.
    pub(crate) insert: String,
    /// Later writes: `$1..$8` fields, `$9` expected version, `$10` updated_at, `$11` configured key ids (a row
    /// sealed under another key is never overwritten), `$12` access scopes. The version counts up within its
    /// epoch. No row = conflict (or an unreadable row).
    pub(crate) update: String,
    /// `$1` subject, `$2` expected version. No row = conflict.
    pub(crate) delete: String,
    /// `$1` limit.
    pub(crate) list_first: String,
    /// `$1` cursor (the last subject of the previous page), `$2` limit.
    pub(crate) list_after: String,
    /// `$1` limit: the first pending revocations (through the partial index `credentials_forgotten`).
    pub(crate) pending_first: String,
    /// `$1` cursor, `$2` limit.
    pub(crate) pending_after: String,
    /// `$1` namespace, `$2` subject: waits for the user's transaction-level advisory lock.
    pub(crate) lock: &'static str,
    /// As `lock`, but answers `false` at once when it is held.
    pub(crate) try_lock: &'static str,
    /// `$1` newest key id: how many rows hold a token sealed under another key.
    pub(crate) count_stale: String,
    /// `$1` newest key id, `$2` limit: the first rows sealed under another key.
    pub(crate) stale_first: String,
    /// `$1` newest key id, `$2` after, `$3` limit.
    pub(crate) stale_after: String,
    /// `$1` subject, `$2` refresh, `$3` access, `$4` key id, `$5` expected version: swaps ciphertexts in place.
    pub(crate) reseal: String,
    /// Readiness in one round trip: the newest applied migration, and whether this session may write.
    pub(crate) ready: String,
}

/// Rows holding a token sealed under a key other than `$1`.
const STALE: &str = "(key_id <> $1 OR split_part(refresh_token, '.', 2) <> $1 \
                     OR split_part(access_token, '.', 2) <> $1)";

/// The predicate of the partial index `credentials_forgotten` (migration 0002), spelled exactly as there so the
/// planner can use the index: a literal, never a parameter.
pub(crate) const FORGOTTEN: &str = "consent = 'forgotten'";

/// Bits of a version that count the writes of one record's lifetime; the bits above are its epoch, taken from the
/// sequence `credentials_version` by the record's first write (migration 0002). 2^32 writes per lifetime, 2^31
/// lifetimes (first writes) per database.
pub(crate) const COUNT_BITS: u32 = 32;

impl Statements {
    /// The statements on the store's objects in `schema` (a validated name), or unqualified (`search_path`).
    pub(crate) fn new(schema: Option<&str>) -> Statements {
        let qualify = |name: &str| match schema {
            Some(schema) => format!("\"{schema}\".{name}"),
            None => name.to_owned(),
        };
        let table = qualify("credentials");
        // The first version of a new epoch (the sequence is a regclass literal, resolved when prepared).
        let first_version = format!(
            "((nextval('{}') << {COUNT_BITS}) + 1)",
            qualify("credentials_version")
        );
        let count_mask = (1_u64 << COUNT_BITS) - 1;
        let migrations = qualify("offline_access_migrations");
        Statements {
            get: format!("SELECT {COLUMNS} FROM {table} WHERE subject = $1"),
            insert: format!(
                "INSERT INTO {table} (subject, profile, scopes, consent, refresh_token, access_token, \
                 access_expires_at, key_id, version, created_at, updated_at, access_scopes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {first_version}, $9, $10, $11) \
                 ON CONFLICT (subject) DO NOTHING RETURNING {COLUMNS}"
            ),
            // The refresh-token rule in SQL: a stored refresh token is never replaced by none. `key_id` follows
            // the refresh token actually kept. A row holding a token under a key we do not have is left alone.
            // The next version of the epoch; in the unreachable case of a full count, the first of a new epoch
            // (greater too, and never handed out before).
            update: format!(
                "UPDATE {table} SET profile = $2, scopes = $3, consent = $4, \
                 refresh_token = COALESCE($5, refresh_token), access_token = $6, access_expires_at = $7, \
                 access_scopes = $12, \
                 key_id = COALESCE(split_part(COALESCE($5, refresh_token), '.', 2), $8), \
                 version = CASE WHEN version & {count_mask} = {count_mask} THEN {first_version} \
                 ELSE version + 1 END, updated_at = $10 \
                 WHERE subject = $1 AND version = $9 \
                 AND (refresh_token IS NULL OR split_part(refresh_token, '.', 2) = ANY($11)) \
                 AND (access_token IS NULL OR split_part(access_token, '.', 2) = ANY($11)) \
                 RETURNING {COLUMNS}"
            ),
            delete: format!("DELETE FROM {table} WHERE subject = $1 AND version = $2"),
            list_first: format!("SELECT {COLUMNS} FROM {table} ORDER BY subject LIMIT $1"),
            list_after: format!(
                "SELECT {COLUMNS} FROM {table} WHERE subject > $1 ORDER BY subject LIMIT $2"
            ),
            pending_first: format!(
                "SELECT {COLUMNS} FROM {table} WHERE {FORGOTTEN} ORDER BY subject LIMIT $1"
            ),
            pending_after: format!(
                "SELECT {COLUMNS} FROM {table} WHERE {FORGOTTEN} AND subject > $1 ORDER BY subject LIMIT $2"
            ),
            lock: "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
            try_lock: "SELECT pg_try_advisory_xact_lock(hashtext($1), hashtext($2))",
            count_stale: format!("SELECT count(*) FROM {table} WHERE {STALE}"),
            stale_first: format!(
                "SELECT {COLUMNS} FROM {table} WHERE {STALE} ORDER BY subject LIMIT $2"
            ),
            stale_after: format!(
                "SELECT {COLUMNS} FROM {table} WHERE {STALE} AND subject > $2 ORDER BY subject LIMIT $3"
            ),
            reseal: format!(
                "UPDATE {table} SET refresh_token = $2, access_token = $3, key_id = $4 \
                 WHERE subject = $1 AND version = $5"
            ),
            ready: format!(
                "SELECT (SELECT COALESCE(max(version), 0) FROM {migrations}), \
                 current_setting('transaction_read_only') = 'on'"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use offline_access_domain::ConsentState;

    use super::*;

    #[test]
    fn the_pending_revocations_predicate_names_the_domains_forgotten_state() {
        assert_eq!(
            FORGOTTEN,
            format!("consent = '{}'", ConsentState::Forgotten.as_str())
        );
        let migration = include_str!("../migrations/0002_versions_revocations_access_scopes.sql");
        assert!(migration.contains(&format!("WHERE {FORGOTTEN};")));
    }

    #[test]
    fn every_name_is_qualified_by_the_schema() {
        let sql = Statements::new(Some("oa_x"));
        for statement in [&sql.insert, &sql.update, &sql.ready, &sql.pending_after] {
            assert!(statement.contains("\"oa_x\"."), "{statement}");
        }
        assert!(
            sql.insert
                .contains("nextval('\"oa_x\".credentials_version')")
        );
        assert!(sql.update.contains("version & 4294967295 = 4294967295"));
        assert!(!Statements::new(None).update.contains('"'));
    }
}
