//! HTTP adapter: the offline-access API on axum.
//!
//! This crate only translates HTTP to the use cases of [`offline_access_domain::OfflineAccess`] and back: it
//! validates input at the edge, maps every domain error to a status and a JSON error
//! `{"error": "<code>", "message": "<one sentence>"}`, and adds what a public endpoint needs (CSRF header check,
//! per-client rate limit on `/authcode`, body limits, a request timeout, tracing spans and metrics with no secret
//! in them).
//!
//! Wiring: build an [`AppState`] from the service and an [`HttpConfig`], optionally attach a metrics renderer
//! with [`AppState::with_metrics`] (e.g. `let h = PrometheusBuilder::new().install_recorder()?;`, then
//! [`describe_metrics`] for the `# HELP` lines, then `.with_metrics(Arc::new(move || h.render()))`; every metric is
//! in [`METRICS`] and docs/metrics.md), make the [`router`] and run it with [`serve`] or, with a
//! certificate, [`serve_tls`] over [`tls_config`] (graceful shutdown on the given future, e.g.
//! [`shutdown_signal`]).
//!
//! # Error codes
//! | status | `error` | when |
//! | --- | --- | --- |
//! | 400 | `invalid_request` | missing/empty/oversized/control-character `authCode`, a non-object JSON body, a bad file id, name, page token or upload Content-Type |
//! | 400 | `invalid_grant` | Google rejected the code (used, expired, unknown) |
//! | 400 | `openid_scope_missing` | Google returned no ID token: the app must request `openid` |
//! | 400 | `bad_request` | Drive refused the request as malformed |
//! | 401 | `invalid_token` | missing or bad Bearer ID token; the message says which of missing, not a Bearer, malformed, expired, another client ID, unknown key, or another signature or claim failure (the exact reason is logged); `WWW-Authenticate: Bearer error="invalid_token", error_description="..."` |
//! | 403 | `missing_csrf_header` | `POST /authcode` without a non-empty `X-Requested-With` |
//! | 403 | `subject_mismatch` | the code belongs to another user than the Bearer's; nothing stored |
//! | 403 | `scope_missing` | `drive.appdata` not granted; no Drive call made |
//! | 403 | `account_disabled` | Google disabled the account (RISC); no token used, no Google call made |
//! | 403 | `forbidden` | Drive forbade the operation |
//! | 404 | `not_found` | no stored credential, no such Drive file, unknown path, `/metrics` without a renderer |
//! | 405 | `method_not_allowed` | wrong method (with `Allow`) |
//! | 409 | `reconsent_required` | the grant was revoked, or no refresh token is stored and the access token expired |
//! | 413 | `payload_too_large` | body over `body_limit` (or `drive_body_limit` on uploads) |
//! | 415 | `unsupported_media_type` | `/authcode` body neither form nor JSON |
//! | 429 | `rate_limited` | `/authcode` rate limit per client address, or Drive rate-limiting (with `Retry-After`) |
//! | 500 | `server_misconfigured` | Google refused this server's client ID/secret/redirect URI (logged) |
//! | 500 | `internal_error` | an unreadable stored credential, or a bug (a panic is caught) |
//! | 502 | `upstream_error` | Google or Drive answered something unexpected |
//! | 503 | `upstream_unavailable` | Google or Drive unreachable, or Google's signing keys unavailable |
//! | 503 | `store_unavailable` | the credential store is down |
//! | 504 | `timeout` | the request took longer than `request_timeout` (a sign-in still completes and is stored) |

mod catalogue;
mod error;
mod extract;
mod internal;
mod middleware;
mod ratelimit;
mod routes;
mod serve;

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use offline_access_domain::OfflineAccess;
use offline_access_domain::risc::SecurityEventVerifier;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;

pub use catalogue::{METRICS, MetricInfo, MetricKind, describe_metrics};
pub use error::ErrorBody;
pub use internal::{
    ApiKeyError, ApiKeys, HostPolicy, InternalConfig, InternalState, KEY_PREFIX, internal_openapi,
    internal_router, is_valid_name as is_valid_api_key_name, new_api_key,
};
pub use serve::{SHUTDOWN_GRACE, TlsConfigError, serve_tls, tls_config};

/// Settings of the HTTP adapter. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body on every route but Drive uploads (default 64 KiB); larger is 413.
    pub body_limit: usize,
    /// Largest accepted body of a Drive upload (`POST /v1/me/drive/files`, `PUT .../content`; default 10 MiB).
    pub drive_body_limit: usize,
    /// A request that takes longer is answered 504 `timeout` (default 30 s).
    pub request_timeout: Duration,
    /// Sign-in attempts per second per client address on `/authcode`, bursts of twice that; 0 turns the limit
    /// off (default 20).
    pub authcode_rate_limit: u32,
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies); from anyone else it is ignored.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            drive_body_limit: 10 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            authcode_rate_limit: 20,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Renders the Prometheus text exposition for `/metrics`.
type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// What every handler shares: the use cases, the configuration, the rate limiter and the metrics renderer.
#[derive(Clone)]
pub struct AppState {
    service: Arc<OfflineAccess>,
    config: Arc<HttpConfig>,
    limiter: Arc<ratelimit::RateLimiter>,
    metrics: Option<MetricsRender>,
    risc: Option<Arc<dyn SecurityEventVerifier>>,
}

