//! Drive operations on one user's application data, independent of HTTP.

use std::cmp::Ordering;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::error::DriveError;
use super::fields::FILE_FIELDS;
use super::query::{self, Query};
use super::store::{FOLDER_MIME, FileRecord, MAX_FILE_BYTES, Metadata, UserDrive, new_file_id};

/// Fields a request body may carry that the fake accepts and ignores (cosmetic or sharing
/// settings that have no effect in the application data folder).
const IGNORED_FIELDS: &[&str] = &[
    "kind",
    "folderColorRgb",
    "contentHints",
    "copyRequiresWriterPermission",
    "writersCanShare",
    "viewersCanCopyContent",
    "viewedByMeTime",
    "contentRestrictions",
    "downloadRestrictions",
    "inheritedPermissionsDisabled",
    "labelInfo",
];

/// Uploaded content and the media type it came with.
#[derive(Debug, Clone)]
pub(crate) struct Content {
    pub(crate) bytes: Bytes,
    pub(crate) mime: Option<String>,
}

fn invalid_body_value(field: &str) -> DriveError {
    DriveError::bad_request(format!("Invalid value at 'resource.{field}'"))
}

fn string_field(value: &Value, field: &str) -> Result<String, DriveError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid_body_value(field))
}

fn time_field(value: &Value, field: &str) -> Result<i64, DriveError> {
    value
        .as_str()
        .and_then(query::parse_time_ms)
        .ok_or_else(|| invalid_body_value(field))
}

fn property_map(value: &Value, field: &str) -> Result<Vec<(String, Option<String>)>, DriveError> {
    let Some(object) = value.as_object() else {
        return Err(invalid_body_value(field));
    };
    let mut entries = Vec::new();
    for (key, value) in object {
        let value = match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => return Err(invalid_body_value(field)),
        };
        // Drive limits a property's key plus value to 124 bytes.
        if key.is_empty() || key.len() + value.as_ref().map_or(0, String::len) > 124 {
            return Err(DriveError::bad_request(
                "The size of the property key and value must not exceed 124 bytes.",
            ));
        }
        entries.push((key.clone(), value));
    }
    if entries.len() > 100 {
        return Err(DriveError::bad_request(
            "The limit for this file's properties has been exceeded.",
        ));
    }
    Ok(entries)
}

/// Parses a JSON request body into metadata. An empty body is empty metadata.
pub(crate) fn parse_metadata(body: &[u8], update: bool) -> Result<Metadata, DriveError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Metadata::default());
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| DriveError::parse_error())?;
    let Value::Object(object) = value else {
        return Err(DriveError::parse_error());
    };
    metadata_from_object(&object, update)
}

fn metadata_from_object(object: &Map<String, Value>, update: bool) -> Result<Metadata, DriveError> {
    let mut meta = Metadata::default();
    for (key, value) in object {
        match key.as_str() {
            "name" => meta.name = Some(string_field(value, key)?),
            "mimeType" => meta.mime_type = Some(string_field(value, key)?),
            "description" => {
                meta.description = Some(match value {
                    Value::Null => None,
                    other => Some(string_field(other, key)?),
                });
            }
            "originalFilename" => meta.original_filename = Some(string_field(value, key)?),
            "parents" => {
                if update {
                    return Err(DriveError::field_not_writable(
                        "The parents field is not directly writable in update requests. Use the \
                         addParents and removeParents parameters instead.",
                    ));
                }
                let Some(items) = value.as_array() else {
                    return Err(invalid_body_value(key));
                };
                let parents = items
                    .iter()
                    .map(|item| string_field(item, key))
                    .collect::<Result<Vec<_>, _>>()?;
                meta.parents = Some(parents);
            }
            "appProperties" => meta.app_properties = property_map(value, key)?,
            "properties" => meta.properties = property_map(value, key)?,
            "starred" => {
                meta.starred = Some(value.as_bool().ok_or_else(|| invalid_body_value(key))?);
            }
            "trashed" => {
                meta.trashed = Some(value.as_bool().ok_or_else(|| invalid_body_value(key))?);
            }
            "modifiedTime" => meta.modified_ms = Some(time_field(value, key)?),
            "createdTime" if !update => meta.created_ms = Some(time_field(value, key)?),
            "id" if !update => meta.id = Some(string_field(value, key)?),
            key if IGNORED_FIELDS.contains(&key) => {}
            key if FILE_FIELDS.contains(&key) => {
                return Err(DriveError::field_not_writable(
                    "The resource body includes fields which are not directly writable.",
                ));
            }
            key => {
                return Err(DriveError::bad_request(format!(
                    "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
                )));
            }
        }
    }
    Ok(meta)
}

