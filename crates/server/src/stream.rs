//! REST streaming (nest-api.md §4): `event: put` with the filtered subtree at once and after
//! every committed change that changes it, `keep-alive` when idle, `auth_revoked` when the
//! grant is revoked, then close.
//!
//! Order matters: the stream subscribes to its structures' feeds *before* it reads the
//! snapshot, so no change can fall between. A subscriber that falls behind skips to the newest
//! state (it always sends the whole subtree, so skipping loses nothing); its queue is bounded.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use roost_model::{Location, Metadata};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::App;
use crate::api::{read_location, snapshots};
use crate::auth::Grant;

/// Events queued per stream before the writer task waits (it then coalesces to the newest).
const QUEUE: usize = 8;

fn event(name: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 32);
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

pub fn open(app: &App, grant: Arc<Grant>, location: Location, metadata: Metadata) -> Response {
    // Subscribe first, then read.
    let mut feeds: Vec<broadcast::Receiver<_>> =
        grant.structures.iter().filter_map(|s| app.hub.slot(s)).map(|s| s.changes.subscribe()).collect();
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let app = app.clone();
    tokio::spawn(async move {
        metrics::gauge!("roost_streams_open").increment(1.0);
        let mut last = String::new();
        let mut keepalive = tokio::time::interval(app.config.keepalive);
        keepalive.tick().await;
        loop {
            let snaps = snapshots(&app, &grant);
            let data = read_location(&snaps, &grant, &metadata, &location).unwrap_or(Value::Null);
            let text = data.to_string();
            if text != last {
                let id = snaps
                    .iter()
                    .map(|s| format!("{}.{}", s.home.id(), s.revision))
                    .collect::<Vec<_>>()
                    .join("-");
                let payload = json!({"path": "/", "data": data}).to_string();
                if tx.send(event("put", Some(&id), &payload)).await.is_err() {
                    break;
                }
                keepalive.reset();
                last = text;
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
                _ = app.shutdown.cancelled() => break,
                _ = grant.revoked.cancelled() => {
                    let _ = tx.send(event("auth_revoked", None, &Value::from(metadata.access_token.as_str()).to_string())).await;
                    break;
                }
                _ = tx.closed() => break,
                _ = keepalive.tick() => {
                    if tx.send(event("keep-alive", None, "null")).await.is_err() {
                        break;
                    }
                }
                _ = changed => {}
            }
        }
        metrics::gauge!("roost_streams_open").decrement(1.0);
    });
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
