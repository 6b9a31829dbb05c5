//! The browser flow at `/o/oauth2/v2/auth`: error pages, the account chooser, granular consent,
//! redirects with code/scope/state, `prompt`, `access_type`, `auto_consent`, `nonce`, `hd`,
//! `include_granted_scopes` and the `postmessage` hand-off.

use axum::body::Body;
use fake_google::{SettingsPatch, UserSpec};
use proptest::prelude::*;
use tower::ServiceExt as _;

use crate::browser::{
    APPDATA, EMAIL, FILE, PROFILE, REDIRECT, claims, control_get, sorted, sorted_of,
};
use crate::helpers::{s, spawn};

const SCOPES: &str = "openid email profile https://www.googleapis.com/auth/drive.appdata https://www.googleapis.com/auth/drive.file";

#[tokio::test]
async fn an_unknown_client_or_an_unregistered_redirect_gets_an_error_page_not_a_redirect() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    b.authorize_default("nobody.apps.googleusercontent.com", "openid", &[])
        .await
        .assert_error_page("invalid_client");
    for bad in [
        "https://evil.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "https://127.0.0.1:9/cb",
    ] {
        let page = b
            .authorize(&[
                ("client_id", &id),
                ("redirect_uri", bad),
                ("response_type", "code"),
                ("scope", "openid"),
            ])
            .await;
        page.assert_error_page("redirect_uri_mismatch");
    }
    // Missing or broken parameters are pages too.
    b.authorize(&[("redirect_uri", REDIRECT)])
        .await
        .assert_error_page("invalid_request");
    b.authorize(&[
        ("client_id", &id),
        ("response_type", "code"),
        ("scope", "openid"),
    ])
    .await
    .assert_error_page("invalid_request");
    for (more, error) in [
        (&[("access_type", "forever")][..], "invalid_request"),
        (&[("prompt", "none consent")][..], "invalid_request"),
        (&[("prompt", "login")][..], "invalid_request"),
        (&[("include_granted_scopes", "yes")][..], "invalid_request"),
        (&[("code_challenge_method", "S512")][..], "invalid_request"),
        (&[("code_challenge", "too-short")][..], "invalid_request"),
    ] {
        b.authorize_default(&id, "openid", more)
            .await
            .assert_error_page(error);
    }
    let page = b
        .authorize(&[
            ("client_id", &id),
            ("redirect_uri", REDIRECT),
            ("response_type", "token"),
            ("scope", "openid"),
        ])
        .await;
    page.assert_error_page("unsupported_response_type");
    let page = b
        .get(&format!(
            "/o/oauth2/v2/auth?client_id={id}&client_id={id}&redirect_uri={REDIRECT}"
        ))
        .await;
    page.assert_error_page("invalid_request");
    assert!(page.body.contains("repeated"), "{}", page.body);
}

