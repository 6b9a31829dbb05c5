//! Where the PostgreSQL tests get their server: `DATABASE_URL`, else a throwaway cluster made with this machine's
//! `initdb` and `postgres`, else none (the tests are then reported as ignored, or fail under `CI`).
//!
//! Only `std`: the build scripts of the crates with PostgreSQL tests include this file too (`#[path]`), and call
//! [`build_script`] to set `cfg(no_postgres)` (no server at all: the tests carry
//! `#[cfg_attr(no_postgres, ignore = "...")]`) and `cfg(no_initdb)` (no `initdb`: the tests that need a cluster
//! of their own, e.g. with TLS, are ignored).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the directory with `initdb` and `postgres` to use, instead of searching `PATH` and
/// the usual install directories. A directory without them means "no PostgreSQL installed".
pub const BIN_DIR_VAR: &str = "OFFLINE_ACCESS_TEST_PG_BIN";

/// What this machine and environment offer the PostgreSQL tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// `DATABASE_URL`, when set and not blank.
    pub database_url: Option<String>,
    /// Whether `CI` is set: then no PostgreSQL at all is a failure, never a skip.
    pub ci: bool,
    /// The PostgreSQL programs to start a throwaway cluster with, or why there are none.
    pub server: Result<Binaries, String>,
}

/// PostgreSQL's server programs on this machine, and how to run them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// The directory holding `initdb` and `postgres`.
    pub bin_dir: PathBuf,
    /// The user to run them as, when this process runs as root (which `initdb` and `postgres` refuse).
    pub run_as: Option<RunAs>,
}

/// The system user a root process runs the server programs as (through `runuser`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user's name (`postgres`).
    pub user: String,
    /// Its user id, which must own the cluster's directory.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
    /// The `runuser` program.
    pub runuser: PathBuf,
}

/// Where the PostgreSQL tests get their database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The server at `DATABASE_URL`.
    Url(String),
    /// A throwaway cluster, one per test process, started with these programs.
    Throwaway(Binaries),
    /// No PostgreSQL at all: the tests are reported as ignored, for this reason.
    Ignored(String),
    /// No PostgreSQL at all and `CI` is set: the tests fail, for this reason.
    Fail(String),
}

/// Decides where the PostgreSQL tests get their database in `env`.
#[must_use]
pub fn decide(env: Environment) -> Decision {
    if let Some(url) = env.database_url {
        return Decision::Url(url);
    }
    match env.server {
        Ok(binaries) => Decision::Throwaway(binaries),
        Err(why) if env.ci => Decision::Fail(format!(
            "no PostgreSQL, and CI is set: the PostgreSQL tests must run in CI (set DATABASE_URL, or install \
             PostgreSQL: {why})"
        )),
        Err(why) => Decision::Ignored(format!(
            "no PostgreSQL: set DATABASE_URL or install PostgreSQL ({why})"
        )),
    }
}

impl Environment {
    /// This process's environment: `DATABASE_URL`, `CI`, and the PostgreSQL programs found.
    #[must_use]
    pub fn of_process() -> Environment {
        Environment {
            database_url: std::env::var("DATABASE_URL")
                .ok()
                .filter(|url| !url.trim().is_empty()),
            ci: std::env::var_os("CI").is_some(),
            server: find_binaries(std::env::var_os(BIN_DIR_VAR), std::env::var_os("PATH")),
        }
    }
}

/// PostgreSQL's server programs: in `explicit` (the [`BIN_DIR_VAR`] directory) if given, else next to an `initdb`
/// on `path`, else in the usual install directories (Debian's `/usr/lib/postgresql/<newest>/bin`, the PGDG RPMs'
/// `/usr/pgsql-<newest>/bin`, a source build's `/usr/local/pgsql/bin`); and, when this process runs as root, the
/// `postgres` user and `runuser` to run them with.
///
/// # Errors
/// Why there are none to use (a sentence fragment).
pub fn find_binaries(
    explicit: Option<OsString>,
    path: Option<OsString>,
) -> Result<Binaries, String> {
    let bin_dir = match explicit {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !has_server(&dir) {
                return Err(format!(
                    "{BIN_DIR_VAR}={} holds no initdb and postgres",
                    dir.display()
                ));
            }
            dir
        }
        None => candidates(path).into_iter().find(|dir| has_server(dir)).ok_or_else(|| {
            "no initdb on PATH nor in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or /usr/local/pgsql/bin"
                .to_owned()
        })?,
    };
    let run_as = if running_as_root() {
        Some(postgres_user()?)
    } else {
        None
    };
    Ok(Binaries { bin_dir, run_as })
}

