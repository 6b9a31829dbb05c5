//! Shared HTTP plumbing: the pooled client, capped body reads, streamed answers, `Retry-After`, metrics.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use offline_access_domain::AccessToken;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use tokio::sync::oneshot;

use crate::config::{ConfigError, GoogleConfig};

/// The longest `Retry-After` we pass on (Google sends seconds to minutes).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The longest a streamed transfer (a Drive download, a call through the Google API proxy) may take in all, once
/// its answer's head arrived within the request timeout (each later chunk must also arrive within the request
/// timeout). Streamed bodies are not size-bounded, so this is their only overall bound.
pub const MAX_DOWNLOAD_TIME: Duration = Duration::from_secs(3600);

/// Builds the one pooled client: rustls (aws-lc-rs), keep-alive, timeouts, no redirects, no automatic retries.
pub(crate) fn build_client(config: &GoogleConfig) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("offline-access/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(60))
        // A token or Drive call is never followed to another place, and never replayed by the client:
        // a code is single-use, and the use cases own retries.
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        // Bodies pass as Google sent them: a proxied answer keeps its `Content-Encoding` and `Content-Length`
        // consistent with its bytes, even if another crate turns on a reqwest decompression feature.
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd();
    if config.base_url.as_deref().is_some_and(is_loopback_url) {
        // A fake Google on this machine is never reached through an HTTP(S)_PROXY from the environment.
        builder = builder.no_proxy();
    }
    if let Some(pem) = &config.extra_root_ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|_| ConfigError::Invalid {
                key: "extra_root_ca_pem",
                reason: "it is not a PEM certificate".into(),
            })?;
        if certs.is_empty() {
            return Err(ConfigError::Invalid {
                key: "extra_root_ca_pem",
                reason: "it holds no certificate".into(),
            });
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| ConfigError::HttpClient(e.without_url().to_string()))
}

/// Whether `url` names a loopback host (`localhost`, 127.0.0.0/8, `[::1]`).
fn is_loopback_url(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// How a request failed before a complete answer arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request or the body read timed out.
    Timeout,
    /// Connection refused, reset or dropped; DNS or TLS failure.
    Unreachable,
    /// The body was larger than allowed.
    TooLarge,
}

pub(crate) fn classify(error: &reqwest::Error) -> Failure {
    if error.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Unreachable
    }
}

/// A complete answer: status, headers and the body (bounded).
pub(crate) struct Answer {
    pub(crate) status: reqwest::StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Sends a request and reads the whole body, refusing bodies over `cap` bytes.
pub(crate) async fn send(request: reqwest::RequestBuilder, cap: usize) -> Result<Answer, Failure> {
    let response = request.send().await.map_err(|e| classify(&e))?;
    read(response, cap).await
}

/// Reads the whole body of `response`, refusing bodies over `cap` bytes.
pub(crate) async fn read(mut response: reqwest::Response, cap: usize) -> Result<Answer, Failure> {
    if response
        .content_length()
        .is_some_and(|len| len > cap as u64)
    {
        return Err(Failure::TooLarge);
    }
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    // Most answers arrive in one chunk: keep it as it is, copying only when a second one comes.
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut len = 0usize;
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
        len += chunk.len();
        if len > cap {
            return Err(Failure::TooLarge);
        }
        match first.take() {
            None if more.is_empty() => first = Some(chunk),
            Some(head) => {
                more.extend_from_slice(&head);
                more.extend_from_slice(&chunk);
            }
            None => more.extend_from_slice(&chunk),
        }
    }
    let body = first.unwrap_or_else(|| more.freeze());
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Sends a request whose answer body will be streamed, and waits for the answer's head.
///
/// The client's whole-request timeout is lifted to [`MAX_DOWNLOAD_TIME`]; the head must arrive within
/// `head_timeout` of the request body's end. For a streamed request body, `body_sent` resolves (or is dropped)
/// when the body ended, so a long upload is not cut by the head timeout; `None` for a body in memory.
pub(crate) async fn send_streamed(
    request: reqwest::RequestBuilder,
    head_timeout: Duration,
    body_sent: Option<oneshot::Receiver<()>>,
) -> Result<reqwest::Response, Failure> {
    let send = request.timeout(MAX_DOWNLOAD_TIME).send();
    tokio::pin!(send);
    if let Some(body_sent) = body_sent {
        tokio::select! {
            result = &mut send => return result.map_err(|e| classify(&e)),
            _ = body_sent => {}
        }
    }
    match tokio::time::timeout(head_timeout, send).await {
        Ok(result) => result.map_err(|e| classify(&e)),
        Err(_) => Err(Failure::Timeout),
    }
}

/// The body of `response`, chunk by chunk as the caller asks for it; a chunk slower than `idle`, or a broken
/// connection, ends it with `broke(...)` of what happened.
pub(crate) fn chunks<E: Send + 'static>(
    response: reqwest::Response,
    idle: Duration,
    broke: fn(Failure) -> E,
) -> impl futures::Stream<Item = Result<Bytes, E>> + Send + 'static {
    futures::stream::unfold(Some(response), move |state| async move {
        let mut response = state?;
        let failure = match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => return Some((Ok(chunk), Some(response))),
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => classify(&e),
            Err(_) => Failure::Timeout,
        };
        tracing::info!(?failure, "a streamed answer from Google broke off");
        Some((Err(broke(failure)), None))
    })
}

