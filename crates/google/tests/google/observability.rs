//! Logs and metrics: every call is counted by endpoint and outcome, and no secret ever reaches a log line,
//! even at `trace`, on success or failure.

use bytes::Bytes;
use offline_access_domain::{
    AccessToken, AuthCode, Drive, DriveRequest, GoogleApi, IdTokenVerifier, ProxyBody,
    ProxyRequest, RefreshToken, TokenEndpoint,
};
use serde_json::json;
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::support::{
    CLIENT_SECRET, KEY1, KID1, claims, google, id_token, jwks_server, now, observe, sign,
};

const CODE: &str = "4/0canary-code-value";
const REFRESH: &str = "1//0canary-refresh-value";
const ACCESS: &str = "ya29.canary-access-value";

#[test]
fn no_code_token_or_client_secret_appears_in_trace_logs_or_metrics() {
    let mut bad_claims = claims();
    bad_claims["aud"] = json!("canary-audience");
    let id_token_text = sign(&bad_claims, KID1, &KEY1);
    let (logs, keys) = observe(|| async {
        let server = jwks_server().await;
        // Token endpoint: success once, then an error whose description echoes the secrets.
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": ACCESS, "expires_in": 3599, "refresh_token": REFRESH,
                "id_token": id_token_text, "scope": "openid"
            })))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "error": "invalid_grant", "error_description": format!("{CODE} {REFRESH} {CLIENT_SECRET}")
            })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/revoke"))
            .respond_with(
                ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_token"})),
            )
            .mount(&server)
            .await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {
                "code": 403, "message": ACCESS, "errors": [{"reason": ACCESS, "message": REFRESH}]}})))
            .mount(&server)
            .await;
        let google = google(&server);
        let code = AuthCode::parse(CODE).unwrap();
        let refresh = RefreshToken::parse(REFRESH).unwrap();
        let access = AccessToken::parse(ACCESS).unwrap();

        let answer = google.tokens().exchange_code(&code).await.unwrap();
        let _ = google
            .verifier()
            .verify(answer.id_token.as_ref().unwrap(), now())
            .await
            .unwrap_err();
        let _ = google.tokens().exchange_code(&code).await.unwrap_err();
        let _ = google.tokens().refresh(&refresh).await.unwrap_err();
        let _ = google.tokens().revoke(&refresh).await.unwrap_err();
        let create = DriveRequest::CreateFile {
            name: "n".into(),
            content_type: "text/plain".into(),
            content: Bytes::from_static(b"canary-content"),
        };
        let _ = google.drive().execute(&access, &create).await.unwrap_err();
        // The proxy: a query and caller headers holding secrets; Google's answer echoes the token.
        let proxied = ProxyRequest {
            method: "POST".into(),
            host: "gmail.googleapis.com".into(),
            path_and_query: "/gmail/v1/users/me/messages/send?key=canary-query-secret".into(),
            headers: vec![
                ("cookie".into(), "sid=canary-cookie".into()),
                ("authorization".into(), "Bearer canary-caller-key".into()),
            ],
            body: ProxyBody::Full(Bytes::from_static(b"canary-proxied-body")),
        };
        let answer = google.api().forward(&access, proxied).await.unwrap();
        assert_eq!(answer.status, 403);
        let _ = google
            .verifier()
            .verify(&id_token(&id_token_text), now())
            .await
            .unwrap_err();
        tracing::info!(google = ?google, "adapter state");
    });

    assert!(logs.contains("google.token"), "spans are logged: {logs}");
    assert!(
        logs.contains("google.proxy") && logs.contains("method=POST host=gmail.googleapis.com"),
        "the proxy logs its method and host: {logs}"
    );
    for canary in [
        CODE,
        REFRESH,
        ACCESS,
        CLIENT_SECRET,
        "canary",
        &id_token_text[..40],
    ] {
        assert!(
            !logs.contains(canary),
            "{canary} leaked into the logs:\n{logs}"
        );
        assert!(
            !keys.iter().any(|k| k.contains(canary)),
            "{canary} leaked into metrics"
        );
    }
    for expected in [
        "counter offline_access_google_requests_total{endpoint=token_exchange,outcome=ok}",
        "counter offline_access_google_requests_total{endpoint=token_exchange,outcome=invalid_grant}",
        "counter offline_access_google_requests_total{endpoint=token_refresh,outcome=invalid_grant}",
        "counter offline_access_google_requests_total{endpoint=revoke,outcome=already_revoked}",
        "counter offline_access_google_requests_total{endpoint=jwks,outcome=ok}",
        "counter offline_access_google_requests_total{endpoint=drive_create,outcome=forbidden}",
        "counter offline_access_google_requests_total{endpoint=proxy,outcome=client_error}",
        "histogram offline_access_google_request_duration_seconds{endpoint=proxy}",
        "histogram offline_access_google_request_duration_seconds{endpoint=drive_create}",
        "histogram offline_access_google_request_duration_seconds{endpoint=token_exchange}",
        "counter offline_access_id_token_verifications_total{outcome=wrong_audience}",
    ] {
        assert!(
            keys.iter().any(|k| k == expected),
            "missing {expected} in {keys:#?}"
        );
    }
}
