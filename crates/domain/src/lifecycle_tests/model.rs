//! A model-based test of the credential lifecycle: random sequences of sign-ins (with or without a new refresh
//! token; more, fewer or the same scopes; incremental or not), Drive calls, forgets, sweeps, expiry, the user
//! revoking access in their Google account, restarts and a second instance — with a scheduler that decides when
//! (and whether: 503) each call to Google is answered, so that interleavings are explored and shrunk.
//!
//! Google's truth (what it issued, which grant is alive, its scopes) is the reference model; the users' intents
//! (the last sign-in or forget that finished) are the other half. After every step and at every quiescent point
//! the invariants below are checked. `cargo test` runs the default number of cases; `just fuzz` many more
//! (`PROPTEST_CASES`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tokio::task::JoinHandle;

use super::world::*;
use crate::credential::{ConsentState, Credential};
use crate::ports::DriveRequest;

/// One step of a run.
#[derive(Debug, Clone)]
enum Step {
    /// The app posts a code from a new consent screen (`consent`) or a silent one, for these scopes.
    SignIn {
        inst: usize,
        consent: bool,
        scopes: ScopeChoice,
        incremental: bool,
    },
    /// A Drive call for the user with no user present.
    Drive { inst: usize },
    /// `DELETE /v1/me`.
    Forget { inst: usize },
    /// The pending-revocation sweep.
    Sweep { inst: usize },
    /// Google answers the `pick`-th waiting call (modulo their number): processed, or 503 when `fail`.
    Answer { pick: usize, fail: bool },
    /// Two hours pass: every access token expires.
    Expire,
    /// The user removes the app's access in their Google account.
    UserRevokes,
    /// The instance dies (its calls in flight are abandoned, its locks freed) and starts again.
    Restart { inst: usize },
    /// Google answers everything until nothing is in flight.
    Settle,
}

#[derive(Debug, Clone, Copy)]
enum ScopeChoice {
    /// Sign-in and Drive.
    Full,
    /// Sign-in only (fewer).
    NoDrive,
    /// Sign-in and Calendar (other).
    Calendar,
}

impl ScopeChoice {
    fn scopes(self) -> Vec<&'static str> {
        match self {
            ScopeChoice::Full => vec![OPENID, EMAIL, DRIVE],
            ScopeChoice::NoDrive => vec![OPENID, EMAIL],
            ScopeChoice::Calendar => vec![OPENID, EMAIL, CALENDAR],
        }
    }
}

fn step() -> impl Strategy<Value = Step> {
    let inst = 0..2usize;
    let scopes = prop_oneof![
        3 => Just(ScopeChoice::Full),
        1 => Just(ScopeChoice::NoDrive),
        1 => Just(ScopeChoice::Calendar),
    ];
    prop_oneof![
        3 => (inst.clone(), any::<bool>(), scopes, any::<bool>()).prop_map(|(inst, consent, scopes, incremental)| {
            Step::SignIn { inst, consent, scopes, incremental }
        }),
        3 => inst.clone().prop_map(|inst| Step::Drive { inst }),
        2 => inst.clone().prop_map(|inst| Step::Forget { inst }),
        1 => inst.clone().prop_map(|inst| Step::Sweep { inst }),
        7 => (0..4usize, prop::bool::weighted(0.2)).prop_map(|(pick, fail)| Step::Answer { pick, fail }),
        1 => Just(Step::Expire),
        1 => Just(Step::UserRevokes),
        1 => inst.prop_map(|inst| Step::Restart { inst }),
        2 => Just(Step::Settle),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SignIn,
    Drive,
    Forget,
    Sweep,
}

/// How an operation ended.
#[derive(Debug, Clone)]
struct Ended {
    ok: bool,
    /// Whether a sign-in answered that offline access is in place.
    #[allow(dead_code)]
    offline_access: bool,
    /// The result as `Debug` shows it (checked for secrets).
    shown: String,
}

struct Op {
    kind: Kind,
    inst: usize,
    start: u64,
    end: Option<u64>,
    aborted: bool,
    handle: Option<JoinHandle<Ended>>,
    ended: Option<Ended>,
}

impl Op {
    fn running(&self) -> bool {
        self.end.is_none()
    }

    /// A sign-in or forget: an intent of the user about their grant.
    fn intent(&self) -> bool {
        matches!(self.kind, Kind::SignIn | Kind::Forget)
    }
}

/// What the store holds, in the model's words.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    Nothing,
    Pending,
    Credential,
}

