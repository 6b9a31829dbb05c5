//! The composition root: builds the concrete adapters from the configuration and injects them into the use cases.
//! Nothing else in the workspace knows which adapter runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use offline_access_crypto::KeyRing;
use offline_access_domain::events::EventStore;
use offline_access_domain::{
    CredentialStore, OfflineAccess, Ports, Settings, StoreError, Subject, SystemClock,
};
use offline_access_google::{ClientSecret, ConfigError as GoogleConfigError, Google, GoogleConfig};
use offline_access_http::HttpConfig;
use offline_access_store_file::FileStore;
use offline_access_store_postgres::{PgOptions, PgStore};
use secrecy::ExposeSecret;

use crate::config::{Config, StoreKind};
use crate::error::Failure;

/// The running use cases and the adapters an operator command may need directly.
pub(crate) struct Stack {
    /// The use cases.
    pub(crate) service: Arc<OfflineAccess>,
    /// The Google adapter (for the JWKS prefetch).
    pub(crate) google: Google,
    /// The credential store (for operator commands and the demo's at-rest check).
    pub(crate) store: Store,
}

/// The configured credential store: one variant per storage adapter (`store.kind`).
#[derive(Clone)]
pub(crate) enum Store {
    /// One encrypted file per user under a directory.
    File(Arc<FileStore>),
    /// One table in PostgreSQL, shared by many instances.
    Postgres(Arc<PgStore>),
}

impl Store {
    /// The store as the domain's port.
    pub(crate) fn port(&self) -> Arc<dyn CredentialStore> {
        match self {
            Self::File(store) => store.clone(),
            Self::Postgres(store) => store.clone(),
        }
    }

    /// The same store as the outbox and RISC `jti` register.
    pub(crate) fn events_port(&self) -> Arc<dyn EventStore> {
        match self {
            Self::File(store) => store.clone(),
            Self::Postgres(store) => store.clone(),
        }
    }

    /// Where the credentials are, for logs and messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::File(store) => format!("file store at {}", store.dir().display()),
            Self::Postgres(store) => match store.schema() {
                Some(schema) => format!("PostgreSQL store (store.url, schema {schema})"),
                None => "PostgreSQL store (store.url)".to_owned(),
            },
        }
    }

    /// The file store, when that is what runs.
    pub(crate) fn as_file(&self) -> Option<&Arc<FileStore>> {
        match self {
            Self::File(store) => Some(store),
            Self::Postgres(_) => None,
        }
    }

    /// Re-encrypts every credential under the newest key (see the adapters' `reencrypt_all`).
    ///
    /// # Errors
    /// The store's error for a record it cannot read or write.
    pub(crate) async fn reencrypt_all(
        &self,
        batch: usize,
        progress: impl Fn(usize, usize),
    ) -> Result<usize, StoreError> {
        match self {
            Self::File(store) => store.reencrypt_all(batch, progress).await,
            Self::Postgres(store) => store.reencrypt_all(batch, progress).await,
        }
    }

    /// Applies schema migrations; `None` for a store without a schema (the file store).
    ///
    /// # Errors
    /// The store's error when the database is unreachable or a migration fails.
    pub(crate) async fn migrate(&self) -> Result<Option<usize>, StoreError> {
        match self {
            Self::File(_) => Ok(None),
            Self::Postgres(store) => store.migrate().await.map(Some),
        }
    }
}

/// Where the Google client comes from.
pub(crate) enum GoogleSource<'a> {
    /// `google.client_secret_file`, with the configured `google.*` settings.
    Configured,
    /// A fake Google: its client secret JSON and base URL (sandbox and demo).
    Fake {
        /// `GET /_fake/client_secret.json`.
        client_secret_json: &'a str,
        /// The fake's base URL.
        base_url: String,
    },
}

/// Parses `security.encryption_keys`, or fails naming it.
///
/// # Errors
/// A configuration failure when it is missing or malformed.
pub(crate) fn key_ring(config: &Config) -> Result<Arc<KeyRing>, Failure> {
    let spec = config.require_encryption_keys()?;
    KeyRing::parse(spec.expose_secret())
        .map(Arc::new)
        .map_err(|e| {
            Failure::config(format!(
                "security.encryption_keys (env OFFLINE_ACCESS_SECURITY__ENCRYPTION_KEYS) is invalid: {e}; make a key \
                 entry with `offline-access keys generate`"
            ))
        })
}

