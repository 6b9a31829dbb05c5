//! The fake's state: users, codes and tokens behind sharded locks, and the OAuth logic. Each
//! user's grants (and the scope model) are in [`crate::grants`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::clients::{ClientType, Clients};
use crate::drive::DriveStore;
use crate::grants::{
    CodeConsent, Grants, SCOPE_EMAIL, SCOPE_PROFILE, consented_scopes, expand_scopes,
};
use crate::keys::KeyStore;
use crate::model::{
    CodeRequest, ControlError, DEFAULT_SCOPES, Endpoint, Fault, GrantInfo, IdTokenRequest,
    JournalEntry, OAuthClient, Settings, SettingsPatch,
};

/// How many journal entries are kept.
pub(crate) const JOURNAL_CAP: usize = 10_000;
const SHARDS: usize = 16;
/// How many issued codes and access tokens between two sweeps of expired ones.
const SWEEP_EVERY: u64 = 65_536;

/// A map split over several mutexes so unrelated keys never contend.
pub(crate) struct Sharded<V> {
    hasher: RandomState,
    pub(crate) shards: Vec<Mutex<HashMap<String, V>>>,
}

impl<V> Sharded<V> {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub(crate) fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, V>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn clear(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// A user's profile as the ID token and userinfo show it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Profile {
    pub(crate) email: String,
    pub(crate) email_verified: bool,
    pub(crate) name: Option<String>,
    pub(crate) given_name: Option<String>,
    pub(crate) family_name: Option<String>,
    pub(crate) picture: Option<String>,
    pub(crate) locale: Option<String>,
    pub(crate) hd: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct User {
    pub(crate) profile: Profile,
    grants: Grants,
    /// Access tokens issued with a sequence number below this are expired.
    expired_below: u64,
}

#[derive(Clone, Debug)]
struct CodeRecord {
    sub: String,
    client_id: String,
    azp: String,
    redirect_uri: String,
    /// The scopes the user granted (after granular consent).
    scopes: Arc<[String]>,
    include_granted_scopes: bool,
    force_consent: bool,
    nonce: Option<String>,
    /// The PKCE challenge the exchange must answer.
    pkce: Option<crate::pkce::Challenge>,
    /// `access_type=offline`: the exchange may hand out a refresh token.
    offline: bool,
    expires_at: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct AccessRecord {
    pub(crate) sub: String,
    pub(crate) client_id: String,
    pub(crate) azp: String,
    pub(crate) scopes: Arc<[String]>,
    pub(crate) expires_at: i64,
    seq: u64,
    generation: u64,
}

#[derive(Clone, Debug)]
struct RefreshRecord {
    sub: String,
    client_id: String,
    azp: String,
    /// A refresh answers the grant's current scopes, not those it was issued with.
    generation: u64,
    /// Retired by rotation.
    rotated: bool,
}

/// An OAuth error answer: `{"error", "error_description"}` with a status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub(crate) status: u16,
    pub(crate) error: &'static str,
    pub(crate) description: String,
}

impl OAuthError {
    pub(crate) fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
    fn invalid_grant(description: &str) -> Self {
        Self::new(400, "invalid_grant", description)
    }
    fn missing(name: &str) -> Self {
        Self::new(
            400,
            "invalid_request",
            format!("Missing required parameter: {name}"),
        )
    }
}

/// A successful token response, in Google's field order.
#[derive(Clone, Serialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
    pub(crate) scope: String,
    pub(crate) token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id_token: Option<String>,
}

/// What a token request told the journal.
#[derive(Clone, Debug, Default)]
pub(crate) struct Note {
    pub(crate) grant_type: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) client_id: Option<String>,
}

/// ID token claims in Google's order.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'static str,
    azp: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hd: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locale: Option<&'a str>,
    iat: i64,
    exp: i64,
}

/// The issuer of every ID token.
pub(crate) const ISSUER: &str = "https://accounts.google.com";

/// An active fault with its remaining count.
#[derive(Debug)]
pub(crate) struct ActiveFault {
    pub(crate) fault: Fault,
    pub(crate) left: u32,
}

