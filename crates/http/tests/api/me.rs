//! `/v1/me` and Bearer authentication on every user route.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use offline_access_domain::memory::MemoryStore;
use offline_access_domain::ports::MockCredentialStore;
use offline_access_domain::{ConsentState, CredentialStore, RevokeError, StoreError};
use offline_access_http::HttpConfig;

use crate::helpers::*;

/// Every route that needs a Bearer ID token.
const USER_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/me"),
    ("DELETE", "/v1/me"),
    ("GET", "/v1/me/drive/appfolder"),
    ("GET", "/v1/me/drive/files"),
    ("POST", "/v1/me/drive/files?name=notes.json"),
    ("GET", "/v1/me/drive/files/aliceFile1"),
    ("DELETE", "/v1/me/drive/files/aliceFile1"),
    ("GET", "/v1/me/drive/files/aliceFile1/content"),
    ("PUT", "/v1/me/drive/files/aliceFile1/content"),
];

#[tokio::test]
async fn me_shows_the_stored_profile_and_credential_state_without_any_token() {
    let app = TestApp::new(Mocks::google());
    app.sign_in_alice().await;

    let answer = app.send(get("/v1/me", ID_ALICE)).await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["user"]["sub"], SUB_ALICE);
    assert_eq!(json["user"]["email"], "alice@example.com");
    assert_eq!(json["offline_access"], true);
    assert_eq!(json["consent"], "active");
    assert_eq!(json["drive_available"], true);
    assert!(json["scopes"].as_array().unwrap().len() >= 4);
    assert_no_canary(&answer.text());
}

