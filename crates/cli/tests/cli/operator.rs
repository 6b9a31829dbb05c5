//! `serve` with a configured (fake) Google, then the operator commands on the same store: the file store, and
//! PostgreSQL (`DATABASE_URL`, else a throwaway cluster).

use fake_google::{CodeRequest, DEFAULT_CLIENT_SECRET, FakeGoogle};
use offline_access_crypto::KeyRing;
use serde_json::Value;

use crate::crash::{database_url, unique_schema};
use crate::support::{Cli, http, token_like};

const EMAIL: &str = "bob@example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_calls_drive_for_rotates_keys_and_forgets_a_user_signed_in_through_serve()
{
    operator_flow(&[("STORE__PATH", "store".to_owned())]).await;
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_operator_flow_works_on_postgres() {
    let url = database_url();
    let schema = unique_schema("cli_flow");
    let mut cli = Cli::new();
    cli.env("STORE__KIND", "postgres")
        .env("STORE__URL", &url)
        .env("STORE__SCHEMA", &schema);
    let out = cli.run(&["migrate"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("applied"), "{}", out.stdout);
    let out = cli.run(&["migrate"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("up to date"), "{}", out.stdout);
    assert!(
        !out.stderr.contains("NOTICE"),
        "the server's notices are noise: {}",
        out.stderr
    );

    operator_flow(&[
        ("STORE__KIND", "postgres".to_owned()),
        ("STORE__URL", url.clone()),
        ("STORE__SCHEMA", unique_schema("cli_serve")),
    ])
    .await;
}

/// Serve (migrating on start), sign a user in, then `users list`, `drive appfolder --sub`, `keys rotate` and
/// `forget --sub` on the same store.
async fn operator_flow(store: &[(&str, String)]) {
    // Arrange: a fake Google configured like a real one, a key, a server.
    let fake = FakeGoogle::start().await.unwrap();
    let k1 = KeyRing::generate_entry("k1").unwrap();
    let k2 = KeyRing::generate_entry("k2").unwrap();
    let mut cli = Cli::new();
    cli.write("client_secret.json", &fake.client_secret_json().to_string());
    cli.env("GOOGLE__CLIENT_SECRET_FILE", "client_secret.json")
        .env("GOOGLE__BASE_URL", &fake.base_url())
        .env("SECURITY__ENCRYPTION_KEYS", &k1)
        .env("LISTEN", "127.0.0.1:0")
        .env("LOG__LEVEL", "debug");
    for (name, value) in store {
        cli.env(name, value);
    }
    let server = cli.spawn_server(&["serve"], "serve.log").await;

    // The app signs the user in.
    let minted = fake.mint_code(CodeRequest::new(EMAIL)).await.unwrap();
    let answer = http()
        .post(format!("{}/authcode", server.base))
        .header("X-Requested-With", "test")
        .form(&[("authCode", minted.code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["offline_access"], true);
    let sub = minted.sub.clone();

    // users list, while the server runs.
    let out = cli.run(&["users", "list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("SUB"), "{}", out.stdout);
    assert!(out.stdout.contains(&sub), "{}", out.stdout);
    assert!(out.stdout.contains(EMAIL), "{}", out.stdout);
    assert!(out.stdout.contains("active"), "{}", out.stdout);
    assert!(out.stdout.contains("drive.appdata"), "{}", out.stdout);
    assert_eq!(token_like(&out.stdout), None, "{}", out.stdout);

    // drive appfolder --sub with the user offline and their access token expired: exactly one refresh.
    assert!(fake.expire_user(&sub).await);
    fake.clear_requests().await;
    let out = cli.run(&["drive", "appfolder", "--sub", &sub]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let folder: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        folder["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{folder}"
    );
    let refreshes = fake
        .requests()
        .await
        .iter()
        .filter(|e| e.grant_type.as_deref() == Some("refresh_token"))
        .count();
    assert_eq!(refreshes, 1);

    // Graceful stop.
    let log = server.log();
    assert_eq!(server.terminate().await, 0);
    assert!(!log.contains(&minted.code), "the code leaked into the log");
    assert!(
        !log.contains(DEFAULT_CLIENT_SECRET),
        "the client secret leaked into the log"
    );
    assert_eq!(token_like(&log), None, "{log}");

    // keys rotate to a new key, then the old key can go.
    cli.env(
        "SECURITY__ENCRYPTION_KEYS",
        &format!("{},{}", k2.as_str(), k1.as_str()),
    );
    let out = cli.run(&["keys", "rotate"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("re-encrypted 1 credential"),
        "{}",
        out.stdout
    );
    let out = cli.run(&["keys", "rotate"]).await;
    assert!(
        out.stdout.contains("re-encrypted 0 credential"),
        "{}",
        out.stdout
    );
    cli.env("SECURITY__ENCRYPTION_KEYS", &k2);
    let out = cli.run(&["users", "list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&sub), "{}", out.stdout);

    // forget --sub: revoked at Google, gone from the store.
    fake.clear_requests().await;
    let out = cli.run(&["forget", "--sub", &sub]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("revoked at Google"), "{}", out.stdout);
    assert!(fake.requests().await.iter().any(|e| e.endpoint == "revoke"));
    let out = cli.run(&["users", "list"]).await;
    assert!(out.stdout.contains("no users stored"), "{}", out.stdout);

    // An unknown user is a runtime failure naming what to do.
    let out = cli.run(&["drive", "appfolder", "--sub", &sub]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("users list"), "{}", out.stderr);
}
