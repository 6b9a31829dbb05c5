//! The OAuth clients the fake knows: their secrets, types, redirect URIs and JavaScript origins,
//! and the redirect-URI and origin matching of the authorization endpoint.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::model::{ControlError, OAuthClient};

/// The kind of OAuth client, as in the Google API Console.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    /// A Web application (a confidential client; the only kind that may use `postmessage`).
    #[default]
    Web,
    /// An Android app: needs no secret at `POST /token`.
    Android,
    /// A desktop ("installed") app: loopback redirects on any port.
    Installed,
}

impl ClientType {
    /// The key of its client secret file (`web` or `installed`).
    pub(crate) fn file_key(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Android | Self::Installed => "installed",
        }
    }
}

/// A client to register: `POST /_fake/clients`, [`crate::Control::register_client`] and the
/// `clients` of a `--config` file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// The client ID; default a fresh Google-shaped one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The secret; default a fresh `GOCSPX-...` one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The kind of client (default web).
    #[serde(default, rename = "type")]
    pub client_type: ClientType,
    /// Registered redirect URIs; default none for web and Android clients, `http://localhost`
    /// for installed ones. `postmessage` lets a web client use the popup code model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
    /// Authorized JavaScript origins (web clients only), the targets `postmessage` may answer;
    /// default the loopback origins `http://localhost`, `http://127.0.0.1`, `http://[::1]`
    /// (any port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub javascript_origins: Option<Vec<String>>,
}

impl ClientSpec {
    /// A web client with these redirect URIs and fresh credentials.
    pub fn web<I, S>(redirect_uris: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            redirect_uris: Some(redirect_uris.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }
}

/// The loopback hosts that match any port.
const LOOPBACK: [&str; 3] = ["http://localhost", "http://127.0.0.1", "http://[::1]"];

/// A registered client.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    pub(crate) secret: String,
    pub(crate) client_type: ClientType,
    redirect_uris: Vec<String>,
    origins: Vec<String>,
    /// The default client also accepts `{base}/oauth2callback` and the origin `{base}`.
    is_default: bool,
}

impl Client {
    /// The registered redirect URIs (`base`: the fake's base URL).
    pub(crate) fn redirect_uris(&self, base: &str) -> Vec<String> {
        let mut out = Vec::with_capacity(self.redirect_uris.len() + 1);
        if self.is_default {
            out.push(format!("{base}/oauth2callback"));
        }
        out.extend(self.redirect_uris.iter().cloned());
        out
    }

    /// The authorized JavaScript origins.
    pub(crate) fn origins(&self, base: &str) -> Vec<String> {
        let mut out = Vec::with_capacity(self.origins.len() + 1);
        if self.is_default {
            out.push(base.to_owned());
        }
        out.extend(self.origins.iter().cloned());
        out
    }

    /// Whether `uri` is one of the registered redirect URIs: exactly, or for a registered
    /// loopback URI without a port (`http://localhost`, `http://127.0.0.1`, `http://[::1]`, with
    /// or without a path) the same host on any port, with any path when none was registered.
    pub(crate) fn redirect_allowed(&self, uri: &str, base: &str) -> bool {
        self.redirect_uris(base)
            .iter()
            .any(|r| r == uri || loopback_match(r, uri))
    }

    /// Whether `redirect_uri=postmessage` is registered.
    pub(crate) fn postmessage_allowed(&self) -> bool {
        self.redirect_uris.iter().any(|r| r == "postmessage")
    }

    /// Whether `origin` is an authorized JavaScript origin (loopback ones on any port).
    pub(crate) fn origin_allowed(&self, origin: &str, base: &str) -> bool {
        self.origins(base)
            .iter()
            .any(|o| o == origin || loopback_match(o, origin))
    }
}

