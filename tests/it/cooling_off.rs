//! Cooling-off before a secure-phone rotation: the shipped workflow's approvals that
//! rotate the secure phone wait 24 hours, a "not you?" notice with a one-time code goes
//! to the account's current secure phone and security email, and whoever holds the code
//! may stop the change — through the real HTTP API on SQLite and PostgreSQL — and
//! `workflow check` refuses a definition whose cooling-off parts do not fit together.

use crate::common::TestDb;
use crate::http_staff::{Harness, Kind, ann, harness};
use crate::workflow_definitions::{assert_problem, named, refused_edit, strings};
use appealflow::domain::{Actor, Role, TicketNumber};
use appealflow::engine::Clock;
use appealflow::store::{NotificationRecord, TimerStatus, WorkFilter};
use serde_json::{Value, json};

on_both_backends!(
    a_phone_rotation_waits_out_its_cooling_off_and_the_account_holder_may_stop_it,
    guessing_stop_codes_is_limited_per_client_and_ticket,
    a_change_without_a_phone_rotation_applies_at_once,
    a_dispute_stays_with_the_account_in_a_new_appeal,
);

fn path(t: &TicketNumber, action: &str) -> String {
    format!("/v1/appeals/{}/{action}", t.as_str())
}

impl Harness {
    async fn stop(&self, ticket: &str, code: &str) -> crate::http_staff::Reply {
        // Public: no token.
        self.send("POST", "/v1/stop-change", None, Some(&json!({ "ticket": ticket, "code": code })), &[]).await
    }

    async fn notices(&self, t: &TicketNumber, template: &str) -> Vec<NotificationRecord> {
        let id = self.record(t).await.id;
        let filter = WorkFilter { appeal_id: Some(id), ..Default::default() };
        let all = self.db.store.notifications(&filter).await.unwrap();
        all.into_iter().filter(|n| n.template == template).collect()
    }

    /// The code in the latest "not you?" SMS: what the account holder reads.
    async fn stop_code(&self, t: &TicketNumber) -> String {
        let sms = self.notices(t, "change_pending").await.into_iter().rfind(|n| n.channel == "sms");
        let body = sms.expect("a \"not you?\" SMS").body;
        let code = body.split(|c: char| !c.is_ascii_digit()).find(|run| run.len() == 8);
        code.unwrap_or_else(|| panic!("no 8-digit code in {body:?}")).to_string()
    }

