//! `POST /authcode`: the Android app hands over a one-time server auth code.
//!
//! Order of checks, cheapest and safest first, so that nothing reaches Google unless every local check passed:
//! 1. `X-Requested-With` (CSRF) → 403 `missing_csrf_header`, before anything else is read;
//! 2. the per-client rate limit → 429 `rate_limited`;
//! 3. content type (form or JSON) → 415; body size → 413; body shape and the code → 400;
//! 4. an optional `Authorization: Bearer <ID token>` → 401 when present and not valid;
//! 5. the sign-in use case (exchange, verify, merge, store) on its own task.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use http::HeaderMap;
use offline_access_domain::{AuthCode, DRIVE_APPDATA_SCOPE, SignIn};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{HINT_REQUEST_OFFLINE_ACCESS_AGAIN, HINT_REQUEST_SCOPES, UserView, run_to_completion};
use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{authenticate, bearer_token, media_type, read_body};
use crate::ratelimit::client_ip;

/// The request body: form `authCode=...` (what the Android sample posts) or this JSON object.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct AuthCodeRequest {
    /// The one-time server auth code from `GoogleSignInAccount.getServerAuthCode()` (at most 2048 bytes).
    #[serde(rename = "authCode")]
    #[schema(example = "4/0AbCdEf...")]
    #[allow(dead_code)]
    pub(crate) auth_code: String,
}

/// A successful sign-in.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignInView {
    /// Who signed in.
    pub(crate) user: UserView,
    /// The scopes of the stored grant (short scopes in Google's URL form): a sign-in that asked for fewer keeps
    /// the earlier ones; incremental authorization adds to them.
    pub(crate) scopes: Vec<String>,
    /// Whether the server holds a refresh token and can act while the user is offline.
    pub(crate) offline_access: bool,
    /// Whether this user was not stored before.
    pub(crate) new_user: bool,
    /// Whether `drive.appdata` was granted, so the Drive routes can work.
    pub(crate) drive_available: bool,
    /// The grant's state after this sign-in: `active`, or `revoked` when an earlier grant was revoked and Google
    /// gave no new refresh token (the app must ask again with forced consent; see `hint`).
    #[schema(example = "active")]
    pub(crate) consent: &'static str,
    /// The scopes the product needs (`google.required_scopes`) that the grant lacks: the app should ask for them
    /// (incremental authorization widens the grant).
    pub(crate) missing_scopes: Vec<String>,
    /// `request_offline_access_again` when `offline_access` is false: the app should ask again with forced
    /// consent to get a refresh token; else `request_scopes` when `missing_scopes` is not empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "request_offline_access_again")]
    pub(crate) hint: Option<&'static str>,
}

impl SignInView {
    fn new(sign_in: &SignIn) -> Self {
        let offline_access = sign_in.offline_access();
        Self {
            user: UserView::new(&sign_in.subject, &sign_in.profile),
            scopes: sign_in.scopes.iter().map(str::to_owned).collect(),
            offline_access,
            new_user: sign_in.new_user,
            drive_available: sign_in.scopes.contains(DRIVE_APPDATA_SCOPE),
            consent: sign_in.consent.as_str(),
            missing_scopes: sign_in.missing_scopes.iter().map(str::to_owned).collect(),
            hint: if !offline_access {
                Some(HINT_REQUEST_OFFLINE_ACCESS_AGAIN)
            } else if !sign_in.missing_scopes.is_empty() {
                Some(HINT_REQUEST_SCOPES)
            } else {
                None
            },
        }
    }
}

