//! Delivering the outbox: each due event is claimed (leased to one instance), sent signed to the team's webhook,
//! and settled: delivered on a 2xx, else retried with exponential back-off and jitter until the schedule runs
//! out. The same event id goes with every attempt. A failing endpoint slows nothing but this loop: sign-ins and
//! Drive calls only write events, they never wait for a delivery.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use time::OffsetDateTime;

use crate::events::{EventStore, OutboxEvent, SendError, Settlement, WebhookSender};
use crate::ports::{Clock, StoreError};
use crate::service::jittered;

/// When to try an event again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The delay before the first retry (`webhooks.min_retry_ms`, default 5 s); doubled per attempt.
    pub min: Duration,
    /// The longest delay between two attempts (`webhooks.max_retry_ms`, default 1 h).
    pub max: Duration,
    /// How long after its creation an event is given up on (`webhooks.give_up_after_hours`, default 72 h):
    /// then it is `failed`, kept, and `events replay` sends it again.
    pub give_up_after: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(5),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(72 * 3600),
        }
    }
}

impl RetrySchedule {
    /// The delay after the `attempts`-th failed attempt (1 = the first): `min · 2^(attempts-1)`, capped at `max`,
    /// with jitter into `[d/2, d)` so that events failed together do not come back together.
    #[must_use]
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = self
            .min
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(self.max);
        jittered(exp, attempts)
    }

    /// What to record after a failed attempt at `event` (its `attempts` not yet counting this one) at `now`.
    #[must_use]
    pub fn after_failure(
        &self,
        event: &OutboxEvent,
        error: String,
        now: OffsetDateTime,
    ) -> Settlement {
        let give_up_at = event.record.created_at
            + time::Duration::try_from(self.give_up_after).unwrap_or(time::Duration::DAY);
        let delay = time::Duration::try_from(self.delay(event.attempts.saturating_add(1)))
            .unwrap_or(time::Duration::HOUR);
        let at = now + delay;
        if now >= give_up_at {
            Settlement::Failed { error }
        } else {
            // The last retry lands on the deadline rather than past it.
            Settlement::RetryAt {
                at: at.min(give_up_at),
                error,
            }
        }
    }
}

/// What one round of delivery did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    /// Events claimed.
    pub claimed: usize,
    /// Delivered, with the time from creation to delivery of each.
    pub delivered: Vec<Duration>,
    /// Failed attempts that will be retried.
    pub retried: usize,
    /// Failed attempts after which the event was given up on.
    pub failed: usize,
}

