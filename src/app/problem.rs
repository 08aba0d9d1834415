//! One classification of every error the app answers with, made here once per error
//! type: its [`Kind`] (what the caller should do about it), a stable code and title,
//! the fields at fault and any extra members (the appeal's state and version on a
//! conflict). Each surface maps a `Kind` once: the HTTP API to a status
//! (`http::error`), the CLI to an exit code (`cli`). A 5xx/exit-1 problem carries no
//! internals; the surface logs the error itself.

use serde_json::{Value, json};

use super::ServiceError;
use super::intake::IntakeError;
use super::limits::LimitError;
use super::work::{ManualTaskError, WorkError};
use crate::adapters::blobs::BlobError;
use crate::domain::FieldError;
use crate::engine::{EngineError, ErrorClass};
use crate::store::StoreError;
use crate::workflow::Refusal;

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The input is wrong: the fields at fault are named. Fix it and try again.
    Invalid,
    /// No such thing (or none the caller may see).
    NotFound,
    /// The caller's role or claim does not allow it.
    NotAllowed,
    /// The thing changed or is in a state that does not allow it: read again, decide again.
    Conflict,
    /// A rule refused it as it stands.
    Refused,
    /// Too many requests: try again after `retry_after` seconds.
    TooMany { retry_after: u64 },
    /// Something broke inside appealflow or its database.
    Internal,
}

impl Kind {
    /// The coarse class (the CLI's exit codes, the worker's retry decision).
    pub fn class(self) -> ErrorClass {
        match self {
            Kind::Invalid | Kind::NotFound => ErrorClass::BadInput,
            Kind::NotAllowed | Kind::Conflict | Kind::Refused | Kind::TooMany { .. } => ErrorClass::Refused,
            Kind::Internal => ErrorClass::Internal,
        }
    }
}

/// An error as every surface reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub kind: Kind,
    /// Stable, machine-readable: `invalid-input`, `not-found`, `conflict`, ...
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Extra members (e.g. the appeal's current state and version on a conflict).
    pub extra: Option<Value>,
}

impl Problem {
    pub fn new(kind: Kind, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Problem { kind, code, title, detail: detail.into(), errors: Vec::new(), extra: None }
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
        Problem { errors, ..Problem::new(Kind::Invalid, "invalid-input", "Invalid input", detail) }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(Kind::NotFound, "not-found", "Not found", detail)
    }

    pub fn not_allowed(detail: impl Into<String>) -> Self {
        Problem::new(Kind::NotAllowed, "forbidden", "Not allowed", detail)
    }

    /// A failure inside appealflow; the detail is for the log only.
    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(Kind::Internal, "internal", "Internal error", detail)
    }

    fn with(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }
}

/// An error classified once, for every surface.
pub trait Classify: std::fmt::Display {
    fn problem(&self) -> Problem;

    fn class(&self) -> ErrorClass {
        self.problem().kind.class()
    }
}

impl Classify for EngineError {
    fn problem(&self) -> Problem {
        let detail = self.to_string();
        let at = |state: &str, version: i64| json!({ "state": state, "version": version });
        match self {
            EngineError::NotFound(_) => Problem::not_found(detail),
            EngineError::Invalid(errors) => Problem::invalid(errors.clone()),
            EngineError::Conflict { state, version } => {
                Problem::new(Kind::Conflict, "conflict", "Conflict", detail).with(at(state, *version))
            }
            EngineError::Refused(Refusal::StaleVersion { current, state, .. }) => {
                Problem::new(Kind::Conflict, "stale-version", "Stale version", detail).with(at(state, *current))
            }
            EngineError::Refused(Refusal::WrongState { state, version, .. }) => {
                Problem::new(Kind::Conflict, "wrong-state", "Not allowed in this state", detail)
                    .with(at(state, *version))
            }
            EngineError::Refused(Refusal::WrongRole { .. }) => Problem::not_allowed(detail),
            EngineError::Refused(Refusal::UnknownTransition { .. }) => Problem::not_found(detail),
            // Who the actor is, not what the appeal says: not allowed.
            EngineError::Refused(Refusal::GuardFailed { guard, .. })
                if guard == crate::workflow::Guard::HoldsClaim.as_str()
                    || guard == crate::workflow::Guard::FourEyes.as_str() =>
            {
                Problem::not_allowed(detail)
            }
            EngineError::Refused(Refusal::GuardFailed { .. }) => {
                Problem::new(Kind::Refused, "refused", "Refused by a rule", detail)
            }
            EngineError::IdempotencyMismatch { .. } => {
                Problem::new(Kind::Refused, "idempotency-key-reused", "Idempotency key reused", detail)
            }
            EngineError::OpenAppeal { ticket, state, .. } => {
                Problem::new(Kind::Conflict, "open-appeal", "An appeal is already open", detail)
                    .with(json!({ "open_ticket": ticket, "state": state }))
            }
            EngineError::Stale(_) => Problem::new(Kind::Conflict, "conflict", "Conflict", detail),
            EngineError::Refused(Refusal::Calendar(_) | Refusal::NotLoaded(_))
            | EngineError::Effects(_)
            | EngineError::Store(_) => Problem::internal(detail),
        }
    }
}

