//! [`FileStore`]: the credential store port on a local directory.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use offline_access_crypto::KeyRing;
use offline_access_domain::events::EventRecord;
use offline_access_domain::risc::index_keys;
use offline_access_domain::{
    ConsentState, Credential, CredentialPage, CredentialStore, RefreshToken, StoreError, Subject,
    UserLock,
};

use crate::fsio::{
    DirSync, TMP_PREFIX, blocking, create_private_dir, hex_sha256, io_error, is_hex_digest,
    lock_exclusive, private_file_options, random_hex, read_small, remove_if_present, sorted_names,
    stems_after, sync_dir, try_lock_exclusive, write_atomic_grouped, write_atomic_in,
    write_atomic_linked,
};
use crate::keyed::{KeyedGuard, KeyedMutex};
use crate::outbox::{BatchOp, Held, OutboxDirs, Remembered, StoredEvent, check_event_ids};
use crate::record::{Record, RecordHead};
use crate::risc::RiscDirs;

/// Subdirectory holding one `<sha256(subject)>.json` per user (and short-lived temp files).
const CREDENTIALS_DIR: &str = "credentials";
/// Subdirectory holding one `<hash>` per deleted user without a record now: the deleted record's last version.
const TOMBSTONES_DIR: &str = "tombstones";
/// Subdirectory holding an empty `<hash>` marker per pending revocation (the index `pending_revocations` reads).
const PENDING_DIR: &str = "pending";
/// Subdirectory holding the empty per-user lock files.
const LOCKS_DIR: &str = "locks";
/// Subdirectory of the refresh-token index: `tokens/<k>/<index key>.<hash>`, one empty entry per user holding a
/// token with that key (see [`crate::index`]).
pub(crate) const TOKENS_DIR: &str = "tokens";
/// Subdirectory of the outbox (see [`crate::outbox`]).
const OUTBOX_DIR: &str = "outbox";
/// Subdirectory of the RISC `jti` register (see [`crate::risc`]).
const RISC_DIR: &str = "risc";
/// Prefix of the probe files `ping` writes.
const PING_PREFIX: &str = ".ping.";
/// A credential file is a few KiB; anything far larger is not ours.
pub(crate) const MAX_FILE_LEN: u64 = 1024 * 1024;
/// A tombstone holds one decimal `u64` and a newline.
const MAX_TOMBSTONE_LEN: u64 = 32;

/// A [`CredentialStore`] and [`EventStore`](offline_access_domain::events::EventStore) keeping one encrypted JSON
/// file per user in a local directory.
///
/// - Layout: `<dir>/credentials/<hex sha256(subject)>.json` (mode 0600), `<dir>/tombstones/<hash>` (the last
///   version of a deleted record, so versions never repeat), `<dir>/pending/<hash>` (an empty marker per pending
///   revocation), `<dir>/locks/<hash>.lock`, `<dir>/locks/<hash>.refresh` (empty lock files), `<dir>/tokens/`
///   (the refresh-token index), `<dir>/outbox/` (the events) and `<dir>/risc/` (the `jti` register); see
///   `docs/storage.md`. Directories are created with mode 0700.
/// - Events written with a change (`put_with`, `delete_with`) are first made durable in
///   `outbox/tentative/<hash>`, with a random write id that the new record (or the removal) carries; after the
///   record's atomic write they are filed from there (a put's entry is the record's file) or renamed into the
///   outbox (a delete's). A tentative file left by a crash is kept iff the
///   record carries its write id (a delete: iff the record is gone), checked under the user's write lock.
/// - Tokens are sealed with the [`KeyRing`] (AES-256-GCM, AAD = subject + field); the other fields are in clear.
/// - Writes are atomic (temp file with `O_EXCL`, write, fdatasync, rename, fsync of the directory) and run under an
///   exclusive lock on the user's `.lock` file, where the version check happens: two processes cannot both win.
/// - Listings sort the file names (user hashes) and read only the records of the page; the cursor is the last
///   hash the page examined. `pending_revocations` lists the markers' names and reads only their records.
/// - [`CredentialStore::lock_user`] holds an exclusive lock on the user's `.refresh` file (and an in-process mutex),
///   so one process on this host refreshes a user at a time; the OS frees it if the holder dies.
/// - The outbox: every event operation runs under an exclusive lock on `outbox/lock`, which is where a lease is
///   taken (written into the event's due marker), so each due event is leased to one claimer at a time across
///   processes. `first_sight` checks and writes a `jti`'s entry under `risc/lock`.
/// - `find_by_refresh_token` lists one of 16 directories `tokens/<k>/` for the key's entries (one per user, kept
///   by each write that changes the token) and reads only those users' clear fields.
///
/// The directory must be on a local filesystem (advisory `flock` locks).
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) credentials: PathBuf,
    pub(crate) tombstones: PathBuf,
    pub(crate) pending: PathBuf,
    pub(crate) locks: PathBuf,
    pub(crate) tokens: PathBuf,
    /// `credentials/`, kept open: the syncs after renames and removals there, shared by concurrent writes.
    credentials_sync: DirSync,
    /// The 16 shard directories of `tokens/`, kept open: the syncs after index entries are made, shared by
    /// concurrent writes.
    pub(crate) index_shards: Vec<DirSync>,
    /// `outbox/tentative/`, kept open: the syncs after a write's events are put there, shared by concurrent writes.
    pub(crate) tentative_sync: DirSync,
    pub(crate) outbox: OutboxDirs,
    pub(crate) risc: RiscDirs,
    pub(crate) keys: Arc<KeyRing>,
    refresh_locks: Arc<KeyedMutex>,
    /// The users this process is writing now (under their write locks): the outbox's sweep skips their tentative
    /// entries without trying their locks.
    pub(crate) writing: Mutex<HashSet<String>>,
    /// What this process remembers of the outbox between operations (see [`Remembered`]).
    pub(crate) remembered: Remembered,
    /// The outbox events this process holds in memory (see the outbox's `held` module).
    pub(crate) held: Held,
    /// How many times a credential file was opened for reading (for tests of the listing's cost).
    record_reads: AtomicU64,
    /// How many times an outbox event file was opened for reading (for tests of what a claim reads).
    pub(crate) event_reads: AtomicU64,
    /// When (unix seconds, of the callers' clock) the `jti` register is next swept for expired entries.
    pub(crate) next_jti_purge: AtomicI64,
}

