//! Configuration: built-in defaults (`config.default.toml`) < a TOML file < `OFFLINE_ACCESS_*` environment
//! variables, then validation that names the bad key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The commented defaults, compiled in.
pub(crate) const DEFAULTS: &str = include_str!("../config.default.toml");

/// The config file read when `--config` is not given, if it exists.
pub(crate) const DEFAULT_FILE: &str = "offline-access.toml";

/// The environment variable prefix.
pub(crate) const ENV_PREFIX: &str = "OFFLINE_ACCESS_";

/// Largest accepted `google.leeway_secs`.
pub(crate) const MAX_LEEWAY_SECS: u64 = 300;
/// Largest accepted `store.credential_cache_ms`: another instance's forget must be seen within a minute.
pub(crate) const MAX_CREDENTIAL_CACHE_MS: u64 = 60_000;

/// What is printed in place of a secret.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// A configuration that could not be loaded or is invalid. The message is one sentence naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub(crate) String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The effective configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Where the HTTP API listens.
    pub(crate) listen: SocketAddr,
    /// Google client and endpoints.
    pub(crate) google: GoogleSection,
    /// The credential store.
    pub(crate) store: StoreSection,
    /// Encryption at rest.
    pub(crate) security: SecuritySection,
    /// HTTP API limits.
    pub(crate) http: HttpSection,
    /// Logging.
    pub(crate) log: LogSection,
    /// HTTPS served directly.
    #[serde(default)]
    pub(crate) tls: TlsSection,
    /// The internal API.
    pub(crate) internal: InternalSection,
    /// Webhooks to the team.
    pub(crate) webhooks: WebhooksSection,
}

/// `[webhooks]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhooksSection {
    /// `webhooks.url`: unset = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    /// `webhooks.secret`: `whsec_<base64>`.
    #[serde(
        default,
        serialize_with = "redact_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) secret: Option<SecretString>,
    /// `webhooks.min_retry_ms`.
    pub(crate) min_retry_ms: u64,
    /// `webhooks.max_retry_ms`.
    pub(crate) max_retry_ms: u64,
    /// `webhooks.give_up_after_hours`.
    pub(crate) give_up_after_hours: u64,
    /// `webhooks.timeout_secs`.
    pub(crate) timeout_secs: u64,
}

/// `[internal]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InternalSection {
    /// `internal.listen`: unset = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) listen: Option<SocketAddr>,
    /// `internal.api_keys`: `NAME:sha256:HEX` entries.
    #[serde(default, deserialize_with = "string_list")]
    pub(crate) api_keys: Vec<String>,
    /// `internal.proxy_hosts`.
    #[serde(default, deserialize_with = "string_list")]
    pub(crate) proxy_hosts: Vec<String>,
}

/// `[google]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GoogleSection {
    /// `google.client_secret_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_secret_file: Option<PathBuf>,
    /// `google.base_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) base_url: Option<String>,
    /// `google.redirect_uri`.
    #[serde(default)]
    pub(crate) redirect_uri: String,
    /// `google.allowed_azp`.
    #[serde(default, deserialize_with = "string_list")]
    pub(crate) allowed_azp: Vec<String>,
    /// `google.hosted_domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hosted_domain: Option<String>,
    /// `google.leeway_secs`.
    pub(crate) leeway_secs: u64,
    /// `google.connect_timeout_secs`.
    pub(crate) connect_timeout_secs: u64,
    /// `google.request_timeout_secs`.
    pub(crate) request_timeout_secs: u64,
    /// `google.jwks_grace_secs`.
    pub(crate) jwks_grace_secs: u64,
    /// `google.verified_token_cache`.
    pub(crate) verified_token_cache: usize,
    /// `google.ca_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<PathBuf>,
    /// `google.required_scopes`.
    #[serde(default, deserialize_with = "string_list")]
    pub(crate) required_scopes: Vec<String>,
}

