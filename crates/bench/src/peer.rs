//! The `signin-peer` scenario (opt-in, not part of `all`): offline-access's sign-ins against the Python backend
//! that Google's "Enabling Server-Side Access" page shows — Flask, oauth2client's
//! `credentials_from_clientsecrets_and_code` and file `Storage`, under gunicorn with 2 workers × 8 threads
//! (`crates/bench/peer/app.py`) — both against the same fake, the same pre-minted codes, in the same run.
//!
//! It needs a Python that imports `flask`, `oauth2client`, `googleapiclient` and `gunicorn`:
//! `$OFFLINE_ACCESS_BENCH_PYTHON`, else `python3`. Without one the scenario is skipped with a note.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::Child;

use crate::Res;
use crate::load::{self, Load};
use crate::procs;
use crate::scenarios::{self, Ctx, Pair, Throughput};

/// The Python modules the peer needs.
const MODULES: &str = "import flask, oauth2client, googleapiclient, gunicorn";

/// The peer app's directory (`app.py`), in this crate's sources.
fn app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peer")
}

/// The Python to run the peer with, if it has the modules; otherwise why not.
fn python() -> Result<PathBuf, String> {
    let python = std::env::var_os("OFFLINE_ACCESS_BENCH_PYTHON")
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let status = std::process::Command::new(&python)
        .args(["-c", MODULES])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(python),
        Ok(_) => Err(format!(
            "{} cannot `{MODULES}` (pip install flask oauth2client google-api-python-client gunicorn, or set \
             OFFLINE_ACCESS_BENCH_PYTHON to a Python that has them)",
            python.display()
        )),
        Err(e) => Err(format!("{} cannot be run: {e}", python.display())),
    }
}

/// The scenario's table for one layout: a [`Throughput`] whose `server` is offline-access (file store) and whose
/// `direct` is the Python backend (its CPU: gunicorn's master and workers).
pub(crate) fn markdown(out: &mut String, run: &Throughput) {
    let _ = writeln!(
        out,
        "\n### Sign-ins: offline-access vs the Python backend of Google's page (file stores, {})\n",
        run.layout.label()
    );
    let _ = writeln!(
        out,
        "| concurrency | offline-access /s | p50 ms | p99 ms | its CPU µs/req | Python (gunicorn 2×8) /s | p50 ms | p99 ms | its CPU µs/req | ratio |"
    );
    let _ = writeln!(
        out,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // `cpu_per_1000` is CPU seconds per 1,000 requests, i.e. milliseconds per request.
    let cpu = |l: &Load| {
        l.cpu_per_1000()
            .map_or("—".to_owned(), |ms| format!("{:.0}", ms * 1e3))
    };
    for Pair {
        server,
        direct: peer,
    } in &run.rows
    {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.1} | {:.1} | {} | {:.0} | {:.1} | {:.1} | {} | {:.2} |",
            server.concurrency,
            server.rate(),
            ms(server.p50),
            ms(server.p99),
            cpu(server),
            peer.rate(),
            ms(peer.p50),
            ms(peer.p99),
            cpu(peer),
            server.rate() / peer.rate().max(1e-9)
        );
    }
    let _ = writeln!(
        out,
        "\nBest offline-access / best Python (each at its best concurrency): **{:.2}**. The Python backend does \
         not verify the ID token, keeps tokens in clear and does not sync its files.",
        run.ratio()
    );
}

/// The running peer: gunicorn's master (killed, with its workers, when dropped).
struct Peer {
    child: Child,
    pid: u32,
    url: String,
}

impl Peer {
    /// Starts gunicorn on a free loopback port and waits until it answers.
    async fn start(ctx: &Ctx, python: &Path) -> Res<Peer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store = ctx.dir.path().join("peer-store");
        std::fs::create_dir_all(&store)?;
        let log = ctx.dir.path().join("peer.stderr.log");
        let mut command = ctx.layout.server_side_command(python);
        command
            .args(["-m", "gunicorn", "--chdir"])
            .arg(app_dir())
            .args(["-w", "2", "--threads", "8", "-b"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("app:app")
            .env("CLIENT_SECRET_FILE", &ctx.env.client_secret_file)
            .env("STORE_DIR", &store)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .current_dir(ctx.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        let child = command.spawn()?;
        let pid = child.id().ok_or("gunicorn exited at once")?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ctx.http.get(format!("{url}/")).send().await.is_err() {
            if Instant::now() > deadline {
                let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(
                    format!("gunicorn did not answer on {url} within 30 s: {stderr}").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Peer { child, pid, url })
    }

    /// CPU seconds of gunicorn's master and its workers.
    fn cpu_secs(&self) -> Res<f64> {
        let mut total = procs::cpu_secs(self.pid)?;
        for pid in children(self.pid) {
            total += procs::cpu_secs(pid).unwrap_or(0.0);
        }
        Ok(total)
    }

    /// Stops gunicorn: SIGTERM to the master, which stops its workers; SIGKILL if it has not exited in 10 s.
    async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The processes whose parent is `pid` (from `/proc/*/stat`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The scenario in `ctx`'s layout: at each concurrency, fresh codes through the Python backend, then fresh codes
/// through offline-access (file store), each with its CPU. `None` (with a note) when no Python has the modules.
pub(crate) async fn signin_peer(ctx: &mut Ctx) -> Res<Option<Throughput>> {
    let python = match python() {
        Ok(python) => python,
        Err(why) => {
            println!("note: the signin-peer scenario is skipped: {why}");
            return Ok(None);
        }
    };
    let store = ctx.file_store()?;
    let server = ctx.server(&store).await?;
    let peer = Peer::start(ctx, &python).await?;
    let run = ctx.next();
    let mut rows = Vec::new();
    for &c in &ctx.plan.concurrency.clone() {
        let total = ctx.plan.requests(c);
        let codes = Arc::new(ctx.mint_codes(&format!("pp{run}-{c}"), total).await?);
        let (http, url) = (ctx.http.clone(), peer.url.clone());
        let before = peer.cpu_secs()?;
        let mut peer_load = load::run(c, total, ctx.plan.limit, move |i| {
            let (http, url, codes) = (http.clone(), url.clone(), Arc::clone(&codes));
            async move { scenarios::post_authcode(&http, &url, &codes[i]).await }
        })
        .await;
        peer_load.cpu_secs = Some(peer.cpu_secs()? - before);
        let codes = ctx.mint_codes(&format!("ps{run}-{c}"), total).await?;
        let server_load = scenarios::authcode_load(ctx, &server, codes, c, ctx.plan.limit).await?;
        eprintln!(
            "signin-peer ({}) c={c}: {:.0}/s offline-access, {:.0}/s Python",
            ctx.layout.label(),
            server_load.rate(),
            peer_load.rate()
        );
        rows.push(Pair {
            server: server_load,
            direct: peer_load,
        });
    }
    peer.stop().await;
    server.stop().await;
    Ok(Some(Throughput {
        store: "file",
        layout: ctx.layout,
        rows,
    }))
}