#[tokio::test]
async fn chooser_then_granular_consent_then_allow_redirects_with_code_scope_and_state() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    let chooser = b
        .authorize_default(&id, SCOPES, &[("access_type", "offline")])
        .await;
    assert_eq!(chooser.status, 200);
    assert!(chooser.content_type.starts_with("text/html"));
    assert!(chooser.body.contains("<html lang=\"en\">"));
    assert!(chooser.body.contains("<title>"));
    assert!(
        !chooser.body.contains("<script"),
        "no script on the chooser"
    );
    let consent = b.choose_email(&chooser, "new.user@example.com").await;
    assert_eq!(consent.status, 200, "{consent:?}");
    // One ticked checkbox per non-sign-in scope; the sign-in ones are listed, not tickable.
    assert_eq!(consent.checkboxes(), vec![APPDATA, FILE]);
    assert!(consent.body.contains("new.user@example.com"));
    assert!(
        consent
            .body
            .contains("<button name=\"decision\" value=\"allow\">")
    );
    assert!(
        consent
            .body
            .contains("<button name=\"decision\" value=\"deny\">")
    );
    // Untick drive.file.
    let done = b.decide(&consent, &[APPDATA], "allow").await;
    let q = done.redirect_query();
    assert!(
        done.location
            .as_deref()
            .unwrap()
            .starts_with("http://127.0.0.1:9/callback?state=xyz&code=")
    );
    assert_eq!(q["state"], "xyz");
    assert!(q["code"].starts_with("4/0"));
    let granted = sorted_of(&["openid", EMAIL, PROFILE, APPDATA]);
    assert_eq!(sorted(&q["scope"]), granted);
    assert_eq!(q["prompt"], "consent");
    // The code exchanges (once, with its redirect URI) for exactly the granted scopes.
    let (status, body) = ctx
        .exchange_at(&q["code"], "http://127.0.0.1:8/other", &[])
        .await;
    assert_eq!((status, s(&body["error"])), (400, "redirect_uri_mismatch"));
    let (status, token) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(sorted(s(&token["scope"])), granted);
    assert!(!s(&token["scope"]).contains(FILE));
    assert!(token["refresh_token"].is_string(), "offline, first consent");
    let id_token = claims(s(&token["id_token"]));
    assert_eq!(id_token["email"], "new.user@example.com");
    assert_eq!(id_token["aud"], id.as_str());
    // The new account now shows in the chooser, as a button whose text is its e-mail.
    let again = b.authorize_default(&id, "openid", &[]).await;
    assert!(
        again.body.contains(">new.user@example.com</button>"),
        "{}",
        again.body
    );
    // The pending sign-in was used up.
    let replay = b.decide(&consent, &[APPDATA], "allow").await;
    replay.assert_error_page("invalid_request");
}

#[tokio::test]
async fn a_known_account_button_signs_in_as_that_user() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    let sub = ctx
        .fake
        .add_user(UserSpec {
            sub: Some("known-1".into()),
            name: Some("Known Person".into()),
            ..UserSpec::new("known@example.com")
        })
        .await
        .unwrap();
    ctx.add_user("other@example.com").await;
    let chooser = b.authorize_default(&id, "openid email profile", &[]).await;
    assert!(chooser.body.contains(&format!(
        "<button class=\"account\" name=\"account\" value=\"{sub}\">known@example.com</button>"
    )));
    assert!(chooser.body.contains(">other@example.com</button>"));
    let auth = chooser.auth_id();
    let consent = b
        .post(
            "/o/oauth2/v2/auth/account",
            &[("auth", auth.as_str()), ("account", sub.as_str())],
        )
        .await;
    // Only sign-in scopes: nothing to tick.
    assert!(consent.checkboxes().is_empty());
    let q = b.decide(&consent, &[], "allow").await.redirect_query();
    let (_, token) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    let c = claims(s(&token["id_token"]));
    assert_eq!(c["sub"], "known-1");
    assert_eq!(c["name"], "Known Person");
    assert!(
        token.get("refresh_token").is_none(),
        "access_type defaults to online"
    );
}

