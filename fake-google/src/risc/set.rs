//! Security Event Tokens (RFC 8417) as Google's Cross-Account Protection sends them: the event
//! types, their subjects, the refresh-token identifiers, and the signed claims.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The `iss` of every SET and of the RISC discovery document: with the trailing slash (ID
/// tokens' issuer has none).
pub(crate) const RISC_ISSUER: &str = "https://accounts.google.com/";

/// The only delivery method Google supports.
pub(crate) const PUSH_DELIVERY: &str =
    "https://schemas.openid.net/secevent/risc/delivery-method/push";

/// The `typ` of a SET's JOSE header (RFC 8417 §2.3).
pub(crate) const SET_TYP: &str = "secevent+jwt";

/// A security event type Google sends (`"type"` of `POST /_fake/risc/events`, in kebab case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RiscEventType {
    /// `https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked`: every token of the
    /// user's grant was revoked.
    TokensRevoked,
    /// `https://schemas.openid.net/secevent/oauth/event-type/token-revoked`: one refresh token
    /// was revoked (its subject names the token, not the user).
    TokenRevoked,
    /// `https://schemas.openid.net/secevent/risc/event-type/sessions-revoked`.
    SessionsRevoked,
    /// `https://schemas.openid.net/secevent/risc/event-type/account-disabled`, maybe with a
    /// [`DisableReason`].
    AccountDisabled,
    /// `https://schemas.openid.net/secevent/risc/event-type/account-enabled`.
    AccountEnabled,
    /// `https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required`.
    AccountCredentialChangeRequired,
    /// `https://schemas.openid.net/secevent/risc/event-type/verification`: carries a `state`,
    /// no subject.
    Verification,
}

impl RiscEventType {
    /// Every event type, in the order above.
    pub const ALL: [Self; 7] = [
        Self::TokensRevoked,
        Self::TokenRevoked,
        Self::SessionsRevoked,
        Self::AccountDisabled,
        Self::AccountEnabled,
        Self::AccountCredentialChangeRequired,
        Self::Verification,
    ];

    /// The event type URI, the key of the SET's `events` member.
    pub fn uri(self) -> &'static str {
        match self {
            Self::TokensRevoked => {
                "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked"
            }
            Self::TokenRevoked => {
                "https://schemas.openid.net/secevent/oauth/event-type/token-revoked"
            }
            Self::SessionsRevoked => {
                "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked"
            }
            Self::AccountDisabled => {
                "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
            }
            Self::AccountEnabled => {
                "https://schemas.openid.net/secevent/risc/event-type/account-enabled"
            }
            Self::AccountCredentialChangeRequired => {
                "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required"
            }
            Self::Verification => {
                "https://schemas.openid.net/secevent/risc/event-type/verification"
            }
        }
    }

    /// The event type with this URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.uri() == uri)
    }

    /// The short name (`tokens-revoked`, ...), as the control API and the journal use it.
    pub fn as_str(self) -> &'static str {
        self.uri().rsplit('/').next().unwrap_or_default()
    }

    /// Whether the event is about a user (all but `verification`).
    pub(crate) fn needs_user(self) -> bool {
        self != Self::Verification
    }
}

/// Why Google disabled an account (`reason` of an `account-disabled` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DisableReason {
    /// `hijacking`: the account was taken over.
    Hijacking,
    /// `bulk-account`: the account was made for abuse.
    BulkAccount,
}

impl DisableReason {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hijacking => "hijacking",
            Self::BulkAccount => "bulk-account",
        }
    }
}

/// How a `token-revoked` event names the refresh token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenIdentifierAlg {
    /// `prefix`: the token's first 16 characters.
    #[default]
    #[serde(rename = "prefix")]
    Prefix,
    /// `hash_base64_sha512_sha512`: standard base64 (with padding) of SHA-512 of SHA-512 of the
    /// token's UTF-8 bytes.
    #[serde(rename = "hash_base64_sha512_sha512")]
    HashBase64Sha512Sha512,
}

impl TokenIdentifierAlg {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prefix => "prefix",
            Self::HashBase64Sha512Sha512 => "hash_base64_sha512_sha512",
        }
    }

    /// The identifier of `token` by this algorithm.
    pub fn identify(self, token: &str) -> String {
        match self {
            Self::Prefix => token.chars().take(16).collect(),
            Self::HashBase64Sha512Sha512 => {
                let sha512 = |b: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, b);
                STANDARD.encode(sha512(sha512(token.as_bytes()).as_ref()))
            }
        }
    }
}

