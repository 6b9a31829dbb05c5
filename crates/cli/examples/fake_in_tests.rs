//! Using fake-google in your own integration tests: start it in-process, point your code at its base URL, and
//! drive a sign-in and Drive calls with no network and no Google account; then look at what reached "Google"
//! (the fake's journal) and make it fail on purpose (faults).
//!
//! The body of `run` is what a `#[tokio::test]` of yours would hold (see `tests` below). Standalone:
//!
//! ```sh
//! cargo run --example fake_in_tests
//! ```

mod common;

use std::error::Error;

use fake_google::{CodeRequest, Endpoint, FakeGoogle, Fault};
use offline_access_domain::{AuthCode, DriveRequest, DriveResponse};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run().await
}

/// Signs a user in against the fake, creates and lists a Drive file through the use cases, survives a Drive
/// outage the fake injects, and checks the fake's journal.
pub async fn run() -> Result<(), Box<dyn Error>> {
    // 1. Start the fake on 127.0.0.1:0 (plain HTTP); it stops when dropped (or `fake.shutdown().await`).
    let fake = FakeGoogle::start().await?;
    // 2. Point the code under test at it: its base URL and its web client (`fake.client_secret_json()`), as
    //    `common::offline_access` does.
    let world = common::World::on(fake)?;
    let (fake, service) = (&world.fake, &world.service);

    // 3. What the Android app's consent would produce: a server auth code for a new user.
    let minted = fake
        .mint_code(CodeRequest::new("carol@example.com"))
        .await?;
    let signed_in = service
        .sign_in(&AuthCode::parse(&minted.code)?, None)
        .await?;
    check(
        signed_in.subject.as_str() == minted.sub,
        "the signed-in user",
    )?;
    check(signed_in.offline_access(), "offline access")?;

    // 4. Drive in the user's appDataFolder: the fake keeps the files per user.
    let create = DriveRequest::CreateFile {
        name: "notes.txt".to_owned(),
        content_type: "text/plain".to_owned(),
        content: b"hello".as_slice().into(),
    };
    let created = service.drive(&signed_in.subject, &create).await?;
    let DriveResponse::Json(file) = created else {
        return Err(format!("unexpected answer {created:?}").into());
    };
    println!("created {file}");

    // 5. A Drive outage, once: the listing is retried with backoff and still answers.
    fake.add_fault(Fault::status(Endpoint::Drive, 503).times(1))
        .await?;
    let listed = service
        .drive(
            &signed_in.subject,
            &DriveRequest::ListFiles { page_token: None },
        )
        .await?;
    let DriveResponse::Json(listing) = listed else {
        return Err(format!("unexpected answer {listed:?}").into());
    };
    check(listing["files"][0]["id"] == file["id"], "the listing")?;

    // 6. What reached Google: one code exchange, the upload, the failed listing and its retry.
    let journal = fake.requests().await;
    let exchanges = journal
        .iter()
        .filter(|e| e.grant_type.as_deref() == Some("authorization_code"))
        .count();
    let listings: Vec<u16> = journal
        .iter()
        .filter(|e| e.endpoint == "drive" && e.method == "GET")
        .map(|e| e.status)
        .collect();
    println!("token exchanges: {exchanges}; listings answered {listings:?}");
    check(exchanges == 1, "one code exchange")?;
    check(
        journal
            .iter()
            .any(|e| e.endpoint == "upload" && e.status == 200),
        "the upload",
    )?;
    check(listings == [503, 200], "a failed listing, then its retry")?;

    Ok(())
}

fn check(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected: {what}").into())
    }
}

#[cfg(test)]
mod tests {
    // In your crate this is the whole test: `#[tokio::test] async fn ...() { FakeGoogle::start() ... }`.
    #[tokio::test]
    async fn the_example_runs_against_the_fake() {
        super::run().await.unwrap();
    }
}
