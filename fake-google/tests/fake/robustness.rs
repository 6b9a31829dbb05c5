//! No input makes the fake panic or answer anything but Google-style JSON; concurrency holds.

use axum::body::Body;
use proptest::prelude::*;
use tower::ServiceExt as _;

use crate::helpers::spawn;

const PATHS: &[&str] = &[
    "/token",
    "/revoke",
    "/oauth2/v3/certs",
    "/oauth2/v1/certs",
    "/.well-known/openid-configuration",
    "/v1/userinfo",
    "/oauth2/v3/userinfo",
    "/oauth2/v3/tokeninfo",
    "/_fake/codes",
    "/_fake/id_tokens",
    "/_fake/settings",
    "/_fake/faults",
    "/_fake/keys/rotate",
    "/_fake/users/%FF%FE/revoke",
    "/_fake/users/x/expire",
    "/drive/v3/files",
    "/upload/drive/v3/files",
    "/somewhere/else",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn any_body_on_any_endpoint_gets_a_json_answer(
        path in proptest::sample::select(PATHS),
        method in proptest::sample::select(&["GET", "POST", "PUT", "DELETE", "PATCH"][..]),
        content_type in proptest::sample::select(&["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/related; boundary=x"][..]),
        auth in proptest::sample::select(&["", "Bearer", "Bearer ya29.x", "Basic !!!", "Basic Og=="][..]),
        query in "[a-z_=&%0-9]{0,20}",
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let control = fake_google::Control::new(fake_google::FakeConfig::default().client).unwrap();
            let app = fake_google::router(&control);
            let mut req = http::Request::builder()
                .method(method)
                .uri(format!("{path}?{query}"))
                .header("content-type", content_type);
            if !auth.is_empty() {
                req = req.header("authorization", auth);
            }
            let resp = app.oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            assert!(status < 500 || status == 501, "{method} {path}: {status}");
            if !bytes.is_empty() && status >= 400 {
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                    "{method} {path} -> {status}: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        });
    }
}

#[tokio::test]
async fn concurrent_exchanges_all_succeed_with_distinct_tokens() {
    let ctx = spawn().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let minted = ctx.mint(&format!("c{i}@example.com")).await;
        let http = ctx.http.clone();
        let url = ctx.url("/token");
        let (id, secret) = (ctx.fake.client_id(), ctx.fake.client_secret());
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", minted.code.as_str()),
                    ("client_id", &id),
                    ("client_secret", &secret),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let body: serde_json::Value = resp.json().await.unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 40);
}
