//! The engine's errors, and their coarse class.

use crate::domain::FieldError;
use crate::store::StoreError;
use crate::workflow::Refusal;

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
    /// Something this command changes conditionally changed meanwhile (an action no
    /// longer pending, a notification already delivered): read again and decide again.
    #[error("conflict: {0}; read it again and decide again")]
    Stale(String),
    #[error("idempotency key {key:?} was already used for a different command; use a new key")]
    IdempotencyMismatch { key: String },
    #[error("account {account:?} already has an open appeal, ticket {ticket} ({state}); follow that one up instead")]
    OpenAppeal { account: String, ticket: String, state: String },
    #[error("effects: {0}")]
    Effects(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a caller should treat an error, coarsely: the CLI's exit codes and the worker's
/// retry decision (`app::problem` classifies every error once, finely, for every surface).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The input was wrong (bad field, unknown ticket): fix it and try again.
    BadInput,
    /// A rule or the appeal's state refused it (including lost races).
    Refused,
    /// Something broke inside appealflow or its database.
    Internal,
}

impl From<crate::failpoint::Injected> for EngineError {
    fn from(e: crate::failpoint::Injected) -> Self {
        EngineError::Store(StoreError::Injected(e))
    }
}
