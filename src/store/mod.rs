//! Persistence behind one narrow seam. [`Store`] is shaped around whole units of work:
//! [`Store::commit`] writes everything one command or one job step changes — appeal
//! transitions with their events and timers, notifications, post-approval actions,
//! account changes, the idempotency record, and the jobs all this causes (through
//! [`JobWriter`], into the job queue's own tables) — in ONE database transaction, or
//! nothing at all. A job therefore exists if and only if the commit that caused it does.
//!
//! The statements both engines run alike are written once, in `store/shared/`, and
//! compiled into each backend; a backend module keeps by hand only what truly differs
//! (how it opens a write transaction, row locks, clock functions, JSON functions, the
//! job queue's table). Rows map themselves once (`records.rs`, via `FromRow`).
//! Migrations stay per backend (`migrations/sqlite`, `migrations/postgres`);
//! `tests/it/store_conformance.rs` and `tests/it/store_driver.rs` run on both.

pub mod codec;
mod records;
mod traits;
pub use records::*;
pub use traits::*;

pub mod postgres;
pub mod sqlite;

use crate::domain::{Account, Role, TicketNumber};
use crate::workflow::decide::TimerArm;
use crate::workflow::definition::EffectDef;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Names the appeal a command acts on.
#[derive(Debug, Clone, Copy)]
pub enum AppealKey<'a> {
    Ticket(&'a TicketNumber),
    Id(&'a str),
}

/// What a command needs before it decides, read in one round trip by
/// [`AppealStore::load_for_command`].
#[derive(Debug, Clone, Default)]
pub struct CommandLoad {
    /// The appeal, if it exists.
    pub appeal: Option<AppealRecord>,
    /// Whether any of its armed timers is due at the instant asked about: the command
    /// fires them first (`Engine::catch_up`), else it skips that transaction.
    pub timer_due: bool,
    /// What the command's idempotency key recorded, if it was used before.
    pub idempotency: Option<IdempotencyRecord>,
}

/// An appeal with its history and timers, as the progress query reads them.
#[derive(Debug, Clone)]
pub struct ProgressRows {
    pub appeal: AppealRecord,
    /// Oldest first; empty unless the phone asked with was the appeal's contact phone.
    pub history: Vec<EventRecord>,
    /// By due time; empty unless the phone asked with was the appeal's contact phone.
    pub timers: Vec<TimerRecord>,
}

/// How soon a newly armed timer must fall due for its commit to wake the timer loops
/// (this process's; on PostgreSQL every worker's, by NOTIFY): longer than any sensible
/// poll interval, so a timer due later is always found by a poll before it is due.
pub const ANNOUNCE_WITHIN: chrono::Duration = chrono::Duration::minutes(10);

/// The appeal row a unit of work writes.
#[derive(Debug, Clone)]
pub struct AppealWrite {
    pub id: String,
    pub ticket: TicketNumber,
    pub workflow: String,
    pub workflow_version: i64,
    pub account: String,
    pub data: serde_json::Value,
    pub state: String,
    pub outcome: Option<String>,
    pub assignee: Option<String>,
    /// Whether `data` differs from the stored record's: an update leaves the stored
    /// record (and the queue's copies of it) alone when it does not, so a transition
    /// does not serialise and rewrite the whole record. A new appeal always writes it.
    pub data_changed: bool,
    /// `None` inserts a new appeal (version 1); `Some(v)` updates only if the stored
    /// version is still `v`, and writes `v + 1`.
    pub expected_version: Option<i64>,
}

impl AppealWrite {
    pub fn new_version(&self) -> i64 {
        self.expected_version.map_or(1, |v| v + 1)
    }
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub transition: String,
    pub from: Option<String>,
    pub to: String,
    pub outcome: Option<String>,
    pub actor: String,
    pub role: Role,
    pub reasons: Vec<String>,
    pub payload: serde_json::Value,
}

/// One appeal's transition (or timer event) within a unit of work.
#[derive(Debug, Clone)]
pub struct AppealChange {
    pub appeal: AppealWrite,
    pub event: NewEvent,
    pub arm: Vec<TimerArm>,
    /// Timer names whose armed rows on this appeal are cancelled.
    pub cancel: Vec<String>,
    /// A due timer this change settles as fired; the commit fails with
    /// [`CommitError::TimerNotArmed`] if it was settled meanwhile.
    pub fire_timer: Option<i64>,
    /// The timer whose deadline orders the review queue (the workflow's review SLA).
    /// When the change arms, cancels or fires any timer, the appeal row's copy of this
    /// timer's deadline (`review_due_at`, `review_fired`, `review_warn_at`) is computed
    /// again from the timers, in the same transaction.
    pub review_sla: Option<String>,
}

/// Everything one command or one job step changes, committed atomically by
/// [`Store::commit`]. Every part is optional; the parts are written in field order.
#[derive(Debug, Clone, Default)]
pub struct UnitOfWork {
    pub at: DateTime<Utc>,
    pub idempotency: Option<IdempotencyRecord>,
    /// Transitions, in order (several may touch one appeal: v, v+1, ...).
    pub changes: Vec<AppealChange>,
    /// New notifications; each new `pending` one gets its delivery job.
    pub notifications: Vec<NewNotification>,
    /// Outcomes of delivery attempts and moves along fallback chains.
    pub deliveries: Vec<DeliveryUpdate>,
    /// New post-approval actions; each new non-manual one gets its job.
    pub actions: Vec<NewAction>,
    /// Outcomes of action attempts (each only while the action is still pending).
    pub action_updates: Vec<ActionUpdate>,
    /// Changes to accounts of the embedded directory, each applied once by its key.
    pub ledger: Vec<LedgerEntry>,
    /// Jobs for rows that exist already (an action an operator retries).
    pub jobs: Vec<JobRef>,
    /// The running job's next attempt moved later (its backoff), with its failure.
    pub defer_job: Option<JobDeferral>,
    /// Outbox rows of an earlier version carried out by this unit of work.
    pub legacy_effects_done: Vec<i64>,
}

impl UnitOfWork {
    pub fn new(at: DateTime<Utc>) -> Self {
        UnitOfWork { at, ..UnitOfWork::default() }
    }

    /// The key of the `index`th effect of the event at `seq`: stable, so a notification
    /// or an action made for it is recorded once however often it is planned.
    pub fn effect_key(appeal_id: &str, seq: i64, index: usize, effect: &EffectDef) -> String {
        let mut key = format!("{appeal_id}:{seq}:{index}:{}", effect.effect);
        if let Some(t) = &effect.template {
            key.push(':');
            key.push_str(t);
        }
        key
    }

    /// Whether any of its changes arms a timer falling due within [`ANNOUNCE_WITHIN`] of
    /// the unit's instant: one a timer loop's poll might find late, so the commit wakes
    /// the loops. (A claim's four-hour expiry, say, wakes nobody: a poll finds it in time.)
    pub fn arms_timers_soon(&self) -> bool {
        let soon = self.at + ANNOUNCE_WITHIN;
        self.changes.iter().flat_map(|c| &c.arm).any(|a| a.due_at <= soon)
    }

    /// True when committing it would write nothing.
    pub fn is_empty(&self) -> bool {
        self.idempotency.is_none()
            && self.changes.is_empty()
            && self.notifications.is_empty()
            && self.deliveries.is_empty()
            && self.actions.is_empty()
            && self.action_updates.is_empty()
            && self.ledger.is_empty()
            && self.jobs.is_empty()
            && self.defer_job.is_none()
            && self.legacy_effects_done.is_empty()
    }
}

/// A job to enqueue, named by the row it works on. [`JobWriter`] turns it into a row of
/// the job queue's table (queue, arguments, idempotency key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRef {
    /// Apply a post-approval action (`appeal_actions.id`).
    Action(i64),
    /// An action an operator put back to pending: a new job (`nonce` keeps it apart
    /// from the action's first job, which has ended).
    ActionRetry { id: i64, nonce: String },
    /// Deliver a notification (`notifications.id`).
    Notification(i64),
}

