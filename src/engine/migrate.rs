//! Moving an appeal in flight to another version of its workflow, by a loaded migration:
//! its state mapped, its timers kept, armed again or cancelled as the migration says,
//! and a `migrate` event naming both versions — in one unit of work.

use super::*;
use crate::store::TimerStatus;

/// The event a migration records.
pub const MIGRATE: &str = "migrate";

impl Engine {
    /// Moves the appeal `ticket` from the version it runs on to version `to`, as the
    /// migration between them says. Refused (naming the field) without such a migration,
    /// for an appeal already there, and for a closed appeal.
    pub async fn migrate(&self, ticket: &TicketNumber, to: i64, actor: &Actor) -> Result<CommandOutcome, EngineError> {
        let record =
            self.store.appeal_by_ticket(ticket).await?.ok_or_else(|| EngineError::NotFound(ticket.to_string()))?;
        let from = record.workflow_version;
        let refuse = |why: String| Err(EngineError::Invalid(vec![FieldError::new("to", why)]));
        if from == to {
            return refuse(format!("appeal {ticket} already runs on v{to}"));
        }
        let Some(migration) = self.versions.migration(from, to) else {
            return refuse(format!("no migration from v{from} to v{to} is loaded (migrations/{from}-to-{to}.toml)"));
        };
        let target = self.versions.get(to).expect("validated: a migration joins loaded versions");
        if self.workflow_of(&record)?.state(&record.state).is_some_and(|s| s.terminal) {
            return refuse(format!("appeal {ticket} is closed: there is nothing to migrate"));
        }
        let now = self.clock.now();
        let armed: Vec<(String, DateTime<Utc>)> = self
            .store
            .timers(Some(&record.id))
            .await?
            .into_iter()
            .filter(|t| t.status == TimerStatus::Armed)
            .map(|t| (t.name, t.armed_at))
            .collect();
        let plan = migration.plan(target, &record.state, &armed, now).map_err(Refusal::Calendar)?;
        // A held state keeps its holder; any other has none.
        let assignee = record.assignee.clone().filter(|_| target.state(&plan.state).is_some_and(|s| s.held));
        let mut write = row_write(&record, &plan.state, record.outcome.clone(), assignee);
        write.workflow_version = to;
        let mut uow = UnitOfWork::new(now);
        uow.changes.push(AppealChange {
            event: NewEvent {
                transition: MIGRATE.into(),
                from: Some(record.state.clone()),
                to: plan.state.clone(),
                outcome: record.outcome.clone(),
                actor: actor.name.clone(),
                role: actor.role,
                reasons: vec![],
                payload: serde_json::json!({
                    "workflow": record.workflow,
                    "from_version": from,
                    "to_version": to,
                    "migration": migration.description,
                    "armed": plan.arm,
                }),
            },
            appeal: write,
            arm: plan.arm,
            cancel: plan.cancel,
            fire_timer: None,
            review_sla: Some(target.bindings().review_sla.clone()),
        });
        self.store.commit(&uow).await.map_err(execute::commit_error)?;
        info!(ticket = %ticket, from_version = from, to_version = to, "appeal migrated");
        Ok(CommandOutcome {
            ticket: record.ticket.clone(),
            transition: MIGRATE.into(),
            from: Some(record.state),
            state: plan.state,
            outcome: record.outcome,
            version: record.version + 1,
            replayed: false,
            also: vec![],
        })
    }
}
