//! A minimal "browser" for the authorization endpoint: no automatic redirects, form posts, and
//! string checks of the pages' form contract.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::helpers::{Ctx, split};

pub(crate) const EMAIL: &str = "https://www.googleapis.com/auth/userinfo.email";
pub(crate) const PROFILE: &str = "https://www.googleapis.com/auth/userinfo.profile";
pub(crate) const APPDATA: &str = "https://www.googleapis.com/auth/drive.appdata";
pub(crate) const FILE: &str = "https://www.googleapis.com/auth/drive.file";
/// A loopback redirect URI the default client accepts (any port).
pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// One answer as a browser sees it.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

impl Page {
    /// The hidden `auth` field of a chooser or consent form.
    pub(crate) fn auth_id(&self) -> String {
        let marker = "name=\"auth\" value=\"";
        let start = self.body.find(marker).unwrap_or_else(|| {
            panic!(
                "no auth field in {} {}",
                self.status,
                &self.body[self.body.find("<main>").unwrap_or(0)..]
            )
        }) + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }

    /// The `value`s of the consent form's scope checkboxes (all must be ticked by default).
    pub(crate) fn checkboxes(&self) -> Vec<String> {
        let marker = "<input type=\"checkbox\" name=\"scope\" value=\"";
        self.body
            .match_indices(marker)
            .map(|(i, _)| {
                let rest = &self.body[i + marker.len()..];
                let end = rest.find('"').unwrap();
                assert!(rest[end..].starts_with("\" checked>"), "not ticked: {rest}");
                rest[..end].to_owned()
            })
            .collect()
    }

    /// The query of the redirect, decoded.
    pub(crate) fn redirect_query(&self) -> HashMap<String, String> {
        assert_eq!(self.status, 302, "{self:?}");
        let loc = self.location.as_deref().unwrap();
        let url = url::Url::parse(loc).unwrap();
        url.query_pairs().into_owned().collect()
    }

    /// An error page: status 400, no redirect, the error named on the page.
    pub(crate) fn assert_error_page(&self, error: &str) {
        assert_eq!(self.status, 400, "{self:?}");
        assert!(self.location.is_none(), "{self:?}");
        assert!(self.content_type.starts_with("text/html"), "{self:?}");
        assert!(
            self.body
                .contains(&format!("Error 400: <strong id=\"error\">{error}</strong>")),
            "{error} not on {}",
            self.body
        );
    }
}

pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Ctx {
    pub(crate) fn browser(&self) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: self.fake.base_url(),
        }
    }

    /// An authorization-code exchange with the redirect URI and extra fields (e.g. a verifier).
    pub(crate) async fn exchange_at(
        &self,
        code: &str,
        redirect_uri: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let id = self.fake.client_id();
        let secret = self.fake.client_secret();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("redirect_uri", redirect_uri),
        ];
        form.extend_from_slice(extra);
        self.post_form("/token", &form).await
    }

    /// Adds a user through the control API; returns the sub.
    pub(crate) async fn add_user(&self, email: &str) -> String {
        self.fake
            .add_user(fake_google::UserSpec::new(email))
            .await
            .unwrap()
    }
}

impl Browser {
    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let location = header("location");
        let content_type = header("content-type").unwrap_or_default();
        Page {
            status,
            location,
            content_type,
            body: resp.text().await.unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Page {
        Self::page(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// `GET /o/oauth2/v2/auth` with these parameters.
    pub(crate) async fn authorize(&self, params: &[(&str, &str)]) -> Page {
        let query = serde_urlencoded::to_string(params).unwrap();
        self.get(&format!("/o/oauth2/v2/auth?{query}")).await
    }

    /// The usual request of the default client: code, `REDIRECT`, `state=xyz`, plus `more`.
    pub(crate) async fn authorize_default(
        &self,
        client_id: &str,
        scope: &str,
        more: &[(&str, &str)],
    ) -> Page {
        let mut params = vec![
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "xyz"),
        ];
        params.extend_from_slice(more);
        self.authorize(&params).await
    }

    /// Posts a form; a 303 is followed (as a browser would), a 302 is not.
    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(form).unwrap();
        let resp = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let page = Self::page(resp).await;
        if page.status == 303 {
            let loc = page.location.unwrap();
            return self.get(&loc).await;
        }
        page
    }

    /// On the chooser: signs in with another e-mail.
    pub(crate) async fn choose_email(&self, chooser: &Page, email: &str) -> Page {
        assert!(
            chooser
                .body
                .contains("<input type=\"email\" name=\"email\""),
            "{}",
            chooser.body
        );
        let auth = chooser.auth_id();
        self.post(
            "/o/oauth2/v2/auth/account",
            &[("auth", auth.as_str()), ("email", email)],
        )
        .await
    }

    /// On the consent page: posts `decision` with these scopes ticked.
    pub(crate) async fn decide(&self, consent: &Page, ticked: &[&str], decision: &str) -> Page {
        assert_eq!(consent.status, 200, "{consent:?}");
        let auth = consent.auth_id();
        let mut form = vec![("auth", auth.as_str())];
        form.extend(ticked.iter().map(|s| ("scope", *s)));
        form.push(("decision", decision));
        self.post("/o/oauth2/v2/auth/consent", &form).await
    }
}

/// The claims of a JWT (unverified: the signature is tested elsewhere).
pub(crate) fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The space-separated scopes as a sorted list.
pub(crate) fn sorted(scope: &str) -> Vec<String> {
    let mut v: Vec<String> = scope.split(' ').map(str::to_owned).collect();
    v.sort();
    v
}

/// `list` sorted.
pub(crate) fn sorted_of(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// `GET /_fake/...` as JSON.
pub(crate) async fn control_get(ctx: &Ctx, path: &str) -> (u16, Value) {
    split(ctx.http.get(ctx.url(path)).send().await.unwrap()).await
}
