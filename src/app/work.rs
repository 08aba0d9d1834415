//! Background work, independent of the job queue that schedules it: what an effect in
//! the outbox does (render and record notifications, start post-approval actions), how
//! an action is applied through the account seam, how a notification is delivered, and
//! when an approved appeal completes. Every step is idempotent — keyed by the row it
//! works on — so a job delivered twice, or retried after a crash, does nothing twice.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::adapters::accounts::{AccountActions, AccountDirectory, ActionRequest};
use crate::adapters::notify::{Channel, Templates};
use crate::app::intake::AppealData;
use crate::domain::account::AccountChange;
use crate::domain::{Actor, PhoneNumber, Role, check_text};
use crate::engine::{Engine, EngineError};
use crate::store::{ActionAttempt, AppealRecord, NewAction, NewNotification, StoreError, TimerStatus, WorkFilter};
use crate::workflow::Fire;
use crate::workflow::definition::{ActionFacts, EffectDef};

/// Work that a step made necessary, for the scheduler to enqueue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Followups {
    pub actions: Vec<i64>,
    pub notifications: Vec<i64>,
}

impl Followups {
    fn and(mut self, other: Followups) -> Followups {
        self.actions.extend(other.actions);
        self.notifications.extend(other.notifications);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// Worth another attempt later (a network error, a 5xx, a database hiccup).
    #[error("{0}")]
    Retry(String),
    /// Another attempt would fail the same way.
    #[error("{0}")]
    Permanent(String),
}

/// The answer to marking a manual task done.
#[derive(Debug, Default)]
pub struct ManualDone {
    /// The appeal's state when the task was marked done.
    pub from: String,
    /// The task was already done: nothing changed.
    pub replayed: bool,
    /// Notifications to deliver (queued by the caller).
    pub followups: Followups,
}

/// Why a manual task could not be marked done.
#[derive(Debug, thiserror::Error)]
pub enum ManualTaskError {
    #[error("no appeal with ticket {0}")]
    NotFound(String),
    #[error("appeal {ticket} has no manual task (yet): it appears once the appeal is approved")]
    NoTask { ticket: String, state: String, version: i64 },
    #[error("{0}")]
    Stale(crate::workflow::Refusal),
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    Work(#[from] WorkError),
}

impl From<StoreError> for ManualTaskError {
    fn from(e: StoreError) -> Self {
        ManualTaskError::Work(e.into())
    }
}

impl From<EngineError> for ManualTaskError {
    fn from(e: EngineError) -> Self {
        ManualTaskError::Work(e.into())
    }
}

impl From<StoreError> for WorkError {
    fn from(e: StoreError) -> Self {
        WorkError::Retry(e.to_string())
    }
}

impl From<EngineError> for WorkError {
    fn from(e: EngineError) -> Self {
        match e.class() {
            crate::engine::ErrorClass::Internal => WorkError::Retry(e.to_string()),
            _ => WorkError::Permanent(e.to_string()),
        }
    }
}

/// Titles of actions for notifications, by locale.
fn action_title(action: &str, locale: &str) -> &'static str {
    let zh = locale == "zh-CN";
    match action {
        "rotate_secure_phone" => {
            if zh {
                "安全手机更换"
            } else {
                "secure phone change"
            }
        }
        "detach_mfa" => {
            if zh {
                "MFA 解绑"
            } else {
                "MFA detachment"
            }
        }
        "clear_security_questions" => {
            if zh {
                "密保问题清除"
            } else {
                "security questions reset"
            }
        }
        "clear_ip_logon_mask" => {
            if zh {
                "登录 IP 掩码清除"
            } else {
                "IP logon mask removal"
            }
        }
        "change_verified_entity" => {
            if zh {
                "实名认证主体变更"
            } else {
                "verified entity change"
            }
        }
        _ => {
            if zh {
                "账号恢复"
            } else {
                "account restoration"
            }
        }
    }
}

fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

pub struct Work {
    engine: Arc<Engine>,
    templates: Arc<Templates>,
    channel: Arc<dyn Channel>,
    actions: Arc<dyn AccountActions>,
    directory: Arc<dyn AccountDirectory>,
    leads: Vec<String>,
    /// Raised when a step records work outside the outbox (a manual task done from the
    /// API, say): an in-process worker sweeps it up at once instead of at its next sweep.
    sweep_soon: tokio::sync::Notify,
}

/// One addressee of a notification.
struct Address {
    channel: &'static str,
    to: String,
    masked: String,
}

impl Work {
    pub fn new(
        engine: Arc<Engine>,
        templates: Arc<Templates>,
        channel: Arc<dyn Channel>,
        actions: Arc<dyn AccountActions>,
        directory: Arc<dyn AccountDirectory>,
        leads: Vec<String>,
    ) -> Self {
        Work { engine, templates, channel, actions, directory, leads, sweep_soon: tokio::sync::Notify::new() }
    }

