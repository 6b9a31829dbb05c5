//! The markdown report and the smoke checks.

use std::fmt::Write as _;
use std::time::Duration;

use crate::events::{DeliveryRun, EventCost};
use crate::load::{Load, quantile};
use crate::scenarios::{Downloads, Footprint, Stampede, Throughput};
use crate::{Plan, Res};

/// Everything measured in one run.
#[derive(Debug)]
pub(crate) struct Report {
    date: String,
    machine: String,
    load_before: String,
    command: String,
    smoke: bool,
    /// Sign-in tables.
    pub(crate) signin: Vec<Throughput>,
    /// Drive tables.
    pub(crate) drive: Vec<Throughput>,
    /// Stampedes.
    pub(crate) stampede: Vec<Stampede>,
    /// Footprints.
    pub(crate) footprint: Vec<Footprint>,
    /// Large downloads.
    pub(crate) downloads: Option<Downloads>,
    /// Internal API: access tokens (`server`) vs `/healthz` (`direct`), same server.
    pub(crate) internal_tokens: Vec<Throughput>,
    /// Internal API: the proxy (`server`) vs `/v1/me/drive/appfolder` (`direct`), same server.
    pub(crate) internal_proxy: Vec<Throughput>,
    /// Internal API: access-token stampedes.
    pub(crate) internal_stampede: Vec<Stampede>,
    /// Events: sign-ins with webhooks off vs on.
    pub(crate) event_cost: Vec<EventCost>,
    /// Events: a backlog delivered to the webhook receiver vs direct POSTs.
    pub(crate) delivery: Vec<DeliveryRun>,
    /// Sign-ins: offline-access vs the Python backend of Google's page (`signin-peer`).
    pub(crate) signin_peer: Vec<Throughput>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// CPU model, cores and memory of this machine.
fn machine() -> String {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = read("/proc/sys/kernel/osrelease");
    format!(
        "{model}, {cores} cores, {mem_gib:.1} GiB RAM, Linux {}",
        kernel.trim()
    )
}

/// A table's heading (`### {title}`), its header row and the alignment row.
fn table_head(out: &mut String, title: &str, header: &str, align: &str) {
    let _ = writeln!(out, "\n### {title}\n");
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{align}");
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// CPU seconds per 1,000 requests as microseconds per request.
fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{:.0}", v * 1000.0))
}

impl Report {
    /// An empty report stamped with the date, the machine and the command line.
    pub(crate) fn new(plan: &Plan) -> Report {
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let load_before = read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Report {
            date,
            machine: machine(),
            load_before,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            smoke: plan.smoke,
            signin: Vec::new(),
            drive: Vec::new(),
            stampede: Vec::new(),
            footprint: Vec::new(),
            downloads: None,
            internal_tokens: Vec::new(),
            internal_proxy: Vec::new(),
            internal_stampede: Vec::new(),
            event_cost: Vec::new(),
            delivery: Vec::new(),
            signin_peer: Vec::new(),
        }
    }

