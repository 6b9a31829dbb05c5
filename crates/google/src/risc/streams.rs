//! The RISC stream management API (`risc.googleapis.com/v1beta/stream...`), called with a service-account JWT:
//! what `offline-access risc register` and `risc status` use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use offline_access_domain::risc::SUPPORTED_EVENT_TYPES;
use offline_access_domain::{Clock, SystemClock};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::config::{ConfigError, Endpoints, GoogleConfig, unquoted};
use crate::http::{self, Failure};
use crate::risc::bounded;

/// The `aud` of a service-account JWT for the RISC management API.
pub const RISC_AUDIENCE: &str =
    "https://risc.googleapis.com/google.identity.risc.v1beta.RiscManagementService";
/// The only delivery method Google supports: pushes to an HTTPS receiver.
pub const PUSH_DELIVERY_METHOD: &str =
    "https://schemas.openid.net/secevent/risc/delivery-method/push";
/// How long a service-account JWT is valid (Google accepts at most one hour).
pub const SERVICE_ACCOUNT_JWT_LIFETIME: time::Duration = time::Duration::hours(1);
/// Largest answer read from the RISC API.
const MAX_ANSWER: usize = 64 * 1024;
/// Longest part of Google's error message passed on.
const MAX_MESSAGE_CHARS: usize = 500;

/// Why a service-account key file was refused. Never quotes the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceAccountError {
    /// The file could not be read.
    #[error("cannot read the service-account key file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong (an I/O error kind).
        reason: String,
    },
    /// The JSON is not a Google service-account key.
    #[error("the service-account key file is invalid: {0}")]
    Invalid(String),
}

/// A Google service-account key (the JSON file the Cloud console downloads). `Debug` shows no key.
#[derive(Clone)]
pub struct ServiceAccountKey {
    client_email: String,
    private_key_id: String,
    project_id: Option<String>,
    key: EncodingKey,
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key_id: Option<String>,
    private_key: Option<SecretString>,
    project_id: Option<String>,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("project_id", &self.project_id)
            .field("private_key", &"[REDACTED]")
            .finish()
    }
}

#[derive(Serialize)]
struct AccountClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'static str,
    iat: i64,
    exp: i64,
}

impl ServiceAccountKey {
    /// Parses a key file's JSON: `type` `service_account`, `client_email`, `private_key_id` and `private_key`
    /// (an RSA key in PEM), which must be able to sign.
    ///
    /// # Errors
    /// [`ServiceAccountError::Invalid`] naming the missing or bad member.
    pub fn from_json(json: &str) -> Result<Self, ServiceAccountError> {
        let invalid = |why: &str| ServiceAccountError::Invalid(why.to_owned());
        let file: KeyFile =
            serde_json::from_str(json).map_err(|e| ServiceAccountError::Invalid(unquoted(&e)))?;
        if file.kind.as_deref() != Some("service_account") {
            return Err(invalid("`type` is not \"service_account\""));
        }
        let client_email = file
            .client_email
            .filter(|e| e.contains('@') && !e.chars().any(char::is_whitespace))
            .ok_or_else(|| invalid("`client_email` is missing or not an e-mail address"))?;
        let private_key_id = file
            .private_key_id
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| invalid("`private_key_id` is missing or empty"))?;
        let pem = file
            .private_key
            .ok_or_else(|| invalid("`private_key` is missing"))?;
        let key = EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
            .map_err(|_| invalid("`private_key` is not an RSA private key in PEM"))?;
        // Sign once now, so that a key that cannot sign is refused here rather than at the first call.
        jsonwebtoken::crypto::sign(b"probe", &key, Algorithm::RS256)
            .map_err(|_| invalid("`private_key` cannot sign with RS256"))?;
        Ok(Self {
            client_email,
            private_key_id,
            project_id: file.project_id,
            key,
        })
    }

    /// Reads and parses a key file.
    ///
    /// # Errors
    /// [`ServiceAccountError::Read`] when the file cannot be read; otherwise as [`ServiceAccountKey::from_json`].
    pub fn from_file(path: &Path) -> Result<Self, ServiceAccountError> {
        let json = std::fs::read_to_string(path).map_err(|e| ServiceAccountError::Read {
            path: path.to_owned(),
            reason: e.kind().to_string(),
        })?;
        Self::from_json(&json)
    }

    /// The service account's e-mail (`iss` and `sub` of its JWTs).
    #[must_use]
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The key's id (`kid` of its JWTs).
    #[must_use]
    pub fn private_key_id(&self) -> &str {
        &self.private_key_id
    }

    /// The Cloud project, when the file names it.
    #[must_use]
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// The Bearer for the RISC API: RS256 with `kid` = the key id; `iss` = `sub` = the e-mail, `aud` =
    /// [`RISC_AUDIENCE`], `iat` = `now`, `exp` = `now` + one hour.
    ///
    /// # Errors
    /// [`RiscApiError::Signing`].
    pub fn risc_jwt(&self, now: OffsetDateTime) -> Result<String, RiscApiError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.private_key_id.clone());
        let claims = AccountClaims {
            iss: &self.client_email,
            sub: &self.client_email,
            aud: RISC_AUDIENCE,
            iat: now.unix_timestamp(),
            exp: (now + SERVICE_ACCOUNT_JWT_LIFETIME).unix_timestamp(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| RiscApiError::Signing(e.to_string()))
    }
}

