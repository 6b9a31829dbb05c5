//! Google's authorization endpoint, `GET /o/oauth2/v2/auth` (and `/o/oauth2/auth`): the request
//! is checked, kept server-side as a pending sign-in, and walked through the account chooser and
//! the consent page to a code delivered by redirect (or `postmessage`).
//!
//! Nothing the browser posts after the first request can change where the code goes: the forms
//! carry only the pending sign-in's ID, the chosen account and the ticked scopes.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::Control;
use crate::clients::origin_of;
use crate::grants::{SIGN_IN_SCOPES, consented_scopes, expand_scopes};
use crate::model::CodeRequest;
use crate::pages::{self, AccountItem, CONSENT_PATH};
use crate::state::{Inner, Note, Profile, derived_sub, profile_of, random_token};
use crate::users::Account;

/// How long a pending sign-in lives (fake clock).
const PENDING_TTL_SECS: i64 = 3600;
/// How many pending sign-ins are kept at most (the oldest go first).
const PENDING_CAP: usize = 10_000;
/// How many accounts the chooser lists at most.
const CHOOSER_LIMIT: usize = 100;
/// The longest parameter value accepted.
const MAX_PARAM: usize = 4096;
/// What stays unescaped in the redirect's query (RFC 3986 unreserved).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The endpoint and its pages.
pub(crate) fn routes() -> Router<Control> {
    Router::new()
        .route("/o/oauth2/v2/auth", get(authorize))
        .route("/o/oauth2/auth", get(authorize))
        .route(pages::ACCOUNT_PATH, post(choose_account))
        .route(CONSENT_PATH, get(consent_form).post(decide))
}

/// The account a sign-in goes on with.
#[derive(Clone, Debug)]
struct Chosen {
    sub: String,
    email: String,
    /// `None`: a new account (its profile is derived from the e-mail when the code is minted).
    profile: Option<Profile>,
    /// The `hd` of a new account (the request's `hd`, which its e-mail's domain matches).
    new_hd: Option<String>,
}

impl Chosen {
    fn known(a: Account) -> Self {
        Self {
            sub: a.sub,
            email: a.profile.email.clone(),
            profile: Some(a.profile),
            new_hd: None,
        }
    }

    /// A new account; it belongs to the request's `hd` when its e-mail's domain is `hd`.
    fn new_account(email: &str, hd: Option<&str>) -> Self {
        Self {
            sub: derived_sub(email),
            email: email.to_owned(),
            profile: None,
            new_hd: hd
                .filter(|d| in_domain(email, None, Some(d)))
                .map(str::to_owned),
        }
    }

    fn hd(&self) -> Option<&str> {
        match &self.profile {
            Some(p) => p.hd.as_deref(),
            None => self.new_hd.as_deref(),
        }
    }
}

/// A checked authorization request.
#[derive(Clone, Debug)]
pub(crate) struct AuthRequest {
    client_id: String,
    /// Registered for the client (checked once, never taken from a later form).
    redirect_uri: String,
    /// With `redirect_uri=postmessage`: the opener's origin, a registered JavaScript origin.
    target_origin: Option<String>,
    /// Requested, expanded, without duplicates.
    scopes: Vec<String>,
    state: Option<String>,
    offline: bool,
    /// `prompt=consent`.
    consent: bool,
    /// `prompt=select_account`.
    select_account: bool,
    include_granted_scopes: bool,
    login_hint: Option<String>,
    hd: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// Set once an account is chosen (then the consent page shows).
    account: Option<Chosen>,
    expires_at: i64,
}

/// Pending sign-ins by their random ID.
pub(crate) struct Pending(Mutex<HashMap<String, AuthRequest>>);

impl Pending {
    /// None pending.
    pub(crate) fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    /// Forgets every pending sign-in.
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn insert(&self, req: AuthRequest, now: i64) -> String {
        let id = random_token(43);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PENDING_CAP {
            map.retain(|_, r| r.expires_at > now);
        }
        if map.len() >= PENDING_CAP
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, r)| r.expires_at)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), req);
        id
    }

    fn get(&self, id: &str, now: i64) -> Option<AuthRequest> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .filter(|r| r.expires_at > now)
            .cloned()
    }

    fn take(&self, id: &str, now: i64) -> Option<AuthRequest> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .filter(|r| r.expires_at > now)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn bad(error: &str, description: &str) -> Response {
    pages::error_page(StatusCode::BAD_REQUEST, error, description)
}

