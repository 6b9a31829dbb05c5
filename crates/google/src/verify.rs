//! Google ID-token verification ([`IdTokenVerifier`]): RS256 with Google's published keys (aws-lc-rs, each key
//! parsed once), then every claim check done here against the caller's `now`.
//!
//! A token that passed is remembered by its SHA-256 digest (see [`VerifiedTokens`]), so the same Bearer token
//! presented again costs a digest, a map lookup and the time checks instead of an RSA verification.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use offline_access_domain::{
    Email, IdToken, IdTokenVerifier, Profile, Subject, VerifiedIdToken, VerifyError,
};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::jwks::{KeyCache, SigningKey};

/// The issuers Google uses in ID tokens.
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// Longest `exp - iat` accepted (Google issues one hour).
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Largest token accepted, checked before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest RS256 signature (an 8192-bit key), decoded.
const MAX_SIGNATURE_LEN: usize = 1024;

/// The claim rules, fixed at construction.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) client_id: String,
    pub(crate) allowed_azp: Vec<String>,
    pub(crate) hosted_domain: Option<String>,
    pub(crate) leeway: Duration,
}

/// Verifies Google ID tokens against Google's JWKS (cached; see the crate docs for the cache rules).
pub struct JwksVerifier {
    pub(crate) cache: KeyCache,
    pub(crate) rules: Rules,
    pub(crate) verified: VerifiedTokens,
}

/// Tokens that passed verification, by the SHA-256 digest of their text (the token itself is not kept).
///
/// A remembered token is accepted again only when (a) the key that verified its signature is still the one the
/// key cache returns for its `kid` — the same lookup, with the same freshness, refetch and grace rules, as a
/// first verification, so a key Google retired, or a refetched key set, sends the token through the full
/// verification again — and (b) its `exp`, `iat` and `nbf` pass against the new `now`, in the same order as the
/// full check. Everything else the rules check (`iss`, `aud`, `azp`, `hd`, `sub`, the profile) is fixed by the
/// token's bytes and the verifier's rules, so the answer is the one a full verification would give. Refused
/// tokens are never remembered. Bounded in entries (least recently and least frequently used go first).
pub(crate) struct VerifiedTokens {
    entries: Option<quick_cache::sync::Cache<[u8; 32], Arc<Remembered>>>,
}

/// What is kept of a verified token.
struct Remembered {
    kid: String,
    key: Arc<SigningKey>,
    times: Times,
    verified: VerifiedIdToken,
}

impl VerifiedTokens {
    /// Remembers up to `capacity` tokens; 0 turns remembering off.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
        }
    }

    fn get(&self, digest: &[u8; 32]) -> Option<Arc<Remembered>> {
        self.entries.as_ref()?.get(digest)
    }
}

/// The time claims of a token, checked again on every use.
#[derive(Debug, Clone, Copy)]
struct Times {
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
}

/// Where an ID token came from, which decides the checks that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A Bearer from the app: every check.
    Bearer,
    /// The token endpoint's answer to this server (OpenID Connect Core §3.1.3.7).
    TokenEndpoint,
}

impl Times {
    /// `exp` (exclusive, after the leeway), then `iat` and `nbf` (not after now plus the leeway).
    fn check(self, leeway: Duration, now: OffsetDateTime) -> Result<(), VerifyError> {
        self.check_expiry(leeway, now)?;
        let now_secs = i128::from(now.unix_timestamp());
        let leeway = i128::from(leeway.as_secs());
        if i128::from(self.iat) > now_secs + leeway {
            return Err(VerifyError::IssuedInFuture);
        }
        if self
            .nbf
            .is_some_and(|nbf| i128::from(nbf) > now_secs + leeway)
        {
            return Err(VerifyError::IssuedInFuture);
        }
        Ok(())
    }

    /// `exp` only (exclusive, after the leeway): what §3.1.3.7 requires of a token from the token endpoint.
    fn check_expiry(self, leeway: Duration, now: OffsetDateTime) -> Result<(), VerifyError> {
        let now_secs = i128::from(now.unix_timestamp());
        if now_secs >= i128::from(self.exp) + i128::from(leeway.as_secs()) {
            return Err(VerifyError::Expired);
        }
        Ok(())
    }
}

