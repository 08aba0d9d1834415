//! Four-eyes approval checked: a transition's `second_approval` names a state that can
//! hold a first approval, the bindings name the transitions that confirm it or send it
//! back, and the `four_eyes` guard guards exactly those.

use super::*;

pub(super) fn check_four_eyes(
    def: &WorkflowFile,
    states: &BTreeMap<&str, &StateDef>,
    transitions: &BTreeMap<&str, &TransitionDef>,
    push: &mut dyn FnMut(String, String),
) {
    let entry = |t: &TransitionDef| format!("transitions.{}", t.name);
    // Each waiting state, with the state its confirmation must enter.
    let mut waiting: BTreeMap<&str, &str> = BTreeMap::new();
    for t in &def.transitions {
        if let Some(sa) = &t.second_approval {
            check_route(t, "second_approval", sa, states, &mut waiting, push);
        }
    }

    let b = &def.bindings;
    let bound = [("confirm_approval", &b.confirm_approval), ("send_back", &b.send_back)];
    for (binding, name) in bound {
        let at = format!("bindings.{binding}");
        match (name, waiting.is_empty()) {
            (None, false) => push(at, "required: a transition has a `second_approval`".into()),
            (Some(_), true) => push(at, "no transition has a `second_approval` for it to act on".into()),
            (None, true) => {}
            (Some(name), false) => match transitions.get(name.as_str()) {
                None => push(at, format!("unknown transition {name:?}")),
                Some(t) => {
                    if t.from.is_empty() || !t.from.iter().all(|f| waiting.contains_key(f.as_str())) {
                        push(
                            at.clone(),
                            format!("{name:?} must fire only from states that wait for a second approval"),
                        );
                    }
                    if !t.guards.contains(&Guard::FourEyes) {
                        push(at.clone(), format!("{name:?} must carry the `four_eyes` guard"));
                    }
                    if binding == "confirm_approval"
                        && t.from.iter().any(|f| waiting.get(f.as_str()) != Some(&t.to.as_str()))
                    {
                        push(at.clone(), format!("{name:?} must enter the state the first approval was headed for"));
                    }
                    if binding == "send_back" && !t.guards.iter().any(|g| g.needs_reasons()) {
                        push(at, format!("{name:?} must ask for a reason (a `has_reasons` guard)"));
                    }
                }
            },
        }
    }

    for t in &def.transitions {
        // Only a first approval enters a waiting state: the guard reads what it records.
        if waiting.contains_key(t.to.as_str()) {
            push(
                entry(t),
                format!("enters {:?}, where only a `second_approval` may lead (it records the first approval)", t.to),
            );
        }
        if t.guards.contains(&Guard::FourEyes) && t.roles.contains(&Role::Applicant) {
            push(entry(t), "the `four_eyes` guard is for staff: the applicant may not give a second approval".into());
        }
        let from_waiting = !t.from.is_empty() && t.from.iter().all(|f| waiting.contains_key(f.as_str()));
        if t.guards.contains(&Guard::FourEyes) && !from_waiting {
            push(
                entry(t),
                "the `four_eyes` guard needs a transition that fires only from states that wait for a second approval"
                    .into(),
            );
        }
        if t.guards.contains(&Guard::FourEyes) && t.roles.contains(&Role::System) {
            push(entry(t), "the `four_eyes` guard is for staff: `system` may not give a second approval".into());
        }
    }
}

/// A transition's risk route (`key`: `second_approval` or `cooling_off`) checked: its
/// state can hold an appeal that waits (known, neither terminal nor held, not where the
/// transition goes anyway), the transition fires on an appeal, and its rules are not
/// empty. Records in `routes` each route's state with the state its appeal was headed for.
pub(super) fn check_route<'d>(
    t: &'d TransitionDef,
    key: &str,
    route: &'d RiskRoute,
    states: &BTreeMap<&str, &StateDef>,
    routes: &mut BTreeMap<&'d str, &'d str>,
    push: &mut dyn FnMut(String, String),
) {
    let entry = format!("transitions.{}", t.name);
    match states.get(route.to.as_str()) {
        None => push(entry.clone(), format!("`{key}.to`: unknown state {:?}", route.to)),
        Some(s) if s.terminal || s.held => push(
            entry.clone(),
            format!("`{key}.to`: {:?} must be neither terminal nor held (nobody holds a claim on it)", s.name),
        ),
        Some(_) if route.to == t.to => {
            push(entry.clone(), format!("`{key}.to`: {:?} is where the transition goes anyway", route.to))
        }
        Some(_) => {
            if routes.insert(route.to.as_str(), t.to.as_str()).is_some_and(|other| other != t.to) {
                push(entry.clone(), format!("`{key}.to`: {:?} already holds appeals headed elsewhere", route.to));
            }
        }
    }
    if t.from.is_empty() {
        push(entry.clone(), format!("`{key}`: the transition that creates an appeal has nothing to hold"));
    }
    if route.when.is_empty() {
        push(entry.clone(), format!("`{key}.when`: list at least one rule"));
    }
    for (i, rule) in route.when.iter().enumerate() {
        if rule.all.is_empty() {
            push(entry.clone(), format!("`{key}.when[{i}].all`: list at least one fact"));
        }
    }
}
