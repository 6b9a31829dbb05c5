//! PKCE at `POST /token`, with Google's exact `invalid_grant` descriptions, for codes from the
//! browser flow and from `/_fake/codes`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fake_google::CodeRequest;
use serde_json::json;

use crate::browser::REDIRECT;
use crate::helpers::{Ctx, s, spawn};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn s256(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// A code from the browser flow (auto_consent, login_hint) with these PKCE parameters.
async fn browser_code(ctx: &Ctx, pkce: &[(&str, &str)]) -> String {
    ctx.fake
        .settings(fake_google::SettingsPatch {
            auto_consent: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = ctx.fake.client_id();
    let mut more = vec![("login_hint", "pkce@example.com")];
    more.extend_from_slice(pkce);
    let q = ctx
        .browser()
        .authorize_default(&id, "openid email", &more)
        .await
        .redirect_query();
    q["code"].clone()
}

async fn assert_invalid_grant(ctx: &Ctx, code: &str, extra: &[(&str, &str)], description: &str) {
    let (status, body) = ctx.exchange_at(code, REDIRECT, extra).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": description})
    );
}

#[tokio::test]
async fn s256_needs_the_right_verifier() {
    let ctx = spawn().await;
    assert_eq!(
        s256(VERIFIER),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let challenge = s256(VERIFIER);
    let code = browser_code(
        &ctx,
        &[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_invalid_grant(&ctx, &code, &[], "Missing code verifier.").await;
    assert_invalid_grant(
        &ctx,
        &code,
        &[("code_verifier", &challenge)],
        "Invalid code verifier.",
    )
    .await;
    assert_invalid_grant(
        &ctx,
        &code,
        &[("code_verifier", "short")],
        "Invalid code verifier.",
    )
    .await;
    // Failed checks do not use the code up.
    let (status, body) = ctx
        .exchange_at(&code, REDIRECT, &[("code_verifier", VERIFIER)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn plain_is_the_default_method() {
    let ctx = spawn().await;
    let code = browser_code(&ctx, &[("code_challenge", VERIFIER)]).await;
    assert_invalid_grant(
        &ctx,
        &code,
        &[("code_verifier", &s256(VERIFIER))],
        "Invalid code verifier.",
    )
    .await;
    let (status, _) = ctx
        .exchange_at(&code, REDIRECT, &[("code_verifier", VERIFIER)])
        .await;
    assert_eq!(status, 200);
    let code = browser_code(
        &ctx,
        &[
            ("code_challenge", VERIFIER),
            ("code_challenge_method", "plain"),
        ],
    )
    .await;
    let (status, _) = ctx
        .exchange_at(&code, REDIRECT, &[("code_verifier", VERIFIER)])
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_verifier_for_a_code_without_a_challenge_is_refused() {
    let ctx = spawn().await;
    let code = browser_code(&ctx, &[]).await;
    assert_invalid_grant(
        &ctx,
        &code,
        &[("code_verifier", VERIFIER)],
        "code_verifier or verifier is not needed.",
    )
    .await;
    let (status, _) = ctx.exchange_at(&code, REDIRECT, &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn minted_codes_take_a_challenge_too() {
    let ctx = spawn().await;
    let minted = ctx
        .fake
        .mint_code(CodeRequest::new("minted@example.com").code_challenge(s256(VERIFIER), "S256"))
        .await
        .unwrap();
    let (status, body) = ctx.exchange(&minted.code).await;
    assert_eq!(
        (status, s(&body["error_description"])),
        (400, "Missing code verifier.")
    );
    let (status, _) = ctx
        .exchange_at(&minted.code, "", &[("code_verifier", VERIFIER)])
        .await;
    assert_eq!(status, 200);
    // Bad challenges are refused at minting.
    let (status, body) = crate::helpers::split(
        ctx.http
            .post(ctx.url("/_fake/codes"))
            .json(&json!({"email": "a@example.com", "code_challenge": "x", "code_challenge_method": "S256"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(s(&body["message"]).contains("code_challenge"), "{body}");
}