    async fn detail_of(&self, t: &TicketNumber) -> Value {
        let reply = self.get(&format!("/v1/appeals/{}", t.as_str()), &self.tokens.lee).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    async fn armed(&self, t: &TicketNumber, timer: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        let id = self.record(t).await.id;
        let timers = self.db.store.timers(Some(&id)).await.unwrap();
        timers.iter().find(|r| r.name == timer && r.status == TimerStatus::Armed).map(|r| r.due_at)
    }
}

async fn a_phone_rotation_waits_out_its_cooling_off_and_the_account_holder_may_stop_it(db: TestDb) {
    let h = harness(db).await;
    // An individual's password reset rotates the secure phone: one approver, a cooling-off.
    let t = h.held_by_ann(Kind::Individual).await;
    let approved = h.post(&path(&t, "approve"), &h.tokens.ann, None, &[]).await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    assert_eq!(approved.json()["state"], "cooling_off");
    let entered = h.clock.now();
    assert_eq!(h.armed(&t, "cooling_off").await, Some(entered + chrono::Duration::hours(24)));
    let d = h.detail_of(&t).await;
    assert_eq!(d["pending_change"]["change"], "rotates the secure phone");
    assert_eq!(d["pending_change"]["approved_by"], "ann");
    assert_eq!(d["actions"], json!([]), "nothing is applied during the cooling-off");
    assert!(!d.to_string().contains("code_hash") && !d.to_string().contains("salt"), "{d}");
    let progress = h.state.intake.progress(t.as_str(), "13812345678").await.unwrap();
    assert_eq!(progress.stage, "approved");

    // The notice goes to the account's current secure phone and security email (wangwu
    // has a secure phone only), not to the applicant's contact phone.
    h.drain().await;
    let notices = h.notices(&t, "change_pending").await;
    let to: Vec<(&str, &str)> = notices.iter().map(|n| (n.channel.as_str(), n.recipient.as_str())).collect();
    assert_eq!(to, [("sms", "+8613900002222")], "{notices:#?}");
    let code = h.stop_code(&t).await;
    assert!(notices[0].body.contains(&t.to_string()), "{}", notices[0].body);
    // The code is in the notice only: not in the appeal's record, its events or the API.
    let record = h.record(&t).await;
    assert!(!record.data.to_string().contains(&code), "the record holds the code");
    for e in h.events(&t).await {
        assert!(!e.payload.to_string().contains(&code), "event {} holds the code", e.transition);
    }
    assert!(!h.detail_of(&t).await.to_string().contains(&code));

    // A wrong code, an unknown ticket and a malformed one get one answer; nothing changes.
    let version = record.version;
    let wrong = if code == "12345678" { "87654321" } else { "12345678" };
    let refused = h.stop(t.as_str(), wrong).await.problem(404);
    assert_eq!(refused["detail"], "no pending change matches this ticket number and stop code", "{refused}");
    let unknown = h.stop("0000-0000-0000-0000-0000", &code).await.problem(404);
    assert_eq!(unknown["detail"], refused["detail"]);
    assert_eq!(h.stop("not a ticket", &code).await.problem(404)["detail"], refused["detail"]);
    let missing = h.send("POST", "/v1/stop-change", None, Some(&json!({ "ticket": t.as_str() })), &[]).await;
    let missing = missing.problem(422);
    assert!(missing.to_string().contains("code"), "{missing}");
    assert_eq!(h.record(&t).await.version, version);

    // The right code, typed with a space, stops it: back in the queue, flagged disputed.
    let spaced = format!("{} {}", &code[..4], &code[4..]);
    let stopped = h.stop(t.as_str(), &spaced).await;
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    assert_eq!(stopped.json(), json!({ "ticket": t.to_string(), "state": "submitted", "disputed": true }));
    assert_eq!(h.stop(t.as_str(), &code).await.status, 404, "the code works once");
    let d = h.detail_of(&t).await;
    assert_eq!(d["state"], "submitted");
    assert_eq!(d["pending_change"], Value::Null);
    assert_eq!(d["disputed"]["change"], "rotates the secure phone");
    assert_eq!(d["disputed"]["approved_by"], "ann");
    assert_eq!(d["actions"], json!([]));
    assert!(h.armed(&t, "cooling_off").await.is_none(), "the cooling-off timer is cancelled");
    assert!(h.armed(&t, "review_sla").await.is_some(), "a new review SLA runs");
    let stop = h.events(&t).await.into_iter().last().unwrap();
    assert_eq!((stop.transition.as_str(), stop.actor.as_str()), ("stop_change", "account holder"));
    let queued = h.get("/v1/queue?state=submitted", &h.tokens.bob).await.json();
    assert!(queued["items"].as_array().unwrap().iter().any(|i| i["ticket"] == t.to_string()), "{queued}");
    // The leads are alerted.
    h.drain().await;
    let alerts = h.notices(&t, "change_disputed").await;
    assert_eq!(alerts.iter().map(|n| n.recipient.as_str()).collect::<Vec<_>>(), ["leads@example.com"]);
    assert!(
        alerts[0].body.contains("rotates the secure phone") && alerts[0].body.contains("ann"),
        "{}",
        alerts[0].body
    );

    // Approving a disputed appeal again needs a second approver, and a new cooling-off
    // with a new code; the old code stops nothing.
    h.fire(&t, "claim", &ann(), &[]).await;
    let again = h.post(&path(&t, "approve"), &h.tokens.ann, None, &[]).await;
    assert_eq!(again.json()["state"], "awaiting_second_approval", "{}", again.text());
    assert_eq!(
        h.detail_of(&t).await["first_approval"]["rule"],
        "approves again an appeal whose account holder stopped an earlier approval"
    );

    let confirmed = h.post(&path(&t, "confirm-approval"), &h.tokens.bob, None, &[]).await;
    assert_eq!(confirmed.json()["state"], "cooling_off", "{}", confirmed.text());
    h.drain().await;
    let second_code = h.stop_code(&t).await;
    assert_ne!(second_code, code);
    assert_eq!(h.stop(t.as_str(), &code).await.status, 404, "a spent code stops nothing");
    assert_eq!(h.detail_of(&t).await["pending_change"]["approved_by"], "bob");

    // Nobody stops it: 24 hours later the change applies and the appeal closes.
    let due = h.armed(&t, "cooling_off").await.unwrap();
    h.clock.set(due - chrono::Duration::seconds(1));
    h.drain().await;
    assert_eq!(h.record(&t).await.state, "cooling_off", "not a second early");
    h.clock.set(due + chrono::Duration::seconds(1));
    h.drain().await;
    let d = h.detail_of(&t).await;
    assert_eq!((d["state"].as_str(), d["outcome"].as_str()), (Some("closed"), Some("completed")), "{d}");
    let account = h.db.store.account(&record.account).await.unwrap().unwrap();
    assert_eq!(account.security.secure_phone.unwrap().as_e164(), "+8613812345678");
    assert_eq!(h.stop(t.as_str(), &second_code).await.status, 404, "nothing is pending any more");
    let history: Vec<String> =
        d["history"].as_array().unwrap().iter().map(|e| e["transition"].as_str().unwrap().into()).collect();
    let tail: Vec<&str> = history.iter().map(String::as_str).skip_while(|t| *t != "cooling_off_elapsed").collect();
    assert_eq!(tail.first(), Some(&"cooling_off_elapsed"), "{history:?}");
    assert_eq!(tail.last(), Some(&"complete"), "{history:?}");
    // The disputed flag stays.
    assert_eq!(d["disputed"]["approved_by"], "ann");
}

async fn guessing_stop_codes_is_limited_per_client_and_ticket(db: TestDb) {
    let h = harness(db).await;
    let t = h.held_by_ann(Kind::Individual).await;
    h.fire(&t, "approve", &ann(), &[]).await;
    let policy = appealflow::app::limits::ProgressPolicy::default();
    let wrong = ["11111111", "22222222", "33333333", "44444444", "55555555", "66666666"];
    for (i, code) in wrong.iter().enumerate().take(policy.per_client_failures.hits as usize) {
        assert_eq!(h.stop(t.as_str(), code).await.status, 404, "guess {i}");
    }
    let limited = h.stop(t.as_str(), wrong[5]).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.headers.get("retry-after").is_some());
    assert_eq!(h.record(&t).await.state, "cooling_off", "guessing stopped nothing");
    // The progress query's own budget is untouched by stop guesses.
    assert!(h.state.progress_query("127.0.0.1".parse().unwrap(), t.as_str(), "13812345678").await.is_ok());
}

