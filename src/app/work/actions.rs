//! Post-approval actions: one applied through the account seam with its idempotency key
//! and its result committed whole, and the manual task marked done by hand.

use super::*;

impl Work {
    fn change_for(
        &self,
        action: &str,
        data: &AppealData,
        new_company_rep: Option<crate::domain::account::Person>,
    ) -> Result<AccountChange, String> {
        let not_seam = || format!("action {action:?} is not applied through the account seam");
        let kind: ActionKind = action.parse().map_err(|_| not_seam())?;
        Ok(match kind {
            ActionKind::RotateSecurePhone => AccountChange::RotateSecurePhone {
                phone: data.draft.contact_phone.clone().ok_or("the appeal has no contact phone to rotate to")?,
            },
            ActionKind::DetachMfa => AccountChange::DetachMfa,
            ActionKind::ClearSecurityQuestions => AccountChange::ClearSecurityQuestions,
            ActionKind::ClearIpLogonMask => AccountChange::ClearIpLogonMask,
            ActionKind::ChangeVerifiedEntity => AccountChange::ChangeVerifiedEntity {
                enterprise_name: data
                    .draft
                    .new_company
                    .as_ref()
                    .map(|c| c.name.clone())
                    .ok_or("the appeal names no new company")?,
                legal_representative: new_company_rep,
            },
            ActionKind::ManualTask => return Err(not_seam()),
        })
    }

    /// The transitions that record an action's result, and the completion when it was
    /// the last one outstanding (read after `appeal`, so a concurrent result shows as a
    /// newer version and the commit is decided again).
    async fn result_fires(
        &self,
        appeal: &AppealRecord,
        action: &ActionRecord,
        succeeded: bool,
        detail: serde_json::Value,
    ) -> Result<Vec<Fire>, WorkError> {
        let b = self.engine.workflow_at(appeal.workflow_version).bindings();
        let mut fire = Fire::new(if succeeded { b.action_succeeded.clone() } else { b.action_failed.clone() });
        fire.payload = serde_json::json!({ "action": action.action, "key": action.idempotency_key, "detail": detail });
        let mut fires = vec![fire];
        if succeeded {
            let all = self
                .engine
                .store()
                .actions(&WorkFilter { appeal_id: Some(appeal.id.clone()), ..Default::default() })
                .await?;
            if all.iter().all(|a| a.id == action.id || a.status == ActionStatus::Succeeded) {
                let mut complete = Fire::new(b.completion.clone());
                complete.payload = serde_json::json!({ "actions": all.len() });
                fires.push(complete);
            }
        }
        Ok(fires)
    }

    /// Applies one post-approval action through the account seam, with its key, and
    /// commits its result whole: the action's record, the account change (the embedded
    /// directory's), its notices, its event on the appeal, and the appeal's completion
    /// when it was the last. A retryable failure records the attempt and its backoff; a
    /// permanent one (or the last attempt's) records the failure and alerts the leads.
    pub async fn run_action(&self, id: i64, run: &StepRun) -> Result<(), WorkError> {
        for _ in 0..RACES {
            let store = self.engine.store();
            let Some(action) = store.action(id).await? else {
                return Err(WorkError::Permanent(format!("no action {id}")));
            };
            if action.status != ActionStatus::Pending || action.manual {
                // Its result was committed with everything it caused: nothing is left.
                return Ok(());
            }
            crate::failpoint!(self.scope(), "action.before_apply");
            let record = self.appeal(&action.appeal_id).await?;
            let data = AppealData::from_record(&record)?;
            let rep = match (action.action.parse::<ActionKind>(), &data.entity_change.account) {
                (Ok(ActionKind::ChangeVerifiedEntity), Some(acct)) => {
                    self.directory.by_name(acct).await?.and_then(|a| a.legal_representative)
                }
                _ => None,
            };
            let now = self.engine.now();
            let change = match self.change_for(&action.action, &data, rep) {
                Ok(c) => c,
                Err(why) => {
                    let outcome = self.failed(&record, &action, &why, now).await?;
                    if self.commit(&record, outcome).await? {
                        return Ok(());
                    }
                    continue;
                }
            };
            let request = ActionRequest {
                idempotency_key: action.idempotency_key.clone(),
                ticket: record.ticket.to_string(),
                account: record.account.clone(),
                action: action.action.clone(),
                change,
            };
            let applied = self.actions.apply(&request).await;
            crate::failpoint!(self.scope(), "action.after_apply");
            let outcome = match applied {
                Ok(done) => {
                    let mut uow = UnitOfWork::new(now);
                    uow.action_updates.push(ActionUpdate {
                        id,
                        status: ActionStatus::Succeeded,
                        error: None,
                        result: Some(serde_json::json!({ "before": done.before, "replayed": done.replayed })),
                        done_by: None,
                    });
                    uow.ledger.extend(done.ledger);
                    let wf = self.engine.workflow_at(record.workflow_version);
                    if let Some(def) = wf.def.actions.iter().find(|a| a.name.as_str() == action.action) {
                        self.planner
                            .plan_action_done(&record, def, &action.idempotency_key, &done.before, now, &mut uow)
                            .await?;
                    }
                    let fires = self.result_fires(&record, &action, true, serde_json::Value::Null).await?;
                    info!(ticket = %record.ticket, action = %action.action, replayed = done.replayed, "post-approval action applied");
                    Outcome::Fire(fires, uow)
                }
                Err(e) if e.retryable && !run.last() => {
                    let mut uow = UnitOfWork::new(now);
                    uow.action_updates.push(ActionUpdate {
                        id,
                        status: ActionStatus::Pending,
                        error: Some(e.message.clone()),
                        result: None,
                        done_by: None,
                    });
                    uow.defer_job = run.deferral();
                    if self.commit_rows(uow).await? {
                        return Err(WorkError::Retry(e.message));
                    }
                    continue;
                }
                Err(e) => {
                    warn!(ticket = %record.ticket, action = %action.action, error = %e.message, "post-approval action failed for good; the appeal needs attention");
                    self.failed(&record, &action, &e.message, now).await?
                }
            };
            if self.commit(&record, outcome).await? {
                crate::failpoint!(self.scope(), "action.after_commit");
                return Ok(());
            }
        }
        Err(WorkError::Retry(format!("action {id}: lost {RACES} races in a row; retried later")))
    }

