//! mockall tests of the use cases: the merge rule, single-flight refresh, 401 → refresh → retry, revoked consent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use time::macros::datetime;

use crate::credential::ConsentState;
use crate::identity::{Profile, Scopes, Subject};
use crate::memory::{ManualClock, MemoryStore};
use crate::ports::{
    CredentialStore, DriveError, DriveRequest, DriveResponse, MockDrive, MockIdTokenVerifier,
    MockTokenEndpoint, RevokeError, TokenError, TokenResponse, VerifiedIdToken, VerifyError,
};
use crate::secret::{AccessToken, AuthCode, IdToken, RefreshToken};
use crate::service::{
    AccessError, DriveUseError, ForgetError, OfflineAccess, Ports, Settings, SignInError,
};

pub(crate) const START: time::OffsetDateTime = datetime!(2026-11-24 12:00 UTC);
pub(crate) const ALICE: &str = "111111111111111111111";
pub(crate) const BOB: &str = "222222222222222222222";
pub(crate) const FULL_SCOPES: &str =
    "openid email profile https://www.googleapis.com/auth/drive.appdata";

pub(crate) fn sub(s: &str) -> Subject {
    Subject::parse(s).unwrap()
}

/// ID tokens in these tests carry the subject in their middle segment; the mock verifier reads it back.
pub(crate) fn id_token_for(subject: &str) -> IdToken {
    IdToken::parse(&format!("eyJhbGciOiJSUzI1NiJ9.{subject}.c2ln")).unwrap()
}

pub(crate) fn verifier() -> MockIdTokenVerifier {
    let mut verifier = MockIdTokenVerifier::new();
    verifier.expect_verify().returning(mock_verify);
    verifier.expect_verify_exchanged().returning(mock_verify);
    verifier.expect_keys_loaded().return_const(true);
    verifier
}

/// The mock verifier's rule: the subject is the token's middle segment; `bad` fails.
pub(crate) fn mock_verify(
    token: &IdToken,
    now: time::OffsetDateTime,
) -> Result<VerifiedIdToken, VerifyError> {
    {
        let subject = token.expose_secret().split('.').nth(1).unwrap_or_default();
        if subject == "bad" {
            return Err(VerifyError::BadSignature);
        }
        Ok(VerifiedIdToken {
            subject: Subject::parse(subject).map_err(|_| VerifyError::BadClaim("sub"))?,
            profile: Profile {
                email: crate::identity::Email::parse("alice@example.com").ok(),
                email_verified: true,
                ..Profile::default()
            },
            issuer: "https://accounts.google.com".into(),
            audience: "web-client".into(),
            authorized_party: None,
            issued_at: now,
            expires_at: now + time::Duration::hours(1),
        })
    }
}

pub(crate) fn token_response(
    access: &str,
    refresh: Option<&str>,
    subject: Option<&str>,
) -> TokenResponse {
    TokenResponse {
        access_token: AccessToken::parse(access).unwrap(),
        expires_in: Duration::from_secs(3599),
        refresh_token: refresh.map(|r| RefreshToken::parse(r).unwrap()),
        id_token: subject.map(id_token_for),
        scopes: Some(Scopes::parse(FULL_SCOPES).unwrap()),
    }
}

pub(crate) struct Harness {
    pub(crate) service: Arc<OfflineAccess>,
    pub(crate) store: MemoryStore,
    pub(crate) clock: Arc<ManualClock>,
}

pub(crate) fn harness(tokens: MockTokenEndpoint, drive: MockDrive) -> Harness {
    harness_with(
        tokens,
        drive,
        Settings {
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..Settings::default()
        },
    )
}

pub(crate) fn harness_with(
    tokens: MockTokenEndpoint,
    drive: MockDrive,
    settings: Settings,
) -> Harness {
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new(START));
    let service = OfflineAccess::new(
        Ports {
            tokens: Arc::new(tokens),
            verifier: Arc::new(verifier()),
            store: Arc::new(store.clone()),
            drive: Arc::new(drive),
            clock: clock.clone(),
        },
        settings,
    );
    Harness {
        service: Arc::new(service),
        store,
        clock,
    }
}

