//! API keys of the internal API: configured as SHA-256 digests only, checked in constant time.

use std::fmt;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use subtle::ConstantTimeEq;

/// The prefix of every key this server makes (so a leaked key is recognisable in a secret scanner).
pub const KEY_PREFIX: &str = "oak_";

/// Why an `internal.api_keys` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// Not `NAME:sha256:HEX`.
    #[error(
        "internal.api_keys entry {0} is not NAME:sha256:HEX (64 hex digits); make one with `offline-access api-key new NAME`"
    )]
    Malformed(usize),
    /// The name is empty, too long, or holds characters other than letters, digits, `-`, `_` and `.`.
    #[error(
        "internal.api_keys entry {0} has a name that is not 1-64 letters, digits, '-', '_' or '.'"
    )]
    BadName(usize),
    /// Two entries share a name.
    #[error(
        "internal.api_keys names `{0}` twice; names must be unique (they appear in logs and metrics)"
    )]
    DuplicateName(String),
    /// The random number generator failed.
    #[error("the random number generator failed")]
    Random,
}

/// The configured keys: names and SHA-256 digests, never the keys themselves.
#[derive(Clone, Default)]
pub struct ApiKeys {
    entries: Vec<(String, [u8; 32])>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(name, _)| name))
            .finish()
    }
}

/// Whether `name` is an acceptable key name.
#[must_use]
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ApiKeys {
    /// Parses `NAME:sha256:HEX` entries.
    ///
    /// # Errors
    /// [`ApiKeyError`] naming the first bad entry (by position, never its digest).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<ApiKeys, ApiKeyError> {
        let mut parsed: Vec<(String, [u8; 32])> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let position = i + 1;
            let mut parts = entry.as_ref().trim().splitn(3, ':');
            let (Some(name), Some("sha256"), Some(hex_digest)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(ApiKeyError::Malformed(position));
            };
            if !is_valid_name(name) {
                return Err(ApiKeyError::BadName(position));
            }
            let mut digest_bytes = [0u8; 32];
            if hex_digest.len() != 64
                || hex::decode_to_slice(hex_digest.to_ascii_lowercase(), &mut digest_bytes).is_err()
            {
                return Err(ApiKeyError::Malformed(position));
            }
            if parsed.iter().any(|(n, _)| n == name) {
                return Err(ApiKeyError::DuplicateName(name.to_owned()));
            }
            parsed.push((name.to_owned(), digest_bytes));
        }
        Ok(ApiKeys { entries: parsed })
    }

    /// Whether no key is configured (then no request is ever let in).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The configured names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    /// The name of the key `presented`, if it is one. The digest of what was presented is compared with every
    /// configured digest in constant time, with no early exit, so neither a missing, an unknown nor a malformed
    /// key answers any faster than another.
    #[must_use]
    pub fn check(&self, presented: &[u8]) -> Option<&str> {
        let presented = digest(&SHA256, presented);
        let mut found: Option<&str> = None;
        for (name, expected) in &self.entries {
            let equal: bool = presented.as_ref().ct_eq(expected.as_slice()).into();
            if equal {
                found = Some(name);
            }
        }
        found
    }
}

/// A new key for `name`: 32 random bytes, base64url, behind [`KEY_PREFIX`]; and its config entry
/// `NAME:sha256:HEX`.
///
/// # Errors
/// [`ApiKeyError::BadName`] for a bad name; [`ApiKeyError::Random`] if the system RNG fails.
pub fn new_api_key(name: &str) -> Result<(String, String), ApiKeyError> {
    if !is_valid_name(name) {
        return Err(ApiKeyError::BadName(1));
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiKeyError::Random)?;
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let entry = format!(
        "{name}:sha256:{}",
        hex::encode(digest(&SHA256, key.as_bytes()))
    );
    Ok((key, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_new_key_checks_against_its_own_entry_only() {
        let (key_a, entry_a) = new_api_key("billing").unwrap();
        let (key_b, entry_b) = new_api_key("reports").unwrap();
        assert!(key_a.starts_with(KEY_PREFIX) && key_a.len() == KEY_PREFIX.len() + 43);
        assert_ne!(key_a, key_b);
        let keys = ApiKeys::parse(&[entry_a.clone(), entry_b]).unwrap();
        assert_eq!(keys.check(key_a.as_bytes()), Some("billing"));
        assert_eq!(keys.check(key_b.as_bytes()), Some("reports"));
        assert_eq!(keys.check(b""), None);
        assert_eq!(keys.check(entry_a.as_bytes()), None, "the digest is no key");
        let debug = format!("{keys:?}");
        assert!(debug.contains("billing") && !debug.contains(&entry_a[16..]));
    }

    #[test]
    fn malformed_entries_are_refused_with_their_position() {
        let digest = "a".repeat(64);
        for (entries, error) in [
            (vec!["nodigest".to_owned()], ApiKeyError::Malformed(1)),
            (vec![format!("n:md5:{digest}")], ApiKeyError::Malformed(1)),
            (
                vec![format!("n:sha256:{}", "z".repeat(64))],
                ApiKeyError::Malformed(1),
            ),
            (
                vec![format!("n:sha256:{}", "a".repeat(63))],
                ApiKeyError::Malformed(1),
            ),
            (
                vec![
                    format!("ok:sha256:{digest}"),
                    format!("bad name:sha256:{digest}"),
                ],
                ApiKeyError::BadName(2),
            ),
            (
                vec![format!("x:sha256:{digest}"), format!("x:sha256:{digest}")],
                ApiKeyError::DuplicateName("x".into()),
            ),
        ] {
            assert_eq!(ApiKeys::parse(&entries).unwrap_err(), error, "{entries:?}");
        }
        assert!(ApiKeys::parse(&[format!("Svc-1.a_b:sha256:{}", "AB".repeat(32))]).is_ok());
    }

    proptest! {
        /// No byte string but the key itself is let in.
        #[test]
        fn only_the_key_itself_checks(presented in proptest::collection::vec(any::<u8>(), 0..80)) {
            let (key, entry) = new_api_key("svc").unwrap();
            let keys = ApiKeys::parse(&[entry]).unwrap();
            prop_assert_eq!(keys.check(&presented).is_some(), presented == key.as_bytes());
        }
    }
}
