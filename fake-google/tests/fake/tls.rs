//! `--tls`: HTTPS with a generated CA, its PEM served at `/_fake/ca.pem`.

use fake_google::{FakeConfig, FakeGoogle};

#[tokio::test]
async fn tls_serves_https_trusted_through_the_generated_ca() {
    let fake = FakeGoogle::start_with(FakeConfig::default().tls(true))
        .await
        .unwrap();
    assert!(fake.base_url().starts_with("https://127.0.0.1:"));
    let pem = fake.ca_pem().expect("a CA when serving TLS");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/_fake/ca.pem", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), pem);
    let resp = client
        .get(format!("{}/oauth2/v3/certs", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A client that does not trust the CA is refused.
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("{}/oauth2/v3/certs", fake.base_url()))
            .send()
            .await
            .is_err()
    );
}
