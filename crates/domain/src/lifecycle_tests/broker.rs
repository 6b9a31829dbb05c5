//! The grant broker's use cases over the world: tokens for the team's services, the proxy's one refresh on 401.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::world::*;
use crate::credential::ConsentState;
use crate::ports::{ProxyBody, ProxyRequest};
use crate::service::{AccessError, OfflineAccess};

async fn signed_in(world: &World, scopes: &[&'static str]) {
    let code = world.google.mint(code(true, scopes));
    world.a().sign_in(&code, None).await.unwrap();
}

fn with_api(world: &World) -> OfflineAccess {
    let service = Arc::try_unwrap(world.instance()).ok().unwrap();
    service.with_google_api(world.google.clone())
}

fn request(body: ProxyBody) -> ProxyRequest {
    ProxyRequest {
        method: "POST".into(),
        host: "www.googleapis.com".into(),
        path_and_query: "/calendar/v3/calendars?x=1".into(),
        headers: Vec::new(),
        body,
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_fresh_enough_is_handed_out_without_google_and_a_stale_one_is_refreshed_once() {
    let world = World::new();
    signed_in(&world, &[OPENID, EMAIL, DRIVE]).await;
    let calls = world.google.calls.load(Ordering::SeqCst);
    let service = world.a();

    let cached = service
        .access_token_for(&subject(), &scopes(&[DRIVE]), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(world.google.calls.load(Ordering::SeqCst), calls);
    // Asking for more life than the cached token has left refreshes (once), capped at half an hour.
    world.clock.advance(time::Duration::minutes(40));
    let fresh = service
        .access_token_for(&subject(), &scopes(&[]), Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_ne!(fresh.token.expose_secret(), cached.token.expose_secret());
    assert_eq!(world.google.calls.load(Ordering::SeqCst), calls + 1);
    let again = service
        .access_token_for(&subject(), &scopes(&[]), Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(again.token.expose_secret(), fresh.token.expose_secret());
    assert_eq!(world.google.calls.load(Ordering::SeqCst), calls + 1);
}

#[tokio::test(start_paused = true)]
async fn a_scope_the_grant_lacks_is_refused_with_the_missing_ones_and_no_google_call() {
    let world = World::new();
    signed_in(&world, &[OPENID, EMAIL, DRIVE]).await;
    let calls = world.google.calls.load(Ordering::SeqCst);

    let refused = world
        .a()
        .access_token_for(
            &subject(),
            &scopes(&[DRIVE, CALENDAR]),
            Duration::from_secs(60),
        )
        .await;

    let Err(AccessError::ScopeMissing(missing)) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(missing, scopes(&[CALENDAR]));
    assert_eq!(world.google.calls.load(Ordering::SeqCst), calls);
}

#[tokio::test(start_paused = true)]
async fn a_revoked_grant_hands_out_no_token() {
    let world = World::new();
    signed_in(&world, &[OPENID, EMAIL, DRIVE]).await;
    world.google.truth().revoke_grant();
    world.clock.advance(time::Duration::hours(2));

    let refused = world
        .a()
        .access_token_for(&subject(), &scopes(&[]), Duration::from_secs(60))
        .await;

    assert!(matches!(refused, Err(AccessError::ReconsentRequired)));
    assert_eq!(world.stored().await.unwrap().consent, ConsentState::Revoked);
}

#[tokio::test(start_paused = true)]
async fn the_proxy_refreshes_once_on_401_and_sends_a_repeatable_request_again() {
    let world = World::new();
    signed_in(&world, &[OPENID, EMAIL, DRIVE]).await;
    let service = with_api(&world);
    // Google expires the token early (the stored one still looks fresh).
    world.google.truth().expire_access();

    let response = service
        .proxy(
            &subject(),
            request(ProxyBody::Full(Bytes::from_static(b"{}"))),
        )
        .await
        .unwrap();

    assert_eq!(response.status, 200);
    assert_eq!(world.google.proxied.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_streamed_request_gets_googles_401_and_the_next_call_the_fresh_token() {
    let world = World::new();
    signed_in(&world, &[OPENID, EMAIL, DRIVE]).await;
    let service = with_api(&world);
    world.google.truth().expire_access();
    let stream = Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"x"))]));

    let first = service
        .proxy(&subject(), request(ProxyBody::Streaming(stream)))
        .await
        .unwrap();
    let second = service
        .proxy(&subject(), request(ProxyBody::Empty))
        .await
        .unwrap();

    assert_eq!((first.status, second.status), (401, 200));
    assert_eq!(world.google.proxied.lock().unwrap().len(), 2);
}
