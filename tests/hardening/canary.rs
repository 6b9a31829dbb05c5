//! Issue 5, case 19: canary secrets. Known canary values for the auth code, access token, refresh token, ID token
//! and client secret go through sign-in, `/v1/me`, refresh faults, `invalid_grant`, forged Bearers and forget at
//! log level `trace`; none may appear in the logs, a response body, `/metrics` or a panic message. `Debug` and
//! `Display` of the config and token types print `[REDACTED]`.

use std::sync::{Arc, Mutex, OnceLock};

use fake_google::{Endpoint, FakeConfig, FakeGoogle, Fault, OAuthClient};
use offline_access_crypto::KeyRing;
use offline_access_domain::{
    AccessToken, AuthCode, IdToken, OfflineAccess, Ports, RefreshToken, Settings, SystemClock,
};
use offline_access_google::{Google, GoogleConfig};
use offline_access_http::{AppState, HttpConfig};
use offline_access_store_file::FileStore;
use offline_access_tests::jwt::sign_rs256;
use offline_access_tests::{
    FAKE_GOOGLE_KEY_DER, capture_logs, captured_logs, captured_metrics, contains,
};
use serde_json::json;

const CANARY_CODE: &str = "4/0CANARY-code-5b1e9d7c2a64f08e";
const CANARY_ACCESS: &str = "ya29.CANARY-access-93c0d2e7f51a4b68";
const CANARY_REFRESH: &str = "1//0CANARY-refresh-e2a7c95b0d3f6148";
const CANARY_SECRET: &str = "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";
/// An unknown code, sent as is, that Google refuses.
const CANARY_BAD_CODE: &str = "4/0CANARY-refused-code-0a9b8c7d6e5f";

