//! Security Event Tokens (RFC 8417) from Google's RISC transmitter ([`SecurityEventVerifier`]): the discovery
//! document and its keys, cached like the ID-token keys; the JWS stage of the ID-token verifier; then the SET's
//! own claim rules and its events.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use offline_access_domain::risc::{
    RiscEvent, RiscSubject, SecurityEvent, SecurityEventVerifier, SetError, TokenIdentifier,
    TokenIdentifierAlg,
};
use offline_access_domain::{Clock, Subject, VerifyError};
use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tracing::Instrument;
use url::Url;

use crate::jwks::{Cached, Document, Fetched, KeyCache, Unavailable};
use crate::risc::bounded;
use crate::verify::{Claim, GOOGLE_ISSUERS, Jws, parse_object, text_of};

/// Largest Security Event Token accepted, checked before any parsing.
pub const MAX_SET_LEN: usize = 64 * 1024;
/// Longest `jti` accepted (Google's are 32 hex digits; a store keeps it for a week).
pub const MAX_JTI_LEN: usize = 256;

const TOKENS_REVOKED: &str = "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked";
const TOKEN_REVOKED: &str = "https://schemas.openid.net/secevent/oauth/event-type/token-revoked";
const SESSIONS_REVOKED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked";
const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
const ACCOUNT_ENABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
const CREDENTIAL_CHANGE_REQUIRED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/risc/event-type/verification";

/// The RISC discovery document (`/.well-known/risc-configuration`): what this receiver reads of it.
pub(crate) struct RiscConfiguration {
    /// The `iss` of every SET (Google's: `https://accounts.google.com/`, with the slash).
    issuer: String,
    /// Where the SETs' signing keys are published.
    jwks_uri: Url,
}

