//! Wiring: the only place that names concrete backends. Opens the store a URL names,
//! applies migrations, loads and validates the workflow, and builds the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::adapters::accounts::StoreDirectory;
use crate::adapters::blobs::{BlobError, LocalBlobStore};
use crate::app::intake::Intake;
use crate::domain::IdHasher;
use crate::domain::document::DocumentLimits;
use crate::domain::identity::WeakKey;
use crate::domain::rules::{Rules, RulesError};
use crate::engine::{Clock, Engine};
use crate::store::{self, Store, StoreError};
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

/// Opens the database and brings its schema up to date.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let store = store::connect(url).await?;
    store.migrate().await?;
    Ok(store)
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
