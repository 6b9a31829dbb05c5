//! An unreachable or misconfigured database: clear errors naming `store.url`, never the password.

use std::time::Duration;

use offline_access_domain::{CredentialStore, StoreError};
use offline_access_store_postgres::{PgOptions, PgStore};

use crate::support::{TestDb, keys, subject};

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_naming_store_url_without_the_password() {
    // Needs no database: it runs even without DATABASE_URL.
    let url = format!(
        "postgres://app:hunter2-secret@127.0.0.1:{}/db",
        closed_port()
    );
    let options = PgOptions {
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    match PgStore::connect(&url, keys(), options).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("store.url"), "{message}");
            assert!(message.contains("127.0.0.1"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_invalid_url_is_refused_without_echoing_the_password() {
    match PgStore::connect(
        "postgres://app:hunter2@host:notaport/db",
        keys(),
        PgOptions::default(),
    )
    .await
    {
        Err(StoreError::Other(message)) => {
            assert!(message.contains("store.url"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected Other, got {other:?}"),
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_closed_store_is_unavailable_for_reads_and_readiness() {
    let db = TestDb::new();
    let store = db.store().await;
    store.ping().await.unwrap();
    store.close();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.get(&subject("5001")).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_database_that_refuses_the_login_is_unavailable_naming_store_url() {
    let db = TestDb::new();
    let Ok(mut url) = url::Url::parse(&db.url) else {
        return;
    };
    url.set_path("/offline_access_no_such_database");
    match PgStore::connect(url.as_str(), keys(), PgOptions::default()).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("store.url"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn debug_output_shows_no_password() {
    let db = TestDb::new();
    let Ok(mut url) = url::Url::parse(&db.url) else {
        return;
    };
    // Trust auth ignores the password, so the store connects with it in the URL.
    if url.set_password(Some("hunter2-secret")).is_err() {
        return;
    }
    let store = PgStore::connect(url.as_str(), keys(), db.options())
        .await
        .unwrap();
    let debug = format!("{store:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
}
