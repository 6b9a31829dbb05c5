//! Google's HTTP surface: token, revoke, certs, discovery, userinfo, tokeninfo, the 501 fallback,
//! and the fault-injection + journal middleware around everything but `/_fake/`.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::Control;
use crate::grants::{SCOPE_EMAIL, SCOPE_PROFILE};
use crate::model::{Endpoint, Fault, JournalEntry};
use crate::state::{Note, OAuthError};

/// Largest request body read by the OAuth endpoints.
const MAX_FORM: usize = 1 << 20;

/// Marks a response whose connection must be closed without answering.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DropConnection;

/// The whole app: Google's paths, Drive, the control API, the fallback, and the middleware.
pub(crate) fn app(control: Control) -> Router {
    let google = Router::new()
        .route("/token", post(token))
        .route("/o/oauth2/token", post(token))
        .route("/oauth2/v4/token", post(token))
        .route("/revoke", get(revoke).post(revoke))
        .route("/o/oauth2/revoke", get(revoke).post(revoke))
        .route("/oauth2/v3/certs", get(jwks))
        .route("/oauth2/v1/certs", get(pem_certs))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/v1/userinfo", get(userinfo_oidc).post(userinfo_oidc))
        .route(
            "/oauth2/v3/userinfo",
            get(userinfo_oidc).post(userinfo_oidc),
        )
        .route(
            "/oauth2/v2/userinfo",
            get(userinfo_legacy).post(userinfo_legacy),
        )
        .route(
            "/oauth2/v1/userinfo",
            get(userinfo_legacy).post(userinfo_legacy),
        )
        .route("/oauth2/v3/tokeninfo", get(tokeninfo).post(tokeninfo))
        .route("/tokeninfo", get(tokeninfo).post(tokeninfo))
        .merge(crate::control::routes())
        .merge(crate::authorize::routes())
        .merge(crate::risc::routes())
        .with_state(control.clone());
    google
        .merge(crate::drive::router(control.clone()))
        .fallback(not_implemented)
        .method_not_allowed_fallback(not_implemented)
        .layer(middleware::from_fn_with_state(control, observe))
}

/// Which endpoint a path belongs to (for faults and the journal).
pub(crate) fn classify(path: &str) -> Endpoint {
    match path {
        "/token" | "/o/oauth2/token" | "/oauth2/v4/token" => Endpoint::Token,
        "/revoke" | "/o/oauth2/revoke" => Endpoint::Revoke,
        "/oauth2/v3/certs" | "/oauth2/v1/certs" => Endpoint::Certs,
        "/v1/userinfo" | "/oauth2/v3/userinfo" | "/oauth2/v2/userinfo" | "/oauth2/v1/userinfo" => {
            Endpoint::Userinfo
        }
        "/oauth2/v3/tokeninfo" | "/tokeninfo" => Endpoint::Tokeninfo,
        "/.well-known/openid-configuration" => Endpoint::Discovery,
        "/o/oauth2/auth" | "/o/oauth2/v2/auth" => Endpoint::Authorize,
        p if p.starts_with("/o/oauth2/v2/auth/") => Endpoint::Authorize,
        "/.well-known/risc-configuration" => Endpoint::Risc,
        p if p.starts_with("/v1beta/stream") => Endpoint::Risc,
        p if p.starts_with("/drive/") => Endpoint::Drive,
        p if p.starts_with("/upload/") => Endpoint::Upload,
        _ => Endpoint::Other,
    }
}

/// Applies faults and records the journal for every request outside `/_fake/`.
async fn observe(State(control): State<Control>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/_fake" || path.starts_with("/_fake/") {
        return next.run(req).await;
    }
    let endpoint = classify(&path);
    let method = req.method().to_string();
    let bearer_sub = match endpoint {
        Endpoint::Drive | Endpoint::Upload | Endpoint::Userinfo | Endpoint::Tokeninfo => {
            bearer(req.headers())
                .and_then(|t| control.inner.access_token(t))
                .map(|r| r.sub)
        }
        _ => None,
    };
    let fault = control.inner.take_fault(endpoint);
    // What the journal learns from a request the real endpoint never sees.
    let mut peeked = Note::default();
    let response = match &fault {
        None => next.run(req).await,
        Some(f) if !f.replaces_answer() => {
            if let Some(ms) = f.delay_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            next.run(req).await
        }
        Some(f) => {
            peeked = peek(&control, endpoint, req).await;
            if let Some(ms) = f.delay_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if f.drop_connection {
                let mut r = StatusCode::BAD_GATEWAY.into_response();
                r.extensions_mut().insert(DropConnection);
                r
            } else {
                fault_response(endpoint, f)
            }
        }
    };
    let note = response
        .extensions()
        .get::<Note>()
        .cloned()
        .unwrap_or(peeked);
    let dropped = response.extensions().get::<DropConnection>().is_some();
    control.inner.record(JournalEntry {
        endpoint: endpoint.as_str().to_owned(),
        method,
        path,
        status: if dropped {
            0
        } else {
            response.status().as_u16()
        },
        grant_type: note.grant_type,
        sub: note.sub.or(bearer_sub),
        client_id: note.client_id,
        fault: fault.map(|f| f.kind().to_owned()),
        event: None,
        jti: None,
        error: None,
    });
    response
}

