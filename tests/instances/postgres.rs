//! Server instances sharing one PostgreSQL schema.

use std::sync::Arc;
use std::time::Duration;

use fake_google::{FakeGoogle, SettingsPatch};
use offline_access_domain::{ConsentState, Credential, CredentialStore, DriveRequest, Subject};

use crate::support::{Forwarder, Instance, TestDb, id_token, token_calls, until};

const APPFOLDER: &str = "/v1/me/drive/appfolder";

/// Generous bound on waiting for something that normally takes milliseconds.
const GENEROUS: Duration = Duration::from_secs(20);

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_expiry_two_hundred_drive_calls_over_two_instances_on_one_database_cause_one_refresh()
{
    let db = TestDb::new();
    let fake = FakeGoogle::start().await.unwrap();
    let a = Instance::spawn(&fake, db.store_at(&db.url).await).await;
    let b = Instance::spawn(&fake, db.store_at(&db.url).await).await;
    let sub = a.sign_in(&fake, "stampede@example.com").await;
    let token = id_token(&fake, "stampede@example.com").await;
    let before = refresh_token(&b, &sub).await;
    assert!(fake.control().expire_user(&sub).await);

    let calls = (0..200).map(|i| {
        let instance = if i % 2 == 0 { &a } else { &b };
        instance.get_status(APPFOLDER, &token)
    });
    let statuses = futures::future::join_all(calls).await;

    assert!(
        statuses.iter().all(|s| *s == Some(200)),
        "every call succeeds: {statuses:?}"
    );
    assert_eq!(token_calls(&fake, "refresh_token").await, 1);
    assert_eq!(refresh_token(&a, &sub).await, before, "refresh token kept");
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_access_token_calls_over_three_instances_for_a_stale_user_cause_one_refresh()
{
    let db = TestDb::new();
    let fake = FakeGoogle::start().await.unwrap();
    // Short-lived tokens: asking for more life than is left makes the cached one stale for every caller.
    fake.control()
        .settings(SettingsPatch {
            access_token_ttl_secs: Some(300),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let instances = [
        Instance::spawn(&fake, db.store_at(&db.url).await).await,
        Instance::spawn(&fake, db.store_at(&db.url).await).await,
        Instance::spawn(&fake, db.store_at(&db.url).await).await,
    ];
    let sub = instances[0].sign_in(&fake, "broker@example.com").await;
    fake.control()
        .settings(SettingsPatch {
            access_token_ttl_secs: Some(3600),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();

    let calls = (0..300).map(|i| {
        let instance = &instances[i % 3];
        let request = instance
            .http
            .post(format!(
                "{}/internal/v1/users/{sub}/access_token",
                instance.internal_url
            ))
            .bearer_auth(&instance.api_key)
            .json(&serde_json::json!({"min_ttl_secs": 600}));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body["access_token"].as_str().map(str::to_owned))
        }
    });
    let answers = futures::future::join_all(calls).await;

    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let first = &answers[0].1;
    assert!(
        answers.iter().all(|(_, t)| t == first),
        "every caller gets the one fresh token"
    );
    assert_eq!(token_calls(&fake, "refresh_token").await, 1);
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_holder_killed_mid_refresh_blocks_nobody_and_loses_no_refresh_token() {
    let db = TestDb::new();
    let fake = FakeGoogle::start().await.unwrap();
    // Google rotates refresh tokens here, so a lost one would show: the old one stops working at the fake.
    fake.control()
        .settings(SettingsPatch {
            rotate_refresh_tokens: Some(true),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let names = ["a", "b", "c"].map(|n| format!("{}_{n}", db.schema));
    // A reaches Google through a forwarder that can hold its requests on the wire; its Google timeout is long,
    // so once held it stays stuck until released.
    let wire_to_google = Forwarder::start(fake.addr().to_string()).await;
    let a = Instance::spawn_with_google(
        &fake,
        db.store_at(&db.url_named(&names[0])).await,
        Some(format!("http://{}", wire_to_google.addr)),
        Some(Duration::from_secs(300)),
    )
    .await;
    let b = Instance::spawn(&fake, db.store_at(&db.url_named(&names[1])).await).await;
    let c = Instance::spawn(&fake, db.store_at(&db.url_named(&names[2])).await).await;
    let sub = b.sign_in(&fake, "crash@example.com").await;
    let token = id_token(&fake, "crash@example.com").await;
    let signed_in_refresh = refresh_token(&c, &sub).await;
    // The access token expires: at Google, and in the store too, so A's first call to Google is the refresh
    // (not a Drive call with the old token).
    assert!(fake.control().expire_user(&sub).await);
    let mut expired = stored(&c, &sub).await;
    if let Some(access) = expired.access.as_mut() {
        access.expires_at = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    }
    c.service.ports().store.put(&expired).await.unwrap();

    // Instance A takes the user's lock and calls Google to refresh; the call hangs on the wire.
    wire_to_google.hold();
    let holder = tokio::spawn({
        let (service, sub) = (a.service.clone(), Subject::parse(&sub).unwrap());
        async move { service.drive(&sub, &DriveRequest::GetAppFolder).await }
    });
    let admin = db.raw().await;
    let (wire_ref, admin_ref, names_ref) = (&wire_to_google, &admin, &names);
    until(
        GENEROUS,
        "A holds the user lock and waits on Google",
        || async move {
            wire_ref.held_connections() == 1
                && !advisory_locks(admin_ref, &names_ref[0], true)
                    .await
                    .is_empty()
        },
    )
    .await;
    let holder_pid = advisory_locks(&admin, &names[0], true).await[0];

    // 200 calls over B and C queue behind A's lock (one waiting connection per instance; the rest wait in process).
    let calls = tokio::spawn({
        let (b, c, token) = (Arc::new(b), Arc::new(c), token.clone());
        async move {
            let calls = (0..200).map(|i| {
                let instance = if i % 2 == 0 { b.clone() } else { c.clone() };
                let token = token.clone();
                async move { instance.get_status(APPFOLDER, &token).await }
            });
            let statuses = futures::future::join_all(calls).await;
            (statuses, b, c)
        }
    });
    until(GENEROUS, "B and C wait for A's lock", || async move {
        let waiting_b = advisory_locks(admin_ref, &names_ref[1], false).await.len();
        let waiting_c = advisory_locks(admin_ref, &names_ref[2], false).await.len();
        waiting_b >= 1 && waiting_c >= 1
    })
    .await;

    // A's connection to PostgreSQL dies (as when its process crashes or the server cuts it off): the server frees
    // its lock, while A itself stays stuck in its Google call, releasing nothing.
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&holder_pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);

    let (statuses, b, c) = tokio::time::timeout(GENEROUS, calls)
        .await
        .unwrap()
        .unwrap();
    assert!(!holder.is_finished(), "A is still stuck in its Google call");
    // Lock waits (60 s) outlast the kill by far, so every call gets the survivors' one refresh: all succeed.
    assert!(
        statuses.iter().all(|s| *s == Some(200)),
        "every call succeeds: {statuses:?}"
    );
    // Token calls: A's is still on the wire, so exactly one refresh reached Google for 200 calls on two instances.
    assert_eq!(token_calls(&fake, "refresh_token").await, 1);
    let rotated = refresh_token(&b, &sub).await;
    assert!(rotated.is_some() && rotated != signed_in_refresh);
    let version = stored(&b, &sub).await.version;

    // A's stale call now reaches Google with the refresh token the survivors' refresh retired: `invalid_grant`.
    // A, no longer holding the lock, must neither mark the user revoked nor overwrite the rotated token.
    wire_to_google.release();
    let late = tokio::time::timeout(GENEROUS, holder)
        .await
        .unwrap()
        .unwrap();
    // Its refresh token is no longer the stored one, so A writes nothing and decides again on what is stored: the
    // survivors' fresh access token serves its Drive call.
    assert!(
        late.is_ok(),
        "A's call goes on with the stored token: {late:?}"
    );
    let after = stored(&c, &sub).await;
    assert_eq!(after.consent, ConsentState::Active);
    assert_eq!(after.version, version, "A wrote nothing");
    assert_eq!(refresh_token(&c, &sub).await, rotated, "refresh token kept");
    // Two refresh grants reached Google in all: the survivors' one (200) and A's late one (400).
    let refreshes: Vec<u16> = fake
        .control()
        .requests()
        .await
        .iter()
        .filter(|e| e.grant_type.as_deref() == Some("refresh_token"))
        .map(|e| e.status)
        .collect();
    assert_eq!(refreshes, [200, 400]);

    // The stored, rotated refresh token is the one Google honours: after the next expiry, a refresh succeeds.
    assert!(fake.control().expire_user(&sub).await);
    assert_eq!(c.get_status(APPFOLDER, &token).await, Some(200));
    assert_eq!(token_calls(&fake, "refresh_token").await, 3);
    drop(a);
}

/// The stored credential of `sub`.
async fn stored(instance: &Instance, sub: &str) -> Credential {
    instance
        .service
        .ports()
        .store
        .get(&Subject::parse(sub).unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// PIDs of backends of `application_name` holding (`granted`) or waiting for an advisory lock.
async fn advisory_locks(
    admin: &tokio_postgres::Client,
    application_name: &str,
    granted: bool,
) -> Vec<i32> {
    admin
        .query(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted = $2 AND a.application_name = $1",
            &[&application_name, &granted],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The stored refresh token of `sub`, in clear (tests only).
async fn refresh_token(instance: &Instance, sub: &str) -> Option<String> {
    let store = instance.service.ports().store.clone();
    stored_refresh(store.as_ref(), sub).await
}

async fn stored_refresh(store: &dyn CredentialStore, sub: &str) -> Option<String> {
    store
        .get(&Subject::parse(sub).unwrap())
        .await
        .unwrap()
        .and_then(|c| c.refresh_token)
        .map(|t| t.expose_secret().to_owned())
}
