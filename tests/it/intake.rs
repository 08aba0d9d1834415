//! Appeal intake against real databases, on SQLite and on PostgreSQL: submission (ticket,
//! outbox, documents stored by SHA-256, ID numbers never in clear), refusal with every
//! problem at once and nothing stored, locating the account, screening, one open appeal
//! per account, resubmission inside and outside the window (manual clock), linking the
//! entity-change ticket, the progress query, and malformed documents.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::common::{TestDb, monday_morning, reviewer};
use appealflow::app::intake::{AppealData, DocumentSource, EntityLink, Intake, IntakeError, Submitted};
use appealflow::domain::document::DocumentLimits;
use appealflow::domain::draft::DraftInput;
use appealflow::domain::rules::Ineligible;
use appealflow::domain::{Account, AccountInput, Actor, IdHasher, TicketNumber};
use appealflow::engine::{EngineError, ManualClock};
use appealflow::startup::IntakeConfig;
use appealflow::store::{AppealRecord, TimerStatus};
use appealflow::workflow::{Fire, Refusal};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

on_both_backends!(
    an_unverified_account_is_screened_again_on_resubmission_and_never_reaches_a_reviewer,
    submit_issues_a_ticket_queues_appeal_received_and_stores_documents_by_sha256,
    stored_appeal_holds_the_masked_operator_id_number_never_the_clear_one,
    incomplete_submission_is_refused_with_every_problem_at_once_and_nothing_is_stored,
    malformed_draft_is_refused_with_every_field_problem_at_once_and_nothing_is_stored,
    forgot_username_locates_the_account_by_domain_icp_domain_or_email_domain,
    unknown_lookup_key_or_account_name_is_ineligible_no_account,
    unverified_account_is_screened_and_rejected_as_inapplicable_scenario,
    new_appeal_while_one_is_submitted_or_under_review_is_refused_naming_the_open_ticket,
    new_appeal_while_one_is_in_its_resubmission_window_supersedes_it,
    resubmission_one_second_before_the_window_closes_returns_to_submitted_with_a_fresh_sla,
    resubmission_after_the_window_expired_is_refused_with_start_a_new_appeal,
    new_appeal_after_the_window_expired_is_created_without_superseding,
    deregistered_enterprise_appeal_is_approved_only_after_the_entity_change_ticket_is_linked,
    entity_change_from_an_account_not_verified_as_the_new_company_is_refused,
    progress_answers_identically_for_an_unknown_ticket_and_a_wrong_phone,
    progress_reports_each_stage_for_the_right_phone,
    malformed_documents_are_refused_naming_kind_and_reason_and_nothing_is_stored,
    document_over_the_configured_size_limit_is_refused,
    resubmission_one_second_after_the_window_closed_without_a_timer_poll_is_refused_and_expires,
    new_appeal_after_the_window_closed_without_a_timer_poll_is_created,
    submission_refused_for_an_open_appeal_stores_no_documents,
);

const KEY: &str = "test-key-0123456789abcdef";
/// The enterprises' operator (not a legal representative).
const OPERATOR_ID: &str = "11010519491231002X";
const OPERATOR_ID_MASKED: &str = "110105********002X";
const LEGAL_REP_ID: &str = "440304198506152416";
const OLD_LEGAL_REP_ID: &str = "31010419781203005X";
const INDIVIDUAL_ID: &str = "110101199003071233";
const PHONE: &str = "13812345678";
const NEW_COMPANY: &str = "Hangzhou New Horizon Technology Co., Ltd.";

// ------------------------------------------------------------------------- harness

/// Document content by file name, as the applicant's upload would provide it.
struct Files(HashMap<String, Vec<u8>>);

impl DocumentSource for Files {
    fn read(&self, file: &str) -> Result<Vec<u8>, String> {
        self.0.get(file).cloned().ok_or_else(|| format!("no file {file:?}"))
    }
}

use appealflow::domain::document::sample::{jpeg, pdf, png};

