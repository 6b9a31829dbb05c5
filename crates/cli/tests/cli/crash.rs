//! Issue 5, case 14: `kill -9` of `serve` during 200 concurrent sign-ins and refreshes, on the file store and on
//! PostgreSQL. After a restart on the same store and key, every sign-in that was answered 200 is there with its
//! refresh token, and every record still decrypts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fake_google::{CodeRequest, FakeGoogle, IdTokenRequest};

use crate::support::{Cli, http, post_authcode};

/// Users signed in before the crash, whose expired access tokens make the concurrent Drive calls refresh.
const REFRESHERS: usize = 40;
/// Sign-ins in flight together with the refreshes (200 requests in all).
const SIGN_INS: usize = 200 - REFRESHERS;
/// The server is killed once this many of the 200 requests were answered.
const KILL_AFTER: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_200_concurrent_sign_ins_and_refreshes_on_the_file_store_loses_no_answered_sign_in()
 {
    let report = crash_and_restart(&[("STORE__PATH", "store".to_owned())]).await;

    // The file store: no temp file of an interrupted write survives a restart, every record is whole JSON with
    // sealed tokens only, mode 0600.
    let credentials = report.cli.dir().join("store").join("credentials");
    let mut files = 0;
    for entry in std::fs::read_dir(&credentials).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".tmp."),
            "a temp file survived the restart: {name}"
        );
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let refresh = record["refresh_token"].as_str().unwrap_or_default();
        assert!(refresh.starts_with("v1.k1."), "{name}: {record}");
        assert_eq!(file_mode(&path), 0o600, "{name}");
        files += 1;
    }
    assert!(files >= report.answered_sign_ins + REFRESHERS);
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_200_concurrent_sign_ins_and_refreshes_on_postgres_loses_no_answered_sign_in()
{
    let url = database_url();
    let schema = unique_schema("crash");
    let report = crash_and_restart(&[
        ("STORE__KIND", "postgres".to_owned()),
        ("STORE__URL", url.clone()),
        ("STORE__SCHEMA", schema.clone()),
        ("STORE__POOL_SIZE", "8".to_owned()),
    ])
    .await;

    // Every row's tokens are sealed values.
    let rows = psql(
        &url,
        &format!(
            "SELECT subject, coalesce(refresh_token, ''), coalesce(access_token, '') FROM {schema}.credentials"
        ),
    );
    let mut count = 0;
    for row in rows.lines() {
        let fields: Vec<&str> = row.split('|').collect();
        assert_eq!(fields.len(), 3, "{row}");
        assert!(fields[1].starts_with("v1.k1."), "{row}");
        assert!(
            fields[2].is_empty() || fields[2].starts_with("v1.k1."),
            "{row}"
        );
        count += 1;
    }
    assert!(count >= report.answered_sign_ins + REFRESHERS);
    drop_schema(&url, &schema);
}

/// What a crash run leaves for store-specific checks.
struct CrashReport {
    cli: Cli,
    answered_sign_ins: usize,
}

