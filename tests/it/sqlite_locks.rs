//! SQLite's one write lock, and the reads a write transaction makes on the side.
//!
//! A timer batch's firings plan their effects, and those plans read through the store
//! (the leads' addresses, an account, a history): a command's catch-up while it holds
//! the write lock, a burn-down's batch on a read connection before it takes the lock.
//! Writers arriving while a batch holds the lock each take a connection and wait in
//! SQLite's busy handler for it. The batch's reads must not need one of those
//! connections: if they did, a burst of writers as large as the pool would stall
//! everything until the busy timeout failed them ("database is locked"), the batch
//! included. And a batch holding the lock while the pool fills must still write and
//! commit.
//!
//! And how writers wait for that lock: often enough to take it in the moment another
//! leaves it free, and no longer than their busy timeout.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{TestDb, at, examples};
use appealflow::app::intake::LocalFiles;
use appealflow::engine::{Clock, ManualClock};
use appealflow::failpoint::{self, Mode};
use appealflow::startup::{Backend, DbOptions, WorkConfig};
use appealflow::store::WorkFilter;

const KEY: &str = "sqlite-locks-test-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timer_batch_reads_while_writers_fill_the_pool_waiting_for_its_lock() {
    batch_holding_the_lock_while_writers_fill_the_pool(false).await;
}

/// As above, for a command's catch-up of its appeal's due timers, which claims and
/// decides them under the write lock: its firings' reads go through while the writers
/// hold every connection of the writers' pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catch_up_reads_while_writers_fill_the_pool_waiting_for_its_lock() {
    batch_holding_the_lock_while_writers_fill_the_pool(true).await;
}

/// A batch of due timers paused once it holds the write lock (`timers.after_claim`) —
/// a burn-down's, or a command's catch-up (`catch_up`) — while as many writers as the
/// pool has connections wait; then it goes on, writes and commits, and each writer goes
/// through after it.
async fn batch_holding_the_lock_while_writers_fill_the_pool(catch_up: bool) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("appealflow.db").display());
    // A short busy timeout: a writer that waits it out fails, and the test sees it.
    let options = DbOptions { sqlite_busy: Duration::from_secs(5), ..Default::default() };
    let (store, backend) = appealflow::startup::open_with(&url, &options).await.unwrap();
    let db = TestDb { store, backend, url, _dir: Some(dir) };
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let blobs = tempfile::tempdir().unwrap();
    let config = WorkConfig { lead_emails: vec!["leads@example.com".into()], ..Default::default() };
    let app = common::app(&db, clock.clone(), &config, Some(common::intake_config(blobs.path(), KEY)));
    common::import_example_accounts(&db, KEY, clock.now()).await;
    let files = LocalFiles { base: examples() };
    let draft = crate::worker::draft("draft-individual.json", |_| {});
    let ticket = app.intake().unwrap().submit(draft, &files, None).await.unwrap().ticket;

    // Thursday 00:00 in Shanghai: the review SLA's warning is due; it tells the leads.
    clock.set(at("2026-03-12T00:00:00+08:00"));
    let scope = db.store.scope().to_string();
    failpoint::arm(&scope, "timers.after_claim", Mode::Pause, 1);
    let engine = app.engine.clone();
    let record = db.store.appeal_by_ticket(&ticket).await.unwrap().unwrap();
    let batch = tokio::spawn(async move {
        if catch_up {
            let record = engine.catch_up(record).await?;
            Ok(record.version)
        } else {
            let firings = engine.run_due_timers(16).await?;
            assert!(
                firings.iter().any(|f| f.timer.name == "review_sla.warning" && f.outcome == "fired"),
                "the warning fired: {firings:?}"
            );
            Ok::<_, appealflow::engine::EngineError>(0)
        }
    });
    assert_eq!(failpoint::paused(&scope).await, "timers.after_claim");

    // The batch holds the write lock. As many writers as the pool has connections: all
    // but one take a connection and wait for the lock, the last waits for a connection.
    let Backend::Sqlite(pool) = &db.backend else { unreachable!("a SQLite database") };
    let connections = pool.options().get_max_connections();
    let expires = at("2026-03-13T00:00:00+08:00");
    let writers: Vec<_> = (0..connections)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move { store.count_hit(&format!("writer-{i}"), 1, expires).await })
        })
        .collect();
    let since = Instant::now();
    while pool.size() < connections || pool.num_idle() > 0 {
        assert!(since.elapsed() < Duration::from_secs(10), "the writers did not take the pool's connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    failpoint::resume(&scope);

    batch.await.unwrap().expect("the batch fires and commits");
    for w in writers {
        assert_eq!(w.await.unwrap().expect("each writer goes through once the batch commits"), 1);
    }
    let appeal = db.store.appeal_by_ticket(&ticket).await.unwrap().unwrap();
    let notes = db.store.notifications(&WorkFilter { appeal_id: Some(appeal.id), ..Default::default() }).await.unwrap();
    assert!(
        notes.iter().any(|n| n.recipient == "leads@example.com" && n.template == "sla_warning"),
        "the leads' warning was planned with the addresses the batch read: {notes:?}"
    );
}

/// A database whose writers give up after `busy`, and its writers' pool.
async fn sqlite_with_busy(busy: Duration) -> (TestDb, sqlx::SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("appealflow.db").display());
    let options = DbOptions { sqlite_busy: busy, ..Default::default() };
    let (store, backend) = appealflow::startup::open_with(&url, &options).await.unwrap();
    let Backend::Sqlite(pool) = &backend else { unreachable!("a SQLite database") };
    let pool = pool.clone();
    sqlx::query("CREATE TABLE lock_probe (who TEXT NOT NULL)").execute(&pool).await.unwrap();
    (TestDb { store, backend, url, _dir: Some(dir) }, pool)
}

