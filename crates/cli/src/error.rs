//! How a command fails: a usage/configuration error (exit 2) or a runtime failure (exit 1), each one sentence.

use std::fmt;
use std::process::ExitCode;

use crate::config::ConfigError;

/// A failed command. The message is one sentence naming what to fix; it never contains a secret.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad usage or configuration: exit code 2.
    Config(String),
    /// Something failed at run time: exit code 1.
    Runtime(String),
}

impl Failure {
    /// A runtime failure.
    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Self::Runtime(message.into())
    }

    /// A configuration error.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Config(message.into())
    }

    /// The process exit code.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::from(2),
            Self::Runtime(_) => ExitCode::from(1),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(m) | Self::Runtime(m) => write!(f, "error: {m}"),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Self::Config(e.0)
    }
}

/// Prints a line on stdout, ignoring write errors (a closed pipe, as in `offline-access demo | head`, must not
/// panic the process).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use out;

/// The result of a command.
pub(crate) type Outcome = Result<(), Failure>;