fn files() -> Files {
    let mut m = HashMap::new();
    m.insert("licence.jpg".to_string(), jpeg("licence"));
    m.insert("licence-v2.jpg".to_string(), jpeg("licence, second scan"));
    m.insert("letter.pdf".to_string(), pdf("letter"));
    m.insert("receipt.png".to_string(), png("receipt"));
    m.insert("form.jpg".to_string(), jpeg("member form"));
    m.insert("deregistration.pdf".to_string(), pdf("deregistration certificate"));
    m.insert("disposal.jpg".to_string(), jpeg("asset disposal"));
    m.insert("new-rep-id.jpg".to_string(), jpeg("new legal representative"));
    // Malformed uploads.
    m.insert("empty.jpg".to_string(), vec![]);
    m.insert("letter.gif".to_string(), b"GIF89a\x01\x00\x01\x00".to_vec());
    m.insert("scan.jpg".to_string(), pdf("a PDF named as a JPEG"));
    Files(m)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hasher() -> IdHasher {
    IdHasher::new(KEY.as_bytes()).expect("the test key is long enough")
}

fn accounts() -> Vec<Account> {
    let enterprise = |name: &str, company: &str, status: &str, rep: &str, domain: &str| {
        json!({
            "name": name, "verification": "enterprise", "enterprise_name": company,
            "enterprise_status": status,
            "legal_representative": { "name": "Zhang San", "id_number": rep },
            "associations": { "domains": [domain] }
        })
    };
    let mut acme = enterprise("acme-ops", "Acme Trading Co., Ltd.", "active", LEGAL_REP_ID, "acme.example");
    acme["associations"] = json!({
        "phone": "13900001111",
        "domains": ["acme.example"],
        "icp_domains": ["acme-icp.example"],
        "email_domains": ["mail.acme.example"]
    });
    let raw = vec![
        acme,
        enterprise("oldco-ops", "Old Co., Ltd.", "deregistered", OLD_LEGAL_REP_ID, "oldco.example"),
        enterprise("newco-ops", NEW_COMPANY, "active", LEGAL_REP_ID, "newco.example"),
        enterprise("other-co-ops", "Some Other Co., Ltd.", "active", LEGAL_REP_ID, "other-co.example"),
        enterprise("newco-gone", NEW_COMPANY, "deregistered", LEGAL_REP_ID, "newco-gone.example"),
        json!({
            "name": "newco-person", "verification": "individual",
            "verified_individual": { "name": NEW_COMPANY, "id_number": INDIVIDUAL_ID },
            "associations": { "domains": ["newco-person.example"] }
        }),
        json!({
            "name": "never-verified", "verification": "none",
            "associations": { "domains": ["nv.example"], "icp_filings": true }
        }),
    ];
    raw.into_iter()
        .map(|v| {
            serde_json::from_value::<AccountInput>(v)
                .expect("account JSON has the import shape")
                .into_account("accounts", &hasher())
                .expect("valid account")
        })
        .collect()
}

struct Harness {
    db: TestDb,
    clock: Arc<ManualClock>,
    intake: Arc<Intake>,
    blob_dir: tempfile::TempDir,
}

async fn harness_with(db: TestDb, limits: DocumentLimits) -> Harness {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let blob_dir = tempfile::tempdir().expect("blob dir");
    let config = IntakeConfig {
        blob_dir: blob_dir.path().to_path_buf(),
        id_hash_key: Some(KEY.into()),
        limits,
        pdf_inspector: None,
    };
    let work = appealflow::startup::WorkConfig { lead_emails: vec![common::LEADS.into()], ..Default::default() };
    let app = common::app(&db, clock.clone(), &work, Some(config));
    let intake = app.intake().expect("built with intake").clone();
    db.store.put_accounts(&accounts(), monday_morning()).await.expect("accounts import");
    Harness { db, clock, intake, blob_dir }
}

async fn harness(db: TestDb) -> Harness {
    harness_with(db, DocumentLimits::default()).await
}

fn input(v: &Value) -> DraftInput {
    serde_json::from_value(v.clone()).expect("draft JSON has the input shape")
}

fn operator() -> Value {
    json!({
        "name": "Li Si", "id_number": OPERATOR_ID,
        "facial_recognition": { "result": "passed", "provider": "test-face", "reference": "fr-0001" }
    })
}

/// An active enterprise resetting its password (a phone change) and detaching MFA.
fn enterprise_draft() -> Value {
    json!({
        "entry_point": { "kind": "forgot_username", "lookup": "domain", "value": "acme.example" },
        "items": ["reset_password", "detach_mfa"],
        "scenario": "active",
        "operator": operator(),
        "contact_phone": PHONE,
        "contact_email": "ops@acme.example",
        "documents": [
            { "kind": "business_license", "file": "licence.jpg" },
            { "kind": "enterprise_appeal_letter", "file": "letter.pdf", "stamped": true },
            { "kind": "proof_of_payment", "file": "receipt.png" }
        ]
    })
}

/// A deregistered enterprise changing its verified entity to the new company.
fn deregistered_draft() -> Value {
    json!({
        "entry_point": { "kind": "forgot_password", "account": "oldco-ops" },
        "items": ["change_secure_phone"],
        "scenario": "deregistered",
        "operator": operator(),
        "contact_phone": PHONE,
        "new_company": { "name": NEW_COMPANY, "credit_code": "91330106MA2B0XY71K" },
        "documents": [
            { "kind": "business_license", "file": "licence.jpg" },
            { "kind": "enterprise_appeal_letter", "file": "letter.pdf", "stamped": true, "company_name": NEW_COMPANY },
            { "kind": "proof_of_payment", "file": "receipt.png" },
            { "kind": "member_account_holder_change_form", "file": "form.jpg", "signatory_share_percent": 75.0 },
            { "kind": "deregistration_certificate", "file": "deregistration.pdf" },
            { "kind": "asset_disposal_certificate", "file": "disposal.jpg",
              "issued": "after_deregistration", "attestation": "shareholder_signatures", "signatory_share_percent": 80.0 },
            { "kind": "new_legal_representative_id_card", "file": "new-rep-id.jpg", "stamped": true }
        ]
    })
}

fn unverified_draft() -> Value {
    json!({
        "entry_point": { "kind": "forgot_username", "lookup": "domain", "value": "nv.example" },
        "items": ["reset_password"],
        "contact_phone": PHONE
    })
}

impl Harness {
    async fn submit(&self, draft: &Value) -> Result<Submitted, IntakeError> {
        self.intake.submit(input(draft), &files(), None).await
    }

    async fn record(&self, ticket: &TicketNumber) -> AppealRecord {
        self.db.store.appeal_by_ticket(ticket).await.expect("store answers").expect("the appeal exists")
    }

    async fn fire(&self, ticket: &TicketNumber, transition: &str, actor: &Actor, reasons: &[&str]) {
        let mut cmd = Fire::new(transition);
        cmd.reasons = reasons.iter().map(|r| r.to_string()).collect();
        self.intake.engine().fire(ticket, &cmd, actor, None).await.unwrap_or_else(|e| panic!("{transition}: {e}"));
    }

    /// Claimed, rejected and the notice delivered, all at the clock's now.
    async fn reject_and_deliver(&self, ticket: &TicketNumber) {
        self.fire(ticket, "claim", &reviewer("ann"), &[]).await;
        self.fire(ticket, "reject", &reviewer("ann"), &["missing_documents: proof_of_payment"]).await;
        self.fire(ticket, "notice_delivered", &Actor::system(), &[]).await;
    }

    fn blob_files(&self) -> Vec<std::path::PathBuf> {
        files_under(self.blob_dir.path())
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("read blob dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Delivered on Monday 9 March 2026 (Shanghai): the window closes at the end of the 3rd
/// calendar day after it, Thursday 12 March.
fn window_deadline() -> DateTime<Utc> {
    common::at("2026-03-13T00:00:00+08:00")
}

fn data(record: &AppealRecord) -> AppealData {
    AppealData::from_record(record).expect("the record is appeal data")
}

// --------------------------------------------------------------------------- tests

async fn submit_issues_a_ticket_queues_appeal_received_and_stores_documents_by_sha256(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&enterprise_draft()).await.expect("a complete draft is accepted");
    assert_eq!(out.state, "submitted");
    assert_eq!((out.superseded.as_deref(), out.screening.as_deref(), out.replayed), (None, None, false));
    assert_eq!(TicketNumber::parse(&out.ticket.to_string()), Ok(out.ticket.clone()), "a well-formed ticket");

    let record = h.record(&out.ticket).await;
    assert_eq!((record.state.as_str(), record.account.as_str(), record.version), ("submitted", "acme-ops", 1));
    let sent = common::notifications(h.db.store.as_ref(), &record.id).await;
    let templates: Vec<_> = sent.iter().map(|n| (n.template.as_str(), n.channel.as_str())).collect();
    assert_eq!(
        templates,
        [("appeal_received", "sms"), ("appeal_received", "email")],
        "to the applicant's phone and email"
    );
    let timers = h.db.store.timers(Some(&record.id)).await.unwrap();
    assert!(timers.iter().any(|t| t.name == "review_sla" && t.status == TimerStatus::Armed), "{timers:?}");

    let stored = data(&record);
    assert_eq!(stored.case.as_deref(), Some("enterprise_active"));
    assert!(stored.changes_secure_phone);
    assert_eq!(stored.draft.contact_phone.as_ref().map(|p| p.as_e164()), Some("+8613812345678"));
    let expected = [("licence.jpg", jpeg("licence")), ("letter.pdf", pdf("letter")), ("receipt.png", png("receipt"))];
    assert_eq!(stored.draft.documents.len(), expected.len());
    let blobs = appealflow::adapters::blobs::LocalBlobStore::open(h.blob_dir.path()).unwrap();
    for (doc, (name, bytes)) in stored.draft.documents.iter().zip(&expected) {
        assert_eq!(doc.sha256.as_deref(), Some(sha256(bytes).as_str()), "{name}");
        assert_eq!(doc.size, Some(bytes.len() as u64), "{name}");
        assert_eq!(doc.file, None, "{name}: the local path is not kept");
        assert_eq!(doc.file_name.as_deref(), Some(*name), "{name}: kept as metadata");
        let got = appealflow::adapters::blobs::BlobStore::get(&blobs, &sha256(bytes)).await.unwrap();
        assert_eq!(&got[..], &bytes[..], "{name}: the blob store serves the bytes");
    }
    let types: Vec<_> = stored.draft.documents.iter().map(|d| d.content_type.map(|t| t.to_string())).collect();
    assert_eq!(types, [Some("JPEG".into()), Some("PDF".into()), Some("PNG".into())]);
}

async fn stored_appeal_holds_the_masked_operator_id_number_never_the_clear_one(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&enterprise_draft()).await.unwrap();
    let record = h.record(&out.ticket).await;
    let text = serde_json::to_string(&record.data).unwrap();
    assert!(!text.contains(OPERATOR_ID), "clear ID number stored: {text}");
    assert!(!text.contains(&OPERATOR_ID[..17]), "clear ID digits stored: {text}");
    assert!(!text.contains("19491231"), "the birth date digits are masked: {text}");
    assert!(text.contains(OPERATOR_ID_MASKED), "the masked form is kept: {text}");
    let id = data(&record).draft.operator.and_then(|o| o.id).expect("the operator's ID is kept protected");
    assert_eq!(id.masked, OPERATOR_ID_MASKED);
    assert_eq!(id.hash.len(), 64);
    // Neither does the history.
    let history = serde_json::to_string(&h.db.store.history(&record.id).await.unwrap()).unwrap();
    assert!(!history.contains("19491231"), "{history}");
}

async fn incomplete_submission_is_refused_with_every_problem_at_once_and_nothing_is_stored(db: TestDb) {
    let h = harness(db).await;
    let before = h.db.store.row_counts().await.unwrap();
    let mut draft = enterprise_draft();
    draft["documents"] = json!([{ "kind": "business_license", "file": "licence.jpg" }]);
    draft["operator"].as_object_mut().unwrap().remove("facial_recognition");
    draft.as_object_mut().unwrap().remove("contact_phone");
    let err = h.submit(&draft).await.unwrap_err();
    let IntakeError::Incomplete(checklist) = &err else { panic!("expected Incomplete, got {err:?}") };
    let fields: Vec<&str> = checklist.problems.iter().map(|p| p.field.as_str()).collect();
    for expected in [
        "contact_phone",
        "operator.facial_recognition",
        "documents.enterprise_appeal_letter",
        "documents.proof_of_payment",
    ] {
        assert!(fields.contains(&expected), "{expected} not among {fields:?}");
    }
    assert_eq!(checklist.missing, ["enterprise_appeal_letter", "proof_of_payment"]);
    let msg = err.to_string();
    assert!(msg.contains("4 problems"), "{msg}");
    assert_eq!(h.db.store.row_counts().await.unwrap(), before, "no appeal, event, timer or outbox row");
    assert!(h.blob_files().is_empty(), "no document stored: {:?}", h.blob_files());
}

async fn malformed_draft_is_refused_with_every_field_problem_at_once_and_nothing_is_stored(db: TestDb) {
    let h = harness(db).await;
    let before = h.db.store.row_counts().await.unwrap();
    let mut draft = enterprise_draft();
    draft["contact_phone"] = json!("12345");
    draft["operator"]["id_number"] = json!("11010519491231003X");
    draft["items"] = json!(["reset_password", "teleport"]);
    let err = h.submit(&draft).await.unwrap_err();
    let IntakeError::Invalid(problems) = &err else { panic!("expected Invalid, got {err:?}") };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["items[1]", "operator.id_number", "contact_phone"]);
    assert!(!err.to_string().contains("11010519491231003X"), "the refused ID number is not echoed: {err}");
    assert_eq!(h.db.store.row_counts().await.unwrap(), before);
    assert!(h.blob_files().is_empty());
}

async fn forgot_username_locates_the_account_by_domain_icp_domain_or_email_domain(db: TestDb) {
    let h = harness(db).await;
    for (lookup, value) in [
        ("domain", "acme.example"),
        ("domain", "ACME.Example."),
        ("icp_domain", "acme-icp.example"),
        ("email_domain", "mail.acme.example"),
    ] {
        let mut draft = enterprise_draft();
        draft["entry_point"] = json!({ "kind": "forgot_username", "lookup": lookup, "value": value });
        let parsed = h.intake.parse(input(&draft)).unwrap();
        let account = h.intake.resolve(&parsed).await.unwrap_or_else(|e| panic!("{lookup} {value}: {e}"));
        assert_eq!(account.name, "acme-ops", "{lookup} {value}");
        let checklist = h.intake.checklist(input(&draft)).await.unwrap();
        assert_eq!(checklist.case.as_deref(), Some("enterprise_active"));
        assert!(checklist.ready(), "{:?}", checklist.problems);
    }
    // A key of one kind does not find an account by another kind.
    let mut draft = enterprise_draft();
    draft["entry_point"] = json!({ "kind": "forgot_username", "lookup": "icp_domain", "value": "acme.example" });
    let err = h.intake.checklist(input(&draft)).await.unwrap_err();
    assert!(matches!(err, IntakeError::Ineligible(Ineligible::NoAccount { .. })), "{err:?}");
}

async fn unknown_lookup_key_or_account_name_is_ineligible_no_account(db: TestDb) {
    let h = harness(db).await;
    let before = h.db.store.row_counts().await.unwrap();
    for entry in [
        json!({ "kind": "forgot_username", "lookup": "domain", "value": "nobody.example" }),
        json!({ "kind": "forgot_username", "lookup": "email_domain", "value": "nobody.example" }),
        json!({ "kind": "forgot_password", "account": "nobody" }),
    ] {
        let mut draft = enterprise_draft();
        draft["entry_point"] = entry.clone();
        let err = h.submit(&draft).await.unwrap_err();
        let IntakeError::Ineligible(Ineligible::NoAccount { what }) = &err else {
            panic!("{entry}: expected NoAccount, got {err:?}")
        };
        assert!(what.contains("nobody"), "{what}");
        assert!(err.to_string().starts_with("cannot appeal: no account matches"), "{err}");
    }
    assert_eq!(h.db.store.row_counts().await.unwrap(), before);
}

/// Screening runs on every submission and every resubmission: an unverified account's
/// appeal, continued in its window, is rejected again in the same commit — it never
/// reaches the reviewers' queue, and cannot be approved into an account change.
async fn an_unverified_account_is_screened_again_on_resubmission_and_never_reaches_a_reviewer(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&unverified_draft()).await.unwrap();
    assert_eq!(out.state, "rejected");
    h.fire(&out.ticket, "notice_delivered", &Actor::system(), &[]).await;
    h.clock.advance(Duration::hours(1));
    let again = h.intake.resubmit(&out.ticket, input(&unverified_draft()), &files(), Some("again")).await.unwrap();
    assert_eq!(
        (again.transition.as_str(), again.state.as_str()),
        ("resubmit", "submitted"),
        "the command's own outcome"
    );
    let screened: Vec<_> = again.also.iter().map(|o| (o.transition.as_str(), o.state.as_str())).collect();
    assert_eq!(screened, [("screen_reject", "rejected")], "screened in the same commit");
    let record = h.record(&out.ticket).await;
    assert_eq!(record.state, "rejected");
    let transitions: Vec<_> = h.db.store.history(&record.id).await.unwrap().into_iter().map(|e| e.transition).collect();
    assert_eq!(transitions, ["submit", "screen_reject", "notice_delivered", "resubmit", "screen_reject"]);
    // A keyed repeat answers as the first did, writing nothing.
    let counts = h.db.store.row_counts().await.unwrap();
    let repeat = h.intake.resubmit(&out.ticket, input(&unverified_draft()), &files(), Some("again")).await.unwrap();
    assert!(repeat.replayed && repeat.also.len() == 1, "{repeat:?}");
    assert_eq!(h.db.store.row_counts().await.unwrap(), counts);
    let err = h.intake.engine().fire(&out.ticket, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap_err();
    assert!(matches!(err, EngineError::Refused(_)), "no reviewer can take it: {err}");
}

async fn unverified_account_is_screened_and_rejected_as_inapplicable_scenario(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&unverified_draft()).await.expect("an unverified account's appeal is received");
    assert_eq!(out.state, "rejected");
    let screening = out.screening.as_deref().expect("screening guidance");
    assert!(screening.starts_with("inapplicable_scenario"), "{screening}");
    assert!(screening.contains("offline"), "the account holds ICP filings: {screening}");
    let record = h.record(&out.ticket).await;
    assert_eq!(record.state, "rejected");
    let history = h.db.store.history(&record.id).await.unwrap();
    let transitions: Vec<_> = history.iter().map(|e| e.transition.as_str()).collect();
    assert_eq!(transitions, ["submit", "screen_reject"]);
    assert!(history[1].reasons[0].starts_with("inapplicable_scenario"), "{:?}", history[1].reasons);
    let sent = common::notifications(h.db.store.as_ref(), &record.id).await;
    let templates: Vec<_> = sent.iter().map(|n| n.template.as_str()).collect();
    assert_eq!(templates, ["appeal_received", "appeal_rejected"], "both in the one commit");
    let progress = h.intake.progress(&out.ticket.to_string(), PHONE).await.unwrap();
    assert_eq!(progress.stage, "rejected");
    assert!(progress.reasons[0].starts_with("inapplicable_scenario"), "{:?}", progress.reasons);
}

