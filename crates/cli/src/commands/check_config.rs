//! `check-config`: load, validate, print the effective values with secrets redacted.

use std::path::Path;

use crate::config::Config;
use crate::error::{Outcome, out};

/// Runs `check-config`.
pub(crate) fn run(file: Option<&Path>) -> Outcome {
    let (config, source) = Config::load(file)?;
    let rendered = config.to_redacted_toml()?;
    out!("# configuration is valid (from {source}); secrets are shown as [REDACTED]");
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