/// Everything the fake knows. Each part has its own lock; none is held across an await or while signing.
pub(crate) struct Inner {
    pub(crate) base_url: RwLock<String>,
    pub(crate) ca_pem: RwLock<Option<String>>,
    pub(crate) clients: Clients,
    settings: RwLock<Settings>,
    pub(crate) keys: KeyStore,
    pub(crate) users: Sharded<User>,
    codes: Sharded<CodeRecord>,
    access: Sharded<AccessRecord>,
    refresh: Sharded<RefreshRecord>,
    seq: AtomicU64,
    sweep_counter: AtomicU64,
    faults: Mutex<Vec<ActiveFault>>,
    journal: Mutex<VecDeque<JournalEntry>>,
    pub(crate) drive: DriveStore,
    /// Sign-ins waiting in the browser (account chooser, consent page).
    pub(crate) authorizations: crate::authorize::Pending,
    /// The `--config` file, re-applied by a reset.
    pub(crate) baseline: RwLock<Option<crate::config::ConfigFile>>,
    /// The RISC stream and each grant's latest refresh token ([`crate::risc`]).
    pub(crate) risc: crate::risc::RiscState,
}

impl Inner {
    pub(crate) fn new(client: OAuthClient, keys: KeyStore) -> Self {
        Self {
            base_url: RwLock::new("http://127.0.0.1".to_owned()),
            ca_pem: RwLock::new(None),
            clients: Clients::new(client),
            settings: RwLock::new(Settings::default()),
            keys,
            users: Sharded::new(),
            codes: Sharded::new(),
            access: Sharded::new(),
            refresh: Sharded::new(),
            seq: AtomicU64::new(1),
            sweep_counter: AtomicU64::new(0),
            faults: Mutex::new(Vec::new()),
            journal: Mutex::new(VecDeque::new()),
            drive: DriveStore::new(),
            authorizations: crate::authorize::Pending::new(),
            baseline: RwLock::new(None),
            risc: crate::risc::RiscState::default(),
        }
    }

    pub(crate) fn default_client(&self) -> &OAuthClient {
        self.clients.default_client()
    }

    pub(crate) fn base_url(&self) -> String {
        self.base_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The fake's clock: real time plus the configured offset, in Unix seconds.
    pub(crate) fn now(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        real.saturating_add(self.settings().clock_offset_secs)
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Every [`SWEEP_EVERY`] issued codes and tokens, forgets expired codes and access tokens
    /// expired for over a day, so a long-running fake stays bounded. Holds one shard lock at a time.
    fn maybe_sweep(&self) {
        let n = self.sweep_counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(SWEEP_EVERY) {
            self.sweep(self.now());
        }
    }

    pub(crate) fn sweep(&self, now: i64) {
        for shard in &self.codes.shards {
            shard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, c| c.expires_at > now);
        }
        let horizon = now.saturating_sub(86_400);
        for shard in &self.access.shards {
            shard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, a| a.expires_at > horizon);
        }
    }

    // ----- control -----

    pub(crate) fn mint_code(
        &self,
        req: &CodeRequest,
    ) -> Result<crate::model::MintedCode, ControlError> {
        let profile = profile_of(
            &req.email,
            req.name.as_deref(),
            req.given_name.as_deref(),
            req.family_name.as_deref(),
            req.picture.as_deref(),
            req.locale.as_deref(),
            req.email_verified,
            req.hd.as_deref(),
        )?;
        let sub = sub_for(req.sub.as_deref(), &req.email)?;
        let scopes = match &req.scopes {
            None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            Some(list) => list.clone(),
        };
        let scopes = consented_scopes(expand_scopes(&scopes)?, req.granted_scopes.as_deref())?;
        let client_id = req
            .client_id
            .clone()
            .unwrap_or_else(|| self.default_client().client_id.clone());
        if !self.clients.known(&client_id) {
            return Err(ControlError(format!(
                "unknown client_id {client_id:?}: register it with POST /_fake/clients first"
            )));
        }
        let azp = match &req.azp {
            Some(a) if a.trim().is_empty() || a.len() > 512 => {
                return Err(ControlError(
                    "azp must be a non-empty client ID of at most 512 characters".to_owned(),
                ));
            }
            Some(a) => a.clone(),
            None => client_id.clone(),
        };
        let redirect_uri = req.redirect_uri.clone().unwrap_or_default();
        if redirect_uri.len() > 2048 || redirect_uri.chars().any(char::is_whitespace) {
            return Err(ControlError(
                "redirect_uri must be at most 2048 characters without whitespace".to_owned(),
            ));
        }
        let force_consent = match req.prompt.as_deref() {
            None => false,
            Some(p) => {
                let mut consent = false;
                for word in p.split_whitespace() {
                    match word {
                        "consent" => consent = true,
                        "none" | "login" | "select_account" => {}
                        other => {
                            return Err(ControlError(format!(
                                "prompt {other:?} is not one of none, consent, login, select_account"
                            )));
                        }
                    }
                }
                consent
            }
        };
        check_opt_len("nonce", req.nonce.as_deref())?;
        let pkce = crate::pkce::parse(
            req.code_challenge.as_deref(),
            req.code_challenge_method.as_deref(),
        )?;
        let offline = match req.access_type.as_deref() {
            None | Some("offline") => true,
            Some("online") => false,
            Some(other) => {
                return Err(ControlError(format!(
                    "access_type {other:?} is not online or offline"
                )));
            }
        };
        self.upsert_profile(&sub, profile);
        let code = format!("4/0{}", random_token(72));
        let record = CodeRecord {
            sub: sub.clone(),
            client_id,
            azp,
            redirect_uri,
            scopes: scopes.into(),
            include_granted_scopes: req.include_granted_scopes,
            force_consent,
            nonce: req.nonce.clone(),
            pkce,
            offline,
            expires_at: self
                .now()
                .saturating_add(self.settings().code_ttl_secs as i64),
        };
        self.codes.shard(&code).insert(code.clone(), record);
        self.maybe_sweep();
        Ok(crate::model::MintedCode { code, sub })
    }

