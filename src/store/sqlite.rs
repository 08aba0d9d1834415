//! The embedded default backend: one SQLite file in WAL mode with `synchronous=FULL`.
//! Writers are serialised (`BEGIN IMMEDIATE` plus a busy timeout), so concurrent
//! commands wait for each other instead of failing with "database is locked".

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    ActionAttempt, ActionRecord, AppealFilter, AppealRecord, AppliedChange, CommitError, DraftRecord, EffectRecord,
    EventRecord, FailPoint, FailPoints, Gauges, IdempotencyRecord, JobFilter, JobRecord, NewAction, NewNotification,
    NotificationRecord, RowCounts, Store, StoreError, TimerRecord, TimerStatus, TokenRecord, UnitOfWork, WorkFilter,
};
use crate::domain::account::AccountChange;
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
    fail: FailPoints,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        Ok(SqliteStore { pool, fail: FailPoints::default() })
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

    fn effect_row(row: &SqliteRow) -> Result<EffectRecord, StoreError> {
        Ok(EffectRecord {
            id: row.try_get("id")?,
            appeal_id: row.try_get("appeal_id")?,
            event_seq: row.try_get("event_seq")?,
            effect: row.try_get("effect")?,
            template: row.try_get("template")?,
            recipient: row.try_get("recipient")?,
            idempotency_key: row.try_get("idempotency_key")?,
            status: row.try_get("status")?,
            created_at: parse_ts(row.try_get("created_at")?)?,
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
            status: row.try_get("status")?,
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
            status: row.try_get("status")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            created_at: parse_ts(row.try_get("created_at")?)?,
            sent_at: sent.as_deref().map(parse_ts).transpose()?,
        })
    }

    async fn commit_inner(&self, uow: &UnitOfWork) -> Result<i64, CommitError> {
        let at = ts(uow.at);
        let a = &uow.appeal;
        let version = a.new_version();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;

        if let Some(idem) = &uow.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(&idem.key)
            .bind(&idem.fingerprint)
            .bind(idem.response.to_string())
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(CommitError::IdempotencyKeyTaken);
            }
        }

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
                .bind(&at)
                .bind(&at)
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
                    "UPDATE appeals SET state = ?, outcome = ?, version = ?, assignee = ?, data = ?, updated_at = ?
                     WHERE id = ? AND version = ?",
                )
                .bind(&a.state)
                .bind(&a.outcome)
                .bind(version)
                .bind(&a.assignee)
                .bind(&data)
                .bind(&at)
                .bind(&a.id)
                .bind(expected)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    let current = sqlx::query("SELECT state, version FROM appeals WHERE id = ?")
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
        .bind(&at)
        .execute(&mut *tx)
        .await?;

        self.fail.check(FailPoint::AfterEvent)?;

        for name in &uow.cancel {
            sqlx::query(
                "UPDATE timers SET status = 'cancelled', settled_at = ?
                 WHERE appeal_id = ? AND name = ? AND status = 'armed'",
            )
            .bind(&at)
            .bind(&a.id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(timer_id) = uow.fire_timer {
            let fired = sqlx::query(
                "UPDATE timers SET status = 'fired', settled_at = ? WHERE id = ? AND appeal_id = ? AND status = 'armed'",
            )
            .bind(&at)
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
                 VALUES (?, ?, (SELECT COALESCE(MAX(generation), 0) + 1 FROM timers WHERE appeal_id = ? AND name = ?),
                         ?, 'armed', ?)",
            )
            .bind(&a.id)
            .bind(&arm.name)
            .bind(&a.id)
            .bind(&arm.name)
            .bind(ts(arm.due_at))
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        }
        for (i, effect) in uow.effects.iter().enumerate() {
            sqlx::query(
                "INSERT INTO outbox (appeal_id, event_seq, effect, template, recipient, idempotency_key, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&a.id)
            .bind(version)
            .bind(&effect.effect)
            .bind(&effect.template)
            .bind(&effect.to)
            .bind(UnitOfWork::effect_key(&a.id, version, i, effect))
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        }

        self.fail.check(FailPoint::BeforeCommit)?;
        tx.commit().await?;
        Ok(version)
    }
}

const TIMER_COLUMNS: &str =
    "t.id, t.appeal_id, a.ticket, t.name, t.generation, t.due_at, t.status, t.armed_at, t.settled_at";

