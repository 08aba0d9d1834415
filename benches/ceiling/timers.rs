//! The burn-down: `count` due timers (count / 2 appeals created through the engine, each
//! with its review SLA and the SLA's warning) fired by `Engine::run_due_timers(500)`, and
//! the same firings by hand on an identical copy of the database, made before the engine
//! ran. The hand-written run executes the engine's statements for a batch (as
//! `RUST_LOG=sqlx::query=debug` shows them): the claim of up to 500 due timers with their
//! appeals in one statement, then per firing, behind a savepoint, the appeal's new
//! version, the event, the timer settled, the queue's copy of the review deadline, the
//! leads' notification (the body the engine rendered for it) and its delivery job
//! (written by the same job writer); one commit per batch.

use std::sync::Arc;
use std::time::Instant;

use appealflow::engine::ManualClock;
use appealflow::jobs::ApalisJobs;
use appealflow::store::codec::Stamp;
use appealflow::store::{JobRef, JobWriter};
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Row, common};

const BATCH: i64 = 500;

const CLAIM: &str = "SELECT a.*, t.id AS timer_id, t.name AS timer_name, t.generation AS timer_generation,
        t.due_at AS timer_due_at, t.status AS timer_status, t.armed_at AS timer_armed_at,
        t.settled_at AS timer_settled_at
 FROM timers t JOIN appeals a ON a.id = t.appeal_id
 WHERE t.status = 'armed' AND t.due_at <= $1 AND (CAST($2 AS TEXT) IS NULL OR t.appeal_id = $2)
 ORDER BY t.due_at, t.id LIMIT $3";
const APPEAL: &str = "UPDATE appeals SET state = $1, outcome = $2, version = $3, assignee = $4, updated_at = $5
 WHERE id = $6 AND version = $7";
const EVENT: &str = "INSERT INTO appeal_events (appeal_id, seq, transition, from_state, to_state, outcome, actor, role,
                             reasons, payload, at)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const FIRED: &str = "UPDATE timers SET status = 'fired', settled_at = $1
 WHERE id = $2 AND appeal_id = $3 AND status = 'armed'";
const DEADLINE: &str = "UPDATE appeals SET
     review_due_at = (SELECT s.due_at FROM timers s
                      WHERE s.appeal_id = $1 AND s.name = $2 AND s.status <> 'cancelled'
                      ORDER BY s.generation DESC LIMIT 1),
     review_fired = COALESCE((SELECT s.status = 'fired' FROM timers s
                              WHERE s.appeal_id = $1 AND s.name = $2 AND s.status <> 'cancelled'
                              ORDER BY s.generation DESC LIMIT 1), FALSE),
     review_warn_at = (SELECT (SELECT w.due_at FROM timers w
                               WHERE w.appeal_id = s.appeal_id AND w.name = $3 AND w.armed_at = s.armed_at
                               ORDER BY w.generation DESC LIMIT 1)
                       FROM timers s
                       WHERE s.appeal_id = $1 AND s.name = $2 AND s.status <> 'cancelled'
                       ORDER BY s.generation DESC LIMIT 1)
 WHERE id = $1";
const NOTIFICATION: &str =
    "INSERT INTO notifications (appeal_id, idempotency_key, template, channel, locale, recipient,
                            recipient_masked, body, status, created_at, chain, position,
                            on_delivered, on_undeliverable)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
 ON CONFLICT (idempotency_key) DO NOTHING RETURNING id";

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

