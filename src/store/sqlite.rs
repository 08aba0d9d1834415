//! The embedded default backend: one SQLite file in WAL mode with `synchronous=FULL`.
//! Writers are serialised (`BEGIN IMMEDIATE` plus a busy timeout), so concurrent
//! commands wait for each other instead of failing with "database is locked".
//!
//! Two pools: `pool` for writes and the transactions that write, `reads` (connections
//! with `query_only` on) for reads outside them. A transaction holding the write lock
//! may read on the side — a command's catch-up decides its appeal's due timers, their
//! effects planned (the leads' addresses, an account, a history), while it holds it —
//! and that read must
//! never wait for a connection that itself waits for the write lock: with one pool, a
//! burst of writers could hold every connection in the busy wait, the batch could not
//! go on, and all of them stalled until the busy timeout failed them. In WAL mode a
//! reader never waits for the writer, so a read on `reads` always goes through.
//!
//! Writers wait their turn for the write lock with [`retry_often`], not SQLite's own busy
//! handler, which sleeps ever longer between tries (up to 100 ms): a writer that takes
//! the lock back soon after each commit — the timer loop burning down a backlog, batch
//! after batch — then nearly always holds it when a waiter looks, and the waiter can
//! wait out its whole busy timeout. Tried every millisecond, and with the timer loop
//! leaving the lock free for [`SqliteStore::BATCH_GAP`] once a lane's batches have run
//! for [`SqliteStore::BATCH_GAP_EVERY`], a waiter gets in within about that and two
//! batches (the pause is taken by the next batch to take the lock, which may be the
//! other lane's batch after the one in hand).
//!
//! A burn-down's batches in lanes (`--timer-lanes 2`) do not decide under the lock: a
//! batch claims its timers and reads their appeals on a read connection, decides them
//! there, and only then takes the write lock, checks that each claimed timer is still armed and its appeal at the
//! version decided on, and writes — so the timer loop's second lane decides its batch
//! while the first writes, and other writers wait for writes only. The loop's lanes take
//! the lock in turn (`write_turn`), and its pause between batches goes to the next batch
//! of either lane.
//!
//! The write-ahead log is folded into the database file by the store's own task (a
//! passive checkpoint [`CHECKPOINT_EVERY`] after a commit that changed rows, on a read
//! connection; an idle store's polls change none, so it checkpoints nothing), not by
//! the commit that happens to fill it: SQLite's automatic checkpoint runs inside that
//! commit, so one transition in a thousand paid for copying the log's pages into a
//! file whose pages, on a large database, lie far apart. The automatic checkpoint stays
//! as a backstop at [`AUTOCHECKPOINT_PAGES`], for a log the task cannot keep up with.
//!
//! The statements live in `store/shared/` (written once for both backends); this file
//! keeps what is SQLite's own: connecting, the write lock, the WAL checkpoint, the job
//! queue's table (`Jobs`, times in Unix seconds) and JSON functions.

// Compiled once per backend, by design (see store/shared/mod.rs).
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};

use super::{JobRef, JobWriter, QueuedJob, StoreError};

type Backend = SqliteStore;
type Conn = SqliteConnection;

const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections of the read pool.
const READERS: u32 = 8;
/// How often the store's task folds the write-ahead log into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// The log's size (pages) at which a commit checkpoints it itself (SQLite's default is
/// 1,000): reached only when the store's task falls behind.
const AUTOCHECKPOINT_PAGES: u32 = 10_000;
/// How often a writer waiting for the write lock tries to take it.
const BUSY_RETRY: Duration = Duration::from_millis(1);

