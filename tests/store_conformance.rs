//! One conformance suite, run on SQLite and on PostgreSQL: the engine's invariants
//! (one unit of work, idempotent commands, optimistic concurrency, durable timers)
//! hold on both backends.

mod common;

use std::sync::Arc;

use appealflow::engine::{EngineError, ManualClock};
use appealflow::store::{ActionAttempt, FailPoint, NewAction, TimerStatus};
use appealflow::workflow::{Fire, Refusal};
use chrono::Duration;
use common::{TestDb, applicant, engine, monday_morning, request, reviewer};

on_both_backends!(
    create_issues_ticket_and_arms_the_review_sla,
    transition_writes_state_event_timers_and_outbox_together,
    failure_after_the_event_write_leaves_no_trace,
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
    a_released_claim_does_not_tell_the_applicant_again,
    a_draft_written_from_a_stale_read_is_refused_not_lost,
    gauges_count_appeals_by_state_and_sla_breaches,
    an_action_attempt_conditioned_on_a_stale_appeal_version_changes_nothing,
);

async fn create_issues_ticket_and_arms_the_review_sla(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(db.store.clone(), clock);
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
    let effects = db.store.effects(&record.id).await.unwrap();
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0].template.as_deref(), Some("appeal_received"));
    assert_eq!(effects[0].recipient.as_deref(), Some("applicant"));
}

async fn transition_writes_state_event_timers_and_outbox_together(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(db.store.clone(), clock.clone());
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
    assert!(
        timers.iter().all(|t| t.status == TimerStatus::Cancelled),
        "review SLA and claim expiry are cancelled on leaving review: {timers:?}"
    );
    let effects = db.store.effects(&record.id).await.unwrap();
    let templates: Vec<_> = effects.iter().map(|e| (e.event_seq, e.template.clone().unwrap_or_default())).collect();
    assert_eq!(templates, [(1, "appeal_received".to_string()), (3, "appeal_rejected".to_string())]);
}

async fn failure_after_the_event_write_leaves_no_trace(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(db.store.clone(), clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    let before = db.store.row_counts().await.unwrap();
    let record_before = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();

    for fp in [FailPoint::AfterEvent, FailPoint::BeforeCommit] {
        db.store.fail_points().set(Some(fp));
        let mut approve = Fire::new("approve");
        approve.reasons = vec!["documents verified".into()];
        let err = engine.fire(&t, &approve, &reviewer("ann"), Some("approve-1")).await.unwrap_err();
        assert!(matches!(err, EngineError::Store(_)), "{err}");
        db.store.fail_points().set(None);
        assert_eq!(db.store.row_counts().await.unwrap(), before, "no event, timer, outbox or key row after {fp:?}");
        assert_eq!(db.store.appeal_by_ticket(&t).await.unwrap().unwrap(), record_before);
    }
    // The same command then goes through, with the same idempotency key.
    let out = engine.fire(&t, &Fire::new("approve"), &reviewer("ann"), Some("approve-1")).await.unwrap();
    assert_eq!(out.state, "approved");
    let after = db.store.row_counts().await.unwrap();
    assert_eq!(after.events, before.events + 1);
    assert_eq!(after.idempotency, before.idempotency + 1);
    assert!(after.outbox > before.outbox, "approval enqueues its effects");
}

async fn failure_before_commit_of_a_new_appeal_leaves_no_trace(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(db.store.clone(), clock);
    db.store.fail_points().set(Some(FailPoint::BeforeCommit));
    assert!(engine.create(&request("acme"), &applicant(), Some("k")).await.is_err());
    db.store.fail_points().set(None);
    assert_eq!(db.store.row_counts().await.unwrap(), Default::default());
}

async fn repeated_idempotency_key_replays_first_result_and_writes_nothing(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(db.store.clone(), clock.clone());
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
    let engine = engine(db.store.clone(), clock);
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
    let engine = Arc::new(engine(db.store.clone(), clock));
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
    let engine = Arc::new(engine(db.store.clone(), clock));
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
    let engine = engine(db.store.clone(), clock);
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
    let engine = engine(db.store.clone(), clock);
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
    let engine = engine(db.store.clone(), clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    let err = engine.fire(&t, &Fire::new("approve"), &reviewer("bob"), None).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::Refused(Refusal::GuardFailed { guard, reason, .. })
            if guard == "holds_claim" && reason.contains("ann")),
        "{err}"
    );
    let lead = appealflow::domain::Actor::new("lee", appealflow::domain::Role::Lead);
    assert_eq!(engine.fire(&t, &Fire::new("approve"), &lead, None).await.unwrap().state, "approved");
}

