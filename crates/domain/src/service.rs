//! The use cases: sign in with a code, get a fresh access token, call Drive, forget a user.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::credential::{CachedAccess, ConsentState, Credential, Grant};
use crate::identity::Subject;
use crate::ports::{
    Clock, CredentialStore, Drive, DriveError, DriveRequest, DriveResponse, IdTokenVerifier,
    RevokeError, StoreError, TokenEndpoint, TokenError, TokenResponse, VerifiedIdToken,
    VerifyError,
};
use crate::recent::{RecentCredentials, Usable};
use crate::secret::{AccessToken, AuthCode, IdToken, RefreshToken};

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
    /// How long a re-POSTed code gets the first answer again (default 10 min).
    pub code_dedupe_ttl: Duration,
    /// How many recent codes are remembered for that (default 10,000).
    pub code_dedupe_capacity: usize,
    /// How long a credential this instance read or wrote answers Drive calls without reading the store again
    /// (default 1 s; zero reads the store on every call). A forget or revocation on this instance applies at
    /// once; one on another instance sharing the store is seen within this time.
    pub credential_cache_ttl: Duration,
    /// How many users' credentials are kept for that (default 10,000).
    pub credential_cache_capacity: usize,
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

/// The result of a successful sign-in.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The stored credential after the merge.
    pub credential: Credential,
    /// Whether this user was not stored before.
    pub new_user: bool,
}

impl SignIn {
    /// Whether a refresh token is stored and the grant active: the server can act while the user is offline.
    #[must_use]
    pub fn offline_access(&self) -> bool {
        self.credential.offline_access()
    }
}

