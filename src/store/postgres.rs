//! The PostgreSQL backend: for many API and worker processes on many machines. Same
//! unit-of-work contract as SQLite; row locks from the optimistic `UPDATE ... WHERE
//! version = $n` serialise concurrent commands on one appeal.
//!
//! The statements live in `store/shared/` (written once for both backends); this file
//! keeps what is PostgreSQL's own: connecting, the row locks of a timer claim, the job
//! queue's table (`apalis.jobs`) and JSON functions.

// Compiled once per backend, by design (see store/shared/mod.rs).
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

use super::{JobRef, JobWriter, StoreError};

type Backend = PgStore;
type Conn = PgConnection;

pub struct PgStore {
    pool: PgPool,
    jobs: Arc<dyn JobWriter>,
    scope: String,
}

impl PgStore {
    /// Connects to the database at `url`; `jobs` writes the jobs a commit causes into
    /// the job queue's tables through the commit's transaction. Connections carry the
    /// application name `appealflow`, so an operator can tell them apart.
    pub async fn connect(url: &str, jobs: Arc<dyn JobWriter>) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("appealflow");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        let scope = match url.split_once('@') {
            Some((_, host)) => format!("postgres://{host}"),
            None => url.to_string(),
        };
        Ok(PgStore { pool, jobs, scope })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    const NAME: &str = "postgres";
    const BEGIN: &str = "BEGIN";
    /// One snapshot for several reads.
    const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    /// Claimed timers stay locked until the batch commits; another worker skips them.
    const LOCK_CLAIMED_TIMERS: &str = " FOR UPDATE OF t SKIP LOCKED";
    /// A timer's appeal is locked for its firing; one a command holds waits for the next batch.
    const LOCK_APPEAL: &str = " FOR UPDATE SKIP LOCKED";
    /// The planner picks `appeals_queue` for the queue's page by itself.
    const QUEUE_INDEX: &str = "";
    const JOBS: &str = "apalis.jobs";
    const JOB_NOW: &str = "clock_timestamp()";
    const JOB_COLUMNS: &str = "id, job_type, status, attempts::bigint AS attempts,
        max_attempts::bigint AS max_attempts, run_at, last_result::text AS last_result,
        convert_from(job, 'UTF8') AS args";
    /// The items of the JSON array bound as `$1`.
    const IN_JSON_LIST: &str = "SELECT jsonb_array_elements_text($1)";
    /// Moves the running job's next run `$1` seconds on by the database's clock.
    const DEFER_JOB: &str =
        "UPDATE apalis.jobs SET run_at = clock_timestamp() + make_interval(secs => $1) WHERE id = $2";
    /// Every blob digest a draft or an appeal (current or earlier documents) refers to.
    const REFERENCED_BLOBS: &str =
        "SELECT d ->> 'sha256' FROM drafts, jsonb_array_elements(COALESCE(data -> 'documents', '[]')) d
         UNION SELECT d ->> 'sha256'
               FROM appeals, jsonb_array_elements(COALESCE(data -> 'draft' -> 'documents', '[]')) d
         UNION SELECT d -> 'document' ->> 'sha256'
               FROM appeals, jsonb_array_elements(COALESCE(data -> 'previous_documents', '[]')) d";

    fn migrator() -> Migrator {
        sqlx::migrate!("migrations/postgres")
    }

    async fn write_jobs(&self, conn: &mut Conn, jobs: &[JobRef]) -> Result<(), StoreError> {
        self.jobs.write_postgres(conn, jobs).await
    }

    async fn before_close(&self) {}
}
