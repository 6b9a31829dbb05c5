//! Use-case tests of events and security events: what each grant change records (in the same write), and what
//! each RISC event does — against the in-memory store and mockall ports.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::events::{EventFilter, EventStore};
use crate::memory::MemoryStore;
use crate::ports::{CredentialStore, MockDrive, MockTokenEndpoint, TokenError};
use crate::risc::{
    Receipt, RiscEvent, RiscSubject, SecurityEvent, TokenIdentifier, TokenIdentifierAlg,
};
use crate::service::{AccessError, OfflineAccess, Ports, Settings};
use crate::service_tests::{
    ALICE, BOB, START, code, exchanging, harness, refreshing, signed_in, sub, token_response,
    verifier,
};
use base64::Engine as _;

/// A service over `store` recording events, with these token endpoint and Drive mocks.
fn service(
    tokens: MockTokenEndpoint,
    store: &MemoryStore,
    clock: Arc<crate::memory::ManualClock>,
) -> OfflineAccess {
    OfflineAccess::new(
        Ports {
            tokens: Arc::new(tokens),
            verifier: Arc::new(verifier()),
            store: Arc::new(store.clone()),
            drive: Arc::new(MockDrive::new()),
            clock,
        },
        Settings {
            backoff_base: std::time::Duration::from_millis(10),
            backoff_max: std::time::Duration::from_millis(50),
            ..Settings::default()
        },
    )
    .with_events(Arc::new(store.clone()), true)
}

/// The recorded events' bodies, oldest first, as JSON.
async fn recorded(store: &MemoryStore) -> Vec<serde_json::Value> {
    store
        .list_events(EventFilter::All, None, 1000)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| serde_json::from_str(&e.record.body).unwrap())
        .collect()
}

fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

fn clock() -> Arc<crate::memory::ManualClock> {
    Arc::new(crate::memory::ManualClock::new(START))
}

fn set(jti: &str, events: Vec<RiscEvent>) -> SecurityEvent {
    SecurityEvent {
        jti: jti.to_owned(),
        issued_at: START,
        events,
    }
}

fn account(s: &str) -> RiscSubject {
    RiscSubject::Account(sub(s))
}

/// A service with Alice signed in (refresh token `1//r1`), recording events; refreshes panic unless allowed.
async fn alice_signed_in(
    tokens: MockTokenEndpoint,
) -> (OfflineAccess, MemoryStore, Arc<crate::memory::ManualClock>) {
    let store = MemoryStore::new();
    let clock = clock();
    let svc = service(tokens, &store, clock.clone());
    svc.sign_in(&code("4/0first"), None).await.unwrap();
    (svc, store, clock)
}

fn signing_in_alice() -> MockTokenEndpoint {
    exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]).0
}

#[tokio::test]
async fn a_sign_in_records_user_signed_in_in_its_write_and_a_wider_one_records_the_scope_change() {
    let (tokens, _) = exchanging(vec![
        token_response("ya29.a", Some("1//r1"), Some(ALICE)),
        {
            let mut wider = token_response("ya29.b", None, Some(ALICE));
            wider.scopes = Some(
                crate::Scopes::parse(&format!(
                    "{} https://www.googleapis.com/auth/calendar",
                    crate::service_tests::FULL_SCOPES
                ))
                .unwrap(),
            );
            wider
        },
    ]);
    let store = MemoryStore::new();
    let svc = service(tokens, &store, clock());
    svc.sign_in(&code("4/0first"), None).await.unwrap();
    svc.sign_in(&code("4/0second"), None).await.unwrap();

    let events = recorded(&store).await;
    assert_eq!(
        kinds(&events),
        ["user.signed_in", "user.signed_in", "grant.scopes_changed"]
    );
    assert_eq!(events[0]["data"]["sub"], ALICE);
    assert_eq!(events[0]["data"]["new_user"], true);
    assert_eq!(events[0]["data"]["offline_access"], true);
    assert_eq!(events[0]["data"]["email"], "alice@example.com");
    assert_eq!(events[0]["data"]["missing_scopes"], serde_json::json!([]));
    assert_eq!(events[1]["data"]["new_user"], false);
    assert_eq!(
        events[2]["data"],
        serde_json::json!({"sub": ALICE, "added": ["https://www.googleapis.com/auth/calendar"], "removed": []})
    );
    let bodies: Vec<String> = store
        .list_events(EventFilter::All, None, 10)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.record.body)
        .collect();
    for body in bodies {
        assert!(
            !body.contains("ya29.") && !body.contains("1//"),
            "no token in {body}"
        );
    }
}

