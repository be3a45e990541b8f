//! Following other writers: the commits and revocations of other processes (`roost admin`,
//! other nodes on a shared database) reach this server through the store's feeds, read
//! every [`POLL_INTERVAL`] and at once when the store wakes it. The same loop lets go of
//! homes past the hub's bound.

use std::time::{Duration, Instant};

use roost_store::{Store, StoreError};

use crate::App;

/// How often a server looks for commits and revocations made by other processes (`roost
/// admin`, other nodes): the longest such a change takes to reach it. On PostgreSQL the
/// other nodes' commits also wake it at once ([`roost_store::Store::wakeups`]).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Least time between two reads of the feeds that wake-ups start (BENCHMARKS.md: with three
/// nodes writing, a read per wake-up cost 17 % of their writes).
const WAKE_SPACING: Duration = Duration::from_millis(10);

/// Where the server starts following the feeds: their heads, taken before it serves a request
/// (homes and grants load on first use, so anything committed before is read from the store,
/// and anything after is in the feeds from here).
pub(crate) async fn feed_positions(store: &dyn Store) -> (u64, u64) {
    let start = |what: &str, r: Result<u64, StoreError>| {
        r.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "{what}: the first look at the store failed; starting from the beginning");
            0
        })
    };
    let changes = start("changes", store.feed_head().await);
    let revocations = start("revocations", store.revoked_since(0).await.map(|(_, s)| s));
    (changes, revocations)
}

/// Learns of commits and revocations made by other processes (admin commands, other nodes).
///
/// A failed look is logged and made again at the next tick from the same position, so nothing
/// is skipped: it only comes later. Starting from position 0 (when the first look fails) is
/// safe too: a commit is loaded only if newer than the hub's revision, and revoking a revoked
/// token again changes nothing.
pub(crate) async fn poll_other_writers(app: App, (mut seq, mut revoked_seq): (u64, u64)) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    let wakeups = app.store.wakeups();
    // How often the hub lets go of homes past its bound.
    const EVICT_EVERY: Duration = Duration::from_millis(500);
    let mut last_eviction = Instant::now();
    let mut last_read = Instant::now();
    loop {
        match &wakeups {
            // Another node's commit (as the database tells it), or the poll: whichever first.
            Some(wake) => {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = wake.notified() => {
                        // Wake-ups that come in a burst share one read of the feeds: each
                        // read is two queries, and a node writing hard sends one every 5 ms.
                        tokio::time::sleep_until((last_read + WAKE_SPACING).into()).await;
                    }
                }
                last_read = Instant::now();
            }
            None => {
                tick.tick().await;
            }
        }
        app.store.report_metrics();
        if last_eviction.elapsed() >= EVICT_EVERY {
            app.hub.evict(app.config.cache_homes.max(1));
            last_eviction = Instant::now();
        }
        metrics::gauge!("roost_hub_structures").set(app.hub.len() as f64);
        match app.hub.refresh(app.store.as_ref(), seq).await {
            Ok(s) => seq = s,
            Err(e) => tracing::warn!(error = %e, "refresh from store failed; retried at the next tick"),
        }
        match app.store.revoked_since(revoked_seq).await {
            Ok((hashes, s)) => {
                revoked_seq = s;
                for h in hashes {
                    app.revoke(&h);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading revocations failed; retried at the next tick"),
        }
    }
}
