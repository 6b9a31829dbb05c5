//! TLS to PostgreSQL: libpq's `sslmode` values over rustls (aws-lc-rs, the workspace's one crypto stack).
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require` and no root certificates, so the store takes
//! `sslmode` (and `sslrootcert`) out of `store.url` before the driver parses it, and decides here what the TLS
//! connector checks:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | – |
//! | `prefer` (libpq's default) | when the server offers it, else plain | not checked (chain checked when a CA is given) |
//! | `require` | always | not checked (chain checked when a CA is given, as libpq does) |
//! | `verify-ca` | always | signed by a trusted CA |
//! | `verify-full` | always | signed by a trusted CA **and** naming the host of `store.url` |
//!
//! The trusted CAs are [`PgOptions::ca_pem`](crate::PgOptions::ca_pem) (`store.ca_file`), or the file named by
//! `sslrootcert` in the URL, or else the platform's roots. A CA given without any `sslmode` means `verify-full`
//! (libpq would stay at `prefer`, which falls back to plain TCP when the server offers no TLS);
//! `sslrootcert=system` means the platform's roots and `verify-full`, as in libpq 16.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, as this store honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain otherwise.
    Prefer,
    /// TLS always; the certificate is not authenticated unless a CA is given.
    Require,
    /// TLS always; the certificate chain must lead to a trusted CA.
    VerifyCa,
    /// TLS always; the chain must lead to a trusted CA and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    /// The mode named `value` in a connection string.
    fn parse(value: &str) -> Result<SslMode, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => Err(
                "sslmode=allow is not supported (it tries plain TCP first): use prefer, require or verify-full"
                    .to_owned(),
            ),
            other => Err(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            )),
        }
    }

    /// The mode tokio-postgres runs (it does the TLS request; the checks are the connector's).
    pub(crate) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// Where the trusted CAs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Roots {
    /// PEM certificates given in the options (`store.ca_file`).
    Pem(Vec<u8>),
    /// The file named by `sslrootcert` in the URL.
    File(String),
    /// The platform's trusted roots.
    Platform,
}

/// The TLS part of `store.url`, taken out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// The mode in force (after the defaults).
    pub(crate) mode: SslMode,
    /// Where the trusted CAs come from.
    roots: Roots,
    /// Whether the certificate chain is checked.
    check_chain: bool,
}

impl TlsSettings {
    /// Splits `sslmode` and `sslrootcert` out of `url` (URL or `key=value` form): the rest for the driver, and the
    /// settings these parameters and `ca_pem` make.
    ///
    /// # Errors
    /// A message (never containing the URL) for an unknown `sslmode`, a repeated parameter, both `sslrootcert`
    /// and `ca_pem`, or `sslrootcert=system` with a mode weaker than `verify-full`.
    pub(crate) fn from_url(
        url: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<(String, TlsSettings), String> {
        let (rest, params) = take_params(url, &["sslmode", "sslrootcert"])?;
        let mut sslmode = None;
        let mut root_file = None;
        for (key, value) in params {
            let slot = if key == "sslmode" {
                &mut sslmode
            } else {
                &mut root_file
            };
            if slot.replace(value).is_some() {
                return Err(format!("{key} is given twice"));
            }
        }
        let system = root_file.as_deref() == Some("system");
        let roots = match (ca_pem, root_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "both store.ca_file and sslrootcert in the URL name the trusted CAs: keep one"
                        .to_owned(),
                );
            }
            (Some(pem), None) => Roots::Pem(pem.to_vec()),
            // libpq 16's special value: the platform's roots, and verify-full.
            (None, Some(_)) if system => Roots::Platform,
            (None, Some(file)) => Roots::File(file),
            (None, None) => Roots::Platform,
        };
        let ca_given = roots != Roots::Platform;
        let mode = match sslmode {
            Some(value) => SslMode::parse(&value)?,
            None if ca_given || system => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if system && mode != SslMode::VerifyFull {
            return Err(format!(
                "sslrootcert=system needs sslmode=verify-full (as libpq has it), not sslmode={mode}"
            ));
        }
        let check_chain = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) || ca_given;
        Ok((
            rest,
            TlsSettings {
                mode,
                roots,
                check_chain,
            },
        ))
    }

    /// The connector for the pools: it checks what the mode asks for.
    ///
    /// # Errors
    /// When the CA certificates cannot be read, hold no certificate, or the platform has none.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, self.check_chain) {
            (SslMode::VerifyFull, _) => WebPkiServerVerifier::builder_with_provider(
                Arc::new(self.root_store()?),
                provider.clone(),
            )
            .build()
            .map_err(|e| format!("the trusted CAs cannot be used: {e}"))?,
            (_, true) | (SslMode::VerifyCa, _) => Arc::new(ChainOnly {
                roots: Some(Arc::new(self.root_store()?)),
                algorithms,
            }),
            // Never used (disable), or used without authenticating the server (libpq's prefer and require).
            (SslMode::Disable | SslMode::Prefer | SslMode::Require, false) => Arc::new(ChainOnly {
                roots: None,
                algorithms,
            }),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up failed: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// The trusted CAs.
    fn root_store(&self) -> Result<RootCertStore, String> {
        let certificates = match &self.roots {
            Roots::Pem(pem) => pem_certificates(pem, "store.ca_file")?,
            Roots::File(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("sslrootcert `{path}` cannot be read: {e}"))?;
                pem_certificates(&pem, &format!("sslrootcert `{path}`"))?
            }
            Roots::Platform => {
                let found = rustls_native_certs::load_native_certs();
                if found.certs.is_empty() {
                    return Err(format!(
                        "sslmode={} needs trusted CAs and the platform has none ({}): set store.ca_file",
                        self.mode,
                        found
                            .errors
                            .first()
                            .map_or_else(|| "no certificate found".to_owned(), ToString::to_string)
                    ));
                }
                found.certs
            }
        };
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(certificates);
        if added == 0 {
            return Err("none of the trusted CA certificates could be parsed".to_owned());
        }
        Ok(store)
    }

    /// The settings in force, for messages: `sslmode=...` and, when the chain is checked, where the CAs come from.
    pub(crate) fn describe(&self) -> String {
        if !self.check_chain {
            return format!("sslmode={}", self.mode);
        }
        let roots = match self.roots {
            Roots::Pem(_) => "store.ca_file",
            Roots::File(_) => "sslrootcert",
            Roots::Platform => "the platform's trusted roots",
        };
        format!("sslmode={}, CAs from {roots}", self.mode)
    }
}

/// The certificates in PEM text `pem` (from `source`, for messages).
fn pem_certificates(pem: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{source} is not PEM: {e}"))?;
    if certificates.is_empty() {
        return Err(format!(
            "{source} holds no certificate (expected `-----BEGIN CERTIFICATE-----` blocks)"
        ));
    }
    Ok(certificates)
}

/// The check of the server's certificate for every mode but `verify-full` (rustls' own verifier's job): with
/// `roots`, the chain must lead to one of them (`verify-ca`, and `prefer`/`require` given a CA) and the host name
/// is not checked; without, the certificate is not authenticated (libpq's `prefer` and `require`), and the
/// connection is still encrypted, the server proving it holds the certificate's key.
#[derive(Debug)]
struct ChainOnly {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let certificate = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &certificate,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What went wrong with TLS in a driver error, or `None` when it is not a TLS failure.
///
/// tokio-postgres reports every TLS failure, the handshake's and a server without TLS under `sslmode=require`, as
/// `error performing TLS handshake`, with the cause (rustls' error inside an `io::Error`) as its source.
pub(crate) fn tls_failure(error: &tokio_postgres::Error) -> Option<String> {
    if !error
        .to_string()
        .starts_with("error performing TLS handshake")
    {
        return None;
    }
    let cause = std::error::Error::source(error).map_or_else(String::new, ToString::to_string);
    let hint = match rustls_error(error) {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => {
            " (sslmode=verify-full checks that the certificate names the host of store.url; verify-ca does not)"
        }
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => " (the server's certificate is not signed by a trusted CA)",
        Some(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => " (the server's certificate has expired)",
        Some(_) => "",
        None if cause.contains("does not support TLS") => {
            " (turn ssl on at the server, or use sslmode=prefer or disable)"
        }
        None => "",
    };
    Some(format!("{cause}{hint}"))
}

/// The rustls error somewhere in `error`'s causes.
fn rustls_error(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = next {
        if let Some(found) = cause.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        // `io::Error::source` skips the error it wraps: look inside.
        if let Some(found) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        next = cause.source();
    }
    None
}

/// Takes the parameters named in `keys` out of a connection string (`postgres://...?k=v&...` or `k=v k=v`): the
/// string without them (everything else as it was), and their values in order.
fn take_params(raw: &str, keys: &[&str]) -> Result<(String, Vec<(String, String)>), String> {
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        let Some((head, query)) = raw.split_once('?') else {
            return Ok((raw.to_owned(), Vec::new()));
        };
        let mut kept = Vec::new();
        let mut taken = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key)?;
            if keys.contains(&key.as_str()) {
                taken.push((key, decode(value)?));
            } else if !pair.is_empty() {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{}", kept.join("&"))
        };
        return Ok((rest, taken));
    }
    let mut rest = String::with_capacity(raw.len());
    let mut taken = Vec::new();
    for pair in key_values(raw)? {
        if keys.contains(&pair.key.as_str()) {
            taken.push((pair.key, pair.value));
        } else {
            if !rest.is_empty() {
                rest.push(' ');
            }
            rest.push_str(&raw[pair.span.0..pair.span.1]);
        }
    }
    Ok((rest, taken))
}

