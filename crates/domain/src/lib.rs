//! The offline-access domain: types, ports and use cases. No HTTP, SQL or file I/O lives here.
//!
//! - [`secret`]: validated, redacted, zeroizing secret newtypes (codes and tokens).
//! - [`identity`]: subject, email, scopes and profile.
//! - [`credential`]: the stored credential and the refresh-token merge rule.
//! - [`ports`]: what the use cases need from outside (token endpoint, ID-token verifier, credential store, Drive,
//!   clock), implemented by adapter crates.
//! - [`service`]: the use cases, in [`service::OfflineAccess`]; each one that changes a credential goes through the
//!   update primitive (`grants`: read, decide, write conditionally, retry on conflict) from its own module
//!   (`signin`, `refresh`, `forget`).
//! - [`events`]: the events a grant change reports (the outbox port, [`events::EventStore`]) and webhook sending;
//!   [`risc`]: Google's security events and the actions on them.
//! - `testkit` (feature `testkit`): the storage contract suite every [`CredentialStore`] adapter runs, an
//!   in-memory store ([`memory`]) and test credentials.

pub mod broker;
pub mod credential;
pub mod delivery;
pub mod events;
#[cfg(test)]
mod events_tests;
mod forget;
mod grants;
pub mod identity;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;
pub mod ports;
mod recent;
mod refresh;
pub mod risc;
pub mod secret;
pub mod service;
#[cfg(test)]
mod service_tests;
mod signin;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use broker::{ProxyUseError, UserPage};
pub use credential::{AccountDisabled, CachedAccess, ConsentState, Credential, Grant};
pub use identity::{DRIVE_APPDATA_SCOPE, Email, IdentityError, Profile, Scopes, Subject};
pub use ports::{
    BodyStream, Clock, ContentStream, CredentialPage, CredentialStore, Drive, DriveError,
    DriveRequest, DriveResponse, FileContent, GoogleApi, IdTokenVerifier, ProxyBody, ProxyError,
    ProxyRequest, ProxyResponse, RevokeError, StoreError, SystemClock, TokenEndpoint, TokenError,
    TokenResponse, UserLock, VerifiedIdToken, VerifyError,
};
pub use secret::{AccessToken, AuthCode, IdToken, RefreshToken, SecretError};
pub use service::{
    AccessError, DriveUseError, ForgetError, Forgotten, OfflineAccess, PendingRevocations, Ports,
    Settings, SignIn, SignInError,
};
