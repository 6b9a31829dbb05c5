//! The use cases: sign in with a code, get a fresh access token, call Drive, forget a user.
//!
//! This module holds the service, its settings and errors, and the use cases that only read (access tokens,
//! Drive). Each use case that changes a credential lives in its own module and goes through the update primitive
//! in [`crate::grants`]: sign-in (`signin`), refresh (`refresh`), forget and the pending-revocation sweep
//! (`forget`).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::credential::{CachedAccess, ConsentState, Credential};
use crate::events::EventStore;
use crate::grants;
use crate::identity::{DRIVE_APPDATA_SCOPE, Profile, Scopes, Subject};
use crate::ports::{
    Clock, CredentialStore, Drive, DriveError, DriveRequest, DriveResponse, GoogleApi,
    IdTokenVerifier, StoreError, TokenEndpoint, VerifiedIdToken, VerifyError,
};
use crate::recent::{RecentCredentials, Usable};
use crate::secret::{AccessToken, IdToken};
use crate::signin::{CodeCache, StoreHealth};

pub use crate::forget::PendingRevocations;

/// Tunables of the use cases. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A cached access token is used only while it stays valid at least this long (default 60 s).
    pub refresh_margin: Duration,
    /// Attempts at a refresh (or an idempotent Drive call) when Google is unavailable or rate-limits (default 3).
    pub attempts: u32,
    /// First backoff delay, doubled per attempt, with jitter (default 200 ms).
    pub backoff_base: Duration,
    /// Longest single wait, including one asked for by `Retry-After` (default 5 s).
    pub backoff_max: Duration,
    /// How long a re-POSTed code gets the first answer again (default 10 min). A grant Google gave for a code
    /// whose store write failed is kept in memory for this long too, so that the same code POSTed again stores it.
    pub code_dedupe_ttl: Duration,
    /// How many recent codes are remembered for that (default 10,000).
    pub code_dedupe_capacity: usize,
    /// How long a credential this instance read or wrote answers Drive calls without reading the store again
    /// (default 1 s; zero reads the store on every call). A forget or revocation on this instance applies at
    /// once; one on another instance sharing the store is seen within this time.
    pub credential_cache_ttl: Duration,
    /// How many users' credentials are kept for that (default 10,000).
    pub credential_cache_capacity: usize,
    /// How long a successful check that the store can take writes is trusted before a sign-in spends a code at
    /// Google (default 1 s; a failed write forgets it at once).
    pub store_check_ttl: Duration,
    /// The scopes the product needs (`google.required_scopes`; default `drive.appdata`): a sign-in answers those
    /// the grant lacks, so the app can ask for them.
    pub required_scopes: Scopes,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(60),
            attempts: 3,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            code_dedupe_ttl: Duration::from_secs(600),
            code_dedupe_capacity: 10_000,
            credential_cache_ttl: Duration::from_secs(1),
            credential_cache_capacity: 10_000,
            store_check_ttl: Duration::from_secs(1),
            required_scopes: drive_scopes(),
        }
    }
}

/// The ports the use cases run on.
#[derive(Clone)]
pub struct Ports {
    /// Google's token endpoint.
    pub tokens: Arc<dyn TokenEndpoint>,
    /// ID-token verification.
    pub verifier: Arc<dyn IdTokenVerifier>,
    /// Where credentials live.
    pub store: Arc<dyn CredentialStore>,
    /// Google Drive.
    pub drive: Arc<dyn Drive>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// The result of a successful sign-in: what the app is told. It holds no token (the answer is remembered for
/// re-POSTs of the same code, and a remembered answer must not keep secrets in memory).
#[derive(Debug, Clone)]
pub struct SignIn {
    /// Who signed in.
    pub subject: Subject,
    /// Their profile from the verified ID token.
    pub profile: Profile,
    /// The scopes of the stored grant (what the server can use while the user is offline).
    pub scopes: Scopes,
    /// The consent state after the sign-in.
    pub consent: ConsentState,
    /// Whether a refresh token is stored and the grant active: the server can act while the user is offline.
    pub offline_access: bool,
    /// Whether this user was not stored before.
    pub new_user: bool,
    /// The required scopes ([`Settings::required_scopes`]) the grant lacks.
    pub missing_scopes: Scopes,
}

impl SignIn {
    pub(crate) fn of(credential: &Credential, new_user: bool, required: &Scopes) -> SignIn {
        SignIn {
            subject: credential.subject.clone(),
            profile: credential.profile.clone(),
            scopes: credential.scopes.clone(),
            consent: credential.consent,
            offline_access: credential.offline_access(),
            new_user,
            missing_scopes: required.difference(&credential.scopes),
        }
    }

