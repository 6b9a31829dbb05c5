//! The HTML of the browser flow: the error page, the account chooser, the consent page and the
//! `postmessage` hand-off. Plain, accessible forms (the form contract is in `docs/fake-google.md`);
//! the only script is the hand-off's.

use std::fmt::Write as _;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::grants::{SCOPE_APPDATA, SCOPE_EMAIL, SCOPE_PROFILE};

/// Where the chooser posts.
pub(crate) const ACCOUNT_PATH: &str = "/o/oauth2/v2/auth/account";
/// Where the consent page lives and posts.
pub(crate) const CONSENT_PATH: &str = "/o/oauth2/v2/auth/consent";

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f1f3f4;color:#202124}\
main{max-width:28rem;margin:3rem auto;background:#fff;border:1px solid #dadce0;border-radius:8px;padding:2rem}\
.brand{color:#5f6368;margin:0 0 1rem}h1{font-size:1.5rem;font-weight:400;margin:0 0 1rem}\
ul{list-style:none;padding:0}li{margin:.5rem 0}button{font:inherit;padding:.5rem 1rem;cursor:pointer}\
.account{width:100%;text-align:left;background:#fff;border:1px solid #dadce0;border-radius:4px}\
.error{color:#d93025}code{font-size:.85em;color:#5f6368;overflow-wrap:anywhere}.actions{display:flex;gap:1rem;justify-content:flex-end}\
fieldset{border:0;padding:0;margin:0 0 1rem}label{display:block;margin:.5rem 0}";

/// Escapes text for HTML content and attribute values (`&`, `<`, `>`, `"`, `'`).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole document with the fake's headers: no caching, no framing, no scripts unless `nonce`.
fn document(status: StatusCode, title: &str, body: &str, script_nonce: Option<&str>) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} - fake Google</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <p class=\"brand\">fake-google</p>\n{body}</main>\n</body>\n</html>\n",
        esc(title)
    );
    let csp = match script_nonce {
        Some(n) => format!(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{n}'; frame-ancestors 'none'"
        ),
        None => "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'".to_owned(),
    };
    let mut r = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        html,
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// An error shown instead of redirecting (Google's "Access blocked: Authorization Error" page):
/// the error code is on the page, e.g. `Error 400: redirect_uri_mismatch`.
pub(crate) fn error_page(status: StatusCode, error: &str, description: &str) -> Response {
    let code = status.as_u16();
    let body = format!(
        "<h1>Access blocked: authorization error</h1>\n\
         <p class=\"error\" role=\"alert\">Error {code}: <strong id=\"error\">{}</strong></p>\n\
         <p id=\"error_description\">{}</p>\n",
        esc(error),
        esc(description)
    );
    document(status, &format!("Error {code}: {error}"), &body, None)
}

/// One account of the chooser.
pub(crate) struct AccountItem<'a> {
    pub(crate) sub: &'a str,
    pub(crate) email: &'a str,
    pub(crate) name: Option<&'a str>,
}

/// The account chooser: one button per known account (its text is the e-mail), then a form for
/// another e-mail.
pub(crate) fn chooser_page(
    status: StatusCode,
    auth: &str,
    client_id: &str,
    accounts: &[AccountItem<'_>],
    prefill: Option<&str>,
    message: Option<&str>,
) -> Response {
    let auth = esc(auth);
    let mut body = format!(
        "<h1>Choose an account</h1>\n<p>to continue to <code>{}</code></p>\n",
        esc(client_id)
    );
    if let Some(m) = message {
        let _ = writeln!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(m));
    }
    if !accounts.is_empty() {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{ACCOUNT_PATH}\">\n\
             <input type=\"hidden\" name=\"auth\" value=\"{auth}\">\n<ul aria-label=\"Accounts\">\n"
        );
        for a in accounts {
            let name = a
                .name
                .map(|n| format!(" <span>{}</span>", esc(n)))
                .unwrap_or_default();
            let _ = writeln!(
                body,
                "<li><button class=\"account\" name=\"account\" value=\"{}\">{}</button>{name}</li>",
                esc(a.sub),
                esc(a.email)
            );
        }
        body.push_str("</ul>\n</form>\n");
    }
    let value = prefill
        .map(|p| format!(" value=\"{}\"", esc(p)))
        .unwrap_or_default();
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{ACCOUNT_PATH}\">\n\
         <input type=\"hidden\" name=\"auth\" value=\"{auth}\">\n\
         <label>Use another account (e-mail) <input type=\"email\" name=\"email\"{value}></label>\n\
         <p class=\"actions\"><button>Next</button></p>\n</form>\n"
    );
    document(status, "Choose an account", &body, None)
}

/// What a scope lets the client do, in Google's consent-screen words.
fn describe(scope: &str) -> &str {
    match scope {
        "openid" => "Associate you with your personal info on Google",
        SCOPE_EMAIL => "See your primary Google Account email address",
        SCOPE_PROFILE => {
            "See your personal info, including any personal info you've made publicly available"
        }
        SCOPE_APPDATA => "See, create, and delete its own configuration data in your Google Drive",
        "https://www.googleapis.com/auth/drive.file" => {
            "See, edit, create, and delete only the specific Google Drive files you use with this app"
        }
        "https://www.googleapis.com/auth/drive" => {
            "See, edit, create, and delete all of your Google Drive files"
        }
        other => other,
    }
}

