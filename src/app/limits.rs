//! Abuse limits: budgets counted in the database, so every `serve` process on one
//! database grants one budget between them (fixed windows on the engine's clock).
//!
//! The progress query (ticket + phone) is the one place an outsider can guess: its
//! budgets are designed so guessing stays bounded per ticket while nobody can lock the
//! owner out by guessing wrong from elsewhere:
//!
//! - every client address has a request budget (process-local, in the HTTP layer);
//! - wrong answers are counted per (ticket, client) — a client that guessed wrong
//!   `per_client_failures` times in the window is refused *for that ticket only*;
//! - wrong answers are also counted per ticket; once a ticket has had
//!   `per_ticket_failures` in a day, each client may guess wrong on it at most once a
//!   day, so many addresses together get one guess each — and the owner, who answers
//!   right the first time from their own address, is still answered.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::engine::{Clock, Engine};
use crate::store::{Store, StoreError};

/// A budget: so many hits per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub hits: u32,
    pub window: Duration,
}

impl Budget {
    pub const fn per(hits: u32, window: Duration) -> Self {
        Budget { hits, window }
    }

    fn window_secs(&self) -> i64 {
        i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX).max(1)
    }

    /// The window `now` falls in and when it ends.
    fn slot(&self, now: DateTime<Utc>) -> (i64, DateTime<Utc>) {
        let secs = self.window_secs();
        let slot = now.timestamp().div_euclid(secs);
        let end = DateTime::from_timestamp(slot.saturating_add(1).saturating_mul(secs), 0).unwrap_or(now);
        (slot, end)
    }
}

/// A refusal: the budget is spent; try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("rate limited")]
    Limited(Limited),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The progress query's guessing budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressPolicy {
    /// Wrong answers one client may give for one ticket.
    pub per_client_failures: Budget,
    /// Wrong answers one ticket may receive before each client is held to one.
    pub per_ticket_failures: Budget,
}

impl Default for ProgressPolicy {
    fn default() -> Self {
        ProgressPolicy {
            per_client_failures: Budget::per(5, Duration::from_secs(15 * 60)),
            per_ticket_failures: Budget::per(30, Duration::from_secs(24 * 3600)),
        }
    }
}

/// Budgets counted in the store.
pub struct Limits {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    progress: ProgressPolicy,
}

impl Limits {
    pub fn new(engine: &Engine, progress: ProgressPolicy) -> Self {
        Limits { store: engine.store().clone(), clock: engine.clock(), progress }
    }

    pub fn progress_policy(&self) -> ProgressPolicy {
        self.progress
    }

    fn retry(&self, budget: Budget) -> Limited {
        let now = self.clock.now();
        let (_, end) = budget.slot(now);
        Limited { retry_after_secs: (end - now).num_seconds().max(1) as u64 }
    }

    /// Counts one hit of `key`; refuses it when the window already holds `budget.hits`.
    pub async fn take(&self, key: &str, budget: Budget) -> Result<(), LimitError> {
        let (slot, end) = budget.slot(self.clock.now());
        let count = self.store.count_hit(key, slot, end).await?;
        if count > i64::from(budget.hits) { Err(LimitError::Limited(self.retry(budget))) } else { Ok(()) }
    }

    /// How many hits `key` has in the current window of `budget`.
    async fn spent(&self, key: &str, budget: Budget) -> Result<i64, LimitError> {
        let (slot, _) = budget.slot(self.clock.now());
        Ok(self.store.hits(key, slot).await?)
    }

    /// Whether `client` may ask about `ticket` now (asked before the query is answered).
    pub async fn progress_allowed(&self, ticket: &str, client: &str) -> Result<(), LimitError> {
        let p = self.progress;
        let mine = self.spent(&progress_key(ticket, Some(client)), p.per_client_failures).await?;
        if mine >= i64::from(p.per_client_failures.hits) {
            return Err(LimitError::Limited(self.retry(p.per_client_failures)));
        }
        let theirs = self.spent(&progress_key(ticket, None), p.per_ticket_failures).await?;
        if theirs >= i64::from(p.per_ticket_failures.hits) && mine >= 1 {
            return Err(LimitError::Limited(self.retry(p.per_client_failures)));
        }
        Ok(())
    }

    /// Records a wrong answer (unknown ticket, wrong phone or malformed input alike).
    pub async fn progress_failed(&self, ticket: &str, client: &str) -> Result<(), LimitError> {
        let p = self.progress;
        for (key, budget) in [
            (progress_key(ticket, Some(client)), p.per_client_failures),
            (progress_key(ticket, None), p.per_ticket_failures),
        ] {
            let (slot, end) = budget.slot(self.clock.now());
            self.store.count_hit(&key, slot, end).await?;
        }
        Ok(())
    }

    /// Forgets counters whose windows have passed.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        self.store.prune_rate_limits(self.clock.now()).await
    }
}

/// The counter key of a ticket as typed (its digits, at most 32: a malformed ticket
/// counts like any other), for one client or for everyone.
fn progress_key(ticket: &str, client: Option<&str>) -> String {
    let digits: String = ticket.chars().filter(char::is_ascii_digit).take(32).collect();
    match client {
        Some(client) => format!("progress:fail:{digits}:{client}"),
        None => format!("progress:fail:{digits}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_fixed_and_end_where_the_next_begins() {
        let b = Budget::per(3, Duration::from_secs(60));
        let t = DateTime::from_timestamp(120 + 59, 0).unwrap();
        assert_eq!(b.slot(t), (2, DateTime::from_timestamp(180, 0).unwrap()));
        let t = DateTime::from_timestamp(180, 0).unwrap();
        assert_eq!(b.slot(t).0, 3);
    }

    #[test]
    fn a_ticket_is_keyed_by_its_digits() {
        assert_eq!(progress_key("1234-5678", Some("10.0.0.1")), "progress:fail:12345678:10.0.0.1");
        assert_eq!(progress_key("12345678", None), "progress:fail:12345678");
    }
}