/// `registered` is a loopback URI without a port and `uri` is the same scheme and host on some
/// port, with the registered path (any path when the registered one is empty or `/`) and query.
fn loopback_match(registered: &str, uri: &str) -> bool {
    let (Ok(r), Ok(u)) = (url::Url::parse(registered), url::Url::parse(uri)) else {
        return false;
    };
    let r_origin = format!("{}://{}", r.scheme(), r.host_str().unwrap_or(""));
    // The registered string itself has no port (`Url` hides a default `:80`).
    let authority = registered
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', '?']).next())
        .unwrap_or("");
    let explicit_port = authority
        .rsplit_once(']')
        .map_or(authority, |(_, p)| p)
        .contains(':');
    if !LOOPBACK.contains(&r_origin.as_str()) || explicit_port {
        return false;
    }
    let any_path = r.path() == "/" && r.query().is_none();
    u.scheme() == r.scheme()
        && u.host_str() == r.host_str()
        && u.fragment().is_none()
        && u.username().is_empty()
        && u.password().is_none()
        && (any_path || (u.path() == r.path() && u.query() == r.query()))
}

/// Every client by ID.
pub(crate) struct Clients {
    default_client: OAuthClient,
    map: RwLock<HashMap<String, Client>>,
}

impl Clients {
    /// Only the default web client: loopback redirects on any port, `postmessage`, and
    /// `{base}/oauth2callback`.
    pub(crate) fn new(default_client: OAuthClient) -> Self {
        let clients = Self {
            default_client,
            map: RwLock::new(HashMap::new()),
        };
        clients.reset();
        clients
    }

    /// The default web client.
    pub(crate) fn default_client(&self) -> &OAuthClient {
        &self.default_client
    }

    /// Back to the default client only.
    pub(crate) fn reset(&self) {
        let mut redirect_uris: Vec<String> = LOOPBACK.iter().map(|s| (*s).to_owned()).collect();
        redirect_uris.push("postmessage".to_owned());
        let default = Client {
            secret: self.default_client.client_secret.clone(),
            client_type: ClientType::Web,
            redirect_uris,
            origins: LOOPBACK.iter().map(|s| (*s).to_owned()).collect(),
            is_default: true,
        };
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.clear();
        map.insert(self.default_client.client_id.clone(), default);
    }

    /// The client registered as `client_id`.
    pub(crate) fn get(&self, client_id: &str) -> Option<Client> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(client_id)
            .cloned()
    }

    /// Whether `client_id` is registered.
    pub(crate) fn known(&self, client_id: &str) -> bool {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(client_id)
    }

    /// Validates and registers a client.
    pub(crate) fn register(&self, spec: &ClientSpec) -> Result<OAuthClient, ControlError> {
        let client_id = match &spec.client_id {
            Some(id) => {
                check_token("client_id", id)?;
                id.clone()
            }
            None => fresh_client_id(),
        };
        let secret = match &spec.client_secret {
            Some(s) => {
                check_token("client_secret", s)?;
                s.clone()
            }
            None => format!("GOCSPX-{}", crate::state::random_token(21)),
        };
        let kind = spec.client_type;
        let redirect_uris = match (&spec.redirect_uris, kind) {
            (Some(list), _) => list.clone(),
            (None, ClientType::Installed) => vec!["http://localhost".to_owned()],
            (None, _) => Vec::new(),
        };
        if redirect_uris.len() > 100 {
            return Err(ControlError(
                "redirect_uris may hold at most 100 URIs".to_owned(),
            ));
        }
        for (i, uri) in redirect_uris.iter().enumerate() {
            check_redirect(kind, uri)
                .map_err(|e| ControlError(format!("redirect_uris[{i}]: {e}")))?;
        }
        let origins = match (&spec.javascript_origins, kind) {
            (Some(list), ClientType::Web) => list.clone(),
            (Some(list), _) if !list.is_empty() => {
                return Err(ControlError(
                    "javascript_origins are for web clients only".to_owned(),
                ));
            }
            (None, ClientType::Web) => LOOPBACK.iter().map(|s| (*s).to_owned()).collect(),
            _ => Vec::new(),
        };
        if origins.len() > 100 {
            return Err(ControlError(
                "javascript_origins may hold at most 100 origins".to_owned(),
            ));
        }
        for (i, o) in origins.iter().enumerate() {
            check_origin(o).map_err(|e| ControlError(format!("javascript_origins[{i}]: {e}")))?;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(&client_id) {
            return Err(ControlError(format!(
                "client_id {client_id:?} is already registered"
            )));
        }
        map.insert(
            client_id.clone(),
            Client {
                secret: secret.clone(),
                client_type: kind,
                redirect_uris,
                origins,
                is_default: false,
            },
        );
        Ok(OAuthClient {
            client_id,
            client_secret: secret,
        })
    }
}