/// Resolves a parent given by a client to a folder id of this user.
fn check_parent(user: &UserDrive, id: &str) -> Result<String, DriveError> {
    if user.is_root(id) {
        return Ok(user.folder_id.clone());
    }
    match user.files.get(id) {
        Some(file) if file.is_folder() => Ok(file.id.clone()),
        Some(_) => Err(DriveError::bad_request(
            "The specified parent is not a folder.",
        )),
        None if id == "root" => Err(DriveError::outside_app_data()),
        None => Err(DriveError::file_not_found(id)),
    }
}

fn check_size(
    user: &UserDrive,
    other_bytes: usize,
    old_len: usize,
    new_len: usize,
) -> Result<(), DriveError> {
    if new_len > MAX_FILE_BYTES {
        return Err(DriveError::too_large(MAX_FILE_BYTES));
    }
    let used = user.used_bytes().saturating_sub(old_len) + other_bytes;
    if used.saturating_add(new_len) > user.quota_bytes {
        return Err(DriveError::quota_exceeded());
    }
    Ok(())
}

/// Checks what `create` would refuse before any content arrives (resumable session start).
pub(crate) fn precheck_create(user: &UserDrive, meta: &Metadata) -> Result<(), DriveError> {
    if meta.trashed == Some(true) {
        return Err(DriveError::not_supported_for_app_data());
    }
    let parents = meta.parents.as_deref().unwrap_or_default();
    match parents {
        [] => Err(DriveError::outside_app_data()),
        [parent] => check_parent(user, parent).map(|_| ()),
        _ => Err(DriveError::cannot_add_parent()),
    }
}

fn apply_properties(
    map: &mut std::collections::BTreeMap<String, String>,
    changes: &[(String, Option<String>)],
) {
    for (key, value) in changes {
        match value {
            Some(value) => {
                map.insert(key.clone(), value.clone());
            }
            None => {
                map.remove(key);
            }
        }
    }
}

/// Creates a file; `other_bytes` are the user's bytes held outside files (open sessions).
pub(crate) fn create(
    user: &mut UserDrive,
    meta: Metadata,
    content: Option<Content>,
    other_bytes: usize,
    now_ms: i64,
) -> Result<Value, DriveError> {
    precheck_create(user, &meta)?;
    let parents = meta.parents.as_deref().unwrap_or_default();
    let parent = match parents.first() {
        Some(parent) => check_parent(user, parent)?,
        None => return Err(DriveError::outside_app_data()),
    };
    let id = match meta.id {
        Some(id) => {
            let Some(index) = user.generated_ids.iter().position(|g| *g == id) else {
                return Err(DriveError::bad_request(
                    "The provided file ID is not usable.",
                ));
            };
            user.generated_ids.remove(index);
            id
        }
        None => new_file_id(),
    };
    let (bytes, content_mime) = match content {
        Some(content) => (content.bytes, content.mime),
        None => (Bytes::new(), None),
    };
    let mime_type = meta
        .mime_type
        .or(content_mime)
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    if mime_type.starts_with("application/vnd.google-apps.") && !bytes.is_empty() {
        return Err(DriveError::bad_request(
            "Media content cannot be uploaded to a folder or a Google Docs type.",
        ));
    }
    check_size(user, other_bytes, 0, bytes.len())?;
    let name = meta.name.unwrap_or_else(|| "Untitled".to_owned());
    let mut app_properties = Default::default();
    apply_properties(&mut app_properties, &meta.app_properties);
    let mut properties = Default::default();
    apply_properties(&mut properties, &meta.properties);
    let downloadable = !mime_type.starts_with("application/vnd.google-apps.");
    let mut file = FileRecord {
        id: id.clone(),
        original_filename: if downloadable {
            Some(meta.original_filename.unwrap_or_else(|| name.clone()))
        } else {
            None
        },
        name,
        mime_type,
        description: meta.description.flatten(),
        parents: vec![parent],
        app_properties,
        properties,
        starred: meta.starred.unwrap_or(false),
        created_ms: meta.created_ms.unwrap_or(now_ms),
        modified_ms: meta.modified_ms.unwrap_or(now_ms),
        version: 1,
        content: Bytes::new(),
        md5: String::new(),
        sha1: String::new(),
        sha256: String::new(),
        head_revision_id: String::new(),
        seq: user.next_seq,
    };
    file.set_content(bytes);
    user.next_seq += 1;
    let json = file.to_json();
    user.files.insert(id, file);
    Ok(json)
}

