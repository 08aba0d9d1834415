//! Fault tests of the job worker as real processes against real databases:
//!
//! - `kill -9` in the middle of post-approval actions and an immediate restart, again
//!   and again, with every action still applied exactly once (counted by a recording
//!   HTTP endpoint on loopback, and in the built-in directory's ledger) and every appeal
//!   completed. Slow, so it runs as its own CI step: `cargo test --test worker_faults --
//!   --ignored` (`APPEALFLOW_KILLS`, default 40; `APPEALFLOW_KILL_APPEALS`, default 200).
//! - Three workers at once on PostgreSQL firing each timer and applying each action once.
//! - A failing account endpoint retried with the persisted backoff across a restart,
//!   then recorded as failed for good (the leads alerted), then retried by hand.
//! - A storm of database failures during work (PostgreSQL: the worker's connections
//!   terminated ten times in two seconds; SQLite: another writer holding the lock, ten
//!   times in two seconds, past the worker's busy timeout): the worker's loops restart
//!   and every approved appeal still closes.
//! - A database the worker cannot write: `/readyz` answers 503 naming the loops that are
//!   down, and the standalone worker gives up and exits non-zero.
//!
//! The workers are the built binary (`appealflow worker` / `serve`), started and killed
//! as child processes; the appeals are set up through the library on the same database.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::TestDb;
use appealflow::adapters::notify::sign;
use appealflow::app::intake::{Intake, LocalFiles};
use appealflow::domain::draft::DraftInput;
use appealflow::domain::{Account, AccountInput, Actor, IdHasher, PhoneNumber, Role, TicketNumber};
use appealflow::engine::{EngineError, ManualClock};
use appealflow::jobs::{ACTIONS_QUEUE, NOTIFICATIONS_QUEUE};
use appealflow::startup::WorkConfig;
use appealflow::store::{
    ActionStatus, AppealRecord, JobFilter, JobRecord, NotificationStatus, TimerStatus, WorkFilter,
};
use appealflow::workflow::Fire;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rand::Rng;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_appealflow");
const ID_KEY: &str = "worker-faults-key-0123456789abcdef";
const ACTIONS_SECRET: &str = "recording-endpoint-secret";
/// The verified individual of every generated individual account (and the operator).
const INDIVIDUAL_ID: &str = "31010419781203005X";
/// The legal representative of every generated enterprise account.
const REP_ID: &str = "110101199003071233";
/// The enterprises' operator (not the legal representative).
const OPERATOR_ID: &str = "440304198506152416";

const INDIVIDUAL_ACTIONS: [&str; 4] =
    ["rotate_secure_phone", "detach_mfa", "clear_security_questions", "clear_ip_logon_mask"];
const ENTERPRISE_ACTIONS: [&str; 3] = ["rotate_secure_phone", "detach_mfa", "clear_ip_logon_mask"];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

use crate::common::examples;

/// Written straight to the stderr handle so figures show with `--nocapture` and are not
/// interleaved mid-line with other tests' output.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

// ------------------------------------------------------------ recording endpoint

/// One request as the endpoint saw it.
#[derive(Debug, Clone)]
struct Hit {
    action: String,
    key: String,
    at: Instant,
    status: u16,
    body: Value,
    signature_ok: bool,
}

#[derive(Default)]
struct Seen {
    hits: Vec<Hit>,
    /// Keys applied (once each), with the request that applied them.
    applied: BTreeMap<String, Value>,
}

struct EndpointState {
    seen: Mutex<Seen>,
    /// What to answer: 200 applies (once per key) and answers; anything else fails.
    status: AtomicU16,
    delay_ms: (u64, u64),
}

/// An account-actions endpoint on loopback that records every request and, like a
/// well-behaved receiver, applies each Idempotency-Key once and answers 200 to repeats.
struct Endpoint {
    base_url: String,
    state: Arc<EndpointState>,
    server: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(s): State<Arc<EndpointState>>,
    UrlPath(action): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let at = Instant::now();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let key = header("idempotency-key").unwrap_or_default();
    let signature_ok = match (
        header("x-appealflow-timestamp").and_then(|t| t.parse::<i64>().ok()),
        header("x-appealflow-signature"),
    ) {
        (Some(ts), Some(sig)) => sig == format!("sha256={}", sign(ACTIONS_SECRET.as_bytes(), ts, &body)),
        _ => false,
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = s.status.load(Ordering::SeqCst);
    {
        let mut seen = s.seen.lock().unwrap();
        seen.hits.push(Hit {
            action: action.clone(),
            key: key.clone(),
            at,
            status,
            body: parsed.clone(),
            signature_ok,
        });
        // Applied as soon as it arrives: a worker killed while waiting for the answer
        // leaves an applied change it does not know about, and must repeat the key.
        if status == 200 && !key.is_empty() {
            seen.applied.entry(key).or_insert(parsed);
        }
    }
    let (lo, hi) = s.delay_ms;
    if hi > 0 {
        let delay = rand::rng().random_range(lo..=hi);
        tokio::time::sleep(ms(delay)).await;
    }
    if status != 200 {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (code, axum::Json(json!({ "error": "the account service is unavailable" })));
    }
    let before = if action == "rotate_secure_phone" { json!({ "secure_phone": "+8613900000000" }) } else { json!({}) };
    (StatusCode::OK, axum::Json(json!({ "before": before })))
}

impl Endpoint {
    async fn start(status: u16, delay_ms: (u64, u64)) -> Endpoint {
        let state =
            Arc::new(EndpointState { seen: Mutex::new(Seen::default()), status: AtomicU16::new(status), delay_ms });
        let app = Router::new()
            .route("/actions/{action}", post(receive))
            // A notification webhook that is down.
            .route("/notify", post(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("recording endpoint serves");
        });
        Endpoint { base_url: format!("http://{addr}/actions"), state, server }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("APPEALFLOW_ACTIONS_URL", self.base_url.clone()), ("APPEALFLOW_ACTIONS_SECRET", ACTIONS_SECRET.into())]
    }

    fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.seen.lock().unwrap().hits.clone()
    }

    fn applied(&self) -> BTreeMap<String, Value> {
        self.state.seen.lock().unwrap().applied.clone()
    }

    fn hits_for(&self, key: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.key == key).collect()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ----------------------------------------------------------------------- harness

