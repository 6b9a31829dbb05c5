//! The outbox of the file store: events written with the change they report, then leased and settled by the
//! delivery loop.
//!
//! ```text
//! outbox/
//!   lock                    flock'd by every outbox operation (claim, settle, list, ...); never by put/delete
//!   tentative/<hash>        the events of a write in progress for one user, synced: for a put, a second name of
//!                           the new record's file (which carries the write id and the events); for a delete, a
//!                           batch file (write id + events)
//!   incoming/<write id>     the same, once the write landed, not filed yet (a rename of the tentative entry;
//!                           `append` writes a batch here too)
//!   filed/<id>              filed batches, kept while one of their events is pending: the durable copy of events
//!                           that have no file yet or whose files were written without fsync
//!   leases/<until>.<id>     one per filed batch whose events are not all settled: a second name of it, saying
//!                           until when a process holds it (see [`held`])
//!   events/<event id>.json  one per settled event (made when its first attempt is settled, or by `open` and
//!                           `replay`): the record, its state, attempts, next attempt, lease, last error, and the
//!                           batch in `filed/` that holds a durable copy of it (if one does)
//!   due/t<bucket>/<due>.<event id>
//!                           one per pending event: a name only (a hard link to the event's file, so no inode is
//!                           allocated or freed for it; its content is never read); `<due>` is its next attempt
//!                           in unix milliseconds, 16 hex digits (names sort by due time), `<bucket>` that time's
//!                           ~65 s bucket, 12 hex digits (see [`DueName`]; `due/<event id>` and `due/<due>.<event id>`:
//!                           made by earlier versions)
//!   .tmp.*                  a file being written under the outbox lock
//! ```
//!
//! **A put with events** (`put_with`), under the user's write lock, after the version check:
//! 1. write the new record, carrying a random write id and the events, to a temp file;
//! 2. hard-link it as `tentative/<hash>`, `fdatasync` it and sync `tentative/` (shared with concurrent writes; on a
//!    journaled file system the data sync commits the link too);
//! 3. rename the temp file over the record and sync `credentials/` (shared).
//!
//! The entry stays in `tentative/`: the next filing pass takes the user's write lock without waiting, sees that the
//! entry *is* the record's file (same inode: the write landed, and no later write replaced it, since a later write
//! of the user settles the entry first) and files its events from it. So the events cost the write a link and a
//! share of a directory sync — no file of their own, no rename. **A delete with events** (`delete_with`) creates
//! `tentative/<hash>` (`O_EXCL`) holding the write id and the events, fsyncs it and the directory, writes the
//! tombstone and removes the record, then renames the entry to `incoming/<write id>` (no fsync: if the rename is
//! lost, the tentative entry is still there and the record's absence decides).
//!
//! Any other tentative entry found later (by the next write of that user, which opens it first, or by the sweep at
//! `open` and before every outbox operation, which takes the user's write lock without waiting) belongs to a write
//! that stopped or that another write of the user followed: it is moved into `incoming/` iff the write landed — the record carries its write id (a put), or the record is gone
//! (a delete) — and removed otherwise. A torn tentative entry is removed: it is synced before the record is
//! renamed or removed, so its write never landed. So after a crash there are the new record and its events, or the old record
//! and none.
//!
//! **Filing** (under the outbox lock, at the start of every outbox operation but settling): the events of incoming
//! records are written into new batches (one per 64 records, synced; written as their name in `leases/`, then
//! linked into `filed/`), so that no record — it holds sealed tokens — is kept as a copy of its events, and the
//! records' names are removed. An incoming batch is named in `leases/` and renamed into `filed/`. The process that
//! filed a batch holds its events in memory; no event file and no due marker is written. A crash while filing
//! leaves the records or the batch in `incoming/`, filed again by the next operation; a batch written twice has its
//! events held once.
//!
//! **Claiming and settling** the events of filed batches happen in memory and in the names in `leases/`; an event
//! gets its file when its first attempt is settled (see [`held`]). An event to be retried, a failed one and a
//! replayed one are files from then on, claimed through their due markers as below.
//!
//! **`open`** files every batch in `filed/` that the opening process does not hold as event files (a missing or torn
//! one rewritten from the batch as pending, leased as its batch's name says; a missing marker of a pending event made
//! again) and removes its name, so what a crash or a power cut left is claimable through the files, and no pending
//! event is lost.
//!
//! **Settling an event file** ([`EventStore::settle_all`]: the attempts that finished together, in one step under
//! the lock): each event file is rewritten with its new state and the marker of an event no longer pending removed.
//! An event that its batch still holds is rewritten in place (one positioned write, padded to the old length; no
//! fsync, no temp file); then every batch none of whose events is pending any more (and that no process holds) is
//! removed (asked of its events' files, newest first, by the ids this process remembers of the batch: see
//! [`Remembered`]). A failed event (kept for `events replay`), a replayed one, and one without a batch (written by
//! an older version) are written with an fsync and a sync of `events/`, as they are their only copy. So a power cut
//! can only undo recent settlements (the events are sent again: delivery is at least once) or, for an event
//! delivered just before it, leave its file unreadable or missing (it was delivered).
//!
//! **Leases of event files.** `claim_due` runs under the outbox lock: it lists the due markers of the buckets that
//! have begun (soonest due first, then by id) up to the first that is not due yet (events waiting for a later attempt
//! are not read, and those due after the current bucket not even listed), merged with the held events by due time,
//! reads each marker's event file (a marker of an event that is no longer pending is removed, one that is early — a
//! crash between a settlement's rewrite and its marker's move — is moved to the event's time), skips those leased
//! until after `now`, and writes the lease into the event file (in place while its batch holds it). Every other
//! claimer, in this process or another, waits for the lock and then sees the lease. Losing a lease in a power cut
//! only means the event is sent again (delivery is at least once).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use offline_access_domain::StoreError;
use offline_access_domain::events::{
    DeliveryState, EventCounts, EventFilter, EventPage, EventRecord, EventStore, OutboxEvent,
    Settlement, is_event_id,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::FileStore;
use crate::failpoint;
use crate::fsio::{
    create_private_dir_once, create_synced, create_unsynced, each_name, io_error, is_hex_digest,
    is_lower_hex, link_or_create_empty, lock_exclusive, overwrite_in_place, random_hex, read_small,
    remove_if_present, remove_temp_files, replace_file, sorted_names, stems_after, sync_dir,
    try_lock_exclusive, write_atomic_in,
};
use crate::record::RecordHead;
use crate::store::Inner;

mod held;
pub(crate) use held::Held;

/// At most this many landed puts are filed straight from `tentative/` per filing pass (each holds its user's write
/// lock, an open file, until its events are in a batch).
const LANDED_PER_PASS: usize = 64;

/// Whether `a` and `b` name one file (false if either is missing, or where this cannot be told).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// The format of batch and event files written by this version.
const FORMAT: u32 = 1;
/// A batch holds the events of one write (a few KiB); anything far larger is not ours.
const MAX_BATCH_LEN: u64 = 16 * 1024 * 1024;
/// An event file holds one event's body and state.
const MAX_EVENT_LEN: u64 = 4 * 1024 * 1024;
/// At most this many records' events go into one batch when they are filed (a batch is read whole when one of its
/// events is settled).
const RECORDS_PER_BATCH: usize = 64;
/// The suffix of event files.
const EVENT_SUFFIX: &str = ".json";

/// What this process remembers of the outbox between operations, to spare reads; a hint, never the truth:
/// - the event ids of filed batches that it wrote or read, newest first, so that settling does not read and parse a
///   batch of up to 64 events each time it asks whether the batch still holds one. A batch's events never change
///   but for purges, which only remove some: a remembered list may name more events than the batch holds now
///   (costing a read of an event file that is gone), never fewer. Batch names are random and never reused;
/// - how many due markers the last claim listed (the next listing's first capacity);
/// - the counts of events by state as last scanned (every event file read), moved along with this process's own
///   changes since, so that the metrics' sampling every few seconds does not read every event kept for a week;
///   another process's changes show at the next scan, at most [`Remembered::RESCAN_COUNTS`] later;
/// - a buffer to encode new batches into.
#[derive(Default)]
pub(crate) struct Remembered {
    batch_ids: Mutex<HashMap<String, Arc<[EventName]>>>,
    due_listed: AtomicUsize,
    counts: Mutex<Option<(EventCounts, Instant)>>,
    /// The buffer new batches are encoded into, kept between filing passes.
    encoded: Mutex<Vec<u8>>,
}

impl Remembered {
    /// At most this many batches are remembered (~64 ids of 36 bytes each: ~2.4 MiB in all); others are read as
    /// before.
    const CAPACITY: usize = 1024;

    /// A buffer grown past this by an unusual batch is not kept.
    const MAX_ENCODED: usize = 1 << 20;

    fn batch_ids(&self, write_id: &str) -> Option<Arc<[EventName]>> {
        self.batch_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(write_id)
            .cloned()
    }

    /// Remembers the ids of `batch` (newest first), while there is room; returns them.
    fn remember_batch(&self, batch: &Batch) -> Arc<[EventName]> {
        let ids: Arc<[EventName]> = batch
            .events
            .iter()
            .rev()
            .filter_map(|e| EventName::parse(&e.id))
            .collect();
        let mut map = self
            .batch_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() < Self::CAPACITY {
            map.insert(batch.write_id.clone(), Arc::clone(&ids));
        }
        ids
    }

    /// How long counts are moved along before every event is read again.
    const RESCAN_COUNTS: Duration = Duration::from_secs(300);

    /// The counts, if they were scanned less than [`Remembered::RESCAN_COUNTS`] ago.
    fn counts(&self) -> Option<EventCounts> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .filter(|(_, at)| at.elapsed() < Self::RESCAN_COUNTS)
            .map(|(counts, _)| counts)
    }

    fn scanned(&self, counts: EventCounts) {
        *self.counts.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((counts, Instant::now()));
    }

    /// Moves one event's count from state `from` to `to` (`None`: not there).
    fn count(&self, from: Option<State>, to: Option<State>) {
        if from == to {
            return;
        }
        let mut guard = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((counts, _)) = guard.as_mut() else {
            return;
        };
        if let Some(state) = from {
            let n = state_count(counts, state);
            *n = n.saturating_sub(1);
        }
        if let Some(state) = to {
            let n = state_count(counts, state);
            *n = n.saturating_add(1);
        }
    }

    fn forget_batch(&self, write_id: &str) {
        self.batch_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(write_id);
    }
}

