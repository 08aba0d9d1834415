//! The schema, appeals, their history and timers, idempotency.

use super::*;

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

    async fn close(&self) {
        self.before_close().await;
        self.pool.close().await;
    }

    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM appealflow_migrations WHERE success").fetch_all(&self.pool).await?;
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
        handler: &dyn TimerHandler,
    ) -> Result<Vec<TimerFiring>, StoreError> {
        self.fire_due(now, limit, appeal_id, handler).await
    }

    async fn appeal_by_ticket(&self, ticket: &TicketNumber) -> Result<Option<AppealRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM appeals WHERE ticket = $1")
            .bind(ticket.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn appeal_by_id(&self, id: &str) -> Result<Option<AppealRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM appeals WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
    }

    async fn list_appeals(&self, filter: &AppealFilter) -> Result<Vec<AppealRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM appeals WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) ORDER BY created_at, id LIMIT $2",
        )
        .bind(&filter.state)
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn history(&self, appeal_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM appeal_events WHERE appeal_id = $1 ORDER BY seq")
            .bind(appeal_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn timers(&self, appeal_id: Option<&str>) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE (CAST($1 AS TEXT) IS NULL OR t.appeal_id = $1) ORDER BY t.due_at, t.id"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(appeal_id).fetch_all(&self.pool).await?)
    }

    async fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: MaybeStamp =
            sqlx::query_scalar("SELECT MIN(due_at) FROM timers WHERE status = 'armed'").fetch_one(&self.pool).await?;
        Ok(next.into())
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE t.status = 'armed' AND t.due_at <= $1 ORDER BY t.due_at, t.id LIMIT $2"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(Stamp(now)).bind(limit).fetch_all(&self.pool).await?)
    }

    async fn remember_idempotency(&self, r: &IdempotencyRecord) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(Self::insert_idempotency(&mut conn, r, Stamp(r.created_at)).await?)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM idempotency_keys WHERE key = $1").bind(key).fetch_optional(&self.pool).await?)
    }

    async fn claims_by_holder(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT assignee, COUNT(*) FROM appeals WHERE outcome IS NULL AND assignee IS NOT NULL
             GROUP BY assignee ORDER BY COUNT(*) DESC, assignee",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn review_queue(&self, filter: &crate::store::QueueFilter) -> Result<crate::store::QueueSlice, StoreError> {
        self.queue_slice(filter).await
    }

    async fn open_appeal_for(&self, account: &str) -> Result<Option<AppealRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM appeals WHERE account = $1 AND outcome IS NULL")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?)
    }
}
