//! Events for the team: what changed in a grant, recorded **in the same store write as the change** (an outbox),
//! then delivered as signed webhooks at least once (see [`crate::delivery`]).
//!
//! An event is built here ([`Event`]), turned into the exact JSON body the team receives ([`EventRecord`]) and
//! handed to the store with the write it reports ([`crate::CredentialStore::put_with`],
//! [`crate::CredentialStore::delete_with`]) or on its own ([`EventStore::append`]) when it reports no change to a
//! credential (a RISC `sessions-revoked`, a `verification`). No event ever carries a token.

use std::fmt::Write as _;

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::identity::{Scopes, Subject};
use crate::ports::StoreError;

/// Where a revocation came from (`grant.revoked`'s `source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokedBy {
    /// Google answered `invalid_grant` to a refresh.
    InvalidGrant,
    /// A RISC security event (`tokens-revoked`, `token-revoked`).
    Risc,
    /// The user (or an operator) asked to be forgotten.
    Forget,
}

/// What happened, with its data (the webhook's `type` and `data`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum EventData {
    /// A sign-in stored or updated a grant.
    #[serde(rename = "user.signed_in")]
    SignedIn {
        /// Google's account id.
        sub: String,
        /// The verified e-mail, if the ID token had one.
        email: Option<String>,
        /// Whether this was the first grant stored for the user.
        new_user: bool,
        /// Whether a refresh token is stored and the consent is active.
        offline_access: bool,
        /// The grant's scopes.
        scopes: Vec<String>,
        /// Required scopes the grant lacks.
        missing_scopes: Vec<String>,
    },
    /// The grant's scope set changed (a sign-in widened it, or a refresh reported a narrower one).
    #[serde(rename = "grant.scopes_changed")]
    ScopesChanged {
        /// Google's account id.
        sub: String,
        /// Scopes the grant gained.
        added: Vec<String>,
        /// Scopes the grant lost.
        removed: Vec<String>,
    },
    /// The grant can no longer be used; the app must ask for consent again.
    #[serde(rename = "grant.revoked")]
    Revoked {
        /// Google's account id.
        sub: String,
        /// What revoked it.
        source: RevokedBy,
    },
    /// Google kept failing to refresh the grant's access token after the retries (an outage, not a revocation).
    #[serde(rename = "grant.refresh_failing")]
    RefreshFailing {
        /// Google's account id.
        sub: String,
        /// What failed, in a few words (never a token).
        error: String,
    },
    /// A refresh worked again after `grant.refresh_failing`.
    #[serde(rename = "grant.recovered")]
    Recovered {
        /// Google's account id.
        sub: String,
    },
    /// Google disabled the account (RISC `account-disabled`): no token is handed out until it is enabled.
    #[serde(rename = "account.disabled")]
    AccountDisabled {
        /// Google's account id.
        sub: String,
        /// Google's reason (`hijacking`, `bulk-account`), when given.
        reason: Option<String>,
    },
    /// The account works again (RISC `account-enabled`, or a new sign-in).
    #[serde(rename = "account.enabled")]
    AccountEnabled {
        /// Google's account id.
        sub: String,
        /// Why: `risc` (Google's event) or `signed_in` (the user signed in again).
        reason: Option<String>,
    },
    /// Google ended the user's sessions (RISC `sessions-revoked`).
    #[serde(rename = "account.sessions_revoked")]
    SessionsRevoked {
        /// Google's account id.
        sub: String,
    },
    /// Google asks the app to make the user change credentials (RISC `account-credential-change-required`).
    #[serde(rename = "account.credential_change_required")]
    CredentialChangeRequired {
        /// Google's account id.
        sub: String,
    },
    /// The user's stored grant was forgotten (deleted, its revocation done or pending).
    #[serde(rename = "user.forgotten")]
    Forgotten {
        /// Google's account id.
        sub: String,
    },
    /// Google sent a RISC `verification` event (after `stream:verify`).
    #[serde(rename = "risc.verification")]
    Verification {
        /// The `state` given to `stream:verify`.
        state: Option<String>,
    },
}

