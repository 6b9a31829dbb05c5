//! Shared harness for the end-to-end suites: the real offline-access server on a loopback port, composed from the
//! real adapters (Google adapter, file store, HTTP), against an in-process `fake-google`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use fake_google::{CodeRequest, FakeGoogle, IdTokenRequest};
use offline_access_crypto::KeyRing;
use offline_access_domain::{OfflineAccess, Ports, Settings, Subject, SystemClock};
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

/// Everything logged so far by any test in this binary.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&capture_logs().lock().unwrap()).into_owned()
}

/// A running server and the fake Google it talks to.
pub struct TestApp {
    /// The fake Google.
    pub fake: FakeGoogle,
    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// An HTTP client for calling the server.
    pub http: reqwest::Client,
    /// The use cases, for calls with no user present (like `offline-access drive appfolder --sub`).
    pub service: Arc<OfflineAccess>,
    /// The file store's directory.
    pub store_dir: TempDir,
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
        capture_logs();
        let fake = FakeGoogle::start().await.expect("fake Google starts");
        let control = fake.control();
        let mut google_config = GoogleConfig::new(
            control.client_id(),
            secrecy::SecretString::from(control.client_secret()),
        );
        google_config.base_url = Some(fake.base_url());
        let google = Google::new(google_config).expect("Google adapter builds");
        let store_dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(KeyRing::generate_ephemeral());
        let store = FileStore::open(store_dir.path().to_path_buf(), keys.clone())
            .expect("file store opens");
        let service = Arc::new(OfflineAccess::new(
            Ports {
                tokens: google.tokens(),
                verifier: google.verifier(),
                store: Arc::new(store),
                drive: google.drive(),
                clock: Arc::new(SystemClock),
            },
            settings,
        ));
        let router = offline_access_http::router(AppState::new(service.clone(), http_config));
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
            http: reqwest::Client::new(),
            service,
            store_dir,
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
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
}
