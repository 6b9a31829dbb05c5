//! The control API under `/_fake/`: JSON in, JSON out, 400 with a message on bad input.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Control;
use crate::clients::ClientSpec;
use crate::http::json_response;
use crate::model::{CodeRequest, ControlError, Fault, IdTokenRequest, SettingsPatch, UserSpec};

/// The `/_fake/` routes.
pub(crate) fn routes() -> Router<Control> {
    Router::new()
        .route("/_fake/client_secret.json", get(client_secret))
        .route("/_fake/clients", post(add_client))
        .route("/_fake/users", post(add_user))
        .route("/_fake/codes", post(mint_code))
        .route("/_fake/id_tokens", post(mint_id_token))
        .route("/_fake/users/{sub}/revoke", post(revoke_user))
        .route("/_fake/users/{sub}/expire", post(expire_user))
        .route("/_fake/users/{sub}/grants", get(user_grants))
        .route("/_fake/settings", get(get_settings).post(patch_settings))
        .route("/_fake/keys", get(keys))
        .route("/_fake/keys/rotate", post(rotate))
        .route(
            "/_fake/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_fake/requests", get(requests).delete(clear_requests))
        .route("/_fake/reset", post(reset))
        .route("/_fake/ca.pem", get(ca_pem))
        .route("/_fake/stats", get(stats))
}

/// A control API error: `{"error": code, "message"}` with `status`.
pub(crate) fn error_json(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, &json!({"error": code, "message": message}))
}

pub(crate) fn bad_request(message: impl Into<String>) -> Response {
    error_json(StatusCode::BAD_REQUEST, "bad_request", &message.into())
}

fn not_found(message: String) -> Response {
    error_json(StatusCode::NOT_FOUND, "not_found", &message)
}

fn internal(message: String) -> Response {
    error_json(StatusCode::INTERNAL_SERVER_ERROR, "internal", &message)
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        bad_request(self.0)
    }
}

/// Parses a JSON body; an empty body counts as `{}` when `empty_ok`.
pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes, empty_ok: bool) -> Result<T, ControlError> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        if empty_ok {
            b"{}"
        } else {
            return Err(ControlError(
                "the request body must be a JSON object".to_owned(),
            ));
        }
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|e| ControlError(format!("invalid request body: {e}")))
}

pub(crate) fn created(v: &Value) -> Response {
    json_response(StatusCode::CREATED, v)
}

/// `GET /_fake/client_secret.json[?client_id=ID]`: the default client's file, or that client's.
async fn client_secret(State(c): State<Control>, uri: http::Uri) -> Response {
    let wanted = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "client_id"))
        .map(|(_, v)| v);
    match wanted {
        None => json_response(StatusCode::OK, &c.client_secret_json_value()),
        Some(id) => match c.client_secret_json_of(&id) {
            Some(file) => json_response(StatusCode::OK, &file),
            None => not_found(format!("no client with client_id {id:?}")),
        },
    }
}