    /// Resolves when a step asked for a sweep (see [`Work::request_sweep`]).
    pub async fn sweep_requested(&self) {
        self.sweep_soon.notified().await
    }

    /// Asks an in-process worker to sweep now; without one, the next worker sweep finds
    /// the work anyway (pending rows are the record).
    pub fn request_sweep(&self) {
        self.sweep_soon.notify_one();
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Checks that every notification the workflow can send has the variants its
    /// recipients need (SMS and email for applicants and security contacts, email for
    /// leads) in every locale: a gap is an error at start.
    pub fn check_templates(&self) -> Result<(), crate::adapters::notify::TemplateError> {
        let def = &self.engine.workflow().def;
        let mut effects: Vec<&EffectDef> = def.states.iter().flat_map(|s| &s.on_enter).collect();
        effects.extend(def.transitions.iter().flat_map(|t| &t.effects));
        for t in &def.timers {
            effects.extend(&t.fires.effects);
            if let Some(w) = &t.warning {
                effects.extend(&w.effects);
            }
        }
        for a in &def.actions {
            effects.extend(&a.after);
        }
        for e in effects.into_iter().filter(|e| e.effect == "notify") {
            let (Some(template), Some(to)) = (&e.template, &e.to) else { continue };
            let channels: &[&str] = if to == "leads" { &["email"] } else { &["sms", "email"] };
            for channel in channels {
                self.templates.require(template, channel)?;
            }
        }
        Ok(())
    }

    fn local(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.engine.workflow().calendar.time_zone).format("%Y-%m-%d %H:%M %:z").to_string()
    }

    async fn appeal(&self, id: &str) -> Result<(AppealRecord, AppealData), WorkError> {
        let record = self
            .engine
            .store()
            .appeal_by_id(id)
            .await?
            .ok_or_else(|| WorkError::Permanent(format!("appeal {id} does not exist")))?;
        let data = AppealData::from_record(&record)?;
        Ok((record, data))
    }

    /// The variables a template may use, for this appeal now.
    async fn context(&self, record: &AppealRecord, template: &str) -> Result<serde_json::Value, WorkError> {
        let store = self.engine.store();
        let history = store.history(&record.id).await?;
        let reasons = history
            .iter()
            .rev()
            .find(|e| e.transition == "reject" || e.transition == "screen_reject")
            .map(|e| e.reasons.join("; "))
            .unwrap_or_default();
        let timers = store.timers(Some(&record.id)).await?;
        let due = |name: &str| {
            timers.iter().rev().find(|t| t.name == name && t.status != TimerStatus::Cancelled).map(|t| t.due_at)
        };
        let deadline = match template {
            // The window opens when this notice is delivered, which is now.
            "appeal_rejected" => {
                let cal = &self.engine.workflow().calendar;
                let days = self
                    .engine
                    .workflow()
                    .timer("resubmission_window")
                    .and_then(|t| match t.after {
                        crate::workflow::definition::Span::CalendarDays(n) => Some(n),
                        _ => None,
                    })
                    .unwrap_or(3);
                cal.calendar_deadline(self.engine.now(), crate::calendar::CalendarDays(days)).ok()
            }
            "window_reminder" | "window_expired" => due("resubmission_window"),
            _ => due("review_sla"),
        };
        Ok(serde_json::json!({
            "ticket": record.ticket.to_string(),
            "account": record.account,
            "reasons": reasons,
            "deadline": deadline.map(|d| self.local(d)).unwrap_or_default(),
            "action": "",
            "action_title": "",
            "new_phone": "",
            "at": self.local(self.engine.now()),
        }))
    }

