//! The offline-access binary: the one composition root. It reads the configuration, builds the concrete adapters
//! (Google, the credential store, encryption, HTTP) and hands them to the domain's use cases.

mod cli;
mod commands;
mod compose;
mod config;
mod error;
mod outbox;
mod sandbox;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: a server's requests allocate and free many small buffers across
/// threads, where glibc's malloc showed ~8 % of the server's CPU in profiles (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Usage errors exit 2 from here (clap's convention matches ours).
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            failure.exit_code()
        }
    }
}