/// A Google-shaped client ID: `NNNNNNNNNNNN-<32 lowercase>.apps.googleusercontent.com`.
fn fresh_client_id() -> String {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    let digits = u64::from_be_bytes(b) % 1_000_000_000_000;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    let tail: String = bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{digits:012}-{tail}.apps.googleusercontent.com")
}

fn check_token(name: &str, v: &str) -> Result<(), ControlError> {
    if v.is_empty() || v.len() > 255 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ControlError(format!(
            "{name} must be 1 to 255 printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// Google's rules for a redirect URI, relaxed for tests: web clients need `http(s)` (plain
/// `http` is allowed on any host, not only localhost) or `postmessage`; Android and installed
/// clients may also use a custom scheme. Never a fragment, a wildcard or user info.
fn check_redirect(kind: ClientType, uri: &str) -> Result<(), String> {
    if uri == "postmessage" {
        return match kind {
            ClientType::Web => Ok(()),
            _ => Err("postmessage is for web clients only".to_owned()),
        };
    }
    if uri.len() > 2048 {
        return Err("a redirect URI has at most 2048 characters".to_owned());
    }
    let parsed =
        url::Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI: {e}"))?;
    if uri.contains('*') {
        return Err(format!("{uri:?}: wildcards are not allowed"));
    }
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(format!("{uri:?}: a redirect URI cannot contain a fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{uri:?}: a redirect URI cannot contain user info"));
    }
    let web_scheme = matches!(parsed.scheme(), "http" | "https");
    if kind == ClientType::Web && !web_scheme {
        return Err(format!(
            "{uri:?}: a web client's redirect URI must use http or https"
        ));
    }
    if web_scheme && parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{uri:?}: a redirect URI needs a host"));
    }
    Ok(())
}

/// An origin: `http(s)://host[:port]`, no path, query or trailing slash.
fn check_origin(origin: &str) -> Result<(), String> {
    let parsed =
        url::Url::parse(origin).map_err(|e| format!("{origin:?} is not an origin: {e}"))?;
    let ok = matches!(parsed.scheme(), "http" | "https")
        && parsed.host_str().is_some_and(|h| !h.is_empty())
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.origin().ascii_serialization() == origin;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{origin:?} is not an origin (scheme://host[:port], no path or trailing slash)"
        ))
    }
}

/// The Google-format client secret file of a client (`{"web": {...}}` or `{"installed": {...}}`),
/// its URLs pointing at the fake at `base`.
pub(crate) fn secret_file(client_id: &str, client: &Client, base: &str) -> serde_json::Value {
    let redirect_uris: Vec<String> = client
        .redirect_uris(base)
        .into_iter()
        .filter(|r| r != "postmessage")
        .collect();
    let mut fields = serde_json::json!({
        "client_id": client_id,
        "project_id": "fake-google",
        "auth_uri": format!("{base}/o/oauth2/auth"),
        "token_uri": format!("{base}/token"),
        "revoke_uri": format!("{base}/revoke"),
        "auth_provider_x509_cert_url": format!("{base}/oauth2/v1/certs"),
        "client_secret": client.secret,
        "redirect_uris": redirect_uris,
    });
    if client.client_type == ClientType::Web {
        fields["javascript_origins"] = serde_json::json!(client.origins(base));
    }
    let mut file = serde_json::Map::new();
    file.insert(client.client_type.file_key().to_owned(), fields);
    serde_json::Value::Object(file)
}

