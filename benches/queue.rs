//! The review queue's server time at 100,000 open appeals, per backend: page 1, a deep
//! page, each filter and a combination, through `app::review::queue` (p50/p95 over
//! `APPEALFLOW_BENCH_CALLS` calls, default 200), each against the same run's baseline —
//! the same two statements (page and counts, in one read snapshot) run by hand through
//! raw sqlx on the same database (ratio = engine p95 / raw p95). Target: p95 ≤ 20 ms.
//!
//! The appeals (and 10,000 closed ones), their submit (and claim) events and review SLA
//! timers are seeded with bulk inserts, as the engine's commits would have written them.
//!
//! `cargo bench --bench queue` (PostgreSQL too when APPEALFLOW_BENCH_POSTGRES_URL is set;
//! a fresh database is created on that server and dropped afterwards).
//! `APPEALFLOW_BENCH_OPEN` sets the open appeals (default 100000);
//! `APPEALFLOW_BENCH_BACKENDS` the backends (default `sqlite,postgres`).
//!
//! Then the console's queue page (`GET /console`, 25 rows) for the same cases, served on
//! loopback to a signed-in reviewer and rendered in full (queue/console.rs): the time from
//! request to the page's last byte, against the raw run of its statements (their rows
//! column gives the page's size). `APPEALFLOW_BENCH_TAIL=1` prints each page case's
//! slowest calls.
//!
//! Last, on the same database (queue/scale.rs): the progress query's p50/p99 on seeded
//! appeals (target p99 ≤ 10 ms), and the mean cost of a transition (claim, release) on
//! seeded appeals against the same on an empty database of the same backend (target:
//! within 20 %). Run it at 10,000, 100,000 and 1,000,000 (`APPEALFLOW_BENCH_OPEN`) for the
//! cost curve.
//!
//! Then the processes on that database (queue/load.rs): `appealflow serve` under eight
//! reviewers' clients asking for queue pages (RSS at start, peak, end; target ≤ 150 MiB),
//! `appealflow worker` burning down the seeded timers (RSS peak; target ≤ 100 MiB), and
//! `appealflow migrate`'s time there (nothing pending; the queue migration replayed).
//! `APPEALFLOW_BENCH_KEEP=PATH` copies the seeded SQLite database to PATH first (a
//! replaced file), to run the processes on it again by hand.

/// The allocator the `appealflow` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/it/common/mod.rs"]
mod common;
#[path = "queue/console.rs"]
mod console;
#[path = "queue/load.rs"]
mod load;
#[path = "queue/raw.rs"]
mod raw;
#[path = "support/raw_transition.rs"]
mod raw_transition;
#[path = "queue/scale.rs"]
mod scale;

use std::sync::Arc;
use std::time::{Duration, Instant};

use appealflow::app::review::{self, AssigneeFilter, QueueQuery};
use appealflow::domain::draft::Scenario;
use appealflow::domain::{AppealItem, TicketNumber};
use appealflow::engine::ManualClock;
use appealflow::startup::WorkConfig;
use appealflow::store::codec::Stamp;
use chrono::{DateTime, Utc};
use raw::Pool;
use sqlx::types::Json;

const REVIEWERS: usize = 20;
const CLOSED: usize = 10_000;
/// The identity-number hash key of the bench's processes.
const ID_HASH_KEY: &str = "queue-bench-id-hash-key-0123456789";

/// The bench's present: the seeded appeals arrived over the ten days before it.
fn now() -> DateTime<Utc> {
    common::at("2026-03-20T10:00:00+08:00")
}

/// A small deterministic generator, so every run seeds the same queue.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

struct Seed {
    id: String,
    ticket: String,
    account: String,
    state: &'static str,
    outcome: Option<&'static str>,
    assignee: Option<String>,
    data: serde_json::Value,
    created_at: DateTime<Utc>,
    review_due_at: Option<DateTime<Utc>>,
    review_warn_at: Option<DateTime<Utc>>,
    fired: bool,
    items: String,
    scenario: Option<&'static str>,
}

/// The timers a seeded appeal's commits would have left: the review SLA and its warning.
struct SeedTimer {
    appeal_id: String,
    name: &'static str,
    due_at: DateTime<Utc>,
    status: &'static str,
    armed_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
}

