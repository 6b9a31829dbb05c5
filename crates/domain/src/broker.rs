//! The grant broker: the stored grants serve the team's own services — users and their grants listed, a fresh
//! access token handed out, any Google API called through a proxy — over the internal API.

use std::time::Duration;

use crate::credential::{CachedAccess, ConsentState, Credential};
use crate::identity::{Scopes, Subject};
use crate::ports::{ProxyError, ProxyRequest, ProxyResponse, StoreError};
use crate::service::{AccessError, OfflineAccess};

/// The longest `min_ttl` a caller may ask of an access token: Google's tokens live an hour, so a longer wish would
/// force a refresh on every call.
pub const MAX_MIN_TTL: Duration = Duration::from_secs(1800);

/// One page of users (see [`OfflineAccess::users`]).
#[derive(Debug, Clone, Default)]
pub struct UserPage {
    /// The users on this page (pending revocations are never listed).
    pub users: Vec<Credential>,
    /// Where the next page starts; `None` at the end. A page may hold fewer users than asked (a filter, or
    /// unreadable records skipped) and still not be the last.
    pub next_cursor: Option<String>,
    /// Records that could not be read on this page (reasons, never secrets).
    pub unreadable: Vec<String>,
}

/// Why a proxied call failed before Google answered (Google's own answers, errors too, are passed through).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyUseError {
    /// No access token could be had.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Google did not answer.
    #[error(transparent)]
    Upstream(#[from] ProxyError),
    /// This service was built without a Google API port.
    #[error("the Google API proxy is not configured")]
    NotConfigured,
}

impl OfflineAccess {
    /// A page of stored users, `limit` records of the store at a time from `cursor`, keeping those in `consent`
    /// when given.
    ///
    /// # Errors
    /// The store's; [`StoreError::Other`] for a cursor the store did not make.
    pub async fn users(
        &self,
        consent: Option<ConsentState>,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<UserPage, StoreError> {
        let page = self.ports.store.list(cursor, limit.max(1)).await?;
        let users = page
            .items
            .into_iter()
            .filter(|c| !c.is_forgotten())
            .filter(|c| consent.is_none_or(|wanted| c.consent == wanted))
            .collect();
        Ok(UserPage {
            users,
            next_cursor: page.next_cursor,
            unreadable: page.unreadable,
        })
    }

    /// An access token for the team's own services, carrying every scope of `required` and valid for at least
    /// `min_ttl` (capped at [`MAX_MIN_TTL`]): the cached one when it is, else one refresh per expiry however many
    /// callers and instances ask.
    ///
    /// # Errors
    /// [`AccessError::ScopeMissing`] (with the missing scopes) when the grant lacks one, without a Google call;
    /// [`AccessError::NotFound`], [`AccessError::ReconsentRequired`], [`AccessError::NoOfflineAccess`], and
    /// Google's or the store's failures.
    pub async fn access_token_for(
        &self,
        subject: &Subject,
        required: &Scopes,
        min_ttl: Duration,
    ) -> Result<CachedAccess, AccessError> {
        let margin =
            time::Duration::try_from(min_ttl.min(MAX_MIN_TTL)).unwrap_or(time::Duration::MINUTE);
        self.token_for(subject, required, margin).await
    }

    /// Forwards `request` to a Google API with the user's access token. On Google's 401 the token is refreshed
    /// once (one refresh per expiry, however many callers) and a repeatable request (no body, or one held in
    /// memory) is sent once more; a streamed one gets Google's 401, and the next call the fresh token.
    ///
    /// # Errors
    /// See [`ProxyUseError`].
    pub async fn proxy(
        &self,
        subject: &Subject,
        request: ProxyRequest,
    ) -> Result<ProxyResponse, ProxyUseError> {
        let api = self
            .google_api
            .as_ref()
            .ok_or(ProxyUseError::NotConfigured)?;
        let none = Scopes::default();
        let access = self.token_for(subject, &none, self.margin()).await?;
        let again = request.try_clone();
        let response = api.forward(&access.token, request).await?;
        if response.status != 401 {
            return Ok(response);
        }
        let fresh = self
            .refresh(subject, Some(&access.token), &none, self.margin())
            .await;
        match (again, fresh) {
            (Some(again), Ok(fresh)) => {
                tracing::info!(subject = %subject, "Google refused the access token; refreshed and sent again");
                Ok(api.forward(&fresh.token, again).await?)
            }
            // Not repeatable: Google's 401 goes back, and the next call uses the fresh token.
            (None, Ok(_)) => Ok(response),
            (_, Err(e)) => Err(e.into()),
        }
    }
}
