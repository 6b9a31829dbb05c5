//! The Standard Webhooks signature: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, the key being the
//! base64-decoded part of a `whsec_` secret. HMAC-SHA256 from aws-lc-rs (the workspace's one crypto stack).

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::{constant_time, hmac};
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use http::HeaderMap;
use secrecy::SecretString;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// The header carrying the message id (the same on every attempt).
pub const HEADER_ID: &str = "webhook-id";
/// The header carrying the attempt's time (Unix seconds).
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying the space-separated signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// The prefix of a serialised secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The shortest key accepted, in bytes (Standard Webhooks recommends 24 to 64).
pub const MIN_KEY_LEN: usize = 16;
/// How far a receiver should let `webhook-timestamp` be from its clock (Standard Webhooks: five minutes).
pub const DEFAULT_TOLERANCE: time::Duration = time::Duration::minutes(5);

/// Standard base64 with or without padding.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a secret was refused. Never quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// It does not start with `whsec_`.
    #[error("a webhook secret must start with `whsec_` followed by base64")]
    MissingPrefix,
    /// The part after `whsec_` is not standard base64.
    #[error("the part of the webhook secret after `whsec_` is not base64")]
    NotBase64,
    /// The key is shorter than [`MIN_KEY_LEN`] bytes.
    #[error("the webhook secret's key is {0} bytes; it must be at least 16 (24 to 64 recommended)")]
    TooShort(usize),
    /// The system's random generator failed ([`new_secret`]).
    #[error("the system's random generator failed")]
    Random,
}

/// The key length of a [`new_secret`]: 32 bytes.
pub const NEW_KEY_LEN: usize = 32;

/// A new random secret, `whsec_` and the base64 of [`NEW_KEY_LEN`] random bytes (for `webhooks.secret`).
///
/// # Errors
/// [`SecretError::Random`].
pub fn new_secret() -> Result<SecretString, SecretError> {
    let mut key = Zeroizing::new([0u8; NEW_KEY_LEN]);
    aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| SecretError::Random)?;
    Ok(SecretString::from(format!(
        "{SECRET_PREFIX}{}",
        STANDARD.encode(key.as_ref())
    )))
}

/// A Standard Webhooks signing secret (`whsec_<base64>`). `Debug` shows no key; the key is never kept in clear
/// outside aws-lc-rs.
#[derive(Clone)]
pub struct WebhookSecret {
    key: hmac::Key,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_[REDACTED])")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (standard alphabet, padding optional).
    ///
    /// # Errors
    /// [`SecretError`].
    pub fn parse(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = Zeroizing::new(
            LENIENT_STANDARD
                .decode(encoded)
                .map_err(|_| SecretError::NotBase64)?,
        );
        if key.len() < MIN_KEY_LEN {
            return Err(SecretError::TooShort(key.len()));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    fn tag(&self, id: &str, timestamp: i64, body: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        context.sign()
    }

    /// The `webhook-signature` value of one message: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    #[must_use]
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.tag(id, timestamp, body)))
    }
}

impl FromStr for WebhookSecret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a received webhook was refused by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent (names it).
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// A header is not what the scheme says (names it).
    #[error("the {0} header is malformed")]
    InvalidHeader(&'static str),
    /// No `v1` signature matches the body.
    #[error("no signature matches")]
    NoMatchingSignature,
}

/// What a verified webhook's headers said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `webhook-id`: de-duplicate on it (it is the same on every attempt).
    pub id: String,
    /// `webhook-timestamp`: when the attempt was signed (Unix seconds).
    pub timestamp: i64,
}

