//! The burn-down: `count` due timers (count / 2 appeals created through the engine, each
//! with its review SLA and the SLA's warning) fired by `Engine::run_due_timers` in
//! batches of `batch()`, and the same firings by hand on an identical copy of the
//! database, made before the engine ran (ceiling/raw_timers.rs). The hand-written run
//! executes the engine's statements for a batch (as `RUST_LOG=sqlx::query=debug` shows
//! them), with the same rows, in two lanes as the engine's timer loop on both backends;
//! on SQLite each batch claims on a read connection and checks its timers under the
//! write lock, as the engine's does. The run by hand writes each kind of row of a batch
//! in one statement, as the engine does on SQLite; on PostgreSQL the engine writes a
//! batch in four parts (each while it decides the next), so its statements are four
//! times as many, each of a quarter of the rows. What the engine adds is deciding,
//! planning and rendering each firing.
//!
//! Another writer runs beside each burn-down: a short write transaction of its own (a row
//! into a table of its own, `BEGIN IMMEDIATE` on SQLite) every [`PROBE_EVERY`], on a
//! store opened apart from the burn-down's, as `serve` beside the worker or the job
//! queue's statements would. Its waits are a figure of their own (p99 and max, engine
//! against the run by hand): on SQLite the burn-down holds the one write lock, and a
//! writer that never gets it between batches waits out its busy timeout.
//!
//! PostgreSQL's planner statistics are refreshed (`ANALYZE`) once the seeding is done and
//! before the copy, as autovacuum does within a minute of a bulk change: without them the
//! planner takes the freshly filled tables for nearly empty ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use appealflow::engine::ManualClock;
use appealflow::jobs::ApalisJobs;
use chrono::{DateTime, Utc};

use super::{Row, common};

/// Timers a batch claims: `APPEALFLOW_BENCH_BATCH` (default 500; the worker's own is
/// `--timer-batch`, 100 unless set).
pub fn batch() -> i64 {
    super::env_usize("APPEALFLOW_BENCH_BATCH", 500) as i64
}

/// The engine's lanes: `APPEALFLOW_BENCH_LANES` (unset: two, as by hand — on SQLite
/// `--timer-lanes 2`, the worker's own default being one).
fn lanes() -> Option<usize> {
    Some(std::env::var("APPEALFLOW_BENCH_LANES").ok().and_then(|v| v.parse().ok()).unwrap_or(2))
}

/// When every seeded timer is due.
fn later() -> DateTime<Utc> {
    common::at("2026-03-20T00:00:00+08:00")
}

