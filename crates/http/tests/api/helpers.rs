//! The test harness: the real router over the real use cases, with mockall mocks of Google (token endpoint,
//! ID-token verifier, Drive), the in-memory store and a manual clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use offline_access_domain::memory::{ManualClock, MemoryStore};
use offline_access_domain::ports::{MockDrive, MockIdTokenVerifier, MockTokenEndpoint};
use offline_access_domain::{
    AccessToken, CredentialStore, DriveError, DriveRequest, DriveResponse, FileContent, IdToken,
    OfflineAccess, Ports, Profile, RefreshToken, Scopes, Settings, Subject, TokenError,
    TokenResponse, VerifiedIdToken, VerifyError,
};
use offline_access_http::{AppState, HttpConfig, router};
use time::OffsetDateTime;
use time::macros::datetime;
use tower::ServiceExt;

pub(crate) const NOW: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

// Canary values: none of these may ever appear in a response, a log line or a metric.
pub(crate) const CODE_ALICE: &str = "4/0canaryCodeAlice";
pub(crate) const CODE_BOB: &str = "4/0canaryCodeBob";
pub(crate) const CODE_ALICE_AGAIN: &str = "4/0canaryCodeAliceAgain";
pub(crate) const CODE_USED: &str = "4/0canaryCodeUsed";
pub(crate) const CODE_NO_DRIVE: &str = "4/0canaryCodeNoDrive";
pub(crate) const ACCESS_ALICE: &str = "ya29.canaryAccessAlice";
pub(crate) const ACCESS_BOB: &str = "ya29.canaryAccessBob";
pub(crate) const REFRESH_ALICE: &str = "1//canaryRefreshAlice";
pub(crate) const REFRESH_BOB: &str = "1//canaryRefreshBob";
/// The app's ID tokens (as Bearer) and the ones inside token responses.
pub(crate) const ID_ALICE: &str = "eyJhbGciOiJSUzI1NiJ9.canaryIdAlice.c2ln";
pub(crate) const ID_BOB: &str = "eyJhbGciOiJSUzI1NiJ9.canaryIdBob.c2ln";
pub(crate) const ID_OTHER_APP: &str = "eyJhbGciOiJSUzI1NiJ9.canaryIdOtherApp.c2ln";
pub(crate) const ID_EXPIRED: &str = "eyJhbGciOiJSUzI1NiJ9.canaryIdExpired.c2ln";
pub(crate) const ID_BAD_SIGNATURE: &str = "eyJhbGciOiJSUzI1NiJ9.canaryIdForged.c2ln";
pub(crate) const ID_UNKNOWN_KEY: &str = "eyJhbGciOiJSUzI1NiJ9.canaryIdUnknownKey.c2ln";
pub(crate) const SUB_ALICE: &str = "111111111111111111111";
pub(crate) const SUB_BOB: &str = "222222222222222222222";

pub(crate) const CANARIES: &[&str] = &[
    "canaryCode",
    "canaryAccess",
    "canaryRefresh",
    "canaryId",
    CODE_ALICE,
    ACCESS_ALICE,
    REFRESH_ALICE,
    ID_ALICE,
];

pub(crate) const ALL_SCOPES: &str =
    "openid email profile https://www.googleapis.com/auth/drive.appdata";

/// The mocks of Google. [`Mocks::google`] sets up the usual behaviour; tests that need other behaviour start from
/// [`Mocks::bare`] and add only the expectations they mean.
pub(crate) struct Mocks {
    pub(crate) tokens: MockTokenEndpoint,
    pub(crate) verifier: MockIdTokenVerifier,
    pub(crate) drive: MockDrive,
    /// Every Drive request that reached the mock, with the access token it carried.
    pub(crate) drive_calls: Arc<Mutex<Vec<(String, DriveRequest)>>>,
}

pub(crate) fn subject(s: &str) -> Subject {
    Subject::parse(s).unwrap()
}

