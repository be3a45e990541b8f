//! The store's threads: the writer (group commit: every write waiting when a transaction
//! starts shares its fsync), the readers (sharing one queue of read jobs), and the WAL
//! checkpointer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::backend;
use crate::{Result, StoreError};

/// Most writes one transaction (one fsync) carries.
pub(super) const MAX_BATCH: usize = 512;
/// How often the checkpointer thread copies committed WAL frames into the database file.
pub(super) const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages after which the writer checkpoints by itself (SQLite's default is 1,000; the
/// checkpointer thread normally keeps the WAL far below this).
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 65_536;
/// WAL pages past which the WAL should start over from its beginning (see [`checkpoint_loop`]).
pub(super) const WAL_RESTART_PAGES: i64 = 16_384;
/// The WAL file is cut back to this size when it restarts after a checkpoint.
pub(super) const WAL_SIZE_LIMIT: u64 = 128 * 1024 * 1024;

/// Called after the batch's transaction ends: `None` when it committed.
pub(super) type Reply = Box<dyn FnOnce(Option<StoreError>) + Send>;
/// A write run inside the batch transaction: what came of it, and its reply.
pub(super) type Run = Box<dyn FnOnce(&Connection) -> (Ran, Reply) + Send>;

/// What came of one write in a batch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ran {
    Done,
    /// Refused before it wrote anything (a conflict, a missing row, a duplicate key).
    Refused,
    /// Failed, maybe after writing part of what it meant to.
    Failed,
}

/// A read run on one of the reader threads' connections.
pub(super) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// A write waiting for the writer thread.
pub(super) struct Op {
    pub(super) queued: Instant,
    /// Run in a savepoint of its own, so that a failure takes back only its own part. A write
    /// that can fail only before its first statement changes anything runs without one
    /// (a savepoint costs two statements and a copy of each page it touches); if such a write
    /// fails otherwise, its whole batch is rolled back.
    pub(super) guarded: bool,
    pub(super) run: Run,
}

/// Runs one queued write on the writer's connection: what came of it, and the reply sending
/// the outcome once the batch's transaction has ended (`Some(error)` if its commit failed).
pub(super) fn run_op<T: Send + 'static>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
    tx: oneshot::Sender<Result<T>>,
) -> (Ran, Reply) {
    match f(conn) {
        Ok(v) => (
            Ran::Done,
            Box::new(move |failed: Option<StoreError>| {
                let _ = tx.send(match failed {
                    None => Ok(v),
                    Some(e) => Err(e),
                });
            }),
        ),
        Err(e) => {
            let ran = match e {
                StoreError::Conflict { .. } | StoreError::NotFound(_) | StoreError::Duplicate { .. } => {
                    Ran::Refused
                }
                _ => Ran::Failed,
            };
            (
                ran,
                Box::new(move |failed: Option<StoreError>| {
                    // A write refused on its own is refused whatever became of the batch.
                    let _ = tx.send(Err(match failed {
                        Some(batch) if ran == Ran::Failed => batch,
                        _ => e,
                    }));
                }),
            )
        }
    }
}

/// Takes read jobs off the shared queue until the store closes.
pub(super) fn reader_loop(conn: &Connection, jobs: &Mutex<mpsc::Receiver<ReadJob>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = jobs.lock().recv();
        match job {
            Ok(job) => job(conn),
            Err(_) => return,
        }
    }
}

pub(super) fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Op>, restart_wal: &AtomicBool) {
    let mut last_batch = 0;
    while let Ok(first) = rx.recv() {
        if last_batch > 1 {
            // Writes are arriving side by side: let the threads that make them run first (when
            // one is waiting for the CPU), so this transaction carries more of them. Each fsync
            // saved is CPU saved (on a VM, the disk's flush is an exit to the host); when no
            // other thread wants the CPU, this returns at once. A lone writer never waits here.
            std::thread::yield_now();
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        last_batch = batch.len();
        run_batch(&mut conn, batch);
        if restart_wal.swap(false, Ordering::Relaxed) {
            // Copies the few frames committed since the checkpointer's round; with every
            // frame copied, the next transaction writes the WAL from its start again.
            let started = Instant::now();
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "store: WAL restart checkpoint failed");
            }
            metrics::histogram!("roost_store_wal_restart_seconds").record(started.elapsed().as_secs_f64());
        }
    }
}

/// Copies committed WAL frames into the database file every [`WAL_CHECKPOINT_EVERY`] until
/// the store closes. PASSIVE never waits for the writer or readers: frames still in use are
/// left for the next round.
///
/// Under a steady stream of commits the WAL is never all copied at the moment a transaction
/// begins, so SQLite never starts it over and it would grow until the writer's own (large)
/// automatic checkpoint. Once it passes [`WAL_RESTART_PAGES`], the writer is asked to copy
/// the remainder between two batches, a short step since this thread copied the rest.
pub(super) fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>, restart_wal: &AtomicBool) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(WAL_CHECKPOINT_EVERY) {
        let started = Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(wal_pages) => {
                metrics::gauge!("roost_store_wal_pages").set(wal_pages.max(0) as f64);
                metrics::histogram!("roost_store_wal_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64());
                if wal_pages > WAL_RESTART_PAGES {
                    restart_wal.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "store: WAL checkpoint failed; retrying"),
        }
    }
}

