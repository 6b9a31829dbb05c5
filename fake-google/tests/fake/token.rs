//! `POST /token`: both grants, both client authentications, every error row.

use base64::Engine as _;
use fake_google::{ANDROID_CLIENT_ID, CodeRequest, SettingsPatch};
use serde_json::Value;

use crate::helpers::{s, spawn, split};

#[tokio::test]
async fn a_code_exchange_answers_google_shaped_tokens() {
    let ctx = spawn().await;
    let minted = ctx.mint("alice@example.com").await;
    let body = ctx.exchange_ok(&minted.code).await;
    assert!(s(&body["access_token"]).starts_with("ya29."));
    assert!(s(&body["refresh_token"]).starts_with("1//"));
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["token_type"], "Bearer");
    let scope = s(&body["scope"]);
    for want in [
        "openid",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
        "https://www.googleapis.com/auth/drive.appdata",
    ] {
        assert!(scope.split(' ').any(|x| x == want), "{scope}");
    }
    assert_eq!(s(&body["id_token"]).split('.').count(), 3);
    assert!(minted.code.starts_with("4/0"));
}

#[tokio::test]
async fn the_token_response_keeps_no_store_headers_and_json_type() {
    let ctx = spawn().await;
    let minted = ctx.mint("h@example.com").await;
    let resp = ctx
        .http
        .post(ctx.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", minted.code.as_str()),
            ("client_id", &ctx.fake.client_id()),
            ("client_secret", &ctx.fake.client_secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/json"));
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
}

#[tokio::test]
async fn http_basic_client_authentication_works() {
    let ctx = spawn().await;
    let minted = ctx.mint("basic@example.com").await;
    let (status, body) = split(
        ctx.http
            .post(ctx.url("/token"))
            .basic_auth(ctx.fake.client_id(), Some(ctx.fake.client_secret()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", minted.code.as_str()),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = split(
        ctx.http
            .post(ctx.url("/token"))
            .basic_auth(ctx.fake.client_id(), Some("wrong"))
            .form(&[("grant_type", "authorization_code"), ("code", "4/0x")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_json_token_request_is_accepted_too() {
    let ctx = spawn().await;
    let minted = ctx.mint("json@example.com").await;
    let (status, body) = split(
        ctx.http
            .post(ctx.url("/token"))
            .json(&serde_json::json!({
                "grant_type": "authorization_code",
                "code": minted.code,
                "client_id": ctx.fake.client_id(),
                "client_secret": ctx.fake.client_secret(),
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_code_works_only_once() {
    let ctx = spawn().await;
    let minted = ctx.mint("once@example.com").await;
    ctx.exchange_ok(&minted.code).await;
    let (status, body) = ctx.exchange(&minted.code).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        serde_json::json!({"error": "invalid_grant", "error_description": "Bad Request"})
    );
}

#[tokio::test]
async fn an_unknown_code_is_a_bad_request_and_a_broken_one_is_malformed() {
    let ctx = spawn().await;
    let (status, body) = ctx.exchange("4/0AVGzR1Bunknown").await;
    assert_eq!(
        (status, s(&body["error_description"])),
        (400, "Bad Request")
    );
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = ctx.exchange("not a code").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "Malformed auth code.");
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let ctx = spawn().await;
    let minted = ctx.mint("late@example.com").await;
    ctx.fake
        .settings(SettingsPatch {
            clock_offset_secs: Some(601),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let (status, body) = ctx.exchange(&minted.code).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn a_code_with_a_short_ttl_expires_by_the_clock() {
    let ctx = spawn().await;
    ctx.fake
        .settings(SettingsPatch {
            code_ttl_secs: Some(0),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let minted = ctx.mint("zero@example.com").await;
    let (status, _) = ctx.exchange(&minted.code).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_redirect_uri_must_match_the_one_the_code_was_minted_with() {
    let ctx = spawn().await;
    let web = ctx
        .fake
        .mint_code(CodeRequest::new("web@example.com").redirect_uri("postmessage"))
        .await
        .unwrap();
    let id = ctx.fake.client_id();
    let secret = ctx.fake.client_secret();
    let form = |code: &str, redirect: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("client_id", id.clone()),
            ("client_secret", secret.clone()),
            ("redirect_uri", redirect.to_owned()),
        ]
    };
    let (status, body) = split(
        ctx.http
            .post(ctx.url("/token"))
            .form(&form(&web.code, "http://evil.example"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "redirect_uri_mismatch");
    // The code survives a mismatch and still works with the right URI.
    let (status, _) = split(
        ctx.http
            .post(ctx.url("/token"))
            .form(&form(&web.code, "postmessage"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    // An Android code (minted with "") accepts "" and "postmessage" (oauth2client's default).
    let android = ctx.mint("android@example.com").await;
    let (status, _) = split(
        ctx.http
            .post(ctx.url("/token"))
            .form(&form(&android.code, "postmessage"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn only_the_first_grant_for_a_user_and_client_gets_a_refresh_token() {
    let ctx = spawn().await;
    let first = ctx.exchange_ok(&ctx.mint("r@example.com").await.code).await;
    assert!(first.get("refresh_token").is_some());
    let second = ctx.exchange_ok(&ctx.mint("r@example.com").await.code).await;
    assert!(second.get("refresh_token").is_none(), "{second}");
    let forced = ctx
        .fake
        .mint_code(CodeRequest::new("r@example.com").consent())
        .await
        .unwrap();
    let third = ctx.exchange_ok(&forced.code).await;
    assert!(third.get("refresh_token").is_some());
}

#[tokio::test]
async fn another_client_of_the_same_user_gets_its_own_refresh_token() {
    let ctx = spawn().await;
    ctx.exchange_ok(&ctx.mint("two@example.com").await.code)
        .await;
    let other = ctx.fake.add_client().await;
    let minted = ctx
        .fake
        .mint_code(CodeRequest {
            client_id: Some(other.client_id.clone()),
            ..CodeRequest::new("two@example.com")
        })
        .await
        .unwrap();
    let (status, body) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &minted.code),
                ("client_id", &other.client_id),
                ("client_secret", &other.client_secret),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.get("refresh_token").is_some());
    // ...and that refresh token is refused for the default client.
    let (status, body) = ctx.refresh(s(&body["refresh_token"])).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unauthorized_client");
}

#[tokio::test]
async fn a_refresh_gives_a_new_access_token_and_id_token_but_no_refresh_token() {
    let ctx = spawn().await;
    let first = ctx.exchange_ok(&ctx.mint("f@example.com").await.code).await;
    let (status, body) = ctx.refresh(s(&first["refresh_token"])).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["access_token"], first["access_token"]);
    assert!(body.get("refresh_token").is_none());
    assert!(body.get("id_token").is_some());
    assert_eq!(body["scope"], first["scope"]);
}

#[tokio::test]
async fn a_refresh_without_openid_has_no_id_token() {
    let ctx = spawn().await;
    let minted = ctx
        .fake
        .mint_code(
            CodeRequest::new("noid@example.com")
                .scopes(["https://www.googleapis.com/auth/drive.appdata"]),
        )
        .await
        .unwrap();
    let first = ctx.exchange_ok(&minted.code).await;
    assert!(first.get("id_token").is_none());
    let (_, body) = ctx.refresh(s(&first["refresh_token"])).await;
    assert!(body.get("id_token").is_none());
}

#[tokio::test]
async fn rotating_refresh_tokens_retires_the_old_one() {
    let ctx = spawn().await;
    ctx.fake
        .settings(SettingsPatch {
            rotate_refresh_tokens: Some(true),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let first = ctx
        .exchange_ok(&ctx.mint("rot@example.com").await.code)
        .await;
    let old = s(&first["refresh_token"]).to_owned();
    let (status, body) = ctx.refresh(&old).await;
    assert_eq!(status, 200);
    let new = s(&body["refresh_token"]).to_owned();
    assert_ne!(new, old);
    assert_eq!(ctx.refresh(&old).await.0, 400);
    assert_eq!(ctx.refresh(&new).await.0, 200);
}

#[tokio::test]
async fn an_unknown_refresh_token_is_expired_or_revoked() {
    let ctx = spawn().await;
    let (status, body) = ctx.refresh("1//0nope").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        serde_json::json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    );
}

#[tokio::test]
async fn client_errors_follow_google() {
    let ctx = spawn().await;
    let (status, body) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", "4/0x"),
                ("client_id", "nobody.apps.googleusercontent.com"),
                ("client_secret", "x"),
            ],
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_description"], "The OAuth client was not found.");
    let (status, body) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", "4/0x"),
                ("client_id", &ctx.fake.client_id()),
                ("client_secret", "wrong"),
            ],
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_description"], "Unauthorized");
}

#[tokio::test]
async fn missing_parameters_and_unknown_grant_types_are_named() {
    let ctx = spawn().await;
    let id = ctx.fake.client_id();
    let secret = ctx.fake.client_secret();
    let (status, body) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "Missing required parameter: code"
    );
    let (status, body) = ctx
        .post_form("/token", &[("client_id", &id), ("client_secret", &secret)])
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        "Missing required parameter: grant_type"
    );
    let (status, body) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "password"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_grant_type");
    assert_eq!(body["error_description"], "Invalid grant_type: password");
    let (status, body) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        "Missing required parameter: refresh_token"
    );
}

#[tokio::test]
async fn the_id_token_carries_azp_profile_claims_and_at_hash() {
    let ctx = spawn().await;
    let minted = ctx
        .fake
        .mint_code(CodeRequest {
            hd: Some("example.com".into()),
            name: Some("Ada Lovelace".into()),
            nonce: Some("n-1".into()),
            ..CodeRequest::new("ada@example.com").azp(ANDROID_CLIENT_ID)
        })
        .await
        .unwrap();
    let body = ctx.exchange_ok(&minted.code).await;
    let claims = payload(s(&body["id_token"]));
    assert_eq!(claims["iss"], "https://accounts.google.com");
    assert_eq!(claims["aud"], ctx.fake.client_id().as_str());
    assert_eq!(claims["azp"], ANDROID_CLIENT_ID);
    assert_eq!(claims["sub"], minted.sub.as_str());
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["hd"], "example.com");
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["nonce"], "n-1");
    assert!(claims["picture"].is_string() && claims["locale"].is_string());
    assert!(claims["given_name"].is_string() && claims["family_name"].is_string());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    // at_hash = base64url(left half of SHA-256(access_token)).
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        s(&body["access_token"]).as_bytes(),
    );
    let want = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
    assert_eq!(claims["at_hash"], want.as_str());
    assert!(minted.sub.chars().all(|c| c.is_ascii_digit()));
}

#[tokio::test]
async fn subs_are_stable_per_email() {
    let ctx = spawn().await;
    let a = ctx.mint("same@example.com").await;
    let b = ctx.mint("same@example.com").await;
    let c = ctx.mint("other@example.com").await;
    assert_eq!(a.sub, b.sub);
    assert_ne!(a.sub, c.sub);
}

#[tokio::test]
async fn the_id_token_lifetime_is_settable() {
    let ctx = spawn().await;
    ctx.fake
        .settings(SettingsPatch {
            id_token_ttl_secs: Some(60),
            access_token_ttl_secs: Some(100),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let body = ctx
        .exchange_ok(&ctx.mint("ttl@example.com").await.code)
        .await;
    assert_eq!(body["expires_in"], 100);
    let claims = payload(s(&body["id_token"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );
}

pub(crate) fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}
