//! `demo [--json]`: Google's "Enabling Server-Side Access" flow, end to end on this machine with no network.
//!
//! An in-process fake Google and the real server (real HTTP on loopback, the real Google adapter, a file store in
//! a temporary directory with an ephemeral key) run side by side; the demo plays the Android app and shows each
//! step. It never prints a token, code or secret.

use std::path::Path;
use std::sync::Arc;

use fake_google::{ANDROID_CLIENT_ID, CodeRequest, FakeGoogle, IdTokenRequest, JournalEntry};
use offline_access_crypto::KeyRing;
use offline_access_domain::{
    CredentialStore, DriveRequest, DriveResponse, IdToken, RefreshToken, Subject,
};
use offline_access_http::AppState;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::compose::{self, GoogleSource, Stack};
use crate::config::Config;
use crate::error::{Failure, Outcome, out};
use crate::telemetry;

/// The demo user.
const EMAIL: &str = "alice@example.com";

/// What the app sends so the server knows the request is not a cross-site form post.
const X_REQUESTED_WITH: &str = "com.example.android";

/// Runs the demo and prints it; fails (exit 1) unless every step worked.
pub(crate) async fn run(json: bool) -> Outcome {
    telemetry::init_tracing("warn", crate::config::LogFormat::Text)?;
    let world = World::start().await?;
    let mut report = Report {
        ok: true,
        fake_google: world.fake.base_url(),
        server: world.server.clone(),
        store: world.store_dir.path().display().to_string(),
        key: "ephemeral (generated for this run, never written to disk)".to_owned(),
        steps: Vec::new(),
    };
    if !json {
        print_header(&report);
    }
    let mut flow = Flow::new(&world);
    let mut failed = false;
    for (n, step) in STEPS.iter().enumerate() {
        let number = n + 1;
        let result = if failed {
            StepResult::skipped(step)
        } else {
            match run_step(step.id, &mut flow).await {
                Ok(details) => StepResult::ok(step, details),
                Err(error) => {
                    failed = true;
                    StepResult::failed(step, error)
                }
            }
        };
        if !json {
            print_step(number, &result);
        }
        report.steps.push(result);
    }
    report.ok = !failed;
    world.stop().await;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::runtime(format!("cannot render the demo's JSON: {e}")))?;
        out!("{text}");
    } else {
        out!();
        if report.ok {
            out!(
                "✓ All {} steps worked: the server holds lasting, encrypted offline access to {EMAIL}'s Drive \
                 appDataFolder.",
                report.steps.len()
            );
        } else {
            out!("✗ The demo failed; see the step marked ✗ above.");
        }
    }
    if report.ok {
        Ok(())
    } else {
        let failed = report
            .steps
            .iter()
            .position(|s| s.status == Status::Failed)
            .map_or(0, |i| i + 1);
        Err(Failure::runtime(match proxy_hint() {
            Some(hint) => format!("demo step {failed} failed; {hint}"),
            None => {
                format!("demo step {failed} failed; run with RUST_LOG=debug for the server's logs")
            }
        }))
    }
}

/// When the environment names an HTTP proxy that does not exempt loopback, the server's calls to the in-process
/// fake Google go to the proxy and fail: say how to fix that.
fn proxy_hint() -> Option<String> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let proxy = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .find(|name| set(name).is_some())?;
    let exempt = ["NO_PROXY", "no_proxy"]
        .into_iter()
        .filter_map(set)
        .any(|list| {
            list.split(',')
                .any(|entry| matches!(entry.trim(), "*" | "127.0.0.1" | "127.0.0.0/8"))
        });
    (!exempt).then(|| {
        format!(
            "{proxy} is set and NO_PROXY does not exempt 127.0.0.1, so calls to the in-process fake Google go to \
             the proxy; run with NO_PROXY=127.0.0.1"
        )
    })
}

