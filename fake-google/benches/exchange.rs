//! Authorization-code exchanges vs bare RSA-2048 signing with the same backend (aws-lc-rs).
//!
//! `cargo bench -p fake-google -- --quick` runs the criterion groups, then prints the
//! exchanges-per-second ratio to bare signing measured in the same run, and the memory taken by
//! 100,000 minted users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use axum::body::Body;
use criterion::Criterion;
use fake_google::{CodeRequest, Control, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, OAuthClient};
use tower::ServiceExt as _;

const KEY: &[u8] = include_bytes!("../src/keys/key1.pk8.der");

/// A message of an ID token's size.
fn message() -> Vec<u8> {
    vec![b'e'; 900]
}

fn bare_sign(key: &RsaKeyPair, rng: &SystemRandom, msg: &[u8], sig: &mut [u8]) {
    key.sign(&RSA_PKCS1_SHA256, rng, msg, sig).unwrap();
}

fn control() -> Control {
    Control::new(OAuthClient {
        client_id: DEFAULT_CLIENT_ID.to_owned(),
        client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
    })
    .unwrap()
}

/// Mint a code and exchange it through the router in-process.
async fn exchange(control: &Control, app: &axum::Router) {
    let minted = control
        .mint_code(CodeRequest::new("bench@example.com"))
        .await
        .unwrap();
    let body = format!(
        "grant_type=authorization_code&code={}&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}",
        minted.code.replace('/', "%2F")
    );
    let req = http::Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    black_box(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap(),
    );
}

/// Mint a code and exchange it over loopback HTTP.
async fn exchange_http(fake: &fake_google::FakeGoogle, client: &reqwest::Client, url: &str) {
    let minted = fake
        .mint_code(CodeRequest::new("bench@example.com"))
        .await
        .unwrap();
    let resp = client
        .post(url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", minted.code.as_str()),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    black_box(resp.bytes().await.unwrap());
}

fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up, then count.
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = RsaKeyPair::from_pkcs8(KEY).unwrap();
    let rng = SystemRandom::new();
    let msg = message();
    let mut sig = vec![0u8; key.public_modulus_len()];
    let ctl = control();
    let app = fake_google::router(&ctl);
    let fake = rt.block_on(fake_google::FakeGoogle::start()).unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/token", fake.base_url());

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("exchange");
        g.bench_function("bare_rsa2048_sign", |b| {
            b.iter(|| bare_sign(&key, &rng, &msg, &mut sig));
        });
        g.bench_function("code_exchange_in_process", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        exchange(&ctl, &app).await;
                    }
                    start.elapsed()
                })
            });
        });
        g.bench_function("code_exchange_loopback_http", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        exchange_http(&fake, &client, &url).await;
                    }
                    start.elapsed()
                })
            });
        });
        g.finish();
    }
    c.final_summary();

    // The ratio, measured here in one run (single client, sequential).
    let budget = Duration::from_secs(2);
    let sign_rate = rate(budget, || bare_sign(&key, &rng, &msg, &mut sig));
    let inproc_rate = rt.block_on(async {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget {
            exchange(&ctl, &app).await;
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    });
    let http_rate = rt.block_on(async {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget {
            exchange_http(&fake, &client, &url).await;
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    });
    println!("bare RSA-2048 signs/s:           {sign_rate:8.0}");
    println!(
        "exchanges/s in-process:          {inproc_rate:8.0}  ratio {:.2}",
        inproc_rate / sign_rate
    );
    println!(
        "exchanges/s over loopback HTTP:  {http_rate:8.0}  ratio {:.2}",
        http_rate / sign_rate
    );

    // The whole machine: bare signing on every core vs concurrent clients over loopback.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let signed = std::sync::atomic::AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cores {
            s.spawn(|| {
                let key = RsaKeyPair::from_pkcs8(KEY).unwrap();
                let mut sig = vec![0u8; key.public_modulus_len()];
                while start.elapsed() < budget {
                    bare_sign(&key, &rng, &msg, &mut sig);
                    signed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let sign_all = signed.into_inner() as f64 / start.elapsed().as_secs_f64();
    let exchanged = rt.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..(cores * 4) {
            let (client, url) = (client.clone(), url.clone());
            let control = fake.control().clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < budget {
                    let minted = control
                        .mint_code(CodeRequest::new("bench@example.com"))
                        .await
                        .unwrap();
                    let resp = client
                        .post(&url)
                        .form(&[
                            ("grant_type", "authorization_code"),
                            ("code", minted.code.as_str()),
                            ("client_id", DEFAULT_CLIENT_ID),
                            ("client_secret", DEFAULT_CLIENT_SECRET),
                        ])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                    black_box(resp.bytes().await.unwrap());
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total as f64 / start.elapsed().as_secs_f64()
    });
    println!("bare signs/s on {cores} threads:      {sign_all:8.0}");
    println!(
        "exchanges/s, {} concurrent clients: {exchanged:8.0}  ratio {:.2} (to all-core signing), {:.2} (to one core)",
        cores * 4,
        exchanged / sign_all,
        exchanged / sign_rate
    );

    // Memory with 100k minted users.
    let users = control();
    let before = rss_kib();
    rt.block_on(async {
        for i in 0..100_000 {
            users
                .mint_code(CodeRequest::new(format!("user{i}@example.com")))
                .await
                .unwrap();
        }
    });
    let after = rss_kib();
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "100k minted users (each with a pending code): +{} MiB RSS ({} users)",
            a.saturating_sub(b) / 1024,
            users.user_count()
        );
    }
}
