//! Transitions: a reviewer's claim, then release, over and over on a set of appeals, one
//! transition per commit, each with its idempotency key — through `Engine::fire`, and by
//! hand. The hand-written run executes the statements the engine issues for these two
//! transitions (as `RUST_LOG=sqlx::query=debug` shows them), with the same values: the
//! command's one read (appeal, due timers, key), then one transaction writing the key with
//! its answer, the appeal's new state, the event, and the claim's expiry timer (armed by a
//! claim, cancelled by a release).

use std::sync::Arc;
use std::time::Instant;

use appealflow::engine::{Clock, ManualClock};
use appealflow::store::codec::Stamp;
use appealflow::workflow::Fire;
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Row, common};

const LOAD: &str = "SELECT a.*,
        EXISTS (SELECT 1 FROM timers t
                WHERE t.appeal_id = a.id AND t.status = 'armed' AND t.due_at <= $2) AS timer_due,
        k.fingerprint AS key_fingerprint, k.response AS key_response, k.created_at AS key_created_at
 FROM (SELECT 1 AS here) AS here
 LEFT JOIN appeals a ON a.ticket = $1
 LEFT JOIN idempotency_keys k ON k.key = $3";
const KEY: &str = "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES ($1, $2, $3, $4)
 ON CONFLICT (key) DO NOTHING";
const APPEAL: &str = "UPDATE appeals SET state = $1, outcome = $2, version = $3, assignee = $4, updated_at = $5
 WHERE id = $6 AND version = $7";
const EVENT: &str = "INSERT INTO appeal_events (appeal_id, seq, transition, from_state, to_state, outcome, actor, role,
                             reasons, payload, at)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const ARM: &str = "INSERT INTO timers (appeal_id, name, generation, due_at, status, armed_at)
 VALUES ($1, $2, (SELECT COALESCE(MAX(generation), 0) + 1 FROM timers WHERE appeal_id = $1 AND name = $2),
         $3, 'armed', $4)";
const CANCEL: &str = "UPDATE timers SET status = 'cancelled', settled_at = $1
 WHERE appeal_id = $2 AND name = $3 AND status = 'armed'";

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

/// What one transition writes, whatever the backend.
struct Step<'a> {
    ticket: &'a str,
    key: String,
    name: &'static str,
    now: DateTime<Utc>,
}

macro_rules! raw_step {
    ($conn:expr, $begin:expr, $s:expr) => {{
        let s = $s;
        let row = sqlx::query(LOAD).bind(s.ticket).bind(Stamp(s.now)).bind(&s.key).fetch_one(&mut *$conn).await.unwrap();
        let id: String = sqlx::Row::get(&row, "id");
        let version: i64 = sqlx::Row::get(&row, "version");
        let state: String = sqlx::Row::get(&row, "state");
        let (to, assignee) = if s.name == "claim" { ("under_review", Some("bench")) } else { ("submitted", None) };
        let answer = serde_json::json!({
            "ticket": s.ticket, "transition": s.name, "from": state, "state": to, "outcome": null,
            "version": version + 1, "replayed": false, "also": []
        });
        let print = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(answer.to_string().as_bytes()));
        let mut tx = $begin;
        sqlx::query(KEY).bind(&s.key).bind(&print).bind(Json(&answer)).bind(Stamp(s.now)).execute(&mut *tx).await.unwrap();
        let updated = sqlx::query(APPEAL)
            .bind(to)
            .bind(None::<String>)
            .bind(version + 1)
            .bind(assignee)
            .bind(Stamp(s.now))
            .bind(&id)
            .bind(version)
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(updated.rows_affected(), 1, "appeal {id} at version {version} ({state})");
        sqlx::query(EVENT)
            .bind(&id)
            .bind(version + 1)
            .bind(s.name)
            .bind(&state)
            .bind(to)
            .bind(None::<String>)
            .bind("bench")
            .bind("reviewer")
            .bind(Json(Vec::<String>::new()))
            .bind(Json(serde_json::json!({})))
            .bind(Stamp(s.now))
            .execute(&mut *tx)
            .await
            .unwrap();
        if s.name == "claim" {
            let due = s.now + chrono::Duration::hours(4);
            sqlx::query(ARM).bind(&id).bind("claim_expiry").bind(Stamp(due)).bind(Stamp(s.now)).execute(&mut *tx).await.unwrap();
        } else {
            sqlx::query(CANCEL).bind(Stamp(s.now)).bind(&id).bind("claim_expiry").execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }};
}

async fn raw_run(db: &common::TestDb, n: usize) -> f64 {
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let appeals = (n / 20).max(1);
    let tickets = seed(db, clock.clone(), appeals).await;
    let now = clock.now();
    let step =
        |i: usize| Step { ticket: &tickets[i % appeals], key: format!("bench-{i}"), name: transition(i, appeals), now };
    if db.url.starts_with("sqlite") {
        // The store's own settings: WAL, synchronous=FULL, one writer (BEGIN IMMEDIATE).
        let pool = appealflow::store::sqlite::SqliteStore::connect(&db.url, Arc::new(NoJobs)).await.unwrap();
        let start = Instant::now();
        for i in 0..n {
            let mut read = pool.pool().acquire().await.unwrap();
            let mut conn = pool.pool().acquire().await.unwrap();
            raw_step!(read, sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await.unwrap(), step(i));
        }
        n as f64 / start.elapsed().as_secs_f64()
    } else {
        let pool = appealflow::store::postgres::PgStore::connect(&db.url, Arc::new(NoJobs)).await.unwrap();
        let start = Instant::now();
        for i in 0..n {
            let mut read = pool.pool().acquire().await.unwrap();
            raw_step!(read, pool.pool().begin().await.unwrap(), step(i));
        }
        n as f64 / start.elapsed().as_secs_f64()
    }
}

/// The raw runs enqueue nothing (a claim or release causes no job).
pub struct NoJobs;

#[async_trait::async_trait]
impl appealflow::store::JobWriter for NoJobs {
    async fn write_sqlite(
        &self,
        _: &mut appealflow::store::SqliteConn,
        _: &[appealflow::store::JobRef],
    ) -> Result<(), appealflow::store::StoreError> {
        Ok(())
    }
    async fn write_postgres(
        &self,
        _: &mut appealflow::store::PgConn,
        _: &[appealflow::store::JobRef],
    ) -> Result<(), appealflow::store::StoreError> {
        Ok(())
    }
}

pub async fn compare(backend: &'static str, db: &common::TestDb, raw_db: &common::TestDb, n: usize) -> Row {
    let raw = raw_run(raw_db, n).await;
    let engine = engine_run(db, n).await;
    Row::rates(backend, format!("transition (claim/release, keyed), {n} sequential"), engine, raw, "≥ 0.80")
}
