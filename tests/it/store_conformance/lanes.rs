//! Timer batches in flight side by side (`Engine::run_due_timers_until` with lanes): a
//! claim leaves out the appeals another batch of the process holds, without locking
//! their timers, and a burn-down in several lanes fires every timer once, each appeal's
//! in its order; a stop or a failure ends every lane after its batch in hand.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appealflow::failpoint::{self, Mode};

use appealflow::engine::ManualClock;
use appealflow::store::{AppealRecord, TimerHandler, TimerRecord, TimerVerdict};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::common::{self, TestDb, applicant, engine, monday_morning, request};

on_both_backends!(
    a_claim_leaves_out_the_appeals_another_batch_holds,
    lanes_fire_every_timer_once_in_each_appeals_order,
    a_stop_ends_a_lane_waiting_for_another_without_a_further_claim,
    a_lane_that_fails_stops_the_others_after_their_batch_in_hand
);

/// Appeals `acct0`.. `acct{n-1}` created Monday morning (their ids in that order), and
/// the instant at which each one's review SLA and its warning are both due.
async fn appeals(db: &TestDb, n: usize) -> (Vec<String>, DateTime<Utc>) {
    let engine = engine(db, Arc::new(ManualClock::new(monday_morning())));
    let mut ids = Vec::new();
    for i in 0..n {
        let ticket = engine.create(&request(&format!("acct{i}")), &applicant(), None).await.unwrap().ticket;
        ids.push(db.store.appeal_by_ticket(&ticket).await.unwrap().unwrap().id);
    }
    (ids, common::at("2026-03-20T00:00:00+08:00"))
}

/// Leaves every claimed timer armed, after waiting for `release` (when given) in its
/// first decision; tells `claimed` once the claim is read.
#[derive(Default)]
struct Holding {
    claimed: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    release: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

#[async_trait]
impl TimerHandler for Holding {
    async fn decide(&self, _: &TimerRecord, _: &AppealRecord) -> TimerVerdict {
        if let Some(release) = self.release.lock().await.take() {
            let _ = release.await;
        }
        TimerVerdict::Leave("held by the test".into())
    }

