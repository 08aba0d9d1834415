//! A batch of due timers written set-wise (`Backend::fire_due`'s parts, or its whole
//! batch after the check under the lock): one statement per kind of row — the timers,
//! the appeals' new versions with the queue's copies, the events, the notifications and
//! their delivery jobs — as many as the rows' bound values take.

use super::commit::{moves_review_deadline, rearms_review_sla, review_deadline};
use super::*;
use sqlx::QueryBuilder;
use std::collections::HashMap;

type Db = <Conn as sqlx::Connection>::Database;

impl Backend {
    /// Writes the firings' units of work with one statement per kind of row (more when
    /// its rows bind more values than a statement may: `per_statement`): the timers
    /// cancelled, fired and armed, then the appeals' new versions (each only from the
    /// version decided on) with the queue's copies of the review deadline read from those
    /// timers, their events, the notifications and their delivery jobs. Any failure — a
    /// version or a timer that changed, the database — is returned for the caller to roll
    /// back.
    pub(super) async fn write_firings(
        &self,
        conn: &mut Conn,
        uows: &[&UnitOfWork],
        before: &HashMap<&str, &AppealRecord>,
    ) -> Result<(), CommitError> {
        let changes: Vec<(&AppealChange, Stamp)> =
            uows.iter().flat_map(|u| u.changes.iter().map(move |c| (c, Stamp(u.at)))).collect();

        let cancels: Vec<(&str, &str, Stamp)> = changes
            .iter()
            .flat_map(|(c, at)| c.cancel.iter().map(move |name| (c.appeal.id.as_str(), name.as_str(), *at)))
            .collect();
        for part in cancels.chunks(per_statement(3)) {
            let mut q =
                QueryBuilder::<Db>::new("UPDATE timers SET status = 'cancelled', settled_at = v.column3 FROM (");
            q.push_values(part, |mut b, (appeal, name, at)| {
                b.push_bind(*appeal).push_bind(*name).push_bind(*at);
            });
            q.push(") AS v WHERE timers.appeal_id = v.column1 AND timers.name = v.column2 AND timers.status = 'armed'");
            q.build().execute(&mut *conn).await?;
        }

        let fired: Vec<(i64, &str, Stamp)> =
            changes.iter().filter_map(|(c, at)| c.fire_timer.map(|id| (id, c.appeal.id.as_str(), *at))).collect();
        for part in fired.chunks(per_statement(3)) {
            let mut q = QueryBuilder::<Db>::new("UPDATE timers SET status = 'fired', settled_at = v.column3 FROM (");
            q.push_values(part, |mut b, (id, appeal, at)| {
                b.push_bind(*id).push_bind(*appeal).push_bind(*at);
            });
            q.push(") AS v WHERE timers.id = v.column1 AND timers.appeal_id = v.column2 AND timers.status = 'armed'");
            if q.build().execute(&mut *conn).await?.rows_affected() != part.len() as u64 {
                return Err(CommitError::TimerNotArmed);
            }
        }

        let arms: Vec<(&str, &crate::workflow::decide::TimerArm, Stamp)> =
            changes.iter().flat_map(|(c, at)| c.arm.iter().map(move |arm| (c.appeal.id.as_str(), arm, *at))).collect();
        for part in arms.chunks(per_statement(6)) {
            let mut q =
                QueryBuilder::<Db>::new("INSERT INTO timers (appeal_id, name, generation, due_at, status, armed_at) ");
            q.push_values(part, |mut b, (appeal, arm, at)| {
                b.push_bind(*appeal)
                    .push_bind(&arm.name)
                    .push("(SELECT COALESCE(MAX(generation), 0) + 1 FROM timers WHERE appeal_id = ")
                    .push_bind_unseparated(*appeal)
                    .push_unseparated(" AND name = ")
                    .push_bind_unseparated(&arm.name)
                    .push_unseparated(")")
                    .push_bind(Stamp(arm.due_at))
                    .push("'armed'")
                    .push_bind(*at);
            });
            q.build().execute(&mut *conn).await?;
        }
        if let Some(announce) = Self::ANNOUNCE_ARMED
            && !arms.is_empty()
            && uows.iter().any(|u| u.arms_timers_soon())
        {
            sqlx::query(announce).execute(&mut *conn).await?;
        }

        if !changes.is_empty() {
            // The review deadline's copy is read from the timers just written, in the same
            // statement as the appeal's new version (one new row version per appeal), and
            // only for the appeals whose review SLA timers this batch touched.
            let deadlines: Vec<Option<(&str, String)>> = changes
                .iter()
                .map(|(c, _)| moves_review_deadline(c).map(|sla| (sla, format!("{sla}.warning"))))
                .collect();
            let rows: Vec<_> = changes.iter().zip(&deadlines).collect();
            for part in rows.chunks(per_statement(14)) {
                let mut q = QueryBuilder::<Db>::new(appeals_update(part.iter().map(|((c, _), _)| *c), before));
                q.push("\n                 FROM (");
                q.push_values(part, |mut b, ((c, at), deadline)| {
                    let a = &c.appeal;
                    let changed = a.data_changed;
                    b.push_bind(&a.id)
                        .push_bind(&a.state)
                        .push_bind(&a.outcome)
                        .push_bind(a.new_version())
                        .push_bind(&a.assignee)
                        .push_bind(*at)
                        .push_bind(a.expected_version)
                        .push_bind(changed)
                        .push_bind(changed.then_some(Json(&a.data)))
                        .push_bind(changed.then(|| ItemList::of_record(&a.data).text()))
                        .push_bind(changed.then(|| scenario_of_record(&a.data)).flatten())
                        .push_bind(deadline.is_some())
                        .push_bind(deadline.as_ref().map(|(sla, _)| *sla))
                        .push_bind(deadline.as_ref().map(|(_, warning)| warning.as_str()));
                });
                q.push(") AS v WHERE appeals.id = v.column1 AND appeals.version = v.column7");
                let updated = q.build().execute(&mut *conn).await?;
                if updated.rows_affected() != part.len() as u64 {
                    return Err(CommitError::Stale("an appeal of the batch".into()));
                }
            }

            for part in changes.chunks(per_statement(11)) {
                let mut q = QueryBuilder::<Db>::new(
                    "INSERT INTO appeal_events (appeal_id, seq, transition, from_state, to_state, outcome, actor, role,
                                            reasons, payload, at) ",
                );
                q.push_values(part, |mut b, (c, at)| {
                    let e = &c.event;
                    b.push_bind(&c.appeal.id)
                        .push_bind(c.appeal.new_version())
                        .push_bind(&e.transition)
                        .push_bind(&e.from)
                        .push_bind(&e.to)
                        .push_bind(&e.outcome)
                        .push_bind(&e.actor)
                        .push_bind(e.role.as_str())
                        .push_bind(Json(&e.reasons))
                        .push_bind(Json(&e.payload))
                        .push_bind(*at);
                });
                q.build().execute(&mut *conn).await?;
            }
        }
        crate::failpoint!(self.scope(), "commit.after_changes");

