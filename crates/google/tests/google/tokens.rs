//! Token endpoint and revocation: the exact form Google receives, and how every answer is mapped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use offline_access_domain::{
    AuthCode, RefreshToken, RevokeError, TokenEndpoint, TokenError, TokenResponse,
};
use offline_access_google::Google;
use serde_json::json;
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    CLIENT_ID, CLIENT_SECRET, closed_port_url, config, dropping_server, form_is, google,
};

const CODE: &str = "4/0AVG7fiQ-canary-code";
const REFRESH: &str = "1//0canary-refresh-token";

fn code() -> AuthCode {
    AuthCode::parse(CODE).unwrap()
}

fn refresh_token() -> RefreshToken {
    RefreshToken::parse(REFRESH).unwrap()
}

fn full_answer() -> serde_json::Value {
    json!({
        "access_token": "ya29.a0canary-access",
        "expires_in": 3599,
        "refresh_token": "1//0new-refresh",
        "scope": "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/drive.appdata",
        "token_type": "Bearer",
        "id_token": "aGVhZA.Ym9keQ.c2ln",
        "refresh_token_expires_in": 604799
    })
}

async fn token_server(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

async fn exchange_answering(answer: ResponseTemplate) -> Result<TokenResponse, TokenError> {
    let server = token_server(answer).await;
    google(&server).tokens().exchange_code(&code()).await
}

async fn refresh_answering(answer: ResponseTemplate) -> Result<TokenResponse, TokenError> {
    let server = token_server(answer).await;
    google(&server).tokens().refresh(&refresh_token()).await
}

#[tokio::test]
async fn exchange_posts_exactly_the_authorization_code_form_with_an_empty_redirect_uri() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(form_is(&[
            ("grant_type", "authorization_code"),
            ("code", CODE),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("redirect_uri", ""),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(full_answer()))
        .expect(1)
        .mount(&server)
        .await;

    let answer = google(&server)
        .tokens()
        .exchange_code(&code())
        .await
        .unwrap();

    assert_eq!(answer.access_token.expose_secret(), "ya29.a0canary-access");
    assert_eq!(answer.expires_in, Duration::from_secs(3599));
    assert_eq!(
        answer.refresh_token.unwrap().expose_secret(),
        "1//0new-refresh"
    );
    assert_eq!(
        answer.id_token.unwrap().expose_secret(),
        "aGVhZA.Ym9keQ.c2ln"
    );
    let scopes = answer.scopes.unwrap();
    assert!(scopes.has_drive_appdata());
    assert!(scopes.contains("email"));
    server.verify().await;
}

#[tokio::test]
async fn exchange_sends_the_configured_redirect_uri() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(form_is(&[
            ("grant_type", "authorization_code"),
            ("code", CODE),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("redirect_uri", "postmessage"),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(full_answer()))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.redirect_uri = "postmessage".into();

    Google::new(config)
        .unwrap()
        .tokens()
        .exchange_code(&code())
        .await
        .unwrap();
    server.verify().await;
}

#[tokio::test]
async fn refresh_posts_exactly_the_refresh_token_form() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(form_is(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", REFRESH),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.refreshed", "expires_in": 3599, "token_type": "Bearer",
            "scope": "https://www.googleapis.com/auth/drive.appdata"
        })))
        .expect(1)
        .mount(&server)
        .await;

    let answer = google(&server)
        .tokens()
        .refresh(&refresh_token())
        .await
        .unwrap();

    assert_eq!(answer.access_token.expose_secret(), "ya29.refreshed");
    assert!(answer.refresh_token.is_none(), "no rotation: none returned");
    assert!(answer.id_token.is_none());
    server.verify().await;
}

#[tokio::test]
async fn a_minimal_answer_has_no_refresh_token_id_token_or_scopes() {
    let answer = exchange_answering(
        ResponseTemplate::new(200)
            .set_body_json(json!({"access_token": "ya29.x", "expires_in": 10})),
    )
    .await
    .unwrap();
    assert!(answer.refresh_token.is_none() && answer.id_token.is_none() && answer.scopes.is_none());
}

#[tokio::test]
async fn success_bodies_that_break_the_format_are_protocol_errors() {
    let bad_bodies = [
        json!({"expires_in": 3599}),
        json!({"access_token": "ya29.x"}),
        json!({"access_token": "ya29.x", "expires_in": "3599"}),
        json!({"access_token": "ya29.x", "expires_in": -1}),
        json!({"access_token": "", "expires_in": 3599}),
        json!({"access_token": "ya29 x", "expires_in": 3599}),
        json!({"access_token": "ya29.x", "expires_in": 3599, "refresh_token": ""}),
        json!({"access_token": "ya29.x", "expires_in": 3599, "id_token": "not-a-jwt"}),
        json!({"access_token": "ya29.x", "expires_in": 3599, "token_type": "mac"}),
        json!({"access_token": "ya29.x", "expires_in": 3599, "scope": 7}),
        json!(["ya29.x"]),
    ];
    for body in bad_bodies {
        let result = exchange_answering(ResponseTemplate::new(200).set_body_json(&body)).await;
        assert!(
            matches!(result, Err(TokenError::Protocol(_))),
            "{body}: {result:?}"
        );
    }
    let result = exchange_answering(ResponseTemplate::new(200).set_body_string("<html>")).await;
    assert!(matches!(result, Err(TokenError::Protocol(_))));
}

