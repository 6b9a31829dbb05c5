//! The one error shape of the API, `{"error": "<code>", "message": "<one sentence>"}`, and the mapping of every
//! domain error to a status and code.
//!
//! Messages are fixed sentences written here: nothing a client or Google sent is ever echoed, so no token, code
//! or secret can leak through an error body. Details worth keeping (Google's error text, a store failure) are
//! logged, never returned.

use std::borrow::Cow;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use offline_access_domain::{
    AccessError, DriveUseError, ForgetError, SecretError, SignInError, StoreError, VerifyError,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable snake_case code (`invalid_grant`, `invalid_token`, `reconsent_required`, ...).
    #[schema(example = "invalid_token")]
    pub error: String,
    /// One sentence for a developer; never contains a token, code or secret.
    #[schema(
        example = "The bearer token has expired; Google ID tokens last one hour: get a fresh one and retry."
    )]
    pub message: String,
    /// With `scope_missing` from the internal API: the requested scopes the user's grant lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
}

/// An error response: status, code and message (plus the headers some codes need).
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: Cow<'static, str>,
    retry_after_secs: Option<u64>,
    missing: Option<Vec<String>>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            missing: None,
        }
    }

    /// Adds the `missing` scopes to the body.
    pub(crate) fn with_missing(mut self, missing: Vec<String>) -> Self {
        self.missing = Some(missing);
        self
    }

    pub(crate) fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    pub(crate) fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 `invalid_token` saying which [`BearerProblem`] it is (and nothing more).
    pub(crate) fn invalid_token(problem: BearerProblem) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", problem.message())
    }

    pub(crate) fn missing_csrf_header() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "missing_csrf_header",
            "The X-Requested-With header is required on this request.",
        )
    }

    pub(crate) fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "No such resource exists.",
        )
    }

    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    pub(crate) fn unsupported_media_type(expected: &'static str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("The request body must be {expected}."),
        )
    }

    pub(crate) fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests from this address; slow down and retry later.",
        )
        .with_retry_after(retry_after_secs)
    }

    pub(crate) fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "The request did not complete in time; try again.",
        )
    }

    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "The server failed to handle the request.",
        )
    }

    pub(crate) fn upstream_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
            "Google is unavailable right now; try again later.",
        )
    }

    fn upstream_error() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "Google answered something this server did not expect.",
        )
    }

    fn misconfigured() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_misconfigured",
            "Google refused this server's client configuration; an operator must fix it.",
        )
    }

    fn reconsent_required() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "reconsent_required",
            "The user's grant was revoked; the app must sign the user in again and ask for consent.",
        )
    }

    /// For a Bearer token that failed verification. The typed reason is logged; the answer names only its
    /// [`BearerProblem`].
    pub(crate) fn from_verify(error: &VerifyError, what: &'static str) -> Self {
        if *error == VerifyError::KeysUnavailable {
            tracing::warn!(
                reason = error.reason(),
                token = what,
                "Google's signing keys are unavailable"
            );
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "Google's signing keys are unavailable; try again later.",
            );
        }
        tracing::info!(reason = error.reason(), token = what, "ID token rejected");
        Self::invalid_token(BearerProblem::of(error))
    }

    /// For a value that failed the edge validation of a secret newtype (never echoes the value).
    pub(crate) fn from_bad_code(error: &SecretError) -> Self {
        let message = match error {
            SecretError::Empty { .. } => "The authCode is empty.",
            SecretError::TooLong { .. } => "The authCode is longer than 2048 bytes.",
            SecretError::BadCharacter { .. } | SecretError::Malformed { .. } => {
                "The authCode contains a character that is not allowed."
            }
        };
        Self::invalid_request(message)
    }
}

