//! ID-token verification with real RS256 signatures: every rejection, with its typed reason.

use jsonwebtoken::{Algorithm, EncodingKey};
use offline_access_domain::{IdToken, IdTokenVerifier, VerifiedIdToken, VerifyError};
use offline_access_google::{Google, GoogleConfig};
use serde_json::{Value, json};

use crate::support::{
    ANDROID_ID, CLIENT_ID, KEY1, KEY1_PUB_PEM, KEY2, KID1, KID2, NOW, SUB, b64, claims, config,
    hits, id_token, jwks_server, jws, now, sign,
};

const CERTS: &str = "/oauth2/v3/certs";

async fn verify_with(config: GoogleConfig, token: &str) -> Result<VerifiedIdToken, VerifyError> {
    Google::new(config)
        .unwrap()
        .verifier()
        .verify(&id_token(token), now())
        .await
}

async fn verify(token: &str) -> Result<VerifiedIdToken, VerifyError> {
    let server = jwks_server().await;
    verify_with(config(&server), token).await
}

/// Claims with one member changed (`Value::Null` removes it).
fn with(name: &str, value: Value) -> Value {
    let mut c = claims();
    if value.is_null() {
        c.as_object_mut().unwrap().remove(name);
    } else {
        c[name] = value;
    }
    c
}

fn signed(claims: &Value) -> String {
    sign(claims, KID1, &KEY1)
}