    async fn failed(
        &self,
        record: &AppealRecord,
        action: &ActionRecord,
        why: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Outcome, WorkError> {
        let mut uow = UnitOfWork::new(now);
        uow.action_updates.push(ActionUpdate {
            id: action.id,
            status: ActionStatus::Failed,
            error: Some(why.to_string()),
            result: None,
            done_by: None,
        });
        let fires = self.result_fires(record, action, false, serde_json::json!({ "error": why })).await?;
        Ok(Outcome::Fire(fires, uow))
    }

    /// Marks an approved appeal's manual task ("other": restored by hand) done, as
    /// `actor`. A reviewer may do so only on an appeal they approved; leads and admins on
    /// any. With `expect_version`, the task is recorded only while the appeal is still at
    /// that version, checked in the same commit. A repeat finds the task done and answers
    /// `replayed`.
    pub async fn complete_manual(
        &self,
        ticket: &TicketNumber,
        actor: &Actor,
        expect_version: Option<i64>,
    ) -> Result<ManualDone, ManualTaskError> {
        let store = self.engine.store();
        for _ in 0..RACES {
            let record =
                store.appeal_by_ticket(ticket).await?.ok_or_else(|| ManualTaskError::NotFound(ticket.to_string()))?;
            if let Some(refusal) = crate::app::stale_read(expect_version, &record) {
                return Err(ManualTaskError::Stale(refusal));
            }
            if !matches!(actor.role, Role::Reviewer | Role::Lead | Role::Admin) {
                return Err(ManualTaskError::NotAllowed(
                    "only reviewers, leads and admins mark manual tasks done".into(),
                ));
            }
            if actor.role == Role::Reviewer {
                // Nobody holds an approved appeal: its manual task belongs to whoever approved
                // it (with four-eyes, either approver).
                let history = store.history(&record.id).await?;
                let b = self.engine.workflow_at(record.workflow_version).bindings();
                let last_by = |t: &String| history.iter().rev().find(|e| &e.transition == t).map(|e| &e.actor);
                let mut approvers =
                    [Some(&b.approve), b.confirm_approval.as_ref()].into_iter().flatten().filter_map(last_by);
                if !approvers.any(|a| a == &actor.name) {
                    return Err(ManualTaskError::NotAllowed(
                        "a reviewer marks the manual task done only on an appeal they approved".into(),
                    ));
                }
            }
            let actions =
                store.actions(&WorkFilter { appeal_id: Some(record.id.clone()), ..Default::default() }).await?;
            let Some(task) = actions.iter().find(|a| a.manual) else {
                return Err(ManualTaskError::NoTask {
                    ticket: ticket.to_string(),
                    state: record.state,
                    version: record.version,
                });
            };
            if task.status == ActionStatus::Succeeded {
                return Ok(ManualDone { from: record.state, replayed: true, completed: false });
            }
            let now = self.engine.now();
            let mut uow = UnitOfWork::new(now);
            uow.action_updates.push(ActionUpdate {
                id: task.id,
                status: ActionStatus::Succeeded,
                error: None,
                result: Some(serde_json::json!({ "manual": true })),
                done_by: Some(actor.name.clone()),
            });
            let wf = self.engine.workflow_at(record.workflow_version);
            if let Some(def) = wf.def.actions.iter().find(|a| a.name.as_str() == task.action) {
                self.planner
                    .plan_action_done(&record, def, &task.idempotency_key, &serde_json::Value::Null, now, &mut uow)
                    .await?;
            }
            let fires = self.result_fires(&record, task, true, serde_json::json!({ "by": actor.name })).await?;
            let completes = fires.len() > 1;
            let commands = fires
                .into_iter()
                .enumerate()
                .map(|(i, mut fire)| {
                    if i == 0 {
                        fire.expect_version = Some(record.version);
                        Command::new(Target::Id(record.id.clone()), fire, actor.clone())
                    } else {
                        Command::new(Target::Same, fire, Actor::system())
                    }
                })
                .collect();
            match self.engine.execute(commands, 0, uow, None).await {
                Ok(_) => return Ok(ManualDone { from: record.state, replayed: false, completed: completes }),
                Err(EngineError::Refused(r @ Refusal::StaleVersion { .. })) if expect_version.is_some() => {
                    return Err(ManualTaskError::Stale(r));
                }
                // Someone else recorded it between our read and our write: theirs stands.
                Err(EngineError::Stale(_)) => {
                    return Ok(ManualDone { from: record.state, replayed: true, completed: false });
                }
                Err(EngineError::Conflict { .. } | EngineError::Refused(Refusal::StaleVersion { .. })) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ManualTaskError::Work(WorkError::Retry("the appeal kept changing; try again".into())))
    }
}