impl EventData {
    /// The webhook `type`, e.g. `user.signed_in`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SignedIn { .. } => "user.signed_in",
            Self::ScopesChanged { .. } => "grant.scopes_changed",
            Self::Revoked { .. } => "grant.revoked",
            Self::RefreshFailing { .. } => "grant.refresh_failing",
            Self::Recovered { .. } => "grant.recovered",
            Self::AccountDisabled { .. } => "account.disabled",
            Self::AccountEnabled { .. } => "account.enabled",
            Self::SessionsRevoked { .. } => "account.sessions_revoked",
            Self::CredentialChangeRequired { .. } => "account.credential_change_required",
            Self::Forgotten { .. } => "user.forgotten",
            Self::Verification { .. } => "risc.verification",
        }
    }

    /// `grant.scopes_changed` for a grant going from `before` to `after`, if they differ.
    #[must_use]
    pub fn scopes_changed(subject: &Subject, before: &Scopes, after: &Scopes) -> Option<Self> {
        let added = after.difference(before);
        let removed = before.difference(after);
        (!added.is_empty() || !removed.is_empty()).then(|| Self::ScopesChanged {
            sub: subject.as_str().to_owned(),
            added: added.iter().map(str::to_owned).collect(),
            removed: removed.iter().map(str::to_owned).collect(),
        })
    }
}

/// An event about to be recorded: what happened, when, and its id (the webhook's `webhook-id`, kept on every
/// delivery attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `evt_` and 32 hex digits: the creation time in milliseconds, then random bits (ids sort by creation).
    pub id: String,
    /// When it happened.
    pub timestamp: OffsetDateTime,
    /// What happened.
    pub data: EventData,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    data: &'a EventData,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
}

impl Event {
    /// A new event with a fresh id.
    #[must_use]
    pub fn new(data: EventData, now: OffsetDateTime) -> Self {
        Self {
            id: new_event_id(now),
            timestamp: now,
            data,
        }
    }

    /// The record a store keeps: the id, the type and the exact JSON body that is signed and POSTed
    /// (`{"type", "timestamp", "data"}`), so every attempt sends the same bytes.
    #[must_use]
    pub fn record(&self) -> EventRecord {
        let body = serde_json::to_string(&Body {
            data: &self.data,
            timestamp: self.timestamp,
        })
        // Serialising plain strings, booleans and lists cannot fail; an empty object is a safe fallback.
        .unwrap_or_else(|_| "{}".to_owned());
        EventRecord {
            id: self.id.clone(),
            kind: self.data.kind().to_owned(),
            created_at: self.timestamp,
            body,
        }
    }
}

/// A fresh event id: `evt_`, the time in milliseconds (12 hex digits), a per-process sequence number (8 hex
/// digits, so ids made in one process within one millisecond still sort by creation) and 48 random bits.
#[must_use]
pub fn new_event_id(now: OffsetDateTime) -> String {
    static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let sequence = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut random = [0u8; 6];
    // The system's CSPRNG (it does not fail on Linux); the sequence keeps ids unique within a process anyway.
    if aws_lc_rs::rand::fill(&mut random).is_err() {
        use std::hash::{BuildHasher, RandomState};
        let fallback = RandomState::new().hash_one(millis).to_le_bytes();
        random.copy_from_slice(&fallback[..6]);
    }
    let mut id = String::with_capacity(36);
    id.push_str("evt_");
    let _ = write!(id, "{:012x}{sequence:08x}", millis & 0xffff_ffff_ffff);
    for byte in random {
        let _ = write!(id, "{byte:02x}");
    }
    id
}

/// Whether a string is an event id this crate makes (for `events replay ID` and store lookups).
#[must_use]
pub fn is_event_id(id: &str) -> bool {
    id.strip_prefix("evt_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What a store keeps of an event: its id, type, creation time and the exact JSON body delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// The event id (`webhook-id`).
    pub id: String,
    /// The event type (`user.signed_in`, ...).
    pub kind: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// The JSON body POSTed to the webhook (no token is ever in it).
    pub body: String,
}

/// Where an event is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; tried again at `next_attempt_at`.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed until the retry schedule ran out; `events replay` sends it again.
    Failed,
}

impl DeliveryState {
    /// `"pending"`, `"delivered"` or `"failed"`, as stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored form.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// An event in the outbox, with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The event.
    pub record: EventRecord,
    /// Where its delivery is.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is due (for a pending event).
    pub next_attempt_at: OffsetDateTime,
    /// What the last failed attempt got (a status or a connection error; never a body or a secret).
    pub last_error: Option<String>,
    /// When the endpoint accepted it.
    pub delivered_at: Option<OffsetDateTime>,
}

