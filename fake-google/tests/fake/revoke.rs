//! `POST /revoke` and the user-level revoke/expire controls.

use serde_json::json;

use crate::helpers::{Ctx, s, spawn, split};

async fn granted(ctx: &Ctx, email: &str) -> (String, String, String) {
    let minted = ctx.mint(email).await;
    let body = ctx.exchange_ok(&minted.code).await;
    (
        minted.sub,
        s(&body["access_token"]).to_owned(),
        s(&body["refresh_token"]).to_owned(),
    )
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_access_tokens_and_reoffers_a_refresh_token() {
    let ctx = spawn().await;
    let (_, access, refresh) = granted(&ctx, "rv@example.com").await;
    let (status, _) = ctx.post_form("/revoke", &[("token", &refresh)]).await;
    assert_eq!(status, 200);
    assert_eq!(ctx.refresh(&refresh).await.0, 400);
    assert_eq!(ctx.get_bearer("/oauth2/v3/userinfo", &access).await.0, 401);
    let again = ctx
        .exchange_ok(&ctx.mint("rv@example.com").await.code)
        .await;
    assert!(again.get("refresh_token").is_some());
}

#[tokio::test]
async fn revoke_answers_200_with_an_empty_body() {
    let ctx = spawn().await;
    let (_, access, _) = granted(&ctx, "empty@example.com").await;
    let resp = ctx
        .http
        .post(ctx.url("/revoke"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "");
}

#[tokio::test]
async fn the_token_may_come_in_the_query_string() {
    let ctx = spawn().await;
    let (_, access, refresh) = granted(&ctx, "q@example.com").await;
    let (status, _) = split(
        ctx.http
            .post(ctx.url("/revoke"))
            .query(&[("token", access.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    // Revoking the access token revoked the whole grant, its refresh token included.
    assert_eq!(ctx.refresh(&refresh).await.0, 400);
    // oauth2client revokes with GET ?token=.
    let (_, access2, _) = granted(&ctx, "q@example.com").await;
    let (status, _) = split(
        ctx.http
            .get(ctx.url("/revoke"))
            .query(&[("token", access2.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unknown_or_already_revoked_tokens_are_refused() {
    let ctx = spawn().await;
    let (status, body) = ctx.post_form("/revoke", &[("token", "ya29.nope")]).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "invalid_token", "error_description": "Token expired or revoked"})
    );
    let (_, _, refresh) = granted(&ctx, "twice@example.com").await;
    assert_eq!(
        ctx.post_form("/revoke", &[("token", &refresh)]).await.0,
        200
    );
    let (status, body) = ctx.post_form("/revoke", &[("token", &refresh)]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn a_revoked_user_loses_every_token_and_gets_a_refresh_token_again() {
    let ctx = spawn().await;
    let (sub, access, refresh) = granted(&ctx, "gone@example.com").await;
    let (status, _) = split(
        ctx.http
            .post(ctx.url(&format!("/_fake/users/{sub}/revoke")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = ctx.refresh(&refresh).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(ctx.get_bearer("/oauth2/v3/userinfo", &access).await.0, 401);
    let again = ctx
        .exchange_ok(&ctx.mint("gone@example.com").await.code)
        .await;
    assert!(again.get("refresh_token").is_some());
    assert!(!ctx.fake.revoke_user("000").await);
}

#[tokio::test]
async fn expiring_a_user_kills_access_tokens_but_not_the_refresh_token() {
    let ctx = spawn().await;
    let (sub, access, refresh) = granted(&ctx, "exp@example.com").await;
    assert_eq!(ctx.get_bearer("/oauth2/v3/userinfo", &access).await.0, 200);
    assert!(ctx.fake.expire_user(&sub).await);
    assert_eq!(ctx.get_bearer("/oauth2/v3/userinfo", &access).await.0, 401);
    let (status, body) = ctx.refresh(&refresh).await;
    assert_eq!(status, 200);
    assert_eq!(
        ctx.get_bearer("/oauth2/v3/userinfo", s(&body["access_token"]))
            .await
            .0,
        200
    );
    let (status, _) = split(
        ctx.http
            .post(ctx.url("/_fake/users/unknown/expire"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn access_tokens_expire_with_the_clock() {
    let ctx = spawn().await;
    let (_, access, _) = granted(&ctx, "clock@example.com").await;
    ctx.fake
        .settings(fake_google::SettingsPatch {
            clock_offset_secs: Some(3600),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ctx.get_bearer("/oauth2/v3/userinfo", &access).await.0, 401);
}
