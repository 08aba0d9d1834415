//! The help page's document checklists, one row per case (verification type × operator ×
//! enterprise status × appeal items), evaluated by the pure `rules::evaluate` against the
//! shipped `rules.toml`: each row has a passing draft and, for every required document, a
//! draft missing only that document; conditional documents are required exactly when
//! their condition holds. Then the rules around the checklists: the deregistered
//! enterprise's restrictions, "other" without an explanation, proof of payment for a
//! phone change, facial recognition, false claims, eligibility and screening.

use std::path::PathBuf;

use appealflow::domain::draft::{Draft, DraftInput, EntryPoint};
use appealflow::domain::rules::{Checklist, EntryStatus, Ineligible, Need, Rules, eligibility, evaluate};
use appealflow::domain::{Account, AccountInput, IdHasher};
use serde_json::{Value, json};

const KEY: &[u8] = b"test-key-0123456789abcdef";

/// The individual account's verified individual.
const VERIFIED_INDIVIDUAL_ID: &str = "110101199003071233";
/// Someone other than the verified individual.
const OTHER_PERSON_ID: &str = "440304198506152416";
/// The enterprises' legal representative on record.
const LEGAL_REP_ID: &str = "31010419781203005X";
/// An enterprise's operator who is not its legal representative.
const OPERATOR_ID: &str = "11010519491231002X";

const NEW_COMPANY: &str = "Hangzhou New Horizon Technology Co., Ltd.";

const PHONE_ITEMS: [&str; 4] = ["retrieve_username", "reset_password", "change_secure_phone", "change_security_email"];
const OTHER_ITEMS: [&str; 4] = ["detach_mfa", "clear_security_questions", "clear_ip_logon_mask", "other"];

// ------------------------------------------------------------------------- builders

fn hasher() -> IdHasher {
    IdHasher::new(KEY).expect("the test key is long enough")
}

fn rules() -> Rules {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workflows/account-appeal/rules.toml");
    Rules::load(&path).expect("the shipped rules load")
}

fn account(v: Value) -> Account {
    serde_json::from_value::<AccountInput>(v)
        .expect("account JSON has the import shape")
        .into_account("test", &hasher())
        .expect("a valid account")
}

fn parse(v: &Value) -> Draft {
    serde_json::from_value::<DraftInput>(v.clone())
        .expect("draft JSON has the input shape")
        .parse(&hasher())
        .unwrap_or_else(|e| panic!("draft parses: {e:?}\n{v:#}"))
}

fn check(acct: &Account, v: &Value) -> Checklist {
    evaluate(&rules(), acct, &parse(v))
}

fn individual() -> Account {
    account(json!({
        "name": "li-wei",
        "verification": "individual",
        "verified_individual": { "name": "Li Wei", "id_number": VERIFIED_INDIVIDUAL_ID },
        "associations": { "phone": "13900001111" }
    }))
}

fn active_enterprise() -> Account {
    account(json!({
        "name": "acme-ops",
        "verification": "enterprise",
        "enterprise_name": "Acme Trading Co., Ltd.",
        "enterprise_status": "active",
        "legal_representative": { "name": "Zhang San", "id_number": LEGAL_REP_ID },
        "associations": { "domains": ["acme.example"] }
    }))
}

fn deregistered_enterprise() -> Account {
    account(json!({
        "name": "oldco-ops",
        "verification": "enterprise",
        "enterprise_name": "Old Co., Ltd.",
        "enterprise_status": "deregistered",
        "legal_representative": { "name": "Zhang San", "id_number": LEGAL_REP_ID },
        "associations": { "domains": ["oldco.example"] }
    }))
}

fn face_passed() -> Value {
    json!({ "result": "passed", "provider": "test-face", "reference": "fr-1" })
}

/// A document declaring everything the rules check about its kind.
fn doc(kind: &str) -> Value {
    let mut d = json!({ "kind": kind, "file": format!("{kind}.jpg") });
    match kind {
        "individual_appeal_letter" | "new_legal_representative_id_card" => d["stamped"] = json!(true),
        "enterprise_appeal_letter" => {
            d["stamped"] = json!(true);
            d["company_name"] = json!(NEW_COMPANY);
        }
        "member_account_holder_change_form" => d["signatory_share_percent"] = json!(70.0),
        "asset_disposal_certificate" => {
            d["issued"] = json!("before_deregistration");
            d["attestation"] = json!("company_seal");
        }
        _ => {}
    }
    d
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    /// Individual account, by the verified individual.
    VerifiedIndividual,
    /// Individual account, by another person.
    OtherPerson,
    /// Enterprise account, enterprise active, scenario `active`.
    EnterpriseActive,
    /// Enterprise account, enterprise active, scenario `name_changed`.
    EnterpriseNameChanged,
    /// Enterprise account, enterprise deregistered.
    EnterpriseDeregistered,
}

