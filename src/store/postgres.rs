//! The PostgreSQL backend: for many API and worker processes on many machines. Same
//! unit-of-work contract as SQLite; row locks from the optimistic `UPDATE ... WHERE
//! version = $n` serialise concurrent commands on one appeal.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Row};

use super::{
    ActionAttempt, ActionRecord, AppealFilter, AppealRecord, AppliedChange, CommitError, DraftRecord, EffectRecord,
    EventRecord, FailPoint, FailPoints, Gauges, IdempotencyRecord, JobFilter, JobRecord, NewAction, NewNotification,
    NotificationRecord, RowCounts, Store, StoreError, TimerRecord, TimerStatus, TokenRecord, UnitOfWork, WorkFilter,
};
use crate::domain::account::AccountChange;
use crate::domain::{Account, LookupKind, TicketNumber};

fn ticket(s: String) -> Result<TicketNumber, StoreError> {
    TicketNumber::parse(&s).map_err(|e| StoreError::Corrupt(format!("ticket {s:?}: {e}")))
}

pub struct PgStore {
    pool: PgPool,
    fail: FailPoints,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(PgStore { pool, fail: FailPoints::default() })
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

    fn effect_row(row: &PgRow) -> Result<EffectRecord, StoreError> {
        Ok(EffectRecord {
            id: row.try_get("id")?,
            appeal_id: row.try_get("appeal_id")?,
            event_seq: row.try_get("event_seq")?,
            effect: row.try_get("effect")?,
            template: row.try_get("template")?,
            recipient: row.try_get("recipient")?,
            idempotency_key: row.try_get("idempotency_key")?,
            status: row.try_get("status")?,
            created_at: row.try_get("created_at")?,
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
            status: row.try_get("status")?,
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
            status: row.try_get("status")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            created_at: row.try_get("created_at")?,
            sent_at: row.try_get("sent_at")?,
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
}

const TIMER_COLUMNS: &str =
    "t.id, t.appeal_id, a.ticket, t.name, t.generation, t.due_at, t.status, t.armed_at, t.settled_at";

#[async_trait]
impl Store for PgStore {
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

    async fn commit(&self, uow: &UnitOfWork) -> Result<i64, CommitError> {
        let at = uow.at;
        let a = &uow.appeal;
        let version = a.new_version();
        let mut tx = self.pool.begin().await?;

        if let Some(idem) = &uow.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(&idem.key)
            .bind(&idem.fingerprint)
            .bind(Json(&idem.response))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(CommitError::IdempotencyKeyTaken);
            }
        }

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
                .execute(&mut *tx)
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
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    let current = sqlx::query("SELECT state, version FROM appeals WHERE id = $1")
                        .bind(&a.id)
                        .fetch_one(&mut *tx)
                        .await?;
                    return Err(CommitError::Conflict {
                        state: current.try_get("state")?,
                        version: current.try_get("version")?,
                    });
                }
            }
        }

        let e = &uow.event;
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
        .execute(&mut *tx)
        .await?;

        self.fail.check(FailPoint::AfterEvent)?;

        if !uow.cancel.is_empty() {
            sqlx::query(
                "UPDATE timers SET status = 'cancelled', settled_at = $1
                 WHERE appeal_id = $2 AND name = ANY($3) AND status = 'armed'",
            )
            .bind(at)
            .bind(&a.id)
            .bind(&uow.cancel)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(timer_id) = uow.fire_timer {
            let fired = sqlx::query(
                "UPDATE timers SET status = 'fired', settled_at = $1
                 WHERE id = $2 AND appeal_id = $3 AND status = 'armed'",
            )
            .bind(at)
            .bind(timer_id)
            .bind(&a.id)
            .execute(&mut *tx)
            .await?;
            if fired.rows_affected() == 0 {
                return Err(CommitError::TimerNotArmed);
            }
        }
        for arm in &uow.arm {
            sqlx::query(
                "INSERT INTO timers (appeal_id, name, generation, due_at, status, armed_at)
                 VALUES ($1, $2, (SELECT COALESCE(MAX(generation), 0) + 1 FROM timers WHERE appeal_id = $1 AND name = $2),
                         $3, 'armed', $4)",
            )
            .bind(&a.id)
            .bind(&arm.name)
            .bind(arm.due_at)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        for (i, effect) in uow.effects.iter().enumerate() {
            sqlx::query(
                "INSERT INTO outbox (appeal_id, event_seq, effect, template, recipient, idempotency_key, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&a.id)
            .bind(version)
            .bind(&effect.effect)
            .bind(&effect.template)
            .bind(&effect.to)
            .bind(UnitOfWork::effect_key(&a.id, version, i, effect))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }

        self.fail.check(FailPoint::BeforeCommit)?;
        tx.commit().await?;
        Ok(version)
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

    async fn settle_stale_timer(&self, timer_id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE timers SET status = 'cancelled', settled_at = $1 WHERE id = $2 AND status = 'armed'")
            .bind(at)
            .bind(timer_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn effects(&self, appeal_id: &str) -> Result<Vec<EffectRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE appeal_id = $1 ORDER BY id")
            .bind(appeal_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::effect_row).collect()
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

    async fn open_appeal_for(&self, account: &str) -> Result<Option<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE account = $1 AND outcome IS NULL")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }

    async fn pending_effects(&self, limit: i64) -> Result<Vec<EffectRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE status = 'pending' ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::effect_row).collect()
    }

    async fn effect(&self, id: i64) -> Result<Option<EffectRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM outbox WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::effect_row).transpose()
    }

    async fn set_effect_status(&self, id: i64, from: &str, to: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE outbox SET status = $1 WHERE id = $2 AND status = $3")
            .bind(to)
            .bind(id)
            .bind(from)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_actions(
        &self,
        appeal_id: &str,
        actions: &[NewAction],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for a in actions {
            sqlx::query(
                "INSERT INTO appeal_actions (appeal_id, action, idempotency_key, manual, status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT (appeal_id, action) DO NOTHING",
            )
            .bind(appeal_id)
            .bind(&a.action)
            .bind(format!("{appeal_id}:{}", a.action))
            .bind(a.manual)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
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

    async fn record_action_attempt(
        &self,
        id: i64,
        attempt: &ActionAttempt,
        at: DateTime<Utc>,
    ) -> Result<ActionRecord, StoreError> {
        sqlx::query(
            "UPDATE appeal_actions SET status = $1, attempts = attempts + 1, last_error = $2,
                    result = COALESCE($3, result), done_by = COALESCE($4, done_by), updated_at = $5
             WHERE id = $6 AND status = 'pending'
               AND ($7::BIGINT IS NULL
                    OR (SELECT version FROM appeals WHERE appeals.id = appeal_actions.appeal_id) = $7)",
        )
        .bind(attempt.status)
        .bind(&attempt.error)
        .bind(attempt.result.as_ref().map(Json))
        .bind(&attempt.done_by)
        .bind(at)
        .bind(id)
        .bind(attempt.if_appeal_version)
        .execute(&self.pool)
        .await?;
        self.action(id).await?.ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))
    }

    async fn reset_action(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE appeal_actions SET status = 'pending', updated_at = $1 WHERE id = $2 AND status = 'failed'",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn apply_account_change(
        &self,
        key: &str,
        account: &str,
        action: &str,
        change: &AccountChange,
        at: DateTime<Utc>,
    ) -> Result<AppliedChange, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The account row lock serialises two workers applying changes to one account;
        // the ledger's primary key makes a second application of one key impossible.
        let record: Json<Account> = sqlx::query_scalar("SELECT record FROM accounts WHERE name = $1 FOR UPDATE")
            .bind(account)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::UnknownAccount(account.to_string()))?;
        if let Some(row) = sqlx::query("SELECT before, after FROM applied_account_changes WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?
        {
            let before: Json<serde_json::Value> = row.try_get("before")?;
            let after: Json<serde_json::Value> = row.try_get("after")?;
            return Ok(AppliedChange { before: before.0, after: after.0, replayed: true });
        }
        let mut acct = record.0;
        let before = change.apply(&mut acct);
        let after = serde_json::to_value(&acct.security).expect("settings serialise");
        sqlx::query("UPDATE accounts SET record = $1, updated_at = $2 WHERE name = $3")
            .bind(Json(&acct))
            .bind(at)
            .bind(account)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO applied_account_changes (idempotency_key, account, action, before, after, applied_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key)
        .bind(account)
        .bind(action)
        .bind(Json(&before))
        .bind(Json(&after))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AppliedChange { before, after, replayed: false })
    }

    async fn insert_notifications(&self, items: &[NewNotification], at: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::new();
        for n in items {
            sqlx::query(
                "INSERT INTO notifications (appeal_id, idempotency_key, template, channel, locale, recipient,
                                            recipient_masked, body, status, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9) ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&n.appeal_id)
            .bind(&n.idempotency_key)
            .bind(&n.template)
            .bind(&n.channel)
            .bind(&n.locale)
            .bind(&n.recipient)
            .bind(&n.recipient_masked)
            .bind(&n.body)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let id: i64 = sqlx::query_scalar("SELECT id FROM notifications WHERE idempotency_key = $1")
                .bind(&n.idempotency_key)
                .fetch_one(&mut *tx)
                .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
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

    async fn record_delivery(
        &self,
        id: i64,
        status: &str,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET status = $1, attempts = attempts + 1, last_error = $2,
                    sent_at = CASE WHEN $1 = 'sent' THEN $3 ELSE sent_at END
             WHERE id = $4 AND status <> 'sent'",
        )
        .bind(status)
        .bind(error)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn queued_effects(&self, limit: i64) -> Result<Vec<EffectRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE status = 'queued' ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::effect_row).collect()
    }

    async fn defer_job(&self, job_id: &str, delay: std::time::Duration) -> Result<(), StoreError> {
        sqlx::query("UPDATE apalis.jobs SET run_at = now() + make_interval(secs => $1) WHERE id = $2")
            .bind(delay.as_secs_f64())
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

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
                let status: String = row.try_get("status")?;
                let attempts: i64 = row.try_get("attempts")?;
                let max_attempts: i64 = row.try_get("max_attempts")?;
                let args: Option<String> = row.try_get("args")?;
                Ok(JobRecord {
                    id: row.try_get("id")?,
                    queue: row.try_get("job_type")?,
                    dead: status == "Killed" || (status == "Failed" && attempts >= max_attempts),
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

    async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM appeals) AS appeals, (SELECT COUNT(*) FROM appeal_events) AS events,
                    (SELECT COUNT(*) FROM timers) AS timers, (SELECT COUNT(*) FROM outbox) AS outbox,
                    (SELECT COUNT(*) FROM idempotency_keys) AS idempotency",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(RowCounts {
            appeals: row.try_get("appeals")?,
            events: row.try_get("events")?,
            timers: row.try_get("timers")?,
            outbox: row.try_get("outbox")?,
            idempotency: row.try_get("idempotency")?,
        })
    }

    fn fail_points(&self) -> &FailPoints {
        &self.fail
    }
}
