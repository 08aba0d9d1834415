//! Four-eyes approval as data: which approvals need a second, different staff member
//! (a transition's `second_approval`), the first approval an appeal records while it
//! waits, and who may give the second. Validated in `validate/four_eyes.rs`; decided in
//! `decide`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names::RiskFact;
use crate::domain::Actor;

/// Where a transition goes instead of its `to` when one of its rules holds: the state
/// an appeal waits in for a second approval (`second_approval`), or for its cooling-off
/// to pass (`cooling_off`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskRoute {
    /// The state the appeal waits in.
    pub to: String,
    /// The rules: the route is taken when any holds.
    pub when: Vec<RiskRule>,
}

/// One risk rule: every listed fact holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskRule {
    pub all: Vec<RiskFact>,
    /// Why it is high-risk, shown to the second approver.
    #[serde(default)]
    pub description: String,
}

impl RiskRoute {
    /// The first rule that holds for an appeal with these facts.
    pub fn rule_for(&self, holds: impl Fn(RiskFact) -> bool) -> Option<&RiskRule> {
        self.when.iter().find(|r| !r.all.is_empty() && r.all.iter().all(|&f| holds(f)))
    }
}

impl super::definition::TransitionDef {
    /// Where the transition goes instead of `to` when a route's rule holds, with what
    /// the route is called: a second approval's wait (four-eyes), a cooling-off.
    pub fn risk_routes(&self) -> impl Iterator<Item = (&'static str, &RiskRoute)> {
        let four_eyes = self.second_approval.iter().map(|r| ("four-eyes", r));
        four_eyes.chain(self.cooling_off.iter().map(|r| ("cooling-off", r)))
    }
}

impl super::Workflow {
    /// Whether appeals in `state` wait for a second approval (four-eyes).
    pub fn awaits_second_approval(&self, state: &str) -> bool {
        self.def.transitions.iter().any(|t| t.second_approval.as_ref().is_some_and(|sa| sa.to == state))
    }
}

impl RiskRule {
    /// How the rule reads to people: its description, else its facts.
    pub fn text(&self) -> String {
        if self.description.is_empty() {
            self.all.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ")
        } else {
            self.description.clone()
        }
    }
}

/// A first approval waiting for a second, different staff member: who gave it, who
/// held the claim then, and the rule that asked for a second approver. Kept in the
/// appeal's record (`first_approval`) and in the approving event's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FirstApproval {
    /// The staff member who approved first.
    pub by: String,
    /// Who held the claim when the first approval was given (may be the approver).
    pub claimer: Option<String>,
    /// The four-eyes rule that holds (its description, else its facts).
    pub rule: String,
    pub at: DateTime<Utc>,
}

/// Whether two staff names are one person's, compared as people type them: "Ann " and
/// "ann" are one person.
pub fn same_person(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Whether `actor` may give (or refuse) the second approval of the first approval the
/// facts record: never its approver, never the reviewer who held the claim then.
pub fn second_approver(first: Option<&FirstApproval>, actor: &Actor) -> Result<(), String> {
    let same = same_person;
    match first {
        None => Err("no first approval is recorded on the appeal".into()),
        Some(first) if same(&first.by, &actor.name) => {
            Err(format!("{:?} gave the first approval; a second approval needs someone else", actor.name))
        }
        Some(first) if first.claimer.as_deref().is_some_and(|c| same(c, &actor.name)) => Err(format!(
            "{:?} held the claim when the first approval was given; a second approval needs someone else",
            actor.name
        )),
        Some(_) => Ok(()),
    }
}
