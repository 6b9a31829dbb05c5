//! `/v1/me/drive/...`: each route, input validation before any call, and every Drive error row.

use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use offline_access_domain::{DriveError, DriveRequest, TokenError};
use offline_access_http::HttpConfig;

use crate::helpers::*;

async fn alice_app(mocks: Mocks) -> TestApp {
    let app = TestApp::new(mocks);
    app.sign_in_alice().await;
    app
}

fn upload(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ID_ALICE}"));
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder.body(body.into()).unwrap()
}

#[tokio::test]
async fn the_appfolder_is_drives_json_fetched_with_the_users_stored_access_token() {
    let app = alice_app(Mocks::google()).await;

    let answer = app.send(get("/v1/me/drive/appfolder", ID_ALICE)).await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["id"], "appfolder-alice");
    let calls = app.drive_calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![(ACCESS_ALICE.to_owned(), DriveRequest::GetAppFolder)]
    );
    assert_no_canary(&answer.text());
}

#[tokio::test]
async fn listing_files_passes_the_page_token() {
    let app = alice_app(Mocks::google()).await;

    let first = app.send(get("/v1/me/drive/files", ID_ALICE)).await;
    let next = app
        .send(get("/v1/me/drive/files?pageToken=abc123", ID_ALICE))
        .await;

    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json()["files"][0]["id"], "aliceFile1");
    assert_eq!(next.json()["nextPageToken"], "after-abc123");
    let calls = app.drive_calls.lock().unwrap().clone();
    assert_eq!(
        calls[1].1,
        DriveRequest::ListFiles {
            page_token: Some("abc123".into())
        }
    );
}

