//! Cases 8-13 and 16: Google failing in every way the token, Drive and keys endpoints can; each with the stated
//! recovery, the calls that reached Google, and no refresh token lost.

use std::time::{Duration, Instant};

use fake_google::{CodeRequest, Endpoint, Fault, SettingsPatch};
use offline_access_domain::Settings;
use offline_access_tests::{TestApp, TestClock, TestOptions, captured_logs};
use reqwest::Method;
use serde_json::{Value, json};

/// Quick backoff, and every cached access token treated as stale (so each Drive call refreshes first).
fn always_refresh() -> Settings {
    Settings {
        refresh_margin: Duration::from_secs(24 * 3600),
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        ..Settings::default()
    }
}

fn quick_backoff() -> Settings {
    Settings {
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        ..Settings::default()
    }
}

async fn spawn(settings: Settings) -> TestApp {
    TestApp::spawn_with_options(TestOptions {
        settings,
        ..TestOptions::default()
    })
    .await
}

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Signs `email` in; returns the subject and the app's Bearer ID token.
async fn signed_in(app: &TestApp, email: &str) -> (String, String) {
    let body = app.sign_in(email).await;
    let sub = body["user"]["sub"].as_str().unwrap().to_owned();
    (sub, app.id_token(email).await)
}

fn drive_error(code: u16, reason: &str) -> Value {
    json!({"error": {"code": code, "message": reason, "errors": [
        {"domain": "usageLimits", "reason": reason, "message": reason}
    ]}})
}

#[tokio::test]
async fn a_refresh_failing_with_5xx_408_or_429_is_tried_three_times_then_503_with_the_refresh_token_intact()
 {
    let app = spawn(always_refresh()).await;
    let (sub, bearer) = signed_in(&app, "outage@example.com").await;
    let before = app.snapshot(&sub).await.unwrap();
    let mut faults_survived = 0;

    for status in [500, 502, 503, 504, 408, 429] {
        app.fake
            .control()
            .add_fault(Fault::status(Endpoint::Token, status).times(3))
            .await
            .unwrap();
        let token_before = app.calls_to("token").await;
        let drive_before = app.calls_to("drive").await;

        let response = app
            .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
            .send()
            .await
            .unwrap();

        assert_eq!(
            status_and_code(response).await,
            (503, "upstream_unavailable".into()),
            "{status}"
        );
        assert_eq!(
            app.calls_to("token").await - token_before,
            3,
            "{status}: attempts"
        );
        assert_eq!(
            app.calls_to("drive").await,
            drive_before,
            "{status}: Drive called"
        );
        assert_eq!(
            app.snapshot(&sub).await.unwrap(),
            before,
            "{status}: credential changed"
        );
        faults_survived += 3;
    }
    // Two failures then Google answers: the third attempt succeeds.
    app.fake
        .control()
        .add_fault(Fault::status(Endpoint::Token, 503).times(2))
        .await
        .unwrap();
    let token_before = app.calls_to("token").await;
    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.calls_to("token").await - token_before, 3);
    let after = app.snapshot(&sub).await.unwrap();
    assert_eq!(
        after.refresh_token, before.refresh_token,
        "refresh token lost"
    );
    assert!(faults_survived >= 18);
}

#[tokio::test]
async fn a_dropped_or_malformed_refresh_answer_never_loses_the_refresh_token() {
    let app = spawn(always_refresh()).await;
    let (sub, bearer) = signed_in(&app, "flaky@example.com").await;
    let before = app.snapshot(&sub).await.unwrap();

    app.fake
        .control()
        .add_fault(Fault::drop_connection(Endpoint::Token).times(3))
        .await
        .unwrap();
    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(response).await,
        (503, "upstream_unavailable".into())
    );

    app.fake
        .control()
        .add_fault(Fault::malformed_json(Endpoint::Token))
        .await
        .unwrap();
    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(response).await,
        (502, "upstream_error".into())
    );
    // A 200 without an access token, or with a refresh token of the wrong type, is not a grant either.
    for body in [
        json!({"token_type": "Bearer", "expires_in": 3599}),
        json!({"access_token": "ya29.a0x", "expires_in": 3599, "refresh_token": 42, "token_type": "Bearer"}),
        json!("<html>502 Bad Gateway</html>"),
    ] {
        app.fake
            .control()
            .add_fault(Fault::status(Endpoint::Token, 200).with_body(body))
            .await
            .unwrap();
        let response = app
            .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (502, "upstream_error".into())
        );
    }

    assert_eq!(app.snapshot(&sub).await.unwrap(), before);
    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.snapshot(&sub).await.unwrap().refresh_token,
        before.refresh_token
    );
}