    pub(crate) fn upsert_profile(&self, sub: &str, profile: Profile) {
        let mut users = self.users.shard(sub);
        users.entry(sub.to_owned()).or_default().profile = profile;
    }

    fn profile(&self, sub: &str) -> Option<Profile> {
        self.users.shard(sub).get(sub).map(|u| u.profile.clone())
    }

    pub(crate) fn mint_id_token(&self, req: &IdTokenRequest) -> Result<String, ControlError> {
        let profile = profile_of(
            &req.email,
            req.name.as_deref(),
            req.given_name.as_deref(),
            req.family_name.as_deref(),
            req.picture.as_deref(),
            req.locale.as_deref(),
            req.email_verified,
            req.hd.as_deref(),
        )?;
        let sub = sub_for(req.sub.as_deref(), &req.email)?;
        check_opt_len("client_id", req.client_id.as_deref())?;
        check_opt_len("azp", req.azp.as_deref())?;
        check_opt_len("nonce", req.nonce.as_deref())?;
        let ttl = match req.ttl_secs {
            Some(t) if t > MAX_TTL => {
                return Err(ControlError(format!("ttl_secs must be at most {MAX_TTL}")));
            }
            Some(t) => t,
            None => self.settings().id_token_ttl_secs,
        };
        let aud = req
            .client_id
            .clone()
            .unwrap_or_else(|| self.default_client().client_id.clone());
        let azp = req.azp.clone().unwrap_or_else(|| aud.clone());
        let all: Vec<String> = vec![SCOPE_EMAIL.to_owned(), SCOPE_PROFILE.to_owned()];
        self.upsert_profile(&sub, profile.clone());
        self.sign_id_token(
            &sub,
            &profile,
            &aud,
            &azp,
            &all,
            None,
            req.nonce.as_deref(),
            ttl,
        )
        .map_err(|e| ControlError(format!("signing failed: {e}")))
    }

    pub(crate) fn revoke_user(&self, sub: &str) -> bool {
        let mut users = self.users.shard(sub);
        match users.get_mut(sub) {
            Some(user) => {
                user.grants.revoke_all();
                true
            }
            None => false,
        }
    }

    /// The user's grants by client ID; `None` for an unknown user.
    pub(crate) fn grants(&self, sub: &str) -> Option<Vec<GrantInfo>> {
        self.users.shard(sub).get(sub).map(|u| u.grants.infos())
    }

    pub(crate) fn expire_user(&self, sub: &str) -> bool {
        let seq = self.next_seq();
        let mut users = self.users.shard(sub);
        match users.get_mut(sub) {
            Some(user) => {
                user.expired_below = seq;
                true
            }
            None => false,
        }
    }

