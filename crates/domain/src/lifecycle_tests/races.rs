//! The grant-integrity defects, each as the interleaving that lost a grant, played with Google answering when the
//! test says so.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::world::*;
use crate::credential::ConsentState;
use crate::ports::{CredentialStore, DriveRequest, StoreError};
use crate::service::{DriveUseError, SignInError};

async fn sign_in(world: &World, spec: CodeSpec) {
    let code = world.google.mint(spec);
    world.a().sign_in(&code, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_ends_after_a_forget_and_a_new_consent_never_overwrites_the_new_grant() {
    let world = World::new();
    sign_in(&world, code(true, &[OPENID, EMAIL, DRIVE])).await;
    world.clock.advance(time::Duration::hours(2));
    world.google.hold.store(true, Ordering::SeqCst);

    // A Drive call needs a refresh; Google is slow to answer it.
    let a = world.instances[0].clone();
    let drive = tokio::spawn(async move { a.drive(&subject(), &DriveRequest::GetAppFolder).await });
    settle().await;
    assert!(matches!(world.google.waiting()[..], [Call::Refresh(_)]));
    // Meanwhile the user is forgotten (Google confirms the revocation) ...
    let b = world.instances[1].clone();
    let forget = tokio::spawn(async move { b.forget(&subject()).await });
    settle().await;
    world.google.answer(1, false);
    settle().await;
    assert!(forget.await.unwrap().unwrap().revoked_at_google);
    // ... and signs in again with a new consent.
    let b = world.instances[1].clone();
    let again = world.google.mint(code(true, &[OPENID, EMAIL, DRIVE]));
    let sign_in = tokio::spawn(async move { b.sign_in(&again, None).await });
    settle().await;
    world.google.answer(1, false);
    settle().await;
    let signed_in = sign_in.await.unwrap().unwrap();
    assert!(signed_in.offline_access && signed_in.new_user);
    let new_token = world.stored_refresh().await.unwrap();

    // Now the old refresh ends: Google refuses the revoked token.
    world.google.answer(0, false);
    settle().await;

    // The refresh wrote nothing over the new grant, and the Drive call went on with it.
    assert!(drive.await.unwrap().is_ok());
    let stored = world.stored().await.unwrap();
    assert_eq!(stored.consent, ConsentState::Active);
    assert_eq!(world.stored_refresh().await.unwrap(), new_token);
    assert!(world.google.truth().refresh_alive(&new_token));
}

#[tokio::test(start_paused = true)]
async fn the_sweep_never_revokes_a_pending_revocation_a_new_sign_in_cancelled_after_the_listing() {
    let world = World::new();
    sign_in(&world, code(true, &[OPENID, EMAIL, DRIVE])).await;
    // Google cannot confirm the revocation: the user is forgotten with the revocation pending.
    world.google.unavailable.store(1, Ordering::SeqCst);
    assert!(
        !world
            .a()
            .forget(&subject())
            .await
            .unwrap()
            .revoked_at_google
    );
    assert!(world.stored().await.unwrap().is_forgotten());
    // Between the sweep's listing and its lock, the user signs in again (which cancels the revocation).
    let b = world.instances[1].clone();
    let code_again = world.google.mint(code(false, &[OPENID, EMAIL, DRIVE]));
    *world.store.before_lock.lock().unwrap() = Some(Box::new(move || {
        let signed_in = futures::executor::block_on(b.sign_in(&code_again, None)).unwrap();
        assert!(signed_in.offline_access);
    }));
    let calls_before = world.google.history.lock().unwrap().len();

    let outcome = world.a().retry_pending_revocations().await.unwrap();

    assert_eq!(outcome.cancelled, 1);
    assert_eq!(outcome.revoked, 0);
    // The sign-in exchanged its code and tried the refresh token it kept; nothing was revoked.
    let calls = world.google.history.lock().unwrap()[calls_before..].to_vec();
    assert!(
        matches!(calls[..], [Call::Exchange(_), Call::Refresh(_)]),
        "{calls:?}"
    );
    let stored = world.stored().await.unwrap();
    assert_eq!(stored.consent, ConsentState::Active);
    let token = world.stored_refresh().await.unwrap();
    assert!(world.google.truth().refresh_alive(&token));
    assert!(
        world
            .a()
            .drive(&subject(), &DriveRequest::GetAppFolder)
            .await
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn a_sign_in_racing_the_sweeps_revocation_never_claims_a_grant_google_revoked() {
    let world = World::new();
    sign_in(&world, code(true, &[OPENID, EMAIL, DRIVE])).await;
    world.google.unavailable.store(1, Ordering::SeqCst);
    world.a().forget(&subject()).await.unwrap();
    world.google.hold.store(true, Ordering::SeqCst);
    // The sweep is revoking (Google slow) while the user signs in with a new consent in the same grant.
    let a = world.instances[0].clone();
    let sweep = tokio::spawn(async move { a.retry_pending_revocations().await });
    settle().await;
    let b = world.instances[1].clone();
    let again = world.google.mint(code(true, &[OPENID, EMAIL, DRIVE]));
    let sign_in = tokio::spawn(async move { b.sign_in(&again, None).await });
    settle().await;
    assert!(matches!(
        world.google.waiting()[..],
        [Call::Revoke(_), Call::Exchange(_)]
    ));
    // Google exchanges the code first (a refresh token in the grant still standing), then revokes the grant.
    world.google.answer(1, false);
    settle().await;
    world.google.answer(0, false);
    settle().await;
    assert_eq!(sweep.await.unwrap().unwrap().revoked, 1);
    // The sign-in checks the refresh token it got before trusting it.
    while !world.google.waiting().is_empty() {
        world.google.answer(0, false);
        settle().await;
    }
    let signed_in = sign_in.await.unwrap().unwrap();

    assert!(
        !signed_in.offline_access,
        "its grant was revoked by the sweep"
    );
    assert_eq!(signed_in.consent, ConsentState::Revoked);
    assert_eq!(world.stored().await.unwrap().consent, ConsentState::Revoked);
}

#[tokio::test(start_paused = true)]
async fn a_later_sign_in_with_fewer_scopes_never_takes_drive_away() {
    let world = World::new();
    sign_in(&world, code(true, &[OPENID, EMAIL, DRIVE])).await;
    sign_in(&world, code(false, &[OPENID, EMAIL])).await;

    let stored = world.stored().await.unwrap();
    assert!(
        stored.scopes.has_drive_appdata(),
        "the grant keeps drive.appdata"
    );
    assert!(!stored.access.as_ref().unwrap().scopes.has_drive_appdata());
    let calls = world.google.calls.load(Ordering::SeqCst);
    // Drive refreshes first (the access token is narrower than the grant), then works.
    assert!(
        world
            .a()
            .drive(&subject(), &DriveRequest::GetAppFolder)
            .await
            .is_ok()
    );
    assert_eq!(world.google.calls.load(Ordering::SeqCst), calls + 1);
    assert!(world.stored().await.unwrap().scopes.has_drive_appdata());
}

#[tokio::test(start_paused = true)]
async fn incremental_authorization_widens_the_grant_and_a_refresh_keeps_it_wide() {
    let world = World::new();
    sign_in(&world, code(true, &[OPENID, EMAIL, DRIVE])).await;
    let mut more = code(false, &[OPENID, EMAIL, CALENDAR]);
    more.include_granted = true;
    sign_in(&world, more).await;
    assert!(world.stored().await.unwrap().scopes.contains(CALENDAR));
    assert!(world.stored().await.unwrap().scopes.has_drive_appdata());

    world.clock.advance(time::Duration::hours(2));
    world.a().access_token(&subject()).await.unwrap();

    let stored = world.stored().await.unwrap();
    assert_eq!(
        stored.scopes,
        scopes(&[OPENID, EMAIL, DRIVE, CALENDAR]),
        "a refresh reports the whole grant"
    );
    // Without include_granted_scopes the answer lists only the new scope; the stored grant still widens.
    sign_in(&world, code(false, &[OPENID])).await;
    assert_eq!(
        world.stored().await.unwrap().scopes,
        scopes(&[OPENID, EMAIL, DRIVE, CALENDAR])
    );
}

#[tokio::test(start_paused = true)]
async fn a_revoked_user_who_signs_in_again_is_active_with_a_new_refresh_token_and_uses_drive_without_one()
 {
    let world = World::new();
    sign_in(&world, code(true, &[OPENID, EMAIL, DRIVE])).await;
    // The refresh token stops working while Google keeps the grant (e.g. it expired): marked revoked.
    let mut stored = world.stored().await.unwrap();
    stored.mark_revoked(START);
    world.store.inner.put(&stored).await.unwrap();

    // A sign-in without a new refresh token: still revoked (the app is told to ask with consent), yet the access
    // token it brought works for Drive until it expires.
    let code_plain = world.google.mint(code(false, &[OPENID, EMAIL, DRIVE]));
    let answer = world.a().sign_in(&code_plain, None).await.unwrap();
    assert!(!answer.offline_access);
    assert_eq!(answer.consent, ConsentState::Revoked);
    assert!(
        world
            .a()
            .drive(&subject(), &DriveRequest::GetAppFolder)
            .await
            .is_ok()
    );
    world.clock.advance(time::Duration::hours(2));
    assert!(matches!(
        world
            .a()
            .drive(&subject(), &DriveRequest::GetAppFolder)
            .await,
        Err(DriveUseError::Access(
            crate::service::AccessError::ReconsentRequired
        ))
    ));

    // With a new refresh token (forced consent): active again.
    let code_consent = world.google.mint(code(true, &[OPENID, EMAIL, DRIVE]));
    let answer = world.a().sign_in(&code_consent, None).await.unwrap();
    assert!(answer.offline_access);
    assert_eq!(answer.consent, ConsentState::Active);
    assert!(
        world
            .a()
            .drive(&subject(), &DriveRequest::GetAppFolder)
            .await
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_cannot_take_writes_spends_no_code_and_a_write_failing_after_the_exchange_keeps_the_grant()
 {
    let world = World::new();
    let code_1 = world.google.mint(code(true, &[OPENID, EMAIL, DRIVE]));
    world.store.down.store(true, Ordering::SeqCst);

    let refused = world.a().sign_in(&code_1, None).await;
    assert!(matches!(
        refused,
        Err(SignInError::Store(StoreError::Unavailable(_)))
    ));
    assert_eq!(
        world.google.calls.load(Ordering::SeqCst),
        0,
        "code not spent"
    );

    // The store passes its check, then fails the write after Google answered.
    world.store.down.store(false, Ordering::SeqCst);
    world.store.writes_fail.store(true, Ordering::SeqCst);
    assert!(matches!(
        world.a().sign_in(&code_1, None).await,
        Err(SignInError::Store(_))
    ));
    assert_eq!(world.google.calls.load(Ordering::SeqCst), 1);
    assert!(world.stored().await.is_none());

    // The same code POSTed again once the store is back stores the grant, without a second exchange.
    world.store.writes_fail.store(false, Ordering::SeqCst);
    let signed_in = world.a().sign_in(&code_1, None).await.unwrap();
    assert!(signed_in.offline_access);
    assert_eq!(world.google.calls.load(Ordering::SeqCst), 1);
    let token = world.stored_refresh().await.unwrap();
    assert!(world.google.truth().refresh_alive(&token));
    // What is remembered for the code now holds no token.
    let again = world.a().sign_in(&code_1, None).await.unwrap();
    let shown = format!("{again:?}");
    assert!(
        !shown.contains(&token) && !shown.contains("ya29."),
        "{shown}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_write_can_never_land_on_a_record_deleted_and_created_again() {
    let world = World::new();
    sign_in(&world, code(true, &[OPENID, EMAIL, DRIVE])).await;
    let before = world.stored().await.unwrap();
    world.a().forget(&subject()).await.unwrap();
    sign_in(&world, code(true, &[OPENID, EMAIL, DRIVE])).await;
    let after = world.stored().await.unwrap();
    assert!(after.version > before.version);
    let store: Arc<dyn CredentialStore> = Arc::new(world.store.clone());
    assert!(matches!(
        store.put(&before).await,
        Err(StoreError::Conflict)
    ));
}
