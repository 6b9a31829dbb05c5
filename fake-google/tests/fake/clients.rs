//! `POST /_fake/clients`: web, installed and Android clients, their redirect URIs and secret files.

use fake_google::{ClientSpec, ClientType};
use serde_json::{Value, json};

use crate::browser::control_get;
use crate::helpers::{Ctx, s, spawn, split};

async fn register(ctx: &Ctx, body: Value) -> (u16, Value) {
    split(
        ctx.http
            .post(ctx.url("/_fake/clients"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_registered_web_client_signs_in_on_its_own_redirect_uri() {
    let ctx = spawn().await;
    let (status, client) = register(
        &ctx,
        json!({"client_id": "web-2.apps.googleusercontent.com", "client_secret": "GOCSPX-two",
               "type": "web", "redirect_uris": ["https://app.example/oauth/callback"]}),
    )
    .await;
    assert_eq!(status, 201, "{client}");
    assert_eq!(
        client,
        json!({"client_id": "web-2.apps.googleusercontent.com", "client_secret": "GOCSPX-two"})
    );
    let b = ctx.browser();
    let params = |redirect: &'static str| {
        vec![
            ("client_id", "web-2.apps.googleusercontent.com"),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", "openid email"),
        ]
    };
    // Its own URI only: no loopback, no postmessage.
    for other in ["http://localhost:8080/", "postmessage"] {
        b.authorize(&params(other))
            .await
            .assert_error_page("redirect_uri_mismatch");
    }
    let chooser = b
        .authorize(&params("https://app.example/oauth/callback"))
        .await;
    let consent = b.choose_email(&chooser, "two@example.com").await;
    let q = b.decide(&consent, &[], "allow").await.redirect_query();
    let (status, token) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("client_id", "web-2.apps.googleusercontent.com"),
                ("client_secret", "GOCSPX-two"),
                ("redirect_uri", "https://app.example/oauth/callback"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{token}");
    // The default client cannot redeem it.
    let (status, body) = ctx
        .exchange_at(&q["code"], "https://app.example/oauth/callback", &[])
        .await;
    assert_eq!(status, 400);
    assert!(matches!(
        s(&body["error"]),
        "unauthorized_client" | "invalid_grant"
    ));
}

#[tokio::test]
async fn bad_client_registrations_get_400_naming_the_problem() {
    let ctx = spawn().await;
    for (body, needle) in [
        (json!({"type": "desktop"}), "unknown variant"),
        (
            json!({"redirect_uris": "https://a.example"}),
            "invalid type",
        ),
        (json!({"redirect_uris": ["/relative"]}), "redirect_uris[0]"),
        (
            json!({"redirect_uris": ["https://a.example/cb#x"]}),
            "fragment",
        ),
        (
            json!({"type": "installed", "redirect_uris": ["postmessage"]}),
            "web clients only",
        ),
        (
            json!({"type": "android", "javascript_origins": ["https://a.example"]}),
            "web clients only",
        ),
        (
            json!({"javascript_origins": ["https://a.example/path"]}),
            "javascript_origins[0]",
        ),
        (json!({"client_id": ""}), "client_id"),
        (json!({"colour": "blue"}), "unknown field"),
    ] {
        let (status, resp) = register(&ctx, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert_eq!(resp["error"], "bad_request");
        assert!(s(&resp["message"]).contains(needle), "{body}: {resp}");
    }
    let (status, _) = register(&ctx, json!({"client_id": "dup"})).await;
    assert_eq!(status, 201);
    let (status, resp) = register(&ctx, json!({"client_id": "dup"})).await;
    assert_eq!(status, 400);
    assert!(s(&resp["message"]).contains("already registered"));
    // An empty body still registers another web client, as before.
    let (status, resp) = split(
        ctx.http
            .post(ctx.url("/_fake/clients"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    assert!(s(&resp["client_secret"]).starts_with("GOCSPX-"));
}

#[tokio::test]
async fn installed_clients_get_an_installed_secret_file_and_loopback_on_any_port() {
    let ctx = spawn().await;
    let client = ctx
        .fake
        .register_client(ClientSpec {
            client_type: ClientType::Installed,
            ..ClientSpec::default()
        })
        .await
        .unwrap();
    let (status, file) = control_get(
        &ctx,
        &format!("/_fake/client_secret.json?client_id={}", client.client_id),
    )
    .await;
    assert_eq!(status, 200);
    let installed = &file["installed"];
    assert_eq!(installed["client_id"], client.client_id.as_str());
    assert_eq!(installed["client_secret"], client.client_secret.as_str());
    assert_eq!(installed["redirect_uris"], json!(["http://localhost"]));
    assert_eq!(
        installed["auth_uri"],
        format!("{}/o/oauth2/auth", ctx.fake.base_url()).as_str()
    );
    let chooser = ctx
        .browser()
        .authorize(&[
            ("client_id", &client.client_id),
            ("redirect_uri", "http://localhost:53682/"),
            ("response_type", "code"),
            ("scope", "openid"),
        ])
        .await;
    assert_eq!(chooser.status, 200, "{chooser:?}");
    let (status, _) = control_get(&ctx, "/_fake/client_secret.json?client_id=nope").await;
    assert_eq!(status, 404);
    // The default file lists the loopback redirects, not postmessage.
    let (_, default) = control_get(&ctx, "/_fake/client_secret.json").await;
    let uris = default["web"]["redirect_uris"].as_array().unwrap();
    assert!(uris.contains(&json!("http://localhost")));
    assert!(!uris.contains(&json!("postmessage")));
}

#[tokio::test]
async fn android_clients_exchange_without_a_secret() {
    let ctx = spawn().await;
    let android = ctx
        .fake
        .register_client(ClientSpec {
            client_type: ClientType::Android,
            redirect_uris: Some(vec!["com.example.app:/oauth2redirect".into()]),
            ..ClientSpec::default()
        })
        .await
        .unwrap();
    let minted = ctx
        .fake
        .mint_code(fake_google::CodeRequest {
            client_id: Some(android.client_id.clone()),
            ..fake_google::CodeRequest::new("droid@example.com")
        })
        .await
        .unwrap();
    let (status, body) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &minted.code),
                ("client_id", &android.client_id),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A wrong secret is still wrong.
    let minted = ctx
        .fake
        .mint_code(fake_google::CodeRequest {
            client_id: Some(android.client_id.clone()),
            ..fake_google::CodeRequest::new("droid@example.com")
        })
        .await
        .unwrap();
    let (status, _) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &minted.code),
                ("client_id", &android.client_id),
                ("client_secret", "wrong"),
            ],
        )
        .await;
    assert_eq!(status, 401);
    // Its custom-scheme redirect gets a code (prompt=none: the only user already granted it).
    let page = ctx
        .browser()
        .authorize(&[
            ("client_id", &android.client_id),
            ("redirect_uri", "com.example.app:/oauth2redirect"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("prompt", "none"),
        ])
        .await;
    assert_eq!(page.status, 302);
    let location = page.location.unwrap();
    assert!(
        location.starts_with("com.example.app:/oauth2redirect?code=4%2F0"),
        "{location}"
    );
}
