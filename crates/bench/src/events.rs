//! The events scenario: what recording an event with every grant change costs a sign-in (webhooks off vs on,
//! alternating), and how fast a server's delivery loop empties a backlog of pending events into a webhook
//! endpoint, against the load generator POSTing the same number of requests to that endpoint directly.
//!
//! The webhook endpoint is [`Receiver`]: a small HTTP/1.1 server on loopback inside this process that answers
//! `204` at once (or `503` while it is "down"), remembers every `webhook-id` it accepted and when, and the
//! latency from each event's `timestamp` to its receipt. It does not verify signatures.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::load::{self, Load};
use crate::procs::{CpuByPid, Layout, StoreSpec, Webhooks};
use crate::scenarios::{Ctx, authcode_load};
use crate::{Plan, Res};

/// The delivery loop's concurrent sends (`Delivery::concurrency` in the domain): the direct baseline's workers.
pub(crate) const DELIVERY_CONCURRENCY: usize = 8;
/// `webhooks.min_retry_ms` of the bench's servers: refused events come back quickly.
const MIN_RETRY_MS: u64 = 100;
/// `webhooks.max_retry_ms` of the bench's servers.
const MAX_RETRY_MS: u64 = 500;
/// Concurrency of the sign-ins that fill the outbox before the delivery run.
const FILL_CONCURRENCY: usize = 32;
/// The longest wait for every event of a run to arrive; past it the run fails (an event was never delivered).
const DELIVERY_DEADLINE: Duration = Duration::from_secs(180);
/// The process name (`/proc/PID/comm`) of PostgreSQL's processes, whose CPU the Postgres rows count.
const POSTGRES_COMM: &str = "postgres";
/// The largest request head and body the receiver reads.
const MAX_HEAD: usize = 16 * 1024;
/// See [`MAX_HEAD`].
const MAX_BODY: usize = 1024 * 1024;

/// What the receiver accepted on one path.
#[derive(Debug, Default)]
struct Seen {
    /// Every distinct `webhook-id`.
    ids: HashSet<String>,
    /// Each id's first receipt, in order: when, and the time since the body's `timestamp` (when it parses).
    firsts: Vec<(Instant, Option<Duration>)>,
    /// Requests whose `webhook-id` had been accepted before.
    duplicates: usize,
}

/// The receiver's state, shared by its connections.
#[derive(Debug, Default)]
struct Shared {
    /// Whether `/hooks` accepts (`204`) or refuses (`503`).
    up: AtomicBool,
    /// `503` answers on `/hooks`.
    refused: AtomicUsize,
    /// Requests that were not a POST with a `webhook-id` to a known path.
    malformed: AtomicUsize,
    /// `/hooks`: the server's deliveries.
    hooks: Mutex<Seen>,
    /// `/direct`: the load generator's baseline.
    direct: Mutex<Seen>,
}

/// Which path of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// `/hooks`, where servers deliver.
    Hooks,
    /// `/direct`, where the baseline POSTs.
    Direct,
}

/// A webhook endpoint on loopback in this process (see the module's documentation); stops when dropped.
#[derive(Debug)]
pub(crate) struct Receiver {
    /// `http://127.0.0.1:PORT`.
    base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Dropping the accept task drops its connections too (they live in its JoinSet).
        self.task.abort();
    }
}

