//! The grant model: one scope set per user and client that grows until revoked,
//! `include_granted_scopes`, granular consent, refreshes answering the union, whole-grant
//! revocation, `GET /_fake/users/{sub}/grants`, and the journal of faulted token requests.

use std::collections::BTreeSet;

use fake_google::{CodeRequest, Endpoint, Fault, GrantInfo};
use serde_json::{Value, json};

use crate::helpers::{Ctx, s, spawn, split};

const EMAIL: &str = "https://www.googleapis.com/auth/userinfo.email";
const PROFILE: &str = "https://www.googleapis.com/auth/userinfo.profile";
const APPDATA: &str = "https://www.googleapis.com/auth/drive.appdata";
const FILE: &str = "https://www.googleapis.com/auth/drive.file";

/// A token response's `scope` as a set.
fn scopes(body: &Value) -> BTreeSet<String> {
    s(&body["scope"]).split(' ').map(str::to_owned).collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl Ctx {
    async fn mint_with(&self, req: CodeRequest) -> (String, String) {
        let minted = self.fake.mint_code(req).await.unwrap();
        (minted.code, minted.sub)
    }

    /// The scopes tokeninfo reports for an access token.
    async fn tokeninfo_scopes(&self, access: &str) -> BTreeSet<String> {
        let (status, info) = self.get_bearer("/oauth2/v3/tokeninfo", access).await;
        assert_eq!(status, 200, "{info}");
        s(&info["scope"]).split(' ').map(str::to_owned).collect()
    }

    /// The status Drive answers `files.get('appDataFolder')` with.
    async fn appfolder_status(&self, access: &str) -> u16 {
        self.get_bearer("/drive/v3/files/appDataFolder", access)
            .await
            .0
    }

    async fn grants_http(&self, sub: &str) -> (u16, Value) {
        split(
            self.http
                .get(self.url(&format!("/_fake/users/{sub}/grants")))
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn include_granted_scopes_joins_the_earlier_scopes_in_the_token_response() {
    let ctx = spawn().await;
    let (code, sub) = ctx
        .mint_with(CodeRequest::new("inc@example.com").scopes(["openid", "email", APPDATA]))
        .await;
    let first = ctx.exchange_ok(&code).await;
    assert_eq!(scopes(&first), set(&["openid", EMAIL, APPDATA]));

    let (code, _) = ctx
        .mint_with(
            CodeRequest::new("inc@example.com")
                .scopes(["openid", FILE])
                .include_granted_scopes(),
        )
        .await;
    let second = ctx.exchange_ok(&code).await;
    let union = set(&["openid", EMAIL, APPDATA, FILE]);
    assert_eq!(scopes(&second), union);
    assert!(second.get("refresh_token").is_none(), "{second}");
    // The access token carries exactly those scopes: Drive's appDataFolder works with it.
    let access = s(&second["access_token"]);
    assert_eq!(ctx.tokeninfo_scopes(access).await, union);
    assert_eq!(ctx.appfolder_status(access).await, 200);
    // The ID token shows the email claim the earlier grant allowed.
    let (status, info) = split(
        ctx.http
            .get(ctx.url("/oauth2/v3/tokeninfo"))
            .query(&[("id_token", s(&second["id_token"]))])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["email"], "inc@example.com");

    let grants = ctx.fake.grants(&sub).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].client_id, ctx.fake.client_id());
    assert_eq!(
        grants[0].scopes,
        vec!["openid", EMAIL, APPDATA, FILE],
        "first granted first"
    );
    assert!(grants[0].has_refresh_token);
}

#[tokio::test]
async fn include_granted_scopes_only_joins_the_same_clients_grant() {
    let ctx = spawn().await;
    let (code, sub) = ctx
        .mint_with(CodeRequest::new("two@example.com").scopes(["openid", APPDATA]))
        .await;
    ctx.exchange_ok(&code).await;
    let other = ctx.fake.add_client().await;
    let (code, _) = ctx
        .mint_with(CodeRequest {
            client_id: Some(other.client_id.clone()),
            ..CodeRequest::new("two@example.com")
                .scopes(["openid", "email"])
                .include_granted_scopes()
        })
        .await;
    let (status, body) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &other.client_id),
                ("client_secret", &other.client_secret),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(scopes(&body), set(&["openid", EMAIL]));
    let mut grants = ctx.fake.grants(&sub).await.unwrap();
    grants.sort_by_key(|g| g.client_id != ctx.fake.client_id());
    assert_eq!(grants[0].scopes, vec!["openid", APPDATA]);
    assert_eq!(grants[1].scopes, vec!["openid", EMAIL]);
}

#[tokio::test]
async fn granted_scopes_narrow_what_the_code_grants_but_keep_sign_in_scopes() {
    let ctx = spawn().await;
    let (status, minted) = split(
        ctx.http
            .post(ctx.url("/_fake/codes"))
            .json(&json!({
                "email": "granular@example.com",
                "scopes": format!("openid email profile {APPDATA} {FILE}"),
                "granted_scopes": [FILE],
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let body = ctx.exchange_ok(s(&minted["code"])).await;
    let granted = set(&["openid", EMAIL, PROFILE, FILE]);
    assert_eq!(scopes(&body), granted);
    let access = s(&body["access_token"]);
    assert_eq!(ctx.tokeninfo_scopes(access).await, granted);
    // drive.appdata was unticked: Drive refuses the appDataFolder.
    let (status, err) = ctx
        .get_bearer("/drive/v3/files/appDataFolder", access)
        .await;
    assert_eq!(status, 403, "{err}");
    // The refresh token covers only what was granted.
    let (status, refreshed) = ctx.refresh(s(&body["refresh_token"])).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(scopes(&refreshed), granted);

    let (status, grants) = ctx.grants_http(s(&minted["sub"])).await;
    assert_eq!(status, 200);
    assert_eq!(
        grants,
        json!({"grants": [{
            "client_id": ctx.fake.client_id(),
            "scopes": ["openid", EMAIL, PROFILE, FILE],
            "has_refresh_token": true,
        }]})
    );
}

#[tokio::test]
async fn a_narrower_later_code_answers_its_scopes_but_a_refresh_answers_the_union() {
    let ctx = spawn().await;
    let (code, _) = ctx
        .mint_with(CodeRequest::new("narrow@example.com").scopes(["openid", APPDATA]))
        .await;
    let first = ctx.exchange_ok(&code).await;
    let refresh = s(&first["refresh_token"]).to_owned();

    let (code, _) = ctx
        .mint_with(CodeRequest::new("narrow@example.com").scopes(["openid", "email"]))
        .await;
    let second = ctx.exchange_ok(&code).await;
    assert_eq!(scopes(&second), set(&["openid", EMAIL]));
    assert!(second.get("refresh_token").is_none());
    assert_eq!(
        ctx.appfolder_status(s(&second["access_token"])).await,
        403,
        "the narrower access token lacks drive.appdata"
    );

    // The first refresh token now answers everything granted so far.
    let (status, refreshed) = ctx.refresh(&refresh).await;
    assert_eq!(status, 200, "{refreshed}");
    let union = set(&["openid", APPDATA, EMAIL]);
    assert_eq!(scopes(&refreshed), union);
    let access = s(&refreshed["access_token"]);
    assert_eq!(ctx.tokeninfo_scopes(access).await, union);
    assert_eq!(ctx.appfolder_status(access).await, 200);
    let (status, info) = ctx.get_bearer("/oauth2/v3/userinfo", access).await;
    assert_eq!(status, 200);
    assert_eq!(
        info["email"], "narrow@example.com",
        "email joined the grant"
    );
}

#[tokio::test]
async fn revoking_an_access_token_kills_the_whole_grant_and_empties_its_scopes() {
    let ctx = spawn().await;
    let (code, sub) = ctx
        .mint_with(CodeRequest::new("rva@example.com").scopes(["openid", APPDATA]))
        .await;
    let first = ctx.exchange_ok(&code).await;
    let (code, _) = ctx
        .mint_with(CodeRequest::new("rva@example.com").scopes(["openid", FILE]))
        .await;
    let second = ctx.exchange_ok(&code).await;
    // Another client's grant of the same user is not touched.
    let other = ctx.fake.add_client().await;
    let (code, _) = ctx
        .mint_with(CodeRequest {
            client_id: Some(other.client_id.clone()),
            ..CodeRequest::new("rva@example.com")
        })
        .await;
    let (status, other_tokens) = ctx
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &other.client_id),
                ("client_secret", &other.client_secret),
            ],
        )
        .await;
    assert_eq!(status, 200);

    let (status, _) = ctx
        .post_form("/revoke", &[("token", s(&second["access_token"]))])
        .await;
    assert_eq!(status, 200);
    let (status, body) = ctx.refresh(s(&first["refresh_token"])).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        ctx.get_bearer("/oauth2/v3/userinfo", s(&first["access_token"]))
            .await
            .0,
        401,
        "an access token of an earlier exchange died too"
    );
    assert_eq!(
        ctx.get_bearer("/oauth2/v3/userinfo", s(&other_tokens["access_token"]))
            .await
            .0,
        200
    );

    let grants = ctx.fake.grants(&sub).await.unwrap();
    let mine: Vec<&GrantInfo> = grants
        .iter()
        .filter(|g| g.client_id == ctx.fake.client_id())
        .collect();
    assert_eq!(
        mine,
        vec![&GrantInfo {
            client_id: ctx.fake.client_id(),
            scopes: vec![],
            has_refresh_token: false,
        }]
    );
    // A new consent starts from nothing, with a refresh token again, even with include_granted_scopes.
    let (code, _) = ctx
        .mint_with(
            CodeRequest::new("rva@example.com")
                .scopes(["openid"])
                .include_granted_scopes(),
        )
        .await;
    let again = ctx.exchange_ok(&code).await;
    assert_eq!(scopes(&again), set(&["openid"]));
    assert!(again.get("refresh_token").is_some());
}

#[tokio::test]
async fn revoking_a_refresh_token_kills_every_access_token_of_the_grant() {
    let ctx = spawn().await;
    let (code, sub) = ctx.mint_with(CodeRequest::new("rvr@example.com")).await;
    let first = ctx.exchange_ok(&code).await;
    let refresh = s(&first["refresh_token"]).to_owned();
    let (_, refreshed) = ctx.refresh(&refresh).await;
    let (code, _) = ctx.mint_with(CodeRequest::new("rvr@example.com")).await;
    let later = ctx.exchange_ok(&code).await;
    let access: Vec<String> = [&first, &refreshed, &later]
        .iter()
        .map(|b| s(&b["access_token"]).to_owned())
        .collect();
    for a in &access {
        assert_eq!(ctx.appfolder_status(a).await, 200);
    }

    let (status, _) = ctx.post_form("/revoke", &[("token", &refresh)]).await;
    assert_eq!(status, 200);
    for a in &access {
        assert_eq!(ctx.appfolder_status(a).await, 401);
        assert_eq!(ctx.get_bearer("/oauth2/v3/tokeninfo", a).await.0, 400);
    }
    assert_eq!(ctx.refresh(&refresh).await.0, 400);
    assert!(
        ctx.fake.grants(&sub).await.unwrap()[0].scopes.is_empty(),
        "the scope set was reset"
    );
    // Revoking again, by either kind of token, finds nothing alive.
    assert_eq!(
        ctx.post_form("/revoke", &[("token", &access[2])]).await.0,
        400
    );
}

#[tokio::test]
async fn the_user_level_revoke_empties_every_grant() {
    let ctx = spawn().await;
    let (code, sub) = ctx.mint_with(CodeRequest::new("all@example.com")).await;
    ctx.exchange_ok(&code).await;
    assert_eq!(ctx.fake.grants(&sub).await.unwrap()[0].scopes.len(), 4);
    assert!(ctx.fake.revoke_user(&sub).await);
    let (status, body) = ctx.grants_http(&sub).await;
    assert_eq!(status, 200);
    assert_eq!(body["grants"][0]["scopes"], json!([]));
    assert_eq!(body["grants"][0]["has_refresh_token"], false);
}

#[tokio::test]
async fn grants_of_an_unknown_user_are_404_and_of_a_user_without_consent_empty() {
    let ctx = spawn().await;
    let (status, body) = ctx.grants_http("100000000000000000000").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    assert_eq!(ctx.fake.grants("100000000000000000000").await, None);
    // Minting alone grants nothing: scopes join the grant when the code is exchanged.
    let (_, sub) = ctx.mint_with(CodeRequest::new("pending@example.com")).await;
    let (status, body) = ctx.grants_http(&sub).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"grants": []}));
    assert_eq!(ctx.fake.grants(&sub).await, Some(vec![]));
}

