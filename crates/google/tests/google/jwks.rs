//! The JWKS cache: max-age minus Age, single flight, the unknown-kid refetch limit, grace then fail closed.
//! Time is a manual clock; nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use offline_access_domain::{IdTokenVerifier, VerifyError};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    KEY1, KEY2, KID1, KID2, claims, config, google_with_clock, hits, id_token, jwks, mount_jwks,
    mount_jwks_once, now, sign,
};

const CERTS: &str = "/oauth2/v3/certs";

fn secs(s: i64) -> time::Duration {
    time::Duration::seconds(s)
}

#[tokio::test]
async fn keys_are_fetched_once_and_reused_while_fresh() {
    let server = MockServer::start().await;
    mount_jwks(&server, &jwks(&[(&KEY1, KID1)]), "public, max-age=300").await;
    let (google, clock) = google_with_clock(config(&server));
    let verifier = google.verifier();
    assert!(!verifier.keys_loaded());
    let token = id_token(&sign(&claims(), KID1, &KEY1));

    verifier.verify(&token, now()).await.unwrap();
    clock.advance(secs(299));
    verifier.verify(&token, now()).await.unwrap();

    assert!(verifier.keys_loaded());
    assert_eq!(hits(&server, CERTS).await, 1);
}

#[tokio::test]
async fn the_cache_lifetime_is_max_age_minus_age() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(CERTS))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "cache-control",
                    "public, max-age=100, must-revalidate, no-transform",
                )
                .insert_header("age", "40")
                .set_body_json(jwks(&[(&KEY1, KID1)])),
        )
        .mount(&server)
        .await;
    let (google, clock) = google_with_clock(config(&server));
    let verifier = google.verifier();
    let token = id_token(&sign(&claims(), KID1, &KEY1));

    verifier.prefetch().await.unwrap();
    clock.advance(secs(59));
    verifier.verify(&token, now()).await.unwrap();
    assert_eq!(hits(&server, CERTS).await, 1, "fresh for 100 - 40 = 60 s");

    clock.advance(secs(1));
    verifier.verify(&token, now()).await.unwrap();
    assert_eq!(hits(&server, CERTS).await, 2, "stale at 60 s: refetched");
}

#[tokio::test]
async fn twenty_concurrent_verifications_on_a_cold_cache_cause_one_fetch() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(CERTS))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("cache-control", "max-age=300")
                .set_body_json(jwks(&[(&KEY1, KID1)]))
                // Holds the fetch open so that every verification arrives while it is in flight.
                .set_delay(Duration::from_millis(300)),
        )
        .mount(&server)
        .await;
    let (google, _clock) = google_with_clock(config(&server));
    let verifier = google.verifier();
    let token = Arc::new(id_token(&sign(&claims(), KID1, &KEY1)));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let verifier = verifier.clone();
        let token = token.clone();
        tasks.spawn(async move { verifier.verify(&token, now()).await });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
        ok += 1;
    }

    assert_eq!(ok, 20);
    assert_eq!(hits(&server, CERTS).await, 1);
}