#[derive(Deserialize)]
struct RawConfiguration {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

impl Document for RiscConfiguration {
    fn parse(body: &[u8]) -> Result<Self, String> {
        let raw: RawConfiguration = parse_object(body)
            .ok_or("the RISC configuration is not a JSON object with string members")?;
        let issuer = raw
            .issuer
            .filter(|i| !i.is_empty())
            .ok_or("the RISC configuration has no issuer")?;
        let jwks_uri = raw
            .jwks_uri
            .and_then(|u| Url::parse(&u).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or("the RISC configuration has no http(s) jwks_uri")?;
        Ok(Self { issuer, jwks_uri })
    }
}

/// The claim rules, fixed at construction.
#[derive(Debug, Clone)]
pub(crate) struct SetRules {
    /// This server's client IDs: the web client and every `allowed_azp`.
    pub(crate) audiences: Vec<String>,
    /// How far in the future `iat` may be.
    pub(crate) leeway: Duration,
}

/// Verifies Google's Security Event Tokens (RISC) and parses their events.
///
/// The discovery document and the keys of its `jwks_uri` are cached by `Cache-Control: max-age` (minus `Age`),
/// served for `google.jwks_grace` past it while Google cannot be reached, and never cached when a fetch fails; an
/// unknown plausible `kid` refetches the keys at most once a minute.
pub struct RiscVerifier {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    grace: Duration,
    configuration: Cached<RiscConfiguration>,
    /// The key cache of the current `jwks_uri` (replaced if the discovery document names another).
    keys: RwLock<Option<Arc<KeyCache>>>,
    rules: SetRules,
}

impl std::fmt::Debug for RiscVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RiscVerifier")
            .field("configuration", &self.configuration.url().as_str())
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl RiscVerifier {
    pub(crate) fn new(
        http: reqwest::Client,
        configuration_url: Url,
        clock: Arc<dyn Clock>,
        grace: Duration,
        rules: SetRules,
    ) -> Self {
        let configuration = Cached::new(
            http.clone(),
            configuration_url,
            "risc_configuration",
            Arc::clone(&clock),
            grace,
        );
        Self {
            http,
            clock,
            grace,
            configuration,
            keys: RwLock::new(None),
            rules,
        }
    }

    /// Loads the discovery document and its keys unless fresh ones are cached (optional, at start-up).
    ///
    /// # Errors
    /// [`SetError::Unavailable`].
    pub async fn prefetch(&self) -> Result<(), SetError> {
        let configuration = self.configuration().await?;
        self.keys_for(&configuration.doc.jwks_uri)
            .prefetch()
            .await
            .map_err(|e| key_error(&e))
    }

    async fn configuration(&self) -> Result<Arc<Fetched<RiscConfiguration>>, SetError> {
        let fetched = self.configuration.get().await.map_err(|Unavailable| {
            SetError::Unavailable("Google's RISC configuration could not be fetched".into())
        })?;
        // Keys come over TLS, unless the discovery document itself came over plain HTTP (a local fake Google).
        if fetched.doc.jwks_uri.scheme() != "https" && self.configuration.url().scheme() == "https"
        {
            return Err(SetError::Unavailable(
                "the RISC configuration's jwks_uri is not https".into(),
            ));
        }
        Ok(fetched)
    }

    /// The key cache for `jwks_uri`: the current one, or a new one when the discovery document moved it.
    fn keys_for(&self, jwks_uri: &Url) -> Arc<KeyCache> {
        let current = |slot: &Option<Arc<KeyCache>>| {
            slot.as_ref()
                .filter(|keys| keys.url() == jwks_uri)
                .map(Arc::clone)
        };
        if let Some(keys) = current(&self.keys.read().unwrap_or_else(PoisonError::into_inner)) {
            return keys;
        }
        let mut slot = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(keys) = current(&slot) {
            return keys;
        }
        let keys = Arc::new(KeyCache::new(
            self.http.clone(),
            jwks_uri.clone(),
            "risc_jwks",
            Arc::clone(&self.clock),
            self.grace,
        ));
        *slot = Some(Arc::clone(&keys));
        keys
    }

    async fn verify_set(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<SecurityEvent, SetError> {
        // The header first (size, shape, RS256): garbage is refused without fetching anything.
        let jws = Jws::parse(token, MAX_SET_LEN).map_err(|e| key_error(&e))?;
        let configuration = self.configuration().await?;
        let keys = self.keys_for(&configuration.doc.jwks_uri);
        jws.verify(&keys, false).await.map_err(|e| key_error(&e))?;
        let payload = jws.payload().map_err(|e| key_error(&e))?;
        let claims: SetClaims<'_> = parse_object(&payload)
            .ok_or_else(|| invalid("the payload is not a JSON object (or names a claim twice)"))?;
        check_set(&claims, &configuration.doc.issuer, &self.rules, now)
    }
}

#[async_trait]
impl SecurityEventVerifier for RiscVerifier {
    async fn verify(&self, token: &str, now: OffsetDateTime) -> Result<SecurityEvent, SetError> {
        let result = self
            .verify_set(token, now)
            .instrument(tracing::debug_span!("google.verify_security_event"))
            .await;
        match &result {
            Ok(event) => {
                tracing::debug!(jti = %event.jti, events = event.events.len(), "security event token verified")
            }
            Err(e) => tracing::info!(error = %e, "security event token refused"),
        }
        metrics::counter!(
            "offline_access_security_event_verifications_total",
            "outcome" => match &result { Ok(_) => "ok", Err(e) => e.code().unwrap_or("unavailable") }
        )
        .increment(1);
        result
    }
}

fn invalid(why: &str) -> SetError {
    SetError::InvalidRequest(why.to_owned())
}

/// The JWS stage's errors in RFC 8935's terms.
fn key_error(e: &VerifyError) -> SetError {
    match e {
        VerifyError::KeysUnavailable => {
            SetError::Unavailable("Google's RISC signing keys could not be fetched".into())
        }
        VerifyError::UnsupportedAlgorithm => {
            SetError::InvalidKey("the algorithm is not RS256".into())
        }
        VerifyError::UnknownKey => {
            SetError::InvalidKey("the kid is not one of the published keys".into())
        }
        VerifyError::BadSignature => SetError::InvalidKey("the signature does not verify".into()),
        VerifyError::Malformed(why) => invalid(&format!("not a JWT: {why}")),
        other => invalid(other.reason()),
    }
}

/// The claims a SET's rules read; others are skipped unparsed. A claim named twice is refused.
#[derive(Deserialize)]
struct SetClaims<'a> {
    #[serde(borrow)]
    iss: Option<Claim<'a>>,
    #[serde(borrow)]
    aud: Option<Claim<'a>>,
    #[serde(borrow)]
    iat: Option<Claim<'a>>,
    #[serde(borrow)]
    jti: Option<Claim<'a>>,
    events: Option<Value>,
    /// The subject at the top level (RFC 8417 §2.2 transmitters that do not put it in the event).
    sub_id: Option<Value>,
}

/// Every claim rule, in order: `iss`, `aud`, `iat`, `jti`, `events`. No `exp` check (Google's samples accept a
/// SET of any age). The signature must already be verified.
fn check_set(
    claims: &SetClaims<'_>,
    issuer: &str,
    rules: &SetRules,
    now: OffsetDateTime,
) -> Result<SecurityEvent, SetError> {
    if text_of(claims.iss.as_ref()) != Some(issuer) {
        return Err(SetError::InvalidIssuer(
            "iss is not the RISC configuration's issuer".into(),
        ));
    }
    let ours = |aud: &str| rules.audiences.iter().any(|a| a == aud);
    let audience_ok = match &claims.aud {
        Some(Claim::Text(aud)) => ours(aud),
        Some(Claim::List(list)) => list.iter().any(|a| text_of(Some(a)).is_some_and(ours)),
        _ => false,
    };
    if !audience_ok {
        return Err(SetError::InvalidAudience(
            "aud names none of this server's client IDs".into(),
        ));
    }
    let Some(Claim::Int(iat)) = claims.iat else {
        return Err(invalid("iat is missing or not an integer"));
    };
    let issued_at =
        OffsetDateTime::from_unix_timestamp(iat).map_err(|_| invalid("iat is out of range"))?;
    let leeway = time::Duration::try_from(rules.leeway).unwrap_or(time::Duration::ZERO);
    if issued_at > now.saturating_add(leeway) {
        return Err(invalid("iat is in the future"));
    }
    let jti = match text_of(claims.jti.as_ref()) {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => jti.to_owned(),
        _ => return Err(invalid("jti is missing, empty or too long")),
    };
    let events = match &claims.events {
        Some(Value::Object(events)) if !events.is_empty() => events,
        _ => return Err(invalid("events is missing, empty or not an object")),
    };
    let events = events
        .iter()
        .map(|(uri, body)| parse_event(uri, body, claims.sub_id.as_ref(), issuer))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SecurityEvent {
        jti,
        issued_at,
        events,
    })
}

/// One entry of `events`: its type URI and its body, with the SET's `sub_id` as the subject when the body has
/// none.
fn parse_event(
    uri: &str,
    body: &Value,
    sub_id: Option<&Value>,
    issuer: &str,
) -> Result<RiscEvent, SetError> {
    let Value::Object(body) = body else {
        return Err(invalid("an event is not a JSON object"));
    };
    let subject = || {
        body.get("subject")
            .or(sub_id)
            .ok_or_else(|| invalid("an event has no subject"))
            .and_then(|s| parse_subject(s, issuer))
    };
    Ok(match uri {
        TOKENS_REVOKED => RiscEvent::TokensRevoked(subject()?),
        TOKEN_REVOKED => RiscEvent::TokenRevoked(subject()?),
        SESSIONS_REVOKED => RiscEvent::SessionsRevoked(subject()?),
        ACCOUNT_DISABLED => {
            RiscEvent::AccountDisabled(subject()?, optional_str(body, "reason")?.map(str::to_owned))
        }
        ACCOUNT_ENABLED => RiscEvent::AccountEnabled(subject()?),
        CREDENTIAL_CHANGE_REQUIRED => RiscEvent::CredentialChangeRequired(subject()?),
        VERIFICATION => RiscEvent::Verification(optional_str(body, "state")?.map(str::to_owned)),
        other => RiscEvent::Unsupported(other.to_owned()),
    })
}

/// A required string member.
fn required_text<'v>(object: &'v Map<String, Value>, name: &str) -> Result<&'v str, SetError> {
    object
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("the subject's {name} is missing or not a string")))
}