#[tokio::test]
async fn bad_granted_scopes_get_400_with_a_message() {
    let ctx = spawn().await;
    for (body, needle) in [
        (
            json!({"email": "bad@example.com", "scopes": ["openid", APPDATA], "granted_scopes": [FILE]}),
            "subset",
        ),
        (
            json!({"email": "bad@example.com", "granted_scopes": ["has space"]}),
            "not a valid scope",
        ),
        (
            json!({"email": "bad@example.com", "scopes": [APPDATA], "granted_scopes": []}),
            "no scope",
        ),
        (
            json!({"email": "bad@example.com", "granted_scopes": 7}),
            "granted_scopes",
        ),
        (
            json!({"email": "bad@example.com", "include_granted_scopes": "yes"}),
            "expected a boolean",
        ),
    ] {
        let (status, resp) = split(
            ctx.http
                .post(ctx.url("/_fake/codes"))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert_eq!(resp["error"], "bad_request");
        assert!(s(&resp["message"]).contains(needle), "{body} -> {resp}");
    }
    let typed = ctx
        .fake
        .mint_code(
            CodeRequest::new("bad@example.com")
                .scopes(["openid"])
                .granted_scopes([APPDATA]),
        )
        .await
        .unwrap_err();
    assert!(typed.0.contains("was not requested"), "{typed}");
}

#[tokio::test]
async fn faulted_token_requests_are_journaled_with_grant_type_and_sub() {
    let ctx = spawn().await;
    let (code, sub) = ctx.mint_with(CodeRequest::new("jf@example.com")).await;
    ctx.fake
        .add_fault(Fault::status(Endpoint::Token, 503))
        .await
        .unwrap();
    assert_eq!(ctx.exchange(&code).await.0, 503);
    let body = ctx.exchange_ok(&code).await;
    let refresh = s(&body["refresh_token"]).to_owned();
    ctx.fake
        .add_fault(Fault::malformed_json(Endpoint::Token))
        .await
        .unwrap();
    assert_eq!(ctx.refresh(&refresh).await.0, 200);
    ctx.fake
        .add_fault(Fault::drop_connection(Endpoint::Token))
        .await
        .unwrap();
    let id = ctx.fake.client_id();
    let secret = ctx.fake.client_secret();
    let dropped = ctx
        .http
        .post(ctx.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .send()
        .await;
    assert!(dropped.is_err());
    // An unknown code: the grant type, but no user.
    ctx.fake
        .add_fault(Fault::status(Endpoint::Token, 500))
        .await
        .unwrap();
    assert_eq!(ctx.exchange("4/0unknown").await.0, 500);
    // A JSON body is read too.
    ctx.fake
        .add_fault(Fault::status(Endpoint::Token, 500))
        .await
        .unwrap();
    let (status, _) = split(
        ctx.http
            .post(ctx.url("/token"))
            .json(&json!({"grant_type": "refresh_token", "refresh_token": refresh}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 500);
    ctx.fake
        .add_fault(Fault::status(Endpoint::Revoke, 503))
        .await
        .unwrap();
    assert_eq!(
        ctx.post_form("/revoke", &[("token", &refresh)]).await.0,
        503
    );

    let journal = ctx.fake.requests().await;
    /// (fault, grant_type, sub, status) of one journal entry.
    type Seen<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, u16);
    let seen: Vec<Seen<'_>> = journal
        .iter()
        .map(|e| {
            (
                e.fault.as_deref(),
                e.grant_type.as_deref(),
                e.sub.as_deref(),
                e.status,
            )
        })
        .collect();
    let sub = Some(sub.as_str());
    assert_eq!(
        seen,
        vec![
            (Some("status"), Some("authorization_code"), sub, 503),
            (None, Some("authorization_code"), sub, 200),
            (Some("malformed_json"), Some("refresh_token"), sub, 200),
            (Some("drop_connection"), Some("refresh_token"), sub, 0),
            (Some("status"), Some("authorization_code"), None, 500),
            (Some("status"), Some("refresh_token"), sub, 500),
            (Some("status"), None, sub, 503),
        ]
    );
    // The faulted requests consumed nothing: the refresh token still works.
    assert_eq!(ctx.refresh(&refresh).await.0, 200);
}
