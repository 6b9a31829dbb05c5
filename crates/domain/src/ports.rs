//! The ports: what the use cases need from the outside world. Adapters implement them.
//!
//! Ports are held as `Arc<dyn Port>`; with the `mock` feature each has a mockall mock (`MockTokenEndpoint`, ...).

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use time::OffsetDateTime;

use crate::credential::Credential;
use crate::events::EventRecord;
use crate::identity::{Profile, Scopes, Subject};
use crate::secret::{AccessToken, IdToken, RefreshToken};

// ---------------------------------------------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------------------------------------------

/// A successful answer of Google's token endpoint (RFC 6749 §5.1), parsed and validated.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    /// The new access token.
    pub access_token: AccessToken,
    /// Seconds until the access token expires (`expires_in`).
    pub expires_in: Duration,
    /// Present on the first consent (or forced consent, or rotation); absent otherwise.
    pub refresh_token: Option<RefreshToken>,
    /// Present when `openid` was granted.
    pub id_token: Option<IdToken>,
    /// The granted scopes, when the response carried `scope`.
    pub scopes: Option<Scopes>,
}

/// Errors of the token endpoint, mirroring RFC 6749 §5.2 where Google uses its codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// `invalid_grant` (RFC 6749 §5.2): the code is unknown, used or expired; or the refresh token was revoked.
    #[error("Google rejected the grant (invalid_grant)")]
    InvalidGrant,
    /// `invalid_client` / `unauthorized_client`: our client ID or secret is wrong. An operator problem.
    #[error("Google rejected this server's client credentials ({0})")]
    InvalidClient(String),
    /// `redirect_uri_mismatch`, `invalid_request` and other protocol errors: a configuration problem.
    #[error("Google refused the request: {0}")]
    Rejected(String),
    /// Google answered 5xx, 408 or 429, or could not be reached. `retry_after` from `Retry-After` when sent.
    #[error("Google's token endpoint is unavailable")]
    Unavailable {
        /// How long Google asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The request timed out.
    #[error("Google's token endpoint timed out")]
    Timeout,
    /// Google answered something we could not understand.
    #[error("unexpected answer from Google's token endpoint: {0}")]
    Protocol(String),
}

impl TokenError {
    /// Whether retrying the same request later may succeed (never true for a code exchange: codes are single-use).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout)
    }
}

/// Errors of revocation (RFC 7009).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    /// Google does not know the token (already revoked or expired): for the caller, the grant is gone.
    #[error("the token was already revoked or expired")]
    AlreadyRevoked,
    /// Google could not be reached or answered 5xx.
    #[error("Google's revoke endpoint is unavailable")]
    Unavailable,
    /// Anything else.
    #[error("unexpected answer from Google's revoke endpoint: {0}")]
    Protocol(String),
}

/// Google's OAuth 2.0 token and revocation endpoints.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait TokenEndpoint: Send + Sync {
    /// Exchanges a one-time server auth code (`grant_type=authorization_code`).
    ///
    /// Adapters MUST NOT retry this call: a code is single-use.
    ///
    /// # Errors
    /// [`TokenError::InvalidGrant`] for a used, expired or unknown code; [`TokenError::InvalidClient`] and
    /// [`TokenError::Rejected`] for configuration problems; [`TokenError::Unavailable`]/[`TokenError::Timeout`]
    /// when Google is unreachable; [`TokenError::Protocol`] for an unparseable answer.
    async fn exchange_code(
        &self,
        code: &crate::secret::AuthCode,
    ) -> Result<TokenResponse, TokenError>;

    /// Gets a new access token with a refresh token (`grant_type=refresh_token`). One attempt; the use case retries.
    ///
    /// # Errors
    /// As [`TokenEndpoint::exchange_code`]; `InvalidGrant` means the grant was revoked.
    async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenResponse, TokenError>;

    /// Revokes a token (a refresh token revokes the whole grant).
    ///
    /// # Errors
    /// [`RevokeError::AlreadyRevoked`] when Google answers `invalid_token`; [`RevokeError::Unavailable`] when
    /// unreachable; [`RevokeError::Protocol`] otherwise.
    async fn revoke(&self, token: &RefreshToken) -> Result<(), RevokeError>;
}

