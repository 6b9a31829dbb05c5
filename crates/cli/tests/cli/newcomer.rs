//! What a newcomer trips on, through the binary: `check-config` refuses what `serve` would refuse; operator
//! commands on a mistyped store path create nothing; `users delete` for a record under a lost key; `forget` says
//! the credential is kept when Google cannot confirm; a sandbox that cannot listen leaves nothing behind.

use std::sync::Arc;

use fake_google::{CodeRequest, Endpoint, FakeGoogle, Fault};
use offline_access_crypto::KeyRing;
use offline_access_domain::CredentialStore as _;
use offline_access_domain::testkit::canary_credential;
use offline_access_store_file::FileStore;

use crate::support::{Cli, http, post_authcode};

#[tokio::test]
async fn check_config_refuses_what_serve_would_refuse_naming_the_key_and_its_variable() {
    let mut cli = Cli::new();
    cli.env("SECURITY__ENCRYPTION_KEYS", "k1:short");
    let out = cli.run(&["check-config"]).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("security.encryption_keys"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("OFFLINE_ACCESS_SECURITY__ENCRYPTION_KEYS"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("short"),
        "the value is not echoed: {}",
        out.stderr
    );

    let key = KeyRing::generate_entry("k1").unwrap();
    cli.env("SECURITY__ENCRYPTION_KEYS", &key);
    cli.env("GOOGLE__CLIENT_SECRET_FILE", "missing_client_secret.json");
    let out = cli.run(&["check-config"]).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("google.client_secret_file"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("OFFLINE_ACCESS_GOOGLE__CLIENT_SECRET_FILE"),
        "{}",
        out.stderr
    );
    cli.write("not_a_secret.json", "{\"hello\": 1}");
    cli.env("GOOGLE__CLIENT_SECRET_FILE", "not_a_secret.json");
    let out = cli.run(&["check-config"]).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("not a Google client secret file"),
        "{}",
        out.stderr
    );

    let mut ca = Cli::new();
    ca.env("STORE__CA_FILE", "missing-ca.pem");
    let out = ca.run(&["check-config"]).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("OFFLINE_ACCESS_STORE__CA_FILE"),
        "{}",
        out.stderr
    );

    let fake = FakeGoogle::start().await.unwrap();
    cli.write("client_secret.json", &fake.client_secret_json().to_string());
    cli.env("GOOGLE__CLIENT_SECRET_FILE", "client_secret.json");
    cli.env("WEBHOOKS__URL", "https://hooks.example.com/x");
    let out = cli.run(&["check-config"]).await;
    assert_eq!(out.code, 2, "webhooks.url without a secret: {}", out.stdout);
    assert!(out.stderr.contains("webhooks.secret"), "{}", out.stderr);
    cli.env("WEBHOOKS__SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let out = cli.run(&["check-config", "--check-store"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("# checked: security.encryption_keys: 1 key(s) decoded"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("# checked: google.client_secret_file: read"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("# checked: webhooks: https://hooks.example.com/x"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("no file store at ./data yet"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("MfKQ9r8"),
        "the secret is redacted: {}",
        out.stdout
    );
    assert!(
        !cli.dir().join("data").exists(),
        "check-config created the store"
    );
}

