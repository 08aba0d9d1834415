//! One conformance suite, run on SQLite and on PostgreSQL: the engine's invariants
//! (one unit of work with the jobs it causes, idempotent commands, optimistic
//! concurrency, durable timers claimed once) hold on both backends.

use crate::common;

use std::sync::Arc;

use crate::common::{LEADS, TestDb, applicant, engine, jobs, monday_morning, notifications, request, reviewer};
use appealflow::engine::{EngineError, ManualClock};
use appealflow::failpoint::{self, Mode};
use appealflow::jobs::{ACTIONS_QUEUE, NOTIFICATIONS_QUEUE};
use appealflow::store::{
    ActionStatus, ActionUpdate, AppealChange, CommitError, DeliveryUpdate, JobRef, LedgerEntry, NewNotification,
    NotificationStatus, TimerFiring, TimerStatus, UnitOfWork,
};
use appealflow::workflow::{Fire, Refusal};
use chrono::Duration;

/// Timer batches written set-wise against one firing at a time.
mod firings;
/// Timer batches side by side (lanes), in a file of their own.
mod lanes;
/// Staff sessions of the web console, in a file of their own.
mod sessions;

on_both_backends!(
    create_issues_ticket_and_arms_the_review_sla,
    transition_writes_state_event_timers_notifications_and_jobs_together,
    a_failure_at_any_point_of_a_commit_leaves_no_trace_not_even_a_job,
    failure_before_commit_of_a_new_appeal_leaves_no_trace,
    repeated_idempotency_key_replays_first_result_and_writes_nothing,
    idempotency_key_reused_for_another_command_is_refused,
    fifty_concurrent_claims_exactly_one_wins,
    concurrent_repeats_of_one_key_commit_once,
    stale_expected_version_is_refused_naming_the_current_version,
    refusals_change_nothing,
    only_the_claim_holder_may_decide,
    leaving_a_state_cancels_its_timers_and_they_never_act,
    resubmission_window_expires_one_second_after_its_deadline,
    resubmission_just_before_the_deadline_is_accepted,
    sla_warning_and_breach_fire_once_without_changing_state,
    a_due_timer_fires_once_with_two_engines_racing,
    history_is_append_only,
    a_late_command_meets_the_overdue_timer_first,
    control_characters_in_reasons_are_bad_input_on_both_backends,
    the_job_queue_table_has_every_column_queue_administration_reads_and_writes,
    a_released_claim_does_not_tell_the_applicant_again,
    a_draft_written_from_a_stale_read_is_refused_not_lost,
    gauges_count_appeals_by_state_and_sla_breaches,
    a_conditional_write_that_no_longer_holds_fails_the_whole_unit_of_work,
    an_account_change_applies_once_and_only_to_the_account_as_read,
    a_fallback_chain_moves_on_by_release_and_skip_with_a_job_for_the_released,
    submitting_supersedes_creates_and_screens_in_one_commit,
    no_pending_row_is_ever_without_its_job,
);

async fn create_issues_ticket_and_arms_the_review_sla(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let out = engine.create(&request("acme"), &applicant(), None).await.unwrap();
    assert_eq!((out.state.as_str(), out.version, out.from.as_deref()), ("submitted", 1, None));
    let record = db.store.appeal_by_ticket(&out.ticket).await.unwrap().unwrap();
    assert_eq!(record.account, "acme");
    assert_eq!(record.data["draft"]["contact_phone"], "+8613812345678");
    let history = db.store.history(&record.id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].transition, "submit");
    assert_eq!(history[0].from, None);
    let timers = db.store.timers(Some(&record.id)).await.unwrap();
    let names: Vec<(&str, String)> = timers.iter().map(|t| (t.name.as_str(), t.due_at.to_rfc3339())).collect();
    // Received Monday 9 March 2026: days one to three are Tue, Wed, Thu; due at the end of Thursday.
    assert_eq!(
        names,
        [
            ("review_sla.warning", "2026-03-11T16:00:00+00:00".to_string()),
            ("review_sla", "2026-03-12T16:00:00+00:00".to_string())
        ]
    );
    // The notice is recorded in the same commit, with the job that delivers it.
    let sent = notifications(db.store.as_ref(), &record.id).await;
    let rows: Vec<_> = sent.iter().map(|n| (n.template.as_str(), n.channel.as_str(), n.status)).collect();
    assert_eq!(rows, [("appeal_received", "sms", NotificationStatus::Pending)]);
    let queued = jobs(db.store.as_ref(), NOTIFICATIONS_QUEUE).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].args, serde_json::json!({ "notification_id": sent[0].id }));
}

