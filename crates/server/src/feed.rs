//! A structure's change feed: its newest revision, and the streams waiting for a newer one.
//!
//! Why not tokio's `watch`: a commit would wake every waiting stream at once. For a structure
//! with more streams than a worker's local run queue holds (256), the rest overflow into the
//! runtime's shared queue, and a write's acknowledgment — woken from the store's writer thread,
//! so it goes into that same queue — waits behind the whole fan-out. The next write then starts
//! only after every stream has sent.
//!
//! Here a commit wakes at most [`WAKE_CHUNK`] streams itself; a pacer task wakes the others a
//! chunk at a time and yields between chunks. The shared queue stays clear for requests, a
//! write is acknowledged while its fan-out is still under way, and the next write's fan-out
//! overlaps it. A stream that is woken after two commits sends both states in one write
//! (stream.rs), so under load a fan-out costs fewer writes per event, not more.
//!
//! Invariant: a receiver that returned revision `r` and is then polled again is woken (or
//! ready) once a revision newer than `r` is announced — no announcement falls between its check
//! and its registration.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Most streams woken at once, by a commit or by the pacer between two yields: well under a
/// worker's local run queue (256), so wakes never spill into the runtime's shared queue.
pub const WAKE_CHUNK: usize = 32;

pub struct Feed {
    /// The newest announced revision.
    revision: AtomicU64,
    receivers: AtomicUsize,
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    /// Waiting for a revision newer than the one they hold.
    waiting: Vec<Arc<Waiter>>,
    /// Told of a newer revision, not woken yet; oldest first.
    announced: VecDeque<Arc<Waiter>>,
    /// A pacer task is waking `announced`.
    pacing: bool,
    /// `waiting`'s length at which receivers that were dropped are swept out of it.
    sweep_at: usize,
}

/// One receiver's place in the feed's lists.
struct Waiter {
    waker: AtomicWaker,
    /// In `waiting` or `announced` (so it is not added twice).
    queued: AtomicBool,
    dropped: AtomicBool,
}

impl FeedState {
    fn take_chunk(&mut self, most: usize) -> Vec<Arc<Waiter>> {
        let mut chunk = Vec::with_capacity(most.min(self.announced.len()));
        while chunk.len() < most {
            let Some(w) = self.announced.pop_front() else { break };
            w.queued.store(false, Ordering::SeqCst);
            if !w.dropped.load(Ordering::Relaxed) {
                chunk.push(w);
            }
        }
        chunk
    }
}

fn wake(chunk: Vec<Arc<Waiter>>) {
    for w in chunk {
        w.waker.wake();
    }
}