// ---------------------------------------------------------------------------------------------------------------
// ID-token verification
// ---------------------------------------------------------------------------------------------------------------

/// The claims of an ID token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdToken {
    /// `sub`.
    pub subject: Subject,
    /// Profile claims.
    pub profile: Profile,
    /// `iss` as sent.
    pub issuer: String,
    /// `aud` (our server client ID).
    pub audience: String,
    /// `azp`, when present.
    pub authorized_party: Option<String>,
    /// `iat`.
    pub issued_at: OffsetDateTime,
    /// `exp`.
    pub expires_at: OffsetDateTime,
}

/// Why an ID token was refused. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a JWS compact serialization, bad base64, or a header/payload that is not the expected JSON.
    #[error("malformed ID token: {0}")]
    Malformed(&'static str),
    /// `alg` is not RS256 (includes `none` and HS256).
    #[error("ID token algorithm is not RS256")]
    UnsupportedAlgorithm,
    /// No `kid`, or a `kid` not in Google's keys even after a refetch.
    #[error("ID token signed with an unknown key")]
    UnknownKey,
    /// The RS256 signature does not verify.
    #[error("ID token signature is invalid")]
    BadSignature,
    /// `iss` is not Google.
    #[error("ID token issuer is not Google")]
    WrongIssuer,
    /// `aud` is not (only) our server client ID.
    #[error("ID token audience is not this server's client")]
    WrongAudience,
    /// `azp` is not one of the configured Android client IDs.
    #[error("ID token authorized party is not allowed")]
    DisallowedAuthorizedParty,
    /// `exp` is in the past beyond the leeway.
    #[error("ID token has expired")]
    Expired,
    /// `iat` is in the future beyond the leeway.
    #[error("ID token was issued in the future")]
    IssuedInFuture,
    /// `exp - iat` is longer than Google ever issues (24 h).
    #[error("ID token lifetime is too long")]
    LifetimeTooLong,
    /// A required claim is missing, empty, of the wrong type or out of range.
    #[error("ID token claim `{0}` is missing or invalid")]
    BadClaim(&'static str),
    /// `hd` is not the configured hosted domain.
    #[error("ID token hosted domain is not allowed")]
    WrongHostedDomain,
    /// Google's keys could not be fetched and no cached keys are within their grace period.
    #[error("Google's signing keys are unavailable")]
    KeysUnavailable,
}

impl VerifyError {
    /// A short stable code for logs and metrics (`bad_signature`, `expired`, ...).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::DisallowedAuthorizedParty => "disallowed_azp",
            Self::Expired => "expired",
            Self::IssuedInFuture => "issued_in_future",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::BadClaim(_) => "bad_claim",
            Self::WrongHostedDomain => "wrong_hd",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// Verifies Google ID tokens completely: signature, `iss`, `aud`, `exp`/`iat` with bounded leeway, `sub`,
/// and `azp`/`hd` when configured.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait IdTokenVerifier: Send + Sync {
    /// Verifies `token` at time `now`.
    ///
    /// Implementations MUST accept only RS256 with a key from Google's published set, MUST require `aud` to be the
    /// server client ID, and MUST NOT fetch keys from URLs named in the token (`jku`, `x5u`, `jwk`).
    ///
    /// # Errors
    /// A [`VerifyError`] naming the first rule that failed.
    async fn verify(
        &self,
        token: &IdToken,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdToken, VerifyError>;

    /// Verifies an ID token this server received directly from Google's token endpoint (a code exchange or a
    /// refresh), at time `now`, with the checks OpenID Connect Core §3.1.3.7 requires there: `iss`, `aud`, `azp`
    /// when configured, `exp` with leeway, `sub`, lifetime. The signature is checked when its key is one Google
    /// publishes; when the key is not (yet) known or the keys cannot be fetched, the TLS connection to the token
    /// endpoint vouches for the issuer instead (§3.1.3.7 step 6), and `iat` in the future is tolerated (step 10
    /// makes it optional), so clock skew, a key rotation in progress or a JWKS outage never throws away a grant
    /// Google just gave.
    ///
    /// # Errors
    /// A [`VerifyError`] naming the first rule that failed.
    async fn verify_exchanged(
        &self,
        token: &IdToken,
        now: OffsetDateTime,
    ) -> Result<VerifiedIdToken, VerifyError>;

    /// Whether signing keys are loaded (for readiness).
    fn keys_loaded(&self) -> bool;
}

// ---------------------------------------------------------------------------------------------------------------
// Credential store
// ---------------------------------------------------------------------------------------------------------------

/// Errors of a credential store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The stored version is not the one the write expected (optimistic concurrency). Re-read and retry.
    #[error("the credential was changed concurrently (version conflict)")]
    Conflict,
    /// The store cannot be reached (database down, disk unavailable).
    #[error("the credential store is unavailable: {0}")]
    Unavailable(String),
    /// A stored record cannot be read: corrupt, or encrypted under a key that is not configured.
    /// Never silently dropped or overwritten.
    #[error("stored credential for {subject} cannot be read: {reason}")]
    Corrupt {
        /// Whose record.
        subject: String,
        /// What is wrong (never secret material).
        reason: String,
    },
    /// Anything else (disk full, permission denied, ...).
    #[error("credential store error: {0}")]
    Other(String),
}

/// One page of stored records, in the store's own order (see [`CredentialStore::list`]).
#[derive(Debug, Clone, Default)]
pub struct CredentialPage {
    /// The records on this page (a pending revocation has [`crate::ConsentState::Forgotten`]).
    pub items: Vec<Credential>,
    /// The opaque cursor to pass for the next page, if there is one.
    pub next_cursor: Option<String>,
    /// Records on this page that could not be read (corrupt, or sealed under a key that is not configured): what is
    /// wrong with each, never secret material. They are skipped, not dropped: the listing goes on past them.
    pub unreadable: Vec<String>,
}

/// Where credentials are kept. Implementations MUST encrypt every token at rest, bound to the subject.
///
/// A subject has at most one record: a [`Credential`], or a pending revocation — a credential with
/// [`crate::ConsentState::Forgotten`] that keeps only the refresh token of a user who asked to be forgotten while
/// Google could not confirm the revocation. Use cases never read these raw: they go through the domain's update
/// primitive, which tells the two apart.
///
/// # Contract
/// - `put` MUST write only if the stored version equals `credential.version` (0 = no record), then store and
///   return the credential with a new version; otherwise [`StoreError::Conflict`]. A write MUST be atomic: after a
///   crash the old or the new record is there, never neither and never a torn one.
/// - Versions MUST never repeat for a subject: every version a write returns is greater than every version that
///   subject's record ever had, **also across deletes** (a tombstone, a sequence, ...). So a writer that read a
///   record before it was deleted can never overwrite the record of a later sign-in.
/// - `put` MUST NOT replace a stored refresh token with none (defence in depth for the domain's merge rule).
/// - `delete` is conditional like `put`: it removes the record only if its version is the one given.
/// - `pending_revocations` MUST NOT read every record: it is an index (a partial index, a marker per record).
/// - `list` and `pending_revocations` MUST NOT stop at an unreadable record: they report it and go on.
/// - `put_with`/`delete_with` write their events (see [`crate::events::EventStore`], implemented by the same
///   adapter) atomically with the change; a conflicting write records no event.
/// - Every write that stores a refresh token keeps its [`crate::risc::index_keys`] (digests only, never the token
///   or its prefix in clear) for `find_by_refresh_token`; a write that removes the token drops them.
/// - `disabled` and `refresh_failing_since` are stored and read back like every other field.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Reads a subject's record (a credential, or a pending revocation).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`], [`StoreError::Other`].
    async fn get(&self, subject: &Subject) -> Result<Option<Credential>, StoreError>;

    /// Writes a record with optimistic concurrency (see the trait's contract) and returns the stored copy.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the version moved; the others as for `get`.
    async fn put(&self, credential: &Credential) -> Result<Credential, StoreError> {
        self.put_with(credential, &[]).await
    }

    /// `put`, recording `events` in the outbox **in the same atomic write**: after a crash either the new record
    /// and its events are there, or neither. On a conflict nothing is written.
    ///
    /// # Errors
    /// As `put`.
    async fn put_with(
        &self,
        credential: &Credential,
        events: &[EventRecord],
    ) -> Result<Credential, StoreError>;

    /// Deletes a subject's record if its version is `version`. A later first write for the subject gets a version
    /// greater than `version`.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when there is no record or its version moved; the others as for `get`.
    async fn delete(&self, subject: &Subject, version: u64) -> Result<(), StoreError> {
        self.delete_with(subject, version, &[]).await
    }

    /// `delete`, recording `events` in the same atomic step (as `put_with`).
    ///
    /// # Errors
    /// As `delete`.
    async fn delete_with(
        &self,
        subject: &Subject,
        version: u64,
        events: &[EventRecord],
    ) -> Result<(), StoreError>;

    /// The version of a subject's record without opening it, so that an operator can delete a record that cannot
    /// be read (sealed under a lost key) at its version. The default reads the record; adapters that can read the
    /// version of an unreadable record override it.
    ///
    /// # Errors
    /// As for `get`.
    async fn stored_version(&self, subject: &Subject) -> Result<Option<u64>, StoreError> {
        Ok(self.get(subject).await?.map(|c| c.version))
    }

    /// The subjects whose stored refresh token has `index_key` among its [`crate::risc::index_keys`] (kept with
    /// each write that stores a refresh token; a lookup, not a scan). May return a subject whose token no longer
    /// matches (the caller checks); MUST return every one that does.
    ///
    /// # Errors
    /// As for `get`.
    async fn find_by_refresh_token(&self, index_key: &str) -> Result<Vec<Subject>, StoreError>;

    /// Lists records (credentials and pending revocations) in the store's own stable order, starting after
    /// `cursor` (a [`CredentialPage::next_cursor`]), at most `limit`.
    ///
    /// # Errors
    /// As for `get`, and [`StoreError::Other`] for a cursor this store did not make. An unreadable record is not
    /// an error (see [`CredentialPage::unreadable`]).
    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError>;

    /// Lists only the pending revocations (records with [`crate::ConsentState::Forgotten`]), like `list`, without
    /// reading the other records.
    ///
    /// # Errors
    /// As for `list`.
    async fn pending_revocations(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<CredentialPage, StoreError>;

    /// Takes the user's refresh lock: exclusive across every process sharing this store (a row lock in a
    /// transaction, a file lock, ...). Released when the returned guard is released or dropped, and by the
    /// store itself if the holder dies.
    ///
    /// # Errors
    /// As for `get`.
    async fn lock_user(&self, subject: &Subject) -> Result<Box<dyn UserLock>, StoreError>;

    /// Checks that the store can serve reads and writes now (for readiness, and before a sign-in spends a code):
    /// reachable, its schema at the version this build expects, writable.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it cannot, naming why.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A held refresh lock on one user (see [`CredentialStore::lock_user`]).
#[async_trait]
pub trait UserLock: Send {
    /// Reads the credential under the lock (it may have changed while we waited).
    ///
    /// # Errors
    /// As [`CredentialStore::get`].
    async fn get(&mut self) -> Result<Option<Credential>, StoreError>;

    /// Writes under the lock, with the same version rule as [`CredentialStore::put`].
    ///
    /// # Errors
    /// As [`CredentialStore::put`].
    async fn put(&mut self, credential: &Credential) -> Result<Credential, StoreError>;

    /// Releases the lock. Writes made under it were already durable when their `put` returned (so a refresh
    /// token Google rotated survives a crash between `put` and `release`); releasing only frees the lock.
    ///
    /// # Errors
    /// As [`CredentialStore::put`]; the lock is freed by the store even then (at the latest when the holder's
    /// connection or file handle goes away).
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
}

// ---------------------------------------------------------------------------------------------------------------
// Drive
// ---------------------------------------------------------------------------------------------------------------

/// A Drive v3 operation on the user's `appDataFolder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveRequest {
    /// `files.get('appDataFolder')`.
    GetAppFolder,
    /// `files.list(spaces=appDataFolder)`.
    ListFiles {
        /// Page token from a previous answer.
        page_token: Option<String>,
    },
    /// `files.create` (multipart) into `appDataFolder`.
    CreateFile {
        /// File name.
        name: String,
        /// Content type of `content`.
        content_type: String,
        /// The content.
        content: Bytes,
    },
    /// `files.get(id)` metadata.
    GetFile {
        /// File id.
        id: String,
    },
    /// `files.get(id, alt=media)`.
    Download {
        /// File id.
        id: String,
    },
    /// `files.update(id)` with new content.
    UpdateContent {
        /// File id.
        id: String,
        /// Content type of `content`.
        content_type: String,
        /// The new content.
        content: Bytes,
    },
    /// `files.delete(id)`.
    Delete {
        /// File id.
        id: String,
    },
}

impl DriveRequest {
    /// Whether repeating the request after a failure cannot duplicate anything (everything but create).
    #[must_use]
    pub fn is_idempotent(&self) -> bool {
        !matches!(self, Self::CreateFile { .. })
    }

    /// A short name for logs and metrics.
    #[must_use]
    pub fn operation(&self) -> &'static str {
        match self {
            Self::GetAppFolder => "get_appfolder",
            Self::ListFiles { .. } => "list",
            Self::CreateFile { .. } => "create",
            Self::GetFile { .. } => "get",
            Self::Download { .. } => "download",
            Self::UpdateContent { .. } => "update_content",
            Self::Delete { .. } => "delete",
        }
    }
}

