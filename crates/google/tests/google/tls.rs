//! Outbound TLS: certificates are always verified; a fake Google's CA is trusted only when configured.
//! Fixtures in `tests/tls/`: a test CA and a server certificate for 127.0.0.1 signed by it (CA key discarded).

use std::sync::Arc;

use offline_access_domain::{AuthCode, TokenEndpoint, TokenError, VerifyError};
use offline_access_google::{ConfigError, Google};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::MockServer;

use crate::support::{KEY1, KID1, config, jwks};

const CA_PEM: &[u8] = include_bytes!("../tls/ca.pem");
const SERVER_PEM: &[u8] = include_bytes!("../tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../tls/server.key");

/// An HTTPS server on 127.0.0.1 answering every request with Google's JWKS.
async fn https_jwks_server() -> String {
    let certs = rustls_pemfile::certs(&mut &*SERVER_PEM)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &*SERVER_KEY)
        .unwrap()
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = serde_json::to_vec(&jwks(&[(&KEY1, KID1)])).unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(socket).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=300\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("https://127.0.0.1:{}", addr.port())
}

#[tokio::test]
async fn a_fake_google_behind_the_configured_ca_is_trusted() {
    let placeholder = MockServer::start().await;
    let mut config = config(&placeholder);
    config.base_url = Some(https_jwks_server().await);
    config.extra_root_ca_pem = Some(CA_PEM.to_vec());
    let google = Google::new(config).unwrap();
    google.verifier().prefetch().await.unwrap();
}

#[tokio::test]
async fn a_certificate_from_an_unconfigured_ca_is_refused() {
    let placeholder = MockServer::start().await;
    let mut config = config(&placeholder);
    config.base_url = Some(https_jwks_server().await);
    let google = Google::new(config).unwrap();
    assert_eq!(
        google.verifier().prefetch().await.unwrap_err(),
        VerifyError::KeysUnavailable
    );
    assert_eq!(
        google
            .tokens()
            .exchange_code(&AuthCode::parse("4/0code").unwrap())
            .await
            .unwrap_err(),
        TokenError::Unavailable { retry_after: None }
    );
}

#[tokio::test]
async fn an_extra_ca_that_is_not_pem_is_a_configuration_error() {
    let placeholder = MockServer::start().await;
    for bad in [b"not a certificate".to_vec(), Vec::new()] {
        let mut config = config(&placeholder);
        config.extra_root_ca_pem = Some(bad);
        assert!(matches!(
            Google::new(config).unwrap_err(),
            ConfigError::Invalid {
                key: "extra_root_ca_pem",
                ..
            }
        ));
    }
}
