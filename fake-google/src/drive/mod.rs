//! Drive v3 for the `appDataFolder` space: `files.get`, `files.list`, `files.create` (metadata,
//! `media`, `multipart`, `resumable`), `alt=media` downloads with `Range`, `files.update`,
//! `files.delete` and `files.generateIds`, per user, in Google's wire format.
//!
//! The fake's app state implements [`DriveAuth`]; [`router`] serves `/drive/v3/files...` and
//! `/upload/drive/v3/files...`. Where this differs from Google is listed in `docs/fake-google.md`.

mod error;
mod fields;
mod md5;
mod multipart;
mod ops;
mod query;
mod store;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

pub(crate) use self::error::DriveError;
use self::fields::{Schema, Selection};
use self::ops::{Content, Order};
pub(crate) use self::store::DriveStore;
use self::store::{MAX_FILE_BYTES, SessionTarget, UploadSession, lock};

/// Who a Drive request acts for, resolved from its bearer access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DriveUser {
    /// The Google account's subject (`sub`); each has its own application data folder.
    pub(crate) sub: String,
    /// Whether the token was granted `https://www.googleapis.com/auth/drive.appdata`.
    pub(crate) has_appdata_scope: bool,
}

/// Why a bearer token was refused (→ 401 `authError` in Drive's envelope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DriveAuthError {
    /// No token at all.
    Missing,
    /// An unknown, expired or revoked token.
    Invalid,
}

/// Implemented by the fake's app state; the Drive router calls it for every request.
pub(crate) trait DriveAuth: Clone + Send + Sync + 'static {
    /// Resolves the bearer access token (`None` when the request carries none).
    ///
    /// # Errors
    /// [`DriveAuthError::Missing`] for `None`, [`DriveAuthError::Invalid`] for a token that is
    /// unknown, expired or revoked.
    fn authorize(&self, bearer: Option<&str>) -> Result<DriveUser, DriveAuthError>;
    /// The Drive data.
    fn drive_store(&self) -> &DriveStore;
    /// The fake's clock (with its offset) in Unix seconds.
    fn now_unix(&self) -> i64;
}

/// Optional request extension naming the scheme the client used (`"https"` behind `--tls`), for
/// the absolute `Location` of resumable uploads. Without it, `X-Forwarded-Proto`, then the
/// request URI's scheme, then `http` are used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scheme(pub(crate) String);

/// The largest JSON metadata body accepted.
const MAX_METADATA_BYTES: usize = 1024 * 1024;
/// The largest upload request body (a file plus its multipart metadata).
const MAX_UPLOAD_BODY_BYTES: usize = MAX_FILE_BYTES + MAX_METADATA_BYTES;

/// The Drive routes, with `state` baked in.
pub(crate) fn router<S: DriveAuth>(state: S) -> Router {
    Router::new()
        .route("/drive/v3/files", any(handle::<S>))
        .route("/drive/v3/files/{id}", any(handle::<S>))
        .route("/drive/v3/files/{id}/{*rest}", any(handle::<S>))
        .route("/upload/drive/v3/files", any(handle::<S>))
        .route("/upload/drive/v3/files/{id}", any(handle::<S>))
        .with_state(state)
}

/// Serialises JSON the way Google does by default (pretty) or compactly (`prettyPrint=false`).
pub(crate) fn json_bytes(value: &Value, pretty: bool) -> Vec<u8> {
    let result = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    result.unwrap_or_default()
}

/// Which Drive path a request addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `/drive/v3/files`
    Files,
    /// `/drive/v3/files/{id}`
    File(String),
    /// `/drive/v3/files/{id}/{rest}`
    Sub(String, String),
    /// `/upload/drive/v3/files`
    Upload,
    /// `/upload/drive/v3/files/{id}`
    UploadFile(String),
}

impl Route {
    fn parse(path: &str) -> Option<Self> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (upload, rest) = if let Some(rest) = path.strip_prefix("/upload/drive/v3/files") {
            (true, rest)
        } else {
            (false, path.strip_prefix("/drive/v3/files")?)
        };
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Some(if upload { Route::Upload } else { Route::Files });
        }
        let (id, sub) = match rest.split_once('/') {
            Some((id, sub)) => (decode(id), Some(sub.to_owned())),
            None => (decode(rest), None),
        };
        Some(match (upload, sub) {
            (true, None) => Route::UploadFile(id),
            (false, None) => Route::File(id),
            (false, Some(sub)) => Route::Sub(id, sub),
            (true, Some(_)) => return None,
        })
    }
}

