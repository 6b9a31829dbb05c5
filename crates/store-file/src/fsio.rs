//! File-system helpers shared by the credential files, the outbox, the token index and the `jti` register:
//! private files and directories, atomic replacement, directory syncs, lock files, small reads, error mapping.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::digest::{SHA256, digest};
use offline_access_domain::StoreError;

/// Prefix of temp files (`.tmp.<hash>.<random>` or `.tmp.<random>`), written then renamed into place.
pub(crate) const TMP_PREFIX: &str = ".tmp.";

/// Runs blocking file I/O off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
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
pub(crate) fn io_error(what: &str, e: &io::Error) -> StoreError {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::TimedOut | ErrorKind::StaleNetworkFileHandle => {
            StoreError::Unavailable(format!("{what}: {e}"))
        }
        _ => StoreError::Other(format!("{what}: {e}")),
    }
}

/// Hex SHA-256 of `value`: the file name of a user (of its subject) or of a `jti`.
pub(crate) fn hex_sha256(value: &str) -> String {
    hex::encode(digest(&SHA256, value.as_bytes()))
}

/// Whether `s` is a lower-case hex SHA-256 (a user hash, an index key, a `jti` digest): safe as a file name.
pub(crate) fn is_hex_digest(s: &str) -> bool {
    is_lower_hex(s, 64)
}

/// Whether `s` is exactly `len` lower-case hex digits.
pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `bytes` random bytes from the system's CSPRNG, in hex.
pub(crate) fn random_hex_io(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf)
        .map_err(|_| io::Error::other("the random number generator failed"))?;
    Ok(hex::encode(buf))
}

/// As [`random_hex_io`], as a store error.
pub(crate) fn random_hex(bytes: usize) -> Result<String, StoreError> {
    random_hex_io(bytes)
        .map_err(|_| StoreError::Other("the random number generator failed".to_owned()))
}

#[cfg(unix)]
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(not(unix))]
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)
}

/// Options for a new file readable and writable by the owner only.
pub(crate) fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Makes a rename, creation or removal in `dir` durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// A directory kept open for syncing, with group commit: the renames, creations and removals that callers made
/// in it before they asked share one `fsync` when they arrive together.
///
/// Each caller counts its change (after making it) and then waits for a sync that *started* after that count:
/// either it runs one itself, or a sync that another caller began later covers it. So when [`DirSync::sync`]
/// returns `Ok`, the caller's change is durable, as with its own `fsync` — one open and one `fsync` per burst of
/// concurrent writes instead of an open, an `fsync` and a close per write. The directory must not be replaced
/// under a running store (the file store's directories never are).
pub(crate) struct DirSync {
    /// The directory, opened once (`None` off Unix, where directories are not synced).
    dir: Option<File>,
    /// Changes counted so far.
    changes: AtomicU64,
    /// The count a successful sync covered (held while syncing, so one sync runs at a time).
    synced: Mutex<u64>,
}

impl DirSync {
    /// Opens `path` (a directory) for syncing.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        #[cfg(unix)]
        let dir = Some(File::open(path)?);
        #[cfg(not(unix))]
        let dir = {
            let _ = path;
            None
        };
        Ok(Self {
            dir,
            changes: AtomicU64::new(0),
            synced: Mutex::new(0),
        })
    }

    /// Makes every change the caller made in the directory before this call durable (see the type's
    /// documentation). On an error nothing is claimed: a later caller syncs again.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let mine = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        if *synced >= mine {
            return Ok(()); // a sync that started after this change succeeded meanwhile
        }
        // Every change counted up to here happened before the fsync below starts.
        let covered = self.changes.load(Ordering::SeqCst);
        if let Some(dir) = &self.dir {
            dir.sync_all()?;
        }
        *synced = covered;
        Ok(())
    }
}

impl std::fmt::Debug for DirSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirSync").finish_non_exhaustive()
    }
}

/// Removes a file; there being none is fine.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Creates the new file `path` (`O_EXCL`, 0600) holding `bytes`, synced. On a failure the file is removed.
///
/// `fdatasync` suffices: it writes the data and the metadata needed to read it back (the size and the blocks);
/// what it skips (timestamps) no reader uses. The name becomes durable with its directory's sync.
pub(crate) fn create_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create_then(path, bytes, File::sync_data)
}

