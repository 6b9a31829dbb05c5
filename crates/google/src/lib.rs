//! Google adapter of offline-access: the token endpoint (code exchange, refresh, revoke), ID-token verification
//! against Google's JWKS, Drive v3 in the user's `appDataFolder`, and any allowed Google API for the internal
//! API's proxy.
//!
//! Build one [`Google`] from a [`GoogleConfig`] at start-up; it holds one pooled HTTP client (rustls on
//! aws-lc-rs, keep-alive, connect and request timeouts, no redirects, no automatic retries, no decompression)
//! shared by the port implementations it hands out:
//! - [`Google::tokens`] → [`GoogleTokens`], a [`offline_access_domain::TokenEndpoint`];
//! - [`Google::verifier`] → [`JwksVerifier`], an [`offline_access_domain::IdTokenVerifier`];
//! - [`Google::drive`] → [`GoogleDrive`], a [`offline_access_domain::Drive`];
//! - [`Google::api`] → [`GoogleApiProxy`], a [`offline_access_domain::GoogleApi`] (the internal API's proxy),
//!   with the host allowlist ([`ProxyHosts`]) and header filters ([`filter_request_headers`],
//!   [`filter_response_headers`]) the HTTP adapter applies too;
//! - [`Google::security_events`] → [`RiscVerifier`], an
//!   [`offline_access_domain::risc::SecurityEventVerifier`] (Cross-Account Protection's Security Event Tokens).
//!
//! [`RiscStreams`] manages the RISC stream (register the receiver, verify, status) as a service account
//! ([`ServiceAccountKey`]); it needs no [`Google`].
//!
//! See `docs/google-adapter.md` for the endpoints, the error mapping and the verification rules.

mod config;
mod drive;
mod http;
mod jwks;
mod proxy;
mod risc;
mod tokens;
mod verify;

use std::sync::Arc;

use offline_access_domain::{Clock, SystemClock};
use secrecy::ExposeSecret;

pub use config::{ClientKind, ClientSecret, ConfigError, GoogleConfig, MAX_LEEWAY};
pub use drive::{
    FILE_FIELDS, GoogleDrive, LIST_FIELDS, MAX_NAME_CHARS, PAGE_SIZE, is_valid_file_id,
};
pub use http::MAX_DOWNLOAD_TIME;
pub use jwks::{DEFAULT_TTL, FAILURE_BACKOFF, MAX_TTL, UNKNOWN_KID_REFETCH_INTERVAL};
pub use proxy::{
    DEFAULT_PROXY_HOSTS, GoogleApiProxy, ProxyHosts, filter_request_headers,
    filter_response_headers,
};
pub use risc::{
    Delivery, MAX_JTI_LEN, MAX_SET_LEN, PUSH_DELIVERY_METHOD, RISC_AUDIENCE, RiscApiError,
    RiscStreams, RiscVerifier, SERVICE_ACCOUNT_JWT_LIFETIME, ServiceAccountError,
    ServiceAccountKey, StreamConfig, StreamStatus,
};
pub use tokens::GoogleTokens;
pub use verify::{GOOGLE_ISSUERS, JwksVerifier, MAX_LIFETIME, MAX_TOKEN_LEN};

/// The Google adapter: one pooled HTTP client and the ports built on it.
#[derive(Debug, Clone)]
pub struct Google {
    tokens: Arc<GoogleTokens>,
    verifier: Arc<JwksVerifier>,
    drive: Arc<GoogleDrive>,
    api: Arc<GoogleApiProxy>,
    security_events: Arc<RiscVerifier>,
}

impl Google {
    /// Builds the adapter with the system clock for the key cache.
    ///
    /// # Errors
    /// [`ConfigError`] naming the bad setting: empty client ID or secret, leeway over 300 s, zero timeouts,
    /// a malformed `base_url` or CA, or a TLS set-up failure.
    pub fn new(config: GoogleConfig) -> Result<Self, ConfigError> {
        Self::new_with_clock(config, Arc::new(SystemClock))
    }

    /// Builds the adapter with `clock` driving the JWKS cache (expiry, refetch rate limit, grace).
    /// ID-token claims are always checked against the `now` passed to `verify`.
    ///
    /// # Errors
    /// As [`Google::new`].
    pub fn new_with_clock(
        config: GoogleConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let endpoints = config::Endpoints::resolve(config.base_url.as_deref())?;
        let client = http::build_client(&config)?;
        let tokens = Arc::new(GoogleTokens {
            http: client.clone(),
            token_url: endpoints.token,
            revoke_url: endpoints.revoke,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.expose_secret().into(),
            redirect_uri: config.redirect_uri.clone(),
        });
        let verifier = Arc::new(JwksVerifier {
            cache: jwks::KeyCache::new(
                client.clone(),
                endpoints.certs,
                "jwks",
                Arc::clone(&clock),
                config.jwks_grace,
            ),
            rules: verify::Rules {
                client_id: config.client_id.clone(),
                allowed_azp: config.allowed_azp.clone(),
                hosted_domain: config.hosted_domain.clone(),
                leeway: config.leeway,
            },
            verified: verify::VerifiedTokens::new(config.verified_token_cache),
        });
        let appfolder =
            drive::appfolder_url(&endpoints.drive_files).map_err(|_| ConfigError::Invalid {
                key: "base_url",
                reason: "no Drive URL can be built from it".into(),
            })?;
        let drive = Arc::new(GoogleDrive {
            http: client.clone(),
            files: endpoints.drive_files,
            upload: endpoints.upload_files,
            appfolder,
            timeout: config.request_timeout,
        });
        let security_events = Arc::new(RiscVerifier::new(
            client.clone(),
            endpoints.risc_configuration,
            clock,
            config.jwks_grace,
            risc::SetRules {
                audiences: std::iter::once(&config.client_id)
                    .chain(&config.allowed_azp)
                    .cloned()
                    .collect(),
                leeway: config.leeway,
            },
        ));
        let api = Arc::new(GoogleApiProxy {
            http: client,
            hosts: config.proxy_hosts.clone(),
            base: endpoints.proxy_base,
            timeout: config.request_timeout,
        });
        Ok(Self {
            tokens,
            verifier,
            drive,
            api,
            security_events,
        })
    }

    /// The token endpoint (exchange, refresh, revoke).
    #[must_use]
    pub fn tokens(&self) -> Arc<GoogleTokens> {
        Arc::clone(&self.tokens)
    }

    /// The ID-token verifier (call [`JwksVerifier::prefetch`] at start-up).
    #[must_use]
    pub fn verifier(&self) -> Arc<JwksVerifier> {
        Arc::clone(&self.verifier)
    }

    /// Drive v3 in `appDataFolder`.
    #[must_use]
    pub fn drive(&self) -> Arc<GoogleDrive> {
        Arc::clone(&self.drive)
    }

    /// Any Google API on `proxy_hosts`, for the internal API's proxy.
    #[must_use]
    pub fn api(&self) -> Arc<GoogleApiProxy> {
        Arc::clone(&self.api)
    }

    /// The verifier of Google's Security Event Tokens (RISC): `aud` must be the client ID or one of
    /// `allowed_azp`; `iat` at most `leeway` ahead.
    #[must_use]
    pub fn security_events(&self) -> Arc<RiscVerifier> {
        Arc::clone(&self.security_events)
    }
}
