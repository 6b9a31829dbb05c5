//! Signing keys: RS256 key pairs kept parsed, published as a JWKS and as v1 PEM certificates.

use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// Fixed RSA-2048 test keys (PKCS#8 DER), used in order for the first key and the first rotations:
/// RSA key generation is slow in debug builds.
const FIXED_KEYS: [&[u8]; 3] = [
    include_bytes!("keys/key1.pk8.der"),
    include_bytes!("keys/key2.pk8.der"),
    include_bytes!("keys/key3.pk8.der"),
];

/// The PKCS#8 DER of the key handed out as the private key of `POST /_fake/service-accounts`:
/// the last fixed key, which signs only after two rotations (the fake never checks a
/// service-account JWT's signature, so any RSA key does; this one costs no generation).
pub(crate) fn service_account_der() -> &'static [u8] {
    FIXED_KEYS[FIXED_KEYS.len() - 1]
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    /// The RSA key could not be parsed or generated.
    #[error("RSA key: {0}")]
    Rsa(String),
    /// The X.509 certificate for the key could not be made.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// One RS256 signing key with everything published about it.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    key_pair: RsaKeyPair,
    /// JWK `n` (base64url, big-endian modulus).
    n: String,
    /// JWK `e`.
    e: String,
    /// Self-signed X.509 certificate of the key, PEM.
    pub(crate) cert_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses a PKCS#8 DER RSA key and derives its kid, JWK and certificate.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let key_pair = RsaKeyPair::from_pkcs8(der).map_err(|e| KeyError::Rsa(e.to_string()))?;
        let public = key_pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        // Google's kids are 40 hex digits: a SHA-1 over the public key is a fine stand-in.
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            public.as_ref(),
        );
        let kid = hex::encode(digest.as_ref());
        let rc_key = rcgen::KeyPair::try_from(der)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "federated-signon.system.gserviceaccount.com",
        );
        let cert_pem = params.self_signed(&rc_key)?.pem();
        Ok(Self {
            kid,
            key_pair,
            n,
            e,
            cert_pem,
        })
    }

    /// Generates a fresh RSA-2048 key (slow in debug builds).
    fn generate() -> Result<Self, KeyError> {
        use aws_lc_rs::encoding::AsDer as _;
        let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
            .map_err(|e| KeyError::Rsa(e.to_string()))?;
        let der = pair.as_der().map_err(|e| KeyError::Rsa(e.to_string()))?;
        Self::from_pkcs8(der.as_ref())
    }

    /// This key as a JWK, in the field order Google uses.
    pub(crate) fn jwk(&self) -> Value {
        json!({"n": self.n, "kid": self.kid, "use": "sig", "e": self.e, "alg": "RS256", "kty": "RSA"})
    }

    /// Signs `claims_json` as a compact JWS with the header `{"alg":"RS256","kid","typ":"JWT"}`.
    pub(crate) fn sign_jwt(&self, claims_json: &[u8]) -> Result<String, KeyError> {
        self.sign_jwt_typed("JWT", claims_json)
    }

    /// Signs `claims_json` as a compact JWS whose header's `typ` is `typ` (a JSON-safe string,
    /// e.g. `secevent+jwt` for a Security Event Token).
    pub(crate) fn sign_jwt_typed(&self, typ: &str, claims_json: &[u8]) -> Result<String, KeyError> {
        let header = format!(r#"{{"alg":"RS256","kid":"{}","typ":"{typ}"}}"#, self.kid);
        let mut out = String::with_capacity(1024);
        URL_SAFE_NO_PAD.encode_string(header.as_bytes(), &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(claims_json, &mut out);
        let mut sig = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                out.as_bytes(),
                &mut sig,
            )
            .map_err(|e| KeyError::Rsa(e.to_string()))?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
        Ok(out)
    }
}

/// The published key set: the newest key signs, older ones stay published until retired.
#[derive(Debug)]
struct KeySet {
    /// Newest first.
    published: Vec<Arc<SigningKey>>,
    /// How many fixed keys have been used so far.
    next_fixed: usize,
}

