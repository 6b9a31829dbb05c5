//! Google's Security Event Tokens (RISC): discovery and keys over wiremock (cache, refetch on an unknown kid,
//! failures), the claim rules with real RS256 keys, every event type, and garbage that must never panic.

use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use offline_access_domain::RefreshToken;
use offline_access_domain::Subject;
use offline_access_domain::memory::ManualClock;
use offline_access_domain::risc::{
    RiscEvent, RiscSubject, SecurityEvent, SecurityEventVerifier, SetError, TokenIdentifierAlg,
};
use offline_access_google::{FAILURE_BACKOFF, Google, GoogleConfig, MAX_SET_LEN, RiscVerifier};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fuzz::{Mutation, apply, mutation};
use crate::support::{
    ANDROID_ID, CLIENT_ID, KEY1, KEY1_PUB_PEM, KEY2, KID1, KID2, NOW, SUB, b64, config, hits, jwks,
    jws, now,
};

const DISCOVERY: &str = "/.well-known/risc-configuration";
/// Where the test's discovery document publishes the RISC keys (not the ID-token certs path: the verifier must
/// follow `jwks_uri`).
const RISC_CERTS: &str = "/risc/v1/certs";
const RISC_ISSUER: &str = "https://accounts.google.com/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
const OAUTH: &str = "https://schemas.openid.net/secevent/oauth/event-type/";
const REFRESH_TOKEN: &str = "1//0gLkT3pRisc-canary-refresh-token";

fn secs(s: i64) -> time::Duration {
    time::Duration::seconds(s)
}

async fn mount_discovery(server: &MockServer, cache_control: &str) {
    Mock::given(method("GET"))
        .and(path(DISCOVERY))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("cache-control", cache_control)
                .set_body_json(json!({
                    "issuer": RISC_ISSUER,
                    "jwks_uri": format!("{}{RISC_CERTS}", server.uri()),
                    "delivery_methods_supported": ["https://schemas.openid.net/secevent/risc/delivery-method/push"],
                })),
        )
        .mount(server)
        .await;
}

fn risc_jwks(body: &Value, cache_control: &str) -> Mock {
    Mock::given(method("GET"))
        .and(path(RISC_CERTS))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("cache-control", cache_control)
                .set_body_json(body),
        )
}

/// A fake Google publishing the RISC discovery document and key 1 under [`KID1`], both for an hour.
async fn risc_server() -> MockServer {
    let server = MockServer::start().await;
    mount_discovery(&server, "public, max-age=3600").await;
    risc_jwks(&jwks(&[(&KEY1, KID1)]), "public, max-age=3600")
        .mount(&server)
        .await;
    server
}

fn risc_config(server: &MockServer) -> GoogleConfig {
    let mut config = config(server);
    config.allowed_azp = vec![ANDROID_ID.into()];
    config.leeway = std::time::Duration::from_secs(300);
    config
}

fn verifier(server: &MockServer) -> Arc<RiscVerifier> {
    Google::new(risc_config(server)).unwrap().security_events()
}

fn verifier_with_clock(server: &MockServer) -> (Arc<RiscVerifier>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(now()));
    let google = Google::new_with_clock(risc_config(server), clock.clone()).unwrap();
    (google.security_events(), clock)
}

fn account() -> Value {
    json!({"subject_type": "iss-sub", "iss": RISC_ISSUER, "sub": SUB})
}

/// A SET as Google sends it, valid at [`NOW`] (issued a minute ago; no `exp`).
fn set_claims(events: Value) -> Value {
    json!({
        "iss": RISC_ISSUER,
        "aud": CLIENT_ID,
        "iat": NOW - 60,
        "jti": "756E69717565206964656E746966696572",
        "events": events,
    })
}

fn set_with(event_type: &str, body: Value) -> Value {
    let mut events = serde_json::Map::new();
    events.insert(event_type.to_owned(), body);
    set_claims(Value::Object(events))
}

/// A signed SET with `typ: secevent+jwt`.
fn sign_set(claims: &Value, kid: &str, key: &EncodingKey) -> String {
    jws(
        &json!({"alg": "RS256", "kid": kid, "typ": "secevent+jwt"}),
        claims,
        key,
        Algorithm::RS256,
    )
}