impl std::fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl JwksVerifier {
    /// Loads Google's signing keys now unless fresh ones are cached (call at start-up; readiness).
    ///
    /// # Errors
    /// [`VerifyError::KeysUnavailable`] when the keys cannot be fetched and no cached keys are within grace.
    pub async fn prefetch(&self) -> Result<(), VerifyError> {
        self.cache.prefetch().await
    }

    async fn verify_inner(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdToken, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed("token too large"));
        }
        let fingerprint = self.verified.entries.as_ref().map(|_| {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
            bytes
        });
        if let Some(remembered) = fingerprint.and_then(|f| self.verified.get(&f)) {
            // The same lookup a full verification of these bytes (same `kid`) would make, with the same errors.
            let key = self
                .cache
                .key(&remembered.kid, kid_is_plausible(&remembered.kid))
                .await?;
            if Arc::ptr_eq(&key, &remembered.key) {
                remembered.times.check(self.rules.leeway, now)?;
                metrics::counter!("offline_access_id_token_remembered_total").increment(1);
                return Ok(remembered.verified.clone());
            }
            // The key set was refetched since: verify from scratch (and remember again if it still passes).
        }
        let (verified, kid, key, times) = self.verify_fully(token, now).await?;
        if let (Some(entries), Some(fingerprint)) = (&self.verified.entries, fingerprint) {
            entries.insert(
                fingerprint,
                Arc::new(Remembered {
                    kid,
                    key,
                    times,
                    verified: verified.clone(),
                }),
            );
        }
        Ok(verified)
    }

    /// Every check, from the token's text: segments, header, key, signature, claims.
    async fn verify_fully(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(VerifiedIdToken, String, Arc<SigningKey>, Times), VerifyError> {
        let (verified, kid, key, times) = self.verify_with(token, now, Source::Bearer).await?;
        let key = key.ok_or(VerifyError::UnknownKey)?;
        Ok((verified, kid, key, times))
    }

    /// The checks for `source`: from a Bearer, all of them; from the token endpoint, those OpenID Connect Core
    /// §3.1.3.7 requires there (the signature when its key is known, `iat` in the future tolerated).
    async fn verify_with(
        &self,
        token: &str,
        now: OffsetDateTime,
        source: Source,
    ) -> Result<(VerifiedIdToken, String, Option<Arc<SigningKey>>, Times), VerifyError> {
        let jws = Jws::parse(token, MAX_TOKEN_LEN)?;
        // From the token endpoint, over the TLS connection this server opened: Google vouches for the token even
        // when its key is not published yet or the keys cannot be fetched (§3.1.3.7 step 6).
        let key = jws
            .verify(&self.cache, source == Source::TokenEndpoint)
            .await?;
        let claims_json = jws.payload()?;
        let claims: Claims<'_> = parse_object(&claims_json)
            .ok_or(VerifyError::Malformed("payload is not a JSON object"))?;
        let (verified, times) = check_claims_and_times(&claims, &self.rules, now, source)?;
        Ok((verified, jws.kid, key, times))
    }
}

/// A compact JWS (RFC 7515) whose header passed: RS256, no `crit`. Its signature is checked by [`Jws::verify`].
/// Shared by ID tokens and Security Event Tokens.
pub(crate) struct Jws<'t> {
    /// The header's `kid` (empty when absent or not a string).
    pub(crate) kid: String,
    /// `header.payload`: the signed bytes.
    signed: &'t str,
    payload_b64: &'t str,
    signature_b64: &'t str,
}