async fn new_appeal_while_one_is_submitted_or_under_review_is_refused_naming_the_open_ticket(db: TestDb) {
    let h = harness(db).await;
    let first = h.submit(&enterprise_draft()).await.unwrap();
    for state in ["submitted", "under_review"] {
        if state == "under_review" {
            h.fire(&first.ticket, "claim", &reviewer("ann"), &[]).await;
        }
        let before = h.db.store.row_counts().await.unwrap();
        let err = h.submit(&enterprise_draft()).await.unwrap_err();
        let IntakeError::Engine(EngineError::OpenAppeal { account, ticket, state: open_state }) = &err else {
            panic!("expected OpenAppeal, got {err:?}")
        };
        assert_eq!(
            (account.as_str(), ticket.as_str(), open_state.as_str()),
            ("acme-ops", &*first.ticket.to_string(), state)
        );
        assert!(err.to_string().contains(&first.ticket.to_string()), "{err}");
        assert_eq!(h.db.store.row_counts().await.unwrap(), before, "nothing written while {state}");
        assert_eq!(h.record(&first.ticket).await.state, state, "the open appeal is untouched");
    }
}

async fn submission_refused_for_an_open_appeal_stores_no_documents(db: TestDb) {
    let h = harness(db).await;
    h.submit(&enterprise_draft()).await.unwrap();
    let stored = h.blob_files();
    let mut draft = enterprise_draft();
    draft["documents"][0]["file"] = json!("licence-v2.jpg");
    let err = h.submit(&draft).await.unwrap_err();
    assert!(matches!(err, IntakeError::Engine(EngineError::OpenAppeal { .. })), "{err:?}");
    assert_eq!(h.blob_files(), stored, "the refused submission's new document is not kept");
}

