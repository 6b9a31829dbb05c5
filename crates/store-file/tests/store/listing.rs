//! Listings: a page reads only its own records, goes on past records it cannot read (and names them), and
//! `pending_revocations` reads only the records its markers point at.

use std::path::Path;

use offline_access_domain::testkit::{NOW, canary_credential, subject};
use offline_access_domain::{CredentialPage, CredentialStore, StoreError};
use offline_access_store_file::FileStore;

use crate::helpers::{KEY_A, KEY_B, file_names, hash_of, open};

/// The user hash a store names `sub`'s files with.
/// Pages through `list` (or `pending_revocations`): the subjects seen, the unreadable reports, the page count.
async fn all_pages(
    store: &FileStore,
    limit: usize,
    pending: bool,
) -> (Vec<String>, Vec<String>, usize) {
    let (mut seen, mut unreadable, mut pages) = (Vec::new(), Vec::new(), 0);
    let mut cursor = None;
    loop {
        let page: CredentialPage = if pending {
            store.pending_revocations(cursor.take(), limit).await
        } else {
            store.list(cursor.take(), limit).await
        }
        .unwrap();
        pages += 1;
        assert!(page.items.len() + page.unreadable.len() <= limit);
        seen.extend(page.items.iter().map(|c| c.subject.as_str().to_owned()));
        unreadable.extend(page.unreadable);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    seen.sort();
    (seen, unreadable, pages)
}

async fn forget(store: &FileStore, sub: &str) {
    let mut cred = store.put(&canary_credential(sub)).await.unwrap();
    cred.mark_forgotten(NOW);
    store.put(&cred).await.unwrap();
}

fn tear(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

#[tokio::test]
async fn a_page_reads_only_its_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path(), KEY_A);
    let subs: Vec<String> = (0..40).map(|i| format!("10{i:02}")).collect();
    for s in &subs {
        writer.put(&canary_credential(s)).await.unwrap();
    }
    // The record last in the store's order is torn: pages before it never look at it.
    let last = subs
        .iter()
        .max_by_key(|s| hash_of(&writer, s))
        .unwrap()
        .clone();
    tear(&writer.credential_path(&subject(&last)));

    let reader = open(dir.path(), KEY_A);
    assert_eq!(reader.record_reads(), 0);
    let first = reader.list(None, 5).await.unwrap();
    assert_eq!(first.items.len(), 5);
    assert!(first.unreadable.is_empty(), "{:?}", first.unreadable);
    assert!(first.next_cursor.is_some());
    assert_eq!(
        reader.record_reads(),
        5,
        "one page reads its own records only"
    );

    let (seen, unreadable, pages) = all_pages(&reader, 5, false).await;
    assert_eq!(pages, 8);
    assert_eq!(
        reader.record_reads(),
        5 + 40,
        "a full listing reads each record once"
    );
    let mut expected: Vec<String> = subs.iter().filter(|s| **s != last).cloned().collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(unreadable.len(), 1);
    assert!(unreadable[0].contains(&hash_of(&reader, &last)));
}

#[tokio::test]
async fn a_listing_goes_on_past_unreadable_records_and_names_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    for s in ["1", "2", "3", "5", "6"] {
        store.put(&canary_credential(s)).await.unwrap();
    }
    // Torn; sealed under a key this store does not have; another user's record under this user's name.
    tear(&store.credential_path(&subject("2")));
    open(dir.path(), KEY_B)
        .put(&canary_credential("4"))
        .await
        .unwrap();
    std::fs::copy(
        store.credential_path(&subject("6")),
        store.credential_path(&subject("5")),
    )
    .unwrap();

    for _ in 0..2 {
        let (seen, unreadable, pages) = all_pages(&store, 2, false).await;
        assert_eq!(seen, ["1", "3", "6"]);
        assert_eq!(pages, 3);
        assert_eq!(unreadable.len(), 3, "{unreadable:?}");
        for (sub, why) in [
            ("2", "not a valid credential file"),
            ("4", "(subject 4, version 1)"),
            ("5", "another user's record"),
        ] {
            let file = format!("credentials/{}.json", hash_of(&store, sub));
            let report = unreadable
                .iter()
                .find(|r| r.contains(&file))
                .unwrap_or_else(|| panic!("{file} not reported: {unreadable:?}"));
            assert!(report.contains(why), "{report}");
        }
        for report in &unreadable {
            for secret in ["canary", "1//", "ya29", "v1.a.", "v1.b."] {
                assert!(!report.contains(secret), "{report}");
            }
        }
    }
}