impl Feed {
    pub fn new(revision: u64) -> Arc<Feed> {
        Arc::new(Feed {
            revision: AtomicU64::new(revision),
            receivers: AtomicUsize::new(0),
            state: Mutex::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock()
    }

    /// Receivers open now.
    pub fn receiver_count(&self) -> usize {
        self.receivers.load(Ordering::Relaxed)
    }

    /// A receiver holding the current revision.
    pub fn subscribe(self: &Arc<Self>) -> FeedReceiver {
        self.receivers.fetch_add(1, Ordering::Relaxed);
        FeedReceiver {
            feed: self.clone(),
            waiter: Arc::new(Waiter {
                waker: AtomicWaker::new(),
                queued: AtomicBool::new(false),
                dropped: AtomicBool::new(false),
            }),
            seen: self.revision.load(Ordering::SeqCst),
        }
    }

    /// Tells every waiting receiver of `revision` (newer than any announced before): wakes the
    /// first [`WAKE_CHUNK`] now and leaves the rest to a pacer task.
    pub fn announce(self: &Arc<Self>, revision: u64) {
        self.revision.store(revision, Ordering::SeqCst);
        let runtime = tokio::runtime::Handle::try_current().ok();
        let (now, pacer) = {
            let mut st = self.state();
            let waiting = std::mem::take(&mut st.waiting);
            st.announced.extend(waiting);
            // Without a runtime (a unit test) there is no pacer: wake them all.
            let now = st.take_chunk(if runtime.is_some() { WAKE_CHUNK } else { usize::MAX });
            let start_pacer = !st.announced.is_empty() && !st.pacing;
            st.pacing |= start_pacer;
            (now, runtime.filter(|_| start_pacer))
        };
        wake(now);
        if let Some(runtime) = pacer {
            runtime.spawn(pace(Pacer { feed: self.clone(), finished: false }));
        }
    }
}

/// Wakes a feed's announced receivers a chunk at a time, yielding between chunks (so the
/// streams just woken, and any request, run first); ends when none are left.
async fn pace(mut pacer: Pacer) {
    loop {
        tokio::task::yield_now().await;
        let chunk = {
            let mut st = pacer.feed.state();
            let chunk = st.take_chunk(WAKE_CHUNK);
            if chunk.is_empty() {
                // Under the same lock as the check: an announcement after it starts a new pacer.
                st.pacing = false;
                drop(st);
                pacer.finished = true;
                return;
            }
            chunk
        };
        wake(chunk);
    }
}

/// A pacer's hold on its feed; if its task is dropped before it finishes (even before it first
/// ran: the runtime shutting down), the next announcement starts another instead of leaving
/// its receivers waiting.
struct Pacer {
    feed: Arc<Feed>,
    finished: bool,
}

impl Drop for Pacer {
    fn drop(&mut self) {
        if !self.finished {
            self.feed.state().pacing = false;
        }
    }
}

/// A stream's view of a feed.
pub struct FeedReceiver {
    feed: Arc<Feed>,
    waiter: Arc<Waiter>,
    /// The newest revision this receiver has returned.
    seen: u64,
}

impl FeedReceiver {
    /// Ready with the newest revision when it is newer than the last one returned; otherwise
    /// registers to be woken when one is announced.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<u64> {
        if let Some(r) = newer(&self.feed, &mut self.seen) {
            return Poll::Ready(r);
        }
        self.waiter.waker.register(cx.waker());
        if !self.waiter.queued.load(Ordering::SeqCst) {
            let mut st = self.feed.state();
            // Again under the lock: an announcement that took the lock first has stored its
            // revision; one that takes it after will find this receiver in `waiting`.
            if let Some(r) = newer(&self.feed, &mut self.seen) {
                return Poll::Ready(r);
            }
            self.waiter.queued.store(true, Ordering::SeqCst);
            st.waiting.push(self.waiter.clone());
            if st.waiting.len() >= st.sweep_at {
                st.waiting.retain(|w| !w.dropped.load(Ordering::Relaxed));
                st.sweep_at = (st.waiting.len() * 2).max(64);
            }
        }
        Poll::Pending
    }
}

/// The feed's newest revision, if it is newer than `seen` (which then becomes it).
fn newer(feed: &Feed, seen: &mut u64) -> Option<u64> {
    let now = feed.revision.load(Ordering::SeqCst);
    (now > *seen).then(|| {
        *seen = now;
        now
    })
}

impl Drop for FeedReceiver {
    fn drop(&mut self) {
        // Its entry stays in the lists until swept or popped; it holds no task meanwhile.
        self.waiter.dropped.store(true, Ordering::Relaxed);
        drop(self.waiter.waker.take());
        self.feed.receivers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn a_receiver_is_ready_once_per_newer_revision_and_woken_when_one_comes() {
        let feed = Feed::new(1);
        let mut rx = feed.subscribe();
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_changed(&mut cx).is_pending(), "a new receiver holds the current revision");
        assert!(rx.poll_changed(&mut cx).is_pending(), "polled twice, still one entry");
        feed.announce(2);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once");
        feed.announce(3);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "not woken again before it looks");
        assert_eq!(rx.poll_changed(&mut cx), Poll::Ready(3), "the newest, skipping none it could send");
        assert!(rx.poll_changed(&mut cx).is_pending());
        feed.announce(4);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(rx.poll_changed(&mut cx), Poll::Ready(4));
    }

    #[test]
    fn dropped_receivers_are_swept_and_not_counted() {
        let feed = Feed::new(1);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..1000 {
            let mut rx = feed.subscribe();
            assert!(rx.poll_changed(&mut cx).is_pending());
        }
        assert_eq!(feed.receiver_count(), 0);
        assert!(feed.state().waiting.len() < 128, "swept as it grows: {}", feed.state().waiting.len());
    }

    #[test]
    fn a_pacer_dropped_before_it_finished_lets_the_next_announcement_start_another() {
        let feed = Feed::new(1);
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut receivers: Vec<FeedReceiver> = (0..2 * WAKE_CHUNK).map(|_| feed.subscribe()).collect();
        for rx in receivers.iter_mut() {
            assert!(rx.poll_changed(&mut cx).is_pending());
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        {
            let _inside = runtime.enter();
            feed.announce(2);
        }
        assert!(feed.state().pacing);
        drop(runtime);
        assert!(!feed.state().pacing, "its task was dropped before it ran");
        assert_eq!(count.0.load(Ordering::SeqCst), WAKE_CHUNK);
        // The next announcement, with no runtime, wakes every one still waiting.
        feed.announce(3);
        assert_eq!(count.0.load(Ordering::SeqCst), 2 * WAKE_CHUNK);
    }

    #[tokio::test]
    async fn a_large_fan_out_is_woken_in_chunks_and_reaches_every_receiver() {
        let feed = Feed::new(1);
        let n = 10 * WAKE_CHUNK + 3;
        let mut tasks = Vec::new();
        for _ in 0..n {
            let mut rx = feed.subscribe();
            let (tx, ready) = tokio::sync::oneshot::channel();
            tasks.push(tokio::spawn(async move {
                std::future::poll_fn(|cx| {
                    let _ = rx.poll_changed(cx);
                    Poll::Ready(())
                })
                .await;
                let _ = tx.send(());
                std::future::poll_fn(|cx| rx.poll_changed(cx)).await
            }));
            ready.await.unwrap();
        }
        assert_eq!(feed.state().waiting.len(), n);
        feed.announce(2);
        // One thread: nothing else runs until this test awaits.
        assert_eq!(feed.state().announced.len(), n - WAKE_CHUNK, "the rest is left to the pacer");
        assert!(feed.state().pacing);
        for t in tasks {
            assert_eq!(t.await.unwrap(), 2);
        }
        for _ in 0..100 {
            if !feed.state().pacing {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(!feed.state().pacing, "the pacer ends when none are left");
        assert!(feed.state().announced.is_empty());
    }
}
