//! An in-memory credential store and a manual clock, for tests and as a reference adapter.
//!
//! The in-memory store keeps tokens in process memory only (as zeroizing secrets); it has no "at rest".

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::credential::Credential;
use crate::events::{
    DeliveryState, EventCounts, EventFilter, EventPage, EventRecord, EventStore, OutboxEvent,
    Settlement,
};
use crate::identity::Subject;
use crate::ports::{Clock, CredentialPage, CredentialStore, StoreError, UserLock};
use crate::risc::index_keys;

/// A [`CredentialStore`] in process memory, honouring the whole port contract (versions that never repeat, the
/// refresh-token rule, user locks).
#[derive(Default, Clone)]
pub struct MemoryStore {
    inner: Arc<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    records: Mutex<Records>,
    locks: Mutex<HashMap<Subject, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Default)]
struct Records {
    live: BTreeMap<Subject, Credential>,
    /// The last version of each deleted record (a tombstone), so that versions never repeat.
    deleted: HashMap<Subject, u64>,
    /// The outbox, by event id (ids sort by creation).
    outbox: BTreeMap<String, Outboxed>,
    /// RISC `jti`s and when they were first seen.
    seen: HashMap<String, OffsetDateTime>,
}

struct Outboxed {
    event: OutboxEvent,
    leased_until: Option<OffsetDateTime>,
}

impl Records {
    fn record(&mut self, events: &[EventRecord]) {
        for record in events {
            self.outbox.insert(
                record.id.clone(),
                Outboxed {
                    event: OutboxEvent {
                        record: record.clone(),
                        state: DeliveryState::Pending,
                        attempts: 0,
                        next_attempt_at: record.created_at,
                        last_error: None,
                        delivered_at: None,
                    },
                    leased_until: None,
                },
            );
        }
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.inner
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn put_sync(
        &self,
        credential: &Credential,
        events: &[EventRecord],
    ) -> Result<Credential, StoreError> {
        let mut records = self.records();
        let stored = records.live.get(&credential.subject);
        if stored.map_or(0, |c| c.version) != credential.version {
            return Err(StoreError::Conflict);
        }
        let mut next = credential.clone();
        if next.refresh_token.is_none() {
            next.refresh_token = stored.and_then(|c| c.refresh_token.clone());
        }
        let floor = match stored {
            Some(c) => c.version,
            None => records
                .deleted
                .get(&credential.subject)
                .copied()
                .unwrap_or(0),
        };
        next.version = floor.checked_add(1).ok_or(StoreError::Conflict)?;
        records.live.insert(next.subject.clone(), next.clone());
        records.record(events);
        Ok(next)
    }

    fn page(
        &self,
        cursor: Option<String>,
        limit: usize,
        keep: impl Fn(&Credential) -> bool,
    ) -> CredentialPage {
        let records = self.records();
        let (items, next_cursor) = page_after(
            &records.live,
            |subject| subject.as_str(),
            cursor.as_deref(),
            limit,
            |c| keep(c).then(|| c.clone()),
        );
        CredentialPage {
            items,
            next_cursor,
            unreadable: Vec::new(),
        }
    }
}

/// Up to `limit` of what `pick` keeps of `map`'s values whose key comes after `cursor`, in key order, and the key of
/// the last one as the next page's cursor when there may be more.
fn page_after<K: Ord, V, T>(
    map: &BTreeMap<K, V>,
    key: impl Fn(&K) -> &str,
    cursor: Option<&str>,
    limit: usize,
    pick: impl Fn(&V) -> Option<T>,
) -> (Vec<T>, Option<String>) {
    let mut taken: Vec<(&K, T)> = map
        .iter()
        .filter(|(k, _)| cursor.is_none_or(|after| key(k) > after))
        .filter_map(|(k, v)| pick(v).map(|t| (k, t)))
        .take(limit.saturating_add(1))
        .collect();
    let next_cursor = if taken.len() > limit {
        taken.truncate(limit);
        taken.last().map(|(k, _)| key(k).to_owned())
    } else {
        None
    };
    (taken.into_iter().map(|(_, t)| t).collect(), next_cursor)
}

#[async_trait]
impl CredentialStore for MemoryStore {
    async fn get(&self, subject: &Subject) -> Result<Option<Credential>, StoreError> {
        Ok(self.records().live.get(subject).cloned())
    }

    async fn put_with(
        &self,
        credential: &Credential,
        events: &[EventRecord],
    ) -> Result<Credential, StoreError> {
        self.put_sync(credential, events)
    }

    async fn delete_with(
        &self,
        subject: &Subject,
        version: u64,
        events: &[EventRecord],
    ) -> Result<(), StoreError> {
        let mut records = self.records();
        if records.live.get(subject).map(|c| c.version) != Some(version) {
            return Err(StoreError::Conflict);
        }
        records.live.remove(subject);
        records.deleted.insert(subject.clone(), version);
        records.record(events);
        Ok(())
    }

