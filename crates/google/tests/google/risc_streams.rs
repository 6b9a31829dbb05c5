//! The RISC stream management API over wiremock: the exact JSON bodies, the service-account Bearer (its header
//! and claims decoded and checked), Google's errors, and the key file.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use offline_access_domain::memory::ManualClock;
use offline_access_domain::risc::SUPPORTED_EVENT_TYPES;
use offline_access_google::{
    Delivery, GoogleConfig, PUSH_DELIVERY_METHOD, RISC_AUDIENCE, RiscApiError, RiscStreams,
    ServiceAccountError, ServiceAccountKey, StreamConfig, StreamStatus,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{CLIENT_ID, KEY1_PEM, KEY1_PUB_PEM, NOW, closed_port_url, config, now};

const EMAIL: &str = "risc-admin@offline-access-test.iam.gserviceaccount.com";
const KEY_ID: &str = "8c1f0b3a9e2d4c5b6a7f8e9d0c1b2a3f4e5d6c7b";
const RECEIVER: &str = "https://app.example.com/risc";

fn key_file() -> Value {
    json!({
        "type": "service_account",
        "project_id": "offline-access-test",
        "private_key_id": KEY_ID,
        "private_key": KEY1_PEM,
        "client_email": EMAIL,
        "client_id": "104455667788990011223",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "universe_domain": "googleapis.com"
    })
}

fn account() -> ServiceAccountKey {
    ServiceAccountKey::from_json(&key_file().to_string()).unwrap()
}

fn streams(server: &MockServer) -> RiscStreams {
    RiscStreams::new(&config(server), account())
        .unwrap()
        .with_clock(Arc::new(ManualClock::new(now())))
}

/// The one request the server received, with its Bearer's header and claims decoded (the signature verified
/// with the key file's public key).
async fn only_request(server: &MockServer) -> (jsonwebtoken::Header, Value, Value) {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let bearer = request
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[RISC_AUDIENCE]);
    validation.set_required_spec_claims(&["iss", "sub", "aud", "iat", "exp"]);
    // The test clock is not the system's: `iat`/`exp` are checked below against it.
    validation.validate_exp = false;
    let decoded = jsonwebtoken::decode::<Value>(
        &bearer,
        &DecodingKey::from_rsa_pem(KEY1_PUB_PEM.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap();
    let body = if request.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&request.body).unwrap()
    };
    (decoded.header, decoded.claims, body)
}

fn assert_service_account_jwt(header: &jsonwebtoken::Header, claims: &Value) {
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(KEY_ID));
    assert_eq!(
        claims,
        &json!({
            "iss": EMAIL, "sub": EMAIL, "aud": RISC_AUDIENCE, "iat": NOW, "exp": NOW + 3600
        })
    );
}