#[tokio::test]
async fn without_an_outbox_nothing_is_recorded() {
    let (tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    assert!(recorded(&h.store).await.is_empty());
}

#[tokio::test]
async fn invalid_grant_on_refresh_records_grant_revoked_once() {
    let (tokens, _) = refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
        Err(TokenError::InvalidGrant)
    });
    let (svc, store, clock) = alice_signed_in(tokens).await;
    clock.advance(time::Duration::hours(2));
    assert!(matches!(
        svc.access_token(&sub(ALICE)).await,
        Err(AccessError::ReconsentRequired)
    ));
    assert!(matches!(
        svc.access_token(&sub(ALICE)).await,
        Err(AccessError::ReconsentRequired)
    ));
    let events = recorded(&store).await;
    assert_eq!(kinds(&events), ["user.signed_in", "grant.revoked"]);
    assert_eq!(
        events[1]["data"],
        serde_json::json!({"sub": ALICE, "source": "invalid_grant"})
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_outage_records_refresh_failing_once_and_the_next_refresh_that_works_recovered() {
    let (tokens, calls) = refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |i| {
        if i < 6 {
            Err(TokenError::Unavailable { retry_after: None })
        } else {
            Ok(token_response("ya29.new", None, None))
        }
    });
    let (svc, store, clock) = alice_signed_in(tokens).await;
    clock.advance(time::Duration::hours(2));
    for _ in 0..2 {
        assert!(matches!(
            svc.access_token(&sub(ALICE)).await,
            Err(AccessError::UpstreamUnavailable)
        ));
    }
    assert!(
        store
            .get(&sub(ALICE))
            .await
            .unwrap()
            .unwrap()
            .refresh_failing_since
            .is_some()
    );
    assert_eq!(
        svc.access_token(&sub(ALICE)).await.unwrap().expose_secret(),
        "ya29.new"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 7);
    let events = recorded(&store).await;
    assert_eq!(
        kinds(&events),
        ["user.signed_in", "grant.refresh_failing", "grant.recovered"]
    );
    assert!(
        store
            .get(&sub(ALICE))
            .await
            .unwrap()
            .unwrap()
            .refresh_failing_since
            .is_none()
    );
}

#[tokio::test]
async fn forget_records_grant_revoked_and_user_forgotten_with_the_delete() {
    let mut tokens = signing_in_alice();
    tokens.expect_revoke().returning(|_| Ok(()));
    let (svc, store, _) = alice_signed_in(tokens).await;
    svc.forget(&sub(ALICE)).await.unwrap();
    let events = recorded(&store).await;
    assert_eq!(
        kinds(&events),
        ["user.signed_in", "grant.revoked", "user.forgotten"]
    );
    assert_eq!(events[1]["data"]["source"], "forget");
}

#[tokio::test]
async fn risc_tokens_revoked_revokes_and_purges_then_no_token_is_handed_out_without_google() {
    let (svc, store, _) = alice_signed_in(signing_in_alice()).await;
    let receipt = svc
        .receive_security_event(&set("j1", vec![RiscEvent::TokensRevoked(account(ALICE))]))
        .await
        .unwrap();
    assert_eq!(receipt, Receipt::Acted);
    let stored = store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(stored.consent, crate::ConsentState::Revoked);
    assert!(stored.access.is_none());
    // The mock has no refresh expectation: a call to Google would panic.
    assert!(matches!(
        svc.access_token(&sub(ALICE)).await,
        Err(AccessError::ReconsentRequired)
    ));
    let events = recorded(&store).await;
    assert_eq!(kinds(&events), ["user.signed_in", "grant.revoked"]);
    assert_eq!(
        events[1]["data"],
        serde_json::json!({"sub": ALICE, "source": "risc"})
    );
}