const EVERY_CASE: [Who; 5] = [
    Who::VerifiedIndividual,
    Who::OtherPerson,
    Who::EnterpriseActive,
    Who::EnterpriseNameChanged,
    Who::EnterpriseDeregistered,
];

impl Who {
    fn account(self) -> Account {
        match self {
            Who::VerifiedIndividual | Who::OtherPerson => individual(),
            Who::EnterpriseActive | Who::EnterpriseNameChanged => active_enterprise(),
            Who::EnterpriseDeregistered => deregistered_enterprise(),
        }
    }

    fn case(self) -> &'static str {
        match self {
            Who::VerifiedIndividual => "individual_self",
            Who::OtherPerson => "individual_other",
            Who::EnterpriseActive | Who::EnterpriseNameChanged => "enterprise_active",
            Who::EnterpriseDeregistered => "enterprise_deregistered",
        }
    }

    /// Requirement groups (any one kind of a group satisfies it) that are always required.
    fn required(self) -> Vec<Vec<&'static str>> {
        let groups: &[&[&'static str]] = match self {
            Who::VerifiedIndividual => &[],
            Who::OtherPerson => &[&["id_card_front"], &["id_card_back"], &["individual_appeal_letter"]],
            Who::EnterpriseActive | Who::EnterpriseNameChanged => {
                &[&["business_license"], &["enterprise_appeal_letter"]]
            }
            Who::EnterpriseDeregistered => &[
                &["business_license"],
                &["enterprise_appeal_letter"],
                &["proof_of_payment"],
                &["member_account_holder_change_form"],
                &["deregistration_certificate", "credit_system_screenshot"],
                &["asset_disposal_certificate"],
                &["new_legal_representative_id_card"],
            ],
        };
        groups.iter().map(|g| g.to_vec()).collect()
    }

    /// Conditional documents and whether their condition holds for these items.
    fn conditional(self, changes_phone: bool) -> Vec<(&'static str, bool)> {
        match self {
            Who::VerifiedIndividual | Who::EnterpriseDeregistered => vec![],
            Who::OtherPerson => vec![("proof_of_payment", changes_phone)],
            Who::EnterpriseActive => {
                vec![("proof_of_payment", changes_phone), ("business_name_change_certificate", false)]
            }
            Who::EnterpriseNameChanged => {
                vec![("proof_of_payment", changes_phone), ("business_name_change_certificate", true)]
            }
        }
    }

    fn operator(self) -> Value {
        match self {
            Who::VerifiedIndividual => json!({
                "kind": "verified_individual", "name": "Li Wei", "id_number": VERIFIED_INDIVIDUAL_ID,
                "facial_recognition": face_passed()
            }),
            Who::OtherPerson => json!({
                "kind": "other_person", "name": "Chen Jing", "id_number": OTHER_PERSON_ID,
                "facial_recognition": face_passed()
            }),
            _ => json!({
                "claims_legal_representative": false, "name": "Li Si", "id_number": OPERATOR_ID,
                "facial_recognition": face_passed()
            }),
        }
    }

    /// A draft for these items carrying every document required (and every conditional
    /// document whose condition holds), so that it passes.
    fn passing(self, items: &[&str], also_change_secure_phone: bool) -> Value {
        let changes_phone = self == Who::EnterpriseDeregistered
            || also_change_secure_phone
            || items.iter().any(|i| PHONE_ITEMS.contains(i));
        let mut documents: Vec<Value> = self.required().iter().map(|g| doc(g[0])).collect();
        documents.extend(self.conditional(changes_phone).into_iter().filter(|(_, holds)| *holds).map(|(k, _)| doc(k)));
        let account_name = self.account().name;
        let mut v = json!({
            "entry_point": { "kind": "forgot_password", "account": account_name },
            "items": items,
            "also_change_secure_phone": also_change_secure_phone,
            "operator": self.operator(),
            "contact_phone": "13812345678",
            "documents": documents,
        });
        match self {
            Who::EnterpriseActive => v["scenario"] = json!("active"),
            Who::EnterpriseNameChanged => v["scenario"] = json!("name_changed"),
            Who::EnterpriseDeregistered => {
                v["scenario"] = json!("deregistered");
                v["new_company"] = json!({ "name": NEW_COMPANY, "credit_code": "91330106MA2B0XY71K" });
            }
            Who::VerifiedIndividual | Who::OtherPerson => {}
        }
        if items.contains(&"other") {
            v["supplementary_content"] = json!("The account was frozen after a login from abroad.");
        }
        v
    }

    /// The passing draft of the table's deregistered row.
    fn deregistered() -> Value {
        Who::EnterpriseDeregistered.passing(&["change_secure_phone"], false)
    }
}

