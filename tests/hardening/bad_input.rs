//! Cases 1-3, 6, 7: bad input gets a clear 4xx JSON error, changes nothing and reaches no Google endpoint.

use fake_google::CodeRequest;
use offline_access_tests::TestApp;
use reqwest::Method;

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn without_x_requested_with_sign_in_is_403_and_no_foreign_origin_is_ever_approved() {
    let app = TestApp::spawn().await;
    let minted = app.mint_code(CodeRequest::new("cors@example.com")).await;
    let url = format!("{}/authcode", app.url);

    for x_requested_with in [None, Some(""), Some("   ")] {
        let mut request = app
            .http
            .post(&url)
            .header("Origin", "https://evil.example")
            .form(&[("authCode", minted.code.as_str())]);
        if let Some(value) = x_requested_with {
            request = request.header("X-Requested-With", value);
        }
        let response = request.send().await.unwrap();
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        assert_eq!(
            error_of(response).await,
            (403, "missing_csrf_header".into())
        );
    }
    // A CORS preflight from a foreign origin is never approved.
    let preflight = app
        .http
        .request(Method::OPTIONS, &url)
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "x-requested-with")
        .send()
        .await
        .unwrap();
    for header in [
        "access-control-allow-origin",
        "access-control-allow-headers",
        "access-control-allow-credentials",
    ] {
        assert!(preflight.headers().get(header).is_none(), "{header}");
    }

    assert_eq!(app.calls_to("token").await, 0);
    assert_eq!(app.stored_count().await, 0);
}

/// What is sent, its content type, its body, and the expected status and error code.
type Case = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test]
async fn malformed_sign_in_bodies_are_refused_before_any_call_to_google() {
    let app = TestApp::spawn().await;
    let url = format!("{}/authcode", app.url);
    let long_code = format!("4/{}", "a".repeat(2047));
    let over_limit = format!("authCode=4/{}", "a".repeat(64 * 1024));
    let cases: Vec<Case> = vec![
        (
            "empty form code",
            Some("application/x-www-form-urlencoded"),
            b"authCode=".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "empty JSON code",
            Some("application/json"),
            br#"{"authCode":""}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "code over 2 KiB",
            Some("application/x-www-form-urlencoded"),
            format!("authCode={long_code}").into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "newline in code",
            Some("application/x-www-form-urlencoded"),
            b"authCode=4%2F0a%0Ab".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "NUL in code",
            Some("application/json"),
            br#"{"authCode":"4/0a\u0000b"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "escape in code",
            Some("application/json"),
            br#"{"authCode":"4/0a\u001bb"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "DEL in code",
            Some("application/x-www-form-urlencoded"),
            b"authCode=4%2F0a%7Fb".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "JSON array",
            Some("application/json"),
            br#"["4/0abc"]"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "JSON number",
            Some("application/json"),
            b"42".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "JSON string",
            Some("application/json"),
            br#""4/0abc""#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "JSON null",
            Some("application/json"),
            b"null".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "numeric code",
            Some("application/json"),
            br#"{"authCode":42}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "nested code",
            Some("application/json"),
            br#"{"authCode":{"$ne":""}}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "truncated JSON",
            Some("application/json"),
            br#"{"authCode":"4/0"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "missing field",
            Some("application/json"),
            b"{}".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "code twice",
            Some("application/x-www-form-urlencoded"),
            b"authCode=4%2F0a&authCode=4%2F0b".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "not UTF-8",
            Some("application/x-www-form-urlencoded"),
            b"authCode=%FF%FE".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "text/plain",
            Some("text/plain"),
            b"authCode=4/0abc".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "multipart",
            Some("multipart/form-data; boundary=x"),
            b"--x--".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            None,
            b"authCode=4/0abc".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "XML",
            Some("application/xml"),
            b"<authCode>4/0abc</authCode>".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "body over the limit",
            Some("application/x-www-form-urlencoded"),
            over_limit.into_bytes(),
            413,
            "payload_too_large",
        ),
    ];
    let tried = cases.len();
    for (what, content_type, body, status, code) in cases {
        let mut request = app
            .http
            .post(&url)
            .header("X-Requested-With", "XMLHttpRequest")
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            error_of(response).await,
            (status, code.to_owned()),
            "{what}"
        );
    }
    // A chunked body over the limit (no Content-Length to refuse up front) is cut off while reading.
    let chunks = futures::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 1024])));
    let response = app
        .http
        .post(&url)
        .header("X-Requested-With", "XMLHttpRequest")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (413, "payload_too_large".into()));

    assert!(tried >= 20);
    assert_eq!(app.calls_to("token").await, 0, "a bad input reached Google");
    assert_eq!(app.stored_count().await, 0);
    // The server is still up and serving.
    let health = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_code_re_posted_concurrently_by_an_app_retry_costs_one_token_call_and_gets_one_answer() {
    let app = TestApp::spawn().await;
    let minted = app.mint_code(CodeRequest::new("retry@example.com")).await;

    let posts = (0..8).map(|_| app.post_authcode(&minted.code));
    let responses = futures::future::join_all(posts).await;

    let mut bodies = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 200);
        bodies.push(response.json::<serde_json::Value>().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(app.token_calls("authorization_code").await, 1);
    assert_eq!(app.stored_count().await, 1);
    assert_eq!(app.snapshot(&minted.sub).await.unwrap().version, 1);
}

