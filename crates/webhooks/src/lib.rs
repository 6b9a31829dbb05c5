//! Webhooks to the team: [`WebhookSender`], the outbound adapter of the domain's
//! [`offline_access_domain::events::WebhookSender`] port.
//!
//! Each attempt POSTs an event record's JSON body, unchanged, signed by the
//! [Standard Webhooks](https://www.standardwebhooks.com/) scheme: headers `webhook-id` (the event id, the same on
//! every attempt), `webhook-timestamp` (Unix seconds of the attempt) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, the key being the base64-decoded part of the
//! `whsec_` secret). A 2xx answer delivers the event; any other status is [`SendError::Status`]; no answer
//! (connection, timeout, TLS) is [`SendError::Unreachable`] with a short cause. Retries are the outbox's.
//!
//! Receivers check a delivery with [`verify`] (and [`Verified::within`] against their clock); [`new_secret`] makes
//! a secret.
//!
//! [`SendError::Status`]: offline_access_domain::events::SendError::Status
//! [`SendError::Unreachable`]: offline_access_domain::events::SendError::Unreachable

mod sender;
mod signature;

pub use sender::{DEFAULT_TIMEOUT, WebhookConfig, WebhookConfigError, WebhookSender};
pub use signature::{
    DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, MIN_KEY_LEN, NEW_KEY_LEN,
    SECRET_PREFIX, SecretError, Verified, VerifyError, WebhookSecret, new_secret, verify,
};
