//! Drive v3 in appDataFolder: the exact requests Drive receives, and how its answers and errors are mapped.

use std::time::Duration;

use bytes::Bytes;
use offline_access_domain::{AccessToken, Drive, DriveError, DriveRequest, DriveResponse};
use offline_access_google::{FILE_FIELDS, Google, LIST_FIELDS};
use serde_json::json;
use wiremock::matchers::{any, header, method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

use crate::support::{
    closed_port_url, config, google, observe, query_is, raw_server, serving_8_mib,
};

const ACCESS: &str = "ya29.a0canary-access";

fn token() -> AccessToken {
    AccessToken::parse(ACCESS).unwrap()
}

fn bearer() -> wiremock::matchers::HeaderExactMatcher {
    header("authorization", format!("Bearer {ACCESS}").as_str())
}

fn file(id: &str) -> serde_json::Value {
    json!({"id": id, "name": "notes.txt", "mimeType": "text/plain", "size": "5",
           "modifiedTime": "2026-11-24T10:00:00.000Z"})
}

async fn run(server: &MockServer, request: DriveRequest) -> Result<DriveResponse, DriveError> {
    google(server).drive().execute(&token(), &request).await
}

#[tokio::test]
async fn get_appfolder_asks_for_the_alias_with_fields_and_the_bearer_token() {
    let server = MockServer::start().await;
    let folder = json!({"id": "0AAbCdEf", "name": "Application Data", "mimeType": "application/vnd.google-apps.folder"});
    Mock::given(method("GET"))
        .and(path("/drive/v3/files/appDataFolder"))
        .and(query_is(&[("fields", FILE_FIELDS)]))
        .and(bearer())
        .respond_with(ResponseTemplate::new(200).set_body_json(&folder))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        run(&server, DriveRequest::GetAppFolder).await.unwrap(),
        DriveResponse::Json(folder)
    );
    server.verify().await;
}

#[tokio::test]
async fn list_asks_for_the_appdata_space_with_fields_and_an_encoded_page_token() {
    let server = MockServer::start().await;
    let page = json!({"nextPageToken": "next", "files": [file("f1")]});
    Mock::given(method("GET"))
        .and(path("/drive/v3/files"))
        .and(query_is(&[
            ("spaces", "appDataFolder"),
            ("fields", LIST_FIELDS),
            ("pageSize", "100"),
            ("pageToken", "a+b/c=&d"),
        ]))
        .and(bearer())
        .respond_with(ResponseTemplate::new(200).set_body_json(&page))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/drive/v3/files"))
        .and(query_is(&[
            ("spaces", "appDataFolder"),
            ("fields", LIST_FIELDS),
            ("pageSize", "100"),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"files": []})))
        .expect(1)
        .mount(&server)
        .await;

    let first = run(&server, DriveRequest::ListFiles { page_token: None })
        .await
        .unwrap();
    let second = run(
        &server,
        DriveRequest::ListFiles {
            page_token: Some("a+b/c=&d".into()),
        },
    )
    .await
    .unwrap();

    assert_eq!(first, DriveResponse::Json(json!({"files": []})));
    assert_eq!(second, DriveResponse::Json(page));
    // The raw query keeps the token's reserved characters encoded.
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().any(|r| {
        r.url
            .query()
            .unwrap()
            .contains("pageToken=a%2Bb%2Fc%3D%26d")
    }));
    server.verify().await;
}

/// Parses Drive's multipart/related upload body and checks both parts.
struct MultipartIs {
    metadata: serde_json::Value,
    content_type: &'static str,
    content: &'static [u8],
}

