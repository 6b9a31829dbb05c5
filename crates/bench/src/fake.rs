//! Calls to the fake Google's control API (`/_fake/...`) and to its public endpoints directly.

use serde_json::{Value, json};

use crate::Res;

/// The fields the server asks Drive for on `files.get` (the Google adapter's `FILE_FIELDS`).
pub(crate) const FILE_FIELDS: &str = "id,name,mimeType,size,modifiedTime";

/// A fake Google reached over loopback HTTP.
#[derive(Debug, Clone)]
pub(crate) struct Fake {
    /// Its base URL.
    pub(crate) url: String,
    /// The HTTP client.
    pub(crate) http: reqwest::Client,
    /// The web client's ID.
    pub(crate) client_id: String,
    /// The web client's secret.
    pub(crate) client_secret: String,
    /// The `client_secret.json` body.
    pub(crate) client_secret_json: String,
}

impl Fake {
    /// Reads the fake's web client from `/_fake/client_secret.json`.
    pub(crate) async fn connect(url: &str, http: reqwest::Client) -> Res<Fake> {
        let text = http
            .get(format!("{url}/_fake/client_secret.json"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let value: Value = serde_json::from_str(&text)?;
        let web = value.get("web").ok_or("client_secret.json has no `web`")?;
        let field = |name: &str| -> Res<String> {
            Ok(web
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("client_secret.json has no web.{name}"))?
                .to_owned())
        };
        Ok(Fake {
            url: url.to_owned(),
            client_id: field("client_id")?,
            client_secret: field("client_secret")?,
            client_secret_json: text,
            http,
        })
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("POST {path}: {status} {text}"));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("POST {path}: {e}"))
    }

    /// Mints a server auth code for `email`; returns the code and the user's `sub`.
    pub(crate) async fn mint_code(&self, email: &str) -> Result<(String, String), String> {
        let v = self
            .post_json("/_fake/codes", &json!({ "email": email }))
            .await?;
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("no {k} in the minted code"))
        };
        Ok((s("code")?, s("sub")?))
    }

    /// The ID token the app of `email` would hold.
    pub(crate) async fn id_token(&self, email: &str) -> Result<String, String> {
        let v = self
            .post_json("/_fake/id_tokens", &json!({ "email": email }))
            .await?;
        v.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "no id_token".to_owned())
    }

    /// Exchanges a code at `/token` directly; returns the access token.
    pub(crate) async fn exchange(&self, code: &str) -> Result<String, String> {
        let response = self
            .exchange_request(code)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("/token answered {status}: {text}"));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        v.get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "no access_token".to_owned())
    }

    /// The code-exchange request the server's Google adapter sends.
    pub(crate) fn exchange_request(&self, code: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}/token", self.url)).form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("redirect_uri", ""),
        ])
    }

    /// Drive `files.get` of the application data folder, as the server's adapter asks for it.
    pub(crate) fn files_get_request(&self, access_token: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/drive/v3/files/appDataFolder", self.url))
            .query(&[("fields", FILE_FIELDS)])
            .bearer_auth(access_token)
    }

    /// Drive `files.get(id, alt=media)`: the file's content, as the server's adapter asks for it.
    pub(crate) fn download_request(&self, access_token: &str, id: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/drive/v3/files/{id}", self.url))
            .query(&[("alt", "media")])
            .bearer_auth(access_token)
    }

    /// Makes the user's access tokens invalid at once.
    pub(crate) async fn expire(&self, sub: &str) -> Result<(), String> {
        self.post_json(&format!("/_fake/users/{sub}/expire"), &json!({}))
            .await
            .map(drop)
    }

    /// The lifetime of the access tokens the fake issues from now on, in seconds (`/_fake/settings`); returns
    /// the one set before.
    pub(crate) async fn set_access_token_ttl(&self, secs: u64) -> Result<u64, String> {
        let before: Value = self
            .http
            .get(format!("{}/_fake/settings", self.url))
            .send()
            .await
            .map_err(|e| format!("GET /_fake/settings: {e}"))?
            .json()
            .await
            .map_err(|e| format!("GET /_fake/settings: {e}"))?;
        let before = before
            .get("access_token_ttl_secs")
            .and_then(Value::as_u64)
            .ok_or("no access_token_ttl_secs in /_fake/settings")?;
        self.post_json("/_fake/settings", &json!({ "access_token_ttl_secs": secs }))
            .await?;
        Ok(before)
    }

    /// Empties the request journal.
    pub(crate) async fn clear_requests(&self) -> Res<()> {
        self.http
            .delete(format!("{}/_fake/requests", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// How many `refresh_token` grants reached `/token` (from the journal).
    pub(crate) async fn refresh_calls(&self) -> Res<usize> {
        let journal: Value = self
            .http
            .get(format!("{}/_fake/requests", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let entries = journal
            .as_array()
            .or_else(|| journal.get("requests").and_then(Value::as_array))
            .ok_or("the journal is not a list")?;
        Ok(entries
            .iter()
            .filter(|e| {
                e.get("endpoint").and_then(Value::as_str) == Some("token")
                    && e.get("grant_type").and_then(Value::as_str) == Some("refresh_token")
            })
            .count())
    }
}