fn seeds(open: usize) -> (Vec<Seed>, Vec<SeedTimer>) {
    let mut rng = Lcg(42);
    let mut appeals = Vec::with_capacity(open + CLOSED);
    let mut timers = Vec::with_capacity(2 * (open + CLOSED));
    let scenarios = [Some("active"), Some("name_changed"), Some("deregistered"), None];
    for i in 0..open + CLOSED {
        let closed = i >= open;
        let created_at = now() - chrono::Duration::seconds(rng.next(10 * 86_400) as i64 + 60);
        let (state, assignee, reviewed) = match (closed, rng.next(100)) {
            (true, _) => ("closed", None, false),
            (false, 0..=69) => ("submitted", None, true),
            (false, 70..=94) => ("under_review", Some(format!("rev{}", rng.next(REVIEWERS))), true),
            (false, 95..=96) => ("approved", None, false),
            (false, 97..=98) => ("rejected", None, false),
            (false, _) => ("resubmission_window", None, false),
        };
        let mut picked: Vec<AppealItem> = (0..1 + rng.next(3)).map(|_| AppealItem::ALL[rng.next(8)]).collect();
        picked.sort();
        picked.dedup();
        let names: Vec<&str> = picked.iter().map(|i| i.as_str()).collect();
        let scenario = scenarios[rng.next(4)];
        // Time-ordered, as the engine's (UUIDv7 of the instant the appeal was created).
        let at = uuid::Timestamp::from_unix(
            uuid::NoContext,
            created_at.timestamp() as u64,
            created_at.timestamp_subsec_nanos(),
        );
        let id = uuid::Uuid::new_v7(at).to_string();
        // Three business days, roughly: the SLA armed at arrival, its warning a day before.
        let due = created_at + chrono::Duration::hours(72 + rng.next(48) as i64);
        let warn = due - chrono::Duration::hours(24);
        let fired = reviewed && due <= now();
        let status = |at: DateTime<Utc>| match (closed, at <= now()) {
            (true, _) => ("cancelled", Some(created_at + chrono::Duration::hours(1))),
            (false, true) => ("fired", Some(at)),
            (false, false) => ("armed", None),
        };
        if reviewed || closed {
            for (name, at) in [("review_sla", due), ("review_sla.warning", warn)] {
                let (status, settled_at) = status(at);
                timers.push(SeedTimer {
                    appeal_id: id.clone(),
                    name,
                    due_at: at,
                    status,
                    armed_at: created_at,
                    settled_at,
                });
            }
        }
        appeals.push(Seed {
            ticket: TicketNumber::generate().as_str().to_string(),
            account: format!("acct{i}"),
            state,
            outcome: closed.then_some("completed"),
            assignee,
            data: serde_json::json!({
                "draft": { "items": names, "scenario": scenario, "contact_phone": "+8613812345678" },
                "case": null, "changes_secure_phone": false, "entity_change": { "required": false },
            }),
            created_at,
            review_due_at: reviewed.then_some(due),
            review_warn_at: reviewed.then_some(warn),
            fired,
            items: format!(",{},", names.join(",")),
            scenario,
            id,
        });
    }
    (appeals, timers)
}

