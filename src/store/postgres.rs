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
    /// Woken by this process's commits that arm a timer.
    armed: tokio::sync::Notify,
    /// Hears every process's commits that arm a timer (`appealflow_timers`), on a
    /// connection of its own pool: the store's pool, which the job queue shares, never
    /// waits for it when it closes.
    listener: tokio::sync::Mutex<Option<sqlx::postgres::PgListener>>,
    /// Reads outside a transaction: the same pool. A PostgreSQL read never waits for a
    /// lock, so a read a timer batch makes on the side (store/sqlite.rs says why it may)
    /// waits only for a free connection; the writers that could hold one while waiting
    /// on the batch's row locks are the worker's jobs on the batch's appeals, fewer than
    /// the pool's 16 connections at the worker's default concurrency (4 per queue).
    reads: PgPool,
    listen_pool: PgPool,
    listen_failed: std::sync::atomic::AtomicBool,
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
            .connect_with(options.clone())
            .await?;
        // Connects when the timer loop first waits.
        let listen_pool =
            PgPoolOptions::new().max_connections(1).idle_timeout(None).max_lifetime(None).connect_lazy_with(options);
        let scope = match url.split_once('@') {
            Some((_, host)) => format!("postgres://{host}"),
            None => url.to_string(),
        };
        Ok(PgStore {
            reads: pool.clone(),
            pool,
            armed: tokio::sync::Notify::new(),
            listener: tokio::sync::Mutex::new(None),
            listen_pool,
            listen_failed: Default::default(),
            jobs,
            scope,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    const NAME: &str = "postgres";
    const BEGIN: &str = "BEGIN";
    /// One snapshot for several reads.
    const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    /// Due timers are locked as they are taken, in claim order, until the batch commits;
    /// another worker's claim skips them and takes the next due ones.
    const LOCK_DUE_TIMERS: &str = " FOR UPDATE SKIP LOCKED";
    /// The claimed timers' appeals stay locked until the batch commits; a timer whose
    /// appeal a command holds waits for the next batch.
    const LOCK_CLAIMED_APPEALS: &str = " FOR UPDATE OF a SKIP LOCKED";
    /// The planner picks `appeals_queue` for the queue's page by itself.
    const QUEUE_INDEX: &str = "";
    /// After a queue cursor with a deadline: PostgreSQL seeks a row comparison over
    /// `appeals_queue`'s four key columns (it rewrites an equality on the flag column to
    /// `IS NOT NULL`, which no longer matches the index), and the range runs on into the
    /// appeals without a deadline, which sort last.
    const AFTER_DATED: (&str, &str, bool) = (
        " AND ((a.review_due_at IS NULL), a.review_due_at, a.created_at, a.id) > (FALSE, {d}, {c}, {i})",
        "(a.review_due_at IS NULL), a.review_due_at, a.created_at, a.id",
        true,
    );
    /// The appeals without a review deadline: `appeals_queue_undated` (0010).
    const UNDATED: &str = " AND a.review_due_at IS NULL";
    /// No per-item indexes: the counts filtered by an item read `appeals_queue_counts`
    /// and `appeals_queue_scenario` (p95 ≤ 9.2 ms at 1,000,000 open appeals).
    const ITEM_INDEX: Option<&str> = None;
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

    /// The contact phone an appeal's record holds (E.164 text).
    const CONTACT_PHONE: &str = "a.data #>> '{draft,contact_phone}'";

    /// A JSON array of one object per row of `from_where` (`x` its alias), in `order`.
    fn json_rows(fields: &str, from_where: &str, order: &str) -> String {
        format!(
            "SELECT COALESCE(jsonb_agg(jsonb_build_object({fields}) ORDER BY {order}), '[]'::jsonb) FROM {from_where}"
        )
    }

    /// A JSON column as a JSON value inside `jsonb_build_object` (already `jsonb`).
    fn embed_json(column: &str) -> String {
        column.to_string()
    }

    /// Delivered when the arming commit commits, to every listening worker.
    const ANNOUNCE_ARMED: Option<&str> = Some("NOTIFY appealflow_timers");
    /// Writers wait for the rows they change, not for one lock: no pause between timer
    /// batches.
    const BATCH_GAP: Duration = Duration::ZERO;
    const BATCH_GAP_EVERY: Duration = Duration::ZERO;
    /// Two batches of a burn-down in flight: one writes while the next is claimed and
    /// decided, so the engine's deciding and the server's writing overlap.
    const TIMER_LANES: usize = 2;
    /// A batch claims its timers and appeals under row locks, so that nothing changes
    /// them while it decides; other writers are not kept waiting meanwhile.
    const CLAIM_BEFORE_LOCK: bool = false;

    /// Waits for this process's wake-up or an `appealflow_timers` notification. The
    /// listener is this store's (connected at the first wait, on its own pool; closed
    /// with the store, dropped with it). A listener that cannot
    /// connect or listen is logged once; the timer loop's poll still finds every timer.
    async fn wait_armed(&self) {
        let mut listener = self.listener.lock().await;
        if listener.is_none() && !self.listen_failed.load(std::sync::atomic::Ordering::Relaxed) {
            let connected = async {
                let mut l = sqlx::postgres::PgListener::connect_with(&self.listen_pool).await?;
                l.listen("appealflow_timers").await?;
                Ok::<_, sqlx::Error>(l)
            };
            match connected.await {
                Ok(l) => *listener = Some(l),
                Err(e) => {
                    self.listen_failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(error = %e, "cannot listen for armed timers; the timer loop polls");
                }
            }
        }
        match listener.as_mut() {
            Some(l) => tokio::select! {
                heard = l.recv() => {
                    if let Err(e) = heard {
                        // Reconnected at the next wait.
                        tracing::warn!(error = %e, "listening for armed timers failed; listening again");
                        *listener = None;
                    }
                }
                _ = self.armed.notified() => {}
            },
            None => self.armed.notified().await,
        }
    }

    /// Writers wait for the rows they change: no turn to take.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        None
    }

    /// No pause between batches (`BATCH_GAP` is zero).
    fn gap_before_next_batch(&self) {}

    fn migrator() -> Migrator {
        sqlx::migrate!("migrations/postgres")
    }

    async fn write_jobs(&self, conn: &mut Conn, jobs: &[JobRef]) -> Result<(), StoreError> {
        self.jobs.write_postgres(conn, jobs).await
    }

    /// The listener's connection is closed with its pool. (A timer loop still waiting on
    /// the listener hears the pool close and drops it itself.)
    async fn before_close(&self) {
        if let Ok(mut listener) = self.listener.try_lock() {
            listener.take();
        }
        self.listen_pool.close().await;
    }
}
