//! Google's security events over real HTTP: the fake Google signs Security Event Tokens and POSTs them to the
//! server's `POST /risc`; the server verifies them and changes the stored grant. And the events it records for the
//! team's webhook.

use fake_google::{DisableReason, RiscEvent, RiscEventType, RiscStream, TokenIdentifierAlg};
use offline_access_domain::events::EventFilter;
use offline_access_domain::risc::SUPPORTED_EVENT_TYPES;
use offline_access_tests::jwt::signing_input;
use offline_access_tests::{ATTACKER_KEY_PEM, TestApp, TestOptions, captured_logs};
use reqwest::Method;
use serde_json::{Value, json};

const RISC_ISSUER: &str = "https://accounts.google.com/";

async fn app_with_stream(record_events: bool) -> TestApp {
    let app = TestApp::spawn_with_options(TestOptions {
        record_events,
        ..TestOptions::default()
    })
    .await;
    app.fake
        .control()
        .set_risc_stream(RiscStream {
            url: format!("{}/risc", app.url),
            events_requested: SUPPORTED_EVENT_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            enabled: true,
        })
        .unwrap();
    app
}

/// Signs in `email` and returns (sub, the app's Bearer ID token).
async fn signed_in(app: &TestApp, email: &str) -> (String, String) {
    let answer = app.sign_in(email).await;
    let sub = answer["user"]["sub"].as_str().unwrap().to_owned();
    (sub, app.id_token(email).await)
}

async fn send(app: &TestApp, event: RiscEvent) -> fake_google::RiscDelivery {
    app.fake.control().send_risc_event(event).await.unwrap()
}

async fn me(app: &TestApp, id_token: &str) -> Value {
    let response = app
        .authed(Method::GET, "/v1/me", id_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn appfolder_status(app: &TestApp, id_token: &str) -> (u16, Value) {
    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", id_token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_set(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}/risc", app.url))
        .header("content-type", "application/secevent+jwt")
        .body(token.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn event_claims(app: &TestApp, sub: &str, jti: &str) -> Value {
    json!({
        "iss": RISC_ISSUER,
        "aud": app.fake.control().client_id(),
        "iat": app.fake.control().now_unix(),
        "jti": jti,
        "events": {
            "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked": {
                "subject": {"subject_type": "iss-sub", "iss": RISC_ISSUER, "sub": sub}
            }
        }
    })
}

#[tokio::test]
async fn tokens_revoked_from_google_revokes_the_grant_and_drive_asks_for_consent_again_without_google()
 {
    let app = app_with_stream(false).await;
    let (sub, id_token) = signed_in(&app, "risc-alice@example.com").await;
    assert_eq!(appfolder_status(&app, &id_token).await.0, 200);

    let delivery = send(
        &app,
        RiscEvent::new(RiscEventType::TokensRevoked).user(&sub),
    )
    .await;

    assert_eq!(delivery.status, 202);
    assert_eq!(me(&app, &id_token).await["consent"], "revoked");
    let refreshes = app.token_calls("refresh_token").await;
    let (status, body) = appfolder_status(&app, &id_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("reconsent_required"))
    );
    assert_eq!(
        app.token_calls("refresh_token").await,
        refreshes,
        "no Google call"
    );
}

#[tokio::test]
async fn forged_none_alg_wrong_audience_wrong_issuer_and_garbage_sets_get_400_and_change_nothing() {
    let app = app_with_stream(false).await;
    let (sub, id_token) = signed_in(&app, "risc-bob@example.com").await;
    let kid = app.fake.control().current_kid();
    let claims = event_claims(&app, &sub, "forged-1");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.clone());
    let attacker = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(ATTACKER_KEY_PEM).unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.",
        signing_input(&json!({"alg": "none", "kid": kid}), &claims)
    );
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("999999999999-evil.apps.googleusercontent.com");
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("https://evil.example.com/");
    let mut no_jti = claims.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    let cases = [
        ("another key under Google's kid", attacker, "invalid_key"),
        ("alg none", none, "invalid_key"),
        (
            "wrong audience",
            app.sign_as_google(&wrong_aud),
            "invalid_audience",
        ),
        (
            "wrong issuer",
            app.sign_as_google(&wrong_iss),
            "invalid_issuer",
        ),
        ("no jti", app.sign_as_google(&no_jti), "invalid_request"),
        ("garbage", "not.a.token".to_owned(), "invalid_request"),
        ("empty", String::new(), "invalid_request"),
    ];
    for (name, token, err) in cases {
        let (status, body) = post_set(&app, &token).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["err"], err, "{name}: {body}");
        assert!(
            body["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}"
        );
        if !token.is_empty() {
            assert!(
                !body.to_string().contains(&token),
                "{name}: the token is echoed"
            );
        }
    }
    assert_eq!(me(&app, &id_token).await["consent"], "active");
    assert_eq!(appfolder_status(&app, &id_token).await.0, 200);
    // The genuine token with the same claims is acted on: the refusals were for the forgeries, not the claims.
    let (status, _) = post_set(&app, &app.sign_as_google(&claims)).await;
    assert_eq!(status, 202);
    assert_eq!(me(&app, &id_token).await["consent"], "revoked");
}