impl Receiver {
    /// Listens on a free loopback port; `/hooks` answers `204` when `up`, else `503`.
    pub(crate) async fn start(up: bool) -> Res<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            up: AtomicBool::new(up),
            ..Shared::default()
        });
        let state = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            connections.spawn(serve(stream, Arc::clone(&state)));
                        }
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        Ok(Receiver { base, shared, task })
    }

    /// The URL of `path`.
    pub(crate) fn url(&self, path: Path) -> String {
        match path {
            Path::Hooks => format!("{}/hooks", self.base),
            Path::Direct => format!("{}/direct", self.base),
        }
    }

    /// Makes `/hooks` accept (`204`) or refuse (`503`) from now on.
    pub(crate) fn set_up(&self, up: bool) {
        self.shared.up.store(up, Ordering::SeqCst);
    }

    /// `503` answers so far.
    pub(crate) fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Requests that were not a POST with a `webhook-id` to `/hooks` or `/direct`.
    pub(crate) fn malformed(&self) -> usize {
        self.shared.malformed.load(Ordering::SeqCst)
    }

    fn seen<T>(&self, path: Path, f: impl FnOnce(&Seen) -> T) -> T {
        let seen = match path {
            Path::Hooks => &self.shared.hooks,
            Path::Direct => &self.shared.direct,
        };
        f(&seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Distinct `webhook-id`s accepted on `path`.
    pub(crate) fn distinct(&self, path: Path) -> usize {
        self.seen(path, |s| s.ids.len())
    }

    /// Requests on `path` repeating an accepted `webhook-id`.
    pub(crate) fn duplicates(&self, path: Path) -> usize {
        self.seen(path, |s| s.duplicates)
    }

    /// When the `from`-th and the last distinct id on `path` arrived.
    pub(crate) fn receipts_since(&self, path: Path, from: usize) -> Option<(Instant, Instant)> {
        self.seen(path, |s| {
            let firsts = s.firsts.get(from..)?;
            Some((firsts.first()?.0, firsts.last()?.0))
        })
    }

    /// The latencies (body `timestamp` → receipt) of the distinct ids on `path` from the `from`-th on.
    pub(crate) fn latencies_since(&self, path: Path, from: usize) -> Vec<Duration> {
        self.seen(path, |s| {
            s.firsts
                .get(from..)
                .unwrap_or_default()
                .iter()
                .filter_map(|(_, latency)| *latency)
                .collect()
        })
    }

    /// Waits until `n` distinct ids arrived on `path`; fails after `deadline` (an event was never delivered).
    pub(crate) async fn wait_for(&self, path: Path, n: usize, deadline: Duration) -> Res<()> {
        let start = Instant::now();
        loop {
            let got = self.distinct(path);
            if got >= n {
                return Ok(());
            }
            if start.elapsed() > deadline {
                return Err(format!(
                    "only {got} of {n} events reached the webhook receiver within {} s",
                    deadline.as_secs()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// `204`: accepted.
const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
/// `503`: the endpoint is down.
const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
/// `400`: not a delivery.
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// The parts of a request head the receiver uses.
#[derive(Debug, PartialEq, Eq)]
struct Head<'a> {
    method: &'a str,
    path: &'a str,
    content_length: usize,
    webhook_id: Option<&'a str>,
    /// `Connection: close`, or HTTP/1.0.
    close: bool,
    /// A `Transfer-Encoding` (which this receiver does not read).
    chunked: bool,
}

/// Parses an HTTP/1.1 request head (up to and without the blank line); `None` when it is not one.
fn parse_head(head: &str) -> Option<Head<'_>> {
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, target, version) = (
        request_line.next()?,
        request_line.next()?,
        request_line.next()?,
    );
    let mut parsed = Head {
        method,
        path: target.split('?').next().unwrap_or(target),
        content_length: 0,
        webhook_id: None,
        close: version == "HTTP/1.0",
        chunked: false,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            parsed.content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("webhook-id") {
            parsed.webhook_id = Some(value);
        } else if name.eq_ignore_ascii_case("connection") {
            parsed.close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            parsed.chunked = true;
        }
    }
    Some(parsed)
}

/// The head of the request whose head (blank line included) is `buf[..head_len]`, when it is one this receiver
/// reads: no `Transfer-Encoding`, a body of at most [`MAX_BODY`].
fn head_of(buf: &[u8], head_len: usize) -> Option<Head<'_>> {
    let text = std::str::from_utf8(buf.get(..head_len.checked_sub(4)?)?).ok()?;
    parse_head(text).filter(|h| !h.chunked && h.content_length <= MAX_BODY)
}

/// The time from the `timestamp` of an event body (RFC 3339) to now, when the body has one.
fn body_latency(body: &[u8]) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let stamp = OffsetDateTime::parse(value.get("timestamp")?.as_str()?, &Rfc3339).ok()?;
    Duration::try_from(OffsetDateTime::now_utc() - stamp).ok()
}

/// Records a parsed request and returns the response's bytes.
fn answer(shared: &Shared, head: &Head<'_>, body: &[u8]) -> &'static [u8] {
    let seen = match (head.method, head.path, head.webhook_id) {
        ("POST", "/hooks", Some(_)) if !shared.up.load(Ordering::SeqCst) => {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            return UNAVAILABLE;
        }
        ("POST", "/hooks", Some(_)) => &shared.hooks,
        ("POST", "/direct", Some(_)) => &shared.direct,
        _ => {
            shared.malformed.fetch_add(1, Ordering::SeqCst);
            return BAD_REQUEST;
        }
    };
    let latency = body_latency(body);
    let now = Instant::now();
    let id = head.webhook_id.unwrap_or_default();
    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    if seen.ids.insert(id.to_owned()) {
        seen.firsts.push((now, latency));
    } else {
        seen.duplicates += 1;
    }
    NO_CONTENT
}

/// One connection: requests one after the other (keep-alive) until the peer closes or a request is not readable.
async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let head_len = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > MAX_HEAD {
                return;
            }
            if !matches!(stream.read_buf(&mut buf).await, Ok(n) if n > 0) {
                return;
            }
        };
        let Some(length) = head_of(&buf, head_len).map(|h| h.content_length) else {
            shared.malformed.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(BAD_REQUEST).await;
            return;
        };
        let end = head_len + length;
        while buf.len() < end {
            if !matches!(stream.read_buf(&mut buf).await, Ok(n) if n > 0) {
                return;
            }
        }
        // Parsed again now that `buf` holds the body too (a microsecond; the head borrows `buf`).
        let Some(head) = head_of(&buf, head_len) else {
            return;
        };
        let close = head.close;
        let response = answer(&shared, &head, &buf[head_len..end]);
        buf.drain(..end);
        if stream.write_all(response).await.is_err() || close || response == BAD_REQUEST {
            return;
        }
    }
}