/// What a Drive operation answered.
#[derive(Debug, PartialEq)]
pub enum DriveResponse {
    /// Drive's JSON (file metadata or file list), passed through.
    Json(serde_json::Value),
    /// File content.
    Content {
        /// Its content type.
        content_type: String,
        /// The bytes, held or still arriving.
        content: FileContent,
    },
    /// Nothing (delete).
    Empty,
}

/// Bytes of file content still arriving from Drive; an error ends them early (the file is then incomplete).
pub type ContentStream = Pin<Box<dyn Stream<Item = Result<Bytes, DriveError>> + Send>>;

/// A file's content: already in memory, or streamed from Drive as it arrives so that a large download never
/// sits whole in memory.
pub struct FileContent {
    length: Option<u64>,
    body: ContentBody,
}

enum ContentBody {
    Full(Bytes),
    Streaming(ContentStream),
}

impl FileContent {
    /// Content held in memory.
    #[must_use]
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            length: Some(bytes.len() as u64),
            body: ContentBody::Full(bytes),
        }
    }

    /// Content arriving as `stream`, of `length` bytes when Drive said so.
    #[must_use]
    pub fn streaming(
        length: Option<u64>,
        stream: impl Stream<Item = Result<Bytes, DriveError>> + Send + 'static,
    ) -> Self {
        Self {
            length,
            body: ContentBody::Streaming(Box::pin(stream)),
        }
    }

    /// The length in bytes, when known before reading.
    #[must_use]
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// Whether the content is still arriving (not yet in memory).
    #[must_use]
    pub fn is_streaming(&self) -> bool {
        matches!(self.body, ContentBody::Streaming(_))
    }

    /// The bytes as a stream (one item for content in memory).
    #[must_use]
    pub fn into_stream(self) -> ContentStream {
        match self.body {
            ContentBody::Full(bytes) => Box::pin(futures::stream::once(async move { Ok(bytes) })),
            ContentBody::Streaming(stream) => stream,
        }
    }

    /// Reads all of the content into memory, refusing more than `limit` bytes.
    ///
    /// # Errors
    /// The stream's own error, or [`DriveError::Protocol`] past `limit`.
    pub async fn collect(self, limit: usize) -> Result<Bytes, DriveError> {
        let too_large = || DriveError::Protocol("content larger than allowed".into());
        if self.length.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let mut stream = match self.body {
            ContentBody::Full(bytes) => return Ok(bytes),
            ContentBody::Streaming(stream) => stream,
        };
        let mut all = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if all.len() + chunk.len() > limit {
                return Err(too_large());
            }
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }
}