/// Opens the configured credential store (`store.kind`).
///
/// # Errors
/// A configuration failure when `store.url` is missing; a runtime failure naming `store.path` or `store.url` when
/// the store cannot be reached.
pub(crate) async fn open_store(config: &Config, keys: Arc<KeyRing>) -> Result<Store, Failure> {
    open_store_with(config, keys, false).await
}

/// As [`open_store`], creating the file store's directory when it does not exist yet (only `serve` does: an
/// operator command on a mistyped `store.path` must not make an empty store and report "no users").
///
/// # Errors
/// As [`open_store`].
pub(crate) async fn open_store_with(
    config: &Config,
    keys: Arc<KeyRing>,
    create: bool,
) -> Result<Store, Failure> {
    match config.store.kind {
        StoreKind::File if !create && !config.store.path.is_dir() => {
            Err(Failure::runtime(format!(
                "there is no file store at {} (store.path, env OFFLINE_ACCESS_STORE__PATH); check the path — \
             `offline-access serve` creates it on first start",
                config.store.path.display()
            )))
        }
        StoreKind::File => open_file_store(&config.store.path, keys),
        StoreKind::Postgres => {
            let url = config.require_store_url()?;
            let options = PgOptions {
                pool_size: config.store.pool_size,
                schema: config.store.schema.clone(),
                ca_pem: store_ca_pem(config)?,
                ..PgOptions::default()
            };
            PgStore::connect(url.expose_secret(), keys, options)
                .await
                .map(|s| Store::Postgres(Arc::new(s)))
                .map_err(|e| match e {
                    StoreError::Unavailable(m) => Failure::runtime(format!(
                        "cannot reach PostgreSQL ({m}); check that it runs and that store.url is right"
                    )),
                    other => Failure::config(format!("store.url or store.* is unusable: {other}")),
                })
        }
    }
}

/// The PEM roots of `store.ca_file`, when set.
///
/// # Errors
/// A configuration failure naming `store.ca_file` and its variable when the file cannot be read.
pub(crate) fn store_ca_pem(config: &Config) -> Result<Option<Vec<u8>>, Failure> {
    let Some(path) = &config.store.ca_file else {
        return Ok(None);
    };
    std::fs::read(path).map(Some).map_err(|e| {
        Failure::config(format!(
            "cannot read store.ca_file (env OFFLINE_ACCESS_STORE__CA_FILE) {} ({}); check the path",
            path.display(),
            e.kind()
        ))
    })
}

/// Opens a file store in `dir` (the configured `store.path`, or the demo's and sandbox's temporary directory).
///
/// # Errors
/// A runtime failure naming `store.path` when the directory cannot be used.
pub(crate) fn open_file_store(dir: &Path, keys: Arc<KeyRing>) -> Result<Store, Failure> {
    FileStore::open_sweeping_in_background(dir, keys)
        .map(|s| Store::File(Arc::new(s)))
        .map_err(|e| {
            Failure::runtime(format!(
                "cannot open the file store at {} (store.path): {e}",
                dir.display()
            ))
        })
}

/// Builds the Google adapter.
///
/// # Errors
/// A configuration failure naming the `google.*` setting that is missing or wrong.
pub(crate) fn google(config: &Config, source: GoogleSource<'_>) -> Result<Google, Failure> {
    Google::new(google_config(config, source)?).map_err(|e| Failure::config(e.to_string()))
}

/// The Google adapter's configuration (also for the RISC stream API).
///
/// # Errors
/// As [`google`].
pub(crate) fn google_config(
    config: &Config,
    source: GoogleSource<'_>,
) -> Result<GoogleConfig, Failure> {
    let g = &config.google;
    let (secret, base_url) = match source {
        GoogleSource::Configured => {
            let path = config.require_client_secret_file()?;
            let secret = ClientSecret::from_file(path).map_err(|e| match e {
                GoogleConfigError::Read { path, reason } => Failure::config(format!(
                    "cannot read google.client_secret_file (env OFFLINE_ACCESS_GOOGLE__CLIENT_SECRET_FILE) {} \
                     ({reason}); check the path",
                    path.display()
                )),
                other => Failure::config(format!(
                    "google.client_secret_file (env OFFLINE_ACCESS_GOOGLE__CLIENT_SECRET_FILE) {} is not a \
                     Google client secret file: {other}",
                    path.display()
                )),
            })?;
            (secret, g.base_url.clone())
        }
        GoogleSource::Fake {
            client_secret_json,
            base_url,
        } => {
            let secret = ClientSecret::from_json(client_secret_json).map_err(|e| {
                Failure::runtime(format!("the fake Google's client secret is unusable: {e}"))
            })?;
            (secret, Some(base_url))
        }
    };
    let mut google_config = GoogleConfig::from_client_secret(&secret);
    google_config.base_url = base_url;
    google_config.redirect_uri = g.redirect_uri.clone();
    google_config.allowed_azp = g.allowed_azp.clone();
    google_config.hosted_domain = g.hosted_domain.clone();
    google_config.leeway = Duration::from_secs(g.leeway_secs);
    google_config.connect_timeout = Duration::from_secs(g.connect_timeout_secs);
    google_config.request_timeout = Duration::from_secs(g.request_timeout_secs);
    google_config.jwks_grace = Duration::from_secs(g.jwks_grace_secs);
    google_config.verified_token_cache = g.verified_token_cache;
    google_config.proxy_hosts = config
        .proxy_hosts()
        .map_err(|e| Failure::config(e.to_string()))?;
    if let Some(ca) = &g.ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            Failure::config(format!(
                "cannot read google.ca_file {} ({}); check the path",
                ca.display(),
                e.kind()
            ))
        })?;
        google_config.extra_root_ca_pem = Some(pem);
    }
    Ok(google_config)
}

