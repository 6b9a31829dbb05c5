//! The statements of one store, with the table name qualified by its schema (so no session `search_path` is
//! needed: safe behind PgBouncer in transaction mode). Built once; prepared per connection through deadpool's
//! statement cache.

use crate::row::COLUMNS;

/// Every statement a store runs.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `$1` subject.
    pub(crate) get: String,
    /// First write (expected version 0): `$1..$8` fields, `$9` created_at, `$10` updated_at. No row = conflict.
    pub(crate) insert: String,
    /// Later writes: `$1..$8` fields, `$9` expected version, `$10` updated_at, `$11` configured key ids (a row
    /// sealed under another key is never overwritten). No row = conflict (or an unreadable row).
    pub(crate) update: String,
    /// `$1` subject.
    pub(crate) delete: String,
    /// `$1` limit.
    pub(crate) list_first: String,
    /// `$1` after, `$2` limit.
    pub(crate) list_after: String,
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
}

/// Rows holding a token sealed under a key other than `$1`.
const STALE: &str = "(key_id <> $1 OR split_part(refresh_token, '.', 2) <> $1 \
                     OR split_part(access_token, '.', 2) <> $1)";

impl Statements {
    /// The statements on `table` (already qualified and quoted).
    pub(crate) fn new(table: &str) -> Statements {
        Statements {
            get: format!("SELECT {COLUMNS} FROM {table} WHERE subject = $1"),
            insert: format!(
                "INSERT INTO {table} (subject, profile, scopes, consent, refresh_token, access_token, \
                 access_expires_at, key_id, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10) \
                 ON CONFLICT (subject) DO NOTHING RETURNING {COLUMNS}"
            ),
            // The refresh-token rule in SQL: a stored refresh token is never replaced by none. `key_id` follows
            // the refresh token actually kept. A row holding a token under a key we do not have is left alone.
            update: format!(
                "UPDATE {table} SET profile = $2, scopes = $3, consent = $4, \
                 refresh_token = COALESCE($5, refresh_token), access_token = $6, access_expires_at = $7, \
                 key_id = COALESCE(split_part(COALESCE($5, refresh_token), '.', 2), $8), \
                 version = version + 1, updated_at = $10 \
                 WHERE subject = $1 AND version = $9 \
                 AND (refresh_token IS NULL OR split_part(refresh_token, '.', 2) = ANY($11)) \
                 AND (access_token IS NULL OR split_part(access_token, '.', 2) = ANY($11)) \
                 RETURNING {COLUMNS}"
            ),
            delete: format!("DELETE FROM {table} WHERE subject = $1"),
            list_first: format!("SELECT {COLUMNS} FROM {table} ORDER BY subject LIMIT $1"),
            list_after: format!(
                "SELECT {COLUMNS} FROM {table} WHERE subject > $1 ORDER BY subject LIMIT $2"
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
        }
    }
}