/// Exchange a server auth code from the Android app.
#[utoipa::path(
    post,
    path = "/authcode",
    tag = "sign-in",
    request_body(
        description = "The server auth code, as a form (`authCode=...`) or as JSON.",
        content(
            (AuthCodeRequest = "application/x-www-form-urlencoded"),
            (AuthCodeRequest = "application/json"),
        )
    ),
    params(
        ("X-Requested-With" = String, Header, description = "Required, any non-empty value (CSRF protection)."),
        ("Authorization" = Option<String>, Header, description = "Optional `Bearer <Google ID token>` of the app's signed-in user; the code must belong to that user."),
    ),
    responses(
        (status = 200, description = "Signed in; the credential is stored.", body = SignInView),
        (status = 400, description = "`invalid_request` (missing, empty, oversized or malformed code or body), `invalid_grant` (Google rejected the code), `openid_scope_missing`.", body = ErrorBody),
        (status = 401, description = "`invalid_token`: the Bearer token is not a valid ID token for this server; the message says why (missing, not a Bearer, malformed, expired, another client ID, unknown key, signature or claims).", body = ErrorBody),
        (status = 403, description = "`missing_csrf_header`, or `subject_mismatch` (the code belongs to another user; nothing stored).", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not a form or JSON body.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sign-in attempts from this address.", body = ErrorBody),
        (status = 500, description = "`server_misconfigured`: Google refused this server's client configuration.", body = ErrorBody),
        (status = 502, description = "`upstream_error`: Google answered something unexpected.", body = ErrorBody),
        (status = 503, description = "`upstream_unavailable` or `store_unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn post_authcode(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<SignInView>, ApiError> {
    let result = sign_in(&state, request).await;
    let outcome = match &result {
        Ok(_) => "success",
        Err(e) => e.code,
    };
    metrics::counter!("offline_access_sign_ins_total", "outcome" => outcome).increment(1);
    result.map(|sign_in| Json(SignInView::new(&sign_in)))
}

async fn sign_in(state: &AppState, request: Request) -> Result<SignIn, ApiError> {
    let (parts, body) = request.into_parts();
    if !has_csrf_header(&parts.headers) {
        return Err(ApiError::missing_csrf_header());
    }
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = client_ip(peer, &parts.headers, &state.config.trusted_proxies);
    if let Err(wait) = state.limiter.check(client, tokio::time::Instant::now()) {
        tracing::info!("sign-in rate limit hit");
        return Err(ApiError::rate_limited(wait.as_secs().saturating_add(1)));
    }
    let kind = BodyKind::of(&parts.headers)?;
    let bytes = read_body(&parts.headers, body, state.config.body_limit).await?;
    let code = kind.parse_code(&bytes)?;
    let signed_in = match bearer_token(&parts.headers)? {
        Some(token) => Some(authenticate(state, &token).await?),
        None => None,
    };
    let service = Arc::clone(&state.service);
    run_to_completion(async move { service.sign_in(&code, signed_in.as_ref()).await })
        .await?
        .map_err(ApiError::from)
}

/// Whether the request carries a non-empty `X-Requested-With` (a header a cross-site form cannot set).
fn has_csrf_header(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-requested-with")
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().is_empty())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Form,
    Json,
}

impl BodyKind {
    fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let unsupported = || {
            ApiError::unsupported_media_type(
                "application/x-www-form-urlencoded (authCode=...) or application/json ({\"authCode\": \"...\"})",
            )
        };
        match media_type(headers).as_deref() {
            Some("application/x-www-form-urlencoded") => Ok(Self::Form),
            Some(t)
                if t == "application/json"
                    || (t.starts_with("application/") && t.ends_with("+json")) =>
            {
                Ok(Self::Json)
            }
            _ => Err(unsupported()),
        }
    }

    /// Finds `authCode` in the body and validates it. Never echoes the body.
    fn parse_code(self, body: &[u8]) -> Result<AuthCode, ApiError> {
        let missing = || ApiError::invalid_request("The authCode field is missing.");
        let raw: String = match self {
            Self::Form => {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                    .map_err(|_| ApiError::invalid_request("The form body is not valid."))?;
                let mut codes = pairs.into_iter().filter(|(k, _)| k == "authCode");
                let code = codes.next().ok_or_else(missing)?.1;
                if codes.next().is_some() {
                    return Err(ApiError::invalid_request(
                        "The authCode field must be given once.",
                    ));
                }
                code
            }
            Self::Json => {
                let value: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|_| ApiError::invalid_request("The body is not valid JSON."))?;
                let serde_json::Value::Object(mut object) = value else {
                    return Err(ApiError::invalid_request(
                        "The JSON body must be an object with an authCode string.",
                    ));
                };
                match object.remove("authCode") {
                    Some(serde_json::Value::String(code)) => code,
                    Some(_) => {
                        return Err(ApiError::invalid_request(
                            "The authCode field must be a string.",
                        ));
                    }
                    None => return Err(missing()),
                }
            }
        };
        AuthCode::try_from(raw).map_err(|e| ApiError::from_bad_code(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, header};
    use proptest::prelude::*;

    fn headers(content_type: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h
    }

    #[test]
    fn the_android_sample_form_body_is_understood() {
        let kind =
            BodyKind::of(&headers("application/x-www-form-urlencoded; charset=UTF-8")).unwrap();
        let code = kind.parse_code(b"authCode=4%2F0AbCd-xyz").unwrap();
        assert_eq!(code.expose_secret(), "4/0AbCd-xyz");
    }

    #[test]
    fn a_json_body_needs_an_object_with_a_string_code() {
        let kind = BodyKind::of(&headers("application/json")).unwrap();
        assert_eq!(
            kind.parse_code(br#"{"authCode":"4/0x"}"#)
                .unwrap()
                .expose_secret(),
            "4/0x"
        );
        for bad in [
            &b"[]"[..],
            b"42",
            b"\"4/0x\"",
            b"{}",
            br#"{"authCode":1}"#,
            b"",
            b"{",
        ] {
            assert_eq!(kind.parse_code(bad).unwrap_err().code, "invalid_request");
        }
    }

    #[test]
    fn control_characters_duplicates_and_empty_codes_are_refused() {
        let form = BodyKind::Form;
        for bad in [
            &b"authCode=4%2F0a%0Ab"[..],
            b"authCode=",
            b"authCode=a&authCode=b",
            b"code=x",
            b"authCode=a+b",
        ] {
            assert_eq!(form.parse_code(bad).unwrap_err().code, "invalid_request");
        }
    }

    #[test]
    fn other_media_types_are_unsupported() {
        for t in ["text/plain", "multipart/form-data", "application/jsonp"] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
            assert_eq!(BodyKind::of(&h).unwrap_err().code, "unsupported_media_type");
        }
        assert!(BodyKind::of(&HeaderMap::new()).is_err());
    }

    #[test]
    fn the_csrf_header_must_be_non_empty() {
        let mut h = HeaderMap::new();
        assert!(!has_csrf_header(&h));
        h.insert("x-requested-with", HeaderValue::from_static(" "));
        assert!(!has_csrf_header(&h));
        h.insert(
            "x-requested-with",
            HeaderValue::from_static("com.example.app"),
        );
        assert!(has_csrf_header(&h));
    }

    /// Pieces of form and JSON bodies, hostile and ordinary, for the fuzz target below.
    fn body_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"authCode=".to_vec()),
            Just(b"authCode".to_vec()),
            Just(b"&".to_vec()),
            Just(b"=".to_vec()),
            Just(b"%".to_vec()),
            Just(b"%00".to_vec()),
            Just(b"%2F".to_vec()),
            Just(b"%ff%fe".to_vec()),
            Just(b"+".to_vec()),
            Just(b"4/0AbCd-xyz".to_vec()),
            Just(br#"{"authCode":"#.to_vec()),
            Just(br#""4/0x""#.to_vec()),
            Just(b"}".to_vec()),
            Just(b"[".to_vec()),
            Just(br#"\u0000"#.to_vec()),
            Just(br#"\ud800"#.to_vec()),
            Just(b"\"".to_vec()),
            Just(b",".to_vec()),
            Just("\u{202e}é\u{0}".as_bytes().to_vec()),
            "[ -~]{0,40}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(Just(b'a'), 2040..2060),
        ]
    }

    /// Content types, well-formed and not.
    fn content_type() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"application/x-www-form-urlencoded".to_vec()),
            Just(b"application/x-www-form-urlencoded; charset=UTF-8".to_vec()),
            Just(b"APPLICATION/JSON".to_vec()),
            Just(b"application/vnd.api+json".to_vec()),
            Just(b"application/json;;;".to_vec()),
            Just(b";".to_vec()),
            Just(b"+json".to_vec()),
            "[ -~]{0,60}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..60),
        ]
    }

    proptest! {
        // Default 256 cases; `just fuzz` runs it with PROPTEST_CASES in the hundreds of thousands.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Fuzz target: any content type and any body assembled from hostile pieces either yields a valid code
        /// (what `AuthCode` accepts) or a 400 `invalid_request` / 415, and never panics.
        #[test]
        fn fuzz_authcode_content_type_and_body_parsing_never_panics(
            content_type in content_type(),
            pieces in proptest::collection::vec(body_piece(), 0..12),
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&content_type) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            let body = pieces.concat();
            match BodyKind::of(&headers) {
                Ok(kind) => match kind.parse_code(&body) {
                    Ok(code) => {
                        let raw = code.expose_secret();
                        prop_assert!(!raw.is_empty() && raw.len() <= 2048);
                        prop_assert!(!raw.chars().any(char::is_control));
                    }
                    Err(e) => prop_assert_eq!(e.code, "invalid_request"),
                },
                Err(e) => prop_assert_eq!(e.status, http::StatusCode::UNSUPPORTED_MEDIA_TYPE),
            }
        }
    }

    proptest! {
        #[test]
        fn parsing_any_body_never_panics_and_refuses_only_with_invalid_request(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            for kind in [BodyKind::Form, BodyKind::Json] {
                if let Err(e) = kind.parse_code(&body) {
                    prop_assert_eq!(e.code, "invalid_request");
                }
            }
        }
    }
}