async fn new_appeal_while_one_is_in_its_resubmission_window_supersedes_it(db: TestDb) {
    let h = harness(db).await;
    let first = h.submit(&enterprise_draft()).await.unwrap();
    h.reject_and_deliver(&first.ticket).await;
    assert_eq!(h.record(&first.ticket).await.state, "resubmission_window");
    h.clock.advance(Duration::hours(1));

    let second = h.submit(&enterprise_draft()).await.expect("a new appeal supersedes the waiting one");
    assert_eq!(second.state, "submitted");
    assert_ne!(second.ticket, first.ticket);
    assert_eq!(second.superseded, Some(first.ticket.to_string()));
    let old = h.record(&first.ticket).await;
    assert_eq!((old.state.as_str(), old.outcome.as_deref()), ("closed", Some("superseded")));
    let last = h.db.store.history(&old.id).await.unwrap().pop().unwrap();
    assert_eq!(last.transition, "supersede");
    let timers = h.db.store.timers(Some(&old.id)).await.unwrap();
    assert!(timers.iter().all(|t| t.status != TimerStatus::Armed), "the old window's timers are cancelled: {timers:?}");
    assert_eq!(h.db.store.open_appeal_for("acme-ops").await.unwrap().map(|r| r.ticket), Some(second.ticket));
}

