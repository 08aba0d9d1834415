//! The worker's actions and notifications, and queue administration on the job queue's
//! table. The job table's name, its clock and its JSON columns come
//! from the backend (`Backend::JOBS`, `JOB_NOW`, `JOB_COLUMNS`, `IN_JSON_LIST`).

use super::*;

#[async_trait]
impl WorkStore for Backend {
    async fn legacy_effects(&self, limit: i64) -> Result<Vec<LegacyEffect>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM outbox WHERE status <> 'done' ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(&self.reads)
            .await?)
    }

    async fn action(&self, id: i64) -> Result<Option<ActionRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT x.*, a.ticket FROM appeal_actions x JOIN appeals a ON a.id = x.appeal_id WHERE x.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reads)
        .await?)
    }

    async fn actions(&self, filter: &WorkFilter) -> Result<Vec<ActionRecord>, StoreError> {
        let sql = format!(
            "SELECT x.*, a.ticket FROM appeal_actions x JOIN appeals a ON a.id = x.appeal_id {}",
            listing(filter, "x.")
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&filter.appeal_id)
            .bind(&filter.status)
            .bind(filter.limit.unwrap_or(i64::MAX))
            .fetch_all(&self.reads)
            .await?)
    }

    async fn retry_action(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(Self::BEGIN).await?;
        let done = sqlx::query(
            "UPDATE appeal_actions SET status = 'pending', updated_at = $1 WHERE id = $2 AND status = 'failed'",
        )
        .bind(Stamp(at))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        self.write_jobs(&mut tx, &[JobRef::ActionRetry { id, nonce }]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn notification(&self, id: i64) -> Result<Option<NotificationRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM notifications WHERE id = $1").bind(id).fetch_optional(&self.reads).await?)
    }

    async fn notifications(&self, filter: &WorkFilter) -> Result<Vec<NotificationRecord>, StoreError> {
        let sql = format!("SELECT * FROM notifications {}", listing(filter, ""));
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&filter.appeal_id)
            .bind(&filter.status)
            .bind(filter.limit.unwrap_or(i64::MAX))
            .fetch_all(&self.reads)
            .await?)
    }

    async fn chain(&self, chain: &str) -> Result<Vec<NotificationRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM notifications WHERE chain = $1 ORDER BY position, id")
            .bind(chain)
            .fetch_all(&self.reads)
            .await?)
    }

    async fn unqueued_work(&self, limit: i64) -> Result<Vec<JobRef>, StoreError> {
        let jobs = Self::JOBS;
        let sql = format!(
            "SELECT 'notification' AS kind, n.id AS id FROM notifications n
             WHERE n.status = 'pending'
               AND NOT EXISTS (SELECT 1 FROM {jobs} j WHERE j.job_type = 'appealflow.notifications'
                               AND j.idempotency_key = 'notification:' || n.id)
             UNION ALL
             SELECT 'action' AS kind, x.id AS id FROM appeal_actions x
             WHERE x.status = 'pending' AND NOT x.manual
               AND NOT EXISTS (SELECT 1 FROM {jobs} j WHERE j.job_type = 'appealflow.actions'
                               AND (j.idempotency_key = 'action:' || x.id
                                    OR j.idempotency_key LIKE 'action:' || x.id || ':retry:%'))
             ORDER BY id LIMIT $1"
        );
        let rows: Vec<(String, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(&self.reads).await?;
        Ok(rows
            .into_iter()
            .map(|(kind, id)| if kind == "action" { JobRef::Action(id) } else { JobRef::Notification(id) })
            .collect())
    }

    async fn enqueue(&self, jobs: &[JobRef]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.write_jobs(&mut tx, jobs).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A row of the job queue's table, as `Backend::JOB_COLUMNS` selects it.
#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    job_type: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    #[sqlx(try_from = "Stamp")]
    run_at: DateTime<Utc>,
    last_result: Option<String>,
    args: Option<String>,
}

impl TryFrom<JobRow> for JobRecord {
    type Error = StoreError;

    fn try_from(row: JobRow) -> Result<Self, StoreError> {
        let status = JobStatus::parse(&row.status)?;
        Ok(JobRecord {
            id: row.id,
            queue: row.job_type,
            dead: status == JobStatus::Killed || (status == JobStatus::Failed && row.attempts >= row.max_attempts),
            status,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            run_at: row.run_at,
            last_result: row.last_result,
            args: row.args.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default(),
        })
    }
}

#[async_trait]
impl QueueAdmin for Backend {
    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM {}
             WHERE (CAST($1 AS TEXT) IS NULL OR job_type = $1)
               AND (NOT $2 OR (status = 'Failed' AND attempts >= max_attempts) OR status = 'Killed')
             ORDER BY run_at DESC, id DESC LIMIT $3",
            Self::JOB_COLUMNS,
            Self::JOBS
        );
        let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&filter.queue)
            .bind(filter.dead_only)
            .bind(filter.limit.unwrap_or(i64::MAX))
            .fetch_all(&self.reads)
            .await?;
        rows.into_iter().map(JobRecord::try_from).collect()
    }

    async fn runnable_jobs(&self, queues: &[&str]) -> Result<i64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE job_type IN ({})
               AND (status IN ('Queued', 'Running') OR {})",
            Self::JOBS,
            Self::IN_JSON_LIST,
            to_take(Self::JOB_NOW)
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(Json(queues)).fetch_one(&self.reads).await?)
    }

    async fn job_to_take(&self, queue: &str) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE job_type = $1 AND ({}))",
            Self::JOBS,
            to_take(Self::JOB_NOW)
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(queue).fetch_one(&self.reads).await?)
    }

    async fn retry_job(&self, job_id: &str) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET status = 'Pending', attempts = 0, run_at = {}, lock_by = NULL, lock_at = NULL, done_at = NULL
             WHERE id = $1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))",
            Self::JOBS,
            Self::JOB_NOW
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(job_id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn retire_queue(&self, queue: &str) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE {} SET status = 'Done', done_at = {},
                    last_result = '{{\"Ok\": \"retired: carried out by the upgrade\"}}'
             WHERE job_type = $1 AND status NOT IN ('Done', 'Killed')",
            Self::JOBS,
            Self::JOB_NOW
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(queue).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn gauges(&self, breach_timer: &str) -> Result<Gauges, StoreError> {
        let jobs = Self::JOBS;
        let appeals_by_state: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM appeals GROUP BY state ORDER BY state")
                .fetch_all(&self.reads)
                .await?;
        let jobs_by_status: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT status, COUNT(*) FROM {jobs} GROUP BY status ORDER BY status"
        )))
        .fetch_all(&self.reads)
        .await?;
        let dead_jobs: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {jobs} WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)"
        )))
        .fetch_one(&self.reads)
        .await?;
        let sla_breaches: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM timers WHERE name = $1 AND status = 'fired'")
            .bind(breach_timer)
            .fetch_one(&self.reads)
            .await?;
        Ok(Gauges { appeals_by_state, jobs_by_status, dead_jobs, sla_breaches })
    }
}

/// A work listing's conditions, order and limit on the table aliased `alias` (`"x."`, or
/// `""` for none): `$1` the appeal (when the filter names one), `$2` the status, `$3`
/// the limit.
fn listing(filter: &WorkFilter, alias: &str) -> String {
    format!(
        "WHERE {} AND (CAST($2 AS TEXT) IS NULL OR {alias}status = $2) ORDER BY {alias}id LIMIT $3",
        equals_if(filter.appeal_id.as_deref(), &format!("{alias}appeal_id"), 1)
    )
}

/// The jobs a queue's worker takes when it fetches (`now`: the present, as the job table
/// keeps times): pending, or failed with attempts left, and due.
fn to_take(now: &str) -> String {
    format!(
        "(status = 'Pending' AND (run_at IS NULL OR run_at <= {now}))
         OR (status = 'Failed' AND attempts < max_attempts AND (run_at IS NULL OR run_at <= {now}))"
    )
}