fn without_documents(v: &Value, kinds: &[&str]) -> Value {
    let mut v = v.clone();
    let docs = v["documents"].as_array_mut().expect("the draft has documents");
    docs.retain(|d| !kinds.contains(&d["kind"].as_str().expect("a kind")));
    v
}

/// Index of the (first) document of `kind` in a draft.
fn doc_index(v: &Value, kind: &str) -> usize {
    v["documents"].as_array().expect("documents").iter().position(|d| d["kind"] == kind).expect("document present")
}

fn fields(c: &Checklist) -> Vec<&str> {
    c.problems.iter().map(|p| p.field.as_str()).collect()
}

fn assert_ready(c: &Checklist, what: &str) {
    assert!(c.ready() && c.problems.is_empty(), "{what}: expected no problems, got {:#?}", c.problems);
    assert!(c.missing.is_empty(), "{what}: nothing missing, got {:?}", c.missing);
}

/// The draft is refused with exactly one problem, on `field`, whose rule contains `needle`.
fn assert_only_problem(c: &Checklist, field: &str, needle: &str, what: &str) {
    assert!(!c.ready(), "{what}: expected a refusal");
    assert_eq!(fields(c), [field], "{what}: {:#?}", c.problems);
    assert!(c.problems[0].rule.contains(needle), "{what}: {needle:?} not in {:?}", c.problems[0].rule);
}

/// The draft is refused with (at least) a problem on `field` whose rule contains `needle`.
fn assert_problem(c: &Checklist, field: &str, needle: &str, what: &str) {
    assert!(!c.ready(), "{what}: expected a refusal");
    assert!(
        c.problems.iter().any(|p| p.field == field && p.rule.contains(needle)),
        "{what}: no problem on {field} mentioning {needle:?}: {:#?}",
        c.problems
    );
}

fn entry<'c>(c: &'c Checklist, kinds: &[&str]) -> &'c appealflow::domain::rules::ChecklistEntry {
    c.documents
        .iter()
        .find(|e| e.documents.iter().map(|k| k.as_str()).eq(kinds.iter().copied()))
        .unwrap_or_else(|| panic!("no checklist entry for {kinds:?}: {:#?}", c.documents))
}

/// Everything one checklist row promises: the passing draft passes; removing any one
/// required (or applicable conditional) document refuses the draft naming exactly that
/// document; a conditional document whose condition does not hold is "not_needed".
fn assert_row(who: Who, items: &[&str], also_change_secure_phone: bool) {
    let label = format!("{who:?} items={items:?} also_change_secure_phone={also_change_secure_phone}");
    let acct = who.account();
    let passing = who.passing(items, also_change_secure_phone);
    let c = check(&acct, &passing);
    assert_ready(&c, &format!("{label}: passing draft"));
    assert_eq!(c.case.as_deref(), Some(who.case()), "{label}");
    assert!(c.screening.is_none(), "{label}");
    let changes_phone =
        who == Who::EnterpriseDeregistered || also_change_secure_phone || items.iter().any(|i| PHONE_ITEMS.contains(i));
    assert_eq!(c.changes_secure_phone, changes_phone, "{label}");

    let mut missing_only = Vec::new();
    for group in who.required() {
        let e = entry(&c, &group);
        assert_eq!((e.need, e.status), (Need::Required, EntryStatus::Provided), "{label}: {group:?}");
        missing_only.push(group);
    }
    for (kind, holds) in who.conditional(changes_phone) {
        let e = entry(&c, &[kind]);
        assert_eq!(e.need, Need::Conditional, "{label}: {kind}");
        assert_eq!(e.applies, holds, "{label}: {kind}");
        if holds {
            assert_eq!(e.status, EntryStatus::Provided, "{label}: {kind}");
            missing_only.push(vec![kind]);
        } else {
            assert_eq!(e.status, EntryStatus::NotNeeded, "{label}: {kind}");
            assert_eq!(serde_json::to_value(e.status).expect("status serialises"), json!("not_needed"));
        }
    }
    // Supplementary documents are optional in every case: never missing.
    assert_eq!(entry(&c, &["supplementary"]).status, EntryStatus::Optional, "{label}");

    for group in missing_only {
        let what = format!("{label}: without {group:?}");
        let c = check(&acct, &without_documents(&passing, &group));
        assert_only_problem(&c, &format!("documents.{}", group.join("|")), "required", &what);
        assert_eq!(c.missing, [group.join(" or ")], "{what}");
        assert_eq!(entry(&c, &group).status, EntryStatus::Missing, "{what}");
    }
}