/// The count of `state` in `counts`.
fn state_count(counts: &mut EventCounts, state: State) -> &mut u64 {
    match state {
        State::Pending => &mut counts.pending,
        State::Delivered => &mut counts.delivered,
        State::Failed => &mut counts.failed,
    }
}

/// The length of an event id (`evt_` and 32 hex digits; see [`is_event_id`]).
const EVENT_ID_LEN: usize = 36;

/// An event id read from a file name, held without a heap allocation of its own (the due markers are listed at
/// every claim).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct EventName([u8; EVENT_ID_LEN]);

impl EventName {
    fn parse(name: &str) -> Option<EventName> {
        if !is_event_id(name) {
            return None;
        }
        <[u8; EVENT_ID_LEN]>::try_from(name.as_bytes())
            .ok()
            .map(EventName)
    }

    fn as_str(&self) -> &str {
        // Only ASCII is ever held (see `parse`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A due marker: `due/t<bucket>/<due>.<event id>`, where `<due>` is the time the event is due at (its next attempt)
/// as 16 hex digits of unix milliseconds, so that names sort by due time, and `<bucket>` is that time's
/// [`BUCKET_BITS`]-bit bucket (12 hex digits), so that a claim lists only the buckets that have begun: events
/// waiting for a later attempt are not even listed. Markers at the top of `due/` are read too: `<due>.<event id>`
/// (made by a build of 2026-12-06) and `<event id>` alone (`Legacy`, by an earlier version: due at once, the event's
/// file decides).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct DueName {
    due: u64,
    id: EventName,
    place: Place,
}

/// Where a due marker lives in `due/`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    /// In the bucket directory `t<bucket>`.
    Bucket(u64),
    /// At the top, named `<due>.<event id>`.
    Flat,
    /// At the top, named by the event id alone.
    Legacy,
}

/// The bits of a due time (milliseconds) below its bucket: a bucket spans ~65 s.
const BUCKET_BITS: u32 = 16;

impl DueName {
    fn new(id: &str, due: OffsetDateTime) -> Option<DueName> {
        let due = due_key(due);
        Some(DueName {
            due,
            id: EventName::parse(id)?,
            place: Place::Bucket(due >> BUCKET_BITS),
        })
    }

    /// A name at the top of `due/` (`Flat` or `Legacy`), or in bucket `bucket`.
    fn parse(name: &str, bucket: Option<u64>) -> Option<DueName> {
        if bucket.is_none()
            && let Some(id) = EventName::parse(name)
        {
            return Some(DueName {
                due: 0,
                id,
                place: Place::Legacy,
            });
        }
        let (due, id) = name.split_once('.')?;
        Some(DueName {
            due: parse_hex(due, 16)?,
            id: EventName::parse(id)?,
            place: bucket.map_or(Place::Flat, Place::Bucket),
        })
    }

    /// Its path below `due/`.
    fn path(&self) -> String {
        let id = self.id.as_str();
        match self.place {
            Place::Bucket(bucket) => format!("t{bucket:012x}/{:016x}.{id}", self.due),
            Place::Flat => format!("{:016x}.{id}", self.due),
            Place::Legacy => id.to_owned(),
        }
    }

    /// Its bucket directory below `due/`, if it is in one.
    fn bucket_dir(&self) -> Option<String> {
        match self.place {
            Place::Bucket(bucket) => Some(format!("t{bucket:012x}")),
            Place::Flat | Place::Legacy => None,
        }
    }
}