#[tokio::test]
async fn a_token_google_would_issue_verifies_into_subject_and_profile() {
    let verified = verify(&signed(&claims())).await.unwrap();
    assert_eq!(verified.subject.as_str(), SUB);
    assert_eq!(verified.issuer, "https://accounts.google.com");
    assert_eq!(verified.audience, CLIENT_ID);
    assert_eq!(verified.authorized_party.as_deref(), Some(ANDROID_ID));
    assert_eq!(verified.issued_at.unix_timestamp(), NOW - 60);
    assert_eq!(verified.expires_at.unix_timestamp(), NOW + 3540);
    let p = verified.profile;
    assert_eq!(p.email.unwrap().as_str(), "alice@example.com");
    assert!(p.email_verified);
    assert_eq!(p.name.as_deref(), Some("Alice Example"));
    assert_eq!(p.given_name.as_deref(), Some("Alice"));
    assert_eq!(p.family_name.as_deref(), Some("Example"));
    assert_eq!(p.locale.as_deref(), Some("en"));
    assert_eq!(
        p.picture.as_deref(),
        Some("https://lh3.googleusercontent.com/a/photo")
    );
    assert_eq!(p.hd, None);
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_valid_kid_has_a_bad_signature() {
    assert_eq!(
        verify(&sign(&claims(), KID1, &KEY2)).await.unwrap_err(),
        VerifyError::BadSignature
    );
}

#[tokio::test]
async fn a_tampered_payload_has_a_bad_signature() {
    let token = signed(&claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64(&serde_json::to_vec(&with("sub", json!("999"))).unwrap());
    assert_eq!(
        verify(&parts.join(".")).await.unwrap_err(),
        VerifyError::BadSignature
    );
}

#[tokio::test]
async fn alg_none_is_refused_before_any_key_is_fetched() {
    let server = jwks_server().await;
    let header = b64(br#"{"alg":"none","kid":"0123456789abcdef0123456789abcdef01234567"}"#);
    let payload = b64(&serde_json::to_vec(&claims()).unwrap());
    let token = format!("{header}.{payload}.AAAA");
    assert_eq!(
        verify_with(config(&server), &token).await.unwrap_err(),
        VerifyError::UnsupportedAlgorithm
    );
    assert_eq!(hits(&server, CERTS).await, 0);
}

#[tokio::test]
async fn hs256_keyed_with_googles_public_key_is_refused_before_any_key_is_fetched() {
    let server = jwks_server().await;
    let token = jws(
        &json!({"alg": "HS256", "kid": KID1}),
        &claims(),
        &EncodingKey::from_secret(KEY1_PUB_PEM.as_bytes()),
        Algorithm::HS256,
    );
    assert_eq!(
        verify_with(config(&server), &token).await.unwrap_err(),
        VerifyError::UnsupportedAlgorithm
    );
    assert_eq!(hits(&server, CERTS).await, 0);
}

#[tokio::test]
async fn every_algorithm_but_rs256_is_refused() {
    for alg in ["RS512", "PS256", "ES256", "EdDSA", "rs256", "HS512"] {
        let header = b64(format!(r#"{{"alg":"{alg}","kid":"{KID1}"}}"#).as_bytes());
        let token = format!("{header}.{}.AAAA", b64(b"{}"));
        assert_eq!(
            verify(&token).await.unwrap_err(),
            VerifyError::UnsupportedAlgorithm,
            "{alg}"
        );
    }
    let no_alg = format!(
        "{}.{}.AAAA",
        b64(format!(r#"{{"kid":"{KID1}"}}"#).as_bytes()),
        b64(b"{}")
    );
    assert_eq!(
        verify(&no_alg).await.unwrap_err(),
        VerifyError::UnsupportedAlgorithm
    );
}

#[tokio::test]
async fn a_missing_or_unknown_kid_is_an_unknown_key() {
    assert_eq!(
        verify(&sign(&claims(), KID2, &KEY2)).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    let no_kid = jws(&json!({"alg": "RS256"}), &claims(), &KEY1, Algorithm::RS256);
    assert_eq!(verify(&no_kid).await.unwrap_err(), VerifyError::UnknownKey);
    let numeric_kid = jws(
        &json!({"alg": "RS256", "kid": 7}),
        &claims(),
        &KEY1,
        Algorithm::RS256,
    );
    assert_eq!(
        verify(&numeric_kid).await.unwrap_err(),
        VerifyError::UnknownKey
    );
}

#[tokio::test]
async fn kids_with_path_or_sql_text_are_unknown_and_cause_no_refetch() {
    let server = jwks_server().await;
    let google = Google::new(config(&server)).unwrap();
    google.verifier().prefetch().await.unwrap();
    for kid in [
        "../../../etc/passwd",
        "x' OR '1'='1",
        "https://evil.example/keys",
        "a\u{0}b",
    ] {
        let token = sign(&claims(), kid, &KEY1);
        assert_eq!(
            google
                .verifier()
                .verify(&id_token(&token), now())
                .await
                .unwrap_err(),
            VerifyError::UnknownKey,
            "{kid}"
        );
    }
    assert_eq!(hits(&server, CERTS).await, 1, "only the prefetch");
}

#[tokio::test]
async fn jku_x5u_and_jwk_headers_are_ignored_and_never_fetched() {
    let server = jwks_server().await;
    let evil = format!("{}/evil/keys", server.uri());
    // Signed by key 2, offering key 2 inline and by URL, under Google's kid: the inline key must not be used.
    let attacker_jwk = crate::support::jwk(&KEY2, KID1);
    let header =
        json!({"alg": "RS256", "kid": KID1, "jku": evil, "x5u": evil, "jwk": attacker_jwk});
    let forged = jws(&header, &claims(), &KEY2, Algorithm::RS256);
    assert_eq!(
        verify_with(config(&server), &forged).await.unwrap_err(),
        VerifyError::BadSignature
    );
    // The same headers on a genuine token change nothing.
    let genuine = jws(&header, &claims(), &KEY1, Algorithm::RS256);
    assert!(verify_with(config(&server), &genuine).await.is_ok());
    assert_eq!(hits(&server, "/evil/keys").await, 0);
}

#[tokio::test]
async fn a_crit_header_is_refused() {
    let token = jws(
        &json!({"alg": "RS256", "kid": KID1, "crit": ["exp"]}),
        &claims(),
        &KEY1,
        Algorithm::RS256,
    );
    assert!(matches!(
        verify(&token).await.unwrap_err(),
        VerifyError::Malformed(_)
    ));
}

#[tokio::test]
async fn only_googles_two_issuer_spellings_are_accepted() {
    for iss in ["https://accounts.google.com", "accounts.google.com"] {
        assert!(
            verify(&signed(&with("iss", json!(iss)))).await.is_ok(),
            "{iss}"
        );
    }
    for iss in [
        "https://accounts.google.com/",
        "http://accounts.google.com",
        "https://evil.example",
        "accounts.google.com.evil.example",
        "HTTPS://ACCOUNTS.GOOGLE.COM",
        "",
    ] {
        assert_eq!(
            verify(&signed(&with("iss", json!(iss)))).await.unwrap_err(),
            VerifyError::WrongIssuer,
            "{iss}"
        );
    }
    assert_eq!(
        verify(&signed(&with("iss", Value::Null)))
            .await
            .unwrap_err(),
        VerifyError::BadClaim("iss")
    );
    assert_eq!(
        verify(&signed(&with("iss", json!(["accounts.google.com"]))))
            .await
            .unwrap_err(),
        VerifyError::BadClaim("iss")
    );
}

#[tokio::test]
async fn the_audience_must_be_exactly_this_servers_client() {
    assert!(
        verify(&signed(&with("aud", json!([CLIENT_ID]))))
            .await
            .is_ok()
    );
    for aud in [
        json!("other.apps.googleusercontent.com"),
        json!([CLIENT_ID, "other.apps.googleusercontent.com"]),
        json!(["other.apps.googleusercontent.com", CLIENT_ID]),
        json!([CLIENT_ID, CLIENT_ID]),
        json!([]),
        json!(ANDROID_ID),
    ] {
        assert_eq!(
            verify(&signed(&with("aud", aud.clone())))
                .await
                .unwrap_err(),
            VerifyError::WrongAudience,
            "{aud}"
        );
    }
    assert_eq!(
        verify(&signed(&with("aud", Value::Null)))
            .await
            .unwrap_err(),
        VerifyError::BadClaim("aud")
    );
    assert_eq!(
        verify(&signed(&with("aud", json!(5)))).await.unwrap_err(),
        VerifyError::BadClaim("aud")
    );
}

#[tokio::test]
async fn exp_and_iat_are_checked_with_the_leeway_both_ways() {
    let at = |iat: i64, exp: i64| {
        let mut c = claims();
        c["iat"] = json!(iat);
        c["exp"] = json!(exp);
        signed(&c)
    };
    // Expired 59 s ago: inside the 60 s leeway. 60 s ago: refused.
    assert!(verify(&at(NOW - 3600, NOW - 59)).await.is_ok());
    assert_eq!(
        verify(&at(NOW - 3600, NOW - 60)).await.unwrap_err(),
        VerifyError::Expired
    );
    assert_eq!(
        verify(&at(NOW - 7200, NOW - 3600)).await.unwrap_err(),
        VerifyError::Expired
    );
    // Issued 60 s in the future: inside the leeway. 61 s: refused.
    assert!(verify(&at(NOW + 60, NOW + 3660)).await.is_ok());
    assert_eq!(
        verify(&at(NOW + 61, NOW + 3661)).await.unwrap_err(),
        VerifyError::IssuedInFuture
    );
    // nbf in the future past the leeway.
    assert_eq!(
        verify(&signed(&with("nbf", json!(NOW + 120))))
            .await
            .unwrap_err(),
        VerifyError::IssuedInFuture
    );
    assert!(verify(&signed(&with("nbf", json!(NOW - 60)))).await.is_ok());
}

#[tokio::test]
async fn a_larger_configured_leeway_is_applied() {
    let server = jwks_server().await;
    let mut config = config(&server);
    config.leeway = std::time::Duration::from_secs(300);
    let mut c = claims();
    c["iat"] = json!(NOW - 3600);
    c["exp"] = json!(NOW - 299);
    assert!(verify_with(config, &signed(&c)).await.is_ok());
}

#[tokio::test]
async fn a_lifetime_over_24_hours_is_refused() {
    let mut c = claims();
    c["iat"] = json!(NOW - 60);
    c["exp"] = json!(NOW - 60 + 86_400);
    assert!(verify(&signed(&c)).await.is_ok());
    c["exp"] = json!(NOW - 60 + 86_401);
    assert_eq!(
        verify(&signed(&c)).await.unwrap_err(),
        VerifyError::LifetimeTooLong
    );
    c["exp"] = json!(NOW - 60);
    assert_eq!(
        verify(&signed(&c)).await.unwrap_err(),
        VerifyError::BadClaim("exp")
    );
}

#[tokio::test]
async fn missing_or_non_integer_times_are_bad_claims() {
    for (name, value) in [
        ("exp", Value::Null),
        ("iat", Value::Null),
        ("exp", json!((NOW + 3540).to_string())),
        ("iat", json!((NOW - 60).to_string())),
        ("exp", json!(1.8e9 + 3540.5)),
        ("iat", json!(true)),
        ("exp", json!(i64::MAX)),
        ("nbf", json!("soon")),
    ] {
        assert_eq!(
            verify(&signed(&with(name, value.clone())))
                .await
                .unwrap_err(),
            VerifyError::BadClaim(name),
            "{name}={value}"
        );
    }
}

#[tokio::test]
async fn the_subject_must_be_one_to_255_visible_characters() {
    assert!(
        verify(&signed(&with("sub", json!("1".repeat(255)))))
            .await
            .is_ok()
    );
    for sub in [
        Value::Null,
        json!(""),
        json!("1".repeat(256)),
        json!(12345),
        json!("a b"),
    ] {
        assert_eq!(
            verify(&signed(&with("sub", sub.clone())))
                .await
                .unwrap_err(),
            VerifyError::BadClaim("sub"),
            "{sub}"
        );
    }
}

#[tokio::test]
async fn azp_must_be_allowed_when_android_clients_are_configured() {
    let server = jwks_server().await;
    let mut allowed = config(&server);
    allowed.allowed_azp = vec![ANDROID_ID.into()];
    for azp in [json!(ANDROID_ID), json!(CLIENT_ID), Value::Null] {
        assert!(
            verify_with(allowed.clone(), &signed(&with("azp", azp.clone())))
                .await
                .is_ok(),
            "{azp}"
        );
    }
    assert_eq!(
        verify_with(
            allowed.clone(),
            &signed(&with("azp", json!("evil.apps.googleusercontent.com")))
        )
        .await
        .unwrap_err(),
        VerifyError::DisallowedAuthorizedParty
    );
    assert_eq!(
        verify_with(allowed, &signed(&with("azp", json!(7))))
            .await
            .unwrap_err(),
        VerifyError::BadClaim("azp")
    );
    // Without allowed_azp, azp is not checked.
    assert!(
        verify_with(config(&server), &signed(&with("azp", json!("anyone"))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn hd_must_match_when_a_hosted_domain_is_configured() {
    let server = jwks_server().await;
    let mut workspace = config(&server);
    workspace.hosted_domain = Some("example.com".into());
    let ok = verify_with(
        workspace.clone(),
        &signed(&with("hd", json!("example.com"))),
    )
    .await
    .unwrap();
    assert_eq!(ok.profile.hd.as_deref(), Some("example.com"));
    for hd in [
        Value::Null,
        json!("evil.com"),
        json!("example.com.evil.com"),
    ] {
        assert_eq!(
            verify_with(workspace.clone(), &signed(&with("hd", hd.clone())))
                .await
                .unwrap_err(),
            VerifyError::WrongHostedDomain,
            "{hd}"
        );
    }
    // Without the setting, any hd (or none) is fine.
    assert!(
        verify_with(config(&server), &signed(&with("hd", json!("other.org"))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn email_verified_accepts_booleans_and_their_strings_only() {
    for (value, expected) in [
        (json!(true), true),
        (json!("true"), true),
        (json!(false), false),
        (json!("false"), false),
        (Value::Null, false),
    ] {
        let v = verify(&signed(&with("email_verified", value.clone())))
            .await
            .unwrap();
        assert_eq!(v.profile.email_verified, expected, "{value}");
    }
    for value in [json!("yes"), json!(1), json!("TRUE")] {
        assert_eq!(
            verify(&signed(&with("email_verified", value.clone())))
                .await
                .unwrap_err(),
            VerifyError::BadClaim("email_verified"),
            "{value}"
        );
    }
    assert_eq!(
        verify(&signed(&with("email", json!("not-an-email"))))
            .await
            .unwrap_err(),
        VerifyError::BadClaim("email")
    );
    assert_eq!(
        verify(&signed(&with("name", json!(["x"]))))
            .await
            .unwrap_err(),
        VerifyError::BadClaim("name")
    );
}

#[tokio::test]
async fn malformed_tokens_are_refused_with_a_malformed_reason() {
    let good = signed(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let header_ok = parts[0];
    let cases = [
        // Not base64 (a length no base64 text has).
        format!("a.{}.{}", parts[1], parts[2]),
        {
            // A payload that is not base64, validly signed (the signature is checked before the payload is read).
            let message = format!("{header_ok}.a");
            let sig =
                jsonwebtoken::crypto::sign(message.as_bytes(), &KEY1, Algorithm::RS256).unwrap();
            format!("{message}.{sig}")
        },
        // Not JSON.
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
    ];
    for token in cases {
        assert!(
            matches!(verify(&token).await.unwrap_err(), VerifyError::Malformed(_)),
            "{token}"
        );
    }
    // A validly signed payload that is not a JSON object, or repeats a claim.
    for payload in [b"not json".as_slice(), b"[1]", br#"{"sub":"1","sub":"2"}"#] {
        let message = format!(
            "{}.{}",
            b64(br#"{"alg":"RS256","kid":"0123456789abcdef0123456789abcdef01234567"}"#),
            b64(payload)
        );
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &KEY1, Algorithm::RS256).unwrap();
        assert!(matches!(
            verify(&format!("{message}.{sig}")).await.unwrap_err(),
            VerifyError::Malformed(_)
        ));
    }
    // Two segments, and 1 MB, never even become an IdToken.
    assert!(IdToken::parse(&format!("{}.{}", parts[0], parts[1])).is_err());
    assert!(IdToken::parse(&format!("{good}{}", "A".repeat(1 << 20))).is_err());
}

#[tokio::test]
async fn refusals_never_carry_the_token_or_its_claims() {
    let token = signed(&with("aud", json!("canary-audience")));
    let err = verify(&token).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("canary") && !shown.contains(&token[..20]) && !shown.contains(SUB));
}

async fn verify_exchanged_with(
    config: GoogleConfig,
    token: &str,
) -> Result<VerifiedIdToken, VerifyError> {
    Google::new(config)
        .unwrap()
        .verifier()
        .verify_exchanged(&id_token(token), now())
        .await
}

async fn verify_exchanged(token: &str) -> Result<VerifiedIdToken, VerifyError> {
    let server = jwks_server().await;
    verify_exchanged_with(config(&server), token).await
}

#[tokio::test]
async fn a_token_endpoint_id_token_is_accepted_with_a_key_not_yet_published_or_keys_unavailable() {
    // Signed by a key the JWKS does not list (a rotation in progress): a Bearer is refused, Google's own answer
    // over TLS is not.
    let unpublished = sign(&claims(), KID2, &KEY2);
    assert_eq!(
        verify(&unpublished).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    let verified = verify_exchanged(&unpublished).await.unwrap();
    assert_eq!(verified.subject.as_str(), SUB);
    // The JWKS endpoint is down (500): the same.
    let down = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path(CERTS))
        .respond_with(wiremock::ResponseTemplate::new(500))
        .mount(&down)
        .await;
    assert!(
        verify_exchanged_with(config(&down), &signed(&claims()))
            .await
            .is_ok()
    );
    assert_eq!(
        verify_with(config(&down), &signed(&claims()))
            .await
            .unwrap_err(),
        VerifyError::KeysUnavailable
    );
}

#[tokio::test]
async fn a_token_endpoint_id_token_tolerates_iat_in_the_future_but_not_expiry() {
    let at = |iat: i64, exp: i64| {
        let mut c = claims();
        c["iat"] = json!(iat);
        c["exp"] = json!(exp);
        signed(&c)
    };
    // Google's clock 300 s ahead of ours (the fake's clock_offset_secs = 300): fine from the token endpoint.
    assert!(verify_exchanged(&at(NOW + 300, NOW + 3900)).await.is_ok());
    assert_eq!(
        verify(&at(NOW + 300, NOW + 3900)).await.unwrap_err(),
        VerifyError::IssuedInFuture
    );
    // exp is still required (OIDC Core §3.1.3.7 step 9), with the same leeway.
    assert_eq!(
        verify_exchanged(&at(NOW - 3600, NOW - 60))
            .await
            .unwrap_err(),
        VerifyError::Expired
    );
    // And the lifetime bound.
    assert_eq!(
        verify_exchanged(&at(NOW, NOW + 2 * 86_400))
            .await
            .unwrap_err(),
        VerifyError::LifetimeTooLong
    );
}

#[tokio::test]
async fn a_token_endpoint_id_token_still_needs_a_good_signature_when_its_key_is_known_and_the_right_claims()
 {
    assert_eq!(
        verify_exchanged(&sign(&claims(), KID1, &KEY2))
            .await
            .unwrap_err(),
        VerifyError::BadSignature
    );
    assert_eq!(
        verify_exchanged(&signed(&with("aud", json!("another-client"))))
            .await
            .unwrap_err(),
        VerifyError::WrongAudience
    );
    assert_eq!(
        verify_exchanged(&signed(&with("iss", json!("https://evil.example"))))
            .await
            .unwrap_err(),
        VerifyError::WrongIssuer
    );
    assert_eq!(
        verify_exchanged(&signed(&with("sub", Value::Null)))
            .await
            .unwrap_err(),
        VerifyError::BadClaim("sub")
    );
    // No `kid`, or one shaped like a path: no key rotation in progress, so no leniency.
    let no_kid = jws(&json!({"alg": "RS256"}), &claims(), &KEY2, Algorithm::RS256);
    assert_eq!(
        verify_exchanged(&no_kid).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    let path_kid = jws(
        &json!({"alg": "RS256", "kid": "../../etc/passwd"}),
        &claims(),
        &KEY2,
        Algorithm::RS256,
    );
    assert_eq!(
        verify_exchanged(&path_kid).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    // Another algorithm in the header: refused before anything else, as for a Bearer.
    let token = signed(&claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = b64(&serde_json::to_vec(&json!({"alg": "none", "kid": KID1})).unwrap());
    assert_eq!(
        verify_exchanged(&parts.join(".")).await.unwrap_err(),
        VerifyError::UnsupportedAlgorithm
    );
}