    /// The events tables: the cost of an event on a sign-in, per store, then webhook delivery throughput.
    fn events(&self, out: &mut String) {
        for table in &self.event_cost {
            table_head(
                out,
                &format!(
                    "Events: sign-ins on /authcode with webhooks off vs on ({} store, {})",
                    table.store,
                    table.layout.label()
                ),
                "| concurrency | off sign-ins/s | on sign-ins/s | on/off | on/off by round | off p50 / p99 ms | on p50 / p99 ms | off server CPU µs/sign-in | on server CPU µs/sign-in | on, with its deliveries µs/sign-in | PostgreSQL CPU off / on with deliveries µs/sign-in | events received | delivery p50 ms | delivery p99 ms |",
                "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            );
            for row in &table.rows {
                let (Some(off), Some(on)) = (row.pooled(false), row.pooled(true)) else {
                    continue;
                };
                let (db_off, db_on) = row.db_cpu_per_1000();
                let rounds: Vec<String> = row
                    .round_ratios()
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.0} | **{:.2}** | {} | {} / {} | {} / {} | {} | {} | {} | {} / {} | {} | {} | {} |",
                    row.concurrency,
                    off.rate(),
                    on.rate(),
                    row.ratio(),
                    rounds.join(", "),
                    ms(off.p50),
                    ms(off.p99),
                    ms(on.p50),
                    ms(on.p99),
                    us(off.cpu_per_1000()),
                    us(on.cpu_per_1000()),
                    us(Some(row.on_cpu_with_delivery_per_1000())),
                    us(db_off),
                    us(db_on),
                    row.events,
                    ms(quantile(&row.delivery, 0.50)),
                    ms(quantile(&row.delivery, 0.99)),
                );
            }
            let ratio = table.ratio();
            let _ = writeln!(
                out,
                "\nBest on / best off (each at its best concurrency, rounds pooled): **{ratio:.2}** (goal ≥ 0.90: {}). \
                 {} round(s) of off, on at each concurrency; {} repeated deliveries; {} requests not a delivery.",
                if ratio >= 0.90 { "met" } else { "not met" },
                table.rounds,
                table.duplicates,
                table.malformed,
            );
        }
        if self.delivery.is_empty() {
            return;
        }
        table_head(
            out,
            "Events: webhook delivery of a backlog vs direct POSTs to the same receiver",
            "| store, layout | events | 503s while down | up → all received s | delivered events/s | first → last events/s | server CPU µs/event | repeated deliveries | direct POSTs/s (c=8) | direct p50 / p99 ms | ratio |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        );
        for d in &self.delivery {
            let _ = writeln!(
                out,
                "| {}, {} | {} | {} | {:.2} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {} / {} | **{:.2}** |",
                d.store,
                d.layout.label(),
                d.received,
                d.refused,
                d.drain.as_secs_f64(),
                d.rate(),
                d.steady_rate(),
                d.server_cpu_secs * 1e6 / d.received.max(1) as f64,
                d.duplicates,
                d.direct.rate(),
                ms(d.direct.p50),
                ms(d.direct.p99),
                d.rate() / d.direct.rate().max(1e-9),
            );
        }
    }

    /// Two routes of one server side by side at each concurrency: `a` (the pair's `server`) against `b` (its
    /// `direct`), CPU of the server for both.
    fn same_server(
        out: &mut String,
        title: &str,
        a: &str,
        b: &str,
        goal: f64,
        tables: &[Throughput],
    ) {
        for table in tables {
            table_head(
                out,
                &format!("{title} ({} store, {})", table.store, table.layout.label()),
                &format!(
                    "| concurrency | {a} /s | p50 ms | p99 ms | server CPU µs/req | {b} /s | p50 ms | p99 ms | server CPU µs/req | ratio |"
                ),
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            );
            for pair in &table.rows {
                let (s, d) = (&pair.server, &pair.direct);
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {} | {} | {} | {:.0} | {} | {} | {} | {:.2} |",
                    s.concurrency,
                    s.rate(),
                    ms(s.p50),
                    ms(s.p99),
                    us(s.cpu_per_1000()),
                    d.rate(),
                    ms(d.p50),
                    ms(d.p99),
                    us(d.cpu_per_1000()),
                    s.rate() / d.rate().max(1e-9),
                );
            }
            let _ = writeln!(
                out,
                "\nBest {a} / best {b} (each at its best concurrency): **{:.2}** (goal ≥ {goal})",
                table.ratio()
            );
        }
    }

