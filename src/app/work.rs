//! The worker's steps, independent of the job queue that schedules them: applying a
//! post-approval action through the account seam, delivering a notification through its
//! channel, marking a manual task done. Each step commits its whole result in ONE unit
//! of work — the action's or notification's record, the transition it causes (the
//! window opening when the rejection notice is delivered, the appeal completing when its
//! last action succeeded), the rows and jobs that follow — so a crash leaves either all
//! of it or none, and the step's re-run (a job is delivered at least once) finds nothing
//! left to do or does all of it. External calls carry stable idempotency keys: a retry
//! sends the same request again, never a different one.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use crate::adapters::accounts::{AccountActions, AccountDirectory, ActionRequest};
use crate::adapters::notify::Channel;
use crate::app::effects::Planner;
use crate::app::health::Health;
use crate::app::intake::AppealData;
use crate::domain::account::AccountChange;
use crate::domain::{Actor, Role, TicketNumber};
use crate::engine::{Command, Engine, EngineError, Target};
use crate::store::{
    ActionRecord, ActionStatus, ActionUpdate, AppealRecord, CommitError, DeliveryUpdate, JobDeferral,
    NotificationRecord, NotificationStatus, StoreError, UnitOfWork, WorkFilter,
};
use crate::workflow::definition::ActionKind;
use crate::workflow::{Fire, Refusal};

mod error;
pub use error::{ManualDone, ManualTaskError, WorkError};

/// The job a step runs in: its attempt and what a retryable failure should wait, so
/// the failure and the backoff are recorded in the same commit.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// The job queue's id of the running job (its next attempt is moved later).
    pub job_id: Option<String>,
    /// This attempt, from 1.
    pub attempt: usize,
    pub max_attempts: usize,
    /// The wait before the next attempt if this one fails and may be retried.
    pub backoff: Duration,
}

impl StepRun {
    /// A single attempt outside the job queue (its failure is final).
    pub fn once() -> Self {
        StepRun { job_id: None, attempt: 1, max_attempts: 1, backoff: Duration::ZERO }
    }

    fn last(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    fn deferral(&self) -> Option<JobDeferral> {
        self.job_id.clone().map(|job_id| JobDeferral { job_id, delay: self.backoff })
    }
}

/// How often a step decides again after losing a race to another writer.
const RACES: usize = 8;

/// What a deterministic run did, counted from the database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimulationReport {
    pub timers_fired: usize,
    pub jobs_done: usize,
    pub actions_succeeded: usize,
    pub notifications_sent: usize,
    /// Jobs that used up their attempts (or were aborted): `jobs list --dead`.
    pub dead_jobs: usize,
}

pub struct Work {
    engine: Arc<Engine>,
    planner: Arc<Planner>,
    channel: Arc<dyn Channel>,
    actions: Arc<dyn AccountActions>,
    directory: Arc<dyn AccountDirectory>,
    health: Arc<Health>,
}

/// A step's outcome on the appeal: the transitions to fire, with the rows the step
/// itself writes (committed together).
enum Outcome {
    Fire(Vec<Fire>, UnitOfWork),
}

impl Work {
    pub fn new(
        engine: Arc<Engine>,
        planner: Arc<Planner>,
        channel: Arc<dyn Channel>,
        actions: Arc<dyn AccountActions>,
        directory: Arc<dyn AccountDirectory>,
    ) -> Self {
        Work { engine, planner, channel, actions, directory, health: Arc::new(Health::default()) }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn planner(&self) -> &Arc<Planner> {
        &self.planner
    }

    /// How this process's worker loops are doing.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    pub async fn lead_emails(&self) -> Result<Vec<String>, StoreError> {
        self.planner.lead_emails().await
    }

    fn scope(&self) -> &str {
        self.engine.store().scope()
    }

    async fn appeal(&self, id: &str) -> Result<AppealRecord, WorkError> {
        self.engine
            .store()
            .appeal_by_id(id)
            .await?
            .ok_or_else(|| WorkError::Permanent(format!("appeal {id} does not exist")))
    }