/// Bulk-inserts the seeds in chunks (one multi-row INSERT each) in one transaction.
macro_rules! seed_into {
    ($pool:expr, $db:ty, $appeals:expr, $timers:expr) => {{
        let mut tx = $pool.begin().await.unwrap();
        for chunk in $appeals.chunks(1000) {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO appeals (id, ticket, workflow, workflow_version, account, state, outcome, version,
                 assignee, data, created_at, updated_at, review_due_at, review_fired, review_warn_at, items, scenario) ",
            );
            q.push_values(chunk, |mut b, a| {
                b.push_bind(&a.id)
                    .push_bind(&a.ticket)
                    .push_bind("account-appeal")
                    .push_bind(1_i64)
                    .push_bind(&a.account)
                    .push_bind(a.state)
                    .push_bind(a.outcome)
                    .push_bind(if a.assignee.is_some() { 2_i64 } else { 1_i64 })
                    .push_bind(&a.assignee)
                    .push_bind(Json(&a.data))
                    .push_bind(Stamp(a.created_at))
                    .push_bind(Stamp(a.created_at))
                    .push_bind(a.review_due_at.map(Stamp))
                    .push_bind(a.fired)
                    .push_bind(a.review_warn_at.map(Stamp))
                    .push_bind(&a.items)
                    .push_bind(a.scenario);
            });
            q.build().execute(&mut *tx).await.unwrap();
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO appeal_events (appeal_id, seq, transition, from_state, to_state, outcome, actor, role,
                 reasons, payload, at) ",
            );
            q.push_values(chunk, |mut b, a| {
                b.push_bind(&a.id)
                    .push_bind(1_i64)
                    .push_bind("submit")
                    .push_bind(None::<String>)
                    .push_bind("submitted")
                    .push_bind(None::<String>)
                    .push_bind("applicant")
                    .push_bind("applicant")
                    .push_bind(Json(serde_json::json!([])))
                    .push_bind(Json(serde_json::Value::Null))
                    .push_bind(Stamp(a.created_at));
            });
            q.build().execute(&mut *tx).await.unwrap();
            // A claimed appeal's claim, an hour after it arrived.
            let claimed: Vec<_> = chunk.iter().filter(|a| a.assignee.is_some()).collect();
            if !claimed.is_empty() {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO appeal_events (appeal_id, seq, transition, from_state, to_state, outcome, actor, role,
                     reasons, payload, at) ",
                );
                q.push_values(claimed, |mut b, a| {
                    b.push_bind(&a.id)
                        .push_bind(2_i64)
                        .push_bind("claim")
                        .push_bind("submitted")
                        .push_bind("under_review")
                        .push_bind(None::<String>)
                        .push_bind(a.assignee.as_deref())
                        .push_bind("reviewer")
                        .push_bind(Json(serde_json::json!([])))
                        .push_bind(Json(serde_json::Value::Null))
                        .push_bind(Stamp(a.created_at + chrono::Duration::hours(1)));
                });
                q.build().execute(&mut *tx).await.unwrap();
            }
        }
        for chunk in $timers.chunks(2000) {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO timers (appeal_id, name, generation, due_at, status, armed_at, settled_at) ",
            );
            q.push_values(chunk, |mut b, t| {
                b.push_bind(&t.appeal_id)
                    .push_bind(t.name)
                    .push_bind(1_i64)
                    .push_bind(Stamp(t.due_at))
                    .push_bind(t.status)
                    .push_bind(Stamp(t.armed_at))
                    .push_bind(t.settled_at.map(Stamp));
            });
            q.build().execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }};
}

/// One case of the table: what the queue is asked. The deep cases read on from a
/// cursor 90 % into the queue (and into the matches of one item), as a reviewer paging
/// on with `next` would; page numbers stop at page 100.
async fn cases(pool: &raw::Pool, open: usize) -> Vec<(&'static str, QueueQuery)> {
    let deep = i64::try_from(open * 9 / 10).unwrap_or(0);
    let q = QueueQuery::default;
    let after = Some(raw::cursor_at(pool, None, deep).await);
    let after_filtered = Some(raw::cursor_at(pool, Some("reset_password"), deep / 8).await);
    vec![
        ("page 1 (20)", q()),
        ("page 1 (100)", QueueQuery { per_page: 100, ..q() }),
        ("page 100 (100)", QueueQuery { per_page: 100, page: review::MAX_PAGE, ..q() }),
        ("deep page (after)", QueueQuery { per_page: 100, after, ..q() }),
        ("state=under_review", QueueQuery { states: vec!["under_review".into()], ..q() }),
        ("item=detach_mfa", QueueQuery { item: Some(AppealItem::DetachMfa), ..q() }),
        ("scenario=deregistered", QueueQuery { scenario: Some(Scenario::Deregistered), ..q() }),
        ("assignee=rev7", QueueQuery { assignee: AssigneeFilter::Named("rev7".into()), ..q() }),
        ("unclaimed", QueueQuery { assignee: AssigneeFilter::Unclaimed, ..q() }),
        (
            "item+scenario+unclaimed",
            QueueQuery {
                item: Some(AppealItem::Other),
                scenario: Some(Scenario::NameChanged),
                assignee: AssigneeFilter::Unclaimed,
                ..q()
            },
        ),
        (
            "deep, filtered (after)",
            QueueQuery { item: Some(AppealItem::ResetPassword), per_page: 100, after: after_filtered, ..q() },
        ),
    ]
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn timed<F, Fut>(calls: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await; // warm the statement caches
    let mut all = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        f().await;
        all.push(start.elapsed());
    }
    all.sort();
    all
}

