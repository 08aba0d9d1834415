//! Cooling-off checked: a transition's `cooling_off` names a state an appeal can wait
//! in, a timer there moves it on to where the transition was headed, only the route
//! enters it (it records the pending change and its stop code), and the
//! `bindings.stop_change` transition stops it with the `stop_code` guard.

use super::*;

pub(super) fn check_cooling_off(
    def: &WorkflowFile,
    states: &BTreeMap<&str, &StateDef>,
    transitions: &BTreeMap<&str, &TransitionDef>,
    push: &mut dyn FnMut(String, String),
) {
    let entry = |t: &TransitionDef| format!("transitions.{}", t.name);
    // Each cooling-off state, with the state the change takes effect in.
    let mut cooling: BTreeMap<&str, &str> = BTreeMap::new();
    for t in &def.transitions {
        let Some(c) = &t.cooling_off else { continue };
        super::four_eyes::check_route(t, "cooling_off", c, states, &mut cooling, push);
        if def.transitions.iter().any(|o| o.second_approval.as_ref().is_some_and(|sa| sa.to == c.to)) {
            push(entry(t), format!("`cooling_off.to`: {:?} is also where approvals wait for a second approval", c.to));
        }
        // Its own effects would run before the change applies: nothing of it may.
        if !t.effects.is_empty() {
            push(entry(t), "a transition with a `cooling_off` may have no `effects` of its own".into());
        }
        // A change that needs a second approval cools off after it: the confirmation
        // carries the same cooling-off.
        if t.second_approval.is_some() {
            let confirm = def.bindings.confirm_approval.as_deref().and_then(|n| transitions.get(n));
            if confirm.is_some_and(|ct| ct.cooling_off.as_ref().is_none_or(|cc| cc.to != c.to)) {
                push(
                    "bindings.confirm_approval".into(),
                    format!(
                        "must carry `cooling_off` into {:?}, as {:?} does, or a second approval skips it",
                        c.to, t.name
                    ),
                );
            }
        }
    }

    // A timer in each cooling-off state moves the appeal on to where the change was headed;
    // entering it sends the "not you?" notice to the account's security contacts.
    for (&state, &target) in &cooling {
        let notifies = states.get(state).is_some_and(|s| {
            s.on_enter.iter().any(|e| e.effect == EffectKind::Notify && e.to == Some(Recipient::SecurityContacts))
        });
        if !notifies {
            push(
                format!("states.{state}"),
                "a cooling-off state must notify `security_contacts` on entry (the \"not you?\" notice with the stop code)"
                    .into(),
            );
        }
        let moves_on = def.timers.iter().any(|timer| {
            timer.states.iter().any(|s| s == state)
                && timer
                    .fires
                    .transition
                    .as_deref()
                    .and_then(|name| transitions.get(name))
                    .is_some_and(|t| t.to == target && t.from.iter().any(|f| f == state))
        });
        if !moves_on {
            push(
                format!("states.{state}"),
                format!(
                    "a cooling-off state needs a timer that fires a transition into {target:?}, where the change takes effect"
                ),
            );
        }
    }

    let at = "bindings.stop_change".to_string();
    match (&def.bindings.stop_change, cooling.is_empty()) {
        (None, false) => push(at, "required: a transition has a `cooling_off`".into()),
        (Some(_), true) => push(at, "no transition has a `cooling_off` for it to stop".into()),
        (None, true) => {}
        (Some(name), false) => match transitions.get(name.as_str()) {
            None => push(at, format!("unknown transition {name:?}")),
            Some(t) => {
                if !t.guards.contains(&Guard::StopCode) {
                    push(at.clone(), format!("{name:?} must carry the `stop_code` guard"));
                }
                if cooling.values().any(|&target| target == t.to) {
                    push(
                        at.clone(),
                        format!("{name:?} must not enter {:?}, where the change it stops takes effect", t.to),
                    );
                }
                for state in cooling.keys().filter(|s| !t.from.iter().any(|f| f == *s)) {
                    push(
                        at.clone(),
                        format!("{name:?} must fire from {state:?}: a change waiting there could not be stopped"),
                    );
                }
                if !t.roles.contains(&Role::Applicant) {
                    push(
                        at.clone(),
                        format!("{name:?} must let the `applicant` role fire it (the account holder stops it)"),
                    );
                }
                if !t.disputes {
                    push(at, format!("{name:?} must flag the appeal disputed (`disputes = true`)"));
                }
            }
        },
    }

    for t in &def.transitions {
        // Only a cooling-off route enters a cooling-off state: it records the pending change.
        if cooling.contains_key(t.to.as_str()) {
            push(
                entry(t),
                format!("enters {:?}, where only a `cooling_off` may lead (it records the pending change)", t.to),
            );
        }
        let from_cooling = !t.from.is_empty() && t.from.iter().all(|f| cooling.contains_key(f.as_str()));
        if t.guards.contains(&Guard::StopCode) && !from_cooling {
            push(entry(t), "the `stop_code` guard needs a transition that fires only from cooling-off states".into());
        }
    }
}