        let notifications: Vec<(&NewNotification, Stamp)> =
            uows.iter().flat_map(|u| u.notifications.iter().map(move |n| (n, Stamp(u.at)))).collect();
        let mut jobs = Vec::new();
        for part in notifications.chunks(per_statement(14)) {
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO notifications (appeal_id, idempotency_key, template, channel, locale, recipient,
                                            recipient_masked, body, status, created_at, chain, position,
                                            on_delivered, on_undeliverable) ",
            );
            q.push_values(part, |mut b, (n, at)| {
                b.push_bind(&n.appeal_id)
                    .push_bind(&n.idempotency_key)
                    .push_bind(&n.template)
                    .push_bind(&n.channel)
                    .push_bind(&n.locale)
                    .push_bind(&n.recipient)
                    .push_bind(&n.recipient_masked)
                    .push_bind(&n.body)
                    .push_bind(n.status.as_str())
                    .push_bind(*at)
                    .push_bind(&n.chain)
                    .push_bind(n.position)
                    .push_bind(&n.on_delivered)
                    .push_bind(&n.on_undeliverable);
            });
            q.push(" ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, status");
            let inserted: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
            jobs.extend(
                inserted
                    .into_iter()
                    .filter(|(_, status)| status == NotificationStatus::Pending.as_str())
                    .map(|(id, _)| JobRef::Notification(id)),
            );
        }
        crate::failpoint!(self.scope(), "commit.after_rows");
        if !jobs.is_empty() {
            self.write_jobs(conn, &jobs).await?;
        }
        Ok(())
    }
}

