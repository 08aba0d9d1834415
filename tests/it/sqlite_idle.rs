//! An idle worker on SQLite looks for work with reads: its timer loop reads when the
//! earliest timer falls due and claims only then, and its queues' workers fetch (a write
//! transaction) only once a read finds a job to take. So a writer holding the lock — a
//! long command, a migration, another process's burn-down — never keeps an idle worker
//! waiting, and the worker takes the lock from no one; and what another process arms or
//! enqueues, which wakes nothing in this one, is still found within a poll or so.

use crate::common::{self, TestDb};

use std::sync::Arc;
use std::time::{Duration, Instant};

use appealflow::app::health::Health;
use appealflow::engine::{ManualClock, SystemClock};
use appealflow::jobs::WorkerSettings;
use appealflow::startup::{DbOptions, WorkConfig};
use appealflow::store::{NotificationStatus, TimerStatus, WorkFilter};
use appealflow::workflow::Fire;
use sqlx::{Connection, SqliteConnection};

/// The worker's process: the database opened again, its writers giving up on the lock
/// after 200 ms, and the worker polling every 20 ms (heartbeats far apart, so none falls
/// in a test). Answers its loops' health and the sender that stops it.
async fn idle_worker(db: &TestDb) -> (Arc<Health>, tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let options = DbOptions { sqlite_busy: Duration::from_millis(200), ..DbOptions::default() };
    let (store, backend) = appealflow::startup::open_with(&db.url, &options).await.unwrap();
    let worker_db = TestDb { store, backend, url: db.url.clone(), _dir: None };
    let app = common::app(&worker_db, Arc::new(SystemClock), &WorkConfig::default(), None);
    let settings = WorkerSettings {
        poll: Duration::from_millis(20),
        heartbeat: Duration::from_secs(60),
        ..WorkerSettings::default()
    };
    let rt = app.runtime(settings);
    let health = rt.work.health().clone();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(async move {
        appealflow::jobs::run(rt, async move {
            let _ = stopped.changed().await;
        })
        .await
        .unwrap();
    });
    // Up: the timer loop made its first pass and each queue's worker registered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while health.statuses().len() < 3 || !health.problems().is_empty() {
        assert!(Instant::now() < deadline, "the worker's loops are not up: {:?}", health.statuses());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (health, stop, worker)
}

#[tokio::test]
async fn an_idle_worker_goes_on_polling_while_another_connection_holds_the_write_lock() {
    let db = common::sqlite().await;
    let (health, stop, worker) = idle_worker(&db).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Held for 1.5 s: 75 polls of the timer loop and of each queue, each of which would
    // fail after 200 ms if it waited for the lock.
    let mut conn = SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let statuses = health.statuses();
    assert_eq!(statuses.len(), 3, "the timer loop and two queues: {statuses:?}");
    for status in &statuses {
        assert!(
            status.up && status.restarts == 0 && status.last_error.is_none(),
            "{} failed while idle, so it waited for the write lock: {status:?}",
            status.name
        );
    }
    stop.send(true).unwrap();
    worker.await.unwrap();
}

#[tokio::test]
async fn an_idle_worker_fires_a_timer_and_sends_a_notice_another_process_wrote() {
    let db = common::sqlite().await;
    let (health, stop, worker) = idle_worker(&db).await;

    // Another process (a store of its own on the file, whose commits wake nothing in the
    // worker's) claims an appeal on a clock 4 h less 1 s behind the wall clock: the claim's
    // 4-hour expiry falls due, to the worker, a second from now.
    let other = db.reopen().await;
    let clock =
        Arc::new(ManualClock::new(chrono::Utc::now() - chrono::Duration::hours(4) + chrono::Duration::seconds(1)));
    let engine = common::app(&other, clock, &WorkConfig::default(), None).engine;
    let ticket = engine.create(&common::request("idle"), &common::applicant(), None).await.unwrap().ticket;
    engine.fire(&ticket, &Fire::new("claim"), &common::reviewer("r1"), None).await.unwrap();
    let appeal = other.store.appeal_by_ticket(&ticket).await.unwrap().unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let expiry = loop {
        let timers = db.store.timers(Some(&appeal.id)).await.unwrap();
        let expiry = timers.into_iter().find(|t| t.name == "claim_expiry").expect("the claim armed its expiry");
        if expiry.status != TimerStatus::Armed || Instant::now() > deadline {
            break expiry;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(expiry.status, TimerStatus::Fired, "the worker fired the claim's expiry: {expiry:?}");
    let late = expiry.settled_at.unwrap() - expiry.due_at;
    assert!(late < chrono::Duration::seconds(2), "fired {late} after it fell due (a poll is 20 ms)");
    // The notice the other process enqueued with the appeal wakes nothing here either
    // (and no heartbeat falls in the test): only the queue's read finds it to take.
    let filter = WorkFilter { appeal_id: Some(appeal.id.clone()), ..WorkFilter::default() };
    let received = loop {
        let notices = db.store.notifications(&filter).await.unwrap();
        let received = notices.into_iter().find(|n| n.template == "appeal_received").expect("the appeal's notice");
        if received.status != NotificationStatus::Pending || Instant::now() > deadline {
            break received;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(received.status, NotificationStatus::Sent, "the worker sent the other process's notice: {received:?}");
    assert!(health.problems().is_empty(), "{:?}", health.problems());
    stop.send(true).unwrap();
    worker.await.unwrap();
}
