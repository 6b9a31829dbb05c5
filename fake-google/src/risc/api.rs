//! The RISC management API as `risc.googleapis.com` serves it (one stream per fake), and the RISC
//! discovery document. The Bearer is a service-account JWT: its shape, audience, issuer and
//! expiry are checked, never its signature.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::response::{IntoResponseParts, Response, ResponseParts};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::RiscEvent;
use super::set::{PUSH_DELIVERY, RISC_ISSUER, RiscEventType};
use crate::Control;
use crate::http::{bearer, grpc_status, json_response};
use crate::state::Note;

/// The `aud` of a service-account JWT for the RISC API.
pub(crate) const RISC_AUDIENCE: &str =
    "https://risc.googleapis.com/google.identity.risc.v1beta.RiscManagementService";

/// Google's answer to a request without credentials.
const MISSING_CREDENTIALS: &str = "Request is missing required authentication credential. \
    Expected OAuth 2 access token, login cookie or other valid authentication credential.";
/// Google's answer to a request with bad credentials (the fake adds why in parentheses).
const INVALID_CREDENTIALS: &str = "Request had invalid authentication credentials. \
    Expected OAuth 2 access token, login cookie or other valid authentication credential.";

/// Google's API error: `{"error": {"code", "message", "status"}}`.
fn api_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": grpc_status(status)}}),
    )
}

fn invalid_argument(message: &str) -> Response {
    api_error(StatusCode::BAD_REQUEST, message)
}

fn no_stream() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "No stream is configured for this project (fake-google: call stream:update first).",
    )
}

fn unauthenticated(message: &str) -> Response {
    let mut r = api_error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
        ),
    );
    r
}

/// The JSON object of a base64url JWT part (padding tolerated).
fn json_part(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Checks a service-account JWT's shape and claims (not its signature); returns its e-mail.
pub(crate) fn check_service_account_jwt(token: &str, now: i64) -> Result<String, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err("the Bearer is not a JWT of three dot-separated parts".to_owned());
    };
    if s.is_empty() || URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).is_err() {
        return Err("the JWT's signature part is not base64url".to_owned());
    }
    let header = json_part(h).ok_or("the JWT's header is not base64url JSON")?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("the JWT's alg must be RS256".to_owned());
    }
    if header
        .get("kid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("the JWT's header has no kid (the key file's private_key_id)".to_owned());
    }
    let claims = json_part(c).ok_or("the JWT's claims are not base64url JSON")?;
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == RISC_AUDIENCE,
        Some(Value::Array(list)) => list.iter().any(|a| a == RISC_AUDIENCE),
        _ => false,
    };
    if !aud_ok {
        return Err(format!("the JWT's aud must be {RISC_AUDIENCE}"));
    }
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if !crate::users::is_email(iss) {
        return Err("the JWT's iss must be the service account's e-mail".to_owned());
    }
    if claims.get("sub").and_then(Value::as_str) != Some(iss) {
        return Err("the JWT's sub must equal its iss".to_owned());
    }
    match claims.get("exp").and_then(Value::as_f64) {
        Some(exp) if exp > now as f64 => Ok(iss.to_owned()),
        Some(_) => Err("the JWT has expired".to_owned()),
        None => Err("the JWT has no exp".to_owned()),
    }
}

/// The calling service account (its e-mail), from a Bearer JWT that passes
/// [`check_service_account_jwt`]; a 401 in Google's shape otherwise. As a response part, it
/// names the account as the request's client in the journal.
pub(crate) struct ServiceAccount(String);

impl FromRequestParts<Control> for ServiceAccount {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Control) -> Result<Self, Response> {
        let Some(token) = bearer(&parts.headers) else {
            return Err(unauthenticated(MISSING_CREDENTIALS));
        };
        check_service_account_jwt(token, c.inner.now())
            .map(Self)
            .map_err(|why| unauthenticated(&format!("{INVALID_CREDENTIALS} (fake-google: {why})")))
    }
}

impl IntoResponseParts for ServiceAccount {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Infallible> {
        res.extensions_mut().insert(Note {
            client_id: Some(self.0),
            ..Note::default()
        });
        Ok(res)
    }
}

/// A JSON body (empty: `{}`) parsed as Google's API front end would: 400 `INVALID_ARGUMENT`
/// otherwise.
pub(crate) struct ApiBody<T>(T);

impl<T: DeserializeOwned> FromRequest<Control> for ApiBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, c: &Control) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, c)
            .await
            .map_err(|e| invalid_argument(&format!("Cannot read the body: {e}")))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(Self)
            .map_err(|e| invalid_argument(&format!("Invalid JSON payload received. {e}")))
    }
}

/// A RISC API answer, journaled with the calling service account.
type Answer = (ServiceAccount, Response);