/// Why a request's Bearer ID token was refused, as far as the 401 answer tells the client.
///
/// The categories are what an app developer can act on, and each tells an attacker only what the token they sent
/// already shows them (its own `exp`, `aud` and `kid` are readable, Google's keys are public) or what they chose
/// themselves (the header). A token is never called expired, or of another audience, unless its signature verified
/// first; every other failed signature or claim check is the one undifferentiated [`BearerProblem::Invalid`]
/// (see docs/security.md, "What a 401 says").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BearerProblem {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header of another scheme (`Basic ...`), or with no scheme.
    NotBearer,
    /// Not exactly one header holding one JWT-shaped token (segments, base64url, JSON, size).
    Malformed,
    /// Signed by Google, but `exp` is past (with the leeway).
    Expired,
    /// Signed by Google for another client ID than this server's (`aud`).
    WrongAudience,
    /// A `kid` Google does not publish (or none).
    UnknownKey,
    /// Any other failed check: the algorithm, the signature, the issuer, `azp`, `hd`, `iat`, the lifetime, a claim.
    Invalid,
}

impl BearerProblem {
    /// Every problem, for tests and documentation.
    #[cfg(test)]
    pub(crate) const ALL: [Self; 7] = [
        Self::Missing,
        Self::NotBearer,
        Self::Malformed,
        Self::Expired,
        Self::WrongAudience,
        Self::UnknownKey,
        Self::Invalid,
    ];

    /// The category of a verifier's typed reason.
    pub(crate) fn of(error: &VerifyError) -> Self {
        match error {
            VerifyError::Malformed(_) => Self::Malformed,
            VerifyError::Expired => Self::Expired,
            VerifyError::WrongAudience => Self::WrongAudience,
            VerifyError::UnknownKey => Self::UnknownKey,
            VerifyError::UnsupportedAlgorithm
            | VerifyError::BadSignature
            | VerifyError::WrongIssuer
            | VerifyError::DisallowedAuthorizedParty
            | VerifyError::IssuedInFuture
            | VerifyError::LifetimeTooLong
            | VerifyError::BadClaim(_)
            | VerifyError::WrongHostedDomain
            | VerifyError::KeysUnavailable => Self::Invalid,
        }
    }

