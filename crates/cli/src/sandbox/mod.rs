//! The sign-in page of `serve --sandbox` (never mounted otherwise): `GET /` runs the web sign-in of Google Identity
//! Services' popup code model against the sandbox's in-process fake Google, hands the code to `POST /authcode` and
//! shows the user, their scopes and their Drive `appDataFolder`.
//!
//! The page is plain HTML, CSS and a script, each a same-origin file compiled into the binary, served with a strict
//! CSP (no inline script or style). To call `GET /v1/me/drive/appfolder` as an app would, the page needs the user's
//! ID token, which the popup code model does not give a browser; `POST /sandbox/id-token` stands in for the app's
//! own sign-in and has the fake mint one for a user who signed in to this server. That is an impersonation endpoint,
//! harmless only because the sandbox's Google is a fake that mints anything for anyone already
//! (`POST /_fake/id_tokens`), which is why it exists in the sandbox alone.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fake_google::{Control, IdTokenRequest};
use offline_access_domain::{AccessError, OfflineAccess, Subject};

/// The page, with `{{GOOGLE}}` and `{{CLIENT_ID}}` filled in when the router is built.
const INDEX_HTML: &str = include_str!("index.html");
/// The page's script.
const SANDBOX_JS: &str = include_str!("sandbox.js");
/// The page's style sheet.
const SANDBOX_CSS: &str = include_str!("sandbox.css");

/// The page's Content-Security-Policy: its own script, style and API only. The popup needs nothing here: opening a
/// window is not restricted by CSP, and the fake's answer arrives as a `message` event.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the sandbox's routes need.
struct SandboxState {
    /// The use cases (to find the signed-in user's profile).
    service: Arc<OfflineAccess>,
    /// The sandbox's fake Google (to mint the user's ID token).
    fake: Control,
    /// The `azp` of minted ID tokens: the first of `google.allowed_azp`, so the server accepts them.
    azp: Option<String>,
    /// The rendered page.
    index: String,
}

/// The sandbox's routes, to merge into the public router: `GET /`, its script and style sheet, and
/// `POST /sandbox/id-token`. `google` is the fake's base URL, `client_id` the server's (web) client ID, which is
/// the fake's default client: it accepts `postmessage` and any loopback origin as a JavaScript origin.
pub(crate) fn router(
    service: Arc<OfflineAccess>,
    fake: Control,
    google: &str,
    client_id: &str,
    allowed_azp: &[String],
) -> Router {
    let index = INDEX_HTML
        .replace("{{GOOGLE}}", &fake_google::html_escape(google))
        .replace("{{CLIENT_ID}}", &fake_google::html_escape(client_id));
    let state = Arc::new(SandboxState {
        service,
        fake,
        azp: allowed_azp.first().cloned(),
        index,
    });
    Router::new()
        .route("/", get(index_page))
        .route("/sandbox/sandbox.js", get(script))
        .route("/sandbox/sandbox.css", get(style))
        .route("/sandbox/id-token", post(id_token))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// `GET /`.
async fn index_page(State(state): State<Arc<SandboxState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        state.index.clone(),
    )
        .into_response()
}

/// `GET /sandbox/sandbox.js`.
async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SANDBOX_JS,
    )
        .into_response()
}

/// `GET /sandbox/sandbox.css`.
async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        SANDBOX_CSS,
    )
        .into_response()
}

/// `POST /sandbox/id-token` with the form `sub=SUB` and `X-Requested-With`: `{"id_token"}`, an ID token minted by
/// the fake for a user stored by this server (with the profile stored at sign-in). 403 `missing_csrf_header`,
/// 400 `invalid_request` for a missing or malformed `sub`, 404 `not_found` for a user who never signed in here.
async fn id_token(
    State(state): State<Arc<SandboxState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let csrf = headers
        .get_all("x-requested-with")
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().is_empty());
    if !csrf {
        return error(
            StatusCode::FORBIDDEN,
            "missing_csrf_header",
            "The X-Requested-With header is required on this request.",
        );
    }
    let sub = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "sub")
        .map(|(_, value)| value.into_owned());
    let Some(subject) = sub.as_deref().and_then(|s| Subject::parse(s).ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The form field sub must be a Google account ID.",
        );
    };
    let credential = match state.service.credential(&subject).await {
        Ok(credential) => credential,
        Err(AccessError::NotFound) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "No user with this account ID signed in to this server.",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "sandbox: cannot read the user's credential");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "The credential store cannot be read.",
            );
        }
    };
    let profile = credential.profile;
    let Some(email) = profile.email else {
        return error(
            StatusCode::FORBIDDEN,
            "scope_missing",
            "The user granted no e-mail address (the email scope), which the fake needs to mint an ID token.",
        );
    };
    let request = IdTokenRequest {
        email: email.as_str().to_owned(),
        sub: Some(subject.as_str().to_owned()),
        name: profile.name,
        given_name: profile.given_name,
        family_name: profile.family_name,
        picture: profile.picture,
        locale: profile.locale,
        email_verified: Some(profile.email_verified),
        hd: profile.hd,
        azp: state.azp.clone(),
        ..IdTokenRequest::default()
    };
    match state.fake.mint_id_token(request).await {
        Ok(token) => axum::Json(serde_json::json!({ "id_token": token })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "sandbox: the fake Google did not mint an ID token");
            error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "The fake Google did not mint an ID token.",
            )
        }
    }
}

/// An error in the API's envelope.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// The headers of every sandbox answer. `Cross-Origin-Opener-Policy: same-origin-allow-popups` is what Google
/// Identity Services asks of a page that opens its popup: the popup keeps `window.opener` to post the code back.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin-allow-popups"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            fake_google::html_escape(r#"http://a/?x="<b>"&y='1'"#),
            "http://a/?x=&quot;&lt;b&gt;&quot;&amp;y=&#39;1&#39;"
        );
    }

    #[test]
    fn the_page_loads_its_script_and_style_from_files_and_has_no_inline_script_or_style() {
        assert!(INDEX_HTML.contains(r#"<script src="/sandbox/sandbox.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="/sandbox/sandbox.css">"#));
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(!INDEX_HTML.contains("<style"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(
            !INDEX_HTML
                .split_whitespace()
                .any(|word| word.starts_with("on") && word.contains('=')),
            "no inline event handlers"
        );
    }
}
