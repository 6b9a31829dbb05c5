//! The storage contract suite on the in-memory reference store and on the file store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use offline_access_domain::memory::MemoryStore;
use offline_access_domain::testkit;
use offline_access_domain::{CredentialStore, Subject};
use offline_access_store_file::FileStore;

use crate::helpers::{KEY_A, KEY_B, open};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_memory_store_meets_the_storage_contract() {
    testkit::run_contract(|| async { Arc::new(MemoryStore::new()) as Arc<dyn CredentialStore> })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_file_store_meets_the_storage_contract() {
    let parent = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    testkit::run_contract(|| {
        let dir = parent
            .path()
            .join(n.fetch_add(1, Ordering::SeqCst).to_string());
        async move { Arc::new(open(&dir, KEY_A)) as Arc<dyn CredentialStore> }
    })
    .await;
}

struct FileBytes(FileStore);

#[async_trait]
impl testkit::RawStorage for FileBytes {
    async fn raw_bytes(&self, subject: &Subject) -> Vec<u8> {
        std::fs::read(self.0.credential_path(subject)).unwrap()
    }
}

#[tokio::test]
async fn the_file_store_never_writes_a_token_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    testkit::tokens_are_never_stored_in_clear(Arc::new(store.clone()), &FileBytes(store)).await;
}

#[tokio::test]
async fn the_file_store_reports_a_record_under_an_unknown_key_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path(), KEY_A);
    let reader = open(dir.path(), KEY_B);
    testkit::a_record_under_an_unknown_key_is_a_loud_error(Arc::new(writer), Arc::new(reader))
        .await;
}
