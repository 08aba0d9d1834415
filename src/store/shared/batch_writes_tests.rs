//! Which columns a part of a batch assigns (`appeals_update`): only what some change of
//! the part may move, so that SQLite rewrites no index entry it need not.

use super::*;
use crate::domain::Role;
use crate::store::{AppealWrite, NewEvent};
use crate::workflow::decide::TimerArm;

fn record(state: &str) -> AppealRecord {
    let at = chrono::Utc::now();
    AppealRecord {
        id: "a1".into(),
        ticket: TicketNumber::generate(),
        workflow: "account-appeal".into(),
        workflow_version: 1,
        state: state.into(),
        outcome: None,
        version: 3,
        assignee: None,
        account: "acct".into(),
        data: serde_json::json!({}),
        created_at: at,
        updated_at: at,
    }
}

/// The change a firing makes to `before`: to `state`, the SLA's timer fired.
fn firing(before: &AppealRecord, state: &str) -> AppealChange {
    AppealChange {
        appeal: AppealWrite {
            id: before.id.clone(),
            ticket: before.ticket.clone(),
            workflow: before.workflow.clone(),
            workflow_version: before.workflow_version,
            account: before.account.clone(),
            data: before.data.clone(),
            state: state.into(),
            outcome: before.outcome.clone(),
            assignee: before.assignee.clone(),
            data_changed: false,
            expected_version: Some(before.version),
        },
        event: NewEvent {
            transition: "sla_warning".into(),
            from: Some(before.state.clone()),
            to: state.into(),
            outcome: None,
            actor: "system".into(),
            role: Role::System,
            reasons: vec![],
            payload: serde_json::json!({}),
        },
        arm: vec![],
        cancel: vec![],
        fire_timer: Some(7),
        review_sla: Some("review_sla".into()),
    }
}

fn assigned(changes: &[AppealChange], before: &AppealRecord) -> Vec<&'static str> {
    let claimed = HashMap::from([(before.id.as_str(), before)]);
    let sql = appeals_update(changes.iter(), &claimed);
    [
        "version",
        "updated_at",
        "state",
        "outcome",
        "assignee",
        "data",
        "items",
        "scenario",
        "review_due_at",
        "review_fired",
        "review_warn_at",
    ]
    .into_iter()
    .filter(|c| sql.contains(&format!("{c} = ")))
    .collect()
}

#[test]
fn a_firing_that_keeps_the_state_assigns_its_version_and_whether_the_sla_fired() {
    let before = record("submitted");
    assert_eq!(assigned(&[firing(&before, "submitted")], &before), ["version", "updated_at", "review_fired"]);
}

#[test]
fn a_firing_that_moves_the_state_or_the_assignee_assigns_the_three() {
    let before = record("under_review");
    let moved = assigned(&[firing(&before, "submitted")], &before);
    assert_eq!(moved, ["version", "updated_at", "state", "outcome", "assignee", "review_fired"]);
    let mut released = firing(&before, "under_review");
    released.appeal.assignee = Some("rev".into());
    assert_eq!(assigned(&[released], &before), moved);
    // An appeal the batch did not claim: nothing is known of it, so all three.
    let mut other = firing(&before, "under_review");
    other.appeal.id = "a2".into();
    assert_eq!(assigned(&[other], &before), moved);
}

#[test]
fn a_changed_record_assigns_it_with_its_queue_copies() {
    let before = record("submitted");
    let mut change = firing(&before, "submitted");
    change.appeal.data_changed = true;
    assert_eq!(
        assigned(&[firing(&before, "submitted"), change], &before),
        ["version", "updated_at", "data", "items", "scenario", "review_fired"]
    );
}

#[test]
fn arming_or_cancelling_the_review_sla_assigns_every_copy_of_its_deadline() {
    let before = record("parked");
    let every =
        ["version", "updated_at", "state", "outcome", "assignee", "review_due_at", "review_fired", "review_warn_at"];
    let mut armed = firing(&before, "submitted");
    armed.arm = vec![TimerArm { name: "review_sla".into(), due_at: chrono::Utc::now() }];
    assert_eq!(assigned(&[armed], &before), every);
    let mut cancelled = firing(&before, "submitted");
    cancelled.cancel = vec!["review_sla.warning".into()];
    assert_eq!(assigned(&[firing(&before, "submitted"), cancelled], &before), every);
    // Another timer's arming moves none of them.
    let mut other = firing(&before, "parked");
    other.arm = vec![TimerArm { name: "claim_expiry".into(), due_at: chrono::Utc::now() }];
    assert_eq!(assigned(&[other], &before), ["version", "updated_at", "review_fired"]);
}
