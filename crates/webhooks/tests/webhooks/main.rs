//! The webhook sender against a real HTTP receiver (wiremock on loopback): the exact body, the Standard Webhooks
//! headers and a signature the receiver recomputes; non-2xx answers; unreachable endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use offline_access_domain::events::{EventRecord, SendError, WebhookSender};
use offline_access_domain::memory::ManualClock;
use offline_access_webhooks::{
    DEFAULT_TIMEOUT, VerifyError, WebhookConfig, WebhookSecret, WebhookSender as HttpSender, verify,
};
use proptest::prelude::*;
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_800_000_000;
/// A body whose bytes must arrive as they are (spacing, key order, escapes, non-ASCII).
const BODY: &str = r#"{"type":"grant.revoked", "timestamp":"2027-01-15T08:00:00Z","data":{"sub":"1234","source":"risc","note":"caf\u00e9 ☕"}}"#;

fn record() -> EventRecord {
    EventRecord {
        id: "evt_0190a1b2c3d4e5f60718293a4b5c6d7e".into(),
        kind: "grant.revoked".into(),
        created_at: OffsetDateTime::from_unix_timestamp(NOW - 5).unwrap(),
        body: BODY.into(),
    }
}

fn config(url: &str) -> WebhookConfig {
    WebhookConfig::new(url::Url::parse(url).unwrap(), SECRET, DEFAULT_TIMEOUT).unwrap()
}

fn sender_to(url: &str) -> (HttpSender, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(
        OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
    ));
    let sender = HttpSender::new(config(url))
        .unwrap()
        .with_clock(clock.clone());
    (sender, clock)
}

async fn receiver(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/offline-access"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn header<'r>(request: &'r Request, name: &str) -> &'r str {
    request.headers.get(name).unwrap().to_str().unwrap()
}

/// A loopback URL where nothing listens.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hooks?token=canary-query")
}

#[tokio::test]
async fn a_delivery_posts_the_exact_body_with_the_headers_and_a_signature_the_receiver_recomputes()
{
    let server = receiver(204).await;
    let url = format!("{}/hooks/offline-access?tenant=t1", server.uri());
    let (sender, _clock) = sender_to(&url);

    sender.send(&record()).await.unwrap();

    let requests = received(&server).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.url.query(), Some("tenant=t1"));
    assert_eq!(request.body, BODY.as_bytes());
    assert_eq!(header(request, "content-type"), "application/json");
    assert_eq!(
        header(request, "webhook-id"),
        "evt_0190a1b2c3d4e5f60718293a4b5c6d7e"
    );
    assert_eq!(header(request, "webhook-timestamp"), NOW.to_string());
    let secret = WebhookSecret::parse(SECRET).unwrap();
    assert_eq!(
        header(request, "webhook-signature"),
        secret.sign("evt_0190a1b2c3d4e5f60718293a4b5c6d7e", NOW, BODY.as_bytes())
    );
    let verified = verify(&secret, &request.headers, &request.body).unwrap();
    assert_eq!(verified.id, "evt_0190a1b2c3d4e5f60718293a4b5c6d7e");
    assert_eq!(verified.timestamp, NOW);
    // Another secret does not verify it.
    let other = WebhookSecret::parse("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3").unwrap();
    assert_eq!(
        verify(&other, &request.headers, &request.body),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[tokio::test]
async fn every_attempt_keeps_the_id_and_is_signed_at_its_own_time() {
    let server = receiver(200).await;
    let (sender, clock) = sender_to(&format!("{}/hooks/offline-access", server.uri()));
    let secret = WebhookSecret::parse(SECRET).unwrap();

    sender.send(&record()).await.unwrap();
    clock.advance(time::Duration::seconds(90));
    sender.send(&record()).await.unwrap();

    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    let attempts: Vec<_> = requests
        .iter()
        .map(|r| verify(&secret, &r.headers, &r.body).unwrap())
        .collect();
    assert_eq!(attempts[0].id, attempts[1].id);
    assert_eq!(attempts[0].timestamp, NOW);
    assert_eq!(attempts[1].timestamp, NOW + 90);
    assert_ne!(
        header(&requests[0], "webhook-signature"),
        header(&requests[1], "webhook-signature")
    );
}

#[tokio::test]
async fn an_answer_other_than_2xx_is_its_status_and_a_redirect_is_not_followed() {
    for status in [301, 302, 400, 404, 410, 429, 500, 503] {
        let server = receiver(status).await;
        let (sender, _clock) = sender_to(&format!("{}/hooks/offline-access", server.uri()));

        let result = sender.send(&record()).await;

        assert_eq!(result, Err(SendError::Status(status)));
        assert_eq!(received(&server).await.len(), 1, "{status}");
    }
    for status in [200, 201, 202, 204] {
        let server = receiver(status).await;
        let (sender, _clock) = sender_to(&format!("{}/hooks/offline-access", server.uri()));
        assert_eq!(sender.send(&record()).await, Ok(()), "{status}");
    }
}

fn assert_unreachable_without_secrets(result: Result<(), SendError>, url: &str) -> String {
    let Err(SendError::Unreachable(cause)) = result else {
        panic!("{result:?}")
    };
    let port = url::Url::parse(url).unwrap().port().unwrap().to_string();
    for hidden in [port.as_str(), "canary-query", "MfKQ", "127.0.0.1"] {
        assert!(!cause.contains(hidden), "{cause}");
    }
    assert!(cause.len() < 300, "{cause}");
    cause
}

#[tokio::test]
async fn a_closed_port_is_unreachable_with_a_short_cause_naming_no_url_or_secret() {
    let url = closed_port_url();
    let (sender, _clock) = sender_to(&url);

    let cause = assert_unreachable_without_secrets(sender.send(&record()).await, &url);

    assert!(cause.starts_with("could not connect"), "{cause}");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_unreachable_after_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hooks?token=canary-query",
        listener.local_addr().unwrap()
    );
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let mut config = config(&url);
    config.timeout = Duration::from_millis(300);
    let sender = HttpSender::new(config).unwrap();

    let cause = assert_unreachable_without_secrets(sender.send(&record()).await, &url);

    assert_eq!(cause, "timed out");
    held.abort();
}

#[tokio::test]
async fn https_to_a_plain_http_endpoint_is_unreachable() {
    let server = receiver(200).await;
    let url = format!(
        "{}/hooks/offline-access?token=canary-query",
        server.uri().replace("http://", "https://")
    );
    let (sender, _clock) = sender_to(&url);

    assert_unreachable_without_secrets(sender.send(&record()).await, &url);
    assert!(received(&server).await.is_empty());
}

proptest! {
    #[test]
    fn any_message_verifies_as_signed_and_fails_once_its_body_changes(
        id in "[A-Za-z0-9_-]{1,40}",
        timestamp in 0i64..4_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..200),
        flip in any::<proptest::sample::Index>(),
    ) {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert("webhook-signature", secret.sign(&id, timestamp, &body).parse().unwrap());
        let verified = verify(&secret, &headers, &body).unwrap();
        prop_assert_eq!(verified.id, id);
        prop_assert_eq!(verified.timestamp, timestamp);
        let mut changed = body.clone();
        if changed.is_empty() {
            changed.push(b'x');
        } else {
            let at = flip.index(changed.len());
            changed[at] ^= 0x01;
        }
        prop_assert_eq!(verify(&secret, &headers, &changed), Err(VerifyError::NoMatchingSignature));
    }
}
