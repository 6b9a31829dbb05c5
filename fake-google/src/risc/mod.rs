//! Google's Cross-Account Protection (RISC) transmitter.
//!
//! - The RISC discovery document (`GET /.well-known/risc-configuration`) and the RISC management
//!   API (`/v1beta/stream...`, one stream per fake), behind a service-account JWT ([`api`]).
//! - Security Event Tokens (RFC 8417, [`set`]) signed with the fake's **current ID-token signing
//!   key** (so the `kid` is always in `/oauth2/v3/certs`; a rotation moves SETs to the new key
//!   too), POSTed to the receiver ([`push`]) and journaled as `risc_delivery`.
//! - The control API: `POST /_fake/risc/events` sends any event, `GET`/`POST /_fake/risc/stream`
//!   shows or sets the stream, `POST /_fake/service-accounts` hands out a key file
//!   ([`service_account`]); revoking a user (`/_fake/users/{sub}/revoke`) sends `tokens-revoked`
//!   when the stream asks for it.
//!
//! Sending an event changes nothing else at the fake: it only reports.

mod api;
mod push;
mod service_account;
mod set;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use set::{DisableReason, RiscEventType, TokenIdentifierAlg};

use crate::Control;
use crate::control::{bad_request, created, error_json, parse};
use crate::http::json_response;
use crate::model::ControlError;
use crate::state::Sharded;
use set::Subject;

/// The most extra deliveries of one token (`repeat`).
const MAX_REPEAT: u32 = 100;

/// A security event to send: `POST /_fake/risc/events` and [`Control::send_risc_event`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiscEvent {
    /// The event type (`"type"`: `tokens-revoked`, `token-revoked`, `sessions-revoked`,
    /// `account-disabled`, `account-enabled`, `account-credential-change-required`, `verification`).
    #[serde(rename = "type")]
    pub event_type: RiscEventType,
    /// The user (a known sub); required by every type but `verification`, which refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// `account-disabled` only: why (omitted from the event when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DisableReason>,
    /// `verification` only: the `state` the event carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `token-revoked` only: how the user's current refresh token is named (default `prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_identifier_alg: Option<TokenIdentifierAlg>,
    /// How many more times to POST the same token (same `jti`), default 0, at most 100.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeat: u32,
    /// The SET's `aud` and, for `token-revoked`, the client whose refresh token is named;
    /// default the default web client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The receiver; default the stream's (which must then be enabled and, but for
    /// `verification`, request the event type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RiscEvent {
    /// An event of `event_type` with every other field defaulted.
    pub fn new(event_type: RiscEventType) -> Self {
        Self {
            event_type,
            sub: None,
            reason: None,
            state: None,
            token_identifier_alg: None,
            repeat: 0,
            aud: None,
            url: None,
        }
    }

    /// About the user `sub`.
    #[must_use]
    pub fn user(mut self, sub: impl Into<String>) -> Self {
        self.sub = Some(sub.into());
        self
    }

    /// With an `account-disabled` reason.
    #[must_use]
    pub fn reason(mut self, reason: DisableReason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// With a `verification` state.
    #[must_use]
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// Names a `token-revoked` event's refresh token by `alg`.
    #[must_use]
    pub fn token_identifier_alg(mut self, alg: TokenIdentifierAlg) -> Self {
        self.token_identifier_alg = Some(alg);
        self
    }

    /// POSTs the same token `repeat` more times.
    #[must_use]
    pub fn repeat(mut self, repeat: u32) -> Self {
        self.repeat = repeat;
        self
    }

    /// For the client `aud`.
    #[must_use]
    pub fn aud(mut self, aud: impl Into<String>) -> Self {
        self.aud = Some(aud.into());
        self
    }

    /// To the receiver at `url` instead of the stream's.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }
}

/// What a sent event met: the answer of `POST /_fake/risc/events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiscDelivery {
    /// The SET's `jti` (the same for every repeat).
    pub jti: String,
    /// The receiver's HTTP status for the first POST; 0 when it could not be reached.
    pub status: u16,
    /// The receiver's status for every POST, in order (0: unreachable).
    pub statuses: Vec<u16>,
    /// Why the first failed POST could not reach the receiver (connection refused, timeout, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The Security Event Token that was POSTed (a compact JWS).
    pub set: String,
}