#[tokio::test]
async fn a_replayed_code_of_a_signed_in_user_is_invalid_grant_and_keeps_the_refresh_token() {
    let settings = offline_access_domain::Settings {
        code_dedupe_ttl: std::time::Duration::ZERO,
        ..offline_access_domain::Settings::default()
    };
    let app = TestApp::spawn_with_options(offline_access_tests::TestOptions {
        settings,
        ..Default::default()
    })
    .await;
    let minted = app.mint_code(CodeRequest::new("replay@example.com")).await;
    assert_eq!(app.post_authcode(&minted.code).await.status(), 200);
    let before = app.snapshot(&minted.sub).await.unwrap();

    for _ in 0..3 {
        let replay = app.post_authcode(&minted.code).await;
        assert_eq!(error_of(replay).await, (400, "invalid_grant".into()));
    }

    assert_eq!(app.snapshot(&minted.sub).await.unwrap(), before);
    assert!(before.refresh_token.is_some());
    assert_eq!(app.token_calls("authorization_code").await, 4);
}

#[tokio::test]
async fn without_drive_appdata_sign_in_marks_drive_unavailable_and_no_drive_call_is_made() {
    let app = TestApp::spawn().await;
    let minted = app
        .mint_code(CodeRequest::new("noscope@example.com").scopes(["openid", "email"]))
        .await;
    let response = app.post_authcode(&minted.code).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["drive_available"], false);
    let token = app.id_token("noscope@example.com").await;

    for (method, path) in [
        (Method::GET, "/v1/me/drive/appfolder"),
        (Method::GET, "/v1/me/drive/files"),
        (Method::POST, "/v1/me/drive/files?name=a.txt"),
        (Method::GET, "/v1/me/drive/files/abc123"),
        (Method::GET, "/v1/me/drive/files/abc123/content"),
        (Method::PUT, "/v1/me/drive/files/abc123/content"),
        (Method::DELETE, "/v1/me/drive/files/abc123"),
    ] {
        let response = app
            .authed(method.clone(), path, &token)
            .body("x")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (403, "scope_missing"),
            "{method} {path}"
        );
        assert!(body["message"].as_str().unwrap().contains("scope"));
    }
    assert_eq!(app.calls_to("drive").await, 0);
    assert_eq!(app.calls_to("upload").await, 0);
    assert_eq!(app.token_calls("refresh_token").await, 0);
}

#[tokio::test]
async fn drive_paths_with_traversal_or_oversized_names_are_400_and_another_users_file_is_404() {
    let app = TestApp::spawn().await;
    app.sign_in("owner@example.com").await;
    app.sign_in("other@example.com").await;
    let owner = app.id_token("owner@example.com").await;
    let other = app.id_token("other@example.com").await;
    let created = app
        .authed(Method::POST, "/v1/me/drive/files?name=secret.txt", &owner)
        .header("Content-Type", "text/plain")
        .body("owner's secret")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let drive_calls = app.calls_to("drive").await + app.calls_to("upload").await;

    let long_name = "n".repeat(256);
    let long_id = "a".repeat(129);
    let bad = [
        (
            Method::GET,
            "/v1/me/drive/files/..%2F..%2Fetc%2Fpasswd".to_owned(),
        ),
        (Method::GET, "/v1/me/drive/files/%2E%2E%2Fx".to_owned()),
        (Method::GET, "/v1/me/drive/files/a.b/content".to_owned()),
        (Method::GET, format!("/v1/me/drive/files/{long_id}")),
        (Method::GET, "/v1/me/drive/files/abc%00def".to_owned()),
        (Method::DELETE, "/v1/me/drive/files/abc%20def".to_owned()),
        (Method::POST, format!("/v1/me/drive/files?name={long_name}")),
        (Method::POST, "/v1/me/drive/files?name=..".to_owned()),
        (Method::POST, "/v1/me/drive/files?name=a%2Fb".to_owned()),
        (
            Method::POST,
            "/v1/me/drive/files?name=..%5C..%5Cx".to_owned(),
        ),
        (Method::POST, "/v1/me/drive/files?name=a%0Ab".to_owned()),
        (Method::POST, "/v1/me/drive/files?name=".to_owned()),
        (Method::POST, "/v1/me/drive/files".to_owned()),
        (Method::GET, "/v1/me/drive/files?pageToken=a%20b".to_owned()),
    ];
    for (method, path) in bad {
        let response = app
            .authed(method.clone(), &path, &owner)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_of(response).await,
            (400, "invalid_request".into()),
            "{method} {path}"
        );
    }
    assert_eq!(
        app.calls_to("drive").await + app.calls_to("upload").await,
        drive_calls,
        "a bad path reached Drive"
    );

    // The other user asks for the owner's file id: Drive's 404, never the owner's data.
    for path in [
        format!("/v1/me/drive/files/{id}"),
        format!("/v1/me/drive/files/{id}/content"),
    ] {
        let response = app.authed(Method::GET, &path, &other).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 404, "{path}");
        assert!(!text.contains("owner's secret") && !text.contains("secret.txt"));
    }
    let deleted = app
        .authed(Method::DELETE, &format!("/v1/me/drive/files/{id}"), &other)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 404);
    let listed: serde_json::Value = app
        .authed(Method::GET, "/v1/me/drive/files", &other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!listed.to_string().contains(&id));
    // The owner's file is untouched.
    let content = app
        .authed(
            Method::GET,
            &format!("/v1/me/drive/files/{id}/content"),
            &owner,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(content.text().await.unwrap(), "owner's secret");
}