/// `store.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreKind {
    /// One encrypted file per user.
    File,
    /// PostgreSQL (`store.url`).
    Postgres,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreSection {
    /// `store.kind`.
    pub(crate) kind: StoreKind,
    /// `store.path`.
    pub(crate) path: PathBuf,
    /// `store.url` (may carry a password).
    #[serde(
        default,
        serialize_with = "redact_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) url: Option<SecretString>,
    /// `store.migrate_on_start`.
    pub(crate) migrate_on_start: bool,
    /// `store.schema` (Postgres).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema: Option<String>,
    /// `store.ca_file` (Postgres over TLS): PEM roots for `sslmode=verify-ca|verify-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<PathBuf>,
    /// `store.pool_size` (Postgres).
    pub(crate) pool_size: usize,
    /// `store.credential_cache_ms`.
    pub(crate) credential_cache_ms: u64,
}

/// `[security]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecuritySection {
    /// `security.encryption_keys`: `ID:BASE64KEY,...`, newest first (a list is joined with commas).
    #[serde(
        default,
        deserialize_with = "secret_list",
        serialize_with = "redact_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) encryption_keys: Option<SecretString>,
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpSection {
    /// `http.authcode_rate_limit`.
    pub(crate) authcode_rate_limit: u32,
    /// `http.trusted_proxies`: IP addresses (validated).
    #[serde(default, deserialize_with = "string_list")]
    pub(crate) trusted_proxies: Vec<String>,
    /// `http.body_limit`.
    pub(crate) body_limit: usize,
    /// `http.drive_body_limit`.
    pub(crate) drive_body_limit: usize,
    /// `http.request_timeout_secs`.
    pub(crate) request_timeout_secs: u64,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogSection {
    /// `log.level`.
    pub(crate) level: String,
    /// `log.format`.
    pub(crate) format: LogFormat,
}

/// `[tls]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// `tls.cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cert: Option<PathBuf>,
    /// `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<PathBuf>,
}

/// Where the configuration came from (for `check-config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Only defaults and the environment.
    DefaultsOnly,
    /// This file.
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultsOnly => f.write_str("built-in defaults and environment"),
            Self::File(path) => write!(f, "built-in defaults, {} and environment", path.display()),
        }
    }
}