pub(crate) fn code(c: &str) -> AuthCode {
    AuthCode::parse(c).unwrap()
}

/// A token endpoint whose exchange answers each code in turn, counting calls.
pub(crate) fn exchanging(answers: Vec<TokenResponse>) -> (MockTokenEndpoint, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut tokens = MockTokenEndpoint::new();
    tokens.expect_exchange_code().returning(move |_| {
        let i = counter.fetch_add(1, Ordering::SeqCst);
        answers.get(i).cloned().ok_or(TokenError::InvalidGrant)
    });
    (tokens, calls)
}

pub(crate) async fn signed_in(h: &Harness) {
    h.service.sign_in(&code("4/0first"), None).await.unwrap();
}

#[tokio::test]
async fn first_sign_in_stores_the_refresh_token_and_reports_offline_access() {
    let (tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    let h = harness(tokens, MockDrive::new());

    let outcome = h.service.sign_in(&code("4/0first"), None).await.unwrap();

    assert!(outcome.new_user);
    assert!(outcome.offline_access());
    let stored = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose_secret(), "1//r1");
    assert_eq!(stored.version, 1);
    assert!(stored.scopes.has_drive_appdata());
}

#[tokio::test]
async fn second_sign_in_without_a_refresh_token_keeps_the_stored_one() {
    let (tokens, _) = exchanging(vec![
        token_response("ya29.a", Some("1//r1"), Some(ALICE)),
        token_response("ya29.b", None, Some(ALICE)),
    ]);
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;

    let second = h.service.sign_in(&code("4/0second"), None).await.unwrap();

    assert!(!second.new_user);
    assert!(second.offline_access());
    let stored = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose_secret(), "1//r1");
    assert_eq!(stored.access.unwrap().token.expose_secret(), "ya29.b");
}

#[tokio::test]
async fn sign_in_without_any_refresh_token_says_offline_access_is_missing() {
    let (tokens, _) = exchanging(vec![token_response("ya29.a", None, Some(ALICE))]);
    let h = harness(tokens, MockDrive::new());

    let outcome = h.service.sign_in(&code("4/0first"), None).await.unwrap();

    assert!(!outcome.offline_access());
}

#[tokio::test]
async fn a_code_of_another_user_than_the_signed_in_one_stores_nothing() {
    let (tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(BOB))]);
    let h = harness(tokens, MockDrive::new());

    let result = h
        .service
        .sign_in(&code("4/0inject"), Some(&sub(ALICE)))
        .await;

    assert!(matches!(result, Err(SignInError::SubjectMismatch)));
    assert!(h.store.get(&sub(BOB)).await.unwrap().is_none());
    assert!(h.store.get(&sub(ALICE)).await.unwrap().is_none());
}

#[tokio::test]
async fn the_same_code_posted_twice_gets_the_first_answer_with_one_exchange() {
    let (tokens, calls) = exchanging(vec![
        token_response("ya29.a", Some("1//r1"), Some(ALICE)),
        token_response("ya29.b", None, Some(ALICE)),
    ]);
    let h = harness(tokens, MockDrive::new());

    let same = code("4/0same");
    let (a, b) = tokio::join!(
        h.service.sign_in(&same, None),
        h.service.sign_in(&same, None)
    );
    let c = h.service.sign_in(&code("4/0same"), None).await.unwrap();

    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(a.unwrap().new_user && b.unwrap().new_user && c.new_user);
    // The cached answer is not handed to a caller signed in as someone else.
    assert!(matches!(
        h.service.sign_in(&code("4/0same"), Some(&sub(BOB))).await,
        Err(SignInError::SubjectMismatch)
    ));
}

