//! The schema, appeals, their history and timers, idempotency.

use super::*;
use sqlx::{FromRow, Row};

/// A command's reads as one statement: the appeal (left-joined, so a missing one still
/// answers a row), whether a timer of it is due, and the idempotency key's record.
macro_rules! load_for_command {
    ($by:literal) => {
        concat!(
            "SELECT a.*,
                    EXISTS (SELECT 1 FROM timers t
                            WHERE t.appeal_id = a.id AND t.status = 'armed' AND t.due_at <= $2) AS timer_due,
                    k.fingerprint AS key_fingerprint, k.response AS key_response, k.created_at AS key_created_at
             FROM (SELECT 1 AS here) AS here
             LEFT JOIN appeals a ON a.",
            $by,
            " = $1
             LEFT JOIN idempotency_keys k ON k.key = $3"
        )
    };
}
const LOAD_BY_TICKET: &str = load_for_command!("ticket");
const LOAD_BY_ID: &str = load_for_command!("id");

#[async_trait]
impl Database for Backend {
    fn backend(&self) -> &'static str {
        Self::NAME
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = Self::migrator();
        // Our own bookkeeping table, so the job queue's migrations never collide with ours.
        migrator.dangerous_set_table_name("appealflow_migrations");
        migrator.run(&self.pool).await?;
        Ok(())
    }

    async fn timer_armed(&self) {
        self.wait_armed().await;
    }

    async fn close(&self) {
        self.before_close().await;
        self.pool.close().await;
        self.reads.close().await;
    }

    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM appealflow_migrations WHERE success")
            .fetch_all(&self.reads)
            .await?;
        Ok(Self::migrator().iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect())
    }

    fn scope(&self) -> &str {
        &self.scope
    }
}

#[async_trait]
impl AppealStore for Backend {
    async fn commit(&self, uow: &UnitOfWork) -> Result<(), CommitError> {
        self.commit_uow(uow).await
    }

    async fn fire_due_timers(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        appeal_id: Option<&str>,
        besides: &[String],
        handler: &dyn TimerHandler,
    ) -> Result<Vec<TimerFiring>, StoreError> {
        self.fire_due(now, limit, appeal_id, besides, handler).await
    }

    fn timer_lanes(&self) -> usize {
        Self::TIMER_LANES
    }

    async fn between_batches(&self, since_pause: std::time::Duration) -> bool {
        if Self::BATCH_GAP.is_zero() || since_pause < Self::BATCH_GAP_EVERY {
            return false;
        }
        // Taken by the next batch to take the write turn, whichever lane's it is.
        self.gap_before_next_batch();
        true
    }

    async fn load_for_command(
        &self,
        key: AppealKey<'_>,
        now: DateTime<Utc>,
        idempotency: Option<&str>,
    ) -> Result<CommandLoad, StoreError> {
        let (sql, value) = match key {
            AppealKey::Ticket(t) => (LOAD_BY_TICKET, t.as_str()),
            AppealKey::Id(id) => (LOAD_BY_ID, id),
        };
        let row = sqlx::query(sql).bind(value).bind(Stamp(now)).bind(idempotency).fetch_one(&self.reads).await?;
        let found: Option<String> = row.try_get("id")?;
        let appeal = match found {
            Some(_) => Some(AppealRecord::from_row(&row)?),
            None => None,
        };
        let fingerprint: Option<String> = row.try_get("key_fingerprint")?;
        let idempotency = match (idempotency, fingerprint) {
            (Some(key), Some(fingerprint)) => {
                let response: Json<serde_json::Value> = row.try_get("key_response")?;
                let created_at: Stamp = row.try_get("key_created_at")?;
                Some(IdempotencyRecord {
                    key: key.to_string(),
                    fingerprint,
                    response: response.0,
                    created_at: created_at.0,
                })
            }
            _ => None,
        };
        Ok(CommandLoad { timer_due: appeal.is_some() && row.try_get::<bool, _>("timer_due")?, appeal, idempotency })
    }

