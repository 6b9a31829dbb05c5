//! `put` and `get` of one credential on the file store (each `put` is a full atomic write with two fsyncs, so
//! the figure depends mostly on the disk).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use offline_access_crypto::KeyRing;
use offline_access_domain::CredentialStore;
use offline_access_domain::testkit::canary_credential;
use offline_access_store_file::FileStore;

fn file_store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), Arc::new(KeyRing::generate_ephemeral())).unwrap();
    let mut current = runtime
        .block_on(store.put(&canary_credential("110169484474386276334")))
        .unwrap();
    let subject = current.subject.clone();

    c.bench_function("file_store_put", |b| {
        b.iter(|| {
            current = runtime.block_on(store.put(&current)).unwrap();
        });
    });
    c.bench_function("file_store_get", |b| {
        b.iter(|| runtime.block_on(store.get(&subject)).unwrap().unwrap());
    });
}

criterion_group!(benches, file_store);
criterion_main!(benches);
