//! `serve [--sandbox]`: the HTTP API.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fake_google::FakeGoogle;
use offline_access_crypto::KeyRing;
use offline_access_http::AppState;
use offline_access_store_file::FileStore;

use crate::compose::{self, GoogleSource, Stack};
use crate::config::Config;
use crate::error::{Failure, Outcome};
use crate::telemetry;

/// Runs `serve`.
pub(crate) async fn run(config: Config, sandbox: bool) -> Outcome {
    // Fail on configuration before anything else happens (and before logging is set up, so the one sentence on
    // stderr is all the operator sees).
    if !sandbox {
        config.require_client_secret_file()?;
        config.require_encryption_keys()?;
    }
    let http_config = compose::http_config(&config)?;
    let internal_config = compose::internal_config(&config)?;
    let tls = tls_config(&config)?;
    telemetry::init_tracing(&config.log.level, config.log.format)?;

    // Keep the sandbox's fake Google and temporary store alive for as long as the server runs.
    let mut sandbox_parts = None;
    let stack = if sandbox {
        let (stack, parts) = sandbox_stack(&config).await?;
        sandbox_parts = Some(parts);
        stack
    } else {
        let stack = compose::configured_stack(&config, true).await?;
        if config.store.migrate_on_start {
            match stack.store.migrate().await {
                Ok(Some(applied)) if applied > 0 => {
                    tracing::info!(applied, "applied the store's schema migrations");
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Failure::runtime(format!(
                        "cannot apply the store's schema migrations ({e}); run `offline-access migrate` to see \
                         why, or set store.migrate_on_start = false"
                    )));
                }
            }
        }
        stack
    };

    if let Err(e) = stack.google.verifier().prefetch().await {
        tracing::warn!(error = %e, "could not prefetch Google's signing keys; they will be fetched on first use");
    }
    // Grants whose revocation at Google failed during a forget are retried in the background.
    tokio::spawn(
        Arc::clone(&stack.service).retry_pending_revocations_every(Duration::from_secs(300)),
    );
    let render = telemetry::install_metrics()?;
    let risc = stack.google.security_events();
    if let Err(e) = risc.prefetch().await {
        tracing::info!(error = %e, "could not prefetch Google's RISC keys; they will be fetched on the first security event");
    }
    crate::outbox::spawn_delivery(
        &config,
        stack.store.events_port(),
        offline_access_http::shutdown_signal(),
    )?;
    let state = AppState::new(Arc::clone(&stack.service), http_config)
        .with_metrics(render)
        .with_risc(risc);
    let mut router = offline_access_http::router(state);
    if let Some(parts) = &sandbox_parts {
        // The sign-in page at `/`: only with --sandbox, so the normal router keeps answering 404 there.
        router = router.merge(crate::sandbox::router(
            Arc::clone(&stack.service),
            parts.fake.control().clone(),
            &parts.fake.base_url(),
            &parts.fake.client_id(),
            &config.google.allowed_azp,
        ));
    }
    let internal = match config.internal.listen {
        Some(listen) => Some(bind_internal(listen).await?),
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            Failure::runtime(format!(
                "cannot listen on {} ({e}); choose another address with listen (env OFFLINE_ACCESS_LISTEN)",
                config.listen
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::runtime(format!("cannot read the listening address: {e}")))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    announce(scheme, addr)?;
    tracing::info!(%addr, store = %stack.store.describe(), "serving the offline-access API");
    if let Some((listener, internal_addr)) = internal {
        announce_line(&format!("internal API listening on http://{internal_addr}"))?;
        tracing::info!(addr = %internal_addr, keys = ?internal_config.api_keys, "serving the internal API");
        let router = offline_access_http::internal_router(offline_access_http::InternalState::new(
            Arc::clone(&stack.service),
            internal_config,
        ));
        tokio::spawn(async move {
            if let Err(e) =
                offline_access_http::serve(listener, router, offline_access_http::shutdown_signal())
                    .await
            {
                tracing::error!(error = %e, "the internal API's server failed");
            }
        });
    }
    if let Some(parts) = &sandbox_parts {
        log_sandbox_instructions(&format!("{scheme}://{addr}"), &parts.fake.base_url());
    }

    let shutdown = offline_access_http::shutdown_signal();
    match tls {
        Some(tls) => offline_access_http::serve_tls(listener, router, tls, shutdown).await,
        None => offline_access_http::serve(listener, router, shutdown).await,
    }
    .map_err(|e| Failure::runtime(format!("the server failed: {e}")))?;
    tracing::info!("stopped");
    if let Some(parts) = sandbox_parts {
        let SandboxParts {
            fake,
            store_dir,
            created,
        } = parts;
        fake.shutdown().await;
        // Dropping the temporary directory removes the sandbox's credentials (their key is gone anyway), then
        // `store.path` if the sandbox created it.
        drop(store_dir);
        drop(created);
    }
    Ok(())
}

/// The rustls configuration from `tls.cert` and `tls.key`, when both are set.
pub(crate) fn tls_config(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, Failure> {
    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path, setting: &str| {
        std::fs::read(path).map_err(|e| {
            Failure::config(format!(
                "cannot read {setting} {} ({}); check the path",
                path.display(),
                e.kind()
            ))
        })
    };
    let cert_pem = read(cert, "tls.cert")?;
    let key_pem = zeroize::Zeroizing::new(read(key, "tls.key")?);
    offline_access_http::tls_config(&cert_pem, &key_pem)
        .map(Some)
        .map_err(|e| Failure::config(format!("tls.cert and tls.key cannot be used: {e}")))
}

/// Prints the `listening on` line (on stdout, flushed: scripts and tests wait for it).
fn announce(scheme: &str, addr: SocketAddr) -> Result<(), Failure> {
    announce_line(&format!("listening on {scheme}://{addr}"))
}

/// Prints one line on stdout, flushed.
fn announce_line(line: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::runtime(format!("cannot write to stdout: {e}")))
}

/// Binds the internal API's listener (`internal.listen`).
async fn bind_internal(
    listen: SocketAddr,
) -> Result<(tokio::net::TcpListener, SocketAddr), Failure> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Failure::runtime(format!(
            "cannot listen on {listen} for the internal API ({e}); choose another address with internal.listen \
             (env OFFLINE_ACCESS_INTERNAL__LISTEN)"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::runtime(format!("cannot read the internal API's address: {e}")))?;
    Ok((listener, addr))
}

/// What the sandbox runs besides the server.
struct SandboxParts {
    fake: FakeGoogle,
    /// Dropped before `created` (fields drop in order), so that `created` finds the directory empty.
    store_dir: tempfile::TempDir,
    created: CreatedDir,
}

/// `store.path` when the sandbox created it: removed at the end if it is empty then (a sandbox leaves nothing
/// behind, also when the server fails to start).
struct CreatedDir(Option<std::path::PathBuf>);

impl Drop for CreatedDir {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            // `remove_dir` removes only an empty directory: anything else put there is kept.
            let _ = std::fs::remove_dir(path);
        }
    }
}