#[tokio::test]
async fn cancel_redirects_access_denied_and_unticking_everything_grants_the_sign_in_scopes() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    let chooser = b.authorize_default(&id, SCOPES, &[]).await;
    let consent = b.choose_email(&chooser, "deny@example.com").await;
    let denied = b.decide(&consent, &[APPDATA], "deny").await;
    let q = denied.redirect_query();
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "xyz");
    assert!(!q.contains_key("code"));
    assert!(
        denied
            .location
            .unwrap()
            .starts_with("http://127.0.0.1:9/callback?error=access_denied&state=xyz")
    );

    let chooser = b.authorize_default(&id, SCOPES, &[]).await;
    let consent = b.choose_email(&chooser, "deny@example.com").await;
    let q = b.decide(&consent, &[], "allow").await.redirect_query();
    assert_eq!(sorted(&q["scope"]), sorted_of(&["openid", EMAIL, PROFILE]));
    let (_, token) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert_eq!(
        sorted(s(&token["scope"])),
        sorted_of(&["openid", EMAIL, PROFILE])
    );

    // With no sign-in scope requested, unticking everything grants nothing: access_denied.
    let chooser = b.authorize_default(&id, APPDATA, &[]).await;
    let consent = b.choose_email(&chooser, "deny@example.com").await;
    let q = b.decide(&consent, &[], "allow").await.redirect_query();
    assert_eq!(q["error"], "access_denied");

    // A tampered form naming a scope that was not requested is refused, and the sign-in stays.
    let chooser = b.authorize_default(&id, APPDATA, &[]).await;
    let consent = b.choose_email(&chooser, "deny@example.com").await;
    b.decide(&consent, &[FILE], "allow")
        .await
        .assert_error_page("invalid_scope");
    b.decide(&consent, &[APPDATA], "maybe")
        .await
        .assert_error_page("invalid_request");
    let q = b
        .decide(&consent, &[APPDATA], "allow")
        .await
        .redirect_query();
    assert_eq!(q["scope"], APPDATA);
}

#[tokio::test]
async fn prompt_none_answers_at_once() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    // Nobody known: interaction_required.
    let q = b
        .authorize_default(&id, "openid email", &[("prompt", "none")])
        .await
        .redirect_query();
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("interaction_required", "xyz")
    );
    // Known but not granted yet: consent_required.
    let sub = ctx.add_user("silent@example.com").await;
    let q = b
        .authorize_default(&id, "openid email", &[("prompt", "none")])
        .await
        .redirect_query();
    assert_eq!(q["error"], "consent_required");
    // Grant it through the pages (login_hint skips the chooser), exchange it.
    let consent = b
        .authorize_default(
            &id,
            "openid email",
            &[
                ("login_hint", "silent@example.com"),
                ("access_type", "offline"),
            ],
        )
        .await;
    assert_eq!(
        consent.status, 303,
        "a known login_hint goes straight to consent"
    );
    let consent = b.get(consent.location.as_deref().unwrap()).await;
    let q = b.decide(&consent, &[], "allow").await.redirect_query();
    let (_, first) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert!(first["refresh_token"].is_string());
    // Now prompt=none gives a code for the only known user, and by login_hint (e-mail or sub).
    for hint in [None, Some("silent@example.com"), Some(sub.as_str())] {
        let mut more = vec![("prompt", "none")];
        if let Some(h) = hint {
            more.push(("login_hint", h));
        }
        let q = b
            .authorize_default(&id, "openid email", &more)
            .await
            .redirect_query();
        assert_eq!(q["prompt"], "none");
        let (status, token) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
        assert_eq!(status, 200, "{token}");
        assert!(
            token.get("refresh_token").is_none(),
            "no consent shown: no refresh token"
        );
    }
    // Asking for more than was granted: consent_required; an unknown hint: interaction_required.
    let q = b
        .authorize_default(&id, SCOPES, &[("prompt", "none")])
        .await
        .redirect_query();
    assert_eq!(q["error"], "consent_required");
    let q = b
        .authorize_default(
            &id,
            "openid",
            &[("prompt", "none"), ("login_hint", "stranger@example.com")],
        )
        .await
        .redirect_query();
    assert_eq!(q["error"], "interaction_required");
    // Two known users and no hint: interaction_required.
    ctx.add_user("second@example.com").await;
    let q = b
        .authorize_default(&id, "openid", &[("prompt", "none")])
        .await
        .redirect_query();
    assert_eq!(q["error"], "interaction_required");
}