#[tokio::test]
async fn a_failed_code_exchange_is_never_retried_and_a_fresh_code_then_succeeds() {
    let app = spawn(quick_backoff()).await;
    let email = "exchange@example.com";
    let faults = [
        (
            Fault::status(Endpoint::Token, 503),
            (503, "upstream_unavailable"),
        ),
        (
            Fault::status(Endpoint::Token, 500),
            (503, "upstream_unavailable"),
        ),
        (
            Fault::status(Endpoint::Token, 429),
            (503, "upstream_unavailable"),
        ),
        (
            Fault::drop_connection(Endpoint::Token),
            (503, "upstream_unavailable"),
        ),
        (
            Fault::malformed_json(Endpoint::Token),
            (502, "upstream_error"),
        ),
    ];
    let count = faults.len();
    for (fault, expected) in faults {
        let what = format!("{fault:?}");
        app.fake.control().add_fault(fault).await.unwrap();
        let minted = app.mint_code(CodeRequest::new(email)).await;
        let before = app.calls_to("token").await;

        let response = app.post_authcode(&minted.code).await;

        assert_eq!(
            status_and_code(response).await,
            (expected.0, expected.1.to_owned()),
            "{what}"
        );
        assert_eq!(
            app.calls_to("token").await - before,
            1,
            "{what}: the exchange was retried"
        );
        assert!(
            app.stored(&minted.sub).await.is_none(),
            "{what}: something was stored"
        );
    }
    let minted = app.mint_code(CodeRequest::new(email)).await;
    let response = app.post_authcode(&minted.code).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["offline_access"], true);
    assert_eq!(app.stored_count().await, 1);
    assert_eq!(app.calls_to("token").await, count + 1);
}

#[tokio::test]
async fn invalid_grant_on_refresh_marks_consent_revoked_purges_access_and_stops_calling_google() {
    let app = spawn(always_refresh()).await;
    let (sub, bearer) = signed_in(&app, "revoked@example.com").await;
    let before = app.snapshot(&sub).await.unwrap();
    app.fake
        .control()
        .add_fault(Fault::status(Endpoint::Token, 400).with_body(json!({
            "error": "invalid_grant", "error_description": "Token has been expired or revoked."
        })))
        .await
        .unwrap();

    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
        .send()
        .await
        .unwrap();

    assert_eq!(
        status_and_code(response).await,
        (409, "reconsent_required".into())
    );
    assert_eq!(
        app.calls_to("token").await,
        2,
        "sign-in + one refresh, no retry"
    );
    let after = app.snapshot(&sub).await.unwrap();
    assert_eq!(after.consent, "revoked");
    assert!(!after.has_access, "the cached access token was not purged");
    assert_eq!(after.refresh_token, before.refresh_token);
    // After that: no token call and no Drive call, whatever the app asks.
    for path in [
        "/v1/me/drive/appfolder",
        "/v1/me/drive/files",
        "/v1/me/drive/files/abc",
    ] {
        let response = app.authed(Method::GET, path, &bearer).send().await.unwrap();
        assert_eq!(
            status_and_code(response).await,
            (409, "reconsent_required".into()),
            "{path}"
        );
    }
    assert_eq!(app.calls_to("token").await, 2);
    assert_eq!(app.calls_to("drive").await, 0);
    let me: Value = app
        .authed(Method::GET, "/v1/me", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["consent"], "revoked");
    assert_eq!(me["offline_access"], false);
}