/// The journal's note for a request a fault answers instead of the endpoint: a token request's
/// `grant_type` and the user of its code or refresh token, a revocation's user. Looks tokens up
/// without consuming or checking them.
async fn peek(control: &Control, endpoint: Endpoint, req: Request) -> Note {
    let param = match endpoint {
        Endpoint::Token | Endpoint::Revoke => match params(req).await {
            Ok((_, p)) => p,
            Err(_) => return Note::default(),
        },
        _ => return Note::default(),
    };
    let grant_type = param.get("grant_type").filter(|g| !g.is_empty()).cloned();
    let token = match (endpoint, grant_type.as_deref()) {
        (Endpoint::Revoke, _) => param.get("token"),
        (_, Some("authorization_code")) => param.get("code"),
        (_, Some("refresh_token")) => param.get("refresh_token"),
        _ => None,
    };
    Note {
        grant_type: (endpoint == Endpoint::Token)
            .then_some(grant_type)
            .flatten(),
        sub: token
            .filter(|t| !t.is_empty())
            .and_then(|t| control.inner.sub_of_token(t)),
        client_id: None,
    }
}

/// The answer a status/body/malformed fault replaces the real one with.
fn fault_response(endpoint: Endpoint, fault: &Fault) -> Response {
    let json_type = HeaderValue::from_static("application/json; charset=UTF-8");
    if fault.malformed_json {
        let status = status_or(fault.status, StatusCode::OK);
        let body = match endpoint {
            Endpoint::Token => r#"{"access_token": "ya29.a0trunc"#,
            Endpoint::Certs => r#"{"keys": [{"kid": "#,
            Endpoint::Drive | Endpoint::Upload => r#"{"kind": "drive#file", "id": "#,
            _ => r#"{"sub": "#,
        };
        return (status, [(header::CONTENT_TYPE, json_type)], body).into_response();
    }
    if let Some(body) = &fault.body {
        let status = status_or(fault.status, StatusCode::OK);
        return match body {
            Value::String(s) => (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=UTF-8"),
                )],
                s.clone(),
            )
                .into_response(),
            other => (
                status,
                [(header::CONTENT_TYPE, json_type)],
                other.to_string(),
            )
                .into_response(),
        };
    }
    let status = status_or(fault.status, StatusCode::INTERNAL_SERVER_ERROR);
    match endpoint {
        Endpoint::Drive | Endpoint::Upload | Endpoint::Risc | Endpoint::Other => google_envelope(
            status,
            drive_reason(status),
            "Fault injected by fake-google",
        ),
        _ => oauth_error(&OAuthError::new(
            status.as_u16(),
            oauth_slug(status),
            status.canonical_reason().unwrap_or("Error"),
        )),
    }
}

fn status_or(status: Option<u16>, default: StatusCode) -> StatusCode {
    status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(default)
}

fn oauth_slug(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "invalid_client",
        403 => "access_denied",
        429 => "rate_limit_exceeded",
        503 => "temporarily_unavailable",
        _ => "internal_failure",
    }
}

fn drive_reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "authError",
        403 => "forbidden",
        404 => "notFound",
        429 => "rateLimitExceeded",
        503 => "backendError",
        s if s >= 500 => "internalError",
        _ => "badRequest",
    }
}

/// The gRPC status name Google's APIs put in their error envelope's `status`.
pub(crate) fn grpc_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

/// Google's API error envelope.
pub(crate) fn google_envelope(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": grpc_status(status),
        }
    });
    json_response(status, &body)
}

/// A JSON answer with Google's content type.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// An OAuth error answer `{"error", "error_description"}`.
pub(crate) fn oauth_error(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_response(
        status,
        &json!({"error": e.error, "error_description": e.description}),
    );
    no_store(r.headers_mut());
    r
}

