//! Server instances on a given credential store sharing one fake Google; the test database (one random schema
//! per test, dropped at the end); a TCP forwarder that can cut a store off from PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fake_google::{CodeRequest, FakeGoogle, IdTokenRequest};
use offline_access_crypto::KeyRing;
use offline_access_domain::{Clock, CredentialStore, OfflineAccess, Ports, Settings, SystemClock};
use offline_access_google::{Google, GoogleConfig};
use offline_access_http::{AppState, HttpConfig};
use offline_access_store_postgres::testkit::TestSchema;
use offline_access_store_postgres::{PgOptions, PgStore};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// One offline-access server (its own use cases, Google adapter and HTTP listener) on the store it is given.
pub(crate) struct Instance {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// The use cases, for calls with no HTTP in between.
    pub(crate) service: Arc<OfflineAccess>,
    pub(crate) http: reqwest::Client,
    /// The internal API's `http://127.0.0.1:PORT`.
    pub(crate) internal_url: String,
    /// A key it accepts.
    pub(crate) api_key: String,
    shutdown: Option<oneshot::Sender<()>>,
    internal_shutdown: Option<oneshot::Sender<()>>,
}

impl Instance {
    /// Starts a server composed like the binary's on `store`, talking to `fake`.
    pub(crate) async fn spawn(fake: &FakeGoogle, store: Arc<dyn CredentialStore>) -> Instance {
        Self::spawn_with_google(fake, store, None, None).await
    }

    /// As [`Instance::spawn`], reaching Google at `google_url` instead of the fake's own address (a
    /// [`Forwarder`] to it), with this `google.request_timeout` (the adapter's default when `None`).
    pub(crate) async fn spawn_with_google(
        fake: &FakeGoogle,
        store: Arc<dyn CredentialStore>,
        google_url: Option<String>,
        google_timeout: Option<Duration>,
    ) -> Instance {
        offline_access_tests::capture_logs();
        let control = fake.control();
        let mut google_config = GoogleConfig::new(
            control.client_id(),
            secrecy::SecretString::from(control.client_secret()),
        );
        google_config.base_url = Some(google_url.unwrap_or_else(|| fake.base_url()));
        if let Some(timeout) = google_timeout {
            google_config.request_timeout = timeout;
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let google =
            Google::new_with_clock(google_config, clock.clone()).expect("Google adapter builds");
        let service = Arc::new(
            OfflineAccess::new(
                Ports {
                    tokens: google.tokens(),
                    verifier: google.verifier(),
                    store,
                    drive: google.drive(),
                    clock,
                },
                Settings::default(),
            )
            .with_google_api(google.api()),
        );
        let (api_key, entry) = offline_access_http::new_api_key("instances").unwrap();
        let hosts = offline_access_google::ProxyHosts::parse(["*.googleapis.com"]).unwrap();
        let internal =
            offline_access_http::internal_router(offline_access_http::InternalState::new(
                service.clone(),
                offline_access_http::InternalConfig::new(
                    offline_access_http::ApiKeys::parse(&[entry]).unwrap(),
                    Arc::new(move |host: &str| hosts.allows(host)),
                ),
            ));
        let internal_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let internal_url = format!("http://{}", internal_listener.local_addr().unwrap());
        let (internal_tx, internal_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = offline_access_http::serve(internal_listener, internal, async move {
                let _ = internal_rx.await;
            })
            .await;
        });
        let http_config = HttpConfig {
            authcode_rate_limit: 0,
            ..HttpConfig::default()
        };
        let router = offline_access_http::router(AppState::new(service.clone(), http_config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = offline_access_http::serve(listener, router, async move {
                let _ = rx.await;
            })
            .await;
        });
        Instance {
            url,
            service,
            http: reqwest::Client::new(),
            internal_url,
            api_key,
            shutdown: Some(tx),
            internal_shutdown: Some(internal_tx),
        }
    }

