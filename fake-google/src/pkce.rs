//! PKCE (RFC 7636) as Google checks it: a challenge bound to the code at the authorization
//! endpoint, its verifier checked at `POST /token`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::model::ControlError;

/// How the challenge was derived from the verifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// The challenge is the verifier.
    Plain,
    /// The challenge is base64url-no-pad(SHA-256(verifier)).
    S256,
}

/// A code's PKCE challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) method: Method,
    pub(crate) value: String,
}

/// Whether `s` is 43 to 128 characters of RFC 7636's unreserved set (a verifier or a challenge).
fn well_formed(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Parses `code_challenge` and `code_challenge_method` (default `plain`, as Google).
///
/// # Errors
/// A message naming the bad parameter: a method without a challenge, an unknown method, or a
/// challenge that is not 43 to 128 unreserved characters.
pub(crate) fn parse(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<Challenge>, ControlError> {
    let method = match method {
        None | Some("plain") => Method::Plain,
        Some("S256") => Method::S256,
        Some(other) => {
            return Err(ControlError(format!(
                "code_challenge_method {other:?} is not S256 or plain"
            )));
        }
    };
    match challenge {
        None => Ok(None),
        Some(c) if well_formed(c) => Ok(Some(Challenge {
            method,
            value: c.to_owned(),
        })),
        Some(_) => Err(ControlError(
            "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~".to_owned(),
        )),
    }
}

/// What is wrong with the `code_verifier` of an exchange, in Google's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// The code has a challenge, the request no verifier.
    Missing,
    /// The verifier does not match the challenge.
    Invalid,
    /// The code has no challenge but the request sent a verifier.
    NotNeeded,
}

impl Mismatch {
    /// Google's `error_description` (with `invalid_grant`).
    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::Missing => "Missing code verifier.",
            Self::Invalid => "Invalid code verifier.",
            Self::NotNeeded => "code_verifier or verifier is not needed.",
        }
    }
}

/// base64url-no-pad(SHA-256(`verifier`)).
pub(crate) fn s256(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// Checks the verifier of an exchange against the code's challenge. An empty verifier counts as
/// none.
pub(crate) fn verify(
    challenge: Option<&Challenge>,
    verifier: Option<&str>,
) -> Result<(), Mismatch> {
    let verifier = verifier.filter(|v| !v.is_empty());
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(Mismatch::NotNeeded),
        (Some(_), None) => Err(Mismatch::Missing),
        (Some(c), Some(v)) => {
            let derived = match c.method {
                Method::Plain => v.to_owned(),
                Method::S256 => s256(v),
            };
            if well_formed(v)
                && crate::state::constant_time_eq(derived.as_bytes(), c.value.as_bytes())
            {
                Ok(())
            } else {
                Err(Mismatch::Invalid)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn s256_matches_the_rfc_example() {
        assert_eq!(s256(VERIFIER), CHALLENGE);
    }

    #[test]
    fn the_method_defaults_to_plain_and_bad_input_is_named() {
        let c = parse(Some(CHALLENGE), None).unwrap().unwrap();
        assert_eq!(c.method, Method::Plain);
        let c = parse(Some(CHALLENGE), Some("S256")).unwrap().unwrap();
        assert_eq!(c.method, Method::S256);
        assert_eq!(parse(None, None).unwrap(), None);
        assert!(
            parse(Some(CHALLENGE), Some("s256"))
                .unwrap_err()
                .0
                .contains("S256")
        );
        assert!(
            parse(Some("short"), None)
                .unwrap_err()
                .0
                .contains("43 to 128")
        );
        assert!(parse(Some(&"a".repeat(129)), None).is_err());
        assert!(parse(Some(&format!("{}+", "a".repeat(43))), None).is_err());
    }

    #[test]
    fn verifiers_are_checked_by_method() {
        let s256c = parse(Some(CHALLENGE), Some("S256")).unwrap();
        assert_eq!(verify(s256c.as_ref(), Some(VERIFIER)), Ok(()));
        assert_eq!(
            verify(s256c.as_ref(), Some(CHALLENGE)),
            Err(Mismatch::Invalid)
        );
        assert_eq!(verify(s256c.as_ref(), None), Err(Mismatch::Missing));
        assert_eq!(verify(s256c.as_ref(), Some("")), Err(Mismatch::Missing));
        let plain = parse(Some(VERIFIER), Some("plain")).unwrap();
        assert_eq!(verify(plain.as_ref(), Some(VERIFIER)), Ok(()));
        assert_eq!(
            verify(plain.as_ref(), Some(CHALLENGE)),
            Err(Mismatch::Invalid)
        );
        assert_eq!(verify(None, Some(VERIFIER)), Err(Mismatch::NotNeeded));
        assert_eq!(verify(None, None), Ok(()));
    }

    #[test]
    fn descriptions_are_googles() {
        assert_eq!(Mismatch::Missing.description(), "Missing code verifier.");
        assert_eq!(Mismatch::Invalid.description(), "Invalid code verifier.");
        assert_eq!(
            Mismatch::NotNeeded.description(),
            "code_verifier or verifier is not needed."
        );
    }
}
