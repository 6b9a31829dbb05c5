//! `check-config`: load and validate the configuration as `serve` would, print the effective values with secrets
//! redacted.

use std::path::Path;

use crate::commands::serve::tls_config;
use crate::compose::{self, GoogleSource};
use crate::config::{Config, StoreKind};
use crate::error::{Failure, Outcome, out};
use crate::telemetry;

/// Runs `check-config`: every check `serve` makes before it listens (the encryption keys decoded, the client secret
/// file read and parsed, TLS files, API keys, proxy hosts, webhook URL and secret), and with `check_store` the
/// store reached and able to serve.
pub(crate) async fn run(file: Option<&Path>, check_store: bool) -> Outcome {
    let (config, source) = Config::load(file)?;
    let checked = preflight(&config)?;
    if check_store && config.store.kind == StoreKind::File && !config.store.path.is_dir() {
        out!(
            "# store: no file store at {} yet; `serve` creates it (mode 0700) on first start",
            config.store.path.display()
        );
    } else if check_store {
        telemetry::init_tracing("warn", config.log.format)?;
        let keys = compose::key_ring(&config)?;
        let store = compose::open_store(&config, keys).await?;
        store
            .port()
            .ping()
            .await
            .map_err(|e| Failure::runtime(format!("the {} cannot serve: {e}", store.describe())))?;
        out!(
            "# store: the {} is reachable and can serve",
            store.describe()
        );
    }
    let rendered = config.to_redacted_toml()?;
    out!("# configuration is valid (from {source}); secrets are shown as [REDACTED]");
    for line in &checked {
        out!("# checked: {line}");
    }
    out!("{}", rendered.trim_end());
    out!();
    out!("# {}", config.internal_summary());
    let mut unset = Vec::new();
    if config.google.client_secret_file.is_none() {
        unset.push(
            "google.client_secret_file (needed by serve without --sandbox, drive and forget)",
        );
    }
    if config.security.encryption_keys.is_none() {
        unset.push(
            "security.encryption_keys (needed by serve without --sandbox and every command that opens the store)",
        );
    }
    if !unset.is_empty() {
        out!();
        out!("# not set:");
        for line in unset {
            out!("#   {line}");
        }
    }
    Ok(())
}

/// The checks `serve` makes on the configuration before it opens anything, for what is set; what was checked.
fn preflight(config: &Config) -> Result<Vec<String>, Failure> {
    let mut checked = Vec::new();
    if config.security.encryption_keys.is_some() {
        let keys = compose::key_ring(config)?;
        checked.push(format!(
            "security.encryption_keys: {} key(s) decoded, newest {}",
            keys.key_ids().count(),
            keys.newest_id()
        ));
    }
    if config.google.client_secret_file.is_some() {
        let google = compose::google_config(config, GoogleSource::Configured)?;
        checked.push(format!(
            "google.client_secret_file: read, client id {}",
            google.client_id
        ));
    }
    if compose::store_ca_pem(config)?.is_some() {
        checked.push("store.ca_file: read".to_owned());
    }
    compose::http_config(config)?;
    compose::internal_config(config)?;
    if tls_config(config)?.is_some() {
        checked.push("tls.cert and tls.key: read and usable".to_owned());
    }
    if let Some(webhook) = config.webhooks()? {
        checked.push(format!(
            "webhooks: {} with a valid secret",
            webhook.describe()
        ));
    }
    Ok(checked)
}
