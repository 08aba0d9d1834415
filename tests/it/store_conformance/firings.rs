//! A batch of timer firings written set-wise (one statement per kind of row) leaves
//! exactly the rows the same firings leave written one at a time: the appeals, their
//! events, timers, the queue's copies of the review deadline, the notifications and
//! their delivery jobs. Two databases of the same backend get the same appeals; one
//! fires in batches of 100 (set-wise), the other in batches of 1 (one at a time).

use std::sync::Arc;

use appealflow::engine::ManualClock;
use appealflow::jobs::NOTIFICATIONS_QUEUE;
use appealflow::startup::WorkConfig;
use appealflow::store::{AssigneeMatch, QueueFilter};
use appealflow::workflow::Fire;

use crate::common::{self, TestDb, applicant, engine, jobs, monday_morning, notifications, request, reviewer};

on_both_backends!(
    a_batch_written_set_wise_leaves_the_rows_of_one_firing_at_a_time,
    batches_take_the_earliest_due_timers_first,
    a_batch_notifying_many_leads_is_written_whole,
    appeal_ids_follow_the_order_the_appeals_were_created_in,
    sqlite_pauses_a_burn_down_once_its_batches_have_held_the_lock_for_20_ms
);

/// Everything the firings wrote for one appeal, with what differs between two
/// databases by construction (ids, ticket numbers, keys) left out or masked.
async fn rows(db: &TestDb, account: &str) -> serde_json::Value {
    let record = db.store.open_appeal_for(account).await.unwrap().expect("the appeal is open");
    let ticket = record.ticket.to_string();
    let history: Vec<_> = db
        .store
        .history(&record.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            serde_json::json!([
                e.seq,
                e.transition,
                e.from,
                e.to,
                e.outcome,
                e.actor,
                e.role,
                e.reasons,
                e.payload,
                e.at
            ])
        })
        .collect();
    let timers: Vec<_> = db
        .store
        .timers(Some(&record.id))
        .await
        .unwrap()
        .into_iter()
        .map(|t| serde_json::json!([t.name, t.generation, t.due_at, t.status, t.armed_at, t.settled_at]))
        .collect();
    let notes: Vec<_> = notifications(db.store.as_ref(), &record.id)
        .await
        .into_iter()
        .map(|n| serde_json::json!([n.template, n.channel, n.recipient, n.status, n.body.replace(&ticket, "TICKET")]))
        .collect();
    let filter = QueueFilter {
        states: vec!["submitted".into(), "under_review".into()],
        item: None,
        scenario: None,
        assignee: AssigneeMatch::Any,
        after: None,
        offset: 0,
        limit: 100,
        count_states: vec!["submitted".into(), "under_review".into()],
        count_cap: 1000,
    };
    let queued: Vec<_> = db
        .store
        .review_queue(&filter)
        .await
        .unwrap()
        .rows
        .into_iter()
        .filter(|r| r.account == account)
        .map(|r| serde_json::json!([r.state, r.version, r.assignee, r.review_due_at, r.review_fired, r.review_warn_at]))
        .collect();
    serde_json::json!({
        "appeal": [record.state, record.outcome, record.version, record.assignee],
        "history": history, "timers": timers, "notifications": notes, "queue": queued,
    })
}

/// Six appeals, two of them claimed, then every review SLA (with its warning) and claim
/// expiry due; fired in batches of `batch`. Answers how many fired.
async fn fire_all(db: &TestDb, batch: i64) -> usize {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(db, clock.clone());
    for i in 0..6 {
        let t = engine.create(&request(&format!("acct{i}")), &applicant(), None).await.unwrap().ticket;
        if i < 2 {
            engine.fire(&t, &Fire::new("claim"), &reviewer("rev"), None).await.unwrap();
        }
    }
    clock.set(common::at("2026-03-20T00:00:00+08:00"));
    let mut fired = 0;
    loop {
        let runs = engine.run_due_timers(batch).await.unwrap();
        assert!(runs.iter().all(|r| r.outcome == "fired"), "{runs:?}");
        if runs.is_empty() {
            return fired;
        }
        fired += runs.len();
    }
}

async fn a_batch_written_set_wise_leaves_the_rows_of_one_firing_at_a_time(db: TestDb) {
    let other = match db.url.starts_with("sqlite") {
        true => common::sqlite().await,
        false => common::postgres("set-wise firings").await.expect("a second PostgreSQL database"),
    };
    let set_wise = fire_all(&db, 100).await;
    let one_by_one = fire_all(&other, 1).await;
    // Per appeal: the SLA's warning and breach; the two claimed ones' expiry too.
    assert_eq!((set_wise, one_by_one), (14, 14));
    for i in 0..6 {
        let account = format!("acct{i}");
        assert_eq!(rows(&db, &account).await, rows(&other, &account).await, "{account}");
    }
    assert_eq!(
        jobs(db.store.as_ref(), NOTIFICATIONS_QUEUE).await.len(),
        jobs(other.store.as_ref(), NOTIFICATIONS_QUEUE).await.len()
    );
    // Every pending notification has its delivery job.
    let all = db.store.notifications(&Default::default()).await.unwrap();
    let queued = jobs(db.store.as_ref(), NOTIFICATIONS_QUEUE).await;
    let pending: Vec<_> = all.iter().filter(|n| n.status == appealflow::store::NotificationStatus::Pending).collect();
    assert!(pending.len() >= 14, "{pending:?}");
    assert!(pending.iter().all(|n| queued.iter().any(|j| j.args["notification_id"] == n.id)), "{queued:?}");
}