/// One write transaction on a connection of `pool`: takes the write lock, writes `who`,
/// holds the lock `hold`, commits. Answers when it took the lock.
async fn write(pool: &sqlx::SqlitePool, who: &str, hold: Duration) -> Result<Instant, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
    let took = Instant::now();
    sqlx::query("INSERT INTO lock_probe (who) VALUES ($1)").bind(who).execute(&mut *tx).await?;
    tokio::time::sleep(hold).await;
    tx.commit().await?;
    Ok(took)
}

/// A writer that takes the lock back soon after each commit (the timer loop's batches
/// leave it free for a moment between two) must not keep a waiting writer out: the
/// waiter tries often enough to take the lock in the first free moment. SQLite's own
/// busy handler would not: after 228 ms of waiting it next tries at 328 ms, so a
/// writer waiting from the start of a 250 ms hold misses a 50 ms gap at 250 ms and
/// waits for the second hold too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_writer_takes_the_lock_in_the_first_free_moment() {
    let (_db, pool) = sqlite_with_busy(Duration::from_secs(10)).await;
    let mut holder = pool.acquire().await.unwrap();
    let tx = sqlx::Connection::begin_with(&mut *holder, "BEGIN IMMEDIATE").await.unwrap();
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { write(&pool, "waiter", Duration::ZERO).await })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    tx.commit().await.unwrap();
    drop(holder);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = write(&pool, "holder", Duration::from_millis(250)).await.unwrap();
    let waiter = waiting.await.unwrap().expect("the waiter writes within its busy timeout");
    assert!(waiter < second, "the waiter took the lock in the gap, before the holder's second hold");
    let order: Vec<String> =
        sqlx::query_scalar("SELECT who FROM lock_probe ORDER BY rowid").fetch_all(&pool).await.unwrap();
    assert_eq!(order, ["waiter", "holder"]);
}

