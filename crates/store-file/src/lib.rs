//! File credential store: one encrypted file per user, atomic writes, file locks.
//!
//! [`FileStore`] implements the domain's [`CredentialStore`](offline_access_domain::CredentialStore) port on a
//! local directory; see its documentation and `docs/storage.md` for the layout, the encryption format, atomicity,
//! locking and key rotation ([`FileStore::reencrypt_all`]).
//!
//! With the `testkit` feature, [`testkit`] holds the storage contract suite every adapter can run.

mod keyed;
mod record;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use store::FileStore;
