//! The internal API's JSON endpoints: users, one user, forget, access tokens, and its OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use offline_access_domain::{ConsentState, Credential, ForgetError, Scopes, Subject};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::{OpenApi, ToSchema};

use super::{InternalState, KeyName};
use crate::error::{ApiError, ErrorBody};
use crate::extract::read_body;
use crate::routes::UserView;

/// The default and largest page of `GET /internal/v1/users`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// A user and the state of their grant.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserSummary {
    /// Google's stable account id.
    sub: String,
    /// The e-mail address, when granted.
    email: Option<String>,
    /// `active` or `revoked`.
    consent: &'static str,
    /// The scopes of the stored grant.
    scopes: Vec<String>,
    /// Whether a refresh token is stored and the grant active.
    offline_access: bool,
    /// When the credential last changed (RFC 3339).
    updated_at: String,
    /// The profile (on the one-user endpoint only).
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserView>,
}

impl UserSummary {
    fn of(c: &Credential, with_profile: bool) -> Self {
        Self {
            sub: c.subject.as_str().to_owned(),
            email: c.profile.email.as_ref().map(|e| e.as_str().to_owned()),
            consent: c.shown_consent(),
            scopes: c.scopes.iter().map(str::to_owned).collect(),
            offline_access: c.offline_access(),
            updated_at: c
                .updated_at
                .format(&Rfc3339)
                .unwrap_or_else(|_| c.updated_at.to_string()),
            user: with_profile.then(|| UserView::new(&c.subject, &c.profile)),
        }
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsersPage {
    users: Vec<UserSummary>,
    /// Pass as `cursor` for the next page; `null` at the end. A page may hold fewer users than `limit` (a filter)
    /// and still not be the last.
    next_cursor: Option<String>,
}

/// Query of `GET /internal/v1/users`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct UsersQuery {
    /// `active` or `revoked`.
    consent: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<usize>,
    /// From the previous page's `next_cursor`.
    cursor: Option<String>,
}

/// List users and the state of their grants.
#[utoipa::path(get, path = "/internal/v1/users", tag = "internal", params(UsersQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, body = UsersPage),
        (status = 400, description = "`invalid_request`: a bad filter, limit or cursor.", body = ErrorBody),
        (status = 401, description = "`invalid_api_key`.", body = ErrorBody),
    ))]
pub(crate) async fn list_users(
    State(state): State<InternalState>,
    Query(query): Query<UsersQuery>,
) -> Result<Json<UsersPage>, ApiError> {
    let consent = match query.consent.as_deref() {
        None | Some("") => None,
        Some("active") => Some(ConsentState::Active),
        Some("revoked") => Some(ConsentState::Revoked),
        Some(_) => {
            return Err(ApiError::invalid_request(
                "consent must be active or revoked.",
            ));
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_request(
            "limit must be between 1 and 1000.",
        ));
    }
    let page = state
        .service
        .users(consent, limit, query.cursor)
        .await
        .map_err(|e| match e {
            offline_access_domain::StoreError::Other(_) => {
                ApiError::invalid_request("The cursor is not one this server made.")
            }
            other => other.into(),
        })?;
    for reason in &page.unreadable {
        tracing::warn!(reason = %reason, "a stored record cannot be read; skipped in the listing");
    }
    Ok(Json(UsersPage {
        users: page
            .users
            .iter()
            .map(|c| UserSummary::of(c, false))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The subject of a path, or 404 `not_found` (no user can have a malformed one).
pub(super) fn subject(sub: &str) -> Result<Subject, ApiError> {
    Subject::parse(sub).map_err(|_| not_found())
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "No credential is stored for this user.",
    )
}

/// One user, with the profile.
#[utoipa::path(get, path = "/internal/v1/users/{sub}", tag = "internal",
    security(("api_key" = [])),
    responses(
        (status = 200, body = UserSummary),
        (status = 401, description = "`invalid_api_key`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
    ))]
pub(crate) async fn get_user(
    State(state): State<InternalState>,
    Path(sub): Path<String>,
) -> Result<Json<UserSummary>, ApiError> {
    let credential = state.service.credential(&subject(&sub)?).await?;
    Ok(Json(UserSummary::of(&credential, true)))
}

/// Forget a user: revoke the grant at Google and delete the stored credential.
#[utoipa::path(delete, path = "/internal/v1/users/{sub}", tag = "internal",
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Forgotten (the revocation at Google is retried later if Google could not confirm it)."),
        (status = 401, description = "`invalid_api_key`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
    ))]