impl AppState {
    /// State over the use cases with the given configuration (no `/metrics` renderer yet).
    #[must_use]
    pub fn new(service: Arc<OfflineAccess>, config: HttpConfig) -> Self {
        let limiter =
            ratelimit::RateLimiter::new(config.authcode_rate_limit, ratelimit::DEFAULT_CAPACITY);
        Self {
            service,
            config: Arc::new(config),
            limiter: Arc::new(limiter),
            metrics: None,
            risc: None,
        }
    }

    /// Receives Google's security events on `POST /risc`, verified by `verifier` (the service needs an event
    /// store, [`OfflineAccess::with_events`]). Without it `POST /risc` answers 404 `not_found`.
    #[must_use]
    pub fn with_risc(mut self, verifier: Arc<dyn SecurityEventVerifier>) -> Self {
        self.risc = Some(verifier);
        self
    }

    /// Serves `render()` (Prometheus text, e.g. `PrometheusHandle::render`) on `/metrics`. Without it `/metrics`
    /// answers 404 `not_found`.
    #[must_use]
    pub fn with_metrics(mut self, render: Arc<dyn Fn() -> String + Send + Sync>) -> Self {
        self.metrics = Some(render);
        self
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

/// Every route of the API with its layers (span and metrics per request, JSON errors, security headers, request
/// timeout, panic guard). No CORS layer: no foreign origin is ever approved.
pub fn router(state: AppState) -> Router {
    use routes::{authcode, drive, me, ops, risc};
    let timeout = state.config.request_timeout;
    Router::new()
        .route("/authcode", post(authcode::post_authcode))
        .route("/v1/me", get(me::get_me).delete(me::delete_me))
        .route("/v1/me/drive/appfolder", get(drive::get_appfolder))
        .route(
            "/v1/me/drive/files",
            get(drive::list_files).post(drive::create_file),
        )
        .route(
            "/v1/me/drive/files/{id}",
            get(drive::get_file).delete(drive::delete_file),
        )
        .route(
            "/v1/me/drive/files/{id}/content",
            get(drive::get_content).put(drive::put_content),
        )
        .route("/risc", post(risc::post_risc))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi_json))
        .fallback(middleware::fallback)
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            timeout,
            middleware::timeout,
        ))
        .layer(axum::middleware::from_fn(middleware::observe))
        .with_state(state)
}

/// Serves `router` on `listener` (HTTP/1.1 and HTTP/2) until `shutdown` completes, then finishes the requests in
/// flight (for at most [`SHUTDOWN_GRACE`]). Handlers see the peer address (`ConnectInfo<SocketAddr>`, as with
/// `into_make_service_with_connect_info::<SocketAddr>`), which the `/authcode` rate limit uses. A client must send
/// its request headers within 15 s.
///
/// # Errors
/// None in practice: accept errors (e.g. too many open files) are logged and retried.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve::serve_connections(listener, router, None, shutdown).await
}

/// Completes on SIGTERM or Ctrl-C (SIGINT). If a handler cannot be installed, waits on the other one.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}

/// The OpenAPI 3 description of this API (served on `/openapi.json`).
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "offline-access",
        description = "Lasting server-side access to Google APIs on your users' behalf. Every error is \
            `{\"error\": \"<snake_case_code>\", \"message\": \"<one sentence>\"}`; no error ever echoes a token, \
            code or secret."
    ),
    paths(
        routes::authcode::post_authcode,
        routes::me::get_me,
        routes::me::delete_me,
        routes::drive::get_appfolder,
        routes::drive::list_files,
        routes::drive::create_file,
        routes::drive::get_file,
        routes::drive::get_content,
        routes::drive::put_content,
        routes::risc::post_risc,
        routes::drive::delete_file,
        routes::ops::healthz,
        routes::ops::readyz,
        routes::ops::metrics,
        routes::ops::openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    tags(
        (name = "sign-in", description = "The Android app hands over a one-time server auth code."),
        (name = "user", description = "The signed-in user's stored credential (Bearer: the app's Google ID token)."),
        (name = "drive", description = "Drive appDataFolder on the user's behalf, also while the user is offline."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "google_id_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The app's Google ID token (`GoogleSignInAccount.getIdToken()`), whose `aud` is this \
                         server's client ID.",
                    ))
                    .build(),
            ),
        );
    }
}