/// What a listing found for one user hash.
enum Listed {
    /// The record (readable, and a pending revocation when only those were asked for).
    Item(Box<Credential>),
    /// The record cannot be read: why, naming the file.
    Unreadable(String),
    /// No record (deleted since the directory was listed), or not a pending revocation when only those were
    /// asked for.
    Skipped,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.root)
            .field("keys", &self.inner.keys)
            .finish()
    }
}

/// The file name stem of a user: hex SHA-256 of the subject.
pub(crate) fn user_hash(subject: &str) -> String {
    hex_sha256(subject)
}

pub(crate) fn is_user_hash(s: &str) -> bool {
    is_hex_digest(s)
}

/// A refresh token's text, to compare a stored token with a new one.
fn token_text(token: Option<&RefreshToken>) -> Option<&str> {
    token.map(RefreshToken::expose_secret)
}

/// Checks a listing cursor: the last user hash of a page this store made.
fn parse_cursor(cursor: Option<String>) -> Result<Option<String>, StoreError> {
    match cursor {
        Some(c) if !is_user_hash(&c) => Err(StoreError::Other(
            "not a listing cursor of this file store".to_owned(),
        )),
        other => Ok(other),
    }
}

/// The user hashes named by the entries of `dir` (`<hash><suffix>`), sorted, keeping only those after `cursor`.
pub(crate) fn hashes_after(
    dir: &Path,
    suffix: &str,
    cursor: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    stems_after(dir, suffix, is_user_hash, cursor)
}

