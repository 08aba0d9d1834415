//! Test harness: real databases for every test. SQLite gets a fresh file in a temporary
//! directory; PostgreSQL gets a fresh database created on the server named by
//! APPEALFLOW_TEST_POSTGRES_URL. Without that variable the PostgreSQL half is skipped
//! and says so (and fails instead when APPEALFLOW_REQUIRE_POSTGRES=1, as in CI).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use appealflow::app::work::Work;
use appealflow::domain::{Actor, Role};
use appealflow::engine::{Clock, Engine, ManualClock, NewAppeal};
use appealflow::jobs::{Running, Runtime, WorkerSettings};
use appealflow::startup::{Application, Backend, IntakeConfig, Settings, WorkConfig};
use appealflow::store::Store;
use appealflow::workflow::Workflow;
use chrono::{DateTime, Utc};
use sqlx::Connection;

pub const PG_ENV: &str = "APPEALFLOW_TEST_POSTGRES_URL";
pub const REQUIRE_PG_ENV: &str = "APPEALFLOW_REQUIRE_POSTGRES";

/// The repository's `examples/` folder (accounts, drafts, documents).
pub fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Imports `examples/accounts.json` into the directory, ID numbers hashed with `key`.
pub async fn import_example_accounts(db: &TestDb, key: &str, at: DateTime<Utc>) {
    let hasher = appealflow::domain::IdHasher::new(key.as_bytes()).expect("a long enough key");
    let text = std::fs::read_to_string(examples().join("accounts.json")).expect("examples/accounts.json");
    let inputs: Vec<appealflow::domain::AccountInput> = serde_json::from_str(&text).expect("accounts parse");
    let accounts: Vec<_> =
        inputs.into_iter().map(|a| a.into_account("examples", &hasher).expect("a valid example account")).collect();
    db.store.put_accounts(&accounts, at).await.expect("accounts import");
}

/// Serves `state` on a loopback port as `appealflow serve` does (connection limits,
/// client addresses); the base URL.
pub async fn spawn_server(state: appealflow::http::Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(appealflow::http::serve(listener, state, std::future::pending()));
    format!("http://{addr}")
}

/// The intake settings of the tests: documents in `blob_dir`, ID numbers hashed with
/// `key`, the default document limits and PDFs parsed in-process.
pub fn intake_config(blob_dir: impl Into<PathBuf>, key: &str) -> IntakeConfig {
    IntakeConfig {
        blob_dir: blob_dir.into(),
        id_hash_key: Some(key.into()),
        limits: Default::default(),
        pdf_inspector: None,
    }
}

/// The application on a test database, built as every process builds it
/// ([`Application::on`]): the shipped workflow, `work`'s settings, and the intake side
/// when `intake` is given.
pub fn app(db: &TestDb, clock: Arc<dyn Clock>, work: &WorkConfig, intake: Option<IntakeConfig>) -> Application {
    app_in(db, &workflows_dir(), clock, work, intake)
}

/// As [`app`], with the workflows of the folder `workflows` (an edited copy).
pub fn app_in(
    db: &TestDb,
    workflows: &std::path::Path,
    clock: Arc<dyn Clock>,
    work: &WorkConfig,
    intake: Option<IntakeConfig>,
) -> Application {
    let mut settings = Settings::new(db.url.clone(), workflows.to_path_buf()).with_work(work.clone());
    settings.intake = intake;
    Application::on(db.store.clone(), db.backend.clone(), &settings, clock)
        .expect("the shipped workflow, templates and rules load")
}

pub fn workflows_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workflows")
}

/// Copies the folder `from` into `to`, recursively (a workflows folder to edit).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub fn workflow() -> Arc<Workflow> {
    let dir = workflows_dir();
    Arc::new(Workflow::load(&dir.join("account-appeal"), &dir.join("calendars")).expect("shipped workflow loads"))
}

/// A database for one test; the temporary directory lives as long as the handle.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    /// The pool the job queue's workers share.
    pub backend: Backend,
    pub url: String,
    pub _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("appealflow.db").display());
    let (store, backend) = appealflow::startup::open(&url).await.expect("sqlite store opens");
    TestDb { store, backend, url, _dir: Some(dir) }
}

impl TestDb {
    /// The same database opened again, as another process (or a restart) would.
    pub async fn reopen(&self) -> TestDb {
        let (store, backend) = appealflow::startup::open(&self.url).await.expect("the database opens again");
        TestDb { store, backend, url: self.url.clone(), _dir: None }
    }
}

/// The server URL with its database path replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

