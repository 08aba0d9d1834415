//! What else the seeded database's size may cost, measured on it: the progress query
//! (`Intake::progress`, a right answer, on seeded appeals picked at random) against its
//! one statement by hand, and a transition (a claim, then its release, on seeded
//! appeals waiting in the queue) against the same transitions on an empty database of
//! the same backend in the same run — and the same transitions by hand
//! (support/raw_transition.rs) on both databases, so what the size costs the database's
//! own statements is told apart from what it costs the engine.

use std::sync::Arc;
use std::time::Instant;

use appealflow::app::intake::Intake;
use appealflow::domain::{Actor, TicketNumber};
use appealflow::engine::{Engine, ManualClock};
use appealflow::workflow::Fire;

use super::raw_transition::{RawDb, Split, Step};
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

/// Seeded ÷ empty, measured in rounds (a claim and its release leave each appeal where it
/// was, so a round can be repeated). Within a round the two databases take turns
/// transition by transition — seeded then empty, empty then seeded — so a slow moment of
/// the machine (an fsync stall, the other core busy) lands on both alike. Round 0 runs
/// right after the seeding and the queue load; then, after `checkpoint` (on SQLite it
/// folds the seeding's write-ahead log into the database file, the state a database is in
/// once it has run for a while), `rounds` more. Answers every round's (seeded ms, empty ms)
/// per transition.
pub async fn transition_rounds(
    seeded: (&Engine, &[String]),
    empty: (&Engine, &[String]),
    checkpoint: impl AsyncFn(),
    rounds: usize,
) -> Vec<(f64, f64)> {
    let mut out = vec![interleaved(seeded, empty).await];
    checkpoint().await;
    for _ in 0..rounds {
        out.push(interleaved(seeded, empty).await);
    }
    out
}

/// One round: claims then releases, each seeded appeal's transition next to an empty
/// database's, alternating which goes first; the mean of each side (ms).
async fn interleaved(seeded: (&Engine, &[String]), empty: (&Engine, &[String])) -> (f64, f64) {
    let reviewer = Actor::new("scale", appealflow::domain::Role::Reviewer);
    let parse = |ts: &[String]| ts.iter().map(|t| TicketNumber::parse(t).unwrap()).collect::<Vec<_>>();
    let (a, b) = (parse(seeded.1), parse(empty.1));
    let (mut on_seeded, mut on_empty) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let fire = async |engine: &Engine, t: &TicketNumber, name: &str| {
        // Keyed, as the raw run's transitions are (each key new).
        let key = uuid::Uuid::new_v4().to_string();
        let start = Instant::now();
        engine.fire(t, &Fire::new(name), &reviewer, Some(&key)).await.expect("the appeal is in the queue");
        start.elapsed()
    };
    for name in ["claim", "release"] {
        for (i, (s, e)) in a.iter().zip(&b).enumerate() {
            if i % 2 == 0 {
                on_seeded += fire(seeded.0, s, name).await;
                on_empty += fire(empty.0, e, name).await;
            } else {
                on_empty += fire(empty.0, e, name).await;
                on_seeded += fire(seeded.0, s, name).await;
            }
        }
    }
    let n = (2 * a.len().min(b.len())) as f64;
    (on_seeded.as_secs_f64() * 1000.0 / n, on_empty.as_secs_f64() * 1000.0 / n)
}

/// The rounds of [`transition_rounds`] after its checkpoint, by hand: each round's mean
/// [`Split`] per transition on the seeded database and on the empty one, interleaved
/// the same way.
pub async fn raw_rounds(
    seeded: (&RawDb, &[String]),
    empty: (&RawDb, &[String]),
    now: chrono::DateTime<chrono::Utc>,
    rounds: usize,
) -> Vec<(Split, Split)> {
    let mut out = Vec::new();
    for _ in 0..rounds {
        let (mut on_seeded, mut on_empty) = (Split::default(), Split::default());
        let step = |ticket, name| Step { ticket, key: uuid::Uuid::new_v4().to_string(), name, now };
        for name in ["claim", "release"] {
            for (i, (s, e)) in seeded.1.iter().zip(empty.1).enumerate() {
                if i % 2 == 0 {
                    on_seeded += seeded.0.step(step(s, name)).await;
                    on_empty += empty.0.step(step(e, name)).await;
                } else {
                    on_empty += empty.0.step(step(e, name)).await;
                    on_seeded += seeded.0.step(step(s, name)).await;
                }
            }
        }
        let n = u32::try_from(2 * seeded.1.len().min(empty.1.len())).unwrap();
        let mean = |t: Split| Split { load: t.load / n, writes: t.writes / n, commit: t.commit / n };
        out.push((mean(on_seeded), mean(on_empty)));
    }
    out
}

/// Formats a p50/p99 pair.
pub fn ms(p: (f64, f64)) -> String {
    format!("p50 {:.2} ms, p99 {:.2} ms", p.0, p.1)
}
