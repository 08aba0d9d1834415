//! A claim or a release by hand: the statements `Engine::fire` issues for these two
//! transitions (as `RUST_LOG=sqlx::query=debug` shows them), with the same values — the
//! command's one read (appeal, due timers, key), then one transaction writing the key with
//! its answer, the appeal's new state, the event, and the claim's expiry timer (armed by a
//! claim, cancelled by a release). Shared by the ceiling bench (against the engine on the
//! same database) and the queue bench (the same statements on a seeded database and on an
//! empty one).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub const LOAD: &str = "SELECT a.*,
        EXISTS (SELECT 1 FROM timers t
                WHERE t.appeal_id = a.id AND t.status = 'armed' AND t.due_at <= $2) AS timer_due,
        k.fingerprint AS key_fingerprint, k.response AS key_response, k.created_at AS key_created_at
 FROM (SELECT 1 AS here) AS here
 LEFT JOIN appeals a ON a.ticket = $1
 LEFT JOIN idempotency_keys k ON k.key = $3";
pub const KEY: &str = "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES ($1, $2, $3, $4)
 ON CONFLICT (key) DO NOTHING";
pub const APPEAL: &str = "UPDATE appeals SET state = $1, outcome = $2, version = $3, assignee = $4, updated_at = $5
 WHERE id = $6 AND version = $7";
pub const EVENT: &str =
    "INSERT INTO appeal_events (appeal_id, seq, transition, from_state, to_state, outcome, actor, role,
                             reasons, payload, at)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub const ARM: &str = "INSERT INTO timers (appeal_id, name, generation, due_at, status, armed_at)
 VALUES ($1, $2, (SELECT COALESCE(MAX(generation), 0) + 1 FROM timers WHERE appeal_id = $1 AND name = $2),
         $3, 'armed', $4)";
pub const CANCEL: &str = "UPDATE timers SET status = 'cancelled', settled_at = $1
 WHERE appeal_id = $2 AND name = $3 AND status = 'armed'";

/// What one transition writes, whatever the backend.
pub struct Step<'a> {
    pub ticket: &'a str,
    pub key: String,
    /// "claim" or "release".
    pub name: &'static str,
    pub now: DateTime<Utc>,
}

/// Where one transition's time went: the read, the writes, the commit.
#[derive(Default, Clone, Copy)]
pub struct Split {
    pub load: Duration,
    pub writes: Duration,
    pub commit: Duration,
}

impl std::ops::AddAssign for Split {
    fn add_assign(&mut self, o: Split) {
        self.load += o.load;
        self.writes += o.writes;
        self.commit += o.commit;
    }
}

/// Runs one [`Step`]: the read on `$read`, the writes in the transaction `$begin` opens
/// (an expression, evaluated after the read); answers its [`Split`].
macro_rules! raw_step {
    ($read:expr, $begin:expr, $s:expr) => {{
        use appealflow::store::codec::Stamp;

        use sqlx::types::Json;
        let s = $s;
        let start = std::time::Instant::now();
        let row = sqlx::query(LOAD).bind(s.ticket).bind(Stamp(s.now)).bind(&s.key).fetch_one(&mut *$read).await.unwrap();
        let id: String = sqlx::Row::get(&row, "id");
        let version: i64 = sqlx::Row::get(&row, "version");
        let state: String = sqlx::Row::get(&row, "state");
        let (to, assignee) = if s.name == "claim" { ("under_review", Some("bench")) } else { ("submitted", None) };
        let answer = serde_json::json!({
            "ticket": s.ticket, "transition": s.name, "from": state, "state": to, "outcome": null,
            "version": version + 1, "replayed": false, "also": []
        });
        let print = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(answer.to_string().as_bytes()));
        let loaded = std::time::Instant::now();
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
        let written = std::time::Instant::now();
        tx.commit().await.unwrap();
        Split { load: loaded - start, writes: written - loaded, commit: written.elapsed() }
    }};
}

/// The raw runs enqueue nothing (a claim or release causes no job).
struct NoJobs;

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

/// A database the raw transitions run on, opened with the store's own settings (on
/// SQLite: WAL, synchronous=FULL, one writer by `BEGIN IMMEDIATE`).
pub enum RawDb {
    Sqlite(appealflow::store::sqlite::SqliteStore),
    Pg(appealflow::store::postgres::PgStore),
}

impl RawDb {
    pub async fn open(url: &str) -> RawDb {
        if url.starts_with("sqlite") {
            RawDb::Sqlite(appealflow::store::sqlite::SqliteStore::connect(url, Arc::new(NoJobs)).await.unwrap())
        } else {
            RawDb::Pg(appealflow::store::postgres::PgStore::connect(url, Arc::new(NoJobs)).await.unwrap())
        }
    }

    /// Runs one [`Step`] in its own transaction.
    pub async fn step(&self, step: Step<'_>) -> Split {
        match self {
            RawDb::Sqlite(store) => {
                let mut read = store.pool().acquire().await.unwrap();
                let mut conn = store.pool().acquire().await.unwrap();
                raw_step!(read, sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await.unwrap(), step)
            }
            RawDb::Pg(store) => {
                let mut read = store.pool().acquire().await.unwrap();
                raw_step!(read, store.pool().begin().await.unwrap(), step)
            }
        }
    }
}