#[tokio::test]
async fn me_for_a_user_never_signed_in_is_404() {
    let app = TestApp::new(Mocks::google());

    app.send(get("/v1/me", ID_BOB))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn me_shows_a_revoked_consent() {
    let app = TestApp::new(Mocks::google());
    app.sign_in_alice().await;
    let mut credential = app.stored(SUB_ALICE).await.unwrap();
    credential.mark_revoked(NOW);
    app.store.put(&credential).await.unwrap();

    let json = app.send(get("/v1/me", ID_ALICE)).await.json();

    assert_eq!(json["consent"], "revoked");
    assert_eq!(json["offline_access"], false);
}

/// Each kind of bad `Authorization` header and what its 401 message says (the challenge repeats it).
fn bad_bearers() -> Vec<(Option<String>, &'static str)> {
    let bearer = |token: &str| Some(format!("Bearer {token}"));
    vec![
        (None, "The Authorization header is missing"),
        (
            Some("Basic YWxpY2U6cHc=".to_owned()),
            "is not a Bearer token",
        ),
        (Some(ID_ALICE.to_owned()), "is not a Bearer token"),
        (bearer(""), "is malformed"),
        (bearer("a.b"), "is malformed"),
        (
            bearer("eyJhbGciOiJSUzI1NiJ9.canaryIdUnknown.c2ln"),
            "is malformed",
        ),
        (bearer(ID_EXPIRED), "has expired"),
        (bearer(ID_OTHER_APP), "issued for another client ID"),
        (bearer(ID_UNKNOWN_KEY), "key Google does not publish"),
        (
            bearer(ID_BAD_SIGNATURE),
            "signature or claims are not valid",
        ),
    ]
}

#[tokio::test]
async fn a_bad_bearer_is_401_on_every_user_route_with_no_drive_or_token_call() {
    let mut mocks = Mocks::bare();
    mocks.accept_id_tokens();
    mocks.tokens.expect_exchange_code().never();
    mocks.tokens.expect_refresh().never();
    mocks.tokens.expect_revoke().never();
    mocks.drive.expect_execute().never();
    let app = TestApp::new(mocks);
    let huge = format!("Bearer {}", "a".repeat(20_000));
    let headers: Vec<Option<String>> = bad_bearers()
        .into_iter()
        .map(|(header, _)| header)
        .chain([Some(huge)])
        .collect();
    for (method, path) in USER_ROUTES {
        for header in &headers {
            let mut builder = Request::builder().method(*method).uri(*path);
            if let Some(h) = header {
                builder = builder.header("authorization", h);
            }
            let answer = app.send(builder.body(Body::from("{}")).unwrap()).await;
            answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
            let challenge = answer.headers["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.starts_with(r#"Bearer error="invalid_token", error_description=""#),
                "{method} {path}: {challenge}"
            );
        }
    }
}

#[tokio::test]
async fn the_401_says_which_problem_the_bearer_has_and_repeats_it_in_the_challenge() {
    let mut mocks = Mocks::bare();
    mocks.accept_id_tokens();
    let app = TestApp::new(mocks);
    let mut messages = std::collections::HashSet::new();
    for (header, says) in bad_bearers() {
        let mut builder = Request::get("/v1/me");
        if let Some(h) = &header {
            builder = builder.header("authorization", h);
        }
        let answer = app.send(builder.body(Body::empty()).unwrap()).await;
        answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        let json = answer.json();
        let message = json["message"].as_str().unwrap();
        assert!(message.contains(says), "{header:?}: {message}");
        assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
        // The challenge carries the same sentence; neither echoes the token.
        assert_eq!(
            answer.headers["www-authenticate"].to_str().unwrap(),
            format!(r#"Bearer error="invalid_token", error_description="{message}""#)
        );
        assert!(!message.contains("canary") && !message.contains("YWxpY2U"));
        messages.insert(message.to_owned());
    }
    // Seven problems, seven sentences: missing, not a Bearer, malformed, expired, another audience, an unknown
    // key, and every other signature or claim failure.
    assert_eq!(messages.len(), 7, "{messages:?}");
}

#[tokio::test]
async fn user_a_never_sees_user_b() {
    let app = TestApp::new(Mocks::google());
    app.sign_in_alice().await;
    app.sign_in(CODE_BOB).await;

    let alice = app.send(get("/v1/me", ID_ALICE)).await.json();
    let bob = app.send(get("/v1/me", ID_BOB)).await.json();

    assert_eq!(alice["user"]["sub"], SUB_ALICE);
    assert_eq!(bob["user"]["sub"], SUB_BOB);
}

#[tokio::test]
async fn delete_me_revokes_at_google_and_forgets_the_user() {
    let mut mocks = Mocks::google_without_revoke();
    mocks
        .tokens
        .expect_revoke()
        .times(1)
        .withf(|token| token.expose_secret() == REFRESH_ALICE)
        .returning(|_| Ok(()));
    let app = TestApp::new(mocks);
    app.sign_in_alice().await;

    let answer = app
        .send(with_bearer("DELETE", "/v1/me", ID_ALICE, b""))
        .await;

    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert!(answer.body.is_empty());
    assert!(app.stored(SUB_ALICE).await.is_none());
    app.send(with_bearer("DELETE", "/v1/me", ID_ALICE, b""))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn delete_me_when_google_cannot_revoke_makes_the_credential_unusable_at_once_and_keeps_it_for_a_retry()
 {
    let mut mocks = Mocks::google_without_revoke();
    mocks
        .tokens
        .expect_revoke()
        .returning(|_| Err(RevokeError::Unavailable));
    let app = TestApp::new(mocks);
    app.sign_in_alice().await;

    let answer = app
        .send(with_bearer("DELETE", "/v1/me", ID_ALICE, b""))
        .await;

    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let kept = app.stored(SUB_ALICE).await.unwrap();
    assert_eq!(kept.consent, ConsentState::Forgotten);
    assert!(kept.access.is_none());
    assert!(kept.refresh_token.is_some());
    app.send(with_bearer("GET", "/v1/me", ID_ALICE, b""))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_store_that_is_down_is_503_store_unavailable() {
    let mut mocks = Mocks::bare();
    mocks.accept_id_tokens();
    let mut store = MockCredentialStore::new();
    store
        .expect_get()
        .returning(|_| Err(StoreError::Unavailable("connection refused".into())));
    store
        .expect_ping()
        .returning(|| Err(StoreError::Unavailable("connection refused".into())));
    let app = TestApp::with_store(
        mocks,
        HttpConfig::default(),
        Arc::new(store),
        MemoryStore::new(),
    );

    app.send(get("/v1/me", ID_ALICE))
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    app.send(get("/v1/me/drive/appfolder", ID_ALICE))
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
}

#[tokio::test]
async fn a_corrupt_stored_credential_is_a_500_that_names_no_detail() {
    let mut mocks = Mocks::bare();
    mocks.accept_id_tokens();
    let mut store = MockCredentialStore::new();
    store.expect_get().returning(|_| {
        Err(StoreError::Corrupt {
            subject: SUB_ALICE.into(),
            reason: "authentication tag mismatch".into(),
        })
    });
    let app = TestApp::with_store(
        mocks,
        HttpConfig::default(),
        Arc::new(store),
        MemoryStore::new(),
    );

    let answer = app.send(get("/v1/me", ID_ALICE)).await;

    answer.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert!(!answer.text().contains("tag mismatch"));
}

#[tokio::test]
async fn a_revoked_user_still_sees_the_state_but_drive_needs_reconsent() {
    let app = TestApp::new(Mocks::google());
    app.sign_in_alice().await;
    let mut credential = app.stored(SUB_ALICE).await.unwrap();
    credential.mark_revoked(NOW);
    app.store.put(&credential).await.unwrap();

    app.send(get("/v1/me/drive/appfolder", ID_ALICE))
        .await
        .assert_error(StatusCode::CONFLICT, "reconsent_required");
    assert_eq!(
        app.stored(SUB_ALICE).await.unwrap().consent,
        ConsentState::Revoked
    );
    assert_eq!(app.drive_call_count(), 0);
}
