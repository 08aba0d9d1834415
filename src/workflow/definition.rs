//! Workflow definitions as data: the types `workflows/<name>/workflow.toml` deserialises
//! into, and the loader that validates a definition before anything runs on it. Every
//! problem names the file and the entry at fault, and all problems are reported at once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::domain::Role;

/// Guards the engine knows how to evaluate (see `workflow::decide`).
pub const KNOWN_GUARDS: &[&str] = &["holds_claim", "has_reasons", "rejection_reasons", "entity_change_linked"];

/// Effects the engine knows how to enqueue.
pub const KNOWN_EFFECTS: &[&str] = &["notify", "post_approval_actions"];

/// Post-approval actions the account seam knows how to apply (or, for `manual_task`,
/// a reviewer marks done).
pub const KNOWN_ACTIONS: &[&str] = &[
    "rotate_secure_phone",
    "detach_mfa",
    "clear_security_questions",
    "clear_ip_logon_mask",
    "change_verified_entity",
    "manual_task",
];

/// Who a `notify` effect is addressed to.
pub const KNOWN_RECIPIENTS: &[&str] = &["applicant", "leads", "security_contacts"];

/// Roles that stand for people at the appeal desk (who can be alerted and act).
const STAFF: [Role; 3] = [Role::Reviewer, Role::Lead, Role::Admin];

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
    pub name: String,
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectDef {
    pub effect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
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

/// The transitions appealflow's own code fires by role rather than by name, resolved and
/// checked when the workflow loads (a definition without one is refused).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bindings {
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
    pub guards: Vec<String>,
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
        let def: WorkflowFile = toml::from_str(&text).map_err(|e| {
            let entry = match e.span() {
                Some(span) => {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!("line {line}")
                }
                None => "file".to_string(),
            };
            single(&entry, e.message().to_string())
        })?;
        let templates = template_names(&dir.join("templates"));
        let calendar = Calendar::load(calendars_dir, &def.workflow.calendar);
        let mut problems = validate(&def, &templates);
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

/// Template names present in a templates directory: `appeal_received.sms.en.hbs`
/// provides the template `appeal_received`.
pub fn template_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.ends_with(".hbs").then(|| name.split('.').next().map(str::to_string))?
        })
        .collect()
}

