//! Wiring: the only place that names concrete backends. Opens the store a URL names,
//! applies migrations, loads and validates the workflow, and builds the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;

use crate::adapters::accounts::{AccountActions, DirectoryActions, HttpActions, StoreDirectory};
use crate::adapters::blobs::{BlobError, LocalBlobStore};
use crate::adapters::notify::{Channel, RecordOnly, TemplateError, Templates, Webhook};
use crate::app::intake::Intake;
use crate::app::work::Work;
use crate::domain::IdHasher;
use crate::domain::document::DocumentLimits;
use crate::domain::identity::WeakKey;
use crate::domain::rules::{Rules, RulesError};
use crate::engine::{Clock, Engine};
use crate::jobs::{ACTIONS_QUEUE, EFFECTS_QUEUE, NOTIFICATIONS_QUEUE, Queues, WorkerSettings};
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

/// Opens the database and brings its schema up to date: appealflow's migrations
/// (recorded in `appealflow_migrations`) and the job queue's (recorded apart), so
/// neither migrator ever sees the other's versions.
pub async fn open(url: &str) -> Result<(Arc<dyn Store>, Backend), StoreError> {
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(url).await?;
        store.migrate().await?;
        // Only the migrations: apalis's `setup` would also switch the connection to
        // `synchronous = OFF`, which appealflow's durability promise forbids.
        SqliteStorage::migrations().run(store.pool()).await?;
        let pool = store.pool().clone();
        Ok((Arc::new(store), Backend::Sqlite(pool)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect(url).await?;
        store.migrate().await?;
        PostgresStorage::migrations().run(store.pool()).await?;
        let pool = store.pool().clone();
        Ok((Arc::new(store), Backend::Postgres(pool)))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// Opens the database and brings its schema up to date.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(open(url).await?.0)
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
            effects: SqliteStorage::new(pool).with_config(config!(apalis_sqlite::Config, EFFECTS_QUEUE)),
            actions: SqliteStorage::new(pool).with_config(config!(apalis_sqlite::Config, ACTIONS_QUEUE)),
            notifications: SqliteStorage::new(pool).with_config(config!(apalis_sqlite::Config, NOTIFICATIONS_QUEUE)),
        },
        Backend::Postgres(pool) => Queues::Postgres {
            effects: PostgresStorage::new(pool).with_config(config!(apalis_postgres::Config, EFFECTS_QUEUE)),
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

pub fn build_work(engine: Arc<Engine>, workflows_dir: &Path, config: &WorkConfig) -> Result<Work, StartupError> {
    let templates = Templates::load(&workflows_dir.join(DEFAULT_WORKFLOW).join("templates"))?;
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
        None => Arc::new(DirectoryActions::new(store.clone(), engine.clock())),
    };
    let work = Work::new(
        engine,
        Arc::new(templates),
        channel,
        actions,
        Arc::new(StoreDirectory::new(store)),
        config.lead_emails.clone(),
    );
    work.check_templates()?;
    Ok(work)
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
}

/// The account-appeal rules (`rules.toml` beside the workflow).
pub fn load_rules(workflows_dir: &Path) -> Result<Rules, RulesError> {
    Rules::load(&workflows_dir.join(DEFAULT_WORKFLOW).join("rules.toml"))
}

pub fn id_hasher(key: Option<&str>) -> Result<IdHasher, StartupError> {
    let key = key.filter(|k| !k.is_empty()).ok_or(StartupError::MissingIdKey)?;
    Ok(IdHasher::new(key.as_bytes())?)
}

pub fn build_intake(engine: Arc<Engine>, workflows_dir: &Path, config: &IntakeConfig) -> Result<Intake, StartupError> {
    let rules = load_rules(workflows_dir)?;
    let hasher = id_hasher(config.id_hash_key.as_deref())?;
    let blobs = LocalBlobStore::open(&config.blob_dir)?;
    let directory = StoreDirectory::new(engine.store().clone());
    Ok(Intake::new(engine, Arc::new(directory), Arc::new(rules), Arc::new(blobs), hasher, config.limits))
}

pub async fn build_engine(
    database_url: &str,
    workflows_dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<Engine, StartupError> {
    let workflow = load_workflow(workflows_dir, DEFAULT_WORKFLOW)?;
    let store = open_store(database_url).await?;
    Ok(Engine::new(store, Arc::new(workflow), clock))
}