/// Whether `dir` holds the programs a cluster needs.
fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// Directories that may hold the server programs, most likely first.
fn candidates(path: Option<OsString>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for dir in path.iter().flat_map(std::env::split_paths) {
        // `/usr/local/bin/initdb` may be a link into the real directory, where `postgres` is.
        if let Ok(initdb) = dir.join("initdb").canonicalize()
            && let Some(real) = initdb.parent()
        {
            dirs.push(real.to_path_buf());
        }
    }
    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
    ] {
        dirs.extend(
            newest_first(Path::new(parent), prefix)
                .into_iter()
                .map(|dir| dir.join(suffix)),
        );
    }
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
    dirs
}

/// The entries of `parent` named `prefix` + a version number, the highest version first.
fn newest_first(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name.to_str()?.strip_prefix(prefix)?;
            let major = version.split('.').next()?.parse().ok()?;
            Some((major, entry.path()))
        })
        .collect();
    versions.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// Whether this process runs as root (`id -u` says 0).
fn running_as_root() -> bool {
    command_output("id", &["-u"]).is_some_and(|uid| uid == "0")
}

/// The `postgres` user and `runuser`, for a root process.
fn postgres_user() -> Result<RunAs, String> {
    let refused = "this process runs as root, which initdb refuses";
    let id = |flag: &str| {
        command_output("id", &[flag, "postgres"])
            .and_then(|id| id.parse::<u32>().ok())
            .ok_or_else(|| format!("{refused}, and there is no `postgres` user to run it as"))
    };
    let (uid, gid) = (id("-u")?, id("-g")?);
    let runuser = [
        "/usr/sbin/runuser",
        "/sbin/runuser",
        "/usr/bin/runuser",
        "/bin/runuser",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.is_file())
    .ok_or_else(|| format!("{refused}, and there is no runuser to run it as `postgres`"))?;
    Ok(RunAs {
        user: "postgres".to_owned(),
        uid,
        gid,
        runuser,
    })
}

/// The trimmed standard output of a successful `program args`.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The build script of a crate with PostgreSQL tests: sets `cfg(no_postgres)` when they have no server at all
/// (neither `DATABASE_URL` nor `initdb`, and `CI` unset), and `cfg(no_initdb)` when there is no `initdb` to start a
/// cluster of their own (and `CI` unset). `probe` is this file's path relative to the crate.
///
/// Cargo re-runs it when this file, the `initdb` found or [`BIN_DIR_VAR`] changes, and, while no `initdb` is
/// found, when `DATABASE_URL`, `CI` or `PATH` changes. After installing PostgreSQL, touch this file (or set
/// [`BIN_DIR_VAR`]) so the next build finds it.
pub fn build_script(probe: &str) {
    println!("cargo::rustc-check-cfg=cfg(no_postgres)");
    println!("cargo::rustc-check-cfg=cfg(no_initdb)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={probe}");
    println!("cargo::rerun-if-env-changed={BIN_DIR_VAR}");
    let env = Environment::of_process();
    match &env.server {
        Ok(binaries) => {
            println!(
                "cargo::rerun-if-changed={}",
                binaries.bin_dir.join("initdb").display()
            );
        }
        Err(_) => {
            for var in ["DATABASE_URL", "CI", "PATH"] {
                println!("cargo::rerun-if-env-changed={var}");
            }
            if !env.ci {
                println!("cargo::rustc-cfg=no_initdb");
            }
        }
    }
    if let Decision::Ignored(reason) = decide(env) {
        println!("cargo::rustc-cfg=no_postgres");
        println!("cargo::warning=the PostgreSQL tests will be reported as ignored: {reason}");
    }
}