/// The fake Google, the server and its store, running in this process.
struct World {
    fake: FakeGoogle,
    stack: Stack,
    server: String,
    http: reqwest::Client,
    store_dir: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl World {
    async fn start() -> Result<Self, Failure> {
        let fake = FakeGoogle::start()
            .await
            .map_err(|e| Failure::runtime(format!("cannot start the fake Google: {e}")))?;
        // The built-in defaults only: the demo must not depend on the operator's files or environment.
        let mut config = Config::defaults()?;
        config.google.allowed_azp = vec![ANDROID_CLIENT_ID.to_owned()];
        let store_dir = tempfile::Builder::new()
            .prefix("offline-access-demo-")
            .tempdir()
            .map_err(|e| Failure::runtime(format!("cannot create a temporary directory: {e}")))?;
        let client_secret_json = fake.client_secret_json().to_string();
        let google = compose::google(
            &config,
            GoogleSource::Fake {
                client_secret_json: &client_secret_json,
                base_url: fake.base_url(),
            },
        )?;
        let keys = Arc::new(KeyRing::generate_ephemeral());
        let store = compose::open_file_store(&store_dir.path().join("store"), keys)?;
        let stack = compose::stack(google, store, compose::settings(&config), false);
        let state = AppState::new(Arc::clone(&stack.service), compose::http_config(&config)?);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Failure::runtime(format!("cannot listen on a loopback port: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::runtime(format!("cannot read the listening address: {e}")))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(offline_access_http::serve(
            listener,
            offline_access_http::router(state),
            async move {
                let _ = stopped.await;
            },
        ));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            fake,
            stack,
            server: format!("http://{addr}"),
            http,
            store_dir,
            stop,
            task,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.fake.shutdown().await;
        drop(self.store_dir);
    }
}

/// What the steps learn and hand on to later steps.
struct Flow<'a> {
    world: &'a World,
    subject: Option<Subject>,
    /// The refresh token stored at the first sign-in (kept in memory only, never printed).
    first_refresh: Option<RefreshToken>,
    /// The server's answer to the first sign-in.
    first_answer: Option<Value>,
    /// Journal entries already seen.
    seen: usize,
}

impl<'a> Flow<'a> {
    fn new(world: &'a World) -> Self {
        Self {
            world,
            subject: None,
            first_refresh: None,
            first_answer: None,
            seen: 0,
        }
    }

    fn subject(&self) -> Result<&Subject, String> {
        self.subject
            .as_ref()
            .ok_or_else(|| "no user was signed in by an earlier step".to_owned())
    }

    /// The requests that reached the fake Google since the last call.
    async fn new_requests(&mut self) -> Vec<JournalEntry> {
        let all = self.world.fake.requests().await;
        let new = all.get(self.seen..).map(<[_]>::to_vec).unwrap_or_default();
        self.seen = all.len();
        new
    }

    /// The app's sign-in: mints a code at the fake (the user's consent) and POSTs it as a form to `/authcode`.
    async fn post_code(&mut self) -> Result<(u16, Value), String> {
        let minted = self
            .world
            .fake
            .mint_code(CodeRequest::new(EMAIL).azp(ANDROID_CLIENT_ID))
            .await
            .map_err(|e| format!("the fake Google refused to mint a code: {e}"))?;
        if let Some(subject) = &self.subject
            && subject.as_str() != minted.sub
        {
            return Err("the fake Google minted a code for another user".to_owned());
        }
        self.subject = Some(
            Subject::parse(&minted.sub).map_err(|e| format!("bad subject from the fake: {e}"))?,
        );
        let response = self
            .world
            .http
            .post(format!("{}/authcode", self.world.server))
            .header("X-Requested-With", X_REQUESTED_WITH)
            .form(&[("authCode", minted.code.as_str())])
            .send()
            .await
            .map_err(|e| format!("POST /authcode failed: {}", e.without_url()))?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("POST /authcode answered non-JSON: {}", e.without_url()))?;
        Ok((status, body))
    }

    /// Reads the stored refresh token (in memory) and checks the user's file holds no token in plaintext.
    async fn check_at_rest(&self) -> Result<Vec<String>, String> {
        let subject = self.subject()?;
        let store = self
            .world
            .stack
            .store
            .as_file()
            .ok_or("the demo runs on the file store")?;
        let credential = store
            .get(subject)
            .await
            .map_err(|e| format!("the store cannot read the credential: {e}"))?
            .ok_or("no credential was stored")?;
        let refresh = credential
            .refresh_token
            .as_ref()
            .ok_or("no refresh token was stored")?;
        let path = store.credential_path(subject);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read the credential file {}: {e}", path.display()))?;
        let mut secrets = vec![refresh.expose_secret()];
        if let Some(access) = &credential.access {
            secrets.push(access.token.expose_secret());
        }
        if secrets.iter().any(|s| contains(&bytes, s.as_bytes())) {
            return Err(format!(
                "the credential file {} contains a token in plaintext",
                path.display()
            ));
        }
        let mut details = vec![
            format!(
                "credential file: {} ({} bytes{})",
                relative(&path, self.world.store_dir.path()),
                bytes.len(),
                mode(&path)
            ),
            format!(
                "refresh token: stored (encrypted with AES-256-GCM, bound to sub {subject}; 1//… not shown)"
            ),
            "checked: the file contains neither the refresh token nor the access token in plaintext".to_owned(),
        ];
        if contains(&bytes, b"v1.ephemeral.") {
            details.push(
                "tokens are sealed as v1.<key id>.<nonce+ciphertext+tag> under key `ephemeral`"
                    .to_owned(),
            );
        }
        Ok(details)
    }
}

