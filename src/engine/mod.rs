//! The engine: load an appeal, `decide`, and commit the decision as one unit of work.
//! It owns idempotency (a repeated key replays the first answer), optimistic
//! concurrency (a lost race is a conflict naming the current state and version) and
//! due-timer firing. It knows nothing of HTTP, job queues or templates.

pub mod clock;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

pub use clock::{Clock, ManualClock, SystemClock};

use crate::domain::{Actor, FieldError, TicketNumber};
use crate::store::{
    AppealRecord, AppealWrite, CommitError, IdempotencyRecord, NewEvent, Store, StoreError, TimerRecord, TimerStatus,
    UnitOfWork,
};
use crate::workflow::decide::{TimerSkip, decide, decide_timer};
use crate::workflow::{Decision, Facts, Fire, Refusal, Snapshot, Workflow};

/// What a command answered; replayed verbatim for a repeated idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub ticket: TicketNumber,
    pub transition: String,
    pub from: Option<String>,
    pub state: String,
    pub outcome: Option<String>,
    pub version: i64,
    /// True when this answer is the replay of an earlier command with the same key.
    #[serde(default)]
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no appeal with ticket {0}")]
    NotFound(String),
    #[error("invalid input: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error(
        "conflict: the appeal changed concurrently and is now in state {state:?} at version {version}; \
         reload it and decide again"
    )]
    Conflict { state: String, version: i64 },
    #[error("idempotency key {key:?} was already used for a different command; use a new key")]
    IdempotencyMismatch { key: String },
    #[error("account {account:?} already has an open appeal, ticket {ticket} ({state}); follow that one up instead")]
    OpenAppeal { account: String, ticket: String, state: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a caller should treat an error: it decides CLI exit codes and HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The input was wrong (bad field, unknown ticket): fix it and try again.
    BadInput,
    /// A rule or the appeal's state refused it (including lost races).
    Refused,
    /// Something broke inside appealflow or its database.
    Internal,
}

impl EngineError {
    pub fn class(&self) -> ErrorClass {
        match self {
            EngineError::NotFound(_) | EngineError::Invalid(_) => ErrorClass::BadInput,
            EngineError::Refused(Refusal::UnknownTransition { .. }) => ErrorClass::BadInput,
            EngineError::Refused(Refusal::Calendar(_)) => ErrorClass::Internal,
            EngineError::Refused(_)
            | EngineError::Conflict { .. }
            | EngineError::IdempotencyMismatch { .. }
            | EngineError::OpenAppeal { .. } => ErrorClass::Refused,
            EngineError::Store(_) => ErrorClass::Internal,
        }
    }
}

/// A due timer that was acted on (or found stale) by [`Engine::run_due_timers`].
#[derive(Debug, Clone, Serialize)]
pub struct TimerRun {
    pub timer: TimerRecord,
    /// The transition or event it produced, `None` when it was stale and only settled.
    pub result: Option<CommandOutcome>,
    pub note: Option<String>,
}

/// A new appeal: the account it is about and its record (validated by the caller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAppeal {
    pub account: String,
    pub data: serde_json::Value,
}

/// Computes an appeal's new record from its current one, for commands that change it.
pub type DataUpdate<'a> = &'a (dyn Fn(&AppealRecord) -> Result<serde_json::Value, EngineError> + Send + Sync);

pub struct Engine {
    store: Arc<dyn Store>,
    workflow: Arc<Workflow>,
    clock: Arc<dyn Clock>,
}

