//! Shared fixtures: fixed RSA test keys, token signing, a JWKS server, wire-format matchers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, EncodingKey};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use offline_access_domain::IdToken;
use offline_access_domain::memory::ManualClock;
use offline_access_google::{Google, GoogleConfig};
use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

pub(crate) const CLIENT_ID: &str = "1234-web.apps.googleusercontent.com";
pub(crate) const ANDROID_ID: &str = "1234-android.apps.googleusercontent.com";
pub(crate) const CLIENT_SECRET: &str = "GOCSPX-canary-client-secret";
pub(crate) const KID1: &str = "0123456789abcdef0123456789abcdef01234567";
pub(crate) const KID2: &str = "fedcba9876543210fedcba9876543210fedcba98";
pub(crate) const SUB: &str = "110169484474386276334";
/// The verification time of every test token.
pub(crate) const NOW: i64 = 1_800_000_000;

pub(crate) const KEY1_PEM: &str = include_str!("../keys/google-1.pem");
pub(crate) const KEY1_PUB_PEM: &str = include_str!("../keys/google-1.pub.pem");
pub(crate) const KEY2_PEM: &str = include_str!("../keys/google-2.pem");

pub(crate) static KEY1: LazyLock<EncodingKey> =
    LazyLock::new(|| EncodingKey::from_rsa_pem(KEY1_PEM.as_bytes()).unwrap());
pub(crate) static KEY2: LazyLock<EncodingKey> =
    LazyLock::new(|| EncodingKey::from_rsa_pem(KEY2_PEM.as_bytes()).unwrap());

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap()
}

/// The public JWK of an RSA key, as Google publishes it.
pub(crate) fn jwk(key: &EncodingKey, kid: &str) -> Value {
    let jwk = Jwk::from_encoding_key(key, Algorithm::RS256).unwrap();
    let AlgorithmParameters::RSA(rsa) = jwk.algorithm else {
        panic!("not an RSA key")
    };
    json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": rsa.n, "e": rsa.e})
}

pub(crate) fn jwks(keys: &[(&EncodingKey, &str)]) -> Value {
    json!({"keys": keys.iter().map(|(k, kid)| jwk(k, kid)).collect::<Vec<_>>()})
}

