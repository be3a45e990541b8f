//! What a stream sends: the newest state of its location (computed once per group and
//! revision), the states a subscriber a few revisions behind missed, deltas, and on resume the
//! revisions rebuilt from the change log.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Bytes;
use roost_model::history::{Replay, Step, Stretch};
use roost_model::view::read_location;
use roost_model::{Location, Metadata};
use serde_json::{Value, json};

use crate::App;
use crate::auth::Grant;
use crate::hub::{RECENT, Snapshot};

use super::{Computed, Group, MAX_REPLAY, event, parse_position, position};

pub(super) struct StreamTask {
    pub(super) app: App,
    /// The structures the stream's location covers (`api::scope`), resolved once.
    pub(super) slots: Vec<Arc<crate::hub::Slot>>,
    pub(super) grant: Arc<Grant>,
    pub(super) location: Location,
    pub(super) metadata: Metadata,
    pub(super) group: Arc<Group>,
    pub(super) deltas: bool,
}

/// The subtree the subscriber holds: its text (to compare) and, in delta mode, its value
/// (to diff against).
pub(super) struct Sent {
    data: Arc<str>,
    value: Value,
    /// The revision the text is of, when the stream follows one structure.
    revision: Option<u64>,
}

impl StreamTask {
    /// The newest state, computed once per group and revision.
    pub(super) fn newest(&self) -> Arc<Computed> {
        // Fast path: the group already computed the revisions the slots are at now.
        if let Some(c) = self.group.newest.lock().as_ref()
            && c.revisions.len() == self.slots.len()
            && self.slots.iter().zip(&c.revisions).all(|(s, r)| s.revision() == *r)
        {
            return c.clone();
        }
        let snaps: Vec<Arc<Snapshot>> = self.slots.iter().map(|s| s.current()).collect();
        let c = self.compute(&snaps);
        {
            let mut g = self.group.newest.lock();
            // Never replace a newer computation with an older one.
            let older =
                g.as_ref().is_none_or(|old| old.revisions.iter().zip(&c.revisions).all(|(o, n)| o <= n));
            if older {
                *g = Some(c.clone());
            }
        }
        c
    }

    /// The filtered, serialized state at `snaps` (one per slot).
    fn compute(&self, snaps: &[Arc<Snapshot>]) -> Arc<Computed> {
        let position = position(snaps);
        let data =
            read_location(snaps, self.grant.viewer(), &self.metadata, &self.location).unwrap_or(Value::Null);
        let text: Arc<str> = Arc::from(roost_model::json_text(&data));
        let put = event("put", Some(&position), &format!("{{\"path\":\"/\",\"data\":{text}}}"));
        Arc::new(Computed {
            revisions: snaps.iter().map(|s| s.revision).collect(),
            position,
            data: text,
            put,
        })
    }

    /// A single structure's state at an earlier snapshot, computed once per group.
    fn computed_at(&self, snap: &Arc<Snapshot>) -> Arc<Computed> {
        if let Some(c) = self.group.earlier.lock().iter().find(|c| c.revisions == [snap.revision]) {
            return c.clone();
        }
        let c = self.compute(std::slice::from_ref(snap));
        let mut earlier = self.group.earlier.lock();
        if !earlier.iter().any(|e| e.revisions == c.revisions) {
            if earlier.len() >= RECENT {
                earlier.pop_front();
            }
            earlier.push_back(c.clone());
        }
        c
    }

    /// What the subscriber holds after `c` is sent.
    fn sent(&self, c: &Computed, value: Value) -> Sent {
        let revision = if self.slots.len() == 1 { c.revisions.first().copied() } else { None };
        Sent { data: c.data.clone(), value, revision }
    }

    /// When the subscriber fell more than one revision behind: every state it did not see, up
    /// to `newest`, in order and in one write (each with its own id). `None` when it is one
    /// behind, follows several structures, or none of it changed what the subscriber sees.
    /// When the slot no longer keeps what it missed: `Err` with the event id to replay from
    /// the change log (as a resume does); only a gap past `MAX_REPLAY` gets the newest alone.
    /// The write depends only on the group and the two revisions, so subscribers of a group
    /// share it.
    fn catch_up(&self, s: &Sent, newest: &Computed) -> Option<Result<(Bytes, Sent), String>> {
        let [slot] = self.slots.as_slice() else { return None };
        let (held, now) = (s.revision?, *newest.revisions.first()?);
        if now <= held.saturating_add(1) {
            return None;
        }
        if let Some((h, n, bytes)) = self.group.caught_up.lock().as_ref()
            && (*h, *n) == (held, now)
        {
            return Some(Ok((bytes.clone(), self.sent(newest, Value::Null))));
        }
        let Some(missed) = slot.since(held, now) else {
            let within = (now - held) as usize <= MAX_REPLAY;
            return within.then(|| Err(format!("{}:{held}", slot.current().home.id())));
        };
        let mut out: Vec<u8> = Vec::new();
        let mut last = s.data.clone();
        for snap in &missed[..missed.len() - 1] {
            let c = self.computed_at(snap);
            if c.data != last {
                out.extend_from_slice(&c.put);
                last = c.data.clone();
            }
        }
        if newest.data != last {
            out.extend_from_slice(&newest.put);
        }
        if out.is_empty() {
            return None;
        }
        let bytes = Bytes::from(out);
        *self.group.caught_up.lock() = Some((held, now, bytes.clone()));
        Some(Ok((bytes, self.sent(newest, Value::Null))))
    }

