//! `offline-access-bench`: the load generator of offline-access's performance suite.
//!
//! It starts the release `fake-google` and `offline-access serve` binaries as child processes on loopback, drives
//! them over real HTTP and prints a markdown table: sign-ins per second on `/authcode` and Drive proxy calls per
//! second, each at several concurrencies with latency percentiles and the server's CPU seconds per 1,000 requests,
//! next to the fake's own ceiling measured in the same run; the refresh stampede (token calls per expiry); and the
//! memory footprint and start-to-ready time with many stored users; concurrent downloads of a large Drive file
//! with the server's memory meanwhile; and the internal API: access tokens vs `/healthz`, the Google API proxy vs
//! the public Drive route, and an access-token stampede over three instances; and events: sign-ins with webhooks
//! off vs on (the cost of recording an event with each grant change) and how fast a backlog of events is
//! delivered to a webhook endpoint vs POSTing to it directly. Postgres parts run when `DATABASE_URL` is set.
//!
//! `--smoke` runs tiny counts in seconds and fails only when something does not run, a stampede refreshes more
//! than once or an event is never delivered (never on a timing).

mod events;
mod fake;
mod load;
mod peer;
mod procs;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::procs::Layout;
use crate::report::Report;
use crate::scenarios::Ctx;

/// Errors of the tool: any error, shown as one message.
pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// offline-access's load generator (see docs/performance.md).
#[derive(Parser, Debug)]
#[command(name = "offline-access-bench", version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
    /// Tiny counts (seconds): checks that everything runs and a stampede refreshes exactly once.
    #[arg(long, global = true)]
    smoke: bool,
    /// Concurrencies of the throughput runs.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "1,16,64,256"
    )]
    concurrency: Vec<usize>,
    /// Longest run per concurrency level, in seconds.
    #[arg(long, global = true, default_value_t = 8.0)]
    seconds: f64,
    /// Requests per concurrency level (default: 40 per worker, 1,500 to 20,000; bounded by --seconds too).
    #[arg(long, global = true)]
    requests: Option<usize>,
    /// Where the processes run for the sign-in and Drive runs: `shared` (every process on every core), `split`
    /// (the server alone on CPU 0; the fake and the load generator on CPU 1), or both.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "shared,split"
    )]
    layout: Vec<LayoutArg>,
    /// Users stored before the footprint is measured.
    #[arg(long, global = true, default_value_t = 100_000)]
    users: usize,
    /// Events piled up (one sign-in each) before the webhook delivery run.
    #[arg(long, global = true, default_value_t = 2_000)]
    events: usize,
    /// Also write the markdown report to this file.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Do not build the server and fake binaries first (under `cargo run` they are built in release).
    #[arg(long, global = true)]
    no_build: bool,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    /// Sign-ins per second on /authcode vs the fake's direct /token ceiling.
    Signin,
    /// Drive proxy calls per second vs the fake's direct files.get ceiling.
    Drive,
    /// 1,000 concurrent Drive calls for one user right after expiry: token calls and p99.
    Stampede,
    /// Resident memory idle and under load with many stored users; start to ready.
    Footprint,
    /// Concurrent downloads of a large Drive file: throughput vs the fake's, and the server's memory meanwhile.
    Download,
    /// The internal API: access tokens vs /healthz and the Google API proxy vs /v1/me/drive/appfolder in one
    /// server; 1,000 concurrent access_token calls for one stale user (1 instance, file; 3 on Postgres).
    Internal,
    /// Sign-ins with webhooks off vs on (alternating), and a backlog of events delivered to a local webhook
    /// receiver vs POSTing to it directly.
    Events,
    /// Everything above.
    All,
    /// Opt-in, not in `all`: sign-ins per second of offline-access vs the Python backend of Google's server-side
    /// access page (Flask, oauth2client, gunicorn 2 workers × 8 threads) against the same fake, and their ratio.
    /// Needs a Python with flask, oauth2client, google-api-python-client and gunicorn ($OFFLINE_ACCESS_BENCH_PYTHON
    /// or python3); skipped with a note otherwise.
    SigninPeer,
}