    /// Signs `email` in through this instance (a code minted at the fake, POSTed to `/authcode`); returns `sub`.
    pub(crate) async fn sign_in(&self, fake: &FakeGoogle, email: &str) -> String {
        let minted = fake
            .control()
            .mint_code(CodeRequest::new(email))
            .await
            .unwrap();
        let response = self
            .http
            .post(format!("{}/authcode", self.url))
            .header("X-Requested-With", "XMLHttpRequest")
            .form(&[("authCode", minted.code.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "sign-in of {email}");
        let body: serde_json::Value = response.json().await.unwrap();
        body["user"]["sub"].as_str().unwrap().to_owned()
    }

    /// `GET path` with a Bearer ID token; the status, or `None` when no HTTP answer came at all.
    pub(crate) async fn get_status(&self, path: &str, id_token: &str) -> Option<u16> {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(id_token)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.internal_shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The ID token the app's signed-in account would hold.
pub(crate) async fn id_token(fake: &FakeGoogle, email: &str) -> String {
    fake.control()
        .mint_id_token(IdTokenRequest {
            email: email.to_owned(),
            ..IdTokenRequest::default()
        })
        .await
        .unwrap()
}

/// How many requests with this `grant_type` the fake's token endpoint answered.
pub(crate) async fn token_calls(fake: &FakeGoogle, grant_type: &str) -> usize {
    fake.control()
        .requests()
        .await
        .iter()
        .filter(|e| e.endpoint == "token" && e.grant_type.as_deref() == Some(grant_type))
        .count()
}

/// One test's schema on the test database (store-postgres's `testkit::TestSchema`), dropped when the test ends
/// (even when it fails), and the key ring every instance of the test shares.
pub(crate) struct TestDb {
    pub(crate) url: String,
    pub(crate) schema: String,
    /// The key ring every instance of the test shares.
    pub(crate) keys: Arc<KeyRing>,
    dropped_at_the_end: TestSchema,
}

impl TestDb {
    /// A new random schema name (created by the first `migrate`) on the test database (`DATABASE_URL`, else this
    /// process's throwaway cluster).
    pub(crate) fn new() -> TestDb {
        let schema = TestSchema::new("oa_inst");
        TestDb {
            url: schema.url.clone(),
            schema: schema.name.clone(),
            keys: Arc::new(KeyRing::generate_ephemeral()),
            dropped_at_the_end: schema,
        }
    }

    /// This test's URL with an `application_name`, to find an instance's connections in `pg_stat_activity`.
    pub(crate) fn url_named(&self, application_name: &str) -> String {
        self.dropped_at_the_end.url_named(application_name)
    }

    /// A store on this schema that nobody migrated (as with `store.migrate_on_start = false`).
    pub(crate) async fn unmigrated_store(&self) -> Arc<PgStore> {
        let store = PgStore::connect(
            &self.url,
            self.keys.clone(),
            PgOptions {
                pool_size: 4,
                lock_pool_size: 2,
                ..self.dropped_at_the_end.options()
            },
        )
        .await
        .unwrap();
        Arc::new(store)
    }

    /// A store (its own pools) on this schema, migrated, connecting to `url`.
    pub(crate) async fn store_at(&self, url: &str) -> Arc<PgStore> {
        let store = PgStore::connect(
            url,
            self.keys.clone(),
            PgOptions {
                pool_size: 8,
                lock_pool_size: 4,
                ..self.dropped_at_the_end.options()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    }

    /// A plain driver connection, for raw queries.
    pub(crate) async fn raw(&self) -> tokio_postgres::Client {
        self.dropped_at_the_end.raw().await.unwrap()
    }
}

/// A TCP forwarder from a loopback port to a server (PostgreSQL, the fake Google) that can be cut (every
/// connection closed, new ones closed at once: the server unreachable, without touching it) and restored, or held
/// (new connections accepted but nothing forwarded until released: a request hanging on the wire).
pub(crate) struct Forwarder {
    /// `127.0.0.1:PORT` to connect to instead of the server.
    pub(crate) addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    held: tokio::sync::watch::Sender<bool>,
    waiting: Arc<AtomicU64>,
    links: Arc<std::sync::Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// Forwards a new loopback port to `target` (`host:port`), up and not held.
    pub(crate) async fn start(target: String) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (held, _) = tokio::sync::watch::channel(false);
        let waiting = Arc::new(AtomicU64::new(0));
        let links = Arc::new(std::sync::Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let (up, links, held, waiting) =
                (up.clone(), links.clone(), held.clone(), waiting.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound); // Closed at once: the client sees the server go away.
                        continue;
                    }
                    let target = target.clone();
                    let mut released = held.subscribe();
                    let waiting = waiting.clone();
                    links.lock().unwrap().spawn(async move {
                        if *released.borrow_and_update() {
                            waiting.fetch_add(1, Ordering::SeqCst);
                            let _ = released.wait_for(|held| !held).await;
                            waiting.fetch_sub(1, Ordering::SeqCst);
                        }
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Forwarder {
            addr,
            up,
            held,
            waiting,
            links,
            accept,
        }
    }

    /// Cuts every forwarded connection and refuses new ones until [`Forwarder::restore`].
    pub(crate) fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.links.lock().unwrap().abort_all();
    }

    /// Forwards new connections again.
    pub(crate) fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Holds new connections (accepted, nothing forwarded) until [`Forwarder::release`].
    pub(crate) fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Forwards the held connections and every new one.
    pub(crate) fn release(&self) {
        self.held.send_replace(false);
    }

    /// How many connections are held right now.
    pub(crate) fn held_connections(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept.abort();
        self.links.lock().unwrap().abort_all();
    }
}

/// `host:port` of a `postgres://` URL (the forwarder's target), defaulting the port to 5432.
pub(crate) fn host_port(url: &str) -> String {
    let parsed = url::Url::parse(url).unwrap();
    format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5432)
    )
}

/// `url` with its host and port replaced by `addr`.
pub(crate) fn via(url: &str, addr: std::net::SocketAddr) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_host(Some(&addr.ip().to_string())).unwrap();
    parsed.set_port(Some(addr.port())).unwrap();
    parsed.to_string()
}

/// Polls `check` every 20 ms until it is true, for at most `limit` (then panics with `what`).
pub(crate) async fn until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
