//! Rate limits in the original API's model (docs/compatibility.md §5), applied to products' tokens:
//! calls per token per minute, stream opens per token per hour, and writes per device and
//! per structure per hour shared by every product (each write wakes a device on battery).
//! Tokens issued by the operator (`roost admin token issue` without `--product`) are exempt.
//!
//! Fixed windows per key, aligned to the wall clock (a minute window starts on the minute) so
//! that every node counts the same window; past a limit the answer is 429 `blocked` with
//! `Retry-After`, and every answer to a product carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` for its call budget (additive: the original
//! gave no way to see it).
//!
//! **In a cluster** (nodes on one database) the limits hold for the cluster as a whole, up to
//! a bound: every [`SHARE_EVERY`] each node publishes its counts that changed and learns the
//! other nodes' counts of the keys it follows ([`share`]); a check adds what the others
//! counted at the last exchange to its own count. So a key can go past its limit by what the
//! *other* nodes admitted for it since the last exchange — at most one exchange period of
//! its traffic on other nodes — and a node that first sees a key counts only its own until
//! its next exchange. Open streams (per token, per user) are gauges: a node asks the others
//! before it opens the first stream of a key it knows nothing of ([`Limiter::learn`]), and the
//! streams of a node silent for [`GONE_AFTER`] stop counting. docs/scaling.md gives the bound
//! in numbers.

use parking_lot::Mutex;
use roost_store::{CountExchange, SharedCount, Store};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// How often a node of a cluster exchanges counts with the others.
pub const SHARE_EVERY: Duration = Duration::from_millis(500);
/// A node not heard from for this long is gone: its open streams no longer count.
pub const GONE_AFTER: Duration = Duration::from_secs(5);
/// A gauge this node has not looked at for this long is no longer followed.
const FOLLOW_GAUGE_FOR: Duration = Duration::from_secs(60);
/// Windows kept before ended ones are swept.
const MAX_KEYS: usize = 200_000;

/// One key's fixed window on this node.
struct Window {
    /// Unix milliseconds; a multiple of `length_ms`.
    start_ms: i64,
    length_ms: i64,
    mine: u32,
    /// What the other nodes had counted in this window at the last exchange.
    others: u32,
    /// `mine` changed since the last exchange.
    dirty: bool,
}

/// Another nodes' count of something open now (streams of a token or a user).
struct Gauge {
    others: u32,
    looked_at: Instant,
}

#[derive(Default)]
struct Counts {
    windows: HashMap<String, Window>,
    gauges: HashMap<String, Gauge>,
    /// This node's gauges as last published (a key that dropped to 0 is published once more).
    gauges_sent: HashMap<String, u64>,
}