    /// The reviewer leads: the email of every lead whose token is not revoked, and the
    /// worker's configured distribution list; each address once, sorted.
    pub async fn lead_emails(&self) -> Result<Vec<String>, StoreError> {
        let mut emails: std::collections::BTreeSet<String> = self.leads.iter().cloned().collect();
        for t in self.engine.store().tokens().await? {
            if t.role == Role::Lead && t.revoked_at.is_none() {
                emails.extend(t.email);
            }
        }
        Ok(emails.into_iter().collect())
    }

    async fn lead_addresses(&self) -> Result<Vec<Address>, WorkError> {
        let emails = self.lead_emails().await?;
        Ok(emails.into_iter().map(|l| Address { channel: "email", masked: mask_email(&l), to: l }).collect())
    }

    fn applicant_addresses(data: &AppealData) -> Vec<Address> {
        let mut out = Vec::new();
        if let Some(p) = &data.draft.contact_phone {
            out.push(Address { channel: "sms", to: p.as_e164().to_string(), masked: p.masked() });
        }
        if let Some(e) = &data.draft.contact_email {
            out.push(Address { channel: "email", to: e.clone(), masked: mask_email(e) });
        }
        out
    }

    /// Renders and records one notification per address; returns their ids.
    async fn record_notifications(
        &self,
        appeal_id: &str,
        key: &str,
        template: &str,
        locale: &str,
        addresses: Vec<Address>,
        ctx: &serde_json::Value,
    ) -> Result<Vec<i64>, WorkError> {
        let mut items = Vec::new();
        for (i, a) in addresses.into_iter().enumerate() {
            let body = self
                .templates
                .render(template, a.channel, locale, ctx)
                .map_err(|e| WorkError::Permanent(e.to_string()))?
                .trim_end()
                .to_string();
            items.push(NewNotification {
                appeal_id: Some(appeal_id.to_string()),
                idempotency_key: format!("{key}/{}/{i}", a.channel),
                template: template.to_string(),
                channel: a.channel.to_string(),
                locale: locale.to_string(),
                recipient: a.to,
                recipient_masked: a.masked,
                body,
            });
        }
        Ok(self.engine.store().insert_notifications(&items, self.engine.now()).await?)
    }

    /// Carries out one outbox row. Idempotent: a row already done does nothing.
    pub async fn process_effect(&self, id: i64) -> Result<Followups, WorkError> {
        let store = self.engine.store();
        let effect = store.effect(id).await?.ok_or_else(|| WorkError::Permanent(format!("no outbox row {id}")))?;
        if effect.status == "done" {
            return Ok(Followups::default());
        }
        let (record, data) = self.appeal(&effect.appeal_id).await?;
        let follow = match effect.effect.as_str() {
            "notify" => {
                let template = effect.template.clone().unwrap_or_default();
                let ctx = self.context(&record, &template).await?;
                let locale = data.draft.locale.clone().unwrap_or_else(|| "zh-CN".into());
                let addresses = match effect.recipient.as_deref() {
                    Some("leads") => self.lead_addresses().await?,
                    _ => Self::applicant_addresses(&data),
                };
                if addresses.is_empty() {
                    warn!(ticket = %record.ticket, %template, recipient = ?effect.recipient, "notification has no addressee");
                }
                let ids = self
                    .record_notifications(&record.id, &effect.idempotency_key, &template, &locale, addresses, &ctx)
                    .await?;
                Followups { notifications: ids, actions: vec![] }
            }
            "post_approval_actions" => {
                let facts = ActionFacts {
                    items: data.draft.items.clone(),
                    changes_secure_phone: data.changes_secure_phone,
                    entity_change: data.entity_change.required,
                };
                let defs = self.engine.workflow().def.actions_for(&facts);
                let new: Vec<NewAction> =
                    defs.iter().map(|d| NewAction { action: d.name.clone(), manual: d.manual }).collect();
                store.insert_actions(&record.id, &new, self.engine.now()).await?;
                let pending = store
                    .actions(&WorkFilter {
                        appeal_id: Some(record.id.clone()),
                        status: Some("pending".into()),
                        limit: None,
                    })
                    .await?;
                let ids = pending.iter().filter(|a| !a.manual).map(|a| a.id).collect();
                let done = if new.is_empty() { self.maybe_complete(&record.id).await? } else { Followups::default() };
                Followups { actions: ids, notifications: vec![] }.and(done)
            }
            other => return Err(WorkError::Permanent(format!("unknown effect {other:?}"))),
        };
        // The relay may mark the row queued while this runs: done from either status.
        if !store.set_effect_status(id, "pending", "done").await? {
            store.set_effect_status(id, "queued", "done").await?;
        }
        Ok(follow)
    }

