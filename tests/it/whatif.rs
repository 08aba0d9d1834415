//! What-if replay on SQLite and on PostgreSQL: appeals received around the 2027 Spring
//! Festival (past cn-mainland's published years, so their review deadlines are
//! provisional), replayed under a calendar that publishes a 2027 arrangement, and under
//! one with no holidays at all. Each timer's consequence follows from its status, and the
//! replay writes nothing.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::{TestDb, at};
use appealflow::app::whatif::{self, Consequence, WhatIfReport};
use appealflow::calendar::Calendar;
use appealflow::domain::TicketNumber;
use appealflow::engine::{Engine, ManualClock};
use appealflow::workflow::{Fire, Workflow};

on_both_backends!(
    whatif_reports_how_a_published_arrangement_would_move_each_timer_and_writes_nothing,
    a_timer_that_fired_late_would_have_fired_anyway_at_a_later_deadline_that_had_passed,
);

/// cn-mainland as shipped, with a (made-up) 2027 arrangement published: the Spring
/// Festival from Fri 02-05 to Thu 02-11.
fn published_2027() -> Calendar {
    let path = common::workflows_dir().join("calendars/cn-mainland.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("last_year = 2026", "last_year = 2027")
        + "\n[[holidays]]\nname = \"New Year's Day 2027\"\nfrom = \"2027-01-01\"\n\n\
           [[holidays]]\nname = \"Spring Festival 2027\"\nfrom = \"2027-02-05\"\nto = \"2027-02-11\"\n";
    Calendar::from_toml(&path, &text).expect("the proposed calendar loads")
}

fn proposal(engine: &Engine, calendar: Calendar) -> Workflow {
    let mut wf = Workflow::clone(engine.workflow());
    wf.calendar = calendar;
    wf
}

/// Each (ticket, timer) of the report with its consequence and shift in hours.
fn by_timer(report: &WhatIfReport) -> BTreeMap<(String, String), (Consequence, Option<i64>)> {
    report
        .changes
        .iter()
        .map(|c| ((c.ticket.clone(), c.timer.clone()), (c.consequence, c.shift_seconds.map(|s| s / 3600))))
        .collect()
}

async fn whatif_reports_how_a_published_arrangement_would_move_each_timer_and_writes_nothing(db: TestDb) {
    let clock = Arc::new(ManualClock::new(at("2026-03-02T10:00:00+08:00")));
    let engine = common::engine(&db, clock.clone());
    let create = |account: &'static str| {
        let engine = engine.clone();
        async move { engine.create(&common::request(account), &common::applicant(), None).await.unwrap().ticket }
    };
    // b: in a published year; nothing about it changes.
    let b = create("b").await;
    // c and d: Wed 2027-02-03. Recorded: Thu 02-04 (1), Tue 02-09 (2), Wed 02-10 (3).
    // Published: Thu 02-04 (1), Fri 02-12 (2), Mon 02-15 (3).
    clock.set(at("2027-02-03T10:00:00+08:00"));
    let c = create("c").await;
    let d = create("d").await;
    // a: Thu 02-04. Recorded: Tue 02-09, Wed 02-10, Thu 02-11 — the warning at the
    // start of 02-11. Published: Fri 02-12, Mon 02-15, Tue 02-16.
    clock.set(at("2027-02-04T10:00:00+08:00"));
    let a = create("a").await;
    // d is approved on Wed 02-10 at noon, before its recorded deadline (end of 02-10):
    // its review SLA is cancelled.
    clock.set(at("2027-02-10T12:00:00+08:00"));
    let ann = common::reviewer("ann");
    engine.fire(&d, &Fire::new("claim"), &ann, None).await.unwrap();
    engine.fire(&d, &Fire::new("approve"), &ann, None).await.unwrap();
    // Thu 02-11 noon: c's SLA has fired (a breach), a's warning has fired, a's SLA is armed.
    clock.set(at("2027-02-11T12:00:00+08:00"));
    engine.run_due_timers(100).await.unwrap();
    let before = db.store.timers(None).await.unwrap();

    let (from, to) = (at("2000-01-01T00:00:00Z"), at("2100-01-01T00:00:00Z"));
    let report = whatif::replay(&engine, &proposal(&engine, published_2027()), from, to).await.unwrap();
    let got = by_timer(&report);
    let key = |t: &TicketNumber, name: &str| (t.to_string(), name.to_string());
    assert_eq!(got[&key(&a, "review_sla")], (Consequence::Moves, Some(5 * 24)), "{got:#?}");
    assert_eq!(got[&key(&a, "review_sla.warning")], (Consequence::WouldNotHaveFiredYet, Some(5 * 24)));
    assert_eq!(got[&key(&c, "review_sla")], (Consequence::WouldNotHaveFiredYet, Some(5 * 24)));
    assert_eq!(got[&key(&d, "review_sla")], (Consequence::CancelledEitherWay, Some(5 * 24)));
    assert!(got.keys().all(|(t, _)| *t != b.to_string()), "b's year is published either way: {got:#?}");
    assert!(report.changes.iter().all(|c| c.provisional), "every recorded deadline that moves was provisional");
    assert_eq!(report.appeals_affected, 3);
    let sla = report.summary.iter().find(|s| s.timer == "review_sla").unwrap();
    assert_eq!((sla.read, sla.later, sla.earlier, sla.most_later_seconds), (4, 3, 0, 5 * 86_400));

    // No holidays at all: a's deadline (end of Tue 02-09) has passed — it would have
    // breached; d's (end of Mon 02-08) passed before its approval.
    let weekdays = Calendar::load(&common::workflows_dir().join("calendars"), "weekdays").unwrap();
    let report = whatif::replay(&engine, &proposal(&engine, weekdays), from, to).await.unwrap();
    let got = by_timer(&report);
    assert_eq!(got[&key(&a, "review_sla")].0, Consequence::WouldHaveFired, "{got:#?}");
    assert_eq!(got[&key(&c, "review_sla")].0, Consequence::WouldHaveFiredEarlier);
    assert_eq!(got[&key(&d, "review_sla")].0, Consequence::WouldHaveFiredBeforeCancelled);

    // A range: only the timers armed in it are read.
    let published = proposal(&engine, published_2027());
    let narrow = whatif::replay(&engine, &published, at("2027-02-04T00:00:00+08:00"), to).await.unwrap();
    assert!(narrow.changes.iter().all(|ch| ch.ticket == a.to_string()), "{:#?}", narrow.changes);

    assert_eq!(db.store.timers(None).await.unwrap(), before, "the replay wrote nothing");
}

