//! HTTP-level tests of the Drive router through `tower::ServiceExt::oneshot`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Body;
use http::{HeaderMap, Request, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;

/// 2026-11-24T21:47:00Z
const T0: i64 = 1_795_556_820;

#[derive(Clone)]
struct TestAuth {
    store: Arc<DriveStore>,
    now: Arc<AtomicI64>,
}

impl DriveAuth for TestAuth {
    fn authorize(&self, bearer: Option<&str>) -> Result<DriveUser, DriveAuthError> {
        let user = |sub: &str, scope| DriveUser {
            sub: sub.to_owned(),
            has_appdata_scope: scope,
        };
        match bearer {
            None => Err(DriveAuthError::Missing),
            Some("ya29.alice") => Ok(user("alice", true)),
            Some("ya29.bob") => Ok(user("bob", true)),
            Some("ya29.noscope") => Ok(user("carol", false)),
            Some(_) => Err(DriveAuthError::Invalid),
        }
    }
    fn drive_store(&self) -> &DriveStore {
        &self.store
    }
    fn now_unix(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

struct App {
    router: Router,
    auth: TestAuth,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn reason(&self) -> String {
        self.json()["error"]["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn app() -> App {
    app_with(DriveStore::new())
}

fn app_with(store: DriveStore) -> App {
    let auth = TestAuth {
        store: Arc::new(store),
        now: Arc::new(AtomicI64::new(T0)),
    };
    App {
        router: router(auth.clone()),
        auth,
    }
}

impl App {
    async fn send(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "fake.test:8080");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str, token: &str) -> Reply {
        self.send("GET", uri, Some(token), &[], Body::empty()).await
    }

    async fn post_json(&self, uri: &str, token: &str, value: &Value) -> Reply {
        let headers = [("content-type", "application/json; charset=UTF-8")];
        self.send("POST", uri, Some(token), &headers, value.to_string())
            .await
    }

    async fn patch_json(&self, uri: &str, token: &str, value: &Value) -> Reply {
        let headers = [("content-type", "application/json")];
        self.send("PATCH", uri, Some(token), &headers, value.to_string())
            .await
    }

    /// Creates a file with content through a Node-style multipart upload; returns its id.
    async fn create_file(&self, token: &str, name: &str, content: &[u8]) -> String {
        let mut body = format!(
            "--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz\r\nContent-Type: text/plain\r\n\r\n",
            json!({"name": name, "parents": ["appDataFolder"]})
        )
        .into_bytes();
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n--xyz--");
        let reply = self
            .send(
                "POST",
                "/upload/drive/v3/files?uploadType=multipart",
                Some(token),
                &[("content-type", "multipart/related; boundary=xyz")],
                body,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
        reply.json()["id"].as_str().unwrap().to_owned()
    }

    fn advance(&self, seconds: i64) {
        self.auth.now.fetch_add(seconds, Ordering::SeqCst);
    }
}

const ALICE: &str = "ya29.alice";
const BOB: &str = "ya29.bob";

#[tokio::test]
async fn both_folder_aliases_return_the_same_real_folder() {
    let app = app();
    let a = app.get("/drive/v3/files/appDataFolder", ALICE).await;
    let b = app.get("/drive/v3/files/appfolder?fields=*", ALICE).await;
    assert_eq!(a.status, StatusCode::OK);
    let (a, b) = (a.json(), b.json());
    assert_eq!(
        a,
        json!({"kind": "drive#file", "id": a["id"], "name": "Application Data",
               "mimeType": "application/vnd.google-apps.folder"})
    );
    assert_eq!(a["id"], b["id"]);
    assert_ne!(a["id"], json!("appDataFolder"));
    assert_eq!(b["spaces"], json!(["appDataFolder"]));
    let by_id = app
        .get(
            &format!("/drive/v3/files/{}", a["id"].as_str().unwrap()),
            ALICE,
        )
        .await;
    assert_eq!(by_id.json(), a);
    let other = app.get("/drive/v3/files/appDataFolder", BOB).await.json();
    assert_ne!(other["id"], a["id"]);
    assert_eq!(app.auth.store.user_count(), 2);
}

#[tokio::test]
async fn a_request_without_a_token_gets_401_in_drives_envelope() {
    let app = app();
    let reply = app
        .send(
            "GET",
            "/drive/v3/files/appDataFolder",
            None,
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], 401);
    assert_eq!(error["status"], "UNAUTHENTICATED");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("Request is missing required authentication credential.")
    );
    assert_eq!(error["errors"][0]["reason"], "authError");
    assert_eq!(error["errors"][0]["location"], "Authorization");
    assert_eq!(error["errors"][0]["locationType"], "header");
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=")
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
}

#[tokio::test]
async fn an_unknown_expired_or_revoked_token_gets_401_invalid_credentials() {
    let app = app();
    for auth in ["Bearer ya29.revoked", "Basic dXNlcjpwYXNz", "Bearer "] {
        let reply = app
            .send(
                "GET",
                "/drive/v3/files?spaces=appDataFolder",
                None,
                &[("authorization", auth)],
                Body::empty(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{auth}");
        let error = &reply.json()["error"];
        assert_eq!(
            error["message"],
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
             cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project."
        );
        assert_eq!(error["errors"][0]["message"], "Invalid Credentials");
        assert_eq!(error["errors"][0]["reason"], "authError");
    }
}

#[tokio::test]
async fn the_access_token_query_parameter_is_accepted_like_a_bearer_header() {
    let app = app();
    let reply = app
        .send(
            "GET",
            "/drive/v3/files/appDataFolder?access_token=ya29.alice",
            None,
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_without_drive_appdata_gets_403_insufficient_permissions() {
    let app = app();
    let reply = app
        .get("/drive/v3/files?spaces=appDataFolder", "ya29.noscope")
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let error = &reply.json()["error"];
    assert_eq!(
        error["message"],
        "Request had insufficient authentication scopes."
    );
    assert_eq!(error["status"], "PERMISSION_DENIED");
    assert_eq!(error["errors"][0]["reason"], "insufficientPermissions");
    assert_eq!(error["errors"][0]["message"], "Insufficient Permission");
    assert_eq!(
        error["details"][0]["reason"],
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    );
    assert_eq!(
        error["details"][0]["metadata"]["method"],
        "google.apps.drive.v3.DriveFiles.List"
    );
    assert_eq!(app.auth.store.user_count(), 0);
}

#[tokio::test]
async fn a_metadata_only_create_answers_the_default_fields_and_get_finds_it() {
    let app = app();
    let reply = app
        .post_json("/drive/v3/files?alt=json", ALICE, &json!({"name": "config.json", "parents": ["appDataFolder"], "mimeType": "application/json"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let file = reply.json();
    let id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(
        file,
        json!({"kind": "drive#file", "id": id, "name": "config.json", "mimeType": "application/json"})
    );
    assert_eq!(id.len(), 33);
    let got = app
        .get(&format!("/drive/v3/files/{id}?fields=*"), ALICE)
        .await
        .json();
    let folder = app
        .get("/drive/v3/files/appDataFolder?fields=id", ALICE)
        .await
        .json();
    assert_eq!(got["parents"], json!([folder["id"]]));
    assert_eq!(got["size"], "0");
    assert_eq!(got["version"], "1");
    assert_eq!(got["createdTime"], "2026-11-24T21:47:00.000Z");
    assert_eq!(got["md5Checksum"], "d41d8cd98f00b204e9800998ecf8427e");
}

#[tokio::test]
async fn a_file_outside_the_app_data_folder_is_refused() {
    let app = app();
    for body in [
        json!({"name": "a"}),
        json!({"name": "a", "parents": ["root"]}),
        json!({"name": "a", "parents": []}),
    ] {
        let reply = app.post_json("/drive/v3/files", ALICE, &body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(reply.reason(), "insufficientScopes");
    }
    let reply = app
        .post_json(
            "/drive/v3/files",
            ALICE,
            &json!({"name": "a", "parents": ["appDataFolder", "appDataFolder"]}),
        )
        .await;
    assert_eq!(reply.reason(), "cannotAddParent");
    let reply = app
        .post_json(
            "/drive/v3/files",
            ALICE,
            &json!({"name": "a", "parents": ["1nope"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"]["message"], "File not found: 1nope.");
}

#[tokio::test]
async fn a_media_create_lands_outside_the_folder_and_is_refused_but_media_update_works() {
    let app = app();
    let reply = app
        .send(
            "POST",
            "/upload/drive/v3/files?uploadType=media",
            Some(ALICE),
            &[("content-type", "text/plain")],
            "hi",
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let id = app.create_file(ALICE, "a.txt", b"old").await;
    app.advance(60);
    let reply = app
        .send(
            "PATCH",
            &format!(
                "/upload/drive/v3/files/{id}?uploadType=media&fields=id,size,version,modifiedTime"
            ),
            Some(ALICE),
            &[("content-type", "text/plain")],
            "new content",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"id": id, "size": "11", "version": "2", "modifiedTime": "2026-11-24T21:48:00.000Z"})
    );
    let content = app
        .get(&format!("/drive/v3/files/{id}?alt=media"), ALICE)
        .await;
    assert_eq!(&content.body[..], b"new content");
    assert_eq!(content.header("content-type"), Some("text/plain"));
}

#[tokio::test]
async fn a_python_style_multipart_upload_with_a_quoted_boundary_creates_the_file() {
    let app = app();
    // What googleapiclient's email generator produces: quoted boundary, LF line ends.
    let body = "--===============7330845974216740156==\nContent-Type: application/json\nMIME-Version: 1.0\n\n\
                {\"name\": \"notes.txt\", \"parents\": [\"appDataFolder\"]}\n\
                --===============7330845974216740156==\nContent-Type: text/plain\nMIME-Version: 1.0\n\
                Content-Transfer-Encoding: binary\n\nhello\nworld\n--===============7330845974216740156==--\n";
    let reply = app
        .send(
            "POST",
            "/upload/drive/v3/files?fields=id%2Cname%2CmimeType%2Csize%2Cmd5Checksum&alt=json&uploadType=multipart",
            Some(ALICE),
            &[("content-type", "multipart/related; boundary=\"===============7330845974216740156==\"")],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    let file = reply.json();
    assert_eq!(file["name"], "notes.txt");
    assert_eq!(file["mimeType"], "text/plain");
    assert_eq!(file["size"], "11");
    assert_eq!(file["md5Checksum"], md5::hex_digest(b"hello\nworld"));
    let content = app
        .get(
            &format!("/drive/v3/files/{}?alt=media", file["id"].as_str().unwrap()),
            ALICE,
        )
        .await;
    assert_eq!(&content.body[..], b"hello\nworld");
}

#[tokio::test]
async fn a_node_style_multipart_upload_with_an_unquoted_boundary_creates_the_file() {
    let app = app();
    let body = b"--5a3e2f1c-7d4b-4c59-9f1e-2b7c3d4e5f60\r\nContent-Type: application/json\r\n\r\n\
                 {\"name\":\"blob.bin\",\"parents\":[\"appDataFolder\"],\"mimeType\":\"application/x-thing\"}\r\n\
                 --5a3e2f1c-7d4b-4c59-9f1e-2b7c3d4e5f60\r\nContent-Type: application/octet-stream\r\n\r\n\
                 \x00\x01\x02\r\n\xff\r\n--5a3e2f1c-7d4b-4c59-9f1e-2b7c3d4e5f60--";
    let reply = app
        .send(
            "POST",
            "/upload/drive/v3/files?uploadType=multipart&fields=*",
            Some(ALICE),
            &[(
                "content-type",
                "multipart/related; boundary=5a3e2f1c-7d4b-4c59-9f1e-2b7c3d4e5f60",
            )],
            &body[..],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    let file = reply.json();
    assert_eq!(file["mimeType"], "application/x-thing");
    assert_eq!(file["size"], "6");
    let content = app
        .get(
            &format!("/drive/v3/files/{}?alt=media", file["id"].as_str().unwrap()),
            ALICE,
        )
        .await;
    assert_eq!(&content.body[..], b"\x00\x01\x02\r\n\xff");
}

#[tokio::test]
async fn a_malformed_multipart_body_gets_400() {
    let app = app();
    for (content_type, body) in [
        (
            "multipart/related; boundary=b",
            "--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b--",
        ),
        ("multipart/related; boundary=b", "garbage"),
        ("multipart/related", "--b--"),
        ("text/plain", "x"),
    ] {
        let reply = app
            .send(
                "POST",
                "/upload/drive/v3/files?uploadType=multipart",
                Some(ALICE),
                &[("content-type", content_type)],
                body,
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
}

async fn start_resumable(
    app: &App,
    uri: &str,
    metadata: &Value,
    headers: &[(&str, &str)],
) -> String {
    let mut all = vec![("content-type", "application/json; charset=UTF-8")];
    all.extend_from_slice(headers);
    let reply = app
        .send("POST", uri, Some(ALICE), &all, metadata.to_string())
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.body.is_empty());
    reply.header("location").unwrap().to_owned()
}

fn path_of(location: &str) -> String {
    location
        .strip_prefix("http://fake.test:8080")
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_resumable_upload_in_chunks_answers_308_with_range_then_200_with_the_file() {
    let app = app();
    let location = start_resumable(
        &app,
        "/upload/drive/v3/files?uploadType=resumable&fields=id,name,size",
        &json!({"name": "big.bin", "parents": ["appDataFolder"]}),
        &[
            ("x-upload-content-type", "application/zip"),
            ("x-upload-content-length", "10"),
        ],
    )
    .await;
    assert!(location.starts_with("http://fake.test:8080/upload/drive/v3/files?uploadType=resumable&fields=id%2Cname%2Csize&upload_id="), "{location}");
    let path = path_of(&location);

    // A status query before any byte: 308 without Range.
    let reply = app
        .send(
            "PUT",
            &path,
            Some(ALICE),
            &[("content-range", "bytes */*")],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.header("range"), None);

    let reply = app
        .send(
            "PUT",
            &path,
            Some(ALICE),
            &[("content-range", "bytes 0-3/10")],
            "0123",
        )
        .await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.header("range"), Some("bytes=0-3"));

    // A resent chunk that overlaps what was received is accepted from the right offset.
    let reply = app
        .send(
            "PUT",
            &path,
            None,
            &[("content-range", "bytes 2-5/10")],
            "2345",
        )
        .await;
    assert_eq!(reply.header("range"), Some("bytes=0-5"));
    let reply = app
        .send(
            "PUT",
            &path,
            Some(ALICE),
            &[("content-range", "bytes */10")],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.header("range"), Some("bytes=0-5"));

    let reply = app
        .send(
            "PUT",
            &path,
            Some(ALICE),
            &[("content-range", "bytes 6-9/10")],
            "6789",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let file = reply.json();
    assert_eq!(file["name"], "big.bin");
    assert_eq!(file["size"], "10");
    let got = app
        .get(
            &format!(
                "/drive/v3/files/{}?fields=mimeType",
                file["id"].as_str().unwrap()
            ),
            ALICE,
        )
        .await;
    assert_eq!(got.json()["mimeType"], "application/zip");
    let content = app
        .get(
            &format!("/drive/v3/files/{}?alt=media", file["id"].as_str().unwrap()),
            ALICE,
        )
        .await;
    assert_eq!(&content.body[..], b"0123456789");

    // The finished session is gone.
    let reply = app
        .send(
            "PUT",
            &path,
            Some(ALICE),
            &[("content-range", "bytes */10")],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_resumable_upload_of_unknown_size_completes_when_the_total_is_given() {
    let app = app();
    let location = start_resumable(
        &app,
        "/upload/drive/v3/files?uploadType=resumable",
        &json!({"name": "stream.txt", "parents": ["appDataFolder"], "mimeType": "text/plain"}),
        &[],
    )
    .await;
    let path = path_of(&location);
    let reply = app
        .send(
            "PUT",
            &path,
            Some(ALICE),
            &[("content-range", "bytes 0-2/*")],
            "abc",
        )
        .await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    let reply = app
        .send(
            "PUT",
            &path,
            Some(ALICE),
            &[("content-range", "bytes 3-4/5")],
            "de",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["name"], "stream.txt");
}

#[tokio::test]
async fn a_single_put_without_content_range_completes_a_resumable_update() {
    let app = app();
    let id = app.create_file(ALICE, "state.json", b"{}").await;
    let start = app
        .patch_json(
            &format!("/upload/drive/v3/files/{id}?uploadType=resumable"),
            ALICE,
            &json!({"name": "state-v2.json"}),
        )
        .await;
    assert_eq!(start.status, StatusCode::OK);
    let location = start.header("location").unwrap().to_owned();
    let reply = app
        .send("PUT", &path_of(&location), None, &[], "{\"v\":2}")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["name"], "state-v2.json");
    let content = app
        .get(&format!("/drive/v3/files/{id}?alt=media"), ALICE)
        .await;
    assert_eq!(&content.body[..], b"{\"v\":2}");
}

#[tokio::test]
async fn a_resumable_update_started_with_patch_works() {
    let app = app();
    let id = app.create_file(ALICE, "state.json", b"{}").await;
    let reply = app
        .send(
            "PATCH",
            &format!("/upload/drive/v3/files/{id}?uploadType=resumable"),
            Some(ALICE),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let path = path_of(reply.header("location").unwrap());
    let reply = app
        .send(
            "PUT",
            &path,
            Some(ALICE),
            &[("content-range", "bytes 0-1/2")],
            "xy",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["id"], json!(id));
}

#[tokio::test]
async fn the_session_location_honours_x_forwarded_proto_and_the_scheme_extension() {
    let app = app();
    let location = start_resumable(
        &app,
        "/upload/drive/v3/files?uploadType=resumable",
        &json!({"parents": ["appDataFolder"]}),
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert!(
        location.starts_with("https://fake.test:8080/upload/drive/v3/files?"),
        "{location}"
    );

    let mut request = Request::builder()
        .method("POST")
        .uri("/upload/drive/v3/files?uploadType=resumable")
        .header("host", "127.0.0.1:9")
        .header("authorization", "Bearer ya29.alice")
        .body(Body::from(
            json!({"parents": ["appDataFolder"]}).to_string(),
        ))
        .unwrap();
    request.extensions_mut().insert(Scheme("https".to_owned()));
    let response = app.router.clone().oneshot(request).await.unwrap();
    let location = response.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(
            "https://127.0.0.1:9/upload/drive/v3/files?uploadType=resumable&upload_id="
        )
    );
}

#[tokio::test]
async fn another_users_resumable_session_is_not_found() {
    let app = app();
    let location = start_resumable(
        &app,
        "/upload/drive/v3/files?uploadType=resumable",
        &json!({"parents": ["appDataFolder"]}),
        &[],
    )
    .await;
    let path = path_of(&location);
    let reply = app
        .send(
            "PUT",
            &path,
            Some(BOB),
            &[("content-range", "bytes 0-0/1")],
            "x",
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .send(
            "PUT",
            &path,
            Some("ya29.revoked"),
            &[("content-range", "bytes 0-0/1")],
            "x",
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = app
        .send(
            "PUT",
            "/upload/drive/v3/files?uploadType=resumable&upload_id=nope",
            None,
            &[],
            "x",
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_content_ranges_are_refused() {
    let app = app();
    let location = start_resumable(
        &app,
        "/upload/drive/v3/files?uploadType=resumable",
        &json!({"parents": ["appDataFolder"]}),
        &[("x-upload-content-length", "4")],
    )
    .await;
    let path = path_of(&location);
    for (range, body) in [
        ("bytes 0-3/4", "abc"), // length mismatch
        ("bytes 2-3/4", "cd"),  // gap
        ("bytes 0-1/5", "ab"),  // total differs from the declared one
        ("bytes 3-1/4", ""),    // backwards
        ("chars 0-1/4", "ab"),  // not bytes
    ] {
        let reply = app
            .send("PUT", &path, None, &[("content-range", range)], body)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{range}");
    }
    let reply = app
        .send(
            "PUT",
            &path,
            None,
            &[("content-range", "bytes 0-3/4")],
            "abcd",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn downloads_honour_range_with_206_and_refuse_unsatisfiable_ones_with_416() {
    let app = app();
    let id = app.create_file(ALICE, "digits.txt", b"0123456789").await;
    let uri = format!("/drive/v3/files/{id}?alt=media");
    let full = app.get(&uri, ALICE).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.header("content-length"), Some("10"));
    for (range, expected, content_range) in [
        ("bytes=2-5", &b"2345"[..], "bytes 2-5/10"),
        ("bytes=7-", b"789", "bytes 7-9/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
        ("bytes=8-100", b"89", "bytes 8-9/10"),
    ] {
        let reply = app
            .send("GET", &uri, Some(ALICE), &[("range", range)], Body::empty())
            .await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(&reply.body[..], expected);
        assert_eq!(reply.header("content-range"), Some(content_range));
    }
    let reply = app
        .send(
            "GET",
            &uri,
            Some(ALICE),
            &[("range", "bytes=10-20")],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(reply.header("content-range"), Some("bytes */10"));
    // A malformed range is ignored, as HTTP allows.
    let reply = app
        .send(
            "GET",
            &uri,
            Some(ALICE),
            &[("range", "bytes=x-y")],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_ranged_download_of_an_empty_file_is_416_with_its_zero_size() {
    // googleapiclient's MediaIoBaseDownload relies on this to finish empty downloads.
    let app = app();
    let id = app.create_file(ALICE, "empty", b"").await;
    let reply = app
        .send(
            "GET",
            &format!("/drive/v3/files/{id}?alt=media"),
            Some(ALICE),
            &[("range", "bytes=0-104857600")],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(reply.header("content-range"), Some("bytes */0"));
}

#[tokio::test]
async fn folders_cannot_be_downloaded() {
    let app = app();
    let reply = app
        .get("/drive/v3/files/appDataFolder?alt=media", ALICE)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.reason(), "fileNotDownloadable");
}

#[tokio::test]
async fn a_metadata_update_renames_merges_app_properties_and_bumps_the_version() {
    let app = app();
    let created = app
        .post_json(
            "/drive/v3/files",
            ALICE,
            &json!({"name": "a", "parents": ["appDataFolder"], "appProperties": {"k1": "v1", "k2": "v2"}}),
        )
        .await
        .json();
    let id = created["id"].as_str().unwrap();
    app.advance(3);
    let reply = app
        .patch_json(
            &format!("/drive/v3/files/{id}?fields=name,description,appProperties,version,modifiedTime,createdTime"),
            ALICE,
            &json!({"name": "b", "description": "d", "appProperties": {"k1": null, "k3": "v3"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"name": "b", "description": "d", "appProperties": {"k2": "v2", "k3": "v3"}, "version": "2",
               "createdTime": "2026-11-24T21:47:00.000Z", "modifiedTime": "2026-11-24T21:47:03.000Z"})
    );
    let listed = app
        .get("/drive/v3/files?spaces=appDataFolder&q=appProperties%20has%20%7B%20key%3D%27k3%27%20and%20value%3D%27v3%27%20%7D", ALICE)
        .await
        .json();
    assert_eq!(listed["files"][0]["name"], "b");
}

#[tokio::test]
async fn trashing_and_sharing_are_not_supported_in_the_app_data_folder() {
    let app = app();
    let id = app.create_file(ALICE, "a", b"x").await;
    let reply = app
        .patch_json(
            &format!("/drive/v3/files/{id}"),
            ALICE,
            &json!({"trashed": true}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.json(),
        json!({"error": {"code": 403, "message": "Method not supported for files within the Application Data folder.",
            "errors": [{"domain": "global", "reason": "notSupportedForAppDataFolderFiles",
                        "message": "Method not supported for files within the Application Data folder."}]}})
    );
    let reply = app
        .post_json(
            &format!("/drive/v3/files/{id}/permissions"),
            ALICE,
            &json!({"role": "reader", "type": "anyone"}),
        )
        .await;
    assert_eq!(reply.reason(), "notSupportedForAppDataFolderFiles");
    let reply = app
        .send(
            "DELETE",
            "/drive/v3/files/trash",
            Some(ALICE),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.reason(), "notSupportedForAppDataFolderFiles");
    // Un-trashed stays allowed (a no-op).
    let reply = app
        .patch_json(
            &format!("/drive/v3/files/{id}"),
            ALICE,
            &json!({"trashed": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn unimplemented_methods_answer_501_naming_the_method() {
    let app = app();
    let id = app.create_file(ALICE, "a", b"x").await;
    let reply = app
        .send(
            "POST",
            &format!("/drive/v3/files/{id}/copy"),
            Some(ALICE),
            &[],
            "{}",
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(reply.json()["error"]["status"], "UNIMPLEMENTED");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("drive.files.copy")
    );
    let reply = app
        .send("PUT", "/drive/v3/files", Some(ALICE), &[], "")
        .await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PUT /drive/v3/files")
    );
    // An unknown file's sub-resource is a 404 first.
    let reply = app
        .send(
            "GET",
            "/drive/v3/files/1nope/revisions",
            Some(ALICE),
            &[],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_answers_204_and_removes_a_folder_with_its_children() {
    let app = app();
    let folder = app
        .post_json(
            "/drive/v3/files",
            ALICE,
            &json!({"name": "dir", "mimeType": "application/vnd.google-apps.folder", "parents": ["appDataFolder"]}),
        )
        .await
        .json();
    let folder_id = folder["id"].as_str().unwrap();
    let child = app
        .post_json(
            "/drive/v3/files",
            ALICE,
            &json!({"name": "child", "parents": [folder_id]}),
        )
        .await
        .json();
    let reply = app
        .send(
            "DELETE",
            &format!("/drive/v3/files/{folder_id}"),
            Some(ALICE),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.body.is_empty());
    let reply = app
        .get(
            &format!("/drive/v3/files/{}", child["id"].as_str().unwrap()),
            ALICE,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .send(
            "DELETE",
            &format!("/drive/v3/files/{folder_id}"),
            Some(ALICE),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .send(
            "DELETE",
            "/drive/v3/files/appDataFolder",
            Some(ALICE),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_unknown_file_is_404_in_drives_envelope() {
    let app = app();
    let reply = app.get("/drive/v3/files/1doesNotExist", ALICE).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.json(),
        json!({"error": {"code": 404, "message": "File not found: 1doesNotExist.",
            "errors": [{"domain": "global", "reason": "notFound", "message": "File not found: 1doesNotExist.",
                        "location": "fileId", "locationType": "parameter"}]}})
    );
}

#[tokio::test]
async fn another_users_file_is_indistinguishable_from_a_missing_one() {
    let app = app();
    let id = app.create_file(ALICE, "secret", b"alice's data").await;
    let missing = "1".to_owned() + &"x".repeat(32);
    for (method, suffix, body) in [
        ("GET", "", ""),
        ("GET", "?alt=media", ""),
        ("PATCH", "", "{\"name\":\"mine\"}"),
        ("DELETE", "", ""),
    ] {
        let theirs = app
            .send(
                method,
                &format!("/drive/v3/files/{id}{suffix}"),
                Some(BOB),
                &[],
                body,
            )
            .await;
        let nothing = app
            .send(
                method,
                &format!("/drive/v3/files/{missing}{suffix}"),
                Some(BOB),
                &[],
                body,
            )
            .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{method} {suffix}");
        assert_eq!(
            String::from_utf8_lossy(&theirs.body).replace(&id, "ID"),
            String::from_utf8_lossy(&nothing.body).replace(&missing, "ID")
        );
    }
    let listed = app
        .get("/drive/v3/files?spaces=appDataFolder", BOB)
        .await
        .json();
    assert_eq!(listed["files"], json!([]));
    let content = app
        .get(&format!("/drive/v3/files/{id}?alt=media"), ALICE)
        .await;
    assert_eq!(&content.body[..], b"alice's data");
}

#[tokio::test]
async fn list_requires_the_app_data_space() {
    let app = app();
    for query in ["", "?spaces=drive", "?spaces=appDataFolder,drive"] {
        let reply = app.get(&format!("/drive/v3/files{query}"), ALICE).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{query}");
        assert_eq!(
            reply.json()["error"]["message"],
            "The granted scopes do not give access to all of the requested spaces."
        );
        assert_eq!(reply.reason(), "insufficientScopes");
    }
    let reply = app.get("/drive/v3/files?spaces=mars", ALICE).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn list_pages_through_all_files_with_next_page_tokens() {
    let app = app();
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.create_file(ALICE, &format!("f{i}"), b"x").await);
    }
    let first = app
        .get("/drive/v3/files?spaces=appDataFolder&pageSize=2", ALICE)
        .await
        .json();
    assert_eq!(first["kind"], "drive#fileList");
    assert_eq!(first["incompleteSearch"], false);
    assert_eq!(
        first["files"][0],
        json!({"kind": "drive#file", "id": created[0], "name": "f0", "mimeType": "text/plain"})
    );
    let mut seen: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let uri = match &token {
            None => {
                "/drive/v3/files?spaces=appDataFolder&pageSize=2&fields=nextPageToken,files(id)"
                    .to_owned()
            }
            Some(t) => format!(
                "/drive/v3/files?spaces=appDataFolder&pageSize=2&fields=nextPageToken,files(id)&pageToken={t}"
            ),
        };
        let page = app.get(&uri, ALICE).await.json();
        for file in page["files"].as_array().unwrap() {
            assert_eq!(file.as_object().unwrap().len(), 1);
            seen.push(file["id"].as_str().unwrap().to_owned());
        }
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, created);
}

fn names(value: Value) -> Vec<String> {
    value["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_filters_with_q_and_sorts_with_order_by() {
    let app = app();
    let folder = app
        .post_json(
            "/drive/v3/files",
            ALICE,
            &json!({"name": "backups", "mimeType": "application/vnd.google-apps.folder", "parents": ["appDataFolder"]}),
        )
        .await
        .json();
    let folder_id = folder["id"].as_str().unwrap().to_owned();
    app.create_file(ALICE, "settings.json", b"{}").await;
    app.advance(10);
    app.create_file(ALICE, "Zeta notes", b"z").await;
    app.post_json(
        "/drive/v3/files",
        ALICE,
        &json!({"name": "backup-1", "parents": [folder_id]}),
    )
    .await;

    let list = |q: &str| {
        let uri = format!(
            "/drive/v3/files?spaces=appDataFolder&q={}",
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        );
        let app = &app;
        async move { names(app.get(&uri, ALICE).await.json()) }
    };
    assert_eq!(list("name = 'settings.json'").await, ["settings.json"]);
    assert_eq!(
        list("name contains 'back' and trashed = false").await,
        ["backups", "backup-1"]
    );
    assert_eq!(
        list(&format!("'{folder_id}' in parents")).await,
        ["backup-1"]
    );
    assert_eq!(
        list("'appDataFolder' in parents and mimeType != 'application/vnd.google-apps.folder'")
            .await,
        ["settings.json", "Zeta notes"]
    );
    assert_eq!(
        list("mimeType = 'application/vnd.google-apps.folder'").await,
        ["backups"]
    );
    assert_eq!(
        list("modifiedTime > '2026-11-24T21:47:05Z'").await,
        ["Zeta notes", "backup-1"]
    );
    assert_eq!(list("trashed = true").await, Vec::<String>::new());

    let sorted = app
        .get("/drive/v3/files?spaces=appDataFolder&orderBy=name", ALICE)
        .await
        .json();
    assert_eq!(
        names(sorted),
        ["backup-1", "backups", "settings.json", "Zeta notes"]
    );
    let sorted = app
        .get(
            "/drive/v3/files?spaces=appDataFolder&orderBy=folder,modifiedTime%20desc,name",
            ALICE,
        )
        .await
        .json();
    assert_eq!(
        names(sorted),
        ["backups", "backup-1", "Zeta notes", "settings.json"]
    );
}

#[tokio::test]
async fn bad_list_parameters_get_400_naming_the_parameter() {
    let app = app();
    for (query, location) in [
        ("pageSize=0", "pageSize"),
        ("pageSize=1001", "pageSize"),
        ("pageSize=abc", "pageSize"),
        ("q=name%20%3D%3D%20%27a%27", "q"),
        ("q=size%20%3E%203", "q"),
        ("pageToken=forged", "pageToken"),
        ("orderBy=size", "orderBy"),
        ("fields=files(id,bogus)", "fields"),
        ("fields=files(id", "fields"),
    ] {
        let reply = app
            .get(
                &format!("/drive/v3/files?spaces=appDataFolder&{query}"),
                ALICE,
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            reply.json()["error"]["errors"][0]["location"],
            location,
            "{query}"
        );
    }
    let reply = app
        .get("/drive/v3/files?spaces=appDataFolder&fields=bogus", ALICE)
        .await;
    assert_eq!(
        reply.json()["error"]["message"],
        "Invalid field selection bogus"
    );
}

#[tokio::test]
async fn a_page_token_from_another_query_is_refused() {
    let app = app();
    for i in 0..3 {
        app.create_file(ALICE, &format!("f{i}"), b"").await;
    }
    let page = app
        .get("/drive/v3/files?spaces=appDataFolder&pageSize=1", ALICE)
        .await
        .json();
    let token = page["nextPageToken"].as_str().unwrap();
    let reply = app
        .get(
            &format!(
                "/drive/v3/files?spaces=appDataFolder&pageSize=1&orderBy=name&pageToken={token}"
            ),
            ALICE,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn fields_star_renders_int64_as_strings_and_times_in_rfc_3339() {
    let app = app();
    let id = app.create_file(ALICE, "report.tar.gz", b"abc").await;
    let file = app
        .get(&format!("/drive/v3/files/{id}?fields=*"), ALICE)
        .await
        .json();
    assert_eq!(file["size"], "3");
    assert_eq!(file["quotaBytesUsed"], "3");
    assert_eq!(file["version"], "1");
    assert_eq!(file["md5Checksum"], "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        file["sha256Checksum"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(file["modifiedTime"], "2026-11-24T21:47:00.000Z");
    assert_eq!(file["fullFileExtension"], "tar.gz");
    assert_eq!(file["fileExtension"], "gz");
    assert_eq!(file["spaces"], json!(["appDataFolder"]));
    assert_eq!(file["trashed"], false);
    assert_eq!(file["capabilities"]["canTrash"], false);
    let compact = app
        .get(
            &format!("/drive/v3/files/{id}?fields=id&prettyPrint=false"),
            ALICE,
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&compact.body),
        format!("{{\"id\":\"{id}\"}}")
    );
}

#[tokio::test]
async fn write_rules_for_update_bodies_match_drive() {
    let app = app();
    let id = app.create_file(ALICE, "a", b"x").await;
    let uri = format!("/drive/v3/files/{id}");
    let reply = app
        .patch_json(&uri, ALICE, &json!({"parents": ["appDataFolder"]}))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.reason(), "fieldNotWritable");
    let reply = app.patch_json(&uri, ALICE, &json!({"size": "9"})).await;
    assert_eq!(reply.reason(), "fieldNotWritable");
    let reply = app.patch_json(&uri, ALICE, &json!({"nmae": "typo"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = app.patch_json(&uri, ALICE, &json!({"name": 5})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = app.send("PATCH", &uri, Some(ALICE), &[], "{not json").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.reason(), "parseError");
    let reply = app
        .patch_json(
            "/drive/v3/files/appDataFolder",
            ALICE,
            &json!({"name": "x"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn add_and_remove_parents_move_a_file_between_folders() {
    let app = app();
    let folder = app
        .post_json(
            "/drive/v3/files",
            ALICE,
            &json!({"name": "dir", "mimeType": "application/vnd.google-apps.folder", "parents": ["appDataFolder"]}),
        )
        .await
        .json();
    let folder_id = folder["id"].as_str().unwrap();
    let id = app.create_file(ALICE, "a", b"x").await;
    let reply = app
        .patch_json(&format!("/drive/v3/files/{id}?addParents={folder_id}&removeParents=appDataFolder&fields=parents"), ALICE, &json!({}))
        .await;
    assert_eq!(reply.json(), json!({"parents": [folder_id]}));
    let reply = app
        .patch_json(
            &format!("/drive/v3/files/{id}?addParents=appDataFolder"),
            ALICE,
            &json!({}),
        )
        .await;
    assert_eq!(reply.reason(), "cannotAddParent");
    let reply = app
        .patch_json(
            &format!(
                "/drive/v3/files/{folder_id}?addParents={folder_id}&removeParents=appDataFolder"
            ),
            ALICE,
            &json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = app
        .patch_json(
            &format!("/drive/v3/files/{id}?addParents=root&removeParents={folder_id}"),
            ALICE,
            &json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn generated_ids_can_be_used_once_to_create_files() {
    let app = app();
    let reply = app
        .get(
            "/drive/v3/files/generateIds?count=2&space=appDataFolder",
            ALICE,
        )
        .await;
    let ids = reply.json();
    assert_eq!(ids["kind"], "drive#generatedIds");
    let id = ids["ids"][0].as_str().unwrap().to_owned();
    let body = json!({"id": id, "name": "n", "parents": ["appDataFolder"]});
    let reply = app.post_json("/drive/v3/files", ALICE, &body).await;
    assert_eq!(reply.json()["id"], json!(id));
    let reply = app.post_json("/drive/v3/files", ALICE, &body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = app
        .post_json(
            "/drive/v3/files",
            BOB,
            &json!({"id": ids["ids"][1], "parents": ["appDataFolder"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = app.get("/drive/v3/files/generateIds", ALICE).await;
    assert_eq!(reply.reason(), "insufficientScopes");
}

#[tokio::test]
async fn oversized_uploads_get_413_in_drives_envelope() {
    let app = app();
    let reply = app
        .send(
            "POST",
            "/upload/drive/v3/files?uploadType=resumable",
            Some(ALICE),
            &[("x-upload-content-length", "67108865")],
            json!({"parents": ["appDataFolder"]}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"]["code"], 413);
    let big = vec![b'x'; MAX_UPLOAD_BODY_BYTES + 1];
    let reply = app
        .send(
            "PATCH",
            "/upload/drive/v3/files/1abc?uploadType=media",
            Some(ALICE),
            &[],
            big,
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = app
        .send(
            "POST",
            "/drive/v3/files",
            Some(ALICE),
            &[],
            vec![b' '; MAX_METADATA_BYTES + 1],
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_storage_quota_covers_files_and_open_sessions() {
    let app = app_with(DriveStore::with_quota(10));
    let id = app.create_file(ALICE, "a", b"123456").await;
    let location = start_resumable(
        &app,
        "/upload/drive/v3/files?uploadType=resumable",
        &json!({"parents": ["appDataFolder"]}),
        &[],
    )
    .await;
    let reply = app
        .send(
            "PUT",
            &path_of(&location),
            None,
            &[("content-range", "bytes 0-2/*")],
            "abc",
        )
        .await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    let reply = app
        .send(
            "PATCH",
            &format!("/upload/drive/v3/files/{id}?uploadType=media"),
            Some(ALICE),
            &[],
            "12345678",
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.reason(), "storageQuotaExceeded");
    // Bob's quota is his own.
    app.create_file(BOB, "b", b"1234567890").await;
}

#[tokio::test]
async fn upload_requests_need_a_known_upload_type() {
    let app = app();
    let reply = app
        .send("POST", "/upload/drive/v3/files", Some(ALICE), &[], "x")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.reason(), "required");
    let reply = app
        .send(
            "POST",
            "/upload/drive/v3/files?uploadType=magic",
            Some(ALICE),
            &[],
            "x",
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_two_users_all_land_in_the_right_folder() {
    let app = Arc::new(app());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let app = Arc::clone(&app);
        tasks.push(tokio::spawn(async move {
            let token = TOKENS[i % 2];
            app.create_file(token, &format!("f{i}"), format!("content {i}").as_bytes())
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (user, token) in TOKENS.iter().enumerate() {
        let listed = app
            .get("/drive/v3/files?spaces=appDataFolder&pageSize=1000", token)
            .await
            .json();
        let mut names = names(listed);
        names.sort();
        let mut expected: Vec<String> = (0..40)
            .filter(|i| i % 2 == user)
            .map(|i| format!("f{i}"))
            .collect();
        expected.sort();
        assert_eq!(names, expected);
    }
}

#[tokio::test]
async fn the_store_debug_output_shows_counts_not_user_data() {
    let app = app();
    app.create_file(ALICE, "very-private-name", b"very private content")
        .await;
    let debug = format!("{:?}", app.auth.store);
    assert!(debug.contains("users: 1"), "{debug}");
    assert!(!debug.contains("private"), "{debug}");
}

#[test]
fn routes_parse_ids_and_sub_resources() {
    assert_eq!(Route::parse("/drive/v3/files"), Some(Route::Files));
    assert_eq!(
        Route::parse("/drive/v3/files/a%20b"),
        Some(Route::File("a b".into()))
    );
    assert_eq!(
        Route::parse("/drive/v3/files/x/permissions/y"),
        Some(Route::Sub("x".into(), "permissions/y".into()))
    );
    assert_eq!(
        Route::parse("/upload/drive/v3/files/x"),
        Some(Route::UploadFile("x".into()))
    );
    assert_eq!(Route::parse("/upload/drive/v3/files/x/y"), None);
    assert_eq!(Route::parse("/drive/v2/files"), None);
}

#[test]
fn content_ranges_parse_like_googles_upload_protocol() {
    assert_eq!(
        parse_content_range("bytes 0-9/100"),
        Some(ChunkRange::Bytes {
            first: 0,
            last: 9,
            total: Some(100)
        })
    );
    assert_eq!(
        parse_content_range("bytes 5-9/*"),
        Some(ChunkRange::Bytes {
            first: 5,
            last: 9,
            total: None
        })
    );
    assert_eq!(
        parse_content_range("bytes */*"),
        Some(ChunkRange::Query { total: None })
    );
    assert_eq!(
        parse_content_range("bytes */7"),
        Some(ChunkRange::Query { total: Some(7) })
    );
    for bad in [
        "bytes 9-0/10",
        "bytes 0-10/10",
        "0-1/2",
        "bytes a-b/c",
        "bytes 1/2",
    ] {
        assert_eq!(parse_content_range(bad), None, "{bad}");
    }
}

// ---- Property: users are isolated and list equals the model. ----

#[derive(Debug, Clone)]
enum Op {
    Create {
        user: usize,
        name: String,
        content: Vec<u8>,
    },
    Rename {
        user: usize,
        pick: usize,
        name: String,
    },
    Rewrite {
        user: usize,
        pick: usize,
        content: Vec<u8>,
    },
    Delete {
        user: usize,
        pick: usize,
    },
    /// The other user tries to read, change or delete one of this user's files.
    Trespass {
        owner: usize,
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let name = "[a-z]{1,6}";
    let content = proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..16);
    prop_oneof![
        3 => (0..2usize, name, content.clone()).prop_map(|(user, name, content)| Op::Create { user, name, content }),
        1 => (0..2usize, proptest::arbitrary::any::<usize>(), name).prop_map(|(user, pick, name)| Op::Rename { user, pick, name }),
        1 => (0..2usize, proptest::arbitrary::any::<usize>(), content).prop_map(|(user, pick, content)| Op::Rewrite { user, pick, content }),
        1 => (0..2usize, proptest::arbitrary::any::<usize>()).prop_map(|(user, pick)| Op::Delete { user, pick }),
        1 => (0..2usize, proptest::arbitrary::any::<usize>()).prop_map(|(owner, pick)| Op::Trespass { owner, pick }),
    ]
}

const TOKENS: [&str; 2] = [ALICE, BOB];

/// Model: per user, file id → (name, content).
type Model = [BTreeMap<String, (String, Vec<u8>)>; 2];

fn pick(model: &BTreeMap<String, (String, Vec<u8>)>, index: usize) -> Option<String> {
    if model.is_empty() {
        return None;
    }
    model.keys().nth(index % model.len()).cloned()
}

async fn check_model(app: &App, model: &Model) {
    for (user, token) in TOKENS.iter().enumerate() {
        let listed = app
            .get("/drive/v3/files?spaces=appDataFolder&pageSize=1000&fields=files(id,name,size,md5Checksum)", token)
            .await
            .json();
        let mut seen = BTreeMap::new();
        for file in listed["files"].as_array().unwrap() {
            seen.insert(
                file["id"].as_str().unwrap().to_owned(),
                (
                    file["name"].as_str().unwrap().to_owned(),
                    file["md5Checksum"].as_str().unwrap().to_owned(),
                ),
            );
        }
        let expected: BTreeMap<String, (String, String)> = model[user]
            .iter()
            .map(|(id, (name, content))| (id.clone(), (name.clone(), md5::hex_digest(content))))
            .collect();
        assert_eq!(seen, expected, "user {user}");
    }
}

async fn run_ops(ops: Vec<Op>) {
    let app = app();
    let mut model: Model = Default::default();
    for op in ops {
        match op {
            Op::Create {
                user,
                name,
                content,
            } => {
                let id = app.create_file(TOKENS[user], &name, &content).await;
                model[user].insert(id, (name, content));
            }
            Op::Rename {
                user,
                pick: index,
                name,
            } => {
                let Some(id) = pick(&model[user], index) else {
                    continue;
                };
                let reply = app
                    .patch_json(
                        &format!("/drive/v3/files/{id}"),
                        TOKENS[user],
                        &json!({"name": name}),
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::OK);
                if let Some(entry) = model[user].get_mut(&id) {
                    entry.0 = name;
                }
            }
            Op::Rewrite {
                user,
                pick: index,
                content,
            } => {
                let Some(id) = pick(&model[user], index) else {
                    continue;
                };
                let reply = app
                    .send(
                        "PATCH",
                        &format!("/upload/drive/v3/files/{id}?uploadType=media"),
                        Some(TOKENS[user]),
                        &[],
                        content.clone(),
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::OK);
                if let Some(entry) = model[user].get_mut(&id) {
                    entry.1 = content;
                }
            }
            Op::Delete { user, pick: index } => {
                let Some(id) = pick(&model[user], index) else {
                    continue;
                };
                let reply = app
                    .send(
                        "DELETE",
                        &format!("/drive/v3/files/{id}"),
                        Some(TOKENS[user]),
                        &[],
                        Body::empty(),
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::NO_CONTENT);
                model[user].remove(&id);
            }
            Op::Trespass { owner, pick: index } => {
                let Some(id) = pick(&model[owner], index) else {
                    continue;
                };
                let intruder = TOKENS[1 - owner];
                for (method, suffix, body) in [
                    ("GET", "", ""),
                    ("GET", "?alt=media", ""),
                    ("PATCH", "", "{\"name\":\"stolen\"}"),
                    ("DELETE", "", ""),
                ] {
                    let reply = app
                        .send(
                            method,
                            &format!("/drive/v3/files/{id}{suffix}"),
                            Some(intruder),
                            &[],
                            body,
                        )
                        .await;
                    assert_eq!(reply.status, StatusCode::NOT_FOUND);
                }
                let reply = app
                    .send(
                        "PATCH",
                        &format!("/upload/drive/v3/files/{id}?uploadType=media"),
                        Some(intruder),
                        &[],
                        "x",
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::NOT_FOUND);
            }
        }
        check_model(&app, &model).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn one_users_files_are_never_visible_to_the_other_and_list_equals_the_model(
        ops in proptest::collection::vec(op(), 1..24)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run_ops(ops));
    }

    #[test]
    fn random_requests_never_panic_and_never_answer_500(
        method in prop_oneof![Just("GET"), Just("POST"), Just("PATCH"), Just("PUT"), Just("DELETE"), Just("HEAD")],
        path in prop_oneof![
            Just("/drive/v3/files".to_owned()),
            Just("/drive/v3/files/appDataFolder".to_owned()),
            Just("/upload/drive/v3/files".to_owned()),
            "/drive/v3/files/[a-zA-Z0-9%/_-]{0,20}",
            "/upload/drive/v3/files/[a-zA-Z0-9%_-]{0,12}",
        ],
        query in "[a-zA-Z=&%*(),/ 0-9_-]{0,40}",
        content_type in prop_oneof![
            Just("application/json".to_owned()),
            Just("multipart/related; boundary=b".to_owned()),
            "\\PC{0,30}",
        ],
        range in "(bytes[ =])?[0-9*-]{0,6}(/[0-9*]{0,3})?",
        body in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..64),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let app = app();
            app.create_file(ALICE, "seed", b"0123456789").await;
            let uri = format!("{path}?{}", query.replace(' ', "%20"));
            let Ok(uri) = uri.parse::<http::Uri>() else { return };
            let headers = [("content-type", content_type.as_str()), ("content-range", range.as_str()), ("range", range.as_str())];
            let headers: Vec<(&str, &str)> = headers
                .into_iter()
                .filter(|(_, v)| http::HeaderValue::from_str(v).is_ok())
                .collect();
            let reply = app.send(method, &uri.to_string(), Some(ALICE), &headers, body).await;
            assert!(reply.status.as_u16() < 500 || reply.status == StatusCode::NOT_IMPLEMENTED, "{}", reply.status);
        });
    }

    #[test]
    fn fields_and_queries_never_panic(fields in "\\PC{0,40}", q in "\\PC{0,60}") {
        let _ = Selection::parse(&fields);
        let _ = query::parse(&q);
        let _ = multipart::parse(&Bytes::from(q.clone().into_bytes()), &fields);
        let _ = parse_content_range(&q);
        let _ = parse_range(&q, 10);
    }
}
