//! Workflow definitions (data in `workflows/`), their validation, graph export and the
//! pure `decide` function. Nothing here does I/O at decide time.

pub mod decide;
pub mod definition;
pub mod graph;

pub use decide::{Decision, Facts, Fire, Refusal, Snapshot, TimerArm, decide, decide_timer};
pub use definition::{
    ActionKind, Bindings, DefinitionError, DefinitionProblem, EffectKind, Guard, Recipient, UnknownName, Workflow,
    WorkflowFile,
};
