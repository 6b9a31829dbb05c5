//! Shared harness for the end-to-end suites: the real offline-access server on a loopback port, composed from the
//! real adapters (Google adapter, file store, HTTP), against an in-process `fake-google`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use fake_google::{CodeRequest, FakeGoogle, IdTokenRequest};
use offline_access_crypto::KeyRing;
use offline_access_domain::events::EventStore;
use offline_access_domain::{Clock, OfflineAccess, Ports, Settings, Subject, SystemClock};
use offline_access_google::{Google, GoogleConfig};
use offline_access_http::{AppState, HttpConfig};
use offline_access_store_file::FileStore;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// Everything every test log line went to (one global subscriber at `trace` for the whole test binary).
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once, at `trace` level for every crate.
pub fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    LOGS.get_or_init(|| {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let writer = LogSink(sink.clone());
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        sink
    })
    .clone()
}

/// The Prometheus recorder every test of this binary records metrics to (installed once).
static METRICS: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> = OnceLock::new();

/// Installs a global Prometheus recorder once (if no other recorder was installed first).
pub fn capture_metrics() {
    METRICS.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).ok().map(|()| handle)
    });
}

/// The Prometheus text of every metric recorded so far by any test in this binary.
pub fn captured_metrics() -> String {
    capture_metrics();
    METRICS
        .get()
        .and_then(Option::as_ref)
        .map(metrics_exporter_prometheus::PrometheusHandle::render)
        .unwrap_or_default()
}

/// Everything logged so far by any test in this binary.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&capture_logs().lock().unwrap()).into_owned()
}

/// Everything [`TestApp::spawn_with_options`] can vary. `Default`: the rate limit off, default use-case
/// settings, no `azp`/`hd` rules, the adapter's default timeouts and JWKS grace, the system clock.
pub struct TestOptions {
    /// The HTTP adapter's configuration.
    pub http: HttpConfig,
    /// The use cases' settings.
    pub settings: Settings,
    /// `google.allowed_azp`.
    pub allowed_azp: Vec<String>,
    /// `google.hosted_domain`.
    pub hosted_domain: Option<String>,
    /// `google.request_timeout` (the adapter's default when `None`).
    pub google_request_timeout: Option<std::time::Duration>,
    /// `google.jwks_grace` (the adapter's default when `None`).
    pub jwks_grace: Option<std::time::Duration>,
    /// The clock of the use cases and the JWKS cache (the system clock when `None`).
    pub clock: Option<Arc<dyn Clock>>,
    /// Whether grant changes record events in the outbox (as with `webhooks.url` set).
    pub record_events: bool,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            http: HttpConfig {
                authcode_rate_limit: 0,
                ..HttpConfig::default()
            },
            settings: Settings::default(),
            allowed_azp: Vec::new(),
            hosted_domain: None,
            google_request_timeout: None,
            jwks_grace: None,
            clock: None,
            record_events: false,
        }
    }
}

/// A clock that starts at the real time and moves only when told to (for JWKS expiry and grace).
#[derive(Debug)]
pub struct TestClock {
    now: Mutex<time::OffsetDateTime>,
}

impl TestClock {
    /// A clock stopped at the current real time.
    pub fn now_real() -> Arc<Self> {
        Arc::new(Self {
            now: Mutex::new(time::OffsetDateTime::now_utc()),
        })
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.now.lock().unwrap();
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> time::OffsetDateTime {
        *self.now.lock().unwrap()
    }
}

/// A running server and the fake Google it talks to.
pub struct TestApp {
    /// The fake Google.
    pub fake: FakeGoogle,
    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The internal API's base URL (its own listener).
    pub internal_url: String,
    /// A key the internal API accepts (named `e2e`).
    pub api_key: String,
    internal_shutdown: Option<oneshot::Sender<()>>,
    /// An HTTP client for calling the server.
    pub http: reqwest::Client,
    /// The use cases, for calls with no user present (like `offline-access drive appfolder --sub`).
    pub service: Arc<OfflineAccess>,
    /// The file store's directory.
    pub store_dir: TempDir,
    /// The same store as the outbox and `jti` register.
    pub events: Arc<dyn EventStore>,
    /// The key ring the store encrypts with.
    pub keys: Arc<KeyRing>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// Starts a fake Google and a server composed like the binary's, on free loopback ports.
    pub async fn spawn() -> Self {
        Self::spawn_with(HttpConfig {
            authcode_rate_limit: 0,
            ..HttpConfig::default()
        })
        .await
    }

    /// As [`TestApp::spawn`] with a given HTTP configuration.
    pub async fn spawn_with(http_config: HttpConfig) -> Self {
        Self::spawn_with_settings(http_config, Settings::default()).await
    }

