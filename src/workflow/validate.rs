//! Validation of a workflow definition: names Rust does not implement, the structure
//! (states, transitions, timers, effects, actions), that no appeal can be stranded, and
//! the bindings. Every problem names the file and the entry at fault; all are reported.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use super::definition::*;
use super::names::*;
use crate::domain::Role;

mod bindings;
mod cooling_off;
mod four_eyes;

use bindings::check_bindings;
use cooling_off::check_cooling_off;
use four_eyes::check_four_eyes;

/// Roles that stand for people at the appeal desk (who can be alerted and act).
const STAFF: [Role; 3] = [Role::Reviewer, Role::Lead, Role::Admin];

/// Finds the guards, effects, recipients and actions no Rust code implements in a parsed
/// definition, and removes them (an effect or action with an unknown name goes whole), so
/// the rest can be parsed and checked. One problem per unknown name, naming its entry.
pub(super) fn unknown_names(def: &mut toml::Table) -> Vec<DefinitionProblem> {
    use toml::Value;
    let mut out = Vec::new();
    let mut push = |entry: &str, problem: String| {
        out.push(DefinitionProblem { file: PathBuf::new(), entry: entry.to_string(), problem });
    };
    fn name_of(entry: &toml::Table) -> String {
        entry.get("name").and_then(Value::as_str).unwrap_or("?").to_string()
    }
    fn unknown<T: std::str::FromStr<Err = UnknownName>>(value: Option<&Value>) -> Option<UnknownName> {
        value.and_then(Value::as_str).and_then(|s| s.parse::<T>().err())
    }
    /// Drops the effects of `list` that name an unknown effect or recipient.
    fn effects(entry: &str, list: Option<&mut Value>, push: &mut dyn FnMut(&str, String)) {
        let Some(list) = list.and_then(Value::as_array_mut) else { return };
        list.retain(|e| {
            let Some(e) = e.as_table() else { return true };
            let problems: Vec<UnknownName> =
                [unknown::<EffectKind>(e.get("effect")), unknown::<Recipient>(e.get("to"))]
                    .into_iter()
                    .flatten()
                    .collect();
            for p in &problems {
                push(entry, p.to_string());
            }
            problems.is_empty()
        });
    }
    if let Some(states) = def.get_mut("states").and_then(Value::as_array_mut) {
        for s in states.iter_mut().filter_map(Value::as_table_mut) {
            let entry = format!("states.{}", name_of(s));
            effects(&entry, s.get_mut("on_enter"), &mut push);
        }
    }
    if let Some(transitions) = def.get_mut("transitions").and_then(Value::as_array_mut) {
        for t in transitions.iter_mut().filter_map(Value::as_table_mut) {
            let entry = format!("transitions.{}", name_of(t));
            if let Some(guards) = t.get_mut("guards").and_then(Value::as_array_mut) {
                guards.retain(|g| match unknown::<Guard>(Some(g)) {
                    Some(p) => {
                        push(&entry, p.to_string());
                        false
                    }
                    None => true,
                });
            }
            effects(&entry, t.get_mut("effects"), &mut push);
            for route in ["second_approval", "cooling_off"] {
                let rules = t.get_mut(route).and_then(|r| r.get_mut("when")).and_then(Value::as_array_mut);
                for rule in rules.into_iter().flatten() {
                    let Some(all) = rule.get_mut("all").and_then(Value::as_array_mut) else { continue };
                    all.retain(|f| match unknown::<RiskFact>(Some(f)) {
                        Some(p) => {
                            push(&entry, p.to_string());
                            false
                        }
                        None => true,
                    });
                }
            }
        }
    }
    if let Some(timers) = def.get_mut("timers").and_then(Value::as_array_mut) {
        for t in timers.iter_mut().filter_map(Value::as_table_mut) {
            let entry = format!("timers.{}", name_of(t));
            for part in ["fires", "warning"] {
                let list = t.get_mut(part).and_then(Value::as_table_mut).and_then(|p| p.get_mut("effects"));
                effects(&entry, list, &mut push);
            }
        }
    }
    if let Some(actions) = def.get_mut("actions").and_then(Value::as_array_mut) {
        actions.retain_mut(|a| {
            let Some(a) = a.as_table_mut() else { return true };
            let entry = format!("actions.{}", name_of(a));
            effects(&entry, a.get_mut("after"), &mut push);
            match unknown::<ActionKind>(a.get("name")) {
                Some(p) => {
                    push(&entry, p.to_string());
                    false
                }
                None => true,
            }
        });
    }
    out
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
                if e.effect != EffectKind::Notify
                    && (e.fallback || e.delivered.is_some() || e.undeliverable.is_some() || e.deadline.is_some())
                {
                    push(
                        entry.clone(),
                        format!(
                            "only a notify effect takes fallback, delivered, undeliverable or deadline (not {:?})",
                            e.effect.as_str()
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
                match e.effect {
                    EffectKind::PostApprovalActions => {}
                    EffectKind::Notify => {
                        match &e.template {
                            None => push(entry.clone(), "effect \"notify\" needs a template".into()),
                            Some(t) if !templates.contains(t) => {
                                push(entry.clone(), format!("unknown template {t:?}: no templates/{t}.*.hbs file"))
                            }
                            Some(_) => {}
                        }
                        match e.to {
                            None => push(entry.clone(), "effect \"notify\" needs a recipient `to`".into()),
                            Some(Recipient::Applicant | Recipient::Leads | Recipient::SecurityContacts) => {}
                        }
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
                    if tr.guards.iter().any(|g| g.needs_reasons()) {
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
        if !seen.insert(a.name) {
            push(entry.clone(), "duplicate action name".into());
        }
        if a.items.is_empty() && a.when.is_none() {
            push(entry.clone(), "selects no appeal: give `items` or `when`".into());
        }
        if a.name.is_manual() != a.manual {
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
                    queue.extend(t.risk_routes().map(|(_, r)| r.to.as_str()));
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
        let alerts_leads = |effects: &[EffectDef]| {
            effects.iter().any(|e| e.effect == EffectKind::Notify && e.to == Some(Recipient::Leads))
        };
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

    check_bindings(def, &states, &transitions, templates, &mut push);
    check_four_eyes(def, &states, &transitions, &mut push);
    check_cooling_off(def, &states, &transitions, &mut push);
    out
}
