//! Documents fetched from Google and cached: `max-age` minus `Age`, single-flight fetches and a bounded grace on
//! fetch failures ([`Cached`]); for Google's signing keys (JWKS) also a rate-limited refetch on an unknown `kid`
//! ([`KeyCache`]). The ID-token verifier and the RISC verifier each hold one key cache; the RISC discovery document
//! is cached the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use offline_access_domain::{Clock, VerifyError};
use reqwest::StatusCode;
use reqwest::header::{AGE, CACHE_CONTROL, HeaderMap};
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;

use crate::http::{self, Failure};

/// Refetches caused by an unknown `kid` happen at most this often.
pub const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch, no new fetch is tried for this long (cached keys or `KeysUnavailable` meanwhile).
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// Cache lifetime when Google sends no `max-age`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Longest cache lifetime we accept, whatever `max-age` says.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest document (a JWKS, a discovery document) we read.
const MAX_BODY: usize = 256 * 1024;
/// Most keys we keep from one document.
const MAX_KEYS: usize = 32;

/// One of Google's RSA signing keys, parsed once (modulus, exponent, Montgomery context) so that a verification
/// is the RSA operation alone.
pub(crate) struct SigningKey(ParsedPublicKey);

impl SigningKey {
    /// Builds the key from big-endian modulus and exponent bytes (leading zero bytes allowed).
    fn from_components(n: &[u8], e: &[u8]) -> Option<Self> {
        let strip = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|x| *x == 0).collect() };
        let (n, e) = (strip(n), strip(e));
        RsaPublicKeyComponents { n: &n, e: &e }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .ok()
            .map(Self)
    }

    /// Whether `signature` is a valid RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message`.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0.verify_sig(message, signature).is_ok()
    }
}

/// A document [`Cached`] can hold: parsed once from the body of a `200` answer.
pub(crate) trait Document: Sized + Send + Sync + 'static {
    /// Parses the body; the error says why it is unusable (never quoting it).
    fn parse(body: &[u8]) -> Result<Self, String>;
}

/// Google's signing keys by `kid`.
pub(crate) struct Keys(HashMap<String, Arc<SigningKey>>);

impl Document for Keys {
    fn parse(body: &[u8]) -> Result<Self, String> {
        parse_jwks(body).map(Self)
    }
}

/// One fetched document.
pub(crate) struct Fetched<D> {
    pub(crate) doc: D,
    /// Counts successful fetches; a waiter compares it to know whether someone fetched while it waited.
    generation: u64,
    fresh_until: OffsetDateTime,
}

#[derive(Default)]
struct FetchState {
    generation: u64,
    last_unknown_kid_refetch: Option<OffsetDateTime>,
    last_failure: Option<OffsetDateTime>,
}

/// The document could not be fetched and no cached copy is within grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable;

/// A cached document. Reads take a short `RwLock`; fetches are serialised by an async mutex (single flight).
/// Failures are never cached: the next caller after [`FAILURE_BACKOFF`] fetches again.
pub(crate) struct Cached<D> {
    http: reqwest::Client,
    url: Url,
    /// The `endpoint` label of the request metrics, and the logs' name for the document.
    endpoint: &'static str,
    clock: Arc<dyn Clock>,
    grace: Duration,
    current: RwLock<Option<Arc<Fetched<D>>>>,
    fetch: tokio::sync::Mutex<FetchState>,
    /// Fetch attempts so far (success or failure): lets waiters share the outcome of the fetch they waited on.
    attempts: AtomicU64,
}

/// Google's signing keys, cached, with the unknown-`kid` refetch.
pub(crate) type KeyCache = Cached<Keys>;

/// What the cache decided for a `kid`.
enum Lookup {
    Found(Arc<SigningKey>),
    /// The set is fresh but lacks this kid.
    Missing {
        generation: u64,
    },
    /// No set, or a stale one: fetch first.
    NeedFetch,
}

impl<D: Document> Cached<D> {
    pub(crate) fn new(
        http: reqwest::Client,
        url: Url,
        endpoint: &'static str,
        clock: Arc<dyn Clock>,
        grace: Duration,
    ) -> Self {
        Self {
            http,
            url,
            endpoint,
            clock,
            grace,
            current: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            attempts: AtomicU64::new(0),
        }
    }