/// The claims of a `tokens-revoked` SET about the test user.
fn tokens_revoked() -> Value {
    set_with(
        &format!("{OAUTH}tokens-revoked"),
        json!({ "subject": account() }),
    )
}

/// [`tokens_revoked`] with claim `name` set to `value`, signed with key 1.
fn signed_with(name: &str, value: Value) -> String {
    let mut claims = tokens_revoked();
    claims[name] = value;
    sign_set(&claims, KID1, &KEY1)
}

fn genuine() -> String {
    sign_set(&tokens_revoked(), KID1, &KEY1)
}

async fn verify(verifier: &RiscVerifier, token: &str) -> Result<SecurityEvent, SetError> {
    verifier.verify(token, now()).await
}

fn sub() -> RiscSubject {
    RiscSubject::Account(Subject::parse(SUB).unwrap())
}

#[tokio::test]
async fn a_valid_set_of_each_event_type_yields_its_parsed_event() {
    let server = risc_server().await;
    let verifier = verifier(&server);
    let about = json!({ "subject": account() });
    let on_the_account = [
        (
            format!("{OAUTH}tokens-revoked"),
            RiscEvent::TokensRevoked(sub()),
        ),
        (
            format!("{RISC}sessions-revoked"),
            RiscEvent::SessionsRevoked(sub()),
        ),
        (
            format!("{RISC}account-disabled"),
            RiscEvent::AccountDisabled(sub(), None),
        ),
        (
            format!("{RISC}account-enabled"),
            RiscEvent::AccountEnabled(sub()),
        ),
        (
            format!("{RISC}account-credential-change-required"),
            RiscEvent::CredentialChangeRequired(sub()),
        ),
        (
            format!("{RISC}account-purged"),
            RiscEvent::Unsupported(format!("{RISC}account-purged")),
        ),
    ]
    .map(|(event_type, expected)| (event_type, about.clone(), expected));
    let with_members = [
        (
            format!("{RISC}account-disabled"),
            json!({"subject": account(), "reason": "hijacking"}),
            RiscEvent::AccountDisabled(sub(), Some("hijacking".into())),
        ),
        (
            format!("{RISC}verification"),
            json!({"state": "state-1234"}),
            RiscEvent::Verification(Some("state-1234".into())),
        ),
        (
            format!("{RISC}verification"),
            json!({}),
            RiscEvent::Verification(None),
        ),
    ];
    for (event_type, body, expected) in on_the_account.into_iter().chain(with_members) {
        let token = sign_set(&set_with(&event_type, body), KID1, &KEY1);

        let event = verify(&verifier, &token).await.unwrap();

        assert_eq!(event.jti, "756E69717565206964656E746966696572");
        assert_eq!(event.issued_at.unix_timestamp(), NOW - 60);
        assert_eq!(event.events, [expected], "{event_type}");
    }
}

#[tokio::test]
async fn a_token_revoked_event_names_the_refresh_token_by_prefix_or_double_hash() {
    let server = risc_server().await;
    let verifier = verifier(&server);
    let refresh = RefreshToken::parse(REFRESH_TOKEN).unwrap();
    let sha512 = |b: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, b);
    let hash = base64::engine::general_purpose::STANDARD
        .encode(sha512(sha512(REFRESH_TOKEN.as_bytes()).as_ref()));
    for (alg, identifier, expected_alg) in [
        (
            "prefix",
            REFRESH_TOKEN[..16].to_owned(),
            TokenIdentifierAlg::Prefix,
        ),
        (
            "hash_base64_sha512_sha512",
            hash,
            TokenIdentifierAlg::HashSha512Sha512,
        ),
    ] {
        let token = sign_set(
            &set_with(
                &format!("{OAUTH}token-revoked"),
                json!({"subject": {
                    "subject_type": "oauth_token", "token_type": "refresh_token",
                    "token_identifier_alg": alg, "token": identifier
                }}),
            ),
            KID1,
            &KEY1,
        );

        let event = verify(&verifier, &token).await.unwrap();

        let [RiscEvent::TokenRevoked(RiscSubject::Token(named))] = event.events.as_slice() else {
            panic!("{:?}", event.events)
        };
        assert_eq!(named.alg(), expected_alg);
        assert!(named.matches(&refresh), "{alg}");
        assert!(!format!("{named:?}").contains(&REFRESH_TOKEN[..16]));
    }
}