/// One concurrency level of the cost runs: sign-ins on the server without webhooks (`off`) and on the one with
/// them (`on`), one run of each per round, alternating.
#[derive(Debug, Clone)]
pub(crate) struct CostRow {
    /// Workers.
    pub(crate) concurrency: usize,
    /// The runs on the server without webhooks, one per round.
    pub(crate) off: Vec<Load>,
    /// The runs on the server with webhooks, one per round.
    pub(crate) on: Vec<Load>,
    /// CPU seconds of the server with webhooks from the start of each of its runs until the run's last event
    /// was received (the sign-ins and their deliveries).
    pub(crate) on_cpu_with_delivery: f64,
    /// PostgreSQL's CPU seconds (every `postgres` process) during the runs without webhooks; `None` on the file
    /// store.
    pub(crate) off_db_cpu: Option<f64>,
    /// PostgreSQL's CPU seconds over the same span as [`CostRow::on_cpu_with_delivery`]; `None` on the file store.
    pub(crate) on_db_cpu_with_delivery: Option<f64>,
    /// Events received from the runs on the server with webhooks.
    pub(crate) events: usize,
    /// Their delivery latencies (the body's `timestamp` → receipt), sorted.
    pub(crate) delivery: Vec<Duration>,
}

impl CostRow {
    /// The rounds of `off` (or `on`) as one run.
    pub(crate) fn pooled(&self, on: bool) -> Option<Load> {
        Load::pooled(if on { &self.on } else { &self.off })
    }