    /// Where the document is fetched from.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    fn snapshot(&self) -> Option<Arc<Fetched<D>>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn usable_until(&self, fetched: &Fetched<D>) -> OffsetDateTime {
        fetched.fresh_until.saturating_add(to_time(self.grace))
    }

    /// Whether the document is loaded and within its lifetime plus grace.
    pub(crate) fn loaded(&self) -> bool {
        let now = self.clock.now();
        self.snapshot()
            .is_some_and(|fetched| now < self.usable_until(&fetched))
    }

    /// A usable document: the cached one while fresh, else fetched now (see [`Cached::refresh`]).
    pub(crate) async fn get(&self) -> Result<Arc<Fetched<D>>, Unavailable> {
        let now = self.clock.now();
        match self.snapshot() {
            Some(fetched) if now < fetched.fresh_until => Ok(fetched),
            _ => self.refresh().await,
        }
    }

    /// Returns a usable document: fresh (fetched now or by the fetch we waited on), or stale within grace when the
    /// fetch failed. Single flight: concurrent callers share one fetch.
    async fn refresh(&self) -> Result<Arc<Fetched<D>>, Unavailable> {
        let seen_attempts = self.attempts.load(Ordering::Acquire);
        let mut state = self.fetch.lock().await;
        let now = self.clock.now();
        let current = self.snapshot();
        if let Some(fetched) = &current
            && now < fetched.fresh_until
        {
            return Ok(Arc::clone(fetched));
        }
        let someone_just_tried = self.attempts.load(Ordering::Acquire) != seen_attempts;
        let backing_off = state
            .last_failure
            .is_some_and(|at| now < at.saturating_add(to_time(FAILURE_BACKOFF)));
        if !someone_just_tried
            && !backing_off
            && let Ok(fetched) = self.fetch_now(&mut state, now).await
        {
            return Ok(fetched);
        }
        // The fetch failed (now or just before): serve the cached document within grace, else fail closed.
        match current {
            Some(fetched) if now < self.usable_until(&fetched) => {
                tracing::warn!(
                    document = self.endpoint,
                    "serving a cached Google document after a failed fetch"
                );
                Ok(fetched)
            }
            _ => Err(Unavailable),
        }
    }

    /// One GET of the document; on success installs it. Call with the fetch lock held.
    async fn fetch_now(
        &self,
        state: &mut FetchState,
        now: OffsetDateTime,
    ) -> Result<Arc<Fetched<D>>, ()> {
        self.attempts.fetch_add(1, Ordering::AcqRel);
        let started = Instant::now();
        let request = self.http.get(self.url.clone());
        let parsed = match http::send(request, MAX_BODY).await {
            Ok(answer) if answer.status == StatusCode::OK => D::parse(&answer.body)
                .map(|doc| (doc, cache_ttl(&answer.headers)))
                .map_err(|reason| ("protocol", reason)),
            Ok(answer) => Err((
                "unavailable",
                format!("HTTP status {}", answer.status.as_u16()),
            )),
            Err(Failure::Timeout) => Err(("timeout", "timed out".to_owned())),
            Err(Failure::Unreachable) => Err(("unavailable", "unreachable".to_owned())),
            Err(Failure::TooLarge) => Err(("protocol", "document too large".to_owned())),
        };
        match parsed {
            Ok((doc, ttl)) => {
                http::record(self.endpoint, "ok", started);
                state.generation += 1;
                state.last_failure = None;
                let fetched = Arc::new(Fetched {
                    doc,
                    generation: state.generation,
                    fresh_until: now.saturating_add(to_time(ttl)),
                });
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&fetched));
                tracing::info!(
                    document = self.endpoint,
                    ttl_secs = ttl.as_secs(),
                    "fetched a Google document"
                );
                Ok(fetched)
            }
            Err((outcome, reason)) => {
                http::record(self.endpoint, outcome, started);
                state.last_failure = Some(now);
                tracing::warn!(document = self.endpoint, %reason, "fetching a Google document failed");
                Err(())
            }
        }
    }
}

impl KeyCache {
    fn lookup(&self, kid: &str, now: OffsetDateTime) -> Lookup {
        match self.snapshot() {
            Some(set) if now < set.fresh_until => match set.doc.0.get(kid) {
                Some(key) => Lookup::Found(Arc::clone(key)),
                None => Lookup::Missing {
                    generation: set.generation,
                },
            },
            _ => Lookup::NeedFetch,
        }
    }

    /// The key for `kid`, fetching Google's keys when needed.
    ///
    /// `refetch_allowed` is false for `kid`s that cannot be Google's (they never cause a fetch).
    pub(crate) async fn key(
        &self,
        kid: &str,
        refetch_allowed: bool,
    ) -> Result<Arc<SigningKey>, VerifyError> {
        let now = self.clock.now();
        match self.lookup(kid, now) {
            Lookup::Found(key) => Ok(key),
            Lookup::Missing { generation } => {
                if refetch_allowed {
                    self.refetch_for_unknown_kid(kid, generation).await
                } else {
                    Err(VerifyError::UnknownKey)
                }
            }
            Lookup::NeedFetch => {
                let set = self
                    .refresh()
                    .await
                    .map_err(|Unavailable| VerifyError::KeysUnavailable)?;
                key_of(&set, kid)
            }
        }
    }

    /// Loads the keys unless a fresh set is cached (for start-up and readiness).
    pub(crate) async fn prefetch(&self) -> Result<(), VerifyError> {
        self.get()
            .await
            .map(|_| ())
            .map_err(|Unavailable| VerifyError::KeysUnavailable)
    }

