//! sqlite: the schema, appeals, their history and timers, commits, idempotency.

use super::*;

#[async_trait]
impl Database for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        // Our own bookkeeping table, so the job queue's migrations never collide with ours.
        migrator.dangerous_set_table_name("appealflow_migrations");
        migrator.run(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await {
            tracing::warn!(error = %e, "the WAL checkpoint at shutdown failed; the next open replays the log");
        }
        self.pool.close().await;
    }

    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM appealflow_migrations WHERE success").fetch_all(&self.pool).await?;
        Ok(sqlx::migrate!("migrations/sqlite").iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect())
    }

    fn scope(&self) -> &str {
        &self.scope
    }
}

#[async_trait]
impl AppealStore for SqliteStore {
    async fn commit(&self, uow: &UnitOfWork) -> Result<(), CommitError> {
        self.commit_inner(uow).await
    }

    async fn fire_due_timers(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        appeal_id: Option<&str>,
        handler: &dyn TimerHandler,
    ) -> Result<Vec<TimerFiring>, StoreError> {
        self.fire_due_inner(now, limit, appeal_id, handler).await
    }

    async fn appeal_by_ticket(&self, ticket: &TicketNumber) -> Result<Option<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE ticket = ?")
            .bind(ticket.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }

    async fn appeal_by_id(&self, id: &str) -> Result<Option<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }

    async fn list_appeals(&self, filter: &AppealFilter) -> Result<Vec<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE (?1 IS NULL OR state = ?1) ORDER BY created_at, id LIMIT ?2")
            .bind(&filter.state)
            .bind(filter.limit.unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::appeal)
            .collect()
    }

    async fn history(&self, appeal_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM appeal_events WHERE appeal_id = ? ORDER BY seq")
            .bind(appeal_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                let reasons: String = row.try_get("reasons")?;
                Ok(EventRecord {
                    seq: row.try_get("seq")?,
                    transition: row.try_get("transition")?,
                    from: row.try_get("from_state")?,
                    to: row.try_get("to_state")?,
                    outcome: row.try_get("outcome")?,
                    actor: row.try_get("actor")?,
                    role: role.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
                    reasons: serde_json::from_str(&reasons).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    payload: parse_json(row.try_get("payload")?)?,
                    at: parse_ts(row.try_get("at")?)?,
                })
            })
            .collect()
    }

    async fn timers(&self, appeal_id: Option<&str>) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE (?1 IS NULL OR t.appeal_id = ?1) ORDER BY t.due_at, t.id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(appeal_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::timer)
            .collect()
    }

    async fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<String> =
            sqlx::query_scalar("SELECT MIN(due_at) FROM timers WHERE status = 'armed'").fetch_one(&self.pool).await?;
        next.as_deref().map(parse_ts).transpose()
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE t.status = 'armed' AND t.due_at <= ? ORDER BY t.due_at, t.id LIMIT ?"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ts(now))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::timer)
            .collect()
    }

    async fn remember_idempotency(&self, r: &IdempotencyRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&r.key)
        .bind(&r.fingerprint)
        .bind(r.response.to_string())
        .bind(ts(r.created_at))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM idempotency_keys WHERE key = ?").bind(key).fetch_optional(&self.pool).await?;
        row.map(|row| {
            Ok(IdempotencyRecord {
                key: row.try_get("key")?,
                fingerprint: row.try_get("fingerprint")?,
                response: parse_json(row.try_get("response")?)?,
                created_at: parse_ts(row.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    async fn open_appeal_for(&self, account: &str) -> Result<Option<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE account = ? AND outcome IS NULL")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }
}
