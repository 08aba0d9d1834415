//! Why intake refused a draft, a submission or a query.

use super::*;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("invalid draft: {}", join_problems(.0))]
    Invalid(Vec<FieldError>),
    #[error("the appeal cannot be submitted yet ({} problem{}): {}", .0.problems.len(),
        if .0.problems.len() == 1 { "" } else { "s" }, join_problems(&.0.problems))]
    Incomplete(Box<Checklist>),
    #[error("cannot appeal: {0}")]
    Ineligible(Ineligible),
    #[error("appeal {ticket} cannot be continued ({why}): start a new appeal")]
    NotResubmittable { ticket: String, why: String },
    #[error("{0}")]
    Refused(String),
    /// Deliberately the same for an unknown ticket and a wrong phone number.
    #[error("no appeal matches this ticket number and phone number")]
    NoMatch,
    /// Deliberately the same for an unknown ticket, no change pending and a wrong code.
    #[error("no pending change matches this ticket number and stop code")]
    NoPendingChange,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("document store: {0}")]
    Blob(#[from] BlobError),
}

fn join_problems(problems: &[FieldError]) -> String {
    problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
}

impl From<StoreError> for IntakeError {
    fn from(e: StoreError) -> Self {
        IntakeError::Engine(EngineError::Store(e))
    }
}