fn expired() -> Response {
    bad(
        "invalid_request",
        "This sign-in request is unknown, expired or already used. Start again from the application.",
    )
}

fn pairs(raw: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(raw).unwrap_or_default()
}

fn first<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn valid_email(email: &str) -> bool {
    profile_of(email, None, None, None, None, None, None, None).is_ok()
}

/// Whether an account may sign in under the request's `hd`: its hosted domain or its e-mail's
/// domain is `hd`.
fn in_domain(email: &str, account_hd: Option<&str>, hd: Option<&str>) -> bool {
    let Some(hd) = hd else { return true };
    account_hd.is_some_and(|a| a.eq_ignore_ascii_case(hd))
        || email
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(hd))
}

/// A request refused with an error page (never a redirect).
struct Refusal {
    error: &'static str,
    description: String,
}

impl Refusal {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }

    fn page(&self) -> Response {
        bad(self.error, &self.description)
    }
}

/// Checks the query of `GET /o/oauth2/v2/auth`. Errors are pages (never redirects); returns the
/// request and whether it is `prompt=none`.
fn parse_request(
    inner: &Inner,
    query: &str,
    headers: &HeaderMap,
) -> Result<(AuthRequest, bool), Refusal> {
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in pairs(query.as_bytes()) {
        if v.len() > MAX_PARAM {
            return Err(Refusal::new(
                "invalid_request",
                format!("Parameter too long: {k}"),
            ));
        }
        if map.insert(k.clone(), v).is_some() {
            return Err(Refusal::new(
                "invalid_request",
                format!("Parameter not allowed to be repeated: {k}"),
            ));
        }
    }
    let get = |k: &str| map.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let missing = |k: &str| {
        Refusal::new(
            "invalid_request",
            format!("Missing required parameter: {k}"),
        )
    };
    let client_id = get("client_id").ok_or_else(|| missing("client_id"))?;
    let Some(client) = inner.clients.get(client_id) else {
        return Err(Refusal::new(
            "invalid_client",
            "The OAuth client was not found.",
        ));
    };
    let redirect_uri = get("redirect_uri").ok_or_else(|| missing("redirect_uri"))?;
    let base = inner.base_url();
    let mut target_origin = None;
    if redirect_uri == "postmessage" {
        if !client.postmessage_allowed() {
            return Err(Refusal::new(
                "redirect_uri_mismatch",
                format!("redirect_uri=postmessage is not registered for the client {client_id}."),
            ));
        }
        let origin = get("origin")
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get(header::REFERER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(origin_of)
            })
            .ok_or_else(|| {
                Refusal::new(
                    "origin_mismatch",
                    "redirect_uri=postmessage needs the origin of the page that opened the popup: send origin=ORIGIN.",
                )
            })?;
        if !client.origin_allowed(&origin, &base) {
            return Err(Refusal::new(
                "origin_mismatch",
                format!(
                    "The JavaScript origin {origin} is not registered for the client {client_id}."
                ),
            ));
        }
        target_origin = Some(origin);
    } else if !client.redirect_allowed(redirect_uri, &base) {
        return Err(Refusal::new(
            "redirect_uri_mismatch",
            format!(
                "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy: redirect_uri={redirect_uri} is not registered for the client {client_id}."
            ),
        ));
    }
    match get("response_type") {
        None => return Err(missing("response_type")),
        Some("code") => {}
        Some(other) => {
            return Err(Refusal::new(
                "unsupported_response_type",
                format!(
                    "Unsupported response_type: {other} (fake-google serves the code flow only)."
                ),
            ));
        }
    }
    let requested: Vec<String> = get("scope")
        .ok_or_else(|| missing("scope"))?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let scopes = expand_scopes(&requested).map_err(|e| Refusal::new("invalid_scope", e.0))?;
    let offline = match get("access_type") {
        None | Some("online") => false,
        Some("offline") => true,
        Some(other) => {
            return Err(Refusal::new(
                "invalid_request",
                format!("Invalid access_type: {other}"),
            ));
        }
    };
    let (mut none, mut consent, mut select_account) = (false, false, false);
    let prompt_words: Vec<&str> = get("prompt").unwrap_or("").split_whitespace().collect();
    for w in &prompt_words {
        match *w {
            "none" => none = true,
            "consent" => consent = true,
            "select_account" => select_account = true,
            other => {
                return Err(Refusal::new(
                    "invalid_request",
                    format!("Invalid prompt: {other}"),
                ));
            }
        }
    }
    if none && prompt_words.len() > 1 {
        return Err(Refusal::new(
            "invalid_request",
            "Invalid prompt: none cannot be combined with other values",
        ));
    }
    let include_granted_scopes = match get("include_granted_scopes") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Refusal::new(
                "invalid_request",
                format!("Invalid include_granted_scopes: {other} (true or false)"),
            ));
        }
    };
    let nonce = get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > 512) {
        return Err(Refusal::new(
            "invalid_request",
            "Invalid nonce: at most 512 characters",
        ));
    }
    crate::pkce::parse(get("code_challenge"), get("code_challenge_method"))
        .map_err(|e| Refusal::new("invalid_request", e.0))?;
    Ok((
        AuthRequest {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            target_origin,
            scopes,
            state: map.get("state").cloned(),
            offline,
            consent,
            select_account,
            include_granted_scopes,
            login_hint: get("login_hint").map(str::to_owned),
            hd: get("hd").map(str::to_owned),
            nonce,
            code_challenge: get("code_challenge").map(str::to_owned),
            code_challenge_method: get("code_challenge")
                .and(get("code_challenge_method"))
                .map(str::to_owned),
            account: None,
            expires_at: inner.now().saturating_add(PENDING_TTL_SECS),
        },
        none,
    ))
}