impl Match for MultipartIs {
    fn matches(&self, request: &Request) -> bool {
        let Some(ct) = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(boundary) = ct.strip_prefix("multipart/related; boundary=") else {
            return false;
        };
        let body = &request.body;
        let delimiter = format!("--{boundary}");
        let Ok(text) = std::str::from_utf8(body) else {
            return false;
        };
        let parts: Vec<&str> = text.split(delimiter.as_str()).collect();
        // "", part 1, part 2, "--\r\n"
        if parts.len() != 4 || !parts[0].is_empty() || parts[3] != "--\r\n" {
            return false;
        }
        let Some(meta) =
            parts[1].strip_prefix("\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n")
        else {
            return false;
        };
        let Some(meta) = meta.strip_suffix("\r\n") else {
            return false;
        };
        let content_head = format!("\r\nContent-Type: {}\r\n\r\n", self.content_type);
        let Some(content) = parts[2].strip_prefix(content_head.as_str()) else {
            return false;
        };
        serde_json::from_str::<serde_json::Value>(meta)
            .ok()
            .as_ref()
            == Some(&self.metadata)
            && content.strip_suffix("\r\n").map(str::as_bytes) == Some(self.content)
    }
}

#[tokio::test]
async fn create_uploads_multipart_metadata_and_content_into_appdatafolder() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/upload/drive/v3/files"))
        .and(query_is(&[("uploadType", "multipart"), ("fields", FILE_FIELDS)]))
        .and(bearer())
        .and(MultipartIs {
            metadata: json!({"name": "notes.txt", "parents": ["appDataFolder"], "mimeType": "text/plain"}),
            content_type: "text/plain",
            content: b"hello",
        })
        .respond_with(ResponseTemplate::new(200).set_body_json(file("f1")))
        .expect(1)
        .mount(&server)
        .await;

    let created = run(
        &server,
        DriveRequest::CreateFile {
            name: "notes.txt".into(),
            content_type: "text/plain".into(),
            content: Bytes::from_static(b"hello"),
        },
    )
    .await
    .unwrap();

    assert_eq!(created, DriveResponse::Json(file("f1")));
    server.verify().await;
}

#[tokio::test]
async fn get_file_asks_for_its_metadata_fields() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/drive/v3/files/1aB_c-D"))
        .and(query_is(&[("fields", FILE_FIELDS)]))
        .and(bearer())
        .respond_with(ResponseTemplate::new(200).set_body_json(file("1aB_c-D")))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        run(
            &server,
            DriveRequest::GetFile {
                id: "1aB_c-D".into()
            }
        )
        .await
        .unwrap(),
        DriveResponse::Json(file("1aB_c-D"))
    );
    server.verify().await;
}

#[tokio::test]
async fn download_asks_for_media_and_returns_bytes_with_their_type() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/drive/v3/files/f1"))
        .and(query_is(&[("alt", "media")]))
        .and(bearer())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(b"\x00\x01binary".to_vec(), "application/x-thing"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let DriveResponse::Content {
        content_type,
        content,
    } = run(&server, DriveRequest::Download { id: "f1".into() })
        .await
        .unwrap()
    else {
        panic!("expected content")
    };
    assert_eq!(content_type, "application/x-thing");
    assert!(content.is_streaming());
    assert_eq!(content.length(), Some(8));
    assert_eq!(
        content.collect(8).await.unwrap(),
        Bytes::from_static(b"\x00\x01binary")
    );
    server.verify().await;
}

#[tokio::test]
async fn a_large_download_arrives_in_many_chunks_with_every_byte_in_order() {
    let (server, body) = serving_8_mib("/drive/v3/files/big").await;
    let DriveResponse::Content { content, .. } =
        run(&server, DriveRequest::Download { id: "big".into() })
            .await
            .unwrap()
    else {
        panic!("expected content")
    };
    assert_eq!(content.length(), Some(body.len() as u64));
    let mut stream = content.into_stream();
    let (mut received, mut chunks) = (Vec::new(), 0);
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        received.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    assert!(chunks > 1, "the content came as {chunks} chunk(s)");
    assert!(received == body, "the content differs");
}

async fn download_from(url: String, request_timeout: Duration) -> Result<Bytes, DriveError> {
    let mut config = offline_access_google::GoogleConfig::new(
        crate::support::CLIENT_ID.into(),
        secrecy::SecretString::from(crate::support::CLIENT_SECRET),
    );
    config.base_url = Some(url);
    config.request_timeout = request_timeout;
    let drive = Google::new(config).unwrap().drive();
    match drive
        .execute(&token(), &DriveRequest::Download { id: "f1".into() })
        .await?
    {
        DriveResponse::Content { content, .. } => content.collect(1 << 20).await,
        other => panic!("expected content, got {other:?}"),
    }
}