// ----------------------------------------------------------- one test per checklist row

#[test]
fn individual_verified_individual_changing_the_phone_needs_no_documents() {
    assert_row(Who::VerifiedIndividual, &["reset_password"], false);
}

#[test]
fn individual_verified_individual_without_phone_change_needs_no_documents() {
    assert_row(Who::VerifiedIndividual, &["detach_mfa"], false);
}

#[test]
fn individual_verified_individual_opting_into_a_phone_change_needs_no_documents() {
    assert_row(Who::VerifiedIndividual, &["clear_security_questions"], true);
}

#[test]
fn individual_other_person_changing_the_phone_needs_id_card_letter_and_proof_of_payment() {
    assert_row(Who::OtherPerson, &["retrieve_username"], false);
}

#[test]
fn individual_other_person_without_phone_change_needs_id_card_and_letter_only() {
    assert_row(Who::OtherPerson, &["detach_mfa", "clear_ip_logon_mask"], false);
}

#[test]
fn individual_other_person_opting_into_a_phone_change_needs_proof_of_payment() {
    assert_row(Who::OtherPerson, &["clear_security_questions"], true);
}

#[test]
fn enterprise_active_changing_the_phone_needs_licence_letter_and_proof_of_payment() {
    assert_row(Who::EnterpriseActive, &["change_security_email"], false);
}

#[test]
fn enterprise_active_without_phone_change_needs_licence_and_letter_only() {
    assert_row(Who::EnterpriseActive, &["detach_mfa"], false);
}

#[test]
fn enterprise_active_opting_into_a_phone_change_needs_proof_of_payment() {
    assert_row(Who::EnterpriseActive, &["clear_ip_logon_mask"], true);
}

#[test]
fn enterprise_name_changed_changing_the_phone_needs_name_change_certificate_and_proof_of_payment() {
    assert_row(Who::EnterpriseNameChanged, &["change_secure_phone"], false);
}

#[test]
fn enterprise_name_changed_without_phone_change_needs_name_change_certificate() {
    assert_row(Who::EnterpriseNameChanged, &["clear_security_questions"], false);
}

#[test]
fn enterprise_name_changed_opting_into_a_phone_change_needs_proof_of_payment() {
    assert_row(Who::EnterpriseNameChanged, &["detach_mfa"], true);
}

#[test]
fn enterprise_deregistered_needs_every_document_of_its_checklist() {
    assert_row(Who::EnterpriseDeregistered, &["change_secure_phone"], false);
}

// ------------------------------------------------------------ deregistered enterprises

#[test]
fn deregistered_enterprise_allows_only_the_change_secure_phone_item() {
    let acct = deregistered_enterprise();
    for &item in PHONE_ITEMS.iter().chain(&OTHER_ITEMS).filter(|i| **i != "change_secure_phone") {
        for items in [vec!["change_secure_phone", item], vec![item]] {
            let mut v = Who::deregistered();
            v["items"] = json!(items);
            v["supplementary_content"] = json!("explanation");
            let c = check(&acct, &v);
            assert_only_problem(&c, "items", &format!("{item} is not available"), &format!("{items:?}"));
            assert!(c.problems[0].rule.contains("change_secure_phone"), "{:?}", c.problems[0].rule);
        }
    }
}

#[test]
fn only_the_original_enterprises_legal_representative_may_claim_to_be_it() {
    let acct = deregistered_enterprise();
    let mut v = Who::deregistered();
    v["operator"]["claims_legal_representative"] = json!(true);
    v["operator"]["id_number"] = json!(LEGAL_REP_ID);
    assert_ready(&check(&acct, &v), "the legal representative on record");

    for someone_else in [OPERATOR_ID, OTHER_PERSON_ID, VERIFIED_INDIVIDUAL_ID] {
        v["operator"]["id_number"] = json!(someone_else);
        let c = check(&acct, &v);
        assert_only_problem(&c, "operator.claims_legal_representative", "original enterprise", someone_else);
        v["operator"]["claims_legal_representative"] = json!(false);
        assert_ready(&check(&acct, &v), "someone else saying they are not the legal representative");
        v["operator"]["claims_legal_representative"] = json!(true);
    }
}

#[test]
fn legal_representative_claim_on_an_active_enterprise_must_match_the_record() {
    let acct = active_enterprise();
    let mut v = Who::EnterpriseActive.passing(&["detach_mfa"], false);
    v["operator"]["claims_legal_representative"] = json!(true);
    let c = check(&acct, &v);
    assert_only_problem(&c, "operator.claims_legal_representative", "legal representative", "wrong ID");
    v["operator"]["id_number"] = json!(LEGAL_REP_ID);
    assert_ready(&check(&acct, &v), "the legal representative on record");
}