/// `GET /o/oauth2/v2/auth`.
async fn authorize(State(c): State<Control>, headers: HeaderMap, uri: Uri) -> Response {
    let inner = &c.inner;
    let (req, prompt_none) = match parse_request(inner, uri.query().unwrap_or(""), &headers) {
        Ok(r) => r,
        Err(refusal) => return refusal.page(),
    };
    if prompt_none {
        return silent(inner, &req);
    }
    let hinted = hinted_account(inner, &req);
    if inner.settings().auto_consent
        && let Some(account) = hinted
    {
        return issue(inner, &req, &account, None, true);
    }
    if !req.select_account
        && let Some(account) = hinted.filter(|a| a.profile.is_some())
    {
        return proceed(inner, req, account);
    }
    let prefill = req.login_hint.clone().filter(|h| h.contains('@'));
    let id = inner.authorizations.insert(req.clone(), inner.now());
    chooser(inner, &id, &req, prefill.as_deref(), None, StatusCode::OK)
}

/// `prompt=none`: a code if the user (the `login_hint`, else the only known user) already granted
/// everything requested, else `interaction_required` / `consent_required`.
fn silent(inner: &Inner, req: &AuthRequest) -> Response {
    let account = match &req.login_hint {
        Some(_) => hinted_account(inner, req).filter(|a| a.profile.is_some()),
        None => {
            let mut accounts: Vec<Account> = inner
                .accounts()
                .into_iter()
                .filter(|a| in_domain(&a.profile.email, a.profile.hd.as_deref(), req.hd.as_deref()))
                .collect();
            (accounts.len() == 1)
                .then(|| accounts.pop())
                .flatten()
                .map(Chosen::known)
        }
    };
    match account {
        None => deliver(req, None, Err("interaction_required")),
        Some(a) if covered(inner, req, &a.sub) => issue(inner, req, &a, None, false),
        Some(_) => deliver(req, None, Err("consent_required")),
    }
}

/// The account `login_hint` names (an e-mail or a sub) within `hd`: a known one, or a new one for
/// an unknown e-mail.
fn hinted_account(inner: &Inner, req: &AuthRequest) -> Option<Chosen> {
    let hint = req.login_hint.as_deref()?;
    let chosen = if hint.contains('@') {
        match inner.account_by_email(hint) {
            Some(a) => Chosen::known(a),
            None if valid_email(hint) => Chosen::new_account(hint, req.hd.as_deref()),
            None => return None,
        }
    } else {
        Chosen::known(inner.account_by_sub(hint)?)
    };
    in_domain(&chosen.email, chosen.hd(), req.hd.as_deref()).then_some(chosen)
}

