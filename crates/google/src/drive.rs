//! Google Drive v3 restricted to the `appDataFolder` space ([`Drive`]).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use offline_access_domain::{
    AccessToken, Drive, DriveError, DriveRequest, DriveResponse, FileContent,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tracing::Instrument;
use url::Url;

use crate::http::{self, Answer, Failure};

/// The metadata fields asked for on single files.
pub const FILE_FIELDS: &str = "id,name,mimeType,size,modifiedTime";
/// The fields asked for on `files.list`.
pub const LIST_FIELDS: &str = "nextPageToken,files(id,name,mimeType,size,modifiedTime)";
/// Page size of `files.list`.
pub const PAGE_SIZE: u32 = 100;
/// Largest JSON answer we read.
const MAX_JSON_BODY: usize = 1024 * 1024;
/// Longest accepted file name (characters).
pub const MAX_NAME_CHARS: usize = 255;

/// Drive v3 (`files` in `appDataFolder`) with the user's access token.
pub struct GoogleDrive {
    pub(crate) http: reqwest::Client,
    /// `.../drive/v3/files`.
    pub(crate) files: String,
    /// `.../upload/drive/v3/files`.
    pub(crate) upload: String,
    /// `files.get('appDataFolder')` with its fields, built once (the call every sync starts with).
    pub(crate) appfolder: Url,
    /// The request timeout: for a download, the longest wait for its answer and then for each chunk.
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for GoogleDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleDrive")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// What to expect back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Json,
    Content,
    Empty,
}

/// One prepared HTTP call.
struct Call {
    method: Method,
    url: Url,
    content_type: Option<String>,
    body: Option<Bytes>,
    expect: Expect,
}

/// Whether `id` is a Drive file id (or alias): `[A-Za-z0-9_-]{1,128}`. Anything else never reaches a URL.
#[must_use]
pub fn is_valid_file_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn bad(reason: &str) -> DriveError {
    DriveError::BadRequest(reason.to_owned())
}

fn check_id(id: &str) -> Result<&str, DriveError> {
    if is_valid_file_id(id) {
        Ok(id)
    } else {
        Err(bad("invalid file id"))
    }
}

fn check_name(name: &str) -> Result<&str, DriveError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(bad("invalid file name"));
    }
    Ok(name)
}

/// A media type usable as a header value: visible ASCII and spaces, with a `/`, at most 255 bytes.
fn check_content_type(content_type: &str) -> Result<&str, DriveError> {
    let ok = !content_type.is_empty()
        && content_type.len() <= 255
        && content_type.contains('/')
        && content_type
            .bytes()
            .all(|b| b.is_ascii_graphic() || b == b' ');
    if ok {
        Ok(content_type)
    } else {
        Err(bad("invalid content type"))
    }
}

fn check_page_token(token: &str) -> Result<&str, DriveError> {
    if token.is_empty() || token.len() > 1024 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("invalid page token"));
    }
    Ok(token)
}

/// The URL of `files.get('appDataFolder')` under `files` (`.../drive/v3/files`).
pub(crate) fn appfolder_url(files: &str) -> Result<Url, DriveError> {
    url(files, Some("appDataFolder"), &[("fields", FILE_FIELDS)])
}