#[tokio::test]
async fn account_disabled_refuses_drive_without_calling_google_until_enabled() {
    let app = app_with_stream(false).await;
    let (sub, id_token) = signed_in(&app, "risc-carol@example.com").await;
    let delivery = send(
        &app,
        RiscEvent::new(RiscEventType::AccountDisabled)
            .user(&sub)
            .reason(DisableReason::Hijacking),
    )
    .await;
    assert_eq!(delivery.status, 202);
    assert_eq!(me(&app, &id_token).await["consent"], "disabled");
    let drive_calls = app.fake.control().requests().await.len();
    let (status, body) = appfolder_status(&app, &id_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("account_disabled"))
    );
    assert_eq!(
        app.fake.control().requests().await.len(),
        drive_calls,
        "no call to Google at all"
    );

    send(
        &app,
        RiscEvent::new(RiscEventType::AccountEnabled).user(&sub),
    )
    .await;
    assert_eq!(me(&app, &id_token).await["consent"], "active");
    assert_eq!(appfolder_status(&app, &id_token).await.0, 200);
}

#[tokio::test]
async fn token_revoked_by_prefix_or_hash_revokes_only_the_grant_holding_that_token() {
    for alg in [
        TokenIdentifierAlg::Prefix,
        TokenIdentifierAlg::HashBase64Sha512Sha512,
    ] {
        let app = app_with_stream(false).await;
        let (dave, dave_token) = signed_in(&app, "risc-dave@example.com").await;
        let (_, erin_token) = signed_in(&app, "risc-erin@example.com").await;
        let delivery = send(
            &app,
            RiscEvent::new(RiscEventType::TokenRevoked)
                .user(&dave)
                .token_identifier_alg(alg),
        )
        .await;
        assert_eq!(delivery.status, 202, "{alg:?}");
        assert_eq!(me(&app, &dave_token).await["consent"], "revoked", "{alg:?}");
        assert_eq!(me(&app, &erin_token).await["consent"], "active", "{alg:?}");
    }
}

#[tokio::test]
async fn a_duplicate_jti_is_acted_on_once_even_when_it_arrives_after_a_later_event() {
    let app = app_with_stream(false).await;
    let (sub, id_token) = signed_in(&app, "risc-frank@example.com").await;
    let disabled = send(
        &app,
        RiscEvent::new(RiscEventType::AccountDisabled)
            .user(&sub)
            .repeat(2),
    )
    .await;
    assert_eq!(disabled.statuses, vec![202, 202, 202]);
    send(
        &app,
        RiscEvent::new(RiscEventType::AccountEnabled).user(&sub),
    )
    .await;
    // Google re-sends the old disable: acknowledged, not acted on.
    let (status, _) = post_set(&app, &disabled.set).await;
    assert_eq!(status, 202);
    assert_eq!(me(&app, &id_token).await["consent"], "active");
}

#[tokio::test]
async fn revoking_the_user_at_google_pushes_tokens_revoked_and_the_grant_is_revoked_at_once() {
    let app = app_with_stream(false).await;
    let (sub, id_token) = signed_in(&app, "risc-grace@example.com").await;
    assert!(app.fake.control().revoke_user(&sub).await);
    assert_eq!(me(&app, &id_token).await["consent"], "revoked");
}

#[tokio::test]
async fn verification_and_events_for_unknown_users_are_acknowledged() {
    let app = app_with_stream(true).await;
    captured_logs();
    let delivery = send(
        &app,
        RiscEvent::new(RiscEventType::Verification).state("e2e-state-42"),
    )
    .await;
    assert_eq!(delivery.status, 202);
    assert!(
        captured_logs().contains("e2e-state-42"),
        "the state is logged"
    );
    let page = app
        .events
        .list_events(EventFilter::All, None, 10)
        .await
        .unwrap();
    let kinds: Vec<&str> = page.items.iter().map(|e| e.record.kind.as_str()).collect();
    assert_eq!(kinds, ["risc.verification"]);
    // A well-signed event about a user this server does not hold: 202 and nothing.
    let (status, _) = post_set(
        &app,
        &app.sign_as_google(&event_claims(&app, "424242424242", "unknown-1")),
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn grant_changes_record_their_events_for_the_webhook_and_no_token() {
    let app = app_with_stream(true).await;
    let (sub, id_token) = signed_in(&app, "events-heidi@example.com").await;
    send(
        &app,
        RiscEvent::new(RiscEventType::SessionsRevoked).user(&sub),
    )
    .await;
    send(
        &app,
        RiscEvent::new(RiscEventType::TokensRevoked).user(&sub),
    )
    .await;
    let response = app
        .authed(Method::DELETE, "/v1/me", &id_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let page = app
        .events
        .list_events(EventFilter::Pending, None, 100)
        .await
        .unwrap();
    let bodies: Vec<Value> = page
        .items
        .iter()
        .map(|e| serde_json::from_str(&e.record.body).unwrap())
        .collect();
    let kinds: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "user.signed_in",
            "account.sessions_revoked",
            "grant.revoked",
            "grant.revoked",
            "user.forgotten"
        ]
    );
    assert_eq!(bodies[2]["data"]["source"], "risc");
    assert_eq!(bodies[3]["data"]["source"], "forget");
    for (event, body) in page.items.iter().zip(&bodies) {
        assert_eq!(body["data"]["sub"], sub.as_str());
        assert!(body["timestamp"].is_string());
        for shape in ["ya29.", "1//", "eyJ"] {
            assert!(
                !event.record.body.contains(shape),
                "a token in {}",
                event.record.body
            );
        }
    }
}
