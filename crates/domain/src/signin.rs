//! Sign-in with a one-time server auth code: check the store can take the grant, exchange, verify, write.
//!
//! A code is spent at Google only when the store has just shown it can take writes (so a store that is down
//! never burns a code). Once Google has answered, the grant is never thrown away: the ID token from the token
//! endpoint is checked with the rules that apply there ([`crate::IdTokenVerifier::verify_exchanged`]), and if the
//! store fails after the exchange the grant stays in memory, with the code, for the dedupe window: the same code
//! POSTed again writes it without a second call to Google. Once written, only the answer (no token) is remembered.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::credential::{CachedAccess, Credential, Grant};
use crate::events::EventData;
use crate::grants::{self, Change, Outcome, Stored};
use crate::identity::{Profile, Scopes, Subject};
use crate::ports::{CredentialStore, StoreError, TokenError, TokenResponse};
use crate::recent::{RecentCredentials, Usable};
use crate::secret::{AuthCode, RefreshToken};
use crate::service::{OfflineAccess, SignIn, SignInError};

impl OfflineAccess {
    /// Signs a user in with a one-time server auth code: store check → exchange → verify → merge → store.
    ///
    /// `signed_in` is the subject of the app's signed-in user when the request proved one; the code must
    /// belong to that user. The same code presented again within the dedupe window gets the first answer
    /// without a second call to Google (or, if the store failed after the exchange, stores the grant now).
    ///
    /// # Errors
    /// See [`SignInError`]; in every error case nothing is stored.
    pub async fn sign_in(
        &self,
        code: &AuthCode,
        signed_in: Option<&Subject>,
    ) -> Result<SignIn, SignInError> {
        let slot = self.codes.slot_for(code);
        let mut state = slot.lock().await;
        loop {
            // The state is taken out while it is worked on and always put back (a sign-in runs to completion: the
            // HTTP adapter does not cancel it when the app goes away).
            match std::mem::replace(&mut *state, CodeState::Fresh) {
                CodeState::Done(answer) => {
                    *state = CodeState::Done(answer.clone());
                    // A remembered answer is only for the same signed-in user (or for a caller that proved none).
                    if let (Ok(sign_in), Some(expected)) = (&answer, signed_in)
                        && sign_in.subject != *expected
                    {
                        return Err(SignInError::SubjectMismatch);
                    }
                    return answer;
                }
                CodeState::Exchanged(exchanged) => {
                    if let Some(expected) = signed_in
                        && exchanged.subject != *expected
                    {
                        *state = CodeState::Exchanged(exchanged);
                        return Err(SignInError::SubjectMismatch);
                    }
                    let mut exchanged = exchanged;
                    match self.store_sign_in(&mut exchanged).await {
                        Ok(sign_in) => *state = CodeState::Done(Ok(sign_in)),
                        Err(e) => {
                            if matches!(e, SignInError::Store(_)) {
                                self.store_health.failed();
                            }
                            tracing::warn!(subject = %exchanged.subject, error = %e, "could not store a sign-in; the grant is kept in memory for a retry of the same code");
                            *state = CodeState::Exchanged(exchanged);
                            return Err(e);
                        }
                    }
                }
                CodeState::Fresh => {
                    // The code is spent only if the store can take the grant now.
                    self.store_health.check(&*self.ports.store).await?;
                    match self.exchange(code, signed_in).await {
                        Ok(exchanged) => *state = CodeState::Exchanged(Box::new(exchanged)),
                        Err(e) if is_final(&e) => *state = CodeState::Done(Err(e)),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Exchanges the code and checks the ID token that came with the tokens.
    async fn exchange(
        &self,
        code: &AuthCode,
        signed_in: Option<&Subject>,
    ) -> Result<Exchanged, SignInError> {
        let response = self
            .ports
            .tokens
            .exchange_code(code)
            .await
            .map_err(|e| match e {
                TokenError::InvalidGrant => SignInError::InvalidCode,
                TokenError::Rejected(m) if m == "redirect_uri_mismatch" => {
                    SignInError::RedirectUriMismatch
                }
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
            .verify_exchanged(id_token, now)
            .await
            .map_err(|reason| {
                tracing::warn!(reason = reason.reason(), "the ID token from the code exchange failed the token endpoint's checks; nothing stored");
                SignInError::InvalidIdToken(reason)
            })?;
        if let Some(expected) = signed_in
            && verified.subject != *expected
        {
            tracing::warn!(subject = %expected, "sign-in code belongs to another user; nothing stored");
            return Err(SignInError::SubjectMismatch);
        }
        Ok(Exchanged {
            subject: verified.subject,
            grant: grant_from(response, Some(verified.profile), now, &Scopes::default()),
            now,
            suspect: false,
        })
    }

    /// Writes an exchanged grant through the update primitive. A pending revocation is cancelled by the write;
    /// since the sweep may be revoking it at Google right now, the write then waits for the user's lock (the
    /// sweep holds it across its revocation) and decides on what the sweep left (`store_after_pending`).
    async fn store_sign_in(&self, exchanged: &mut Exchanged) -> Result<SignIn, SignInError> {
        let store = &*self.ports.store;
        let subject = exchanged.subject.clone();
        let as_of = RecentCredentials::now();
        let first = if exchanged.suspect {
            None
        } else {
            let (new_user, outcome) = self
                .update_sign_in(&subject, |stored| match stored {
                    Stored::PendingRevocation(_) => Change::Keep(None),
                    other => sign_in_change(other, exchanged).map(Some),
                })
                .await?;
            new_user.map(|new_user| (new_user, outcome))
        };
        let (new_user, outcome) = match first {
            Some(done) => done,
            None => {
                // From now on this grant is suspect until checked, also for a retry of the same code.
                exchanged.suspect = true;
                let lock = store.lock_user(&subject).await?;
                let result = self.store_after_pending(exchanged).await;
                if let Err(e) = lock.release().await {
                    tracing::warn!(subject = %subject, error = %e, "could not release a user lock cleanly");
                }
                result?
            }
        };
        let credential = match outcome {
            Outcome::Written(credential) => credential,
            // Nothing written (see `store_after_pending`): the answer is what is stored now.
            Outcome::Kept | Outcome::Deleted => grants::read(store, &subject)
                .await?
                .credential()
                .ok_or(StoreError::Conflict)?,
        };
        self.recent.record(&subject, Usable::of(&credential), as_of);
        tracing::info!(subject = %subject, new_user, offline_access = credential.offline_access(), "signed in");
        Ok(SignIn::of(
            &credential,
            new_user,
            &self.settings.required_scopes,
        ))
    }
}

impl OfflineAccess {
    /// The write of a sign-in that found a pending revocation, under the user's lock. If the revocation is still
    /// pending, the write cancels it. If it is gone, the sweep may have revoked the grant at Google while this
    /// sign-in exchanged its code — and revoking any token revokes the whole grant — so the tokens Google just
    /// gave may be dead: a refresh token is tried before it is trusted (and stored as revoked if Google refuses
    /// it); without one, the code joined that grant when nothing else is stored (after a revocation Google shows
    /// the consent screen and gives a refresh token). Tokens not known to work never replace a credential stored
    /// meanwhile. When Google cannot tell, the sign-in fails as unavailable and the grant waits in memory for a
    /// retry of the same code; the answer never claims offline access the server lacks.
    async fn store_after_pending(
        &self,
        exchanged: &Exchanged,
    ) -> Result<(bool, Outcome), SignInError> {
        let store = &*self.ports.store;
        let subject = &exchanged.subject;
        let now_stored = grants::read(store, subject).await?;
        if let Stored::PendingRevocation(pending) = &now_stored {
            return self.cancel_pending(exchanged, pending).await;
        }
        let mut checked = Exchanged {
            subject: subject.clone(),
            grant: exchanged.grant.clone(),
            now: exchanged.now,
            suspect: false,
        };
        let works = match &exchanged.grant.refresh_token {
            None => None,
            Some(token) => match self.try_refresh(token, &checked.grant).await? {
                Some(mut grant) => {
                    grant.refresh_token = grant.refresh_token.or_else(|| Some(token.clone()));
                    checked.grant = grant;
                    Some(true)
                }
                None => Some(false),
            },
        };
        let now = self.ports.clock.now();
        let decided = self
            .update_sign_in(subject, |stored| match (stored, works) {
                (stored, Some(true)) => sign_in_change(stored, &checked),
                (Stored::Absent, _) => {
                    let mut credential =
                        Credential::first(subject.clone(), checked.grant.clone(), now);
                    credential.mark_revoked(now);
                    Change::Put(credential, true)
                }
                // Another sign-in or a forget came first: tokens not known to work add nothing; the answer is what is
                // stored.
                (Stored::Credential(_) | Stored::PendingRevocation(_), _) => Change::Keep(false),
            })
            .await?;
        if works != Some(true) {
            tracing::warn!(subject = %subject, "the grant of this sign-in was revoked by a pending revocation finishing meanwhile");
        }
        Ok(decided)
    }
}

impl OfflineAccess {
    /// Tries `token` once at Google, for a sign-in whose tokens may belong to a revoked grant. `Some`: it works,
    /// and this is the grant its refresh answered (the sign-in's profile kept, a rotated refresh token if Google
    /// gave one); `None`: Google refused it (`invalid_grant`).
    ///
    /// # Errors
    /// [`SignInError::UpstreamUnavailable`] when Google cannot tell.
    async fn try_refresh(
        &self,
        token: &RefreshToken,
        signed_in: &Grant,
    ) -> Result<Option<Grant>, SignInError> {
        match self.ports.tokens.refresh(token).await {
            Ok(response) => {
                let mut grant = grant_from(
                    response,
                    None,
                    self.ports.clock.now(),
                    &signed_in.access.scopes,
                );
                grant.profile.clone_from(&signed_in.profile);
                Ok(Some(grant))
            }
            Err(TokenError::InvalidGrant) => Ok(None),
            Err(_) => Err(SignInError::UpstreamUnavailable),
        }
    }

    /// Cancels a pending revocation with a sign-in. Without a new refresh token the sign-in keeps the pending
    /// one — which may be dead (a sweep that died after Google took its revocation): it is tried once first, and
    /// the credential is stored as revoked if Google refuses it.
    async fn cancel_pending(
        &self,
        exchanged: &Exchanged,
        pending: &Credential,
    ) -> Result<(bool, Outcome), SignInError> {
        let subject = &exchanged.subject;
        let mut checked = Exchanged {
            subject: subject.clone(),
            grant: exchanged.grant.clone(),
            now: exchanged.now,
            suspect: false,
        };
        let mut dead = false;
        if checked.grant.refresh_token.is_none()
            && let Some(kept) = &pending.refresh_token
        {
            match self.try_refresh(kept, &checked.grant).await? {
                Some(grant) => checked.grant = grant,
                None => dead = true,
            }
        }
        let version = pending.version;
        let now = self.ports.clock.now();
        Ok(self
            .update_sign_in(subject, |stored| match stored {
                Stored::PendingRevocation(p) if p.version == version => {
                    let mut credential = Credential::cancelling(p, checked.grant.clone(), now);
                    if dead {
                        credential.mark_revoked(now);
                    }
                    Change::Put(credential, true)
                }
                // Changed meanwhile (under the lock only a lock-free writer can: a sign-in): merge as usual.
                other if !dead => sign_in_change(other, &checked),
                _ => Change::Keep(false),
            })
            .await?)
    }
}

impl OfflineAccess {
    /// The update primitive for a sign-in's write, recording (when events are on) `user.signed_in`, and
    /// `grant.scopes_changed` / `account.enabled` when the write changed those of a stored credential.
    async fn update_sign_in<T>(
        &self,
        subject: &Subject,
        mut decide: impl FnMut(Stored) -> Change<T>,
    ) -> Result<(T, Outcome), StoreError> {
        let record = self.records_events();
        let required = &self.settings.required_scopes;
        let now = self.ports.clock.now();
        grants::update_recording(&*self.ports.store, subject, now, record, |stored| {
            if !record {
                return (decide(stored), Vec::new());
            }
            let before = match &stored {
                Stored::Credential(c) => Some((c.scopes.clone(), c.disabled.is_some())),
                Stored::Absent | Stored::PendingRevocation(_) => None,
            };
            let change = decide(stored);
            let events = match &change {
                Change::Put(after, _) => sign_in_events(subject, before, after, required),
                Change::Keep(_) | Change::Delete(_) => Vec::new(),
            };
            (change, events)
        })
        .await
    }
}

/// What a sign-in's write reports: `user.signed_in`, and for a stored credential the scope change and the lifted
/// disablement (a new user's scopes are in `user.signed_in`).
fn sign_in_events(
    subject: &Subject,
    before: Option<(Scopes, bool)>,
    after: &Credential,
    required: &Scopes,
) -> Vec<EventData> {
    let sub = subject.as_str().to_owned();
    let mut events = vec![EventData::SignedIn {
        sub: sub.clone(),
        email: after.profile.email.as_ref().map(|e| e.as_str().to_owned()),
        new_user: before.is_none(),
        offline_access: after.offline_access(),
        scopes: after.scopes.iter().map(str::to_owned).collect(),
        missing_scopes: required
            .difference(&after.scopes)
            .iter()
            .map(str::to_owned)
            .collect(),
    }];
    if let Some((scopes, was_disabled)) = before {
        events.extend(EventData::scopes_changed(subject, &scopes, &after.scopes));
        if was_disabled && after.disabled.is_none() {
            events.push(EventData::AccountEnabled {
                sub,
                reason: Some("signed_in".to_owned()),
            });
        }
    }
    events
}

/// The sign-in's decision on what is stored: a first credential, a cancelled pending revocation (both count as a
/// new user), or the merge into the stored credential.
fn sign_in_change(stored: Stored, exchanged: &Exchanged) -> Change<bool> {
    let grant = exchanged.grant.clone();
    match stored {
        Stored::Absent => Change::Put(
            Credential::first(exchanged.subject.clone(), grant, exchanged.now),
            true,
        ),
        Stored::PendingRevocation(pending) => {
            Change::Put(Credential::cancelling(pending, grant, exchanged.now), true)
        }
        Stored::Credential(mut credential) => {
            credential.apply_sign_in(grant, exchanged.now);
            Change::Put(credential, false)
        }
    }
}

impl<T> Change<T> {
    /// The same change with its value mapped.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Change<U> {
        match self {
            Change::Keep(v) => Change::Keep(f(v)),
            Change::Put(c, v) => Change::Put(c, f(v)),
            Change::Delete(v) => Change::Delete(f(v)),
        }
    }
}

/// Whether a failed sign-in's answer is final for its code (remembered for re-POSTs). Not final: Google
/// unavailable (the code may be unused), a store failure (the code was not spent, or its grant waits in memory),
/// and an ID token that failed verification (not remembered, so nothing about it is cached).
fn is_final(error: &SignInError) -> bool {
    !matches!(
        error,
        SignInError::UpstreamUnavailable | SignInError::Store(_) | SignInError::InvalidIdToken(_)
    )
}

/// Builds a [`Grant`] from a token response. The access token's scopes are those reported, else `fallback`.
pub(crate) fn grant_from(
    response: TokenResponse,
    profile: Option<Profile>,
    now: OffsetDateTime,
    fallback: &Scopes,
) -> Grant {
    let expires_in = time::Duration::try_from(response.expires_in).unwrap_or(time::Duration::ZERO);
    let access_scopes = response.scopes.clone().unwrap_or_else(|| fallback.clone());
    Grant {
        profile,
        scopes: response.scopes,
        refresh_token: response.refresh_token,
        access: CachedAccess {
            token: response.access_token,
            // Saturating: a port answering an absurd lifetime must not panic the use case.
            expires_at: now.saturating_add(expires_in),
            scopes: access_scopes,
        },
    }
}

/// A grant Google gave for a code, verified, not yet written.
struct Exchanged {
    subject: Subject,
    grant: Grant,
    now: OffsetDateTime,
    /// A pending revocation was seen when this grant was first written: it is checked before it is trusted.
    suspect: bool,
}

/// Where a presented code stands.
// One per recent code; `Exchanged` is boxed already, the answer is the common case and stays inline.
#[allow(clippy::large_enum_variant)]
enum CodeState {
    /// Not exchanged yet (or the last try failed in a way that left the code unspent).
    Fresh,
    /// Exchanged and verified, but the store write failed: kept until written or evicted.
    Exchanged(Box<Exchanged>),
    /// The final answer, without any token.
    Done(Result<SignIn, SignInError>),
}

type Slot = Arc<tokio::sync::Mutex<CodeState>>;

/// Recently presented codes and where they stand. Keyed by a keyed hash; the code itself is compared in constant
/// time on a hit, so a hash collision can never return another user's answer. Concurrent POSTs of one code wait
/// for each other on its slot.
pub(crate) struct CodeCache {
    hasher: RandomState,
    ttl: Duration,
    capacity: usize,
    inner: Mutex<CodeCacheInner>,
}

#[derive(Default)]
struct CodeCacheInner {
    map: HashMap<u64, (AuthCode, Instant, Slot)>,
    order: VecDeque<(u64, Instant)>,
}

impl CodeCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    fn slot_for(&self, code: &AuthCode) -> Slot {
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
        if let Some((stored, _, slot)) = inner.map.get(&key)
            && stored.ct_eq(code)
        {
            return Arc::clone(slot);
        }
        let slot = Arc::new(tokio::sync::Mutex::new(CodeState::Fresh));
        inner
            .map
            .insert(key, (code.clone(), now, Arc::clone(&slot)));
        inner.order.push_back((key, now));
        slot
    }
}

/// Whether the store showed recently that it can take writes (see [`crate::Settings::store_check_ttl`]).
pub(crate) struct StoreHealth {
    ttl: Duration,
    last_ok: Mutex<Option<Instant>>,
}

impl StoreHealth {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            last_ok: Mutex::new(None),
        }
    }

    /// Succeeds at once if the store answered a check within the ttl, else checks it now.
    pub(crate) async fn check(&self, store: &dyn CredentialStore) -> Result<(), StoreError> {
        let recent = *self.last_ok.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.is_some_and(|at| at.elapsed() < self.ttl) {
            return Ok(());
        }
        store.ping().await?;
        *self.last_ok.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        Ok(())
    }

    /// Forgets the last success (a write just failed).
    pub(crate) fn failed(&self) {
        *self.last_ok.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
