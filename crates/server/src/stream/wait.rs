//! A stream between two events: what it waits on (its structures' feeds, the server closing,
//! the token's revocation, the keep-alive timer) and what it sends when one of them fires.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::task::Poll;

use axum::body::Bytes;
use serde_json::Value;
use std::pin::Pin;
use tokio::time::{Duration, Instant, Sleep};

use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::feed::FeedReceiver;

use super::task::{Sent, StreamTask};
use super::{Registration, event};

/// When a stream owes its client a keep-alive: one interval after it last wrote anything.
///
/// Writing an event only notes the time; the timer moves when it fires early (at most once an
/// interval), not at every event: moving a timer takes the timer driver's lock, which every
/// stream shares.
pub(super) struct KeepAlive {
    interval: Duration,
    last_sent: Instant,
    timer: Pin<Box<Sleep>>,
}

impl KeepAlive {
    pub(super) fn new(interval: Duration) -> KeepAlive {
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
pub(super) enum Woke {
    Closing,
    Revoked,
    Changed,
    Idle,
}

/// One stream's state between two events.
pub(super) struct StreamState {
    pub(super) task: StreamTask,
    pub(super) feeds: Vec<FeedReceiver>,
    /// Registered once: re-registering with the shared shutdown and revocation tokens on
    /// every event would make all subscribers contend on their locks.
    pub(super) shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    pub(super) revoked: Pin<Box<WaitForCancellationFutureOwned>>,
    /// [`Streams::stops`] when the stop signals were last polled (and were pending).
    pub(super) stops_seen: Option<u64>,
    pub(super) keepalive: KeepAlive,
    pub(super) sent: Option<Sent>,
    /// Replayed events not yet written.
    pub(super) pending: VecDeque<Bytes>,
    pub(super) resume_from: Option<String>,
    pub(super) started: bool,
    pub(super) done: bool,
    pub(super) _registration: Registration,
}

impl StreamState {
    /// The next event to write, or `None` to end the stream.
    pub(super) async fn next(&mut self) -> Option<Bytes> {
        if let Some(b) = self.pending.pop_front() {
            return Some(b);
        }
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            // Subscribed now: a structure the hub marked stale before the subscription (a
            // commit elsewhere it did not reload, no stream following it then) is reloaded
            // before the first event, and any later commit reloads it as watched.
            for slot in &self.task.slots {
                if slot.is_stale() {
                    let id = slot.current().home.id().to_string();
                    if let Err(e) = self.task.app.hub.reload(self.task.app.store.as_ref(), &id).await {
                        tracing::warn!(structure = %id, error = %e, "reloading a stale structure for a stream failed");
                    }
                }
            }
            if let Some(id) = self.resume_from.take() {
                self.sent = self.task.resume(&id, &mut self.pending).await;
                if let Some(b) = self.pending.pop_front() {
                    return Some(b);
                }
            }
        }
        loop {
            let newest = match self.task.newest_event(self.sent.as_ref()) {
                Ok(newest) => newest,
                // Further behind than the structure keeps (a slow subscriber, a burst of
                // commits from another node): every state it missed, from the change log.
                Err(id) => {
                    self.sent = self.task.resume(&id, &mut self.pending).await;
                    if let Some(b) = self.pending.pop_front() {
                        self.keepalive.sent();
                        return Some(b);
                    }
                    continue;
                }
            };
            if let Some((bytes, sent)) = newest {
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

#[cfg(test)]
mod tests {
    use super::*;

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
