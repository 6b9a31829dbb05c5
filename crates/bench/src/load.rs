//! A closed-loop load generator: `concurrency` workers take request numbers from a shared counter until `total`
//! requests are done or `limit` has passed, recording each latency.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What one load run measured.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    /// Workers.
    pub(crate) concurrency: usize,
    /// Requests that succeeded.
    pub(crate) ok: usize,
    /// Requests that failed.
    pub(crate) errors: usize,
    /// The first failure, for the report.
    pub(crate) first_error: Option<String>,
    /// Wall time of the run.
    pub(crate) elapsed: Duration,
    /// Latency percentiles of all requests.
    pub(crate) p50: Duration,
    /// 95th percentile.
    pub(crate) p95: Duration,
    /// 99th percentile.
    pub(crate) p99: Duration,
    /// CPU seconds the measured process used during the run, when known.
    pub(crate) cpu_secs: Option<f64>,
    /// CPU seconds this load generator used during the run, when known.
    pub(crate) client_cpu_secs: Option<f64>,
    /// Every request's latency, sorted (for pooling runs with [`Load::pooled`]).
    pub(crate) latencies: Vec<Duration>,
}

impl Load {
    /// Successful requests per second.
    pub(crate) fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU seconds of the measured process per 1,000 successful requests.
    pub(crate) fn cpu_per_1000(&self) -> Option<f64> {
        let ok = self.ok.max(1) as f64;
        self.cpu_secs.map(|cpu| cpu * 1000.0 / ok)
    }

    /// CPU seconds of the load generator per 1,000 successful requests.
    pub(crate) fn client_cpu_per_1000(&self) -> Option<f64> {
        let ok = self.ok.max(1) as f64;
        self.client_cpu_secs.map(|cpu| cpu * 1000.0 / ok)
    }

    /// Several runs at one concurrency as one: counts, wall time and CPU added up, percentiles over every
    /// request of every run; `None` for no runs.
    pub(crate) fn pooled(runs: &[Load]) -> Option<Load> {
        let first = runs.first()?;
        let sum = |f: fn(&Load) -> Option<f64>| runs.iter().map(f).sum::<Option<f64>>();
        let mut latencies: Vec<Duration> = runs.iter().flat_map(|l| l.latencies.clone()).collect();
        latencies.sort_unstable();
        Some(Load {
            concurrency: first.concurrency,
            ok: runs.iter().map(|l| l.ok).sum(),
            errors: runs.iter().map(|l| l.errors).sum(),
            first_error: runs.iter().find_map(|l| l.first_error.clone()),
            elapsed: runs.iter().map(|l| l.elapsed).sum(),
            p50: quantile(&latencies, 0.50),
            p95: quantile(&latencies, 0.95),
            p99: quantile(&latencies, 0.99),
            cpu_secs: sum(|l| l.cpu_secs),
            client_cpu_secs: sum(|l| l.client_cpu_secs),
            latencies,
        })
    }
}

/// The `q` quantile of sorted latencies.
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs `op(i)` for `i` in `0..total` on `concurrency` workers, stopping early after `limit`.
pub(crate) async fn run<F, Fut>(concurrency: usize, total: usize, limit: Duration, op: F) -> Load
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (op, next) = (Arc::clone(&op), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || start.elapsed() > limit {
                    break;
                }
                let t = Instant::now();
                let result = op(i).await;
                latencies.push(t.elapsed());
                if let Err(e) = result {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for worker in workers {
        match worker.await {
            Ok((l, e, f)) => {
                latencies.extend(l);
                errors += e;
                if first_error.is_none() {
                    first_error = f;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("a worker failed: {e}"));
            }
        }
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Load {
        concurrency,
        ok: latencies.len().saturating_sub(errors),
        errors,
        first_error,
        elapsed,
        p50: quantile(&latencies, 0.50),
        p95: quantile(&latencies, 0.95),
        p99: quantile(&latencies, 0.99),
        cpu_secs: None,
        client_cpu_secs: None,
        latencies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.99), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_run_counts_every_request_and_its_failures() {
        let load = run(4, 10, Duration::from_secs(10), |i| async move {
            if i % 5 == 0 {
                Err(format!("request {i} failed"))
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(load.ok, 8);
        assert_eq!(load.errors, 2);
        assert!(load.first_error.is_some());
    }

    #[tokio::test]
    async fn pooled_runs_add_up_and_share_their_percentiles() {
        let a = run(2, 6, Duration::from_secs(10), |_| async { Ok(()) }).await;
        let b = run(2, 4, Duration::from_secs(10), |i| async move {
            if i == 0 { Err("no".to_owned()) } else { Ok(()) }
        })
        .await;
        let pooled = Load::pooled(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(pooled.ok, 9);
        assert_eq!(pooled.errors, 1);
        assert_eq!(pooled.elapsed, a.elapsed + b.elapsed);
        assert_eq!(pooled.latencies.len(), 10);
        assert!(Load::pooled(&[]).is_none());
    }
}
