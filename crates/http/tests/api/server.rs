//! Through a real TCP listener with reqwest: the Android-style form post, the peer address for the rate limit,
//! streamed bodies over the limit, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use offline_access_domain::memory::{ManualClock, MemoryStore};
use offline_access_domain::{OfflineAccess, Ports};
use offline_access_http::{AppState, HttpConfig, router, serve};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::helpers::*;

struct Server {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(mocks: Mocks, config: HttpConfig) -> Self {
        let service = Arc::new(OfflineAccess::new(
            Ports {
                tokens: Arc::new(mocks.tokens),
                verifier: Arc::new(mocks.verifier),
                store: Arc::new(MemoryStore::new()),
                drive: Arc::new(mocks.drive),
                clock: Arc::new(ManualClock::new(NOW)),
            },
            settings(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(AppState::new(service, config));
        let task = tokio::spawn(serve(listener, app, async {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap()
    }
}

#[tokio::test]
async fn an_android_style_form_post_over_tcp_signs_in_and_me_follows() {
    let server = Server::start(Mocks::google(), HttpConfig::default()).await;
    let client = reqwest::Client::new();

    let signed_in = client
        .post(format!("{}/authcode", server.base))
        .header("X-Requested-With", "com.example.app")
        .form(&[("authCode", CODE_ALICE)])
        .send()
        .await
        .unwrap();
    let status = signed_in.status();
    let body: serde_json::Value = signed_in.json().await.unwrap();
    let me = client
        .get(format!("{}/v1/me", server.base))
        .bearer_auth(ID_ALICE)
        .send()
        .await
        .unwrap();

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["sub"], SUB_ALICE);
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["consent"], "active");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_rate_limit_uses_the_real_peer_address() {
    let mut mocks = Mocks::bare();
    mocks
        .tokens
        .expect_exchange_code()
        .times(2)
        .returning(|_| Err(offline_access_domain::TokenError::InvalidGrant));
    let config = HttpConfig {
        authcode_rate_limit: 1,
        ..HttpConfig::default()
    };
    let server = Server::start(mocks, config).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();

    for i in 0..3 {
        let response = client
            .post(format!("{}/authcode", server.base))
            .header("X-Requested-With", "x")
            // Spoofing from an untrusted peer changes nothing.
            .header("X-Forwarded-For", format!("203.0.113.{i}"))
            .form(&[("authCode", format!("4/0try{i}"))])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }

    assert_eq!(statuses, vec![400, 400, 429]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_a_json_413() {
    let mut mocks = Mocks::bare();
    mocks.tokens.expect_exchange_code().never();
    let server = Server::start(mocks, HttpConfig::default()).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b'a'; 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_stream(chunks));

    let response = reqwest::Client::new()
        .post(format!("{}/authcode", server.base))
        .header("X-Requested-With", "x")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 413);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["error"], "payload_too_large");
    server.shutdown().await.unwrap();
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures::stream::iter(chunks)
}

#[tokio::test]
async fn shutdown_stops_accepting_and_serve_returns_ok() {
    let server = Server::start(Mocks::bare(), HttpConfig::default()).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    server.shutdown().await.unwrap();

    assert!(client.get(format!("{base}/healthz")).send().await.is_err());
}

#[tokio::test]
async fn https_is_served_directly_with_the_configured_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let tls = offline_access_http::tls_config(
        cert_pem.as_bytes(),
        certified.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let service = Arc::new(OfflineAccess::new(
        Ports {
            tokens: Arc::new(Mocks::google().tokens),
            verifier: Arc::new(Mocks::google().verifier),
            store: Arc::new(MemoryStore::new()),
            drive: Arc::new(Mocks::bare().drive),
            clock: Arc::new(ManualClock::new(NOW)),
        },
        settings(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(AppState::new(service, HttpConfig::default()));
    let task = tokio::spawn(offline_access_http::serve_tls(listener, app, tls, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .resolve("localhost", addr)
        .build()
        .unwrap();

    let health = client
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    let signed_in = client
        .post(format!("https://localhost:{}/authcode", addr.port()))
        .header("X-Requested-With", "com.example.app")
        .form(&[("authCode", CODE_ALICE)])
        .send()
        .await
        .unwrap();
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;

    assert_eq!(health.status(), 200);
    assert_eq!(signed_in.status(), 200);
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// A token endpoint that tells when a code exchange started and finishes it only when released.
struct GatedTokens {
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl offline_access_domain::TokenEndpoint for GatedTokens {
    async fn exchange_code(
        &self,
        code: &offline_access_domain::AuthCode,
    ) -> Result<offline_access_domain::TokenResponse, offline_access_domain::TokenError> {
        self.entered.notify_one();
        self.release.notified().await;
        exchange(code.expose_secret())
    }

    async fn refresh(
        &self,
        _: &offline_access_domain::RefreshToken,
    ) -> Result<offline_access_domain::TokenResponse, offline_access_domain::TokenError> {
        Err(offline_access_domain::TokenError::Timeout)
    }

    async fn revoke(
        &self,
        _: &offline_access_domain::RefreshToken,
    ) -> Result<(), offline_access_domain::RevokeError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_sign_in_in_flight_at_shutdown_is_answered_before_serve_returns() {
    let gate = Arc::new(GatedTokens {
        entered: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    let mocks = Mocks::google();
    let service = Arc::new(OfflineAccess::new(
        Ports {
            tokens: Arc::clone(&gate) as _,
            verifier: Arc::new(mocks.verifier),
            store: Arc::new(MemoryStore::new()),
            drive: Arc::new(mocks.drive),
            clock: Arc::new(ManualClock::new(NOW)),
        },
        settings(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(AppState::new(service, HttpConfig::default()));
    let server = tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));
    let in_flight = tokio::spawn(
        reqwest::Client::new()
            .post(format!("http://{addr}/authcode"))
            .header("X-Requested-With", "x")
            .form(&[("authCode", CODE_ALICE)])
            .send(),
    );
    gate.entered.notified().await;

    stop.send(()).unwrap();
    // The listener closes: new connections are refused while the sign-in is still in flight.
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    gate.release.notify_one();
    let response = in_flight.await.unwrap().unwrap();

    assert!(refused, "the listener kept accepting after shutdown");
    assert_eq!(response.status(), 200);
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_megabyte_bearer_is_refused_and_the_server_stays_up() {
    let server = Server::start(Mocks::google(), HttpConfig::default()).await;
    let client = reqwest::Client::new();
    let huge = format!(
        "Bearer {}.{}.{}",
        "a".repeat(500_000),
        "b".repeat(500_000),
        "c"
    );

    let refused = client
        .get(format!("{}/v1/me", server.base))
        .header("Authorization", huge)
        .send()
        .await;
    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();

    // hyper refuses headers this large before routing (431); the write may also be cut off first.
    if let Ok(response) = refused {
        assert_eq!(response.status(), 431);
    }
    assert_eq!(health.status(), 200);
    server.shutdown().await.unwrap();
}