async fn engine_run(db: &common::TestDb) -> (f64, usize) {
    let clock = Arc::new(ManualClock::new(later()));
    let engine = common::engine(db, clock);
    let start = Instant::now();
    let runs = engine.run_due_timers(BATCH).await.unwrap();
    let fired = runs.iter().filter(|r| r.outcome == "fired").count();
    (fired as f64 / start.elapsed().as_secs_f64(), fired)
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
    ($tx:expr, $jobs:expr, $write_jobs:ident, $warning:expr, $breach:expr, $now:expr) => {{
        let mut tx = $tx;
        let rows =
            sqlx::query(CLAIM).bind(Stamp($now)).bind(None::<String>).bind(BATCH).fetch_all(&mut *tx).await.unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut fired = 0;
        for row in &rows {
            let id: String = sqlx::Row::get(row, "id");
            if !seen.insert(id.clone()) {
                continue;
            }
            let version: i64 = sqlx::Row::get(row, "version");
            let state: String = sqlx::Row::get(row, "state");
            let timer: i64 = sqlx::Row::get(row, "timer_id");
            let name: String = sqlx::Row::get(row, "timer_name");
            let (event, w, template) = if name == "review_sla.warning" {
                ("sla_warning", &$warning, "sla_warning")
            } else {
                ("sla_breached", &$breach, "sla_breach")
            };
            let mut sp = sqlx::Connection::begin(&mut *tx).await.unwrap();
            sqlx::query(APPEAL)
                .bind(&state)
                .bind(None::<String>)
                .bind(version + 1)
                .bind(None::<String>)
                .bind(Stamp($now))
                .bind(&id)
                .bind(version)
                .execute(&mut *sp)
                .await
                .unwrap();
            sqlx::query(EVENT)
                .bind(&id)
                .bind(version + 1)
                .bind(event)
                .bind(&state)
                .bind(&state)
                .bind(None::<String>)
                .bind("system")
                .bind("system")
                .bind(Json(Vec::<String>::new()))
                .bind(Json(&w.payload))
                .bind(Stamp($now))
                .execute(&mut *sp)
                .await
                .unwrap();
            sqlx::query(FIRED).bind(Stamp($now)).bind(timer).bind(&id).execute(&mut *sp).await.unwrap();
            sqlx::query(DEADLINE)
                .bind(&id)
                .bind("review_sla")
                .bind("review_sla.warning")
                .execute(&mut *sp)
                .await
                .unwrap();
            let n: Option<i64> = sqlx::query_scalar(NOTIFICATION)
                .bind(&id)
                .bind(format!("{id}:{}:0:notify:{template}", version + 1))
                .bind(template)
                .bind(&w.channel)
                .bind(&w.locale)
                .bind(&w.recipient)
                .bind(&w.masked)
                .bind(&w.body)
                .bind("pending")
                .bind(Stamp($now))
                .bind(None::<String>)
                .bind(0i64)
                .bind(None::<String>)
                .bind(None::<String>)
                .fetch_optional(&mut *sp)
                .await
                .unwrap();
            $jobs.$write_jobs(&mut *sp, &[JobRef::Notification(n.unwrap())]).await.unwrap();
            sp.commit().await.unwrap();
            fired += 1;
        }
        tx.commit().await.unwrap();
        fired
    }};
}

async fn raw_run(db: &common::TestDb, warning: Written, breach: Written) -> (f64, usize) {
    let now = later();
    let jobs = ApalisJobs::new(appealflow::jobs::WorkerSettings::default().max_attempts);
    let mut total = 0;
    if db.url.starts_with("sqlite") {
        let store = appealflow::store::sqlite::SqliteStore::connect(&db.url, Arc::new(jobs.clone())).await.unwrap();
        let start = Instant::now();
        loop {
            let mut conn = store.pool().acquire().await.unwrap();
            let tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await.unwrap();
            let fired = raw_batch!(tx, jobs, write_sqlite, warning, breach, now);
            total += fired;
            if fired == 0 {
                return (total as f64 / start.elapsed().as_secs_f64(), total);
            }
        }
    }
    let store = appealflow::store::postgres::PgStore::connect(&db.url, Arc::new(jobs.clone())).await.unwrap();
    let start = Instant::now();
    loop {
        let fired = raw_batch!(store.pool().begin().await.unwrap(), jobs, write_postgres, warning, breach, now);
        total += fired;
        if fired == 0 {
            return (total as f64 / start.elapsed().as_secs_f64(), total);
        }
    }
}

pub async fn compare(backend: &'static str, db: common::TestDb, count: usize) -> Vec<Row> {
    let seeding = Instant::now();
    seed(&db, count).await;
    eprintln!("{backend}: seeded {count} timers in {:.0} s", seeding.elapsed().as_secs_f64());
    let (db, raw_db) = copy(db).await;
    let (engine, fired) = engine_run(&db).await;
    let (raw, raw_fired) =
        raw_run(&raw_db, written(&db, "sla_warning").await, written(&db, "sla_breached").await).await;
    assert_eq!(fired, raw_fired, "both runs fire every timer");
    let figure = format!("timer burn-down, {fired} due timers, batches of {BATCH}");
    vec![Row::rates(backend, figure, engine, raw, "≥ 10,000/s")]
}