impl Classify for StoreError {
    fn problem(&self) -> Problem {
        Problem::internal(self.to_string())
    }
}

impl Classify for BlobError {
    fn problem(&self) -> Problem {
        match self {
            BlobError::NotFound { .. } | BlobError::InvalidDigest { .. } => {
                Problem::invalid(vec![FieldError::new("sha256", self.to_string())])
            }
            BlobError::Corrupt { .. } | BlobError::Io(_) => Problem::internal(self.to_string()),
        }
    }
}

impl Classify for IntakeError {
    fn problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            IntakeError::Invalid(errors) => Problem::invalid(errors.clone()),
            IntakeError::Incomplete(checklist) => {
                Problem::invalid(checklist.problems.clone()).with(json!({ "missing": checklist.missing }))
            }
            IntakeError::Ineligible(why) => Problem::new(Kind::Refused, "ineligible", "Cannot appeal", why.to_string()),
            IntakeError::NotResubmittable { .. } => {
                Problem::new(Kind::Conflict, "not-resubmittable", "Cannot be continued", detail)
            }
            IntakeError::Refused(m) => Problem::new(Kind::Refused, "refused", "Refused by a rule", m.clone()),
            IntakeError::NoMatch | IntakeError::NoPendingChange => Problem::not_found(detail),
            IntakeError::Engine(e) => e.problem(),
            IntakeError::Blob(b) => b.problem(),
        }
    }
}

impl Classify for ServiceError {
    fn problem(&self) -> Problem {
        match self {
            ServiceError::NotAllowed(why) => Problem::not_allowed(why.clone()),
            ServiceError::NotFound(what) => Problem::not_found(what.clone()),
            ServiceError::NotDead { status, attempts } => {
                Problem::new(Kind::Conflict, "not-dead", "Job not dead", "only a dead job can be retried")
                    .with(json!({ "job_status": status, "attempts": attempts }))
            }
            ServiceError::Conflict(why) => Problem::new(Kind::Conflict, "conflict", "Conflict", why.clone()),
            ServiceError::Engine(e) => e.problem(),
        }
    }
}

impl Classify for WorkError {
    fn problem(&self) -> Problem {
        match self {
            // Another attempt may succeed: a fault of this moment (the database, a provider).
            WorkError::Retry(m) => Problem::internal(m.clone()),
            // Another attempt would fail the same way: refused as it stands.
            WorkError::Permanent(m) => Problem::new(Kind::Refused, "refused", "Refused", m.clone()),
        }
    }
}

impl Classify for ManualTaskError {
    fn problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            ManualTaskError::NotFound(ticket) => EngineError::NotFound(ticket.clone()).problem(),
            ManualTaskError::NoTask { state, version, .. } => {
                Problem::new(Kind::Conflict, "no-manual-task", "No manual task", detail)
                    .with(json!({ "state": state, "version": version }))
            }
            ManualTaskError::Stale(refusal) => EngineError::Refused(refusal.clone()).problem(),
            ManualTaskError::NotAllowed(why) => Problem::not_allowed(why.clone()),
            ManualTaskError::Work(w) => w.problem(),
        }
    }
}

impl Classify for LimitError {
    fn problem(&self) -> Problem {
        match self {
            LimitError::Limited(l) => Problem::new(
                Kind::TooMany { retry_after: l.retry_after_secs },
                "rate-limited",
                "Too many requests",
                "slow down and try again later",
            ),
            LimitError::Store(e) => e.problem(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_digest_is_the_callers_input_on_every_surface() {
        let e = IntakeError::Blob(BlobError::InvalidDigest { given: "xyz".into() });
        let p = e.problem();
        assert_eq!(p.kind, Kind::Invalid);
        assert_eq!(p.errors[0].field, "sha256");
        assert_eq!(e.class(), ErrorClass::BadInput);
    }

    #[test]
    fn a_permanent_task_failure_is_refused_not_internal() {
        let e = ManualTaskError::Work(WorkError::Permanent("the account is gone".into()));
        assert_eq!(e.problem().kind, Kind::Refused);
        assert_eq!(e.class(), ErrorClass::Refused);
        let e = ManualTaskError::Work(WorkError::Retry("database busy".into()));
        assert_eq!(e.class(), ErrorClass::Internal);
    }

    #[test]
    fn conflicts_carry_the_appeals_state_and_version() {
        let e = EngineError::Conflict { state: "submitted".into(), version: 4 };
        let p = e.problem();
        assert_eq!(p.kind, Kind::Conflict);
        assert_eq!(p.extra, Some(json!({ "state": "submitted", "version": 4 })));
    }
}