/// Every error answer Google gives, for both grants.
#[tokio::test]
async fn google_error_answers_map_to_typed_token_errors() {
    let oauth = |status: u16, error: &str| {
        ResponseTemplate::new(status).set_body_json(json!({
            "error": error, "error_description": "Bad Request 1//0canary-refresh-token"
        }))
    };
    let cases: Vec<(ResponseTemplate, TokenError)> = vec![
        (oauth(400, "invalid_grant"), TokenError::InvalidGrant),
        (
            oauth(401, "invalid_client"),
            TokenError::InvalidClient("invalid_client".into()),
        ),
        (
            oauth(400, "invalid_client"),
            TokenError::InvalidClient("invalid_client".into()),
        ),
        (
            oauth(400, "unauthorized_client"),
            TokenError::InvalidClient("unauthorized_client".into()),
        ),
        (
            oauth(400, "redirect_uri_mismatch"),
            TokenError::Rejected("redirect_uri_mismatch".into()),
        ),
        (
            oauth(400, "invalid_request"),
            TokenError::Rejected("invalid_request".into()),
        ),
        (
            oauth(400, "invalid_scope"),
            TokenError::Rejected("invalid_scope".into()),
        ),
        (
            oauth(400, "weird code with spaces"),
            TokenError::Rejected("unknown".into()),
        ),
        (
            ResponseTemplate::new(401).set_body_string("nope"),
            TokenError::InvalidClient("unauthorized".into()),
        ),
        (
            ResponseTemplate::new(500),
            TokenError::Unavailable { retry_after: None },
        ),
        (
            oauth(503, "backend_error").insert_header("retry-after", "17"),
            TokenError::Unavailable {
                retry_after: Some(Duration::from_secs(17)),
            },
        ),
        (
            ResponseTemplate::new(504),
            TokenError::Unavailable { retry_after: None },
        ),
        (
            ResponseTemplate::new(408),
            TokenError::Unavailable { retry_after: None },
        ),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "3"),
            TokenError::Unavailable {
                retry_after: Some(Duration::from_secs(3)),
            },
        ),
        (
            ResponseTemplate::new(404).set_body_string("not found"),
            TokenError::Protocol("unexpected HTTP status 404".into()),
        ),
        (
            ResponseTemplate::new(302).insert_header("location", "https://evil.example/token"),
            TokenError::Protocol("unexpected HTTP status 302".into()),
        ),
    ];
    for (answer, expected) in cases {
        let exchanged = exchange_answering(answer.clone()).await.unwrap_err();
        assert_eq!(exchanged, expected);
        let refreshed = refresh_answering(answer).await.unwrap_err();
        assert_eq!(refreshed, expected);
        assert!(!format!("{exchanged} {exchanged:?}").contains("canary"));
    }
}

#[tokio::test]
async fn a_failed_exchange_is_never_retried() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let result = google(&server).tokens().exchange_code(&code()).await;
    assert!(matches!(result, Err(TokenError::Unavailable { .. })));
    server.verify().await;
}

#[tokio::test]
async fn a_dropped_connection_on_exchange_is_unavailable_after_one_attempt() {
    let (url, accepted) = dropping_server().await;
    let server = MockServer::start().await;
    let mut config = config(&server);
    config.base_url = Some(url);
    let result = Google::new(config)
        .unwrap()
        .tokens()
        .exchange_code(&code())
        .await;
    assert_eq!(
        result.unwrap_err(),
        TokenError::Unavailable { retry_after: None }
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_unavailable() {
    let server = MockServer::start().await;
    let mut config = config(&server);
    config.base_url = Some(closed_port_url());
    let google = Google::new(config).unwrap();
    assert_eq!(
        google.tokens().refresh(&refresh_token()).await.unwrap_err(),
        TokenError::Unavailable { retry_after: None }
    );
    assert_eq!(
        google.tokens().revoke(&refresh_token()).await.unwrap_err(),
        RevokeError::Unavailable
    );
}

#[tokio::test]
async fn a_slow_token_endpoint_times_out() {
    let server = token_server(
        ResponseTemplate::new(200)
            .set_body_json(full_answer())
            .set_delay(Duration::from_secs(10)),
    )
    .await;
    let mut config = config(&server);
    config.request_timeout = Duration::from_millis(200);
    let result = Google::new(config)
        .unwrap()
        .tokens()
        .exchange_code(&code())
        .await;
    assert_eq!(result.unwrap_err(), TokenError::Timeout);
}

#[tokio::test]
async fn revoke_posts_only_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(form_is(&[("token", REFRESH)]))
        .respond_with(ResponseTemplate::new(200).set_body_string(""))
        .expect(1)
        .mount(&server)
        .await;
    google(&server)
        .tokens()
        .revoke(&refresh_token())
        .await
        .unwrap();
    server.verify().await;
}

#[tokio::test]
async fn revoke_answers_map_to_typed_revoke_errors() {
    let cases = [
        (
            ResponseTemplate::new(400).set_body_json(
                json!({"error": "invalid_token", "error_description": "Token expired or revoked"}),
            ),
            RevokeError::AlreadyRevoked,
        ),
        (ResponseTemplate::new(503), RevokeError::Unavailable),
        (ResponseTemplate::new(500), RevokeError::Unavailable),
        (ResponseTemplate::new(429), RevokeError::Unavailable),
        (
            ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_request"})),
            RevokeError::Protocol("HTTP 400 invalid_request".into()),
        ),
        (
            ResponseTemplate::new(404),
            RevokeError::Protocol("unexpected HTTP status 404".into()),
        ),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/revoke"))
            .respond_with(answer)
            .mount(&server)
            .await;
        assert_eq!(
            google(&server).tokens().revoke(&refresh_token()).await,
            Err(expected)
        );
    }
}
