//! [`FileStore`]: the credential store port on a local directory.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use aws_lc_rs::digest::{SHA256, digest};
use offline_access_crypto::KeyRing;
use offline_access_domain::{
    ConsentState, Credential, CredentialPage, CredentialStore, StoreError, Subject, UserLock,
};

use crate::keyed::{KeyedGuard, KeyedMutex};
use crate::record::{Record, RecordHead};

/// Subdirectory holding one `<sha256(subject)>.json` per user (and short-lived temp files).
const CREDENTIALS_DIR: &str = "credentials";
/// Subdirectory holding one `<hash>` per deleted user without a record now: the deleted record's last version.
const TOMBSTONES_DIR: &str = "tombstones";
/// Subdirectory holding an empty `<hash>` marker per pending revocation (the index `pending_revocations` reads).
const PENDING_DIR: &str = "pending";
/// Subdirectory holding the empty per-user lock files.
const LOCKS_DIR: &str = "locks";
/// Prefix of temp files (`.tmp.<hash>.<random>`), written then renamed over the user's file.
const TMP_PREFIX: &str = ".tmp.";
/// Prefix of the probe files `ping` writes.
const PING_PREFIX: &str = ".ping.";
/// A credential file is a few KiB; anything far larger is not ours.
const MAX_FILE_LEN: u64 = 1024 * 1024;
/// A tombstone holds one decimal `u64` and a newline.
const MAX_TOMBSTONE_LEN: u64 = 32;

/// A [`CredentialStore`] keeping one encrypted JSON file per user in a local directory.
///
/// - Layout: `<dir>/credentials/<hex sha256(subject)>.json` (mode 0600), `<dir>/tombstones/<hash>` (the last
///   version of a deleted record, so versions never repeat), `<dir>/pending/<hash>` (an empty marker per pending
///   revocation), and `<dir>/locks/<hash>.lock`, `<dir>/locks/<hash>.refresh` (empty lock files). Directories are
///   created with mode 0700.
/// - Tokens are sealed with the [`KeyRing`] (AES-256-GCM, AAD = subject + field); the other fields are in clear.
/// - Writes are atomic (temp file with `O_EXCL`, write, fsync, rename, fsync of the directory) and run under an
///   exclusive lock on the user's `.lock` file, where the version check happens: two processes cannot both win.
/// - Listings sort the file names (user hashes) and read only the records of the page; the cursor is the last
///   hash the page examined. `pending_revocations` lists the markers' names and reads only their records.
/// - [`CredentialStore::lock_user`] holds an exclusive lock on the user's `.refresh` file (and an in-process mutex),
///   so one process on this host refreshes a user at a time; the OS frees it if the holder dies.
///
/// The directory must be on a local filesystem (advisory `flock` locks).
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    credentials: PathBuf,
    tombstones: PathBuf,
    pending: PathBuf,
    locks: PathBuf,
    keys: Arc<KeyRing>,
    refresh_locks: Arc<KeyedMutex>,
    /// How many times a credential file was opened for reading (for tests of the listing's cost).
    record_reads: AtomicU64,
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

/// Runs blocking file I/O off the async runtime.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Other(format!("file store task failed: {e}")))?
}

/// Maps an I/O error: a vanished directory or a stale/timed-out mount is "unavailable"; disk full, permission
/// denied, read-only and the rest are "other". The message names the operation, never file contents.
fn io_error(what: &str, e: &io::Error) -> StoreError {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::TimedOut | ErrorKind::StaleNetworkFileHandle => {
            StoreError::Unavailable(format!("{what}: {e}"))
        }
        _ => StoreError::Other(format!("{what}: {e}")),
    }
}

/// The file name stem of a user: hex SHA-256 of the subject.
fn user_hash(subject: &str) -> String {
    hex::encode(digest(&SHA256, subject.as_bytes()))
}

fn is_user_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
fn hashes_after(dir: &Path, suffix: &str, cursor: Option<&str>) -> Result<Vec<String>, StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error("listing the store directory", &e))?;
    let mut hashes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing the store directory", &e))?;
        let name = entry.file_name();
        if let Some(hash) = name.to_str().and_then(|n| n.strip_suffix(suffix))
            && is_user_hash(hash)
            && cursor.is_none_or(|after| hash > after)
        {
            hashes.push(hash.to_owned());
        }
    }
    hashes.sort_unstable();
    Ok(hashes)
}

