//! The crash matrix: a crash at every named fail point, on both backends, loses nothing
//! and does nothing twice.
//!
//! One workload exercises every step boundary: submissions (one screened out at once),
//! decisions, a rejection with its notice and a resubmission, approvals with their
//! account actions and notices, timers (SLA warning and breach, a resubmission window
//! expiring), a withdrawal. It runs once undisturbed — the reference — and then once per
//! fail point and kind of step the reference met it in (a command, the worker carrying
//! out notices and actions, the timer loop), armed to crash on that hit: the task that hits it never
//! resumes, the whole runtime is torn down as a kill would (open transactions roll back,
//! running jobs stay locked by the dead worker), the database is opened again by a new
//! runtime (the dead worker's heartbeat made stale, as time would), the interrupted
//! command is retried with its idempotency key, and the workload runs on to quiescence.
//!
//! Then the invariants: each appeal ends where the reference run left it, with the same
//! history, notifications and actions; each account change is in the ledger once; at the
//! crash no pending row was without its job and no open appeal without an armed timer;
//! history versions are contiguous. The matrix of fail points × backends is printed.

use crate::common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::common::TestDb;
use appealflow::app::intake::{Intake, LocalFiles};
use appealflow::domain::draft::DraftInput;
use appealflow::domain::{AccountInput, Actor, IdHasher, Role, TicketNumber};
use appealflow::engine::ManualClock;
use appealflow::failpoint::{self, Mode, POINTS};
use appealflow::jobs::Running;
use appealflow::startup::WorkConfig;
use appealflow::store::{Store, TimerStatus, WorkFilter};
use appealflow::workflow::Fire;
use serde_json::{Value, json};

const KEY: &str = "crash-matrix-key-0123456789abcdef";
const LEADS: &str = "leads@example.com";
/// How long a step may take before the run is declared stuck.
const STEP: Duration = Duration::from_secs(60);

use crate::common::examples;

fn accounts() -> Vec<Value> {
    let mut all: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(examples().join("accounts.json")).unwrap()).unwrap();
    all.retain(|a| a["name"] != "never-verified");
    all.push(json!({ "name": "nv", "verification": "none", "associations": { "domains": ["nv.example"] } }));
    all.push(json!({
        "name": "zhaoliu", "verification": "individual",
        "verified_individual": { "name": "Wang Wu", "id_number": "31010419781203005X" },
        "associations": { "phone": "13900005555" },
        "security": { "secure_phone": "13900005555", "mfa_attached": true }
    }));
    all
}

fn draft(name: &str, edit: impl FnOnce(&mut Value)) -> DraftInput {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(examples().join(name)).unwrap()).unwrap();
    edit(&mut v);
    serde_json::from_value(v).unwrap()
}

/// One running instance of appealflow on the test's database: what a process has.
struct Process {
    db: TestDb,
    intake: Arc<Intake>,
    worker: Running,
}

impl Process {
    async fn start(root: &TestDb, clock: Arc<ManualClock>, blobs: &std::path::Path) -> Process {
        let db = root.reopen().await;
        let config = WorkConfig { lead_emails: vec![LEADS.into()], ..Default::default() };
        let app = common::app(&db, clock, &config, Some(common::intake_config(blobs, KEY)));
        let intake = app.intake().expect("built with intake").clone();
        let worker = common::start_app_worker(&app);
        Process { db, intake, worker }
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.db.store
    }