/// Every panic message of this test binary (the previous hook still runs).
fn capture_panics() -> Arc<Mutex<Vec<String>>> {
    static PANICS: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    PANICS
        .get_or_init(|| {
            let panics = Arc::new(Mutex::new(Vec::new()));
            let sink = panics.clone();
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if let Ok(mut all) = sink.lock() {
                    all.push(info.to_string());
                }
                previous(info);
            }));
            panics
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_code_tokens_and_client_secret_never_appear_in_logs_bodies_metrics_or_panics() {
    // Arrange: a fake Google whose client secret is a canary, and a server composed like the binary's, with
    // `/metrics`, logging at trace.
    let panics = capture_panics();
    capture_logs();
    let fake = FakeGoogle::start_with(FakeConfig {
        client: OAuthClient {
            client_id: fake_google::DEFAULT_CLIENT_ID.to_owned(),
            client_secret: CANARY_SECRET.to_owned(),
        },
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let control = fake.control().clone();
    let mut google_config = GoogleConfig::new(
        control.client_id(),
        secrecy::SecretString::from(CANARY_SECRET),
    );
    google_config.base_url = Some(fake.base_url());
    let google_debug = format!("{google_config:?}");
    let google = Google::new(google_config).unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(KeyRing::generate_ephemeral());
    let store = FileStore::open(store_dir.path().to_path_buf(), keys).unwrap();
    let service = Arc::new(OfflineAccess::new(
        Ports {
            tokens: google.tokens(),
            verifier: google.verifier(),
            store: Arc::new(store),
            drive: google.drive(),
            clock: Arc::new(SystemClock),
        },
        Settings::default(),
    ));
    let state = AppState::new(
        service,
        HttpConfig {
            authcode_rate_limit: 0,
            ..HttpConfig::default()
        },
    )
    .with_metrics(Arc::new(captured_metrics));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(offline_access_http::serve(
        listener,
        offline_access_http::router(state),
        std::future::pending(),
    ));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let now = control.now_unix();
    let sub = "110000000000000000777";
    let claims = json!({
        "iss": "https://accounts.google.com", "azp": control.client_id(), "aud": control.client_id(),
        "sub": sub, "email": "canary@example.com", "email_verified": true,
        "iat": now, "exp": now + 3600, "name": "Canary",
    });
    let header = json!({"alg": "RS256", "kid": control.current_kid(), "typ": "JWT"});
    let canary_id_token = sign_rs256(FAKE_GOOGLE_KEY_DER, &header, &claims);
    let token_response = json!({
        "access_token": CANARY_ACCESS, "expires_in": 3599, "refresh_token": CANARY_REFRESH,
        "scope": "openid email https://www.googleapis.com/auth/drive.appdata", "token_type": "Bearer",
        "id_token": canary_id_token,
    });
    let mut bodies = Vec::new();
    let post_code = |code: &'static str| {
        http.post(format!("{url}/authcode"))
            .header("X-Requested-With", "XMLHttpRequest")
            .form(&[("authCode", code)])
            .send()
    };
    let me = |method: reqwest::Method, path: &str, bearer: &str| {
        http.request(method, format!("{url}{path}"))
            .bearer_auth(bearer)
            .send()
    };

    // Act: the canary code is exchanged for the canary tokens (a token response from the fault).
    control
        .add_fault(Fault::status(Endpoint::Token, 200).with_body(token_response.clone()))
        .await
        .unwrap();
    let answer = post_code(CANARY_CODE).await.unwrap();
    assert_eq!(answer.status(), 200);
    bodies.push(answer.text().await.unwrap());
    // The same code again: answered from the retry cache or refused.
    bodies.push(post_code(CANARY_CODE).await.unwrap().text().await.unwrap());
    // A code Google refuses.
    let answer = post_code(CANARY_BAD_CODE).await.unwrap();
    assert_eq!(answer.status(), 400);
    bodies.push(answer.text().await.unwrap());
    // The canary ID token as a Bearer, and a tampered one.
    let answer = me(reqwest::Method::GET, "/v1/me", &canary_id_token)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    bodies.push(answer.text().await.unwrap());
    let tampered = format!("{canary_id_token}x");
    let answer = me(reqwest::Method::GET, "/v1/me", &tampered).await.unwrap();
    assert_eq!(answer.status(), 401);
    bodies.push(answer.text().await.unwrap());
    // Drive with the canary access token: the fake does not know it (401), so the canary refresh token is used;
    // the refresh fails three times (503), then Google refuses it (invalid_grant).
    control
        .add_fault(Fault {
            times: 3,
            ..Fault::status(Endpoint::Token, 503)
        })
        .await
        .unwrap();
    let answer = me(
        reqwest::Method::GET,
        "/v1/me/drive/appfolder",
        &canary_id_token,
    )
    .await
    .unwrap();
    assert!(answer.status().is_server_error() || answer.status().is_client_error());
    bodies.push(answer.text().await.unwrap());
    let answer = me(
        reqwest::Method::GET,
        "/v1/me/drive/appfolder",
        &canary_id_token,
    )
    .await
    .unwrap();
    assert!(!answer.status().is_success());
    bodies.push(answer.text().await.unwrap());
    // Forget: the canary refresh token goes to `/revoke`.
    let answer = me(reqwest::Method::DELETE, "/v1/me", &canary_id_token)
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    bodies.push(answer.text().await.unwrap());
    let metrics_body = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let debug_of_types = [
        format!(
            "{:?} {}",
            AuthCode::parse(CANARY_CODE).unwrap(),
            AuthCode::parse(CANARY_CODE).unwrap()
        ),
        format!(
            "{:?} {}",
            AccessToken::parse(CANARY_ACCESS).unwrap(),
            AccessToken::parse(CANARY_ACCESS).unwrap()
        ),
        format!(
            "{:?} {}",
            RefreshToken::parse(CANARY_REFRESH).unwrap(),
            RefreshToken::parse(CANARY_REFRESH).unwrap()
        ),
        format!(
            "{:?} {}",
            IdToken::parse(&canary_id_token).unwrap(),
            IdToken::parse(&canary_id_token).unwrap()
        ),
        google_debug,
    ];

    // Assert: the canaries reached Google (so they were really used) ...
    let journal = control.requests().await;
    assert!(journal.iter().filter(|e| e.endpoint == "token").count() >= 5);
    assert!(journal.iter().any(|e| e.endpoint == "revoke"));
    // ... and appear nowhere of ours.
    let logs = captured_logs();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "not logging at trace"
    );
    let panics = panics.lock().unwrap().join("\n");
    let id_token_signature = canary_id_token.rsplit('.').next().unwrap();
    let mut found = Vec::new();
    for (what, canary) in [
        ("code", CANARY_CODE),
        ("refused code", CANARY_BAD_CODE),
        ("access token", CANARY_ACCESS),
        ("refresh token", CANARY_REFRESH),
        ("client secret", CANARY_SECRET),
        ("ID token", canary_id_token.as_str()),
        ("ID token signature", id_token_signature),
    ] {
        let places = [
            ("logs", logs.as_str()),
            ("metrics", metrics_body.as_str()),
            ("panics", panics.as_str()),
        ]
        .into_iter()
        .chain(bodies.iter().map(|b| ("a response body", b.as_str())))
        .chain(debug_of_types.iter().map(|d| ("Debug/Display", d.as_str())));
        for (place, text) in places {
            if contains(text.as_bytes(), canary) {
                found.push(format!("{what} in {place}"));
            }
        }
    }
    assert_eq!(found, Vec::<String>::new(), "canaries found");
    for shown in &debug_of_types {
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }
}