/// An in-process fake Google, the configured keys or an ephemeral one, and a fresh store directory under
/// `store.path` that is removed when the server stops.
async fn sandbox_stack(config: &Config) -> Result<(Stack, SandboxParts), Failure> {
    let fake = FakeGoogle::start()
        .await
        .map_err(|e| Failure::runtime(format!("cannot start the sandbox's fake Google: {e}")))?;
    let keys = match &config.security.encryption_keys {
        Some(_) => compose::key_ring(config)?,
        None => {
            tracing::warn!(
                "sandbox: no security.encryption_keys configured, so tokens are encrypted with an ephemeral key \
                 that is lost when the server stops; never use --sandbox in production"
            );
            Arc::new(KeyRing::generate_ephemeral())
        }
    };
    let created = CreatedDir((!config.store.path.exists()).then(|| config.store.path.clone()));
    private_dir_all(&config.store.path).map_err(|e| {
        Failure::runtime(format!(
            "cannot create the store directory {} (store.path): {e}",
            config.store.path.display()
        ))
    })?;
    let store_dir = tempfile::Builder::new()
        .prefix("sandbox-")
        .tempdir_in(&config.store.path)
        .map_err(|e| {
            Failure::runtime(format!(
                "cannot create a sandbox store under {} (store.path): {e}",
                config.store.path.display()
            ))
        })?;
    let client_secret_json = fake.client_secret_json().to_string();
    // The sign-in page's codes come from the GIS popup, so they are exchanged with `redirect_uri=postmessage`
    // (which the fake also accepts for codes minted for Android with "", as Google does).
    let mut config = config.clone();
    if config.google.redirect_uri.is_empty() {
        config.google.redirect_uri = "postmessage".to_owned();
    } else if config.google.redirect_uri != "postmessage" {
        tracing::warn!(
            redirect_uri = %config.google.redirect_uri,
            "sandbox: google.redirect_uri is not \"postmessage\", so the sign-in page's codes will be refused \
             with redirect_uri_mismatch"
        );
    }
    let google = compose::google(
        &config,
        GoogleSource::Fake {
            client_secret_json: &client_secret_json,
            base_url: fake.base_url(),
        },
    )?;
    // Swept at once (it is new and empty), not on a background thread that could outlive a failed start and warn
    // about a directory removed under it.
    let store = FileStore::open(store_dir.path(), keys)
        .map(|s| compose::Store::File(Arc::new(s)))
        .map_err(|e| {
            Failure::runtime(format!(
                "cannot open the sandbox's store at {}: {e}",
                store_dir.path().display()
            ))
        })?;
    tracing::warn!(
        fake_google = %fake.base_url(),
        store = %store_dir.path().display(),
        "sandbox: Google is an in-process fake and the store is temporary (removed at shutdown)"
    );
    Ok((
        compose::stack(
            google,
            store,
            compose::settings(&config),
            config.webhooks.url.is_some(),
        ),
        SandboxParts {
            fake,
            store_dir,
            created,
        },
    ))
}

