//! Discovery, userinfo, tokeninfo and the 501 fallback.

use fake_google::CodeRequest;
use serde_json::Value;

use crate::helpers::{s, spawn, split};

#[tokio::test]
async fn discovery_points_at_the_fake() {
    let ctx = spawn().await;
    let (status, body) = split(
        ctx.http
            .get(ctx.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let base = ctx.fake.base_url();
    assert_eq!(body["issuer"], "https://accounts.google.com");
    assert_eq!(body["token_endpoint"], format!("{base}/token").as_str());
    assert_eq!(body["jwks_uri"], format!("{base}/oauth2/v3/certs").as_str());
    assert_eq!(
        body["revocation_endpoint"],
        format!("{base}/revoke").as_str()
    );
    assert_eq!(
        body["userinfo_endpoint"],
        format!("{base}/v1/userinfo").as_str()
    );
    assert_eq!(body["id_token_signing_alg_values_supported"][0], "RS256");
    assert!(body["claims_supported"].as_array().unwrap().len() > 5);
}

#[tokio::test]
async fn userinfo_answers_the_profile_on_both_paths() {
    let ctx = spawn().await;
    let minted = ctx
        .fake
        .mint_code(CodeRequest {
            given_name: Some("Grace".into()),
            hd: Some("example.com".into()),
            ..CodeRequest::new("grace@example.com")
        })
        .await
        .unwrap();
    let body = ctx.exchange_ok(&minted.code).await;
    let token = s(&body["access_token"]);
    for path in ["/v1/userinfo", "/oauth2/v3/userinfo"] {
        let (status, info) = ctx.get_bearer(path, token).await;
        assert_eq!(status, 200);
        assert_eq!(info["sub"], minted.sub.as_str());
        assert_eq!(info["email"], "grace@example.com");
        assert_eq!(info["email_verified"], true);
        assert_eq!(info["given_name"], "Grace");
        assert_eq!(info["hd"], "example.com");
    }
    let (_, legacy) = ctx.get_bearer("/oauth2/v2/userinfo", token).await;
    assert_eq!(legacy["id"], minted.sub.as_str());
    assert_eq!(legacy["verified_email"], true);
}

#[tokio::test]
async fn userinfo_without_a_valid_token_is_401() {
    let ctx = spawn().await;
    let resp = ctx
        .http
        .get(ctx.url("/oauth2/v3/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let (status, body) = ctx.get_bearer("/oauth2/v3/userinfo", "ya29.bad").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn userinfo_shows_only_what_the_scopes_allow() {
    let ctx = spawn().await;
    let minted = ctx
        .fake
        .mint_code(CodeRequest::new("min@example.com").scopes(["openid", "email"]))
        .await
        .unwrap();
    let body = ctx.exchange_ok(&minted.code).await;
    let (_, info) = ctx
        .get_bearer("/oauth2/v3/userinfo", s(&body["access_token"]))
        .await;
    assert!(info.get("email").is_some());
    assert!(info.get("name").is_none());
}

#[tokio::test]
async fn tokeninfo_for_an_id_token_answers_strings() {
    let ctx = spawn().await;
    let body = ctx
        .exchange_ok(&ctx.mint("ti@example.com").await.code)
        .await;
    let (status, info) = split(
        ctx.http
            .get(ctx.url("/oauth2/v3/tokeninfo"))
            .query(&[("id_token", s(&body["id_token"]))])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["email_verified"], "true");
    assert!(info["exp"].is_string() && info["iat"].is_string());
    assert_eq!(info["alg"], "RS256");
    assert_eq!(info["typ"], "JWT");
    assert_eq!(s(&info["kid"]).len(), 40);
    assert_eq!(info["aud"], ctx.fake.client_id().as_str());
    for (_, v) in info.as_object().unwrap() {
        assert!(v.is_string(), "{v}");
    }
}

#[tokio::test]
async fn tokeninfo_for_an_access_token_answers_scope_and_expiry() {
    let ctx = spawn().await;
    let body = ctx
        .exchange_ok(&ctx.mint("ta@example.com").await.code)
        .await;
    let access = s(&body["access_token"]);
    let (status, info) = split(
        ctx.http
            .get(ctx.url("/oauth2/v3/tokeninfo"))
            .query(&[("access_token", access)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(info["scope"], body["scope"]);
    assert!(info["expires_in"].as_str().unwrap().parse::<i64>().unwrap() > 3500);
    assert_eq!(info["email"], "ta@example.com");
    assert_eq!(info["access_type"], "offline");
    // Node's getTokenInfo: POST /tokeninfo with the token as a Bearer header.
    let (status, info) = split(
        ctx.http
            .post(ctx.url("/tokeninfo"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(info["sub"].is_string());
}

#[tokio::test]
async fn tokeninfo_refuses_bad_tokens() {
    let ctx = spawn().await;
    for q in [("id_token", "a.b.c"), ("access_token", "ya29.x")] {
        let (status, body) = split(
            ctx.http
                .get(ctx.url("/oauth2/v3/tokeninfo"))
                .query(&[q])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error_description"], "Invalid Value");
    }
}

#[tokio::test]
async fn anything_else_answers_501_naming_the_method() {
    let ctx = spawn().await;
    let (status, body) = split(
        ctx.http
            .get(ctx.url("/drive/v3/about"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 501);
    assert_eq!(body["error"]["code"], 501);
    assert_eq!(body["error"]["status"], "UNIMPLEMENTED");
    assert!(s(&body["error"]["message"]).contains("drive.about"));
    let (status, body) = split(
        ctx.http
            .get(ctx.url("/gmail/v1/users"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 501);
    assert!(matches!(
        body["error"]["errors"][0]["reason"],
        Value::String(_)
    ));
    // A known path with the wrong method too.
    let (status, _) = split(ctx.http.get(ctx.url("/token")).send().await.unwrap()).await;
    assert_eq!(status, 501);
}