/// A step: a stable id (for `--json`) and a title.
struct Step {
    id: &'static str,
    title: &'static str,
}

const STEPS: &[Step] = &[
    Step {
        id: "exchange",
        title: "The app posts a one-time server auth code; the server exchanges it at Google",
    },
    Step {
        id: "id_token",
        title: "The server verifies the ID token from the exchange",
    },
    Step {
        id: "profile",
        title: "The server stores the user's profile and answers the app",
    },
    Step {
        id: "stored_encrypted",
        title: "The refresh token is stored, encrypted at rest",
    },
    Step {
        id: "drive_appfolder",
        title: "Drive files.get('appDataFolder') through GET /v1/me/drive/appfolder with the app's ID token",
    },
    Step {
        id: "offline_refresh",
        title: "The user is offline and the access token expires: the server refreshes it and calls Drive alone",
    },
    Step {
        id: "second_sign_in",
        title: "A second sign-in returns no refresh token; the stored one is kept",
    },
    Step {
        id: "offline_again",
        title: "Offline access still works with the kept refresh token",
    },
];

/// Runs one step by id.
async fn run_step(id: &str, flow: &mut Flow<'_>) -> Result<Vec<String>, String> {
    match id {
        "exchange" => step_exchange(flow).await,
        "id_token" => step_id_token(flow).await,
        "profile" => step_profile(flow).await,
        "stored_encrypted" => step_stored_encrypted(flow).await,
        "drive_appfolder" => step_drive(flow).await,
        "offline_refresh" => {
            offline_drive_call(
                flow,
                "every access token of the user expired at Google (the user is offline)",
            )
            .await
        }
        "second_sign_in" => step_second_sign_in(flow).await,
        "offline_again" => offline_drive_call(flow, "the user's access tokens expired again").await,
        other => Err(format!("unknown step {other}")),
    }
}

async fn step_exchange(flow: &mut Flow<'_>) -> Result<Vec<String>, String> {
    flow.new_requests().await; // start the journal here
    let (status, body) = flow.post_code().await?;
    if status != 200 {
        return Err(format!(
            "POST /authcode answered {status}: {}",
            body.get("error").and_then(Value::as_str).unwrap_or("?")
        ));
    }
    let calls = flow.new_requests().await;
    let exchanges: Vec<_> = calls
        .iter()
        .filter(|e| e.endpoint == "token" && e.grant_type.as_deref() == Some("authorization_code"))
        .collect();
    if exchanges.len() != 1 || exchanges[0].status != 200 {
        return Err(format!(
            "expected one successful code exchange at Google, saw {}",
            exchanges.len()
        ));
    }
    if body.get("offline_access") != Some(&Value::Bool(true)) {
        return Err("the first sign-in did not yield offline access (no refresh token)".to_owned());
    }
    flow.first_answer = Some(body);
    Ok(vec![
        format!(
            "{EMAIL} consented on the phone; Google Sign-In gave the app a server auth code (4/0…, not shown)"
        ),
        "app → server: POST /authcode (application/x-www-form-urlencoded authCode=…, X-Requested-With) → 200"
            .to_owned(),
        "server → Google: POST /token grant_type=authorization_code, redirect_uri=\"\" → 200 \
         (access token, refresh token, ID token)"
            .to_owned(),
    ])
}