async fn resubmission_one_second_before_the_window_closes_returns_to_submitted_with_a_fresh_sla(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&enterprise_draft()).await.unwrap();
    h.reject_and_deliver(&out.ticket).await;
    let record = h.record(&out.ticket).await;
    let timers = h.db.store.timers(Some(&record.id)).await.unwrap();
    let window = timers.iter().find(|t| t.name == "resubmission_window").expect("window timer");
    assert_eq!(window.due_at, window_deadline());

    h.clock.set(window_deadline() - Duration::seconds(1));
    let mut draft = enterprise_draft();
    draft["documents"][0]["file"] = json!("licence-v2.jpg");
    let done = h.intake.resubmit(&out.ticket, input(&draft), &files(), None).await.expect("inside the window");
    assert_eq!((done.transition.as_str(), done.state.as_str()), ("resubmit", "submitted"));

    let record = h.record(&out.ticket).await;
    assert_eq!(record.state, "submitted");
    let timers = h.db.store.timers(Some(&record.id)).await.unwrap();
    let window = timers.iter().find(|t| t.name == "resubmission_window").unwrap();
    assert_eq!(window.status, TimerStatus::Cancelled);
    let sla: Vec<_> = timers.iter().filter(|t| t.name == "review_sla").collect();
    assert_eq!(sla.len(), 2, "{sla:?}");
    assert_eq!((sla[1].generation, sla[1].status), (2, TimerStatus::Armed));
    // Resubmitted Thursday 12 March late: Fri, Mon, Tue → the end of Tuesday 17 March.
    assert_eq!(sla[1].due_at, common::at("2026-03-18T00:00:00+08:00"));

    let stored = data(&record);
    assert_eq!(stored.draft.documents[0].sha256, Some(sha256(&jpeg("licence, second scan"))));
    assert_eq!(stored.previous_documents.len(), 1, "only the replaced document: {:?}", stored.previous_documents);
    let replaced = &stored.previous_documents[0];
    assert_eq!(replaced.document.kind.as_str(), "business_license");
    assert_eq!(replaced.document.sha256, Some(sha256(&jpeg("licence"))));
    assert_eq!(replaced.replaced_at, window_deadline() - Duration::seconds(1));
    // The earlier version's bytes are still served.
    let blobs = appealflow::adapters::blobs::LocalBlobStore::open(h.blob_dir.path()).unwrap();
    let old = appealflow::adapters::blobs::BlobStore::get(&blobs, &sha256(&jpeg("licence"))).await.unwrap();
    assert_eq!(&old[..], &jpeg("licence")[..]);
}