/// Runs a parameterless statement through the statement cache (no parsing per write).
pub(super) fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql).and_then(|mut st| st.execute([])).map(|_| ())
}

pub(super) fn run_batch(conn: &mut Connection, batch: Vec<Op>) {
    let started = Instant::now();
    let size = batch.len();
    let mut replies: Vec<Reply> = Vec::with_capacity(size);
    if let Err(e) = exec_cached(conn, "BEGIN IMMEDIATE") {
        // Run nothing: dropping the ops drops their reply channels, so every caller gets an
        // error and no write is acknowledged.
        tracing::error!(error = %e, "store: could not begin a transaction");
        drop(batch);
        return;
    }
    // One handle for the batch: the writer thread is the step every write waits for.
    let queue_wait = metrics::histogram!("roost_store_write_queue_seconds");
    // An unguarded write that failed part-way: the batch must not commit.
    let mut torn = false;
    for op in batch {
        queue_wait.record(op.queued.elapsed().as_secs_f64());
        let savepoint = op.guarded && exec_cached(conn, "SAVEPOINT op").is_ok();
        let (ran, reply) = (op.run)(conn);
        if savepoint {
            if ran != Ran::Done {
                let _ = exec_cached(conn, "ROLLBACK TO op");
            }
            let _ = exec_cached(conn, "RELEASE op");
        } else if ran == Ran::Failed {
            torn = true;
        }
        replies.push(reply);
    }
    let syncing = Instant::now();
    let failed = if torn {
        let _ = exec_cached(conn, "ROLLBACK");
        tracing::error!("store: a write failed part-way; its batch was rolled back");
        Some(StoreError::Backend("the write was not carried out".into()))
    } else {
        match exec_cached(conn, "COMMIT") {
            Ok(()) => None,
            Err(e) => {
                let _ = exec_cached(conn, "ROLLBACK");
                tracing::error!(error = %e, "store: commit failed");
                Some(backend(e))
            }
        }
    };
    metrics::histogram!("roost_store_commit_batch_size").record(size as f64);
    metrics::histogram!("roost_store_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("roost_store_sync_seconds").record(syncing.elapsed().as_secs_f64());
    metrics::counter!("roost_store_transactions_total").increment(1);
    for reply in replies {
        reply(failed.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema::open;

    /// A test write: inserts `n` into `t`, then comes out as `outcome`.
    fn op(guarded: bool, n: i64, outcome: Result<()>) -> (Op, oneshot::Receiver<Result<()>>) {
        let (tx, rx) = oneshot::channel();
        let f = move |conn: &Connection| {
            conn.execute("INSERT INTO t VALUES (?1)", [n]).map_err(backend)?;
            outcome
        };
        (Op { queued: Instant::now(), guarded, run: Box::new(move |conn| run_op(conn, f, tx)) }, rx)
    }

    fn rows(conn: &Connection) -> Vec<i64> {
        let mut st = conn.prepare("SELECT n FROM t ORDER BY n").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    }

    /// Savepoints keep a failed write's part out of its batch; a write without one that
    /// fails part-way takes its whole batch down, and no write of it is acknowledged.
    #[test]
    fn a_batch_commits_only_whole_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("batch.db")).unwrap();
        conn.execute_batch("CREATE TABLE t(n INTEGER)").unwrap();
        let conflict = || Err(StoreError::Conflict { structure_id: "s".into(), current: 1 });
        let broken = || Err(StoreError::Backend("disk".into()));

        // Guarded: the refused and the failed write leave nothing; the others commit.
        let (a, ra) = op(true, 1, Ok(()));
        let (b, rb) = op(true, 2, conflict());
        let (c, rc) = op(true, 3, broken());
        let (d, rd) = op(false, 4, Ok(()));
        run_batch(&mut conn, vec![a, b, c, d]);
        assert_eq!(rows(&conn), vec![1, 4]);
        assert!(ra.blocking_recv().unwrap().is_ok());
        assert!(matches!(rb.blocking_recv().unwrap(), Err(StoreError::Conflict { .. })));
        assert!(matches!(rc.blocking_recv().unwrap(), Err(StoreError::Backend(_))));
        assert!(rd.blocking_recv().unwrap().is_ok());

        // Unguarded and failed part-way (its row went in): nothing of the batch commits and
        // the write beside it is not acknowledged.
        let (e, re) = op(true, 5, Ok(()));
        let (f, rf) = op(false, 6, broken());
        run_batch(&mut conn, vec![e, f]);
        assert_eq!(rows(&conn), vec![1, 4]);
        assert!(re.blocking_recv().unwrap().is_err());
        assert!(rf.blocking_recv().unwrap().is_err());

        // The connection is usable after it.
        let (g, rg) = op(false, 7, Ok(()));
        run_batch(&mut conn, vec![g]);
        assert!(rg.blocking_recv().unwrap().is_ok());
        assert_eq!(rows(&conn), vec![1, 4, 7]);
    }
}