fn held(record: Option<&Credential>) -> Held {
    match record {
        None => Held::Nothing,
        Some(c) if c.is_forgotten() => Held::Pending,
        Some(_) => Held::Credential,
    }
}

struct Run {
    world: World,
    ops: Vec<Op>,
    /// Event counter: every start and every end gets the next number.
    now: u64,
    /// The user revoked access at Google and no operation has observed it yet.
    external: bool,
    /// The stored refresh token's issue number, last seen.
    last_issue: Option<(u64, u64)>,
    last_held: Held,
    /// The event counter at the last check.
    checked_at: u64,
}

impl Run {
    fn tick(&mut self) -> u64 {
        self.now += 1;
        self.now
    }

    fn spawn(&mut self, kind: Kind, inst: usize, task: JoinHandle<Ended>) {
        let start = self.tick();
        self.ops.push(Op {
            kind,
            inst,
            start,
            end: None,
            aborted: false,
            handle: Some(task),
            ended: None,
        });
    }

    fn start(&mut self, step: &Step) {
        let subject = subject();
        match *step {
            Step::SignIn {
                inst,
                consent,
                scopes,
                incremental,
            } => {
                let code = self.world.google.mint(CodeSpec {
                    consent,
                    scopes: scopes.scopes(),
                    include_granted: incremental,
                });
                let service = self.world.instances[inst].clone();
                let task = tokio::spawn(async move {
                    let result = service.sign_in(&code, None).await;
                    Ended {
                        ok: result.is_ok(),
                        offline_access: result.as_ref().is_ok_and(|s| s.offline_access),
                        shown: format!("{result:?}"),
                    }
                });
                self.spawn(Kind::SignIn, inst, task);
            }
            Step::Drive { inst } => {
                let service = self.world.instances[inst].clone();
                let task = tokio::spawn(async move {
                    let result = service.drive(&subject, &DriveRequest::GetAppFolder).await;
                    Ended {
                        ok: result.is_ok(),
                        offline_access: false,
                        shown: format!("{result:?}"),
                    }
                });
                self.spawn(Kind::Drive, inst, task);
            }
            Step::Forget { inst } => {
                let service = self.world.instances[inst].clone();
                let task = tokio::spawn(async move {
                    let result = service.forget(&subject).await;
                    Ended {
                        // Forgetting a user that is not there is a completed forget too.
                        ok: matches!(result, Ok(_) | Err(crate::service::ForgetError::NotFound)),
                        offline_access: false,
                        shown: format!("{result:?}"),
                    }
                });
                self.spawn(Kind::Forget, inst, task);
            }
            Step::Sweep { inst } => {
                let service = self.world.instances[inst].clone();
                let task = tokio::spawn(async move {
                    let result = service.retry_pending_revocations().await;
                    Ended {
                        ok: result.is_ok(),
                        offline_access: false,
                        shown: format!("{result:?}"),
                    }
                });
                self.spawn(Kind::Sweep, inst, task);
            }
            Step::Answer { pick, fail } => {
                let waiting = self.world.google.waiting().len();
                if waiting > 0 {
                    self.world.google.answer(pick % waiting, fail);
                }
            }
            Step::Expire => self.world.clock.advance(time::Duration::hours(2)),
            Step::UserRevokes => {
                let mut truth = self.world.google.truth();
                if truth.alive {
                    truth.revoke_grant();
                    self.external = true;
                }
            }
            Step::Restart { inst } => {
                let now = self.tick();
                for op in self
                    .ops
                    .iter_mut()
                    .filter(|o| o.inst == inst && o.running())
                {
                    if let Some(handle) = op.handle.take() {
                        handle.abort();
                    }
                    op.aborted = true;
                    op.end = Some(now);
                    // A forget that dies after Google took its revocation leaves the store unaware, as if the
                    // user had revoked access in their account: the next refresh finds out.
                    if op.kind == Kind::Forget {
                        self.external = true;
                    }
                }
                self.world.instances[inst] = self.world.instance();
            }
            Step::Settle => {}
        }
    }