async fn seed(db: &common::TestDb, count: usize) {
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let engine = common::engine(db, clock);
    let workers = 4;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..count / 2).step_by(workers) {
                engine.create(&common::request(&format!("burn{i}")), &common::applicant(), None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// An identical copy of `db`'s database, for the run by hand.
async fn copy(db: common::TestDb) -> (common::TestDb, common::TestDb) {
    if db.url.starts_with("sqlite") {
        let path = db._dir.as_ref().unwrap().path().join("raw.db");
        sqlx::query("VACUUM INTO $1")
            .bind(path.display().to_string())
            .execute(&*sqlite_pool(&db.url).await)
            .await
            .unwrap();
        let url = format!("sqlite://{}", path.display());
        let (store, backend) = appealflow::startup::open(&url).await.unwrap();
        let raw = common::TestDb { store, backend, url, _dir: None };
        return (db, raw);
    }
    db.store.close().await;
    let url = db.url.clone();
    let (server, name) = url.rsplit_once('/').unwrap();
    let copy = format!("{name}_raw");
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{server}/postgres")).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {copy} TEMPLATE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let raw_url = format!("{server}/{copy}");
    let (store, backend) = appealflow::startup::open(&raw_url).await.unwrap();
    let raw = common::TestDb { store, backend, url: raw_url, _dir: None };
    (db.reopen().await, raw)
}

async fn sqlite_pool(url: &str) -> Arc<sqlx::SqlitePool> {
    Arc::new(sqlx::SqlitePool::connect(url).await.unwrap())
}

async fn engine_run(db: &common::TestDb) -> (f64, usize, Waits) {
    let clock = Arc::new(ManualClock::new(later()));
    let engine = common::engine(db, clock);
    let probe = Probe::start(&db.url).await;
    let start = Instant::now();
    let runs = engine.run_due_timers_until(batch(), lanes(), || false).await.unwrap();
    let fired = runs.iter().filter(|r| r.outcome == "fired").count();
    let rate = fired as f64 / start.elapsed().as_secs_f64();
    (rate, fired, probe.stop().await)
}

/// How often the other writer writes.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// The other writer's waits, each from its `BEGIN` to the end of its `COMMIT`, and its
/// failures (a busy timeout on SQLite).
#[derive(Default)]
struct Waits {
    took: Vec<Duration>,
    failed: usize,
}

impl Waits {
    /// The `q` quantile of the waits (sorted when the writer stops).
    fn quantile(&self, q: f64) -> Duration {
        self.took.get(((self.took.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default()
    }

    fn describe(&self) -> String {
        let failed = if self.failed > 0 { format!(", {} failed", self.failed) } else { String::new() };
        format!(
            "p99 {:.1} ms, max {:.1} ms ({} writes{failed})",
            self.quantile(0.99).as_secs_f64() * 1e3,
            self.quantile(1.0).as_secs_f64() * 1e3,
            self.took.len()
        )
    }
}

/// The other writer: its own store on the same database (SQLite: the store's connection
/// settings, busy handling included), writing until stopped.
struct Probe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Waits>,
}

impl Probe {
    async fn start(url: &str) -> Probe {
        let jobs = Arc::new(ApalisJobs::new(appealflow::jobs::WorkerSettings::default().max_attempts));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        const TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_probe (at TEXT NOT NULL)";
        const INSERT: &str = "INSERT INTO bench_probe (at) VALUES ($1)";
        let task = if url.starts_with("sqlite") {
            let store = Arc::new(appealflow::store::sqlite::SqliteStore::connect(url, jobs).await.unwrap());
            sqlx::query(TABLE).execute(store.pool()).await.unwrap();
            writing(flag, move || {
                let store = store.clone();
                async move {
                    let mut conn = store.pool().acquire().await?;
                    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
                    sqlx::query(INSERT).bind(Utc::now().to_rfc3339()).execute(&mut *tx).await?;
                    tx.commit().await
                }
            })
        } else {
            let store = Arc::new(appealflow::store::postgres::PgStore::connect(url, jobs).await.unwrap());
            sqlx::query(TABLE).execute(store.pool()).await.unwrap();
            writing(flag, move || {
                let store = store.clone();
                async move {
                    let mut tx = store.pool().begin().await?;
                    sqlx::query(INSERT).bind(Utc::now().to_rfc3339()).execute(&mut *tx).await?;
                    tx.commit().await
                }
            })
        };
        Probe { stop, task }
    }

    async fn stop(self) -> Waits {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// Runs `write` every [`PROBE_EVERY`] until `stop`, timing each.
fn writing<F, W>(stop: Arc<AtomicBool>, write: F) -> tokio::task::JoinHandle<Waits>
where
    F: Fn() -> W + Send + 'static,
    W: std::future::Future<Output = Result<(), sqlx::Error>> + Send,
{
    tokio::spawn(async move {
        let mut waits = Waits::default();
        while !stop.load(Ordering::SeqCst) {
            let start = Instant::now();
            match write().await {
                Ok(()) => waits.took.push(start.elapsed()),
                Err(_) => waits.failed += 1,
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        waits.took.sort();
        waits
    })
}

/// What the engine wrote for a firing of `timer`: the event's payload and the leads'
/// notification, to write the same by hand.
pub struct Written {
    pub payload: serde_json::Value,
    pub body: String,
    pub channel: String,
    pub locale: String,
    pub recipient: String,
    pub masked: String,
}

async fn written(db: &common::TestDb, event: &str) -> Written {
    let record = db.store.list_appeals(&Default::default()).await.unwrap().remove(0);
    let history = db.store.history(&record.id).await.unwrap();
    let e = history.iter().find(|e| e.transition == event).expect("the engine fired it");
    let filter = appealflow::store::WorkFilter { appeal_id: Some(record.id.clone()), ..Default::default() };
    let template = if event == "sla_warning" { "sla_warning" } else { "sla_breach" };
    let n = db.store.notifications(&filter).await.unwrap().into_iter().find(|n| n.template == template).unwrap();
    Written {
        payload: e.payload.clone(),
        body: n.body,
        channel: n.channel,
        locale: n.locale,
        recipient: n.recipient,
        masked: n.recipient_masked,
    }
}

async fn raw_run(db: &common::TestDb, warning: Written, breach: Written) -> (f64, usize, Waits) {
    let probe = Probe::start(&db.url).await;
    let (rate, fired) = super::raw_timers::burn_down(db, warning, breach, later()).await;
    (rate, fired, probe.stop().await)
}

pub async fn compare(backend: &'static str, db: common::TestDb, count: usize) -> Vec<Row> {
    let seeding = Instant::now();
    seed(&db, count).await;
    eprintln!("{backend}: seeded {count} timers in {:.0} s", seeding.elapsed().as_secs_f64());
    if !db.url.starts_with("sqlite") {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query("ANALYZE").execute(&pool).await.unwrap();
        pool.close().await;
    }
    let (db, raw_db) = copy(db).await;
    let (engine, fired, waits) = engine_run(&db).await;
    let (raw, raw_fired, raw_waits) =
        raw_run(&raw_db, written(&db, "sla_warning").await, written(&db, "sla_breached").await).await;
    assert_eq!(fired, raw_fired, "both runs fire every timer");
    let figure = format!("timer burn-down, {fired} due timers, batches of {}", batch());
    let max = |w: &Waits| w.quantile(1.0).as_secs_f64();
    let beside = Row {
        backend,
        figure: format!("another writer's wait during the burn-down, every {} ms", PROBE_EVERY.as_millis()),
        engine: waits.describe(),
        baseline: raw_waits.describe(),
        ratio: format!("{:.2} of the max by hand", max(&waits) / max(&raw_waits).max(1e-9)),
        target: "max ≤ 1 s, none failed",
    };
    vec![Row::rates(backend, figure, engine, raw, "≥ 10,000/s"), beside]
}
