//! Workflow definitions as data: the types `workflows/<name>/workflow.toml` deserialises
//! into, and the loader that validates a definition before anything runs on it. Every
//! problem names the file and the entry at fault, and all problems are reported at once.
//!
//! Names Rust implements are enums ([`Guard`], [`EffectKind`], [`ActionKind`],
//! [`Recipient`]: serde snake_case, `as_str`/`Display`, `FromStr`); a definition naming
//! another is refused. Names Rust relies on are the definition's `[bindings]`, resolved
//! and checked at load, and read through the loaded [`Workflow`] — never spelled in code:
//!
//! - `wf.bindings()` → `&Bindings`, each field the bound name as a `String` (use as
//!   `&str`): transitions `submit`, `resubmit`, `claim`, `release`, `reassign`, `approve`,
//!   `reject`, `withdraw`, `link_entity_change`, `supersede`, `screening`, `completion`,
//!   `action_succeeded`, `action_failed`, `notice_delivered`, `notice_undeliverable`;
//!   states `window_state`, `closed_state`; timers `review_sla`, `window_timer`; template
//!   `rejection_notice`. E.g. `Fire::new(wf.bindings().claim.clone())`.
//! - `wf.review_sla()` / `wf.window_timer()` → `&TimerDef`; `wf.review_states()` →
//!   `&[String]` (the states the review SLA runs in: the review queue);
//!   `wf.window_expiry_outcome()` → `Option<&str>`; `wf.target(transition)` →
//!   `Option<&str>` (the state it enters); `wf.creation()` → `&TransitionDef`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::domain::Role;

pub use super::four_eyes::{RiskRoute, RiskRule};
pub use super::names::{ActionKind, EffectKind, Guard, Recipient, RiskFact, UnknownName};
use super::validate::unknown_names;
pub use super::validate::{template_names, validate};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowFile {
    pub workflow: WorkflowHeader,
    #[serde(default)]
    pub states: Vec<StateDef>,
    #[serde(default)]
    pub transitions: Vec<TransitionDef>,
    #[serde(default)]
    pub timers: Vec<TimerDef>,
    #[serde(default)]
    pub actions: Vec<ActionDef>,
    pub bindings: Bindings,
}

/// When an action follows an approval without being tied to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionWhen {
    /// The appeal ends with the secure phone changed (items 1-4, opted in, deregistered).
    ChangesSecurePhone,
    /// A deregistered enterprise's verified entity changes to the new company.
    EntityChange,
}

/// A post-approval account action and what selects it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionDef {
    pub name: ActionKind,
    #[serde(default)]
    pub description: String,
    /// Selected when the appeal asks for any of these items...
    #[serde(default)]
    pub items: Vec<crate::domain::AppealItem>,
    /// ...or when this holds.
    #[serde(default)]
    pub when: Option<ActionWhen>,
    /// Done by a reviewer by hand (`appeal task-done`), not through the account seam.
    #[serde(default)]
    pub manual: bool,
    /// Effects once the action has succeeded.
    #[serde(default)]
    pub after: Vec<EffectDef>,
}

/// What selects post-approval actions for one appeal.
#[derive(Debug, Clone, Default)]
pub struct ActionFacts {
    pub items: Vec<crate::domain::AppealItem>,
    pub changes_secure_phone: bool,
    pub entity_change: bool,
}