/// Whether a subject's `iss` names Google accounts: the RISC issuer, or the ID-token issuers with or without a
/// trailing slash.
fn is_google_issuer(iss: &str, risc_issuer: &str) -> bool {
    iss == risc_issuer || GOOGLE_ISSUERS.contains(&iss.strip_suffix('/').unwrap_or(iss))
}

/// Who an event is about: `iss-sub` or `id_token_claims` (an account), `oauth_token` (a refresh token); any
/// other type, another issuer or another token type is [`RiscSubject::Other`].
fn parse_subject(subject: &Value, risc_issuer: &str) -> Result<RiscSubject, SetError> {
    let Value::Object(subject) = subject else {
        return Err(invalid("a subject is not a JSON object"));
    };
    let kind = required_text(subject, "subject_type")?;
    match kind {
        "iss-sub" | "id_token_claims" => {
            let iss = if kind == "iss-sub" {
                Some(required_text(subject, "iss")?)
            } else {
                optional_str(subject, "iss")?
            };
            if let Some(iss) = iss
                && !is_google_issuer(iss, risc_issuer)
            {
                return Ok(RiscSubject::Other(format!(
                    "{kind} of another issuer ({})",
                    bounded(iss, 64)
                )));
            }
            let sub = required_text(subject, "sub")?;
            let sub = Subject::parse(sub).map_err(|_| invalid("the subject's sub is invalid"))?;
            Ok(RiscSubject::Account(sub))
        }
        "oauth_token" => {
            let token_type = required_text(subject, "token_type")?;
            if token_type != "refresh_token" {
                return Ok(RiscSubject::Other(format!(
                    "oauth_token of type {}",
                    bounded(token_type, 64)
                )));
            }
            let alg = TokenIdentifierAlg::parse(required_text(subject, "token_identifier_alg")?)
                .ok_or_else(|| invalid("the token_identifier_alg is not supported"))?;
            let identifier = TokenIdentifier::new(alg, required_text(subject, "token")?)
                .map_err(|e| invalid(&e.to_string()))?;
            Ok(RiscSubject::Token(identifier))
        }
        other => Ok(RiscSubject::Other(format!(
            "subject_type {}",
            bounded(other, 64)
        ))),
    }
}

