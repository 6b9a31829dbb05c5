//! The domain's [`EventStore`] on PostgreSQL: the `outbox` table (events written with the credential change they
//! report, or appended on their own) and the `risc_jtis` register (migration 0003).
//!
//! - `claim_due` leases due pending events with one statement that picks them `FOR UPDATE SKIP LOCKED`: instances
//!   claiming at the same moment each get other events and none waits for another; a lease that runs out (its
//!   claimer died) makes the event due again, with the same id.
//! - `first_sight` is one `INSERT ... ON CONFLICT` (the row lock admits one caller per `jti`); every
//!   [`JTI_PURGE_EVERY`] calls, the store deletes a bounded batch of `jti`s older than the retention.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use offline_access_domain::StoreError;
use offline_access_domain::events::{
    DeliveryState, EventCounts, EventFilter, EventPage, EventRecord, EventStore, OutboxEvent,
    Settlement,
};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::store::{Inner, PgStore};

/// Every how many `first_sight` calls (per store) one purges expired `jti`s (a batch of at most
/// [`JTI_PURGE_BATCH`](crate::sql::JTI_PURGE_BATCH)); the first call purges too.
const JTI_PURGE_EVERY: u64 = 64;

/// Events as the outbox statements take them: four arrays (ids, kinds, creation times, bodies), so any number of
/// events is one statement with four parameters.
pub(crate) struct EventColumns<'a> {
    ids: Vec<&'a str>,
    kinds: Vec<&'a str>,
    created_at: Vec<OffsetDateTime>,
    bodies: Vec<&'a str>,
}

impl<'a> EventColumns<'a> {
    /// The columns of `events`.
    pub(crate) fn new(events: &'a [EventRecord]) -> EventColumns<'a> {
        EventColumns {
            ids: events.iter().map(|e| e.id.as_str()).collect(),
            kinds: events.iter().map(|e| e.kind.as_str()).collect(),
            created_at: events.iter().map(|e| e.created_at).collect(),
            bodies: events.iter().map(|e| e.body.as_str()).collect(),
        }
    }

    /// The four parameters, in the order the statements take them.
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.ids, &self.kinds, &self.created_at, &self.bodies]
    }
}

/// Reads one outbox row (selected with [`EVENT_COLUMNS`](crate::sql::EVENT_COLUMNS)).
fn decode_event(inner: &Inner, doing: &str, row: &Row) -> Result<OutboxEvent, StoreError> {
    let map = |e: tokio_postgres::Error| inner.errors.driver(doing, &e);
    let id: String = row.try_get("id").map_err(map)?;
    let state: &str = row.try_get("state").map_err(map)?;
    let state = DeliveryState::parse(state).ok_or_else(|| {
        StoreError::Other(format!("outbox event {id} has an unknown state `{state}`"))
    })?;
    let attempts: i32 = row.try_get("attempts").map_err(map)?;
    Ok(OutboxEvent {
        record: EventRecord {
            kind: row.try_get("kind").map_err(map)?,
            created_at: row.try_get("created_at").map_err(map)?,
            body: row.try_get("body").map_err(map)?,
            id,
        },
        state,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        next_attempt_at: row.try_get("next_attempt_at").map_err(map)?,
        last_error: row.try_get("last_error").map_err(map)?,
        delivered_at: row.try_get("delivered_at").map_err(map)?,
    })
}

/// A `usize` limit as SQL's `bigint`.
fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Runs an outbox query and reads its rows as events.
    async fn events_query(
        &self,
        doing: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let inner = &*self.inner;
        inner
            .query(doing, sql, params)
            .await?
            .iter()
            .map(|row| decode_event(inner, doing, row))
            .collect()
    }
}

#[async_trait]
impl EventStore for PgStore {
    async fn append(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let inner = &*self.inner;
        let columns = EventColumns::new(events);
        inner
            .execute(
                "recording events",
                &inner.sql.events.append,
                &columns.params(),
            )
            .await
            .map(drop)
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let until = now
            .checked_add(lease)
            .ok_or_else(|| StoreError::Other(format!("an event lease of {lease} is too long")))?;
        self.events_query(
            "claiming events",
            &self.inner.sql.events.claim,
            &[&now, &until, &limit_param(limit)],
        )
        .await
    }

