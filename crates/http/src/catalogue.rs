//! The catalogue of every metric the workspace records, and [`describe_metrics`], which gives each its
//! `# HELP` line on `/metrics`.
//!
//! The catalogue is kept in one place, here; `docs/metrics.md` explains each metric and its label values, and a
//! test (`api metrics_catalogue`) scans the workspace's sources for `counter!`, `histogram!` and `gauge!` so that
//! a metric recorded anywhere is both described here and documented there.

use metrics::Unit;

/// What kind of Prometheus metric it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (`metrics::counter!`).
    Counter,
    /// A distribution of observed values (`metrics::histogram!`).
    Histogram,
    /// A value that is set (`metrics::gauge!`).
    Gauge,
}

impl MetricKind {
    /// The Prometheus `# TYPE` of this kind.
    #[must_use]
    pub fn prometheus_type(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Histogram => "histogram",
            Self::Gauge => "gauge",
        }
    }
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct MetricInfo {
    /// The metric's name, as recorded.
    pub name: &'static str,
    /// Counter, histogram or gauge.
    pub kind: MetricKind,
    /// Its unit, when it has one (durations are in seconds).
    pub unit: Option<Unit>,
    /// The `# HELP` text: one sentence.
    pub help: &'static str,
    /// The names of its labels (their values are in docs/metrics.md).
    pub labels: &'static [&'static str],
}

/// A catalogue entry; every histogram of ours measures seconds.
const fn metric(
    kind: MetricKind,
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricInfo {
    let unit = match kind {
        MetricKind::Histogram => Some(Unit::Seconds),
        MetricKind::Counter | MetricKind::Gauge => None,
    };
    MetricInfo {
        name,
        kind,
        unit,
        help,
        labels,
    }
}

/// Every metric the workspace records (the HTTP adapter, the Google adapter, the command line's webhook
/// delivery), in the order of docs/metrics.md.
pub const METRICS: &[MetricInfo] = &[
    metric(
        MetricKind::Counter,
        "offline_access_http_requests_total",
        &["route", "status"],
        "HTTP requests answered (public and internal listeners), by route template and status code.",
    ),
    metric(
        MetricKind::Histogram,
        "offline_access_http_request_duration_seconds",
        &["route"],
        "Time to answer an HTTP request (to the answer's head; a streamed body may take longer), by route template.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_sign_ins_total",
        &["outcome"],
        "POST /authcode sign-ins, by outcome: success or the error code answered.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_drive_calls_total",
        &["operation", "outcome"],
        "Drive operations asked for through /v1/me/drive, by operation and outcome: success or the error code answered.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_risc_events_total",
        &["outcome"],
        "Security Event Tokens received on POST /risc, by outcome.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_internal_requests_total",
        &["key", "outcome"],
        "Internal API requests, by API key name (none when no valid key) and outcome.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_internal_tokens_total",
        &["key"],
        "Access tokens handed out by the internal API, by API key name.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_internal_proxied_total",
        &["key", "host", "status"],
        "Google API calls made through the internal API's proxy, by API key name, Google host and Google's status code.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_google_requests_total",
        &["endpoint", "outcome"],
        "Calls this server made to Google, by endpoint and outcome.",
    ),
    metric(
        MetricKind::Histogram,
        "offline_access_google_request_duration_seconds",
        &["endpoint"],
        "Time Google took to answer a call (for a streamed download: to the answer's head), by endpoint.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_id_token_verifications_total",
        &["outcome"],
        "ID-token verifications, by outcome: ok, ok_exchanged, or the reason the token was refused.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_id_token_remembered_total",
        &[],
        "Bearer ID tokens accepted from the verified-token cache without a full verification.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_security_event_verifications_total",
        &["outcome"],
        "Security Event Token verifications, by outcome: ok, an RFC 8935 error code, or unavailable.",
    ),
    metric(
        MetricKind::Counter,
        "offline_access_webhook_deliveries_total",
        &["outcome"],
        "Webhook delivery attempts of outbox events, by outcome: delivered, retry or failed.",
    ),
    metric(
        MetricKind::Histogram,
        "offline_access_webhook_delivery_latency_seconds",
        &[],
        "Time from an event's recording to its delivery to the webhook.",
    ),
    metric(
        MetricKind::Gauge,
        "offline_access_webhook_events",
        &["state"],
        "Events in the outbox, by state: pending, delivered or failed (sampled periodically).",
    ),
];

/// Gives every metric of [`METRICS`] its `# HELP` text (and unit) in the installed recorder.
///
/// Call it once, right after installing the recorder (e.g. `metrics::set_global_recorder` with
/// `metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()`): descriptions given before a
/// recorder is installed are lost. A described metric shows on `/metrics` once it has a value.
pub fn describe_metrics() {
    for metric in METRICS {
        match (metric.kind, metric.unit) {
            (MetricKind::Counter, Some(unit)) => {
                metrics::describe_counter!(metric.name, unit, metric.help);
            }
            (MetricKind::Counter, None) => metrics::describe_counter!(metric.name, metric.help),
            (MetricKind::Histogram, Some(unit)) => {
                metrics::describe_histogram!(metric.name, unit, metric.help);
            }
            (MetricKind::Histogram, None) => {
                metrics::describe_histogram!(metric.name, metric.help);
            }
            (MetricKind::Gauge, Some(unit)) => {
                metrics::describe_gauge!(metric.name, unit, metric.help)
            }
            (MetricKind::Gauge, None) => metrics::describe_gauge!(metric.name, metric.help),
        }
    }
}