fn fingerprint(value: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

const TICKET_ATTEMPTS: usize = 5;

impl Engine {
    pub fn new(store: Arc<dyn Store>, workflow: Arc<Workflow>, clock: Arc<dyn Clock>) -> Self {
        Engine { store, workflow, clock }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn workflow(&self) -> &Arc<Workflow> {
        &self.workflow
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Looks up an earlier use of `key`: its answer if it was this command, an error if
    /// it was another.
    async fn replay(&self, key: &str, print: &str) -> Result<Option<CommandOutcome>, EngineError> {
        let Some(record) = self.store.idempotency(key).await? else {
            return Ok(None);
        };
        if record.fingerprint != print {
            return Err(EngineError::IdempotencyMismatch { key: key.to_string() });
        }
        let mut outcome: CommandOutcome = serde_json::from_value(record.response)
            .map_err(|e| StoreError::Corrupt(format!("idempotency response for {key:?}: {e}")))?;
        outcome.replayed = true;
        Ok(Some(outcome))
    }

    fn facts(record: &AppealRecord) -> Facts {
        Facts {
            entity_change_required: record.data.pointer("/entity_change/required").and_then(|v| v.as_bool())
                == Some(true),
            entity_change_linked: record.data.pointer("/entity_change/ticket").is_some_and(|v| !v.is_null()),
        }
    }

    pub fn snapshot(record: &AppealRecord) -> Snapshot {
        Snapshot {
            state: record.state.clone(),
            outcome: record.outcome.clone(),
            version: record.version,
            assignee: record.assignee.clone(),
            facts: Self::facts(record),
        }
    }

    fn unit_of_work(
        &self,
        write: AppealWrite,
        decision: Decision,
        actor: &Actor,
        idempotency: Option<(String, String)>,
        fire_timer: Option<i64>,
        now: DateTime<Utc>,
    ) -> (UnitOfWork, CommandOutcome) {
        let outcome = CommandOutcome {
            ticket: write.ticket.clone(),
            transition: decision.transition.clone(),
            from: decision.from.clone(),
            state: decision.to.clone(),
            outcome: decision.outcome.clone(),
            version: write.new_version(),
            replayed: false,
        };
        let idempotency = idempotency.map(|(key, fingerprint)| IdempotencyRecord {
            key,
            fingerprint,
            response: serde_json::to_value(&outcome).expect("outcomes serialise"),
            created_at: now,
        });
        let uow = UnitOfWork {
            event: NewEvent {
                transition: decision.transition,
                from: decision.from,
                to: decision.to,
                outcome: decision.outcome,
                actor: actor.name.clone(),
                role: actor.role,
                reasons: decision.reasons,
                payload: decision.payload,
            },
            appeal: write,
            arm: decision.arm,
            cancel: decision.cancel,
            fire_timer,
            effects: decision.effects,
            idempotency,
            at: now,
        };
        (uow, outcome)
    }

    fn create_fingerprint(appeal: &NewAppeal, actor: &Actor) -> String {
        fingerprint(&serde_json::json!({ "op": "create", "appeal": appeal, "actor": actor }))
    }

    /// The first answer to a keyed creation, if this key already created this appeal.
    pub async fn replay_create(
        &self,
        key: &str,
        appeal: &NewAppeal,
        actor: &Actor,
    ) -> Result<Option<CommandOutcome>, EngineError> {
        self.replay(key, &Self::create_fingerprint(appeal, actor)).await
    }

    /// Creates an appeal in the workflow's initial state and issues its ticket number.
    pub async fn create(
        &self,
        appeal: &NewAppeal,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> Result<CommandOutcome, EngineError> {
        let creation = self.workflow.creation().name.clone();
        let print = Self::create_fingerprint(appeal, actor);
        if let Some(key) = idempotency_key
            && let Some(done) = self.replay(key, &print).await?
        {
            return Ok(done);
        }
        let now = self.clock.now();
        let decision = decide(&self.workflow, None, &Fire::new(creation), actor, now)?;
        let id = uuid::Uuid::new_v4().to_string();
        for _ in 0..TICKET_ATTEMPTS {
            let write = AppealWrite {
                id: id.clone(),
                ticket: TicketNumber::generate(),
                workflow: self.workflow.name().to_string(),
                workflow_version: i64::from(self.workflow.def.workflow.version),
                account: appeal.account.clone(),
                data: appeal.data.clone(),
                state: decision.to.clone(),
                outcome: decision.outcome.clone(),
                assignee: decision.assignee.clone(),
                expected_version: None,
            };
            let idem = idempotency_key.map(|k| (k.to_string(), print.clone()));
            let (uow, outcome) = self.unit_of_work(write, decision.clone(), actor, idem, None, now);
            match self.store.commit(&uow).await {
                Ok(_) => {
                    info!(ticket = %outcome.ticket, state = %outcome.state, "appeal created");
                    return Ok(outcome);
                }
                Err(CommitError::TicketTaken) => continue,
                Err(CommitError::OpenAppealExists) => {
                    let open = self.store.open_appeal_for(&appeal.account).await?;
                    return Err(match open {
                        Some(open) => EngineError::OpenAppeal {
                            account: appeal.account.clone(),
                            ticket: open.ticket.to_string(),
                            state: open.state,
                        },
                        // It closed in the meantime: the caller may simply try again.
                        None => EngineError::Conflict { state: "closed".into(), version: 0 },
                    });
                }
                Err(CommitError::IdempotencyKeyTaken) => {
                    let key = idempotency_key.expect("only keyed commands insert a key");
                    return self.replay(key, &print).await?.ok_or_else(|| {
                        EngineError::Store(StoreError::Corrupt(format!("idempotency key {key:?} vanished")))
                    });
                }
                Err(e) => return Err(commit_error(e)),
            }
        }
        Err(EngineError::Store(StoreError::Corrupt(format!(
            "{TICKET_ATTEMPTS} random ticket numbers in a row were taken"
        ))))
    }

    /// Fires a transition on an appeal.
    pub async fn fire(
        &self,
        ticket: &TicketNumber,
        cmd: &Fire,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> Result<CommandOutcome, EngineError> {
        self.fire_updating(ticket, cmd, actor, idempotency_key, None).await
    }

    /// Fires a transition that also replaces the appeal's record, computed from the
    /// current one by `update` in the same unit of work. The command's payload must
    /// identify the update, so idempotency can tell a repeat from a different command.
    pub async fn fire_updating(
        &self,
        ticket: &TicketNumber,
        cmd: &Fire,
        actor: &Actor,
        idempotency_key: Option<&str>,
        update: Option<DataUpdate<'_>>,
    ) -> Result<CommandOutcome, EngineError> {
        let mut bad = Vec::new();
        if let Err(e) = crate::domain::check_text("actor", &actor.name, false) {
            bad.push(e);
        }
        for (i, r) in cmd.reasons.iter().enumerate() {
            if let Err(e) = crate::domain::check_text(&format!("reasons[{i}]"), r, true) {
                bad.push(e);
            }
        }
        if !bad.is_empty() {
            return Err(EngineError::Invalid(bad));
        }
        let print = fingerprint(&serde_json::json!({ "op": "fire", "ticket": ticket, "cmd": cmd, "actor": actor }));
        if let Some(key) = idempotency_key
            && let Some(done) = self.replay(key, &print).await?
        {
            return Ok(done);
        }
        match self.fire_once(ticket, cmd, actor, idempotency_key.map(|k| (k, print.as_str())), update).await {
            // A repeat of a keyed command can lose the race to its own first attempt
            // (it loaded the appeal before that commit): it is still a repeat, so it
            // answers with the first result rather than a refusal or a conflict.
            Err(e @ (EngineError::Refused(_) | EngineError::Conflict { .. })) => match idempotency_key {
                Some(key) => self.replay(key, &print).await?.ok_or(e),
                None => Err(e),
            },
            other => other,
        }
    }

    /// Fires this appeal's timers that are already due, earliest first, so that a
    /// command never acts on a state whose deadline has passed (a window closed while
    /// no worker ran is closed before the late resubmission is decided).
    pub async fn catch_up(&self, record: AppealRecord) -> Result<AppealRecord, EngineError> {
        let now = self.clock.now();
        let overdue: Vec<TimerRecord> = self
            .store
            .timers(Some(&record.id))
            .await?
            .into_iter()
            .filter(|t| t.status == TimerStatus::Armed && t.due_at <= now)
            .collect();
        if overdue.is_empty() {
            return Ok(record);
        }
        for timer in overdue {
            self.fire_timer(timer, now).await?;
        }
        self.store
            .appeal_by_id(&record.id)
            .await?
            .ok_or_else(|| EngineError::Store(StoreError::Corrupt(format!("appeal {} vanished", record.ticket))))
    }

    async fn fire_once(
        &self,
        ticket: &TicketNumber,
        cmd: &Fire,
        actor: &Actor,
        idempotency: Option<(&str, &str)>,
        update: Option<DataUpdate<'_>>,
    ) -> Result<CommandOutcome, EngineError> {
        let record =
            self.store.appeal_by_ticket(ticket).await?.ok_or_else(|| EngineError::NotFound(ticket.to_string()))?;
        let record = self.catch_up(record).await?;
        let now = self.clock.now();
        let decision = decide(&self.workflow, Some(&Self::snapshot(&record)), cmd, actor, now)?;
        let mut write = write_for(&record, &decision);
        if let Some(update) = update {
            write.data = update(&record)?;
        }
        let idem = idempotency.map(|(k, p)| (k.to_string(), p.to_string()));
        let (uow, outcome) = self.unit_of_work(write, decision, actor, idem, None, now);
        match self.store.commit(&uow).await {
            Ok(_) => {
                info!(ticket = %outcome.ticket, transition = %outcome.transition, state = %outcome.state,
                      actor = %actor.name, "transition committed");
                Ok(outcome)
            }
            Err(CommitError::IdempotencyKeyTaken) => {
                let (key, print) = idempotency.expect("only keyed commands insert a key");
                self.replay(key, print)
                    .await?
                    .ok_or_else(|| EngineError::Store(StoreError::Corrupt(format!("idempotency key {key:?} vanished"))))
            }
            Err(e) => Err(commit_error(e)),
        }
    }

    /// Acts on every armed timer due at or before the clock's now, earliest first.
    /// Each fire re-checks the appeal's state and settles the timer row in the same
    /// unit of work, so a timer acts at most once even with several workers.
    pub async fn run_due_timers(&self, limit: i64) -> Result<Vec<TimerRun>, EngineError> {
        let now = self.clock.now();
        let mut runs = Vec::new();
        for timer in self.store.due_timers(now, limit).await? {
            runs.push(self.fire_timer(timer, now).await?);
        }
        Ok(runs)
    }

    async fn fire_timer(&self, timer: TimerRecord, now: DateTime<Utc>) -> Result<TimerRun, EngineError> {
        let record = self
            .store
            .appeal_by_id(&timer.appeal_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("timer {} names a missing appeal", timer.id)))?;
        let snapshot = Self::snapshot(&record);
        let decision = match decide_timer(&self.workflow, &snapshot, &timer.name, now) {
            Ok(d) => d,
            Err(skip @ (TimerSkip::Unknown(_) | TimerSkip::NotRunning { .. })) => {
                warn!(ticket = %record.ticket, timer = %timer.name, reason = %skip, "stale timer settled without acting");
                self.store.settle_stale_timer(timer.id, now).await?;
                return Ok(TimerRun { timer, result: None, note: Some(skip.to_string()) });
            }
            // A timer that should act but is refused (e.g. its deadline computation left
            // the calendar's published range) stays armed and is reported: dropping it
            // would lose the deadline.
            Err(TimerSkip::Refused(refusal)) => {
                tracing::error!(ticket = %record.ticket, timer = %timer.name, reason = %refusal, "due timer refused; left armed");
                return Ok(TimerRun { timer, result: None, note: Some(format!("refused, left armed: {refusal}")) });
            }
        };
        let write = write_for(&record, &decision);
        let (uow, outcome) = self.unit_of_work(write, decision, &Actor::system(), None, Some(timer.id), now);
        match self.store.commit(&uow).await {
            Ok(_) => {
                info!(ticket = %outcome.ticket, timer = %timer.name, transition = %outcome.transition, "timer fired");
                Ok(TimerRun { timer, result: Some(outcome), note: None })
            }
            // Another worker fired it, or the appeal moved on: the next poll re-reads.
            Err(CommitError::TimerNotArmed) => {
                Ok(TimerRun { timer, result: None, note: Some("already settled by another worker".into()) })
            }
            Err(CommitError::Conflict { state, version }) => Ok(TimerRun {
                timer,
                result: None,
                note: Some(format!("appeal changed concurrently (now {state} v{version}); retried on next poll")),
            }),
            Err(e) => Err(commit_error(e)),
        }
    }
}

fn write_for(record: &AppealRecord, decision: &Decision) -> AppealWrite {
    AppealWrite {
        id: record.id.clone(),
        ticket: record.ticket.clone(),
        workflow: record.workflow.clone(),
        workflow_version: record.workflow_version,
        account: record.account.clone(),
        data: record.data.clone(),
        state: decision.to.clone(),
        outcome: decision.outcome.clone(),
        assignee: decision.assignee.clone(),
        expected_version: Some(record.version),
    }
}

fn commit_error(e: CommitError) -> EngineError {
    match e {
        CommitError::Conflict { state, version } => EngineError::Conflict { state, version },
        CommitError::Store(s) => EngineError::Store(s),
        other => EngineError::Store(StoreError::Corrupt(format!("unexpected commit outcome: {other}"))),
    }
}