fn no_store(h: &mut HeaderMap) {
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// 501 naming the method, in Google's envelope.
async fn not_implemented(method: Method, uri: http::Uri) -> Response {
    let path = uri.path();
    if path == "/_fake" || path.starts_with("/_fake/") {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not_found", "message": format!("no control endpoint {method} {path}")}),
        );
    }
    let name = method_name(&method, path);
    google_envelope(
        StatusCode::NOT_IMPLEMENTED,
        "notImplemented",
        &format!("Method not implemented by fake-google: {name} ({method} {path})"),
    )
}

/// A Google-style method name for a path, e.g. `drive.files.watch` or `drive.about.get`.
fn method_name(method: &Method, path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segs.as_slice() {
        ["upload", "drive", "v3", rest @ ..] | ["drive", "v3", rest @ ..] => rest,
        _ => {
            return format!(
                "{}{}",
                method.as_str().to_ascii_lowercase(),
                path.replace('/', ".")
            );
        }
    };
    let verb = |has_id: bool| match *method {
        Method::GET if has_id => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PATCH | Method::PUT => "update",
        Method::DELETE => "delete",
        _ => "call",
    };
    match rest {
        [] => "drive".to_owned(),
        [res] => format!("drive.{res}.{}", verb(false)),
        [res, _id] => format!("drive.{res}.{}", verb(true)),
        [_res, _id, sub] if matches!(*sub, "permissions" | "comments" | "revisions") => {
            format!("drive.{sub}.{}", verb(false))
        }
        [res, _id, action] => format!("drive.{res}.{action}"),
        [_res, _id, sub, ..] => format!("drive.{sub}.{}", verb(true)),
    }
}

/// The `Authorization: Bearer` value, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| s.to_owned())
    };
    Some((dec(id), dec(secret)))
}

/// Query string and body parameters (form or JSON), the body's taking precedence.
async fn params(req: Request) -> Result<(HeaderMap, HashMap<String, String>), OAuthError> {
    let (parts, body) = req.into_parts();
    let mut map: HashMap<String, String> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let bytes: Bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| OAuthError::new(400, "invalid_request", "Request body too large."))?;
    if !bytes.is_empty() {
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            let v: Map<String, Value> = serde_json::from_slice(&bytes)
                .map_err(|_| OAuthError::new(400, "invalid_request", "Invalid JSON payload."))?;
            for (k, v) in v {
                let s = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(k, s);
            }
        } else {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
                .map_err(|_| OAuthError::new(400, "invalid_request", "Bad Request"))?;
            map.extend(pairs);
        }
    }
    Ok((parts.headers, map))
}

fn with_note(mut r: Response, note: Note) -> Response {
    r.extensions_mut().insert(note);
    r
}

/// `POST /token`.
async fn token(State(c): State<Control>, req: Request) -> Response {
    let (headers, params) = match params(req).await {
        Ok(p) => p,
        Err(e) => return oauth_error(&e),
    };
    let mut note = Note::default();
    match c.inner.token(&params, basic(&headers), &mut note) {
        Ok(t) => {
            // Serialized from the struct so the fields keep Google's order.
            let body = serde_json::to_string(&t).unwrap_or_default();
            let mut r = (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                )],
                body,
            )
                .into_response();
            no_store(r.headers_mut());
            with_note(r, note)
        }
        Err(e) => with_note(oauth_error(&e), note),
    }
}

/// `POST /revoke` (and `GET`, as oauth2client uses).
async fn revoke(State(c): State<Control>, req: Request) -> Response {
    let (_, params) = match params(req).await {
        Ok(p) => p,
        Err(e) => return oauth_error(&e),
    };
    let Some(token) = params.get("token").filter(|t| !t.is_empty()) else {
        return oauth_error(&OAuthError::new(
            400,
            "invalid_request",
            "Missing required parameter: token",
        ));
    };
    match c.inner.revoke(token) {
        Ok(sub) => with_note(
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                )],
                "",
            )
                .into_response(),
            Note {
                sub: Some(sub),
                ..Note::default()
            },
        ),
        Err(e) => oauth_error(&e),
    }
}

fn cache_headers(c: &Control, r: &mut Response) {
    let max_age = c.inner.settings().jwks_max_age_secs;
    if let Ok(v) = HeaderValue::from_str(&format!(
        "public, max-age={max_age}, must-revalidate, no-transform"
    )) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    let expires = c.inner.now().saturating_add(max_age as i64);
    if let Some(v) = http_date(expires).and_then(|s| HeaderValue::from_str(&s).ok()) {
        r.headers_mut().insert(header::EXPIRES, v);
    }
}

/// An HTTP date (`Tue, 24 Nov 2026 21:48:45 GMT`).
fn http_date(unix: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&fmt).ok()
}

