//! The measurements: sign-ins, Drive proxy calls, the refresh stampede, the memory footprint, Drive content
//! downloads, and the internal API (access tokens, the Google API proxy, an access-token stampede).

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
    /// The internal API key (the key, its `internal.api_keys` entry), made on first use.
    api_key: Option<(String, String)>,
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
            api_key: None,
            schemas: Vec::new(),
            seq: 0,
        })
    }

    /// The internal API key servers started by [`Ctx::internal_server`] let in, made once with
    /// `offline-access api-key new bench --json`.
    pub(crate) async fn api_key(&mut self) -> Res<String> {
        if self.api_key.is_none() {
            self.api_key = Some(procs::new_api_key(&self.bins, &self.env.dir, "bench").await?);
        }
        Ok(self
            .api_key
            .as_ref()
            .map(|(key, _)| key.clone())
            .unwrap_or_default())
    }

    /// Starts one `offline-access serve` on `store` with the internal API on (see [`Ctx::api_key`]) and waits
    /// until `/readyz` is 200.
    pub(crate) async fn internal_server(&mut self, store: &StoreSpec) -> Res<Proc> {
        self.api_key().await?;
        let entry = self
            .api_key
            .as_ref()
            .map(|(_, e)| e.clone())
            .unwrap_or_default();
        let name = format!("server-{}", self.next());
        let proc =
            procs::start_server_internal(&self.bins, &self.env, store, &name, self.layout, &entry)
                .await?;
        procs::wait_ready(&self.http, &proc.url).await?;
        Ok(proc)
    }

    /// A number unique in this run (names of servers, stores and users).
    pub(crate) fn next(&mut self) -> usize {
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
        self.server_with(store, None).await
    }

    /// As [`Ctx::server`]; with `hooks`, the server records events and POSTs them as `hooks` says.
    pub(crate) async fn server_with(
        &mut self,
        store: &StoreSpec,
        hooks: Option<&procs::Webhooks>,
    ) -> Res<Proc> {
        let name = format!("server-{}", self.next());
        let proc =
            procs::start_server(&self.bins, &self.env, store, &name, self.layout, hooks).await?;
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
    pub(crate) async fn mint_codes(&self, prefix: &str, n: usize) -> Res<Vec<String>> {
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
pub(crate) async fn post_authcode(
    http: &reqwest::Client,
    server: &str,
    code: &str,
) -> Result<(), String> {
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

/// `POST /authcode` on `server` with each of `codes` at concurrency `c` (for at most `limit`), with the server's CPU.
pub(crate) async fn authcode_load(
    ctx: &Ctx,
    server: &Proc,
    codes: Vec<String>,
    c: usize,
    limit: Duration,
) -> Res<Load> {
    let (http, url, codes) = (ctx.http.clone(), server.url.clone(), Arc::new(codes));
    let total = codes.len();
    measured(
        server,
        load::run(c, total, limit, move |i| {
            let (http, url, codes) = (http.clone(), url.clone(), Arc::clone(&codes));
            async move { post_authcode(&http, &url, &codes[i]).await }
        }),
    )
    .await
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
        let codes = ctx.mint_codes(&format!("si{run}-{c}"), total).await?;
        let server_load = authcode_load(ctx, &server, codes, c, ctx.plan.limit).await?;
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

/// `total` calls of `GET /v1/me/drive/appfolder` on `server` at concurrency `c`, the users' ID tokens in turn.
async fn appfolder_load(
    ctx: &Ctx,
    server: &Proc,
    users: &Arc<Vec<(String, String)>>,
    c: usize,
    total: usize,
) -> Res<Load> {
    let (http, url, users) = (ctx.http.clone(), server.url.clone(), Arc::clone(users));
    measured(
        server,
        load::run(c, total, ctx.plan.limit, move |i| {
            let (http, url, users) = (http.clone(), url.clone(), Arc::clone(&users));
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
    .await
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
        let server_load = appfolder_load(ctx, &server, &users, c, total).await?;
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
        disabled: None,
        refresh_failing_since: None,
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
    let server = procs::start_server(&ctx.bins, &ctx.env, store, &name, ctx.layout, None).await?;
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

/// What the internal API's throughput runs measured, in one server: access tokens vs `/healthz`, and the Google
/// API proxy vs the public Drive route.
#[derive(Debug, Clone)]
pub(crate) struct InternalRuns {
    /// `POST /internal/v1/users/{sub}/access_token` (cached tokens) as `server`, `GET /healthz` as `direct`.
    pub(crate) tokens: Throughput,
    /// The proxy's `GET .../google/www.googleapis.com/drive/v3/files/appDataFolder` as `server`, the public
    /// `GET /v1/me/drive/appfolder` as `direct`.
    pub(crate) proxy: Throughput,
}

/// The Drive `files.get` the proxy is asked for: the same request the public route makes (`fields` included).
fn proxied_appfolder(internal: &str, sub: &str) -> String {
    format!(
        "{internal}/internal/v1/users/{sub}/google/www.googleapis.com/drive/v3/files/appDataFolder?fields={}",
        crate::fake::FILE_FIELDS
    )
}

/// `POST .../access_token` for a user whose cached token is fresh enough, checking the answer carries one.
async fn cached_token(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &'static str,
) -> Result<serde_json::Value, String> {
    let response = http
        .post(url)
        .bearer_auth(key)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!(
            "access_token answered {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ));
    }
    let answer: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if answer
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .is_none()
    {
        return Err("access_token answered 200 without an access_token".to_owned());
    }
    Ok(answer)
}

/// In one server with the internal API on: (a) access tokens (cached) per second vs `GET /healthz` per second,
/// (b) proxied Drive `files.get` of `appDataFolder` vs the public `GET /v1/me/drive/appfolder`, at each
/// concurrency.
pub(crate) async fn internal(
    ctx: &mut Ctx,
    store: &StoreSpec,
    label: &'static str,
) -> Res<InternalRuns> {
    let key = Arc::new(ctx.api_key().await?);
    let server = ctx.internal_server(store).await?;
    let internal_url = server.internal_url.clone().ok_or("no internal API")?;
    let run = ctx.next();
    let users = Arc::new(
        ctx.sign_in_users(&server, &format!("ia{run}"), ctx.plan.drive_users)
            .await?,
    );
    // One call of each kind per user first (connections, the remembered ID token, the credential in memory).
    for (id_token, sub) in users.iter() {
        let response = ctx
            .http
            .get(proxied_appfolder(&internal_url, sub))
            .bearer_auth(key.as_str())
            .send()
            .await?;
        expect_200(response, "warm-up proxied files.get").await?;
        let response = ctx
            .http
            .get(format!("{}/v1/me/drive/appfolder", server.url))
            .bearer_auth(id_token)
            .send()
            .await?;
        expect_200(response, "warm-up /v1/me/drive/appfolder").await?;
        cached_token(
            &ctx.http,
            &format!("{internal_url}/internal/v1/users/{sub}/access_token"),
            &key,
            "",
        )
        .await?;
    }
    ctx.fake.clear_requests().await?;
    let token_urls: Arc<Vec<String>> = Arc::new(
        users
            .iter()
            .map(|(_, sub)| format!("{internal_url}/internal/v1/users/{sub}/access_token"))
            .collect(),
    );
    let proxy_urls: Arc<Vec<String>> = Arc::new(
        users
            .iter()
            .map(|(_, sub)| proxied_appfolder(&internal_url, sub))
            .collect(),
    );
    let (mut tokens, mut proxy) = (Vec::new(), Vec::new());
    // These routes answer in tens of microseconds: the other scenarios' counts would be over in milliseconds, too
    // short for the CPU figures (10 ms ticks) and the rates. Unless --requests or --smoke says otherwise: 2,000
    // per worker (40,000 to 200,000) for tokens and /healthz, 800 (30,000 to 80,000) for the Drive calls, each
    // bounded by --seconds.
    let counts = |c: usize, per_worker: usize, least: usize, most: usize| {
        if ctx.plan.smoke || ctx.plan.requests.is_some() {
            ctx.plan.requests(c)
        } else {
            (c * per_worker).clamp(least, most)
        }
    };
    for &c in &ctx.plan.concurrency {
        let total = counts(c, 2_000, 40_000, 200_000);
        let (http, urls, k) = (ctx.http.clone(), Arc::clone(&token_urls), Arc::clone(&key));
        let token_load = measured(
            &server,
            load::run(c, total, ctx.plan.limit, move |i| {
                let (http, urls, key) = (http.clone(), Arc::clone(&urls), Arc::clone(&k));
                async move {
                    cached_token(&http, &urls[i % urls.len()], &key, "")
                        .await
                        .map(drop)
                }
            }),
        )
        .await?;
        let (http, url) = (ctx.http.clone(), format!("{}/healthz", server.url));
        let health = measured(
            &server,
            load::run(c, total, ctx.plan.limit, move |_| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
                    expect_200(response, "/healthz").await
                }
            }),
        )
        .await?;
        eprintln!(
            "internal {label} ({}) c={c}: {:.0} access tokens/s, {:.0} /healthz/s",
            ctx.layout.label(),
            token_load.rate(),
            health.rate()
        );
        tokens.push(Pair {
            server: token_load,
            direct: health,
        });

        let total = counts(c, 800, 30_000, 80_000);
        let (http, urls, k) = (ctx.http.clone(), Arc::clone(&proxy_urls), Arc::clone(&key));
        let proxied = measured(
            &server,
            load::run(c, total, ctx.plan.limit, move |i| {
                let (http, urls, key) = (http.clone(), Arc::clone(&urls), Arc::clone(&k));
                async move {
                    let response = http
                        .get(&urls[i % urls.len()])
                        .bearer_auth(key.as_str())
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    expect_200(response, "proxied files.get").await
                }
            }),
        )
        .await?;
        let public = appfolder_load(ctx, &server, &users, c, total).await?;
        eprintln!(
            "internal {label} ({}) c={c}: {:.0} proxied files.get/s, {:.0} /v1/me/drive/appfolder/s",
            ctx.layout.label(),
            proxied.rate(),
            public.rate()
        );
        proxy.push(Pair {
            server: proxied,
            direct: public,
        });
    }
    let refreshes = ctx.fake.refresh_calls().await?;
    server.stop().await;
    if refreshes > 0 {
        return Err(format!(
            "internal {label}: {refreshes} refresh call(s) during the runs; every access token should have been \
             the cached one"
        )
        .into());
    }
    Ok(InternalRuns {
        tokens: Throughput {
            store: label,
            layout: ctx.layout,
            rows: tokens,
        },
        proxy: Throughput {
            store: label,
            layout: ctx.layout,
            rows: proxy,
        },
    })
}

/// The fake's access-token lifetime while the stampede's user signs in: shorter than the `min_ttl_secs` the
/// stampede asks for, so the stored token is stale for every caller.
const SHORT_TTL_SECS: u64 = 900;
/// What the stampede's callers ask: more than [`SHORT_TTL_SECS`], within the server's 1,800 s cap, less than a
/// fresh token's hour.
const STAMPEDE_MIN_TTL: &str = r#"{"min_ttl_secs": 1200}"#;

/// `calls` concurrent `POST /internal/v1/users/{sub}/access_token` asking for more life than the user's stored
/// token has, spread over `instances` servers sharing `store`: the `refresh_token` grants that reach the fake.
pub(crate) async fn internal_stampede(
    ctx: &mut Ctx,
    store: &StoreSpec,
    instances: usize,
    setup: String,
) -> Res<Stampede> {
    let key = Arc::new(ctx.api_key().await?);
    let mut servers = Vec::new();
    for _ in 0..instances {
        servers.push(ctx.internal_server(store).await?);
    }
    let run = ctx.next();
    let email = format!("istampede{run}@bench.example");
    let (code, sub) = ctx.fake.mint_code(&email).await?;
    let first = servers.first().ok_or("no server")?;
    // The user's stored access token lives SHORT_TTL_SECS; the refresh will get a full hour again.
    let ttl_before = ctx.fake.set_access_token_ttl(SHORT_TTL_SECS).await?;
    let signed_in = post_authcode(&ctx.http, &first.url, &code).await;
    ctx.fake.set_access_token_ttl(ttl_before).await?;
    signed_in?;
    let mut urls = Vec::new();
    // Warm each instance (connections to Google and the store, the credential) with one call that the cached
    // token satisfies (the default min_ttl_secs, 60).
    for server in &servers {
        let internal = server.internal_url.as_deref().ok_or("no internal API")?;
        let url = format!("{internal}/internal/v1/users/{sub}/access_token");
        let warm = cached_token(&ctx.http, &url, &key, "").await?;
        let left = warm
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if left > SHORT_TTL_SECS {
            return Err(format!(
                "internal stampede: the stored token has {left} s left, more than the {SHORT_TTL_SECS} s set up"
            )
            .into());
        }
        urls.push(url);
    }
    ctx.fake.clear_requests().await?;
    let calls = ctx.plan.stampede_calls;
    let urls = Arc::new(urls);
    // One client per call: each opens its own connection, so all calls are in flight at once.
    let http = client()?;
    let load = load::run(calls, calls, Duration::from_secs(120), move |i| {
        let (http, urls, key) = (http.clone(), Arc::clone(&urls), Arc::clone(&key));
        async move {
            let answer = cached_token(&http, &urls[i % urls.len()], &key, STAMPEDE_MIN_TTL).await?;
            // Every caller must get a token with the life it asked for: the one fresh token.
            match answer.get("expires_in").and_then(serde_json::Value::as_u64) {
                Some(left) if left >= 1200 => Ok(()),
                other => Err(format!(
                    "access_token answered expires_in {other:?}, less than min_ttl_secs 1200"
                )),
            }
        }
    })
    .await;
    let refresh_calls = ctx.fake.refresh_calls().await?;
    eprintln!(
        "internal stampede {setup}: {} ok, {} failed, {refresh_calls} refresh call(s)",
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
