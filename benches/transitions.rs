//! Transitions per second on each backend, against a baseline measured in the same run:
//! the cheapest durable write the same database can do (one single-row UPDATE per
//! transaction, same pool settings). The ratio says what a full unit of work (version
//! check, event, timers, outbox, idempotency key) costs over a bare commit.
//!
//! `cargo bench --bench transitions` (PostgreSQL too when APPEALFLOW_TEST_POSTGRES_URL is set).
//! `APPEALFLOW_BENCH_N` sets the number of transitions (default 2000).

#[path = "support/baseline.rs"]
mod baseline;
#[path = "../tests/it/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use appealflow::engine::ManualClock;
use appealflow::workflow::Fire;

/// Claim/release cycles on a set of appeals, one transition per commit, sequentially.
async fn engine_transitions(db: &common::TestDb, n: usize) -> f64 {
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let engine = common::engine(db, clock);
    let appeals = (n / 20).max(1);
    let mut tickets = Vec::new();
    for i in 0..appeals {
        tickets.push(
            engine.create(&common::request(&format!("bench{i}")), &common::applicant(), None).await.unwrap().ticket,
        );
    }
    let reviewer = common::reviewer("bench");
    let start = Instant::now();
    for i in 0..n {
        let ticket = &tickets[i % appeals];
        let round = i / appeals;
        let name = if round.is_multiple_of(2) { "claim" } else { "release" };
        engine.fire(ticket, &Fire::new(name), &reviewer, Some(&format!("bench-{i}"))).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("APPEALFLOW_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    println!("transitions bench: {n} sequential commits per measurement");
    println!("{:<10} {:>18} {:>20} {:>8}", "backend", "baseline commits/s", "engine transitions/s", "ratio");

    let db = common::sqlite().await;
    let base = baseline::commits_per_second(&db.url, n).await;
    let eng = engine_transitions(&db, n).await;
    println!("{:<10} {:>18.0} {:>20.0} {:>8.2}", "sqlite", base, eng, eng / base);

    match common::postgres("transitions bench").await {
        Some(db) => {
            let base = baseline::commits_per_second(&db.url, n).await;
            let eng = engine_transitions(&db, n).await;
            println!("{:<10} {:>18.0} {:>20.0} {:>8.2}", "postgres", base, eng, eng / base);
        }
        None => println!("postgres   skipped (set APPEALFLOW_TEST_POSTGRES_URL)"),
    }
}
