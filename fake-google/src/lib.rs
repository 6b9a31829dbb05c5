//! A faithful offline fake of Google's OAuth 2.0, OpenID Connect and Drive appDataFolder endpoints.
//!
//! Start it in-process on a free loopback port, point a Google client at [`FakeGoogle::base_url`],
//! and drive it through the typed [`Control`] handle (the same operations as the HTTP control
//! API under `/_fake/`):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fake_google::{CodeRequest, FakeGoogle};
//! let fake = FakeGoogle::start().await?;
//! let minted = fake.mint_code(CodeRequest::new("alice@example.com")).await?;
//! // POST {base_url}/token with grant_type=authorization_code&code={minted.code}
//! //      &client_id={fake.client_id()}&client_secret={fake.client_secret()}
//! # let _ = minted; Ok(()) }
//! ```
//!
//! See `docs/fake-google.md` for the HTTP surface, the control API and the differences from Google.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod authorize;
mod clients;
mod config;
mod control;
mod drive;
mod grants;
mod http;
mod keys;
mod model;
mod pages;
mod pkce;
#[cfg(test)]
mod proptests;
mod risc;
mod server;
mod state;
mod users;

pub use pages::esc as html_escape;

pub use clients::{ClientSpec, ClientType};
pub use config::{ConfigError, ConfigFile};
pub use model::{
    ANDROID_CLIENT_ID, CodeRequest, ControlError, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    DEFAULT_SCOPES, Endpoint, Fault, GrantInfo, IdTokenRequest, JournalEntry, MintedCode,
    OAuthClient, Settings, SettingsPatch, UserSpec,
};
pub use risc::{
    DisableReason, RiscDelivery, RiscEvent, RiscEventType, RiscStream, TokenIdentifierAlg,
};

use state::Inner;

/// How to start the fake.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Address to listen on (default `127.0.0.1:0`: a free loopback port).
    pub listen: SocketAddr,
    /// Serve HTTPS with a certificate from a freshly generated CA (see [`Control::ca_pem`]).
    pub tls: bool,
    /// The default web client (default [`DEFAULT_CLIENT_ID`] / [`DEFAULT_CLIENT_SECRET`]).
    pub client: OAuthClient,
    /// Clients, users and settings to start with (`--config`); a reset returns to them.
    pub file: Option<ConfigFile>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            client: OAuthClient {
                client_id: DEFAULT_CLIENT_ID.to_owned(),
                client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            },
            file: None,
        }
    }
}

impl FakeConfig {
    /// Listens on `addr`.
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Serves HTTPS.
    #[must_use]
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Starts with the clients, users and settings of `file`.
    #[must_use]
    pub fn file(mut self, file: ConfigFile) -> Self {
        self.file = Some(file);
        self
    }
}

/// Why the fake could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The listener's address could not be read.
    #[error("cannot read the listener's address: {0}")]
    LocalAddr(std::io::Error),
    /// The signing keys could not be loaded.
    #[error("cannot load the signing keys: {0}")]
    Keys(String),
    /// The TLS certificate could not be made.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The config file holds a client, user or setting the fake refuses (the message names it).
    #[error("bad config: {0}")]
    Config(String),
}

/// The typed control handle: the `/_fake/` control API without HTTP. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("base_url", &self.inner.base_url())
            .finish_non_exhaustive()
    }
}