/// Whether the user already granted this client every requested scope (and, for `offline`,
/// holds a refresh token), so no consent page is needed.
fn covered(inner: &Inner, req: &AuthRequest, sub: &str) -> bool {
    inner
        .grants(sub)
        .and_then(|gs| gs.into_iter().find(|g| g.client_id == req.client_id))
        .is_some_and(|g| {
            req.scopes.iter().all(|s| g.scopes.contains(s)) && (!req.offline || g.has_refresh_token)
        })
}

/// An account was chosen: a code at once when nothing new is asked (or `auto_consent`), else
/// the consent page.
fn proceed(inner: &Inner, mut req: AuthRequest, account: Chosen) -> Response {
    if !req.consent && account.profile.is_some() && covered(inner, &req, &account.sub) {
        return issue(inner, &req, &account, None, false);
    }
    if inner.settings().auto_consent {
        return issue(inner, &req, &account, None, true);
    }
    req.account = Some(account);
    let id = inner.authorizations.insert(req, inner.now());
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{CONSENT_PATH}?auth={id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn chooser(
    inner: &Inner,
    id: &str,
    req: &AuthRequest,
    prefill: Option<&str>,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let accounts: Vec<Account> = inner
        .accounts()
        .into_iter()
        .filter(|a| in_domain(&a.profile.email, a.profile.hd.as_deref(), req.hd.as_deref()))
        .take(CHOOSER_LIMIT)
        .collect();
    let items: Vec<AccountItem<'_>> = accounts
        .iter()
        .map(|a| AccountItem {
            sub: &a.sub,
            email: &a.profile.email,
            name: a.profile.name.as_deref(),
        })
        .collect();
    pages::chooser_page(status, id, &req.client_id, &items, prefill, message)
}

/// `POST /o/oauth2/v2/auth/account`: `auth` and `account` (a known sub) or `email`.
async fn choose_account(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let inner = &c.inner;
    let Ok(body) = body else {
        return bad("invalid_request", "The request body could not be read.");
    };
    let form = pairs(&body);
    let Some(id) = first(&form, "auth") else {
        return bad("invalid_request", "Missing required parameter: auth");
    };
    let now = inner.now();
    let Some(req) = inner.authorizations.take(id, now) else {
        return expired();
    };
    let hd = req.hd.clone();
    let retry = |req: AuthRequest, prefill: Option<&str>, message: &str| {
        let id = inner.authorizations.insert(req.clone(), now);
        chooser(
            inner,
            &id,
            &req,
            prefill,
            Some(message),
            StatusCode::BAD_REQUEST,
        )
    };
    let chosen = if let Some(sub) = first(&form, "account") {
        match inner
            .account_by_sub(sub)
            .map(Chosen::known)
            .filter(|a| in_domain(&a.email, a.hd(), hd.as_deref()))
        {
            Some(a) => a,
            None => return retry(req, None, "That account is not available here."),
        }
    } else if let Some(email) = first(&form, "email").map(str::trim) {
        if !valid_email(email) {
            return retry(req, Some(email), "Enter a valid e-mail address.");
        }
        let chosen = match inner.account_by_email(email) {
            Some(a) => Chosen::known(a),
            None => Chosen::new_account(email, hd.as_deref()),
        };
        if !in_domain(&chosen.email, chosen.hd(), hd.as_deref()) {
            let message = format!(
                "Only accounts of {} can sign in here.",
                hd.unwrap_or_default()
            );
            return retry(req, Some(email), &message);
        }
        chosen
    } else {
        return retry(req, None, "Choose an account or enter an e-mail address.");
    };
    proceed(inner, req, chosen)
}

fn split_scopes(scopes: &[String]) -> (Vec<String>, Vec<String>) {
    scopes
        .iter()
        .cloned()
        .partition(|s| SIGN_IN_SCOPES.contains(&s.as_str()))
}

/// `GET /o/oauth2/v2/auth/consent?auth=ID`: the consent page.
async fn consent_form(State(c): State<Control>, uri: Uri) -> Response {
    let inner = &c.inner;
    let query = pairs(uri.query().unwrap_or("").as_bytes());
    let Some(id) = first(&query, "auth") else {
        return bad("invalid_request", "Missing required parameter: auth");
    };
    let Some(req) = inner.authorizations.get(id, inner.now()) else {
        return expired();
    };
    let Some(account) = &req.account else {
        return bad("invalid_request", "Choose an account first.");
    };
    let (sign_in, tickable) = split_scopes(&req.scopes);
    pages::consent_page(
        id,
        &req.client_id,
        &account.email,
        &sign_in,
        &tickable,
        req.offline,
    )
}

/// `POST /o/oauth2/v2/auth/consent`: `auth`, `decision` (`allow` | `deny`) and the ticked `scope`s.
async fn decide(State(c): State<Control>, body: Result<Bytes, BytesRejection>) -> Response {
    let inner = &c.inner;
    let Ok(body) = body else {
        return bad("invalid_request", "The request body could not be read.");
    };
    let form = pairs(&body);
    let Some(id) = first(&form, "auth") else {
        return bad("invalid_request", "Missing required parameter: auth");
    };
    let now = inner.now();
    let Some(req) = inner.authorizations.get(id, now) else {
        return expired();
    };
    let Some(account) = req.account.clone() else {
        return bad("invalid_request", "Choose an account first.");
    };
    let ticked: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let allow = match first(&form, "decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return bad(
                "invalid_request",
                "Missing or unknown decision: send decision=allow or decision=deny.",
            );
        }
    };
    if allow {
        let expanded = match crate::grants::expand_list(&ticked, "scope") {
            Ok(e) => e,
            Err(e) => return bad("invalid_scope", &e.0),
        };
        if let Some(extra) = expanded.iter().find(|s| !req.scopes.contains(s)) {
            return bad(
                "invalid_scope",
                &format!("The scope {extra} was not requested."),
            );
        }
    }
    // One decision per sign-in.
    let Some(req) = inner.authorizations.take(id, now) else {
        return expired();
    };
    if allow {
        issue(inner, &req, &account, Some(ticked), true)
    } else {
        deliver(&req, None, Err("access_denied"))
    }
}