#[tokio::test]
async fn content_that_breaks_off_before_its_length_ends_the_stream_as_unavailable() {
    let url = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n",
        b"only ten b",
        Duration::ZERO,
    )
    .await;
    assert_eq!(
        download_from(url, Duration::from_secs(5)).await,
        Err(DriveError::Unavailable)
    );
}

#[tokio::test]
async fn content_that_stalls_longer_than_the_request_timeout_ends_as_unavailable() {
    let url = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n",
        b"only ten b",
        Duration::from_secs(30),
    )
    .await;
    let started = std::time::Instant::now();
    assert_eq!(
        download_from(url, Duration::from_millis(300)).await,
        Err(DriveError::Unavailable)
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the stall was not cut"
    );
}

#[tokio::test]
async fn a_download_whose_answer_never_comes_is_unavailable() {
    let url = raw_server("", b"", Duration::from_secs(30)).await;
    assert_eq!(
        download_from(url, Duration::from_millis(300)).await,
        Err(DriveError::Unavailable)
    );
}

#[tokio::test]
async fn a_download_refused_by_drive_maps_its_error_envelope() {
    let url = raw_server(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 65\r\n\r\n",
        b"{\"error\":{\"code\":403,\"errors\":[{\"reason\":\"insufficientScopes\"}]}}",
        Duration::ZERO,
    )
    .await;
    assert_eq!(
        download_from(url, Duration::from_secs(5)).await,
        Err(DriveError::InsufficientScope)
    );
}

#[tokio::test]
async fn update_content_patches_the_upload_endpoint_with_the_raw_bytes() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/upload/drive/v3/files/f1"))
        .and(query_is(&[
            ("uploadType", "media"),
            ("fields", FILE_FIELDS),
        ]))
        .and(bearer())
        .and(header("content-type", "application/json"))
        .and(wiremock::matchers::body_bytes(b"{\"v\":2}".to_vec()))
        .respond_with(ResponseTemplate::new(200).set_body_json(file("f1")))
        .expect(1)
        .mount(&server)
        .await;
    let updated = run(
        &server,
        DriveRequest::UpdateContent {
            id: "f1".into(),
            content_type: "application/json".into(),
            content: Bytes::from_static(b"{\"v\":2}"),
        },
    )
    .await
    .unwrap();
    assert_eq!(updated, DriveResponse::Json(file("f1")));
    server.verify().await;
}

#[tokio::test]
async fn delete_sends_delete_and_maps_204_to_empty() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/drive/v3/files/f1"))
        .and(query_is(&[]))
        .and(bearer())
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        run(&server, DriveRequest::Delete { id: "f1".into() })
            .await
            .unwrap(),
        DriveResponse::Empty
    );
    server.verify().await;
}

#[tokio::test]
async fn ids_names_types_and_page_tokens_outside_the_rules_never_reach_drive() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let long_id = "a".repeat(129);
    let mut requests = vec![];
    for id in [
        "../../etc/passwd",
        "a/b",
        "..",
        "f1%2F..",
        "f1?alt=media",
        "f 1",
        "",
        long_id.as_str(),
        "é",
    ] {
        requests.push(DriveRequest::GetFile { id: id.into() });
        requests.push(DriveRequest::Download { id: id.into() });
        requests.push(DriveRequest::Delete { id: id.into() });
        requests.push(DriveRequest::UpdateContent {
            id: id.into(),
            content_type: "text/plain".into(),
            content: Bytes::new(),
        });
    }
    for (name, content_type) in [
        ("", "text/plain"),
        (&*"n".repeat(256), "text/plain"),
        ("a\nb", "text/plain"),
        ("ok.txt", "text/plain\r\nX-Injected: 1"),
        ("ok.txt", "noslash"),
    ] {
        requests.push(DriveRequest::CreateFile {
            name: name.into(),
            content_type: content_type.into(),
            content: Bytes::new(),
        });
    }
    requests.push(DriveRequest::ListFiles {
        page_token: Some("a b".into()),
    });
    requests.push(DriveRequest::ListFiles {
        page_token: Some(String::new()),
    });

    for request in requests {
        let result = run(&server, request.clone()).await;
        assert!(
            matches!(result, Err(DriveError::BadRequest(_))),
            "{request:?}: {result:?}"
        );
    }
    server.verify().await;
}

