//! `POST /authcode`: the sign-in contract, every refusal, and that refusals never reach Google.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use offline_access_domain::memory::MemoryStore;
use offline_access_domain::ports::MockCredentialStore;
use offline_access_domain::{StoreError, TokenError, VerifyError};
use offline_access_http::HttpConfig;

use crate::helpers::*;

fn exchange_never_called() -> Mocks {
    let mut mocks = Mocks::bare();
    mocks.tokens.expect_exchange_code().never();
    mocks.verifier.expect_verify().never();
    mocks
}

#[tokio::test]
async fn a_form_post_like_the_android_sample_signs_a_new_user_in() {
    let app = TestApp::new(Mocks::google());

    let answer = app.sign_in_alice().await;

    let json = answer.json();
    assert_eq!(json["user"]["sub"], SUB_ALICE);
    assert_eq!(json["user"]["email"], "alice@example.com");
    assert_eq!(json["user"]["email_verified"], true);
    assert_eq!(json["user"]["name"], "Alice Example");
    assert_eq!(json["user"]["given_name"], "Alice");
    assert_eq!(json["user"]["family_name"], "Example");
    assert_eq!(json["user"]["locale"], "en");
    assert_eq!(
        json["user"]["picture"],
        "https://lh3.googleusercontent.com/a/photo"
    );
    assert_eq!(json["offline_access"], true);
    assert_eq!(json["new_user"], true);
    assert_eq!(json["drive_available"], true);
    assert!(json.get("hint").is_none());
    let scopes: Vec<&str> = json["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(scopes.contains(&"https://www.googleapis.com/auth/drive.appdata"));
    assert!(scopes.contains(&"openid"));
    assert_no_canary(&answer.text());
    let stored = app.stored(SUB_ALICE).await.unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose_secret(), REFRESH_ALICE);
    assert_eq!(answer.headers.get("cache-control").unwrap(), "no-store");
}

#[tokio::test]
async fn a_json_body_signs_in_too() {
    let app = TestApp::new(Mocks::google());

    let answer = app
        .send(authcode_json(&format!(r#"{{"authCode":"{CODE_ALICE}"}}"#)))
        .await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["user"]["sub"], SUB_ALICE);
}

#[tokio::test]
async fn a_second_sign_in_without_a_refresh_token_keeps_offline_access() {
    let app = TestApp::new(Mocks::google());
    app.sign_in_alice().await;

    let answer = app.sign_in(CODE_ALICE_AGAIN).await;

    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    assert_eq!(json["new_user"], false);
    assert_eq!(json["offline_access"], true);
    assert!(json.get("hint").is_none());
    let stored = app.stored(SUB_ALICE).await.unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose_secret(), REFRESH_ALICE);
}

#[tokio::test]
async fn a_sign_in_without_any_refresh_token_says_to_request_offline_access_again() {
    let app = TestApp::new(Mocks::google());

    let answer = app.sign_in(CODE_ALICE_AGAIN).await;

    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    assert_eq!(json["offline_access"], false);
    assert_eq!(json["hint"], "request_offline_access_again");
}

#[tokio::test]
async fn granted_scopes_without_drive_appdata_sign_in_with_drive_unavailable() {
    let app = TestApp::new(Mocks::google());

    let answer = app.sign_in(CODE_NO_DRIVE).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["drive_available"], false);
}

#[tokio::test]
async fn the_same_code_posted_twice_gets_the_first_answer_with_one_call_to_google() {
    let mut mocks = Mocks::bare();
    mocks
        .tokens
        .expect_exchange_code()
        .times(1)
        .returning(|code| exchange(code.expose_secret()));
    mocks.accept_id_tokens();
    let app = TestApp::new(mocks);

    let first = app.sign_in(CODE_ALICE).await;
    let second = app.sign_in(CODE_ALICE).await;

    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(first.json()["user"], second.json()["user"]);
}

#[tokio::test]
async fn a_code_google_rejects_is_invalid_grant_and_nothing_is_stored() {
    let app = TestApp::new(Mocks::google());

    app.sign_in(CODE_USED)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");

    assert!(app.stored(SUB_ALICE).await.is_none());
}

#[tokio::test]
async fn a_replayed_code_after_sign_in_leaves_the_stored_credential_unchanged() {
    let app = TestApp::new(Mocks::google());
    app.sign_in_alice().await;
    let before = app.stored(SUB_ALICE).await.unwrap();

    app.sign_in(CODE_USED)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");

    let after = app.stored(SUB_ALICE).await.unwrap();
    assert_eq!(before.version, after.version);
}

