//! The engine: load an appeal, `decide`, and commit the decision as one unit of work.
//! It owns idempotency (a repeated key replays the first answer), optimistic
//! concurrency (a lost race is a conflict naming the current state and version) and
//! due-timer firing. A command may be compound — several transitions, on one appeal or
//! several (a submission supersedes the old appeal, creates the new one and screens it)
//! — and still commits once. The effects a decision declares are turned into rows and
//! jobs by an [`EffectPlanner`] and committed with it, so a job exists if and only if the
//! transition that caused it does. It knows nothing of HTTP, job queues or templates.

pub mod clock;
mod error;
mod timers;

pub use error::{EngineError, ErrorClass};

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
    AppealChange, AppealRecord, AppealWrite, CommitError, IdempotencyRecord, NewEvent, Store, StoreError, TimerFiring,
    TimerHandler, TimerRecord, TimerVerdict, UnitOfWork,
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
    /// The other transitions the same unit of work committed (a compound command's, and
    /// those its effects called for), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<CommandOutcome>,
}

/// A new appeal: the account it is about and its record (validated by the caller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAppeal {
    pub account: String,
    pub data: serde_json::Value,
}

/// Computes an appeal's new record from its current one, for commands that change it.
pub type DataUpdate<'a> = &'a (dyn Fn(&AppealRecord) -> Result<serde_json::Value, EngineError> + Send + Sync);

/// Which appeal a command acts on.
#[derive(Debug, Clone)]
pub enum Target {
    /// A new appeal (the command is the workflow's creation transition).
    New(NewAppeal),
    Ticket(TicketNumber),
    Id(String),
    /// The appeal the previous command of the same unit of work acted on, as it left it.
    Same,
}

/// One transition to decide within a unit of work.
pub struct Command<'a> {
    pub target: Target,
    pub fire: Fire,
    pub actor: Actor,
    /// Replaces the appeal's record, computed from its current one.
    pub update: Option<DataUpdate<'a>>,
}

impl<'a> Command<'a> {
    pub fn new(target: Target, fire: Fire, actor: Actor) -> Self {
        Command { target, fire, actor, update: None }
    }
}

/// The idempotency key of a command and what identifies the command it stands for (a
/// repeat with the same key and basis replays; another basis is refused).
#[derive(Debug, Clone)]
pub struct Keyed {
    pub key: String,
    pub basis: serde_json::Value,
}

/// One decision as its effects are planned: the appeal as the decision leaves it.
pub struct Planned<'a> {
    pub before: Option<&'a AppealRecord>,
    pub appeal: &'a AppealRecord,
    pub decision: &'a Decision,
    pub now: DateTime<Utc>,
}

/// Turns the effects a decision declares into the rows and jobs its unit of work
/// commits (notifications with their delivery jobs, post-approval actions with theirs).
/// It may ask for transitions to follow on the same appeal in the same unit of work (a
/// completion when an approval calls for no action, say).
#[async_trait]
pub trait EffectPlanner: Send + Sync + 'static {
    async fn plan(&self, planned: &Planned<'_>, uow: &mut UnitOfWork) -> Result<Vec<Fire>, EngineError>;
}

pub struct Engine {
    store: Arc<dyn Store>,
    workflow: Arc<Workflow>,
    clock: Arc<dyn Clock>,
    effects: Arc<dyn EffectPlanner>,
}

