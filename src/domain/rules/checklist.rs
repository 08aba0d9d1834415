//! A draft evaluated against the rules: the checklist of documents (each provided, missing,
//! optional or not needed), the declared document checks, and every problem in one list.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

/// The smallest declared share that counts as "more than two thirds".
pub const OVER_TWO_THIRDS_PERCENT: f64 = 66.67;

fn share_over_two_thirds(p: f64) -> bool {
    // "More than two thirds". Two thirds is 66.666…%, so a share declared to two decimals
    // is more than two thirds from 66.67 % up (see rules.toml); the tolerance absorbs a
    // share computed rather than typed (66.67 reached by sums of f64s).
    p >= OVER_TWO_THIRDS_PERCENT - 1e-9
}

fn check_document(
    check: Check,
    doc: &crate::domain::draft::DraftDocument,
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
                    "{}: must be signed by shareholders holding more than two thirds of the shares, {OVER_TWO_THIRDS_PERCENT}% or more (declared: {})",
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
                        format!(
                            "asset_disposal_certificate issued after deregistration: must be signed and \
                             fingerprinted by shareholders holding more than two thirds of the shares, \
                             {OVER_TWO_THIRDS_PERCENT}% or more"
                        ),
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

#[cfg(test)]
mod tests {
    use super::share_over_two_thirds;

    #[test]
    fn a_declared_66_67_percent_or_more_is_more_than_two_thirds() {
        for p in [66.67, 66.670_000_000_1, 66.7, 100.0, 66.6 + 0.07] {
            assert!(share_over_two_thirds(p), "{p}");
        }
    }

    #[test]
    fn a_declared_share_under_66_67_percent_is_not() {
        for p in [66.66, 66.669, 200.0 / 3.0, 50.0, 0.0] {
            assert!(!share_over_two_thirds(p), "{p}");
        }
    }
}
