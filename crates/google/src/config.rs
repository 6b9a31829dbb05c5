//! Configuration: the Google client secret file and the adapter's settings.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::proxy::ProxyHosts;

/// Why the adapter's configuration was refused. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The client secret file could not be read.
    #[error("cannot read the Google client secret file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong (an I/O error kind).
        reason: String,
    },
    /// The client secret JSON is not a Google `client_secret_*.json`.
    #[error("the Google client secret JSON is invalid: {0}")]
    ClientSecret(String),
    /// A setting is out of range or malformed; names the setting.
    #[error("google.{key} is invalid: {reason}")]
    Invalid {
        /// The setting, as named in the configuration (`leeway`, `base_url`, ...).
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client for Google: {0}")]
    HttpClient(String),
    /// An `internal.proxy_hosts` entry is not a host name or `*.` and a host name; quotes the entry.
    #[error("internal.proxy_hosts is invalid: {0}")]
    ProxyHosts(String),
}

/// Which kind of OAuth client a secret file describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A "Web application" client (`{"web": {...}}`), what a server should use.
    Web,
    /// An "installed"/desktop client (`{"installed": {...}}`), accepted too.
    Installed,
}

/// A Google OAuth client secret file (`client_secret_*.json` from the Google API Console).
///
/// `Debug` redacts the secret.
#[derive(Clone)]
pub struct ClientSecret {
    /// The OAuth client ID (the "server client ID" the Android app requests codes for).
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// `token_uri` as written in the file, when present.
    pub token_uri: Option<String>,
    /// `redirect_uris` as written in the file.
    pub redirect_uris: Vec<String>,
    /// Whether the file held a `web` or an `installed` client.
    pub kind: ClientKind,
}

#[derive(Deserialize)]
struct SecretFile {
    web: Option<SecretBody>,
    installed: Option<SecretBody>,
}

#[derive(Deserialize)]
struct SecretBody {
    client_id: Option<String>,
    client_secret: Option<String>,
    token_uri: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
}

impl ClientSecret {
    /// Parses a client secret file's JSON; accepts `{"web": {...}}` and `{"installed": {...}}`.
    ///
    /// # Errors
    /// [`ConfigError::ClientSecret`] when the JSON is malformed, has neither (or both) objects, or lacks a
    /// non-empty `client_id` or `client_secret`. The message never quotes the file's content.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let file: SecretFile =
            serde_json::from_str(json).map_err(|e| ConfigError::ClientSecret(unquoted(&e)))?;
        let (body, kind) = match (file.web, file.installed) {
            (Some(body), None) => (body, ClientKind::Web),
            (None, Some(body)) => (body, ClientKind::Installed),
            (Some(_), Some(_)) => {
                return Err(ConfigError::ClientSecret(
                    "it has both a `web` and an `installed` client; keep one".into(),
                ));
            }
            (None, None) => {
                return Err(ConfigError::ClientSecret(
                    "it has neither a `web` nor an `installed` object".into(),
                ));
            }
        };
        let client_id = body
            .client_id
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| ConfigError::ClientSecret("`client_id` is missing or empty".into()))?;
        let client_secret = body
            .client_secret
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConfigError::ClientSecret("`client_secret` is missing or empty".into())
            })?;
        Ok(Self {
            client_id,
            client_secret: SecretString::from(client_secret),
            token_uri: body.token_uri,
            redirect_uris: body.redirect_uris,
            kind,
        })
    }

    /// Reads and parses a client secret file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read; otherwise as [`ClientSecret::from_json`].
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let json = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.kind().to_string(),
        })?;
        Self::from_json(&json)
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecret")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("token_uri", &self.token_uri)
            .field("redirect_uris", &self.redirect_uris)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Largest accepted leeway for `exp`/`iat` checks.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The adapter's settings. Build with [`GoogleConfig::new`] and adjust the public fields.
