//! A batch of due timers: claimed with their appeals in one statement, decided one by
//! one, and written in one transaction — on SQLite, for a burn-down in lanes, claimed
//! and decided on a read connection first and checked under the write lock
//! (`Backend::fire_due_read_first`); else claimed under the backend's locks and written
//! in parts, each part written while the next is decided. A part (or the checked batch)
//! is written set-wise (batch_writes.rs) when every firing of it is a plain one, else
//! one firing at a time behind its own savepoint, which is also how a set-wise write
//! that fails is done again, so one firing that cannot be written spoils no other.

use super::batch_writes::set_wise;
use super::*;
use sqlx::FromRow;
use std::collections::HashMap;

/// A claimed timer, as decided.
enum Decided {
    /// Left armed: nothing to write.
    Left(TimerFiring),
    /// To settle without acting: its appeal moved on.
    Stale(TimerFiring),
    /// To fire: its unit of work, and its appeal as claimed.
    Fire(TimerRecord, Box<UnitOfWork>, Box<AppealRecord>),
}

impl Decided {
    fn timer(&self) -> &TimerRecord {
        match self {
            Decided::Left(f) | Decided::Stale(f) => &f.timer,
            Decided::Fire(timer, _, _) => timer,
        }
    }

    fn into_timer(self) -> TimerRecord {
        match self {
            Decided::Left(f) | Decided::Stale(f) => f.timer,
            Decided::Fire(timer, _, _) => timer,
        }
    }
}

/// The parts a batch is decided and written in: while one is written, the next is
/// decided (`Backend::fire_due`).
const PARTS: usize = 4;
/// The fewest firings of a part.
const MIN_PART: usize = 16;