async fn transition_writes_state_event_timers_notifications_and_jobs_together(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock.clone());
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    let mut reject = Fire::new("reject");
    reject.reasons = vec!["missing_documents".into()];
    let out = engine.fire(&t, &reject, &reviewer("ann"), None).await.unwrap();
    assert_eq!((out.state.as_str(), out.version), ("rejected", 3));
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    assert_eq!(record.assignee, None, "leaving a held state drops the claim");
    let history = db.store.history(&record.id).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (last.seq, last.transition.as_str(), last.from.as_deref(), last.to.as_str(), last.actor.as_str()),
        (3, "reject", Some("under_review"), "rejected", "ann")
    );
    assert_eq!(last.reasons, ["missing_documents"]);
    let timers = db.store.timers(Some(&record.id)).await.unwrap();
    let status = |name: &str| timers.iter().find(|t| t.name == name).map(|t| t.status);
    for name in ["review_sla", "review_sla.warning", "claim_expiry"] {
        assert_eq!(status(name), Some(TimerStatus::Cancelled), "{name} is cancelled on leaving review: {timers:?}");
    }
    assert_eq!(status("notice_deadline"), Some(TimerStatus::Armed), "the notice has its deadline: {timers:?}");
    let sent = notifications(db.store.as_ref(), &record.id).await;
    let keys: Vec<_> = sent.iter().map(|n| (n.idempotency_key.clone(), n.template.as_str())).collect();
    assert_eq!(
        keys,
        [
            (format!("{}:1:0:notify:appeal_received/sms/0", record.id), "appeal_received"),
            (format!("{}:3:0:notify:appeal_rejected/sms/0", record.id), "appeal_rejected"),
        ],
        "each notice keyed by the event that caused it"
    );
    // The rejection notice runs down a fallback chain that says what its delivery fires.
    assert_eq!(sent[1].on_delivered.as_deref(), Some("notice_delivered"));
    assert_eq!(sent[1].on_undeliverable.as_deref(), Some("notice_undeliverable"));
    assert_eq!(jobs(db.store.as_ref(), NOTIFICATIONS_QUEUE).await.len(), 2);
}

/// Every point of a commit where it could break: after the transitions, after the rows,
/// after the jobs (just before COMMIT). Each leaves nothing — no event, timer,
/// notification, action, key, and no job.
async fn a_failure_at_any_point_of_a_commit_leaves_no_trace_not_even_a_job(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    // The approval waits out its cooling-off; its end applies it, with every effect.
    engine.fire(&t, &Fire::new("approve"), &reviewer("ann"), None).await.unwrap();
    let system = appealflow::domain::Actor::system();
    let before = db.store.row_counts().await.unwrap();
    let record_before = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    let scope = db.store.scope().to_string();
    for point in ["commit.after_changes", "commit.after_rows", "commit.before_commit"] {
        failpoint::arm(&scope, point, Mode::Error, 1);
        let err = engine.fire(&t, &Fire::new("cooling_off_elapsed"), &system, Some("elapse-1")).await.unwrap_err();
        failpoint::disarm(&scope);
        assert!(matches!(err, EngineError::Store(_)), "{point}: {err}");
        assert_eq!(db.store.row_counts().await.unwrap(), before, "nothing at all after a failure at {point}");
        assert_eq!(db.store.appeal_by_ticket(&t).await.unwrap().unwrap(), record_before);
    }
    // The same command then goes through, with the same idempotency key.
    let out = engine.fire(&t, &Fire::new("cooling_off_elapsed"), &system, Some("elapse-1")).await.unwrap();
    assert_eq!(out.state, "approved");
    let after = db.store.row_counts().await.unwrap();
    assert_eq!(after.events, before.events + 1);
    assert_eq!(after.idempotency, before.idempotency + 1);
    assert_eq!(after.actions, before.actions + 1, "the approval's action (rotate the secure phone)");
    assert_eq!(jobs(db.store.as_ref(), ACTIONS_QUEUE).await.len(), 1, "with its job, in the same commit");
    assert!(after.notifications > before.notifications && after.jobs > before.jobs);
}

async fn failure_before_commit_of_a_new_appeal_leaves_no_trace(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let scope = db.store.scope().to_string();
    failpoint::arm(&scope, "commit.before_commit", Mode::Error, 1);
    assert!(engine.create(&request("acme"), &applicant(), Some("k")).await.is_err());
    failpoint::disarm(&scope);
    assert_eq!(db.store.row_counts().await.unwrap(), Default::default());
}

async fn repeated_idempotency_key_replays_first_result_and_writes_nothing(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock.clone());
    let first = engine.create(&request("acme"), &applicant(), Some("create-1")).await.unwrap();
    let again = engine.create(&request("acme"), &applicant(), Some("create-1")).await.unwrap();
    assert_eq!(again.ticket, first.ticket);
    assert!(again.replayed && !first.replayed);
    let counts = db.store.row_counts().await.unwrap();
    assert_eq!((counts.appeals, counts.events), (1, 1));

    let claim = engine.fire(&first.ticket, &Fire::new("claim"), &reviewer("ann"), Some("claim-1")).await.unwrap();
    clock.advance(Duration::minutes(5));
    let before = db.store.row_counts().await.unwrap();
    let replay = engine.fire(&first.ticket, &Fire::new("claim"), &reviewer("ann"), Some("claim-1")).await.unwrap();
    assert_eq!(replay.version, claim.version);
    assert!(replay.replayed);
    assert_eq!(db.store.row_counts().await.unwrap(), before);
}