fn with_disposal(issued: Option<&str>, attestation: Option<&str>, share: Option<f64>) -> Value {
    let mut v = Who::deregistered();
    let i = doc_index(&v, "asset_disposal_certificate");
    let d = &mut v["documents"][i];
    let set = |d: &mut Value, key: &str, value: Option<Value>| match value {
        Some(x) => d[key] = x,
        None => {
            d.as_object_mut().expect("a document object").remove(key);
        }
    };
    set(d, "issued", issued.map(|s| json!(s)));
    set(d, "attestation", attestation.map(|s| json!(s)));
    set(d, "signatory_share_percent", share.map(|p| json!(p)));
    v
}

fn disposal_field(v: &Value, leaf: &str) -> String {
    format!("documents[{}].{leaf}", doc_index(v, "asset_disposal_certificate"))
}

#[test]
fn asset_disposal_certificate_issued_before_deregistration_with_the_company_seal_is_accepted() {
    let v = with_disposal(Some("before_deregistration"), Some("company_seal"), None);
    assert_ready(&check(&deregistered_enterprise(), &v), "before + company seal");
}

#[test]
fn asset_disposal_certificate_issued_after_deregistration_signed_by_over_two_thirds_is_accepted() {
    for share in [66.67, 66.7, 70.0, 100.0] {
        let v = with_disposal(Some("after_deregistration"), Some("shareholder_signatures"), Some(share));
        assert_ready(&check(&deregistered_enterprise(), &v), &format!("after + signatures of {share}%"));
    }
}

#[test]
fn asset_disposal_certificate_signed_by_two_thirds_or_less_is_refused() {
    let acct = deregistered_enterprise();
    for share in [Some(66.66), Some(200.0 / 3.0), Some(66.0), Some(50.0), None] {
        let v = with_disposal(Some("after_deregistration"), Some("shareholder_signatures"), share);
        let c = check(&acct, &v);
        assert_only_problem(&c, &disposal_field(&v, "signatory_share_percent"), "two thirds", &format!("{share:?}"));
    }
}

#[test]
fn asset_disposal_certificate_signed_by_a_declared_66_67_percent_is_accepted() {
    let v = with_disposal(Some("after_deregistration"), Some("shareholder_signatures"), Some(66.67));
    assert_ready(&check(&deregistered_enterprise(), &v), "after + signatures of 66.67%");
}

#[test]
fn asset_disposal_certificate_signed_by_a_declared_66_66_percent_is_refused() {
    let v = with_disposal(Some("after_deregistration"), Some("shareholder_signatures"), Some(66.66));
    let c = check(&deregistered_enterprise(), &v);
    assert_only_problem(&c, &disposal_field(&v, "signatory_share_percent"), "66.67% or more", "66.66%");
}

#[test]
fn asset_disposal_certificate_with_a_mismatched_variant_is_refused() {
    let acct = deregistered_enterprise();
    let before_signed = with_disposal(Some("before_deregistration"), Some("shareholder_signatures"), Some(90.0));
    let c = check(&acct, &before_signed);
    assert_only_problem(&c, &disposal_field(&before_signed, "attestation"), "company seal", "before + signatures");
    let after_sealed = with_disposal(Some("after_deregistration"), Some("company_seal"), None);
    let c = check(&acct, &after_sealed);
    assert_only_problem(&c, &disposal_field(&after_sealed, "attestation"), "signed and fingerprinted", "after + seal");
    let no_attestation = with_disposal(Some("before_deregistration"), None, None);
    let c = check(&acct, &no_attestation);
    assert_only_problem(&c, &disposal_field(&no_attestation, "attestation"), "company seal", "before, no attestation");
}

#[test]
fn asset_disposal_certificate_must_say_when_it_was_issued() {
    let v = with_disposal(None, Some("company_seal"), None);
    let c = check(&deregistered_enterprise(), &v);
    assert_only_problem(&c, &disposal_field(&v, "issued"), "before_deregistration or after_deregistration", "no date");
}

fn with_member_form_share(share: Option<f64>) -> (Value, String) {
    let mut v = Who::deregistered();
    let i = doc_index(&v, "member_account_holder_change_form");
    match share {
        Some(p) => v["documents"][i]["signatory_share_percent"] = json!(p),
        None => {
            v["documents"][i].as_object_mut().expect("object").remove("signatory_share_percent");
        }
    }
    (v, format!("documents[{i}].signatory_share_percent"))
}

