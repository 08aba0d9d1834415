//! Who fires a transition: the role decides what they may do; the actor name is recorded.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The account holder or their operator; cannot log in (that is why they appeal).
    Applicant,
    /// Support staff who claim, inspect and decide appeals.
    Reviewer,
    /// Reviewer leads: receive SLA warnings, may reassign and act on any appeal.
    Lead,
    Admin,
    /// The engine itself: timers, screening, the worker.
    System,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Applicant, Role::Reviewer, Role::Lead, Role::Admin, Role::System];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Applicant => "applicant",
            Role::Reviewer => "reviewer",
            Role::Lead => "lead",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected one of applicant, reviewer, lead, admin, system")]
pub struct RoleError(pub String);

impl FromStr for Role {
    type Err = RoleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| RoleError(s.to_string()))
    }
}

/// Who did something: a name (a reviewer's login, `worker`, `applicant`) and a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

impl Actor {
    pub fn new(name: impl Into<String>, role: Role) -> Self {
        Actor { name: name.into(), role }
    }

    pub fn system() -> Self {
        Actor::new("appealflow", Role::System)
    }
}

impl TryFrom<String> for Role {
    type Error = RoleError;
    fn try_from(s: String) -> Result<Self, RoleError> {
        s.parse()
    }
}