#[tokio::test]
async fn a_returning_user_skips_consent_unless_prompt_consent_and_online_access_has_no_refresh_token()
 {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    let hint = [("login_hint", "back@example.com")];
    // First sign-in, online: no refresh token.
    let chooser = b.authorize_default(&id, "openid email", &hint).await;
    assert_eq!(
        chooser.status, 200,
        "an unknown e-mail hint shows the chooser"
    );
    assert!(
        chooser
            .body
            .contains("<input type=\"email\" name=\"email\" value=\"back@example.com\">")
    );
    let consent = b.choose_email(&chooser, "back@example.com").await;
    let q = b.decide(&consent, &[], "allow").await.redirect_query();
    let (_, online) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert!(online.get("refresh_token").is_none());
    // Same scopes again, online: no consent page, a code at once.
    let q = b
        .authorize_default(&id, "openid email", &hint)
        .await
        .redirect_query();
    assert_eq!(q["prompt"], "none");
    // Offline now: offline access was never granted, so the consent page shows; a refresh token.
    let page = b
        .authorize_default(&id, "openid email", &[hint[0], ("access_type", "offline")])
        .await;
    assert_eq!(page.status, 303);
    let consent = b.get(page.location.as_deref().unwrap()).await;
    assert!(consent.body.contains("offline access"));
    let q = b.decide(&consent, &[], "allow").await.redirect_query();
    let (_, offline) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert!(offline["refresh_token"].is_string());
    // Offline again: skipped, no new refresh token.
    let q = b
        .authorize_default(&id, "openid email", &[hint[0], ("access_type", "offline")])
        .await
        .redirect_query();
    let (_, again) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert!(again.get("refresh_token").is_none());
    // prompt=consent forces the page and a new refresh token.
    let page = b
        .authorize_default(
            &id,
            "openid email",
            &[hint[0], ("access_type", "offline"), ("prompt", "consent")],
        )
        .await;
    let consent = b.get(page.location.as_deref().unwrap()).await;
    let q = b.decide(&consent, &[], "allow").await.redirect_query();
    let (_, forced) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert!(forced["refresh_token"].is_string());
    // select_account forces the chooser even with a known login_hint.
    let page = b
        .authorize_default(
            &id,
            "openid email",
            &[hint[0], ("prompt", "select_account")],
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(">back@example.com</button>"));
}

#[tokio::test]
async fn auto_consent_approves_at_once_for_login_hint() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    let (status, settings) = crate::helpers::split(
        ctx.http
            .post(ctx.url("/_fake/settings"))
            .json(&serde_json::json!({"auto_consent": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &settings["auto_consent"]),
        (200, &serde_json::json!(true))
    );
    let q = b
        .authorize_default(
            &id,
            SCOPES,
            &[("login_hint", "ci@example.com"), ("access_type", "offline")],
        )
        .await
        .redirect_query();
    assert_eq!(
        sorted(&q["scope"]),
        sorted_of(&["openid", EMAIL, PROFILE, APPDATA, FILE])
    );
    let (status, token) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert_eq!(status, 200);
    assert!(token["refresh_token"].is_string());
    assert_eq!(claims(s(&token["id_token"]))["email"], "ci@example.com");
    // Without a hint the chooser shows; the consent page is then approved at once.
    let chooser = b.authorize_default(&id, SCOPES, &[]).await;
    assert_eq!(chooser.status, 200);
    let auth = chooser.auth_id();
    let done = b
        .post(
            "/o/oauth2/v2/auth/account",
            &[("auth", auth.as_str()), ("email", "picked@example.com")],
        )
        .await;
    assert!(done.redirect_query()["code"].starts_with("4/0"));
    ctx.fake
        .settings(SettingsPatch {
            auto_consent: Some(false),
            ..SettingsPatch::default()
        })
        .await
        .unwrap();
    let page = b
        .authorize_default(&id, SCOPES, &[("login_hint", "other-ci@example.com")])
        .await;
    assert_eq!(page.status, 200, "off again: the chooser");
}

#[tokio::test]
async fn the_nonce_lands_in_the_id_token_of_the_exchanged_code() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    let chooser = b
        .authorize_default(&id, "openid email", &[("nonce", "n-0S6_WzA2Mj")])
        .await;
    let consent = b.choose_email(&chooser, "nonce@example.com").await;
    let q = b.decide(&consent, &[], "allow").await.redirect_query();
    let (_, token) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert_eq!(claims(s(&token["id_token"]))["nonce"], "n-0S6_WzA2Mj");
}

