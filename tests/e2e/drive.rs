//! Drive on the user's behalf, and refresh when access expires.

use fake_google::CodeRequest;
use offline_access_domain::{DriveRequest, DriveResponse, Subject};
use offline_access_tests::TestApp;
use reqwest::Method;

/// `POST /v1/me/drive/files?name=NAME` for the holder of `token`; asserts 201 and returns Drive's metadata.
async fn create(
    app: &TestApp,
    name: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    token: &str,
) -> serde_json::Value {
    let created = app
        .authed(
            Method::POST,
            &format!("/v1/me/drive/files?name={name}"),
            token,
        )
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    created.json().await.unwrap()
}

/// `GET /v1/me/drive/files/{id}/content` for the holder of `token`.
async fn download(app: &TestApp, id: &str, token: &str) -> reqwest::Response {
    app.authed(
        Method::GET,
        &format!("/v1/me/drive/files/{id}/content"),
        token,
    )
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn the_drive_file_lifecycle_works_through_the_api() {
    let app = TestApp::spawn().await;
    app.sign_in("frank@example.com").await;
    let token = app.id_token("frank@example.com").await;

    let folder = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(folder.status(), 200);
    let folder: serde_json::Value = folder.json().await.unwrap();
    assert!(folder["id"].as_str().is_some_and(|id| !id.is_empty()));

    let created = create(&app, "notes.txt", "text/plain", "first version", &token).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "notes.txt");

    let listed: serde_json::Value = app
        .authed(Method::GET, "/v1/me/drive/files", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == id.as_str())
    );

    let meta = app
        .authed(Method::GET, &format!("/v1/me/drive/files/{id}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(meta.status(), 200);

    let content = download(&app, &id, &token).await;
    assert_eq!(content.status(), 200);
    assert_eq!(content.text().await.unwrap(), "first version");

    let updated = app
        .authed(
            Method::PUT,
            &format!("/v1/me/drive/files/{id}/content"),
            &token,
        )
        .header("Content-Type", "text/plain")
        .body("second version")
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    let content = download(&app, &id, &token).await;
    assert_eq!(content.text().await.unwrap(), "second version");

    let deleted = app
        .authed(Method::DELETE, &format!("/v1/me/drive/files/{id}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = app
        .authed(Method::GET, &format!("/v1/me/drive/files/{id}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_expiry_fifty_concurrent_drive_calls_cause_one_refresh() {
    let app = TestApp::spawn().await;
    let signed_in = app.sign_in("grace@example.com").await;
    let sub = signed_in["user"]["sub"].as_str().unwrap().to_owned();
    let token = app.id_token("grace@example.com").await;
    assert!(app.fake.control().expire_user(&sub).await);

    let calls = (0..50).map(|_| {
        app.authed(Method::GET, "/v1/me/drive/appfolder", &token)
            .send()
    });
    let responses = futures::future::join_all(calls).await;

    for response in responses {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(app.token_calls("refresh_token").await, 1);
}

#[tokio::test]
async fn drive_works_with_no_user_present_refreshing_the_expired_access_token() {
    let app = TestApp::spawn().await;
    let signed_in = app.sign_in("heidi@example.com").await;
    let sub = Subject::parse(signed_in["user"]["sub"].as_str().unwrap()).unwrap();
    app.fake.control().expire_user(sub.as_str()).await;

    let response = app
        .service
        .drive(&sub, &DriveRequest::GetAppFolder)
        .await
        .unwrap();

    assert!(matches!(response, DriveResponse::Json(ref folder) if folder["id"].is_string()));
    assert_eq!(app.token_calls("refresh_token").await, 1);
    let stored = app.stored(sub.as_str()).await.unwrap();
    assert!(stored.refresh_token.is_some());
}

#[tokio::test]
async fn without_the_drive_scope_sign_in_works_and_drive_calls_say_scope_missing() {
    let app = TestApp::spawn().await;
    let minted = app
        .mint_code(CodeRequest::new("ivan@example.com").scopes(["openid", "email", "profile"]))
        .await;
    assert_eq!(app.post_authcode(&minted.code).await.status(), 200);
    let token = app.id_token("ivan@example.com").await;

    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &token)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "scope_missing");
    assert_eq!(app.calls_to("drive").await, 0);
}

#[tokio::test]
async fn a_nine_mebibyte_file_comes_back_byte_for_byte_with_its_length_streamed_through_the_server()
{
    let app = TestApp::spawn().await;
    app.sign_in("nina@example.com").await;
    let token = app.id_token("nina@example.com").await;
    let body: Vec<u8> = (0..9 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let created = create(
        &app,
        "big.bin",
        "application/octet-stream",
        body.clone(),
        &token,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();

    let content = download(&app, &id, &token).await;
    assert_eq!(content.status(), 200);
    assert_eq!(
        content.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert_eq!(
        content.headers()["content-type"],
        "application/octet-stream"
    );
    let received = content.bytes().await.unwrap();
    assert_eq!(received.len(), body.len());
    assert!(received == body, "the content differs");
}
