//! The row form of one credential: non-secret fields in columns, every token sealed with the key ring.
//!
//! The purposes (AAD labels) and the sealed format are the file store's, so a credential sealed by one store
//! opens in the other with the same keys.

use offline_access_crypto::{CryptoError, KeyRing};
use offline_access_domain::risc::{TokenIdentifier, TokenIdentifierAlg, index_keys};
use offline_access_domain::{
    AccessToken, AccountDisabled, CachedAccess, ConsentState, Credential, Profile, RefreshToken,
    Scopes, StoreError, Subject,
};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::Json;
use zeroize::Zeroizing;

/// AAD purpose label of the refresh token (the file store's).
pub(crate) const PURPOSE_REFRESH: &str = "refresh_token";
/// AAD purpose label of the cached access token (the file store's).
pub(crate) const PURPOSE_ACCESS: &str = "access_token";

/// The columns every query returns, in the order [`decode`] reads them.
pub(crate) const COLUMNS: &str = "subject, profile, scopes, consent, refresh_token, access_token, \
                                  access_expires_at, key_id, version, created_at, updated_at, access_scopes, \
                                  disabled_since, disabled_reason, refresh_failing_since";

/// A credential's tokens, sealed with the newest key, and the refresh token's index keys.
pub(crate) struct Sealed {
    pub(crate) refresh_token: Option<String>,
    pub(crate) access_token: Option<String>,
    pub(crate) access_expires_at: Option<OffsetDateTime>,
    pub(crate) key_id: String,
    pub(crate) index: IndexKeys,
}

/// The index keys of a refresh token as stored (`rt_prefix_key`, `rt_hash_key`): digests only.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct IndexKeys {
    /// The key of its 16-character prefix (none for a shorter token).
    pub(crate) prefix: Option<String>,
    /// The key of its double SHA-512.
    pub(crate) hash: Option<String>,
}

/// How many leading characters RISC's `prefix` identifier names.
const RISC_PREFIX_CHARS: usize = 16;

impl IndexKeys {
    /// The keys of `token` ([`index_keys`]), each in its column: the prefix key is the one a `prefix` identifier of
    /// the token has, the other is the hash key.
    pub(crate) fn of(token: &RefreshToken) -> IndexKeys {
        let head: Zeroizing<String> = Zeroizing::new(
            token
                .expose_secret()
                .chars()
                .take(RISC_PREFIX_CHARS)
                .collect(),
        );
        let prefix = TokenIdentifier::new(TokenIdentifierAlg::Prefix, &head)
            .ok()
            .map(|id| id.index_key());
        let hash = index_keys(token)
            .into_iter()
            .find(|key| Some(key) != prefix.as_ref());
        IndexKeys { prefix, hash }
    }
}

impl Sealed {
    /// Seals `credential`'s tokens with the newest key, bound to its subject and to their column.
    pub(crate) fn seal(credential: &Credential, keys: &KeyRing) -> Result<Sealed, StoreError> {
        let subject = credential.subject.as_str();
        let failed = |e: CryptoError| StoreError::Other(format!("sealing a token failed: {e}"));
        let refresh_token = credential
            .refresh_token
            .as_ref()
            .map(|t| keys.seal(subject, PURPOSE_REFRESH, t.expose_secret().as_bytes()))
            .transpose()
            .map_err(failed)?;
        let access_token = credential
            .access
            .as_ref()
            .map(|a| keys.seal(subject, PURPOSE_ACCESS, a.token.expose_secret().as_bytes()))
            .transpose()
            .map_err(failed)?;
        Ok(Sealed {
            refresh_token,
            access_token,
            access_expires_at: credential.access.as_ref().map(|a| a.expires_at),
            key_id: keys.newest_id().to_owned(),
            index: credential
                .refresh_token
                .as_ref()
                .map(IndexKeys::of)
                .unwrap_or_default(),
        })
    }
}

/// The version as stored (`bigint`).
pub(crate) fn version_param(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version)
        .map_err(|_| StoreError::Other(format!("credential version {version} is out of range")))
}

/// Reads one row (selected with [`COLUMNS`]) into a credential, opening its tokens. Anything unreadable, including a
/// token sealed under a key that is not configured, is [`StoreError::Corrupt`], logged loudly.
pub(crate) fn decode(row: &Row, keys: &KeyRing) -> Result<Credential, StoreError> {
    let subject_text: String = row.try_get(0).map_err(|e| StoreError::Corrupt {
        subject: "(unreadable subject)".to_owned(),
        reason: format!("subject column: {e}"),
    })?;
    decode_fields(row, keys, &subject_text).map_err(|reason| {
        tracing::error!(subject = %subject_text, %reason, "stored credential cannot be read");
        StoreError::Corrupt {
            subject: subject_text.clone(),
            reason,
        }
    })
}