impl FileStore {
    /// Opens (creating with mode 0700 if needed) a store in `dir`, sealing tokens with `keys`, and sweeps it: removes
    /// temp files left by a crashed writer (their user's file is untouched: a write only lands by rename), settles
    /// the events of writes a crash interrupted (kept iff the write landed), and, once, indexes the refresh tokens
    /// of records written before the token index existed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Other`] when the directory cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>, keys: Arc<KeyRing>) -> Result<FileStore, StoreError> {
        let store = Self::open_without_sweep(dir.into(), keys)?;
        store.inner.sweep()?;
        Ok(store)
    }

    /// As [`FileStore::open`], but sweeps on a background thread instead of before returning, so start-up does not
    /// list a directory of every user (the sweep leaves alone any temp or tentative file whose writer holds its
    /// lock, so it is safe next to live writes; until a first indexing is done, `find_by_refresh_token` may miss a
    /// record written by an earlier version). For servers; tests that need the sweep done use [`FileStore::open`].
    ///
    /// # Errors
    /// As [`FileStore::open`].
    pub fn open_sweeping_in_background(
        dir: impl Into<PathBuf>,
        keys: Arc<KeyRing>,
    ) -> Result<FileStore, StoreError> {
        let store = Self::open_without_sweep(dir.into(), keys)?;
        let inner = Arc::clone(&store.inner);
        let spawned = std::thread::Builder::new()
            .name("file-store-sweep".into())
            .spawn(move || {
                if let Err(e) = inner.sweep() {
                    tracing::warn!(error = %e, "could not sweep what interrupted writes left");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the store sweep; sweeping now");
            store.inner.sweep()?;
        }
        Ok(store)
    }

    fn open_without_sweep(root: PathBuf, keys: Arc<KeyRing>) -> Result<FileStore, StoreError> {
        let credentials = root.join(CREDENTIALS_DIR);
        let tombstones = root.join(TOMBSTONES_DIR);
        let pending = root.join(PENDING_DIR);
        let locks = root.join(LOCKS_DIR);
        let tokens = root.join(TOKENS_DIR);
        let outbox = OutboxDirs::new(&root.join(OUTBOX_DIR));
        let risc = RiscDirs::new(&root.join(RISC_DIR));
        let fixed = [&root, &credentials, &tombstones, &pending, &locks, &tokens];
        for path in fixed.into_iter().chain(outbox.dirs()).chain(risc.dirs()) {
            create_private_dir(path).map_err(|e| {
                io_error(&format!("creating store directory {}", path.display()), &e)
            })?;
        }
        let open_sync = |path: &Path| {
            DirSync::open(path)
                .map_err(|e| io_error(&format!("opening store directory {}", path.display()), &e))
        };
        let credentials_sync = open_sync(&credentials)?;
        let index_shards = crate::index::open_index_shards(&tokens)?;
        let tentative_sync = open_sync(outbox.tentative_dir())?;
        let store = FileStore {
            inner: Arc::new(Inner {
                root,
                credentials_sync,
                index_shards,
                tentative_sync,
                credentials,
                tombstones,
                pending,
                locks,
                tokens,
                outbox,
                risc,
                keys,
                refresh_locks: Arc::default(),
                record_reads: AtomicU64::new(0),
                event_reads: AtomicU64::new(0),
                writing: Mutex::default(),
                remembered: Remembered::default(),
                held: Held::default(),
                next_jti_purge: AtomicI64::new(i64::MIN),
            }),
        };
        Ok(store)
    }

    /// Runs `f` on the store's state on a blocking thread (all file I/O runs there).
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || f(&inner)).await
    }

    /// The store's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.root
    }

    /// The path of a user's credential file (for operators and tests; the file holds only ciphertext tokens).
    #[must_use]
    pub fn credential_path(&self, subject: &Subject) -> PathBuf {
        self.inner.credential_path(&user_hash(subject.as_str()))
    }

    /// How many times this store (all its clones) opened a credential file for reading: a test hook to check that
    /// a listing reads only the records of its page.
    #[cfg(feature = "testkit")]
    #[must_use]
    pub fn record_reads(&self) -> u64 {
        self.inner.record_reads.load(Ordering::Relaxed)
    }

    /// How many times this store (all its clones) opened an outbox event file for reading: a test hook to check
    /// that a claim reads only the events that may be due.
    #[cfg(feature = "testkit")]
    #[must_use]
    pub fn event_reads(&self) -> u64 {
        self.inner.event_reads.load(Ordering::Relaxed)
    }

    /// Like [`CredentialStore::lock_user`], but returns `None` at once if another task or process holds the
    /// user's lock.
    ///
    /// # Errors
    /// As [`CredentialStore::lock_user`].
    pub async fn try_lock_user(
        &self,
        subject: &Subject,
    ) -> Result<Option<Box<dyn UserLock>>, StoreError> {
        let hash = user_hash(subject.as_str());
        let Some(in_process) = self.inner.refresh_locks.try_lock(&hash) else {
            return Ok(None);
        };
        let path = self.inner.refresh_lock_path(&hash);
        let file = blocking(move || try_lock_exclusive(&path, "locking a user")).await?;
        Ok(file.map(|file| self.guard(subject, file, in_process)))
    }

    fn guard(&self, subject: &Subject, file: File, in_process: KeyedGuard) -> Box<dyn UserLock> {
        Box::new(FileUserLock {
            store: self.clone(),
            subject: subject.clone(),
            _file: file,
            _in_process: in_process,
        })
    }

    /// Re-encrypts every record that holds a token sealed under a key other than the newest, `batch` records per
    /// step, calling `progress(done, total)` first and after each step. Versions and timestamps are kept (the
    /// content does not change). Idempotent and safe to interrupt: each record is rewritten atomically under its
    /// write lock, and a re-run skips what is done. Returns how many records were rewritten.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a record that cannot be read (including one sealed under a key that is no longer
    /// configured): fix or delete it and run again; I/O errors as for `put`.
    pub async fn reencrypt_all(
        &self,
        batch: usize,
        progress: impl Fn(usize, usize),
    ) -> Result<usize, StoreError> {
        let inner = Arc::clone(&self.inner);
        let pending = blocking(move || inner.hashes_needing_reencryption()).await?;
        let total = pending.len();
        progress(0, total);
        let mut done = 0;
        let mut rewritten = 0;
        for chunk in pending.chunks(batch.max(1)) {
            let inner = Arc::clone(&self.inner);
            let chunk = chunk.to_vec();
            let len = chunk.len();
            rewritten += blocking(move || {
                let mut count = 0;
                for hash in &chunk {
                    if inner.reencrypt_one(hash)? {
                        count += 1;
                    }
                }
                Ok(count)
            })
            .await?;
            done += len;
            progress(done, total);
        }
        Ok(rewritten)
    }
}

impl Inner {
    pub(crate) fn credential_path(&self, hash: &str) -> PathBuf {
        self.credentials.join(format!("{hash}.json"))
    }

    fn tombstone_path(&self, hash: &str) -> PathBuf {
        self.tombstones.join(hash)
    }

    fn pending_path(&self, hash: &str) -> PathBuf {
        self.pending.join(hash)
    }

    pub(crate) fn write_lock_path(&self, hash: &str) -> PathBuf {
        self.locks.join(format!("{hash}.lock"))
    }

    fn refresh_lock_path(&self, hash: &str) -> PathBuf {
        self.locks.join(format!("{hash}.refresh"))
    }

    /// Takes the user's write lock (blocking); released when the returned file is dropped.
    pub(crate) fn write_lock(&self, hash: &str) -> Result<File, StoreError> {
        lock_exclusive(
            &self.write_lock_path(hash),
            "locking a credential for writing",
        )
    }

