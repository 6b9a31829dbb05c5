//! The commands, one module each; [`run`] dispatches.

mod admin;
mod check_config;
mod demo;
mod events;
mod risc;
pub(crate) mod serve;

use std::path::Path;

use offline_access_domain::events::EventFilter;

use crate::cli::{
    ApiKeyCommand, Cli, Command, DriveCommand, EventsCommand, KeysCommand, RiscCommand,
    UsersCommand, WebhooksCommand,
};
use crate::config::Config;
use crate::error::{Failure, Outcome};
use crate::telemetry;

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> Outcome {
    let file = cli.config.as_deref();
    match cli.command {
        // The demo needs no configuration at all: it ignores files and the environment.
        Command::Demo { json } => demo::run(json).await,
        Command::CheckConfig { check_store } => check_config::run(file, check_store).await,
        Command::Serve { sandbox } => serve::run(Config::load(file)?.0, sandbox).await,
        Command::Users {
            command: UsersCommand::List,
        } => admin::users_list(&operator(file)?).await,
        Command::Users {
            command: UsersCommand::Delete { sub, yes },
        } => admin::users_delete(&operator(file)?, &sub, yes).await,
        Command::Drive {
            command: DriveCommand::Appfolder(arg),
        } => admin::drive_appfolder(&operator(file)?, &arg.sub).await,
        Command::Forget(arg) => admin::forget(&operator(file)?, &arg.sub).await,
        Command::Keys {
            command: KeysCommand::Rotate,
        } => admin::keys_rotate(&operator(file)?).await,
        // Needs no configuration: it makes a key to put into it.
        Command::Keys {
            command: KeysCommand::Generate { id },
        } => admin::keys_generate(&id),
        // Needs no configuration either: it makes a key to put into it.
        Command::ApiKey {
            command: ApiKeyCommand::New { name, json },
        } => admin::api_key_new(&name, json),
        Command::Migrate => admin::migrate(&operator(file)?).await,
        Command::Risc {
            command:
                RiscCommand::Register {
                    service_account,
                    url,
                    no_verify,
                },
        } => risc::register(&operator(file)?, &service_account, &url, !no_verify).await,
        Command::Risc {
            command: RiscCommand::Status { service_account },
        } => risc::status(&operator(file)?, &service_account).await,
        Command::Events {
            command:
                EventsCommand::List {
                    pending,
                    failed,
                    json,
                },
        } => {
            let filter = match (pending, failed) {
                (true, _) => EventFilter::Pending,
                (_, true) => EventFilter::Failed,
                _ => EventFilter::All,
            };
            events::list(&operator(file)?, filter, json).await
        }
        Command::Events {
            command: EventsCommand::Replay { id },
        } => events::replay(&operator(file)?, &id).await,
        // Needs no configuration: it makes a secret to put into it.
        Command::Webhooks {
            command: WebhooksCommand::Secret,
        } => events::webhook_secret(),
    }
}

/// The configuration for an operator command, with logging of warnings and errors only (on stderr) unless
/// `RUST_LOG` says otherwise.
fn operator(file: Option<&Path>) -> Result<Config, Failure> {
    let (config, _) = Config::load(file)?;
    telemetry::init_tracing("warn", config.log.format)?;
    Ok(config)
}
