//! One assembly of appealflow for every process. `serve`, `worker`, `demo`, the other
//! commands and the test harnesses all build the application the same way: open (and
//! migrate) the database, load the workflow, its templates and calendars, build the
//! engine, the worker's steps and — where the process takes appeals in — the intake.

use std::path::PathBuf;
use std::sync::Arc;

use super::{
    Backend, DbOptions, IntakeConfig, StartupError, WorkConfig, build_intake, build_work, engine, open_with, queues,
};
use crate::app::intake::Intake;
use crate::app::work::Work;
use crate::engine::{Clock, Engine};
use crate::jobs::{Runtime, WorkerSettings};
use crate::store::Store;

/// Everything the application is built from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `sqlite://PATH` or `postgres://...`.
    pub database_url: String,
    /// The folder of workflow definitions and calendars (`--workflows`).
    pub workflows: PathBuf,
    pub db: DbOptions,
    /// Where notifications and account changes go.
    pub work: WorkConfig,
    /// The intake side (drafts, documents, ID numbers), for a process that takes appeals
    /// in. `None` for one that does not (a worker): it then needs no ID-number hash key.
    pub intake: Option<IntakeConfig>,
}

impl Settings {
    /// The defaults for a database and a workflows folder: no intake, the work settings'
    /// defaults.
    pub fn new(database_url: impl Into<String>, workflows: impl Into<PathBuf>) -> Self {
        Settings {
            database_url: database_url.into(),
            workflows: workflows.into(),
            db: DbOptions::default(),
            work: WorkConfig::default(),
            intake: None,
        }
    }

    pub fn with_work(mut self, work: WorkConfig) -> Self {
        self.work = work;
        self
    }

    pub fn with_intake(mut self, intake: IntakeConfig) -> Self {
        self.intake = Some(intake);
        self
    }
}

/// The application, built once per process.
#[derive(Clone)]
pub struct Application {
    pub store: Arc<dyn Store>,
    /// The pool the job queue's workers share.
    pub backend: Backend,
    pub engine: Arc<Engine>,
    /// The worker's steps (actions, notifications).
    pub work: Arc<Work>,
    intake: Option<Arc<Intake>>,
}

impl Application {
    /// Opens the database the settings name (bringing its schema up to date) and builds
    /// the application on it.
    pub async fn build(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let (store, backend) = open_with(&settings.database_url, &settings.db).await?;
        Self::on(store, backend, settings, clock)
    }

    /// Builds the application on a database already open (`settings.database_url` and
    /// `settings.db` are not read again).
    pub fn on(
        store: Arc<dyn Store>,
        backend: Backend,
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let (engine, planner) = engine(store.clone(), &settings.workflows, clock, &settings.work)?;
        let intake = match &settings.intake {
            Some(config) => Some(Arc::new(build_intake(engine.clone(), &settings.workflows, config)?)),
            None => None,
        };
        let work = Arc::new(build_work(engine.clone(), planner, &settings.work));
        Ok(Application { store, backend, engine, work, intake })
    }

    /// The intake side, when the settings asked for it.
    pub fn intake(&self) -> Option<&Arc<Intake>> {
        self.intake.as_ref()
    }

    /// The job worker's runtime on this application's queues.
    pub fn runtime(&self, settings: WorkerSettings) -> Runtime {
        Runtime::new(self.work.clone(), queues(&self.backend, &settings), settings)
    }
}
