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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    Required,
    Optional,
    Conditional,
}

/// Conditions a `conditional` requirement names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// Why an account cannot appeal at all (the help page's "Scenarios where you cannot
/// submit an appeal").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Ineligible {
    #[error("no account matches that {what}: check the spelling, or try another of the account's domain names")]
    NoAccount { what: String },
    #[error(
        "this account has no associated phone number, domain name, ICP-filed domain name, enterprise email \
         domain or issued invoices, so it cannot be located to appeal for a forgotten username"
    )]
    NoAssociations,
    #[error(
        "the enterprise this account was verified with is deregistered; while you can log on, change the \
         account's verified entity to another enterprise or unregister the account instead of appealing"
    )]
    DeregisteredLoggedIn,
}

/// Guidance given with the screening rejection of an unverified account.
pub fn unverified_guidance(account: &Account) -> String {
    let mut g = String::from(
        "inapplicable_scenario: the account has not completed identity verification, so its ownership cannot be determined",
    );
    if account.associations.icp_filings {
        g.push_str("; it holds domain names or products with ICP filings: transfer them offline first");
    }
    g.push_str("; if you can still log on, complete identity verification for the account first");
    g
}

pub fn eligibility(entry: &EntryPoint, account: &Account) -> Result<(), Ineligible> {
    match entry {
        EntryPoint::ForgotUsername { .. } if !account.associations.any_for_username_search() => {
            Err(Ineligible::NoAssociations)
        }
        EntryPoint::SecurityPage { .. }
            if account.verification == VerificationType::Enterprise
                && account.enterprise_status == Some(EnterpriseStatus::Deregistered) =>
        {
            Err(Ineligible::DeregisteredLoggedIn)
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    Provided,
    Missing,
    Optional,
    NotNeeded,
}

impl fmt::Display for EntryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryStatus::Provided => "provided",
            EntryStatus::Missing => "MISSING",
            EntryStatus::Optional => "optional",
            EntryStatus::NotNeeded => "not needed",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ChecklistEntry {
    pub documents: Vec<DocumentKind>,
    pub need: Need,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// Whether the requirement applies to this draft (always true unless conditional).
    pub applies: bool,
    pub provided: bool,
    pub status: EntryStatus,
    pub reason: String,
}

/// What a draft needs and lacks.
#[derive(Debug, Clone, Serialize)]
pub struct Checklist {
    pub case: Option<String>,
    pub case_title: Option<String>,
    pub changes_secure_phone: bool,
    pub requires_entity_change_ticket: bool,
    pub documents: Vec<ChecklistEntry>,
    /// Required documents not provided (alternatives joined with " or ").
    pub missing: Vec<String>,
    /// Every problem, documents and fields alike: empty means the draft may be submitted.
    pub problems: Vec<FieldError>,
    /// Set when screening will reject the appeal on submission, with the guidance.
    pub screening: Option<String>,
}

impl Checklist {
    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }
}

fn share_over_two_thirds(p: f64) -> bool {
    // "More than two thirds". A declared 66.67 % may be two thirds rounded up, so the
    // safer reading requires strictly more than 66.67 % (see rules.toml).
    p > 66.67 + 1e-9
}

fn check_document(
    check: Check,
    doc: &super::draft::DraftDocument,
    draft: &Draft,
    field: &str,
    problems: &mut Vec<FieldError>,
) {
    match check {
        Check::Stamped => {
            if doc.stamped != Some(true) {
                problems.push(FieldError::new(
                    format!("{field}.stamped"),
                    format!("{}: must be stamped with the official seal (declare \"stamped\": true)", doc.kind),
                ));
            }
        }
        Check::NamesNewCompany => {
            if let Some(company) = &draft.new_company
                && doc.company_name.as_deref() != Some(company.name.as_str())
            {
                problems.push(FieldError::new(
                    format!("{field}.company_name"),
                    format!("{}: must be filled in for the new company {:?}", doc.kind, company.name),
                ));
            }
        }
        Check::SignedByOverTwoThirds => match doc.signatory_share_percent {
            Some(p) if share_over_two_thirds(p) => {}
            other => problems.push(FieldError::new(
                format!("{field}.signatory_share_percent"),
                format!(
                    "{}: must be signed by shareholders holding more than two thirds of the shares (declared: {})",
                    doc.kind,
                    other.map_or("nothing".to_string(), |p| format!("{p}%"))
                ),
            )),
        },
        Check::AssetDisposalAttestation => match (doc.issued, doc.attestation) {
            (Some(DisposalIssued::BeforeDeregistration), Some(Attestation::CompanySeal)) => {}
            (Some(DisposalIssued::AfterDeregistration), Some(Attestation::ShareholderSignatures)) => {
                match doc.signatory_share_percent {
                    Some(p) if share_over_two_thirds(p) => {}
                    _ => problems.push(FieldError::new(
                        format!("{field}.signatory_share_percent"),
                        "asset_disposal_certificate issued after deregistration: must be signed and fingerprinted \
                         by shareholders holding more than two thirds of the shares",
                    )),
                }
            }
            (None, _) => problems.push(FieldError::new(
                format!("{field}.issued"),
                "asset_disposal_certificate: say whether it was issued before_deregistration or after_deregistration",
            )),
            (Some(DisposalIssued::BeforeDeregistration), _) => problems.push(FieldError::new(
                format!("{field}.attestation"),
                "asset_disposal_certificate issued before deregistration: must be stamped with the company seal \
                 (attestation: company_seal)",
            )),
            (Some(DisposalIssued::AfterDeregistration), _) => problems.push(FieldError::new(
                format!("{field}.attestation"),
                "asset_disposal_certificate issued after deregistration: must be signed and fingerprinted by the \
                 shareholders (attestation: shareholder_signatures)",
            )),
        },
    }
}

/// Evaluates a draft for an account: the checklist and every problem.
pub fn evaluate(rules: &Rules, account: &Account, draft: &Draft) -> Checklist {
    let mut problems = Vec::new();
    let push = |problems: &mut Vec<FieldError>, field: &str, rule: String| problems.push(FieldError::new(field, rule));

    if draft.entry_point.is_none() {
        push(&mut problems, "entry_point", "required: forgot_username, forgot_password or security_page".into());
    }
    if draft.items.is_empty() {
        push(&mut problems, "items", "choose at least one appeal item".into());
    }
    if draft.contact_phone.is_none() {
        push(&mut problems, "contact_phone", "required: the ticket number is sent to it by SMS".into());
    }
    if draft.items.contains(&AppealItem::Other) && draft.supplementary_content.is_none() {
        push(
            &mut problems,
            "supplementary_content",
            "required when the appeal item is \"other\": explain what is wrong with the account".into(),
        );
    }

    // Unverified accounts are screened out at submission: no checklist applies.
    if account.verification == VerificationType::None {
        return Checklist {
            case: None,
            case_title: None,
            changes_secure_phone: false,
            requires_entity_change_ticket: false,
            documents: vec![],
            missing: vec![],
            problems,
            screening: Some(unverified_guidance(account)),
        };
    }

    let operator = draft.operator.as_ref();
    match operator {
        None => push(&mut problems, "operator", "required: who is submitting the appeal".into()),
        Some(op) => {
            if op.name.is_none() {
                push(&mut problems, "operator.name", "required".into());
            }
            if op.id.is_none() {
                push(&mut problems, "operator.id_number", "required: the operator's ID card number".into());
            }
            match &op.facial_recognition {
                None => push(
                    &mut problems,
                    "operator.facial_recognition",
                    "required before submission: complete the operator's facial recognition".into(),
                ),
                Some(f) if f.result == FaceResult::Failed => push(
                    &mut problems,
                    "operator.facial_recognition",
                    "facial recognition did not pass: the operator must complete it again".into(),
                ),
                Some(_) => {}
            }
        }
    }

    let deregistered = account.enterprise_status == Some(EnterpriseStatus::Deregistered);
    match account.verification {
        VerificationType::Individual => {
            if let Some(op) = operator {
                match op.kind {
                    None => push(
                        &mut problems,
                        "operator.kind",
                        "required for an individual account: verified_individual or other_person".into(),
                    ),
                    Some(OperatorKind::VerifiedIndividual) => {
                        let verified = account.verified_individual.as_ref().map(|p| &p.id.hash);
                        if let (Some(id), Some(verified)) = (&op.id, verified)
                            && &id.hash != verified
                        {
                            push(
                                &mut problems,
                                "operator.kind",
                                "the operator's ID number is not the verified individual's: choose other_person".into(),
                            );
                        }
                    }
                    Some(OperatorKind::OtherPerson) => {}
                }
                if op.claims_legal_representative {
                    push(
                        &mut problems,
                        "operator.claims_legal_representative",
                        "only enterprise accounts have a legal representative".into(),
                    );
                }
            }
        }
        VerificationType::Enterprise => {
            match draft.scenario {
                None => push(
                    &mut problems,
                    "scenario",
                    "required for an enterprise account: active, name_changed or deregistered".into(),
                ),
                Some(Scenario::Deregistered) if !deregistered => push(
                    &mut problems,
                    "scenario",
                    "the account's enterprise is not deregistered: choose active or name_changed".into(),
                ),
                Some(Scenario::Active | Scenario::NameChanged) if deregistered => push(
                    &mut problems,
                    "scenario",
                    "the account's enterprise is deregistered: choose deregistered".into(),
                ),
                _ => {}
            }
            if let Some(op) = operator {
                if op.claims_legal_representative {
                    let rep = account.legal_representative.as_ref().map(|p| &p.id.hash);
                    let matches = matches!((&op.id, rep), (Some(id), Some(rep)) if &id.hash == rep);
                    if !matches {
                        push(
                            &mut problems,
                            "operator.claims_legal_representative",
                            if deregistered {
                                "only the legal representative of the original enterprise may say \"I am the legal \
                                 representative\"; everyone else chooses \"I am not the legal representative\""
                            } else {
                                "the operator is not the enterprise's legal representative on record"
                            }
                            .into(),
                        );
                    }
                }
                if op.kind == Some(OperatorKind::VerifiedIndividual) {
                    push(&mut problems, "operator.kind", "an enterprise account has no verified individual".into());
                }
            }
        }
        VerificationType::None => unreachable!("handled above"),
    }

    let case = rules.case_for(account, operator.and_then(|o| o.kind));
    if let Some(case) = case {
        if let Some(allowed) = &case.allowed_items {
            for item in &draft.items {
                if !allowed.contains(item) {
                    push(
                        &mut problems,
                        "items",
                        format!(
                            "{item} is not available for this case ({}): the only allowed item is {}",
                            case.title,
                            allowed.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
        }
        if case.requires_new_company && draft.new_company.is_none() {
            push(
                &mut problems,
                "new_company",
                "required: the new company (name and Unified Social Credit Code) the account changes to".into(),
            );
        }
    }
    let changes_secure_phone =
        deregistered || draft.also_change_secure_phone || draft.items.iter().any(|i| i.changes_secure_phone());

    let mut entries = Vec::new();
    let mut missing = Vec::new();
    if let Some(case) = case {
        for r in &case.requirements {
            let applies = match r.when {
                None => true,
                Some(Condition::ChangesSecurePhone) => changes_secure_phone,
                Some(Condition::EnterpriseNameChanged) => draft.scenario == Some(Scenario::NameChanged),
            };
            let provided = r.documents.iter().any(|k| draft.documents_of(*k).next().is_some());
            let status = match (r.need, applies, provided) {
                (_, _, true) => EntryStatus::Provided,
                (Need::Optional, _, false) => EntryStatus::Optional,
                (_, false, false) => EntryStatus::NotNeeded,
                (_, true, false) => EntryStatus::Missing,
            };
            if status == EntryStatus::Missing {
                let names: Vec<&str> = r.documents.iter().map(|k| k.as_str()).collect();
                missing.push(names.join(" or "));
                problems
                    .push(FieldError::new(format!("documents.{}", names.join("|")), format!("required: {}", r.reason)));
            }
            entries.push(ChecklistEntry {
                documents: r.documents.clone(),
                need: r.need,
                when: r.when,
                applies,
                provided,
                status,
                reason: r.reason.clone(),
            });
        }
        for (i, doc) in draft.documents.iter().enumerate() {
            let field = format!("documents[{i}]");
            if !case.requirements.iter().any(|r| r.documents.contains(&doc.kind)) {
                problems.push(FieldError::new(
                    field.clone(),
                    format!(
                        "{} is not part of this case's checklist ({}): upload it as supplementary",
                        doc.kind, case.title
                    ),
                ));
                continue;
            }
            if let Some(rule) = rules.documents.get(&doc.kind) {
                for check in &rule.checks {
                    check_document(*check, doc, draft, &field, &mut problems);
                }
            }
        }
    } else if account.verification == VerificationType::Individual && operator.is_some_and(|o| o.kind.is_some()) {
        problems.push(FieldError::new("operator.kind", "no checklist applies to this operator"));
    }

    Checklist {
        case: case.map(|c| c.name.clone()),
        case_title: case.map(|c| c.title.clone()),
        changes_secure_phone,
        requires_entity_change_ticket: case.is_some_and(|c| c.requires_entity_change_ticket),
        documents: entries,
        missing,
        problems,
        screening: None,
    }
}
