//! `GET /v1/me` and `DELETE /v1/me`: the signed-in user's stored credential state, and forgetting it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::{UserView, drive_available, run_to_completion, scopes_of};
use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

/// The stored profile and credential state. Never contains a token.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MeView {
    /// Who this is.
    pub(crate) user: UserView,
    /// The granted scopes.
    pub(crate) scopes: Vec<String>,
    /// Whether a refresh token is stored and the grant active.
    pub(crate) offline_access: bool,
    /// `active`; `revoked` when Google refused the refresh token or revoked the grant (the app must ask for consent
    /// again); `disabled` while Google has disabled the account (Cross-Account Protection).
    #[schema(example = "active")]
    pub(crate) consent: &'static str,
    /// Whether `drive.appdata` was granted.
    pub(crate) drive_available: bool,
}

/// The signed-in user's stored profile and credential state.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "user",
    security(("google_id_token" = [])),
    responses(
        (status = 200, description = "The stored profile and credential state.", body = MeView),
        (status = 401, description = "`invalid_token`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no credential is stored for this user.", body = ErrorBody),
        (status = 503, description = "`store_unavailable`, or `upstream_unavailable` when Google's keys cannot be had.", body = ErrorBody),
    )
)]
pub(crate) async fn get_me(
    State(state): State<AppState>,
    Authed(subject): Authed,
) -> Result<Json<MeView>, ApiError> {
    let credential = state.service.credential(&subject).await?;
    Ok(Json(MeView {
        user: UserView::new(&credential.subject, &credential.profile),
        scopes: scopes_of(&credential),
        offline_access: credential.offline_access(),
        consent: credential.shown_consent(),
        drive_available: drive_available(&credential),
    }))
}

/// Revoke the grant at Google and delete the stored credential.
#[utoipa::path(
    delete,
    path = "/v1/me",
    tag = "user",
    security(("google_id_token" = [])),
    responses(
        (status = 204, description = "Forgotten. When Google could not confirm the revocation, the credential is unusable at once and the revocation is retried later."),
        (status = 401, description = "`invalid_token`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
        (status = 503, description = "`store_unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn delete_me(
    State(state): State<AppState>,
    Authed(subject): Authed,
) -> Result<StatusCode, ApiError> {
    let service = Arc::clone(&state.service);
    let forgotten = run_to_completion(async move { service.forget(&subject).await }).await??;
    if !forgotten.revoked_at_google {
        tracing::warn!(
            "the grant could not be revoked at Google yet; the credential is unusable now and the revocation is pending"
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
