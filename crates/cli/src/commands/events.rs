//! `events list` and `events replay`: the webhook outbox, from the operator's side.

use offline_access_domain::SystemClock;
use offline_access_domain::events::{DeliveryState, EventFilter, OutboxEvent, is_event_id};
use offline_access_domain::ports::Clock as _;
use secrecy::ExposeSecret as _;

use crate::commands::admin::{rfc3339, store_failure, table};
use crate::compose;
use crate::config::Config;
use crate::error::{Failure, Outcome, out};

/// How many events are read per page.
const PAGE: usize = 500;

/// `events list [--pending|--failed] [--json]`: every recorded event, oldest first, with its delivery state (no
/// body: bodies are for the webhook; `--json` prints one object per line with the body's `data`).
pub(crate) async fn list(config: &Config, filter: EventFilter, json: bool) -> Outcome {
    let keys = compose::key_ring(config)?;
    let store = compose::open_store(config, keys).await?;
    let events = store.events_port();
    let mut rows = Vec::new();
    let mut cursor = None;
    let mut count = 0usize;
    loop {
        let page = events
            .list_events(filter, cursor.take(), PAGE)
            .await
            .map_err(store_failure)?;
        for event in &page.items {
            count += 1;
            if json {
                out!("{}", json_line(event));
            } else {
                rows.push(row(event));
            }
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    if json {
        return Ok(());
    }
    if count == 0 {
        out!(
            "no events recorded in the {}{}",
            store.describe(),
            webhooks_note(config)
        );
        return Ok(());
    }
    let table = table(
        &[
            "ID",
            "TYPE",
            "CREATED",
            "STATE",
            "ATTEMPTS",
            "NEXT",
            "LAST ERROR",
        ],
        &rows,
    );
    out!("{}", table.trim_end());
    Ok(())
}

fn webhooks_note(config: &Config) -> &'static str {
    if config.webhooks.url.is_none() {
        " (webhooks.url is not set, so none are recorded)"
    } else {
        ""
    }
}

fn row(e: &OutboxEvent) -> Vec<String> {
    vec![
        e.record.id.clone(),
        e.record.kind.clone(),
        rfc3339(e.record.created_at),
        e.state.as_str().to_owned(),
        e.attempts.to_string(),
        if e.state == DeliveryState::Pending {
            rfc3339(e.next_attempt_at)
        } else {
            "-".to_owned()
        },
        e.last_error.clone().unwrap_or_else(|| "-".to_owned()),
    ]
}

fn json_line(e: &OutboxEvent) -> serde_json::Value {
    let body: serde_json::Value = serde_json::from_str(&e.record.body).unwrap_or_default();
    serde_json::json!({
        "id": e.record.id,
        "type": e.record.kind,
        "created_at": rfc3339(e.record.created_at),
        "state": e.state.as_str(),
        "attempts": e.attempts,
        "next_attempt_at": (e.state == DeliveryState::Pending).then(|| rfc3339(e.next_attempt_at)),
        "last_error": e.last_error,
        "delivered_at": e.delivered_at.map(rfc3339),
        "data": body.get("data"),
    })
}

/// `events replay ID`: the event becomes pending and due now (same id and body); a running server sends it.
pub(crate) async fn replay(config: &Config, id: &str) -> Outcome {
    if !is_event_id(id) {
        return Err(Failure::config(format!(
            "{id:?} is not an event id; ids look like evt_ followed by 32 hex digits, as `offline-access events \
             list` shows them"
        )));
    }
    let keys = compose::key_ring(config)?;
    let store = compose::open_store(config, keys).await?;
    let replayed = store
        .events_port()
        .replay(id, SystemClock.now())
        .await
        .map_err(store_failure)?;
    if !replayed {
        return Err(Failure::runtime(format!(
            "no event {id} is recorded in the {}; check the id with `offline-access events list`",
            store.describe()
        )));
    }
    tracing::info!(event = %id, "event queued for delivery again by an operator");
    out!(
        "event {id} queued for delivery again; a running server sends it with its webhook-id unchanged"
    );
    Ok(())
}

/// `webhooks secret`: a new random `whsec_` secret (32 random bytes, base64), printed once.
pub(crate) fn webhook_secret() -> Outcome {
    let secret = offline_access_webhooks::new_secret()
        .map_err(|e| Failure::runtime(format!("cannot make a random secret: {e}")))?;
    out!("{}", secret.expose_secret());
    Ok(())
}
