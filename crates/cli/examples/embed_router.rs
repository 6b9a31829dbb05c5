//! Mounting offline-access in an existing axum application.
//!
//! The application keeps its own routes and nests offline-access's public API under `/offline` (`.merge()` puts
//! it at the root instead). The router's state is built from the use cases, which run over your store and the
//! Google adapter. Against an in-process fake Google, with no network:
//!
//! ```sh
//! cargo run --example embed_router
//! ```

mod common;

use std::error::Error;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use fake_google::{CodeRequest, FakeGoogle, IdTokenRequest};
use offline_access_http::{AppState, HttpConfig};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run().await
}

/// Builds the application, serves it on a loopback port, signs a user in through it as the Android app does, and
/// reads the user and their Drive folder back through it.
pub async fn run() -> Result<(), Box<dyn Error>> {
    let world = common::World::on(FakeGoogle::start().await?)?;
    let (fake, service) = (&world.fake, &world.service);

    // Your application: its own routes, and offline-access under /offline.
    let state = AppState::new(Arc::clone(service), HttpConfig::default());
    let app = Router::new()
        .route("/", get(|| async { "my application" }))
        .nest("/offline", offline_access_http::router(state));

    // `offline_access_http::serve` gives handlers the peer address (the sign-in rate limit uses it); with
    // `axum::serve`, pass `app.into_make_service_with_connect_info::<std::net::SocketAddr>()`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(offline_access_http::serve(listener, app, async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::builder().no_proxy().build()?;
    // The Android app: a server auth code from Google for the web client ID, POSTed with X-Requested-With ...
    let minted = fake
        .mint_code(CodeRequest::new("alice@example.com"))
        .await?;
    let signed_in: Value = http
        .post(format!("{base}/offline/authcode"))
        .header("X-Requested-With", "com.example.app")
        .form(&[("authCode", minted.code.as_str())])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "signed in {} (offline access: {})",
        signed_in["user"]["email"], signed_in["offline_access"]
    );
    // ... then its ID token as the Bearer of every /v1/me route.
    let id_token = fake
        .mint_id_token(IdTokenRequest::new("alice@example.com"))
        .await?;
    let as_alice = |path: &str| {
        http.get(format!("{base}/offline{path}"))
            .bearer_auth(&id_token)
            .send()
    };
    let me: Value = as_alice("/v1/me").await?.error_for_status()?.json().await?;
    let folder: Value = as_alice("/v1/me/drive/appfolder")
        .await?
        .error_for_status()?
        .json()
        .await?;
    let home = http.get(format!("{base}/")).send().await?.text().await?;
    println!("/v1/me: {me}\nappDataFolder: {folder}\n/: {home}");

    let _ = stop.send(());
    server.await??;
    if me["user"]["sub"] != signed_in["user"]["sub"] || me["offline_access"] != true {
        return Err(format!("unexpected /v1/me answer: {me}").into());
    }
    if folder["id"].as_str().is_none() || home != "my application" {
        return Err(format!("unexpected answers: {folder} / {home}").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_example_runs_against_the_fake() {
        super::run().await.unwrap();
    }
}
