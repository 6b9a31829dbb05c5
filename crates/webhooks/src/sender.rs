//! The HTTP sender: one POST per attempt, the record's exact body, signed at the time of the attempt.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use offline_access_domain::events::{EventRecord, SendError, WebhookSender as WebhookPort};
use offline_access_domain::{Clock, SystemClock};
use url::Url;

use crate::signature::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SecretError, WebhookSecret};

/// The default time an attempt may take, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest cause kept in [`SendError::Unreachable`].
const MAX_CAUSE_CHARS: usize = 200;

/// Why the webhook settings were refused: names the setting, never quotes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookConfigError {
    /// `webhooks.url` is not an absolute http(s) URL.
    #[error("webhooks.url is invalid: {0}")]
    Url(String),
    /// `webhooks.secret` is not a `whsec_` secret.
    #[error("webhooks.secret is invalid: {0}")]
    Secret(#[from] SecretError),
    /// `webhooks.timeout` is zero.
    #[error("webhooks.timeout must be more than zero")]
    Timeout,
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client for webhooks: {0}")]
    HttpClient(String),
}

/// Where and how events are sent. `Debug` shows neither the secret nor the URL's query.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The endpoint events are POSTed to.
    pub url: Url,
    /// The signing secret.
    pub secret: WebhookSecret,
    /// How long one attempt may take, connection included. Default [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
}

impl WebhookConfig {
    /// Settings for `url`, `secret` (`whsec_<base64>`) and the timeout of one attempt ([`DEFAULT_TIMEOUT`] is
    /// the default to pass).
    ///
    /// # Errors
    /// [`WebhookConfigError::Url`] unless `url` is an http or https URL with a host;
    /// [`WebhookConfigError::Secret`] for a malformed secret; [`WebhookConfigError::Timeout`] for zero.
    pub fn new(url: Url, secret: &str, timeout: Duration) -> Result<Self, WebhookConfigError> {
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(WebhookConfigError::Url(
                "it must be an http or https URL with a host".into(),
            ));
        }
        if timeout.is_zero() {
            return Err(WebhookConfigError::Timeout);
        }
        Ok(Self {
            url,
            secret: WebhookSecret::parse(secret)?,
            timeout,
        })
    }

    /// The endpoint for logs: the URL without its query, fragment or credentials.
    #[must_use]
    pub fn describe(&self) -> String {
        shown(&self.url)
    }
}

/// The URL without its query, fragment or credentials (what logs and `Debug` may show).
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &shown(&self.url))
            .field("secret", &self.secret)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Sends events to the team's endpoint over HTTP (the domain's [`WebhookPort`]): `POST` of the record's body as it is,
/// `Content-Type: application/json`, `webhook-id` (the record's id), `webhook-timestamp` (the attempt's Unix
/// time) and `webhook-signature`. No redirect is followed and nothing is retried here (the outbox retries).
pub struct WebhookSender {
    http: reqwest::Client,
    url: Url,
    secret: WebhookSecret,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSender")
            .field("url", &shown(&self.url))
            .finish_non_exhaustive()
    }
}

impl WebhookSender {
    /// A sender with its own HTTP client (rustls on aws-lc-rs) and the system clock.
    ///
    /// # Errors
    /// [`WebhookConfigError::Timeout`] for a zero timeout; [`WebhookConfigError::HttpClient`].
    pub fn new(config: WebhookConfig) -> Result<Self, WebhookConfigError> {
        if config.timeout.is_zero() {
            return Err(WebhookConfigError::Timeout);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("offline-access/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            // A signed event goes where it was configured to go, and only once per attempt.
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .build()
            .map_err(|e| WebhookConfigError::HttpClient(e.without_url().to_string()))?;
        Ok(Self {
            http,
            url: config.url,
            secret: config.secret,
            clock: Arc::new(SystemClock),
        })
    }

    /// The same, with `clock` giving `webhook-timestamp`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

#[async_trait]
impl WebhookPort for WebhookSender {
    async fn send(&self, event: &EventRecord) -> Result<(), SendError> {
        let id = HeaderValue::from_str(&event.id)
            .map_err(|_| SendError::Unreachable("the event id is not a header value".into()))?;
        let timestamp = self.clock.now().unix_timestamp();
        let signature = self
            .secret
            .sign(&event.id, timestamp, event.body.as_bytes());
        let response = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(HEADER_ID, id)
            .header(HEADER_TIMESTAMP, timestamp)
            .header(HEADER_SIGNATURE, signature)
            .body(event.body.clone())
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(id = %event.id, kind = %event.kind, "webhook delivered");
                Ok(())
            }
            Ok(response) => {
                let status = response.status().as_u16();
                tracing::info!(id = %event.id, status, "webhook endpoint refused the event");
                Err(SendError::Status(status))
            }
            Err(e) => {
                let cause = cause(&e);
                tracing::info!(id = %event.id, %cause, "webhook endpoint unreachable");
                Err(SendError::Unreachable(cause))
            }
        }
    }
}

/// A short cause for a failed attempt: what failed and the innermost error (I/O, TLS, DNS), never the URL.
fn cause(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let what = if error.is_connect() {
        "could not connect"
    } else {
        "the exchange failed"
    };
    let mut innermost = None;
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        innermost = Some(e);
        source = e.source();
    }
    match innermost {
        Some(e) => {
            let detail: String = e
                .to_string()
                .chars()
                .take(MAX_CAUSE_CHARS)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            format!("{what}: {detail}")
        }
        None => what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn settings_name_the_bad_key_and_never_show_the_secret_or_the_query() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        for bad in [
            "ftp://example.com/hook",
            "mailto:a@example.com",
            "data:text/plain,x",
        ] {
            let err = WebhookConfig::new(url(bad), secret, DEFAULT_TIMEOUT).unwrap_err();
            assert!(err.to_string().starts_with("webhooks.url"), "{bad}: {err}");
        }
        let hook = url("https://u:pw@example.com/hook?token=canary#f");
        let err = WebhookConfig::new(hook.clone(), "MfKQ", DEFAULT_TIMEOUT).unwrap_err();
        assert!(err.to_string().starts_with("webhooks.secret"), "{err}");
        assert_eq!(
            WebhookConfig::new(hook.clone(), secret, Duration::ZERO).unwrap_err(),
            WebhookConfigError::Timeout
        );
        let config = WebhookConfig::new(hook, secret, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.describe(), "https://example.com/hook");
        let debug = format!("{config:?}");
        assert!(debug.contains("https://example.com/hook"), "{debug}");
        for hidden in ["canary", "MfKQ", "pw"] {
            assert!(!debug.contains(hidden), "{debug}");
        }
        let mut config = config;
        config.timeout = Duration::ZERO;
        assert_eq!(
            WebhookSender::new(config).unwrap_err(),
            WebhookConfigError::Timeout
        );
    }
}