/// The query string, parsed.
#[derive(Debug, Clone, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>) -> Result<Self, DriveError> {
        let Some(query) = query else {
            return Ok(Self::default());
        };
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(Params)
            .map_err(|_| DriveError::bad_request("The query string could not be parsed."))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn pretty(&self) -> bool {
        self.get("prettyPrint") != Some("false")
    }

    /// The `fields` selection, validated against `schema`; `None` means the default.
    fn fields(&self, schema: Schema) -> Result<Option<Selection>, DriveError> {
        let Some(text) = self.get("fields").filter(|t| !t.trim().is_empty()) else {
            return Ok(None);
        };
        let selection = Selection::parse(text).map_err(|bad| DriveError::invalid_fields(&bad))?;
        selection
            .validate(schema)
            .map_err(|bad| DriveError::invalid_fields(&bad))?;
        Ok(Some(selection))
    }
}

/// The bearer token from `Authorization` (or the `access_token` query parameter).
fn bearer<'a>(headers: &'a HeaderMap, params: &'a Params) -> Result<Option<&'a str>, DriveError> {
    match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| DriveError::invalid_credentials())?;
            let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                return Err(DriveError::invalid_credentials());
            }
            Ok(Some(token.trim()))
        }
        None => Ok(params
            .get("access_token")
            .or_else(|| params.get("oauth_token"))),
    }
}

fn authorize<S: DriveAuth>(
    state: &S,
    token: Option<&str>,
    rpc: &str,
) -> Result<DriveUser, DriveError> {
    let user = state.authorize(token).map_err(|error| match error {
        DriveAuthError::Missing => DriveError::missing_credentials(),
        DriveAuthError::Invalid => DriveError::invalid_credentials(),
    })?;
    if !user.has_appdata_scope {
        return Err(DriveError::insufficient_scopes(rpc));
    }
    Ok(user)
}

/// The RPC name Google reports for a request, for scope errors.
fn rpc_name(method: &Method, route: &Route, params: &Params) -> String {
    let name = match (route, method.as_str()) {
        (Route::Files, "GET") => "List",
        (Route::Files | Route::Upload, _) => "Create",
        (Route::File(id), "GET") if id == "generateIds" => "GenerateIds",
        (Route::File(_), "GET") if params.get("alt") == Some("media") => "Download",
        (Route::File(_), "GET") => "Get",
        (Route::File(_), "DELETE") => "Delete",
        _ => "Update",
    };
    format!("google.apps.drive.v3.DriveFiles.{name}")
}