    /// Collects the operations that finished.
    async fn reap(&mut self) -> Result<(), TestCaseError> {
        let now = self.tick();
        for op in self.ops.iter_mut().filter(|o| o.running()) {
            if op.handle.as_ref().is_some_and(JoinHandle::is_finished) {
                let handle = op
                    .handle
                    .take()
                    .ok_or_else(|| TestCaseError::fail("no handle"))?;
                let ended = handle
                    .await
                    .map_err(|e| TestCaseError::fail(format!("an operation panicked: {e}")))?;
                op.end = Some(now);
                op.ended = Some(ended);
            }
        }
        Ok(())
    }

    fn running(&self) -> bool {
        self.ops.iter().any(Op::running)
    }

    /// Google answers everything (processed) until nothing is in flight.
    async fn settle_all(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..200 {
            settle().await;
            self.reap().await?;
            if self.world.google.waiting().is_empty() {
                if !self.running() {
                    return Ok(());
                }
                continue;
            }
            self.world.google.answer(0, false);
        }
        Err(TestCaseError::fail(
            "an operation never finished although Google answered every call",
        ))
    }

    /// Checked after every step.
    async fn check_always(&mut self) -> Result<(), TestCaseError> {
        let secrets = self.world.google.truth().secrets.clone();
        for op in &self.ops {
            if let Some(ended) = &op.ended {
                for secret in &secrets {
                    prop_assert!(
                        !ended.shown.contains(secret.as_str()),
                        "a result shows a secret: {}",
                        ended.shown
                    );
                }
            }
        }
        let record = self.world.stored().await;
        let now_held = held(record.as_ref());
        // Nothing but a sign-in brings a credential back where there was none.
        if now_held == Held::Credential && self.last_held != Held::Credential {
            let since = self.checked_at;
            let sign_in_in_play = self
                .ops
                .iter()
                .any(|o| o.kind == Kind::SignIn && o.end.is_none_or(|end| end > since));
            prop_assert!(
                sign_in_in_play,
                "a credential came back without a sign-in (was {:?})",
                self.last_held
            );
        }
        self.last_held = now_held;
        self.checked_at = self.now;
        // The stored refresh token never goes back to an older grant, nor to a token Google no longer honours
        // (a stale write). Google gives no order among the working tokens of one grant, so between two of those
        // either may be kept.
        let token = record
            .as_ref()
            .and_then(|c| c.refresh_token.as_ref())
            .map(|t| t.expose_secret().to_owned());
        match token {
            Some(token) => {
                let (generation, issue, alive) = {
                    let truth = self.world.google.truth();
                    let (generation, issue) = truth.issue_of(&token).ok_or_else(|| {
                        TestCaseError::fail("a stored refresh token Google never issued")
                    })?;
                    (generation, issue, truth.refresh_alive(&token))
                };
                if let Some((last_generation, last_issue)) = self.last_issue {
                    prop_assert!(
                        generation >= last_generation,
                        "the stored refresh token went back from grant {} to grant {}",
                        last_generation,
                        generation
                    );
                    prop_assert!(
                        issue >= last_issue || alive || self.external,
                        "the stored refresh token went back from issue {} to {}, which Google no longer honours",
                        last_issue,
                        issue
                    );
                }
                self.last_issue = Some((generation, issue));
            }
            None => self.last_issue = None,
        }
        Ok(())
    }