fn url(base: &str, path: Option<&str>, query: &[(&str, &str)]) -> Result<Url, DriveError> {
    let full = match path {
        Some(id) => format!("{base}/{id}"),
        None => base.to_owned(),
    };
    let mut url = Url::parse(&full).map_err(|_| DriveError::Protocol("cannot build URL".into()))?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

/// A random multipart boundary that does not occur in `content`.
fn boundary_for(content: &[u8]) -> Result<String, DriveError> {
    for _ in 0..4 {
        let mut random = [0u8; 16];
        aws_lc_rs::rand::fill(&mut random)
            .map_err(|_| DriveError::Protocol("no randomness".into()))?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let boundary = format!("offline_access_{hex}");
        if !content
            .windows(boundary.len())
            .any(|w| w == boundary.as_bytes())
        {
            return Ok(boundary);
        }
    }
    Err(DriveError::Protocol(
        "cannot choose a multipart boundary".into(),
    ))
}

/// Builds Drive's `multipart/related` upload body: JSON metadata, then the content.
pub(crate) fn multipart_body(
    metadata: &serde_json::Value,
    content_type: &str,
    content: &[u8],
) -> Result<(String, Bytes), DriveError> {
    let boundary = boundary_for(content)?;
    let metadata = serde_json::to_vec(metadata)
        .map_err(|_| DriveError::Protocol("cannot encode metadata".into()))?;
    let mut body = BytesMut::with_capacity(content.len() + metadata.len() + 256);
    body.put_slice(
        format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes(),
    );
    body.put_slice(&metadata);
    body.put_slice(format!("\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
    body.put_slice(content);
    body.put_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok((
        format!("multipart/related; boundary={boundary}"),
        body.freeze(),
    ))
}

impl GoogleDrive {
    fn prepare(&self, request: &DriveRequest) -> Result<Call, DriveError> {
        let files = self.files.as_str();
        let upload = self.upload.as_str();
        let call = match request {
            DriveRequest::GetAppFolder => Call {
                method: Method::GET,
                url: self.appfolder.clone(),
                content_type: None,
                body: None,
                expect: Expect::Json,
            },
            DriveRequest::ListFiles { page_token } => {
                let page_size = PAGE_SIZE.to_string();
                let mut query = vec![
                    ("spaces", "appDataFolder"),
                    ("fields", LIST_FIELDS),
                    ("pageSize", page_size.as_str()),
                ];
                if let Some(token) = page_token {
                    query.push(("pageToken", check_page_token(token)?));
                }
                Call {
                    method: Method::GET,
                    url: url(files, None, &query)?,
                    content_type: None,
                    body: None,
                    expect: Expect::Json,
                }
            }
            DriveRequest::CreateFile {
                name,
                content_type,
                content,
            } => {
                let metadata = serde_json::json!({
                    "name": check_name(name)?,
                    "parents": ["appDataFolder"],
                    "mimeType": check_content_type(content_type)?,
                });
                let (multipart_type, body) = multipart_body(&metadata, content_type, content)?;
                Call {
                    method: Method::POST,
                    url: url(
                        upload,
                        None,
                        &[("uploadType", "multipart"), ("fields", FILE_FIELDS)],
                    )?,
                    content_type: Some(multipart_type),
                    body: Some(body),
                    expect: Expect::Json,
                }
            }
            DriveRequest::GetFile { id } => Call {
                method: Method::GET,
                url: url(files, Some(check_id(id)?), &[("fields", FILE_FIELDS)])?,
                content_type: None,
                body: None,
                expect: Expect::Json,
            },
            DriveRequest::Download { id } => Call {
                method: Method::GET,
                url: url(files, Some(check_id(id)?), &[("alt", "media")])?,
                content_type: None,
                body: None,
                expect: Expect::Content,
            },
            DriveRequest::UpdateContent {
                id,
                content_type,
                content,
            } => Call {
                method: Method::PATCH,
                url: url(
                    upload,
                    Some(check_id(id)?),
                    &[("uploadType", "media"), ("fields", FILE_FIELDS)],
                )?,
                content_type: Some(check_content_type(content_type)?.to_owned()),
                body: Some(content.clone()),
                expect: Expect::Json,
            },
            DriveRequest::Delete { id } => Call {
                method: Method::DELETE,
                url: url(files, Some(check_id(id)?), &[])?,
                content_type: None,
                body: None,
                expect: Expect::Empty,
            },
        };
        Ok(call)
    }

    async fn run(
        &self,
        access_token: &AccessToken,
        call: Call,
    ) -> Result<DriveResponse, DriveError> {
        let bearer = http::bearer(access_token).ok_or(DriveError::Unauthorized)?;
        let host = host_of(&call.url);
        let mut builder = self
            .http
            .request(call.method, call.url)
            .header(AUTHORIZATION, bearer);
        if let Some(content_type) = call.content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        if let Some(body) = call.body {
            builder = builder.body(body);
        }
        if call.expect == Expect::Content {
            return self.download(builder, &host).await;
        }
        let response = self.send_head(builder, &host, false).await?;
        let answer = http::read(response, MAX_JSON_BODY)
            .await
            .map_err(|failure| broke_off(&host, failure))?;
        if !answer.status.is_success() {
            return Err(logged(map_error(&answer), &host, answer.status));
        }
        if call.expect == Expect::Empty {
            return Ok(DriveResponse::Empty);
        }
        match serde_json::from_slice::<serde_json::Value>(&answer.body) {
            Ok(value @ serde_json::Value::Object(_)) => Ok(DriveResponse::Json(value)),
            _ => Err(DriveError::Protocol("answer is not a JSON object".into())),
        }
    }

    /// `alt=media`: waits for the answer's head, then hands back the content as a stream that reads each chunk
    /// as the caller asks for it (so nothing of a large file is held beyond the chunk in flight). Errors are
    /// read whole, as for JSON.
    async fn download(
        &self,
        builder: reqwest::RequestBuilder,
        host: &str,
    ) -> Result<DriveResponse, DriveError> {
        let response = self.send_head(builder, host, true).await?;
        if !response.status().is_success() {
            let answer = tokio::time::timeout(self.timeout, http::read(response, MAX_JSON_BODY))
                .await
                .unwrap_or(Err(Failure::Timeout))
                .map_err(|failure| broke_off(host, failure))?;
            return Err(logged(map_error(&answer), host, answer.status));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let length = response.content_length();
        Ok(DriveResponse::Content {
            content_type,
            content: FileContent::streaming(
                length,
                http::chunks(response, self.timeout, unanswered),
            ),
        })
    }
}

impl GoogleDrive {
    /// Sends a request and waits for its answer's head. A download (`streamed`) lifts the client's whole-request
    /// timeout to [`http::MAX_DOWNLOAD_TIME`] and waits for the head for the request timeout only. A request that
    /// gets no answer is logged at `warn` with its cause ([`log_unreachable`]) and is
    /// [`DriveError::Unavailable`].
    async fn send_head(
        &self,
        builder: reqwest::RequestBuilder,
        host: &str,
        streamed: bool,
    ) -> Result<reqwest::Response, DriveError> {
        let sent = if streamed {
            let send = builder.timeout(http::MAX_DOWNLOAD_TIME).send();
            match tokio::time::timeout(self.timeout, send).await {
                Ok(sent) => sent,
                Err(_) => {
                    log_unreachable(host, "timeout", "no answer within the request timeout");
                    return Err(DriveError::Unavailable);
                }
            }
        } else {
            builder.send().await
        };
        sent.map_err(|error| {
            log_unreachable(host, cause_of(&error), &detail_of(&error));
            DriveError::Unavailable
        })
    }
}

/// `host[:port]` of a Drive URL: what the logs may say of where a call went (never the path or the query).
fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("unknown");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Why a request got no answer, in one word: `timeout`, `dns`, `tls` (the handshake or the certificate),
/// `connect` (refused, unreachable network, reset while connecting) or `connection` (the connection broke after
/// the request was sent).
fn cause_of(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        return "timeout";
    }
    let detail = detail_of(error).to_ascii_lowercase();
    // rustls' errors, by their wording (`invalid peer certificate: UnknownIssuer`, `received corrupt message of
    // type InvalidContentType`, `received fatal alert: ...`), or as I/O errors of kind `InvalidData`.
    let mut tls = [
        "certificate",
        "tls",
        "handshake",
        "corrupt message",
        "alert",
        "peer is incompatible",
        "peer misbehaved",
    ]
    .iter()
    .any(|word| detail.contains(word));
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            tls = true;
        }
        source = cause.source();
    }
    if detail.contains("dns error") || detail.contains("failed to lookup address") {
        "dns"
    } else if tls {
        "tls"
    } else if error.is_connect() {
        "connect"
    } else {
        "connection"
    }
}

/// The causes under a request error (`tcp connect error: Connection refused (os error 111)`), without the error's
/// own text, which names the URL.
fn detail_of(error: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if causes.is_empty() {
        "no detail".to_owned()
    } else {
        causes.join(": ")
    }
}

/// Logs a Drive call that got no answer: the host, the cause in one word and the transport's detail.
fn log_unreachable(host: &str, cause: &'static str, detail: &str) {
    tracing::warn!(
        host = %host,
        cause = %cause,
        detail,
        "Drive is unreachable ({cause} failed at {host}); check google.base_url, DNS, TLS trust (google.ca_file) and egress"
    );
}

/// A Drive answer whose body broke off (or was too large): logged like an unreachable Drive when it is one.
fn broke_off(host: &str, failure: Failure) -> DriveError {
    match failure {
        Failure::Timeout => {
            log_unreachable(host, "timeout", "the answer's body did not arrive in time")
        }
        Failure::Unreachable => log_unreachable(
            host,
            "connection",
            "the connection broke while reading the answer",
        ),
        Failure::TooLarge => {}
    }
    unanswered(failure)
}

/// Logs Drive's own error answers that make the call unavailable (5xx, 408), with the status.
fn logged(error: DriveError, host: &str, status: StatusCode) -> DriveError {
    if error == DriveError::Unavailable {
        tracing::warn!(
            host,
            status = status.as_u16(),
            "Drive answered with an outage status"
        );
    }
    error
}

/// A Drive call that got no complete answer.
fn unanswered(failure: Failure) -> DriveError {
    match failure {
        Failure::Timeout | Failure::Unreachable => DriveError::Unavailable,
        Failure::TooLarge => DriveError::Protocol("answer too large".into()),
    }
}

#[async_trait]
impl Drive for GoogleDrive {
    async fn execute(
        &self,
        access_token: &AccessToken,
        request: &DriveRequest,
    ) -> Result<DriveResponse, DriveError> {
        let operation = request.operation();
        let span = tracing::info_span!("google.drive", operation);
        async {
            let started = Instant::now();
            let result = match self.prepare(request) {
                Ok(call) => self.run(access_token, call).await,
                Err(e) => {
                    tracing::info!(error = %e, "Drive request refused before sending");
                    return Err(e);
                }
            };
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => drive_outcome(e),
            };
            http::record(endpoint_label(request), outcome, started);
            tracing::debug!(outcome, "Drive answered");
            result
        }
        .instrument(span)
        .await
    }
}

