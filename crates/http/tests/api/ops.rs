//! Health, readiness, metrics, the OpenAPI document, and JSON for every routing error.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use metrics_exporter_prometheus::PrometheusBuilder;
use offline_access_domain::memory::{ManualClock, MemoryStore};
use offline_access_domain::ports::{MockCredentialStore, MockIdTokenVerifier};
use offline_access_domain::{OfflineAccess, Ports, StoreError};
use offline_access_http::{AppState, HttpConfig, router};

use crate::helpers::*;

fn plain_get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn healthz_is_200_ok() {
    let app = TestApp::new(Mocks::bare());

    let answer = app.send(plain_get("/healthz")).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["status"], "ok");
}

#[tokio::test]
async fn readyz_is_200_when_the_store_answers_and_keys_are_loaded() {
    let app = TestApp::new(Mocks::bare());

    let answer = app.send(plain_get("/readyz")).await;

    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    assert_eq!(json["status"], "ready");
    assert_eq!(json["checks"]["store"], "ok");
    assert_eq!(json["checks"]["signing_keys"], "ok");
}

#[tokio::test]
async fn readyz_is_503_until_signing_keys_are_loaded() {
    let mut mocks = Mocks::bare();
    mocks.verifier = MockIdTokenVerifier::new();
    mocks.verifier.expect_keys_loaded().return_const(false);
    let app = TestApp::new(mocks);

    let answer = app.send(plain_get("/readyz")).await;

    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let json = answer.json();
    assert_eq!(json["error"], "not_ready");
    assert!(json["message"].as_str().unwrap().ends_with('.'));
    assert_eq!(json["checks"]["signing_keys"], "not_loaded");
}

#[tokio::test]
async fn readyz_is_503_when_the_store_is_down() {
    let mut store = MockCredentialStore::new();
    store
        .expect_ping()
        .returning(|| Err(StoreError::Unavailable("disk gone".into())));
    let app = TestApp::with_store(
        Mocks::bare(),
        HttpConfig::default(),
        Arc::new(store),
        MemoryStore::new(),
    );

    let answer = app.send(plain_get("/readyz")).await;

    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["checks"]["store"], "unavailable");
    assert!(!answer.text().contains("disk gone"));
}

#[tokio::test]
async fn metrics_without_a_renderer_is_a_json_404() {
    let app = TestApp::new(Mocks::bare());

    app.send(plain_get("/metrics"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn metrics_count_sign_ins_drive_calls_and_requests_without_any_secret() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mocks = Mocks::google();
    let clock = Arc::new(ManualClock::new(NOW));
    let memory = MemoryStore::new();
    let service = Arc::new(OfflineAccess::new(
        Ports {
            tokens: Arc::new(mocks.tokens),
            verifier: Arc::new(mocks.verifier),
            store: Arc::new(memory.clone()),
            drive: Arc::new(mocks.drive),
            clock,
        },
        settings(),
    ));
    let render = handle.clone();
    let state = AppState::new(service, HttpConfig::default())
        .with_metrics(Arc::new(move || render.render()));
    let app = TestApp {
        router: router(state),
        store: memory,
        clock: Arc::new(ManualClock::new(NOW)),
        drive_calls: mocks.drive_calls,
        peer: "192.0.2.10:50000".parse().unwrap(),
    };

    app.sign_in_alice().await;
    app.sign_in(CODE_USED).await;
    app.send(authcode_json("[]")).await;
    app.send(get("/v1/me/drive/appfolder", ID_ALICE)).await;
    app.send(get("/v1/me/drive/files/bobFile", ID_ALICE)).await;
    let answer = app.send(plain_get("/metrics")).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = answer.text();
    for expected in [
        r#"offline_access_sign_ins_total{outcome="success"} 1"#,
        r#"offline_access_sign_ins_total{outcome="invalid_grant"} 1"#,
        r#"offline_access_sign_ins_total{outcome="invalid_request"} 1"#,
        r#"offline_access_drive_calls_total{operation="get_appfolder",outcome="success"} 1"#,
        r#"offline_access_drive_calls_total{operation="get",outcome="not_found"} 1"#,
        r#"offline_access_http_requests_total{route="/authcode",status="200"} 1"#,
        r#"offline_access_http_requests_total{route="/v1/me/drive/files/{id}",status="404"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    assert_no_canary(&text);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::new(Mocks::bare());

    let answer = app.send(plain_get("/openapi.json")).await;

    assert_eq!(answer.status, StatusCode::OK);
    let doc = answer.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/authcode", "post"),
        ("/v1/me", "get"),
        ("/v1/me", "delete"),
        ("/v1/me/drive/appfolder", "get"),
        ("/v1/me/drive/files", "get"),
        ("/v1/me/drive/files", "post"),
        ("/v1/me/drive/files/{id}", "get"),
        ("/v1/me/drive/files/{id}", "delete"),
        ("/v1/me/drive/files/{id}/content", "get"),
        ("/v1/me/drive/files/{id}/content", "put"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["google_id_token"].is_object());
    assert_eq!(
        doc,
        serde_json::to_value(offline_access_http::openapi()).unwrap()
    );
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = TestApp::new(Mocks::bare());

    app.send(plain_get("/nope/4/0canaryCodeInPath"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405_with_allow() {
    let app = TestApp::new(Mocks::bare());

    let answer = app.send(plain_get("/authcode")).await;

    answer.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert!(answer.headers.get("allow").is_some());
    let answer = app
        .send(Request::patch("/v1/me").body(Body::empty()).unwrap())
        .await;
    answer.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn every_response_carries_nosniff() {
    let app = TestApp::new(Mocks::bare());
    for path in ["/healthz", "/nope", "/openapi.json"] {
        let answer = app.send(plain_get(path)).await;
        assert_eq!(
            answer.headers.get("x-content-type-options").unwrap(),
            "nosniff"
        );
    }
}