    /// Checked when nothing is in flight.
    async fn check_quiescent(&mut self) -> Result<(), TestCaseError> {
        let record = self.world.stored().await;
        let truth_scopes;
        let token_alive;
        {
            let truth = self.world.google.truth();
            truth_scopes = truth.scopes.clone();
            token_alive = record
                .as_ref()
                .and_then(|c| c.refresh_token.as_ref())
                .map(|t| truth.refresh_alive(t.expose_secret()));
        }
        if let Some(access) = record
            .as_ref()
            .and_then(|c| c.access.as_ref().map(|a| (c, a)))
        {
            let (c, a) = access;
            prop_assert!(
                c.scopes.is_superset(&a.scopes),
                "the access token carries scopes the grant lacks"
            );
        }
        match &record {
            Some(c) if !c.is_forgotten() && c.consent == ConsentState::Revoked => {
                // Never marked revoked while its refresh token still works.
                prop_assert_ne!(token_alive, Some(true), "a working grant is marked revoked");
                self.external = false;
            }
            Some(c)
                if !c.is_forgotten()
                    && c.consent == ConsentState::Active
                    && !self.external
                    && c.refresh_token.is_some() =>
            {
                prop_assert_eq!(
                    token_alive,
                    Some(true),
                    "an active credential holds a refresh token Google does not honour"
                );
                // Never more than Google's grant (it can be less: a code whose sign-in died with its instance
                // widened the grant at Google unseen, until the next refresh reports it).
                let extra: Vec<&str> = c
                    .scopes
                    .iter()
                    .filter(|s| !truth_scopes.contains(*s))
                    .collect();
                prop_assert!(
                    extra.is_empty(),
                    "the stored grant claims scopes Google's lacks: {:?}",
                    extra
                );
            }
            None => self.external = false,
            _ => {}
        }
        // The user's last intent holds, when it did not overlap another.
        let last = self
            .ops
            .iter()
            .filter(|o| o.intent() && !o.aborted && o.ended.as_ref().is_some_and(|e| e.ok))
            .max_by_key(|o| o.end);
        if let Some(last) = last {
            let alone = self
                .ops
                .iter()
                .filter(|o| o.intent())
                .all(|o| std::ptr::eq(o, last) || o.end.is_some_and(|end| end < last.start));
            if alone {
                match last.kind {
                    Kind::Forget => prop_assert_ne!(
                        held(record.as_ref()),
                        Held::Credential,
                        "a forgotten user came back"
                    ),
                    Kind::SignIn => {
                        prop_assert_eq!(
                            held(record.as_ref()),
                            Held::Credential,
                            "a signed-in user was deleted"
                        );
                    }
                    Kind::Drive | Kind::Sweep => {}
                }
            }
        }
        Ok(())
    }

    /// The end of a run: Google answers everything, a sweep runs, and then no revocation is left pending and a
    /// Drive call works for an active grant with the Drive scope.
    async fn finish(&mut self) -> Result<(), TestCaseError> {
        self.settle_all().await?;
        self.check_always().await?;
        self.check_quiescent().await?;
        let service = self.world.instances[0].clone();
        let task = tokio::spawn(async move {
            let result = service.retry_pending_revocations().await;
            Ended {
                ok: result.is_ok(),
                offline_access: false,
                shown: format!("{result:?}"),
            }
        });
        self.spawn(Kind::Sweep, 0, task);
        self.settle_all().await?;
        let record = self.world.stored().await;
        prop_assert_ne!(
            held(record.as_ref()),
            Held::Pending,
            "a pending revocation survived a sweep with Google up"
        );
        let usable = record.as_ref().is_some_and(|c| {
            c.consent == ConsentState::Active
                && c.refresh_token.is_some()
                && c.scopes.has_drive_appdata()
        });
        if usable && !self.external {
            let service = self.world.instances[1].clone();
            let subject = subject();
            let task = tokio::spawn(async move {
                let result = service.drive(&subject, &DriveRequest::GetAppFolder).await;
                Ended {
                    ok: result.is_ok(),
                    offline_access: false,
                    shown: format!("{result:?}"),
                }
            });
            self.spawn(Kind::Drive, 1, task);
            self.settle_all().await?;
            let drive = self.ops.last().and_then(|o| o.ended.clone());
            prop_assert!(
                drive.as_ref().is_some_and(|d| d.ok),
                "an active grant with Drive fails a Drive call: {:?}",
                drive
            );
        }
        self.check_always().await
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run(steps: &[Step], rotate: bool) -> Result<(), TestCaseError> {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    tracing::info!("model run starts");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let secrets = runtime.block_on(async {
        let world = World::new();
        world.google.hold.store(true, Ordering::SeqCst);
        world.google.truth().rotate = rotate;
        let mut run = Run {
            world,
            ops: Vec::new(),
            now: 0,
            external: false,
            last_issue: None,
            last_held: Held::Nothing,
            checked_at: 0,
        };
        for step in steps {
            run.start(step);
            if matches!(step, Step::Settle) {
                run.settle_all().await?;
            } else {
                settle().await;
                run.reap().await?;
            }
            run.check_always().await?;
            if !run.running() && run.world.google.waiting().is_empty() {
                run.check_quiescent().await?;
            }
        }
        run.finish().await?;
        Ok::<_, TestCaseError>(run.world.google.truth().secrets.clone())
    })?;
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(PoisonError::into_inner))
        .into_owned();
    prop_assert!(
        logs.contains("model run starts"),
        "the log capture is broken"
    );
    for secret in secrets {
        prop_assert!(!logs.contains(&secret), "the logs show a secret");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // `PROPTEST_CASES` (as `just fuzz` sets) overrides the default of 256.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The invariants hold over any sequence of steps and any order of Google's answers.
    #[test]
    fn no_grant_is_ever_lost_or_corrupted(
        steps in prop::collection::vec(step(), 1..40),
        rotate in any::<bool>(),
    ) {
        run(&steps, rotate)?;
    }
}

#[test]
fn the_model_catches_a_stale_write() {
    // The checker itself must be able to fail: a record written back with a refresh token of a revoked grant
    // (what a refresh that started before a forget used to do) is caught.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let world = World::new();
        let first = world.google.mint(code(true, &[OPENID, EMAIL, DRIVE]));
        world.a().sign_in(&first, None).await.unwrap();
        let old = world.stored().await.unwrap();
        // Forgotten (Google revokes that grant), then a new grant.
        world.a().forget(&subject()).await.unwrap();
        let again = world.google.mint(code(true, &[OPENID, EMAIL, DRIVE]));
        world.a().sign_in(&again, None).await.unwrap();
        let mut run = Run {
            world,
            ops: Vec::new(),
            now: 0,
            external: false,
            last_issue: None,
            last_held: Held::Credential,
            checked_at: 0,
        };
        run.check_always().await.unwrap();
        let mut stale = run.world.stored().await.unwrap();
        stale.refresh_token = old.refresh_token.clone();
        crate::ports::CredentialStore::put(&run.world.store.inner, &stale)
            .await
            .unwrap();
        assert!(run.check_always().await.is_err());
    });
}

