//! sqlite: the worker's actions and notifications, and queue administration on apalis's table.

use super::*;

#[async_trait]
impl WorkStore for SqliteStore {
    async fn legacy_effects(&self, limit: i64) -> Result<Vec<LegacyEffect>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE status <> 'done' ORDER BY id LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(LegacyEffect {
                    id: row.try_get("id")?,
                    appeal_id: row.try_get("appeal_id")?,
                    event_seq: row.try_get("event_seq")?,
                    effect: row.try_get("effect")?,
                    template: row.try_get("template")?,
                    recipient: row.try_get("recipient")?,
                    idempotency_key: row.try_get("idempotency_key")?,
                })
            })
            .collect()
    }

    async fn action(&self, id: i64) -> Result<Option<ActionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT x.*, a.ticket FROM appeal_actions x JOIN appeals a ON a.id = x.appeal_id WHERE x.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::action_row).transpose()
    }

    async fn actions(&self, filter: &WorkFilter) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT x.*, a.ticket FROM appeal_actions x JOIN appeals a ON a.id = x.appeal_id
             WHERE (?1 IS NULL OR x.appeal_id = ?1) AND (?2 IS NULL OR x.status = ?2) ORDER BY x.id LIMIT ?3",
        )
        .bind(&filter.appeal_id)
        .bind(&filter.status)
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::action_row).collect()
    }

    async fn retry_action(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE appeal_actions SET status = 'pending', updated_at = ? WHERE id = ? AND status = 'failed'",
        )
        .bind(ts(at))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        self.jobs.write_sqlite(&mut tx, &[JobRef::ActionRetry { id, nonce }]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn notification(&self, id: i64) -> Result<Option<NotificationRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM notifications WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::notification_row).transpose()
    }

    async fn notifications(&self, filter: &WorkFilter) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE (?1 IS NULL OR appeal_id = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY id LIMIT ?3",
        )
        .bind(&filter.appeal_id)
        .bind(&filter.status)
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::notification_row).collect()
    }

    async fn chain(&self, chain: &str) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM notifications WHERE chain = ? ORDER BY position, id")
            .bind(chain)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::notification_row).collect()
    }

    async fn unqueued_work(&self, limit: i64) -> Result<Vec<JobRef>, StoreError> {
        let rows = sqlx::query(
            "SELECT 'notification' AS kind, n.id AS id FROM notifications n
             WHERE n.status = 'pending'
               AND NOT EXISTS (SELECT 1 FROM Jobs j WHERE j.job_type = 'appealflow.notifications'
                               AND j.idempotency_key = 'notification:' || n.id)
             UNION ALL
             SELECT 'action' AS kind, x.id AS id FROM appeal_actions x
             WHERE x.status = 'pending' AND NOT x.manual
               AND NOT EXISTS (SELECT 1 FROM Jobs j WHERE j.job_type = 'appealflow.actions'
                               AND (j.idempotency_key = 'action:' || x.id
                                    OR j.idempotency_key LIKE 'action:' || x.id || ':retry:%'))
             ORDER BY id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                let id: i64 = row.try_get("id")?;
                Ok(if kind == "action" { JobRef::Action(id) } else { JobRef::Notification(id) })
            })
            .collect()
    }

    async fn enqueue(&self, jobs: &[JobRef]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.jobs.write_sqlite(&mut tx, jobs).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl QueueAdmin for SqliteStore {
    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, job_type, status, attempts, max_attempts, run_at, last_result, CAST(job AS TEXT) AS args
             FROM Jobs
             WHERE (?1 IS NULL OR job_type = ?1)
               AND (?2 = 0 OR (status = 'Failed' AND attempts >= max_attempts) OR status = 'Killed')
             ORDER BY run_at DESC, id DESC LIMIT ?3",
        )
        .bind(&filter.queue)
        .bind(filter.dead_only)
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status = JobStatus::parse(&row.try_get::<String, _>("status")?)?;
                let attempts: i64 = row.try_get("attempts")?;
                let max_attempts: i64 = row.try_get("max_attempts")?;
                let run_at: i64 = row.try_get("run_at")?;
                let args: Option<String> = row.try_get("args")?;
                Ok(JobRecord {
                    id: row.try_get("id")?,
                    queue: row.try_get("job_type")?,
                    dead: status == JobStatus::Killed || (status == JobStatus::Failed && attempts >= max_attempts),
                    status,
                    attempts,
                    max_attempts,
                    run_at: DateTime::from_timestamp(run_at, 0).unwrap_or_default(),
                    last_result: row.try_get("last_result")?,
                    args: args.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn runnable_jobs(&self, queues: &[&str]) -> Result<i64, StoreError> {
        let list = serde_json::to_string(queues).expect("names serialise");
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM Jobs
             WHERE job_type IN (SELECT value FROM json_each(?))
               AND (status IN ('Queued', 'Running')
                    OR (status = 'Pending' AND (run_at IS NULL OR run_at <= CAST(strftime('%s', 'now') AS INTEGER)))
                    OR (status = 'Failed' AND attempts < max_attempts
                        AND (run_at IS NULL OR run_at <= CAST(strftime('%s', 'now') AS INTEGER))))",
        )
        .bind(list)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    async fn retry_job(&self, job_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE Jobs SET status = 'Pending', attempts = 0, run_at = CAST(strftime('%s', 'now') AS INTEGER),
                    lock_by = NULL, lock_at = NULL, done_at = NULL
             WHERE id = ? AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn retire_queue(&self, queue: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE Jobs SET status = 'Done', done_at = CAST(strftime('%s', 'now') AS INTEGER),
                    last_result = '{\"Ok\": \"retired: carried out by the upgrade\"}'
             WHERE job_type = ? AND status NOT IN ('Done', 'Killed')",
        )
        .bind(queue)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn gauges(&self, breach_timer: &str) -> Result<Gauges, StoreError> {
        let appeals_by_state: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM appeals GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?;
        let jobs_by_status: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM Jobs GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
        let dead_jobs: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM Jobs WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)",
        )
        .fetch_one(&self.pool)
        .await?;
        let sla_breaches: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM timers WHERE name = ? AND status = 'fired'")
            .bind(breach_timer)
            .fetch_one(&self.pool)
            .await?;
        Ok(Gauges { appeals_by_state, jobs_by_status, dead_jobs, sla_breaches })
    }
}