/// The delivery loop's parts and settings.
pub struct Delivery {
    events: Arc<dyn EventStore>,
    sender: Arc<dyn WebhookSender>,
    clock: Arc<dyn Clock>,
    schedule: RetrySchedule,
    /// Events claimed per round (default 64).
    pub batch: usize,
    /// Concurrent sends per round (default 8).
    pub concurrency: usize,
    /// How long a claim keeps other instances off an event at least (default 60 s); a round claims for longer
    /// when its sends could outlast this (see [`Delivery::round_lease`]).
    pub lease: Duration,
    /// The longest one send may take (the webhook sender's timeout; default 10 s).
    pub send_timeout: Duration,
    /// How often the outbox is polled when it was empty (default 500 ms).
    pub poll_interval: Duration,
    /// The longest an attempt's outcome waits to be recorded while its round goes on (default 1 s): a round's
    /// outcomes are recorded together at its end, or when the oldest has waited this long.
    pub settle_within: Duration,
    /// How long delivered events are kept for `events list` (default 7 days).
    pub keep_delivered: Duration,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("schedule", &self.schedule)
            .field("batch", &self.batch)
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("send_timeout", &self.send_timeout)
            .field("settle_within", &self.settle_within)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A delivery loop with the default batch, concurrency, lease and poll interval.
    #[must_use]
    pub fn new(
        events: Arc<dyn EventStore>,
        sender: Arc<dyn WebhookSender>,
        clock: Arc<dyn Clock>,
        schedule: RetrySchedule,
    ) -> Self {
        Self {
            events,
            sender,
            clock,
            schedule,
            batch: 64,
            concurrency: 8,
            lease: Duration::from_secs(60),
            send_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
            settle_within: Duration::from_secs(1),
            keep_delivered: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// Claims the due events and sends them (up to `concurrency` at a time), then settles them: a round's
    /// attempts are recorded in one [`EventStore::settle_all`] at its end, or sooner when an outcome has waited
    /// [`Delivery::settle_within`] (a round held up by a slow endpoint still records what finished). So a round
    /// costs the store one claim and, mostly, one settlement, not one per event.
    ///
    /// # Errors
    /// The store's, when claiming fails. A failed settle is logged: the lease expires and the events are sent
    /// again (at least once, same id).
    pub async fn run_once(&self) -> Result<Round, StoreError> {
        let now = self.clock.now();
        let lease = time::Duration::try_from(self.round_lease()).unwrap_or(time::Duration::MINUTE);
        let claimed = self.events.claim_due(now, lease, self.batch).await?;
        let mut round = Round {
            claimed: claimed.len(),
            ..Round::default()
        };
        let mut finished = futures::stream::iter(claimed)
            .map(|event| async move { self.attempt(event).await })
            .buffer_unordered(self.concurrency.max(1));
        let mut outcomes = Vec::with_capacity(round.claimed);
        // When the oldest outcome not yet recorded must be (tokio's clock: paused in tests with the rest).
        let mut settle_by: Option<tokio::time::Instant> = None;
        loop {
            let next = match settle_by {
                None => finished.next().await,
                // `Next` is cancel-safe: a timeout loses no attempt.
                Some(by) => match tokio::time::timeout_at(by, finished.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.settle(&mut outcomes).await;
                        settle_by = None;
                        continue;
                    }
                },
            };
            let Some((id, settlement, latency)) = next else {
                break;
            };
            match settlement {
                Settlement::Delivered { .. } => round.delivered.extend(latency),
                Settlement::RetryAt { .. } => round.retried += 1,
                Settlement::Failed { .. } => round.failed += 1,
            }
            outcomes.push((id, settlement));
            settle_by.get_or_insert_with(|| tokio::time::Instant::now() + self.settle_within);
        }
        self.settle(&mut outcomes).await;
        Ok(round)
    }

    /// Records `outcomes` (emptied) in one call; a failure is logged (see [`Delivery::run_once`]).
    async fn settle(&self, outcomes: &mut Vec<(String, Settlement)>) {
        if outcomes.is_empty() {
            return;
        }
        if let Err(e) = self.events.settle_all(outcomes).await {
            tracing::warn!(events = outcomes.len(), error = %e, "could not record delivery attempts; the events will be sent again after their lease");
        }
        outcomes.clear();
    }

    /// The lease a round claims its events with: [`Delivery::lease`], or longer when the round's sends could
    /// outlast it. A round of `batch` events sent `concurrency` at a time is `batch / concurrency` waves (rounded
    /// up) of at most `send_timeout` each; one more covers the claim and the settling. An event whose lease ran out
    /// while it waited for its turn would be claimed and sent by a second instance too (defaults: 64 events, 8 at a
    /// time, 10 s: 90 s).
    #[must_use]
    pub fn round_lease(&self) -> Duration {
        let waves = self.batch.max(1).div_ceil(self.concurrency.max(1));
        let waves = u32::try_from(waves.saturating_add(1)).unwrap_or(u32::MAX);
        self.lease.max(self.send_timeout.saturating_mul(waves))
    }

    /// Sends one event: its id, what to record, and (delivered) its latency from creation.
    async fn attempt(&self, event: OutboxEvent) -> (String, Settlement, Option<Duration>) {
        let result = self.sender.send(&event.record).await;
        let now = self.clock.now();
        let (settlement, latency) = match result {
            Ok(()) => {
                let latency = Duration::try_from(now - event.record.created_at).unwrap_or_default();
                (Settlement::Delivered { at: now }, Some(latency))
            }
            Err(e) => {
                let error = match &e {
                    SendError::Status(status) => format!("HTTP {status}"),
                    SendError::Unreachable(cause) => cause.clone(),
                };
                let settlement = self.schedule.after_failure(&event, error, now);
                match &settlement {
                    Settlement::Failed { error } => {
                        tracing::error!(event = %event.record.id, kind = %event.record.kind, attempts = event.attempts + 1, error = %error, "webhook delivery given up; `offline-access events replay` sends it again")
                    }
                    _ => {
                        tracing::warn!(event = %event.record.id, kind = %event.record.kind, attempts = event.attempts + 1, error = %e, "webhook delivery failed; will retry")
                    }
                }
                (settlement, None)
            }
        };
        (event.record.id, settlement, latency)
    }

    /// Runs rounds until `shutdown` completes: at once again after a full batch, else after `poll_interval`.
    /// Purges delivered events older than `keep_delivered` about hourly. `observe` sees every round (metrics).
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
        mut observe: impl FnMut(&Round),
    ) {
        tokio::pin!(shutdown);
        let mut last_purge: Option<tokio::time::Instant> = None;
        loop {
            let full = match self.run_once().await {
                Ok(round) => {
                    observe(&round);
                    round.claimed >= self.batch
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the event outbox; retrying");
                    false
                }
            };
            if last_purge.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                last_purge = Some(tokio::time::Instant::now());
                let before = self.clock.now()
                    - time::Duration::try_from(self.keep_delivered).unwrap_or(time::Duration::WEEK);
                match self.events.purge_delivered(before).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(purged = n, "delivered events past their retention purged")
                    }
                    Err(e) => tracing::warn!(error = %e, "could not purge delivered events"),
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use time::macros::datetime;

    use super::*;
    use crate::events::{DeliveryState, Event, EventData, EventFilter, EventRecord, RevokedBy};
    use crate::memory::{ManualClock, MemoryStore};

    const START: OffsetDateTime = datetime!(2026-12-06 10:00 UTC);

    /// A receiver that is down until told otherwise, and records every attempt by id.
    #[derive(Default)]
    struct Receiver {
        up: AtomicBool,
        attempts: Mutex<HashMap<String, Vec<String>>>,
    }

    #[async_trait]
    impl WebhookSender for Receiver {
        async fn send(&self, event: &EventRecord) -> Result<(), SendError> {
            self.attempts
                .lock()
                .unwrap()
                .entry(event.id.clone())
                .or_default()
                .push(event.body.clone());
            if self.up.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(SendError::Status(503))
            }
        }
    }

