//! Issue 5, case 22: outbound calls to Google verify TLS. (HTTPS served directly with `tls.cert`/`tls.key` is
//! `serve::serve_with_tls_cert_and_key_answers_https`.)

use fake_google::{CodeRequest, FakeConfig, FakeGoogle};
use offline_access_crypto::KeyRing;
use serde_json::Value;

use crate::support::{Cli, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_with_an_untrusted_certificate_is_never_reached_and_its_ca_in_google_ca_file_makes_it_work()
 {
    // Arrange: fake Google over HTTPS with a certificate from its own fresh CA.
    let fake = FakeGoogle::start_with(FakeConfig::default().tls(true))
        .await
        .unwrap();
    assert!(
        fake.base_url().starts_with("https://"),
        "{}",
        fake.base_url()
    );
    let ca = fake.control().ca_pem().unwrap();
    let key = KeyRing::generate_entry("k1").unwrap();
    let mut cli = Cli::new();
    cli.write("client_secret.json", &fake.client_secret_json().to_string());
    cli.write("fake-ca.pem", &ca);
    cli.env("GOOGLE__CLIENT_SECRET_FILE", "client_secret.json")
        .env("GOOGLE__BASE_URL", &fake.base_url())
        .env("SECURITY__ENCRYPTION_KEYS", &key)
        .env("STORE__PATH", "store")
        .env("LISTEN", "127.0.0.1:0")
        .env("LOG__LEVEL", "debug");

    // Act 1: the server does not trust the fake's CA.
    let server = cli.spawn_server(&["serve"], "untrusted.log").await;
    let minted = fake
        .mint_code(CodeRequest::new("tls@example.com"))
        .await
        .unwrap();
    let answer = post_code(&server.base, &minted.code).await;

    // Assert 1: an upstream error, no HTTP request reached the fake (the handshake failed), nothing stored.
    assert!(
        answer.0 == 502 || answer.0 == 503,
        "untrusted Google answered {answer:?}"
    );
    assert!(
        answer.1["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("upstream_")),
        "{answer:?}"
    );
    assert!(
        fake.requests().await.iter().all(|e| e.endpoint != "token"),
        "a token request got through an unverified TLS connection"
    );
    let log = server.log();
    assert_eq!(server.terminate().await, 0);
    assert!(!log.contains(&minted.code), "the code leaked into the log");
    let out = cli.run(&["users", "list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("no users"), "{}", out.stdout);

    // Act 2: the same server with the fake's CA as google.ca_file; the same code is still unused.
    cli.env("GOOGLE__CA_FILE", "fake-ca.pem");
    let server = cli.spawn_server(&["serve"], "trusted.log").await;
    let answer = post_code(&server.base, &minted.code).await;

    // Assert 2: signed in.
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(answer.1["offline_access"], true, "{answer:?}");
    assert_eq!(server.terminate().await, 0);
    let out = cli.run(&["users", "list"]).await;
    assert!(out.stdout.contains(&minted.sub), "{}", out.stdout);
}

/// POSTs a code to `/authcode`; the status and the JSON body.
async fn post_code(base: &str, code: &str) -> (u16, Value) {
    let answer = http()
        .post(format!("{base}/authcode"))
        .header("X-Requested-With", "test")
        .form(&[("authCode", code)])
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}