async fn idempotency_key_reused_for_another_command_is_refused(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let t = engine.create(&request("acme"), &applicant(), Some("k1")).await.unwrap().ticket;
    let before = db.store.row_counts().await.unwrap();
    let err = engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), Some("k1")).await.unwrap_err();
    assert!(matches!(err, EngineError::IdempotencyMismatch { ref key } if key == "k1"), "{err}");
    let err = engine.create(&request("other"), &applicant(), Some("k1")).await.unwrap_err();
    assert!(matches!(err, EngineError::IdempotencyMismatch { .. }), "{err}");
    assert_eq!(db.store.row_counts().await.unwrap(), before);
}

async fn fifty_concurrent_claims_exactly_one_wins(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = Arc::new(engine(&db, clock));
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (engine, t, barrier) = (engine.clone(), t.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                engine.fire(&t, &Fire::new("claim"), &reviewer(&format!("r{i}")), None).await
            })
        })
        .collect();
    let mut wins = Vec::new();
    let mut losses = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(out) => wins.push(out),
            Err(EngineError::Conflict { state, version }) => {
                assert_eq!((state.as_str(), version), ("under_review", 2));
                losses += 1;
            }
            // Loaded after the winner committed: refused by state, which also names it.
            Err(EngineError::Refused(Refusal::WrongState { state, .. })) => {
                assert_eq!(state, "under_review");
                losses += 1;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one claim succeeds");
    assert_eq!(losses, 49);
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    assert_eq!(record.version, 2);
    assert_eq!(db.store.history(&record.id).await.unwrap().len(), 2);
    let holder = record.assignee.unwrap();
    assert_eq!(db.store.history(&record.id).await.unwrap()[1].actor, holder, "the recorded actor holds the claim");
}

async fn concurrent_repeats_of_one_key_commit_once(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = Arc::new(engine(&db, clock));
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (engine, t) = (engine.clone(), t.clone());
            tokio::spawn(async move { engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), Some("same")).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        // Every repeat answers with the first result, even one that lost the race.
        outcomes.push(task.await.unwrap().unwrap());
    }
    assert!(outcomes.iter().all(|o| o.version == 2 && o.state == "under_review"), "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1, "exactly one execution");
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    assert_eq!(db.store.history(&record.id).await.unwrap().len(), 2);
}

async fn stale_expected_version_is_refused_naming_the_current_version(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    let mut release = Fire::new("release");
    release.expect_version = Some(1);
    let err = engine.fire(&t, &release, &reviewer("ann"), None).await.unwrap_err();
    match err {
        EngineError::Refused(Refusal::StaleVersion { expected, current, state }) => {
            assert_eq!((expected, current, state.as_str()), (1, 2, "under_review"));
        }
        other => panic!("expected a stale-version refusal, got {other}"),
    }
    release.expect_version = Some(2);
    assert_eq!(engine.fire(&t, &release, &reviewer("ann"), None).await.unwrap().state, "submitted");
}

async fn refusals_change_nothing(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    let before = db.store.row_counts().await.unwrap();
    let cases: Vec<(Fire, appealflow::domain::Actor)> = vec![
        (Fire::new("approve"), reviewer("ann")),          // wrong state
        (Fire::new("claim"), applicant()),                // wrong role
        (Fire::new("teleport"), reviewer("ann")),         // unknown transition
        (Fire::new("notice_delivered"), reviewer("ann")), // wrong state and role
    ];
    for (cmd, actor) in cases {
        let err = engine.fire(&t, &cmd, &actor, Some(&format!("k-{}", cmd.transition))).await.unwrap_err();
        assert!(matches!(err, EngineError::Refused(_)), "{err}");
    }
    assert_eq!(db.store.row_counts().await.unwrap(), before, "refused commands write nothing, not even their keys");
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    let before_reject = db.store.row_counts().await.unwrap();
    let err = engine.fire(&t, &Fire::new("reject"), &reviewer("ann"), None).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::Refused(Refusal::GuardFailed { guard, .. }) if guard == "rejection_reasons"),
        "{err}"
    );
    assert_eq!(db.store.row_counts().await.unwrap(), before_reject);
    assert_eq!(before.idempotency, 0, "refused commands store no idempotency record");
}

async fn only_the_claim_holder_may_decide(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    let err = engine.fire(&t, &Fire::new("approve"), &reviewer("bob"), None).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::Refused(Refusal::GuardFailed { guard, reason, .. })
            if guard == "holds_claim" && reason.contains("ann")),
        "{err}"
    );
    let lead = appealflow::domain::Actor::new("lee", appealflow::domain::Role::Lead);
    assert_eq!(engine.fire(&t, &Fire::new("approve"), &lead, None).await.unwrap().state, "cooling_off");
}

async fn leaving_a_state_cancels_its_timers_and_they_never_act(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock.clone());
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    engine.fire(&t, &Fire::new("approve"), &reviewer("ann"), None).await.unwrap();
    common::pass_cooling_off(&engine, &t).await;
    clock.advance(Duration::days(30));
    let runs = engine.run_due_timers(100).await.unwrap();
    // Only the approved state's own timer acts (the completion is overdue); the review
    // SLA, the claim expiry and the cooling-off were cancelled on leaving their states.
    let names: Vec<_> = runs.iter().map(|r| (r.timer.name.as_str(), r.outcome)).collect();
    assert_eq!(names, [("completion_overdue", "fired")]);
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    assert_eq!((record.state.as_str(), record.version), ("approved", 5));
}