    /// Takes the user's write lock for a write: also settles the events of an earlier write of this user that a
    /// crash interrupted (one failed `open` when there are none), so every write starts from a settled outbox.
    fn lock_for_write(&self, hash: &str) -> Result<File, StoreError> {
        let lock = self.write_lock(hash)?;
        self.settle_tentative(hash)?;
        Ok(lock)
    }

    /// Reads a user's file; `None` if there is none.
    fn read_file(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.record_reads.fetch_add(1, Ordering::Relaxed);
        self.read_file_uncounted(hash)
    }

    /// Reads a user's file without counting it as a record read (the outbox and the index only look at its clear
    /// fields); `None` if there is none.
    pub(crate) fn read_file_uncounted(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read_small(&self.credential_path(hash), MAX_FILE_LEN)
            .map_err(|e| io_error("reading a credential file", &e))
    }

    /// Parses a user's file and checks it belongs to the file name's user. `who` names the user in errors.
    pub(crate) fn parse_record(
        &self,
        hash: &str,
        bytes: &[u8],
        who: &str,
    ) -> Result<Record, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            subject: who.to_owned(),
            reason,
        };
        if bytes.len() as u64 > MAX_FILE_LEN {
            return Err(corrupt("file is too large".to_owned()));
        }
        let record = Record::parse(bytes).map_err(corrupt)?;
        if user_hash(&record.subject) != hash {
            return Err(corrupt(
                "the file holds another user's record (moved or swapped)".to_owned(),
            ));
        }
        Ok(record)
    }

    pub(crate) fn open_record(&self, record: &Record) -> Result<Credential, StoreError> {
        record
            .open(&self.keys)
            .map_err(|reason| StoreError::Corrupt {
                subject: record.subject.clone(),
                reason,
            })
    }

    /// Reads and parses (without decrypting) a user's record; `None` if there is none.
    pub(crate) fn read_record(&self, hash: &str, who: &str) -> Result<Option<Record>, StoreError> {
        let Some(bytes) = self.read_file(hash)? else {
            return Ok(None);
        };
        self.parse_record(hash, &bytes, who).map(Some)
    }

    fn get(&self, subject: &Subject) -> Result<Option<Credential>, StoreError> {
        let hash = user_hash(subject.as_str());
        self.read_record(&hash, subject.as_str())?
            .map(|record| self.open_record(&record))
            .transpose()
    }

    /// The last version of the user's deleted record, if the user has a tombstone (the caller holds the write
    /// lock). An unreadable tombstone is an error: guessing could repeat a version.
    fn read_tombstone(&self, hash: &str, who: &str) -> Result<Option<u64>, StoreError> {
        let Some(bytes) = read_small(&self.tombstone_path(hash), MAX_TOMBSTONE_LEN)
            .map_err(|e| io_error("reading a tombstone", &e))?
        else {
            return Ok(None);
        };
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                subject: who.to_owned(),
                reason: format!(
                    "its tombstone ({TOMBSTONES_DIR}/{hash}) does not hold a version: restore it (the deleted \
                     record's last version) or remove it if no writer can hold an older version"
                ),
            })
    }

    /// Durably records `version` as the last version of the user's deleted record (temp file, fsync, rename,
    /// fsync of the directory; the caller holds the write lock).
    fn write_tombstone(&self, hash: &str, version: u64) -> Result<(), StoreError> {
        let bytes = format!("{version}\n");
        write_atomic_in(
            &self.tombstones,
            hash,
            &self.tombstone_path(hash),
            bytes.as_bytes(),
        )
        .map_err(|e| io_error("writing a tombstone", &e))
    }

    /// Durably creates the user's pending-revocation marker (before a forgotten record is written).
    fn mark_pending(&self, hash: &str) -> Result<(), StoreError> {
        private_file_options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.pending_path(hash))
            .map_err(|e| io_error("marking a pending revocation", &e))?;
        sync_dir(&self.pending).map_err(|e| io_error("syncing the pending directory", &e))
    }

    /// Removes the user's pending-revocation marker, if any. A marker that cannot be removed is only logged: a
    /// stale marker never lists a record that is not forgotten, and the next listing retries.
    fn unmark_pending(&self, hash: &str) {
        if let Err(e) = remove_if_present(&self.pending_path(hash)) {
            tracing::warn!(error = %e, "could not remove a stale pending-revocation marker");
        }
    }

    /// `put_with`: the version check, then (with events) the tentative events, the new index entries, the record,
    /// the confirmation of the events, and the clean-up of what the old record needed.
    fn put(
        &self,
        credential: &Credential,
        events: &[EventRecord],
    ) -> Result<Credential, StoreError> {
        check_event_ids(events)?;
        let who = credential.subject.as_str();
        let hash = user_hash(who);
        let _lock = self.lock_for_write(&hash)?;
        let _writing = Writing::start(&self.writing, &hash);
        // A corrupt or undecryptable file fails here: it is never overwritten (only `delete` removes it).
        let stored_record = self.read_record(&hash, who)?;
        let stored = stored_record
            .as_ref()
            .map(|record| self.open_record(record))
            .transpose()?;
        if stored.as_ref().map_or(0, |c| c.version) != credential.version {
            return Err(StoreError::Conflict);
        }
        // Versions never repeat: a first write starts above the last version of a deleted record.
        let tombstone = match &stored {
            Some(_) => None,
            None => self.read_tombstone(&hash, who)?,
        };
        let floor = stored
            .as_ref()
            .map_or(tombstone.unwrap_or(0), |c| c.version);
        let mut next = credential.clone();
        if next.refresh_token.is_none() {
            next.refresh_token = stored.as_ref().and_then(|c| c.refresh_token.clone());
        }
        next.version = floor.checked_add(1).ok_or(StoreError::Conflict)?;
        // The token index: an unchanged token keeps the stored record's keys (no work); a new one gets its entries
        // before the record holds it, so a lookup never misses it.
        let old_keys = stored_record.and_then(|record| record.token_index);
        let same_token = token_text(stored.as_ref().and_then(|c| c.refresh_token.as_ref()))
            == token_text(next.refresh_token.as_ref());
        let keys = match old_keys.as_ref() {
            Some(keys) if same_token => keys.clone(),
            _ => next
                .refresh_token
                .as_ref()
                .map(index_keys)
                .unwrap_or_default(),
        };
        let added: Vec<String> = keys
            .iter()
            .filter(|k| !old_keys.as_ref().is_some_and(|old| old.contains(*k)))
            .cloned()
            .collect();
        // Made now and synced just before the record's rename (`write_record`): on a journaled file system the
        // record's own sync commits them, so their directories' syncs find nothing left to write.
        self.add_index_entries(&hash, &added)?;
        // With events, the record carries them and its write id, and `outbox/tentative/<hash>` is a second name
        // of its file (see the outbox's documentation).
        let write_id = if events.is_empty() {
            None
        } else {
            Some(random_hex(16)?)
        };
        let written = (|| {
            // The index entry exists before the forgotten record does, so a listing never misses it.
            if next.is_forgotten() {
                self.mark_pending(&hash)?;
            }
            self.write_record(
                &hash,
                &next,
                Some(keys.clone()),
                write_id.clone(),
                events,
                &added,
            )
        })();
        if let Err(e) = written {
            self.settle_tentative_after_failure(&hash, write_id.as_deref());
            return Err(e);
        }
        // With events, `outbox/tentative/<hash>` stays: it is the record's file, so the next filing pass knows the
        // write landed without reading anything, and files the events from it (or the user's next write moves it
        // into `incoming/` first).
        if !next.is_forgotten() {
            self.unmark_pending(&hash);
        }
        if tombstone.is_some() {
            // The record now carries the highest version: the tombstone is redundant. Left by a crash here, it
            // is harmless (a record's version is above its tombstone's).
            if let Err(e) = remove_if_present(&self.tombstone_path(&hash)) {
                tracing::warn!(error = %e, "could not remove a redundant tombstone");
            }
        }
        if let Some(old) = &old_keys {
            let dropped: Vec<String> = old.iter().filter(|k| !keys.contains(k)).cloned().collect();
            self.remove_index_entries(&hash, &dropped);
        }
        crate::failpoint::hit("write:done");
        Ok(next)
    }

    /// Seals and writes a credential as it is (the caller holds the write lock), with its index keys and, when the
    /// write has events, its id and the events (the file then also becomes `outbox/tentative/<hash>`, durably,
    /// before it replaces the record). The shards of `new_index_keys` (entries just made) are synced before the
    /// rename, after the temp file's own sync.
    fn write_record(
        &self,
        hash: &str,
        credential: &Credential,
        token_index: Option<Vec<String>>,
        write_id: Option<String>,
        events: &[EventRecord],
        new_index_keys: &[String],
    ) -> Result<(), StoreError> {
        let mut record = Record::seal(credential, &self.keys)
            .map_err(|e| StoreError::Other(format!("sealing the credential: {e}")))?;
        record.token_index = token_index;
        let with_events = write_id.is_some();
        record.write_id = write_id;
        if with_events {
            record.events = events.iter().map(StoredEvent::from).collect();
        }
        let bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| StoreError::Other(format!("encoding the credential: {e}")))?;
        // The new index entries are durable before the record that holds their token is.
        let sync_index = || self.sync_index_shards(new_index_keys);
        if !with_events {
            return self.write_atomic(hash, &bytes, sync_index);
        }
        write_atomic_linked(
            &self.credentials,
            &self.credentials_sync,
            &self.credential_path(hash),
            &bytes,
            &self.outbox.tentative_dir().join(hash),
            &self.tentative_sync,
            sync_index,
        )
        .map_err(|e| io_error("writing a credential file with its events", &e))
    }

    /// Temp file (`O_EXCL`, 0600) in the same directory, write, fsync, `before_rename`, rename over the user's file,
    /// fsync the directory. On any failure before the rename the temp file is removed and the old file is untouched.
    fn write_atomic(
        &self,
        hash: &str,
        bytes: &[u8],
        before_rename: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        write_atomic_grouped(
            &self.credentials,
            &self.credentials_sync,
            hash,
            &self.credential_path(hash),
            bytes,
            before_rename,
        )
        .map_err(|e| io_error("writing a credential file", &e))
    }

    /// Deletes the record if its version is `version`. Reads only the version (in clear), so a record sealed
    /// under a key that is no longer configured can be deleted too. The tombstone is durable before the record
    /// is removed: after a crash either the record is there or the tombstone is.
    ///
    /// With events, they are first made durable in the user's tentative file; a crash before the record's removal
    /// leaves the record (and the events are dropped), after it the events are kept.
    fn delete(
        &self,
        subject: &Subject,
        version: u64,
        events: &[EventRecord],
    ) -> Result<(), StoreError> {
        check_event_ids(events)?;
        let hash = user_hash(subject.as_str());
        let _lock = self.lock_for_write(&hash)?;
        let _writing = Writing::start(&self.writing, &hash);
        let Some(bytes) = self.read_file(&hash)? else {
            return Err(StoreError::Conflict);
        };
        let head = RecordHead::parse(&bytes).map_err(|reason| StoreError::Corrupt {
            subject: subject.as_str().to_owned(),
            reason: format!("{reason}; an operator must repair or remove the file"),
        })?;
        if head.version != version {
            return Err(StoreError::Conflict);
        }
        let write_id = self.write_tentative(&hash, BatchOp::Delete, events)?;
        let removed = (|| {
            self.write_tombstone(&hash, version)?;
            remove_if_present(&self.credential_path(&hash))
                .map_err(|e| io_error("deleting a credential file", &e))?;
            crate::failpoint::hit("delete:removed");
            self.credentials_sync
                .sync()
                .map_err(|e| io_error("syncing the store directory", &e))?;
            crate::failpoint::hit("delete:durable");
            Ok(())
        })();
        if let Err(e) = removed {
            self.settle_tentative_after_failure(&hash, write_id.as_deref());
            return Err(e);
        }
        if let Some(write_id) = &write_id {
            self.confirm_tentative(&hash, write_id);
        }
        self.unmark_pending(&hash);
        if let Some(keys) = &head.token_index {
            self.remove_index_entries(&hash, keys);
        }
        crate::failpoint::hit("write:done");
        Ok(())
    }

    /// Reads one record for a listing. A record that cannot be read is reported, not an error; only an
    /// unavailable store is.
    fn read_listed(&self, hash: &str, only_pending: bool) -> Result<Listed, StoreError> {
        let name = format!("{CREDENTIALS_DIR}/{hash}.json");
        let bytes = match self.read_file(hash) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Listed::Skipped),
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => return Ok(Listed::Unreadable(format!("{name}: {e}"))),
        };
        let record = match self.parse_record(hash, &bytes, &name) {
            Ok(record) => record,
            Err(e) => {
                let reason = match e {
                    StoreError::Corrupt { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Ok(Listed::Unreadable(match RecordHead::parse(&bytes) {
                    Ok(head) => format!("{name} (version {}): {reason}", head.version),
                    Err(_) => format!("{name}: {reason}"),
                }));
            }
        };
        if only_pending && !matches!(record.consent, ConsentState::Forgotten) {
            return Ok(Listed::Skipped);
        }
        Ok(match self.open_record(&record) {
            Ok(credential) => Listed::Item(Box::new(credential)),
            Err(e) => {
                let reason = match e {
                    StoreError::Corrupt { reason, .. } => reason,
                    other => other.to_string(),
                };
                Listed::Unreadable(format!(
                    "{name} (subject {}, version {}): {reason}",
                    record.subject, record.version
                ))
            }
        })
    }

    /// One page of `hashes` (sorted, after the cursor): reads records in order until `limit` were found
    /// (readable or not); a skipped hash does not count. The cursor is the last hash the page examined.
    fn page(
        &self,
        hashes: &[String],
        limit: usize,
        only_pending: bool,
    ) -> Result<CredentialPage, StoreError> {
        let mut page = CredentialPage::default();
        if limit == 0 {
            return Ok(page);
        }
        let mut found = 0;
        let mut rest = hashes.iter();
        let mut last = None;
        for hash in rest.by_ref() {
            match self.read_listed(hash, only_pending)? {
                Listed::Item(credential) => page.items.push(*credential),
                Listed::Unreadable(reason) => page.unreadable.push(reason),
                Listed::Skipped => {
                    if only_pending {
                        self.drop_stale_marker(hash);
                    }
                    continue;
                }
            }
            found += 1;
            if found == limit {
                last = Some(hash);
                break;
            }
        }
        if rest.next().is_some() {
            page.next_cursor = last.cloned();
        }
        Ok(page)
    }

    /// Lists records in user-hash order: the directory names only, then the page's records.
    fn list(&self, cursor: Option<String>, limit: usize) -> Result<CredentialPage, StoreError> {
        let cursor = parse_cursor(cursor)?;
        let hashes = hashes_after(&self.credentials, ".json", cursor.as_deref())?;
        self.page(&hashes, limit, false)
    }

    /// Lists pending revocations in user-hash order: the markers' names, then only the marked records.
    fn pending_revocations(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        let cursor = parse_cursor(cursor)?;
        let hashes = hashes_after(&self.pending, "", cursor.as_deref())?;
        self.page(&hashes, limit, true)
    }

    /// Removes a marker whose record is gone or not forgotten, re-checked under the user's write lock (a `put`
    /// creates the marker before it writes a forgotten record, so a marker seen before its record is kept).
    /// Failures are only logged: the marker is checked again by the next listing.
    fn drop_stale_marker(&self, hash: &str) {
        let stale = || -> Result<bool, StoreError> {
            let _lock = self.write_lock(hash)?;
            let stale = match self.read_file(hash)? {
                None => true,
                Some(bytes) => Record::parse(&bytes)
                    .is_ok_and(|r| !matches!(r.consent, ConsentState::Forgotten)),
            };
            if stale {
                remove_if_present(&self.pending_path(hash))
                    .map_err(|e| io_error("removing a stale pending-revocation marker", &e))?;
            }
            Ok(stale)
        };
        if let Err(e) = stale() {
            tracing::warn!(error = %e, "could not check a pending-revocation marker");
        }
    }

    fn hashes_needing_reencryption(&self) -> Result<Vec<String>, StoreError> {
        let mut pending = Vec::new();
        for hash in hashes_after(&self.credentials, ".json", None)? {
            if let Some(bytes) = self.read_file(&hash)? {
                let record = self.parse_record(&hash, &bytes, &format!("file {hash}.json"))?;
                if record.needs_reencryption(&self.keys) {
                    pending.push(hash);
                }
            }
        }
        Ok(pending)
    }

    /// Re-seals one record under the newest key if it still needs it; `true` if rewritten.
    fn reencrypt_one(&self, hash: &str) -> Result<bool, StoreError> {
        let _lock = self.lock_for_write(hash)?;
        let Some(bytes) = self.read_file(hash)? else {
            return Ok(false);
        };
        let record = self.parse_record(hash, &bytes, &format!("file {hash}.json"))?;
        if !record.needs_reencryption(&self.keys) {
            return Ok(false);
        }
        let credential = self.open_record(&record)?;
        // Its events (if any) were settled by `lock_for_write`: the write id is of no more use.
        self.write_record(
            hash,
            &credential,
            record.token_index.clone(),
            None,
            &[],
            &[],
        )?;
        Ok(true)
    }

    /// What `open` does after creating the directories: removes temp files of crashed writers and `ping` probes,
    /// settles tentative events left by crashed writes, and indexes refresh tokens of records written before the
    /// index existed (once).
    fn sweep(&self) -> Result<(), StoreError> {
        for dir in [&self.credentials, &self.tombstones] {
            self.clean_stale_temp_files_in(dir)?;
        }
        self.sweep_tentatives();
        self.clean_outbox_temp_files()?;
        self.refile_kept_batches()?;
        self.clean_risc_temp_files()?;
        self.index_existing_records()
    }

    /// Removes the temp files of crashed writers in `dir` (of records or tombstones) and `ping` probes. A temp file
    /// whose user's write lock is held belongs to a live writer (another process) and is left alone.
    fn clean_stale_temp_files_in(&self, dir: &Path) -> Result<(), StoreError> {
        let names = sorted_names(dir, |n| {
            n.starts_with(PING_PREFIX) || n.starts_with(TMP_PREFIX)
        })?;
        for name in names {
            if name.starts_with(PING_PREFIX) {
                let _ = fs::remove_file(dir.join(&name));
                continue;
            }
            let Some((hash, _)) = name
                .strip_prefix(TMP_PREFIX)
                .and_then(|rest| rest.split_once('.'))
            else {
                continue;
            };
            if !is_user_hash(hash) {
                continue;
            }
            if try_lock_exclusive(&self.write_lock_path(hash), "locking a credential")?.is_some() {
                tracing::info!(
                    file = name,
                    "removing a temp file left by an interrupted write"
                );
                let _ = fs::remove_file(dir.join(&name));
            }
        }
        Ok(())
    }

    /// Writes, syncs and removes one probe file: the directory is there and writable now.
    fn ping(&self) -> Result<(), StoreError> {
        let unavailable = |e: io::Error| {
            StoreError::Unavailable(format!("the store directory is not writable: {e}"))
        };
        let probe = self
            .credentials
            .join(format!("{PING_PREFIX}{}", random_hex(8)?));
        let mut file = private_file_options()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(unavailable)?;
        let written = file.write_all(b"ping").and_then(|()| file.sync_all());
        drop(file);
        let removed = fs::remove_file(&probe);
        written.map_err(unavailable)?;
        removed.map_err(unavailable)
    }
}

