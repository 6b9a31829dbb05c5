//! The command line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// offline-access: lasting server-side access to Google APIs on your users' behalf.
///
/// An Android app signs the user in and posts a one-time server auth code; offline-access exchanges it, verifies
/// the ID token, keeps the refresh token encrypted, and calls Google Drive for that user — also while the user is
/// offline.
#[derive(Debug, Parser)]
#[command(name = "offline-access", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Configuration file (TOML). Default: offline-access.toml in the working directory, when present.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the whole server-side access flow on this machine against an in-process fake Google (no network, no
    /// set-up) and show each step.
    Demo {
        /// Print one JSON document with every step and its result.
        #[arg(long)]
        json: bool,
    },
    /// Run the HTTP API.
    Serve {
        /// Use an in-process fake Google and an ephemeral encryption key (for trying the API, never production).
        #[arg(long)]
        sandbox: bool,
    },
    /// Stored users.
    Users {
        /// What to do with them.
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Call Google Drive for a stored user with no user present.
    Drive {
        /// Which Drive call.
        #[command(subcommand)]
        command: DriveCommand,
    },
    /// Revoke a user's grant at Google and delete the stored credential.
    Forget(SubArg),
    /// Encryption keys.
    Keys {
        /// What to do with them.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// API keys of the internal API.
    ApiKey {
        /// What to do.
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Apply the Postgres schema migrations.
    Migrate,
    /// Load and validate the configuration and print the effective values with secrets redacted.
    CheckConfig,
}

/// `users ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// List stored users (sub, email, consent, scopes, updated) — never token values.
    List,
}

/// `drive ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum DriveCommand {
    /// Drive files.get('appDataFolder') for the user, refreshing the access token if needed; prints Drive's JSON.
    Appfolder(SubArg),
}

/// `keys ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Re-encrypt every stored credential under the newest configured key (safe to interrupt and re-run).
    Rotate,
    /// Print a new random key entry `ID:BASE64KEY` to put first in security.encryption_keys.
    Generate {
        /// The key's id (1 to 32 characters of A-Z, a-z, 0-9, `_`, `-`); pick a new one per key, e.g. a date.
        #[arg(long, default_value = "k1")]
        id: String,
    },
}

/// `api-key ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ApiKeyCommand {
    /// Make a new key for a service: prints the key (shown this once) and its internal.api_keys entry
    /// `NAME:sha256:HEX` (only the digest is configured).
    New {
        /// The service's name (1-64 letters, digits, `-`, `_`, `.`): it appears in audit logs and metrics.
        name: String,
        /// Print one JSON line `{"name", "key", "entry"}`.
        #[arg(long)]
        json: bool,
    },
}

/// `--sub SUB`.
#[derive(Debug, Args)]
pub(crate) struct SubArg {
    /// The user's Google subject (`sub`), as `users list` shows it.
    #[arg(long, value_name = "SUB")]
    pub(crate) sub: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_is_accepted_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["offline-access", "serve", "--config", "a.toml", "--sandbox"])
                .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("a.toml")));
        assert!(matches!(cli.command, Command::Serve { sandbox: true }));
    }

    #[test]
    fn drive_appfolder_requires_a_subject() {
        let err = Cli::try_parse_from(["offline-access", "drive", "appfolder"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let cli =
            Cli::try_parse_from(["offline-access", "drive", "appfolder", "--sub", "123"]).unwrap();
        assert!(
            matches!(cli.command, Command::Drive { command: DriveCommand::Appfolder(SubArg { sub }) } if sub == "123")
        );
    }
}
