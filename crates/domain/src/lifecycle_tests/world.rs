//! A small world for lifecycle tests: a Google that keeps the truth about one user's grant (what it issued, what
//! is alive) and answers each call either at once or when the test says so (a scheduler), two service instances
//! over one shared store, and a manual clock.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::credential::Credential;
use crate::identity::{Profile, Scopes, Subject};
use crate::memory::{ManualClock, MemoryStore};
use crate::ports::{
    CredentialPage, CredentialStore, Drive, DriveError, DriveRequest, DriveResponse,
    IdTokenVerifier, RevokeError, StoreError, TokenEndpoint, TokenError, TokenResponse, UserLock,
    VerifiedIdToken, VerifyError,
};
use crate::secret::{AccessToken, AuthCode, IdToken, RefreshToken};
use crate::service::{OfflineAccess, Ports, Settings};

pub(super) const SUB: &str = "110169484474386276334";
pub(super) const START: OffsetDateTime = time::macros::datetime!(2026-11-24 12:00 UTC);
pub(super) const OPENID: &str = "openid";
pub(super) const EMAIL: &str = "https://www.googleapis.com/auth/userinfo.email";
pub(super) const DRIVE: &str = "https://www.googleapis.com/auth/drive.appdata";
pub(super) const CALENDAR: &str = "https://www.googleapis.com/auth/calendar.readonly";

pub(super) fn subject() -> Subject {
    Subject::parse(SUB).unwrap()
}

pub(super) fn scopes(list: &[&str]) -> Scopes {
    Scopes::from_iter_checked(list.iter().copied()).unwrap()
}

/// What the user consented to for one code.
#[derive(Debug, Clone)]
pub(super) struct CodeSpec {
    /// The consent screen was shown (`prompt=consent`): a refresh token even for a standing grant.
    pub(super) consent: bool,
    /// The scopes granted with this code.
    pub(super) scopes: Vec<&'static str>,
    /// `include_granted_scopes`: the answer lists the grant's earlier scopes too.
    pub(super) include_granted: bool,
}

/// A call waiting for the test to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Call {
    Exchange(String),
    Refresh(String),
    Revoke(String),
}

enum Reply {
    Token(Result<TokenResponse, TokenError>),
    Revoke(Result<(), RevokeError>),
}

struct Pending {
    call: Call,
    reply: oneshot::Sender<Reply>,
}

/// Google's truth about the user's grant.
#[derive(Default)]
pub(super) struct Truth {
    /// Bumped when the grant is revoked; tokens of older generations are dead.
    pub(super) generation: u64,
    pub(super) alive: bool,
    pub(super) scopes: BTreeSet<String>,
    has_refresh: bool,
    /// Every refresh token issued: its generation and its issue number (order).
    pub(super) refresh: HashMap<String, (u64, u64)>,
    access: HashMap<String, (u64, OffsetDateTime, BTreeSet<String>)>,
    codes: HashMap<String, CodeSpec>,
    issued: u64,
    /// Every token and code ever issued (no output may contain one).
    pub(super) secrets: Vec<String>,
    /// Rotate the refresh token on every refresh (the old one keeps working, as Google's would).
    pub(super) rotate: bool,
}

impl Truth {
    fn next(&mut self) -> u64 {
        self.issued += 1;
        self.issued
    }

    /// Whether `token` refreshes now.
    pub(super) fn refresh_alive(&self, token: &str) -> bool {
        self.alive
            && self
                .refresh
                .get(token)
                .is_some_and(|(g, _)| *g == self.generation)
    }

    /// The issue number of a refresh token.
    pub(super) fn issue_of(&self, token: &str) -> Option<(u64, u64)> {
        self.refresh.get(token).copied()
    }

    fn access_token(&mut self, scopes: &BTreeSet<String>, now: OffsetDateTime) -> AccessToken {
        let n = self.next();
        let token = format!("ya29.t{n}");
        self.access.insert(
            token.clone(),
            (self.generation, now + time::Duration::HOUR, scopes.clone()),
        );
        self.secrets.push(token.clone());
        AccessToken::parse(&token).unwrap()
    }

    fn refresh_token(&mut self) -> RefreshToken {
        let n = self.next();
        let token = format!("1//r{n}");
        self.refresh.insert(token.clone(), (self.generation, n));
        self.secrets.push(token.clone());
        self.has_refresh = true;
        RefreshToken::parse(&token).unwrap()
    }

