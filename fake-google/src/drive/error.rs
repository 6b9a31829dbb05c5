//! Drive's error envelope: `{"error": {"code", "message", "errors": [...], "status"?}}`.
//!
//! Messages, reasons and statuses copy what Google's Drive v3 answers. Errors raised by
//! Google's front end (authentication, scopes, not implemented) carry a `status`; Drive's own
//! errors (`notFound`, `notSupportedForAppDataFolderFiles`, ...) do not, as on the real service.

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

/// The `WWW-Authenticate` realm Google sends with its 401 and 403 scope answers.
const REALM: &str = "Bearer realm=\"https://accounts.google.com/\"";

/// One Drive error answer, rendered in Google's envelope (boxed: it travels in `Result`s).
#[derive(Debug, Clone)]
pub(crate) struct DriveError(Box<ErrorBody>);

#[derive(Debug, Clone)]
struct ErrorBody {
    code: StatusCode,
    message: String,
    reason: &'static str,
    /// `errors[0].message` when it differs from the top-level message.
    item_message: Option<String>,
    /// `(location, locationType)`.
    location: Option<(String, &'static str)>,
    status: Option<&'static str>,
    details: Option<Value>,
    headers: Vec<(HeaderName, String)>,
}

impl DriveError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorBody {
            code,
            message: message.into(),
            reason,
            item_message: None,
            location: None,
            status: None,
            details: None,
            headers: Vec::new(),
        }))
    }

    fn at(mut self, location: impl Into<String>, location_type: &'static str) -> Self {
        self.0.location = Some((location.into(), location_type));
        self
    }

    fn with_status(mut self, status: &'static str) -> Self {
        self.0.status = Some(status);
        self
    }

    fn with_item_message(mut self, message: impl Into<String>) -> Self {
        self.0.item_message = Some(message.into());
        self
    }

    fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.0.headers.push((name, value.into()));
        self
    }

    /// 401 for a request without any credential.
    pub(crate) fn missing_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authError",
            "Request is missing required authentication credential. Expected OAuth 2 access \
             token, login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )
        .with_item_message("Login Required.")
        .at("Authorization", "header")
        .with_status("UNAUTHENTICATED")
        .with_header(header::WWW_AUTHENTICATE, REALM)
    }

    /// 401 for an unknown, expired or revoked access token.
    pub(crate) fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )
        .with_item_message("Invalid Credentials")
        .at("Authorization", "header")
        .with_status("UNAUTHENTICATED")
        .with_header(
            header::WWW_AUTHENTICATE,
            format!("{REALM}, error=\"invalid_token\""),
        )
    }

    /// 403 for a token without the `drive.appdata` scope; `method` is the RPC name, e.g.
    /// `google.apps.drive.v3.DriveFiles.Get`.
    pub(crate) fn insufficient_scopes(method: &str) -> Self {
        let mut error = Self::new(
            StatusCode::FORBIDDEN,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        )
        .with_item_message("Insufficient Permission")
        .with_status("PERMISSION_DENIED")
        .with_header(
            header::WWW_AUTHENTICATE,
            format!(
                "{REALM}, error=\"insufficient_scope\", \
                 scope=\"https://www.googleapis.com/auth/drive.appdata\""
            ),
        );
        error.0.details = Some(json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "domain": "googleapis.com",
            "metadata": {"service": "drive.googleapis.com", "method": method},
        }]));
        error
    }

    /// 403 when a request names a space other than `appDataFolder` (or none, meaning `drive`).
    pub(crate) fn spaces_not_granted() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficientScopes",
            "The granted scopes do not give access to all of the requested spaces.",
        )
        .at("spaces", "parameter")
    }

    /// 403 when a file would be placed outside the application data folder.
    pub(crate) fn outside_app_data() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficientScopes",
            "The granted scopes do not give access to all of the requested spaces.",
        )
        .at("parents", "parameter")
    }

    /// 404 for a file that does not exist for this user.
    pub(crate) fn file_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("File not found: {id}."),
        )
        .at("fileId", "parameter")
    }

    /// 403 for trash and share operations, which the application data folder refuses.
    pub(crate) fn not_supported_for_app_data() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "notSupportedForAppDataFolderFiles",
            "Method not supported for files within the Application Data folder.",
        )
    }

    /// 400 `invalid` for a parameter with a bad value.
    pub(crate) fn invalid_value(location: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", "Invalid Value").at(location, "parameter")
    }

    /// 400 `invalid` for an integer parameter outside its range.
    pub(crate) fn out_of_range(location: &str, value: &str, min: u64, max: u64) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("Invalid value '{value}'. Values must be within the range: [{min}, {max}]"),
        )
        .at(location, "parameter")
    }

    /// 400 for a `fields` selection naming an unknown field or not parsing.
    pub(crate) fn invalid_fields(selection: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalidParameter",
            format!("Invalid field selection {selection}"),
        )
        .at("fields", "parameter")
    }

    /// 400 for a request body that is not valid JSON.
    pub(crate) fn parse_error() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "parseError", "Parse Error")
    }

    /// 400 `badRequest` with a message.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "badRequest", message)
    }

    /// 400 `required` for a missing required parameter.
    pub(crate) fn required(location: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "required",
            "Required parameter: ".to_owned() + location,
        )
        .at(location, "parameter")
    }

    /// 403 for writing a read-only field.
    pub(crate) fn field_not_writable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "fieldNotWritable", message)
    }

    /// 403 for giving a file more than one parent.
    pub(crate) fn cannot_add_parent() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "cannotAddParent",
            "Increasing the number of parents is not allowed.",
        )
    }

    /// 403 for changing the application data folder itself.
    pub(crate) fn insufficient_file_permissions() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficientFilePermissions",
            "The user does not have sufficient permissions for this file.",
        )
    }

    /// 403 for `alt=media` on a folder or a Google Docs type.
    pub(crate) fn not_downloadable() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "fileNotDownloadable",
            "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
        )
        .at("alt", "parameter")
    }

    /// 403 when the user's storage quota would be exceeded.
    pub(crate) fn quota_exceeded() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "storageQuotaExceeded",
            "The user's Drive storage quota has been exceeded.",
        )
    }

    /// 413 for a body or file beyond the fake's size limit.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "uploadTooLarge",
            format!("The request is larger than the fake's limit of {limit} bytes."),
        )
        .with_status("FAILED_PRECONDITION")
    }

    /// 416 for a `Range` beyond the end of the content.
    pub(crate) fn range_not_satisfiable(len: usize) -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "requestedRangeNotSatisfiable",
            "Request range not satisfiable",
        )
        .with_header(header::CONTENT_RANGE, format!("bytes */{len}"))
    }

    /// 404 for an unknown or finished resumable upload session.
    pub(crate) fn upload_session_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "notFound",
            "The upload session was not found, has expired or is already complete.",
        )
        .at("upload_id", "parameter")
    }

    /// 501 for a Drive method the fake does not implement, worded like the fake's fallback:
    /// `Method not implemented by fake-google: drive.files.copy (POST /drive/v3/files/ID/copy)`.
    pub(crate) fn not_implemented(name: &str, method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "notImplemented",
            format!("Method not implemented by fake-google: {name} ({method} {path})"),
        )
        .with_status("UNIMPLEMENTED")
    }

    /// The envelope as JSON.
    pub(crate) fn body(&self) -> Value {
        let mut item = Map::new();
        item.insert(
            "message".into(),
            Value::String(
                self.0
                    .item_message
                    .clone()
                    .unwrap_or_else(|| self.0.message.clone()),
            ),
        );
        item.insert("domain".into(), Value::String("global".into()));
        item.insert("reason".into(), Value::String(self.0.reason.into()));
        if let Some((location, location_type)) = &self.0.location {
            item.insert("location".into(), Value::String(location.clone()));
            item.insert(
                "locationType".into(),
                Value::String((*location_type).into()),
            );
        }
        let mut error = Map::new();
        error.insert("code".into(), Value::from(self.0.code.as_u16()));
        error.insert("message".into(), Value::String(self.0.message.clone()));
        error.insert("errors".into(), Value::Array(vec![Value::Object(item)]));
        if let Some(status) = self.0.status {
            error.insert("status".into(), Value::String(status.into()));
        }
        if let Some(details) = &self.0.details {
            error.insert("details".into(), details.clone());
        }
        json!({ "error": error })
    }
}

impl IntoResponse for DriveError {
    fn into_response(self) -> Response {
        let body = super::json_bytes(&self.body(), true);
        let mut response = (self.0.code, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        for (name, value) in &self.0.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name.clone(), value);
            }
        }
        response
    }
}