impl Verified {
    /// Whether the attempt was signed within `tolerance` of `now` (either way): check it to refuse replays
    /// ([`DEFAULT_TOLERANCE`] is the scheme's five minutes).
    #[must_use]
    pub fn within(&self, now: OffsetDateTime, tolerance: time::Duration) -> bool {
        (i128::from(now.unix_timestamp()) - i128::from(self.timestamp)).abs()
            <= i128::from(tolerance.whole_seconds())
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, VerifyError> {
    headers
        .get(name)
        .ok_or(VerifyError::MissingHeader(name))?
        .to_str()
        .map_err(|_| VerifyError::InvalidHeader(name))
}

/// Verifies a received webhook: `webhook-id`, `webhook-timestamp` and one matching `v1,` signature among the
/// space-separated ones of `webhook-signature` (compared in constant time). It does not look at the clock: check
/// [`Verified::within`] too.
///
/// # Errors
/// [`VerifyError`].
pub fn verify(
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    let id = header(headers, HEADER_ID)?;
    let timestamp: i64 = header(headers, HEADER_TIMESTAMP)?
        .parse()
        .map_err(|_| VerifyError::InvalidHeader(HEADER_TIMESTAMP))?;
    let signatures = header(headers, HEADER_SIGNATURE)?;
    let expected = secret.tag(id, timestamp, body);
    let matches = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|candidate| {
            constant_time::verify_slices_are_equal(&candidate, expected.as_ref()).is_ok()
        });
    if !matches {
        return Err(VerifyError::NoMatchingSignature);
    }
    Ok(Verified {
        id: id.to_owned(),
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The Standard Webhooks reference vector (standard-webhooks/standard-webhooks,
    /// `libraries/python/tests/test_webhooks.py`, `test_sign_function`).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ID, HeaderValue::from_str(id).unwrap());
        headers.insert(HEADER_TIMESTAMP, HeaderValue::from_str(timestamp).unwrap());
        headers.insert(HEADER_SIGNATURE, HeaderValue::from_str(signature).unwrap());
        headers
    }

    #[test]
    fn the_standard_webhooks_reference_vectors_are_reproduced() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(
            secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes()),
            SPEC_SIGNATURE
        );
        // The Rust library's vector (standardwebhooks 1.0.1, `test_sign`).
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            secret.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn the_reference_message_verifies_among_several_signatures_and_a_changed_one_does_not() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let several =
            format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,x {SPEC_SIGNATURE} v1,!!!");
        let verified = verify(
            &secret,
            &headers(SPEC_ID, "1614265330", &several),
            SPEC_BODY.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            verified,
            Verified {
                id: SPEC_ID.into(),
                timestamp: SPEC_TIMESTAMP
            }
        );
        for (id, timestamp, signature, body) in [
            (SPEC_ID, "1614265331", SPEC_SIGNATURE, SPEC_BODY),
            ("msg_other", "1614265330", SPEC_SIGNATURE, SPEC_BODY),
            (
                SPEC_ID,
                "1614265330",
                SPEC_SIGNATURE,
                r#"{"test": 2432232315}"#,
            ),
            (
                SPEC_ID,
                "1614265330",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
                SPEC_BODY,
            ),
            (
                SPEC_ID,
                "1614265330",
                "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                SPEC_BODY,
            ),
        ] {
            assert_eq!(
                verify(&secret, &headers(id, timestamp, signature), body.as_bytes()),
                Err(VerifyError::NoMatchingSignature),
                "{id} {timestamp} {signature} {body}"
            );
        }
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let full = headers(SPEC_ID, "1614265330", SPEC_SIGNATURE);
        for name in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            let mut partial = full.clone();
            partial.remove(name);
            assert_eq!(
                verify(&secret, &partial, SPEC_BODY.as_bytes()),
                Err(VerifyError::MissingHeader(name))
            );
        }
        assert_eq!(
            verify(
                &secret,
                &headers(SPEC_ID, "hello", SPEC_SIGNATURE),
                SPEC_BODY.as_bytes()
            ),
            Err(VerifyError::InvalidHeader(HEADER_TIMESTAMP))
        );
    }

    #[test]
    fn new_secrets_are_random_parse_and_hold_thirty_two_bytes() {
        use secrecy::ExposeSecret as _;
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        let encoded = a.expose_secret().strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), NEW_KEY_LEN);
        WebhookSecret::parse(a.expose_secret()).unwrap();
    }

    #[test]
    fn freshness_is_within_the_tolerance_either_way() {
        let at = |t: i64| OffsetDateTime::from_unix_timestamp(t).unwrap();
        let verified = Verified {
            id: "x".into(),
            timestamp: 1_000_000,
        };
        assert!(verified.within(at(1_000_300), DEFAULT_TOLERANCE));
        assert!(verified.within(at(999_700), DEFAULT_TOLERANCE));
        assert!(!verified.within(at(1_000_301), DEFAULT_TOLERANCE));
        assert!(!verified.within(at(999_699), DEFAULT_TOLERANCE));
    }

    #[test]
    fn secrets_need_the_prefix_base64_and_sixteen_bytes_and_never_show() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
            SecretError::MissingPrefix
        );
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!").unwrap_err(),
            SecretError::NotBase64
        );
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ=").unwrap_err(),
            SecretError::TooShort(5)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_").unwrap_err(),
            SecretError::TooShort(0)
        );
        // Padding is optional.
        let padded: WebhookSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZg==".parse().unwrap();
        let unpadded: WebhookSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZg".parse().unwrap();
        assert_eq!(padded.sign("a", 1, b"b"), unpadded.sign("a", 1, b"b"));
        let debug = format!("{padded:?}");
        assert!(!debug.contains("MDEy"), "{debug}");
        for err in [
            SecretError::Random,
            SecretError::MissingPrefix,
            SecretError::NotBase64,
            SecretError::TooShort(3),
        ] {
            assert!(!err.to_string().contains("MfKQ"));
        }
    }
}