impl Backend {
    pub(super) async fn fire_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        appeal_id: Option<&str>,
        besides: &[String],
        handler: &dyn TimerHandler,
    ) -> Result<Vec<TimerFiring>, StoreError> {
        if Self::CLAIM_BEFORE_LOCK && appeal_id.is_none() && handler.beside_others() {
            return self.fire_due_read_first(now, limit, besides, handler).await;
        }
        // PostgreSQL: claimed rows stay locked until the batch commits; another worker
        // skips them (and their appeals) instead of waiting or firing them twice.
        // SQLite (a command's catch-up, or a burn-down in one lane): one writer at a time,
        // so the claim is the write lock itself.
        // A burn-down's batch takes the timer loop's turn (SQLite: the pause between
        // batches is taken there); a command's catch-up does not.
        let turn = if appeal_id.is_none() { self.write_turn().await } else { None };
        let mut tx = self.pool.begin_with(Self::BEGIN).await?;
        let batch = Self::claim(&mut tx, now, limit, appeal_id, besides, handler, true).await?;
        if batch.is_empty() {
            return Ok(vec![]);
        }
        crate::failpoint!(self.scope(), "timers.after_claim");
        // Deciding takes no turn at the database, writing little of the process's: the
        // batch goes in parts, each written while the next is decided.
        let part = batch.len().div_ceil(PARTS).max(MIN_PART);
        let mut claimed = batch.into_iter();
        let mut out = Vec::new();
        let mut decided = decide(handler, claimed.by_ref().take(part)).await;
        while !decided.is_empty() {
            let (written, next) = tokio::join!(
                self.write_part(&mut tx, decided, now, handler),
                decide(handler, claimed.by_ref().take(part))
            );
            out.extend(written?);
            decided = next;
        }
        crate::failpoint!(self.scope(), "timers.before_commit");
        tx.commit().await?;
        drop(turn);
        Ok(out)
    }

    /// A burn-down's batch on a store with one write lock (SQLite), with other batches in
    /// flight beside it (`TimerHandler::beside_others`): claimed and decided
    /// on a read connection's snapshot, without the lock, so that one batch is decided
    /// while another holds the lock to write (the timer loop's lanes); then, under the
    /// lock, each firing is written only if its timer is still armed and its appeal
    /// still at the version it was decided on. One that changed meanwhile (a command,
    /// another process's timer loop) is left armed, reported as `changed`, and decided
    /// again by a later batch on what it became. The lanes keep a batch from claiming
    /// the appeals another of this process's batches holds, so a snapshot taken before
    /// that batch commits never sees them.
    async fn fire_due_read_first(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        besides: &[String],
        handler: &dyn TimerHandler,
    ) -> Result<Vec<TimerFiring>, StoreError> {
        let mut read = self.reads.begin_with(Self::BEGIN_READ).await?;
        let batch = Self::claim(&mut read, now, limit, None, besides, handler, false).await?;
        read.commit().await?;
        if batch.is_empty() {
            return Ok(vec![]);
        }
        let versions: HashMap<i64, i64> = batch.iter().map(|(t, a)| (t.id, a.version)).collect();
        let decided = decide(handler, batch.into_iter()).await;
        let turn = self.write_turn().await;
        let mut tx = self.pool.begin_with(Self::BEGIN).await?;
        let ids: Vec<i64> = versions.keys().copied().collect();
        let sql = format!(
            "SELECT t.id, a.version FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE t.id IN ({}) AND t.status = 'armed'",
            Self::IN_JSON_LIST
        );
        let current: HashMap<i64, i64> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(Json(&ids)).fetch_all(&mut *tx).await?.into_iter().collect();
        crate::failpoint!(self.scope(), "timers.after_claim");
        let decided = decided
            .into_iter()
            .map(|d| {
                let timer = d.timer();
                if current.get(&timer.id) == versions.get(&timer.id) {
                    return d;
                }
                let timer = d.into_timer();
                let note = "its timer or appeal changed while the batch was decided; a later batch decides it again";
                Decided::Left(TimerFiring { timer, outcome: TimerFiring::CHANGED, note: Some(note.into()) })
            })
            .collect();
        let out = self.write_part(&mut tx, decided, now, handler).await?;
        crate::failpoint!(self.scope(), "timers.before_commit");
        tx.commit().await?;
        drop(turn);
        Ok(out)
    }

    /// Claims up to `limit` due timers (of `appeal_id` only, when given; none of the
    /// appeals in `besides`) with their appeals, at most one per appeal, in claim order,
    /// and hands the handler the timers of those appeals (`TimerHandler::prepare`).
    /// `lock`: take the backend's row locks on them (PostgreSQL), held to the end of
    /// `conn`'s transaction.
    async fn claim(
        conn: &mut Conn,
        now: DateTime<Utc>,
        limit: i64,
        appeal_id: Option<&str>,
        besides: &[String],
        handler: &dyn TimerHandler,
        lock: bool,
    ) -> Result<Vec<(TimerRecord, AppealRecord)>, StoreError> {
        // The timers and their appeals in one statement. The due timers are taken first,
        // in claim order, from the index that holds that order (`timers_due`), so a claim
        // reads only the rows it takes however many are due, and only then joined to
        // their appeals. The appeal is locked with its timer (PostgreSQL), so a firing
        // decides on a state no command can change before the batch commits; a timer
        // whose appeal a command holds is skipped, left for the next batch. The appeals
        // another batch of this process holds (`besides`) are left out by a condition the
        // index scan tests before the lock: locking their timers would keep that batch
        // from settling them, and a timer of theirs taken here would fire ahead of the
        // one that batch fires.
        let besides_clause = if besides.is_empty() {
            String::new()
        } else {
            format!(" AND d.appeal_id NOT IN ({})", Self::IN_JSON_LIST.replace("$1", "$4"))
        };
        let (lock_timers, lock_appeals) =
            if lock { (Self::LOCK_DUE_TIMERS, Self::LOCK_CLAIMED_APPEALS) } else { ("", "") };
        let sql = format!(
            "WITH due AS (SELECT d.* FROM timers d
                          WHERE d.status = 'armed' AND d.due_at <= $1 AND {}{besides_clause}
                          ORDER BY d.due_at, d.id LIMIT $3{lock_timers})
             SELECT {APPEAL_COLUMNS}, t.id AS timer_id, t.name AS timer_name, t.generation AS timer_generation,
                    t.due_at AS timer_due_at, t.status AS timer_status, t.armed_at AS timer_armed_at,
                    t.settled_at AS timer_settled_at
             FROM due t JOIN appeals a ON a.id = t.appeal_id
             ORDER BY t.due_at, t.id{lock_appeals}",
            equals_if(appeal_id, "d.appeal_id", 2),
        );
        let claim = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(Stamp(now)).bind(appeal_id).bind(limit);
        let claim = if besides.is_empty() { claim } else { claim.bind(Json(besides)) };
        let rows = claim.fetch_all(&mut *conn).await?;
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut batch = Vec::new();
        for row in rows {
            let (timer, appeal) = claimed(&row)?;
            // One firing per appeal per batch: the next batch reads what this one wrote.
            if seen.insert(timer.appeal_id.clone()) {
                batch.push((timer, appeal));
            }
        }
        let ids: Vec<&String> = seen.iter().collect();
        let sql = format!(
            "SELECT {TIMER_COLUMNS} FROM timers t JOIN appeals a ON a.id = t.appeal_id
             WHERE t.appeal_id IN ({}) ORDER BY t.due_at, t.id",
            Self::IN_JSON_LIST
        );
        handler.prepare(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(Json(&ids)).fetch_all(&mut *conn).await?);
        Ok(batch)
    }

    /// Writes a part of a batch as decided: the stale timers settled, the firings
    /// set-wise (one statement per kind of row for the part) when every one of them is
    /// a plain one, else one at a time behind its own savepoint — which is also how a
    /// set-wise write that fails is done again, so one firing that cannot be written
    /// spoils no other. Answers the part's firings in order.
    async fn write_part(
        &self,
        conn: &mut Conn,
        decided: Vec<Decided>,
        now: DateTime<Utc>,
        handler: &dyn TimerHandler,
    ) -> Result<Vec<TimerFiring>, StoreError> {
        for d in &decided {
            if let Decided::Stale(firing) = d {
                let timer = &firing.timer;
                sqlx::query(
                    "UPDATE timers SET status = 'cancelled', settled_at = $1 WHERE id = $2 AND status = 'armed'",
                )
                .bind(Stamp(now))
                .bind(timer.id)
                .execute(&mut *conn)
                .await?;
                if let Some(review_sla) = handler.review_sla()
                    && timer.name == review_sla
                {
                    Self::copy_review_deadline(conn, &timer.appeal_id, review_sla).await?;
                }
            }
        }
        let fires: Vec<&UnitOfWork> = decided
            .iter()
            .filter_map(|d| match d {
                Decided::Fire(_, uow, _) => Some(uow.as_ref()),
                Decided::Left(_) | Decided::Stale(_) => None,
            })
            .collect();
        let mut written = false;
        if fires.len() > 1 && set_wise(&fires) {
            let mut sp = sqlx::Connection::begin(&mut *conn).await?;
            // The appeals as claimed, of the timers that fire: what their changes move.
            let claimed: HashMap<&str, &AppealRecord> = decided
                .iter()
                .filter_map(|d| match d {
                    Decided::Fire(_, _, appeal) => Some((appeal.id.as_str(), appeal.as_ref())),
                    Decided::Left(_) | Decided::Stale(_) => None,
                })
                .collect();
            match self.write_firings(&mut sp, &fires, &claimed).await {
                Ok(()) => {
                    sp.commit().await?;
                    written = true;
                }
                // The database failing (or an injected failure) fails the batch, as below.
                Err(CommitError::Store(e)) => return Err(e),
                // A firing that no longer holds (a version or a timer that changed): done
                // again one by one below, which isolates it.
                Err(e) => {
                    tracing::debug!(error = %e, "a batch of firings written set-wise failed; writing them one by one");
                    sp.rollback().await?;
                }
            }
        }
        let mut out = Vec::with_capacity(decided.len());
        for d in decided {
            out.push(match d {
                Decided::Left(firing) | Decided::Stale(firing) => firing,
                Decided::Fire(timer, _, _) if written => TimerFiring { timer, outcome: "fired", note: None },
                Decided::Fire(timer, uow, _) => {
                    let mut sp = sqlx::Connection::begin(&mut *conn).await?;
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
            });
        }
        Ok(out)
    }
}