/// As [`create_synced`] without the `fdatasync`.
pub(crate) fn create_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create_then(path, bytes, |_| Ok(()))
}

fn create_then(
    path: &Path,
    bytes: &[u8],
    finish: impl FnOnce(&File) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = private_file_options()
        .write(true)
        .create_new(true)
        .open(path)?;
    let written = file.write_all(bytes).and_then(|()| finish(&file));
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Overwrites the existing file `path` with `bytes` in place: one positioned write from offset 0, padded with
/// spaces to the file's current length, so no inode is allocated or freed and the file is never truncated (a
/// process killed around it leaves the old content or the new, whole). Only for JSON files (trailing spaces are
/// whitespace to a JSON reader) that have a durable copy elsewhere: without fsync a power loss may tear them.
pub(crate) fn overwrite_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    if bytes.len() >= len {
        return write_at_start(&mut file, bytes);
    }
    let mut padded = Vec::with_capacity(len);
    padded.extend_from_slice(bytes);
    padded.resize(len, b' ');
    write_at_start(&mut file, &padded)
}

#[cfg(unix)]
fn write_at_start(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, 0)
}

#[cfg(not(unix))]
fn write_at_start(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    file.write_all(bytes)
}

/// Writes `bytes` to `target` whole: a temp file `.tmp.<tag>.<random>` in `tmp_dir` (on the target's file
/// system), synced, renamed over `target`. The rename is not synced: callers sync the target's directory when
/// the rename itself must survive a power loss. On a failure the temp file is removed and `target` is untouched.
pub(crate) fn replace_file(
    tmp_dir: &Path,
    tag: &str,
    target: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    replace_file_after(tmp_dir, tag, target, bytes, || Ok(()))
}

/// [`replace_file`], running `before_rename` once the temp file is synced and before it is renamed (a failure there
/// removes the temp file and leaves `target` untouched).
fn replace_file_after(
    tmp_dir: &Path,
    tag: &str,
    target: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let tmp = tmp_dir.join(format!("{TMP_PREFIX}{tag}.{}", random_hex_io(8)?));
    create_synced(&tmp, bytes)?;
    crate::failpoint::hit("atomic:temp_synced");
    if let Err(e) = before_rename().and_then(|()| fs::rename(&tmp, target)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    crate::failpoint::hit("atomic:renamed");
    Ok(())
}

/// Writes `bytes` to `target` atomically and durably: [`replace_file`] with the temp file in `dir` (the target's
/// directory), then a sync of `dir`. After a crash at any point the old or the new file is there, whole.
pub(crate) fn write_atomic_in(
    dir: &Path,
    tag: &str,
    target: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    write_atomic_then(dir, tag, target, bytes, || Ok(()), || sync_dir(dir))
}

/// As [`write_atomic_in`], with the directory's sync shared with concurrent writers ([`DirSync`]), and
/// `before_rename` run once the temp file is synced (see [`replace_file_after`]): a write that must make other
/// names durable before its own lands syncs them there, after the temp file's sync — which on a journaled file
/// system has already committed them, so their syncs find nothing left to write.
pub(crate) fn write_atomic_grouped(
    dir: &Path,
    sync: &DirSync,
    tag: &str,
    target: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    write_atomic_then(dir, tag, target, bytes, before_rename, || sync.sync())
}

/// As [`write_atomic_grouped`], and the temp file also gets the name `link` (a hard link; a synced copy where
/// linking fails), made durable by `link_sync` **before** the rename: whenever `target` holds the new bytes, so does
/// `link`. The link is made before the temp file's `fdatasync`, so on a journaled file system that sync commits it
/// too and `link_sync` finds nothing left to write (a power cut before the sync may leave `link` torn, but then the
/// rename never happened). `before_rename` runs after that, as in [`write_atomic_grouped`]. A failure before the
/// rename removes the temp file and `link`; after it, `link` is left for the caller to settle (the write may have
/// landed).
pub(crate) fn write_atomic_linked(
    dir: &Path,
    sync: &DirSync,
    target: &Path,
    bytes: &[u8],
    link: &Path,
    link_sync: &DirSync,
    before_rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{}", random_hex_io(8)?));
    let mut file = private_file_options()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let mut linked = false;
    let durable = (|| {
        file.write_all(bytes)?;
        match fs::hard_link(&tmp, link) {
            Ok(()) => linked = true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(e),
            Err(_) => {
                create_synced(link, bytes)?;
                linked = true;
            }
        }
        crate::failpoint::hit("tentative:linked");
        file.sync_data()?;
        crate::failpoint::hit("atomic:temp_synced");
        link_sync.sync()?;
        crate::failpoint::hit("tentative:durable");
        before_rename()?;
        fs::rename(&tmp, target)
    })();
    drop(file);
    if let Err(e) = durable {
        if linked {
            let _ = fs::remove_file(link);
        }
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    crate::failpoint::hit("atomic:renamed");
    sync.sync()?;
    crate::failpoint::hit("atomic:durable");
    Ok(())
}

/// [`replace_file_after`] in `dir`, then `sync_dir` (which makes the rename durable).
fn write_atomic_then(
    dir: &Path,
    tag: &str,
    target: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce() -> io::Result<()>,
    sync_dir: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    replace_file_after(dir, tag, target, bytes, before_rename)?;
    sync_dir()?;
    crate::failpoint::hit("atomic:durable");
    Ok(())
}

/// Makes `entry`, a name whose content is never read, as a second name of the existing file `like` (a hard link:
/// no inode is allocated, which on a file system without a journal is most of a file's creation cost), or, where
/// linking fails (no `like`, a file system without hard links, too many links), as a new empty file (0600). An
/// existing `entry` is kept. (Index entries link to the user's empty lock file, due markers to their event file.)
pub(crate) fn link_or_create_empty(like: &Path, entry: &Path) -> io::Result<()> {
    match fs::hard_link(like, entry) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(_) => {}
    }
    private_file_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(entry)
        .map(drop)
}

/// Opens (creating if needed) an empty lock file. Lock files are never deleted: removing a lock file that
/// another process holds would let a third one lock a new file of the same name.
pub(crate) fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    private_file_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error("opening a lock file", &e))
}

