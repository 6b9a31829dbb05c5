//! The control API over HTTP: validation, client secret file, journal, reset.

use serde_json::{Value, json};

use crate::helpers::{s, spawn, split};

#[tokio::test]
async fn bad_control_bodies_get_400_with_a_message() {
    let ctx = spawn().await;
    for (path, body) in [
        ("/_fake/codes", "not json"),
        ("/_fake/codes", "{}"),
        ("/_fake/codes", r#"{"email": "no-at-sign"}"#),
        ("/_fake/codes", r#"{"email": "a@b.c", "scopes": []}"#),
        (
            "/_fake/codes",
            r#"{"email": "a@b.c", "client_id": "unknown"}"#,
        ),
        ("/_fake/codes", r#"{"email": "a@b.c", "prompt": "maybe"}"#),
        ("/_fake/codes", r#"{"email": "a@b.c", "colour": "blue"}"#),
        ("/_fake/id_tokens", r#"{"email": 7}"#),
        ("/_fake/settings", r#"{"code_ttl_secs": -1}"#),
        ("/_fake/settings", r#"{"clock_offset_secs": 99999999999}"#),
        ("/_fake/faults", r#"{"endpoint": "nowhere"}"#),
        ("/_fake/faults", r#"{"endpoint": "token"}"#),
        ("/_fake/faults", r#"{"endpoint": "token", "status": 42}"#),
        (
            "/_fake/faults",
            r#"{"endpoint": "token", "status": 500, "times": 0}"#,
        ),
        ("/_fake/keys/rotate", r#"{"retire": true}"#),
    ] {
        let (status, resp) = split(
            ctx.http
                .post(ctx.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{path} {body} -> {resp}");
        assert_eq!(resp["error"], "bad_request");
        assert!(!s(&resp["message"]).is_empty());
    }
}

#[tokio::test]
async fn minting_over_http_answers_201_with_code_and_sub() {
    let ctx = spawn().await;
    let (status, body) = split(
        ctx.http
            .post(ctx.url("/_fake/codes"))
            .json(&json!({"email": "http@example.com", "scopes": "openid email"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    assert!(s(&body["code"]).starts_with("4/0"));
    let token = ctx.exchange_ok(s(&body["code"])).await;
    assert_eq!(
        token["scope"],
        "openid https://www.googleapis.com/auth/userinfo.email"
    );
}

#[tokio::test]
async fn the_client_secret_file_is_google_shaped_and_points_at_the_fake() {
    let ctx = spawn().await;
    let (status, body) = split(
        ctx.http
            .get(ctx.url("/_fake/client_secret.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let web = &body["web"];
    let base = ctx.fake.base_url();
    assert_eq!(web["client_id"], ctx.fake.client_id().as_str());
    assert_eq!(web["client_secret"], ctx.fake.client_secret().as_str());
    assert_eq!(web["token_uri"], format!("{base}/token").as_str());
    assert_eq!(
        web["auth_provider_x509_cert_url"],
        format!("{base}/oauth2/v1/certs").as_str()
    );
    assert!(web["auth_uri"].is_string());
    assert!(web["redirect_uris"].is_array());
    assert_eq!(body, ctx.fake.client_secret_json());
}

#[tokio::test]
async fn the_journal_records_requests_without_secrets() {
    let ctx = spawn().await;
    let minted = ctx.mint("j@example.com").await;
    let body = ctx.exchange_ok(&minted.code).await;
    let access = s(&body["access_token"]).to_owned();
    let refresh = s(&body["refresh_token"]).to_owned();
    ctx.refresh(&refresh).await;
    ctx.get_bearer("/oauth2/v3/userinfo", &access).await;
    ctx.post_form("/revoke", &[("token", &refresh)]).await;
    let (status, journal) = split(
        ctx.http
            .get(ctx.url("/_fake/requests"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let entries = journal.as_array().unwrap();
    let summary: Vec<(String, String, u64)> = entries
        .iter()
        .map(|e| {
            (
                s(&e["endpoint"]).to_owned(),
                e["grant_type"].as_str().unwrap_or("").to_owned(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("token".into(), "authorization_code".into(), 200),
            ("token".into(), "refresh_token".into(), 200),
            ("userinfo".into(), String::new(), 200),
            ("revoke".into(), String::new(), 200),
        ]
    );
    for e in entries {
        assert_eq!(e["sub"], minted.sub.as_str());
    }
    let text = journal.to_string();
    for secret in [&minted.code, &access, &refresh, &ctx.fake.client_secret()] {
        assert!(!text.contains(secret.as_str()));
    }
    // Control calls are not journaled; DELETE clears.
    let resp = ctx
        .http
        .delete(ctx.url("/_fake/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(ctx.fake.requests().await.is_empty());
}

#[tokio::test]
async fn the_journal_keeps_only_the_last_ten_thousand_entries() {
    let ctx = spawn().await;
    let app = fake_google::router(ctx.fake.control());
    use tower::ServiceExt as _;
    for _ in 0..10_050 {
        let req = http::Request::get("/nothing-here")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 501);
    }
    assert_eq!(ctx.fake.requests().await.len(), 10_000);
}

#[tokio::test]
async fn reset_returns_to_the_start_state() {
    let ctx = spawn().await;
    let first_kid = ctx.fake.current_kid();
    let body = ctx
        .exchange_ok(&ctx.mint("reset@example.com").await.code)
        .await;
    ctx.fake.rotate_keys(false).await.unwrap();
    ctx.fake
        .add_fault(fake_google::Fault::status(
            fake_google::Endpoint::Token,
            500,
        ))
        .await
        .unwrap();
    let resp = ctx.http.post(ctx.url("/_fake/reset")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(ctx.fake.current_kid(), first_kid);
    assert!(ctx.fake.faults().is_empty());
    assert!(ctx.fake.requests().await.is_empty());
    assert_eq!(ctx.fake.user_count(), 0);
    assert_eq!(ctx.refresh(s(&body["refresh_token"])).await.0, 400);
    // A fresh grant gets a refresh token again.
    let again = ctx
        .exchange_ok(&ctx.mint("reset@example.com").await.code)
        .await;
    assert!(again.get("refresh_token").is_some());
}

#[tokio::test]
async fn settings_round_trip_over_http() {
    let ctx = spawn().await;
    let (status, body) = split(
        ctx.http
            .post(ctx.url("/_fake/settings"))
            .json(&json!({"access_token_ttl_secs": 10, "rotate_refresh_tokens": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["access_token_ttl_secs"], 10);
    assert_eq!(body["code_ttl_secs"], 600);
    let (_, got) = split(
        ctx.http
            .get(ctx.url("/_fake/settings"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got, body);
    assert_eq!(got["rotate_refresh_tokens"], Value::Bool(true));
}

#[tokio::test]
async fn unknown_control_paths_are_404() {
    let ctx = spawn().await;
    let (status, body) = split(ctx.http.get(ctx.url("/_fake/nope")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    let (status, _) = split(ctx.http.get(ctx.url("/_fake/ca.pem")).send().await.unwrap()).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn drive_requests_are_journaled_with_the_bearer_user() {
    let ctx = spawn().await;
    let minted = ctx.mint("drive-journal@example.com").await;
    let body = ctx.exchange_ok(&minted.code).await;
    ctx.fake.clear_requests().await;
    let (status, _) = ctx
        .get_bearer("/drive/v3/files/appDataFolder", s(&body["access_token"]))
        .await;
    assert_eq!(status, 200);
    let journal = ctx.fake.requests().await;
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].endpoint, "drive");
    assert_eq!(journal[0].path, "/drive/v3/files/appDataFolder");
    assert_eq!(journal[0].sub.as_deref(), Some(minted.sub.as_str()));
}
