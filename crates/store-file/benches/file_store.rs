//! `put` and `get` of one credential on the file store, and `put_with` recording one and two events (each `put` is
//! a full atomic write with two syncs; a `put_with` carries the events in the record and adds a hard link, a sync of
//! `outbox/tentative/` and a rename, so the figures depend mostly on the disk). The ratio `put_with` / `put` is the
//! events' cost.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use offline_access_crypto::KeyRing;
use offline_access_domain::CredentialStore;
use offline_access_domain::events::{Event, EventData, EventRecord, EventStore};
use offline_access_domain::testkit::{NOW, canary_credential};
use offline_access_store_file::FileStore;

fn events(n: usize) -> Vec<EventRecord> {
    (0..n)
        .map(|_| {
            Event::new(
                EventData::Recovered {
                    sub: "110169484474386276334".into(),
                },
                NOW,
            )
            .record()
        })
        .collect()
}

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
    for n in [1, 2] {
        let mut made = 0u64;
        c.bench_function(&format!("file_store_put_with_{n}_events"), |b| {
            b.iter_batched(
                || {
                    // Untimed: the events, and every 200 writes the filing of what they recorded (as the delivery
                    // loop would), so the outbox's incoming directory does not grow through the run.
                    made += 1;
                    if made.is_multiple_of(200) {
                        runtime.block_on(store.counts()).unwrap();
                    }
                    events(n)
                },
                |events| {
                    current = runtime.block_on(store.put_with(&current, &events)).unwrap();
                },
                BatchSize::SmallInput,
            );
        });
    }
    c.bench_function("file_store_get", |b| {
        b.iter(|| runtime.block_on(store.get(&subject)).unwrap().unwrap());
    });
}

criterion_group!(benches, file_store);
criterion_main!(benches);