/// Prints one row of the table (sorted times against the raw run's); the p95 in ms.
fn print_row(name: &str, case: &str, rows: &str, total: &str, times: &[Duration], raw: &[Duration]) -> f64 {
    let (p50, p95) = (pct(times, 0.5), pct(times, 0.95));
    let (r50, r95) = (pct(raw, 0.5), pct(raw, 0.95));
    println!(
        "{name:<10} {case:<30} {rows:>6} {total:>7} {p50:>9.2} {p95:>9.2} {r50:>9.2} {r95:>9.2} {:>6.2}",
        p95 / r95
    );
    p95
}

/// Transitions timed on the seeded database and on an empty one.
const TRANSITIONS: usize = 200;
/// Rounds of them after the first (the two databases interleaved transition by transition).
const TRANSITION_ROUNDS: usize = 5;

/// `fresh`: an empty database of the same backend, for the transitions' baseline.
async fn run(name: &str, db: common::TestDb, fresh: common::TestDb, open: usize, calls: usize) {
    let (appeals, timers) = seeds(open);
    let pool = if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let start = Instant::now();
        seed_into!(pool, sqlx::Sqlite, appeals, timers);
        println!(
            "{name}: seeded {} appeals, {} timers in {:.1} s",
            appeals.len(),
            timers.len(),
            start.elapsed().as_secs_f64()
        );
        Pool::Sqlite(pool)
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let start = Instant::now();
        seed_into!(pool, sqlx::Postgres, appeals, timers);
        // What autovacuum does to a table this size soon after such a load.
        sqlx::query("VACUUM ANALYZE appeals").execute(&pool).await.unwrap();
        println!(
            "{name}: seeded {} appeals, {} timers in {:.1} s",
            appeals.len(),
            timers.len(),
            start.elapsed().as_secs_f64()
        );
        Pool::Pg(pool)
    };
    // Appeals for the scale figures: a sample of open ones for progress queries, and
    // unclaimed ones waiting in the queue for transitions.
    let mut rng = Lcg(3);
    let open_tickets: Vec<String> = (0..1000).map(|_| appeals[rng.next(open)].ticket.clone()).collect();
    let waiting: Vec<String> = appeals
        .iter()
        .filter(|a| a.state == "submitted" && a.assignee.is_none())
        .take(TRANSITIONS)
        .map(|a| a.ticket.clone())
        .collect();
    drop((appeals, timers));
    let clock = Arc::new(ManualClock::new(now()));
    let blobs = tempfile::tempdir().unwrap();
    let intake = common::intake_config(blobs.path(), ID_HASH_KEY);
    let app = common::app(&db, clock.clone(), &WorkConfig::default(), Some(intake));
    let engine = app.engine.clone();
    let intake = app.intake().expect("built with intake").clone();
    let browser = console::open(app, clock.clone()).await;

    println!(
        "{:<10} {:<30} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "backend", "case", "rows", "total", "p50 ms", "p95 ms", "raw p50", "raw p95", "ratio"
    );
    let mut worst: f64 = 0.0;
    let open_states: Vec<String> = engine.workflow().open_states().iter().map(|s| s.to_string()).collect();
    for (case, query) in cases(&pool, open).await {
        let page = review::queue(&engine, query.clone()).await.unwrap();
        let engine_times = timed(calls, || {
            let engine = engine.clone();
            let query = query.clone();
            async move {
                review::queue(&engine, query).await.unwrap();
            }
        })
        .await;
        let raw_times = raw::timed_run(&pool, &query, &open_states, calls).await;
        let p95 =
            print_row(name, case, &page.items.len().to_string(), &page.total.to_string(), &engine_times, &raw_times);
        worst = worst.max(p95);
    }
    // The console's page: the same queries through HTTP, a session and the rendering.
    let console_after = raw::cursor_at(&pool, None, i64::try_from(open * 9 / 10).unwrap_or(0)).await;
    for (case, query_string, query) in console::cases(&console_after, open) {
        let bytes = browser.get(&query_string).await;
        let page_times = timed(calls, || async {
            browser.get(&query_string).await;
        })
        .await;
        if std::env::var_os("APPEALFLOW_BENCH_TAIL").is_some() {
            eprintln!("{case}: slowest {:?}", &page_times[page_times.len().saturating_sub(12)..]);
        }
        let raw_times = raw::timed_run(&pool, &query, &open_states, calls).await;
        let p95 = print_row(name, case, &format!("{}k", bytes / 1024), "", &page_times, &raw_times);
        worst = worst.max(p95);
    }
    println!("{name}: worst p95 {worst:.2} ms (target ≤ 20 ms): {}", if worst <= 20.0 { "met" } else { "MISSED" });

    let progress = scale::progress(&intake, &open_tickets, calls).await;
    println!("{name}: progress query at {open} open appeals: {} (target p99 ≤ 10 ms)", scale::ms(progress));
    let empty_engine = scale::empty_engine(&fresh, clock);
    let empty_tickets = scale::empty_tickets(&empty_engine, waiting.len()).await;
    let checkpoint = async || {
        for url in [&db.url, &fresh.url].into_iter().filter(|u| u.starts_with("sqlite")) {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
            pool.close().await;
        }
    };
    let rounds =
        scale::transition_rounds((&engine, &waiting), (&empty_engine, &empty_tickets), checkpoint, TRANSITION_ROUNDS)
            .await;
    for (i, (seeded, empty)) in rounds.iter().enumerate() {
        let when = if i == 0 { "right after seeding" } else { "after a checkpoint" };
        println!(
            "{name}: round {i} ({when}): a transition takes {seeded:.2} ms at {open} open appeals, {empty:.2} ms on an empty database: ratio {:.2}",
            seeded / empty
        );
    }
    let mut steady: Vec<f64> = rounds[1..].iter().map(|(s, e)| s / e).collect();
    steady.sort_by(f64::total_cmp);
    let median = steady[steady.len() / 2];
    println!(
        "{name}: transition ratio, seeded ÷ empty: {:.2} right after seeding, median {median:.2} of {} rounds after (target ≤ 1.20): {}",
        rounds[0].0 / rounds[0].1,
        steady.len(),
        if median <= 1.20 { "met" } else { "MISSED" }
    );
    // The same transitions by hand, on the same appeals of both databases.
    let (raw_seeded, raw_empty) =
        (raw_transition::RawDb::open(&db.url).await, raw_transition::RawDb::open(&fresh.url).await);
    let raw_rounds =
        scale::raw_rounds((&raw_seeded, &waiting), (&raw_empty, &empty_tickets), now(), TRANSITION_ROUNDS).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let total = |s: &raw_transition::Split| s.load + s.writes + s.commit;
    for (i, (s, e)) in raw_rounds.iter().enumerate() {
        println!(
            "{name}: by hand, round {}: {:.2} ms seeded (read {:.3}, writes {:.3}, commit {:.3}), {:.2} ms empty (read {:.3}, writes {:.3}, commit {:.3}): ratio {:.2}",
            i + 1,
            ms(total(s)),
            ms(s.load),
            ms(s.writes),
            ms(s.commit),
            ms(total(e)),
            ms(e.load),
            ms(e.writes),
            ms(e.commit),
            ms(total(s)) / ms(total(e))
        );
    }
    let mut by_hand: Vec<f64> = raw_rounds.iter().map(|(s, e)| ms(total(s)) / ms(total(e))).collect();
    by_hand.sort_by(f64::total_cmp);
    let growth = |part: fn(&raw_transition::Split) -> Duration| {
        let mut d: Vec<f64> = raw_rounds.iter().map(|(s, e)| ms(part(s)) - ms(part(e))).collect();
        d.sort_by(f64::total_cmp);
        d[d.len() / 2]
    };
    println!(
        "{name}: by hand, seeded ÷ empty: median {:.2} of {} rounds (the engine's {median:.2}); the seeded database's extra time, median: read {:+.3} ms, writes {:+.3} ms, commit {:+.3} ms",
        by_hand[by_hand.len() / 2],
        by_hand.len(),
        growth(|s| s.load),
        growth(|s| s.writes),
        growth(|s| s.commit),
    );
    processes(name, &db.url, &pool).await;
}

