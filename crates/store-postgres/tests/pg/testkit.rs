//! The test database helpers themselves: where the PostgreSQL tests get a server (decided from an injected
//! environment), and the throwaway cluster, which serves queries and is gone when its process exits.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use offline_access_store_postgres::testkit::{
    self, Binaries, ClusterSetup, Decision, Environment, ThrowawayCluster, decide,
};

fn binaries() -> Binaries {
    Binaries {
        bin_dir: PathBuf::from("/usr/lib/postgresql/17/bin"),
        run_as: None,
    }
}

fn env(database_url: Option<&str>, ci: bool, server: Result<Binaries, String>) -> Environment {
    Environment {
        database_url: database_url.map(str::to_owned),
        ci,
        server,
    }
}

#[test]
fn the_test_database_is_database_url_else_a_throwaway_cluster_else_ignored_and_under_ci_a_failure()
{
    let url = "postgres://postgres@127.0.0.1:5432/test";
    let none = || Err("no initdb on PATH".to_owned());
    // DATABASE_URL wins, whatever else there is.
    for ci in [false, true] {
        assert_eq!(
            decide(env(Some(url), ci, Ok(binaries()))),
            Decision::Url(url.to_owned())
        );
        assert_eq!(
            decide(env(Some(url), ci, none())),
            Decision::Url(url.to_owned())
        );
        // Without it, a throwaway cluster when PostgreSQL is installed.
        assert_eq!(
            decide(env(None, ci, Ok(binaries()))),
            Decision::Throwaway(binaries())
        );
    }
    // No PostgreSQL at all: ignored with the reason; under CI a failure with the reason.
    match decide(env(None, false, none())) {
        Decision::Ignored(reason) => {
            assert!(
                reason.contains("set DATABASE_URL or install PostgreSQL"),
                "{reason}"
            );
            assert!(reason.contains("no initdb on PATH"), "{reason}");
        }
        other => panic!("expected Ignored, got {other:?}"),
    }
    match decide(env(None, true, none())) {
        Decision::Fail(reason) => {
            assert!(reason.contains("CI is set"), "{reason}");
            assert!(reason.contains("no initdb on PATH"), "{reason}");
        }
        other => panic!("expected Fail, got {other:?}"),
    }
}

#[test]
fn a_bin_directory_without_the_server_programs_means_no_postgresql_and_says_so() {
    let empty = tempfile::tempdir().unwrap();
    let missing = testkit::probe::find_binaries(Some(empty.path().into()), None).unwrap_err();
    assert!(missing.contains(testkit::probe::BIN_DIR_VAR), "{missing}");
    assert!(missing.contains("no initdb"), "{missing}");
}

/// Set for the child process of the exit test.
const CHILD: &str = "OFFLINE_ACCESS_TESTKIT_CHILD";

#[cfg_attr(
    no_initdb,
    ignore = "no initdb: a throwaway cluster cannot be started here"
)]
#[test]
fn a_throwaway_cluster_serves_queries_and_is_stopped_and_deleted_when_its_process_exits() {
    // A child process (this test binary, running only the helper below) starts a cluster, queries it, and exits
    // without stopping it.
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "testkit::throwaway_cluster_left_running_by_a_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CLUSTER ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no CLUSTER line in {stdout}"));
    let mut words = line.split_whitespace();
    let (dir, port) = (words.next().unwrap(), words.next().unwrap());
    let (dir, port) = (PathBuf::from(dir), port.parse::<u16>().unwrap());
    // Once the process is gone, the server stops and the directory goes, soon (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !dir.exists() && !listening {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster outlived its process: {} exists: {}, port {port} listening: {listening}",
            dir.display(),
            dir.exists()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run only as the child of the test above: starts a cluster, answers one query on it, prints where it is, and
/// leaves it running.
#[ignore = "a helper: the exit test runs it in a child process"]
#[tokio::test]
async fn throwaway_cluster_left_running_by_a_child_process() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let binaries = Environment::of_process().server.unwrap();
    let cluster = ThrowawayCluster::start(&binaries, &ClusterSetup::default()).unwrap();
    assert!(cluster.dir().join("data").is_dir());
    let client = testkit::raw_client(cluster.url()).await.unwrap();
    let row = client.query_one("SELECT 40 + 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    println!("CLUSTER {} {}", cluster.dir().display(), cluster.port());
    // Never stopped here: the process's exit must do it.
    std::mem::forget(cluster);
}
