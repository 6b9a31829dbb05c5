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
    /// Google's security events (Cross-Account Protection, RISC): register this server's receiver with Google.
    Risc {
        /// What to do.
        #[command(subcommand)]
        command: RiscCommand,
    },
    /// The events recorded for the team's webhook (the outbox).
    Events {
        /// What to do.
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Webhook signing secrets.
    Webhooks {
        /// What to do.
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Apply the Postgres schema migrations.
    Migrate,
    /// Load and validate the configuration as `serve` would (keys decoded, files read and parsed, URLs) and print
    /// the effective values with secrets redacted.
    CheckConfig {
        /// Also connect to the configured store and check that it can serve (schema current, writable).
        #[arg(long)]
        check_store: bool,
    },
}

/// `users ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// List stored users (sub, email, consent, scopes, updated) — never token values.
    List,
    /// Delete a user's stored credential outright, WITHOUT revoking the grant at Google (use `forget` for that):
    /// the way out for a record that cannot be read any more, e.g. sealed under a lost encryption key.
    Delete {
        /// The user's Google subject (`sub`).
        #[arg(long, value_name = "SUB")]
        sub: String,
        /// Confirm: the grant stays valid at Google until the user removes the app's access.
        #[arg(long)]
        yes: bool,
    },
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

/// `risc ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum RiscCommand {
    /// Point Google's RISC stream at this server's `POST /risc` with every supported event type, then ask Google
    /// for a verification event.
    Register {
        /// The service account's JSON key file (Google Cloud console; the account needs the RISC Configuration
        /// Admin role).
        #[arg(long, value_name = "FILE")]
        service_account: PathBuf,
        /// The public HTTPS URL of this server's receiver, e.g. https://api.example.com/risc.
        #[arg(long, value_name = "URL")]
        url: String,
        /// Skip the verification event.
        #[arg(long)]
        no_verify: bool,
    },
    /// Show the stream Google has configured (receiver URL, event types) and whether it is enabled.
    Status {
        /// The service account's JSON key file.
        #[arg(long, value_name = "FILE")]
        service_account: PathBuf,
    },
}

/// `events ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// List recorded events, oldest first, with their delivery state (never a token).
    List {
        /// Only those still to be delivered.
        #[arg(long, conflicts_with = "failed")]
        pending: bool,
        /// Only those given up on.
        #[arg(long)]
        failed: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Send an event again (same id and body): it becomes pending and due now.
    Replay {
        /// The event id (`evt_...`), as `events list` shows it.
        id: String,
    },
}

/// `webhooks ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Print a new random signing secret (`whsec_...`) for webhooks.secret and the receiving side.
    Secret,
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