/// Serve on `store`, sign in [`REFRESHERS`] users and expire their access tokens, then fire [`SIGN_INS`]
/// sign-ins and [`REFRESHERS`] refreshing Drive calls at once and `kill -9` the server once [`KILL_AFTER`] were
/// answered. Restart on the same store and key and check every answered sign-in.
async fn crash_and_restart(store: &[(&str, String)]) -> CrashReport {
    // Arrange: a fake Google, a fixed key, a server.
    let fake = FakeGoogle::start().await.unwrap();
    let mut cli = Cli::against(&fake);
    cli.env("LOG__LEVEL", "warn");
    for (name, value) in store {
        cli.env(name, value);
    }
    let server = cli.spawn_server(&["serve"], "before.log").await;
    let client = http();

    let mut refreshers = Vec::new();
    for i in 0..REFRESHERS {
        let email = format!("refresher{i}@example.com");
        let minted = fake.mint_code(CodeRequest::new(&email)).await.unwrap();
        let answer = sign_in(&client, &server.base, &minted.code).await.unwrap();
        assert_eq!(answer, 200, "sign-in of {email} before the crash");
        assert!(fake.expire_user(&minted.sub).await);
        let id_token = fake
            .mint_id_token(IdTokenRequest::new(&email))
            .await
            .unwrap();
        refreshers.push((minted.sub, id_token));
    }
    let mut codes = Vec::new();
    for i in 0..SIGN_INS {
        let minted = fake
            .mint_code(CodeRequest::new(format!("crash{i}@example.com")))
            .await
            .unwrap();
        codes.push(minted);
    }

    // Act: 200 requests at once, the refreshes first; the request that makes KILL_AFTER answers
    // sends SIGKILL itself, so the rest are cut off wherever they are (exchanging, sealing, writing).
    let answered = Arc::new(AtomicUsize::new(0));
    let pid = server.pid().to_string();
    let after_answer = move |answered: &AtomicUsize, pid: &str| {
        if answered.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
            let killed = std::process::Command::new("kill")
                .args(["-9", pid])
                .status()
                .unwrap();
            assert!(killed.success());
        }
    };
    let mut sign_ins = Vec::new();
    let mut refreshes = Vec::new();
    let mut codes = codes.into_iter();
    let mut refresher_tokens = refreshers.iter().map(|(_, t)| t.clone());
    for i in 0..SIGN_INS + REFRESHERS {
        let (client, base, answered, pid) = (
            client.clone(),
            server.base.clone(),
            answered.clone(),
            pid.clone(),
        );
        if i < REFRESHERS {
            let id_token = refresher_tokens.next().unwrap();
            refreshes.push(tokio::spawn(async move {
                let status = client
                    .get(format!("{base}/v1/me/drive/appfolder"))
                    .bearer_auth(id_token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .ok();
                after_answer(&answered, &pid);
                status
            }));
        } else {
            let minted = codes.next().unwrap();
            sign_ins.push(tokio::spawn(async move {
                let status = sign_in(&client, &base, &minted.code).await;
                after_answer(&answered, &pid);
                (minted.sub, status)
            }));
        }
    }
    let mut ok_sign_ins = Vec::new();
    let mut failed_sign_ins = 0;
    for task in sign_ins {
        let (sub, status) = task.await.unwrap();
        match status {
            Some(200) => ok_sign_ins.push(sub),
            _ => failed_sign_ins += 1,
        }
    }
    let mut ok_refreshes = 0;
    for task in refreshes {
        if task.await.unwrap() == Some(200) {
            ok_refreshes += 1;
        }
    }
    server.kill_hard().await;
    assert!(answered.load(Ordering::SeqCst) >= KILL_AFTER);
    eprintln!(
        "kill -9 after {KILL_AFTER} answers: {} sign-ins answered 200, {failed_sign_ins} cut off; \
         {ok_refreshes}/{REFRESHERS} refreshing Drive calls answered 200",
        ok_sign_ins.len()
    );
    assert!(!ok_sign_ins.is_empty() || ok_refreshes > 0);

    // Assert: restarted on the same store and key, every record decrypts and every answered sign-in (and every
    // user signed in before) is there with a refresh token.
    let server = cli.spawn_server(&["serve"], "after.log").await;
    let out = cli.run(&["users", "list"]).await;
    assert_eq!(out.code, 0, "users list after the crash: {}", out.stderr);
    let expected = ok_sign_ins
        .iter()
        .chain(refreshers.iter().map(|(sub, _)| sub));
    for sub in expected {
        let row = out
            .stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(sub.as_str()))
            .unwrap_or_else(|| panic!("{sub} was answered 200 but is missing:\n{}", out.stdout));
        assert!(row.contains("active"), "{row}");
        assert!(!row.contains("no refresh token"), "{row}");
    }

    // The stored refresh tokens are the live ones: a user offline with an expired access token is served.
    for sub in ok_sign_ins
        .iter()
        .take(2)
        .chain(refreshers.iter().map(|(sub, _)| sub).take(2))
    {
        assert!(fake.expire_user(sub).await);
        let out = cli.run(&["drive", "appfolder", "--sub", sub]).await;
        assert_eq!(out.code, 0, "drive appfolder --sub {sub}: {}", out.stderr);
    }
    assert_eq!(server.terminate().await, 0);

    CrashReport {
        cli,
        answered_sign_ins: ok_sign_ins.len(),
    }
}

/// POSTs a code to `/authcode` as the Android sample does; the status, or `None` when the connection broke.
async fn sign_in(client: &reqwest::Client, base: &str, code: &str) -> Option<u16> {
    post_authcode(client, base, code)
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

fn file_mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The test database: `DATABASE_URL`, else a throwaway cluster this test process starts with the machine's
/// `initdb` and `postgres` (store-postgres's testkit). The tests calling it carry `#[cfg_attr(no_postgres, ignore)]`
/// (set by `build.rs`): with no PostgreSQL at all they are reported as ignored, and under `CI` they fail.
pub(crate) fn database_url() -> String {
    offline_access_store_postgres::testkit::database_url()
}

/// A schema name no other test uses.
pub(crate) fn unique_schema(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// Runs one SQL statement with `psql`; its unaligned, tuples-only output.
pub(crate) fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .expect("psql runs (the postgresql-client package)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Drops a test schema.
pub(crate) fn drop_schema(url: &str, schema: &str) {
    psql(url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
}