/// What an event says, besides its type.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Subject<'a> {
    /// `{"subject_type": "iss-sub", "iss", "sub"}`, with an `account-disabled` reason.
    User {
        sub: &'a str,
        reason: Option<DisableReason>,
    },
    /// `{"subject_type": "oauth_token", "token_type": "refresh_token", ...}`.
    RefreshToken {
        alg: TokenIdentifierAlg,
        token: &'a str,
    },
    /// A `verification` event's `{"state"}` (none: `{}`).
    Verification { state: Option<&'a str> },
}

/// The value of the SET's `events` member for one event of type `kind`.
pub(crate) fn events(kind: RiscEventType, subject: Subject<'_>) -> Value {
    let body = match subject {
        Subject::User { sub, reason } => {
            let mut m = Map::new();
            m.insert(
                "subject".to_owned(),
                json!({"subject_type": "iss-sub", "iss": RISC_ISSUER, "sub": sub}),
            );
            if let Some(r) = reason {
                m.insert("reason".to_owned(), Value::from(r.as_str()));
            }
            Value::Object(m)
        }
        Subject::RefreshToken { alg, token } => json!({"subject": {
            "subject_type": "oauth_token",
            "token_type": "refresh_token",
            "token_identifier_alg": alg.as_str(),
            "token": alg.identify(token),
        }}),
        Subject::Verification { state: Some(state) } => json!({ "state": state }),
        Subject::Verification { state: None } => json!({}),
    };
    let mut events = Map::new();
    events.insert(kind.uri().to_owned(), body);
    Value::Object(events)
}

/// SET claims in Google's order.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'static str,
    aud: &'a str,
    iat: i64,
    jti: &'a str,
    events: &'a Value,
}

/// The JSON claims of a SET: `iss`, `aud`, `iat`, `jti`, `events` (no `exp`, as Google's).
pub(crate) fn claims_json(aud: &str, iat: i64, jti: &str, events: &Value) -> Vec<u8> {
    serde_json::to_vec(&Claims {
        iss: RISC_ISSUER,
        aud,
        iat,
        jti,
        events,
    })
    .unwrap_or_default()
}

/// A fresh `jti`: 32 hex digits of randomness.
pub(crate) fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_through_their_uris_and_short_names() {
        for t in RiscEventType::ALL {
            assert_eq!(RiscEventType::from_uri(t.uri()), Some(t));
            let json = serde_json::to_value(t).unwrap();
            assert_eq!(json, Value::from(t.as_str()));
        }
        assert_eq!(
            RiscEventType::AccountCredentialChangeRequired.as_str(),
            "account-credential-change-required"
        );
        assert_eq!(RiscEventType::from_uri("https://example.com/x"), None);
    }

    #[test]
    fn token_identifiers_are_the_prefix_or_the_double_sha512() {
        let token = "1//0abcdefghijklmnopqrstuvwxyz";
        assert_eq!(
            TokenIdentifierAlg::Prefix.identify(token),
            "1//0abcdefghijkl"
        );
        let hash = TokenIdentifierAlg::HashBase64Sha512Sha512.identify(token);
        // 64 bytes: 88 characters of padded standard base64.
        assert_eq!(hash.len(), 88);
        assert!(hash.ends_with("=="));
        // The outer hash is over the inner hash's raw bytes (not its hex or base64).
        let empty = TokenIdentifierAlg::HashBase64Sha512Sha512.identify("");
        let inner = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, b"");
        let outer = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, inner.as_ref());
        assert_eq!(empty, STANDARD.encode(outer.as_ref()));
    }

    #[test]
    fn subjects_have_googles_shapes() {
        let e = events(
            RiscEventType::AccountDisabled,
            Subject::User {
                sub: "42",
                reason: Some(DisableReason::BulkAccount),
            },
        );
        let body = &e[RiscEventType::AccountDisabled.uri()];
        assert_eq!(body["subject"]["subject_type"], "iss-sub");
        assert_eq!(body["subject"]["iss"], RISC_ISSUER);
        assert_eq!(body["subject"]["sub"], "42");
        assert_eq!(body["reason"], "bulk-account");
        let e = events(
            RiscEventType::Verification,
            Subject::Verification { state: Some("s") },
        );
        assert_eq!(e[RiscEventType::Verification.uri()], json!({"state": "s"}));
    }

    #[test]
    fn claims_keep_googles_order_and_have_no_exp() {
        let json = claims_json("aud", 7, "j", &json!({}));
        let text = String::from_utf8(json).unwrap();
        assert_eq!(
            text,
            r#"{"iss":"https://accounts.google.com/","aud":"aud","iat":7,"jti":"j","events":{}}"#
        );
        assert_ne!(new_jti(), new_jti());
        assert_eq!(new_jti().len(), 32);
    }
}