    async fn settle(&self, id: &str, settlement: &Settlement) -> Result<(), StoreError> {
        self.settle_all(&[(id.to_owned(), settlement.clone())])
            .await
    }

    async fn settle_all(&self, outcomes: &[(String, Settlement)]) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let n = outcomes.len();
        let mut ids = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut next_attempts = Vec::with_capacity(n);
        let mut errors = Vec::with_capacity(n);
        let mut delivered = Vec::with_capacity(n);
        for (id, settlement) in outcomes {
            let (state, next_attempt_at, error, delivered_at) = match settlement {
                Settlement::Delivered { at } => (DeliveryState::Delivered, None, None, Some(*at)),
                Settlement::RetryAt { at, error } => (
                    DeliveryState::Pending,
                    Some(*at),
                    Some(error.as_str()),
                    None,
                ),
                Settlement::Failed { error } => {
                    (DeliveryState::Failed, None, Some(error.as_str()), None)
                }
            };
            ids.push(id.as_str());
            states.push(state.as_str());
            next_attempts.push(next_attempt_at);
            errors.push(error);
            delivered.push(delivered_at);
        }
        let inner = &*self.inner;
        inner
            .execute(
                "settling events",
                &inner.sql.events.settle,
                &[&ids, &states, &next_attempts, &errors, &delivered],
            )
            .await
            .map(drop)
    }

    async fn list_events(
        &self,
        filter: EventFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        let sql = &self.inner.sql.events.list[match filter {
            EventFilter::All => 0,
            EventFilter::Pending => 1,
            EventFilter::Failed => 2,
        }];
        // `''` sorts before every id (byte order).
        let after = cursor.unwrap_or_default();
        // One more than asked, to know whether there is a next page.
        let fetch = limit_param(limit.saturating_add(1));
        let mut items = self
            .events_query("listing events", sql, &[&after, &fetch])
            .await?;
        let mut page = EventPage::default();
        if items.len() > limit {
            items.truncate(limit);
            page.next_cursor = items.last().map(|e| e.record.id.clone());
        }
        page.items = items;
        Ok(page)
    }

    async fn event(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        Ok(self
            .events_query("reading an event", &self.inner.sql.events.get, &[&id])
            .await?
            .pop())
    }

    async fn replay(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let changed = inner
            .execute("replaying an event", &inner.sql.events.replay, &[&id, &now])
            .await?;
        Ok(changed > 0)
    }

    async fn counts(&self) -> Result<EventCounts, StoreError> {
        let inner = &*self.inner;
        let counts = inner
            .query_counts("counting events", &inner.sql.events.counts, &[])
            .await?;
        let count = |i: usize| counts.get(i).copied().unwrap_or(0);
        Ok(EventCounts {
            pending: count(0),
            delivered: count(1),
            failed: count(2),
        })
    }

    async fn purge_delivered(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let inner = &*self.inner;
        inner
            .execute(
                "purging delivered events",
                &inner.sql.events.purge_delivered,
                &[&before],
            )
            .await
    }

    async fn first_sight(
        &self,
        jti: &str,
        now: OffsetDateTime,
        keep_for: time::Duration,
    ) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let cut = now
            .checked_sub(keep_for)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let first = !inner
            .query(
                "registering a RISC jti",
                &inner.sql.events.first_sight,
                &[&jti, &now, &cut],
            )
            .await?
            .is_empty();
        if inner
            .jti_calls
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(JTI_PURGE_EVERY)
        {
            // Housekeeping: a failure here does not change the answer, and the next purge catches up.
            if let Err(error) = inner
                .execute(
                    "purging expired RISC jtis",
                    &inner.sql.events.purge_jtis,
                    &[&cut],
                )
                .await
            {
                tracing::warn!(%error, "purging expired RISC jtis failed");
            }
        }
        Ok(first)
    }

    async fn unsee(&self, jti: &str) -> Result<(), StoreError> {
        let inner = &*self.inner;
        inner
            .execute("forgetting a RISC jti", &inner.sql.events.unsee, &[&jti])
            .await
            .map(drop)
    }
}
