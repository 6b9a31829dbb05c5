//! Cross-cutting layers: a tracing span and metrics per request, JSON for every error, security headers, the
//! request timeout, and a panic guard.

use std::any::Any;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use tracing::Instrument;
use tracing::field::Empty;

use crate::error::{ApiError, for_status};

/// Marks a response that is another server's answer passed through as it is (the internal API's proxy): its
/// error bodies are Google's, never replaced by the JSON error shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassedThrough;

/// One span per request (method, path, status, latency; never headers, query or bodies), the request counter,
/// and the guarantee that every error response is the JSON error shape.
pub(crate) async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let path = loggable_path(request.uri().path(), route.as_deref());
    let span = tracing::info_span!(
        "http_request",
        method = %method,
        path = %path,
        status = Empty,
        latency_ms = Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    let mut response = ensure_json_error(response);
    add_security_headers(&mut response);

    let status = response.status();
    let latency = started.elapsed();
    span.record("status", status.as_u16());
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!("request failed");
        } else {
            tracing::info!("request finished");
        }
    });
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    metrics::counter!(
        "offline_access_http_requests_total",
        "route" => route.clone(),
        "status" => status.as_str().to_owned(),
    )
    .increment(1);
    metrics::histogram!("offline_access_http_request_duration_seconds", "route" => route)
        .record(latency.as_secs_f64());
    response
}

/// The path for logs: the real path for a matched route when it holds only safe characters (file ids are
/// validated the same way), else the route template (or `unmatched`), so no client-chosen text reaches a log.
fn loggable_path(path: &str, route: Option<&str>) -> String {
    let safe = path.len() <= 256
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
    match route {
        Some(_) if safe => path.to_owned(),
        Some(route) => route.to_owned(),
        None => "unmatched".to_owned(),
    }
}

/// Replaces any error response that is not JSON (axum's 405, a layer's bare status) with the JSON error shape.
fn ensure_json_error(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if response.extensions().get::<PassedThrough>().is_some() {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let mut replacement = for_status(status).into_response();
    // Keep the headers that matter to clients (e.g. `Allow` on a 405).
    if let Some(allow) = response.headers().get(header::ALLOW) {
        replacement
            .headers_mut()
            .insert(header::ALLOW, allow.clone());
    }
    *replacement.status_mut() = status;
    replacement
}

fn add_security_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// Fails a request that takes longer than the configured timeout with 504 `timeout`. Use cases run on their own
/// tasks, so a sign-in cut off here still completes and is stored (a retry of the same code gets its answer).
pub(crate) async fn timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            ApiError::timeout().into_response()
        }
    }
}

/// What a panicking handler answers: a plain 500 JSON error. The panic payload is neither logged nor returned.
pub(crate) fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::internal().into_response()
}

/// The answer for paths that match no route.
pub(crate) async fn fallback() -> ApiError {
    ApiError::not_found()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_matched_paths_are_logged_verbatim() {
        assert_eq!(
            loggable_path("/v1/me/drive/files/1AbC", Some("/v1/me/drive/files/{id}")),
            "/v1/me/drive/files/1AbC"
        );
        assert_eq!(
            loggable_path(
                "/v1/me/drive/files/ya29%20x",
                Some("/v1/me/drive/files/{id}")
            ),
            "/v1/me/drive/files/{id}"
        );
        assert_eq!(loggable_path("/4/0secret-code", None), "unmatched");
    }
}
