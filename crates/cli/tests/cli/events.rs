//! Events through the real binary: a server killed with `kill -9` after a change but before its webhook was
//! delivered loses nothing (the next process delivers it, same `webhook-id`); `events list` / `events replay`;
//! `risc register` / `risc status` against the fake Google's RISC API, and its events acted on.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use fake_google::{CodeRequest, FakeGoogle, RiscEvent, RiscEventType};
use offline_access_webhooks::{WebhookSecret, verify};
use serde_json::Value;

use crate::support::{Cli, http, post_authcode};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One POST the receiver got: the verified id, the body, and the status it answered.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
    answered: u16,
}

/// A webhook endpoint that answers `status` and records every attempt (after checking its signature).
#[derive(Clone)]
struct Receiver {
    status: Arc<AtomicU16>,
    received: Arc<Mutex<Vec<Received>>>,
    url: String,
}

async fn receiver(status: u16) -> Receiver {
    let state = Receiver {
        status: Arc::new(AtomicU16::new(status)),
        received: Arc::default(),
        url: String::new(),
    };
    async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let verified = verify(&secret, &headers, &body).expect("every attempt is signed");
        let answered = r.status.load(Ordering::SeqCst);
        r.received.lock().unwrap().push(Received {
            id: verified.id,
            body: serde_json::from_slice(&body).unwrap(),
            answered,
        });
        StatusCode::from_u16(answered).unwrap()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, ..state }
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded, polling) until `done` holds for what was received.
    async fn until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..600 {
            let received = self.received();
            if done(&received) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "timed out waiting for {what}; received {:?}",
            self.received()
        );
    }
}

async fn configured(fake: &FakeGoogle, webhook_url: &str) -> Cli {
    let mut cli = Cli::against(fake);
    cli.env("STORE__PATH", "store")
        .env("WEBHOOKS__URL", webhook_url)
        .env("WEBHOOKS__SECRET", SECRET)
        .env("WEBHOOKS__MIN_RETRY_MS", "50")
        .env("WEBHOOKS__MAX_RETRY_MS", "200");
    cli
}

