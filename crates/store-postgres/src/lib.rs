//! PostgreSQL credential store for offline-access: the domain's
//! [`CredentialStore`](offline_access_domain::CredentialStore) port on one table, shared by many service instances.
//!
//! - [`PgStore::connect`] builds a connection pool (tokio-postgres + deadpool) and checks the database answers;
//!   [`PgStore::migrate`] applies the embedded migrations (`migrations/*.sql`) idempotently.
//! - Tokens are stored only as ciphertext, sealed with the same [`KeyRing`](offline_access_crypto::KeyRing) format
//!   and purposes as the file store; [`PgStore::reencrypt_all`] moves every row to the newest key.
//! - Versions never repeat for a subject, also across deletes (an epoch from a sequence per first write, a count
//!   after); listings page by subject, report unreadable rows and go on; `ping` is readiness (migrated, writable).
//! - The same store is the domain's [`EventStore`](offline_access_domain::events::EventStore): events are written
//!   into an `outbox` table in the same statement as the credential change they report, claimed by any number of
//!   instances at once (`FOR UPDATE SKIP LOCKED`), and RISC `jti`s are registered in `risc_jtis`. Each stored
//!   refresh token keeps its RISC index keys (digests) in indexed columns.
//! - Writes use optimistic concurrency in one statement; [`CredentialStore::lock_user`](
//!   offline_access_domain::CredentialStore::lock_user) is a transaction-level advisory lock, so one instance
//!   refreshes a user's token at a time and a crashed holder's lock ends with its connection.
//! - `testkit` (feature `testkit`): the test database from `DATABASE_URL` and a fresh schema per test, for suites
//!   (this crate's, the multi-instance tests, an adapter author's) that run against a real PostgreSQL.
//!
//! See `docs/postgres.md` for the schema, locking, migrations and PgBouncer notes.

mod error;
mod lock;
mod migrate;
mod options;
mod outbox;
mod row;
mod sql;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tls;

pub use options::PgOptions;
pub use store::PgStore;
