//! Encryption at rest (AES-256-GCM, subject-bound) for offline-access credentials.
//!
//! A [`KeyRing`] holds the configured keys, newest first. [`KeyRing::seal`] encrypts with the newest key under a
//! fresh random 96-bit nonce and returns `v1.<kid>.<base64url(nonce || ciphertext || tag)>`; [`KeyRing::open`]
//! picks the key by the `kid` in the sealed string, so records sealed under an older key keep opening until they
//! are re-encrypted ([`KeyRing::key_id_of`] tells which key sealed a value).
//!
//! The additional authenticated data binds every ciphertext to the user's subject and to a purpose label
//! (`"refresh_token"`, `"access_token"`, ...): a ciphertext copied to another user or another field fails to open
//! with [`CryptoError::Tampered`].
//!
//! Key material is never printed: `Debug` of a [`KeyRing`] shows key ids only, and no error carries key bytes or
//! plaintext.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// Length of a key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Length of the authentication tag appended to each ciphertext.
const TAG_LEN: usize = 16;
/// The version prefix of the sealed format.
const FORMAT: &str = "v1";
/// Domain separation for the additional authenticated data.
const AAD_LABEL: &[u8] = b"offline-access/aead/v1";
/// Longest key id.
pub const MAX_KEY_ID_LEN: usize = 32;
/// The id of the key made by [`KeyRing::generate_ephemeral`].
pub const EPHEMERAL_KEY_ID: &str = "ephemeral";

const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a key specification (`security.encryption_keys`) was rejected. Never contains key material; positions
/// are 1-based entries of the comma-separated list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The specification holds no key.
    #[error("no encryption key given (expected `ID:BASE64KEY[,ID:BASE64KEY...]`, newest first)")]
    Empty,
    /// An entry is empty (e.g. `a:...,,b:...`).
    #[error("encryption key entry {position} is empty")]
    EmptyEntry {
        /// 1-based position of the entry.
        position: usize,
    },
    /// An entry has no `:` between id and key.
    #[error("encryption key entry {position} is not of the form `ID:BASE64KEY`")]
    MissingSeparator {
        /// 1-based position of the entry.
        position: usize,
    },
    /// The key id is not 1 to 32 characters of `[A-Za-z0-9_-]`.
    #[error(
        "encryption key entry {position} has an invalid id (1 to 32 characters of A-Z, a-z, 0-9, `_`, `-`)"
    )]
    BadId {
        /// 1-based position of the entry.
        position: usize,
    },
    /// The key is not standard or URL-safe base64.
    #[error("encryption key entry {position} (id `{id}`) is not valid base64")]
    BadBase64 {
        /// 1-based position of the entry.
        position: usize,
        /// The entry's key id.
        id: String,
    },
    /// The key does not decode to 32 bytes.
    #[error("encryption key entry {position} (id `{id}`) decodes to {len} bytes; AES-256 needs 32")]
    BadLength {
        /// 1-based position of the entry.
        position: usize,
        /// The entry's key id.
        id: String,
        /// The decoded length.
        len: usize,
    },
    /// Two entries share an id.
    #[error("encryption key entry {position} repeats the id `{id}`")]
    DuplicateId {
        /// 1-based position of the second entry with this id.
        position: usize,
        /// The repeated id.
        id: String,
    },
    /// The system's random number generator or the AEAD library failed.
    #[error("the cryptographic library failed to set up a key")]
    Crypto,
}

/// Errors of sealing and opening. Never contains plaintext or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The value was sealed under a key id that is not configured (a key was removed before re-encryption).
    #[error("sealed under key id `{0}`, which is not configured")]
    UnknownKey(String),
    /// Not a `v1.<kid>.<base64url>` string, or too short to hold a nonce and a tag.
    #[error("sealed value is malformed")]
    Malformed,
    /// Authentication failed: the bytes were changed, or the value belongs to another subject or purpose.
    #[error("sealed value failed authentication (tampered, or bound to another user or field)")]
    Tampered,
    /// The random number generator or the AEAD library failed.
    #[error("the cryptographic library failed")]
    Internal,
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// The configured encryption keys, newest first. Seals with the newest; opens with whichever key sealed.
pub struct KeyRing {
    keys: Vec<Key>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .field("keys", &"[REDACTED]")
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn make_key(bytes: &[u8]) -> Result<LessSafeKey, KeyError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| KeyError::Crypto)
}