/// The origin of a URL (`scheme://host[:port]`), e.g. of a `Referer`.
pub(crate) fn origin_of(uri: &str) -> Option<String> {
    let parsed = url::Url::parse(uri).ok()?;
    let o = parsed.origin();
    o.is_tuple().then(|| o.ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients() -> Clients {
        Clients::new(OAuthClient {
            client_id: "default".into(),
            client_secret: "s".into(),
        })
    }

    #[test]
    fn the_default_client_takes_loopback_on_any_port_postmessage_and_the_base_callback() {
        let c = clients().get("default").unwrap();
        let base = "http://127.0.0.1:4000";
        for ok in [
            "http://localhost",
            "http://localhost:8080/",
            "http://127.0.0.1:9/cb?x=1",
            "http://[::1]:5000/oauth2callback",
            "http://127.0.0.1:4000/oauth2callback",
        ] {
            assert!(c.redirect_allowed(ok, base), "{ok}");
        }
        for bad in [
            "https://localhost:8080/",
            "http://localhost.evil.example/",
            "http://evil.example/",
            "http://127.0.0.1:8080/#frag",
            "http://user@127.0.0.1:8080/",
            "http://127.0.0.2:4000/oauth2callback",
        ] {
            assert!(!c.redirect_allowed(bad, base), "{bad}");
        }
        assert!(c.postmessage_allowed());
        assert!(c.origin_allowed("http://localhost:3000", base));
        assert!(c.origin_allowed(base, base));
        assert!(!c.origin_allowed("http://evil.example", base));
    }

    #[test]
    fn a_loopback_uri_with_a_path_keeps_the_path_on_any_port() {
        assert!(loopback_match(
            "http://localhost/cb",
            "http://localhost:1234/cb"
        ));
        assert!(!loopback_match(
            "http://localhost/cb",
            "http://localhost:1234/other"
        ));
        assert!(!loopback_match(
            "http://localhost:80/cb",
            "http://localhost:1234/cb"
        ));
        assert!(!loopback_match(
            "https://example.com",
            "https://example.com:1/"
        ));
    }

    #[test]
    fn registration_validates_and_defaults_by_type() {
        let c = clients();
        let web = c
            .register(&ClientSpec::web(["https://app.example/cb"]))
            .unwrap();
        assert!(web.client_id.ends_with(".apps.googleusercontent.com"));
        assert!(web.client_secret.starts_with("GOCSPX-"));
        let rec = c.get(&web.client_id).unwrap();
        assert!(rec.redirect_allowed("https://app.example/cb", "b"));
        assert!(!rec.redirect_allowed("https://app.example/cb2", "b"));
        assert!(!rec.postmessage_allowed());
        let installed = c
            .register(&ClientSpec {
                client_type: ClientType::Installed,
                ..ClientSpec::default()
            })
            .unwrap();
        assert!(
            c.get(&installed.client_id)
                .unwrap()
                .redirect_allowed("http://localhost:5555/", "b")
        );
        let android = c
            .register(&ClientSpec {
                client_id: Some("android-1".into()),
                client_type: ClientType::Android,
                redirect_uris: Some(vec!["com.example.app:/oauth2redirect".into()]),
                ..ClientSpec::default()
            })
            .unwrap();
        assert_eq!(android.client_id, "android-1");
        for (spec, needle) in [
            (ClientSpec::web(["not a uri"]), "redirect_uris[0]"),
            (ClientSpec::web(["https://a.example/#x"]), "fragment"),
            (ClientSpec::web(["https://*.example/"]), "wildcard"),
            (ClientSpec::web(["com.example:/cb"]), "http or https"),
            (
                ClientSpec {
                    client_type: ClientType::Android,
                    redirect_uris: Some(vec!["postmessage".into()]),
                    ..ClientSpec::default()
                },
                "web clients only",
            ),
            (
                ClientSpec {
                    javascript_origins: Some(vec!["https://a.example/".into()]),
                    ..ClientSpec::default()
                },
                "javascript_origins[0]",
            ),
            (
                ClientSpec {
                    client_id: Some("android-1".into()),
                    ..ClientSpec::default()
                },
                "already registered",
            ),
            (
                ClientSpec {
                    client_secret: Some("has space".into()),
                    ..ClientSpec::default()
                },
                "client_secret",
            ),
        ] {
            let e = c.register(&spec).unwrap_err();
            assert!(e.0.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn origins_of_urls() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080/page?x").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin_of("postmessage"), None);
    }
}
