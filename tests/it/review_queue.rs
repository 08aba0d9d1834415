//! The review queue on SQLite and on PostgreSQL, through `app::review::queue` and the
//! store's `review_queue`: its order (breached first, then by deadline, then appeals
//! without one), each filter, paging, totals and counts per open state, and the appeal
//! row's queue columns following every transition that moves them (claim, release,
//! reject, resubmission, the SLA firing, close) in the commit that causes it.

use crate::common;

use std::sync::Arc;

use crate::common::{TestDb, at};
use appealflow::app::review::{self, AssigneeFilter, QueuePage, QueueQuery};
use appealflow::domain::draft::Scenario;
use appealflow::domain::{Actor, AppealItem, TicketNumber};
use appealflow::engine::{Engine, EngineError, ManualClock, NewAppeal};
use appealflow::store::{QueueFilter, QueueRow};
use appealflow::workflow::Fire;
use serde_json::json;

on_both_backends!(
    queue_lists_breached_first_then_by_deadline_then_appeals_without_one,
    queue_filters_by_item_scenario_and_assignee_and_counts_each_open_state,
    queue_pages_keep_the_order_and_the_total,
    queue_columns_follow_claim_release_reject_resubmit_the_sla_firing_and_close,
    queue_refuses_a_bad_assignee_and_an_unknown_state,
);

struct Harness {
    db: TestDb,
    clock: Arc<ManualClock>,
    engine: Arc<Engine>,
}

fn harness(db: TestDb) -> Harness {
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let engine = common::engine(&db, clock.clone());
    Harness { db, clock, engine }
}

fn appeal(account: &str, items: &[&str], scenario: Option<&str>) -> NewAppeal {
    let mut a = common::request(account);
    a.data["draft"]["items"] = json!(items);
    a.data["draft"]["scenario"] = json!(scenario);
    a
}

impl Harness {
    async fn create(&self, account: &str, items: &[&str], scenario: Option<&str>) -> TicketNumber {
        self.engine.create(&appeal(account, items, scenario), &common::applicant(), None).await.unwrap().ticket
    }

    async fn fire(&self, t: &TicketNumber, transition: &str, actor: &Actor, reasons: &[&str]) {
        let mut cmd = Fire::new(transition);
        cmd.reasons = reasons.iter().map(|r| r.to_string()).collect();
        self.engine.fire(t, &cmd, actor, None).await.unwrap_or_else(|e| panic!("{transition}: {e}"));
    }

    async fn queue(&self, query: QueueQuery) -> QueuePage {
        review::queue(&self.engine, query).await.unwrap()
    }

    /// The appeal's queue row as the store keeps it, read from every open state.
    async fn row(&self, t: &TicketNumber) -> Option<QueueRow> {
        let states = self.engine.workflow().open_states().iter().map(|s| s.to_string()).collect();
        let filter = QueueFilter { states, limit: 1000, ..Default::default() };
        let slice = self.db.store.review_queue(&filter).await.unwrap();
        slice.rows.into_iter().find(|r| &r.ticket == t)
    }
}

fn tickets(page: &QueuePage) -> Vec<String> {
    page.items.iter().map(|i| i.ticket.clone()).collect()
}

