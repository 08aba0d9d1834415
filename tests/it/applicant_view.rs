//! What the applicant sees, on SQLite and on PostgreSQL with the production worker on a
//! manual clock: the progress answer's times in the workflow's time zone, the rejection
//! reasons in words in the applicant's language (progress and notices), the reasons kept
//! once the window expired and dropped after a later approval, and the checklist flagging
//! every local file submission would refuse.

use crate::common;

use appealflow::app::intake::{IntakeError, LocalFiles};
use appealflow::domain::document::sample::{jpeg, png};
use appealflow::domain::draft::DraftInput;
use appealflow::store::NotificationStatus;
use serde_json::json;

use crate::common::TestDb;
use crate::worker::{draft, harness};

on_both_backends!(
    rejection_reasons_stay_in_words_and_in_the_workflows_zone_after_the_window_expires,
    a_later_approval_drops_the_earlier_rejections_reasons,
    the_rejection_notice_names_the_documents_in_the_applicants_language,
    checklist_with_files_lists_every_document_submission_would_refuse,
);

const PHONE: &str = "13812345678";

async fn rejection_reasons_stay_in_words_and_in_the_workflows_zone_after_the_window_expires(db: TestDb) {
    let h = harness(db).await;
    let t = h.submit("draft-individual.json", |v| v["locale"] = json!("en-US")).await;
    h.fire(&t, "claim", &[]).await;
    let reasons = ["documents_not_meeting_requirements: supplementary", "other: the photo is blurred"];
    h.fire(&t, "reject", &reasons).await;
    // The notice goes out, the window opens and expires: the worker does it all.
    h.run_until("2026-03-13T00:00:00+08:00").await;
    let record = h.record(&t).await;
    assert_eq!((record.state.as_str(), record.outcome.as_deref()), ("closed", Some("expired")));

    let p = h.intake.progress(&t.to_string(), PHONE).await.unwrap();
    assert_eq!((p.stage.as_str(), p.outcome.as_deref()), ("closed", Some("expired")));
    assert_eq!(p.reasons, reasons, "the codes, for machines");
    assert_eq!(
        p.reasons_in_words,
        ["Documents do not meet the requirements: Supplementary document", "the photo is blurred"],
        "the words, in the draft's language (en-US read as en)"
    );
    assert_eq!(p.time_zone, "Asia/Shanghai");
    assert_eq!(p.received_at, "2026-03-09T10:00:00+08:00");
    assert_eq!(p.updated_at, "2026-03-13T00:00:00+08:00");
    assert_eq!(p.continue_until, None);
}

async fn a_later_approval_drops_the_earlier_rejections_reasons(db: TestDb) {
    let h = harness(db).await;
    let t = h.submit("draft-individual.json", |_| {}).await;
    h.fire(&t, "claim", &[]).await;
    h.fire(&t, "reject", &["missing_documents: supplementary"]).await;
    h.run_until("2026-03-09T10:00:00+08:00").await;
    let p = h.intake.progress(&t.to_string(), PHONE).await.unwrap();
    assert_eq!((p.stage.as_str(), p.continue_until.as_deref()), ("rejected", Some("2026-03-13T00:00:00+08:00")));
    assert_eq!(p.reasons_in_words, ["缺少材料：补充材料"]);

    let files = LocalFiles { base: common::examples() };
    h.intake.resubmit(&t, draft("draft-individual.json", |_| {}), &files, None).await.unwrap();
    let p = h.intake.progress(&t.to_string(), PHONE).await.unwrap();
    assert_eq!(p.stage, "received");
    assert_eq!(p.reasons, ["missing_documents: supplementary"], "the latest decision is still that rejection");

    h.fire(&t, "claim", &[]).await;
    h.fire(&t, "approve", &[]).await;
    let p = h.intake.progress(&t.to_string(), PHONE).await.unwrap();
    assert!(p.reasons.is_empty() && p.reasons_in_words.is_empty(), "approved since: {p:?}");
}

