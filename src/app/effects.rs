//! What a decision's effects become, planned into the unit of work that commits the
//! decision: notifications rendered for every addressee (each with its delivery job), a
//! fallback chain across the applicant's channels where the workflow asks for one, and
//! post-approval actions (each with its job). Nothing here sends or applies anything:
//! the worker's steps do that, each committing its own result whole.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::warn;

use crate::adapters::notify::{TemplateError, Templates};
use crate::app::intake::AppealData;
use crate::domain::rejection::all_in_words;
use crate::domain::{Locale, PhoneNumber, Role, check_text};
use crate::engine::{BatchReads, EffectPlanner, EngineError, Planned};
use crate::store::{
    AppealRecord, NewAction, NewNotification, NotificationStatus, Store, StoreError, TimerStatus, UnitOfWork,
};
use crate::workflow::Fire;
use crate::workflow::decide::timer_due;
use crate::workflow::definition::{ActionDef, ActionFacts, ActionKind, EffectDef, EffectKind, Recipient};
use crate::workflow::{Decision, Versions, Workflow};

/// One addressee of a notification.
struct Address {
    channel: &'static str,
    to: String,
    masked: String,
}

pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Titles of actions for notifications, by locale.
pub fn action_title(action: ActionKind, locale: &str) -> &'static str {
    let (en, zh) = match action {
        ActionKind::RotateSecurePhone => ("secure phone change", "安全手机更换"),
        ActionKind::DetachMfa => ("MFA detachment", "MFA 解绑"),
        ActionKind::ClearSecurityQuestions => ("security questions reset", "密保问题清除"),
        ActionKind::ClearIpLogonMask => ("IP logon mask removal", "登录 IP 掩码清除"),
        ActionKind::ChangeVerifiedEntity => ("verified entity change", "实名认证主体变更"),
        ActionKind::ManualTask => ("account restoration", "账号恢复"),
    };
    if locale == "en" { en } else { zh }
}

/// The title of an action named in a stored payload (an action this version does not
/// know reads as an account restoration).
fn title_of(action: &str, locale: &str) -> &'static str {
    action_title(action.parse().unwrap_or(ActionKind::ManualTask), locale)
}

/// The applicant's contact details and language, read leniently from an appeal's record.
struct Contact {
    phone: Option<PhoneNumber>,
    email: Option<String>,
    locale: Locale,
}

impl Contact {
    fn of(record: &AppealRecord) -> Contact {
        let text = |p: &str| record.data.pointer(p).and_then(serde_json::Value::as_str);
        Contact {
            phone: text("/draft/contact_phone").and_then(|p| PhoneNumber::parse(p).ok()),
            email: text("/draft/contact_email")
                .filter(|e| check_text("contact_email", e, false).is_ok())
                .map(str::to_string),
            locale: Locale::or_default(text("/draft/locale")),
        }
    }

    fn addresses(&self) -> Vec<Address> {
        let mut out = Vec::new();
        if let Some(p) = &self.phone {
            out.push(Address { channel: "sms", to: p.as_e164().to_string(), masked: p.masked() });
        }
        if let Some(e) = &self.email {
            out.push(Address { channel: "email", to: e.clone(), masked: mask_email(e) });
        }
        out
    }
}

/// The security phone and email an action replaced, from the account's record before it.
fn security_contacts(before: &serde_json::Value) -> Vec<Address> {
    let mut a = Vec::new();
    if let Some(p) = before.get("secure_phone").and_then(|p| p.as_str()).and_then(|p| PhoneNumber::parse(p).ok()) {
        a.push(Address { channel: "sms", to: p.as_e164().to_string(), masked: p.masked() });
    }
    if let Some(e) = before.get("security_email").and_then(|e| e.as_str())
        && check_text("security_email", e, false).is_ok()
    {
        a.push(Address { channel: "email", to: e.to_string(), masked: mask_email(e) });
    }
    a
}

pub struct Planner {
    store: Arc<dyn Store>,
    /// Every loaded version of the workflow: an appeal's effects are planned on its own.
    versions: Arc<Versions>,
    templates: Arc<Templates>,
    /// A distribution list that gets the leads' alerts besides every lead token's email.
    leads: Vec<String>,
}

impl Planner {
    pub fn new(store: Arc<dyn Store>, versions: Arc<Versions>, templates: Arc<Templates>, leads: Vec<String>) -> Self {
        Planner { store, versions, templates, leads }
    }

