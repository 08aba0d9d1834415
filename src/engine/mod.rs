//! The engine: load an appeal, `decide`, and commit the decision as one unit of work.
//! It owns idempotency (a repeated key replays the first answer), optimistic
//! concurrency (a lost race is a conflict naming the current state and version) and
//! due-timer firing. A command may be compound — several transitions, on one appeal or
//! several (a submission supersedes the old appeal, creates the new one and screens it)
//! — and still commits once. The effects a decision declares are turned into rows and
//! jobs by an [`EffectPlanner`] and committed with it, so a job exists if and only if the
//! transition that caused it does. It knows nothing of HTTP, job queues or templates.

pub mod clock;
mod command;
mod error;
mod execute;
mod migrate;
mod timers;

pub use command::{BatchReads, Command, CommandOutcome, DataUpdate, EffectPlanner, Keyed, NewAppeal, Planned, Target};
pub use error::{EngineError, ErrorClass};
pub use migrate::MIGRATE;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

pub use clock::{Clock, ManualClock, SystemClock};

use crate::domain::{Actor, FieldError, TicketNumber};
use crate::store::{
    AppealChange, AppealKey, AppealRecord, AppealWrite, CommandLoad, CommitError, IdempotencyRecord, NewEvent, Store,
    StoreError, TimerFiring, TimerHandler, TimerRecord, TimerVerdict, UnitOfWork,
};
use crate::workflow::decide::{TimerSkip, decide, decide_timer};
use crate::workflow::{Decision, Dispute, Facts, Fire, PendingChange, Refusal, Snapshot, Versions, Workflow};

pub struct Engine {
    store: Arc<dyn Store>,
    /// The newest version: what new appeals start on.
    workflow: Arc<Workflow>,
    /// Every loaded version: an appeal is decided on the one it runs on.
    versions: Arc<Versions>,
    clock: Arc<dyn Clock>,
    effects: Arc<dyn EffectPlanner>,
}

