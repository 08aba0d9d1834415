//! The store's traits, one per kind of caller, and `Store`, their sum for wiring.

use super::*;
use crate::domain::LookupKind;

/// The database itself: which engine, the fail-point scope, the schema.
#[async_trait]
pub trait Database: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Names this database (its URL without credentials): fail points are armed per scope.
    fn scope(&self) -> &str;

    /// Applies this backend's migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;

    /// The versions of this build's migrations not (successfully) applied to the
    /// database: empty when the schema is current.
    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError>;

    /// Completes when a timer may have been armed since the last time it completed: by
    /// this process, or — on PostgreSQL, whose commits that arm a timer `NOTIFY
    /// appealflow_timers` — by any process. The timer loop then reads when the next
    /// timer falls due instead of sleeping out its poll. One waiter at a time (a wake-up
    /// with no one waiting is kept for the next).
    async fn timer_armed(&self);

    /// A graceful shutdown's last step, once nothing else uses the database: SQLite folds
    /// its write-ahead log into the database file (so the file alone is a whole copy)
    /// and closes the pool.
    async fn close(&self) {}
}

/// What the engine needs: appeals, their history and timers, one-commit units of work,
/// idempotency records, the open appeal of an account.
#[async_trait]
pub trait AppealStore: Send + Sync + 'static {
    /// Commits one unit of work atomically, with the jobs it causes.
    async fn commit(&self, uow: &UnitOfWork) -> Result<(), CommitError>;

    /// Claims up to `limit` armed timers due at or before `now` (of one appeal, or all),
    /// at most one per appeal, and settles each as `handler` decides — all in ONE
    /// transaction, each firing behind its own savepoint so one failure spoils no
    /// other. PostgreSQL claims with `FOR UPDATE ... SKIP LOCKED` (of the timers and
    /// their appeals), so workers side by side never fire one timer twice and never
    /// race for one. The timers of the appeals in `besides` (held by another batch of
    /// this process, [`AppealStore::timer_lanes`]) are left out of the claim before it
    /// locks anything: none of them is locked, so that batch may settle them, and none
    /// fires out of its appeal's order.
    async fn fire_due_timers(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        appeal_id: Option<&str>,
        besides: &[String],
        handler: &dyn TimerHandler,
    ) -> Result<Vec<TimerFiring>, StoreError>;

    /// How many batches of one burn-down the timer loop keeps in flight unless told: two
    /// on PostgreSQL (one is written while the next is claimed and decided), one on
    /// SQLite (where two also work — the next batch claimed and decided on a read
    /// connection, before it takes the one write lock — at more memory).
    fn timer_lanes(&self) -> usize {
        1
    }

    /// Between two batches of a burn-down (`fire_due_timers` called again at once), with
    /// how long the burn-down has run since the store last paused it (or since it began):
    /// lets other writers have their turn, and answers whether it paused. On SQLite, whose
    /// one write lock the batches hold, the next batch to take the lock (whichever
    /// lane's) first leaves it free for a moment once the batches have held it for a
    /// while; on PostgreSQL it does nothing.
    async fn between_batches(&self, _since_pause: std::time::Duration) -> bool {
        false
    }

    /// In ONE round trip: the appeal `key` names, whether any of its armed timers is
    /// due at `now`, and what idempotency key `idempotency` recorded — all a command
    /// reads before it decides.
    async fn load_for_command(
        &self,
        key: AppealKey<'_>,
        now: DateTime<Utc>,
        idempotency: Option<&str>,
    ) -> Result<CommandLoad, StoreError>;

    async fn appeal_by_ticket(&self, ticket: &TicketNumber) -> Result<Option<AppealRecord>, StoreError>;

    /// In ONE statement: the appeal with ticket `ticket`, and — only when `phone` (E.164)
    /// is its contact phone — its history and timers. A wrong phone reads no more than
    /// the appeal row, as an unknown ticket reads nothing more.
    async fn progress_rows(&self, ticket: &TicketNumber, phone: &str) -> Result<Option<ProgressRows>, StoreError>;

    async fn appeal_by_id(&self, id: &str) -> Result<Option<AppealRecord>, StoreError>;

    /// Appeals, oldest first, optionally in one state.
    async fn list_appeals(&self, filter: &AppealFilter) -> Result<Vec<AppealRecord>, StoreError>;

    async fn history(&self, appeal_id: &str) -> Result<Vec<EventRecord>, StoreError>;

    /// Timers of one appeal (or all), by due time.
    async fn timers(&self, appeal_id: Option<&str>) -> Result<Vec<TimerRecord>, StoreError>;

    /// Timers (every status) armed in `[from, to)`, by id after `after_id`, at most
    /// `limit`: the recorded timers a what-if replay reads, one page at a time.
    async fn timers_armed_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<TimerRecord>, StoreError>;

    /// When the earliest armed timer falls due, if any.
    async fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Armed timers due at or before `now`, earliest first.
    async fn due_timers(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<TimerRecord>, StoreError>;

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Records the answer to a keyed command that is not an appeal transition (e.g. an
    /// admin's job retry); false when the key is already recorded.
    async fn remember_idempotency(&self, record: &IdempotencyRecord) -> Result<bool, StoreError>;

    /// One page of the review queue (open appeals in `filter.states`, by review
    /// deadline: earliest first, so breached first; none last; then oldest first) and
    /// how many open appeals each state holds under the other filters, read in one
    /// snapshot from the `appeals` row alone.
    async fn review_queue(&self, filter: &QueueFilter) -> Result<QueueSlice, StoreError>;

    /// How many open appeals each staff member holds, most first.
    async fn claims_by_holder(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// The account's appeal that has not closed, if any.
    async fn open_appeal_for(&self, account: &str) -> Result<Option<AppealRecord>, StoreError>;

    /// Every appeal of one account, oldest first (what a new appeal carries over from
    /// the earlier ones: a dispute).
    async fn appeals_of_account(&self, account: &str) -> Result<Vec<AppealRecord>, StoreError>;
}

/// The embedded account directory and the ledger of account changes applied to it.
#[async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    /// Inserts or replaces accounts (with their lookup keys) all at once, or none.
    async fn put_accounts(&self, accounts: &[Account], at: DateTime<Utc>) -> Result<(), StoreError>;

    async fn account(&self, name: &str) -> Result<Option<Account>, StoreError>;

    /// An account as stored, with its record's stored text (to change it conditionally).
    async fn account_record(&self, name: &str) -> Result<Option<(Account, String)>, StoreError>;

    async fn account_by_key(&self, kind: LookupKind, value: &str) -> Result<Option<Account>, StoreError>;

    /// What the embedded directory's ledger recorded for a change key, if it was applied.
    async fn applied_change(&self, key: &str) -> Result<Option<AppliedChange>, StoreError>;

    /// The ledger, oldest first (keys with what they changed).
    async fn ledger(&self) -> Result<Vec<(String, AppliedChange)>, StoreError>;
}

/// What the worker needs: post-approval actions, notifications, the work to enqueue.
#[async_trait]
pub trait WorkStore: Send + Sync + 'static {
    /// Outbox rows an earlier version left not yet carried out, oldest first.
    async fn legacy_effects(&self, limit: i64) -> Result<Vec<LegacyEffect>, StoreError>;

    async fn action(&self, id: i64) -> Result<Option<ActionRecord>, StoreError>;

    async fn actions(&self, filter: &WorkFilter) -> Result<Vec<ActionRecord>, StoreError>;

    /// Puts a failed action back to pending with a new job (an operator retrying it),
    /// both in one transaction; false when the action had not failed.
    async fn retry_action(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError>;

    async fn notification(&self, id: i64) -> Result<Option<NotificationRecord>, StoreError>;

    async fn notifications(&self, filter: &WorkFilter) -> Result<Vec<NotificationRecord>, StoreError>;

    /// The notifications of a fallback chain, in order.
    async fn chain(&self, chain: &str) -> Result<Vec<NotificationRecord>, StoreError>;

    /// Pending notifications and pending non-manual actions that have no job at all —
    /// work whose job was lost. Never any on a database only this version wrote (jobs
    /// commit with their rows); an earlier version's relay could leave some.
    async fn unqueued_work(&self, limit: i64) -> Result<Vec<JobRef>, StoreError>;

    /// Writes jobs for rows that exist, in one transaction.
    async fn enqueue(&self, jobs: &[JobRef]) -> Result<(), StoreError>;
}

/// Queue administration, the only code that reads apalis's own tables: jobs listed,
/// counted and retried, queues retired, the gauges.
#[async_trait]
pub trait QueueAdmin: Send + Sync + 'static {
    /// The job queue's rows, newest first.
    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;

    /// Jobs of these queues that are running or may run now (not waiting out a backoff,
    /// not dead, not done): zero means the worker has nothing to do at this instant.
    async fn runnable_jobs(&self, queues: &[&str]) -> Result<i64, StoreError>;

    /// Whether a job of `queue` waits for a worker to take it now: pending, or failed
    /// with attempts left, and due — what the queue's fetch would take (a read; the
    /// fetch itself is a write).
    async fn job_to_take(&self, queue: &str) -> Result<bool, StoreError>;

    /// Puts a dead (failed or aborted) job back in the queue with fresh attempts.
    async fn retry_job(&self, job_id: &str) -> Result<bool, StoreError>;

    /// Marks jobs of a queue an earlier version used, and that no worker serves now,
    /// done; returns how many.
    async fn retire_queue(&self, queue: &str) -> Result<u64, StoreError>;

    /// Counts for monitoring; `breach_timer` names the timer whose firing is a breach.
    async fn gauges(&self, breach_timer: &str) -> Result<Gauges, StoreError>;
}