#[tokio::test]
async fn invalid_client_on_refresh_is_an_operator_error_that_touches_no_users_credential() {
    let app = spawn(always_refresh()).await;
    let (sub, bearer) = signed_in(&app, "operator@example.com").await;
    let (other_sub, _) = signed_in(&app, "bystander@example.com").await;
    let before = app.snapshot(&sub).await.unwrap();
    let other_before = app.snapshot(&other_sub).await.unwrap();

    for (status, error) in [(401, "invalid_client"), (400, "unauthorized_client")] {
        app.fake
            .control()
            .add_fault(Fault::status(Endpoint::Token, status).with_body(json!({
                "error": error, "error_description": "Unauthorized"
            })))
            .await
            .unwrap();
        let token_before = app.calls_to("token").await;
        let response = app
            .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (500, "server_misconfigured".into()),
            "{error}"
        );
        assert_eq!(
            app.calls_to("token").await - token_before,
            1,
            "{error}: retried"
        );
    }

    assert_eq!(app.snapshot(&sub).await.unwrap(), before);
    assert_eq!(app.snapshot(&other_sub).await.unwrap(), other_before);
    assert_eq!(app.calls_to("drive").await, 0);
    assert!(captured_logs().contains("client credentials"));
    let metrics = offline_access_tests::captured_metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("offline_access_google_requests_total")
                && l.contains(r#"endpoint="token_refresh""#)
                && l.contains(r#"outcome="invalid_client""#)),
        "no invalid_client metric:\n{metrics}"
    );
}

#[tokio::test]
async fn a_drive_401_causes_one_refresh_and_one_retry_and_a_second_401_is_an_error_not_a_loop() {
    let app = spawn(quick_backoff()).await;
    let (sub, bearer) = signed_in(&app, "drive401@example.com").await;
    let appfolder = || {
        app.authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
            .send()
    };

    app.fake
        .control()
        .add_fault(Fault::status(Endpoint::Drive, 401))
        .await
        .unwrap();
    assert_eq!(appfolder().await.unwrap().status(), 200);
    assert_eq!(app.token_calls("refresh_token").await, 1);
    assert_eq!(app.calls_to("drive").await, 2);

    app.fake
        .control()
        .add_fault(Fault::status(Endpoint::Drive, 401).times(10))
        .await
        .unwrap();
    let response = appfolder().await.unwrap();
    assert_eq!(
        status_and_code(response).await,
        (502, "upstream_error".into())
    );
    assert_eq!(
        app.token_calls("refresh_token").await,
        2,
        "more than one refresh"
    );
    assert_eq!(app.calls_to("drive").await, 4, "more than one retry");
    app.fake.control().clear_faults().await;
    assert!(app.snapshot(&sub).await.unwrap().refresh_token.is_some());
}

#[tokio::test]
async fn drive_rate_limits_back_off_and_cause_no_refresh() {
    let app = spawn(quick_backoff()).await;
    let (_, bearer) = signed_in(&app, "ratelimit@example.com").await;
    let appfolder = || {
        app.authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
            .send()
    };
    let faults = [
        Fault::status(Endpoint::Drive, 403).with_body(drive_error(403, "userRateLimitExceeded")),
        Fault::status(Endpoint::Drive, 403).with_body(drive_error(403, "rateLimitExceeded")),
        Fault::status(Endpoint::Drive, 429).with_body(drive_error(429, "rateLimitExceeded")),
    ];
    for fault in faults {
        let what = format!("{fault:?}");
        app.fake.control().add_fault(fault.times(2)).await.unwrap();
        let drive_before = app.calls_to("drive").await;
        assert_eq!(appfolder().await.unwrap().status(), 200, "{what}");
        assert_eq!(app.calls_to("drive").await - drive_before, 3, "{what}");
    }
    // Rate-limited through every attempt: 429 with Retry-After to the app.
    app.fake
        .control()
        .add_fault(Fault::status(Endpoint::Drive, 429).times(3))
        .await
        .unwrap();
    let response = appfolder().await.unwrap();
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(
        status_and_code(response).await,
        (429, "rate_limited".into())
    );
    assert_eq!(
        app.token_calls("refresh_token").await,
        0,
        "a rate limit caused a refresh"
    );
}

