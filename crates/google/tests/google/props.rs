//! Property: for generated claim sets, a token is accepted exactly when every rule holds; and arbitrary
//! token-shaped input never panics and is never accepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use offline_access_domain::{IdToken, IdTokenVerifier};
use offline_access_google::{Google, JwksVerifier};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

use crate::support::{
    ANDROID_ID, CLIENT_ID, KEY1, KID1, NOW, b64, config, id_token, jwks_server, now, sign,
};

const ISSUERS: [Option<&str>; 6] = [
    Some("https://accounts.google.com"),
    Some("accounts.google.com"),
    Some("https://accounts.google.com/"),
    Some("http://accounts.google.com"),
    Some("https://evil.example"),
    None,
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Aud {
    Client,
    ClientList,
    ClientAndOther,
    Other,
    Missing,
    Number,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Azp {
    Missing,
    Android,
    Client,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sub {
    Missing,
    Empty,
    Normal,
    Max,
    TooLong,
    Number,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Hd {
    Missing,
    Example,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum EmailVerified {
    Missing,
    True,
    TrueString,
    Junk,
}

#[derive(Debug, Clone)]
struct Case {
    iss: usize,
    aud: Aud,
    azp: Azp,
    require_azp: bool,
    sub: Sub,
    hd: Hd,
    require_hd: bool,
    email_verified: EmailVerified,
    iat: Option<i64>,
    lifetime: i64,
    exp_missing: bool,
}

/// Any case (most are refused, about one in twenty is accepted) or, one time in three, a case built from
/// accepted values only, so that each run sees both sides of the rule many times over.
fn case() -> impl Strategy<Value = Case> {
    prop_oneof![2 => any_case(), 1 => acceptable_case()]
}

/// A case whose every field takes one of its accepted values (the oracle still decides).
fn acceptable_case() -> impl Strategy<Value = Case> {
    (
        (
            0usize..2,
            prop_oneof![Just(Aud::Client), Just(Aud::ClientList)],
            prop_oneof![Just(Azp::Missing), Just(Azp::Android), Just(Azp::Client)],
            any::<bool>(),
            prop_oneof![Just(Sub::Normal), Just(Sub::Max)],
        ),
        (
            any::<bool>(),
            prop_oneof![
                Just(EmailVerified::Missing),
                Just(EmailVerified::True),
                Just(EmailVerified::TrueString)
            ],
            -3000i64..60,
            3600i64..86_400,
        ),
    )
        .prop_map(
            |((iss, aud, azp, require_azp, sub), (require_hd, email_verified, iat, lifetime))| {
                Case {
                    iss,
                    aud,
                    azp,
                    require_azp,
                    sub,
                    hd: Hd::Example,
                    require_hd,
                    email_verified,
                    iat: Some(NOW + iat),
                    lifetime,
                    exp_missing: false,
                }
            },
        )
}

fn any_case() -> impl Strategy<Value = Case> {
    let aud = prop_oneof![
        4 => Just(Aud::Client), 2 => Just(Aud::ClientList), 1 => Just(Aud::ClientAndOther),
        1 => Just(Aud::Other), 1 => Just(Aud::Missing), 1 => Just(Aud::Number)
    ];
    let azp = prop_oneof![
        Just(Azp::Missing),
        Just(Azp::Android),
        Just(Azp::Client),
        Just(Azp::Other)
    ];
    let sub = prop_oneof![
        1 => Just(Sub::Missing), 1 => Just(Sub::Empty), 6 => Just(Sub::Normal), 1 => Just(Sub::Max),
        1 => Just(Sub::TooLong), 1 => Just(Sub::Number)
    ];
    let hd = prop_oneof![Just(Hd::Missing), Just(Hd::Example), Just(Hd::Other)];
    let ev = prop_oneof![
        1 => Just(EmailVerified::Missing), 3 => Just(EmailVerified::True),
        1 => Just(EmailVerified::TrueString), 1 => Just(EmailVerified::Junk)
    ];
    // iat around now (with the leeway edges likely), lifetime around 0 and 24 h.
    let iat = prop_oneof![
        1 => Just(None),
        6 => (-4000i64..200).prop_map(|d| Some(NOW + d)),
        1 => (-90_000i64..90_000).prop_map(|d| Some(NOW + d)),
    ];
    let lifetime = prop_oneof![1 => -10i64..10, 3 => 1i64..7200, 1 => 86_390i64..86_410];
    (
        (
            prop_oneof![4 => 0usize..2, 2 => 2usize..6],
            aud,
            azp,
            any::<bool>(),
            sub,
        ),
        (
            hd,
            any::<bool>(),
            ev,
            iat,
            lifetime,
            proptest::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (iss, aud, azp, require_azp, sub),
                (hd, require_hd, email_verified, iat, lifetime, exp_missing),
            )| Case {
                iss,
                aud,
                azp,
                require_azp,
                sub,
                hd,
                require_hd,
                email_verified,
                iat,
                lifetime,
                exp_missing,
            },
        )
}

impl Case {
    fn claims(&self) -> Value {
        let mut c = Map::new();
        if let Some(iss) = ISSUERS[self.iss] {
            c.insert("iss".into(), json!(iss));
        }
        match self.aud {
            Aud::Client => c.insert("aud".into(), json!(CLIENT_ID)),
            Aud::ClientList => c.insert("aud".into(), json!([CLIENT_ID])),
            Aud::ClientAndOther => c.insert("aud".into(), json!([CLIENT_ID, "other"])),
            Aud::Other => c.insert("aud".into(), json!("other")),
            Aud::Missing => None,
            Aud::Number => c.insert("aud".into(), json!(42)),
        };
        match self.azp {
            Azp::Missing => None,
            Azp::Android => c.insert("azp".into(), json!(ANDROID_ID)),
            Azp::Client => c.insert("azp".into(), json!(CLIENT_ID)),
            Azp::Other => c.insert("azp".into(), json!("other")),
        };
        match self.sub {
            Sub::Missing => None,
            Sub::Empty => c.insert("sub".into(), json!("")),
            Sub::Normal => c.insert("sub".into(), json!("110169484474386276334")),
            Sub::Max => c.insert("sub".into(), json!("7".repeat(255))),
            Sub::TooLong => c.insert("sub".into(), json!("7".repeat(256))),
            Sub::Number => c.insert("sub".into(), json!(1)),
        };
        match self.hd {
            Hd::Missing => None,
            Hd::Example => c.insert("hd".into(), json!("example.com")),
            Hd::Other => c.insert("hd".into(), json!("other.org")),
        };
        match self.email_verified {
            EmailVerified::Missing => None,
            EmailVerified::True => c.insert("email_verified".into(), json!(true)),
            EmailVerified::TrueString => c.insert("email_verified".into(), json!("true")),
            EmailVerified::Junk => c.insert("email_verified".into(), json!("yes")),
        };
        let iat = self.iat.unwrap_or(NOW);
        if self.iat.is_some() {
            c.insert("iat".into(), json!(iat));
        }
        if !self.exp_missing {
            c.insert("exp".into(), json!(iat + self.lifetime));
        }
        Value::Object(c)
    }

    /// The rules, restated independently of the implementation (leeway 60 s).
    fn should_accept(&self) -> bool {
        let iss = self.iss < 2;
        let aud = matches!(self.aud, Aud::Client | Aud::ClientList);
        let azp = !self.require_azp || self.azp != Azp::Other;
        let times = match (self.iat, self.exp_missing) {
            (Some(iat), false) => {
                let exp = iat + self.lifetime;
                self.lifetime > 0 && self.lifetime <= 86_400 && NOW < exp + 60 && iat <= NOW + 60
            }
            _ => false,
        };
        let sub = matches!(self.sub, Sub::Normal | Sub::Max);
        let hd = !self.require_hd || self.hd == Hd::Example;
        let ev = self.email_verified != EmailVerified::Junk;
        iss && aud && azp && times && sub && hd && ev
    }

    fn verifier_index(&self) -> usize {
        usize::from(self.require_azp) * 2 + usize::from(self.require_hd)
    }
}

#[test]
fn a_token_is_accepted_exactly_when_every_rule_holds() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_server, verifiers): (_, Vec<Arc<JwksVerifier>>) = rt.block_on(async {
        let server = jwks_server().await;
        let mut verifiers = Vec::new();
        for (require_azp, require_hd) in
            [(false, false), (false, true), (true, false), (true, true)]
        {
            let mut config = config(&server);
            if require_azp {
                config.allowed_azp = vec![ANDROID_ID.into()];
            }
            if require_hd {
                config.hosted_domain = Some("example.com".into());
            }
            let verifier = Google::new(config).unwrap().verifier();
            verifier.prefetch().await.unwrap();
            verifiers.push(verifier);
        }
        (server, verifiers)
    });
    let accepted = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |case| {
            let token = id_token(&sign(&case.claims(), KID1, &KEY1));
            let result = rt.block_on(verifiers[case.verifier_index()].verify(&token, now()));
            prop_assert_eq!(
                result.is_ok(),
                case.should_accept(),
                "{:?} -> {:?}",
                case,
                result
            );
            let counter = if result.is_ok() { &accepted } else { &refused };
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    // The generator exercises both sides of the rule (about 90 accepted and 165 refused are expected).
    assert!(
        accepted.load(Ordering::Relaxed) >= 20,
        "too few accepted cases"
    );
    assert!(
        refused.load(Ordering::Relaxed) >= 20,
        "too few refused cases"
    );
}

#[test]
fn arbitrary_token_shaped_input_never_panics_and_is_never_accepted() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_server, verifier) = rt.block_on(async {
        let server = jwks_server().await;
        let verifier = Google::new(config(&server)).unwrap().verifier();
        verifier.prefetch().await.unwrap();
        (server, verifier)
    });
    let segment = "[A-Za-z0-9_-]{1,64}";
    let json_header = prop_oneof![
        Just(json!({"alg": "RS256", "kid": KID1})),
        Just(json!({"alg": "RS256"})),
        Just(json!({"alg": "none"})),
        any::<String>().prop_map(|s| json!({"alg": "RS256", "kid": s})),
        any::<String>().prop_map(|s| json!({"alg": s, "kid": KID1})),
    ]
    .prop_map(|h| b64(&serde_json::to_vec(&h).unwrap()));
    let header = prop_oneof![segment.prop_map(|s| s), json_header];
    let payload = prop_oneof![
        segment.prop_map(|s| s),
        any::<Vec<u8>>().prop_map(|b| b64(&b)),
        Just(b64(&serde_json::to_vec(&crate::support::claims()).unwrap())),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(header, payload, segment), |(h, p, s)| {
            let Ok(token) = IdToken::parse(&format!("{h}.{p}.{s}")) else {
                return Ok(());
            };
            let result = rt.block_on(verifier.verify(&token, now()));
            prop_assert!(result.is_err());
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_verifier_that_remembers_tokens_answers_exactly_as_one_that_verifies_each_time() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_server, remembering, plain) = rt.block_on(async {
        let server = jwks_server().await;
        let remembering = Google::new(config(&server)).unwrap().verifier();
        let mut off = config(&server);
        off.verified_token_cache = 0;
        let plain = Google::new(off).unwrap().verifier();
        (server, remembering, plain)
    });
    let uses = proptest::collection::vec((0usize..3, -5000i64..5000), 1..10);
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(proptest::collection::vec(case(), 1..4), uses),
            |(cases, uses)| {
                let tokens: Vec<_> = cases
                    .iter()
                    .map(|c| id_token(&sign(&c.claims(), KID1, &KEY1)))
                    .collect();
                for (index, offset) in uses {
                    let token = &tokens[index % tokens.len()];
                    let at = now() + time::Duration::seconds(offset);
                    let remembered = rt.block_on(remembering.verify(token, at));
                    let verified = rt.block_on(plain.verify(token, at));
                    prop_assert_eq!(remembered, verified);
                }
                Ok(())
            },
        )
        .unwrap();
}
