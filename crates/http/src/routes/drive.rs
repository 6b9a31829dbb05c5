//! `/v1/me/drive/...`: Drive v3 on the user's `appDataFolder`, called by the server with the stored credential.
//!
//! Path and query are validated before anything else (a bad file id or name is 400 with no call anywhere), then
//! the Bearer ID token, then the body is read (up to the larger Drive body limit).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use offline_access_domain::{DriveRequest, DriveResponse, Subject};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::run_to_completion;
use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{
    Authed, FileId, authenticate, query, read_body, required_bearer_token, validate_file_name,
};

/// Query of `GET /v1/me/drive/files`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// `nextPageToken` from a previous answer.
    #[serde(rename = "pageToken")]
    #[param(rename = "pageToken")]
    page_token: Option<String>,
}

/// Query of `POST /v1/me/drive/files`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CreateQuery {
    /// The file name (required): 1 to 255 bytes, no control characters, no `/` or `\`, not `.` or `..`.
    // An `Option` so that its absence gets its own 400 message rather than the query's.
    #[param(required = true)]
    name: Option<String>,
}

/// The file's raw bytes.
// For the OpenAPI document only: `type: string, format: binary` (a bare `Vec<u8>` reads as an array of integers).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct FileBytes(Vec<u8>);

/// Runs one Drive operation for the user, counting it by operation and outcome.
async fn call(
    state: &AppState,
    subject: Subject,
    request: DriveRequest,
) -> Result<DriveResponse, ApiError> {
    let operation = request.operation();
    let service = Arc::clone(&state.service);
    let result = run_to_completion(async move { service.drive(&subject, &request).await })
        .await?
        .map_err(ApiError::from);
    let outcome = match &result {
        Ok(_) => "success",
        Err(e) => e.code,
    };
    metrics::counter!("offline_access_drive_calls_total", "operation" => operation, "outcome" => outcome)
        .increment(1);
    result
}

/// Renders Drive's answer: JSON with `status`, content streamed as it arrives (sandboxed, never sniffed), or 204.
fn render(response: DriveResponse, status: StatusCode) -> Response {
    match response {
        DriveResponse::Json(value) => (status, Json(value)).into_response(),
        DriveResponse::Content {
            content_type,
            content,
        } => {
            let content_type = HeaderValue::from_str(&content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            let length = content.length();
            // Streamed as Drive sends it; a break upstream ends the answer early (the client sees a short or
            // unterminated body, never a complete-looking wrong file).
            let mut response =
                (StatusCode::OK, Body::from_stream(content.into_stream())).into_response();
            let headers = response.headers_mut();
            if let Some(length) = length {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
            headers.insert(header::CONTENT_TYPE, content_type);
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            );
            response
        }
        DriveResponse::Empty => StatusCode::NO_CONTENT.into_response(),
    }
}

/// The content type of an upload: the request's, or `application/octet-stream`.
fn upload_content_type(request: &Request) -> Result<String, ApiError> {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return Ok("application/octet-stream".to_owned());
    };
    match value.to_str() {
        Ok(v)
            if v.len() <= 255
                && v.contains('/')
                && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) =>
        {
            Ok(v.to_owned())
        }
        _ => Err(ApiError::invalid_request(
            "The Content-Type must be a media type of at most 255 visible ASCII characters.",
        )),
    }
}

/// Authenticates and reads the upload body (after path and query were validated).
async fn authed_upload(
    state: &AppState,
    request: Request,
) -> Result<(Subject, String, Bytes), ApiError> {
    let content_type = upload_content_type(&request)?;
    let (parts, body) = request.into_parts();
    let token = required_bearer_token(&parts.headers)?;
    let subject = authenticate(state, &token).await?;
    let content = read_body(&parts.headers, body, state.config.drive_body_limit).await?;
    Ok((subject, content_type, content))
}

