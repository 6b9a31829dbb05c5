//! Cross-Account Protection: the RISC API, Security Event Tokens pushed to a receiver (an axum
//! server in the test), and the controls that make them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use fake_google::{CodeRequest, RiscEvent, RiscEventType};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::helpers::{Ctx, s, spawn, split};

const ISSUER: &str = "https://accounts.google.com/";
const RISC_AUD: &str =
    "https://risc.googleapis.com/google.identity.risc.v1beta.RiscManagementService";
const PUSH: &str = "https://schemas.openid.net/secevent/risc/delivery-method/push";
const TOKENS_REVOKED: &str = "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked";
const TOKEN_REVOKED: &str = "https://schemas.openid.net/secevent/oauth/event-type/token-revoked";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/risc/event-type/verification";
const SESSIONS_REVOKED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked";

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Got {
    content_type: String,
    body: String,
}

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Got>>>,
    status: Arc<AtomicU16>,
    arrived: Arc<Notify>,
}

/// A RISC receiver on loopback that records every POST and answers `status` (202 by default).
struct Receiver {
    url: String,
    inbox: Inbox,
}

async fn receive(
    State(inbox): State<Inbox>,
    headers: HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    inbox.got.lock().unwrap().push(Got { content_type, body });
    inbox.arrived.notify_waiters();
    axum::http::StatusCode::from_u16(inbox.status.load(Ordering::SeqCst)).unwrap()
}

async fn receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let inbox = Inbox::default();
    inbox.status.store(202, Ordering::SeqCst);
    let app = Router::new()
        .route("/risc", post(receive))
        .with_state(inbox.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/risc"),
        inbox,
    }
}

impl Receiver {
    /// Waits (at most 10 s) until `n` POSTs arrived and returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Got> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.inbox.arrived.notified();
            {
                let got = self.inbox.got.lock().unwrap();
                if got.len() >= n {
                    return got.clone();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("the receiver got {} of {n} SETs in 10 s", self.count());
            }
        }
    }

    fn count(&self) -> usize {
        self.inbox.got.lock().unwrap().len()
    }

    fn answer(&self, status: u16) {
        self.inbox.status.store(status, Ordering::SeqCst);
    }
}

/// Verifies a SET against the fake's JWKS (RS256, `iss` with the slash, `aud`) and returns its
/// claims; checks the header's `typ` and that the `kid` is published.
async fn verify_set(ctx: &Ctx, token: &str, aud: &str) -> Value {
    let header = decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    let kid = header.kid.expect("a kid");
    let jwks: JwkSet = ctx.get_json("/oauth2/v3/certs").await;
    let jwk = jwks.find(&kid).expect("the SET's kid is in the JWKS");
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[aud]);
    // SETs carry no exp (Google's neither): receivers must not require one.
    v.set_required_spec_claims::<&str>(&[]);
    v.validate_exp = false;
    let claims = decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("the SET verifies")
        .claims;
    assert!(claims.get("exp").is_none());
    claims
}

