//! The control API's public types: what tests send to the fake and what they get back.

use serde::{Deserialize, Deserializer, Serialize};

/// The default Web-application OAuth client's ID (the "server client ID" of Google's Android docs).
pub const DEFAULT_CLIENT_ID: &str =
    "123456789012-fakegoogle0web0client0000000000000.apps.googleusercontent.com";
/// The default Web-application OAuth client's secret.
pub const DEFAULT_CLIENT_SECRET: &str = "GOCSPX-fake-google-client-secret00";
/// An Android client ID to use as `azp` in tests (any string works; this one looks like Google's).
pub const ANDROID_CLIENT_ID: &str =
    "123456789012-fakegoogle0android0client000000000.apps.googleusercontent.com";
/// The scopes a minted code grants when none are given.
pub const DEFAULT_SCOPES: [&str; 4] = [
    "openid",
    "email",
    "profile",
    "https://www.googleapis.com/auth/drive.appdata",
];

/// Scopes as a JSON array of strings or one space-separated string; errors name `field`.
fn scope_list<'de, D: Deserializer<'de>>(
    d: D,
    field: &str,
) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scopes {
        List(Vec<String>),
        Spaced(String),
    }
    let parsed = Option::<Scopes>::deserialize(d).map_err(|_| {
        serde::de::Error::custom(format!(
            "{field} must be an array of strings or one space-separated string"
        ))
    })?;
    Ok(match parsed {
        None => None,
        Some(Scopes::List(list)) => Some(list),
        Some(Scopes::Spaced(s)) => Some(s.split_whitespace().map(str::to_owned).collect()),
    })
}

/// `scopes`, see [`scope_list`].
fn scopes_de<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    scope_list(d, "scopes")
}

/// `granted_scopes`, see [`scope_list`].
fn granted_scopes_de<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    scope_list(d, "granted_scopes")
}

/// What the user's consent on the phone would produce: the input of [`crate::Control::mint_code`]
/// and of `POST /_fake/codes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The user's email address (required).
    pub email: String,
    /// The Google account ID; default: a stable 21-digit number derived from the email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Full name; default derived from the email's local part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Profile picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Locale, default `en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Whether the email is verified, default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Hosted (Workspace) domain, sent as the `hd` claim when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hd: Option<String>,
    /// Granted scopes; default [`DEFAULT_SCOPES`]. `email` and `profile` are expanded to their
    /// `userinfo.*` URLs in token responses.
    #[serde(
        default,
        deserialize_with = "scopes_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub scopes: Option<Vec<String>>,
    /// The web client the code is for (the ID token's `aud`); default [`DEFAULT_CLIENT_ID`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The Android client that asked for the code (the ID token's `azp`); default the web client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// The redirect URI the exchange must send; default `""` (Android).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// `"consent"` forces a new refresh token even when the user already granted this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Copied into the ID token's `nonce` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The token response's `scope` (and the access token) also covers the scopes the user granted
    /// this client earlier (Google Identity Services defaults this to true on the web; here the
    /// default is false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_granted_scopes: bool,
    /// Granular consent: the user left only these of the requested `scopes` ticked (array or
    /// space-separated; a subset of them after expansion). `openid`, `email` and `profile` are
    /// granted whenever requested. Default: everything requested is granted.
    #[serde(
        default,
        deserialize_with = "granted_scopes_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub granted_scopes: Option<Vec<String>>,
    /// PKCE: the exchange must send the matching `code_verifier` (43 to 128 characters of
    /// `A-Z a-z 0-9 - . _ ~`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    /// `S256` or `plain` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_method: Option<String>,
    /// `offline` (the default here, as for Android server auth codes) lets the exchange hand out
    /// a refresh token; `online` never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_type: Option<String>,
}