    /// The event carrying the newest state, if it differs from what the subscriber holds;
    /// `Err` with the event id to replay from the change log when the subscriber is further
    /// behind than the structure keeps (see `catch_up`).
    pub(super) fn newest_event(&self, sent: Option<&Sent>) -> Result<Option<(Bytes, Sent)>, String> {
        let c = self.newest();
        Ok(match sent {
            // Before the equality check: states in between count even if the newest is again
            // what the subscriber holds (an alarm that went on and off while it was behind).
            Some(s)
                if !self.deltas
                    && let Some(caught_up) = self.catch_up(s, &c) =>
            {
                Some(caught_up?)
            }
            Some(s) if Arc::ptr_eq(&s.data, &c.data) || s.data == c.data => None,
            Some(s) if self.deltas => {
                let value: Value = serde_json::from_str(&c.data).unwrap_or(Value::Null);
                let patch = roost_model::diff::diff(&s.value, &value).1;
                let patch = if value.is_object() && s.value.is_object() { patch } else { value.clone() };
                let bytes = event(
                    "patch",
                    Some(&c.position),
                    &roost_model::json_text(&json!({"path": "/", "data": patch})),
                );
                Some((bytes, self.sent(&c, value)))
            }
            _ => {
                let value = if self.deltas {
                    serde_json::from_str(&c.data).unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                Some((c.put.clone(), self.sent(&c, value)))
            }
        })
    }

    /// Replays what a reconnecting client missed since `id`; `None` (after telling the client
    /// with `event: resync`) when that cannot be done exactly.
    pub(super) async fn resume(&self, id: &str, out: &mut VecDeque<Bytes>) -> Option<Sent> {
        match self.replay(id, out).await {
            Ok(sent) => Some(sent),
            Err(reason) => {
                out.clear();
                let data = roost_model::json_text(&json!({"reason": reason, "last_event_id": id}));
                out.push_back(event("resync", None, &data));
                None
            }
        }
    }

    async fn replay(&self, id: &str, out: &mut VecDeque<Bytes>) -> Result<Sent, &'static str> {
        let from = parse_position(id).ok_or("the event id is not one this server sent")?;
        let now: Vec<Arc<Snapshot>> = self.slots.iter().map(|s| s.current()).collect();
        // Each structure's log entries since the client's revision (read here, replayed by
        // the model).
        let mut logs = Vec::with_capacity(now.len());
        for snap in &now {
            let start = *from.get(snap.home.id()).ok_or("the event id names other structures")?;
            let missed = snap.revision.saturating_sub(start) as usize;
            if missed > MAX_REPLAY {
                return Err("too many changes since the event id");
            }
            let changes = if missed == 0 {
                Vec::new()
            } else {
                self.app
                    .store
                    .changes_after(snap.home.id(), start, missed)
                    .await
                    .map_err(|_| "the change log could not be read")?
            };
            logs.push((start, changes));
        }
        let stretches: Vec<Stretch<'_>> = now
            .iter()
            .zip(&logs)
            .map(|(snap, (from, changes))| Stretch {
                now: snap,
                from: *from,
                steps: changes
                    .iter()
                    .map(|c| Step { revision: c.revision, patch: &c.patch, inverse: &c.inverse })
                    .collect(),
            })
            .collect();
        let mut replay = Replay::rewind(&stretches).map_err(|e| e.reason())?;
        let view = |replay: &Replay| -> Result<(String, Value), &'static str> {
            let snaps = replay.snapshots().map_err(|e| e.reason())?;
            let data = read_location(&snaps, self.grant.viewer(), &self.metadata, &self.location)
                .unwrap_or(Value::Null);
            Ok((position(&snaps), data))
        };
        let (_, mut held) = view(&replay)?;
        while replay.step() {
            let (p, data) = view(&replay)?;
            if data != held {
                let bytes = if self.deltas {
                    let patch = roost_model::diff::diff(&held, &data).1;
                    let patch = if data.is_object() && held.is_object() { patch } else { data.clone() };
                    event("patch", Some(&p), &roost_model::json_text(&json!({"path": "/", "data": patch})))
                } else {
                    event("put", Some(&p), &roost_model::json_text(&json!({"path": "/", "data": data})))
                };
                out.push_back(bytes);
                held = data;
            }
        }
        // The revision the replay ended at, as `sent` keeps it: without it a later burst could
        // not be caught up state by state (it would send only the newest).
        let revision = if now.len() == 1 { now.first().map(|s| s.revision) } else { None };
        Ok(Sent { data: Arc::from(held.to_string()), value: held, revision })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{AppInner, Config};
    use roost_model::Home;
    use tokio_util::sync::CancellationToken;

