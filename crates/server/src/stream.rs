//! REST streaming (docs/compatibility.md §4) and what Roost adds to it.
//!
//! - `event: put` with `{"path":"/","data":<filtered subtree>}` at once and after every
//!   committed change that changes the subtree; `keep-alive` (`data: null`) when idle;
//!   `auth_revoked` (data: the token) when the grant is revoked, then the stream closes;
//!   `error` (data: the message) for stream-level errors, such as the server shutting down.
//! - Every event carries `id: <structure>:<revision>[,…]`. A client reconnecting with
//!   `Last-Event-ID` (or `?last_event_id=`) gets exactly the puts it missed, in order, rebuilt
//!   from the change log; when the log no longer reaches back it gets `event: resync` (why, as
//!   JSON) and then a fresh snapshot.
//! - `?deltas=true`: after the first put, `event: patch` events carry an RFC 7396 merge patch
//!   of the subtree instead of the whole subtree.
//!
//! Fan-out: subscribers that see the same thing (same structures, location, permissions) share
//! a [`Group`]; the first of them to see a revision filters and serializes it, the others reuse
//! the bytes. A subscriber always subscribes to its structures' feeds *before* reading the
//! snapshot, so no change falls between. A slow subscriber blocks only its own task: while it
//! waits, feeds move on, and when it can write again it sends, in one write, each state it
//! missed that its structure still keeps (the last [`RECENT`] revisions, one structure,
//! `put` events), else the newest state (a put carries the whole subtree and a patch is
//! computed against what it last sent, so skipping loses no current value). Its queue is
//! bounded.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use roost_model::history::{Replay, Step, Stretch};
use roost_model::view::read_location;
use roost_model::{ApiError, Location, Metadata};
use serde_json::{Value, json};
use std::pin::Pin;
use tokio::time::{Duration, Instant, Sleep};

use parking_lot::Mutex;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::App;
use crate::auth::Grant;
use crate::error::Error;
use crate::feed::FeedReceiver;
use crate::http::query_param;
use crate::hub::{RECENT, Snapshot};

/// Most missed revisions a resume replays (their events are held until written); past it the
/// client gets a fresh snapshot.
const MAX_REPLAY: usize = 1_000;

fn event(name: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 48);
    s.push_str("event: ");
    s.push_str(name);
    s.push('\n');
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(id);
        s.push('\n');
    }
    s.push_str("data: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// The resume position of a set of snapshots: `sid:rev,sid:rev` in grant order.
fn position(snaps: &[Arc<Snapshot>]) -> String {
    snaps.iter().map(|s| format!("{}:{}", s.home.id(), s.revision)).collect::<Vec<_>>().join(",")
}

fn parse_position(id: &str) -> Option<HashMap<String, u64>> {
    id.split(',')
        .map(|part| {
            let (sid, rev) = part.rsplit_once(':')?;
            Some((sid.to_string(), rev.parse().ok()?))
        })
        .collect()
}

/// What subscribers seeing the same thing share: the newest filtered, serialized subtree.
#[derive(Default)]
pub struct Group {
    newest: Mutex<Option<Arc<Computed>>>,
    /// A single structure's earlier states, computed for streams catching up (see
    /// [`StreamTask::catch_up`]); at most [`RECENT`].
    earlier: Mutex<VecDeque<Arc<Computed>>>,
    /// The last catch-up write built: `(held revision, newest revision, bytes)`. Subscribers
    /// woken together mostly hold the same revision, so they send the same bytes.
    caught_up: Mutex<Option<(u64, u64, Bytes)>>,
}

struct Computed {
    /// Revisions of the group's structures (in grant order) it was computed at.
    revisions: Vec<u64>,
    position: String,
    data: Arc<str>,
    put: Bytes,
}

/// Live streams: groups, and per-token and per-user counts with the token's cancel handle.
#[derive(Default)]
pub struct Streams {
    groups: Mutex<HashMap<String, Weak<Group>>>,
    tokens: Mutex<HashMap<[u8; 32], (usize, CancellationToken)>>,
    users: Mutex<HashMap<String, usize>>,
    /// Cancelled when the server closes: every stream ends with an `error` event.
    closing: CancellationToken,
    /// Counts stop signals (a revocation, the server closing). It moves *before* the signal
    /// wakes anyone, so a stream needs to look at its stop signals only when it has moved:
    /// polling them takes locks that every stream of a token (or of the server) shares.
    stops: AtomicU64,
}

/// Held by a stream task; releases its counts when the stream ends.
struct Registration {
    app: App,
    token: [u8; 32],
    user: String,
    /// A device's own stream: `(device, structure)`, for connectivity.
    device: Option<(String, String)>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some((device, structure)) = &self.device {
            self.app.connectivity.stream_closed(device, structure);
        }
        let s = &self.app.streams;
        let mut t = s.tokens.lock();
        if let Some(e) = t.get_mut(&self.token) {
            e.0 -= 1;
            if e.0 == 0 {
                t.remove(&self.token);
            }
        }
        drop(t);
        let mut u = s.users.lock();
        if let Some(n) = u.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                u.remove(&self.user);
            }
        }
        metrics::gauge!("roost_streams_open").decrement(1.0);
    }
}