/// The processes on the seeded database (queue/load.rs): serve's and the worker's RSS
/// under load, then migrate's time (0009, 0010 and 0012 taken back out and replayed).
async fn processes(name: &str, url: &str, pool: &Pool) {
    if let (Ok(keep), Pool::Sqlite(p)) = (std::env::var("APPEALFLOW_BENCH_KEEP"), pool) {
        let _ = std::fs::remove_file(&keep);
        sqlx::query("VACUUM INTO $1").bind(&keep).execute(p).await.expect("VACUUM INTO APPEALFLOW_BENCH_KEEP");
        println!("{name}: the seeded database kept at {keep}");
    }
    load::serve(name, url, 8).await;
    let fired = "SELECT COUNT(*) FROM timers WHERE status = 'fired'";
    match pool {
        Pool::Sqlite(p) => {
            load::worker(name, url, || async { sqlx::query_scalar(fired).fetch_one(p).await.unwrap() }).await
        }
        Pool::Pg(p) => {
            load::worker(name, url, || async { sqlx::query_scalar(fired).fetch_one(p).await.unwrap() }).await
        }
    }
    // 0012's item indexes (SQLite's) stand on 0009's `items` column: out first.
    let mut unapply: Vec<String> =
        AppealItem::ALL.iter().map(|i| format!("DROP INDEX IF EXISTS appeals_item_{}", i.as_str())).collect();
    unapply.push("DELETE FROM appealflow_migrations WHERE version = 12".into());
    unapply.extend(
        [
            "DROP INDEX appeals_queue",
            "DROP INDEX appeals_queue_counts",
            "DROP INDEX appeals_queue_scenario",
            "DROP INDEX IF EXISTS appeals_queue_undated",
            "DELETE FROM appealflow_migrations WHERE version = 10",
            "ALTER TABLE appeals DROP COLUMN review_due_at",
            "ALTER TABLE appeals DROP COLUMN review_fired",
            "ALTER TABLE appeals DROP COLUMN review_warn_at",
            "ALTER TABLE appeals DROP COLUMN items",
            "ALTER TABLE appeals DROP COLUMN scenario",
            "DELETE FROM appealflow_migrations WHERE version = 9",
        ]
        .map(String::from),
    );
    match pool {
        Pool::Sqlite(p) => {
            load::migrate(name, url, || async {
                for s in &unapply {
                    sqlx::query(sqlx::AssertSqlSafe(s.as_str())).execute(p).await.unwrap();
                }
            })
            .await
        }
        Pool::Pg(p) => {
            load::migrate(name, url, || async {
                for s in &unapply {
                    sqlx::query(sqlx::AssertSqlSafe(s.as_str())).execute(p).await.unwrap();
                }
            })
            .await
        }
    }
}

