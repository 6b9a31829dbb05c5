//! The measurements: sign-ins, Drive proxy calls, the refresh stampede, the memory footprint and Drive content
//! downloads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use offline_access_crypto::KeyRing;
use offline_access_domain::{
    AccessToken, CachedAccess, ConsentState, Credential, CredentialStore, Email, Profile,
    RefreshToken, Scopes, Subject,
};
use offline_access_store_file::FileStore;
use offline_access_store_postgres::{PgOptions, PgStore};
use time::OffsetDateTime;

use crate::fake::Fake;
use crate::load::{self, Load};
use crate::procs::{self, Bins, Layout, Proc, ServerEnv, StoreSpec};
use crate::{Plan, Res};

/// Everything the scenarios share: the binaries, the running fake, a client, a scratch directory.
pub(crate) struct Ctx {
    pub(crate) bins: Bins,
    pub(crate) plan: Plan,
    pub(crate) fake_proc: Proc,
    pub(crate) fake: Fake,
    pub(crate) env: ServerEnv,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) http: reqwest::Client,
    pub(crate) dir: tempfile::TempDir,
    /// Where the processes run.
    pub(crate) layout: Layout,
    /// The Postgres URL when Postgres parts run.
    pub(crate) pg: Option<String>,
    schemas: Vec<String>,
    seq: usize,
}

/// A loopback HTTP/1.1 client that never uses a proxy and keeps up to 1,024 idle connections per host.
pub(crate) fn client() -> Res<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?)
}

impl Ctx {
    /// Pins this process for `layout`, starts the fake and prepares the server's environment.
    pub(crate) async fn start(
        bins: Bins,
        plan: Plan,
        pg: Option<String>,
        layout: Layout,
    ) -> Res<Ctx> {
        layout.pin_self()?;
        let dir = tempfile::Builder::new()
            .prefix("offline-access-bench-")
            .tempdir()?;
        let http = client()?;
        let fake_proc = procs::start_fake(&bins, dir.path(), layout).await?;
        let fake = Fake::connect(&fake_proc.url, http.clone()).await?;
        let client_secret_file = dir.path().join("client_secret.json");
        std::fs::write(&client_secret_file, &fake.client_secret_json)?;
        let entry = KeyRing::generate_entry("bench")?;
        let keys = Arc::new(KeyRing::parse(&entry)?);
        let env = ServerEnv {
            fake_url: fake.url.clone(),
            client_secret_file,
            keys: entry.to_string(),
            dir: dir.path().to_path_buf(),
        };
        Ok(Ctx {
            bins,
            plan,
            fake_proc,
            fake,
            env,
            keys,
            http,
            dir,
            layout,
            pg,
            schemas: Vec::new(),
            seq: 0,
        })
    }

    fn next(&mut self) -> usize {
        self.seq += 1;
        self.seq
    }

    /// A fresh file-store directory.
    pub(crate) fn file_store(&mut self) -> Res<StoreSpec> {
        let n = self.next();
        let path = self.dir.path().join(format!("store-{n}"));
        std::fs::create_dir_all(&path)?;
        Ok(StoreSpec::File(path))
    }

    /// A fresh Postgres schema (dropped at the end), when Postgres runs.
    pub(crate) fn pg_store(&mut self) -> Option<StoreSpec> {
        let url = self.pg.clone()?;
        let schema = format!("oa_bench_{}_{}", std::process::id(), self.next());
        self.schemas.push(schema.clone());
        Some(StoreSpec::Postgres { url, schema })
    }

    /// Starts one `offline-access serve` on `store` and waits until `/readyz` is 200.
    pub(crate) async fn server(&mut self, store: &StoreSpec) -> Res<Proc> {
        let name = format!("server-{}", self.next());
        let proc = procs::start_server(&self.bins, &self.env, store, &name, self.layout).await?;
        procs::wait_ready(&self.http, &proc.url).await?;
        Ok(proc)
    }

    /// Drops the Postgres schemas this run created and stops the fake; returns the scratch directory (removing
    /// 100k stored users takes a while: drop it after the report is out).
    pub(crate) async fn finish(self) -> tempfile::TempDir {
        if let Some(url) = &self.pg
            && !self.schemas.is_empty()
            && let Ok((client, connection)) =
                tokio_postgres::connect(url, tokio_postgres::NoTls).await
        {
            tokio::spawn(connection);
            for schema in &self.schemas {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await;
            }
        }
        self.fake_proc.stop().await;
        self.dir
    }

