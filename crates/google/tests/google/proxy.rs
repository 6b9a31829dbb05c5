//! The Google API proxy's outbound half: the exact request Google receives (Bearer, headers, path, query, method,
//! body) and Google's answer passed back as it is (status, meaningful headers, body streamed).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use offline_access_domain::{
    AccessToken, BodyStream, GoogleApi, ProxyBody, ProxyError, ProxyRequest, ProxyResponse,
};
use offline_access_google::{Google, ProxyHosts};
use serde_json::json;
use wiremock::matchers::{any, body_bytes, body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{closed_port_url, config, dropping_server, google, raw_server, serving_8_mib};

const ACCESS: &str = "ya29.a0proxy-access";

fn token() -> AccessToken {
    AccessToken::parse(ACCESS).unwrap()
}

fn request(method: &str, host: &str, path_and_query: &str) -> ProxyRequest {
    ProxyRequest {
        method: method.into(),
        host: host.into(),
        path_and_query: path_and_query.into(),
        headers: Vec::new(),
        body: ProxyBody::Empty,
    }
}

fn with_headers(mut request: ProxyRequest, headers: &[(&str, &str)]) -> ProxyRequest {
    request.headers = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    request
}

fn streamed(chunks: Vec<Result<Bytes, ProxyError>>) -> ProxyBody {
    let stream: BodyStream = Box::pin(futures::stream::iter(chunks));
    ProxyBody::Streaming(stream)
}

/// A server answering 200 to every request.
async fn answering_200() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

async fn forward(server: &MockServer, request: ProxyRequest) -> Result<ProxyResponse, ProxyError> {
    google(server).api().forward(&token(), request).await
}

/// The body, read to its end, and how many chunks it came in.
async fn read(mut body: BodyStream) -> (Result<Vec<u8>, ProxyError>, usize) {
    let (mut all, mut chunks) = (Vec::new(), 0);
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => all.extend_from_slice(&chunk),
            Err(e) => return (Err(e), chunks),
        }
        chunks += 1;
    }
    (Ok(all), chunks)
}

fn header_of<'a>(response: &'a ProxyResponse, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn only_request(server: &MockServer) -> Request {
    let mut received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1, "{received:?}");
    received.remove(0)
}