#[tokio::test]
async fn operator_commands_on_a_missing_file_store_fail_naming_store_path_and_create_nothing() {
    let mut cli = Cli::new();
    cli.env(
        "SECURITY__ENCRYPTION_KEYS",
        &KeyRing::generate_entry("k1").unwrap(),
    )
    .env("STORE__PATH", "typo/store");
    for args in [
        &["users", "list"][..],
        &["events", "list"][..],
        &["users", "delete", "--sub", "1234", "--yes"][..],
    ] {
        let out = cli.run(args).await;
        assert_eq!(out.code, 1, "{args:?}: {}", out.stdout);
        assert!(
            out.stderr.contains("no file store at typo/store"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("store.path"), "{}", out.stderr);
    }
    assert!(
        !cli.dir().join("typo").exists(),
        "an operator command created the store"
    );
}

#[tokio::test]
async fn users_delete_removes_a_record_sealed_under_a_lost_key_only_with_yes() {
    let mut cli = Cli::new();
    let lost = KeyRing::generate_entry("k1").unwrap();
    let store = FileStore::open(
        cli.dir().join("store"),
        Arc::new(KeyRing::parse(&lost).unwrap()),
    )
    .unwrap();
    let credential = canary_credential("110169484474386276334");
    store.put(&credential).await.unwrap();
    // The key is lost: the operator configures a new one.
    cli.env(
        "SECURITY__ENCRYPTION_KEYS",
        &KeyRing::generate_entry("k2").unwrap(),
    )
    .env("STORE__PATH", "store");
    let listed = cli.run(&["users", "list"]).await;
    assert_eq!(
        listed.code, 1,
        "the record cannot be read: {}",
        listed.stdout
    );

    let refused = cli
        .run(&["users", "delete", "--sub", "110169484474386276334"])
        .await;
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(refused.stderr.contains("forget"), "{}", refused.stderr);

    let deleted = cli
        .run(&["users", "delete", "--sub", "110169484474386276334", "--yes"])
        .await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(
        deleted.stdout.contains("NOT revoked at Google"),
        "{}",
        deleted.stdout
    );
    assert!(
        deleted.stderr.contains("deleted by an operator"),
        "logged: {}",
        deleted.stderr
    );
    let listed = cli.run(&["users", "list"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stdout.contains("no users stored"),
        "{}",
        listed.stdout
    );
    let again = cli
        .run(&["users", "delete", "--sub", "110169484474386276334", "--yes"])
        .await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("users list"), "{}", again.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_while_google_cannot_revoke_says_the_credential_is_kept_until_google_confirms() {
    let fake = FakeGoogle::start().await.unwrap();
    let mut cli = Cli::against(&fake);
    cli.env("STORE__PATH", "store");
    let server = cli.spawn_server(&["serve"], "serve.log").await;
    let minted = fake
        .mint_code(CodeRequest::new("kept@example.com"))
        .await
        .unwrap();
    let answer = post_authcode(&http(), &server.base, &minted.code)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(server.terminate().await, 0);

    // Google unreachable (a forgotten or mistyped google.base_url): the operator is told the host and the cause.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    cli.env("GOOGLE__BASE_URL", &format!("http://{closed_addr}"));
    let out = cli.run(&["drive", "appfolder", "--sub", &minted.sub]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains(&closed_addr.ip().to_string()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("connect"), "{}", out.stderr);
    assert!(out.stderr.contains("google.base_url"), "{}", out.stderr);
    cli.env("GOOGLE__BASE_URL", &fake.base_url());

    let mut fault = Fault::status(Endpoint::Revoke, 503);
    fault.times = 100;
    fake.add_fault(fault).await.unwrap();

    let out = cli.run(&["forget", "--sub", &minted.sub]).await;

    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("the credential is kept, unusable, until Google confirms"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("deleted"), "{}", out.stdout);
    let listed = cli.run(&["users", "list"]).await;
    assert!(
        listed
            .stdout
            .contains("forgotten (revocation at Google pending)"),
        "{}",
        listed.stdout
    );
}

#[tokio::test]
async fn a_sandbox_that_cannot_listen_leaves_no_store_directory_and_no_spurious_warning() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cli = Cli::new();
    cli.env("LISTEN", &taken.local_addr().unwrap().to_string());
    let out = cli.run(&["serve", "--sandbox"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("cannot listen"), "{}", out.stderr);
    assert!(
        !out.stderr.to_lowercase().contains("sweep"),
        "{}",
        out.stderr
    );
    assert!(
        !cli.dir().join("data").exists(),
        "the sandbox left ./data behind"
    );
}
