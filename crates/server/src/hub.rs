//! The hub: the current revision of every structure in memory, one writer per structure, and
//! a change feed per structure for streams.
//!
//! The store is the truth; the hub is a cache of it that is always either current or about to
//! be corrected: every local commit updates it, and [`Hub::refresh`] (run by a poller) loads
//! structures that other processes or nodes committed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use roost_model::Home;
use roost_store::{Store, StoreError};
use tokio::sync::Mutex;

use crate::feed::{Feed, FeedReceiver};

pub use roost_model::view::Snapshot;

pub struct Slot {
    /// Held while a write is checked and committed: one writer per structure.
    pub writer: Mutex<()>,
    current: RwLock<Arc<Snapshot>>,
    /// The newest installed revision, for streams to wait on; made when the structure's first
    /// stream subscribes (most structures have none open). A stream only needs to learn that
    /// something changed: it then reads [`Slot::current`], so a feed carries a revision, not
    /// snapshots to be buffered and skipped (see [`Feed`] for how it wakes many streams).
    changes: OnceLock<Arc<Feed>>,
    /// The last [`RECENT`] snapshots installed while a feed exists, oldest first: a stream a
    /// few revisions behind sends each state it missed (in one write) instead of only the
    /// newest, so a brief alarm is not lost to a subscriber that was slow for a moment.
    recent: parking_lot::Mutex<VecDeque<Arc<Snapshot>>>,
    /// The newest revision another process is known to have committed (0: none). A slot no
    /// stream watches is not reloaded when the feed names it ([`Hub::refresh`]): it is marked,
    /// and its next user reloads it ([`Slot::is_stale`]).
    newer: AtomicU64,
    /// When a request or a write last used it ([`uptime_secs`]), for eviction.
    last_used: AtomicU64,
}

/// Seconds since the process started (coarse: eviction only compares minutes).
fn uptime_secs() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_secs()
}

/// A structure used within this long is never evicted (a request between loading it and
/// subscribing to it takes microseconds).
const MIN_IDLE_SECS: u64 = 2;

/// Snapshots a watched structure keeps for streams that fell behind (see [`Slot::since`]).
pub const RECENT: usize = 16;

impl Slot {
    /// Marks it used now (requests and writes; not the clock's look at every home).
    pub fn touch(&self) {
        self.last_used.store(uptime_secs(), Ordering::Relaxed);
    }

    /// Whether another process committed a revision newer than the one held.
    pub fn is_stale(&self) -> bool {
        self.newer.load(Ordering::SeqCst) > self.revision()
    }

    /// Whether a stream follows it.
    fn watched(&self) -> bool {
        self.changes.get().is_some_and(|f| f.receiver_count() > 0)
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// The current revision number.
    pub fn revision(&self) -> u64 {
        self.current.read().revision
    }

    /// Installs a newer revision and tells subscribers. Older or equal revisions are ignored,
    /// so a late refresh never rolls a structure back.
    pub fn install(&self, snapshot: Arc<Snapshot>) {
        let mut g = self.current.write();
        if snapshot.revision > g.revision {
            *g = snapshot.clone();
            drop(g);
            // With no feed yet, a stream that makes one now still misses nothing: it reads
            // `current` after making its feed, and had it read before this write, the lock
            // would have made its feed visible here.
            if let Some(feed) = self.changes.get() {
                // Kept (while a stream is open) before the feed tells anyone, so a stream it
                // wakes finds it; once the last stream closed, let go of what was kept.
                {
                    let mut recent = self.recent.lock();
                    if feed.receiver_count() == 0 {
                        recent.clear();
                    } else {
                        if recent.len() == RECENT {
                            recent.pop_front();
                        }
                        recent.push_back(snapshot.clone());
                    }
                }
                feed.announce(snapshot.revision);
            }
        }
    }

    /// The snapshots after revision `after` up to `upto`, oldest first; `None` unless every one
    /// of them is kept (a stream then sends only the newest, as it would have anyway).
    pub fn since(&self, after: u64, upto: u64) -> Option<Vec<Arc<Snapshot>>> {
        let recent = self.recent.lock();
        let missed: Vec<Arc<Snapshot>> =
            recent.iter().filter(|s| s.revision > after && s.revision <= upto).cloned().collect();
        let whole = missed.first()?.revision == after.checked_add(1)?
            && missed.last()?.revision == upto
            && missed.windows(2).all(|w| w[1].revision == w[0].revision + 1);
        whole.then_some(missed)
    }

    /// The structure's change feed (made by the first subscriber). Subscribe before reading
    /// [`Slot::current`], so that no revision falls between the two.
    pub fn subscribe(&self) -> FeedReceiver {
        self.changes.get_or_init(|| Feed::new(self.revision())).subscribe()
    }
}

#[derive(Default)]
pub struct Hub {
    slots: RwLock<HashMap<String, Arc<Slot>>>,
    /// The structure that holds each device, so that a location naming a device finds its
    /// home at once instead of searching every home of a grant. Entries of removed devices
    /// stay (the home then has no such device: 404 as before).
    devices: RwLock<HashMap<Box<str>, Arc<str>>>,
}

impl Hub {
    pub fn slot(&self, id: &str) -> Option<Arc<Slot>> {
        self.slots.read().get(id).cloned()
    }

