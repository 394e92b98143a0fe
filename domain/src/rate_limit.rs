//! Per-account write rate limiting: at most `max` writes in any sliding window of `window_ms`.
//! Pure: the caller passes the time and keeps the limiter behind its own lock.

use std::collections::{HashMap, VecDeque};

use crate::{Error, Result};

/// The reference service's limit: 300 writes per DID per minute.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    max: 300,
    window_ms: 60_000,
};

/// A rate: `max` events per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Events allowed per window.
    pub max: u32,
    /// Window length in milliseconds.
    pub window_ms: i64,
}

/// Sliding-log limiter keyed by account.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limit: RateLimit,
    log: HashMap<String, VecDeque<i64>>,
    last_sweep_ms: i64,
}

impl RateLimiter {
    /// A limiter enforcing `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            log: HashMap::new(),
            last_sweep_ms: i64::MIN,
        }
    }

    /// Records `cost` events for `key` at `now_ms`, or refuses with [`Error::RateLimited`] (and
    /// records nothing) when that would exceed the limit.
    pub fn check(&mut self, key: &str, cost: u32, now_ms: i64) -> Result<()> {
        self.sweep(now_ms);
        let window_start = now_ms.saturating_sub(self.limit.window_ms);
        let log = self.log.entry(key.to_owned()).or_default();
        while log.front().is_some_and(|t| *t <= window_start) {
            log.pop_front();
        }
        let used = u32::try_from(log.len()).unwrap_or(u32::MAX);
        if used.saturating_add(cost) > self.limit.max {
            // The window frees enough room once the oldest `needed` entries fall out of it.
            let needed = used.saturating_add(cost).saturating_sub(self.limit.max);
            let oldest = log
                .get(needed.saturating_sub(1) as usize)
                .copied()
                .unwrap_or(now_ms);
            let retry_after_ms = oldest.saturating_add(self.limit.window_ms) - now_ms;
            return Err(Error::RateLimited {
                retry_after_ms: retry_after_ms.max(1),
            });
        }
        for _ in 0..cost {
            log.push_back(now_ms);
        }
        Ok(())
    }

    /// Drops idle keys now and then so the map stays as large as the set of active writers.
    fn sweep(&mut self, now_ms: i64) {
        if now_ms.saturating_sub(self.last_sweep_ms) < self.limit.window_ms {
            return;
        }
        self.last_sweep_ms = now_ms;
        let window_start = now_ms.saturating_sub(self.limit.window_ms);
        self.log
            .retain(|_, log| log.back().is_some_and(|t| *t > window_start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        max: 3,
        window_ms: 1000,
    };

    #[test]
    fn allows_up_to_the_limit_then_refuses_with_retry_after() {
        let mut l = RateLimiter::new(LIMIT);
        for t in [0, 100, 200] {
            l.check("a", 1, t).unwrap();
        }
        assert_eq!(
            l.check("a", 1, 300),
            Err(Error::RateLimited {
                retry_after_ms: 700
            })
        );
        // Other keys are independent.
        l.check("b", 1, 300).unwrap();
        // The oldest entry leaves the window at t = 1000.
        l.check("a", 1, 1000).unwrap();
        assert!(l.check("a", 1, 1001).is_err());
    }

    #[test]
    fn batch_cost_counts_every_write_and_a_refusal_records_nothing() {
        let mut l = RateLimiter::new(LIMIT);
        l.check("a", 2, 0).unwrap();
        assert!(l.check("a", 2, 10).is_err());
        l.check("a", 1, 20).unwrap();
        assert!(
            l.check("a", 4, 5000).is_err(),
            "a batch above the limit never fits"
        );
    }

    #[test]
    fn idle_keys_are_swept() {
        let mut l = RateLimiter::new(LIMIT);
        l.check("a", 1, 0).unwrap();
        l.check("b", 1, 5000).unwrap();
        assert_eq!(l.log.len(), 1);
    }
}