impl Streams {
    /// Ends every open stream of a token (it was revoked).
    pub fn revoke(&self, token: &[u8; 32]) {
        let entry = self.tokens.lock().get(token).cloned();
        if let Some((_, cancel)) = entry {
            self.stops.fetch_add(1, Ordering::SeqCst);
            cancel.cancel();
        }
    }

    /// Ends every open stream (the server is closing); streams opened later end at once.
    pub fn close_all(&self) {
        self.stops.fetch_add(1, Ordering::SeqCst);
        self.closing.cancel();
    }

    fn group(&self, key: String) -> Arc<Group> {
        let mut groups = self.groups.lock();
        if let Some(g) = groups.get(&key).and_then(Weak::upgrade) {
            return g;
        }
        if groups.len() > 1024 {
            groups.retain(|_, g| g.strong_count() > 0);
        }
        let g = Arc::new(Group::default());
        groups.insert(key, Arc::downgrade(&g));
        g
    }

    pub fn open_count(&self) -> usize {
        self.tokens.lock().values().map(|e| e.0).sum()
    }
}

fn too_many(what: &str, limit: usize) -> Error {
    let mut e = ApiError::blocked();
    e.message = format!("Too many open streams for this {what} (limit {limit}); close one and retry");
    e.with("retry_after", "30").into()
}