    /// The structure holding `device_id`, among those the hub has seen.
    pub fn structure_of_device(&self, device_id: &str) -> Option<Arc<str>> {
        self.devices.read().get(device_id).cloned()
    }

    /// Records the devices of `home` in the index (new ones only: a write takes the read
    /// lock once per device and the write lock only when a device was added).
    pub fn index_devices(&self, home: &Home) {
        let missing: Vec<&str> = {
            let known = self.devices.read();
            roost_model::Entity::DEVICE_KINDS
                .into_iter()
                .flat_map(|kind| home.devices(kind).map(|(id, _)| id.as_str()))
                .filter(|id| !known.contains_key(*id))
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        let structure: Arc<str> = Arc::from(home.id());
        let mut known = self.devices.write();
        for id in missing {
            known.insert(id.into(), structure.clone());
        }
    }

    /// The current snapshots of the named structures that the hub holds, in that order.
    pub fn snapshots(&self, ids: &[String]) -> Vec<Arc<Snapshot>> {
        ids.iter().filter_map(|s| self.slot(s)).map(|s| s.current()).collect()
    }

    /// Every structure's slot (handles, not copies of ids).
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        self.slots.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.slots.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds or updates a structure from the store.
    pub fn load(&self, id: &str, revision: u64, doc: serde_json::Value) {
        let Some(home) = Home::from_json(id, doc) else {
            tracing::error!(structure = id, "stored document is not a home; skipped");
            return;
        };
        self.index_devices(&home);
        let snapshot = Arc::new(Snapshot { revision, home });
        if let Some(slot) = self.slot(id) {
            slot.install(snapshot);
            return;
        }
        let slot = Arc::new(Slot {
            writer: Mutex::new(()),
            current: RwLock::new(snapshot),
            changes: OnceLock::new(),
            recent: parking_lot::Mutex::new(VecDeque::new()),
            newer: AtomicU64::new(0),
            last_used: AtomicU64::new(uptime_secs()),
        });
        {
            self.slots.write().entry(id.to_string()).or_insert(slot);
        }
    }

    /// Lets go of structures until at most 90 % of `cap` are held, least recently used first,
    /// when more than `cap` are: only those no stream follows, no write holds and no request
    /// used within [`MIN_IDLE_SECS`] (their next user loads them again). Returns how many.
    pub fn evict(&self, cap: usize) -> usize {
        if self.len() <= cap {
            return 0;
        }
        let now = uptime_secs();
        let mut slots = self.slots.write();
        let mut idle: Vec<(u64, String)> = slots
            .iter()
            .filter(|(_, s)| {
                let last = s.last_used.load(Ordering::Relaxed);
                now.saturating_sub(last) >= MIN_IDLE_SECS && !s.watched() && s.writer.try_lock().is_ok()
            })
            .map(|(id, s)| (s.last_used.load(Ordering::Relaxed), id.clone()))
            .collect();
        idle.sort_unstable();
        let excess = slots.len().saturating_sub(cap - cap / 10);
        let mut evicted = 0;
        for (_, id) in idle.into_iter().take(excess) {
            slots.remove(&id);
            evicted += 1;
        }
        metrics::counter!("roost_hub_evictions_total").increment(evicted as u64);
        evicted
    }

    /// Brings structure `id` to the revision the store holds now; false if the store has no
    /// such structure. A structure a stream follows goes through each revision in between
    /// (see [`Hub::catch_up`]); any other is loaded as it is now.
    pub async fn reload(&self, store: &dyn Store, id: &str) -> Result<bool, StoreError> {
        if let Some(slot) = self.slot(id)
            && slot.watched()
        {
            let Some(upto) = store.revision(id).await? else { return Ok(false) };
            self.catch_up(store, id, &slot, upto).await?;
            return Ok(true);
        }
        self.load_newest(store, id).await
    }

    async fn load_newest(&self, store: &dyn Store, id: &str) -> Result<bool, StoreError> {
        let Some(s) = store.structure(id).await? else { return Ok(false) };
        self.load(&s.id, s.revision, s.doc);
        Ok(true)
    }

    /// Learns of structures committed elsewhere since `seq`; returns the new sequence. A
    /// structure a stream follows is reloaded now (its subscribers get the change); one that
    /// no stream follows is only marked stale and reloaded by its next user, so a node does
    /// not read every home another node writes; one the hub does not hold is left alone.
    pub async fn refresh(&self, store: &dyn Store, seq: u64) -> Result<u64, StoreError> {
        let (changed, next) = store.changed_since(seq).await?;
        for (id, revision) in changed {
            let Some(slot) = self.slot(&id) else { continue };
            if slot.revision() >= revision {
                continue;
            }
            slot.newer.fetch_max(revision, Ordering::SeqCst);
            if slot.watched() {
                self.catch_up(store, &id, &slot, revision).await?;
            }
        }
        Ok(next)
    }

    /// Installs each revision after the slot's up to `upto` from the change log, so the
    /// streams following it see every one, as they do for this node's own commits; loads the
    /// newest instead when the gap is wider than a stream could be sent at once ([`RECENT`])
    /// or the log cannot give every entry.
    async fn catch_up(&self, store: &dyn Store, id: &str, slot: &Slot, upto: u64) -> Result<(), StoreError> {
        let from = slot.revision();
        let gap = upto.saturating_sub(from);
        if gap == 0 {
            return Ok(());
        }
        if gap <= RECENT as u64 {
            let changes = store.changes_after(id, from, gap as usize).await?;
            let whole =
                changes.len() as u64 == gap && changes.iter().zip(from + 1..).all(|(c, r)| c.revision == r);
            if whole {
                let mut doc = slot.current().home.to_json();
                for change in changes {
                    // How long another node's change took to get here: from its judging to
                    // this install (the streams following it send it next).
                    if let Some(at) = roost_model::units::parse_time(&change.at) {
                        let lag = (chrono::Utc::now() - at).num_microseconds().unwrap_or(0).max(0);
                        metrics::histogram!("roost_cluster_change_lag_seconds").record(lag as f64 / 1e6);
                    }
                    roost_model::diff::json_merge(&mut doc, &change.patch);
                    let Some(home) = Home::from_json(id, doc.clone()) else { break };
                    self.index_devices(&home);
                    slot.install(Arc::new(Snapshot { revision: change.revision, home }));
                }
                if slot.revision() >= upto {
                    return Ok(());
                }
            }
        }
        self.load_newest(store, id).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn snapshot(revision: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot { revision, home: Home::new_structure("s1", serde_json::Map::new()) })
    }

    #[test]
    fn a_watched_slot_keeps_the_last_revisions_for_streams_that_fell_behind() {
        let hub = Hub::default();
        hub.load("s1", 1, snapshot(1).home.to_json());
        let slot = hub.slot("s1").unwrap();
        slot.install(snapshot(2));
        assert!(slot.since(1, 2).is_none(), "nothing is kept while no stream watches");
        let watcher = slot.subscribe();
        for r in 3..=(3 + RECENT as u64) {
            slot.install(snapshot(r));
        }
        let newest = 2 + RECENT as u64 + 1;
        let revisions = |v: Vec<Arc<Snapshot>>| v.iter().map(|s| s.revision).collect::<Vec<_>>();
        assert_eq!(revisions(slot.since(newest - 3, newest).unwrap()), vec![newest - 2, newest - 1, newest]);
        assert_eq!(slot.since(newest - RECENT as u64, newest).unwrap().len(), RECENT);
        assert!(slot.since(newest - RECENT as u64 - 1, newest).is_none(), "at most RECENT are kept");
        assert!(slot.since(0, newest).is_none(), "none unless every one is kept");
        assert!(slot.since(newest - 3, newest - 1).is_some());
        assert!(slot.since(newest - 3, newest + 1).is_none(), "not kept up to a revision it never had");
        assert!(slot.since(newest, newest).is_none(), "nothing after the newest");
        drop(watcher);
        slot.install(snapshot(newest + 1));
        assert!(slot.recent.lock().is_empty(), "let go once no stream watches");
    }

    #[test]
    fn a_feed_is_made_by_the_first_subscriber_and_then_tells_of_every_newer_revision() {
        let hub = Hub::default();
        hub.load("s1", 1, snapshot(1).home.to_json());
        let slot = hub.slot("s1").unwrap();
        slot.install(snapshot(2));
        assert!(slot.changes.get().is_none(), "no stream, no feed");
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut feed = slot.subscribe();
        assert!(feed.poll_changed(&mut cx).is_pending(), "a new subscriber holds the current revision");
        assert_eq!(slot.current().revision, 2);
        slot.install(snapshot(3));
        let mut second = slot.subscribe();
        slot.install(snapshot(3));
        assert!(second.poll_changed(&mut cx).is_pending(), "an equal revision is not told again");
        slot.install(snapshot(2));
        assert!(second.poll_changed(&mut cx).is_pending(), "nor an older one");
        slot.install(snapshot(4));
        assert_eq!(
            feed.poll_changed(&mut cx),
            std::task::Poll::Ready(4),
            "a subscriber behind learns of the newest"
        );
        assert!(feed.poll_changed(&mut cx).is_pending());
        assert_eq!(second.poll_changed(&mut cx), std::task::Poll::Ready(4));
    }
}
