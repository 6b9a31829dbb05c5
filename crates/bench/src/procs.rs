//! Child processes: the `fake-google` and `offline-access` binaries, started on loopback port 0, and what
//! `/proc` says about them (CPU time, resident memory).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::Res;

/// Where the two binaries are.
#[derive(Debug, Clone)]
pub(crate) struct Bins {
    /// `offline-access`.
    pub(crate) server: PathBuf,
    /// `fake-google`.
    pub(crate) fake: PathBuf,
}

impl Bins {
    /// Next to this executable (`target/release`), or in `$OFFLINE_ACCESS_BENCH_BIN_DIR`.
    pub(crate) fn locate() -> Res<Bins> {
        let dir = match std::env::var_os("OFFLINE_ACCESS_BENCH_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => std::env::current_exe()?
                .parent()
                .map(Path::to_path_buf)
                .ok_or("cannot find the directory of this executable")?,
        };
        let bins = Bins {
            server: dir.join("offline-access"),
            fake: dir.join("fake-google"),
        };
        for bin in [&bins.server, &bins.fake] {
            if !bin.is_file() {
                return Err(format!(
                    "{} is missing: build it with `cargo build --release -p offline-access -p fake-google` (or run \
                     this tool with `cargo run --release -p offline-access-bench`, which builds them)",
                    bin.display()
                )
                .into());
            }
        }
        Ok(bins)
    }
}

/// Builds the two binaries in release when this tool runs under `cargo run` (a no-op when they are up to date).
pub(crate) fn build_binaries_if_under_cargo() -> Res<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "offline-access",
            "-p",
            "fake-google",
        ])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("building offline-access and fake-google failed ({status})").into())
    }
}

/// A running child process that announced `listening on URL`; killed when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    /// Its process id.
    pub(crate) pid: u32,
    /// Its base URL.
    pub(crate) url: String,
    /// The internal API's base URL, when the process announced `internal API listening on URL`.
    pub(crate) internal_url: Option<String>,
    /// When it was spawned.
    pub(crate) spawned: Instant,
}

impl Proc {
    /// Spawns `command` (stdout piped, stderr to `log`) and waits for its `listening on URL` line.
    pub(crate) async fn spawn(command: Command, log: PathBuf) -> Res<Proc> {
        Self::spawn_announcing(command, log, false).await
    }

    /// As [`Proc::spawn`]; with `internal`, also waits for the `internal API listening on URL` line.
    pub(crate) async fn spawn_announcing(
        mut command: Command,
        log: PathBuf,
        internal: bool,
    ) -> Res<Proc> {
        // Outbound calls go to loopback only: no proxy may intercept them.
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            command.env_remove(var);
        }
        command
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        let spawned = Instant::now();
        let mut child = command.spawn()?;
        let pid = child.id().ok_or("the child exited at once")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            let (mut url, mut internal_url) = (None, None);
            while let Some(line) = lines.next_line().await? {
                if let Some(found) = line.strip_prefix("listening on ") {
                    url = Some(found.trim().to_owned());
                } else if let Some(found) = line.strip_prefix("internal API listening on ") {
                    internal_url = Some(found.trim().to_owned());
                }
                if let Some(url) = &url
                    && (!internal || internal_url.is_some())
                {
                    return Ok::<_, std::io::Error>(Some((url.clone(), internal_url)));
                }
            }
            Ok(None)
        };
        let (url, internal_url) = match tokio::time::timeout(Duration::from_secs(60), wait).await {
            Ok(Ok(Some(found))) => found,
            _ => {
                let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = stderr
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(format!(
                    "a child process never announced its address; its stderr:\n{tail}"
                )
                .into());
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Proc {
            child,
            pid,
            url,
            internal_url,
            spawned,
        })
    }

    /// User + system CPU seconds the process has used so far.
    pub(crate) fn cpu_secs(&self) -> Res<f64> {
        cpu_secs(self.pid)
    }

    /// A `/proc/PID/status` memory line in MiB (`VmRSS`, `VmHWM`).
    pub(crate) fn mem_mib(&self, field: &str) -> Res<f64> {
        mem_mib(self.pid, field)
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A memory figure of process `pid` (`VmRSS`, `VmHWM`, ...) from `/proc/PID/status`, in MiB.
pub(crate) fn mem_mib(pid: u32, field: &str) -> Res<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?
        .parse()?;
    Ok(kib / 1024.0)
}

/// User + system CPU seconds of a process from `/proc/PID/stat` (in USER_HZ = 100 ticks per second).
pub(crate) fn cpu_secs(pid: u32) -> Res<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (`state`).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unreadable /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: f64 = fields.get(12).ok_or("no stime")?.parse()?;
    Ok((utime + stime) / 100.0)
}