#[tokio::test]
async fn without_x_requested_with_the_answer_is_403_and_google_is_never_called() {
    let app = TestApp::new(exchange_never_called());
    let request = Request::post("/authcode")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("authCode={CODE_ALICE}")))
        .unwrap();

    app.send(request)
        .await
        .assert_error(StatusCode::FORBIDDEN, "missing_csrf_header");
}

#[tokio::test]
async fn an_empty_x_requested_with_is_refused_before_the_body_or_bearer_is_looked_at() {
    let app = TestApp::new(exchange_never_called());
    // A bad content type and a bad Bearer too: the CSRF check answers first.
    let request = Request::post("/authcode")
        .header("x-requested-with", "")
        .header("content-type", "text/plain")
        .header("authorization", format!("Bearer {ID_BAD_SIGNATURE}"))
        .body(Body::from("x".repeat(200_000)))
        .unwrap();

    app.send(request)
        .await
        .assert_error(StatusCode::FORBIDDEN, "missing_csrf_header");
}

#[tokio::test]
async fn malformed_codes_and_bodies_are_400_with_zero_token_calls() {
    let app = TestApp::new(exchange_never_called());
    let long = "a".repeat(2049);
    let cases: Vec<Request<Body>> = vec![
        authcode_form(""),
        authcode_form(&long),
        authcode_form("4/0abc\ndef"),
        authcode_form("4/0abc\u{0}def"),
        authcode_form("4/0abc\u{7f}def"),
        authcode_form("4/0abc déf"),
        form_body("code=4/0abc"),
        form_body(""),
        form_body("authCode=a&authCode=b"),
        authcode_json("[]"),
        authcode_json(r#"["4/0abc"]"#),
        authcode_json("42"),
        authcode_json(r#""4/0abc""#),
        authcode_json("null"),
        authcode_json("{}"),
        authcode_json(r#"{"authCode": 42}"#),
        authcode_json(r#"{"authCode": null}"#),
        authcode_json(r#"{"authCode": ["4/0abc"]}"#),
        authcode_json(r#"{"authCode": "4/0\u0000abc"}"#),
        authcode_json("{not json"),
        authcode_json(""),
    ];
    for request in cases {
        let answer = app.send(request).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
}

fn form_body(body: impl Into<String>) -> Request<Body> {
    Request::post("/authcode")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-requested-with", "XMLHttpRequest")
        .body(Body::from(body.into()))
        .unwrap()
}

#[tokio::test]
async fn an_unknown_or_missing_content_type_is_415_with_zero_token_calls() {
    let app = TestApp::new(exchange_never_called());
    for content_type in [
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
        Some("application/octet-stream"),
        Some(""),
        None,
    ] {
        let mut builder = Request::post("/authcode").header("x-requested-with", "x");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let request = builder
            .body(Body::from(format!("authCode={CODE_ALICE}")))
            .unwrap();
        app.send(request)
            .await
            .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_zero_token_calls() {
    let app = TestApp::new(exchange_never_called());
    let big = format!("authCode={}", "a".repeat(64 * 1024));

    // Without a Content-Length (read until the limit) ...
    app.send(form_body(big.clone()))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // ... and with one that announces it (refused before reading).
    let request = Request::post("/authcode")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-requested-with", "x")
        .header("content-length", big.len())
        .body(Body::from(big))
        .unwrap();
    app.send(request)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn a_bearer_of_another_user_is_subject_mismatch_and_nothing_is_stored() {
    let app = TestApp::new(Mocks::google());
    let mut request = authcode_form(CODE_BOB);
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {ID_ALICE}").parse().unwrap(),
    );

    app.send(request)
        .await
        .assert_error(StatusCode::FORBIDDEN, "subject_mismatch");

    assert!(app.stored(SUB_BOB).await.is_none());
    assert!(app.stored(SUB_ALICE).await.is_none());
}

#[tokio::test]
async fn a_bearer_of_the_same_user_signs_in() {
    let app = TestApp::new(Mocks::google());
    let mut request = authcode_form(CODE_ALICE);
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {ID_ALICE}").parse().unwrap(),
    );

    let answer = app.send(request).await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn a_bad_bearer_on_authcode_is_401_and_the_code_is_not_exchanged() {
    let mut mocks = Mocks::bare();
    mocks.tokens.expect_exchange_code().never();
    mocks.accept_id_tokens();
    let app = TestApp::new(mocks);
    for bearer in [ID_OTHER_APP, ID_EXPIRED, ID_BAD_SIGNATURE, "not-a-jwt"] {
        let mut request = authcode_form(CODE_ALICE);
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
        let answer = app.send(request).await;
        answer.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
}

/// One row per token-endpoint failure: what the app sees.
#[tokio::test]
async fn every_exchange_failure_maps_to_its_status_and_code() {
    let rows: Vec<(TokenError, StatusCode, &str)> = vec![
        (
            TokenError::InvalidGrant,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            TokenError::InvalidClient("invalid_client".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_misconfigured",
        ),
        (
            TokenError::Rejected("redirect_uri_mismatch".into()),
            StatusCode::BAD_REQUEST,
            "redirect_uri_mismatch",
        ),
        (
            TokenError::Rejected("invalid_request".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_misconfigured",
        ),
        (
            TokenError::Unavailable { retry_after: None },
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
        ),
        (
            TokenError::Timeout,
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
        ),
        (
            TokenError::Protocol("not json".into()),
            StatusCode::BAD_GATEWAY,
            "upstream_error",
        ),
    ];
    for (error, status, code) in rows {
        let mut mocks = Mocks::bare();
        mocks
            .tokens
            .expect_exchange_code()
            .times(1)
            .returning(move |_| Err(error.clone()));
        let app = TestApp::new(mocks);
        app.sign_in(CODE_ALICE).await.assert_error(status, code);
        assert!(app.stored(SUB_ALICE).await.is_none());
    }
}

#[tokio::test]
async fn an_exchange_without_an_id_token_asks_for_the_openid_scope() {
    let mut mocks = Mocks::bare();
    mocks.tokens.expect_exchange_code().returning(|_| {
        Ok(token_response(
            ACCESS_ALICE,
            Some(REFRESH_ALICE),
            None,
            ALL_SCOPES,
        ))
    });
    let app = TestApp::new(mocks);

    app.sign_in(CODE_ALICE)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "openid_scope_missing");
}

#[tokio::test]
async fn an_exchanged_id_token_that_fails_verification_is_502_never_a_bearer_error_and_nothing_is_stored()
 {
    let mut mocks = Mocks::bare();
    mocks.tokens.expect_exchange_code().returning(|_| {
        Ok(token_response(
            ACCESS_ALICE,
            Some(REFRESH_ALICE),
            Some(ID_BAD_SIGNATURE),
            ALL_SCOPES,
        ))
    });
    mocks.accept_id_tokens();
    let app = TestApp::new(mocks);

    let answer = app.sign_in(CODE_ALICE).await;

    // The app sent no Bearer: the fault is Google's token, so no 401 and no WWW-Authenticate challenge.
    answer.assert_error(StatusCode::BAD_GATEWAY, "upstream_invalid_id_token");
    assert!(answer.headers.get("www-authenticate").is_none());
    assert!(app.stored(SUB_ALICE).await.is_none());
}

#[tokio::test]
async fn unavailable_signing_keys_fail_closed_with_503() {
    let mut mocks = Mocks::bare();
    mocks
        .tokens
        .expect_exchange_code()
        .returning(|code| exchange(code.expose_secret()));
    mocks
        .verifier
        .expect_verify()
        .returning(|_, _| Err(VerifyError::KeysUnavailable));
    mocks
        .verifier
        .expect_verify_exchanged()
        .returning(|_, _| Err(VerifyError::KeysUnavailable));
    let app = TestApp::new(mocks);

    app.sign_in(CODE_ALICE)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable");
    app.send(get("/v1/me", ID_ALICE))
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable");
}

// The limiter reads tokio's clock: paused, no token refills however slow the machine is.
#[tokio::test(start_paused = true)]
async fn the_rate_limit_answers_429_before_any_google_call() {
    let mut mocks = Mocks::bare();
    // Rate 1/s, burst 2: exactly two attempts reach Google.
    mocks
        .tokens
        .expect_exchange_code()
        .times(2)
        .returning(|_| Err(TokenError::InvalidGrant));
    let config = HttpConfig {
        authcode_rate_limit: 1,
        ..HttpConfig::default()
    };
    let app = TestApp::with_config(mocks, config);

    for i in 0..2 {
        app.sign_in(&format!("4/0attempt{i}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let limited = app.sign_in("4/0attempt3").await;

    limited.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(limited.headers.get("retry-after").is_some());
}

// The limiter reads tokio's clock: paused, no token refills however slow the machine is.
#[tokio::test(start_paused = true)]
async fn the_rate_limit_is_per_client_address() {
    let mut mocks = Mocks::bare();
    mocks
        .tokens
        .expect_exchange_code()
        .times(3)
        .returning(|_| Err(TokenError::InvalidGrant));
    let config = HttpConfig {
        authcode_rate_limit: 1,
        ..HttpConfig::default()
    };
    let app = TestApp::with_config(mocks, config);
    for i in 0..2 {
        app.sign_in(&format!("4/0a{i}")).await;
    }
    app.sign_in("4/0a3")
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");

    let mut other = authcode_form("4/0fromElsewhere");
    other
        .extensions_mut()
        .insert(axum::extract::ConnectInfo::<std::net::SocketAddr>(
            "198.51.100.7:1234".parse().unwrap(),
        ));
    app.send(other)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

// The limiter reads tokio's clock: paused, no token refills however slow the machine is.
#[tokio::test(start_paused = true)]
async fn x_forwarded_for_cannot_dodge_the_limit_from_an_untrusted_peer() {
    let mut mocks = Mocks::bare();
    mocks
        .tokens
        .expect_exchange_code()
        .times(2)
        .returning(|_| Err(TokenError::InvalidGrant));
    let config = HttpConfig {
        authcode_rate_limit: 1,
        ..HttpConfig::default()
    };
    let app = TestApp::with_config(mocks, config);
    let mut statuses = Vec::new();
    for i in 0..3 {
        let mut request = authcode_form(&format!("4/0spoof{i}"));
        request
            .headers_mut()
            .insert("x-forwarded-for", format!("203.0.113.{i}").parse().unwrap());
        statuses.push(app.send(request).await.status);
    }
    assert_eq!(statuses[2], StatusCode::TOO_MANY_REQUESTS);
}

// The limiter reads tokio's clock: paused, no token refills however slow the machine is.
#[tokio::test(start_paused = true)]
async fn x_forwarded_for_from_a_trusted_proxy_names_the_client() {
    let mut mocks = Mocks::bare();
    mocks
        .tokens
        .expect_exchange_code()
        .times(3)
        .returning(|_| Err(TokenError::InvalidGrant));
    let config = HttpConfig {
        authcode_rate_limit: 1,
        trusted_proxies: vec!["192.0.2.10".parse().unwrap()],
        ..HttpConfig::default()
    };
    let app = TestApp::with_config(mocks, config);
    let send_from = |client: &'static str, code: String| {
        let mut request = authcode_form(&code);
        request
            .headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        request
    };
    app.send(send_from("203.0.113.1", "4/0p1".into())).await;
    app.send(send_from("203.0.113.1", "4/0p2".into())).await;
    app.send(send_from("203.0.113.1", "4/0p3".into()))
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Another client behind the same proxy has its own bucket.
    app.send(send_from("203.0.113.2", "4/0p4".into()))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn cors_never_approves_a_foreign_origin_for_authcode() {
    let app = TestApp::new(Mocks::google());
    let preflight = Request::options("/authcode")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-requested-with")
        .body(Body::empty())
        .unwrap();

    let answer = app.send(preflight).await;

    assert!(answer.status.is_client_error());
    assert!(answer.headers.get("access-control-allow-origin").is_none());
    let mut post = authcode_form(CODE_ALICE);
    post.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let answer = app.send(post).await;
    assert!(answer.headers.get("access-control-allow-origin").is_none());
    assert!(
        answer
            .headers
            .get("access-control-allow-credentials")
            .is_none()
    );
}

#[tokio::test]
async fn a_store_that_cannot_take_writes_is_503_before_the_code_is_spent_at_google() {
    let mut mocks = Mocks::bare();
    mocks.tokens.expect_exchange_code().never();
    mocks.accept_id_tokens();
    let mut store = MockCredentialStore::new();
    store.expect_ping().returning(|| {
        Err(StoreError::Unavailable(
            "schema not migrated: run `offline-access migrate`".into(),
        ))
    });
    let app = TestApp::with_store(
        mocks,
        HttpConfig::default(),
        Arc::new(store),
        MemoryStore::new(),
    );

    let answer = app.sign_in(CODE_ALICE).await;

    answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(!answer.text().contains("migrate"), "no store detail leaks");
}