/// Drive `files.get('appDataFolder')` on the user's behalf.
#[utoipa::path(
    get,
    path = "/v1/me/drive/appfolder",
    tag = "drive",
    security(("google_id_token" = [])),
    responses(
        (status = 200, description = "Drive's metadata of the appDataFolder.", body = Object),
        (status = 401, description = "`invalid_token`.", body = ErrorBody),
        (status = 403, description = "`scope_missing`: the app must request drive.appdata; `forbidden`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no credential stored.", body = ErrorBody),
        (status = 409, description = "`reconsent_required`: the grant was revoked.", body = ErrorBody),
        (status = 429, description = "`rate_limited` by Drive.", body = ErrorBody),
        (status = 502, description = "`upstream_error`.", body = ErrorBody),
        (status = 503, description = "`upstream_unavailable` or `store_unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn get_appfolder(
    State(state): State<AppState>,
    Authed(subject): Authed,
) -> Result<Response, ApiError> {
    let response = call(&state, subject, DriveRequest::GetAppFolder).await?;
    Ok(render(response, StatusCode::OK))
}

/// Files in the user's appDataFolder (`{"files": [...], "nextPageToken"?}`).
#[utoipa::path(
    get,
    path = "/v1/me/drive/files",
    tag = "drive",
    security(("google_id_token" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Drive's file list.", body = Object),
        (status = 400, description = "`invalid_request`: a bad page token.", body = ErrorBody),
        (status = 401, description = "`invalid_token`.", body = ErrorBody),
        (status = 403, description = "`scope_missing`.", body = ErrorBody),
        (status = 409, description = "`reconsent_required`.", body = ErrorBody),
        (status = 503, description = "`upstream_unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn list_files(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _body) = request.into_parts();
    let ListQuery { page_token } = query(&parts)?;
    let bad_token = page_token.as_deref().is_some_and(|t| {
        t.is_empty() || t.len() > 1024 || !t.bytes().all(|b| b.is_ascii_graphic())
    });
    if bad_token {
        return Err(ApiError::invalid_request(
            "The pageToken must be 1 to 1024 visible ASCII characters.",
        ));
    }
    let Authed(subject) = Authed::from_request_parts(&mut parts, &state).await?;
    let response = call(&state, subject, DriveRequest::ListFiles { page_token }).await?;
    Ok(render(response, StatusCode::OK))
}

/// Create a file in the user's appDataFolder with the request body as its content.
#[utoipa::path(
    post,
    path = "/v1/me/drive/files",
    tag = "drive",
    security(("google_id_token" = [])),
    params(CreateQuery),
    request_body(content = inline(FileBytes), content_type = "application/octet-stream", description = "The file content, up to `http.drive_body_limit` bytes (default 10 MiB). Any Content-Type may be sent (`application/octet-stream` without one); it is kept as the file's MIME type."),
    responses(
        (status = 201, description = "Created; Drive's metadata of the new file.", body = Object),
        (status = 400, description = "`invalid_request`: missing or bad name, bad Content-Type.", body = ErrorBody),
        (status = 401, description = "`invalid_token`.", body = ErrorBody),
        (status = 403, description = "`scope_missing`.", body = ErrorBody),
        (status = 409, description = "`reconsent_required`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 503, description = "`upstream_unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn create_file(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let CreateQuery { name } = query(&parts)?;
    let name =
        name.ok_or_else(|| ApiError::invalid_request("The name query parameter is required."))?;
    validate_file_name(&name)?;
    let (subject, content_type, content) =
        authed_upload(&state, Request::from_parts(parts, body)).await?;
    let response = call(
        &state,
        subject,
        DriveRequest::CreateFile {
            name,
            content_type,
            content,
        },
    )
    .await?;
    Ok(render(response, StatusCode::CREATED))
}

/// A file's metadata.
#[utoipa::path(
    get,
    path = "/v1/me/drive/files/{id}",
    tag = "drive",
    security(("google_id_token" = [])),
    params(("id" = String, Path, description = "Drive file id: 1 to 128 of [A-Za-z0-9_-].")),
    responses(
        (status = 200, description = "Drive's metadata of the file.", body = Object),
        (status = 400, description = "`invalid_request`: a bad file id.", body = ErrorBody),
        (status = 401, description = "`invalid_token`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
        (status = 409, description = "`reconsent_required`.", body = ErrorBody),
    )
)]
pub(crate) async fn get_file(
    State(state): State<AppState>,
    FileId(id): FileId,
    Authed(subject): Authed,
) -> Result<Response, ApiError> {
    let response = call(&state, subject, DriveRequest::GetFile { id }).await?;
    Ok(render(response, StatusCode::OK))
}

/// A file's content, with its content type.
#[utoipa::path(
    get,
    path = "/v1/me/drive/files/{id}/content",
    tag = "drive",
    security(("google_id_token" = [])),
    params(("id" = String, Path, description = "Drive file id.")),
    responses(
        (status = 200, description = "The content, with the file's MIME type as its Content-Type (any type; `application/octet-stream` here stands for all).", content_type = "application/octet-stream", body = inline(FileBytes)),
        (status = 400, description = "`invalid_request`.", body = ErrorBody),
        (status = 401, description = "`invalid_token`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
    )
)]
pub(crate) async fn get_content(
    State(state): State<AppState>,
    FileId(id): FileId,
    Authed(subject): Authed,
) -> Result<Response, ApiError> {
    let response = call(&state, subject, DriveRequest::Download { id }).await?;
    Ok(render(response, StatusCode::OK))
}

/// Replace a file's content (the request's Content-Type is kept).
#[utoipa::path(
    put,
    path = "/v1/me/drive/files/{id}/content",
    tag = "drive",
    security(("google_id_token" = [])),
    params(("id" = String, Path, description = "Drive file id.")),
    request_body(content = inline(FileBytes), content_type = "application/octet-stream", description = "The new content, up to `http.drive_body_limit` bytes; its Content-Type becomes the file's MIME type."),
    responses(
        (status = 200, description = "Drive's metadata of the updated file.", body = Object),
        (status = 400, description = "`invalid_request`.", body = ErrorBody),
        (status = 401, description = "`invalid_token`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
    )
)]
pub(crate) async fn put_content(
    State(state): State<AppState>,
    FileId(id): FileId,
    request: Request,
) -> Result<Response, ApiError> {
    let (subject, content_type, content) = authed_upload(&state, request).await?;
    let response = call(
        &state,
        subject,
        DriveRequest::UpdateContent {
            id,
            content_type,
            content,
        },
    )
    .await?;
    Ok(render(response, StatusCode::OK))
}

/// Delete a file.
#[utoipa::path(
    delete,
    path = "/v1/me/drive/files/{id}",
    tag = "drive",
    security(("google_id_token" = [])),
    params(("id" = String, Path, description = "Drive file id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "`invalid_request`.", body = ErrorBody),
        (status = 401, description = "`invalid_token`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
    )
)]
pub(crate) async fn delete_file(
    State(state): State<AppState>,
    FileId(id): FileId,
    Authed(subject): Authed,
) -> Result<StatusCode, ApiError> {
    call(&state, subject, DriveRequest::Delete { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}