#[tokio::test]
async fn a_bad_page_token_is_400_with_no_drive_call() {
    let app = alice_app(Mocks::google()).await;
    for query in ["pageToken=", "pageToken=a%0Ab", "pageToken=a&pageToken=b"] {
        app.send(get(&format!("/v1/me/drive/files?{query}"), ID_ALICE))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    assert_eq!(app.drive_call_count(), 0);
}

#[tokio::test]
async fn creating_a_file_keeps_its_name_content_and_content_type_and_answers_201() {
    let app = alice_app(Mocks::google()).await;

    let answer = app
        .send(upload(
            "POST",
            "/v1/me/drive/files?name=notes%20v2.json",
            Some("application/json; charset=utf-8"),
            r#"{"hello":"world"}"#,
        ))
        .await;

    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert_eq!(answer.json()["name"], "notes v2.json");
    let calls = app.drive_calls.lock().unwrap().clone();
    assert_eq!(
        calls[0].1,
        DriveRequest::CreateFile {
            name: "notes v2.json".into(),
            content_type: "application/json; charset=utf-8".into(),
            content: Bytes::from_static(br#"{"hello":"world"}"#),
        }
    );
}

#[tokio::test]
async fn an_upload_without_a_content_type_is_octet_stream() {
    let app = alice_app(Mocks::google()).await;

    let answer = app
        .send(upload(
            "POST",
            "/v1/me/drive/files?name=blob",
            None,
            vec![0u8, 1, 2],
        ))
        .await;

    assert_eq!(answer.status, StatusCode::CREATED);
    let calls = app.drive_calls.lock().unwrap().clone();
    let DriveRequest::CreateFile { content_type, .. } = &calls[0].1 else {
        panic!("{calls:?}");
    };
    assert_eq!(content_type, "application/octet-stream");
}

#[tokio::test]
async fn bad_file_names_are_400_with_no_drive_call() {
    let app = alice_app(Mocks::google()).await;
    let long = "a".repeat(256);
    let names = [
        "".to_owned(),
        "..".to_owned(),
        ".".to_owned(),
        "a%2Fb".to_owned(),
        "..%2F..%2Fetc%2Fpasswd".to_owned(),
        "a%5Cb".to_owned(),
        "a%0Ab".to_owned(),
        "a%00b".to_owned(),
        long,
    ];
    for name in names {
        app.send(upload(
            "POST",
            &format!("/v1/me/drive/files?name={name}"),
            Some("text/plain"),
            "x",
        ))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    app.send(upload(
        "POST",
        "/v1/me/drive/files",
        Some("text/plain"),
        "x",
    ))
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(app.drive_call_count(), 0);
}

#[tokio::test]
async fn a_255_byte_name_is_accepted() {
    let app = alice_app(Mocks::google()).await;
    let name = "n".repeat(255);

    let answer = app
        .send(upload(
            "POST",
            &format!("/v1/me/drive/files?name={name}"),
            Some("text/plain"),
            "x",
        ))
        .await;

    assert_eq!(answer.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_bad_upload_content_type_is_400() {
    let app = alice_app(Mocks::google()).await;

    app.send(upload(
        "POST",
        "/v1/me/drive/files?name=x",
        Some("nonsense"),
        "x",
    ))
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_request");

    assert_eq!(app.drive_call_count(), 0);
}

#[tokio::test]
async fn uploads_may_exceed_the_small_body_limit_but_not_the_drive_limit() {
    let config = HttpConfig {
        body_limit: 1024,
        drive_body_limit: 64 * 1024,
        ..HttpConfig::default()
    };
    let app = TestApp::with_config(Mocks::google(), config);
    app.sign_in_alice().await;

    let medium = app
        .send(upload(
            "POST",
            "/v1/me/drive/files?name=medium",
            Some("application/octet-stream"),
            vec![7u8; 32 * 1024],
        ))
        .await;
    let large = app
        .send(upload(
            "PUT",
            "/v1/me/drive/files/aliceFile1/content",
            Some("application/octet-stream"),
            vec![7u8; 65 * 1024],
        ))
        .await;

    assert_eq!(medium.status, StatusCode::CREATED);
    large.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(app.drive_call_count(), 1);
}

#[tokio::test]
async fn file_metadata_content_update_and_delete_reach_drive_with_the_id() {
    let app = alice_app(Mocks::google()).await;

    let metadata = app
        .send(get("/v1/me/drive/files/aliceFile1", ID_ALICE))
        .await;
    let content = app
        .send(get("/v1/me/drive/files/aliceFile1/content", ID_ALICE))
        .await;
    let updated = app
        .send(upload(
            "PUT",
            "/v1/me/drive/files/aliceFile1/content",
            Some("text/plain"),
            "new",
        ))
        .await;
    let deleted = app
        .send(with_bearer(
            "DELETE",
            "/v1/me/drive/files/aliceFile1",
            ID_ALICE,
            b"",
        ))
        .await;

    assert_eq!(metadata.status, StatusCode::OK);
    assert_eq!(metadata.json()["id"], "aliceFile1");
    assert_eq!(content.status, StatusCode::OK);
    assert_eq!(content.body, Bytes::from_static(b"<p>hello</p>"));
    assert_eq!(content.headers.get("content-type").unwrap(), "text/html");
    assert_eq!(
        content.headers.get("x-content-type-options").unwrap(),
        "nosniff"
    );
    assert!(
        content
            .headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.body.is_empty());
    let ops: Vec<DriveRequest> = app
        .drive_calls
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(
        ops,
        vec![
            DriveRequest::GetFile {
                id: "aliceFile1".into()
            },
            DriveRequest::Download {
                id: "aliceFile1".into()
            },
            DriveRequest::UpdateContent {
                id: "aliceFile1".into(),
                content_type: "text/plain".into(),
                content: Bytes::from_static(b"new"),
            },
            DriveRequest::Delete {
                id: "aliceFile1".into()
            },
        ]
    );
}

#[tokio::test]
async fn bad_file_ids_are_400_before_any_call() {
    let mut mocks = Mocks::google();
    mocks.verifier = offline_access_domain::ports::MockIdTokenVerifier::new();
    mocks.verifier.expect_verify().never();
    mocks.verifier.expect_keys_loaded().return_const(true);
    let app = TestApp::new(mocks);
    let long = "a".repeat(129);
    let ids = [
        "a.b",
        "..%2F..%2Fetc",
        "%2e%2e",
        "a%20b",
        "a%00b",
        "%C3%A9",
        "a;b",
        long.as_str(),
    ];
    for id in ids {
        for (method, suffix) in [
            ("GET", ""),
            ("DELETE", ""),
            ("GET", "/content"),
            ("PUT", "/content"),
        ] {
            let answer = app
                .send(with_bearer(
                    method,
                    &format!("/v1/me/drive/files/{id}{suffix}"),
                    ID_ALICE,
                    b"x",
                ))
                .await;
            answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
    }
    assert_eq!(app.drive_call_count(), 0);
}

#[tokio::test]
async fn another_users_file_id_is_404_and_never_their_data() {
    let app = alice_app(Mocks::google()).await;
    app.sign_in(CODE_BOB).await;

    let answer = app
        .send(get("/v1/me/drive/files/aliceFile1/content", ID_BOB))
        .await;

    answer.assert_error(StatusCode::NOT_FOUND, "not_found");
    let calls = app.drive_calls.lock().unwrap().clone();
    assert_eq!(calls[0].0, ACCESS_BOB);
}

#[tokio::test]
async fn without_drive_appdata_drive_routes_are_403_scope_missing_with_no_drive_call() {
    let app = TestApp::new(Mocks::google());
    app.sign_in(CODE_NO_DRIVE).await;

    let answer = app.send(get("/v1/me/drive/appfolder", ID_ALICE)).await;

    answer.assert_error(StatusCode::FORBIDDEN, "scope_missing");
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("drive.appdata")
    );
    assert_eq!(app.drive_call_count(), 0);
}

#[tokio::test]
async fn drive_for_a_user_never_signed_in_is_404() {
    let app = TestApp::new(Mocks::google());

    app.send(get("/v1/me/drive/appfolder", ID_ALICE))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.drive_call_count(), 0);
}

/// One row per Drive failure: what the app sees.
#[tokio::test]
async fn every_drive_failure_maps_to_its_status_and_code() {
    let rows: Vec<(DriveError, StatusCode, &str)> = vec![
        (DriveError::NotFound, StatusCode::NOT_FOUND, "not_found"),
        (
            DriveError::BadRequest("Invalid field selection".into()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            DriveError::Forbidden("notSupportedForAppDataFolderFiles".into()),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            DriveError::InsufficientScope,
            StatusCode::FORBIDDEN,
            "scope_missing",
        ),
        (
            DriveError::RateLimited { retry_after: None },
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
        ),
        (
            DriveError::Unavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
        ),
        (
            DriveError::Protocol("not json".into()),
            StatusCode::BAD_GATEWAY,
            "upstream_error",
        ),
    ];
    for (error, status, code) in rows {
        let mut mocks = Mocks::bare();
        mocks
            .tokens
            .expect_exchange_code()
            .returning(|c| exchange(c.expose_secret()));
        mocks.accept_id_tokens();
        mocks
            .drive
            .expect_execute()
            .returning(move |_, _| Err(error.clone()));
        let app = alice_app(mocks).await;

        let answer = app
            .send(get("/v1/me/drive/files/aliceFile1", ID_ALICE))
            .await;

        answer.assert_error(status, code);
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(answer.headers.get("retry-after").is_some());
        }
        // Drive's own words are logged, not returned.
        assert!(!answer.text().contains("Invalid field selection"));
    }
}

#[tokio::test]
async fn a_drive_401_after_a_refresh_is_502_and_not_a_loop() {
    let mut mocks = Mocks::bare();
    mocks
        .tokens
        .expect_exchange_code()
        .returning(|c| exchange(c.expose_secret()));
    mocks
        .tokens
        .expect_refresh()
        .times(1)
        .returning(|_| Ok(token_response("ya29.fresh", None, None, ALL_SCOPES)));
    mocks.accept_id_tokens();
    mocks
        .drive
        .expect_execute()
        .times(2)
        .returning(|_, _| Err(DriveError::Unauthorized));
    let app = alice_app(mocks).await;

    app.send(get("/v1/me/drive/appfolder", ID_ALICE))
        .await
        .assert_error(StatusCode::BAD_GATEWAY, "upstream_error");
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_before_the_drive_call() {
    let mut mocks = Mocks::google();
    mocks
        .tokens
        .expect_refresh()
        .times(1)
        .withf(|t| t.expose_secret() == REFRESH_ALICE)
        .returning(|_| Ok(token_response(ACCESS_ALICE, None, None, ALL_SCOPES)));
    let app = alice_app(mocks).await;
    app.clock.advance(time::Duration::hours(2));

    let answer = app.send(get("/v1/me/drive/appfolder", ID_ALICE)).await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

/// One row per refresh failure seen through a Drive route.
#[tokio::test]
async fn every_refresh_failure_maps_to_its_status_and_code() {
    let rows: Vec<(TokenError, StatusCode, &str)> = vec![
        (
            TokenError::InvalidGrant,
            StatusCode::CONFLICT,
            "reconsent_required",
        ),
        (
            TokenError::InvalidClient("invalid_client".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_misconfigured",
        ),
        (
            TokenError::Unavailable { retry_after: None },
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
        ),
        (
            TokenError::Protocol("garbage".into()),
            StatusCode::BAD_GATEWAY,
            "upstream_error",
        ),
    ];
    for (error, status, code) in rows {
        let mut mocks = Mocks::google();
        mocks
            .tokens
            .expect_refresh()
            .returning(move |_| Err(error.clone()));
        let app = alice_app(mocks).await;
        app.clock.advance(time::Duration::hours(2));

        app.send(get("/v1/me/drive/appfolder", ID_ALICE))
            .await
            .assert_error(status, code);

        assert_eq!(app.drive_call_count(), 0);
        assert_eq!(
            app.stored(SUB_ALICE)
                .await
                .unwrap()
                .refresh_token
                .unwrap()
                .expose_secret(),
            REFRESH_ALICE
        );
    }
}

#[tokio::test]
async fn an_expired_access_token_without_a_refresh_token_needs_reconsent() {
    let app = TestApp::new(Mocks::google());
    app.sign_in(CODE_ALICE_AGAIN).await;
    app.clock.advance(time::Duration::hours(2));

    app.send(get("/v1/me/drive/appfolder", ID_ALICE))
        .await
        .assert_error(StatusCode::CONFLICT, "reconsent_required");
}

#[tokio::test]
async fn content_that_breaks_off_upstream_ends_the_answer_with_an_error_never_a_short_complete_file()
 {
    use http_body_util::BodyExt;
    use offline_access_domain::{DriveResponse, FileContent};
    use tower::ServiceExt;

    let mut mocks = Mocks::signing_in();
    mocks.drive.expect_execute().returning(|_, _| {
        Ok(DriveResponse::Content {
            content_type: "text/plain".into(),
            content: FileContent::streaming(
                Some(100),
                futures::stream::iter([
                    Ok(Bytes::from_static(b"the first ten")),
                    Err(DriveError::Unavailable),
                ]),
            ),
        })
    });
    let app = alice_app(mocks).await;
    let mut request = get("/v1/me/drive/files/aliceFile1/content", ID_ALICE);
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(app.peer));
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], "100");
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, Bytes::from_static(b"the first ten"));
    assert!(
        body.frame().await.unwrap().is_err(),
        "the break upstream must reach the client as a body error"
    );
}