#[test]
fn member_account_holder_change_form_signed_by_two_thirds_or_less_is_refused() {
    let acct = deregistered_enterprise();
    for share in [Some(66.66), Some(200.0 / 3.0), Some(66.0), Some(50.0), Some(0.0), None] {
        let (v, field) = with_member_form_share(share);
        assert_only_problem(&check(&acct, &v), &field, "more than two thirds", &format!("{share:?}"));
    }
    for share in [66.67, 66.7, 80.0, 100.0] {
        let (v, _) = with_member_form_share(Some(share));
        assert_ready(&check(&acct, &v), &format!("{share}%"));
    }
}

#[test]
fn member_account_holder_change_form_signed_by_a_declared_66_67_percent_is_accepted() {
    let (v, _) = with_member_form_share(Some(66.67));
    assert_ready(&check(&deregistered_enterprise(), &v), "66.67%");
}

#[test]
fn member_account_holder_change_form_signed_by_a_declared_66_66_percent_is_refused() {
    let (v, field) = with_member_form_share(Some(66.66));
    let c = check(&deregistered_enterprise(), &v);
    assert_only_problem(&c, &field, "66.67% or more (declared: 66.66%)", "66.66%");
}

#[test]
fn deregistration_certificate_or_credit_system_screenshot_each_alone_suffices() {
    let acct = deregistered_enterprise();
    let base = without_documents(&Who::deregistered(), &["deregistration_certificate", "credit_system_screenshot"]);
    for kind in ["deregistration_certificate", "credit_system_screenshot"] {
        let mut v = base.clone();
        v["documents"].as_array_mut().expect("documents").push(doc(kind));
        let c = check(&acct, &v);
        assert_ready(&c, kind);
        assert_eq!(
            entry(&c, &["deregistration_certificate", "credit_system_screenshot"]).status,
            EntryStatus::Provided
        );
    }
    let c = check(&acct, &base);
    assert_only_problem(&c, "documents.deregistration_certificate|credit_system_screenshot", "required", "neither");
    assert_eq!(c.missing, ["deregistration_certificate or credit_system_screenshot"]);
}

#[test]
fn deregistered_appeal_letter_must_name_the_new_company() {
    let acct = deregistered_enterprise();
    let base = Who::deregistered();
    let i = doc_index(&base, "enterprise_appeal_letter");
    let field = format!("documents[{i}].company_name");
    let mut v = base.clone();
    v["documents"][i]["company_name"] = json!("Old Co., Ltd.");
    assert_only_problem(&check(&acct, &v), &field, NEW_COMPANY, "letter names the old company");
    v["documents"][i].as_object_mut().expect("object").remove("company_name");
    assert_only_problem(&check(&acct, &v), &field, NEW_COMPANY, "letter names no company");
}

#[test]
fn appeal_letters_must_be_stamped() {
    for (who, kind) in [
        (Who::OtherPerson, "individual_appeal_letter"),
        (Who::EnterpriseActive, "enterprise_appeal_letter"),
        (Who::EnterpriseDeregistered, "enterprise_appeal_letter"),
        (Who::EnterpriseDeregistered, "new_legal_representative_id_card"),
    ] {
        let mut v = who.passing(&["change_secure_phone"], false);
        let i = doc_index(&v, kind);
        v["documents"][i]["stamped"] = json!(false);
        let c = check(&who.account(), &v);
        assert_only_problem(&c, &format!("documents[{i}].stamped"), "stamped", &format!("{who:?} {kind}"));
    }
}

#[test]
fn deregistered_appeal_requires_the_new_company() {
    let mut v = Who::deregistered();
    v.as_object_mut().expect("object").remove("new_company");
    let c = check(&deregistered_enterprise(), &v);
    assert_only_problem(&c, "new_company", "new company", "no new company");
}

#[test]
fn deregistered_appeal_always_requires_proof_of_payment() {
    let acct = deregistered_enterprise();
    let c = check(&acct, &Who::deregistered());
    assert!(c.changes_secure_phone);
    assert!(c.requires_entity_change_ticket, "approval waits for the entity-change ticket");
    let e = entry(&c, &["proof_of_payment"]);
    assert_eq!((e.need, e.applies), (Need::Required, true));
    let c = check(&acct, &without_documents(&Who::deregistered(), &["proof_of_payment"]));
    assert_only_problem(&c, "documents.proof_of_payment", "required", "no proof of payment");
    assert_eq!(c.missing, ["proof_of_payment"]);
}