async fn sign_in(base: &str, code: &str) -> Value {
    let response = post_authcode(&http(), base, code).await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_not_delivered_when_the_server_is_killed_is_delivered_by_the_next_one_with_the_same_id()
 {
    let fake = FakeGoogle::start().await.unwrap();
    let hook = receiver(503).await;
    let cli = configured(&fake, &hook.url).await;
    let server = cli.spawn_server(&["serve"], "first.log").await;
    let minted = fake
        .mint_code(CodeRequest::new("killed@example.com"))
        .await
        .unwrap();
    let answer = sign_in(&server.base, &minted.code).await;
    assert_eq!(answer["user"]["sub"], minted.sub.as_str());

    // The endpoint refuses: the event is retried (same id) until the server dies mid-schedule.
    let refused = hook.until("two refused attempts", |r| r.len() >= 2).await;
    let id = refused[0].id.clone();
    assert!(refused.iter().all(|r| r.id == id));
    server.kill_hard().await;

    // `events list` (no server running) shows it pending, with its attempts and the last error.
    let listed = cli.run(&["events", "list", "--pending", "--json"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let line: Value = serde_json::from_str(listed.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        (line["id"].as_str(), line["state"].as_str()),
        (Some(id.as_str()), Some("pending"))
    );
    assert_eq!(line["last_error"], "HTTP 503");
    assert_eq!(line["data"]["sub"], minted.sub.as_str());

    // The next process delivers it, with the same id.
    hook.status.store(200, Ordering::SeqCst);
    let server = cli.spawn_server(&["serve"], "second.log").await;
    let received = hook
        .until("a delivery answered 200", |r| {
            r.iter().any(|x| x.answered == 200)
        })
        .await;
    let delivered: Vec<&Received> = received.iter().filter(|r| r.answered == 200).collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].id, id, "the same webhook-id on every attempt");
    let body = &delivered[0].body;
    assert_eq!(body["type"], "user.signed_in");
    assert_eq!(body["data"]["sub"], minted.sub.as_str());
    assert_eq!(body["data"]["new_user"], true);
    for shape in ["ya29.", "1//", "eyJ"] {
        assert!(!body.to_string().contains(shape), "a token in {body}");
    }
    let state_of = |stdout: &str| -> Option<String> {
        stdout.lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["id"] == id.as_str()).then(|| v["state"].as_str().unwrap_or_default().to_owned())
        })
    };
    let mut state = None;
    for _ in 0..300 {
        state = state_of(&cli.run(&["events", "list", "--json"]).await.stdout);
        if state.as_deref() == Some("delivered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state.as_deref(), Some("delivered"));

    // The delivery shows in the metrics.
    let metrics = http()
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("offline_access_webhook_deliveries_total{outcome=\"delivered\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("offline_access_webhook_delivery_latency_seconds"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# HELP offline_access_webhook_deliveries_total"),
        "{metrics}"
    );

    // `events replay` sends it again, same id, through the running server.
    let replayed = cli.run(&["events", "replay", &id]).await;
    assert_eq!(replayed.code, 0, "{}", replayed.stderr);
    hook.until("the replay", |r| {
        r.iter().filter(|x| x.answered == 200).count() == 2
    })
    .await;
    assert!(hook.received().iter().all(|r| r.id == id));
    let bad = cli.run(&["events", "replay", "evt_nope"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let unknown = cli
        .run(&["events", "replay", "evt_00000000000000000000000000000000"])
        .await;
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("events list"), "{}", unknown.stderr);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risc_register_points_googles_stream_at_the_server_whose_events_are_then_acted_on() {
    let fake = FakeGoogle::start().await.unwrap();
    let hook = receiver(200).await;
    let cli = configured(&fake, &hook.url).await;
    cli.write(
        "risc-sa.json",
        &fake.control().service_account_key().to_string(),
    );
    let server = cli.spawn_server(&["serve"], "serve.log").await;
    let receiver_url = format!("{}/risc", server.base);

    let registered = cli
        .run(&[
            "risc",
            "register",
            "--service-account",
            "risc-sa.json",
            "--url",
            &receiver_url,
        ])
        .await;
    assert_eq!(registered.code, 0, "{}", registered.stderr);
    let stream = fake
        .control()
        .risc_stream()
        .expect("a stream is configured");
    assert_eq!(stream.url, receiver_url);
    assert_eq!(stream.events_requested.len(), 7);
    // The verification event reached the server and was reported to the team.
    hook.until("risc.verification", |r| {
        r.iter().any(|x| x.body["type"] == "risc.verification")
    })
    .await;
    let status = cli
        .run(&["risc", "status", "--service-account", "risc-sa.json"])
        .await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("status: enabled"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains(&receiver_url), "{}", status.stdout);

    // Google revokes the user's tokens: the server hears it and the grant is revoked.
    let minted = fake
        .mint_code(CodeRequest::new("risc@example.com"))
        .await
        .unwrap();
    sign_in(&server.base, &minted.code).await;
    let delivery = fake
        .control()
        .send_risc_event(RiscEvent::new(RiscEventType::TokensRevoked).user(&minted.sub))
        .await
        .unwrap();
    assert_eq!(delivery.status, 202);
    let users = cli.run(&["users", "list"]).await;
    let row = users
        .stdout
        .lines()
        .find(|l| l.starts_with(&minted.sub))
        .unwrap_or_else(|| panic!("{}", users.stdout));
    assert!(row.contains("revoked"), "{row}");
    let revoked = hook
        .until("grant.revoked", |r| {
            r.iter().any(|x| x.body["type"] == "grant.revoked")
        })
        .await;
    let event = revoked
        .iter()
        .find(|x| x.body["type"] == "grant.revoked")
        .unwrap();
    assert_eq!(event.body["data"]["source"], "risc");

    // A service account file that is not one is a usage error naming the option.
    cli.write("not-sa.json", "{}");
    let bad = cli
        .run(&["risc", "status", "--service-account", "not-sa.json"])
        .await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--service-account"), "{}", bad.stderr);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_endpoint_that_never_answers_slows_no_sign_in() {
    // An endpoint that accepts connections and never answers: every delivery attempt hangs until its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().unwrap().push(socket);
        }
    });
    let fake = FakeGoogle::start().await.unwrap();
    let mut cli = configured(&fake, &url).await;
    cli.env("WEBHOOKS__TIMEOUT_SECS", "600");
    let server = cli.spawn_server(&["serve"], "serve.log").await;
    // More sign-ins than the delivery loop sends at once: all of them are answered while its sends hang.
    for i in 0..24 {
        let minted = fake
            .mint_code(CodeRequest::new(format!("hang{i}@example.com")))
            .await
            .unwrap();
        // A bound so a coupling would fail the test instead of hanging it; not a speed assertion.
        tokio::time::timeout(
            Duration::from_secs(120),
            sign_in(&server.base, &minted.code),
        )
        .await
        .expect("a sign-in waited on the webhook");
    }
    for _ in 0..600 {
        if !held.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !held.lock().unwrap().is_empty(),
        "the delivery loop reached the endpoint"
    );
    let listed = cli.run(&["events", "list", "--pending"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(
        listed
            .stdout
            .lines()
            .filter(|l| l.contains("user.signed_in"))
            .count(),
        24
    );
    drop(server);
}
