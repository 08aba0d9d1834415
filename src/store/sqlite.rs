//! The embedded default backend: one SQLite file in WAL mode with `synchronous=FULL`.
//! Writers are serialised (`BEGIN IMMEDIATE` plus a busy timeout), so concurrent
//! commands wait for each other instead of failing with "database is locked".

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::prelude::*;
use super::{
    ActionRecord, ActionStatus, AppealChange, AppealFilter, AppealRecord, AppliedChange, CommitError, DeliveryUpdate,
    DraftRecord, EventRecord, Gauges, IdempotencyRecord, JobFilter, JobRecord, JobRef, JobStatus, JobWriter,
    LegacyEffect, NotificationRecord, NotificationStatus, RowCounts, StoreError, TimerFiring, TimerHandler,
    TimerRecord, TimerStatus, TimerVerdict, TokenRecord, UnitOfWork, WorkFilter,
};
use crate::domain::{Account, LookupKind, TicketNumber};

const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Fixed-width UTC text: orders correctly as a string.
pub(crate) fn ts(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

fn parse_json(s: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("json column: {e}")))
}

fn ticket(s: String) -> Result<TicketNumber, StoreError> {
    TicketNumber::parse(&s).map_err(|e| StoreError::Corrupt(format!("ticket {s:?}: {e}")))
}

pub struct SqliteStore {
    pool: SqlitePool,
    jobs: Arc<dyn JobWriter>,
    scope: String,
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
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        Ok(SqliteStore { pool, jobs, scope: url.to_string() })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn appeal(row: &SqliteRow) -> Result<AppealRecord, StoreError> {
        Ok(AppealRecord {
            id: row.try_get("id")?,
            ticket: ticket(row.try_get("ticket")?)?,
            workflow: row.try_get("workflow")?,
            workflow_version: row.try_get("workflow_version")?,
            state: row.try_get("state")?,
            outcome: row.try_get("outcome")?,
            version: row.try_get("version")?,
            assignee: row.try_get("assignee")?,
            account: row.try_get("account")?,
            data: parse_json(row.try_get("data")?)?,
            created_at: parse_ts(row.try_get("created_at")?)?,
            updated_at: parse_ts(row.try_get("updated_at")?)?,
        })
    }

    fn timer(row: &SqliteRow) -> Result<TimerRecord, StoreError> {
        let settled: Option<String> = row.try_get("settled_at")?;
        Ok(TimerRecord {
            id: row.try_get("id")?,
            appeal_id: row.try_get("appeal_id")?,
            ticket: ticket(row.try_get("ticket")?)?,
            name: row.try_get("name")?,
            generation: row.try_get("generation")?,
            due_at: parse_ts(row.try_get("due_at")?)?,
            status: TimerStatus::parse(row.try_get("status")?)?,
            armed_at: parse_ts(row.try_get("armed_at")?)?,
            settled_at: settled.as_deref().map(parse_ts).transpose()?,
        })
    }

