//! Property tests over random sequences of mint / exchange / refresh / revoke / expire, run
//! in-process against the state machine and (for Drive isolation) the router.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;

use crate::Control;
use crate::grants::{SCOPE_APPDATA, SCOPE_EMAIL, SCOPE_PROFILE};
use crate::model::{CodeRequest, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, OAuthClient};
use crate::state::{Note, TokenResponse};

const USERS: usize = 3;

/// The scopes codes request: a non-empty subset, picked by a bit mask.
const POOL: [&str; 5] = [
    "openid",
    SCOPE_EMAIL,
    SCOPE_PROFILE,
    SCOPE_APPDATA,
    "https://www.googleapis.com/auth/drive.file",
];

fn pick(mask: u8) -> Vec<String> {
    POOL.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, s)| (*s).to_owned())
        .collect()
}

type Scopes = BTreeSet<String>;

fn set(scopes: &str) -> Scopes {
    scopes.split(' ').map(str::to_owned).collect()
}

#[derive(Clone, Debug)]
enum Op {
    Mint {
        user: usize,
        consent: bool,
        /// Requested scopes (mask over [`POOL`]).
        requested: u8,
        /// Granular consent (mask over [`POOL`], only requested ones count), if any.
        ticked: Option<u8>,
        include: bool,
    },
    Exchange {
        code: usize,
    },
    Refresh {
        token: usize,
    },
    Revoke {
        token: usize,
    },
    RevokeUser {
        user: usize,
    },
    ExpireUser {
        user: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..USERS, any::<bool>(), 1..32u8, proptest::option::of(0..32u8), any::<bool>())
            .prop_map(|(user, consent, requested, ticked, include)| Op::Mint {
                user, consent, requested, ticked, include,
            }),
        3 => (0..16usize).prop_map(|code| Op::Exchange { code }),
        2 => (0..16usize).prop_map(|token| Op::Refresh { token }),
        1 => (0..32usize).prop_map(|token| Op::Revoke { token }),
        1 => (0..USERS).prop_map(|user| Op::RevokeUser { user }),
        1 => (0..USERS).prop_map(|user| Op::ExpireUser { user }),
    ]
}

fn control() -> Control {
    Control::new(OAuthClient {
        client_id: DEFAULT_CLIENT_ID.to_owned(),
        client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
    })
    .unwrap()
}

fn email(user: usize) -> String {
    format!("user{user}@example.com")
}

fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    m.insert("client_id".into(), DEFAULT_CLIENT_ID.into());
    m.insert("client_secret".into(), DEFAULT_CLIENT_SECRET.into());
    m
}

/// What the model believes about one issued token.
#[derive(Clone, Debug)]
struct ModelToken {
    value: String,
    user: usize,
    refresh: bool,
    generation: u64,
    expired: bool,
    /// An access token's scopes.
    scopes: Scopes,
}

/// A minted code as the model sees it.
#[derive(Clone, Debug)]
struct ModelCode {
    value: String,
    user: usize,
    consent: bool,
    used: bool,
    /// The scopes the user granted with it.
    granted: Scopes,
    include: bool,
}

#[derive(Default)]
struct Model {
    codes: Vec<ModelCode>,
    generation: [u64; USERS],
    has_refresh: [bool; USERS],
    /// Every scope granted (exchanged) since the user's last revocation.
    granted: [Scopes; USERS],
    tokens: Vec<ModelToken>,
}

impl Model {
    fn alive(&self, t: &ModelToken) -> bool {
        t.generation == self.generation[t.user] && !t.expired
    }

    fn revoke_user(&mut self, user: usize) {
        self.generation[user] += 1;
        self.has_refresh[user] = false;
        self.granted[user].clear();
    }

