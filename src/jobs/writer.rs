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
            apalis_sqlite::queries::push_tasks(&mut *conn, queue, &tasks).await.map_err(queue_error)?;
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