    fn token_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
        let role: String = row.try_get("role")?;
        let revoked: Option<String> = row.try_get("revoked_at")?;
        Ok(TokenRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role: role.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
            token_hash: row.try_get("token_hash")?,
            email: row.try_get("email")?,
            created_at: parse_ts(row.try_get("created_at")?)?,
            revoked_at: revoked.as_deref().map(parse_ts).transpose()?,
        })
    }

    fn action_row(row: &SqliteRow) -> Result<ActionRecord, StoreError> {
        let result: Option<String> = row.try_get("result")?;
        Ok(ActionRecord {
            id: row.try_get("id")?,
            appeal_id: row.try_get("appeal_id")?,
            ticket: ticket(row.try_get("ticket")?)?,
            action: row.try_get("action")?,
            idempotency_key: row.try_get("idempotency_key")?,
            manual: row.try_get("manual")?,
            status: ActionStatus::parse(row.try_get("status")?)?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            result: result.as_deref().map(parse_json).transpose()?,
            done_by: row.try_get("done_by")?,
            created_at: parse_ts(row.try_get("created_at")?)?,
            updated_at: parse_ts(row.try_get("updated_at")?)?,
        })
    }

    fn notification_row(row: &SqliteRow) -> Result<NotificationRecord, StoreError> {
        let sent: Option<String> = row.try_get("sent_at")?;
        Ok(NotificationRecord {
            id: row.try_get("id")?,
            appeal_id: row.try_get("appeal_id")?,
            idempotency_key: row.try_get("idempotency_key")?,
            template: row.try_get("template")?,
            channel: row.try_get("channel")?,
            locale: row.try_get("locale")?,
            recipient: row.try_get("recipient")?,
            recipient_masked: row.try_get("recipient_masked")?,
            body: row.try_get("body")?,
            status: NotificationStatus::parse(row.try_get("status")?)?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            created_at: parse_ts(row.try_get("created_at")?)?,
            sent_at: sent.as_deref().map(parse_ts).transpose()?,
            chain: row.try_get("chain")?,
            position: row.try_get("position")?,
            on_delivered: row.try_get("on_delivered")?,
            on_undeliverable: row.try_get("on_undeliverable")?,
        })
    }

    fn applied_row(row: &SqliteRow) -> Result<AppliedChange, StoreError> {
        Ok(AppliedChange {
            account: row.try_get("account")?,
            action: row.try_get("action")?,
            before: parse_json(row.try_get("before")?)?,
            after: parse_json(row.try_get("after")?)?,
            applied_at: parse_ts(row.try_get("applied_at")?)?,
        })
    }

    /// Writes one unit of work through an open transaction (its caller commits).
    async fn write_uow(&self, conn: &mut SqliteConnection, uow: &UnitOfWork) -> Result<(), CommitError> {
        let at = ts(uow.at);
        if let Some(idem) = &uow.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(&idem.key)
            .bind(&idem.fingerprint)
            .bind(idem.response.to_string())
            .bind(&at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(CommitError::IdempotencyKeyTaken);
            }
        }
        for change in &uow.changes {
            Self::write_change(conn, change, &at).await?;
        }
        crate::failpoint!(self.scope(), "commit.after_changes");

        let mut jobs = uow.jobs.clone();
        for n in &uow.notifications {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO notifications (appeal_id, idempotency_key, template, channel, locale, recipient,
                                            recipient_masked, body, status, created_at, chain, position,
                                            on_delivered, on_undeliverable)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            )
            .bind(&n.appeal_id)
            .bind(&n.idempotency_key)
            .bind(&n.template)
            .bind(&n.channel)
            .bind(&n.locale)
            .bind(&n.recipient)
            .bind(&n.recipient_masked)
            .bind(&n.body)
            .bind(n.status.as_str())
            .bind(&at)
            .bind(&n.chain)
            .bind(n.position)
            .bind(&n.on_delivered)
            .bind(&n.on_undeliverable)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(id) = id
                && n.status == NotificationStatus::Pending
            {
                jobs.push(JobRef::Notification(id));
            }
        }
        for d in &uow.deliveries {
            let (id, done) = match d {
                DeliveryUpdate::Attempted { id, status, error } => {
                    let done = sqlx::query(
                        "UPDATE notifications SET status = ?, attempts = attempts + 1, last_error = ?,
                                sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END
                         WHERE id = ? AND status = 'pending'",
                    )
                    .bind(status.as_str())
                    .bind(error)
                    .bind(status.as_str())
                    .bind(&at)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                    (*id, done.rows_affected())
                }
                DeliveryUpdate::Release { id } => {
                    let done =
                        sqlx::query("UPDATE notifications SET status = 'pending' WHERE id = ? AND status = 'held'")
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                    jobs.push(JobRef::Notification(*id));
                    (*id, done.rows_affected())
                }
                DeliveryUpdate::Skip { id } => {
                    let done =
                        sqlx::query("UPDATE notifications SET status = 'skipped' WHERE id = ? AND status = 'held'")
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                    (*id, done.rows_affected())
                }
            };
            if done == 0 {
                return Err(CommitError::Stale(format!("notification {id}")));
            }
        }
        for a in &uow.actions {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO appeal_actions (appeal_id, action, idempotency_key, manual, status, created_at, updated_at)
                 VALUES (?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (appeal_id, action) DO NOTHING RETURNING id",
            )
            .bind(&a.appeal_id)
            .bind(&a.action)
            .bind(a.key())
            .bind(a.manual)
            .bind(&at)
            .bind(&at)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(id) = id
                && !a.manual
            {
                jobs.push(JobRef::Action(id));
            }
        }
        for u in &uow.action_updates {
            let done = sqlx::query(
                "UPDATE appeal_actions SET status = ?, attempts = attempts + 1, last_error = ?,
                        result = COALESCE(?, result), done_by = COALESCE(?, done_by), updated_at = ?
                 WHERE id = ? AND status = 'pending'",
            )
            .bind(u.status.as_str())
            .bind(&u.error)
            .bind(u.result.as_ref().map(|r| r.to_string()))
            .bind(&u.done_by)
            .bind(&at)
            .bind(u.id)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 0 {
                return Err(CommitError::Stale(format!("action {}", u.id)));
            }
        }
        for l in &uow.ledger {
            let inserted = sqlx::query(
                "INSERT INTO applied_account_changes (idempotency_key, account, action, before, after, applied_at)
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&l.key)
            .bind(&l.account)
            .bind(&l.action)
            .bind(l.before.to_string())
            .bind(l.after.to_string())
            .bind(&at)
            .execute(&mut *conn)
            .await?;
            let updated = sqlx::query("UPDATE accounts SET record = ?, updated_at = ? WHERE name = ? AND record = ?")
                .bind(serde_json::to_string(&l.record).expect("accounts serialise"))
                .bind(&at)
                .bind(&l.account)
                .bind(&l.expected)
                .execute(&mut *conn)
                .await?;
            if inserted.rows_affected() == 0 || updated.rows_affected() == 0 {
                return Err(CommitError::Stale(format!("account {}", l.account)));
            }
        }
        for id in &uow.legacy_effects_done {
            sqlx::query("UPDATE outbox SET status = 'done' WHERE id = ?").bind(id).execute(&mut *conn).await?;
        }
        if let Some(d) = &uow.defer_job {
            // run_at is whole seconds: round up, so the wait is never shorter than asked
            // (and no wait at all stays no wait).
            sqlx::query(
                "UPDATE Jobs SET run_at = CAST((julianday('now') - 2440587.5) * 86400.0 + ?1
                                               + CASE WHEN ?1 > 0 THEN 0.999999 ELSE 0 END AS INTEGER)
                 WHERE id = ?2",
            )
            .bind(d.delay.as_secs_f64())
            .bind(&d.job_id)
            .execute(&mut *conn)
            .await?;
        }
        crate::failpoint!(self.scope(), "commit.after_rows");
        if !jobs.is_empty() {
            self.jobs.write_sqlite(conn, &jobs).await?;
        }
        Ok(())
    }

    async fn write_change(conn: &mut SqliteConnection, change: &AppealChange, at: &str) -> Result<(), CommitError> {
        let a = &change.appeal;
        let version = a.new_version();
        let data = a.data.to_string();
        match a.expected_version {
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO appeals (id, ticket, workflow, workflow_version, account, state, outcome, version,
                                          assignee, data, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
                     ON CONFLICT (ticket) DO NOTHING",
                )
                .bind(&a.id)
                .bind(a.ticket.as_str())
                .bind(&a.workflow)
                .bind(a.workflow_version)
                .bind(&a.account)
                .bind(&a.state)
                .bind(&a.outcome)
                .bind(&a.assignee)
                .bind(&data)
                .bind(at)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(|e| match e.as_database_error() {
                    // The ticket's conflict is absorbed by ON CONFLICT; the one other
                    // unique rule on appeals is one open appeal per account.
                    Some(db) if db.is_unique_violation() => CommitError::OpenAppealExists,
                    _ => CommitError::from(e),
                })?;
                if inserted.rows_affected() == 0 {
                    return Err(CommitError::TicketTaken);
                }
            }
            Some(expected) => {
                let updated = sqlx::query(
                    "UPDATE appeals SET state = ?, outcome = ?, version = ?, assignee = ?, data = ?, updated_at = ?
                     WHERE id = ? AND version = ?",
                )
                .bind(&a.state)
                .bind(&a.outcome)
                .bind(version)
                .bind(&a.assignee)
                .bind(&data)
                .bind(at)
                .bind(&a.id)
                .bind(expected)
                .execute(&mut *conn)
                .await
                .map_err(|e| match e.as_database_error() {
                    // Reopening an appeal (a resubmission) while the account has another open.
                    Some(db) if db.is_unique_violation() => CommitError::OpenAppealExists,
                    _ => CommitError::from(e),
                })?;
                if updated.rows_affected() == 0 {
                    let current = sqlx::query("SELECT state, version FROM appeals WHERE id = ?")
                        .bind(&a.id)
                        .fetch_one(&mut *conn)
                        .await?;
                    return Err(CommitError::Conflict {
                        state: current.try_get("state")?,
                        version: current.try_get("version")?,
                    });
                }
            }
        }

        let e = &change.event;
        sqlx::query(
            "INSERT INTO appeal_events (appeal_id, seq, transition, from_state, to_state, outcome, actor, role,
                                        reasons, payload, at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.id)
        .bind(version)
        .bind(&e.transition)
        .bind(&e.from)
        .bind(&e.to)
        .bind(&e.outcome)
        .bind(&e.actor)
        .bind(e.role.as_str())
        .bind(serde_json::to_string(&e.reasons).expect("strings serialise"))
        .bind(e.payload.to_string())
        .bind(at)
        .execute(&mut *conn)
        .await?;

        for name in &change.cancel {
            sqlx::query(
                "UPDATE timers SET status = 'cancelled', settled_at = ?
                 WHERE appeal_id = ? AND name = ? AND status = 'armed'",
            )
            .bind(at)
            .bind(&a.id)
            .bind(name)
            .execute(&mut *conn)
            .await?;
        }
        if let Some(timer_id) = change.fire_timer {
            let fired = sqlx::query(
                "UPDATE timers SET status = 'fired', settled_at = ? WHERE id = ? AND appeal_id = ? AND status = 'armed'",
            )
            .bind(at)
            .bind(timer_id)
            .bind(&a.id)
            .execute(&mut *conn)
            .await?;
            if fired.rows_affected() == 0 {
                return Err(CommitError::TimerNotArmed);
            }
        }
        for arm in &change.arm {
            sqlx::query(
                "INSERT INTO timers (appeal_id, name, generation, due_at, status, armed_at)
                 VALUES (?, ?, (SELECT COALESCE(MAX(generation), 0) + 1 FROM timers WHERE appeal_id = ? AND name = ?),
                         ?, 'armed', ?)",
            )
            .bind(&a.id)
            .bind(&arm.name)
            .bind(&a.id)
            .bind(&arm.name)
            .bind(ts(arm.due_at))
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn commit_inner(&self, uow: &UnitOfWork) -> Result<(), CommitError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        self.write_uow(&mut tx, uow).await?;
        crate::failpoint!(self.scope(), "commit.before_commit");
        tx.commit().await?;
        crate::failpoint!(self.scope(), "commit.after_commit");
        Ok(())
    }

    async fn fire_due_inner(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        appeal_id: Option<&str>,
        handler: &dyn TimerHandler,
    ) -> Result<Vec<TimerFiring>, StoreError> {
        // One writer at a time on SQLite: the claim is the write lock itself.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE t.status = 'armed' AND t.due_at <= ?1 AND (?2 IS NULL OR t.appeal_id = ?2)
             ORDER BY t.due_at, t.id LIMIT ?3"
        );
        let claimed: Vec<TimerRecord> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ts(now))
            .bind(appeal_id)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(Self::timer)
            .collect::<Result<_, _>>()?;
        if claimed.is_empty() {
            return Ok(vec![]);
        }
        crate::failpoint!(self.scope(), "timers.after_claim");
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for timer in claimed {
            // One firing per appeal per batch: the next reads what this one wrote.
            if !seen.insert(timer.appeal_id.clone()) {
                continue;
            }
            let appeal = sqlx::query("SELECT * FROM appeals WHERE id = ?")
                .bind(&timer.appeal_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::from)
                .and_then(|row| Self::appeal(&row))?;
            let at = ts(now);
            let firing = match handler.decide(&timer, &appeal).await {
                TimerVerdict::Fire(uow) => {
                    let mut sp = sqlx::Connection::begin(&mut *tx).await?;
                    match self.write_uow(&mut sp, &uow).await {
                        Ok(()) => {
                            sp.commit().await?;
                            TimerFiring { timer, outcome: "fired", note: None }
                        }
                        // The database failing (or an injected failure) fails the batch:
                        // nothing of it is kept, and the timer loop reports the error.
                        Err(CommitError::Store(e)) => return Err(e),
                        Err(e) => {
                            sp.rollback().await?;
                            TimerFiring { timer, outcome: "failed", note: Some(e.to_string()) }
                        }
                    }
                }
                TimerVerdict::Stale(why) => {
                    sqlx::query(
                        "UPDATE timers SET status = 'cancelled', settled_at = ? WHERE id = ? AND status = 'armed'",
                    )
                    .bind(&at)
                    .bind(timer.id)
                    .execute(&mut *tx)
                    .await?;
                    TimerFiring { timer, outcome: "stale", note: Some(why) }
                }
                TimerVerdict::Leave(why) => TimerFiring { timer, outcome: "left armed", note: Some(why) },
            };
            out.push(firing);
        }
        crate::failpoint!(self.scope(), "timers.before_commit");
        tx.commit().await?;
        Ok(out)
    }
}