    fn revoked(sub: &str, at: OffsetDateTime) -> EventRecord {
        Event::new(
            EventData::Revoked {
                sub: sub.into(),
                source: RevokedBy::Risc,
            },
            at,
        )
        .record()
    }

    #[test]
    fn the_delay_doubles_from_min_is_capped_at_max_and_jittered_into_its_upper_half() {
        let schedule = RetrySchedule {
            min: Duration::from_secs(5),
            max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
        };
        for (attempts, full) in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (30, 60)] {
            for _ in 0..50 {
                let d = schedule.delay(attempts);
                let full = Duration::from_secs(full);
                assert!(d >= full / 2 && d <= full, "attempt {attempts}: {d:?}");
            }
        }
    }

    /// `n` pending events, never attempted.
    fn pending(n: usize) -> Vec<OutboxEvent> {
        (0..n)
            .map(|i| OutboxEvent {
                record: revoked(&i.to_string(), START),
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at: START,
                last_error: None,
                delivered_at: None,
            })
            .collect()
    }

    /// Each `settle_all` call's outcomes, in order.
    type SettleCalls = Arc<Mutex<Vec<Vec<(String, Settlement)>>>>;

    /// A store mock that hands out `claimed` once and records each `settle_all` call.
    fn settling_store(claimed: Vec<OutboxEvent>) -> (crate::events::MockEventStore, SettleCalls) {
        let mut store = crate::events::MockEventStore::new();
        store
            .expect_claim_due()
            .times(1)
            .return_once(move |_, _, _| Ok(claimed));
        store.expect_settle().never();
        let calls = SettleCalls::default();
        let seen = calls.clone();
        store.expect_settle_all().returning(move |outcomes| {
            seen.lock().unwrap().push(outcomes.to_vec());
            Ok(())
        });
        (store, calls)
    }

    // Paused clock: the round's 1 s settle deadline can only pass when every send waits, never by load.
    #[tokio::test(start_paused = true)]
    async fn a_round_is_settled_in_one_call() {
        let claimed = pending(16);
        let mut ids: Vec<String> = claimed.iter().map(|e| e.record.id.clone()).collect();
        let (store, calls) = settling_store(claimed);
        let receiver = Arc::new(Receiver::default());
        receiver.up.store(true, Ordering::SeqCst);
        let delivery = Delivery::new(
            Arc::new(store),
            receiver,
            Arc::new(ManualClock::new(START)),
            RetrySchedule::default(),
        );
        let round = delivery.run_once().await.unwrap();
        assert_eq!(round.delivered.len(), 16);
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "one settle_all for the round");
        let mut settled: Vec<String> = calls.iter().flatten().map(|(id, _)| id.clone()).collect();
        settled.sort();
        ids.sort();
        assert_eq!(settled, ids, "each event settled once");
        assert!(
            calls
                .iter()
                .flatten()
                .all(|(_, s)| *s == Settlement::Delivered { at: START })
        );
    }

    /// Answers at once, but holds the send of event `slow` for `hold` (tokio's clock).
    struct SlowFor {
        slow: String,
        hold: Duration,
    }

    #[async_trait]
    impl WebhookSender for SlowFor {
        async fn send(&self, event: &EventRecord) -> Result<(), SendError> {
            if event.id == self.slow {
                tokio::time::sleep(self.hold).await;
            }
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_send_does_not_hold_back_the_outcomes_of_its_round() {
        let claimed = pending(8);
        let slow = claimed[0].record.id.clone();
        let (store, calls) = settling_store(claimed);
        let sender = Arc::new(SlowFor {
            slow: slow.clone(),
            hold: Duration::from_secs(8),
        });
        let delivery = Delivery::new(
            Arc::new(store),
            sender,
            Arc::new(ManualClock::new(START)),
            RetrySchedule::default(),
        );
        let started = tokio::time::Instant::now();
        let round = delivery.run_once().await.unwrap();
        assert_eq!(round.delivered.len(), 8);
        assert!(started.elapsed() >= Duration::from_secs(8));
        let calls = calls.lock().unwrap();
        let ids = |call: &Vec<(String, Settlement)>| -> Vec<String> {
            call.iter().map(|(id, _)| id.clone()).collect()
        };
        assert_eq!(
            calls.len(),
            2,
            "the 7 fast outcomes after settle_within, then the slow one"
        );
        assert_eq!(calls[0].len(), 7);
        assert!(!ids(&calls[0]).contains(&slow));
        assert_eq!(ids(&calls[1]), vec![slow]);
    }

    #[test]
    fn a_round_claims_for_longer_than_its_sends_can_take() {
        let mut delivery = Delivery::new(
            Arc::new(MemoryStore::new()),
            Arc::new(Receiver::default()),
            Arc::new(ManualClock::new(START)),
            RetrySchedule::default(),
        );
        // 64 events, 8 at a time: 8 waves of up to 10 s, and one more.
        assert_eq!(delivery.round_lease(), Duration::from_secs(90));
        delivery.send_timeout = Duration::from_secs(30);
        assert_eq!(delivery.round_lease(), Duration::from_secs(270));
        // One wave of short sends: the configured lease.
        delivery.concurrency = 64;
        delivery.send_timeout = Duration::from_secs(5);
        assert_eq!(delivery.round_lease(), Duration::from_secs(60));
        delivery.concurrency = 0;
        delivery.batch = 0;
        delivery.send_timeout = Duration::MAX;
        assert_eq!(
            delivery.round_lease(),
            Duration::MAX,
            "saturates, never panics"
        );
    }

    #[tokio::test]
    async fn a_round_claims_with_its_round_lease() {
        let mut store = crate::events::MockEventStore::new();
        store
            .expect_claim_due()
            .withf(|_, lease, limit| *lease == time::Duration::seconds(90) && *limit == 64)
            .times(1)
            .returning(|_, _, _| Ok(Vec::new()));
        let delivery = Delivery::new(
            Arc::new(store),
            Arc::new(Receiver::default()),
            Arc::new(ManualClock::new(START)),
            RetrySchedule::default(),
        );
        assert_eq!(delivery.run_once().await.unwrap().claimed, 0);
    }

    #[tokio::test]
    async fn an_endpoint_down_for_an_hour_of_simulated_time_gets_every_event_after_with_the_same_id()
     {
        let store = MemoryStore::new();
        let clock = Arc::new(ManualClock::new(START));
        let receiver = Arc::new(Receiver::default());
        let schedule = RetrySchedule {
            min: Duration::from_secs(1),
            max: Duration::from_secs(300),
            give_up_after: Duration::from_secs(72 * 3600),
        };
        let delivery = Delivery::new(
            Arc::new(store.clone()),
            receiver.clone(),
            clock.clone(),
            schedule,
        );
        let events: Vec<EventRecord> = (0..20).map(|i| revoked(&i.to_string(), START)).collect();
        store.append(&events).await.unwrap();
        // An hour down, polled every simulated 10 s.
        for _ in 0..360 {
            let round = delivery.run_once().await.unwrap();
            assert!(round.delivered.is_empty());
            clock.advance(time::Duration::seconds(10));
        }
        {
            // Back-off: 1, 2, 4, ... 256 s, then at most every 300 s: 9 + about 20 tries in the hour, never one
            // per poll (360).
            let attempts = receiver.attempts.lock().unwrap();
            for event in &events {
                let tries = attempts[&event.id].len();
                assert!((9..=40).contains(&tries), "{tries} tries in an hour");
            }
        }
        receiver.up.store(true, Ordering::SeqCst);
        for _ in 0..40 {
            delivery.run_once().await.unwrap();
            clock.advance(time::Duration::seconds(10));
        }
        let page = store
            .list_events(EventFilter::All, None, 100)
            .await
            .unwrap();
        assert_eq!(page.items.len(), 20);
        assert!(
            page.items
                .iter()
                .all(|e| e.state == DeliveryState::Delivered)
        );
        let attempts = receiver.attempts.lock().unwrap();
        for event in &events {
            let tries = &attempts[&event.id];
            assert!(tries.len() > 3, "retried while down");
            assert!(
                tries.iter().all(|body| *body == event.body),
                "the same body every time"
            );
        }
    }

    #[tokio::test]
    async fn an_event_is_given_up_on_after_the_schedule_and_replayed_on_demand() {
        let store = MemoryStore::new();
        let clock = Arc::new(ManualClock::new(START));
        let receiver = Arc::new(Receiver::default());
        let schedule = RetrySchedule {
            min: Duration::from_secs(60),
            max: Duration::from_secs(600),
            give_up_after: Duration::from_secs(3600),
        };
        let delivery = Delivery::new(
            Arc::new(store.clone()),
            receiver.clone(),
            clock.clone(),
            schedule,
        );
        let event = revoked("1", START);
        store.append(std::slice::from_ref(&event)).await.unwrap();
        let mut failed = 0;
        for _ in 0..200 {
            failed += delivery.run_once().await.unwrap().failed;
            clock.advance(time::Duration::seconds(30));
        }
        assert_eq!(failed, 1);
        let stored = store.event(&event.id).await.unwrap().unwrap();
        assert_eq!(stored.state, DeliveryState::Failed);
        assert_eq!(stored.last_error.as_deref(), Some("HTTP 503"));
        receiver.up.store(true, Ordering::SeqCst);
        assert!(store.replay(&event.id, clock.now()).await.unwrap());
        let round = delivery.run_once().await.unwrap();
        assert_eq!(round.delivered.len(), 1);
        assert_eq!(
            store.event(&event.id).await.unwrap().unwrap().state,
            DeliveryState::Delivered
        );
    }
}
