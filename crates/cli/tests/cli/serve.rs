//! `serve`: refusals and the sandbox.

use crate::support::{Cli, http};

#[tokio::test]
async fn serve_without_a_client_secret_exits_2_naming_the_setting() {
    let out = Cli::new().run(&["serve"]).await;

    assert_eq!(out.code, 2);
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
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn serve_without_encryption_keys_exits_2_saying_how_to_make_one() {
    let mut cli = Cli::new();
    cli.env("GOOGLE__CLIENT_SECRET_FILE", "client_secret.json");

    let out = cli.run(&["serve"]).await;

    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("security.encryption_keys"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("openssl rand -base64 32"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn serve_with_an_unreadable_client_secret_file_exits_2_naming_it() {
    let mut cli = Cli::new();
    cli.env("GOOGLE__CLIENT_SECRET_FILE", "missing.json").env(
        "SECURITY__ENCRYPTION_KEYS",
        "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );

    let out = cli.run(&["serve"]).await;

    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("google.client_secret_file"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("missing.json"), "{}", out.stderr);
}

#[tokio::test]
async fn serve_sandbox_listens_on_a_free_port_answers_healthz_and_stops_on_sigterm() {
    let mut cli = Cli::new();
    cli.env("LISTEN", "127.0.0.1:0");

    let server = cli
        .spawn_server(&["serve", "--sandbox"], "sandbox.log")
        .await;
    assert!(
        server.base.starts_with("http://127.0.0.1:"),
        "{}",
        server.base
    );
    assert!(!server.base.ends_with(":0"), "{}", server.base);

    let health = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = http()
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = http()
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("# TYPE"));

    let log = server.log();
    assert!(log.contains("ephemeral key"), "{log}");
    assert!(log.contains("/_fake/codes"), "{log}");
    assert!(log.contains("X-Requested-With"), "{log}");
    let sandbox_dirs = std::fs::read_dir(cli.dir().join("data")).unwrap().count();
    assert_eq!(sandbox_dirs, 1);

    assert_eq!(server.terminate().await, 0);
    // The sandbox's temporary store (its key is gone) is removed at shutdown, and ./data with it (the sandbox made
    // it).
    assert!(!cli.dir().join("data").exists());
}

#[tokio::test]
async fn serve_with_tls_cert_and_key_answers_https() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let mut cli = Cli::new();
    cli.write("cert.pem", &certified.cert.pem());
    cli.write("key.pem", &certified.signing_key.serialize_pem());
    cli.env("LISTEN", "127.0.0.1:0")
        .env("TLS__CERT", "cert.pem")
        .env("TLS__KEY", "key.pem");

    let server = cli.spawn_server(&["serve", "--sandbox"], "tls.log").await;
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );

    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(!server.log().contains("PRIVATE KEY"));
    assert_eq!(server.terminate().await, 0);
}

#[tokio::test]
async fn serve_with_only_a_tls_cert_exits_2_naming_both_settings() {
    let mut cli = Cli::new();
    cli.env("TLS__CERT", "cert.pem");

    let out = cli.run(&["serve", "--sandbox"]).await;

    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("tls.cert and tls.key"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn serve_with_an_unusable_tls_key_exits_2_naming_it() {
    let mut cli = Cli::new();
    cli.write("cert.pem", "not a certificate");
    cli.write("key.pem", "not a key");
    cli.env("TLS__CERT", "cert.pem").env("TLS__KEY", "key.pem");

    let out = cli.run(&["serve", "--sandbox"]).await;

    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("tls.cert"), "{}", out.stderr);
}

#[tokio::test]
async fn serve_on_an_address_in_use_exits_1_naming_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cli = Cli::new();
    cli.env("LISTEN", &taken.local_addr().unwrap().to_string());

    let out = cli.run(&["serve", "--sandbox"]).await;

    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("listen"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[tokio::test]
async fn serve_with_postgres_at_a_closed_port_exits_1_naming_store_url_without_its_password() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut cli = Cli::new();
    cli.write(
        "client_secret.json",
        r#"{"web":{"client_id":"w.apps.googleusercontent.com","client_secret":"s","token_uri":"https://oauth2.googleapis.com/token"}}"#,
    );
    cli.env("GOOGLE__CLIENT_SECRET_FILE", "client_secret.json")
        .env(
            "SECURITY__ENCRYPTION_KEYS",
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .env("LISTEN", "127.0.0.1:0")
        .env("STORE__KIND", "postgres")
        .env(
            "STORE__URL",
            &format!("postgres://oa:canary-password@127.0.0.1:{closed_port}/oa"),
        );

    let out = cli.run(&["serve"]).await;

    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("store.url"), "{}", out.stderr);
    assert!(out.stderr.contains("unreachable"), "{}", out.stderr);
    assert!(!out.stderr.contains("canary-password"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}
