//! Server instances sharing one file store directory (as processes on one host would).

use std::sync::Arc;

use fake_google::FakeGoogle;
use offline_access_crypto::KeyRing;
use offline_access_domain::Subject;
use offline_access_store_file::FileStore;

use crate::support::{Instance, id_token, token_calls};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_expiry_two_hundred_drive_calls_over_two_instances_on_one_directory_cause_one_refresh()
 {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(KeyRing::generate_ephemeral());
    let fake = FakeGoogle::start().await.unwrap();
    // Two stores, each with its own in-process state, on one directory: only the file locks connect them.
    let a = Instance::spawn(
        &fake,
        Arc::new(FileStore::open(dir.path(), keys.clone()).unwrap()),
    )
    .await;
    let b = Instance::spawn(&fake, Arc::new(FileStore::open(dir.path(), keys).unwrap())).await;
    let sub = a.sign_in(&fake, "files@example.com").await;
    let token = id_token(&fake, "files@example.com").await;
    assert!(fake.control().expire_user(&sub).await);

    let calls = (0..200).map(|i| {
        let instance = if i % 2 == 0 { &a } else { &b };
        instance.get_status("/v1/me/drive/appfolder", &token)
    });
    let statuses = futures::future::join_all(calls).await;

    assert!(
        statuses.iter().all(|s| *s == Some(200)),
        "every call succeeds: {statuses:?}"
    );
    assert_eq!(token_calls(&fake, "refresh_token").await, 1);
    let subject = Subject::parse(&sub).unwrap();
    let stored = b.service.credential(&subject).await.unwrap();
    assert!(stored.refresh_token.is_some());
}