/// Writes jobs into the job queue's tables through the caller's open transaction, so
/// they commit or roll back with it. Implemented where the job queue's library lives
/// (`jobs/`); the store only hands it its connection.
#[async_trait]
pub trait JobWriter: Send + Sync + 'static {
    async fn write_sqlite(&self, conn: &mut SqliteConn, jobs: &[JobRef]) -> Result<(), StoreError>;
    async fn write_postgres(&self, conn: &mut PgConn, jobs: &[JobRef]) -> Result<(), StoreError>;
}

/// One row of the job queue's SQLite table (`Jobs`), with the values the queue's own
/// insert gives it; written many to a statement by [`sqlite::push_jobs`].
#[derive(Debug, Clone)]
pub struct QueuedJob<'a> {
    pub args: &'a [u8],
    pub id: String,
    pub queue: &'a str,
    pub max_attempts: i64,
    /// Unix seconds.
    pub run_at: i64,
    pub priority: i64,
    /// The task's metadata, as JSON text.
    pub metadata: String,
    pub idempotency_key: Option<&'a str>,
}

/// A connection of the embedded backend, as [`JobWriter`] receives it (inside a transaction).
pub type SqliteConn = sqlx::SqliteConnection;
/// A PostgreSQL connection, as [`JobWriter`] receives it (inside a transaction).
pub type PgConn = sqlx::PgConnection;

