//! The fake Google's authorization endpoint in a browser: the account chooser, granular consent, Cancel and PKCE,
//! driven through the form contract of docs/fake-google.md. The redirect lands on the default client's
//! `{base}/oauth2callback`, where the test reads the code from the address bar and exchanges it itself.

use std::collections::HashMap;

use base64::Engine as _;
use fake_google::{FakeGoogle, UserSpec};
use fantoccini::{Client, Locator};

use crate::browser::{button, find, screenshot, texts, wait_for_title, wait_for_url, with_browser};

const DRIVE_APPDATA: &str = "https://www.googleapis.com/auth/drive.appdata";
const DRIVE_FILE: &str = "https://www.googleapis.com/auth/drive.file";

/// The authorization URL for the default client, redirecting to `{base}/oauth2callback`.
fn auth_url(fake: &FakeGoogle, scope: &str, extra: &[(&str, &str)]) -> String {
    let base = fake.base_url();
    let redirect = format!("{base}/oauth2callback");
    let client_id = fake.client_id();
    let mut params = vec![
        ("client_id", client_id.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("response_type", "code"),
        ("scope", scope),
        ("access_type", "offline"),
    ];
    params.extend_from_slice(extra);
    url::Url::parse_with_params(&format!("{base}/o/oauth2/v2/auth"), &params)
        .unwrap()
        .to_string()
}

/// The query of the URL the browser was sent back to.
fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// `POST /token` with the default client, `redirect_uri={base}/oauth2callback` and these extra fields.
async fn exchange(
    fake: &FakeGoogle,
    code: &str,
    extra: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let redirect = format!("{}/oauth2callback", fake.base_url());
    let client_id = fake.client_id();
    let client_secret = fake.client_secret();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", client_id.as_str()),
        ("client_secret", client_secret.as_str()),
        ("redirect_uri", redirect.as_str()),
    ];
    form.extend_from_slice(extra);
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/token", fake.base_url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

/// The values of the consent page's checkboxes and whether each is ticked.
async fn checkboxes(client: &Client) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for checkbox in client
        .find_all(Locator::Css("input[type=checkbox][name=scope]"))
        .await
        .unwrap()
    {
        out.push((
            checkbox.attr("value").await.unwrap().unwrap_or_default(),
            checkbox.is_selected().await.unwrap(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chooser_lists_known_accounts_and_the_consent_page_grants_only_the_ticked_scopes() {
    let fake = FakeGoogle::start().await.unwrap();
    let ada = fake
        .add_user(UserSpec {
            name: Some("Ada Lovelace".into()),
            ..UserSpec::new("ada@example.com")
        })
        .await
        .unwrap();
    fake.add_user(UserSpec {
        name: Some("Bob Builder".into()),
        ..UserSpec::new("bob@example.com")
    })
    .await
    .unwrap();
    let url = auth_url(
        &fake,
        &format!("openid email {DRIVE_APPDATA} {DRIVE_FILE}"),
        &[("state", "state-1")],
    );
    let callback = format!("{}/oauth2callback?", fake.base_url());

    let (tx, rx) = tokio::sync::oneshot::channel();
    with_browser("chooser_and_consent", move |client| async move {
        client.goto(&url).await.unwrap();

        // The chooser: one button per known account, its text the e-mail, and the form for another one.
        wait_for_title(&client, "Choose an account - fake Google").await;
        let accounts = texts(&client, "button[name=account]").await;
        assert_eq!(accounts, ["ada@example.com", "bob@example.com"]);
        find(&client, "input[type=email][name=email]").await;
        screenshot(&client, "fake-google-chooser").await;
        button(&client, "ada@example.com")
            .await
            .click()
            .await
            .unwrap();

        // The consent page: one ticked checkbox per non-sign-in scope; untick one.
        wait_for_title(&client, "Sign in - Google Accounts - fake Google").await;
        assert_eq!(
            checkboxes(&client).await,
            [
                (DRIVE_APPDATA.to_owned(), true),
                (DRIVE_FILE.to_owned(), true)
            ]
        );
        screenshot(&client, "fake-google-consent").await;
        find(&client, &format!("input[name=scope][value='{DRIVE_FILE}']"))
            .await
            .click()
            .await
            .unwrap();
        assert_eq!(
            checkboxes(&client).await,
            [
                (DRIVE_APPDATA.to_owned(), true),
                (DRIVE_FILE.to_owned(), false)
            ]
        );
        find(&client, "button[name=decision][value=allow]")
            .await
            .click()
            .await
            .unwrap();
        let _ = tx.send(wait_for_url(&client, &callback).await);
    })
    .await;
    let Ok(landed) = rx.await else {
        return; // skipped
    };

    // Allow: back at the redirect URI with the state, a code and only the granted scopes.
    let q = query(&landed);
    assert_eq!(q["state"], "state-1");
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    assert!(scopes.contains(&DRIVE_APPDATA), "{scopes:?}");
    assert!(!scopes.contains(&DRIVE_FILE), "{scopes:?}");
    assert!(
        scopes.contains(&"https://www.googleapis.com/auth/userinfo.email"),
        "{scopes:?}"
    );
    assert_eq!(q["prompt"], "consent");

    // The code is Ada's and yields exactly those scopes, and a refresh token (access_type=offline).
    let (status, tokens) = exchange(&fake, &q["code"], &[]).await;
    assert_eq!(status, 200, "{tokens}");
    let granted = tokens["scope"].as_str().unwrap();
    assert!(granted.contains(DRIVE_APPDATA), "{granted}");
    assert!(!granted.contains(DRIVE_FILE), "{granted}");
    assert!(tokens["refresh_token"].as_str().is_some(), "{tokens}");
    let grants = fake.grants(&ada).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert!(grants[0].scopes.iter().any(|s| s == DRIVE_APPDATA));
    assert!(!grants[0].scopes.iter().any(|s| s == DRIVE_FILE));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_on_the_consent_page_redirects_with_access_denied_and_no_code() {
    let fake = FakeGoogle::start().await.unwrap();
    let url = auth_url(
        &fake,
        &format!("openid email {DRIVE_APPDATA}"),
        &[("state", "state-2")],
    );
    let callback = format!("{}/oauth2callback?", fake.base_url());

    let (tx, rx) = tokio::sync::oneshot::channel();
    with_browser("cancel", move |client| async move {
        client.goto(&url).await.unwrap();
        // No known account: the chooser offers only the e-mail form.
        wait_for_title(&client, "Choose an account - fake Google").await;
        assert!(texts(&client, "button[name=account]").await.is_empty());
        find(&client, "input[type=email][name=email]")
            .await
            .send_keys("carol@example.com")
            .await
            .unwrap();
        button(&client, "Next").await.click().await.unwrap();
        wait_for_title(&client, "Sign in - Google Accounts - fake Google").await;
        button(&client, "Cancel").await.click().await.unwrap();
        let _ = tx.send(wait_for_url(&client, &callback).await);
    })
    .await;
    let Ok(landed) = rx.await else {
        return; // skipped
    };

    let q = query(&landed);
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(q.get("state").map(String::as_str), Some("state-2"));
    assert!(!q.contains_key("code"), "{landed}");
    // Nothing reached the token endpoint.
    assert!(
        fake.requests()
            .await
            .iter()
            .all(|entry| entry.endpoint != "token")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pkce_sign_in_needs_its_code_verifier_at_the_token_endpoint() {
    let fake = FakeGoogle::start().await.unwrap();
    fake.add_user(UserSpec::new("dora@example.com"))
        .await
        .unwrap();
    let verifier = "a-PKCE-code-verifier-of-43-or-more-characters-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    let url = auth_url(
        &fake,
        &format!("openid email {DRIVE_APPDATA}"),
        &[
            ("state", "state-3"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            // A known login_hint skips the chooser.
            ("login_hint", "dora@example.com"),
        ],
    );
    let callback = format!("{}/oauth2callback?", fake.base_url());

    let (tx, rx) = tokio::sync::oneshot::channel();
    with_browser("pkce", move |client| async move {
        client.goto(&url).await.unwrap();
        wait_for_title(&client, "Sign in - Google Accounts - fake Google").await;
        button(&client, "Allow").await.click().await.unwrap();
        let _ = tx.send(wait_for_url(&client, &callback).await);
    })
    .await;
    let Ok(landed) = rx.await else {
        return; // skipped
    };
    let q = query(&landed);
    assert_eq!(q["state"], "state-3");
    let code = &q["code"];

    // Google's answers: no verifier, a wrong one (neither uses the code up), then the right one.
    let (status, body) = exchange(&fake, code, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "Missing code verifier.");
    let (status, body) = exchange(
        &fake,
        code,
        &[(
            "code_verifier",
            "not-the-verifier-of-this-code-0123456789-abcdef",
        )],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error_description"], "Invalid code verifier.");
    let (status, body) = exchange(&fake, code, &[("code_verifier", verifier)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].as_str().is_some(), "{body}");
    assert!(body["id_token"].as_str().is_some(), "{body}");
}
