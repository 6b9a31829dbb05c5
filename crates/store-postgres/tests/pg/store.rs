//! Reads and writes: round trips, the version rule, the refresh-token rule, paging, and what lies at rest.

use std::sync::Arc;

use offline_access_domain::{ConsentState, CredentialStore, RefreshToken, Scopes, StoreError};

use crate::support::{KEY_A, KEY_B, NOW, TestDb, access_of, credential, refresh_of, ring, subject};

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn get_of_a_missing_user_is_none() {
    let db = TestDb::new();
    let store = db.store().await;
    assert!(store.get(&subject("nobody")).await.unwrap().is_none());
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn put_then_get_round_trips_every_field() {
    let db = TestDb::new();
    let store = db.store().await;
    let cred = credential("1001", Some("1//refresh-1001"), "ya29.access-1001");
    let stored = store.put(&cred).await.unwrap();
    assert!(stored.version > 0);
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    for c in [&stored, &read] {
        assert_eq!(c.subject, cred.subject);
        assert_eq!(c.profile, cred.profile);
        assert_eq!(c.scopes, cred.scopes);
        assert_eq!(refresh_of(c).as_deref(), Some("1//refresh-1001"));
        assert_eq!(access_of(c).as_deref(), Some("ya29.access-1001"));
        assert_eq!(
            c.access.as_ref().unwrap().expires_at,
            cred.access.as_ref().unwrap().expires_at
        );
        // The access token's own scopes, not the grant's.
        assert_eq!(
            c.access.as_ref().unwrap().scopes,
            Scopes::parse("openid email").unwrap()
        );
        assert_ne!(c.access.as_ref().unwrap().scopes, c.scopes);
        assert_eq!(c.consent, ConsentState::Active);
        assert_eq!(c.version, stored.version);
        assert_eq!(c.created_at, cred.created_at);
        assert_eq!(c.updated_at, cred.updated_at);
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_credential_without_tokens_round_trips() {
    let db = TestDb::new();
    let store = db.store().await;
    let mut cred = credential("1002", None, "ya29.x");
    cred.access = None;
    store.put(&cred).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert!(read.refresh_token.is_none() && read.access.is_none());
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_write_with_a_stale_version_conflicts_and_changes_nothing() {
    let db = TestDb::new();
    let store = db.store().await;
    let cred = credential("1101", Some("1//r"), "ya29.a");
    let v1 = store.put(&cred).await.unwrap();
    // A second first write.
    assert!(matches!(store.put(&cred).await, Err(StoreError::Conflict)));
    let mut next = v1.clone();
    next.access = credential("1101", None, "ya29.b").access;
    let v2 = store.put(&next).await.unwrap();
    assert!(v2.version > v1.version);
    // Writing again from the first version.
    let mut stale = v1.clone();
    stale.access = credential("1101", None, "ya29.stale").access;
    assert!(matches!(store.put(&stale).await, Err(StoreError::Conflict)));
    // A version that was never stored, for a user that does not exist.
    let mut phantom = credential("1102", Some("1//p"), "ya29.p");
    phantom.version = v2.version + 5;
    assert!(matches!(
        store.put(&phantom).await,
        Err(StoreError::Conflict)
    ));
    assert!(store.get(&phantom.subject).await.unwrap().is_none());
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.version, v2.version);
    assert_eq!(access_of(&read).as_deref(), Some("ya29.b"));
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_write_without_a_refresh_token_keeps_the_stored_one() {
    let db = TestDb::new();
    let store = db.store().await;
    let v1 = store
        .put(&credential("1201", Some("1//keep-me"), "ya29.a"))
        .await
        .unwrap();
    let mut next = v1.clone();
    next.refresh_token = None;
    next.access = credential("1201", None, "ya29.b").access;
    let v2 = store.put(&next).await.unwrap();
    assert_eq!(refresh_of(&v2).as_deref(), Some("1//keep-me"));
    let read = store.get(&v1.subject).await.unwrap().unwrap();
    assert_eq!(refresh_of(&read).as_deref(), Some("1//keep-me"));
    assert_eq!(access_of(&read).as_deref(), Some("ya29.b"));
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_returned_refresh_token_replaces_the_stored_one() {
    let db = TestDb::new();
    let store = db.store().await;
    let v1 = store
        .put(&credential("1202", Some("1//old"), "ya29.a"))
        .await
        .unwrap();
    let mut next = v1.clone();
    next.refresh_token = Some(RefreshToken::parse("1//new").unwrap());
    store.put(&next).await.unwrap();
    let read = store.get(&v1.subject).await.unwrap().unwrap();
    assert_eq!(refresh_of(&read).as_deref(), Some("1//new"));
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn consent_moves_from_active_to_revoked_and_back() {
    let db = TestDb::new();
    let store = db.store().await;
    let mut cred = store
        .put(&credential("1301", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    cred.mark_revoked(crate::support::NOW);
    let revoked = store.put(&cred).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.consent, ConsentState::Revoked);
    assert!(read.access.is_none());
    assert_eq!(refresh_of(&read).as_deref(), Some("1//r"));
    let mut again = revoked;
    again.refresh_token = Some(RefreshToken::parse("1//r2").unwrap());
    again.consent = ConsentState::Active;
    store.put(&again).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.consent, ConsentState::Active);
    assert!(read.offline_access());
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_forgotten_credential_keeps_only_its_refresh_token() {
    let db = TestDb::new();
    let store = db.store().await;
    let mut cred = store
        .put(&credential("1302", Some("1//pending-revocation"), "ya29.a"))
        .await
        .unwrap();
    cred.mark_forgotten(crate::support::NOW);
    store.put(&cred).await.unwrap();
    let read = store.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(read.consent, ConsentState::Forgotten);
    assert!(read.is_forgotten() && read.access.is_none());
    assert_eq!(refresh_of(&read).as_deref(), Some("1//pending-revocation"));
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn an_unknown_consent_state_in_a_row_is_a_corrupt_error() {
    let db = TestDb::new();
    let store = db.store().await;
    store
        .put(&credential("1303", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    db.raw()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".credentials SET consent = 'paused' WHERE subject = '1303'",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap();
    match store.get(&subject("1303")).await {
        Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains("paused"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn delete_removes_the_row_only_at_its_version() {
    let db = TestDb::new();
    let store = db.store().await;
    let cred = credential("1401", Some("1//r"), "ya29.a");
    let stored = store.put(&cred).await.unwrap();
    for wrong in [0, stored.version - 1, stored.version + 1, u64::MAX] {
        assert!(
            matches!(
                store.delete(&cred.subject, wrong).await,
                Err(StoreError::Conflict)
            ),
            "delete at {wrong}"
        );
    }
    assert!(store.get(&cred.subject).await.unwrap().is_some());
    store.delete(&cred.subject, stored.version).await.unwrap();
    assert!(store.get(&cred.subject).await.unwrap().is_none());
    // No row: a conflict too.
    assert!(matches!(
        store.delete(&cred.subject, stored.version).await,
        Err(StoreError::Conflict)
    ));
    // A deleted user's next first write gets a greater version.
    assert!(store.put(&cred).await.unwrap().version > stored.version);
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_never_repeat_across_a_delete_on_two_instances() {
    let db = TestDb::new();
    // Two stores (pools) on one schema stand for two service instances.
    let (a, b) = (db.store().await, db.store().await);
    let sub = subject("1450");
    let v1 = a
        .put(&credential("1450", Some("1//first"), "ya29.a"))
        .await
        .unwrap();
    let v2 = a.put(&v1).await.unwrap();
    // Instance B reads (a refresh about to write), then A forgets the user, then the user signs in again on A.
    let read_before_forget = b.get(&sub).await.unwrap().unwrap();
    assert_eq!(read_before_forget.version, v2.version);
    a.delete(&sub, v2.version).await.unwrap();
    let again = a
        .put(&credential("1450", Some("1//second"), "ya29.b"))
        .await
        .unwrap();
    assert!(
        again.version > v2.version,
        "{} <= {}",
        again.version,
        v2.version
    );
    // B's write and B's delete, read before the forget, conflict: the later sign-in stays.
    let mut stale = read_before_forget.clone();
    stale.refresh_token = Some(RefreshToken::parse("1//stale").unwrap());
    assert!(matches!(b.put(&stale).await, Err(StoreError::Conflict)));
    assert!(matches!(
        b.delete(&sub, read_before_forget.version).await,
        Err(StoreError::Conflict)
    ));
    let read = b.get(&sub).await.unwrap().unwrap();
    assert_eq!(read.version, again.version);
    assert_eq!(refresh_of(&read).as_deref(), Some("1//second"));
    // Alternating instances, deletes and first writes: strictly increasing throughout.
    let mut last = again;
    for i in 0..6 {
        let (writer, deleter) = if i % 2 == 0 { (&b, &a) } else { (&a, &b) };
        deleter.delete(&sub, last.version).await.unwrap();
        let next = writer
            .put(&credential("1450", Some("1//r"), "ya29.c"))
            .await
            .unwrap();
        assert!(next.version > last.version);
        last = next;
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_record_whose_write_count_is_full_moves_to_a_new_epoch_and_stays_ahead() {
    let db = TestDb::new();
    let store = db.store().await;
    let sub = subject("1460");
    let first = store
        .put(&credential("1460", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    // A version is `epoch << 32 | count`; a fresh schema's first record is epoch 0, count 1.
    assert_eq!(first.version, 1);
    assert_eq!(store.put(&first).await.unwrap().version, 2);
    // As if the record had been written 2^32 - 1 times.
    let full = i64::from(u32::MAX);
    db.raw()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".credentials SET version = $1 WHERE subject = '1460'",
                db.schema
            ),
            &[&full],
        )
        .await
        .unwrap();
    let at_full = store.get(&sub).await.unwrap().unwrap();
    let next = store.put(&at_full).await.unwrap();
    assert!(next.version > at_full.version);
    assert_eq!(
        next.version & u64::from(u32::MAX),
        1,
        "the first of a new epoch"
    );
    assert!(matches!(
        store.put(&at_full).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.put(&next).await.unwrap().version, next.version + 1);
}

/// Pages through `list` (or `pending_revocations`) `limit` at a time: the subjects read, the unreadable reports,
/// and how many pages it took.
async fn all_pages(
    store: &dyn CredentialStore,
    pending_only: bool,
    limit: usize,
) -> (Vec<String>, Vec<String>, usize) {
    let (mut seen, mut unreadable) = (Vec::new(), Vec::new());
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = if pending_only {
            store.pending_revocations(cursor.clone(), limit).await
        } else {
            store.list(cursor.clone(), limit).await
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
    (seen, unreadable, pages)
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn listing_pages_through_every_user_in_byte_order() {
    let db = TestDb::new();
    let store = db.store().await;
    // Mixed case and digits: byte order differs from most locale collations.
    let mut subjects: Vec<String> = (0..23)
        .map(|i| format!("{}{i:03}", ["a", "B", "c"][i % 3]))
        .collect();
    for s in &subjects {
        store
            .put(&credential(s, Some("1//r"), "ya29.a"))
            .await
            .unwrap();
    }
    subjects.sort();
    let (seen, unreadable, pages) = all_pages(&store, false, 10).await;
    assert_eq!(pages, 3);
    assert_eq!(seen, subjects);
    assert!(unreadable.is_empty());
    assert!(store.list(None, 0).await.unwrap().items.is_empty());
    let exact = store.list(None, 23).await.unwrap();
    assert_eq!(exact.items.len(), 23);
    assert!(exact.next_cursor.is_none());
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_cursor_this_store_did_not_make_is_refused() {
    let db = TestDb::new();
    let store = db.store().await;
    for bad in [String::new(), "x".repeat(256), "a\0b".to_owned()] {
        assert!(
            matches!(
                store.list(Some(bad.clone()), 10).await,
                Err(StoreError::Other(_))
            ),
            "{bad:?}"
        );
        assert!(matches!(
            store.pending_revocations(Some(bad), 10).await,
            Err(StoreError::Other(_))
        ));
    }
}

/// Overwrites one column of a row with raw SQL (`value` as text, cast by the column).
async fn set_column(db: &TestDb, sub: &str, column: &str, value: &str) {
    db.raw()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".credentials SET {column} = $1 WHERE subject = $2",
                db.schema
            ),
            &[&value, &sub],
        )
        .await
        .unwrap();
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn unreadable_rows_are_reported_by_the_listings_which_go_on_past_them() {
    let db = TestDb::new();
    let store = db.store().await;
    let other_key = db
        .store_with(ring(&format!("gone:{KEY_B}")), db.options())
        .await;
    for sub in ["u1", "u2", "u4", "u6"] {
        let mut cred = store
            .put(&credential(sub, Some(&format!("1//r-{sub}")), "ya29.a"))
            .await
            .unwrap();
        cred.mark_forgotten(NOW);
        store.put(&cred).await.unwrap();
    }
    // u3: garbage ciphertext (well-formed prefix, so the table's CHECK lets it in); u5: sealed under a key this
    // store does not have; u7: a profile that is not one. All three forgotten, so both listings meet them.
    for sub in ["u3", "u5", "u7"] {
        let writer = if sub == "u5" { &other_key } else { &store };
        let mut cred = writer
            .put(&credential(sub, Some("1//canary-secret"), "ya29.a"))
            .await
            .unwrap();
        cred.mark_forgotten(NOW);
        writer.put(&cred).await.unwrap();
    }
    set_column(
        &db,
        "u3",
        "refresh_token",
        "v1.k1.AAAAnot-a-real-ciphertextAAAAAAAAAAAAAAAAAA",
    )
    .await;
    db.raw()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".credentials SET profile = '\"not a profile\"' WHERE subject = 'u7'",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap();
    for pending_only in [false, true] {
        for limit in [1, 2, 3, 100] {
            let (seen, unreadable, _) = all_pages(&store, pending_only, limit).await;
            assert_eq!(seen, ["u1", "u2", "u4", "u6"], "limit {limit}");
            assert_eq!(unreadable.len(), 3, "{unreadable:?}");
            for (report, sub) in unreadable.iter().zip(["u3", "u5", "u7"]) {
                assert!(report.starts_with(&format!("{sub}: ")), "{report}");
                assert!(!report.contains("canary"), "{report}");
            }
            assert!(unreadable[1].contains("gone"), "names the missing key");
        }
    }
    // A page made only of an unreadable row still moves the cursor on.
    let page = store.list(Some("u2".to_owned()), 1).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.unreadable.len(), 1);
    assert_eq!(page.next_cursor.as_deref(), Some("u3"));
    // Each can still be deleted at its version (no decryption needed).
    let raw = db.raw().await;
    for sub in ["u3", "u5", "u7"] {
        let version: i64 = raw
            .query_one(
                &format!(
                    "SELECT version FROM \"{}\".credentials WHERE subject = $1",
                    db.schema
                ),
                &[&sub],
            )
            .await
            .unwrap()
            .get(0);
        store
            .delete(&subject(sub), u64::try_from(version).unwrap())
            .await
            .unwrap();
    }
    let (seen, unreadable, _) = all_pages(&store, false, 2).await;
    assert_eq!(seen, ["u1", "u2", "u4", "u6"]);
    assert!(unreadable.is_empty());
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn pending_revocations_lists_only_forgotten_rows_through_the_partial_index() {
    let db = TestDb::new();
    let store = db.store().await;
    for i in 0..12 {
        let sub = format!("p{i:02}");
        let mut cred = store
            .put(&credential(&sub, Some("1//r"), "ya29.a"))
            .await
            .unwrap();
        match i % 3 {
            0 => cred.mark_forgotten(NOW),
            1 => cred.mark_revoked(NOW),
            _ => continue,
        }
        store.put(&cred).await.unwrap();
    }
    let (seen, unreadable, pages) = all_pages(&store, true, 2).await;
    assert_eq!(seen, ["p00", "p03", "p06", "p09"]);
    assert!(unreadable.is_empty());
    assert_eq!(pages, 2);
    let read = store.pending_revocations(None, 10).await.unwrap();
    assert!(read.items.iter().all(|c| c.is_forgotten()
        && c.access.is_none()
        && refresh_of(c).as_deref() == Some("1//r")));
    // A sign-in replacing one takes it off the list; so does a delete.
    let mut back = store.get(&subject("p00")).await.unwrap().unwrap();
    back.consent = ConsentState::Active;
    store.put(&back).await.unwrap();
    let gone = store.get(&subject("p03")).await.unwrap().unwrap();
    store.delete(&gone.subject, gone.version).await.unwrap();
    let (seen, _, _) = all_pages(&store, true, 10).await;
    assert_eq!(seen, ["p06", "p09"]);
    // The planner can answer the query from the partial index alone (sequential scans priced out, as on a big
    // table): it never has to read the other rows.
    let raw = db.raw().await;
    let plan: Vec<String> = raw
        .simple_query(&format!(
            "SET enable_seqscan = off; EXPLAIN SELECT subject FROM \"{}\".credentials \
             WHERE consent = 'forgotten' AND subject > 'p00' ORDER BY subject LIMIT 10",
            db.schema
        ))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("credentials_forgotten"), "{plan}");
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_of_one_version_have_exactly_one_winner() {
    const WRITERS: usize = 12;
    let db = TestDb::new();
    let store = Arc::new(db.store().await);
    let mut expected_version = 0;
    for round in 0..2 {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut cred = credential("1501", Some(&format!("1//writer-{i}")), "ya29.a");
                    cred.version = expected_version;
                    store.put(&cred).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(stored) => {
                    assert!(stored.version > expected_version);
                    winners.push(stored);
                }
                Err(StoreError::Conflict) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        let read = store.get(&subject("1501")).await.unwrap().unwrap();
        assert_eq!(read.version, winners[0].version);
        assert_eq!(refresh_of(&read), refresh_of(&winners[0]));
        expected_version = read.version;
    }
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn rows_hold_only_ciphertext_bound_to_the_newest_key() {
    let db = TestDb::new();
    let store = db.store().await;
    let cred = credential(
        "1601",
        Some("1//canary-refresh-1601"),
        "ya29.canary-access-1601",
    );
    store.put(&cred).await.unwrap();
    let raw = db.raw().await;
    let row = raw
        .query_one(
            &format!(
                "SELECT c::text, refresh_token, access_token, key_id FROM \"{}\".credentials c WHERE subject = $1",
                db.schema
            ),
            &[&"1601"],
        )
        .await
        .unwrap();
    let whole: String = row.get(0);
    assert!(
        !whole.contains("canary"),
        "token text found at rest: {whole}"
    );
    let refresh: String = row.get(1);
    let access: String = row.get(2);
    assert!(refresh.starts_with("v1.k1.") && access.starts_with("v1.k1."));
    assert_eq!(row.get::<_, String>(3), "k1");
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_row_sealed_under_an_unknown_key_is_a_loud_corrupt_error_and_is_never_overwritten() {
    let db = TestDb::new();
    let writer = db
        .store_with(ring(&format!("old:{KEY_A}")), db.options())
        .await;
    let reader = db
        .store_with(ring(&format!("new:{KEY_B}")), db.options())
        .await;
    let cred = credential("1701", Some("1//r"), "ya29.a");
    let written = writer.put(&cred).await.unwrap();
    match reader.get(&cred.subject).await {
        Err(StoreError::Corrupt { subject, reason }) => {
            assert_eq!(subject, "1701");
            assert!(reason.contains("old"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A listing reports it and goes on.
    let page = reader.list(None, 10).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.unreadable.len(), 1);
    assert!(
        page.unreadable[0].starts_with("1701: "),
        "{:?}",
        page.unreadable
    );
    let mut overwrite = cred.clone();
    overwrite.version = written.version;
    assert!(matches!(
        reader.put(&overwrite).await,
        Err(StoreError::Corrupt { .. })
    ));
    overwrite.refresh_token = None;
    assert!(matches!(
        reader.put(&overwrite).await,
        Err(StoreError::Corrupt { .. })
    ));
    let kept = writer.get(&cred.subject).await.unwrap().unwrap();
    assert_eq!(kept.version, written.version);
    assert_eq!(refresh_of(&kept).as_deref(), Some("1//r"));
    // Deleted at its version without being read (the operator's way out when a key is lost).
    reader.delete(&cred.subject, written.version).await.unwrap();
    assert!(writer.get(&cred.subject).await.unwrap().is_none());
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn a_token_copied_to_another_users_row_does_not_open() {
    let db = TestDb::new();
    let store = db.store().await;
    store
        .put(&credential("1801", Some("1//alice"), "ya29.a"))
        .await
        .unwrap();
    store
        .put(&credential("1802", Some("1//bob"), "ya29.b"))
        .await
        .unwrap();
    let raw = db.raw().await;
    raw.execute(
        &format!(
            "UPDATE \"{0}\".credentials SET refresh_token = (SELECT refresh_token FROM \"{0}\".credentials \
             WHERE subject = '1801') WHERE subject = '1802'",
            db.schema
        ),
        &[],
    )
    .await
    .unwrap();
    assert!(matches!(
        store.get(&subject("1802")).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test]
async fn the_table_refuses_a_token_that_is_not_ciphertext() {
    let db = TestDb::new();
    let store = db.store().await;
    store
        .put(&credential("1901", Some("1//r"), "ya29.a"))
        .await
        .unwrap();
    let raw = db.raw().await;
    let refused = raw
        .execute(
            &format!(
                "UPDATE \"{}\".credentials SET refresh_token = '1//plaintext' WHERE subject = '1901'",
                db.schema
            ),
            &[],
        )
        .await;
    assert!(refused.is_err());
}