impl<'t> Jws<'t> {
    /// Splits `token` (at most `max_len` bytes) and checks its header, before any key lookup.
    ///
    /// # Errors
    /// [`VerifyError::Malformed`] (size, segments, header, `crit`), [`VerifyError::UnsupportedAlgorithm`].
    pub(crate) fn parse(token: &'t str, max_len: usize) -> Result<Self, VerifyError> {
        if token.len() > max_len {
            return Err(VerifyError::Malformed("token too large"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("not three segments"));
        };
        let header_json =
            decode_segment(header_b64).ok_or(VerifyError::Malformed("header is not base64url"))?;
        let header: Header<'_> = parse_object(&header_json)
            .ok_or(VerifyError::Malformed("header is not a JSON object"))?;
        // Algorithm first, before any key lookup: only RS256 (this refuses `none`, HS256, PS256, ES256, ...).
        if text_of(header.alg.as_ref()) != Some("RS256") {
            return Err(VerifyError::UnsupportedAlgorithm);
        }
        // We understand no JWS extension, so any `crit` header fails (RFC 7515 §4.1.11).
        if header.crit {
            return Err(VerifyError::Malformed("crit header"));
        }
        // `jku`, `x5u`, `jwk` and `x5c` are ignored: keys come only from the configured JWKS URL.
        let kid = text_of(header.kid.as_ref()).unwrap_or_default().to_owned();
        Ok(Self {
            kid,
            signed: &token[..header_b64.len() + 1 + payload_b64.len()],
            payload_b64,
            signature_b64,
        })
    }

    /// Verifies the signature with the key `cache` holds for the `kid` (a plausible unknown `kid` refetches the
    /// keys once, rate-limited); the key used, or `None` when `keyless` allowed going without (a token from the
    /// token endpoint whose plausible `kid` is not published yet, or whose keys cannot be fetched).
    ///
    /// # Errors
    /// [`VerifyError::UnknownKey`], [`VerifyError::KeysUnavailable`], [`VerifyError::BadSignature`].
    pub(crate) async fn verify(
        &self,
        cache: &KeyCache,
        keyless: bool,
    ) -> Result<Option<Arc<SigningKey>>, VerifyError> {
        let plausible = kid_is_plausible(&self.kid);
        let key = match cache.key(&self.kid, plausible).await {
            Ok(key) => key,
            // Only a `kid` shaped like Google's: a token without one, or with a path or SQL in it, is no key
            // rotation in progress.
            Err(VerifyError::UnknownKey | VerifyError::KeysUnavailable) if keyless && plausible => {
                tracing::info!(
                    "ID token from the token endpoint accepted without its key (unknown or unavailable): the TLS connection vouches for it"
                );
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let (signature, signature_len) =
            decode_signature(self.signature_b64).ok_or(VerifyError::BadSignature)?;
        if !key.verifies(self.signed.as_bytes(), &signature[..signature_len]) {
            return Err(VerifyError::BadSignature);
        }
        Ok(Some(key))
    }

    /// The payload, base64url-decoded (its signature must be verified before it is trusted).
    ///
    /// # Errors
    /// [`VerifyError::Malformed`].
    pub(crate) fn payload(&self) -> Result<Vec<u8>, VerifyError> {
        decode_segment(self.payload_b64).ok_or(VerifyError::Malformed("payload is not base64url"))
    }
}

/// The signature segment decoded (into a buffer on the stack), when it is base64url of at most
/// [`MAX_SIGNATURE_LEN`] bytes.
fn decode_signature(segment: &str) -> Option<([u8; MAX_SIGNATURE_LEN], usize)> {
    let mut buffer = [0u8; MAX_SIGNATURE_LEN];
    let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode_slice(segment, &mut buffer)
        .ok()?;
    Some((buffer, len))
}

/// A base64url (unpadded) segment decoded.
fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
}

#[async_trait]
impl IdTokenVerifier for JwksVerifier {
    async fn verify(
        &self,
        token: &IdToken,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdToken, VerifyError> {
        let result = self
            .verify_inner(token.expose_secret(), now)
            .instrument(tracing::debug_span!("google.verify"))
            .await;
        match &result {
            Ok(verified) => tracing::debug!(sub = %verified.subject, "ID token verified"),
            Err(e) => tracing::info!(reason = e.reason(), "ID token refused"),
        }
        metrics::counter!(
            "offline_access_id_token_verifications_total",
            "outcome" => match &result { Ok(_) => "ok", Err(e) => e.reason() }
        )
        .increment(1);
        result
    }

    async fn verify_exchanged(
        &self,
        token: &IdToken,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdToken, VerifyError> {
        let result = self
            .verify_with(token.expose_secret(), now, Source::TokenEndpoint)
            .instrument(tracing::debug_span!("google.verify_exchanged"))
            .await
            .map(|(verified, ..)| verified);
        if let Err(e) = &result {
            tracing::warn!(
                reason = e.reason(),
                "ID token from the token endpoint refused"
            );
        }
        metrics::counter!(
            "offline_access_id_token_verifications_total",
            "outcome" => match &result { Ok(_) => "ok_exchanged", Err(e) => e.reason() }
        )
        .increment(1);
        result
    }

    fn keys_loaded(&self) -> bool {
        self.cache.loaded()
    }
}

/// Whether a `kid` could be one of Google's (40 hex characters today): only these may trigger a refetch.
pub(crate) fn kid_is_plausible(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 128
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A JSON value as far as the rules need it; strings borrow from the decoded segment unless they hold escapes.
#[derive(Debug)]
pub(crate) enum Claim<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Text(Cow<'a, str>),
    List(Vec<Claim<'a>>),
    /// A float, an integer beyond `i64`, or an object: never a valid value of a claim we read.
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Claim<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ClaimVisitor)
    }
}

struct ClaimVisitor;

impl<'de> Visitor<'de> for ClaimVisitor {
    type Value = Claim<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Claim::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Claim::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Claim::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Claim::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Claim::Other, Claim::Int))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Claim::Other)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Claim::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Claim::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Claim::Text(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Claim::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Claim::Other)
    }
}

