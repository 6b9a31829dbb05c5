//! The statements of one store, with table and sequence names qualified by its schema (so no session
//! `search_path` is needed: safe behind PgBouncer in transaction mode). Built once; prepared per connection through
//! deadpool's statement cache.

use crate::row::COLUMNS;

/// Every statement a store runs.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `$1` subject.
    pub(crate) get: String,
    /// `$1` subject: the row's version only (no decryption).
    pub(crate) version: String,
    /// First write (expected version 0): `$1..$8` fields, `$9` created_at, `$10` updated_at, `$11` access scopes,
    /// `$12..$16` [`ACCOUNT_FIELDS`]. The version is the first of a new epoch. No row = conflict.
    pub(crate) insert: String,
    /// `insert` and its events (`$17..$20`, [`outbox_insert`]) in one statement: the events only if the row was
    /// written.
    pub(crate) insert_with_events: String,
    /// Later writes: `$1..$8` fields, `$9` expected version, `$10` updated_at, `$11` configured key ids (a row
    /// sealed under another key is never overwritten), `$12` access scopes, `$13..$17` [`ACCOUNT_FIELDS`]. The
    /// version counts up within its epoch. No row = conflict (or an unreadable row).
    pub(crate) update: String,
    /// `update` and its events (`$18..$21`), as `insert_with_events`.
    pub(crate) update_with_events: String,
    /// `$1` subject, `$2` expected version. No row = conflict.
    pub(crate) delete: String,
    /// `delete` and its events (`$3..$6`) in one statement; answers how many rows it deleted (0 = conflict, and
    /// no event written).
    pub(crate) delete_with_events: String,
    /// `$1` index key: the subjects whose refresh token has it (through `credentials_rt_prefix_key` and
    /// `credentials_rt_hash_key`).
    pub(crate) find_by_refresh_token: String,
    /// `$1` after (a subject, `''` first), `$2` limit: rows holding a refresh token without its index keys
    /// (written before migration 0003, or by an instance of the previous release): subject and sealed token.
    pub(crate) unindexed: String,
    /// `$1` subjects, `$2` their sealed refresh tokens as read, `$3` prefix keys, `$4` hash keys: sets the keys of
    /// each row still holding that very ciphertext and no keys.
    pub(crate) index_tokens: String,
    /// The outbox and the `jti` register ([`crate::outbox`]).
    pub(crate) events: EventStatements,
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

/// The outbox's and the `jti` register's statements.
#[derive(Debug)]
pub(crate) struct EventStatements {
    /// `$1..$4` ([`outbox_insert`]): events reporting no credential change.
    pub(crate) append: String,
    /// `$1` now, `$2` lease until, `$3` limit: leases the due pending events (oldest first) that no other claimer
    /// holds, skipping rows another claimer is locking right now.
    pub(crate) claim: String,
    /// Five arrays of the same length, one element per settled event: `$1` ids, `$2` states, `$3` next attempts
    /// (null: unchanged), `$4` last errors, `$5` delivery times (null: unchanged). Any number of events is one
    /// statement.
    pub(crate) settle: String,
    /// `$1` after (an id, `''` first), `$2` limit; by filter: all, pending, failed.
    pub(crate) list: [String; 3],
    /// `$1` id.
    pub(crate) get: String,
    /// `$1` id, `$2` due at.
    pub(crate) replay: String,
    /// Pending, delivered and failed counts.
    pub(crate) counts: String,
    /// `$1` delivered before.
    pub(crate) purge_delivered: String,
    /// `$1` jti, `$2` now, `$3` cut (now − retention): a row back = first sight (new, or seen before the cut).
    pub(crate) first_sight: String,
    /// `$1` cut: deletes up to [`JTI_PURGE_BATCH`] `jti`s seen at or before it.
    pub(crate) purge_jtis: String,
    /// `$1` jti.
    pub(crate) unsee: String,
}

/// The columns of the outbox every event query returns (read by name).
pub(crate) const EVENT_COLUMNS: &str =
    "id, kind, created_at, body, state, attempts, next_attempt_at, last_error, delivered_at";

/// Most expired `jti`s one purge deletes.
pub(crate) const JTI_PURGE_BATCH: i64 = 1000;

/// The stored states of an outbox event (the `outbox.state` CHECK), as SQL literals (the partial indexes'
/// predicates are spelled with them).
const PENDING: &str = "'pending'";
const DELIVERED: &str = "'delivered'";
const FAILED: &str = "'failed'";

/// The columns a credential write sets besides the tokens and profile, in parameter order: the account's state
/// and the refresh token's index keys (migration 0003).
pub(crate) const ACCOUNT_FIELDS: &str =
    "disabled_since, disabled_reason, refresh_failing_since, rt_prefix_key, rt_hash_key";