/// Checks what `update` would refuse before any content arrives (resumable session start).
pub(crate) fn precheck_update(
    user: &UserDrive,
    id: &str,
    meta: &Metadata,
) -> Result<(), DriveError> {
    if user.is_root(id) {
        return Err(DriveError::insufficient_file_permissions());
    }
    if !user.files.contains_key(id) {
        return Err(DriveError::file_not_found(id));
    }
    if meta.trashed == Some(true) {
        return Err(DriveError::not_supported_for_app_data());
    }
    Ok(())
}

/// Updates a file's metadata, parents and (optionally) content.
pub(crate) fn update(
    user: &mut UserDrive,
    id: &str,
    meta: Metadata,
    content: Option<Content>,
    parents: (&[String], &[String]),
    other_bytes: usize,
    now_ms: i64,
) -> Result<Value, DriveError> {
    precheck_update(user, id, &meta)?;
    let (add_parents, remove_parents) = parents;
    let Some(current) = user.files.get(id) else {
        return Err(DriveError::file_not_found(id));
    };
    let mut new_parents = current.parents.clone();
    let old_len = current.content.len();
    let is_folder = current.is_folder();
    for remove in remove_parents {
        let resolved = user.resolve(remove).to_owned();
        new_parents.retain(|p| *p != resolved);
    }
    for add in add_parents {
        let resolved = check_parent(user, add)?;
        if is_folder && user.is_within(&resolved, id) {
            return Err(DriveError::bad_request(
                "A folder cannot be moved into itself or one of its descendants.",
            ));
        }
        if !new_parents.contains(&resolved) {
            new_parents.push(resolved);
        }
    }
    match new_parents.len() {
        1 => {}
        0 => {
            return Err(DriveError::bad_request(
                "A file in the application data folder must keep exactly one parent.",
            ));
        }
        _ => return Err(DriveError::cannot_add_parent()),
    }
    if let Some(content) = &content {
        let mime = meta
            .mime_type
            .as_deref()
            .unwrap_or(current.mime_type.as_str());
        if is_folder || mime.starts_with("application/vnd.google-apps.") {
            return Err(DriveError::bad_request(
                "Media content cannot be uploaded to a folder or a Google Docs type.",
            ));
        }
        check_size(user, other_bytes, old_len, content.bytes.len())?;
    }
    if let Some(mime) = &meta.mime_type
        && (mime == FOLDER_MIME) != is_folder
    {
        return Err(DriveError::bad_request(
            "A file cannot be turned into a folder or a folder into a file.",
        ));
    }
    let Some(file) = user.files.get_mut(id) else {
        return Err(DriveError::file_not_found(id));
    };
    file.parents = new_parents;
    if let Some(name) = meta.name {
        file.name = name;
    }
    if let Some(mime) = meta.mime_type {
        file.mime_type = mime;
    }
    if let Some(description) = meta.description {
        file.description = description;
    }
    if let Some(original) = meta.original_filename {
        file.original_filename = Some(original);
    }
    if let Some(starred) = meta.starred {
        file.starred = starred;
    }
    apply_properties(&mut file.app_properties, &meta.app_properties);
    apply_properties(&mut file.properties, &meta.properties);
    if let Some(content) = content {
        file.set_content(content.bytes);
    }
    file.version += 1;
    file.modified_ms = meta.modified_ms.unwrap_or(now_ms);
    Ok(file.to_json())
}

