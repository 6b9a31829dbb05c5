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

    fn put_sync(&self, credential: &Credential) -> Result<Credential, StoreError> {
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
        Ok(next)
    }

    fn page(
        &self,
        cursor: Option<String>,
        limit: usize,
        keep: impl Fn(&Credential) -> bool,
    ) -> CredentialPage {
        let records = self.records();
        let mut items: Vec<Credential> = records
            .live
            .values()
            .filter(|c| {
                cursor
                    .as_deref()
                    .is_none_or(|after| c.subject.as_str() > after)
            })
            .filter(|c| keep(c))
            .take(limit.saturating_add(1))
            .cloned()
            .collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|c| c.subject.as_str().to_owned())
        } else {
            None
        };
        CredentialPage {
            items,
            next_cursor,
            unreadable: Vec::new(),
        }
    }
}

#[async_trait]
impl CredentialStore for MemoryStore {
    async fn get(&self, subject: &Subject) -> Result<Option<Credential>, StoreError> {
        Ok(self.records().live.get(subject).cloned())
    }

    async fn put(&self, credential: &Credential) -> Result<Credential, StoreError> {
        self.put_sync(credential)
    }

    async fn delete(&self, subject: &Subject, version: u64) -> Result<(), StoreError> {
        let mut records = self.records();
        if records.live.get(subject).map(|c| c.version) != Some(version) {
            return Err(StoreError::Conflict);
        }
        records.live.remove(subject);
        records.deleted.insert(subject.clone(), version);
        Ok(())
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
