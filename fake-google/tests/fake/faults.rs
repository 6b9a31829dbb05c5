//! Fault injection: status, body, delay, dropped connection, malformed JSON; counted; journaled.

use fake_google::{Endpoint, Fault};
use serde_json::json;

use crate::helpers::{s, spawn, split};

#[tokio::test]
async fn a_status_fault_hits_the_next_n_requests_then_stops() {
    let ctx = spawn().await;
    ctx.fake
        .add_fault(Fault::status(Endpoint::Token, 503).times(2))
        .await
        .unwrap();
    let minted = ctx.mint("f@example.com").await;
    for _ in 0..2 {
        let (status, body) = ctx.exchange(&minted.code).await;
        assert_eq!(status, 503);
        assert!(body["error"].is_string());
    }
    // The code was never consumed: the third request goes through.
    ctx.exchange_ok(&minted.code).await;
    let journal = ctx.fake.requests().await;
    let fired: Vec<Option<&str>> = journal.iter().map(|e| e.fault.as_deref()).collect();
    assert_eq!(fired, vec![Some("status"), Some("status"), None]);
}

#[tokio::test]
async fn a_body_fault_answers_the_given_body() {
    let ctx = spawn().await;
    let (status, _) = split(
        ctx.http
            .post(ctx.url("/_fake/faults"))
            .json(&json!({"endpoint": "certs", "status": 500, "body": {"oops": true}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = split(
        ctx.http
            .get(ctx.url("/oauth2/v3/certs"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(body, json!({"oops": true}));
}

#[tokio::test]
async fn a_malformed_json_fault_answers_truncated_json() {
    let ctx = spawn().await;
    ctx.fake
        .add_fault(Fault::malformed_json(Endpoint::Token))
        .await
        .unwrap();
    let minted = ctx.mint("m@example.com").await;
    let resp = ctx
        .http
        .post(ctx.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", minted.code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );
    assert_eq!(
        ctx.fake.requests().await[0].fault.as_deref(),
        Some("malformed_json")
    );
}

#[tokio::test]
async fn a_dropped_connection_fault_closes_without_an_answer() {
    let ctx = spawn().await;
    ctx.fake
        .add_fault(Fault::drop_connection(Endpoint::Revoke))
        .await
        .unwrap();
    let err = ctx
        .http
        .post(ctx.url("/revoke"))
        .form(&[("token", "x")])
        .send()
        .await
        .expect_err("the connection is dropped");
    assert!(!err.is_status());
    let journal = ctx.fake.requests().await;
    assert_eq!(journal[0].fault.as_deref(), Some("drop_connection"));
    assert_eq!(journal[0].status, 0);
    // The next request is answered normally.
    let (status, _) = ctx.post_form("/revoke", &[("token", "x")]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_delay_fault_delays_the_real_answer_and_is_journaled() {
    let ctx = spawn().await;
    ctx.fake
        .add_fault(Fault::delay(Endpoint::Certs, 50))
        .await
        .unwrap();
    let (status, body) = split(
        ctx.http
            .get(ctx.url("/oauth2/v1/certs"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.as_object().is_some_and(|m| !m.is_empty()));
    assert_eq!(ctx.fake.requests().await[0].fault.as_deref(), Some("delay"));
}

#[tokio::test]
async fn faults_on_one_endpoint_leave_others_alone_and_can_be_cleared() {
    let ctx = spawn().await;
    ctx.fake
        .add_fault(Fault::status(Endpoint::Userinfo, 500).times(5))
        .await
        .unwrap();
    let (status, _) = split(
        ctx.http
            .get(ctx.url("/oauth2/v3/certs"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ctx.fake.faults()[0].times, 5);
    let resp = ctx
        .http
        .delete(ctx.url("/_fake/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(ctx.fake.faults().is_empty());
    let (status, _) = ctx.get_bearer("/oauth2/v3/userinfo", "ya29.x").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_drive_fault_answers_in_drives_envelope() {
    let ctx = spawn().await;
    ctx.fake
        .add_fault(Fault::status(Endpoint::Drive, 503))
        .await
        .unwrap();
    let (status, body) = ctx
        .get_bearer("/drive/v3/files/appDataFolder", "ya29.x")
        .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], 503);
    assert!(s(&body["error"]["errors"][0]["reason"]).len() > 3);
}
