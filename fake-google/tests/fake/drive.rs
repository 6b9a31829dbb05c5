//! Drive v3 over real HTTP with tokens from a real code exchange (the router's own tests cover
//! each operation in detail; these prove the wiring: tokens, scopes, revocation, absolute
//! resumable URLs on the real port).

use serde_json::{Value, json};

use crate::helpers::{Ctx, spawn, split};

async fn access_token(ctx: &Ctx, email: &str) -> (String, String) {
    let minted = ctx.mint(email).await;
    let tokens = ctx.exchange_ok(&minted.code).await;
    (
        tokens["access_token"].as_str().unwrap().to_owned(),
        minted.sub,
    )
}

#[tokio::test]
async fn a_resumable_upload_and_a_ranged_download_work_over_http_with_an_exchanged_token() {
    let ctx = spawn().await;
    let (token, _) = access_token(&ctx, "drive-user@example.com").await;

    let folder = ctx
        .http
        .get(ctx.url("/drive/v3/files/appDataFolder?fields=id,name,mimeType"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, folder) = split(folder).await;
    assert_eq!(status, 200, "{folder}");
    assert_eq!(folder["mimeType"], "application/vnd.google-apps.folder");

    let start = ctx
        .http
        .post(ctx.url("/upload/drive/v3/files?uploadType=resumable&fields=id,name,size"))
        .bearer_auth(&token)
        .header("x-upload-content-type", "text/plain")
        .json(&json!({"name": "journal.txt", "parents": ["appDataFolder"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status().as_u16(), 200);
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/upload/drive/v3/files?", ctx.fake.base_url())),
        "{location}"
    );

    let chunk = ctx
        .http
        .put(&location)
        .header("content-range", "bytes 0-4/11")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(chunk.status().as_u16(), 308);
    assert_eq!(chunk.headers()["range"], "bytes=0-4");
    let done = ctx
        .http
        .put(&location)
        .bearer_auth(&token)
        .header("content-range", "bytes 5-10/11")
        .body(" world")
        .send()
        .await
        .unwrap();
    let (status, file) = split(done).await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["size"], "11");
    let id = file["id"].as_str().unwrap();

    let part = ctx
        .http
        .get(ctx.url(&format!("/drive/v3/files/{id}?alt=media")))
        .bearer_auth(&token)
        .header("range", "bytes=6-")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 6-10/11");
    assert_eq!(part.text().await.unwrap(), "world");

    let listed = ctx
        .http
        .get(ctx.url("/drive/v3/files?spaces=appDataFolder&fields=files(id,name)"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (_, listed) = split(listed).await;
    assert_eq!(
        listed,
        json!({"files": [{"id": id, "name": "journal.txt"}]})
    );
}

#[tokio::test]
async fn drive_refuses_revoked_tokens_and_keeps_users_apart() {
    let ctx = spawn().await;
    let (alice, alice_sub) = access_token(&ctx, "alice-drive@example.com").await;
    let (bob, _) = access_token(&ctx, "bob-drive@example.com").await;
    let created = ctx
        .http
        .post(ctx.url("/drive/v3/files"))
        .bearer_auth(&alice)
        .json(&json!({"name": "a", "parents": ["appDataFolder"]}))
        .send()
        .await
        .unwrap();
    let (status, created) = split(created).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();

    let get = |token: String| {
        let request = ctx
            .http
            .get(ctx.url(&format!("/drive/v3/files/{id}")))
            .bearer_auth(token);
        async move { split(request.send().await.unwrap()).await }
    };
    let (status, body) = get(bob.clone()).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["errors"][0]["reason"], "notFound");

    assert!(ctx.fake.revoke_user(&alice_sub).await);
    let (status, body): (u16, Value) = get(alice.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["errors"][0]["reason"], "authError");
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
}
