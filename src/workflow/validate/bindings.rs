//! The bindings checked: the names appealflow's code relies on exist, and each can do what
//! the code uses it for.

use super::*;

/// The names appealflow's code relies on exist, and each can do what the code uses it for.
pub(super) fn check_bindings(
    def: &WorkflowFile,
    states: &BTreeMap<&str, &StateDef>,
    transitions: &BTreeMap<&str, &TransitionDef>,
    templates: &BTreeSet<String>,
    push: &mut dyn FnMut(String, String),
) {
    /// What the code does with a bound transition.
    #[derive(PartialEq)]
    enum Use {
        /// Creates an appeal.
        Creates,
        /// Fired on an appeal by whoever the definition lets.
        Fires,
        /// Fired by appealflow itself (as `system`), moving the appeal to another state.
        SystemMoves,
        /// Fired by appealflow itself, leaving the appeal in its state.
        SystemStays,
    }
    let b = &def.bindings;
    let entry = |binding: &str| format!("bindings.{binding}");
    for (binding, name, how) in [
        ("submit", &b.submit, Use::Creates),
        ("resubmit", &b.resubmit, Use::Fires),
        ("claim", &b.claim, Use::Fires),
        ("release", &b.release, Use::Fires),
        ("reassign", &b.reassign, Use::Fires),
        ("approve", &b.approve, Use::Fires),
        ("reject", &b.reject, Use::Fires),
        ("withdraw", &b.withdraw, Use::Fires),
        ("link_entity_change", &b.link_entity_change, Use::Fires),
        ("supersede", &b.supersede, Use::SystemMoves),
        ("screening", &b.screening, Use::SystemMoves),
        ("completion", &b.completion, Use::SystemMoves),
        ("notice_delivered", &b.notice_delivered, Use::SystemMoves),
        ("notice_undeliverable", &b.notice_undeliverable, Use::SystemMoves),
        ("action_succeeded", &b.action_succeeded, Use::SystemStays),
        ("action_failed", &b.action_failed, Use::SystemStays),
    ] {
        let Some(t) = transitions.get(name.as_str()) else {
            push(entry(binding), format!("unknown transition {name:?}"));
            continue;
        };
        // Without exactly one creation transition, that is the problem reported.
        let one_creation = def.transitions.iter().filter(|t| t.from.is_empty()).count() == 1;
        match (how == Use::Creates, t.from.is_empty()) {
            (true, false) if one_creation => {
                push(entry(binding), format!("{name:?} must create the appeal (have no `from`)"))
            }
            (false, true) => push(entry(binding), format!("{name:?} creates an appeal; it must fire on one")),
            _ => {}
        }
        let stays = t.from.iter().all(|f| *f == t.to);
        let by_system = matches!(how, Use::SystemMoves | Use::SystemStays);
        if by_system && !t.roles.contains(&Role::System) {
            push(entry(binding), format!("{name:?} may not be fired by the `system` role"));
        }
        match how {
            Use::Creates | Use::Fires => {}
            Use::SystemStays if !stays => {
                push(entry(binding), format!("{name:?} must leave the appeal in its state (from = [{:?}])", t.to))
            }
            Use::SystemMoves if stays && !t.from.is_empty() => {
                push(entry(binding), format!("{name:?} must move the appeal to another state"))
            }
            Use::SystemMoves | Use::SystemStays => {}
        }
    }

    let window = states.get(b.window_state.as_str());
    if window.is_none() {
        push(entry("window_state"), format!("unknown state {:?}", b.window_state));
    }
    if window.is_some_and(|s| s.terminal) {
        push(entry("window_state"), format!("{:?} is terminal: nothing can be resubmitted from it", b.window_state));
    }
    if window.is_some() && transitions.get(b.resubmit.as_str()).is_some_and(|t| !t.from.contains(&b.window_state)) {
        push(entry("resubmit"), format!("{:?} does not fire from {:?} (`window_state`)", b.resubmit, b.window_state));
    }
    match states.get(b.closed_state.as_str()) {
        None => push(entry("closed_state"), format!("unknown state {:?}", b.closed_state)),
        Some(s) if !s.terminal => push(entry("closed_state"), format!("{:?} is not terminal", b.closed_state)),
        Some(_) => {}
    }
    let timer = |name: &str| def.timers.iter().find(|t| t.name == name);
    if timer(&b.review_sla).is_none() {
        push(entry("review_sla"), format!("unknown timer {:?}", b.review_sla));
    }
    match timer(&b.window_timer) {
        None => push(entry("window_timer"), format!("unknown timer {:?}", b.window_timer)),
        Some(t) if window.is_some() && !t.states.contains(&b.window_state) => push(
            entry("window_timer"),
            format!("{:?} does not run in {:?} (`window_state`)", b.window_timer, b.window_state),
        ),
        Some(_) => {}
    }
    if !templates.contains(&b.rejection_notice) {
        push(
            entry("rejection_notice"),
            format!("unknown template {:?}: no templates/{}.*.hbs file", b.rejection_notice, b.rejection_notice),
        );
    }
}