pub(crate) fn profile(email: &str, name: &str) -> Profile {
    Profile {
        email: Some(offline_access_domain::Email::parse(email).unwrap()),
        email_verified: true,
        name: Some(name.to_owned()),
        picture: Some("https://lh3.googleusercontent.com/a/photo".to_owned()),
        given_name: Some(name.split(' ').next().unwrap_or(name).to_owned()),
        family_name: Some("Example".to_owned()),
        locale: Some("en".to_owned()),
        hd: None,
    }
}

fn verified(sub: &str, email: &str, name: &str) -> VerifiedIdToken {
    VerifiedIdToken {
        subject: subject(sub),
        profile: profile(email, name),
        issuer: "https://accounts.google.com".to_owned(),
        audience: "server-client-id.apps.googleusercontent.com".to_owned(),
        authorized_party: Some("android-client-id.apps.googleusercontent.com".to_owned()),
        issued_at: NOW,
        expires_at: NOW + time::Duration::hours(1),
    }
}

/// What the mock verifier says about each known token.
pub(crate) fn verify_token(token: &IdToken) -> Result<VerifiedIdToken, VerifyError> {
    match token.expose_secret() {
        ID_ALICE => Ok(verified(SUB_ALICE, "alice@example.com", "Alice Example")),
        ID_BOB => Ok(verified(SUB_BOB, "bob@example.com", "Bob Example")),
        ID_OTHER_APP => Err(VerifyError::WrongAudience),
        ID_EXPIRED => Err(VerifyError::Expired),
        ID_BAD_SIGNATURE => Err(VerifyError::BadSignature),
        ID_UNKNOWN_KEY => Err(VerifyError::UnknownKey),
        _ => Err(VerifyError::Malformed("unknown test token")),
    }
}

pub(crate) fn token_response(
    access: &str,
    refresh: Option<&str>,
    id_token: Option<&str>,
    scopes: &str,
) -> TokenResponse {
    TokenResponse {
        access_token: AccessToken::parse(access).unwrap(),
        expires_in: Duration::from_secs(3600),
        refresh_token: refresh.map(|r| RefreshToken::parse(r).unwrap()),
        id_token: id_token.map(|t| IdToken::parse(t).unwrap()),
        scopes: Some(Scopes::parse(scopes).unwrap()),
    }
}

/// What the mock token endpoint answers to each known code.
pub(crate) fn exchange(code: &str) -> Result<TokenResponse, TokenError> {
    match code {
        CODE_ALICE => Ok(token_response(
            ACCESS_ALICE,
            Some(REFRESH_ALICE),
            Some(ID_ALICE),
            ALL_SCOPES,
        )),
        CODE_ALICE_AGAIN => Ok(token_response(
            ACCESS_ALICE,
            None,
            Some(ID_ALICE),
            ALL_SCOPES,
        )),
        CODE_BOB => Ok(token_response(
            ACCESS_BOB,
            Some(REFRESH_BOB),
            Some(ID_BOB),
            ALL_SCOPES,
        )),
        CODE_NO_DRIVE => Ok(token_response(
            ACCESS_ALICE,
            Some(REFRESH_ALICE),
            Some(ID_ALICE),
            "openid email profile",
        )),
        _ => Err(TokenError::InvalidGrant),
    }
}

