//! Stopping a pending change: the account holder quotes the ticket and the one-time code
//! from the "not you?" notice sent when an approval entered its cooling-off. The
//! workflow's `stop_change` transition (its `stop_code` guard checks the code) returns
//! the appeal to review, flagged disputed, and alerts the leads.

use super::*;

/// A stopped change, as the account holder is told it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stopped {
    pub ticket: String,
    /// The appeal's state now (back in review).
    pub state: String,
    /// Always true: the appeal is flagged disputed.
    pub disputed: bool,
}

/// Who stops a change: whoever holds the code the account's security contacts got.
pub const ACCOUNT_HOLDER: &str = "account holder";

impl Intake {
    /// Stops the change pending on `ticket` if `code` is its stop code. One answer
    /// (`NoPendingChange`) for a malformed or unknown ticket, an appeal with no change
    /// pending, and a wrong code, so the answer tells a guesser nothing.
    pub async fn stop_change(&self, ticket: &str, code: &str) -> Result<Stopped, IntakeError> {
        let Some(binding) = self.engine.workflow().bindings().stop_change.clone() else {
            return Err(IntakeError::NoPendingChange);
        };
        let Ok(ticket) = TicketNumber::parse(ticket) else { return Err(IntakeError::NoPendingChange) };
        let mut fire = Fire::new(binding);
        fire.payload = serde_json::json!({ "code": code });
        let actor = Actor { name: ACCOUNT_HOLDER.into(), role: Role::Applicant };
        match self.engine.fire(&ticket, &fire, &actor, None).await {
            Ok(done) => Ok(Stopped { ticket: done.ticket.to_string(), state: done.state, disputed: true }),
            Err(
                EngineError::NotFound(_)
                | EngineError::Refused(
                    crate::workflow::Refusal::WrongState { .. }
                    | crate::workflow::Refusal::WrongRole { .. }
                    | crate::workflow::Refusal::GuardFailed { .. },
                ),
            ) => Err(IntakeError::NoPendingChange),
            Err(e) => Err(e.into()),
        }
    }
}
