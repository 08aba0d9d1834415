//! Four-eyes approval: the shipped workflow's high-risk approvals (an enterprise's secure
//! phone, a new verified entity) wait for a second, different staff member — through the
//! real HTTP API on SQLite and PostgreSQL — and `workflow check` refuses a definition
//! whose four-eyes parts do not fit together.

use crate::common::{TestDb, at};
use crate::http_staff::{Harness, Kind, ann, harness};
use crate::workflow_definitions::{assert_problem, named, refused_edit, strings};
use appealflow::domain::{Actor, Role, TicketNumber};
use appealflow::engine::Clock;
use appealflow::store::TimerStatus;
use serde_json::{Value, json};

on_both_backends!(
    a_high_risk_approval_waits_for_a_second_staff_member_who_confirms_or_sends_it_back,
    an_approval_that_is_not_high_risk_needs_no_second_approver,
);

fn path(t: &TicketNumber, action: &str) -> String {
    format!("/v1/appeals/{}/{action}", t.as_str())
}

impl Harness {
    async fn detail(&self, t: &TicketNumber) -> Value {
        let reply = self.get(&format!("/v1/appeals/{}", t.as_str()), &self.tokens.lee).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// The armed review SLA's due instant.
    async fn review_due(&self, t: &TicketNumber) -> chrono::DateTime<chrono::Utc> {
        let id = self.record(t).await.id;
        let timers = self.db.store.timers(Some(&id)).await.unwrap();
        timers.iter().find(|r| r.name == "review_sla" && r.status == TimerStatus::Armed).expect("armed").due_at
    }

    fn history(detail: &Value) -> Vec<(String, String, String)> {
        detail["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (s("transition"), s("to"), s("actor"))
            })
            .collect()
    }
}

