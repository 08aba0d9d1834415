//! The job worker on apalis 1.0: explicit queue names, job arguments that carry IDs
//! only, a persisted backoff between attempts (recorded by the step with its failure),
//! a maximum number of attempts after which a job is dead (`appealflow jobs list
//! --dead`, `jobs retry ID`), one worker identity per start, short heartbeats so a
//! crashed worker's jobs are picked up again within seconds, and graceful shutdown.
//!
//! Jobs are written by [`ApalisJobs`] into apalis's tables through the transaction of
//! the commit that causes them (the store hands it its connection): there is no outbox
//! and no relay, and a job exists if and only if its cause committed.
//!
//! Every loop is supervised: a queue whose worker fails (a database error while
//! polling, say) is restarted with backoff, and so is the timer loop; while one is down,
//! [`crate::app::health::Health`] says so (`/readyz`, `/metrics`), and when one has been
//! failing for longer than `give_up_after`, [`run`] returns an error (the standalone
//! worker exits non-zero, so a supervisor restarts it).
//!
//! [`Running`] is the same runtime driven from a test or a simulation: it runs until the
//! queues hold nothing runnable and no timer is due on a manual clock, then moves the
//! clock to the next timer — the production handlers, polled from apalis's tables.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::app::work::{SimulationReport, StepRun, Work, WorkError};
use crate::engine::ManualClock;
use crate::store::{JobRef, JobWriter, PgConn, SqliteConn, StoreError};

mod running;
mod settings;
mod writer;

pub use running::*;
pub use settings::WorkerSettings;
pub use writer::ApalisJobs;

pub const ACTIONS_QUEUE: &str = "appealflow.actions";
pub const NOTIFICATIONS_QUEUE: &str = "appealflow.notifications";
/// The queue earlier versions relayed outbox rows to; its jobs are retired at start.
pub const LEGACY_EFFECTS_QUEUE: &str = "appealflow.effects";
pub const QUEUES: [&str; 2] = [ACTIONS_QUEUE, NOTIFICATIONS_QUEUE];
/// The name the timer loop reports its health under.
pub const TIMERS: &str = "timers";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionJob {
    pub action_id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationJob {
    pub notification_id: i64,
}

/// How many attempts a job gets before it is dead (the default of
/// `APPEALFLOW_MAX_ATTEMPTS`): written with every job, by whichever process enqueues it.
pub const DEFAULT_MAX_ATTEMPTS: usize = 8;

/// The two queues on one backend. Built by `startup` (which names the backend).
#[derive(Clone)]
pub enum Queues {
    Sqlite { actions: SqliteStorage<ActionJob>, notifications: SqliteStorage<NotificationJob> },
    Postgres { actions: PostgresStorage<ActionJob>, notifications: PostgresStorage<NotificationJob> },
}

impl Queues {
    pub fn backend(&self) -> &'static str {
        match self {
            Queues::Sqlite { .. } => "sqlite",
            Queues::Postgres { .. } => "postgres",
        }
    }
}

/// The timer loop's passes, so a driver can wait for one that started after it asked.
#[derive(Debug, Default)]
struct TimerPasses {
    wake: tokio::sync::Notify,
    started: AtomicU64,
    done: AtomicU64,
    changed: tokio::sync::Notify,
    fired: AtomicU64,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct Runtime {
    pub work: Arc<Work>,
    pub queues: Queues,
    pub settings: WorkerSettings,
    passes: Arc<TimerPasses>,
    janitor: Option<Arc<crate::app::janitor::Janitor>>,
}

impl Runtime {
    pub fn new(work: Arc<Work>, queues: Queues, settings: WorkerSettings) -> Self {
        Runtime { work, queues, settings, passes: Arc::new(TimerPasses::default()), janitor: None }
    }

    /// Also runs the janitor's passes (expired drafts, old counters, unreferenced files).
    pub fn with_janitor(mut self, janitor: Arc<crate::app::janitor::Janitor>) -> Self {
        self.janitor = Some(janitor);
        self
    }