async fn step_id_token(flow: &mut Flow<'_>) -> Result<Vec<String>, String> {
    let subject = flow.subject()?.clone();
    let credential = flow
        .world
        .stack
        .service
        .credential(&subject)
        .await
        .map_err(|e| format!("the signed-in user is not stored: {e}"))?;
    if credential.subject != subject {
        return Err("the stored subject is not the one Google's ID token named".to_owned());
    }
    let kids = flow.world.fake.published_kids();
    let verifier_loaded = flow.world.stack.service.ports().verifier.keys_loaded();
    if !verifier_loaded {
        return Err("the server holds no Google signing keys".to_owned());
    }
    // The same verifier refuses an ID token Google issued to another app (another `aud`).
    let foreign = flow
        .world
        .fake
        .mint_id_token(IdTokenRequest {
            client_id: Some("999999999999-another-app.apps.googleusercontent.com".to_owned()),
            ..IdTokenRequest::new(EMAIL)
        })
        .await
        .map_err(|e| format!("the fake Google refused to mint an ID token: {e}"))?;
    let foreign =
        IdToken::parse(&foreign).map_err(|e| format!("bad ID token from the fake: {e}"))?;
    let refused = match flow.world.stack.service.authenticate(&foreign).await {
        Ok(_) => return Err("an ID token issued to another app was accepted".to_owned()),
        Err(reason) => reason.reason(),
    };
    Ok(vec![
        format!(
            "RS256 signature checked with Google's published key (kid {}) from /oauth2/v3/certs",
            kids.first().map_or("?", String::as_str)
        ),
        "iss = https://accounts.google.com, aud = this server's client ID, \
         azp = the Android client (google.allowed_azp), exp/iat within 60 s leeway"
            .to_owned(),
        format!("sub = {subject} (the user's stable Google account ID)"),
        format!("checked: an ID token Google issued to another app is refused ({refused})"),
    ])
}

async fn step_profile(flow: &mut Flow<'_>) -> Result<Vec<String>, String> {
    let subject = flow.subject()?.clone();
    let credential = flow
        .world
        .stack
        .service
        .credential(&subject)
        .await
        .map_err(|e| format!("the signed-in user is not stored: {e}"))?;
    let profile = &credential.profile;
    let email = profile
        .email
        .as_ref()
        .map(|e| e.as_str().to_owned())
        .ok_or("the profile has no email")?;
    if email != EMAIL {
        return Err(format!("the profile's email is {email}, expected {EMAIL}"));
    }
    let scopes: Vec<&str> = credential
        .scopes
        .iter()
        .map(|s| {
            s.strip_prefix("https://www.googleapis.com/auth/")
                .unwrap_or(s)
        })
        .collect();
    if !credential.scopes.has_drive_appdata() {
        return Err("the drive.appdata scope was not granted".to_owned());
    }
    let answer = flow
        .first_answer
        .as_ref()
        .ok_or("no answer was remembered from the sign-in")?;
    let answered_email = answer
        .pointer("/user/email")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if answered_email != EMAIL || answer.get("new_user") != Some(&Value::Bool(true)) {
        return Err("the answer to the app does not describe the new user".to_owned());
    }
    Ok(vec![
        format!(
            "user: {} <{email}> (email_verified: {}, locale: {})",
            profile.name.as_deref().unwrap_or("-"),
            profile.email_verified,
            profile.locale.as_deref().unwrap_or("-")
        ),
        format!("granted scopes: {}", scopes.join(" ")),
        format!(
            "answer to the app: {{\"user\": {{\"sub\", \"email\": \"{answered_email}\", ...}}, \"scopes\": [...], \
             \"offline_access\": true, \"new_user\": true}}"
        ),
    ])
}