/// CPU seconds of every process named `comm` (as in `/proc/PID/comm`), by pid: a snapshot to subtract from a later
/// one with [`CpuByPid::since`]. For PostgreSQL's processes (`postgres`: the backends serving the server's pool,
/// the WAL writer, the checkpointer, autovacuum), whose work for the server a server's own CPU does not count.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuByPid(std::collections::HashMap<u32, f64>);

impl CpuByPid {
    /// The processes named `comm` now (those that vanish while being read are left out).
    pub(crate) fn of(comm: &str) -> CpuByPid {
        let mut by_pid = std::collections::HashMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return CpuByPid(by_pid);
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let named = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == comm);
            if let (true, Ok(cpu)) = (named, cpu_secs(pid)) {
                by_pid.insert(pid, cpu);
            }
        }
        CpuByPid(by_pid)
    }

    /// CPU seconds used from `earlier` to this snapshot, by the processes in this one (a process started since
    /// counts whole; one that ended since is lost, so keep the processes of interest alive across both).
    pub(crate) fn since(&self, earlier: &CpuByPid) -> f64 {
        self.0
            .iter()
            .map(|(pid, cpu)| cpu - earlier.0.get(pid).copied().unwrap_or(0.0))
            .sum()
    }
}

/// How the server stores credentials.
#[derive(Debug, Clone)]
pub(crate) enum StoreSpec {
    /// The file store in this directory.
    File(PathBuf),
    /// Postgres at this URL, in this schema.
    Postgres {
        /// `store.url`.
        url: String,
        /// `store.schema`.
        schema: String,
    },
}

/// Which CPUs each process may run on (`taskset`), so that the server and Google's side need not share cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Every process on every core (what a laptop test does; the server competes with the fake for CPU).
    Shared,
    /// The server alone on CPU 0; the fake and this load generator on CPU 1 (as in production, where Google
    /// and the clients run on other machines than the server).
    Split,
}

/// CPU 0: the server's in [`Layout::Split`].
const SERVER_CPU: &str = "0";
/// CPU 1: the fake's and the load generator's in [`Layout::Split`].
const GOOGLE_SIDE_CPU: &str = "1";