#[derive(Default)]
pub struct Limiter {
    counts: Mutex<Counts>,
    /// Other nodes share the store: follow their gauges and exchange counts. Alone, this
    /// node's counts are the totals and no gauge is kept.
    shared: bool,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Limiter {
    /// A limiter for a node that shares its store with other nodes (`shared`), or runs alone.
    pub fn new(shared: bool) -> Limiter {
        Limiter { shared, ..Limiter::default() }
    }

    /// Counts one use of `key` against `limit` per `window`. `Err` carries the budget with the
    /// seconds to wait when the limit is reached (nothing is counted then).
    pub fn take(&self, key: &str, limit: u32, window: Duration) -> Result<Budget, Budget> {
        self.take_at(key, limit, window, now_ms())
    }

    fn take_at(&self, key: &str, limit: u32, window: Duration, now_ms: i64) -> Result<Budget, Budget> {
        if limit == 0 {
            return Ok(Budget { limit: 0, remaining: 0, reset: 0 });
        }
        let length_ms = (window.as_millis() as i64).max(1);
        let start_ms = now_ms - now_ms.rem_euclid(length_ms);
        let mut counts = self.counts.lock();
        if counts.windows.len() > MAX_KEYS {
            counts.windows.retain(|_, w| w.start_ms + w.length_ms > now_ms);
        }
        let w = match counts.windows.get_mut(key) {
            Some(w) => w,
            None => counts.windows.entry(key.to_string()).or_insert(Window {
                start_ms,
                length_ms,
                mine: 0,
                others: 0,
                dirty: false,
            }),
        };
        if w.start_ms != start_ms || w.length_ms != length_ms {
            *w = Window { start_ms, length_ms, mine: 0, others: 0, dirty: false };
        }
        let reset = ((start_ms + length_ms - now_ms + 999) / 1000).max(1) as u64;
        let used = w.mine.saturating_add(w.others);
        if used >= limit {
            return Err(Budget { limit, remaining: 0, reset });
        }
        w.mine += 1;
        w.dirty = true;
        Ok(Budget { limit, remaining: limit - used - 1, reset })
    }

    /// What the other nodes hold open of `key` (0 when unknown), and follow it from now on.
    pub fn others(&self, key: &str) -> u32 {
        if !self.shared {
            return 0;
        }
        let mut counts = self.counts.lock();
        match counts.gauges.get_mut(key) {
            Some(g) => {
                g.looked_at = Instant::now();
                g.others
            }
            None => {
                counts.gauges.insert(key.to_string(), Gauge { others: 0, looked_at: Instant::now() });
                0
            }
        }
    }

    /// Asks the other nodes (now, not at the next exchange) for the gauges in `keys` this node
    /// does not follow yet. Without other nodes, or when the database does not answer, the
    /// gauges stay as they were (a check then counts what it knows).
    pub async fn learn(&self, store: &dyn Store, keys: &[String]) {
        if !self.shared {
            return;
        }
        let unknown: Vec<(String, i64)> = {
            let counts = self.counts.lock();
            keys.iter().filter(|k| !counts.gauges.contains_key(*k)).map(|k| (k.clone(), 0)).collect()
        };
        if unknown.is_empty() {
            return;
        }
        let exchange = CountExchange {
            now_ms: now_ms(),
            mine: Vec::new(),
            ask: unknown,
            alive_ms: GONE_AFTER.as_millis() as i64,
        };
        if let Ok(found) = store.share_counts(exchange.clone()).await {
            self.absorb(&exchange.ask, found);
        }
    }

    /// What to publish and ask at an exchange; `open` is this node's gauges now.
    fn exchange(&self, now_ms: i64, open: HashMap<String, u64>) -> CountExchange {
        let mut counts = self.counts.lock();
        let Counts { windows, gauges, gauges_sent } = &mut *counts;
        windows.retain(|_, w| w.start_ms + w.length_ms > now_ms);
        gauges.retain(|k, g| g.looked_at.elapsed() < FOLLOW_GAUGE_FOR || open.contains_key(k));
        let mut mine = Vec::new();
        let mut ask = Vec::new();
        for (key, w) in windows.iter_mut() {
            if w.dirty {
                w.dirty = false;
                let count =
                    SharedCount { key: key.clone(), window_start: w.start_ms, count: u64::from(w.mine) };
                mine.push((count, w.start_ms + w.length_ms));
            }
            ask.push((key.clone(), w.start_ms));
        }
        for (key, n) in &open {
            if gauges_sent.get(key) != Some(n) {
                mine.push((SharedCount { key: key.clone(), window_start: 0, count: *n }, i64::MAX));
            }
        }
        for key in gauges_sent.keys().filter(|k| !open.contains_key(*k)) {
            mine.push((SharedCount { key: key.clone(), window_start: 0, count: 0 }, i64::MAX));
        }
        *gauges_sent = open;
        ask.extend(gauges.keys().map(|k| (k.clone(), 0)));
        CountExchange { now_ms, mine, ask, alive_ms: GONE_AFTER.as_millis() as i64 }
    }

    /// Takes in the other nodes' counts of the keys asked (a key not found: they count none).
    fn absorb(&self, asked: &[(String, i64)], found: Vec<SharedCount>) {
        let found: HashMap<(String, i64), u64> =
            found.into_iter().map(|c| ((c.key, c.window_start), c.count)).collect();
        let mut counts = self.counts.lock();
        for (key, start) in asked {
            let n =
                found.get(&(key.clone(), *start)).map(|n| (*n).min(u64::from(u32::MAX)) as u32).unwrap_or(0);
            if *start == 0 {
                counts
                    .gauges
                    .entry(key.clone())
                    .or_insert(Gauge { others: 0, looked_at: Instant::now() })
                    .others = n;
            } else if let Some(w) = counts.windows.get_mut(key).filter(|w| w.start_ms == *start) {
                w.others = n;
            }
        }
    }

    /// An exchange that failed: publish its counts again next time.
    fn unsent(&self, exchange: &CountExchange) {
        let mut counts = self.counts.lock();
        for (c, _) in &exchange.mine {
            if c.window_start == 0 {
                // Differs from any count: published again, as 0 if it closed meanwhile.
                counts.gauges_sent.insert(c.key.clone(), u64::MAX);
            } else if let Some(w) = counts.windows.get_mut(&c.key).filter(|w| w.start_ms == c.window_start) {
                w.dirty = true;
            }
        }
    }
}

/// Exchanges counts with the other nodes of a cluster every [`SHARE_EVERY`], for as long as
/// the server runs. A failed exchange is logged and its counts are published again next time.
pub async fn share(app: crate::App) {
    let mut tick = tokio::time::interval(SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let exchange = app.limiter.exchange(now_ms(), app.streams.open_gauges());
        match app.store.share_counts(exchange.clone()).await {
            Ok(found) => {
                app.limiter.absorb(&exchange.ask, found);
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "sharing limit counts with the other nodes failed; retrying");
                }
                failing = true;
                app.limiter.unsent(&exchange);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn counts_refuses_and_resets() {
        let l = Limiter::default();
        let at = |s: f64| (s * 1000.0) as i64;
        assert_eq!(l.take_at("k", 2, MINUTE, at(120.0)).unwrap().remaining, 1);
        assert_eq!(l.take_at("k", 2, MINUTE, at(150.0)).unwrap().remaining, 0);
        let e = l.take_at("k", 2, MINUTE, at(170.5)).unwrap_err();
        assert_eq!((e.remaining, e.reset), (0, 10), "the window ends on the minute");
        assert!(l.take_at("other", 2, MINUTE, at(170.5)).is_ok(), "keys are independent");
        assert!(l.take_at("k", 2, MINUTE, at(180.0)).is_ok(), "a new window");
        assert!(l.take_at("any", 0, MINUTE, at(180.0)).is_ok(), "0 means no limit");
    }

    #[test]
    fn other_nodes_counts_are_added() {
        let l = Limiter::new(true);
        let t = 600_000;
        assert!(l.take_at("k", 5, MINUTE, t).is_ok());
        let x = l.exchange(t + 1, HashMap::from([("open:u".to_string(), 2)]));
        let published: Vec<_> =
            x.mine.iter().map(|(c, _)| (c.key.as_str(), c.window_start, c.count)).collect();
        assert!(
            published.contains(&("k", 600_000, 1)) && published.contains(&("open:u", 0, 2)),
            "{published:?}"
        );
        assert!(x.ask.contains(&("k".to_string(), 600_000)));
        // The other nodes used 3 of k's window and hold 7 streams of "open:u".
        l.absorb(
            &[("k".into(), 600_000)],
            vec![SharedCount { key: "k".into(), window_start: 600_000, count: 3 }],
        );
        l.absorb(
            &[("open:u".into(), 0)],
            vec![SharedCount { key: "open:u".into(), window_start: 0, count: 7 }],
        );
        assert_eq!(l.take_at("k", 5, MINUTE, t + 2).unwrap().remaining, 0, "1 + 3 + this one");
        assert!(l.take_at("k", 5, MINUTE, t + 3).is_err());
        assert_eq!(l.others("open:u"), 7);
        // Nothing changed but k: only k is published again, and the gauge that closed is
        // published once as 0.
        let x = l.exchange(t + 4, HashMap::new());
        let published: Vec<_> = x.mine.iter().map(|(c, _)| (c.key.as_str(), c.count)).collect();
        assert_eq!(published.len(), 2, "{published:?}");
        assert!(published.contains(&("k", 2)) && published.contains(&("open:u", 0)), "{published:?}");
        // A failed exchange is published again.
        l.unsent(&x);
        assert_eq!(l.exchange(t + 5, HashMap::new()).mine.len(), 2);
        // A node alone follows no gauge: nothing to keep for every token that opens a stream.
        let alone = Limiter::new(false);
        assert_eq!(alone.others("open:u"), 0);
        assert!(alone.counts.lock().gauges.is_empty());
    }
}
