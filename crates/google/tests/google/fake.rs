//! Interoperability with `fake-google` (in-process, real HTTP and HTTPS): the whole adapter against a faithful
//! fake, as the server will run it in the demo and the end-to-end tests.

use bytes::Bytes;
use fake_google::{ANDROID_CLIENT_ID, CodeRequest, FakeConfig, FakeGoogle};
use offline_access_domain::{
    AuthCode, Drive, DriveError, DriveRequest, DriveResponse, IdTokenVerifier, RevokeError,
    TokenEndpoint, TokenError,
};
use offline_access_google::{ClientSecret, Google, GoogleConfig};
use secrecy::SecretString;
use time::OffsetDateTime;

fn config_for(fake: &FakeGoogle) -> GoogleConfig {
    let mut config = GoogleConfig::new(fake.client_id(), SecretString::from(fake.client_secret()));
    config.base_url = Some(fake.base_url());
    config.allowed_azp = vec![ANDROID_CLIENT_ID.into()];
    config
}

fn fake_now(fake: &FakeGoogle) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(fake.now_unix()).unwrap()
}

#[tokio::test]
async fn a_code_from_the_fake_is_exchanged_verified_refreshed_and_revoked() {
    let fake = FakeGoogle::start().await.unwrap();
    let google = Google::new(config_for(&fake)).unwrap();
    let minted = fake
        .mint_code(CodeRequest::new("alice@example.com").azp(ANDROID_CLIENT_ID))
        .await
        .unwrap();

    let answer = google
        .tokens()
        .exchange_code(&AuthCode::parse(&minted.code).unwrap())
        .await
        .unwrap();
    let verified = google
        .verifier()
        .verify(answer.id_token.as_ref().unwrap(), fake_now(&fake))
        .await
        .unwrap();
    assert_eq!(verified.subject.as_str(), minted.sub);
    assert_eq!(
        verified.profile.email.unwrap().as_str(),
        "alice@example.com"
    );
    assert_eq!(
        verified.authorized_party.as_deref(),
        Some(ANDROID_CLIENT_ID)
    );
    assert!(answer.scopes.unwrap().has_drive_appdata());
    let refresh_token = answer
        .refresh_token
        .expect("first consent yields a refresh token");

    let refreshed = google.tokens().refresh(&refresh_token).await.unwrap();
    assert_ne!(
        refreshed.access_token.expose_secret(),
        answer.access_token.expose_secret()
    );

    // The code is single-use.
    assert_eq!(
        google
            .tokens()
            .exchange_code(&AuthCode::parse(&minted.code).unwrap())
            .await
            .unwrap_err(),
        TokenError::InvalidGrant
    );

    google.tokens().revoke(&refresh_token).await.unwrap();
    assert_eq!(
        google.tokens().refresh(&refresh_token).await.unwrap_err(),
        TokenError::InvalidGrant
    );
    assert_eq!(
        google.tokens().revoke(&refresh_token).await.unwrap_err(),
        RevokeError::AlreadyRevoked
    );
}

#[tokio::test]
async fn a_drive_file_lives_and_dies_in_the_fakes_app_folder() {
    let fake = FakeGoogle::start().await.unwrap();
    let google = Google::new(config_for(&fake)).unwrap();
    let minted = fake
        .mint_code(CodeRequest::new("bob@example.com"))
        .await
        .unwrap();
    let access = google
        .tokens()
        .exchange_code(&AuthCode::parse(&minted.code).unwrap())
        .await
        .unwrap()
        .access_token;
    let drive = google.drive();
    let json = |r: DriveResponse| match r {
        DriveResponse::Json(v) => v,
        other => panic!("expected JSON, got {other:?}"),
    };

    let folder = json(
        drive
            .execute(&access, &DriveRequest::GetAppFolder)
            .await
            .unwrap(),
    );
    assert_eq!(folder["name"], "Application Data");

    let created = json(
        drive
            .execute(
                &access,
                &DriveRequest::CreateFile {
                    name: "settings.json".into(),
                    content_type: "application/json".into(),
                    content: Bytes::from_static(b"{\"theme\":\"dark\"}"),
                },
            )
            .await
            .unwrap(),
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "settings.json");

    let listed = json(
        drive
            .execute(&access, &DriveRequest::ListFiles { page_token: None })
            .await
            .unwrap(),
    );
    assert_eq!(listed["files"][0]["id"], id.as_str());

    let meta = json(
        drive
            .execute(&access, &DriveRequest::GetFile { id: id.clone() })
            .await
            .unwrap(),
    );
    assert_eq!(meta["mimeType"], "application/json");

    drive
        .execute(
            &access,
            &DriveRequest::UpdateContent {
                id: id.clone(),
                content_type: "application/json".into(),
                content: Bytes::from_static(b"{\"theme\":\"light\"}"),
            },
        )
        .await
        .unwrap();
    let DriveResponse::Content { content, .. } = drive
        .execute(&access, &DriveRequest::Download { id: id.clone() })
        .await
        .unwrap()
    else {
        panic!("expected content")
    };
    assert_eq!(
        content.collect(1024).await.unwrap(),
        Bytes::from_static(b"{\"theme\":\"light\"}")
    );

    assert_eq!(
        drive
            .execute(&access, &DriveRequest::Delete { id: id.clone() })
            .await
            .unwrap(),
        DriveResponse::Empty
    );
    assert_eq!(
        drive
            .execute(&access, &DriveRequest::GetFile { id })
            .await
            .unwrap_err(),
        DriveError::NotFound
    );

    fake.expire_user(&minted.sub).await;
    assert_eq!(
        drive
            .execute(&access, &DriveRequest::GetAppFolder)
            .await
            .unwrap_err(),
        DriveError::Unauthorized
    );
}

#[tokio::test]
async fn without_the_drive_scope_the_fake_answers_insufficient_scope() {
    let fake = FakeGoogle::start().await.unwrap();
    let google = Google::new(config_for(&fake)).unwrap();
    let minted = fake
        .mint_code(CodeRequest::new("carol@example.com").scopes(["openid", "email", "profile"]))
        .await
        .unwrap();
    let access = google
        .tokens()
        .exchange_code(&AuthCode::parse(&minted.code).unwrap())
        .await
        .unwrap()
        .access_token;
    assert_eq!(
        google
            .drive()
            .execute(&access, &DriveRequest::GetAppFolder)
            .await
            .unwrap_err(),
        DriveError::InsufficientScope
    );
}

#[tokio::test]
async fn the_fakes_client_secret_file_and_tls_ca_are_enough_to_connect() {
    let fake = FakeGoogle::start_with(FakeConfig::default().tls(true))
        .await
        .unwrap();
    let secret = ClientSecret::from_json(&fake.client_secret_json().to_string()).unwrap();
    let mut config = GoogleConfig::from_client_secret(&secret);
    config.base_url = Some(fake.base_url());
    config.extra_root_ca_pem = Some(fake.ca_pem().unwrap().into_bytes());
    let google = Google::new(config).unwrap();

    google.verifier().prefetch().await.unwrap();
    let minted = fake
        .mint_code(CodeRequest::new("dan@example.com"))
        .await
        .unwrap();
    let answer = google
        .tokens()
        .exchange_code(&AuthCode::parse(&minted.code).unwrap())
        .await
        .unwrap();
    google
        .verifier()
        .verify(answer.id_token.as_ref().unwrap(), fake_now(&fake))
        .await
        .unwrap();
}
