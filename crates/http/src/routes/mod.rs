//! The route handlers and the JSON they answer.

pub(crate) mod authcode;
pub(crate) mod drive;
pub(crate) mod me;
pub(crate) mod ops;
pub(crate) mod risc;

use std::future::Future;

use offline_access_domain::{Credential, DRIVE_APPDATA_SCOPE, Profile, Subject};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::ToSchema;

use crate::error::ApiError;

/// The user's profile as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct UserView {
    /// Google's stable account id.
    #[schema(example = "110169484474386276334")]
    pub(crate) sub: String,
    /// Email address (with the `email` scope).
    #[schema(example = "alice@example.com")]
    pub(crate) email: Option<String>,
    /// Whether Google verified the address.
    pub(crate) email_verified: bool,
    /// Full name.
    pub(crate) name: Option<String>,
    /// Profile picture URL.
    pub(crate) picture: Option<String>,
    /// BCP 47 locale.
    pub(crate) locale: Option<String>,
    /// Given name.
    pub(crate) given_name: Option<String>,
    /// Family name.
    pub(crate) family_name: Option<String>,
}

impl UserView {
    pub(crate) fn new(subject: &Subject, profile: &Profile) -> Self {
        Self {
            sub: subject.as_str().to_owned(),
            email: profile.email.as_ref().map(|e| e.as_str().to_owned()),
            email_verified: profile.email_verified,
            name: profile.name.clone(),
            picture: profile.picture.clone(),
            locale: profile.locale.clone(),
            given_name: profile.given_name.clone(),
            family_name: profile.family_name.clone(),
        }
    }
}

fn scopes_of(credential: &Credential) -> Vec<String> {
    credential.scopes.iter().map(str::to_owned).collect()
}

/// Runs a use case on its own task, so that a client that disconnects or a request timeout cannot cut it short
/// between Google's answer and the store write (a code is single-use; a rotated refresh token must be kept).
pub(crate) async fn run_to_completion<T: Send + 'static>(
    use_case: impl Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(use_case.in_current_span()).await.map_err(|e| {
        tracing::error!(panicked = e.is_panic(), "a use case task failed");
        ApiError::internal()
    })
}

/// The hint in a sign-in answer when the server holds no refresh token.
pub(crate) const HINT_REQUEST_OFFLINE_ACCESS_AGAIN: &str = "request_offline_access_again";

/// The hint when the grant lacks some of `google.required_scopes`: the app should ask for them.
pub(crate) const HINT_REQUEST_SCOPES: &str = "request_scopes";

/// Whether the credential allows Drive calls.
fn drive_available(credential: &Credential) -> bool {
    credential.scopes.contains(DRIVE_APPDATA_SCOPE)
}