    fn change_for(
        &self,
        action: &str,
        data: &AppealData,
        new_company_rep: Option<crate::domain::account::Person>,
    ) -> Result<AccountChange, WorkError> {
        Ok(match action {
            "rotate_secure_phone" => AccountChange::RotateSecurePhone {
                phone: data
                    .draft
                    .contact_phone
                    .clone()
                    .ok_or_else(|| WorkError::Permanent("the appeal has no contact phone to rotate to".into()))?,
            },
            "detach_mfa" => AccountChange::DetachMfa,
            "clear_security_questions" => AccountChange::ClearSecurityQuestions,
            "clear_ip_logon_mask" => AccountChange::ClearIpLogonMask,
            "change_verified_entity" => AccountChange::ChangeVerifiedEntity {
                enterprise_name: data
                    .draft
                    .new_company
                    .as_ref()
                    .map(|c| c.name.clone())
                    .ok_or_else(|| WorkError::Permanent("the appeal names no new company".into()))?,
                legal_representative: new_company_rep,
            },
            other => {
                return Err(WorkError::Permanent(format!("action {other:?} is not applied through the account seam")));
            }
        })
    }

    /// Applies one post-approval action through the account seam, with its key.
    pub async fn run_action(&self, id: i64) -> Result<Followups, WorkError> {
        let store = self.engine.store();
        let action = store.action(id).await?.ok_or_else(|| WorkError::Permanent(format!("no action {id}")))?;
        if action.status == "succeeded" {
            // A worker may have died after recording the success and before the rest:
            // both steps below are idempotent, so a re-run finishes them.
            return self.after_success(&action).await;
        }
        if action.status != "pending" || action.manual {
            return Ok(Followups::default());
        }
        let (record, data) = self.appeal(&action.appeal_id).await?;
        let rep = match (&action.action[..], &data.entity_change.account) {
            ("change_verified_entity", Some(acct)) => {
                self.directory.by_name(acct).await?.and_then(|a| a.legal_representative)
            }
            _ => None,
        };
        let change = match self.change_for(&action.action, &data, rep) {
            Ok(c) => c,
            Err(e) => {
                let attempt = ActionAttempt {
                    status: "failed",
                    error: Some(e.to_string()),
                    result: None,
                    done_by: None,
                    if_appeal_version: None,
                };
                store.record_action_attempt(id, &attempt, self.engine.now()).await?;
                return Ok(Followups::default());
            }
        };
        let request = ActionRequest {
            idempotency_key: action.idempotency_key.clone(),
            ticket: record.ticket.to_string(),
            account: record.account.clone(),
            action: action.action.clone(),
            change,
        };
        match self.actions.apply(&request).await {
            Ok(done) => {
                let result = serde_json::json!({ "before": done.before, "replayed": done.replayed });
                let attempt = ActionAttempt {
                    status: "succeeded",
                    error: None,
                    result: Some(result),
                    done_by: None,
                    if_appeal_version: None,
                };
                store.record_action_attempt(id, &attempt, self.engine.now()).await?;
                info!(ticket = %record.ticket, action = %action.action, replayed = done.replayed, "post-approval action applied");
                let after =
                    self.after_action(&record, &data, &action.action, &action.idempotency_key, &done.before).await?;
                Ok(after.and(self.maybe_complete(&record.id).await?))
            }
            Err(e) if e.retryable => {
                let attempt = ActionAttempt {
                    status: "pending",
                    error: Some(e.message.clone()),
                    result: None,
                    done_by: None,
                    if_appeal_version: None,
                };
                store.record_action_attempt(id, &attempt, self.engine.now()).await?;
                Err(WorkError::Retry(e.message))
            }
            Err(e) => {
                let attempt = ActionAttempt {
                    status: "failed",
                    error: Some(e.message.clone()),
                    result: None,
                    done_by: None,
                    if_appeal_version: None,
                };
                store.record_action_attempt(id, &attempt, self.engine.now()).await?;
                warn!(ticket = %record.ticket, action = %action.action, error = %e.message, "post-approval action failed permanently; the appeal needs attention");
                Ok(Followups::default())
            }
        }
    }