impl CodeRequest {
    /// A request for `email` with every other field defaulted.
    pub fn new(email: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            ..Self::default()
        }
    }

    /// Sets the granted scopes.
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the Android client ID (`azp`).
    #[must_use]
    pub fn azp(mut self, azp: impl Into<String>) -> Self {
        self.azp = Some(azp.into());
        self
    }

    /// Forces a refresh token (`prompt=consent`).
    #[must_use]
    pub fn consent(mut self) -> Self {
        self.prompt = Some("consent".to_owned());
        self
    }

    /// Sets the redirect URI the code was issued for.
    #[must_use]
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    /// Answers the scopes granted to this client earlier too (`include_granted_scopes=true`).
    #[must_use]
    pub fn include_granted_scopes(mut self) -> Self {
        self.include_granted_scopes = true;
        self
    }

    /// PKCE: binds `challenge` (derived with `method`, `S256` or `plain`) to the code.
    #[must_use]
    pub fn code_challenge(mut self, challenge: impl Into<String>, method: &str) -> Self {
        self.code_challenge = Some(challenge.into());
        self.code_challenge_method = Some(method.to_owned());
        self
    }

    /// Granular consent: only these of the requested scopes (plus the sign-in ones) are granted.
    #[must_use]
    pub fn granted_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.granted_scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }
}

/// A user the fake knows (shown in the account chooser): `POST /_fake/users`,
/// [`crate::Control::add_user`] and the `users` of a `--config` file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// The e-mail address (required).
    pub email: String,
    /// The account ID; default derived from the e-mail as for codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Full name; default derived from the e-mail's local part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Locale, default `en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Whether the e-mail is verified, default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Hosted (Workspace) domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hd: Option<String>,
}

impl UserSpec {
    /// A user with this e-mail and every other field defaulted.
    pub fn new(email: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            ..Self::default()
        }
    }
}

/// A freshly minted authorization code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintedCode {
    /// The one-time code (`4/0...`), a secret.
    pub code: String,
    /// The user's account ID.
    pub sub: String,
}

impl std::fmt::Debug for MintedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedCode")
            .field("code", &"<redacted>")
            .field("sub", &self.sub)
            .finish()
    }
}

/// Input of [`crate::Control::mint_id_token`] and `POST /_fake/id_tokens`: the ID token the app's
/// `GoogleSignInAccount.getIdToken()` would hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdTokenRequest {
    /// The user's email address (required).
    pub email: String,
    /// The account ID; default derived from the email as for codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Whether the email is verified, default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Hosted domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hd: Option<String>,
    /// The audience (web client ID); default [`DEFAULT_CLIENT_ID`]. Any string is accepted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The `azp` claim; default the audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// The `nonce` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Lifetime; default the `id_token_ttl_secs` setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

impl IdTokenRequest {
    /// A request for `email` with every other field defaulted.
    pub fn new(email: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            ..Self::default()
        }
    }
}

/// The fake's tunable behaviour (see [`SettingsPatch`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Lifetime of access tokens, also the `expires_in` answered (default 3599).
    pub access_token_ttl_secs: u64,
    /// Lifetime of ID tokens: `exp - iat` (default 3600).
    pub id_token_ttl_secs: u64,
    /// Lifetime of authorization codes (default 600).
    pub code_ttl_secs: u64,
    /// `max-age` of the certificate endpoints' `Cache-Control` (default 21600).
    pub jwks_max_age_secs: u64,
    /// Added to the real clock: the fake's "now" (default 0).
    pub clock_offset_secs: i64,
    /// Whether a refresh grant returns a new refresh token and retires the old one (default false, as Google).
    pub rotate_refresh_tokens: bool,
    /// The browser flow's account chooser approves at once for `login_hint`, and its consent page
    /// grants every requested scope at once (default false): for headless CI.
    #[serde(default)]
    pub auto_consent: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 3599,
            id_token_ttl_secs: 3600,
            code_ttl_secs: 600,
            jwks_max_age_secs: 21600,
            clock_offset_secs: 0,
            rotate_refresh_tokens: false,
            auto_consent: false,
        }
    }
}

/// A partial update of [`Settings`]: `POST /_fake/settings`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// See [`Settings::access_token_ttl_secs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_ttl_secs: Option<u64>,
    /// See [`Settings::id_token_ttl_secs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_ttl_secs: Option<u64>,
    /// See [`Settings::code_ttl_secs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_ttl_secs: Option<u64>,
    /// See [`Settings::jwks_max_age_secs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_max_age_secs: Option<u64>,
    /// See [`Settings::clock_offset_secs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_secs: Option<i64>,
    /// See [`Settings::rotate_refresh_tokens`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_refresh_tokens: Option<bool>,
    /// See [`Settings::auto_consent`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_consent: Option<bool>,
}