impl WorkflowFile {
    /// The actions an approved appeal needs, in definition order.
    pub fn actions_for(&self, facts: &ActionFacts) -> Vec<&ActionDef> {
        self.actions
            .iter()
            .filter(|a| {
                a.items.iter().any(|i| facts.items.contains(i))
                    || match a.when {
                        Some(ActionWhen::ChangesSecurePhone) => facts.changes_secure_phone,
                        Some(ActionWhen::EntityChange) => facts.entity_change,
                        None => false,
                    }
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowHeader {
    pub name: String,
    pub version: u32,
    #[serde(default)]
    pub description: String,
    /// Business calendar (a file in `workflows/calendars/`) the timers count on; its
    /// time zone is the workflow's time zone.
    pub calendar: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A terminal state ends the appeal; it must list the outcomes it may close with.
    #[serde(default)]
    pub terminal: bool,
    #[serde(default)]
    pub outcomes: Vec<String>,
    /// Entering a held state gives the firing actor a claim on the appeal; leaving it
    /// drops the claim.
    #[serde(default)]
    pub held: bool,
    #[serde(default)]
    pub on_enter: Vec<EffectDef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectDef {
    pub effect: EffectKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Recipient>,
    /// `notify`: deliver to the recipient's channels one at a time, in order (SMS, then
    /// email), until one succeeds, instead of to all of them at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
    /// `notify`: the transition fired (as `system`) when the notice reaches the recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<String>,
    /// `notify`: the transition fired when every channel failed for good (or there is
    /// none), so the appeal moves on without the notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undeliverable: Option<String>,
    /// `notify`: the timer whose due time the template shows as `{{deadline}}` (its armed
    /// instant, or — not armed yet — when it would fall due if it started now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

/// The names appealflow's own code relies on — transitions it fires, states and timers
/// it reads, a template it names — resolved and checked when the workflow loads: a
/// definition without one, or naming a transition, state, timer or template it does not
/// have, is refused. Code outside `workflow/` uses these (through
/// [`Workflow::bindings`]) and never spells a workflow name itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bindings {
    // ---- transitions
    /// Creates an appeal (the definition's one transition without `from`).
    pub submit: String,
    /// The applicant continues a rejected appeal within its window.
    pub resubmit: String,
    /// A reviewer takes an appeal from the queue.
    pub claim: String,
    /// The claim is given back and the appeal returns to the queue.
    pub release: String,
    /// A lead hands the appeal to a named reviewer.
    pub reassign: String,
    pub approve: String,
    /// A reviewer's rejection with reasons.
    pub reject: String,
    /// The applicant (or an admin) withdraws the appeal.
    pub withdraw: String,
    /// Links the entity-change ticket of a deregistered enterprise's appeal.
    pub link_entity_change: String,
    /// Closes an appeal waiting in its resubmission window when a new appeal for the
    /// same account is submitted.
    pub supersede: String,
    /// Screening's automatic rejection (an account that never completed identity
    /// verification), run on every submission and resubmission.
    pub screening: String,
    /// Closes an approved appeal once every post-approval action succeeded.
    pub completion: String,
    /// Records a post-approval action done (by the worker, or a reviewer for a manual task).
    pub action_succeeded: String,
    /// Records a post-approval action failed for good.
    pub action_failed: String,
    /// The rejection notice reached the applicant: the resubmission window opens.
    pub notice_delivered: String,
    /// No channel reached the applicant with the rejection notice.
    pub notice_undeliverable: String,
    /// Four-eyes (optional): a second staff member confirms a first approval that waits
    /// in a `second_approval` state...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_approval: Option<String>,
    /// ...or sends it back, with a reason, for review again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_back: Option<String>,
    /// Cooling-off (optional): the account holder stops a pending change with the
    /// one-time code from the "not you?" notice (the public stop-change route fires it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_change: Option<String>,
    // ---- states
    /// Where a rejected appeal waits for the applicant to continue it.
    pub window_state: String,
    /// The terminal state an appeal ends in.
    pub closed_state: String,
    // ---- timers
    /// The review SLA, running from receipt until a decision.
    pub review_sla: String,
    /// How long the resubmission window stays open.
    pub window_timer: String,
    // ---- templates
    /// The rejection notice sent to the applicant.
    pub rejection_notice: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionDef {
    pub name: String,
    /// States it may fire from; empty for the transition that creates an appeal.
    #[serde(default)]
    pub from: Vec<String>,
    pub to: String,
    pub roles: Vec<Role>,
    #[serde(default)]
    pub guards: Vec<Guard>,
    /// Required when `to` is terminal: the outcome the appeal closes with.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Effects of this transition itself (after the target state's on-enter effects).
    #[serde(default)]
    pub effects: Vec<EffectDef>,
    /// The claim passes to the reviewer the command names (`payload.to`) instead of
    /// staying with its holder or going to the actor; the target state must be held.
    #[serde(default)]
    pub reassigns: bool,
    /// Timers that start again when the transition leaves them running (from a state
    /// they run in to one they run in): e.g. a new holder gets a whole claim period.
    #[serde(default)]
    pub restart_timers: Vec<String>,
    /// Four-eyes: when one of its rules holds, the transition records a first approval
    /// and enters `second_approval.to` instead of `to`; a second, different staff member
    /// then confirms it (`bindings.confirm_approval`) or sends it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_approval: Option<RiskRoute>,
    /// Cooling-off: when one of its rules holds (and no second approval is asked for),
    /// the transition enters `cooling_off.to` instead of `to`. A "not you?" notice with
    /// a one-time stop code goes out from there; a timer moves the appeal on to `to`
    /// unless the account holder stops the change (`bindings.stop_change`) first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooling_off: Option<RiskRoute>,
    /// Firing it flags the appeal disputed (the `disputed` risk fact), for good.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disputes: bool,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Span {
    /// Ends at the end of the Nth working day after the day the timer starts.
    BusinessDays(u32),
    /// Ends at the end of the Nth calendar day after the day the timer starts.
    CalendarDays(u32),
    /// A plain duration.
    Hours(u32),
    Minutes(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum WarnAt {
    /// Local midnight that starts the last business day (business-day timers only).
    StartOfLastBusinessDay,
    HoursBefore(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerWarning {
    pub at: WarnAt,
    /// Name of the event recorded on the appeal when the warning fires.
    pub event: String,
    #[serde(default)]
    pub effects: Vec<EffectDef>,
}

/// What a timer does when it falls due: fire a transition (as `system`), or record an
/// event and run effects without changing state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerFires {
    #[serde(default)]
    pub transition: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub effects: Vec<EffectDef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerDef {
    pub name: String,
    /// The timer runs while the appeal is in any of these states: it is armed when the
    /// appeal enters the set from outside and cancelled when it leaves the set.
    pub states: Vec<String>,
    pub after: Span,
    pub fires: TimerFires,
    #[serde(default)]
    pub warning: Option<TimerWarning>,
    #[serde(default)]
    pub description: String,
}

impl TimerDef {
    pub fn warning_name(&self) -> String {
        format!("{}.warning", self.name)
    }
}

/// One problem found in a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionProblem {
    pub file: PathBuf,
    pub entry: String,
    pub problem: String,
}

impl fmt::Display for DefinitionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.entry, self.problem)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("workflow definition refused ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" },
    .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct DefinitionError(pub Vec<DefinitionProblem>);

/// A validated workflow with its calendar resolved: what the engine runs on.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub def: WorkflowFile,
    pub calendar: Calendar,
    pub dir: PathBuf,
    /// Template names found in `templates/` (file stems before the first '.').
    pub templates: BTreeSet<String>,
}

impl Workflow {
    pub fn name(&self) -> &str {
        &self.def.workflow.name
    }

    pub fn state(&self, name: &str) -> Option<&StateDef> {
        self.def.states.iter().find(|s| s.name == name)
    }

    pub fn transition(&self, name: &str) -> Option<&TransitionDef> {
        self.def.transitions.iter().find(|t| t.name == name)
    }

    pub fn timer(&self, name: &str) -> Option<&TimerDef> {
        self.def.timers.iter().find(|t| t.name == name)
    }

    /// The names appealflow's code relies on (transitions it fires, states and timers it
    /// reads, a template it names), each checked to exist when the workflow loaded.
    pub fn bindings(&self) -> &Bindings {
        &self.def.bindings
    }

    /// The state a transition enters.
    pub fn target(&self, transition: &str) -> Option<&str> {
        self.transition(transition).map(|t| t.to.as_str())
    }

    /// The review SLA timer (`bindings.review_sla`).
    pub fn review_sla(&self) -> &TimerDef {
        self.timer(&self.def.bindings.review_sla).expect("validation resolves bindings.review_sla")
    }

    /// The states an appeal may still be in (not terminal): what the queue may list.
    pub fn open_states(&self) -> Vec<&str> {
        self.def.states.iter().filter(|s| !s.terminal).map(|s| s.name.as_str()).collect()
    }

    /// The states the review SLA runs in: the review queue.
    pub fn review_states(&self) -> &[String] {
        &self.review_sla().states
    }

    /// The timer that closes the resubmission window (`bindings.window_timer`).
    pub fn window_timer(&self) -> &TimerDef {
        self.timer(&self.def.bindings.window_timer).expect("validation resolves bindings.window_timer")
    }

    /// The outcome an appeal closes with when its resubmission window runs out (the
    /// outcome of the transition the window timer fires).
    pub fn window_expiry_outcome(&self) -> Option<&str> {
        self.window_timer()
            .fires
            .transition
            .as_deref()
            .and_then(|t| self.transition(t))
            .and_then(|t| t.outcome.as_deref())
    }

    /// The transition that creates an appeal (the one with no `from`).
    pub fn creation(&self) -> &TransitionDef {
        self.def
            .transitions
            .iter()
            .find(|t| t.from.is_empty())
            .expect("validation guarantees exactly one creation transition")
    }

    /// Loads `dir/workflow.toml`, its templates, and its calendar from `calendars_dir`.
    pub fn load(dir: &Path, calendars_dir: &Path) -> Result<Workflow, DefinitionError> {
        let file = dir.join("workflow.toml");
        let single = |entry: &str, problem: String| {
            DefinitionError(vec![DefinitionProblem { file: file.clone(), entry: entry.to_string(), problem }])
        };
        let text = std::fs::read_to_string(&file).map_err(|e| single("file", format!("cannot read: {e}")))?;
        let at_line = |e: &toml::de::Error| match e.span() {
            Some(span) => {
                let line = text[..span.start].matches('\n').count() + 1;
                format!("line {line}")
            }
            None => "file".to_string(),
        };
        let (def, mut problems) = match toml::from_str::<WorkflowFile>(&text) {
            Ok(def) => (def, Vec::new()),
            Err(e) => {
                // A name no Rust code implements is a problem of its entry, reported with
                // every other problem: left out, the rest is parsed and checked.
                let mut value: toml::Table =
                    toml::from_str(&text).map_err(|e| single(&at_line(&e), e.message().into()))?;
                let unknown = unknown_names(&mut value);
                if unknown.is_empty() {
                    return Err(single(&at_line(&e), e.message().to_string()));
                }
                match WorkflowFile::deserialize(value) {
                    Ok(def) => (def, unknown),
                    Err(e) => {
                        let mut problems = unknown;
                        problems.push(DefinitionProblem {
                            file: PathBuf::new(),
                            entry: "file".into(),
                            problem: e.message().to_string(),
                        });
                        return Err(DefinitionError(
                            problems.into_iter().map(|p| DefinitionProblem { file: file.clone(), ..p }).collect(),
                        ));
                    }
                }
            }
        };
        let templates = template_names(&super::versions::templates_dir(dir));
        let calendar = Calendar::load(calendars_dir, &def.workflow.calendar);
        problems.extend(validate(&def, &templates));
        if let Err(e) = &calendar {
            problems.push(DefinitionProblem {
                file: file.clone(),
                entry: "workflow.calendar".into(),
                problem: e.to_string(),
            });
        }
        if !problems.is_empty() {
            for p in &mut problems {
                p.file = file.clone();
            }
            return Err(DefinitionError(problems));
        }
        Ok(Workflow { def, calendar: calendar.expect("checked above"), dir: dir.to_path_buf(), templates })
    }
}