    async fn after_success(&self, action: &crate::store::ActionRecord) -> Result<Followups, WorkError> {
        let (record, data) = self.appeal(&action.appeal_id).await?;
        let before = action.result.as_ref().and_then(|r| r.get("before")).cloned().unwrap_or_default();
        let after = self.after_action(&record, &data, &action.action, &action.idempotency_key, &before).await?;
        Ok(after.and(self.maybe_complete(&record.id).await?))
    }

    /// Finishes what a crash may have interrupted: for every approved appeal, the
    /// after-effects of its succeeded actions and its completion. Idempotent.
    pub async fn reconcile(&self) -> Result<Followups, WorkError> {
        let store = self.engine.store();
        let approved = store
            .list_appeals(&crate::store::AppealFilter { state: Some("approved".into()), limit: Some(1000) })
            .await?;
        let mut follow = Followups::default();
        for appeal in approved {
            let actions =
                store.actions(&WorkFilter { appeal_id: Some(appeal.id.clone()), ..Default::default() }).await?;
            for a in actions.iter().filter(|a| a.status == "succeeded") {
                follow = follow.and(self.after_success(a).await?);
            }
            follow.actions.extend(actions.iter().filter(|a| a.status == "pending" && !a.manual).map(|a| a.id));
        }
        Ok(follow)
    }

    /// The effects a succeeded action triggers (the security notice, "done" messages).
    async fn after_action(
        &self,
        record: &AppealRecord,
        data: &AppealData,
        action: &str,
        key: &str,
        before: &serde_json::Value,
    ) -> Result<Followups, WorkError> {
        let Some(def) = self.engine.workflow().def.actions.iter().find(|a| a.name == action) else {
            return Ok(Followups::default());
        };
        let locale = data.draft.locale.clone().unwrap_or_else(|| "zh-CN".into());
        let mut ids = Vec::new();
        for effect in def.after.iter().filter(|e| e.effect == "notify") {
            let template = effect.template.clone().unwrap_or_default();
            let mut ctx = self.context(record, &template).await?;
            ctx["action"] = serde_json::json!(action);
            ctx["action_title"] = serde_json::json!(action_title(action, &locale));
            ctx["new_phone"] =
                serde_json::json!(data.draft.contact_phone.as_ref().map(|p| p.masked()).unwrap_or_default());
            let addresses = match effect.to.as_deref() {
                Some("security_contacts") => {
                    let mut a = Vec::new();
                    if let Some(p) =
                        before.get("secure_phone").and_then(|p| p.as_str()).and_then(|p| PhoneNumber::parse(p).ok())
                    {
                        a.push(Address { channel: "sms", to: p.as_e164().to_string(), masked: p.masked() });
                    }
                    if let Some(e) = before.get("security_email").and_then(|e| e.as_str())
                        && check_text("security_email", e, false).is_ok()
                    {
                        a.push(Address { channel: "email", to: e.to_string(), masked: mask_email(e) });
                    }
                    a
                }
                _ => Self::applicant_addresses(data),
            };
            let key = format!("{key}:{template}");
            ids.extend(self.record_notifications(&record.id, &key, &template, &locale, addresses, &ctx).await?);
        }
        Ok(Followups { notifications: ids, actions: vec![] })
    }