    fn exchange(&mut self, code: &str, now: OffsetDateTime) -> Result<TokenResponse, TokenError> {
        let spec = self.codes.remove(code).ok_or(TokenError::InvalidGrant)?;
        if !self.alive {
            // A first consent (or the first after a revocation): a new grant.
            self.generation += 1;
            self.alive = true;
            self.has_refresh = false;
            self.scopes.clear();
        }
        let granted: BTreeSet<String> = spec.scopes.iter().map(|s| (*s).to_owned()).collect();
        let answered = if spec.include_granted {
            self.scopes.union(&granted).cloned().collect()
        } else {
            granted.clone()
        };
        self.scopes.extend(granted);
        let refresh_token = (spec.consent || !self.has_refresh).then(|| self.refresh_token());
        Ok(TokenResponse {
            access_token: self.access_token(&answered, now),
            expires_in: Duration::from_secs(3600),
            refresh_token,
            id_token: Some(id_token()),
            scopes: Some(set_to_scopes(&answered)),
        })
    }

    fn refresh(&mut self, token: &str, now: OffsetDateTime) -> Result<TokenResponse, TokenError> {
        if !self.refresh_alive(token) {
            return Err(TokenError::InvalidGrant);
        }
        let scopes = self.scopes.clone();
        let rotated = self.rotate.then(|| self.refresh_token());
        Ok(TokenResponse {
            access_token: self.access_token(&scopes, now),
            expires_in: Duration::from_secs(3600),
            refresh_token: rotated,
            id_token: Some(id_token()),
            scopes: Some(set_to_scopes(&scopes)),
        })
    }

    fn revoke(&mut self, token: &str) -> Result<(), RevokeError> {
        match self.refresh.get(token) {
            Some((g, _)) if *g == self.generation && self.alive => {
                self.revoke_grant();
                Ok(())
            }
            _ => Err(RevokeError::AlreadyRevoked),
        }
    }

    /// Every access token stops working now (Google expired them early); refresh tokens keep working.
    pub(super) fn expire_access(&mut self) {
        self.access.clear();
    }

    /// The grant is revoked (by a revoke call, or by the user in their Google account).
    pub(super) fn revoke_grant(&mut self) {
        self.alive = false;
        self.scopes.clear();
    }

    fn drive(&self, token: &str, now: OffsetDateTime) -> Result<DriveResponse, DriveError> {
        match self.access.get(token) {
            Some((g, exp, _)) if *g != self.generation || !self.alive || *exp <= now => {
                Err(DriveError::Unauthorized)
            }
            Some((_, _, scopes)) if !scopes.contains(DRIVE) => Err(DriveError::InsufficientScope),
            Some(_) => Ok(DriveResponse::Json(
                serde_json::json!({"id": "appDataFolder"}),
            )),
            None => Err(DriveError::Unauthorized),
        }
    }
}

fn set_to_scopes(set: &BTreeSet<String>) -> Scopes {
    Scopes::from_iter_checked(set.iter().map(String::as_str)).unwrap()
}

/// The ID token every answer carries: the verifier below reads the subject from its middle segment; `bad` fails.
fn id_token() -> IdToken {
    IdToken::parse(&format!("eyJhbGciOiJSUzI1NiJ9.{SUB}.c2ln")).unwrap()
}

/// The fake Google: token endpoint, revocation and Drive over one [`Truth`].
#[derive(Default)]
pub(super) struct Google {
    pub(super) truth: Mutex<Truth>,
    pending: Mutex<Vec<Pending>>,
    /// Hold every call until the test answers it (else answer at once).
    pub(super) hold: AtomicBool,
    /// Answer this many next token calls with 503 (when not holding).
    pub(super) unavailable: AtomicUsize,
    /// How many token-endpoint calls were made.
    pub(super) calls: AtomicUsize,
    /// Every call made, in order.
    pub(super) history: Mutex<Vec<Call>>,
    /// The path of every proxied request, in order.
    pub(super) proxied: Mutex<Vec<String>>,
    clock: Mutex<Option<Arc<ManualClock>>>,
}

impl Google {
    pub(super) fn truth(&self) -> std::sync::MutexGuard<'_, Truth> {
        self.truth.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> OffsetDateTime {
        self.clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(START, |c| crate::ports::Clock::now(&**c))
    }

    /// Mints a code the user's consent would give.
    pub(super) fn mint(&self, spec: CodeSpec) -> AuthCode {
        let mut truth = self.truth();
        let n = truth.next();
        let code = format!("4/0code{n}");
        truth.codes.insert(code.clone(), spec);
        truth.secrets.push(code.clone());
        AuthCode::parse(&code).unwrap()
    }

