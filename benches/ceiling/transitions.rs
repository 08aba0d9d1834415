//! Transitions: a reviewer's claim, then release, over and over on a set of appeals, one
//! transition per commit, each with its idempotency key — through `Engine::fire`, and by
//! hand (the same statements, support/raw_transition.rs).

use std::sync::Arc;
use std::time::Instant;

use appealflow::engine::{Clock, ManualClock};
use appealflow::workflow::Fire;

use super::raw_transition::{RawDb, Step};
use super::{Row, common};

/// Appeals created through the engine (the same on both databases); their tickets.
async fn seed(db: &common::TestDb, clock: Arc<ManualClock>, appeals: usize) -> Vec<String> {
    let engine = common::engine(db, clock);
    let mut tickets = Vec::new();
    for i in 0..appeals {
        let created = engine.create(&common::request(&format!("bench{i}")), &common::applicant(), None).await;
        tickets.push(created.expect("a bench appeal is created").ticket.as_str().to_string());
    }
    tickets
}

fn transition(i: usize, appeals: usize) -> &'static str {
    if (i / appeals).is_multiple_of(2) { "claim" } else { "release" }
}

async fn engine_run(db: &common::TestDb, n: usize) -> f64 {
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let appeals = (n / 20).max(1);
    let tickets = seed(db, clock.clone(), appeals).await;
    let engine = common::engine(db, clock);
    let reviewer = common::reviewer("bench");
    let tickets: Vec<_> = tickets.iter().map(|t| appealflow::domain::TicketNumber::parse(t).unwrap()).collect();
    let start = Instant::now();
    for i in 0..n {
        let fire = Fire::new(transition(i, appeals));
        engine.fire(&tickets[i % appeals], &fire, &reviewer, Some(&format!("bench-{i}"))).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn raw_run(db: &common::TestDb, n: usize) -> f64 {
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let appeals = (n / 20).max(1);
    let tickets = seed(db, clock.clone(), appeals).await;
    let now = clock.now();
    let step =
        |i: usize| Step { ticket: &tickets[i % appeals], key: format!("bench-{i}"), name: transition(i, appeals), now };
    let raw = RawDb::open(&db.url).await;
    let start = Instant::now();
    for i in 0..n {
        raw.step(step(i)).await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

pub async fn compare(backend: &'static str, db: &common::TestDb, raw_db: &common::TestDb, n: usize) -> Row {
    let raw = raw_run(raw_db, n).await;
    let engine = engine_run(db, n).await;
    Row::rates(backend, format!("transition (claim/release, keyed), {n} sequential"), engine, raw, "≥ 0.80")
}