/// Checks a parsed definition; returns every problem found (empty when valid).
pub fn validate(def: &WorkflowFile, templates: &BTreeSet<String>) -> Vec<DefinitionProblem> {
    let mut out = Vec::new();
    let mut push = |entry: String, problem: String| {
        out.push(DefinitionProblem { file: PathBuf::new(), entry, problem });
    };
    let state_entry = |s: &StateDef| format!("states.{}", s.name);
    let transition_entry = |t: &TransitionDef| format!("transitions.{}", t.name);
    let timer_entry = |t: &TimerDef| format!("timers.{}", t.name);

    // Duplicate names.
    let mut seen = BTreeSet::new();
    for s in &def.states {
        if !seen.insert(s.name.as_str()) {
            push(state_entry(s), "duplicate state name".into());
        }
    }
    let mut seen = BTreeSet::new();
    for t in &def.transitions {
        if !seen.insert(t.name.as_str()) {
            push(transition_entry(t), "duplicate transition name".into());
        }
    }
    let mut seen = BTreeSet::new();
    for t in &def.timers {
        if !seen.insert(t.name.as_str()) {
            push(timer_entry(t), "duplicate timer name".into());
        }
    }

    let states: BTreeMap<&str, &StateDef> = def.states.iter().map(|s| (s.name.as_str(), s)).collect();
    let transitions: BTreeMap<&str, &TransitionDef> = def.transitions.iter().map(|t| (t.name.as_str(), t)).collect();
    let known_states = || states.keys().copied().collect::<Vec<_>>().join(", ");

    // `issued_in`: the states the appeal is in when the effects are planned (empty when
    // that is not one state set, e.g. an action's after-effects).
    let check_effects =
        |entry: String, effects: &[EffectDef], issued_in: &[&str], push: &mut dyn FnMut(String, String)| {
            for e in effects {
                if !KNOWN_EFFECTS.contains(&e.effect.as_str()) {
                    push(entry.clone(), format!("unknown effect {:?} (known: {})", e.effect, KNOWN_EFFECTS.join(", ")));
                }
                if e.effect != "notify"
                    && (e.fallback || e.delivered.is_some() || e.undeliverable.is_some() || e.deadline.is_some())
                {
                    push(
                        entry.clone(),
                        format!(
                            "only a notify effect takes fallback, delivered, undeliverable or deadline (not {:?})",
                            e.effect
                        ),
                    );
                }
                if let Some(timer) = &e.deadline
                    && !def.timers.iter().any(|t| &t.name == timer)
                {
                    push(entry.clone(), format!("`deadline`: unknown timer {timer:?}"));
                }
                for (key, name) in [("delivered", &e.delivered), ("undeliverable", &e.undeliverable)] {
                    let Some(name) = name else { continue };
                    match transitions.get(name.as_str()) {
                        None => push(entry.clone(), format!("`{key}`: unknown transition {name:?}")),
                        Some(t) => {
                            if !t.roles.contains(&Role::System) {
                                push(entry.clone(), format!("`{key}`: {name:?} may not be fired by the `system` role"));
                            }
                            for s in issued_in {
                                if !t.from.iter().any(|f| f == s) {
                                    push(
                                        entry.clone(),
                                        format!("`{key}`: {name:?} does not fire from {s:?}, where the notice is sent"),
                                    );
                                }
                            }
                        }
                    }
                }
                if e.effect == "notify" {
                    match &e.template {
                        None => push(entry.clone(), "effect \"notify\" needs a template".into()),
                        Some(t) if !templates.contains(t) => {
                            push(entry.clone(), format!("unknown template {t:?}: no templates/{t}.*.hbs file"))
                        }
                        Some(_) => {}
                    }
                    match &e.to {
                        None => push(entry.clone(), "effect \"notify\" needs a recipient `to`".into()),
                        Some(to) if !KNOWN_RECIPIENTS.contains(&to.as_str()) => push(
                            entry.clone(),
                            format!("unknown recipient {to:?} (known: {})", KNOWN_RECIPIENTS.join(", ")),
                        ),
                        Some(_) => {}
                    }
                }
            }
        };

    for s in &def.states {
        if s.terminal && s.outcomes.is_empty() {
            push(state_entry(s), "a terminal state must list its outcomes".into());
        }
        if !s.terminal && !s.outcomes.is_empty() {
            push(state_entry(s), "only a terminal state has outcomes".into());
        }
        check_effects(state_entry(s), &s.on_enter, &[s.name.as_str()], &mut push);
    }

    let creations: Vec<&TransitionDef> = def.transitions.iter().filter(|t| t.from.is_empty()).collect();
    if creations.len() != 1 {
        push(
            "transitions".into(),
            format!("exactly one transition must create the appeal (have no `from`); found {}", creations.len()),
        );
    }

    for t in &def.transitions {
        for f in &t.from {
            match states.get(f.as_str()) {
                None => push(transition_entry(t), format!("unknown state {f:?} in `from` (known: {})", known_states())),
                Some(s) if s.terminal => push(
                    transition_entry(t),
                    format!("leaves terminal state {f:?}, which has no way out by definition"),
                ),
                Some(_) => {}
            }
        }
        match states.get(t.to.as_str()) {
            None => push(transition_entry(t), format!("unknown state {:?} in `to` (known: {})", t.to, known_states())),
            Some(target) => match (&t.outcome, target.terminal) {
                (None, true) => {
                    push(transition_entry(t), format!("enters terminal state {:?} and must name an `outcome`", t.to))
                }
                (Some(o), true) if !target.outcomes.contains(o) => push(
                    transition_entry(t),
                    format!("outcome {o:?} is not one of {:?}'s outcomes ({})", t.to, target.outcomes.join(", ")),
                ),
                (Some(_), false) => push(transition_entry(t), format!("has an outcome but {:?} is not terminal", t.to)),
                _ => {}
            },
        }
        if t.roles.is_empty() {
            push(transition_entry(t), "no role may fire it: list at least one role".into());
        }
        check_effects(transition_entry(t), &t.effects, &[t.to.as_str()], &mut push);
        for g in &t.guards {
            if !KNOWN_GUARDS.contains(&g.as_str()) {
                push(transition_entry(t), format!("unknown guard {g:?} (known: {})", KNOWN_GUARDS.join(", ")));
            }
        }
        if t.reassigns && states.get(t.to.as_str()).is_some_and(|s| !s.held) {
            push(transition_entry(t), format!("`reassigns` needs a held target state, and {:?} is not held", t.to));
        }
        for name in &t.restart_timers {
            match def.timers.iter().find(|timer| &timer.name == name) {
                None => push(transition_entry(t), format!("unknown timer {name:?} in `restart_timers`")),
                Some(timer) => {
                    let runs = |s: &String| timer.states.contains(s);
                    if !runs(&t.to) || !t.from.iter().any(runs) {
                        push(
                            transition_entry(t),
                            format!(
                                "`restart_timers`: timer {name:?} must run in {:?} and in a `from` state \
                                 (it runs in: {})",
                                t.to,
                                timer.states.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }

    for timer in &def.timers {
        if timer.states.is_empty() {
            push(timer_entry(timer), "a timer must run in at least one state".into());
        }
        for s in &timer.states {
            match states.get(s.as_str()) {
                None => push(timer_entry(timer), format!("unknown state {s:?} (known: {})", known_states())),
                Some(st) if st.terminal => push(timer_entry(timer), format!("cannot run in terminal state {s:?}")),
                Some(_) => {}
            }
        }
        match (&timer.fires.transition, &timer.fires.event) {
            (Some(_), Some(_)) | (None, None) => {
                push(timer_entry(timer), "`fires` needs exactly one of `transition` or `event`".into())
            }
            (Some(name), None) => match transitions.get(name.as_str()) {
                None => push(timer_entry(timer), format!("unknown transition {name:?}")),
                Some(tr) => {
                    for s in &timer.states {
                        if !tr.from.contains(s) {
                            push(
                                timer_entry(timer),
                                format!("fires {name:?}, which does not leave {s:?}, a state the timer runs in"),
                            );
                        }
                    }
                    if timer.states.contains(&tr.to) {
                        push(timer_entry(timer), format!("fires {name:?}, which stays among the timer's own states"));
                    }
                    if tr.guards.iter().any(|g| g == "has_reasons" || g == "rejection_reasons") {
                        push(
                            timer_entry(timer),
                            format!(
                                "fires {name:?}, whose reasons guard a timer (which gives no reasons) can never pass"
                            ),
                        );
                    }
                    if !tr.roles.contains(&Role::System) {
                        push(timer_entry(timer), format!("fires {name:?}, which the `system` role may not fire"));
                    }
                }
            },
            (None, Some(_)) => {}
        }
        let timer_states: Vec<&str> = timer.states.iter().map(String::as_str).collect();
        let fired_in: Vec<&str> = match timer.fires.transition.as_deref().and_then(|n| transitions.get(n)) {
            Some(t) => vec![t.to.as_str()],
            None => timer_states.clone(),
        };
        check_effects(timer_entry(timer), &timer.fires.effects, &fired_in, &mut push);
        if let Some(w) = &timer.warning {
            if w.at == WarnAt::StartOfLastBusinessDay && !matches!(timer.after, Span::BusinessDays(_)) {
                push(timer_entry(timer), "warning.at = start_of_last_business_day needs a business_days timer".into());
            }
            check_effects(timer_entry(timer), &w.effects, &timer_states, &mut push);
        }
    }

    let mut seen = BTreeSet::new();
    for a in &def.actions {
        let entry = format!("actions.{}", a.name);
        if !seen.insert(a.name.as_str()) {
            push(entry.clone(), "duplicate action name".into());
        }
        if !KNOWN_ACTIONS.contains(&a.name.as_str()) {
            push(entry.clone(), format!("unknown action {:?} (known: {})", a.name, KNOWN_ACTIONS.join(", ")));
        }
        if a.items.is_empty() && a.when.is_none() {
            push(entry.clone(), "selects no appeal: give `items` or `when`".into());
        }
        if (a.name == "manual_task") != a.manual {
            push(entry.clone(), "manual_task, and only it, is done by hand (`manual = true`)".into());
        }
        check_effects(entry, &a.after, &[], &mut push);
    }

    // Reachability from the creation transition's target.
    if let Some(start) = creations.first() {
        let mut reached = BTreeSet::new();
        let mut queue = VecDeque::from([start.to.as_str()]);
        while let Some(s) = queue.pop_front() {
            if !reached.insert(s) {
                continue;
            }
            for t in &def.transitions {
                if t.from.iter().any(|f| f == s) {
                    queue.push_back(t.to.as_str());
                }
            }
        }
        for s in &def.states {
            if !reached.contains(s.name.as_str()) {
                push(state_entry(s), "cannot be reached from the state appeals are created in".into());
            }
        }
    }

    // Every state can still reach an end: no cycle of states that never closes.
    let terminals: BTreeSet<&str> = def.states.iter().filter(|s| s.terminal).map(|s| s.name.as_str()).collect();
    let mut can_end = terminals.clone();
    loop {
        let before = can_end.len();
        for t in &def.transitions {
            if can_end.contains(t.to.as_str()) {
                can_end.extend(t.from.iter().map(String::as_str));
            }
        }
        if can_end.len() == before {
            break;
        }
    }
    for s in &def.states {
        let has_exit = def.transitions.iter().any(|t| t.from.contains(&s.name));
        if !s.terminal && has_exit && !can_end.contains(s.name.as_str()) && states.contains_key(s.name.as_str()) {
            push(state_entry(s), "no sequence of transitions from it reaches a terminal state".into());
        }
    }

    // A way out of every non-terminal state.
    for s in &def.states {
        if !s.terminal && !def.transitions.iter().any(|t| t.from.contains(&s.name)) {
            push(state_entry(s), "not terminal, yet no transition leaves it".into());
        }
    }

    // No appeal can be stranded: every non-terminal state has a way out that does not
    // depend on an external system succeeding — a timer that moves the appeal on, or a
    // transition staff may fire while a timer alerts the leads to the appeal in that state.
    // (A state no transition leaves at all is reported above.)
    let exits = |s: &StateDef| def.transitions.iter().any(|t| t.from.contains(&s.name) && t.to != s.name);
    for s in def.states.iter().filter(|s| !s.terminal && exits(s)) {
        let running: Vec<&TimerDef> = def.timers.iter().filter(|t| t.states.contains(&s.name)).collect();
        let timer_way_out = running
            .iter()
            .any(|t| t.fires.transition.as_deref().and_then(|n| transitions.get(n)).is_some_and(|tr| tr.to != s.name));
        let alerts_leads =
            |effects: &[EffectDef]| effects.iter().any(|e| e.effect == "notify" && e.to.as_deref() == Some("leads"));
        let alerted = running
            .iter()
            .any(|t| alerts_leads(&t.fires.effects) || t.warning.as_ref().is_some_and(|w| alerts_leads(&w.effects)));
        let staff_way_out = def
            .transitions
            .iter()
            .any(|t| t.from.contains(&s.name) && t.to != s.name && t.roles.iter().any(|r| STAFF.contains(r)));
        if !(timer_way_out || (staff_way_out && alerted)) {
            push(
                state_entry(s),
                "an appeal could be stranded here: no timer moves it on, and no transition staff may fire \
                 out of it while a timer alerts the leads (notify `leads`)"
                    .into(),
            );
        }
    }

    // The transitions appealflow fires by role exist and may be fired as it fires them.
    let b = &def.bindings;
    for (binding, name) in [
        ("supersede", &b.supersede),
        ("screening", &b.screening),
        ("completion", &b.completion),
        ("action_succeeded", &b.action_succeeded),
        ("action_failed", &b.action_failed),
    ] {
        let entry = format!("bindings.{binding}");
        let Some(t) = transitions.get(name.as_str()) else {
            push(entry, format!("unknown transition {name:?}"));
            continue;
        };
        if !t.roles.contains(&Role::System) {
            push(entry.clone(), format!("{name:?} may not be fired by the `system` role"));
        }
        if t.from.is_empty() {
            push(entry.clone(), format!("{name:?} creates an appeal; it must fire on one"));
        }
        let stays = t.from.iter().all(|f| *f == t.to);
        match binding {
            "action_succeeded" | "action_failed" if !stays => {
                push(entry, format!("{name:?} must leave the appeal in its state (from = [{:?}])", t.to))
            }
            "supersede" | "screening" | "completion" if stays => {
                push(entry, format!("{name:?} must move the appeal to another state"))
            }
            _ => {}
        }
    }
    out
}
