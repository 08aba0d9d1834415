//! Named fail points at the step boundaries of the commands and the worker, for the crash
//! tests. They are compiled in only with the `failpoints` feature, which the test build
//! turns on (the crate's dev-dependency on itself); in any other build `failpoint!`
//! expands to nothing.
//!
//! A point is armed for one scope — a database, named by [`crate::store::Store::scope`],
//! so that tests running side by side never trip each other's points — and fires on its
//! nth hit, in one of three ways: it returns an injected error (the caller unwinds as from
//! any other failure); it crashes: the task that hit it never resumes, and whoever
//! waits on [`crashed`] hears which point it was, so a test can tear the runtime down as a
//! kill would, and start another on the same database; or it pauses: the task waits there
//! (holding whatever it holds: a transaction, a lock) until the test, having heard of it
//! from [`paused`], lets it go on with [`resume`].

/// Every fail point, in the order a request meets them. The crash matrix walks them all;
/// hitting a name not listed here is a bug the test build reports at once.
pub const POINTS: &[&str] = &[
    // A command (submit, a decision, a timer, a step's result): one unit of work.
    "commit.after_changes",
    "commit.after_rows",
    "commit.before_commit",
    "commit.after_commit",
    // The timer loop: a batch of due timers claimed, fired and committed together.
    // `after_claim`: its claim taken under the write lock — on SQLite's burn-down, whose
    // batches claim and decide on a read first, once the claim is checked under it.
    "timers.after_claim",
    "timers.before_commit",
    // A post-approval action: before and after the account change, after its record.
    "action.before_apply",
    "action.after_apply",
    "action.after_commit",
    // A notification: before and after it is handed to the channel, after its record.
    "delivery.before_send",
    "delivery.after_send",
    "delivery.after_commit",
];

/// The error an armed point in `Error` mode returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("injected failure at fail point {0}")]
pub struct Injected(pub &'static str);

/// What an armed point does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Return [`Injected`]: the caller fails as it would on a database error.
    Error,
    /// Never resume, as if the process died right there.
    Crash,
    /// Wait there until [`resume`] is called for the scope, then go on unharmed.
    Pause,
}

/// Hits `name` in `scope`: records the hit and, if the point is armed there and this is
/// the hit it waits for, fires. Use the [`crate::failpoint!`] macro, which compiles to
/// nothing without the `failpoints` feature.
#[cfg(feature = "failpoints")]
pub async fn hit(scope: &str, name: &'static str) -> Result<(), Injected> {
    match registry::hit(scope, name) {
        None => Ok(()),
        Some(Mode::Error) => Err(Injected(name)),
        Some(Mode::Crash) => {
            tracing::warn!(point = name, "fail point: crashing here");
            std::future::pending::<()>().await;
            unreachable!("a crashed task is never resumed")
        }
        Some(Mode::Pause) => {
            registry::held(scope).await;
            Ok(())
        }
    }
}

#[cfg(feature = "failpoints")]
pub use registry::{arm, crashed, disarm, hits, paused, resume};

#[cfg(feature = "failpoints")]
mod registry {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{LazyLock, Mutex};

    use super::{Mode, POINTS};

    #[derive(Default)]
    struct State {
        /// scope → (point, mode, the hit number that fires)
        armed: HashMap<String, (&'static str, Mode, usize)>,
        hits: HashMap<String, BTreeMap<&'static str, usize>>,
        crashed: HashMap<String, &'static str>,
        /// scope → the point a task waits at, until `resume`.
        paused: HashMap<String, &'static str>,
    }

    static STATE: LazyLock<Mutex<State>> = LazyLock::new(Mutex::default);
    /// Woken when a task crashes, pauses or is resumed.
    static CHANGED: LazyLock<tokio::sync::Notify> = LazyLock::new(tokio::sync::Notify::new);

    fn state() -> std::sync::MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Arms `point` in `scope` to fire on its `nth` hit (1 = the next one) from now on.
    pub fn arm(scope: &str, point: &'static str, mode: Mode, nth: usize) {
        assert!(POINTS.contains(&point), "unknown fail point {point:?}");
        let mut s = state();
        let seen = s.hits.get(scope).and_then(|h| h.get(point)).copied().unwrap_or(0);
        s.armed.insert(scope.to_string(), (point, mode, seen + nth.max(1)));
        s.crashed.remove(scope);
    }

    /// Disarms every point of `scope` and forgets its hits.
    pub fn disarm(scope: &str) {
        let mut s = state();
        s.armed.remove(scope);
        s.hits.remove(scope);
        s.crashed.remove(scope);
        s.paused.remove(scope);
        drop(s);
        CHANGED.notify_waiters();
    }

    /// How often each point of `scope` was hit.
    pub fn hits(scope: &str) -> BTreeMap<&'static str, usize> {
        state().hits.get(scope).cloned().unwrap_or_default()
    }

    /// Resolves with the point at which a task of `scope` crashed.
    pub async fn crashed(scope: &str) -> &'static str {
        until(|s| s.crashed.get(scope).copied()).await
    }

    /// Resolves with what `check` finds in the state, rechecked at each change.
    async fn until<T>(check: impl Fn(&State) -> Option<T>) -> T {
        loop {
            let notified = CHANGED.notified();
            if let Some(found) = check(&state()) {
                return found;
            }
            notified.await;
        }
    }

    /// Resolves with the point at which a task of `scope` waits (armed with `Mode::Pause`).
    pub async fn paused(scope: &str) -> &'static str {
        until(|s| s.paused.get(scope).copied()).await
    }

    /// Lets the task paused in `scope` go on.
    pub fn resume(scope: &str) {
        state().paused.remove(scope);
        CHANGED.notify_waiters();
    }

    /// Waits while a task of `scope` is paused.
    pub(super) async fn held(scope: &str) {
        until(|s| (!s.paused.contains_key(scope)).then_some(())).await
    }

    pub(super) fn hit(scope: &str, name: &'static str) -> Option<Mode> {
        assert!(POINTS.contains(&name), "fail point {name:?} is not listed in failpoint::POINTS");
        let mut s = state();
        let count = {
            let n = s.hits.entry(scope.to_string()).or_default().entry(name).or_default();
            *n += 1;
            *n
        };
        match s.armed.get(scope) {
            Some(&(point, mode, at)) if point == name && count == at => {
                s.armed.remove(scope);
                match mode {
                    Mode::Crash => {
                        s.crashed.insert(scope.to_string(), name);
                    }
                    Mode::Pause => {
                        s.paused.insert(scope.to_string(), name);
                    }
                    Mode::Error => return Some(mode),
                }
                drop(s);
                CHANGED.notify_waiters();
                Some(mode)
            }
            _ => None,
        }
    }
}

/// `failpoint!(scope, "name")` in an async fn whose error converts from [`Injected`]:
/// a named step boundary, inert unless the `failpoints` feature is on and a test armed it.
#[macro_export]
macro_rules! failpoint {
    ($scope:expr, $name:literal) => {{
        #[cfg(feature = "failpoints")]
        {
            $crate::failpoint::hit($scope, $name).await?;
        }
        #[cfg(not(feature = "failpoints"))]
        {
            let _ = &$scope;
        }
    }};
}