/// `POST /_fake/clients`: an empty body registers another web client with fresh credentials.
async fn add_client(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")),
    };
    let spec: ClientSpec = match parse(&body, true) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match c.inner.clients.register(&spec) {
        Ok(client) => {
            created(&json!({"client_id": client.client_id, "client_secret": client.client_secret}))
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /_fake/users`: a user the account chooser lists.
async fn add_user(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")),
    };
    let spec: UserSpec = match parse(&body, false) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match c.inner.add_user(&spec) {
        Ok(sub) => created(&json!({"sub": sub, "email": spec.email})),
        Err(e) => e.into_response(),
    }
}

async fn mint_code(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")),
    };
    let req: CodeRequest = match parse(&body, false) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match c.inner.mint_code(&req) {
        Ok(m) => created(&json!({"code": m.code, "sub": m.sub})),
        Err(e) => e.into_response(),
    }
}

async fn mint_id_token(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")),
    };
    let req: IdTokenRequest = match parse(&body, false) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match c.inner.mint_id_token(&req) {
        Ok(t) => created(&json!({ "id_token": t })),
        Err(e) => e.into_response(),
    }
}

async fn revoke_user(
    State(c): State<Control>,
    sub: Result<Path<String>, PathRejection>,
) -> Response {
    let sub = match sub {
        Ok(Path(s)) => s,
        Err(e) => return bad_request(format!("bad user path: {e}")),
    };
    if c.revoke_user(&sub).await {
        json_response(StatusCode::OK, &json!({"sub": sub, "revoked": true}))
    } else {
        not_found(format!("no user with sub {sub:?}"))
    }
}

async fn expire_user(
    State(c): State<Control>,
    sub: Result<Path<String>, PathRejection>,
) -> Response {
    let sub = match sub {
        Ok(Path(s)) => s,
        Err(e) => return bad_request(format!("bad user path: {e}")),
    };
    if c.inner.expire_user(&sub) {
        json_response(StatusCode::OK, &json!({"sub": sub, "expired": true}))
    } else {
        not_found(format!("no user with sub {sub:?}"))
    }
}

async fn user_grants(
    State(c): State<Control>,
    sub: Result<Path<String>, PathRejection>,
) -> Response {
    let sub = match sub {
        Ok(Path(s)) => s,
        Err(e) => return bad_request(format!("bad user path: {e}")),
    };
    match c.inner.grants(&sub) {
        Some(grants) => json_response(StatusCode::OK, &json!({ "grants": grants })),
        None => not_found(format!("no user with sub {sub:?}")),
    }
}

async fn get_settings(State(c): State<Control>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(c.inner.settings()).unwrap_or(Value::Null),
    )
}

async fn patch_settings(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")),
    };
    let patch: SettingsPatch = match parse(&body, false) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match c.inner.patch_settings(&patch) {
        Ok(s) => json_response(
            StatusCode::OK,
            &serde_json::to_value(s).unwrap_or(Value::Null),
        ),
        Err(e) => e.into_response(),
    }
}

async fn keys(State(c): State<Control>) -> Response {
    let published: Vec<String> = c
        .inner
        .keys
        .published()
        .iter()
        .map(|k| k.kid.clone())
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"current": c.inner.keys.current().kid, "published": published}),
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    retire_old: bool,
}

async fn rotate(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")),
    };
    let req: RotateBody = match parse(&body, true) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    // Generating a key (after the fixed ones run out) is CPU-bound: keep it off the reactor.
    let inner = c.inner.clone();
    let result = tokio::task::spawn_blocking(move || inner.keys.rotate(req.retire_old)).await;
    match result {
        Ok(Ok(_)) => keys(State(c)).await,
        Ok(Err(e)) => internal(format!("key rotation failed: {e}")),
        Err(e) => internal(format!("key rotation failed: {e}")),
    }
}

async fn list_faults(State(c): State<Control>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(c.inner.faults()).unwrap_or(Value::Null),
    )
}

async fn add_fault(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")),
    };
    let fault: Fault = match parse(&body, false) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let echo = serde_json::to_value(&fault).unwrap_or(Value::Null);
    match c.inner.add_fault(fault) {
        Ok(()) => created(&echo),
        Err(e) => e.into_response(),
    }
}

async fn clear_faults(State(c): State<Control>) -> Response {
    c.inner.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

async fn requests(State(c): State<Control>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(c.inner.requests()).unwrap_or(Value::Null),
    )
}

async fn clear_requests(State(c): State<Control>) -> Response {
    c.inner.clear_requests();
    StatusCode::NO_CONTENT.into_response()
}

async fn reset(State(c): State<Control>) -> Response {
    match c.inner.restart() {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(e.0),
    }
}

async fn ca_pem(State(c): State<Control>) -> Response {
    match c.ca_pem() {
        Some(pem) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-pem-file"),
            )],
            pem,
        )
            .into_response(),
        None => not_found("the fake is not serving TLS (start it with --tls)".to_owned()),
    }
}

async fn stats(State(c): State<Control>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "users": c.inner.user_count(),
            "drive_users": c.inner.drive.user_count(),
            "journal_entries": c.inner.journal_len(),
        }),
    )
}