    /// Mints `n` codes for fresh users named `{prefix}-{i}@bench.example`.
    async fn mint_codes(&self, prefix: &str, n: usize) -> Res<Vec<String>> {
        let fake = &self.fake;
        let results: Vec<Result<(String, String), String>> = futures::stream::iter(0..n)
            .map(|i| async move { fake.mint_code(&user_email(prefix, i)).await })
            .buffered(32)
            .collect()
            .await;
        results
            .into_iter()
            .map(|r| r.map(|(code, _)| code).map_err(Into::into))
            .collect()
    }

    /// Signs `n` fresh users in through `server`; returns each one's ID token and `sub`.
    async fn sign_in_users(
        &self,
        server: &Proc,
        prefix: &str,
        n: usize,
    ) -> Res<Vec<(String, String)>> {
        let mut users = Vec::with_capacity(n);
        for i in 0..n {
            let email = user_email(prefix, i);
            let (code, sub) = self.fake.mint_code(&email).await?;
            post_authcode(&self.http, &server.url, &code).await?;
            users.push((self.fake.id_token(&email).await?, sub));
        }
        Ok(users)
    }
}

/// The e-mail address of the `i`-th user a run named `prefix` creates.
fn user_email(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i}@bench.example")
}

/// `POST /authcode` as the Android app does.
async fn post_authcode(http: &reqwest::Client, server: &str, code: &str) -> Result<(), String> {
    let response = http
        .post(format!("{server}/authcode"))
        .header("X-Requested-With", "offline-access-bench")
        .form(&[("authCode", code)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    expect_200(response, "/authcode").await
}

async fn expect_200(response: reqwest::Response, what: &str) -> Result<(), String> {
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!(
            "{what} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ))
    }
}

/// One concurrency level: the server's figures and the fake's direct ceiling.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    /// Through offline-access.
    pub(crate) server: Load,
    /// Directly at the fake.
    pub(crate) direct: Load,
}

/// A throughput table (sign-ins or Drive) for one store.
#[derive(Debug, Clone)]
pub(crate) struct Throughput {
    /// `file` or `postgres`.
    pub(crate) store: &'static str,
    /// Where the processes ran.
    pub(crate) layout: Layout,
    /// One row per concurrency.
    pub(crate) rows: Vec<Pair>,
}

impl Throughput {
    /// Best server rate / best direct rate, each at its best concurrency.
    pub(crate) fn ratio(&self) -> f64 {
        let best = |f: fn(&Pair) -> &Load| {
            self.rows
                .iter()
                .map(|p| f(p).rate())
                .fold(0.0_f64, f64::max)
        };
        best(|p| &p.server) / best(|p| &p.direct).max(1e-9)
    }

    /// Every request of every row succeeded, and some ran.
    pub(crate) fn check(&self, what: &str) -> Res<()> {
        for pair in &self.rows {
            for load in [&pair.server, &pair.direct] {
                if load.errors > 0 || load.ok == 0 {
                    return Err(format!(
                        "{what} ({} store, concurrency {}): {} ok, {} failed; first failure: {}",
                        self.store,
                        load.concurrency,
                        load.ok,
                        load.errors,
                        load.first_error.as_deref().unwrap_or("none")
                    )
                    .into());
                }
            }
        }
        Ok(())
    }
}

/// Runs `load` against `proc`, recording its CPU time and this load generator's.
async fn measured<F>(proc: &Proc, f: F) -> Res<Load>
where
    F: Future<Output = Load>,
{
    let me = std::process::id();
    let (before, client_before) = (proc.cpu_secs()?, procs::cpu_secs(me)?);
    let mut load = f.await;
    load.cpu_secs = Some(proc.cpu_secs()? - before);
    load.client_cpu_secs = Some(procs::cpu_secs(me)? - client_before);
    Ok(load)
}

/// Sign-ins per second on `/authcode` with pre-minted codes vs code exchanges per second at the fake's `/token`.
pub(crate) async fn signin(
    ctx: &mut Ctx,
    store: &StoreSpec,
    label: &'static str,
) -> Res<Throughput> {
    let server = ctx.server(store).await?;
    let mut rows = Vec::new();
    let run = ctx.next();
    for &c in &ctx.plan.concurrency {
        let total = ctx.plan.requests(c);
        let codes = Arc::new(ctx.mint_codes(&format!("si{run}-{c}"), total).await?);
        let (http, url) = (ctx.http.clone(), server.url.clone());
        let server_load = measured(
            &server,
            load::run(c, total, ctx.plan.limit, move |i| {
                let (http, url, codes) = (http.clone(), url.clone(), Arc::clone(&codes));
                async move { post_authcode(&http, &url, &codes[i]).await }
            }),
        )
        .await?;
        let codes = Arc::new(ctx.mint_codes(&format!("tk{run}-{c}"), total).await?);
        let fake = ctx.fake.clone();
        let direct = measured(
            &ctx.fake_proc,
            load::run(c, total, ctx.plan.limit, move |i| {
                let (fake, codes) = (fake.clone(), Arc::clone(&codes));
                async move {
                    let response = fake
                        .exchange_request(&codes[i])
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    expect_200(response, "/token").await
                }
            }),
        )
        .await?;
        eprintln!(
            "signin {label} ({}) c={c}: {:.0}/s via server, {:.0}/s direct",
            ctx.layout.label(),
            server_load.rate(),
            direct.rate()
        );
        rows.push(Pair {
            server: server_load,
            direct,
        });
    }
    server.stop().await;
    Ok(Throughput {
        store: label,
        layout: ctx.layout,
        rows,
    })
}

/// Drive proxy calls per second on `/v1/me/drive/appfolder` vs `files.get` per second directly at the fake.
pub(crate) async fn drive(
    ctx: &mut Ctx,
    store: &StoreSpec,
    label: &'static str,
) -> Res<Throughput> {
    let server = ctx.server(store).await?;
    let run = ctx.next();
    let n_users = ctx.plan.drive_users;
    let users = Arc::new(
        ctx.sign_in_users(&server, &format!("dr{run}"), n_users)
            .await?,
    );
    let codes = ctx.mint_codes(&format!("dd{run}"), n_users).await?;
    let mut tokens = Vec::with_capacity(n_users);
    for code in &codes {
        tokens.push(ctx.fake.exchange(code).await?);
    }
    let tokens = Arc::new(tokens);
    let mut rows = Vec::new();
    for &c in &ctx.plan.concurrency {
        let total = ctx.plan.requests(c) * 2;
        let (http, url, users2) = (ctx.http.clone(), server.url.clone(), Arc::clone(&users));
        let server_load = measured(
            &server,
            load::run(c, total, ctx.plan.limit, move |i| {
                let (http, url, users) = (http.clone(), url.clone(), Arc::clone(&users2));
                async move {
                    let (id_token, _) = &users[i % users.len()];
                    let response = http
                        .get(format!("{url}/v1/me/drive/appfolder"))
                        .bearer_auth(id_token)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    expect_200(response, "/v1/me/drive/appfolder").await
                }
            }),
        )
        .await?;
        let (fake, tokens2) = (ctx.fake.clone(), Arc::clone(&tokens));
        let direct = measured(
            &ctx.fake_proc,
            load::run(c, total, ctx.plan.limit, move |i| {
                let (fake, tokens) = (fake.clone(), Arc::clone(&tokens2));
                async move {
                    let response = fake
                        .files_get_request(&tokens[i % tokens.len()])
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    expect_200(response, "files.get").await
                }
            }),
        )
        .await?;
        eprintln!(
            "drive {label} ({}) c={c}: {:.0}/s via server, {:.0}/s direct",
            ctx.layout.label(),
            server_load.rate(),
            direct.rate()
        );
        rows.push(Pair {
            server: server_load,
            direct,
        });
    }
    server.stop().await;
    Ok(Throughput {
        store: label,
        layout: ctx.layout,
        rows,
    })
}

/// What one stampede measured.
#[derive(Debug, Clone)]
pub(crate) struct Stampede {
    /// `1 instance, file store` and so on.
    pub(crate) setup: String,
    /// The concurrent calls.
    pub(crate) load: Load,
    /// `refresh_token` grants that reached the fake's `/token`.
    pub(crate) refresh_calls: usize,
}

/// `calls` concurrent Drive calls for one user right after the fake expired its access token, spread over
/// `instances` servers sharing `store`.
pub(crate) async fn stampede(
    ctx: &mut Ctx,
    store: &StoreSpec,
    instances: usize,
    setup: String,
) -> Res<Stampede> {
    let mut servers = Vec::new();
    for _ in 0..instances {
        servers.push(ctx.server(store).await?);
    }
    let run = ctx.next();
    let email = format!("stampede{run}@bench.example");
    let (code, sub) = ctx.fake.mint_code(&email).await?;
    let first = servers.first().ok_or("no server")?;
    post_authcode(&ctx.http, &first.url, &code).await?;
    let id_token = ctx.fake.id_token(&email).await?;
    // Warm each instance (JWKS, connections to Google and the store) with one call.
    for server in &servers {
        let response = ctx
            .http
            .get(format!("{}/v1/me/drive/appfolder", server.url))
            .bearer_auth(&id_token)
            .send()
            .await?;
        expect_200(response, "warm-up Drive call").await?;
    }
    ctx.fake.clear_requests().await?;
    ctx.fake.expire(&sub).await?;
    let calls = ctx.plan.stampede_calls;
    // One client per call: each opens its own connection, so all calls are in flight at once.
    let urls: Arc<Vec<String>> = Arc::new(
        servers
            .iter()
            .map(|s| format!("{}/v1/me/drive/appfolder", s.url))
            .collect(),
    );
    let (http, token) = (client()?, Arc::new(id_token));
    let load = load::run(calls, calls, Duration::from_secs(120), move |i| {
        let (http, urls, token) = (http.clone(), Arc::clone(&urls), Arc::clone(&token));
        async move {
            let response = http
                .get(&urls[i % urls.len()])
                .bearer_auth(token.as_str())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            expect_200(response, "stampede Drive call").await
        }
    })
    .await;
    let refresh_calls = ctx.fake.refresh_calls().await?;
    eprintln!(
        "stampede {setup}: {} ok, {} failed, {refresh_calls} refresh call(s)",
        load.ok, load.errors
    );
    for server in servers {
        server.stop().await;
    }
    Ok(Stampede {
        setup,
        load,
        refresh_calls,
    })
}

/// What the footprint measured.
#[derive(Debug, Clone)]
pub(crate) struct Footprint {
    /// `file` or `postgres`.
    pub(crate) store: &'static str,
    /// Users stored before the server started.
    pub(crate) users: usize,
    /// How long seeding them took.
    pub(crate) seed_secs: f64,
    /// Process start to the first 200 from `/readyz`.
    pub(crate) ready_ms: f64,
    /// Resident memory once ready and idle.
    pub(crate) idle_mib: f64,
    /// Peak resident memory (`VmHWM`) after a Drive and sign-in load.
    pub(crate) peak_mib: f64,
    /// The load that ran.
    pub(crate) load: Load,
}

/// A stored credential for seeding (as a first sign-in leaves it).
fn seed_credential(i: usize) -> Res<Credential> {
    let now = OffsetDateTime::now_utc();
    let sub = format!("{}", 100_000_000_000_000_000_000u128 + i as u128);
    Ok(Credential {
        subject: Subject::parse(&sub)?,
        profile: Profile {
            email: Some(Email::parse(&format!("seed{i}@bench.example"))?),
            email_verified: true,
            name: Some(format!("Seed User {i}")),
            picture: None,
            given_name: Some("Seed".to_owned()),
            family_name: Some("User".to_owned()),
            locale: Some("en".to_owned()),
            hd: None,
        },
        scopes: Scopes::parse(
            "openid email profile https://www.googleapis.com/auth/drive.appdata",
        )?,
        refresh_token: Some(RefreshToken::parse(&format!(
            "1//seed-refresh-token-{i:012}"
        ))?),
        access: Some(CachedAccess {
            token: AccessToken::parse(&format!("ya29.seed-access-token-{i:012}"))?,
            expires_at: now + time::Duration::hours(1),
            scopes: Scopes::parse(
                "openid email profile https://www.googleapis.com/auth/drive.appdata",
            )?,
        }),
        consent: ConsentState::Active,
        version: 0,
        created_at: now,
        updated_at: now,
    })
}

/// Writes users `0..n` through `store` (32 at a time) until done or `budget` runs out; returns how many.
async fn seed(store: Arc<dyn CredentialStore>, n: usize, budget: Duration) -> Res<usize> {
    let start = Instant::now();
    let stored = futures::stream::iter(0..n)
        .take_while(|_| std::future::ready(start.elapsed() < budget))
        .map(|i| {
            let store = Arc::clone(&store);
            async move {
                let credential = seed_credential(i).map_err(|e| e.to_string())?;
                store.put(&credential).await.map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(64)
        .fold(Ok(0usize), |acc, r| async move {
            match (acc, r) {
                (Ok(n), Ok(_)) => Ok(n + 1),
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            }
        })
        .await?;
    Ok(stored)
}

/// Resident memory idle and under load with many stored users, and start-to-ready time.
pub(crate) async fn footprint(
    ctx: &mut Ctx,
    store: &StoreSpec,
    label: &'static str,
) -> Res<Footprint> {
    let started = Instant::now();
    let target = ctx.plan.footprint_users;
    let users = match store {
        StoreSpec::File(path) => {
            let file = FileStore::open(path.clone(), Arc::clone(&ctx.keys))?;
            seed(Arc::new(file), target, ctx.plan.seed_budget).await?
        }
        StoreSpec::Postgres { url, schema } => {
            let options = PgOptions {
                pool_size: 32,
                schema: Some(schema.clone()),
                ..PgOptions::default()
            };
            let pg = PgStore::connect(url, Arc::clone(&ctx.keys), options).await?;
            pg.migrate().await?;
            let n = seed(Arc::new(pg.clone()), target, ctx.plan.seed_budget).await?;
            pg.close();
            n
        }
    };
    let seed_secs = started.elapsed().as_secs_f64();
    eprintln!("footprint {label}: seeded {users} users in {seed_secs:.1} s");

    let name = format!("footprint-{}", ctx.next());
    let server = procs::start_server(&ctx.bins, &ctx.env, store, &name, ctx.layout).await?;
    let ready = procs::wait_ready(&ctx.http, &server.url).await?;
    let ready_ms = (ready - server.spawned).as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_mib = server.mem_mib("VmRSS")?;

    // Under load: sign-ins, then Drive calls at concurrency 64.
    let prefix = format!("fp{}", ctx.next());
    let users_in = Arc::new(
        ctx.sign_in_users(&server, &prefix, ctx.plan.drive_users)
            .await?,
    );
    let (http, url) = (ctx.http.clone(), server.url.clone());
    let total = ctx.plan.requests(64) * 2;
    let load = measured(
        &server,
        load::run(64, total, ctx.plan.limit, move |i| {
            let (http, url, users) = (http.clone(), url.clone(), Arc::clone(&users_in));
            async move {
                let (id_token, _) = &users[i % users.len()];
                let response = http
                    .get(format!("{url}/v1/me/drive/appfolder"))
                    .bearer_auth(id_token)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                expect_200(response, "/v1/me/drive/appfolder").await
            }
        }),
    )
    .await?;
    let peak_mib = server.mem_mib("VmHWM")?;
    server.stop().await;
    eprintln!(
        "footprint {label}: ready in {ready_ms:.0} ms, idle {idle_mib:.1} MiB, peak {peak_mib:.1} MiB"
    );
    Ok(Footprint {
        store: label,
        users,
        seed_secs,
        ready_ms,
        idle_mib,
        peak_mib,
        load,
    })
}

/// What the download run measured.
#[derive(Debug, Clone)]
pub(crate) struct Downloads {
    /// Size of the file, bytes.
    pub(crate) file_bytes: usize,
    /// Through offline-access.
    pub(crate) server: Load,
    /// Directly at the fake.
    pub(crate) direct: Load,
    /// The server's resident memory before the downloads.
    pub(crate) before_mib: f64,
    /// The highest resident memory sampled (every 5 ms) during the downloads through it.
    pub(crate) during_mib: f64,
}

impl Downloads {
    /// Content bytes in flight at once: concurrency × file size, in MiB.
    pub(crate) fn in_flight_mib(&self) -> f64 {
        (self.server.concurrency * self.file_bytes) as f64 / (1024.0 * 1024.0)
    }

    /// MiB per second of content through the server and directly.
    pub(crate) fn mib_per_sec(&self, load: &Load) -> f64 {
        load.rate() * self.file_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// Reads a download to its end chunk by chunk (never holding it whole) and checks its length.
async fn drain(response: reqwest::Response, expected: usize, what: &str) -> Result<(), String> {
    let status = response.status();
    if status != 200 {
        return expect_200(response, what).await;
    }
    let mut response = response;
    let mut received = 0usize;
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        received += chunk.len();
    }
    if received == expected {
        Ok(())
    } else {
        Err(format!("{what}: {received} bytes of {expected}"))
    }
}

/// Concurrent downloads of one large file through `GET /v1/me/drive/files/{id}/content` vs `alt=media` directly
/// at the fake, sampling the server's resident memory meanwhile.
pub(crate) async fn downloads(ctx: &mut Ctx, store: &StoreSpec) -> Res<Downloads> {
    let (file_bytes, concurrency) = if ctx.plan.smoke {
        (1024 * 1024, 4)
    } else {
        (8 * 1024 * 1024, 16)
    };
    let total = if ctx.plan.smoke { 8 } else { 160 };
    let server = ctx.server(store).await?;
    let run = ctx.next();
    let prefix = format!("dl{run}");
    let users = ctx.sign_in_users(&server, &prefix, 1).await?;
    let (id_token, _) = users.first().ok_or("no user")?.clone();
    let content: Vec<u8> = (0..file_bytes).map(|i| (i % 251) as u8).collect();
    let created = ctx
        .http
        .post(format!("{}/v1/me/drive/files", server.url))
        .query(&[("name", "bench.bin")])
        .bearer_auth(&id_token)
        .header("Content-Type", "application/octet-stream")
        .body(content)
        .send()
        .await?;
    if created.status() != 201 {
        return Err(format!("upload answered {}", created.status()).into());
    }
    let created: serde_json::Value = created.json().await?;
    let id = created["id"].as_str().ok_or("no file id")?.to_owned();
    // A second grant for the same user gives the load generator its own access token for the direct downloads.
    let (code, _) = ctx.fake.mint_code(&user_email(&prefix, 0)).await?;
    let access = ctx.fake.exchange(&code).await?;
    // One download each way first (connections, the access token), then let the upload's memory settle.
    drain(
        ctx.fake.download_request(&access, &id).send().await?,
        file_bytes,
        "warm-up download",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_mib = server.mem_mib("VmRSS")?;

    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (sampling, pid) = (Arc::clone(&sampling), server.pid);
        tokio::spawn(async move {
            let mut highest = 0.0_f64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mib) = procs::mem_mib(pid, "VmRSS") {
                    highest = highest.max(mib);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            highest
        })
    };
    let (http, url) = (
        client()?,
        format!("{}/v1/me/drive/files/{id}/content", server.url),
    );
    let token = Arc::new(id_token);
    let through = measured(
        &server,
        load::run(concurrency, total, Duration::from_secs(120), move |_| {
            let (http, url, token) = (http.clone(), url.clone(), Arc::clone(&token));
            async move {
                let response = http
                    .get(&url)
                    .bearer_auth(token.as_str())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                drain(response, file_bytes, "download via server").await
            }
        }),
    )
    .await?;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let during_mib = sampler.await?.max(before_mib);
    let (fake, id2, access) = (ctx.fake.clone(), id.clone(), Arc::new(access));
    let direct = measured(
        &ctx.fake_proc,
        load::run(concurrency, total, Duration::from_secs(120), move |_| {
            let (fake, id, access) = (fake.clone(), id2.clone(), Arc::clone(&access));
            async move {
                let response = fake
                    .download_request(&access, &id)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                drain(response, file_bytes, "download direct").await
            }
        }),
    )
    .await?;
    server.stop().await;
    eprintln!(
        "downloads: {:.0}/s via server, {:.0}/s direct; server RSS {before_mib:.1} -> {during_mib:.1} MiB",
        through.rate(),
        direct.rate()
    );
    Ok(Downloads {
        file_bytes,
        server: through,
        direct,
        before_mib,
        during_mib,
    })
}