/// The fake's keys, behind one short-held lock (never held while signing).
#[derive(Debug)]
pub(crate) struct KeyStore {
    set: RwLock<KeySet>,
}

impl KeyStore {
    /// Starts with the first fixed key.
    pub(crate) fn new() -> Result<Self, KeyError> {
        let first = Arc::new(SigningKey::from_pkcs8(FIXED_KEYS[0])?);
        Ok(Self {
            set: RwLock::new(KeySet {
                published: vec![first],
                next_fixed: 1,
            }),
        })
    }

    /// The key that signs now.
    pub(crate) fn current(&self) -> Arc<SigningKey> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&set.published[0])
    }

    /// Every published key, newest first.
    pub(crate) fn published(&self) -> Vec<Arc<SigningKey>> {
        self.set
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .published
            .clone()
    }

    /// Adds a new signing key; with `retire_old` the previous keys are withdrawn.
    /// Returns the new key's kid.
    pub(crate) fn rotate(&self, retire_old: bool) -> Result<String, KeyError> {
        let next = {
            let set = self.set.read().unwrap_or_else(|p| p.into_inner());
            set.next_fixed
        };
        // Build the key outside the lock (generation can take a while).
        let key = match FIXED_KEYS.get(next) {
            Some(der) => SigningKey::from_pkcs8(der)?,
            None => SigningKey::generate()?,
        };
        let key = Arc::new(key);
        let kid = key.kid.clone();
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        if next < FIXED_KEYS.len() {
            set.next_fixed = set.next_fixed.max(next + 1);
        }
        if retire_old {
            set.published.clear();
        }
        set.published.insert(0, key);
        Ok(kid)
    }

    /// Back to the first fixed key only.
    pub(crate) fn reset(&self) -> Result<(), KeyError> {
        let first = Arc::new(SigningKey::from_pkcs8(FIXED_KEYS[0])?);
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        set.published = vec![first];
        set.next_fixed = 1;
        Ok(())
    }

    /// Finds a published key by kid.
    pub(crate) fn find(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.published().into_iter().find(|k| k.kid == kid)
    }
}

/// Verifies a compact RS256 JWS against a published key and returns its claims.
pub(crate) fn verify_jwt(keys: &KeyStore, token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "RS256" {
        return None;
    }
    let key = keys.find(header.get("kid")?.as_str()?)?;
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    let public = signature::UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        key.key_pair.public_key().as_ref(),
    );
    let signed_len = h.len() + 1 + c.len();
    public.verify(&token.as_bytes()[..signed_len], &sig).ok()?;
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_keys_parse_and_have_forty_hex_kids() {
        for der in FIXED_KEYS {
            let key = SigningKey::from_pkcs8(der).unwrap();
            assert_eq!(key.kid.len(), 40);
            assert!(key.kid.chars().all(|c| c.is_ascii_hexdigit()));
            assert_eq!(key.e, "AQAB");
            assert!(key.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        }
    }

    #[test]
    fn a_signed_token_verifies_and_a_tampered_one_does_not() {
        let store = KeyStore::new().unwrap();
        let token = store.current().sign_jwt(br#"{"sub":"1"}"#).unwrap();
        let claims = verify_jwt(&store, &token).unwrap();
        assert_eq!(claims["sub"], "1");
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(verify_jwt(&store, &tampered).is_none());
        assert!(verify_jwt(&store, "a.b").is_none());
    }

    #[test]
    fn rotation_publishes_both_keys_until_the_old_one_is_retired() {
        let store = KeyStore::new().unwrap();
        let old = store.current().kid.clone();
        let new = store.rotate(false).unwrap();
        assert_ne!(old, new);
        assert_eq!(store.current().kid, new);
        assert_eq!(store.published().len(), 2);
        store.rotate(true).unwrap();
        assert_eq!(store.published().len(), 1);
        store.reset().unwrap();
        assert_eq!(store.current().kid, old);
    }
}