fn fingerprint(value: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// Transitions an effect may cause in turn, within one unit of work, before it is
/// taken for a loop in the definition.
const MAX_FOLLOW_UPS: usize = 16;

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        workflow: Arc<Workflow>,
        clock: Arc<dyn Clock>,
        effects: Arc<dyn EffectPlanner>,
    ) -> Self {
        let versions = Arc::new(Versions::single(workflow.clone()));
        Engine { store, workflow, versions, clock, effects }
    }

    /// The engine with several versions of its workflow loaded (the newest is the one new
    /// appeals start on).
    pub fn with_versions(mut self, versions: Arc<Versions>) -> Self {
        self.workflow = versions.newest().clone();
        self.versions = versions;
        self
    }

    pub fn versions(&self) -> &Arc<Versions> {
        &self.versions
    }

    /// Version `version` of the workflow, for showing an appeal that runs on it (the
    /// newest when it is not loaded: deciding on such an appeal is refused elsewhere).
    pub fn workflow_at(&self, version: i64) -> &Arc<Workflow> {
        self.versions.get(version).unwrap_or(&self.workflow)
    }

    /// The version of the workflow an appeal runs on: the one it started on, or the one a
    /// migration moved it to. Refused when that version is not loaded.
    pub fn workflow_of(&self, record: &AppealRecord) -> Result<&Arc<Workflow>, EngineError> {
        self.versions.get(record.workflow_version).ok_or_else(|| {
            EngineError::Refused(Refusal::NotLoaded(format!(
                "appeal {} runs on {} v{}, which is not loaded (load its folder v{}, or migrate the appeal)",
                record.ticket, record.workflow, record.workflow_version, record.workflow_version
            )))
        })
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
        self.replayed(key, print, record).map(Some)
    }

    /// The first answer recorded under `key`, if it was this command (`print`).
    fn replayed(&self, key: &str, print: &str, record: IdempotencyRecord) -> Result<CommandOutcome, EngineError> {
        if record.fingerprint != print {
            return Err(EngineError::IdempotencyMismatch { key: key.to_string() });
        }
        let mut outcome: CommandOutcome = serde_json::from_value(record.response)
            .map_err(|e| StoreError::Corrupt(format!("idempotency response for {key:?}: {e}")))?;
        outcome.replayed = true;
        Ok(outcome)
    }

    fn facts(record: &AppealRecord) -> Facts {
        let flag = |pointer: &str| record.data.pointer(pointer).and_then(|v| v.as_bool()) == Some(true);
        // Records stored before the account's verification type was kept: an enterprise
        // draft names its enterprise's scenario.
        let enterprise_account = match record.data.get("verification").and_then(|v| v.as_str()) {
            Some(kind) => kind == "enterprise",
            None => record.data.pointer("/draft/scenario").is_some_and(|v| !v.is_null()),
        };
        Facts {
            entity_change_required: flag("/entity_change/required"),
            entity_change_linked: record.data.pointer("/entity_change/ticket").is_some_and(|v| !v.is_null()),
            changes_secure_phone: flag("/changes_secure_phone"),
            enterprise_account,
            first_approval: parsed(record, "first_approval"),
            pending_change: parsed(record, "pending_change"),
            disputed: record.data.get("disputed").is_some_and(|v| !v.is_null()),
            stopped_approver: record.data.pointer("/disputed/approved_by").and_then(|v| v.as_str()).map(str::to_string),
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

    fn create_basis(appeal: &NewAppeal, actor: &Actor) -> serde_json::Value {
        serde_json::json!({ "op": "create", "appeal": appeal, "actor": actor })
    }

    /// What identifies a creation for its idempotency key.
    pub fn create_keyed(key: &str, appeal: &NewAppeal, actor: &Actor) -> Keyed {
        Keyed { key: key.to_string(), basis: Self::create_basis(appeal, actor) }
    }

    /// The first answer to a keyed creation, if this key already created this appeal.
    pub async fn replay_create(
        &self,
        key: &str,
        appeal: &NewAppeal,
        actor: &Actor,
    ) -> Result<Option<CommandOutcome>, EngineError> {
        self.replay(key, &fingerprint(&Self::create_basis(appeal, actor))).await
    }

    /// Creates an appeal in the workflow's initial state and issues its ticket number.
    pub async fn create(
        &self,
        appeal: &NewAppeal,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> Result<CommandOutcome, EngineError> {
        let creation = Fire::new(self.workflow.bindings().submit.clone());
        let keyed = idempotency_key.map(|k| Self::create_keyed(k, appeal, actor));
        let command = Command::new(Target::New(appeal.clone()), creation, actor.clone());
        self.execute(vec![command], 0, UnitOfWork::default(), keyed).await
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
        let keyed = idempotency_key.map(|key| Keyed {
            key: key.to_string(),
            basis: serde_json::json!({ "op": "fire", "ticket": ticket.as_str(), "cmd": cmd, "actor": actor }),
        });
        let command =
            Command { target: Target::Ticket(ticket.clone()), fire: cmd.clone(), actor: actor.clone(), update };
        self.execute(vec![command], 0, UnitOfWork::default(), keyed).await
    }

    /// Adds one decided change to `uow`, plans its effects, and decides (and adds) the
    /// transitions those call for; returns the appeal as they leave it.
    #[allow(clippy::too_many_arguments)]
    async fn add(
        &self,
        uow: &mut UnitOfWork,
        before: Option<&AppealRecord>,
        write: AppealWrite,
        decision: Decision,
        actor: &Actor,
        fire_timer: Option<i64>,
        now: DateTime<Utc>,
        outcomes: &mut Vec<CommandOutcome>,
        batch: Option<&BatchReads>,
    ) -> Result<AppealRecord, EngineError> {
        let mut before = before.cloned();
        let mut next = Some((write, decision, actor.clone(), fire_timer));
        let mut follow_ups = std::collections::VecDeque::new();
        let mut after = None;
        let mut steps = 0;
        while let Some((write, decision, actor, fire_timer)) = next.take() {
            steps += 1;
            if steps > MAX_FOLLOW_UPS {
                return Err(EngineError::Effects(
                    "effects keep calling for transitions: a loop in the definition".into(),
                ));
            }
            let record = AppealRecord {
                id: write.id.clone(),
                ticket: write.ticket.clone(),
                workflow: write.workflow.clone(),
                workflow_version: write.workflow_version,
                state: write.state.clone(),
                outcome: write.outcome.clone(),
                version: write.new_version(),
                assignee: write.assignee.clone(),
                account: write.account.clone(),
                data: write.data.clone(),
                created_at: before.as_ref().map_or(now, |b| b.created_at),
                updated_at: now,
            };
            outcomes.push(CommandOutcome {
                ticket: write.ticket.clone(),
                transition: decision.transition.clone(),
                from: decision.from.clone(),
                state: decision.to.clone(),
                outcome: decision.outcome.clone(),
                version: record.version,
                replayed: false,
                also: vec![],
            });
            let planned = Planned { before: before.as_ref(), appeal: &record, decision: &decision, now, batch };
            let asked = self.effects.plan(&planned, uow).await?;
            uow.changes.push(AppealChange {
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
                review_sla: Some(self.workflow_at(record.workflow_version).bindings().review_sla.clone()),
            });
            follow_ups.extend(asked);
            if let Some(fire) = follow_ups.pop_front() {
                let system = Actor::system();
                let mut d = decide(self.workflow_of(&record)?, Some(&Self::snapshot(&record)), &fire, &system, now)?;
                let w = write_for(&record, &mut d, &system, now);
                next = Some((w, d, system, None));
            }
            before = Some(record.clone());
            after = Some(record);
        }
        Ok(after.expect("at least one change was added"))
    }
}

/// A typed part of an appeal's record, when it is there (and parses).
fn parsed<T: serde::de::DeserializeOwned>(record: &AppealRecord, key: &str) -> Option<T> {
    record.data.get(key).filter(|v| !v.is_null()).and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Records what a decision keeps in the appeal's data: a first approval (four-eyes); a
/// pending change with a fresh one-time stop code (cooling-off: the code goes to the
/// notice through the decision, only its salted hash into the record); a dispute. A
/// pending change is dropped when the appeal leaves its cooling-off any other way.
fn record_decision(write: &mut AppealWrite, decision: &mut Decision, actor: &Actor, now: DateTime<Utc>) {
    fn set(write: &mut AppealWrite, key: &str, value: impl Serialize) {
        if !write.data.is_object() {
            write.data = serde_json::json!({});
        }
        write.data[key] = serde_json::to_value(value).expect("appeal data serialises");
        write.data_changed = true;
    }
    if let Some(first) = &decision.first_approval {
        set(write, "first_approval", first);
    }
    let pending: Option<PendingChange> =
        write.data.get("pending_change").and_then(|v| serde_json::from_value(v.clone()).ok());
    if decision.disputes {
        let (change, approved_by) =
            pending.as_ref().map(|p| (p.rule.clone(), p.approved_by.clone())).unwrap_or_default();
        set(write, "disputed", Dispute { at: now, change, approved_by });
    }
    match &decision.cooling_off {
        Some(rule) => {
            let (pending, code) = PendingChange::issue(rule.clone(), actor.name.clone(), now);
            set(write, "pending_change", pending);
            decision.stop_code = Some(code);
        }
        None if decision.changes_state() && write.data.get("pending_change").is_some() => {
            if let Some(data) = write.data.as_object_mut() {
                data.remove("pending_change");
            }
            write.data_changed = true;
        }
        None => {}
    }
}

/// The write a decision makes to an appeal, with what it records in the data.
fn write_for(record: &AppealRecord, decision: &mut Decision, actor: &Actor, now: DateTime<Utc>) -> AppealWrite {
    let mut write = base_write(record, decision);
    record_decision(&mut write, decision, actor, now);
    write
}

/// The write a decision makes to an appeal's row, its data as it was.
fn base_write(record: &AppealRecord, decision: &Decision) -> AppealWrite {
    row_write(record, &decision.to, decision.outcome.clone(), decision.assignee.clone())
}

/// The write that moves an appeal's row to `state` (its data as it was).
fn row_write(record: &AppealRecord, state: &str, outcome: Option<String>, assignee: Option<String>) -> AppealWrite {
    AppealWrite {
        id: record.id.clone(),
        ticket: record.ticket.clone(),
        workflow: record.workflow.clone(),
        workflow_version: record.workflow_version,
        account: record.account.clone(),
        data: record.data.clone(),
        state: state.to_string(),
        outcome,
        assignee,
        data_changed: false,
        expected_version: Some(record.version),
    }
}