///
/// `Debug` redacts the secret.
#[derive(Clone)]
pub struct GoogleConfig {
    /// The server (web) OAuth client ID: the required `aud` of ID tokens.
    pub client_id: String,
    /// The client secret, sent as `client_secret` (client_secret_post).
    pub client_secret: SecretString,
    /// One URL replacing every Google host, keeping Google's paths (for a fake Google). `None` = real Google.
    pub base_url: Option<String>,
    /// The `redirect_uri` sent on code exchange: `""` for Android codes (the default), `postmessage` for web.
    pub redirect_uri: String,
    /// Android client IDs accepted as `azp`; empty = `azp` not checked. When non-empty, the effective `azp`
    /// (the claim, or `client_id` when the claim is absent) must be one of these or `client_id` itself.
    pub allowed_azp: Vec<String>,
    /// Required `hd` (Google Workspace domain), when set.
    pub hosted_domain: Option<String>,
    /// Clock skew allowed on `exp`, `iat` and `nbf`, both ways. Default 60 s, at most 300 s.
    pub leeway: Duration,
    /// TCP + TLS connect timeout. Default 5 s.
    pub connect_timeout: Duration,
    /// Whole-request timeout. Default 10 s.
    pub request_timeout: Duration,
    /// How long cached signing keys keep serving past their expiry while fetches fail. Default 1 h.
    pub jwks_grace: Duration,
    /// How many verified ID tokens are remembered (by digest) so a repeated Bearer skips the RSA verification;
    /// 0 turns it off. Default 10,000 (about 3 MB).
    pub verified_token_cache: usize,
    /// An extra trusted root CA (PEM), e.g. the fake Google's `--tls` CA. Certificates are always verified.
    pub extra_root_ca_pem: Option<Vec<u8>>,
    /// The hosts the Google API proxy may reach (`internal.proxy_hosts`: set it to what the HTTP adapter checks).
    /// Default `www.googleapis.com` and `*.googleapis.com`.
    pub proxy_hosts: ProxyHosts,
}

impl GoogleConfig {
    /// Settings with the defaults: real Google, `redirect_uri` `""`, no `azp`/`hd` checks, leeway 60 s,
    /// timeouts 5 s / 10 s, JWKS grace 1 h, 10,000 verified tokens remembered, the default proxy hosts.
    #[must_use]
    pub fn new(client_id: String, client_secret: SecretString) -> Self {
        Self {
            client_id,
            client_secret,
            base_url: None,
            redirect_uri: String::new(),
            allowed_azp: Vec::new(),
            hosted_domain: None,
            leeway: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            jwks_grace: Duration::from_secs(3600),
            verified_token_cache: 10_000,
            extra_root_ca_pem: None,
            proxy_hosts: ProxyHosts::default(),
        }
    }

    /// Settings for the client in a secret file (its ID and secret; other settings at their defaults).
    #[must_use]
    pub fn from_client_secret(secret: &ClientSecret) -> Self {
        Self::new(secret.client_id.clone(), secret.client_secret.clone())
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.client_id.trim().is_empty() {
            return Err(invalid("client_id", "it is empty"));
        }
        if secrecy::ExposeSecret::expose_secret(&self.client_secret).is_empty() {
            return Err(invalid("client_secret", "it is empty"));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(invalid("leeway", "it must be at most 300 seconds"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout", "it must be more than zero"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "it must be more than zero"));
        }
        if self.redirect_uri.chars().any(char::is_control) {
            return Err(invalid("redirect_uri", "it contains a control character"));
        }
        Ok(())
    }
}

impl fmt::Debug for GoogleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("base_url", &self.base_url)
            .field("redirect_uri", &self.redirect_uri)
            .field("allowed_azp", &self.allowed_azp)
            .field("hosted_domain", &self.hosted_domain)
            .field("leeway", &self.leeway)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("jwks_grace", &self.jwks_grace)
            .field("verified_token_cache", &self.verified_token_cache)
            .field(
                "extra_root_ca_pem",
                &self
                    .extra_root_ca_pem
                    .as_ref()
                    .map(|pem| format!("{} bytes", pem.len())),
            )
            .field("proxy_hosts", &self.proxy_hosts.to_string())
            .finish()
    }
}

