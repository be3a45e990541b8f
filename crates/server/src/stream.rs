//! REST streaming (nest-api.md §4) and what Roost adds to it.
//!
//! - `event: put` with `{"path":"/","data":<filtered subtree>}` at once and after every
//!   committed change that changes the subtree; `keep-alive` (`data: null`) when idle;
//!   `auth_revoked` (data: the token) when the grant is revoked, then the stream closes.
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
//! waits, feeds move on, and when it can write again it sends the newest state (a put carries
//! the whole subtree and a patch is computed against what it last sent, so skipping loses
//! nothing). Its queue is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use roost_model::{ApiError, Home, Location, Metadata};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::App;
use crate::api::{error_response, query_param, read_location, snapshots};
use crate::auth::Grant;
use crate::hub::Snapshot;

/// Events queued per stream before its task waits.
const QUEUE: usize = 8;
/// Most missed revisions a resume replays; past it the client gets a fresh snapshot.
const MAX_REPLAY: usize = 10_000;

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
    newest: Mutex<Option<Computed>>,
}

#[derive(Clone)]
struct Computed {
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
}

/// Held by a stream task; releases its counts when the stream ends.
struct Registration {
    app: App,
    token: [u8; 32],
    user: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let s = &self.app.streams;
        if let Ok(mut t) = s.tokens.lock()
            && let Some(e) = t.get_mut(&self.token)
        {
            e.0 -= 1;
            if e.0 == 0 {
                t.remove(&self.token);
            }
        }
        if let Ok(mut u) = s.users.lock()
            && let Some(n) = u.get_mut(&self.user)
        {
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
        if let Some((_, cancel)) = self.tokens.lock().ok().and_then(|t| t.get(token).cloned()) {
            cancel.cancel();
        }
    }

    fn group(&self, key: String) -> Arc<Group> {
        let Ok(mut groups) = self.groups.lock() else { return Arc::new(Group::default()) };
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
        self.tokens.lock().map(|t| t.values().map(|e| e.0).sum()).unwrap_or(0)
    }
}

fn too_many(what: &str, limit: usize) -> Response {
    let mut e = ApiError::blocked();
    e.message = format!("Too many open streams for this {what} (limit {limit}); close one and retry");
    let mut r = error_response(&e);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    r
}

pub async fn open(
    app: &App,
    grant: Arc<Grant>,
    location: Location,
    metadata: Metadata,
    headers: &HeaderMap,
    uri: &Uri,
) -> Response {
    // Limits first.
    let cancel = {
        let (Ok(mut tokens), Ok(mut users)) = (app.streams.tokens.lock(), app.streams.users.lock()) else {
            return error_response(&ApiError::internal());
        };
        let per_token = tokens.get(&grant.hash).map(|e| e.0).unwrap_or(0);
        if per_token >= app.config.max_streams_per_token {
            return too_many("token", app.config.max_streams_per_token);
        }
        let per_user = users.get(&grant.user_id).copied().unwrap_or(0);
        if per_user >= app.config.max_streams_per_user {
            return too_many("user", app.config.max_streams_per_user);
        }
        *users.entry(grant.user_id.clone()).or_default() += 1;
        let entry = tokens.entry(grant.hash).or_insert_with(|| (0, CancellationToken::new()));
        entry.0 += 1;
        entry.1.clone()
    };
    metrics::gauge!("roost_streams_open").increment(1.0);
    let registration = Registration { app: app.clone(), token: grant.hash, user: grant.user_id.clone() };

    let resume_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query_param(uri, "last_event_id"));
    let deltas = matches!(query_param(uri, "deltas").as_deref(), Some("true" | "1"));
    let shows_metadata = location.is_root() || location.get(0) == Some("metadata");
    let key = format!(
        "{}|{}|{}|{}",
        grant.structures.join(","),
        grant.permissions.bits(),
        location,
        if shows_metadata { metadata.access_token.as_str() } else { "" }
    );
    let group = app.streams.group(key);

    // Subscribe first, then read.
    let feeds: Vec<broadcast::Receiver<_>> =
        grant.structures.iter().filter_map(|s| app.hub.slot(s)).map(|s| s.changes.subscribe()).collect();
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let task = StreamTask { app: app.clone(), grant, location, metadata, group, deltas, tx };
    tokio::spawn(task.run(feeds, resume_from, cancel, registration));

    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

struct StreamTask {
    app: App,
    grant: Arc<Grant>,
    location: Location,
    metadata: Metadata,
    group: Arc<Group>,
    deltas: bool,
    tx: mpsc::Sender<Bytes>,
}

/// The subtree the subscriber holds: its text (to compare) and, in delta mode, its value
/// (to diff against).
struct Sent {
    data: Arc<str>,
    value: Value,
}