    /// The answer's one sentence. It is also the `error_description` of `WWW-Authenticate`, so it holds no `"`
    /// or `\` (RFC 6750 §3).
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Missing => {
                "The Authorization header is missing; send Authorization: Bearer <the user's Google ID token>."
            }
            Self::NotBearer => {
                "The Authorization header is not a Bearer token; send Authorization: Bearer <the user's Google ID token>."
            }
            Self::Malformed => {
                "The bearer token is malformed: send one Authorization header holding one Google ID token (a JWT)."
            }
            Self::Expired => {
                "The bearer token has expired; Google ID tokens last one hour: get a fresh one and retry."
            }
            Self::WrongAudience => {
                "The bearer token was issued for another client ID; request the ID token for this server's web client ID."
            }
            Self::UnknownKey => {
                "The bearer token is signed with a key Google does not publish; get a fresh ID token from Google."
            }
            Self::Invalid => {
                "The bearer token's signature or claims are not valid for this server."
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body_message = self.message.clone();
        let body = ErrorBody {
            error: self.code.to_owned(),
            message: self.message.into_owned(),
            missing: self.missing,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, bearer_challenge(&body_message));
        }
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// `Bearer error="invalid_token", error_description="<message>"`; without the description if the message could
/// not be one (our messages always can: see the tests).
fn bearer_challenge(message: &str) -> HeaderValue {
    let describable = message
        .bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\');
    describable
        .then(|| {
            HeaderValue::from_str(&format!(
                r#"Bearer error="invalid_token", error_description="{message}""#
            ))
            .ok()
        })
        .flatten()
        .unwrap_or_else(|| HeaderValue::from_static(r#"Bearer error="invalid_token""#))
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Corrupt { .. } => {
                tracing::error!(error = %error, "stored credential cannot be read");
                Self::internal()
            }
            _ => {
                tracing::warn!(error = %error, "credential store failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "The credential store is unavailable; try again later.",
                )
            }
        }
    }
}

impl From<SignInError> for ApiError {
    fn from(error: SignInError) -> Self {
        match error {
            SignInError::InvalidCode => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Google rejected the authorization code (used, expired or unknown); get a new one.",
            ),
            SignInError::SubjectMismatch => Self::new(
                StatusCode::FORBIDDEN,
                "subject_mismatch",
                "The authorization code belongs to another user than the signed-in one.",
            ),
            // Not a Bearer error: the request may have sent no Bearer at all. The ID token at fault is Google's.
            SignInError::InvalidIdToken(VerifyError::KeysUnavailable) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "Google's signing keys are unavailable; try again later.",
            ),
            SignInError::InvalidIdToken(reason) => {
                tracing::warn!(
                    reason = reason.reason(),
                    "the ID token Google returned for a code failed verification"
                );
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_invalid_id_token",
                    "The ID token Google returned for this code failed verification; nothing was stored.",
                )
            }
            SignInError::RedirectUriMismatch => {
                tracing::info!(
                    "Google refused a code for its redirect URI (redirect_uri_mismatch)"
                );
                Self::new(
                    StatusCode::BAD_REQUEST,
                    "redirect_uri_mismatch",
                    "The code was issued for another redirect URI than this server uses (an Android code needs \
                     google.redirect_uri \"\", a Google Identity Services popup code \"postmessage\"); get a code of the right kind.",
                )
            }
            SignInError::MissingIdToken => Self::new(
                StatusCode::BAD_REQUEST,
                "openid_scope_missing",
                "Google returned no ID token; the app must request the openid scope.",
            ),
            SignInError::Misconfigured(detail) => {
                tracing::error!(detail = %detail, "Google refused this server's client configuration on a code exchange");
                Self::misconfigured()
            }
            SignInError::UpstreamUnavailable => Self::upstream_unavailable(),
            SignInError::Upstream(detail) => {
                tracing::warn!(detail = %detail, "unexpected answer from Google's token endpoint");
                Self::upstream_error()
            }
            SignInError::Store(e) => e.into(),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::NotFound => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "No credential is stored for this user; sign in with a server auth code first.",
            ),
            AccessError::ReconsentRequired => Self::reconsent_required(),
            AccessError::AccountDisabled => Self::new(
                StatusCode::FORBIDDEN,
                "account_disabled",
                "Google disabled this account; no token is used until Google enables it again or the user signs in.",
            ),
            AccessError::NoOfflineAccess => Self::new(
                StatusCode::CONFLICT,
                "reconsent_required",
                "No refresh token is stored for this user; the app must request offline access again with consent.",
            ),
            AccessError::ScopeMissing(missing) => Self::new(
                StatusCode::FORBIDDEN,
                "scope_missing",
                "The user did not grant every scope this request needs; the app must ask for them.",
            )
            .with_missing(missing.iter().map(str::to_owned).collect()),
            AccessError::Misconfigured(detail) => {
                tracing::error!(detail = %detail, "Google refused this server's client credentials on a refresh");
                Self::misconfigured()
            }
            AccessError::UpstreamUnavailable => Self::upstream_unavailable(),
            AccessError::Upstream(detail) => {
                tracing::warn!(detail = %detail, "unexpected answer from Google's token endpoint");
                Self::upstream_error()
            }
            AccessError::Store(e) => e.into(),
        }
    }
}

impl From<DriveUseError> for ApiError {
    fn from(error: DriveUseError) -> Self {
        match error {
            DriveUseError::Access(e) => e.into(),
            DriveUseError::ScopeMissing => Self::new(
                StatusCode::FORBIDDEN,
                "scope_missing",
                "The user did not grant Drive access; the app must request the https://www.googleapis.com/auth/drive.appdata scope.",
            ),
            DriveUseError::NotFound => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "Drive has no such file for this user.",
            ),
            DriveUseError::Unauthorized => {
                tracing::warn!("Drive refused the access token even after a refresh");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "Drive refused this user's access token even after a refresh.",
                )
            }
            DriveUseError::RateLimited => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Drive is rate-limiting this user; retry later.",
            )
            .with_retry_after(5),
            DriveUseError::BadRequest(detail) => {
                tracing::info!(detail = %detail, "Drive refused a request as malformed");
                Self::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Drive refused the request as malformed.",
                )
            }
            DriveUseError::Forbidden(detail) => {
                tracing::info!(detail = %detail, "Drive forbade an operation");
                Self::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "Drive does not allow this operation.",
                )
            }
            DriveUseError::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "Drive is unavailable right now; try again later.",
            ),
            DriveUseError::Upstream(detail) => {
                tracing::warn!(detail = %detail, "unexpected answer from Drive");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "Drive answered something this server did not expect.",
                )
            }
        }
    }
}