async fn the_rejection_notice_names_the_documents_in_the_applicants_language(db: TestDb) {
    let h = harness(db).await;
    let en = h.submit("draft-individual.json", |v| v["locale"] = json!("en")).await;
    h.fire(&en, "claim", &[]).await;
    h.fire(&en, "reject", &["documents_not_meeting_requirements: supplementary"]).await;
    h.run_until("2026-03-09T10:00:00+08:00").await;
    let notices: Vec<_> = h.notifications(&en).await.into_iter().filter(|n| n.template == "appeal_rejected").collect();
    // SMS first (sent); the email of the chain is rendered too, then skipped.
    assert_eq!(notices.first().map(|n| (n.channel.as_str(), n.status)), Some(("sms", NotificationStatus::Sent)));
    for n in &notices {
        assert_eq!(n.locale, "en");
        assert!(
            n.body.contains("Documents do not meet the requirements: Supplementary document"),
            "{}: {}",
            n.channel,
            n.body
        );
        assert!(!n.body.contains("documents_not_meeting_requirements"), "no codes: {}", n.body);
        assert!(n.body.contains("2026-03-13 00:00 +08:00"), "the deadline in the workflow's zone: {}", n.body);
    }
}

/// `examples/draft-individual.json` (no documents needed) with these `file` documents.
fn with_documents(documents: serde_json::Value) -> DraftInput {
    draft("draft-individual.json", |v| v["documents"] = documents)
}

async fn checklist_with_files_lists_every_document_submission_would_refuse(db: TestDb) {
    let h = harness(db).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fine.png"), png("a fine scan")).unwrap();
    std::fs::write(dir.path().join("empty.jpg"), b"").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"some words").unwrap();
    let limit = h.intake.limits().max_bytes as usize;
    std::fs::write(dir.path().join("huge.jpg"), [jpeg("big"), vec![0; limit]].concat()).unwrap();
    let files = LocalFiles { base: dir.path().to_path_buf() };
    let doc = |file: &str| json!({ "kind": "supplementary", "file": file });
    let bad =
        with_documents(json!([doc("fine.png"), doc("empty.jpg"), doc("notes.txt"), doc("huge.jpg"), doc("gone.pdf")]));
    let before = h.db.store.row_counts().await.unwrap();

    let checklist = h.intake.checklist_with_files(bad.clone(), &files).await.unwrap();
    assert!(!checklist.ready());
    let got: Vec<(&str, &str)> = checklist.problems.iter().map(|p| (p.field.as_str(), p.rule.as_str())).collect();
    let expect = [
        ("documents[1]", "supplementary: the file is empty"),
        ("documents[2]", "supplementary: the file is not a JPEG, PNG or PDF"),
        ("documents[3]", "supplementary: the file is "),
        ("documents[4].file", "supplementary: cannot read \"gone.pdf\""),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for ((field, rule), (want_field, want_rule)) in got.iter().zip(expect) {
        assert_eq!(*field, want_field, "{rule}");
        assert!(rule.starts_with(want_rule), "{field}: {rule} / {want_rule}");
    }
    assert!(got[2].1.contains("; the limit is "), "{}", got[2].1);
    // Exactly what submission refuses, and neither stores anything.
    let draft = h.intake.parse(bad.clone()).unwrap();
    assert_eq!(h.intake.document_problems(&draft, &files).await.unwrap(), checklist.problems);
    let refused = h.intake.submit(bad, &files, None).await.unwrap_err();
    let IntakeError::Invalid(problems) = &refused else { panic!("expected Invalid, got {refused:?}") };
    assert_eq!(problems, &checklist.problems);
    assert_eq!(h.db.store.row_counts().await.unwrap(), before);

    let good = with_documents(json!([doc("fine.png")]));
    let checklist = h.intake.checklist_with_files(good, &files).await.unwrap();
    assert!(checklist.ready(), "{:?}", checklist.problems);
}
