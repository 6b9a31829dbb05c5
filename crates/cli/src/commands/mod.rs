//! The commands, one module each; [`run`] dispatches.

mod admin;
mod check_config;
mod demo;
mod serve;

use crate::cli::{Cli, Command, DriveCommand, KeysCommand, UsersCommand};
use crate::config::Config;
use crate::error::Outcome;
use crate::telemetry;

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> Outcome {
    let file = cli.config.as_deref();
    match cli.command {
        // The demo needs no configuration at all: it ignores files and the environment.
        Command::Demo { json } => demo::run(json).await,
        Command::CheckConfig => check_config::run(file),
        Command::Serve { sandbox } => serve::run(Config::load(file)?.0, sandbox).await,
        command => {
            let (config, _) = Config::load(file)?;
            // Operator commands log warnings and errors only, on stderr, unless RUST_LOG says otherwise.
            telemetry::init_tracing("warn", config.log.format)?;
            match command {
                Command::Users {
                    command: UsersCommand::List,
                } => admin::users_list(&config).await,
                Command::Drive {
                    command: DriveCommand::Appfolder(arg),
                } => admin::drive_appfolder(&config, &arg.sub).await,
                Command::Forget(arg) => admin::forget(&config, &arg.sub).await,
                Command::Keys {
                    command: KeysCommand::Rotate,
                } => admin::keys_rotate(&config).await,
                Command::Migrate => admin::migrate(&config),
                Command::Demo { .. } | Command::CheckConfig | Command::Serve { .. } => Ok(()),
            }
        }
    }
}