/// `GET /oauth2/v3/certs`.
async fn jwks(State(c): State<Control>) -> Response {
    let keys: Vec<Value> = c.inner.keys.published().iter().map(|k| k.jwk()).collect();
    let mut r = json_response(StatusCode::OK, &json!({ "keys": keys }));
    cache_headers(&c, &mut r);
    r
}

/// `GET /oauth2/v1/certs`.
async fn pem_certs(State(c): State<Control>) -> Response {
    let map: Map<String, Value> = c
        .inner
        .keys
        .published()
        .iter()
        .map(|k| (k.kid.clone(), Value::String(k.cert_pem.clone())))
        .collect();
    let mut r = json_response(StatusCode::OK, &Value::Object(map));
    cache_headers(&c, &mut r);
    r
}

/// `GET /.well-known/openid-configuration`.
async fn discovery(State(c): State<Control>) -> Response {
    let base = c.inner.base_url();
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": crate::state::ISSUER,
            "authorization_endpoint": format!("{base}/o/oauth2/v2/auth"),
            "device_authorization_endpoint": format!("{base}/device/code"),
            "token_endpoint": format!("{base}/token"),
            "userinfo_endpoint": format!("{base}/v1/userinfo"),
            "revocation_endpoint": format!("{base}/revoke"),
            "jwks_uri": format!("{base}/oauth2/v3/certs"),
            "response_types_supported": [
                "code", "token", "id_token", "code token", "code id_token",
                "token id_token", "code token id_token", "none"
            ],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": [
                "aud", "email", "email_verified", "exp", "family_name", "given_name",
                "iat", "iss", "name", "picture", "sub"
            ],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": [
                "authorization_code", "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
                "urn:ietf:params:oauth:grant-type:jwt-bearer"
            ]
        }),
    )
}

/// The access token of a userinfo/tokeninfo request: Bearer header, else `access_token` parameter.
fn access_token_of<'a>(
    headers: &'a HeaderMap,
    params: &'a HashMap<String, String>,
) -> Option<&'a str> {
    bearer(headers).or_else(|| params.get("access_token").map(String::as_str))
}

fn userinfo_unauthorized() -> Response {
    let mut r = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "invalid_request", "error_description": "Invalid Credentials"}),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
        ),
    );
    r
}

async fn userinfo(c: Control, req: Request, legacy: bool) -> Response {
    let (headers, params) = match params(req).await {
        Ok(p) => p,
        Err(e) => return oauth_error(&e),
    };
    let Some(rec) = access_token_of(&headers, &params).and_then(|t| c.inner.access_token(t)) else {
        return userinfo_unauthorized();
    };
    let profile = c.inner.profile_of_sub(&rec.sub).unwrap_or_default();
    let email = rec.scopes.iter().any(|s| s == SCOPE_EMAIL);
    let prof = rec.scopes.iter().any(|s| s == SCOPE_PROFILE);
    let mut m = Map::new();
    m.insert(
        if legacy { "id" } else { "sub" }.to_owned(),
        Value::String(rec.sub.clone()),
    );
    if prof {
        for (k, v) in [
            ("name", &profile.name),
            ("given_name", &profile.given_name),
            ("family_name", &profile.family_name),
            ("picture", &profile.picture),
        ] {
            if let Some(v) = v {
                m.insert(k.to_owned(), Value::String(v.clone()));
            }
        }
    }
    if email {
        m.insert("email".to_owned(), Value::String(profile.email.clone()));
        m.insert(
            if legacy {
                "verified_email"
            } else {
                "email_verified"
            }
            .to_owned(),
            Value::Bool(profile.email_verified),
        );
    }
    if prof && let Some(l) = &profile.locale {
        m.insert("locale".to_owned(), Value::String(l.clone()));
    }
    if let Some(hd) = &profile.hd {
        m.insert("hd".to_owned(), Value::String(hd.clone()));
    }
    with_note(
        json_response(StatusCode::OK, &Value::Object(m)),
        Note {
            sub: Some(rec.sub),
            ..Note::default()
        },
    )
}

/// `GET /v1/userinfo`, `GET /oauth2/v3/userinfo`: the OpenID Connect shape.
async fn userinfo_oidc(State(c): State<Control>, req: Request) -> Response {
    userinfo(c, req, false).await
}

/// `GET /oauth2/v2/userinfo`: the legacy shape (`id`, `verified_email`).
async fn userinfo_legacy(State(c): State<Control>, req: Request) -> Response {
    userinfo(c, req, true).await
}

fn stringify(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        other => Value::String(other.to_string()),
    }
}