/// `Authorization: Bearer <access token>`, marked sensitive (never logged by the HTTP stack); `None` when the
/// token cannot be a header value.
pub(crate) fn bearer(access_token: &AccessToken) -> Option<HeaderValue> {
    let mut value =
        HeaderValue::try_from(format!("Bearer {}", access_token.expose_secret())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `Retry-After` in its delta-seconds form (what Google sends), bounded; HTTP dates are ignored.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: u64 = value.parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Keeps an error code from a remote body only if it looks like one (`invalid_grant`, `userRateLimitExceeded`):
/// ASCII letters, digits, `_`, `.`, `-`, at most 64 bytes. Anything else becomes `unknown`, so no remote text
/// (which could echo a secret) reaches our errors or logs.
pub(crate) fn sanitize_code(code: &str) -> String {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        code.to_owned()
    } else {
        "unknown".to_owned()
    }
}

/// Records one Google call: `offline_access_google_requests_total{endpoint, outcome}` and
/// `offline_access_google_request_duration_seconds{endpoint}`.
pub(crate) fn record(endpoint: &'static str, outcome: &'static str, started: Instant) {
    metrics::counter!(
        "offline_access_google_requests_total",
        "endpoint" => endpoint,
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!(
        "offline_access_google_request_duration_seconds",
        "endpoint" => endpoint
    )
    .record(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_takes_seconds_and_ignores_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn only_code_shaped_remote_text_is_kept() {
        assert_eq!(
            sanitize_code("redirect_uri_mismatch"),
            "redirect_uri_mismatch"
        );
        assert_eq!(
            sanitize_code("userRateLimitExceeded"),
            "userRateLimitExceeded"
        );
        assert_eq!(sanitize_code("token 1//secret"), "unknown");
        assert_eq!(sanitize_code(""), "unknown");
        assert_eq!(sanitize_code(&"a".repeat(65)), "unknown");
    }
}

#[cfg(test)]
mod loopback_tests {
    use super::is_loopback_url;

    #[test]
    fn only_loopback_base_urls_bypass_the_proxy() {
        assert!(is_loopback_url("http://127.0.0.1:8080"));
        assert!(is_loopback_url("http://127.3.2.1"));
        assert!(is_loopback_url("https://localhost:9000/"));
        assert!(is_loopback_url("http://[::1]:80"));
        assert!(!is_loopback_url("https://oauth2.googleapis.com"));
        assert!(!is_loopback_url("http://10.0.0.1"));
        assert!(!is_loopback_url("not a url"));
    }
}