    async fn appeal_by_ticket(&self, ticket: &TicketNumber) -> Result<Option<AppealRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM appeals WHERE ticket = $1")
            .bind(ticket.as_str())
            .fetch_optional(&self.reads)
            .await?)
    }

    async fn progress_rows(&self, ticket: &TicketNumber, phone: &str) -> Result<Option<ProgressRows>, StoreError> {
        let mine = format!("x.appeal_id = a.id AND {} = $2", Self::CONTACT_PHONE);
        let history = Self::json_rows(
            &format!(
                "'seq', x.seq, 'transition', x.transition, 'from', x.from_state, 'to', x.to_state,
                 'outcome', x.outcome, 'actor', x.actor, 'role', x.role, 'reasons', {}, 'payload', {}, 'at', x.at",
                Self::embed_json("x.reasons"),
                Self::embed_json("x.payload")
            ),
            &format!("appeal_events x WHERE {mine}"),
            "x.seq",
        );
        let timers = Self::json_rows(
            "'id', x.id, 'appeal_id', x.appeal_id, 'ticket', a.ticket, 'name', x.name, 'generation', x.generation,
             'due_at', x.due_at, 'status', x.status, 'armed_at', x.armed_at, 'settled_at', x.settled_at",
            &format!("timers x WHERE {mine}"),
            "x.due_at, x.id",
        );
        let sql =
            format!("SELECT a.*, ({history}) AS history, ({timers}) AS timers FROM appeals a WHERE a.ticket = $1");
        let Some(row) =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ticket.as_str()).bind(phone).fetch_optional(&self.reads).await?
        else {
            return Ok(None);
        };
        let appeal = AppealRecord::from_row(&row)?;
        let Json(mut history): Json<Vec<EventRecord>> = row.try_get("history")?;
        let Json(mut timers): Json<Vec<TimerRecord>> = row.try_get("timers")?;
        history.sort_by_key(|e| e.seq);
        timers.sort_by_key(|x| (x.due_at, x.id));
        Ok(Some(ProgressRows { appeal, history, timers }))
    }

    async fn appeal_by_id(&self, id: &str) -> Result<Option<AppealRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM appeals WHERE id = $1").bind(id).fetch_optional(&self.reads).await?)
    }

    async fn list_appeals(&self, filter: &AppealFilter) -> Result<Vec<AppealRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM appeals WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) ORDER BY created_at, id LIMIT $2",
        )
        .bind(&filter.state)
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.reads)
        .await?)
    }

    async fn history(&self, appeal_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM appeal_events WHERE appeal_id = $1 ORDER BY seq")
            .bind(appeal_id)
            .fetch_all(&self.reads)
            .await?)
    }

    async fn timers(&self, appeal_id: Option<&str>) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE {} ORDER BY t.due_at, t.id",
            equals_if(appeal_id, "t.appeal_id", 1)
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(appeal_id).fetch_all(&self.reads).await?)
    }

    async fn timers_armed_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE t.id > $1 AND t.armed_at >= $2 AND t.armed_at < $3 ORDER BY t.id LIMIT $4"
        );
        let q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(after_id).bind(Stamp(from)).bind(Stamp(to));
        Ok(q.bind(limit).fetch_all(&self.reads).await?)
    }

    async fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: MaybeStamp =
            sqlx::query_scalar("SELECT MIN(due_at) FROM timers WHERE status = 'armed'").fetch_one(&self.reads).await?;
        Ok(next.into())
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE t.status = 'armed' AND t.due_at <= $1 ORDER BY t.due_at, t.id LIMIT $2"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(Stamp(now)).bind(limit).fetch_all(&self.reads).await?)
    }

    async fn remember_idempotency(&self, r: &IdempotencyRecord) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(Self::insert_idempotency(&mut conn, r, Stamp(r.created_at)).await?)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.reads)
            .await?)
    }

    async fn claims_by_holder(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT assignee, COUNT(*) FROM appeals WHERE outcome IS NULL AND assignee IS NOT NULL
             GROUP BY assignee ORDER BY COUNT(*) DESC, assignee",
        )
        .fetch_all(&self.reads)
        .await?)
    }

    async fn review_queue(&self, filter: &crate::store::QueueFilter) -> Result<crate::store::QueueSlice, StoreError> {
        self.queue_slice(filter).await
    }

    async fn open_appeal_for(&self, account: &str) -> Result<Option<AppealRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM appeals WHERE account = $1 AND outcome IS NULL")
            .bind(account)
            .fetch_optional(&self.reads)
            .await?)
    }

    async fn appeals_of_account(&self, account: &str) -> Result<Vec<AppealRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM appeals WHERE account = $1 ORDER BY created_at, id")
            .bind(account)
            .fetch_all(&self.reads)
            .await?)
    }
}