/// Why a sign-in failed. Nothing is stored in any of these cases.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignInError {
    /// Google rejected the code (used, expired, unknown): `invalid_grant`.
    #[error("the authorization code was rejected by Google")]
    InvalidCode,
    /// The code belongs to another user than the signed-in one (code injection).
    #[error("the code belongs to another user than the signed-in one")]
    SubjectMismatch,
    /// The ID token from the exchange failed verification.
    #[error("the ID token from Google failed verification: {0}")]
    InvalidIdToken(VerifyError),
    /// Google returned no ID token: the app must request the `openid` scope.
    #[error("Google returned no ID token; the app must request the openid scope")]
    MissingIdToken,
    /// Our client credentials or redirect URI are wrong: an operator must fix the configuration.
    #[error("Google refused this server's client configuration: {0}")]
    Misconfigured(String),
    /// Google is unreachable or failing; the code may still be unused.
    #[error("Google is unavailable")]
    UpstreamUnavailable,
    /// Google answered something unexpected.
    #[error("unexpected answer from Google: {0}")]
    Upstream(String),
    /// The store failed.
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
    /// No refresh token was ever stored and the access token expired.
    #[error("no refresh token is stored; the app must request offline access again")]
    NoOfflineAccess,
    /// A refreshed ID token names another identity than the stored one; nothing was changed.
    #[error("the refreshed ID token does not match the stored identity")]
    IdentityMismatch,
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
    /// Whether Google confirmed the grant is revoked (or already was).
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
    ports: Ports,
    settings: Settings,
    flights: Flights,
    codes: CodeCache,
    recent: RecentCredentials,
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
        Self {
            ports,
            settings,
            flights: Flights::default(),
            codes,
            recent,
        }
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

    /// Signs a user in with a one-time server auth code: exchange → verify → merge → store.
    ///
    /// `signed_in` is the subject of the app's signed-in user when the request proved one; the code must
    /// belong to that user. The same code presented again within the dedupe window gets the first answer
    /// without a second call to Google.
    ///
    /// # Errors
    /// See [`SignInError`]; in every error case nothing is stored.
    pub async fn sign_in(
        &self,
        code: &AuthCode,
        signed_in: Option<&Subject>,
    ) -> Result<SignIn, SignInError> {
        let cell = self.codes.cell_for(code);
        let outcome = cell
            .get_or_try_init(|| async {
                match self.sign_in_uncached(code, signed_in).await {
                    Err(e @ (SignInError::UpstreamUnavailable | SignInError::Store(_))) => Err(e),
                    final_outcome => Ok(final_outcome),
                }
            })
            .await?
            .clone();
        // A cached answer is only for the same signed-in user (or for a caller that proved none).
        if let (Ok(sign_in), Some(expected)) = (&outcome, signed_in)
            && sign_in.credential.subject != *expected
        {
            return Err(SignInError::SubjectMismatch);
        }
        outcome
    }

    async fn sign_in_uncached(
        &self,
        code: &AuthCode,
        signed_in: Option<&Subject>,
    ) -> Result<SignIn, SignInError> {
        let response = self
            .ports
            .tokens
            .exchange_code(code)
            .await
            .map_err(|e| match e {
                TokenError::InvalidGrant => SignInError::InvalidCode,
                TokenError::InvalidClient(m) | TokenError::Rejected(m) => {
                    SignInError::Misconfigured(m)
                }
                TokenError::Unavailable { .. } | TokenError::Timeout => {
                    SignInError::UpstreamUnavailable
                }
                TokenError::Protocol(m) => SignInError::Upstream(m),
            })?;
        let now = self.ports.clock.now();
        let id_token = response
            .id_token
            .as_ref()
            .ok_or(SignInError::MissingIdToken)?;
        let verified = self
            .ports
            .verifier
            .verify(id_token, now)
            .await
            .map_err(SignInError::InvalidIdToken)?;
        if let Some(expected) = signed_in
            && verified.subject != *expected
        {
            tracing::warn!(subject = %expected, "sign-in code belongs to another user; nothing stored");
            return Err(SignInError::SubjectMismatch);
        }
        let subject = verified.subject.clone();
        let grant = grant_from(response, Some(verified), now);
        for _ in 0..5 {
            let existing = self.ports.store.get(&subject).await?;
            // A credential forgotten with its revocation still pending counts as gone.
            let new_user = existing.as_ref().is_none_or(Credential::is_forgotten);
            let merged = Credential::merge(existing, subject.clone(), grant.clone(), now);
            let as_of = RecentCredentials::now();
            match self.ports.store.put(&merged).await {
                Ok(credential) => {
                    self.recent.record(&subject, Usable::of(&credential), as_of);
                    tracing::info!(subject = %subject, new_user, offline_access = credential.offline_access(), "signed in");
                    return Ok(SignIn {
                        credential,
                        new_user,
                    });
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }

    /// The stored credential of a user (for `/v1/me`).
    ///
    /// # Errors
    /// [`AccessError::NotFound`] or a store error.
    pub async fn credential(&self, subject: &Subject) -> Result<Credential, AccessError> {
        self.ports
            .store
            .get(subject)
            .await?
            .filter(|c| !c.is_forgotten())
            .ok_or(AccessError::NotFound)
    }

    /// A fresh access token for the user: the cached one while it stays valid for the refresh margin, else a
    /// refresh at Google. Concurrent callers for one user cause one refresh (in this process by a per-user
    /// flight, across processes by the store's user lock).
    ///
    /// # Errors
    /// See [`AccessError`].
    pub async fn access_token(&self, subject: &Subject) -> Result<AccessToken, AccessError> {
        let credential = self.usable(subject).await?;
        if credential.consent == ConsentState::Revoked {
            return Err(AccessError::ReconsentRequired);
        }
        if let Some(access) = &credential.access
            && access.is_fresh(self.ports.clock.now(), self.margin())
        {
            return Ok(access.token.clone());
        }
        self.refresh(subject, None).await
    }

    /// What a Drive call needs of the user's credential: recently read or written by this instance (see
    /// [`Settings::credential_cache_ttl`]), else read from the store now.
    async fn usable(&self, subject: &Subject) -> Result<Usable, AccessError> {
        if let Some(usable) = self.recent.get(subject) {
            return Ok(usable);
        }
        let as_of = RecentCredentials::now();
        let stored = self.ports.store.get(subject).await?;
        let usable = stored.as_ref().and_then(Usable::of);
        self.recent.record(subject, usable.clone(), as_of);
        usable.ok_or(AccessError::NotFound)
    }

    fn margin(&self) -> time::Duration {
        time::Duration::try_from(self.settings.refresh_margin).unwrap_or(time::Duration::MINUTE)
    }

    /// Refreshes under the user's locks. With `failed`, refreshes only if the stored token is still the one that
    /// failed (so a burst of 401s causes one refresh); otherwise only if the stored token is stale.
    async fn refresh(
        &self,
        subject: &Subject,
        failed: Option<&AccessToken>,
    ) -> Result<AccessToken, AccessError> {
        let flight = self.flights.get(subject);
        let _in_process = flight.lock().await;
        let mut lock = self.ports.store.lock_user(subject).await?;
        let as_of = RecentCredentials::now();
        let stored = lock.get().await?;
        self.recent
            .record(subject, stored.as_ref().and_then(Usable::of), as_of);
        let mut credential = stored
            .filter(|c| !c.is_forgotten())
            .ok_or(AccessError::NotFound)?;
        if credential.consent == ConsentState::Revoked {
            return Err(AccessError::ReconsentRequired);
        }
        let now = self.ports.clock.now();
        if let Some(access) = &credential.access {
            let usable = match failed {
                None => access.is_fresh(now, self.margin()),
                Some(failed) => {
                    !access.token.ct_eq(failed) && access.is_fresh(now, time::Duration::ZERO)
                }
            };
            if usable {
                let token = access.token.clone();
                lock.release().await?;
                return Ok(token);
            }
        }
        let Some(refresh_token) = credential.refresh_token.clone() else {
            return Err(AccessError::NoOfflineAccess);
        };
        match self.refresh_with_retries(&refresh_token).await {
            Ok(response) => {
                let verified = match &response.id_token {
                    Some(id_token) => {
                        let verified = self
                            .ports
                            .verifier
                            .verify(id_token, now)
                            .await
                            .map_err(|reason| {
                                tracing::warn!(subject = %subject, reason = reason.reason(), "refreshed ID token rejected; stored identity kept");
                                AccessError::IdentityMismatch
                            })?;
                        if verified.subject != *subject {
                            tracing::warn!(subject = %subject, "refreshed ID token names another subject; stored identity kept");
                            return Err(AccessError::IdentityMismatch);
                        }
                        Some(verified)
                    }
                    None => None,
                };
                let grant = grant_from(response, verified, now);
                let token = grant.access.token.clone();
                let mut attempts = 0;
                loop {
                    credential.apply(grant.clone(), now);
                    let as_of = RecentCredentials::now();
                    match lock.put(&credential).await {
                        Ok(written) => {
                            self.recent.record(subject, Usable::of(&written), as_of);
                            break;
                        }
                        // Someone wrote without the lock (a sign-in): re-read and re-apply, never lose the grant.
                        Err(StoreError::Conflict) if attempts < 5 => {
                            attempts += 1;
                            // Forgotten meanwhile: the fresh grant must not bring it back.
                            credential = lock
                                .get()
                                .await?
                                .filter(|c| !c.is_forgotten())
                                .ok_or(AccessError::NotFound)?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                lock.release().await?;
                tracing::info!(subject = %subject, "access token refreshed");
                Ok(token)
            }
            Err(TokenError::InvalidGrant) => {
                tracing::warn!(subject = %subject, "refresh token rejected (invalid_grant): consent marked revoked");
                let mut attempts = 0;
                loop {
                    credential.mark_revoked(now);
                    match lock.put(&credential).await {
                        Ok(written) => {
                            self.recent.invalidate(subject, Usable::of(&written));
                            break;
                        }
                        Err(StoreError::Conflict) if attempts < 5 => {
                            attempts += 1;
                            credential = lock
                                .get()
                                .await?
                                .filter(|c| !c.is_forgotten())
                                .ok_or(AccessError::NotFound)?;
                            // A sign-in brought a new refresh token meanwhile: it is not the revoked one.
                            if credential
                                .refresh_token
                                .as_ref()
                                .map(|t| t.ct_eq(&refresh_token))
                                == Some(false)
                            {
                                break;
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                lock.release().await?;
                Err(AccessError::ReconsentRequired)
            }
            Err(TokenError::InvalidClient(m)) => {
                tracing::error!(
                    "Google rejected this server's client credentials on refresh; no credential changed"
                );
                Err(AccessError::Misconfigured(m))
            }
            Err(TokenError::Rejected(m)) => Err(AccessError::Misconfigured(m)),
            Err(TokenError::Unavailable { .. } | TokenError::Timeout) => {
                Err(AccessError::UpstreamUnavailable)
            }
            Err(TokenError::Protocol(m)) => Err(AccessError::Upstream(m)),
        }
    }

    async fn refresh_with_retries(
        &self,
        refresh_token: &RefreshToken,
    ) -> Result<TokenResponse, TokenError> {
        let mut attempt = 0;
        loop {
            match self.ports.tokens.refresh(refresh_token).await {
                Err(e) if e.is_transient() && attempt + 1 < self.settings.attempts => {
                    let retry_after = match &e {
                        TokenError::Unavailable { retry_after } => *retry_after,
                        _ => None,
                    };
                    tokio::time::sleep(self.backoff(attempt, retry_after)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Jittered exponential backoff, at least what `Retry-After` asked for, at most `backoff_max`.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .settings
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16));
        // Full jitter in [exp/2, exp): a random fraction from a fresh random hasher seed.
        let fraction = (RandomState::new().hash_one(attempt) % 1000) as u32;
        let jittered = exp / 2 + exp.saturating_mul(fraction) / 2000;
        jittered
            .max(retry_after.unwrap_or_default())
            .min(self.settings.backoff_max)
    }

    /// Runs a Drive operation for the user with no user present: a fresh access token, the call, and on a 401 one
    /// refresh (only if the token that failed is still the stored one) and one retry. Rate limits and outages are
    /// retried with backoff for idempotent operations only (a create is never repeated).
    ///
    /// # Errors
    /// See [`DriveUseError`].
    pub async fn drive(
        &self,
        subject: &Subject,
        request: &DriveRequest,
    ) -> Result<DriveResponse, DriveUseError> {
        let credential = self.usable(subject).await?;
        if credential.consent == ConsentState::Revoked {
            return Err(AccessError::ReconsentRequired.into());
        }
        if !credential.drive_scope {
            return Err(DriveUseError::ScopeMissing);
        }
        let now = self.ports.clock.now();
        let mut token = match &credential.access {
            Some(access) if access.is_fresh(now, self.margin()) => access.token.clone(),
            _ => self.refresh(subject, None).await?,
        };
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            let result = self.ports.drive.execute(&token, request).await;
            match result {
                Ok(response) => return Ok(response),
                Err(DriveError::Unauthorized) if !refreshed => {
                    refreshed = true;
                    token = self.refresh(subject, Some(&token)).await?;
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

    /// Forgets a user: revokes the grant at Google (an already revoked grant counts as done) and deletes the
    /// stored credential.
    ///
    /// When Google cannot confirm the revocation (5xx, unreachable, an unexpected answer), the credential is made
    /// unusable at once instead — marked [`ConsentState::Forgotten`], keeping only the refresh token — so that
    /// [`OfflineAccess::retry_pending_revocations`] can revoke it later; deleting it would lose the only means to
    /// ever revoke the grant. Every use case treats a forgotten credential as absent.
    ///
    /// # Errors
    /// [`ForgetError::NotFound`] or a store error.
    pub async fn forget(&self, subject: &Subject) -> Result<Forgotten, ForgetError> {
        let credential = self
            .ports
            .store
            .get(subject)
            .await?
            .ok_or(ForgetError::NotFound)?;
        let revoked_at_google = self.revoke_and_delete(credential).await?;
        tracing::info!(subject = %subject, revoked_at_google, "user forgotten");
        Ok(Forgotten { revoked_at_google })
    }

    /// Revokes `credential`'s grant at Google, then deletes it; if Google cannot confirm, marks it forgotten
    /// (pending revocation) instead. Returns whether Google confirmed.
    async fn revoke_and_delete(&self, credential: Credential) -> Result<bool, StoreError> {
        let subject = credential.subject.clone();
        let revoked = match &credential.refresh_token {
            Some(token) => match self.ports.tokens.revoke(token).await {
                Ok(()) | Err(RevokeError::AlreadyRevoked) => true,
                Err(e) => {
                    tracing::warn!(subject = %subject, error = %e, "revocation at Google failed; the credential is unusable now and the revocation will be retried");
                    false
                }
            },
            None => true,
        };
        if revoked {
            self.ports.store.delete(&subject).await?;
            self.recent.invalidate(&subject, None);
            return Ok(true);
        }
        if credential.is_forgotten() {
            return Ok(false);
        }
        let mut credential = credential;
        for _ in 0..5 {
            credential.mark_forgotten(self.ports.clock.now());
            match self.ports.store.put(&credential).await {
                Ok(_) => {
                    self.recent.invalidate(&subject, None);
                    return Ok(false);
                }
                Err(StoreError::Conflict) => {
                    // Written meanwhile (a refresh): re-read and forget the newest copy.
                    match self.ports.store.get(&subject).await? {
                        Some(newer) => credential = newer,
                        None => return Ok(false),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Retries the revocation of every credential forgotten while Google was unavailable (see
    /// [`OfflineAccess::forget`]); each one Google confirms (or reports already revoked) is deleted. Call it
    /// periodically from the composition root, or from an operator command.
    ///
    /// # Errors
    /// A store error while listing; a failure for one user is logged and counted as still pending.
    pub async fn retry_pending_revocations(&self) -> Result<PendingRevocations, StoreError> {
        let mut outcome = PendingRevocations::default();
        let mut after = None;
        loop {
            let page = self.ports.store.list(after, 100).await?;
            for credential in page.items.into_iter().filter(Credential::is_forgotten) {
                let subject = credential.subject.clone();
                match self.revoke_and_delete(credential).await {
                    Ok(true) => outcome.revoked += 1,
                    Ok(false) => outcome.pending += 1,
                    Err(e) => {
                        tracing::warn!(subject = %subject, error = %e, "could not finish a pending revocation");
                        outcome.pending += 1;
                    }
                }
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if outcome.revoked + outcome.pending > 0 {
            tracing::info!(
                revoked = outcome.revoked,
                pending = outcome.pending,
                "retried pending revocations"
            );
        }
        Ok(outcome)
    }
}

impl OfflineAccess {
    /// Runs [`OfflineAccess::retry_pending_revocations`] every `every`, forever (the first run after one
    /// interval). Spawn it next to the server: `tokio::spawn(service.clone().retry_pending_revocations_every(d))`.
    pub async fn retry_pending_revocations_every(self: Arc<Self>, every: Duration) {
        let every = every.max(Duration::from_secs(1));
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.retry_pending_revocations().await {
                tracing::warn!(error = %e, "could not list pending revocations; will try again");
            }
        }
    }
}

/// What [`OfflineAccess::retry_pending_revocations`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingRevocations {
    /// Grants Google now confirmed revoked; their credentials were deleted.
    pub revoked: usize,
    /// Grants still not revoked (Google still unavailable); kept forgotten for the next retry.
    pub pending: usize,
}

fn grant_from(
    response: TokenResponse,
    verified: Option<VerifiedIdToken>,
    now: OffsetDateTime,
) -> Grant {
    let expires_in = time::Duration::try_from(response.expires_in).unwrap_or(time::Duration::ZERO);
    Grant {
        profile: verified.map(|v| v.profile),
        scopes: response.scopes,
        refresh_token: response.refresh_token,
        access: CachedAccess {
            token: response.access_token,
            // Saturating: a port answering an absurd lifetime must not panic the use case.
            expires_at: now.saturating_add(expires_in),
        },
    }
}

/// Per-user in-process refresh flights.
#[derive(Default)]
struct Flights {
    map: Mutex<HashMap<Subject, Weak<tokio::sync::Mutex<()>>>>,
}

impl Flights {
    fn get(&self, subject: &Subject) -> Arc<tokio::sync::Mutex<()>> {
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

type Outcome = Result<SignIn, SignInError>;

/// Recently presented codes and their first answers. Keyed by a keyed hash; the code itself is compared in
/// constant time on a hit, so a hash collision can never return another user's answer.
struct CodeCache {
    hasher: RandomState,
    ttl: Duration,
    capacity: usize,
    inner: Mutex<CodeCacheInner>,
}

#[derive(Default)]
struct CodeCacheInner {
    map: HashMap<u64, (AuthCode, Instant, Arc<OnceCell<Outcome>>)>,
    order: VecDeque<(u64, Instant)>,
}

impl CodeCache {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    fn cell_for(&self, code: &AuthCode) -> Arc<OnceCell<Outcome>> {
        let key = self.hasher.hash_one(code.expose_secret().as_bytes());
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(old_key, at)) = inner.order.front() {
            if now.duration_since(at) < self.ttl && inner.order.len() < self.capacity {
                break;
            }
            inner.order.pop_front();
            if inner.map.get(&old_key).is_some_and(|e| e.1 == at) {
                inner.map.remove(&old_key);
            }
        }
        if let Some((stored, _, cell)) = inner.map.get(&key)
            && stored.ct_eq(code)
        {
            return Arc::clone(cell);
        }
        let cell = Arc::new(OnceCell::new());
        inner
            .map
            .insert(key, (code.clone(), now, Arc::clone(&cell)));
        inner.order.push_back((key, now));
        cell
    }
}