impl fmt::Debug for FileContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileContent")
            .field("length", &self.length)
            .field("streaming", &self.is_streaming())
            .finish()
    }
}

/// Content in memory is equal to content in memory with the same bytes. Content still streaming is equal to
/// nothing, not even itself (its bytes are not known without reading them), as `NaN` is to no float.
impl PartialEq for FileContent {
    fn eq(&self, other: &Self) -> bool {
        match (&self.body, &other.body) {
            (ContentBody::Full(a), ContentBody::Full(b)) => a == b,
            _ => false,
        }
    }
}

/// Errors of Drive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriveError {
    /// 401: the access token is missing, expired or revoked.
    #[error("Drive refused the access token")]
    Unauthorized,
    /// 403 `insufficientPermissions`: `drive.appdata` was not granted.
    #[error("Drive access was not granted")]
    InsufficientScope,
    /// 404: no such file for this user.
    #[error("file not found")]
    NotFound,
    /// 403 `userRateLimitExceeded`/`rateLimitExceeded` or 429.
    #[error("Drive rate limit exceeded")]
    RateLimited {
        /// From `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// 400: Drive refused the request as malformed.
    #[error("Drive refused the request: {0}")]
    BadRequest(String),
    /// Other 403s (e.g. `notSupportedForAppDataFolderFiles`).
    #[error("Drive forbade the operation: {0}")]
    Forbidden(String),
    /// 5xx, timeouts, connection failures.
    #[error("Drive is unavailable")]
    Unavailable,
    /// An answer we could not understand.
    #[error("unexpected answer from Drive: {0}")]
    Protocol(String),
}