/// Mints the code for the chosen account and delivers it. `ticked`: the non-sign-in scopes left
/// ticked (`None`: all requested); nothing granted at all answers `access_denied`.
fn issue(
    inner: &Inner,
    req: &AuthRequest,
    account: &Chosen,
    ticked: Option<Vec<String>>,
    consent_shown: bool,
) -> Response {
    let Ok(granted) = consented_scopes(req.scopes.clone(), ticked.as_deref()) else {
        return deliver(req, None, Err("access_denied"));
    };
    let earlier: Vec<String> = if req.include_granted_scopes {
        inner
            .grants(&account.sub)
            .and_then(|gs| gs.into_iter().find(|g| g.client_id == req.client_id))
            .map(|g| g.scopes)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let p = account.profile.as_ref();
    let code_req = CodeRequest {
        email: account.email.clone(),
        sub: Some(account.sub.clone()),
        name: p.and_then(|p| p.name.clone()),
        given_name: p.and_then(|p| p.given_name.clone()),
        family_name: p.and_then(|p| p.family_name.clone()),
        picture: p.and_then(|p| p.picture.clone()),
        locale: p.and_then(|p| p.locale.clone()),
        email_verified: p.map(|p| p.email_verified),
        hd: account.hd().map(str::to_owned),
        scopes: Some(req.scopes.clone()),
        client_id: Some(req.client_id.clone()),
        azp: None,
        redirect_uri: Some(req.redirect_uri.clone()),
        prompt: req.consent.then(|| "consent".to_owned()),
        nonce: req.nonce.clone(),
        include_granted_scopes: req.include_granted_scopes,
        granted_scopes: ticked,
        code_challenge: req.code_challenge.clone(),
        code_challenge_method: req.code_challenge_method.clone(),
        access_type: Some(if req.offline { "offline" } else { "online" }.to_owned()),
    };
    let minted = match inner.mint_code(&code_req) {
        Ok(m) => m,
        Err(e) => return bad("invalid_request", &e.0),
    };
    let mut scope = earlier;
    for s in granted {
        if !scope.contains(&s) {
            scope.push(s);
        }
    }
    let mut answer = vec![
        ("code", minted.code),
        ("scope", scope.join(" ")),
        ("authuser", "0".to_owned()),
    ];
    if let Some(hd) = account.hd() {
        answer.push(("hd", hd.to_owned()));
    }
    answer.push((
        "prompt",
        if consent_shown { "consent" } else { "none" }.to_owned(),
    ));
    deliver(req, Some(minted.sub), Ok(answer))
}

/// Sends the answer to the client: a 302 to the redirect URI with the answer in its query, or for
/// `postmessage` the hand-off page. `state` comes first, as Google sends it.
fn deliver(
    req: &AuthRequest,
    sub: Option<String>,
    outcome: Result<Vec<(&str, String)>, &str>,
) -> Response {
    let mut answer: Vec<(&str, String)> = Vec::new();
    match outcome {
        Ok(fields) => {
            if let Some(s) = &req.state {
                answer.push(("state", s.clone()));
            }
            answer.extend(fields);
        }
        Err(error) => {
            answer.push(("error", error.to_owned()));
            if let Some(s) = &req.state {
                answer.push(("state", s.clone()));
            }
        }
    }
    let mut response = if req.redirect_uri == "postmessage" {
        let message: serde_json::Map<String, Value> = answer
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        pages::postmessage_page(
            req.target_origin.as_deref().unwrap_or_default(),
            &Value::Object(message),
        )
    } else {
        match redirect_location(&req.redirect_uri, &answer)
            .and_then(|l| HeaderValue::from_str(&l).ok())
        {
            Some(location) => {
                let mut r = StatusCode::FOUND.into_response();
                r.headers_mut().insert(header::LOCATION, location);
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
                );
                r
            }
            None => bad(
                "redirect_uri_mismatch",
                "The redirect URI cannot carry an answer.",
            ),
        }
    };
    response.extensions_mut().insert(Note {
        sub,
        client_id: Some(req.client_id.clone()),
        ..Note::default()
    });
    response
}

