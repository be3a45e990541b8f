//! Connectivity: whether each paired device is online, kept by the service from the device's
//! own traffic. A device is online while it holds a stream open or has made a request within
//! the offline timeout; [`Connectivity::transitions`] says which devices crossed that line,
//! and the clock ([`crate::clock`]) writes `is_online`, `last_is_online_change` and
//! `last_connection` through the normal change path.
//!
//! What a node knows is its own traffic: a device is tracked by the node it talks to (after a
//! restart, paired devices start as "seen now" and go offline unless they come back).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Presence {
    structure_id: String,
    streams: usize,
    last_seen: Instant,
    /// When `last_connection` was last written while online.
    refreshed: Instant,
    /// The state this node last asked to write (`None`: none yet), for devices whose home
    /// the node does not hold: it is asked for once, not every tick.
    reported: Option<bool>,
}

/// What a device's home says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Documented {
    /// The device is no longer in its home: forget it.
    Gone,
    /// The node does not hold the home now: a transition is asked for (which loads the home
    /// and writes nothing if it already agrees) unless the same one was asked for last.
    Unknown,
    /// `is_online` as the home has it.
    Online(bool),
}

#[derive(Default)]
pub struct Connectivity {
    devices: Mutex<HashMap<String, Presence>>,
}

/// Most devices tracked by one node; beyond it, new devices are not tracked (and a metric
/// says so) rather than growing without bound.
const MAX_TRACKED: usize = 1_000_000;

/// A change to write for one device.
#[derive(Debug, PartialEq, Eq)]
pub enum Transition {
    Online,
    Offline,
    /// Still online: refresh `last_connection`.
    StillOnline,
}

impl Connectivity {
    fn with(&self, device_id: &str, structure_id: &str, f: impl FnOnce(&mut Presence)) {
        let mut devices = self.devices.lock();
        if !devices.contains_key(device_id) {
            if devices.len() >= MAX_TRACKED {
                metrics::counter!("roost_connectivity_untracked_total").increment(1);
                return;
            }
            let now = Instant::now();
            devices.insert(
                device_id.to_string(),
                Presence {
                    structure_id: structure_id.to_string(),
                    streams: 0,
                    last_seen: now,
                    refreshed: now,
                    reported: None,
                },
            );
        }
        if let Some(p) = devices.get_mut(device_id) {
            f(p);
        }
    }

    /// The device made a request.
    pub fn seen(&self, device_id: &str, structure_id: &str) {
        self.with(device_id, structure_id, |p| p.last_seen = Instant::now());
    }

    pub fn stream_opened(&self, device_id: &str, structure_id: &str) {
        self.with(device_id, structure_id, |p| {
            p.streams += 1;
            p.last_seen = Instant::now();
        });
    }

    pub fn stream_closed(&self, device_id: &str, structure_id: &str) {
        self.with(device_id, structure_id, |p| {
            p.streams = p.streams.saturating_sub(1);
            p.last_seen = Instant::now();
        });
    }

    /// Devices whose state differs from what the document says (`documented(structure,
    /// device)`: the device's `is_online` now, `None` when it is gone), and online devices due
    /// a `last_connection` refresh, as `(structure, device, transition)`.
    pub fn transitions(
        &self,
        timeout: Duration,
        refresh_every: Duration,
        documented: impl Fn(&str, &str) -> Documented,
    ) -> Vec<(String, String, Transition)> {
        let mut devices = self.devices.lock();
        let now = Instant::now();
        let mut out = Vec::new();
        devices.retain(|id, p| {
            let online = p.streams > 0 || now.duration_since(p.last_seen) < timeout;
            let in_doc = match documented(&p.structure_id, id) {
                Documented::Gone => return false,
                Documented::Online(in_doc) => in_doc,
                Documented::Unknown if p.reported == Some(online) => return true,
                Documented::Unknown => !online,
            };
            if online != in_doc {
                p.reported = Some(online);
                let t = if online { Transition::Online } else { Transition::Offline };
                out.push((p.structure_id.clone(), id.clone(), t));
                p.refreshed = now;
            } else if online && now.duration_since(p.refreshed) >= refresh_every {
                out.push((p.structure_id.clone(), id.clone(), Transition::StillOnline));
                p.refreshed = now;
            }
            true
        });
        out
    }

    pub fn tracked(&self) -> usize {
        self.devices.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_streams_requests_and_the_timeout() {
        let c = Connectivity::default();
        // Generous margins: each step's check comes well inside or well past its window.
        let timeout = Duration::from_millis(500);
        let refresh = Duration::from_millis(1500);
        let doc = std::cell::RefCell::new(false);
        let documented = |_: &str, _: &str| Documented::Online(*doc.borrow());
        // Seen just now while the document says offline: online.
        c.seen("d1", "s1");
        assert_eq!(
            c.transitions(timeout, refresh, documented),
            vec![("s1".into(), "d1".into(), Transition::Online)]
        );
        *doc.borrow_mut() = true;
        assert!(c.transitions(timeout, refresh, documented).is_empty());
        // A stream keeps it online past the timeout; closing it starts the clock again.
        c.stream_opened("d1", "s1");
        std::thread::sleep(Duration::from_millis(700));
        assert!(c.transitions(timeout, refresh, documented).is_empty());
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(
            c.transitions(timeout, refresh, documented),
            vec![("s1".into(), "d1".into(), Transition::StillOnline)],
            "last_connection refreshed once per period"
        );
        c.stream_closed("d1", "s1");
        assert!(c.transitions(timeout, refresh, documented).is_empty());
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(
            c.transitions(timeout, refresh, documented),
            vec![("s1".into(), "d1".into(), Transition::Offline)]
        );
        // A home the node does not hold: the transition is asked for once.
        let unknown = |_: &str, _: &str| Documented::Unknown;
        c.seen("d1", "s1");
        assert_eq!(
            c.transitions(timeout, refresh, unknown),
            vec![("s1".into(), "d1".into(), Transition::Online)]
        );
        assert!(c.transitions(timeout, refresh, unknown).is_empty(), "asked for once");
        // A device that is gone from its home is forgotten.
        assert!(c.transitions(timeout, refresh, |_: &str, _: &str| Documented::Gone).is_empty());
        assert_eq!(c.tracked(), 0);
    }
}