/// An optional string member: absent or `null` is `None`; anything but a string is refused.
fn optional_str<'v>(
    object: &'v Map<String, Value>,
    name: &str,
) -> Result<Option<&'v str>, SetError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(&format!("{name} is not a string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISSUER: &str = "https://accounts.google.com/";
    const NOW: i64 = 1_800_000_000;

    fn rules() -> SetRules {
        SetRules {
            audiences: vec!["web".into(), "android".into()],
            leeway: Duration::from_secs(300),
        }
    }

    fn check(claims: &Value) -> Result<SecurityEvent, SetError> {
        let json = serde_json::to_vec(claims).unwrap();
        let claims: SetClaims<'_> = parse_object(&json).unwrap();
        check_set(
            &claims,
            ISSUER,
            &rules(),
            OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
        )
    }

    fn set(events: &Value) -> Value {
        json!({"iss": ISSUER, "aud": "web", "iat": NOW, "jti": "j1", "events": events})
    }

    fn account(sub: &str) -> Value {
        json!({"subject": {"subject_type": "iss-sub", "iss": ISSUER, "sub": sub}})
    }

    #[test]
    fn the_discovery_document_needs_an_issuer_and_an_http_jwks_uri() {
        let ok = RiscConfiguration::parse(
            br#"{"issuer":"https://accounts.google.com/","jwks_uri":"https://www.googleapis.com/oauth2/v3/certs","x":1}"#,
        )
        .unwrap();
        assert_eq!(ok.issuer, ISSUER);
        for bad in [
            r#"{"jwks_uri":"https://x/certs"}"#,
            r#"{"issuer":"","jwks_uri":"https://x/certs"}"#,
            r#"{"issuer":"i","jwks_uri":"file:///etc/passwd"}"#,
            r#"{"issuer":"i"}"#,
            r#"["issuer"]"#,
            "not json",
        ] {
            assert!(RiscConfiguration::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_subject_may_be_at_the_top_level_as_sub_id() {
        let mut claims = set(&json!({ SESSIONS_REVOKED: {} }));
        claims["sub_id"] = json!({"subject_type": "iss-sub", "iss": ISSUER, "sub": "42"});
        let event = check(&claims).unwrap();
        assert_eq!(
            event.events,
            [RiscEvent::SessionsRevoked(RiscSubject::Account(
                Subject::parse("42").unwrap()
            ))]
        );
        // The event's own subject wins over sub_id.
        let mut claims = set(&json!({ SESSIONS_REVOKED: account("7") }));
        claims["sub_id"] = json!({"subject_type": "iss-sub", "iss": ISSUER, "sub": "42"});
        assert_eq!(
            check(&claims).unwrap().events,
            [RiscEvent::SessionsRevoked(RiscSubject::Account(
                Subject::parse("7").unwrap()
            ))]
        );
    }

    #[test]
    fn subjects_of_other_issuers_types_and_tokens_are_other() {
        for subject in [
            json!({"subject_type": "iss-sub", "iss": "https://evil.example/", "sub": "1"}),
            json!({"subject_type": "email", "email": "a@example.com"}),
            json!({"subject_type": "oauth_token", "token_type": "access_token", "token_identifier_alg": "prefix", "token": "x"}),
        ] {
            let event = check(&set(&json!({ TOKENS_REVOKED: {"subject": subject} }))).unwrap();
            assert!(
                matches!(
                    &event.events[..],
                    [RiscEvent::TokensRevoked(RiscSubject::Other(_))]
                ),
                "{subject}"
            );
        }
    }

    #[test]
    fn google_issuers_are_accepted_with_or_without_a_slash() {
        for iss in [
            ISSUER,
            "https://accounts.google.com",
            "accounts.google.com",
            "accounts.google.com/",
        ] {
            assert!(is_google_issuer(iss, ISSUER), "{iss}");
        }
        assert!(!is_google_issuer(
            "https://accounts.google.com.evil/",
            ISSUER
        ));
        assert!(!is_google_issuer("http://accounts.google.com", ISSUER));
    }

    #[test]
    fn id_token_claims_subjects_name_the_account() {
        let event = check(&set(&json!({ ACCOUNT_ENABLED: {"subject": {
            "subject_type": "id_token_claims", "sub": "99", "email": "a@example.com"
        }}})))
        .unwrap();
        assert_eq!(
            event.events,
            [RiscEvent::AccountEnabled(RiscSubject::Account(
                Subject::parse("99").unwrap()
            ))]
        );
    }

    #[test]
    fn malformed_events_and_subjects_are_invalid_requests() {
        for events in [
            json!({ TOKENS_REVOKED: {} }),
            json!({ TOKENS_REVOKED: "x" }),
            json!({ TOKENS_REVOKED: {"subject": "x"} }),
            json!({ TOKENS_REVOKED: {"subject": {"subject_type": "iss-sub", "iss": ISSUER}} }),
            json!({ TOKENS_REVOKED: {"subject": {"subject_type": "iss-sub", "iss": ISSUER, "sub": ""}} }),
            json!({ TOKENS_REVOKED: {"subject": {"iss": ISSUER, "sub": "1"}} }),
            json!({ TOKEN_REVOKED: {"subject": {"subject_type": "oauth_token", "token_type": "refresh_token", "token_identifier_alg": "md5", "token": "x"}} }),
            json!({ TOKEN_REVOKED: {"subject": {"subject_type": "oauth_token", "token_type": "refresh_token", "token_identifier_alg": "prefix", "token": "short"}} }),
            json!({ ACCOUNT_DISABLED: {"subject": account("1")["subject"], "reason": 5} }),
            json!({ VERIFICATION: {"state": ["x"]} }),
        ] {
            assert!(
                matches!(check(&set(&events)), Err(SetError::InvalidRequest(_))),
                "{events}"
            );
        }
    }
}