    fn step_run(&self, id: &TaskId, attempt: &Attempt) -> StepRun {
        let attempt = attempt.current().max(1);
        StepRun {
            job_id: Some(id.to_string()),
            attempt,
            max_attempts: self.settings.max_attempts,
            backoff: self.settings.backoff(attempt),
        }
    }
}

/// A step's result as apalis needs it: a retryable failure fails the attempt (its
/// backoff is already recorded), a permanent one kills the job.
fn finish(job: &str, result: Result<(), WorkError>) -> Result<(), BoxDynError> {
    match result {
        Ok(()) => Ok(()),
        Err(WorkError::Retry(message)) => {
            warn!(job, %message, "job failed; will retry");
            Err(message.into())
        }
        Err(WorkError::Permanent(message)) => {
            error!(job, %message, "job failed permanently");
            Err(Box::new(AbortError::new(message)))
        }
    }
}

async fn handle_action(job: ActionJob, attempt: Attempt, id: TaskId, rt: Data<Runtime>) -> Result<(), BoxDynError> {
    debug!(action_id = job.action_id, "action job");
    let run = rt.step_run(&id, &attempt);
    finish("action", rt.work.run_action(job.action_id, &run).await)
}

async fn handle_notification(
    job: NotificationJob,
    attempt: Attempt,
    id: TaskId,
    rt: Data<Runtime>,
) -> Result<(), BoxDynError> {
    debug!(notification_id = job.notification_id, "notification job");
    let run = rt.step_run(&id, &attempt);
    finish("notification", rt.work.deliver(job.notification_id, &run).await)
}

async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs one queue's apalis worker until it fails or `stop` is raised (then it finishes
/// its in-flight jobs, within the grace period). `beat` is raised on its first
/// heartbeat: the proof it registered and polls.
async fn run_queue(
    rt: &Runtime,
    queue: &'static str,
    name: String,
    beat: Arc<AtomicBool>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let ctx = WorkerContext::new(&name);
    let health = rt.work.health().clone();
    let on_event = move |_: &WorkerContext, event: &Event| {
        if matches!(event, Event::HeartBeat) {
            beat.store(true, Ordering::SeqCst);
            health.up(queue);
        }
    };
    let (c, poll) = (rt.settings.concurrency, rt.settings.poll);
    macro_rules! run_worker {
        ($storage:expr, $handler:expr) => {{
            let worker = WorkerBuilder::new(ctx.clone())
                .backend($storage)
                .concurrency(c)
                .data(rt.clone())
                .on_event(on_event)
                .build($handler);
            worker.run().await.map_err(|e| e.to_string())
        }};
    }
    let work = async {
        match (&rt.queues, queue) {
            (Queues::Sqlite { actions, .. }, ACTIONS_QUEUE) => {
                run_worker!(actions.clone().poll_with_stream(jobs_to_take(rt, queue)), handle_action)
            }
            (Queues::Sqlite { notifications, .. }, _) => {
                run_worker!(notifications.clone().poll_with_stream(jobs_to_take(rt, queue)), handle_notification)
            }
            (Queues::Postgres { actions, .. }, ACTIONS_QUEUE) => {
                run_worker!(actions.clone().with_pubsub().poll_with_interval(poll), handle_action)
            }
            (Queues::Postgres { notifications, .. }, _) => {
                run_worker!(notifications.clone().with_pubsub().poll_with_interval(poll), handle_notification)
            }
        }
    };
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => result,
        _ = stopped(stop) => {
            // Stop taking work; let the jobs in flight finish (within the grace).
            let _ = ctx.stop();
            match tokio::time::timeout(rt.settings.grace, work).await {
                Ok(result) => result,
                Err(_) => {
                    warn!(queue, "jobs still running after the grace period; they return to the queue");
                    Ok(())
                }
            }
        }
    }
}

