//! The pure decision: given a workflow, an appeal's current snapshot, a command, who
//! issues it and when, say what happens — or refuse, with a typed reason. No I/O here:
//! the engine loads the snapshot, calls `decide`, and commits the [`Decision`] in one
//! unit of work.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use super::cooling_off::{Dispute, PendingChange, check_stop_code};
pub use super::four_eyes::{FirstApproval, same_person, second_approver};
use crate::calendar::{BusinessDays, CalendarDays, CalendarError};
use crate::domain::{Actor, Role};
use crate::workflow::definition::{EffectDef, Guard, RiskFact, Span, TimerDef, WarnAt, Workflow};

/// What `decide` needs to know about an appeal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub state: String,
    pub outcome: Option<String>,
    pub version: i64,
    /// Who holds the claim while the appeal is in a held state.
    pub assignee: Option<String>,
    /// Facts the guards consult, computed by the engine from the appeal's record.
    pub facts: Facts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// A deregistered-enterprise appeal must have the new company's entity-change
    /// ticket linked before it may be approved.
    pub entity_change_required: bool,
    pub entity_change_linked: bool,
    /// The approval rotates the secure phone.
    #[serde(default)]
    pub changes_secure_phone: bool,
    /// The account is verified as an enterprise.
    #[serde(default)]
    pub enterprise_account: bool,
    /// The first approval of a four-eyes approval, while one is recorded.
    #[serde(default)]
    pub first_approval: Option<FirstApproval>,
    /// The change waiting out its cooling-off, while one is recorded.
    #[serde(default)]
    pub pending_change: Option<PendingChange>,
    /// The account holder stopped an earlier approval of this appeal.
    #[serde(default)]
    pub disputed: bool,
    /// Who had approved the change the account holder stopped (never the second
    /// approver of a disputed appeal's approval).
    #[serde(default)]
    pub stopped_approver: Option<String>,
}

impl Facts {
    /// Whether a four-eyes rule's fact holds.
    pub fn holds(&self, fact: RiskFact) -> bool {
        match fact {
            RiskFact::ChangesSecurePhone => self.changes_secure_phone,
            RiskFact::EnterpriseAccount => self.enterprise_account,
            RiskFact::EntityChange => self.entity_change_required,
            RiskFact::Disputed => self.disputed,
        }
    }
}

/// A request to fire a named transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fire {
    pub transition: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Optimistic concurrency: refuse unless the appeal is still at this version.
    #[serde(default)]
    pub expect_version: Option<i64>,
}

impl Fire {
    pub fn new(transition: impl Into<String>) -> Self {
        Fire { transition: transition.into(), reasons: vec![], payload: serde_json::Value::Null, expect_version: None }
    }
}

/// A timer to arm: `kind` says whether it is the timer itself or its warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerArm {
    pub name: String,
    pub due_at: DateTime<Utc>,
}

/// What a committed decision changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The transition fired, or for a timer event the event's name.
    pub transition: String,
    pub from: Option<String>,
    pub to: String,
    pub outcome: Option<String>,
    pub assignee: Option<String>,
    pub reasons: Vec<String>,
    pub payload: serde_json::Value,
    /// Timers (by name) to arm, with their due instants.
    pub arm: Vec<TimerArm>,
    /// Timer names whose armed rows are cancelled.
    pub cancel: Vec<String>,
    /// Effects to enqueue, in order.
    pub effects: Vec<EffectDef>,
    /// A first approval to record on the appeal (four-eyes: it now waits for a second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_approval: Option<FirstApproval>,
    /// Cooling-off: the rule that holds; the appeal now waits before the change applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooling_off: Option<String>,
    /// The transition flags the appeal disputed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disputes: bool,
    /// The one-time stop code the engine issued entering a cooling-off: for the notice
    /// planned in the same unit of work, never stored in the record or the event.
    #[serde(skip)]
    pub stop_code: Option<String>,
}