/// Why a call to the RISC API failed. Never holds the Bearer or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RiscApiError {
    /// Google answered with its JSON error (`{"error": {"code", "message", "status"}}`).
    #[error("Google's RISC API answered HTTP {code} {status}: {message}")]
    Google {
        /// The HTTP status.
        code: u16,
        /// Google's status name (`PERMISSION_DENIED`, `INVALID_ARGUMENT`, ...), or empty.
        status: String,
        /// Google's message (at most 500 characters, control characters replaced).
        message: String,
    },
    /// A non-2xx answer without Google's error body.
    #[error("Google's RISC API answered HTTP {0}")]
    Status(u16),
    /// A 2xx answer that is not the expected JSON.
    #[error("Google's RISC API answered something unexpected: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("Google's RISC API did not answer in time")]
    Timeout,
    /// Connection refused, reset, DNS or TLS failure.
    #[error("Google's RISC API could not be reached")]
    Unreachable,
    /// The receiver URL given is not an absolute http(s) URL.
    #[error("the receiver URL is invalid: {0}")]
    InvalidUrl(String),
    /// The service-account JWT could not be signed.
    #[error("cannot sign the service-account JWT: {0}")]
    Signing(String),
}

/// A stream's configuration as Google reports it (`GET /v1beta/stream`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StreamConfig {
    /// Where events are pushed.
    #[serde(default)]
    pub delivery: Option<Delivery>,
    /// The event types asked for.
    #[serde(default, alias = "eventsRequested")]
    pub events_requested: Vec<String>,
    /// The event types Google will send (when it says).
    #[serde(default, alias = "eventsDelivered")]
    pub events_delivered: Vec<String>,
}

/// A stream's delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Delivery {
    /// The delivery method ([`PUSH_DELIVERY_METHOD`]).
    #[serde(default, alias = "deliveryMethod")]
    pub delivery_method: String,
    /// The receiver's URL.
    #[serde(default)]
    pub url: String,
}

/// Whether Google sends events on the stream (`GET /v1beta/stream/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    /// `enabled`.
    Enabled,
    /// `disabled`.
    Disabled,
    /// Another value Google may add, as sent.
    Other(String),
}

impl StreamStatus {
    fn parse(value: &str) -> Self {
        if value.eq_ignore_ascii_case("enabled") {
            Self::Enabled
        } else if value.eq_ignore_ascii_case("disabled") {
            Self::Disabled
        } else {
            Self::Other(value.to_owned())
        }
    }
}