fn fingerprint(value: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

const TICKET_ATTEMPTS: usize = 5;
/// Transitions an effect may cause in turn, within one unit of work, before it is
/// taken for a loop in the definition.
const MAX_FOLLOW_UPS: usize = 16;

/// Why one attempt at a unit of work must be made again from the start.
enum Again {
    TicketTaken,
    Failed(EngineError),
}

impl From<EngineError> for Again {
    fn from(e: EngineError) -> Self {
        Again::Failed(e)
    }
}

impl From<StoreError> for Again {
    fn from(e: StoreError) -> Self {
        Again::Failed(e.into())
    }
}

impl From<Refusal> for Again {
    fn from(e: Refusal) -> Self {
        Again::Failed(e.into())
    }
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        workflow: Arc<Workflow>,
        clock: Arc<dyn Clock>,
        effects: Arc<dyn EffectPlanner>,
    ) -> Self {
        Engine { store, workflow, clock, effects }
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

    /// Decides `commands` in order — each on the appeal as the ones before it left it —
    /// plans their effects, and commits them together with `base` (rows a job step adds:
    /// its own result) as ONE unit of work. Answers the outcome of `commands[primary]`
    /// (every other transition committed comes along in `also`). With a key, a repeat
    /// answers as the first did.
    pub async fn execute(
        &self,
        commands: Vec<Command<'_>>,
        primary: usize,
        base: UnitOfWork,
        keyed: Option<Keyed>,
    ) -> Result<CommandOutcome, EngineError> {
        let mut bad = Vec::new();
        for (n, c) in commands.iter().enumerate() {
            let prefix = if commands.len() > 1 { format!("commands[{n}].") } else { String::new() };
            if let Err(e) = crate::domain::check_text(&format!("{prefix}actor"), &c.actor.name, false) {
                bad.push(e);
            }
            for (i, r) in c.fire.reasons.iter().enumerate() {
                if let Err(e) = crate::domain::check_text(&format!("{prefix}reasons[{i}]"), r, true) {
                    bad.push(e);
                }
            }
        }
        if !bad.is_empty() {
            return Err(EngineError::Invalid(bad));
        }
        if commands.is_empty() {
            return Err(EngineError::Invalid(vec![FieldError::new("commands", "nothing to do")]));
        }
        let print = keyed.as_ref().map(|k| fingerprint(&k.basis));
        if let (Some(k), Some(p)) = (&keyed, &print)
            && let Some(done) = self.replay(&k.key, p).await?
        {
            return Ok(done);
        }
        let keyed = keyed.as_ref().zip(print.as_deref());
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.execute_once(&commands, primary, base.clone(), keyed).await {
                Ok(outcome) => return Ok(outcome),
                Err(Again::TicketTaken) if attempt < TICKET_ATTEMPTS => continue,
                Err(Again::TicketTaken) => {
                    return Err(EngineError::Store(StoreError::Corrupt(format!(
                        "{TICKET_ATTEMPTS} random ticket numbers in a row were taken"
                    ))));
                }
                // A repeat of a keyed command can lose the race to its own first attempt
                // (it loaded the appeal before that commit): it is still a repeat, so it
                // answers with the first result rather than a refusal or a conflict.
                Err(Again::Failed(
                    e @ (EngineError::Refused(_) | EngineError::Conflict { .. } | EngineError::OpenAppeal { .. }),
                )) => {
                    return match keyed {
                        Some((k, p)) => self.replay(&k.key, p).await?.ok_or(e),
                        None => Err(e),
                    };
                }
                Err(Again::Failed(e)) => return Err(e),
            }
        }
    }

    async fn execute_once(
        &self,
        commands: &[Command<'_>],
        primary: usize,
        base: UnitOfWork,
        keyed: Option<(&Keyed, &str)>,
    ) -> Result<CommandOutcome, Again> {
        let now = self.clock.now();
        let mut uow = UnitOfWork { at: now, ..base };
        // Each appeal as the unit of work leaves it so far.
        let mut touched: HashMap<String, AppealRecord> = HashMap::new();
        let mut last: Option<String> = None;
        let mut outcomes = Vec::new();
        let mut primary_at = 0;
        for (i, cmd) in commands.iter().enumerate() {
            if i == primary {
                primary_at = outcomes.len();
            }
            let before = match &cmd.target {
                Target::New(_) => None,
                Target::Same => {
                    let id =
                        last.as_ref().ok_or_else(|| EngineError::Effects("`Same` names no earlier appeal".into()))?;
                    Some(touched[id].clone())
                }
                Target::Ticket(t) => match touched.values().find(|r| &r.ticket == t) {
                    Some(r) => Some(r.clone()),
                    None => {
                        let r = self
                            .store
                            .appeal_by_ticket(t)
                            .await?
                            .ok_or_else(|| EngineError::NotFound(t.to_string()))?;
                        Some(self.catch_up(r).await?)
                    }
                },
                Target::Id(id) => match touched.get(id) {
                    Some(r) => Some(r.clone()),
                    None => {
                        let r = self.store.appeal_by_id(id).await?.ok_or_else(|| EngineError::NotFound(id.clone()))?;
                        Some(self.catch_up(r).await?)
                    }
                },
            };
            let decision =
                decide(&self.workflow, before.as_ref().map(Self::snapshot).as_ref(), &cmd.fire, &cmd.actor, now)?;
            let mut write = match (&cmd.target, &before) {
                (Target::New(appeal), _) => AppealWrite {
                    id: uuid::Uuid::new_v4().to_string(),
                    ticket: TicketNumber::generate(),
                    workflow: self.workflow.name().to_string(),
                    workflow_version: i64::from(self.workflow.def.workflow.version),
                    account: appeal.account.clone(),
                    data: appeal.data.clone(),
                    state: decision.to.clone(),
                    outcome: decision.outcome.clone(),
                    assignee: decision.assignee.clone(),
                    expected_version: None,
                },
                (_, Some(record)) => write_for(record, &decision),
                (_, None) => unreachable!("only a new appeal has no record"),
            };
            if let (Some(update), Some(record)) = (cmd.update, &before) {
                write.data = update(record)?;
            }
            let after =
                self.add(&mut uow, before.as_ref(), write, decision, &cmd.actor, None, now, &mut outcomes).await?;
            last = Some(after.id.clone());
            touched.insert(after.id.clone(), after);
        }
        let mut answer = outcomes.remove(primary_at.min(outcomes.len() - 1));
        answer.also = outcomes;
        if let Some((k, print)) = keyed {
            uow.idempotency = Some(IdempotencyRecord {
                key: k.key.clone(),
                fingerprint: print.to_string(),
                response: serde_json::to_value(&answer).expect("outcomes serialise"),
                created_at: now,
            });
        }
        match self.store.commit(&uow).await {
            Ok(()) => {
                for o in std::iter::once(&answer).chain(&answer.also) {
                    info!(ticket = %o.ticket, transition = %o.transition, state = %o.state, "transition committed");
                }
                Ok(answer)
            }
            Err(CommitError::TicketTaken) => Err(Again::TicketTaken),
            Err(CommitError::OpenAppealExists) => {
                let account = commands
                    .iter()
                    .find_map(|c| match &c.target {
                        Target::New(a) => Some(a.account.clone()),
                        _ => None,
                    })
                    .or_else(|| touched.values().next().map(|r| r.account.clone()))
                    .unwrap_or_default();
                let open = self.store.open_appeal_for(&account).await?;
                Err(Again::Failed(match open {
                    Some(open) => {
                        EngineError::OpenAppeal { account, ticket: open.ticket.to_string(), state: open.state }
                    }
                    // It closed in the meantime: the caller may simply try again.
                    None => EngineError::Conflict { state: self.workflow.bindings().closed_state.clone(), version: 0 },
                }))
            }
            Err(CommitError::IdempotencyKeyTaken) => {
                let (k, print) = keyed.expect("only keyed commands insert a key");
                Err(Again::Failed(match self.replay(&k.key, print).await {
                    Ok(Some(first)) => return Ok(first),
                    Ok(None) => {
                        EngineError::Store(StoreError::Corrupt(format!("idempotency key {:?} vanished", k.key)))
                    }
                    Err(e) => e,
                }))
            }
            Err(e) => Err(Again::Failed(commit_error(e))),
        }
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
            let planned = Planned { before: before.as_ref(), appeal: &record, decision: &decision, now };
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
            });
            follow_ups.extend(asked);
            if let Some(fire) = follow_ups.pop_front() {
                let system = Actor::system();
                let d = decide(&self.workflow, Some(&Self::snapshot(&record)), &fire, &system, now)?;
                let w = write_for(&record, &d);
                next = Some((w, d, system, None));
            }
            before = Some(record.clone());
            after = Some(record);
        }
        Ok(after.expect("at least one change was added"))
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
        CommitError::Stale(what) => EngineError::Stale(what),
        CommitError::Store(s) => EngineError::Store(s),
        other => EngineError::Store(StoreError::Corrupt(format!("unexpected commit outcome: {other}"))),
    }
}