    /// Whether a refresh token is stored and the grant active.
    #[must_use]
    pub fn offline_access(&self) -> bool {
        self.offline_access
    }
}

/// Why a sign-in failed. Nothing is stored in any of these cases.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignInError {
    /// Google rejected the code (used, expired, unknown): `invalid_grant`.
    #[error("the authorization code was rejected by Google")]
    InvalidCode,
    /// Google says the code was issued for another redirect URI than the one this server sends (for example a
    /// web sign-in code sent to a server configured for Android codes): the app's code is of the wrong kind.
    #[error("the code was issued for another redirect URI than this server's google.redirect_uri")]
    RedirectUriMismatch,
    /// The code belongs to another user than the signed-in one (code injection).
    #[error("the code belongs to another user than the signed-in one")]
    SubjectMismatch,
    /// The ID token from the exchange failed the checks that apply to a token from the token endpoint.
    #[error("the ID token from Google failed verification: {0}")]
    InvalidIdToken(VerifyError),
    /// Google returned no ID token: the app must request the `openid` scope.
    #[error("Google returned no ID token; the app must request the openid scope")]
    MissingIdToken,
    /// Our client credentials are wrong: an operator must fix the configuration.
    #[error("Google refused this server's client configuration: {0}")]
    Misconfigured(String),
    /// Google is unreachable or failing; the code may still be unused.
    #[error("Google is unavailable")]
    UpstreamUnavailable,
    /// Google answered something unexpected.
    #[error("unexpected answer from Google: {0}")]
    Upstream(String),
    /// The store failed. When it failed before the exchange, the code was not spent; when it failed after, the
    /// grant is kept in memory and the same code POSTed again (within the dedupe window) stores it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why no access token could be had for a user.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AccessError {
    /// No credential is stored for the user.
    #[error("no credential is stored for this user")]
    NotFound,
    /// The grant was revoked: the app must sign the user in again with consent.
    #[error("the user's grant was revoked; the app must ask for consent again")]
    ReconsentRequired,
    /// Google disabled the account (RISC `account-disabled`): no token is handed out until it is enabled.
    #[error("Google disabled this account; no token is handed out until it is enabled again")]
    AccountDisabled,
    /// No refresh token was ever stored and the access token expired.
    #[error("no refresh token is stored; the app must request offline access again")]
    NoOfflineAccess,
    /// The grant does not include these scopes; the app must ask the user for them.
    #[error("the user did not grant every scope needed")]
    ScopeMissing(Scopes),
    /// Our client credentials are wrong (`invalid_client`); no credential was touched.
    #[error("Google refused this server's client credentials: {0}")]
    Misconfigured(String),
    /// Google stayed unavailable through every attempt; the refresh token is intact.
    #[error("Google is unavailable")]
    UpstreamUnavailable,
    /// Google answered something unexpected.
    #[error("unexpected answer from Google: {0}")]
    Upstream(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a Drive operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DriveUseError {
    /// No access token could be had.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The user did not grant `drive.appdata`; the app must ask for the scope. No Drive call was made.
    #[error("the user did not grant Drive appDataFolder access")]
    ScopeMissing,
    /// Drive has no such file for this user.
    #[error("file not found")]
    NotFound,
    /// Drive refused a freshly refreshed token too.
    #[error("Drive refused the access token even after a refresh")]
    Unauthorized,
    /// Drive kept rate-limiting through every attempt.
    #[error("Drive rate limit exceeded")]
    RateLimited,
    /// Drive refused the request as malformed.
    #[error("Drive refused the request: {0}")]
    BadRequest(String),
    /// Drive forbade the operation.
    #[error("Drive forbade the operation: {0}")]
    Forbidden(String),
    /// Drive is unavailable.
    #[error("Drive is unavailable")]
    Unavailable,
    /// Drive answered something unexpected.
    #[error("unexpected answer from Drive: {0}")]
    Upstream(String),
}

/// What forgetting a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    /// Whether Google confirmed the grant is revoked (or already was); if not, the credential was made unusable
    /// and kept as a pending revocation, retried by the sweep.
    pub revoked_at_google: bool,
}

/// Why forgetting a user failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForgetError {
    /// No credential is stored for the user.
    #[error("no credential is stored for this user")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The offline-access use cases, over injected ports.
pub struct OfflineAccess {
    pub(crate) ports: Ports,
    pub(crate) settings: Settings,
    pub(crate) flights: Flights,
    pub(crate) codes: CodeCache,
    pub(crate) recent: RecentCredentials,
    pub(crate) store_health: StoreHealth,
    pub(crate) google_api: Option<Arc<dyn GoogleApi>>,
    /// The outbox and `jti` register (RISC needs it; events are recorded only with `record_events`).
    pub(crate) events: Option<Arc<dyn EventStore>>,
    record_events: bool,
    /// What a Drive call needs (built once: it is checked on every call).
    drive_scopes: Scopes,
}

/// A random point in `[exp/2, exp)` (jitter in the upper half of a back-off delay, so retries that failed together do
/// not come back together), from a fresh random hasher seed.
pub(crate) fn jittered(exp: Duration, seed: u32) -> Duration {
    let fraction = u32::try_from(RandomState::new().hash_one(seed) % 1000).unwrap_or(0);
    exp / 2 + exp.saturating_mul(fraction) / 2000
}

impl OfflineAccess {
    /// Builds the service.
    #[must_use]
    pub fn new(ports: Ports, settings: Settings) -> Self {
        let codes = CodeCache::new(settings.code_dedupe_ttl, settings.code_dedupe_capacity);
        let recent = RecentCredentials::new(
            settings.credential_cache_ttl,
            settings.credential_cache_capacity,
        );
        let store_health = StoreHealth::new(settings.store_check_ttl);
        Self {
            ports,
            settings,
            flights: Flights::default(),
            codes,
            recent,
            store_health,
            google_api: None,
            events: None,
            record_events: false,
            drive_scopes: drive_scopes(),
        }
    }

