//! A throwaway PostgreSQL cluster: `initdb` into a new temporary directory, `postgres` on a free loopback port
//! (its Unix socket in that directory too), stopped and deleted when its process exits, however it exits.
//!
//! The server runs under a small `sh` watchdog whose standard input is a pipe from this process. Nothing else
//! holds the pipe's write end, so when this process ends (a clean exit, a panic, `kill -9`) the watchdog reads end
//! of file, stops the server (fast shutdown) and deletes the directory. Dropping the [`ThrowawayCluster`] does the
//! same at once. The watchdog runs in a process group of its own, so a Ctrl-C in the terminal reaches only the
//! tests, and the clean-up still follows.

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::probe::Binaries;

/// How long the server may take to become ready (a cold `initdb` and start take about a second; a loaded CI
/// machine far more).
const READY_WITHIN: Duration = Duration::from_secs(90);

/// How often a start is tried on a new port when the server exits at once (another process took the port).
const START_ATTEMPTS: usize = 3;

/// The watchdog: runs the server (`"$@"`) in the background with its log in the directory (`$1`); when its own
/// standard input ends it stops the server; once the server has exited it prints the log (seen only while this
/// process still reads it, i.e. when the start failed) and deletes the directory.
const WATCHDOG: &str = r#"base=$1; shift
exec 3<&0 </dev/null
"$@" >>"$base/server.log" 2>&1 &
pid=$!
{ read -r _ <&3; kill -INT "$pid"; } >/dev/null 2>&1 &
wait "$pid"
status=$?
cat "$base/server.log" >&2 2>/dev/null
rm -rf "$base"
exit "$status""#;

/// What a throwaway cluster needs besides the defaults: server settings and files in its directory.
#[derive(Debug, Clone, Default)]
pub struct ClusterSetup {
    settings: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
}

impl ClusterSetup {
    /// Adds the server setting `name = value` (given as `-c name=value`).
    #[must_use]
    pub fn setting(mut self, name: &str, value: &str) -> ClusterSetup {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Writes `contents` to the file `name` in the cluster's directory (mode 0600, owned by the server's user)
    /// before the server starts; a setting can name it with `{dir}`, which is replaced by the directory.
    #[must_use]
    pub fn file(mut self, name: &str, contents: &[u8]) -> ClusterSetup {
        self.files.push((name.to_owned(), contents.to_vec()));
        self
    }
}

/// A running throwaway cluster (superuser `postgres`, trust authentication, database `postgres`).
#[derive(Debug)]
pub struct ThrowawayCluster {
    url: String,
    port: u16,
    dir: PathBuf,
    /// The watchdog; its standard input is the pipe whose end stops the server.
    watchdog: Mutex<Child>,
}