async fn a_high_risk_approval_waits_for_a_second_staff_member_who_confirms_or_sends_it_back(db: TestDb) {
    let h = harness(db).await;
    let t = h.held_by_ann(Kind::Enterprise).await;
    let due = h.review_due(&t).await;

    // ann approves an enterprise's secure-phone rotation: it waits, nothing is applied.
    let first = h.post(&path(&t, "approve"), &h.tokens.ann, None, &[("if-match", "2")]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["state"], "awaiting_second_approval");
    let d = h.detail(&t).await;
    assert_eq!(d["first_approval"]["by"], "ann");
    assert_eq!(d["first_approval"]["claimer"], "ann");
    assert_eq!(d["first_approval"]["rule"], "rotates the secure phone of an enterprise account");
    assert_eq!(d["assignee"], Value::Null, "nobody holds a claim on a waiting approval");
    assert_eq!(d["actions"], json!([]), "no account action before the second approval");
    assert_eq!(h.review_due(&t).await, due, "the review SLA keeps running, unchanged");
    let progress = h.state.intake.progress(t.as_str(), "13712345678").await.unwrap();
    assert_eq!(progress.stage, "under_review", "the applicant sees it still under review");

    // The queue lists it, by state and in the counts.
    let q = h.get("/v1/queue?state=awaiting_second_approval", &h.tokens.bob).await.json();
    let listed: Vec<&str> = q["items"].as_array().unwrap().iter().map(|i| i["ticket"].as_str().unwrap()).collect();
    assert_eq!(listed, [t.to_string()]);
    let counted = q["counts"].as_array().unwrap().iter().find(|c| c["state"] == "awaiting_second_approval").cloned();
    assert_eq!(counted.unwrap()["count"], 1);

    // ann may not give the second approval, nor send it back; nothing changes. Nor may
    // "ANN " through the engine: names are compared trimmed and case-folded.
    let version = h.record(&t).await.version;
    let shouting = Actor::new("ANN ", Role::Reviewer);
    let refused = h.engine().fire(&t, &appealflow::workflow::Fire::new("confirm_approval"), &shouting, None).await;
    assert!(refused.unwrap_err().to_string().contains("gave the first approval"));
    // A stale version is a conflict, as for every decision.
    let stale = h.post(&path(&t, "confirm-approval"), &h.tokens.bob, None, &[("if-match", "2")]).await.problem(409);
    assert_eq!(stale["version"], version, "{stale}");
    let own = h.post(&path(&t, "confirm-approval"), &h.tokens.ann, None, &[]).await.problem(403);
    assert!(own["detail"].as_str().unwrap().contains("gave the first approval"), "{own}");
    let own = h.post(&path(&t, "send-back"), &h.tokens.ann, Some(&json!({ "reasons": ["no"] })), &[]).await;
    own.problem(403);
    assert_eq!(h.record(&t).await.version, version);

    // bob (a reviewer without a claim) reads what he is asked to confirm; ann no longer may.
    let sha = h.first_sha(&t).await;
    let doc = format!("/v1/appeals/{}/documents/{sha}", t.as_str());
    assert_eq!(h.get(&doc, &h.tokens.bob).await.status, 200);
    assert_eq!(h.get(&doc, &h.tokens.ann).await.status, 403);

    // A send-back needs a reason: refused by field, nothing stored.
    let blank = h.post(&path(&t, "send-back"), &h.tokens.bob, Some(&json!({ "reasons": ["  "] })), &[]).await;
    let problem = blank.problem(422);
    assert!(problem["detail"].as_str().unwrap().contains("reason"), "{problem}");
    assert_eq!(h.record(&t).await.version, version);
    let back = h
        .post(
            &path(&t, "send-back"),
            &h.tokens.bob,
            Some(&json!({ "reasons": ["the stamp is not the company's"] })),
            &[],
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.text());
    assert_eq!(back.json()["state"], "submitted");
    assert_eq!(h.review_due(&t).await, due, "sent back, the same deadline still runs");
    assert_eq!(h.detail(&t).await["first_approval"], Value::Null);

    // Again: ann claims, and a lead approves while ann holds the claim. Neither the
    // approver (lee) nor the claimer (ann) may confirm; bob may.
    h.fire(&t, "claim", &ann(), &[]).await;
    let lee = Actor::new("lee", Role::Lead);
    h.fire(&t, "approve", &lee, &[]).await;
    let d = h.detail(&t).await;
    assert_eq!(
        (d["first_approval"]["by"].as_str(), d["first_approval"]["claimer"].as_str()),
        (Some("lee"), Some("ann"))
    );
    let claimer = h.post(&path(&t, "confirm-approval"), &h.tokens.ann, None, &[]).await.problem(403);
    assert!(claimer["detail"].as_str().unwrap().contains("held the claim"), "{claimer}");
    h.post(&path(&t, "confirm-approval"), &h.tokens.lee, None, &[]).await.problem(403);

    // The SLA breaches while it waits: the leads are told, the appeal stays put.
    h.clock.set(at("2026-03-13T00:00:01+08:00"));
    assert!(h.clock.now() > due);
    h.drain().await;
    let d = h.detail(&t).await;
    assert_eq!(d["state"], "awaiting_second_approval");
    assert!(Harness::history(&d).iter().any(|(tr, to, _)| tr == "sla_breached" && to == "awaiting_second_approval"));

    let confirmed = h.post(&path(&t, "confirm-approval"), &h.tokens.bob, None, &[]).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    // The phone rotation then waits out its cooling-off (tests/it/cooling_off.rs).
    assert_eq!(confirmed.json()["state"], "cooling_off");
    crate::common::pass_cooling_off(h.engine(), &t).await;
    h.drain().await;
    let d = h.detail(&t).await;
    assert_eq!((d["state"].as_str(), d["outcome"].as_str()), (Some("closed"), Some("completed")));
    // The history names every approver, and who sent it back.
    let decisions: Vec<(String, String, String)> = Harness::history(&d)
        .into_iter()
        .filter(|(tr, _, _)| ["approve", "send_back", "confirm_approval"].contains(&tr.as_str()))
        .collect();
    let row = |tr: &str, to: &str, by: &str| (tr.to_string(), to.to_string(), by.to_string());
    assert_eq!(
        decisions,
        [
            row("approve", "awaiting_second_approval", "ann"),
            row("send_back", "submitted", "bob"),
            row("approve", "awaiting_second_approval", "lee"),
            row("confirm_approval", "cooling_off", "bob"),
        ]
    );
    let sent_back = d["history"].as_array().unwrap().iter().find(|e| e["transition"] == "send_back").unwrap();
    assert_eq!(sent_back["reasons"], json!(["the stamp is not the company's"]));
    // The leads were told of each wait and of the send-back.
    let templates: Vec<&str> =
        d["notifications"].as_array().unwrap().iter().map(|n| n["template"].as_str().unwrap()).collect();
    assert_eq!(templates.iter().filter(|t| **t == "second_approval_needed").count(), 2, "{templates:?}");
    assert_eq!(templates.iter().filter(|t| **t == "approval_sent_back").count(), 1, "{templates:?}");
}

