//! Sign-in with a server auth code.

use fake_google::CodeRequest;
use offline_access_tests::{TestApp, contains};

#[tokio::test]
async fn first_sign_in_exchanges_verifies_and_stores_the_refresh_token_encrypted() {
    let app = TestApp::spawn().await;
    let minted = app.mint_code(CodeRequest::new("alice@example.com")).await;

    let response = app.post_authcode(&minted.code).await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["sub"], minted.sub.as_str());
    assert_eq!(body["user"]["email"], "alice@example.com");
    assert_eq!(body["user"]["email_verified"], true);
    assert_eq!(body["offline_access"], true);
    assert_eq!(body["new_user"], true);
    assert!(
        body["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "https://www.googleapis.com/auth/drive.appdata")
    );
    assert_eq!(app.token_calls("authorization_code").await, 1);

    let stored = app.stored(&minted.sub).await.expect("credential stored");
    let refresh = stored.refresh_token.expect("refresh token stored");
    assert!(refresh.expose_secret().starts_with("1//"));
    let on_disk = app.store_bytes();
    assert!(!on_disk.is_empty());
    assert!(
        !contains(&on_disk, refresh.expose_secret()),
        "refresh token in plaintext on disk"
    );
    let access = stored.access.expect("access token cached");
    assert!(
        !contains(&on_disk, access.token.expose_secret()),
        "access token in plaintext on disk"
    );
}

#[tokio::test]
async fn second_sign_in_returns_no_refresh_token_and_keeps_the_stored_one() {
    let app = TestApp::spawn().await;
    let first = app.sign_in("bob@example.com").await;
    let sub = first["user"]["sub"].as_str().unwrap().to_owned();
    let refresh_before = app
        .stored(&sub)
        .await
        .unwrap()
        .refresh_token
        .unwrap()
        .expose_secret()
        .to_owned();

    let second = app.sign_in("bob@example.com").await;

    assert_eq!(second["new_user"], false);
    assert_eq!(second["offline_access"], true);
    assert_eq!(app.token_calls("authorization_code").await, 2);
    let refresh_after = app.stored(&sub).await.unwrap().refresh_token.unwrap();
    assert_eq!(refresh_after.expose_secret(), refresh_before);
}

#[tokio::test]
async fn a_post_without_x_requested_with_is_refused_with_no_call_to_google() {
    let app = TestApp::spawn().await;
    let minted = app.mint_code(CodeRequest::new("carol@example.com")).await;

    let response = app
        .http
        .post(format!("{}/authcode", app.url))
        .form(&[("authCode", minted.code.as_str())])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "missing_csrf_header");
    assert_eq!(app.calls_to("token").await, 0);
    assert!(app.stored(&minted.sub).await.is_none());
}

#[tokio::test]
async fn a_json_body_works_like_the_form() {
    let app = TestApp::spawn().await;
    let minted = app.mint_code(CodeRequest::new("dan@example.com")).await;

    let response = app
        .http
        .post(format!("{}/authcode", app.url))
        .header("X-Requested-With", "com.example.app")
        .json(&serde_json::json!({ "authCode": minted.code }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert!(app.stored(&minted.sub).await.is_some());
}

#[tokio::test]
async fn a_replayed_code_is_invalid_grant_but_an_immediate_retry_gets_the_first_answer() {
    let app = TestApp::spawn().await;
    let minted = app.mint_code(CodeRequest::new("erin@example.com")).await;

    let first = app.post_authcode(&minted.code).await;
    let retry = app.post_authcode(&minted.code).await;

    assert_eq!(first.status(), 200);
    assert_eq!(retry.status(), 200);
    assert_eq!(
        first.json::<serde_json::Value>().await.unwrap(),
        retry.json::<serde_json::Value>().await.unwrap()
    );
    assert_eq!(app.token_calls("authorization_code").await, 1);
}

#[tokio::test]
async fn a_replayed_code_after_the_retry_window_is_invalid_grant_and_changes_nothing() {
    let settings = offline_access_domain::Settings {
        code_dedupe_ttl: std::time::Duration::ZERO,
        ..offline_access_domain::Settings::default()
    };
    let app = TestApp::spawn_with_settings(
        offline_access_http::HttpConfig {
            authcode_rate_limit: 0,
            ..offline_access_http::HttpConfig::default()
        },
        settings,
    )
    .await;
    let minted = app.mint_code(CodeRequest::new("erin@example.com")).await;
    assert_eq!(app.post_authcode(&minted.code).await.status(), 200);
    let version_before = app.stored(&minted.sub).await.unwrap().version;

    let replay = app.post_authcode(&minted.code).await;

    assert_eq!(replay.status(), 400);
    let body: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(app.token_calls("authorization_code").await, 2);
    assert_eq!(
        app.stored(&minted.sub).await.unwrap().version,
        version_before
    );
}

#[tokio::test]
async fn a_code_for_another_user_than_the_bearer_is_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let victim_token = app.id_token("victim@example.com").await;
    let minted = app
        .mint_code(CodeRequest::new("attacker@example.com"))
        .await;

    let response = app
        .http
        .post(format!("{}/authcode", app.url))
        .header("X-Requested-With", "XMLHttpRequest")
        .bearer_auth(&victim_token)
        .form(&[("authCode", minted.code.as_str())])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "subject_mismatch");
    assert!(app.stored(&minted.sub).await.is_none());
}