#[tokio::test]
async fn a_rejected_code_is_invalid_and_changes_nothing() {
    let (tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    let before = h.store.get(&sub(ALICE)).await.unwrap().unwrap();

    let result = h.service.sign_in(&code("4/0replayed"), None).await;

    assert!(matches!(result, Err(SignInError::InvalidCode)));
    let after = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(after.version, before.version);
}

#[tokio::test]
async fn an_unavailable_token_endpoint_is_not_cached_and_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut tokens = MockTokenEndpoint::new();
    tokens.expect_exchange_code().returning(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(TokenError::Unavailable { retry_after: None })
        } else {
            Ok(token_response("ya29.a", Some("1//r1"), Some(ALICE)))
        }
    });
    let h = harness(tokens, MockDrive::new());

    let first = h.service.sign_in(&code("4/0code"), None).await;
    assert!(matches!(first, Err(SignInError::UpstreamUnavailable)));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a code exchange is never retried blindly"
    );
    assert!(h.store.get(&sub(ALICE)).await.unwrap().is_none());

    let second = h.service.sign_in(&code("4/0code"), None).await;
    assert!(second.is_ok());
}

#[tokio::test]
async fn a_failed_id_token_verification_stores_nothing() {
    let (tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some("bad"))]);
    let h = harness(tokens, MockDrive::new());

    let result = h.service.sign_in(&code("4/0x"), None).await;

    assert!(matches!(
        result,
        Err(SignInError::InvalidIdToken(VerifyError::BadSignature))
    ));
    assert!(h.store.list(None, 10).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn a_failed_id_token_verification_is_not_remembered_for_the_code() {
    let (tokens, calls) = exchanging(vec![
        token_response("ya29.a", Some("1//r1"), Some("bad")),
        token_response("ya29.b", Some("1//r1"), Some(ALICE)),
    ]);
    let h = harness(tokens, MockDrive::new());
    assert!(h.service.sign_in(&code("4/0x"), None).await.is_err());

    // The same code again goes to Google again (which, in life, answers invalid_grant for a used code): no cached
    // refusal stands in for Google's answer.
    let again = h.service.sign_in(&code("4/0x"), None).await;

    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(again.unwrap().offline_access());
}

pub(crate) fn refreshing(
    sign_in: TokenResponse,
    refresh: impl Fn(usize) -> Result<TokenResponse, TokenError> + Send + Sync + 'static,
) -> (MockTokenEndpoint, Arc<AtomicUsize>) {
    let (mut tokens, _) = exchanging(vec![sign_in]);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    tokens.expect_refresh().returning(move |rt| {
        assert_eq!(rt.expose_secret(), "1//r1");
        refresh(counter.fetch_add(1, Ordering::SeqCst))
    });
    (tokens, calls)
}

#[tokio::test]
async fn a_cached_access_token_is_used_while_it_has_a_minute_left() {
    let (tokens, refreshes) =
        refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
            Ok(token_response("ya29.new", None, None))
        });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;

    h.clock.advance(time::Duration::seconds(3599 - 61));
    let token = h.service.access_token(&sub(ALICE)).await.unwrap();
    assert_eq!(token.expose_secret(), "ya29.a");
    assert_eq!(refreshes.load(Ordering::SeqCst), 0);

    h.clock.advance(time::Duration::seconds(2));
    let token = h.service.access_token(&sub(ALICE)).await.unwrap();
    assert_eq!(token.expose_secret(), "ya29.new");
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    let stored = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose_secret(), "1//r1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_callers_after_expiry_cause_one_refresh() {
    let (tokens, refreshes) =
        refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
            Ok(token_response("ya29.new", None, None))
        });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    h.clock.advance(time::Duration::hours(2));

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let service = h.service.clone();
            tokio::spawn(async move { service.access_token(&sub(ALICE)).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().expose_secret(), "ya29.new");
    }

    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn invalid_grant_on_refresh_marks_consent_revoked_and_purges_the_access_token() {
    let (tokens, refreshes) =
        refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
            Err(TokenError::InvalidGrant)
        });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    h.clock.advance(time::Duration::hours(2));

    let result = h.service.access_token(&sub(ALICE)).await;
    assert!(matches!(result, Err(AccessError::ReconsentRequired)));
    let stored = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(stored.consent, ConsentState::Revoked);
    assert!(stored.access.is_none());

    // No further calls to Google for a revoked grant.
    let again = h.service.access_token(&sub(ALICE)).await;
    assert!(matches!(again, Err(AccessError::ReconsentRequired)));
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn re_consent_after_revocation_restores_offline_access() {
    let (mut tokens, _) = exchanging(vec![
        token_response("ya29.a", Some("1//r1"), Some(ALICE)),
        token_response("ya29.b", Some("1//r2"), Some(ALICE)),
    ]);
    tokens
        .expect_refresh()
        .returning(|_| Err(TokenError::InvalidGrant));
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    h.clock.advance(time::Duration::hours(2));
    assert!(h.service.access_token(&sub(ALICE)).await.is_err());

    let again = h.service.sign_in(&code("4/0again"), None).await.unwrap();

    assert!(again.offline_access());
    assert_eq!(again.consent, ConsentState::Active);
}