async fn step_stored_encrypted(flow: &mut Flow<'_>) -> Result<Vec<String>, String> {
    let details = flow.check_at_rest().await?;
    let subject = flow.subject()?.clone();
    let credential = flow
        .world
        .stack
        .store
        .port()
        .get(&subject)
        .await
        .map_err(|e| format!("the store cannot read the credential: {e}"))?
        .ok_or("no credential was stored")?;
    flow.first_refresh = credential.refresh_token;
    Ok(details)
}

async fn step_drive(flow: &mut Flow<'_>) -> Result<Vec<String>, String> {
    flow.new_requests().await;
    let id_token = flow
        .world
        .fake
        .mint_id_token(IdTokenRequest {
            azp: Some(ANDROID_CLIENT_ID.to_owned()),
            ..IdTokenRequest::new(EMAIL)
        })
        .await
        .map_err(|e| format!("the fake Google refused to mint an ID token: {e}"))?;
    let response = flow
        .world
        .http
        .get(format!("{}/v1/me/drive/appfolder", flow.world.server))
        .bearer_auth(&id_token)
        .send()
        .await
        .map_err(|e| format!("GET /v1/me/drive/appfolder failed: {}", e.without_url()))?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.map_err(|e| {
        format!(
            "GET /v1/me/drive/appfolder answered non-JSON: {}",
            e.without_url()
        )
    })?;
    if status != 200 {
        return Err(format!(
            "GET /v1/me/drive/appfolder answered {status}: {}",
            body.get("error").and_then(Value::as_str).unwrap_or("?")
        ));
    }
    let calls = flow.new_requests().await;
    let drive_ok = calls
        .iter()
        .filter(|e| e.endpoint == "drive" && e.status == 200)
        .count();
    if drive_ok != 1 {
        return Err(format!("expected one Drive call at Google, saw {drive_ok}"));
    }
    Ok(vec![
        "app → server: GET /v1/me/drive/appfolder, Authorization: Bearer <the app's ID token> → 200".to_owned(),
        "server → Drive: GET /drive/v3/files/appDataFolder with the stored access token → 200".to_owned(),
        format!("Drive answered: {}", compact(&body)),
    ])
}

async fn step_second_sign_in(flow: &mut Flow<'_>) -> Result<Vec<String>, String> {
    flow.new_requests().await;
    let (status, body) = flow.post_code().await?;
    if status != 200 {
        return Err(format!(
            "POST /authcode answered {status}: {}",
            body.get("error").and_then(Value::as_str).unwrap_or("?")
        ));
    }
    if body.get("new_user") != Some(&Value::Bool(false)) {
        return Err("the second sign-in was not recognised as the same user".to_owned());
    }
    if body.get("offline_access") != Some(&Value::Bool(true)) {
        return Err("offline access was lost at the second sign-in".to_owned());
    }
    let subject = flow.subject()?.clone();
    let stored = flow
        .world
        .stack
        .store
        .port()
        .get(&subject)
        .await
        .map_err(|e| format!("the store cannot read the credential: {e}"))?
        .ok_or("the credential disappeared")?;
    let first = flow
        .first_refresh
        .as_ref()
        .ok_or("no refresh token was remembered from the first sign-in")?;
    let kept = stored
        .refresh_token
        .as_ref()
        .is_some_and(|now| now.ct_eq(first));
    if !kept {
        return Err("the stored refresh token changed or vanished".to_owned());
    }
    let exchanges = flow
        .new_requests()
        .await
        .iter()
        .filter(|e| e.endpoint == "token" && e.grant_type.as_deref() == Some("authorization_code"))
        .count();
    Ok(vec![
        "the app signs in again; Google gives a new code, and for an already granted client its token response \
         carries no refresh_token"
            .to_owned(),
        format!("app → server: POST /authcode → 200 (new_user: false, offline_access: true); {exchanges} code exchange at Google"),
        "the stored refresh token is the one from the first sign-in (compared in constant time, not shown): \
         absence never replaces it"
            .to_owned(),
    ])
}