#[async_trait]
impl Store for SqliteStore {
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

    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM appealflow_migrations WHERE success").fetch_all(&self.pool).await?;
        Ok(sqlx::migrate!("migrations/sqlite").iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect())
    }

    async fn commit(&self, uow: &UnitOfWork) -> Result<i64, CommitError> {
        self.commit_inner(uow).await
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

    async fn settle_stale_timer(&self, timer_id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE timers SET status = 'cancelled', settled_at = ? WHERE id = ? AND status = 'armed'")
            .bind(ts(at))
            .bind(timer_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn effects(&self, appeal_id: &str) -> Result<Vec<EffectRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE appeal_id = ? ORDER BY id")
            .bind(appeal_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::effect_row).collect()
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

    async fn open_appeal_for(&self, account: &str) -> Result<Option<AppealRecord>, StoreError> {
        sqlx::query("SELECT * FROM appeals WHERE account = ? AND outcome IS NULL")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::appeal)
            .transpose()
    }

    async fn pending_effects(&self, limit: i64) -> Result<Vec<EffectRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE status = 'pending' ORDER BY id LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::effect_row).collect()
    }

    async fn effect(&self, id: i64) -> Result<Option<EffectRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM outbox WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::effect_row).transpose()
    }

    async fn set_effect_status(&self, id: i64, from: &str, to: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE outbox SET status = ? WHERE id = ? AND status = ?")
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for a in actions {
            sqlx::query(
                "INSERT INTO appeal_actions (appeal_id, action, idempotency_key, manual, status, created_at, updated_at)
                 VALUES (?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (appeal_id, action) DO NOTHING",
            )
            .bind(appeal_id)
            .bind(&a.action)
            .bind(format!("{appeal_id}:{}", a.action))
            .bind(a.manual)
            .bind(ts(at))
            .bind(ts(at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
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

    async fn record_action_attempt(
        &self,
        id: i64,
        attempt: &ActionAttempt,
        at: DateTime<Utc>,
    ) -> Result<ActionRecord, StoreError> {
        sqlx::query(
            "UPDATE appeal_actions SET status = ?, attempts = attempts + 1, last_error = ?,
                    result = COALESCE(?, result), done_by = COALESCE(?, done_by), updated_at = ?
             WHERE id = ? AND status = 'pending'
               AND (? IS NULL OR (SELECT version FROM appeals WHERE appeals.id = appeal_actions.appeal_id) = ?)",
        )
        .bind(attempt.status)
        .bind(&attempt.error)
        .bind(attempt.result.as_ref().map(|r| r.to_string()))
        .bind(&attempt.done_by)
        .bind(ts(at))
        .bind(id)
        .bind(attempt.if_appeal_version)
        .bind(attempt.if_appeal_version)
        .execute(&self.pool)
        .await?;
        self.action(id).await?.ok_or_else(|| StoreError::Corrupt(format!("action {id} vanished")))
    }

    async fn reset_action(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE appeal_actions SET status = 'pending', updated_at = ? WHERE id = ? AND status = 'failed'",
        )
        .bind(ts(at))
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(row) = sqlx::query("SELECT before, after FROM applied_account_changes WHERE idempotency_key = ?")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?
        {
            return Ok(AppliedChange {
                before: parse_json(row.try_get("before")?)?,
                after: parse_json(row.try_get("after")?)?,
                replayed: true,
            });
        }
        let record: String = sqlx::query_scalar("SELECT record FROM accounts WHERE name = ?")
            .bind(account)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::UnknownAccount(account.to_string()))?;
        let mut acct: Account =
            serde_json::from_str(&record).map_err(|e| StoreError::Corrupt(format!("account record: {e}")))?;
        let before = change.apply(&mut acct);
        let after = serde_json::to_value(&acct.security).expect("settings serialise");
        sqlx::query("UPDATE accounts SET record = ?, updated_at = ? WHERE name = ?")
            .bind(serde_json::to_string(&acct).expect("accounts serialise"))
            .bind(ts(at))
            .bind(account)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO applied_account_changes (idempotency_key, account, action, before, after, applied_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(key)
        .bind(account)
        .bind(action)
        .bind(before.to_string())
        .bind(after.to_string())
        .bind(ts(at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AppliedChange { before, after, replayed: false })
    }

    async fn insert_notifications(&self, items: &[NewNotification], at: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut ids = Vec::new();
        for n in items {
            sqlx::query(
                "INSERT INTO notifications (appeal_id, idempotency_key, template, channel, locale, recipient,
                                            recipient_masked, body, status, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&n.appeal_id)
            .bind(&n.idempotency_key)
            .bind(&n.template)
            .bind(&n.channel)
            .bind(&n.locale)
            .bind(&n.recipient)
            .bind(&n.recipient_masked)
            .bind(&n.body)
            .bind(ts(at))
            .execute(&mut *tx)
            .await?;
            let id: i64 = sqlx::query_scalar("SELECT id FROM notifications WHERE idempotency_key = ?")
                .bind(&n.idempotency_key)
                .fetch_one(&mut *tx)
                .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
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

    async fn record_delivery(
        &self,
        id: i64,
        status: &str,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET status = ?, attempts = attempts + 1, last_error = ?,
                    sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END
             WHERE id = ? AND status <> 'sent'",
        )
        .bind(status)
        .bind(error)
        .bind(status)
        .bind(ts(at))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn queued_effects(&self, limit: i64) -> Result<Vec<EffectRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE status = 'queued' ORDER BY id LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::effect_row).collect()
    }

    async fn defer_job(&self, job_id: &str, delay: std::time::Duration) -> Result<(), StoreError> {
        // run_at is whole seconds: round up, so the wait is never shorter than asked.
        sqlx::query(
            "UPDATE Jobs SET run_at = CAST((julianday('now') - 2440587.5) * 86400.0 + ? + 0.999999 AS INTEGER) WHERE id = ?",
        )
        .bind(delay.as_secs_f64())
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

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
                let status: String = row.try_get("status")?;
                let attempts: i64 = row.try_get("attempts")?;
                let max_attempts: i64 = row.try_get("max_attempts")?;
                let run_at: i64 = row.try_get("run_at")?;
                let args: Option<String> = row.try_get("args")?;
                Ok(JobRecord {
                    id: row.try_get("id")?,
                    queue: row.try_get("job_type")?,
                    dead: status == "Killed" || (status == "Failed" && attempts >= max_attempts),
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
