//! Persistence behind one narrow seam. [`Store`] is shaped around whole units of work:
//! [`Store::commit`] writes an appeal's new state, its event, its timers, its outbox
//! rows and its idempotency record in ONE database transaction, or nothing at all.
//! Each backend owns its SQL and its migrations (`migrations/sqlite`,
//! `migrations/postgres`); `tests/store_conformance.rs` runs the same suite on both.

pub mod postgres;
pub mod sqlite;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::account::AccountChange;
use crate::domain::{Account, LookupKind, Role, TicketNumber};
use crate::workflow::decide::TimerArm;
use crate::workflow::definition::EffectDef;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppealRecord {
    pub id: String,
    pub ticket: TicketNumber,
    pub workflow: String,
    pub workflow_version: i64,
    pub state: String,
    pub outcome: Option<String>,
    pub version: i64,
    pub assignee: Option<String>,
    /// The account the appeal is about (its name in the account directory).
    pub account: String,
    /// The appeal's record as submitted (validated at the edge).
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One row of an appeal's append-only history. `seq` equals the appeal's version after
/// the commit that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: i64,
    pub transition: String,
    pub from: Option<String>,
    pub to: String,
    pub outcome: Option<String>,
    pub actor: String,
    pub role: Role,
    pub reasons: Vec<String>,
    pub payload: serde_json::Value,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerStatus {
    Armed,
    Fired,
    Cancelled,
}

impl TimerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerStatus::Armed => "armed",
            TimerStatus::Fired => "fired",
            TimerStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "armed" => TimerStatus::Armed,
            "fired" => TimerStatus::Fired,
            "cancelled" => TimerStatus::Cancelled,
            other => {
                return Err(StoreError::Corrupt(format!("unknown timer status {other:?}")));
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRecord {
    pub id: i64,
    pub appeal_id: String,
    pub ticket: TicketNumber,
    pub name: String,
    /// Increases each time the same timer is armed again on the same appeal.
    pub generation: i64,
    pub due_at: DateTime<Utc>,
    pub status: TimerStatus,
    pub armed_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

/// An effect waiting in (or delivered from) the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectRecord {
    pub id: i64,
    pub appeal_id: String,
    pub event_seq: i64,
    pub effect: String,
    pub template: Option<String>,
    pub recipient: Option<String>,
    /// Derived from (appeal, event, position): a redelivered effect carries the same key.
    pub idempotency_key: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    /// A hash of the command the key was first used with.
    pub fingerprint: String,
    /// What the first execution answered, replayed to repeats.
    pub response: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

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

/// Everything one decision changes, committed atomically by [`Store::commit`].
#[derive(Debug, Clone)]
pub struct UnitOfWork {
    pub appeal: AppealWrite,
    pub event: NewEvent,
    pub arm: Vec<TimerArm>,
    /// Timer names whose armed rows on this appeal are cancelled.
    pub cancel: Vec<String>,
    /// A due timer this unit of work settles as fired; the commit fails with
    /// [`CommitError::TimerNotArmed`] if another worker settled it first.
    pub fire_timer: Option<i64>,
    pub effects: Vec<EffectDef>,
    pub idempotency: Option<IdempotencyRecord>,
    pub at: DateTime<Utc>,
}

impl UnitOfWork {
    /// The outbox key of the `index`th effect: stable across retries of delivery.
    pub fn effect_key(appeal_id: &str, seq: i64, index: usize, effect: &EffectDef) -> String {
        let mut key = format!("{appeal_id}:{seq}:{index}:{}", effect.effect);
        if let Some(t) = &effect.template {
            key.push(':');
            key.push_str(t);
        }
        key
    }
}

/// Places a test can make a commit fail, to prove nothing partial is left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// After the appeal row and the event row are written, before timers and outbox.
    AfterEvent,
    /// After every write, just before COMMIT.
    BeforeCommit,
}

/// A shared switch a test flips; production code never sets it.
#[derive(Debug, Clone, Default)]
pub struct FailPoints(Arc<Mutex<Option<FailPoint>>>);

impl FailPoints {
    pub fn set(&self, fp: Option<FailPoint>) {
        *self.0.lock().expect("fail-point lock is never poisoned") = fp;
    }

    pub(crate) fn check(&self, here: FailPoint) -> Result<(), StoreError> {
        if *self.0.lock().expect("fail-point lock is never poisoned") == Some(here) {
            return Err(StoreError::Injected(here));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not what appealflow wrote: {0}")]
    Corrupt(String),
    #[error("injected failure at {0:?}")]
    Injected(FailPoint),
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
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CommitError {
    fn from(e: sqlx::Error) -> Self {
        CommitError::Store(StoreError::Database(e))
    }
}

/// A post-approval action to record for an appeal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAction {
    pub action: String,
    pub manual: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub id: i64,
    pub appeal_id: String,
    pub ticket: TicketNumber,
    pub action: String,
    /// `{appeal_id}:{action}`: the same on every attempt, on every worker.
    pub idempotency_key: String,
    pub manual: bool,
    /// pending, succeeded or failed (permanently; the appeal needs attention).
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub done_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The outcome of one attempt at an action.
#[derive(Debug, Clone)]
pub struct ActionAttempt {
    pub status: &'static str,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub done_by: Option<String>,
    /// Record the attempt only while the appeal is still at this version (checked in
    /// the same statement as the write): a decision made from a stale read changes nothing.
    pub if_appeal_version: Option<i64>,
}

/// What the built-in directory's ledger says about one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedChange {
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    /// True when the key had been applied before: nothing was changed this time.
    pub replayed: bool,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub id: i64,
    pub appeal_id: Option<String>,
    pub idempotency_key: String,
    pub template: String,
    pub channel: String,
    pub locale: String,
    /// The full address, needed to deliver; shown only masked.
    #[serde(skip_serializing)]
    pub recipient: String,
    pub recipient_masked: String,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct WorkFilter {
    pub appeal_id: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
}

/// A row of the job queue's table (apalis's, in the same database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub queue: String,
    /// Pending, Queued, Running, Done, Failed or Killed.
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Dead: no attempt will follow (attempts used up, or aborted).
    pub dead: bool,
    pub run_at: DateTime<Utc>,
    pub last_result: Option<String>,
    /// The job's arguments (IDs only).
    pub args: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub dead_only: bool,
    pub queue: Option<String>,
    pub limit: Option<i64>,
}

/// An API token as stored: only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    #[serde(skip_serializing)]
    pub token_hash: String,
    /// Where a lead's SLA warnings and breaches go.
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An applicant's draft as stored (the secret only as a hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftRecord {
    pub id: String,
    #[serde(skip_serializing)]
    pub secret_hash: String,
    pub data: serde_json::Value,
    /// Set once the draft was submitted.
    pub ticket: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `/metrics` reports, counted by the database rather than by loading rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Gauges {
    pub appeals_by_state: Vec<(String, i64)>,
    pub jobs_by_status: Vec<(String, i64)>,
    pub dead_jobs: i64,
    /// Review SLA timers that fired: deadlines passed without a decision.
    pub sla_breaches: i64,
}

#[derive(Debug, Clone, Default)]
pub struct AppealFilter {
    pub state: Option<String>,
    pub limit: Option<i64>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Applies this backend's migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;

    /// The versions of this build's migrations not (successfully) applied to the
    /// database: empty when the schema is current.
    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError>;

    /// Commits one unit of work atomically; returns the appeal's new version.
    async fn commit(&self, uow: &UnitOfWork) -> Result<i64, CommitError>;

    async fn appeal_by_ticket(&self, ticket: &TicketNumber) -> Result<Option<AppealRecord>, StoreError>;

    async fn appeal_by_id(&self, id: &str) -> Result<Option<AppealRecord>, StoreError>;

    /// Appeals, oldest first, optionally in one state.
    async fn list_appeals(&self, filter: &AppealFilter) -> Result<Vec<AppealRecord>, StoreError>;

    async fn history(&self, appeal_id: &str) -> Result<Vec<EventRecord>, StoreError>;

    /// Timers of one appeal (or all), by due time.
    async fn timers(&self, appeal_id: Option<&str>) -> Result<Vec<TimerRecord>, StoreError>;

    /// When the earliest armed timer falls due, if any.
    async fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Armed timers due at or before `now`, earliest first.
    async fn due_timers(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<TimerRecord>, StoreError>;

    /// Settles an armed timer that no longer applies (its appeal left the timer's
    /// states under an older definition) without touching the appeal.
    async fn settle_stale_timer(&self, timer_id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;

    async fn effects(&self, appeal_id: &str) -> Result<Vec<EffectRecord>, StoreError>;

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Records the answer to a keyed command that is not an appeal transition (e.g. an
    /// admin's job retry); false when the key is already recorded.
    async fn remember_idempotency(&self, record: &IdempotencyRecord) -> Result<bool, StoreError>;

    /// Inserts or replaces accounts (with their lookup keys) all at once, or none.
    async fn put_accounts(&self, accounts: &[Account], at: DateTime<Utc>) -> Result<(), StoreError>;

    async fn account(&self, name: &str) -> Result<Option<Account>, StoreError>;

    async fn account_by_key(&self, kind: LookupKind, value: &str) -> Result<Option<Account>, StoreError>;

    /// The account's appeal that has not closed, if any.
    async fn open_appeal_for(&self, account: &str) -> Result<Option<AppealRecord>, StoreError>;

    /// Outbox rows still `pending`, oldest first.
    async fn pending_effects(&self, limit: i64) -> Result<Vec<EffectRecord>, StoreError>;

    async fn effect(&self, id: i64) -> Result<Option<EffectRecord>, StoreError>;

    /// Moves an outbox row from one status to another; false if it was not in `from`.
    async fn set_effect_status(&self, id: i64, from: &str, to: &str) -> Result<bool, StoreError>;

    /// Records an appeal's post-approval actions (those already recorded are kept).
    async fn insert_actions(&self, appeal_id: &str, actions: &[NewAction], at: DateTime<Utc>)
    -> Result<(), StoreError>;

    async fn action(&self, id: i64) -> Result<Option<ActionRecord>, StoreError>;

    async fn actions(&self, filter: &WorkFilter) -> Result<Vec<ActionRecord>, StoreError>;

    /// Records one attempt at a pending action (attempts + 1); refuses to touch an
    /// action that is no longer pending and returns it unchanged.
    async fn record_action_attempt(
        &self,
        id: i64,
        attempt: &ActionAttempt,
        at: DateTime<Utc>,
    ) -> Result<ActionRecord, StoreError>;

    /// Puts a failed action back to pending (an operator retrying it).
    async fn reset_action(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Applies a change to an account in the embedded directory exactly once per key:
    /// the change and its ledger row commit together; a repeated key changes nothing and
    /// returns what the first application recorded.
    async fn apply_account_change(
        &self,
        key: &str,
        account: &str,
        action: &str,
        change: &AccountChange,
        at: DateTime<Utc>,
    ) -> Result<AppliedChange, StoreError>;

    /// Records notifications (a repeated idempotency key is ignored); returns the ids of
    /// all of them, new or already recorded.
    async fn insert_notifications(&self, items: &[NewNotification], at: DateTime<Utc>) -> Result<Vec<i64>, StoreError>;

    async fn notification(&self, id: i64) -> Result<Option<NotificationRecord>, StoreError>;

    async fn notifications(&self, filter: &WorkFilter) -> Result<Vec<NotificationRecord>, StoreError>;

    /// Records one delivery attempt: `sent` (with the time) or `pending`/`failed` with the error.
    async fn record_delivery(
        &self,
        id: i64,
        status: &str,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Outbox rows handed to the job queue but not yet done (for the relay's sweep).
    async fn queued_effects(&self, limit: i64) -> Result<Vec<EffectRecord>, StoreError>;

    /// Moves a job's next run `delay` from now (the database's clock): the backoff
    /// between attempts, persisted so it survives a restart.
    async fn defer_job(&self, job_id: &str, delay: std::time::Duration) -> Result<(), StoreError>;

    /// The job queue's rows, newest first.
    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;

    /// Puts a dead (failed or aborted) job back in the queue with fresh attempts.
    async fn retry_job(&self, job_id: &str) -> Result<bool, StoreError>;

    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;

    /// An unrevoked token by its hash.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    async fn insert_draft(&self, draft: &DraftRecord) -> Result<(), StoreError>;

    async fn draft(&self, id: &str) -> Result<Option<DraftRecord>, StoreError>;

    /// Replaces a draft's data (and marks it submitted when `ticket` is given), only if
    /// it was last written at `expected` (optimistic concurrency: two concurrent changes
    /// to one draft never silently lose one). False when the draft changed meanwhile.
    async fn update_draft(
        &self,
        id: &str,
        data: &serde_json::Value,
        ticket: Option<&str>,
        expected: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Counts for monitoring; `breach_timer` names the timer whose firing is a breach.
    async fn gauges(&self, breach_timer: &str) -> Result<Gauges, StoreError>;

    /// Counts of rows per table, for tests and diagnostics.
    async fn row_counts(&self) -> Result<RowCounts, StoreError>;

    fn fail_points(&self) -> &FailPoints;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    pub appeals: i64,
    pub events: i64,
    pub timers: i64,
    pub outbox: i64,
    pub idempotency: i64,
}