/// Interleavings the model found, kept as fixed cases (each lost or corrupted a grant before its fix).
#[test]
fn interleavings_the_model_found_stay_fixed() {
    use Step::*;
    let sign_in = |consent, scopes| SignIn {
        inst: 0,
        consent,
        scopes,
        incremental: false,
    };
    let cases: Vec<Vec<Step>> = vec![
        // The instance dies after Google took the sweep's revocation; a silent sign-in then cancelled the
        // pending revocation and kept its dead refresh token as active.
        vec![
            sign_in(false, ScopeChoice::Full),
            Answer {
                pick: 0,
                fail: false,
            },
            Forget { inst: 0 },
            Answer {
                pick: 0,
                fail: true,
            },
            Sweep { inst: 0 },
            sign_in(false, ScopeChoice::Full),
            Restart { inst: 0 },
            Settle,
            sign_in(false, ScopeChoice::Full),
            Answer {
                pick: 0,
                fail: false,
            },
        ],
        // A silent sign-in joined the grant the sweep then revoked, and was stored active; a later new grant
        // merged its scopes into the dead one's.
        vec![
            sign_in(false, ScopeChoice::Full),
            Settle,
            Forget { inst: 0 },
            sign_in(false, ScopeChoice::Full),
            Answer {
                pick: 1,
                fail: false,
            },
            Answer {
                pick: 0,
                fail: true,
            },
            sign_in(false, ScopeChoice::Calendar),
            Sweep { inst: 0 },
            Restart { inst: 1 },
            sign_in(false, ScopeChoice::Full),
        ],
        // Google could not tell whether a sign-in's token survived the sweep's revocation; the token replaced
        // the one a later sign-in had stored.
        vec![
            sign_in(false, ScopeChoice::Full),
            Settle,
            Forget { inst: 0 },
            Answer {
                pick: 0,
                fail: true,
            },
            Sweep { inst: 0 },
            sign_in(false, ScopeChoice::Full),
            sign_in(true, ScopeChoice::Full),
            sign_in(false, ScopeChoice::NoDrive),
            Answer {
                pick: 2,
                fail: false,
            },
            Answer {
                pick: 3,
                fail: false,
            },
            Answer {
                pick: 3,
                fail: false,
            },
            Answer {
                pick: 1,
                fail: true,
            },
        ],
    ];
    for (i, steps) in cases.iter().enumerate() {
        for rotate in [false, true] {
            if let Err(e) = run(steps, rotate) {
                panic!("case {i} (rotate {rotate}): {e}");
            }
        }
    }
}
