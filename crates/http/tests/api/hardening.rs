//! Adversarial input, panics, timeouts, and secrets in logs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use http::{Request, StatusCode};
use offline_access_domain::memory::{ManualClock, MemoryStore};
use offline_access_domain::{
    AuthCode, OfflineAccess, Ports, RefreshToken, RevokeError, TokenEndpoint, TokenError,
    TokenResponse,
};
use offline_access_http::{AppState, HttpConfig, router};
use proptest::prelude::*;

use crate::helpers::*;

/// A token endpoint that answers only after `delay` (virtual time in these tests).
struct SlowTokens {
    delay: Duration,
    calls: AtomicUsize,
}

#[async_trait]
impl TokenEndpoint for SlowTokens {
    async fn exchange_code(&self, code: &AuthCode) -> Result<TokenResponse, TokenError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        exchange(code.expose_secret())
    }

    async fn refresh(&self, _: &RefreshToken) -> Result<TokenResponse, TokenError> {
        Err(TokenError::Timeout)
    }

    async fn revoke(&self, _: &RefreshToken) -> Result<(), RevokeError> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_google_gets_504_and_the_sign_in_still_completes_for_the_retry() {
    let tokens = Arc::new(SlowTokens {
        delay: Duration::from_secs(5),
        calls: AtomicUsize::new(0),
    });
    let mocks = Mocks::google();
    let memory = MemoryStore::new();
    let service = Arc::new(OfflineAccess::new(
        Ports {
            tokens: Arc::clone(&tokens) as _,
            verifier: Arc::new(mocks.verifier),
            store: Arc::new(memory.clone()),
            drive: Arc::new(mocks.drive),
            clock: Arc::new(ManualClock::new(NOW)),
        },
        settings(),
    ));
    let config = HttpConfig {
        request_timeout: Duration::from_secs(1),
        ..HttpConfig::default()
    };
    let app = TestApp {
        router: router(AppState::new(service, config)),
        store: memory,
        clock: Arc::new(ManualClock::new(NOW)),
        drive_calls: mocks.drive_calls,
        peer: "192.0.2.10:50000".parse().unwrap(),
    };

    app.sign_in(CODE_ALICE)
        .await
        .assert_error(StatusCode::GATEWAY_TIMEOUT, "timeout");
    // The exchange finishes in the background (the code was spent at Google: its result must not be lost).
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(app.stored(SUB_ALICE).await.is_some());
    let retry = app.sign_in(CODE_ALICE).await;

    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 1);
    // Other requests are served meanwhile.
    assert_eq!(
        app.send(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_panicking_verifier_is_a_json_500_and_the_server_goes_on() {
    let mut mocks = Mocks::bare();
    mocks
        .verifier
        .expect_verify()
        .returning(|_, _| panic!("verifier exploded"));
    let app = TestApp::new(mocks);

    let answer = app.send(get("/v1/me", ID_ALICE)).await;

    answer.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert!(!answer.text().contains("exploded"));
    let health = app
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test]
async fn a_panicking_use_case_is_a_json_500() {
    let mut mocks = Mocks::bare();
    // No expectation on exchange_code: the call panics inside the use-case task.
    mocks.accept_id_tokens();
    let app = TestApp::new(mocks);

    app.sign_in(CODE_ALICE)
        .await
        .assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
}

#[tokio::test]
async fn no_token_or_code_appears_in_logs_or_bodies_at_trace_level() {
    let logs = capture_logs();
    let mut mocks = Mocks::google();
    mocks.tokens.expect_refresh().returning(|_| {
        Ok(token_response(
            ACCESS_ALICE,
            Some(REFRESH_ALICE),
            None,
            ALL_SCOPES,
        ))
    });
    let app = TestApp::new(mocks);
    let mut bodies = String::new();

    let mut requests = vec![
        authcode_form(CODE_ALICE),
        authcode_form(CODE_ALICE),
        authcode_form(CODE_USED),
        authcode_json(&format!(r#"{{"authCode":"{CODE_ALICE}\n"}}"#)),
        get("/v1/me", ID_ALICE),
        get("/v1/me", ID_OTHER_APP),
        get("/v1/me/drive/appfolder", ID_ALICE),
        get(&format!("/v1/me/drive/files/{CODE_ALICE}"), ID_ALICE),
        get(&format!("/nope?code={CODE_ALICE}"), ID_ALICE),
    ];
    let mut injected = authcode_form(CODE_BOB);
    injected.headers_mut().insert(
        "authorization",
        format!("Bearer {ID_ALICE}").parse().unwrap(),
    );
    requests.push(injected);
    for request in requests {
        bodies.push_str(&app.send(request).await.text());
    }
    app.clock.advance(time::Duration::hours(2));
    bodies.push_str(&app.send(get("/v1/me/drive/files", ID_ALICE)).await.text());
    bodies.push_str(
        &app.send(with_bearer("DELETE", "/v1/me", ID_ALICE, b""))
            .await
            .text(),
    );

    let logs = logs.text();
    assert_no_canary(&bodies);
    assert_no_canary(&logs);
    // The logs do say what happened.
    assert!(logs.contains("http_request"), "{logs}");
    assert!(logs.contains("wrong_audience"), "{logs}");
    assert!(logs.contains("status=401"), "{logs}");
    assert!(logs.contains("/v1/me/drive/appfolder"), "{logs}");
}

fn content_types() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(Some("application/x-www-form-urlencoded".to_owned())),
        Just(Some("application/json".to_owned())),
        Just(Some("application/json; charset=utf-8".to_owned())),
        Just(Some("text/plain".to_owned())),
        Just(None),
        "[ -~]{0,40}".prop_map(Some),
    ]
}

fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "authCode=[ -~]{0,80}".prop_map(String::into_bytes),
        "\\{\"authCode\": ?(\"[ -~]{0,40}\"|[0-9]{1,5}|null|\\[\\]|\\{\\})\\}"
            .prop_map(String::into_bytes),
        Just(b"authCode=4%2F0canaryCodeAlice".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_body_and_content_type_to_authcode_gives_json_or_200_and_never_panics(
        content_type in content_types(),
        body in bodies(),
        csrf in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let app = TestApp::with_config(
            Mocks::google(),
            HttpConfig { authcode_rate_limit: 0, ..HttpConfig::default() },
        );
        let mut builder = Request::post("/authcode");
        if csrf {
            builder = builder.header("x-requested-with", "com.example.app");
        }
        if let Some(ct) = &content_type {
            builder = builder.header("content-type", ct.as_str());
        }
        let answer = runtime.block_on(app.send(builder.body(Body::from(body)).unwrap()));

        let allowed = [200u16, 400, 403, 413, 415];
        prop_assert!(allowed.contains(&answer.status.as_u16()), "{} {}", answer.status, answer.text());
        if answer.status != StatusCode::OK {
            let json = answer.json();
            prop_assert!(json["error"].is_string());
            prop_assert!(json["message"].is_string());
            assert_no_canary(&answer.text());
        }
        if !csrf {
            prop_assert_eq!(answer.status, StatusCode::FORBIDDEN);
        }
    }
}

fn paths() -> impl Strategy<Value = String> {
    let id = "[A-Za-z0-9_%.~-]{0,140}";
    prop_oneof![
        Just("/v1/me".to_owned()),
        Just("/v1/me/drive/appfolder".to_owned()),
        "/v1/me/drive/files(\\?(name|pageToken)=[A-Za-z0-9%._~-]{0,300})?".prop_map(|s| s),
        id.prop_map(|id| format!("/v1/me/drive/files/{id}")),
        id.prop_map(|id| format!("/v1/me/drive/files/{id}/content")),
        Just("/authcode".to_owned()),
        Just("/readyz".to_owned()),
        "/[A-Za-z0-9%._~/-]{0,60}".prop_map(|s| s),
    ]
}

fn authorizations() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(format!("Bearer {ID_ALICE}"))),
        Just(Some(format!("Bearer {ID_OTHER_APP}"))),
        "[ -~]{0,80}".prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_request_to_any_route_gets_a_json_error_or_a_success_and_never_a_500(
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("PATCH"), Just("HEAD")],
        path in paths(),
        authorization in authorizations(),
        content_type in content_types(),
        body in bodies(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let app = TestApp::with_config(
            Mocks::google(),
            HttpConfig { authcode_rate_limit: 0, ..HttpConfig::default() },
        );
        runtime.block_on(app.sign_in_alice());
        let mut builder = Request::builder().method(method).uri(path.as_str()).header("x-requested-with", "x");
        if let Some(a) = &authorization {
            builder = builder.header("authorization", a.as_str());
        }
        if let Some(ct) = &content_type {
            builder = builder.header("content-type", ct.as_str());
        }
        let Ok(request) = builder.body(Body::from(body)) else {
            return Ok(());
        };

        let answer = runtime.block_on(app.send(request));

        prop_assert!(!answer.status.is_server_error(), "{method} {path}: {} {}", answer.status, answer.text());
        if answer.status.is_client_error() && method != "HEAD" {
            let json = answer.json();
            prop_assert!(json["error"].is_string());
            prop_assert!(json["message"].is_string());
        }
        assert_no_canary(&answer.text());
    }
}