#[tokio::test]
async fn concurrent_verifications_while_keys_are_down_share_one_failed_fetch() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(CERTS))
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_millis(300)))
        .mount(&server)
        .await;
    let (google, _clock) = google_with_clock(config(&server));
    let verifier = google.verifier();
    let token = Arc::new(id_token(&sign(&claims(), KID1, &KEY1)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let verifier = verifier.clone();
        let token = token.clone();
        tasks.spawn(async move { verifier.verify(&token, now()).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap_err(), VerifyError::KeysUnavailable);
    }
    assert_eq!(hits(&server, CERTS).await, 1);
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_minute() {
    let server = MockServer::start().await;
    mount_jwks(&server, &jwks(&[(&KEY1, KID1)]), "max-age=21600").await;
    let (google, clock) = google_with_clock(config(&server));
    let verifier = google.verifier();
    verifier.prefetch().await.unwrap();
    let stranger = id_token(&sign(&claims(), KID2, &KEY2));

    assert_eq!(
        verifier.verify(&stranger, now()).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    assert_eq!(
        hits(&server, CERTS).await,
        2,
        "one refetch for the unknown kid"
    );
    for _ in 0..5 {
        assert_eq!(
            verifier.verify(&stranger, now()).await.unwrap_err(),
            VerifyError::UnknownKey
        );
    }
    clock.advance(secs(59));
    assert_eq!(
        verifier.verify(&stranger, now()).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    assert_eq!(hits(&server, CERTS).await, 2, "rate-limited within 60 s");

    clock.advance(secs(1));
    assert_eq!(
        verifier.verify(&stranger, now()).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    assert_eq!(hits(&server, CERTS).await, 3, "allowed again after 60 s");
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_one_refetch() {
    let server = MockServer::start().await;
    mount_jwks_once(&server, &jwks(&[(&KEY1, KID1)]), "max-age=21600").await;
    mount_jwks(
        &server,
        &jwks(&[(&KEY1, KID1), (&KEY2, KID2)]),
        "max-age=21600",
    )
    .await;
    let (google, _clock) = google_with_clock(config(&server));
    let verifier = google.verifier();
    verifier.prefetch().await.unwrap();

    let rotated = id_token(&sign(&claims(), KID2, &KEY2));
    verifier.verify(&rotated, now()).await.unwrap();
    verifier
        .verify(&id_token(&sign(&claims(), KID1, &KEY1)), now())
        .await
        .unwrap();

    assert_eq!(hits(&server, CERTS).await, 2);
}

#[tokio::test]
async fn cached_keys_serve_through_the_grace_then_verification_fails_closed() {
    let server = MockServer::start().await;
    mount_jwks_once(&server, &jwks(&[(&KEY1, KID1)]), "max-age=100").await;
    Mock::given(method("GET"))
        .and(path(CERTS))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.jwks_grace = Duration::from_secs(3600);
    let (google, clock) = google_with_clock(config);
    let verifier = google.verifier();
    let token = id_token(&sign(&claims(), KID1, &KEY1));
    verifier.prefetch().await.unwrap();

    // Stale and the endpoint is down: the cached keys still serve.
    clock.advance(secs(101));
    verifier.verify(&token, now()).await.unwrap();
    assert_eq!(hits(&server, CERTS).await, 2, "a refetch was tried");
    assert!(verifier.keys_loaded());

    // Just inside the grace.
    clock.advance(secs(3598));
    verifier.verify(&token, now()).await.unwrap();

    // Past expiry + grace: fail closed.
    clock.advance(secs(2));
    assert_eq!(
        verifier.verify(&token, now()).await.unwrap_err(),
        VerifyError::KeysUnavailable
    );
    assert!(!verifier.keys_loaded());
    assert_eq!(
        verifier.prefetch().await.unwrap_err(),
        VerifyError::KeysUnavailable
    );
}

#[tokio::test]
async fn without_any_keys_an_unreachable_endpoint_fails_closed_and_recovers() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(CERTS))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_jwks(&server, &jwks(&[(&KEY1, KID1)]), "max-age=300").await;
    let (google, clock) = google_with_clock(config(&server));
    let verifier = google.verifier();
    let token = id_token(&sign(&claims(), KID1, &KEY1));

    assert_eq!(
        verifier.prefetch().await.unwrap_err(),
        VerifyError::KeysUnavailable
    );
    assert_eq!(
        verifier.verify(&token, now()).await.unwrap_err(),
        VerifyError::KeysUnavailable
    );
    assert_eq!(
        hits(&server, CERTS).await,
        1,
        "backing off for a second after a failure"
    );

    clock.advance(secs(1));
    verifier.verify(&token, now()).await.unwrap();
    assert_eq!(hits(&server, CERTS).await, 2);
}

#[tokio::test]
async fn a_jwks_without_usable_keys_is_a_failed_fetch() {
    let server = MockServer::start().await;
    mount_jwks(
        &server,
        &json!({"keys": [{"kty": "oct", "kid": "x", "k": "c2VjcmV0"}]}),
        "max-age=300",
    )
    .await;
    let (google, _clock) = google_with_clock(config(&server));
    assert_eq!(
        google.verifier().prefetch().await.unwrap_err(),
        VerifyError::KeysUnavailable
    );
}
