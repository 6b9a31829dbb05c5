//! Per-user Drive state: the application data folder, its files and resumable upload sessions.
//!
//! Locks are fine-grained: one `RwLock` over the map of users (held only to find or insert a
//! user), one `Mutex` per user, and one per upload session. No lock is held across an await.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use aws_lc_rs::digest;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::query::Searchable;

/// The MIME type of folders.
pub(crate) const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
/// The name Drive gives the application data folder.
pub(crate) const APP_DATA_FOLDER_NAME: &str = "Application Data";
/// The largest file content the fake stores (bigger uploads get 413).
pub(crate) const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
/// The default storage quota per user (all contents and open upload sessions).
pub(crate) const DEFAULT_QUOTA_BYTES: usize = 512 * 1024 * 1024;
/// Open resumable sessions kept per user; opening more drops the oldest.
pub(crate) const MAX_SESSIONS_PER_USER: usize = 32;

/// Locks a mutex, recovering the data if another thread panicked while holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Random characters from the base64url alphabet, from aws-lc-rs's system RNG.
pub(crate) fn random_chars(count: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = vec![0u8; count];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The system RNG does not fail on supported platforms; fall back to the clock so that
        // ids stay distinct rather than panicking.
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (nanos >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
        }
    }
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b & 63)]))
        .collect()
}

/// A new file id shaped like Drive's current ones: `1` and 32 base64url characters.
pub(crate) fn new_file_id() -> String {
    format!("1{}", random_chars(32))
}

/// Formats Unix milliseconds as Drive does: `2026-11-24T21:47:00.000Z`.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let Ok(time) = OffsetDateTime::from_unix_timestamp(seconds) else {
        return "1970-01-01T00:00:00.000Z".to_owned();
    };
    let whole = time
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned());
    format!("{}.{millis:03}Z", whole.trim_end_matches('Z'))
}

/// A file (or sub-folder) in a user's application data folder.
#[derive(Debug, Clone)]
pub(crate) struct FileRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) mime_type: String,
    pub(crate) description: Option<String>,
    pub(crate) parents: Vec<String>,
    pub(crate) app_properties: BTreeMap<String, String>,
    pub(crate) properties: BTreeMap<String, String>,
    pub(crate) starred: bool,
    pub(crate) created_ms: i64,
    pub(crate) modified_ms: i64,
    pub(crate) version: u64,
    pub(crate) content: Bytes,
    pub(crate) md5: String,
    pub(crate) sha1: String,
    pub(crate) sha256: String,
    pub(crate) head_revision_id: String,
    pub(crate) original_filename: Option<String>,
    /// Creation order, for a stable default listing order.
    pub(crate) seq: u64,
}

impl FileRecord {
    /// Whether this is a folder.
    pub(crate) fn is_folder(&self) -> bool {
        self.mime_type == FOLDER_MIME
    }

    /// Whether `alt=media` may download it (folders and Docs types may not).
    pub(crate) fn is_downloadable(&self) -> bool {
        !self.mime_type.starts_with("application/vnd.google-apps.")
    }