    /// Sign-ins per second with webhooks on / off, over every round.
    pub(crate) fn ratio(&self) -> f64 {
        let rate = |on| self.pooled(on).map_or(0.0, |l| l.rate());
        rate(true) / rate(false).max(1e-9)
    }

    /// The on/off ratio of each round.
    pub(crate) fn round_ratios(&self) -> Vec<f64> {
        self.off
            .iter()
            .zip(&self.on)
            .map(|(off, on)| on.rate() / off.rate().max(1e-9))
            .collect()
    }

    /// Server CPU seconds per 1,000 sign-ins with webhooks on, deliveries included.
    pub(crate) fn on_cpu_with_delivery_per_1000(&self) -> f64 {
        let ok: usize = self.on.iter().map(|l| l.ok).sum();
        self.on_cpu_with_delivery * 1000.0 / ok.max(1) as f64
    }

    /// PostgreSQL's CPU seconds per 1,000 sign-ins without webhooks and with them (deliveries included).
    pub(crate) fn db_cpu_per_1000(&self) -> (Option<f64>, Option<f64>) {
        let per_1000 = |cpu: Option<f64>, runs: &[Load]| {
            let ok: usize = runs.iter().map(|l| l.ok).sum();
            cpu.map(|cpu| cpu * 1000.0 / ok.max(1) as f64)
        };
        (
            per_1000(self.off_db_cpu, &self.off),
            per_1000(self.on_db_cpu_with_delivery, &self.on),
        )
    }
}

/// The cost of events on sign-ins, for one store.
#[derive(Debug, Clone)]
pub(crate) struct EventCost {
    /// `file` or `postgres`.
    pub(crate) store: &'static str,
    /// Where the processes ran.
    pub(crate) layout: Layout,
    /// Rounds per concurrency.
    pub(crate) rounds: usize,
    /// One row per concurrency.
    pub(crate) rows: Vec<CostRow>,
    /// Deliveries repeating an id the receiver had accepted.
    pub(crate) duplicates: usize,
    /// Requests the receiver could not take as a delivery.
    pub(crate) malformed: usize,
}

impl EventCost {
    /// Best sign-in rate with webhooks on / best without, each at its best concurrency (rounds pooled).
    pub(crate) fn ratio(&self) -> f64 {
        let best = |on| {
            self.rows
                .iter()
                .filter_map(|r| r.pooled(on))
                .map(|l| l.rate())
                .fold(0.0_f64, f64::max)
        };
        best(true) / best(false).max(1e-9)
    }
}

/// The `webhooks.*` of a server delivering to `receiver`'s `/hooks`.
fn hooks(receiver: &Receiver) -> Webhooks {
    Webhooks {
        url: receiver.url(Path::Hooks),
        min_retry_ms: MIN_RETRY_MS,
        max_retry_ms: MAX_RETRY_MS,
    }
}

/// Rounds of the cost runs: one in smoke mode, else two (off, on, off, on at each concurrency).
fn rounds(plan: &Plan) -> usize {
    if plan.smoke { 1 } else { 2 }
}