/// Deletes a file (a folder with everything below it).
pub(crate) fn delete(user: &mut UserDrive, id: &str) -> Result<(), DriveError> {
    if user.is_root(id) {
        return Err(DriveError::insufficient_file_permissions());
    }
    if user.remove_tree(id) == 0 {
        return Err(DriveError::file_not_found(id));
    }
    Ok(())
}

/// A sort key of `orderBy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Name,
    Created,
    Modified,
    Size,
    Folder,
    Starred,
    Unordered,
}

/// A parsed `orderBy`: keys, each descending or not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Order(Vec<(SortKey, bool)>);

impl Order {
    /// Parses `orderBy` (`name`, `createdTime desc`, `folder,modifiedTime desc`, ...).
    pub(crate) fn parse(text: &str) -> Result<Self, DriveError> {
        let mut keys = Vec::new();
        for item in text.split(',') {
            let mut words = item.split_whitespace();
            let Some(key) = words.next() else {
                return Err(DriveError::invalid_value("orderBy"));
            };
            let key = match key {
                "name" | "name_natural" => SortKey::Name,
                "createdTime" => SortKey::Created,
                "modifiedTime" | "modifiedByMeTime" | "viewedByMeTime" | "recency" => {
                    SortKey::Modified
                }
                "quotaBytesUsed" => SortKey::Size,
                "folder" => SortKey::Folder,
                "starred" => SortKey::Starred,
                "sharedWithMeTime" => SortKey::Unordered,
                _ => return Err(DriveError::invalid_value("orderBy")),
            };
            let desc = match (words.next(), words.next()) {
                (None, _) => false,
                (Some(word), None) if word.eq_ignore_ascii_case("desc") => true,
                _ => return Err(DriveError::invalid_value("orderBy")),
            };
            keys.push((key, desc));
        }
        Ok(Order(keys))
    }

    fn compare(&self, a: &FileRecord, b: &FileRecord) -> Ordering {
        for (key, desc) in &self.0 {
            let ordering = match key {
                SortKey::Name => a
                    .name
                    .to_lowercase()
                    .cmp(&b.name.to_lowercase())
                    .then_with(|| a.name.cmp(&b.name)),
                SortKey::Created => a.created_ms.cmp(&b.created_ms),
                SortKey::Modified => a.modified_ms.cmp(&b.modified_ms),
                SortKey::Size => a.content.len().cmp(&b.content.len()),
                // Folders first, as in Drive's UI.
                SortKey::Folder => b.is_folder().cmp(&a.is_folder()),
                SortKey::Starred => b.starred.cmp(&a.starred),
                SortKey::Unordered => Ordering::Equal,
            };
            let ordering = if *desc { ordering.reverse() } else { ordering };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        a.seq.cmp(&b.seq)
    }
}

/// The user's files matching `query`, sorted by `order` (creation order by default).
pub(crate) fn search<'a>(
    user: &'a UserDrive,
    query: Option<&Query>,
    order: &Order,
) -> Vec<&'a FileRecord> {
    let resolve = |id: &str| user.resolve(id).to_owned();
    let mut files: Vec<&FileRecord> = user
        .files
        .values()
        .filter(|file| query.is_none_or(|q| q.matches(*file, &resolve)))
        .collect();
    files.sort_by(|a, b| order.compare(a, b));
    files
}