async fn resubmission_one_second_after_the_window_closed_without_a_timer_poll_is_refused_and_expires(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&enterprise_draft()).await.unwrap();
    h.reject_and_deliver(&out.ticket).await;
    h.clock.set(window_deadline() + Duration::seconds(1));
    // No run_due_timers: the window's expiry has not been acted on yet.
    assert_eq!(h.record(&out.ticket).await.state, "resubmission_window");

    let err = h.intake.resubmit(&out.ticket, input(&enterprise_draft()), &files(), None).await.unwrap_err();
    let IntakeError::NotResubmittable { ticket, why } = &err else { panic!("expected NotResubmittable, got {err:?}") };
    assert_eq!(ticket, &out.ticket.to_string());
    assert!(why.contains("3 calendar days"), "{why}");
    assert!(err.to_string().contains("start a new appeal"), "{err}");
    let record = h.record(&out.ticket).await;
    assert_eq!((record.state.as_str(), record.outcome.as_deref()), ("closed", Some("expired")));
}

async fn resubmission_after_the_window_expired_is_refused_with_start_a_new_appeal(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&enterprise_draft()).await.unwrap();
    h.reject_and_deliver(&out.ticket).await;
    h.clock.set(window_deadline() + Duration::seconds(1));
    let runs = h.intake.engine().run_due_timers(100).await.unwrap();
    assert!(runs.iter().any(|r| r.timer.name == "resubmission_window"), "{runs:?}");
    let before = h.db.store.row_counts().await.unwrap();

    let err = h.intake.resubmit(&out.ticket, input(&enterprise_draft()), &files(), None).await.unwrap_err();
    let IntakeError::NotResubmittable { ticket, why } = &err else { panic!("expected NotResubmittable, got {err:?}") };
    assert_eq!(ticket, &out.ticket.to_string());
    assert!(why.contains("3 calendar days"), "{why}");
    assert!(err.to_string().contains("start a new appeal"), "{err}");
    assert_eq!(h.db.store.row_counts().await.unwrap(), before);
}

async fn new_appeal_after_the_window_expired_is_created_without_superseding(db: TestDb) {
    let h = harness(db).await;
    let first = h.submit(&enterprise_draft()).await.unwrap();
    h.reject_and_deliver(&first.ticket).await;
    h.clock.set(window_deadline() + Duration::seconds(1));
    h.intake.engine().run_due_timers(100).await.unwrap();
    let second = h.submit(&enterprise_draft()).await.expect("an expired appeal does not block a new one");
    assert_eq!((second.state.as_str(), second.superseded.as_deref()), ("submitted", None));
    let old = h.record(&first.ticket).await;
    assert_eq!((old.state.as_str(), old.outcome.as_deref()), ("closed", Some("expired")));
}

async fn new_appeal_after_the_window_closed_without_a_timer_poll_is_created(db: TestDb) {
    let h = harness(db).await;
    let first = h.submit(&enterprise_draft()).await.unwrap();
    h.reject_and_deliver(&first.ticket).await;
    h.clock.set(window_deadline() + Duration::seconds(1));
    let second = h.submit(&enterprise_draft()).await.expect("the expired appeal does not block a new one");
    assert_eq!(second.state, "submitted");
    let old = h.record(&first.ticket).await;
    assert_eq!(old.state, "closed");
    assert!(matches!(old.outcome.as_deref(), Some("expired" | "superseded")), "{:?}", old.outcome);
}