/// Sign-ins per second on `/authcode` on a server without webhooks (`off_store`) and one whose every sign-in
/// records an event delivered to a local receiver (`on_store`), alternating at each concurrency; the server's CPU
/// per sign-in for both, and the events' delivery latencies.
pub(crate) async fn cost(
    ctx: &mut Ctx,
    off_store: &StoreSpec,
    on_store: &StoreSpec,
    label: &'static str,
) -> Res<EventCost> {
    let receiver = Receiver::start(true).await?;
    let off = ctx.server(off_store).await?;
    let on = ctx.server_with(on_store, Some(&hooks(&receiver))).await?;
    let run = ctx.next();
    let rounds = rounds(&ctx.plan);
    let mut signed_in_on = 0usize;
    let mut rows = Vec::new();
    // PostgreSQL's own work for each server (its backends, WAL writer, ...), sampled around the same spans.
    let db = matches!(on_store, StoreSpec::Postgres { .. });
    let db_cpu = || db.then(|| CpuByPid::of(POSTGRES_COMM));
    let add_since = |total: &mut Option<f64>, before: &Option<CpuByPid>| {
        if let (Some(total), Some(before)) = (total.as_mut(), before) {
            *total += CpuByPid::of(POSTGRES_COMM).since(before);
        }
    };
    for &c in &ctx.plan.concurrency {
        let total = ctx.plan.requests(c);
        let mut row = CostRow {
            concurrency: c,
            off: Vec::new(),
            on: Vec::new(),
            on_cpu_with_delivery: 0.0,
            off_db_cpu: db.then_some(0.0),
            on_db_cpu_with_delivery: db.then_some(0.0),
            events: 0,
            delivery: Vec::new(),
        };
        for round in 0..rounds {
            let codes = ctx
                .mint_codes(&format!("ev{run}-{c}-{round}-off"), total)
                .await?;
            let db_before = db_cpu();
            row.off
                .push(authcode_load(ctx, &off, codes, c, ctx.plan.limit).await?);
            add_since(&mut row.off_db_cpu, &db_before);

            let codes = ctx
                .mint_codes(&format!("ev{run}-{c}-{round}-on"), total)
                .await?;
            let received_before = receiver.distinct(Path::Hooks);
            let cpu_before = on.cpu_secs()?;
            let db_before = db_cpu();
            let load = authcode_load(ctx, &on, codes, c, ctx.plan.limit).await?;
            // One event per new user's sign-in: wait for this run's, so the next run (off) has the machine alone.
            signed_in_on += load.ok;
            receiver
                .wait_for(Path::Hooks, signed_in_on, DELIVERY_DEADLINE)
                .await?;
            row.on_cpu_with_delivery += on.cpu_secs()? - cpu_before;
            add_since(&mut row.on_db_cpu_with_delivery, &db_before);
            row.events += receiver.distinct(Path::Hooks) - received_before;
            row.delivery
                .extend(receiver.latencies_since(Path::Hooks, received_before));
            row.on.push(load);
        }
        row.delivery.sort_unstable();
        let (db_off, db_on) = row.db_cpu_per_1000();
        eprintln!(
            "events {label} ({}) c={c}: on/off {:.2} (rounds {:?}); server CPU µs/sign-in off {:.0}, on with \
             deliveries {:.0}; PostgreSQL CPU µs/sign-in off {:.0}, on with deliveries {:.0}",
            ctx.layout.label(),
            row.ratio(),
            row.round_ratios(),
            row.pooled(false)
                .and_then(|l| l.cpu_per_1000())
                .unwrap_or(0.0)
                * 1000.0,
            row.on_cpu_with_delivery_per_1000() * 1000.0,
            db_off.unwrap_or(0.0) * 1000.0,
            db_on.unwrap_or(0.0) * 1000.0,
        );
        rows.push(row);
    }
    off.stop().await;
    on.stop().await;
    Ok(EventCost {
        store: label,
        layout: ctx.layout,
        rounds,
        rows,
        duplicates: receiver.duplicates(Path::Hooks),
        malformed: receiver.malformed(),
    })
}

/// What the delivery run measured for one store.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryRun {
    /// `file` or `postgres`.
    pub(crate) store: &'static str,
    /// Where the processes ran.
    pub(crate) layout: Layout,
    /// The sign-ins that recorded the events (one each), made while the receiver was down.
    pub(crate) signin: Load,
    /// `503` answers the receiver gave while down.
    pub(crate) refused: usize,
    /// From the receiver coming up to the last event's first receipt.
    pub(crate) drain: Duration,
    /// From the first event's receipt to the last one's.
    pub(crate) first_to_last: Duration,
    /// Distinct events received.
    pub(crate) received: usize,
    /// Deliveries repeating an id already received (counted until a moment after the last new one).
    pub(crate) duplicates: usize,
    /// The server's CPU seconds while draining.
    pub(crate) server_cpu_secs: f64,
    /// The baseline: the load generator POSTing as many event-like bodies to the receiver at the delivery loop's
    /// concurrency.
    pub(crate) direct: Load,
    /// Requests the receiver could not take as a delivery.
    pub(crate) malformed: usize,
}