/// `digits` lowercase hex digits, exactly.
fn parse_hex(text: &str, digits: usize) -> Option<u64> {
    if !is_lower_hex(text, digits) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// A due marker's time key: unix milliseconds, rounded down (so a marker is never later than its event); times
/// before 1970 are 0.
fn due_key(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(0)
}

/// The due markers in `dir` that may be due at `now_key` — those at its top, and those in every bucket that has
/// begun — sorted by due time (then id). A bucket found empty is removed (a later marker makes it again; every
/// caller holds the outbox lock). `expected` is how many there were last time (the buffer's first capacity: a
/// listing of thousands of markers should not grow its buffer a dozen times).
fn sorted_due_names(dir: &Path, now_key: u64, expected: usize) -> Result<Vec<DueName>, StoreError> {
    const LISTING: &str = "listing the due markers";
    let mut names = Vec::with_capacity(expected.saturating_add(expected / 4).min(1 << 20));
    each_name(dir, LISTING, |name, entry| {
        let Some(bucket) = name.strip_prefix('t').and_then(|b| parse_hex(b, 12)) else {
            names.extend(DueName::parse(name, None));
            return Ok(());
        };
        if bucket > now_key >> BUCKET_BITS {
            return Ok(());
        }
        let before = names.len();
        let path = entry.path();
        each_name(&path, LISTING, |marker, _| {
            names.extend(DueName::parse(marker, Some(bucket)));
            Ok(())
        })?;
        if names.len() == before {
            // No marker in it: removed (this fails, harmlessly, if something else is in it).
            let _ = fs::remove_dir(&path);
        }
        Ok(())
    })?;
    names.sort_unstable();
    Ok(names)
}

/// What a claim may take: a held event or a due marker.
enum Due {
    Held(held::HeldDue),
    Marker(DueName),
}

impl Due {
    fn key(&self) -> (u64, EventName) {
        match self {
            Due::Held(held) => (held.due, held.id),
            Due::Marker(name) => (name.due, name.id),
        }
    }
}

/// The outbox's directories and lock file.
pub(crate) struct OutboxDirs {
    root: PathBuf,
    tentative: PathBuf,
    incoming: PathBuf,
    filed: PathBuf,
    events: PathBuf,
    due: PathBuf,
    leases: PathBuf,
    lock: PathBuf,
}

impl OutboxDirs {
    /// The outbox under `root` (nothing is created).
    pub(crate) fn new(root: &Path) -> OutboxDirs {
        OutboxDirs {
            root: root.to_owned(),
            tentative: root.join("tentative"),
            incoming: root.join("incoming"),
            filed: root.join("filed"),
            events: root.join("events"),
            due: root.join("due"),
            leases: root.join("leases"),
            lock: root.join("lock"),
        }
    }

    /// `tentative/`: one file per user with a write in progress.
    pub(crate) fn tentative_dir(&self) -> &Path {
        &self.tentative
    }

    /// Its directories, parents first.
    pub(crate) fn dirs(&self) -> [&PathBuf; 7] {
        [
            &self.root,
            &self.tentative,
            &self.incoming,
            &self.filed,
            &self.events,
            &self.due,
            &self.leases,
        ]
    }

    fn event_path(&self, id: &str) -> PathBuf {
        self.events.join(format!("{id}{EVENT_SUFFIX}"))
    }

    fn due_path(&self, name: &DueName) -> PathBuf {
        self.due.join(name.path())
    }
}

/// Which kind of write a batch of events came with (what decides, after a crash, whether the write landed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BatchOp {
    /// `put_with`: landed iff the record carries the write id.
    Put,
    /// `delete_with`: landed iff the record is gone.
    Delete,
    /// `append`: no credential change (never tentative).
    Append,
}

/// The events of one write: a tentative file, then an incoming batch.
#[derive(Serialize, Deserialize)]
struct Batch {
    format: u32,
    op: BatchOp,
    write_id: String,
    events: Vec<StoredEvent>,
    /// Read from a record (a put's second name in `tentative/` or `incoming/`), not from a batch file.
    #[serde(skip)]
    from_record: bool,
}

/// What `tentative/` and `incoming/` hold: a batch file, or (a put with events) the new record itself, of which only
/// the write id and the events are read here.
#[derive(Deserialize)]
struct Entry {
    format: u32,
    #[serde(default)]
    op: Option<BatchOp>,
    #[serde(default)]
    write_id: Option<String>,
    #[serde(default)]
    events: Vec<StoredEvent>,
    /// Only a record has one.
    #[serde(default)]
    subject: Option<String>,
}

/// An [`EventRecord`] as stored (in a batch, an event file, or the record of the write that made it).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    id: String,
    kind: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    body: String,
}

impl From<&EventRecord> for StoredEvent {
    fn from(record: &EventRecord) -> Self {
        StoredEvent {
            id: record.id.clone(),
            kind: record.kind.clone(),
            created_at: record.created_at,
            body: record.body.clone(),
        }
    }
}

/// [`DeliveryState`] as stored (an unknown state makes the file unreadable, not a guess).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    Pending,
    Delivered,
    Failed,
}

impl From<State> for DeliveryState {
    fn from(state: State) -> Self {
        match state {
            State::Pending => DeliveryState::Pending,
            State::Delivered => DeliveryState::Delivered,
            State::Failed => DeliveryState::Failed,
        }
    }
}

/// `events/<id>.json`: one event and its delivery state.
#[derive(Serialize, Deserialize)]
struct EventFile {
    format: u32,
    #[serde(flatten)]
    event: StoredEvent,
    state: State,
    attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    next_attempt_at: OffsetDateTime,
    last_error: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    delivered_at: Option<OffsetDateTime>,
    /// Until when a claimer has it (written by `claim_due`, cleared when it is settled).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    leased_until: Option<OffsetDateTime>,
    /// The write id of the batch in `filed/` that holds a durable copy of the event while it is pending; none
    /// when this file is the only copy (written with an fsync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<String>,
}

impl EventFile {
    fn new(event: StoredEvent, batch: &str) -> EventFile {
        EventFile {
            format: FORMAT,
            next_attempt_at: event.created_at,
            event,
            state: State::Pending,
            attempts: 0,
            last_error: None,
            delivered_at: None,
            leased_until: None,
            batch: Some(batch.to_owned()),
        }
    }

    fn is_pending(&self) -> bool {
        self.state == State::Pending
    }

    /// Whether it keeps batch `write_id` in `filed/`: it is pending and that batch is its durable copy.
    fn holds(&self, write_id: &str) -> bool {
        self.is_pending() && self.batch.as_deref() == Some(write_id)
    }

    fn to_outbox(&self) -> OutboxEvent {
        OutboxEvent {
            record: EventRecord {
                id: self.event.id.clone(),
                kind: self.event.kind.clone(),
                created_at: self.event.created_at,
                body: self.event.body.clone(),
            },
            state: self.state.into(),
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            last_error: self.last_error.clone(),
            delivered_at: self.delivered_at,
        }
    }
}

/// Records one attempt at `file`'s event.
fn apply(file: &mut EventFile, settlement: &Settlement) {
    file.attempts = file.attempts.saturating_add(1);
    file.leased_until = None;
    match settlement {
        Settlement::Delivered { at } => {
            file.state = State::Delivered;
            file.delivered_at = Some(*at);
            file.last_error = None;
        }
        Settlement::Failed { error } => {
            file.state = State::Failed;
            file.last_error = Some(error.clone());
            // Kept for `events replay`: its own durable copy from now on.
            file.batch = None;
        }
        Settlement::RetryAt { at, error } => {
            file.next_attempt_at = *at;
            file.last_error = Some(error.clone());
        }
    }
}

fn corrupt(id: &str, reason: String) -> StoreError {
    StoreError::Corrupt {
        subject: format!("outbox event {id}"),
        reason,
    }
}

/// Category and position only: serde's message could quote file content.
fn parse_error(what: &str, e: &serde_json::Error) -> String {
    format!(
        "not a valid {what} ({:?} error at line {}, column {})",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// Refuses event ids that are not this crate's (they name files).
pub(crate) fn check_event_ids(events: &[EventRecord]) -> Result<(), StoreError> {
    match events.iter().find(|e| !is_event_id(&e.id)) {
        Some(bad) => Err(StoreError::Other(format!(
            "`{}` is not an event id (evt_ and 32 hex digits)",
            bad.id.escape_debug()
        ))),
        None => Ok(()),
    }
}

fn encode_event(file: &EventFile) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(file)
        .map_err(|e| StoreError::Other(format!("encoding an outbox event: {e}")))
}

fn encode_batch(
    op: BatchOp,
    write_id: &str,
    events: &[EventRecord],
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&Batch {
        format: FORMAT,
        op,
        write_id: write_id.to_owned(),
        events: events.iter().map(StoredEvent::from).collect(),
        from_record: false,
    })
    .map_err(|e| StoreError::Other(format!("encoding events: {e}")))
}

/// Parses a batch file, or a record written with events (see [`Entry`]).
fn parse_batch(bytes: &[u8]) -> Result<Batch, String> {
    let entry: Entry =
        serde_json::from_slice(bytes).map_err(|e| parse_error("batch of events", &e))?;
    let (op, from_record, format) = match (entry.op, &entry.subject) {
        (Some(op), _) => (op, false, FORMAT),
        (None, Some(_)) => (BatchOp::Put, true, crate::record::FORMAT),
        (None, None) => return Err("neither a batch of events nor a record".to_owned()),
    };
    if entry.format != format {
        return Err(format!("unsupported format {}", entry.format));
    }
    let write_id = entry.write_id.unwrap_or_default();
    if !is_write_id(&write_id) {
        return Err("the write id is not 32 hex digits".to_owned());
    }
    Ok(Batch {
        format: FORMAT,
        op,
        write_id,
        events: entry.events,
        from_record,
    })
}

