//! No token or code ever reaches the logs or a response body.

use fake_google::CodeRequest;
use offline_access_tests::{TestApp, captured_logs, contains};
use reqwest::Method;

#[tokio::test]
async fn no_token_code_or_client_secret_appears_in_the_logs() {
    let app = TestApp::spawn().await;
    let minted = app.mint_code(CodeRequest::new("mallory@example.com")).await;
    let response = app.post_authcode(&minted.code).await;
    let sign_in_body = response.text().await.unwrap();
    let token = app.id_token("mallory@example.com").await;
    app.fake.control().expire_user(&minted.sub).await;
    let drive_body = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stored = app.stored(&minted.sub).await.unwrap();
    let refresh = stored.refresh_token.unwrap().expose_secret().to_owned();
    let access = stored.access.unwrap().token.expose_secret().to_owned();
    let client_secret = app.fake.control().client_secret();

    let logs = captured_logs();
    assert!(!logs.is_empty(), "the subscriber captured nothing");
    for (what, secret) in [
        ("code", minted.code.as_str()),
        ("refresh token", refresh.as_str()),
        ("access token", access.as_str()),
        ("ID token", token.as_str()),
        ("client secret", client_secret.as_str()),
    ] {
        assert!(
            !contains(logs.as_bytes(), secret),
            "{what} found in the logs"
        );
        assert!(
            !sign_in_body.contains(secret),
            "{what} found in the sign-in body"
        );
        assert!(
            !drive_body.contains(secret),
            "{what} found in the Drive body"
        );
    }
}
