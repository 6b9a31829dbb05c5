//! Google's OAuth 2.0 token endpoint (code exchange, refresh) and revocation endpoint.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use offline_access_domain::{
    AccessToken, AuthCode, IdToken, RefreshToken, RevokeError, Scopes, TokenEndpoint, TokenError,
    TokenResponse,
};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::Instrument;
use url::Url;

use crate::http::{self, Answer, Failure};

/// Largest token-endpoint answer we read (Google's are about 2 KiB).
const MAX_TOKEN_BODY: usize = 64 * 1024;
/// Longest `expires_in` we believe (Google's access tokens live one hour).
const MAX_EXPIRES_IN: u64 = 366 * 24 * 3600;

/// Google's token and revoke endpoints ([`TokenEndpoint`]), client authentication by form fields
/// (`client_secret_post`).
pub struct GoogleTokens {
    pub(crate) http: reqwest::Client,
    pub(crate) token_url: Url,
    pub(crate) revoke_url: Url,
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) redirect_uri: String,
}

impl std::fmt::Debug for GoogleTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleTokens")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl GoogleTokens {
    async fn post_token(
        &self,
        endpoint: &'static str,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, TokenError> {
        let started = Instant::now();
        let request = self.http.post(self.token_url.clone()).form(form);
        let result = match http::send(request, MAX_TOKEN_BODY).await {
            Ok(answer) => interpret_token_answer(&answer),
            Err(Failure::Timeout) => Err(TokenError::Timeout),
            Err(Failure::Unreachable) => Err(TokenError::Unavailable { retry_after: None }),
            Err(Failure::TooLarge) => Err(TokenError::Protocol("answer too large".into())),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => token_outcome(e),
        };
        http::record(endpoint, outcome, started);
        match &result {
            Ok(_) => tracing::debug!(outcome, "token endpoint answered"),
            Err(e) => tracing::warn!(outcome, error = %e, "token endpoint call failed"),
        }
        result
    }
}

#[async_trait]
impl TokenEndpoint for GoogleTokens {
    async fn exchange_code(&self, code: &AuthCode) -> Result<TokenResponse, TokenError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
            ("redirect_uri", self.redirect_uri.as_str()),
        ];
        self.post_token("token_exchange", &form)
            .instrument(tracing::info_span!(
                "google.token",
                grant_type = "authorization_code"
            ))
            .await
    }

    async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenResponse, TokenError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        self.post_token("token_refresh", &form)
            .instrument(tracing::info_span!(
                "google.token",
                grant_type = "refresh_token"
            ))
            .await
    }

    async fn revoke(&self, token: &RefreshToken) -> Result<(), RevokeError> {
        let span = tracing::info_span!("google.revoke");
        async {
            let started = Instant::now();
            let request = self
                .http
                .post(self.revoke_url.clone())
                .form(&[("token", token.expose_secret())]);
            let result = match http::send(request, MAX_TOKEN_BODY).await {
                Ok(answer) => interpret_revoke_answer(&answer),
                Err(Failure::Timeout | Failure::Unreachable) => Err(RevokeError::Unavailable),
                Err(Failure::TooLarge) => Err(RevokeError::Protocol("answer too large".into())),
            };
            let outcome = match &result {
                Ok(()) => "ok",
                Err(RevokeError::AlreadyRevoked) => "already_revoked",
                Err(RevokeError::Unavailable) => "unavailable",
                Err(RevokeError::Protocol(_)) => "protocol",
            };
            http::record("revoke", outcome, started);
            tracing::debug!(outcome, "revoke endpoint answered");
            result
        }
        .instrument(span)
        .await
    }
}

fn token_outcome(error: &TokenError) -> &'static str {
    match error {
        TokenError::InvalidGrant => "invalid_grant",
        TokenError::InvalidClient(_) => "invalid_client",
        TokenError::Rejected(_) => "rejected",
        TokenError::Unavailable { .. } => "unavailable",
        TokenError::Timeout => "timeout",
        TokenError::Protocol(_) => "protocol",
    }
}

/// Google's OAuth error body (RFC 6749 §5.2). `error_description` is read by no one: it is never passed on.
#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