/// Timers are claimed in (due, id) order however they were written: appeals received on
/// Tuesday are created first (their timers get the lower ids), then appeals received on
/// Monday, whose timers fall due earlier; two at a time, the firings come out in due
/// order, and among timers due at one instant, in the order they were armed.
async fn batches_take_the_earliest_due_timers_first(db: TestDb) {
    let clock = Arc::new(ManualClock::new(common::at("2026-03-10T10:00:00+08:00")));
    let engine = engine(&db, clock.clone());
    for i in 0..3 {
        engine.create(&request(&format!("tuesday{i}")), &applicant(), None).await.unwrap();
    }
    clock.set(monday_morning());
    for i in 0..3 {
        engine.create(&request(&format!("monday{i}")), &applicant(), None).await.unwrap();
    }
    clock.set(common::at("2026-03-20T00:00:00+08:00"));
    // One batch in flight at a time: two lanes' batches overlap in due order.
    let runs = engine.run_due_timers_until(2, Some(1), || false).await.unwrap();
    assert_eq!(runs.len(), 12, "each appeal's warning and breach: {runs:?}");
    assert!(runs.iter().all(|r| r.outcome == "fired"), "{runs:?}");
    let order: Vec<_> = runs.iter().map(|r| (r.timer.due_at, r.timer.id)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "fired in (due, id) order");
    // Monday's warnings (due at the start of Thursday) before any of Tuesday's timers.
    let first: Vec<_> = runs[..3].iter().map(|r| r.timer.name.as_str()).collect();
    assert_eq!(first, ["review_sla.warning"; 3]);
    assert!(runs[..3].iter().all(|r| r.timer.due_at < runs[11].timer.due_at));
    let lowest = runs.iter().map(|r| r.timer.id).min().unwrap();
    assert!(runs[0].timer.id > lowest, "the timers written later but due sooner came first");
}

/// A batch's rows are written however many there are: 80 appeals' SLA warnings, then
/// their breaches, each alerting 120 leads, are 9,600 notifications a batch, written in
/// four parts of 2,400 — more values than one statement may bind on either backend
/// (SQLite 32,766, PostgreSQL 65,535) at 14 a notification, so each part's go in two
/// statements. Every firing is recorded with all its notifications and their delivery
/// jobs.
async fn a_batch_notifying_many_leads_is_written_whole(db: TestDb) {
    const APPEALS: usize = 80;
    const LEADS: usize = 120;
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let leads: Vec<String> = (0..LEADS).map(|i| format!("lead{i:03}@leads.example")).collect();
    let work = WorkConfig { lead_emails: leads.clone(), ..Default::default() };
    let engine = common::app(&db, clock.clone(), &work, None).engine;
    for i in 0..APPEALS {
        engine.create(&request(&format!("acct{i}")), &applicant(), None).await.unwrap();
    }
    clock.set(common::at("2026-03-20T00:00:00+08:00"));
    // Each batch takes one timer per appeal: the 80 warnings, then the 80 breaches.
    let runs = engine.run_due_timers(500).await.unwrap();
    assert!(runs.iter().all(|r| r.outcome == "fired"), "{runs:?}");
    let named = |name: &str| runs.iter().filter(|r| r.timer.name == name).count();
    assert_eq!((named("review_sla.warning"), named("review_sla")), (APPEALS, APPEALS), "{runs:?}");
    let all = db.store.notifications(&Default::default()).await.unwrap();
    let to_leads: Vec<_> = all.iter().filter(|n| leads.contains(&n.recipient)).collect();
    assert_eq!(to_leads.len(), 2 * APPEALS * LEADS, "a warning and a breach to every lead, for every appeal");
    for template in ["sla_warning", "sla_breach"] {
        assert_eq!(to_leads.iter().filter(|n| n.template == template).count(), APPEALS * LEADS, "{template}");
    }
    let queued = jobs(db.store.as_ref(), NOTIFICATIONS_QUEUE).await;
    let ids: std::collections::HashSet<_> = queued.iter().map(|j| j.args["notification_id"].clone()).collect();
    assert!(to_leads.iter().all(|n| ids.contains(&serde_json::json!(n.id))), "every alert has its delivery job");
}

/// Appeal ids are time-ordered (UUIDv7), so the rows a batch of firings writes in the
/// indexes keyed by appeal id (events, timers, notifications), which come in due order
/// and so about in creation order, sit together instead of one page each.
async fn appeal_ids_follow_the_order_the_appeals_were_created_in(db: TestDb) {
    let engine = engine(&db, Arc::new(ManualClock::new(monday_morning())));
    let mut ids = Vec::new();
    for i in 0..20 {
        let ticket = engine.create(&request(&format!("acct{i}")), &applicant(), None).await.unwrap().ticket;
        ids.push(db.store.appeal_by_ticket(&ticket).await.unwrap().unwrap().id);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ids sort in creation order");
    for id in &ids {
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7, "{id}");
    }
}

/// Between two batches of a burn-down SQLite leaves its write lock free once the batches
/// have held it for 20 ms in a row (not after every short batch); PostgreSQL, whose
/// writers wait only for their own rows, never pauses.
async fn sqlite_pauses_a_burn_down_once_its_batches_have_held_the_lock_for_20_ms(db: TestDb) {
    let sqlite = db.url.starts_with("sqlite");
    for (ms, pause) in [(0, false), (19, false), (20, sqlite), (500, sqlite)] {
        assert_eq!(db.store.between_batches(std::time::Duration::from_millis(ms)).await, pause, "{ms} ms");
    }
}
