//! The embedded default backend: one SQLite file in WAL mode with `synchronous=FULL`.
//! Writers are serialised (`BEGIN IMMEDIATE` plus a busy timeout), so concurrent
//! commands wait for each other instead of failing with "database is locked".

mod access;
mod appeals;
mod directory;
mod work;

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
