//! appealflow's jobs written into apalis's tables through the transaction of the commit
//! that causes them: on PostgreSQL with apalis's own `push_tasks` (one statement for
//! all), on SQLite with its insert written for many rows at once (`store::sqlite::push_jobs`).

use super::*;
use crate::store::QueuedJob;

/// Writes appealflow's jobs into apalis's tables through the caller's transaction, as
/// apalis's own `push_tasks` writes them (so the rows are exactly what its workers poll
/// for).
#[derive(Debug, Clone)]
pub struct ApalisJobs {
    max_attempts: usize,
}

impl ApalisJobs {
    pub fn new(max_attempts: usize) -> Self {
        ApalisJobs { max_attempts: max_attempts.max(1) }
    }

    /// The jobs grouped by queue, as apalis tasks (JSON arguments, idempotency keys).
    pub fn tasks(&self, jobs: &[JobRef]) -> Vec<(&'static str, Vec<Task<Vec<u8>>>)> {
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
    /// apalis-sqlite's `push_tasks` sends one statement per task; the rows here are the
    /// ones it writes (each value computed as there), sent many to a statement.
    async fn write_sqlite(&self, conn: &mut SqliteConn, jobs: &[JobRef]) -> Result<(), StoreError> {
        let tasks = self.tasks(jobs);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let rows: Vec<QueuedJob> = tasks
            .iter()
            .flat_map(|(queue, tasks)| {
                tasks.iter().map(move |task| QueuedJob {
                    args: &task.args,
                    id: task.task_id().map(|id| id.to_string()).unwrap_or_else(|| ulid::Ulid::generate().to_string()),
                    queue,
                    max_attempts: task.max_attempts().unwrap_or(25) as i64,
                    run_at: task.run_at().unwrap_or(now) as i64,
                    priority: task.priority().unwrap_or_default() as i64,
                    metadata: serde_json::to_string(task.metadata()).unwrap_or_default(),
                    idempotency_key: task.idempotency_key(),
                })
            })
            .collect();
        crate::store::sqlite::push_jobs(conn, &rows).await
    }

    async fn write_postgres(&self, conn: &mut PgConn, jobs: &[JobRef]) -> Result<(), StoreError> {
        for (queue, tasks) in self.tasks(jobs) {
            apalis_postgres::queries::push_tasks(&mut *conn, queue, tasks).await.map_err(queue_error)?;
        }
        Ok(())
    }
}