#[tokio::test]
async fn include_granted_scopes_answers_the_earlier_grant_too() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    let chooser = b
        .authorize_default(&id, &format!("openid {APPDATA}"), &[])
        .await;
    let consent = b.choose_email(&chooser, "inc@example.com").await;
    let q = b
        .decide(&consent, &[APPDATA], "allow")
        .await
        .redirect_query();
    ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    let page = b
        .authorize_default(
            &id,
            &format!("openid {FILE}"),
            &[
                ("login_hint", "inc@example.com"),
                ("include_granted_scopes", "true"),
            ],
        )
        .await;
    let consent = b.get(page.location.as_deref().unwrap()).await;
    assert_eq!(consent.checkboxes(), vec![FILE]);
    let q = b.decide(&consent, &[FILE], "allow").await.redirect_query();
    let union = sorted_of(&["openid", APPDATA, FILE]);
    assert_eq!(sorted(&q["scope"]), union);
    let (_, token) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert_eq!(sorted(s(&token["scope"])), union);
}

#[tokio::test]
async fn hd_limits_the_accounts_and_lands_in_the_id_token() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    ctx.add_user("home@gmail.example").await;
    ctx.add_user("worker@corp.example").await;
    let chooser = b
        .authorize_default(&id, "openid email", &[("hd", "corp.example")])
        .await;
    assert!(chooser.body.contains(">worker@corp.example</button>"));
    assert!(!chooser.body.contains("home@gmail.example"));
    let refused = b.choose_email(&chooser, "someone@gmail.example").await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("corp.example"));
    let consent = b.choose_email(&refused, "new@corp.example").await;
    let q = b.decide(&consent, &[], "allow").await.redirect_query();
    assert_eq!(q["hd"], "corp.example");
    let (_, token) = ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    assert_eq!(claims(s(&token["id_token"]))["hd"], "corp.example");
}

#[tokio::test]
async fn postmessage_hands_the_code_to_the_opener_and_exchanges_with_postmessage() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    let origin = "http://localhost:5173";
    let params = |origin: &'static str| {
        vec![
            ("client_id", id.clone()),
            ("redirect_uri", "postmessage".to_owned()),
            ("response_type", "code".to_owned()),
            ("scope", format!("openid email {APPDATA}")),
            ("state", "st<1>".to_owned()),
            ("origin", origin.to_owned()),
            ("include_granted_scopes", "true".to_owned()),
            ("access_type", "offline".to_owned()),
        ]
    };
    let query = serde_urlencoded::to_string(params(origin)).unwrap();
    let chooser = b.get(&format!("/o/oauth2/v2/auth?{query}")).await;
    let consent = b.choose_email(&chooser, "popup@example.com").await;
    let page = b.decide(&consent, &[APPDATA], "allow").await;
    assert_eq!(page.status, 200);
    assert!(page.location.is_none());
    assert!(
        page.body
            .contains("window.opener.postMessage(message, targetOrigin)")
    );
    assert!(
        page.body
            .contains(&format!("var targetOrigin = \"{origin}\";"))
    );
    assert!(page.body.contains("window.close()"));
    // The message: {"state", "code", "scope", ...} as JSON, escaped for the script element.
    let start = page.body.find("var message = ").unwrap() + "var message = ".len();
    let end = page.body[start..].find(";\n").unwrap() + start;
    let message: serde_json::Value = serde_json::from_str(&page.body[start..end]).unwrap();
    assert_eq!(message["state"], "st<1>");
    assert!(page.body[start..end].contains("\\u003c1\\u003e"));
    let code = s(&message["code"]).to_owned();
    assert_eq!(
        sorted(s(&message["scope"])),
        sorted_of(&["openid", EMAIL, APPDATA])
    );
    let (status, token) = ctx.exchange_at(&code, "postmessage", &[]).await;
    assert_eq!(status, 200, "{token}");
    assert!(token["refresh_token"].is_string());
    // A denial is posted too.
    let query = serde_urlencoded::to_string(params(origin)).unwrap();
    let page = b
        .get(&format!("/o/oauth2/v2/auth?{query}&prompt=consent"))
        .await;
    let consent = b.choose_email(&page, "popup@example.com").await;
    let page = b.decide(&consent, &[], "deny").await;
    assert!(
        page.body.contains("\"error\":\"access_denied\""),
        "{}",
        page.body
    );
    // An origin that is not registered, or none at all: an error page.
    let query = serde_urlencoded::to_string(params("https://evil.example")).unwrap();
    b.get(&format!("/o/oauth2/v2/auth?{query}"))
        .await
        .assert_error_page("origin_mismatch");
    let mut no_origin = params(origin);
    no_origin.retain(|(k, _)| *k != "origin");
    let query = serde_urlencoded::to_string(no_origin).unwrap();
    b.get(&format!("/o/oauth2/v2/auth?{query}"))
        .await
        .assert_error_page("origin_mismatch");
}