/// An appeal the test approved, and what its actions must do.
#[derive(Debug, Clone)]
struct Approved {
    ticket: TicketNumber,
    id: String,
    account: String,
    contact_phone: PhoneNumber,
    actions: Vec<&'static str>,
}

impl Approved {
    fn keys(&self) -> Vec<String> {
        self.actions.iter().map(|a| format!("{}:{a}", self.id)).collect()
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// One test's database, library handles on it, and the environment its processes get.
struct Setup {
    db: TestDb,
    intake: Arc<Intake>,
    dir: tempfile::TempDir,
    spawned: usize,
}

impl Setup {
    /// The library side runs on a manual clock stopped at a Monday morning in March 2026:
    /// approvals cancel the review SLA, and appeals left submitted have SLA timers that
    /// are long due for the workers, which run on the real clock.
    async fn new(db: TestDb) -> Setup {
        Setup::at(db, common::monday_morning()).await
    }

    /// The library side's clock stopped at `now`.
    async fn at(db: TestDb, now: chrono::DateTime<chrono::Utc>) -> Setup {
        let clock = Arc::new(ManualClock::new(now));
        let dir = tempfile::tempdir().unwrap();
        let config = common::intake_config(dir.path().join("blobs"), ID_KEY);
        let app = common::app(&db, clock, &WorkConfig::default(), Some(config));
        let intake = app.intake().expect("built with intake").clone();
        Setup { db, intake, dir, spawned: 0 }
    }

    /// As [`Setup::new`], with jobs enqueued by the library side allowed `max_attempts`
    /// (every process must agree on it: it is written with each job).
    async fn with_attempts(db: TestDb, max_attempts: usize) -> Setup {
        let options = appealflow::startup::DbOptions { max_attempts, ..Default::default() };
        let (store, backend) = appealflow::startup::open_with(&db.url, &options).await.unwrap();
        let db = TestDb { store, backend, ..db };
        Setup::new(db).await
    }

    fn store(&self) -> &Arc<dyn appealflow::store::Store> {
        &self.db.store
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("worker.log")
    }

    /// The binary with this test's database and settings, and no stray configuration.
    fn command(&self, args: &[&str], envs: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("APPEALFLOW_DATABASE_URL", &self.db.url)
            .env("APPEALFLOW_WORKFLOWS", common::workflows_dir())
            .env("APPEALFLOW_ID_HASH_KEY", ID_KEY)
            .env("APPEALFLOW_BLOB_DIR", self.dir.path().join("blobs"))
            .env("APPEALFLOW_LOG", "info")
            .env_remove("APPEALFLOW_ALLOW_CLOCK_OVERRIDE")
            .env_remove("APPEALFLOW_ACTIONS_URL")
            .env_remove("APPEALFLOW_ACTIONS_SECRET")
            .env_remove("APPEALFLOW_LEAD_EMAILS")
            .env_remove("APPEALFLOW_NOTIFY_WEBHOOK_URL")
            .env_remove("APPEALFLOW_NOTIFY_WEBHOOK_SECRET")
            .stdin(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `appealflow worker ARGS`; its output is appended to the test's log.
    fn spawn_worker(&mut self, args: &[&str], envs: &[(&str, String)]) -> Worker {
        self.spawned += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        writeln!(log, "===== worker start #{} {:?}", self.spawned, args).unwrap();
        let err: File = log.try_clone().unwrap();
        let mut all = vec!["worker"];
        all.extend_from_slice(args);
        Worker(
            self.command(&all, envs)
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(err))
                .spawn()
                .expect("the worker starts"),
        )
    }

    /// Runs a command to completion without blocking the runtime's threads.
    async fn cli(&self, args: &[&str], envs: &[(&str, String)]) -> Run {
        let mut cmd = tokio::process::Command::from(self.command(args, envs));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = cmd.output().await.expect("the binary runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn put_accounts(&self, accounts: &[Value]) {
        let hasher = IdHasher::new(ID_KEY.as_bytes()).unwrap();
        let accounts: Vec<Account> = accounts
            .iter()
            .map(|v| {
                serde_json::from_value::<AccountInput>(v.clone())
                    .expect("account JSON has the import shape")
                    .into_account("accounts", &hasher)
                    .expect("valid account")
            })
            .collect();
        self.store().put_accounts(&accounts, common::monday_morning()).await.expect("accounts import");
    }

    async fn submit(&self, draft: &Value) -> TicketNumber {
        let input: DraftInput = serde_json::from_value(draft.clone()).expect("draft JSON has the input shape");
        let files = LocalFiles { base: examples() };
        self.intake.submit(input, &files, None).await.unwrap_or_else(|e| panic!("submit: {e}")).ticket
    }

    async fn fire(&self, ticket: &TicketNumber, transition: &str) {
        self.intake
            .engine()
            .fire(ticket, &Fire::new(transition), &Actor::new("ann", Role::Reviewer), None)
            .await
            .unwrap_or_else(|e| panic!("{transition}: {e}"));
    }

    async fn record(&self, ticket: &TicketNumber) -> AppealRecord {
        self.store().appeal_by_ticket(ticket).await.unwrap().expect("the appeal exists")
    }

    /// `n` accounts, each with one appeal submitted, claimed and approved (alternately
    /// an individual asking for four account changes and an enterprise asking for three).
    async fn approved_appeals(&self, n: usize, first: usize) -> Vec<Approved> {
        let range = first..first + n;
        let accounts: Vec<Value> = range.clone().map(account).collect();
        self.put_accounts(&accounts).await;
        let mut out = Vec::new();
        for i in range {
            out.push(self.approve(i).await);
        }
        out
    }

    /// Submits, claims and approves account `i`'s appeal (the account must exist). A
    /// worker may be running meanwhile, firing the appeal's long-due timers (on the real
    /// clock): a lost race or a released claim is simply tried again.
    async fn approve(&self, i: usize) -> Approved {
        let (draft, actions) = approved_draft(i);
        let ticket = self.submit(&draft).await;
        let engine = self.intake.engine();
        let mut tries = 0;
        loop {
            let record = self.record(&ticket).await;
            let (next, by) = match record.state.as_str() {
                "submitted" => ("claim", "ann"),
                "under_review" => ("approve", "ann"),
                // Four-eyes (an enterprise's secure phone): someone else confirms it.
                "awaiting_second_approval" => ("confirm_approval", "bea"),
                // The secure phone's cooling-off: ended now, as its timer would in 24 hours
                // (these tests are about the work that follows).
                "cooling_off" => ("cooling_off_elapsed", "appealflow"),
                "approved" | "closed" => {
                    return Approved {
                        ticket,
                        id: record.id,
                        account: account_name(i),
                        contact_phone: PhoneNumber::parse(&new_phone(i)).unwrap(),
                        actions,
                    };
                }
                other => panic!("{ticket} is {other}"),
            };
            tries += 1;
            assert!(tries < 50, "{ticket}: {next} keeps losing races");
            let actor = if next == "cooling_off_elapsed" { Actor::system() } else { Actor::new(by, Role::Reviewer) };
            match engine.fire(&ticket, &Fire::new(next), &actor, None).await {
                Ok(_) | Err(EngineError::Conflict { .. } | EngineError::Refused(_)) => {}
                Err(e) => panic!("{next}: {e}"),
            }
        }
    }

    /// Every appeal in `tickets` that is not closed as completed, with its state.
    async fn unfinished(&self, appeals: &[Approved]) -> Vec<String> {
        let mut out = Vec::new();
        for a in appeals {
            let r = self.record(&a.ticket).await;
            if !(r.state == "closed" && r.outcome.as_deref() == Some("completed")) {
                out.push(format!("{} {}", a.ticket, r.state));
            }
        }
        out
    }

    async fn actions_succeeded(&self) -> usize {
        let done = WorkFilter { status: Some("succeeded".into()), ..Default::default() };
        self.store().actions(&done).await.unwrap().len()
    }

    /// Starts `appealflow serve` on a free loopback port; answers the process and its URL.
    async fn spawn_serve(&mut self, envs: &[(&str, String)]) -> (Worker, String) {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let listen = format!("127.0.0.1:{port}");
        self.spawned += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        writeln!(log, "===== serve start #{}", self.spawned).unwrap();
        let err: File = log.try_clone().unwrap();
        let child = self
            .command(&["serve", "--listen", &listen], envs)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("serve starts");
        let url = format!("http://{listen}");
        let start = Instant::now();
        while reqwest::get(format!("{url}/healthz")).await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "serve did not answer\n{}", self.log_tail(30));
            tokio::time::sleep(ms(50)).await;
        }
        (Worker(child), url)
    }

    /// What a reader needs when a wait times out.
    async fn diagnostics(&self, appeals: &[Approved]) -> String {
        let log = self.log();
        let mut out = String::new();
        for a in appeals {
            let r = self.record(&a.ticket).await;
            if r.state == "closed" {
                continue;
            }
            out.push_str(&format!("appeal {} {} {:?}\n", a.ticket, r.state, r.outcome));
            let filter = WorkFilter { appeal_id: Some(a.id.clone()), ..Default::default() };
            for x in self.store().actions(&filter).await.unwrap() {
                out.push_str(&format!(
                    "  action {} {} {} attempts {} updated {} {:?}\n",
                    x.id, x.action, x.status, x.attempts, x.updated_at, x.last_error
                ));
            }
            // What the workers logged about it, with the worker starts around it.
            let ticket = a.ticket.to_string();
            for line in log.lines().filter(|l| l.contains(&ticket) || l.starts_with("=====")) {
                out.push_str(&format!("  | {line}\n"));
            }
        }
        for j in self.store().jobs(&JobFilter::default()).await.unwrap() {
            if j.status != "Done" {
                out.push_str(&format!(
                    "job {} {} {} {}/{} run_at {} {} {:?}\n",
                    j.id, j.queue, j.status, j.attempts, j.max_attempts, j.run_at, j.args, j.last_result
                ));
            }
        }
        out.push_str("--- worker log: errors\n");
        for line in log.lines().filter(|l| l.contains("ERROR")).take(20) {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("--- worker log (tail)\n");
        out.push_str(&self.log_tail(40));
        out
    }

    /// The workers' log, without terminal colours.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Lines of the workers' log that report a loop restarted after a failure.
    fn restarts(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("ERROR") && (l.contains("restarting it") || l.contains("trying again")))
            .count()
    }

    /// Waits (at most `limit`) until every appeal is closed as completed.
    async fn wait_completed(&self, appeals: &[Approved], limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.unfinished(appeals).await.is_empty() {
                return start.elapsed();
            }
            if start.elapsed() > limit {
                panic!(
                    "not every appeal completed within {limit:?}: {:?}\n{}",
                    self.unfinished(appeals).await,
                    self.diagnostics(appeals).await
                );
            }
            tokio::time::sleep(ms(200)).await;
        }
    }

    /// The built-in directory's ledger: (idempotency key, account, action), one row per
    /// change ever applied.
    async fn ledger(&self) -> Vec<(String, String, String)> {
        const SQL: &str =
            "SELECT idempotency_key, account, action FROM applied_account_changes ORDER BY idempotency_key";
        if self.db.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.db.url).await.unwrap();
            let rows = sqlx::query_as::<_, (String, String, String)>(SQL).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        } else {
            let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
            let rows = sqlx::query_as::<_, (String, String, String)>(SQL).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    }