    /// Replaces the content, updating checksums, revision and size.
    pub(crate) fn set_content(&mut self, content: Bytes) {
        self.md5 = super::md5::hex_digest(&content);
        self.sha1 = hex::encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &content));
        self.sha256 = hex::encode(digest::digest(&digest::SHA256, &content));
        self.head_revision_id = format!("0B{}", random_chars(40));
        self.content = content;
    }

    /// The full `File` resource (before `fields` filtering).
    pub(crate) fn to_json(&self) -> Value {
        let mut file = Map::new();
        file.insert("kind".into(), json!("drive#file"));
        file.insert("id".into(), json!(self.id));
        file.insert("name".into(), json!(self.name));
        file.insert("mimeType".into(), json!(self.mime_type));
        if let Some(description) = &self.description {
            file.insert("description".into(), json!(description));
        }
        file.insert("starred".into(), json!(self.starred));
        file.insert("trashed".into(), json!(false));
        file.insert("explicitlyTrashed".into(), json!(false));
        file.insert("parents".into(), json!(self.parents));
        if !self.properties.is_empty() {
            file.insert("properties".into(), json!(self.properties));
        }
        if !self.app_properties.is_empty() {
            file.insert("appProperties".into(), json!(self.app_properties));
        }
        file.insert("spaces".into(), json!(["appDataFolder"]));
        file.insert("version".into(), json!(self.version.to_string()));
        file.insert("createdTime".into(), json!(rfc3339_ms(self.created_ms)));
        file.insert("modifiedTime".into(), json!(rfc3339_ms(self.modified_ms)));
        file.insert(
            "modifiedByMeTime".into(),
            json!(rfc3339_ms(self.modified_ms)),
        );
        file.insert("modifiedByMe".into(), json!(true));
        file.insert("viewedByMe".into(), json!(true));
        file.insert("ownedByMe".into(), json!(true));
        file.insert("shared".into(), json!(false));
        file.insert("isAppAuthorized".into(), json!(true));
        file.insert("hasThumbnail".into(), json!(false));
        file.insert("thumbnailVersion".into(), json!("0"));
        file.insert("viewersCanCopyContent".into(), json!(true));
        file.insert("copyRequiresWriterPermission".into(), json!(false));
        file.insert("writersCanShare".into(), json!(true));
        file.insert("capabilities".into(), self.capabilities());
        let quota = if self.is_folder() {
            0
        } else {
            self.content.len()
        };
        file.insert("quotaBytesUsed".into(), json!(quota.to_string()));
        if !self.is_folder() && self.is_downloadable() {
            if let Some(original) = &self.original_filename {
                file.insert("originalFilename".into(), json!(original));
                if let Some((_, full)) = original.split_once('.') {
                    file.insert("fullFileExtension".into(), json!(full));
                }
                if let Some((_, extension)) = original.rsplit_once('.') {
                    file.insert("fileExtension".into(), json!(extension));
                }
            }
            file.insert("headRevisionId".into(), json!(self.head_revision_id));
            file.insert("md5Checksum".into(), json!(self.md5));
            file.insert("sha1Checksum".into(), json!(self.sha1));
            file.insert("sha256Checksum".into(), json!(self.sha256));
            file.insert("size".into(), json!(self.content.len().to_string()));
        }
        Value::Object(file)
    }

    fn capabilities(&self) -> Value {
        let folder = self.is_folder();
        json!({
            "canAddChildren": folder,
            "canChangeCopyRequiresWriterPermission": false,
            "canComment": false,
            "canCopy": !folder,
            "canDelete": true,
            "canDownload": self.is_downloadable(),
            "canEdit": true,
            "canListChildren": folder,
            "canModifyContent": true,
            "canMoveItemWithinDrive": true,
            "canReadRevisions": !folder,
            "canRemoveChildren": folder,
            "canRename": true,
            "canShare": false,
            "canTrash": false,
            "canUntrash": false,
        })
    }
}

impl Searchable for FileRecord {
    fn name(&self) -> &str {
        &self.name
    }
    fn mime_type(&self) -> &str {
        &self.mime_type
    }
    fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    fn content(&self) -> &[u8] {
        &self.content
    }
    fn starred(&self) -> bool {
        self.starred
    }
    fn has_parent(&self, id: &str) -> bool {
        self.parents.iter().any(|p| p == id)
    }
    fn created_ms(&self) -> i64 {
        self.created_ms
    }
    fn modified_ms(&self) -> i64 {
        self.modified_ms
    }
    fn app_property(&self, key: &str) -> Option<&str> {
        self.app_properties.get(key).map(String::as_str)
    }
    fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }
}

/// One user's application data.
#[derive(Debug)]
pub(crate) struct UserDrive {
    /// The application data folder's id (what the aliases resolve to).
    pub(crate) folder_id: String,
    pub(crate) folder_created_ms: i64,
    pub(crate) files: HashMap<String, FileRecord>,
    pub(crate) next_seq: u64,
    /// Open resumable sessions of this user with the bytes each holds, oldest first.
    pub(crate) sessions: VecDeque<(String, usize)>,
    /// Ids handed out by `files.generateIds` and not used yet (bounded).
    pub(crate) generated_ids: VecDeque<String>,
    pub(crate) quota_bytes: usize,
}

impl UserDrive {
    /// Resolves `appDataFolder` / `appfolder` (case-insensitively) to the folder id.
    pub(crate) fn resolve<'a>(&'a self, id: &'a str) -> &'a str {
        if id.eq_ignore_ascii_case("appDataFolder") || id.eq_ignore_ascii_case("appfolder") {
            &self.folder_id
        } else {
            id
        }
    }

    /// Whether `id` names the application data folder itself.
    pub(crate) fn is_root(&self, id: &str) -> bool {
        self.resolve(id) == self.folder_id
    }

