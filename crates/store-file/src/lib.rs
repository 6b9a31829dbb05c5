//! File credential store: one encrypted file per user, atomic writes, file locks, and the outbox, refresh-token
//! index and RISC `jti` register in the same directory.
//!
//! [`FileStore`] implements the domain's [`CredentialStore`](offline_access_domain::CredentialStore) and
//! [`EventStore`](offline_access_domain::events::EventStore) ports on a local directory; see its documentation and
//! `docs/storage.md` for the layout, the encryption format, atomicity (also of the events written with a change),
//! locking and key rotation ([`FileStore::reencrypt_all`]).
//!
//! With the `testkit` feature, [`testkit`] re-exports the storage contract suite of `offline_access_domain::testkit`.
//! With the `failpoints` feature, [`failpoints`] lets a crash test stop a write at a named step.

mod failpoint;
mod fsio;
mod index;
mod keyed;
mod outbox;
mod record;
mod risc;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use store::FileStore;

/// Named steps of the write paths and a hook called at each (crash tests only).
#[cfg(feature = "failpoints")]
pub mod failpoints {
    pub use crate::failpoint::{Hook, set_hook};
}