/// Expires the user's tokens at the fake and calls Drive through the use case with no user request (what
/// `offline-access drive appfolder --sub SUB` does); checks exactly one refresh reached Google.
async fn offline_drive_call(flow: &mut Flow<'_>, what: &str) -> Result<Vec<String>, String> {
    let subject = flow.subject()?.clone();
    if !flow.world.fake.expire_user(subject.as_str()).await {
        return Err("the fake Google does not know the user".to_owned());
    }
    flow.new_requests().await;
    let response = flow
        .world
        .stack
        .service
        .drive(&subject, &DriveRequest::GetAppFolder)
        .await
        .map_err(|e| format!("the offline Drive call failed: {e}"))?;
    let DriveResponse::Json(body) = response else {
        return Err("Drive answered no file metadata".to_owned());
    };
    let calls = flow.new_requests().await;
    let refreshes: Vec<_> = calls
        .iter()
        .filter(|e| e.endpoint == "token" && e.grant_type.as_deref() == Some("refresh_token"))
        .collect();
    if refreshes.len() != 1 || refreshes[0].status != 200 {
        return Err(format!(
            "expected exactly one successful refresh at Google, the journal shows {}",
            refreshes.len()
        ));
    }
    let drive: Vec<String> = calls
        .iter()
        .filter(|e| e.endpoint == "drive")
        .map(|e| e.status.to_string())
        .collect();
    Ok(vec![
        what.to_owned(),
        "no request from the user: the server calls the use case itself (like `offline-access drive appfolder --sub`)"
            .to_owned(),
        format!(
            "server → Drive ({}), refreshing with the stored refresh token in between",
            drive.join(" → ")
        ),
        "Google's request journal: exactly 1 refresh (grant_type=refresh_token → 200)".to_owned(),
        format!("Drive answered: {}", compact(&body)),
    ])
}

/// One step's outcome, as printed and as in `--json`.
#[derive(Debug, Serialize)]
struct StepResult {
    id: &'static str,
    title: &'static str,
    ok: bool,
    status: Status,
    details: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Failed,
    Skipped,
}

impl StepResult {
    fn ok(step: &Step, details: Vec<String>) -> Self {
        Self {
            id: step.id,
            title: step.title,
            ok: true,
            status: Status::Ok,
            details,
            error: None,
        }
    }

    fn failed(step: &Step, error: String) -> Self {
        Self {
            id: step.id,
            title: step.title,
            ok: false,
            status: Status::Failed,
            details: Vec::new(),
            error: Some(error),
        }
    }

    fn skipped(step: &Step) -> Self {
        Self {
            id: step.id,
            title: step.title,
            ok: false,
            status: Status::Skipped,
            details: Vec::new(),
            error: Some("skipped: an earlier step failed".to_owned()),
        }
    }
}

/// The whole run, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    fake_google: String,
    server: String,
    store: String,
    key: String,
    steps: Vec<StepResult>,
}

fn print_header(report: &Report) {
    out!(
        "offline-access demo: Google's \"Enabling Server-Side Access\" flow on this machine, with no network.\n"
    );
    out!(
        "  fake Google  {}  (in-process: token, revoke, JWKS and Drive endpoints)",
        report.fake_google
    );
    out!(
        "  server       {}  (the real offline-access HTTP API and Google adapter)",
        report.server
    );
    out!(
        "  store        {}  (file store, removed at exit)",
        report.store
    );
    out!("  key          {}", report.key);
    out!();
}

fn print_step(number: usize, step: &StepResult) {
    let mark = match step.status {
        Status::Ok => "✓",
        Status::Failed => "✗",
        Status::Skipped => "-",
    };
    out!("{number:>2}. {mark} {}", step.title);
    for detail in &step.details {
        out!("       {detail}");
    }
    if let Some(error) = &step.error {
        out!("       {error}");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
}

#[cfg(unix)]
fn mode(path: &Path) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| format!(", mode {:04o}", m.permissions().mode() & 0o777))
        .unwrap_or_default()
}

#[cfg(not(unix))]
fn mode(_path: &Path) -> String {
    String::new()
}

/// Drive's JSON on one line, long values shortened.
fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 160 {
        let short: String = text.chars().take(157).collect();
        format!("{short}…")
    } else {
        text
    }
}
