//! Google's security events (Cross-Account Protection, RISC): the verified event types, the port that verifies a
//! Security Event Token, how a refresh token is named by one (and indexed for that), and the actions taken.
//!
//! Every action on a credential goes through the update primitive, with the event it reports written in the same
//! store write. A `jti` is registered before acting (atomically, across instances and restarts), so a duplicate is
//! acted on once; if the action fails the `jti` is forgotten again so that Google's retry is acted on.

use std::fmt;

use async_trait::async_trait;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::credential::{AccountDisabled, ConsentState};
use crate::events::{Event, EventData, RevokedBy};
use crate::grants::{self, Change, Outcome, Stored};
use crate::identity::Subject;
use crate::ports::StoreError;
use crate::recent::Usable;
use crate::secret::RefreshToken;
use crate::service::OfflineAccess;

/// How long a `jti` is remembered (Google retries for far less; RFC 8935 receivers keep them "long enough").
pub const JTI_RETENTION: time::Duration = time::Duration::days(7);

/// How a `token-revoked` event names the refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenIdentifierAlg {
    /// `prefix`: its first 16 characters.
    Prefix,
    /// `hash_base64_sha512_sha512`: base64 of SHA-512 of SHA-512 of the token.
    HashSha512Sha512,
}

impl TokenIdentifierAlg {
    /// Parses RISC's `token_identifier_alg`.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "prefix" => Some(Self::Prefix),
            "hash_base64_sha512_sha512" => Some(Self::HashSha512Sha512),
            _ => None,
        }
    }
}

/// A refresh token as a `token-revoked` event names it. Its value is treated as a secret (Debug shows none).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenIdentifier {
    alg: TokenIdentifierAlg,
    /// The 16-character prefix, or the 64-byte double SHA-512.
    value: Vec<u8>,
}

impl fmt::Debug for TokenIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIdentifier")
            .field("alg", &self.alg)
            .field("value", &"[redacted]")
            .finish()
    }
}

/// Why a token identifier is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenIdentifierError {
    /// A prefix that is not 16 characters.
    #[error("a prefix token identifier must be 16 characters")]
    BadPrefix,
    /// A hash that is not base64 of 64 bytes.
    #[error("a hash token identifier must be base64 of a 64-byte SHA-512 digest")]
    BadHash,
}

const PREFIX_LEN: usize = 16;

fn sha512(data: &[u8]) -> aws_lc_rs::digest::Digest {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, data)
}

fn index_key(label: &[u8], value: &[u8]) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(label);
    context.update(value);
    hex::encode(context.finish().as_ref())
}

impl TokenIdentifier {
    /// Parses the `token_identifier_alg` and `token` of a `token-revoked` subject. The hash is accepted in
    /// standard or URL-safe base64, with or without padding.
    ///
    /// # Errors
    /// [`TokenIdentifierError`].
    pub fn new(alg: TokenIdentifierAlg, token: &str) -> Result<Self, TokenIdentifierError> {
        let value = match alg {
            TokenIdentifierAlg::Prefix => {
                if token.chars().count() != PREFIX_LEN {
                    return Err(TokenIdentifierError::BadPrefix);
                }
                token.as_bytes().to_vec()
            }
            TokenIdentifierAlg::HashSha512Sha512 => {
                let trimmed = token.trim_end_matches('=');
                let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(trimmed)
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
                    .map_err(|_| TokenIdentifierError::BadHash)?;
                if decoded.len() != 64 {
                    return Err(TokenIdentifierError::BadHash);
                }
                decoded
            }
        };
        Ok(Self { alg, value })
    }

    /// How it names the token.
    #[must_use]
    pub fn alg(&self) -> TokenIdentifierAlg {
        self.alg
    }

    /// Whether it names `token` (in constant time in the compared bytes).
    #[must_use]
    pub fn matches(&self, token: &RefreshToken) -> bool {
        let secret = token.expose_secret().as_bytes();
        match self.alg {
            TokenIdentifierAlg::Prefix => {
                secret
                    .get(..self.value.len())
                    .is_some_and(|prefix| bool::from(prefix.ct_eq(&self.value)))
                    && token.expose_secret().is_char_boundary(self.value.len())
            }
            TokenIdentifierAlg::HashSha512Sha512 => {
                bool::from(sha512(sha512(secret).as_ref()).as_ref().ct_eq(&self.value))
            }
        }
    }