async fn a_timer_that_fired_late_would_have_fired_anyway_at_a_later_deadline_that_had_passed(db: TestDb) {
    let clock = Arc::new(ManualClock::new(at("2027-02-03T10:00:00+08:00")));
    let engine = common::engine(&db, clock.clone());
    let t = engine.create(&common::request("late"), &common::applicant(), None).await.unwrap().ticket;
    // Due at the end of Wed 02-10 (recorded); the worker fires it only on Sat 02-20.
    clock.set(at("2027-02-20T10:00:00+08:00"));
    engine.run_due_timers(100).await.unwrap();
    let (from, to) = (at("2000-01-01T00:00:00Z"), at("2100-01-01T00:00:00Z"));
    let report = whatif::replay(&engine, &proposal(&engine, published_2027()), from, to).await.unwrap();
    let got = by_timer(&report);
    let key = |name: &str| (t.to_string(), name.to_string());
    // Published: due at the end of Mon 02-15, later than recorded, still before 02-20.
    assert_eq!(got[&key("review_sla")], (Consequence::WouldHaveFiredAnyway, Some(5 * 24)), "{got:#?}");
    let weekdays = Calendar::load(&common::workflows_dir().join("calendars"), "weekdays").unwrap();
    let report = whatif::replay(&engine, &proposal(&engine, weekdays), from, to).await.unwrap();
    assert_eq!(by_timer(&report)[&key("review_sla")].0, Consequence::WouldHaveFiredEarlier);
}