impl DeliveryRun {
    /// Events delivered per second from the receiver coming up until the last one arrived.
    pub(crate) fn rate(&self) -> f64 {
        self.received as f64 / self.drain.as_secs_f64().max(1e-9)
    }

    /// Events delivered per second between the first and the last receipt.
    pub(crate) fn steady_rate(&self) -> f64 {
        self.received.saturating_sub(1) as f64 / self.first_to_last.as_secs_f64().max(1e-9)
    }
}

/// The baseline's `n` POSTs to `/direct` at [`DELIVERY_CONCURRENCY`]: a `user.signed_in`-like body and the
/// Standard Webhooks headers (an unchecked signature), a distinct `webhook-id` each.
async fn direct_posts(ctx: &Ctx, receiver: &Receiver, n: usize) -> Load {
    let (http, url) = (ctx.http.clone(), receiver.url(Path::Direct));
    let scopes = [
        "openid",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
        "https://www.googleapis.com/auth/drive.appdata",
    ];
    load::run(DELIVERY_CONCURRENCY, n, DELIVERY_DEADLINE, move |i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let now = OffsetDateTime::now_utc();
            let body = json!({
                "type": "user.signed_in",
                "timestamp": now.format(&Rfc3339).map_err(|e| e.to_string())?,
                "data": {
                    "sub": format!("{}", 200_000_000_000_000_000_000u128 + i as u128),
                    "email": format!("direct-{i}@bench.example"),
                    "new_user": true,
                    "offline_access": true,
                    "scopes": scopes,
                    "missing_scopes": [],
                },
            });
            let response = http
                .post(&url)
                .header("content-type", "application/json")
                .header("webhook-id", format!("evt_direct{i:026x}"))
                .header("webhook-timestamp", now.unix_timestamp().to_string())
                .header(
                    "webhook-signature",
                    "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
                )
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            match response.status().as_u16() {
                204 => Ok(()),
                status => Err(format!("the receiver answered {status}")),
            }
        }
    })
    .await
}