/// A Drive that answers per request, for the user whose access token it was given.
pub(crate) fn drive_answer(
    access: &AccessToken,
    request: &DriveRequest,
) -> Result<DriveResponse, DriveError> {
    let owner = match access.expose_secret() {
        ACCESS_ALICE => "alice",
        ACCESS_BOB => "bob",
        _ => return Err(DriveError::Unauthorized),
    };
    Ok(match request {
        DriveRequest::GetAppFolder => DriveResponse::Json(serde_json::json!({
            "kind": "drive#file", "id": format!("appfolder-{owner}"), "name": "Application Data",
            "mimeType": "application/vnd.google-apps.folder"
        })),
        DriveRequest::ListFiles { page_token } => DriveResponse::Json(serde_json::json!({
            "files": [{"id": format!("{owner}File1"), "name": "notes.json"}],
            "nextPageToken": page_token.as_ref().map(|t| format!("after-{t}")),
        })),
        DriveRequest::CreateFile {
            name, content_type, ..
        } => DriveResponse::Json(serde_json::json!({
            "kind": "drive#file", "id": format!("{owner}New"), "name": name, "mimeType": content_type
        })),
        DriveRequest::GetFile { id } | DriveRequest::UpdateContent { id, .. } => {
            if !id.starts_with(owner) {
                return Err(DriveError::NotFound);
            }
            DriveResponse::Json(
                serde_json::json!({"kind": "drive#file", "id": id, "name": "notes.json"}),
            )
        }
        DriveRequest::Download { id } => {
            if !id.starts_with(owner) {
                return Err(DriveError::NotFound);
            }
            DriveResponse::Content {
                content_type: "text/html".to_owned(),
                // Streamed in two chunks, as the Google adapter hands content over.
                content: FileContent::streaming(
                    Some(12),
                    futures::stream::iter([
                        Ok(Bytes::from_static(b"<p>hel")),
                        Ok(Bytes::from_static(b"lo</p>")),
                    ]),
                ),
            }
        }
        DriveRequest::Delete { id } => {
            if !id.starts_with(owner) {
                return Err(DriveError::NotFound);
            }
            DriveResponse::Empty
        }
    })
}

impl Mocks {
    /// Mocks with no expectations at all: any call panics (a use-case task's panic answers 500).
    pub(crate) fn bare() -> Self {
        let mut verifier = MockIdTokenVerifier::new();
        verifier.expect_keys_loaded().return_const(true);
        Self {
            tokens: MockTokenEndpoint::new(),
            verifier,
            drive: MockDrive::new(),
            drive_calls: Arc::default(),
        }
    }

    /// The usual fakes: known codes exchange, known ID tokens verify, Drive answers per user, revoke works.
    pub(crate) fn google() -> Self {
        let mut mocks = Self::google_without_revoke();
        mocks.tokens.expect_revoke().returning(|_| Ok(()));
        mocks
    }

    /// As [`Mocks::google`] with no expectation on revoke (the test sets its own).
    pub(crate) fn google_without_revoke() -> Self {
        let mut mocks = Self::signing_in();
        mocks.record_drive();
        mocks
    }

    /// Known codes exchange and known ID tokens verify; nothing else is expected (the test sets Drive).
    pub(crate) fn signing_in() -> Self {
        let mut mocks = Self::bare();
        mocks
            .tokens
            .expect_exchange_code()
            .returning(|code| exchange(code.expose_secret()));
        mocks.accept_id_tokens();
        mocks
    }

    pub(crate) fn accept_id_tokens(&mut self) {
        self.verifier
            .expect_verify()
            .returning(|token, _now| verify_token(token));
        self.verifier
            .expect_verify_exchanged()
            .returning(|token, _now| verify_token(token));
    }

    pub(crate) fn record_drive(&mut self) {
        let calls = Arc::clone(&self.drive_calls);
        self.drive
            .expect_execute()
            .returning(move |access, request| {
                calls
                    .lock()
                    .unwrap()
                    .push((access.expose_secret().to_owned(), request.clone()));
                drive_answer(access, request)
            });
    }
}

/// A running app: the router plus handles on what it works with.
pub(crate) struct TestApp {
    pub(crate) router: Router,
    pub(crate) store: MemoryStore,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) drive_calls: Arc<Mutex<Vec<(String, DriveRequest)>>>,
    pub(crate) peer: SocketAddr,
}

/// Fast backoff; and no recent-credential cache, because these tests change the store directly, as another
/// instance would, and expect the next request to see it (the cache's rules are tested in the domain).
pub(crate) fn settings() -> Settings {
    Settings {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(2),
        credential_cache_ttl: Duration::ZERO,
        ..Settings::default()
    }
}

impl TestApp {
    pub(crate) fn new(mocks: Mocks) -> Self {
        Self::with_config(mocks, HttpConfig::default())
    }

    /// Over the in-memory store (`store` is a handle on it).
    pub(crate) fn with_config(mocks: Mocks, config: HttpConfig) -> Self {
        let memory = MemoryStore::new();
        Self::with_store(mocks, config, Arc::new(memory.clone()), memory)
    }