    async fn refetch_for_unknown_kid(
        &self,
        kid: &str,
        seen_generation: u64,
    ) -> Result<Arc<SigningKey>, VerifyError> {
        let mut state = self.fetch.lock().await;
        let now = self.clock.now();
        if let Some(set) = self.snapshot()
            && set.generation != seen_generation
        {
            // Someone fetched while we waited: their answer is ours.
            return key_of(&set, kid);
        }
        let rate_limited = state
            .last_unknown_kid_refetch
            .is_some_and(|at| now < at.saturating_add(to_time(UNKNOWN_KID_REFETCH_INTERVAL)));
        if rate_limited {
            tracing::debug!(
                document = self.endpoint,
                "unknown kid; refetch rate-limited"
            );
            return Err(VerifyError::UnknownKey);
        }
        state.last_unknown_kid_refetch = Some(now);
        tracing::info!(
            document = self.endpoint,
            "unknown kid; refetching Google's signing keys"
        );
        match self.fetch_now(&mut state, now).await {
            Ok(set) => key_of(&set, kid),
            Err(()) => Err(VerifyError::UnknownKey),
        }
    }
}

fn key_of(set: &Fetched<Keys>, kid: &str) -> Result<Arc<SigningKey>, VerifyError> {
    set.doc
        .0
        .get(kid)
        .map(Arc::clone)
        .ok_or(VerifyError::UnknownKey)
}

fn to_time(duration: Duration) -> time::Duration {
    time::Duration::try_from(duration).unwrap_or(time::Duration::MAX)
}

/// Cache lifetime from `Cache-Control: max-age` minus `Age`; `no-store`/`no-cache` mean 0; bounded by
/// [`MAX_TTL`]; [`DEFAULT_TTL`] without `max-age`.
pub(crate) fn cache_ttl(headers: &HeaderMap) -> Duration {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Duration::ZERO;
            }
            if let Some(secs) = lower.strip_prefix("max-age=") {
                max_age = secs.trim_matches('"').parse::<u64>().ok().or(max_age);
            }
        }
    }
    let Some(max_age) = max_age else {
        return DEFAULT_TTL;
    };
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_secs(max_age.saturating_sub(age)).min(MAX_TTL)
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses a JWKS, keeping RSA signing keys usable for RS256 (2048 to 8192 bits) with a `kid`.
/// Other keys are skipped; a document with no usable key is an error.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<SigningKey>>, String> {
    use base64::Engine as _;
    let jwks: Jwks = serde_json::from_slice(body)
        .map_err(|e| format!("JWKS is not the expected JSON ({:?})", e.classify()))?;
    let mut keys = HashMap::new();
    for value in jwks.keys.into_iter().take(MAX_KEYS) {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let usable = jwk.kty == "RSA"
            && jwk.alg.as_deref().is_none_or(|a| a == "RS256")
            && jwk.use_.as_deref().is_none_or(|u| u == "sig");
        let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
            continue;
        };
        if !usable || !crate::verify::kid_is_plausible(&kid) {
            continue;
        }
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (Ok(n_bytes), Ok(e_bytes)) = (engine.decode(&n), engine.decode(&e)) else {
            continue;
        };
        let modulus = n_bytes.iter().skip_while(|b| **b == 0).count();
        if !(256..=1024).contains(&modulus) || e_bytes.is_empty() || e_bytes.len() > 8 {
            continue;
        }
        let Some(key) = SigningKey::from_components(&n_bytes, &e_bytes) else {
            continue;
        };
        keys.insert(kid, Arc::new(key));
    }
    if keys.is_empty() {
        return Err("JWKS holds no usable RS256 key".into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn ttl_is_max_age_minus_age() {
        let h = headers(&[
            (
                "cache-control",
                "public, max-age=21600, must-revalidate, no-transform",
            ),
            ("age", "600"),
        ]);
        assert_eq!(cache_ttl(&h), Duration::from_secs(21000));
    }

    #[test]
    fn ttl_is_zero_when_age_exceeds_max_age_or_caching_is_forbidden() {
        assert_eq!(
            cache_ttl(&headers(&[("cache-control", "max-age=10"), ("age", "20")])),
            Duration::ZERO
        );
        assert_eq!(
            cache_ttl(&headers(&[("cache-control", "no-store, max-age=100")])),
            Duration::ZERO
        );
    }

    #[test]
    fn ttl_defaults_without_max_age_and_is_capped() {
        assert_eq!(cache_ttl(&headers(&[])), DEFAULT_TTL);
        assert_eq!(
            cache_ttl(&headers(&[("cache-control", "max-age=99999999")])),
            MAX_TTL
        );
    }

    #[test]
    fn non_rsa_small_and_kidless_keys_are_skipped() {
        let n_small = "AQAB";
        let body = format!(
            r#"{{"keys":[
                {{"kty":"EC","kid":"ec","crv":"P-256","x":"AQAB","y":"AQAB"}},
                {{"kty":"RSA","kid":"small","n":"{n_small}","e":"AQAB"}},
                {{"kty":"RSA","n":"{n_small}","e":"AQAB"}},
                {{"kty":"RSA","kid":"hs","alg":"HS256","n":"{n_small}","e":"AQAB"}}
            ]}}"#
        );
        assert!(parse_jwks(body.as_bytes()).is_err());
        assert!(parse_jwks(b"not json").is_err());
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
    }
}