/// Inserts events given as four arrays from parameter `$first` on (ids, kinds, creation times, bodies): pending,
/// no attempt, due at their creation.
fn outbox_insert(outbox: &str, first: usize) -> String {
    let [a, b, c, d] = [first, first + 1, first + 2, first + 3];
    format!(
        "INSERT INTO {outbox} (id, kind, created_at, body, state, attempts, next_attempt_at) \
         SELECT id, kind, created_at, body, {PENDING}, 0, created_at \
         FROM unnest(${a}::text[], ${b}::text[], ${c}::timestamptz[], ${d}::text[]) AS e(id, kind, created_at, body)"
    )
}

/// `write` (returning `returning`'s columns) and the events from parameter `$first` on, in one statement: the
/// events are inserted only when `write` wrote a row. One statement is one transaction: both or neither.
fn with_events(write: &str, outbox: &str, first: usize, answer: &str) -> String {
    format!(
        "WITH w AS ({write}), outboxed AS ({} WHERE EXISTS (SELECT 1 FROM w)) SELECT {answer} FROM w",
        outbox_insert(outbox, first)
    )
}

/// `name` qualified by `schema` (a validated name), or unqualified (`search_path`).
fn qualify(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(schema) => format!("\"{schema}\".{name}"),
        None => name.to_owned(),
    }
}

