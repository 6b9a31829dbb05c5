//! Seal and open of a ~100-byte token with AES-256-GCM (aws-lc-rs).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use offline_access_crypto::KeyRing;

fn aead(c: &mut Criterion) {
    let ring = KeyRing::generate_ephemeral();
    let token = [b'x'; 100];
    let sealed = ring
        .seal("110169484474386276334", "refresh_token", &token)
        .unwrap();
    c.bench_function("seal_100_byte_token", |b| {
        b.iter(|| {
            ring.seal(
                black_box("110169484474386276334"),
                "refresh_token",
                black_box(&token),
            )
            .unwrap()
        });
    });
    c.bench_function("open_100_byte_token", |b| {
        b.iter(|| {
            ring.open(
                black_box("110169484474386276334"),
                "refresh_token",
                black_box(&sealed),
            )
            .unwrap()
        });
    });
}

criterion_group!(benches, aead);
criterion_main!(benches);
