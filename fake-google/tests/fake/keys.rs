//! Keys: ID tokens verify with jsonwebtoken against the JWKS and the v1 certificates,
//! before and after rotation.

use std::collections::HashMap;

use fake_google::IdTokenRequest;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

use crate::helpers::{Ctx, s, spawn};

async fn jwks(ctx: &Ctx) -> JwkSet {
    ctx.get_json("/oauth2/v3/certs").await
}

async fn pems(ctx: &Ctx) -> HashMap<String, String> {
    ctx.get_json("/oauth2/v1/certs").await
}

fn validation(aud: &str) -> Validation {
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[aud]);
    v.set_issuer(&["https://accounts.google.com", "accounts.google.com"]);
    v
}

/// Verifies `token` against both published forms and returns its claims.
async fn verify_both(ctx: &Ctx, token: &str) -> Value {
    let kid = decode_header(token).unwrap().kid.unwrap();
    let aud = ctx.fake.client_id();
    let set = jwks(ctx).await;
    let jwk = set.find(&kid).expect("kid in JWKS");
    let by_jwk = decode::<Value>(
        token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation(&aud),
    )
    .expect("verifies with the JWK")
    .claims;
    let pem = pems(ctx).await.remove(&kid).expect("kid in v1 certs");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let by_pem = decode::<Value>(
        token,
        &DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        &validation(&aud),
    )
    .expect("verifies with the certificate")
    .claims;
    assert_eq!(by_jwk, by_pem);
    by_jwk
}

async fn fresh_id_token(ctx: &Ctx, email: &str) -> String {
    let body = ctx.exchange_ok(&ctx.mint(email).await.code).await;
    s(&body["id_token"]).to_owned()
}

#[tokio::test]
async fn id_tokens_verify_against_the_jwks_and_the_v1_certificates() {
    let ctx = spawn().await;
    let token = fresh_id_token(&ctx, "v@example.com").await;
    let header = decode_header(&token).unwrap();
    let kid = header.kid.clone().unwrap();
    assert_eq!(kid.len(), 40);
    assert!(kid.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let claims = verify_both(&ctx, &token).await;
    assert_eq!(claims["email"], "v@example.com");
}

#[tokio::test]
async fn both_cert_endpoints_publish_the_same_kids_with_cache_control() {
    let ctx = spawn().await;
    let resp = ctx
        .http
        .get(ctx.url("/oauth2/v3/certs"))
        .send()
        .await
        .unwrap();
    let cc = resp.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cc.starts_with("public, max-age="), "{cc}");
    assert!(cc.contains("must-revalidate"));
    let body: Value = resp.json().await.unwrap();
    let key = &body["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["e"], "AQAB");
    let mut jwks_kids: Vec<String> = jwks(&ctx)
        .await
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    let mut pem_kids: Vec<String> = pems(&ctx).await.into_keys().collect();
    jwks_kids.sort();
    pem_kids.sort();
    assert_eq!(jwks_kids, pem_kids);
    let resp = ctx
        .http
        .get(ctx.url("/oauth2/v1/certs"))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
}

#[tokio::test]
async fn the_jwks_max_age_is_settable() {
    let ctx = spawn().await;
    ctx.fake
        .settings(fake_google::SettingsPatch {
            jwks_max_age_secs: Some(42),
            ..Default::default()
        })
        .await
        .unwrap();
    let resp = ctx
        .http
        .get(ctx.url("/oauth2/v3/certs"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["cache-control"],
        "public, max-age=42, must-revalidate, no-transform"
    );
}

#[tokio::test]
async fn rotation_publishes_both_keys_then_retires_the_old_one() {
    let ctx = spawn().await;
    let old_token = fresh_id_token(&ctx, "rot@example.com").await;
    let old_kid = decode_header(&old_token).unwrap().kid.unwrap();
    let new_kid = ctx.fake.rotate_keys(false).await.unwrap();
    assert_ne!(old_kid, new_kid);
    assert_eq!(
        ctx.fake.published_kids(),
        vec![new_kid.clone(), old_kid.clone()]
    );
    // Old tokens still verify; new tokens are signed by the new key.
    verify_both(&ctx, &old_token).await;
    let new_token = fresh_id_token(&ctx, "rot@example.com").await;
    assert_eq!(decode_header(&new_token).unwrap().kid.unwrap(), new_kid);
    verify_both(&ctx, &new_token).await;
    assert_eq!(jwks(&ctx).await.keys.len(), 2);
    assert_eq!(pems(&ctx).await.len(), 2);
    // Retiring: only the newest key stays.
    let (status, body) = crate::helpers::split(
        ctx.http
            .post(ctx.url("/_fake/keys/rotate"))
            .json(&serde_json::json!({"retire_old": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let newest = s(&body["current"]).to_owned();
    let set = jwks(&ctx).await;
    assert_eq!(set.keys.len(), 1);
    assert!(set.find(&old_kid).is_none());
    assert!(pems(&ctx).await.contains_key(&newest));
    let newest_token = fresh_id_token(&ctx, "rot@example.com").await;
    verify_both(&ctx, &newest_token).await;
}

#[tokio::test]
async fn minted_id_tokens_verify_and_carry_the_requested_claims() {
    let ctx = spawn().await;
    let token = ctx
        .fake
        .mint_id_token(IdTokenRequest {
            azp: Some(fake_google::ANDROID_CLIENT_ID.into()),
            ttl_secs: Some(120),
            ..IdTokenRequest::new("app@example.com")
        })
        .await
        .unwrap();
    let claims = verify_both(&ctx, &token).await;
    assert_eq!(claims["azp"], fake_google::ANDROID_CLIENT_ID);
    assert!(claims.get("at_hash").is_none());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    // The same over HTTP.
    let (status, body) = ctx
        .http
        .post(ctx.url("/_fake/id_tokens"))
        .json(&serde_json::json!({"email": "app@example.com"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 201);
    let body: Value = body.json().await.unwrap();
    verify_both(&ctx, s(&body["id_token"])).await;
}
