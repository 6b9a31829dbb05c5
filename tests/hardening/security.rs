//! Cases 17, 18 and 21: who must not get in — a code injected under another signed-in user, another app's ID
//! token, one user reaching another's credential, and a client flooding Google through `/authcode`.

use fake_google::{CodeRequest, IdTokenRequest};
use offline_access_http::HttpConfig;
use offline_access_tests::{TestApp, TestOptions};
use reqwest::Method;
use serde_json::Value;

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_code_injected_under_another_signed_in_user_is_403_and_nothing_is_linked_or_stored() {
    let app = TestApp::spawn().await;
    let victim = app.sign_in("victim@example.com").await;
    let victim_sub = victim["user"]["sub"].as_str().unwrap().to_owned();
    let victim_token = app.id_token("victim@example.com").await;
    let before = app.snapshot(&victim_sub).await.unwrap();
    let injected = app
        .mint_code(CodeRequest::new("attacker@example.com"))
        .await;
    let exchanges = app.calls_to("token").await;

    let response = app.post_authcode_as(&injected.code, &victim_token).await;

    assert_eq!(
        status_and_code(response).await,
        (403, "subject_mismatch".into())
    );
    assert_eq!(
        app.calls_to("token").await - exchanges,
        1,
        "one exchange to learn whose code it is"
    );
    assert!(app.stored(&injected.sub).await.is_none());
    assert_eq!(app.snapshot(&victim_sub).await.unwrap(), before);
    // The same code again, with or without the victim's Bearer: still nothing linked or stored.
    for bearer in [Some(victim_token.as_str()), None] {
        let response = match bearer {
            Some(token) => app.post_authcode_as(&injected.code, token).await,
            None => app.post_authcode(&injected.code).await,
        };
        assert!(
            response.status().is_client_error(),
            "{:?}",
            response.status()
        );
    }
    assert!(app.stored(&injected.sub).await.is_none());
    assert_eq!(app.snapshot(&victim_sub).await.unwrap(), before);
    assert_eq!(app.stored_count().await, 1);
    // The victim's own code with the victim's Bearer still works.
    let own = app.mint_code(CodeRequest::new("victim@example.com")).await;
    assert_eq!(
        app.post_authcode_as(&own.code, &victim_token)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn another_apps_id_token_is_401_on_every_route_and_reaches_no_google_endpoint() {
    let app = TestApp::spawn().await;
    app.sign_in("leo@example.com").await;
    let other_client = app.fake.control().add_client().await;
    let foreign = app
        .fake
        .control()
        .mint_id_token(IdTokenRequest {
            email: "leo@example.com".into(),
            client_id: Some(other_client.client_id.clone()),
            ..IdTokenRequest::default()
        })
        .await
        .unwrap();
    let drive_before = app.calls_to("drive").await;
    let token_before = app.calls_to("token").await;

    let routes = [
        (Method::GET, "/v1/me"),
        (Method::DELETE, "/v1/me"),
        (Method::GET, "/v1/me/drive/appfolder"),
        (Method::GET, "/v1/me/drive/files"),
        (Method::POST, "/v1/me/drive/files?name=x.txt"),
        (Method::GET, "/v1/me/drive/files/abc"),
        (Method::DELETE, "/v1/me/drive/files/abc"),
        (Method::GET, "/v1/me/drive/files/abc/content"),
        (Method::PUT, "/v1/me/drive/files/abc/content"),
    ];
    for (method, path) in &routes {
        let response = app
            .authed(method.clone(), path, &foreign)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (401, "invalid_token".into()),
            "{method} {path}"
        );
    }
    // Also as the Bearer of a sign-in: refused before the exchange.
    let minted = app.mint_code(CodeRequest::new("leo@example.com")).await;
    let response = app.post_authcode_as(&minted.code, &foreign).await;
    assert_eq!(
        status_and_code(response).await,
        (401, "invalid_token".into())
    );

    assert_eq!(
        app.calls_to("drive").await + app.calls_to("upload").await,
        drive_before
    );
    assert_eq!(app.calls_to("token").await, token_before);
    assert_eq!(app.calls_to("revoke").await, 0);
    assert_eq!(app.stored_count().await, 1);
}

#[tokio::test]
async fn one_user_never_reaches_another_users_credential() {
    let app = TestApp::spawn().await;
    let a = app.sign_in("a@example.com").await;
    let b = app.sign_in("b@example.com").await;
    let (a_sub, b_sub) = (
        a["user"]["sub"].as_str().unwrap(),
        b["user"]["sub"].as_str().unwrap(),
    );
    let a_token = app.id_token("a@example.com").await;
    let b_before = app.snapshot(b_sub).await.unwrap();

    let me: Value = app
        .authed(Method::GET, "/v1/me", &a_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["sub"], a_sub);
    assert!(!me.to_string().contains("b@example.com"));
    // No route takes a subject from the request: a query or header naming B changes nothing.
    let me: Value = app
        .authed(Method::GET, &format!("/v1/me?sub={b_sub}"), &a_token)
        .header("X-Goog-User", b_sub)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["sub"], a_sub);
    // A forgets themselves: B is untouched.
    let response = app
        .authed(Method::DELETE, "/v1/me", &a_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(app.stored(a_sub).await.is_none());
    assert_eq!(app.snapshot(b_sub).await.unwrap(), b_before);
    assert_eq!(app.calls_to("revoke").await, 1);
}

/// Tokens a bucket of 1 per second regains since `started` (rounded up).
fn refills_during(started: std::time::Instant) -> usize {
    usize::try_from(started.elapsed().as_secs()).unwrap_or(usize::MAX) + 1
}

#[tokio::test]
async fn the_authcode_rate_limit_answers_429_before_any_google_call_and_ignores_a_spoofed_forwarded_for()
 {
    let app = TestApp::spawn_with_options(TestOptions {
        http: HttpConfig {
            authcode_rate_limit: 1,
            ..HttpConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    let url = format!("{}/authcode", app.url);
    let mut limited = 0;
    let mut passed = 0;
    let started = std::time::Instant::now();
    for i in 0..12 {
        // The direct client is untrusted: a different X-Forwarded-For each time buys nothing.
        let response = app
            .http
            .post(&url)
            .header("X-Requested-With", "XMLHttpRequest")
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .form(&[("authCode", format!("4/0flood{i}"))])
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            assert!(response.headers().get("retry-after").is_some());
            assert_eq!(
                status_and_code(response).await,
                (429, "rate_limited".into())
            );
            limited += 1;
        } else {
            assert_eq!(
                status_and_code(response).await,
                (400, "invalid_grant".into())
            );
            passed += 1;
        }
    }
    // A burst of 2 passes, plus one refill per second the flood took (none, unless the machine stalls).
    let passes_allowed = 2 + refills_during(started);
    assert!(
        passed <= passes_allowed && limited > 0,
        "{passed} of 12 passed, {passes_allowed} allowed"
    );
    assert_eq!(
        app.calls_to("token").await,
        passed,
        "a limited request reached Google"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_rate_limit_is_per_forwarded_client() {
    let app = TestApp::spawn_with_options(TestOptions {
        http: HttpConfig {
            authcode_rate_limit: 1,
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
            ..HttpConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    let url = format!("{}/authcode", app.url);
    let post = |client: String, i: usize| {
        app.http
            .post(&url)
            .header("X-Requested-With", "XMLHttpRequest")
            .header("X-Forwarded-For", client)
            .form(&[("authCode", format!("4/0proxied{i}"))])
            .send()
    };
    // Each forwarded client has its own burst (2).
    for client in 0..5 {
        for round in 0..2 {
            let response = post(format!("203.0.113.{client}"), client * 2 + round)
                .await
                .unwrap();
            assert_ne!(response.status(), 429, "client {client} round {round}");
        }
    }
    // One client flooding is limited; another is still served.
    let mut limited = 0;
    let started = std::time::Instant::now();
    for i in 0..10 {
        if post("203.0.113.99".into(), 100 + i).await.unwrap().status() == 429 {
            limited += 1;
        }
    }
    let passes_allowed = 2 + refills_during(started);
    assert!(
        10 - limited <= passes_allowed && limited > 0,
        "only {limited} of 10 limited, {passes_allowed} passes allowed"
    );
    assert_ne!(
        post("203.0.113.200".into(), 999).await.unwrap().status(),
        429
    );
    assert_eq!(app.calls_to("token").await, 10 + (10 - limited) + 1);
}