impl Config {
    /// Loads defaults < `file` (or `offline-access.toml` when present) < environment, and validates.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file or key that is wrong.
    pub(crate) fn load(file: Option<&Path>) -> Result<(Self, Source), ConfigError> {
        let source = match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::new(format!(
                        "the config file {} does not exist; check --config",
                        path.display()
                    )));
                }
                Source::File(path.to_path_buf())
            }
            None if Path::new(DEFAULT_FILE).is_file() => Source::File(PathBuf::from(DEFAULT_FILE)),
            None => Source::DefaultsOnly,
        };
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Source::File(path) = &source {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let config: Self = figment.extract().map_err(figment_error)?;
        config.validate()?;
        Ok((config, source))
    }

    /// The built-in defaults alone (no file, no environment), validated.
    ///
    /// # Errors
    /// Only if the compiled-in defaults are invalid, which the tests rule out.
    pub(crate) fn defaults() -> Result<Self, ConfigError> {
        let config: Self = Figment::from(Toml::string(DEFAULTS))
            .extract()
            .map_err(figment_error)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every rule that serde alone does not, naming the key of the first violation.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad key.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let g = &self.google;
        if g.leeway_secs > MAX_LEEWAY_SECS {
            return Err(ConfigError::new(format!(
                "google.leeway_secs must be at most {MAX_LEEWAY_SECS} (it is {})",
                g.leeway_secs
            )));
        }
        if self.store.credential_cache_ms > MAX_CREDENTIAL_CACHE_MS {
            return Err(ConfigError::new(format!(
                "store.credential_cache_ms must be at most {MAX_CREDENTIAL_CACHE_MS} (it is {}): another \
                 instance's forget or revocation is seen only after it",
                self.store.credential_cache_ms
            )));
        }
        for (key, value) in [
            ("google.connect_timeout_secs", g.connect_timeout_secs),
            ("google.request_timeout_secs", g.request_timeout_secs),
            ("http.request_timeout_secs", self.http.request_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::new(format!("{key} must be at least 1")));
            }
        }
        if let Some(base_url) = &g.base_url {
            match url::Url::parse(base_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
                _ => {
                    return Err(ConfigError::new(format!(
                        "google.base_url must be an http:// or https:// URL (it is {base_url:?})"
                    )));
                }
            }
        }
        if let Some(path) = &g.client_secret_file
            && path.as_os_str().is_empty()
        {
            return Err(ConfigError::new(
                "google.client_secret_file must not be empty; unset it or name the client secret JSON file",
            ));
        }
        if g.allowed_azp.iter().any(|azp| azp.trim().is_empty()) {
            return Err(ConfigError::new(
                "google.allowed_azp must not contain empty client IDs",
            ));
        }
        if g.hosted_domain.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new(
                "google.hosted_domain must not be empty; unset it to accept any account",
            ));
        }
        if self.store.path.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "store.path must name the file store's directory",
            ));
        }
        if self.store.kind == StoreKind::Postgres {
            self.require_store_url()?;
        }
        if self.store.pool_size == 0 {
            return Err(ConfigError::new("store.pool_size must be at least 1"));
        }
        if let Some(schema) = &self.store.schema {
            let valid = !schema.is_empty()
                && schema.len() <= 63
                && !schema.starts_with("pg_")
                && !schema.starts_with(|c: char| c.is_ascii_digit())
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(ConfigError::new(format!(
                    "store.schema {schema:?} must be 1 to 63 lowercase letters, digits and `_`, not starting with a \
                     digit or pg_"
                )));
            }
        }
        if self.http.body_limit == 0 || self.http.drive_body_limit == 0 {
            return Err(ConfigError::new(
                "http.body_limit and http.drive_body_limit must be at least 1 byte",
            ));
        }
        for proxy in &self.http.trusted_proxies {
            if proxy.parse::<std::net::IpAddr>().is_err() {
                return Err(ConfigError::new(format!(
                    "http.trusted_proxies entry {proxy:?} must be an IP address such as 10.0.0.7"
                )));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return Err(ConfigError::new(format!(
                "log.level {:?} is not a valid log filter ({e}); use e.g. \"info\" or \"offline_access=debug,info\"",
                self.log.level
            )));
        }
        match (&self.tls.cert, &self.tls.key) {
            (None, None) => {}
            (Some(_), Some(_)) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::new(
                    "tls.cert and tls.key must be set together; set both to serve HTTPS, or neither",
                ));
            }
        }
        if offline_access_domain::Scopes::from_iter_checked(
            g.required_scopes.iter().map(String::as_str),
        )
        .is_err()
        {
            return Err(ConfigError::new(
                "google.required_scopes must hold non-empty scopes of visible ASCII, e.g. \
                 https://www.googleapis.com/auth/drive.appdata",
            ));
        }
        self.internal_api_keys()?;
        if self.internal.listen.is_some() && self.internal.api_keys.is_empty() {
            return Err(ConfigError::new(format!(
                "internal.listen is set but internal.api_keys is empty, so no service could call the internal API; \
                 make a key with `offline-access api-key new NAME` and put its entry in internal.api_keys \
                 (env {ENV_PREFIX}INTERNAL__API_KEYS)"
            )));
        }
        self.proxy_hosts()?;
        self.webhooks_validate()?;
        if let Some(keys) = &self.security.encryption_keys
            && keys.expose_secret().trim().is_empty()
        {
            return Err(ConfigError::new(
                "security.encryption_keys must not be empty; unset it or give ID:BASE64KEY entries",
            ));
        }
        Ok(())
    }

    /// The effective values as TOML, with every secret shown as `[REDACTED]`.
    ///
    /// # Errors
    /// Only if serialization fails, which the types here rule out.
    pub(crate) fn to_redacted_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self)
            .map_err(|e| ConfigError::new(format!("could not render the configuration: {e}")))
    }

    /// The configured client secret file, or an error naming the setting.
    ///
    /// # Errors
    /// When `google.client_secret_file` is not set.
    pub(crate) fn require_client_secret_file(&self) -> Result<&Path, ConfigError> {
        self.google.client_secret_file.as_deref().ok_or_else(|| {
            ConfigError::new(format!(
                "google.client_secret_file is not set; download the Web-application client secret JSON from the \
                 Google API Console and set google.client_secret_file (env {ENV_PREFIX}GOOGLE__CLIENT_SECRET_FILE) \
                 to its path"
            ))
        })
    }

    fn webhooks_validate(&self) -> Result<(), ConfigError> {
        let w = &self.webhooks;
        if w.min_retry_ms == 0 || w.max_retry_ms < w.min_retry_ms {
            return Err(ConfigError::new(format!(
                "webhooks.min_retry_ms must be at least 1 and webhooks.max_retry_ms at least that (they are {} and {})",
                w.min_retry_ms, w.max_retry_ms
            )));
        }
        if w.give_up_after_hours == 0 || w.timeout_secs == 0 {
            return Err(ConfigError::new(
                "webhooks.give_up_after_hours and webhooks.timeout_secs must be at least 1",
            ));
        }
        match (&w.url, &w.secret) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(ConfigError::new(format!(
                "webhooks.url is set but webhooks.secret is not; set webhooks.secret (env \
                 {ENV_PREFIX}WEBHOOKS__SECRET) to a whsec_ secret, e.g. from `offline-access webhooks secret`"
            ))),
            (Some(url), Some(secret)) => self.webhook_config(url, secret).map(|_| ()),
        }
    }

    /// The webhook sender's configuration, when `webhooks.url` is set.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `webhooks.url` or `webhooks.secret`.
    pub(crate) fn webhooks(
        &self,
    ) -> Result<Option<offline_access_webhooks::WebhookConfig>, ConfigError> {
        match (&self.webhooks.url, &self.webhooks.secret) {
            (Some(url), Some(secret)) => self.webhook_config(url, secret).map(Some),
            _ => Ok(None),
        }
    }

    fn webhook_config(
        &self,
        url: &str,
        secret: &SecretString,
    ) -> Result<offline_access_webhooks::WebhookConfig, ConfigError> {
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                ConfigError::new(format!(
                    "webhooks.url must be an http:// or https:// URL (it is {url:?})"
                ))
            })?;
        offline_access_webhooks::WebhookConfig::new(
            parsed,
            secret.expose_secret(),
            std::time::Duration::from_secs(self.webhooks.timeout_secs),
        )
        .map_err(|e| ConfigError::new(e.to_string()))
    }

    /// The webhook retry schedule.
    pub(crate) fn retry_schedule(&self) -> offline_access_domain::delivery::RetrySchedule {
        let w = &self.webhooks;
        offline_access_domain::delivery::RetrySchedule {
            min: std::time::Duration::from_millis(w.min_retry_ms),
            max: std::time::Duration::from_millis(w.max_retry_ms),
            give_up_after: std::time::Duration::from_secs(
                w.give_up_after_hours.saturating_mul(3600),
            ),
        }
    }

    /// One line saying whether the internal API is on, where, for which keys and hosts (names only).
    pub(crate) fn internal_summary(&self) -> String {
        match self.internal.listen {
            None => "internal API: off (set internal.listen to serve it)".to_owned(),
            Some(addr) => {
                let names: Vec<&str> = self
                    .internal
                    .api_keys
                    .iter()
                    .filter_map(|e| e.split(':').next())
                    .collect();
                format!(
                    "internal API: on at {addr}, {} key(s): {}; proxy hosts: {}",
                    names.len(),
                    names.join(", "),
                    self.internal.proxy_hosts.join(", ")
                )
            }
        }
    }

    /// `internal.api_keys`, parsed.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad entry.
    pub(crate) fn internal_api_keys(&self) -> Result<offline_access_http::ApiKeys, ConfigError> {
        offline_access_http::ApiKeys::parse(&self.internal.api_keys)
            .map_err(|e| ConfigError::new(e.to_string()))
    }

    /// `internal.proxy_hosts`, parsed.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad entry.
    pub(crate) fn proxy_hosts(&self) -> Result<offline_access_google::ProxyHosts, ConfigError> {
        offline_access_google::ProxyHosts::parse(&self.internal.proxy_hosts)
            .map_err(|e| ConfigError::new(e.to_string()))
    }

    /// `google.required_scopes`, parsed (validated by [`Config::validate`]).
    pub(crate) fn required_scopes(&self) -> offline_access_domain::Scopes {
        offline_access_domain::Scopes::from_iter_checked(
            self.google.required_scopes.iter().map(String::as_str),
        )
        .unwrap_or_default()
    }

    /// The configured Postgres URL, or an error naming the setting.
    ///
    /// # Errors
    /// When `store.url` is not set.
    pub(crate) fn require_store_url(&self) -> Result<&SecretString, ConfigError> {
        self.store.url.as_ref().ok_or_else(|| {
            ConfigError::new(format!(
                "store.url is not set but store.kind is \"postgres\"; set store.url (env {ENV_PREFIX}STORE__URL) \
                 to the database URL, e.g. postgres://user@127.0.0.1:5432/offline_access"
            ))
        })
    }

    /// The configured encryption keys, or an error naming the setting and how to make one.
    ///
    /// # Errors
    /// When `security.encryption_keys` is not set.
    pub(crate) fn require_encryption_keys(&self) -> Result<&SecretString, ConfigError> {
        self.security.encryption_keys.as_ref().ok_or_else(|| {
            ConfigError::new(format!(
                "security.encryption_keys is not set; generate a key with `offline-access keys generate` (or \
                 `echo \"k1:$(openssl rand -base64 32)\"`) and set security.encryption_keys \
                 (env {ENV_PREFIX}SECURITY__ENCRYPTION_KEYS) to it"
            ))
        })
    }
}