/// `redirect_uri` with `answer` appended to its query (`%20` for spaces, as Google).
fn redirect_location(redirect_uri: &str, answer: &[(&str, String)]) -> Option<String> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
    let extra = answer
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY),
                utf8_percent_encode(v, QUERY)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let query = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{extra}"),
        _ => extra,
    };
    url.set_query(Some(&query));
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(expires_at: i64) -> AuthRequest {
        AuthRequest {
            client_id: "c".into(),
            redirect_uri: "http://localhost/cb".into(),
            target_origin: None,
            scopes: vec!["openid".into()],
            state: None,
            offline: false,
            consent: false,
            select_account: false,
            include_granted_scopes: false,
            login_hint: None,
            hd: None,
            nonce: None,
            code_challenge: None,
            code_challenge_method: None,
            account: None,
            expires_at,
        }
    }

    #[test]
    fn redirects_append_to_an_existing_query_with_percent_encoding() {
        let loc = redirect_location(
            "http://localhost:8080/cb?x=1",
            &[("state", "a b&c".into()), ("scope", "openid email".into())],
        )
        .unwrap();
        assert_eq!(
            loc,
            "http://localhost:8080/cb?x=1&state=a%20b%26c&scope=openid%20email"
        );
        let loc = redirect_location(
            "com.example.app:/oauth2redirect",
            &[("code", "4/0x".into())],
        )
        .unwrap();
        assert_eq!(loc, "com.example.app:/oauth2redirect?code=4%2F0x");
    }

    #[test]
    fn pending_sign_ins_expire_are_taken_once_and_stay_bounded() {
        let p = Pending::new();
        let id = p.insert(req(100), 0);
        assert!(p.get(&id, 99).is_some());
        assert!(p.get(&id, 100).is_none(), "expired");
        assert!(p.take(&id, 50).is_some());
        assert!(p.take(&id, 50).is_none(), "taken once");
        for i in 0..PENDING_CAP + 5 {
            p.insert(req(1000 + i as i64), 0);
        }
        assert_eq!(p.len(), PENDING_CAP);
    }

    #[test]
    fn hosted_domains_match_the_account_or_its_email() {
        assert!(in_domain("a@x.com", None, None));
        assert!(in_domain("a@X.com", None, Some("x.com")));
        assert!(in_domain("a@gmail.com", Some("x.com"), Some("x.com")));
        assert!(!in_domain("a@y.com", None, Some("x.com")));
    }
}
