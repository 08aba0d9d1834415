//! The engine against the raw-SQL ceiling, in one run, on each backend: every figure next
//! to a baseline that does the same work by hand — the same SQL statements through raw
//! sqlx on the same database (same rows, same indexes, same durability settings) — so the
//! ratio shows only what the engine adds around them.
//!
//! - `transition`: sequential claim/release transitions with idempotency keys through
//!   `Engine::fire`, against the same statements run by hand (ceiling/transitions.rs).
//! - `burn-down`: `APPEALFLOW_BENCH_TIMERS` due timers (default 100,000: half review SLAs,
//!   half their warnings) fired by `Engine::run_due_timers`, against the same claim and
//!   writes by hand on an identical copy of the database (ceiling/timers.rs).
//! - `progress`: the applicant's progress query (`Intake::progress`, a right answer),
//!   against its statements by hand (ceiling/progress.rs).
//! - `lateness` and `idle`: the real worker loop (`jobs::run`, system clock) — how late
//!   timers armed while it runs fire (p99, target ≤ 100 ms), and the CPU it uses idle over
//!   `APPEALFLOW_BENCH_IDLE_SECS` (default 60; target < 1 % of one core), against the
//!   same process sleeping as long; and the same span's CPU of an idle
//!   `appealflow worker` process on the same database (ceiling/idle.rs).
//!
//! `cargo bench --bench ceiling` runs SQLite, and PostgreSQL when
//! APPEALFLOW_TEST_POSTGRES_URL is set (fresh databases are created on that server).
//! `APPEALFLOW_BENCH_BACKENDS` (default `sqlite,postgres`), `APPEALFLOW_BENCH_N`
//! (transitions and progress queries, default 2000), `APPEALFLOW_BENCH_BATCH` (timers a
//! burn-down batch claims, default 500), `APPEALFLOW_BENCH_LANES` (the engine's batches in
//! flight; unset: two, as by hand). It prints one Markdown table.

/// The allocator the `appealflow` binary runs with, for both runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/it/common/mod.rs"]
mod common;
#[path = "ceiling/idle.rs"]
mod idle;
#[path = "ceiling/progress.rs"]
mod progress;
#[path = "ceiling/raw_timers.rs"]
mod raw_timers;
#[path = "support/raw_transition.rs"]
mod raw_transition;
#[path = "ceiling/timers.rs"]
mod timers;
#[path = "ceiling/transitions.rs"]
mod transitions;

/// One line of the table.
pub struct Row {
    pub backend: &'static str,
    pub figure: String,
    pub engine: String,
    pub baseline: String,
    /// The engine's figure over the baseline's, as "how much of the ceiling" (1.00 = none
    /// lost), or its target when the figure has no same-run ceiling.
    pub ratio: String,
    pub target: &'static str,
}

impl Row {
    /// A rate against the same run's raw rate (ratio = engine / raw).
    pub fn rates(backend: &'static str, figure: String, engine: f64, raw: f64, target: &'static str) -> Row {
        Row {
            backend,
            figure,
            engine: format!("{engine:.0}/s"),
            baseline: format!("{raw:.0}/s"),
            ratio: format!("{:.2}", engine / raw),
            target,
        }
    }
}

fn print(rows: &[Row]) {
    println!("| backend | figure | engine | raw / baseline | ratio | target |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} | {} | {} |", r.backend, r.figure, r.engine, r.baseline, r.ratio, r.target);
    }
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn run(backend: &'static str, rows: &mut Vec<Row>) {
    let n = env_usize("APPEALFLOW_BENCH_N", 2000);
    let timer_count = env_usize("APPEALFLOW_BENCH_TIMERS", 100_000);
    let idle_secs = env_usize("APPEALFLOW_BENCH_IDLE_SECS", 60) as u64;
    let fresh = || async {
        match backend {
            "sqlite" => Some(common::sqlite().await),
            _ => common::postgres("ceiling bench").await,
        }
    };
    let Some(db) = fresh().await else {
        eprintln!("{backend}: skipped (set APPEALFLOW_TEST_POSTGRES_URL)");
        return;
    };
    let raw_db = fresh().await.expect("a second database");
    let mut add = |new: Vec<Row>| {
        // Each row as soon as it is measured (stderr), the table at the end (stdout).
        for r in &new {
            eprintln!("{backend}: {}: {} against {} ({})", r.figure, r.engine, r.baseline, r.ratio);
        }
        rows.extend(new);
    };
    add(vec![transitions::compare(backend, &db, &raw_db, n).await]);
    add(vec![progress::compare(backend, &db, n).await]);
    add(timers::compare(backend, fresh().await.expect("a database"), timer_count).await);
    add(idle::measure(backend, fresh().await.expect("a database"), idle_secs).await);
}

#[tokio::main]
async fn main() {
    appealflow::startup::no_huge_pages();
    // `RUST_LOG=sqlx::query=debug` shows every statement each run executes.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let backends = std::env::var("APPEALFLOW_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut rows = Vec::new();
    for backend in ["sqlite", "postgres"] {
        if backends.split(',').any(|b| b.trim() == backend) {
            run(backend, &mut rows).await;
        }
    }
    print(&rows);
}