#[tokio::test]
async fn a_drive_create_failing_with_5xx_or_a_dropped_connection_is_not_repeated_and_makes_no_duplicate()
 {
    let app = spawn(quick_backoff()).await;
    let (_, bearer) = signed_in(&app, "create@example.com").await;
    let list = || async {
        let listed: Value = app
            .authed(Method::GET, "/v1/me/drive/files", &bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed["files"].as_array().unwrap().len()
    };
    for (fault, expected) in [
        (Fault::status(Endpoint::Upload, 503), 503),
        (Fault::status(Endpoint::Upload, 500), 503),
        (Fault::drop_connection(Endpoint::Upload), 503),
    ] {
        let what = format!("{fault:?}");
        app.fake.control().add_fault(fault).await.unwrap();
        let uploads_before = app.calls_to("upload").await;
        let response = app
            .authed(Method::POST, "/v1/me/drive/files?name=once.txt", &bearer)
            .header("Content-Type", "text/plain")
            .body("once")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{what}");
        assert_eq!(
            app.calls_to("upload").await - uploads_before,
            1,
            "{what}: the create was repeated"
        );
    }
    assert_eq!(list().await, 0);
    // Idempotent reads are retried through a 5xx.
    app.fake
        .control()
        .add_fault(Fault::status(Endpoint::Drive, 503).times(2))
        .await
        .unwrap();
    assert_eq!(list().await, 0);
}

#[tokio::test]
async fn with_google_keys_down_cached_keys_serve_for_the_grace_then_verification_fails_closed() {
    let clock = TestClock::now_real();
    let app = TestApp::spawn_with_options(TestOptions {
        clock: Some(clock.clone()),
        jwks_grace: Some(Duration::from_secs(600)),
        ..TestOptions::default()
    })
    .await;
    app.fake
        .control()
        .settings(SettingsPatch {
            jwks_max_age_secs: Some(300),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let (_, bearer) = signed_in(&app, "keys@example.com").await;
    let me = || app.authed(Method::GET, "/v1/me", &bearer).send();
    assert_eq!(app.calls_to("certs").await, 1);
    app.fake
        .control()
        .add_fault(Fault::status(Endpoint::Certs, 503).times(1000))
        .await
        .unwrap();

    // Past max-age: the fetch fails, the cached keys serve within the grace.
    clock.advance(Duration::from_secs(310));
    assert_eq!(me().await.unwrap().status(), 200);
    assert_eq!(app.calls_to("certs").await, 2);
    // A sign-in with keys within grace still works.
    let minted = app.mint_code(CodeRequest::new("keys2@example.com")).await;
    assert_eq!(app.post_authcode(&minted.code).await.status(), 200);

    // Past max-age + grace: Bearers fail closed. A sign-in keeps the grant Google just gave: its ID token came
    // over this server's TLS connection to the token endpoint, which vouches for it (OIDC Core §3.1.3.7).
    clock.advance(Duration::from_secs(700));
    assert_eq!(
        status_and_code(me().await.unwrap()).await,
        (503, "upstream_unavailable".into())
    );
    let minted = app.mint_code(CodeRequest::new("keys3@example.com")).await;
    let response = app.post_authcode(&minted.code).await;
    assert_eq!(response.status(), 200);
    let stored = app.stored(&minted.sub).await.unwrap();
    assert!(stored.offline_access(), "the refresh token is kept");

    // Google's keys come back: one fetch and everything verifies again.
    app.fake.control().clear_faults().await;
    clock.advance(Duration::from_secs(2));
    assert_eq!(me().await.unwrap().status(), 200);

    // Key rotation: a token from the new key causes exactly one refetch, then verifies.
    let fetches = app.calls_to("certs").await;
    let new_kid = app.fake.control().rotate_keys(false).await.unwrap();
    let rotated = app.id_token("keys@example.com").await;
    assert_eq!(app.fake.control().published_kids().len(), 2);
    assert_eq!(app.fake.control().current_kid(), new_kid);
    assert_eq!(
        app.authed(Method::GET, "/v1/me", &rotated)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.calls_to("certs").await, fetches + 1);
    assert_eq!(
        app.authed(Method::GET, "/v1/me", &rotated)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        me().await.unwrap().status(),
        200,
        "the old key is still published"
    );
    assert_eq!(app.calls_to("certs").await, fetches + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_google_fails_the_request_within_the_timeout_and_others_are_served_meanwhile() {
    let app = TestApp::spawn_with_options(TestOptions {
        settings: Settings {
            attempts: 2,
            ..always_refresh()
        },
        // Long enough for the sign-ins below on a loaded machine, far below the minute of the fault.
        google_request_timeout: Some(Duration::from_secs(2)),
        ..TestOptions::default()
    })
    .await;
    let (sub, bearer) = signed_in(&app, "slow@example.com").await;
    let (_, other) = signed_in(&app, "patient@example.com").await;
    let before = app.snapshot(&sub).await.unwrap();
    app.fake
        .control()
        .add_fault(Fault::delay(Endpoint::Token, 60_000).times(2))
        .await
        .unwrap();

    let started = Instant::now();
    let slow = tokio::spawn(
        app.authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
            .send(),
    );
    // While the slow call waits on Google, the server answers others.
    for _ in 0..5 {
        let health = app
            .http
            .get(format!("{}/healthz", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let me = app
            .authed(Method::GET, "/v1/me", &other)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
    }
    let response = slow.await.unwrap().unwrap();

    assert_eq!(
        status_and_code(response).await,
        (503, "upstream_unavailable".into())
    );
    // Two attempts of 2 s each, far below the minute Google would have taken.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.snapshot(&sub).await.unwrap(), before);

    // A slow code exchange fails the sign-in the same way, once.
    app.fake
        .control()
        .add_fault(Fault::delay(Endpoint::Token, 60_000))
        .await
        .unwrap();
    let minted = app.mint_code(CodeRequest::new("slow2@example.com")).await;
    let before_calls = app.calls_to("token").await;
    let response = app.post_authcode(&minted.code).await;
    assert_eq!(
        status_and_code(response).await,
        (503, "upstream_unavailable".into())
    );
    assert!(app.calls_to("token").await - before_calls <= 1);
}

#[tokio::test]
async fn forget_while_revoke_answers_503_makes_the_credential_unusable_at_once_and_a_retry_revokes_it_later()
 {
    let app = spawn(quick_backoff()).await;
    let (sub, bearer) = signed_in(&app, "forget@example.com").await;
    let subject = offline_access_domain::Subject::parse(&sub).unwrap();
    let store = app.service.ports().store.clone();
    let refresh_before = app.snapshot(&sub).await.unwrap().refresh_token;
    app.fake
        .control()
        .add_fault(Fault::status(Endpoint::Revoke, 503))
        .await
        .unwrap();

    let response = app
        .authed(Method::DELETE, "/v1/me", &bearer)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 204);
    assert_eq!(app.calls_to("revoke").await, 1);
    // Unusable at once: the user is gone for every route, and nothing reaches Google for them.
    let token_calls = app.calls_to("token").await;
    for (method, path) in [
        (Method::GET, "/v1/me"),
        (Method::GET, "/v1/me/drive/appfolder"),
        (Method::GET, "/v1/me/drive/files"),
    ] {
        let response = app
            .authed(method.clone(), path, &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (404, "not_found".into()),
            "{method} {path}"
        );
    }
    let offline = app
        .service
        .drive(&subject, &offline_access_domain::DriveRequest::GetAppFolder)
        .await;
    assert!(offline.is_err());
    assert_eq!(app.calls_to("token").await, token_calls);
    assert_eq!(app.calls_to("drive").await, 0);
    // What is kept: only the refresh token, to revoke it later.
    let kept = store.get(&subject).await.unwrap().unwrap();
    assert_eq!(kept.consent.as_str(), "forgotten");
    assert!(kept.access.is_none());
    assert!(kept.profile.email.is_none());
    assert_eq!(
        kept.refresh_token.map(|t| t.expose_secret().to_owned()),
        refresh_before
    );

    // Google still down (a dropped connection this time): still pending.
    app.fake
        .control()
        .add_fault(Fault::drop_connection(Endpoint::Revoke))
        .await
        .unwrap();
    let retry = app.service.retry_pending_revocations().await.unwrap();
    assert_eq!((retry.revoked, retry.pending), (0, 1));
    assert!(store.get(&subject).await.unwrap().is_some());
    // Google back: the retry revokes the grant and deletes the record.
    let retry = app.service.retry_pending_revocations().await.unwrap();
    assert_eq!((retry.revoked, retry.pending), (1, 0));
    assert!(store.get(&subject).await.unwrap().is_none());
    assert_eq!(app.calls_to("revoke").await, 3);
    // The grant is really gone at Google: the next consent yields a refresh token again.
    let again = app.sign_in("forget@example.com").await;
    assert_eq!(again["offline_access"], true);
    assert_eq!(again["new_user"], true);
}

#[tokio::test]
async fn invalid_token_from_revoke_counts_as_done_and_the_credential_is_deleted() {
    let app = spawn(quick_backoff()).await;
    let (sub, bearer) = signed_in(&app, "gone@example.com").await;
    app.fake
        .control()
        .add_fault(Fault::status(Endpoint::Revoke, 400).with_body(json!({
            "error": "invalid_token", "error_description": "Token expired or revoked"
        })))
        .await
        .unwrap();

    let response = app
        .authed(Method::DELETE, "/v1/me", &bearer)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 204);
    assert_eq!(app.calls_to("revoke").await, 1);
    assert_eq!(app.stored_count().await, 0);
    assert!(app.stored(&sub).await.is_none());
    let retry = app.service.retry_pending_revocations().await.unwrap();
    assert_eq!((retry.revoked, retry.pending), (0, 0));
    assert_eq!(app.calls_to("revoke").await, 1);
}

#[tokio::test]
async fn hostile_token_responses_to_a_code_exchange_are_502_and_store_nothing() {
    let app = spawn(quick_backoff()).await;
    let email = "hostile@example.com";
    let minted = app.mint_code(CodeRequest::new(email)).await;
    let id_token = app.sign_as_google(&app.google_claims(&minted.sub, email));
    let good = json!({
        "access_token": "ya29.a0hostile", "expires_in": 3599, "refresh_token": "1//0hostile",
        "scope": "openid https://www.googleapis.com/auth/drive.appdata", "token_type": "Bearer",
        "id_token": id_token,
    });
    let edit = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let bodies = [
        edit("expires_in", json!(-5)),
        edit("expires_in", json!(1e300)),
        edit("expires_in", json!(u64::MAX)),
        edit("expires_in", json!("3599")),
        without("expires_in"),
        without("access_token"),
        edit("access_token", json!("")),
        edit("access_token", json!("ya29.a0\nInjected: header")),
        edit("access_token", json!("x".repeat(100_000))),
        edit("refresh_token", json!("1//0\u{0}nul")),
        edit("refresh_token", json!(["1//0a"])),
        edit("token_type", json!("mac")),
        edit("scope", json!(42)),
        edit("id_token", json!(12345)),
        json!([good.clone()]),
        json!("not json at all"),
    ];
    let tried = bodies.len();
    for body in bodies {
        let what = body.to_string().chars().take(120).collect::<String>();
        app.fake
            .control()
            .add_fault(Fault::status(Endpoint::Token, 200).with_body(body))
            .await
            .unwrap();
        // A fresh code each time: an unexpected answer to a code is final for that code (the app's re-POST gets
        // the same 502 without a second exchange, as the code may be spent at Google).
        let code = app.mint_code(CodeRequest::new(email)).await.code;
        let response = app.post_authcode(&code).await;
        assert_eq!(
            status_and_code(response).await,
            (502, "upstream_error".into()),
            "{what}"
        );
        let again = app.post_authcode(&code).await;
        assert_eq!(
            status_and_code(again).await,
            (502, "upstream_error".into()),
            "{what}"
        );
    }
    assert_eq!(
        app.calls_to("token").await,
        tried,
        "one exchange per code, never retried"
    );
    assert_eq!(app.stored_count().await, 0);
    // Google answering properly again: a code signs the user in.
    let response = app.post_authcode(&minted.code).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.stored_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_racing_refreshes_while_revoke_fails_never_brings_the_credential_back() {
    let app = spawn(always_refresh()).await;
    let (sub, bearer) = signed_in(&app, "race@example.com").await;
    let subject = offline_access_domain::Subject::parse(&sub).unwrap();
    app.fake
        .control()
        .add_fault(Fault::status(Endpoint::Revoke, 503))
        .await
        .unwrap();

    let drives = (0..20).map(|_| {
        app.authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
            .send()
    });
    let forget = app.authed(Method::DELETE, "/v1/me", &bearer).send();
    let (drives, forget) = tokio::join!(futures::future::join_all(drives), forget);

    assert_eq!(forget.unwrap().status(), 204);
    for response in drives {
        let status = response.unwrap().status().as_u16();
        assert!([200, 404].contains(&status), "{status}");
    }
    let kept = app
        .service
        .ports()
        .store
        .get(&subject)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.consent.as_str(),
        "forgotten",
        "a refresh brought the credential back"
    );
    assert!(kept.access.is_none());
    assert!(kept.refresh_token.is_some());
    let drive_calls = app.calls_to("drive").await;
    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(response).await, (404, "not_found".into()));
    assert_eq!(app.calls_to("drive").await, drive_calls);
}