/// Which endpoint a [`Fault`] hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /token`.
    Token,
    /// `POST /revoke`.
    Revoke,
    /// `GET /oauth2/v3/certs` and `GET /oauth2/v1/certs`.
    Certs,
    /// `/drive/v3/...`.
    Drive,
    /// `/upload/drive/v3/...`.
    Upload,
    /// The userinfo endpoints.
    Userinfo,
    /// The tokeninfo endpoints.
    Tokeninfo,
    /// `GET /.well-known/openid-configuration`.
    Discovery,
    /// The authorization endpoint and its pages (`/o/oauth2/v2/auth...`, `/o/oauth2/auth`).
    Authorize,
    /// The RISC (Cross-Account Protection) API `/v1beta/stream...` and
    /// `GET /.well-known/risc-configuration`.
    Risc,
    /// Anything else outside `/_fake/` (answered 501).
    Other,
}

impl Endpoint {
    /// The endpoint's name as used in the control API and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Revoke => "revoke",
            Self::Certs => "certs",
            Self::Drive => "drive",
            Self::Upload => "upload",
            Self::Userinfo => "userinfo",
            Self::Tokeninfo => "tokeninfo",
            Self::Discovery => "discovery",
            Self::Authorize => "authorize",
            Self::Risc => "risc",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fault to inject into the next `times` requests to `endpoint`: `POST /_fake/faults`.
///
/// A fault with only `delay_ms` delays the real answer; with `status`, `body` or
/// `malformed_json` it replaces the answer; with `drop_connection` the connection is closed
/// without an answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The endpoint to hit.
    pub endpoint: Endpoint,
    /// Status of the replacement answer (default 200 when only `body`/`malformed_json` is given,
    /// else the status alone gets a Google-style error body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Replacement body: a JSON string is sent as raw text, anything else as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Delay before answering, in milliseconds (at most 600,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Close the connection without answering.
    #[serde(default)]
    pub drop_connection: bool,
    /// Answer a truncated JSON document (`Content-Type: application/json`).
    #[serde(default)]
    pub malformed_json: bool,
    /// How many requests it applies to (default 1, at most 10,000).
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// A fault on `endpoint` answering `status` once.
    pub fn status(endpoint: Endpoint, status: u16) -> Self {
        Self {
            endpoint,
            status: Some(status),
            ..Self::blank(endpoint)
        }
    }

    /// A fault on `endpoint` closing the connection once.
    pub fn drop_connection(endpoint: Endpoint) -> Self {
        Self {
            drop_connection: true,
            ..Self::blank(endpoint)
        }
    }

    /// A fault on `endpoint` answering truncated JSON once.
    pub fn malformed_json(endpoint: Endpoint) -> Self {
        Self {
            malformed_json: true,
            ..Self::blank(endpoint)
        }
    }

    /// A fault on `endpoint` delaying the real answer once.
    pub fn delay(endpoint: Endpoint, delay_ms: u64) -> Self {
        Self {
            delay_ms: Some(delay_ms),
            ..Self::blank(endpoint)
        }
    }

    /// Applies the fault to the next `times` requests instead of one.
    #[must_use]
    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    /// Sets the replacement body.
    #[must_use]
    pub fn with_body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    fn blank(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            status: None,
            body: None,
            delay_ms: None,
            drop_connection: false,
            malformed_json: false,
            times: 1,
        }
    }

    /// Whether the fault replaces the real answer (or drops the connection) rather than only
    /// delaying it.
    pub(crate) fn replaces_answer(&self) -> bool {
        self.drop_connection || self.malformed_json || self.status.is_some() || self.body.is_some()
    }

    /// What kind of fault this is, as recorded in the journal.
    pub(crate) fn kind(&self) -> &'static str {
        if self.drop_connection {
            "drop_connection"
        } else if self.malformed_json {
            "malformed_json"
        } else if self.status.is_some() || self.body.is_some() {
            "status"
        } else {
            "delay"
        }
    }
}