/// A JSON error of a file holding a secret, by its class and position only: serde_json's messages can quote values.
pub(crate) fn unquoted(error: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        error.classify(),
        error.line(),
        error.column()
    )
}

fn invalid(key: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.to_owned(),
    }
}

/// Google's URLs, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) token: Url,
    pub(crate) revoke: Url,
    pub(crate) certs: Url,
    /// `.../drive/v3/files` (no trailing slash).
    pub(crate) drive_files: String,
    /// `.../.well-known/risc-configuration`: the RISC discovery document (`issuer`, `jwks_uri`).
    pub(crate) risc_configuration: Url,
    /// The RISC management API's base (`https://risc.googleapis.com`, no trailing slash).
    pub(crate) risc_api: String,
    /// `.../upload/drive/v3/files` (no trailing slash).
    pub(crate) upload_files: String,
    /// The base URL every Google API host maps to (the proxy keeps the caller's path under its path); `None` =
    /// real Google, each host itself.
    pub(crate) proxy_base: Option<Url>,
}

const OAUTH_HOST: &str = "https://oauth2.googleapis.com";
const APIS_HOST: &str = "https://www.googleapis.com";
const ACCOUNTS_HOST: &str = "https://accounts.google.com";
const RISC_HOST: &str = "https://risc.googleapis.com";

