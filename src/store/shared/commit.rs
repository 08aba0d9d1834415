//! One unit of work, one transaction.

use super::*;

/// The queue's copy of the review SLA's deadline, as the `SET` assignments of an `UPDATE
/// appeals` (`sla` and `warning` SQL expressions naming the SLA timer and its warning):
/// the latest review SLA timer not cancelled (armed or fired), whether it fired, and the
/// due instant of the warning armed with it (none: the warning was not armed). Each
/// expression is given apart, so a batch can apply it to some of its rows only.
pub(super) fn review_deadline(sla: &str, warning: &str) -> [(&'static str, String); 3] {
    let latest = format!(
        "FROM timers s WHERE s.appeal_id = appeals.id AND s.name = {sla} AND s.status <> 'cancelled'
         ORDER BY s.generation DESC LIMIT 1"
    );
    [
        ("review_due_at", format!("(SELECT s.due_at {latest})")),
        ("review_fired", format!("COALESCE((SELECT s.status = 'fired' {latest}), FALSE)")),
        (
            "review_warn_at",
            format!(
                "(SELECT (SELECT w.due_at FROM timers w
                          WHERE w.appeal_id = s.appeal_id AND w.name = {warning} AND w.armed_at = s.armed_at
                          ORDER BY w.generation DESC LIMIT 1) {latest})"
            ),
        ),
    ]
}

/// The review SLA's name when `change` moves the queue's copy of its deadline: only the
/// SLA's timers (and its warning's) do; a settled timer is known by id only, so a
/// firing counts in any case.
pub(super) fn moves_review_deadline(change: &AppealChange) -> Option<&str> {
    let review_sla = change.review_sla.as_deref()?;
    (change.fire_timer.is_some() || rearms_review_sla(change)).then_some(review_sla)
}

/// Whether `change` arms or cancels the review SLA's timers (or its warning's), which
/// may move all three copies of its deadline. A firing alone moves only `review_fired`:
/// a fired timer keeps its deadline and its arming instant, and counts as the latest
/// just as an armed one does.
pub(super) fn rearms_review_sla(change: &AppealChange) -> bool {
    let Some(review_sla) = change.review_sla.as_deref() else { return false };
    let names = change.arm.iter().map(|t| t.name.as_str()).chain(change.cancel.iter().map(String::as_str));
    let mut touched = names.filter_map(|n| n.strip_prefix(review_sla));
    touched.any(|rest| rest.is_empty() || rest == ".warning")
}

