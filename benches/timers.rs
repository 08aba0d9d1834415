//! Timer figures on each backend, each against a baseline measured in the same run.
//!
//! 1. Burn-down: 10,000 due timers (5,000 appeals × the review SLA and its warning) fired
//!    through the engine; timers per second, and the ratio to the baseline of bare
//!    durable commits per second on the same database.
//! 2. Lateness at idle: the real worker loop (`jobs::run`, system clock, default poll of
//!    500 ms) with timers falling due one by one; how late each fires, against the poll
//!    interval as the baseline (a ratio of 1.0 means "one poll late").
//!
//! `cargo bench --bench timers` (PostgreSQL too when APPEALFLOW_TEST_POSTGRES_URL is set).
//! `APPEALFLOW_BENCH_TIMERS` sets the burn-down size (default 10000).

#[path = "support/baseline.rs"]
mod baseline;
#[path = "../tests/it/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use appealflow::engine::{ManualClock, SystemClock};
use appealflow::jobs::WorkerSettings;
use appealflow::startup::WorkConfig;
use appealflow::workflow::Fire;
use chrono::Utc;

async fn burn_down(db: &common::TestDb, timers: usize) -> (f64, usize) {
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let engine = common::engine(db, clock.clone());
    for i in 0..timers / 2 {
        engine.create(&common::request(&format!("burn{i}")), &common::applicant(), None).await.unwrap();
    }
    clock.set(common::at("2026-03-20T00:00:00+08:00"));
    let start = Instant::now();
    let runs = engine.run_due_timers(500).await.unwrap();
    let fired = runs.iter().filter(|r| r.outcome == "fired").count();
    (fired as f64 / start.elapsed().as_secs_f64(), fired)
}

/// Claims made 4 hours ago (less a little) so their expiry timers fall due one by one
/// over the next seconds, on the wall clock; the real worker loop fires them.
async fn lateness(db: &common::TestDb, count: usize) -> Vec<Duration> {
    let db = db.reopen().await;
    let now = Utc::now();
    let clock = Arc::new(ManualClock::new(now));
    let setup = common::engine(&db, clock.clone());
    let mut expected = Vec::new();
    for i in 0..count {
        let t = setup.create(&common::request(&format!("late{i}")), &common::applicant(), None).await.unwrap().ticket;
        // Claim expiry is 4 hours: due at now + 1 s + i × 300 ms.
        let claimed_at = now - chrono::Duration::hours(4) + chrono::Duration::milliseconds(1000 + 300 * i as i64);
        clock.set(claimed_at);
        setup.fire(&t, &Fire::new("claim"), &common::reviewer("bench"), None).await.unwrap();
        expected.push((t, claimed_at + chrono::Duration::hours(4)));
    }
    let app = common::app(&db, Arc::new(SystemClock), &WorkConfig::default(), None);
    let rt = app.runtime(WorkerSettings::default());
    let wait = Duration::from_millis(1500 + 300 * count as u64);
    let worker = tokio::spawn(appealflow::jobs::run(rt, async move { tokio::time::sleep(wait).await }));
    let _ = worker.await;
    // Lateness as the timers table records it: when each claim expiry was settled
    // (fired) against when it was due.
    let mut late = Vec::new();
    for (t, _) in expected {
        let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
        for timer in db.store.timers(Some(&record.id)).await.unwrap() {
            if timer.name == "claim_expiry" && timer.status == appealflow::store::TimerStatus::Fired {
                late.push((timer.settled_at.unwrap() - timer.due_at).to_std().unwrap_or_default());
            }
        }
    }
    late.sort();
    late
}

async fn report(name: &str, db: common::TestDb, timers: usize) {
    let base = baseline::commits_per_second(&db.url, 2000).await;
    let (rate, fired) = burn_down(&db, timers).await;
    println!(
        "{name:<9} burn-down: {fired} timers at {rate:.0} timers/s; baseline {base:.0} commits/s; ratio {:.2}",
        rate / base
    );
    let late = lateness(&db, 20).await;
    let poll = WorkerSettings::default().poll.as_secs_f64();
    if late.is_empty() {
        println!("{name:<9} lateness: no timer fired");
        return;
    }
    let p50 = late[late.len() / 2].as_secs_f64();
    let max = late[late.len() - 1].as_secs_f64();
    println!(
        "{name:<9} lateness at idle ({} timers): p50 {:.0} ms, max {:.0} ms; poll {:.0} ms; p50/poll {:.2}, max/poll {:.2}",
        late.len(),
        p50 * 1000.0,
        max * 1000.0,
        poll * 1000.0,
        p50 / poll,
        max / poll
    );
}

#[tokio::main]
async fn main() {
    let timers: usize = std::env::var("APPEALFLOW_BENCH_TIMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    report("sqlite", common::sqlite().await, timers).await;
    match common::postgres("timers bench").await {
        Some(db) => report("postgres", db, timers).await,
        None => println!("postgres  skipped (set APPEALFLOW_TEST_POSTGRES_URL)"),
    }
}
