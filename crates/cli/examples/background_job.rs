//! A periodic job that works for stored users while they are offline: `OfflineAccess::drive` for Drive's
//! `appDataFolder`, and `OfflineAccess::access_token` for any other Google API the user granted.
//!
//! The use cases refresh an expired access token once (however many callers ask at the same time) and tell a
//! revoked grant apart from an outage, so a job only decides what to do per user. Against an in-process fake
//! Google, with no network:
//!
//! ```sh
//! cargo run --example background_job
//! ```

mod common;

use std::error::Error;
use std::time::Duration;

use fake_google::{CodeRequest, FakeGoogle};
use offline_access_domain::{
    AccessError, AuthCode, DriveRequest, DriveResponse, DriveUseError, OfflineAccess, Subject,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run().await
}

/// What one round of the job did for one user.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Synced: how many files the user's folder holds.
    Synced(usize),
    /// The user revoked access: the app must ask them for consent again; nothing to do until it has.
    NeedsConsent,
    /// Google or the store is down for now: try again next round.
    Later,
}

/// Two users sign in; the job runs three rounds; between the first and the second, Alice's access token expires
/// at Google (the next call refreshes it) and Bob revokes access (the job stops using his grant).
pub async fn run() -> Result<(), Box<dyn Error>> {
    let world = common::World::on(FakeGoogle::start().await?)?;
    let (fake, service) = (&world.fake, &world.service);

    // Sign-ins come from the app (POST /authcode); here straight through the use case.
    let mut users = Vec::new();
    for email in ["alice@example.com", "bob@example.com"] {
        let minted = fake.mint_code(CodeRequest::new(email)).await?;
        let signed_in = service
            .sign_in(&AuthCode::parse(&minted.code)?, None)
            .await?;
        users.push(signed_in.subject);
    }
    let (alice, bob) = (users[0].clone(), users[1].clone());

    let mut every = tokio::time::interval(Duration::from_millis(50));
    let mut outcomes = Vec::new();
    for round in 1..=3 {
        every.tick().await;
        if round == 2 {
            fake.expire_user(alice.as_str()).await;
            fake.revoke_user(bob.as_str()).await;
        }
        for user in &users {
            let outcome = sync(service, user, &fake.base_url()).await?;
            println!("round {round}: {user}: {outcome:?}");
            outcomes.push((round, user.clone(), outcome));
        }
    }

    let expected = [
        (1, alice.clone(), Outcome::Synced(1)),
        (1, bob.clone(), Outcome::Synced(1)),
        (2, alice.clone(), Outcome::Synced(2)),
        (2, bob.clone(), Outcome::NeedsConsent),
        (3, alice, Outcome::Synced(3)),
        (3, bob, Outcome::NeedsConsent),
    ];
    if outcomes != expected {
        return Err(format!("the job did {outcomes:?}").into());
    }
    Ok(())
}

/// One user's round: write a heartbeat file to the app's Drive folder, then count the files there with a
/// Google API call of our own, made with a fresh access token.
async fn sync(
    service: &OfflineAccess,
    user: &Subject,
    google: &str,
) -> Result<Outcome, Box<dyn Error>> {
    let heartbeat = DriveRequest::CreateFile {
        name: "heartbeat.json".to_owned(),
        content_type: "application/json".to_owned(),
        content: br#"{"alive": true}"#.as_slice().into(),
    };
    match service.drive(user, &heartbeat).await {
        Ok(DriveResponse::Json(_)) => {}
        Ok(other) => return Err(format!("unexpected Drive answer {other:?}").into()),
        Err(DriveUseError::Access(AccessError::ReconsentRequired | AccessError::NotFound)) => {
            return Ok(Outcome::NeedsConsent);
        }
        Err(DriveUseError::Unavailable | DriveUseError::RateLimited) => return Ok(Outcome::Later),
        Err(e) => return Err(e.into()),
    }

    // For an API offline-access has no route for, take a fresh token (refreshed if it had less than a minute left)
    // and call Google yourself. Against real Google the URL is https://www.googleapis.com/drive/v3/files.
    let token = match service.access_token(user).await {
        Ok(token) => token,
        Err(AccessError::ReconsentRequired) => return Ok(Outcome::NeedsConsent),
        Err(AccessError::UpstreamUnavailable) => return Ok(Outcome::Later),
        Err(e) => return Err(e.into()),
    };
    let listing: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{google}/drive/v3/files"))
        .query(&[("spaces", "appDataFolder"), ("fields", "files(id,name)")])
        .bearer_auth(token.expose_secret())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let files = listing["files"].as_array().map_or(0, Vec::len);
    Ok(Outcome::Synced(files))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_example_runs_against_the_fake() {
        super::run().await.unwrap();
    }
}