    pub(crate) fn patch_settings(&self, patch: &SettingsPatch) -> Result<Settings, ControlError> {
        for (name, v) in [
            ("access_token_ttl_secs", patch.access_token_ttl_secs),
            ("id_token_ttl_secs", patch.id_token_ttl_secs),
            ("code_ttl_secs", patch.code_ttl_secs),
            ("jwks_max_age_secs", patch.jwks_max_age_secs),
        ] {
            if let Some(v) = v
                && v > MAX_TTL
            {
                return Err(ControlError(format!("{name} must be at most {MAX_TTL}")));
            }
        }
        if let Some(o) = patch.clock_offset_secs
            && o.unsigned_abs() > MAX_TTL
        {
            return Err(ControlError(format!(
                "clock_offset_secs must be within ±{MAX_TTL}"
            )));
        }
        let mut s = self.settings.write().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = patch.access_token_ttl_secs {
            s.access_token_ttl_secs = v;
        }
        if let Some(v) = patch.id_token_ttl_secs {
            s.id_token_ttl_secs = v;
        }
        if let Some(v) = patch.code_ttl_secs {
            s.code_ttl_secs = v;
        }
        if let Some(v) = patch.jwks_max_age_secs {
            s.jwks_max_age_secs = v;
        }
        if let Some(v) = patch.clock_offset_secs {
            s.clock_offset_secs = v;
        }
        if let Some(v) = patch.rotate_refresh_tokens {
            s.rotate_refresh_tokens = v;
        }
        if let Some(v) = patch.auto_consent {
            s.auto_consent = v;
        }
        Ok(s.clone())
    }

