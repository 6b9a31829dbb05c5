//! The RISC `jti` register of the file store: one small file per `jti` seen, so a Security Event Token that Google
//! sends again is acted on once, across every process sharing the directory and across restarts.
//!
//! ```text
//! risc/
//!   lock                  flock'd by `first_sight` and `unsee` (every process sharing the directory)
//!   jti/<hex sha256(jti)> "<first seen, unix nanoseconds>\n" (the jti itself is not kept)
//!   .tmp.*                an entry being written
//! ```
//!
//! `first_sight` holds the register's lock while it checks the entry and writes it (temp, fsync, rename, fsync of
//! `jti/`), so of concurrent calls for one `jti` exactly one finds no entry (or an expired one) and gets `true`.
//! Entries older than `keep_for` are replaced when seen again, and swept: at most every ten minutes (of the
//! callers' clock) per process, at most 4,096 entries examined per sweep, so no call does unbounded work.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use offline_access_domain::StoreError;
use time::OffsetDateTime;

use crate::fsio::{
    hex_sha256, io_error, is_hex_digest, lock_exclusive, read_small, remove_if_present,
    remove_temp_files, replace_file, sync_dir, try_lock_exclusive,
};
use crate::store::Inner;

/// How often (seconds of the callers' clock) one process sweeps expired entries.
const PURGE_INTERVAL_SECS: i64 = 600;
/// How many entries one sweep examines at most.
const PURGE_AT_MOST: usize = 4096;
/// An entry holds one number.
const MAX_ENTRY_LEN: u64 = 64;

/// The register's directories and lock file.
pub(crate) struct RiscDirs {
    root: PathBuf,
    jti: PathBuf,
    lock: PathBuf,
}

impl RiscDirs {
    /// The register under `root` (nothing is created).
    pub(crate) fn new(root: &Path) -> RiscDirs {
        RiscDirs {
            root: root.to_owned(),
            jti: root.join("jti"),
            lock: root.join("lock"),
        }
    }

    /// Its directories, parent first.
    pub(crate) fn dirs(&self) -> [&PathBuf; 2] {
        [&self.root, &self.jti]
    }
}

/// Whether an entry first seen at `seen` (unix nanoseconds) is still kept at `now`.
fn kept(seen: i128, now: OffsetDateTime, keep_for: time::Duration) -> bool {
    seen.saturating_add(keep_for.whole_nanoseconds()) > now.unix_timestamp_nanos()
}

/// When an entry was first seen; `None` for an entry that cannot be read (treated as expired: replaced).
fn parse_seen(bytes: &[u8]) -> Option<i128> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

impl Inner {
    fn jti_path(&self, jti: &str) -> PathBuf {
        self.risc.jti.join(hex_sha256(jti))
    }

    /// Registers `jti` (see the module's documentation).
    pub(crate) fn first_sight(
        &self,
        jti: &str,
        now: OffsetDateTime,
        keep_for: time::Duration,
    ) -> Result<bool, StoreError> {
        let _lock = lock_exclusive(&self.risc.lock, "locking the jti register")?;
        self.purge_jtis(now, keep_for);
        let path = self.jti_path(jti);
        let existing = read_small(&path, MAX_ENTRY_LEN)
            .map_err(|e| io_error("reading the jti register", &e))?;
        if existing
            .as_deref()
            .and_then(parse_seen)
            .is_some_and(|seen| kept(seen, now, keep_for))
        {
            return Ok(false);
        }
        let entry = format!("{}\n", now.unix_timestamp_nanos());
        replace_file(&self.risc.root, "jti", &path, entry.as_bytes())
            .and_then(|()| sync_dir(&self.risc.jti))
            .map_err(|e| io_error("writing the jti register", &e))?;
        Ok(true)
    }

    /// Forgets `jti`, so that it is new again.
    pub(crate) fn unsee(&self, jti: &str) -> Result<(), StoreError> {
        let _lock = lock_exclusive(&self.risc.lock, "locking the jti register")?;
        remove_if_present(&self.jti_path(jti))
            .map_err(|e| io_error("updating the jti register", &e))
    }

    /// Removes expired entries, bounded (see the module's documentation). The caller holds the register's lock.
    /// Failures are logged: an expired entry left is replaced when its `jti` is seen again.
    fn purge_jtis(&self, now: OffsetDateTime, keep_for: time::Duration) {
        let now_secs = now.unix_timestamp();
        if now_secs < self.next_jti_purge.load(Ordering::Relaxed) {
            return;
        }
        self.next_jti_purge.store(
            now_secs.saturating_add(PURGE_INTERVAL_SECS),
            Ordering::Relaxed,
        );
        let entries = match fs::read_dir(&self.risc.jti) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "could not sweep the jti register");
                return;
            }
        };
        for entry in entries.take(PURGE_AT_MOST).flatten() {
            let path = entry.path();
            if !entry.file_name().to_str().is_some_and(is_hex_digest) {
                continue;
            }
            let expired = match read_small(&path, MAX_ENTRY_LEN) {
                Ok(Some(bytes)) => parse_seen(&bytes).is_none_or(|seen| !kept(seen, now, keep_for)),
                Ok(None) | Err(_) => false,
            };
            if expired && let Err(e) = remove_if_present(&path) {
                tracing::warn!(error = %e, "could not remove an expired jti");
            }
        }
    }

    /// Removes temp files of the register if no `first_sight` is running.
    pub(crate) fn clean_risc_temp_files(&self) -> Result<(), StoreError> {
        if let Some(_lock) = try_lock_exclusive(&self.risc.lock, "locking the jti register")? {
            remove_temp_files(&self.risc.root)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_entry_is_kept_for_keep_for_and_an_unreadable_one_is_not() {
        let seen = datetime!(2026-12-06 10:00 UTC);
        let keep = time::Duration::days(7);
        let at =
            |t: OffsetDateTime| parse_seen(format!("{}\n", t.unix_timestamp_nanos()).as_bytes());
        let stored = at(seen).unwrap();
        assert!(kept(stored, seen + keep - time::Duration::NANOSECOND, keep));
        assert!(!kept(stored, seen + keep, keep));
        assert_eq!(parse_seen(b"12x"), None);
        assert_eq!(parse_seen(b""), None);
    }
}