    /// Ends everything at once, as a kill: the worker's tasks are dropped mid-step, and
    /// the connections closed (what they held rolls back).
    async fn kill(self) {
        self.worker.abort().await;
        drop(self.intake);
        match &self.db.backend {
            appealflow::startup::Backend::Sqlite(pool) => pool.close().await,
            appealflow::startup::Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// The tickets the workload creates, by label.
#[derive(Default)]
struct Tickets(BTreeMap<&'static str, TicketNumber>);

impl Tickets {
    fn get(&self, label: &str) -> TicketNumber {
        self.0.get(label).cloned().unwrap_or_else(|| panic!("no appeal {label} yet"))
    }
}

/// One step of the workload; each is safe to run again after a crash (commands carry
/// idempotency keys; the worker's runs simply run again).
#[derive(Debug, Clone, Copy)]
enum Step {
    Submit(&'static str),
    Fire(&'static str, &'static str),
    Resubmit(&'static str),
    Settle,
    RunUntil(&'static str),
}

const WORKLOAD: &[Step] = &[
    Step::Submit("A"),
    Step::Submit("B"),
    Step::Submit("C"),
    Step::Settle,
    Step::Fire("A", "claim"),
    Step::Fire("A", "approve"),
    Step::Settle,
    Step::Fire("B", "claim"),
    Step::Fire("B", "reject"),
    Step::Settle,
    Step::Resubmit("B"),
    Step::Fire("B", "claim"),
    Step::Fire("B", "approve"),
    // An enterprise's secure phone: four-eyes, a lead gives the second approval.
    Step::Fire("B", "confirm_approval"),
    Step::Settle,
    Step::Submit("D"),
    // Friday: D's SLA warning and breach fire, C's window (from Monday) closes, and A's
    // and B's cooling-off (secure phones) end on the way: their changes apply.
    Step::RunUntil("2026-03-13T00:00:01+08:00"),
    Step::Fire("D", "withdraw"),
    Step::Settle,
];

fn drafts(label: &str) -> DraftInput {
    match label {
        "A" => draft("draft-individual.json", |_| {}),
        "B" => draft("draft-enterprise.json", |_| {}),
        "C" => serde_json::from_value(json!({
            "entry_point": { "kind": "forgot_username", "lookup": "domain", "value": "nv.example" },
            "items": ["reset_password"],
            "contact_phone": "13812349999"
        }))
        .unwrap(),
        "D" => draft("draft-individual.json", |d| {
            d["entry_point"] = json!({ "kind": "forgot_password", "account": "zhaoliu" });
            d["contact_phone"] = json!("13812340000");
        }),
        other => panic!("no draft {other}"),
    }
}

async fn run_step(p: &Process, clock: &ManualClock, tickets: &mut Tickets, step: Step, n: usize) {
    let files = LocalFiles { base: examples() };
    let engine = p.intake.engine();
    let ann = Actor::new("ann", Role::Reviewer);
    match step {
        Step::Submit(label) => {
            let out = p.intake.submit(drafts(label), &files, Some(&format!("submit-{label}"))).await;
            let out = out.unwrap_or_else(|e| panic!("submit {label}: {e}"));
            tickets.0.insert(label, out.ticket);
        }
        Step::Fire(label, transition) => {
            let (actor, reasons) = match transition {
                "withdraw" => (Actor::new("applicant", Role::Applicant), vec![]),
                "reject" => (ann.clone(), vec!["missing_documents: proof_of_payment".to_string()]),
                "confirm_approval" => (Actor::new("lee", Role::Lead), vec![]),
                _ => (ann.clone(), vec![]),
            };
            let mut cmd = Fire::new(transition);
            cmd.reasons = reasons;
            let key = format!("step-{n}-{label}-{transition}");
            engine
                .fire(&tickets.get(label), &cmd, &actor, Some(&key))
                .await
                .unwrap_or_else(|e| panic!("{transition} {label}: {e}"));
        }
        Step::Resubmit(label) => {
            p.intake
                .resubmit(&tickets.get(label), drafts(label), &files, Some(&format!("resubmit-{label}")))
                .await
                .unwrap_or_else(|e| panic!("resubmit {label}: {e}"));
        }
        Step::Settle => p.worker.settle(STEP).await.expect("the worker settles"),
        Step::RunUntil(at) => {
            p.worker.run_until(clock, common::at(at), STEP).await.expect("the worker runs to the instant");
        }
    }
}

/// What a run leaves, per appeal: everything a crash must not change.
#[derive(Debug, PartialEq, Eq)]
struct Signature {
    state: String,
    outcome: Option<String>,
    transitions: Vec<String>,
    notifications: Vec<(String, String, String)>,
    actions: Vec<(String, String)>,
    ledger_keys: usize,
}

async fn signatures(store: &dyn Store, tickets: &Tickets) -> BTreeMap<&'static str, Signature> {
    let ledger = store.ledger().await.unwrap();
    let mut out = BTreeMap::new();
    for (label, ticket) in &tickets.0 {
        let r = store.appeal_by_ticket(ticket).await.unwrap().unwrap();
        let history = store.history(&r.id).await.unwrap();
        let seqs: Vec<i64> = history.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=r.version).collect::<Vec<_>>(), "{label}: history versions contiguous");
        let filter = WorkFilter { appeal_id: Some(r.id.clone()), ..Default::default() };
        let mut notifications: Vec<_> = store
            .notifications(&filter)
            .await
            .unwrap()
            .into_iter()
            .map(|n| (n.template, n.channel, n.status.to_string()))
            .collect();
        notifications.sort();
        let mut actions: Vec<_> =
            store.actions(&filter).await.unwrap().into_iter().map(|a| (a.action, a.status.to_string())).collect();
        actions.sort();
        out.insert(
            *label,
            Signature {
                state: r.state,
                outcome: r.outcome,
                transitions: history.into_iter().map(|e| e.transition).collect(),
                notifications,
                actions,
                ledger_keys: ledger.iter().filter(|(k, _)| k.starts_with(&r.id)).count(),
            },
        );
    }
    out
}

/// What must hold at any instant, crash or not: every pending notification or action has
/// its job, and every open appeal has an armed timer (a way out that needs no one else).
async fn holds_at_rest(store: &dyn Store) -> Result<(), String> {
    let unqueued = store.unqueued_work(100).await.map_err(|e| e.to_string())?;
    if !unqueued.is_empty() {
        return Err(format!("pending rows without a job: {unqueued:?}"));
    }
    for r in store.list_appeals(&Default::default()).await.map_err(|e| e.to_string())? {
        if r.outcome.is_some() {
            continue;
        }
        let timers = store.timers(Some(&r.id)).await.map_err(|e| e.to_string())?;
        if !timers.iter().any(|t| t.status == TimerStatus::Armed) {
            return Err(format!("open appeal {} ({}) has no armed timer", r.ticket, r.state));
        }
    }
    Ok(())
}

/// A rule of the workload the reference run must show (so the matrix compares against
/// the right thing).
fn check_reference(sig: &BTreeMap<&'static str, Signature>) {
    let closed = |l: &str| (sig[l].state.as_str(), sig[l].outcome.as_deref());
    assert_eq!(closed("A"), ("closed", Some("completed")));
    assert_eq!(closed("B"), ("closed", Some("completed")));
    assert_eq!(closed("C"), ("closed", Some("expired")));
    assert_eq!(closed("D"), ("closed", Some("withdrawn")));
    assert_eq!(sig["A"].ledger_keys, 2, "rotate the phone, detach MFA");
    assert_eq!(sig["B"].ledger_keys, 2, "rotate the phone, clear the IP mask");
    assert!(sig["C"].transitions.starts_with(&["submit".to_string(), "screen_reject".to_string()]));
    assert!(sig["D"].transitions.contains(&"sla_breached".to_string()), "{:?}", sig["D"]);
}

/// What a run did: its signatures, the step a crash interrupted (if one did), and how
/// often each fail point had been hit when each step ended.
struct Run {
    sig: BTreeMap<&'static str, Signature>,
    crashed_in: Option<usize>,
    hits_after: Vec<BTreeMap<&'static str, usize>>,
}

/// Runs the workload on a fresh database; with `crash`, crashes at that hit of that fail
/// point once, and restarts.
async fn run(db: TestDb, crash: Option<(&'static str, usize)>) -> Run {
    let blobs = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let hasher = IdHasher::new(KEY.as_bytes()).unwrap();
    let accounts: Vec<_> = accounts()
        .into_iter()
        .map(|a| serde_json::from_value::<AccountInput>(a).unwrap().into_account("test", &hasher).unwrap())
        .collect();
    db.store.put_accounts(&accounts, common::monday_morning()).await.unwrap();
    let scope = db.store.scope().to_string();
    failpoint::disarm(&scope);
    if let Some((point, nth)) = crash {
        failpoint::arm(&scope, point, Mode::Crash, nth);
    }
    let mut process = Process::start(&db, clock.clone(), blobs.path()).await;
    let mut tickets = Tickets::default();
    let mut crashed_at = None;
    let mut hits_after = Vec::new();
    let mut n = 0;
    while n < WORKLOAD.len() {
        let step = WORKLOAD[n];
        let outcome = race(run_step(&process, &clock, &mut tickets, step, n), failpoint::crashed(&scope)).await;
        match outcome {
            Ok(()) => {
                hits_after.push(failpoint::hits(&scope));
                n += 1;
            }
            Err(at) => {
                assert!(crashed_at.is_none(), "one crash per run");
                crashed_at = Some(n);
                process.kill().await;
                // What the crash left must already hold: nothing half-done is visible.
                let after = root_store(&db).await;
                if let Err(e) = holds_at_rest(after.as_ref()).await {
                    panic!("after a crash at {at} in step {n} ({step:?}): {e}");
                }
                failpoint::disarm(&scope);
                stale_workers(&db).await;
                process = Process::start(&db, clock.clone(), blobs.path()).await;
                // The interrupted step runs again (a command with its key).
            }
        }
    }
    let sig = signatures(process.store().as_ref(), &tickets).await;
    holds_at_rest(process.store().as_ref()).await.unwrap_or_else(|e| panic!("at the end: {e}"));
    let ledger = process.store().ledger().await.unwrap();
    let keys: std::collections::BTreeSet<&String> = ledger.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), ledger.len(), "each account change once in the ledger");
    process.worker.stop().await.expect("the worker stops");
    failpoint::disarm(&scope);
    Run { sig, crashed_in: crashed_at, hits_after }
}

/// The kind of a step, for choosing where to crash.
fn kind(step: Step) -> &'static str {
    match step {
        Step::Submit(_) => "submit",
        Step::Fire(..) => "decision",
        Step::Resubmit(_) => "resubmit",
        Step::Settle => "worker",
        Step::RunUntil(_) => "timers",
    }
}

/// For each fail point, the first hit the reference run made during each kind of step.
fn crash_sites(reference: &Run) -> Vec<(&'static str, usize, &'static str)> {
    let mut sites = Vec::new();
    for point in POINTS {
        let mut seen = std::collections::BTreeSet::new();
        let mut before = 0;
        for (i, hits) in reference.hits_after.iter().enumerate() {
            let after = hits.get(point).copied().unwrap_or(0);
            if after > before && seen.insert(kind(WORKLOAD[i])) {
                sites.push((*point, before + 1, kind(WORKLOAD[i])));
            }
            before = after;
        }
    }
    sites
}

/// The step, or the point a task crashed at (whichever comes first).
async fn race(step: impl Future<Output = ()>, crash: impl Future<Output = &'static str>) -> Result<(), &'static str> {
    tokio::select! {
        biased;
        point = crash => Err(point),
        () = step => Ok(()),
    }
}

async fn root_store(db: &TestDb) -> Arc<dyn Store> {
    db.reopen().await.store
}

/// The dead worker's heartbeat is made old, as the time a restart takes would make it:
/// the next worker's heartbeat then hands its locked jobs back to the queue.
async fn stale_workers(db: &TestDb) {
    if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE Workers SET last_seen = last_seen - 3600").execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE apalis.workers SET last_seen = last_seen - interval '1 hour'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
}

/// Every fail point on one backend: the reference run, then one run per fail point and
/// kind of step the reference met it in.
async fn matrix(
    backend: &'static str,
    fresh: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = TestDb>>>,
) -> Vec<String> {
    let reference = run(fresh().await, None).await;
    check_reference(&reference.sig);
    let sites = crash_sites(&reference);
    for point in POINTS {
        assert!(sites.iter().any(|(p, _, _)| p == point), "{backend}: the workload never reached fail point {point}");
    }
    let mut rows = Vec::new();
    for (point, nth, met_in) in sites {
        let crashed = run(fresh().await, Some((point, nth))).await;
        let step = crashed
            .crashed_in
            .unwrap_or_else(|| panic!("{backend}: no crash at hit {nth} of {point} (met in a {met_in} step before)"));
        for (label, expected) in &reference.sig {
            assert_eq!(
                &crashed.sig[label], expected,
                "{backend}: appeal {label} after a crash at hit {nth} of {point} (step {step})"
            );
        }
        rows.push(format!(
            "{point:<22} hit {nth:>2} ({met_in:<8}) crashed in step {step:>2} {:<10} held",
            kind(WORKLOAD[step])
        ));
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "about two minutes: run apart (CI's process-test step), cargo test --test crash_matrix -- --ignored"]
async fn a_crash_at_every_fail_point_on_sqlite_and_postgres_then_a_restart_loses_nothing_and_repeats_nothing() {
    let sqlite = matrix("sqlite", || Box::pin(common::sqlite()));
    let postgres = async {
        match common::postgres("crash matrix").await {
            Some(first) => {
                let first = std::sync::Mutex::new(Some(first));
                Some(
                    matrix("postgres", move || {
                        let taken = first.lock().unwrap().take();
                        Box::pin(async move {
                            match taken {
                                Some(db) => db,
                                None => common::postgres("crash matrix").await.expect("configured"),
                            }
                        })
                    })
                    .await,
                )
            }
            None => None,
        }
    };
    let (sqlite, postgres) = tokio::join!(sqlite, postgres);
    let mut table = format!(
        "crash matrix: {} fail points, {} crash sites on sqlite, {} on postgres\n",
        POINTS.len(),
        sqlite.len(),
        postgres.as_ref().map_or(0, Vec::len)
    );
    for row in &sqlite {
        table.push_str(&format!("  sqlite    {row}\n"));
    }
    for row in postgres.iter().flatten() {
        table.push_str(&format!("  postgres  {row}\n"));
    }
    if postgres.is_none() {
        table.push_str("  postgres  SKIPPED (postgres): set APPEALFLOW_TEST_POSTGRES_URL\n");
    }
    use std::io::Write;
    let _ = std::io::stderr().write_all(table.as_bytes());
}