#[test]
fn enterprise_scenario_must_match_the_status_on_record() {
    let mut v = Who::EnterpriseActive.passing(&["detach_mfa"], false);
    v["scenario"] = json!("deregistered");
    assert_problem(&check(&active_enterprise(), &v), "scenario", "not deregistered", "active as deregistered");
    let mut v = Who::deregistered();
    v["scenario"] = json!("active");
    assert_problem(&check(&deregistered_enterprise(), &v), "scenario", "choose deregistered", "deregistered as active");
}

// ------------------------------------------------------------- items and the operator

#[test]
fn other_item_without_supplementary_content_is_refused() {
    for who in [Who::VerifiedIndividual, Who::OtherPerson, Who::EnterpriseActive, Who::EnterpriseNameChanged] {
        let v = who.passing(&["other"], false);
        assert_ready(&check(&who.account(), &v), &format!("{who:?} with an explanation"));
        let mut bare = v.clone();
        bare.as_object_mut().expect("object").remove("supplementary_content");
        assert_only_problem(&check(&who.account(), &bare), "supplementary_content", "other", &format!("{who:?}"));
        bare["supplementary_content"] = json!("   ");
        assert_only_problem(&check(&who.account(), &bare), "supplementary_content", "other", "blank explanation");
    }
}

#[test]
fn phone_changing_items_without_proof_of_payment_are_refused() {
    for who in [Who::OtherPerson, Who::EnterpriseActive, Who::EnterpriseNameChanged] {
        let mut drafts: Vec<(String, Value)> =
            PHONE_ITEMS.iter().map(|item| (item.to_string(), who.passing(&[item], false))).collect();
        drafts.push(("detach_mfa + also_change_secure_phone".into(), who.passing(&["detach_mfa"], true)));
        drafts.push(("every item".into(), who.passing(&[PHONE_ITEMS, OTHER_ITEMS].concat(), false)));
        for (what, v) in drafts {
            let what = format!("{who:?} {what}");
            let c = check(&who.account(), &without_documents(&v, &["proof_of_payment"]));
            assert!(c.changes_secure_phone, "{what}");
            assert_only_problem(&c, "documents.proof_of_payment", "required", &what);
            assert_eq!(c.missing, ["proof_of_payment"], "{what}");
        }
    }
}

#[test]
fn items_that_keep_the_phone_need_no_proof_of_payment() {
    for who in [Who::OtherPerson, Who::EnterpriseActive, Who::EnterpriseNameChanged] {
        let v = who.passing(&OTHER_ITEMS, false);
        assert!(v["documents"].as_array().expect("documents").iter().all(|d| d["kind"] != "proof_of_payment"));
        let c = check(&who.account(), &v);
        assert_ready(&c, &format!("{who:?}"));
        assert!(!c.changes_secure_phone);
        assert_eq!(entry(&c, &["proof_of_payment"]).status, EntryStatus::NotNeeded);
    }
}

#[test]
fn facial_recognition_missing_or_failed_is_refused_in_every_case() {
    for who in EVERY_CASE {
        let v = who.passing(&["change_secure_phone"], false);
        let mut missing = v.clone();
        missing["operator"].as_object_mut().expect("object").remove("facial_recognition");
        let c = check(&who.account(), &missing);
        assert_only_problem(&c, "operator.facial_recognition", "required before submission", &format!("{who:?}"));
        let mut failed = v.clone();
        failed["operator"]["facial_recognition"]["result"] = json!("failed");
        let c = check(&who.account(), &failed);
        assert_only_problem(&c, "operator.facial_recognition", "did not pass", &format!("{who:?}"));
    }
}

#[test]
fn operator_id_number_and_name_are_required_in_every_case() {
    for who in EVERY_CASE {
        let v = who.passing(&["change_secure_phone"], false);
        for (key, field) in [("id_number", "operator.id_number"), ("name", "operator.name")] {
            let mut w = v.clone();
            w["operator"].as_object_mut().expect("object").remove(key);
            let c = check(&who.account(), &w);
            assert_problem(&c, field, "required", &format!("{who:?} without {key}"));
        }
    }
}

#[test]
fn contact_phone_is_required_in_every_case() {
    for who in EVERY_CASE {
        let mut v = who.passing(&["change_secure_phone"], false);
        v.as_object_mut().expect("object").remove("contact_phone");
        assert_only_problem(&check(&who.account(), &v), "contact_phone", "required", &format!("{who:?}"));
    }
}

#[test]
fn verified_individual_claim_with_another_id_number_is_refused() {
    let mut v = Who::VerifiedIndividual.passing(&["reset_password"], false);
    v["operator"]["id_number"] = json!(OTHER_PERSON_ID);
    let c = check(&individual(), &v);
    assert_only_problem(&c, "operator.kind", "not the verified individual", "another ID number");
}