/// The consent page: sign-in scopes listed (always granted), one ticked checkbox per other
/// scope, and Allow / Cancel.
pub(crate) fn consent_page(
    auth: &str,
    client_id: &str,
    email: &str,
    sign_in: &[String],
    tickable: &[String],
    offline: bool,
) -> Response {
    let mut body = format!(
        "<h1><code>{}</code> wants access to your Google Account</h1>\n<p>{}</p>\n\
         <form method=\"post\" action=\"{CONSENT_PATH}\">\n\
         <input type=\"hidden\" name=\"auth\" value=\"{}\">\n",
        esc(client_id),
        esc(email),
        esc(auth)
    );
    if !sign_in.is_empty() {
        body.push_str(
            "<fieldset>\n<legend>Always shared when you sign in</legend>\n<ul id=\"sign-in-scopes\">\n",
        );
        for s in sign_in {
            let _ = writeln!(
                body,
                "<li>{} <code>{}</code></li>",
                esc(describe(s)),
                esc(s)
            );
        }
        body.push_str("</ul>\n</fieldset>\n");
    }
    if !tickable.is_empty() {
        body.push_str("<fieldset>\n<legend>Select what it can access</legend>\n");
        for s in tickable {
            let _ = writeln!(
                body,
                "<label><input type=\"checkbox\" name=\"scope\" value=\"{}\" checked> {} <code>{}</code></label>",
                esc(s),
                esc(describe(s)),
                esc(s)
            );
        }
        body.push_str("</fieldset>\n");
    }
    if offline {
        body.push_str("<p>It will keep access while you are not using it (offline access).</p>\n");
    }
    body.push_str(
        "<p class=\"actions\"><button name=\"decision\" value=\"deny\">Cancel</button> \
         <button name=\"decision\" value=\"allow\">Allow</button></p>\n</form>\n",
    );
    document(StatusCode::OK, "Sign in - Google Accounts", &body, None)
}

/// JSON safe inside a `<script>` element.
fn script_json(v: &serde_json::Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// The `postmessage` hand-off: posts `message` to `window.opener` at `target_origin` and closes.
pub(crate) fn postmessage_page(target_origin: &str, message: &serde_json::Value) -> Response {
    let nonce = crate::state::random_token(22);
    let body = format!(
        "<h1>Returning to the application</h1>\n\
         <p>You can close this window if it stays open.</p>\n\
         <script nonce=\"{nonce}\">\n\
         (function () {{\n\
         \x20 var message = {};\n\
         \x20 var targetOrigin = {};\n\
         \x20 if (window.opener) {{ window.opener.postMessage(message, targetOrigin); }}\n\
         \x20 window.close();\n\
         }})();\n\
         </script>\n",
        script_json(message),
        script_json(&serde_json::Value::String(target_origin.to_owned())),
    );
    document(StatusCode::OK, "Signing in", &body, Some(&nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn text(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[tokio::test]
    async fn the_consent_page_follows_the_form_contract() {
        let r = consent_page(
            "id1",
            "client",
            "a@example.com",
            &["openid".to_owned()],
            &[SCOPE_APPDATA.to_owned()],
            true,
        );
        assert_eq!(r.status(), 200);
        let html = text(r).await;
        assert!(html.contains(&format!(
            "<input type=\"checkbox\" name=\"scope\" value=\"{SCOPE_APPDATA}\" checked>"
        )));
        assert!(html.contains("<button name=\"decision\" value=\"allow\">"));
        assert!(html.contains("<button name=\"decision\" value=\"deny\">"));
        assert!(html.contains("<html lang=\"en\">"));
        assert!(!html.contains("<script"));
    }

    #[tokio::test]
    async fn the_postmessage_script_cannot_be_broken_out_of() {
        let r = postmessage_page(
            "http://localhost:1",
            &serde_json::json!({"state": "</script><script>alert(1)</script>"}),
        );
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        let html = text(r).await;
        assert_eq!(html.matches("</script>").count(), 1, "{html}");
        assert!(html.contains("\\u003c/script\\u003e"));
        assert!(csp.contains("script-src 'nonce-"), "{csp}");
    }

    #[tokio::test]
    async fn chooser_buttons_carry_the_email_as_text() {
        let r = chooser_page(
            StatusCode::OK,
            "id",
            "client",
            &[AccountItem {
                sub: "1",
                email: "a@example.com",
                name: Some("A <b>"),
            }],
            Some("new@example.com"),
            None,
        );
        let html = text(r).await;
        assert!(html.contains(">a@example.com</button>"));
        assert!(html.contains("A &lt;b&gt;"));
        assert!(html.contains("<input type=\"email\" name=\"email\" value=\"new@example.com\">"));
    }
}
