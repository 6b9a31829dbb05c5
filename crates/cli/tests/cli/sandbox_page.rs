//! The sign-in page of `serve --sandbox` over plain HTTP (the browser test in tests/browser drives it for real):
//! served only with `--sandbox`, with a strict CSP; the sandbox exchanges web (`postmessage`) codes; and
//! `POST /sandbox/id-token` mints ID tokens only for users who signed in.

use fake_google::FakeGoogle;
use offline_access_crypto::KeyRing;

use crate::support::{Cli, Server, http};

/// The page's exact policy: its own script, style and API, nothing inline, never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn sandbox(cli: &mut Cli) -> Server {
    cli.env("LISTEN", "127.0.0.1:0");
    cli.spawn_server(&["serve", "--sandbox"], "sandbox.log")
        .await
}

/// The fake Google's base URL, as the page names it (`data-google`).
async fn fake_url_of(server: &Server) -> String {
    let page = http()
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = page.find("data-google=\"").unwrap() + "data-google=\"".len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_owned()
}

#[tokio::test]
async fn serve_without_sandbox_has_no_page_at_the_root() {
    let fake = FakeGoogle::start().await.unwrap();
    let mut cli = Cli::new();
    cli.write("client_secret.json", &fake.client_secret_json().to_string());
    cli.env("GOOGLE__CLIENT_SECRET_FILE", "client_secret.json")
        .env("GOOGLE__BASE_URL", &fake.base_url())
        .env(
            "SECURITY__ENCRYPTION_KEYS",
            &KeyRing::generate_entry("k1").unwrap(),
        )
        .env("LISTEN", "127.0.0.1:0");
    let server = cli.spawn_server(&["serve"], "serve.log").await;

    for path in ["/", "/sandbox/sandbox.js", "/sandbox/sandbox.css"] {
        let answer = http()
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{path}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path}");
    }
    let answer = http()
        .post(format!("{}/sandbox/id-token", server.base))
        .header("X-Requested-With", "test")
        .form(&[("sub", "123456789012345678901")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    assert!(!server.log().contains("open http"), "no page is announced");
    assert_eq!(server.terminate().await, 0);
}

#[tokio::test]
async fn serve_sandbox_serves_the_sign_in_page_its_script_and_style_with_a_strict_csp() {
    let mut cli = Cli::new();
    let server = sandbox(&mut cli).await;

    let page = http()
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(
        headers["cross-origin-opener-policy"],
        "same-origin-allow-popups"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in with Google"), "{html}");
    assert!(
        html.contains(r#"<script src="/sandbox/sandbox.js" defer></script>"#),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "data-client-id=\"{}\"",
            fake_google::DEFAULT_CLIENT_ID
        )),
        "{html}"
    );
    let fake = fake_url_of(&server).await;
    assert!(fake.starts_with("http://127.0.0.1:"), "{fake}");

    for (path, content_type, needle) in [
        (
            "/sandbox/sandbox.js",
            "text/javascript; charset=utf-8",
            "redirect_uri: 'postmessage'",
        ),
        (
            "/sandbox/sandbox.css",
            "text/css; charset=utf-8",
            "[hidden]",
        ),
    ] {
        let answer = http()
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        assert_eq!(answer.headers()["content-type"], content_type, "{path}");
        assert_eq!(answer.headers()["content-security-policy"], CSP, "{path}");
        assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
        assert!(answer.text().await.unwrap().contains(needle), "{path}");
    }
    let log = server.log();
    assert!(
        log.contains(&format!("open {}/ in a browser", server.base)),
        "{log}"
    );
    assert_eq!(server.terminate().await, 0);
}

#[tokio::test]
async fn the_sandbox_exchanges_web_codes_and_mints_id_tokens_only_for_users_who_signed_in() {
    let mut cli = Cli::new();
    let server = sandbox(&mut cli).await;
    let fake = fake_url_of(&server).await;
    let mint = |body: serde_json::Value| {
        let fake = fake.clone();
        async move {
            let minted: serde_json::Value = http()
                .post(format!("{fake}/_fake/codes"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                minted["code"].as_str().unwrap().to_owned(),
                minted["sub"].as_str().unwrap().to_owned(),
            )
        }
    };
    let sign_in = |code: String| {
        let base = server.base.clone();
        async move {
            http()
                .post(format!("{base}/authcode"))
                .header("X-Requested-With", "test")
                .form(&[("authCode", code)])
                .send()
                .await
                .unwrap()
        }
    };
    let id_token = |sub: &str, csrf: bool| {
        let mut request = http()
            .post(format!("{}/sandbox/id-token", server.base))
            .form(&[("sub", sub)]);
        if csrf {
            request = request.header("X-Requested-With", "test");
        }
        request.send()
    };

    // A web code (what the page's popup gets) is exchanged with redirect_uri=postmessage...
    let (code, ada) =
        mint(serde_json::json!({"email": "ada@example.com", "redirect_uri": "postmessage"})).await;
    let answer = sign_in(code).await;
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["missing_scopes"], serde_json::json!([]));
    // ...and an Android code (redirect_uri "", the curl instructions) still is.
    let (code, _) = mint(serde_json::json!({"email": "bob@example.com"})).await;
    assert_eq!(sign_in(code).await.status(), 200);

    // The ID token stand-in: CSRF header, a well-formed sub, a user who signed in here.
    let answer = id_token(&ada, false).await.unwrap();
    assert_eq!(answer.status(), 403);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "missing_csrf_header");
    let answer = id_token("not a sub", true).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    let answer = id_token("123456789012345678901", true).await.unwrap();
    assert_eq!(answer.status(), 404);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "not_found");

    let answer = id_token(&ada, true).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let body: serde_json::Value = answer.json().await.unwrap();
    let token = body["id_token"].as_str().unwrap();

    // It is a real ID token for Ada: the API accepts it and reads her appDataFolder.
    let me: serde_json::Value = http()
        .get(format!("{}/v1/me", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["sub"].as_str(), Some(ada.as_str()), "{me}");
    let folder = http()
        .get(format!("{}/v1/me/drive/appfolder", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(folder.status(), 200);
    let folder: serde_json::Value = folder.json().await.unwrap();
    assert_eq!(folder["name"], "Application Data");
    assert_eq!(server.terminate().await, 0);
}