fn decode_fields(row: &Row, keys: &KeyRing, subject_text: &str) -> Result<Credential, String> {
    let subject = Subject::parse(subject_text).map_err(|_| "invalid subject".to_owned())?;
    let Json(profile): Json<Profile> = row.try_get(1).map_err(|e| format!("profile: {e}"))?;
    let Json(scopes): Json<Scopes> = row.try_get(2).map_err(|e| format!("scopes: {e}"))?;
    let consent_text: &str = row.try_get(3).map_err(|e| format!("consent: {e}"))?;
    let consent = ConsentState::parse(consent_text)
        .ok_or_else(|| format!("unknown consent state `{consent_text}`"))?;
    let refresh_sealed: Option<&str> = row.try_get(4).map_err(|e| format!("refresh_token: {e}"))?;
    let access_sealed: Option<&str> = row.try_get(5).map_err(|e| format!("access_token: {e}"))?;
    let expires_at: Option<OffsetDateTime> = row
        .try_get(6)
        .map_err(|e| format!("access_expires_at: {e}"))?;
    let version: i64 = row.try_get(8).map_err(|e| format!("version: {e}"))?;
    let created_at: OffsetDateTime = row.try_get(9).map_err(|e| format!("created_at: {e}"))?;
    let updated_at: OffsetDateTime = row.try_get(10).map_err(|e| format!("updated_at: {e}"))?;
    let access_scopes: Option<Json<Scopes>> =
        row.try_get(11).map_err(|e| format!("access_scopes: {e}"))?;
    let disabled_since: Option<OffsetDateTime> = row
        .try_get(12)
        .map_err(|e| format!("disabled_since: {e}"))?;
    let disabled_reason: Option<String> = row
        .try_get(13)
        .map_err(|e| format!("disabled_reason: {e}"))?;
    let refresh_failing_since: Option<OffsetDateTime> = row
        .try_get(14)
        .map_err(|e| format!("refresh_failing_since: {e}"))?;

    let refresh_token = refresh_sealed
        .map(|sealed| open_refresh_token(keys, subject_text, sealed))
        .transpose()?;
    let access = match (access_sealed, expires_at) {
        (Some(sealed), Some(expires_at)) => {
            let plain = open_text(keys, subject_text, PURPOSE_ACCESS, sealed)?;
            let token =
                AccessToken::parse(as_text(&plain)).map_err(|e| format!("access token: {e}"))?;
            // Rows written before migration 0002 have none: the token then carries the grant's scopes.
            let scopes = access_scopes.map_or_else(|| scopes.clone(), |Json(s)| s);
            Some(CachedAccess {
                token,
                expires_at,
                scopes,
            })
        }
        (None, None) => None,
        _ => return Err("access token without expiry (or expiry without token)".to_owned()),
    };
    Ok(Credential {
        subject,
        profile,
        scopes,
        refresh_token,
        access,
        consent,
        // Rows written before migration 0003 have neither (NULL).
        disabled: disabled_since.map(|since| AccountDisabled {
            reason: disabled_reason,
            since,
        }),
        refresh_failing_since,
        version: u64::try_from(version).map_err(|_| format!("negative version {version}"))?,
        created_at,
        updated_at,
    })
}

/// Opens a sealed refresh token of `subject`'s row.
pub(crate) fn open_refresh_token(
    keys: &KeyRing,
    subject: &str,
    sealed: &str,
) -> Result<RefreshToken, String> {
    let plain = open_text(keys, subject, PURPOSE_REFRESH, sealed)?;
    RefreshToken::parse(as_text(&plain)).map_err(|e| format!("refresh token: {e}"))
}

/// Opens one sealed token and checks it is text. The plaintext is zeroized on drop; the caller parses it straight
/// into a secret newtype.
fn open_text(
    keys: &KeyRing,
    subject: &str,
    purpose: &str,
    sealed: &str,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let plain = keys
        .open(subject, purpose, sealed)
        .map_err(|e| format!("{purpose}: {e}"))?;
    if std::str::from_utf8(&plain).is_err() {
        return Err(format!("{purpose}: not UTF-8"));
    }
    Ok(plain)
}

fn as_text(plain: &[u8]) -> &str {
    // Checked by `open_text`.
    std::str::from_utf8(plain).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_keys_go_to_their_columns_and_are_the_domains() {
        let token = RefreshToken::parse("1//0gAbCdEfGhIjKlMnOpQrSt").unwrap();
        let keys = IndexKeys::of(&token);
        let prefix = TokenIdentifier::new(TokenIdentifierAlg::Prefix, "1//0gAbCdEfGhIjK")
            .unwrap()
            .index_key();
        assert_eq!(keys.prefix.as_deref(), Some(prefix.as_str()));
        let hash = keys.hash.clone().unwrap();
        assert_ne!(hash, prefix);
        assert_eq!(index_keys(&token), vec![prefix, hash.clone()]);
        // Digests only: 64 hex digits, nothing of the token.
        assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn a_token_shorter_than_the_prefix_has_only_a_hash_key() {
        let token = RefreshToken::parse("1//short").unwrap();
        let keys = IndexKeys::of(&token);
        assert_eq!(keys.prefix, None);
        assert_eq!(keys.hash.map(|h| vec![h]), Some(index_keys(&token)));
    }
}