thread_local! {
    /// When this thread's connection began to wait for a lock (sqlx runs each
    /// connection on a thread of its own; the handler runs there).
    static WAITING_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The writers' busy handler: SQLite calls it while a lock is held elsewhere, `count`
/// being how often it has been called for this wait (0 first). It sleeps
/// [`BUSY_RETRY`] and has SQLite try again (non-zero), until the busy timeout —
/// `timeout_ms`, the handler's argument, a number and not a pointer — has passed since
/// the wait began; then SQLite fails the statement with `SQLITE_BUSY`.
extern "C" fn retry_often(timeout_ms: *mut c_void, count: c_int) -> c_int {
    let now = Instant::now();
    let since = match WAITING_SINCE.get() {
        Some(since) if count > 0 => since,
        _ => {
            WAITING_SINCE.set(Some(now));
            now
        }
    };
    if now.duration_since(since) >= Duration::from_millis(timeout_ms as u64) {
        return 0;
    }
    std::thread::sleep(BUSY_RETRY);
    1
}

/// Sets [`retry_often`] as the connection's busy handler, `busy` its timeout (in place
/// of the `sqlite3_busy_timeout` sqlx set when it connected).
fn retry_writes_often(handle: &mut sqlx::sqlite::LockedSqliteHandle<'_>, busy: Duration) -> Result<(), sqlx::Error> {
    let timeout_ms = usize::try_from(busy.as_millis()).unwrap_or(usize::MAX);
    // SAFETY: the handle is locked, so no other call runs on the connection meanwhile;
    // the handler is a plain function and its argument a number that is never read
    // through as a pointer.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_busy_handler(
            handle.as_raw_handle().as_ptr(),
            Some(retry_often),
            timeout_ms as *mut c_void,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(sqlx::Error::Configuration(format!("sqlite3_busy_handler failed with code {rc}").into()));
    }
    Ok(())
}

/// Has the connection's commits that changed rows wake `written` (the checkpointer).
/// SQLite calls the commit hook in the committing thread for every transaction that
/// took the write lock, one that changed nothing too — the job queues' polls are
/// `UPDATE ... RETURNING` statements that, with nothing to run, match no row and write
/// nothing to the log, twice a second per queue — so the hook compares the
/// connection's count of changed rows with the one at its last commit.
fn wake_on_changes(handle: &mut sqlx::sqlite::LockedSqliteHandle<'_>, written: Arc<tokio::sync::Notify>) {
    // The connection's handle, as a number (a pointer is not `Send`): the hook is the
    // connection's own, called only on its thread while it is open.
    let db = handle.as_raw_handle().as_ptr() as usize;
    let mut changed_before = 0;
    handle.set_commit_hook(move || {
        // SAFETY: reading the count neither changes the connection nor runs a statement
        // (what a commit hook must not do), and `db` is the open connection calling it.
        let changed = unsafe { libsqlite3_sys::sqlite3_total_changes64(db as *mut libsqlite3_sys::sqlite3) };
        if changed != changed_before {
            changed_before = changed;
            written.notify_one();
        }
        // Go on with the commit (`false` would turn it into a rollback).
        true
    });
}

pub struct SqliteStore {
    pool: SqlitePool,
    /// Reads outside a write transaction; never takes the write lock (`query_only`).
    reads: SqlitePool,
    /// Woken by this process's commits that arm a timer.
    armed: tokio::sync::Notify,
    /// The timer loop's turn at the write lock: its batches (its lanes) take it in turn,
    /// first come first served (`write_turn`).
    batch_turn: tokio::sync::Mutex<()>,
    /// Whether the next batch to take the turn first leaves the lock free for
    /// [`SqliteStore::BATCH_GAP`] (`between_batches`).
    gap_next: std::sync::atomic::AtomicBool,
    jobs: Arc<dyn JobWriter>,
    scope: String,
    /// Stopped when the store is closed or dropped.
    checkpointer: Checkpointer,
}

/// The task that checkpoints the log; aborted when dropped.
struct Checkpointer(tokio::task::JoinHandle<()>);

