//! The process-local request limit per client address (the progress query's flood
//! guard), on `governor`'s GCRA: a client address over its rate gets 429 with
//! `Retry-After`. Budgets that must hold across processes (guesses per ticket, drafts
//! per client) are counted in the database by `app::limits`.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::error::ApiError;

pub struct ClientRate {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: std::sync::atomic::AtomicU64,
}

impl ClientRate {
    /// `per_minute` requests a minute per client address, in a burst of as many.
    pub fn per_minute(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).expect("at least one");
        ClientRate { limiter: governor::RateLimiter::keyed(Quota::per_minute(n)), checks: Default::default() }
    }

    /// Counts one request from `client`; refuses it when the client is over its rate.
    pub fn check(&self, client: IpAddr) -> Result<(), ApiError> {
        // Forget clients whose allowance is whole again, now and then rather than on
        // every request once the map is large.
        if self.limiter.len() > 100_000
            && self.checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed).is_multiple_of(10_000)
        {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&crate::app::limits::client_key(client)).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::too_many(wait.as_secs().max(1))
        })
    }
}
