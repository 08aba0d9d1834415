//! The burn-down: `count` due timers (count / 2 appeals created through the engine, each
//! with its review SLA and the SLA's warning) fired by `Engine::run_due_timers` in
//! batches of `batch()`, and the same firings by hand on an identical copy of the
//! database, made before the engine ran. The hand-written run executes the engine's
//! statements for a batch (as `RUST_LOG=sqlx::query=debug` shows them), with the same
//! rows: the claim of up to a batch of due timers in claim order, then their appeals
//! (locked, on PostgreSQL), the batch's timers (the notifications' deadlines), then
//! set-wise, behind one savepoint: the timers settled, the appeals' new versions with
//! the queue's copy of whether the review SLA fired, the events, the leads' notifications
//! (the bodies the engine rendered) and their delivery jobs (by the same job writer); one
//! commit per batch. The run by hand writes each kind of row of a batch in one
//! statement; the engine writes a batch in four parts (each while it decides the next),
//! so its statements are four times as many, each of a quarter of the rows. What the
//! engine adds is deciding, planning and rendering each firing. On PostgreSQL
//! both runs keep two batches in flight, as the engine's timer loop does there (its
//! lanes): one claim at a time, each leaving out the appeals the other batch holds.
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
use appealflow::store::codec::Stamp;
use appealflow::store::{JobRef, JobWriter};
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Row, common};

/// Timers a batch claims: `APPEALFLOW_BENCH_BATCH` (default 500; the worker's own is
/// `--timer-batch`, 100 unless set).
fn batch() -> i64 {
    super::env_usize("APPEALFLOW_BENCH_BATCH", 500) as i64
}

/// The engine's lanes: `APPEALFLOW_BENCH_LANES` (unset: the store's, as by hand).
fn lanes() -> Option<usize> {
    std::env::var("APPEALFLOW_BENCH_LANES").ok().and_then(|v| v.parse().ok())
}

/// The claim: the due timers in claim order, then their appeals; on PostgreSQL with the
/// engine's row locks (the timers as they are taken, then their appeals), leaving out
/// the appeals the other lane holds when it holds any (`besides`).
fn claim(postgres: bool, besides: bool) -> String {
    let (due_lock, appeal_lock) =
        if postgres { (" FOR UPDATE SKIP LOCKED", " FOR UPDATE OF a SKIP LOCKED") } else { ("", "") };
    let besides = match (besides, postgres) {
        (false, _) => "",
        (true, true) => " AND d.appeal_id NOT IN (SELECT jsonb_array_elements_text($4))",
        (true, false) => " AND d.appeal_id NOT IN (SELECT value FROM json_each($4))",
    };
    format!(
        "WITH due AS (SELECT d.* FROM timers d
              WHERE d.status = 'armed' AND d.due_at <= $1 AND CAST($2 AS TEXT) IS NULL{besides}
              ORDER BY d.due_at, d.id LIMIT $3{due_lock})
 SELECT a.id, a.ticket, a.workflow, a.workflow_version, a.state, a.outcome, a.version, a.assignee, a.account,
        a.data, a.created_at, a.updated_at, t.id AS timer_id, t.name AS timer_name, t.generation AS timer_generation,
        t.due_at AS timer_due_at, t.status AS timer_status, t.armed_at AS timer_armed_at,
        t.settled_at AS timer_settled_at
 FROM due t JOIN appeals a ON a.id = t.appeal_id
 ORDER BY t.due_at, t.id{appeal_lock}"
    )
}
/// The batch's timers, read once for the notifications' deadlines (`{IN_JSON_LIST}`
/// written out per backend below).
const TIMERS_SQLITE: &str = "SELECT t.id, t.appeal_id, a.ticket, t.name, t.generation, t.due_at, t.status, t.armed_at,
        t.settled_at
 FROM timers t JOIN appeals a ON a.id = t.appeal_id
 WHERE t.appeal_id IN (SELECT value FROM json_each($1)) ORDER BY t.due_at, t.id";
const TIMERS_POSTGRES: &str =
    "SELECT t.id, t.appeal_id, a.ticket, t.name, t.generation, t.due_at, t.status, t.armed_at,
        t.settled_at
 FROM timers t JOIN appeals a ON a.id = t.appeal_id
 WHERE t.appeal_id IN (SELECT jsonb_array_elements_text($1)) ORDER BY t.due_at, t.id";
