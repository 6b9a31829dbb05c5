//! The refresh-token index of the file store: RISC names a refresh token by its prefix or a double SHA-512 hash;
//! [`offline_access_domain::risc::index_keys`] turns a token into one hex SHA-256 key for each, and the store keeps
//! an empty entry per (key, user) so that `find_by_refresh_token` lists one small directory instead of reading
//! records.
//!
//! ```text
//! tokens/
//!   <k>/<index key>.<hash>    empty, mode 0600: the user <hash> holds (or held) a refresh token with this key;
//!                             <k> is the key's first hex digit: 16 directories, made by `open`
//!   .indexed-2                empty: every record's entries were built in this layout (once, at open: after an
//!                             upgrade from a version without the index or with a directory per key, or when
//!                             `tokens/` was lost)
//! ```
//!
//! - A write whose refresh token changes creates the new token's entries **before** the record holds it (and syncs
//!   their directories), and removes the old token's entries after; a write that keeps the token does nothing
//!   (the record's `token_index` says its entries exist). A delete removes its entries after the record.
//! - So an entry exists whenever a record holds its token; a crash can leave a stale entry (a token being or
//!   having been replaced): the lookup returns only users whose record's `token_index` has the key (a record
//!   from before the index, without `token_index`, is returned unchecked; the caller compares tokens anyway).
//! - An entry is a second name of the user's (empty) write-lock file, so it costs a directory entry, not an inode.
//!   The 16 shard directories are kept open and their syncs shared by concurrent writes ([`DirSync`]), so a burst
//!   of sign-ins syncs each shard once; a lookup lists one shard (a sixteenth of the entries). The previous
//!   layout, a directory per key (`tokens/<index key>/<hash>`), cost two `mkdir`s and two unshared directory
//!   `fsync`s per new token — the largest part of a file-store sign-in's CPU on ext4 without a journal.
//! - Neither the token nor its prefix is on disk in clear: only digests, and the user's hash.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use offline_access_domain::risc::index_keys;
use offline_access_domain::{StoreError, Subject};

use crate::fsio::{
    DirSync, create_private_dir_once, create_synced, io_error, is_hex_digest, link_or_create_empty,
    remove_if_present, sorted_names, sync_dir,
};
use crate::record::RecordHead;
use crate::store::{Inner, hashes_after, user_hash};

/// Written once every record has its entries in this layout.
const INDEXED_MARKER: &str = ".indexed-2";
/// The marker of the previous layout (a directory per key), removed with it.
const PREVIOUS_MARKER: &str = ".indexed";

/// The shards' names: one hex digit each.
const SHARDS: [&str; 16] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f",
];

/// The shard of `key` (a validated hex digest): its first hex digit's position in [`SHARDS`].
fn shard_index(key: &str) -> usize {
    key.bytes()
        .next()
        .and_then(|b| (b as char).to_digit(16))
        .map_or(0, |d| d as usize)
}

/// The shard directory of `key`: `tokens/<first hex digit>`.
fn shard_of(tokens: &Path, key: &str) -> PathBuf {
    tokens.join(SHARDS[shard_index(key)])
}

/// Makes the shard directories under `tokens` (durably, the first time) and opens them for shared syncs.
pub(crate) fn open_index_shards(tokens: &Path) -> Result<Vec<DirSync>, StoreError> {
    let fail = |e: &std::io::Error| io_error("opening the refresh-token index", e);
    let mut made = false;
    for shard in SHARDS {
        made |= create_private_dir_once(&tokens.join(shard)).map_err(|e| fail(&e))?;
    }
    if made {
        sync_dir(tokens).map_err(|e| fail(&e))?;
    }
    SHARDS
        .iter()
        .map(|shard| DirSync::open(&tokens.join(shard)).map_err(|e| fail(&e)))
        .collect()
}

impl Inner {
    /// Creates the user's entries for `keys` (not synced: see [`Inner::sync_index_shards`]).
    pub(crate) fn add_index_entries(&self, hash: &str, keys: &[String]) -> Result<(), StoreError> {
        let fail = |e: &std::io::Error| io_error("writing the refresh-token index", e);
        let like = self.write_lock_path(hash);
        for key in keys {
            if !is_hex_digest(key) {
                return Err(StoreError::Other(
                    "a refresh-token index key is not a hex SHA-256".to_owned(),
                ));
            }
            let entry = shard_of(&self.tokens, key).join(format!("{key}.{hash}"));
            link_or_create_empty(&like, &entry).map_err(|e| fail(&e))?;
        }
        Ok(())
    }

    /// Syncs the shards that the entries for `keys` are in, each once (shared with concurrent writes).
    pub(crate) fn sync_index_shards(&self, keys: &[String]) -> std::io::Result<()> {
        let mut shards: Vec<usize> = keys.iter().map(|key| shard_index(key)).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
            .into_iter()
            .filter_map(|shard| self.index_shards.get(shard))
            .try_for_each(DirSync::sync)
    }

