//! Grant integrity over real HTTP against the fake Google: each way a grant used to be lost or narrowed.

use std::time::Duration;

use fake_google::{CodeRequest, Endpoint, Fault, SettingsPatch};
use offline_access_tests::TestApp;
use reqwest::Method;

const DRIVE: &str = "https://www.googleapis.com/auth/drive.appdata";
const CALENDAR: &str = "https://www.googleapis.com/auth/calendar.readonly";

async fn sub_of(app: &TestApp, email: &str) -> String {
    let signed_in = app.sign_in(email).await;
    assert_eq!(signed_in["offline_access"], true);
    signed_in["user"]["sub"].as_str().unwrap().to_owned()
}

async fn json(response: reqwest::Response) -> serde_json::Value {
    response.json().await.unwrap()
}

async fn appfolder_status(app: &TestApp, token: &str) -> u16 {
    app.authed(Method::GET, "/v1/me/drive/appfolder", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits (bounded, polling) until the fake has taken every fault: the faulted request is in flight.
async fn until_faults_taken(app: &TestApp) {
    for _ in 0..500 {
        if app.fake.control().faults().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the faulted request never reached the fake");
}

fn scopes_of(body: &serde_json::Value) -> Vec<String> {
    body["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_slow_refresh_that_ends_after_a_forget_and_a_new_consent_leaves_the_new_grant_working() {
    let app = TestApp::spawn().await;
    let email = "olga@example.com";
    let sub = sub_of(&app, email).await;
    let token = app.id_token(email).await;
    app.fake.control().expire_user(&sub).await;
    // The refresh the next Drive call needs is slow at Google.
    app.fake
        .control()
        .add_fault(Fault::delay(Endpoint::Token, 2_000))
        .await
        .unwrap();
    let slow = {
        let request = app.authed(Method::GET, "/v1/me/drive/appfolder", &token);
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    until_faults_taken(&app).await;

    // Meanwhile the user is forgotten, and signs in again with a new consent.
    let forgotten = app
        .authed(Method::DELETE, "/v1/me", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(forgotten.status(), 204);
    let minted = app.mint_code(CodeRequest::new(email).consent()).await;
    let again = json(app.post_authcode(&minted.code).await).await;
    assert_eq!(again["offline_access"], true);
    assert_eq!(again["new_user"], true);
    slow.await.unwrap().unwrap();

    // The old refresh wrote nothing over the new grant: it is active, and its refresh token works.
    let me = json(
        app.authed(Method::GET, "/v1/me", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["consent"], "active");
    assert_eq!(me["offline_access"], true);
    app.fake.control().expire_user(&sub).await;
    assert_eq!(appfolder_status(&app, &token).await, 200);
}

#[tokio::test]
async fn a_sign_in_with_googles_clock_ahead_keeps_the_grant_and_a_rotated_refresh_token_is_kept() {
    let app = TestApp::spawn().await;
    // Google's clock 300 s ahead: its ID tokens are issued "in the future" for this server (past the leeway).
    app.fake
        .control()
        .settings(SettingsPatch {
            clock_offset_secs: Some(300),
            rotate_refresh_tokens: Some(true),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let email = "pia@example.com";
    let minted = app.mint_code(CodeRequest::new(email)).await;

    let response = app.post_authcode(&minted.code).await;

    assert_eq!(response.status(), 200, "the grant Google gave is kept");
    let body = json(response).await;
    assert_eq!(body["offline_access"], true);
    let sub = body["user"]["sub"].as_str().unwrap().to_owned();
    let before = app.stored(&sub).await.unwrap().refresh_token.unwrap();

    // A refresh whose ID token is also "from the future", with a rotated refresh token: the rotated token is
    // stored (the old one stops working at the fake), so the next refresh works too. (The app's own Bearer would
    // be refused as issued in the future — rightly — so the offline path, as `drive appfolder --sub` runs it.)
    let subject = offline_access_domain::Subject::parse(&sub).unwrap();
    for _ in 0..2 {
        app.fake.control().expire_user(&sub).await;
        let folder = app
            .service
            .drive(&subject, &offline_access_domain::DriveRequest::GetAppFolder)
            .await;
        assert!(folder.is_ok(), "{folder:?}");
    }
    let after = app.stored(&sub).await.unwrap().refresh_token.unwrap();
    assert!(
        !after.ct_eq(&before),
        "the rotated refresh token was stored"
    );
    assert_eq!(app.token_calls("refresh_token").await, 2);
}

#[tokio::test]
async fn a_later_sign_in_asking_fewer_scopes_keeps_drive() {
    let app = TestApp::spawn().await;
    let email = "quinn@example.com";
    let sub = sub_of(&app, email).await;
    let token = app.id_token(email).await;
    let minted = app
        .mint_code(CodeRequest::new(email).scopes(["openid", "email", "profile"]))
        .await;

    let narrower = json(app.post_authcode(&minted.code).await).await;

    assert!(scopes_of(&narrower).contains(&DRIVE.to_owned()));
    assert_eq!(narrower["drive_available"], true);
    assert_eq!(narrower["offline_access"], true);
    // The access token from that code lacks Drive: the call refreshes first (the grant has it), then works.
    let refreshes = app.token_calls("refresh_token").await;
    assert_eq!(appfolder_status(&app, &token).await, 200);
    assert_eq!(app.token_calls("refresh_token").await, refreshes + 1);
    let me = json(
        app.authed(Method::GET, "/v1/me", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(scopes_of(&me).contains(&DRIVE.to_owned()));
    assert!(app.stored(&sub).await.is_some());
}

#[tokio::test]
async fn incremental_authorization_widens_the_grant_and_a_refresh_keeps_it() {
    let app = TestApp::spawn().await;
    let email = "rosa@example.com";
    let sub = sub_of(&app, email).await;
    let token = app.id_token(email).await;
    let minted = app
        .mint_code(
            CodeRequest::new(email)
                .scopes(["openid", "email", "profile", CALENDAR])
                .include_granted_scopes(),
        )
        .await;

    let wider = json(app.post_authcode(&minted.code).await).await;

    let scopes = scopes_of(&wider);
    assert!(scopes.contains(&CALENDAR.to_owned()) && scopes.contains(&DRIVE.to_owned()));
    app.fake.control().expire_user(&sub).await;
    assert_eq!(appfolder_status(&app, &token).await, 200);
    let me = json(
        app.authed(Method::GET, "/v1/me", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        scopes_of(&me).contains(&CALENDAR.to_owned()),
        "a refresh reports the whole grant: {me}"
    );
}

#[tokio::test]
async fn a_code_issued_for_another_redirect_uri_is_a_400_not_a_server_error() {
    let app = TestApp::spawn().await;
    let minted = app
        .mint_code(CodeRequest::new("sam@example.com").redirect_uri("https://app.example.com/cb"))
        .await;

    let response = app.post_authcode(&minted.code).await;

    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["error"], "redirect_uri_mismatch");
}
