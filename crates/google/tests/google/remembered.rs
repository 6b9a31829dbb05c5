//! Verified tokens remembered by digest: a repeated Bearer skips the RSA verification, yet every answer is the
//! one a full verification would give (key still published, time claims checked again, refusals never kept).

use offline_access_domain::{IdTokenVerifier, VerifyError};
use offline_access_google::Google;
use serde_json::json;
use wiremock::MockServer;

use crate::support::{
    KEY1, KEY2, KID1, KID2, KeyRecorder, claims, config, google_with_clock, id_token, jwks,
    jwks_server, mount_jwks, mount_jwks_once, now, sign,
};

const REMEMBERED: &str = "offline_access_id_token_remembered_total";

fn secs(s: i64) -> time::Duration {
    time::Duration::seconds(s)
}

/// Runs `body` on a current-thread runtime with a local metrics recorder; returns how many verifications were
/// answered from remembered tokens.
fn remembered_during<F: Future<Output = ()>>(body: impl FnOnce() -> F) -> usize {
    let recorder = KeyRecorder::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || rt.block_on(body()));
    recorder.count(REMEMBERED)
}

#[test]
fn a_token_verified_once_is_answered_from_memory_with_the_same_identity() {
    let hits = remembered_during(|| async {
        let server = jwks_server().await;
        let verifier = Google::new(config(&server)).unwrap().verifier();
        let token = id_token(&sign(&claims(), KID1, &KEY1));
        let first = verifier.verify(&token, now()).await.unwrap();
        for _ in 0..3 {
            assert_eq!(verifier.verify(&token, now()).await.unwrap(), first);
        }
        // A different token (one claim changed) is not the remembered one.
        let mut other = claims();
        other["name"] = json!("Alice Other");
        let other = verifier
            .verify(&id_token(&sign(&other, KID1, &KEY1)), now())
            .await
            .unwrap();
        assert_eq!(other.profile.name.as_deref(), Some("Alice Other"));
    });
    assert_eq!(hits, 3);
}

#[test]
fn a_remembered_token_still_expires_and_is_still_refused_before_its_iat() {
    let hits = remembered_during(|| async {
        let server = jwks_server().await;
        let verifier = Google::new(config(&server)).unwrap().verifier();
        // claims(): iat = NOW - 60, exp = NOW + 3540; leeway 60 s.
        let token = id_token(&sign(&claims(), KID1, &KEY1));
        verifier.verify(&token, now()).await.unwrap();
        verifier.verify(&token, now() + secs(3599)).await.unwrap();
        assert_eq!(
            verifier
                .verify(&token, now() + secs(3600))
                .await
                .unwrap_err(),
            VerifyError::Expired
        );
        assert_eq!(
            verifier
                .verify(&token, now() - secs(121))
                .await
                .unwrap_err(),
            VerifyError::IssuedInFuture
        );
        verifier.verify(&token, now() - secs(120)).await.unwrap();
    });
    assert_eq!(
        hits, 2,
        "only the two accepted repeats are answered from memory"
    );
}

#[test]
fn a_remembered_token_whose_key_google_retired_is_refused() {
    remembered_during(|| async {
        let server = MockServer::start().await;
        mount_jwks_once(&server, &jwks(&[(&KEY1, KID1)]), "max-age=100").await;
        // After the first fetch Google publishes only key 2.
        mount_jwks(&server, &jwks(&[(&KEY2, KID2)]), "max-age=100").await;
        let (google, clock) = google_with_clock(config(&server));
        let verifier = google.verifier();
        let token = id_token(&sign(&claims(), KID1, &KEY1));
        verifier.verify(&token, now()).await.unwrap();
        verifier.verify(&token, now()).await.unwrap();

        clock.advance(secs(101));
        assert_eq!(
            verifier.verify(&token, now()).await.unwrap_err(),
            VerifyError::UnknownKey
        );
        // Tokens under the new key verify.
        verifier
            .verify(&id_token(&sign(&claims(), KID2, &KEY2)), now())
            .await
            .unwrap();
    });
}

#[test]
fn after_a_refetch_of_the_same_key_a_remembered_token_is_verified_again_in_full() {
    let hits = remembered_during(|| async {
        let server = MockServer::start().await;
        mount_jwks(&server, &jwks(&[(&KEY1, KID1)]), "max-age=100").await;
        let (google, clock) = google_with_clock(config(&server));
        let verifier = google.verifier();
        let token = id_token(&sign(&claims(), KID1, &KEY1));
        verifier.verify(&token, now()).await.unwrap();
        verifier.verify(&token, now()).await.unwrap(); // remembered
        clock.advance(secs(101));
        verifier.verify(&token, now()).await.unwrap(); // new key set: full verification
        verifier.verify(&token, now()).await.unwrap(); // remembered again
    });
    assert_eq!(hits, 2);
}

#[test]
fn refused_tokens_are_never_remembered_and_a_cache_of_zero_remembers_nothing() {
    let hits = remembered_during(|| async {
        let server = jwks_server().await;
        let verifier = Google::new(config(&server)).unwrap().verifier();
        let mut wrong = claims();
        wrong["aud"] = json!("another-app.apps.googleusercontent.com");
        let wrong = id_token(&sign(&wrong, KID1, &KEY1));
        let forged = id_token(&sign(&claims(), KID1, &KEY2));
        for _ in 0..2 {
            assert_eq!(
                verifier.verify(&wrong, now()).await.unwrap_err(),
                VerifyError::WrongAudience
            );
            assert_eq!(
                verifier.verify(&forged, now()).await.unwrap_err(),
                VerifyError::BadSignature
            );
        }

        let mut off = config(&server);
        off.verified_token_cache = 0;
        let verifier = Google::new(off).unwrap().verifier();
        let token = id_token(&sign(&claims(), KID1, &KEY1));
        for _ in 0..3 {
            verifier.verify(&token, now()).await.unwrap();
        }
    });
    assert_eq!(hits, 0);
}

#[test]
fn the_cache_is_bounded_and_evicted_tokens_verify_in_full_again() {
    let hits = remembered_during(|| async {
        let server = jwks_server().await;
        let mut small = config(&server);
        small.verified_token_cache = 4;
        let verifier = Google::new(small).unwrap().verifier();
        let tokens: Vec<_> = (0..64)
            .map(|i| {
                let mut c = claims();
                c["name"] = json!(format!("User {i}"));
                id_token(&sign(&c, KID1, &KEY1))
            })
            .collect();
        for token in &tokens {
            verifier.verify(token, now()).await.unwrap();
        }
        for token in &tokens {
            verifier.verify(token, now()).await.unwrap();
        }
    });
    // At most a handful of the 64 repeats can still be in a 4-entry cache; each one verified either way.
    assert!(hits <= 8, "{hits} hits from a 4-entry cache");
}