    pub(crate) fn add_fault(&self, fault: Fault) -> Result<(), ControlError> {
        if let Some(s) = fault.status
            && !(100..=599).contains(&s)
        {
            return Err(ControlError(
                "status must be between 100 and 599".to_owned(),
            ));
        }
        if fault.times == 0 || fault.times > 10_000 {
            return Err(ControlError("times must be between 1 and 10000".to_owned()));
        }
        if fault.delay_ms.is_some_and(|d| d > 600_000) {
            return Err(ControlError("delay_ms must be at most 600000".to_owned()));
        }
        if fault.status.is_none()
            && fault.body.is_none()
            && fault.delay_ms.is_none()
            && !fault.drop_connection
            && !fault.malformed_json
        {
            return Err(ControlError(
                "a fault needs at least one of status, body, delay_ms, drop_connection, malformed_json"
                    .to_owned(),
            ));
        }
        let left = fault.times;
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ActiveFault { fault, left });
        Ok(())
    }

    /// The active faults with their remaining counts as `times`.
    pub(crate) fn faults(&self) -> Vec<Fault> {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|a| Fault {
                times: a.left,
                ..a.fault.clone()
            })
            .collect()
    }

    pub(crate) fn journal_len(&self) -> usize {
        self.journal.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub(crate) fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Takes one use of the oldest fault for `endpoint`.
    pub(crate) fn take_fault(&self, endpoint: Endpoint) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let i = faults.iter().position(|f| f.fault.endpoint == endpoint)?;
        let fault = faults[i].fault.clone();
        faults[i].left -= 1;
        if faults[i].left == 0 {
            faults.remove(i);
        }
        Some(fault)
    }

    pub(crate) fn record(&self, entry: JournalEntry) {
        let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        if j.len() >= JOURNAL_CAP {
            j.pop_front();
        }
        j.push_back(entry);
    }

    pub(crate) fn requests(&self) -> Vec<JournalEntry> {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub(crate) fn clear_requests(&self) {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub(crate) fn reset(&self) -> Result<(), crate::keys::KeyError> {
        self.users.clear();
        self.codes.clear();
        self.access.clear();
        self.refresh.clear();
        self.clear_faults();
        self.clear_requests();
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Settings::default();
        self.clients.reset();
        self.authorizations.clear();
        self.drive.clear();
        self.risc.clear();
        self.keys.reset()
    }

    pub(crate) fn user_count(&self) -> usize {
        self.users.len()
    }

    // ----- OAuth -----

    /// Authenticates the client of a token request (HTTP Basic first, then form fields).
    fn authenticate_client(
        &self,
        params: &HashMap<String, String>,
        basic: Option<(String, String)>,
    ) -> Result<String, OAuthError> {
        let (id, secret) = match basic {
            Some((id, secret)) => (Some(id), Some(secret)),
            None => (
                params.get("client_id").cloned(),
                params.get("client_secret").cloned(),
            ),
        };
        let Some(id) = id.filter(|s| !s.is_empty()) else {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                "Could not determine client ID from request.",
            ));
        };
        let Some(client) = self.clients.get(&id) else {
            return Err(OAuthError::new(
                401,
                "invalid_client",
                "The OAuth client was not found.",
            ));
        };
        let expected = client.secret;
        match secret.filter(|s| !s.is_empty()) {
            // Android clients have no secret at Google.
            None if client.client_type == ClientType::Android => Ok(id),
            None => Err(OAuthError::new(
                400,
                "invalid_request",
                "client_secret is missing.",
            )),
            Some(s) if constant_time_eq(s.as_bytes(), expected.as_bytes()) => Ok(id),
            Some(_) => Err(OAuthError::new(401, "invalid_client", "Unauthorized")),
        }
    }

    /// `POST /token`.
    pub(crate) fn token(
        &self,
        params: &HashMap<String, String>,
        basic: Option<(String, String)>,
        note: &mut Note,
    ) -> Result<TokenResponse, OAuthError> {
        note.grant_type = params.get("grant_type").cloned();
        let client_id = self.authenticate_client(params, basic)?;
        note.client_id = Some(client_id.clone());
        let grant_type = match params.get("grant_type").map(String::as_str) {
            None | Some("") => return Err(OAuthError::missing("grant_type")),
            Some(g) => g,
        };
        match grant_type {
            "authorization_code" => self.exchange_code(params, &client_id, note),
            "refresh_token" => self.refresh(params, &client_id, note),
            other => Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                format!("Invalid grant_type: {other}"),
            )),
        }
    }

    fn exchange_code(
        &self,
        params: &HashMap<String, String>,
        client_id: &str,
        note: &mut Note,
    ) -> Result<TokenResponse, OAuthError> {
        let code = match params.get("code").map(String::as_str) {
            None | Some("") => return Err(OAuthError::missing("code")),
            Some(c) => c,
        };
        if !well_formed_code(code) {
            return Err(OAuthError::invalid_grant("Malformed auth code."));
        }
        let sent_redirect = params.get("redirect_uri").map(String::as_str);
        let now = self.now();
        let record = {
            let mut codes = self.codes.shard(code);
            let Some(rec) = codes.get(code) else {
                return Err(OAuthError::invalid_grant("Bad Request"));
            };
            if rec.expires_at <= now {
                codes.remove(code);
                return Err(OAuthError::invalid_grant("Bad Request"));
            }
            if rec.client_id != client_id {
                return Err(OAuthError::new(400, "unauthorized_client", "Unauthorized"));
            }
            if !redirect_matches(&rec.redirect_uri, sent_redirect) {
                return Err(OAuthError::new(400, "redirect_uri_mismatch", "Bad Request"));
            }
            let verifier = params.get("code_verifier").map(String::as_str);
            if let Err(m) = crate::pkce::verify(rec.pkce.as_ref(), verifier) {
                return Err(OAuthError::invalid_grant(m.description()));
            }
            codes
                .remove(code)
                .ok_or_else(|| OAuthError::invalid_grant("Bad Request"))?
        };
        note.sub = Some(record.sub.clone());
        let (consent, profile) = {
            let mut users = self.users.shard(&record.sub);
            let user = users.entry(record.sub.clone()).or_default();
            let consent = user.grants.consent(
                &record.client_id,
                CodeConsent {
                    scopes: &record.scopes,
                    include_granted_scopes: record.include_granted_scopes,
                    force_consent: record.force_consent,
                    offline: record.offline,
                },
            );
            (consent, user.profile.clone())
        };
        let scopes = consent.scopes;
        let refresh_token = consent.issue_refresh.then(|| {
            self.issue_refresh(RefreshRecord {
                sub: record.sub.clone(),
                client_id: record.client_id.clone(),
                azp: record.azp.clone(),
                generation: consent.generation,
                rotated: false,
            })
        });
        let (access_token, expires_in) = self.issue_access(
            &record.sub,
            &record.client_id,
            &record.azp,
            &scopes,
            consent.generation,
            now,
        );
        let id_token = if scopes.iter().any(|s| s == "openid") {
            Some(
                self.sign_id_token(
                    &record.sub,
                    &profile,
                    &record.client_id,
                    &record.azp,
                    &scopes,
                    Some(&access_token),
                    record.nonce.as_deref(),
                    self.settings().id_token_ttl_secs,
                )
                .map_err(|e| OAuthError::new(500, "internal_failure", e.to_string()))?,
            )
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            expires_in,
            refresh_token,
            scope: scopes.join(" "),
            token_type: "Bearer",
            id_token,
        })
    }

    fn refresh(
        &self,
        params: &HashMap<String, String>,
        client_id: &str,
        note: &mut Note,
    ) -> Result<TokenResponse, OAuthError> {
        let token = match params.get("refresh_token").map(String::as_str) {
            None | Some("") => return Err(OAuthError::missing("refresh_token")),
            Some(t) => t,
        };
        let dead = || OAuthError::invalid_grant("Token has been expired or revoked.");
        let record = self
            .refresh
            .shard(token)
            .get(token)
            .cloned()
            .ok_or_else(dead)?;
        note.sub = Some(record.sub.clone());
        if record.rotated {
            return Err(dead());
        }
        // The grant's scopes now: everything granted since the last revocation.
        let scopes = self
            .users
            .shard(&record.sub)
            .get(&record.sub)
            .and_then(|u| {
                u.grants
                    .current_scopes(&record.client_id, record.generation)
            })
            .ok_or_else(dead)?;
        if record.client_id != client_id {
            return Err(OAuthError::new(400, "unauthorized_client", "Unauthorized"));
        }
        let now = self.now();
        let settings = self.settings();
        let refresh_token = if settings.rotate_refresh_tokens {
            {
                let mut shard = self.refresh.shard(token);
                match shard.get_mut(token) {
                    Some(r) if !r.rotated => r.rotated = true,
                    _ => return Err(dead()),
                }
            }
            Some(self.issue_refresh(RefreshRecord {
                rotated: false,
                ..record.clone()
            }))
        } else {
            None
        };
        let (access_token, expires_in) = self.issue_access(
            &record.sub,
            &record.client_id,
            &record.azp,
            &scopes,
            record.generation,
            now,
        );
        let id_token = if scopes.iter().any(|s| s == "openid") {
            let profile = self.profile(&record.sub).unwrap_or_default();
            Some(
                self.sign_id_token(
                    &record.sub,
                    &profile,
                    &record.client_id,
                    &record.azp,
                    &scopes,
                    Some(&access_token),
                    None,
                    settings.id_token_ttl_secs,
                )
                .map_err(|e| OAuthError::new(500, "internal_failure", e.to_string()))?,
            )
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            expires_in,
            refresh_token,
            scope: scopes.join(" "),
            token_type: "Bearer",
            id_token,
        })
    }

    /// Stores a new refresh token of `record`'s grant (RISC names each grant's latest one).
    fn issue_refresh(&self, record: RefreshRecord) -> String {
        let token = format!("1//0{}", random_token(100));
        self.risc
            .note_refresh_token(&record.sub, &record.client_id, &token);
        self.refresh.shard(&token).insert(token.clone(), record);
        token
    }

    fn issue_access(
        &self,
        sub: &str,
        client_id: &str,
        azp: &str,
        scopes: &Arc<[String]>,
        generation: u64,
        now: i64,
    ) -> (String, u64) {
        let ttl = self.settings().access_token_ttl_secs;
        let token = format!("ya29.a0{}", random_token(150));
        let record = AccessRecord {
            sub: sub.to_owned(),
            client_id: client_id.to_owned(),
            azp: azp.to_owned(),
            scopes: Arc::clone(scopes),
            expires_at: now.saturating_add(ttl as i64),
            seq: self.next_seq(),
            generation,
        };
        self.access.shard(&token).insert(token.clone(), record);
        self.maybe_sweep();
        (token, ttl)
    }

    /// The record of a live access token (not expired, not revoked).
    pub(crate) fn access_token(&self, token: &str) -> Option<AccessRecord> {
        let rec = self.access.shard(token).get(token).cloned()?;
        if rec.expires_at <= self.now() {
            return None;
        }
        let users = self.users.shard(&rec.sub);
        let user = users.get(&rec.sub)?;
        if rec.seq < user.expired_below {
            return None;
        }
        user.grants
            .alive(&rec.client_id, rec.generation)
            .then_some(rec)
    }

    pub(crate) fn profile_of_sub(&self, sub: &str) -> Option<Profile> {
        self.profile(sub)
    }

    /// `POST /revoke`: revokes the whole grant the token belongs to. Returns the sub.
    pub(crate) fn revoke(&self, token: &str) -> Result<String, OAuthError> {
        let dead = || OAuthError::new(400, "invalid_token", "Token expired or revoked");
        let (sub, client_id, generation) = if let Some(rec) = self.access_token(token) {
            (rec.sub, rec.client_id, rec.generation)
        } else if let Some(rec) = self.refresh.shard(token).get(token).cloned() {
            if rec.rotated {
                return Err(dead());
            }
            (rec.sub, rec.client_id, rec.generation)
        } else {
            return Err(dead());
        };
        let revoked = self
            .users
            .shard(&sub)
            .get_mut(&sub)
            .is_some_and(|u| u.grants.revoke(&client_id, generation));
        if revoked { Ok(sub) } else { Err(dead()) }
    }

    /// The user a code, refresh token or access token belongs to, if the fake knows it (for the
    /// journal of a faulted request: nothing is consumed or checked).
    pub(crate) fn sub_of_token(&self, token: &str) -> Option<String> {
        if let Some(c) = self.codes.shard(token).get(token) {
            return Some(c.sub.clone());
        }
        if let Some(r) = self.refresh.shard(token).get(token) {
            return Some(r.sub.clone());
        }
        self.access.shard(token).get(token).map(|a| a.sub.clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn sign_id_token(
        &self,
        sub: &str,
        profile: &Profile,
        aud: &str,
        azp: &str,
        scopes: &[String],
        access_token: Option<&str>,
        nonce: Option<&str>,
        ttl: u64,
    ) -> Result<String, crate::keys::KeyError> {
        let email = scopes.iter().any(|s| s == SCOPE_EMAIL);
        let prof = scopes.iter().any(|s| s == SCOPE_PROFILE);
        let iat = self.now();
        let claims = Claims {
            iss: ISSUER,
            azp,
            aud,
            sub,
            hd: profile.hd.as_deref(),
            email: email.then_some(profile.email.as_str()),
            email_verified: email.then_some(profile.email_verified),
            at_hash: access_token.map(at_hash),
            nonce,
            name: prof.then_some(profile.name.as_deref()).flatten(),
            picture: prof.then_some(profile.picture.as_deref()).flatten(),
            given_name: prof.then_some(profile.given_name.as_deref()).flatten(),
            family_name: prof.then_some(profile.family_name.as_deref()).flatten(),
            locale: prof.then_some(profile.locale.as_deref()).flatten(),
            iat,
            exp: iat.saturating_add(ttl as i64),
        };
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let key = self.keys.current();
        key.sign_jwt(&json)
    }
}

const MAX_TTL: u64 = 10 * 365 * 24 * 3600;

/// OIDC `at_hash`: base64url of the left half of SHA-256 of the access token.
pub(crate) fn at_hash(access_token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A code minted for `""` (Android) is accepted with `""`, no `redirect_uri`, or `postmessage`
/// (what oauth2client sends by default and Google accepts for Android codes); any other must match.
fn redirect_matches(minted: &str, sent: Option<&str>) -> bool {
    match (minted, sent) {
        ("", None | Some("") | Some("postmessage")) => true,
        (m, Some(s)) => m == s,
        (_, None) => false,
    }
}

fn well_formed_code(code: &str) -> bool {
    code.len() > 3
        && code.len() <= 512
        && code.starts_with("4/")
        && code[2..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/'))
}

pub(crate) fn check_opt_len(name: &str, v: Option<&str>) -> Result<(), ControlError> {
    match v {
        Some(s) if s.is_empty() || s.len() > 512 => Err(ControlError(format!(
            "{name} must be between 1 and 512 characters"
        ))),
        _ => Ok(()),
    }
}

/// Validates and defaults a profile.
#[allow(clippy::too_many_arguments)]
pub(crate) fn profile_of(
    email: &str,
    name: Option<&str>,
    given: Option<&str>,
    family: Option<&str>,
    picture: Option<&str>,
    locale: Option<&str>,
    verified: Option<bool>,
    hd: Option<&str>,
) -> Result<Profile, ControlError> {
    if !crate::users::is_email(email) {
        return Err(ControlError(format!(
            "email {email:?} is not an email address"
        )));
    }
    for (n, v) in [
        ("name", name),
        ("given_name", given),
        ("family_name", family),
        ("picture", picture),
        ("locale", locale),
        ("hd", hd),
    ] {
        check_opt_len(n, v)?;
    }
    let local = email.split('@').next().unwrap_or("user");
    let default_given = {
        let mut c = local.chars();
        match c.next() {
            Some(f) => f.to_uppercase().chain(c).collect::<String>(),
            None => "User".to_owned(),
        }
    };
    let given_name = given.map_or(default_given, str::to_owned);
    let family_name = family.map_or_else(|| "Tester".to_owned(), str::to_owned);
    let name = name.map_or_else(|| format!("{given_name} {family_name}"), str::to_owned);
    Ok(Profile {
        email: email.to_owned(),
        email_verified: verified.unwrap_or(true),
        name: Some(name),
        given_name: Some(given_name),
        family_name: Some(family_name),
        picture: Some(picture.map_or_else(
            || "https://lh3.googleusercontent.com/a/default-user=s96-c".to_owned(),
            str::to_owned,
        )),
        locale: Some(locale.unwrap_or("en").to_owned()),
        hd: hd.map(str::to_owned),
    })
}

/// The stable account ID for an email: 21 digits, like Google's.
pub(crate) fn derived_sub(email: &str) -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        email.to_ascii_lowercase().as_bytes(),
    );
    let mut n = [0u8; 8];
    n.copy_from_slice(&d.as_ref()[..8]);
    format!("1{:020}", u64::from_be_bytes(n))
}

pub(crate) fn sub_for(sub: Option<&str>, email: &str) -> Result<String, ControlError> {
    match sub {
        None => Ok(derived_sub(email)),
        Some(s)
            if !s.is_empty()
                && s.len() <= 255
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            Ok(s.to_owned())
        }
        Some(_) => Err(ControlError(
            "sub must be 1 to 255 characters of letters, digits, '-', '_' or '.'".to_owned(),
        )),
    }
}