/// A fresh database on the server of `APPEALFLOW_BENCH_POSTGRES_URL`, with its name.
async fn bench_postgres() -> Option<(common::TestDb, String, String)> {
    let admin = std::env::var("APPEALFLOW_BENCH_POSTGRES_URL").ok()?;
    let name = format!("af_queue_bench_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin).await.expect("APPEALFLOW_BENCH_POSTGRES_URL reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("a postgres://host/db URL");
    let url = format!("{base}/{name}");
    let (store, backend) = appealflow::startup::open(&url).await.expect("postgres store opens");
    Some((common::TestDb { store, backend, url, _dir: None }, admin, name))
}

#[tokio::main]
async fn main() {
    appealflow::startup::no_huge_pages();
    let open = std::env::var("APPEALFLOW_BENCH_OPEN").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let calls = std::env::var("APPEALFLOW_BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    // APPEALFLOW_BENCH_BACKENDS: which backends to run (default "sqlite,postgres").
    let backends = std::env::var("APPEALFLOW_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    if backends.contains("sqlite") {
        run("sqlite", common::sqlite().await, common::sqlite().await, open, calls).await;
    }
    if !backends.contains("postgres") {
        return;
    }
    match bench_postgres().await {
        Some((db, admin, name)) => {
            let (fresh, _, empty) = bench_postgres().await.expect("a second database");
            run("postgres", db, fresh, open, calls).await;
            let pool = sqlx::PgPool::connect(&admin).await.unwrap();
            for name in [name, empty] {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
        None => println!("postgres: skipped (set APPEALFLOW_BENCH_POSTGRES_URL=postgres://... to run it)"),
    }
}