#[tokio::test]
async fn a_forged_signature_under_googles_kid_is_invalid_key() {
    let server = risc_server().await;
    let token = sign_set(&tokens_revoked(), KID1, &KEY2);

    let result = verify(&verifier(&server), &token).await;

    assert!(matches!(result, Err(SetError::InvalidKey(_))), "{result:?}");
}

#[tokio::test]
async fn alg_none_hs256_and_rs512_are_invalid_key_without_any_fetch() {
    let server = risc_server().await;
    let verifier = verifier(&server);
    let genuine = genuine();
    let payload = genuine.split('.').nth(1).unwrap();
    let none = |header: Value, signature: &str| {
        format!(
            "{}.{payload}.{signature}",
            b64(&serde_json::to_vec(&header).unwrap())
        )
    };
    let hs256_key = EncodingKey::from_secret(KEY1_PUB_PEM.as_bytes());
    let claims = tokens_revoked();
    for token in [
        none(json!({"alg": "none", "kid": KID1}), ""),
        none(json!({"alg": "none"}), "c2ln"),
        none(json!({"alg": "None", "kid": KID1}), ""),
        jws(
            &json!({"alg": "HS256", "kid": KID1}),
            &claims,
            &hs256_key,
            Algorithm::HS256,
        ),
        jws(
            &json!({"alg": "RS512", "kid": KID1}),
            &claims,
            &KEY1,
            Algorithm::RS512,
        ),
    ] {
        let result = verify(&verifier, &token).await;
        assert!(matches!(result, Err(SetError::InvalidKey(_))), "{result:?}");
    }
    assert_eq!(hits(&server, DISCOVERY).await, 0);
    assert_eq!(hits(&server, RISC_CERTS).await, 0);
}

#[tokio::test]
async fn an_issuer_other_than_the_discovery_documents_is_invalid_issuer() {
    let server = risc_server().await;
    let verifier = verifier(&server);
    for iss in [
        json!("https://accounts.google.com"),
        json!("accounts.google.com"),
        json!("https://evil.example/"),
        json!(["https://accounts.google.com/"]),
        Value::Null,
    ] {
        let result = verify(&verifier, &signed_with("iss", iss.clone())).await;

        assert!(
            matches!(result, Err(SetError::InvalidIssuer(_))),
            "{iss}: {result:?}"
        );
    }
}

#[tokio::test]
async fn an_audience_naming_none_of_our_clients_is_invalid_audience_and_a_list_with_one_is_accepted()
 {
    let server = risc_server().await;
    let verifier = verifier(&server);
    let verdict = |aud: Value| signed_with("aud", aud);
    for aud in [
        json!("other.apps.googleusercontent.com"),
        json!(["other", "another"]),
        json!([]),
        json!(5),
        Value::Null,
    ] {
        let result = verify(&verifier, &verdict(aud.clone())).await;
        assert!(
            matches!(result, Err(SetError::InvalidAudience(_))),
            "{aud}: {result:?}"
        );
    }
    for aud in [
        json!(["other.apps.googleusercontent.com", CLIENT_ID]),
        json!(ANDROID_ID),
        json!([ANDROID_ID]),
    ] {
        assert!(
            verify(&verifier, &verdict(aud.clone())).await.is_ok(),
            "{aud}"
        );
    }
}

#[tokio::test]
async fn iat_missing_malformed_or_past_the_leeway_ahead_is_invalid_request() {
    let server = risc_server().await;
    let verifier = verifier(&server);
    let with_iat = |iat: Value| signed_with("iat", iat);
    for iat in [
        json!(NOW + 301),
        json!(NOW + 86_400),
        Value::Null,
        json!("1800000000"),
        json!(1.8e9),
    ] {
        let result = verify(&verifier, &with_iat(iat.clone())).await;
        assert!(
            matches!(result, Err(SetError::InvalidRequest(_))),
            "{iat}: {result:?}"
        );
    }
    assert!(verify(&verifier, &with_iat(json!(NOW + 300))).await.is_ok());
}