/// Google Drive v3, restricted to the `appDataFolder` space.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Drive: Send + Sync {
    /// Runs one operation with the given access token. One attempt; the use case handles 401 and backoff.
    ///
    /// # Errors
    /// A [`DriveError`] mapped from Drive's status and error reason.
    async fn execute(
        &self,
        access_token: &AccessToken,
        request: &DriveRequest,
    ) -> Result<DriveResponse, DriveError>;
}

// ---------------------------------------------------------------------------------------------------------------
// Google APIs (the internal API's proxy)
// ---------------------------------------------------------------------------------------------------------------

/// Bytes of a request or response body still arriving; an error ends them early.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, ProxyError>> + Send>>;

/// The body of a request forwarded to a Google API.
pub enum ProxyBody {
    /// No body.
    Empty,
    /// A body held in memory (small enough to keep): the request can be repeated after a refresh.
    Full(Bytes),
    /// A body streamed from the caller as it arrives: the request cannot be repeated.
    Streaming(BodyStream),
}

impl fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Full(b) => write!(f, "Full({} bytes)", b.len()),
            Self::Streaming(_) => f.write_str("Streaming"),
        }
    }
}

/// A request to a Google API on a user's behalf. The host is already allowed and the headers already filtered
/// (no `Authorization`, `Cookie` or hop-by-hop header of the caller).
#[derive(Debug)]
pub struct ProxyRequest {
    /// The HTTP method, upper case (`GET`, `POST`, ...).
    pub method: String,
    /// The Google host (`www.googleapis.com`, `gmail.googleapis.com`, ...), lower case, no port.
    pub host: String,
    /// The path and query, starting with `/`.
    pub path_and_query: String,
    /// Headers to send (name in lower case, value).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: ProxyBody,
}

