//! The PostgreSQL backend: for many API and worker processes on many machines. Same
//! unit-of-work contract as SQLite; row locks from the optimistic `UPDATE ... WHERE
//! version = $n` serialise concurrent commands on one appeal.

mod access;
mod appeals;
mod directory;
mod work;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};

use super::prelude::*;
use super::{
    ActionRecord, ActionStatus, AppealChange, AppealFilter, AppealRecord, AppliedChange, CommitError, DeliveryUpdate,
    DraftRecord, EventRecord, Gauges, IdempotencyRecord, JobFilter, JobRecord, JobRef, JobStatus, JobWriter,
    LegacyEffect, NotificationRecord, NotificationStatus, RowCounts, StoreError, TimerFiring, TimerHandler,
    TimerRecord, TimerStatus, TimerVerdict, TokenRecord, UnitOfWork, WorkFilter,
};
use crate::domain::{Account, LookupKind, TicketNumber};

fn ticket(s: String) -> Result<TicketNumber, StoreError> {
    TicketNumber::parse(&s).map_err(|e| StoreError::Corrupt(format!("ticket {s:?}: {e}")))
}

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

    fn appeal(row: &PgRow) -> Result<AppealRecord, StoreError> {
        let data: Json<serde_json::Value> = row.try_get("data")?;
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
            data: data.0,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    fn action_row(row: &PgRow) -> Result<ActionRecord, StoreError> {
        let result: Option<Json<serde_json::Value>> = row.try_get("result")?;
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
            result: result.map(|r| r.0),
            done_by: row.try_get("done_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    fn notification_row(row: &PgRow) -> Result<NotificationRecord, StoreError> {
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
            created_at: row.try_get("created_at")?,
            sent_at: row.try_get("sent_at")?,
            chain: row.try_get("chain")?,
            position: row.try_get("position")?,
            on_delivered: row.try_get("on_delivered")?,
            on_undeliverable: row.try_get("on_undeliverable")?,
        })
    }

    fn token_row(row: &PgRow) -> Result<TokenRecord, StoreError> {
        let role: String = row.try_get("role")?;
        Ok(TokenRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role: role.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
            token_hash: row.try_get("token_hash")?,
            email: row.try_get("email")?,
            created_at: row.try_get("created_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }

    fn timer(row: &PgRow) -> Result<TimerRecord, StoreError> {
        Ok(TimerRecord {
            id: row.try_get("id")?,
            appeal_id: row.try_get("appeal_id")?,
            ticket: ticket(row.try_get("ticket")?)?,
            name: row.try_get("name")?,
            generation: row.try_get("generation")?,
            due_at: row.try_get("due_at")?,
            status: TimerStatus::parse(row.try_get("status")?)?,
            armed_at: row.try_get("armed_at")?,
            settled_at: row.try_get("settled_at")?,
        })
    }

    fn applied_row(row: &PgRow) -> Result<AppliedChange, StoreError> {
        let before: Json<serde_json::Value> = row.try_get("before")?;
        let after: Json<serde_json::Value> = row.try_get("after")?;
        Ok(AppliedChange {
            account: row.try_get("account")?,
            action: row.try_get("action")?,
            before: before.0,
            after: after.0,
            applied_at: row.try_get("applied_at")?,
        })
    }

    /// Writes one unit of work through an open transaction (its caller commits).
    async fn write_uow(&self, conn: &mut PgConnection, uow: &UnitOfWork) -> Result<(), CommitError> {
        let at = uow.at;
        if let Some(idem) = &uow.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(&idem.key)
            .bind(&idem.fingerprint)
            .bind(Json(&idem.response))
            .bind(at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(CommitError::IdempotencyKeyTaken);
            }
        }
        for change in &uow.changes {
            Self::write_change(conn, change, at).await?;
        }
        crate::failpoint!(self.scope(), "commit.after_changes");

        let mut jobs = uow.jobs.clone();
        for n in &uow.notifications {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO notifications (appeal_id, idempotency_key, template, channel, locale, recipient,
                                            recipient_masked, body, status, created_at, chain, position,
                                            on_delivered, on_undeliverable)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
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
            .bind(at)
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
                        "UPDATE notifications SET status = $1, attempts = attempts + 1, last_error = $2,
                                sent_at = CASE WHEN $1 = 'sent' THEN $3 ELSE sent_at END
                         WHERE id = $4 AND status = 'pending'",
                    )
                    .bind(status.as_str())
                    .bind(error)
                    .bind(at)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                    (*id, done.rows_affected())
                }
                DeliveryUpdate::Release { id } => {
                    let done =
                        sqlx::query("UPDATE notifications SET status = 'pending' WHERE id = $1 AND status = 'held'")
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                    jobs.push(JobRef::Notification(*id));
                    (*id, done.rows_affected())
                }
                DeliveryUpdate::Skip { id } => {
                    let done =
                        sqlx::query("UPDATE notifications SET status = 'skipped' WHERE id = $1 AND status = 'held'")
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
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT (appeal_id, action) DO NOTHING RETURNING id",
            )
            .bind(&a.appeal_id)
            .bind(&a.action)
            .bind(a.key())
            .bind(a.manual)
            .bind(at)
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
                "UPDATE appeal_actions SET status = $1, attempts = attempts + 1, last_error = $2,
                        result = COALESCE($3, result), done_by = COALESCE($4, done_by), updated_at = $5
                 WHERE id = $6 AND status = 'pending'",
            )
            .bind(u.status.as_str())
            .bind(&u.error)
            .bind(u.result.as_ref().map(Json))
            .bind(&u.done_by)
            .bind(at)
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
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&l.key)
            .bind(&l.account)
            .bind(&l.action)
            .bind(Json(&l.before))
            .bind(Json(&l.after))
            .bind(at)
            .execute(&mut *conn)
            .await?;
            let updated =
                sqlx::query("UPDATE accounts SET record = $1, updated_at = $2 WHERE name = $3 AND record = $4::jsonb")
                    .bind(Json(&l.record))
                    .bind(at)
                    .bind(&l.account)
                    .bind(&l.expected)
                    .execute(&mut *conn)
                    .await?;
            if inserted.rows_affected() == 0 || updated.rows_affected() == 0 {
                return Err(CommitError::Stale(format!("account {}", l.account)));
            }
        }
        if !uow.legacy_effects_done.is_empty() {
            sqlx::query("UPDATE outbox SET status = 'done' WHERE id = ANY($1)")
                .bind(&uow.legacy_effects_done)
                .execute(&mut *conn)
                .await?;
        }
        if let Some(d) = &uow.defer_job {
            sqlx::query("UPDATE apalis.jobs SET run_at = clock_timestamp() + make_interval(secs => $1) WHERE id = $2")
                .bind(d.delay.as_secs_f64())
                .bind(&d.job_id)
                .execute(&mut *conn)
                .await?;
        }
        crate::failpoint!(self.scope(), "commit.after_rows");
        if !jobs.is_empty() {
            self.jobs.write_postgres(conn, &jobs).await?;
        }
        Ok(())
    }

    async fn write_change(
        conn: &mut PgConnection,
        change: &AppealChange,
        at: DateTime<Utc>,
    ) -> Result<(), CommitError> {
        let a = &change.appeal;
        let version = a.new_version();
        match a.expected_version {
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO appeals (id, ticket, workflow, workflow_version, account, state, outcome, version,
                                          assignee, data, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $10)
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
                .bind(Json(&a.data))
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
                    "UPDATE appeals SET state = $1, outcome = $2, version = $3, assignee = $4, data = $5, updated_at = $6
                     WHERE id = $7 AND version = $8",
                )
                .bind(&a.state)
                .bind(&a.outcome)
                .bind(version)
                .bind(&a.assignee)
                .bind(Json(&a.data))
                .bind(at)
                .bind(&a.id)
                .bind(expected)
                .execute(&mut *conn)
                .await
                .map_err(|e| match e.as_database_error() {
                    Some(db) if db.is_unique_violation() => CommitError::OpenAppealExists,
                    _ => CommitError::from(e),
                })?;
                if updated.rows_affected() == 0 {
                    let current = sqlx::query("SELECT state, version FROM appeals WHERE id = $1")
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&a.id)
        .bind(version)
        .bind(&e.transition)
        .bind(&e.from)
        .bind(&e.to)
        .bind(&e.outcome)
        .bind(&e.actor)
        .bind(e.role.as_str())
        .bind(Json(&e.reasons))
        .bind(Json(&e.payload))
        .bind(at)
        .execute(&mut *conn)
        .await?;

        if !change.cancel.is_empty() {
            sqlx::query(
                "UPDATE timers SET status = 'cancelled', settled_at = $1
                 WHERE appeal_id = $2 AND name = ANY($3) AND status = 'armed'",
            )
            .bind(at)
            .bind(&a.id)
            .bind(&change.cancel)
            .execute(&mut *conn)
            .await?;
        }
        if let Some(timer_id) = change.fire_timer {
            let fired = sqlx::query(
                "UPDATE timers SET status = 'fired', settled_at = $1
                 WHERE id = $2 AND appeal_id = $3 AND status = 'armed'",
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
                 VALUES ($1, $2, (SELECT COALESCE(MAX(generation), 0) + 1 FROM timers WHERE appeal_id = $1 AND name = $2),
                         $3, 'armed', $4)",
            )
            .bind(&a.id)
            .bind(&arm.name)
            .bind(arm.due_at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn fire_due_inner(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        appeal_id: Option<&str>,
        handler: &dyn TimerHandler,
    ) -> Result<Vec<TimerFiring>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Claimed rows stay locked until the batch commits; another worker skips them
        // (and their appeals) instead of waiting or firing them a second time.
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE t.status = 'armed' AND t.due_at <= $1 AND ($2::text IS NULL OR t.appeal_id = $2)
             ORDER BY t.due_at, t.id LIMIT $3
             FOR UPDATE OF t SKIP LOCKED"
        );
        let claimed: Vec<TimerRecord> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
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
            // The appeal is locked too, so the firing decides on a state no command
            // can change before the batch commits; one a command holds is left for the
            // next batch.
            let row = sqlx::query("SELECT * FROM appeals WHERE id = $1 FOR UPDATE SKIP LOCKED")
                .bind(&timer.appeal_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else { continue };
            let appeal = Self::appeal(&row)?;
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
                        "UPDATE timers SET status = 'cancelled', settled_at = $1 WHERE id = $2 AND status = 'armed'",
                    )
                    .bind(now)
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
