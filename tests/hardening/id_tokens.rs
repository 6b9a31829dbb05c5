//! Cases 4 and 5: forged and invalid ID tokens, as a Bearer on `/v1/me` and inside a token response, and a
//! refresh whose ID token names someone else.

use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
use fake_google::{CodeRequest, Endpoint, Fault};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use offline_access_tests::jwt::{b64, sign_rs256, signing_input};
use offline_access_tests::{
    ATTACKER_KEY_DER, ATTACKER_KEY_PEM, TestApp, TestOptions, captured_logs,
};
use reqwest::Method;
use serde_json::{Value, json};

const EVIL_CLIENT: &str = "999999999999-evil.apps.googleusercontent.com";

/// One forged or invalid token, what the Bearer check must answer and the reason the log must name.
struct Forgery {
    name: &'static str,
    token: String,
    /// Status and code for it as a Bearer.
    bearer: (u16, &'static str),
    /// The typed reason logged for it (never in the body).
    reason: &'static str,
}

fn forgery(name: &'static str, token: String, reason: &'static str) -> Forgery {
    Forgery {
        name,
        token,
        bearer: (401, "invalid_token"),
        reason,
    }
}

/// The attacker's public key as a JWK (for the `jwk` header).
fn attacker_jwk(kid: &str) -> Value {
    let key = RsaKeyPair::from_pkcs8(ATTACKER_KEY_DER).unwrap();
    let public = key.public_key();
    json!({
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero()),
    })
}

fn with(claims: &Value, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = claims.clone();
    edit(claims.as_object_mut().unwrap());
    claims
}