    fn home(smoke: &str) -> Home {
        let mut fields = serde_json::Map::new();
        fields.insert("smoke_alarm_state".into(), json!(smoke));
        Home::new_structure("s1", fields)
    }

    /// A stream task on structure `s1` of a real (temporary) store, following `location`.
    fn task(dir: &std::path::Path, location: &str) -> StreamTask {
        let store = crate::open_store(dir, 100).unwrap();
        let app = App(Arc::new(AppInner {
            store,
            hub: crate::hub::Hub::default(),
            grants: crate::auth::Grants::default(),
            streams: super::super::Streams::default(),
            connectivity: crate::connectivity::Connectivity::default(),
            limiter: crate::ratelimit::Limiter::default(),
            public_url: String::new(),
            config: Config::new(dir.to_path_buf()),
            shutdown: CancellationToken::new(),
            metrics: None,
        }));
        app.hub.load("s1", 1, home("ok").to_json());
        let slot = app.hub.slot("s1").unwrap();
        let grant = Grant {
            expires_at: None,
            hash: [0; 32],
            user_id: "u".into(),
            product_id: None,
            permissions: roost_model::permission::PermissionSet::all(),
            structures: vec!["s1".into()],
            client_version: 1,
            device_id: None,
        };
        StreamTask {
            app: app.clone(),
            slots: vec![slot],
            grant: Arc::new(grant),
            location: Location::parse(location).unwrap(),
            metadata: Metadata { access_token: "t".into(), client_version: 1, user_id: "u".into() },
            group: Arc::new(Group::default()),
            deltas: false,
        }
    }

    #[tokio::test]
    async fn a_stream_behind_sends_each_state_it_missed_even_when_the_newest_is_what_it_holds() {
        let dir = std::env::temp_dir().join(format!("roost-stream-{}", crate::ids::random_b64(8)));
        let task = task(&dir, "/structures/s1/smoke_alarm_state");
        let slot = task.slots[0].clone();
        let _feed = slot.subscribe();
        let (_, held) = task.newest_event(None).unwrap().unwrap();
        // The alarm goes off and is cleared before the stream can write again.
        slot.install(Arc::new(Snapshot { revision: 2, home: home("emergency") }));
        slot.install(Arc::new(Snapshot { revision: 3, home: home("ok") }));
        let (bytes, now) = task.newest_event(Some(&held)).unwrap().unwrap();
        // Another subscriber of the group holding the same revision sends the same write, not a copy.
        let twin = StreamTask {
            app: task.app.clone(),
            slots: task.slots.clone(),
            grant: task.grant.clone(),
            location: task.location.clone(),
            metadata: task.metadata.clone(),
            group: task.group.clone(),
            deltas: false,
        };
        let (shared, _) = twin.newest_event(Some(&held)).unwrap().unwrap();
        assert_eq!(shared.as_ptr(), bytes.as_ptr(), "built once for the group");
        let text = std::str::from_utf8(&bytes).unwrap();
        let emergency = text.find("id: s1:2\ndata: {\"path\":\"/\",\"data\":\"emergency\"}").unwrap();
        let cleared = text.find("id: s1:3\ndata: {\"path\":\"/\",\"data\":\"ok\"}").unwrap();
        assert!(emergency < cleared, "in order: {text}");
        assert_eq!(text.matches("event: put").count(), 2);
        assert_eq!(now.revision, Some(3));
        assert!(task.newest_event(Some(&now)).unwrap().is_none(), "nothing more to send");
        // Further behind than the structure keeps: replayed from the change log, from the
        // event id the subscriber holds.
        for r in 4..(5 + RECENT as u64) {
            let smoke = if r % 2 == 0 { "warning" } else { "ok" };
            slot.install(Arc::new(Snapshot { revision: r, home: home(smoke) }));
        }
        assert_eq!(task.newest_event(Some(&now)).err().as_deref(), Some("s1:3"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