    /// Commits a step's outcome: its transitions (decided on the appeal at `version`, the
    /// one the step read) with its own rows, or its rows alone. `Ok(false)` when another
    /// writer got there first and the step must read and decide again.
    async fn commit(&self, appeal: &AppealRecord, outcome: Outcome) -> Result<bool, WorkError> {
        let Outcome::Fire(fires, uow) = outcome;
        let commands = fires
            .into_iter()
            .enumerate()
            .map(|(i, mut fire)| {
                let target = if i == 0 {
                    fire.expect_version = Some(appeal.version);
                    Target::Id(appeal.id.clone())
                } else {
                    Target::Same
                };
                Command::new(target, fire, Actor::system())
            })
            .collect();
        match self.engine.execute(commands, 0, uow.clone(), None).await {
            Ok(_) => Ok(true),
            Err(EngineError::Conflict { .. } | EngineError::Stale(_))
            | Err(EngineError::Refused(Refusal::StaleVersion { .. })) => Ok(false),
            // The appeal moved on (withdrawn, completed by hand): the step's own record
            // still stands, without the transition.
            Err(EngineError::Refused(r)) => {
                info!(ticket = %appeal.ticket, reason = %r, "step recorded without its transition");
                self.commit_rows(uow).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn commit_rows(&self, uow: UnitOfWork) -> Result<bool, WorkError> {
        match self.engine.store().commit(&uow).await {
            Ok(()) => Ok(true),
            Err(CommitError::Stale(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

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
        let b = self.engine.workflow().bindings();
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
                    if let Some(def) =
                        self.engine.workflow().def.actions.iter().find(|a| a.name.as_str() == action.action)
                    {
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
                // Nobody holds an approved appeal: its manual task belongs to whoever approved it.
                let history = store.history(&record.id).await?;
                let approve = &self.engine.workflow().bindings().approve;
                let approver = history.iter().rev().find(|e| &e.transition == approve).map(|e| e.actor.as_str());
                if approver != Some(actor.name.as_str()) {
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
            if let Some(def) = self.engine.workflow().def.actions.iter().find(|a| a.name.as_str() == task.action) {
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

    /// Delivers one notification through the channel and commits the result whole: the
    /// notification's record and, on delivery, the transition it fires (the rejection
    /// notice opens the resubmission window) and the later channels of its chain skipped;
    /// on a permanent failure (or the last attempt's), the next channel of its chain, or —
    /// when every channel failed — the transition that moves the appeal on without it.
    /// Delivery is at least once: a crash after sending and before this commit sends
    /// again, with the same `Idempotency-Key`.
    pub async fn deliver(&self, id: i64, run: &StepRun) -> Result<(), WorkError> {
        for _ in 0..RACES {
            let store = self.engine.store();
            let n =
                store.notification(id).await?.ok_or_else(|| WorkError::Permanent(format!("no notification {id}")))?;
            if n.status != NotificationStatus::Pending {
                return Ok(());
            }
            let record = match &n.appeal_id {
                Some(a) => Some(self.appeal(a).await?),
                None => None,
            };
            crate::failpoint!(self.scope(), "delivery.before_send");
            let sent = self.channel.deliver(&n).await;
            crate::failpoint!(self.scope(), "delivery.after_send");
            let now = self.engine.now();
            let mut uow = UnitOfWork::new(now);
            let mut fires = Vec::new();
            let mut result = Ok(());
            match sent {
                Ok(()) => {
                    uow.deliveries.push(DeliveryUpdate::Attempted {
                        id,
                        status: NotificationStatus::Sent,
                        error: None,
                    });
                    for later in self.chain_after(&n).await? {
                        if later.status == NotificationStatus::Held {
                            uow.deliveries.push(DeliveryUpdate::Skip { id: later.id });
                        }
                    }
                    if let Some(t) = &n.on_delivered {
                        let mut fire = Fire::new(t.clone());
                        fire.payload = serde_json::json!({ "notice": n.chain.as_deref().unwrap_or(&n.idempotency_key), "channel": n.channel });
                        fires.push(fire);
                    }
                }
                Err(e) if e.retryable && !run.last() => {
                    uow.deliveries.push(DeliveryUpdate::Attempted {
                        id,
                        status: NotificationStatus::Pending,
                        error: Some(e.message.clone()),
                    });
                    uow.defer_job = run.deferral();
                    result = Err(WorkError::Retry(e.message));
                }
                Err(e) => {
                    warn!(notification = id, channel = %n.channel, template = %n.template, error = %e.message, "notification failed for good");
                    uow.deliveries.push(DeliveryUpdate::Attempted {
                        id,
                        status: NotificationStatus::Failed,
                        error: Some(e.message.clone()),
                    });
                    match self.chain_after(&n).await?.into_iter().find(|l| l.status == NotificationStatus::Held) {
                        Some(next) => uow.deliveries.push(DeliveryUpdate::Release { id: next.id }),
                        None => {
                            if let Some(t) = &n.on_undeliverable {
                                let mut fire = Fire::new(t.clone());
                                fire.payload = serde_json::json!({
                                    "notice": n.chain.as_deref().unwrap_or(&n.idempotency_key),
                                    "why": "every channel failed",
                                });
                                fires.push(fire);
                            }
                        }
                    }
                }
            }
            let committed = match (&record, fires.is_empty()) {
                (Some(record), false) => self.commit(record, Outcome::Fire(fires, uow)).await?,
                _ => self.commit_rows(uow).await?,
            };
            if committed {
                crate::failpoint!(self.scope(), "delivery.after_commit");
                return result;
            }
        }
        Err(WorkError::Retry(format!("notification {id}: lost {RACES} races in a row; retried later")))
    }

    /// The later channels of a notification's fallback chain, in order.
    async fn chain_after(&self, n: &NotificationRecord) -> Result<Vec<NotificationRecord>, WorkError> {
        let Some(chain) = &n.chain else { return Ok(vec![]) };
        Ok(self.engine.store().chain(chain).await?.into_iter().filter(|c| c.position > n.position).collect())
    }

    /// Carries out, once, the outbox rows an earlier version committed and did not get
    /// to (that version relayed them to jobs after the commit): each becomes the rows and
    /// jobs it stands for, committed with the row marked done. Then gives every pending
    /// row that has no job one (a job the earlier version's relay lost). Answers how many
    /// of each; both are zero on a database this version has always run.
    pub async fn adopt_earlier_work(&self, retired_queue: &str) -> Result<(usize, usize), WorkError> {
        let store = self.engine.store();
        let mut adopted = 0;
        loop {
            let legacy = store.legacy_effects(200).await?;
            if legacy.is_empty() {
                break;
            }
            for e in legacy {
                let appeal = self.appeal(&e.appeal_id).await?;
                let history = store.history(&appeal.id).await?;
                let now = self.engine.now();
                let mut uow = UnitOfWork::new(now);
                uow.legacy_effects_done.push(e.id);
                let follow = match history.iter().find(|h| h.seq == e.event_seq) {
                    Some(event) => {
                        let kind = e
                            .effect
                            .parse()
                            .map_err(|_| EngineError::Effects(format!("unknown effect {:?}", e.effect)))?;
                        let effect = crate::workflow::definition::EffectDef {
                            effect: kind,
                            template: e.template.clone(),
                            // One this version does not know goes to the applicant, as it did.
                            to: e.recipient.as_deref().and_then(|r| r.parse().ok()),
                            fallback: false,
                            delivered: None,
                            undeliverable: None,
                            deadline: None,
                        };
                        self.planner.plan_legacy(&appeal, event, &effect, &e.idempotency_key, now, &mut uow).await?
                    }
                    None => None,
                };
                let committed = match follow {
                    Some(fire) => self.commit(&appeal, Outcome::Fire(vec![fire], uow)).await?,
                    None => self.commit_rows(uow).await?,
                };
                if committed {
                    adopted += 1;
                }
            }
        }
        if adopted > 0 {
            let retired = store.retire_queue(retired_queue).await?;
            warn!(adopted, retired, "carried out outbox rows an earlier version left; its effect jobs are retired");
        }
        let orphans = store.unqueued_work(500).await?;
        if !orphans.is_empty() {
            warn!(count = orphans.len(), "pending work without a job (left by an earlier version): queued now");
            store.enqueue(&orphans).await?;
        }
        Ok((adopted, orphans.len()))
    }
}