impl Decision {
    pub fn changes_state(&self) -> bool {
        self.from.as_deref() != Some(self.to.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    #[error("unknown transition {transition:?} (known: {known})")]
    UnknownTransition { transition: String, known: String },
    #[error("{transition:?} cannot fire from state {state:?} at version {version} (it fires from: {allowed})")]
    WrongState { transition: String, state: String, version: i64, allowed: String },
    #[error("role {role} may not fire {transition:?} (allowed: {allowed})")]
    WrongRole { transition: String, role: Role, allowed: String },
    #[error("{transition:?} refused by guard {guard:?}: {reason}")]
    GuardFailed { transition: String, guard: String, reason: String },
    #[error("stale version: expected {expected}, but the appeal is at version {current} in state {state:?}")]
    StaleVersion { expected: i64, current: i64, state: String },
    #[error("{0}")]
    Calendar(String),
    /// The appeal runs on a version of its workflow this process has not loaded.
    #[error("{0}")]
    NotLoaded(String),
}

impl From<CalendarError> for Refusal {
    fn from(e: CalendarError) -> Self {
        Refusal::Calendar(e.to_string())
    }
}

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

fn check_guard(guard: Guard, snapshot: Option<&Snapshot>, cmd: &Fire, actor: &Actor) -> Result<(), String> {
    match guard {
        Guard::HasReasons => {
            if cmd.reasons.iter().any(|r| !r.trim().is_empty()) {
                Ok(())
            } else {
                Err("at least one reason is required".into())
            }
        }
        Guard::RejectionReasons => crate::domain::rejection::check_reasons(&cmd.reasons),
        Guard::HoldsClaim => {
            if matches!(actor.role, Role::Lead | Role::Admin | Role::System) {
                return Ok(());
            }
            match snapshot.and_then(|s| s.assignee.as_deref()) {
                Some(holder) if holder == actor.name => Ok(()),
                Some(holder) => Err(format!("the appeal is held by {holder:?}, not {:?}", actor.name)),
                None => Err("nobody holds a claim on the appeal".into()),
            }
        }
        Guard::EntityChangeLinked => {
            let facts = snapshot.map(|s| &s.facts);
            match facts {
                Some(f) if f.entity_change_required && !f.entity_change_linked => {
                    Err("link the entity-change ticket from an account verified as the new company before approving"
                        .into())
                }
                _ => Ok(()),
            }
        }
        Guard::FourEyes => {
            let facts = snapshot.map(|s| &s.facts);
            second_approver(facts.and_then(|f| f.first_approval.as_ref()), actor)?;
            match facts.and_then(|f| f.stopped_approver.as_deref()) {
                Some(stopped) if same_person(stopped, &actor.name) => Err(format!(
                    "{:?} approved the change the account holder stopped; a second approval needs someone else",
                    actor.name
                )),
                _ => Ok(()),
            }
        }
        Guard::StopCode => check_stop_code(snapshot.and_then(|s| s.facts.pending_change.as_ref()), &cmd.payload),
    }
}

/// When a timer starting at `now` falls due, and when its warning (if any) does.
pub fn timer_due(
    wf: &Workflow,
    timer: &TimerDef,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), CalendarError> {
    let cal = &wf.calendar;
    let due = match timer.after {
        Span::BusinessDays(n) => cal.business_deadline(now, BusinessDays(n))?,
        Span::CalendarDays(n) => cal.calendar_deadline(now, CalendarDays(n))?,
        Span::Hours(h) => now + Duration::hours(i64::from(h)),
        Span::Minutes(m) => now + Duration::minutes(i64::from(m)),
    };
    let warning = match (&timer.warning, timer.after) {
        (None, _) => None,
        (Some(w), Span::BusinessDays(n)) if w.at == WarnAt::StartOfLastBusinessDay => {
            Some(cal.start_of_nth_business_day(now, BusinessDays(n))?)
        }
        (Some(w), _) => match w.at {
            WarnAt::HoursBefore(h) => Some(due - Duration::hours(i64::from(h))),
            // Refused by validation for non-business-day timers.
            WarnAt::StartOfLastBusinessDay => None,
        },
    };
    // A warning that would land at or before the start is pointless; skip it.
    Ok((due, warning.filter(|w| *w > now)))
}

/// The reviewer a reassigning transition hands the claim to: `payload.to`, a name that
/// is not the current holder's.
fn reassign_target(
    t: &crate::workflow::definition::TransitionDef,
    cmd: &Fire,
    snapshot: Option<&Snapshot>,
) -> Result<String, Refusal> {
    let refuse =
        |reason: String| Refusal::GuardFailed { transition: t.name.clone(), guard: "reassigns".into(), reason };
    let to = cmd.payload.get("to").and_then(serde_json::Value::as_str).map(str::trim).unwrap_or("");
    if to.is_empty() {
        return Err(refuse("name the reviewer who takes the claim (`to`)".into()));
    }
    if snapshot.and_then(|s| s.assignee.as_deref()) == Some(to) {
        return Err(refuse(format!("the appeal is already held by {to:?}")));
    }
    Ok(to.to_string())
}

/// Decides a transition. `snapshot` is `None` when the command creates the appeal.
pub fn decide(
    wf: &Workflow,
    snapshot: Option<&Snapshot>,
    cmd: &Fire,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Decision, Refusal> {
    let t = wf.transition(&cmd.transition).ok_or_else(|| Refusal::UnknownTransition {
        transition: cmd.transition.clone(),
        known: join(wf.def.transitions.iter().map(|t| &t.name)),
    })?;
    let from = snapshot.map(|s| s.state.as_str());
    match snapshot {
        None if !t.from.is_empty() => {
            return Err(Refusal::WrongState {
                transition: t.name.clone(),
                state: "(no appeal yet)".into(),
                version: 0,
                allowed: join(&t.from),
            });
        }
        Some(s) => {
            if let Some(expected) = cmd.expect_version
                && expected != s.version
            {
                return Err(Refusal::StaleVersion { expected, current: s.version, state: s.state.clone() });
            }
            if !t.from.contains(&s.state) {
                return Err(Refusal::WrongState {
                    transition: t.name.clone(),
                    state: s.state.clone(),
                    version: s.version,
                    allowed: if t.from.is_empty() { "(creates an appeal)".into() } else { join(&t.from) },
                });
            }
        }
        None => {}
    }
    if !t.roles.contains(&actor.role) {
        return Err(Refusal::WrongRole { transition: t.name.clone(), role: actor.role, allowed: join(&t.roles) });
    }
    for &g in &t.guards {
        check_guard(g, snapshot, cmd, actor).map_err(|reason| Refusal::GuardFailed {
            transition: t.name.clone(),
            guard: g.to_string(),
            reason,
        })?;
    }

    // Four-eyes: a high-risk approval records the first approval and waits for a second.
    let mut payload = cmd.payload.clone();
    let first_approval = match (&t.second_approval, snapshot) {
        (Some(sa), Some(s)) => sa.rule_for(|f| s.facts.holds(f)).map(|rule| FirstApproval {
            by: actor.name.clone(),
            claimer: s.assignee.clone(),
            rule: rule.text(),
            at: now,
        }),
        _ => None,
    };
    // Cooling-off: a change that matches waits before it applies (after any second approval).
    let cooling_off = match (&first_approval, &t.cooling_off, snapshot) {
        (None, Some(c), Some(s)) => c.rule_for(|f| s.facts.holds(f)).map(|rule| (c.to.clone(), rule.text())),
        _ => None,
    };
    // The one-time code a stop quotes is spent: it is not kept in the history.
    if t.guards.contains(&Guard::StopCode)
        && let Some(p) = payload.as_object_mut()
    {
        p.remove("code");
    }
    // The transition's own effects belong to the approval: not run while it waits.
    let own_effects: &[EffectDef] = if first_approval.is_some() { &[] } else { &t.effects };
    let to = match (&first_approval, &t.second_approval) {
        (Some(first), Some(sa)) => {
            if !payload.is_object() {
                payload = serde_json::json!({});
            }
            payload["second_approval"] = serde_json::json!({ "rule": first.rule, "claimer": first.claimer });
            sa.to.clone()
        }
        _ => match &cooling_off {
            Some((to, rule)) => {
                if !payload.is_object() {
                    payload = serde_json::json!({});
                }
                payload["cooling_off"] = serde_json::json!({ "rule": rule });
                to.clone()
            }
            None => t.to.clone(),
        },
    };
    let target = wf.state(&to).expect("validated: transitions name known states");
    let assignee = match snapshot {
        _ if t.reassigns => Some(reassign_target(t, cmd, snapshot)?),
        // A transition that stays in its state (e.g. linking a document) keeps the claim.
        Some(s) if s.state == to => s.assignee.clone(),
        _ if target.held => Some(actor.name.clone()),
        _ => None,
    };

    let runs_in = |timer: &TimerDef, state: Option<&str>| state.is_some_and(|s| timer.states.iter().any(|x| x == s));
    let mut arm = Vec::new();
    let mut cancel = Vec::new();
    for timer in &wf.def.timers {
        let before = runs_in(timer, from);
        let after = runs_in(timer, Some(&to));
        let restart = before && after && t.restart_timers.contains(&timer.name);
        if (before && !after) || restart {
            cancel.push(timer.name.clone());
            if timer.warning.is_some() {
                cancel.push(timer.warning_name());
            }
        }
        if (after && !before) || restart {
            let (due_at, warning) = timer_due(wf, timer, now)?;
            arm.push(TimerArm { name: timer.name.clone(), due_at });
            if let Some(w) = warning {
                arm.push(TimerArm { name: timer.warning_name(), due_at: w });
            }
        }
    }

    Ok(Decision {
        transition: t.name.clone(),
        from: from.map(str::to_string),
        to: to.clone(),
        outcome: t.outcome.clone(),
        assignee,
        reasons: cmd.reasons.iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect(),
        payload,
        arm,
        cancel,
        // On-enter effects run when the state is entered, not on a self-loop.
        effects: if from == Some(to.as_str()) { vec![] } else { target.on_enter.clone() }
            .into_iter()
            .chain(own_effects.iter().cloned())
            .collect(),
        first_approval,
        cooling_off: cooling_off.map(|(_, rule)| rule),
        disputes: t.disputes,
        stop_code: None,
    })
}

/// Where a due timer row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerPart {
    Main,
    Warning,
}

/// Splits a stored timer name into its definition and part.
pub fn timer_part<'w>(wf: &'w Workflow, name: &str) -> Option<(&'w TimerDef, TimerPart)> {
    match name.strip_suffix(".warning") {
        Some(base) => wf.timer(base).filter(|t| t.warning.is_some()).map(|t| (t, TimerPart::Warning)),
        None => wf.timer(name).map(|t| (t, TimerPart::Main)),
    }
}

/// Why a due timer does nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerSkip {
    #[error("timer {0:?} is not in this workflow's definition")]
    Unknown(String),
    #[error("the appeal is in {state:?}, where timer {timer:?} does not run")]
    NotRunning { timer: String, state: String },
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Decides what a due timer does: a transition fired as `system`, or an event that
/// leaves the state unchanged. Re-checks that the timer still runs in the appeal's
/// state, so a timer that outlived its state never acts.
pub fn decide_timer(
    wf: &Workflow,
    snapshot: &Snapshot,
    timer_name: &str,
    now: DateTime<Utc>,
) -> Result<Decision, TimerSkip> {
    let (def, part) = timer_part(wf, timer_name).ok_or_else(|| TimerSkip::Unknown(timer_name.to_string()))?;
    if !def.states.contains(&snapshot.state) {
        return Err(TimerSkip::NotRunning { timer: timer_name.to_string(), state: snapshot.state.clone() });
    }
    let event_only = |event: &str, effects: &[EffectDef]| Decision {
        transition: event.to_string(),
        from: Some(snapshot.state.clone()),
        to: snapshot.state.clone(),
        outcome: snapshot.outcome.clone(),
        assignee: snapshot.assignee.clone(),
        reasons: vec![],
        payload: serde_json::json!({ "timer": timer_name }),
        arm: vec![],
        cancel: vec![],
        effects: effects.to_vec(),
        first_approval: None,
        cooling_off: None,
        disputes: false,
        stop_code: None,
    };
    match part {
        TimerPart::Warning => {
            let w = def.warning.as_ref().expect("timer_part checked the warning exists");
            Ok(event_only(&w.event, &w.effects))
        }
        TimerPart::Main => match (&def.fires.transition, &def.fires.event) {
            (Some(transition), _) => {
                let mut fire = Fire::new(transition.clone());
                fire.payload = serde_json::json!({ "timer": timer_name });
                let mut d = decide(wf, Some(snapshot), &fire, &Actor::system(), now)?;
                d.effects.extend(def.fires.effects.iter().cloned());
                // The firing timer itself is marked fired, not cancelled.
                d.cancel.retain(|n| n != timer_name);
                Ok(d)
            }
            (None, Some(event)) => Ok(event_only(event, &def.fires.effects)),
            (None, None) => unreachable!("validation requires a transition or an event"),
        },
    }
}