fn random_hex() -> Result<String, StoreError> {
    random_hex_io().map_err(|_| StoreError::Other("the random number generator failed".to_owned()))
}

fn random_hex_io() -> io::Result<String> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| io::Error::other("the random number generator failed"))?;
    Ok(hex::encode(bytes))
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)
}

/// Options for a new file readable and writable by the owner only.
fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Makes a rename or removal in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Removes a file; there being none is fine.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Writes `bytes` to a new file `tmp` (`O_EXCL`, 0600), syncs it and renames it to `target`.
fn write_then_rename(tmp: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = private_file_options()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, target)
}

/// Writes `bytes` to `target` atomically: a temp file `.tmp.<hash>.<random>` in `dir` (the target's directory),
/// fsync, rename, fsync of `dir`. On a failure before the rename the temp file is removed and `target` is
/// untouched.
fn write_atomic_in(dir: &Path, hash: &str, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{hash}.{}", random_hex_io()?));
    if let Err(e) = write_then_rename(&tmp, target, bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Opens (creating if needed) an empty lock file. Lock files are never deleted: removing a lock file that
/// another process holds would let a third one lock a new file of the same name.
fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    private_file_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error("opening a lock file", &e))
}

impl FileStore {
    /// Opens (creating with mode 0700 if needed) a store in `dir`, sealing tokens with `keys`. Removes temp files
    /// left by a crashed writer (their user's file is untouched: a write only lands by rename).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Other`] when the directory cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>, keys: Arc<KeyRing>) -> Result<FileStore, StoreError> {
        let store = Self::open_without_sweep(dir.into(), keys)?;
        store.inner.clean_stale_temp_files()?;
        Ok(store)
    }

    /// As [`FileStore::open`], but removes crashed writers' temp files on a background thread instead of before
    /// returning, so start-up does not list a directory of every user (the sweep leaves alone any temp file whose
    /// writer holds its lock, so it is safe next to live writes). For servers; tests that need the sweep done use
    /// [`FileStore::open`].
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
                if let Err(e) = inner.clean_stale_temp_files() {
                    tracing::warn!(error = %e, "could not sweep temp files left by interrupted writes");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the temp-file sweep; sweeping now");
            store.inner.clean_stale_temp_files()?;
        }
        Ok(store)
    }

    fn open_without_sweep(root: PathBuf, keys: Arc<KeyRing>) -> Result<FileStore, StoreError> {
        let credentials = root.join(CREDENTIALS_DIR);
        let tombstones = root.join(TOMBSTONES_DIR);
        let pending = root.join(PENDING_DIR);
        let locks = root.join(LOCKS_DIR);
        for path in [&root, &credentials, &tombstones, &pending, &locks] {
            create_private_dir(path).map_err(|e| {
                io_error(&format!("creating store directory {}", path.display()), &e)
            })?;
        }
        let store = FileStore {
            inner: Arc::new(Inner {
                root,
                credentials,
                tombstones,
                pending,
                locks,
                keys,
                refresh_locks: Arc::default(),
                record_reads: AtomicU64::new(0),
            }),
        };
        Ok(store)
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
        let file = blocking(move || {
            let file = open_lock_file(&path)?;
            match file.try_lock() {
                Ok(()) => Ok(Some(file)),
                Err(fs::TryLockError::WouldBlock) => Ok(None),
                Err(fs::TryLockError::Error(e)) => Err(io_error("locking a user", &e)),
            }
        })
        .await?;
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
    fn credential_path(&self, hash: &str) -> PathBuf {
        self.credentials.join(format!("{hash}.json"))
    }

    fn tombstone_path(&self, hash: &str) -> PathBuf {
        self.tombstones.join(hash)
    }

    fn pending_path(&self, hash: &str) -> PathBuf {
        self.pending.join(hash)
    }

    fn write_lock_path(&self, hash: &str) -> PathBuf {
        self.locks.join(format!("{hash}.lock"))
    }

    fn refresh_lock_path(&self, hash: &str) -> PathBuf {
        self.locks.join(format!("{hash}.refresh"))
    }

    /// Takes the user's write lock (blocking); released when the returned file is dropped.
    fn write_lock(&self, hash: &str) -> Result<File, StoreError> {
        let file = open_lock_file(&self.write_lock_path(hash))?;
        file.lock()
            .map_err(|e| io_error("locking a credential for writing", &e))?;
        Ok(file)
    }

    /// Reads a user's file; `None` if there is none.
    fn read_file(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.record_reads.fetch_add(1, Ordering::Relaxed);
        let file = match File::open(self.credential_path(hash)) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("opening a credential file", &e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error("reading a credential file", &e))?;
        Ok(Some(bytes))
    }

    /// Parses a user's file and checks it belongs to the file name's user. `who` names the user in errors.
    fn parse_record(&self, hash: &str, bytes: &[u8], who: &str) -> Result<Record, StoreError> {
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

    fn open_record(&self, record: &Record) -> Result<Credential, StoreError> {
        record
            .open(&self.keys)
            .map_err(|reason| StoreError::Corrupt {
                subject: record.subject.clone(),
                reason,
            })
    }

    fn get(&self, subject: &Subject) -> Result<Option<Credential>, StoreError> {
        let hash = user_hash(subject.as_str());
        let Some(bytes) = self.read_file(&hash)? else {
            return Ok(None);
        };
        let record = self.parse_record(&hash, &bytes, subject.as_str())?;
        self.open_record(&record).map(Some)
    }

    /// The last version of the user's deleted record, if the user has a tombstone (the caller holds the write
    /// lock). An unreadable tombstone is an error: guessing could repeat a version.
    fn read_tombstone(&self, hash: &str, who: &str) -> Result<Option<u64>, StoreError> {
        let file = match File::open(self.tombstone_path(hash)) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("opening a tombstone", &e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_TOMBSTONE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error("reading a tombstone", &e))?;
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

    fn put(&self, credential: &Credential) -> Result<Credential, StoreError> {
        let hash = user_hash(credential.subject.as_str());
        let _lock = self.write_lock(&hash)?;
        // A corrupt or undecryptable file fails here: it is never overwritten (only `delete` removes it).
        let stored = self.get(&credential.subject)?;
        if stored.as_ref().map_or(0, |c| c.version) != credential.version {
            return Err(StoreError::Conflict);
        }
        // Versions never repeat: a first write starts above the last version of a deleted record.
        let tombstone = match &stored {
            Some(_) => None,
            None => self.read_tombstone(&hash, credential.subject.as_str())?,
        };
        let floor = stored
            .as_ref()
            .map_or(tombstone.unwrap_or(0), |c| c.version);
        let mut next = credential.clone();
        if next.refresh_token.is_none() {
            next.refresh_token = stored.and_then(|c| c.refresh_token);
        }
        next.version = floor.checked_add(1).ok_or(StoreError::Conflict)?;
        // The index entry exists before the forgotten record does, so a listing never misses it.
        if next.is_forgotten() {
            self.mark_pending(&hash)?;
        }
        self.write_record(&hash, &next)?;
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
        Ok(next)
    }

    /// Seals and writes a credential as it is (the caller holds the write lock).
    fn write_record(&self, hash: &str, credential: &Credential) -> Result<(), StoreError> {
        let record = Record::seal(credential, &self.keys)
            .map_err(|e| StoreError::Other(format!("sealing the credential: {e}")))?;
        let bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| StoreError::Other(format!("encoding the credential: {e}")))?;
        self.write_atomic(hash, &bytes)
    }

    /// Temp file (`O_EXCL`, 0600) in the same directory, write, fsync, rename over the user's file, fsync the
    /// directory. On any failure before the rename the temp file is removed and the old file is untouched.
    fn write_atomic(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic_in(&self.credentials, hash, &self.credential_path(hash), bytes)
            .map_err(|e| io_error("writing a credential file", &e))
    }

    /// Deletes the record if its version is `version`. Reads only the version (in clear), so a record sealed
    /// under a key that is no longer configured can be deleted too. The tombstone is durable before the record
    /// is removed: after a crash either the record is there or the tombstone is.
    fn delete(&self, subject: &Subject, version: u64) -> Result<(), StoreError> {
        let hash = user_hash(subject.as_str());
        let _lock = self.write_lock(&hash)?;
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
        self.write_tombstone(&hash, version)?;
        remove_if_present(&self.credential_path(&hash))
            .map_err(|e| io_error("deleting a credential file", &e))?;
        sync_dir(&self.credentials).map_err(|e| io_error("syncing the store directory", &e))?;
        self.unmark_pending(&hash);
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
        let _lock = self.write_lock(hash)?;
        let Some(bytes) = self.read_file(hash)? else {
            return Ok(false);
        };
        let record = self.parse_record(hash, &bytes, &format!("file {hash}.json"))?;
        if !record.needs_reencryption(&self.keys) {
            return Ok(false);
        }
        let credential = self.open_record(&record)?;
        self.write_record(hash, &credential)?;
        Ok(true)
    }

    /// Removes temp files of crashed writers (of records and of tombstones) and `ping` probes. A temp file whose
    /// user's write lock is held belongs to a live writer (another process) and is left alone.
    fn clean_stale_temp_files(&self) -> Result<(), StoreError> {
        for dir in [&self.credentials, &self.tombstones] {
            self.clean_stale_temp_files_in(dir)?;
        }
        Ok(())
    }

    fn clean_stale_temp_files_in(&self, dir: &Path) -> Result<(), StoreError> {
        let entries = fs::read_dir(dir).map_err(|e| io_error("listing the store directory", &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("listing the store directory", &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(PING_PREFIX) {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(rest) = name.strip_prefix(TMP_PREFIX) else {
                continue;
            };
            let Some((hash, _)) = rest.split_once('.') else {
                continue;
            };
            if !is_user_hash(hash) {
                continue;
            }
            let lock = open_lock_file(&self.write_lock_path(hash))?;
            if lock.try_lock().is_ok() {
                tracing::info!(
                    file = name,
                    "removing a temp file left by an interrupted write"
                );
                let _ = fs::remove_file(entry.path());
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
            .join(format!("{PING_PREFIX}{}", random_hex()?));
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
        let inner = Arc::clone(&self.inner);
        let subject = subject.clone();
        blocking(move || inner.get(&subject)).await
    }

    async fn put(&self, credential: &Credential) -> Result<Credential, StoreError> {
        let inner = Arc::clone(&self.inner);
        let credential = credential.clone();
        blocking(move || inner.put(&credential)).await
    }

    async fn delete(&self, subject: &Subject, version: u64) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        let subject = subject.clone();
        blocking(move || inner.delete(&subject, version)).await
    }

    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.list(cursor, limit)).await
    }

    async fn pending_revocations(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.pending_revocations(cursor, limit)).await
    }

    async fn lock_user(&self, subject: &Subject) -> Result<Box<dyn UserLock>, StoreError> {
        let hash = user_hash(subject.as_str());
        // One waiter per user per process on the file lock; the others wait here without holding a thread.
        let in_process = self.inner.refresh_locks.lock(&hash).await;
        let path = self.inner.refresh_lock_path(&hash);
        let file = blocking(move || {
            let file = open_lock_file(&path)?;
            file.lock().map_err(|e| io_error("locking a user", &e))?;
            Ok(file)
        })
        .await?;
        Ok(self.guard(subject, file, in_process))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.ping()).await
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

    #[test]
    fn disk_full_and_permission_errors_are_other_and_a_vanished_directory_is_unavailable() {
        for kind in [
            ErrorKind::StorageFull,
            ErrorKind::PermissionDenied,
            ErrorKind::ReadOnlyFilesystem,
        ] {
            assert!(matches!(
                io_error("writing", &io::Error::from(kind)),
                StoreError::Other(_)
            ));
        }
        assert!(matches!(
            io_error("writing", &io::Error::from(ErrorKind::NotFound)),
            StoreError::Unavailable(_)
        ));
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
        let err = store.inner.write_atomic(&hash, b"{}").unwrap_err();
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
