//! What the engine is asked and answers: commands and the appeal each acts on, idempotency
//! keys, outcomes, and the planner that turns a decision's effects into rows and jobs.

use super::*;

/// What a command answered; replayed verbatim for a repeated idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandOutcome {
    pub ticket: TicketNumber,
    pub transition: String,
    #[schema(required = true)]
    pub from: Option<String>,
    pub state: String,
    #[schema(required = true)]
    pub outcome: Option<String>,
    pub version: i64,
    /// True when this answer is the replay of an earlier command with the same key.
    #[serde(default)]
    #[schema(required = true)]
    pub replayed: bool,
    /// The other transitions the same unit of work committed (a compound command's, and
    /// those its effects called for), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
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

impl Target {
    /// The stored appeal it names, if it names one by itself.
    pub fn key(&self) -> Option<crate::store::AppealKey<'_>> {
        match self {
            Target::Ticket(t) => Some(crate::store::AppealKey::Ticket(t)),
            Target::Id(id) => Some(crate::store::AppealKey::Id(id)),
            Target::New(_) | Target::Same => None,
        }
    }
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
    /// Reads shared by a batch of timer firings, when the decision is one of them.
    pub batch: Option<&'a BatchReads>,
}

/// What the effects of one batch of timer firings read once for all of them: they are
/// decided at one instant, on one claim, so the leads' addresses read for the first
/// serve every other. (On SQLite's burn-down the batch is decided before it takes the
/// write lock: its notifications go to the leads as they were when it was decided,
/// tens of milliseconds before its commit.)
#[derive(Default)]
pub struct BatchReads {
    pub leads: tokio::sync::OnceCell<Vec<String>>,
    /// Every timer of the batch's appeals (any status, by due time), by appeal id, as
    /// the claim read them.
    pub timers: std::sync::OnceLock<HashMap<String, Vec<TimerRecord>>>,
}

/// Turns the effects a decision declares into the rows and jobs its unit of work
/// commits (notifications with their delivery jobs, post-approval actions with theirs).
/// It may ask for transitions to follow on the same appeal in the same unit of work (a
/// completion when an approval calls for no action, say).
#[async_trait]
pub trait EffectPlanner: Send + Sync + 'static {
    async fn plan(&self, planned: &Planned<'_>, uow: &mut UnitOfWork) -> Result<Vec<Fire>, EngineError>;
}
