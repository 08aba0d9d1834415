//! Timers on the engine: an appeal's due timers fired before a command acts on it
//! (`catch_up`), and every due timer fired in batches (`run_due_timers`), each decided
//! by the pure `decide_timer` inside the store's claiming transaction.

use super::*;

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
                    &TimerDecider { engine: self, now, batch: BatchReads::default() },
                )
                .await?;
            if !firings.iter().any(|f| f.outcome == "fired" || f.outcome == "stale") {
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
        self.run_due_timers_until(batch, || false).await
    }

    /// [`Engine::run_due_timers`], ending early between two batches once `stop` answers
    /// true: a worker asked to stop during a burn-down commits the batch in hand and
    /// leaves the rest armed for the next run, instead of holding its stop until the
    /// whole backlog has fired.
    pub async fn run_due_timers_until(
        &self,
        batch: i64,
        stop: impl Fn() -> bool + Send + Sync,
    ) -> Result<Vec<TimerFiring>, EngineError> {
        let now = self.clock.now();
        let mut all = Vec::new();
        let mut paused = std::time::Instant::now();
        loop {
            let firings = self
                .store
                .fire_due_timers(now, batch, None, &TimerDecider { engine: self, now, batch: BatchReads::default() })
                .await?;
            let progressed = firings.iter().any(|f| f.outcome == "fired" || f.outcome == "stale");
            log_firings(&firings);
            all.extend(firings);
            if !progressed || stop() {
                return Ok(all);
            }
            if self.store.between_batches(paused.elapsed()).await {
                paused = std::time::Instant::now();
            }
        }
    }
}

fn log_firings(firings: &[TimerFiring]) {
    for f in firings {
        match f.outcome {
            "fired" => info!(ticket = %f.timer.ticket, timer = %f.timer.name, "timer fired"),
            "stale" => {
                warn!(ticket = %f.timer.ticket, timer = %f.timer.name, note = ?f.note, "stale timer settled without acting")
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

/// Decides due timers for the store, inside its claiming transaction.
struct TimerDecider<'a> {
    engine: &'a Engine,
    now: DateTime<Utc>,
    batch: BatchReads,
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
        let _ = self.batch.timers.set(by_appeal);
    }

    fn review_sla(&self) -> Option<&str> {
        Some(self.engine.workflow.bindings().review_sla.as_str())
    }
}
