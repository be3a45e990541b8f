//! Wake-ups between nodes: after its commits a node sends one `NOTIFY roost_changes`, and
//! every node LISTENs, so the others read the feed at once instead of at their next poll.
//!
//! The NOTIFY is sent after the commit, from a connection of its own, never inside a write's
//! transaction: PostgreSQL takes a database-wide lock at the commit of a transaction that
//! notified, which would put every write in one line. Commits made while a NOTIFY is on its
//! way share the next one, so there is at most one in flight and one waiting.
//!
//! Each node names itself in the payload and ignores its own notifications, and sends at
//! most one every [`NOTIFY_EVERY`]: under a steady stream of writes the other nodes then
//! read the feed a few hundred times a second, not once per commit.
//!
//! A notification is only a hint: the feed (`changed_since`) is the truth. A listener whose
//! connection drops misses what was sent meanwhile, so after every (re)connection it wakes
//! the node, which then reads the feed from where it was.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

const LISTEN: &str = "LISTEN roost_changes";

/// The shortest time between two notifications of one node.
pub(super) const NOTIFY_EVERY: Duration = Duration::from_millis(5);

/// Sends one NOTIFY each time `dirty` is signalled (signals while one is sent, or within
/// [`NOTIFY_EVERY`] of the last, collapse into the next).
pub(super) async fn notifier(pool: Pool, dirty: Arc<Notify>, node: String) {
    loop {
        dirty.notified().await;
        let started = tokio::time::Instant::now();
        let sent = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            client
                .execute("SELECT pg_notify('roost_changes', $1)", &[&node])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        if let Err(e) = sent.await {
            // The other nodes poll too; they learn of the commit at their next poll.
            tracing::debug!(error = %e, "could not notify the other nodes");
            metrics::counter!("roost_store_notify_failures_total").increment(1);
        }
        tokio::time::sleep_until(started + NOTIFY_EVERY).await;
    }
}

/// Holds a LISTEN connection, reconnecting after a drop, and wakes `wake` for each
/// notification of another node and after each (re)connection.
pub(super) async fn listener(config: tokio_postgres::Config, wake: Arc<Notify>, node: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                // Read the connection while LISTEN runs (its answer comes through it).
                let listening = {
                    let listen = client.batch_execute(LISTEN);
                    tokio::pin!(listen);
                    loop {
                        tokio::select! {
                            r = &mut listen => break r.is_ok(),
                            m = messages.next() => if m.is_none() { break false },
                        }
                    }
                };
                if listening {
                    backoff = Duration::from_millis(100);
                    metrics::counter!("roost_store_listener_connects_total").increment(1);
                    // Whatever was committed while no one listened: read the feed now.
                    wake.notify_one();
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) if n.payload() != node => wake.notify_one(),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    tracing::warn!("the database listener connection dropped; reconnecting");
                }
            }
            Err(e) => tracing::warn!(error = %e, "the database listener cannot connect; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
