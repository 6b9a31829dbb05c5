//! Held batches: the outbox's fast path, where a filed batch's events are claimed and settled from memory and an
//! event gets a file only when it is settled.
//!
//! ```text
//! outbox/leases/<until>.<write id>
//!                           one per filed batch whose events are not all settled: a name only (a hard link to the
//!                           batch), `<until>` being the end of the lease on it in unix milliseconds (16 hex
//!                           digits, rounded up; 0: filed, claimed by no one yet)
//! ```
//!
//! **Filing** writes a batch into `filed/` as before (synced) and names it `leases/0000000000000000.<write id>`; the
//! process that filed it keeps its events in memory ([`Held`]). No event file and no due marker is written.
//!
//! **Claiming.** A claim lists `leases/`. A batch whose lease has ended and that this process does not hold is taken
//! over: read, and its events that have no event file yet held in memory. The events this process holds are claimed
//! in memory, merged with the due markers by due time (then id); a batch any of whose events is claimed has its
//! lease name renamed to the claim's end (one rename per batch and claim). A batch this process held whose name is
//! gone or renamed (another process took it over after its lease ended, or an `open` filed it as event files) is
//! dropped from memory.
//!
//! **Settling** an event this process holds *creates* its event file with the outcome (unsynced: the batch is still
//! the durable copy; a failed event, its own copy from then on, synced), and a due marker if it is to be retried
//! (from then on it is an event of the slow path: a file and a marker). When every event of a batch is settled the
//! lease name is removed, and then the batch (or, if an event of it waits for a retry, the batch is released as
//! before: kept while one of its events is pending). If the name is gone, another process has the batch, and it is
//! left to it. An event file that exists already (another process settled it after taking the batch over, or it
//! was replayed) is settled as before.
//!
//! **After a crash** a batch's name says who may claim it: after its lease, anyone. At `open`, every batch in
//! `filed/` that this process does not hold is filed as event files and due markers (with the lease of its name,
//! so an event claimed by a live process is not claimed again before its lease ends), and its name removed.
//!
//! So an event delivered at the first try costs one event file, created once, and its share of its batch's
//! synced write, name and rename: no marker, no rewrite, no read.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use offline_access_domain::StoreError;
use offline_access_domain::events::{OutboxEvent, Settlement};
use time::OffsetDateTime;

use super::{
    EventFile, EventName, State, StoredEvent, due_key, encode_event, is_write_id, parse_hex,
};
use crate::fsio::{
    create_synced, create_unsynced, each_name, io_error, link_or_create_empty, remove_if_present,
    replace_file, sync_dir,
};
use crate::store::Inner;

/// At most this many events are held in memory from filing; a batch filed beyond it is read when it is claimed.
const MAX_HELD_EVENTS: usize = 1 << 16;

/// A name in `leases/`: `<until>.<write id>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct LeaseName {
    /// The end of the lease, unix milliseconds rounded up; 0: never claimed.
    until: u64,
    write_id: String,
}

impl LeaseName {
    fn parse(name: &str) -> Option<LeaseName> {
        let (until, write_id) = name.split_once('.')?;
        Some(LeaseName {
            until: parse_hex(until, 16)?,
            write_id: is_write_id(write_id).then(|| write_id.to_owned())?,
        })
    }

    fn file_name(until: u64, write_id: &str) -> String {
        format!("{until:016x}.{write_id}")
    }
}

/// A lease's end as a name's key: unix milliseconds, rounded up (so a name never ends a lease early).
fn until_key(until: OffsetDateTime) -> u64 {
    let ms = until.unix_timestamp_nanos();
    let up = ms.div_euclid(1_000_000) + i128::from(ms.rem_euclid(1_000_000) != 0);
    u64::try_from(up).unwrap_or(0)
}

/// The events this process holds, by batch (see the module's documentation). Only touched under the outbox lock.
#[derive(Default)]
pub(crate) struct Held {
    state: Mutex<HeldState>,
}

#[derive(Default)]
struct HeldState {
    batches: HashMap<Arc<str>, HeldBatch>,
    /// Where each held event is: its batch and index.
    by_id: HashMap<EventName, (Arc<str>, usize)>,
    /// Events held in all.
    events: usize,
}

