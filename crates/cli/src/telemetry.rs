//! Logs (tracing-subscriber, to stderr) and metrics (a Prometheus recorder rendered on `/metrics`).

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::error::Failure;

/// Installs the global subscriber: `RUST_LOG` when set, else `level`; text or JSON lines on stderr (stdout is
/// for command output and the `listening on` line).
///
/// # Errors
/// A configuration failure naming `log.level` or `RUST_LOG` when the filter does not parse.
pub(crate) fn init_tracing(level: &str, format: LogFormat) -> Result<(), Failure> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::builder()
            .parse(quiet_postgres_driver(&env))
            .map_err(|e| {
                Failure::config(format!(
                    "RUST_LOG is not a valid log filter ({e}); unset it or fix it"
                ))
            })?,
        _ => EnvFilter::builder()
            .parse(quiet_postgres_driver(level))
            .map_err(|e| Failure::config(format!("log.level is not a valid log filter ({e})")))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A subscriber installed earlier (tests) is kept.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// `filter` with `tokio_postgres` capped at `warn` unless it names that target itself: at `debug` the driver logs
/// every statement's parameters (sealed tokens, subjects, e-mail addresses), which no log should hold, and at
/// `info` it relays the server's NOTICE lines (`... already exists, skipping` on every migration), which are noise.
fn quiet_postgres_driver(filter: &str) -> String {
    if filter.contains("tokio_postgres") {
        filter.to_owned()
    } else if filter.trim().is_empty() {
        "tokio_postgres=warn".to_owned()
    } else {
        format!(
            "{},tokio_postgres=warn",
            filter.trim().trim_end_matches(',')
        )
    }
}

/// Installs the global Prometheus recorder and returns its renderer for `/metrics`; a task drains histogram
/// buckets periodically so memory stays bounded.
///
/// # Errors
/// A runtime failure if a global recorder is already installed.
pub(crate) fn install_metrics() -> Result<Arc<dyn Fn() -> String + Send + Sync>, Failure> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle: PrometheusHandle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| Failure::runtime(format!("cannot install the metrics recorder: {e}")))?;
    // `# HELP` lines for every metric (docs/metrics.md).
    offline_access_http::describe_metrics();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(Arc::new(move || handle.render()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_driver_is_capped_at_warn_unless_named() {
        assert_eq!(quiet_postgres_driver("debug"), "debug,tokio_postgres=warn");
        assert_eq!(
            quiet_postgres_driver("offline_access_google=debug,info,"),
            "offline_access_google=debug,info,tokio_postgres=warn"
        );
        assert_eq!(quiet_postgres_driver(""), "tokio_postgres=warn");
        assert_eq!(
            quiet_postgres_driver("debug,tokio_postgres=trace"),
            "debug,tokio_postgres=trace"
        );
        for filter in ["debug", "trace", "warn", "info,offline_access=debug"] {
            let parsed = EnvFilter::builder().parse(quiet_postgres_driver(filter));
            assert!(parsed.is_ok(), "{filter}");
        }
    }
}