    fn throughput(out: &mut String, title: &str, direct: &str, tables: &[Throughput]) {
        for table in tables {
            table_head(
                out,
                &format!("{title} ({} store, {})", table.store, table.layout.label()),
                &format!(
                    "| concurrency | via server /s | p50 ms | p95 ms | p99 ms | server CPU µs/req | load gen CPU µs/req | {direct} /s | direct p99 ms | fake CPU µs/req | load gen CPU µs/req | ratio |"
                ),
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            );
            for pair in &table.rows {
                let (s, d) = (&pair.server, &pair.direct);
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {:.2} |",
                    s.concurrency,
                    s.rate(),
                    ms(s.p50),
                    ms(s.p95),
                    ms(s.p99),
                    us(s.cpu_per_1000()),
                    us(s.client_cpu_per_1000()),
                    d.rate(),
                    ms(d.p99),
                    us(d.cpu_per_1000()),
                    us(d.client_cpu_per_1000()),
                    s.rate() / d.rate().max(1e-9),
                );
            }
            let _ = writeln!(
                out,
                "\nBest via server / best direct (each at its best concurrency): **{:.2}**",
                table.ratio()
            );
        }
    }

    /// The report as markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## offline-access performance{}\n",
            if self.smoke {
                " (smoke: tiny counts, figures meaningless)"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "- date: {}", self.date);
        let _ = writeln!(out, "- machine: {}", self.machine);
        let _ = writeln!(
            out,
            "- load average before the run: {} (the machine may be shared)",
            self.load_before
        );
        let _ = writeln!(out, "- command: `{}`", self.command);
        let _ = writeln!(
            out,
            "- setup: release `offline-access serve` and `fake-google` as separate processes on loopback; HTTP/1.1 keep-alive clients; CPU from /proc/PID/stat of the measured process alone"
        );
        let _ = writeln!(
            out,
            "- layouts: *shared cores* = every process on every core; *split cores* = the server alone on CPU 0, the fake and the load generator on CPU 1 (`taskset`), as in production where Google and the clients are other machines"
        );
        Self::throughput(
            &mut out,
            "Sign-ins on /authcode (pre-minted codes)",
            "fake /token",
            &self.signin,
        );
        Self::throughput(
            &mut out,
            "Drive proxy: GET /v1/me/drive/appfolder",
            "fake files.get",
            &self.drive,
        );
        if !self.stampede.is_empty() {
            let _ = writeln!(
                out,
                "\n### Refresh stampede: concurrent Drive calls for one user right after expiry\n"
            );
            let _ = writeln!(
                out,
                "| setup | calls | ok | token refresh calls | p50 ms | p99 ms |"
            );
            let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
            for s in &self.stampede {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | **{}** | {} | {} |",
                    s.setup,
                    s.load.ok + s.load.errors,
                    s.load.ok,
                    s.refresh_calls,
                    ms(s.load.p50),
                    ms(s.load.p99)
                );
            }
        }
        if !self.footprint.is_empty() {
            let _ = writeln!(out, "\n### Footprint\n");
            let _ = writeln!(
                out,
                "| store | stored users | seeding s | start → /readyz 200 ms | idle RSS MiB | peak RSS under load MiB | load: Drive calls/s at c=64 |"
            );
            let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
            for f in &self.footprint {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} |",
                    f.store,
                    f.users,
                    f.seed_secs,
                    f.ready_ms,
                    f.idle_mib,
                    f.peak_mib,
                    f.load.rate()
                );
            }
        }
        Self::same_server(
            &mut out,
            "Internal API: POST /internal/v1/users/{sub}/access_token (cached) vs GET /healthz, one server",
            "access_token",
            "/healthz",
            0.8,
            &self.internal_tokens,
        );
        Self::same_server(
            &mut out,
            "Internal API: proxied Drive files.get(appDataFolder) vs GET /v1/me/drive/appfolder, one server",
            "proxy",
            "/v1/me/drive/appfolder",
            0.9,
            &self.internal_proxy,
        );
        if !self.internal_stampede.is_empty() {
            let _ = writeln!(
                out,
                "\n### Internal API stampede: concurrent access_token calls (min_ttl_secs 1200) for one user whose token has 900 s left\n"
            );
            let _ = writeln!(
                out,
                "| setup | calls | ok | token refresh calls | p50 ms | p99 ms |"
            );
            let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
            for s in &self.internal_stampede {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | **{}** | {} | {} |",
                    s.setup,
                    s.load.ok + s.load.errors,
                    s.load.ok,
                    s.refresh_calls,
                    ms(s.load.p50),
                    ms(s.load.p99)
                );
            }
        }
        if let Some(d) = &self.downloads {
            let _ = writeln!(
                out,
                "\n### Drive content: {} concurrent downloads of one {:.0} MiB file (file store)\n",
                d.server.concurrency,
                d.file_bytes as f64 / (1024.0 * 1024.0)
            );
            let _ = writeln!(
                out,
                "| downloads | via server MiB/s | p50 ms | p99 ms | server CPU µs/MiB | fake direct MiB/s | direct p99 ms | ratio | server RSS before MiB | highest RSS during MiB | content in flight MiB | RSS growth / in flight |"
            );
            let _ = writeln!(
                out,
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            );
            let mib = d.file_bytes as f64 / (1024.0 * 1024.0);
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {:.0} | {} | {:.2} | {:.1} | {:.1} | {:.0} | {:.3} |",
                d.server.ok,
                d.mib_per_sec(&d.server),
                ms(d.server.p50),
                ms(d.server.p99),
                us(d.server.cpu_per_1000().map(|v| v / mib)),
                d.mib_per_sec(&d.direct),
                ms(d.direct.p99),
                d.mib_per_sec(&d.server) / d.mib_per_sec(&d.direct).max(1e-9),
                d.before_mib,
                d.during_mib,
                d.in_flight_mib(),
                (d.during_mib - d.before_mib) / d.in_flight_mib().max(1e-9),
            );
        }
        self.events(&mut out);
        for run in &self.signin_peer {
            crate::peer::markdown(&mut out, run);
        }
        out
    }

    /// The smoke checks: every request succeeded and every stampede refreshed exactly once.
    pub(crate) fn check(&self) -> Res<()> {
        for t in &self.signin {
            t.check("sign-in")?;
        }
        for t in &self.drive {
            t.check("drive")?;
        }
        for s in &self.stampede {
            if s.refresh_calls != 1 {
                return Err(format!(
                    "stampede ({}): {} refresh calls reached Google, expected exactly 1",
                    s.setup, s.refresh_calls
                )
                .into());
            }
            check_load(&s.load, &s.setup)?;
        }
        for t in &self.internal_tokens {
            t.check("internal access_token vs /healthz")?;
        }
        for t in &self.internal_proxy {
            t.check("internal proxy vs /v1/me/drive/appfolder")?;
        }
        for s in &self.internal_stampede {
            if s.refresh_calls != 1 {
                return Err(format!(
                    "internal access_token stampede ({}): {} refresh calls reached Google, expected exactly 1",
                    s.setup, s.refresh_calls
                )
                .into());
            }
            check_load(&s.load, &s.setup)?;
        }
        for f in &self.footprint {
            check_load(&f.load, f.store)?;
        }
        if let Some(d) = &self.downloads {
            check_load(&d.server, "downloads via server")?;
            check_load(&d.direct, "downloads direct")?;
        }
        for t in &self.event_cost {
            for row in &t.rows {
                for load in row.off.iter().chain(&row.on) {
                    check_load(load, &format!("events: sign-ins ({} store)", t.store))?;
                }
            }
            check_malformed(t.malformed, t.store)?;
        }
        for d in &self.delivery {
            check_load(&d.signin, &format!("events: sign-ins ({} store)", d.store))?;
            check_load(&d.direct, "events: direct POSTs to the receiver")?;
            check_malformed(d.malformed, d.store)?;
        }
        for t in &self.signin_peer {
            t.check("signin-peer (offline-access, then the Python backend as `direct`)")?;
        }
        Ok(())
    }
}

fn check_malformed(malformed: usize, store: &str) -> Res<()> {
    if malformed > 0 {
        return Err(format!(
            "events ({store} store): the webhook receiver got {malformed} request(s) that were not a delivery"
        )
        .into());
    }
    Ok(())
}

fn check_load(load: &Load, what: &str) -> Res<()> {
    if load.errors > 0 || load.ok == 0 {
        return Err(format!(
            "{what}: {} ok, {} failed; first failure: {}",
            load.ok,
            load.errors,
            load.first_error.as_deref().unwrap_or("none")
        )
        .into());
    }
    Ok(())
}