struct HeldBatch {
    /// The `<until>` of its name in `leases/`.
    lease: u64,
    events: Vec<HeldEvent>,
    /// Not yet settled.
    open: usize,
    /// Some of its events have files that may be pending with it as their copy (retries, or files found when it
    /// was taken over): it is released (asked of those files) rather than removed when its events are settled.
    by_files: bool,
}

struct HeldEvent {
    event: StoredEvent,
    /// Its id, parsed once; `None` for one held in another batch (then settled here).
    id: Option<EventName>,
    /// Its due key ([`due_key`] of its creation: its first attempt).
    due: u64,
    claim: Claim,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    Open,
    Until(OffsetDateTime),
    Settled,
}

/// A held event that a claim may take: its sort key (due time, id) and where it is.
pub(super) struct HeldDue {
    pub(super) due: u64,
    pub(super) id: EventName,
    write_id: Arc<str>,
    index: usize,
}

/// A held batch all of whose events are settled: its lease name goes, then the batch.
pub(super) struct Finished {
    write_id: String,
    lease: u64,
    by_files: bool,
}

impl HeldState {
    /// Holds batch `write_id`. An event held already in another batch (a crash between writing a batch and
    /// removing what it was written from leaves two) is held there only: here it counts as settled. Returns
    /// whether the batch has no event left to settle.
    fn insert(
        &mut self,
        write_id: &str,
        lease: u64,
        events: Vec<StoredEvent>,
        by_files: bool,
    ) -> bool {
        self.remove(write_id);
        let key: Arc<str> = Arc::from(write_id);
        let mut open = 0;
        let events: Vec<HeldEvent> = events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                let id = EventName::parse(&event.id).filter(|id| !self.by_id.contains_key(id));
                let claim = match id {
                    Some(id) => {
                        self.by_id.insert(id, (Arc::clone(&key), index));
                        open += 1;
                        Claim::Open
                    }
                    None => Claim::Settled,
                };
                HeldEvent {
                    due: due_key(event.created_at),
                    event,
                    id,
                    claim,
                }
            })
            .collect();
        self.events += events.len();
        self.batches.insert(
            key,
            HeldBatch {
                lease,
                open,
                events,
                by_files,
            },
        );
        open == 0
    }

    fn remove(&mut self, write_id: &str) -> Option<HeldBatch> {
        let batch = self.batches.remove(write_id)?;
        for event in &batch.events {
            if let Some(id) = EventName::parse(&event.event.id)
                && self
                    .by_id
                    .get(&id)
                    .is_some_and(|(held_in, _)| &**held_in == write_id)
            {
                self.by_id.remove(&id);
            }
        }
        self.events = self.events.saturating_sub(batch.events.len());
        Some(batch)
    }

    /// Marks the held event `id` settled; returns its batch if that finished it.
    fn settle(&mut self, id: &EventName) -> Option<Finished> {
        let (write_id, index) = self.by_id.remove(id)?;
        let batch = self.batches.get_mut(&write_id)?;
        let event = batch.events.get_mut(index)?;
        if event.claim == Claim::Settled {
            return None;
        }
        event.claim = Claim::Settled;
        batch.open = batch.open.saturating_sub(1);
        (batch.open == 0).then(|| Finished {
            write_id: write_id.to_string(),
            lease: batch.lease,
            by_files: batch.by_files,
        })
    }
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HeldState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this process holds batch `write_id`.
    pub(super) fn holds(&self, write_id: &str) -> bool {
        self.lock().batches.contains_key(write_id)
    }
}

impl Inner {
    fn lease_path(&self, until: u64, write_id: &str) -> PathBuf {
        self.outbox
            .leases
            .join(LeaseName::file_name(until, write_id))
    }

    /// Names the batch at `batch` (about to be, or already, `filed/<write_id>`) in `leases/` as claimed by no one.
    pub(super) fn name_filed(&self, batch: &Path, write_id: &str) -> Result<(), StoreError> {
        link_or_create_empty(batch, &self.lease_path(0, write_id))
            .map_err(|e| io_error("naming a filed batch", &e))
    }