    /// The calls waiting for an answer, oldest first.
    pub(super) fn waiting(&self) -> Vec<Call> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|p| p.call.clone())
            .collect()
    }

    /// Answers the `index`-th waiting call: Google processes it now, or answers 503 when `fail`.
    pub(super) fn answer(&self, index: usize, fail: bool) {
        let pending = {
            let mut all = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if index >= all.len() {
                return;
            }
            all.remove(index)
        };
        let reply = self.process(&pending.call, fail);
        // The caller may be gone (its instance restarted): Google processed the call all the same.
        let _ = pending.reply.send(reply);
    }

    fn process(&self, call: &Call, fail: bool) -> Reply {
        let now = self.now();
        let mut truth = self.truth();
        match call {
            Call::Exchange(_) | Call::Refresh(_) if fail => {
                Reply::Token(Err(TokenError::Unavailable { retry_after: None }))
            }
            Call::Revoke(_) if fail => Reply::Revoke(Err(RevokeError::Unavailable)),
            Call::Exchange(code) => Reply::Token(truth.exchange(code, now)),
            Call::Refresh(token) => Reply::Token(truth.refresh(token, now)),
            Call::Revoke(token) => Reply::Revoke(truth.revoke(token)),
        }
    }

    async fn call(&self, call: Call) -> Reply {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call.clone());
        if !self.hold.load(Ordering::SeqCst) {
            let fail = self
                .unavailable
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            return self.process(&call, fail);
        }
        let (reply, answer) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Pending { call, reply });
        answer
            .await
            .unwrap_or(Reply::Token(Err(TokenError::Unavailable {
                retry_after: None,
            })))
    }
}

fn token_reply(reply: Reply) -> Result<TokenResponse, TokenError> {
    match reply {
        Reply::Token(result) => result,
        Reply::Revoke(_) => Err(TokenError::Protocol("mixed up".into())),
    }
}

#[async_trait]
impl TokenEndpoint for Google {
    async fn exchange_code(&self, code: &AuthCode) -> Result<TokenResponse, TokenError> {
        token_reply(
            self.call(Call::Exchange(code.expose_secret().to_owned()))
                .await,
        )
    }

    async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenResponse, TokenError> {
        token_reply(
            self.call(Call::Refresh(refresh_token.expose_secret().to_owned()))
                .await,
        )
    }

    async fn revoke(&self, token: &RefreshToken) -> Result<(), RevokeError> {
        match self
            .call(Call::Revoke(token.expose_secret().to_owned()))
            .await
        {
            Reply::Revoke(result) => result,
            Reply::Token(_) => Err(RevokeError::Unavailable),
        }
    }
}

#[async_trait]
impl Drive for Google {
    async fn execute(
        &self,
        access_token: &AccessToken,
        _request: &DriveRequest,
    ) -> Result<DriveResponse, DriveError> {
        let now = self.now();
        self.truth().drive(access_token.expose_secret(), now)
    }
}

#[async_trait]
impl crate::ports::GoogleApi for Google {
    async fn forward(
        &self,
        access_token: &AccessToken,
        request: crate::ports::ProxyRequest,
    ) -> Result<crate::ports::ProxyResponse, crate::ports::ProxyError> {
        self.proxied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.path_and_query.clone());
        let now = self.now();
        let status = match self.truth().drive(access_token.expose_secret(), now) {
            Ok(_) | Err(DriveError::InsufficientScope) => 200,
            Err(_) => 401,
        };
        Ok(crate::ports::ProxyResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Box::pin(futures::stream::iter([Ok(bytes::Bytes::from_static(
                b"{}",
            ))])),
        })
    }
}

/// Reads the subject from the token's middle segment (`bad` fails), as Google's verifier would from the claims.
pub(super) struct Verifier;

fn verify(token: &IdToken, now: OffsetDateTime) -> Result<VerifiedIdToken, VerifyError> {
    let sub = token.expose_secret().split('.').nth(1).unwrap_or_default();
    if sub == "bad" {
        return Err(VerifyError::BadSignature);
    }
    Ok(VerifiedIdToken {
        subject: Subject::parse(sub).map_err(|_| VerifyError::BadClaim("sub"))?,
        profile: Profile::default(),
        issuer: "https://accounts.google.com".into(),
        audience: "web".into(),
        authorized_party: None,
        issued_at: now,
        expires_at: now + time::Duration::HOUR,
    })
}

