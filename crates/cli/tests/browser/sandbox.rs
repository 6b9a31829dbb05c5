//! `offline-access serve --sandbox` in a browser: "Sign in with Google" opens the fake's popup (chooser, consent),
//! whose `postmessage` hand-off brings the code back to the page, which posts it to `/authcode` and shows the user,
//! their granted and missing scopes and their Drive `appDataFolder`.

use std::process::Stdio;

use fantoccini::Client;
use fantoccini::wd::WindowHandle;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::browser::{
    PATIENCE, button, eventually, find, screenshot, texts, wait_for_title, with_browser,
};

const DRIVE_APPDATA: &str = "https://www.googleapis.com/auth/drive.appdata";

/// A `serve --sandbox` process on a free loopback port, in its own working directory.
struct Sandbox {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_offline-access"));
        command.args(["serve", "--sandbox"]).current_dir(dir.path());
        for (key, _) in std::env::vars() {
            // No setting of the test runner leaks in; everything here is on loopback, so no proxy either.
            if key.starts_with("OFFLINE_ACCESS_")
                || key == "RUST_LOG"
                || key.to_ascii_lowercase().ends_with("_proxy")
            {
                command.env_remove(key);
            }
        }
        let mut child = command
            .env("OFFLINE_ACCESS_LISTEN", "127.0.0.1:0")
            .env("OFFLINE_ACCESS_LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("no `listening on` line from serve --sandbox")
            .unwrap()
            .unwrap_or_default();
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Self {
            child,
            base,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(PATIENCE, self.child.wait()).await;
    }
}

/// Clicks "Sign in with Google" and switches to the popup it opens; returns the page's own window.
async fn open_popup(client: &Client) -> WindowHandle {
    let page = client.window().await.unwrap();
    button(client, "Sign in with Google")
        .await
        .click()
        .await
        .unwrap();
    let popup = eventually("the sign-in popup", || async {
        let windows = client.windows().await.ok()?;
        windows.into_iter().find(|w| *w != page)
    })
    .await;
    client.switch_to_window(popup).await.unwrap();
    page
}

/// In the popup: a new account by e-mail, then the consent page, optionally unticking `drive.appdata`; then back
/// to the page once the popup closed itself.
async fn sign_in_in_popup(client: &Client, email: &str, grant_drive: bool, page: WindowHandle) {
    wait_for_title(client, "Choose an account - fake Google").await;
    find(client, "input[type=email][name=email]")
        .await
        .send_keys(email)
        .await
        .unwrap();
    button(client, "Next").await.click().await.unwrap();
    wait_for_title(client, "Sign in - Google Accounts - fake Google").await;
    if !grant_drive {
        find(
            client,
            &format!("input[name=scope][value='{DRIVE_APPDATA}']"),
        )
        .await
        .click()
        .await
        .unwrap();
    }
    button(client, "Allow").await.click().await.unwrap();
    back_to_page(client, page).await;
}

/// Waits until the popup closed itself and switches back to the page.
async fn back_to_page(client: &Client, page: WindowHandle) {
    eventually("the popup to close", || async {
        (client.windows().await.ok()?.len() == 1).then_some(())
    })
    .await;
    client.switch_to_window(page).await.unwrap();
}

/// Waits until the element's text is not empty and returns it.
async fn text_of(client: &Client, css: &str) -> String {
    eventually(&format!("text in {css}"), || async {
        let text = find(client, css).await.text().await.ok()?;
        (!text.is_empty()).then_some(text)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_page_signs_in_through_the_popup_and_shows_the_user_scopes_and_appdatafolder() {
    let sandbox = Sandbox::start().await;
    let base = sandbox.base.clone();

    with_browser("sandbox_sign_in", move |client| async move {
        client.goto(&format!("{base}/")).await.unwrap();
        wait_for_title(&client, "offline-access sandbox").await;

        let page = open_popup(&client).await;
        sign_in_in_popup(&client, "ada@example.com", true, page).await;

        // The page shows the user, the scopes of the stored grant and the appDataFolder read through the API.
        let name = text_of(&client, "#appfolder-name").await;
        assert_eq!(name, "Application Data");
        let id = text_of(&client, "#appfolder-id").await;
        assert!(!id.is_empty() && id != "appDataFolder", "{id}");
        assert_eq!(text_of(&client, "#email").await, "ada@example.com");
        let scopes = texts(&client, "#scopes li").await;
        for scope in [
            "openid",
            "https://www.googleapis.com/auth/userinfo.email",
            "https://www.googleapis.com/auth/userinfo.profile",
            DRIVE_APPDATA,
        ] {
            assert!(scopes.iter().any(|s| s == scope), "{scope} in {scopes:?}");
        }
        assert_eq!(texts(&client, "#missing-scopes li").await, ["none"]);
        assert!(
            text_of(&client, "#offline-access").await.starts_with("yes"),
            "a refresh token is stored"
        );
        assert_eq!(text_of(&client, "#consent").await, "active");
        assert!(!find(&client, "#error").await.is_displayed().await.unwrap());
        screenshot(&client, "sandbox-signed-in").await;
    })
    .await;

    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_page_shows_missing_scopes_and_a_cancelled_sign_in() {
    let sandbox = Sandbox::start().await;
    let base = sandbox.base.clone();

    with_browser(
        "sandbox_missing_scopes_and_cancel",
        move |client| async move {
            client.goto(&format!("{base}/")).await.unwrap();
            wait_for_title(&client, "offline-access sandbox").await;

            // drive.appdata unticked: signed in, but Drive is missing and the API says so.
            let page = open_popup(&client).await;
            sign_in_in_popup(&client, "bea@example.com", false, page.clone()).await;
            assert_eq!(text_of(&client, "#email").await, "bea@example.com");
            assert_eq!(texts(&client, "#missing-scopes li").await, [DRIVE_APPDATA]);
            assert!(
                !texts(&client, "#scopes li")
                    .await
                    .iter()
                    .any(|s| s == DRIVE_APPDATA)
            );
            let problem = text_of(&client, "#appfolder-error").await;
            assert!(problem.contains("scope_missing"), "{problem}");
            assert!(
                !find(&client, "#appfolder")
                    .await
                    .is_displayed()
                    .await
                    .unwrap()
            );

            // Cancel in the popup: the page says access_denied.
            let page = open_popup(&client).await;
            wait_for_title(&client, "Choose an account - fake Google").await;
            // Bea is a known account now.
            button(&client, "bea@example.com")
                .await
                .click()
                .await
                .unwrap();
            wait_for_title(&client, "Sign in - Google Accounts - fake Google").await;
            button(&client, "Cancel").await.click().await.unwrap();
            back_to_page(&client, page).await;
            let error = text_of(&client, "#error").await;
            assert!(error.contains("access_denied"), "{error}");
            assert!(!find(&client, "#result").await.is_displayed().await.unwrap());
        },
    )
    .await;

    sandbox.stop().await;
}