    fn record(&mut self, user: usize, resp: &TokenResponse) {
        self.tokens.push(ModelToken {
            value: resp.access_token.clone(),
            user,
            refresh: false,
            generation: self.generation[user],
            expired: false,
            scopes: set(&resp.scope),
        });
        if let Some(rt) = &resp.refresh_token {
            self.tokens.push(ModelToken {
                value: rt.clone(),
                user,
                refresh: true,
                generation: self.generation[user],
                expired: false,
                scopes: Scopes::new(),
            });
        }
    }
}

fn user_of(sub: &str, subs: &[String]) -> usize {
    subs.iter().position(|s| s == sub).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn codes_refresh_tokens_and_revocations_follow_the_rules(ops in proptest::collection::vec(op(), 1..40)) {
        let c = control();
        let inner = &c.inner;
        let subs: Vec<String> = (0..USERS).map(|u| crate::state::derived_sub(&email(u))).collect();
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Mint { user, consent, requested, ticked, include } => {
                    let mut req = CodeRequest::new(email(user)).scopes(pick(requested));
                    if consent { req = req.consent(); }
                    if include { req = req.include_granted_scopes(); }
                    if let Some(t) = ticked { req = req.granted_scopes(pick(t & requested)); }
                    // Sign-in scopes (the first three) cannot be unticked.
                    let granted: Scopes = pick(ticked.map_or(requested, |t| requested & (t | 0b111)))
                        .into_iter().collect();
                    let result = inner.mint_code(&req);
                    prop_assert_eq!(result.is_ok(), !granted.is_empty());
                    if let Ok(minted) = result {
                        m.codes.push(ModelCode {
                            value: minted.code, user, consent, used: false, granted, include,
                        });
                    }
                }
                Op::Exchange { code } => {
                    let Some(c) = m.codes.get(code).cloned() else { continue };
                    let result = inner.token(
                        &form(&[("grant_type", "authorization_code"), ("code", &c.value)]),
                        None,
                        &mut Note::default(),
                    );
                    // A code is accepted at most once.
                    prop_assert_eq!(result.is_ok(), !c.used);
                    m.codes[code].used = true;
                    if let Ok(resp) = result {
                        let user = c.user;
                        // A refresh token only on the first grant, unless revoked since or forced.
                        let expect_refresh = !m.has_refresh[user] || c.consent;
                        prop_assert_eq!(resp.refresh_token.is_some(), expect_refresh);
                        m.has_refresh[user] = true;
                        // The code's scopes, joined with the earlier ones when asked to.
                        let mut expect = c.granted.clone();
                        if c.include {
                            expect.extend(m.granted[user].iter().cloned());
                        }
                        prop_assert_eq!(set(&resp.scope), expect);
                        m.granted[user].extend(c.granted.iter().cloned());
                        m.record(user, &resp);
                    }
                }
                Op::Refresh { token } => {
                    let refresh: Vec<ModelToken> = m.tokens.iter().filter(|t| t.refresh).cloned().collect();
                    let Some(t) = refresh.get(token) else { continue };
                    let result = inner.token(
                        &form(&[("grant_type", "refresh_token"), ("refresh_token", &t.value)]),
                        None,
                        &mut Note::default(),
                    );
                    prop_assert_eq!(result.is_ok(), m.alive(t));
                    if let Ok(resp) = result {
                        prop_assert!(resp.refresh_token.is_none());
                        // Everything granted since the last revocation, whatever this refresh
                        // token was issued with.
                        prop_assert_eq!(set(&resp.scope), m.granted[t.user].clone());
                        m.record(t.user, &resp);
                    } else {
                        prop_assert_eq!(result.err().map(|e| e.error), Some("invalid_grant"));
                    }
                }
                Op::Revoke { token } => {
                    let Some(t) = m.tokens.get(token).cloned() else { continue };
                    let result = inner.revoke(&t.value);
                    prop_assert_eq!(result.is_ok(), m.alive(&t));
                    if result.is_ok() {
                        prop_assert_eq!(user_of(&result.unwrap_or_default(), &subs), t.user);
                        m.revoke_user(t.user);
                    }
                }
                Op::RevokeUser { user } => {
                    if inner.revoke_user(&subs[user]) {
                        m.revoke_user(user);
                    }
                }
                Op::ExpireUser { user } => {
                    if inner.expire_user(&subs[user]) {
                        for t in m.tokens.iter_mut().filter(|t| t.user == user && !t.refresh) {
                            t.expired = true;
                        }
                    }
                }
            }
            // The control API shows the model's scope set for every known user.
            for (user, sub) in subs.iter().enumerate() {
                if let Some(grants) = inner.grants(sub) {
                    let shown: Scopes = grants.iter().flat_map(|g| g.scopes.iter().cloned()).collect();
                    prop_assert_eq!(&shown, &m.granted[user]);
                }
            }
            // Nothing revoked or expired ever works again; everything alive works.
            for t in m.tokens.iter().filter(|t| !t.refresh) {
                let live = inner.access_token(&t.value);
                prop_assert_eq!(live.is_some(), m.alive(t), "access token of user {}", t.user);
                if let Some(rec) = live {
                    prop_assert_eq!(&rec.sub, &subs[t.user]);
                    // An access token carries exactly the scopes its response listed.
                    prop_assert_eq!(rec.scopes.iter().cloned().collect::<Scopes>(), t.scopes.clone());
                }
            }
        }
    }
}