/// Percent-decodes one URL query component.
fn decode(component: &str) -> Result<String, String> {
    percent_decode(component)
        .ok_or_else(|| "store.url has an invalid %-escape in its query".to_owned())
}

/// `%XX` decoding (and `+` as is: the driver does the same), or `None` for bad escapes or UTF-8.
fn percent_decode(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = component.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One `key=value` of a libpq connection string, with where it stands in the string.
struct KeyValue {
    key: String,
    value: String,
    /// Byte range of the whole pair.
    span: (usize, usize),
}

/// The pairs of a libpq `key=value` connection string (spaces around `=` allowed; values bare or single-quoted,
/// with `\` escaping the next character).
fn key_values(raw: &str) -> Result<Vec<KeyValue>, String> {
    let bad = || "store.url is not a valid `key=value` connection string".to_owned();
    let chars: Vec<(usize, char)> = raw.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(raw.len(), |&(at, _)| at);
    let skip_spaces = |mut i: usize| {
        while chars.get(i).is_some_and(|(_, c)| c.is_whitespace()) {
            i += 1;
        }
        i
    };
    let mut pairs = Vec::new();
    let mut i = skip_spaces(0);
    while i < chars.len() {
        let start = end_of(i);
        let mut key = String::new();
        while let Some(&(_, c)) = chars.get(i) {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            i += 1;
        }
        i = skip_spaces(i);
        if key.is_empty() || chars.get(i).map(|&(_, c)| c) != Some('=') {
            return Err(bad());
        }
        i = skip_spaces(i + 1);
        let mut value = String::new();
        if chars.get(i).map(|&(_, c)| c) == Some('\'') {
            i += 1;
            loop {
                match chars.get(i).map(|&(_, c)| c) {
                    None => return Err(bad()),
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        value.push(chars.get(i + 1).ok_or_else(bad)?.1);
                        i += 2;
                    }
                    Some(c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&(_, c)) = chars.get(i) {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    value.push(chars.get(i + 1).ok_or_else(bad)?.1);
                    i += 2;
                } else {
                    value.push(c);
                    i += 1;
                }
            }
        }
        pairs.push(KeyValue {
            key,
            value,
            span: (start, end_of(i)),
        });
        i = skip_spaces(i);
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, ca: Option<&[u8]>) -> (String, TlsSettings) {
        TlsSettings::from_url(url, ca).unwrap()
    }

    #[test]
    fn sslmode_is_taken_out_of_a_url_and_the_rest_kept_as_it_was() {
        let (rest, tls) = settings(
            "postgres://app:p%40ss@db:5432/x?application_name=a%20b&sslmode=verify-full&connect_timeout=3",
            None,
        );
        assert_eq!(
            rest,
            "postgres://app:p%40ss@db:5432/x?application_name=a%20b&connect_timeout=3"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.roots, Roots::Platform);
        let (rest, tls) = settings("postgresql://db/x?sslmode=require", None);
        assert_eq!(rest, "postgresql://db/x");
        assert_eq!(tls.mode, SslMode::Require);
        assert!(!tls.check_chain);
    }

    #[test]
    fn sslmode_is_taken_out_of_a_key_value_string_with_quotes_and_spaces() {
        let (rest, tls) = settings(
            r"host=db sslmode = 'verify-ca' password='it\'s' user=app sslrootcert=/etc/ca\ 1.pem",
            None,
        );
        assert_eq!(rest, r"host=db password='it\'s' user=app");
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.roots, Roots::File("/etc/ca 1.pem".to_owned()));
        assert!(tls.check_chain);
    }

    #[test]
    fn the_default_is_prefer_and_a_ca_alone_means_verify_full() {
        let (rest, tls) = settings("postgres://db/x", None);
        assert_eq!(
            (rest.as_str(), tls.mode),
            ("postgres://db/x", SslMode::Prefer)
        );
        assert!(!tls.check_chain);
        let (_, tls) = settings("postgres://db/x", Some(b"pem"));
        assert_eq!(tls.mode, SslMode::VerifyFull);
        // require with a CA checks the chain, as libpq does.
        let (_, tls) = settings("postgres://db/x?sslmode=require", Some(b"pem"));
        assert_eq!(tls.mode, SslMode::Require);
        assert!(tls.check_chain);
        // libpq 16: the platform's roots, verify-full, nothing weaker.
        let (_, tls) = settings("host=db sslrootcert=system", None);
        assert_eq!(
            (tls.mode, tls.roots),
            (SslMode::VerifyFull, Roots::Platform)
        );
        let weaker = TlsSettings::from_url("host=db sslrootcert=system sslmode=require", None);
        assert!(weaker.unwrap_err().contains("verify-full"));
    }

    #[test]
    fn unknown_or_repeated_values_are_refused_with_a_reason() {
        for (url, expected) in [
            ("postgres://db/x?sslmode=verify", "not one of"),
            ("postgres://db/x?sslmode=allow", "not supported"),
            ("postgres://db/x?sslmode=require&sslmode=disable", "twice"),
            ("host=db sslmode='require", "not a valid"),
            ("postgres://db/x?sslmode=%zz", "%-escape"),
        ] {
            let error = TlsSettings::from_url(url, None).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
        }
        let both =
            TlsSettings::from_url("postgres://db/x?sslrootcert=/ca.pem", Some(b"pem")).unwrap_err();
        assert!(both.contains("store.ca_file"), "{both}");
    }

    #[test]
    fn driver_modes_leave_the_checks_to_the_connector() {
        use tokio_postgres::config::SslMode as Driver;
        assert_eq!(SslMode::Disable.driver_mode(), Driver::Disable);
        assert_eq!(SslMode::Prefer.driver_mode(), Driver::Prefer);
        for strict in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(strict.driver_mode(), Driver::Require);
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_naming_it() {
        let (_, tls) = settings(
            "postgres://db/x?sslmode=verify-full",
            Some(b"not a certificate"),
        );
        let error = tls.connector().err().unwrap();
        assert!(error.contains("store.ca_file"), "{error}");
    }
}