/// A service-account JWT for the RISC API, signed with the key of `POST /_fake/service-accounts`.
async fn service_account_jwt(ctx: &Ctx) -> String {
    let (status, file) = ctx
        .post_json("/_fake/service-accounts", None, &json!({}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(file["type"], "service_account");
    assert_eq!(file["token_uri"], ctx.url("/token"));
    let email = s(&file["client_email"]);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(s(&file["private_key_id"]).to_owned());
    let now = ctx.fake.now_unix();
    let claims =
        json!({"iss": email, "sub": email, "aud": RISC_AUD, "iat": now, "exp": now + 3600});
    let key = EncodingKey::from_rsa_pem(s(&file["private_key"]).as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn risc_post(ctx: &Ctx, path: &str, bearer: &str, body: &Value) -> (u16, Value) {
    ctx.post_json(path, Some(bearer), body).await
}

async fn control_post(ctx: &Ctx, path: &str, body: &Value) -> (u16, Value) {
    ctx.post_json(path, None, body).await
}

/// `POST /v1beta/stream:verify` with `state`.
async fn verify(ctx: &Ctx, jwt: &str, state: &str) -> (u16, Value) {
    risc_post(
        ctx,
        "/v1beta/stream:verify",
        jwt,
        &json!({ "state": state }),
    )
    .await
}

/// `POST /v1beta/stream/status:update`.
async fn set_status(ctx: &Ctx, jwt: &str, status: &str) -> (u16, Value) {
    risc_post(
        ctx,
        "/v1beta/stream/status:update",
        jwt,
        &json!({ "status": status }),
    )
    .await
}

/// Registers a stream for `events` at the receiver through the RISC API.
async fn register(ctx: &Ctx, rx: &Receiver, events: &[&str]) -> String {
    let jwt = service_account_jwt(ctx).await;
    let (status, body) = risc_post(
        ctx,
        "/v1beta/stream:update",
        &jwt,
        &json!({"delivery": {"delivery_method": PUSH, "url": rx.url}, "events_requested": events}),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({})));
    jwt
}

/// A user with a refresh token for the default client; returns (sub, refresh token).
async fn signed_in(ctx: &Ctx, email: &str) -> (String, String) {
    let minted = ctx.mint(email).await;
    let body = ctx.exchange_ok(&minted.code).await;
    (minted.sub, s(&body["refresh_token"]).to_owned())
}

async fn deliveries(ctx: &Ctx) -> Vec<fake_google::JournalEntry> {
    ctx.fake
        .requests()
        .await
        .into_iter()
        .filter(|e| e.endpoint == "risc_delivery")
        .collect()
}

#[tokio::test]
async fn risc_configuration_names_googles_issuer_with_the_slash_and_the_fakes_jwks() {
    let ctx = spawn().await;
    let (status, body) = ctx.get("/.well-known/risc-configuration").await;
    assert_eq!(status, 200);
    assert_eq!(body["issuer"], ISSUER);
    assert_eq!(body["jwks_uri"], ctx.url("/oauth2/v3/certs"));
    assert_eq!(body["delivery_methods_supported"], json!([PUSH]));
    assert_eq!(
        body["add_subject_endpoint"],
        ctx.url("/v1beta/subjects:add")
    );
}

#[tokio::test]
async fn a_service_account_registers_a_stream_and_reads_it_back() {
    let ctx = spawn().await;
    let rx = receiver().await;
    let jwt = register(&ctx, &rx, &[TOKENS_REVOKED, VERIFICATION, TOKENS_REVOKED]).await;
    let (status, body) = ctx.get_bearer("/v1beta/stream", &jwt).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"delivery": {"delivery_method": PUSH, "url": rx.url},
               "events_requested": [TOKENS_REVOKED, VERIFICATION]})
    );
    let (status, body) = ctx.get_bearer("/v1beta/stream/status", &jwt).await;
    assert_eq!((status, body), (200, json!({"status": "enabled"})));
    let stream = ctx.fake.risc_stream().expect("a stream");
    assert_eq!(stream.url, rx.url);
    assert!(stream.enabled);
    // The journal names the calling service account.
    let journal = ctx.fake.requests().await;
    let update = journal
        .iter()
        .find(|e| e.path == "/v1beta/stream:update")
        .unwrap();
    assert_eq!(update.endpoint, "risc");
    assert_eq!(
        update.client_id.as_deref(),
        Some("risc-admin@fake-google-project.iam.gserviceaccount.com")
    );
    // A reset forgets the stream.
    ctx.fake.reset().await.unwrap();
    assert!(ctx.fake.risc_stream().is_none());
    assert_eq!(ctx.get_bearer("/v1beta/stream", &jwt).await.0, 404);
}

fn forged(header: &Value, claims: &Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2lnbmF0dXJl", enc(header), enc(claims))
}

