//! The PostgreSQL backend: for many API and worker processes on many machines. Same
//! unit-of-work contract as SQLite; row locks from the optimistic `UPDATE ... WHERE
//! version = $n` serialise concurrent commands on one appeal.

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

#[async_trait]
impl Database for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("migrations/postgres");
        // Our own bookkeeping table, so the job queue's migrations never collide with ours.
        migrator.dangerous_set_table_name("appealflow_migrations");
        migrator.run(&self.pool).await?;
        Ok(())
    }

    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM appealflow_migrations WHERE success").fetch_all(&self.pool).await?;
        Ok(sqlx::migrate!("migrations/postgres").iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect())
    }

    fn scope(&self) -> &str {
        &self.scope
    }
}

#[async_trait]
impl AppealStore for PgStore {
    async fn commit(&self, uow: &UnitOfWork) -> Result<(), CommitError> {
        let mut tx = self.pool.begin().await?;
        self.write_uow(&mut tx, uow).await?;
        crate::failpoint!(self.scope(), "commit.before_commit");
        tx.commit().await?;
        crate::failpoint!(self.scope(), "commit.after_commit");
        Ok(())
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
        sqlx::query("SELECT * FROM appeals WHERE ticket = $1")
            .bind(ticket.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }

    async fn appeal_by_id(&self, id: &str) -> Result<Option<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }

    async fn list_appeals(&self, filter: &AppealFilter) -> Result<Vec<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE ($1::text IS NULL OR state = $1) ORDER BY created_at, id LIMIT $2")
            .bind(&filter.state)
            .bind(filter.limit.unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::appeal)
            .collect()
    }

    async fn history(&self, appeal_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM appeal_events WHERE appeal_id = $1 ORDER BY seq")
            .bind(appeal_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                let reasons: Json<Vec<String>> = row.try_get("reasons")?;
                let payload: Json<serde_json::Value> = row.try_get("payload")?;
                Ok(EventRecord {
                    seq: row.try_get("seq")?,
                    transition: row.try_get("transition")?,
                    from: row.try_get("from_state")?,
                    to: row.try_get("to_state")?,
                    outcome: row.try_get("outcome")?,
                    actor: row.try_get("actor")?,
                    role: role.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
                    reasons: reasons.0,
                    payload: payload.0,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }

    async fn timers(&self, appeal_id: Option<&str>) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE ($1::text IS NULL OR t.appeal_id = $1) ORDER BY t.due_at, t.id"
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
        Ok(sqlx::query_scalar("SELECT MIN(due_at) FROM timers WHERE status = 'armed'").fetch_one(&self.pool).await?)
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<TimerRecord>, StoreError> {
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE t.status = 'armed' AND t.due_at <= $1 ORDER BY t.due_at, t.id LIMIT $2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::timer)
            .collect()
    }

    async fn remember_idempotency(&self, r: &IdempotencyRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&r.key)
        .bind(&r.fingerprint)
        .bind(Json(&r.response))
        .bind(r.created_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM idempotency_keys WHERE key = $1").bind(key).fetch_optional(&self.pool).await?;
        row.map(|row| {
            let response: Json<serde_json::Value> = row.try_get("response")?;
            Ok(IdempotencyRecord {
                key: row.try_get("key")?,
                fingerprint: row.try_get("fingerprint")?,
                response: response.0,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn open_appeal_for(&self, account: &str) -> Result<Option<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE account = $1 AND outcome IS NULL")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }
}

#[async_trait]
impl DirectoryStore for PgStore {
    async fn put_accounts(&self, accounts: &[Account], at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for a in accounts {
            sqlx::query("INSERT INTO accounts (name, record, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, updated_at = EXCLUDED.updated_at")
                .bind(&a.name)
                .bind(Json(a))
                .bind(at)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM account_keys WHERE account = $1").bind(&a.name).execute(&mut *tx).await?;
            for (kind, value) in a.lookup_keys() {
                let inserted = sqlx::query("INSERT INTO account_keys (kind, value, account) VALUES ($1, $2, $3) ON CONFLICT (kind, value) DO NOTHING")
                    .bind(kind.as_str())
                    .bind(&value)
                    .bind(&a.name)
                    .execute(&mut *tx)
                    .await?;
                if inserted.rows_affected() == 0 {
                    let owner: String =
                        sqlx::query_scalar("SELECT account FROM account_keys WHERE kind = $1 AND value = $2")
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
            sqlx::query("SELECT record FROM accounts WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        row.map(|row| {
            let record: Json<Account> = row.try_get("record")?;
            Ok(record.0)
        })
        .transpose()
    }

    async fn account_record(&self, name: &str) -> Result<Option<(Account, String)>, StoreError> {
        let row = sqlx::query("SELECT record, record::text AS text FROM accounts WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let record: Json<Account> = row.try_get("record")?;
            Ok((record.0, row.try_get("text")?))
        })
        .transpose()
    }

    async fn account_by_key(&self, kind: LookupKind, value: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query("SELECT a.record FROM accounts a JOIN account_keys k ON k.account = a.name WHERE k.kind = $1 AND k.value = $2")
            .bind(kind.as_str())
            .bind(crate::domain::account::normalize_domain(value))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let record: Json<Account> = row.try_get("record")?;
            Ok(record.0)
        })
        .transpose()
    }

    async fn applied_change(&self, key: &str) -> Result<Option<AppliedChange>, StoreError> {
        let row = sqlx::query("SELECT * FROM applied_account_changes WHERE idempotency_key = $1")
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
impl WorkStore for PgStore {
    async fn legacy_effects(&self, limit: i64) -> Result<Vec<LegacyEffect>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE status <> 'done' ORDER BY id LIMIT $1")
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
            "SELECT x.*, a.ticket FROM appeal_actions x JOIN appeals a ON a.id = x.appeal_id WHERE x.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::action_row).transpose()
    }

    async fn actions(&self, filter: &WorkFilter) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT x.*, a.ticket FROM appeal_actions x JOIN appeals a ON a.id = x.appeal_id
             WHERE ($1::text IS NULL OR x.appeal_id = $1) AND ($2::text IS NULL OR x.status = $2) ORDER BY x.id LIMIT $3",
        )
        .bind(&filter.appeal_id)
        .bind(&filter.status)
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::action_row).collect()
    }

    async fn retry_action(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE appeal_actions SET status = 'pending', updated_at = $1 WHERE id = $2 AND status = 'failed'",
        )
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        self.jobs.write_postgres(&mut tx, &[JobRef::ActionRetry { id, nonce }]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn notification(&self, id: i64) -> Result<Option<NotificationRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM notifications WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::notification_row).transpose()
    }

    async fn notifications(&self, filter: &WorkFilter) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE ($1::text IS NULL OR appeal_id = $1) AND ($2::text IS NULL OR status = $2)
             ORDER BY id LIMIT $3",
        )
        .bind(&filter.appeal_id)
        .bind(&filter.status)
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::notification_row).collect()
    }

    async fn chain(&self, chain: &str) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM notifications WHERE chain = $1 ORDER BY position, id")
            .bind(chain)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::notification_row).collect()
    }

    async fn unqueued_work(&self, limit: i64) -> Result<Vec<JobRef>, StoreError> {
        let rows = sqlx::query(
            "SELECT 'notification' AS kind, n.id AS id FROM notifications n
             WHERE n.status = 'pending'
               AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.job_type = 'appealflow.notifications'
                               AND j.idempotency_key = 'notification:' || n.id)
             UNION ALL
             SELECT 'action' AS kind, x.id AS id FROM appeal_actions x
             WHERE x.status = 'pending' AND NOT x.manual
               AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.job_type = 'appealflow.actions'
                               AND (j.idempotency_key = 'action:' || x.id
                                    OR j.idempotency_key LIKE 'action:' || x.id || ':retry:%'))
             ORDER BY id LIMIT $1",
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
        self.jobs.write_postgres(&mut tx, jobs).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl QueueAdmin for PgStore {
    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, job_type, status, attempts::bigint AS attempts, max_attempts::bigint AS max_attempts, run_at,
                    last_result::text AS last_result, convert_from(job, 'UTF8') AS args
             FROM apalis.jobs
             WHERE ($1::text IS NULL OR job_type = $1)
               AND (NOT $2 OR (status = 'Failed' AND attempts >= max_attempts) OR status = 'Killed')
             ORDER BY run_at DESC, id DESC LIMIT $3",
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
                let args: Option<String> = row.try_get("args")?;
                Ok(JobRecord {
                    id: row.try_get("id")?,
                    queue: row.try_get("job_type")?,
                    dead: status == JobStatus::Killed || (status == JobStatus::Failed && attempts >= max_attempts),
                    status,
                    attempts,
                    max_attempts,
                    run_at: row.try_get("run_at")?,
                    last_result: row.try_get("last_result")?,
                    args: args.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn runnable_jobs(&self, queues: &[&str]) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*)::bigint FROM apalis.jobs
             WHERE job_type = ANY($1)
               AND (status IN ('Queued', 'Running')
                    OR (status = 'Pending' AND run_at <= clock_timestamp())
                    OR (status = 'Failed' AND attempts < max_attempts AND run_at <= clock_timestamp()))",
        )
        .bind(queues)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    async fn retry_job(&self, job_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, run_at = now(),
                    lock_by = NULL, lock_at = NULL, done_at = NULL
             WHERE id = $1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn retire_queue(&self, queue: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE apalis.jobs SET status = 'Done', done_at = now(),
                    last_result = '{\"Ok\": \"retired: carried out by the upgrade\"}'::jsonb
             WHERE job_type = $1 AND status NOT IN ('Done', 'Killed')",
        )
        .bind(queue)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn gauges(&self, breach_timer: &str) -> Result<Gauges, StoreError> {
        let appeals_by_state: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*)::bigint FROM appeals GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?;
        let jobs_by_status: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*)::bigint FROM apalis.jobs GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
        let dead_jobs: i64 = sqlx::query_scalar(
            "SELECT COUNT(*)::bigint FROM apalis.jobs WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)",
        )
        .fetch_one(&self.pool)
        .await?;
        let sla_breaches: i64 =
            sqlx::query_scalar("SELECT COUNT(*)::bigint FROM timers WHERE name = $1 AND status = 'fired'")
                .bind(breach_timer)
                .fetch_one(&self.pool)
                .await?;
        Ok(Gauges { appeals_by_state, jobs_by_status, dead_jobs, sla_breaches })
    }
}