/// Tells the operator how to try the API with curl against the sandbox.
fn log_sandbox_instructions(server: &str, fake: &str) {
    tracing::info!(
        "sandbox: open {server}/ in a browser to sign in with the fake Google (the page needs a loopback origin: \
         localhost, 127.0.0.1 or [::1])"
    );
    tracing::info!("sandbox: try the API with curl:");
    tracing::info!(
        "  1. mint a server auth code as the Android app's Google Sign-In would: \
         curl -s -X POST {fake}/_fake/codes -H 'Content-Type: application/json' -d '{{\"email\":\"alice@example.com\"}}'"
    );
    tracing::info!(
        "  2. hand it to the server as the app does: \
         curl -s -X POST {server}/authcode -H 'X-Requested-With: curl' --data-urlencode 'authCode=CODE_FROM_STEP_1'"
    );
    tracing::info!(
        "  3. get the app's ID token: \
         curl -s -X POST {fake}/_fake/id_tokens -H 'Content-Type: application/json' -d '{{\"email\":\"alice@example.com\"}}'"
    );
    tracing::info!(
        "  4. call Drive on the user's behalf: \
         curl -s {server}/v1/me/drive/appfolder -H 'Authorization: Bearer ID_TOKEN_FROM_STEP_3'"
    );
    tracing::info!(
        "  5. let the user's access token expire and watch the server refresh it: \
         curl -s -X POST {fake}/_fake/users/SUB/expire; then repeat step 4; \
         curl -s {fake}/_fake/requests shows what reached Google"
    );
}

/// Creates a directory and its parents, readable only by this user (on Unix).
fn private_dir_all(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}