/// The additional authenticated data: a label, then purpose and subject, each length-prefixed (unambiguous).
fn aad(subject: &str, purpose: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 16 + purpose.len() + subject.len());
    aad.extend_from_slice(AAD_LABEL);
    for part in [purpose, subject] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// Splits `v1.<kid>.<payload>`, checking the version and the kid's syntax.
fn split_sealed(sealed: &str) -> Option<(&str, &str)> {
    let mut parts = sealed.splitn(3, '.');
    let (version, kid, payload) = (parts.next()?, parts.next()?, parts.next()?);
    (version == FORMAT && valid_key_id(kid)).then_some((kid, payload))
}

impl KeyRing {
    /// Parses `ID:BASE64KEY,ID:BASE64KEY` (newest first). Keys are 32 bytes in standard or URL-safe base64,
    /// padded or not; whitespace around entries is ignored.
    ///
    /// # Errors
    /// A [`KeyError`] naming the bad entry by position (and id, once the id is known to be valid). Errors never
    /// contain key material.
    pub fn parse(spec: &str) -> Result<KeyRing, KeyError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut keys: Vec<Key> = Vec::new();
        for (index, entry) in spec.split(',').enumerate() {
            let position = index + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(KeyError::EmptyEntry { position });
            }
            let (id, material) = entry
                .split_once(':')
                .ok_or(KeyError::MissingSeparator { position })?;
            let (id, material) = (id.trim(), material.trim());
            if !valid_key_id(id) {
                return Err(KeyError::BadId { position });
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyError::DuplicateId {
                    position,
                    id: id.to_owned(),
                });
            }
            let bytes = STANDARD_LENIENT
                .decode(material)
                .or_else(|_| URL_SAFE_LENIENT.decode(material))
                .map(Zeroizing::new)
                .map_err(|_| KeyError::BadBase64 {
                    position,
                    id: id.to_owned(),
                })?;
            if bytes.len() != KEY_LEN {
                return Err(KeyError::BadLength {
                    position,
                    id: id.to_owned(),
                    len: bytes.len(),
                });
            }
            keys.push(Key {
                id: id.to_owned(),
                key: make_key(&bytes)?,
            });
        }
        Ok(KeyRing { keys })
    }

    /// A key ring of one random key with the id `ephemeral`, for `demo` and `serve --sandbox`. Everything sealed
    /// with it is unreadable once the process ends.
    ///
    /// # Panics
    /// Only if the system's random number generator fails (at startup; see [`KeyRing::try_generate_ephemeral`]).
    #[must_use]
    #[allow(clippy::expect_used)] // Startup only; the system RNG failing is not recoverable.
    pub fn generate_ephemeral() -> KeyRing {
        Self::try_generate_ephemeral().expect("the system random number generator failed")
    }

    /// As [`KeyRing::generate_ephemeral`], reporting an RNG failure instead of panicking.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] when the random number generator fails.
    pub fn try_generate_ephemeral() -> Result<KeyRing, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| KeyError::Crypto)?;
        Ok(KeyRing {
            keys: vec![Key {
                id: EPHEMERAL_KEY_ID.to_owned(),
                key: make_key(bytes.as_ref())?,
            }],
        })
    }

    /// A new random key as an `ID:BASE64KEY` entry for `security.encryption_keys` (put it first to make it the
    /// newest). The returned string is key material: show it to the operator once, never log it.
    ///
    /// # Errors
    /// [`KeyError::BadId`] (position 1) for an invalid id; [`KeyError::Crypto`] when the RNG fails.
    pub fn generate_entry(id: &str) -> Result<Zeroizing<String>, KeyError> {
        if !valid_key_id(id) {
            return Err(KeyError::BadId { position: 1 });
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| KeyError::Crypto)?;
        let encoded =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()));
        Ok(Zeroizing::new(format!("{id}:{}", encoded.as_str())))
    }

    /// The id of the newest key (the one [`KeyRing::seal`] uses).
    #[must_use]
    pub fn newest_id(&self) -> &str {
        // `parse` and the generators never build an empty ring.
        self.keys.first().map_or("", |k| k.id.as_str())
    }

    /// All key ids, newest first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// Whether a key with this id is configured.
    #[must_use]
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.id == kid)
    }

    /// Encrypts `plaintext` with the newest key, bound to `subject` and `purpose`, under a fresh random nonce.
    /// Returns `v1.<kid>.<base64url(nonce || ciphertext || tag)>`.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if the random number generator or the cipher fails.
    pub fn seal(
        &self,
        subject: &str,
        purpose: &str,
        plaintext: &[u8],
    ) -> Result<String, CryptoError> {
        let key = self.keys.first().ok_or(CryptoError::Internal)?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| CryptoError::Internal)?;
        // nonce || plaintext, sealed in place after the nonce, then the tag appended. Zeroized if sealing fails.
        let mut buf = Zeroizing::new(Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN));
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext);
        let tag = key
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(subject, purpose)),
                &mut buf[NONCE_LEN..],
            )
            .map_err(|_| CryptoError::Internal)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(format!(
            "{FORMAT}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(buf.as_slice())
        ))
    }

    /// Decrypts a value sealed by [`KeyRing::seal`] for the same `subject` and `purpose`, with whichever configured
    /// key sealed it. The plaintext is zeroized on drop.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] for anything not in the sealed format; [`CryptoError::UnknownKey`] when its key id
    /// is not configured; [`CryptoError::Tampered`] when authentication fails (changed bytes, another subject or
    /// another purpose).
    pub fn open(
        &self,
        subject: &str,
        purpose: &str,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (kid, payload) = split_sealed(sealed).ok_or(CryptoError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
        let mut buf = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(payload)
                .map_err(|_| CryptoError::Malformed)?,
        );
        if buf.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = buf.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed)?;
        let plaintext = key
            .key
            .open_in_place(nonce, Aad::from(aad(subject, purpose)), ciphertext)
            .map_err(|_| CryptoError::Tampered)?;
        Ok(Zeroizing::new(plaintext.to_vec()))
    }

    /// The id of the key that sealed `sealed`, without decrypting (for rotation); `None` if it is not in the sealed
    /// format.
    #[must_use]
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        split_sealed(sealed).map(|(kid, _)| kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // bytes 0..32, standard base64
    const K2_URL: &str = "_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-8"; // URL-safe, unpadded

    fn ring() -> KeyRing {
        KeyRing::parse(&format!("new:{K2_URL},old:{K1}")).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_for_the_same_subject_and_purpose() {
        let ring = ring();
        let sealed = ring.seal("alice", "refresh_token", b"1//canary").unwrap();
        assert!(sealed.starts_with("v1.new."));
        assert!(!sealed.contains("canary"));
        let plain = ring.open("alice", "refresh_token", &sealed).unwrap();
        assert_eq!(plain.as_slice(), b"1//canary");
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let ring = ring();
        let a = ring.seal("alice", "p", b"same").unwrap();
        let b = ring.seal("alice", "p", b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn another_subject_or_purpose_fails_authentication() {
        let ring = ring();
        let sealed = ring.seal("alice", "refresh_token", b"1//x").unwrap();
        assert_eq!(
            ring.open("bob", "refresh_token", &sealed).unwrap_err(),
            CryptoError::Tampered
        );
        assert_eq!(
            ring.open("alice", "access_token", &sealed).unwrap_err(),
            CryptoError::Tampered
        );
    }

    #[test]
    fn subject_and_purpose_boundaries_are_unambiguous() {
        let ring = ring();
        let sealed = ring.seal("ab", "c", b"x").unwrap();
        assert_eq!(
            ring.open("b", "ca", &sealed).unwrap_err(),
            CryptoError::Tampered
        );
    }

    #[test]
    fn a_value_sealed_under_an_older_key_still_opens() {
        let old = KeyRing::parse(&format!("old:{K1}")).unwrap();
        let sealed = old.seal("alice", "p", b"t").unwrap();
        assert_eq!(KeyRing::key_id_of(&sealed), Some("old"));
        let rotated = ring();
        assert_eq!(rotated.newest_id(), "new");
        assert_eq!(
            rotated.open("alice", "p", &sealed).unwrap().as_slice(),
            b"t"
        );
    }

    #[test]
    fn an_unknown_key_id_is_a_distinct_error() {
        let sealed = ring().seal("alice", "p", b"t").unwrap();
        let only_old = KeyRing::parse(&format!("old:{K1}")).unwrap();
        assert_eq!(
            only_old.open("alice", "p", &sealed).unwrap_err(),
            CryptoError::UnknownKey("new".to_owned())
        );
    }

    #[test]
    fn the_same_id_with_another_key_fails_authentication() {
        let a = KeyRing::parse(&format!("k:{K1}")).unwrap();
        let b = KeyRing::parse(&format!("k:{K2_URL}")).unwrap();
        let sealed = a.seal("s", "p", b"t").unwrap();
        assert_eq!(
            b.open("s", "p", &sealed).unwrap_err(),
            CryptoError::Tampered
        );
    }

    #[test]
    fn malformed_values_are_reported_as_malformed() {
        let ring = ring();
        for bad in [
            "",
            "v1",
            "v1.new",
            "v2.new.AAAA",
            "v1.new.!!!!",
            "v1.new.AAAA",
            "v1.bad kid.AAAA",
            "v1..AAAA",
        ] {
            assert_eq!(
                ring.open("s", "p", bad).unwrap_err(),
                CryptoError::Malformed,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_shows_key_ids_but_no_key_material() {
        let debug = format!("{:?}", ring());
        assert!(debug.contains("new") && debug.contains("old"));
        assert!(!debug.contains(K1) && !debug.contains("AAECAw"));
    }

    #[test]
    fn parse_errors_name_the_entry_and_never_the_key() {
        assert_eq!(KeyRing::parse("  ").unwrap_err(), KeyError::Empty);
        assert_eq!(
            KeyRing::parse(&format!("a:{K1},,b:{K1}")).unwrap_err(),
            KeyError::EmptyEntry { position: 2 }
        );
        assert_eq!(
            KeyRing::parse(K1).unwrap_err(),
            KeyError::MissingSeparator { position: 1 }
        );
        assert_eq!(
            KeyRing::parse(&format!("a:{K1},b.c:{K1}")).unwrap_err(),
            KeyError::BadId { position: 2 }
        );
        assert_eq!(
            KeyRing::parse(&format!("a:{K1},a:{K2_URL}")).unwrap_err(),
            KeyError::DuplicateId {
                position: 2,
                id: "a".to_owned()
            }
        );
        assert_eq!(
            KeyRing::parse("a:AAAA").unwrap_err(),
            KeyError::BadLength {
                position: 1,
                id: "a".to_owned(),
                len: 3
            }
        );
        let err = KeyRing::parse("a:not*base64*secret").unwrap_err();
        assert_eq!(
            err,
            KeyError::BadBase64 {
                position: 1,
                id: "a".to_owned()
            }
        );
        assert!(!err.to_string().contains("secret"));
        let too_long_id = "x".repeat(33);
        assert_eq!(
            KeyRing::parse(&format!("{too_long_id}:{K1}")).unwrap_err(),
            KeyError::BadId { position: 1 }
        );
    }

    #[test]
    fn whitespace_around_entries_is_ignored() {
        let ring = KeyRing::parse(&format!(" a : {K1} ,\n b:{K2_URL}\n")).unwrap();
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn an_ephemeral_ring_round_trips() {
        let ring = KeyRing::generate_ephemeral();
        assert_eq!(ring.newest_id(), EPHEMERAL_KEY_ID);
        let sealed = ring.seal("s", "p", b"t").unwrap();
        assert_eq!(ring.open("s", "p", &sealed).unwrap().as_slice(), b"t");
    }

    #[test]
    fn a_generated_entry_parses_as_a_key() {
        let entry = KeyRing::generate_entry("k2026").unwrap();
        let ring = KeyRing::parse(&entry).unwrap();
        assert_eq!(ring.newest_id(), "k2026");
        assert!(KeyRing::generate_entry("bad id").is_err());
    }

    proptest! {
        #[test]
        fn any_plaintext_round_trips(subject in ".{0,64}", purpose in "[a-z_]{0,20}", plaintext in proptest::collection::vec(any::<u8>(), 0..512)) {
            let ring = ring();
            let sealed = ring.seal(&subject, &purpose, &plaintext).unwrap();
            prop_assert_eq!(KeyRing::key_id_of(&sealed), Some("new"));
            let opened = ring.open(&subject, &purpose, &sealed).unwrap();
            prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
        }

        #[test]
        fn any_single_byte_change_fails_to_open(plaintext in proptest::collection::vec(any::<u8>(), 0..128), index in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let ring = ring();
            let sealed = ring.seal("alice", "refresh_token", &plaintext).unwrap();
            let (prefix, payload) = sealed.rsplit_once('.').unwrap();
            let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
            let i = index.index(bytes.len());
            bytes[i] ^= flip;
            let tampered = format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(&bytes));
            prop_assert_eq!(ring.open("alice", "refresh_token", &tampered).unwrap_err(), CryptoError::Tampered);
        }

        #[test]
        fn any_change_of_the_sealed_text_never_opens_to_other_plaintext(index in any::<prop::sample::Index>(), c in proptest::char::range(' ', '~')) {
            let ring = ring();
            let sealed = ring.seal("alice", "p", b"1//token").unwrap();
            let i = index.index(sealed.len());
            let mut chars: Vec<char> = sealed.chars().collect();
            chars[i] = c;
            let changed: String = chars.into_iter().collect();
            if let Ok(plain) = ring.open("alice", "p", &changed) {
                // Only an unchanged text (the same character written back) may open.
                prop_assert_eq!(changed, sealed);
                prop_assert_eq!(plain.as_slice(), b"1//token");
            }
        }

        #[test]
        fn another_subject_or_purpose_never_opens(a in "[ -~]{1,40}", b in "[ -~]{1,40}", pa in "[a-z_]{1,16}", pb in "[a-z_]{1,16}") {
            prop_assume!(a != b || pa != pb);
            let ring = ring();
            let sealed = ring.seal(&a, &pa, b"secret").unwrap();
            prop_assert_eq!(ring.open(&b, &pb, &sealed).unwrap_err(), CryptoError::Tampered);
        }

        #[test]
        fn parse_never_panics(spec in ".{0,200}") {
            let _ = KeyRing::parse(&spec);
        }

        #[test]
        fn parse_never_panics_on_near_valid_specs(entries in proptest::collection::vec(("[A-Za-z0-9_.-]{0,34}", "[A-Za-z0-9+/=_-]{0,50}"), 0..4)) {
            let spec = entries.iter().map(|(id, key)| format!("{id}:{key}")).collect::<Vec<_>>().join(",");
            if let Err(e) = KeyRing::parse(&spec) {
                for (_, key) in &entries {
                    if key.len() >= 8 { prop_assert!(!e.to_string().contains(key.as_str())); }
                }
            }
        }

        #[test]
        fn open_never_panics(sealed in ".{0,120}") {
            let _ = ring().open("s", "p", &sealed);
            let _ = KeyRing::key_id_of(&sealed);
        }
    }
}
