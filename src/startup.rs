//! Wiring: the only place that names concrete backends. Opens the store a URL names,
//! applies migrations, loads and validates the workflow, and builds the engine; every
//! process assembles these through [`Application::build`].

mod application;
pub use application::{Application, Settings};

use crate::store::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;

use crate::adapters::accounts::{AccountActions, DirectoryActions, HttpActions, StoreDirectory};
use crate::adapters::blobs::{BlobError, LocalBlobStore};
use crate::adapters::notify::{Channel, RecordOnly, TemplateError, Templates, Webhook};
use crate::app::effects::Planner;
use crate::app::intake::Intake;
use crate::app::work::Work;
use crate::domain::IdHasher;
use crate::domain::document::DocumentLimits;
use crate::domain::identity::WeakKey;
use crate::domain::rules::{Rules, RulesError};
use crate::engine::{Clock, Engine};
use crate::jobs::{ACTIONS_QUEUE, ApalisJobs, NOTIFICATIONS_QUEUE, Queues, WorkerSettings};
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::workflow::{DefinitionError, Workflow};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://appealflow.db";
pub const DEFAULT_WORKFLOW: &str = "account-appeal";

/// Where workflow definitions live when no directory is configured: `./workflows` if
/// present, else the directory shipped with the source tree.
pub fn default_workflows_dir() -> PathBuf {
    let local = PathBuf::from("workflows");
    if local.join(DEFAULT_WORKFLOW).join("workflow.toml").is_file() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows")
    }
}

/// The concrete backend behind a URL: what the job queue needs to share its pool.
#[derive(Clone)]
pub enum Backend {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// How the database is opened.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Attempts every job is written with (`APPEALFLOW_MAX_ATTEMPTS`).
    pub max_attempts: usize,
    /// SQLite: how long a writer waits for another's lock before failing.
    pub sqlite_busy: std::time::Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { max_attempts: crate::jobs::DEFAULT_MAX_ATTEMPTS, sqlite_busy: std::time::Duration::from_secs(30) }
    }
}

/// Opens the database and brings its schema up to date: appealflow's migrations
/// (recorded in `appealflow_migrations`) and the job queue's (recorded apart), so
/// neither migrator ever sees the other's versions.
pub async fn open(url: &str) -> Result<(Arc<dyn Store>, Backend), StoreError> {
    open_with(url, &DbOptions::default()).await
}