#[tokio::test]
async fn invalid_client_on_refresh_touches_no_credential() {
    let (tokens, _) = refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
        Err(TokenError::InvalidClient("invalid_client".into()))
    });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    h.clock.advance(time::Duration::hours(2));
    let before = h.store.get(&sub(ALICE)).await.unwrap().unwrap();

    let result = h.service.access_token(&sub(ALICE)).await;

    assert!(matches!(result, Err(AccessError::Misconfigured(_))));
    let after = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(after.version, before.version);
    assert_eq!(after.consent, ConsentState::Active);
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_token_endpoint_is_retried_three_times_then_reported() {
    let (tokens, refreshes) =
        refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
            Err(TokenError::Unavailable {
                retry_after: Some(Duration::from_millis(20)),
            })
        });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    h.clock.advance(time::Duration::hours(2));

    let result = h.service.access_token(&sub(ALICE)).await;

    assert!(matches!(result, Err(AccessError::UpstreamUnavailable)));
    assert_eq!(refreshes.load(Ordering::SeqCst), 3);
    let stored = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose_secret(), "1//r1");
}

#[tokio::test(start_paused = true)]
async fn a_transient_refresh_failure_followed_by_success_recovers() {
    let (tokens, refreshes) =
        refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |i| {
            if i == 0 {
                Err(TokenError::Timeout)
            } else {
                Ok(token_response("ya29.new", None, None))
            }
        });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    h.clock.advance(time::Duration::hours(2));

    let token = h.service.access_token(&sub(ALICE)).await.unwrap();

    assert_eq!(token.expose_secret(), "ya29.new");
    assert_eq!(refreshes.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refreshed_id_token_for_another_subject_keeps_the_tokens_and_the_stored_identity() {
    let (tokens, _) = refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
        Ok(token_response("ya29.next", Some("1//rotated"), Some(BOB)))
    });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    h.clock.advance(time::Duration::hours(2));
    let before = h.store.get(&sub(ALICE)).await.unwrap().unwrap();

    let token = h.service.access_token(&sub(ALICE)).await.unwrap();

    // The answer belongs to the grant this server used: its tokens are kept (a rotated refresh token above all),
    // the identity it names is not taken.
    assert_eq!(token.expose_secret(), "ya29.next");
    let after = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(after.subject, sub(ALICE));
    assert_eq!(after.profile, before.profile);
    assert_eq!(
        after.refresh_token.as_ref().unwrap().expose_secret(),
        "1//rotated"
    );
}

#[tokio::test]
async fn a_refreshed_id_token_that_fails_verification_keeps_a_rotated_refresh_token() {
    let (tokens, _) = refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
        Ok(token_response("ya29.next", Some("1//rotated"), Some("bad")))
    });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    h.clock.advance(time::Duration::hours(2));

    let token = h.service.access_token(&sub(ALICE)).await.unwrap();

    assert_eq!(token.expose_secret(), "ya29.next");
    let after = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(
        after.refresh_token.as_ref().unwrap().expose_secret(),
        "1//rotated"
    );
    assert_eq!(after.consent, ConsentState::Active);
}

#[tokio::test]
async fn an_unknown_user_has_no_access_token() {
    let h = harness(MockTokenEndpoint::new(), MockDrive::new());
    assert!(matches!(
        h.service.access_token(&sub(ALICE)).await,
        Err(AccessError::NotFound)
    ));
}