/// The running job's next attempt, `delay` after now (by the database's clock, which is
/// the clock the job queue schedules by), recorded with the step's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDeferral {
    pub job_id: String,
    pub delay: std::time::Duration,
}

/// What happens to a notification in a unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryUpdate {
    /// An attempt ended: `sent`, `pending` (retried later, with the error) or `failed`
    /// for good. Only while the notification is `pending`.
    Attempted { id: i64, status: NotificationStatus, error: Option<String> },
    /// The next channel of a chain whose earlier channel failed: `held` → `pending`,
    /// with its delivery job.
    Release { id: i64 },
    /// A later channel of a chain an earlier channel reached: `held` → `skipped`.
    Skip { id: i64 },
}

/// A post-approval action's attempt, recorded only while the action is `pending`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionUpdate {
    pub id: i64,
    pub status: ActionStatus,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub done_by: Option<String>,
}

/// A change to an account of the embedded directory: written only while the account's
/// stored record is still `expected` (as [`Store::account_record`] read it; else the
/// commit fails with [`CommitError::Stale`] and the step computes it again), with its
/// ledger row keyed by `key` (a second row for one key fails the same way).
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub key: String,
    pub account: String,
    pub action: String,
    pub expected: String,
    pub record: Account,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not what appealflow wrote: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Injected(#[from] crate::failpoint::Injected),
    #[error("job queue: {0}")]
    Queue(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("no account named {0:?} in the directory")]
    UnknownAccount(String),
    #[error("{kind} {value:?} is claimed by both account {first:?} and account {second:?}")]
    DuplicateAccountKey { kind: &'static str, value: String, first: String, second: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("conflict: the appeal changed concurrently; it is now in state {state:?} at version {version}")]
    Conflict { state: String, version: i64 },
    #[error("the timer was already settled by another worker")]
    TimerNotArmed,
    #[error("the idempotency key was used by a concurrent command")]
    IdempotencyKeyTaken,
    #[error("ticket number collision")]
    TicketTaken,
    #[error("the account already has an open appeal")]
    OpenAppealExists,
    /// A row the unit of work updates conditionally was changed meanwhile (an action no
    /// longer pending, a notification already delivered, an account record rewritten).
    #[error("{0} changed concurrently")]
    Stale(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CommitError {
    fn from(e: sqlx::Error) -> Self {
        CommitError::Store(StoreError::Database(e))
    }
}

impl From<crate::failpoint::Injected> for CommitError {
    fn from(e: crate::failpoint::Injected) -> Self {
        CommitError::Store(StoreError::Injected(e))
    }
}

/// A post-approval action to record for an appeal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAction {
    pub appeal_id: String,
    pub action: String,
    pub manual: bool,
}

impl NewAction {
    /// `{appeal_id}:{action}`: the same on every attempt, on every worker.
    pub fn key(&self) -> String {
        format!("{}:{}", self.appeal_id, self.action)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub appeal_id: Option<String>,
    pub idempotency_key: String,
    pub template: String,
    pub channel: String,
    pub locale: String,
    pub recipient: String,
    pub recipient_masked: String,
    pub body: String,
    /// `Pending` (delivered now) or `Held` (a later channel of a fallback chain).
    pub status: NotificationStatus,
    /// The fallback chain it belongs to (the effect's key), delivered in `position` order.
    pub chain: Option<String>,
    pub position: i64,
    /// The transition its delivery fires on the appeal.
    pub on_delivered: Option<String>,
    /// The transition fired when every channel of its chain failed for good.
    pub on_undeliverable: Option<String>,
}

/// What to do with one claimed due timer, decided by the engine.
#[derive(Debug)]
pub enum TimerVerdict {
    /// Commit this unit of work; it settles the timer as fired.
    Fire(Box<UnitOfWork>),
    /// The timer no longer applies: settle it as cancelled without touching the appeal.
    Stale(String),
    /// It should act but cannot now (its deadline computation was refused): leave it armed.
    Leave(String),
}

/// Decides due timers for [`Store::fire_due_timers`], inside its transaction.
#[async_trait]
pub trait TimerHandler: Send + Sync {
    async fn decide(&self, timer: &TimerRecord, appeal: &AppealRecord) -> TimerVerdict;

    /// Called once per batch that claimed anything, before its first `decide`, with
    /// every timer (of any status) of the batch's appeals, read in the claiming
    /// transaction in one statement: what the decisions' effects may need (a deadline a
    /// notification names) without a read per firing. The claim is complete by then: the
    /// batch's appeals are the ones these timers name.
    fn prepare(&self, timers: Vec<TimerRecord>) {
        let _ = timers;
    }

    /// Whether other batches of this burn-down are in flight beside this one (the timer
    /// loop's lanes): on SQLite such a batch claims and decides before it takes the
    /// write lock, so that one batch is decided while another writes; a batch alone
    /// claims under the lock.
    fn beside_others(&self) -> bool {
        false
    }

    /// The review SLA's timer name ([`AppealChange::review_sla`]): a stale timer of this
    /// name settled as cancelled updates the appeal's queue columns too.
    fn review_sla(&self) -> Option<&str> {
        None
    }
}

/// What became of one claimed timer.
#[derive(Debug, Clone)]
pub struct TimerFiring {
    pub timer: TimerRecord,
    /// `fired`, `stale`, `left armed`, `failed`, or [`TimerFiring::CHANGED`].
    pub outcome: &'static str,
    pub note: Option<String>,
}

impl TimerFiring {
    /// Left armed because its timer or appeal changed between the read its batch was
    /// decided on and the batch's write (a burn-down's batch on SQLite, which decides
    /// before it takes the write lock): a later batch decides it again.
    pub const CHANGED: &'static str = "changed";

    /// Whether the burn-down moved on with this timer: it fired or was settled, or its
    /// batch found it changed and a later batch decides it again.
    pub fn progressed(&self) -> bool {
        matches!(self.outcome, "fired" | "stale" | Self::CHANGED)
    }
}

/// The store's traits, for code holding a whole `dyn Store`.
pub mod prelude {
    pub use super::{AccessStore, AppealStore, Database, Diagnostics, DirectoryStore, QueueAdmin, Store, WorkStore};
}
