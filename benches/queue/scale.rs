//! What else the seeded database's size may cost, measured on it: the progress query
//! (`Intake::progress`, a right answer, on seeded appeals picked at random) against its
//! one statement by hand, and a transition (a claim, then its release, on seeded
//! appeals waiting in the queue) against the same transitions on an empty database of
//! the same backend in the same run.

use std::sync::Arc;
use std::time::Instant;

use appealflow::app::intake::Intake;
use appealflow::domain::{Actor, TicketNumber};
use appealflow::engine::{Engine, ManualClock};
use appealflow::workflow::Fire;

use super::{Lcg, common, pct};

const PHONE: &str = "13812345678";

/// p50/p99 of `calls` progress queries on `tickets` (ms).
pub async fn progress(intake: &Intake, tickets: &[String], calls: usize) -> (f64, f64) {
    let mut rng = Lcg(7);
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let ticket = &tickets[rng.next(tickets.len())];
        let start = Instant::now();
        intake.progress(ticket, PHONE).await.expect("a seeded appeal answers its contact phone");
        times.push(start.elapsed());
    }
    times.sort();
    (pct(&times, 0.50), pct(&times, 0.99))
}

/// The mean time of one transition (ms): claims then releases on `tickets`, each
/// sequential, one commit each.
pub async fn transitions(engine: &Engine, tickets: &[String]) -> f64 {
    let reviewer = Actor::new("scale", appealflow::domain::Role::Reviewer);
    let tickets: Vec<TicketNumber> = tickets.iter().map(|t| TicketNumber::parse(t).unwrap()).collect();
    let start = Instant::now();
    for name in ["claim", "release"] {
        for t in &tickets {
            engine.fire(t, &Fire::new(name), &reviewer, None).await.expect("the seeded appeal is in the queue");
        }
    }
    start.elapsed().as_secs_f64() * 1000.0 / (2 * tickets.len()) as f64
}

/// A fresh, empty database of the same backend with `n` appeals created through the
/// engine, waiting in the queue: the baseline's engine and tickets.
pub fn empty_engine(db: &common::TestDb, clock: Arc<ManualClock>) -> Arc<Engine> {
    common::engine(db, clock)
}

pub async fn empty_tickets(engine: &Engine, n: usize) -> Vec<String> {
    let mut tickets = Vec::new();
    for i in 0..n {
        let created = engine.create(&common::request(&format!("empty{i}")), &common::applicant(), None).await;
        tickets.push(created.expect("created").ticket.as_str().to_string());
    }
    tickets
}

/// Seeded ÷ empty, measured in rounds that alternate the two databases (a claim and its
/// release leave each appeal where it was, so a round can be repeated): round 0 right
/// after the seeding and the queue load, as the figure was first taken; then, on SQLite,
/// after a checkpoint that folds the seeding's write-ahead log into the database file (the
/// state a database is in once it has run for a while), `rounds` more. Answers every
/// round's (seeded ms, empty ms).
pub async fn transition_rounds(
    seeded: (&Engine, &[String]),
    empty: (&Engine, &[String]),
    checkpoint: impl AsyncFn(),
    rounds: usize,
) -> Vec<(f64, f64)> {
    let mut out = vec![(transitions(seeded.0, seeded.1).await, transitions(empty.0, empty.1).await)];
    checkpoint().await;
    for i in 0..rounds {
        // Alternate which goes first, so neither always runs on a warmer machine.
        let (s, e) = if i % 2 == 0 {
            let s = transitions(seeded.0, seeded.1).await;
            (s, transitions(empty.0, empty.1).await)
        } else {
            let e = transitions(empty.0, empty.1).await;
            (transitions(seeded.0, seeded.1).await, e)
        };
        out.push((s, e));
    }
    out
}

/// Formats a p50/p99 pair.
pub fn ms(p: (f64, f64)) -> String {
    format!("p50 {:.2} ms, p99 {:.2} ms", p.0, p.1)
}
