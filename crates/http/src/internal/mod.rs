//! The internal API: the stored grants for the team's own services (any language), on a second listener that the
//! public one never serves, behind API keys.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /internal/v1/users?consent=&limit=&cursor=` | users and the state of their grants, a page at a time |
//! | `GET /internal/v1/users/{sub}` | one user, with the profile |
//! | `DELETE /internal/v1/users/{sub}` | forget the user (revoke at Google, delete) |
//! | `POST /internal/v1/users/{sub}/access_token` | a fresh access token (`scopes`, `min_ttl_secs`) |
//! | `ANY /internal/v1/users/{sub}/google/{host}/{path...}` | any Google API, with the user's access token |
//! | `GET /internal/openapi.json` | the OpenAPI 3 description of this API (no key needed) |
//!
//! Every `/internal/v1` request needs `Authorization: Bearer <api key>`; a missing, unknown or malformed key gets
//! the same 401 `invalid_api_key`. The key's *name* (never the key) is in the audit log and the metrics.

mod keys;
mod proxy;
mod routes;

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::{HeaderValue, StatusCode, header};
use offline_access_domain::OfflineAccess;
use tower_http::catch_panic::CatchPanicLayer;

pub use keys::{ApiKeyError, ApiKeys, KEY_PREFIX, is_valid_name, new_api_key};
pub use routes::internal_openapi;

use crate::error::ApiError;
use crate::middleware;

/// Decides whether the proxy may reach a host (`internal.proxy_hosts`). The host is lower case, without a port.
pub type HostPolicy = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Settings of the internal API.
#[derive(Clone)]
pub struct InternalConfig {
    /// The keys that may call it.
    pub api_keys: ApiKeys,
    /// Which Google hosts the proxy may reach.
    pub allow_host: HostPolicy,
    /// A proxied request body up to this size is kept in memory, so the request can be repeated after a refresh;
    /// a larger one is streamed (default 1 MiB).
    pub repeatable_body_limit: usize,
    /// Largest body of the JSON endpoints (default 64 KiB).
    pub body_limit: usize,
}

impl InternalConfig {
    /// The defaults with these keys and host policy.
    #[must_use]
    pub fn new(api_keys: ApiKeys, allow_host: HostPolicy) -> Self {
        Self {
            api_keys,
            allow_host,
            repeatable_body_limit: 1024 * 1024,
            body_limit: 64 * 1024,
        }
    }
}

impl fmt::Debug for InternalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternalConfig")
            .field("api_keys", &self.api_keys)
            .field("repeatable_body_limit", &self.repeatable_body_limit)
            .finish_non_exhaustive()
    }
}

/// What the internal API's handlers share.
#[derive(Clone)]
pub struct InternalState {
    service: Arc<OfflineAccess>,
    config: Arc<InternalConfig>,
}

impl InternalState {
    /// State over the use cases.
    #[must_use]
    pub fn new(service: Arc<OfflineAccess>, config: InternalConfig) -> Self {
        Self {
            service,
            config: Arc::new(config),
        }
    }
}

impl fmt::Debug for InternalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternalState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The name of the key that authenticated a request (set by the key check for the handlers).
#[derive(Debug, Clone)]
pub(crate) struct KeyName(pub(crate) String);

/// The internal API's routes with their layers (key check, span and metrics per request, JSON errors, panic
/// guard). Mount it on its own listener.
pub fn internal_router(state: InternalState) -> Router {
    let v1 = Router::new()
        .route("/internal/v1/users", get(routes::list_users))
        .route(
            "/internal/v1/users/{sub}",
            get(routes::get_user).delete(routes::forget_user),
        )
        .route(
            "/internal/v1/users/{sub}/access_token",
            post(routes::access_token),
        )
        .route(
            "/internal/v1/users/{sub}/google/{host}/{*path}",
            any(proxy::proxy),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_key,
        ));
    Router::new()
        .merge(v1)
        .route("/internal/openapi.json", get(routes::openapi_json))
        .fallback(middleware::fallback)
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn(middleware::observe))
        .with_state(state)
}

/// Lets in a request with a configured key, else 401 `invalid_api_key` (the same answer for a missing, unknown or
/// malformed key).
async fn require_key(
    State(state): State<InternalState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
                .map(|_| &v[7..])
        })
        .unwrap_or_default();
    let Some(name) = state.config.api_keys.check(presented).map(str::to_owned) else {
        metrics::counter!("offline_access_internal_requests_total", "key" => "none", "outcome" => "invalid_api_key")
            .increment(1);
        return invalid_api_key().into_response();
    };
    request.extensions_mut().insert(KeyName(name.clone()));
    let response = next.run(request).await;
    let outcome = match response.status() {
        s if s.is_success() || s.is_redirection() => "ok",
        s if s.is_client_error() => "client_error",
        _ => "server_error",
    };
    metrics::counter!("offline_access_internal_requests_total", "key" => name, "outcome" => outcome)
        .increment(1);
    response
}

fn invalid_api_key() -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "A valid API key is required: Authorization: Bearer <api key>.",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="offline-access internal API""#),
    );
    response
}