/// Wakes a queue's worker on SQLite, where its fetch (apalis's `UPDATE ... RETURNING`)
/// is a write transaction, whether or not a job waits: every poll, a read looks for a
/// job to take (`QueueAdmin::job_to_take`), and only one found (or a failed read, which
/// the fetch then reports) wakes the worker. An idle worker so reads twice a second per
/// queue instead of taking the write lock. A worker still fetches whenever something
/// else wakes it (a job done, its heartbeat), and after a batch it fetched, until a
/// fetch comes back empty: a backlog runs at the fetch's pace, not the poll's. The task
/// ends at the first poll after the worker (and so the receiver) is gone.
fn jobs_to_take(rt: &Runtime, queue: &'static str) -> JobsToTake {
    let (wake, woken) = tokio::sync::mpsc::channel(1);
    let store = rt.work.engine().store().clone();
    let poll = rt.settings.poll;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(poll).await;
            if wake.is_closed() {
                return;
            }
            if store.job_to_take(queue).await.unwrap_or(true) {
                // One wake waiting is enough: the worker fetches all it may take.
                let _ = wake.try_send(());
            }
        }
    });
    JobsToTake(woken)
}

/// The wakes of [`jobs_to_take`], as the stream apalis polls with.
struct JobsToTake(tokio::sync::mpsc::Receiver<()>);

impl futures_util::Stream for JobsToTake {
    type Item = ();

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<()>> {
        self.0.poll_recv(cx)
    }
}