#[async_trait]
impl CredentialStore for FileStore {
    async fn get(&self, subject: &Subject) -> Result<Option<Credential>, StoreError> {
        let subject = subject.clone();
        self.run(move |inner| inner.get(&subject)).await
    }

    async fn stored_version(&self, subject: &Subject) -> Result<Option<u64>, StoreError> {
        let subject = subject.clone();
        self.run(move |inner| {
            let hash = user_hash(subject.as_str());
            // The record's JSON is read, its tokens are not opened: this works under a lost key too.
            Ok(inner
                .read_record(&hash, subject.as_str())?
                .map(|r| r.version))
        })
        .await
    }

    async fn put_with(
        &self,
        credential: &Credential,
        events: &[EventRecord],
    ) -> Result<Credential, StoreError> {
        let credential = credential.clone();
        let events = events.to_vec();
        self.run(move |inner| inner.put(&credential, &events)).await
    }

    async fn delete_with(
        &self,
        subject: &Subject,
        version: u64,
        events: &[EventRecord],
    ) -> Result<(), StoreError> {
        let subject = subject.clone();
        let events = events.to_vec();
        self.run(move |inner| inner.delete(&subject, version, &events))
            .await
    }

    async fn find_by_refresh_token(&self, index_key: &str) -> Result<Vec<Subject>, StoreError> {
        let index_key = index_key.to_owned();
        self.run(move |inner| inner.find_by_refresh_token(&index_key))
            .await
    }

    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        self.run(move |inner| inner.list(cursor, limit)).await
    }

    async fn pending_revocations(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        self.run(move |inner| inner.pending_revocations(cursor, limit))
            .await
    }

    async fn lock_user(&self, subject: &Subject) -> Result<Box<dyn UserLock>, StoreError> {
        let hash = user_hash(subject.as_str());
        // One waiter per user per process on the file lock; the others wait here without holding a thread.
        let in_process = self.inner.refresh_locks.lock(&hash).await;
        let path = self.inner.refresh_lock_path(&hash);
        let file = blocking(move || lock_exclusive(&path, "locking a user")).await?;
        Ok(self.guard(subject, file, in_process))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(move |inner| inner.ping()).await
    }
}