fn envelope(code: u16, reason: &str) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({
        "error": {
            "code": code,
            "message": "canary message 1//0canary",
            "errors": [{"message": "canary", "domain": "global", "reason": reason}]
        }
    }))
}

#[tokio::test]
async fn drive_error_envelopes_map_to_typed_drive_errors() {
    let scope_details = ResponseTemplate::new(403).set_body_json(json!({
        "error": {"code": 403, "message": "Request had insufficient authentication scopes.",
                  "status": "PERMISSION_DENIED",
                  "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                               "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}
    }));
    let cases: Vec<(ResponseTemplate, DriveError)> = vec![
        (envelope(401, "authError"), DriveError::Unauthorized),
        (
            envelope(403, "insufficientPermissions"),
            DriveError::InsufficientScope,
        ),
        (
            envelope(403, "insufficientScopes"),
            DriveError::InsufficientScope,
        ),
        (scope_details, DriveError::InsufficientScope),
        (
            envelope(403, "userRateLimitExceeded").insert_header("retry-after", "3"),
            DriveError::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
            },
        ),
        (
            envelope(403, "rateLimitExceeded"),
            DriveError::RateLimited { retry_after: None },
        ),
        (
            envelope(429, "rateLimitExceeded").insert_header("retry-after", "9"),
            DriveError::RateLimited {
                retry_after: Some(Duration::from_secs(9)),
            },
        ),
        (
            ResponseTemplate::new(429),
            DriveError::RateLimited { retry_after: None },
        ),
        (
            envelope(403, "insufficientFilePermissions"),
            DriveError::Forbidden("insufficientFilePermissions".into()),
        ),
        (
            envelope(403, "notSupportedForAppDataFolderFiles"),
            DriveError::Forbidden("notSupportedForAppDataFolderFiles".into()),
        ),
        (
            ResponseTemplate::new(403),
            DriveError::Forbidden("unknown".into()),
        ),
        (envelope(404, "notFound"), DriveError::NotFound),
        (
            envelope(400, "invalid"),
            DriveError::BadRequest("invalid".into()),
        ),
        (
            envelope(400, "bad reason with spaces"),
            DriveError::BadRequest("unknown".into()),
        ),
        (envelope(500, "backendError"), DriveError::Unavailable),
        (envelope(502, "backendError"), DriveError::Unavailable),
        (ResponseTemplate::new(503), DriveError::Unavailable),
        (ResponseTemplate::new(408), DriveError::Unavailable),
        (
            ResponseTemplate::new(302).insert_header("location", "https://evil.example/"),
            DriveError::Protocol("unexpected HTTP status 302".into()),
        ),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(any()).respond_with(answer).mount(&server).await;
        let err = run(&server, DriveRequest::GetFile { id: "f1".into() })
            .await
            .unwrap_err();
        assert_eq!(err, expected);
        assert!(!format!("{err} {err:?}").contains("canary"));
    }
}

#[tokio::test]
async fn a_success_that_is_not_a_json_object_is_a_protocol_error() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("[1,2]"))
        .mount(&server)
        .await;
    assert!(matches!(
        run(&server, DriveRequest::GetAppFolder).await,
        Err(DriveError::Protocol(_))
    ));
}