/// The fake's one RISC stream: `GET /_fake/risc/stream` and [`Control::risc_stream`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiscStream {
    /// The receiver (`delivery.url`).
    pub url: String,
    /// The event type URIs requested, without duplicates.
    #[serde(default)]
    pub events_requested: Vec<String>,
    /// `false` once disabled with `stream/status:update` (a disabled stream sends nothing).
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

/// The RISC part of the fake's state: the stream and each grant's latest refresh token.
pub(crate) struct RiscState {
    stream: Mutex<Option<RiscStream>>,
    /// By sub, then client ID: the refresh token issued last.
    latest_refresh: Sharded<HashMap<String, String>>,
    /// Built on the first delivery.
    client: OnceLock<Result<reqwest::Client, String>>,
}

impl Default for RiscState {
    fn default() -> Self {
        Self {
            stream: Mutex::new(None),
            latest_refresh: Sharded::new(),
            client: OnceLock::new(),
        }
    }
}

impl RiscState {
    /// Remembers `token` as the latest refresh token of the user's grant to `client_id`.
    pub(crate) fn note_refresh_token(&self, sub: &str, client_id: &str, token: &str) {
        self.latest_refresh
            .shard(sub)
            .entry(sub.to_owned())
            .or_default()
            .insert(client_id.to_owned(), token.to_owned());
    }