fn drive_answering(
    answer: impl Fn(&str, usize) -> Result<DriveResponse, DriveError> + Send + Sync + 'static,
) -> (MockDrive, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut drive = MockDrive::new();
    drive.expect_execute().returning(move |token, _| {
        answer(
            token.expose_secret(),
            counter.fetch_add(1, Ordering::SeqCst),
        )
    });
    (drive, calls)
}

fn folder() -> DriveResponse {
    DriveResponse::Json(serde_json::json!({"id": "appdata-folder", "name": "Application Data"}))
}

#[tokio::test]
async fn drive_401_causes_one_refresh_and_one_retry() {
    let (tokens, refreshes) =
        refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
            Ok(token_response("ya29.new", None, None))
        });
    let (drive, calls) = drive_answering(|token, _| {
        if token == "ya29.a" {
            Err(DriveError::Unauthorized)
        } else {
            Ok(folder())
        }
    });
    let h = harness(tokens, drive);
    signed_in(&h).await;

    let response = h
        .service
        .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
        .await
        .unwrap();

    assert_eq!(response, folder());
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_second_drive_401_is_an_error_not_a_loop() {
    let (tokens, refreshes) =
        refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
            Ok(token_response("ya29.new", None, None))
        });
    let (drive, calls) = drive_answering(|_, _| Err(DriveError::Unauthorized));
    let h = harness(tokens, drive);
    signed_in(&h).await;

    let result = h
        .service
        .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
        .await;

    assert!(matches!(result, Err(DriveUseError::Unauthorized)));
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_drive_401s_after_an_early_expiry_causes_one_refresh() {
    let (tokens, refreshes) =
        refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
            Ok(token_response("ya29.new", None, None))
        });
    let (drive, _) = drive_answering(|token, _| {
        if token == "ya29.a" {
            Err(DriveError::Unauthorized)
        } else {
            Ok(folder())
        }
    });
    let h = harness(tokens, drive);
    signed_in(&h).await;

    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let service = h.service.clone();
            tokio::spawn(async move {
                service
                    .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), folder());
    }

    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_the_drive_scope_no_drive_call_is_made() {
    let mut response = token_response("ya29.a", Some("1//r1"), Some(ALICE));
    response.scopes = Some(Scopes::parse("openid email profile").unwrap());
    let (tokens, _) = exchanging(vec![response]);
    let (drive, calls) = drive_answering(|_, _| Ok(folder()));
    let h = harness(tokens, drive);
    signed_in(&h).await;

    let result = h
        .service
        .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
        .await;

    assert!(matches!(result, Err(DriveUseError::ScopeMissing)));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_revoked_grant_makes_drive_calls_ask_for_reconsent_without_calling_drive() {
    let (tokens, _) = refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
        Err(TokenError::InvalidGrant)
    });
    let (drive, calls) = drive_answering(|_, _| Ok(folder()));
    let h = harness(tokens, drive);
    signed_in(&h).await;
    h.clock.advance(time::Duration::hours(2));

    let first = h
        .service
        .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
        .await;
    let second = h
        .service
        .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
        .await;

    for result in [first, second] {
        assert!(matches!(
            result,
            Err(DriveUseError::Access(AccessError::ReconsentRequired))
        ));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn drive_rate_limits_back_off_without_refreshing() {
    let (tokens, refreshes) =
        refreshing(token_response("ya29.a", Some("1//r1"), Some(ALICE)), |_| {
            Ok(token_response("ya29.new", None, None))
        });
    let (drive, calls) = drive_answering(|_, i| {
        if i < 2 {
            Err(DriveError::RateLimited { retry_after: None })
        } else {
            Ok(folder())
        }
    });
    let h = harness(tokens, drive);
    signed_in(&h).await;

    let result = h
        .service
        .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
        .await;

    assert_eq!(result.unwrap(), folder());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(refreshes.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_create_is_never_repeated() {
    let (tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    let (drive, calls) = drive_answering(|_, _| Err(DriveError::Unavailable));
    let h = harness(tokens, drive);
    signed_in(&h).await;
    let create = DriveRequest::CreateFile {
        name: "notes.txt".into(),
        content_type: "text/plain".into(),
        content: bytes::Bytes::from_static(b"hello"),
    };

    let result = h.service.drive(&sub(ALICE), &create).await;

    assert!(matches!(result, Err(DriveUseError::Unavailable)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_delete_retried_after_no_answer_that_finds_no_file_is_done_not_404() {
    let (tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    // The first attempt deleted the file but its answer was lost; the retry finds nothing.
    let (drive, calls) = drive_answering(|_, i| match i {
        0 => Err(DriveError::Unavailable),
        _ => Err(DriveError::NotFound),
    });
    let h = harness(tokens, drive);
    signed_in(&h).await;
    let delete = DriveRequest::Delete { id: "f1".into() };

    let result = h.service.drive(&sub(ALICE), &delete).await;

    assert!(matches!(result, Ok(DriveResponse::Empty)), "{result:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A delete of a file that was never there is still 404.
    let (drive, _) = drive_answering(|_, _| Err(DriveError::NotFound));
    let (tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    let h = harness(tokens, drive);
    signed_in(&h).await;
    assert!(matches!(
        h.service.drive(&sub(ALICE), &delete).await,
        Err(DriveUseError::NotFound)
    ));
}

#[tokio::test]
async fn forget_revokes_at_google_and_deletes() {
    let (mut tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    tokens
        .expect_revoke()
        .withf(|t| t.expose_secret() == "1//r1")
        .times(1)
        .returning(|_| Ok(()));
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;

    let forgotten = h.service.forget(&sub(ALICE)).await.unwrap();

    assert!(forgotten.revoked_at_google);
    assert!(h.store.get(&sub(ALICE)).await.unwrap().is_none());
    assert!(matches!(
        h.service.forget(&sub(ALICE)).await,
        Err(ForgetError::NotFound)
    ));
}

#[tokio::test]
async fn forget_counts_an_already_revoked_grant_as_done() {
    let (mut tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    tokens
        .expect_revoke()
        .returning(|_| Err(RevokeError::AlreadyRevoked));
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;

    let forgotten = h.service.forget(&sub(ALICE)).await.unwrap();

    assert!(forgotten.revoked_at_google);
    assert!(h.store.get(&sub(ALICE)).await.unwrap().is_none());
}

#[tokio::test]
async fn forget_while_google_is_unavailable_makes_the_credential_unusable_and_a_retry_revokes_it() {
    let (mut tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    let revokes = Arc::new(AtomicUsize::new(0));
    let counter = revokes.clone();
    tokens
        .expect_revoke()
        .withf(|t| t.expose_secret() == "1//r1")
        .returning(move |_| match counter.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err(RevokeError::Unavailable),
            _ => Err(RevokeError::AlreadyRevoked),
        });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;

    let forgotten = h.service.forget(&sub(ALICE)).await.unwrap();

    assert!(!forgotten.revoked_at_google);
    // Unusable at once: every use case sees no credential, and no token leaves the store.
    assert!(matches!(
        h.service.credential(&sub(ALICE)).await,
        Err(AccessError::NotFound)
    ));
    assert!(matches!(
        h.service.access_token(&sub(ALICE)).await,
        Err(AccessError::NotFound)
    ));
    assert!(matches!(
        h.service
            .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
            .await,
        Err(DriveUseError::Access(AccessError::NotFound))
    ));
    let kept = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(kept.consent, ConsentState::Forgotten);
    assert!(kept.access.is_none());
    assert!(kept.profile.email.is_none());
    assert_eq!(kept.refresh_token.unwrap().expose_secret(), "1//r1");

    // Google still down: stays pending.
    let retry = h.service.retry_pending_revocations().await.unwrap();
    assert_eq!((retry.revoked, retry.pending), (0, 1));
    // Google back (`invalid_token` counts as done): deleted.
    let retry = h.service.retry_pending_revocations().await.unwrap();
    assert_eq!((retry.revoked, retry.pending), (1, 0));
    assert!(h.store.get(&sub(ALICE)).await.unwrap().is_none());
    assert_eq!(revokes.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_sign_in_after_a_pending_forget_cancels_the_revocation_and_is_a_new_user() {
    let (mut tokens, _) = exchanging(vec![
        token_response("ya29.a", Some("1//r1"), Some(ALICE)),
        token_response("ya29.b", None, Some(ALICE)),
    ]);
    tokens
        .expect_revoke()
        .times(1)
        .returning(|_| Err(RevokeError::Unavailable));
    // The kept refresh token is tried once before the sign-in trusts it.
    tokens.expect_refresh().times(1).returning(|rt| {
        assert_eq!(rt.expose_secret(), "1//r1");
        Ok(token_response("ya29.c", None, None))
    });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    h.service.forget(&sub(ALICE)).await.unwrap();

    let again = h.service.sign_in(&code("4/0second"), None).await.unwrap();

    assert!(again.new_user);
    assert!(again.offline_access());
    let stored = h.store.get(&sub(ALICE)).await.unwrap().unwrap();
    assert_eq!(
        stored.refresh_token.as_ref().unwrap().expose_secret(),
        "1//r1"
    );
    let retry = h.service.retry_pending_revocations().await.unwrap();
    assert_eq!((retry.revoked, retry.pending), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn refresh_retries_wait_at_least_what_retry_after_asks_up_to_the_bound() {
    let (tokens, refreshes) = refreshing(
        token_response("ya29.a", Some("1//r1"), Some(ALICE)),
        |i| match i {
            0 => Err(TokenError::Unavailable {
                retry_after: Some(Duration::from_secs(2)),
            }),
            1 => Err(TokenError::Unavailable {
                retry_after: Some(Duration::from_secs(3600)),
            }),
            _ => Ok(token_response("ya29.new", None, None)),
        },
    );
    let h = harness_with(tokens, MockDrive::new(), Settings::default());
    signed_in(&h).await;
    h.clock.advance(time::Duration::hours(2));
    let started = tokio::time::Instant::now();

    let token = h.service.access_token(&sub(ALICE)).await.unwrap();

    // Paused time: the waits are exactly what the backoff chose. 2 s asked, then an hour asked but capped at
    // `backoff_max` (5 s).
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2 + 5), "{waited:?}");
    assert!(
        waited <= Duration::from_secs(2 + 5) + Duration::from_millis(10),
        "{waited:?}"
    );
    assert_eq!(token.expose_secret(), "ya29.new");
    assert_eq!(refreshes.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_background_retry_revokes_a_pending_forget_once_google_is_back() {
    let (mut tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    let revokes = Arc::new(AtomicUsize::new(0));
    let counter = revokes.clone();
    tokens.expect_revoke().returning(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(RevokeError::Unavailable)
        } else {
            Ok(())
        }
    });
    let h = harness(tokens, MockDrive::new());
    signed_in(&h).await;
    assert!(
        !h.service
            .forget(&sub(ALICE))
            .await
            .unwrap()
            .revoked_at_google
    );
    assert!(h.store.get(&sub(ALICE)).await.unwrap().is_some());

    let task = tokio::spawn(
        h.service
            .clone()
            .retry_pending_revocations_every(Duration::from_secs(300)),
    );
    tokio::time::sleep(Duration::from_secs(301)).await;

    assert!(h.store.get(&sub(ALICE)).await.unwrap().is_none());
    assert_eq!(revokes.load(Ordering::SeqCst), 2);
    task.abort();
}

/// A second service ("another instance") over the same store as `h`, with `settings`.
fn another_instance(h: &Harness, settings: Settings) -> OfflineAccess {
    let (drive, _) = drive_answering(|_, _| Ok(folder()));
    let mut tokens = MockTokenEndpoint::new();
    tokens.expect_revoke().returning(|_| Ok(()));
    OfflineAccess::new(
        Ports {
            tokens: Arc::new(tokens),
            verifier: Arc::new(verifier()),
            store: Arc::new(h.store.clone()),
            drive: Arc::new(drive),
            clock: h.clock.clone(),
        },
        settings,
    )
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_drive_calls_reads_the_store_once_per_cache_ttl() {
    let mut credential = crate::credential::Credential::merge(
        None,
        sub(ALICE),
        crate::credential::Grant {
            profile: None,
            scopes: Some(Scopes::parse(FULL_SCOPES).unwrap()),
            refresh_token: Some(RefreshToken::parse("1//r1").unwrap()),
            access: crate::credential::CachedAccess {
                token: AccessToken::parse("ya29.a").unwrap(),
                expires_at: START + time::Duration::hours(1),
                scopes: Scopes::parse(FULL_SCOPES).unwrap(),
            },
        },
        START,
    );
    credential.version = 1;
    let mut store = crate::ports::MockCredentialStore::new();
    let reads = Arc::new(AtomicUsize::new(0));
    let counter = reads.clone();
    store.expect_get().returning(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Some(credential.clone()))
    });
    let (drive, calls) = drive_answering(|_, _| Ok(folder()));
    let clock = Arc::new(ManualClock::new(START));
    let service = OfflineAccess::new(
        Ports {
            tokens: Arc::new(MockTokenEndpoint::new()),
            verifier: Arc::new(verifier()),
            store: Arc::new(store),
            drive: Arc::new(drive),
            clock,
        },
        Settings::default(),
    );
    for _ in 0..20 {
        service
            .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
            .await
            .unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    assert_eq!(reads.load(Ordering::SeqCst), 1);

    tokio::time::advance(Duration::from_secs(1)).await;
    service
        .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
        .await
        .unwrap();
    assert_eq!(reads.load(Ordering::SeqCst), 2, "read again after the ttl");
}

#[tokio::test(start_paused = true)]
async fn a_forget_on_this_instance_applies_at_once_even_after_recent_drive_calls() {
    for revoke_works in [true, false] {
        let (mut tokens, _) =
            exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
        tokens.expect_revoke().returning(move |_| {
            if revoke_works {
                Ok(())
            } else {
                Err(RevokeError::Unavailable)
            }
        });
        let (drive, _) = drive_answering(|_, _| Ok(folder()));
        let h = harness(tokens, drive);
        signed_in(&h).await;
        h.service
            .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
            .await
            .unwrap();

        h.service.forget(&sub(ALICE)).await.unwrap();

        assert!(matches!(
            h.service
                .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
                .await,
            Err(DriveUseError::Access(AccessError::NotFound))
        ));
        assert!(matches!(
            h.service.access_token(&sub(ALICE)).await,
            Err(AccessError::NotFound)
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn another_instances_forget_is_seen_within_the_cache_ttl_and_at_once_with_a_ttl_of_zero() {
    let (mut tokens, _) = exchanging(vec![token_response("ya29.a", Some("1//r1"), Some(ALICE))]);
    tokens.expect_revoke().returning(|_| Ok(()));
    let (drive, _) = drive_answering(|_, _| Ok(folder()));
    let h = harness(tokens, drive);
    signed_in(&h).await;
    let cached = another_instance(&h, Settings::default());
    let strict = another_instance(
        &h,
        Settings {
            credential_cache_ttl: Duration::ZERO,
            ..Settings::default()
        },
    );
    for instance in [&cached, &strict] {
        instance
            .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
            .await
            .unwrap();
    }

    h.service.forget(&sub(ALICE)).await.unwrap();

    assert!(matches!(
        strict.drive(&sub(ALICE), &DriveRequest::GetAppFolder).await,
        Err(DriveUseError::Access(AccessError::NotFound))
    ));
    // Within the ttl the other instance still answers from what it read (Google has revoked the token itself).
    assert!(
        cached
            .drive(&sub(ALICE), &DriveRequest::GetAppFolder)
            .await
            .is_ok()
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(
        cached.drive(&sub(ALICE), &DriveRequest::GetAppFolder).await,
        Err(DriveUseError::Access(AccessError::NotFound))
    ));
}
