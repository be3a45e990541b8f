//! Group commit on PostgreSQL: the commits waiting at one moment go into one statement of
//! `roost_commit` (one transaction, one round trip), so they share one WAL flush and one
//! commit, as the embedded store's writer does with SQLite.
//!
//! - A few writers (each with a connection while it works) take what is queued, up to
//!   [`MAX_BATCH`]; a lone commit goes alone at once, nothing waits for company.
//! - A batch runs in structure-id order, so batches of different nodes take row locks in one
//!   order and cannot deadlock.
//! - A lost compare-and-set is an answer (`conflict`), not an error, so it never aborts the
//!   others; only commits without an idempotency key come here (a used key raises, which
//!   would abort the batch), the keyed ones commit alone.
//! - A failed batch (the database went away, say) fails every commit in it: none is
//!   acknowledged, the callers answer 503.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::changelog::{COMMIT_SQL, CommitArrays, CommitRow};
use super::{PgStore, backend};
use crate::{Result, StoreError};

/// Most commits in one transaction.
pub(super) const MAX_BATCH: usize = 64;

pub(super) struct Pending {
    row: CommitRow,
    done: oneshot::Sender<Result<u64>>,
}

/// The queue the writers share.
pub(super) type Queue = Arc<Mutex<mpsc::Receiver<Pending>>>;

/// Takes batches from `queue` and commits them until the queue's sender is dropped and it is
/// empty.
pub(super) async fn writer(pool: Pool, queue: Queue) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = queue.lock().await;
            match rx.recv().await {
                Some(p) => batch.push(p),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        }
        batch.sort_by(|a, b| a.row.structure_id.cmp(&b.row.structure_id));
        metrics::histogram!("roost_store_commit_batch_size").record(batch.len() as f64);
        let started = std::time::Instant::now();
        match run(&pool, &batch).await {
            Ok(outcomes) => {
                for (p, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = p.done.send(outcome);
                }
            }
            Err(e) => {
                for p in batch {
                    let _ = p.done.send(Err(e.clone()));
                }
            }
        }
        metrics::histogram!("roost_store_commit_seconds").record(started.elapsed().as_secs_f64());
    }
}

/// The batch in one statement (one transaction, one round trip); each commit's outcome, or
/// the error that failed them all.
async fn run(pool: &Pool, batch: &[Pending]) -> Result<Vec<Result<u64>>> {
    let client = pool.get().await.map_err(|e| backend(format!("database unreachable: {e}")))?;
    let rows: Vec<&CommitRow> = batch.iter().map(|p| &p.row).collect();
    let st = client.prepare_cached(COMMIT_SQL).await.map_err(backend)?;
    let answers = client.query(&st, &CommitArrays::of(&rows).params()).await.map_err(backend)?;
    if answers.len() != rows.len() {
        return Err(backend(format!("{} answers to {} commits", answers.len(), rows.len())));
    }
    Ok(rows.iter().zip(answers).map(|(r, a)| r.outcome(Ok(a))).collect())
}

impl PgStore {
    pub(super) async fn group_commit(&self, row: CommitRow) -> Result<u64> {
        let (done, answer) = oneshot::channel();
        let sender = self.commits.lock().clone().ok_or(StoreError::Closed)?;
        sender.send(Pending { row, done }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}