#[tokio::test]
async fn update_posts_the_push_receiver_and_every_supported_event_type_with_a_service_account_jwt()
{
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/stream:update"))
        .and(header_exists("authorization"))
        .and(body_json(json!({
            "delivery": {"delivery_method": PUSH_DELIVERY_METHOD, "url": RECEIVER},
            "events_requested": SUPPORTED_EVENT_TYPES,
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;

    streams(&server).update(RECEIVER).await.unwrap();

    let (header, claims, body) = only_request(&server).await;
    assert_service_account_jwt(&header, &claims);
    assert_eq!(
        body["delivery"]["delivery_method"],
        "https://schemas.openid.net/secevent/risc/delivery-method/push"
    );
    assert_eq!(body["events_requested"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn verify_posts_the_state() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/stream:verify"))
        .and(body_json(json!({"state": "check-1234"})))
        .respond_with(ResponseTemplate::new(200).set_body_string(""))
        .expect(1)
        .mount(&server)
        .await;

    streams(&server).verify("check-1234").await.unwrap();

    let (header, claims, _) = only_request(&server).await;
    assert_service_account_jwt(&header, &claims);
}

#[tokio::test]
async fn config_reads_the_stream_in_snake_or_camel_case() {
    for answer in [
        json!({"delivery": {"delivery_method": PUSH_DELIVERY_METHOD, "url": RECEIVER},
               "events_requested": [SUPPORTED_EVENT_TYPES[0]]}),
        json!({"delivery": {"deliveryMethod": PUSH_DELIVERY_METHOD, "url": RECEIVER},
               "eventsRequested": [SUPPORTED_EVENT_TYPES[0]], "unknownField": 1}),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1beta/stream"))
            .respond_with(ResponseTemplate::new(200).set_body_json(&answer))
            .mount(&server)
            .await;

        let config = streams(&server).config().await.unwrap();

        assert_eq!(
            config,
            StreamConfig {
                delivery: Some(Delivery {
                    delivery_method: PUSH_DELIVERY_METHOD.into(),
                    url: RECEIVER.into(),
                }),
                events_requested: vec![SUPPORTED_EVENT_TYPES[0].into()],
                events_delivered: vec![],
            }
        );
        let (header, claims, body) = only_request(&server).await;
        assert_service_account_jwt(&header, &claims);
        assert_eq!(body, Value::Null);
    }
}

#[tokio::test]
async fn status_is_read_and_updated() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1beta/stream/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "enabled"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/stream/status:update"))
        .and(body_json(json!({"status": "disabled"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "disabled"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/stream/status:update"))
        .and(body_json(json!({"status": "enabled"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let streams = streams(&server);

    assert_eq!(streams.status().await.unwrap(), StreamStatus::Enabled);
    assert_eq!(
        streams.set_status(false).await.unwrap(),
        StreamStatus::Disabled
    );
    assert_eq!(
        streams.set_status(true).await.unwrap(),
        StreamStatus::Enabled,
        "an empty answer: the status asked for"
    );
}

#[tokio::test]
async fn googles_json_error_is_surfaced_with_its_code_status_and_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/stream:update"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {
            "code": 403,
            "message": "The caller does not have permission",
            "status": "PERMISSION_DENIED"
        }})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1beta/stream/status"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .mount(&server)
        .await;
    let streams = streams(&server);

    let err = streams.update(RECEIVER).await.unwrap_err();
    assert_eq!(
        err,
        RiscApiError::Google {
            code: 403,
            status: "PERMISSION_DENIED".into(),
            message: "The caller does not have permission".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "Google's RISC API answered HTTP 403 PERMISSION_DENIED: The caller does not have permission"
    );
    assert_eq!(
        streams.status().await.unwrap_err(),
        RiscApiError::Status(502)
    );
}

#[tokio::test]
async fn an_unreachable_api_and_a_bad_receiver_url_are_errors_before_or_without_an_answer() {
    let mut config = GoogleConfig::new(CLIENT_ID.into(), "s".into());
    config.base_url = Some(closed_port_url());
    let streams = RiscStreams::new(&config, account()).unwrap();

    assert_eq!(
        streams.status().await.unwrap_err(),
        RiscApiError::Unreachable
    );
    assert!(matches!(
        streams.update("not a url").await.unwrap_err(),
        RiscApiError::InvalidUrl(_)
    ));
    assert!(matches!(
        streams.update("ftp://example.com/risc").await.unwrap_err(),
        RiscApiError::InvalidUrl(_)
    ));
}

#[test]
fn a_key_file_is_loaded_and_its_private_key_never_shows() {
    let path = std::env::temp_dir().join(format!(
        "offline-access-risc-service-account-{}.json",
        std::process::id()
    ));
    std::fs::write(&path, key_file().to_string()).unwrap();

    let account = ServiceAccountKey::from_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();

    assert_eq!(account.client_email(), EMAIL);
    assert_eq!(account.private_key_id(), KEY_ID);
    assert_eq!(account.project_id(), Some("offline-access-test"));
    let debug = format!("{account:?}");
    let key_line = KEY1_PEM.lines().nth(1).unwrap();
    assert!(!debug.contains(key_line), "{debug}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    assert!(
        !format!(
            "{:?}",
            RiscStreams::new(&GoogleConfig::new(CLIENT_ID.into(), "s".into()), account).unwrap()
        )
        .contains(key_line)
    );
    assert!(matches!(
        ServiceAccountKey::from_file(&path).unwrap_err(),
        ServiceAccountError::Read { .. }
    ));
}