/// One request the fake answered (oldest first in [`crate::Control::requests`]); never holds a
/// token, code or secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Which endpoint (`token`, `revoke`, `certs`, `drive`, `upload`, `userinfo`, `tokeninfo`,
    /// `discovery`, `authorize`, `risc`, `other`), or `risc_delivery` for a Security Event Token
    /// the fake POSTed to a RISC receiver.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Path without the query string; for a `risc_delivery`, the receiver's URL without its query.
    pub path: String,
    /// Status answered (for a `risc_delivery`, the receiver's); 0 when the connection was dropped
    /// by a fault (or the receiver could not be reached).
    pub status: u16,
    /// The token request's `grant_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
    /// The user the request acted for, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The client the request authenticated as, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The kind of fault that fired (`status`, `delay`, `drop_connection`, `malformed_json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// A `risc_delivery`'s event type (`tokens-revoked`, `verification`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// A `risc_delivery`'s `jti` (the same for every repeat of one token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Why a `risc_delivery` failed: the receiver was unreachable or timed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One user's grant to one client: `GET /_fake/users/{sub}/grants` and [`crate::Control::grants`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// The web client the user granted.
    pub client_id: String,
    /// Every scope granted since the last revocation (expanded, first granted first); empty once
    /// revoked.
    pub scopes: Vec<String>,
    /// Whether a refresh token was handed out since the last revocation (if not, the next
    /// exchanged code yields one).
    pub has_refresh_token: bool,
}

/// An OAuth client registered with the fake.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    /// The client ID.
    pub client_id: String,
    /// The client secret (a secret: redacted from Debug).
    pub client_secret: String,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// A control request the fake refused (HTTP 400 with `{"error": "bad_request", "message"}`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ControlError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let minted = MintedCode {
            code: "4/0secret-code".into(),
            sub: "1".into(),
        };
        assert!(!format!("{minted:?}").contains("secret-code"));
        let client = OAuthClient {
            client_id: "id".into(),
            client_secret: "GOCSPX-hidden".into(),
        };
        assert!(!format!("{client:?}").contains("hidden"));
    }

    #[test]
    fn scopes_deserialize_from_a_list_or_a_spaced_string() {
        let a: CodeRequest =
            serde_json::from_str(r#"{"email":"a@b.c","scopes":"openid  email"}"#).unwrap();
        let b: CodeRequest =
            serde_json::from_str(r#"{"email":"a@b.c","scopes":["openid","email"]}"#).unwrap();
        assert_eq!(a.scopes, b.scopes);
        assert_eq!(a.scopes.unwrap(), vec!["openid", "email"]);
    }

    #[test]
    fn granted_scopes_parse_like_scopes_and_bad_shapes_name_the_field() {
        let a: CodeRequest = serde_json::from_str(
            r#"{"email":"a@b.c","granted_scopes":"x y","include_granted_scopes":true}"#,
        )
        .unwrap();
        assert_eq!(a.granted_scopes.unwrap(), vec!["x", "y"]);
        assert!(a.include_granted_scopes);
        let e = serde_json::from_str::<CodeRequest>(r#"{"email":"a@b.c","granted_scopes":7}"#)
            .unwrap_err();
        assert!(e.to_string().contains("granted_scopes must be"), "{e}");
        let e =
            serde_json::from_str::<CodeRequest>(r#"{"email":"a@b.c","scopes":[1]}"#).unwrap_err();
        assert!(e.to_string().contains("scopes must be"), "{e}");
        // Defaults leave the fields out when serialized.
        let json = serde_json::to_value(CodeRequest::new("a@b.c")).unwrap();
        assert_eq!(json, serde_json::json!({"email": "a@b.c"}));
    }

    #[test]
    fn a_fault_defaults_to_one_use_and_names_its_kind() {
        let f: Fault = serde_json::from_str(r#"{"endpoint":"token","status":503}"#).unwrap();
        assert_eq!(f.times, 1);
        assert_eq!(f.kind(), "status");
        assert_eq!(Fault::delay(Endpoint::Drive, 5).kind(), "delay");
        assert_eq!(
            Fault::drop_connection(Endpoint::Drive).kind(),
            "drop_connection"
        );
        assert_eq!(
            Fault::malformed_json(Endpoint::Drive).kind(),
            "malformed_json"
        );
    }
}