/// Takes an exclusive `flock` on the lock file `path` (blocking); released when the file is dropped.
pub(crate) fn lock_exclusive(path: &Path, what: &str) -> Result<File, StoreError> {
    let file = open_lock_file(path)?;
    file.lock().map_err(|e| io_error(what, &e))?;
    Ok(file)
}

/// Takes an exclusive `flock` on `path` if it is free: `None` when another holder has it.
pub(crate) fn try_lock_exclusive(path: &Path, what: &str) -> Result<Option<File>, StoreError> {
    let file = open_lock_file(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(io_error(what, &e)),
    }
}

/// Reads a file of at most `max` bytes (one more is read, so a caller can tell a file that is too long); `None`
/// when there is no such file.
pub(crate) fn read_small(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// The names in `dir` that are UTF-8 and pass `keep`, sorted; an absent directory has none.
pub(crate) fn sorted_names(
    dir: &Path,
    mut keep: impl FnMut(&str) -> bool,
) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    each_name(dir, "listing a store directory", |name, _| {
        if keep(name) {
            names.push(name.to_owned());
        }
        Ok(())
    })?;
    names.sort_unstable();
    Ok(names)
}

/// Calls `each` with every UTF-8 name in `dir` and its entry, in the directory's order; an absent directory has
/// none. `doing` names the listing in errors.
pub(crate) fn each_name(
    dir: &Path,
    doing: &str,
    mut each: impl FnMut(&str, &fs::DirEntry) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(doing, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error(doing, &e))?;
        if let Some(name) = entry.file_name().to_str() {
            each(name, &entry)?;
        }
    }
    Ok(())
}

/// The stems of the names `<stem><suffix>` in `dir` whose stem is `valid` and comes after `cursor`, sorted.
pub(crate) fn stems_after(
    dir: &Path,
    suffix: &str,
    valid: impl Fn(&str) -> bool,
    cursor: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let names = sorted_names(dir, |name| {
        name.strip_suffix(suffix)
            .is_some_and(|stem| valid(stem) && cursor.is_none_or(|after| stem > after))
    })?;
    Ok(names
        .into_iter()
        .filter_map(|name| name.strip_suffix(suffix).map(str::to_owned))
        .collect())
}

/// Removes the temp files (`.tmp.*`) in `dir`. The caller makes sure no live writer uses them.
pub(crate) fn remove_temp_files(dir: &Path) -> Result<(), StoreError> {
    for name in sorted_names(dir, |n| n.starts_with(TMP_PREFIX))? {
        tracing::info!(
            file = name,
            "removing a temp file left by an interrupted write"
        );
        let _ = fs::remove_file(dir.join(name));
    }
    Ok(())
}

