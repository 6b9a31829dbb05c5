//! File credential store: one encrypted file per user, atomic writes, file locks.
//!
//! [`FileStore`] implements the domain's [`CredentialStore`](offline_access_domain::CredentialStore) port on a
//! local directory; see its documentation and `docs/storage.md` for the layout, the encryption format, atomicity,
//! locking and key rotation ([`FileStore::reencrypt_all`]).
//!
//! With the `testkit` feature, [`testkit`] re-exports the storage contract suite of `offline_access_domain::testkit`.

mod keyed;
mod record;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use store::FileStore;
