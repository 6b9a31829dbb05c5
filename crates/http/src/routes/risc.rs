//! `POST /risc`: Google's Security Event Tokens (Cross-Account Protection, RFC 8935 push delivery).
//!
//! 202 for a valid token (also a duplicate `jti`, acted on once, and an unknown subject); 400 with RFC 8935's
//! `{"err", "description"}` for an invalid one, and nothing changes; 503 when Google's RISC keys cannot be
//! fetched or the store fails, so that Google retries.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use offline_access_domain::risc::{Receipt, RiscError, SetError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::read_body;
use crate::routes::run_to_completion;

/// RFC 8935's error body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SetErrorBody {
    /// `invalid_key`, `invalid_issuer`, `invalid_audience` or `invalid_request`.
    #[schema(example = "invalid_audience")]
    err: &'static str,
    /// What is wrong, in one sentence (never the token).
    description: String,
}

/// Receives a Security Event Token (the body, as `application/secevent+jwt` or any type).
#[utoipa::path(post, path = "/risc", tag = "security events",
    request_body(content = String, content_type = "application/secevent+jwt", description = "The signed token."),
    responses(
        (status = 202, description = "Accepted (acted on once per `jti`)."),
        (status = 400, description = "Invalid token (RFC 8935); nothing changed.", body = SetErrorBody),
        (status = 404, description = "`not_found`: this server does not receive security events.", body = ErrorBody),
        (status = 503, description = "`upstream_unavailable` (Google's RISC keys) or `store_unavailable`: retry.", body = ErrorBody),
    ))]
pub(crate) async fn post_risc(State(state): State<AppState>, request: Request) -> Response {
    let Some(verifier) = state.risc.clone() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "This server does not receive security events.",
        )
        .into_response();
    };
    let (parts, body): (_, Body) = request.into_parts();
    let bytes = match read_body(&parts.headers, body, state.config.body_limit).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let Ok(token) = std::str::from_utf8(&bytes) else {
        return refused(&SetError::InvalidRequest("the body is not a token".into()));
    };
    let now = state.service.ports().clock.now();
    let event = match verifier.verify(token.trim(), now).await {
        Ok(event) => event,
        Err(SetError::Unavailable(cause)) => {
            tracing::warn!(cause = %cause, "a security event could not be verified: Google's RISC keys are unavailable");
            count("unavailable");
            return ApiError::upstream_unavailable().into_response();
        }
        Err(e) => return refused(&e),
    };
    let service = Arc::clone(&state.service);
    let jti = event.jti.clone();
    match run_to_completion(async move { service.receive_security_event(&event).await }).await {
        Ok(Ok(receipt)) => {
            count(match receipt {
                Receipt::Acted => "accepted",
                Receipt::Duplicate => "duplicate",
            });
            StatusCode::ACCEPTED.into_response()
        }
        Ok(Err(RiscError::Store(e))) => {
            tracing::warn!(jti = %jti, "a security event could not be acted on; Google will retry");
            count("store_unavailable");
            ApiError::from(e).into_response()
        }
        Ok(Err(RiscError::NoEventStore)) => {
            count("misconfigured");
            ApiError::internal().into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn refused(error: &SetError) -> Response {
    let code = error.code().unwrap_or("invalid_request");
    tracing::warn!(err = code, reason = %error, "security event token refused");
    count(code);
    let description = match error {
        SetError::InvalidKey(d)
        | SetError::InvalidIssuer(d)
        | SetError::InvalidAudience(d)
        | SetError::InvalidRequest(d)
        | SetError::Unavailable(d) => d.clone(),
    };
    (
        StatusCode::BAD_REQUEST,
        Json(SetErrorBody {
            err: code,
            description,
        }),
    )
        .into_response()
}

fn count(outcome: &'static str) {
    metrics::counter!("offline_access_risc_events_total", "outcome" => outcome).increment(1);
}