const TIMER_COLUMNS: &str =
    "t.id, t.appeal_id, a.ticket, t.name, t.generation, t.due_at, t.status, t.armed_at, t.settled_at";

#[async_trait]
impl Database for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        // Our own bookkeeping table, so the job queue's migrations never collide with ours.
        migrator.dangerous_set_table_name("appealflow_migrations");
        migrator.run(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await {
            tracing::warn!(error = %e, "the WAL checkpoint at shutdown failed; the next open replays the log");
        }
        self.pool.close().await;
    }

    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM appealflow_migrations WHERE success").fetch_all(&self.pool).await?;
        Ok(sqlx::migrate!("migrations/sqlite").iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect())
    }

    fn scope(&self) -> &str {
        &self.scope
    }
}

#[async_trait]
impl AppealStore for SqliteStore {
    async fn commit(&self, uow: &UnitOfWork) -> Result<(), CommitError> {
        self.commit_inner(uow).await
    }

    async fn fire_due_timers(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        appeal_id: Option<&str>,
        handler: &dyn TimerHandler,
    ) -> Result<Vec<TimerFiring>, StoreError> {
        self.fire_due_inner(now, limit, appeal_id, handler).await
    }

    async fn appeal_by_ticket(&self, ticket: &TicketNumber) -> Result<Option<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE ticket = ?")
            .bind(ticket.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }

    async fn appeal_by_id(&self, id: &str) -> Result<Option<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }

    async fn list_appeals(&self, filter: &AppealFilter) -> Result<Vec<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE (?1 IS NULL OR state = ?1) ORDER BY created_at, id LIMIT ?2")
            .bind(&filter.state)
            .bind(filter.limit.unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::appeal)
            .collect()
    }

    async fn history(&self, appeal_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM appeal_events WHERE appeal_id = ? ORDER BY seq")
            .bind(appeal_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                let reasons: String = row.try_get("reasons")?;
                Ok(EventRecord {
                    seq: row.try_get("seq")?,
                    transition: row.try_get("transition")?,
                    from: row.try_get("from_state")?,
                    to: row.try_get("to_state")?,
                    outcome: row.try_get("outcome")?,
                    actor: row.try_get("actor")?,
                    role: role.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
                    reasons: serde_json::from_str(&reasons).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    payload: parse_json(row.try_get("payload")?)?,
                    at: parse_ts(row.try_get("at")?)?,
                })
            })
            .collect()
    }

    async fn timers(&self, appeal_id: Option<&str>) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE (?1 IS NULL OR t.appeal_id = ?1) ORDER BY t.due_at, t.id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(appeal_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::timer)
            .collect()
    }

    async fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<String> =
            sqlx::query_scalar("SELECT MIN(due_at) FROM timers WHERE status = 'armed'").fetch_one(&self.pool).await?;
        next.as_deref().map(parse_ts).transpose()
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE t.status = 'armed' AND t.due_at <= ? ORDER BY t.due_at, t.id LIMIT ?"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ts(now))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::timer)
            .collect()
    }

    async fn remember_idempotency(&self, r: &IdempotencyRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&r.key)
        .bind(&r.fingerprint)
        .bind(r.response.to_string())
        .bind(ts(r.created_at))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM idempotency_keys WHERE key = ?").bind(key).fetch_optional(&self.pool).await?;
        row.map(|row| {
            Ok(IdempotencyRecord {
                key: row.try_get("key")?,
                fingerprint: row.try_get("fingerprint")?,
                response: parse_json(row.try_get("response")?)?,
                created_at: parse_ts(row.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    async fn open_appeal_for(&self, account: &str) -> Result<Option<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE account = ? AND outcome IS NULL")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }
}

#[async_trait]
impl DirectoryStore for SqliteStore {
    async fn put_accounts(&self, accounts: &[Account], at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for a in accounts {
            sqlx::query("INSERT INTO accounts (name, record, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at")
                .bind(&a.name)
                .bind(serde_json::to_string(a).expect("accounts serialise"))
                .bind(ts(at))
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM account_keys WHERE account = ?").bind(&a.name).execute(&mut *tx).await?;
            for (kind, value) in a.lookup_keys() {
                let inserted = sqlx::query("INSERT INTO account_keys (kind, value, account) VALUES (?, ?, ?) ON CONFLICT (kind, value) DO NOTHING")
                    .bind(kind.as_str())
                    .bind(&value)
                    .bind(&a.name)
                    .execute(&mut *tx)
                    .await?;
                if inserted.rows_affected() == 0 {
                    let owner: String =
                        sqlx::query_scalar("SELECT account FROM account_keys WHERE kind = ? AND value = ?")
                            .bind(kind.as_str())
                            .bind(&value)
                            .fetch_one(&mut *tx)
                            .await?;
                    if owner != a.name {
                        return Err(StoreError::DuplicateAccountKey {
                            kind: kind.as_str(),
                            value,
                            first: owner,
                            second: a.name.clone(),
                        });
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let row =
            sqlx::query("SELECT record FROM accounts WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        row.map(|row| {
            let record: String = row.try_get("record")?;
            serde_json::from_str(&record).map_err(|e| StoreError::Corrupt(format!("account record: {e}")))
        })
        .transpose()
    }

    async fn account_record(&self, name: &str) -> Result<Option<(Account, String)>, StoreError> {
        let text: Option<String> = sqlx::query_scalar("SELECT record FROM accounts WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        text.map(|text| {
            let account =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("account record: {e}")))?;
            Ok((account, text))
        })
        .transpose()
    }

    async fn account_by_key(&self, kind: LookupKind, value: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query("SELECT a.record FROM accounts a JOIN account_keys k ON k.account = a.name WHERE k.kind = ? AND k.value = ?")
            .bind(kind.as_str())
            .bind(crate::domain::account::normalize_domain(value))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let record: String = row.try_get("record")?;
            serde_json::from_str(&record).map_err(|e| StoreError::Corrupt(format!("account record: {e}")))
        })
        .transpose()
    }

    async fn applied_change(&self, key: &str) -> Result<Option<AppliedChange>, StoreError> {
        let row = sqlx::query("SELECT * FROM applied_account_changes WHERE idempotency_key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::applied_row).transpose()
    }

    async fn ledger(&self) -> Result<Vec<(String, AppliedChange)>, StoreError> {
        let rows = sqlx::query("SELECT * FROM applied_account_changes ORDER BY applied_at, idempotency_key")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("idempotency_key")?, Self::applied_row(row)?))).collect()
    }
}

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