    fn latest_refresh_token(&self, sub: &str, client_id: &str) -> Option<String> {
        self.latest_refresh
            .shard(sub)
            .get(sub)
            .and_then(|m| m.get(client_id).cloned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<RiscStream>> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream, if one was configured.
    pub(crate) fn stream(&self) -> Option<RiscStream> {
        self.lock().clone()
    }

    /// Sets the receiver and event types; a new stream is enabled, an existing one keeps its status.
    fn set_stream(&self, url: String, events_requested: Vec<String>) {
        let mut stream = self.lock();
        let enabled = stream.as_ref().is_none_or(|s| s.enabled);
        *stream = Some(RiscStream {
            url,
            events_requested,
            enabled,
        });
    }

    /// Enables or disables the stream; false when there is none.
    fn set_enabled(&self, enabled: bool) -> bool {
        match self.lock().as_mut() {
            Some(s) => {
                s.enabled = enabled;
                true
            }
            None => false,
        }
    }

    /// No stream, no refresh tokens (a reset).
    pub(crate) fn clear(&self) {
        *self.lock() = None;
        self.latest_refresh.clear();
    }

    /// The transmitter's HTTP client (cheap to clone).
    fn client(&self) -> Result<reqwest::Client, String> {
        self.client.get_or_init(push::client).clone()
    }
}

/// Checks a stream's receiver URL and event type URIs; returns the URIs without duplicates.
fn checked_stream(url: &str, events: Vec<String>) -> Result<Vec<String>, String> {
    if !api::is_receiver_url(url) {
        return Err(format!(
            "Invalid delivery url {url:?}: it must be an http or https URL."
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for e in events {
        if RiscEventType::from_uri(&e).is_none() {
            return Err(format!(
                "Invalid events_requested: unknown event type {e:?}."
            ));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Why an event was not sent.
#[derive(Debug)]
pub(crate) enum SendError {
    /// 400: the request is inconsistent.
    BadRequest(String),
    /// 404: an unknown user, or one without a refresh token for the client.
    NotFound(String),
    /// 409: nowhere to send it (`no_receiver`, `stream_disabled`, `event_not_requested`).
    Conflict(&'static str, String),
    /// 500: signing failed.
    Internal(String),
}

impl SendError {
    fn message(&self) -> &str {
        match self {
            Self::BadRequest(m) | Self::NotFound(m) | Self::Conflict(_, m) | Self::Internal(m) => m,
        }
    }

    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(code, _) => (StatusCode::CONFLICT, *code),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        error_json(status, code, self.message())
    }
}

/// The fields that do not apply to the event's type, or are out of range.
fn check_fields(event: &RiscEvent) -> Result<(), SendError> {
    let kind = event.event_type;
    let bad = |m: String| Err(SendError::BadRequest(m));
    let only = |field: &str, kind: RiscEventType| {
        bad(format!("{field} applies to {} events only", kind.as_str()))
    };
    if event.reason.is_some() && kind != RiscEventType::AccountDisabled {
        return only("reason", RiscEventType::AccountDisabled);
    }
    if event.token_identifier_alg.is_some() && kind != RiscEventType::TokenRevoked {
        return only("token_identifier_alg", RiscEventType::TokenRevoked);
    }
    if event.state.is_some() && kind != RiscEventType::Verification {
        return only("state", RiscEventType::Verification);
    }
    if event.sub.is_some() && !kind.needs_user() {
        return bad("verification events have no subject: drop sub".to_owned());
    }
    if event.sub.is_none() && kind.needs_user() {
        return bad(format!("{} events need a sub", kind.as_str()));
    }
    if event.repeat > MAX_REPEAT {
        return bad(format!("repeat must be at most {MAX_REPEAT}"));
    }
    if event.state.as_ref().is_some_and(|s| s.len() > 1024) {
        return bad("state must be at most 1024 characters".to_owned());
    }
    if event
        .aud
        .as_ref()
        .is_some_and(|a| a.is_empty() || a.len() > 512)
    {
        return bad("aud must be between 1 and 512 characters".to_owned());
    }
    if let Some(url) = &event.url
        && !api::is_receiver_url(url)
    {
        return bad(format!("url {url:?} is not an http or https URL"));
    }
    Ok(())
}

/// Where the event goes: its `url`, else the stream's (enabled, requesting the type).
fn receiver(c: &Control, event: &RiscEvent) -> Result<String, SendError> {
    if let Some(url) = &event.url {
        return Ok(url.clone());
    }
    let Some(stream) = c.inner.risc.stream() else {
        return Err(SendError::Conflict(
            "no_receiver",
            "no RISC receiver: configure the stream (POST /v1beta/stream:update, e.g. \
             `offline-access risc register`, or POST /_fake/risc/stream) or pass \"url\""
                .to_owned(),
        ));
    };
    let kind = event.event_type;
    if !stream.enabled {
        return Err(SendError::Conflict(
            "stream_disabled",
            "the RISC stream is disabled: nothing was sent (enable it with POST \
             /v1beta/stream/status:update, or pass \"url\")"
                .to_owned(),
        ));
    }
    if kind != RiscEventType::Verification
        && !stream.events_requested.iter().any(|e| e == kind.uri())
    {
        return Err(SendError::Conflict(
            "event_not_requested",
            format!(
                "the RISC stream does not request {}: nothing was sent (pass \"url\" to send it anyway)",
                kind.uri()
            ),
        ));
    }
    Ok(stream.url)
}

/// Signs the event's SET and POSTs it to its receiver `1 + repeat` times.
pub(crate) async fn send(c: &Control, event: &RiscEvent) -> Result<RiscDelivery, SendError> {
    check_fields(event)?;
    let kind = event.event_type;
    let aud = event.aud.clone().unwrap_or_else(|| c.client_id());
    let refresh_token: String;
    let subject =
        match event.sub.as_deref() {
            None => Subject::Verification {
                state: event.state.as_deref(),
            },
            Some(sub) if c.inner.users.shard(sub).get(sub).is_none() => {
                return Err(SendError::NotFound(format!("no user with sub {sub:?}")));
            }
            Some(sub) if kind == RiscEventType::TokenRevoked => {
                refresh_token = c.inner.risc.latest_refresh_token(sub, &aud).ok_or_else(|| {
                SendError::NotFound(format!(
                    "the user {sub:?} was never issued a refresh token for the client {aud:?}"
                ))
            })?;
                Subject::RefreshToken {
                    alg: event.token_identifier_alg.unwrap_or_default(),
                    token: &refresh_token,
                }
            }
            Some(sub) => Subject::User {
                sub,
                reason: event.reason,
            },
        };
    let url = receiver(c, event)?;
    let jti = set::new_jti();
    let claims = set::claims_json(&aud, c.inner.now(), &jti, &set::events(kind, subject));
    let token = c
        .inner
        .keys
        .current()
        .sign_jwt_typed(set::SET_TYP, &claims)
        .map_err(|e| SendError::Internal(format!("signing failed: {e}")))?;
    let push = push::Push {
        url: &url,
        token: &token,
        jti: &jti,
        event: kind.as_str(),
        sub: event.sub.as_deref(),
        aud: &aud,
    };
    let outcome = push::deliver(&c.inner, &push, event.repeat.saturating_add(1)).await;
    Ok(RiscDelivery {
        jti,
        status: outcome.statuses.first().copied().unwrap_or(0),
        statuses: outcome.statuses,
        error: outcome.error,
        set: token,
    })
}

/// After a user was revoked: `tokens-revoked` for each client the user ever granted (the default
/// client if none), when the stream is enabled and requests it. Failures are only journaled.
pub(crate) async fn after_user_revoked(c: &Control, sub: &str) {
    let wanted = c.inner.risc.stream().is_some_and(|s| {
        s.enabled
            && s.events_requested
                .iter()
                .any(|e| e == RiscEventType::TokensRevoked.uri())
    });
    if !wanted {
        return;
    }
    let mut auds: Vec<String> = c
        .inner
        .grants(sub)
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.client_id)
        .collect();
    if auds.is_empty() {
        auds.push(c.client_id());
    }
    for aud in auds {
        let event = RiscEvent::new(RiscEventType::TokensRevoked)
            .user(sub)
            .aud(aud);
        let _ = send(c, &event).await;
    }
}

impl Control {
    /// Signs a Security Event Token and POSTs it to the receiver (`POST /_fake/risc/events`).
    ///
    /// # Errors
    /// [`ControlError`] when a field does not fit the type, the user is unknown (or has no
    /// refresh token for `token-revoked`), or there is nowhere to send it (no `url` and no
    /// enabled stream requesting the type). A receiver that is down is no error: see
    /// [`RiscDelivery::status`].
    pub async fn send_risc_event(&self, event: RiscEvent) -> Result<RiscDelivery, ControlError> {
        send(self, &event)
            .await
            .map_err(|e| ControlError(e.message().to_owned()))
    }

    /// The RISC stream registered with `POST /v1beta/stream:update` (`GET /_fake/risc/stream`).
    pub fn risc_stream(&self) -> Option<RiscStream> {
        self.inner.risc.stream()
    }

    /// Sets the RISC stream without the RISC API (`POST /_fake/risc/stream`).
    ///
    /// # Errors
    /// [`ControlError`] for a URL that is not http(s) or an unknown event type URI.
    pub fn set_risc_stream(&self, stream: RiscStream) -> Result<(), ControlError> {
        let events = checked_stream(&stream.url, stream.events_requested).map_err(ControlError)?;
        self.inner.risc.set_stream(stream.url, events);
        self.inner.risc.set_enabled(stream.enabled);
        Ok(())
    }

    /// A Google service-account key file (`POST /_fake/service-accounts` with no body) whose key
    /// signs JWTs the RISC API accepts.
    pub fn service_account_key(&self) -> Value {
        service_account::key_file(&self.base_url(), &service_account::KeyRequest::default())
            .unwrap_or(Value::Null)
    }
}

/// The RISC routes: discovery, the RISC API and the `/_fake/` controls.
pub(crate) fn routes() -> Router<Control> {
    Router::new()
        .route("/.well-known/risc-configuration", get(api::configuration))
        .route("/v1beta/stream:update", post(api::update))
        .route("/v1beta/stream", get(api::get))
        .route("/v1beta/stream:verify", post(api::verify))
        .route("/v1beta/stream/status", get(api::status))
        .route("/v1beta/stream/status:update", post(api::update_status))
        .route("/_fake/risc/events", post(send_event))
        .route("/_fake/risc/stream", get(get_stream).post(set_stream))
        .route("/_fake/service-accounts", post(service_account))
}

/// `POST /_fake/risc/events`.
async fn send_event(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")),
    };
    let event: RiscEvent = match parse(&body, false) {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    match send(&c, &event).await {
        Ok(d) => json_response(
            StatusCode::OK,
            &serde_json::to_value(d).unwrap_or(Value::Null),
        ),
        Err(e) => e.into_response(),
    }
}

/// `GET /_fake/risc/stream`.
async fn get_stream(State(c): State<Control>) -> Response {
    match c.risc_stream() {
        Some(s) => json_response(
            StatusCode::OK,
            &serde_json::to_value(s).unwrap_or(Value::Null),
        ),
        None => error_json(
            StatusCode::NOT_FOUND,
            "not_found",
            "no RISC stream is configured",
        ),
    }
}

/// `POST /_fake/risc/stream`: `{"url", "events_requested"?, "enabled"?}`.
async fn set_stream(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")),
    };
    let stream: RiscStream = match parse(&body, false) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = c.set_risc_stream(stream) {
        return e.into_response();
    }
    get_stream(State(c)).await
}

/// `POST /_fake/service-accounts`: `{"project_id"?, "client_email"?}` → 201 with the key file.
async fn service_account(
    State(c): State<Control>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")),
    };
    let req: service_account::KeyRequest = match parse(&body, true) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match service_account::key_file(&c.base_url(), &req) {
        Ok(file) => created(&file),
        Err(e) => e.into_response(),
    }
}