/// Every forgery of the list, for `sub`/`email` (whose genuine token would be accepted).
async fn forgeries(app: &TestApp, sub: &str, email: &str) -> Vec<Forgery> {
    let kid = app.fake.control().current_kid();
    let claims = app.google_claims(sub, email);
    let now = app.fake.control().now_unix();
    let rs256 = |kid: &str| json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
    let google = |claims: Value| app.sign_as_google(&claims);

    // Signed with the attacker's key under Google's kid, with jsonwebtoken.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.clone());
    let other_key = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(ATTACKER_KEY_PEM).unwrap(),
    )
    .unwrap();
    // HS256 keyed with Google's published certificate PEM (the classic algorithm confusion).
    let certs: Value = reqwest::get(format!("{}/oauth2/v1/certs", app.fake.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pem = certs[&kid].as_str().unwrap().to_owned();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hs256_pem =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(pem.as_bytes())).unwrap();
    let jwks: Value = reqwest::get(format!("{}/oauth2/v3/certs", app.fake.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
    let hs256_n =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(n.as_bytes())).unwrap();

    let none_input = signing_input(&json!({"alg": "none", "kid": kid}), &claims);
    let attacker_base = format!("{}/attacker", app.fake.base_url());
    let jku_header = json!({
        "alg": "RS256", "kid": kid, "typ": "JWT",
        "jku": format!("{attacker_base}/jwks.json"),
        "x5u": format!("{attacker_base}/cert.pem"),
        "jwk": attacker_jwk(&kid),
    });
    let long_sub = "1".repeat(256);

    vec![
        forgery(
            "another RSA key under Google's kid",
            other_key,
            "bad_signature",
        ),
        forgery(
            "alg none, empty signature",
            format!("{none_input}."),
            "malformed",
        ),
        forgery(
            "alg none, any signature",
            format!("{none_input}.c2ln"),
            "unsupported_algorithm",
        ),
        forgery(
            "alg None (case)",
            format!(
                "{}.c2ln",
                signing_input(&json!({"alg": "None", "kid": kid}), &claims)
            ),
            "unsupported_algorithm",
        ),
        forgery(
            "HS256 keyed with Google's certificate PEM",
            hs256_pem,
            "unsupported_algorithm",
        ),
        forgery(
            "HS256 keyed with Google's modulus",
            hs256_n,
            "unsupported_algorithm",
        ),
        forgery(
            "RS512 under Google's kid",
            sign_rs256(
                ATTACKER_KEY_DER,
                &json!({"alg": "RS512", "kid": kid}),
                &claims,
            ),
            "unsupported_algorithm",
        ),
        forgery(
            "no kid",
            sign_rs256(ATTACKER_KEY_DER, &json!({"alg": "RS256"}), &claims),
            "unknown_key",
        ),
        forgery(
            "kid with a path",
            sign_rs256(ATTACKER_KEY_DER, &rs256("../../../../etc/passwd"), &claims),
            "unknown_key",
        ),
        forgery(
            "kid with SQL",
            sign_rs256(ATTACKER_KEY_DER, &rs256("x' OR '1'='1' --"), &claims),
            "unknown_key",
        ),
        forgery(
            "kid with a URL",
            sign_rs256(
                ATTACKER_KEY_DER,
                &rs256(&format!("{attacker_base}/key")),
                &claims,
            ),
            "unknown_key",
        ),
        forgery(
            "numeric kid",
            sign_rs256(
                ATTACKER_KEY_DER,
                &json!({"alg": "RS256", "kid": 1}),
                &claims,
            ),
            "unknown_key",
        ),
        forgery(
            "jku, x5u and jwk of the attacker",
            sign_rs256(ATTACKER_KEY_DER, &jku_header, &claims),
            "bad_signature",
        ),
        forgery(
            "crit header",
            google(claims.clone()).replacen(
                &b64(rs256(&kid).to_string().as_bytes()),
                &b64(json!({"alg":"RS256","kid":kid,"crit":["exp"]})
                    .to_string()
                    .as_bytes()),
                1,
            ),
            "malformed",
        ),
        forgery(
            "iss with a trailing slash",
            google(with(&claims, |c| {
                c.insert("iss".into(), json!("https://accounts.google.com/"));
            })),
            "wrong_issuer",
        ),
        forgery(
            "iss over http",
            google(with(&claims, |c| {
                c.insert("iss".into(), json!("http://accounts.google.com"));
            })),
            "wrong_issuer",
        ),
        forgery(
            "iss another host",
            google(with(&claims, |c| {
                c.insert(
                    "iss".into(),
                    json!("https://accounts.google.com.evil.example"),
                );
            })),
            "wrong_issuer",
        ),
        forgery(
            "iss missing",
            google(with(&claims, |c| {
                c.remove("iss");
            })),
            "bad_claim",
        ),
        forgery(
            "aud another client",
            google(with(&claims, |c| {
                c.insert("aud".into(), json!(EVIL_CLIENT));
            })),
            "wrong_audience",
        ),
        forgery(
            "aud a list with an untrusted extra",
            google(with(&claims, |c| {
                let ours = c["aud"].clone();
                c.insert("aud".into(), json!([ours, EVIL_CLIENT]));
            })),
            "wrong_audience",
        ),
        forgery(
            "aud missing",
            google(with(&claims, |c| {
                c.remove("aud");
            })),
            "bad_claim",
        ),
        forgery(
            "exp past the leeway",
            google(with(&claims, |c| {
                c.insert("iat".into(), json!(now - 3600));
                c.insert("exp".into(), json!(now - 120));
            })),
            "expired",
        ),
        forgery(
            "iat in the future past the leeway",
            google(with(&claims, |c| {
                c.insert("iat".into(), json!(now + 600));
                c.insert("exp".into(), json!(now + 4200));
            })),
            "issued_in_future",
        ),
        forgery(
            "lifetime over 24 h",
            google(with(&claims, |c| {
                c.insert("exp".into(), json!(now + 25 * 3600));
            })),
            "lifetime_too_long",
        ),
        forgery(
            "iat missing",
            google(with(&claims, |c| {
                c.remove("iat");
            })),
            "bad_claim",
        ),
        forgery(
            "exp missing",
            google(with(&claims, |c| {
                c.remove("exp");
            })),
            "bad_claim",
        ),
        forgery(
            "exp a string",
            google(with(&claims, |c| {
                c.insert("exp".into(), json!((now + 3600).to_string()));
            })),
            "bad_claim",
        ),
        forgery(
            "iat a float",
            google(with(&claims, |c| {
                c.insert("iat".into(), json!(1.5));
            })),
            "bad_claim",
        ),
        forgery(
            "sub missing",
            google(with(&claims, |c| {
                c.remove("sub");
            })),
            "bad_claim",
        ),
        forgery(
            "sub empty",
            google(with(&claims, |c| {
                c.insert("sub".into(), json!(""));
            })),
            "bad_claim",
        ),
        forgery(
            "sub over 255 chars",
            google(with(&claims, |c| {
                c.insert("sub".into(), json!(long_sub));
            })),
            "bad_claim",
        ),
        forgery(
            "sub a number",
            google(with(&claims, |c| {
                c.insert("sub".into(), json!(12345));
            })),
            "bad_claim",
        ),
        forgery(
            "two segments",
            signing_input(&rs256(&kid), &claims),
            "malformed",
        ),
        forgery(
            "bad base64",
            format!(
                "{}.!!!not-base64!!!.c2ln",
                b64(rs256(&kid).to_string().as_bytes())
            ),
            "malformed",
        ),
        forgery(
            "header not JSON",
            format!(
                "{}.{}.c2ln",
                b64(b"not json"),
                b64(claims.to_string().as_bytes())
            ),
            "malformed",
        ),
        forgery(
            "payload not JSON",
            format!(
                "{}.{}",
                signing_input(&rs256(&kid), &json!(null))
                    .split('.')
                    .next()
                    .unwrap()
                    .to_owned()
                    + "."
                    + &b64(b"not json"),
                "c2ln"
            ),
            "malformed",
        ),
    ]
}

fn assert_reasons_logged(forgeries: &[Forgery]) {
    let logs = captured_logs();
    for f in forgeries {
        assert!(
            logs.contains(f.reason),
            "reason {} of {} not logged",
            f.reason,
            f.name
        );
    }
}

/// What a 401 may say of a Bearer that is there and shaped like a token: malformed, expired, another audience and an
/// unknown key are told apart; every other signature or claim failure reads the same.
const BEARER_CATEGORIES: [&str; 5] = [
    "is malformed",
    "has expired",
    "issued for another client ID",
    "key Google does not publish",
    "signature or claims are not valid",
];

#[tokio::test]
async fn forged_and_invalid_id_tokens_are_refused_as_bearer_with_a_typed_reason_only_in_the_log() {
    let app = TestApp::spawn().await;
    let signed_in = app.sign_in("victim@example.com").await;
    let sub = signed_in["user"]["sub"].as_str().unwrap().to_owned();
    let genuine = app.sign_as_google(&app.google_claims(&sub, "victim@example.com"));
    let me = |token: String| app.authed(Method::GET, "/v1/me", &token).send();
    assert_eq!(
        me(genuine).await.unwrap().status(),
        200,
        "the genuine token works"
    );
    let before = app.snapshot(&sub).await.unwrap();
    let forgeries = forgeries(&app, &sub, "victim@example.com").await;
    let kid = app.fake.control().current_kid();
    let mut sentences = std::collections::HashMap::<_, std::collections::HashSet<String>>::new();

    for f in &forgeries {
        let response = me(f.token.clone()).await.unwrap();
        let status = response.status().as_u16();
        let www = response.headers().get("www-authenticate").cloned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            f.bearer,
            "{}",
            f.name
        );
        assert!(www.is_some(), "{}: no WWW-Authenticate", f.name);
        assert_eq!(body.as_object().unwrap().len(), 2, "{}: {body}", f.name);
        // The body says which of a few categories failed (docs/security.md, "What a 401 says"), never the typed
        // reason, the claim or the key id.
        let message = body["message"].as_str().unwrap();
        let category = BEARER_CATEGORIES
            .iter()
            .find(|words| message.contains(*words))
            .unwrap_or_else(|| panic!("{}: {message}", f.name));
        assert!(!message.contains(&kid), "{}: kid in the body", f.name);
        sentences
            .entry(*category)
            .or_default()
            .insert(message.to_owned());
        let www = www.unwrap();
        assert!(
            www.to_str()
                .unwrap()
                .ends_with(&format!("error_description=\"{message}\"")),
            "{}: {www:?}",
            f.name
        );
    }
    // One sentence per category, whatever the check inside it that failed (which claim, which signature flaw);
    // the forgeries reach every category.
    for (category, messages) in &sentences {
        assert_eq!(messages.len(), 1, "{category}: {messages:?}");
    }
    assert_eq!(sentences.len(), BEARER_CATEGORIES.len(), "{sentences:?}");
    assert_reasons_logged(&forgeries);
    // The attacker's jku/x5u were never fetched; nothing was stored or changed.
    assert_eq!(app.calls_to("other").await, 0);
    assert_eq!(app.snapshot(&sub).await.unwrap(), before);
    assert_eq!(app.stored_count().await, 1);
    assert!(forgeries.len() >= 35);
}