impl fmt::Display for StreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Enabled => f.write_str("enabled"),
            Self::Disabled => f.write_str("disabled"),
            Self::Other(other) => f.write_str(other),
        }
    }
}

#[derive(Deserialize)]
struct StatusAnswer {
    status: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

/// The RISC stream management API for one service account (Google's `https://risc.googleapis.com`, or
/// `google.base_url` when set).
pub struct RiscStreams {
    http: reqwest::Client,
    base: String,
    account: ServiceAccountKey,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RiscStreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RiscStreams")
            .field("base", &self.base)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl RiscStreams {
    /// A client for the RISC API under `config`'s hosts, timeouts and CA, signing as `account` with the system
    /// clock.
    ///
    /// # Errors
    /// [`ConfigError`] for a bad `base_url` or CA, or a TLS set-up failure.
    pub fn new(config: &GoogleConfig, account: ServiceAccountKey) -> Result<Self, ConfigError> {
        let endpoints = Endpoints::resolve(config.base_url.as_deref())?;
        Ok(Self {
            http: http::build_client(config)?,
            base: endpoints.risc_api,
            account,
            clock: Arc::new(SystemClock),
        })
    }

    /// The same, with `clock` giving the JWTs' `iat`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The service account calling.
    #[must_use]
    pub fn account(&self) -> &ServiceAccountKey {
        &self.account
    }

    /// `POST /v1beta/stream:update`: pushes to `receiver_url` every event type this server acts on
    /// ([`SUPPORTED_EVENT_TYPES`]).
    ///
    /// # Errors
    /// [`RiscApiError`].
    pub async fn update(&self, receiver_url: &str) -> Result<(), RiscApiError> {
        let url =
            url::Url::parse(receiver_url).map_err(|e| RiscApiError::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(RiscApiError::InvalidUrl(
                "it must be an absolute https URL".into(),
            ));
        }
        let body = json!({
            "delivery": {"delivery_method": PUSH_DELIVERY_METHOD, "url": receiver_url},
            "events_requested": SUPPORTED_EVENT_TYPES,
        });
        self.call(reqwest::Method::POST, "/v1beta/stream:update", Some(&body))
            .await
            .map(drop)
    }

    /// `POST /v1beta/stream:verify`: Google sends a `verification` event carrying `state` to the receiver.
    ///
    /// # Errors
    /// [`RiscApiError`].
    pub async fn verify(&self, state: &str) -> Result<(), RiscApiError> {
        let body = json!({ "state": state });
        self.call(reqwest::Method::POST, "/v1beta/stream:verify", Some(&body))
            .await
            .map(drop)
    }

    /// `GET /v1beta/stream`: the stream's configuration.
    ///
    /// # Errors
    /// [`RiscApiError`].
    pub async fn config(&self) -> Result<StreamConfig, RiscApiError> {
        let answer = self
            .call(reqwest::Method::GET, "/v1beta/stream", None)
            .await?;
        parse_answer(&answer)
    }

    /// `GET /v1beta/stream/status`: whether Google sends events.
    ///
    /// # Errors
    /// [`RiscApiError`].
    pub async fn status(&self) -> Result<StreamStatus, RiscApiError> {
        let answer = self
            .call(reqwest::Method::GET, "/v1beta/stream/status", None)
            .await?;
        parse_answer::<StatusAnswer>(&answer)?
            .status
            .map(|s| StreamStatus::parse(&s))
            .ok_or_else(|| RiscApiError::Protocol("the answer has no status".into()))
    }

    /// `POST /v1beta/stream/status:update`: turns sending on or off; the status Google then reports.
    ///
    /// # Errors
    /// [`RiscApiError`].
    pub async fn set_status(&self, enabled: bool) -> Result<StreamStatus, RiscApiError> {
        let body = json!({ "status": if enabled { "enabled" } else { "disabled" } });
        let answer = self
            .call(
                reqwest::Method::POST,
                "/v1beta/stream/status:update",
                Some(&body),
            )
            .await?;
        // Google may answer `{}`: then the status is the one asked for.
        Ok(match parse_answer::<StatusAnswer>(&answer)?.status {
            Some(status) => StreamStatus::parse(&status),
            None if enabled => StreamStatus::Enabled,
            None => StreamStatus::Disabled,
        })
    }

    /// One call with a fresh service-account JWT; the body of a 2xx answer.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<bytes::Bytes, RiscApiError> {
        let jwt = self.account.risc_jwt(self.clock.now())?;
        let mut bearer = HeaderValue::try_from(format!("Bearer {jwt}"))
            .map_err(|_| RiscApiError::Signing("the JWT is not a header value".into()))?;
        bearer.set_sensitive(true);
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(AUTHORIZATION, bearer);
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let answer = match http::send(request, MAX_ANSWER).await {
            Ok(answer) => answer,
            Err(failure) => {
                let (outcome, error) = match failure {
                    Failure::Timeout => ("timeout", RiscApiError::Timeout),
                    Failure::Unreachable => ("unavailable", RiscApiError::Unreachable),
                    Failure::TooLarge => (
                        "protocol",
                        RiscApiError::Protocol("the answer is too large".into()),
                    ),
                };
                http::record("risc_api", outcome, started);
                return Err(error);
            }
        };
        if answer.status.is_success() {
            http::record("risc_api", "ok", started);
            return Ok(answer.body);
        }
        http::record("risc_api", "error", started);
        let code = answer.status.as_u16();
        Err(match serde_json::from_slice::<ErrorAnswer>(&answer.body) {
            Ok(ErrorAnswer { error }) => RiscApiError::Google {
                code: error.code.unwrap_or(code),
                status: bounded(&error.status, 64),
                message: bounded(&error.message, MAX_MESSAGE_CHARS),
            },
            Err(_) => RiscApiError::Status(code),
        })
    }
}

/// A 2xx answer's JSON (an empty body reads as `{}`).
fn parse_answer<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, RiscApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| RiscApiError::Protocol(format!("{:?} error in its JSON", e.classify())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_in_any_case_and_unknown_ones_kept() {
        assert_eq!(StreamStatus::parse("enabled"), StreamStatus::Enabled);
        assert_eq!(StreamStatus::parse("DISABLED"), StreamStatus::Disabled);
        assert_eq!(
            StreamStatus::parse("paused"),
            StreamStatus::Other("paused".into())
        );
        assert_eq!(StreamStatus::Enabled.to_string(), "enabled");
    }

    #[test]
    fn malformed_key_files_are_refused_without_quoting_them() {
        for bad in [
            r#"{"type":"authorized_user","client_email":"a@b","private_key_id":"k","private_key":"canary"}"#,
            r#"{"type":"service_account","private_key_id":"k","private_key":"canary"}"#,
            r#"{"type":"service_account","client_email":"nope","private_key_id":"k","private_key":"canary"}"#,
            r#"{"type":"service_account","client_email":"a@b","private_key":"canary"}"#,
            r#"{"type":"service_account","client_email":"a@b","private_key_id":"k"}"#,
            r#"{"type":"service_account","client_email":"a@b","private_key_id":"k","private_key":"canary"}"#,
            r#"{"type":"service_account","client_email":"a@b","private_key_id":"k","private_key":"-----BEGIN PRIVATE KEY-----\nY2FuYXJ5\n-----END PRIVATE KEY-----\n"}"#,
            r#"{"type":"service_account","private_key":"canary"#,
            "[]",
        ] {
            let err = ServiceAccountKey::from_json(bad).unwrap_err();
            assert!(matches!(err, ServiceAccountError::Invalid(_)), "{bad}");
            assert!(!err.to_string().contains("canary"), "{err}");
        }
    }
}
