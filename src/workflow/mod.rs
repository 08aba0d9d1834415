//! Workflow definitions (data in `workflows/`), their validation, graph export and the
//! pure `decide` function. Nothing here does I/O at decide time.

pub mod cooling_off;
pub mod decide;
pub mod definition;
pub mod four_eyes;
pub mod graph;
pub mod migration;
pub mod names;
pub mod validate;
pub mod versions;

pub use decide::{
    Decision, Dispute, Facts, Fire, FirstApproval, PendingChange, Refusal, Snapshot, TimerArm, decide, decide_timer,
};
pub use definition::{Bindings, DefinitionError, DefinitionProblem, Workflow, WorkflowFile};
pub use names::{ActionKind, EffectKind, Guard, Recipient, RiskFact, UnknownName};
pub use versions::Versions;