async fn reject_and_deliver(engine: &appealflow::engine::Engine, t: &appealflow::domain::TicketNumber) {
    engine.fire(t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    let mut reject = Fire::new("reject");
    reject.reasons = vec!["missing_documents".into()];
    engine.fire(t, &reject, &reviewer("ann"), None).await.unwrap();
    let system = appealflow::domain::Actor::system();
    engine.fire(t, &Fire::new("notice_delivered"), &system, None).await.unwrap();
}

async fn resubmission_window_expires_one_second_after_its_deadline(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock.clone());
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    reject_and_deliver(&engine, &t).await;
    // Delivered Monday 9 March (Shanghai): the window closes at the end of Thursday 12 March.
    let deadline = common::at("2026-03-13T00:00:00+08:00");
    clock.set(deadline - Duration::seconds(1));
    let runs = engine.run_due_timers(100).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| (r.timer.name.as_str(), r.outcome)).collect::<Vec<_>>(),
        [("resubmission_window.warning", "fired")]
    );
    assert_eq!(db.store.appeal_by_ticket(&t).await.unwrap().unwrap().state, "resubmission_window");
    clock.set(deadline + Duration::seconds(1));
    let runs = engine.run_due_timers(100).await.unwrap();
    assert_eq!(runs.len(), 1);
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    assert_eq!((record.state.as_str(), record.outcome.as_deref()), ("closed", Some("expired")));
    let sent = notifications(db.store.as_ref(), &record.id).await;
    assert_eq!(sent.last().unwrap().template, "window_expired");
    let err = engine.fire(&t, &Fire::new("resubmit"), &applicant(), None).await.unwrap_err();
    assert!(matches!(err, EngineError::Refused(Refusal::WrongState { .. })), "{err}");
}

async fn resubmission_just_before_the_deadline_is_accepted(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock.clone());
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    reject_and_deliver(&engine, &t).await;
    clock.set(common::at("2026-03-12T23:59:59+08:00"));
    let out = engine.fire(&t, &Fire::new("resubmit"), &applicant(), None).await.unwrap();
    assert_eq!(out.state, "submitted");
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    let timers = db.store.timers(Some(&record.id)).await.unwrap();
    let window = timers.iter().find(|t| t.name == "resubmission_window").unwrap();
    assert_eq!(window.status, TimerStatus::Cancelled);
    // A fresh SLA from the resubmission: Thursday late → Fri, Mon, Tue → end of Tuesday 17 March.
    let sla: Vec<_> = timers.iter().filter(|t| t.name == "review_sla").collect();
    assert_eq!(sla.len(), 2);
    assert_eq!(sla[0].status, TimerStatus::Cancelled);
    assert_eq!((sla[1].generation, sla[1].status), (2, TimerStatus::Armed));
    assert_eq!(sla[1].due_at, common::at("2026-03-18T00:00:00+08:00"));
    clock.set(common::at("2026-03-13T00:00:01+08:00"));
    assert!(engine.run_due_timers(100).await.unwrap().is_empty(), "the cancelled window never fires");
}

async fn sla_warning_and_breach_fire_once_without_changing_state(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock.clone());
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    clock.set(common::at("2026-03-11T23:59:59+08:00"));
    assert!(engine.run_due_timers(100).await.unwrap().is_empty(), "no warning before the last business day");
    clock.set(common::at("2026-03-12T00:00:00+08:00"));
    let runs = engine.run_due_timers(100).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| (r.timer.name.as_str(), r.outcome)).collect::<Vec<_>>(),
        [("review_sla.warning", "fired")]
    );
    clock.set(common::at("2026-03-13T00:00:00+08:00"));
    let runs = engine.run_due_timers(100).await.unwrap();
    assert_eq!(runs.iter().map(|r| (r.timer.name.as_str(), r.outcome)).collect::<Vec<_>>(), [("review_sla", "fired")]);
    assert!(engine.run_due_timers(100).await.unwrap().is_empty(), "each fires once");
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    assert_eq!(record.state, "submitted");
    let history = db.store.history(&record.id).await.unwrap();
    let names: Vec<_> = history.iter().map(|e| e.transition.as_str()).collect();
    assert_eq!(names, ["submit", "sla_warning", "sla_breached"]);
    let leads: Vec<_> = notifications(db.store.as_ref(), &record.id)
        .await
        .into_iter()
        .filter(|n| n.recipient == LEADS)
        .map(|n| n.template)
        .collect();
    assert_eq!(leads, ["sla_warning", "sla_breach"]);
}