/// The JOSE header members the rules read. A member named twice is refused (serde's duplicate-field check), so
/// no member is read one way here and another way elsewhere.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Option<Claim<'a>>,
    #[serde(borrow)]
    kid: Option<Claim<'a>>,
    /// Present at all (even `null`).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// The claims the rules read; others are skipped unparsed. A claim named twice is refused.
#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    iss: Option<Claim<'a>>,
    #[serde(borrow)]
    aud: Option<Claim<'a>>,
    #[serde(borrow)]
    azp: Option<Claim<'a>>,
    #[serde(borrow)]
    exp: Option<Claim<'a>>,
    #[serde(borrow)]
    iat: Option<Claim<'a>>,
    #[serde(borrow)]
    nbf: Option<Claim<'a>>,
    #[serde(borrow)]
    sub: Option<Claim<'a>>,
    #[serde(borrow)]
    hd: Option<Claim<'a>>,
    #[serde(borrow)]
    email: Option<Claim<'a>>,
    #[serde(borrow)]
    email_verified: Option<Claim<'a>>,
    #[serde(borrow)]
    name: Option<Claim<'a>>,
    #[serde(borrow)]
    picture: Option<Claim<'a>>,
    #[serde(borrow)]
    given_name: Option<Claim<'a>>,
    #[serde(borrow)]
    family_name: Option<Claim<'a>>,
    #[serde(borrow)]
    locale: Option<Claim<'a>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// Parses one JSON object (not an array: derived structs would read one positionally) with nothing after it.
pub(crate) fn parse_object<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Option<T> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let value = T::deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(value)
}

/// The string, when the value is one.
pub(crate) fn text_of<'c>(claim: Option<&'c Claim<'_>>) -> Option<&'c str> {
    match claim {
        Some(Claim::Text(s)) => Some(s),
        _ => None,
    }
}

/// An optional string claim: absent or `null` is `None`; anything but a string is a bad claim.
fn optional_string<'c>(
    claim: &'c Option<Claim<'_>>,
    name: &'static str,
) -> Result<Option<&'c str>, VerifyError> {
    match claim {
        None | Some(Claim::Null) => Ok(None),
        Some(Claim::Text(s)) => Ok(Some(s)),
        Some(_) => Err(VerifyError::BadClaim(name)),
    }
}

/// A required integer time claim (seconds since the epoch).
fn required_time(claim: &Option<Claim<'_>>, name: &'static str) -> Result<i64, VerifyError> {
    match claim {
        Some(Claim::Int(t)) => Ok(*t),
        _ => Err(VerifyError::BadClaim(name)),
    }
}