impl Control {
    /// A fresh fake state with the given default web client, not yet serving (see [`router`]).
    ///
    /// # Errors
    /// [`StartError::Keys`] if the built-in signing keys cannot be loaded.
    pub fn new(client: OAuthClient) -> Result<Self, StartError> {
        let keys = keys::KeyStore::new().map_err(|e| StartError::Keys(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner::new(client, keys)),
        })
    }

    /// Sets the base URL the fake advertises (discovery, client secret file). Set by
    /// [`FakeGoogle`] when it binds; call it yourself when embedding [`router`].
    pub fn set_base_url(&self, base_url: &str) {
        *self
            .inner
            .base_url
            .write()
            .unwrap_or_else(|p| p.into_inner()) = base_url.trim_end_matches('/').to_owned();
    }

    /// The base URL (no trailing slash) that replaces every Google host.
    pub fn base_url(&self) -> String {
        self.inner.base_url()
    }

    /// The default web client's ID.
    pub fn client_id(&self) -> String {
        self.inner.default_client().client_id.clone()
    }

    /// The default web client's secret.
    pub fn client_secret(&self) -> String {
        self.inner.default_client().client_secret.clone()
    }

    /// Registers another web client with fresh credentials and no redirect URIs
    /// (`POST /_fake/clients` with an empty body).
    pub async fn add_client(&self) -> OAuthClient {
        loop {
            // Only a clash of fresh random IDs can fail: try again.
            if let Ok(client) = self.inner.clients.register(&ClientSpec::default()) {
                return client;
            }
        }
    }

    /// Registers a client: web, Android or installed, with its redirect URIs
    /// (`POST /_fake/clients`).
    ///
    /// # Errors
    /// [`ControlError`] naming the bad field (a redirect URI Google would refuse, a taken ID, ...).
    pub async fn register_client(&self, spec: ClientSpec) -> Result<OAuthClient, ControlError> {
        self.inner.clients.register(&spec)
    }

    /// Adds (or updates) a user, who then shows in the account chooser (`POST /_fake/users`).
    /// Returns the user's sub.
    ///
    /// # Errors
    /// [`ControlError`] naming the bad field, or when the e-mail belongs to another sub.
    pub async fn add_user(&self, user: UserSpec) -> Result<String, ControlError> {
        self.inner.add_user(&user)
    }

    /// Mints an authorization code as the user's consent on the phone would (`POST /_fake/codes`).
    ///
    /// # Errors
    /// [`ControlError`] naming the bad field (bad email, empty scopes, unknown client, ...).
    pub async fn mint_code(&self, req: CodeRequest) -> Result<MintedCode, ControlError> {
        self.inner.mint_code(&req)
    }

    /// Mints a signed ID token as `getIdToken()` would hold (`POST /_fake/id_tokens`).
    ///
    /// # Errors
    /// [`ControlError`] naming the bad field.
    pub async fn mint_id_token(&self, req: IdTokenRequest) -> Result<String, ControlError> {
        self.inner.mint_id_token(&req)
    }

    /// The user removes the app's access: every token of theirs stops working and their next
    /// code yields a refresh token again (`POST /_fake/users/{sub}/revoke`). Returns whether the
    /// user was known. Then, when a RISC stream is enabled and requests `tokens-revoked`, sends
    /// that event (one per client the user ever granted) and waits for the receiver's answers;
    /// a receiver that is down fails nothing (see the journal).
    pub async fn revoke_user(&self, sub: &str) -> bool {
        let known = self.inner.revoke_user(sub);
        if known {
            risc::after_user_revoked(self, sub).await;
        }
        known
    }

    /// The user's grants, one per client they ever consented to, by client ID: the scopes granted
    /// since the last revocation (empty once revoked) and whether a refresh token was handed out
    /// (`GET /_fake/users/{sub}/grants`). `None` for an unknown user.
    pub async fn grants(&self, sub: &str) -> Option<Vec<GrantInfo>> {
        self.inner.grants(sub)
    }

    /// Every access token of the user expires now (`POST /_fake/users/{sub}/expire`). Returns
    /// whether the user was known.
    pub async fn expire_user(&self, sub: &str) -> bool {
        self.inner.expire_user(sub)
    }

    /// Changes settings and returns the result (`POST /_fake/settings`).
    ///
    /// # Errors
    /// [`ControlError`] when a value is out of range.
    pub async fn settings(&self, patch: SettingsPatch) -> Result<Settings, ControlError> {
        self.inner.patch_settings(&patch)
    }

    /// The current settings (`GET /_fake/settings`).
    pub fn current_settings(&self) -> Settings {
        self.inner.settings()
    }

    /// The fake's clock (real time plus `clock_offset_secs`), in Unix seconds.
    pub fn now_unix(&self) -> i64 {
        self.inner.now()
    }

    /// Adds a new signing key, keeping the old ones published unless `retire_old`
    /// (`POST /_fake/keys/rotate`). Returns the new key's `kid`.
    ///
    /// # Errors
    /// [`ControlError`] if a new key cannot be generated.
    pub async fn rotate_keys(&self, retire_old: bool) -> Result<String, ControlError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.keys.rotate(retire_old))
            .await
            .map_err(|e| ControlError(format!("key rotation failed: {e}")))?
            .map_err(|e| ControlError(format!("key rotation failed: {e}")))
    }

    /// The `kid` of the key that signs now.
    pub fn current_kid(&self) -> String {
        self.inner.keys.current().kid.clone()
    }

    /// The published `kid`s, newest first.
    pub fn published_kids(&self) -> Vec<String> {
        self.inner
            .keys
            .published()
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    }

    /// Injects a fault into the next `fault.times` requests to `fault.endpoint` (`POST /_fake/faults`).
    ///
    /// # Errors
    /// [`ControlError`] when the fault is empty or out of range.
    pub async fn add_fault(&self, fault: Fault) -> Result<(), ControlError> {
        self.inner.add_fault(fault)
    }

    /// The faults still pending, `times` being what is left (`GET /_fake/faults`).
    pub fn faults(&self) -> Vec<Fault> {
        self.inner.faults()
    }

    /// Removes every pending fault (`DELETE /_fake/faults`).
    pub async fn clear_faults(&self) {
        self.inner.clear_faults();
    }

    /// The request journal, oldest first, at most 10,000 entries (`GET /_fake/requests`).
    pub async fn requests(&self) -> Vec<JournalEntry> {
        self.inner.requests()
    }

    /// Empties the journal (`DELETE /_fake/requests`).
    pub async fn clear_requests(&self) {
        self.inner.clear_requests();
    }

    /// Back to the start state: no users, codes, tokens, Drive files, faults or journal; default
    /// settings; the first signing key only; then the config file's clients, users and settings
    /// (`POST /_fake/reset`).
    ///
    /// # Errors
    /// [`ControlError`] if the first key cannot be reloaded (never in practice).
    pub async fn reset(&self) -> Result<(), ControlError> {
        self.inner.restart()
    }

    /// The Google-format client secret file of the default web client
    /// (`GET /_fake/client_secret.json`), its URLs pointing at the fake.
    pub fn client_secret_json(&self) -> serde_json::Value {
        self.client_secret_json_value()
    }

    pub(crate) fn client_secret_json_value(&self) -> serde_json::Value {
        self.client_secret_json_of(&self.client_id())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The Google-format client secret file of a registered client (`{"web": ...}` or
    /// `{"installed": ...}`), `None` for an unknown one.
    pub(crate) fn client_secret_json_of(&self, client_id: &str) -> Option<serde_json::Value> {
        let client = self.inner.clients.get(client_id)?;
        Some(clients::secret_file(client_id, &client, &self.base_url()))
    }

    /// The PEM of the CA that signed the HTTPS certificate, when serving TLS (`GET /_fake/ca.pem`).
    pub fn ca_pem(&self) -> Option<String> {
        self.inner
            .ca_pem
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many users the fake knows.
    pub fn user_count(&self) -> usize {
        self.inner.user_count()
    }
}

impl drive::DriveAuth for Control {
    fn authorize(&self, bearer: Option<&str>) -> Result<drive::DriveUser, drive::DriveAuthError> {
        let token = bearer
            .map(|b| b.strip_prefix("Bearer ").unwrap_or(b).trim())
            .filter(|t| !t.is_empty())
            .ok_or(drive::DriveAuthError::Missing)?;
        let rec = self
            .inner
            .access_token(token)
            .ok_or(drive::DriveAuthError::Invalid)?;
        Ok(drive::DriveUser {
            has_appdata_scope: grants::has_appdata(&rec.scopes),
            sub: rec.sub,
        })
    }

    fn drive_store(&self) -> &drive::DriveStore {
        &self.inner.drive
    }

    fn now_unix(&self) -> i64 {
        self.inner.now()
    }
}

/// The whole fake as an axum [`Router`](axum::Router), for embedding in your own server or for
/// in-process requests with `tower::ServiceExt::oneshot`. Faults that drop the connection answer
/// 502 here (only the built-in server can drop connections).
pub fn router(control: &Control) -> axum::Router {
    http::app(control.clone())
}

/// A running fake Google. Stops when dropped (or with [`FakeGoogle::shutdown`]).
/// Dereferences to its [`Control`] handle, so `fake.mint_code(..)` works directly.
pub struct FakeGoogle {
    control: Control,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeGoogle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGoogle")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl FakeGoogle {
    /// Starts on `127.0.0.1:0` over plain HTTP with the default client.
    ///
    /// # Errors
    /// [`StartError`] if it cannot bind or load its keys.
    pub async fn start() -> Result<Self, StartError> {
        Self::start_with(FakeConfig::default()).await
    }

    /// Starts with `config`.
    ///
    /// # Errors
    /// [`StartError`] if it cannot bind, load its keys or set up TLS.
    pub async fn start_with(config: FakeConfig) -> Result<Self, StartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Self::serve_on(listener, config).await
    }

    /// Serves on an already bound listener (`config.listen` is ignored).
    ///
    /// # Errors
    /// [`StartError`] if it cannot load its keys or set up TLS.
    pub async fn serve_on(listener: TcpListener, config: FakeConfig) -> Result<Self, StartError> {
        let addr = listener.local_addr().map_err(StartError::LocalAddr)?;
        let control = Control::new(config.client)?;
        if let Some(file) = config.file {
            control
                .inner
                .apply_config(&file)
                .map_err(|e| StartError::Config(e.0))?;
            *control
                .inner
                .baseline
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(file);
        }
        let (scheme, acceptor) = if config.tls {
            let tls = server::make_tls(addr.ip()).map_err(StartError::Tls)?;
            *control
                .inner
                .ca_pem
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(tls.ca_pem);
            ("https", Some(tls.acceptor))
        } else {
            ("http", None)
        };
        let host = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        control.set_base_url(&format!("{scheme}://{host}"));
        let (tx, rx) = oneshot::channel();
        let task = server::spawn(listener, http::app(control.clone()), acceptor, rx);
        Ok(Self {
            control,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.control.base_url()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The control handle (clone it to move into tasks).
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Deref for FakeGoogle {
    type Target = Control;

    fn deref(&self) -> &Control {
        &self.control
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
