//! Forgetting a user, and the sweep that finishes revocations Google could not confirm at the time.
//!
//! Revoking any token of a grant at Google revokes the whole grant, including tokens a later sign-in got. So the
//! sweep never revokes on a snapshot: it takes the user's lock, reads again, and revokes only a pending revocation
//! that is still there; a sign-in that finds a pending revocation cancels it in its own write, under the same
//! lock, so the two never cross.

use std::sync::Arc;
use std::time::Duration;

use crate::events::{EventData, RevokedBy};
use crate::grants::{self, Change, Outcome, Stored, same_token};
use crate::identity::Subject;
use crate::ports::{RevokeError, StoreError};
use crate::secret::RefreshToken;
use crate::service::{ForgetError, Forgotten, OfflineAccess};

/// How many pending revocations the sweep reads per page.
const PAGE: usize = 100;

impl OfflineAccess {
    /// Forgets a user: revokes the grant at Google (an already revoked grant counts as done) and deletes the
    /// stored credential.
    ///
    /// When Google cannot confirm the revocation (5xx, unreachable, an unexpected answer), the credential becomes
    /// a pending revocation instead — unusable at once, keeping only the refresh token — so that
    /// [`OfflineAccess::retry_pending_revocations`] can revoke it later; deleting it would lose the only means to
    /// ever revoke the grant. Forgetting a user whose revocation is pending tries the revocation again.
    ///
    /// # Errors
    /// [`ForgetError::NotFound`] or a store error.
    pub async fn forget(&self, subject: &Subject) -> Result<Forgotten, ForgetError> {
        let stored = grants::read(&*self.ports.store, subject).await?;
        if matches!(stored, Stored::Absent) {
            return Err(ForgetError::NotFound);
        }
        let token = stored.refresh_token().cloned();
        let revoked_at_google = self.revoke(subject, token.as_ref()).await;
        let now = self.ports.clock.now();
        let forgotten = || {
            let sub = subject.as_str().to_owned();
            vec![
                EventData::Revoked {
                    sub: sub.clone(),
                    source: RevokedBy::Forget,
                },
                EventData::Forgotten { sub },
            ]
        };
        let record = self.records_events();
        let ((), outcome) =
            grants::update_recording(&*self.ports.store, subject, now, record, |stored| {
                match stored {
                    Stored::Absent => (Change::Keep(()), Vec::new()),
                    // Google revoked the grant, and with it every token of it (also one rotated meanwhile). A
                    // pending revocation was already reported when it was forgotten.
                    Stored::PendingRevocation(_) if revoked_at_google => {
                        (Change::Delete(()), Vec::new())
                    }
                    Stored::Credential(_) if revoked_at_google => (Change::Delete(()), forgotten()),
                    Stored::PendingRevocation(_) => (Change::Keep(()), Vec::new()),
                    Stored::Credential(mut credential) => {
                        credential.mark_forgotten(now);
                        (Change::Put(credential, ()), forgotten())
                    }
                }
            })
            .await?;
        self.recent.invalidate(subject, None);
        if matches!(outcome, Outcome::Written(_)) {
            tracing::warn!(subject = %subject, "revocation at Google failed; the credential is unusable now and the revocation will be retried");
        }
        tracing::info!(subject = %subject, revoked_at_google, "user forgotten");
        Ok(Forgotten { revoked_at_google })
    }

    /// Revokes `token` at Google; `true` when Google confirmed (or the grant was already gone, or there is no
    /// token to revoke).
    async fn revoke(&self, subject: &Subject, token: Option<&RefreshToken>) -> bool {
        let Some(token) = token else {
            return true;
        };
        match self.ports.tokens.revoke(token).await {
            Ok(()) | Err(RevokeError::AlreadyRevoked) => true,
            Err(e) => {
                tracing::warn!(subject = %subject, error = %e, "revocation at Google failed");
                false
            }
        }
    }

    /// Retries the revocation of every pending revocation (see [`OfflineAccess::forget`]); each one Google confirms
    /// (or reports already revoked) is deleted. Reads only the pending revocations (the store's index), and goes on
    /// past a record it cannot read. Call it periodically from the composition root, or from an operator command.
    ///
    /// # Errors
    /// A store error while listing; a failure for one user is logged and counted as still pending.
    pub async fn retry_pending_revocations(&self) -> Result<PendingRevocations, StoreError> {
        let mut outcome = PendingRevocations::default();
        let mut cursor = None;
        loop {
            let page = self.ports.store.pending_revocations(cursor, PAGE).await?;
            for reason in &page.unreadable {
                tracing::warn!(reason = %reason, "a pending revocation cannot be read; skipped");
                outcome.unreadable += 1;
            }
            for pending in page.items {
                let subject = pending.subject.clone();
                match self.finish_revocation(&subject).await {
                    Ok(Some(true)) => outcome.revoked += 1,
                    Ok(Some(false)) => outcome.pending += 1,
                    Ok(None) => outcome.cancelled += 1,
                    Err(e) => {
                        tracing::warn!(subject = %subject, error = %e, "could not finish a pending revocation");
                        outcome.pending += 1;
                    }
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if outcome != PendingRevocations::default() {
            tracing::info!(
                revoked = outcome.revoked,
                pending = outcome.pending,
                cancelled = outcome.cancelled,
                unreadable = outcome.unreadable,
                "retried pending revocations"
            );
        }
        Ok(outcome)
    }

    /// Under the user's lock: if a pending revocation is still stored, revokes its token and deletes it.
    /// `Some(true)` revoked, `Some(false)` still pending, `None` nothing pending any more (a sign-in cancelled it).
    async fn finish_revocation(&self, subject: &Subject) -> Result<Option<bool>, StoreError> {
        let store = &*self.ports.store;
        let lock = store.lock_user(subject).await?;
        let result = async {
            let Stored::PendingRevocation(pending) = grants::read(store, subject).await? else {
                return Ok(None);
            };
            let token = pending.refresh_token;
            if !self.revoke(subject, token.as_ref()).await {
                return Ok(Some(false));
            }
            let (done, _) = grants::update(store, subject, |stored| match stored {
                Stored::PendingRevocation(p)
                    if same_token(p.refresh_token.as_ref(), token.as_ref()) =>
                {
                    Change::Delete(true)
                }
                _ => Change::Keep(false),
            })
            .await?;
            Ok(Some(done))
        }
        .await;
        if let Err(e) = lock.release().await {
            tracing::warn!(subject = %subject, error = %e, "could not release a user lock cleanly");
        }
        result
    }

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
    /// Grants Google now confirmed revoked; their records were deleted.
    pub revoked: usize,
    /// Grants still not revoked (Google still unavailable); kept for the next retry.
    pub pending: usize,
    /// Pending revocations a new sign-in cancelled before the sweep reached them.
    pub cancelled: usize,
    /// Records the store could not read (reported, skipped).
    pub unreadable: usize,
}