/// Checks every claim rule, in a fixed order, at `now`, and returns the time claims too (checked again whenever
/// a remembered token is used). The signature must already be verified.
fn check_claims_and_times(
    claims: &Claims<'_>,
    rules: &Rules,
    now: OffsetDateTime,
    source: Source,
) -> Result<(VerifiedIdToken, Times), VerifyError> {
    // iss
    let issuer = optional_string(&claims.iss, "iss")?.ok_or(VerifyError::BadClaim("iss"))?;
    if !GOOGLE_ISSUERS.contains(&issuer) {
        return Err(VerifyError::WrongIssuer);
    }
    // aud: exactly our client ID, or a one-element list of it.
    match &claims.aud {
        Some(Claim::Text(aud)) if *aud == rules.client_id => {}
        Some(Claim::List(list))
            if list.len() == 1 && text_of(list.first()) == Some(rules.client_id.as_str()) => {}
        Some(Claim::Text(_) | Claim::List(_)) => return Err(VerifyError::WrongAudience),
        _ => return Err(VerifyError::BadClaim("aud")),
    }
    // azp: when Android client IDs are configured, the effective azp (the claim, or aud when absent) must be
    // one of them or our own client ID.
    let azp = optional_string(&claims.azp, "azp")?;
    if !rules.allowed_azp.is_empty() {
        let effective = azp.unwrap_or(rules.client_id.as_str());
        if effective != rules.client_id && !rules.allowed_azp.iter().any(|a| a == effective) {
            return Err(VerifyError::DisallowedAuthorizedParty);
        }
    }
    // exp, iat (and nbf when present): integers, leeway both ways, bounded lifetime.
    let exp = required_time(&claims.exp, "exp")?;
    let iat = required_time(&claims.iat, "iat")?;
    let nbf = match &claims.nbf {
        None | Some(Claim::Null) => None,
        Some(Claim::Int(t)) => Some(*t),
        Some(_) => return Err(VerifyError::BadClaim("nbf")),
    };
    let expires_at =
        OffsetDateTime::from_unix_timestamp(exp).map_err(|_| VerifyError::BadClaim("exp"))?;
    let issued_at =
        OffsetDateTime::from_unix_timestamp(iat).map_err(|_| VerifyError::BadClaim("iat"))?;
    let lifetime = i128::from(exp) - i128::from(iat);
    if lifetime <= 0 {
        return Err(VerifyError::BadClaim("exp"));
    }
    if lifetime > i128::from(MAX_LIFETIME.as_secs()) {
        return Err(VerifyError::LifetimeTooLong);
    }
    let times = Times { exp, iat, nbf };
    match source {
        Source::Bearer => times.check(rules.leeway, now)?,
        Source::TokenEndpoint => times.check_expiry(rules.leeway, now)?,
    }
    // sub
    let subject = optional_string(&claims.sub, "sub")?
        .and_then(|s| Subject::parse(s).ok())
        .ok_or(VerifyError::BadClaim("sub"))?;
    // hd
    let hd = optional_string(&claims.hd, "hd")?;
    if let Some(required) = &rules.hosted_domain
        && !hd.is_some_and(|hd| hd.eq_ignore_ascii_case(required))
    {
        return Err(VerifyError::WrongHostedDomain);
    }
    // Profile.
    let email = optional_string(&claims.email, "email")?
        .map(|e| Email::parse(e).map_err(|_| VerifyError::BadClaim("email")))
        .transpose()?;
    let email_verified = match &claims.email_verified {
        None | Some(Claim::Null) => false,
        Some(Claim::Bool(b)) => *b,
        Some(Claim::Text(s)) if s == "true" => true,
        Some(Claim::Text(s)) if s == "false" => false,
        Some(_) => return Err(VerifyError::BadClaim("email_verified")),
    };
    let text = |claim: &Option<Claim<'_>>, name: &'static str| {
        optional_string(claim, name).map(|v| v.map(str::to_owned))
    };
    let profile = Profile {
        email,
        email_verified,
        name: text(&claims.name, "name")?,
        picture: text(&claims.picture, "picture")?,
        given_name: text(&claims.given_name, "given_name")?,
        family_name: text(&claims.family_name, "family_name")?,
        locale: text(&claims.locale, "locale")?,
        hd: hd.map(str::to_owned),
    };
    let verified = VerifiedIdToken {
        subject,
        profile,
        issuer: issuer.to_owned(),
        audience: rules.client_id.clone(),
        authorized_party: azp.map(str::to_owned),
        issued_at,
        expires_at,
    };
    Ok((verified, times))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: i64 = 1_800_000_000;

    fn check_claims(
        json: &[u8],
        rules: &Rules,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdToken, VerifyError> {
        let claims: Claims<'_> = parse_object(json).unwrap();
        check_claims_and_times(&claims, rules, now, Source::Bearer).map(|(verified, _)| verified)
    }

    fn rules() -> Rules {
        Rules {
            client_id: "web.apps.googleusercontent.com".into(),
            allowed_azp: vec![],
            hosted_domain: None,
            leeway: Duration::from_secs(60),
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap()
    }

    fn claims(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn valid() -> Value {
        json!({
            "iss": "https://accounts.google.com", "aud": "web.apps.googleusercontent.com",
            "sub": "110169484474386276334", "iat": NOW - 10, "exp": NOW + 3590,
            "email": "alice@example.com", "email_verified": true, "name": "Alice"
        })
    }

    #[test]
    fn a_valid_claim_set_yields_the_profile() {
        let v = check_claims(&claims(valid()), &rules(), now()).unwrap();
        assert_eq!(v.subject.as_str(), "110169484474386276334");
        assert_eq!(v.profile.email.unwrap().as_str(), "alice@example.com");
        assert!(v.profile.email_verified);
        assert_eq!(v.profile.name.as_deref(), Some("Alice"));
        assert_eq!(v.expires_at.unix_timestamp(), NOW + 3590);
    }

    #[test]
    fn exp_boundary_is_exclusive_after_the_leeway() {
        let mut c = valid();
        c["exp"] = json!(NOW - 60);
        c["iat"] = json!(NOW - 600);
        assert_eq!(
            check_claims(&claims(c.clone()), &rules(), now()).err(),
            Some(VerifyError::Expired)
        );
        c["exp"] = json!(NOW - 59);
        assert!(check_claims(&claims(c), &rules(), now()).is_ok());
    }

    #[test]
    fn duplicate_names_arrays_and_trailing_text_are_not_claim_sets() {
        assert!(parse_object::<Claims<'_>>(br#"{"sub":"a","sub":"b"}"#).is_none());
        assert!(parse_object::<Claims<'_>>(br#"{"sub":"a"} x"#).is_none());
        assert!(parse_object::<Claims<'_>>(br#"["iss", "aud"]"#).is_none());
        assert!(parse_object::<Header<'_>>(br#"{"alg":"RS256","alg":"none"}"#).is_none());
        assert!(parse_object::<Claims<'_>>(b" {\"sub\": \"a\"} ").is_some());
    }

    #[test]
    fn claim_values_keep_their_json_types() {
        let claims: Claims<'_> = parse_object(
            br#"{"iss":"a\u0062c","aud":["x",null,1.5],"exp":18446744073709551615,"iat":-5,
                "email_verified":true,"name":{"x":[1]},"sub":"plain"}"#,
        )
        .unwrap();
        assert!(matches!(&claims.iss, Some(Claim::Text(Cow::Owned(s))) if s == "abc"));
        assert!(matches!(
            &claims.sub,
            Some(Claim::Text(Cow::Borrowed("plain")))
        ));
        assert!(
            matches!(&claims.aud, Some(Claim::List(l)) if matches!(l.as_slice(), [Claim::Text(_), Claim::Null, Claim::Other]))
        );
        assert!(matches!(claims.exp, Some(Claim::Other)), "beyond i64");
        assert!(matches!(claims.iat, Some(Claim::Int(-5))));
        assert!(matches!(claims.email_verified, Some(Claim::Bool(true))));
        assert!(matches!(claims.name, Some(Claim::Other)));
        assert!(claims.nbf.is_none());
    }

    #[test]
    fn a_crit_header_counts_even_when_null() {
        let header: Header<'_> = parse_object(br#"{"alg":"RS256","crit":null}"#).unwrap();
        assert!(header.crit);
        let header: Header<'_> = parse_object(br#"{"alg":"RS256","kid":"k"}"#).unwrap();
        assert!(!header.crit);
        assert_eq!(text_of(header.kid.as_ref()), Some("k"));
    }

    #[test]
    fn plausible_kids_are_short_and_plain() {
        assert!(kid_is_plausible("0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"));
        assert!(!kid_is_plausible("../../etc/passwd"));
        assert!(!kid_is_plausible("1' OR '1'='1"));
        assert!(!kid_is_plausible(""));
    }
}