/// A held user lock: the locked `.refresh` file (released on drop, or by the OS if the process dies) and the
/// in-process mutex. Writes through it take the short per-write lock on the `.lock` file, a different file, so
/// the holder never waits on itself.
struct FileUserLock {
    store: FileStore,
    subject: Subject,
    _file: File,
    _in_process: KeyedGuard,
}

#[async_trait]
impl UserLock for FileUserLock {
    async fn get(&mut self) -> Result<Option<Credential>, StoreError> {
        self.store.get(&self.subject).await
    }

    async fn put(&mut self, credential: &Credential) -> Result<Credential, StoreError> {
        if credential.subject != self.subject {
            return Err(StoreError::Other(
                "a user lock can only write its own user's credential".to_owned(),
            ));
        }
        self.store.put(credential).await
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        // Every put was committed atomically; dropping closes the lock file (releasing it) and the mutex.
        drop(self);
        Ok(())
    }
}

/// Marks a user as being written by this process while it lives (see [`Inner::writing`]).
struct Writing<'a> {
    users: &'a Mutex<HashSet<String>>,
    hash: String,
}

impl<'a> Writing<'a> {
    fn start(users: &'a Mutex<HashSet<String>>, hash: &str) -> Writing<'a> {
        users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash.to_owned());
        Writing {
            users,
            hash: hash.to_owned(),
        }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_the_hex_sha256_of_the_subject() {
        assert_eq!(
            user_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_user_hash(&user_hash("110169484474386276334")));
        assert!(!is_user_hash("../etc/passwd"));
    }

    #[tokio::test]
    async fn filing_takes_a_landed_put_from_tentative_only_when_its_user_is_not_being_written() {
        use offline_access_domain::events::EventStore;
        use offline_access_domain::testkit::{NOW, canary_credential, event};
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), Arc::new(KeyRing::generate_ephemeral())).unwrap();
        let e = event("74", NOW);
        store
            .put_with(&canary_credential("74"), std::slice::from_ref(&e))
            .await
            .unwrap();
        let hash = user_hash("74");
        let entry = store.inner.outbox.tentative_dir().join(&hash);
        assert!(entry.exists());
        {
            // Another process writing the user holds its write lock (a second open file description here).
            let held = store.inner.write_lock(&hash).unwrap();
            assert_eq!(store.counts().await.unwrap().pending, 0, "not filed yet");
            assert!(entry.exists());
            drop(held);
        }
        {
            let _writing = Writing::start(&store.inner.writing, &hash);
            assert_eq!(
                store.counts().await.unwrap().pending,
                0,
                "nor while this process writes it"
            );
        }
        assert_eq!(store.counts().await.unwrap().pending, 1);
        assert!(!entry.exists());
        let claimed = store
            .claim_due(NOW, time::Duration::MINUTE, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].record, e);
    }

    #[test]
    fn the_sweep_leaves_the_tentative_entries_of_writes_in_progress_in_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), Arc::new(KeyRing::generate_ephemeral())).unwrap();
        let hash = user_hash("70");
        // What a write that stopped before its record leaves (unparseable: removed when settled).
        let entry = store.inner.outbox.tentative_dir().join(&hash);
        fs::write(&entry, b"{").unwrap();
        {
            let _writing = Writing::start(&store.inner.writing, &hash);
            store.inner.sweep_tentatives();
            assert!(entry.exists(), "a write in progress here is not settled");
        }
        store.inner.sweep_tentatives();
        assert!(!entry.exists(), "settled once the write is over");
    }

    #[tokio::test]
    async fn a_failed_write_removes_its_temp_file_and_leaves_the_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), Arc::new(KeyRing::generate_ephemeral())).unwrap();
        let hash = user_hash("someone");
        // The rename cannot replace a non-empty directory: the write fails after the temp file was written.
        let target = store.inner.credential_path(&hash);
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"old").unwrap();
        let err = store
            .inner
            .write_atomic(&hash, b"{}", || Ok(()))
            .unwrap_err();
        assert!(matches!(err, StoreError::Other(_)), "{err}");
        assert_eq!(fs::read(target.join("keep")).unwrap(), b"old");
        let mut names: Vec<_> = fs::read_dir(&store.inner.credentials)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [format!("{hash}.json")], "no temp file left");
    }
}
