//! Whether the worker's loops are working: each job queue's worker and the timer loop
//! report here when they start, when they fail (and are restarted with backoff) and
//! when they give up. `/readyz` answers 503 naming every loop that is down, `/metrics`
//! shows each, and a standalone worker exits non-zero when one gives up.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone)]
struct Loop {
    up: bool,
    /// When it went down (None while up).
    down_since: Option<Instant>,
    restarts: u64,
    last_error: Option<String>,
    gave_up: bool,
}

/// One loop as `/readyz` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopStatus {
    pub name: String,
    pub up: bool,
    pub restarts: u64,
    /// How long it has been down, in whole seconds.
    pub down_secs: u64,
    pub last_error: Option<String>,
    pub gave_up: bool,
}

#[derive(Debug, Default)]
pub struct Health {
    loops: Mutex<BTreeMap<String, Loop>>,
}

impl Health {
    fn with(&self, name: &str, f: impl FnOnce(&mut Loop)) {
        let mut loops = self.loops.lock().unwrap_or_else(|p| p.into_inner());
        let entry = loops.entry(name.to_string()).or_insert(Loop {
            up: false,
            down_since: Some(Instant::now()),
            restarts: 0,
            last_error: None,
            gave_up: false,
        });
        f(entry);
    }

    /// A loop is starting (down until it proves itself up).
    pub fn starting(&self, name: &str) {
        self.with(name, |_| {});
    }

    /// A loop works (it polled, fired or beat its heart).
    pub fn up(&self, name: &str) {
        self.with(name, |l| {
            l.up = true;
            l.down_since = None;
        });
    }

    /// A loop failed; it will be restarted.
    pub fn down(&self, name: &str, error: &str) {
        self.with(name, |l| {
            if l.up || l.down_since.is_none() {
                l.down_since = Some(Instant::now());
            }
            l.up = false;
            l.restarts += 1;
            l.last_error = Some(error.chars().take(300).collect());
        });
    }

    /// A loop failed for longer than it is allowed to, and stopped trying.
    pub fn gave_up(&self, name: &str, error: &str) {
        self.with(name, |l| {
            l.up = false;
            l.gave_up = true;
            l.last_error = Some(error.chars().take(300).collect());
        });
    }

    /// How long `name` has been failing without a success in between.
    pub fn down_for(&self, name: &str) -> Duration {
        let loops = self.loops.lock().unwrap_or_else(|p| p.into_inner());
        loops.get(name).and_then(|l| l.down_since).map_or(Duration::ZERO, |t| t.elapsed())
    }

    pub fn statuses(&self) -> Vec<LoopStatus> {
        let loops = self.loops.lock().unwrap_or_else(|p| p.into_inner());
        loops
            .iter()
            .map(|(name, l)| LoopStatus {
                name: name.clone(),
                up: l.up,
                restarts: l.restarts,
                down_secs: l.down_since.map_or(0, |t| t.elapsed().as_secs()),
                last_error: l.last_error.clone(),
                gave_up: l.gave_up,
            })
            .collect()
    }

    /// The loops that are not working now (none when no worker runs in this process).
    pub fn problems(&self) -> Vec<LoopStatus> {
        self.statuses().into_iter().filter(|l| !l.up).collect()
    }
}

/// Ends a graceful shutdown once the server and the worker have stopped: the database's
/// log is checkpointed (SQLite) and its connections closed.
pub async fn close_database(engine: &crate::engine::Engine) {
    engine.store().close().await;
}
