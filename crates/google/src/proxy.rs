//! The outbound half of the internal API's Google API proxy ([`GoogleApi`]): a request to an allowed Google API
//! host, sent with the user's access token, bodies streamed both ways.
//!
//! The pure parts are public so the HTTP adapter applies the very same rules before anything else:
//! [`ProxyHosts`] (`internal.proxy_hosts`), [`filter_request_headers`] and [`filter_response_headers`].

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use offline_access_domain::{
    AccessToken, BodyStream, GoogleApi, ProxyBody, ProxyError, ProxyRequest, ProxyResponse,
};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::oneshot;
use tracing::Instrument;
use url::Url;

use crate::config::ConfigError;
use crate::http::{self, Failure};

/// `internal.proxy_hosts` when not configured.
pub const DEFAULT_PROXY_HOSTS: [&str; 2] = ["www.googleapis.com", "*.googleapis.com"];

/// Longest host name (RFC 1035, without the trailing dot).
const MAX_HOST_LEN: usize = 253;
/// Longest label of a host name.
const MAX_LABEL_LEN: usize = 63;

/// The methods the proxy forwards (no `CONNECT`, no `TRACE`: it would echo the Bearer back).
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Hop-by-hop headers (RFC 9110 §7.6.1, and the older ones proxies still see): never passed on, either way.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "http2-settings",
];

/// Request headers of the caller never sent to Google (besides hop-by-hop ones): its credentials, the host it
/// named, an `Expect` the proxy does not relay, and the caller's network details.
const NEVER_SENT: [&str; 6] = [
    "authorization",
    "cookie",
    "host",
    "expect",
    "forwarded",
    "x-real-ip",
];

/// Response headers passed back (besides `x-goog-*` and `x-guploader-*`).
const PASSED_BACK: [&str; 16] = [
    "accept-ranges",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-range",
    "content-type",
    "etag",
    "expires",
    "last-modified",
    "location",
    "range",
    "retry-after",
    "vary",
    "www-authenticate",
];

// ---------------------------------------------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------------------------------------------

/// One `internal.proxy_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    /// `www.googleapis.com`: this host only.
    Exact(String),
    /// `*.googleapis.com`, kept as `.googleapis.com`: exactly one label in front of it.
    OneLabelUnder(String),
}

/// The Google API hosts the proxy may reach (`internal.proxy_hosts`).
///
/// An entry is an exact host name (`www.googleapis.com`) or `*.` and a host name (`*.googleapis.com`), which
/// allows exactly one label in front (`gmail.googleapis.com`; not `googleapis.com`, not `a.b.googleapis.com`).
/// Host names are lower-case ASCII letters, digits and hyphens in dot-separated labels of 1–63 characters (no
/// label starting or ending with a hyphen), at least two labels, at most 253 characters, the last label starting
/// with a letter; upper case is folded first. So no IP literal, port, user information, percent-encoding, empty
/// label or trailing dot ever matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHosts {
    rules: Vec<HostRule>,
}

impl ProxyHosts {
    /// Parses `internal.proxy_hosts` entries (surrounding white space ignored, case folded). An empty list allows
    /// no host.
    ///
    /// # Errors
    /// [`ConfigError::ProxyHosts`] quoting the first malformed entry and saying what is wrong with it.
    pub fn parse<I, S>(entries: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut rules = Vec::new();
        for entry in entries {
            let entry = entry.as_ref();
            let rule = parse_rule(entry.trim()).map_err(|reason| {
                let shown: String = entry.chars().take(80).collect();
                ConfigError::ProxyHosts(format!("the entry {shown:?} {reason}"))
            })?;
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
        Ok(Self { rules })
    }

    /// Whether the proxy may reach `host` (any case; no port).
    #[must_use]
    pub fn allows(&self, host: &str) -> bool {
        self.allowed(host).is_some()
    }

    /// `host` in lower case, when the proxy may reach it; `None` otherwise.
    #[must_use]
    pub fn allowed(&self, host: &str) -> Option<String> {
        let host = host_name(host).ok()?;
        let allowed = self.rules.iter().any(|rule| match rule {
            HostRule::Exact(exact) => *exact == host,
            HostRule::OneLabelUnder(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        });
        allowed.then_some(host)
    }

    /// The entries, normalised (`*.googleapis.com`, ...).
    #[must_use]
    pub fn entries(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|rule| match rule {
                HostRule::Exact(host) => host.clone(),
                HostRule::OneLabelUnder(suffix) => format!("*{suffix}"),
            })
            .collect()
    }
}

/// [`DEFAULT_PROXY_HOSTS`].
impl Default for ProxyHosts {
    fn default() -> Self {
        Self {
            rules: vec![
                HostRule::Exact("www.googleapis.com".to_owned()),
                HostRule::OneLabelUnder(".googleapis.com".to_owned()),
            ],
        }
    }
}

/// The entries, comma-separated (as `OFFLINE_ACCESS_INTERNAL__PROXY_HOSTS` takes them).
impl fmt::Display for ProxyHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entries().join(","))
    }
}

