//! Rate limits in the original API's model (docs/compatibility.md §5), applied to products' tokens:
//! calls per token per minute, stream opens per token per hour, and writes per device and
//! per structure per hour shared by every product (each write wakes a device on battery).
//! Tokens issued by the operator (`roost admin token issue` without `--product`) are exempt.
//!
//! Fixed windows per key; past a limit the answer is 429 `blocked` with `Retry-After`, and
//! every answer to a product carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset` for its call budget (additive: the original gave no way to see it).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The configurable limits; 0 turns one off.
#[derive(Debug, Clone)]
pub struct Limits {
    pub calls_per_token_per_minute: u32,
    pub stream_opens_per_token_per_hour: u32,
    pub writes_per_device_per_hour: u32,
    pub writes_per_structure_per_hour: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            calls_per_token_per_minute: 600,
            stream_opens_per_token_per_hour: 120,
            writes_per_device_per_hour: 360,
            writes_per_structure_per_hour: 1_200,
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset: u64,
}

#[derive(Default)]
pub struct Limiter {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Windows kept before stale ones are swept.
const MAX_KEYS: usize = 200_000;

impl Limiter {
    /// Counts one use of `key` against `limit` per `window`. `Err` carries the budget with the
    /// seconds to wait when the limit is reached (nothing is counted then).
    pub fn take(&self, key: &str, limit: u32, window: Duration) -> Result<Budget, Budget> {
        if limit == 0 {
            return Ok(Budget { limit: 0, remaining: 0, reset: 0 });
        }
        let mut w = self.windows.lock();
        if w.len() > MAX_KEYS {
            w.retain(|_, (start, _)| start.elapsed() < Duration::from_secs(3600));
        }
        let now = Instant::now();
        let e = w.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(e.0) >= window {
            *e = (now, 0);
        }
        let reset = window.saturating_sub(now.duration_since(e.0)).as_secs().max(1);
        if e.1 >= limit {
            return Err(Budget { limit, remaining: 0, reset });
        }
        e.1 += 1;
        Ok(Budget { limit, remaining: limit - e.1, reset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_refuses_and_resets() {
        let l = Limiter::default();
        let w = Duration::from_millis(50);
        assert_eq!(l.take("k", 2, w).unwrap().remaining, 1);
        assert_eq!(l.take("k", 2, w).unwrap().remaining, 0);
        let e = l.take("k", 2, w).unwrap_err();
        assert_eq!((e.remaining, e.reset), (0, 1));
        assert!(l.take("other", 2, w).is_ok(), "keys are independent");
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.take("k", 2, w).is_ok(), "a new window");
        assert!(l.take("any", 0, w).is_ok(), "0 means no limit");
    }
}