impl EventStatements {
    fn new(schema: Option<&str>) -> EventStatements {
        let outbox = qualify(schema, "outbox");
        let jtis = qualify(schema, "risc_jtis");
        let list = |filter: &str| {
            format!(
                "SELECT {EVENT_COLUMNS} FROM {outbox} WHERE id > $1 {filter} ORDER BY id LIMIT $2"
            )
        };
        EventStatements {
            append: outbox_insert(&outbox, 1),
            // The due rows are picked and locked once (a CTE that locks rows is evaluated once), skipping rows
            // another claimer has locked: N instances claim at once, each gets other events, none waits.
            claim: format!(
                "WITH due AS (SELECT id FROM {outbox} WHERE state = {PENDING} AND next_attempt_at <= $1 \
                 AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at, id LIMIT $3 \
                 FOR UPDATE SKIP LOCKED), \
                 claimed AS (UPDATE {outbox} o SET lease_until = $2 FROM due WHERE o.id = due.id RETURNING o.*) \
                 SELECT {EVENT_COLUMNS} FROM claimed ORDER BY next_attempt_at, id"
            ),
            settle: format!(
                "UPDATE {outbox} o SET attempts = o.attempts + 1, lease_until = NULL, state = s.state, \
                 next_attempt_at = COALESCE(s.next_attempt_at, o.next_attempt_at), last_error = s.last_error, \
                 delivered_at = COALESCE(s.delivered_at, o.delivered_at) \
                 FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::timestamptz[]) \
                 AS s(id, state, next_attempt_at, last_error, delivered_at) WHERE o.id = s.id"
            ),
            list: [
                list(""),
                list(&format!("AND state = {PENDING}")),
                list(&format!("AND state = {FAILED}")),
            ],
            get: format!("SELECT {EVENT_COLUMNS} FROM {outbox} WHERE id = $1"),
            replay: format!(
                "UPDATE {outbox} SET state = {PENDING}, attempts = 0, next_attempt_at = $2, lease_until = NULL, \
                 delivered_at = NULL WHERE id = $1"
            ),
            counts: format!(
                "SELECT count(*) FILTER (WHERE state = {PENDING}), count(*) FILTER (WHERE state = {DELIVERED}), \
                 count(*) FILTER (WHERE state = {FAILED}) FROM {outbox}"
            ),
            purge_delivered: format!(
                "DELETE FROM {outbox} WHERE state = {DELIVERED} AND delivered_at < $1"
            ),
            // A `jti` seen before the cut (expired, not purged yet) counts as new, as if purged: the answer never
            // depends on when the last purge ran. Concurrent calls for one `jti`: the row lock admits one.
            first_sight: format!(
                "INSERT INTO {jtis} AS j (jti, seen_at) VALUES ($1, $2) \
                 ON CONFLICT (jti) DO UPDATE SET seen_at = EXCLUDED.seen_at WHERE j.seen_at <= $3 RETURNING 1"
            ),
            purge_jtis: format!(
                "DELETE FROM {jtis} WHERE jti IN (SELECT jti FROM {jtis} WHERE seen_at <= $1 \
                 ORDER BY seen_at LIMIT {JTI_PURGE_BATCH} FOR UPDATE SKIP LOCKED)"
            ),
            unsee: format!("DELETE FROM {jtis} WHERE jti = $1"),
        }
    }
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
        let qualify = |name: &str| qualify(schema, name);
        let table = qualify("credentials");
        // The first version of a new epoch (the sequence is a regclass literal, resolved when prepared).
        let first_version = format!(
            "((nextval('{}') << {COUNT_BITS}) + 1)",
            qualify("credentials_version")
        );
        let count_mask = (1_u64 << COUNT_BITS) - 1;
        let migrations = qualify("offline_access_migrations");
        let outbox = qualify("outbox");
        let insert = format!(
            "INSERT INTO {table} (subject, profile, scopes, consent, refresh_token, access_token, \
             access_expires_at, key_id, version, created_at, updated_at, access_scopes, {ACCOUNT_FIELDS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {first_version}, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (subject) DO NOTHING RETURNING {COLUMNS}"
        );
        // The refresh-token rule in SQL: a stored refresh token is never replaced by none, and its index keys
        // follow the token kept. `key_id` follows the refresh token actually kept. A row holding a token under a
        // key we do not have is left alone. The next version of the epoch; in the unreachable case of a full
        // count, the first of a new epoch (greater too, and never handed out before).
        let update = format!(
            "UPDATE {table} SET profile = $2, scopes = $3, consent = $4, \
             refresh_token = COALESCE($5, refresh_token), access_token = $6, access_expires_at = $7, \
             access_scopes = $12, disabled_since = $13, disabled_reason = $14, refresh_failing_since = $15, \
             rt_prefix_key = CASE WHEN $5::text IS NULL THEN rt_prefix_key ELSE $16 END, \
             rt_hash_key = CASE WHEN $5::text IS NULL THEN rt_hash_key ELSE $17 END, \
             key_id = COALESCE(split_part(COALESCE($5, refresh_token), '.', 2), $8), \
             version = CASE WHEN version & {count_mask} = {count_mask} THEN {first_version} \
             ELSE version + 1 END, updated_at = $10 \
             WHERE subject = $1 AND version = $9 \
             AND (refresh_token IS NULL OR split_part(refresh_token, '.', 2) = ANY($11)) \
             AND (access_token IS NULL OR split_part(access_token, '.', 2) = ANY($11)) \
             RETURNING {COLUMNS}"
        );
        let delete = format!("DELETE FROM {table} WHERE subject = $1 AND version = $2");
        Statements {
            get: format!("SELECT {COLUMNS} FROM {table} WHERE subject = $1"),
            version: format!("SELECT version FROM {table} WHERE subject = $1"),
            insert_with_events: with_events(&insert, &outbox, 17, COLUMNS),
            update_with_events: with_events(&update, &outbox, 18, COLUMNS),
            delete_with_events: with_events(
                &format!("{delete} RETURNING subject"),
                &outbox,
                3,
                "count(*)",
            ),
            insert,
            update,
            delete,
            find_by_refresh_token: format!(
                "SELECT subject FROM {table} WHERE rt_prefix_key = $1 OR rt_hash_key = $1 ORDER BY subject"
            ),
            unindexed: format!(
                "SELECT subject, refresh_token FROM {table} WHERE refresh_token IS NOT NULL \
                 AND rt_hash_key IS NULL AND subject > $1 ORDER BY subject LIMIT $2"
            ),
            index_tokens: format!(
                "UPDATE {table} AS c SET rt_prefix_key = u.prefix, rt_hash_key = u.hash \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(subject, sealed, prefix, hash) \
                 WHERE c.subject = u.subject AND c.refresh_token = u.sealed AND c.rt_hash_key IS NULL"
            ),
            events: EventStatements::new(schema),
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
    use offline_access_domain::events::DeliveryState;

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
    fn the_outbox_states_are_the_domains_and_the_partial_indexes_use_them() {
        for (literal, state) in [
            (PENDING, DeliveryState::Pending),
            (DELIVERED, DeliveryState::Delivered),
            (FAILED, DeliveryState::Failed),
        ] {
            assert_eq!(literal, format!("'{}'", state.as_str()));
        }
        let migration =
            include_str!("../migrations/0003_outbox_jtis_token_index_account_state.sql");
        for predicate in [PENDING, DELIVERED, FAILED] {
            assert!(migration.contains(&format!("WHERE state = {predicate};")));
        }
        let sql = Statements::new(None);
        assert!(
            sql.events
                .claim
                .contains(&format!("WHERE state = {PENDING} "))
        );
        assert!(sql.events.list[2].contains(&format!("state = {FAILED} ")));
    }

    #[test]
    fn a_write_with_events_takes_them_after_its_own_parameters() {
        let sql = Statements::new(Some("oa_x"));
        assert!(sql.insert.contains("$16)") && !sql.insert.contains("$17"));
        assert!(
            sql.insert_with_events.contains("unnest($17::text[]")
                && sql.insert_with_events.contains("$20::text[]")
        );
        assert!(sql.update.contains("$17 END") && !sql.update.contains("$18"));
        assert!(sql.update_with_events.contains("unnest($18::text[]"));
        assert!(sql.delete_with_events.contains("unnest($3::text[]"));
        for statement in [
            &sql.insert_with_events,
            &sql.update_with_events,
            &sql.delete_with_events,
        ] {
            assert!(
                statement.contains("INSERT INTO \"oa_x\".outbox"),
                "{statement}"
            );
            assert!(
                statement.contains("WHERE EXISTS (SELECT 1 FROM w)"),
                "{statement}"
            );
        }
    }

    #[test]
    fn every_name_is_qualified_by_the_schema() {
        let sql = Statements::new(Some("oa_x"));
        for statement in [
            &sql.insert,
            &sql.update,
            &sql.ready,
            &sql.pending_after,
            &sql.find_by_refresh_token,
            &sql.events.claim,
            &sql.events.first_sight,
            &sql.events.purge_jtis,
        ] {
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