fn json_response(status: StatusCode, value: &Value, pretty: bool) -> Response {
    let mut response = (status, json_bytes(value, pretty)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

fn file_response(value: Value, params: &Params) -> Result<Response, DriveError> {
    let selection = params.fields(Schema::File)?;
    let value = match selection {
        Some(selection) => selection.apply(value),
        None => default_file_fields(value),
    };
    Ok(json_response(StatusCode::OK, &value, params.pretty()))
}

fn default_file_fields(value: Value) -> Value {
    let mut selection = std::collections::BTreeMap::new();
    for name in ["kind", "id", "name", "mimeType", "resourceKey"] {
        selection.insert(name.to_owned(), Selection::All);
    }
    Selection::Some(selection).apply(value)
}

async fn handle<S: DriveAuth>(State(state): State<S>, request: Request) -> Response {
    match serve(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, DriveError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let is_limit = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
            || error.into_inner().is::<http_body_util::LengthLimitError>();
        if is_limit {
            DriveError::too_large(limit)
        } else {
            DriveError::bad_request("The request body could not be read.")
        }
    })
}

async fn serve<S: DriveAuth>(state: &S, request: Request) -> Result<Response, DriveError> {
    let (parts, body) = request.into_parts();
    let params = Params::parse(parts.uri.query())?;
    let Some(route) = Route::parse(parts.uri.path()) else {
        return Err(DriveError::not_implemented(
            &method_name("files", &parts.method, true),
            &parts.method,
            parts.uri.path(),
        ));
    };
    let token = bearer(&parts.headers, &params)?;

    // A resumable session's own URL: the upload id is the capability, as on Google, so a
    // request without a token may continue it; one with a token must be the owner's.
    if matches!(route, Route::Upload | Route::UploadFile(_))
        && matches!(parts.method, Method::PUT | Method::POST)
        && params.get("upload_id").is_some()
    {
        let owner = match token {
            Some(_) => Some(authorize(state, token, "google.apps.drive.v3.DriveFiles.Create")?.sub),
            None => None,
        };
        let body = read_body(body, MAX_UPLOAD_BODY_BYTES).await?;
        return resumable_chunk(state, &parts, &params, owner.as_deref(), &body);
    }

    let rpc = rpc_name(&parts.method, &route, &params);
    let user = authorize(state, token, &rpc)?;
    let limit = match route {
        Route::Upload | Route::UploadFile(_) => MAX_UPLOAD_BODY_BYTES,
        _ => MAX_METADATA_BYTES,
    };
    let body = read_body(body, limit).await?;
    let now_ms = state.now_unix().saturating_mul(1000);
    let store = state.drive_store();
    let ctx = Ctx {
        store,
        user: &user,
        now_ms,
        params: &params,
        parts: &parts,
    };

    match (&route, &parts.method) {
        (Route::Files, &Method::GET) => ctx.list(),
        (Route::Files, &Method::POST) => ctx.create_metadata(&body),
        (Route::File(id), &Method::GET) if id == "generateIds" => ctx.generate_ids(),
        (Route::File(id), &Method::DELETE) if id == "trash" => {
            Err(DriveError::not_supported_for_app_data())
        }
        (Route::File(id), &Method::GET) => ctx.get(id),
        (Route::File(id), &Method::PATCH) => ctx.update_metadata(id, &body),
        (Route::File(id), &Method::DELETE) => ctx.delete(id),
        (Route::Sub(id, sub), method) => ctx.sub_resource(id, sub, method),
        (Route::Upload, &Method::POST) => ctx.upload(None, &body),
        (Route::UploadFile(id), &Method::PATCH | &Method::PUT) => ctx.upload(Some(id), &body),
        (route, method) => Err(DriveError::not_implemented(
            &method_name(
                "files",
                method,
                !matches!(route, Route::Files | Route::Upload),
            ),
            method,
            parts.uri.path(),
        )),
    }
}

/// One authorised request.
struct Ctx<'a> {
    store: &'a DriveStore,
    user: &'a DriveUser,
    now_ms: i64,
    params: &'a Params,
    parts: &'a Parts,
}