impl ThrowawayCluster {
    /// Starts a cluster with `binaries` and `setup`; waits (bounded) until it accepts connections.
    ///
    /// # Errors
    /// Why it could not start (`initdb`'s or the server's own words included).
    pub fn start(binaries: &Binaries, setup: &ClusterSetup) -> Result<ThrowawayCluster, String> {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(binaries, setup)? {
                Ok(cluster) => return Ok(cluster),
                Err(exited) => last = exited,
            }
        }
        Err(format!(
            "the throwaway PostgreSQL server exited while starting: {last}"
        ))
    }

    /// One start: `Err` when it cannot be set up, `Ok(Err(log))` when the server exited at once (worth a retry).
    fn start_once(
        binaries: &Binaries,
        setup: &ClusterSetup,
    ) -> Result<Result<ThrowawayCluster, String>, String> {
        let dir = new_dir(binaries)?;
        let data = dir.join("data");
        let display = |p: &Path| p.display().to_string();
        let mut initdb = as_server_user(binaries, &binaries.bin_dir.join("initdb"));
        initdb.args(["-D", &display(&data)]).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]);
        let output = initdb
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("initdb cannot run: {e}"));
        let output = match output {
            Ok(output) => output,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        for (name, contents) in &setup.files {
            write_owned(binaries, &dir.join(name), contents)?;
        }
        let port = free_port()?;
        let mut server = as_server_user(binaries, Path::new("sh"));
        server
            .args(["-c", WATCHDOG, "sh", &display(&dir)])
            .arg(binaries.bin_dir.join("postgres"))
            .args(["-D", &display(&data), "-p", &port.to_string()])
            .args(["-k", &display(&dir)]);
        let defaults = [
            ("listen_addresses", "127.0.0.1"),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "300"),
            ("lc_messages", "C"),
        ];
        let dir_text = display(&dir);
        for (name, value) in defaults
            .iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .chain(setup.settings.iter().cloned())
        {
            server
                .arg("-c")
                .arg(format!("{name}={}", value.replace("{dir}", &dir_text)));
        }
        let child = server
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("the PostgreSQL server cannot run: {e}"))?;
        let cluster = ThrowawayCluster {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            dir,
            watchdog: Mutex::new(child),
        };
        Ok(cluster.wait_ready())
    }

    /// Waits until the server says it is ready (`postmaster.pid`'s status line), or has exited.
    fn wait_ready(self) -> Result<ThrowawayCluster, String> {
        let pid_file = self.dir.join("data").join("postmaster.pid");
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let exited = match self.watchdog.lock() {
                Ok(mut child) => child.try_wait().map_err(|e| e.to_string())?.is_some(),
                Err(_) => true,
            };
            if exited {
                return Err(self.log_of_exited());
            }
            let status = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if status
                .lines()
                .nth(7)
                .is_some_and(|line| line.trim() == "ready")
            {
                return Ok(self);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the throwaway PostgreSQL server in {} was not ready within {READY_WITHIN:?}",
                    self.dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log, printed by the watchdog once the server exited.
    fn log_of_exited(&self) -> String {
        let mut log = String::new();
        if let Ok(mut child) = self.watchdog.lock()
            && let Some(mut stderr) = child.stderr.take()
        {
            let _ = stderr.read_to_string(&mut log);
        }
        log.trim().to_owned()
    }

    /// The cluster's URL: `postgres://postgres@127.0.0.1:PORT/postgres`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The loopback port the server listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (data in `data/`, the server's log in `server.log`, its Unix socket), deleted when
    /// the cluster stops.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ThrowawayCluster {
    /// Stops the server and deletes the directory now (the watchdog does it when its input ends), waiting a bounded
    /// time for it.
    fn drop(&mut self) {
        let Ok(mut child) = self.watchdog.lock() else {
            return;
        };
        drop(child.stdin.take());
        drop(child.stderr.take());
        let deadline = Instant::now() + READY_WITHIN;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A command running `program` as the server's user (through `runuser` when this process is root).
fn as_server_user(binaries: &Binaries, program: &Path) -> Command {
    match &binaries.run_as {
        Some(run_as) => {
            let mut command = Command::new(&run_as.runuser);
            command.args(["-u", &run_as.user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// A new, empty directory for one cluster (mode 0700, owned by the server's user).
fn new_dir(binaries: &Binaries) -> Result<PathBuf, String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Root's temporary directory may be closed to the `postgres` user: use /tmp then. Short names: the server's
    // Unix socket path must stay under ~100 bytes.
    let parent = match binaries.run_as {
        Some(_) => PathBuf::from("/tmp"),
        None => std::env::temp_dir(),
    };
    let dir = parent.join(format!(
        "oa-pg-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    chown_to_server_user(binaries, &dir)?;
    Ok(dir)
}

/// Writes `contents` to `path` (mode 0600) for the server's user.
fn write_owned(binaries: &Binaries, path: &Path, contents: &[u8]) -> Result<(), String> {
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, contents));
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    chown_to_server_user(binaries, path)
}

/// Gives `path` to the server's user when this process runs as root.
fn chown_to_server_user(binaries: &Binaries, path: &Path) -> Result<(), String> {
    match &binaries.run_as {
        Some(run_as) => std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid))
            .map_err(|e| format!("cannot give {} to {}: {e}", path.display(), run_as.user)),
        None => Ok(()),
    }
}

/// A loopback port free right now.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}