/// A write id: 128 random bits in hex (it names an incoming batch).
fn is_write_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// -------------------------------------------------------------------------------------------------------------
// Tentative events: the write path (the caller holds the user's write lock)
// -------------------------------------------------------------------------------------------------------------

impl Inner {
    fn tentative_path(&self, hash: &str) -> PathBuf {
        self.outbox.tentative.join(hash)
    }

    /// Makes a write's events durable in `tentative/<hash>` before the write, with a new write id (returned; the
    /// record must carry it). No events: nothing is written and `None` is returned.
    pub(crate) fn write_tentative(
        &self,
        hash: &str,
        op: BatchOp,
        events: &[EventRecord],
    ) -> Result<Option<String>, StoreError> {
        if events.is_empty() {
            return Ok(None);
        }
        let write_id = random_hex(16)?;
        let bytes = encode_batch(op, &write_id, events)?;
        let path = self.tentative_path(hash);
        create_synced(&path, &bytes).map_err(|e| io_error("writing a write's events", &e))?;
        failpoint::hit("tentative:synced");
        if let Err(e) = self.tentative_sync.sync() {
            let _ = fs::remove_file(&path);
            return Err(io_error("syncing the outbox", &e));
        }
        failpoint::hit("tentative:durable");
        Ok(Some(write_id))
    }

    /// Moves the events of a write that landed into the outbox (a rename; not synced: if it is lost, the tentative
    /// file is still there and the record's write id keeps it). A failure is only logged, for the same reason.
    pub(crate) fn confirm_tentative(&self, hash: &str, write_id: &str) {
        if let Err(e) = fs::rename(
            self.tentative_path(hash),
            self.outbox.incoming.join(write_id),
        ) {
            tracing::warn!(error = %e, "could not move a write's events into the outbox; the next write of the user or outbox operation will");
        }
        failpoint::hit("write:confirmed");
    }

    /// After a write failed with events written: settles them by the same rule as after a crash (the failure may
    /// have come after the record landed, e.g. syncing its directory). Only logged on failure: the next write of
    /// the user settles them first.
    pub(crate) fn settle_tentative_after_failure(&self, hash: &str, write_id: Option<&str>) {
        if write_id.is_none() {
            return;
        }
        if let Err(e) = self.settle_tentative(hash) {
            tracing::warn!(error = %e, "could not settle the events of a failed write; the next write of the user will");
        }
    }

    /// Settles the tentative events of an interrupted write of the user, if any (the caller holds the user's write
    /// lock, so no write of the user is in progress): kept (moved into the outbox) iff the write landed, removed
    /// otherwise. Without a tentative file this is one failed `open`.
    pub(crate) fn settle_tentative(&self, hash: &str) -> Result<(), StoreError> {
        let path = self.tentative_path(hash);
        let Some(bytes) = read_small(&path, MAX_BATCH_LEN)
            .map_err(|e| io_error("reading a write's events", &e))?
        else {
            return Ok(());
        };
        let batch = match parse_batch(&bytes) {
            Ok(batch) => batch,
            Err(reason) => {
                // Synced before the record's rename or removal: a torn entry's write never landed.
                tracing::info!(%reason, "removing the torn events of a write that did not land");
                return remove_if_present(&path)
                    .map_err(|e| io_error("removing a write's events", &e));
            }
        };
        let landed = match batch.op {
            BatchOp::Put => match self.read_file_uncounted(hash)? {
                None => false,
                Some(record) => {
                    let head =
                        RecordHead::parse(&record).map_err(|reason| StoreError::Corrupt {
                            subject: format!("the user with hash {hash}"),
                            reason: format!(
                                "cannot tell whether a write with events landed: {reason}"
                            ),
                        })?;
                    head.write_id.as_deref() == Some(batch.write_id.as_str())
                }
            },
            BatchOp::Delete => match fs::symlink_metadata(self.credential_path(hash)) {
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::NotFound => true,
                Err(e) => return Err(io_error("checking a credential file", &e)),
            },
            BatchOp::Append => true,
        };
        if landed {
            tracing::info!(
                events = batch.events.len(),
                "keeping the events of an interrupted write that landed"
            );
            fs::rename(&path, self.outbox.incoming.join(&batch.write_id))
                .map_err(|e| io_error("moving a write's events into the outbox", &e))
        } else {
            tracing::info!(
                events = batch.events.len(),
                "dropping the events of an interrupted write that did not land"
            );
            remove_if_present(&path).map_err(|e| io_error("removing a write's events", &e))
        }
    }

