//! Refreshing an access token: once per expiry however many callers and instances ask, and never written over a
//! record that changed meanwhile.
//!
//! A refresh holds the user's locks (an in-process flight, then the store's cross-process user lock) across its
//! call to Google, so concurrent callers wait and then read its result. Its write goes through the update
//! primitive and applies only to the credential whose refresh token it used: if the user was forgotten, or signed
//! in again with a new grant, while Google was answering, the answer belongs to a grant that is no longer stored,
//! and the refresh decides again on what is stored now.

use crate::credential::{CachedAccess, ConsentState};
use crate::events::{EventData, RevokedBy};
use crate::grants::{self, Change, Outcome, Stored, same_token};
use crate::identity::{Profile, Scopes, Subject};
use crate::ports::{StoreError, TokenError, TokenResponse};
use crate::recent::{RecentCredentials, Usable};
use crate::secret::{AccessToken, RefreshToken};
use crate::service::{AccessError, OfflineAccess};
use crate::signin::grant_from;

/// How often a refresh decides again after finding that its answer belonged to a grant no longer stored.
const ROUNDS: usize = 3;

impl OfflineAccess {
    /// Refreshes under the user's locks. With `failed`, refreshes only if the stored token is still the one that
    /// failed (so a burst of 401s causes one refresh); otherwise only if the stored token expires within `margin`
    /// or lacks a `required` scope that the grant has.
    pub(crate) async fn refresh(
        &self,
        subject: &Subject,
        failed: Option<&AccessToken>,
        required: &Scopes,
        margin: time::Duration,
    ) -> Result<CachedAccess, AccessError> {
        let flight = self.flights.get(subject);
        let _in_process = flight.lock().await;
        let lock = self.ports.store.lock_user(subject).await?;
        let result = self.refresh_locked(subject, failed, required, margin).await;
        if let Err(e) = lock.release().await {
            // Every write under the lock was durable when it returned; the store frees the lock itself.
            tracing::warn!(subject = %subject, error = %e, "could not release a user lock cleanly");
        }
        result
    }

    async fn refresh_locked(
        &self,
        subject: &Subject,
        failed: Option<&AccessToken>,
        required: &Scopes,
        margin: time::Duration,
    ) -> Result<CachedAccess, AccessError> {
        let store = &*self.ports.store;
        for _ in 0..ROUNDS {
            let as_of = RecentCredentials::now();
            let credential = grants::read(store, subject).await?.credential();
            self.recent
                .record(subject, credential.as_ref().and_then(Usable::of), as_of);
            let credential = credential.ok_or(AccessError::NotFound)?;
            let missing = required.difference(&credential.scopes);
            if !missing.is_empty() {
                return Err(AccessError::ScopeMissing(missing));
            }
            let now = self.ports.clock.now();
            if let Some(access) = &credential.access {
                let usable = access.scopes.is_superset(required)
                    && match failed {
                        None => access.is_fresh(now, margin),
                        Some(failed) => {
                            !access.token.ct_eq(failed)
                                && access.is_fresh(now, time::Duration::ZERO)
                        }
                    };
                if usable {
                    return Ok(access.clone());
                }
            }
            if credential.disabled.is_some() {
                return Err(AccessError::AccountDisabled);
            }
            if credential.consent == ConsentState::Revoked {
                return Err(AccessError::ReconsentRequired);
            }
            let Some(refresh_token) = credential.refresh_token.clone() else {
                return Err(AccessError::NoOfflineAccess);
            };
            let response = match self.refresh_with_retries(&refresh_token).await {
                Ok(response) => response,
                Err(TokenError::InvalidGrant) => {
                    if self.mark_revoked(subject, &refresh_token).await? {
                        return Err(AccessError::ReconsentRequired);
                    }
                    tracing::info!(subject = %subject, "a refresh token Google rejected is no longer the stored one; deciding again");
                    continue;
                }
                Err(TokenError::InvalidClient(m)) => {
                    tracing::error!(
                        "Google rejected this server's client credentials on refresh; no credential changed"
                    );
                    return Err(AccessError::Misconfigured(m));
                }
                Err(TokenError::Rejected(m)) => return Err(AccessError::Misconfigured(m)),
                Err(e @ (TokenError::Unavailable { .. } | TokenError::Timeout)) => {
                    self.mark_refresh_failing(subject, &refresh_token, &e).await;
                    return Err(AccessError::UpstreamUnavailable);
                }
                Err(TokenError::Protocol(m)) => return Err(AccessError::Upstream(m)),
            };
            let profile = self.refreshed_profile(subject, &response, now).await;
            let grant = grant_from(response, profile, now, &credential.scopes);
            let read_version = credential.version;
            let as_of = RecentCredentials::now();
            let record = self.records_events();
            let ((), outcome) =
                grants::update_recording(store, subject, now, record, |stored| match stored {
                    Stored::Credential(mut current)
                        if same_token(current.refresh_token.as_ref(), Some(&refresh_token)) =>
                    {
                        let mut grant = grant.clone();
                        if current.version != read_version {
                            // Written meanwhile (a sign-in may have widened the grant): an answer that may predate that
                            // write must not narrow it.
                            grant.scopes = grant.scopes.map(|s| s.union(&current.scopes));
                        }
                        let before = current.scopes.clone();
                        let was_failing = current.refresh_failing_since.is_some();
                        current.apply_refresh(grant, now);
                        let mut events = Vec::new();
                        if record {
                            events.extend(EventData::scopes_changed(
                                subject,
                                &before,
                                &current.scopes,
                            ));
                            if was_failing {
                                events.push(EventData::Recovered {
                                    sub: subject.as_str().to_owned(),
                                });
                            }
                        }
                        (Change::Put(current, ()), events)
                    }
                    _ => (Change::Keep(()), Vec::new()),
                })
                .await?;
            let Outcome::Written(written) = outcome else {
                tracing::info!(subject = %subject, "the refreshed grant is no longer the stored one (forgotten or replaced meanwhile); deciding again");
                continue;
            };
            self.recent.record(subject, Usable::of(&written), as_of);
            tracing::info!(subject = %subject, "access token refreshed");
            let access = written
                .access
                .ok_or_else(|| AccessError::Upstream("no access token after a refresh".into()))?;
            let missing = required.difference(&access.scopes);
            if !missing.is_empty() {
                // Google reported a narrower grant than stored (the user removed access in their account).
                return Err(AccessError::ScopeMissing(missing));
            }
            return Ok(access);
        }
        Err(StoreError::Conflict.into())
    }