fn parse_rule(entry: &str) -> Result<HostRule, &'static str> {
    match entry.strip_prefix("*.") {
        Some(suffix) => {
            if suffix.contains('*') {
                return Err(
                    "may hold one wildcard only, as its whole first label (`*.googleapis.com`)",
                );
            }
            Ok(HostRule::OneLabelUnder(format!(".{}", host_name(suffix)?)))
        }
        None if entry.contains('*') => {
            Err("may hold a wildcard only as its whole first label (`*.googleapis.com`)")
        }
        None => Ok(HostRule::Exact(host_name(entry)?)),
    }
}

/// `host` in lower case when it is a plain DNS host name by the proxy's rules; else what is wrong with it.
fn host_name(host: &str) -> Result<String, &'static str> {
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Err("is empty");
    }
    if let Some(b) = host
        .bytes()
        .find(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.')))
    {
        return Err(match b {
            b':' | b'[' | b']' => "is not a host name (a port or an IPv6 address)",
            b'@' => "is not a host name (user information)",
            b'%' => "is not a host name (percent-encoding)",
            b'/' | b'\\' | b'?' | b'#' => "is not a host name (a path or more of a URL)",
            _ => "may hold only letters, digits, hyphens and dots",
        });
    }
    if host.len() > MAX_HOST_LEN {
        return Err("is longer than 253 characters");
    }
    if host.ends_with('.') {
        return Err("ends with a dot");
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|label| label.is_empty()) {
        return Err("has an empty label");
    }
    if labels.iter().any(|label| label.len() > MAX_LABEL_LEN) {
        return Err("has a label longer than 63 characters");
    }
    if labels
        .iter()
        .any(|label| label.starts_with('-') || label.ends_with('-'))
    {
        return Err("has a label that starts or ends with a hyphen");
    }
    if labels.len() < 2 {
        return Err("is not a host name with a domain (at least two labels)");
    }
    if !labels
        .last()
        .is_some_and(|tld| tld.starts_with(|c: char| c.is_ascii_lowercase()))
    {
        return Err("is not a host name (its last label must start with a letter: no IP address)");
    }
    Ok(host)
}

// ---------------------------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------------------------