fn states(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn count(page: &QueuePage, state: &str) -> i64 {
    page.counts.iter().find(|c| c.state == state).map_or(-1, |c| c.count)
}

async fn queue_lists_breached_first_then_by_deadline_then_appeals_without_one(db: TestDb) {
    let h = harness(db);
    let reviewer = common::reviewer("ann");
    // w: received Monday, approved: no review deadline any more.
    let w = h.create("w", &["reset_password"], None).await;
    h.fire(&w, "claim", &reviewer, &[]).await;
    h.fire(&w, "approve", &reviewer, &[]).await;
    // c arrives Wednesday, b Tuesday, a Monday (later than w): a's deadline passes first.
    h.clock.set(at("2026-03-09T11:00:00+08:00"));
    let a = h.create("a", &["reset_password"], None).await;
    h.clock.set(at("2026-03-11T10:00:00+08:00"));
    let c = h.create("c", &["reset_password"], None).await;
    h.clock.set(at("2026-03-10T10:00:00+08:00"));
    let b = h.create("b", &["reset_password"], None).await;
    // d and e arrive at one instant: one deadline, then oldest first, then by id.
    let d = h.create("d", &["reset_password"], None).await;
    let e = h.create("e", &["reset_password"], None).await;

    // Thursday midday: the start of a's last business day has passed (its warning is
    // due), not its deadline.
    h.clock.set(at("2026-03-12T12:00:00+08:00"));
    let page = h.queue(QueueQuery::default()).await;
    assert_eq!(tickets(&page)[0], a.to_string());
    assert!(!page.items[0].breached && page.items[0].warning, "{:?}", page.items[0]);
    assert!(!page.items[1].warning, "b's last business day has not begun: {:?}", page.items[1]);

    // Saturday: a and the Tuesday ones are past their deadlines; a's SLA timer fires.
    h.clock.set(at("2026-03-14T10:00:00+08:00"));
    h.engine.run_due_timers(100).await.unwrap();
    let everything = QueueQuery { states: states(&["submitted", "under_review", "approved"]), ..Default::default() };
    let page = h.queue(everything).await;
    let mut tied = Vec::new();
    for t in [&b, &d, &e] {
        tied.push((h.db.store.appeal_by_ticket(t).await.unwrap().unwrap().id, t.to_string()));
    }
    tied.sort();
    let tied = tied.into_iter().map(|(_, t)| t);
    let mut expected = vec![a.to_string()];
    expected.extend(tied);
    expected.extend([c.to_string(), w.to_string()]);
    assert_eq!(tickets(&page), expected, "breached, by deadline, then by id at one instant, none last");
    assert!(page.items[0].breached && page.items[0].warning);
    assert!(page.items[1].breached, "past its deadline, its timer not fired yet or fired: {:?}", page.items[1]);
    assert!(!page.items[4].breached, "c is due next Monday: {:?}", page.items[4]);
    assert_eq!(page.items[5].review_due_at, None);
    assert!(!page.items[5].breached && !page.items[5].warning);
    assert_eq!(page.items[5].state, "approved");
    assert_eq!(page.items[0].items, [AppealItem::ResetPassword]);
    assert_eq!(page.items[0].created_at, at("2026-03-09T11:00:00+08:00").to_rfc3339());
    assert_eq!(page.items[0].review_due_at.as_deref(), Some(at("2026-03-13T00:00:00+08:00").to_rfc3339().as_str()));
    let fired = h.row(&a).await.unwrap();
    assert!(fired.review_fired, "the SLA timer fired and the row says so");
}

async fn queue_filters_by_item_scenario_and_assignee_and_counts_each_open_state(db: TestDb) {
    let h = harness(db);
    let ann = common::reviewer("ann");
    let bob = common::reviewer("bob");
    // One deadline for all (the end of Thursday): the queue lists them oldest first.
    let mut made = Vec::new();
    let asked: [(&str, &[&str], Option<&str>); 5] = [
        ("p", &["reset_password", "detach_mfa"], Some("active")),
        ("q", &["detach_mfa"], Some("deregistered")),
        ("r", &["other"], Some("deregistered")),
        ("s", &["clear_ip_logon_mask"], None),
        ("t", &["detach_mfa"], Some("deregistered")),
    ];
    for (i, (account, items, scenario)) in asked.into_iter().enumerate() {
        h.clock.set(common::monday_morning() + chrono::Duration::minutes(i as i64));
        made.push(h.create(account, items, scenario).await);
    }
    let [p, q, r, s, t] = <[TicketNumber; 5]>::try_from(made).unwrap();
    h.fire(&q, "claim", &ann, &[]).await;
    h.fire(&r, "claim", &bob, &[]).await;
    h.fire(&t, "claim", &ann, &[]).await;
    h.fire(&t, "approve", &ann, &[]).await;

    let ask = |item, scenario, assignee| QueueQuery { item, scenario, assignee, ..Default::default() };
    let page = h.queue(ask(Some(AppealItem::DetachMfa), None, AssigneeFilter::Any)).await;
    assert_eq!(tickets(&page), [p.to_string(), q.to_string()]);
    assert_eq!(page.total, 2);
    assert_eq!((count(&page, "submitted"), count(&page, "under_review"), count(&page, "approved")), (1, 1, 1));
    assert_eq!(count(&page, "rejected"), 0, "every open state is counted");
    assert_eq!(page.items[0].items, [AppealItem::ResetPassword, AppealItem::DetachMfa]);
    assert_eq!(page.items[0].scenario, Some(Scenario::Active));

    let page = h.queue(ask(None, Some(Scenario::Deregistered), AssigneeFilter::Any)).await;
    assert_eq!(tickets(&page), [q.to_string(), r.to_string()]);
    assert_eq!(count(&page, "approved"), 1);
    let page = h.queue(ask(None, None, AssigneeFilter::Unclaimed)).await;
    assert_eq!(tickets(&page), [p.to_string(), s.to_string()]);
    assert_eq!(page.items[1].scenario, None);
    assert_eq!(count(&page, "under_review"), 0);
    let page = h.queue(ask(None, None, AssigneeFilter::Named("ann".into()))).await;
    assert_eq!(tickets(&page), [q.to_string()]);
    assert_eq!(count(&page, "approved"), 0, "the approval released ann's claim on t");
    let page = h
        .queue(ask(Some(AppealItem::DetachMfa), Some(Scenario::Deregistered), AssigneeFilter::Named("bob".into())))
        .await;
    assert!(page.items.is_empty() && page.total == 0, "{page:?}");
    let page =
        h.queue(ask(Some(AppealItem::Other), Some(Scenario::Deregistered), AssigneeFilter::Named("bob".into()))).await;
    assert_eq!(tickets(&page), [r.to_string()]);
    // An item name holds `_`, a LIKE wildcard: it matches itself only.
    let page = h.queue(ask(Some(AppealItem::ClearIpLogonMask), None, AssigneeFilter::Any)).await;
    assert_eq!(tickets(&page), [s.to_string()]);
    let page = h.queue(ask(Some(AppealItem::ChangeSecurePhone), None, AssigneeFilter::Any)).await;
    assert!(page.items.is_empty());

    // The state filter narrows the page and the total, never the counts.
    let held = QueueQuery { states: states(&["under_review"]), ..Default::default() };
    let page = h.queue(held).await;
    assert_eq!(tickets(&page), [q.to_string(), r.to_string()]);
    assert_eq!(page.total, 2);
    assert_eq!((count(&page, "submitted"), count(&page, "under_review"), count(&page, "approved")), (2, 2, 1));
    let names: Vec<&str> = page.counts.iter().map(|c| c.state.as_str()).collect();
    assert_eq!(names, h.engine.workflow().open_states());
}

async fn queue_pages_keep_the_order_and_the_total(db: TestDb) {
    let h = harness(db);
    let mut made = Vec::new();
    for i in 0..7 {
        h.clock.set(common::monday_morning() + chrono::Duration::hours(i));
        made.push(h.create(&format!("acct{i}"), &["reset_password"], None).await.to_string());
    }
    let mut seen = Vec::new();
    for page in 1..=4 {
        let got = h.queue(QueueQuery { page, per_page: 3, ..Default::default() }).await;
        assert_eq!(got.total, 7);
        assert_eq!((got.page, got.per_page), (page, 3));
        assert_eq!(count(&got, "submitted"), 7);
        seen.extend(tickets(&got));
    }
    assert_eq!(seen, made, "pages follow one another, each appeal once, the last one short, then none");
    let got = h.queue(QueueQuery { page: 1_000_000, per_page: 100, ..Default::default() }).await;
    assert!(got.items.is_empty() && got.total == 7);
}

async fn queue_columns_follow_claim_release_reject_resubmit_the_sla_firing_and_close(db: TestDb) {
    let h = harness(db);
    let ann = common::reviewer("ann");
    let t = h.create("x", &["reset_password"], Some("active")).await;
    let row = h.row(&t).await.unwrap();
    // Received Monday 10:00: due at the end of Thursday, warned from its start.
    assert_eq!(row.review_due_at, Some(at("2026-03-13T00:00:00+08:00")));
    assert_eq!(row.review_warn_at, Some(at("2026-03-12T00:00:00+08:00")));
    assert!(!row.review_fired);
    assert_eq!(
        (row.items.0.as_slice(), row.scenario.as_deref()),
        ([AppealItem::ResetPassword].as_slice(), Some("active"))
    );

    h.fire(&t, "claim", &ann, &[]).await;
    let row = h.row(&t).await.unwrap();
    assert_eq!((row.state.as_str(), row.assignee.as_deref()), ("under_review", Some("ann")));
    assert_eq!(row.review_due_at, Some(at("2026-03-13T00:00:00+08:00")), "the SLA runs on under review");
    h.fire(&t, "release", &ann, &[]).await;
    let row = h.row(&t).await.unwrap();
    assert_eq!((row.state.as_str(), row.assignee.as_deref()), ("submitted", None));
    assert_eq!(row.review_due_at, Some(at("2026-03-13T00:00:00+08:00")));

    h.fire(&t, "claim", &ann, &[]).await;
    h.fire(&t, "reject", &ann, &["missing_documents: supplementary"]).await;
    let row = h.row(&t).await.unwrap();
    assert_eq!(row.state, "rejected");
    assert_eq!((row.review_due_at, row.review_warn_at, row.review_fired), (None, None, false), "cancelled");
    h.fire(&t, "notice_delivered", &Actor::system(), &[]).await;

    // Resubmitted Tuesday with other items and scenario: a fresh SLA, the new record.
    h.clock.set(at("2026-03-10T10:00:00+08:00"));
    let mut cmd = Fire::new("resubmit");
    cmd.payload = json!({ "resubmission": 1 });
    let update = |r: &appealflow::store::AppealRecord| -> Result<serde_json::Value, EngineError> {
        let mut data = r.data.clone();
        data["draft"]["items"] = json!(["detach_mfa", "other"]);
        data["draft"]["scenario"] = json!("name_changed");
        Ok(data)
    };
    h.engine.fire_updating(&t, &cmd, &common::applicant(), None, Some(&update)).await.unwrap();
    let row = h.row(&t).await.unwrap();
    assert_eq!(row.state, "submitted");
    assert_eq!(row.review_due_at, Some(at("2026-03-14T00:00:00+08:00")));
    assert_eq!(row.review_warn_at, Some(at("2026-03-13T00:00:00+08:00")));
    assert_eq!(row.items.0, [AppealItem::DetachMfa, AppealItem::Other]);
    assert_eq!(row.scenario.as_deref(), Some("name_changed"));

    // The SLA fires Saturday: the row says so, and keeps the deadline.
    h.clock.set(at("2026-03-14T10:00:00+08:00"));
    h.engine.run_due_timers(100).await.unwrap();
    let row = h.row(&t).await.unwrap();
    assert!(row.review_fired);
    assert_eq!(row.review_due_at, Some(at("2026-03-14T00:00:00+08:00")));

    // Closed: out of every queue.
    h.fire(&t, "withdraw", &common::applicant(), &[]).await;
    assert_eq!(h.row(&t).await, None);
    let all = h.engine.workflow().open_states().iter().map(|s| s.to_string()).collect();
    let page = h.queue(QueueQuery { states: all, ..Default::default() }).await;
    assert!(page.items.is_empty() && page.counts.iter().all(|c| c.count == 0), "{page:?}");
}

async fn queue_refuses_a_bad_assignee_and_an_unknown_state(db: TestDb) {
    let h = harness(db);
    for (query, field) in [
        (QueueQuery { assignee: AssigneeFilter::Named("  ".into()), ..Default::default() }, "assignee"),
        (QueueQuery { assignee: AssigneeFilter::Named("a\u{0}b".into()), ..Default::default() }, "assignee"),
        (QueueQuery { states: states(&["closed"]), ..Default::default() }, "state"),
        (QueueQuery { per_page: 101, ..Default::default() }, "per_page"),
    ] {
        match review::queue(&h.engine, query).await {
            Err(EngineError::Invalid(problems)) => assert_eq!(problems[0].field, field),
            other => panic!("expected a refusal naming {field}: {other:?}"),
        }
    }
}