pub async fn open_with(url: &str, options: &DbOptions) -> Result<(Arc<dyn Store>, Backend), StoreError> {
    let jobs = Arc::new(ApalisJobs::new(options.max_attempts));
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect_with(url, jobs, options.sqlite_busy).await?;
        if !store.pending_migrations().await.is_ok_and(|p| p.is_empty()) {
            store.migrate().await?;
        }
        // Only the migrations: apalis's `setup` would also switch the connection to
        // `synchronous = OFF`, which appealflow's durability promise forbids.
        let queue = SqliteStorage::migrations();
        if behind(&queue, sqlx::query_scalar(QUEUE_APPLIED_SQLITE).fetch_all(store.pool()).await) {
            queue.run(store.pool()).await?;
        }
        let pool = store.pool().clone();
        Ok((Arc::new(store), Backend::Sqlite(pool)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect(url, jobs).await?;
        if !store.pending_migrations().await.is_ok_and(|p| p.is_empty()) {
            store.migrate().await?;
        }
        let queue = PostgresStorage::migrations();
        if behind(&queue, sqlx::query_scalar(QUEUE_APPLIED_POSTGRES).fetch_all(store.pool()).await) {
            queue.run(store.pool()).await?;
        }
        let pool = store.pool().clone();
        Ok((Arc::new(store), Backend::Postgres(pool)))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// What the job queue's migrations record as applied (in its `_sqlx_migrations`: the
/// `apalis` schema's on PostgreSQL, where its migrations move it).
const QUEUE_APPLIED_SQLITE: &str = "SELECT version FROM _sqlx_migrations WHERE success";
const QUEUE_APPLIED_POSTGRES: &str = "SELECT version FROM apalis._sqlx_migrations WHERE success";

/// Whether some of `migrator`'s migrations are not among `applied` (or that could not be
/// read). A database whose schema is current is then opened without writing, so a
/// process on a database it cannot write starts and reports what is down rather than
/// failing at the door.
fn behind(migrator: &sqlx::migrate::Migrator, applied: Result<Vec<i64>, sqlx::Error>) -> bool {
    match applied {
        Ok(applied) => migrator.iter().any(|m| !applied.contains(&m.version)),
        Err(_) => true,
    }
}

/// The job queues on the backend, each with an explicit name (never one derived from a
/// Rust type) and heartbeats short enough that a crashed worker's jobs return in seconds.
pub fn queues(backend: &Backend, settings: &WorkerSettings) -> Queues {
    macro_rules! config {
        ($config:ty, $queue:expr) => {
            <$config>::default()
                .queue($queue)
                .batch_size(settings.concurrency)
                .heartbeat_interval(settings.heartbeat)
                .missed_heartbeats(settings.missed_heartbeats)
        };
    }
    match backend {
        Backend::Sqlite(pool) => Queues::Sqlite {
            actions: SqliteStorage::new(pool).with_config(config!(apalis_sqlite::Config, ACTIONS_QUEUE)),
            notifications: SqliteStorage::new(pool).with_config(config!(apalis_sqlite::Config, NOTIFICATIONS_QUEUE)),
        },
        Backend::Postgres(pool) => Queues::Postgres {
            actions: PostgresStorage::new(pool).with_config(config!(apalis_postgres::Config, ACTIONS_QUEUE)),
            notifications: PostgresStorage::new(pool)
                .with_config(config!(apalis_postgres::Config, NOTIFICATIONS_QUEUE)),
        },
    }
}

/// Where notifications and account changes go.
#[derive(Debug, Clone, Default)]
pub struct WorkConfig {
    /// Reviewer leads' email addresses (SLA warnings and breaches).
    pub lead_emails: Vec<String>,
    /// When set, every notification is also POSTed here (signed with the secret).
    pub notify_webhook: Option<(String, String)>,
    /// When set, account changes are POSTed to `URL/ACTION` (signed with the secret)
    /// instead of being applied to the embedded directory.
    pub actions_url: Option<(String, String)>,
    pub http_timeout: std::time::Duration,
}

/// The engine on a store, with the workflow from `workflows_dir` and the planner that
/// turns its effects into notifications and actions (templates checked here: a missing
/// one is an error at start).
pub(crate) fn engine(
    store: Arc<dyn Store>,
    workflows_dir: &Path,
    clock: Arc<dyn Clock>,
    config: &WorkConfig,
) -> Result<(Arc<Engine>, Arc<Planner>), StartupError> {
    let versions = Arc::new(load_versions(workflows_dir, DEFAULT_WORKFLOW)?);
    let workflow = versions.newest().clone();
    let templates = Templates::load(&crate::workflow::versions::templates_dir(&workflow.dir))?;
    let planner =
        Arc::new(Planner::new(store.clone(), versions.clone(), Arc::new(templates), config.lead_emails.clone()));
    planner.check_templates()?;
    Ok((Arc::new(Engine::new(store, workflow, clock, planner.clone()).with_versions(versions)), planner))
}

/// Loads every version of `workflows_dir/NAME/` and its migrations, with the calendars of
/// `workflows_dir/calendars/`.
pub fn load_versions(workflows_dir: &Path, name: &str) -> Result<crate::workflow::Versions, DefinitionError> {
    crate::workflow::Versions::load(&workflows_dir.join(name), &workflows_dir.join("calendars"))
}

/// The worker's steps: where notifications and account changes go.
pub(crate) fn build_work(engine: Arc<Engine>, planner: Arc<Planner>, config: &WorkConfig) -> Work {
    let timeout = if config.http_timeout.is_zero() { std::time::Duration::from_secs(10) } else { config.http_timeout };
    let channel: Arc<dyn Channel> = match &config.notify_webhook {
        Some((url, secret)) => Arc::new(Webhook::new(url.clone(), secret.as_bytes().to_vec(), timeout)),
        None => Arc::new(RecordOnly),
    };
    let store = engine.store().clone();
    let actions: Arc<dyn AccountActions> = match &config.actions_url {
        Some((url, secret)) => {
            Arc::new(HttpActions::new(url.clone(), secret.as_bytes().to_vec(), timeout, engine.clock()))
        }
        None => Arc::new(DirectoryActions::new(store.clone())),
    };
    Work::new(engine, planner, channel, actions, Arc::new(StoreDirectory::new(store)))
}

/// Loads `workflows_dir/NAME/` with its calendar from `workflows_dir/calendars/`.
pub fn load_workflow(workflows_dir: &Path, name: &str) -> Result<Workflow, DefinitionError> {
    Workflow::load(&workflows_dir.join(name), &workflows_dir.join("calendars"))
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Workflow(#[from] DefinitionError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("document store: {0}")]
    Blobs(#[from] BlobError),
    #[error(
        "APPEALFLOW_ID_HASH_KEY is not set: identity numbers are stored only as keyed hashes, so set it to a long random secret (and keep it: changing it makes stored hashes unmatchable)"
    )]
    MissingIdKey,
    #[error(transparent)]
    WeakIdKey(#[from] WeakKey),
    #[error("notification templates: {0}")]
    Templates(#[from] TemplateError),
}

/// Settings of the intake side: where documents go, how ID numbers are hashed.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    pub blob_dir: PathBuf,
    pub id_hash_key: Option<String>,
    pub limits: DocumentLimits,
    /// The appealflow binary that parses uploaded PDFs in a sandboxed child process
    /// (the CLI sets its own executable); `None` parses them in this process.
    pub pdf_inspector: Option<PathBuf>,
}

/// The account-appeal rules (`rules.toml` beside the workflow).
pub fn load_rules(workflows_dir: &Path) -> Result<Rules, RulesError> {
    Rules::load(&workflows_dir.join(DEFAULT_WORKFLOW).join("rules.toml"))
}

pub fn id_hasher(key: Option<&str>) -> Result<IdHasher, StartupError> {
    let key = key.filter(|k| !k.is_empty()).ok_or(StartupError::MissingIdKey)?;
    Ok(IdHasher::new(key.as_bytes())?)
}

pub(crate) fn build_intake(
    engine: Arc<Engine>,
    workflows_dir: &Path,
    config: &IntakeConfig,
) -> Result<Intake, StartupError> {
    let rules = load_rules(workflows_dir)?;
    let hasher = id_hasher(config.id_hash_key.as_deref())?;
    let blobs = LocalBlobStore::open(&config.blob_dir)?;
    let directory = StoreDirectory::new(engine.store().clone());
    let intake = Intake::new(engine, Arc::new(directory), Arc::new(rules), Arc::new(blobs), hasher, config.limits);
    Ok(match &config.pdf_inspector {
        Some(exe) => intake.with_pdf_sandbox(crate::adapters::pdf_sandbox::PdfSandbox::new(exe.clone())),
        None => intake,
    })
}

/// Turns transparent huge pages off for this process (Linux); the flag holds for every
/// thread and for memory touched from then on, so it is called first thing.
/// With the kernel's `always` setting, each 2 MiB stretch of the allocator's heaps a
/// thread touches becomes resident whole, and a worker runs a thread per SQLite
/// connection: its resident memory under a burn-down then passed its 100 MB budget (the
/// queue bench at 1,000,000 appeals; README, Benchmarks). Elsewhere it does nothing.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) only sets a flag of the calling process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
