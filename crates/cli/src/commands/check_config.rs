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
    Ok(())
}
