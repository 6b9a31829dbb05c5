//! Fuzz target (issue 5): arbitrary requests to `POST /authcode` through the whole router. 256 cases by default;
//! `just fuzz` runs it with `PROPTEST_CASES` in the tens of thousands.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use http::{Method, Request, StatusCode};
use offline_access_http::HttpConfig;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::helpers::{CODE_ALICE, Mocks, TestApp, assert_no_canary, exchange};

#[derive(Debug, Clone)]
struct Fuzzed {
    method: Method,
    path: &'static str,
    csrf: Option<Vec<u8>>,
    content_type: Option<Vec<u8>>,
    extra: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn fuzzed() -> impl Strategy<Value = Fuzzed> {
    let method = prop_oneof![
        8 => Just(Method::POST),
        1 => Just(Method::GET),
        1 => Just(Method::PUT),
        1 => Just(Method::OPTIONS),
    ];
    let path = prop_oneof![
        8 => Just("/authcode"),
        1 => Just("/authcode/"),
        1 => Just("/authcode?authCode=4%2F0x"),
        1 => Just("//authcode"),
    ];
    let header_bytes = prop_oneof![
        Just(b"com.example.app".to_vec()),
        Just(b"XMLHttpRequest".to_vec()),
        Just(b" ".to_vec()),
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 0..80),
    ];
    let content_type = prop_oneof![
        Just(b"application/x-www-form-urlencoded".to_vec()),
        Just(b"application/json".to_vec()),
        Just(b"multipart/form-data; boundary=x".to_vec()),
        Just(b"text/plain".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..60),
    ];
    let body = prop_oneof![
        "authCode=[ -~]{0,64}".prop_map(String::into_bytes),
        r#"\{"authCode":"[ -~]{0,64}"\}"#.prop_map(String::into_bytes),
        Just(format!("authCode={}", CODE_ALICE.replace('/', "%2F")).into_bytes()),
        Just(b"authCode=a&authCode=b".to_vec()),
        Just(b"[]".to_vec()),
        Just(b"42".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..256),
        proptest::collection::vec(Just(b'a'), 70_000..70_100),
    ];
    let extra = proptest::collection::vec(
        (
            prop_oneof![
                Just("content-length".to_owned()),
                Just("transfer-encoding".to_owned()),
                Just("x-forwarded-for".to_owned()),
                Just("origin".to_owned()),
                Just("authorization".to_owned()),
                Just("content-encoding".to_owned()),
                "[a-z-]{1,20}",
            ],
            proptest::collection::vec(any::<u8>(), 0..40),
        ),
        0..4,
    );
    (
        method,
        path,
        proptest::option::weighted(0.8, header_bytes),
        proptest::option::weighted(0.9, content_type),
        extra,
        body,
    )
        .prop_map(|(method, path, csrf, content_type, extra, body)| Fuzzed {
            method,
            path,
            csrf,
            content_type,
            extra,
            body,
        })
}

fn request(f: &Fuzzed) -> Option<Request<Body>> {
    let mut builder = Request::builder().method(f.method.clone()).uri(f.path);
    if let Some(csrf) = &f.csrf {
        builder = builder.header("x-requested-with", csrf.as_slice());
    }
    if let Some(content_type) = &f.content_type {
        builder = builder.header("content-type", content_type.as_slice());
    }
    for (name, value) in &f.extra {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    // Requests hyper could never deliver (invalid header bytes) are skipped.
    builder.body(Body::from(f.body.clone())).ok()
}

#[test]
fn fuzz_authcode_requests_through_the_router_are_never_5xx_and_reach_google_only_when_well_formed()
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exchanges = Arc::new(AtomicUsize::new(0));
    let mut mocks = Mocks::bare();
    let counted = Arc::clone(&exchanges);
    mocks.tokens.expect_exchange_code().returning(move |code| {
        counted.fetch_add(1, Ordering::SeqCst);
        exchange(code.expose_secret())
    });
    mocks.accept_id_tokens();
    mocks.tokens.expect_revoke().returning(|_| Ok(()));
    // No rate limit: every case must reach the parser, not a 429 after the first burst from this one peer.
    let config = HttpConfig {
        authcode_rate_limit: 0,
        ..HttpConfig::default()
    };
    let app = TestApp::with_config(mocks, config);
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&fuzzed(), |f| {
            let Some(req) = request(&f) else {
                return Ok(());
            };
            let before = exchanges.load(Ordering::SeqCst);
            let answer = rt.block_on(app.send(req));
            let reached_google = exchanges.load(Ordering::SeqCst) > before;
            prop_assert!(
                !answer.status.is_server_error(),
                "{} for {f:?}",
                answer.status
            );
            assert_no_canary(&answer.text());
            if answer.status != StatusCode::OK {
                let body: serde_json::Value =
                    serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
                prop_assert!(
                    body["error"].is_string(),
                    "{} without a JSON error: {}",
                    answer.status,
                    answer.text()
                );
            }
            if reached_google {
                prop_assert_eq!(f.method.clone(), Method::POST);
                prop_assert!(f.csrf.as_ref().is_some_and(|v| !v.is_empty()));
                prop_assert!(f.body.len() <= 65_536);
            }
            Ok(())
        })
        .unwrap();
}