/// `len` base64url characters of randomness.
pub(crate) fn random_token(len: usize) -> String {
    let mut bytes = vec![0u8; len * 3 / 4 + 1];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    let mut s = URL_SAFE_NO_PAD.encode(&bytes);
    s.truncate(len);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_forgets_expired_codes_and_long_expired_access_tokens() {
        let keys = KeyStore::new().unwrap();
        let inner = Inner::new(
            OAuthClient {
                client_id: "c".into(),
                client_secret: "s".into(),
            },
            keys,
        );
        let minted = inner.mint_code(&CodeRequest::new("a@example.com")).unwrap();
        let mut params = HashMap::new();
        for (k, v) in [
            ("grant_type", "authorization_code"),
            ("code", minted.code.as_str()),
            ("client_id", "c"),
            ("client_secret", "s"),
        ] {
            params.insert(k.to_owned(), v.to_owned());
        }
        let pending = inner.mint_code(&CodeRequest::new("a@example.com")).unwrap();
        let token = inner.token(&params, None, &mut Note::default()).unwrap();
        let now = inner.now();
        inner.sweep(now);
        assert!(inner.access_token(&token.access_token).is_some());
        assert_eq!(inner.codes.len(), 1);
        inner.sweep(now + 3600 + 86_400);
        assert_eq!(inner.codes.len(), 0);
        assert_eq!(inner.access.len(), 0);
        assert!(!pending.code.is_empty());
    }

    #[test]
    fn derived_subs_are_stable_21_digit_numbers() {
        let a = derived_sub("Alice@example.com");
        assert_eq!(a, derived_sub("alice@example.com"));
        assert_eq!(a.len(), 21);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(a, derived_sub("bob@example.com"));
    }

    #[test]
    fn android_codes_accept_empty_missing_or_postmessage_redirects() {
        assert!(redirect_matches("", None));
        assert!(redirect_matches("", Some("")));
        assert!(redirect_matches("", Some("postmessage")));
        assert!(!redirect_matches("", Some("http://x")));
        assert!(redirect_matches("postmessage", Some("postmessage")));
        assert!(!redirect_matches("postmessage", None));
    }

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OpenID Connect Core examples: at_hash of "jHkWEdUXMU1BwAsC4vtUsZwnNsMW..." is not given
        // with its token, so check the shape: 16 bytes -> 22 base64url characters.
        assert_eq!(at_hash("ya29.x").len(), 22);
    }

    #[test]
    fn code_shapes_are_checked() {
        assert!(well_formed_code("4/0abc-_/x"));
        assert!(!well_formed_code("abc"));
        assert!(!well_formed_code("4/"));
        assert!(!well_formed_code("4/ab c"));
    }

    #[test]
    fn random_tokens_have_the_requested_length_and_differ() {
        let a = random_token(100);
        assert_eq!(a.len(), 100);
        assert_ne!(a, random_token(100));
    }
}