pub(crate) async fn forget_user(
    State(state): State<InternalState>,
    Extension(key): Extension<KeyName>,
    Path(sub): Path<String>,
) -> Result<StatusCode, ApiError> {
    let subject = subject(&sub)?;
    let service = state.service.clone();
    let target = subject.clone();
    let forgotten = crate::routes::run_to_completion(async move { service.forget(&target).await })
        .await?
        .map_err(|e| match e {
            ForgetError::NotFound => not_found(),
            ForgetError::Store(e) => e.into(),
        })?;
    tracing::info!(key = %key.0, subject = %subject, revoked_at_google = forgotten.revoked_at_google, "internal API: user forgotten");
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /internal/v1/users/{sub}/access_token` (all optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    /// Scopes the token must carry (each must be in the user's grant).
    scopes: Option<Vec<String>>,
    /// The token must stay valid at least this long (default 60, at most 1800).
    min_ttl_secs: Option<u64>,
}

/// A fresh access token.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenAnswer {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// When it expires (RFC 3339).
    expires_at: String,
    /// Seconds until it expires.
    expires_in: i64,
    /// The scopes it carries.
    scopes: Vec<String>,
}

/// A fresh access token for the user, refreshed at Google only when the cached one is not fresh enough.
#[utoipa::path(post, path = "/internal/v1/users/{sub}/access_token", tag = "internal",
    security(("api_key" = [])),
    request_body(content = TokenRequest, description = "Optional."),
    responses(
        (status = 200, body = TokenAnswer, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "`invalid_request`.", body = ErrorBody),
        (status = 401, description = "`invalid_api_key`.", body = ErrorBody),
        (status = 403, description = "`scope_missing`, with `missing`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
        (status = 409, description = "`reconsent_required`: revoked, or no refresh token.", body = ErrorBody),
        (status = 503, description = "`upstream_unavailable`.", body = ErrorBody),
    ))]
pub(crate) async fn access_token(
    State(state): State<InternalState>,
    Extension(key): Extension<KeyName>,
    Path(sub): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let subject = subject(&sub)?;
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body, state.config.body_limit).await?;
    let asked: TokenRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::invalid_request(
                "The body must be a JSON object with optional `scopes` (strings) and `min_ttl_secs` (a number).",
            )
        })?
    };
    let scopes = Scopes::from_iter_checked(asked.scopes.iter().flatten().map(String::as_str))
        .map_err(|_| ApiError::invalid_request("A scope is empty or not visible ASCII."))?;
    let min_ttl = Duration::from_secs(asked.min_ttl_secs.unwrap_or(60));
    let service = state.service.clone();
    let (target, wanted) = (subject.clone(), scopes.clone());
    let access = crate::routes::run_to_completion(async move {
        service.access_token_for(&target, &wanted, min_ttl).await
    })
    .await??;
    let now = state.service.ports().clock.now();
    tracing::info!(key = %key.0, subject = %subject, scopes = %access.scopes.iter().collect::<Vec<_>>().join(" "), "internal API: access token handed out");
    metrics::counter!("offline_access_internal_tokens_total", "key" => key.0).increment(1);
    let answer = TokenAnswer {
        access_token: access.token.expose_secret().to_owned(),
        token_type: "Bearer",
        expires_at: access
            .expires_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| access.expires_at.to_string()),
        expires_in: (access.expires_at - now).whole_seconds().max(0),
        scopes: access.scopes.iter().map(str::to_owned).collect(),
    };
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The OpenAPI 3 description of the internal API.
#[utoipa::path(get, path = "/internal/openapi.json", tag = "internal",
    responses((status = 200, description = "This document.")))]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(internal_openapi())
}

/// The OpenAPI 3 description of the internal API (served on `/internal/openapi.json`).
#[must_use]
pub fn internal_openapi() -> utoipa::openapi::OpenApi {
    InternalDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "offline-access internal API",
        description = "The stored Google grants for the team's own services: users, fresh access tokens, and any \
            Google API through a proxy. Every /internal/v1 request needs `Authorization: Bearer <api key>`."
    ),
    paths(list_users, get_user, forget_user, access_token, super::proxy::proxy, openapi_json),
    components(schemas(ErrorBody, UsersPage, UserSummary, TokenRequest, TokenAnswer)),
    modifiers(&ApiKeyScheme),
    tags((name = "internal", description = "For the team's own services, on the internal listener only."))
)]
struct InternalDoc;

struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `offline-access api-key new NAME`, configured in internal.api_keys \
                         as its digest.",
                    ))
                    .build(),
            ),
        );
    }
}