impl Layout {
    /// The name in reports.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Layout::Shared => "shared cores",
            Layout::Split => "split cores",
        }
    }

    /// A command for `program`, under `taskset -c CPUS` when this layout pins it (the PID stays the program's:
    /// taskset execs it).
    fn command(self, program: &Path, cpus: &str) -> Command {
        match self {
            Layout::Shared => Command::new(program),
            Layout::Split => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpus).arg(program);
                command
            }
        }
    }

    /// A command for `program` on the server's side: CPU 0 when split (a peer server measured against
    /// offline-access runs where offline-access does).
    pub(crate) fn server_side_command(self, program: &Path) -> Command {
        self.command(program, SERVER_CPU)
    }

    /// Pins (or unpins) this load generator's threads: CPU 1 when split, every CPU when shared.
    pub(crate) fn pin_self(self) -> Res<()> {
        let cpus = match self {
            Layout::Shared => format!("0-{}", available_cpus().saturating_sub(1)),
            Layout::Split => GOOGLE_SIDE_CPU.to_owned(),
        };
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &cpus, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("taskset could not pin the load generator to CPUs {cpus}").into())
        }
    }

    /// Whether this machine can run the layout (split needs two CPUs and `taskset`).
    pub(crate) fn available(self) -> bool {
        match self {
            Layout::Shared => true,
            Layout::Split => {
                available_cpus() >= 2
                    && std::process::Command::new("taskset")
                        .arg("-V")
                        .stdout(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
            }
        }
    }
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Starts the `fake-google` binary on a free loopback port.
pub(crate) async fn start_fake(bins: &Bins, dir: &Path, layout: Layout) -> Res<Proc> {
    let mut command = layout.command(&bins.fake, GOOGLE_SIDE_CPU);
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .current_dir(dir);
    Proc::spawn(command, dir.join("fake-google.stderr.log")).await
}

/// Everything a server instance needs besides its store.
#[derive(Debug, Clone)]
pub(crate) struct ServerEnv {
    /// The fake's base URL.
    pub(crate) fake_url: String,
    /// The client secret JSON file of the fake's web client.
    pub(crate) client_secret_file: PathBuf,
    /// `security.encryption_keys`.
    pub(crate) keys: String,
    /// A working directory (no stray `offline-access.toml`).
    pub(crate) dir: PathBuf,
}

/// The signing secret of the servers that send webhooks (any `whsec_` secret; the bench's receiver does not verify).
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `webhooks.*` of a server that records events and delivers them.
#[derive(Debug, Clone)]
pub(crate) struct Webhooks {
    /// `webhooks.url`.
    pub(crate) url: String,
    /// `webhooks.min_retry_ms`: the first retry.
    pub(crate) min_retry_ms: u64,
    /// `webhooks.max_retry_ms`: the longest wait between two tries.
    pub(crate) max_retry_ms: u64,
}

/// Starts `offline-access serve` against the fake, with the rate limit off and warnings-only logs; with `hooks`,
/// it records an event with every grant change and POSTs them to `hooks.url`.
pub(crate) async fn start_server(
    bins: &Bins,
    env: &ServerEnv,
    store: &StoreSpec,
    name: &str,
    layout: Layout,
    hooks: Option<&Webhooks>,
) -> Res<Proc> {
    let mut command = server_command(bins, env, store, layout);
    if let Some(hooks) = hooks {
        command
            .env("OFFLINE_ACCESS_WEBHOOKS__URL", &hooks.url)
            .env("OFFLINE_ACCESS_WEBHOOKS__SECRET", WEBHOOK_SECRET)
            .env(
                "OFFLINE_ACCESS_WEBHOOKS__MIN_RETRY_MS",
                hooks.min_retry_ms.to_string(),
            )
            .env(
                "OFFLINE_ACCESS_WEBHOOKS__MAX_RETRY_MS",
                hooks.max_retry_ms.to_string(),
            );
    }
    Proc::spawn(command, env.dir.join(format!("{name}.stderr.log"))).await
}

/// As [`start_server`], with the internal API on a free loopback port (`internal.listen = 127.0.0.1:0`) letting
/// in the key whose `internal.api_keys` entry is `key_entry`; waits for both `listening on` lines.
pub(crate) async fn start_server_internal(
    bins: &Bins,
    env: &ServerEnv,
    store: &StoreSpec,
    name: &str,
    layout: Layout,
    key_entry: &str,
) -> Res<Proc> {
    let mut command = server_command(bins, env, store, layout);
    command
        .env("OFFLINE_ACCESS_INTERNAL__LISTEN", "127.0.0.1:0")
        .env("OFFLINE_ACCESS_INTERNAL__API_KEYS", key_entry);
    let proc =
        Proc::spawn_announcing(command, env.dir.join(format!("{name}.stderr.log")), true).await?;
    if proc.internal_url.is_none() {
        return Err("the server never announced its internal API's address".into());
    }
    Ok(proc)
}

/// A new internal API key from `offline-access api-key new NAME --json`: the key, and its `internal.api_keys`
/// entry (`NAME:sha256:HEX`).
pub(crate) async fn new_api_key(bins: &Bins, dir: &Path, name: &str) -> Res<(String, String)> {
    let mut command = Command::new(&bins.server);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OFFLINE_ACCESS_") {
            command.env_remove(key);
        }
    }
    let output = command
        .args(["api-key", "new", name, "--json"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!(
            "`offline-access api-key new {name} --json` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let made: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let field = |f: &str| {
        made.get(f)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("`api-key new --json` printed no {f}"))
    };
    Ok((field("key")?, field("entry")?))
}

/// The `offline-access serve` command for `store` in `layout` (see [`start_server`]).
fn server_command(bins: &Bins, env: &ServerEnv, store: &StoreSpec, layout: Layout) -> Command {
    let mut command = layout.command(&bins.server, SERVER_CPU);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OFFLINE_ACCESS_") {
            command.env_remove(key);
        }
    }
    command
        .arg("serve")
        .current_dir(&env.dir)
        .env_remove("RUST_LOG")
        .env("OFFLINE_ACCESS_LISTEN", "127.0.0.1:0")
        .env("OFFLINE_ACCESS_LOG__LEVEL", "warn")
        .env("OFFLINE_ACCESS_HTTP__AUTHCODE_RATE_LIMIT", "0")
        .env("OFFLINE_ACCESS_GOOGLE__BASE_URL", &env.fake_url)
        .env(
            "OFFLINE_ACCESS_GOOGLE__CLIENT_SECRET_FILE",
            &env.client_secret_file,
        )
        .env("OFFLINE_ACCESS_SECURITY__ENCRYPTION_KEYS", &env.keys);
    match store {
        StoreSpec::File(path) => {
            command
                .env("OFFLINE_ACCESS_STORE__KIND", "file")
                .env("OFFLINE_ACCESS_STORE__PATH", path);
        }
        StoreSpec::Postgres { url, schema } => {
            command
                .env("OFFLINE_ACCESS_STORE__KIND", "postgres")
                .env("OFFLINE_ACCESS_STORE__URL", url)
                .env("OFFLINE_ACCESS_STORE__SCHEMA", schema);
        }
    }
    command
}

/// Polls `GET {url}/readyz` until it answers 200; returns when.
pub(crate) async fn wait_ready(client: &reqwest::Client, url: &str) -> Res<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{url}/readyz")).send().await
            && response.status() == 200
        {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!("{url}/readyz never answered 200").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
