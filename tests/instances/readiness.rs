//! `/readyz` follows PostgreSQL: 503 while it cannot be reached, 200 when it is back. PostgreSQL is cut off
//! through a TCP forwarder of the test's own (the shared cluster is never stopped).

use fake_google::FakeGoogle;

use fake_google::CodeRequest;

use crate::support::{Forwarder, Instance, TestDb, host_port, id_token, token_calls, via};

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_postgres_is_unreachable_and_200_when_it_is_back() {
    let db = TestDb::new();
    let forwarder = Forwarder::start(host_port(&db.url)).await;
    let fake = FakeGoogle::start().await.unwrap();
    let instance = Instance::spawn(&fake, db.store_at(&via(&db.url, forwarder.addr)).await).await;
    // A signed-in call loads Google's signing keys, the other readiness check.
    instance.sign_in(&fake, "ready@example.com").await;
    let token = id_token(&fake, "ready@example.com").await;
    assert_eq!(instance.get_status("/v1/me", &token).await, Some(200));
    assert_eq!(readyz(&instance).await, (200, "ok".to_owned()));

    forwarder.cut();
    let down = readyz(&instance).await;
    let still_down = readyz(&instance).await;
    forwarder.restore();
    let back = readyz(&instance).await;

    assert_eq!(down, (503, "unavailable".to_owned()));
    assert_eq!(still_down, (503, "unavailable".to_owned()));
    assert_eq!(back, (200, "ok".to_owned()));
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmigrated_schema_is_not_ready_and_a_sign_in_spends_no_code_until_it_is_migrated() {
    let db = TestDb::new();
    let fake = FakeGoogle::start().await.unwrap();
    let store = db.unmigrated_store().await;
    let instance = Instance::spawn(&fake, store.clone()).await;

    assert_eq!(readyz(&instance).await, (503, "unavailable".to_owned()));
    let minted = fake
        .control()
        .mint_code(CodeRequest::new("early@example.com"))
        .await
        .unwrap();
    let post = || {
        instance
            .http
            .post(format!("{}/authcode", instance.url))
            .header("X-Requested-With", "XMLHttpRequest")
            .form(&[("authCode", minted.code.as_str())])
            .send()
    };
    let refused = post().await.unwrap();
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable");
    assert_eq!(
        token_calls(&fake, "authorization_code").await,
        0,
        "the code was not spent at Google"
    );

    // Once migrated, the same code signs the user in.
    store.migrate().await.unwrap();
    let response = post().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(readyz(&instance).await.0, 200);
}

/// `/readyz`: the status and `checks.store`.
async fn readyz(instance: &Instance) -> (u16, String) {
    let response = reqwest::get(format!("{}/readyz", instance.url))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (
        status,
        body["checks"]["store"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}
