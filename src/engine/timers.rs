//! Timers on the engine: an appeal's due timers fired before a command acts on it
//! (`catch_up`), and every due timer fired in batches (`run_due_timers`), each decided
//! by the pure `decide_timer` on what the store's claim read (inside its claiming
//! transaction, or on SQLite's burn-down on a read before the write, which the store
//! checks under the write lock).

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

impl Engine {
    /// Fires this appeal's timers that are already due, earliest first, so that a
    /// command never acts on a state whose deadline has passed (a window closed while
    /// no worker ran is closed before the late resubmission is decided).
    pub async fn catch_up(&self, record: AppealRecord) -> Result<AppealRecord, EngineError> {
        let now = self.clock.now();
        let mut fired_any = false;
        loop {
            let firings = self
                .store
                .fire_due_timers(
                    now,
                    16,
                    Some(&record.id),
                    &[],
                    &TimerDecider { engine: self, now, batch: BatchReads::default(), lane: None },
                )
                .await?;
            if !firings.iter().any(TimerFiring::progressed) {
                break;
            }
            fired_any = true;
        }
        if !fired_any {
            return Ok(record);
        }
        self.store
            .appeal_by_id(&record.id)
            .await?
            .ok_or_else(|| EngineError::Store(StoreError::Corrupt(format!("appeal {} vanished", record.ticket))))
    }

    /// Fires every armed timer due at or before the clock's now, in batches of `batch`
    /// (at most one timer per appeal per batch), one transaction per batch. Each fire
    /// re-checks the appeal's state and settles the timer row with its effects, so a
    /// timer acts at most once even with several workers. Timers that are due but refuse
    /// to act are reported and left armed. Between batches the store lets other writers
    /// have their turn (`between_batches`).
    pub async fn run_due_timers(&self, batch: i64) -> Result<Vec<TimerFiring>, EngineError> {
        self.run_due_timers_until(batch, None, || false).await
    }

    /// [`Engine::run_due_timers`], ending early between two batches once `stop` answers
    /// true: a worker asked to stop during a burn-down commits the batches in hand and
    /// leaves the rest armed for the next run, instead of holding its stop until the
    /// whole backlog has fired.
    ///
    /// `lanes` batches are in flight at once (none given: the store's
    /// [`timer_lanes`](crate::store::AppealStore::timer_lanes)): while one is written,
    /// the next is claimed and decided. They claim one at a time, each
    /// leaving out the appeals the others hold ([`Lanes`]), so an appeal is in one batch
    /// at a time and its timers still fire in their order. The firings come back in the
    /// order their batches were claimed.
    pub async fn run_due_timers_until(
        &self,
        batch: i64,
        lanes: Option<usize>,
        stop: impl Fn() -> bool + Send + Sync,
    ) -> Result<Vec<TimerFiring>, EngineError> {
        let now = self.clock.now();
        let lanes = Lanes::new(lanes.unwrap_or_else(|| self.store.timer_lanes()).max(1));
        let runs = (0..lanes.count()).map(|lane| self.lane(&lanes, lane, now, batch, &stop));
        let mut batches = Vec::new();
        let mut failed = None;
        for run in futures_util::future::join_all(runs).await {
            match run {
                Ok(done) => batches.extend(done),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        batches.sort_by_key(|(claimed, _)| *claimed);
        Ok(batches.into_iter().flat_map(|(_, firings)| firings).collect())
    }

    /// One lane of a burn-down: batch after batch until a claim finds nothing to fire
    /// that no other lane holds, `stop` answers true, or another lane fails. Each batch's
    /// firings come with the place of its claim among all the lanes' claims.
    async fn lane(
        &self,
        lanes: &Lanes,
        lane: usize,
        now: DateTime<Utc>,
        batch: i64,
        stop: &(impl Fn() -> bool + Send + Sync),
    ) -> Result<Vec<(u64, Vec<TimerFiring>)>, EngineError> {
        let mut all = Vec::new();
        let mut paused = std::time::Instant::now();
        while !lanes.failed.load(Ordering::SeqCst) {
            let turn = lanes.turn.lock().await;
            let claimed = lanes.claims.fetch_add(1, Ordering::SeqCst);
            let besides = lanes.held_by_others(lane);
            let decider = TimerDecider {
                engine: self,
                now,
                batch: BatchReads::default(),
                lane: Some(LaneClaim { lanes, lane, turn: std::sync::Mutex::new(Some(turn)) }),
            };
            let result = self.store.fire_due_timers(now, batch, None, &besides, &decider).await;
            // The turn goes with the decider when the claim took nothing.
            drop(decider);
            lanes.ended(lane);
            let firings = result.inspect_err(|_| lanes.failed.store(true, Ordering::SeqCst))?;
            let progressed = firings.iter().any(TimerFiring::progressed);
            log_firings(&firings);
            all.push((claimed, firings));
            if stop() {
                break;
            }
            if !progressed {
                // Nothing left but, perhaps, later timers of the appeals other lanes
                // hold: claim again once one of them has ended its batch.
                if besides.is_empty() {
                    break;
                }
                let mut ended = lanes.batches_ended.subscribe();
                if lanes.held_by_others(lane) == besides {
                    let _ = ended.changed().await;
                }
                if stop() {
                    break;
                }
                continue;
            }
            if self.store.between_batches(paused.elapsed()).await {
                paused = std::time::Instant::now();
            }
        }
        Ok(all)
    }
}

/// The batches of one burn-down in flight at once: which appeals each holds (from its
/// claim to the end of its transaction), and the turn to claim, which one batch takes at
/// a time so that it knows what the others hold.
struct Lanes {
    turn: tokio::sync::Mutex<()>,
    held: std::sync::Mutex<Vec<Vec<String>>>,
    /// Counts the batches ended, for a lane waiting on the others.
    batches_ended: tokio::sync::watch::Sender<u64>,
    /// Counts the claims, in the order they are made.
    claims: AtomicU64,
    failed: AtomicBool,
}

impl Lanes {
    fn new(count: usize) -> Lanes {
        Lanes {
            turn: tokio::sync::Mutex::new(()),
            held: std::sync::Mutex::new(vec![Vec::new(); count]),
            batches_ended: tokio::sync::watch::Sender::new(0),
            claims: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        }
    }

    fn count(&self) -> usize {
        self.held.lock().expect("lanes").len()
    }

    /// The appeals the lanes other than `lane` hold, sorted.
    fn held_by_others(&self, lane: usize) -> Vec<String> {
        let held = self.held.lock().expect("lanes");
        let mut ids: Vec<String> =
            held.iter().enumerate().filter(|(i, _)| *i != lane).flat_map(|(_, ids)| ids.iter().cloned()).collect();
        ids.sort();
        ids
    }

    fn claimed(&self, lane: usize, appeals: Vec<String>) {
        self.held.lock().expect("lanes")[lane] = appeals;
    }

    fn ended(&self, lane: usize) {
        self.held.lock().expect("lanes")[lane].clear();
        self.batches_ended.send_modify(|n| *n += 1);
    }
}

/// A lane's batch while it claims: holds the turn until its claim is read.
struct LaneClaim<'a> {
    lanes: &'a Lanes,
    lane: usize,
    turn: std::sync::Mutex<Option<tokio::sync::MutexGuard<'a, ()>>>,
}

fn log_firings(firings: &[TimerFiring]) {
    for f in firings {
        match f.outcome {
            "fired" => info!(ticket = %f.timer.ticket, timer = %f.timer.name, "timer fired"),
            "stale" => {
                warn!(ticket = %f.timer.ticket, timer = %f.timer.name, note = ?f.note, "stale timer settled without acting")
            }
            TimerFiring::CHANGED => {
                info!(ticket = %f.timer.ticket, timer = %f.timer.name, "timer left for the next batch: its appeal changed")
            }
            // A timer that should act but is refused (its deadline computation left the
            // calendar's published range, say) stays armed and is reported: dropping
            // it would lose the deadline.
            _ => {
                tracing::error!(ticket = %f.timer.ticket, timer = %f.timer.name, outcome = f.outcome, note = ?f.note, "due timer not fired")
            }
        }
    }
}

/// Decides due timers for the store, on what its claim read.
struct TimerDecider<'a> {
    engine: &'a Engine,
    now: DateTime<Utc>,
    batch: BatchReads,
    /// The lane of a burn-down this batch is in (none: a command's catch-up).
    lane: Option<LaneClaim<'a>>,
}