    /// As [`TestApp::spawn`] with given HTTP and use-case settings.
    pub async fn spawn_with_settings(http_config: HttpConfig, settings: Settings) -> Self {
        Self::spawn_with_options(TestOptions {
            http: http_config,
            settings,
            ..TestOptions::default()
        })
        .await
    }

    /// As [`TestApp::spawn`] with every option of [`TestOptions`] (Google adapter settings, a clock).
    pub async fn spawn_with_options(options: TestOptions) -> Self {
        let TestOptions {
            http: http_config,
            settings,
            allowed_azp,
            hosted_domain,
            google_request_timeout,
            jwks_grace,
            clock,
            record_events,
        } = options;
        capture_logs();
        capture_metrics();
        let fake = FakeGoogle::start().await.expect("fake Google starts");
        let control = fake.control();
        let mut google_config = GoogleConfig::new(
            control.client_id(),
            secrecy::SecretString::from(control.client_secret()),
        );
        google_config.base_url = Some(fake.base_url());
        google_config.allowed_azp = allowed_azp;
        google_config.hosted_domain = hosted_domain;
        if let Some(timeout) = google_request_timeout {
            google_config.request_timeout = timeout;
        }
        if let Some(grace) = jwks_grace {
            google_config.jwks_grace = grace;
        }
        let clock: Arc<dyn Clock> = clock.unwrap_or_else(|| Arc::new(SystemClock));
        let google =
            Google::new_with_clock(google_config, clock.clone()).expect("Google adapter builds");
        let store_dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(KeyRing::generate_ephemeral());
        let store = Arc::new(
            FileStore::open(store_dir.path().to_path_buf(), keys.clone())
                .expect("file store opens"),
        );
        let events: Arc<dyn EventStore> = store.clone();
        let service = Arc::new(
            OfflineAccess::new(
                Ports {
                    tokens: google.tokens(),
                    verifier: google.verifier(),
                    store,
                    drive: google.drive(),
                    clock,
                },
                settings,
            )
            .with_google_api(google.api())
            .with_events(events.clone(), record_events),
        );
        let router = offline_access_http::router(
            AppState::new(service.clone(), http_config).with_risc(google.security_events()),
        );
        // The internal API on its own port, with one key.
        let (api_key, entry) = offline_access_http::new_api_key("e2e").unwrap();
        let hosts =
            offline_access_google::ProxyHosts::parse(["www.googleapis.com", "*.googleapis.com"])
                .unwrap();
        let internal =
            offline_access_http::internal_router(offline_access_http::InternalState::new(
                service.clone(),
                offline_access_http::InternalConfig::new(
                    offline_access_http::ApiKeys::parse(&[entry]).unwrap(),
                    Arc::new(move |host: &str| hosts.allows(host)),
                ),
            ));
        let internal_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let internal_url = format!("http://{}", internal_listener.local_addr().unwrap());
        let (internal_tx, internal_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = offline_access_http::serve(internal_listener, internal, async move {
                let _ = internal_rx.await;
            })
            .await;
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = offline_access_http::serve(listener, router, async move {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            fake,
            url,
            internal_url,
            api_key,
            internal_shutdown: Some(internal_tx),
            http: reqwest::Client::new(),
            service,
            store_dir,
            events,
            keys,
            shutdown: Some(tx),
        }
    }

    /// Mints a server auth code at the fake, as the user's consent on the phone would.
    pub async fn mint_code(&self, request: CodeRequest) -> fake_google::MintedCode {
        self.fake.control().mint_code(request).await.unwrap()
    }

    /// The ID token the app's signed-in account would hold.
    pub async fn id_token(&self, email: &str) -> String {
        self.fake
            .control()
            .mint_id_token(IdTokenRequest {
                email: email.to_owned(),
                ..IdTokenRequest::default()
            })
            .await
            .unwrap()
    }

    /// POSTs a code to `/authcode` as the Android sample does (form body, `X-Requested-With`).
    pub async fn post_authcode(&self, code: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/authcode", self.url))
            .header("X-Requested-With", "XMLHttpRequest")
            .form(&[("authCode", code)])
            .send()
            .await
            .unwrap()
    }

    /// Mints a code for `email` and signs in with it; returns the response JSON.
    pub async fn sign_in(&self, email: &str) -> serde_json::Value {
        let minted = self.mint_code(CodeRequest::new(email)).await;
        let response = self.post_authcode(&minted.code).await;
        assert_eq!(response.status(), 200, "sign-in of {email}");
        response.json().await.unwrap()
    }

    /// A request to the server with the user's Bearer ID token.
    pub fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        id_token: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(id_token)
    }

    /// How many requests with this `grant_type` reached the fake's token endpoint.
    pub async fn token_calls(&self, grant_type: &str) -> usize {
        self.fake
            .control()
            .requests()
            .await
            .iter()
            .filter(|e| e.endpoint == "token" && e.grant_type.as_deref() == Some(grant_type))
            .count()
    }

    /// How many requests reached an endpoint of the fake (`token`, `drive`, `revoke`, ...).
    pub async fn calls_to(&self, endpoint: &str) -> usize {
        self.fake
            .control()
            .requests()
            .await
            .iter()
            .filter(|e| e.endpoint == endpoint)
            .count()
    }

    /// The stored credential of `sub`, read through the use cases.
    pub async fn stored(&self, sub: &str) -> Option<offline_access_domain::Credential> {
        self.service
            .credential(&Subject::parse(sub).unwrap())
            .await
            .ok()
    }

    /// All bytes of every file under the store directory (recursively).
    pub fn store_bytes(&self) -> Vec<u8> {
        fn walk(dir: &std::path::Path, all: &mut Vec<u8>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, all);
                } else if path.is_file() {
                    all.extend(std::fs::read(path).unwrap());
                }
            }
        }
        let mut all = Vec::new();
        walk(self.store_dir.path(), &mut all);
        all
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.internal_shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApp {
    /// A request to the internal API with this app's key.
    pub fn internal(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.internal_url))
            .bearer_auth(&self.api_key)
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
}