fn endpoint_label(request: &DriveRequest) -> &'static str {
    match request {
        DriveRequest::GetAppFolder => "drive_get_appfolder",
        DriveRequest::ListFiles { .. } => "drive_list",
        DriveRequest::CreateFile { .. } => "drive_create",
        DriveRequest::GetFile { .. } => "drive_get",
        DriveRequest::Download { .. } => "drive_download",
        DriveRequest::UpdateContent { .. } => "drive_update_content",
        DriveRequest::Delete { .. } => "drive_delete",
    }
}

fn drive_outcome(error: &DriveError) -> &'static str {
    match error {
        DriveError::Unauthorized => "unauthorized",
        DriveError::InsufficientScope => "insufficient_scope",
        DriveError::NotFound => "not_found",
        DriveError::RateLimited { .. } => "rate_limited",
        DriveError::BadRequest(_) => "bad_request",
        DriveError::Forbidden(_) => "forbidden",
        DriveError::Unavailable => "unavailable",
        DriveError::Protocol(_) => "protocol",
    }
}

/// Drive's error envelope: `{"error": {"code", "message", "errors": [{"reason", ...}], "details": [...]}}`.
#[derive(Deserialize)]
struct Envelope {
    error: EnvelopeError,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    errors: Vec<Reason>,
    #[serde(default)]
    details: Vec<Reason>,
}