    /// Every appeal is completed, each action succeeded once with the key derived from
    /// (appeal, action), and the history has exactly one `complete`.
    async fn assert_completed_once(&self, appeals: &[Approved]) {
        for a in appeals {
            let r = self.record(&a.ticket).await;
            assert_eq!((r.state.as_str(), r.outcome.as_deref()), ("closed", Some("completed")), "{}", a.ticket);
            let completes =
                self.store().history(&a.id).await.unwrap().iter().filter(|e| e.transition == "complete").count();
            assert_eq!(completes, 1, "{}: one complete event", a.ticket);
            let actions = self
                .store()
                .actions(&WorkFilter { appeal_id: Some(a.id.clone()), ..Default::default() })
                .await
                .unwrap();
            let mut names: Vec<&str> = actions.iter().map(|x| x.action.as_str()).collect();
            names.sort_unstable();
            let mut expected = a.actions.clone();
            expected.sort_unstable();
            assert_eq!(names, expected, "{}: the actions its items call for", a.ticket);
            for x in &actions {
                assert_eq!(x.status, ActionStatus::Succeeded, "{} {}", a.ticket, x.action);
                assert_eq!(x.idempotency_key, format!("{}:{}", a.id, x.action));
            }
        }
    }

    /// The accounts changed exactly as the actions say, and nothing else changed.
    async fn assert_accounts_changed(&self, appeals: &[Approved]) {
        for a in appeals {
            let acct = self.store().account(&a.account).await.unwrap().expect("the account exists");
            let s = &acct.security;
            assert_eq!(s.secure_phone.as_ref(), Some(&a.contact_phone), "{}: secure phone = contact phone", a.account);
            assert!(!s.mfa_attached, "{}: MFA detached", a.account);
            assert_eq!(s.ip_logon_mask, None, "{}: IP logon mask cleared", a.account);
            let clears_questions = a.actions.contains(&"clear_security_questions");
            assert_eq!(s.security_questions_set, !clears_questions, "{}: security questions", a.account);
            assert_eq!(s.security_email.as_deref(), Some(security_email(&a.account).as_str()), "{}", a.account);
        }
    }
}

