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
//!
//! This file opens streams and counts them (limits, revocation, closing); `task.rs` computes
//! what a stream sends; `wait.rs` is a stream between two events.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use roost_model::{ApiError, Location, Metadata};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::App;
use crate::auth::Grant;
use crate::error::Error;
use crate::feed::FeedReceiver;
use crate::http::query_param;
use crate::hub::Snapshot;

mod task;
mod wait;

use task::StreamTask;
use wait::{KeepAlive, StreamState};

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
pub(super) struct Registration {
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

    /// This node's open streams per token and per user, as the limiter shares them.
    pub fn open_gauges(&self) -> HashMap<String, u64> {
        let mut gauges: HashMap<String, u64> =
            self.tokens.lock().iter().map(|(hash, (n, _))| (token_gauge(hash), *n as u64)).collect();
        gauges.extend(self.users.lock().iter().map(|(user, n)| (user_gauge(user), *n as u64)));
        gauges
    }

    pub fn open_count(&self) -> usize {
        self.tokens.lock().values().map(|e| e.0).sum()
    }
}

/// The limiter's keys for a token's and a user's open streams.
pub fn token_gauge(hash: &[u8; 32]) -> String {
    format!("open-streams-token:{}", crate::http::hex8(hash))
}

pub fn user_gauge(user_id: &str) -> String {
    format!("open-streams-user:{user_id}")
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
    structures: &[String],
    location: Location,
    metadata: Metadata,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, Error> {
    // Limits first: what this node holds open, and what the other nodes of a cluster do.
    let elsewhere_token = app.limiter.others(&token_gauge(&grant.hash)) as usize;
    let elsewhere_user = app.limiter.others(&user_gauge(&grant.user_id)) as usize;
    let cancel = {
        let (mut tokens, mut users) = (app.streams.tokens.lock(), app.streams.users.lock());
        let per_token = tokens.get(&grant.hash).map(|e| e.0).unwrap_or(0) + elsewhere_token;
        if per_token >= app.config.max_streams_per_token {
            return Err(too_many("token", app.config.max_streams_per_token));
        }
        let per_user = users.get(&grant.user_id).copied().unwrap_or(0) + elsewhere_user;
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
        structures.join(","),
        grant.permissions.bits(),
        grant.device_id.as_deref().unwrap_or(""),
        location,
        if shows_metadata { metadata.access_token.as_str() } else { "" }
    );
    let group = app.streams.group(key);

    // Subscribe first, then read.
    let slots: Vec<_> = structures.iter().filter_map(|s| app.hub.slot(s)).collect();
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
