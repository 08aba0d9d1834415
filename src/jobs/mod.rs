//! The job worker on apalis 1.0: explicit queue names, job arguments that carry IDs
//! only, a persisted backoff between attempts (apalis's own retry re-runs a failed job
//! at once, so each failure moves the job's `run_at` forward in the database), a
//! maximum number of attempts after which a job is dead (`appealflow jobs list --dead`,
//! `jobs retry ID`), one worker identity per process start, short heartbeats so a
//! crashed worker's jobs are picked up again within seconds, and graceful shutdown.
//!
//! Beside the apalis workers run two small loops: the timer loop (durable timers live
//! in appealflow's own table and fire through the engine) and the relay, which turns
//! outbox rows — written in the same transaction as the transition that caused them —
//! into jobs, each pushed with an idempotency key so a repeated push is a no-op.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::app::work::{Followups, Work, WorkError};
use crate::store::{Store, WorkFilter};

pub const EFFECTS_QUEUE: &str = "appealflow.effects";
pub const ACTIONS_QUEUE: &str = "appealflow.actions";
pub const NOTIFICATIONS_QUEUE: &str = "appealflow.notifications";
pub const QUEUES: [&str; 3] = [EFFECTS_QUEUE, ACTIONS_QUEUE, NOTIFICATIONS_QUEUE];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EffectJob {
    pub outbox_id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionJob {
    pub action_id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationJob {
    pub notification_id: i64,
}

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Attempts before a job is dead.
    pub max_attempts: usize,
    /// Delay before the second attempt; doubles each time, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub concurrency: usize,
    /// How often idle workers, the relay and the timer loop look for work.
    pub poll: Duration,
    /// A worker silent for `heartbeat * missed_heartbeats` is presumed dead.
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    /// How long in-flight jobs get to finish after SIGTERM/SIGINT.
    pub grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            max_attempts: 8,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(3600),
            concurrency: 4,
            poll: Duration::from_millis(500),
            heartbeat: Duration::from_secs(3),
            missed_heartbeats: 3,
            grace: Duration::from_secs(30),
        }
    }
}

impl WorkerSettings {
    /// The wait after the `attempt`th failure (1-based): base, 2·base, 4·base, ...
    pub fn backoff(&self, attempt: usize) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }
}

/// The three queues on one backend. Built by `startup` (which names the backend).
#[derive(Clone)]
pub enum Queues {
    Sqlite {
        effects: SqliteStorage<EffectJob>,
        actions: SqliteStorage<ActionJob>,
        notifications: SqliteStorage<NotificationJob>,
    },
    Postgres {
        effects: PostgresStorage<EffectJob>,
        actions: PostgresStorage<ActionJob>,
        notifications: PostgresStorage<NotificationJob>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("job queue: {0}")]
pub struct QueueError(String);

macro_rules! push_to {
    ($storage:expr, $args:expr, $key:expr, $settings:expr) => {{
        let mut s = $storage.clone();
        let t = TaskBuilder::new($args).max_attempts($settings.max_attempts).idempotency_key($key).build();
        match s.push_task(t).await {
            Ok(()) => Ok(()),
            // The job already exists: SQLite ignores the repeat, PostgreSQL reports the
            // unique key. Either way the push is done.
            Err(e) if is_duplicate(&e.to_string()) => Ok(()),
            Err(e) => Err(QueueError(e.to_string())),
        }
    }};
}

fn is_duplicate(message: &str) -> bool {
    message.contains("duplicate key") || message.contains("UNIQUE constraint failed")
}

impl Queues {
    pub fn backend(&self) -> &'static str {
        match self {
            Queues::Sqlite { .. } => "sqlite",
            Queues::Postgres { .. } => "postgres",
        }
    }

    /// Enqueues an outbox row (a repeated push of the same row is ignored).
    pub async fn push_effect(&self, outbox_id: i64, settings: &WorkerSettings) -> Result<(), QueueError> {
        let key = format!("effect:{outbox_id}");
        match self {
            Queues::Sqlite { effects, .. } => push_to!(effects, EffectJob { outbox_id }, key, settings),
            Queues::Postgres { effects, .. } => push_to!(effects, EffectJob { outbox_id }, key, settings),
        }
    }

    pub async fn push_action(&self, action_id: i64, settings: &WorkerSettings) -> Result<(), QueueError> {
        let key = format!("action:{action_id}");
        match self {
            Queues::Sqlite { actions, .. } => push_to!(actions, ActionJob { action_id }, key, settings),
            Queues::Postgres { actions, .. } => push_to!(actions, ActionJob { action_id }, key, settings),
        }
    }

