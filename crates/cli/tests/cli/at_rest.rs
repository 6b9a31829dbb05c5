//! Issue 5, case 20: at rest, after real sign-ins through `serve`. The store holds only ciphertext of every token,
//! two users' ciphertexts swapped fail to decrypt (and `users list` says the store is corrupt rather than showing
//! either), and credential files are mode 0600 in 0700 directories.

use std::path::Path;
use std::sync::Arc;

use fake_google::{CodeRequest, FakeGoogle};
use offline_access_crypto::KeyRing;
use offline_access_domain::{CredentialStore, StoreError, Subject};
use offline_access_store_file::FileStore;
use offline_access_store_postgres::{PgOptions, PgStore};

use crate::crash::{database_url, drop_schema, psql, unique_schema};
use crate::support::{Cli, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_holds_only_ciphertext_in_0600_files_and_swapped_ciphertexts_fail_to_decrypt()
 {
    let (cli, keys, users) = sign_in_two_users(&[("STORE__PATH", "store".to_owned())]).await;
    let root = cli.dir().join("store");
    let store = FileStore::open(root.clone(), keys).unwrap();
    let secrets = plaintexts(&store, &users).await;

    // Only ciphertext on disk, private modes.
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("credentials")), 0o700);
    let mut files = Vec::new();
    let mut all = Vec::new();
    for entry in std::fs::read_dir(root.join("credentials")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        all.extend(std::fs::read(&path).unwrap());
        files.push(path);
    }
    assert_eq!(files.len(), 2);
    for secret in &secrets {
        assert!(!contains(&all, secret), "a token is stored in plaintext");
    }
    for path in &files {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert!(
            record["refresh_token"]
                .as_str()
                .unwrap()
                .starts_with("v1.k1.")
        );
        assert!(
            record["access"]["token"]
                .as_str()
                .unwrap()
                .starts_with("v1.k1.")
        );
    }

    // Swap the two users' sealed refresh tokens.
    let [a, b] = [&files[0], &files[1]]
        .map(|p| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap());
    for (path, mine, theirs) in [(&files[0], &a, &b), (&files[1], &b, &a)] {
        let mut swapped = mine.clone();
        swapped["refresh_token"] = theirs["refresh_token"].clone();
        std::fs::write(path, serde_json::to_vec(&swapped).unwrap()).unwrap();
    }
    for sub in &users {
        let got = store.get(&Subject::parse(sub).unwrap()).await;
        assert!(
            matches!(got, Err(StoreError::Corrupt { .. })),
            "{sub}: {got:?}"
        );
    }
    let out = cli.run(&["users", "list"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[cfg_attr(
    no_postgres,
    ignore = "no PostgreSQL: set DATABASE_URL or install PostgreSQL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_hold_only_ciphertext_and_swapped_ciphertexts_fail_to_decrypt() {
    let url = database_url();
    let schema = unique_schema("at_rest");
    let (cli, keys, users) = sign_in_two_users(&[
        ("STORE__KIND", "postgres".to_owned()),
        ("STORE__URL", url.clone()),
        ("STORE__SCHEMA", schema.clone()),
    ])
    .await;
    let store = PgStore::connect(
        &url,
        keys,
        PgOptions {
            schema: Some(schema.clone()),
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    let secrets = plaintexts(&store, &users).await;

    // Every column of every row, as text: no token in clear; the token columns sealed.
    let rows = psql(&url, &format!("SELECT c::text FROM {schema}.credentials c"));
    for secret in &secrets {
        assert!(
            !rows.contains(secret.as_str()),
            "a token is stored in plaintext"
        );
    }
    let sealed = psql(
        &url,
        &format!("SELECT refresh_token, access_token FROM {schema}.credentials"),
    );
    assert_eq!(sealed.lines().count(), 2);
    for line in sealed.lines() {
        for value in line.split('|') {
            assert!(value.starts_with("v1.k1."), "{line}");
        }
    }

    // Swap the two users' sealed refresh tokens.
    psql(
        &url,
        &format!(
            "UPDATE {schema}.credentials c SET refresh_token = o.refresh_token \
             FROM {schema}.credentials o WHERE o.subject <> c.subject"
        ),
    );
    for sub in &users {
        let got = store.get(&Subject::parse(sub).unwrap()).await;
        assert!(
            matches!(got, Err(StoreError::Corrupt { .. })),
            "{sub}: {got:?}"
        );
    }
    let out = cli.run(&["users", "list"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    store.close();
    drop_schema(&url, &schema);
}

/// Serves on `store` with a fixed key, signs two users in through `/authcode`, stops the server. The CLI (same
/// environment), the key ring and the two subjects.
async fn sign_in_two_users(store: &[(&str, String)]) -> (Cli, Arc<KeyRing>, Vec<String>) {
    let fake = FakeGoogle::start().await.unwrap();
    let key = KeyRing::generate_entry("k1").unwrap();
    let mut cli = Cli::new();
    cli.write("client_secret.json", &fake.client_secret_json().to_string());
    cli.env("GOOGLE__CLIENT_SECRET_FILE", "client_secret.json")
        .env("GOOGLE__BASE_URL", &fake.base_url())
        .env("SECURITY__ENCRYPTION_KEYS", &key)
        .env("LISTEN", "127.0.0.1:0");
    for (name, value) in store {
        cli.env(name, value);
    }
    let server = cli.spawn_server(&["serve"], "serve.log").await;
    let mut users = Vec::new();
    for email in ["ada@example.com", "grace@example.com"] {
        let minted = fake.mint_code(CodeRequest::new(email)).await.unwrap();
        let answer = http()
            .post(format!("{}/authcode", server.base))
            .header("X-Requested-With", "test")
            .form(&[("authCode", minted.code.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        users.push(minted.sub);
    }
    assert_eq!(server.terminate().await, 0);
    (cli, Arc::new(KeyRing::parse(&key).unwrap()), users)
}

/// The plaintext refresh and access tokens of `users`, read through the store (so they decrypt).
async fn plaintexts(store: &dyn CredentialStore, users: &[String]) -> Vec<String> {
    let mut secrets = Vec::new();
    for sub in users {
        let credential = store
            .get(&Subject::parse(sub).unwrap())
            .await
            .unwrap()
            .unwrap();
        secrets.push(credential.refresh_token.unwrap().expose_secret().to_owned());
        secrets.push(credential.access.unwrap().token.expose_secret().to_owned());
    }
    assert!(secrets.iter().all(|s| s.len() >= 8));
    secrets
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