    /// Closes an approved appeal as completed once every action has succeeded.
    async fn maybe_complete(&self, appeal_id: &str) -> Result<Followups, WorkError> {
        let store = self.engine.store();
        let actions =
            store.actions(&WorkFilter { appeal_id: Some(appeal_id.to_string()), ..Default::default() }).await?;
        if actions.iter().any(|a| a.status != "succeeded") {
            return Ok(Followups::default());
        }
        let Some(record) = store.appeal_by_id(appeal_id).await? else { return Ok(Followups::default()) };
        if record.state != "approved" {
            return Ok(Followups::default());
        }
        let mut cmd = Fire::new("complete");
        cmd.payload = serde_json::json!({ "actions": actions.len() });
        match self.engine.fire(&record.ticket, &cmd, &Actor::system(), Some(&format!("complete:{appeal_id}"))).await {
            Ok(_) => {}
            // Completed concurrently by another worker: fine.
            Err(EngineError::Refused(_) | EngineError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Followups::default())
    }

    /// Marks an approved appeal's manual task ("other": restored by hand) done, as
    /// `actor`. A reviewer may do so only on an appeal they approved; leads and admins on
    /// any. With `expect_version`, the task is recorded only while the appeal is still at
    /// that version, checked in the same statement as the write. A repeat finds the task
    /// done and answers `replayed`.
    pub async fn complete_manual(
        &self,
        ticket: &crate::domain::TicketNumber,
        actor: &Actor,
        expect_version: Option<i64>,
    ) -> Result<ManualDone, ManualTaskError> {
        let store = self.engine.store();
        let record =
            store.appeal_by_ticket(ticket).await?.ok_or_else(|| ManualTaskError::NotFound(ticket.to_string()))?;
        if let Some(refusal) = crate::app::stale_read(expect_version, &record) {
            return Err(ManualTaskError::Stale(refusal));
        }
        if !matches!(actor.role, Role::Reviewer | Role::Lead | Role::Admin) {
            return Err(ManualTaskError::NotAllowed("only reviewers, leads and admins mark manual tasks done".into()));
        }
        if actor.role == Role::Reviewer {
            // Nobody holds an approved appeal: its manual task belongs to whoever approved it.
            let history = store.history(&record.id).await?;
            let approver = history.iter().rev().find(|e| e.transition == "approve").map(|e| e.actor.as_str());
            if approver != Some(actor.name.as_str()) {
                return Err(ManualTaskError::NotAllowed(
                    "a reviewer marks the manual task done only on an appeal they approved".into(),
                ));
            }
        }
        let actions = store.actions(&WorkFilter { appeal_id: Some(record.id.clone()), ..Default::default() }).await?;
        let Some(task) = actions.iter().find(|a| a.manual) else {
            return Err(ManualTaskError::NoTask {
                ticket: ticket.to_string(),
                state: record.state,
                version: record.version,
            });
        };
        let done = |record: &AppealRecord, replayed: bool, followups: Followups| ManualDone {
            from: record.state.clone(),
            replayed,
            followups,
        };
        if task.status == "succeeded" {
            return Ok(done(&record, true, Followups::default()));
        }
        let attempt = ActionAttempt {
            status: "succeeded",
            error: None,
            result: Some(serde_json::json!({ "manual": true })),
            done_by: Some(actor.name.clone()),
            if_appeal_version: expect_version,
        };
        let recorded = store.record_action_attempt(task.id, &attempt, self.engine.now()).await?;
        if recorded.status != "succeeded" {
            // The version check in the write refused it: the appeal moved on meanwhile.
            let now_at = store.appeal_by_id(&record.id).await?.unwrap_or(record.clone());
            return Err(ManualTaskError::Stale(crate::workflow::Refusal::StaleVersion {
                expected: expect_version.unwrap_or(record.version),
                current: now_at.version,
                state: now_at.state,
            }));
        }
        if recorded.done_by.as_deref() != Some(actor.name.as_str()) {
            // Someone else recorded it between our read and our write: theirs stands.
            return Ok(done(&record, true, Followups::default()));
        }
        let data = AppealData::from_record(&record)?;
        let after =
            self.after_action(&record, &data, &task.action, &task.idempotency_key, &serde_json::Value::Null).await?;
        Ok(done(&record, false, after.and(self.maybe_complete(&record.id).await?)))
    }

    /// Delivers one notification through the channel; the rejection notice's delivery
    /// opens the resubmission window.
    pub async fn deliver(&self, id: i64) -> Result<Followups, WorkError> {
        let store = self.engine.store();
        let n = store.notification(id).await?.ok_or_else(|| WorkError::Permanent(format!("no notification {id}")))?;
        if n.status == "sent" {
            return Ok(Followups::default());
        }
        if let Err(e) = self.channel.deliver(&n).await {
            let status = if e.retryable { "pending" } else { "failed" };
            store.record_delivery(id, status, Some(&e.message), self.engine.now()).await?;
            return if e.retryable { Err(WorkError::Retry(e.message)) } else { Ok(Followups::default()) };
        }
        store.record_delivery(id, "sent", None, self.engine.now()).await?;
        if n.template == "appeal_rejected"
            && let Some(appeal_id) = &n.appeal_id
        {
            self.notice_delivered(appeal_id, &n.idempotency_key).await?;
        }
        Ok(Followups::default())
    }

    async fn notice_delivered(&self, appeal_id: &str, notification_key: &str) -> Result<(), WorkError> {
        let Some(record) = self.engine.store().appeal_by_id(appeal_id).await? else { return Ok(()) };
        // Every channel of one rejection notice shares the effect's key: the first
        // delivery opens the window, the others replay that answer.
        let effect_key = notification_key.split('/').next().unwrap_or(notification_key);
        let mut cmd = Fire::new("notice_delivered");
        cmd.payload = serde_json::json!({ "notice": effect_key });
        match self.engine.fire(&record.ticket, &cmd, &Actor::system(), Some(&format!("notice:{effect_key}"))).await {
            Ok(_) => Ok(()),
            // The appeal moved on (withdrawn, say): the notice no longer opens anything.
            Err(EngineError::Refused(r)) => {
                info!(ticket = %record.ticket, reason = %r, "rejection notice delivered; window not opened");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// What a deterministic run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimulationReport {
    pub timers_fired: usize,
    pub effects: usize,
    pub actions: usize,
    pub notifications: usize,
    /// Steps that failed and were left for a later attempt.
    pub deferred: Vec<String>,
}

impl Work {
    /// Runs every piece of recorded work once, then what it made necessary, until no
    /// step makes progress. No job queue, no waiting: for simulations and tests.
    pub async fn drain(&self, report: &mut SimulationReport) -> Result<(), WorkError> {
        let store = self.engine.store();
        loop {
            let mut progressed = false;
            let mut follow = Followups::default();
            for e in store.pending_effects(1000).await?.into_iter().chain(store.queued_effects(1000).await?) {
                match self.process_effect(e.id).await {
                    Ok(f) => {
                        follow = follow.and(f);
                        report.effects += 1;
                        progressed = true;
                    }
                    Err(err) => report.deferred.push(format!("effect {}: {err}", e.id)),
                }
            }
            let pending = WorkFilter { status: Some("pending".into()), ..Default::default() };
            let mut actions: Vec<i64> =
                store.actions(&pending).await?.into_iter().filter(|a| !a.manual).map(|a| a.id).collect();
            actions.extend(follow.actions);
            actions.sort_unstable();
            actions.dedup();
            for id in actions {
                let before = store.action(id).await?.map(|a| (a.status, a.attempts));
                match self.run_action(id).await {
                    Ok(_) => {}
                    Err(err) => report.deferred.push(format!("action {id}: {err}")),
                }
                let after = store.action(id).await?.map(|a| (a.status, a.attempts));
                if after.as_ref().is_some_and(|(s, _)| s == "succeeded") && before != after {
                    report.actions += 1;
                    progressed = true;
                }
            }
            for n in store.notifications(&pending).await? {
                match self.deliver(n.id).await {
                    Ok(_) => {
                        report.notifications += 1;
                        progressed = true;
                    }
                    Err(err) => report.deferred.push(format!("notification {}: {err}", n.id)),
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Deterministic simulation on a manual clock: every timer due up to `until` fires
    /// at its own due instant, in due order, with all the work it causes done before the
    /// clock moves on; then the clock stops at `until`.
    pub async fn run_until(
        &self,
        clock: &crate::engine::ManualClock,
        until: DateTime<Utc>,
    ) -> Result<SimulationReport, WorkError> {
        let mut report = SimulationReport::default();
        self.drain(&mut report).await?;
        loop {
            let next = self.engine.store().due_timers(until, 1).await?.into_iter().next();
            let Some(timer) = next else { break };
            if timer.due_at > self.engine.now() {
                clock.set(timer.due_at);
            }
            let runs = self.engine.run_due_timers(100).await?;
            let fired = runs.iter().filter(|r| r.result.is_some()).count();
            report.timers_fired += fired;
            self.drain(&mut report).await?;
            if runs.is_empty()
                || (fired == 0 && runs.iter().all(|r| r.note.as_deref().is_some_and(|n| n.starts_with("refused"))))
            {
                // Only timers that refuse to act remain due: stop rather than spin.
                break;
            }
        }
        if until > self.engine.now() {
            clock.set(until);
        }
        self.drain(&mut report).await?;
        Ok(report)
    }
}