impl Checkpointer {
    /// A passive checkpoint [`CHECKPOINT_EVERY`] after a commit that changed rows
    /// (`written`, notified by the writers' commit hook, `wake_on_changes`; the commits
    /// meanwhile wait for the same one), on a read
    /// connection: it copies what no reader still needs and never waits for a writer or
    /// a reader. Idle, it does nothing. A failure is logged and the next commit's
    /// checkpoint tries again (the automatic checkpoint still bounds the log meanwhile).
    fn start(reads: SqlitePool, written: Arc<tokio::sync::Notify>) -> Self {
        Checkpointer(tokio::spawn(async move {
            loop {
                written.notified().await;
                tokio::time::sleep(CHECKPOINT_EVERY).await;
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&reads).await {
                    if reads.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %e, "a background WAL checkpoint failed; the next one tries again");
                }
            }
        }))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`; `jobs` writes the jobs a
    /// commit causes into the job queue's tables through the commit's transaction.
    pub async fn connect(url: &str, jobs: Arc<dyn JobWriter>) -> Result<Self, StoreError> {
        Self::connect_with(url, jobs, BUSY_TIMEOUT).await
    }

    /// As [`SqliteStore::connect`], with how long a writer waits for another's lock
    /// before failing.
    pub async fn connect_with(url: &str, jobs: Arc<dyn JobWriter>, busy: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy)
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES.to_string());
        // Each commit of a writer that changed rows wakes the checkpointer.
        let written = Arc::new(tokio::sync::Notify::new());
        let hook = written.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .after_connect(move |conn, _| {
                let hook = hook.clone();
                Box::pin(async move {
                    let mut handle = conn.lock_handle().await?;
                    wake_on_changes(&mut handle, hook);
                    retry_writes_often(&mut handle, busy)?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        // Opened once the file exists in WAL mode (the writers' pool made it so).
        let reads =
            SqlitePoolOptions::new().max_connections(READERS).connect_with(options.pragma("query_only", "ON")).await?;
        let checkpointer = Checkpointer::start(reads.clone(), written);
        Ok(SqliteStore {
            pool,
            reads,
            armed: tokio::sync::Notify::new(),
            batch_turn: tokio::sync::Mutex::new(()),
            gap_next: std::sync::atomic::AtomicBool::new(false),
            jobs,
            scope: url.to_string(),
            checkpointer,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    const NAME: &str = "sqlite";
    /// One writer at a time: a write transaction takes the lock when it begins.
    const BEGIN: &str = "BEGIN IMMEDIATE";
    /// A reader's snapshot (WAL): taken at its first read, kept to its end.
    const BEGIN_READ: &str = "BEGIN DEFERRED";
    /// No row locks: the write lock already keeps other writers out.
    const LOCK_DUE_TIMERS: &str = "";
    const LOCK_CLAIMED_APPEALS: &str = "";
    /// The queue's page reads the open appeals in order from `appeals_queue` and stops
    /// at its last row; without statistics the planner would rather look the states up
    /// by `appeals_queue_counts` and sort them all.
    const QUEUE_INDEX: &str = " INDEXED BY appeals_queue";
    /// After a queue cursor with a deadline, in `appeals_queue`'s order: SQLite seeks a
    /// row-value range only after an equality on the index's first column (the
    /// deadline-less flag), ordered by the columns after it — so this range holds the
    /// appeals with a deadline only, and those without one are read next.
    const AFTER_DATED: (&str, &str, bool) = (
        " AND (a.review_due_at IS NULL) = FALSE AND (a.review_due_at, a.created_at, a.id) > ({d}, {c}, {i})",
        "a.review_due_at, a.created_at, a.id",
        false,
    );
    /// The appeals without a review deadline, as a range of `appeals_queue`.
    const UNDATED: &str = " AND (a.review_due_at IS NULL) = TRUE AND a.review_due_at IS NULL";
    /// The open appeals asking for one item, by state, claim and scenario (0012): a
    /// count filtered by an item reads only its matches. SQLite uses a partial index
    /// only for a condition written as the index's is, so the count names the item's
    /// pattern as a literal.
    const ITEM_INDEX: Option<&str> = Some(" INDEXED BY appeals_item_{item}");
    const JOBS: &str = "Jobs";
    /// Now, as the job table keeps times (Unix seconds).
    const JOB_NOW: &str = "CAST(strftime('%s', 'now') AS INTEGER)";
    const JOB_COLUMNS: &str = "id, job_type, status, attempts, max_attempts,
        strftime('%Y-%m-%dT%H:%M:%SZ', run_at, 'unixepoch') AS run_at, last_result, CAST(job AS TEXT) AS args";
    /// The items of the JSON array bound as `$1`.
    const IN_JSON_LIST: &str = "SELECT value FROM json_each($1)";
    /// Moves the running job's next run `$1` seconds on by the database's clock; run_at is
    /// whole seconds, rounded up, so the wait is never shorter than asked (and no wait
    /// stays no wait).
    const DEFER_JOB: &str = "UPDATE Jobs SET run_at = CAST((julianday('now') - 2440587.5) * 86400.0 + $1
                                                  + CASE WHEN $1 > 0 THEN 0.999999 ELSE 0 END AS INTEGER)
                             WHERE id = $2";
    /// Every blob digest a draft or an appeal (current or earlier documents) refers to.
    const REFERENCED_BLOBS: &str =
        "SELECT json_extract(d.value, '$.sha256') FROM drafts, json_each(drafts.data, '$.documents') d
         UNION SELECT json_extract(d.value, '$.sha256') FROM appeals, json_each(appeals.data, '$.draft.documents') d
         UNION SELECT json_extract(d.value, '$.document.sha256')
               FROM appeals, json_each(appeals.data, '$.previous_documents') d";

    /// The contact phone an appeal's record holds (E.164 text).
    const CONTACT_PHONE: &str = "json_extract(a.data, '$.draft.contact_phone')";

    /// A JSON array of one object per row of `from_where` (`x` its alias), in `order`.
    fn json_rows(fields: &str, from_where: &str, order: &str) -> String {
        format!("SELECT json_group_array(json_object({fields}) ORDER BY {order}) FROM {from_where}")
    }

    /// A JSON column as a JSON value inside `json_object` (SQLite keeps it as text).
    fn embed_json(column: &str) -> String {
        format!("json({column})")
    }

    /// How long the timer loop leaves the write lock free between two batches: long
    /// enough for a writer trying every [`BUSY_RETRY`] to take it.
    const BATCH_GAP: Duration = Duration::from_millis(2);
    /// How long the batches may hold the write lock, one after another, before the next
    /// gap: a writer beside a burn-down waits about this plus one batch, while short
    /// batches (the worker's default of 100 takes ~7 ms) do not pay a gap each.
    const BATCH_GAP_EVERY: Duration = Duration::from_millis(20);
    /// One batch of a burn-down in flight unless asked for more (`--timer-lanes 2`: one is
    /// claimed and decided on a read connection while the other holds the write lock to
    /// write, `CLAIM_BEFORE_LOCK`): at 1,000,000 appeals a worker in two lanes peaked at
    /// 121 MiB, and in one lane deciding before the lock at 108 MiB, over its 100 MiB
    /// budget (one lane deciding under the lock, as a lone batch does: 91 MiB).
    const TIMER_LANES: usize = 1;
    /// A burn-down's batch in lanes is claimed and decided before it takes the one write
    /// lock, and checked under it: deciding under the lock would keep the next batch
    /// waiting for it.
    const CLAIM_BEFORE_LOCK: bool = true;

    /// Another process's timers are found by the timer loop's poll.
    const ANNOUNCE_ARMED: Option<&str> = None;

    async fn wait_armed(&self) {
        self.armed.notified().await;
    }

    /// The timer loop's turn at the write lock, held by a batch from its `BEGIN` to its
    /// commit: a lane whose batch is decided waits here, not in SQLite's busy handler.
    /// When a pause is due (`gap_before_next_batch`), the batch that takes the turn
    /// first leaves the lock free for [`SqliteStore::BATCH_GAP`], turn in hand, so the
    /// pause goes to other writers and not to the loop's other lane.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let turn = self.batch_turn.lock().await;
        if self.gap_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Self::BATCH_GAP).await;
        }
        Some(turn)
    }

    fn gap_before_next_batch(&self) {
        self.gap_next.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn migrator() -> Migrator {
        sqlx::migrate!("migrations/sqlite")
    }

    async fn write_jobs(&self, conn: &mut Conn, jobs: &[JobRef]) -> Result<(), StoreError> {
        self.jobs.write_sqlite(conn, jobs).await
    }

    /// Folds the write-ahead log into the database file, so the file alone is a whole copy.
    async fn before_close(&self) {
        self.checkpointer.0.abort();
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await {
            tracing::warn!(error = %e, "the WAL checkpoint at shutdown failed; the next open replays the log");
        }
    }
}

/// The job queue's insert (apalis-sqlite's `queries/task/sink.sql`: the table's columns in
/// its order, a new job pending with no attempt, lock or result) with one row per job,
/// instead of one statement per job as the queue's `push_tasks` does: a timer batch causes
/// hundreds of jobs, and each statement is a round trip to the connection's thread.
/// A job whose queue already holds its idempotency key is skipped, as there.
pub async fn push_jobs(conn: &mut SqliteConnection, jobs: &[QueuedJob<'_>]) -> Result<(), StoreError> {
    // Eight values bound per row.
    for part in jobs.chunks(shared::batch_writes::per_statement(8)) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO Jobs ");
        q.push_values(part, |mut b, job| {
            b.push_bind(job.args)
                .push_bind(&job.id)
                .push_bind(job.queue)
                .push("'Pending'")
                .push("0")
                .push_bind(job.max_attempts)
                .push_bind(job.run_at)
                .push("NULL")
                .push("NULL")
                .push("NULL")
                .push("NULL")
                .push_bind(job.priority)
                .push_bind(&job.metadata)
                .push_bind(job.idempotency_key);
        });
        q.push(" ON CONFLICT(job_type, idempotency_key) DO NOTHING");
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}
