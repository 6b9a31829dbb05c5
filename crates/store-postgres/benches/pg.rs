//! Credential upserts and reads per second against a real PostgreSQL (`DATABASE_URL`); skipped without it.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p offline-access-store-postgres`
//! Each iteration of the `postgres` group is one round trip on a pooled connection (plus sealing or opening two
//! tokens); `upsert_with_event` is `upsert` recording one outbox event in the same statement;
//! `postgres_concurrent` runs sixteen writers at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use offline_access_crypto::KeyRing;
use offline_access_domain::events::{Event, EventData, EventRecord};
use offline_access_domain::{
    AccessToken, CachedAccess, ConsentState, Credential, CredentialStore, Profile, RefreshToken,
    Scopes, Subject,
};
use offline_access_store_postgres::{PgOptions, PgStore};
use time::OffsetDateTime;

const USERS: u64 = 1000;
const CONCURRENT: u64 = 16;

fn credential(sub: &str, version: u64) -> Credential {
    let now = OffsetDateTime::now_utc();
    let scopes = Scopes::parse("openid https://www.googleapis.com/auth/drive.appdata").unwrap();
    Credential {
        subject: Subject::parse(sub).unwrap(),
        profile: Profile::default(),
        scopes: scopes.clone(),
        refresh_token: Some(RefreshToken::parse(&format!("1//bench-refresh-{sub}")).unwrap()),
        access: Some(CachedAccess {
            token: AccessToken::parse(&format!("ya29.bench-access-{sub}")).unwrap(),
            expires_at: now + time::Duration::hours(1),
            scopes,
        }),
        consent: ConsentState::Active,
        disabled: None,
        refresh_failing_since: None,
        version,
        created_at: now,
        updated_at: now,
    }
}

fn bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("SKIPPED: DATABASE_URL not set; no PostgreSQL benchmark run");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let schema = format!("oa_bench_{}", std::process::id());
    let keys = Arc::new(KeyRing::generate_ephemeral());
    let options = PgOptions {
        schema: Some(schema.clone()),
        ..PgOptions::default()
    };
    // Current version per user, so every upsert is a real (non-conflicting) write.
    let versions: Vec<AtomicU64> = (0..USERS).map(|_| AtomicU64::new(0)).collect();
    let store = runtime.block_on(async {
        let store = PgStore::connect(&url, keys, options).await.unwrap();
        store.migrate().await.unwrap();
        for i in 0..USERS {
            let stored = store.put(&credential(&format!("{i}"), 0)).await.unwrap();
            versions[i as usize].store(stored.version, Ordering::Relaxed);
        }
        store
    });
    let next = AtomicU64::new(0);

    // One committed write of the next user's credential, with `events` events in the same statement.
    let upsert = |events: usize| {
        let i = next.fetch_add(1, Ordering::Relaxed) % USERS;
        let version = versions[i as usize].load(Ordering::Relaxed);
        let now = OffsetDateTime::now_utc();
        let events: Vec<EventRecord> = (0..events)
            .map(|_| {
                Event::new(
                    EventData::Recovered {
                        sub: format!("{i}"),
                    },
                    now,
                )
                .record()
            })
            .collect();
        let stored = runtime
            .block_on(store.put_with(&credential(&format!("{i}"), version), &events))
            .unwrap();
        versions[i as usize].store(stored.version, Ordering::Relaxed);
    };
    let mut group = c.benchmark_group("postgres");
    group.throughput(Throughput::Elements(1));
    group.bench_function("upsert", |b| b.iter(|| upsert(0)));
    // The same write recording one outbox event (a data-modifying CTE: still one statement, one round trip).
    group.bench_function("upsert_with_event", |b| b.iter(|| upsert(1)));
    group.bench_function("get", |b| {
        b.iter(|| {
            let i = next.fetch_add(1, Ordering::Relaxed) % USERS;
            let subject = Subject::parse(&format!("{i}")).unwrap();
            runtime.block_on(store.get(&subject)).unwrap().unwrap()
        });
    });
    group.bench_function("lock_get_put_release", |b| {
        b.iter(|| {
            let i = next.fetch_add(1, Ordering::Relaxed) % USERS;
            let subject = Subject::parse(&format!("{i}")).unwrap();
            runtime.block_on(async {
                let mut lock = store.lock_user(&subject).await.unwrap();
                let mut cred = lock.get().await.unwrap().unwrap();
                cred.refresh_token = None;
                let stored = lock.put(&cred).await.unwrap();
                lock.release().await.unwrap();
                versions[i as usize].store(stored.version, Ordering::Relaxed);
            });
        });
    });
    group.finish();

    // Sixteen writers at once (as many instances or requests would): group commit shares the WAL flushes.
    let mut group = c.benchmark_group("postgres_concurrent");
    group.throughput(Throughput::Elements(CONCURRENT));
    group.bench_function("upsert_x16", |b| {
        b.iter(|| {
            let start = next.fetch_add(CONCURRENT, Ordering::Relaxed);
            runtime.block_on(async {
                let mut writers = tokio::task::JoinSet::new();
                for k in 0..CONCURRENT {
                    let i = (start + k) % USERS;
                    let version = versions[i as usize].load(Ordering::Relaxed);
                    let store = store.clone();
                    writers.spawn(async move {
                        let stored = store.put(&credential(&format!("{i}"), version)).await;
                        (i, stored)
                    });
                }
                while let Some(done) = writers.join_next().await {
                    let (i, stored) = done.unwrap();
                    versions[i as usize].store(stored.unwrap().version, Ordering::Relaxed);
                }
            });
        });
    });
    group.finish();

    runtime.block_on(async {
        drop(store);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .unwrap();
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