    /// With a store of the test's choosing; `memory` is what `store` reads from in assertions.
    pub(crate) fn with_store(
        mocks: Mocks,
        config: HttpConfig,
        store: Arc<dyn CredentialStore>,
        memory: MemoryStore,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let ports = Ports {
            tokens: Arc::new(mocks.tokens),
            verifier: Arc::new(mocks.verifier),
            store,
            drive: Arc::new(mocks.drive),
            clock: Arc::clone(&clock) as _,
        };
        let service = Arc::new(OfflineAccess::new(ports, settings()));
        let router = router(AppState::new(service, config));
        Self {
            router,
            store: memory,
            clock,
            drive_calls: mocks.drive_calls,
            peer: "192.0.2.10:50000".parse().unwrap(),
        }
    }

    pub(crate) async fn send(&self, mut request: Request<Body>) -> Answer {
        if request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_none()
        {
            request.extensions_mut().insert(ConnectInfo(self.peer));
        }
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Signs Alice in with her first code; asserts it worked.
    pub(crate) async fn sign_in_alice(&self) -> Answer {
        let answer = self.send(authcode_form(CODE_ALICE)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        answer
    }

    pub(crate) async fn sign_in(&self, code: &str) -> Answer {
        self.send(authcode_form(code)).await
    }

    pub(crate) fn drive_call_count(&self) -> usize {
        self.drive_calls.lock().unwrap().len()
    }

    pub(crate) async fn stored(&self, sub: &str) -> Option<offline_access_domain::Credential> {
        self.store.get(&subject(sub)).await.unwrap()
    }
}

/// A response, collected.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the error shape, status and code, and that the body holds exactly `error` and `message`.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(
            self.headers.get("content-type").unwrap(),
            "application/json",
            "{}",
            self.text()
        );
        let json = self.json();
        assert_eq!(json["error"], code, "{json}");
        let message = json["message"].as_str().unwrap();
        assert!(!message.is_empty() && message.ends_with('.'), "{message}");
        assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
        assert_no_canary(&self.text());
    }
}

#[track_caller]
pub(crate) fn assert_no_canary(text: &str) {
    for canary in CANARIES {
        assert!(
            !text.contains(canary),
            "secret {canary:?} leaked in: {text}"
        );
    }
}

pub(crate) fn authcode_form(code: &str) -> Request<Body> {
    let body = serde_urlencoded::to_string([("authCode", code)]).unwrap();
    Request::post("/authcode")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-requested-with", "com.example.app")
        .body(Body::from(body))
        .unwrap()
}

pub(crate) fn authcode_json(body: &str) -> Request<Body> {
    Request::post("/authcode")
        .header("content-type", "application/json")
        .header("x-requested-with", "com.example.app")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

pub(crate) fn get(path: &str, bearer: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {bearer}"))
        .body(Body::empty())
        .unwrap()
}

pub(crate) fn with_bearer(
    method: &str,
    path: &str,
    bearer: &str,
    body: &'static [u8],
) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

thread_local! {
    static LOG_SINK: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { std::cell::RefCell::new(None) };
}

/// Writes log lines into the current thread's capture, if one is active.
struct ThreadSink;

impl std::io::Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG_SINK.with(|sink| {
            if let Some(sink) = &*sink.borrow() {
                sink.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures everything logged on this thread at TRACE until dropped. One global subscriber serves the whole
/// binary (a per-test scoped subscriber misses callsites whose interest another thread cached first).
pub(crate) struct LogCapture(Arc<Mutex<Vec<u8>>>);

pub(crate) fn capture_logs() -> LogCapture {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(|| ThreadSink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    let buffer = Arc::new(Mutex::new(Vec::new()));
    LOG_SINK.with(|sink| *sink.borrow_mut() = Some(Arc::clone(&buffer)));
    LogCapture(buffer)
}

impl LogCapture {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        LOG_SINK.with(|sink| *sink.borrow_mut() = None);
    }
}

/// The repository's root (this crate is `crates/http`).
pub(crate) fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the repository, by its path from the root.
pub(crate) fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