/// Decides claimed timers one by one, in order.
async fn decide(
    handler: &dyn TimerHandler,
    claimed: impl Iterator<Item = (TimerRecord, AppealRecord)>,
) -> Vec<Decided> {
    let mut decided = Vec::new();
    for (timer, appeal) in claimed {
        // Between two decisions, the part being written (and another lane's batch,
        // `Engine::run_due_timers_until`) may send its next statement.
        tokio::task::yield_now().await;
        decided.push(match handler.decide(&timer, &appeal).await {
            TimerVerdict::Fire(uow) => Decided::Fire(timer, uow, Box::new(appeal)),
            TimerVerdict::Stale(why) => Decided::Stale(TimerFiring { timer, outcome: "stale", note: Some(why) }),
            TimerVerdict::Leave(why) => Decided::Left(TimerFiring { timer, outcome: "left armed", note: Some(why) }),
        });
    }
    decided
}

/// A claimed timer and its appeal, from one row of the claim.
fn claimed(row: &Row) -> Result<(TimerRecord, AppealRecord), sqlx::Error> {
    use sqlx::Row as _;
    let appeal = AppealRecord::from_row(row)?;
    let status: String = row.try_get("timer_status")?;
    let timer = TimerRecord {
        id: row.try_get("timer_id")?,
        appeal_id: appeal.id.clone(),
        ticket: appeal.ticket.clone(),
        name: row.try_get("timer_name")?,
        generation: row.try_get("timer_generation")?,
        due_at: row.try_get::<Stamp, _>("timer_due_at")?.0,
        status: status.try_into().map_err(|e: StoreError| sqlx::Error::Decode(e.to_string().into()))?,
        armed_at: row.try_get::<Stamp, _>("timer_armed_at")?.0,
        settled_at: row.try_get::<MaybeStamp, _>("timer_settled_at")?.0,
    };
    Ok((timer, appeal))
}
