//! Per-key async mutexes that are dropped when no one holds or waits for them (no growth per user ever seen).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A map of async mutexes, one per key, created on demand.
#[derive(Default)]
pub(crate) struct KeyedMutex {
    map: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Holds one key's mutex; removes the map entry on drop when nobody else uses it.
pub(crate) struct KeyedGuard {
    owner: Arc<KeyedMutex>,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedMutex {
    fn entry(&self, key: &str) -> Arc<AsyncMutex<()>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(key.to_owned()).or_default())
    }

    /// Waits for the key's mutex.
    pub(crate) async fn lock(self: &Arc<Self>, key: &str) -> KeyedGuard {
        let guard = self.entry(key).lock_owned().await;
        KeyedGuard {
            owner: Arc::clone(self),
            key: key.to_owned(),
            guard: Some(guard),
        }
    }

    /// Takes the key's mutex if it is free.
    pub(crate) fn try_lock(self: &Arc<Self>, key: &str) -> Option<KeyedGuard> {
        let guard = self.entry(key).try_lock_owned().ok();
        let Some(guard) = guard else {
            self.forget_if_unused(key);
            return None;
        };
        Some(KeyedGuard {
            owner: Arc::clone(self),
            key: key.to_owned(),
            guard: Some(guard),
        })
    }

    fn forget_if_unused(&self, key: &str) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for KeyedGuard {
    fn drop(&mut self) {
        // Release first, then drop the entry if no one else holds an `Arc` to it (holders and waiters each do).
        // New lockers need the map lock to find the entry, so this cannot race with them.
        let mut map = self
            .owner
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(self.guard.take());
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_key_is_busy_and_other_keys_are_free() {
        let locks = Arc::new(KeyedMutex::default());
        let a = locks.lock("a").await;
        assert!(locks.try_lock("a").is_none());
        assert!(locks.try_lock("b").is_some());
        drop(a);
        assert!(locks.try_lock("a").is_some());
    }

    #[tokio::test]
    async fn entries_are_removed_once_unused() {
        let locks = Arc::new(KeyedMutex::default());
        let a = locks.lock("a").await;
        let _b = locks.lock("b").await;
        assert_eq!(locks.len(), 2);
        drop(a);
        assert_eq!(locks.len(), 1);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_lock_after_the_holder_drops_it() {
        let locks = Arc::new(KeyedMutex::default());
        let held = locks.lock("a").await;
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move {
                let _g = locks.lock("a").await;
            })
        };
        tokio::task::yield_now().await;
        drop(held);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
    }
}
