//! A started fake plus request helpers.

use fake_google::{CodeRequest, FakeGoogle, MintedCode};
use serde_json::Value;

pub(crate) struct Ctx {
    pub(crate) fake: FakeGoogle,
    pub(crate) http: reqwest::Client,
}

pub(crate) async fn spawn() -> Ctx {
    let fake = FakeGoogle::start().await.expect("fake starts");
    Ctx {
        fake,
        http: reqwest::Client::new(),
    }
}

/// A status and a JSON body (`Null` when the body is empty or not JSON).
pub(crate) async fn split(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Ctx {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.fake.base_url())
    }

    pub(crate) async fn mint(&self, email: &str) -> MintedCode {
        self.fake.mint_code(CodeRequest::new(email)).await.unwrap()
    }

    pub(crate) async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        split(
            self.http
                .post(self.url(path))
                .form(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// An authorization-code exchange with client_secret_post.
    pub(crate) async fn exchange(&self, code: &str) -> (u16, Value) {
        let id = self.fake.client_id();
        let secret = self.fake.client_secret();
        self.post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("client_id", &id),
                ("client_secret", &secret),
                ("redirect_uri", ""),
            ],
        )
        .await
    }

    /// Exchange that must succeed.
    pub(crate) async fn exchange_ok(&self, code: &str) -> Value {
        let (status, body) = self.exchange(code).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub(crate) async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        let id = self.fake.client_id();
        let secret = self.fake.client_secret();
        self.post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await
    }

    /// A JSON POST, with a Bearer when given.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        split(req.send().await.unwrap()).await
    }

    /// A GET's status and JSON body.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        split(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// A GET that must answer JSON of type `T`.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    pub(crate) async fn get_bearer(&self, path: &str, token: &str) -> (u16, Value) {
        split(
            self.http
                .get(self.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}