/// Creates the directory `path` (mode 0700, its parent must exist): `true` if it was created, `false` if it was
/// there already.
pub(crate) fn create_private_dir_once(path: &Path) -> io::Result<bool> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn an_overwrite_in_place_keeps_the_inode_and_pads_shorter_content_as_json_whitespace() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event.json");
        fs::write(&path, br#"{"state":"pending","attempts":0}"#).unwrap();
        let inode = fs::metadata(&path).unwrap().ino();
        overwrite_in_place(&path, br#"{"state":"delivered"}"#).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), r#"{"state":"pending","attempts":0}"#.len());
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value, serde_json::json!({"state": "delivered"}));
        overwrite_in_place(&path, br#"{"state":"failed","attempts":12345678}"#).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(value["attempts"], 12_345_678);
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(
            overwrite_in_place(&dir.path().join("absent"), b"{}")
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }

    /// The names in `dir`, sorted.
    fn names_in(dir: &Path) -> Vec<String> {
        sorted_names(dir, |_| true).unwrap()
    }

    #[test]
    fn before_rename_runs_after_the_temp_file_is_whole_and_before_the_target_changes() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DirSync::open(dir.path()).unwrap();
        let target = dir.path().join("user.json");
        fs::write(&target, b"old").unwrap();
        let linked = dir.path().join("linked");
        for with_link in [false, true] {
            let seen = std::cell::RefCell::new(Vec::new());
            let look = || {
                // The target is still the old file; the temp file holds the new bytes.
                let temps: Vec<Vec<u8>> = names_in(dir.path())
                    .iter()
                    .filter(|n| n.starts_with(TMP_PREFIX))
                    .map(|n| fs::read(dir.path().join(n)).unwrap())
                    .collect();
                seen.borrow_mut().push((fs::read(&target).unwrap(), temps));
                Ok(())
            };
            if with_link {
                write_atomic_linked(dir.path(), &sync, &target, b"new", &linked, &sync, look)
                    .unwrap();
                fs::remove_file(&linked).unwrap();
            } else {
                write_atomic_grouped(dir.path(), &sync, "t", &target, b"new", look).unwrap();
            }
            assert_eq!(
                seen.into_inner(),
                vec![(b"old".to_vec(), vec![b"new".to_vec()])]
            );
            assert_eq!(fs::read(&target).unwrap(), b"new");
            fs::write(&target, b"old").unwrap();
        }
        // A failure there leaves the target as it was and no temp file (nor link).
        let fail = || Err(io::Error::other("the index could not be synced"));
        assert!(write_atomic_grouped(dir.path(), &sync, "t", &target, b"new", fail).is_err());
        assert!(
            write_atomic_linked(dir.path(), &sync, &target, b"new", &linked, &sync, fail).is_err()
        );
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(names_in(dir.path()), ["user.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn an_entry_is_a_second_name_of_its_empty_file_or_a_new_empty_file_without_one() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let like = dir.path().join("user.lock");
        fs::write(&like, b"").unwrap();
        let linked = dir.path().join("linked");
        link_or_create_empty(&like, &linked).unwrap();
        assert_eq!(
            fs::metadata(&like).unwrap().ino(),
            fs::metadata(&linked).unwrap().ino()
        );
        // An existing entry is kept; without the file to link to, the entry is created empty.
        link_or_create_empty(&like, &linked).unwrap();
        let created = dir.path().join("created");
        link_or_create_empty(&dir.path().join("absent.lock"), &created).unwrap();
        let meta = fs::metadata(&created).unwrap();
        assert_eq!(meta.len(), 0);
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_ne!(meta.ino(), fs::metadata(&like).unwrap().ino());
    }

    #[test]
    fn concurrent_directory_syncs_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let sync = std::sync::Arc::new(DirSync::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let sync = std::sync::Arc::clone(&sync);
                let path = dir.path().to_owned();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        fs::write(path.join(format!("{t}.{i}")), b"x").unwrap();
                        sync.sync().unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(sync.changes.load(Ordering::SeqCst), 160);
        // The caller that counted the last change returned only once a sync covering it had succeeded.
        assert_eq!(*sync.synced.lock().unwrap(), 160);
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
}