    /// Checks that every notification the workflow can send has the variants its
    /// recipients need (SMS and email for applicants and security contacts, email for
    /// leads) in every locale: a gap is an error at start.
    pub fn check_templates(&self) -> Result<(), TemplateError> {
        let mut effects: Vec<&EffectDef> = Vec::new();
        for def in self.versions.all().map(|wf| &wf.def) {
            effects.extend(def.states.iter().flat_map(|s| &s.on_enter));
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
        }
        for e in effects.into_iter().filter(|e| e.effect == EffectKind::Notify) {
            let (Some(template), Some(to)) = (&e.template, e.to) else { continue };
            let channels: &[&str] = match to {
                Recipient::Leads => &["email"],
                Recipient::Applicant | Recipient::SecurityContacts => &["sms", "email"],
            };
            for channel in channels {
                self.templates.require(template, channel)?;
            }
        }
        Ok(())
    }

    /// The version of the workflow an appeal runs on (the newest when it is not loaded:
    /// the engine refuses to decide on such an appeal before anything is planned).
    fn workflow_of(&self, appeal: &AppealRecord) -> &Workflow {
        self.versions.get(appeal.workflow_version).unwrap_or_else(|| self.versions.newest())
    }

    /// The reviewer leads: the email of every lead whose token is not revoked, and the
    /// configured distribution list; each address once, sorted.
    pub async fn lead_emails(&self) -> Result<Vec<String>, StoreError> {
        let mut emails: std::collections::BTreeSet<String> = self.leads.iter().cloned().collect();
        for t in self.store.tokens().await? {
            if t.role == Role::Lead && t.revoked_at.is_none() {
                emails.extend(t.email);
            }
        }
        Ok(emails.into_iter().collect())
    }

