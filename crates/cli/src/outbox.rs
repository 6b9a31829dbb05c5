//! The webhook delivery loop of a running server, and its metrics.

use std::sync::Arc;
use std::time::Duration;

use offline_access_domain::SystemClock;
use offline_access_domain::delivery::{Delivery, Round};
use offline_access_domain::events::EventStore;
use offline_access_webhooks::WebhookSender;

use crate::config::Config;
use crate::error::Failure;

/// How often the outbox's counts are sampled for the `offline_access_webhook_events` gauge.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Starts delivering the outbox to `webhooks.url` (when set) until `shutdown`; returns whether it started.
///
/// # Errors
/// A configuration failure naming `webhooks.*`.
pub(crate) fn spawn_delivery(
    config: &Config,
    events: Arc<dyn EventStore>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<bool, Failure> {
    let Some(webhook) = config.webhooks()? else {
        return Ok(false);
    };
    let target = webhook.describe();
    let send_timeout = webhook.timeout;
    let sender =
        WebhookSender::new(webhook).map_err(|e| Failure::config(format!("webhooks: {e}")))?;
    let mut delivery = Delivery::new(
        Arc::clone(&events),
        Arc::new(sender),
        Arc::new(SystemClock),
        config.retry_schedule(),
    );
    delivery.send_timeout = send_timeout;
    tracing::info!(webhook = %target, schedule = ?config.retry_schedule(), "delivering events to the webhook");
    tokio::spawn(async move { delivery.run(shutdown, observe).await });
    tokio::spawn(sample_counts(events));
    Ok(true)
}

fn observe(round: &Round) {
    for latency in &round.delivered {
        metrics::histogram!("offline_access_webhook_delivery_latency_seconds")
            .record(latency.as_secs_f64());
    }
    let outcomes = [
        ("delivered", round.delivered.len()),
        ("retry", round.retried),
        ("failed", round.failed),
    ];
    for (outcome, n) in outcomes {
        if n > 0 {
            metrics::counter!("offline_access_webhook_deliveries_total", "outcome" => outcome)
                .increment(n as u64);
        }
    }
}

async fn sample_counts(events: Arc<dyn EventStore>) {
    loop {
        match events.counts().await {
            Ok(counts) => {
                for (state, n) in [
                    ("pending", counts.pending),
                    ("delivered", counts.delivered),
                    ("failed", counts.failed),
                ] {
                    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                    metrics::gauge!("offline_access_webhook_events", "state" => state)
                        .set(n as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not count the outbox's events"),
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}