fn double_sha512_b64(token: &str) -> String {
    let once = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, token.as_bytes());
    let twice = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, once.as_ref());
    base64::engine::general_purpose::STANDARD.encode(twice.as_ref())
}

#[tokio::test]
async fn risc_token_revoked_finds_the_credential_by_prefix_or_hash_and_only_that_one() {
    for alg in [
        TokenIdentifierAlg::Prefix,
        TokenIdentifierAlg::HashSha512Sha512,
    ] {
        let (tokens, _) = exchanging(vec![
            token_response("ya29.a", Some("1//r1-and-more-to-be-long"), Some(ALICE)),
            token_response("ya29.b", Some("1//r2-and-more-to-be-long"), Some(BOB)),
        ]);
        let store = MemoryStore::new();
        let svc = service(tokens, &store, clock());
        svc.sign_in(&code("4/0a"), None).await.unwrap();
        svc.sign_in(&code("4/0b"), None).await.unwrap();
        let named = match alg {
            TokenIdentifierAlg::Prefix => "1//r1-and-more-t".to_owned(),
            TokenIdentifierAlg::HashSha512Sha512 => double_sha512_b64("1//r1-and-more-to-be-long"),
        };
        let id = TokenIdentifier::new(alg, &named).unwrap();
        svc.receive_security_event(&set(
            "j",
            vec![RiscEvent::TokenRevoked(RiscSubject::Token(id))],
        ))
        .await
        .unwrap();
        let alice = store.get(&sub(ALICE)).await.unwrap().unwrap();
        let bob = store.get(&sub(BOB)).await.unwrap().unwrap();
        assert_eq!(alice.consent, crate::ConsentState::Revoked, "{alg:?}");
        assert_eq!(bob.consent, crate::ConsentState::Active, "{alg:?}");
        assert!(bob.refresh_token.is_some());
    }
}

#[tokio::test]
async fn account_disabled_refuses_every_use_without_google_until_enabled() {
    let (svc, store, _) = alice_signed_in(signing_in_alice()).await;
    svc.receive_security_event(&set(
        "d1",
        vec![RiscEvent::AccountDisabled(
            account(ALICE),
            Some("hijacking".into()),
        )],
    ))
    .await
    .unwrap();
    // A fresh access token is stored, but none is handed out and Google is not called (no refresh expectation).
    assert!(matches!(
        svc.access_token(&sub(ALICE)).await,
        Err(AccessError::AccountDisabled)
    ));
    let stored = store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(
        stored.disabled.as_ref().unwrap().reason.as_deref(),
        Some("hijacking")
    );
    assert!(
        stored.refresh_token.is_some(),
        "the grant is kept for when the account is enabled"
    );
    svc.receive_security_event(&set("e1", vec![RiscEvent::AccountEnabled(account(ALICE))]))
        .await
        .unwrap();
    assert!(
        store
            .get(&sub(ALICE))
            .await
            .unwrap()
            .unwrap()
            .disabled
            .is_none()
    );
    let events = recorded(&store).await;
    assert_eq!(
        kinds(&events),
        ["user.signed_in", "account.disabled", "account.enabled"]
    );
    assert_eq!(
        events[1]["data"],
        serde_json::json!({"sub": ALICE, "reason": "hijacking"})
    );
}

#[tokio::test]
async fn a_duplicate_jti_is_acted_on_once_even_after_a_later_event_undid_it() {
    let (svc, store, _) = alice_signed_in(signing_in_alice()).await;
    let disable = set(
        "same",
        vec![RiscEvent::AccountDisabled(account(ALICE), None)],
    );
    assert_eq!(
        svc.receive_security_event(&disable).await.unwrap(),
        Receipt::Acted
    );
    svc.receive_security_event(&set(
        "enable",
        vec![RiscEvent::AccountEnabled(account(ALICE))],
    ))
    .await
    .unwrap();
    assert_eq!(
        svc.receive_security_event(&disable).await.unwrap(),
        Receipt::Duplicate
    );
    assert!(
        store
            .get(&sub(ALICE))
            .await
            .unwrap()
            .unwrap()
            .disabled
            .is_none()
    );
}

