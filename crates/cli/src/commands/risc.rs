//! `risc register` and `risc status`: this server's receiver of Google's security events, configured at Google's
//! RISC API with a service account.

use std::path::Path;

use offline_access_domain::risc::SUPPORTED_EVENT_TYPES;
use offline_access_google::{RiscApiError, RiscStreams, ServiceAccountKey};

use crate::compose::{self, GoogleSource};
use crate::config::Config;
use crate::error::{Failure, Outcome, out};

fn streams(config: &Config, service_account: &Path) -> Result<RiscStreams, Failure> {
    let account = ServiceAccountKey::from_file(service_account).map_err(|e| {
        Failure::config(format!(
            "--service-account {}: {e}; download the service account's JSON key from the Google Cloud console",
            service_account.display()
        ))
    })?;
    let google_config = compose::google_config(config, GoogleSource::Configured)?;
    RiscStreams::new(&google_config, account).map_err(|e| Failure::config(e.to_string()))
}

fn api_failure(step: &str, e: &RiscApiError) -> Failure {
    Failure::runtime(format!("Google's RISC API refused {step}: {e}"))
}

/// `risc register --service-account FILE --url URL`: `stream:update` with every supported event type, then
/// (unless `verify` is off) `stream:verify`, whose event the running server logs and reports.
pub(crate) async fn register(
    config: &Config,
    service_account: &Path,
    url: &str,
    verify: bool,
) -> Outcome {
    let parsed = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    let Some(parsed) = parsed else {
        return Err(Failure::config(format!(
            "--url must be the https:// URL of this server's POST /risc (it is {url:?})"
        )));
    };
    if parsed.scheme() != "https" {
        tracing::warn!(url = %parsed, "Google sends security events only to https:// receivers; http:// works only with a fake Google");
    }
    let streams = streams(config, service_account)?;
    streams
        .update(parsed.as_str())
        .await
        .map_err(|e| api_failure("the stream update", &e))?;
    out!(
        "RISC stream now delivers {} event types to {parsed} (service account {})",
        SUPPORTED_EVENT_TYPES.len(),
        streams.account().client_email()
    );
    if verify {
        let state = format!(
            "offline-access register {}",
            time::OffsetDateTime::now_utc().unix_timestamp()
        );
        streams
            .verify(&state)
            .await
            .map_err(|e| api_failure("the verification request", &e))?;
        out!(
            "verification event requested with state {state:?}; the server logs it when it arrives"
        );
    }
    Ok(())
}

/// `risc status --service-account FILE`: the receiver, the event types and whether Google sends.
pub(crate) async fn status(config: &Config, service_account: &Path) -> Outcome {
    let streams = streams(config, service_account)?;
    let stream = streams
        .config()
        .await
        .map_err(|e| api_failure("reading the stream", &e))?;
    let status = streams
        .status()
        .await
        .map_err(|e| api_failure("reading the stream status", &e))?;
    out!("status: {status}");
    match &stream.delivery {
        Some(delivery) => out!("receiver: {} ({})", delivery.url, delivery.delivery_method),
        None => out!("receiver: none configured; run `offline-access risc register`"),
    }
    let missing: Vec<&str> = SUPPORTED_EVENT_TYPES
        .iter()
        .copied()
        .filter(|t| !stream.events_requested.iter().any(|r| r == t))
        .collect();
    out!("event types requested: {}", stream.events_requested.len());
    for event in &stream.events_requested {
        out!("  {event}");
    }
    if !missing.is_empty() {
        out!(
            "not requested (run `risc register` again): {}",
            missing.join(", ")
        );
    }
    Ok(())
}
