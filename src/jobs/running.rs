//! A worker running in this process (`Running`): started, stopped and joined as one, run
//! on a manual clock until a simulated instant, and settled (nothing left to do) in tests
//! and simulations.

use super::*;

/// A worker running in this process: the production loops, joined or stopped as one.
pub struct Running {
    rt: Runtime,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: tokio::task::JoinSet<Result<(), String>>,
}

impl Running {
    /// Starts the worker: first the work an earlier version left (once), then a
    /// supervised worker per queue and the timer loop.
    pub fn start(rt: Runtime) -> Running {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        Running::spawn(rt, stop_tx, stop_rx)
    }

    pub(super) fn spawn(
        rt: Runtime,
        stop_tx: tokio::sync::watch::Sender<bool>,
        stop_rx: tokio::sync::watch::Receiver<bool>,
    ) -> Running {
        // A fresh identity per start: a restarted worker never mistakes a crashed
        // predecessor's jobs for its own, and they are recovered by heartbeat timeout.
        let base = format!("appealflow-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
        info!(worker = %base, backend = rt.queues.backend(), "worker starting");
        let mut tasks = tokio::task::JoinSet::new();
        let adopt = rt.clone();
        let (go_tx, go_rx) = tokio::sync::watch::channel(false);
        tasks.spawn(async move {
            // Before the queues: a legacy row becomes its jobs first.
            let result = adopt.work.adopt_earlier_work(LEGACY_EFFECTS_QUEUE).await;
            let _ = go_tx.send(true);
            match result {
                Ok(_) => Ok(()),
                Err(e) => {
                    warn!(error = %e, "could not carry out the work an earlier version left; trying again at the next start");
                    Ok(())
                }
            }
        });
        for queue in QUEUES {
            let (rt, base, stop, mut go) = (rt.clone(), base.clone(), stop_rx.clone(), go_rx.clone());
            tasks.spawn(async move {
                let _ = go.wait_for(|g| *g).await;
                supervise_queue(rt, queue, base, stop).await
            });
        }
        if let Some(janitor) = rt.janitor.clone() {
            tasks.spawn(janitor_loop(rt.work.health().clone(), janitor, stop_rx.clone()));
        }
        tasks.spawn(timer_loop(rt.clone(), stop_rx));
        Running { rt, stop: stop_tx, tasks }
    }

    /// Resolves when a loop gives up.
    pub(super) async fn failed(&mut self) -> String {
        while let Some(result) = self.tasks.join_next().await {
            match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => return e,
                Err(e) => return format!("a worker loop panicked: {e}"),
            }
        }
        std::future::pending().await
    }