/// The result of one delivery attempt, as recorded by [`EventStore::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// The endpoint answered 2xx at `at`.
    Delivered {
        /// When.
        at: OffsetDateTime,
    },
    /// It failed; try again at `at`.
    RetryAt {
        /// When to try again.
        at: OffsetDateTime,
        /// What failed.
        error: String,
    },
    /// It failed and the schedule ran out.
    Failed {
        /// What failed.
        error: String,
    },
}

/// Which events [`EventStore::list_events`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventFilter {
    /// All of them.
    #[default]
    All,
    /// Only those still to be delivered.
    Pending,
    /// Only those whose schedule ran out.
    Failed,
}

impl EventFilter {
    /// Whether an event in `state` passes.
    #[must_use]
    pub fn admits(self, state: DeliveryState) -> bool {
        match self {
            Self::All => true,
            Self::Pending => state == DeliveryState::Pending,
            Self::Failed => state == DeliveryState::Failed,
        }
    }
}

/// One page of events, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    /// The events.
    pub items: Vec<OutboxEvent>,
    /// The id to pass as the cursor for the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// How many events are in each state (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventCounts {
    /// Still to be delivered.
    pub pending: u64,
    /// Delivered (and not purged yet).
    pub delivered: u64,
    /// Given up on.
    pub failed: u64,
}

