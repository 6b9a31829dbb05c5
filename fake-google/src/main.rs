//! `fake-google [--listen ADDR] [--tls] [--ca-out FILE] [--config FILE.json]`: the fake Google as
//! a standalone server.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fake_google::{ConfigFile, FakeConfig, FakeGoogle, StartError};

/// A faithful offline fake of Google's OAuth 2.0, OpenID Connect and Drive appDataFolder endpoints.
#[derive(Parser, Debug)]
#[command(name = "fake-google", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve HTTPS with a certificate from a CA generated at start.
    #[arg(long)]
    tls: bool,
    /// Write the CA's PEM here (with --tls).
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca_out: Option<PathBuf>,
    /// Start with the clients, users and settings of this JSON file
    /// (`{"clients": [...], "users": [...], "settings": {...}}`); a bad file exits with status 2.
    #[arg(long, value_name = "FILE.json")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let mut config = FakeConfig::default().listen(args.listen).tls(args.tls);
    if let Some(path) = &args.config {
        match ConfigFile::load(path) {
            Ok(file) => config = config.file(file),
            Err(e) => {
                eprintln!("fake-google: bad config file {e}");
                return ExitCode::from(2);
            }
        }
    }
    let fake = match FakeGoogle::start_with(config).await {
        Ok(f) => f,
        Err(e @ StartError::Config(_)) => {
            let path = args.config.as_deref().unwrap_or(std::path::Path::new(""));
            eprintln!("fake-google: {}: {e}", path.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("fake-google: {e}");
            return ExitCode::from(1);
        }
    };
    if let (Some(path), Some(pem)) = (&args.ca_out, fake.ca_pem())
        && let Err(e) = std::fs::write(path, pem)
    {
        eprintln!(
            "fake-google: cannot write the CA to {}: {e}",
            path.display()
        );
        return ExitCode::from(1);
    }
    let base = fake.base_url();
    eprintln!("client_id: {}", fake.client_id());
    eprintln!("client secret file: {base}/_fake/client_secret.json");
    eprintln!(
        "mint a code: curl -s -X POST {base}/_fake/codes -d '{{\"email\":\"alice@example.com\"}}'"
    );
    eprintln!(
        "sign in in a browser: {base}/o/oauth2/v2/auth?client_id={}&redirect_uri=http://localhost:8080/&response_type=code&scope=openid%20email",
        fake.client_id()
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {base}");
    let _ = out.flush();
    drop(out);
    let _ = tokio::signal::ctrl_c().await;
    fake.shutdown().await;
    ExitCode::SUCCESS
}
