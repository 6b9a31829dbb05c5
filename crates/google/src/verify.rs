//! Google ID-token verification ([`IdTokenVerifier`]): RS256 with Google's published keys, then every claim
//! check done here against the caller's `now` (jsonwebtoken is used only for the signature).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use offline_access_domain::{
    Email, IdToken, IdTokenVerifier, Profile, Subject, VerifiedIdToken, VerifyError,
};
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::jwks::KeyCache;

/// The issuers Google uses in ID tokens.
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// Longest `exp - iat` accepted (Google issues one hour).
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Largest token accepted, checked before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

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
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("not three segments"));
        };
        let header = decode_object(header_b64).map_err(|e| match e {
            ObjectError::Base64 => VerifyError::Malformed("header is not base64url"),
            ObjectError::Json => VerifyError::Malformed("header is not a JSON object"),
        })?;
        // Algorithm first, before any key lookup: only RS256 (this refuses `none`, HS256, PS256, ES256, ...).
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(VerifyError::UnsupportedAlgorithm);
        }
        // We understand no JWS extension, so any `crit` header fails (RFC 7515 §4.1.11).
        if header.contains_key("crit") {
            return Err(VerifyError::Malformed("crit header"));
        }
        // `jku`, `x5u`, `jwk` and `x5c` are ignored: keys come only from Google's configured JWKS URL.
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(VerifyError::UnknownKey)?;
        let key = self.cache.key(kid, kid_is_plausible(kid)).await?;
        let message_len = header_b64.len() + 1 + payload_b64.len();
        let message = &token.as_bytes()[..message_len];
        match jsonwebtoken::crypto::verify(signature_b64, message, &key, Algorithm::RS256) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(VerifyError::BadSignature),
        }
        let claims = decode_object(payload_b64).map_err(|e| match e {
            ObjectError::Base64 => VerifyError::Malformed("payload is not base64url"),
            ObjectError::Json => VerifyError::Malformed("payload is not a JSON object"),
        })?;
        check_claims(&claims, &self.rules, now)
    }
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

    fn keys_loaded(&self) -> bool {
        self.cache.keys_loaded()
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

enum ObjectError {
    Base64,
    Json,
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, ObjectError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| ObjectError::Base64)?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let object = deserializer
        .deserialize_map(StrictObject)
        .map_err(|_| ObjectError::Json)?;
    deserializer.end().map_err(|_| ObjectError::Json)?;
    Ok(object)
}

/// A JSON object visitor that refuses duplicate member names (a token with two `sub`s or two `aud`s is refused
/// rather than read one way here and another way elsewhere).
struct StrictObject;

impl<'de> Visitor<'de> for StrictObject {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object without duplicate names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.insert(key, value).is_some() {
                return Err(A::Error::custom("duplicate name"));
            }
        }
        Ok(map)
    }
}

fn optional_string<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, VerifyError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(VerifyError::BadClaim(name)),
    }
}

fn required_time(claims: &Map<String, Value>, name: &'static str) -> Result<i64, VerifyError> {
    claims
        .get(name)
        .and_then(Value::as_i64)
        .ok_or(VerifyError::BadClaim(name))
}

/// Checks every claim rule, in a fixed order, at `now`. The signature must already be verified.
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<VerifiedIdToken, VerifyError> {
    // iss
    let issuer = optional_string(claims, "iss")?.ok_or(VerifyError::BadClaim("iss"))?;
    if !GOOGLE_ISSUERS.contains(&issuer) {
        return Err(VerifyError::WrongIssuer);
    }
    // aud: exactly our client ID, or a one-element list of it.
    match claims.get("aud") {
        Some(Value::String(aud)) if *aud == rules.client_id => {}
        Some(Value::Array(list))
            if list.len() == 1 && list[0].as_str() == Some(rules.client_id.as_str()) => {}
        Some(Value::String(_) | Value::Array(_)) => return Err(VerifyError::WrongAudience),
        _ => return Err(VerifyError::BadClaim("aud")),
    }
    // azp: when Android client IDs are configured, the effective azp (the claim, or aud when absent) must be
    // one of them or our own client ID.
    let azp = optional_string(claims, "azp")?;
    if !rules.allowed_azp.is_empty() {
        let effective = azp.unwrap_or(rules.client_id.as_str());
        if effective != rules.client_id && !rules.allowed_azp.iter().any(|a| a == effective) {
            return Err(VerifyError::DisallowedAuthorizedParty);
        }
    }
    // exp, iat (and nbf when present): integers, leeway both ways, bounded lifetime.
    let exp = required_time(claims, "exp")?;
    let iat = required_time(claims, "iat")?;
    let nbf = match claims.get("nbf") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or(VerifyError::BadClaim("nbf"))?),
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
    let now_secs = i128::from(now.unix_timestamp());
    let leeway = i128::from(rules.leeway.as_secs());
    if now_secs >= i128::from(exp) + leeway {
        return Err(VerifyError::Expired);
    }
    if i128::from(iat) > now_secs + leeway {
        return Err(VerifyError::IssuedInFuture);
    }
    if nbf.is_some_and(|nbf| i128::from(nbf) > now_secs + leeway) {
        return Err(VerifyError::IssuedInFuture);
    }
    // sub
    let subject = optional_string(claims, "sub")?
        .and_then(|s| Subject::parse(s).ok())
        .ok_or(VerifyError::BadClaim("sub"))?;
    // hd
    let hd = optional_string(claims, "hd")?;
    if let Some(required) = &rules.hosted_domain
        && !hd.is_some_and(|hd| hd.eq_ignore_ascii_case(required))
    {
        return Err(VerifyError::WrongHostedDomain);
    }
    // Profile.
    let email = optional_string(claims, "email")?
        .map(|e| Email::parse(e).map_err(|_| VerifyError::BadClaim("email")))
        .transpose()?;
    let email_verified = match claims.get("email_verified") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(_) => return Err(VerifyError::BadClaim("email_verified")),
    };
    let text = |name: &'static str| optional_string(claims, name).map(|v| v.map(str::to_owned));
    let profile = Profile {
        email,
        email_verified,
        name: text("name")?,
        picture: text("picture")?,
        given_name: text("given_name")?,
        family_name: text("family_name")?,
        locale: text("locale")?,
        hd: hd.map(str::to_owned),
    };
    Ok(VerifiedIdToken {
        subject,
        profile,
        issuer: issuer.to_owned(),
        audience: rules.client_id.clone(),
        authorized_party: azp.map(str::to_owned),
        issued_at,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

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

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
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
    fn duplicate_claim_names_are_malformed() {
        let segment =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"a","sub":"b"}"#);
        assert!(decode_object(&segment).is_err());
        let segment = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"a"} x"#);
        assert!(decode_object(&segment).is_err());
    }

    #[test]
    fn plausible_kids_are_short_and_plain() {
        assert!(kid_is_plausible("0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"));
        assert!(!kid_is_plausible("../../etc/passwd"));
        assert!(!kid_is_plausible("1' OR '1'='1"));
        assert!(!kid_is_plausible(""));
    }
}