    fn prepare(&self, _: Vec<TimerRecord>) {
        if let Some(claimed) = self.claimed.lock().unwrap().take() {
            let _ = claimed.send(());
        }
    }
}

/// The appeals of the timers a batch claimed.
fn claimed_appeals(firings: &[appealflow::store::TimerFiring]) -> Vec<String> {
    firings.iter().map(|f| f.timer.appeal_id.clone()).collect()
}

/// Two appeals, each with its review SLA and the SLA's warning due. A claim besides the
/// first appeal takes only the second's timer. On PostgreSQL, with both batches in
/// flight (the first holding the first appeal's warning), the first appeal's SLA timer is
/// locked by neither: the claim besides it did not take it before skipping it.
async fn a_claim_leaves_out_the_appeals_another_batch_holds(db: TestDb) {
    let (ids, due) = appeals(&db, 2).await;
    let store = db.store.clone();
    // In turn, as SQLite's one writer takes them: a claim besides the first appeal.
    let firings = store.fire_due_timers(due, 10, None, &ids[..1], &Holding::default()).await.unwrap();
    assert_eq!(claimed_appeals(&firings), [ids[1].clone()], "one timer per appeal, none of the one held");
    let firings = store.fire_due_timers(due, 10, None, &[], &Holding::default()).await.unwrap();
    assert_eq!(claimed_appeals(&firings), ids, "left armed, claimed again by a claim besides nothing");
    if db.url.starts_with("sqlite") {
        return;
    }
    // Side by side: the first batch holds the first appeal (its earliest timer, the
    // warning), the second claims besides it.
    let batch = |besides: Vec<String>| {
        let (claimed, is_claimed) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel();
        let handler = Holding { claimed: Mutex::new(Some(claimed)), release: tokio::sync::Mutex::new(Some(released)) };
        let store = store.clone();
        let limit = if besides.is_empty() { 1 } else { 10 };
        let run = tokio::spawn(async move { store.fire_due_timers(due, limit, None, &besides, &handler).await });
        (run, is_claimed, release)
    };
    let (first, claimed, release_first) = batch(vec![]);
    claimed.await.unwrap();
    let (second, claimed, release_second) = batch(vec![ids[0].clone()]);
    claimed.await.unwrap();
    let mut probe = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    let mut locked = async |appeal: &str| {
        let mut tx = sqlx::Connection::begin(&mut probe).await.unwrap();
        let lock = sqlx::query("SELECT id FROM timers WHERE appeal_id = $1 AND name = 'review_sla' FOR UPDATE NOWAIT")
            .bind(appeal)
            .fetch_all(&mut *tx)
            .await;
        tx.rollback().await.unwrap();
        match lock {
            Ok(rows) => {
                assert_eq!(rows.len(), 1, "{appeal}'s review SLA");
                false
            }
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") => true,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(!locked(&ids[0]).await, "the held appeal's other timer is left unlocked by the claim besides it");
    assert!(locked(&ids[1]).await, "the second batch's appeal's timers are locked (the probe can see a lock)");
    let _ = (release_first.send(()), release_second.send(()));
    assert_eq!(claimed_appeals(&first.await.unwrap().unwrap()), [ids[0].clone()]);
    assert_eq!(claimed_appeals(&second.await.unwrap().unwrap()), [ids[1].clone()]);
}

/// Twelve appeals, each with its review SLA and the SLA's warning due, fired two at a
/// time in two lanes and in three: every timer fires once, and every appeal's warning
/// before its breach (a lane never takes an appeal another holds).
async fn lanes_fire_every_timer_once_in_each_appeals_order(db: TestDb) {
    burn_down_in_lanes(&db, 2).await;
    let other = match db.url.starts_with("sqlite") {
        true => common::sqlite().await,
        false => common::postgres("lanes, three").await.expect("a second PostgreSQL database"),
    };
    burn_down_in_lanes(&other, 3).await;
}

async fn burn_down_in_lanes(db: &TestDb, lanes: usize) {
    let (ids, due) = appeals(db, 12).await;
    let engine = engine(db, Arc::new(ManualClock::new(due)));
    let runs = engine.run_due_timers_until(2, Some(lanes), || false).await.unwrap();
    assert_eq!(runs.len(), 24, "{lanes} lanes: {runs:?}");
    assert!(runs.iter().all(|r| r.outcome == "fired"), "{runs:?}");
    let mut timers: Vec<i64> = runs.iter().map(|r| r.timer.id).collect();
    timers.sort();
    timers.dedup();
    assert_eq!(timers.len(), 24, "each timer fired once");
    // In the order the batches were claimed (not lane by lane): every claim takes the
    // earliest timers no other lane holds, so all twelve warnings (due first) come before
    // any breach.
    let names: Vec<&str> = runs.iter().map(|r| r.timer.name.as_str()).collect();
    assert_eq!(names[..12], ["review_sla.warning"; 12], "{lanes} lanes: {names:?}");
    assert_eq!(names[12..], ["review_sla"; 12], "{lanes} lanes: {names:?}");
    for id in &ids {
        let history = db.store.history(id).await.unwrap();
        let events: Vec<&str> =
            history.iter().map(|e| e.transition.as_str()).filter(|t| t.starts_with("sla_")).collect();
        assert_eq!(events, ["sla_warning", "sla_breached"], "{lanes} lanes, appeal {id}");
    }
    assert!(db.store.due_timers(due, 100).await.unwrap().is_empty(), "nothing left due");
}

/// One appeal with its review SLA and the SLA's warning both due, two lanes. The first
/// lane's batch takes the warning and holds the appeal; it is paused before its commit.
/// The second lane's claim, besides that appeal, finds nothing and waits for the first
/// batch to end. A stop raised meanwhile ends both: the first after its batch, the
/// second without claiming again — the breach stays armed for the next run. (On both
/// backends: on SQLite the second lane claims on a read connection too, before the
/// write lock.)
async fn a_stop_ends_a_lane_waiting_for_another_without_a_further_claim(db: TestDb) {
    let (ids, due) = appeals(&db, 1).await;
    let engine = engine(&db, Arc::new(ManualClock::new(due)));
    let scope = db.store.scope().to_string();
    failpoint::arm(&scope, "timers.before_commit", Mode::Pause, 1);
    let stop = AtomicBool::new(false);
    let control = async {
        assert_eq!(failpoint::paused(&scope).await, "timers.before_commit");
        // Time for the second lane's claim to come back empty and wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        failpoint::resume(&scope);
    };
    let (runs, ()) = tokio::join!(engine.run_due_timers_until(10, Some(2), || stop.load(Ordering::SeqCst)), control);
    failpoint::disarm(&scope);
    let names: Vec<&str> = runs.as_ref().unwrap().iter().map(|r| r.timer.name.as_str()).collect();
    assert_eq!(names, ["review_sla.warning"], "the batch in hand only");
    let left = db.store.due_timers(due, 100).await.unwrap();
    assert_eq!(left.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["review_sla"], "the breach left armed");
    let runs = engine.run_due_timers_until(10, Some(2), || false).await.unwrap();
    assert_eq!(runs.iter().map(|r| (r.timer.name.as_str(), r.outcome)).collect::<Vec<_>>(), [("review_sla", "fired")]);
    assert_eq!(db.store.history(&ids[0]).await.unwrap().iter().filter(|e| e.transition.starts_with("sla_")).count(), 2);
}

/// Twelve appeals (24 due timers), batches of two in two lanes; the second batch to reach
/// its commit fails. The run reports the failure, and the other lane ends after its batch
/// in hand: of the 24 timers, the first batch fired and at most one more — not the rest,
/// which the next run fires, each once.
async fn a_lane_that_fails_stops_the_others_after_their_batch_in_hand(db: TestDb) {
    let (ids, due) = appeals(&db, 12).await;
    let engine = engine(&db, Arc::new(ManualClock::new(due)));
    let scope = db.store.scope().to_string();
    failpoint::arm(&scope, "timers.before_commit", Mode::Error, 2);
    let failed = engine.run_due_timers_until(2, Some(2), || false).await;
    failpoint::disarm(&scope);
    let err = failed.expect_err("the failed batch fails the run");
    assert!(err.to_string().contains("timers.before_commit"), "{err}");
    let left = db.store.due_timers(due, 100).await.unwrap().len();
    assert!(
        (20..=22).contains(&left),
        "the first batch fired, and at most the other lane's batch in hand: {left} of 24 left"
    );
    let runs = engine.run_due_timers_until(2, Some(2), || false).await.unwrap();
    assert_eq!(runs.len(), left);
    assert!(runs.iter().all(|r| r.outcome == "fired"), "{runs:?}");
    for id in &ids {
        let events = db.store.history(id).await.unwrap();
        let sla: Vec<&str> = events.iter().map(|e| e.transition.as_str()).filter(|t| t.starts_with("sla_")).collect();
        assert_eq!(sla, ["sla_warning", "sla_breached"], "appeal {id}: each timer fired once, in order");
    }
}
