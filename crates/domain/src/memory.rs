//! An in-memory credential store and a manual clock, for tests and as a reference adapter.
//!
//! The in-memory store keeps tokens in process memory only (as zeroizing secrets); it has no "at rest".

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::credential::Credential;
use crate::identity::Subject;
use crate::ports::{Clock, CredentialPage, CredentialStore, StoreError, UserLock};

/// A [`CredentialStore`] in process memory, honouring the whole port contract (versions, the refresh-token rule,
/// user locks).
#[derive(Default, Clone)]
pub struct MemoryStore {
    inner: Arc<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    records: Mutex<BTreeMap<Subject, Credential>>,
    locks: Mutex<HashMap<Subject, Arc<tokio::sync::Mutex<()>>>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<Subject, Credential>> {
        self.inner
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn put_sync(&self, credential: &Credential) -> Result<Credential, StoreError> {
        let mut records = self.records();
        let stored = records.get(&credential.subject);
        if stored.map_or(0, |c| c.version) != credential.version {
            return Err(StoreError::Conflict);
        }
        let mut next = credential.clone();
        if next.refresh_token.is_none() {
            next.refresh_token = stored.and_then(|c| c.refresh_token.clone());
        }
        next.version = credential.version + 1;
        records.insert(next.subject.clone(), next.clone());
        Ok(next)
    }
}

#[async_trait]
impl CredentialStore for MemoryStore {
    async fn get(&self, subject: &Subject) -> Result<Option<Credential>, StoreError> {
        Ok(self.records().get(subject).cloned())
    }

    async fn put(&self, credential: &Credential) -> Result<Credential, StoreError> {
        self.put_sync(credential)
    }

    async fn delete(&self, subject: &Subject) -> Result<bool, StoreError> {
        Ok(self.records().remove(subject).is_some())
    }

    async fn list(
        &self,
        after: Option<Subject>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        let records = self.records();
        let mut items: Vec<Credential> = match after {
            Some(after) => records
                .range((
                    std::ops::Bound::Excluded(after.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .take(limit.saturating_add(1))
                .map(|(_, c)| c.clone())
                .collect(),
            None => records
                .values()
                .take(limit.saturating_add(1))
                .cloned()
                .collect(),
        };
        let next_after = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|c| c.subject.clone())
        } else {
            None
        };
        Ok(CredentialPage { items, next_after })
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
        self.store.put_sync(credential)
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