    /// The folder's own `File` resource.
    pub(crate) fn root_json(&self) -> Value {
        json!({
            "kind": "drive#file",
            "id": self.folder_id,
            "name": APP_DATA_FOLDER_NAME,
            "mimeType": FOLDER_MIME,
            "starred": false,
            "trashed": false,
            "explicitlyTrashed": false,
            "spaces": ["appDataFolder"],
            "version": "1",
            "createdTime": rfc3339_ms(self.folder_created_ms),
            "modifiedTime": rfc3339_ms(self.folder_created_ms),
            "ownedByMe": true,
            "shared": false,
            "isAppAuthorized": true,
            "hasThumbnail": false,
            "thumbnailVersion": "0",
            "quotaBytesUsed": "0",
            "capabilities": {
                "canAddChildren": true,
                "canDelete": false,
                "canDownload": false,
                "canEdit": false,
                "canListChildren": true,
                "canRename": false,
                "canShare": false,
                "canTrash": false,
            },
        })
    }

    /// Bytes held by this user's open upload sessions, except `except`.
    pub(crate) fn session_bytes(&self, except: Option<&str>) -> usize {
        self.sessions
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != except)
            .map(|(_, bytes)| bytes)
            .sum()
    }

    /// Records how many bytes a session holds.
    pub(crate) fn set_session_bytes(&mut self, upload_id: &str, bytes: usize) {
        if let Some(entry) = self.sessions.iter_mut().find(|(id, _)| id == upload_id) {
            entry.1 = bytes;
        }
    }

    /// Forgets a session's accounting.
    pub(crate) fn remove_session(&mut self, upload_id: &str) {
        self.sessions.retain(|(id, _)| id != upload_id);
    }

    /// Bytes stored in this user's files.
    pub(crate) fn used_bytes(&self) -> usize {
        self.files.values().map(|f| f.content.len()).sum()
    }

    /// Removes a file and, for a folder, everything below it. Returns how many were removed.
    pub(crate) fn remove_tree(&mut self, id: &str) -> usize {
        let mut pending = vec![id.to_owned()];
        let mut removed = 0;
        while let Some(current) = pending.pop() {
            if self.files.remove(&current).is_some() {
                removed += 1;
            }
            pending.extend(
                self.files
                    .values()
                    .filter(|f| f.parents.contains(&current))
                    .map(|f| f.id.clone()),
            );
        }
        removed
    }

    /// Whether `folder` is `file` or lies below it (moving `file` there would make a cycle).
    pub(crate) fn is_within(&self, folder: &str, file: &str) -> bool {
        let mut current = folder.to_owned();
        for _ in 0..10_000 {
            if current == file {
                return true;
            }
            match self.files.get(&current).and_then(|f| f.parents.first()) {
                Some(parent) => current = parent.clone(),
                None => return false,
            }
        }
        true
    }
}

/// File metadata from a request body, validated for types (not yet against the user's files).
#[derive(Debug, Clone, Default)]
pub(crate) struct Metadata {
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) mime_type: Option<String>,
    /// `Some(None)` clears the description.
    pub(crate) description: Option<Option<String>>,
    pub(crate) parents: Option<Vec<String>>,
    /// Keys to set (`Some`) or delete (`None`).
    pub(crate) app_properties: Vec<(String, Option<String>)>,
    pub(crate) properties: Vec<(String, Option<String>)>,
    pub(crate) starred: Option<bool>,
    pub(crate) trashed: Option<bool>,
    pub(crate) created_ms: Option<i64>,
    pub(crate) modified_ms: Option<i64>,
    pub(crate) original_filename: Option<String>,
}

/// What a resumable session will do when complete.
#[derive(Debug, Clone)]
pub(crate) enum SessionTarget {
    /// Create a file with this metadata.
    Create(Metadata),
    /// Update this file with this metadata.
    Update { id: String, metadata: Metadata },
}

/// An open resumable upload.
#[derive(Debug)]
pub(crate) struct UploadSession {
    pub(crate) owner: String,
    pub(crate) target: SessionTarget,
    /// The content type from `X-Upload-Content-Type`, if given.
    pub(crate) content_type: Option<String>,
    /// The declared total from `X-Upload-Content-Length` or a `Content-Range`.
    pub(crate) total: Option<usize>,
    pub(crate) received: Vec<u8>,
    /// Set once the upload has completed (the session then answers 404).
    pub(crate) done: bool,
}

/// All users' Drive data. `Send + Sync`; see the module docs for the locking scheme.
pub(crate) struct DriveStore {
    users: RwLock<HashMap<String, Arc<Mutex<UserDrive>>>>,
    sessions: RwLock<HashMap<String, Arc<Mutex<UploadSession>>>>,
    quota_bytes: usize,
}