    pub async fn push_notification(&self, notification_id: i64, settings: &WorkerSettings) -> Result<(), QueueError> {
        let key = format!("notification:{notification_id}");
        match self {
            Queues::Sqlite { notifications, .. } => {
                push_to!(notifications, NotificationJob { notification_id }, key, settings)
            }
            Queues::Postgres { notifications, .. } => {
                push_to!(notifications, NotificationJob { notification_id }, key, settings)
            }
        }
    }

    /// Enqueues an action an operator put back to pending: a new job, since the
    /// action's first job has ended.
    pub async fn push_action_again(&self, action_id: i64, settings: &WorkerSettings) -> Result<(), QueueError> {
        let key = format!("action:{action_id}:retry:{}", uuid::Uuid::new_v4().simple());
        match self {
            Queues::Sqlite { actions, .. } => push_to!(actions, ActionJob { action_id }, key, settings),
            Queues::Postgres { actions, .. } => push_to!(actions, ActionJob { action_id }, key, settings),
        }
    }

    async fn push_followups(&self, f: &Followups, settings: &WorkerSettings) -> Result<(), QueueError> {
        for id in &f.actions {
            self.push_action(*id, settings).await?;
        }
        for id in &f.notifications {
            self.push_notification(*id, settings).await?;
        }
        Ok(())
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct Runtime {
    pub work: Arc<Work>,
    pub queues: Queues,
    pub settings: WorkerSettings,
}

impl Runtime {
    fn store(&self) -> &Arc<dyn Store> {
        self.work.engine().store()
    }

    /// The end of one job: push what it made necessary, or on a retryable failure move
    /// the job's next run forward in the database (so the backoff survives a restart).
    async fn finish(
        &self,
        job: &str,
        id: &TaskId,
        attempt: &Attempt,
        result: Result<Followups, WorkError>,
    ) -> Result<(), BoxDynError> {
        match result {
            Ok(f) => {
                self.queues.push_followups(&f, &self.settings).await?;
                Ok(())
            }
            Err(WorkError::Retry(message)) => {
                let delay = self.settings.backoff(attempt.current().max(1));
                warn!(job, %message, attempt = attempt.current(), retry_in_secs = delay.as_secs(), "job failed; will retry");
                self.store().defer_job(&id.to_string(), delay).await?;
                Err(message.into())
            }
            Err(WorkError::Permanent(message)) => {
                error!(job, %message, "job failed permanently");
                Err(Box::new(AbortError::new(message)))
            }
        }
    }
}

async fn handle_effect(job: EffectJob, attempt: Attempt, id: TaskId, rt: Data<Runtime>) -> Result<(), BoxDynError> {
    debug!(outbox_id = job.outbox_id, "effect job");
    let result = rt.work.process_effect(job.outbox_id).await;
    rt.finish("effect", &id, &attempt, result).await
}

async fn handle_action(job: ActionJob, attempt: Attempt, id: TaskId, rt: Data<Runtime>) -> Result<(), BoxDynError> {
    debug!(action_id = job.action_id, "action job");
    let result = rt.work.run_action(job.action_id).await;
    rt.finish("action", &id, &attempt, result).await
}

async fn handle_notification(
    job: NotificationJob,
    attempt: Attempt,
    id: TaskId,
    rt: Data<Runtime>,
) -> Result<(), BoxDynError> {
    debug!(notification_id = job.notification_id, "notification job");
    let result = rt.work.deliver(job.notification_id).await;
    rt.finish("notification", &id, &attempt, result).await
}

/// The timer loop: fires due timers, then sleeps until the next one falls due (at most
/// one poll, so timers armed by other processes are found). It runs apart from the
/// relay, so a backlog of outbox rows never delays a deadline.
async fn timer_loop(rt: Runtime, mut stop: tokio::sync::watch::Receiver<bool>) {
    let engine = rt.work.engine().clone();
    loop {
        match engine.run_due_timers(500).await {
            Ok(runs) => {
                for r in runs.iter().filter(|r| r.result.is_some()) {
                    info!(ticket = %r.timer.ticket, timer = %r.timer.name, "timer fired");
                }
            }
            Err(e) => error!(error = %e, "timer loop"),
        }
        // A timer still due now was refused and left armed: wait a whole poll rather
        // than spin on it.
        let wait = match engine.store().next_timer_due().await {
            Ok(Some(due)) if due > engine.now() => {
                (due - engine.now()).to_std().unwrap_or(rt.settings.poll).min(rt.settings.poll)
            }
            _ => rt.settings.poll,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
    }
}

/// The relay loop: every poll, outbox rows become jobs; every 20th, or when a step in
/// this process asks for one, the sweep.
async fn relay_loop(rt: Runtime, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut sweep_every = 0u32;
    let mut sweep_now = false;
    loop {
        if let Err(e) = relay(&rt, sweep_now || sweep_every == 0).await {
            error!(error = %e, "relay");
        }
        sweep_every = (sweep_every + 1) % 20;
        sweep_now = false;
        tokio::select! {
            _ = tokio::time::sleep(rt.settings.poll) => {}
            _ = rt.work.sweep_requested() => sweep_now = true,
            _ = stop.changed() => break,
        }
    }
}

async fn relay(rt: &Runtime, sweep: bool) -> Result<(), BoxDynError> {
    let store = rt.store();
    for effect in store.pending_effects(500).await? {
        // One row's failure must not hold up the others.
        match rt.queues.push_effect(effect.id, &rt.settings).await {
            Ok(()) => {
                store.set_effect_status(effect.id, "pending", "queued").await?;
            }
            Err(e) => warn!(outbox_id = effect.id, error = %e, "relay: push failed; retried on the next poll"),
        }
    }
    if sweep {
        // Work recorded by a step whose follow-up push was lost (a crash in between),
        // and appeals a crash left half-finished. Every push is idempotent.
        let pending = WorkFilter { status: Some("pending".into()), ..Default::default() };
        let mut pushes = Vec::new();
        for n in store.notifications(&pending).await? {
            pushes.push(rt.queues.push_notification(n.id, &rt.settings).await);
        }
        for a in store.actions(&pending).await?.into_iter().filter(|a| !a.manual) {
            pushes.push(rt.queues.push_action(a.id, &rt.settings).await);
        }
        for e in store.queued_effects(500).await? {
            pushes.push(rt.queues.push_effect(e.id, &rt.settings).await);
        }
        match rt.work.reconcile().await {
            Ok(f) => pushes.push(rt.queues.push_followups(&f, &rt.settings).await),
            Err(e) => warn!(error = %e, "reconcile"),
        }
        for e in pushes.into_iter().filter_map(Result::err) {
            warn!(error = %e, "sweep: push failed; retried on the next sweep");
        }
    }
    Ok(())
}

macro_rules! monitor {
    ($rt:expr, $name:expr, $effects:expr, $actions:expr, $notifications:expr, $wrap:expr) => {{
        let rt: Runtime = $rt;
        let name: String = $name;
        let s = rt.settings.clone();
        let (e, a, n) = ($effects.clone(), $actions.clone(), $notifications.clone());
        let (r1, r2, r3) = (rt.clone(), rt.clone(), rt.clone());
        let (n1, n2, n3) = (format!("{name}-effects"), format!("{name}-actions"), format!("{name}-notifications"));
        let poll = s.poll;
        let c = s.concurrency;
        Monitor::new()
            .register(move |_| {
                WorkerBuilder::new(n1.clone())
                    .backend($wrap(e.clone(), poll))
                    .concurrency(c)
                    .data(r1.clone())
                    .build(handle_effect)
            })
            .register(move |_| {
                WorkerBuilder::new(n2.clone())
                    .backend($wrap(a.clone(), poll))
                    .concurrency(c)
                    .data(r2.clone())
                    .build(handle_action)
            })
            .register(move |_| {
                WorkerBuilder::new(n3.clone())
                    .backend($wrap(n.clone(), poll))
                    .concurrency(c)
                    .data(r3.clone())
                    .build(handle_notification)
            })
            .shutdown_timeout(s.grace)
    }};
}

/// Runs the worker until `shutdown` resolves, then lets in-flight jobs finish (within
/// the grace period) before returning.
pub async fn run(rt: Runtime, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), BoxDynError> {
    // A fresh identity per process start: a restarted worker never mistakes a crashed
    // predecessor's jobs for its own, and they are recovered by heartbeat timeout.
    let name = format!("appealflow-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    info!(worker = %name, backend = rt.queues.backend(), "worker starting");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let timers = tokio::spawn(timer_loop(rt.clone(), stop_rx.clone()));
    let relay = tokio::spawn(relay_loop(rt.clone(), stop_rx));
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        Ok(())
    };
    let result = match rt.queues.clone() {
        Queues::Sqlite { effects, actions, notifications } => {
            monitor!(rt, name, effects, actions, notifications, |s: SqliteStorage<_>, poll| s.poll_with_interval(poll))
                .run_with_signal(signal)
                .await
        }
        Queues::Postgres { effects, actions, notifications } => {
            monitor!(rt, name, effects, actions, notifications, |s: PostgresStorage<_>, poll| s
                .with_pubsub()
                .poll_with_interval(poll))
            .run_with_signal(signal)
            .await
        }
    };
    let _ = timers.await;
    let _ = relay.await;
    info!("worker stopped");
    result.map_err(|e| e.into())
}