/// Signs `plan.delivery_events` new users in on a server whose webhook receiver refuses (`503`) until every
/// event was tried, then brings the receiver up and measures until every event arrived once; then the
/// baseline, [`direct_posts`] of as many requests.
pub(crate) async fn delivery(
    ctx: &mut Ctx,
    store: &StoreSpec,
    label: &'static str,
) -> Res<DeliveryRun> {
    let receiver = Receiver::start(false).await?;
    let server = ctx.server_with(store, Some(&hooks(&receiver))).await?;
    let run = ctx.next();
    let codes = ctx
        .mint_codes(&format!("wh{run}"), ctx.plan.delivery_events)
        .await?;
    let signin = authcode_load(ctx, &server, codes, FILL_CONCURRENCY, DELIVERY_DEADLINE).await?;
    let events = signin.ok;
    // Every event refused at least once: they all wait in the outbox, due again within MAX_RETRY_MS.
    let start = Instant::now();
    while receiver.refused() < events && start.elapsed() < DELIVERY_DEADLINE {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu_before = server.cpu_secs()?;
    let up_at = Instant::now();
    receiver.set_up(true);
    receiver
        .wait_for(Path::Hooks, events, DELIVERY_DEADLINE)
        .await?;
    let server_cpu_secs = server.cpu_secs()? - cpu_before;
    let (first, last) = receiver
        .receipts_since(Path::Hooks, 0)
        .ok_or("no event was received")?;
    // A moment for repeated deliveries to show, then the machine is the baseline's.
    tokio::time::sleep(Duration::from_millis(if ctx.plan.smoke {
        200
    } else {
        1000
    }))
    .await;
    let (received, duplicates) = (
        receiver.distinct(Path::Hooks),
        receiver.duplicates(Path::Hooks),
    );
    server.stop().await;
    let direct = direct_posts(ctx, &receiver, events).await;
    let run = DeliveryRun {
        store: label,
        layout: ctx.layout,
        signin,
        refused: receiver.refused(),
        drain: last.saturating_duration_since(up_at),
        first_to_last: last.saturating_duration_since(first),
        received,
        duplicates,
        server_cpu_secs,
        direct,
        malformed: receiver.malformed(),
    };
    eprintln!(
        "events delivery {label} ({}): {received} events in {:.2} s ({:.0}/s; {:.0}/s first to last), {duplicates} \
         duplicates; direct {:.0}/s",
        ctx.layout.label(),
        run.drain.as_secs_f64(),
        run.rate(),
        run.steady_rate(),
        run.direct.rate()
    );
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_head_is_parsed() {
        let head = parse_head(
            "POST /hooks?x=1 HTTP/1.1\r\nContent-Type: application/json\r\nwebhook-id: evt_1\r\ncontent-length: 12",
        )
        .unwrap();
        assert_eq!(
            head,
            Head {
                method: "POST",
                path: "/hooks",
                content_length: 12,
                webhook_id: Some("evt_1"),
                close: false,
                chunked: false,
            }
        );
        let head = parse_head("POST /direct HTTP/1.0\r\nTransfer-Encoding: chunked").unwrap();
        assert!(head.close && head.chunked);
        assert!(parse_head("nonsense").is_none());
        assert!(parse_head("POST / HTTP/1.1\r\nno colon here").is_none());
    }

    #[test]
    fn the_latency_is_measured_from_the_body_timestamp() {
        let stamp = (OffsetDateTime::now_utc() - time::Duration::milliseconds(250))
            .format(&Rfc3339)
            .unwrap();
        let body = format!(r#"{{"type":"user.signed_in","timestamp":"{stamp}","data":{{}}}}"#);
        let latency = body_latency(body.as_bytes()).unwrap();
        assert!(latency >= Duration::from_millis(250), "{latency:?}");
        assert!(latency < Duration::from_secs(5), "{latency:?}");
        assert!(body_latency(b"{}").is_none());
    }

    #[tokio::test]
    async fn the_receiver_refuses_while_down_then_counts_ids_once() {
        let receiver = Receiver::start(false).await.unwrap();
        let http = crate::scenarios::client().unwrap();
        let post = |id: &'static str| {
            http.post(receiver.url(Path::Hooks))
                .header("webhook-id", id)
                .body(r#"{"timestamp":"2020-01-01T00:00:00Z"}"#)
                .send()
        };
        assert_eq!(post("evt_a").await.unwrap().status(), 503);
        assert_eq!(receiver.refused(), 1);
        receiver.set_up(true);
        for id in ["evt_a", "evt_b", "evt_a"] {
            assert_eq!(post(id).await.unwrap().status(), 204);
        }
        receiver
            .wait_for(Path::Hooks, 2, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(receiver.distinct(Path::Hooks), 2);
        assert_eq!(receiver.duplicates(Path::Hooks), 1);
        assert_eq!(receiver.latencies_since(Path::Hooks, 0).len(), 2);
        assert!(receiver.receipts_since(Path::Hooks, 2).is_none());
        let missing_id = http
            .post(receiver.url(Path::Direct))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(missing_id.status(), 400);
        assert_eq!(receiver.malformed(), 1);
        assert_eq!(receiver.distinct(Path::Direct), 0);
        assert!(
            receiver
                .wait_for(Path::Direct, 1, Duration::from_millis(20))
                .await
                .is_err()
        );
    }
}
