//! How the worker runs: attempts and backoff, concurrency, polling, heartbeats, the grace
//! period, and restarting (or giving up on) a failing loop.

use super::*;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Attempts before a job is dead: the number every job is written with.
    pub max_attempts: usize,
    /// Delay before the second attempt; doubles each time, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub concurrency: usize,
    /// How often idle workers and the timer loop look for work.
    pub poll: Duration,
    /// A worker silent for `heartbeat * missed_heartbeats` is presumed dead.
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    /// How long in-flight jobs get to finish after SIGTERM/SIGINT.
    pub grace: Duration,
    /// The longest wait between restarts of a failing loop.
    pub restart_max: Duration,
    /// Stop (with an error) when a loop has been failing this long; `None`: never.
    pub give_up_after: Option<Duration>,
    /// Due timers claimed and fired per transaction.
    pub timer_batch: i64,
    /// Timer batches in flight at once during a burn-down; `None`: the store's (two on
    /// PostgreSQL, one on SQLite).
    pub timer_lanes: Option<usize>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(3600),
            concurrency: 4,
            poll: Duration::from_millis(500),
            heartbeat: Duration::from_secs(3),
            missed_heartbeats: 3,
            grace: Duration::from_secs(30),
            restart_max: Duration::from_secs(30),
            give_up_after: Some(Duration::from_secs(300)),
            timer_batch: 100,
            timer_lanes: None,
        }
    }
}

impl WorkerSettings {
    /// For a deterministic run on a manual clock (`worker --until`, tests): quick polls,
    /// no backoff (a retry waits in real time, which a simulation does not pass), short
    /// heartbeats.
    pub fn simulation() -> Self {
        WorkerSettings {
            backoff_base: Duration::ZERO,
            backoff_max: Duration::ZERO,
            poll: Duration::from_millis(10),
            heartbeat: Duration::from_secs(1),
            grace: Duration::from_secs(10),
            restart_max: Duration::from_secs(2),
            give_up_after: Some(Duration::from_secs(60)),
            ..WorkerSettings::default()
        }
    }

    /// The wait after the `attempt`th failure (1-based): base, 2·base, 4·base, ...
    pub fn backoff(&self, attempt: usize) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }

    /// The wait before restarting a loop after its `failures`th failure in a row:
    /// 250 ms, 500 ms, 1 s, ... up to `restart_max`.
    pub fn restart_backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        Duration::from_millis(250).saturating_mul(factor).min(self.restart_max)
    }
}