    /// The key a store indexes credentials by for this identifier: a SHA-256 digest (hex), never the prefix in
    /// clear. It equals one of [`index_keys`] of the token it names.
    #[must_use]
    pub fn index_key(&self) -> String {
        match self.alg {
            TokenIdentifierAlg::Prefix => index_key(b"offline-access risc prefix\0", &self.value),
            TokenIdentifierAlg::HashSha512Sha512 => {
                index_key(b"offline-access risc sha512sha512\0", &self.value)
            }
        }
    }
}

/// The index keys a store keeps for a stored refresh token (see [`TokenIdentifier::index_key`]): one for each way
/// RISC can name it. Empty for a token shorter than the prefix.
#[must_use]
pub fn index_keys(token: &RefreshToken) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Ok(prefix) = TokenIdentifier::new(
        TokenIdentifierAlg::Prefix,
        &token
            .expose_secret()
            .chars()
            .take(PREFIX_LEN)
            .collect::<String>(),
    ) {
        keys.push(prefix.index_key());
    }
    let hash = sha512(sha512(token.expose_secret().as_bytes()).as_ref());
    keys.push(index_key(
        b"offline-access risc sha512sha512\0",
        hash.as_ref(),
    ));
    keys
}

/// Whom an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RiscSubject {
    /// A Google account (`iss-sub`, or `id_token_claims` with a `sub`).
    Account(Subject),
    /// A refresh token (`oauth_token`).
    Token(TokenIdentifier),
    /// A subject this receiver cannot act on (another type, another issuer); acknowledged and ignored.
    Other(String),
}

/// One verified security event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RiscEvent {
    /// `oauth/event-type/tokens-revoked`: every token of the user's grant is revoked.
    TokensRevoked(RiscSubject),
    /// `oauth/event-type/token-revoked`: one refresh token is revoked.
    TokenRevoked(RiscSubject),
    /// `risc/event-type/sessions-revoked`.
    SessionsRevoked(RiscSubject),
    /// `risc/event-type/account-disabled`, with Google's reason.
    AccountDisabled(RiscSubject, Option<String>),
    /// `risc/event-type/account-enabled`.
    AccountEnabled(RiscSubject),
    /// `risc/event-type/account-credential-change-required`.
    CredentialChangeRequired(RiscSubject),
    /// `risc/event-type/verification`, with the `state` given to `stream:verify`.
    Verification(Option<String>),
    /// An event type this receiver does not act on (its URI); acknowledged.
    Unsupported(String),
}

/// Every event type URI this receiver acts on (what `risc register` asks Google for).
pub const SUPPORTED_EVENT_TYPES: [&str; 7] = [
    "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked",
    "https://schemas.openid.net/secevent/oauth/event-type/token-revoked",
    "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked",
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
    "https://schemas.openid.net/secevent/risc/event-type/account-enabled",
    "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required",
    "https://schemas.openid.net/secevent/risc/event-type/verification",
];

/// A verified Security Event Token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// Its unique id (de-duplicated on).
    pub jti: String,
    /// When Google issued it.
    pub issued_at: OffsetDateTime,
    /// Its events (Google sends one per token).
    pub events: Vec<RiscEvent>,
}

/// Why a Security Event Token was refused (RFC 8935's error codes, and one for "try again").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// `invalid_key`: the signature does not verify with a published key, or the algorithm is not RS256.
    #[error("invalid_key: {0}")]
    InvalidKey(String),
    /// `invalid_issuer`: `iss` is not the RISC issuer.
    #[error("invalid_issuer: {0}")]
    InvalidIssuer(String),
    /// `invalid_audience`: `aud` is none of this server's client IDs.
    #[error("invalid_audience: {0}")]
    InvalidAudience(String),
    /// `invalid_request`: not a JWT, not a SET, a missing or malformed claim.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Google's RISC configuration or keys could not be fetched: the token cannot be judged now.
    #[error("the RISC keys could not be fetched: {0}")]
    Unavailable(String),
}