impl ProxyRequest {
    /// Whether the request can be sent again (no body, or one held in memory).
    #[must_use]
    pub fn is_repeatable(&self) -> bool {
        !matches!(self.body, ProxyBody::Streaming(_))
    }

    /// A copy to send again, when repeatable.
    #[must_use]
    pub fn try_clone(&self) -> Option<ProxyRequest> {
        let body = match &self.body {
            ProxyBody::Empty => ProxyBody::Empty,
            ProxyBody::Full(bytes) => ProxyBody::Full(bytes.clone()),
            ProxyBody::Streaming(_) => return None,
        };
        Some(ProxyRequest {
            method: self.method.clone(),
            host: self.host.clone(),
            path_and_query: self.path_and_query.clone(),
            headers: self.headers.clone(),
            body,
        })
    }
}

/// Google's answer to a forwarded request: its status, the headers worth passing on, and the body as it arrives.
pub struct ProxyResponse {
    /// The status code.
    pub status: u16,
    /// Headers to pass on (name in lower case, value): content type and length, range, etag, retry-after,
    /// location, and Google's own `x-goog-*` headers; never `set-cookie` or hop-by-hop ones.
    pub headers: Vec<(String, String)>,
    /// The body, streamed.
    pub body: BodyStream,
}

impl fmt::Debug for ProxyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Why a request could not be forwarded (Google's own error answers are [`ProxyResponse`]s, passed through).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Google could not be reached, or the connection broke.
    #[error("the Google API is unavailable")]
    Unavailable,
    /// Google did not answer in time.
    #[error("the Google API timed out")]
    Timeout,
    /// The request could not be built or sent (a bad header value, a body that failed).
    #[error("the request could not be forwarded: {0}")]
    BadRequest(String),
}