    /// Waits for every loop to end (after a stop).
    pub(super) async fn join(&mut self) -> Result<(), GaveUp> {
        let mut first = None;
        while let Some(result) = self.tasks.join_next().await {
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(e) => format!("a worker loop panicked: {e}"),
            };
            first.get_or_insert(error);
        }
        first.map_or(Ok(()), |e| Err(GaveUp(e)))
    }

    /// Stops taking work, lets in-flight jobs finish, and waits for every loop.
    pub async fn stop(mut self) -> Result<(), GaveUp> {
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Ends every loop at once, mid-step, as a crash would: nothing is committed that was
    /// not committed already, and running jobs stay locked by this worker until its
    /// heartbeat lapses.
    pub async fn abort(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Asks the timer loop for a pass and waits for one that started after the asking;
    /// answers how many timers fired in it (and any passes before it).
    async fn timer_pass(&self) -> u64 {
        let p = &self.rt.passes;
        let before = p.fired.load(Ordering::SeqCst);
        let target = p.started.load(Ordering::SeqCst) + 1;
        loop {
            let changed = p.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if p.done.load(Ordering::SeqCst) >= target {
                return p.fired.load(Ordering::SeqCst) - before;
            }
            p.wake.notify_one();
            changed.await;
        }
    }

    /// Waits until, at the clock's present instant, nothing is left to do: no job that
    /// is running or may run now (jobs waiting out a backoff do not count), and a pass
    /// of the timer loop that found nothing due. Fails after `limit`.
    pub async fn settle(&self, limit: Duration) -> Result<(), SettleError> {
        let store = self.rt.work.engine().store().clone();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            loop {
                if tokio::time::Instant::now() > deadline {
                    let runnable = store.runnable_jobs(&QUEUES).await.unwrap_or(-1);
                    let jobs = unfinished_jobs(store.as_ref()).await;
                    return Err(SettleError::Timeout { runnable, health: self.rt.work.health().problems(), jobs });
                }
                if let Some(problem) = self.rt.work.health().statuses().into_iter().find(|s| s.gave_up) {
                    return Err(SettleError::GaveUp(problem.last_error.unwrap_or(problem.name)));
                }
                if store.runnable_jobs(&QUEUES).await? == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let fired = tokio::time::timeout_at(deadline, self.timer_pass()).await.map_err(|_| {
                SettleError::Timeout { runnable: -1, health: self.rt.work.health().problems(), jobs: Vec::new() }
            })?;
            if fired == 0 && store.runnable_jobs(&QUEUES).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Deterministic simulation on a manual clock: settles, then moves the clock to each
    /// timer due up to `until` in turn (each fires at its own instant, with all it causes
    /// carried out before the clock moves on), then to `until`. Jobs waiting out a
    /// backoff wait in real time, so a simulation runs with a zero backoff.
    pub async fn run_until(
        &self,
        clock: &ManualClock,
        until: DateTime<Utc>,
        limit: Duration,
    ) -> Result<SimulationReport, SettleError> {
        let store = self.rt.work.engine().store().clone();
        let before = Counts::read(store.as_ref()).await?;
        let fired_before = self.rt.passes.fired.load(Ordering::SeqCst);
        self.settle(limit).await?;
        let mut last = None;
        loop {
            let now = self.rt.work.engine().now();
            let next = store.due_timers(until, 1).await?.into_iter().next().map(|t| t.due_at);
            let Some(due) = next.filter(|d| *d > now) else { break };
            // A due timer that refuses to act stays armed at the same instant: stop
            // rather than spin on it.
            if last == Some(due) {
                break;
            }
            last = Some(due);
            clock.set(due);
            self.settle(limit).await?;
        }
        if until > self.rt.work.engine().now() {
            clock.set(until);
        }
        self.settle(limit).await?;
        let after = Counts::read(store.as_ref()).await?;
        Ok(SimulationReport {
            timers_fired: (self.rt.passes.fired.load(Ordering::SeqCst) - fired_before) as usize,
            jobs_done: after.jobs_done.saturating_sub(before.jobs_done),
            actions_succeeded: after.actions.saturating_sub(before.actions),
            notifications_sent: after.sent.saturating_sub(before.sent),
            dead_jobs: after.dead,
        })
    }
}

/// The jobs not done (status, attempts, when due, last result), for a settle that timed
/// out: what a reader needs to tell a stuck job from a slow one.
async fn unfinished_jobs(store: &dyn crate::store::Store) -> Vec<String> {
    let filter = crate::store::JobFilter { dead_only: false, queue: None, limit: Some(1000) };
    match store.jobs(&filter).await {
        Ok(jobs) => jobs
            .into_iter()
            .filter(|j| j.status.is_open())
            .take(20)
            .map(|j| {
                format!(
                    "{} {} {} attempts {}/{} due {} last {:?}",
                    j.queue, j.id, j.status, j.attempts, j.max_attempts, j.run_at, j.last_result
                )
            })
            .collect(),
        Err(e) => vec![format!("could not list the jobs: {e}")],
    }
}

/// What a simulation counts, read from the database.
struct Counts {
    jobs_done: usize,
    actions: usize,
    sent: usize,
    dead: usize,
}

impl Counts {
    async fn read(store: &dyn crate::store::Store) -> Result<Counts, StoreError> {
        let jobs = store.jobs(&crate::store::JobFilter::default()).await?;
        let actions = store.actions(&crate::store::WorkFilter::default()).await?;
        let notifications = store.notifications(&crate::store::WorkFilter::default()).await?;
        Ok(Counts {
            jobs_done: jobs.iter().filter(|j| j.status == crate::store::JobStatus::Done).count(),
            actions: actions.iter().filter(|a| a.status == crate::store::ActionStatus::Succeeded).count(),
            sent: notifications.iter().filter(|n| n.status == crate::store::NotificationStatus::Sent).count(),
            dead: jobs.iter().filter(|j| j.dead).count(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(
        "the worker did not settle in time ({runnable} job(s) still runnable; loops down: {health:?}; jobs not done: {jobs:?})"
    )]
    Timeout { runnable: i64, health: Vec<crate::app::health::LoopStatus>, jobs: Vec<String> },
    #[error("a worker loop gave up: {0}")]
    GaveUp(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