/// Opens a stream: checks the token's and user's limits, subscribes, and answers with a
/// body that the connection polls for events.
pub fn open(
    app: &App,
    grant: Arc<Grant>,
    location: Location,
    metadata: Metadata,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, Error> {
    // Limits first.
    let cancel = {
        let (mut tokens, mut users) = (app.streams.tokens.lock(), app.streams.users.lock());
        let per_token = tokens.get(&grant.hash).map(|e| e.0).unwrap_or(0);
        if per_token >= app.config.max_streams_per_token {
            return Err(too_many("token", app.config.max_streams_per_token));
        }
        let per_user = users.get(&grant.user_id).copied().unwrap_or(0);
        if per_user >= app.config.max_streams_per_user {
            return Err(too_many("user", app.config.max_streams_per_user));
        }
        *users.entry(grant.user_id.clone()).or_default() += 1;
        let entry = tokens.entry(grant.hash).or_insert_with(|| (0, CancellationToken::new()));
        entry.0 += 1;
        entry.1.clone()
    };
    metrics::gauge!("roost_streams_open").increment(1.0);
    let device = grant.device_id.clone().zip(grant.structures.first().cloned());
    if let Some((d, s)) = &device {
        app.connectivity.stream_opened(d, s);
    }
    let registration =
        Registration { app: app.clone(), token: grant.hash, user: grant.user_id.clone(), device };

    let resume_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query_param(uri, "last_event_id"));
    let deltas = matches!(query_param(uri, "deltas").as_deref(), Some("true" | "1"));
    let shows_metadata = location.is_root() || location.get(0) == Some("metadata");
    let key = format!(
        "{}|{}|{}|{}|{}",
        grant.structures.join(","),
        grant.permissions.bits(),
        grant.device_id.as_deref().unwrap_or(""),
        location,
        if shows_metadata { metadata.access_token.as_str() } else { "" }
    );
    let group = app.streams.group(key);

    // Subscribe first, then read.
    let slots: Vec<_> = grant.structures.iter().filter_map(|s| app.hub.slot(s)).collect();
    let feeds: Vec<FeedReceiver> = slots.iter().map(|s| s.subscribe()).collect();
    let keepalive = KeepAlive::new(app.config.keepalive);
    let state = StreamState {
        task: StreamTask { app: app.clone(), slots, grant, location, metadata, group, deltas },
        feeds,
        shutdown: Box::pin(app.streams.closing.clone().cancelled_owned()),
        revoked: Box::pin(cancel.cancelled_owned()),
        keepalive,
        sent: None,
        pending: VecDeque::new(),
        resume_from,
        stops_seen: None,
        started: false,
        done: false,
        _registration: registration,
    };
    // The connection polls the stream when it can write: no task or queue in between, and a
    // subscriber that cannot keep up is simply polled later, when it gets the newest state.
    let body = futures_util::stream::unfold(state, |mut state| async move {
        let next = state.next().await?;
        Some((Ok::<_, std::convert::Infallible>(next), state))
    });
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

struct StreamTask {
    app: App,
    /// The grant's structures, resolved once.
    slots: Vec<Arc<crate::hub::Slot>>,
    grant: Arc<Grant>,
    location: Location,
    metadata: Metadata,
    group: Arc<Group>,
    deltas: bool,
}

/// When a stream owes its client a keep-alive: one interval after it last wrote anything.
///
/// Writing an event only notes the time; the timer moves when it fires early (at most once an
/// interval), not at every event: moving a timer takes the timer driver's lock, which every
/// stream shares.
struct KeepAlive {
    interval: Duration,
    last_sent: Instant,
    timer: Pin<Box<Sleep>>,
}

impl KeepAlive {
    fn new(interval: Duration) -> KeepAlive {
        let now = Instant::now();
        KeepAlive { interval, last_sent: now, timer: Box::pin(tokio::time::sleep_until(now + interval)) }
    }

    fn sent(&mut self) {
        self.last_sent = Instant::now();
    }

    /// Ready when an interval has passed since the last write.
    fn poll_due(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        loop {
            std::task::ready!(self.timer.as_mut().poll(cx));
            let due = self.last_sent + self.interval;
            if due <= Instant::now() {
                self.timer.as_mut().reset(Instant::now() + self.interval);
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(due);
        }
    }
}

/// What a waiting stream woke for.
enum Woke {
    Closing,
    Revoked,
    Changed,
    Idle,
}

/// One stream's state between two events.
struct StreamState {
    task: StreamTask,
    feeds: Vec<FeedReceiver>,
    /// Registered once: re-registering with the shared shutdown and revocation tokens on
    /// every event would make all subscribers contend on their locks.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    revoked: Pin<Box<WaitForCancellationFutureOwned>>,
    /// [`Streams::stops`] when the stop signals were last polled (and were pending).
    stops_seen: Option<u64>,
    keepalive: KeepAlive,
    sent: Option<Sent>,
    /// Replayed events not yet written.
    pending: VecDeque<Bytes>,
    resume_from: Option<String>,
    started: bool,
    done: bool,
    _registration: Registration,
}

impl StreamState {
    /// The next event to write, or `None` to end the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(b) = self.pending.pop_front() {
            return Some(b);
        }
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            if let Some(id) = self.resume_from.take() {
                self.sent = self.task.resume(&id, &mut self.pending).await;
                if let Some(b) = self.pending.pop_front() {
                    return Some(b);
                }
            }
        }
        loop {
            if let Some((bytes, sent)) = self.task.newest_event(self.sent.as_ref()) {
                self.sent = Some(sent);
                self.keepalive.sent();
                return Some(bytes);
            }
            let (feeds, shutdown, revoked, keepalive, stops_seen) = (
                &mut self.feeds,
                &mut self.shutdown,
                &mut self.revoked,
                &mut self.keepalive,
                &mut self.stops_seen,
            );
            let streams = &self.task.app.streams;
            // Polled by hand rather than with `select!`, whose branch conditions are fixed when
            // it starts: whether to look at the stop signals is decided again at every wake.
            // Their wakers stay registered from the last look (the connection's task polls
            // this stream, always the same task).
            let woke = std::future::poll_fn(|cx| {
                let stops = streams.stops.load(Ordering::SeqCst);
                if *stops_seen != Some(stops) {
                    if shutdown.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Woke::Closing);
                    }
                    if revoked.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Woke::Revoked);
                    }
                    *stops_seen = Some(stops);
                }
                // Every feed is polled, so each is registered to wake this stream.
                let mut changed = false;
                for feed in feeds.iter_mut() {
                    changed |= feed.poll_changed(cx).is_ready();
                }
                if changed {
                    return Poll::Ready(Woke::Changed);
                }
                keepalive.poll_due(cx).map(|()| Woke::Idle)
            })
            .await;
            match woke {
                Woke::Closing => {
                    // A stream-level error: say why the stream ends, then end it.
                    self.done = true;
                    return Some(event(
                        "error",
                        None,
                        "\"service unavailable: the server is shutting down\"",
                    ));
                }
                Woke::Revoked => {
                    self.done = true;
                    let token = Value::from(self.task.metadata.access_token.as_str()).to_string();
                    return Some(event("auth_revoked", None, &token));
                }
                Woke::Idle => {
                    self.keepalive.sent();
                    return Some(event("keep-alive", None, "null"));
                }
                Woke::Changed => {}
            }
        }
    }
}