impl SetError {
    /// RFC 8935's `err` code (`None` for [`SetError::Unavailable`], which is not the sender's fault).
    #[must_use]
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::InvalidKey(_) => Some("invalid_key"),
            Self::InvalidIssuer(_) => Some("invalid_issuer"),
            Self::InvalidAudience(_) => Some("invalid_audience"),
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::Unavailable(_) => None,
        }
    }
}

/// Verifies a Security Event Token from Google's RISC transmitter.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait SecurityEventVerifier: Send + Sync {
    /// Verifies the token: RS256 with a key of the RISC `jwks_uri`, `iss` the RISC issuer, `aud` one of this
    /// server's client IDs, `iat` present and not far in the future; no `exp` check. Parses its events.
    ///
    /// # Errors
    /// [`SetError`].
    async fn verify(&self, token: &str, now: OffsetDateTime) -> Result<SecurityEvent, SetError>;
}

/// Why a verified event could not be acted on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RiscError {
    /// The store failed; the `jti` was forgotten so that a retry is acted on.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This service has no event store (the composition root did not attach one).
    #[error("security events need an event store")]
    NoEventStore,
}

/// What was done with a security event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Acted on (which may be nothing, for an unknown subject).
    Acted,
    /// A `jti` already seen: not acted on again.
    Duplicate,
}

impl OfflineAccess {
    /// Acts on a verified security event, once per `jti` (see the module docs).
    ///
    /// # Errors
    /// [`RiscError`]; the caller answers 5xx so that Google retries.
    pub async fn receive_security_event(
        &self,
        event: &SecurityEvent,
    ) -> Result<Receipt, RiscError> {
        let events = self.events.as_ref().ok_or(RiscError::NoEventStore)?;
        let now = self.ports.clock.now();
        if !events.first_sight(&event.jti, now, JTI_RETENTION).await? {
            tracing::info!(jti = %event.jti, "duplicate security event ignored");
            return Ok(Receipt::Duplicate);
        }
        for item in &event.events {
            if let Err(e) = self.act_on(item, now).await {
                if let Err(undo) = events.unsee(&event.jti).await {
                    tracing::error!(jti = %event.jti, error = %undo, "could not forget a security event whose action failed; a retry will be ignored");
                }
                return Err(e);
            }
        }
        Ok(Receipt::Acted)
    }

    async fn act_on(&self, event: &RiscEvent, now: OffsetDateTime) -> Result<(), RiscError> {
        match event {
            RiscEvent::TokensRevoked(RiscSubject::Account(sub)) => {
                self.revoke_by_risc(sub, None, now).await
            }
            RiscEvent::TokenRevoked(RiscSubject::Token(token)) => {
                let candidates = self
                    .ports
                    .store
                    .find_by_refresh_token(&token.index_key())
                    .await?;
                for sub in candidates {
                    self.revoke_by_risc(&sub, Some(token), now).await?;
                }
                Ok(())
            }
            RiscEvent::AccountDisabled(RiscSubject::Account(sub), reason) => {
                self.set_disabled(sub, Some(reason.clone()), now).await
            }
            RiscEvent::AccountEnabled(RiscSubject::Account(sub)) => {
                self.set_disabled(sub, None, now).await
            }
            RiscEvent::SessionsRevoked(RiscSubject::Account(sub)) => {
                self.announce_for_known(
                    sub,
                    EventData::SessionsRevoked {
                        sub: sub.as_str().into(),
                    },
                    now,
                )
                .await
            }
            RiscEvent::CredentialChangeRequired(RiscSubject::Account(sub)) => {
                self.announce_for_known(
                    sub,
                    EventData::CredentialChangeRequired {
                        sub: sub.as_str().into(),
                    },
                    now,
                )
                .await
            }
            RiscEvent::Verification(state) => {
                tracing::info!(
                    state = state.as_deref().unwrap_or(""),
                    "RISC verification event received"
                );
                self.announce(
                    EventData::Verification {
                        state: state.clone(),
                    },
                    now,
                )
                .await
            }
            RiscEvent::Unsupported(uri) => {
                tracing::info!(event_type = %uri, "security event of a type not acted on");
                Ok(())
            }
            other => {
                tracing::info!(event = ?other, "security event about a subject this server does not hold");
                Ok(())
            }
        }
    }

