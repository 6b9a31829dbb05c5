//! ID-token verification through the project's verifier (warm JWKS cache) against bare RS256 verifications of
//! the same token with the same aws-lc-rs backend:
//! - `verifier_first_use`: the verifier with remembering off — header and claims parsed, key looked up, RSA
//!   verified, every claim checked (what every new token costs);
//! - `verifier_first_use_remembering`: a token not seen before with remembering on (as a server meets a new
//!   Bearer: digest, miss, full verification, insert), over 64 tokens cycling through a one-entry cache;
//! - `verifier_remembered`: the same token again with remembering on (digest, lookup, key and time checks);
//! - `bare_rs256_parsed_key`: aws-lc-rs `ParsedPublicKey::verify_sig` of the signature alone (the floor);
//! - `jsonwebtoken_decode`: `jsonwebtoken::decode` with its usual validation (what most Rust services do).
//!
//! `cargo bench -p offline-access-google -- --quick`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use offline_access_domain::{IdToken, IdTokenVerifier};
use offline_access_google::{Google, GoogleConfig};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY_PEM: &str = include_str!("../tests/keys/google-1.pem");
const KID: &str = "0123456789abcdef0123456789abcdef01234567";
const CLIENT_ID: &str = "1234-web.apps.googleusercontent.com";

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = EncodingKey::from_rsa_pem(KEY_PEM.as_bytes()).unwrap();
    let AlgorithmParameters::RSA(rsa) = Jwk::from_encoding_key(&key, Algorithm::RS256)
        .unwrap()
        .algorithm
    else {
        unreachable!("an RSA key")
    };
    let jwks = json!({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID, "n": rsa.n, "e": rsa.e}]});
    let server = rt.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/oauth2/v3/certs"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("cache-control", "max-age=21600")
                    .set_body_json(&jwks),
            )
            .mount(&server)
            .await;
        server
    });

    let now = OffsetDateTime::now_utc();
    let claims = json!({
        "iss": "https://accounts.google.com", "aud": CLIENT_ID, "azp": "android",
        "sub": "110169484474386276334", "email": "alice@example.com", "email_verified": true,
        "name": "Alice Example", "iat": now.unix_timestamp() - 60, "exp": now.unix_timestamp() + 3540
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();

    let mut config = GoogleConfig::new(CLIENT_ID.into(), SecretString::from("secret"));
    config.base_url = Some(server.uri());
    let remembering = Google::new(config.clone()).unwrap().verifier();
    rt.block_on(remembering.prefetch()).unwrap();
    config.verified_token_cache = 1;
    let forgetful = Google::new(config.clone()).unwrap().verifier();
    rt.block_on(forgetful.prefetch()).unwrap();
    config.verified_token_cache = 0;
    let first_use = Google::new(config).unwrap().verifier();
    rt.block_on(first_use.prefetch()).unwrap();
    let id_token = IdToken::parse(&token).unwrap();
    let fresh_tokens: Vec<IdToken> = (0..64)
        .map(|i| {
            let mut c = claims.clone();
            c["name"] = json!(format!("User {i}"));
            IdToken::parse(&jsonwebtoken::encode(&header, &c, &key).unwrap()).unwrap()
        })
        .collect();

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parsed = RsaPublicKeyComponents {
        n: b64.decode(&rsa.n).unwrap(),
        e: b64.decode(&rsa.e).unwrap(),
    }
    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
    .unwrap();
    let (message, signature) = token.rsplit_once('.').unwrap();
    let signature = b64.decode(signature).unwrap();

    let decoding = DecodingKey::from_rsa_components(&rsa.n, &rsa.e).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&["accounts.google.com", "https://accounts.google.com"]);

    let mut group = c.benchmark_group("id_token");
    // Async iterations run inside one `block_on` per batch, as a server's handler awaits the verifier.
    group.bench_function("verifier_first_use", |b| {
        b.to_async(&rt)
            .iter(|| async { first_use.verify(black_box(&id_token), now).await.unwrap() });
    });
    let mut next = 0usize;
    group.bench_function("verifier_first_use_remembering", |b| {
        b.to_async(&rt).iter(|| {
            next = (next + 1) % fresh_tokens.len();
            let token = &fresh_tokens[next];
            let verifier = &forgetful;
            async move { verifier.verify(black_box(token), now).await.unwrap() }
        });
    });
    group.bench_function("verifier_remembered", |b| {
        b.to_async(&rt)
            .iter(|| async { remembering.verify(black_box(&id_token), now).await.unwrap() });
    });
    group.bench_function("bare_rs256_parsed_key", |b| {
        b.iter(|| {
            parsed
                .verify_sig(black_box(message.as_bytes()), black_box(&signature))
                .unwrap()
        });
    });
    group.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &decoding, &validation)
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