/// Test and diagnostic hooks, apart from the production traits: rows per table.
#[async_trait]
pub trait Diagnostics: Send + Sync + 'static {
    /// Counts of rows per table, for tests and diagnostics.
    async fn row_counts(&self) -> Result<RowCounts, StoreError>;
}

/// Access: API tokens, staff sessions, applicants' drafts, rate-limit counters, what the janitor sweeps.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;

    /// An unrevoked token by its hash.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revokes a token and deletes its sessions, in one transaction; false when there
    /// was no unrevoked token `id`.
    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Stores a session for an unrevoked token; false (nothing stored) when the token is
    /// unknown or revoked.
    async fn insert_session(&self, session: &SessionRecord) -> Result<bool, StoreError>;

    /// A session by its hash with its token's staff member, unless the token is revoked
    /// or the session expired (`expires_at` at or before `now`).
    async fn session_by_hash(&self, hash: &str, now: DateTime<Utc>) -> Result<Option<StaffSessionRecord>, StoreError>;

    /// Records use of a session at `at` (never moving `last_seen_at` back); false when
    /// there is no such session or it was already seen at `at` or later.
    async fn touch_session(&self, hash: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Deletes one session (a sign-out); false when there was none.
    async fn delete_session(&self, hash: &str) -> Result<bool, StoreError>;

    /// Deletes every session of a token; answers how many.
    async fn delete_token_sessions(&self, token_id: &str) -> Result<u64, StoreError>;

    /// Deletes sessions expired at `now` (`expires_at` at or before it); answers how many.
    async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn insert_draft(&self, draft: &DraftRecord) -> Result<(), StoreError>;

    async fn draft(&self, id: &str) -> Result<Option<DraftRecord>, StoreError>;

    /// Replaces a draft's data (and marks it submitted when `ticket` is given), only if
    /// it was last written at `expected` (optimistic concurrency: two concurrent changes
    /// to one draft never silently lose one). False when the draft changed meanwhile.
    async fn update_draft(
        &self,
        id: &str,
        data: &serde_json::Value,
        ticket: Option<&str>,
        expected: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Counts one hit of `key` in fixed window `window` (kept until `expires_at`);
    /// answers the window's count including this hit. Shared by every process.
    async fn count_hit(&self, key: &str, window: i64, expires_at: DateTime<Utc>) -> Result<i64, StoreError>;

    /// Takes back one hit of `key` in `window` (a counted attempt that turned out right).
    async fn uncount_hit(&self, key: &str, window: i64) -> Result<(), StoreError>;

    /// Forgets counters whose window has passed; answers how many.
    async fn prune_rate_limits(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Deletes drafts never submitted and last written before `before`; answers how many.
    async fn delete_stale_drafts(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Every document digest a draft or an appeal (as submitted, or replaced at a
    /// resubmission) refers to: what the blob store must keep.
    async fn referenced_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError>;
}

/// Everything a backend provides; callers name the narrow trait they need.
pub trait Store: Database + AppealStore + DirectoryStore + WorkStore + QueueAdmin + AccessStore + Diagnostics {}

impl<T: Database + AppealStore + DirectoryStore + WorkStore + QueueAdmin + AccessStore + Diagnostics> Store for T {}
