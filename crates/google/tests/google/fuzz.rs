//! Fuzz target (issue 5): JWT parsing in the ID-token verifier. A genuine Google ID token is mutated (bytes flipped,
//! truncated, spliced, segments replaced, swapped or duplicated, hostile headers, claims changed under the old
//! signature or re-signed); the verifier must never panic, must accept the genuine token, must refuse every
//! mutation that is not re-signed, and must report a re-signed token's own subject. 256 cases by default;
//! `just fuzz` runs it with `PROPTEST_CASES` in the tens of thousands.

use offline_access_domain::{IdToken, IdTokenVerifier};
use offline_access_google::Google;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

use crate::support::{KEY1, KID1, SUB, b64, claims, config, jwks_server, now, sign};

#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    None,
    Flip { at: usize, xor: u8 },
    Truncate { at: usize },
    Insert { at: usize, text: String },
    Segment { index: usize, bytes: Vec<u8> },
    Swap { a: usize, b: usize },
    Duplicate { index: usize },
    Header { header: Value },
    Claim { name: String, value: Value },
    ResignedClaim { name: String, value: Value },
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::from(i64::MAX)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(1.0e300)),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from(SUB)),
        Just(Value::from(KID1)),
        Just(Value::from("RS256")),
        Just(Value::from("none")),
        Just(Value::from("https://accounts.google.com")),
        Just(Value::from("x".repeat(300))),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(claim_name(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn claim_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![
            Just("iss"),
            Just("aud"),
            Just("azp"),
            Just("sub"),
            Just("exp"),
            Just("iat"),
            Just("nbf"),
            Just("email"),
            Just("email_verified"),
            Just("hd"),
            Just("name"),
            Just("alg"),
            Just("kid"),
            Just("typ"),
            Just("crit"),
            Just("jku"),
            Just("x5u"),
            Just("jwk"),
            Just("x5c"),
            Just("b64"),
        ]
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
    ]
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => Just(Mutation::None),
        4 => (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        2 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<usize>(), "[A-Za-z0-9_.=+/ -]{1,8}").prop_map(|(at, text)| Mutation::Insert { at, text }),
        3 => (0usize..3, proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(index, bytes)| Mutation::Segment { index, bytes }),
        1 => (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::Swap { a, b }),
        1 => (0usize..3).prop_map(|index| Mutation::Duplicate { index }),
        3 => proptest::collection::btree_map(claim_name(), json_value(), 0..6).prop_map(|m| {
            let mut header: Map<String, Value> = m.into_iter().collect();
            header.entry("alg").or_insert_with(|| Value::from("RS256"));
            Mutation::Header { header: Value::Object(header) }
        }),
        3 => (claim_name(), json_value()).prop_map(|(name, value)| Mutation::Claim { name, value }),
        1 => (claim_name(), json_value()).prop_map(|(name, value)| Mutation::ResignedClaim { name, value }),
    ]
}

/// The mutated token, and whether it carries a genuine signature over its own claims (so it may verify).
pub(crate) fn apply(genuine: &str, mutation: &Mutation) -> (String, Option<Value>) {
    let segments: Vec<&str> = genuine.split('.').collect();
    let with_claim = |name: &str, value: &Value| {
        let mut claims = claims();
        claims[name] = value.clone();
        claims
    };
    let byte_edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = genuine.as_bytes().to_vec();
        f(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    };
    match mutation {
        Mutation::None => (genuine.to_owned(), Some(claims())),
        Mutation::Flip { at, xor } => (
            byte_edit(&|b| {
                let i = at % b.len();
                b[i] ^= xor;
            }),
            None,
        ),
        Mutation::Truncate { at } => (genuine[..at % genuine.len()].to_owned(), None),
        Mutation::Insert { at, text } => (
            byte_edit(&|b| {
                let i = at % (b.len() + 1);
                b.splice(i..i, text.bytes());
            }),
            None,
        ),
        Mutation::Segment { index, bytes } => {
            let mut parts = segments.clone();
            let replacement = b64(bytes);
            parts[*index] = &replacement;
            (parts.join("."), None)
        }
        Mutation::Swap { a, b } => {
            let mut parts = segments.clone();
            parts.swap(*a, *b);
            (parts.join("."), None)
        }
        Mutation::Duplicate { index } => {
            let mut parts = segments.clone();
            parts.insert(*index, segments[*index]);
            (parts.join("."), None)
        }
        Mutation::Header { header } => (
            format!(
                "{}.{}.{}",
                b64(&serde_json::to_vec(header).unwrap()),
                segments[1],
                segments[2]
            ),
            None,
        ),
        Mutation::Claim { name, value } => (
            format!(
                "{}.{}.{}",
                segments[0],
                b64(&serde_json::to_vec(&with_claim(name, value)).unwrap()),
                segments[2]
            ),
            None,
        ),
        Mutation::ResignedClaim { name, value } => {
            let claims = with_claim(name, value);
            (sign(&claims, KID1, &KEY1), Some(claims))
        }
    }
}

#[test]
fn fuzz_id_token_parsing_accepts_the_genuine_token_and_refuses_every_unsigned_mutation() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_server, verifier) = rt.block_on(async {
        let server = jwks_server().await;
        let verifier = Google::new(config(&server)).unwrap().verifier();
        verifier.prefetch().await.unwrap();
        (server, verifier)
    });
    let genuine = sign(&claims(), KID1, &KEY1);
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&mutation(), |mutation| {
            let (token, signed_claims) = apply(&genuine, &mutation);
            let Ok(token) = IdToken::parse(&token) else {
                return Ok(());
            };
            let result = rt.block_on(verifier.verify(&token, now()));
            match (&result, signed_claims) {
                (Ok(verified), Some(claims)) => {
                    prop_assert_eq!(Some(verified.subject.as_str()), claims["sub"].as_str());
                }
                (Ok(_), None) => {
                    prop_assert_eq!(
                        token.expose_secret(),
                        genuine.as_str(),
                        "an unsigned mutation verified: {:?}",
                        mutation
                    );
                }
                (Err(e), _) => {
                    prop_assert!(
                        !matches!(mutation, Mutation::None),
                        "the genuine token was refused: {e}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}
