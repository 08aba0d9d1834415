//! appealflow's jobs written into apalis's tables through the transaction of the commit
//! that causes them, with apalis's own `push_tasks`.

use super::*;

/// Writes appealflow's jobs into apalis's tables through the caller's transaction, with
/// apalis's own `push_tasks` (so the rows are exactly what its workers poll for).
#[derive(Debug, Clone)]
pub struct ApalisJobs {
    max_attempts: usize,
}

impl ApalisJobs {
    pub fn new(max_attempts: usize) -> Self {
        ApalisJobs { max_attempts: max_attempts.max(1) }
    }

    /// The jobs grouped by queue, as apalis tasks (JSON arguments, idempotency keys).
    fn tasks(&self, jobs: &[JobRef]) -> Vec<(&'static str, Vec<Task<Vec<u8>>>)> {
        let mut out: Vec<(&'static str, Vec<Task<Vec<u8>>>)> = Vec::new();
        for job in jobs {
            let (queue, args, key) = match job {
                JobRef::Action(id) => {
                    (ACTIONS_QUEUE, serde_json::to_vec(&ActionJob { action_id: *id }), format!("action:{id}"))
                }
                JobRef::ActionRetry { id, nonce } => (
                    ACTIONS_QUEUE,
                    serde_json::to_vec(&ActionJob { action_id: *id }),
                    format!("action:{id}:retry:{nonce}"),
                ),
                JobRef::Notification(id) => (
                    NOTIFICATIONS_QUEUE,
                    serde_json::to_vec(&NotificationJob { notification_id: *id }),
                    format!("notification:{id}"),
                ),
            };
            let task = TaskBuilder::new(args.expect("job arguments serialise"))
                .max_attempts(self.max_attempts)
                .idempotency_key(key)
                .build();
            match out.iter_mut().find(|(q, _)| *q == queue) {
                Some((_, tasks)) => tasks.push(task),
                None => out.push((queue, vec![task])),
            }
        }
        out
    }
}

fn queue_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Queue(e.to_string())
}

#[async_trait]
impl JobWriter for ApalisJobs {
    async fn write_sqlite(&self, conn: &mut SqliteConn, jobs: &[JobRef]) -> Result<(), StoreError> {
        for (queue, tasks) in self.tasks(jobs) {
            if tasks.len() == 1 {
                apalis_sqlite::queries::push_tasks(&mut *conn, queue, &tasks).await.map_err(queue_error)?;
                continue;
            }
            // Many at once (a batch of timer firings): apalis's own statement for one
            // task (`queries/task/sink.sql`, the same columns and values as its
            // `push_tasks` writes), as one multi-row INSERT per 1,000 tasks instead of a
            // statement per task.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
            for chunk in tasks.chunks(1000) {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO Jobs ");
                q.push_values(chunk, |mut b, task| {
                    let id =
                        task.task_id().as_ref().map_or_else(|| ulid::Ulid::generate().to_string(), |id| id.to_string());
                    b.push_bind(task.args.clone())
                        .push_bind(id)
                        .push_bind(queue)
                        .push("'Pending'")
                        .push("0")
                        .push_bind(task.max_attempts().unwrap_or(25) as i64)
                        .push_bind(task.run_at().unwrap_or(now) as i64)
                        .push("NULL")
                        .push("NULL")
                        .push("NULL")
                        .push("NULL")
                        .push_bind(task.priority().unwrap_or_default() as i64)
                        .push_bind(serde_json::to_string(task.metadata()).unwrap_or_default())
                        .push_bind(task.idempotency_key().map(str::to_string));
                });
                q.push(" ON CONFLICT(job_type, idempotency_key) DO NOTHING");
                q.build().execute(&mut *conn).await.map_err(queue_error)?;
            }
        }
        Ok(())
    }

    async fn write_postgres(&self, conn: &mut PgConn, jobs: &[JobRef]) -> Result<(), StoreError> {
        for (queue, tasks) in self.tasks(jobs) {
            apalis_postgres::queries::push_tasks(&mut *conn, queue, tasks).await.map_err(queue_error)?;
        }
        Ok(())
    }
}