/// The use cases' settings from the configuration (the rest at their defaults).
pub(crate) fn settings(config: &Config) -> Settings {
    Settings {
        credential_cache_ttl: Duration::from_millis(config.store.credential_cache_ms),
        required_scopes: config.required_scopes(),
        ..Settings::default()
    }
}

/// The use cases over the Google adapter and a store; grant changes record events for webhooks when
/// `record_events` (`webhooks.url` is set).
pub(crate) fn stack(
    google: Google,
    store: Store,
    settings: Settings,
    record_events: bool,
) -> Stack {
    let ports = Ports {
        tokens: google.tokens(),
        verifier: google.verifier(),
        store: store.port(),
        drive: google.drive(),
        clock: Arc::new(SystemClock),
    };
    Stack {
        service: Arc::new(
            OfflineAccess::new(ports, settings)
                .with_google_api(google.api())
                .with_events(store.events_port(), record_events),
        ),
        google,
        store,
    }
}

/// The configured stack: Google from `google.client_secret_file`, the store at `store.path` (created when `create`,
/// see [`open_store_with`]).
///
/// # Errors
/// As [`key_ring`], [`google`] and [`open_store`].
pub(crate) async fn configured_stack(config: &Config, create: bool) -> Result<Stack, Failure> {
    let keys = key_ring(config)?;
    let google = google(config, GoogleSource::Configured)?;
    let store = open_store_with(config, keys, create).await?;
    Ok(stack(
        google,
        store,
        settings(config),
        config.webhooks.url.is_some(),
    ))
}

/// The HTTP adapter's settings.
///
/// # Errors
/// A configuration failure naming `http.trusted_proxies` for an entry that is not an IP address.
pub(crate) fn http_config(config: &Config) -> Result<HttpConfig, Failure> {
    let mut trusted_proxies = Vec::new();
    for proxy in &config.http.trusted_proxies {
        let addr = proxy.parse().map_err(|_| {
            Failure::config(format!(
                "http.trusted_proxies entry {proxy:?} must be an IP address such as 10.0.0.7"
            ))
        })?;
        trusted_proxies.push(addr);
    }
    Ok(HttpConfig {
        body_limit: config.http.body_limit,
        drive_body_limit: config.http.drive_body_limit,
        request_timeout: Duration::from_secs(config.http.request_timeout_secs),
        authcode_rate_limit: config.http.authcode_rate_limit,
        trusted_proxies,
    })
}

/// The internal API's settings: the keys and the proxy's host policy.
///
/// # Errors
/// A configuration failure naming `internal.api_keys` or `internal.proxy_hosts`.
pub(crate) fn internal_config(
    config: &Config,
) -> Result<offline_access_http::InternalConfig, Failure> {
    let keys = config
        .internal_api_keys()
        .map_err(|e| Failure::config(e.to_string()))?;
    let hosts = config
        .proxy_hosts()
        .map_err(|e| Failure::config(e.to_string()))?;
    Ok(offline_access_http::InternalConfig::new(
        keys,
        Arc::new(move |host: &str| hosts.allows(host)),
    ))
}

/// Parses a `--sub` argument.
///
/// # Errors
/// A usage failure when it is not a Google account ID.
pub(crate) fn subject(sub: &str) -> Result<Subject, Failure> {
    Subject::parse(sub).map_err(|e| {
        Failure::config(format!(
            "--sub {sub:?} is not a Google account ID ({e}); list users with `offline-access users list`"
        ))
    })
}
