//! Wiring: the only place that names concrete backends. Opens the store a URL names,
//! applies migrations, loads and validates the workflow, and builds the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