/// A claim set Google would issue, valid at [`NOW`].
pub(crate) fn claims() -> Value {
    json!({
        "iss": "https://accounts.google.com",
        "azp": ANDROID_ID,
        "aud": CLIENT_ID,
        "sub": SUB,
        "email": "alice@example.com",
        "email_verified": true,
        "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
        "name": "Alice Example",
        "picture": "https://lh3.googleusercontent.com/a/photo",
        "given_name": "Alice",
        "family_name": "Example",
        "locale": "en",
        "iat": NOW - 60,
        "exp": NOW + 3540
    })
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS over exactly `header` and `claims`, signed with `alg` and `key`.
pub(crate) fn jws(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

/// An RS256 token with `kid`, signed by `key`.
pub(crate) fn sign(claims: &Value, kid: &str, key: &EncodingKey) -> String {
    jws(
        &json!({"alg": "RS256", "kid": kid, "typ": "JWT"}),
        claims,
        key,
        Algorithm::RS256,
    )
}

pub(crate) fn id_token(token: &str) -> IdToken {
    IdToken::parse(token).unwrap()
}

/// A server publishing key 1 under [`KID1`] with `max-age=21600`.
pub(crate) async fn jwks_server() -> MockServer {
    let server = MockServer::start().await;
    mount_jwks(&server, &jwks(&[(&KEY1, KID1)]), "public, max-age=21600").await;
    server
}

pub(crate) async fn mount_jwks(server: &MockServer, body: &Value, cache_control: &str) {
    jwks_mock(body, cache_control).mount(server).await;
}

/// Serves `body` for the first JWKS fetch only (mount the later answer after it).
pub(crate) async fn mount_jwks_once(server: &MockServer, body: &Value, cache_control: &str) {
    jwks_mock(body, cache_control)
        .up_to_n_times(1)
        .mount(server)
        .await;
}

fn jwks_mock(body: &Value, cache_control: &str) -> Mock {
    Mock::given(method("GET"))
        .and(path("/oauth2/v3/certs"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("cache-control", cache_control)
                .set_body_json(body),
        )
}

pub(crate) fn config(server: &MockServer) -> GoogleConfig {
    let mut config = GoogleConfig::new(CLIENT_ID.into(), SecretString::from(CLIENT_SECRET));
    config.base_url = Some(server.uri());
    config.request_timeout = Duration::from_secs(5);
    config
}

pub(crate) fn google(server: &MockServer) -> Google {
    Google::new(config(server)).unwrap()
}

/// An adapter whose JWKS cache runs on a manual clock stopped at [`NOW`].
pub(crate) fn google_with_clock(config: GoogleConfig) -> (Google, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(now()));
    (
        Google::new_with_clock(config, clock.clone()).unwrap(),
        clock,
    )
}

/// How many requests the server received on `path`.
pub(crate) async fn hits(server: &MockServer, on: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == on)
        .count()
}

fn sorted_pairs(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs.collect();
    v.sort();
    v
}

fn expected_pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    sorted_pairs(
        expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
}

/// The request body is a form with exactly these fields (order ignored).
pub(crate) struct FormIs(pub(crate) Vec<(String, String)>);

pub(crate) fn form_is(expected: &[(&str, &str)]) -> FormIs {
    FormIs(expected_pairs(expected))
}

impl Match for FormIs {
    fn matches(&self, request: &Request) -> bool {
        let is_form = request
            .headers
            .get("content-type")
            .is_some_and(|v| v == "application/x-www-form-urlencoded");
        let got = sorted_pairs(
            url::form_urlencoded::parse(&request.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
        is_form && got == self.0
    }
}

/// The query string has exactly these parameters (order ignored).
pub(crate) struct QueryIs(pub(crate) Vec<(String, String)>);

pub(crate) fn query_is(expected: &[(&str, &str)]) -> QueryIs {
    QueryIs(expected_pairs(expected))
}

impl Match for QueryIs {
    fn matches(&self, request: &Request) -> bool {
        sorted_pairs(
            request
                .url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        ) == self.0
    }
}

/// A server answering `GET on` with 8 MiB of patterned bytes (`application/octet-stream`), and those bytes.
pub(crate) async fn serving_8_mib(on: &str) -> (MockServer, Vec<u8>) {
    let server = MockServer::start().await;
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    Mock::given(method("GET"))
        .and(path(on))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(body.clone(), "application/octet-stream"),
        )
        .mount(&server)
        .await;
    (server, body)
}

/// A loopback port where nothing listens.
pub(crate) fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A server that accepts connections, reads a little and closes them without answering.
/// Returns its URL and the count of connections accepted.
pub(crate) async fn dropping_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                drop(socket);
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

/// A server answering every connection with `head` and `body` (raw bytes), then waiting `then` before closing.
pub(crate) async fn raw_server(head: &'static str, body: &'static [u8], then: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body).await;
                tokio::time::sleep(then).await;
            });
        }
    });
    url
}

/// Records the keys of every counter and histogram registration (one per call site execution).
#[derive(Default)]
pub(crate) struct KeyRecorder(pub(crate) Mutex<Vec<String>>);

impl KeyRecorder {
    /// How many times a counter or histogram named `name` was registered (once per `counter!` executed).
    pub(crate) fn count(&self, name: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|k| {
                k.split_once(' ')
                    .is_some_and(|(_, key)| key.starts_with(&format!("{name}{{")))
            })
            .count()
    }

    fn push(&self, kind: &str, key: &Key) {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        self.0
            .lock()
            .unwrap()
            .push(format!("{kind} {}{{{}}}", key.name(), labels.join(",")));
    }
}

impl Recorder for KeyRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.push("counter", key);
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.push("histogram", key);
        Histogram::noop()
    }
}

/// A log writer keeping everything written, for [`observe`].
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `body` on a current-thread runtime with a trace-level log capture and a metrics recorder; answers the
/// logs' text and the metric keys registered.
pub(crate) fn observe<F: std::future::Future<Output = ()>>(
    body: impl FnOnce() -> F,
) -> (String, Vec<String>) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let recorder = KeyRecorder::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || rt.block_on(body()));
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let keys = recorder.0.lock().unwrap().clone();
    (text, keys)
}