/// Drive isolation: files created by one user are never listed for, nor readable by, another.
mod drive_isolation {
    use axum::body::Body;
    use http::Request;
    use proptest::prelude::*;
    use tower::ServiceExt as _;

    use super::*;

    async fn call(app: &axum::Router, req: Request<Body>) -> (u16, serde_json::Value) {
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

        #[test]
        fn one_users_drive_files_are_never_visible_to_another(
            creates in proptest::collection::vec((0..USERS, "[a-z]{1,8}"), 1..8)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let c = control();
                let app = crate::router(&c);
                let mut tokens = Vec::new();
                for u in 0..USERS {
                    let minted = c.inner.mint_code(&CodeRequest::new(email(u))).unwrap();
                    let resp = c.inner.token(
                        &form(&[("grant_type", "authorization_code"), ("code", &minted.code)]),
                        None,
                        &mut Note::default(),
                    ).unwrap();
                    tokens.push(resp.access_token);
                }
                let mut owned: Vec<(usize, String)> = Vec::new();
                for (u, name) in &creates {
                    let req = Request::post("/drive/v3/files")
                        .header("authorization", format!("Bearer {}", tokens[*u]))
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::json!({"name": name, "parents": ["appDataFolder"]}).to_string()))
                        .unwrap();
                    let (status, body) = call(&app, req).await;
                    assert_eq!(status, 200, "{body}");
                    owned.push((*u, body["id"].as_str().unwrap().to_owned()));
                }
                for (u, token) in tokens.iter().enumerate() {
                    let req = Request::get("/drive/v3/files?spaces=appDataFolder&fields=files(id,name)")
                        .header("authorization", format!("Bearer {token}"))
                        .body(Body::empty())
                        .unwrap();
                    let (status, body) = call(&app, req).await;
                    assert_eq!(status, 200, "{body}");
                    let mut listed: Vec<String> = body["files"].as_array().unwrap().iter()
                        .map(|f| f["id"].as_str().unwrap().to_owned()).collect();
                    let mut mine: Vec<String> = owned.iter().filter(|(o, _)| *o == u).map(|(_, id)| id.clone()).collect();
                    listed.sort();
                    mine.sort();
                    assert_eq!(listed, mine);
                    for (owner, id) in owned.iter().filter(|(o, _)| *o != u) {
                        let req = Request::get(format!("/drive/v3/files/{id}"))
                            .header("authorization", format!("Bearer {token}"))
                            .body(Body::empty())
                            .unwrap();
                        let (status, _) = call(&app, req).await;
                        assert_eq!(status, 404, "user {u} read a file of user {owner}");
                    }
                }
            });
        }
    }
}