#[tokio::test]
async fn pending_revocations_read_only_the_marked_records() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path(), KEY_A);
    for i in 0..12 {
        let s = format!("20{i:02}");
        if i % 4 == 1 {
            forget(&writer, &s).await;
        } else {
            writer.put(&canary_credential(&s)).await.unwrap();
        }
    }
    assert_eq!(file_names(&dir.path().join("pending")).len(), 3);

    let reader = open(dir.path(), KEY_A);
    let (seen, unreadable, _) = all_pages(&reader, 2, true).await;
    assert_eq!(seen, ["2001", "2005", "2009"]);
    assert!(unreadable.is_empty());
    assert_eq!(reader.record_reads(), 3, "only the marked records are read");
    for s in &seen {
        assert!(
            reader
                .get(&subject(s))
                .await
                .unwrap()
                .unwrap()
                .is_forgotten()
        );
    }
}

#[tokio::test]
async fn a_marker_follows_its_record_through_sign_in_forget_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let pending = dir.path().join("pending");
    let hash = hash_of(&store, "30");
    forget(&store, "30").await;
    assert_eq!(file_names(&pending), std::slice::from_ref(&hash));
    // A sign-in replaces the pending revocation: the marker goes with it.
    let mut back = store.get(&subject("30")).await.unwrap().unwrap();
    back.consent = offline_access_domain::ConsentState::Active;
    let mut back = store.put(&back).await.unwrap();
    assert!(file_names(&pending).is_empty());
    back.mark_forgotten(NOW);
    let gone = store.put(&back).await.unwrap();
    assert_eq!(file_names(&pending), [hash]);
    store.delete(&gone.subject, gone.version).await.unwrap();
    assert!(file_names(&pending).is_empty());
}

#[tokio::test]
async fn stale_pending_markers_are_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    let pending = dir.path().join("pending");
    store.put(&canary_credential("41")).await.unwrap();
    forget(&store, "42").await;
    // Left by crashes: a marker of a record that is not forgotten, one of a record that is gone; and a stray.
    for name in [
        hash_of(&store, "41"),
        hash_of(&store, "43"),
        "stray".to_owned(),
    ] {
        std::fs::write(pending.join(name), b"").unwrap();
    }

    for limit in [1, 10] {
        let (seen, unreadable, _) = all_pages(&store, limit, true).await;
        assert_eq!(seen, ["42"], "limit {limit}");
        assert!(unreadable.is_empty());
    }
    let mut left = file_names(&pending);
    left.retain(|n| n != "stray");
    assert_eq!(left, [hash_of(&store, "42")], "stale markers removed");
    // The record a stale marker pointed at is untouched.
    let read = store.get(&subject("41")).await.unwrap().unwrap();
    assert!(!read.is_forgotten());
}

#[tokio::test]
async fn a_pending_revocation_that_cannot_be_read_is_reported_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    forget(&store, "51").await;
    forget(&store, "53").await;
    forget(&open(dir.path(), KEY_B), "52").await;

    let (seen, unreadable, _) = all_pages(&store, 1, true).await;
    assert_eq!(seen, ["51", "53"]);
    assert_eq!(unreadable.len(), 1);
    assert!(unreadable[0].contains(&hash_of(&store, "52")));
    assert!(
        dir.path()
            .join("pending")
            .join(hash_of(&store, "52"))
            .exists(),
        "its marker stays: it is still a pending revocation"
    );
    // A store with the key lists all three.
    let both = open(dir.path(), &format!("{KEY_A},{KEY_B}"));
    assert_eq!(all_pages(&both, 1, true).await.0, ["51", "52", "53"]);
}

#[tokio::test]
async fn a_cursor_this_store_did_not_make_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), KEY_A);
    store.put(&canary_credential("61")).await.unwrap();
    for bad in ["../etc", "61", "", &"g".repeat(64)] {
        assert!(matches!(
            store.list(Some(bad.to_owned()), 10).await,
            Err(StoreError::Other(_))
        ));
        assert!(matches!(
            store.pending_revocations(Some(bad.to_owned()), 10).await,
            Err(StoreError::Other(_))
        ));
    }
    let hash = hash_of(&store, "61");
    assert!(
        store.list(Some(hash), 10).await.unwrap().items.is_empty(),
        "a cursor is exclusive"
    );
    let before_everything = "0".repeat(64);
    assert_eq!(
        store
            .list(Some(before_everything), 10)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}