/// Turns figment's error into one sentence naming the key and where the value came from.
fn figment_error(error: figment::Error) -> ConfigError {
    let first = error.into_iter().next();
    let Some(e) = first else {
        return ConfigError::new("the configuration could not be loaded");
    };
    let key = e.path.join(".");
    let origin = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            _ if m.name.contains("environment") && !e.path.is_empty() => {
                format!(" (from {ENV_PREFIX}{})", e.path.join("__").to_uppercase())
            }
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    let kind = redact_kind(&e.kind);
    if key.is_empty() {
        ConfigError::new(format!("invalid configuration{origin}: {kind}"))
    } else {
        ConfigError::new(format!("{key} is invalid{origin}: {kind}"))
    }
}

/// serde's name of an expected type in words an operator knows (no `usize`, `u32`, `ident`).
fn plain_expected(expected: &str) -> String {
    let words = match expected.trim() {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "string" | "str" | "ident" | "an identifier" => "text",
        "socket address" | "a socket address" => "an address with a port, like 127.0.0.1:8080",
        "a sequence" | "sequence" => "a list",
        "a map" | "map" => "a table of keys",
        other => return other.to_owned(),
    };
    words.to_owned()
}

/// figment's message for an error, without echoing the offending value (it could be a secret).
fn redact_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
            format!("expected {}", plain_expected(expected))
        }
        Kind::UnknownVariant(_, expected) => format!("expected one of: {}", expected.join(", ")),
        Kind::UnknownField(field, expected) => {
            format!(
                "unknown key `{field}`; expected one of {}",
                expected.join(", ")
            )
        }
        Kind::MissingField(field) => format!("missing key `{field}`"),
        other => other.to_string(),
    }
}