/// What matters of a stored credential, to compare before and after an attack or a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The store's version.
    pub version: u64,
    /// The refresh token (exposed: tests only).
    pub refresh_token: Option<String>,
    /// `active` / `revoked` / ...
    pub consent: String,
    /// The stored email.
    pub email: Option<String>,
    /// Whether an access token is cached.
    pub has_access: bool,
}

impl TestApp {
    /// The stored credential of `sub` as a [`Snapshot`].
    pub async fn snapshot(&self, sub: &str) -> Option<Snapshot> {
        self.stored(sub).await.map(|c| Snapshot {
            version: c.version,
            refresh_token: c.refresh_token.map(|t| t.expose_secret().to_owned()),
            consent: c.consent.as_str().to_owned(),
            email: c.profile.email.map(|e| e.as_str().to_owned()),
            has_access: c.access.is_some(),
        })
    }

    /// How many credentials the store holds (every page).
    pub async fn stored_count(&self) -> usize {
        let mut count = 0;
        let mut after = None;
        loop {
            let page = self.service.ports().store.list(after, 100).await.unwrap();
            count += page.items.len();
            match page.next_cursor {
                Some(next) => after = Some(next),
                None => return count,
            }
        }
    }

    /// POSTs a code to `/authcode` with a Bearer ID token of the signed-in user.
    pub async fn post_authcode_as(&self, code: &str, id_token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/authcode", self.url))
            .header("X-Requested-With", "XMLHttpRequest")
            .bearer_auth(id_token)
            .form(&[("authCode", code)])
            .send()
            .await
            .unwrap()
    }

    /// The claims of an ID token the fake would issue for `sub` now (our audience, Google's issuer).
    pub fn google_claims(&self, sub: &str, email: &str) -> serde_json::Value {
        let now = self.fake.control().now_unix();
        serde_json::json!({
            "iss": "https://accounts.google.com",
            "azp": self.fake.control().client_id(),
            "aud": self.fake.control().client_id(),
            "sub": sub,
            "email": email,
            "email_verified": true,
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// Signs `claims` with the fake Google's current signing key (RS256, its `kid`), as Google would: the
    /// signature is genuine, so only the claim checks can refuse the token.
    pub fn sign_as_google(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({
            "alg": "RS256",
            "kid": self.fake.control().current_kid(),
            "typ": "JWT",
        });
        jwt::sign_rs256(FAKE_GOOGLE_KEY_DER, &header, claims)
    }
}

/// The fake Google's first signing key (PKCS#8 DER), the one it signs with until a rotation.
pub const FAKE_GOOGLE_KEY_DER: &[u8] = include_bytes!("../fake-google/src/keys/key1.pk8.der");
/// An attacker's RSA-2048 key (PKCS#8 DER), generated with openssl for these tests; never published.
pub const ATTACKER_KEY_DER: &[u8] = include_bytes!("fixtures/attacker_rsa.pk8.der");
/// The same attacker key as PEM (for jsonwebtoken).
pub const ATTACKER_KEY_PEM: &[u8] = include_bytes!("fixtures/attacker_rsa.pem");

/// Hand-made JWS compact tokens for forgery tests.
pub mod jwt {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// base64url without padding of `bytes`.
    pub fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// `header.payload` of JSON values.
    pub fn signing_input(header: &serde_json::Value, claims: &serde_json::Value) -> String {
        format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        )
    }

    /// An RS256 token signed with a PKCS#8 DER RSA key (any header, any claims).
    pub fn sign_rs256(
        key_der: &[u8],
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> String {
        use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
        let key = RsaKeyPair::from_pkcs8(key_der).unwrap();
        let input = signing_input(header, claims);
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{input}.{}", b64(&signature))
    }
}