    /// Calls `each` with the hash of every tentative entry whose user's write lock is free, holding that lock (a held
    /// lock is a live writer's; the writes of this process in progress are skipped without trying theirs), until
    /// `each` returns `false`. Failures are logged: the entry is settled by the user's next write or the next sweep.
    fn each_free_tentative(
        &self,
        mut each: impl FnMut(&str, fs::File) -> Result<bool, StoreError>,
    ) {
        let hashes = match sorted_names(&self.outbox.tentative, is_hex_digest) {
            Ok(hashes) => hashes,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the outbox's tentative events");
                return;
            }
        };
        for hash in hashes {
            if self
                .writing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&hash)
            {
                // A write of this process in progress: its lock is held.
                continue;
            }
            let go_on = try_lock_exclusive(&self.write_lock_path(&hash), "locking a credential")
                .and_then(|lock| match lock {
                    Some(lock) => each(&hash, lock),
                    None => Ok(true),
                });
            match go_on {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not settle the events of an interrupted write");
                }
            }
        }
    }

    /// Settles every tentative entry whose user's write lock is free (see [`Inner::each_free_tentative`]).
    pub(crate) fn sweep_tentatives(&self) {
        self.each_free_tentative(|hash, _lock| self.settle_tentative(hash).map(|()| true));
    }

    /// The tentative entries of puts that landed, to be filed straight from `tentative/`, each with its user's
    /// write lock (held until the entry's name is removed, so a new write of the user cannot make a new entry under
    /// the name meanwhile); at most [`LANDED_PER_PASS`] (the rest wait for the next pass). Every other entry whose
    /// user's lock is free is settled as by the sweep. A put's entry is known to have landed without reading the
    /// record when it *is* the record's file (the same inode: the temp file it names was renamed into place, and no
    /// later write replaced it, as a later write of the user settles the entry first).
    fn landed_puts(&self) -> Vec<(fs::File, PathBuf, Batch)> {
        let mut landed = Vec::new();
        self.each_free_tentative(|hash, lock| {
            let path = self.tentative_path(hash);
            match self.landed_put(hash, &path)? {
                Some(batch) => landed.push((lock, path, batch)),
                None => self.settle_tentative(hash)?,
            }
            Ok(landed.len() < LANDED_PER_PASS)
        });
        landed
    }

    /// The events of `tentative/<hash>` (at `path`) if it is the user's record file itself (see
    /// [`Inner::landed_puts`]); `None` if it is not, or cannot be told so cheaply.
    fn landed_put(&self, hash: &str, path: &Path) -> Result<Option<Batch>, StoreError> {
        if !same_file(path, &self.credential_path(hash)) {
            return Ok(None);
        }
        Ok(self.read_batch(path)?.filter(|batch| batch.from_record))
    }

    /// Removes temp files in the outbox if no outbox operation is running (they are all made under its lock).
    pub(crate) fn clean_outbox_temp_files(&self) -> Result<(), StoreError> {
        if let Some(_lock) = try_lock_exclusive(&self.outbox.lock, "locking the outbox")? {
            remove_temp_files(&self.outbox.root)?;
        }
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------------------------
// The outbox proper (every function here runs under the outbox lock)
// -------------------------------------------------------------------------------------------------------------

impl Inner {
    /// Runs `f` under the outbox lock, after settling interrupted writes and filing the events of landed ones.
    fn with_outbox<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let _lock = lock_exclusive(&self.outbox.lock, "locking the outbox")?;
        self.file_incoming()?;
        f()
    }

    /// Runs `f` under the outbox lock alone: for settling, which touches only events that a claim filed, so the
    /// claims (and every other operation) do the filing, in larger passes.
    fn with_outbox_lock<T>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = lock_exclusive(&self.outbox.lock, "locking the outbox")?;
        f()
    }

    /// Files every incoming batch: moves it into `filed/`, names it in `leases/` and holds its events (see
    /// [`held`]); the events of incoming records go into new batches (see the module's documentation).
    fn file_incoming(&self) -> Result<(), StoreError> {
        // The puts whose entries are still in `tentative/`: their users' locks are held until this returns.
        let (_locks, mut records): (Vec<fs::File>, Vec<(PathBuf, Batch)>) = self
            .landed_puts()
            .into_iter()
            .map(|(lock, path, batch)| (lock, (path, batch)))
            .unzip();
        for name in sorted_names(&self.outbox.incoming, is_write_id)? {
            let path = self.outbox.incoming.join(&name);
            let Some(batch) = self.read_batch(&path)? else {
                continue;
            };
            if batch.from_record {
                records.push((path, batch));
                continue;
            }
            // Named first: a batch in `filed/` without a name is only filed at the next `open`.
            self.name_filed(&path, &name)?;
            fs::rename(&path, self.outbox.filed.join(&name))
                .map_err(|e| io_error("moving a filed batch", &e))?;
            self.hold(&name, batch.events)?;
            failpoint::hit("outbox:batch_filed");
        }
        // Oldest first, so that the batches of one pass are claimed one after another.
        records.sort_by(|(_, a), (_, b)| {
            let first = |batch: &Batch| batch.events.first().map(|e| (e.created_at, e.id.clone()));
            first(a).cmp(&first(b))
        });
        for chunk in records.chunks(RECORDS_PER_BATCH) {
            self.file_records(chunk)?;
        }
        Ok(())
    }

    /// Files the events of records confirmed into `incoming/` (the second names of puts with events): one new
    /// synced batch in `filed/` holding all their events — so the records, which hold sealed tokens, are not kept
    /// as their copies — named in `leases/`, then the records' names in `incoming/` are removed. A crash in between
    /// files them again into another batch; the first is filed as event files at the next `open`, and the events
    /// already settled from the first are not filed again.
    fn file_records(&self, records: &[(PathBuf, Batch)]) -> Result<(), StoreError> {
        let mut events: Vec<StoredEvent> =
            Vec::with_capacity(records.iter().map(|(_, r)| r.events.len()).sum());
        events.extend(
            records
                .iter()
                .flat_map(|(_, record)| record.events.iter().cloned()),
        );
        // Oldest first, as claims go (see `release_batch`).
        events.sort_by(|a, b| a.id.cmp(&b.id));
        let batch = Batch {
            format: FORMAT,
            op: BatchOp::Put,
            write_id: random_hex(16)?,
            events,
            from_record: false,
        };
        // Encoded into the buffer kept for it: a new buffer of up to 64 bodies costs fresh pages each time.
        let write_id = batch.write_id.clone();
        {
            let mut bytes = self
                .remembered
                .encoded
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            bytes.clear();
            serde_json::to_writer(&mut *bytes, &batch)
                .map_err(|e| StoreError::Other(format!("encoding events: {e}")))?;
            // Written as its name in `leases/` first, then linked into `filed/`: a batch never is in `filed/`
            // without a name (but for a power cut), and a name without a batch is removed as stale.
            let written = self.write_named(&write_id, &bytes);
            if bytes.capacity() > Remembered::MAX_ENCODED {
                *bytes = Vec::new();
            }
            written?;
        }
        failpoint::hit("outbox:records_batched");
        self.remembered.remember_batch(&batch);
        self.hold(&write_id, batch.events)?;
        for (name, _) in records {
            remove_if_present(name).map_err(|e| io_error("removing a filed record's name", &e))?;
        }
        failpoint::hit("outbox:batch_filed");
        Ok(())
    }

    /// A batch file, or `None` if it is gone or cannot be read (logged: it is left for an operator).
    fn read_batch(&self, path: &Path) -> Result<Option<Batch>, StoreError> {
        let Some(bytes) = read_small(path, MAX_BATCH_LEN)
            .map_err(|e| io_error("reading a batch of events", &e))?
        else {
            return Ok(None);
        };
        match parse_batch(&bytes) {
            Ok(batch) => Ok(Some(batch)),
            Err(reason) => {
                tracing::error!(file = %path.display(), %reason, "a batch of events cannot be read; it is left for an operator");
                Ok(None)
            }
        }
    }

    /// Files each event of `batch` (read from `path`) as an event file, leased until `lease` if it is new; returns
    /// whether one of them is pending with the batch as its durable copy.
    fn file_batch(
        &self,
        path: &Path,
        batch: Batch,
        lease: Option<OffsetDateTime>,
    ) -> Result<bool, StoreError> {
        let mut held = false;
        for event in batch.events {
            if !is_event_id(&event.id) {
                tracing::error!(file = %path.display(), "a batched event has an invalid id; skipped");
                continue;
            }
            let file = self.file_event(event, &batch.write_id, lease)?;
            held |= file.holds(&batch.write_id);
            failpoint::hit("outbox:event_filed");
        }
        Ok(held)
    }

    /// Files one event of batch `write_id`: its file (leased until `lease`) unless a readable one exists (a batch
    /// filed again), and its due marker while it is pending. Returns the event's file.
    fn file_event(
        &self,
        event: StoredEvent,
        write_id: &str,
        lease: Option<OffsetDateTime>,
    ) -> Result<EventFile, StoreError> {
        let id = event.id.clone();
        let path = self.outbox.event_path(&id);
        let mut fresh = EventFile::new(event, write_id);
        fresh.leased_until = lease;
        let bytes = encode_event(&fresh)?;
        // Created in place (no temp file, no rename), exclusively: a crash midway leaves a torn file while the batch
        // is still there to repair it (below) when it is filed again.
        let existing = match create_unsynced(&path, &bytes) {
            Ok(()) => {
                failpoint::hit("outbox:event_created");
                None
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match self.read_event(&id) {
                Ok(Some(existing)) => Some(existing),
                // A torn file (a crash while creating it, a power cut after an unsynced write) is repaired from
                // the batch.
                Err(StoreError::Corrupt { .. }) => {
                    self.write_event(&fresh)?;
                    None
                }
                // Removed in between (only by hand: purges hold the outbox lock, as filing does): made again.
                Ok(None) => {
                    create_unsynced(&path, &bytes)
                        .map_err(|e| io_error("writing an outbox event", &e))?;
                    None
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(io_error("writing an outbox event", &e)),
        };
        // A new file is not counted: its event was counted as pending when it was filed, or by the last scan.
        let file = existing.unwrap_or(fresh);
        if file.is_pending() {
            self.link_marker(&id, file.next_attempt_at)?;
        }
        Ok(file)
    }

    /// Files every batch in `filed/` that this process does not hold as event files, with the lease of its name
    /// (a batch another process holds stays claimed by it until then), removes its name, and removes those none
    /// of whose events is pending (`open` does this: it repairs what a crash or a power cut left; see the module's
    /// documentation and [`held`]).
    pub(crate) fn refile_kept_batches(&self) -> Result<(), StoreError> {
        let _lock = lock_exclusive(&self.outbox.lock, "locking the outbox")?;
        let leases = self.lease_names()?;
        for name in sorted_names(&self.outbox.filed, is_write_id)? {
            if self.held.holds(&name) {
                continue;
            }
            let path = self.outbox.filed.join(&name);
            let Some(batch) = self.read_batch(&path)? else {
                continue;
            };
            let kept = self.file_batch(&path, batch, held::lease_of(&name, &leases))?;
            if let Some(until) = leases.get(&name) {
                self.remove_lease(&name, *until)?;
            }
            if !kept {
                self.remove_batch(&name)?;
            }
        }
        Ok(())
    }

    /// Removes batch `write_id` from `filed/` if none of its events is pending with it as its copy and no process
    /// holds it (it has no name in `leases/`); returns whether it is kept.
    fn release_batch(&self, write_id: &str) -> Result<bool, StoreError> {
        if self.held.holds(write_id) {
            return Ok(true);
        }
        match fs::symlink_metadata(self.outbox.filed.join(write_id)) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Gone already (the usual case for the batch of an event being purged).
                self.remembered.forget_batch(write_id);
                return Ok(false);
            }
            Err(e) => return Err(io_error("looking for a filed batch", &e)),
        }
        if self.lease_names()?.contains_key(write_id) {
            return Ok(true);
        }
        let ids = match self.remembered.batch_ids(write_id) {
            Some(ids) => ids,
            None => {
                let Some(batch) = self.read_batch(&self.outbox.filed.join(write_id))? else {
                    return Ok(false);
                };
                self.remembered.remember_batch(&batch)
            }
        };
        // Newest first: events are claimed oldest id first, so a batch's last events are the likeliest to be pending
        // (one read, usually, for a batch of 64 that is still in use).
        for id in ids.iter() {
            let held = match self.read_event(id.as_str()) {
                Ok(Some(file)) => file.holds(write_id),
                Ok(None) => false,
                // Torn: the batch is what repairs it (at the next `open`).
                Err(StoreError::Corrupt { .. }) => true,
                Err(e) => return Err(e),
            };
            if held {
                return Ok(true);
            }
        }
        self.remove_batch(write_id)?;
        Ok(false)
    }

    fn remove_batch(&self, write_id: &str) -> Result<(), StoreError> {
        self.remembered.forget_batch(write_id);
        remove_if_present(&self.outbox.filed.join(write_id))
            .map_err(|e| io_error("removing a filed batch", &e))
    }

    fn read_event(&self, id: &str) -> Result<Option<EventFile>, StoreError> {
        self.event_reads.fetch_add(1, Ordering::Relaxed);
        let Some(bytes) = read_small(&self.outbox.event_path(id), MAX_EVENT_LEN)
            .map_err(|e| io_error("reading an outbox event", &e))?
        else {
            return Ok(None);
        };
        if bytes.len() as u64 > MAX_EVENT_LEN {
            return Err(corrupt(id, "file is too large".to_owned()));
        }
        let file: EventFile = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(id, parse_error("event file", &e)))?;
        if file.format != FORMAT {
            return Err(corrupt(
                id,
                format!("unsupported event format {}", file.format),
            ));
        }
        if file.event.id != id {
            return Err(corrupt(id, "the file holds another event".to_owned()));
        }
        Ok(Some(file))
    }

    /// Event `id`'s file, or, if it has none yet, as its batch holds it (see [`held`]).
    fn read_event_or_unfiled(&self, id: &str) -> Result<Option<EventFile>, StoreError> {
        match self.read_event(id)? {
            Some(file) => Ok(Some(file)),
            None => Ok(self.unfiled()?.remove(id)),
        }
    }

    /// Writes an event file whole: in place without fsync while a filed batch holds a durable copy of the event
    /// ([`EventFile::batch`]; see [`overwrite_in_place`]), else through a synced temp file and a rename (the
    /// caller then syncs `events/`, see [`Inner::sync_events`]). Returns whether it was synced.
    fn write_event(&self, file: &EventFile) -> Result<bool, StoreError> {
        let bytes = encode_event(file)?;
        let synced = file.batch.is_none();
        let target = self.outbox.event_path(&file.event.id);
        if synced {
            replace_file(&self.outbox.root, "event", &target, &bytes)
        } else {
            // Only files just read are rewritten (under the outbox lock): the file is there.
            overwrite_in_place(&target, &bytes)
        }
        .map_err(|e| io_error("writing an outbox event", &e))?;
        failpoint::hit("outbox:event_written");
        Ok(synced)
    }

    /// Makes the names of event files written with an fsync durable.
    fn sync_events(&self) -> Result<(), StoreError> {
        sync_dir(&self.outbox.events).map_err(|e| io_error("syncing the outbox", &e))
    }

    /// Makes the due marker of event `id`, due at `due` (kept if there is one): a hard link to its file, or an empty
    /// file where linking fails.
    /// Returns the marker's bucket directory (made if it was missing).
    fn link_marker(&self, id: &str, due: OffsetDateTime) -> Result<Option<PathBuf>, StoreError> {
        let Some(name) = DueName::new(id, due) else {
            return Ok(None);
        };
        let (event, marker) = (self.outbox.event_path(id), self.outbox.due_path(&name));
        let bucket = name.bucket_dir().map(|dir| self.outbox.due.join(dir));
        let linked = match link_or_create_empty(&event, &marker) {
            Err(e) if e.kind() == ErrorKind::NotFound => bucket.as_ref().map_or(Err(e), |dir| {
                create_private_dir_once(dir).and_then(|_| link_or_create_empty(&event, &marker))
            }),
            other => other,
        };
        linked.map_err(|e| io_error("writing a due marker", &e))?;
        Ok(bucket)
    }

    fn remove_marker(&self, name: &DueName) -> Result<(), StoreError> {
        remove_if_present(&self.outbox.due_path(name))
            .map_err(|e| io_error("removing a due marker", &e))
    }

    /// Removes the due marker of event `id` that was due at `due` (one at the top of `due/`, made by an earlier
    /// build, is removed by the claim that finds it stale).
    fn remove_marker_of(&self, id: &str, due: OffsetDateTime) -> Result<(), StoreError> {
        match DueName::new(id, due) {
            Some(name) => self.remove_marker(&name),
            None => Ok(()),
        }
    }

    /// Moves the due marker named `from` to the time `to` (the new name is made first, so a pending event always has
    /// one).
    fn move_marker(&self, from: &DueName, to: OffsetDateTime) -> Result<(), StoreError> {
        let id = from.id.as_str();
        if DueName::new(id, to).is_some_and(|name| name == *from) {
            return Ok(());
        }
        self.link_marker(id, to)?;
        self.remove_marker(from)
    }

    /// The ids of every event file after `cursor`, oldest first.
    fn event_ids_after(&self, cursor: Option<&str>) -> Result<Vec<String>, StoreError> {
        stems_after(&self.outbox.events, EVENT_SUFFIX, is_event_id, cursor)
    }

    /// Every event after `cursor` that can be read, oldest first, until `stop` says so: the event files and the
    /// events of batches that have none yet (see [`held`]). An unreadable one is logged and skipped (left for an
    /// operator; it never blocks the outbox).
    fn scan_events(
        &self,
        cursor: Option<&str>,
        mut visit: impl FnMut(EventFile) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut unfiled = self.unfiled()?;
        if let Some(cursor) = cursor {
            unfiled = unfiled.split_off(&format!("{cursor}\u{0}"));
        }
        let mut unfiled = unfiled.into_values().peekable();
        for id in self.event_ids_after(cursor)? {
            while let Some(file) = unfiled.next_if(|file| file.event.id < id) {
                if !visit(file)? {
                    return Ok(());
                }
            }
            match self.read_event(&id) {
                Ok(Some(file)) => {
                    if !visit(file)? {
                        return Ok(());
                    }
                }
                Ok(None) => {}
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::error!(error = %e, "an outbox event cannot be read; skipped");
                }
                Err(e) => return Err(e),
            }
        }
        for file in unfiled {
            if !visit(file)? {
                break;
            }
        }
        Ok(())
    }

    fn append(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        check_event_ids(events)?;
        if events.is_empty() {
            return Ok(());
        }
        let write_id = random_hex(16)?;
        let bytes = encode_batch(BatchOp::Append, &write_id, events)?;
        let _lock = lock_exclusive(&self.outbox.lock, "locking the outbox")?;
        replace_file(
            &self.outbox.root,
            "batch",
            &self.outbox.incoming.join(&write_id),
            &bytes,
        )
        .and_then(|()| sync_dir(&self.outbox.incoming))
        .map_err(|e| io_error("writing events", &e))
    }

    fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let until = now
            .checked_add(lease)
            .ok_or_else(|| StoreError::Other(format!("an event lease of {lease} is too long")))?;
        self.with_outbox(|| {
            let mut claimed = Vec::new();
            if limit == 0 {
                return Ok(claimed);
            }
            let mut synced = false;
            let now_key = due_key(now);
            let markers = sorted_due_names(
                &self.outbox.due,
                now_key,
                self.remembered.due_listed.load(Ordering::Relaxed),
            )?;
            self.remembered
                .due_listed
                .store(markers.len(), Ordering::Relaxed);
            // The held events and the due markers, merged by due time, then id.
            let mut due: Vec<Due> = self
                .held_due(now, limit)?
                .into_iter()
                .map(Due::Held)
                .chain(markers.into_iter().map(Due::Marker))
                .collect();
            due.sort_unstable_by_key(Due::key);
            for next in due {
                // Sorted by due time: from here on none is due (an event waiting for a later attempt is not read
                // at every claim).
                if claimed.len() >= limit || next.key().0 > now_key {
                    break;
                }
                let name = match next {
                    Due::Held(held) => {
                        claimed.extend(self.claim_held(&held, until)?);
                        continue;
                    }
                    Due::Marker(name) => name,
                };
                let mut file = match self.read_event(name.id.as_str()) {
                    Ok(Some(file)) if file.is_pending() => file,
                    Ok(_) => {
                        // Delivered, failed or gone: a stale marker.
                        self.remove_marker(&name)?;
                        continue;
                    }
                    Err(e @ StoreError::Corrupt { .. }) => {
                        tracing::error!(error = %e, "an outbox event cannot be read; skipped");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if file.next_attempt_at > now {
                    // An early marker (a crash between the event's rewrite and its marker's move, or one made by
                    // an earlier version): moved to the event's time.
                    self.move_marker(&name, file.next_attempt_at)?;
                    continue;
                }
                if file.leased_until.is_some_and(|l| l > now) {
                    continue;
                }
                file.leased_until = Some(until);
                synced |= self.write_event(&file)?;
                claimed.push(file.to_outbox());
            }
            if synced {
                self.sync_events()?;
            }
            Ok(claimed)
        })
    }

    fn settle_all(&self, outcomes: &[(String, Settlement)]) -> Result<(), StoreError> {
        let outcomes: Vec<_> = outcomes.iter().filter(|(id, _)| is_event_id(id)).collect();
        if outcomes.is_empty() {
            return Ok(());
        }
        self.with_outbox_lock(|| {
            let mut released = BTreeSet::new();
            let mut finished = Vec::new();
            let mut synced = false;
            for (id, settlement) in outcomes {
                if let Some((was_synced, done)) = self.settle_held(id, settlement)? {
                    synced |= was_synced;
                    finished.extend(done);
                    continue;
                }
                let mut file = match self.read_event(id) {
                    Ok(Some(file)) => file,
                    Ok(None) => continue,
                    // Not one event's damage for the others' settlements (logged; it is left for an operator).
                    Err(e @ StoreError::Corrupt { .. }) => {
                        tracing::error!(error = %e, "an outbox event cannot be read; its attempt is not recorded");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let batch = file.batch.clone();
                synced |= self.settle_one(&mut file, settlement)?;
                if let Some(batch) = batch.filter(|_| !file.is_pending()) {
                    released.insert(batch);
                }
            }
            if synced {
                self.sync_events()?;
            }
            failpoint::hit("outbox:settled");
            for batch in finished {
                self.finish_held(Some(batch))?;
            }
            for write_id in released {
                self.release_batch(&write_id)?;
            }
            Ok(())
        })
    }

    /// Records one attempt at `file`'s event; returns whether its file was written with an fsync.
    fn settle_one(
        &self,
        file: &mut EventFile,
        settlement: &Settlement,
    ) -> Result<bool, StoreError> {
        let id = file.event.id.clone();
        let (was_due, was) = (file.next_attempt_at, file.state);
        apply(file, settlement);
        let synced = self.write_event(file)?;
        self.remembered.count(Some(was), Some(file.state));
        if !file.is_pending() {
            self.remove_marker_of(&id, was_due)?;
        } else if let Some(marker) = DueName::new(&id, was_due) {
            self.move_marker(&marker, file.next_attempt_at)?;
        }
        Ok(synced)
    }

    fn list_events(
        &self,
        filter: EventFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        if let Some(c) = &cursor
            && !is_event_id(c)
        {
            return Err(StoreError::Other(
                "not an event cursor of this file store".to_owned(),
            ));
        }
        self.with_outbox(|| {
            let mut items = Vec::new();
            self.scan_events(cursor.as_deref(), |file| {
                let event = file.to_outbox();
                if filter.admits(event.state) {
                    items.push(event);
                }
                Ok(items.len() <= limit)
            })?;
            let next_cursor = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|e| e.record.id.clone())
            } else {
                None
            };
            Ok(EventPage { items, next_cursor })
        })
    }

    fn event(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        if !is_event_id(id) {
            return Ok(None);
        }
        self.with_outbox(|| Ok(self.read_event_or_unfiled(id)?.map(|f| f.to_outbox())))
    }

    fn replay(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        if !is_event_id(id) {
            return Ok(false);
        }
        self.with_outbox(|| {
            let Some(mut file) = self.read_event_or_unfiled(id)? else {
                return Ok(false);
            };
            // The marker first (durably: it is what a claimer finds), so a pending event always has one; a crash
            // before the event's rewrite leaves a stale marker, which the next claim removes.
            if let Some(bucket) = self.link_marker(id, now)? {
                sync_dir(&bucket).map_err(|e| io_error("syncing the outbox", &e))?;
            }
            sync_dir(&self.outbox.due).map_err(|e| io_error("syncing the outbox", &e))?;
            let was_due = file.is_pending().then_some(file.next_attempt_at);
            let was = file.state;
            file.state = State::Pending;
            file.attempts = 0;
            file.next_attempt_at = now;
            file.delivered_at = None;
            file.leased_until = None;
            // Its batch may be gone: the file is its only copy from now on.
            file.batch = None;
            self.write_event(&file)?;
            self.sync_events()?;
            self.remembered.count(Some(was), Some(State::Pending));
            // If this process held it, it is a file now.
            self.unhold(id)?;
            // A pending event's marker for its previous time is now an extra one.
            if let Some(was_due) = was_due.filter(|at| due_key(*at) != due_key(now)) {
                self.remove_marker_of(id, was_due)?;
            }
            Ok(true)
        })
    }

    fn counts(&self) -> Result<EventCounts, StoreError> {
        self.with_outbox(|| {
            if let Some(counts) = self.remembered.counts() {
                return Ok(counts);
            }
            let mut counts = EventCounts::default();
            self.scan_events(None, |file| {
                match file.state {
                    State::Pending => counts.pending += 1,
                    State::Delivered => counts.delivered += 1,
                    State::Failed => counts.failed += 1,
                }
                Ok(true)
            })?;
            self.remembered.scanned(counts);
            Ok(counts)
        })
    }

    fn purge_delivered(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.with_outbox(|| {
            let mut purged = BTreeSet::new();
            let mut purged_due = Vec::new();
            let mut batches = BTreeSet::new();
            self.scan_events(None, |file| {
                if !file.is_pending() {
                    // Released after its settlement unless that failed midway: released now.
                    batches.extend(file.batch.clone());
                }
                if file.state == State::Delivered && file.delivered_at.is_some_and(|at| at < before)
                {
                    purged_due.push((file.event.id.clone(), file.next_attempt_at));
                    purged.insert(file.event.id);
                }
                Ok(true)
            })?;
            for write_id in &batches {
                // Still kept (another of its events is pending): the purged ones leave it first, or `open`
                // would file them again from it.
                if self.release_batch(write_id)?
                    && let Some(kept) = self.read_batch(&self.outbox.filed.join(write_id))?
                {
                    self.drop_from_batch(write_id, kept, &purged)?;
                }
            }
            for (id, due) in &purged_due {
                remove_if_present(&self.outbox.event_path(id))
                    .map_err(|e| io_error("removing a delivered event", &e))?;
                self.remembered.count(Some(State::Delivered), None);
                // Left only by a settlement stopped midway.
                self.remove_marker_of(id, *due)?;
            }
            Ok(purged.len() as u64)
        })
    }

    /// Rewrites kept batch `write_id` (read as `batch`) without the events in `ids` (durably: it is the only
    /// durable copy of the events left in it). Nothing happens if it holds none of them.
    fn drop_from_batch(
        &self,
        write_id: &str,
        mut batch: Batch,
        ids: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        let path = self.outbox.filed.join(write_id);
        let before = batch.events.len();
        batch.events.retain(|e| !ids.contains(&e.id));
        if batch.events.len() == before {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&batch)
            .map_err(|e| StoreError::Other(format!("encoding events: {e}")))?;
        write_atomic_in(&self.outbox.filed, "batch", &path, &bytes)
            .map_err(|e| io_error("rewriting a filed batch", &e))?;
        self.remembered.forget_batch(write_id);
        Ok(())
    }
}

