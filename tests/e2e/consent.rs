//! Consent revoked at Google, re-consent, and forgetting a user.

use fake_google::CodeRequest;
use offline_access_tests::TestApp;
use reqwest::Method;

#[tokio::test]
async fn a_grant_revoked_at_google_asks_for_reconsent_and_a_new_consent_restores_it() {
    let app = TestApp::spawn().await;
    let signed_in = app.sign_in("judy@example.com").await;
    let sub = signed_in["user"]["sub"].as_str().unwrap().to_owned();
    let token = app.id_token("judy@example.com").await;
    app.fake.control().revoke_user(&sub).await;

    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "reconsent_required");
    let me: serde_json::Value = app
        .authed(Method::GET, "/v1/me", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["consent"], "revoked");
    assert_eq!(me["offline_access"], false);

    // The user consents again on the phone: the new code yields a refresh token again.
    let minted = app.mint_code(CodeRequest::new("judy@example.com")).await;
    let again: serde_json::Value = app.post_authcode(&minted.code).await.json().await.unwrap();
    assert_eq!(again["offline_access"], true);
    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn delete_me_revokes_at_google_and_forgets_the_user() {
    let app = TestApp::spawn().await;
    let signed_in = app.sign_in("ken@example.com").await;
    let sub = signed_in["user"]["sub"].as_str().unwrap().to_owned();
    let token = app.id_token("ken@example.com").await;

    let response = app
        .authed(Method::DELETE, "/v1/me", &token)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 204);
    assert_eq!(app.calls_to("revoke").await, 1);
    assert!(app.stored(&sub).await.is_none());
    let me = app
        .authed(Method::GET, "/v1/me", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 404);
    // The grant is gone at Google too: the next code yields a refresh token again.
    let again = app.sign_in("ken@example.com").await;
    assert_eq!(again["offline_access"], true);
}

#[tokio::test]
async fn another_apps_id_token_is_refused_on_every_me_route() {
    let app = TestApp::spawn().await;
    app.sign_in("leo@example.com").await;
    let foreign = app
        .fake
        .control()
        .mint_id_token(fake_google::IdTokenRequest {
            email: "leo@example.com".into(),
            client_id: Some("another-app.apps.googleusercontent.com".into()),
            ..Default::default()
        })
        .await
        .unwrap();

    for (method, path) in [
        (Method::GET, "/v1/me"),
        (Method::GET, "/v1/me/drive/appfolder"),
        (Method::GET, "/v1/me/drive/files"),
        (Method::DELETE, "/v1/me"),
    ] {
        let response = app
            .authed(method.clone(), path, &foreign)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token");
    }
    assert_eq!(app.calls_to("drive").await, 0);
}