/// `GET|POST /oauth2/v3/tokeninfo?id_token=|access_token=` with every value a string, as Google does.
async fn tokeninfo(State(c): State<Control>, req: Request) -> Response {
    let invalid = || oauth_error(&OAuthError::new(400, "invalid_token", "Invalid Value"));
    let (headers, params) = match params(req).await {
        Ok(p) => p,
        Err(e) => return oauth_error(&e),
    };
    if let Some(id_token) = params.get("id_token") {
        let Some(claims) = crate::keys::verify_jwt(&c.inner.keys, id_token) else {
            return invalid();
        };
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if exp <= c.inner.now() {
            return invalid();
        }
        let kid = id_token
            .split('.')
            .next()
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
            .and_then(|h| h.get("kid").cloned())
            .unwrap_or(Value::Null);
        let mut out: Map<String, Value> = claims
            .iter()
            .map(|(k, v)| (k.clone(), stringify(v)))
            .collect();
        out.insert("alg".to_owned(), Value::String("RS256".to_owned()));
        out.insert("kid".to_owned(), stringify(&kid));
        out.insert("typ".to_owned(), Value::String("JWT".to_owned()));
        let sub = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        return with_note(
            json_response(StatusCode::OK, &Value::Object(out)),
            Note {
                sub,
                ..Note::default()
            },
        );
    }
    let Some(rec) = access_token_of(&headers, &params).and_then(|t| c.inner.access_token(t)) else {
        return invalid();
    };
    let now = c.inner.now();
    let mut out = Map::new();
    out.insert("azp".to_owned(), Value::String(rec.azp.clone()));
    out.insert("aud".to_owned(), Value::String(rec.client_id.clone()));
    out.insert("sub".to_owned(), Value::String(rec.sub.clone()));
    out.insert("scope".to_owned(), Value::String(rec.scopes.join(" ")));
    out.insert("exp".to_owned(), Value::String(rec.expires_at.to_string()));
    out.insert(
        "expires_in".to_owned(),
        Value::String((rec.expires_at - now).max(0).to_string()),
    );
    if rec.scopes.iter().any(|s| s == SCOPE_EMAIL)
        && let Some(p) = c.inner.profile_of_sub(&rec.sub)
    {
        out.insert("email".to_owned(), Value::String(p.email.clone()));
        out.insert(
            "email_verified".to_owned(),
            Value::String(p.email_verified.to_string()),
        );
    }
    out.insert(
        "access_type".to_owned(),
        Value::String("offline".to_owned()),
    );
    with_note(
        json_response(StatusCode::OK, &Value::Object(out)),
        Note {
            sub: Some(rec.sub),
            ..Note::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_by_endpoint() {
        assert_eq!(classify("/token"), Endpoint::Token);
        assert_eq!(classify("/drive/v3/files"), Endpoint::Drive);
        assert_eq!(classify("/upload/drive/v3/files"), Endpoint::Upload);
        assert_eq!(classify("/oauth2/v1/certs"), Endpoint::Certs);
        assert_eq!(classify("/nope"), Endpoint::Other);
        assert_eq!(classify("/o/oauth2/v2/auth"), Endpoint::Authorize);
        assert_eq!(classify("/o/oauth2/v2/auth/consent"), Endpoint::Authorize);
        assert_eq!(classify("/o/oauth2/auth"), Endpoint::Authorize);
        assert_eq!(classify("/o/oauth2/v2/authx"), Endpoint::Other);
        assert_eq!(classify("/v1beta/stream:update"), Endpoint::Risc);
        assert_eq!(classify("/v1beta/stream/status"), Endpoint::Risc);
        assert_eq!(classify("/.well-known/risc-configuration"), Endpoint::Risc);
    }

    #[test]
    fn unimplemented_drive_methods_get_google_style_names() {
        assert_eq!(
            method_name(&Method::GET, "/drive/v3/about"),
            "drive.about.list"
        );
        assert_eq!(
            method_name(&Method::GET, "/drive/v3/changes/x"),
            "drive.changes.get"
        );
        assert_eq!(
            method_name(&Method::POST, "/drive/v3/files/abc/watch"),
            "drive.files.watch"
        );
        assert_eq!(method_name(&Method::GET, "/foo/bar"), "get.foo.bar");
    }

    #[test]
    fn basic_auth_is_decoded_with_form_encoding() {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode("a%3Ab:s+x"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        assert_eq!(basic(&h), Some(("a:b".to_owned(), "s x".to_owned())));
    }

    #[test]
    fn http_dates_look_like_http_dates() {
        assert_eq!(http_date(0).unwrap(), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