#[tokio::test]
async fn stream_update_refuses_a_missing_or_garbage_bearer_and_a_wrong_audience_with_401() {
    let ctx = spawn().await;
    let body = json!({"delivery": {"delivery_method": PUSH, "url": "https://example.com/risc"},
                      "events_requested": [TOKENS_REVOKED]});
    let now = ctx.fake.now_unix();
    let email = "sa@p.iam.gserviceaccount.com";
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "k1"});
    let claims = |aud: &str, sub: &str, exp: i64| json!({"iss": email, "sub": sub, "aud": aud, "iat": now, "exp": exp});
    // The signature is never checked: a well-shaped JWT with any signature passes.
    let shaped = forged(&header, &claims(RISC_AUD, email, now + 600));
    assert_eq!(
        risc_post(&ctx, "/v1beta/stream:update", &shaped, &body)
            .await
            .0,
        200
    );
    let bad = [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        forged(
            &header,
            &claims("https://oauth2.googleapis.com/token", email, now + 600),
        ),
        forged(&header, &claims(RISC_AUD, "other@example.com", now + 600)),
        forged(&header, &claims(RISC_AUD, email, now - 10)),
        forged(
            &json!({"alg": "RS256"}),
            &claims(RISC_AUD, email, now + 600),
        ),
    ];
    for token in &bad {
        let (status, answer) = risc_post(&ctx, "/v1beta/stream:update", token, &body).await;
        assert_eq!(status, 401, "{token}: {answer}");
        assert_eq!(answer["error"]["code"], 401);
        assert_eq!(answer["error"]["status"], "UNAUTHENTICATED");
        assert!(s(&answer["error"]["message"]).contains("invalid authentication credentials"));
    }
    let resp = ctx
        .http
        .post(ctx.url("/v1beta/stream:update"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("www-authenticate"));
    let (status, answer) = split(resp).await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"]["status"], "UNAUTHENTICATED");
    assert!(s(&answer["error"]["message"]).contains("missing required authentication"));
    // A refused call changed nothing.
    assert_eq!(
        ctx.fake.risc_stream().unwrap().url,
        "https://example.com/risc"
    );
}

#[tokio::test]
async fn stream_update_refuses_unknown_event_types_bad_urls_and_other_delivery_methods() {
    let ctx = spawn().await;
    let jwt = service_account_jwt(&ctx).await;
    let bodies = [
        json!({"delivery": {"delivery_method": PUSH, "url": "https://example.com/r"},
               "events_requested": ["https://schemas.openid.net/secevent/risc/event-type/account-purged"]}),
        json!({"delivery": {"delivery_method": PUSH, "url": "ftp://example.com/r"}, "events_requested": []}),
        json!({"delivery": {"delivery_method": "https://schemas.openid.net/secevent/risc/delivery-method/poll",
                            "url": "https://example.com/r"}}),
        json!({"events_requested": [TOKENS_REVOKED]}),
    ];
    for body in &bodies {
        let (status, answer) = risc_post(&ctx, "/v1beta/stream:update", &jwt, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT");
    }
    assert!(ctx.fake.risc_stream().is_none());
}

#[tokio::test]
async fn every_event_type_arrives_as_a_set_that_verifies_against_the_jwks() {
    let ctx = spawn().await;
    let rx = receiver().await;
    let (sub, _) = signed_in(&ctx, "risc-all@example.com").await;
    let aud = ctx.fake.client_id();
    let mut jtis = HashSet::new();
    for (i, kind) in RiscEventType::ALL.into_iter().enumerate() {
        let mut req = json!({"type": kind.as_str(), "url": rx.url});
        match kind {
            RiscEventType::Verification => req["state"] = json!("st-1"),
            RiscEventType::AccountDisabled => {
                req["sub"] = json!(sub);
                req["reason"] = json!("hijacking");
            }
            _ => req["sub"] = json!(sub),
        }
        let (status, answer) = control_post(&ctx, "/_fake/risc/events", &req).await;
        assert_eq!(status, 200, "{req}: {answer}");
        assert_eq!(answer["status"], 202);
        assert_eq!(answer["statuses"], json!([202]));
        let got = rx.wait_for(i + 1).await;
        let got = &got[i];
        assert_eq!(got.content_type, "application/secevent+jwt");
        assert_eq!(got.body, s(&answer["set"]));
        let claims = verify_set(&ctx, &got.body, &aud).await;
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["jti"], answer["jti"]);
        assert!(jtis.insert(s(&claims["jti"]).to_owned()), "jtis are unique");
        let iat = claims["iat"].as_i64().unwrap();
        assert!((iat - ctx.fake.now_unix()).abs() < 60);
        let events = claims["events"].as_object().unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[kind.uri()];
        match kind {
            RiscEventType::Verification => assert_eq!(event, &json!({"state": "st-1"})),
            RiscEventType::TokenRevoked => {
                assert_eq!(event["subject"]["subject_type"], "oauth_token");
                assert_eq!(event["subject"]["token_type"], "refresh_token");
                assert_eq!(event["subject"]["token_identifier_alg"], "prefix");
            }
            _ => {
                assert_eq!(
                    event["subject"],
                    json!({"subject_type": "iss-sub", "iss": ISSUER, "sub": sub})
                );
                let reason = (kind == RiscEventType::AccountDisabled).then_some("hijacking");
                assert_eq!(event["reason"].as_str(), reason);
            }
        }
    }
    // Each delivery is journaled with the receiver's status.
    let journal = deliveries(&ctx).await;
    assert_eq!(journal.len(), RiscEventType::ALL.len());
    assert!(journal.iter().all(|e| e.status == 202 && e.path == rx.url));
    assert_eq!(journal[0].event.as_deref(), Some("tokens-revoked"));
    assert_eq!(journal[0].sub.as_deref(), Some(sub.as_str()));
}

