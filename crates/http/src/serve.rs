//! Serving: the accept loop for plain HTTP and for HTTPS served directly with rustls (aws-lc-rs), for
//! `tls.cert`/`tls.key`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a certificate and key could not be made into a TLS configuration. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The certificate file holds no PEM `CERTIFICATE` block.
    #[error("the certificate file holds no PEM certificate")]
    NoCertificate,
    /// The key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("the key file holds no PEM private key")]
    NoKey,
    /// rustls refused the pair (e.g. the key does not match the certificate, or an unsupported key type).
    #[error("the certificate and key were refused: {0}")]
    Rejected(String),
}

/// A rustls server configuration (aws-lc-rs, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`) from a PEM certificate
/// chain (leaf first) and a PEM private key.
///
/// # Errors
/// [`TlsConfigError`] naming what is wrong with the files.
pub fn tls_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsConfigError::NoKey)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rejected(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsConfigError::Rejected(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over HTTPS on `listener` until `shutdown` completes, then finishes the requests in flight
/// (for at most [`SHUTDOWN_GRACE`]). Handlers see the peer address (`ConnectInfo<SocketAddr>`) as with
/// [`crate::serve`]. Handshakes are bounded by a timeout; a failed handshake only closes that connection.
///
/// # Errors
/// None in practice: accept errors (e.g. too many open files) are logged and retried.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_connections(listener, router, Some(TlsAcceptor::from(tls)), shutdown).await
}

/// How long a shutdown waits for requests in flight before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A client must send its request headers within this time (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// The accept loop behind [`crate::serve`] and [`serve_tls`]: HTTP/1.1 and HTTP/2, the peer address as
/// `ConnectInfo<SocketAddr>`, a header read timeout, and a bounded graceful shutdown.
pub(crate) async fn serve_connections(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let service = router
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let service = TowerToHyperService::new(service);
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                return;
                            }
                        };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            "requests still in flight after the shutdown grace; closing them"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_pem_is_named_not_echoed() {
        assert!(matches!(
            tls_config(b"nope", b"nope"),
            Err(TlsConfigError::NoCertificate)
        ));
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let pem = cert.cert.pem();
        assert!(matches!(
            tls_config(pem.as_bytes(), b"-----BEGIN SECRET-----"),
            Err(TlsConfigError::NoKey)
        ));
        let other = rcgen::KeyPair::generate().unwrap();
        let err = tls_config(pem.as_bytes(), other.serialize_pem().as_bytes()).unwrap_err();
        assert!(matches!(err, TlsConfigError::Rejected(_)), "{err}");
        assert!(tls_config(pem.as_bytes(), cert.signing_key.serialize_pem().as_bytes()).is_ok());
    }
}