impl Ctx<'_> {
    fn drive(&self) -> std::sync::Arc<std::sync::Mutex<store::UserDrive>> {
        self.store.user(&self.user.sub, self.now_ms)
    }

    fn get(&self, id: &str) -> Result<Response, DriveError> {
        let drive = self.drive();
        let user = lock(&drive);
        let media = self.params.get("alt") == Some("media");
        if user.is_root(id) {
            if media {
                return Err(DriveError::not_downloadable());
            }
            let value = user.root_json();
            drop(user);
            return file_response(value, self.params);
        }
        let Some(file) = user.files.get(id) else {
            return Err(DriveError::file_not_found(id));
        };
        if media {
            if !file.is_downloadable() {
                return Err(DriveError::not_downloadable());
            }
            let content = file.content.clone();
            let mime = file.mime_type.clone();
            drop(user);
            return download(content, &mime, &self.parts.headers);
        }
        let value = file.to_json();
        drop(user);
        file_response(value, self.params)
    }

    fn list(&self) -> Result<Response, DriveError> {
        let spaces = self.params.list("spaces");
        if spaces.is_empty() {
            return Err(DriveError::spaces_not_granted());
        }
        for space in &spaces {
            match space.as_str() {
                "appDataFolder" => {}
                "drive" | "photos" => return Err(DriveError::spaces_not_granted()),
                _ => return Err(DriveError::invalid_value("spaces")),
            }
        }
        let page_size = match self.params.get("pageSize") {
            None => 100,
            Some(text) => match text.trim().parse::<i64>() {
                Ok(n @ 1..=1000) => usize::try_from(n).unwrap_or(100),
                _ => return Err(DriveError::out_of_range("pageSize", text, 1, 1000)),
            },
        };
        let q_text = self.params.get("q").unwrap_or("");
        let query = if q_text.trim().is_empty() {
            None
        } else {
            Some(query::parse(q_text).map_err(|()| DriveError::invalid_value("q"))?)
        };
        let order_text = self.params.get("orderBy").unwrap_or("");
        let order = if order_text.trim().is_empty() {
            Order::default()
        } else {
            Order::parse(order_text)?
        };
        let fingerprint = store::fnv1a(&[q_text, order_text, &spaces.join(",")]);
        let offset = match self.params.get("pageToken").filter(|t| !t.is_empty()) {
            None => 0,
            Some(token) => store::parse_page_token(token, fingerprint)
                .ok_or_else(|| DriveError::invalid_value("pageToken"))?,
        };
        let selection = self.params.fields(Schema::FileList)?;

        let drive = self.drive();
        let user = lock(&drive);
        let matches = ops::search(&user, query.as_ref(), &order);
        let total = matches.len();
        let files: Vec<Value> = matches
            .into_iter()
            .skip(offset)
            .take(page_size)
            .map(store::FileRecord::to_json)
            .collect();
        drop(user);
        let end = offset.saturating_add(page_size);
        let mut list = json!({
            "kind": "drive#fileList",
            "incompleteSearch": false,
            "files": files,
        });
        if end < total {
            list["nextPageToken"] = json!(store::page_token(end, fingerprint));
        }
        let value = match selection {
            Some(selection) => selection.apply(list),
            None => {
                let mut file_fields = std::collections::BTreeMap::new();
                for name in ["kind", "id", "name", "mimeType", "resourceKey"] {
                    file_fields.insert(name.to_owned(), Selection::All);
                }
                let mut members = std::collections::BTreeMap::new();
                for name in ["kind", "incompleteSearch", "nextPageToken"] {
                    members.insert(name.to_owned(), Selection::All);
                }
                members.insert("files".to_owned(), Selection::Some(file_fields));
                Selection::Some(members).apply(list)
            }
        };
        Ok(json_response(StatusCode::OK, &value, self.params.pretty()))
    }

    fn create_metadata(&self, body: &[u8]) -> Result<Response, DriveError> {
        let meta = ops::parse_metadata(body, false)?;
        self.params.fields(Schema::File)?;
        let drive = self.drive();
        let mut user = lock(&drive);
        let sessions = user.session_bytes(None);
        let value = ops::create(&mut user, meta, None, sessions, self.now_ms)?;
        drop(user);
        file_response(value, self.params)
    }

    fn update_metadata(&self, id: &str, body: &[u8]) -> Result<Response, DriveError> {
        let meta = ops::parse_metadata(body, true)?;
        self.params.fields(Schema::File)?;
        let add = self.params.list("addParents");
        let remove = self.params.list("removeParents");
        let drive = self.drive();
        let mut user = lock(&drive);
        let sessions = user.session_bytes(None);
        let value = ops::update(
            &mut user,
            id,
            meta,
            None,
            (&add, &remove),
            sessions,
            self.now_ms,
        )?;
        drop(user);
        file_response(value, self.params)
    }

    fn delete(&self, id: &str) -> Result<Response, DriveError> {
        let drive = self.drive();
        let mut user = lock(&drive);
        ops::delete(&mut user, id)?;
        drop(user);
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    fn generate_ids(&self) -> Result<Response, DriveError> {
        let count = match self.params.get("count") {
            None => 10,
            Some(text) => match text.trim().parse::<i64>() {
                Ok(n @ 1..=1000) => usize::try_from(n).unwrap_or(10),
                _ => return Err(DriveError::out_of_range("count", text, 1, 1000)),
            },
        };
        match self.params.get("space").unwrap_or("drive") {
            "appDataFolder" => {}
            "drive" | "photos" => return Err(DriveError::spaces_not_granted()),
            _ => return Err(DriveError::invalid_value("space")),
        }
        let selection = self.params.fields(Schema::GeneratedIds)?;
        let ids: Vec<String> = (0..count).map(|_| store::new_file_id()).collect();
        let drive = self.drive();
        let mut user = lock(&drive);
        user.generated_ids.extend(ids.iter().cloned());
        while user.generated_ids.len() > 1000 {
            user.generated_ids.pop_front();
        }
        drop(user);
        let value = json!({"kind": "drive#generatedIds", "space": "appDataFolder", "ids": ids});
        let value = match selection {
            Some(selection) => selection.apply(value),
            None => value,
        };
        Ok(json_response(StatusCode::OK, &value, self.params.pretty()))
    }

    fn sub_resource(&self, id: &str, sub: &str, method: &Method) -> Result<Response, DriveError> {
        let exists = {
            let drive = self.drive();
            let user = lock(&drive);
            user.is_root(id) || user.files.contains_key(id)
        };
        if !exists {
            return Err(DriveError::file_not_found(id));
        }
        let segments: Vec<&str> = sub.split('/').filter(|s| !s.is_empty()).collect();
        let name = match segments.as_slice() {
            ["permissions" | "trash" | "untrash", ..] => {
                return Err(DriveError::not_supported_for_app_data());
            }
            [resource @ ("revisions" | "comments")] => method_name(resource, method, false),
            [resource @ ("revisions" | "comments"), _] => method_name(resource, method, true),
            ["comments", _, "replies"] => method_name("replies", method, false),
            ["comments", _, "replies", ..] => method_name("replies", method, true),
            [action, ..] => format!("drive.files.{action}"),
            [] => method_name("files", method, true),
        };
        Err(DriveError::not_implemented(
            &name,
            method,
            self.parts.uri.path(),
        ))
    }

    /// `POST /upload/drive/v3/files` (create) or `PATCH /upload/drive/v3/files/{id}` (update).
    fn upload(&self, id: Option<&str>, body: &Bytes) -> Result<Response, DriveError> {
        let content_type = self
            .parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.params.fields(Schema::File)?;
        let (meta, content) = match self.params.get("uploadType") {
            Some("media") => {
                let meta = store::Metadata::default();
                let mime = Some(multipart::essence(&content_type)).filter(|m| !m.is_empty());
                (
                    meta,
                    Content {
                        bytes: body.clone(),
                        mime,
                    },
                )
            }
            Some("multipart" | "related") => {
                if multipart::essence(&content_type) != "multipart/related" {
                    return Err(DriveError::bad_request(
                        "Multipart uploads must use Content-Type multipart/related.",
                    ));
                }
                let boundary = multipart::parameter(&content_type, "boundary")
                    .ok_or_else(|| DriveError::bad_request("Missing multipart boundary."))?;
                let parts = multipart::parse(body, &boundary)
                    .ok_or_else(|| DriveError::bad_request("Malformed multipart body."))?;
                let [metadata_part, media_part] = parts.as_slice() else {
                    return Err(DriveError::bad_request(
                        "Malformed multipart body: expected a metadata part and a media part.",
                    ));
                };
                let meta = ops::parse_metadata(&metadata_part.body, id.is_some())?;
                let bytes = media_part
                    .decoded_body()
                    .ok_or_else(|| DriveError::bad_request("Malformed multipart body."))?;
                let mime = media_part
                    .header("content-type")
                    .map(multipart::essence)
                    .filter(|m| !m.is_empty());
                (meta, Content { bytes, mime })
            }
            Some("resumable") => return self.start_resumable(id, body),
            Some(_) => return Err(DriveError::invalid_value("uploadType")),
            None => return Err(DriveError::required("uploadType")),
        };
        let drive = self.drive();
        let mut user = lock(&drive);
        let sessions = user.session_bytes(None);
        let value = match id {
            None => ops::create(&mut user, meta, Some(content), sessions, self.now_ms)?,
            Some(id) => {
                let add = self.params.list("addParents");
                let remove = self.params.list("removeParents");
                ops::update(
                    &mut user,
                    id,
                    meta,
                    Some(content),
                    (&add, &remove),
                    sessions,
                    self.now_ms,
                )?
            }
        };
        drop(user);
        file_response(value, self.params)
    }

    fn start_resumable(&self, id: Option<&str>, body: &Bytes) -> Result<Response, DriveError> {
        let meta = ops::parse_metadata(body, id.is_some())?;
        let header_str = |name: &str| {
            self.parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let content_type = header_str("x-upload-content-type").map(multipart::essence);
        let total = match header_str("x-upload-content-length") {
            None => None,
            Some(text) => {
                let total: usize = text
                    .parse()
                    .map_err(|_| DriveError::bad_request("Invalid X-Upload-Content-Length."))?;
                if total > MAX_FILE_BYTES {
                    return Err(DriveError::too_large(MAX_FILE_BYTES));
                }
                Some(total)
            }
        };
        let drive = self.drive();
        let mut user = lock(&drive);
        let target = match id {
            None => {
                ops::precheck_create(&user, &meta)?;
                SessionTarget::Create(meta)
            }
            Some(id) => {
                ops::precheck_update(&user, id, &meta)?;
                SessionTarget::Update {
                    id: id.to_owned(),
                    metadata: meta,
                }
            }
        };
        let session = UploadSession {
            owner: self.user.sub.clone(),
            target,
            content_type,
            total,
            received: Vec::new(),
            done: false,
        };
        let upload_id = self.store.open_session(&mut user, session);
        drop(user);
        let location = session_location(self.parts, self.params, &upload_id);
        let mut response = StatusCode::OK.into_response();
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&location) {
            headers.insert(header::LOCATION, value);
        }
        if let Ok(value) = HeaderValue::from_str(&upload_id) {
            headers.insert("x-guploader-uploadid", value);
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        Ok(response)
    }
}

/// A Google-style method name, e.g. `drive.revisions.list` or `drive.files.update`.
fn method_name(resource: &str, method: &Method, has_id: bool) -> String {
    let verb = match *method {
        Method::GET if has_id => "get",
        Method::GET => "list",
        Method::POST if has_id => "call",
        Method::POST => "create",
        Method::PATCH | Method::PUT => "update",
        Method::DELETE => "delete",
        _ => "call",
    };
    format!("drive.{resource}.{verb}")
}

/// The absolute session URL: the request's own URL with `upload_id` added.
fn session_location(parts: &Parts, params: &Params, upload_id: &str) -> String {
    let scheme = parts
        .extensions
        .get::<Scheme>()
        .map(|s| s.0.clone())
        .or_else(|| {
            parts
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| v == "http" || v == "https")
        })
        .or_else(|| parts.uri.scheme_str().map(str::to_owned))
        .unwrap_or_else(|| "http".to_owned());
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in &params.0 {
        if key != "upload_id" {
            query.append_pair(key, value);
        }
    }
    query.append_pair("upload_id", upload_id);
    format!("{scheme}://{host}{}?{}", parts.uri.path(), query.finish())
}