#[tokio::test]
async fn notices_are_recorded_for_known_users_only_and_verification_with_its_state() {
    let (svc, store, _) = alice_signed_in(signing_in_alice()).await;
    svc.receive_security_event(&set(
        "n1",
        vec![
            RiscEvent::SessionsRevoked(account(ALICE)),
            RiscEvent::CredentialChangeRequired(account(ALICE)),
            RiscEvent::SessionsRevoked(account(BOB)),
            RiscEvent::TokensRevoked(account(BOB)),
            RiscEvent::Verification(Some("st-1".into())),
            RiscEvent::Unsupported("https://example.com/other".into()),
        ],
    ))
    .await
    .unwrap();
    let events = recorded(&store).await;
    assert_eq!(
        kinds(&events),
        [
            "user.signed_in",
            "account.sessions_revoked",
            "account.credential_change_required",
            "risc.verification"
        ]
    );
    assert_eq!(events[3]["data"], serde_json::json!({"state": "st-1"}));
    assert!(store.get(&sub(BOB)).await.unwrap().is_none());
}

#[tokio::test]
async fn a_security_event_without_an_event_store_is_refused() {
    let (tokens, _) = exchanging(vec![]);
    let h = harness(tokens, MockDrive::new());
    let result = h
        .service
        .receive_security_event(&set("x", vec![RiscEvent::Verification(None)]))
        .await;
    assert!(result.is_err());
}

/// A store whose writes fail while `failing` is set.
#[derive(Clone, Default)]
struct Flaky {
    inner: MemoryStore,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl CredentialStore for Flaky {
    async fn get(
        &self,
        s: &crate::Subject,
    ) -> Result<Option<crate::Credential>, crate::StoreError> {
        self.inner.get(s).await
    }
    async fn put_with(
        &self,
        c: &crate::Credential,
        e: &[crate::events::EventRecord],
    ) -> Result<crate::Credential, crate::StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(crate::StoreError::Unavailable("down".into()));
        }
        self.inner.put_with(c, e).await
    }
    async fn delete_with(
        &self,
        s: &crate::Subject,
        v: u64,
        e: &[crate::events::EventRecord],
    ) -> Result<(), crate::StoreError> {
        self.inner.delete_with(s, v, e).await
    }
    async fn find_by_refresh_token(
        &self,
        k: &str,
    ) -> Result<Vec<crate::Subject>, crate::StoreError> {
        self.inner.find_by_refresh_token(k).await
    }
    async fn list(
        &self,
        c: Option<String>,
        l: usize,
    ) -> Result<crate::CredentialPage, crate::StoreError> {
        self.inner.list(c, l).await
    }
    async fn pending_revocations(
        &self,
        c: Option<String>,
        l: usize,
    ) -> Result<crate::CredentialPage, crate::StoreError> {
        self.inner.pending_revocations(c, l).await
    }
    async fn lock_user(
        &self,
        s: &crate::Subject,
    ) -> Result<Box<dyn crate::UserLock>, crate::StoreError> {
        self.inner.lock_user(s).await
    }
    async fn ping(&self) -> Result<(), crate::StoreError> {
        Ok(())
    }
}

#[tokio::test]
async fn an_action_that_fails_forgets_its_jti_so_that_googles_retry_is_acted_on() {
    let flaky = Flaky::default();
    let svc = OfflineAccess::new(
        Ports {
            tokens: Arc::new(signing_in_alice()),
            verifier: Arc::new(verifier()),
            store: Arc::new(flaky.clone()),
            drive: Arc::new(MockDrive::new()),
            clock: clock(),
        },
        Settings::default(),
    )
    .with_events(Arc::new(flaky.inner.clone()), true);
    svc.sign_in(&code("4/0first"), None).await.unwrap();
    let event = set("retry-me", vec![RiscEvent::TokensRevoked(account(ALICE))]);
    flaky.failing.store(true, Ordering::SeqCst);
    assert!(svc.receive_security_event(&event).await.is_err());
    flaky.failing.store(false, Ordering::SeqCst);
    assert_eq!(
        svc.receive_security_event(&event).await.unwrap(),
        Receipt::Acted
    );
    let stored = flaky.inner.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(stored.consent, crate::ConsentState::Revoked);
}