#[tokio::test]
async fn a_missing_jti_or_no_events_is_invalid_request() {
    let server = risc_server().await;
    let verifier = verifier(&server);
    for (name, value) in [
        ("jti", Value::Null),
        ("jti", json!("")),
        ("jti", json!(42)),
        ("jti", json!("x".repeat(257))),
        ("events", Value::Null),
        ("events", json!({})),
        ("events", json!([format!("{OAUTH}tokens-revoked")])),
    ] {
        let result = verify(&verifier, &signed_with(name, value.clone())).await;

        assert!(
            matches!(result, Err(SetError::InvalidRequest(_))),
            "{name} = {value}: {result:?}"
        );
    }
}

#[tokio::test]
async fn a_set_with_exp_long_past_is_accepted() {
    let server = risc_server().await;
    let mut claims = tokens_revoked();
    claims["exp"] = json!(NOW - 30 * 86_400);
    claims["iat"] = json!(NOW - 31 * 86_400);

    let event = verify(&verifier(&server), &sign_set(&claims, KID1, &KEY1))
        .await
        .unwrap();

    assert_eq!(event.events, [RiscEvent::TokensRevoked(sub())]);
}

#[tokio::test]
async fn garbage_and_oversized_tokens_are_invalid_requests() {
    let server = risc_server().await;
    let verifier = verifier(&server);
    let huge = format!(
        "{}.{}.c2ln",
        b64(br#"{"alg":"RS256"}"#),
        "A".repeat(MAX_SET_LEN)
    );
    for token in ["", "garbage", "a.b", "a.b.c.d", "!!.!!.!!", huge.as_str()] {
        let result = verify(&verifier, token).await;
        assert!(
            matches!(result, Err(SetError::InvalidRequest(_))),
            "{}: {result:?}",
            &token[..token.len().min(20)]
        );
    }
}

#[tokio::test]
async fn discovery_and_keys_are_fetched_once_and_reused_while_fresh() {
    let server = risc_server().await;
    let (verifier, clock) = verifier_with_clock(&server);
    let token = genuine();

    verify(&verifier, &token).await.unwrap();
    clock.advance(secs(3599));
    verify(&verifier, &token).await.unwrap();
    verify(&verifier, &token).await.unwrap();

    assert_eq!(hits(&server, DISCOVERY).await, 1);
    assert_eq!(hits(&server, RISC_CERTS).await, 1);
    assert_eq!(hits(&server, "/oauth2/v3/certs").await, 0);

    clock.advance(secs(1));
    verify(&verifier, &token).await.unwrap();
    assert_eq!(hits(&server, DISCOVERY).await, 2);
    assert_eq!(hits(&server, RISC_CERTS).await, 2);
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_once_and_then_is_rate_limited() {
    let server = MockServer::start().await;
    mount_discovery(&server, "public, max-age=3600").await;
    risc_jwks(&jwks(&[(&KEY1, KID1)]), "public, max-age=3600")
        .up_to_n_times(1)
        .mount(&server)
        .await;
    risc_jwks(
        &jwks(&[(&KEY1, KID1), (&KEY2, KID2)]),
        "public, max-age=3600",
    )
    .mount(&server)
    .await;
    let (verifier, _clock) = verifier_with_clock(&server);
    verify(&verifier, &genuine()).await.unwrap();
    let claims = tokens_revoked();

    // Google rotated in key 2: one refetch finds it.
    verify(&verifier, &sign_set(&claims, KID2, &KEY2))
        .await
        .unwrap();
    assert_eq!(hits(&server, RISC_CERTS).await, 2);

    // Another unknown kid within the minute: no refetch, refused.
    let result = verify(
        &verifier,
        &sign_set(&claims, "0000000000000000000000000000000000000000", &KEY2),
    )
    .await;
    assert!(matches!(result, Err(SetError::InvalidKey(_))), "{result:?}");
    assert_eq!(hits(&server, RISC_CERTS).await, 2);
}

/// `on` answers `status` once, then what is mounted after.
async fn fail_once(server: &MockServer, on: &str, status: u16) {
    Mock::given(method("GET"))
        .and(path(on))
        .respond_with(ResponseTemplate::new(status))
        .up_to_n_times(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_discovery_or_key_fetch_failure_is_unavailable_and_never_cached() {
    for failing in [DISCOVERY, RISC_CERTS] {
        let server = MockServer::start().await;
        fail_once(&server, failing, 503).await;
        mount_discovery(&server, "public, max-age=3600").await;
        risc_jwks(&jwks(&[(&KEY1, KID1)]), "public, max-age=3600")
            .mount(&server)
            .await;
        let (verifier, clock) = verifier_with_clock(&server);

        let result = verify(&verifier, &genuine()).await;
        assert!(
            matches!(result, Err(SetError::Unavailable(_))),
            "{failing}: {result:?}"
        );
        assert_eq!(
            result.unwrap_err().code(),
            None,
            "not the sender's fault: no RFC 8935 code"
        );

        // The failure is not remembered: once the back-off is over, the next token fetches again.
        clock.advance(time::Duration::try_from(FAILURE_BACKOFF).unwrap());
        verify(&verifier, &genuine()).await.unwrap();
        assert_eq!(hits(&server, failing).await, 2, "{failing}");
    }
}

#[tokio::test]
async fn an_unreachable_google_is_unavailable() {
    let mut config = GoogleConfig::new(CLIENT_ID.into(), "s".into());
    config.base_url = Some(crate::support::closed_port_url());
    let verifier = Google::new(config).unwrap().security_events();

    let result = verify(&verifier, &genuine()).await;

    assert!(
        matches!(result, Err(SetError::Unavailable(_))),
        "{result:?}"
    );
    assert!(verifier.prefetch().await.is_err());
}

#[tokio::test]
async fn prefetch_loads_discovery_and_keys() {
    let server = risc_server().await;
    let verifier = verifier(&server);

    verifier.prefetch().await.unwrap();

    assert_eq!(hits(&server, DISCOVERY).await, 1);
    assert_eq!(hits(&server, RISC_CERTS).await, 1);
    verify(&verifier, &genuine()).await.unwrap();
    assert_eq!(hits(&server, RISC_CERTS).await, 1);
}

/// A runtime, the RISC server and a verifier holding its keys, for property tests.
fn prefetched() -> (tokio::runtime::Runtime, MockServer, Arc<RiscVerifier>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, verifier) = rt.block_on(async {
        let server = risc_server().await;
        let verifier = verifier(&server);
        verifier.prefetch().await.unwrap();
        (server, verifier)
    });
    (rt, server, verifier)
}

#[test]
fn mutated_sets_never_panic_and_only_the_genuine_one_is_accepted() {
    let (rt, _server, verifier) = prefetched();
    let genuine = genuine();
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&mutation(), |mutation| {
            // The claim mutations put ID-token claims under the SET's signature (or re-sign them): never a SET.
            let (token, _) = apply(&genuine, &mutation);
            let result = rt.block_on(verifier.verify(&token, now()));
            if matches!(mutation, Mutation::None) {
                prop_assert!(result.is_ok(), "the genuine SET was refused: {:?}", result);
            } else {
                prop_assert!(
                    result.is_err() || token == genuine,
                    "a mutation verified: {:?}",
                    mutation
                );
                prop_assert!(!matches!(result, Err(SetError::Unavailable(_))));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_input_never_panics_and_is_refused_as_the_senders_fault() {
    let (rt, _server, verifier) = prefetched();
    let input = prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.=-]{0,300}",
        (
            "[A-Za-z0-9_-]{0,80}",
            "[A-Za-z0-9_-]{0,80}",
            "[A-Za-z0-9_-]{0,80}"
        )
            .prop_map(|(h, p, s)| format!("{h}.{p}.{s}")),
        any::<Vec<u8>>().prop_map(|b| format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256","kid":"0123456789abcdef0123456789abcdef01234567"}"#),
            b64(&b),
            b64(&b)
        )),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&input, |token| {
            let result = rt.block_on(verifier.verify(&token, now()));
            prop_assert!(
                matches!(
                    result,
                    Err(SetError::InvalidRequest(_) | SetError::InvalidKey(_))
                ),
                "{:?}",
                result
            );
            Ok(())
        })
        .unwrap();
}
