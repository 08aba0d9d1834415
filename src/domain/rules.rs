//! The help page's rules, evaluated: who may appeal, and which documents each case
//! needs. The document checklists are data (`workflows/account-appeal/rules.toml`);
//! the conditions and document checks they name, and the rules about fields, are here.
//! Pure: no I/O — the caller supplies the account and the parsed draft.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::account::{Account, EnterpriseStatus, VerificationType};
use super::appeal::{AppealItem, FieldError};
use super::document::DocumentKind;
use super::draft::{Attestation, DisposalIssued, Draft, EntryPoint, FaceResult, OperatorKind, Scenario};

mod checklist;
mod eligibility;

pub use checklist::{Checklist, ChecklistEntry, EntryStatus, evaluate};
pub use eligibility::{Ineligible, eligibility, unverified_guidance};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    Required,
    Optional,
    Conditional,
}

/// Conditions a `conditional` requirement names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The appeal ends with the secure phone changed (items 1-4, or opted in).
    ChangesSecurePhone,
    /// The applicant says the enterprise's name has changed.
    EnterpriseNameChanged,
}

/// Checks of a document's declared properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Stamped,
    NamesNewCompany,
    SignedByOverTwoThirds,
    AssetDisposalAttestation,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Any one of these kinds satisfies the requirement.
    pub documents: Vec<DocumentKind>,
    pub need: Need,
    #[serde(default)]
    pub when: Option<Condition>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applies {
    pub verification: VerificationType,
    #[serde(default)]
    pub operator: Option<OperatorKind>,
    #[serde(default)]
    pub status: Option<EnterpriseStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub title: String,
    pub applies: Applies,
    #[serde(default)]
    pub allowed_items: Option<Vec<AppealItem>>,
    #[serde(default)]
    pub requires_new_company: bool,
    #[serde(default)]
    pub requires_entity_change_ticket: bool,
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentRule {
    #[serde(default)]
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub documents: BTreeMap<DocumentKind, DocumentRule>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {entry}: {problem}")]
pub struct RulesError {
    pub file: PathBuf,
    pub entry: String,
    pub problem: String,
}

impl Rules {
    pub fn from_toml(file: &Path, text: &str) -> Result<Rules, RulesError> {
        let err = |entry: String, problem: String| RulesError { file: file.to_path_buf(), entry, problem };
        let rules: Rules = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1).unwrap_or(1);
            err(format!("line {line}"), e.message().to_string())
        })?;
        let mut seen = Vec::new();
        for case in &rules.cases {
            let entry = format!("cases.{}", case.name);
            let key = (case.applies.verification, case.applies.operator, case.applies.status);
            if seen.contains(&key) {
                return Err(err(entry, "another case already applies to the same accounts".into()));
            }
            seen.push(key);
            for (i, r) in case.requirements.iter().enumerate() {
                let entry = format!("{entry}.requirements[{i}]");
                if r.documents.is_empty() {
                    return Err(err(entry, "names no document".into()));
                }
                match (r.need, r.when) {
                    (Need::Conditional, None) => {
                        return Err(err(entry, "a conditional requirement needs `when`".into()));
                    }
                    (Need::Required | Need::Optional, Some(_)) => {
                        return Err(err(entry, "only a conditional requirement has `when`".into()));
                    }
                    _ => {}
                }
            }
        }
        for (v, status) in [
            (VerificationType::Enterprise, Some(EnterpriseStatus::Active)),
            (VerificationType::Enterprise, Some(EnterpriseStatus::Deregistered)),
        ] {
            if !rules.cases.iter().any(|c| c.applies.verification == v && c.applies.status == status) {
                return Err(err("cases".into(), format!("no case applies to {v:?} accounts with status {status:?}")));
            }
        }
        for op in [OperatorKind::VerifiedIndividual, OperatorKind::OtherPerson] {
            if !rules
                .cases
                .iter()
                .any(|c| c.applies.verification == VerificationType::Individual && c.applies.operator == Some(op))
            {
                return Err(err(
                    "cases".into(),
                    format!("no case applies to individual accounts with operator {op:?}"),
                ));
            }
        }
        Ok(rules)
    }

    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError {
            file: path.to_path_buf(),
            entry: "file".into(),
            problem: format!("cannot read: {e}"),
        })?;
        Self::from_toml(path, &text)
    }

    fn case_for(&self, account: &Account, operator: Option<OperatorKind>) -> Option<&Case> {
        self.cases.iter().find(|c| {
            c.applies.verification == account.verification
                && match account.verification {
                    VerificationType::Individual => c.applies.operator == operator,
                    VerificationType::Enterprise => c.applies.status == account.enterprise_status,
                    VerificationType::None => false,
                }
        })
    }
}