/// A fresh PostgreSQL database, or `None` (with a notice) when none is configured.
pub async fn postgres(test: &str) -> Option<TestDb> {
    let Ok(admin_url) = std::env::var(PG_ENV) else {
        if std::env::var(REQUIRE_PG_ENV).as_deref() == Ok("1") {
            panic!("{REQUIRE_PG_ENV}=1 but {PG_ENV} is not set: the PostgreSQL suite must run");
        }
        // Written to the stderr handle directly: the test harness captures `eprintln!`
        // output of passing tests, and a skip must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (postgres) {test}: set {PG_ENV}=postgres://... to run the PostgreSQL half"
        );
        return None;
    };
    // CI sets a per-run prefix so it can drop exactly its own databases afterwards.
    let prefix = std::env::var("APPEALFLOW_TEST_DB_PREFIX").unwrap_or_else(|_| "appealflow_t".into());
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let url = with_database(&admin_url, &name);
    let (store, backend) = appealflow::startup::open(&url).await.expect("postgres store opens");
    Some(TestDb { store, backend, url, _dir: None })
}

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).expect("valid instant").with_timezone(&Utc)
}

/// A Monday morning in Shanghai, well inside the calendar's published range.
pub fn monday_morning() -> DateTime<Utc> {
    at("2026-03-09T10:00:00+08:00")
}

/// The leads' distribution list engine-level tests configure.
pub const LEADS: &str = "leads@example.com";

pub fn engine(db: &TestDb, clock: Arc<ManualClock>) -> Arc<Engine> {
    let config = WorkConfig { lead_emails: vec![LEADS.into()], ..Default::default() };
    app(db, clock, &config, None).engine
}

/// An appeal's notifications, in order.
pub async fn notifications(store: &dyn Store, appeal_id: &str) -> Vec<appealflow::store::NotificationRecord> {
    let filter = appealflow::store::WorkFilter { appeal_id: Some(appeal_id.to_string()), ..Default::default() };
    store.notifications(&filter).await.expect("notifications read")
}

/// The jobs of one queue, oldest first.
pub async fn jobs(store: &dyn Store, queue: &str) -> Vec<appealflow::store::JobRecord> {
    let filter = appealflow::store::JobFilter { queue: Some(queue.to_string()), ..Default::default() };
    let mut jobs = store.jobs(&filter).await.expect("jobs read");
    jobs.reverse();
    jobs
}

/// The engine and the worker's steps on a test database.
pub fn work(db: &TestDb, clock: Arc<ManualClock>, config: &WorkConfig) -> (Arc<Engine>, Arc<Work>) {
    let app = app(db, clock, config, None);
    (app.engine, app.work)
}

/// The production worker on a test database, with the simulation's settings (quick
/// polls, no backoff): `settle()` waits until it has nothing left to do.
pub fn start_worker(db: &TestDb, work: Arc<Work>) -> Running {
    start_worker_with(db, work, WorkerSettings::simulation())
}

pub fn start_worker_with(db: &TestDb, work: Arc<Work>, settings: WorkerSettings) -> Running {
    let queues = appealflow::startup::queues(&db.backend, &settings);
    Running::start(Runtime::new(work, queues, settings))
}

/// The production worker of `app`, with the simulation's settings.
pub fn start_app_worker(app: &Application) -> Running {
    Running::start(app.runtime(WorkerSettings::simulation()))
}

/// Waits until the worker has nothing left to do at the clock's present instant.
pub async fn settle(worker: &Running) {
    worker.settle(std::time::Duration::from_secs(60)).await.expect("the worker settles");
}

/// A minimal appeal record for engine-level tests (the intake rules are tested elsewhere).
pub fn request(account: &str) -> NewAppeal {
    NewAppeal {
        account: account.to_string(),
        data: serde_json::json!({
            "draft": { "contact_phone": "+8613812345678", "items": ["reset_password"] },
            "case": null,
            "changes_secure_phone": true,
            "entity_change": { "required": false },
        }),
    }
}

pub fn applicant() -> Actor {
    Actor::new("applicant", Role::Applicant)
}

pub fn reviewer(name: &str) -> Actor {
    Actor::new(name, Role::Reviewer)
}

/// Generates one `#[tokio::test]` per backend for each listed async fn taking a `TestDb`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[cfg_attr(appealflow_no_postgres, ignore = "no PostgreSQL: set APPEALFLOW_TEST_POSTGRES_URL=postgres://... to run it")]
                async fn $name() {
                    if let Some(db) = $crate::common::postgres(stringify!($name)).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

/// Ends an appeal's cooling-off now, as its timer does when it falls due (for tests of
/// what follows an approval, not of the cooling-off): fires the transition the timer
/// running in that state fires, as `system`. Does nothing outside a cooling-off.
pub async fn pass_cooling_off(engine: &Engine, ticket: &appealflow::domain::TicketNumber) {
    let record = engine.store().appeal_by_ticket(ticket).await.unwrap().unwrap();
    let wf = engine.workflow();
    if !wf.cools_off(&record.state) {
        return;
    }
    let timer = wf.def.timers.iter().find(|t| t.states.contains(&record.state)).expect("a cooling-off timer");
    let fire = appealflow::workflow::Fire::new(timer.fires.transition.clone().expect("it fires a transition"));
    engine.fire(ticket, &fire, &Actor::system(), None).await.unwrap();
}
