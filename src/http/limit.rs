//! A fixed-window rate limiter kept in memory: enough for one process answering the
//! progress query; a key over its budget gets 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::ApiError;

pub struct RateLimiter {
    per_window: u32,
    window: Duration,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(per_window: u32, window: Duration) -> Self {
        RateLimiter { per_window, window, counts: Mutex::new(HashMap::new()) }
    }

    /// Counts one request for `key`; refuses it when the key's budget is spent.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut counts = self.counts.lock().expect("limiter lock is never poisoned");
        if counts.len() > 100_000 {
            counts.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = counts.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_window {
            let retry = self.window.saturating_sub(now.duration_since(entry.0)).as_secs().max(1);
            return Err(ApiError::too_many(retry));
        }
        entry.1 += 1;
        Ok(())
    }
}