async fn an_approval_that_is_not_high_risk_needs_no_second_approver(db: TestDb) {
    let h = harness(db).await;
    // An individual's secure phone: one approval is enough.
    let t = h.held_by_ann(Kind::Individual).await;
    let approved = h.post(&path(&t, "approve"), &h.tokens.ann, None, &[]).await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    assert_eq!(approved.json()["state"], "cooling_off", "no second approval; the phone rotation cools off");
    // There is nothing to confirm: the route answers the state it is in.
    let late = h.post(&path(&t, "confirm-approval"), &h.tokens.bob, None, &[]).await.problem(409);
    assert_eq!(late["state"], "cooling_off", "{late}");
}

#[test]
fn workflow_check_refuses_four_eyes_parts_that_do_not_fit() {
    let problems = refused_edit(|t| {
        t.get_mut("bindings").and_then(toml::Value::as_table_mut).unwrap().remove("confirm_approval");
    });
    assert_problem(&problems, "bindings.confirm_approval", &["required", "second_approval"]);

    let problems = refused_edit(|t| {
        let sa = named(t, "transitions", "approve").get_mut("second_approval").unwrap().as_table_mut().unwrap();
        sa.insert("to".into(), "under_review".into());
    });
    assert_problem(&problems, "transitions.approve", &["`second_approval.to`", "neither terminal nor held"]);

    let problems = refused_edit(|t| {
        let sa = named(t, "transitions", "approve").get_mut("second_approval").unwrap().as_table_mut().unwrap();
        sa.insert("to".into(), "limbo".into());
    });
    assert_problem(&problems, "transitions.approve", &["unknown state \"limbo\""]);

    let problems = refused_edit(|t| {
        let sa = named(t, "transitions", "approve").get_mut("second_approval").unwrap().as_table_mut().unwrap();
        let rules = sa.get_mut("when").unwrap().as_array_mut().unwrap();
        rules[0].as_table_mut().unwrap().insert("all".into(), strings(&["enterprise_account", "is_vip"]));
    });
    assert_problem(&problems, "transitions.approve", &["unknown risk fact \"is_vip\"", "enterprise_account"]);

    let problems = refused_edit(|t| {
        let sa = named(t, "transitions", "approve").get_mut("second_approval").unwrap().as_table_mut().unwrap();
        sa.insert("when".into(), toml::Value::Array(vec![]));
    });
    assert_problem(&problems, "transitions.approve", &["`second_approval.when`", "at least one rule"]);

    let problems = refused_edit(|t| {
        named(t, "transitions", "send_back").insert("guards".into(), strings(&["four_eyes"]));
    });
    assert_problem(&problems, "bindings.send_back", &["must ask for a reason"]);

    let problems = refused_edit(|t| {
        named(t, "transitions", "confirm_approval").insert("guards".into(), strings(&["entity_change_linked"]));
    });
    assert_problem(&problems, "bindings.confirm_approval", &["four_eyes"]);

    let problems = refused_edit(|t| {
        named(t, "transitions", "reject")
            .insert("guards".into(), strings(&["holds_claim", "rejection_reasons", "four_eyes"]));
    });
    assert_problem(&problems, "transitions.reject", &["`four_eyes` guard needs"]);

    // Only a first approval enters the waiting state; only staff give a second one.
    let problems = refused_edit(|t| {
        named(t, "transitions", "release").insert("to".into(), "awaiting_second_approval".into());
    });
    assert_problem(&problems, "transitions.release", &["only a `second_approval` may lead"]);
    let problems = refused_edit(|t| {
        named(t, "transitions", "confirm_approval").insert("roles".into(), strings(&["reviewer", "applicant"]));
    });
    assert_problem(&problems, "transitions.confirm_approval", &["the applicant may not give a second approval"]);

    // Without any `second_approval`, the four-eyes bindings act on nothing.
    let problems = refused_edit(|t| {
        named(t, "transitions", "approve").remove("second_approval");
    });
    assert_problem(&problems, "bindings.confirm_approval", &["no transition has a `second_approval`"]);
}