/// The appeals' new versions, with the one copy of the review deadline a firing can move
/// (`review_fired`), read from the timers the batch just settled: what the engine's
/// `appeals_update` assigns for a batch of firings that change neither the state, the
/// assignee nor the record and arm or cancel no review SLA (its `review_deadline` with
/// `v.column13`, under `CASE WHEN v.column12`).
const APPEALS: &str = "UPDATE appeals SET version = v.column4, updated_at = v.column6,
    review_fired = CASE WHEN v.column12 THEN COALESCE((SELECT s.status = 'fired' FROM timers s
        WHERE s.appeal_id = appeals.id AND s.name = v.column13 AND s.status <> 'cancelled'
        ORDER BY s.generation DESC LIMIT 1), FALSE) ELSE appeals.review_fired END
 FROM (";
const APPEALS_WHERE: &str = ") AS v WHERE appeals.id = v.column1 AND appeals.version = v.column7";
const EVENTS: &str =
    "INSERT INTO appeal_events (appeal_id, seq, transition, from_state, to_state, outcome, actor, role,
                            reasons, payload, at) ";
const FIRED: &str = "UPDATE timers SET status = 'fired', settled_at = v.column3 FROM (";
const FIRED_WHERE: &str =
    ") AS v WHERE timers.id = v.column1 AND timers.appeal_id = v.column2 AND timers.status = 'armed'";
const NOTIFICATIONS: &str =
    "INSERT INTO notifications (appeal_id, idempotency_key, template, channel, locale, recipient,
                           recipient_masked, body, status, created_at, chain, position,
                           on_delivered, on_undeliverable) ";

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
struct Written {
    payload: serde_json::Value,
    body: String,
    channel: String,
    locale: String,
    recipient: String,
    masked: String,
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

macro_rules! raw_batch {
    ($tx:expr, $db:ty, $jobs:expr, $write_jobs:ident, $warning:expr, $breach:expr, $now:expr, $lane:expr) => {{
        let mut tx = $tx;
        let now = Stamp($now);
        let lane: &mut RawLane = $lane;
        let claim = claim(!stringify!($db).contains("Sqlite"), !lane.besides.is_empty());
        let query = sqlx::query(sqlx::AssertSqlSafe(claim)).bind(now).bind(None::<String>).bind(batch());
        let query = if lane.besides.is_empty() { query } else { query.bind(Json(&lane.besides)) };
        let rows = query.fetch_all(&mut *tx).await.unwrap();
        // One firing per appeal: (appeal id, version, state, timer id, event, what it wrote).
        let mut seen = std::collections::HashSet::new();
        let mut firings = Vec::new();
        for row in &rows {
            let id: String = sqlx::Row::get(row, "id");
            if seen.insert(id.clone()) {
                let name: String = sqlx::Row::get(row, "timer_name");
                let (event, w) =
                    if name == "review_sla.warning" { ("sla_warning", &$warning) } else { ("sla_breached", &$breach) };
                let version: i64 = sqlx::Row::get(row, "version");
                let state: String = sqlx::Row::get(row, "state");
                let timer: i64 = sqlx::Row::get(row, "timer_id");
                firings.push((id, version, state, timer, event, w));
            }
        }
        if firings.is_empty() {
            tx.commit().await.unwrap();
            0
        } else {
            let ids: Vec<&String> = firings.iter().map(|f| &f.0).collect();
            let read = if stringify!($db).contains("Sqlite") { TIMERS_SQLITE } else { TIMERS_POSTGRES };
            let _timers = sqlx::query(read).bind(Json(&ids)).fetch_all(&mut *tx).await.unwrap();
            (lane.claimed)(ids.iter().map(|id| id.to_string()).collect());
            let mut sp = sqlx::Connection::begin(&mut *tx).await.unwrap();
            let mut q = sqlx::QueryBuilder::<$db>::new(FIRED);
            q.push_values(&firings, |mut b, f| {
                b.push_bind(f.3).push_bind(&f.0).push_bind(now);
            });
            q.push(FIRED_WHERE);
            assert_eq!(q.build().execute(&mut *sp).await.unwrap().rows_affected(), firings.len() as u64);
            let mut q = sqlx::QueryBuilder::<$db>::new(APPEALS);
            q.push_values(&firings, |mut b, f| {
                b.push_bind(&f.0)
                    .push_bind(&f.2)
                    .push_bind(None::<String>)
                    .push_bind(f.1 + 1)
                    .push_bind(None::<String>)
                    .push_bind(now)
                    .push_bind(f.1)
                    .push_bind(false)
                    .push_bind(None::<Json<serde_json::Value>>)
                    .push_bind(None::<String>)
                    .push_bind(None::<String>)
                    .push_bind(true)
                    .push_bind(Some("review_sla"))
                    .push_bind(Some("review_sla.warning"));
            });
            q.push(APPEALS_WHERE);
            let updated = q.build().execute(&mut *sp).await.unwrap();
            assert_eq!(updated.rows_affected(), firings.len() as u64);
            let mut q = sqlx::QueryBuilder::<$db>::new(EVENTS);
            q.push_values(&firings, |mut b, f| {
                b.push_bind(&f.0)
                    .push_bind(f.1 + 1)
                    .push_bind(f.4)
                    .push_bind(&f.2)
                    .push_bind(&f.2)
                    .push_bind(None::<String>)
                    .push_bind("system")
                    .push_bind("system")
                    .push_bind(Json(Vec::<String>::new()))
                    .push_bind(Json(&f.5.payload))
                    .push_bind(now);
            });
            q.build().execute(&mut *sp).await.unwrap();
            let mut q = sqlx::QueryBuilder::<$db>::new(NOTIFICATIONS);
            q.push_values(&firings, |mut b, f| {
                let template = if f.4 == "sla_warning" { "sla_warning" } else { "sla_breach" };
                b.push_bind(Some(&f.0))
                    .push_bind(format!("{}:{}:0:notify:{template}/email/0", f.0, f.1 + 1))
                    .push_bind(template)
                    .push_bind(&f.5.channel)
                    .push_bind(&f.5.locale)
                    .push_bind(&f.5.recipient)
                    .push_bind(&f.5.masked)
                    .push_bind(&f.5.body)
                    .push_bind("pending")
                    .push_bind(now)
                    .push_bind(None::<String>)
                    .push_bind(0i64)
                    .push_bind(None::<String>)
                    .push_bind(None::<String>);
            });
            q.push(" ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, status");
            let inserted: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *sp).await.unwrap();
            let jobs: Vec<JobRef> = inserted.into_iter().map(|(id, _)| JobRef::Notification(id)).collect();
            $jobs.$write_jobs(&mut *sp, &jobs).await.unwrap();
            sp.commit().await.unwrap();
            tx.commit().await.unwrap();
            firings.len()
        }
    }};
}