/// The success body (RFC 6749 §5.1), strict on the fields we use; unknown fields are allowed.
#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: String,
    expires_in: serde_json::Value,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
}

pub(crate) fn interpret_token_answer(answer: &Answer) -> Result<TokenResponse, TokenError> {
    let status = answer.status;
    if status == StatusCode::OK {
        return parse_token_response(&answer.body);
    }
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        return Err(TokenError::Unavailable {
            retry_after: http::retry_after(&answer.headers),
        });
    }
    let code = serde_json::from_slice::<OAuthError>(&answer.body)
        .ok()
        .map(|e| e.error);
    match (status, code.as_deref()) {
        (_, Some("invalid_grant")) => Err(TokenError::InvalidGrant),
        (_, Some(code @ ("invalid_client" | "unauthorized_client"))) => {
            Err(TokenError::InvalidClient(code.to_owned()))
        }
        (StatusCode::UNAUTHORIZED, _) => Err(TokenError::InvalidClient("unauthorized".into())),
        (s, Some(code)) if s.is_client_error() => {
            Err(TokenError::Rejected(http::sanitize_code(code)))
        }
        (s, _) => Err(TokenError::Protocol(format!(
            "unexpected HTTP status {}",
            s.as_u16()
        ))),
    }
}

fn parse_token_response(body: &[u8]) -> Result<TokenResponse, TokenError> {
    let raw: RawTokenResponse = serde_json::from_slice(body).map_err(|e| {
        TokenError::Protocol(format!(
            "token response is not the expected JSON ({:?})",
            e.classify()
        ))
    })?;
    if let Some(token_type) = &raw.token_type
        && !token_type.eq_ignore_ascii_case("bearer")
    {
        return Err(TokenError::Protocol("token_type is not Bearer".into()));
    }
    let expires_in = match &raw.expires_in {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .filter(|secs| *secs <= MAX_EXPIRES_IN),
        _ => None,
    }
    .ok_or_else(|| TokenError::Protocol("expires_in is not a number of seconds".into()))?;
    let protocol = |field: &str, e: &dyn std::fmt::Display| {
        TokenError::Protocol(format!("{field} is invalid: {e}"))
    };
    let access_token =
        AccessToken::try_from(raw.access_token).map_err(|e| protocol("access_token", &e))?;
    let refresh_token = raw
        .refresh_token
        .map(RefreshToken::try_from)
        .transpose()
        .map_err(|e| protocol("refresh_token", &e))?;
    let id_token = raw
        .id_token
        .map(IdToken::try_from)
        .transpose()
        .map_err(|e| protocol("id_token", &e))?;
    let scopes = raw
        .scope
        .as_deref()
        .map(Scopes::parse)
        .transpose()
        .map_err(|e| protocol("scope", &e))?;
    Ok(TokenResponse {
        access_token,
        expires_in: Duration::from_secs(expires_in),
        refresh_token,
        id_token,
        scopes,
    })
}

pub(crate) fn interpret_revoke_answer(answer: &Answer) -> Result<(), RevokeError> {
    let status = answer.status;
    if status.is_success() {
        return Ok(());
    }
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        return Err(RevokeError::Unavailable);
    }
    let code = serde_json::from_slice::<OAuthError>(&answer.body)
        .ok()
        .map(|e| e.error);
    match code.as_deref() {
        Some("invalid_token") => Err(RevokeError::AlreadyRevoked),
        Some(code) => Err(RevokeError::Protocol(format!(
            "HTTP {} {}",
            status.as_u16(),
            http::sanitize_code(code)
        ))),
        None => Err(RevokeError::Protocol(format!(
            "unexpected HTTP status {}",
            status.as_u16()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parse_errors_never_quote_the_body() {
        let body = br#"{"access_token": 12345, "expires_in": 3599, "canary": "1//canary"}"#;
        let err = parse_token_response(body).unwrap_err();
        assert!(!err.to_string().contains("canary"), "{err}");
        assert!(!err.to_string().contains("12345"), "{err}");
        let body = br#"{"access_token": "ya29.a", "expires_in": 3599, "refresh_token": "1//canary with space"}"#;
        let err = parse_token_response(body).unwrap_err();
        assert!(!err.to_string().contains("canary"), "{err}");
    }
}