fn values(request: &Request, name: &str) -> Vec<String> {
    request
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_bearer_is_added_and_the_callers_credentials_and_hop_by_hop_headers_are_never_sent() {
    let server = answering_200().await;
    let sent = with_headers(
        request(
            "GET",
            "gmail.googleapis.com",
            "/gmail/v1/users/me/messages?q=from%3Ame%20is:unread&maxResults=5&fields=messages(id),nextPageToken",
        ),
        &[
            ("Authorization", "Bearer caller-api-key"),
            ("authorization", "Basic Y2FsbGVyOmtleQ=="),
            ("Cookie", "sid=caller"),
            ("Proxy-Authorization", "Basic eDp5"),
            ("Host", "evil.example"),
            ("Connection", "X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "x-checksum"),
            ("Upgrade", "h2c"),
            ("Proxy-Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "12"),
            ("X-Forwarded-For", "10.0.0.7"),
            ("If-None-Match", "\"v1\""),
            ("X-Goog-User-Project", "team-project"),
            ("Accept", "application/json"),
        ],
    );
    let answer = forward(&server, sent).await.unwrap();
    assert_eq!(answer.status, 200);

    let got = only_request(&server).await;
    assert_eq!(got.method.as_str(), "GET");
    assert_eq!(got.url.path(), "/gmail/v1/users/me/messages");
    assert_eq!(
        got.url.query(),
        Some("q=from%3Ame%20is:unread&maxResults=5&fields=messages(id),nextPageToken")
    );
    assert_eq!(values(&got, "authorization"), [format!("Bearer {ACCESS}")]);
    for never in [
        "cookie",
        "proxy-authorization",
        "x-hop",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "transfer-encoding",
        "content-length",
        "x-forwarded-for",
    ] {
        assert!(values(&got, never).is_empty(), "{never} was sent: {got:?}");
    }
    let host = values(&got, "host");
    assert_eq!(host, [server.address().to_string()]);
    assert_eq!(values(&got, "if-none-match"), ["\"v1\""]);
    assert_eq!(values(&got, "x-goog-user-project"), ["team-project"]);
    assert_eq!(values(&got, "accept"), ["application/json"]);
}

#[tokio::test]
async fn a_post_with_a_body_in_memory_gets_googles_201_its_headers_and_body() {
    let server = MockServer::start().await;
    let created = json!({"id": "1aB", "name": "report"});
    Mock::given(method("POST"))
        .and(path("/drive/v3/files"))
        .and(header("content-type", "application/json"))
        .and(header("content-length", "18"))
        .and(body_json(json!({"name": "report"})))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(&created)
                .insert_header("etag", "\"e1\"")
                .insert_header("location", "https://www.googleapis.com/drive/v3/files/1aB")
                .insert_header("x-goog-request-id", "r1")
                .insert_header("set-cookie", "NID=1; Domain=.google.com")
                .insert_header("server", "ESF")
                .insert_header("alt-svc", "h3=\":443\""),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut sent = with_headers(
        request("POST", "www.googleapis.com", "/drive/v3/files"),
        &[
            ("content-type", "application/json"),
            ("content-length", "999"),
        ],
    );
    sent.body = ProxyBody::Full(Bytes::from_static(br#"{"name": "report"}"#));
    let answer = forward(&server, sent).await.unwrap();
    assert_eq!(answer.status, 201);
    assert_eq!(header_of(&answer, "content-type"), Some("application/json"));
    assert_eq!(header_of(&answer, "etag"), Some("\"e1\""));
    assert_eq!(
        header_of(&answer, "location"),
        Some("https://www.googleapis.com/drive/v3/files/1aB")
    );
    assert_eq!(header_of(&answer, "x-goog-request-id"), Some("r1"));
    for dropped in ["set-cookie", "server", "alt-svc"] {
        assert_eq!(header_of(&answer, dropped), None, "{dropped}");
    }
    let (body, _) = read(answer.body).await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body.unwrap()).unwrap(),
        created
    );
    server.verify().await;
}

#[tokio::test]
async fn an_empty_post_says_its_length_is_zero() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/gmail/v1/users/me/stop"))
        .and(header("content-length", "0"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let answer = forward(
        &server,
        request("POST", "gmail.googleapis.com", "/gmail/v1/users/me/stop"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 204);
    assert_eq!(read(answer.body).await.0.unwrap(), b"");
    server.verify().await;
}

fn upload_chunks() -> (Vec<Result<Bytes, ProxyError>>, Vec<u8>) {
    let chunks: Vec<Bytes> = (0..4u8)
        .map(|i| Bytes::from(vec![b'a' + i; 100 * 1024]))
        .collect();
    let whole = chunks.concat();
    (chunks.into_iter().map(Ok).collect(), whole)
}

#[tokio::test]
async fn a_put_with_a_streamed_body_arrives_whole_with_its_length_or_chunked() {
    let server = MockServer::start().await;
    let (_, whole) = upload_chunks();
    Mock::given(method("PUT"))
        .and(path("/upload/storage/v1/b/bucket/o"))
        .and(body_bytes(whole.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"size": "409600"})))
        .expect(2)
        .mount(&server)
        .await;
    for length in [Some("409600"), None] {
        let (chunks, _) = upload_chunks();
        let mut headers = vec![("content-type", "application/octet-stream")];
        headers.extend(length.map(|l| ("content-length", l)));
        let mut sent = with_headers(
            request(
                "PUT",
                "storage.googleapis.com",
                "/upload/storage/v1/b/bucket/o?uploadType=resumable&upload_id=u1",
            ),
            &headers,
        );
        sent.body = streamed(chunks);
        let answer = forward(&server, sent).await.unwrap();
        assert_eq!(answer.status, 200);
    }
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(values(&received[0], "content-length"), ["409600"]);
    assert!(values(&received[0], "transfer-encoding").is_empty());
    assert_eq!(values(&received[1], "transfer-encoding"), ["chunked"]);
    for got in &received {
        assert_eq!(got.url.query(), Some("uploadType=resumable&upload_id=u1"));
        assert_eq!(values(got, "authorization"), [format!("Bearer {ACCESS}")]);
    }
    server.verify().await;
}

#[tokio::test]
async fn a_streamed_body_that_fails_ends_the_request_with_the_callers_error() {
    let server = answering_200().await;
    let mut sent = request("PUT", "storage.googleapis.com", "/upload/storage/v1/b/b/o");
    sent.body = streamed(vec![
        Ok(Bytes::from_static(b"first part")),
        Err(ProxyError::BadRequest("the caller went away".into())),
    ]);
    assert_eq!(
        forward(&server, sent).await.unwrap_err(),
        ProxyError::BadRequest("the caller went away".into())
    );
}

#[tokio::test]
async fn googles_error_answers_pass_through_as_answers() {
    let server = MockServer::start().await;
    let not_found = json!({"error": {"code": 404, "message": "Requested entity was not found.",
        "errors": [{"message": "Requested entity was not found.", "domain": "global", "reason": "notFound"}],
        "status": "NOT_FOUND"}});
    Mock::given(path("/gmail/v1/users/me/messages/nope"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_raw(
                    serde_json::to_vec(&not_found).unwrap(),
                    "application/json; charset=UTF-8",
                )
                .insert_header("vary", "Origin"),
        )
        .mount(&server)
        .await;
    Mock::given(path("/gmail/v1/users/me/profile"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header(
                    "www-authenticate",
                    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
                )
                .set_body_json(json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/gmail/v1/users/me/labels"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "30"))
        .mount(&server)
        .await;

    let answer = forward(
        &server,
        request(
            "GET",
            "gmail.googleapis.com",
            "/gmail/v1/users/me/messages/nope",
        ),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 404);
    assert_eq!(
        header_of(&answer, "content-type"),
        Some("application/json; charset=UTF-8")
    );
    assert_eq!(header_of(&answer, "vary"), Some("Origin"));
    let (body, _) = read(answer.body).await;
    assert_eq!(body.unwrap(), serde_json::to_vec(&not_found).unwrap());

    let answer = forward(
        &server,
        request("GET", "gmail.googleapis.com", "/gmail/v1/users/me/profile"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 401);
    assert!(header_of(&answer, "www-authenticate").is_some_and(|v| v.contains("invalid_token")));

    let answer = forward(
        &server,
        request("GET", "gmail.googleapis.com", "/gmail/v1/users/me/labels"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(header_of(&answer, "retry-after"), Some("30"));
}

#[tokio::test]
async fn a_308_comes_back_with_its_location_and_range_and_is_not_followed() {
    let server = MockServer::start().await;
    let elsewhere = format!("{}/elsewhere?upload_id=u2", server.uri());
    Mock::given(method("PUT"))
        .and(path("/upload/drive/v3/files"))
        .respond_with(
            ResponseTemplate::new(308)
                .insert_header("location", elsewhere.as_str())
                .insert_header("range", "bytes=0-262143")
                .insert_header("x-guploader-uploadid", "u2"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let mut sent = request(
        "PUT",
        "www.googleapis.com",
        "/upload/drive/v3/files?uploadType=resumable&upload_id=u1",
    );
    sent.body = ProxyBody::Full(Bytes::from_static(b"part one"));
    let answer = forward(&server, sent).await.unwrap();
    assert_eq!(answer.status, 308);
    assert_eq!(header_of(&answer, "location"), Some(elsewhere.as_str()));
    assert_eq!(header_of(&answer, "range"), Some("bytes=0-262143"));
    assert_eq!(header_of(&answer, "x-guploader-uploadid"), Some("u2"));
    server.verify().await;
}

#[tokio::test]
async fn a_large_answer_streams_in_many_chunks_with_every_byte_in_order() {
    let (server, body) = serving_8_mib("/storage/v1/b/bucket/o/big").await;
    let answer = forward(
        &server,
        request(
            "GET",
            "storage.googleapis.com",
            "/storage/v1/b/bucket/o/big?alt=media",
        ),
    )
    .await
    .unwrap();
    assert_eq!(header_of(&answer, "content-length"), Some("8388608"));
    let (received, chunks) = read(answer.body).await;
    assert!(chunks > 1, "the answer came as {chunks} chunk(s)");
    assert!(received.unwrap() == body, "the answer differs");
}

#[tokio::test]
async fn an_encoded_answer_passes_undecoded_with_its_encoding_and_length() {
    let server = MockServer::start().await;
    // Not valid gzip: a client that decoded it would fail, not pass it on.
    let encoded = b"\x1f\x8b\x08\x00not-really-gzip".to_vec();
    Mock::given(method("GET"))
        .and(header("accept-encoding", "gzip"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(encoded.clone(), "application/json")
                .insert_header("content-encoding", "gzip"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let sent = with_headers(
        request("GET", "sheets.googleapis.com", "/v4/spreadsheets/s1"),
        &[("accept-encoding", "gzip")],
    );
    let answer = forward(&server, sent).await.unwrap();
    assert_eq!(header_of(&answer, "content-encoding"), Some("gzip"));
    assert_eq!(
        header_of(&answer, "content-length"),
        Some(encoded.len().to_string().as_str())
    );
    assert_eq!(read(answer.body).await.0.unwrap(), encoded);
    server.verify().await;
}

#[tokio::test]
async fn with_a_base_url_every_allowed_host_maps_to_it_keeping_the_path() {
    let server = answering_200().await;
    let mut prefixed = config(&server);
    prefixed.base_url = Some(format!("{}/fake/", server.uri()));
    let prefixed = Google::new(prefixed).unwrap().api();
    let plain = google(&server).api();
    for (api, host, path_and_query) in [
        (&plain, "gmail.googleapis.com", "/gmail/v1/users/me/profile"),
        (
            &plain,
            "Sheets.GoogleAPIs.com",
            "/v4/spreadsheets/s1?ranges=A1:B2",
        ),
        (
            &prefixed,
            "www.googleapis.com",
            "/drive/v3/about?fields=user",
        ),
        (&prefixed, "people.googleapis.com", "/../../v1/people/me"),
    ] {
        let answer = api
            .forward(&token(), request("GET", host, path_and_query))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{host}{path_and_query}");
    }
    let received: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url[url::Position::BeforePath..].to_owned())
        .collect();
    assert_eq!(
        received,
        [
            "/gmail/v1/users/me/profile",
            "/v4/spreadsheets/s1?ranges=A1:B2",
            "/fake/drive/v3/about?fields=user",
            "/fake/v1/people/me",
        ]
    );
}

#[tokio::test]
async fn a_host_method_or_path_outside_the_rules_is_refused_without_sending() {
    let server = answering_200().await;
    let mut people_only = config(&server);
    people_only.proxy_hosts = ProxyHosts::parse(["people.googleapis.com"]).unwrap();
    let people_only = Google::new(people_only).unwrap().api();
    let default = google(&server).api();
    for (api, sent) in [
        (&default, request("GET", "evil.example", "/x")),
        (
            &default,
            request("GET", "googleapis.com.evil.example", "/x"),
        ),
        (&default, request("GET", "a.b.googleapis.com", "/x")),
        (&default, request("GET", "gmail.googleapis.com:8443", "/x")),
        (&default, request("GET", "127.0.0.1", "/x")),
        (&default, request("GET", "gmail.googleapis.com", "x")),
        (&default, request("GET", "gmail.googleapis.com", "")),
        (&default, request("TRACE", "gmail.googleapis.com", "/x")),
        (&default, request("CONNECT", "gmail.googleapis.com", "/x")),
        (&default, request("get", "gmail.googleapis.com", "/x")),
        (&people_only, request("GET", "gmail.googleapis.com", "/x")),
    ] {
        let shown = format!("{sent:?}");
        let Err(error) = api.forward(&token(), sent).await else {
            panic!("{shown} was forwarded")
        };
        assert!(
            matches!(error, ProxyError::BadRequest(_)),
            "{shown}: {error}"
        );
    }
    assert!(server.received_requests().await.unwrap().is_empty());
    assert_eq!(
        people_only
            .forward(
                &token(),
                request("GET", "people.googleapis.com", "/v1/people/me")
            )
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn no_answer_is_unavailable_and_a_late_one_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let (dropping, accepted) = dropping_server().await;
    for (base_url, expected) in [
        (closed_port_url(), ProxyError::Unavailable),
        (dropping, ProxyError::Unavailable),
    ] {
        let mut unreachable = config(&server);
        unreachable.base_url = Some(base_url);
        let api = Google::new(unreachable).unwrap().api();
        assert_eq!(
            api.forward(&token(), request("GET", "gmail.googleapis.com", "/x"))
                .await
                .unwrap_err(),
            expected
        );
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one attempt, no retry"
    );
    let mut slow = config(&server);
    slow.request_timeout = Duration::from_millis(200);
    let api = Google::new(slow).unwrap().api();
    assert_eq!(
        api.forward(&token(), request("GET", "gmail.googleapis.com", "/x"))
            .await
            .unwrap_err(),
        ProxyError::Timeout
    );
}

#[tokio::test]
async fn an_answer_that_breaks_off_ends_its_body_as_unavailable() {
    let url = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n",
        b"only ten b",
        Duration::ZERO,
    )
    .await;
    let mut broken = offline_access_google::GoogleConfig::new(
        crate::support::CLIENT_ID.into(),
        secrecy::SecretString::from(crate::support::CLIENT_SECRET),
    );
    broken.base_url = Some(url);
    let api = Google::new(broken).unwrap().api();
    let answer = api
        .forward(&token(), request("GET", "www.googleapis.com", "/x"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(read(answer.body).await.0, Err(ProxyError::Unavailable));
}
