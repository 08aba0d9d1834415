//! Abuse limits: budgets counted in the database, so every `serve` process on one
//! database grants one budget between them (fixed windows on the engine's clock).
//!
//! The progress query (ticket + phone) and the stop-change route (ticket + one-time code)
//! are where an outsider can guess: their budgets (each its own counters) are designed so
//! guessing stays bounded per ticket while nobody can lock the owner out by guessing
//! wrong from elsewhere:
//!
//! - every client address has a request budget (process-local, in the HTTP layer);
//! - wrong answers are counted per (ticket, client) — a client that guessed wrong
//!   `per_client_failures` times in the window is refused *for that ticket only*;
//! - wrong answers are also counted per ticket; once a ticket has had
//!   `per_ticket_failures` in a day, each client may guess wrong on it at most once per
//!   `per_client_failures` window, so many addresses together get one guess each a
//!   window — and the owner, who answers right the first time from their own address,
//!   is still answered.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::engine::{Clock, Engine};
use crate::store::{AccessStore, StoreError};

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

/// A progress query counted as a wrong answer until it is answered right.
#[derive(Debug)]
pub struct Attempt {
    keys: [(String, i64); 2],
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
    store: Arc<dyn AccessStore>,
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

    /// Counts a guess by `client` about `ticket` (a progress query, a stop code) as a
    /// wrong answer before it is answered (so concurrent guesses cannot all pass one
    /// check), and refuses it when the budgets are spent. Each kind of guess has its own
    /// counters under the same budgets. A right answer takes the count back
    /// ([`Limits::answered_right`]).
    pub async fn attempt(&self, guess: Guess, ticket: &str, client: &str) -> Result<Attempt, LimitError> {
        let p = self.progress;
        let now = self.clock.now();
        let (mine_key, theirs_key) = (guess_key(guess, ticket, Some(client)), guess_key(guess, ticket, None));
        let (mine_slot, mine_end) = p.per_client_failures.slot(now);
        let (theirs_slot, theirs_end) = p.per_ticket_failures.slot(now);
        let mine = self.store.count_hit(&mine_key, mine_slot, mine_end).await?;
        let theirs = self.store.count_hit(&theirs_key, theirs_slot, theirs_end).await?;
        let over_mine = mine > i64::from(p.per_client_failures.hits);
        // Once the ticket is under guessing, a client gets one wrong answer a window.
        let over_theirs = theirs > i64::from(p.per_ticket_failures.hits) && mine > 1;
        if over_mine || over_theirs {
            return Err(LimitError::Limited(self.retry(p.per_client_failures)));
        }
        Ok(Attempt { keys: [(mine_key, mine_slot), (theirs_key, theirs_slot)] })
    }

    /// The attempt was answered right: it does not count against anyone.
    pub async fn answered_right(&self, attempt: Attempt) -> Result<(), LimitError> {
        for (key, slot) in attempt.keys {
            self.store.uncount_hit(&key, slot).await?;
        }
        Ok(())
    }

    /// Forgets counters whose windows have passed.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        self.store.prune_rate_limits(self.clock.now()).await
    }
}

/// The client a budget is kept for: its IPv4 address, or its IPv6 /64 (one subscriber's
/// network, whose addresses are theirs to choose).
pub fn client_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// What an outsider guesses, with a ticket: its contact phone, or a stop code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    Progress,
    StopCode,
}

/// The counter key of a ticket as typed (its digits, at most 32: a malformed ticket
/// counts like any other), for one client or for everyone.
fn guess_key(guess: Guess, ticket: &str, client: Option<&str>) -> String {
    let digits: String = ticket.chars().filter(char::is_ascii_digit).take(32).collect();
    let what = match guess {
        Guess::Progress => "progress",
        Guess::StopCode => "stop",
    };
    match client {
        Some(client) => format!("{what}:fail:{digits}:{client}"),
        None => format!("{what}:fail:{digits}"),
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
    fn ipv6_clients_are_kept_by_their_64_bit_prefix() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_eq!(client_key(a), "2001:db8:1:2::/64");
        assert_eq!(client_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(client_key("10.0.0.1".parse().unwrap()), "10.0.0.1");
    }

    #[test]
    fn a_ticket_is_keyed_by_its_digits() {
        assert_eq!(guess_key(Guess::Progress, "1234-5678", Some("10.0.0.1")), "progress:fail:12345678:10.0.0.1");
        assert_eq!(guess_key(Guess::Progress, "12345678", None), "progress:fail:12345678");
        assert_eq!(guess_key(Guess::StopCode, "1234-5678", Some("10.0.0.1")), "stop:fail:12345678:10.0.0.1");
    }
}