#[test]
fn enterprise_operator_cannot_claim_to_be_a_verified_individual() {
    let mut v = Who::EnterpriseActive.passing(&["detach_mfa"], false);
    v["operator"]["kind"] = json!("verified_individual");
    let c = check(&active_enterprise(), &v);
    assert_only_problem(&c, "operator.kind", "no verified individual", "enterprise");
}

#[test]
fn a_document_outside_the_case_checklist_is_refused() {
    let mut v = Who::VerifiedIndividual.passing(&["detach_mfa"], false);
    v["documents"] = json!([doc("business_license")]);
    let c = check(&individual(), &v);
    assert_only_problem(&c, "documents[0]", "upload it as supplementary", "licence on an individual appeal");
}

// --------------------------------------------------------- eligibility and screening

fn entry_point(v: Value) -> EntryPoint {
    parse(&json!({ "entry_point": v })).entry_point.expect("an entry point")
}

fn account_with_associations(associations: Value) -> Account {
    account(json!({
        "name": "bare",
        "verification": "individual",
        "verified_individual": { "name": "Li Wei", "id_number": VERIFIED_INDIVIDUAL_ID },
        "associations": associations
    }))
}

#[test]
fn forgot_username_for_an_account_without_associations_is_ineligible() {
    let forgot_username = entry_point(json!({ "kind": "forgot_username", "lookup": "domain", "value": "a.example" }));
    let bare = account_with_associations(json!({}));
    let err = eligibility(&forgot_username, &bare).unwrap_err();
    assert_eq!(err, Ineligible::NoAssociations);
    assert!(err.to_string().contains("cannot be located"), "{err}");
    // ICP filings alone are not something a username search can find.
    assert_eq!(
        eligibility(&forgot_username, &account_with_associations(json!({ "icp_filings": true }))),
        Err(Ineligible::NoAssociations)
    );
    for one in [
        json!({ "phone": "13900001111" }),
        json!({ "domains": ["a.example"] }),
        json!({ "icp_domains": ["icp.example"] }),
        json!({ "email_domains": ["mail.example"] }),
        json!({ "issued_invoices": true }),
    ] {
        assert_eq!(eligibility(&forgot_username, &account_with_associations(one.clone())), Ok(()), "{one}");
    }
    // Other entry points name the account directly.
    let forgot_password = entry_point(json!({ "kind": "forgot_password", "account": "bare" }));
    assert_eq!(eligibility(&forgot_password, &bare), Ok(()));
}

#[test]
fn logged_in_holder_of_a_deregistered_enterprise_account_is_told_to_change_entity_or_unregister() {
    let security_page = entry_point(json!({ "kind": "security_page", "account": "oldco-ops" }));
    let err = eligibility(&security_page, &deregistered_enterprise()).unwrap_err();
    assert_eq!(err, Ineligible::DeregisteredLoggedIn);
    let msg = err.to_string();
    assert!(msg.contains("unregister") && msg.contains("verified entity"), "{msg}");
    let forgot_password = entry_point(json!({ "kind": "forgot_password", "account": "oldco-ops" }));
    assert_eq!(eligibility(&forgot_password, &deregistered_enterprise()), Ok(()));
    let security_page = entry_point(json!({ "kind": "security_page", "account": "acme-ops" }));
    assert_eq!(eligibility(&security_page, &active_enterprise()), Ok(()));
}

fn unverified(icp_filings: bool) -> Account {
    account(json!({
        "name": "never-verified",
        "verification": "none",
        "associations": { "domains": ["nv.example"], "icp_filings": icp_filings }
    }))
}

fn unverified_draft() -> Value {
    json!({
        "entry_point": { "kind": "forgot_password", "account": "never-verified" },
        "items": ["reset_password"],
        "contact_phone": "13812345678"
    })
}

#[test]
fn unverified_account_is_screened_with_offline_transfer_guidance_when_it_holds_icp_filings() {
    let c = check(&unverified(true), &unverified_draft());
    let screening = c.screening.as_deref().expect("screening is set");
    assert!(screening.starts_with("inapplicable_scenario"), "{screening}");
    assert!(screening.contains("transfer them offline first"), "{screening}");
    assert!(screening.contains("complete identity verification"), "{screening}");
    assert_eq!(c.case, None);
    assert!(c.documents.is_empty());
}

#[test]
fn unverified_account_without_icp_filings_is_screened_without_offline_transfer_guidance() {
    let c = check(&unverified(false), &unverified_draft());
    let screening = c.screening.as_deref().expect("screening is set");
    assert!(screening.starts_with("inapplicable_scenario"), "{screening}");
    assert!(!screening.contains("offline"), "{screening}");
    assert!(screening.contains("complete identity verification"), "{screening}");
}