#[derive(Deserialize)]
struct Reason {
    #[serde(default)]
    reason: Option<String>,
}

/// Maps a non-2xx Drive answer to a [`DriveError`].
pub(crate) fn map_error(answer: &Answer) -> DriveError {
    let reasons: Vec<String> = serde_json::from_slice::<Envelope>(&answer.body)
        .map(|env| {
            env.error
                .errors
                .into_iter()
                .chain(env.error.details)
                .filter_map(|r| r.reason)
                .collect()
        })
        .unwrap_or_default();
    let has = |names: &[&str]| reasons.iter().any(|r| names.contains(&r.as_str()));
    let first = || {
        reasons
            .first()
            .map_or_else(|| "unknown".to_owned(), |r| http::sanitize_code(r))
    };
    match answer.status {
        StatusCode::UNAUTHORIZED => DriveError::Unauthorized,
        StatusCode::NOT_FOUND => DriveError::NotFound,
        StatusCode::TOO_MANY_REQUESTS => DriveError::RateLimited {
            retry_after: http::retry_after(&answer.headers),
        },
        StatusCode::FORBIDDEN => {
            if has(&[
                "insufficientPermissions",
                "insufficientScopes",
                "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            ]) {
                DriveError::InsufficientScope
            } else if has(&["userRateLimitExceeded", "rateLimitExceeded"]) {
                DriveError::RateLimited {
                    retry_after: http::retry_after(&answer.headers),
                }
            } else {
                DriveError::Forbidden(first())
            }
        }
        StatusCode::BAD_REQUEST => DriveError::BadRequest(first()),
        StatusCode::REQUEST_TIMEOUT => DriveError::Unavailable,
        s if s.is_server_error() => DriveError::Unavailable,
        s => DriveError::Protocol(format!("unexpected HTTP status {}", s.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_are_plain_drive_ids() {
        assert!(is_valid_file_id("1aBcD_e-FgH"));
        assert!(is_valid_file_id("appDataFolder"));
        for bad in [
            "",
            "../x",
            "a/b",
            "a%2Fb",
            "a b",
            "a?b",
            "é",
            &"a".repeat(129),
        ] {
            assert!(!is_valid_file_id(bad), "{bad}");
        }
    }

    #[test]
    fn multipart_body_has_metadata_then_content() {
        let meta = serde_json::json!({"name": "n"});
        let (ct, body) = multipart_body(&meta, "text/plain", b"hello").unwrap();
        let boundary = ct.strip_prefix("multipart/related; boundary=").unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(
            text,
            format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{{\"name\":\"n\"}}\r\n\
                 --{boundary}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
            )
        );
    }

    #[test]
    fn content_types_cannot_inject_headers() {
        assert!(check_content_type("text/plain; charset=utf-8").is_ok());
        for bad in [
            "",
            "text",
            "text/plain\r\nX: y",
            "text/plain\n",
            "tëxt/plain",
        ] {
            assert!(check_content_type(bad).is_err(), "{bad:?}");
        }
    }
}