/// `--layout` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum LayoutArg {
    /// Every process on every core.
    Shared,
    /// The server alone on CPU 0; the fake and the load generator on CPU 1.
    Split,
}

impl From<LayoutArg> for Layout {
    fn from(arg: LayoutArg) -> Layout {
        match arg {
            LayoutArg::Shared => Layout::Shared,
            LayoutArg::Split => Layout::Split,
        }
    }
}

/// Sizes of one run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Smoke mode.
    pub(crate) smoke: bool,
    /// Concurrencies of the throughput runs.
    pub(crate) concurrency: Vec<usize>,
    /// Longest run per level.
    pub(crate) limit: Duration,
    /// Requests per level, when set.
    pub(crate) requests: Option<usize>,
    /// Users signed in for the Drive runs.
    pub(crate) drive_users: usize,
    /// Calls in a stampede.
    pub(crate) stampede_calls: usize,
    /// Users stored for the footprint.
    pub(crate) footprint_users: usize,
    /// Longest seeding of the footprint's users.
    pub(crate) seed_budget: Duration,
    /// Events piled up before the webhook delivery run.
    pub(crate) delivery_events: usize,
}

impl Plan {
    /// Requests per level at concurrency `c` (bounded by `limit` too).
    pub(crate) fn requests(&self, c: usize) -> usize {
        if let Some(n) = self.requests {
            n
        } else if self.smoke {
            (c * 2).max(10)
        } else {
            (c * 40).clamp(1_500, 20_000)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("offline-access-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The Postgres URL when the Postgres parts should run (`DATABASE_URL`, reachable); with `CI` set an unreachable
/// database is an error, otherwise a note.
async fn postgres() -> Res<Option<String>> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("note: DATABASE_URL is not set: the Postgres parts are skipped");
        return Ok(None);
    };
    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok((_client, connection)) => {
            drop(connection);
            Ok(Some(url))
        }
        Err(e) if std::env::var_os("CI").is_some() => {
            Err(format!("DATABASE_URL is set but Postgres cannot be reached: {e}").into())
        }
        Err(e) => {
            println!(
                "note: Postgres at DATABASE_URL cannot be reached ({e}): the Postgres parts are skipped"
            );
            Ok(None)
        }
    }
}

async fn run(args: Args) -> Res<()> {
    if !args.no_build {
        procs::build_binaries_if_under_cargo()?;
    }
    let bins = procs::Bins::locate()?;
    let plan = if args.smoke {
        Plan {
            smoke: true,
            concurrency: vec![1, 16],
            limit: Duration::from_secs(5),
            requests: None,
            drive_users: 4,
            stampede_calls: 1_000,
            footprint_users: 200,
            seed_budget: Duration::from_secs(20),
            delivery_events: 40,
        }
    } else {
        Plan {
            smoke: false,
            concurrency: args.concurrency.clone(),
            limit: Duration::from_secs_f64(args.seconds),
            requests: args.requests,
            drive_users: 32,
            stampede_calls: 1_000,
            footprint_users: args.users,
            seed_budget: Duration::from_secs(240),
            delivery_events: args.events,
        }
    };
    let pg = postgres().await?;
    let mut layouts: Vec<Layout> = Vec::new();
    for layout in args.layout.iter().copied().map(Layout::from) {
        if layouts.contains(&layout) {
            continue;
        }
        if layout.available() {
            layouts.push(layout);
        } else {
            println!(
                "note: the {} layout needs two CPUs and taskset: skipped",
                layout.label()
            );
        }
    }
    if layouts.is_empty() {
        layouts.push(Layout::Shared);
    }
    let mut report = Report::new(&plan);
    let mut scratch = Vec::new();
    let mut result = Ok(());
    for (pass, &layout) in layouts.iter().enumerate() {
        let mut ctx = Ctx::start(bins.clone(), plan.clone(), pg.clone(), layout).await?;
        // Stampede and footprint run once, in the first layout; sign-ins and Drive in every layout.
        result = scenarios(&mut ctx, args.command, &mut report, pass == 0).await;
        scratch.push(ctx.finish().await);
        if result.is_err() {
            break;
        }
    }
    Layout::Shared.pin_self()?;
    result?;
    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(out) = &args.out {
        std::fs::write(out, &markdown)?;
    }
    let checked = report.check();
    for dir in scratch {
        eprintln!("removing the scratch directory {}", dir.path().display());
        drop(dir);
    }
    checked
}

async fn scenarios(ctx: &mut Ctx, command: Cmd, report: &mut Report, once: bool) -> Res<()> {
    let all = command == Cmd::All;
    if all || command == Cmd::Signin {
        let file = ctx.file_store()?;
        report
            .signin
            .push(scenarios::signin(ctx, &file, "file").await?);
        if let Some(pg) = ctx.pg_store() {
            report
                .signin
                .push(scenarios::signin(ctx, &pg, "postgres").await?);
        }
    }
    if all || command == Cmd::Drive {
        let file = ctx.file_store()?;
        report
            .drive
            .push(scenarios::drive(ctx, &file, "file").await?);
        if let Some(pg) = ctx.pg_store() {
            report
                .drive
                .push(scenarios::drive(ctx, &pg, "postgres").await?);
        }
    }
    if once && (all || command == Cmd::Stampede) {
        let file = ctx.file_store()?;
        report
            .stampede
            .push(scenarios::stampede(ctx, &file, 1, "1 instance, file store".to_owned()).await?);
        if let Some(pg) = ctx.pg_store() {
            report
                .stampede
                .push(scenarios::stampede(ctx, &pg, 1, "1 instance, Postgres".to_owned()).await?);
        }
        if let Some(pg) = ctx.pg_store() {
            report.stampede.push(
                scenarios::stampede(ctx, &pg, 3, "3 instances sharing Postgres".to_owned()).await?,
            );
        }
    }
    if all || command == Cmd::Internal {
        let file = ctx.file_store()?;
        let runs = scenarios::internal(ctx, &file, "file").await?;
        report.internal_tokens.push(runs.tokens);
        report.internal_proxy.push(runs.proxy);
        if once {
            let file = ctx.file_store()?;
            report.internal_stampede.push(
                scenarios::internal_stampede(ctx, &file, 1, "1 instance, file store".to_owned())
                    .await?,
            );
            if let Some(pg) = ctx.pg_store() {
                report.internal_stampede.push(
                    scenarios::internal_stampede(
                        ctx,
                        &pg,
                        3,
                        "3 instances sharing Postgres".to_owned(),
                    )
                    .await?,
                );
            }
        }
    }
    if command == Cmd::SigninPeer
        && let Some(run) = peer::signin_peer(ctx).await?
    {
        report.signin_peer.push(run);
    }
    if all || command == Cmd::Events {
        // Per store: the server without webhooks, the one with them, the delivery run's.
        let mut stores = vec![(
            "file",
            [ctx.file_store()?, ctx.file_store()?, ctx.file_store()?],
        )];
        if let (Some(off), Some(on), Some(backlog)) =
            (ctx.pg_store(), ctx.pg_store(), ctx.pg_store())
        {
            stores.push(("postgres", [off, on, backlog]));
        }
        for (label, [off, on, _]) in &stores {
            report
                .event_cost
                .push(events::cost(ctx, off, on, label).await?);
        }
        for (label, [_, _, backlog]) in &stores {
            report
                .delivery
                .push(events::delivery(ctx, backlog, label).await?);
        }
    }
    if once && (all || command == Cmd::Download) {
        let file = ctx.file_store()?;
        report.downloads = Some(scenarios::downloads(ctx, &file).await?);
    }
    if once && (all || command == Cmd::Footprint) {
        let file = ctx.file_store()?;
        report
            .footprint
            .push(scenarios::footprint(ctx, &file, "file").await?);
        if let Some(pg) = ctx.pg_store() {
            report
                .footprint
                .push(scenarios::footprint(ctx, &pg, "postgres").await?);
        }
    }
    Ok(())
}