/// The request headers that may go to Google: names folded to lower case; dropped are `authorization`, `cookie`,
/// `proxy-authorization`, `host`, `expect`, `forwarded`, `x-forwarded-*`, `x-real-ip`, the hop-by-hop headers
/// (`connection`, `keep-alive`, `proxy-connection`, `te`, `trailer`, `transfer-encoding`, `upgrade`,
/// `proxy-authenticate`, `http2-settings`), every header `connection` names, and any header whose name is not an
/// HTTP token or whose value holds a control character. Order and repeated headers are kept.
pub fn filter_request_headers<I, N, V>(headers: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<str>,
    V: AsRef<str>,
{
    filter_headers(headers, |name| {
        !HOP_BY_HOP.contains(&name)
            && !NEVER_SENT.contains(&name)
            && !name.starts_with("x-forwarded-")
    })
}

/// The response headers passed back to the proxy's caller: names folded to lower case; kept are `content-type`,
/// `content-length`, `content-range`, `content-encoding`, `content-disposition`, `content-language`,
/// `accept-ranges`, `range` (a resumable upload's progress), `etag`, `last-modified`, `cache-control`, `expires`,
/// `vary`, `retry-after`, `location`, `www-authenticate` and Google's own `x-goog-*` and `x-guploader-*`; never
/// `set-cookie`, a hop-by-hop header or one `connection` names, nor anything else.
pub fn filter_response_headers<I, N, V>(headers: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<str>,
    V: AsRef<str>,
{
    filter_headers(headers, |name| {
        PASSED_BACK.contains(&name)
            || name.starts_with("x-goog-")
            || name.starts_with("x-guploader-")
    })
}

fn filter_headers<I, N, V>(headers: I, keep: fn(&str) -> bool) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<str>,
    V: AsRef<str>,
{
    let headers: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(name, value)| is_token(name.as_ref()) && is_field_value(value.as_ref()))
        .map(|(name, value)| {
            (
                name.as_ref().to_ascii_lowercase(),
                value.as_ref().to_owned(),
            )
        })
        .collect();
    let named_by_connection: HashSet<String> = headers
        .iter()
        .filter(|(name, _)| name == "connection")
        .flat_map(|(_, value)| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect();
    headers
        .into_iter()
        .filter(|(name, _)| keep(name) && !named_by_connection.contains(name))
        .collect()
}

/// An HTTP token (RFC 9110 §5.6.2): a header name.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A header value without control characters (tab aside): no header can be smuggled in through it.
fn is_field_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

// ---------------------------------------------------------------------------------------------------------------
// The URL
// ---------------------------------------------------------------------------------------------------------------

/// The URL a request goes to: `https://{host}{path}?{query}`, or with a base URL (tests, the fake Google) the base
/// URL with the caller's path under the base URL's own path. `host` must be a valid host name (see
/// [`ProxyHosts`]). The path and query are set on a parsed URL, never pasted into one, so they cannot change the
/// scheme, host or port; the caller's path is normalised on its own (dot segments, backslashes), so it cannot
/// climb above the base URL's path either.
pub(crate) fn target_url(
    base: Option<&Url>,
    host: &str,
    path_and_query: &str,
) -> Result<Url, ProxyError> {
    if !path_and_query.starts_with('/') {
        return Err(ProxyError::BadRequest(
            "the path must start with `/`".into(),
        ));
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let unusable = || ProxyError::BadRequest("no URL can be built for this host".into());
    let mut url = Url::parse("https://www.googleapis.com/").map_err(|_| unusable())?;
    url.set_host(Some(host)).map_err(|_| unusable())?;
    url.set_path(path);
    if let Some(base) = base {
        let path = format!("{}{}", base.path().trim_end_matches('/'), url.path());
        url = base.clone();
        url.set_path(&path);
    }
    url.set_query(query);
    Ok(url)
}

// ---------------------------------------------------------------------------------------------------------------
// The port
// ---------------------------------------------------------------------------------------------------------------

/// Any allowed Google API with the user's access token, for the internal API's proxy ([`GoogleApi`]).
///
/// One attempt, no redirects followed (a 3xx comes back as it is), no decompression; the request body is
/// streamed to Google and the answer's body back as it arrives.
pub struct GoogleApiProxy {
    pub(crate) http: reqwest::Client,
    /// The hosts it may reach (checked again here, after the HTTP adapter).
    pub(crate) hosts: ProxyHosts,
    /// `google.base_url`, when set: every allowed host maps to it.
    pub(crate) base: Option<Url>,
    /// The request timeout: the longest wait for the answer's head (after the request body ended), for each
    /// chunk of the answer's body, and for each chunk of a streamed request body.
    pub(crate) timeout: Duration,
}

impl fmt::Debug for GoogleApiProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleApiProxy")
            .field("hosts", &self.hosts)
            .field("base", &self.base.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

fn bad(reason: &str) -> ProxyError {
    ProxyError::BadRequest(reason.to_owned())
}

/// A proxied call that got no answer.
fn unanswered(failure: Failure) -> ProxyError {
    match failure {
        Failure::Timeout => ProxyError::Timeout,
        Failure::Unreachable | Failure::TooLarge => ProxyError::Unavailable,
    }
}

/// The headers sent: the caller's, filtered again, without a `content-length` the body does not carry, with
/// `content-length: 0` on an empty `POST`/`PUT`/`PATCH` (Google's front end asks for one) and the Bearer.
fn outbound_headers(
    request: &ProxyRequest,
    method: &Method,
    bearer: HeaderValue,
) -> Result<HeaderMap, ProxyError> {
    let kept = filter_request_headers(
        request
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    // A streamed body keeps the caller's length (then sent as is, not chunked) when it is one plain number; a
    // body in memory carries its own.
    let keep_length = matches!(request.body, ProxyBody::Streaming(_)) && {
        let mut lengths = kept.iter().filter(|(name, _)| name == "content-length");
        let one = lengths.next().map(|(_, value)| value.as_str());
        lengths.next().is_none()
            && one.is_some_and(|v| {
                (1..=19).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit())
            })
    };
    let mut headers = HeaderMap::with_capacity(kept.len() + 2);
    for (name, value) in &kept {
        if name == "content-length" && !keep_length {
            continue;
        }
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("invalid header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| bad("invalid header value"))?;
        headers.append(name, value);
    }
    let empty = match &request.body {
        ProxyBody::Empty => true,
        ProxyBody::Full(bytes) => bytes.is_empty(),
        ProxyBody::Streaming(_) => false,
    };
    if empty && matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    headers.insert(AUTHORIZATION, bearer);
    Ok(headers)
}

/// The caller's streamed body as sent to Google: each chunk within `idle`; `sent` fires at its end (dropped
/// when it fails), and a failure is also kept in `failed`, so the error the caller's stream gave is the one
/// `forward` returns.
fn upload(
    body: BodyStream,
    idle: Duration,
    sent: oneshot::Sender<()>,
    failed: Arc<OnceLock<ProxyError>>,
) -> impl futures::Stream<Item = Result<Bytes, ProxyError>> + Send + 'static {
    futures::stream::unfold(Some((body, sent)), move |state| {
        let failed = Arc::clone(&failed);
        async move {
            let (mut body, sent) = state?;
            let error = match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(chunk))) => return Some((Ok(chunk), Some((body, sent)))),
                Ok(None) => {
                    let _ = sent.send(());
                    return None;
                }
                Ok(Some(Err(error))) => error,
                Err(_) => bad("the request body stalled"),
            };
            let _ = failed.set(error.clone());
            Some((Err(error), None))
        }
    })
}

impl GoogleApiProxy {
    async fn send(
        &self,
        access_token: &AccessToken,
        request: ProxyRequest,
    ) -> Result<ProxyResponse, ProxyError> {
        let Some(host) = self.hosts.allowed(&request.host) else {
            tracing::info!("Google API request refused: host not allowed");
            return Err(bad("host not allowed"));
        };
        let method = METHODS
            .iter()
            .find(|m| **m == request.method)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or_else(|| bad("method not forwarded"))?;
        let url = target_url(self.base.as_ref(), &host, &request.path_and_query)?;
        let bearer = http::bearer(access_token).ok_or_else(|| bad("unusable access token"))?;
        let headers = outbound_headers(&request, &method, bearer)?;
        let span = tracing::debug_span!("google.proxy", method = %method, host = %host);
        async move {
            tracing::debug!("forwarding to a Google API");
            let builder = self.http.request(method, url).headers(headers);
            let (builder, body_sent, failed) = match request.body {
                ProxyBody::Empty => (builder, None, None),
                ProxyBody::Full(bytes) => (builder.body(bytes), None, None),
                ProxyBody::Streaming(stream) => {
                    let (sent, body_sent) = oneshot::channel();
                    let failed = Arc::new(OnceLock::new());
                    let body = upload(stream, self.timeout, sent, Arc::clone(&failed));
                    (
                        builder.body(reqwest::Body::wrap_stream(body)),
                        Some(body_sent),
                        Some(failed),
                    )
                }
            };
            let response = match http::send_streamed(builder, self.timeout, body_sent).await {
                Ok(response) => response,
                Err(failure) => {
                    let caller = failed.and_then(|failed| failed.get().cloned());
                    let error = caller.unwrap_or_else(|| unanswered(failure));
                    tracing::info!(error = %error, "Google API request got no answer");
                    return Err(error);
                }
            };
            let status = response.status().as_u16();
            let headers =
                filter_response_headers(response.headers().iter().filter_map(|(name, value)| {
                    Some((name.as_str(), std::str::from_utf8(value.as_bytes()).ok()?))
                }));
            tracing::debug!(status, "Google API answered");
            Ok(ProxyResponse {
                status,
                headers,
                body: Box::pin(http::chunks(response, self.timeout, unanswered)),
            })
        }
        .instrument(span)
        .await
    }
}

#[async_trait]
impl GoogleApi for GoogleApiProxy {
    async fn forward(
        &self,
        access_token: &AccessToken,
        request: ProxyRequest,
    ) -> Result<ProxyResponse, ProxyError> {
        let started = Instant::now();
        let result = self.send(access_token, request).await;
        let outcome = match &result {
            Ok(response) => match response.status {
                401 => "unauthorized",
                429 => "rate_limited",
                400..=499 => "client_error",
                500..=599 => "server_error",
                _ => "ok",
            },
            Err(ProxyError::Unavailable) => "unavailable",
            Err(ProxyError::Timeout) => "timeout",
            Err(ProxyError::BadRequest(_)) => "bad_request",
        };
        http::record("proxy", outcome, started);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hosts(entries: &[&str]) -> ProxyHosts {
        ProxyHosts::parse(entries).unwrap()
    }

    #[test]
    fn the_default_allows_www_and_one_label_under_googleapis_com() {
        let default = ProxyHosts::default();
        assert_eq!(default, hosts(&DEFAULT_PROXY_HOSTS));
        assert_eq!(default.to_string(), "www.googleapis.com,*.googleapis.com");
        for good in [
            "www.googleapis.com",
            "gmail.googleapis.com",
            "sheets.googleapis.com",
            "oauth2.googleapis.com",
            "us-central1-aiplatform.googleapis.com",
            "x.googleapis.com",
        ] {
            assert_eq!(default.allowed(good).as_deref(), Some(good), "{good}");
        }
        for bad in [
            "googleapis.com",
            ".googleapis.com",
            "a.b.googleapis.com",
            "googleapis.com.evil.example",
            "gmail.googleapis.com.evil.example",
            "evil-googleapis.com",
            "evilgoogleapis.com",
            "www.googleapis.com.",
            "gmail.googleapis.com:443",
            "user@gmail.googleapis.com",
            "gmail.googleapis.com@evil.example",
            "gmail%2egoogleapis.com",
            "gmail.googleapis%2ecom",
            "-x.googleapis.com",
            "x-.googleapis.com",
            "x..googleapis.com",
            "*.googleapis.com",
            "gmail.googleapis.com/x",
            "gmail.googleapis.com\\x",
            "gmail.googleapis.com ",
            " gmail.googleapis.com",
            "gmail.googleapis.com\n",
            "127.0.0.1",
            "[::1]",
            "::1",
            "gmail.googleapis.\u{212a}om",
            "",
        ] {
            assert!(!default.allows(bad), "{bad:?}");
        }
    }

    #[test]
    fn hosts_in_any_case_are_allowed_and_normalised() {
        let default = ProxyHosts::default();
        assert_eq!(
            default.allowed("Gmail.GoogleAPIs.COM").as_deref(),
            Some("gmail.googleapis.com")
        );
        assert!(default.allows("WWW.GOOGLEAPIS.COM"));
    }

    #[test]
    fn exact_entries_allow_only_themselves() {
        let only = hosts(&["  People.GoogleAPIs.com "]);
        assert_eq!(only.entries(), ["people.googleapis.com"]);
        assert!(only.allows("people.googleapis.com"));
        assert!(!only.allows("gmail.googleapis.com"));
        assert!(!only.allows("x.people.googleapis.com"));
        let none = ProxyHosts::parse(Vec::<String>::new()).unwrap();
        assert!(!none.allows("www.googleapis.com"));
        assert_eq!(
            hosts(&["a.example", "A.example", "*.b.example", "*.B.EXAMPLE"]).entries(),
            ["a.example", "*.b.example"]
        );
    }

    #[test]
    fn malformed_entries_are_refused_quoting_them_and_saying_why() {
        for (entry, why) in [
            ("", "is empty"),
            ("localhost", "two labels"),
            ("*.com", "two labels"),
            ("*", "wildcard"),
            ("**.googleapis.com", "wildcard"),
            ("*.*.googleapis.com", "wildcard"),
            ("gmail.*.com", "wildcard"),
            ("a*.googleapis.com", "wildcard"),
            ("127.0.0.1", "IP address"),
            ("0x7f.0.0.1", "IP address"),
            ("[::1]", "IPv6"),
            ("www.googleapis.com:443", "port"),
            ("user@www.googleapis.com", "user information"),
            ("www%2egoogleapis.com", "percent"),
            ("https://www.googleapis.com", "port"),
            ("www.googleapis.com/", "path"),
            ("www.googleapis.com.", "ends with a dot"),
            ("www..googleapis.com", "empty label"),
            ("-www.googleapis.com", "hyphen"),
            ("www_1.googleapis.com", "only letters"),
            ("wwww.gööglé.com", "only letters"),
        ] {
            let err = ProxyHosts::parse([entry]).unwrap_err();
            let ConfigError::ProxyHosts(message) = &err else {
                panic!("{entry}: {err}")
            };
            assert!(message.contains(why), "{entry}: {message}");
            assert!(message.contains(&format!("{entry:?}")), "{message}");
            assert!(
                err.to_string()
                    .starts_with("internal.proxy_hosts is invalid: ")
            );
        }
        let long_label = format!("{}.example", "a".repeat(64));
        let long_host = format!("{}.example", vec!["a".repeat(63); 4].join("."));
        for (entry, why) in [(long_label, "63"), (long_host, "253")] {
            let err = ProxyHosts::parse([&entry]).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
        let longest = format!(
            "{}.{}.example",
            vec!["a".repeat(63); 3].join("."),
            "b".repeat(53)
        );
        assert_eq!(longest.len(), 253);
        assert!(hosts(&[&longest]).allows(&longest));
    }

    #[test]
    fn request_headers_lose_credentials_hop_by_hop_and_connection_named_ones() {
        let kept = filter_request_headers([
            ("Authorization", "Bearer caller"),
            ("Cookie", "sid=1"),
            ("Proxy-Authorization", "Basic x"),
            ("Host", "evil.example"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "x"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Proxy-Connection", "keep-alive"),
            ("Expect", "100-continue"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Forwarded", "for=10.0.0.1"),
            ("Content-Type", "application/json"),
            ("If-Match", "\"etag\""),
            ("X-Goog-User-Project", "p"),
            ("Accept", "a"),
            ("accept", "b"),
            ("Bad Name", "x"),
            ("X-Injected", "a\r\nAuthorization: Bearer evil"),
            ("X-Utf8", "naïve"),
        ]);
        assert_eq!(
            kept,
            [
                ("content-type", "application/json"),
                ("if-match", "\"etag\""),
                ("x-goog-user-project", "p"),
                ("accept", "a"),
                ("accept", "b"),
                ("x-utf8", "naïve"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn response_headers_keep_only_the_meaningful_ones() {
        let kept = filter_response_headers([
            ("Content-Type", "application/json; charset=UTF-8"),
            ("Content-Length", "42"),
            ("Content-Encoding", "gzip"),
            ("ETag", "\"v1\""),
            ("Location", "https://www.googleapis.com/upload?upload_id=x"),
            ("Range", "bytes=0-1023"),
            (
                "WWW-Authenticate",
                "Bearer realm=\"https://accounts.google.com/\"",
            ),
            ("X-Goog-Upload-Status", "active"),
            ("X-GUploader-UploadID", "id"),
            ("Set-Cookie", "NID=1"),
            ("Connection", "close, etag"),
            ("Transfer-Encoding", "chunked"),
            ("Alt-Svc", "h3=\":443\""),
            ("Server", "ESF"),
            ("Date", "Mon, 01 Jan 2029 00:00:00 GMT"),
        ]);
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "content-length",
                "content-encoding",
                "location",
                "range",
                "www-authenticate",
                "x-goog-upload-status",
                "x-guploader-uploadid",
            ]
        );
    }

    #[test]
    fn a_path_and_query_are_set_under_the_host_never_in_its_place() {
        let url = |path: &str| {
            target_url(None, "gmail.googleapis.com", path)
                .map(|u| u.to_string())
                .unwrap()
        };
        for (path_and_query, expected) in [
            (
                "/gmail/v1/users/me/messages?q=from%3Ax&maxResults=5",
                "/gmail/v1/users/me/messages?q=from%3Ax&maxResults=5",
            ),
            ("//evil.example/x", "//evil.example/x"),
            ("/@evil.example/x", "/@evil.example/x"),
            ("/\\evil.example/x", "//evil.example/x"),
            ("/a/../../../b", "/b"),
            ("/a/%2e%2E/b", "/b"),
            ("/a#frag?q=1#x", "/a%23frag?q=1%23x"),
            ("/a b\r\n?c d", "/a%20b?c%20d"),
        ] {
            assert_eq!(
                url(path_and_query),
                format!("https://gmail.googleapis.com{expected}"),
                "{path_and_query:?}"
            );
        }
        for bad in ["", "gmail/v1", "evil.example/x", "@evil.example", "?q"] {
            assert!(
                matches!(
                    target_url(None, "gmail.googleapis.com", bad),
                    Err(ProxyError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_base_url_takes_every_host_and_keeps_the_path_under_its_own() {
        let base = Url::parse("http://127.0.0.1:9000/fake").unwrap();
        let url = |host: &str, path: &str| {
            target_url(Some(&base), host, path)
                .map(|u| u.to_string())
                .unwrap()
        };
        assert_eq!(
            url("gmail.googleapis.com", "/gmail/v1/users/me/profile?x=1"),
            "http://127.0.0.1:9000/fake/gmail/v1/users/me/profile?x=1"
        );
        assert_eq!(
            url("sheets.googleapis.com", "/v4/spreadsheets/1"),
            "http://127.0.0.1:9000/fake/v4/spreadsheets/1"
        );
        assert_eq!(
            url("www.googleapis.com", "/../../control/reset"),
            "http://127.0.0.1:9000/fake/control/reset"
        );
        let root = Url::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            target_url(Some(&root), "www.googleapis.com", "/drive/v3/about")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9000/drive/v3/about"
        );
    }

    #[test]
    fn only_a_length_the_body_has_is_sent_and_the_bearer_replaces_the_callers() {
        let bearer = HeaderValue::from_static("Bearer ours");
        let sent = |method: Method, body: ProxyBody, headers: &[(&str, &str)]| {
            let request = ProxyRequest {
                method: method.to_string(),
                host: "www.googleapis.com".into(),
                path_and_query: "/x".into(),
                headers: headers
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
                body,
            };
            let headers = outbound_headers(&request, &method, bearer.clone()).unwrap();
            let lengths: Vec<_> = headers.get_all(CONTENT_LENGTH).iter().cloned().collect();
            assert_eq!(
                headers.get_all(AUTHORIZATION).iter().collect::<Vec<_>>(),
                [&bearer]
            );
            lengths
        };
        let stream = || ProxyBody::Streaming(Box::pin(futures::stream::empty()));
        let length = |v: &'static str| vec![HeaderValue::from_static(v)];
        let with = |v| [("content-length", v), ("authorization", "Bearer theirs")];
        assert_eq!(sent(Method::PUT, stream(), &with("12")), length("12"));
        assert!(sent(Method::PUT, stream(), &with("-1")).is_empty());
        assert!(sent(Method::PUT, stream(), &with("")).is_empty());
        assert!(
            sent(
                Method::PUT,
                stream(),
                &[("content-length", "1"), ("content-length", "2")]
            )
            .is_empty()
        );
        assert!(sent(Method::PUT, stream(), &[]).is_empty());
        let full = || ProxyBody::Full(Bytes::from_static(b"abc"));
        assert!(sent(Method::POST, full(), &with("999")).is_empty());
        assert_eq!(
            sent(Method::POST, ProxyBody::Empty, &with("5")),
            length("0")
        );
        assert_eq!(
            sent(Method::PATCH, ProxyBody::Full(Bytes::new()), &[]),
            length("0")
        );
        assert!(sent(Method::GET, ProxyBody::Empty, &with("5")).is_empty());
        assert!(sent(Method::DELETE, ProxyBody::Empty, &[]).is_empty());
    }

    /// A host by the reference rule of the default list: `www.googleapis.com`, or one LDH label in front of
    /// `.googleapis.com` (case folded).
    fn reference_allows(host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let Some(label) = host.strip_suffix(".googleapis.com") else {
            return false;
        };
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?"
    }

    fn random_case(s: &str, flips: &[bool]) -> String {
        s.chars()
            .zip(flips.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect()
    }

    const FORBIDDEN_REQUEST: [&str; 13] = [
        "authorization",
        "cookie",
        "proxy-authorization",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "expect",
        "x-forwarded-for",
    ];

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(&FORBIDDEN_REQUEST[..]).prop_map(str::to_owned),
            proptest::sample::select(&PASSED_BACK[..]).prop_map(str::to_owned),
            Just("set-cookie".to_owned()),
            "x-goog-[a-z]{1,8}",
            "x-[a-z]{1,6}",
            "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
        ]
    }

    fn headers() -> impl Strategy<Value = Vec<(String, String, Vec<bool>)>> {
        proptest::collection::vec(
            (
                header_name(),
                "[ -~]{0,16}",
                proptest::collection::vec(any::<bool>(), 1..8),
            ),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn a_random_host_is_allowed_exactly_when_the_reference_rule_says_so(
            front in prop_oneof!["[a-zA-Z0-9-]{0,12}", "[a-zA-Z0-9.:@%\\[\\]/*_ -]{0,40}"],
            back in "(\\.googleapis\\.com)?\\.?",
        ) {
            let host = format!("{front}{back}");
            prop_assert_eq!(ProxyHosts::default().allows(&host), reference_allows(&host) || host.eq_ignore_ascii_case("www.googleapis.com"));
        }

        #[test]
        fn suffix_and_prefix_attacks_are_refused(
            label in label(),
            evil in "[a-z]{1,10}\\.[a-z]{2,6}",
            glued in "[a-zA-Z0-9-]{1,10}",
        ) {
            let default = ProxyHosts::default();
            for host in [
                format!("{label}.googleapis.com.{evil}"),
                format!("googleapis.com.{evil}"),
                format!("{glued}googleapis.com"),
                format!("{label}.{label}.googleapis.com"),
                format!("{label}.googleapis.com."),
                format!("{label}.googleapis.com:443"),
                format!("{evil}@{label}.googleapis.com"),
                format!("{label}.googleapis.com@{evil}"),
                format!("{label}%2egoogleapis.com"),
            ] {
                prop_assert!(!default.allows(&host), "{}", host);
            }
        }

        #[test]
        fn an_allowed_host_in_any_case_is_allowed_in_lower_case(
            label in label(),
            flips in proptest::collection::vec(any::<bool>(), 1..8),
        ) {
            let host = format!("{label}.googleapis.com");
            let mixed = random_case(&host, &flips);
            prop_assert_eq!(ProxyHosts::default().allowed(&mixed), Some(host.to_ascii_lowercase()));
        }

        #[test]
        fn forbidden_request_headers_never_pass_in_any_case(headers in headers()) {
            let input: Vec<(String, String)> =
                headers.iter().map(|(n, v, flips)| (random_case(n, flips), v.clone())).collect();
            let kept = filter_request_headers(input.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            let named: HashSet<String> = input
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
                .collect();
            for (name, _) in &kept {
                prop_assert_eq!(name, &name.to_ascii_lowercase());
                prop_assert!(!FORBIDDEN_REQUEST.contains(&name.as_str()), "{}", name);
                prop_assert!(!named.contains(name), "{}", name);
            }
            // Everything else passes, in order.
            let expected: Vec<(String, String)> = input
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .filter(|(n, _)| {
                    !FORBIDDEN_REQUEST.contains(&n.as_str())
                        && !HOP_BY_HOP.contains(&n.as_str())
                        && !NEVER_SENT.contains(&n.as_str())
                        && !n.starts_with("x-forwarded-")
                        && !named.contains(n)
                })
                .collect();
            prop_assert_eq!(kept, expected);
        }

        #[test]
        fn only_meaningful_response_headers_pass_in_any_case(headers in headers()) {
            let input: Vec<(String, String)> =
                headers.iter().map(|(n, v, flips)| (random_case(n, flips), v.clone())).collect();
            let kept = filter_response_headers(input.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            for (name, _) in &kept {
                prop_assert_eq!(name, &name.to_ascii_lowercase());
                prop_assert!(name != "set-cookie" && !HOP_BY_HOP.contains(&name.as_str()), "{}", name);
                prop_assert!(
                    PASSED_BACK.contains(&name.as_str())
                        || name.starts_with("x-goog-")
                        || name.starts_with("x-guploader-"),
                    "{}", name
                );
            }
        }

        #[test]
        fn no_path_and_query_moves_a_request_off_its_host(
            path in "/[ -~\\t\\r\\n\u{e9}]{0,40}",
            prefixed in any::<bool>(),
        ) {
            let base = Url::parse(if prefixed { "http://127.0.0.1:9000/fake" } else { "http://127.0.0.1:9000" }).unwrap();
            let direct = target_url(None, "gmail.googleapis.com", &path).unwrap();
            prop_assert_eq!(direct.scheme(), "https");
            prop_assert_eq!(direct.host_str(), Some("gmail.googleapis.com"));
            prop_assert_eq!(direct.port(), None);
            let mapped = target_url(Some(&base), "gmail.googleapis.com", &path).unwrap();
            prop_assert_eq!(mapped.host_str(), Some("127.0.0.1"));
            prop_assert_eq!(mapped.port(), Some(9000));
            prop_assert!(mapped.path().starts_with(if prefixed { "/fake/" } else { "/" }), "{}", mapped);
            for url in [&direct, &mapped] {
                prop_assert!(url.username().is_empty() && url.password().is_none());
                prop_assert_eq!(url.fragment(), None);
                prop_assert!(!url.as_str().bytes().any(|b| b.is_ascii_control() || b == b' '), "{}", url);
                // The URL reads back the same: nothing in it is ambiguous.
                let again = Url::parse(url.as_str()).ok();
                prop_assert_eq!(again.as_ref(), Some(url));
            }
        }
    }
}