/// Keeps one queue's worker running: restarted with backoff when it fails, under a new
/// identity each time; gives up (an error) when it has been failing for `give_up_after`.
async fn supervise_queue(
    rt: Runtime,
    queue: &'static str,
    base: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let health = rt.work.health().clone();
    health.starting(queue);
    let short = queue.rsplit('.').next().unwrap_or(queue);
    let mut failures = 0u32;
    for run in 0u64.. {
        let beat = Arc::new(AtomicBool::new(false));
        let result = run_queue(&rt, queue, format!("{base}-{short}-{run}"), beat.clone(), stop.clone()).await;
        if *stop.borrow() {
            return Ok(());
        }
        let error = match result {
            Ok(()) => "its worker stopped".to_string(),
            Err(e) => e,
        };
        if beat.load(Ordering::SeqCst) {
            failures = 0;
        }
        failures += 1;
        health.down(queue, &error);
        if let Some(limit) = rt.settings.give_up_after
            && health.down_for(queue) >= limit
        {
            health.gave_up(queue, &error);
            return Err(format!("queue {queue} has been failing for {}s: {error}", limit.as_secs()));
        }
        let wait = rt.settings.restart_backoff(failures);
        error!(queue, %error, restart_in_ms = wait.as_millis() as u64, "queue worker failed; restarting it");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
    Ok(())
}

/// Fires every due timer, a batch per transaction, until none is left or `stop` is
/// raised (then after the batches in hand, one per lane); answers how many fired. Timers that refuse to
/// act stay due: the next pass tries them again (no spinning on them here).
async fn fire_due(rt: &Runtime, stop: &tokio::sync::watch::Receiver<bool>) -> Result<u64, crate::engine::EngineError> {
    let firings = rt
        .work
        .engine()
        .run_due_timers_until(rt.settings.timer_batch, rt.settings.timer_lanes, || *stop.borrow())
        .await?;
    Ok(firings.iter().filter(|f| f.outcome == "fired").count() as u64)
}

/// The timer loop: fires due timers, then sleeps until the next one falls due (at most
/// one poll, so timers armed by other processes are found), or until woken — by a
/// caller, or by a timer armed meanwhile (by this process; on PostgreSQL by any). A
/// poll's sleep that no known timer ends is followed by a look at the earliest armed
/// timer (a read), and by a pass only when one is due: an idle loop takes no write lock
/// and claims nothing. Restarted with backoff after a failure; gives up like a queue.
async fn timer_loop(rt: Runtime, mut stop: tokio::sync::watch::Receiver<bool>) -> Result<(), String> {
    let health = rt.work.health().clone();
    let engine = rt.work.engine().clone();
    health.starting(TIMERS);
    let mut failures = 0u32;
    loop {
        rt.passes.started.fetch_add(1, Ordering::SeqCst);
        // How long to sleep, and whether a pass follows the sleep whatever is due then
        // (a known timer falls due as it ends, or a failed pass is tried again).
        let (wait, mut pass_after) = match fire_due(&rt, &stop).await {
            Ok(n) => {
                rt.passes.fired.fetch_add(n, Ordering::SeqCst);
                health.up(TIMERS);
                failures = 0;
                next_wait(&rt, &engine).await
            }
            Err(e) => {
                failures += 1;
                let error = e.to_string();
                health.down(TIMERS, &error);
                if let Some(limit) = rt.settings.give_up_after
                    && health.down_for(TIMERS) >= limit
                {
                    health.gave_up(TIMERS, &error);
                    return Err(format!("the timer loop has been failing for {}s: {error}", limit.as_secs()));
                }
                let wait = rt.settings.restart_backoff(failures);
                error!(%error, retry_in_ms = wait.as_millis() as u64, "timer loop failed; trying again");
                (wait, true)
            }
        };
        rt.passes.done.fetch_add(1, Ordering::SeqCst);
        rt.passes.changed.notify_waiters();
        let mut sleep = std::pin::pin!(tokio::time::sleep(wait));
        loop {
            // The sleep's end (a poll: a timer armed by another process may be due by
            // now), or a timer armed meanwhile, which may fall due before the sleep ends.
            let slept = tokio::select! {
                _ = &mut sleep => true,
                _ = engine.store().timer_armed() => false,
                _ = rt.passes.wake.notified() => break,
                _ = stop.changed() => return Ok(()),
            };
            if slept && pass_after {
                break;
            }
            // A pass when a timer is due already, else sleep until the earliest again.
            match due_now(&rt, &engine).await {
                Some((next, known)) => {
                    pass_after |= known;
                    sleep.as_mut().reset(tokio::time::Instant::now() + next);
                }
                None => break,
            }
        }
    }
}

/// How long to sleep after a pass: until the earliest armed timer falls due, at most one
/// poll; and whether that sleep ends at a timer that is due then (see [`due_now`]). One
/// due now already (left armed by the pass, refused say) is tried again after a poll: no
/// spinning on it.
async fn next_wait(rt: &Runtime, engine: &crate::engine::Engine) -> (Duration, bool) {
    due_now(rt, engine).await.unwrap_or((rt.settings.poll, true))
}

/// `None` when the earliest armed timer is due now, or the read fails (a pass reports the
/// failure); else how long until it falls due, at most one poll, and whether it falls due
/// as that wait ends (`false`: none within the poll, or no timer armed).
async fn due_now(rt: &Runtime, engine: &crate::engine::Engine) -> Option<(Duration, bool)> {
    let poll = rt.settings.poll;
    match engine.store().next_timer_due().await {
        Ok(Some(due)) if due <= engine.now() => None,
        Ok(Some(due)) => {
            let until = (due - engine.now()).to_std().unwrap_or(poll);
            Some((until.min(poll), until <= poll))
        }
        Ok(None) => Some((poll, false)),
        Err(_) => None,
    }
}

const JANITOR: &str = "janitor";

/// The janitor's passes, every `every`. A failing pass is reported (health, log) and
/// tried again at the next; housekeeping never stops the worker.
async fn janitor_loop(
    health: Arc<crate::app::health::Health>,
    janitor: Arc<crate::app::janitor::Janitor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    health.starting(JANITOR);
    loop {
        match janitor.run_once().await {
            Ok(_) => health.up(JANITOR),
            Err(e) => {
                let error = e.to_string();
                health.down(JANITOR, &error);
                warn!(%error, "janitor pass failed; trying again at the next");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(janitor.config().every) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Why the worker stopped on its own.
#[derive(Debug, thiserror::Error)]
#[error("worker gave up: {0}")]
pub struct GaveUp(pub String);

/// Runs the worker until `shutdown` resolves (then lets in-flight jobs finish within the
/// grace period) or until one of its loops gives up (an error).
pub async fn run(rt: Runtime, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), GaveUp> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut running = Running::spawn(rt, stop_tx.clone(), stop_rx);
    tokio::select! {
        _ = shutdown => {
            info!("shutdown requested");
            let _ = stop_tx.send(true);
            running.join().await
        }
        result = running.failed() => {
            let _ = stop_tx.send(true);
            let _ = running.join().await;
            Err(GaveUp(result))
        }
    }
}
