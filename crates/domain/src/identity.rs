//! Who a user is: subject, email, profile and granted scopes.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Why an identity value was rejected at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// A subject must be 1 to 255 visible ASCII characters.
    #[error("subject must be 1 to 255 visible ASCII characters")]
    BadSubject,
    /// An email must have one `@` with text on both sides, at most 320 bytes, no whitespace or control characters.
    #[error("email address is not valid")]
    BadEmail,
    /// A scope must be non-empty visible ASCII without spaces (RFC 6749 §3.3).
    #[error("scope is not valid")]
    BadScope,
}

/// Google's stable account identifier (the ID token's `sub`). Not secret.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

impl Subject {
    /// Longest accepted subject (Google's are 21 digits; the OIDC limit is 255 ASCII characters).
    pub const MAX_LEN: usize = 255;

    /// Validates and wraps a subject.
    ///
    /// # Errors
    /// [`IdentityError::BadSubject`] when empty, longer than 255 bytes or not visible ASCII.
    pub fn parse(value: &str) -> Result<Self, IdentityError> {
        if value.is_empty()
            || value.len() > Self::MAX_LEN
            || !value.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(IdentityError::BadSubject);
        }
        Ok(Self(value.to_owned()))
    }

    /// The subject as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Subject {
    type Error = IdentityError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Subject> for String {
    fn from(value: Subject) -> Self {
        value.0
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({})", self.0)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address as Google reports it. Validated loosely (Google is the authority), strictly for safety.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Validates and wraps an email address.
    ///
    /// # Errors
    /// [`IdentityError::BadEmail`] when it lacks a single `@` with text on both sides, is over 320 bytes,
    /// or holds whitespace or control characters.
    pub fn parse(value: &str) -> Result<Self, IdentityError> {
        let ok = value.len() <= 320
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(value.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdentityError::BadEmail)
        }
    }

    /// The address as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = IdentityError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The OAuth scope that lets this service use the user's Drive `appDataFolder`.
pub const DRIVE_APPDATA_SCOPE: &str = "https://www.googleapis.com/auth/drive.appdata";

/// A set of granted OAuth scopes, normalised: `email` and `profile` are stored as Google's
/// `userinfo.email` / `userinfo.profile` URLs, which is how Google reports them. Shared, so a copy (every Drive
/// call copies the grant's and the access token's) costs no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Scopes(Arc<BTreeSet<String>>);

impl Scopes {
    /// Parses a space-separated scope string (RFC 6749 §3.3) as found in a token response.
    ///
    /// # Errors
    /// [`IdentityError::BadScope`] when a scope holds a character outside visible ASCII.
    pub fn parse(space_separated: &str) -> Result<Self, IdentityError> {
        Self::from_iter_checked(space_separated.split(' ').filter(|s| !s.is_empty()))
    }

    /// Builds a set from individual scopes.
    ///
    /// # Errors
    /// [`IdentityError::BadScope`] when a scope is empty or holds a character outside visible ASCII.
    pub fn from_iter_checked<'a>(
        scopes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, IdentityError> {
        let mut set = BTreeSet::new();
        for scope in scopes {
            if scope.is_empty() || scope.len() > 512 || !scope.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(IdentityError::BadScope);
            }
            set.insert(normalise(scope).to_owned());
        }
        Ok(Self(Arc::new(set)))
    }

    /// Whether `scope` (short or URL form) is granted.
    #[must_use]
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(normalise(scope))
    }

    /// Whether Drive `appDataFolder` access was granted.
    #[must_use]
    pub fn has_drive_appdata(&self) -> bool {
        self.contains(DRIVE_APPDATA_SCOPE)
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Number of scopes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no scope is granted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every scope of `self` and of `other`.
    #[must_use]
    pub fn union(&self, other: &Scopes) -> Scopes {
        Scopes(Arc::new(self.0.union(&other.0).cloned().collect()))
    }

    /// The scopes of `self` that are not in `other`.
    #[must_use]
    pub fn difference(&self, other: &Scopes) -> Scopes {
        Scopes(Arc::new(self.0.difference(&other.0).cloned().collect()))
    }

    /// Whether every scope of `other` is in `self`.
    #[must_use]
    pub fn is_superset(&self, other: &Scopes) -> bool {
        self.0.is_superset(&other.0)
    }
}

fn normalise(scope: &str) -> &str {
    match scope {
        "email" => "https://www.googleapis.com/auth/userinfo.email",
        "profile" => "https://www.googleapis.com/auth/userinfo.profile",
        other => other,
    }
}

impl TryFrom<Vec<String>> for Scopes {
    type Error = IdentityError;
    fn try_from(value: Vec<String>) -> Result<Self, Self::Error> {
        Self::from_iter_checked(value.iter().map(String::as_str))
    }
}

impl From<Scopes> for Vec<String> {
    fn from(value: Scopes) -> Self {
        value.0.iter().cloned().collect()
    }
}

/// The user's profile as read from a verified ID token. Not secret, but personal: log the subject, not this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Email address, when the `email` scope was granted.
    pub email: Option<Email>,
    /// Whether Google verified the address.
    pub email_verified: bool,
    /// Full name.
    pub name: Option<String>,
    /// Profile picture URL.
    pub picture: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// BCP 47 locale.
    pub locale: Option<String>,
    /// Google Workspace hosted domain, when the account belongs to one.
    pub hd: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_scopes_are_stored_as_google_reports_them() {
        let scopes =
            Scopes::parse("openid email profile https://www.googleapis.com/auth/drive.appdata")
                .unwrap();
        assert!(scopes.contains("https://www.googleapis.com/auth/userinfo.email"));
        assert!(scopes.contains("profile"));
        assert!(scopes.has_drive_appdata());
        assert_eq!(scopes.len(), 4);
    }

    #[test]
    fn subjects_are_bounded_visible_ascii() {
        assert!(Subject::parse("110169484474386276334").is_ok());
        assert!(Subject::parse("").is_err());
        assert!(Subject::parse(&"1".repeat(256)).is_err());
        assert!(Subject::parse("12 3").is_err());
        assert!(Subject::parse("é").is_err());
    }

    #[test]
    fn emails_need_one_at_sign_with_both_sides() {
        assert!(Email::parse("alice@example.com").is_ok());
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "a@b@c",
            "a lice@example.com",
            "a\n@b",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn scope_parsing_never_panics_and_round_trips(s in "[ -~]{0,200}") {
            if let Ok(scopes) = Scopes::parse(&s) {
                let joined = scopes.iter().collect::<Vec<_>>().join(" ");
                prop_assert_eq!(Scopes::parse(&joined).unwrap(), scopes);
            }
        }

        #[test]
        fn subject_parse_accepts_exactly_the_rule(s in ".{0,300}") {
            let ok = !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
            prop_assert_eq!(Subject::parse(&s).is_ok(), ok);
        }
    }
}
