//! Two instances on one PostgreSQL outbox: each event is delivered by one of them, once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use offline_access_domain::SystemClock;
use offline_access_domain::delivery::{Delivery, RetrySchedule};
use offline_access_domain::events::{Event, EventData, EventFilter, EventStore, RevokedBy};
use offline_access_webhooks::{WebhookConfig, WebhookSecret, WebhookSender, verify};

use crate::support::TestDb;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const EVENTS: usize = 100;

type Seen = Arc<Mutex<HashMap<String, usize>>>;

async fn receiver() -> (String, Seen) {
    async fn hook(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let id = verify(&secret, &headers, &body).unwrap().id;
        *seen.lock().unwrap().entry(id).or_default() += 1;
        StatusCode::NO_CONTENT
    }
    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn instance(events: Arc<dyn EventStore>, url: &str) -> Delivery {
    let config = WebhookConfig::new(url.parse().unwrap(), SECRET, Duration::from_secs(10)).unwrap();
    let mut delivery = Delivery::new(
        events,
        Arc::new(WebhookSender::new(config).unwrap()),
        Arc::new(SystemClock),
        RetrySchedule::default(),
    );
    // Small batches so the two instances interleave; a lease far longer than any delivery here, so an event is
    // never claimed twice (an expired lease would make it at-least-once, same id).
    delivery.batch = 7;
    delivery.lease = Duration::from_secs(600);
    delivery
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_deliver_each_of_a_hundred_events_once() {
    let db = TestDb::new();
    let a = db.store_at(&db.url).await;
    let b = db.store_at(&db.url).await;
    let records: Vec<_> = (0..EVENTS)
        .map(|i| {
            Event::new(
                EventData::Revoked {
                    sub: format!("{}", 1000 + i),
                    source: RevokedBy::Risc,
                },
                time::OffsetDateTime::now_utc(),
            )
            .record()
        })
        .collect();
    a.append(&records).await.unwrap();
    let (url, seen) = receiver().await;
    let (one, two) = (instance(a.clone(), &url), instance(b.clone(), &url));
    let drain = |delivery: Delivery| async move {
        let mut delivered = 0;
        loop {
            let round = delivery.run_once().await.unwrap();
            delivered += round.delivered.len();
            assert_eq!(round.retried + round.failed, 0);
            if round.claimed == 0 {
                return delivered;
            }
        }
    };
    let (by_one, by_two) = tokio::join!(drain(one), drain(two));

    assert_eq!(by_one + by_two, EVENTS);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), EVENTS, "every event arrived");
    assert!(seen.values().all(|n| *n == 1), "each once: {seen:?}");
    for record in &records {
        assert!(seen.contains_key(&record.id));
    }
    let pending = b.list_events(EventFilter::Pending, None, 10).await.unwrap();
    assert!(pending.items.is_empty());
    eprintln!("instance one delivered {by_one}, instance two {by_two}");
}
