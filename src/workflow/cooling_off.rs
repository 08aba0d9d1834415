//! Cooling-off as data: an approval that matches a transition's `cooling_off` rules
//! (in the shipped workflow, any that rotates the secure phone) waits in a cooling-off
//! state before anything is applied. Entering it, the engine records a
//! [`PendingChange`] and a one-time stop code; the "not you?" notice carries the code to
//! the account's current security contacts; a timer moves the appeal on; the account
//! holder who quotes the code first stops the change (the `stop_code` guard), and the
//! appeal returns to review flagged [`Dispute`]d. Validated in `validate/cooling_off.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Workflow;

/// Digits in a stop code: 10^8 codes, behind a per-ticket failure limit.
pub const STOP_CODE_DIGITS: usize = 8;

/// A change waiting out its cooling-off, kept in the appeal's record (`pending_change`)
/// while the appeal is in the cooling-off state. The record keeps only a salted hash of
/// the code, checked by the `stop_code` guard; the code itself is in the notice (the
/// notification's rendered body, as every message is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    /// The cooling-off rule that holds (its description, else its facts).
    pub rule: String,
    /// Who approved it (the last approver: the second one of a four-eyes approval).
    pub approved_by: String,
    pub since: DateTime<Utc>,
    pub salt: String,
    pub code_hash: String,
}

impl PendingChange {
    /// A pending change with a fresh random code: the record to keep and the code to
    /// send (once, in the notice).
    pub fn issue(rule: String, approved_by: String, since: DateTime<Utc>) -> (PendingChange, String) {
        use rand::Rng;
        let mut rng = rand::rng();
        let code: String = (0..STOP_CODE_DIGITS).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
        let salt = hex::encode(rng.random::<[u8; 16]>());
        let code_hash = hash(&salt, &code);
        (PendingChange { rule, approved_by, since, salt, code_hash }, code)
    }

    /// Whether `code` (as people type it: spaces and dashes ignored) is this change's.
    pub fn matches(&self, code: &str) -> bool {
        let typed: String = code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        typed.len() == STOP_CODE_DIGITS && hash(&self.salt, &typed) == self.code_hash
    }
}

fn hash(salt: &str, code: &str) -> String {
    hex::encode(Sha256::digest(format!("appealflow stop-change\0{salt}\0{code}").as_bytes()))
}

/// The `stop_code` guard: the command's `code` is the pending change's.
pub fn check_stop_code(pending: Option<&PendingChange>, payload: &serde_json::Value) -> Result<(), String> {
    let Some(pending) = pending else {
        return Err("no change is pending on the appeal".into());
    };
    match payload.get("code").and_then(serde_json::Value::as_str) {
        None => Err("the one-time stop code from the notice is required (`code`)".into()),
        Some(code) if pending.matches(code) => Ok(()),
        Some(_) => Err("the stop code does not match the one in the notice".into()),
    }
}

/// Why an appeal is flagged disputed: the account holder stopped a pending change.
/// Kept in the appeal's record (`disputed`) for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dispute {
    pub at: DateTime<Utc>,
    /// The change that was stopped (the cooling-off rule that held).
    pub change: String,
    /// Who had approved it.
    pub approved_by: String,
}

impl Workflow {
    /// Whether appeals in `state` wait out a cooling-off.
    pub fn cools_off(&self, state: &str) -> bool {
        self.def.transitions.iter().any(|t| t.cooling_off.as_ref().is_some_and(|c| c.to == state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_only_its_own_change() {
        let now = Utc::now();
        let (pending, code) = PendingChange::issue("rotates the secure phone".into(), "ann".into(), now);
        assert_eq!(code.len(), STOP_CODE_DIGITS);
        assert!(code.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(pending.code_hash.len(), 64, "a SHA-256, in hex");
        assert!(pending.matches(&code));
        assert!(pending.matches(&format!(" {}-{} ", &code[..4], &code[4..])));
        let wrong: String = code.chars().map(|c| if c == '9' { '0' } else { char::from(c as u8 + 1) }).collect();
        assert!(!pending.matches(&wrong));
        assert!(!pending.matches(&code[..7]));
        let (other, _) = PendingChange::issue("rotates the secure phone".into(), "ann".into(), now);
        assert_ne!(other.code_hash, pending.code_hash, "each change gets its own salt and code");
        assert_eq!(
            check_stop_code(Some(&pending), &serde_json::json!({})),
            Err("the one-time stop code from the notice is required (`code`)".into())
        );
        assert!(check_stop_code(Some(&pending), &serde_json::json!({ "code": code })).is_ok());
        assert!(check_stop_code(None, &serde_json::json!({ "code": code })).is_err());
    }
}