#[tokio::test]
async fn a_megabyte_bearer_is_refused_and_the_server_stays_up() {
    let app = TestApp::spawn().await;
    let huge = format!("{}.{}.{}", "a".repeat(100), "b".repeat(1 << 20), "c");
    let response = app
        .authed(Method::GET, "/v1/me", &huge)
        .send()
        .await
        .unwrap();
    // hyper refuses a header section this large before any handler runs.
    assert_eq!(response.status(), 431);
    let over_verifier_limit = format!("{}.{}.c2ln", b64(b"{}"), "b".repeat(20 * 1024));
    let response = app
        .authed(Method::GET, "/v1/me", &over_verifier_limit)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        app.calls_to("certs").await,
        0,
        "an oversized token caused a key fetch"
    );
    let health = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn forged_id_tokens_inside_a_token_response_reject_the_sign_in_and_store_nothing() {
    let app = TestApp::spawn().await;
    let signed_in = app.sign_in("target@example.com").await;
    let sub = signed_in["user"]["sub"].as_str().unwrap().to_owned();
    let before = app.snapshot(&sub).await.unwrap();
    let forgeries = forgeries(&app, &sub, "target@example.com").await;
    let exchanges_before = app.calls_to("token").await;

    // From the token endpoint (over this server's TLS connection), `iat` in the future is tolerated (OIDC Core
    // §3.1.3.7 step 10): that one is accepted there, as `e2e integrity` shows with Google's clock ahead.
    let forgeries: Vec<_> = forgeries
        .into_iter()
        .filter(|f| f.name != "iat in the future past the leeway")
        .collect();
    for f in &forgeries {
        app.fake
            .control()
            .add_fault(Fault::status(Endpoint::Token, 200).with_body(json!({
                "access_token": "ya29.a0forged-access-token",
                "expires_in": 3599,
                "refresh_token": "1//0forged-refresh-token",
                "scope": "openid https://www.googleapis.com/auth/drive.appdata",
                "token_type": "Bearer",
                "id_token": f.token,
            })))
            .await
            .unwrap();
        let minted = app.mint_code(CodeRequest::new("target@example.com")).await;
        let response = app.post_authcode(&minted.code).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        let code = body["error"].as_str().unwrap().to_owned();
        // A token that is not even shaped like a JWS (the ID-token newtype refuses it while parsing Google's
        // answer) is a broken upstream answer: 502 `upstream_error`. Anything well-formed that fails a check: 502
        // `upstream_invalid_id_token` — never 401 with a Bearer challenge, since the app sent no Bearer.
        let expected =
            if ["alg none, empty signature", "two segments", "bad base64"].contains(&f.name) {
                (502, "upstream_error")
            } else {
                (502, "upstream_invalid_id_token")
            };
        assert_eq!((status, code.as_str()), expected, "{}", f.name);
    }

    assert_eq!(
        app.calls_to("token").await - exchanges_before,
        forgeries.len(),
        "exactly one exchange per attempt, never retried"
    );
    assert_eq!(
        app.snapshot(&sub).await.unwrap(),
        before,
        "the stored credential changed"
    );
    assert_eq!(app.stored_count().await, 1);
    assert_eq!(app.calls_to("other").await, 0);
    assert!(!offline_access_tests::contains(
        &app.store_bytes(),
        "forged"
    ));
}

