//! Extractors and edge validation. Every rejection is an [`ApiError`], so no request ever gets axum's plain-text
//! rejections.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, header};
use offline_access_domain::{IdToken, Subject};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::{ApiError, BearerProblem};

/// The user proven by a verified `Authorization: Bearer <Google ID token>`.
#[derive(Debug, Clone)]
pub(crate) struct Authed(pub(crate) Subject);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = required_bearer_token(&parts.headers)?;
        authenticate(state, &token).await.map(Self)
    }
}

/// The Bearer ID token of a request: `None` when there is no `Authorization` header; 401 when there is one that
/// is not exactly one well-formed `Bearer` ID token (the answer says which: not a Bearer, or malformed).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<IdToken>, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let reject = |reason: &'static str, problem: BearerProblem| {
        tracing::info!(reason, "bearer token rejected before verification");
        ApiError::invalid_token(problem)
    };
    if values.next().is_some() {
        return Err(reject(
            "several_authorization_headers",
            BearerProblem::Malformed,
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| reject("not_ascii", BearerProblem::Malformed))?;
    let (scheme, token) = match value.trim().split_once(' ') {
        Some(split) => split,
        // `Bearer` and nothing else names the scheme but holds no token.
        None if value.trim().eq_ignore_ascii_case("bearer") => {
            return Err(reject("empty", BearerProblem::Malformed));
        }
        None => return Err(reject("no_scheme", BearerProblem::NotBearer)),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(reject("not_bearer", BearerProblem::NotBearer));
    }
    IdToken::parse(token.trim())
        .map(Some)
        .map_err(|_| reject("malformed", BearerProblem::Malformed))
}

/// The Bearer ID token of a request that needs one: as [`bearer_token`], and 401 (missing) without the header.
pub(crate) fn required_bearer_token(headers: &HeaderMap) -> Result<IdToken, ApiError> {
    bearer_token(headers)?.ok_or_else(|| {
        tracing::info!(reason = "missing", "bearer token missing");
        ApiError::invalid_token(BearerProblem::Missing)
    })
}

/// Verifies a Bearer ID token through the domain and returns its subject.
pub(crate) async fn authenticate(state: &AppState, token: &IdToken) -> Result<Subject, ApiError> {
    state
        .service
        .authenticate(token)
        .await
        .map(|verified| verified.subject)
        .map_err(|e| ApiError::from_verify(&e, "bearer"))
}

/// A Drive file id from the path, validated (`[A-Za-z0-9_-]{1,128}`) before anything is called.
#[derive(Debug, Clone)]
pub(crate) struct FileId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for FileId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid_file_id())?;
        if is_valid_file_id(&id) {
            Ok(Self(id))
        } else {
            Err(invalid_file_id())
        }
    }
}

fn invalid_file_id() -> ApiError {
    ApiError::invalid_request("The file id must be 1 to 128 letters, digits, '-' or '_'.")
}

/// Whether `id` looks like a Drive file id: 1 to 128 of `[A-Za-z0-9_-]`.
pub(crate) fn is_valid_file_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validates a Drive file name: 1 to 255 bytes, no control characters, no `/` or `\`, not `.` or `..`.
pub(crate) fn validate_file_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::invalid_request(
            "The file name must be 1 to 255 bytes long.",
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
        || name == "."
        || name == ".."
    {
        return Err(ApiError::invalid_request(
            "The file name must not contain control characters, '/' or '\\', nor be '.' or '..'.",
        ));
    }
    Ok(())
}

/// Parses the query string into `T`; any problem is 400 `invalid_request`.
pub(crate) fn query<T: DeserializeOwned>(parts: &Parts) -> Result<T, ApiError> {
    serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|_| ApiError::invalid_request("The query string is not valid for this request."))
}

/// Reads the whole body, refusing more than `limit` bytes with 413 (by `Content-Length` before reading, and while
/// reading for chunked bodies).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = e
            .into_inner()
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some();
        if too_large {
            ApiError::payload_too_large(limit)
        } else {
            ApiError::invalid_request("The request body could not be read.")
        }
    })
}

/// The media type of a request (`type/subtype`, lower-cased, parameters dropped), if any.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.is_empty() {
        None
    } else {
        Some(essence.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn file_ids_are_bounded_url_safe_tokens() {
        assert!(is_valid_file_id("1AbC_d-9"));
        assert!(is_valid_file_id(&"a".repeat(128)));
        for bad in ["", "..", "a/b", "a.b", "a b", "ä", "%2e%2e"] {
            assert!(!is_valid_file_id(bad), "{bad}");
        }
        assert!(!is_valid_file_id(&"a".repeat(129)));
    }

    #[test]
    fn file_names_refuse_traversal_control_and_oversize() {
        assert!(validate_file_name("notes.json").is_ok());
        assert!(validate_file_name("é".repeat(127).as_str()).is_ok());
        for bad in ["", ".", "..", "a/b", "..\\x", "a\nb", "a\u{0}b"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_file_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn bearer_parsing_accepts_one_well_formed_token_only() {
        let mut headers = HeaderMap::new();
        assert!(bearer_token(&headers).unwrap().is_none());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer aGVhZA.Ym9keQ.c2ln"),
        );
        assert!(bearer_token(&headers).unwrap().is_some());
        let not_bearer = BearerProblem::NotBearer.message();
        let malformed = BearerProblem::Malformed.message();
        for (bad, message) in [
            ("Basic dXNlcjpwYXNz", not_bearer),
            ("Token a.b.c", not_bearer),
            ("aGVhZA.Ym9keQ.c2ln", not_bearer),
            ("Bearer", malformed),
            ("Bearer ", malformed),
            ("Bearer a.b", malformed),
            ("Bearer a.b.c.d", malformed),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            let error = bearer_token(&headers).unwrap_err();
            assert_eq!(error.code, "invalid_token");
            assert_eq!(error.message, message, "{bad}");
        }
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer aGVhZA.Ym9keQ.c2ln"),
        );
        headers.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer aGVhZA.Ym9keQ.c2ln"),
        );
        assert_eq!(bearer_token(&headers).unwrap_err().message, malformed);
        assert_eq!(
            required_bearer_token(&HeaderMap::new())
                .unwrap_err()
                .message,
            BearerProblem::Missing.message()
        );
    }

    #[test]
    fn media_types_drop_parameters_and_case() {
        let mut headers = HeaderMap::new();
        assert_eq!(media_type(&headers), None);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(media_type(&headers).as_deref(), Some("application/json"));
    }
}