    /// Adds the port the internal API's Google API proxy forwards through ([`OfflineAccess::proxy`]).
    #[must_use]
    pub fn with_google_api(mut self, api: Arc<dyn GoogleApi>) -> Self {
        self.google_api = Some(api);
        self
    }

    /// Adds the event store (the same storage as the credential store): RISC's `jti` register, and with `record`
    /// the outbox every grant change writes its events to (for webhooks; off when no webhook is configured, so
    /// nothing piles up).
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn EventStore>, record: bool) -> Self {
        self.events = Some(events);
        self.record_events = record;
        self
    }

    /// Whether grant changes record events for the team.
    #[must_use]
    pub fn records_events(&self) -> bool {
        self.record_events && self.events.is_some()
    }

    /// The event store, if one was added.
    #[must_use]
    pub fn event_store(&self) -> Option<&Arc<dyn EventStore>> {
        self.events.as_ref()
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The ports (for readiness checks and operator commands).
    #[must_use]
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Verifies a Bearer ID token from the app and returns whose it is.
    ///
    /// # Errors
    /// The [`VerifyError`] of the first failed rule.
    pub async fn authenticate(&self, token: &IdToken) -> Result<VerifiedIdToken, VerifyError> {
        self.ports
            .verifier
            .verify(token, self.ports.clock.now())
            .await
    }

    /// The stored credential of a user (for `/v1/me`); a pending revocation counts as none.
    ///
    /// # Errors
    /// [`AccessError::NotFound`] or a store error.
    pub async fn credential(&self, subject: &Subject) -> Result<Credential, AccessError> {
        grants::read(&*self.ports.store, subject)
            .await?
            .credential()
            .ok_or(AccessError::NotFound)
    }

    /// A fresh access token for the user: the cached one while it stays valid for the refresh margin, else a
    /// refresh at Google. Concurrent callers for one user cause one refresh (in this process by a per-user
    /// flight, across processes by the store's user lock).
    ///
    /// # Errors
    /// See [`AccessError`].
    pub async fn access_token(&self, subject: &Subject) -> Result<AccessToken, AccessError> {
        self.token_for(subject, &Scopes::default(), self.margin())
            .await
            .map(|a| a.token)
    }

    /// An access token carrying at least `required`: refused without a Google call when the grant lacks a scope;
    /// refreshed first when only the cached access token is narrower than the grant (a sign-in that asked for
    /// fewer scopes).
    pub(crate) async fn token_for(
        &self,
        subject: &Subject,
        required: &Scopes,
        margin: time::Duration,
    ) -> Result<CachedAccess, AccessError> {
        let usable = self.usable(subject).await?;
        if usable.disabled {
            return Err(AccessError::AccountDisabled);
        }
        let missing = required.difference(&usable.scopes);
        if !missing.is_empty() {
            return Err(AccessError::ScopeMissing(missing));
        }
        if let Some(access) = &usable.access
            && access.is_fresh(self.ports.clock.now(), margin)
            && access.scopes.is_superset(required)
        {
            return Ok(access.clone());
        }
        if usable.consent == ConsentState::Revoked {
            return Err(AccessError::ReconsentRequired);
        }
        self.refresh(subject, None, required, margin).await
    }

    /// What a Drive call needs of the user's credential: recently read or written by this instance (see
    /// [`Settings::credential_cache_ttl`]), else read from the store now.
    async fn usable(&self, subject: &Subject) -> Result<Usable, AccessError> {
        if let Some(usable) = self.recent.get(subject) {
            return Ok(usable);
        }
        let as_of = RecentCredentials::now();
        let stored = grants::read(&*self.ports.store, subject)
            .await?
            .credential();
        let usable = stored.as_ref().and_then(Usable::of);
        self.recent.record(subject, usable.clone(), as_of);
        usable.ok_or(AccessError::NotFound)
    }

    pub(crate) fn margin(&self) -> time::Duration {
        time::Duration::try_from(self.settings.refresh_margin).unwrap_or(time::Duration::MINUTE)
    }

    /// Jittered exponential backoff, at least what `Retry-After` asked for, at most `backoff_max`.
    pub(crate) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .settings
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16));
        jittered(exp, attempt)
            .max(retry_after.unwrap_or_default())
            .min(self.settings.backoff_max)
    }

    /// Runs a Drive operation for the user with no user present: a fresh access token carrying `drive.appdata`,
    /// the call, and on a 401 one refresh (only if the token that failed is still the stored one) and one retry.
    /// Rate limits and outages are retried with backoff for idempotent operations only (a create is never
    /// repeated); a delete retried after an outage that then finds no file counts as done (the first attempt
    /// deleted it).
    ///
    /// # Errors
    /// See [`DriveUseError`].
    pub async fn drive(
        &self,
        subject: &Subject,
        request: &DriveRequest,
    ) -> Result<DriveResponse, DriveUseError> {
        let required = &self.drive_scopes;
        let mut token = match self.token_for(subject, required, self.margin()).await {
            Ok(access) => access.token,
            Err(AccessError::ScopeMissing(_)) => return Err(DriveUseError::ScopeMissing),
            Err(e) => return Err(e.into()),
        };
        let mut refreshed = false;
        let mut attempt = 0;
        let mut retried_after_outage = false;
        loop {
            let result = self.ports.drive.execute(&token, request).await;
            match result {
                Ok(response) => return Ok(response),
                Err(DriveError::Unauthorized) if !refreshed => {
                    refreshed = true;
                    token = match self
                        .refresh(subject, Some(&token), required, self.margin())
                        .await
                    {
                        Ok(access) => access.token,
                        Err(AccessError::ScopeMissing(_)) => {
                            return Err(DriveUseError::ScopeMissing);
                        }
                        Err(e) => return Err(e.into()),
                    };
                }
                Err(DriveError::Unauthorized) => return Err(DriveUseError::Unauthorized),
                Err(DriveError::RateLimited { retry_after })
                    if request.is_idempotent() && attempt + 1 < self.settings.attempts =>
                {
                    tokio::time::sleep(self.backoff(attempt, retry_after)).await;
                    attempt += 1;
                }
                Err(DriveError::Unavailable)
                    if request.is_idempotent() && attempt + 1 < self.settings.attempts =>
                {
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                    attempt += 1;
                    retried_after_outage = true;
                }
                Err(DriveError::NotFound)
                    if retried_after_outage && matches!(request, DriveRequest::Delete { .. }) =>
                {
                    // The attempt that got no answer deleted the file: the delete is done.
                    return Ok(DriveResponse::Empty);
                }
                Err(e) => {
                    return Err(match e {
                        DriveError::InsufficientScope => DriveUseError::ScopeMissing,
                        DriveError::NotFound => DriveUseError::NotFound,
                        DriveError::RateLimited { .. } => DriveUseError::RateLimited,
                        DriveError::BadRequest(m) => DriveUseError::BadRequest(m),
                        DriveError::Forbidden(m) => DriveUseError::Forbidden(m),
                        DriveError::Unavailable => DriveUseError::Unavailable,
                        DriveError::Protocol(m) => DriveUseError::Upstream(m),
                        DriveError::Unauthorized => DriveUseError::Unauthorized,
                    });
                }
            }
        }
    }
}

/// The scopes a Drive `appDataFolder` call needs.
pub(crate) fn drive_scopes() -> Scopes {
    Scopes::from_iter_checked([DRIVE_APPDATA_SCOPE]).unwrap_or_default()
}

/// Per-user in-process refresh flights.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Subject, Weak<tokio::sync::Mutex<()>>>>,
}

impl Flights {
    pub(crate) fn get(&self, subject: &Subject) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = map.get(subject).and_then(Weak::upgrade) {
            return flight;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let flight = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(subject.clone(), Arc::downgrade(&flight));
        flight
    }
}