impl std::fmt::Debug for DriveStore {
    /// Counts only: file contents and names are users' data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sessions = self
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("DriveStore")
            .field("users", &self.user_count())
            .field("upload_sessions", &sessions)
            .field("quota_bytes", &self.quota_bytes)
            .finish()
    }
}

impl Default for DriveStore {
    fn default() -> Self {
        Self::new()
    }
}

impl DriveStore {
    /// An empty store.
    pub(crate) fn new() -> Self {
        Self::with_quota(DEFAULT_QUOTA_BYTES)
    }

    /// An empty store whose users each get `quota_bytes` of storage.
    pub(crate) fn with_quota(quota_bytes: usize) -> Self {
        Self {
            users: RwLock::new(HashMap::new()),
            sessions: RwLock::new(HashMap::new()),
            quota_bytes,
        }
    }

    /// Forgets every user, file and upload session.
    pub(crate) fn clear(&self) {
        self.users
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many users have Drive data (their folder was touched).
    pub(crate) fn user_count(&self) -> usize {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The user's drive, created on first use with a fresh folder id.
    pub(crate) fn user(&self, sub: &str, now_ms: i64) -> Arc<Mutex<UserDrive>> {
        if let Some(user) = self
            .users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sub)
        {
            return Arc::clone(user);
        }
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(users.entry(sub.to_owned()).or_insert_with(|| {
            Arc::new(Mutex::new(UserDrive {
                folder_id: format!("0A{}Uk9PVA", random_chars(11)),
                folder_created_ms: now_ms,
                files: HashMap::new(),
                next_seq: 0,
                sessions: VecDeque::new(),
                generated_ids: VecDeque::new(),
                quota_bytes: self.quota_bytes,
            }))
        }))
    }

    /// Opens a resumable session for the user, dropping their oldest beyond the cap.
    /// Lock order: a session, then its user, then this map; never a session while holding
    /// this map.
    pub(crate) fn open_session(&self, user: &mut UserDrive, session: UploadSession) -> String {
        let id = format!("AEnB2U{}", random_chars(64));
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        user.sessions.retain(|(s, _)| sessions.contains_key(s));
        while user.sessions.len() >= MAX_SESSIONS_PER_USER {
            if let Some((old, _)) = user.sessions.pop_front() {
                sessions.remove(&old);
            }
        }
        sessions.insert(id.clone(), Arc::new(Mutex::new(session)));
        user.sessions.push_back((id.clone(), 0));
        id
    }

    /// A session by upload id.
    pub(crate) fn session(&self, upload_id: &str) -> Option<Arc<Mutex<UploadSession>>> {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(upload_id)
            .cloned()
    }

    /// Forgets a finished session.
    pub(crate) fn close_session(&self, upload_id: &str) {
        self.sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(upload_id);
    }
}

/// Encodes a list position as an opaque page token bound to the query that produced it.
pub(crate) fn page_token(offset: usize, fingerprint: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("~!!~{offset}:{fingerprint:016x}"))
}

/// Decodes a page token; `None` if it is not one of ours or belongs to another query.
pub(crate) fn parse_page_token(token: &str, fingerprint: u64) -> Option<usize> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (offset, print) = text.strip_prefix("~!!~")?.split_once(':')?;
    if u64::from_str_radix(print, 16).ok()? != fingerprint {
        return None;
    }
    offset.parse().ok()
}

/// A stable 64-bit FNV-1a hash (for page-token fingerprints).
pub(crate) fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_milliseconds_and_a_z() {
        assert_eq!(rfc3339_ms(1_795_556_820_000), "2026-11-24T21:47:00.000Z");
        assert_eq!(rfc3339_ms(1_795_556_820_042), "2026-11-24T21:47:00.042Z");
    }

    #[test]
    fn file_ids_look_like_drive_ids() {
        let id = new_file_id();
        assert_eq!(id.len(), 33);
        assert!(id.starts_with('1'));
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(new_file_id(), id);
    }

    #[test]
    fn page_tokens_round_trip_only_for_their_query() {
        let token = page_token(200, 7);
        assert_eq!(parse_page_token(&token, 7), Some(200));
        assert_eq!(parse_page_token(&token, 8), None);
        assert_eq!(parse_page_token("garbage!", 7), None);
    }

    #[test]
    fn the_folder_is_stable_per_user_and_distinct_between_users() {
        let store = DriveStore::new();
        let a1 = lock(&store.user("a", 0)).folder_id.clone();
        let a2 = lock(&store.user("a", 5)).folder_id.clone();
        let b = lock(&store.user("b", 0)).folder_id.clone();
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_eq!(store.user_count(), 2);
        store.clear();
        assert_eq!(store.user_count(), 0);
    }
}
