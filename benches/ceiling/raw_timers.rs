//! The burn-down by hand (ceiling/timers.rs): the engine's statements for a batch, with
//! the same rows, in two lanes as the engine's timer loop runs them — one claim at a
//! time, each leaving out the appeals the other lane holds, a lane ending when a claim
//! besides nothing fires nothing. On PostgreSQL a batch claims under its row locks and
//! writes in the same transaction; on SQLite it claims on a read connection (no write
//! lock), then takes the write lock (one batch of the process at a time, in turn), reads
//! back which claimed timers are still armed and their appeals' versions, and writes —
//! as the engine's `fire_due_read_first`. The writes, set-wise behind one savepoint: the
//! timers settled, the appeals' new versions with the queue's copy of whether the review
//! SLA fired, the events, the leads' notifications (the bodies the engine rendered) and
//! their delivery jobs (by the same job writer); one commit per batch, each kind of row
//! of a batch in one statement.
//! No pause between batches: the 2 ms the engine's loop leaves the lock free to other
//! writers (`between_batches`) is part of what the engine adds.

use std::sync::Arc;

use appealflow::jobs::ApalisJobs;
use appealflow::store::codec::Stamp;
use appealflow::store::{JobRef, JobWriter};
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::timers::{Written, batch};

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

/// Which of the claimed timers are still armed, with their appeals' versions (SQLite,
/// under the write lock).
const STILL_ARMED: &str = "SELECT t.id, a.version FROM timers t JOIN appeals a ON a.id = t.appeal_id
 WHERE t.id IN (SELECT value FROM json_each($1)) AND t.status = 'armed'";

/// A claimed firing: (appeal id, version, state, timer id, event, what it wrote).
type Firing<'w> = (String, i64, String, i64, &'static str, &'w Written);

/// Claims a batch on `$conn` (the appeals the other lane holds left out), reads its
/// timers, and tells the lane what it holds.
macro_rules! raw_claim {
    ($conn:expr, $db:ty, $warning:expr, $breach:expr, $now:expr, $lane:expr) => {{
        let tx = $conn;
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
        if !firings.is_empty() {
            let ids: Vec<&String> = firings.iter().map(|f| &f.0).collect();
            let read = if stringify!($db).contains("Sqlite") { TIMERS_SQLITE } else { TIMERS_POSTGRES };
            let _timers = sqlx::query(read).bind(Json(&ids)).fetch_all(&mut *tx).await.unwrap();
            (lane.claimed)(ids.iter().map(|id| id.to_string()).collect());
        }
        firings
    }};
}

/// Writes a claimed batch's firings on `$tx`, set-wise behind one savepoint.
macro_rules! raw_write {
    ($tx:expr, $db:ty, $jobs:expr, $write_jobs:ident, $firings:expr, $now:expr) => {{
        let tx = $tx;
        let now = Stamp($now);
        let firings: &[Firing] = $firings;
        let mut sp = sqlx::Connection::begin(&mut *tx).await.unwrap();
        let mut q = sqlx::QueryBuilder::<$db>::new(FIRED);
        q.push_values(firings, |mut b, f| {
            b.push_bind(f.3).push_bind(&f.0).push_bind(now);
        });
        q.push(FIRED_WHERE);
        assert_eq!(q.build().execute(&mut *sp).await.unwrap().rows_affected(), firings.len() as u64);
        let mut q = sqlx::QueryBuilder::<$db>::new(APPEALS);
        q.push_values(firings, |mut b, f| {
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
        q.push_values(firings, |mut b, f| {
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
        q.push_values(firings, |mut b, f| {
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
    }};
}

/// A raw batch's lane: the appeals the other holds; once its claim is read, what to do.
struct RawLane<'a> {
    besides: Vec<String>,
    claimed: Box<dyn FnMut(Vec<String>) + Send + 'a>,
}

/// The burn-down by hand on `db`: its rate and how many timers fired.
pub async fn burn_down(
    db: &super::common::TestDb,
    warning: Written,
    breach: Written,
    now: DateTime<Utc>,
) -> (f64, usize) {
    let jobs = ApalisJobs::new(appealflow::jobs::WorkerSettings::default().max_attempts);
    let sqlite = db.url.starts_with("sqlite");
    let (lite, pg, reads) = if sqlite {
        let store = appealflow::store::sqlite::SqliteStore::connect(&db.url, Arc::new(jobs.clone())).await.unwrap();
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&db.url)
            .unwrap()
            .pragma("query_only", "ON");
        let reads = sqlx::sqlite::SqlitePoolOptions::new().max_connections(2).connect_with(options).await.unwrap();
        (Some(store), None, Some(reads))
    } else {
        let store = appealflow::store::postgres::PgStore::connect(&db.url, Arc::new(jobs.clone())).await.unwrap();
        (None, Some(store), None)
    };
    let turn = tokio::sync::Mutex::new(());
    let write_turn = tokio::sync::Mutex::new(());
    let held: std::sync::Mutex<[Vec<String>; 2]> = Default::default();
    let ended = tokio::sync::Notify::new();
    let start = std::time::Instant::now();
    let lane = |me: usize| {
        let (lite, pg, reads, jobs) = (&lite, &pg, &reads, &jobs);
        let (turn, write_turn, held, ended) = (&turn, &write_turn, &held, &ended);
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
                let fired = if let (Some(store), Some(reads)) = (lite, reads) {
                    let mut reader = reads.acquire().await.unwrap();
                    let mut read = sqlx::Connection::begin_with(&mut *reader, "BEGIN DEFERRED").await.unwrap();
                    let firings: Vec<Firing> = raw_claim!(&mut *read, sqlx::Sqlite, *warning, *breach, now, &mut lane);
                    read.commit().await.unwrap();
                    if !firings.is_empty() {
                        let _turn = write_turn.lock().await;
                        let mut conn = store.pool().acquire().await.unwrap();
                        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await.unwrap();
                        let ids: Vec<i64> = firings.iter().map(|f| f.3).collect();
                        let mut armed: Vec<(i64, i64)> =
                            sqlx::query_as(STILL_ARMED).bind(Json(&ids)).fetch_all(&mut *tx).await.unwrap();
                        armed.sort();
                        let mut claimed: Vec<(i64, i64)> = firings.iter().map(|f| (f.3, f.1)).collect();
                        claimed.sort();
                        assert_eq!(armed, claimed, "nothing else changes the claimed timers or their appeals");
                        raw_write!(&mut *tx, sqlx::Sqlite, jobs, write_sqlite, &firings, now);
                        tx.commit().await.unwrap();
                    }
                    firings.len()
                } else {
                    let store = pg.as_ref().unwrap();
                    let mut tx = store.pool().begin().await.unwrap();
                    let firings: Vec<Firing> = raw_claim!(&mut *tx, sqlx::Postgres, *warning, *breach, now, &mut lane);
                    if !firings.is_empty() {
                        raw_write!(&mut *tx, sqlx::Postgres, jobs, write_postgres, &firings, now);
                    }
                    tx.commit().await.unwrap();
                    firings.len()
                };
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