    /// Writes a new batch `write_id` (`bytes`) as its name in `leases/`, claimed by no one, then into `filed/`,
    /// durably (where hard links fail, it is written twice).
    pub(super) fn write_named(&self, write_id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (named, filed) = (
            self.lease_path(0, write_id),
            self.outbox.filed.join(write_id),
        );
        create_synced(&named, bytes)
            .and_then(|()| match fs::hard_link(&named, &filed) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(e),
                Err(_) => create_synced(&filed, bytes),
            })
            .and_then(|()| sync_dir(&self.outbox.filed))
            .map_err(|e| io_error("writing a batch of events", &e))
    }

    /// Holds the events of batch `write_id`, just filed and named, in memory (while there is room).
    pub(super) fn hold(&self, write_id: &str, events: Vec<StoredEvent>) -> Result<(), StoreError> {
        for _ in &events {
            self.remembered.count(None, Some(State::Pending));
        }
        let empty = {
            let mut held = self.held.lock();
            held.events + events.len() <= MAX_HELD_EVENTS && held.insert(write_id, 0, events, false)
        };
        if empty {
            // All its events are held in another batch (a crash after an earlier pass wrote them).
            self.finish_held(Some(Finished {
                write_id: write_id.to_owned(),
                lease: 0,
                by_files: false,
            }))?;
        }
        Ok(())
    }

    /// The names in `leases/`, one per batch (where a crash left two, the later lease's; the other is removed).
    pub(super) fn lease_names(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut leases = BTreeMap::new();
        let mut extra = Vec::new();
        each_name(
            &self.outbox.leases,
            "listing the outbox's leases",
            |name, _| {
                if let Some(lease) = LeaseName::parse(name) {
                    let until = leases.entry(lease.write_id.clone()).or_insert(lease.until);
                    if *until != lease.until {
                        extra.push(LeaseName::file_name(
                            (*until).min(lease.until),
                            &lease.write_id,
                        ));
                        *until = (*until).max(lease.until);
                    }
                }
                Ok(())
            },
        )?;
        for name in extra {
            remove_if_present(&self.outbox.leases.join(name))
                .map_err(|e| io_error("removing a lease", &e))?;
        }
        Ok(leases)
    }

    /// Brings the held batches up to date with `leases/` before a claim at `now` that takes up to `limit`: drops
    /// those whose name is gone or renamed, and takes over batches whose lease has ended (in the order of their
    /// write ids) until there are enough events to claim. Returns the held events due at `now` that no live lease covers.
    pub(super) fn held_due(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<HeldDue>, StoreError> {
        let now_key = due_key(now);
        let leases = self.lease_names()?;
        {
            let mut held = self.held.lock();
            let gone: Vec<Arc<str>> = held
                .batches
                .iter()
                .filter(|(write_id, batch)| leases.get(&***write_id) != Some(&batch.lease))
                .map(|(write_id, _)| Arc::clone(write_id))
                .collect();
            for write_id in gone {
                held.remove(&write_id);
            }
        }
        let mut open = self.held_open();
        for (write_id, until) in &leases {
            if open >= limit {
                break;
            }
            if *until > now_key || self.held.holds(write_id) {
                continue;
            }
            let Some((events, by_files)) = self.unfiled_of(write_id)? else {
                // The batch is gone: the name is stale.
                remove_if_present(&self.lease_path(*until, write_id))
                    .map_err(|e| io_error("removing a lease", &e))?;
                continue;
            };
            open += events.len();
            let empty = self.held.lock().insert(write_id, *until, events, by_files);
            if empty {
                self.finish_held(Some(Finished {
                    write_id: write_id.clone(),
                    lease: *until,
                    by_files,
                }))?;
            }
        }
        let held = self.held.lock();
        let batches: Vec<(&Arc<str>, &HeldBatch)> =
            held.batches.iter().filter(|(_, b)| b.open > 0).collect();
        // A claim takes at most `limit`: only the `limit` soonest due can be among them, kept in a max-heap (no
        // allocation per event, whatever the number held).
        let mut soonest: BinaryHeap<(u64, EventName, usize, usize)> =
            BinaryHeap::with_capacity(limit.saturating_add(1).min(1 << 16));
        for (slot, (_, batch)) in batches.iter().enumerate() {
            for (index, event) in batch.events.iter().enumerate() {
                let free = match event.claim {
                    Claim::Open => true,
                    Claim::Until(until) => until <= now,
                    Claim::Settled => false,
                };
                let Some(id) = event.id.filter(|_| free && event.event.created_at <= now) else {
                    continue;
                };
                let key = (event.due, id, slot, index);
                if soonest.len() < limit {
                    soonest.push(key);
                } else if soonest.peek().is_some_and(|latest| key < *latest) {
                    soonest.pop();
                    soonest.push(key);
                }
            }
        }
        Ok(soonest
            .into_iter()
            .filter_map(|(due, id, slot, index)| {
                batches.get(slot).map(|(write_id, _)| HeldDue {
                    due,
                    id,
                    write_id: Arc::clone(write_id),
                    index,
                })
            })
            .collect())
    }

    fn held_open(&self) -> usize {
        self.held.lock().batches.values().map(|b| b.open).sum()
    }

    /// The events of filed batch `write_id` that have no event file, and whether some have one; `None` if the
    /// batch is gone or unreadable.
    fn unfiled_of(&self, write_id: &str) -> Result<Option<(Vec<StoredEvent>, bool)>, StoreError> {
        let Some(batch) = self.read_batch(&self.outbox.filed.join(write_id))? else {
            return Ok(None);
        };
        let mut unfiled = Vec::new();
        let mut by_files = false;
        for event in batch.events {
            match fs::symlink_metadata(self.outbox.event_path(&event.id)) {
                Ok(_) => by_files = true,
                Err(e) if e.kind() == ErrorKind::NotFound => unfiled.push(event),
                Err(e) => return Err(io_error("looking for an outbox event", &e)),
            }
        }
        Ok(Some((unfiled, by_files)))
    }

    /// Claims the held event `due` until `until` (renaming its batch's lease first); returns it, or `None` if the
    /// batch is no longer this process's.
    pub(super) fn claim_held(
        &self,
        due: &HeldDue,
        until: OffsetDateTime,
    ) -> Result<Option<OutboxEvent>, StoreError> {
        let key = until_key(until);
        let mut held = self.held.lock();
        let Some(batch) = held.batches.get_mut(&due.write_id) else {
            return Ok(None);
        };
        if batch.lease < key {
            match fs::rename(
                self.lease_path(batch.lease, &due.write_id),
                self.lease_path(key, &due.write_id),
            ) {
                Ok(()) => batch.lease = key,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    held.remove(&due.write_id);
                    return Ok(None);
                }
                Err(e) => return Err(io_error("renewing a lease", &e)),
            }
        }
        let Some(event) = batch.events.get_mut(due.index) else {
            return Ok(None);
        };
        event.claim = Claim::Until(until);
        let mut file = EventFile::new(event.event.clone(), &due.write_id);
        file.leased_until = Some(until);
        Ok(Some(file.to_outbox()))
    }

    /// Settles event `id` if this process holds it: creates its event file with the outcome (see the module's
    /// documentation). Returns `None` if it does not hold it or the file exists (the caller settles it as a file),
    /// else whether the file was synced and the batch if this finished it.
    pub(super) fn settle_held(
        &self,
        id: &str,
        settlement: &Settlement,
    ) -> Result<Option<(bool, Option<Finished>)>, StoreError> {
        let Some(name) = EventName::parse(id) else {
            return Ok(None);
        };
        let (write_id, event) = {
            let held = self.held.lock();
            let Some((write_id, index)) = held.by_id.get(&name) else {
                return Ok(None);
            };
            let Some(event) = held
                .batches
                .get(write_id)
                .and_then(|b| b.events.get(*index))
                .filter(|e| e.claim != Claim::Settled)
            else {
                return Ok(None);
            };
            (write_id.clone(), event.event.clone())
        };
        let mut file = EventFile::new(event, &write_id);
        super::apply(&mut file, settlement);
        let bytes = encode_event(&file)?;
        let path = self.outbox.event_path(id);
        let synced = file.batch.is_none();
        let created = if synced {
            // A failed event is its own copy from now on. The file is new unless another process made it since.
            if fs::symlink_metadata(&path).is_ok() {
                Err(std::io::Error::from(ErrorKind::AlreadyExists))
            } else {
                replace_file(&self.outbox.root, "event", &path, &bytes)
            }
        } else {
            create_unsynced(&path, &bytes)
        };
        match created {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Settled as a file by the caller; held no longer. The file may be pending with the batch as its copy
                // (made by another process that took the batch over): the batch is released, not removed.
                let finished = {
                    let mut held = self.held.lock();
                    if let Some(batch) = held.batches.get_mut(&*write_id) {
                        batch.by_files = true;
                    }
                    held.settle(&name)
                };
                self.finish_held(finished)?;
                return Ok(None);
            }
            Err(e) => return Err(io_error("writing an outbox event", &e)),
        }
        crate::failpoint::hit("outbox:event_settled");
        self.remembered
            .count(Some(State::Pending), Some(file.state));
        if file.is_pending() {
            self.link_marker(id, file.next_attempt_at)?;
        }
        let mut held = self.held.lock();
        if file.is_pending()
            && let Some(batch) = held.batches.get_mut(&write_id)
        {
            batch.by_files = true;
        }
        Ok(Some((synced, held.settle(&name))))
    }

    /// Marks the held event `id` settled elsewhere (replayed as a file); finishes its batch if that was its last.
    pub(super) fn unhold(&self, id: &str) -> Result<(), StoreError> {
        let Some(name) = EventName::parse(id) else {
            return Ok(());
        };
        let finished = {
            let mut held = self.held.lock();
            if let Some((write_id, _)) = held.by_id.get(&name).cloned()
                && let Some(batch) = held.batches.get_mut(&write_id)
            {
                batch.by_files = true;
            }
            held.settle(&name)
        };
        self.finish_held(finished)
    }

    /// Ends a held batch all of whose events are settled: its lease name goes, then the batch (or it is released,
    /// if files may still need it). If the name is gone, another process has the batch: it is left to it.
    pub(super) fn finish_held(&self, finished: Option<Finished>) -> Result<(), StoreError> {
        let Some(finished) = finished else {
            return Ok(());
        };
        self.held.lock().remove(&finished.write_id);
        match fs::remove_file(self.lease_path(finished.lease, &finished.write_id)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("removing a lease", &e)),
        }
        if finished.by_files {
            self.release_batch(&finished.write_id).map(drop)
        } else {
            self.remove_batch(&finished.write_id)
        }
    }

    /// The events of named batches that have no event file yet (pending: filed, held or claimed), by id, as event
    /// files would show them; for listings, counts and lookups.
    pub(super) fn unfiled(&self) -> Result<BTreeMap<String, EventFile>, StoreError> {
        let mut unfiled = BTreeMap::new();
        for (write_id, until) in self.lease_names()? {
            let Some((events, _)) = self.unfiled_of(&write_id)? else {
                continue;
            };
            let claims: HashMap<String, Claim> = {
                let held = self.held.lock();
                held.batches
                    .get(write_id.as_str())
                    .map(|b| {
                        b.events
                            .iter()
                            .map(|e| (e.event.id.clone(), e.claim))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for event in events {
                let mut file = EventFile::new(event, &write_id);
                file.leased_until = match claims.get(&file.event.id) {
                    Some(Claim::Until(until)) => Some(*until),
                    Some(_) => None,
                    None => (until > 0).then(|| lease_end(until)),
                };
                unfiled.insert(file.event.id.clone(), file);
            }
        }
        Ok(unfiled)
    }

    /// Removes the lease name of batch `write_id` (after `open` filed its events as files).
    pub(super) fn remove_lease(&self, write_id: &str, until: u64) -> Result<(), StoreError> {
        remove_if_present(&self.lease_path(until, write_id))
            .map_err(|e| io_error("removing a lease", &e))
    }
}

/// The lease on filed batch `write_id` by its name in `leases` (see [`Inner::lease_names`]); `None` if it has
/// no name or was never claimed.
pub(super) fn lease_of(write_id: &str, leases: &BTreeMap<String, u64>) -> Option<OffsetDateTime> {
    leases
        .get(write_id)
        .filter(|until| **until > 0)
        .map(|until| lease_end(*until))
}

/// A name's `<until>` as a time.
fn lease_end(until: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(until) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_round_trip_and_round_their_end_up() {
        let write_id = "ab".repeat(16);
        let name = LeaseName::file_name(0x1234, &write_id);
        let parsed = LeaseName::parse(&name).unwrap();
        assert_eq!(
            (parsed.until, parsed.write_id.as_str()),
            (0x1234, write_id.as_str())
        );
        assert!(LeaseName::parse("1234.x").is_none());
        assert!(LeaseName::parse(&format!("xyz.{write_id}")).is_none());
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(5);
        assert_eq!(until_key(at), 5);
        assert_eq!(until_key(at + time::Duration::nanoseconds(1)), 6);
        assert_eq!(lease_end(5), at);
        assert_eq!(
            until_key(OffsetDateTime::UNIX_EPOCH - time::Duration::DAY),
            0
        );
    }
}