async fn raw_run(db: &common::TestDb, warning: Written, breach: Written) -> (f64, usize, Waits) {
    let probe = Probe::start(&db.url).await;
    let (rate, fired) = raw_burn_down(db, warning, breach).await;
    (rate, fired, probe.stop().await)
}

async fn raw_burn_down(db: &common::TestDb, warning: Written, breach: Written) -> (f64, usize) {
    let now = later();
    let jobs = ApalisJobs::new(appealflow::jobs::WorkerSettings::default().max_attempts);
    if db.url.starts_with("sqlite") {
        let store = appealflow::store::sqlite::SqliteStore::connect(&db.url, Arc::new(jobs.clone())).await.unwrap();
        let start = Instant::now();
        let mut total = 0;
        loop {
            let mut conn = store.pool().acquire().await.unwrap();
            let tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await.unwrap();
            let mut lane = RawLane { besides: Vec::new(), claimed: Box::new(|_| {}) };
            let fired = raw_batch!(tx, sqlx::Sqlite, jobs, write_sqlite, warning, breach, now, &mut lane);
            total += fired;
            if fired == 0 {
                return (total as f64 / start.elapsed().as_secs_f64(), total);
            }
        }
    }
    // Two lanes, as the engine's on PostgreSQL: one claims at a time, besides what the
    // other holds; a lane ends when a claim besides nothing fires nothing.
    let store = appealflow::store::postgres::PgStore::connect(&db.url, Arc::new(jobs.clone())).await.unwrap();
    let turn = tokio::sync::Mutex::new(());
    let held: std::sync::Mutex<[Vec<String>; 2]> = Default::default();
    let ended = tokio::sync::Notify::new();
    let start = Instant::now();
    let lane = |me: usize| {
        let (store, jobs, turn, held, ended) = (&store, &jobs, &turn, &held, &ended);
        let (warning, breach) = (&warning, &breach);
        async move {
            let mut total = 0;
            loop {
                let guard = std::sync::Mutex::new(Some(turn.lock().await));
                let besides = held.lock().unwrap()[1 - me].clone();
                let mut lane = RawLane {
                    besides: besides.clone(),
                    claimed: Box::new(|ids| {
                        held.lock().unwrap()[me] = ids;
                        guard.lock().unwrap().take();
                    }),
                };
                let tx = store.pool().begin().await.unwrap();
                let fired = raw_batch!(tx, sqlx::Postgres, jobs, write_postgres, *warning, *breach, now, &mut lane);
                drop(lane);
                guard.lock().unwrap().take();
                held.lock().unwrap()[me].clear();
                total += fired;
                ended.notify_waiters();
                if fired == 0 {
                    if besides.is_empty() {
                        return total;
                    }
                    let other_ends = ended.notified();
                    if held.lock().unwrap()[1 - me] == besides {
                        other_ends.await;
                    }
                }
            }
        }
    };
    let (a, b) = tokio::join!(lane(0), lane(1));
    ((a + b) as f64 / start.elapsed().as_secs_f64(), a + b)
}

/// A raw batch's lane: the appeals the other holds; once its claim is read, what to do.
struct RawLane<'a> {
    besides: Vec<String>,
    claimed: Box<dyn FnMut(Vec<String>) + Send + 'a>,
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