    async fn find_by_refresh_token(&self, index_key: &str) -> Result<Vec<Subject>, StoreError> {
        // The reference adapter computes the keys on the fly; real stores keep them as an index.
        Ok(self
            .records()
            .live
            .values()
            .filter(|c| {
                c.refresh_token
                    .as_ref()
                    .is_some_and(|t| index_keys(t).iter().any(|k| k == index_key))
            })
            .map(|c| c.subject.clone())
            .collect())
    }

    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        Ok(self.page(cursor, limit, |_| true))
    }

    async fn pending_revocations(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        Ok(self.page(cursor, limit, Credential::is_forgotten))
    }

    async fn lock_user(&self, subject: &Subject) -> Result<Box<dyn UserLock>, StoreError> {
        let mutex = {
            let mut locks = self
                .inner
                .locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(locks.entry(subject.clone()).or_default())
        };
        let guard = mutex.lock_owned().await;
        Ok(Box::new(MemoryLock {
            store: self.clone(),
            subject: subject.clone(),
            _guard: guard,
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        self.records().record(events);
        Ok(())
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let mut records = self.records();
        // The order of both real stores: the soonest due first, then by id.
        let mut due: Vec<(OffsetDateTime, String)> = records
            .outbox
            .iter()
            .filter(|(_, entry)| {
                entry.event.state == DeliveryState::Pending
                    && entry.event.next_attempt_at <= now
                    && entry.leased_until.is_none_or(|until| until <= now)
            })
            .map(|(id, entry)| (entry.event.next_attempt_at, id.clone()))
            .collect();
        due.sort_unstable();
        let mut claimed = Vec::with_capacity(due.len().min(limit));
        for (_, id) in due.into_iter().take(limit) {
            if let Some(entry) = records.outbox.get_mut(&id) {
                entry.leased_until = Some(now + lease);
                claimed.push(entry.event.clone());
            }
        }
        Ok(claimed)
    }

    async fn settle(&self, id: &str, settlement: &Settlement) -> Result<(), StoreError> {
        let mut records = self.records();
        if let Some(entry) = records.outbox.get_mut(id) {
            let event = &mut entry.event;
            event.attempts = event.attempts.saturating_add(1);
            entry.leased_until = None;
            match settlement {
                Settlement::Delivered { at } => {
                    event.state = DeliveryState::Delivered;
                    event.delivered_at = Some(*at);
                    event.last_error = None;
                }
                Settlement::RetryAt { at, error } => {
                    event.next_attempt_at = *at;
                    event.last_error = Some(error.clone());
                }
                Settlement::Failed { error } => {
                    event.state = DeliveryState::Failed;
                    event.last_error = Some(error.clone());
                }
            }
        }
        Ok(())
    }

    async fn list_events(
        &self,
        filter: EventFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        let records = self.records();
        let (items, next_cursor) = page_after(
            &records.outbox,
            String::as_str,
            cursor.as_deref(),
            limit,
            |e| filter.admits(e.event.state).then(|| e.event.clone()),
        );
        Ok(EventPage { items, next_cursor })
    }

    async fn event(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        Ok(self.records().outbox.get(id).map(|e| e.event.clone()))
    }

    async fn replay(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        let mut records = self.records();
        let Some(entry) = records.outbox.get_mut(id) else {
            return Ok(false);
        };
        entry.event.state = DeliveryState::Pending;
        entry.event.attempts = 0;
        entry.event.next_attempt_at = now;
        entry.event.delivered_at = None;
        entry.leased_until = None;
        Ok(true)
    }

    async fn counts(&self) -> Result<EventCounts, StoreError> {
        let records = self.records();
        let mut counts = EventCounts::default();
        for entry in records.outbox.values() {
            match entry.event.state {
                DeliveryState::Pending => counts.pending += 1,
                DeliveryState::Delivered => counts.delivered += 1,
                DeliveryState::Failed => counts.failed += 1,
            }
        }
        Ok(counts)
    }

    async fn purge_delivered(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut records = self.records();
        let n = records.outbox.len();
        records.outbox.retain(|_, e| {
            e.event.state != DeliveryState::Delivered
                || e.event.delivered_at.is_none_or(|at| at >= before)
        });
        Ok((n - records.outbox.len()) as u64)
    }

    async fn first_sight(
        &self,
        jti: &str,
        now: OffsetDateTime,
        keep_for: time::Duration,
    ) -> Result<bool, StoreError> {
        let mut records = self.records();
        records.seen.retain(|_, at| *at + keep_for > now);
        if records.seen.contains_key(jti) {
            return Ok(false);
        }
        records.seen.insert(jti.to_owned(), now);
        Ok(true)
    }

    async fn unsee(&self, jti: &str) -> Result<(), StoreError> {
        self.records().seen.remove(jti);
        Ok(())
    }
}

struct MemoryLock {
    store: MemoryStore,
    subject: Subject,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

#[async_trait]
impl UserLock for MemoryLock {
    async fn get(&mut self) -> Result<Option<Credential>, StoreError> {
        self.store.get(&self.subject).await
    }

    async fn put(&mut self, credential: &Credential) -> Result<Credential, StoreError> {
        self.store.put_sync(credential, &[])
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    #[must_use]
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
