//! Why a worker step or a manual task did not complete: retry later, or never.

use super::*;

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// Worth another attempt later (a network error, a 5xx, a database hiccup).
    #[error("{0}")]
    Retry(String),
    /// Another attempt would fail the same way.
    #[error("{0}")]
    Permanent(String),
}

impl From<StoreError> for WorkError {
    fn from(e: StoreError) -> Self {
        WorkError::Retry(e.to_string())
    }
}

impl From<EngineError> for WorkError {
    fn from(e: EngineError) -> Self {
        match crate::app::problem::Classify::class(&e) {
            crate::engine::ErrorClass::Internal => WorkError::Retry(e.to_string()),
            _ => WorkError::Permanent(e.to_string()),
        }
    }
}

impl From<CommitError> for WorkError {
    fn from(e: CommitError) -> Self {
        WorkError::Retry(e.to_string())
    }
}

impl From<crate::failpoint::Injected> for WorkError {
    fn from(e: crate::failpoint::Injected) -> Self {
        WorkError::Retry(e.to_string())
    }
}

/// The answer to marking a manual task done.
#[derive(Debug, Default)]
pub struct ManualDone {
    /// The appeal's state when the task was marked done.
    pub from: String,
    /// The task was already done: nothing changed.
    pub replayed: bool,
    /// The appeal completed with it.
    pub completed: bool,
}

/// Why a manual task could not be marked done.
#[derive(Debug, thiserror::Error)]
pub enum ManualTaskError {
    #[error("no appeal with ticket {0}")]
    NotFound(String),
    #[error("appeal {ticket} has no manual task (yet): it appears once the appeal is approved")]
    NoTask { ticket: String, state: String, version: i64 },
    #[error("{0}")]
    Stale(Refusal),
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    Work(#[from] WorkError),
}

impl From<StoreError> for ManualTaskError {
    fn from(e: StoreError) -> Self {
        ManualTaskError::Work(e.into())
    }
}

impl From<EngineError> for ManualTaskError {
    fn from(e: EngineError) -> Self {
        ManualTaskError::Work(e.into())
    }
}