/// The outbox and the RISC `jti` register: implemented by the same adapters as [`crate::CredentialStore`], in
/// the same storage, so that an event is written in the same step as the change it reports.
///
/// # Contract
/// - Events written with a credential ([`crate::CredentialStore::put_with`], `delete_with`) or appended here are
///   durable when the call returns, start [`DeliveryState::Pending`], due at once, with no attempts.
/// - `claim_due` hands each due pending event to one claimer at a time: it returns events whose
///   `next_attempt_at <= now` and whose lease is free, and leases them until `now + lease`. A claimer that dies
///   leaves the lease to expire; the event is then claimed again (delivery is at least once, same id).
/// - `settle` records an attempt: it increments `attempts` and sets the state, and frees the lease.
/// - `first_sight` is an atomic insert-if-absent across every process sharing the store: of concurrent calls for
///   one `jti`, exactly one gets `true`. Entries older than `keep_for` may be purged by it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Records events that report no credential change.
    ///
    /// # Errors
    /// The store's.
    async fn append(&self, events: &[EventRecord]) -> Result<(), StoreError>;

    /// Claims up to `limit` due events, leasing each to this claimer until `now + lease`: the soonest due first,
    /// then by id (the contract's `claims_take_the_soonest_due_first_then_by_id`).
    ///
    /// # Errors
    /// The store's.
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError>;

    /// Records the outcome of an attempt at delivering event `id`. An unknown id is not an error.
    ///
    /// # Errors
    /// The store's.
    async fn settle(&self, id: &str, settlement: &Settlement) -> Result<(), StoreError>;

    /// Records the outcomes of several attempts at once, as [`EventStore::settle`] each (the delivery loop settles
    /// the attempts that finished together in one call, so a store can do it in one step). Every outcome is
    /// tried; the first error is returned.
    ///
    /// # Errors
    /// The store's.
    async fn settle_all(&self, outcomes: &[(String, Settlement)]) -> Result<(), StoreError> {
        let mut first_error = None;
        for (id, settlement) in outcomes {
            if let Err(e) = self.settle(id, settlement).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Lists events oldest first, after `cursor` (an event id), at most `limit`.
    ///
    /// # Errors
    /// The store's.
    async fn list_events(
        &self,
        filter: EventFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<EventPage, StoreError>;

    /// One event.
    ///
    /// # Errors
    /// The store's.
    async fn event(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError>;

    /// Makes event `id` pending and due at `now` again, attempts reset (same id and body); `false` if unknown.
    ///
    /// # Errors
    /// The store's.
    async fn replay(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError>;

    /// How many events are in each state.
    ///
    /// # Errors
    /// The store's.
    async fn counts(&self) -> Result<EventCounts, StoreError>;

    /// Deletes delivered events delivered before `before`; how many.
    ///
    /// # Errors
    /// The store's.
    async fn purge_delivered(&self, before: OffsetDateTime) -> Result<u64, StoreError>;

    /// Registers a RISC `jti`: `true` the first time it is seen, `false` for a duplicate (see the contract).
    ///
    /// # Errors
    /// The store's.
    async fn first_sight(
        &self,
        jti: &str,
        now: OffsetDateTime,
        keep_for: time::Duration,
    ) -> Result<bool, StoreError>;

    /// Forgets a `jti` registered by `first_sight` whose action then failed, so that Google's retry is acted on.
    ///
    /// # Errors
    /// The store's.
    async fn unsee(&self, jti: &str) -> Result<(), StoreError>;
}

/// Why a webhook delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The endpoint answered a non-2xx status.
    #[error("the webhook endpoint answered HTTP {0}")]
    Status(u16),
    /// No answer: connection refused, timeout, TLS.
    #[error("the webhook endpoint could not be reached: {0}")]
    Unreachable(String),
}

/// Sends one event to the team's webhook endpoint, signed (Standard Webhooks).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// POSTs the event's body with its id and a signature; `Ok` on a 2xx answer.
    ///
    /// # Errors
    /// [`SendError`].
    async fn send(&self, event: &EventRecord) -> Result<(), SendError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-06 10:00 UTC);

    #[test]
    fn the_body_is_type_timestamp_and_data_and_carries_the_id_nowhere() {
        let event = Event::new(
            EventData::Revoked {
                sub: "1234".into(),
                source: RevokedBy::InvalidGrant,
            },
            NOW,
        );
        let record = event.record();
        let body: serde_json::Value = serde_json::from_str(&record.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "grant.revoked",
                "timestamp": "2026-12-06T10:00:00Z",
                "data": {"sub": "1234", "source": "invalid_grant"}
            })
        );
        assert_eq!(record.kind, "grant.revoked");
        assert!(is_event_id(&record.id), "{}", record.id);
    }

    #[test]
    fn ids_are_unique_and_sort_by_time() {
        let a = new_event_id(NOW);
        let b = new_event_id(NOW);
        let later = new_event_id(NOW + time::Duration::MILLISECOND);
        assert_ne!(a, b);
        assert!(later > a && later > b);
        assert!(!is_event_id("evt_xyz"));
        assert!(!is_event_id(&format!("{a}0")));
    }

    #[test]
    fn every_kind_matches_its_serialised_type() {
        let sub = || "1".to_owned();
        for data in [
            EventData::SignedIn {
                sub: sub(),
                email: None,
                new_user: true,
                offline_access: true,
                scopes: vec![],
                missing_scopes: vec![],
            },
            EventData::ScopesChanged {
                sub: sub(),
                added: vec![],
                removed: vec![],
            },
            EventData::Revoked {
                sub: sub(),
                source: RevokedBy::Risc,
            },
            EventData::RefreshFailing {
                sub: sub(),
                error: "x".into(),
            },
            EventData::Recovered { sub: sub() },
            EventData::AccountDisabled {
                sub: sub(),
                reason: None,
            },
            EventData::AccountEnabled {
                sub: sub(),
                reason: None,
            },
            EventData::SessionsRevoked { sub: sub() },
            EventData::CredentialChangeRequired { sub: sub() },
            EventData::Forgotten { sub: sub() },
            EventData::Verification { state: None },
        ] {
            let json = serde_json::to_value(&data).unwrap();
            assert_eq!(json["type"], data.kind());
        }
    }

    #[test]
    fn scope_changes_name_what_was_added_and_removed() {
        let sub = Subject::parse("1").unwrap();
        let a = Scopes::parse("openid https://www.googleapis.com/auth/drive.appdata").unwrap();
        let b = Scopes::parse("openid https://www.googleapis.com/auth/calendar").unwrap();
        assert_eq!(EventData::scopes_changed(&sub, &a, &a), None);
        assert_eq!(
            EventData::scopes_changed(&sub, &a, &b),
            Some(EventData::ScopesChanged {
                sub: "1".into(),
                added: vec!["https://www.googleapis.com/auth/calendar".into()],
                removed: vec!["https://www.googleapis.com/auth/drive.appdata".into()],
            })
        );
    }
}