#[async_trait]
impl IdTokenVerifier for Verifier {
    async fn verify(
        &self,
        token: &IdToken,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdToken, VerifyError> {
        verify(token, now)
    }

    async fn verify_exchanged(
        &self,
        token: &IdToken,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdToken, VerifyError> {
        verify(token, now)
    }

    fn keys_loaded(&self) -> bool {
        true
    }
}

/// A store over the shared memory store whose `ping` and writes can be made to fail, and whose `lock_user` can
/// run a hook first (to put a step between a listing and the lock).
#[derive(Clone, Default)]
pub(super) struct Store {
    pub(super) inner: MemoryStore,
    pub(super) down: Arc<AtomicBool>,
    pub(super) writes_fail: Arc<AtomicBool>,
    #[allow(clippy::type_complexity)]
    pub(super) before_lock: Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>,
}

impl Store {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the test took it down".into()));
        }
        Ok(())
    }

    fn check_write(&self) -> Result<(), StoreError> {
        self.check()?;
        if self.writes_fail.load(Ordering::SeqCst) {
            return Err(StoreError::Other("disk full".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl CredentialStore for Store {
    async fn get(&self, subject: &Subject) -> Result<Option<Credential>, StoreError> {
        self.check()?;
        self.inner.get(subject).await
    }

    async fn put_with(
        &self,
        credential: &Credential,
        events: &[crate::events::EventRecord],
    ) -> Result<Credential, StoreError> {
        self.check_write()?;
        self.inner.put_with(credential, events).await
    }

    async fn delete_with(
        &self,
        subject: &Subject,
        version: u64,
        events: &[crate::events::EventRecord],
    ) -> Result<(), StoreError> {
        self.check_write()?;
        self.inner.delete_with(subject, version, events).await
    }

    async fn find_by_refresh_token(&self, index_key: &str) -> Result<Vec<Subject>, StoreError> {
        self.check()?;
        self.inner.find_by_refresh_token(index_key).await
    }

    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        self.check()?;
        self.inner.list(cursor, limit).await
    }

    async fn pending_revocations(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError> {
        self.check()?;
        self.inner.pending_revocations(cursor, limit).await
    }

    async fn lock_user(&self, subject: &Subject) -> Result<Box<dyn UserLock>, StoreError> {
        let hook = self
            .before_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(hook) = hook {
            hook();
        }
        self.check()?;
        self.inner.lock_user(subject).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
}

/// Two instances over one store, one Google, one clock.
pub(super) struct World {
    pub(super) google: Arc<Google>,
    pub(super) store: Store,
    pub(super) clock: Arc<ManualClock>,
    pub(super) instances: Vec<Arc<OfflineAccess>>,
}

impl World {
    pub(super) fn new() -> World {
        let google = Arc::new(Google::default());
        let clock = Arc::new(ManualClock::new(START));
        *google.clock.lock().unwrap_or_else(PoisonError::into_inner) = Some(clock.clone());
        let store = Store::default();
        let mut world = World {
            google,
            store,
            clock,
            instances: Vec::new(),
        };
        world.instances = vec![world.instance(), world.instance()];
        world
    }

    /// A new instance (a restart): nothing of the old one's memory survives.
    pub(super) fn instance(&self) -> Arc<OfflineAccess> {
        Arc::new(OfflineAccess::new(
            Ports {
                tokens: self.google.clone(),
                verifier: Arc::new(Verifier),
                store: Arc::new(self.store.clone()),
                drive: self.google.clone(),
                clock: self.clock.clone(),
            },
            Settings {
                backoff_base: Duration::from_millis(1),
                backoff_max: Duration::from_millis(1),
                credential_cache_ttl: Duration::ZERO,
                store_check_ttl: Duration::ZERO,
                ..Settings::default()
            },
        ))
    }

    pub(super) fn a(&self) -> &OfflineAccess {
        &self.instances[0]
    }

    /// What the store holds for the user.
    pub(super) async fn stored(&self) -> Option<Credential> {
        self.store.inner.get(&subject()).await.unwrap()
    }

    /// The stored refresh token.
    pub(super) async fn stored_refresh(&self) -> Option<String> {
        self.stored()
            .await
            .and_then(|c| c.refresh_token.map(|t| t.expose_secret().to_owned()))
    }
}

/// A code spec with the default scopes and no forced consent.
pub(super) fn code(consent: bool, scopes: &[&'static str]) -> CodeSpec {
    CodeSpec {
        consent,
        scopes: scopes.to_vec(),
        include_granted: false,
    }
}

/// Lets every spawned task run until it waits on something the test controls (with tokio's clock paused, timers
/// due meanwhile fire too).
pub(super) async fn settle() {
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