#[tokio::test]
async fn an_unknown_kid_causes_exactly_one_rate_limited_key_refetch() {
    let app = TestApp::spawn().await;
    let signed_in = app.sign_in("kid@example.com").await;
    let sub = signed_in["user"]["sub"].as_str().unwrap().to_owned();
    let claims = app.google_claims(&sub, "kid@example.com");
    let fetches_before = app.calls_to("certs").await;
    assert_eq!(fetches_before, 1, "keys fetched once for the sign-in");

    for kid in [
        "0123456789abcdef0123456789abcdef01234567",
        "89abcdef0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210fedcba98",
    ] {
        let token = sign_rs256(
            ATTACKER_KEY_DER,
            &json!({"alg": "RS256", "kid": kid}),
            &claims,
        );
        let response = app
            .authed(Method::GET, "/v1/me", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{kid}");
    }

    assert_eq!(app.calls_to("certs").await, fetches_before + 1);
    // A genuine token still verifies from the cache.
    let genuine = app.sign_as_google(&claims);
    let response = app
        .authed(Method::GET, "/v1/me", &genuine)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.calls_to("certs").await, fetches_before + 1);
}

#[tokio::test]
async fn jku_x5u_and_jwk_headers_on_a_genuine_token_are_ignored_and_never_fetched() {
    let app = TestApp::spawn().await;
    let signed_in = app.sign_in("headers@example.com").await;
    let sub = signed_in["user"]["sub"].as_str().unwrap().to_owned();
    let attacker_base = format!("{}/attacker", app.fake.base_url());
    let header = json!({
        "alg": "RS256", "kid": app.fake.control().current_kid(), "typ": "JWT",
        "jku": format!("{attacker_base}/jwks.json"),
        "x5u": format!("{attacker_base}/cert.pem"),
        "jwk": attacker_jwk("attacker"),
    });
    let token = sign_rs256(
        offline_access_tests::FAKE_GOOGLE_KEY_DER,
        &header,
        &app.google_claims(&sub, "headers@example.com"),
    );

    let response = app
        .authed(Method::GET, "/v1/me", &token)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(
        app.calls_to("other").await,
        0,
        "a URL from the token was fetched"
    );
}