impl Endpoints {
    pub(crate) fn resolve(base_url: Option<&str>) -> Result<Self, ConfigError> {
        let (oauth, apis, accounts, risc, proxy_base) = match base_url {
            None => (
                OAUTH_HOST.to_owned(),
                APIS_HOST.to_owned(),
                ACCOUNTS_HOST.to_owned(),
                RISC_HOST.to_owned(),
                None,
            ),
            Some(base) => {
                let parsed = Url::parse(base)
                    .map_err(|e| invalid("base_url", &format!("it is not a URL ({e})")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(invalid("base_url", "it must be an http or https URL"));
                }
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(invalid("base_url", "it has no host"));
                }
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(invalid("base_url", "it must not have a query or fragment"));
                }
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(invalid("base_url", "it must not hold credentials"));
                }
                let base = parsed.as_str().trim_end_matches('/').to_owned();
                (base.clone(), base.clone(), base.clone(), base, Some(parsed))
            }
        };
        let url = |s: String| {
            Url::parse(&s).map_err(|e| invalid("base_url", &format!("cannot build {s}: {e}")))
        };
        Ok(Self {
            token: url(format!("{oauth}/token"))?,
            revoke: url(format!("{oauth}/revoke"))?,
            certs: url(format!("{apis}/oauth2/v3/certs"))?,
            drive_files: format!("{apis}/drive/v3/files"),
            upload_files: format!("{apis}/upload/drive/v3/files"),
            risc_configuration: url(format!("{accounts}/.well-known/risc-configuration"))?,
            risc_api: risc,
            proxy_base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_google_hosts_are_used_without_a_base_url() {
        let e = Endpoints::resolve(None).unwrap();
        assert_eq!(e.token.as_str(), "https://oauth2.googleapis.com/token");
        assert_eq!(e.proxy_base, None);
        assert_eq!(e.revoke.as_str(), "https://oauth2.googleapis.com/revoke");
        assert_eq!(
            e.certs.as_str(),
            "https://www.googleapis.com/oauth2/v3/certs"
        );
        assert_eq!(e.drive_files, "https://www.googleapis.com/drive/v3/files");
        assert_eq!(
            e.upload_files,
            "https://www.googleapis.com/upload/drive/v3/files"
        );
        assert_eq!(
            e.risc_configuration.as_str(),
            "https://accounts.google.com/.well-known/risc-configuration"
        );
        assert_eq!(e.risc_api, "https://risc.googleapis.com");
    }

    #[test]
    fn a_base_url_replaces_every_host_and_keeps_a_path_prefix() {
        let e = Endpoints::resolve(Some("http://127.0.0.1:9000/fake/")).unwrap();
        assert_eq!(e.token.as_str(), "http://127.0.0.1:9000/fake/token");
        assert_eq!(
            e.proxy_base.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:9000/fake/")
        );
        assert_eq!(
            e.certs.as_str(),
            "http://127.0.0.1:9000/fake/oauth2/v3/certs"
        );
        assert_eq!(
            e.upload_files,
            "http://127.0.0.1:9000/fake/upload/drive/v3/files"
        );
        assert_eq!(
            e.risc_configuration.as_str(),
            "http://127.0.0.1:9000/fake/.well-known/risc-configuration"
        );
        assert_eq!(e.risc_api, "http://127.0.0.1:9000/fake");
    }

    #[test]
    fn bad_base_urls_are_refused_naming_the_setting() {
        for bad in ["not a url", "ftp://x", "http://x/?q=1", "http://u:p@x/"] {
            let err = Endpoints::resolve(Some(bad)).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        key: "base_url",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn leeway_over_five_minutes_is_refused() {
        let mut config = GoogleConfig::new("id".into(), SecretString::from("s"));
        config.leeway = Duration::from_secs(301);
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid { key: "leeway", .. })
        ));
        config.leeway = Duration::from_secs(300);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn debug_output_redacts_the_secret() {
        let config = GoogleConfig::new("id".into(), SecretString::from("canary-secret"));
        assert!(!format!("{config:?}").contains("canary"));
        let secret = ClientSecret::from_json(
            r#"{"web":{"client_id":"id","client_secret":"canary-secret"}}"#,
        )
        .unwrap();
        assert!(!format!("{secret:?}").contains("canary"));
    }

    #[test]
    fn web_and_installed_client_files_are_accepted() {
        let web = ClientSecret::from_json(
            r#"{"web":{"client_id":"w.apps.googleusercontent.com","client_secret":"s","token_uri":"https://oauth2.googleapis.com/token","redirect_uris":["https://x/cb"]}}"#,
        )
        .unwrap();
        assert_eq!(web.kind, ClientKind::Web);
        assert_eq!(web.client_id, "w.apps.googleusercontent.com");
        assert_eq!(web.redirect_uris, ["https://x/cb"]);
        let installed =
            ClientSecret::from_json(r#"{"installed":{"client_id":"i","client_secret":"s"}}"#)
                .unwrap();
        assert_eq!(installed.kind, ClientKind::Installed);
        assert_eq!(installed.token_uri, None);
    }

    #[test]
    fn a_client_secret_file_is_read_from_disk_and_a_missing_one_is_named() {
        let path = std::env::temp_dir().join(format!(
            "offline-access-google-client-secret-{}.json",
            std::process::id()
        ));
        std::fs::write(
            &path,
            r#"{"web":{"client_id":"w","client_secret":"s","token_uri":"http://127.0.0.1:1/token"}}"#,
        )
        .unwrap();
        let secret = ClientSecret::from_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(secret.client_id, "w");
        assert_eq!(
            secret.token_uri.as_deref(),
            Some("http://127.0.0.1:1/token")
        );
        let err = ClientSecret::from_file(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("client-secret"), "{err}");
    }

    #[test]
    fn malformed_client_files_are_refused_without_quoting_them() {
        for bad in [
            r#"{"web":{"client_id":"id"}}"#,
            r#"{"web":{"client_secret":"canary"}}"#,
            r#"{"other":{}}"#,
            r#"{"web":{"client_id":"a","client_secret":"b"},"installed":{"client_id":"a","client_secret":"b"}}"#,
            r#"{"web":{"client_id":"id","client_secret":12345678}}"#,
            r#"{"web":{"client_id":"id","client_secret":"canary"#,
            "[]",
        ] {
            let err = ClientSecret::from_json(bad).unwrap_err();
            assert!(matches!(err, ConfigError::ClientSecret(_)), "{bad}");
            assert!(!err.to_string().contains("canary"), "{err}");
            assert!(!err.to_string().contains("12345678"), "{err}");
        }
    }
}