/// A worker process, killed when dropped so that a failing test leaves none behind.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM and waits (at most `limit`) for the process to exit.
async fn terminate(worker: &mut Worker, limit: Duration) -> ExitStatus {
    let child = &mut worker.0;
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill runs");
    assert!(status.success(), "kill -TERM {}", child.id());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the worker did not stop within {limit:?} of SIGTERM");
        }
        tokio::time::sleep(ms(50)).await;
    }
}

/// SIGKILL, and reap.
fn kill9(worker: &mut Worker) {
    worker.0.kill().expect("SIGKILL");
    worker.0.wait().expect("reaped");
}

// ------------------------------------------------------------------ generated data

fn account_name(i: usize) -> String {
    if i.is_multiple_of(2) { format!("person-{i:03}") } else { format!("firm-{i:03}") }
}

fn old_phone(i: usize) -> String {
    format!("139{i:08}")
}

fn new_phone(i: usize) -> String {
    format!("137{i:08}")
}

fn security_email(account: &str) -> String {
    format!("security@{account}.example")
}

fn account(i: usize) -> Value {
    let name = account_name(i);
    let security = json!({
        "secure_phone": old_phone(i),
        "security_email": security_email(&name),
        "mfa_attached": true,
        "security_questions_set": true,
        "ip_logon_mask": "10.0.0.0/8"
    });
    if i.is_multiple_of(2) {
        json!({
            "name": name, "verification": "individual",
            "verified_individual": { "name": "Wang Wu", "id_number": INDIVIDUAL_ID },
            "associations": { "phone": old_phone(i) },
            "security": security
        })
    } else {
        json!({
            "name": name, "verification": "enterprise", "enterprise_name": format!("Firm {i} Co., Ltd."),
            "enterprise_status": "active",
            "legal_representative": { "name": "Zhang San", "id_number": REP_ID },
            "associations": { "domains": [format!("{name}.example")] },
            "security": security
        })
    }
}

fn face(i: usize) -> Value {
    json!({ "result": "passed", "provider": "test-face", "reference": format!("fr-{i:04}") })
}

/// An individual appeal for `person-i` asking only for `items`.
fn individual_draft(i: usize, items: &[&str]) -> Value {
    json!({
        "entry_point": { "kind": "forgot_password", "account": account_name(i) },
        "items": items,
        "operator": { "kind": "verified_individual", "name": "Wang Wu", "id_number": INDIVIDUAL_ID, "facial_recognition": face(i) },
        "contact_phone": new_phone(i),
        "contact_email": format!("applicant-{i}@example.com")
    })
}

/// The draft for account `i`, and the actions its approval must apply.
fn approved_draft(i: usize) -> (Value, Vec<&'static str>) {
    if i.is_multiple_of(2) {
        let items = ["change_secure_phone", "detach_mfa", "clear_security_questions", "clear_ip_logon_mask"];
        (individual_draft(i, &items), INDIVIDUAL_ACTIONS.to_vec())
    } else {
        let draft = json!({
            "entry_point": { "kind": "forgot_password", "account": account_name(i) },
            "items": ["change_secure_phone", "clear_ip_logon_mask", "detach_mfa"],
            "scenario": "active",
            "operator": { "name": "Li Si", "id_number": OPERATOR_ID, "facial_recognition": face(i) },
            "contact_phone": new_phone(i),
            "documents": [
                { "kind": "business_license", "file": "documents/licence.jpg" },
                { "kind": "enterprise_appeal_letter", "file": "documents/letter.pdf", "stamped": true },
                { "kind": "proof_of_payment", "file": "documents/receipt.png" }
            ]
        });
        (draft, ENTERPRISE_ACTIONS.to_vec())
    }
}

/// Jobs of one queue, by their arguments (the ID they carry).
fn jobs_by_args<'a>(jobs: &'a [JobRecord], queue: &str) -> BTreeMap<String, Vec<&'a JobRecord>> {
    let mut by: BTreeMap<String, Vec<&JobRecord>> = BTreeMap::new();
    for j in jobs.iter().filter(|j| j.queue == queue) {
        by.entry(j.args.to_string()).or_default().push(j);
    }
    by
}