#[async_trait]
impl EventStore for FileStore {
    async fn append(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.run(move |inner| inner.append(&events)).await
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.run(move |inner| inner.claim_due(now, lease, limit))
            .await
    }

    async fn settle(&self, id: &str, settlement: &Settlement) -> Result<(), StoreError> {
        self.settle_all(&[(id.to_owned(), settlement.clone())])
            .await
    }

    async fn settle_all(&self, outcomes: &[(String, Settlement)]) -> Result<(), StoreError> {
        let outcomes = outcomes.to_vec();
        self.run(move |inner| inner.settle_all(&outcomes)).await
    }

    async fn list_events(
        &self,
        filter: EventFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        self.run(move |inner| inner.list_events(filter, cursor, limit))
            .await
    }

    async fn event(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        let id = id.to_owned();
        self.run(move |inner| inner.event(&id)).await
    }

    async fn replay(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |inner| inner.replay(&id, now)).await
    }

    async fn counts(&self) -> Result<EventCounts, StoreError> {
        self.run(move |inner| inner.counts()).await
    }

    async fn purge_delivered(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.run(move |inner| inner.purge_delivered(before)).await
    }

    async fn first_sight(
        &self,
        jti: &str,
        now: OffsetDateTime,
        keep_for: time::Duration,
    ) -> Result<bool, StoreError> {
        let jti = jti.to_owned();
        self.run(move |inner| inner.first_sight(&jti, now, keep_for))
            .await
    }

    async fn unsee(&self, jti: &str) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.run(move |inner| inner.unsee(&jti)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_that_are_not_ours_are_refused_before_anything_is_written() {
        let mut record = offline_access_domain::events::Event::new(
            offline_access_domain::events::EventData::Recovered { sub: "1".into() },
            OffsetDateTime::UNIX_EPOCH,
        )
        .record();
        assert!(check_event_ids(std::slice::from_ref(&record)).is_ok());
        record.id = "../../credentials/x".into();
        assert!(matches!(
            check_event_ids(&[record]),
            Err(StoreError::Other(_))
        ));
    }

    #[test]
    fn due_markers_are_named_by_due_time_and_listed_in_its_order_from_the_buckets_that_began() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            format!("evt_{}", "a".repeat(32)),
            format!("evt_{}", "B".repeat(32)),
        );
        let at = |ms: i64| OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms);
        let span = 1i64 << BUCKET_BITS;
        let later = DueName::new(&a, at(2_000)).unwrap();
        let sooner = DueName::new(&b, at(1_999)).unwrap();
        let next_bucket = DueName::new(&b, at(span + 5)).unwrap();
        assert_eq!(later.path(), format!("t{:012x}/{:016x}.{a}", 0, 2_000));
        assert_eq!(
            next_bucket.path(),
            format!("t{:012x}/{:016x}.{b}", 1, span + 5)
        );
        // Markers of earlier builds: the event id alone (due at once), and `<due>.<id>` at the top.
        let legacy = DueName::parse(&b, None).unwrap();
        assert!(legacy.place == Place::Legacy && legacy.due == 0);
        let flat = DueName::parse(&format!("{:016x}.{a}", 3_000), None).unwrap();
        assert!(flat.place == Place::Flat && flat.due == 3_000);
        // Times before 1970 are 0; a time is rounded down to its millisecond.
        assert_eq!(DueName::new(&a, at(-5)).unwrap().due, 0);
        assert_eq!(
            DueName::new(&a, at(1) - time::Duration::nanoseconds(1))
                .unwrap()
                .due,
            0
        );
        fs::create_dir_all(dir.path().join("t000000000000")).unwrap();
        fs::create_dir_all(dir.path().join("t000000000001")).unwrap();
        fs::create_dir_all(dir.path().join("t000000000002")).unwrap();
        for name in [&later, &sooner, &next_bucket, &legacy, &flat]
            .iter()
            .map(|n| n.path())
            .chain(
                [
                    ".tmp.x",
                    "evt_short",
                    "0000000000000001.evt_x",
                    "x.y",
                    "t000000000000/junk",
                ]
                .map(str::to_owned),
            )
        {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let listed = |now: i64| -> Vec<String> {
            sorted_due_names(dir.path(), due_key(at(now)), 0)
                .unwrap()
                .iter()
                .map(DueName::path)
                .collect()
        };
        // Before the second bucket begins, its markers are not listed.
        assert_eq!(
            listed(span - 1),
            [legacy.path(), sooner.path(), later.path(), flat.path()]
        );
        assert_eq!(
            listed(span),
            [
                legacy.path(),
                sooner.path(),
                later.path(),
                flat.path(),
                next_bucket.path()
            ]
        );
        assert!(dir.path().join("t000000000002").exists(), "not begun");
        fs::remove_file(dir.path().join(next_bucket.path())).unwrap();
        listed(span);
        assert!(!dir.path().join("t000000000001").exists(), "empty: removed");
        assert!(dir.path().join("t000000000000").exists(), "holds markers");
        assert!(
            sorted_due_names(&dir.path().join("gone"), 0, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_batch_names_a_write_id_of_32_hex_digits() {
        let bytes = encode_batch(BatchOp::Put, "../x", &[]).unwrap();
        assert!(parse_batch(&bytes).is_err());
        let bytes = encode_batch(BatchOp::Delete, &"a1".repeat(16), &[]).unwrap();
        assert_eq!(parse_batch(&bytes).unwrap().op, BatchOp::Delete);
        assert!(parse_batch(&bytes[..bytes.len() - 1]).is_err());
    }
}
