//! The verifier with a warm JWKS cache against a bare `jsonwebtoken` verification of the same token.
//!
//! `cargo bench -p offline-access-google -- --quick`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

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
    let verifier = Google::new(config).unwrap().verifier();
    rt.block_on(verifier.prefetch()).unwrap();
    let id_token = IdToken::parse(&token).unwrap();

    let decoding = DecodingKey::from_rsa_components(&rsa.n, &rsa.e).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&["accounts.google.com", "https://accounts.google.com"]);

    let mut group = c.benchmark_group("id_token");
    group.bench_function("verifier_warm_cache", |b| {
        b.iter(|| {
            rt.block_on(verifier.verify(black_box(&id_token), now))
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