// ---------------------------------------------------- 1. kill -9 during actions

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Kills, then one worker to the end: every appeal completed, and every (appeal,
/// action) key applied exactly once — at the recording endpoint (`http`) or in the
/// built-in directory's ledger and accounts. `APPEALFLOW_KILLS` restarts (default 40),
/// `APPEALFLOW_KILL_APPEALS` appeals in all (default 200): most approved before the
/// first worker starts, one more approved in each round.
async fn kill_loop(db: TestDb, http: bool) {
    let started = Instant::now();
    let backend = db.store.backend();
    let label = format!("kill -9 / {backend} / {}", if http { "HTTP adapter" } else { "built-in accounts table" });
    let mut s = Setup::new(db).await;
    let kills = env_count("APPEALFLOW_KILLS", 40);
    let total = env_count("APPEALFLOW_KILL_APPEALS", 200).max(kills + 1);
    let first = total - kills;
    s.put_accounts(&(0..total).map(account).collect::<Vec<_>>()).await;
    let mut appeals = Vec::new();
    for i in 0..first {
        appeals.push(s.approve(i).await);
    }
    let endpoint = if http { Some(Endpoint::start(200, (50, 150)).await) } else { None };
    let envs = endpoint.as_ref().map(Endpoint::env).unwrap_or_default();
    let envs: Vec<(&str, String)> = envs.iter().map(|(k, v)| (*k, v.clone())).collect();
    let args = ["--poll-ms", "100", "--backoff-secs", "1"];

    let delays: Vec<u64> = {
        let mut rng = rand::rng();
        (0..kills).map(|_| rng.random_range(100..=700)).collect()
    };
    // Each round: a worker starts, one more appeal is approved (so that every worker
    // finds fresh post-approval work, not only jobs a killed predecessor still holds),
    // and after 100-700 ms the worker is killed.
    let mut progress = Vec::new();
    for (round, delay) in delays.iter().enumerate() {
        let mut child = s.spawn_worker(&args, &envs);
        let t = Instant::now();
        appeals.push(s.approve(first + round).await);
        tokio::time::sleep(ms(*delay).saturating_sub(t.elapsed())).await;
        kill9(&mut child);
        progress.push(s.actions_succeeded().await);
    }
    let succeeded_at_last_kill = s.actions_succeeded().await;
    let expected_keys: BTreeSet<String> = appeals.iter().flat_map(Approved::keys).collect();

    let mut child = s.spawn_worker(&args, &envs);
    let recovery = s.wait_completed(&appeals, Duration::from_secs(300)).await;
    let status = terminate(&mut child, Duration::from_secs(40)).await;
    assert!(status.success(), "the worker exits cleanly on SIGTERM: {status}\n{}", s.log_tail(40));

    s.assert_completed_once(&appeals).await;
    let per_key_figure = if let Some(endpoint) = &endpoint {
        let hits = endpoint.hits();
        assert!(hits.iter().all(|h| h.signature_ok), "every request is signed with the shared secret");
        let applied = endpoint.applied();
        let applied_keys: BTreeSet<String> = applied.keys().cloned().collect();
        assert_eq!(applied_keys, expected_keys, "each (appeal, action) key applied, and no other key used");
        let used: BTreeSet<String> = hits.iter().map(|h| h.key.clone()).collect();
        assert_eq!(used, expected_keys, "no request carried another key");
        let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
        for h in &hits {
            *per_key.entry(h.key.as_str()).or_default() += 1;
            // A repeat asks for the very same change as the first request.
            assert_eq!(&h.body, &applied[&h.key], "a repeated key carries the same request");
            assert!(h.key.ends_with(&format!(":{}", h.action)), "{} posted to /{}", h.key, h.action);
            assert_eq!(h.body["action"], h.action.as_str());
        }
        let repeated = per_key.values().filter(|n| **n > 1).count();
        let max = per_key.values().max().copied().unwrap_or(0);
        format!(
            "{} requests for {} keys ({} keys repeated, at most {} requests for one key), each key applied once",
            hits.len(),
            per_key.len(),
            repeated,
            max
        )
    } else {
        let ledger = s.ledger().await;
        let keys: Vec<&String> = ledger.iter().map(|(k, _, _)| k).collect();
        let unique: BTreeSet<String> = keys.iter().map(|k| (*k).clone()).collect();
        assert_eq!(keys.len(), unique.len(), "one ledger row per key");
        assert_eq!(unique, expected_keys, "exactly one ledger row per action, and no other");
        for (key, account, action) in &ledger {
            let a = appeals.iter().find(|a| key.starts_with(&a.id)).unwrap();
            assert_eq!((account, key), (&a.account, &format!("{}:{action}", a.id)));
        }
        s.assert_accounts_changed(&appeals).await;
        format!("{} ledger rows for {} actions", ledger.len(), expected_keys.len())
    };
    let unqueued = s.store().unqueued_work(1000).await.unwrap();
    assert_eq!(unqueued, [], "no pending row without its job, after {kills} kills");
    report(&format!(
        "[{label}] {kills} kills after {:?} ms; actions succeeded after each kill: {progress:?} \
         ({succeeded_at_last_kill}/{} when the last worker was killed); {}/{} appeals \
         completed {:.1} s after the final restart; {per_key_figure}; {} worker starts; test took {:.1} s",
        delays,
        expected_keys.len(),
        appeals.len(),
        total,
        recovery.as_secs_f64(),
        s.spawned,
        started.elapsed().as_secs_f64()
    ));
}

/// Slow (a minute or more each): run as their own CI step with `-- --ignored`.
mod kill_9_during_post_approval_actions_then_restart_applies_each_action_exactly_once {
    use super::kill_loop;
    use crate::common;

    const WHY: &str = "slow process test: CI runs it as its own step";

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "slow process test: CI runs it as its own step"]
    async fn sqlite_http_adapter() {
        let _ = WHY;
        kill_loop(common::sqlite().await, true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "slow process test: CI runs it as its own step"]
    async fn sqlite_built_in_accounts_table() {
        kill_loop(common::sqlite().await, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "slow process test: CI runs it as its own step"]
    async fn postgres_http_adapter() {
        if let Some(db) = common::postgres("kill_9_postgres_http_adapter").await {
            kill_loop(db, true).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "slow process test: CI runs it as its own step"]
    async fn postgres_built_in_accounts_table() {
        if let Some(db) = common::postgres("kill_9_postgres_built_in_accounts_table").await {
            kill_loop(db, false).await;
        }
    }
}

on_both_backends!(
    a_failing_account_endpoint_is_retried_with_backoff_then_failed_for_good_then_retried_by_hand,
    a_storm_of_database_failures_during_work_is_survived_and_every_approved_appeal_closes,
    a_worker_that_cannot_write_its_database_says_so_and_gives_up_with_an_error,
);

// ------------------------------------------ 2. several workers on PostgreSQL at once

const SLA_APPEALS: usize = 8;
const PG_APPROVED: usize = 8;
const LEADS: &str = "lead-a@example.com,lead-b@example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(appealflow_no_postgres, ignore = "no PostgreSQL: set APPEALFLOW_TEST_POSTGRES_URL=postgres://... to run it")]
async fn several_workers_on_postgres_fire_each_timer_and_action_once() {
    let Some(db) = common::postgres("several_workers_on_postgres_fire_each_timer_and_action_once").await else {
        return;
    };
    let started = Instant::now();
    let mut s = Setup::new(db).await;
    let approved = s.approved_appeals(PG_APPROVED, 0).await;

    // Appeals submitted through the CLI at an instant long past: their SLA warning and
    // breach timers are due the moment a worker looks.
    let past = "2026-03-09T10:00:00+08:00";
    let sla_accounts: Vec<usize> = (0..SLA_APPEALS).map(|k| 100 + 2 * k).collect();
    s.put_accounts(&sla_accounts.iter().map(|i| account(*i)).collect::<Vec<_>>()).await;
    let mut sla = Vec::new();
    for i in &sla_accounts {
        let file = s.dir.path().join(format!("draft-{i}.json"));
        std::fs::write(&file, individual_draft(*i, &["reset_password"]).to_string()).unwrap();
        let clock_env = [("APPEALFLOW_ALLOW_CLOCK_OVERRIDE", "1".to_string())];
        let r = s.cli(&["--now", past, "appeal", "create", "--json", file.to_str().unwrap()], &clock_env).await;
        assert_eq!(r.code, 0, "appeal create: {}", r.stderr);
        let ticket = TicketNumber::parse(r.stdout.trim()).expect("a ticket number");
        let record = s.record(&ticket).await;
        let timers = s.store().timers(Some(&record.id)).await.unwrap();
        let names: BTreeSet<&str> = timers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, BTreeSet::from(["review_sla", "review_sla.warning"]), "{timers:?}");
        assert!(
            timers.iter().all(|t| t.status == TimerStatus::Armed && t.due_at < chrono::Utc::now()),
            "armed and already due: {timers:?}"
        );
        sla.push(record);
    }

    let envs = [("APPEALFLOW_LEAD_EMAILS", LEADS.to_string())];
    let args = ["--poll-ms", "100"];
    let mut workers: Vec<Worker> = (0..3).map(|_| s.spawn_worker(&args, &envs)).collect();

    // Until every approved appeal completed, every SLA timer fired and every
    // notification went out; then a little longer, so a second firing would show.
    let limit = Duration::from_secs(90);
    let wait = Instant::now();
    loop {
        let mut timers_left = 0;
        for r in &sla {
            let timers = s.store().timers(Some(&r.id)).await.unwrap();
            timers_left += timers.iter().filter(|t| t.status != TimerStatus::Fired).count();
        }
        let pending = WorkFilter { status: Some("pending".into()), ..Default::default() };
        let unsent = s.store().notifications(&pending).await.unwrap().len();
        let unfinished = s.unfinished(&approved).await;
        if timers_left == 0 && unsent == 0 && unfinished.is_empty() {
            break;
        }
        if wait.elapsed() > limit {
            panic!(
                "three workers did not finish within {limit:?}: {timers_left} timers, {unsent} notifications, \
                 appeals {unfinished:?}\n{}",
                s.diagnostics(&approved).await
            );
        }
        tokio::time::sleep(ms(200)).await;
    }
    let finished = wait.elapsed();
    tokio::time::sleep(ms(2500)).await;
    for w in &mut workers {
        let status = terminate(w, Duration::from_secs(40)).await;
        assert!(status.success(), "a worker exits cleanly on SIGTERM: {status}\n{}", s.log_tail(40));
    }

    // Each timer acted once: one event each, the rows settled as fired, each lead told once.
    for r in &sla {
        let record = s.record(&r.ticket).await;
        assert_eq!(record.state, "submitted", "SLA events do not change the state");
        let history = s.store().history(&r.id).await.unwrap();
        let count = |name: &str| history.iter().filter(|e| e.transition == name).count();
        assert_eq!((count("sla_warning"), count("sla_breached")), (1, 1), "{}: {history:?}", r.ticket);
        let timers = s.store().timers(Some(&r.id)).await.unwrap();
        assert_eq!(timers.len(), 2, "{timers:?}");
        assert!(timers.iter().all(|t| t.status == TimerStatus::Fired && t.settled_at.is_some()), "{timers:?}");
        let notes =
            s.store().notifications(&WorkFilter { appeal_id: Some(r.id.clone()), ..Default::default() }).await.unwrap();
        for template in ["sla_warning", "sla_breach"] {
            let mut to: Vec<&str> =
                notes.iter().filter(|n| n.template == template).map(|n| n.recipient.as_str()).collect();
            to.sort_unstable();
            assert_eq!(to, ["lead-a@example.com", "lead-b@example.com"], "{}: {template} once per lead", r.ticket);
        }
    }

    // Each action applied once.
    s.assert_completed_once(&approved).await;
    let expected_keys: BTreeSet<String> = approved.iter().flat_map(Approved::keys).collect();
    let ledger = s.ledger().await;
    assert_eq!(ledger.len(), expected_keys.len(), "one ledger row per action: {ledger:?}");
    assert_eq!(ledger.iter().map(|(k, _, _)| k.clone()).collect::<BTreeSet<_>>(), expected_keys);
    s.assert_accounts_changed(&approved).await;
    for a in s.store().actions(&WorkFilter::default()).await.unwrap() {
        assert_eq!(a.attempts, 1, "action {} {} attempted once", a.ticket, a.action);
        assert_eq!(a.result.as_ref().and_then(|r| r.get("replayed")), Some(&json!(false)), "{a:?}");
    }
    for n in s.store().notifications(&WorkFilter::default()).await.unwrap() {
        // A fallback channel never needed is skipped; everything else went out once.
        assert!(
            (n.status == NotificationStatus::Sent && n.attempts == 1)
                || (n.status == NotificationStatus::Skipped && n.attempts == 0),
            "notification {} delivered once: {n:?}",
            n.id
        );
    }

    // One job per row, each run exactly once, by whichever worker claimed it.
    let jobs = s.store().jobs(&JobFilter::default()).await.unwrap();
    let mut figures = Vec::new();
    for queue in [ACTIONS_QUEUE, NOTIFICATIONS_QUEUE] {
        let by = jobs_by_args(&jobs, queue);
        for (args, js) in &by {
            assert_eq!(js.len(), 1, "{queue}: one job for {args}: {js:?}");
            assert_eq!((js[0].status.as_str(), js[0].attempts), ("Done", 1), "{queue} {args}: ran once: {js:?}");
        }
        figures.push(format!("{queue}: {}", by.len()));
    }
    assert_eq!(jobs_by_args(&jobs, ACTIONS_QUEUE).len(), expected_keys.len());
    report(&format!(
        "[3 workers / postgres] {} SLA timers and {} actions, jobs {}; done {:.1} s after the workers started; \
         test took {:.1} s",
        2 * SLA_APPEALS,
        expected_keys.len(),
        figures.join(", "),
        finished.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
}

// ------------------------------- 3. a failing endpoint: backoff, failed for good, retry

/// The first retry waits this long; the second twice as long. Two seconds rather than
/// one: SQLite's queue keeps `run_at` in whole seconds and the deferral rounds up, so a
/// one-second backoff could not be told from none.
const BACKOFF_SECS: u64 = 2;

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(ms(20)).await;
    }
}

/// An approved appeal whose only action (detach MFA) goes to an endpoint answering 500,
/// run by a worker allowed three attempts and restarted (gracefully) between the second
/// and the third: the attempts keep their backoff across the restart, the third failure
/// is the last, and the action is recorded as failed for good — the appeal stays
/// approved, the leads are alerted, `actions list --attention` shows it. Retried by
/// hand once the endpoint recovers, it succeeds and the appeal closes.
async fn a_failing_account_endpoint_is_retried_with_backoff_then_failed_for_good_then_retried_by_hand(db: TestDb) {
    let started = Instant::now();
    let backend = db.store.backend();
    let mut s = Setup::with_attempts(db, 3).await;
    s.put_accounts(&[account(0)]).await;
    let ticket = s.submit(&individual_draft(0, &["detach_mfa"])).await;
    s.fire(&ticket, "claim").await;
    s.fire(&ticket, "approve").await;
    let record = s.record(&ticket).await;
    let appeal = Approved {
        ticket: ticket.clone(),
        id: record.id.clone(),
        account: account_name(0),
        contact_phone: PhoneNumber::parse(&new_phone(0)).unwrap(),
        actions: vec!["detach_mfa"],
    };
    let key = format!("{}:detach_mfa", record.id);
    let endpoint = Endpoint::start(500, (0, 0)).await;
    let mut envs: Vec<(&str, String)> = endpoint.env().iter().map(|(k, v)| (*k, v.clone())).collect();
    envs.push(("APPEALFLOW_LEAD_EMAILS", "lead@example.com".to_string()));
    envs.push(("APPEALFLOW_MAX_ATTEMPTS", "3".to_string()));
    let backoff = BACKOFF_SECS.to_string();
    let args = ["--poll-ms", "100", "--backoff-secs", backoff.as_str()];
    let mut worker = s.spawn_worker(&args, &envs);
    wait_for("two attempts", Duration::from_secs(30), || endpoint.hits_for(&key).len() >= 2).await;
    // A restart between failures must not reset the spacing: the backoff is in the database.
    tokio::time::sleep(ms(150)).await;
    let status = terminate(&mut worker, Duration::from_secs(40)).await;
    assert!(status.success(), "{status}");
    let mut worker = s.spawn_worker(&args, &envs);
    wait_for("three attempts", Duration::from_secs(30), || endpoint.hits_for(&key).len() >= 3).await;

    let action_id = loop {
        let failed =
            s.store().actions(&WorkFilter { status: Some("failed".into()), ..Default::default() }).await.unwrap();
        if let Some(a) = failed.first() {
            break a.id;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the action fails for good\n{}", s.diagnostics(&[]).await);
        tokio::time::sleep(ms(100)).await;
    };
    // No fourth attempt (and no hot loop) once it has failed for good.
    tokio::time::sleep(ms(2500)).await;
    let hits = endpoint.hits_for(&key);
    assert_eq!(hits.len(), 3, "exactly max-attempts requests: {hits:?}");
    assert!(hits.iter().all(|h| h.status == 500 && h.action == "detach_mfa" && h.signature_ok));
    let gaps: Vec<f64> = hits.windows(2).map(|w| (w[1].at - w[0].at).as_secs_f64()).collect();
    let slack = if backend == "sqlite" { 1.0 } else { 0.05 };
    for (i, gap) in gaps.iter().enumerate() {
        let backoff = (BACKOFF_SECS << i) as f64;
        assert!(*gap >= backoff - slack, "attempt {} came {gap:.2} s after the one before; backoff {backoff} s", i + 2);
    }
    let action = s.store().action(action_id).await.unwrap().unwrap();
    assert_eq!((action.status, action.attempts), (ActionStatus::Failed, 3), "{action:?}");
    assert!(action.last_error.as_deref().is_some_and(|e| e.contains("500")), "{action:?}");
    assert_eq!(s.record(&ticket).await.state, "approved");
    // The failure is on the appeal's history, and the leads were told, in the same commit.
    let history = s.store().history(&record.id).await.unwrap();
    assert!(history.iter().any(|e| e.transition == "action_failed"), "{history:?}");
    let alerts: Vec<_> = s
        .store()
        .notifications(&WorkFilter { appeal_id: Some(record.id.clone()), ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.template == "action_failed")
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].recipient, "lead@example.com");
    // The job itself ended: the failure is the action's, recorded, not a dead job's.
    let dead = s.store().jobs(&JobFilter { dead_only: true, ..Default::default() }).await.unwrap();
    assert_eq!(dead, [], "no dead job");
    let listed = s.cli(&["actions", "list", "--attention", "--json"], &[]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let rows: Vec<Value> = serde_json::from_str(&listed.stdout).expect("JSON");
    assert!(rows.iter().any(|a| a["id"] == action_id), "flagged for attention: {rows:?}");

    // The endpoint recovers; retried by hand, the action succeeds and the appeal closes.
    endpoint.set_status(200);
    let retried = s.cli(&["actions", "retry", &action_id.to_string()], &envs).await;
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    let recovered = s.wait_completed(std::slice::from_ref(&appeal), Duration::from_secs(30)).await;
    assert_eq!(endpoint.hits_for(&key).len(), 4, "one more request after the retry");
    assert_eq!(endpoint.applied().keys().collect::<Vec<_>>(), [&key], "applied once");
    let action = s.store().action(action_id).await.unwrap().unwrap();
    assert_eq!((action.status, action.attempts), (ActionStatus::Succeeded, 4));
    let again = s.cli(&["actions", "retry", &action_id.to_string()], &envs).await;
    assert_eq!(again.code, 3, "only a failed action is retried by hand: {}", again.stderr);
    let status = terminate(&mut worker, Duration::from_secs(40)).await;
    assert!(status.success(), "{status}");
    report(&format!(
        "[failing endpoint / {backend}] 3 attempts, gaps {gaps:.2?} s (backoff {BACKOFF_SECS} s, doubling; \
         worker restarted between attempts 2 and 3), failed for good with the leads alerted, retried by hand: \
         closed {:.1} s later; test took {:.1} s",
        recovered.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
}

// ------------------------------------------------ 4. a storm of database failures

/// Ten database failures in two seconds while the worker applies actions (slowly, at a
/// recording endpoint): on PostgreSQL every connection of appealflow's is terminated;
/// on SQLite another writer holds the database's lock for longer than the worker's busy
/// timeout. The worker's loops fail, are restarted with backoff, and finish: every
/// approved appeal closes, each action applied once.
async fn a_storm_of_database_failures_during_work_is_survived_and_every_approved_appeal_closes(db: TestDb) {
    let started = Instant::now();
    let backend = db.store.backend();
    let mut s = Setup::new(db).await;
    let appeals = s.approved_appeals(12, 0).await;
    let endpoint = Endpoint::start(200, (100, 250)).await;
    let mut envs: Vec<(&str, String)> = endpoint.env().iter().map(|(k, v)| (*k, v.clone())).collect();
    envs.push(("APPEALFLOW_SQLITE_BUSY_MS", "200".to_string()));
    let mut worker = s.spawn_worker(&["--poll-ms", "100", "--heartbeat-secs", "1"], &envs);
    // Work in flight.
    wait_for("the first action", Duration::from_secs(30), || !endpoint.hits().is_empty()).await;
    let storm = Instant::now();
    let mut hits = 0;
    if backend == "postgres" {
        let admin = sqlx::PgPool::connect(&s.db.url).await.unwrap();
        let db_name = s.db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
        for _ in 0..10 {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND application_name = 'appealflow' AND pid <> pg_backend_pid()",
            )
            .bind(&db_name)
            .fetch_one(&admin)
            .await
            .unwrap();
            hits += n;
            tokio::time::sleep(ms(200)).await;
        }
        admin.close().await;
    } else {
        let path = s.db.url.trim_start_matches("sqlite://").to_string();
        for _ in 0..10 {
            // Another process's writer: sqlite3 semantics through a raw connection.
            let mut conn =
                <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{path}")).await.unwrap();
            sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await.unwrap();
            tokio::time::sleep(ms(150)).await;
            sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            hits += 1;
            tokio::time::sleep(ms(50)).await;
        }
    }
    let storm_took = storm.elapsed();
    let recovery = s.wait_completed(&appeals, Duration::from_secs(120)).await;
    let status = terminate(&mut worker, Duration::from_secs(40)).await;
    assert!(status.success(), "the worker survived the storm and stops cleanly: {status}\n{}", s.log_tail(40));
    s.assert_completed_once(&appeals).await;
    let expected: BTreeSet<String> = appeals.iter().flat_map(Approved::keys).collect();
    assert_eq!(endpoint.applied().keys().cloned().collect::<BTreeSet<_>>(), expected, "each key applied once");
    assert_eq!(s.store().unqueued_work(100).await.unwrap(), [], "no row left without its job");
    let restarts = s.restarts();
    report(&format!(
        "[storm / {backend}] {hits} {} in {:.1} s during work; {restarts} loop restarts logged; all {} appeals \
         closed {:.1} s after; test took {:.1} s",
        if backend == "postgres" { "connections terminated" } else { "exclusive locks held past the busy timeout" },
        storm_took.as_secs_f64(),
        appeals.len(),
        recovery.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
}

// ------------------------------------------- 5. a database the worker cannot write

/// The database turns read-only under the service (PostgreSQL: `default_transaction_
/// read_only` with its connections terminated; SQLite: opened `mode=ro`). `serve` keeps
/// answering, and `/readyz` answers 503 naming the worker's loops that are down; the
/// standalone worker retries with backoff, then gives up and exits non-zero (so a
/// supervisor restarts it) instead of idling with dead queues.
async fn a_worker_that_cannot_write_its_database_says_so_and_gives_up_with_an_error(db: TestDb) {
    let backend = db.store.backend();
    let mut s = Setup::new(db).await;
    s.approved_appeals(1, 0).await;
    let read_only_url = if backend == "sqlite" {
        format!("{}?mode=ro", s.db.url)
    } else {
        let admin = sqlx::PgPool::connect(&s.db.url).await.unwrap();
        let db_name = s.db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {db_name} SET default_transaction_read_only = on")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        s.db.url.clone()
    };
    let envs = [("APPEALFLOW_DATABASE_URL", read_only_url.clone()), ("APPEALFLOW_METRICS_TOKEN", "scrape".into())];

    // The standalone worker: down, retried, then given up — exit status 1, saying why.
    let started = Instant::now();
    let run = s.cli(&["worker", "--poll-ms", "100", "--give-up-after-secs", "3"], &envs).await;
    let took = started.elapsed();
    assert_eq!(run.code, 1, "a worker that cannot work exits non-zero\n{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("gave up"), "{}", run.stderr);
    assert!(run.stderr.contains("read-only") || run.stderr.contains("readonly"), "says why: {}", run.stderr);
    assert!(took < Duration::from_secs(30), "gave up after about 3 s, took {took:?}");

    // serve: up, but not ready, naming what is down.
    let (mut server, url) = s.spawn_serve(&envs).await;
    let start = Instant::now();
    let body = loop {
        let r = reqwest::get(format!("{url}/readyz")).await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status == 503 && body["down"].as_array().is_some_and(|d| d.len() == 4) {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "readyz: {status} {body}\n{}", s.log_tail(20));
        tokio::time::sleep(ms(100)).await;
    };
    let down: BTreeSet<String> =
        body["down"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_string()).collect();
    let expected = [ACTIONS_QUEUE, NOTIFICATIONS_QUEUE, "timers", "janitor"];
    assert_eq!(down, expected.into_iter().map(String::from).collect::<BTreeSet<_>>());
    assert_eq!(body["code"], "not-ready", "{body}");
    let scrape = reqwest::Client::new().get(format!("{url}/metrics")).bearer_auth("scrape");
    let metrics = scrape.send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("appealflow_worker_loop_up{loop=\"appealflow.actions\"} 0"), "{metrics}");
    assert_eq!(reqwest::get(format!("{url}/healthz")).await.unwrap().status(), 200, "it still answers");
    let status = terminate(&mut server, Duration::from_secs(40)).await;
    assert!(status.success(), "{status}");
    if backend == "postgres" {
        // Writable again (this session first: new sessions start read-only).
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
        let db_name = s.db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
        sqlx::query("SET default_transaction_read_only = off").execute(&mut admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {db_name} SET default_transaction_read_only = off")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    report(&format!(
        "[read-only / {backend}] the worker gave up after {:.1} s with exit status 1; serve's /readyz named {down:?}",
        took.as_secs_f64()
    ));
}
