//! The worker's steps, independent of the job queue that schedules them: applying a
//! post-approval action through the account seam, delivering a notification through its
//! channel, marking a manual task done. Each step commits its whole result in ONE unit
//! of work — the action's or notification's record, the transition it causes (the
//! window opening when the rejection notice is delivered, the appeal completing when its
//! last action succeeded), the rows and jobs that follow — so a crash leaves either all
//! of it or none, and the step's re-run (a job is delivered at least once) finds nothing
//! left to do or does all of it. External calls carry stable idempotency keys: a retry
//! sends the same request again, never a different one.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use crate::adapters::accounts::{AccountActions, AccountDirectory, ActionRequest};
use crate::adapters::notify::Channel;
use crate::app::effects::Planner;
use crate::app::health::Health;
use crate::app::intake::AppealData;
use crate::domain::account::AccountChange;
use crate::domain::{Actor, Role, TicketNumber};
use crate::engine::{Command, Engine, EngineError, Target};
use crate::store::{
    ActionRecord, ActionStatus, ActionUpdate, AppealRecord, CommitError, DeliveryUpdate, JobDeferral,
    NotificationRecord, NotificationStatus, StoreError, UnitOfWork, WorkFilter,
};
use crate::workflow::definition::ActionKind;
use crate::workflow::{Fire, Refusal};

mod actions;
mod adopt;
mod delivery;
mod error;
pub use error::{ManualDone, ManualTaskError, WorkError};

/// The job a step runs in: its attempt and what a retryable failure should wait, so
/// the failure and the backoff are recorded in the same commit.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// The job queue's id of the running job (its next attempt is moved later).
    pub job_id: Option<String>,
    /// This attempt, from 1.
    pub attempt: usize,
    pub max_attempts: usize,
    /// The wait before the next attempt if this one fails and may be retried.
    pub backoff: Duration,
}

impl StepRun {
    /// A single attempt outside the job queue (its failure is final).
    pub fn once() -> Self {
        StepRun { job_id: None, attempt: 1, max_attempts: 1, backoff: Duration::ZERO }
    }

    fn last(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    fn deferral(&self) -> Option<JobDeferral> {
        self.job_id.clone().map(|job_id| JobDeferral { job_id, delay: self.backoff })
    }
}

/// How often a step decides again after losing a race to another writer.
const RACES: usize = 8;

/// What a deterministic run did, counted from the database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimulationReport {
    pub timers_fired: usize,
    pub jobs_done: usize,
    pub actions_succeeded: usize,
    pub notifications_sent: usize,
    /// Jobs that used up their attempts (or were aborted): `jobs list --dead`.
    pub dead_jobs: usize,
}

pub struct Work {
    engine: Arc<Engine>,
    planner: Arc<Planner>,
    channel: Arc<dyn Channel>,
    actions: Arc<dyn AccountActions>,
    directory: Arc<dyn AccountDirectory>,
    health: Arc<Health>,
}

/// A step's outcome on the appeal: the transitions to fire, with the rows the step
/// itself writes (committed together).
enum Outcome {
    Fire(Vec<Fire>, UnitOfWork),
}

impl Work {
    pub fn new(
        engine: Arc<Engine>,
        planner: Arc<Planner>,
        channel: Arc<dyn Channel>,
        actions: Arc<dyn AccountActions>,
        directory: Arc<dyn AccountDirectory>,
    ) -> Self {
        Work { engine, planner, channel, actions, directory, health: Arc::new(Health::default()) }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn planner(&self) -> &Arc<Planner> {
        &self.planner
    }

    /// How this process's worker loops are doing.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    pub async fn lead_emails(&self) -> Result<Vec<String>, StoreError> {
        self.planner.lead_emails().await
    }

    fn scope(&self) -> &str {
        self.engine.store().scope()
    }

    async fn appeal(&self, id: &str) -> Result<AppealRecord, WorkError> {
        self.engine
            .store()
            .appeal_by_id(id)
            .await?
            .ok_or_else(|| WorkError::Permanent(format!("appeal {id} does not exist")))
    }

    /// Commits a step's outcome: its transitions (decided on the appeal at `version`, the
    /// one the step read) with its own rows, or its rows alone. `Ok(false)` when another
    /// writer got there first and the step must read and decide again.
    async fn commit(&self, appeal: &AppealRecord, outcome: Outcome) -> Result<bool, WorkError> {
        let Outcome::Fire(fires, uow) = outcome;
        let commands = fires
            .into_iter()
            .enumerate()
            .map(|(i, mut fire)| {
                let target = if i == 0 {
                    fire.expect_version = Some(appeal.version);
                    Target::Id(appeal.id.clone())
                } else {
                    Target::Same
                };
                Command::new(target, fire, Actor::system())
            })
            .collect();
        match self.engine.execute(commands, 0, uow.clone(), None).await {
            Ok(_) => Ok(true),
            Err(EngineError::Conflict { .. } | EngineError::Stale(_))
            | Err(EngineError::Refused(Refusal::StaleVersion { .. })) => Ok(false),
            // The appeal moved on (withdrawn, completed by hand): the step's own record
            // still stands, without the transition.
            Err(EngineError::Refused(r)) => {
                info!(ticket = %appeal.ticket, reason = %r, "step recorded without its transition");
                self.commit_rows(uow).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn commit_rows(&self, uow: UnitOfWork) -> Result<bool, WorkError> {
        match self.engine.store().commit(&uow).await {
            Ok(()) => Ok(true),
            Err(CommitError::Stale(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