async fn a_due_timer_fires_once_with_two_engines_racing(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let a = engine(&db, clock.clone());
    let b = engine(&db, clock.clone());
    let mut tickets = Vec::new();
    for i in 0..10 {
        tickets.push(a.create(&request(&format!("acct{i}")), &applicant(), None).await.unwrap().ticket);
    }
    clock.set(common::at("2026-03-20T00:00:00+08:00"));
    let (ra, rb) = tokio::join!(
        {
            let a = a.clone();
            async move { a.run_due_timers(100).await.unwrap() }
        },
        {
            let b = b.clone();
            async move { b.run_due_timers(100).await.unwrap() }
        }
    );
    // PostgreSQL: claims do not race — a timer another batch holds is skipped, never
    // fired twice and never a failed commit. SQLite: a burn-down's batch claims on a
    // read, before the write lock, so both engines may claim one timer; the batch that
    // writes second finds it settled and writes nothing for it (`changed`), never a
    // failed commit either.
    let lost = if db.url.starts_with("sqlite") { TimerFiring::CHANGED } else { "fired" };
    assert!(ra.iter().chain(rb.iter()).all(|r| r.outcome == "fired" || r.outcome == lost), "{ra:?} {rb:?}");
    let raced = ra.iter().chain(rb.iter()).filter(|r| r.outcome == "fired").count();
    // One firing per appeal per batch: what is left, a later poll finishes.
    let rest = a.run_due_timers(100).await.unwrap();
    let acted = raced + rest.iter().filter(|r| r.outcome == "fired").count();
    assert_eq!(acted, 20, "each of the 20 due timers acts exactly once");
    for t in &tickets {
        let record = db.store.appeal_by_ticket(t).await.unwrap().unwrap();
        let names: Vec<_> = db.store.history(&record.id).await.unwrap().into_iter().map(|e| e.transition).collect();
        assert_eq!(names, ["submit", "sla_warning", "sla_breached"], "{t}");
    }
}

async fn history_is_append_only(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    engine.create(&request("acme"), &applicant(), None).await.unwrap();
    let rewrite = if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let update = sqlx::query("UPDATE appeal_events SET actor = 'mallory'").execute(&pool).await;
        let delete = sqlx::query("DELETE FROM appeal_events").execute(&pool).await;
        (update.is_err(), delete.is_err())
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let update = sqlx::query("UPDATE appeal_events SET actor = 'mallory'").execute(&pool).await;
        let delete = sqlx::query("DELETE FROM appeal_events").execute(&pool).await;
        (update.is_err(), delete.is_err())
    };
    assert_eq!(rewrite, (true, true), "the database refuses to rewrite history");
}