#[tokio::test]
async fn azp_outside_allowed_azp_and_a_hosted_domain_mismatch_are_refused_as_bearer_and_in_a_token_response()
 {
    let app = TestApp::spawn_with_options(TestOptions {
        allowed_azp: vec![fake_google::ANDROID_CLIENT_ID.to_owned()],
        hosted_domain: Some("example.com".to_owned()),
        ..TestOptions::default()
    })
    .await;
    let minted = app
        .mint_code(CodeRequest {
            hd: Some("example.com".into()),
            ..CodeRequest::new("worker@example.com").azp(fake_google::ANDROID_CLIENT_ID)
        })
        .await;
    assert_eq!(app.post_authcode(&minted.code).await.status(), 200);
    let sub = minted.sub.clone();
    let before = app.snapshot(&sub).await.unwrap();
    let good = with(&app.google_claims(&sub, "worker@example.com"), |c| {
        c.insert("azp".into(), json!(fake_google::ANDROID_CLIENT_ID));
        c.insert("hd".into(), json!("example.com"));
    });
    assert_eq!(
        app.authed(Method::GET, "/v1/me", &app.sign_as_google(&good))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let bad = [
        (
            "azp of another app",
            with(&good, |c| {
                c.insert("azp".into(), json!(EVIL_CLIENT));
            }),
            "disallowed_azp",
        ),
        (
            "hd missing",
            with(&good, |c| {
                c.remove("hd");
            }),
            "wrong_hd",
        ),
        (
            "hd another domain",
            with(&good, |c| {
                c.insert("hd".into(), json!("evil.example"));
            }),
            "wrong_hd",
        ),
        (
            "hd a suffix",
            with(&good, |c| {
                c.insert("hd".into(), json!("example.com.evil.example"));
            }),
            "wrong_hd",
        ),
    ];
    let exchanges_before = app.calls_to("token").await;
    for (name, claims, reason) in &bad {
        let token = app.sign_as_google(claims);
        let response = app
            .authed(Method::GET, "/v1/me", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{name} as Bearer");
        app.fake
            .control()
            .add_fault(Fault::status(Endpoint::Token, 200).with_body(json!({
                "access_token": "ya29.a0forged", "expires_in": 3599, "refresh_token": "1//0forged",
                "scope": "openid", "token_type": "Bearer", "id_token": token,
            })))
            .await
            .unwrap();
        let code = app.mint_code(CodeRequest::new("worker@example.com")).await;
        let response = app.post_authcode(&code.code).await;
        assert_eq!(response.status(), 502, "{name} in a token response");
        assert!(captured_logs().contains(reason), "{reason}");
    }
    assert_eq!(app.calls_to("token").await - exchanges_before, bad.len());
    assert_eq!(app.snapshot(&sub).await.unwrap(), before);
    assert_eq!(app.stored_count().await, 1);
}

#[tokio::test]
async fn a_refresh_whose_id_token_names_another_sub_iss_or_aud_never_changes_the_stored_identity() {
    let app = TestApp::spawn().await;
    let signed_in = app.sign_in("keep@example.com").await;
    let sub = signed_in["user"]["sub"].as_str().unwrap().to_owned();
    let bearer = app.id_token("keep@example.com").await;
    let genuine = app.google_claims(&sub, "keep@example.com");
    let variants = [
        (
            "another sub",
            with(&genuine, |c| {
                c.insert("sub".into(), json!("111111111111111111111"));
                c.insert("email".into(), json!("attacker@example.com"));
            }),
        ),
        (
            "another iss",
            with(&genuine, |c| {
                c.insert("iss".into(), json!("https://evil.example"));
            }),
        ),
        (
            "another aud",
            with(&genuine, |c| {
                c.insert("aud".into(), json!(EVIL_CLIENT));
            }),
        ),
    ];
    for (name, claims) in &variants {
        assert!(app.fake.control().expire_user(&sub).await);
        let before = app.snapshot(&sub).await.unwrap();
        app.fake
            .control()
            .add_fault(Fault::status(Endpoint::Token, 200).with_body(json!({
                "access_token": "ya29.a0attacker-access", "expires_in": 3599,
                "scope": "openid https://www.googleapis.com/auth/drive.appdata", "token_type": "Bearer",
                "id_token": app.sign_as_google(claims),
            })))
            .await
            .unwrap();
        let refreshes_before = app.calls_to("token").await;
        let drive_before = app.calls_to("drive").await;
        // The cached access token still looks fresh here but the fake expired it: Drive answers 401, the service
        // refreshes once and gets the forged answer.
        let response = app
            .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
            .send()
            .await
            .unwrap();
        // The answer came from the token endpoint for this server's refresh token: its tokens belong to this
        // grant and are used (here the access token is one the fake never issued, so Drive refuses it: 502);
        // the identity its ID token names is never taken.
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (502, "upstream_error"),
            "{name}"
        );
        assert_eq!(app.calls_to("token").await - refreshes_before, 1, "{name}");
        let after = app.snapshot(&sub).await.unwrap();
        assert_eq!(after.email, before.email, "{name}: the identity changed");
        assert_eq!(after.email.as_deref(), Some("keep@example.com"));
        assert_eq!(
            after.refresh_token, before.refresh_token,
            "{name}: the refresh token changed"
        );
        assert_eq!(after.consent, "active", "{name}");
        assert_eq!(
            app.calls_to("drive").await - drive_before,
            2,
            "{name}: the 401 call and one retry with the refreshed token"
        );
    }
    // The fault gone, a genuine refresh works and the identity is still the user's.
    let response = app
        .authed(Method::GET, "/v1/me/drive/appfolder", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let after = app.snapshot(&sub).await.unwrap();
    assert_eq!(after.email.as_deref(), Some("keep@example.com"));
    assert!(after.refresh_token.is_some());
}