/// Accepts a list of strings, or one comma-separated string (as environment variables give it).
fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v.into_iter().map(|s| s.trim().to_owned()).collect(),
    })
}

/// Accepts a secret as one comma-separated string or a list (joined with commas).
fn secret_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    let list = string_list(deserializer)?;
    Ok(Some(SecretString::from(list.join(","))))
}

fn redact_option<S: Serializer>(
    value: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str(REDACTED),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in(jail: &Jail, file: Option<&str>) -> Result<Config, ConfigError> {
        let _ = jail;
        Config::load(file.map(Path::new)).map(|(c, _)| c)
    }

    #[test]
    fn the_defaults_alone_load_and_match_the_documented_values() {
        Jail::expect_with(|jail| {
            let config = load_in(jail, None).unwrap();
            assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
            assert_eq!(config.google.redirect_uri, "");
            assert!(config.google.allowed_azp.is_empty());
            assert_eq!(config.google.leeway_secs, 60);
            assert_eq!(config.store.kind, StoreKind::File);
            assert_eq!(config.store.path, PathBuf::from("./data"));
            assert!(config.store.migrate_on_start);
            assert!(config.security.encryption_keys.is_none());
            assert!(config.google.client_secret_file.is_none());
            assert_eq!(config.http.authcode_rate_limit, 20);
            assert_eq!(config.http.body_limit, 65536);
            assert_eq!(config.log.level, "info");
            assert_eq!(config.log.format, LogFormat::Text);
            Ok(())
        });
    }

    #[test]
    fn a_config_file_overrides_the_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                r#"
                listen = "0.0.0.0:9000"
                [google]
                client_secret_file = "/etc/oa/client_secret.json"
                allowed_azp = ["android-1.apps.googleusercontent.com"]
                leeway_secs = 30
                [log]
                format = "json"
                "#,
            )?;
            let config = load_in(jail, Some("custom.toml")).unwrap();
            assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
            assert_eq!(
                config.google.client_secret_file,
                Some(PathBuf::from("/etc/oa/client_secret.json"))
            );
            assert_eq!(
                config.google.allowed_azp,
                vec!["android-1.apps.googleusercontent.com"]
            );
            assert_eq!(config.google.leeway_secs, 30);
            assert_eq!(config.log.format, LogFormat::Json);
            Ok(())
        });
    }

    #[test]
    fn offline_access_toml_in_the_working_directory_is_read_when_no_file_is_named() {
        Jail::expect_with(|jail| {
            jail.create_file(DEFAULT_FILE, "[store]\npath = \"/var/lib/oa\"\n")?;
            let (config, source) = Config::load(None).unwrap();
            assert_eq!(config.store.path, PathBuf::from("/var/lib/oa"));
            assert_eq!(source, Source::File(PathBuf::from(DEFAULT_FILE)));
            Ok(())
        });
    }

    #[test]
    fn environment_variables_with_double_underscores_override_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_FILE,
                "listen = \"0.0.0.0:9000\"\n[google]\nleeway_secs = 30\n",
            )?;
            jail.set_env("OFFLINE_ACCESS_LISTEN", "127.0.0.1:0");
            jail.set_env("OFFLINE_ACCESS_GOOGLE__LEEWAY_SECS", "120");
            jail.set_env(
                "OFFLINE_ACCESS_GOOGLE__CLIENT_SECRET_FILE",
                "/run/secrets/client_secret.json",
            );
            jail.set_env("OFFLINE_ACCESS_GOOGLE__ALLOWED_AZP", "a.apps, b.apps");
            jail.set_env("OFFLINE_ACCESS_GOOGLE__REDIRECT_URI", "postmessage");
            jail.set_env("OFFLINE_ACCESS_HTTP__AUTHCODE_RATE_LIMIT", "0");
            jail.set_env("OFFLINE_ACCESS_HTTP__TRUSTED_PROXIES", "10.0.0.7,::1");
            jail.set_env(
                "OFFLINE_ACCESS_SECURITY__ENCRYPTION_KEYS",
                "k2:AAAA,k1:BBBB",
            );
            let config = load_in(jail, None).unwrap();
            assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
            assert_eq!(config.google.leeway_secs, 120);
            assert_eq!(
                config.google.client_secret_file,
                Some(PathBuf::from("/run/secrets/client_secret.json"))
            );
            assert_eq!(config.google.allowed_azp, vec!["a.apps", "b.apps"]);
            assert_eq!(config.google.redirect_uri, "postmessage");
            assert_eq!(config.http.authcode_rate_limit, 0);
            assert_eq!(config.http.trusted_proxies, vec!["10.0.0.7", "::1"]);
            assert_eq!(
                config
                    .security
                    .encryption_keys
                    .as_ref()
                    .unwrap()
                    .expose_secret(),
                "k2:AAAA,k1:BBBB"
            );
            Ok(())
        });
    }

    #[test]
    fn encryption_keys_may_be_given_as_a_list_in_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_FILE,
                "[security]\nencryption_keys = [\"k2:AAAA\", \"k1:BBBB\"]\n",
            )?;
            let config = load_in(jail, None).unwrap();
            assert_eq!(
                config
                    .security
                    .encryption_keys
                    .as_ref()
                    .unwrap()
                    .expose_secret(),
                "k2:AAAA,k1:BBBB"
            );
            Ok(())
        });
    }

    #[test]
    fn a_credential_cache_over_a_minute_is_refused_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("OFFLINE_ACCESS_STORE__CREDENTIAL_CACHE_MS", "60001");
            let err = load_in(jail, None).unwrap_err();
            assert!(
                err.0
                    .contains("store.credential_cache_ms must be at most 60000"),
                "{err}"
            );
            jail.set_env("OFFLINE_ACCESS_STORE__CREDENTIAL_CACHE_MS", "0");
            assert_eq!(load_in(jail, None).unwrap().store.credential_cache_ms, 0);
            Ok(())
        });
    }

    #[test]
    fn a_leeway_over_300_seconds_is_refused_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("OFFLINE_ACCESS_GOOGLE__LEEWAY_SECS", "301");
            let err = load_in(jail, None).unwrap_err();
            assert!(
                err.0.contains("google.leeway_secs must be at most 300"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_key_and_its_source() {
        Jail::expect_with(|jail| {
            jail.set_env("OFFLINE_ACCESS_HTTP__BODY_LIMIT", "lots");
            let err = load_in(jail, None).unwrap_err();
            assert!(err.0.contains("http.body_limit"), "{err}");
            assert!(err.0.contains("OFFLINE_ACCESS_HTTP__BODY_LIMIT"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn type_errors_are_in_plain_words_and_enums_list_their_values_once() {
        Jail::expect_with(|jail| {
            jail.set_env("OFFLINE_ACCESS_HTTP__AUTHCODE_RATE_LIMIT", "abc");
            let err = load_in(jail, None).unwrap_err();
            assert!(
                err.0.contains("expected a whole number, 0 or more"),
                "{err}"
            );
            assert!(!err.0.contains("u32") && !err.0.contains("usize"), "{err}");
            jail.set_env("OFFLINE_ACCESS_HTTP__AUTHCODE_RATE_LIMIT", "5");
            jail.set_env("OFFLINE_ACCESS_STORE__KIND", "mysql");
            let err = load_in(jail, None).unwrap_err();
            assert!(err.0.contains("expected one of: file, postgres"), "{err}");
            assert!(!err.0.contains("``"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused_naming_it() {
        Jail::expect_with(|jail| {
            jail.create_file(DEFAULT_FILE, "[google]\nclient_secret = \"oops\"\n")?;
            let err = load_in(jail, None).unwrap_err();
            assert!(err.0.contains("client_secret"), "{err}");
            assert!(!err.0.contains("oops"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_listen_address_names_listen() {
        Jail::expect_with(|jail| {
            jail.set_env("OFFLINE_ACCESS_LISTEN", "localhost");
            let err = load_in(jail, None).unwrap_err();
            assert!(err.0.starts_with("listen is invalid"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn postgres_needs_a_store_url() {
        Jail::expect_with(|jail| {
            jail.set_env("OFFLINE_ACCESS_STORE__KIND", "postgres");
            let err = load_in(jail, None).unwrap_err();
            assert!(err.0.starts_with("store.url is not set"), "{err}");
            jail.set_env(
                "OFFLINE_ACCESS_STORE__URL",
                "postgres://postgres@127.0.0.1:5432/test",
            );
            let config = load_in(jail, None).unwrap();
            assert_eq!(config.store.kind, StoreKind::Postgres);
            Ok(())
        });
    }

    #[test]
    fn other_validation_errors_name_their_key() {
        let cases = [
            (
                "OFFLINE_ACCESS_GOOGLE__BASE_URL",
                "not a url",
                "google.base_url",
            ),
            (
                "OFFLINE_ACCESS_HTTP__TRUSTED_PROXIES",
                "10.0.0.0/8",
                "http.trusted_proxies",
            ),
            ("OFFLINE_ACCESS_LOG__LEVEL", "info,[", "log.level"),
            ("OFFLINE_ACCESS_LOG__FORMAT", "xml", "log.format"),
            (
                "OFFLINE_ACCESS_GOOGLE__REQUEST_TIMEOUT_SECS",
                "0",
                "google.request_timeout_secs",
            ),
            ("OFFLINE_ACCESS_TLS__CERT", "cert.pem", "tls.cert"),
            ("OFFLINE_ACCESS_STORE__SCHEMA", "Bad-Schema", "store.schema"),
            ("OFFLINE_ACCESS_STORE__POOL_SIZE", "0", "store.pool_size"),
        ];
        for (var, value, key) in cases {
            Jail::expect_with(|jail| {
                jail.set_env(var, value);
                let err = load_in(jail, None).unwrap_err();
                assert!(err.0.contains(key), "{var}={value}: {err}");
                Ok(())
            });
        }
    }

    #[test]
    fn a_named_config_file_that_does_not_exist_is_an_error() {
        Jail::expect_with(|jail| {
            let err = load_in(jail, Some("missing.toml")).unwrap_err();
            assert!(err.0.contains("missing.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn secrets_are_redacted_in_the_rendered_config_and_in_debug() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "OFFLINE_ACCESS_SECURITY__ENCRYPTION_KEYS",
                "k1:c2VjcmV0LWNhbmFyeS1rZXk=",
            );
            jail.set_env(
                "OFFLINE_ACCESS_STORE__URL",
                "postgres://user:canary-password@db/oa",
            );
            let config = load_in(jail, None).unwrap();
            let rendered = config.to_redacted_toml().unwrap();
            let debug = format!("{config:?}");
            for text in [&rendered, &debug] {
                assert!(!text.contains("c2VjcmV0LWNhbmFyeS1rZXk="), "{text}");
                assert!(!text.contains("canary-password"), "{text}");
            }
            assert!(
                rendered.contains("encryption_keys = \"[REDACTED]\""),
                "{rendered}"
            );
            assert!(rendered.contains("url = \"[REDACTED]\""), "{rendered}");
            Ok(())
        });
    }

    #[test]
    fn the_rendered_config_loads_back_as_the_same_values() {
        Jail::expect_with(|jail| {
            jail.set_env("OFFLINE_ACCESS_GOOGLE__ALLOWED_AZP", "a.apps");
            let config = load_in(jail, None).unwrap();
            let rendered = config.to_redacted_toml().unwrap();
            jail.create_file("rendered.toml", &rendered)?;
            jail.clear_env();
            let again = load_in(jail, Some("rendered.toml")).unwrap();
            assert_eq!(again.to_redacted_toml().unwrap(), rendered);
            Ok(())
        });
    }

    /// Every key of `config.default.toml` (set or commented out) with its section, e.g. `google.base_url`.
    fn default_file_keys() -> Vec<String> {
        let mut section = String::new();
        let mut keys = Vec::new();
        for line in DEFAULTS.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let line = line.strip_prefix("# ").unwrap_or(line);
            if let Some((key, _)) = line.split_once(" = ")
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                keys.push(if section.is_empty() {
                    key.to_owned()
                } else {
                    format!("{section}.{key}")
                });
            }
        }
        keys
    }

    #[test]
    fn the_defaults_file_and_docs_configuration_md_name_the_same_keys() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/configuration.md"
        ))
        .unwrap();
        let keys = default_file_keys();
        assert!(keys.len() >= 25, "{keys:?}");
        for key in &keys {
            let env = format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase());
            assert!(
                doc.contains(&format!("| `{key}` | `{env}` |")),
                "docs/configuration.md has no row for {key} ({env})"
            );
        }
        let documented = doc
            .lines()
            .filter(|l| l.starts_with("| `") && l.contains("OFFLINE_ACCESS_"))
            .count();
        assert_eq!(
            documented,
            keys.len(),
            "a documented key is missing from config.default.toml"
        );
    }

    #[test]
    fn every_key_of_the_defaults_file_is_a_configuration_key() {
        // The defaults with every commented-out example enabled must load.
        let mut enabled = String::new();
        for line in DEFAULTS.lines() {
            let example = line.strip_prefix("# ").filter(|l| {
                l.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
            });
            match example {
                Some(example) => enabled.push_str(example),
                _ => enabled.push_str(line),
            }
            enabled.push('\n');
        }
        Jail::expect_with(|jail| {
            jail.create_file("all.toml", &enabled)?;
            let config = load_in(jail, Some("all.toml")).unwrap();
            assert!(config.google.client_secret_file.is_some());
            assert!(config.google.base_url.is_some());
            assert!(config.google.hosted_domain.is_some());
            assert!(config.google.ca_file.is_some());
            assert!(config.store.url.is_some());
            assert!(config.security.encryption_keys.is_some());
            assert!(config.tls.cert.is_some() && config.tls.key.is_some());
            assert!(config.internal.listen.is_some());
            assert_eq!(config.internal.api_keys.len(), 1);
            Ok(())
        });
    }

    #[test]
    fn the_missing_secret_messages_name_the_setting_and_how_to_fix_it() {
        Jail::expect_with(|jail| {
            let config = load_in(jail, None).unwrap();
            let err = config.require_client_secret_file().unwrap_err();
            assert!(err.0.contains("google.client_secret_file"), "{err}");
            let err = config.require_encryption_keys().unwrap_err();
            assert!(err.0.contains("security.encryption_keys"), "{err}");
            assert!(err.0.contains("openssl rand -base64 32"), "{err}");
            Ok(())
        });
    }
}