    fn local(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.versions.newest().calendar.time_zone).format("%Y-%m-%d %H:%M %:z").to_string()
    }

    /// When `timer` falls due for this appeal: as this decision arms it, as it is armed,
    /// or — not armed yet — as it would if it started now.
    async fn deadline(
        &self,
        appeal: &AppealRecord,
        decision: &Decision,
        timer: &str,
        now: DateTime<Utc>,
        batch: Option<&BatchReads>,
    ) -> Result<Option<DateTime<Utc>>, EngineError> {
        if let Some(arm) = decision.arm.iter().find(|a| a.name == timer) {
            return Ok(Some(arm.due_at));
        }
        if appeal.version > 1 || decision.from.is_some() {
            // The batch's read of the appeal's timers when there is one, else a read.
            let read;
            let timers = match batch.and_then(|b| b.timers.get()) {
                Some(by_appeal) => by_appeal.get(&appeal.id).map_or(&[][..], Vec::as_slice),
                None => {
                    read = self.store.timers(Some(&appeal.id)).await?;
                    &read[..]
                }
            };
            let armed = timers.iter().rev().find(|t| {
                t.name == timer && t.status == TimerStatus::Armed && !decision.cancel.iter().any(|c| c == timer)
            });
            if let Some(t) = armed {
                return Ok(Some(t.due_at));
            }
        }
        let wf = self.workflow_of(appeal);
        let Some(def) = wf.timer(timer) else { return Ok(None) };
        Ok(timer_due(wf, def, now).ok().map(|(due, _)| due))
    }

    /// The most recent reasons given on the appeal: this decision's, else its history's.
    async fn reasons(&self, appeal: &AppealRecord, decision: &Decision) -> Result<Vec<String>, EngineError> {
        if !decision.reasons.is_empty() {
            return Ok(decision.reasons.clone());
        }
        if appeal.version <= 1 {
            return Ok(Vec::new());
        }
        let history = self.store.history(&appeal.id).await?;
        Ok(history.iter().rev().find(|e| !e.reasons.is_empty()).map(|e| e.reasons.clone()).unwrap_or_default())
    }

    #[allow(clippy::too_many_arguments)]
    async fn context(
        &self,
        appeal: &AppealRecord,
        decision: &Decision,
        effect: &EffectDef,
        locale: Locale,
        now: DateTime<Utc>,
        action: Option<&str>,
        new_phone: Option<&PhoneNumber>,
        batch: Option<&BatchReads>,
    ) -> Result<serde_json::Value, EngineError> {
        // Reads only what the template can show (its text names the variable).
        let template = effect.template.as_deref().unwrap_or_default();
        let deadline = match &effect.deadline {
            Some(timer) if self.templates.mentions(template, "deadline") => {
                self.deadline(appeal, decision, timer, now, batch).await?.map(|d| self.local(d))
            }
            _ => None,
        };
        let action = action.or_else(|| decision.payload.get("action").and_then(serde_json::Value::as_str));
        let contact_phone = Contact::of(appeal).phone;
        let reasons =
            if self.templates.mentions(template, "reasons") { self.reasons(appeal, decision).await? } else { vec![] };
        Ok(serde_json::json!({
            "ticket": appeal.ticket.to_string(),
            "account": appeal.account,
            // Codes for staff; words, naming the documents, for the applicant.
            "reasons": reasons.join("; "),
            "reasons_in_words": all_in_words(&reasons, locale),
            "deadline": deadline.unwrap_or_default(),
            "action": action.unwrap_or_default(),
            "action_title": action.map(|a| title_of(a, locale.as_str())).unwrap_or_default(),
            // The phone an action made secure; before any action, the one it would.
            "new_phone": new_phone.or(contact_phone.as_ref()).map(PhoneNumber::masked).unwrap_or_default(),
            "at": self.local(now),
            // Four-eyes: who gave the first approval, and why it needs a second.
            "first_approver": appeal.data.pointer("/first_approval/by").cloned().unwrap_or_default(),
            "risk": appeal.data.pointer("/first_approval/rule").cloned().unwrap_or_default(),
            // Cooling-off: the pending change, its one-time stop code (only in the notice
            // planned with the decision that issued it), and a stopped change's approver.
            // Only ever to the account's security contacts (never the applicant, who may be
            // the one the cooling-off guards against).
            "stop_code": decision.stop_code.clone().filter(|_| effect.to == Some(Recipient::SecurityContacts))
                .unwrap_or_default(),
            "change": appeal.data.pointer("/pending_change/rule")
                .or_else(|| appeal.data.pointer("/disputed/change")).cloned().unwrap_or_default(),
            "approver": appeal.data.pointer("/disputed/approved_by").cloned().unwrap_or_default(),
        }))
    }

    /// Renders one notification per addressee into `uow` (the first only `pending` when
    /// the effect asks for a fallback chain, the rest `held`). Answers the transition to
    /// fire when nobody can be addressed and the effect says what then.
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        appeal: &AppealRecord,
        decision: &Decision,
        effect: &EffectDef,
        key: &str,
        addresses: Vec<Address>,
        ctx: &serde_json::Value,
        locale: Locale,
        uow: &mut UnitOfWork,
    ) -> Result<Option<Fire>, EngineError> {
        let template = effect.template.as_deref().unwrap_or_default();
        if addresses.is_empty() {
            warn!(ticket = %appeal.ticket, template, recipient = ?effect.to, "notification has no addressee");
            return Ok(effect.undeliverable.as_ref().map(|t| {
                let mut fire = Fire::new(t.clone());
                fire.payload = serde_json::json!({ "notice": key, "why": "no address to send it to" });
                fire
            }));
        }
        let _ = decision;
        for (i, a) in addresses.into_iter().enumerate() {
            let body = self
                .templates
                .render(template, a.channel, locale.as_str(), ctx)
                .map_err(|e| EngineError::Effects(e.to_string()))?
                .trim_end()
                .to_string();
            let held = effect.fallback && i > 0;
            uow.notifications.push(NewNotification {
                appeal_id: Some(appeal.id.clone()),
                idempotency_key: format!("{key}/{}/{i}", a.channel),
                template: template.to_string(),
                channel: a.channel.to_string(),
                locale: locale.as_str().to_string(),
                recipient: a.to,
                recipient_masked: a.masked,
                body,
                status: if held { NotificationStatus::Held } else { NotificationStatus::Pending },
                chain: effect.fallback.then(|| key.to_string()),
                position: i as i64,
                on_delivered: effect.delivered.clone(),
                on_undeliverable: effect.undeliverable.clone(),
            });
        }
        Ok(None)
    }

    /// Who a notification goes to. `before`: the account's record before the action an
    /// effect follows (its replaced security contacts), when it follows one.
    async fn recipients(
        &self,
        appeal: &AppealRecord,
        to: Option<Recipient>,
        before: Option<&serde_json::Value>,
        batch: Option<&BatchReads>,
    ) -> Result<Vec<Address>, EngineError> {
        Ok(match to {
            Some(Recipient::Leads) => match batch {
                Some(b) => b.leads.get_or_try_init(|| self.lead_emails()).await?.clone(),
                None => self.lead_emails().await?,
            }
            .into_iter()
            .map(|l| Address { channel: "email", masked: mask_email(&l), to: l })
            .collect(),
            // An effect recorded by an earlier version may name no recipient.
            Some(Recipient::Applicant) | None => Contact::of(appeal).addresses(),
            // After an action, the contacts it replaced; else the account's current ones.
            Some(Recipient::SecurityContacts) => match before {
                Some(before) => security_contacts(before),
                None => match self.store.account(&appeal.account).await? {
                    Some(account) => security_contacts(
                        &serde_json::to_value(&account.security)
                            .map_err(|e| EngineError::Effects(format!("account {}: {e}", appeal.account)))?,
                    ),
                    None => Vec::new(),
                },
            },
        })
    }

    /// Plans one effect with the key it is recorded under.
    #[allow(clippy::too_many_arguments)]
    async fn plan_effect(
        &self,
        appeal: &AppealRecord,
        decision: &Decision,
        effect: &EffectDef,
        key: &str,
        now: DateTime<Utc>,
        uow: &mut UnitOfWork,
        batch: Option<&BatchReads>,
    ) -> Result<Option<Fire>, EngineError> {
        match effect.effect {
            EffectKind::Notify => {
                let locale = Contact::of(appeal).locale;
                let ctx = self.context(appeal, decision, effect, locale, now, None, None, batch).await?;
                let addresses = self.recipients(appeal, effect.to, None, batch).await?;
                self.notify(appeal, decision, effect, key, addresses, &ctx, locale, uow).await
            }
            EffectKind::PostApprovalActions => {
                let data = AppealData::from_record(appeal)?;
                let facts = ActionFacts {
                    items: data.draft.items.clone(),
                    changes_secure_phone: data.changes_secure_phone,
                    entity_change: data.entity_change.required,
                };
                let wf = self.workflow_of(appeal);
                let defs = wf.def.actions_for(&facts);
                if defs.is_empty() {
                    // Nothing to apply: the approval completes in the same commit.
                    let mut fire = Fire::new(wf.def.bindings.completion.clone());
                    fire.payload = serde_json::json!({ "actions": 0 });
                    return Ok(Some(fire));
                }
                uow.actions.extend(defs.into_iter().map(|d| NewAction {
                    appeal_id: appeal.id.clone(),
                    action: d.name.to_string(),
                    manual: d.manual,
                }));
                Ok(None)
            }
        }
    }

    /// The notifications an action's success calls for (its `after` effects): the
    /// security notice to the contacts it replaced (`before`), "done" to the applicant.
    pub async fn plan_action_done(
        &self,
        appeal: &AppealRecord,
        def: &ActionDef,
        key: &str,
        before: &serde_json::Value,
        now: DateTime<Utc>,
        uow: &mut UnitOfWork,
    ) -> Result<(), EngineError> {
        let contact = Contact::of(appeal);
        let decision = Decision {
            transition: def.name.to_string(),
            from: Some(appeal.state.clone()),
            to: appeal.state.clone(),
            outcome: appeal.outcome.clone(),
            assignee: appeal.assignee.clone(),
            reasons: vec![],
            payload: serde_json::json!({ "action": def.name }),
            arm: vec![],
            cancel: vec![],
            effects: vec![],
            first_approval: None,
            cooling_off: None,
            disputes: false,
            stop_code: None,
        };
        for effect in def.after.iter().filter(|e| e.effect == EffectKind::Notify) {
            let template = effect.template.clone().unwrap_or_default();
            let ctx = self
                .context(
                    appeal,
                    &decision,
                    effect,
                    contact.locale,
                    now,
                    Some(def.name.as_str()),
                    contact.phone.as_ref(),
                    None,
                )
                .await?;
            let addresses = self.recipients(appeal, effect.to, Some(before), None).await?;
            let key = format!("{key}:{template}");
            self.notify(appeal, &decision, effect, &key, addresses, &ctx, contact.locale, uow).await?;
        }
        Ok(())
    }

    /// Plans an effect an earlier version recorded in its outbox and left undone, under
    /// the key it was recorded with (so whatever it did get to is not done twice).
    pub async fn plan_legacy(
        &self,
        appeal: &AppealRecord,
        event: &crate::store::EventRecord,
        effect: &EffectDef,
        key: &str,
        now: DateTime<Utc>,
        uow: &mut UnitOfWork,
    ) -> Result<Option<Fire>, EngineError> {
        let decision = Decision {
            transition: event.transition.clone(),
            from: event.from.clone(),
            to: event.to.clone(),
            outcome: event.outcome.clone(),
            assignee: appeal.assignee.clone(),
            reasons: event.reasons.clone(),
            payload: event.payload.clone(),
            arm: vec![],
            cancel: vec![],
            effects: vec![effect.clone()],
            first_approval: None,
            cooling_off: None,
            disputes: false,
            stop_code: None,
        };
        self.plan_effect(appeal, &decision, effect, key, now, uow, None).await
    }
}

#[async_trait]
impl EffectPlanner for Planner {
    async fn plan(&self, p: &Planned<'_>, uow: &mut UnitOfWork) -> Result<Vec<Fire>, EngineError> {
        let mut follow = Vec::new();
        for (i, effect) in p.decision.effects.iter().enumerate() {
            let key = UnitOfWork::effect_key(&p.appeal.id, p.appeal.version, i, effect);
            follow.extend(self.plan_effect(p.appeal, p.decision, effect, &key, p.now, uow, p.batch).await?);
        }
        Ok(follow)
    }
}