async fn a_late_command_meets_the_overdue_timer_first(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock.clone());
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    reject_and_deliver(&engine, &t).await;
    // No worker polls: the window closed at Friday 00:00 and it is now one second later.
    clock.set(common::at("2026-03-13T00:00:01+08:00"));
    let err = engine.fire(&t, &Fire::new("resubmit"), &applicant(), None).await.unwrap_err();
    assert!(matches!(&err, EngineError::Refused(Refusal::WrongState { state, .. }) if state == "closed"), "{err}");
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    assert_eq!((record.state.as_str(), record.outcome.as_deref()), ("closed", Some("expired")));

    // The same for a claim that lapsed: the release fires before the late approval.
    let t2 = engine.create(&request("other"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t2, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    clock.advance(Duration::hours(4) + Duration::seconds(1));
    let err = engine.fire(&t2, &Fire::new("approve"), &reviewer("ann"), None).await.unwrap_err();
    assert!(matches!(&err, EngineError::Refused(Refusal::WrongState { state, .. }) if state == "submitted"), "{err}");
}

async fn control_characters_in_reasons_are_bad_input_on_both_backends(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    let before = db.store.row_counts().await.unwrap();
    let mut reject = Fire::new("reject");
    reject.reasons = vec!["other: nul\u{0}byte".into()];
    let err = engine.fire(&t, &reject, &reviewer("ann"), None).await.unwrap_err();
    assert!(matches!(&err, EngineError::Invalid(problems) if problems[0].field == "reasons[0]"), "{err}");
    let err = engine.fire(&t, &Fire::new("release"), &reviewer("a\u{0}nn"), None).await.unwrap_err();
    assert!(matches!(&err, EngineError::Invalid(problems) if problems[0].field == "actor"), "{err}");
    assert_eq!(db.store.row_counts().await.unwrap(), before);
}

async fn a_released_claim_does_not_tell_the_applicant_again(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    engine.fire(&t, &Fire::new("release"), &reviewer("ann"), None).await.unwrap();
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    let templates: Vec<_> =
        notifications(db.store.as_ref(), &record.id).await.into_iter().map(|n| n.template).collect();
    assert_eq!(templates, ["appeal_received"], "\"received\" is sent on submission only, not when a claim is released");
}

async fn a_draft_written_from_a_stale_read_is_refused_not_lost(db: TestDb) {
    let t0 = monday_morning();
    let draft = appealflow::store::DraftRecord {
        id: "d1".into(),
        secret_hash: "h".into(),
        data: serde_json::json!({ "documents": [] }),
        ticket: None,
        created_at: t0,
        updated_at: t0,
    };
    db.store.insert_draft(&draft).await.unwrap();
    // Two requests read the draft at t0; the first write wins...
    let first = serde_json::json!({ "documents": ["first"] });
    assert!(db.store.update_draft("d1", &first, None, t0, t0).await.unwrap(), "even at the same instant");
    // ...and the second, written from the same stale read, is refused rather than lost.
    let second = serde_json::json!({ "documents": ["second"] });
    assert!(!db.store.update_draft("d1", &second, None, t0, t0 + Duration::seconds(1)).await.unwrap());
    let stored = db.store.draft("d1").await.unwrap().unwrap();
    assert_eq!(stored.data, first);
    assert!(stored.updated_at > t0);
    // From a fresh read it goes through.
    assert!(db.store.update_draft("d1", &second, Some("t"), stored.updated_at, t0).await.unwrap());
    assert_eq!(db.store.draft("d1").await.unwrap().unwrap().ticket.as_deref(), Some("t"));
}

async fn gauges_count_appeals_by_state_and_sla_breaches(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock.clone());
    let a = engine.create(&request("a"), &applicant(), None).await.unwrap().ticket;
    engine.create(&request("b"), &applicant(), None).await.unwrap();
    engine.fire(&a, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    let g = db.store.gauges("review_sla").await.unwrap();
    assert_eq!(g.appeals_by_state, [("submitted".to_string(), 1), ("under_review".to_string(), 1)]);
    assert_eq!(g.sla_breaches, 0);
    clock.set(common::at("2026-03-13T00:00:00+08:00"));
    engine.run_due_timers(100).await.unwrap();
    let g = db.store.gauges("review_sla").await.unwrap();
    assert_eq!(g.sla_breaches, 2, "both deadlines passed without a decision");
    assert_eq!(g.dead_jobs, 0);
    assert_eq!(
        g.jobs_by_status,
        [("Pending".to_string(), 6)],
        "two notices of receipt, and the leads' warning and breach of both appeals, waiting"
    );
}

/// A unit of work whose conditional part no longer holds (an action that is no longer
/// pending) fails whole: its transition and every other row are not written.
async fn a_conditional_write_that_no_longer_holds_fails_the_whole_unit_of_work(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    engine.fire(&t, &Fire::new("approve"), &reviewer("ann"), None).await.unwrap();
    common::pass_cooling_off(&engine, &t).await;
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    let action = db.store.actions(&Default::default()).await.unwrap().remove(0);
    let done = |at| {
        let mut uow = UnitOfWork::new(at);
        uow.action_updates.push(ActionUpdate {
            id: action.id,
            status: ActionStatus::Succeeded,
            error: None,
            result: None,
            done_by: Some("ann".into()),
        });
        uow
    };
    db.store.commit(&done(monday_morning())).await.unwrap();
    let before = db.store.row_counts().await.unwrap();
    // The same again, with a transition and a notification riding along.
    let mut again = done(monday_morning());
    let mut write = appealflow::store::AppealWrite {
        id: record.id.clone(),
        ticket: record.ticket.clone(),
        workflow: record.workflow.clone(),
        workflow_version: record.workflow_version,
        account: record.account.clone(),
        data: record.data.clone(),
        state: "closed".into(),
        outcome: Some("completed".into()),
        assignee: None,
        data_changed: true,
        expected_version: Some(record.version),
    };
    write.data["touched"] = serde_json::json!(true);
    again.changes.push(AppealChange {
        appeal: write,
        event: appealflow::store::NewEvent {
            transition: "complete".into(),
            from: Some("approved".into()),
            to: "closed".into(),
            outcome: Some("completed".into()),
            actor: "appealflow".into(),
            role: appealflow::domain::Role::System,
            reasons: vec![],
            payload: serde_json::Value::Null,
        },
        arm: vec![],
        cancel: vec![],
        fire_timer: None,
        review_sla: None,
    });
    again.notifications.push(notification(&record.id, "x/sms/0", NotificationStatus::Pending, None));
    let err = db.store.commit(&again).await.unwrap_err();
    assert!(matches!(err, CommitError::Stale(ref what) if what.starts_with("action")), "{err}");
    assert_eq!(db.store.row_counts().await.unwrap(), before, "nothing of it was written");
    assert_eq!(db.store.appeal_by_ticket(&t).await.unwrap().unwrap(), record);
}

fn notification(appeal_id: &str, key: &str, status: NotificationStatus, chain: Option<&str>) -> NewNotification {
    NewNotification {
        appeal_id: Some(appeal_id.to_string()),
        idempotency_key: key.to_string(),
        template: "appeal_rejected".into(),
        channel: if key.contains("email") { "email".into() } else { "sms".into() },
        locale: "en".into(),
        recipient: "+8613812345678".into(),
        recipient_masked: "+86 138****5678".into(),
        body: "b".into(),
        status,
        chain: chain.map(str::to_string),
        position: if key.contains("email") { 1 } else { 0 },
        on_delivered: None,
        on_undeliverable: None,
    }
}

/// The embedded directory's change is written only while the account is as the step
/// read it, and a key applies once.
async fn an_account_change_applies_once_and_only_to_the_account_as_read(db: TestDb) {
    let t0 = monday_morning();
    let hasher = appealflow::domain::IdHasher::new(b"conformance-key-0123456789abcdef").unwrap();
    let input: appealflow::domain::AccountInput = serde_json::from_value(serde_json::json!({
        "name": "acme", "verification": "individual",
        "verified_individual": { "name": "Wang Wu", "id_number": "31010419781203005X" },
        "associations": { "phone": "13900000000" },
        "security": { "secure_phone": "13900000000", "mfa_attached": true }
    }))
    .unwrap();
    db.store.put_accounts(&[input.into_account("test", &hasher).unwrap()], t0).await.unwrap();
    let (account, stored) = db.store.account_record("acme").await.unwrap().unwrap();
    let entry = |key: &str, expected: &str| {
        let mut changed = account.clone();
        let before = appealflow::domain::account::AccountChange::DetachMfa.apply(&mut changed);
        LedgerEntry {
            key: key.into(),
            account: "acme".into(),
            action: "detach_mfa".into(),
            expected: expected.into(),
            after: serde_json::to_value(&changed.security).unwrap(),
            record: changed,
            before,
        }
    };
    let commit = |e: LedgerEntry| {
        let mut uow = UnitOfWork::new(t0);
        uow.ledger.push(e);
        uow
    };
    // Read before another change landed: refused, nothing written.
    let stale = commit(entry("k1", "{}"));
    assert!(matches!(db.store.commit(&stale).await, Err(CommitError::Stale(_))));
    assert!(db.store.applied_change("k1").await.unwrap().is_none());
    db.store.commit(&commit(entry("k1", &stored))).await.unwrap();
    assert!(!db.store.account("acme").await.unwrap().unwrap().security.mfa_attached);
    let applied = db.store.applied_change("k1").await.unwrap().unwrap();
    assert_eq!(applied.before, serde_json::json!({ "mfa_attached": true }));
    // The same key again, even from a fresh read: refused.
    let (_, fresh) = db.store.account_record("acme").await.unwrap().unwrap();
    assert!(matches!(db.store.commit(&commit(entry("k1", &fresh))).await, Err(CommitError::Stale(_))));
    assert_eq!(db.store.ledger().await.unwrap().len(), 1);
}

/// A fallback chain: the first channel pending with its job, the next held without one;
/// released, it gets its job in the same commit; a skipped one never gets one.
async fn a_fallback_chain_moves_on_by_release_and_skip_with_a_job_for_the_released(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    let jobs_before = jobs(db.store.as_ref(), NOTIFICATIONS_QUEUE).await.len();
    let mut uow = UnitOfWork::new(monday_morning());
    uow.notifications.push(notification(&record.id, "c/sms/0", NotificationStatus::Pending, Some("c")));
    uow.notifications.push(notification(&record.id, "c/email/1", NotificationStatus::Held, Some("c")));
    db.store.commit(&uow).await.unwrap();
    let chain = db.store.chain("c").await.unwrap();
    assert_eq!(
        chain.iter().map(|n| n.status).collect::<Vec<_>>(),
        [NotificationStatus::Pending, NotificationStatus::Held]
    );
    assert_eq!(jobs(db.store.as_ref(), NOTIFICATIONS_QUEUE).await.len(), jobs_before + 1, "no job for the held one");
    // The first fails for good and the second is released, in one commit.
    let mut uow = UnitOfWork::new(monday_morning());
    uow.deliveries.push(DeliveryUpdate::Attempted {
        id: chain[0].id,
        status: NotificationStatus::Failed,
        error: Some("400".into()),
    });
    uow.deliveries.push(DeliveryUpdate::Release { id: chain[1].id });
    db.store.commit(&uow).await.unwrap();
    let chain = db.store.chain("c").await.unwrap();
    assert_eq!(
        chain.iter().map(|n| n.status).collect::<Vec<_>>(),
        [NotificationStatus::Failed, NotificationStatus::Pending]
    );
    let queued = jobs(db.store.as_ref(), NOTIFICATIONS_QUEUE).await;
    assert_eq!(queued.last().unwrap().args, serde_json::json!({ "notification_id": chain[1].id }));
    // Releasing it twice is a stale write: refused, nothing changes.
    let mut twice = UnitOfWork::new(monday_morning());
    twice.deliveries.push(DeliveryUpdate::Release { id: chain[1].id });
    assert!(matches!(db.store.commit(&twice).await, Err(CommitError::Stale(_))));
    assert_eq!(jobs(db.store.as_ref(), NOTIFICATIONS_QUEUE).await.len(), queued.len());
}

/// A submission that supersedes an appeal waiting in its window and is screened out is
/// one unit of work: the old appeal closed, the new one created and rejected — or none.
async fn submitting_supersedes_creates_and_screens_in_one_commit(db: TestDb) {
    use appealflow::engine::{Command, Target};
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    let old = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    reject_and_deliver(&engine, &old).await;
    let batch = |key: Option<&str>| {
        let mut supersede = Fire::new("supersede");
        supersede.reasons = vec!["superseded by a new appeal".into()];
        let mut screen = Fire::new("screen_reject");
        screen.reasons = vec!["inapplicable_scenario".into()];
        let commands = vec![
            Command::new(Target::Ticket(old.clone()), supersede, appealflow::domain::Actor::system()),
            Command::new(Target::New(request("acme")), Fire::new("submit"), applicant()),
            Command::new(Target::Same, screen, appealflow::domain::Actor::system()),
        ];
        let keyed = key.map(|k| appealflow::engine::Engine::create_keyed(k, &request("acme"), &applicant()));
        (commands, keyed)
    };
    let before = db.store.row_counts().await.unwrap();
    let scope = db.store.scope().to_string();
    failpoint::arm(&scope, "commit.before_commit", Mode::Error, 1);
    let (commands, keyed) = batch(Some("submit-1"));
    assert!(engine.execute(commands, 1, UnitOfWork::default(), keyed).await.is_err());
    failpoint::disarm(&scope);
    assert_eq!(db.store.row_counts().await.unwrap(), before, "none of the three");
    assert_eq!(db.store.appeal_by_ticket(&old).await.unwrap().unwrap().state, "resubmission_window");

    let (commands, keyed) = batch(Some("submit-1"));
    let created = engine.execute(commands, 1, UnitOfWork::default(), keyed).await.unwrap();
    assert_eq!((created.transition.as_str(), created.state.as_str()), ("submit", "submitted"));
    let also: Vec<_> = created.also.iter().map(|o| (o.transition.as_str(), o.state.as_str())).collect();
    assert_eq!(also, [("supersede", "closed"), ("screen_reject", "rejected")]);
    let new = db.store.appeal_by_ticket(&created.ticket).await.unwrap().unwrap();
    assert_eq!((new.state.as_str(), new.version), ("rejected", 2));
    let old_record = db.store.appeal_by_ticket(&old).await.unwrap().unwrap();
    assert_eq!(old_record.outcome.as_deref(), Some("superseded"));
    // A keyed repeat answers as the first did and writes nothing.
    let counts = db.store.row_counts().await.unwrap();
    let (commands, keyed) = batch(Some("submit-1"));
    let again = engine.execute(commands, 1, UnitOfWork::default(), keyed).await.unwrap();
    assert!(again.replayed && again.ticket == created.ticket && again.also.len() == 2);
    assert_eq!(db.store.row_counts().await.unwrap(), counts);
}

/// Jobs commit with their rows, so no pending notification or action is ever without a
/// job; a row left without one (as an earlier version's relay could) is found and queued.
async fn no_pending_row_is_ever_without_its_job(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(&db, clock);
    for i in 0..3 {
        let t = engine.create(&request(&format!("acct{i}")), &applicant(), None).await.unwrap().ticket;
        engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
        engine.fire(&t, &Fire::new("approve"), &reviewer("ann"), None).await.unwrap();
    }
    assert_eq!(db.store.unqueued_work(100).await.unwrap(), [], "every row has its job");
    // A row written without its job (outside appealflow's commit path).
    let record = db.store.list_appeals(&Default::default()).await.unwrap().remove(0);
    let insert =
        "INSERT INTO appeal_actions (appeal_id, action, idempotency_key, manual, status, created_at, updated_at)
                  VALUES ($1, 'detach_mfa', $2, FALSE, 'pending', $3, $3)";
    if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(insert.replace("FALSE", "0")))
            .bind(&record.id)
            .bind(format!("{}:detach_mfa", record.id))
            .bind("2026-03-09T02:00:00.000000Z")
            .execute(&pool)
            .await
            .unwrap();
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query(insert)
            .bind(&record.id)
            .bind(format!("{}:detach_mfa", record.id))
            .bind(monday_morning())
            .execute(&pool)
            .await
            .unwrap();
    }
    let orphans = db.store.unqueued_work(100).await.unwrap();
    assert_eq!(orphans.len(), 1);
    assert!(matches!(orphans[0], JobRef::Action(_)));
    db.store.enqueue(&orphans).await.unwrap();
    assert_eq!(db.store.unqueued_work(100).await.unwrap(), []);
}

/// Queue administration (jobs listed, counted, retried, work enqueued once) reads and
/// writes apalis's own job table; this pins the columns it relies on, so an apalis
/// upgrade that renames one fails here rather than in production.
async fn the_job_queue_table_has_every_column_queue_administration_reads_and_writes(db: TestDb) {
    use sqlx::Connection;
    let columns: Vec<String> = if db.url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT name FROM pragma_table_info('Jobs')").fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'apalis' AND table_name = 'jobs'",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
    };
    let columns: Vec<String> = columns.into_iter().map(|c| c.to_ascii_lowercase()).collect();
    for needed in [
        "id",
        "job",
        "job_type",
        "status",
        "attempts",
        "max_attempts",
        "run_at",
        "last_result",
        "done_at",
        "idempotency_key",
    ] {
        assert!(columns.iter().any(|c| c == needed), "apalis's job table lacks {needed:?}: {columns:?}");
    }
    // And the administration itself works on it: a listing, the counts, a refused retry.
    db.store.jobs(&appealflow::store::JobFilter::default()).await.unwrap();
    db.store.gauges("review_sla").await.unwrap();
    assert!(!db.store.retry_job("no-such-job").await.unwrap(), "an unknown job is not retried");
}