impl StreamTask {
    async fn run(
        self,
        mut feeds: Vec<broadcast::Receiver<Arc<Snapshot>>>,
        resume_from: Option<String>,
        cancel: CancellationToken,
        _registration: Registration,
    ) {
        let mut sent = match resume_from {
            Some(id) => self.resume(&id).await,
            None => None,
        };
        let mut keepalive = tokio::time::interval(self.app.config.keepalive);
        keepalive.tick().await;
        loop {
            match self.send_newest(sent.as_ref()).await {
                Ok(Some(now)) => {
                    sent = Some(now);
                    keepalive.reset();
                }
                Ok(None) => {}
                Err(()) => return,
            }
            let changed = async {
                if feeds.is_empty() {
                    std::future::pending::<()>().await;
                }
                let recvs = feeds.iter_mut().map(|f| Box::pin(f.recv()));
                let (r, _, _) = futures_util::future::select_all(recvs).await;
                if let Err(broadcast::error::RecvError::Closed) = r {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = self.app.shutdown.cancelled() => return,
                _ = cancel.cancelled() => {
                    let token = Value::from(self.metadata.access_token.as_str()).to_string();
                    let _ = self.tx.send(event("auth_revoked", None, &token)).await;
                    return;
                }
                _ = self.tx.closed() => return,
                _ = keepalive.tick() => {
                    if self.tx.send(event("keep-alive", None, "null")).await.is_err() {
                        return;
                    }
                }
                _ = changed => {}
            }
        }
    }

    /// The newest state, computed once per group and revision.
    fn newest(&self) -> Computed {
        let snaps = snapshots(&self.app, &self.grant);
        let position = position(&snaps);
        if let Ok(g) = self.group.newest.lock()
            && let Some(c) = g.as_ref()
            && c.position == position
        {
            return c.clone();
        }
        let data = read_location(&snaps, &self.grant, &self.metadata, &self.location).unwrap_or(Value::Null);
        let text: Arc<str> = Arc::from(data.to_string());
        let put = event("put", Some(&position), &format!("{{\"path\":\"/\",\"data\":{text}}}"));
        let c = Computed { position, data: text, put };
        if let Ok(mut g) = self.group.newest.lock() {
            *g = Some(c.clone());
        }
        c
    }

    /// Sends the newest state if it differs from what the subscriber holds.
    async fn send_newest(&self, sent: Option<&Sent>) -> Result<Option<Sent>, ()> {
        let c = self.newest();
        let bytes = match sent {
            Some(s) if s.data == c.data => return Ok(None),
            Some(s) if self.deltas => {
                let value: Value = serde_json::from_str(&c.data).unwrap_or(Value::Null);
                let patch = roost_model::diff::diff(&s.value, &value).1;
                let patch = if value.is_object() && s.value.is_object() { patch } else { value.clone() };
                let bytes =
                    event("patch", Some(&c.position), &json!({"path": "/", "data": patch}).to_string());
                self.tx.send(bytes).await.map_err(|_| ())?;
                return Ok(Some(Sent { data: c.data, value }));
            }
            _ => c.put.clone(),
        };
        self.tx.send(bytes).await.map_err(|_| ())?;
        let value =
            if self.deltas { serde_json::from_str(&c.data).unwrap_or(Value::Null) } else { Value::Null };
        Ok(Some(Sent { data: c.data, value }))
    }

    /// Replays what a reconnecting client missed since `id`; `None` (after telling the client
    /// with `event: resync`) when that cannot be done exactly.
    async fn resume(&self, id: &str) -> Option<Sent> {
        match self.replay(id).await {
            Ok(sent) => Some(sent),
            Err(reason) => {
                let data = json!({"reason": reason, "last_event_id": id}).to_string();
                let _ = self.tx.send(event("resync", None, &data)).await;
                None
            }
        }
    }

    async fn replay(&self, id: &str) -> Result<Sent, &'static str> {
        let from = parse_position(id).ok_or("the event id is not one this server sent")?;
        let now = snapshots(&self.app, &self.grant);
        // Each structure's document as the client last saw it, rebuilt backwards from now.
        let mut docs: Vec<(String, u64, Value)> = Vec::new();
        let mut forward: Vec<(usize, roost_store::Change)> = Vec::new();
        for (i, snap) in now.iter().enumerate() {
            let sid = snap.home.id();
            let start = *from.get(sid).ok_or("the event id names other structures")?;
            if start > snap.revision {
                return Err("the event id is ahead of this server");
            }
            let mut doc = snap.home.to_json();
            if start < snap.revision {
                let missed = (snap.revision - start) as usize;
                if missed > MAX_REPLAY {
                    return Err("too many changes since the event id");
                }
                let changes = self
                    .app
                    .store
                    .changes_after(sid, start, missed)
                    .await
                    .map_err(|_| "the change log could not be read")?;
                let complete = changes.len() == missed
                    && changes.first().map(|c| c.revision) == Some(start + 1)
                    && changes.last().map(|c| c.revision) == Some(snap.revision);
                if !complete {
                    return Err("the change log no longer reaches back to the event id");
                }
                for c in changes.iter().rev() {
                    roost_model::write::json_merge(&mut doc, &c.inverse);
                }
                forward.extend(changes.into_iter().map(|c| (i, c)));
            }
            docs.push((sid.to_string(), start, doc));
        }
        let view = |docs: &[(String, u64, Value)]| -> Option<(String, Value)> {
            let snaps: Vec<Arc<Snapshot>> = docs
                .iter()
                .map(|(sid, rev, doc)| {
                    Some(Arc::new(Snapshot { revision: *rev, home: Home::from_json(sid, doc.clone())? }))
                })
                .collect::<Option<_>>()?;
            let data =
                read_location(&snaps, &self.grant, &self.metadata, &self.location).unwrap_or(Value::Null);
            Some((position(&snaps), data))
        };
        let (_, mut held) = view(&docs).ok_or("the change log could not be replayed")?;
        for (i, change) in forward {
            roost_model::write::json_merge(&mut docs[i].2, &change.patch);
            docs[i].1 = change.revision;
            let (p, data) = view(&docs).ok_or("the change log could not be replayed")?;
            if data != held {
                let bytes = if self.deltas {
                    let patch = roost_model::diff::diff(&held, &data).1;
                    let patch = if data.is_object() && held.is_object() { patch } else { data.clone() };
                    event("patch", Some(&p), &json!({"path": "/", "data": patch}).to_string())
                } else {
                    event("put", Some(&p), &json!({"path": "/", "data": data}).to_string())
                };
                self.tx.send(bytes).await.map_err(|_| "the client went away")?;
                held = data;
            }
        }
        Ok(Sent { data: Arc::from(held.to_string()), value: held })
    }
}