impl Backend {
    /// Writes one unit of work through an open transaction (its caller commits).
    pub(super) async fn write_uow(&self, conn: &mut Conn, uow: &UnitOfWork) -> Result<(), CommitError> {
        let at = Stamp(uow.at);
        if let Some(idem) = &uow.idempotency
            && !Self::insert_idempotency(conn, idem, at).await?
        {
            return Err(CommitError::IdempotencyKeyTaken);
        }
        for change in &uow.changes {
            Self::write_change(conn, change, at).await?;
        }
        if let Some(announce) = Self::ANNOUNCE_ARMED
            && uow.arms_timers_soon()
        {
            sqlx::query(announce).execute(&mut *conn).await?;
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
            Self::write_delivery(conn, d, at, &mut jobs).await?;
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
            // `expected` is the record's text as `account_record` read it.
            let updated = sqlx::query(
                "UPDATE accounts SET record = $1, updated_at = $2 WHERE name = $3 AND CAST(record AS TEXT) = $4",
            )
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
        for id in &uow.legacy_effects_done {
            sqlx::query("UPDATE outbox SET status = 'done' WHERE id = $1").bind(id).execute(&mut *conn).await?;
        }
        if let Some(d) = &uow.defer_job {
            sqlx::query(Self::DEFER_JOB).bind(d.delay.as_secs_f64()).bind(&d.job_id).execute(&mut *conn).await?;
        }
        crate::failpoint!(self.scope(), "commit.after_rows");
        if !jobs.is_empty() {
            self.write_jobs(conn, &jobs).await?;
        }
        Ok(())
    }

    /// Records an idempotency key (as of `at`) unless it is taken; true when this recorded it.
    pub(super) async fn insert_idempotency(
        conn: &mut Conn,
        r: &IdempotencyRecord,
        at: Stamp,
    ) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&r.key)
        .bind(&r.fingerprint)
        .bind(Json(&r.response))
        .bind(at)
        .execute(&mut *conn)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn write_delivery(
        conn: &mut Conn,
        d: &DeliveryUpdate,
        at: Stamp,
        jobs: &mut Vec<JobRef>,
    ) -> Result<(), CommitError> {
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
                let done = sqlx::query("UPDATE notifications SET status = 'pending' WHERE id = $1 AND status = 'held'")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                jobs.push(JobRef::Notification(*id));
                (*id, done.rows_affected())
            }
            DeliveryUpdate::Skip { id } => {
                let done = sqlx::query("UPDATE notifications SET status = 'skipped' WHERE id = $1 AND status = 'held'")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                (*id, done.rows_affected())
            }
        };
        if done == 0 {
            return Err(CommitError::Stale(format!("notification {id}")));
        }
        Ok(())
    }

    async fn write_change(conn: &mut Conn, change: &AppealChange, at: Stamp) -> Result<(), CommitError> {
        let a = &change.appeal;
        let version = a.new_version();
        // The ticket's conflict is absorbed by ON CONFLICT; the one other unique rule on
        // appeals is one open appeal per account (a new appeal, or a resubmission
        // reopening one while the account has another open).
        let open_appeal = |e: sqlx::Error| match e.as_database_error() {
            Some(db) if db.is_unique_violation() => CommitError::OpenAppealExists,
            _ => CommitError::from(e),
        };
        // The queue's copies of what the record says (a resubmission may change it).
        match a.expected_version {
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO appeals (id, ticket, workflow, workflow_version, account, state, outcome, version,
                                          assignee, data, created_at, updated_at, items, scenario)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $10, $11, $12)
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
                .bind(ItemList::of_record(&a.data).text())
                .bind(scenario_of_record(&a.data))
                .execute(&mut *conn)
                .await
                .map_err(open_appeal)?;
                if inserted.rows_affected() == 0 {
                    return Err(CommitError::TicketTaken);
                }
            }
            Some(expected) => {
                let update = if a.data_changed {
                    sqlx::query(
                        "UPDATE appeals SET state = $1, outcome = $2, version = $3, assignee = $4, updated_at = $5,
                                            workflow_version = $8, data = $9, items = $10, scenario = $11
                         WHERE id = $6 AND version = $7",
                    )
                } else {
                    sqlx::query(
                        "UPDATE appeals SET state = $1, outcome = $2, version = $3, assignee = $4, updated_at = $5,
                                            workflow_version = $8
                         WHERE id = $6 AND version = $7",
                    )
                };
                let update = update
                    .bind(&a.state)
                    .bind(&a.outcome)
                    .bind(version)
                    .bind(&a.assignee)
                    .bind(at)
                    .bind(&a.id)
                    .bind(expected)
                    .bind(a.workflow_version);
                let update = if a.data_changed {
                    update
                        .bind(Json(&a.data))
                        .bind(ItemList::of_record(&a.data).text())
                        .bind(scenario_of_record(&a.data))
                } else {
                    update
                };
                let updated = update.execute(&mut *conn).await.map_err(open_appeal)?;
                if updated.rows_affected() == 0 {
                    let (state, version): (String, i64) =
                        sqlx::query_as("SELECT state, version FROM appeals WHERE id = $1")
                            .bind(&a.id)
                            .fetch_one(&mut *conn)
                            .await?;
                    return Err(CommitError::Conflict { state, version });
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

        for name in &change.cancel {
            sqlx::query(
                "UPDATE timers SET status = 'cancelled', settled_at = $1
                 WHERE appeal_id = $2 AND name = $3 AND status = 'armed'",
            )
            .bind(at)
            .bind(&a.id)
            .bind(name)
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
            .bind(Stamp(arm.due_at))
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        if let Some(review_sla) = moves_review_deadline(change) {
            Self::copy_review_deadline(conn, &a.id, review_sla).await?;
        }
        Ok(())
    }

    /// Copies the review SLA's deadline onto the appeal row for the queue (see
    /// [`review_deadline`]).
    pub(super) async fn copy_review_deadline(
        conn: &mut Conn,
        appeal_id: &str,
        review_sla: &str,
    ) -> Result<(), sqlx::Error> {
        let sets: Vec<String> = review_deadline("$1", "$2").iter().map(|(c, e)| format!("{c} = {e}")).collect();
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE appeals SET {} WHERE id = $3", sets.join(", "))))
            .bind(review_sla)
            .bind(format!("{review_sla}.warning"))
            .bind(appeal_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub(super) async fn commit_uow(&self, uow: &UnitOfWork) -> Result<(), CommitError> {
        let mut tx = self.pool.begin_with(Self::BEGIN).await?;
        self.write_uow(&mut tx, uow).await?;
        crate::failpoint!(self.scope(), "commit.before_commit");
        tx.commit().await?;
        if uow.arms_timers_soon() {
            self.armed.notify_one();
        }
        crate::failpoint!(self.scope(), "commit.after_commit");
        Ok(())
    }
}