async fn deregistered_enterprise_appeal_is_approved_only_after_the_entity_change_ticket_is_linked(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&deregistered_draft()).await.expect("a complete deregistered-enterprise appeal");
    assert_eq!(out.state, "submitted");
    assert!(data(&h.record(&out.ticket).await).entity_change.required);
    let ann = reviewer("ann");
    h.fire(&out.ticket, "claim", &ann, &[]).await;

    let err = h.intake.engine().fire(&out.ticket, &Fire::new("approve"), &ann, None).await.unwrap_err();
    match &err {
        EngineError::Refused(Refusal::GuardFailed { guard, .. }) => assert_eq!(guard, "entity_change_linked"),
        other => panic!("expected the entity_change_linked guard, got {other:?}"),
    }
    assert_eq!(h.record(&out.ticket).await.state, "under_review");

    let linked = h
        .intake
        .link_entity_change(
            &out.ticket,
            &EntityLink { entity_ticket: "ENT-2026-0001", account: "newco-ops" },
            &ann,
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(linked.state, "under_review");
    let change = data(&h.record(&out.ticket).await).entity_change;
    assert_eq!(change.ticket.as_deref(), Some("ENT-2026-0001"));
    assert_eq!(change.account.as_deref(), Some("newco-ops"));
    assert_eq!(change.linked_by.as_deref(), Some("ann"));

    // Changing the verified entity is high-risk: the approval waits for a second approver.
    let first = h.intake.engine().fire(&out.ticket, &Fire::new("approve"), &ann, None).await.unwrap();
    assert_eq!(first.state, "awaiting_second_approval");
    let approved =
        h.intake.engine().fire(&out.ticket, &Fire::new("confirm_approval"), &reviewer("bo"), None).await.unwrap();
    // It rotates the secure phone too: the change waits out its cooling-off.
    assert_eq!(approved.state, "cooling_off");
}

async fn entity_change_from_an_account_not_verified_as_the_new_company_is_refused(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&deregistered_draft()).await.unwrap();
    let ann = reviewer("ann");
    h.fire(&out.ticket, "claim", &ann, &[]).await;
    let version = h.record(&out.ticket).await.version;
    // Another company; the new company's name but deregistered; an individual of that name.
    for account in ["other-co-ops", "newco-gone", "newco-person"] {
        let err = h
            .intake
            .link_entity_change(&out.ticket, &EntityLink { entity_ticket: "ENT-1", account }, &ann, None, None)
            .await
            .unwrap_err();
        let IntakeError::Refused(msg) = &err else { panic!("{account}: expected Refused, got {err:?}") };
        assert!(msg.contains("not verified as the new company"), "{msg}");
    }
    let err = h
        .intake
        .link_entity_change(
            &out.ticket,
            &EntityLink { entity_ticket: "ENT-1", account: "no-such-account" },
            &ann,
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, IntakeError::Invalid(_)), "{err:?}");
    let record = h.record(&out.ticket).await;
    assert_eq!(record.version, version, "nothing written");
    assert_eq!(data(&record).entity_change.ticket, None);
    let err = h.intake.engine().fire(&out.ticket, &Fire::new("approve"), &ann, None).await.unwrap_err();
    assert!(matches!(err, EngineError::Refused(Refusal::GuardFailed { .. })), "{err:?}");

    // An appeal that does not change the entity has nothing to link.
    let other = h.submit(&enterprise_draft()).await.unwrap();
    h.fire(&other.ticket, "claim", &ann, &[]).await;
    let err = h
        .intake
        .link_entity_change(
            &other.ticket,
            &EntityLink { entity_ticket: "ENT-2", account: "newco-ops" },
            &ann,
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, IntakeError::Refused(_)), "{err:?}");
}

async fn progress_answers_identically_for_an_unknown_ticket_and_a_wrong_phone(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&enterprise_draft()).await.unwrap();
    let ticket = out.ticket.to_string();
    let mut unknown = TicketNumber::generate();
    while unknown == out.ticket {
        unknown = TicketNumber::generate();
    }
    let answers = [
        h.intake.progress(&unknown.to_string(), PHONE).await.unwrap_err(),
        h.intake.progress(&ticket, "13900000000").await.unwrap_err(),
        h.intake.progress(&ticket, "not a phone").await.unwrap_err(),
        h.intake.progress("1234-5678", PHONE).await.unwrap_err(),
    ];
    for err in &answers {
        assert!(matches!(err, IntakeError::NoMatch), "{err:?}");
        assert_eq!(err.to_string(), answers[0].to_string());
    }
    assert_eq!(answers[0].to_string(), "no appeal matches this ticket number and phone number");
    // The right pair, in any accepted spelling, is answered.
    for (t, p) in [(ticket.clone(), PHONE.to_string()), (out.ticket.as_str().to_string(), "+86 138-1234-5678".into())] {
        assert_eq!(h.intake.progress(&t, &p).await.unwrap().stage, "received");
    }
}