/// The writers' busy handler keeps the busy timeout: a writer that cannot take the lock
/// fails with "database is locked" once the timeout has passed, not sooner and not only
/// when the lock comes free, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_gives_up_once_its_busy_timeout_has_passed() {
    let busy = Duration::from_millis(300);
    let (_db, pool) = sqlite_with_busy(busy).await;
    let mut holder = pool.acquire().await.unwrap();
    let tx = sqlx::Connection::begin_with(&mut *holder, "BEGIN IMMEDIATE").await.unwrap();
    let start = Instant::now();
    let refused = write(&pool, "waiter", Duration::ZERO).await.expect_err("the lock stays taken past the timeout");
    let waited = start.elapsed();
    assert!(refused.to_string().contains("database is locked"), "{refused}");
    assert!(waited >= busy, "gave up after {waited:?}, before its busy timeout");
    assert!(waited < Duration::from_millis(1500), "gave up after {waited:?}, long after its busy timeout");
    tx.commit().await.unwrap();
    drop(holder);
    let written: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM lock_probe").fetch_one(&pool).await.unwrap();
    assert_eq!(written, 0);
}

/// Stale for every timer it decides, after waiting for `release` in its first decision;
/// tells `claimed` once the claim is read.
struct Pausing {
    claimed: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    release: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

#[async_trait::async_trait]
impl appealflow::store::TimerHandler for Pausing {
    async fn decide(
        &self,
        _: &appealflow::store::TimerRecord,
        _: &appealflow::store::AppealRecord,
    ) -> appealflow::store::TimerVerdict {
        if let Some(release) = self.release.lock().await.take() {
            let _ = release.await;
        }
        appealflow::store::TimerVerdict::Stale("settled by the test".into())
    }

    fn prepare(&self, _: Vec<appealflow::store::TimerRecord>) {
        if let Some(claimed) = self.claimed.lock().unwrap().take() {
            let _ = claimed.send(());
        }
    }

    /// As a batch of a burn-down in two lanes.
    fn beside_others(&self) -> bool {
        true
    }
}

/// A burn-down's batch is claimed and decided on a read connection, before it takes the
/// write lock. A command that changes an appeal meanwhile (it takes the lock, which the
/// batch does not hold) makes that decision old: under the lock the batch finds the
/// appeal at another version and writes nothing for it — its timer is left armed as
/// `changed`, for a later batch to decide on what the appeal became — where writing it
/// would have settled the timer on the state before the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_decided_before_the_lock_writes_nothing_for_an_appeal_changed_meanwhile() {
    let db = common::sqlite().await;
    let engine = common::engine(&db, Arc::new(ManualClock::new(common::monday_morning())));
    let ticket = engine.create(&common::request("acct0"), &common::applicant(), None).await.unwrap().ticket;
    let id = db.store.appeal_by_ticket(&ticket).await.unwrap().unwrap().id;
    let (claimed, was_claimed) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel();
    let handler =
        Pausing { claimed: std::sync::Mutex::new(Some(claimed)), release: tokio::sync::Mutex::new(Some(released)) };
    let store = db.store.clone();
    // Both of the appeal's review SLA timers are due then; the batch claims the first.
    let due = at("2026-03-20T00:00:00+08:00");
    let batch = tokio::spawn(async move { store.fire_due_timers(due, 10, None, &[], &handler).await });
    was_claimed.await.unwrap();
    let claim = appealflow::workflow::Fire::new("claim");
    engine.fire(&ticket, &claim, &common::reviewer("ann"), None).await.expect("the claim goes through meanwhile");
    let before = db.store.timers(Some(&id)).await.unwrap();
    release.send(()).unwrap();

    let firings = batch.await.unwrap().expect("the batch commits");
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].outcome, appealflow::store::TimerFiring::CHANGED, "{firings:?}");
    let after = db.store.timers(Some(&id)).await.unwrap();
    let statuses = |timers: &[appealflow::store::TimerRecord]| {
        timers.iter().map(|t| (t.id, t.status, t.settled_at)).collect::<Vec<_>>()
    };
    assert_eq!(statuses(&after), statuses(&before), "the batch wrote nothing for the changed appeal");
    assert!(firings[0].progressed(), "the burn-down goes on: a later batch decides the timer again");
}