impl From<ForgetError> for ApiError {
    fn from(error: ForgetError) -> Self {
        match error {
            ForgetError::NotFound => AccessError::NotFound.into(),
            ForgetError::Store(e) => e.into(),
        }
    }
}

/// A JSON error body for a bare status (used to replace axum's plain-text or empty error responses).
pub(crate) fn for_status(status: StatusCode) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::not_found(),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            "This method is not allowed on this path.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "payload_too_large",
            "The request body is too large.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "unsupported_media_type",
            "The request body has an unsupported content type.",
        ),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ApiError::timeout(),
        StatusCode::UNAUTHORIZED => ApiError::invalid_token(BearerProblem::Invalid),
        StatusCode::TOO_MANY_REQUESTS => ApiError::rate_limited(1),
        s if s.is_client_error() => ApiError::invalid_request("The request is not valid."),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::new(
            status,
            "unavailable",
            "The server cannot handle the request right now; try again later.",
        ),
        _ => ApiError::internal(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sign_in_error_maps_to_a_snake_case_code_and_a_sentence() {
        let errors = [
            SignInError::InvalidCode,
            SignInError::SubjectMismatch,
            SignInError::InvalidIdToken(VerifyError::Expired),
            SignInError::InvalidIdToken(VerifyError::KeysUnavailable),
            SignInError::MissingIdToken,
            SignInError::Misconfigured("x".into()),
            SignInError::UpstreamUnavailable,
            SignInError::Upstream("x".into()),
            SignInError::Store(StoreError::Unavailable("x".into())),
        ];
        for e in errors {
            let api = ApiError::from(e);
            assert!(
                api.code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert!(api.message.ends_with('.'));
            assert!(api.status.is_client_error() || api.status.is_server_error());
        }
    }

    #[test]
    fn a_bearer_failure_says_its_category_and_never_which_claim_or_signature_check() {
        let message = |e: VerifyError| ApiError::from_verify(&e, "bearer").message;
        assert!(message(VerifyError::Expired).contains("expired"));
        assert!(message(VerifyError::WrongAudience).contains("another client ID"));
        assert!(message(VerifyError::UnknownKey).contains("key Google does not publish"));
        assert!(message(VerifyError::Malformed("header is not base64url")).contains("malformed"));
        // Every other signature or claim failure gets one and the same sentence, naming no claim.
        let others = [
            VerifyError::UnsupportedAlgorithm,
            VerifyError::BadSignature,
            VerifyError::WrongIssuer,
            VerifyError::DisallowedAuthorizedParty,
            VerifyError::IssuedInFuture,
            VerifyError::LifetimeTooLong,
            VerifyError::BadClaim("email"),
            VerifyError::WrongHostedDomain,
        ];
        for e in others {
            let reason = e.reason();
            let text = message(e);
            assert_eq!(text, BearerProblem::Invalid.message(), "{reason}");
            for word in [
                "email",
                "iss",
                "azp",
                "hd",
                "iat",
                "exp",
                "lifetime",
                "algorithm",
                "RS256",
            ] {
                assert!(!text.contains(word), "{reason}: {word} in {text:?}");
            }
        }
        // The detail of a malformed token is logged, never answered.
        assert!(!message(VerifyError::Malformed("header is not base64url")).contains("header is"));
    }

    #[test]
    fn every_bearer_problem_has_its_own_sentence_usable_as_an_error_description() {
        let mut seen = std::collections::HashSet::new();
        for problem in BearerProblem::ALL {
            let response = ApiError::invalid_token(problem).into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let challenge = response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap();
            assert_eq!(
                challenge,
                format!(
                    r#"Bearer error="invalid_token", error_description="{}""#,
                    problem.message()
                ),
                "{problem:?}"
            );
            assert!(problem.message().ends_with('.'));
            assert!(
                seen.insert(problem.message()),
                "{problem:?} shares its sentence"
            );
        }
        // A sentence that could not be a quoted-string keeps the bare challenge.
        assert_eq!(
            bearer_challenge("say \"hi\""),
            HeaderValue::from_static(r#"Bearer error="invalid_token""#)
        );
    }
}