async fn progress_reports_each_stage_for_the_right_phone(db: TestDb) {
    let h = harness(db).await;
    let out = h.submit(&enterprise_draft()).await.unwrap();
    let t = out.ticket.to_string();
    let p = h.intake.progress(&t, PHONE).await.unwrap();
    assert_eq!((p.stage.as_str(), p.outcome.as_deref(), p.continue_until.as_deref()), ("received", None, None));
    assert_eq!(p.ticket, t);
    assert!(p.reasons.is_empty() && p.reasons_in_words.is_empty());
    // In the workflow's zone (cn-mainland: Shanghai), with its offset.
    assert_eq!(p.received_at, "2026-03-09T10:00:00+08:00");
    assert_eq!(p.time_zone, "Asia/Shanghai");

    h.clock.advance(Duration::minutes(30));
    h.fire(&out.ticket, "claim", &reviewer("ann"), &[]).await;
    let p = h.intake.progress(&t, PHONE).await.unwrap();
    assert_eq!(p.stage, "under_review");
    assert_eq!(p.updated_at, "2026-03-09T10:30:00+08:00");

    let reasons = ["missing_documents: proof_of_payment", "other: the letter is not stamped"];
    h.fire(&out.ticket, "reject", &reviewer("ann"), &reasons).await;
    let p = h.intake.progress(&t, PHONE).await.unwrap();
    assert_eq!((p.stage.as_str(), p.reasons.as_slice()), ("rejected", &reasons.map(String::from)[..]));
    assert_eq!(p.continue_until, None, "the window opens when the notice is delivered");
    // In words, in the draft's language (none given: zh-CN), the document by its name.
    assert_eq!(p.reasons_in_words, ["缺少材料：付款凭证", "the letter is not stamped"]);

    h.fire(&out.ticket, "notice_delivered", &Actor::system(), &[]).await;
    let p = h.intake.progress(&t, PHONE).await.unwrap();
    assert_eq!(p.stage, "rejected");
    assert_eq!(p.reasons, reasons.map(String::from));
    assert_eq!(p.continue_until.as_deref(), Some("2026-03-13T00:00:00+08:00"));

    h.clock.set(window_deadline() + Duration::seconds(1));
    h.intake.engine().run_due_timers(100).await.unwrap();
    let p = h.intake.progress(&t, PHONE).await.unwrap();
    assert_eq!((p.stage.as_str(), p.outcome.as_deref()), ("closed", Some("expired")));
    assert_eq!(p.continue_until, None, "{p:?}");
    assert_eq!(p.reasons, reasons.map(String::from), "the reasons stay once the window expired");
    assert_eq!(p.updated_at, "2026-03-13T00:00:01+08:00");
}

async fn malformed_documents_are_refused_naming_kind_and_reason_and_nothing_is_stored(db: TestDb) {
    let h = harness(db).await;
    let before = h.db.store.row_counts().await.unwrap();
    let mut draft = enterprise_draft();
    draft["documents"] = json!([
        { "kind": "business_license", "file": "empty.jpg" },
        { "kind": "enterprise_appeal_letter", "file": "letter.gif", "stamped": true },
        { "kind": "proof_of_payment", "file": "scan.jpg" }
    ]);
    let err = h.submit(&draft).await.unwrap_err();
    let IntakeError::Invalid(problems) = &err else { panic!("expected Invalid, got {err:?}") };
    let got: Vec<(&str, &str)> = problems.iter().map(|p| (p.field.as_str(), p.rule.as_str())).collect();
    assert_eq!(got.len(), 3, "every malformed document at once: {got:?}");
    let expect = [
        ("documents[0]", "business_license: ", "empty"),
        ("documents[1]", "enterprise_appeal_letter: ", "not a JPEG, PNG or PDF"),
        ("documents[2]", "proof_of_payment: ", "named as a JPEG but its content is a PDF"),
    ];
    for ((field, rule), (want_field, kind, reason)) in got.iter().zip(expect) {
        assert_eq!(*field, want_field);
        assert!(rule.starts_with(kind) && rule.contains(reason), "{field}: {rule}");
    }
    assert_eq!(h.db.store.row_counts().await.unwrap(), before);
    assert!(h.blob_files().is_empty(), "no document stored: {:?}", h.blob_files());

    // The applicant's file_name is judged like the path's name: a PDF called scan.jpg.
    let mut draft = enterprise_draft();
    draft["documents"][2] = json!({ "kind": "proof_of_payment", "file": "letter.pdf", "file_name": "scan.jpg" });
    let err = h.submit(&draft).await.unwrap_err();
    let IntakeError::Invalid(problems) = &err else { panic!("expected Invalid, got {err:?}") };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].rule.starts_with("proof_of_payment: the file is named as a JPEG"), "{}", problems[0].rule);
    assert_eq!(h.db.store.row_counts().await.unwrap(), before);
}

async fn document_over_the_configured_size_limit_is_refused(db: TestDb) {
    // A real image exactly at the limit, and one byte more (refused by size before it
    // is ever decoded).
    let mut source = files();
    let fits = source.0.values().max_by_key(|f| f.len()).expect("example files").clone();
    let limit = fits.len() as u64;
    let h = harness_with(db, DocumentLimits { max_bytes: limit, ..DocumentLimits::default() }).await;
    let before = h.db.store.row_counts().await.unwrap();
    source.0.insert("big-scan".into(), [fits.clone(), vec![0]].concat());
    source.0.insert("just-fits-scan".into(), fits);
    let mut draft = enterprise_draft();
    draft["documents"][0]["file"] = json!("big-scan");
    let err = h.intake.submit(input(&draft), &source, None).await.unwrap_err();
    let IntakeError::Invalid(problems) = &err else { panic!("expected Invalid, got {err:?}") };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field, "documents[0]");
    let rule = &problems[0].rule;
    let expected = format!("business_license: the file is {} bytes; the limit is {limit} bytes", limit + 1);
    assert!(rule.starts_with(&expected), "{rule} / {expected}");
    assert_eq!(h.db.store.row_counts().await.unwrap(), before);
    assert!(h.blob_files().is_empty());

    draft["documents"][0]["file"] = json!("just-fits-scan");
    let out = h.intake.submit(input(&draft), &source, None).await.expect("a file at the limit is accepted");
    assert_eq!(out.state, "submitted");
}