#[async_trait]
impl TimerHandler for TimerDecider<'_> {
    async fn decide(&self, timer: &TimerRecord, appeal: &AppealRecord) -> TimerVerdict {
        let engine = self.engine;
        let wf = match engine.workflow_of(appeal) {
            Ok(wf) => wf,
            Err(e) => return TimerVerdict::Leave(e.to_string()),
        };
        let mut decision = match decide_timer(wf, &Engine::snapshot(appeal), &timer.name, self.now) {
            Ok(d) => d,
            Err(skip @ (TimerSkip::Unknown(_) | TimerSkip::NotRunning { .. })) => {
                return TimerVerdict::Stale(skip.to_string());
            }
            Err(TimerSkip::Refused(refusal)) => return TimerVerdict::Leave(format!("refused, left armed: {refusal}")),
        };
        let mut uow = UnitOfWork::new(self.now);
        let write = write_for(appeal, &mut decision, &Actor::system(), self.now);
        let mut outcomes = Vec::new();
        match engine
            .add(
                &mut uow,
                Some(appeal),
                write,
                decision,
                &Actor::system(),
                Some(timer.id),
                self.now,
                &mut outcomes,
                Some(&self.batch),
            )
            .await
        {
            Ok(_) => TimerVerdict::Fire(Box::new(uow)),
            Err(e) => TimerVerdict::Leave(format!("left armed: {e}")),
        }
    }

    fn prepare(&self, timers: Vec<TimerRecord>) {
        let mut by_appeal: HashMap<String, Vec<TimerRecord>> = HashMap::new();
        for t in timers {
            by_appeal.entry(t.appeal_id.clone()).or_default().push(t);
        }
        // The claim is read: what this batch holds is known, the next lane may claim.
        if let Some(claim) = &self.lane {
            claim.lanes.claimed(claim.lane, by_appeal.keys().cloned().collect());
            claim.turn.lock().expect("turn").take();
        }
        let _ = self.batch.timers.set(by_appeal);
    }

    fn beside_others(&self) -> bool {
        self.lane.as_ref().is_some_and(|claim| claim.lanes.count() > 1)
    }

    fn review_sla(&self) -> Option<&str> {
        Some(self.engine.workflow.bindings().review_sla.as_str())
    }
}