/// The head of the statement that writes a part of the batch's appeals (`UPDATE appeals
/// SET ...`, its values bound as `v.column1` to `v.column14`): the new version and its
/// instant, and only the columns some change of the part may move — SQLite rewrites the
/// entry of every index on an assigned column whether or not its value changed, and the
/// appeal row carries more than a dozen of the queue's indexes on its state, assignee,
/// items and scenario. The state, outcome and assignee when one differs from the claimed
/// row's (`before`; a change to an appeal not claimed assigns them); the record and its
/// queue copies when one changed it (row by row, under `v.column8`); the review
/// deadline's copies when one arms or cancels the review SLA's timers, and of them only
/// `review_fired` when the part merely fires timers (row by row, under `v.column12`).
fn appeals_update<'a>(
    part: impl Iterator<Item = &'a AppealChange> + Clone,
    before: &HashMap<&str, &AppealRecord>,
) -> String {
    let moves_row = |c: &AppealChange| {
        let a = &c.appeal;
        before
            .get(a.id.as_str())
            .is_none_or(|b| b.state != a.state || b.outcome != a.outcome || b.assignee != a.assignee)
    };
    let mut sql = String::from("UPDATE appeals SET version = v.column4, updated_at = v.column6");
    if part.clone().any(moves_row) {
        sql.push_str(", state = v.column2, outcome = v.column3, assignee = v.column5");
    }
    if part.clone().any(|c| c.appeal.data_changed) {
        for (column, value) in [("data", "v.column9"), ("items", "v.column10"), ("scenario", "v.column11")] {
            sql.push_str(&format!(",\n    {column} = CASE WHEN v.column8 THEN {value} ELSE appeals.{column} END"));
        }
    }
    let rearms = part.clone().any(rearms_review_sla);
    let fires = part.clone().any(|c| moves_review_deadline(c).is_some());
    for (column, expr) in review_deadline("v.column13", "v.column14") {
        if rearms || (fires && column == "review_fired") {
            sql.push_str(&format!(",\n    {column} = CASE WHEN v.column12 THEN {expr} ELSE appeals.{column} END"));
        }
    }
    sql
}

/// The most values one statement of a batch binds: below SQLite's limit (32,766) and
/// PostgreSQL's (65,535). A batch's rows of one kind go in as many statements as it takes.
const MAX_BINDS: usize = 30_000;

/// How many rows of `binds` values each one statement takes.
pub(in crate::store) fn per_statement(binds: usize) -> usize {
    MAX_BINDS / binds
}

/// Whether the firings can be written set-wise: nothing but appeal changes (each from a
/// known version, at most one per appeal), timers and notifications — no idempotency
/// record, delivery, action or account change, which the one-by-one path writes — and
/// no two arms of one timer name on one appeal (their generations are read per row).
pub(super) fn set_wise(uows: &[&UnitOfWork]) -> bool {
    let mut appeals = std::collections::HashSet::new();
    let mut arms = std::collections::HashSet::new();
    uows.iter().all(|u| {
        u.idempotency.is_none()
            && u.deliveries.is_empty()
            && u.actions.is_empty()
            && u.action_updates.is_empty()
            && u.ledger.is_empty()
            && u.jobs.is_empty()
            && u.defer_job.is_none()
            && u.legacy_effects_done.is_empty()
            && u.changes.iter().all(|c| {
                c.appeal.expected_version.is_some()
                    && appeals.insert(c.appeal.id.as_str())
                    && c.arm.iter().all(|a| arms.insert((c.appeal.id.as_str(), a.name.as_str())))
            })
    })
}

#[cfg(test)]
#[path = "batch_writes_tests.rs"]
mod tests;