#[tokio::test]
async fn the_journal_and_grants_see_the_browser_flow() {
    let ctx = spawn().await;
    let b = ctx.browser();
    let id = ctx.fake.client_id();
    ctx.fake.clear_requests().await;
    let chooser = b.authorize_default(&id, SCOPES, &[]).await;
    let consent = b.choose_email(&chooser, "journal@example.com").await;
    let q = b.decide(&consent, &[FILE], "allow").await.redirect_query();
    ctx.exchange_at(&q["code"], REDIRECT, &[]).await;
    let journal = ctx.fake.requests().await;
    let authorize: Vec<_> = journal
        .iter()
        .filter(|e| e.endpoint == "authorize")
        .collect();
    assert_eq!(authorize.len(), 4, "{journal:?}");
    let last = authorize.last().unwrap();
    assert_eq!(last.status, 302);
    assert_eq!(last.client_id.as_deref(), Some(id.as_str()));
    let sub = last.sub.clone().unwrap();
    let (status, grants) = control_get(&ctx, &format!("/_fake/users/{sub}/grants")).await;
    assert_eq!(status, 200);
    let scopes: Vec<&str> = grants["grants"][0]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        sorted_of(&scopes),
        sorted_of(&["openid", EMAIL, PROFILE, FILE])
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn random_queries_to_the_authorization_endpoint_never_fail_the_server(
        path in proptest::sample::select(&[
            "/o/oauth2/v2/auth", "/o/oauth2/auth", "/o/oauth2/v2/auth/consent",
        ][..]),
        keys in proptest::collection::vec(proptest::sample::select(&[
            "client_id", "redirect_uri", "response_type", "scope", "state", "access_type",
            "prompt", "include_granted_scopes", "login_hint", "hd", "nonce", "code_challenge",
            "code_challenge_method", "origin", "auth", "x",
        ][..]), 0..10),
        values in proptest::collection::vec("[ -~]{0,12}|postmessage|code|none|consent|S256|offline|http://localhost:1/", 10),
        raw in "[a-zA-Z0-9_=&%+.:/-]{0,40}",
        use_default_client in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let control = fake_google::Control::new(fake_google::FakeConfig::default().client).unwrap();
            let app = fake_google::router(&control);
            let mut pairs: Vec<(String, String)> = keys
                .iter()
                .zip(values.iter())
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            if use_default_client {
                pairs.push(("client_id".into(), control.client_id()));
            }
            let query = format!("{}&{raw}", serde_urlencoded::to_string(&pairs).unwrap());
            let req = http::Request::builder()
                .uri(format!("{path}?{query}"))
                .body(Body::empty())
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            assert!(
                [200, 302, 303, 400].contains(&status),
                "{path}?{query}: {status}"
            );
            if status == 302 {
                assert!(resp.headers().contains_key("location"));
            }
        });
    }
}