    /// Removes the user's entries for `keys`. Failures are logged: a stale entry is harmless.
    pub(crate) fn remove_index_entries(&self, hash: &str, keys: &[String]) {
        for key in keys.iter().filter(|k| is_hex_digest(k)) {
            let entry = shard_of(&self.tokens, key).join(format!("{key}.{hash}"));
            if let Err(e) = remove_if_present(&entry) {
                tracing::warn!(error = %e, "could not remove a stale refresh-token index entry");
            }
        }
    }

    /// The users with an entry under `key` whose record still has that key (see the module's documentation).
    pub(crate) fn find_by_refresh_token(&self, key: &str) -> Result<Vec<Subject>, StoreError> {
        if !is_hex_digest(key) {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        let of_key = |name: &str| {
            name.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('.'))
                .filter(|hash| is_hex_digest(hash))
                .map(str::to_owned)
        };
        let names = sorted_names(&shard_of(&self.tokens, key), |n| of_key(n).is_some())?;
        for hash in names.iter().filter_map(|n| of_key(n)) {
            let Some(bytes) = self.read_file_uncounted(&hash)? else {
                continue; // deleted
            };
            let head = match RecordHead::parse(&bytes) {
                Ok(head) => head,
                Err(reason) => {
                    tracing::warn!(file = %self.credential_path(&hash).display(), %reason, "an indexed record cannot be read");
                    continue;
                }
            };
            let Some(subject) = head.subject.filter(|s| user_hash(s) == hash) else {
                continue;
            };
            if head
                .token_index
                .is_some_and(|keys| !keys.iter().any(|k| k == key))
            {
                continue; // a stale entry: the token was replaced
            }
            if let Ok(subject) = Subject::parse(&subject) {
                found.push(subject);
            }
        }
        Ok(found)
    }

    /// Once per store directory (while `tokens/.indexed-2` is missing: after an upgrade, or if `tokens/` was lost):
    /// gives every record its entries — from its `token_index`, or for a record written before the index existed,
    /// from its decrypted token under the user's write lock — then writes `tokens/.indexed-2`. A record that does
    /// not decrypt (a key no longer configured) is logged and left out: its token cannot be used anyway.
    pub(crate) fn index_existing_records(&self) -> Result<(), StoreError> {
        let marker = self.tokens.join(INDEXED_MARKER);
        if marker.exists() {
            return Ok(());
        }
        let mut indexed = 0usize;
        for hash in hashes_after(&self.credentials, ".json", None)? {
            let head = |bytes: Option<Vec<u8>>| bytes.and_then(|b| RecordHead::parse(&b).ok());
            let Some(found) = head(self.read_file_uncounted(&hash)?) else {
                continue; // gone, or unreadable (reported by listings)
            };
            if let Some(keys) = found.token_index {
                // A stale entry (the token changing meanwhile) is harmless.
                self.add_index_entries(&hash, &keys)?;
                indexed += 1;
                continue;
            }
            let _lock = self.write_lock(&hash)?;
            let Some(bytes) = self.read_file_uncounted(&hash)? else {
                continue;
            };
            let who = format!("file {hash}.json");
            let keys = self.parse_record(&hash, &bytes, &who).and_then(|record| {
                match record.token_index {
                    Some(keys) => Ok(keys), // written meanwhile
                    None => self.open_record(&record).map(|credential| {
                        credential
                            .refresh_token
                            .as_ref()
                            .map(index_keys)
                            .unwrap_or_default()
                    }),
                }
            });
            match keys {
                Ok(keys) => {
                    self.add_index_entries(&hash, &keys)?;
                    indexed += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a record cannot be indexed by its refresh token");
                }
            }
        }
        let fail = |e: &std::io::Error| io_error("writing the refresh-token index", e);
        // The entries (made without syncs) are durable before the marker says so.
        for shard in &self.index_shards {
            shard.sync().map_err(|e| fail(&e))?;
        }
        sync_dir(&self.tokens).map_err(|e| fail(&e))?;
        match create_synced(&marker, b"") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(&e)),
        }
        sync_dir(&self.tokens).map_err(|e| fail(&e))?;
        self.remove_previous_index_layout()?;
        if indexed > 0 {
            tracing::info!(records = indexed, "built the refresh-token index");
        }
        Ok(())
    }

    /// Removes the previous layout's directories (`tokens/<index key>/`) and marker, once the current layout is
    /// complete.
    fn remove_previous_index_layout(&self) -> Result<(), StoreError> {
        let fail = |e: &std::io::Error| io_error("removing the previous refresh-token index", e);
        for key in sorted_names(&self.tokens, is_hex_digest)? {
            match fs::remove_dir_all(self.tokens.join(key)) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(fail(&e)),
                _ => {}
            }
        }
        remove_if_present(&self.tokens.join(PREVIOUS_MARKER)).map_err(|e| fail(&e))
    }
}