#[async_trait]
impl Diagnostics for PgStore {
    async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM appeals) AS appeals, (SELECT COUNT(*) FROM appeal_events) AS events,
                    (SELECT COUNT(*) FROM timers) AS timers, (SELECT COUNT(*) FROM notifications) AS notifications,
                    (SELECT COUNT(*) FROM appeal_actions) AS actions, (SELECT COUNT(*) FROM apalis.jobs) AS jobs,
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
impl AccessStore for PgStore {
    async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, email, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(&t.token_hash)
        .bind(&t.email)
        .bind(t.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
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
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_draft(&self, d: &DraftRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO drafts (id, secret_hash, data, ticket, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&d.id)
        .bind(&d.secret_hash)
        .bind(Json(&d.data))
        .bind(&d.ticket)
        .bind(d.created_at)
        .bind(d.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn draft(&self, id: &str) -> Result<Option<DraftRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM drafts WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|row| {
            let data: Json<serde_json::Value> = row.try_get("data")?;
            Ok(DraftRecord {
                id: row.try_get("id")?,
                secret_hash: row.try_get("secret_hash")?,
                data: data.0,
                ticket: row.try_get("ticket")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
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
            "UPDATE drafts SET data = $1, ticket = COALESCE($2, ticket), updated_at = $3 WHERE id = $4 AND updated_at = $5",
        )
        .bind(Json(data))
        .bind(ticket)
        .bind(at)
        .bind(id)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_hit(&self, key: &str, window: i64, expires_at: DateTime<Utc>) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO rate_limits (key, slot, count, expires_at) VALUES ($1, $2, 1, $3)
             ON CONFLICT (key, slot) DO UPDATE SET count = rate_limits.count + 1 RETURNING count",
        )
        .bind(key)
        .bind(window)
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    async fn uncount_hit(&self, key: &str, window: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE rate_limits SET count = count - 1 WHERE key = $1 AND slot = $2 AND count > 0")
            .bind(key)
            .bind(window)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn prune_rate_limits(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM rate_limits WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn delete_stale_drafts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM drafts WHERE ticket IS NULL AND updated_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn referenced_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT d ->> 'sha256' FROM drafts, jsonb_array_elements(COALESCE(data -> 'documents', '[]')) d
             UNION SELECT d ->> 'sha256'
                   FROM appeals, jsonb_array_elements(COALESCE(data -> 'draft' -> 'documents', '[]')) d
             UNION SELECT d -> 'document' ->> 'sha256'
                   FROM appeals, jsonb_array_elements(COALESCE(data -> 'previous_documents', '[]')) d",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().flatten().collect())
    }
}