#[tokio::test]
async fn repeat_delivers_the_same_token_with_the_same_jti_again() {
    let ctx = spawn().await;
    let rx = receiver().await;
    let (sub, _) = signed_in(&ctx, "risc-repeat@example.com").await;
    let delivery = ctx
        .fake
        .send_risc_event(
            RiscEvent::new(RiscEventType::SessionsRevoked)
                .user(&sub)
                .repeat(2)
                .url(&rx.url),
        )
        .await
        .unwrap();
    assert_eq!(delivery.statuses, vec![202, 202, 202]);
    let got = rx.wait_for(3).await;
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|g| g.body == delivery.set));
    let claims = verify_set(&ctx, &got[2].body, &ctx.fake.client_id()).await;
    assert_eq!(claims["jti"], delivery.jti.as_str());
    let journal = deliveries(&ctx).await;
    assert_eq!(journal.len(), 3);
    assert!(
        journal
            .iter()
            .all(|e| e.jti.as_deref() == Some(delivery.jti.as_str()))
    );
}

/// Google's `hash_base64_sha512_sha512`, computed here independently of the fake.
fn double_sha512(token: &str) -> String {
    let once = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, token.as_bytes());
    let twice = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, once.as_ref());
    STANDARD.encode(twice.as_ref())
}