/// Any Google API over HTTPS, for the internal API's proxy.
#[async_trait]
pub trait GoogleApi: Send + Sync {
    /// Sends `request` to Google with `access_token` as its Bearer; one attempt (the use case handles a 401).
    ///
    /// Adapters MUST send only to `request.host` (mapped to the configured base URL in tests), MUST add the
    /// Bearer themselves, and MUST stream both bodies.
    ///
    /// # Errors
    /// [`ProxyError`] when no answer came; any HTTP answer of Google's (4xx, 5xx too) is a [`ProxyResponse`].
    async fn forward(
        &self,
        access_token: &AccessToken,
        request: ProxyRequest,
    ) -> Result<ProxyResponse, ProxyError>;
}

// ---------------------------------------------------------------------------------------------------------------
// Clock
// ---------------------------------------------------------------------------------------------------------------

/// The current time, injected so expiry and leeway are testable without sleeping.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: Vec<Result<&'static [u8], DriveError>>,
    ) -> impl Stream<Item = Result<Bytes, DriveError>> {
        futures::stream::iter(parts.into_iter().map(|r| r.map(Bytes::from_static)))
    }

    #[tokio::test]
    async fn content_in_memory_is_one_chunk_of_known_length() {
        let content = FileContent::full(&b"hello"[..]);
        assert_eq!(content.length(), Some(5));
        assert!(!content.is_streaming());
        let all: Vec<_> = content.into_stream().collect().await;
        assert_eq!(all, vec![Ok(Bytes::from_static(b"hello"))]);
    }

    #[tokio::test]
    async fn streamed_content_is_collected_in_order_within_the_limit() {
        let content = FileContent::streaming(None, chunks(vec![Ok(b"ab"), Ok(b""), Ok(b"cde")]));
        assert!(content.is_streaming());
        assert_eq!(content.collect(5).await, Ok(Bytes::from_static(b"abcde")));
    }

    #[tokio::test]
    async fn collecting_past_the_limit_or_a_failed_chunk_is_an_error() {
        let over = FileContent::streaming(None, chunks(vec![Ok(b"abc"), Ok(b"def")]));
        assert!(matches!(
            over.collect(5).await,
            Err(DriveError::Protocol(_))
        ));
        let announced = FileContent::streaming(Some(6), chunks(vec![]));
        assert!(matches!(
            announced.collect(5).await,
            Err(DriveError::Protocol(_))
        ));
        let held = FileContent::full(&b"abcdef"[..]);
        assert!(matches!(
            held.collect(5).await,
            Err(DriveError::Protocol(_))
        ));
        let broken =
            FileContent::streaming(None, chunks(vec![Ok(b"a"), Err(DriveError::Unavailable)]));
        assert_eq!(broken.collect(5).await, Err(DriveError::Unavailable));
    }

    #[test]
    fn only_content_in_memory_compares_equal_and_debug_shows_no_bytes() {
        assert_eq!(FileContent::full(&b"x"[..]), FileContent::full(&b"x"[..]));
        assert_ne!(FileContent::full(&b"x"[..]), FileContent::full(&b"y"[..]));
        let streaming = FileContent::streaming(Some(1), chunks(vec![Ok(b"x")]));
        assert_ne!(streaming, FileContent::full(&b"x"[..]));
        let debug = format!("{:?}", FileContent::full(&b"secret-bytes"[..]));
        assert!(!debug.contains("secret"), "{debug}");
    }
}
