//! PostgreSQL over TLS: libpq's `sslmode` values against a throwaway cluster with `ssl = on` and a certificate
//! for `localhost` signed by a CA made here (rcgen), and `PgOptions::ca_pem` (`store.ca_file`).

use std::io::{Read, Write};
use std::sync::OnceLock;

use offline_access_domain::{CredentialStore, StoreError};
use offline_access_store_postgres::testkit::{self, ClusterSetup, Environment, ThrowawayCluster};
use offline_access_store_postgres::{PgOptions, PgStore};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::support::keys;

/// The cluster with TLS on, and the PEM of the CA that signed its certificate.
struct TlsServer {
    cluster: ThrowawayCluster,
    ca_pem: String,
}

/// A new CA named `name`.
fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// This process's cluster with TLS on: its certificate names `localhost` only (not `127.0.0.1`).
fn server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let ca = ca("offline-access test CA");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &ca).unwrap();
        let setup = ClusterSetup::default()
            .file("server.crt", certificate.pem().as_bytes())
            .file("server.key", key.serialize_pem().as_bytes())
            .setting("ssl", "on")
            .setting("ssl_cert_file", "{dir}/server.crt")
            .setting("ssl_key_file", "{dir}/server.key");
        let binaries = Environment::of_process().server.unwrap();
        TlsServer {
            cluster: ThrowawayCluster::start(&binaries, &setup).unwrap(),
            ca_pem: ca.pem(),
        }
    })
}

/// A URL of the TLS cluster: `host` is what the certificate is checked against (the connection always goes to
/// 127.0.0.1), `application_name` finds the store's connections, `params` are appended.
fn url(host: &str, application_name: &str, params: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/postgres?hostaddr=127.0.0.1&application_name={application_name}{params}",
        server().cluster.port()
    )
}

/// A store on the TLS cluster at [`url`]`(host, application_name, params)`, trusting `ca_pem` (`store.ca_file`).
async fn connect(
    host: &str,
    application_name: &str,
    params: &str,
    ca_pem: Option<&str>,
) -> Result<PgStore, StoreError> {
    let options = PgOptions {
        pool_size: 1,
        lock_pool_size: 1,
        schema: Some(application_name.to_owned()),
        ca_pem: ca_pem.map(|pem| pem.as_bytes().to_vec()),
        ..PgOptions::default()
    };
    PgStore::connect(&url(host, application_name, params), keys(), options).await
}

/// The message of a connection refused over TLS: a configuration error (`Other`) naming TLS and the `sslmode`,
/// never "unreachable", never the password.
fn tls_refusal(result: Result<PgStore, StoreError>, sslmode: &str) -> String {
    match result {
        Err(StoreError::Other(message)) => {
            assert!(message.contains("TLS"), "{message}");
            assert!(message.contains(&format!("sslmode={sslmode}")), "{message}");
            assert!(!message.contains("unreachable"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
            message
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

/// Whether the connections of `application_name` use TLS, as the server sees them (`pg_stat_ssl`).
async fn ssl_of(application_name: &str) -> Vec<bool> {
    let client = testkit::raw_client(&format!("{}?sslmode=disable", server().cluster.url()))
        .await
        .unwrap();
    client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[cfg_attr(
    no_initdb,
    ignore = "no initdb: a cluster with TLS on cannot be started here"
)]
#[tokio::test]
async fn sslmode_require_encrypts_and_pg_stat_ssl_shows_it() {
    let _store = connect("127.0.0.1", "oa_tls_require", "&sslmode=require", None)
        .await
        .unwrap();
    assert_eq!(ssl_of("oa_tls_require").await, [true]);
}

#[cfg_attr(
    no_initdb,
    ignore = "no initdb: a cluster with TLS on cannot be started here"
)]
#[tokio::test]
async fn without_sslmode_tls_is_used_when_the_server_offers_it_and_sslmode_disable_still_works() {
    // libpq's default, prefer: TLS here, unauthenticated.
    let _prefer = connect("127.0.0.1", "oa_tls_prefer", "", None)
        .await
        .unwrap();
    assert_eq!(ssl_of("oa_tls_prefer").await, [true]);
    let _disable = connect("127.0.0.1", "oa_tls_disable", "&sslmode=disable", None)
        .await
        .unwrap();
    assert_eq!(ssl_of("oa_tls_disable").await, [false]);
}

#[cfg_attr(
    no_initdb,
    ignore = "no initdb: a cluster with TLS on cannot be started here"
)]
#[tokio::test]
async fn verify_full_with_the_right_ca_and_host_connects_and_the_store_works_over_tls() {
    let ca_pem = &server().ca_pem;
    let store = connect(
        "localhost",
        "oa_tls_verify_full",
        "&sslmode=verify-full",
        Some(ca_pem),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    let nobody = store.get(&crate::support::subject("7001")).await.unwrap();
    assert!(nobody.is_none());
    assert!(ssl_of("oa_tls_verify_full").await.iter().all(|ssl| *ssl));
}

#[cfg_attr(
    no_initdb,
    ignore = "no initdb: a cluster with TLS on cannot be started here"
)]
#[tokio::test]
async fn verify_full_with_another_ca_fails_with_an_error_naming_tls_not_unreachable() {
    let other_ca = ca("another CA").pem();
    let result = connect(
        "localhost",
        "oa_tls_other_ca",
        "&sslmode=verify-full",
        Some(&other_ca),
    )
    .await;
    let message = tls_refusal(result, "verify-full");
    assert!(message.contains("store.ca_file"), "{message}");
    assert!(message.contains("not signed by a trusted CA"), "{message}");
}

#[cfg_attr(
    no_initdb,
    ignore = "no initdb: a cluster with TLS on cannot be started here"
)]
#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_host_and_verify_ca_accepts_it() {
    let ca_pem = &server().ca_pem;
    // The certificate names localhost, not 127.0.0.1. A CA without sslmode means verify-full.
    for params in ["&sslmode=verify-full", ""] {
        let result = connect("127.0.0.1", "oa_tls_wrong_host", params, Some(ca_pem)).await;
        let message = tls_refusal(result, "verify-full");
        assert!(message.contains("names the host"), "{message}");
    }
    let _verify_ca = connect(
        "127.0.0.1",
        "oa_tls_verify_ca",
        "&sslmode=verify-ca",
        Some(ca_pem),
    )
    .await
    .unwrap();
    assert_eq!(ssl_of("oa_tls_verify_ca").await, [true]);
}

#[tokio::test]
async fn sslmode_require_against_a_server_without_tls_fails_naming_tls() {
    // Needs no PostgreSQL: a server that answers PostgreSQL's TLS request with "N" (no TLS), as ssl = off does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let mut stream = stream.unwrap();
            let mut request = [0_u8; 8];
            stream.read_exact(&mut request).unwrap();
            stream.write_all(b"N").unwrap();
        }
    });
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/db?sslmode=require");
    let message = tls_refusal(
        PgStore::connect(&url, keys(), PgOptions::default()).await,
        "require",
    );
    assert!(message.contains("does not support TLS"), "{message}");
}
