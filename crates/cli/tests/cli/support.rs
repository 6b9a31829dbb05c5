//! Running the built binary in an isolated working directory with a controlled environment.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_offline-access");

/// What a finished command did.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// A working directory and environment for the binary. No `OFFLINE_ACCESS_*` or `RUST_LOG` variable of the
/// test runner leaks in.
pub(crate) struct Cli {
    dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
}

impl Cli {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            envs: Vec::new(),
        }
    }

    /// A working directory configured for `serve` against `fake` as against Google: its client secret file, its
    /// base URL, a new encryption key, a free loopback port, no sign-in rate limit.
    pub(crate) fn against(fake: &fake_google::FakeGoogle) -> Self {
        let key = offline_access_crypto::KeyRing::generate_entry("k1").unwrap();
        let mut cli = Self::new();
        cli.write("client_secret.json", &fake.client_secret_json().to_string());
        cli.env("GOOGLE__CLIENT_SECRET_FILE", "client_secret.json")
            .env("GOOGLE__BASE_URL", &fake.base_url())
            .env("SECURITY__ENCRYPTION_KEYS", &key)
            .env("LISTEN", "127.0.0.1:0")
            .env("HTTP__AUTHCODE_RATE_LIMIT", "0");
        cli
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sets `OFFLINE_ACCESS_<name>`.
    pub(crate) fn env(&mut self, name: &str, value: &str) -> &mut Self {
        self.envs
            .retain(|(k, _)| k != &format!("OFFLINE_ACCESS_{name}"));
        self.envs
            .push((format!("OFFLINE_ACCESS_{name}"), value.to_owned()));
        self
    }

    pub(crate) fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args).current_dir(self.dir.path());
        for (key, _) in std::env::vars() {
            // Everything here is on loopback: a proxy from the environment must not get in the way.
            if key.starts_with("OFFLINE_ACCESS_")
                || key == "RUST_LOG"
                || key.to_ascii_lowercase().ends_with("_proxy")
            {
                command.env_remove(key);
            }
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        command.kill_on_drop(true);
        command
    }

    /// Runs to completion.
    pub(crate) async fn run(&self, args: &[&str]) -> Output {
        let output = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }

    /// Starts a long-running command (`serve`) and waits for its `listening on http://ADDR` line. Its stderr goes
    /// to a log file in the working directory.
    pub(crate) async fn spawn_server(&self, args: &[&str], log_name: &str) -> Server {
        let log_path = self.dir.path().join(log_name);
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // A bound so a broken server fails the test instead of hanging it; not a speed assertion.
        let first = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no `listening on` line; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )
            })
            .unwrap()
            .unwrap_or_default();
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {first:?}; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )
            })
            .to_owned();
        Server {
            child,
            base,
            log_path,
        }
    }
}

/// A running server process (killed when dropped).
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    pub(crate) log_path: PathBuf,
}

impl Server {
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGKILL (`kill -9`: nothing gets to finish) and waits for the process to be gone.
    pub(crate) async fn kill_hard(mut self) {
        // It may be dead already (killed by [`Server::pid`]); then only the wait matters.
        let _ = self.child.start_kill();
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the server did not die after SIGKILL")
            .unwrap();
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Sends SIGTERM and returns the exit code.
    pub(crate) async fn terminate(mut self) -> i32 {
        let pid = self.child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the server did not stop after SIGTERM")
            .unwrap();
        status.code().unwrap_or(-1)
    }
}

/// POSTs a server auth code to `{base}/authcode` as the Android sample does (a form, with `X-Requested-With`).
pub(crate) async fn post_authcode(
    client: &reqwest::Client,
    base: &str,
    code: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base}/authcode"))
        .header("X-Requested-With", "test")
        .form(&[("authCode", code)])
        .send()
        .await
}

/// An HTTP client that never goes through a proxy (everything here is on loopback).
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Strings that look like Google token values (not the "…" placeholders the demo prints). An ID token must be
/// JWS-shaped (`eyJ`, base64url, then `.`): `eyJ` alone turns up by chance in random base64url (a sealed value
/// in a debug log, a Drive folder id) about once in 260,000 characters.
pub(crate) fn token_like(text: &str) -> Option<String> {
    let b64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    for prefix in ["ya29.", "1//", "4/0", "eyJ"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let after = &rest[at + prefix.len()..];
            let looks_like = if prefix == "eyJ" {
                let run = after.len() - after.trim_start_matches(b64url).len();
                run > 0 && after[run..].starts_with('.')
            } else {
                after.chars().next().is_some_and(b64url)
            };
            if looks_like {
                return Some(format!(
                    "{prefix}{}",
                    after.chars().take(8).collect::<String>()
                ));
            }
            rest = after;
        }
    }
    None
}

#[test]
fn token_like_finds_token_shapes_and_not_chance_base64url() {
    assert_eq!(
        token_like("x eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig y").as_deref(),
        Some("eyJhbGciOiJ")
    );
    assert!(token_like("token ya29.a0AfH6SM").is_some());
    assert!(token_like("rt 1//0gLx").is_some());
    assert!(token_like("code 4/0AY0e").is_some());
    assert_eq!(token_like("sealed v1.k1.Zm9veyJhYmNkZWZn-_x end"), None);
    assert_eq!(token_like("folder 0AeyJQk9Uk9PVA,"), None);
    assert_eq!(token_like("placeholders ya29.… 1//… eyJ… 4/0…"), None);
}