#[async_trait]
impl Diagnostics for SqliteStore {
    async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM appeals) AS appeals, (SELECT COUNT(*) FROM appeal_events) AS events,
                    (SELECT COUNT(*) FROM timers) AS timers, (SELECT COUNT(*) FROM notifications) AS notifications,
                    (SELECT COUNT(*) FROM appeal_actions) AS actions, (SELECT COUNT(*) FROM Jobs) AS jobs,
                    (SELECT COUNT(*) FROM idempotency_keys) AS idempotency",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(RowCounts {
            appeals: row.try_get("appeals")?,
            events: row.try_get("events")?,
            timers: row.try_get("timers")?,
            notifications: row.try_get("notifications")?,
            actions: row.try_get("actions")?,
            jobs: row.try_get("jobs")?,
            idempotency: row.try_get("idempotency")?,
        })
    }
}

#[async_trait]
impl AccessStore for SqliteStore {
    async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (id, name, role, token_hash, email, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.role.as_str())
            .bind(&t.token_hash)
            .bind(&t.email)
            .bind(ts(t.created_at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::token_row).transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(Self::token_row).collect()
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(ts(at))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_draft(&self, d: &DraftRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO drafts (id, secret_hash, data, ticket, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.id)
        .bind(&d.secret_hash)
        .bind(d.data.to_string())
        .bind(&d.ticket)
        .bind(ts(d.created_at))
        .bind(ts(d.updated_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn draft(&self, id: &str) -> Result<Option<DraftRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM drafts WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.map(|row| {
            Ok(DraftRecord {
                id: row.try_get("id")?,
                secret_hash: row.try_get("secret_hash")?,
                data: parse_json(row.try_get("data")?)?,
                ticket: row.try_get("ticket")?,
                created_at: parse_ts(row.try_get("created_at")?)?,
                updated_at: parse_ts(row.try_get("updated_at")?)?,
            })
        })
        .transpose()
    }

    async fn update_draft(
        &self,
        id: &str,
        data: &serde_json::Value,
        ticket: Option<&str>,
        expected: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // The new time is kept strictly after the old, so the next compare-and-set sees a change.
        let at = at.max(expected + chrono::Duration::microseconds(1));
        let done = sqlx::query(
            "UPDATE drafts SET data = ?, ticket = COALESCE(?, ticket), updated_at = ? WHERE id = ? AND updated_at = ?",
        )
        .bind(data.to_string())
        .bind(ticket)
        .bind(ts(at))
        .bind(id)
        .bind(ts(expected))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_hit(&self, key: &str, window: i64, expires_at: DateTime<Utc>) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO rate_limits (key, slot, count, expires_at) VALUES (?, ?, 1, ?)
             ON CONFLICT (key, slot) DO UPDATE SET count = count + 1 RETURNING count",
        )
        .bind(key)
        .bind(window)
        .bind(ts(expires_at))
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    async fn uncount_hit(&self, key: &str, window: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE rate_limits SET count = count - 1 WHERE key = ? AND slot = ? AND count > 0")
            .bind(key)
            .bind(window)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn prune_rate_limits(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM rate_limits WHERE expires_at < ?").bind(ts(now)).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn delete_stale_drafts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM drafts WHERE ticket IS NULL AND updated_at < ?")
            .bind(ts(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn referenced_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT json_extract(d.value, '$.sha256') FROM drafts, json_each(drafts.data, '$.documents') d
             UNION SELECT json_extract(d.value, '$.sha256') FROM appeals, json_each(appeals.data, '$.draft.documents') d
             UNION SELECT json_extract(d.value, '$.document.sha256')
                   FROM appeals, json_each(appeals.data, '$.previous_documents') d",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().flatten().collect())
    }
}