    /// Marks the consent revoked if `rejected` is still the stored refresh token; `true` if it was.
    async fn mark_revoked(
        &self,
        subject: &Subject,
        rejected: &RefreshToken,
    ) -> Result<bool, StoreError> {
        let now = self.ports.clock.now();
        let record = self.records_events();
        let (revoked, outcome) = grants::update_recording(
            &*self.ports.store,
            subject,
            now,
            record,
            |stored| match stored {
                Stored::Credential(mut current)
                    if same_token(current.refresh_token.as_ref(), Some(rejected)) =>
                {
                    let was_revoked = current.consent == ConsentState::Revoked;
                    current.mark_revoked(now);
                    let events = if was_revoked {
                        Vec::new()
                    } else {
                        vec![EventData::Revoked {
                            sub: subject.as_str().to_owned(),
                            source: RevokedBy::InvalidGrant,
                        }]
                    };
                    (Change::Put(current, true), events)
                }
                _ => (Change::Keep(false), Vec::new()),
            },
        )
        .await?;
        if let Outcome::Written(written) = &outcome {
            tracing::warn!(subject = %subject, "refresh token rejected (invalid_grant): consent marked revoked");
            self.recent.invalidate(subject, Usable::of(written));
        }
        Ok(revoked)
    }

    /// Records that Google kept failing to refresh this grant (after the retries), once per outage: the first
    /// failure sets `refresh_failing_since` and reports `grant.refresh_failing`; the next refresh that works clears
    /// it and reports `grant.recovered`. Only while events are recorded (the state exists for them); a failure to
    /// record is logged, the caller's answer is the outage either way.
    async fn mark_refresh_failing(
        &self,
        subject: &Subject,
        token: &RefreshToken,
        error: &TokenError,
    ) {
        if !self.records_events() {
            return;
        }
        let now = self.ports.clock.now();
        let error = match error {
            TokenError::Timeout => "Google's token endpoint timed out".to_owned(),
            _ => "Google's token endpoint was unavailable".to_owned(),
        };
        let result =
            grants::update_recording(
                &*self.ports.store,
                subject,
                now,
                true,
                |stored| match stored {
                    Stored::Credential(mut current)
                        if current.refresh_failing_since.is_none()
                            && same_token(current.refresh_token.as_ref(), Some(token)) =>
                    {
                        current.refresh_failing_since = Some(now);
                        let data = EventData::RefreshFailing {
                            sub: subject.as_str().to_owned(),
                            error: error.clone(),
                        };
                        (Change::Put(current, ()), vec![data])
                    }
                    _ => (Change::Keep(()), Vec::new()),
                },
            )
            .await;
        if let Err(e) = result {
            tracing::warn!(subject = %subject, error = %e, "could not record a failing refresh");
        }
    }

    /// The profile of a refreshed ID token, when it passes the token endpoint's checks and names the same user.
    /// Otherwise the stored profile is kept — and so are the tokens: the refresh token (rotated or not) belongs to
    /// the grant this server used, whatever its ID token says.
    async fn refreshed_profile(
        &self,
        subject: &Subject,
        response: &TokenResponse,
        now: time::OffsetDateTime,
    ) -> Option<Profile> {
        let id_token = response.id_token.as_ref()?;
        match self.ports.verifier.verify_exchanged(id_token, now).await {
            Ok(verified) if verified.subject == *subject => Some(verified.profile),
            Ok(_) => {
                tracing::warn!(subject = %subject, "refreshed ID token names another subject; tokens kept, stored profile kept");
                None
            }
            Err(reason) => {
                tracing::warn!(subject = %subject, reason = reason.reason(), "refreshed ID token failed verification; tokens kept, stored profile kept");
                None
            }
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
}