async fn leaving_a_state_cancels_its_timers_and_they_never_act(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(db.store.clone(), clock.clone());
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    engine.fire(&t, &Fire::new("approve"), &reviewer("ann"), None).await.unwrap();
    clock.advance(Duration::days(30));
    let runs = engine.run_due_timers(100).await.unwrap();
    assert!(runs.is_empty(), "cancelled timers are not due: {runs:?}");
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    assert_eq!((record.state.as_str(), record.version), ("approved", 3));
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
    let engine = engine(db.store.clone(), clock.clone());
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    reject_and_deliver(&engine, &t).await;
    // Delivered Monday 9 March (Shanghai): the window closes at the end of Thursday 12 March.
    let deadline = common::at("2026-03-13T00:00:00+08:00");
    clock.set(deadline - Duration::seconds(1));
    let runs = engine.run_due_timers(100).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.timer.name.as_str()).collect::<Vec<_>>(), ["resubmission_window.warning"]);
    assert_eq!(db.store.appeal_by_ticket(&t).await.unwrap().unwrap().state, "resubmission_window");
    clock.set(deadline + Duration::seconds(1));
    let runs = engine.run_due_timers(100).await.unwrap();
    assert_eq!(runs.len(), 1);
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    assert_eq!((record.state.as_str(), record.outcome.as_deref()), ("closed", Some("expired")));
    let effects = db.store.effects(&record.id).await.unwrap();
    assert_eq!(effects.last().unwrap().template.as_deref(), Some("window_expired"));
    let err = engine.fire(&t, &Fire::new("resubmit"), &applicant(), None).await.unwrap_err();
    assert!(matches!(err, EngineError::Refused(Refusal::WrongState { .. })), "{err}");
}

async fn resubmission_just_before_the_deadline_is_accepted(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(db.store.clone(), clock.clone());
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
    let engine = engine(db.store.clone(), clock.clone());
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    clock.set(common::at("2026-03-11T23:59:59+08:00"));
    assert!(engine.run_due_timers(100).await.unwrap().is_empty(), "no warning before the last business day");
    clock.set(common::at("2026-03-12T00:00:00+08:00"));
    let runs = engine.run_due_timers(100).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].result.as_ref().unwrap().transition, "sla_warning");
    clock.set(common::at("2026-03-13T00:00:00+08:00"));
    let runs = engine.run_due_timers(100).await.unwrap();
    assert_eq!(runs[0].result.as_ref().unwrap().transition, "sla_breached");
    assert!(engine.run_due_timers(100).await.unwrap().is_empty(), "each fires once");
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    assert_eq!(record.state, "submitted");
    let history = db.store.history(&record.id).await.unwrap();
    let names: Vec<_> = history.iter().map(|e| e.transition.as_str()).collect();
    assert_eq!(names, ["submit", "sla_warning", "sla_breached"]);
    let leads: Vec<_> = db
        .store
        .effects(&record.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.recipient.as_deref() == Some("leads"))
        .map(|e| e.template.unwrap())
        .collect();
    assert_eq!(leads, ["sla_warning", "sla_breach"]);
}

async fn a_due_timer_fires_once_with_two_engines_racing(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let a = Arc::new(engine(db.store.clone(), clock.clone()));
    let b = Arc::new(engine(db.store.clone(), clock.clone()));
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
    let raced = ra.iter().chain(rb.iter()).filter(|r| r.result.is_some()).count();
    // Whatever one engine missed in the race, a later poll finishes; nothing acts twice.
    let rest = a.run_due_timers(100).await.unwrap();
    let acted = raced + rest.iter().filter(|r| r.result.is_some()).count();
    assert_eq!(acted, 20, "each of the 20 due timers acts exactly once");
    for t in &tickets {
        let record = db.store.appeal_by_ticket(t).await.unwrap().unwrap();
        let names: Vec<_> = db.store.history(&record.id).await.unwrap().into_iter().map(|e| e.transition).collect();
        assert_eq!(names, ["submit", "sla_warning", "sla_breached"], "{t}");
    }
}

async fn history_is_append_only(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(db.store.clone(), clock);
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
    let engine = engine(db.store.clone(), clock.clone());
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
    let engine = engine(db.store.clone(), clock);
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
    let engine = engine(db.store.clone(), clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    engine.fire(&t, &Fire::new("release"), &reviewer("ann"), None).await.unwrap();
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    let templates: Vec<_> =
        db.store.effects(&record.id).await.unwrap().into_iter().filter_map(|e| e.template).collect();
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
    let engine = engine(db.store.clone(), clock.clone());
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
    assert_eq!((g.dead_jobs, g.jobs_by_status.len()), (0, 0));
}

async fn an_action_attempt_conditioned_on_a_stale_appeal_version_changes_nothing(db: TestDb) {
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let engine = engine(db.store.clone(), clock);
    let t = engine.create(&request("acme"), &applicant(), None).await.unwrap().ticket;
    let record = db.store.appeal_by_ticket(&t).await.unwrap().unwrap();
    let now = monday_morning();
    let task = NewAction { action: "manual_task".into(), manual: true };
    db.store.insert_actions(&record.id, &[task], now).await.unwrap();
    let id = db.store.actions(&Default::default()).await.unwrap().into_iter().find(|a| a.manual).unwrap().id;
    // The appeal moves on (a claim) after the caller read version 1.
    engine.fire(&t, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    let attempt = |version| ActionAttempt {
        status: "succeeded",
        error: None,
        result: None,
        done_by: Some("ann".into()),
        if_appeal_version: Some(version),
    };
    let unchanged = db.store.record_action_attempt(id, &attempt(record.version), now).await.unwrap();
    assert_eq!((unchanged.status.as_str(), unchanged.attempts, unchanged.done_by), ("pending", 0, None));
    let done = db.store.record_action_attempt(id, &attempt(record.version + 1), now).await.unwrap();
    assert_eq!((done.status.as_str(), done.attempts, done.done_by.as_deref()), ("succeeded", 1, Some("ann")));
}