#[tokio::test]
async fn unreachable_or_slow_drive_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(file("f1"))
                .set_delay(Duration::from_secs(10)),
        )
        .mount(&server)
        .await;
    let mut slow = config(&server);
    slow.request_timeout = Duration::from_millis(200);
    let mut closed = config(&server);
    closed.base_url = Some(closed_port_url());
    for config in [slow, closed] {
        let drive = Google::new(config).unwrap().drive();
        assert_eq!(
            drive.execute(&token(), &DriveRequest::GetAppFolder).await,
            Err(DriveError::Unavailable)
        );
    }
}

/// The warn line of an unreachable Drive in `logs`, which names `host` and `cause` and holds no token or query.
fn unreachable_line<'l>(logs: &'l str, host: &str, cause: &str) -> &'l str {
    let line = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("Drive is unreachable"))
        .unwrap_or_else(|| panic!("no warn line for an unreachable Drive in:\n{logs}"));
    assert!(line.contains(&format!("host={host}")), "{line}");
    assert!(line.contains(&format!("cause={cause} ")), "{line}");
    for secret in [ACCESS, "fields=", "appDataFolder", "?"] {
        assert!(!line.contains(secret), "{secret} in {line}");
    }
    line
}

#[test]
fn a_closed_port_is_logged_at_warn_naming_the_host_and_connect() {
    let base = closed_port_url();
    let host = base.trim_start_matches("http://").to_owned();
    let (logs, _) = observe(|| async {
        let server = MockServer::start().await;
        let mut config = config(&server);
        config.base_url = Some(base.clone());
        let drive = Google::new(config).unwrap().drive();
        for request in [
            DriveRequest::GetAppFolder,
            DriveRequest::Download { id: "f1".into() },
        ] {
            assert_eq!(
                drive.execute(&token(), &request).await,
                Err(DriveError::Unavailable)
            );
        }
    });
    let line = unreachable_line(&logs, &host, "connect");
    assert!(line.to_lowercase().contains("connection refused"), "{line}");
    assert_eq!(logs.matches("Drive is unreachable").count(), 2, "{logs}");
}

#[test]
fn a_tls_failure_and_a_timeout_are_told_apart_from_a_refused_connection() {
    let (logs, _) = observe(|| async {
        // HTTPS to a plain-HTTP server: the TLS handshake fails.
        let server = MockServer::start().await;
        let mut tls = config(&server);
        tls.base_url = Some(server.uri().replace("http://", "https://"));
        let drive = Google::new(tls).unwrap().drive();
        assert_eq!(
            drive.execute(&token(), &DriveRequest::GetAppFolder).await,
            Err(DriveError::Unavailable)
        );
    });
    let host = logs_host(&logs);
    assert!(host.starts_with("127.0.0.1:"), "{host}");
    let line = unreachable_line(&logs, &host, "tls");
    assert!(!line.contains("cause=connect"), "{line}");

    let (logs, _) = observe(|| async {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
            .mount(&server)
            .await;
        let mut slow = config(&server);
        slow.request_timeout = Duration::from_millis(200);
        let drive = Google::new(slow).unwrap().drive();
        assert_eq!(
            drive.execute(&token(), &DriveRequest::GetAppFolder).await,
            Err(DriveError::Unavailable)
        );
    });
    unreachable_line(&logs, &logs_host(&logs), "timeout");
}

/// The `host=` value of the unreachable-Drive line (for a server whose port the test did not choose).
fn logs_host(logs: &str) -> String {
    let line = logs
        .lines()
        .find(|l| l.contains("Drive is unreachable"))
        .unwrap_or_else(|| panic!("{logs}"));
    let at = line.find(" host=").unwrap_or_else(|| panic!("{line}")) + " host=".len();
    line[at..].split_whitespace().next().unwrap().to_owned()
}

#[tokio::test]
async fn a_drive_outage_status_is_unavailable_and_its_body_stays_out_of_the_error() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(503).set_body_string(format!("down {ACCESS}")))
        .mount(&server)
        .await;
    let error = run(&server, DriveRequest::GetAppFolder).await.unwrap_err();
    assert_eq!(error, DriveError::Unavailable);
    assert!(!error.to_string().contains(ACCESS));
}