    /// `tokens-revoked` (no `token`) or `token-revoked` (the credential holding that refresh token): consent
    /// revoked and the access token purged, as after `invalid_grant`, with `grant.revoked` (`source: risc`).
    async fn revoke_by_risc(
        &self,
        subject: &Subject,
        token: Option<&TokenIdentifier>,
        now: OffsetDateTime,
    ) -> Result<(), RiscError> {
        let store = &*self.ports.store;
        let record = self.records_events();
        let sub = subject.as_str().to_owned();
        let (_, outcome) =
            grants::update_recording(store, subject, now, record, |stored| match stored {
                Stored::Credential(mut current)
                    if token.is_none_or(|t| {
                        current.refresh_token.as_ref().is_some_and(|r| t.matches(r))
                    }) =>
                {
                    if current.consent == ConsentState::Revoked && current.access.is_none() {
                        return (Change::Keep(()), Vec::new());
                    }
                    // As after `invalid_grant`: the access token goes; the refresh token stays (dead at Google,
                    // and a store never replaces one with none).
                    current.mark_revoked(now);
                    (
                        Change::Put(current, ()),
                        vec![EventData::Revoked {
                            sub: sub.clone(),
                            source: RevokedBy::Risc,
                        }],
                    )
                }
                _ => (Change::Keep(()), Vec::new()),
            })
            .await?;
        if let Outcome::Written(written) = &outcome {
            tracing::warn!(subject = %subject, "Google revoked the user's tokens (RISC): consent marked revoked, tokens purged");
            self.recent.invalidate(subject, Usable::of(written));
        }
        Ok(())
    }

    /// `account-disabled` (`Some(reason)`) or `account-enabled` (`None`).
    async fn set_disabled(
        &self,
        subject: &Subject,
        disabled: Option<Option<String>>,
        now: OffsetDateTime,
    ) -> Result<(), RiscError> {
        let record = self.records_events();
        let sub = subject.as_str().to_owned();
        let (_, outcome) =
            grants::update_recording(&*self.ports.store, subject, now, record, |stored| {
                let Stored::Credential(mut current) = stored else {
                    return (Change::Keep(()), Vec::new());
                };
                match (&disabled, &current.disabled) {
                    (Some(reason), None) => {
                        current.disabled = Some(AccountDisabled {
                            reason: reason.clone(),
                            since: now,
                        });
                        current.access = None;
                        current.updated_at = now;
                        let data = EventData::AccountDisabled {
                            sub: sub.clone(),
                            reason: reason.clone(),
                        };
                        (Change::Put(current, ()), vec![data])
                    }
                    (None, Some(_)) => {
                        current.disabled = None;
                        current.updated_at = now;
                        let data = EventData::AccountEnabled {
                            sub: sub.clone(),
                            reason: Some("risc".into()),
                        };
                        (Change::Put(current, ()), vec![data])
                    }
                    _ => (Change::Keep(()), Vec::new()),
                }
            })
            .await?;
        if let Outcome::Written(written) = &outcome {
            tracing::warn!(subject = %subject, disabled = written.disabled.is_some(), "Google changed the account's state (RISC)");
            self.recent.invalidate(subject, Usable::of(written));
        }
        Ok(())
    }

    /// Records an event for the team if the subject is a stored user.
    async fn announce_for_known(
        &self,
        subject: &Subject,
        data: EventData,
        now: OffsetDateTime,
    ) -> Result<(), RiscError> {
        if grants::read(&*self.ports.store, subject)
            .await?
            .credential()
            .is_none()
        {
            tracing::info!(subject = %subject, event = data.kind(), "security event for a user not stored; ignored");
            return Ok(());
        }
        self.announce(data, now).await
    }

    /// Records an event that reports no credential change (when events are recorded).
    async fn announce(&self, data: EventData, now: OffsetDateTime) -> Result<(), RiscError> {
        if !self.records_events() {
            return Ok(());
        }
        let events = self.events.as_ref().ok_or(RiscError::NoEventStore)?;
        events.append(&[Event::new(data, now).record()]).await?;
        Ok(())
    }
}