async fn a_change_without_a_phone_rotation_applies_at_once(db: TestDb) {
    let h = harness(db).await;
    // "Other" only: a manual task, no secure phone: no cooling-off, nothing to stop.
    let t = h.held_by_ann(Kind::Other).await;
    let approved = h.post(&path(&t, "approve"), &h.tokens.ann, None, &[]).await;
    assert_eq!(approved.json()["state"], "approved", "{}", approved.text());
    h.drain().await;
    assert!(h.notices(&t, "change_pending").await.is_empty());
    assert_eq!(h.stop(t.as_str(), "12345678").await.status, 404);
    // An admin may still withdraw a cooling-off appeal (the applicant too).
    let w = h.held_by_ann(Kind::Individual).await;
    h.fire(&w, "approve", &ann(), &[]).await;
    h.fire(&w, "withdraw", &Actor::new("ada", Role::Admin), &[]).await;
    let r = h.record(&w).await;
    assert_eq!((r.state.as_str(), r.outcome.as_deref()), ("closed", Some("withdrawn")));
    assert!(h.armed(&w, "cooling_off").await.is_none());
    assert!(r.data.get("pending_change").is_none(), "a change no longer pending is dropped: {}", r.data);
}

async fn a_dispute_stays_with_the_account_in_a_new_appeal(db: TestDb) {
    let h = harness(db).await;
    let draft = h.fresh_draft(Kind::Individual).await;
    let files = appealflow::app::intake::LocalFiles { base: crate::common::examples() };
    let t = h.state.intake.submit(draft.clone(), &files, None).await.unwrap().ticket;
    h.fire(&t, "claim", &ann(), &[]).await;
    h.fire(&t, "approve", &ann(), &[]).await;
    h.drain().await;
    let code = h.stop_code(&t).await;
    assert_eq!(h.stop(t.as_str(), &code).await.status, 200);
    // The applicant withdraws and starts again: the new appeal is flagged as the old was,
    // so its approval needs a second approver who did not approve the stopped change.
    h.fire(&t, "withdraw", &Actor::new("applicant", Role::Applicant), &[]).await;
    let again = h.state.intake.submit(draft, &files, None).await.unwrap().ticket;
    assert_ne!(again, t);
    let d = h.detail_of(&again).await;
    assert_eq!(d["disputed"]["approved_by"], "ann", "{d}");
    h.fire(&again, "claim", &Actor::new("bob", Role::Reviewer), &[]).await;
    let first = h.post(&path(&again, "approve"), &h.tokens.bob, None, &[]).await;
    assert_eq!(first.json()["state"], "awaiting_second_approval", "{}", first.text());
    let stopped_approver = h.post(&path(&again, "confirm-approval"), &h.tokens.ann, None, &[]).await.problem(403);
    assert!(stopped_approver["detail"].as_str().unwrap().contains("approved the change the account holder stopped"));
    let lead = h.post(&path(&again, "confirm-approval"), &h.tokens.lee, None, &[]).await;
    assert_eq!(lead.json()["state"], "cooling_off", "{}", lead.text());
}

fn effect_notify_leads() -> toml::Value {
    toml::Value::Table(
        [
            ("effect".to_string(), toml::Value::String("notify".into())),
            ("template".to_string(), toml::Value::String("change_disputed".into())),
            ("to".to_string(), toml::Value::String("leads".into())),
        ]
        .into_iter()
        .collect(),
    )
}