async fn token_revoked_subject(ctx: &Ctx, rx: &Receiver, sub: &str, alg: &str) -> Value {
    let (status, answer) = control_post(
        ctx,
        "/_fake/risc/events",
        &json!({"type": "token-revoked", "sub": sub, "token_identifier_alg": alg, "url": rx.url}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let claims = verify_set(ctx, s(&answer["set"]), &ctx.fake.client_id()).await;
    claims["events"][TOKEN_REVOKED]["subject"].clone()
}

#[tokio::test]
async fn token_revoked_names_the_users_current_refresh_token_by_prefix_and_by_hash() {
    let ctx = spawn().await;
    let rx = receiver().await;
    let (sub, first) = signed_in(&ctx, "risc-rt@example.com").await;
    // A second consent hands out another refresh token: that one is current.
    let again = ctx
        .fake
        .mint_code(CodeRequest::new("risc-rt@example.com").consent())
        .await
        .unwrap();
    let current = s(&ctx.exchange_ok(&again.code).await["refresh_token"]).to_owned();
    assert_ne!(first, current);
    let subject = token_revoked_subject(&ctx, &rx, &sub, "prefix").await;
    assert_eq!(
        subject,
        json!({"subject_type": "oauth_token", "token_type": "refresh_token",
               "token_identifier_alg": "prefix", "token": &current[..16]})
    );
    let subject = token_revoked_subject(&ctx, &rx, &sub, "hash_base64_sha512_sha512").await;
    assert_eq!(subject["token_identifier_alg"], "hash_base64_sha512_sha512");
    assert_eq!(subject["token"], double_sha512(&current).as_str());
    assert_ne!(subject["token"], double_sha512(&first).as_str());
    // A rotated refresh token becomes the current one.
    let (status, _) = control_post(
        &ctx,
        "/_fake/settings",
        &json!({"rotate_refresh_tokens": true}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, refreshed) = ctx.refresh(&current).await;
    assert_eq!(status, 200);
    let rotated = s(&refreshed["refresh_token"]).to_owned();
    let subject = token_revoked_subject(&ctx, &rx, &sub, "hash_base64_sha512_sha512").await;
    assert_eq!(subject["token"], double_sha512(&rotated).as_str());
    // No refresh token for another client: 404.
    let other = ctx.fake.add_client().await;
    let (status, answer) = control_post(
        &ctx,
        "/_fake/risc/events",
        &json!({"type": "token-revoked", "sub": sub, "aud": other.client_id, "url": rx.url}),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
}

#[tokio::test]
async fn verify_sends_a_verification_event_with_the_state_even_to_a_failing_receiver() {
    let ctx = spawn().await;
    let rx = receiver().await;
    let jwt = register(&ctx, &rx, &[SESSIONS_REVOKED]).await;
    let (status, body) = verify(&ctx, &jwt, "hello-42").await;
    assert_eq!((status, body), (200, json!({})));
    let got = rx.wait_for(1).await;
    let claims = verify_set(&ctx, &got[0].body, &ctx.fake.client_id()).await;
    assert_eq!(
        claims["events"],
        json!({ VERIFICATION: {"state": "hello-42"} })
    );
    // A receiver answering 500: still 200, and the journal says 500.
    rx.answer(500);
    let (status, body) = verify(&ctx, &jwt, "again").await;
    assert_eq!((status, body), (200, json!({})));
    rx.wait_for(2).await;
    let journal = deliveries(&ctx).await;
    assert_eq!(
        journal.iter().map(|e| e.status).collect::<Vec<_>>(),
        vec![202, 500]
    );
    assert!(
        journal
            .iter()
            .all(|e| e.event.as_deref() == Some("verification"))
    );
}

#[tokio::test]
async fn a_disabled_stream_sends_nothing() {
    let ctx = spawn().await;
    let rx = receiver().await;
    let (sub, _) = signed_in(&ctx, "risc-off@example.com").await;
    let jwt = register(&ctx, &rx, &[TOKENS_REVOKED, SESSIONS_REVOKED]).await;
    let (status, body) = set_status(&ctx, &jwt, "disabled").await;
    assert_eq!((status, body), (200, json!({"status": "disabled"})));
    let (_, body) = ctx.get_bearer("/v1beta/stream/status", &jwt).await;
    assert_eq!(body, json!({"status": "disabled"}));
    // The control API says why nothing was sent; verify and a revocation send nothing either.
    let (status, answer) = control_post(
        &ctx,
        "/_fake/risc/events",
        &json!({"type": "sessions-revoked", "sub": sub}),
    )
    .await;
    assert_eq!((status, s(&answer["error"])), (409, "stream_disabled"));
    let (status, _) = verify(&ctx, &jwt, "x").await;
    assert_eq!(status, 200);
    assert!(ctx.fake.revoke_user(&sub).await);
    // Deliveries are made before the calls answer: nothing was made.
    assert!(deliveries(&ctx).await.is_empty());
    assert_eq!(rx.count(), 0);
    // Enabled again, the next event is the first the receiver sees.
    let (status, _) = set_status(&ctx, &jwt, "enabled").await;
    assert_eq!(status, 200);
    let (status, _) = verify(&ctx, &jwt, "on").await;
    assert_eq!(status, 200);
    let got = rx.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let claims = verify_set(&ctx, &got[0].body, &ctx.fake.client_id()).await;
    assert_eq!(claims["events"][VERIFICATION]["state"], "on");
}

#[tokio::test]
async fn revoking_a_user_pushes_tokens_revoked_when_the_stream_requests_it() {
    let ctx = spawn().await;
    let rx = receiver().await;
    let (sub, refresh) = signed_in(&ctx, "risc-revoke@example.com").await;
    // A stream without tokens-revoked: the revocation sends nothing.
    register(&ctx, &rx, &[SESSIONS_REVOKED]).await;
    let (status, _) = control_post(&ctx, &format!("/_fake/users/{sub}/revoke"), &json!({})).await;
    assert_eq!(status, 200);
    assert!(deliveries(&ctx).await.is_empty());
    // With tokens-revoked requested, it does, after the revocation took effect.
    register(&ctx, &rx, &[TOKENS_REVOKED]).await;
    let (sub, refresh2) = signed_in(&ctx, "risc-revoke@example.com").await;
    assert_ne!(refresh, refresh2);
    let (status, _) = control_post(&ctx, &format!("/_fake/users/{sub}/revoke"), &json!({})).await;
    assert_eq!(status, 200);
    let got = rx.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let claims = verify_set(&ctx, &got[0].body, &ctx.fake.client_id()).await;
    assert_eq!(
        claims["events"],
        json!({ TOKENS_REVOKED: {"subject": {"subject_type": "iss-sub", "iss": ISSUER, "sub": sub}} })
    );
    assert_eq!(ctx.refresh(&refresh2).await.0, 400);
    // A receiver that is down does not fail the revocation; the journal records it.
    rx.answer(503);
    assert!(ctx.fake.revoke_user(&sub).await);
    rx.wait_for(2).await;
    let journal = deliveries(&ctx).await;
    assert_eq!(journal.last().map(|e| e.status), Some(503));
}

#[tokio::test]
async fn control_events_need_a_receiver_a_known_user_and_fitting_fields() {
    let ctx = spawn().await;
    let (sub, _) = signed_in(&ctx, "risc-ctl@example.com").await;
    let cases = [
        (
            json!({"type": "sessions-revoked", "sub": sub}),
            409,
            "no_receiver",
        ),
        (
            json!({"type": "sessions-revoked", "sub": "nobody", "url": "http://127.0.0.1:9/r"}),
            404,
            "not_found",
        ),
        (
            json!({"type": "sessions-revoked", "url": "http://127.0.0.1:9/r"}),
            400,
            "bad_request",
        ),
        (
            json!({"type": "verification", "sub": sub, "url": "http://127.0.0.1:9/r"}),
            400,
            "bad_request",
        ),
        (
            json!({"type": "sessions-revoked", "sub": sub, "reason": "hijacking", "url": "http://127.0.0.1:9/r"}),
            400,
            "bad_request",
        ),
        (
            json!({"type": "account-disabled", "sub": sub, "reason": "bored", "url": "http://127.0.0.1:9/r"}),
            400,
            "bad_request",
        ),
        (
            json!({"type": "account-purged", "sub": sub, "url": "http://127.0.0.1:9/r"}),
            400,
            "bad_request",
        ),
        (
            json!({"type": "verification", "url": "file:///etc/passwd"}),
            400,
            "bad_request",
        ),
        (
            json!({"type": "verification", "repeat": 101, "url": "http://127.0.0.1:9/r"}),
            400,
            "bad_request",
        ),
    ];
    for (req, status, error) in cases {
        let (got, answer) = control_post(&ctx, "/_fake/risc/events", &req).await;
        assert_eq!(
            (got, s(&answer["error"])),
            (status, error),
            "{req}: {answer}"
        );
        assert!(!s(&answer["message"]).is_empty());
    }
    // A stream that does not request the type sends nothing either.
    let rx = receiver().await;
    register(&ctx, &rx, &[TOKENS_REVOKED]).await;
    let (status, answer) = control_post(
        &ctx,
        "/_fake/risc/events",
        &json!({"type": "account-enabled", "sub": sub}),
    )
    .await;
    assert_eq!((status, s(&answer["error"])), (409, "event_not_requested"));
    assert!(deliveries(&ctx).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_receiver_answers_status_0_with_an_error() {
    let ctx = spawn().await;
    // A port nobody listens on any more.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let (status, answer) = control_post(
        &ctx,
        "/_fake/risc/events",
        &json!({"type": "verification", "state": "s", "repeat": 1, "url": format!("http://{addr}/risc?k=v")}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], 0);
    assert_eq!(answer["statuses"], json!([0, 0]));
    assert!(!s(&answer["error"]).is_empty());
    let journal = deliveries(&ctx).await;
    assert_eq!(journal.len(), 2);
    assert!(journal.iter().all(|e| e.status == 0 && e.error.is_some()));
    assert_eq!(journal[0].path, format!("http://{addr}/risc"));
}

#[tokio::test]
async fn the_stream_can_be_set_through_the_control_api() {
    let ctx = spawn().await;
    let rx = receiver().await;
    let (status, body) = control_post(
        &ctx,
        "/_fake/risc/stream",
        &json!({"url": rx.url, "events_requested": [VERIFICATION]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"url": rx.url, "events_requested": [VERIFICATION], "enabled": true})
    );
    let (status, _) = control_post(
        &ctx,
        "/_fake/risc/stream",
        &json!({"url": rx.url, "events_requested": ["urn:nope"]}),
    )
    .await;
    assert_eq!(status, 400);
    let delivery = ctx
        .fake
        .send_risc_event(RiscEvent::new(RiscEventType::Verification).state("typed"))
        .await
        .unwrap();
    assert_eq!(delivery.status, 202);
    assert_eq!(rx.wait_for(1).await.len(), 1);
    ctx.fake.reset().await.unwrap();
    assert_eq!(ctx.get("/_fake/risc/stream").await.0, 404);
}
