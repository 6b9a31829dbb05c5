//! Secret newtypes: one-time codes and OAuth tokens.
//!
//! Each is validated once at the edge, prints `[REDACTED]` in `Debug` and `Display`, is zeroized on drop
//! (it wraps [`secrecy::SecretString`]) and is never `Serialize`: a store or adapter must call
//! `expose_secret()` on purpose to read it.

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Why a secret value was rejected at the edge. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The value is empty.
    #[error("{kind} is empty")]
    Empty {
        /// Which kind of secret.
        kind: &'static str,
    },
    /// The value is longer than allowed.
    #[error("{kind} is longer than {max} bytes")]
    TooLong {
        /// Which kind of secret.
        kind: &'static str,
        /// The limit in bytes.
        max: usize,
    },
    /// The value holds a character that cannot be in it (control, whitespace or non-ASCII).
    #[error("{kind} contains a character that is not allowed")]
    BadCharacter {
        /// Which kind of secret.
        kind: &'static str,
    },
    /// The value does not have the expected structure (e.g. a JWT without three segments).
    #[error("{kind} is malformed")]
    Malformed {
        /// Which kind of secret.
        kind: &'static str,
    },
}

fn check_token_chars(kind: &'static str, value: &str, max: usize) -> Result<(), SecretError> {
    if value.is_empty() {
        return Err(SecretError::Empty { kind });
    }
    if value.len() > max {
        return Err(SecretError::TooLong { kind, max });
    }
    // Visible ASCII only: OAuth tokens and codes are VSCHAR strings (RFC 6749 appendix A).
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretError::BadCharacter { kind });
    }
    Ok(())
}

macro_rules! secret_newtype {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            /// Largest accepted length in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`SecretError`] when the value is empty, too long or holds a character outside visible ASCII.
            pub fn parse(value: &str) -> Result<Self, SecretError> {
                Self::validate(value)?;
                Ok(Self(SecretString::from(value)))
            }

            /// The secret value, for the adapter that must send or encrypt it. Never log it.
            #[must_use]
            pub fn expose_secret(&self) -> &str {
                self.0.expose_secret()
            }

            /// Compares two values in constant time.
            #[must_use]
            pub fn ct_eq(&self, other: &Self) -> bool {
                self.expose_secret()
                    .as_bytes()
                    .ct_eq(other.expose_secret().as_bytes())
                    .into()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[REDACTED]")
            }
        }

        impl std::str::FromStr for $name {
            type Err = SecretError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = SecretError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                // Validate first, then move the String into the secret box (zeroized on drop).
                Self::validate(&value)?;
                Ok(Self(SecretString::from(value)))
            }
        }

        impl $name {
            fn validate(value: &str) -> Result<(), SecretError> {
                check_token_chars($kind, value, Self::MAX_LEN)?;
                Self::extra_checks(value)
            }
        }
    };
}

secret_newtype!(
    /// A one-time server auth code from the Android app (`4/0...`). At most 2 KiB.
    AuthCode,
    "authorization code",
    2048
);
secret_newtype!(
    /// A short-lived Google access token (`ya29....`).
    AccessToken,
    "access token",
    4096
);
secret_newtype!(
    /// A long-lived Google refresh token (`1//...`): the credential this service exists to keep.
    RefreshToken,
    "refresh token",
    2048
);
secret_newtype!(
    /// A compact-serialized Google ID token (a JWS: three base64url segments). Not yet verified.
    IdToken,
    "ID token",
    16 * 1024
);

impl AuthCode {
    fn extra_checks(_value: &str) -> Result<(), SecretError> {
        Ok(())
    }
}

impl AccessToken {
    fn extra_checks(_value: &str) -> Result<(), SecretError> {
        Ok(())
    }
}

impl RefreshToken {
    fn extra_checks(_value: &str) -> Result<(), SecretError> {
        Ok(())
    }
}

/// The base64url alphabet, as a lookup table (a token is checked on every request that carries one).
const BASE64URL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

impl IdToken {
    fn extra_checks(value: &str) -> Result<(), SecretError> {
        let kind = "ID token";
        let mut segments = 0;
        for segment in value.split('.') {
            segments += 1;
            if segment.is_empty() || !segment.bytes().all(|b| BASE64URL[usize::from(b)]) {
                return Err(SecretError::Malformed { kind });
            }
        }
        if segments != 3 {
            return Err(SecretError::Malformed { kind });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let token = RefreshToken::parse("1//canary-refresh").unwrap();
        assert_eq!(format!("{token:?}"), "RefreshToken([REDACTED])");
        assert_eq!(format!("{token}"), "[REDACTED]");
        let code = AuthCode::parse("4/0canary").unwrap();
        assert!(!format!("{code:?}{code}").contains("canary"));
    }

    #[test]
    fn empty_long_and_control_characters_are_rejected() {
        assert_eq!(
            AuthCode::parse("").err(),
            Some(SecretError::Empty {
                kind: "authorization code"
            })
        );
        assert!(matches!(
            AuthCode::parse(&"a".repeat(2049)),
            Err(SecretError::TooLong { max: 2048, .. })
        ));
        assert!(matches!(
            AuthCode::parse("4/0ab\ncd"),
            Err(SecretError::BadCharacter { .. })
        ));
        assert!(matches!(
            AccessToken::parse("ya29 x"),
            Err(SecretError::BadCharacter { .. })
        ));
    }

    #[test]
    fn id_tokens_need_three_base64url_segments() {
        assert!(IdToken::parse("aGVhZA.Ym9keQ.c2ln").is_ok());
        for bad in ["a.b", "a.b.c.d", "a..c", "a.b+.c", "a.b.c="] {
            assert!(
                matches!(IdToken::parse(bad), Err(SecretError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn constant_time_equality_matches_value_equality() {
        let a = AuthCode::parse("4/0abc").unwrap();
        assert!(a.ct_eq(&AuthCode::parse("4/0abc").unwrap()));
        assert!(!a.ct_eq(&AuthCode::parse("4/0abd").unwrap()));
        assert!(!a.ct_eq(&AuthCode::parse("4/0ab").unwrap()));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_exactly_visible_ascii(s in ".{0,64}") {
            let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
            prop_assert_eq!(AuthCode::parse(&s).is_ok(), ok);
            prop_assert_eq!(RefreshToken::parse(&s).is_ok(), ok);
            let _ = IdToken::parse(&s);
        }

        #[test]
        fn a_parsed_value_round_trips(s in "[!-~]{1,200}") {
            let t = AccessToken::parse(&s).unwrap();
            prop_assert_eq!(t.expose_secret(), s.as_str());
        }
    }
}
