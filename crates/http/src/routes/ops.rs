//! Operations routes: liveness, readiness, Prometheus metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthView {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// What readiness checked.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadyChecks {
    /// `ok` or `unavailable`.
    store: &'static str,
    /// `ok` or `not_loaded`: Google's ID-token signing keys.
    signing_keys: &'static str,
}

/// Readiness: ready, or an error body with the checks.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadyView {
    /// `ready` when every check passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    /// `not_ready` when a check failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    /// One sentence naming what is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
    /// The individual checks.
    checks: ReadyChecks,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive.", body = HealthView)))]
pub(crate) async fn healthz() -> Json<HealthView> {
    Json(HealthView { status: "ok" })
}

/// Readiness: the credential store is reachable and Google's signing keys are loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready.", body = ReadyView),
        (status = 503, description = "`not_ready`, with the failed checks.", body = ReadyView),
    ))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let ports = state.service.ports();
    let store_ok = match ports.store.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the credential store is unavailable");
            false
        }
    };
    let keys_ok = ports.verifier.keys_loaded();
    let checks = ReadyChecks {
        store: if store_ok { "ok" } else { "unavailable" },
        signing_keys: if keys_ok { "ok" } else { "not_loaded" },
    };
    if store_ok && keys_ok {
        return (
            StatusCode::OK,
            Json(ReadyView {
                status: Some("ready"),
                error: None,
                message: None,
                checks,
            }),
        )
            .into_response();
    }
    let message = match (store_ok, keys_ok) {
        (false, false) => {
            "The credential store is unreachable and Google's signing keys are not loaded."
        }
        (false, true) => {
            "The credential store cannot serve: unreachable, its schema not migrated, or not writable."
        }
        _ => "Google's signing keys are not loaded yet.",
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(ReadyView {
            status: None,
            error: Some("not_ready"),
            message: Some(message),
            checks,
        }),
    )
        .into_response()
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format.", content_type = "text/plain", body = String),
        (status = 404, description = "`not_found`: no metrics recorder is installed.", body = ErrorBody),
    ))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let render = state.metrics.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Metrics are not enabled on this server.",
        )
    })?;
    let mut response = render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 description of this API.", content_type = "application/json")))]
pub(crate) async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    match DOC.get_or_init(|| crate::openapi().to_json().ok()) {
        Some(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json.clone(),
        )
            .into_response(),
        None => ApiError::internal().into_response(),
    }
}