/// `GET /.well-known/risc-configuration`.
pub(crate) async fn configuration(State(c): State<Control>) -> Response {
    let base = c.base_url();
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": RISC_ISSUER,
            "jwks_uri": format!("{base}/oauth2/v3/certs"),
            "delivery_methods_supported": [PUSH_DELIVERY],
            "add_subject_endpoint": format!("{base}/v1beta/subjects:add"),
            "remove_subject_endpoint": format!("{base}/v1beta/subjects:remove"),
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamUpdate {
    delivery: Delivery,
    #[serde(default, alias = "eventsRequested")]
    events_requested: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Delivery {
    #[serde(alias = "deliveryMethod")]
    delivery_method: String,
    url: String,
}

/// Whether `url` is an absolute `http` or `https` URL with a host.
pub(crate) fn is_receiver_url(url: &str) -> bool {
    url::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// `POST /v1beta/stream:update`: sets the receiver and the event types (the status is kept; a
/// new stream is enabled). Answers `{}`.
pub(crate) async fn update(
    State(c): State<Control>,
    account: ServiceAccount,
    ApiBody(req): ApiBody<StreamUpdate>,
) -> Answer {
    if req.delivery.delivery_method != PUSH_DELIVERY {
        let message = format!(
            "Unsupported delivery_method {:?}: only {PUSH_DELIVERY} is supported.",
            req.delivery.delivery_method
        );
        return (account, invalid_argument(&message));
    }
    match super::checked_stream(&req.delivery.url, req.events_requested) {
        Ok(events) => {
            c.inner.risc.set_stream(req.delivery.url, events);
            (account, json_response(StatusCode::OK, &json!({})))
        }
        Err(message) => (account, invalid_argument(&message)),
    }
}

/// `GET /v1beta/stream`: `{"delivery": {"delivery_method", "url"}, "events_requested"}`.
pub(crate) async fn get(State(c): State<Control>, account: ServiceAccount) -> Answer {
    let r = match c.inner.risc.stream() {
        Some(stream) => json_response(
            StatusCode::OK,
            &json!({
                "delivery": {"delivery_method": PUSH_DELIVERY, "url": stream.url},
                "events_requested": stream.events_requested,
            }),
        ),
        None => no_stream(),
    };
    (account, r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    #[serde(default)]
    state: Option<String>,
}

/// `POST /v1beta/stream:verify`: sends a `verification` event to the receiver (nothing when the
/// stream is disabled) and answers `{}` whatever the receiver answered (see the journal).
pub(crate) async fn verify(
    State(c): State<Control>,
    account: ServiceAccount,
    ApiBody(req): ApiBody<VerifyRequest>,
) -> Answer {
    if c.inner.risc.stream().is_none() {
        return (account, no_stream());
    }
    let mut event = RiscEvent::new(RiscEventType::Verification);
    event.state = req.state;
    // Delivery failures (and a disabled stream) are journaled, not answered.
    let _ = super::send(&c, &event).await;
    (account, json_response(StatusCode::OK, &json!({})))
}

/// `{"status": "enabled" | "disabled"}`.
fn status_json(enabled: bool) -> Value {
    json!({"status": if enabled { "enabled" } else { "disabled" }})
}

/// `GET /v1beta/stream/status`.
pub(crate) async fn status(State(c): State<Control>, account: ServiceAccount) -> Answer {
    let r = match c.inner.risc.stream() {
        Some(stream) => json_response(StatusCode::OK, &status_json(stream.enabled)),
        None => no_stream(),
    };
    (account, r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusUpdate {
    status: String,
}

/// `POST /v1beta/stream/status:update`: `{"status": "enabled" | "disabled"}`, answered back.
pub(crate) async fn update_status(
    State(c): State<Control>,
    account: ServiceAccount,
    ApiBody(req): ApiBody<StatusUpdate>,
) -> Answer {
    let enabled = match req.status.as_str() {
        "enabled" => true,
        "disabled" => false,
        other => {
            let message = format!("Invalid status {other:?}: it must be enabled or disabled.");
            return (account, invalid_argument(&message));
        }
    };
    let r = if c.inner.risc.set_enabled(enabled) {
        json_response(StatusCode::OK, &status_json(enabled))
    } else {
        no_stream()
    };
    (account, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: &Value, claims: &Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2ln", enc(header), enc(claims))
    }

    fn good_claims() -> Value {
        json!({"iss": "sa@p.iam.gserviceaccount.com", "sub": "sa@p.iam.gserviceaccount.com",
               "aud": RISC_AUDIENCE, "iat": 100, "exp": 4000})
    }

    #[test]
    fn a_well_formed_service_account_jwt_passes_without_a_signature_check() {
        let h = json!({"alg": "RS256", "typ": "JWT", "kid": "abc"});
        assert_eq!(
            check_service_account_jwt(&jwt(&h, &good_claims()), 1000).unwrap(),
            "sa@p.iam.gserviceaccount.com"
        );
    }

    #[test]
    fn each_broken_part_is_named() {
        let h = json!({"alg": "RS256", "kid": "abc"});
        let why = |token: &str| check_service_account_jwt(token, 1000).unwrap_err();
        assert!(why("garbage").contains("three"));
        assert!(why("a.b.c2ln").contains("header"));
        assert!(why(&jwt(&json!({"alg": "HS256", "kid": "k"}), &good_claims())).contains("RS256"));
        assert!(why(&jwt(&json!({"alg": "RS256"}), &good_claims())).contains("kid"));
        let mut c = good_claims();
        c["aud"] = json!("https://oauth2.googleapis.com/token");
        assert!(why(&jwt(&h, &c)).contains("aud"));
        let mut c = good_claims();
        c["sub"] = json!("other@example.com");
        assert!(why(&jwt(&h, &c)).contains("sub"));
        let mut c = good_claims();
        c["iss"] = json!("not-an-email");
        assert!(why(&jwt(&h, &c)).contains("iss"));
        assert!(
            check_service_account_jwt(&jwt(&h, &good_claims()), 5000)
                .unwrap_err()
                .contains("expired")
        );
        let token = jwt(&h, &good_claims());
        let unsigned = token.trim_end_matches("c2ln");
        assert!(why(unsigned).contains("signature"));
    }

    #[test]
    fn receiver_urls_must_be_http_or_https_with_a_host() {
        assert!(is_receiver_url("https://example.com/risc"));
        assert!(is_receiver_url("http://127.0.0.1:8080/risc"));
        assert!(!is_receiver_url("ftp://example.com/risc"));
        assert!(!is_receiver_url("/risc"));
        assert!(!is_receiver_url("mailto:a@example.com"));
    }
}