#[test]
fn workflow_check_refuses_cooling_off_parts_that_do_not_fit() {
    let problems = refused_edit(|t| {
        t.get_mut("bindings").and_then(toml::Value::as_table_mut).unwrap().remove("stop_change");
    });
    assert_problem(&problems, "bindings.stop_change", &["required", "cooling_off"]);

    let problems = refused_edit(|t| {
        let c = named(t, "transitions", "approve").get_mut("cooling_off").unwrap().as_table_mut().unwrap();
        c.insert("to".into(), "limbo".into());
    });
    assert_problem(&problems, "transitions.approve", &["`cooling_off.to`", "unknown state \"limbo\""]);

    let problems = refused_edit(|t| {
        let c = named(t, "transitions", "approve").get_mut("cooling_off").unwrap().as_table_mut().unwrap();
        c.insert("to".into(), "awaiting_second_approval".into());
    });
    assert_problem(&problems, "transitions.approve", &["also where approvals wait for a second approval"]);

    let problems = refused_edit(|t| {
        let c = named(t, "transitions", "approve").get_mut("cooling_off").unwrap().as_table_mut().unwrap();
        c.insert("when".into(), toml::Value::Array(vec![]));
    });
    assert_problem(&problems, "transitions.approve", &["`cooling_off.when`", "at least one rule"]);

    let problems = refused_edit(|t| {
        named(t, "transitions", "approve").insert("effects".into(), toml::Value::Array(vec![effect_notify_leads()]));
    });
    assert_problem(&problems, "transitions.approve", &["`cooling_off`", "no `effects` of its own"]);

    // A second approval must not skip the cooling-off.
    let problems = refused_edit(|t| {
        named(t, "transitions", "confirm_approval").remove("cooling_off");
    });
    assert_problem(&problems, "bindings.confirm_approval", &["must carry `cooling_off`", "\"approve\""]);

    // The same state may not both hold a second approval and a cooling-off.
    let problems = refused_edit(|t| {
        let sa = named(t, "transitions", "approve").get_mut("second_approval").unwrap().as_table_mut().unwrap();
        sa.insert("to".into(), "cooling_off".into());
    });
    assert_problem(&problems, "transitions.approve", &["also where approvals wait for a second approval"]);

    let problems = refused_edit(|t| {
        named(t, "states", "cooling_off").insert("on_enter".into(), toml::Value::Array(vec![]));
    });
    assert_problem(&problems, "states.cooling_off", &["must notify `security_contacts`"]);

    let problems = refused_edit(|t| {
        let stop = named(t, "transitions", "stop_change");
        stop.insert("roles".into(), strings(&["admin"]));
        stop.remove("disputes");
    });
    assert_problem(&problems, "bindings.stop_change", &["`applicant` role"]);
    assert_problem(&problems, "bindings.stop_change", &["`disputes = true`"]);

    // Without the timer, a cooling-off would never end.
    let problems = refused_edit(|t| {
        named(t, "timers", "cooling_off").insert(
            "fires".into(),
            toml::Value::Table(
                [("event".to_string(), toml::Value::String("cooling_off_ended".into()))].into_iter().collect(),
            ),
        );
    });
    assert_problem(&problems, "states.cooling_off", &["needs a timer", "\"approved\""]);

    let problems = refused_edit(|t| {
        named(t, "transitions", "stop_change").insert("guards".into(), strings(&[]));
    });
    assert_problem(&problems, "bindings.stop_change", &["must carry the `stop_code` guard"]);

    let problems = refused_edit(|t| {
        named(t, "transitions", "stop_change").insert("to".into(), "approved".into());
    });
    assert_problem(&problems, "bindings.stop_change", &["must not enter \"approved\""]);

    // Only the route enters a cooling-off (it records the pending change and its code).
    let problems = refused_edit(|t| {
        named(t, "transitions", "link_entity_change").insert("to".into(), "cooling_off".into());
    });
    assert_problem(&problems, "transitions.link_entity_change", &["where only a `cooling_off` may lead"]);

    let problems = refused_edit(|t| {
        let g = named(t, "transitions", "send_back").get_mut("guards").unwrap().as_array_mut().unwrap();
        g.push("stop_code".into());
    });
    assert_problem(&problems, "transitions.send_back", &["`stop_code` guard", "only from cooling-off states"]);

    let problems = refused_edit(|t| {
        let c = named(t, "transitions", "approve").get_mut("cooling_off").unwrap().as_table_mut().unwrap();
        c.insert(
            "when".into(),
            toml::Value::Array(vec![toml::Value::Table(
                [("all".to_string(), strings(&["full_moon"]))].into_iter().collect(),
            )]),
        );
    });
    assert_problem(&problems, "transitions.approve", &["unknown risk fact \"full_moon\""]);
}