/// A parsed `Content-Range` of a resumable chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkRange {
    /// `bytes first-last/total` (`total` `None` for `*`).
    Bytes {
        first: usize,
        last: usize,
        total: Option<usize>,
    },
    /// `bytes */total` or `bytes */*`: a status query (or, with the total reached, completion).
    Query { total: Option<usize> },
}

fn parse_content_range(text: &str) -> Option<ChunkRange> {
    let spec = text.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = spec.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    if range.trim() == "*" {
        return Some(ChunkRange::Query { total });
    }
    let (first, last) = range.trim().split_once('-')?;
    let first: usize = first.trim().parse().ok()?;
    let last: usize = last.trim().parse().ok()?;
    if last < first || total.is_some_and(|t| last >= t) {
        return None;
    }
    Some(ChunkRange::Bytes { first, last, total })
}

fn resume_incomplete(received: usize, upload_id: &str) -> Response {
    let mut response = Response::new(Body::empty());
    // 308 "Resume Incomplete".
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let headers = response.headers_mut();
    if received > 0
        && let Ok(value) = HeaderValue::from_str(&format!("bytes=0-{}", received - 1))
    {
        headers.insert(header::RANGE, value);
    }
    if let Ok(value) = HeaderValue::from_str(upload_id) {
        headers.insert("x-guploader-uploadid", value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// A `PUT` to a resumable session URL.
fn resumable_chunk<S: DriveAuth>(
    state: &S,
    parts: &Parts,
    params: &Params,
    caller: Option<&str>,
    body: &Bytes,
) -> Result<Response, DriveError> {
    let store = state.drive_store();
    let upload_id = params.get("upload_id").unwrap_or_default().to_owned();
    let session = store
        .session(&upload_id)
        .ok_or_else(DriveError::upload_session_not_found)?;
    let range = match parts.headers.get(header::CONTENT_RANGE) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(parse_content_range)
                .ok_or_else(|| DriveError::bad_request("Failed to parse Content-Range header."))?,
        ),
    };
    let now_ms = state.now_unix().saturating_mul(1000);
    let mut guard = lock(&session);
    if guard.done || caller.is_some_and(|c| c != guard.owner) {
        return Err(DriveError::upload_session_not_found());
    }
    let owner = guard.owner.clone();
    let drive = store.user(&owner, now_ms);

    let received = guard.received.len();
    let (new_bytes, total) = match range {
        None => (&body[..], Some(received + body.len())),
        Some(ChunkRange::Query { total }) => (&body[..0], total),
        Some(ChunkRange::Bytes { first, last, total }) => {
            if last.checked_sub(first).and_then(|d| d.checked_add(1)) != Some(body.len()) {
                return Err(DriveError::bad_request(
                    "The Content-Range does not match the length of the request body.",
                ));
            }
            if first > received {
                return Err(DriveError::bad_request(
                    "The Content-Range starts after the bytes received so far.",
                ));
            }
            (&body[(received - first).min(body.len())..], total)
        }
    };
    let total = match (guard.total, total) {
        (Some(declared), Some(given)) if declared != given => {
            return Err(DriveError::bad_request(
                "The total size does not match the size declared for this upload.",
            ));
        }
        (declared, given) => declared.or(given),
    };
    let after = received + new_bytes.len();
    if after > MAX_FILE_BYTES || total.is_some_and(|t| t > MAX_FILE_BYTES) {
        guard.done = true;
        drop(guard);
        lock(&drive).remove_session(&upload_id);
        store.close_session(&upload_id);
        return Err(DriveError::too_large(MAX_FILE_BYTES));
    }
    if total.is_some_and(|t| after > t) {
        return Err(DriveError::bad_request(
            "More bytes were sent than the declared total size.",
        ));
    }
    if !new_bytes.is_empty() {
        let mut user = lock(&drive);
        let used = user.used_bytes() + user.session_bytes(Some(&upload_id));
        if used + after > user.quota_bytes {
            return Err(DriveError::quota_exceeded());
        }
        guard.received.extend_from_slice(new_bytes);
        user.set_session_bytes(&upload_id, after);
        drop(user);
    }
    guard.total = total;
    if total != Some(guard.received.len()) {
        return Ok(resume_incomplete(guard.received.len(), &upload_id));
    }

    // Complete: create or update the file.
    let content_type = guard.content_type.clone().or_else(|| {
        parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(multipart::essence)
            .filter(|m| !m.is_empty())
    });
    let content = Content {
        bytes: Bytes::from(std::mem::take(&mut guard.received)),
        mime: content_type,
    };
    let target = guard.target.clone();
    let mut user = lock(&drive);
    let others = user.session_bytes(Some(&upload_id));
    let result = match target {
        SessionTarget::Create(meta) => {
            ops::create(&mut user, meta, Some(content.clone()), others, now_ms)
        }
        SessionTarget::Update { id, metadata } => ops::update(
            &mut user,
            &id,
            metadata,
            Some(content.clone()),
            (&params.list("addParents"), &params.list("removeParents")),
            others,
            now_ms,
        ),
    };
    if result.is_ok() {
        user.remove_session(&upload_id);
    }
    drop(user);
    match result {
        Ok(value) => {
            guard.done = true;
            drop(guard);
            store.close_session(&upload_id);
            let mut response = file_response(value, params)?;
            if let Ok(value) = HeaderValue::from_str(&upload_id) {
                response.headers_mut().insert("x-guploader-uploadid", value);
            }
            Ok(response)
        }
        Err(error) => {
            // Keep the bytes so that the client may retry the final request.
            guard.received = content.bytes.to_vec();
            Err(error)
        }
    }
}

/// A parsed `Range: bytes=...` of a download.
fn parse_range(text: &str, len: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = text.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let suffix: usize = last.parse().ok()?;
        if suffix == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(suffix), len - 1)));
    }
    let first: usize = first.parse().ok()?;
    let last: usize = if last.is_empty() {
        usize::MAX
    } else {
        last.parse().ok()?
    };
    if last < first {
        return None;
    }
    if first >= len {
        return Some(Err(()));
    }
    Some(Ok((first, last.min(len - 1))))
}

fn download(content: Bytes, mime: &str, headers: &HeaderMap) -> Result<Response, DriveError> {
    let len = content.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|text| parse_range(text, len));
    let (status, body, content_range) = match range {
        None => (StatusCode::OK, content, None),
        Some(Err(())) => return Err(DriveError::range_not_satisfiable(len)),
        Some(Ok((first, last))) => (
            StatusCode::PARTIAL_CONTENT,
            content.slice(first..=last),
            Some(format!("bytes {first}-{last}/{len}")),
        ),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    let mime = HeaderValue::from_str(mime)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, mime);
    if let Some(content_range) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::CONTENT_RANGE, content_range);
    }
    Ok(response)
}