/// The subtree the subscriber holds: its text (to compare) and, in delta mode, its value
/// (to diff against).
struct Sent {
    data: Arc<str>,
    value: Value,
    /// The revision the text is of, when the stream follows one structure.
    revision: Option<u64>,
}

impl StreamTask {
    /// The newest state, computed once per group and revision.
    fn newest(&self) -> Arc<Computed> {
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
    /// behind, follows several structures, the slot no longer keeps what it missed (then it
    /// gets only the newest), or none of it changed what the subscriber sees. The write depends
    /// only on the group and the two revisions, so subscribers of a group share it.
    fn catch_up(&self, s: &Sent, newest: &Computed) -> Option<(Bytes, Sent)> {
        let [slot] = self.slots.as_slice() else { return None };
        let (held, now) = (s.revision?, *newest.revisions.first()?);
        if now <= held.saturating_add(1) {
            return None;
        }
        if let Some((h, n, bytes)) = self.group.caught_up.lock().as_ref()
            && (*h, *n) == (held, now)
        {
            return Some((bytes.clone(), self.sent(newest, Value::Null)));
        }
        let missed = slot.since(held, now)?;
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
        Some((bytes, self.sent(newest, Value::Null)))
    }

    /// The event carrying the newest state, if it differs from what the subscriber holds.
    fn newest_event(&self, sent: Option<&Sent>) -> Option<(Bytes, Sent)> {
        let c = self.newest();
        match sent {
            // Before the equality check: states in between count even if the newest is again
            // what the subscriber holds (an alarm that went on and off while it was behind).
            Some(s)
                if !self.deltas
                    && let Some(caught_up) = self.catch_up(s, &c) =>
            {
                Some(caught_up)
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
        }
    }

    /// Replays what a reconnecting client missed since `id`; `None` (after telling the client
    /// with `event: resync`) when that cannot be done exactly.
    async fn resume(&self, id: &str, out: &mut VecDeque<Bytes>) -> Option<Sent> {
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
        let now = self.app.hub.snapshots(&self.grant.structures);
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
        Ok(Sent { data: Arc::from(held.to_string()), value: held, revision: None })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{AppInner, Config};
    use roost_model::Home;

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
            streams: Streams::default(),
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
        let (_, held) = task.newest_event(None).unwrap();
        // The alarm goes off and is cleared before the stream can write again.
        slot.install(Arc::new(Snapshot { revision: 2, home: home("emergency") }));
        slot.install(Arc::new(Snapshot { revision: 3, home: home("ok") }));
        let (bytes, now) = task.newest_event(Some(&held)).unwrap();
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
        let (shared, _) = twin.newest_event(Some(&held)).unwrap();
        assert_eq!(shared.as_ptr(), bytes.as_ptr(), "built once for the group");
        let text = std::str::from_utf8(&bytes).unwrap();
        let emergency = text.find("id: s1:2\ndata: {\"path\":\"/\",\"data\":\"emergency\"}").unwrap();
        let cleared = text.find("id: s1:3\ndata: {\"path\":\"/\",\"data\":\"ok\"}").unwrap();
        assert!(emergency < cleared, "in order: {text}");
        assert_eq!(text.matches("event: put").count(), 2);
        assert_eq!(now.revision, Some(3));
        assert!(task.newest_event(Some(&now)).is_none(), "nothing more to send");
        // Further behind than the structure keeps: only the newest state, as before.
        for r in 4..(5 + RECENT as u64) {
            let smoke = if r % 2 == 0 { "warning" } else { "ok" };
            slot.install(Arc::new(Snapshot { revision: r, home: home(smoke) }));
        }
        let (bytes, _) = task.newest_event(Some(&now)).unwrap();
        assert_eq!(std::str::from_utf8(&bytes).unwrap().matches("event: put").count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn poll_once(k: &mut KeepAlive) -> Poll<()> {
        std::future::poll_fn(|cx| Poll::Ready(k.poll_due(cx))).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_keep_alive_is_due_one_interval_after_the_last_write() {
        let mut k = KeepAlive::new(Duration::from_secs(30));
        assert!(poll_once(&mut k).await.is_pending());
        tokio::time::advance(Duration::from_secs(20)).await;
        k.sent();
        // 35 s: the first deadline has passed, but the last write was 15 s ago.
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(poll_once(&mut k).await.is_pending());
        // 50 s: 30 s since the last write.
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(poll_once(&mut k).await.is_ready());
        k.sent();
        assert!(poll_once(&mut k).await.is_pending());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(poll_once(&mut k).await.is_ready());
    }
}
