//! The internal API over real HTTP against the fake Google: keys, users, access tokens, the proxy.

use fake_google::{CodeRequest, SettingsPatch};
use offline_access_tests::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const CALENDAR: &str = "https://www.googleapis.com/auth/calendar.readonly";
const DRIVE: &str = "https://www.googleapis.com/auth/drive.appdata";

async fn body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn signed_in(app: &TestApp, email: &str) -> String {
    app.sign_in(email).await["user"]["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn missing_unknown_and_malformed_keys_get_one_identical_401_and_the_public_listener_has_no_internal_api()
 {
    let app = TestApp::spawn().await;
    let url = format!("{}/internal/v1/users", app.internal_url);
    let mut answers = Vec::new();
    for auth in [
        None,
        Some("Bearer oak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
        Some("Bearer".to_owned()),
        Some("Basic ZTJlOnNlY3JldA==".to_owned()),
        Some(format!("Bearer {}x", app.api_key)),
    ] {
        let mut request = app.http.get(&url);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        answers.push(body(request.send().await.unwrap()).await);
    }
    for answer in &answers {
        assert_eq!(answer, &answers[0]);
    }
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0].1["error"], "invalid_api_key");
    let (status, _) = body(
        app.internal(Method::GET, "/internal/v1/users")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    // The public listener never serves it, not even with a valid key.
    let public = app
        .http
        .get(format!("{}/internal/v1/users", app.url))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
}

#[tokio::test]
async fn users_are_listed_page_by_page_and_one_user_shows_the_profile() {
    let app = TestApp::spawn().await;
    let mut subs = Vec::new();
    for i in 0..3 {
        subs.push(signed_in(&app, &format!("page{i}@example.com")).await);
    }
    app.fake.control().revoke_user(&subs[1]).await;
    app.fake.control().expire_user(&subs[1]).await;
    // Make the revocation known: a Drive call for that user gets 401, refreshes and learns invalid_grant.
    let sub1 = offline_access_domain::Subject::parse(&subs[1]).unwrap();
    let _ = app
        .service
        .drive(&sub1, &offline_access_domain::DriveRequest::GetAppFolder)
        .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/internal/v1/users?limit=1&cursor={c}"),
            None => "/internal/v1/users?limit=1".to_owned(),
        };
        let (status, page) = body(app.internal(Method::GET, &path).send().await.unwrap()).await;
        assert_eq!(status, 200, "{page}");
        for user in page["users"].as_array().unwrap() {
            seen.push(user["sub"].as_str().unwrap().to_owned());
            assert!(user["updated_at"].as_str().unwrap().contains('T'));
            assert!(user.get("user").is_none());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    seen.sort();
    let mut expected = subs.clone();
    expected.sort();
    assert_eq!(seen, expected);

    let (_, revoked) = body(
        app.internal(Method::GET, "/internal/v1/users?consent=revoked")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let revoked: Vec<&str> = revoked["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["sub"].as_str().unwrap())
        .collect();
    assert_eq!(revoked, [subs[1].as_str()]);

    let (status, one) = body(
        app.internal(Method::GET, &format!("/internal/v1/users/{}", subs[0]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["consent"], "active");
    assert_eq!(one["offline_access"], true);
    assert_eq!(one["user"]["email"], "page0@example.com");
    assert!(one["scopes"].as_array().unwrap().contains(&json!(DRIVE)));
    let (status, missing) = body(
        app.internal(Method::GET, "/internal/v1/users/999999999999999999999")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, missing["error"].as_str()),
        (404, Some("not_found"))
    );
    let (status, bad) = body(
        app.internal(Method::GET, "/internal/v1/users?consent=maybe")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn an_access_token_is_the_cached_one_while_fresh_enough_and_missing_scopes_are_named() {
    let app = TestApp::spawn().await;
    // Short-lived access tokens, so that min_ttl_secs decides.
    app.fake
        .control()
        .settings(SettingsPatch {
            access_token_ttl_secs: Some(300),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let sub = signed_in(&app, "token@example.com").await;
    let path = format!("/internal/v1/users/{sub}/access_token");
    let refreshes = app.token_calls("refresh_token").await;

    let response = app.internal(Method::POST, &path).send().await.unwrap();
    assert_eq!(
        response.headers()["cache-control"].to_str().unwrap(),
        "no-store"
    );
    let (status, cached) = body(response).await;
    assert_eq!(status, 200, "{cached}");
    assert_eq!(cached["token_type"], "Bearer");
    assert!(
        cached["access_token"]
            .as_str()
            .unwrap()
            .starts_with("ya29.")
    );
    assert!(cached["expires_in"].as_i64().unwrap() <= 300);
    assert!(cached["expires_at"].as_str().unwrap().contains('T'));
    assert_eq!(app.token_calls("refresh_token").await, refreshes);

    // More life than the cached token has: one refresh, and the fresh token is then cached for everyone.
    let (status, fresh) = body(
        app.internal(Method::POST, &path)
            .json(&json!({"min_ttl_secs": 600, "scopes": [DRIVE]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{fresh}");
    assert_ne!(fresh["access_token"], cached["access_token"]);
    assert_eq!(app.token_calls("refresh_token").await, refreshes + 1);

    let (status, refused) = body(
        app.internal(Method::POST, &path)
            .json(&json!({"scopes": [DRIVE, CALENDAR]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (403, Some("scope_missing"))
    );
    assert_eq!(refused["missing"], json!([CALENDAR]));
    assert_eq!(app.token_calls("refresh_token").await, refreshes + 1);

    let (status, unknown) = body(
        app.internal(
            Method::POST,
            "/internal/v1/users/999999999999999999999/access_token",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, unknown["error"].as_str()),
        (404, Some("not_found"))
    );
    let (status, malformed) = body(
        app.internal(Method::POST, &path)
            .body("{\"scopes\": 7}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, malformed["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // No token in any log line.
    let logs = offline_access_tests::captured_logs();
    assert!(!logs.contains(fresh["access_token"].as_str().unwrap()));
    assert!(!logs.contains(&app.api_key));
    assert!(logs.contains("key=e2e") || logs.contains("key: e2e") || logs.contains("e2e"));
}

#[tokio::test]
async fn a_revoked_grant_is_409_and_a_sign_in_lacking_a_required_scope_says_which() {
    let app = TestApp::spawn().await;
    app.fake
        .control()
        .settings(SettingsPatch {
            access_token_ttl_secs: Some(300),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let sub = signed_in(&app, "gone@example.com").await;
    app.fake.control().revoke_user(&sub).await;

    // The cached token has 300 s left, less than asked: a refresh, which Google refuses.
    let (status, refused) = body(
        app.internal(
            Method::POST,
            &format!("/internal/v1/users/{sub}/access_token"),
        )
        .json(&json!({"min_ttl_secs": 600}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("reconsent_required"))
    );
    let (_, user) = body(
        app.internal(Method::GET, &format!("/internal/v1/users/{sub}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(user["consent"], "revoked");

    // A sign-in without the required drive.appdata scope is told what is missing.
    let minted = app
        .mint_code(CodeRequest::new("nodrive@example.com").scopes(["openid", "email", "profile"]))
        .await;
    let signed: Value = app.post_authcode(&minted.code).await.json().await.unwrap();
    assert_eq!(signed["missing_scopes"], json!([DRIVE]));
    assert_eq!(signed["hint"], "request_scopes");
}

#[tokio::test]
async fn the_proxy_reaches_allowed_google_hosts_only_refreshes_once_on_401_and_forget_works() {
    let app = TestApp::spawn().await;
    let sub = signed_in(&app, "proxy@example.com").await;
    let base = format!("/internal/v1/users/{sub}/google");

    let response = app
        .internal(
            Method::GET,
            &format!("{base}/www.googleapis.com/drive/v3/files/appDataFolder?fields=id,name"),
        )
        .header("cookie", "session=secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let folder: Value = response.json().await.unwrap();
    assert_eq!(folder["id"].as_str().map(|s| !s.is_empty()), Some(true));
    assert_eq!(folder["name"], "Application Data");

    for host in [
        "googleapis.com.evil.example",
        "evil.example",
        "127.0.0.1",
        "www.googleapis.com:8443",
        "[::1]",
    ] {
        let (status, refused) = body(
            app.internal(Method::GET, &format!("{base}/{host}/drive/v3/files"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, refused["error"].as_str()),
            (403, Some("host_not_allowed")),
            "{host}"
        );
    }

    // Google stops honouring the access token: one refresh, the request sent again, 200.
    app.fake.control().expire_user(&sub).await;
    let refreshes = app.token_calls("refresh_token").await;
    let response = app
        .internal(
            Method::GET,
            &format!("{base}/www.googleapis.com/drive/v3/files?spaces=appDataFolder"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.token_calls("refresh_token").await, refreshes + 1);

    // Google's own errors pass through.
    let response = app
        .internal(
            Method::GET,
            &format!("{base}/www.googleapis.com/drive/v3/files/no-such-file"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], 404);

    // Google's answer passes through even when it is not JSON.
    app.fake
        .control()
        .add_fault(
            fake_google::Fault::status(fake_google::Endpoint::Drive, 503)
                .with_body(json!("<html>Service Unavailable</html>")),
        )
        .await
        .unwrap();
    let response = app
        .internal(
            Method::GET,
            &format!("{base}/www.googleapis.com/drive/v3/files/x"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.text().await.unwrap(),
        "<html>Service Unavailable</html>"
    );

    // Forget through the internal API.
    let forgotten = app
        .internal(Method::DELETE, &format!("/internal/v1/users/{sub}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forgotten.status(), 204);
    let (status, _) = body(
        app.internal(Method::GET, &format!("/internal/v1/users/{sub}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let logs = offline_access_tests::captured_logs();
    assert!(!logs.contains("session=secret"));
}
