//! The embedded backend: SQLite (WAL, `synchronous=FULL`) with group commit.
//!
//! No SQLite call runs on the async runtime's worker threads: a query can wait on the disk
//! (cold start, a long resume replay) and would stall every task scheduled on that worker.
//! Writes go to one writer thread and reads to a few reader threads, each owning its
//! connection; the async methods only queue a closure and await its answer.
//!
//! Why rusqlite on dedicated threads rather than an async driver: group commit needs one
//! connection owned by one loop that drains every waiting write into one transaction; a
//! thread with a channel does exactly that without a hop per statement. Readers share one
//! queue, so a long read holds up only its own thread (WAL lets them run beside the writer).
//!
//! Copying the WAL back into the database file (a WAL checkpoint: thousands of page writes
//! and an fsync of the database) is done by a thread of its own, so no acknowledged write
//! waits behind it; the writer does it itself only if that thread falls far behind.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{
    BoxFuture, Change, ChangedSince, CodeRecord, Commit, IdempotencyKey, Product, Result, Session, Store,
    StoreError, StoredStructure, TokenRecord, User,
};

/// Most writes one transaction (one fsync) carries.
const MAX_BATCH: usize = 512;
/// How often the checkpointer thread copies committed WAL frames into the database file.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages after which the writer checkpoints by itself (SQLite's default is 1,000; the
/// checkpointer thread normally keeps the WAL far below this).
const WRITER_CHECKPOINT_PAGES: u32 = 65_536;
/// WAL pages past which the WAL should start over from its beginning (see [`checkpoint_loop`]).
const WAL_RESTART_PAGES: i64 = 16_384;
/// The WAL file is cut back to this size when it restarts after a checkpoint.
const WAL_SIZE_LIMIT: u64 = 128 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Change log entries kept per structure, at least: older ones are dropped at commit in
    /// whole anchors (16 revisions), never those after the last checkpoint.
    pub changelog_keep: u64,
    /// Read connections.
    pub readers: usize,
    /// A structure's whole document is written every this many revisions; in between a
    /// commit writes only its merge patch (a few hundred bytes instead of kilobytes).
    pub checkpoint_every: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { changelog_keep: 10_000, readers: 4, checkpoint_every: 32 }
    }
}

/// Called after the batch's transaction ends: `None` when it committed.
type Reply = Box<dyn FnOnce(Option<StoreError>) + Send>;
/// A write run inside the batch transaction: what came of it, and its reply.
type Run = Box<dyn FnOnce(&Connection) -> (Ran, Reply) + Send>;

/// What came of one write in a batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ran {
    Done,
    /// Refused before it wrote anything (a conflict, a missing row, a duplicate key).
    Refused,
    /// Failed, maybe after writing part of what it meant to.
    Failed,
}

/// A read run on one of the reader threads' connections.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// A write waiting for the writer thread.
struct Op {
    queued: Instant,
    /// Run in a savepoint of its own, so that a failure takes back only its own part. A write
    /// that can fail only before its first statement changes anything runs without one
    /// (a savepoint costs two statements and a copy of each page it touches); if such a write
    /// fails otherwise, its whole batch is rolled back.
    guarded: bool,
    run: Run,
}

pub struct SqliteStore {
    writer: Mutex<Option<mpsc::Sender<Op>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Dropping the sender stops the checkpointer thread.
    checkpointer: Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
    /// Read jobs for the reader threads (dropping it stops them).
    reads: Mutex<Option<mpsc::Sender<ReadJob>>>,
    reader_threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    options: StoreOptions,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(backend)?;
    // Room for every statement the writer runs, so none is parsed again per batch.
    conn.set_prepared_statement_cache_capacity(64);
    // WAL + FULL: every commit is fsynced before it returns, and readers never block it.
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(backend)?;
    Ok(conn)
}

fn has_table(conn: &Connection, table: &str) -> Result<bool> {
    conn.query_row("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1", [table], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n > 0)
    .map_err(backend)
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    conn.query_row("SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2", [table, column], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n > 0)
    .map_err(backend)
}

/// Whether the change log still has its first form: clustered by structure, so each write
/// of a batch dirtied a page of its own (data dirs created before the log was in commit order).
fn change_log_by_structure(conn: &Connection) -> Result<bool> {
    Ok(has_table(conn, "changes")? && !has_column(conn, "changes", "seq")?)
}

/// Columns and tables changed after the first release, for data dirs created before them.
fn migrate(conn: &Connection) -> Result<()> {
    if has_column(conn, "structures", "seq")? {
        // The commit order now lives in the change log; the column cost an index update per write.
        conn.execute_batch("DROP INDEX IF EXISTS structures_seq; ALTER TABLE structures DROP COLUMN seq;")
            .map_err(backend)?;
    }
    if has_table(conn, "changes_by_structure")? {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT INTO changes(structure_id, revision, at, actor, paths, patch, inverse)
                 SELECT structure_id, revision, at, actor, paths, patch, inverse FROM changes_by_structure
                 ORDER BY at, structure_id, revision;
             DROP TABLE changes_by_structure;
             COMMIT;",
        )
        .map_err(backend)?;
    }
    if !has_column(conn, "structures", "last_seq")? {
        // Chain the log (see SCHEMA) with the help of the full index it had until now.
        let add_prev = if has_column(conn, "changes", "prev_seq")? {
            ""
        } else {
            "ALTER TABLE changes ADD COLUMN prev_seq INTEGER;"
        };
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             {add_prev}
             CREATE INDEX IF NOT EXISTS changes_of_structure ON changes(structure_id, revision);
             UPDATE changes SET prev_seq = (SELECT p.seq FROM changes p
                 WHERE p.structure_id = changes.structure_id AND p.revision = changes.revision - 1);
             ALTER TABLE structures ADD COLUMN last_seq INTEGER;
             UPDATE structures SET last_seq = (SELECT c.seq FROM changes c
                 WHERE c.structure_id = structures.id AND c.revision = structures.revision);
             DROP INDEX changes_of_structure;
             COMMIT;"
        ))
        .map_err(backend)?;
    }
    if !has_column(conn, "tokens", "device_id")? {
        conn.execute_batch(
            "ALTER TABLE tokens ADD COLUMN device_id TEXT;
             CREATE INDEX IF NOT EXISTS tokens_device ON tokens(device_id);",
        )
        .map_err(backend)?;
    }
    Ok(())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users(
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS structures(
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES users(id),
    revision INTEGER NOT NULL,
    -- The revision of the checkpoint in docs; later revisions are in changes as merge patches.
    doc_revision INTEGER NOT NULL,
    -- The structure's newest change log entry: the head of its chain.
    last_seq INTEGER
);
-- Checkpointed documents, apart from the small structures rows that every commit updates.
CREATE TABLE IF NOT EXISTS docs(
    structure_id TEXT PRIMARY KEY REFERENCES structures(id),
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS structures_owner ON structures(owner);
-- The change log in commit order: a batch's entries share the last pages of the table
-- instead of each dirtying a page of its own structure. `seq` is the global commit order
-- other nodes follow (`changed_since`). A structure's entries form a chain back from
-- `structures.last_seq` through `prev_seq`; every 16th revision (an anchor) is indexed, so a
-- lookup jumps to an anchor and walks at most 15 links, while only one commit in 16 touches
-- an index page (a full (structure, revision) index put a page of its own into every
-- commit's WAL: 70 % of what a commit wrote).
CREATE TABLE IF NOT EXISTS changes(
    seq INTEGER PRIMARY KEY,
    structure_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    prev_seq INTEGER,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    paths TEXT NOT NULL,
    patch TEXT NOT NULL,
    inverse TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS changes_anchors ON changes(structure_id, revision) WHERE revision % 16 = 0;
CREATE TABLE IF NOT EXISTS tokens(
    hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    product_id TEXT,
    permissions INTEGER NOT NULL,
    structures TEXT NOT NULL,
    client_version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    label TEXT NOT NULL,
    revoked_seq INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens(user_id);
CREATE INDEX IF NOT EXISTS tokens_revoked ON tokens(revoked_seq);
CREATE TABLE IF NOT EXISTS products(
    id TEXT PRIMARY KEY,
    owner TEXT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    secret_hash TEXT,
    redirect_uris TEXT NOT NULL,
    permissions INTEGER NOT NULL,
    client_version INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS codes(
    hash BLOB PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    permissions INTEGER NOT NULL,
    structures TEXT NOT NULL,
    client_version INTEGER NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT,
    expires_at INTEGER NOT NULL,
    token_hash BLOB
);
-- Idempotency keys of committed requests (a retry answers as the first try did); a day.
CREATE TABLE IF NOT EXISTS idempotency(
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    revision INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY(scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency(created_at);
CREATE TABLE IF NOT EXISTS sessions(
    hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Arc<SqliteStore>> {
        let conn = open(path)?;
        // Moved aside before SCHEMA creates the new log; `migrate` copies it over.
        if change_log_by_structure(&conn)? {
            conn.execute_batch("ALTER TABLE changes RENAME TO changes_by_structure").map_err(backend)?;
        }
        conn.execute_batch(SCHEMA).map_err(backend)?;
        migrate(&conn)?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}; PRAGMA journal_size_limit={WAL_SIZE_LIMIT};"
        ))
        .map_err(backend)?;
        let checkpoint_conn = open(path)?;
        let (stop_checkpoints, stopped) = mpsc::channel::<()>();
        let restart_wal = Arc::new(AtomicBool::new(false));
        let wanted = restart_wal.clone();
        let checkpointer = std::thread::Builder::new()
            .name("roost-store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, stopped, &wanted))
            .map_err(backend)?;
        let (reads, jobs) = mpsc::channel::<ReadJob>();
        let jobs = Arc::new(Mutex::new(jobs));
        let mut reader_threads = Vec::new();
        for i in 0..options.readers.max(1) {
            let (conn, jobs) = (open(path)?, jobs.clone());
            let thread = std::thread::Builder::new()
                .name(format!("roost-store-read-{i}"))
                .spawn(move || reader_loop(&conn, &jobs))
                .map_err(backend)?;
            reader_threads.push(thread);
        }
        let (tx, rx) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("roost-store-writer".into())
            .spawn(move || writer_loop(conn, rx, &restart_wal))
            .map_err(backend)?;
        Ok(Arc::new(SqliteStore {
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(thread)),
            checkpointer: Mutex::new(Some((stop_checkpoints, checkpointer))),
            reads: Mutex::new(Some(reads)),
            reader_threads: Mutex::new(reader_threads),
            options,
        }))
    }

    /// Stops taking writes, lets the writer finish every write already queued (their callers
    /// get their acknowledgements), and waits for it.
    pub fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        let handle = self.writer_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        if let Ok(mut r) = self.reads.lock() {
            r.take();
        }
        let readers = self.reader_threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for h in readers {
            let _ = h.join();
        }
        let checkpointer = self.checkpointer.lock().ok().and_then(|mut c| c.take());
        if let Some((stop, h)) = checkpointer {
            drop(stop);
            let _ = h.join();
        }
    }

    /// Queues a write; resolves after the transaction that carries it has committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write_op(true, f).await
    }

    /// [`SqliteStore::write`]; `guarded: false` only for a write whose every failure after its
    /// first change is a backend error (see [`Op::guarded`]).
    async fn write_op<T: Send + 'static>(
        &self,
        guarded: bool,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let queued = Instant::now();
        let op = Op { queued, guarded, run: Box::new(move |conn| run_op(conn, f, tx)) };
        {
            let guard = self.writer.lock().map_err(backend)?;
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender.send(op).map_err(|_| StoreError::Closed)?;
        }
        let acknowledged = rx.await;
        // Until the caller runs again: the queue, the transaction, and the wake-up after it.
        metrics::histogram!("roost_store_write_seconds").record(queued.elapsed().as_secs_f64());
        acknowledged.map_err(|_| StoreError::Backend("the write was not carried out".into()))?
    }

    /// Runs a read on the next free reader thread; resolves with its result.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(f(conn).map_err(backend));
        });
        let queued = match self.reads.lock() {
            Ok(guard) => guard
                .as_ref()
                .ok_or(StoreError::Closed)
                .and_then(|r| r.send(job).map_err(|_| StoreError::Closed)),
            Err(e) => Err(backend(e)),
        };
        async move {
            queued?;
            rx.await.map_err(|_| StoreError::Closed)?
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Runs one queued write on the writer's connection: what came of it, and the reply sending
/// the outcome once the batch's transaction has ended (`Some(error)` if its commit failed).
fn run_op<T: Send + 'static>(
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
fn reader_loop(conn: &Connection, jobs: &Mutex<mpsc::Receiver<ReadJob>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(conn),
            Err(_) => return,
        }
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Op>, restart_wal: &AtomicBool) {
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
fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>, restart_wal: &AtomicBool) {
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
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql).and_then(|mut st| st.execute([])).map(|_| ())
}

fn run_batch(conn: &mut Connection, batch: Vec<Op>) {
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

const STRUCTURE_COLUMNS: &str = "s.id, s.owner, s.revision, d.doc, s.doc_revision, s.last_seq";
const STRUCTURE_FROM: &str = "structures s JOIN docs d ON d.structure_id = s.id";

/// Spreads document checkpoints of different structures over different revisions, so homes
/// written in step (a fleet, a benchmark) do not all write their whole documents in the
/// same transaction.
fn stagger(structure_id: &str) -> u64 {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    structure_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A structure row, with the revision of its checkpointed document and the head of its log.
struct StructureRow {
    structure: StoredStructure,
    doc_revision: u64,
    last_seq: Option<i64>,
}

fn row_to_structure(row: &rusqlite::Row<'_>) -> rusqlite::Result<StructureRow> {
    let doc: String = row.get(3)?;
    Ok(StructureRow {
        structure: StoredStructure {
            id: row.get(0)?,
            owner: row.get(1)?,
            revision: row.get::<_, i64>(2)? as u64,
            doc: serde_json::from_str(&doc).unwrap_or(Value::Null),
        },
        doc_revision: row.get::<_, i64>(4)? as u64,
        last_seq: row.get(5)?,
    })
}

/// A walk back along one structure's chain of change log entries (see SCHEMA): from the
/// entry `?1`, every entry whose revision is above `?2`, as `chain(seq, prev, revision)`.
/// It ends where the chain does (its first entry, or entries trimmed away); revisions must
/// fall along it, which keeps even a damaged chain finite.
macro_rules! walk_back {
    ($select:literal) => {
        concat!(
            "WITH RECURSIVE chain(seq, prev, revision) AS (
                 SELECT seq, prev_seq, revision FROM changes WHERE seq = ?1 AND revision > ?2
                 UNION ALL
                 SELECT c.seq, c.prev_seq, c.revision FROM chain JOIN changes c ON c.seq = chain.prev
                 WHERE c.revision > ?2 AND c.revision < chain.revision
             ) ",
            $select
        )
    };
}

/// Revisions of a structure whose change log entry is indexed (`revision % 16 = 0` in SQL).
const ANCHOR_EVERY: u64 = 16;

/// The seq of the structure's first anchor at or after `revision` (`None` past the last).
fn anchor_at_or_after(c: &Connection, structure_id: &str, revision: u64) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(
        "SELECT seq FROM changes WHERE structure_id = ?1 AND revision % 16 = 0 AND revision >= ?2
         ORDER BY revision LIMIT 1",
    )?
    .query_row(params![structure_id, revision as i64], |r| r.get(0))
    .optional()
}

/// The oldest revision left in a structure's log: its first anchor's chain walked to the end
/// (at most 15 links), or the whole chain of a structure younger than one anchor.
fn oldest_revision(
    c: &Connection,
    structure_id: &str,
    last_seq: Option<i64>,
) -> rusqlite::Result<Option<u64>> {
    let Some(start) = anchor_at_or_after(c, structure_id, 0)?.or(last_seq) else {
        return Ok(None);
    };
    c.prepare_cached(walk_back!("SELECT MIN(revision) FROM chain"))?
        .query_row(params![start, 0], |r| r.get::<_, Option<i64>>(0))
        .map(|v| v.map(|v| v as u64))
}

/// Brings a checkpointed document up to the structure's revision with the patches after it.
/// Runs inside the caller's read transaction, so the row and the log agree.
fn rebuild(c: &Connection, row: StructureRow) -> rusqlite::Result<StoredStructure> {
    let StructureRow { structure: mut s, doc_revision, last_seq } = row;
    if doc_revision < s.revision
        && let Some(head) = last_seq
    {
        let mut st = c.prepare_cached(walk_back!(
            "SELECT ch.patch FROM chain JOIN changes ch ON ch.seq = chain.seq ORDER BY chain.revision"
        ))?;
        let patches = st.query_map(params![head, doc_revision as i64], |r| r.get::<_, String>(0))?;
        for p in patches {
            let patch: Value = serde_json::from_str(&p?).unwrap_or(Value::Null);
            roost_model::diff::json_merge(&mut s.doc, &patch);
        }
    }
    Ok(s)
}

fn row_to_token(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let hash: Vec<u8> = row.get(0)?;
    let mut h = [0u8; 32];
    if hash.len() == 32 {
        h.copy_from_slice(&hash);
    }
    let structures: String = row.get(4)?;
    Ok(TokenRecord {
        hash: h,
        user_id: row.get(1)?,
        product_id: row.get(2)?,
        permissions: row.get::<_, i64>(3)? as u32,
        structures: serde_json::from_str(&structures).unwrap_or_default(),
        client_version: row.get::<_, i64>(5)? as u64,
        created_at: row.get(6)?,
        label: row.get(7)?,
        revoked: row.get::<_, Option<i64>>(8)?.is_some(),
        device_id: row.get(9)?,
    })
}

fn row_to_user(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User { id: row.get(0)?, login: row.get(1)?, password_hash: row.get(2)?, created_at: row.get(3)? })
}

const TOKEN_COLUMNS: &str = "hash, user_id, product_id, permissions, structures, client_version, created_at, label, revoked_seq, device_id";

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

impl Store for SqliteStore {
    fn close(&self) {
        SqliteStore::close(self);
    }

    fn create_structure(&self, owner: &str, id: &str, doc: Value, at: &str) -> BoxFuture<'_, Result<u64>> {
        let (owner, id, at) = (owner.to_string(), id.to_string(), at.to_string());
        Box::pin(self.write(move |conn| {
            let text = roost_model::json_text(&doc);
            conn.execute(
                "INSERT INTO structures(id, owner, revision, doc_revision) VALUES (?1, ?2, 1, 1)",
                params![id, owner],
            )
            .map_err(|e| if unique_violation(&e) { StoreError::AlreadyExists(id.clone()) } else { backend(e) })?;
            conn.execute("INSERT INTO docs(structure_id, doc) VALUES (?1, ?2)", params![id, text])
                .map_err(backend)?;
            conn.execute(
                "INSERT INTO changes(structure_id, revision, at, actor, paths, patch, inverse) VALUES (?1, 1, ?2, 'admin', '[\"/\"]', ?3, 'null')",
                params![id, at, text],
            )
            .map_err(backend)?;
            conn.execute("UPDATE structures SET last_seq = last_insert_rowid() WHERE id = ?1", [&id])
                .map_err(backend)?;
            Ok(1)
        }))
    }

    fn structure(&self, id: &str) -> BoxFuture<'_, Result<Option<StoredStructure>>> {
        let id = id.to_string();
        let r = self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let row = tx
                .prepare_cached(&format!("SELECT {STRUCTURE_COLUMNS} FROM {STRUCTURE_FROM} WHERE s.id = ?1"))?
                .query_row([id], row_to_structure)
                .optional()?;
            row.map(|r| rebuild(&tx, r)).transpose()
        });
        Box::pin(r)
    }

    fn all_structures(&self) -> BoxFuture<'_, Result<Vec<StoredStructure>>> {
        let r = self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let rows: Vec<_> = tx
                .prepare(&format!("SELECT {STRUCTURE_COLUMNS} FROM {STRUCTURE_FROM} ORDER BY s.id"))?
                .query_map([], row_to_structure)?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter().map(|r| rebuild(&tx, r)).collect()
        });
        Box::pin(r)
    }

    fn structure_ids(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        let r = self.read(move |c| {
            let mut st = c.prepare_cached("SELECT id FROM structures ORDER BY id")?;
            st.query_map([], |r| r.get(0))?.collect()
        });
        Box::pin(r)
    }

    fn structures_between(&self, first: &str, last: &str) -> BoxFuture<'_, Result<Vec<StoredStructure>>> {
        let first = first.to_string();
        let last = last.to_string();
        let r = self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let rows: Vec<_> = tx
                .prepare_cached(&format!(
                    "SELECT {STRUCTURE_COLUMNS} FROM {STRUCTURE_FROM} WHERE s.id >= ?1 AND s.id <= ?2 ORDER BY s.id"
                ))?
                .query_map([first, last], row_to_structure)?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter().map(|r| rebuild(&tx, r)).collect()
        });
        Box::pin(r)
    }

    fn structures_of(&self, user_id: &str) -> BoxFuture<'_, Result<Vec<String>>> {
        let user_id = user_id.to_string();
        let r = self.read(move |c| {
            let mut st = c.prepare_cached("SELECT id FROM structures WHERE owner = ?1 ORDER BY id")?;
            st.query_map([user_id], |r| r.get(0))?.collect()
        });
        Box::pin(r)
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<u64>> {
        let keep = self.options.changelog_keep.max(1);
        let every = self.options.checkpoint_every.max(1);
        // Serialized here, on the caller's task: the writer thread is the one serial step.
        let Commit { structure_id, base_revision, doc, change, idempotency } = commit;
        let paths = serde_json::to_string(&change.paths).unwrap_or_default();
        let patch = roost_model::json_text(&change.patch);
        let inverse = roost_model::json_text(&change.inverse);
        let (at, actor) = (change.at, change.actor);
        drop((change.patch, change.inverse));
        let new_revision = base_revision + 1;
        let checkpoint = (new_revision + stagger(&structure_id) % every).is_multiple_of(every);
        // The whole document too, when this revision is a checkpoint (also off the writer).
        let doc = checkpoint.then(doc);
        // Without a key it refuses (conflict, missing structure) before it writes, and fails
        // after that only on a backend error: no savepoint needed (see `Op::guarded`).
        let guarded = idempotency.is_some();
        Box::pin(self.write_op(guarded, move |conn| {
            if let Some(key) = &idempotency
                && let Some(revision) = record_idempotency(conn, key, new_revision)?
            {
                return Err(StoreError::Duplicate { revision });
            }
            // The entry goes in only if the structure is still at the base revision: that is
            // the check against a concurrent writer. It links to the structure's previous entry.
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO changes(structure_id, revision, prev_seq, at, actor, paths, patch, inverse)
                     SELECT id, ?2, last_seq, ?4, ?5, ?6, ?7, ?8 FROM structures WHERE id = ?1 AND revision = ?3",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        structure_id,
                        new_revision as i64,
                        base_revision as i64,
                        at,
                        actor,
                        paths,
                        patch,
                        inverse
                    ])
                })
                .map_err(backend)?;
            if inserted == 0 {
                let current: Option<i64> = conn
                    .query_row("SELECT revision FROM structures WHERE id = ?1", [&structure_id], |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                return Err(match current {
                    Some(c) => StoreError::Conflict { structure_id, current: c as u64 },
                    None => StoreError::NotFound(structure_id),
                });
            }
            let update = if checkpoint {
                "UPDATE structures SET revision = ?1, last_seq = last_insert_rowid(), doc_revision = ?1 WHERE id = ?2"
            } else {
                "UPDATE structures SET revision = ?1, last_seq = last_insert_rowid() WHERE id = ?2"
            };
            conn.prepare_cached(update)
                .and_then(|mut st| st.execute(params![new_revision as i64, structure_id]))
                .map_err(backend)?;
            if let Some(doc) = &doc {
                conn.prepare_cached("UPDATE docs SET doc = ?1 WHERE structure_id = ?2")
                    .and_then(|mut st| st.execute(params![doc, structure_id]))
                    .map_err(backend)?;
            }
            // Keep the window, and always every patch after the checkpoint.
            if new_revision > keep && (new_revision.is_multiple_of(ANCHOR_EVERY) || checkpoint) {
                let doc_revision = if checkpoint {
                    new_revision
                } else {
                    conn.prepare_cached("SELECT doc_revision FROM structures WHERE id = ?1")
                        .and_then(|mut st| st.query_row([&structure_id], |r| r.get::<_, i64>(0)))
                        .map_err(backend)? as u64
                };
                // Whole anchors' worth: the entries up to the last anchor at or before the
                // limit, walked back from that anchor (those before it are gone already).
                let drop_through = (new_revision - keep).min(doc_revision);
                let anchor = drop_through - drop_through % ANCHOR_EVERY;
                let anchor_seq: Option<i64> = if anchor > 0 {
                    conn.prepare_cached(
                        "SELECT seq FROM changes WHERE structure_id = ?1 AND revision = ?2 AND revision % 16 = 0",
                    )
                    .and_then(|mut st| st.query_row(params![structure_id, anchor as i64], |r| r.get(0)).optional())
                    .map_err(backend)?
                } else {
                    None
                };
                if let Some(seq) = anchor_seq {
                    conn.prepare_cached(walk_back!("DELETE FROM changes WHERE seq IN (SELECT seq FROM chain)"))
                        .and_then(|mut st| st.execute(params![seq, 0]))
                        .map_err(backend)?;
                }
            }
            Ok(new_revision)
        }))
    }

    fn changes_after(
        &self,
        structure_id: &str,
        revision: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Change>>> {
        let structure_id = structure_id.to_string();
        let r = self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let Some((current, head)) = tx
                .prepare_cached("SELECT revision, last_seq FROM structures WHERE id = ?1")?
                .query_row([&structure_id], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<i64>>(1)?)))
                .optional()?
            else {
                return Ok(Vec::new());
            };
            // Walk back from the head, or, when the entries wanted end before it, from the
            // first anchor past the last of them (counted from the oldest entry still there).
            let start = if revision.saturating_add(limit as u64) >= current {
                head
            } else {
                let oldest = oldest_revision(&tx, &structure_id, head)?.unwrap_or(0);
                let last_wanted = revision.max(oldest.saturating_sub(1)).saturating_add(limit as u64);
                anchor_at_or_after(&tx, &structure_id, last_wanted)?.or(head)
            };
            let Some(start) = start else {
                return Ok(Vec::new());
            };
            let mut st = tx.prepare_cached(walk_back!(
                "SELECT ch.structure_id, ch.revision, ch.at, ch.actor, ch.paths, ch.patch, ch.inverse
                 FROM chain JOIN changes ch ON ch.seq = chain.seq ORDER BY chain.revision LIMIT ?3"
            ))?;
            st.query_map(params![start, revision as i64, limit as i64], |r| {
                let paths: String = r.get(4)?;
                let patch: String = r.get(5)?;
                Ok(Change {
                    structure_id: r.get(0)?,
                    revision: r.get::<_, i64>(1)? as u64,
                    at: r.get(2)?,
                    actor: r.get(3)?,
                    paths: serde_json::from_str(&paths).unwrap_or_default(),
                    patch: serde_json::from_str(&patch).unwrap_or(Value::Null),
                    inverse: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or(Value::Null),
                })
            })?
            .collect()
        });
        Box::pin(r)
    }

    fn oldest_change(&self, structure_id: &str) -> BoxFuture<'_, Result<Option<u64>>> {
        let structure_id = structure_id.to_string();
        let r = self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let head = tx
                .prepare_cached("SELECT last_seq FROM structures WHERE id = ?1")?
                .query_row([&structure_id], |r| r.get::<_, Option<i64>>(0))
                .optional()?
                .flatten();
            oldest_revision(&tx, &structure_id, head)
        });
        Box::pin(r)
    }

    fn changed_since(&self, seq: u64) -> BoxFuture<'_, Result<ChangedSince>> {
        let r = self.read(move |c| {
            // NOT INDEXED: a range of the log's rowids, never a walk of the whole per-structure index.
            let mut st = c.prepare_cached(
                "SELECT structure_id, MAX(revision), MAX(seq) FROM changes NOT INDEXED
                 WHERE seq > ?1 GROUP BY structure_id",
            )?;
            let mut max = seq;
            let mut out = Vec::new();
            for row in st.query_map([seq as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))
            })? {
                let (id, rev, s) = row?;
                max = max.max(s);
                out.push((id, rev));
            }
            Ok((out, max))
        });
        Box::pin(r)
    }

    fn create_user(&self, user: User) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO users(id, login, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![user.id, user.login, user.password_hash, user.created_at],
            )
            .map_err(|e| {
                if unique_violation(&e) { StoreError::AlreadyExists(user.login.clone()) } else { backend(e) }
            })?;
            Ok(())
        }))
    }

    fn user(&self, id: &str) -> BoxFuture<'_, Result<Option<User>>> {
        let id = id.to_string();
        let r = self.read(move |c| {
            c.prepare_cached("SELECT id, login, password_hash, created_at FROM users WHERE id = ?1")?
                .query_row([id], row_to_user)
                .optional()
        });
        Box::pin(r)
    }

    fn user_by_login(&self, login: &str) -> BoxFuture<'_, Result<Option<User>>> {
        let login = login.to_string();
        let r = self.read(move |c| {
            c.prepare_cached("SELECT id, login, password_hash, created_at FROM users WHERE login = ?1")?
                .query_row([login], row_to_user)
                .optional()
        });
        Box::pin(r)
    }

    fn users(&self) -> BoxFuture<'_, Result<Vec<User>>> {
        let r = self.read(move |c| {
            let mut st =
                c.prepare("SELECT id, login, password_hash, created_at FROM users ORDER BY login")?;
            st.query_map([], row_to_user)?.collect()
        });
        Box::pin(r)
    }

    fn set_password(&self, user_id: &str, password_hash: &str) -> BoxFuture<'_, Result<()>> {
        let (id, hash) = (user_id.to_string(), password_hash.to_string());
        Box::pin(self.write(move |conn| {
            let n = conn
                .execute("UPDATE users SET password_hash = ?1 WHERE id = ?2", params![hash, id])
                .map_err(backend)?;
            if n == 1 { Ok(()) } else { Err(StoreError::NotFound(id)) }
        }))
    }

    fn insert_token(&self, token: TokenRecord) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| insert_token_row(conn, &token)))
    }

    fn token(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>>> {
        let hash = *hash;
        let r = self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_seq IS NULL"
            ))?
            .query_row([hash.as_slice()], row_to_token)
            .optional()
        });
        Box::pin(r)
    }

    fn revoke_token(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<bool>> {
        let hash = hash.to_vec();
        Box::pin(self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE tokens SET revoked_seq = (SELECT COALESCE(MAX(revoked_seq), 0) + 1 FROM tokens)
                     WHERE hash = ?1 AND revoked_seq IS NULL",
                    [hash],
                )
                .map_err(backend)?;
            Ok(n == 1)
        }))
    }

    fn device_tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>>> {
        let r = self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE device_id IS NOT NULL AND revoked_seq IS NULL"
            ))?;
            st.query_map([], row_to_token)?.collect()
        });
        Box::pin(r)
    }

    fn revoke_device_tokens(&self, device_id: &str) -> BoxFuture<'_, Result<usize>> {
        let device_id = device_id.to_string();
        Box::pin(self.write(move |conn| {
            conn.execute(
                "UPDATE tokens SET revoked_seq = (SELECT COALESCE(MAX(revoked_seq), 0) + 1 FROM tokens)
                 WHERE device_id = ?1 AND revoked_seq IS NULL",
                [device_id],
            )
            .map_err(backend)
        }))
    }

    fn idempotency(&self, key: &IdempotencyKey) -> BoxFuture<'_, Result<Option<u64>>> {
        let key = key.clone();
        let r = self.read(move |c| {
            c.prepare_cached("SELECT revision FROM idempotency WHERE scope = ?1 AND key = ?2")?
                .query_row(params![key.scope, key.key], |r| r.get::<_, i64>(0))
                .optional()
        });
        Box::pin(async move { r.await.map(|o| o.map(|v| v as u64)) })
    }

    fn remember_idempotency(&self, key: IdempotencyKey, revision: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| record_idempotency(conn, &key, revision).map(|_| ())))
    }

    fn tokens_of(&self, user_id: &str) -> BoxFuture<'_, Result<Vec<TokenRecord>>> {
        let user_id = user_id.to_string();
        let r = self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = ?1 ORDER BY created_at"
            ))?;
            st.query_map([user_id], row_to_token)?.collect()
        });
        Box::pin(r)
    }

    fn revoked_since(&self, seq: u64) -> BoxFuture<'_, Result<(Vec<[u8; 32]>, u64)>> {
        let r = self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT hash, revoked_seq FROM tokens WHERE revoked_seq > ?1 ORDER BY revoked_seq",
            )?;
            let mut max = seq;
            let mut out = Vec::new();
            for row in
                st.query_map([seq as i64], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)? as u64)))?
            {
                let (h, s) = row?;
                max = max.max(s);
                if h.len() == 32 {
                    let mut a = [0u8; 32];
                    a.copy_from_slice(&h);
                    out.push(a);
                }
            }
            Ok((out, max))
        });
        Box::pin(r)
    }

    fn create_product(&self, product: Product) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO products(id, name, description, secret_hash, redirect_uris, permissions, client_version, created_at, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    product.id,
                    product.name,
                    product.description,
                    product.secret_hash,
                    serde_json::to_string(&product.redirect_uris).unwrap_or_default(),
                    i64::from(product.permissions),
                    product.client_version as i64,
                    product.created_at,
                    product.owner,
                ],
            )
            .map_err(|e| if unique_violation(&e) { StoreError::AlreadyExists(product.id.clone()) } else { backend(e) })?;
            Ok(())
        }))
    }

    fn product(&self, id: &str) -> BoxFuture<'_, Result<Option<Product>>> {
        let id = id.to_string();
        let r = self.read(move |c| {
            c.prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?1"))?
                .query_row([id], row_to_product)
                .optional()
        });
        Box::pin(r)
    }

    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>>> {
        let r = self.read(move |c| {
            let mut st = c.prepare(&format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY name"))?;
            st.query_map([], row_to_product)?.collect()
        });
        Box::pin(r)
    }

    fn update_product_permissions(&self, id: &str, permissions: u32) -> BoxFuture<'_, Result<u64>> {
        let id = id.to_string();
        Box::pin(self.write(move |conn| {
            let v: Option<i64> = conn
                .query_row(
                    "UPDATE products SET permissions = ?1, client_version = client_version + 1 WHERE id = ?2
                     RETURNING client_version",
                    params![i64::from(permissions), id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            v.map(|v| v as u64).ok_or(StoreError::NotFound(id))
        }))
    }

    fn insert_code(&self, code: CodeRecord) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO codes(hash, product_id, user_id, permissions, structures, client_version, redirect_uri, code_challenge, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    code.hash.to_vec(),
                    code.product_id,
                    code.user_id,
                    i64::from(code.permissions),
                    serde_json::to_string(&code.structures).unwrap_or_default(),
                    code.client_version as i64,
                    code.redirect_uri,
                    code.code_challenge,
                    code.expires_at,
                ],
            )
            .map_err(backend)?;
            Ok(())
        }))
    }

    fn exchange_code(
        &self,
        hash: &[u8; 32],
        token: TokenRecord,
    ) -> BoxFuture<'_, Result<std::result::Result<CodeRecord, CodeRecord>>> {
        let hash = hash.to_vec();
        Box::pin(self.write(move |conn| {
            let code = conn
                .prepare_cached(&format!("SELECT {CODE_COLUMNS} FROM codes WHERE hash = ?1"))
                .and_then(|mut st| st.query_row([&hash], row_to_code).optional())
                .map_err(backend)?
                .ok_or_else(|| StoreError::NotFound("code".into()))?;
            if let Some(first) = code.token_hash {
                // A replayed code: the token its first use produced is revoked in this same
                // transaction, so the security step cannot fail apart from the answer.
                conn.execute(
                    "UPDATE tokens SET revoked_seq = (SELECT COALESCE(MAX(revoked_seq), 0) + 1 FROM tokens)
                     WHERE hash = ?1 AND revoked_seq IS NULL",
                    [first.to_vec()],
                )
                .map_err(backend)?;
                return Ok(Err(code));
            }
            conn.execute(
                "UPDATE codes SET token_hash = ?1 WHERE hash = ?2",
                params![token.hash.to_vec(), hash],
            )
            .map_err(backend)?;
            insert_token_row(conn, &token)?;
            Ok(Ok(code))
        }))
    }

    fn code(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<CodeRecord>>> {
        let hash = *hash;
        let r = self.read(move |c| {
            c.prepare_cached(&format!("SELECT {CODE_COLUMNS} FROM codes WHERE hash = ?1"))?
                .query_row([hash.as_slice()], row_to_code)
                .optional()
        });
        Box::pin(r)
    }

    fn insert_session(&self, session: Session) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO sessions(hash, user_id, csrf, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![session.hash.to_vec(), session.user_id, session.csrf, session.expires_at],
            )
            .map_err(backend)?;
            Ok(())
        }))
    }

    fn session(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<Session>>> {
        let hash = *hash;
        let r = self.read(move |c| {
            c.prepare_cached("SELECT hash, user_id, csrf, expires_at FROM sessions WHERE hash = ?1")?
                .query_row([hash.as_slice()], |r| {
                    Ok(Session {
                        hash: to_hash(r.get::<_, Vec<u8>>(0)?),
                        user_id: r.get(1)?,
                        csrf: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                })
                .optional()
        });
        Box::pin(r)
    }

    fn delete_session(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<()>> {
        let hash = hash.to_vec();
        Box::pin(self.write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE hash = ?1", [hash]).map_err(backend)?;
            Ok(())
        }))
    }
}

const PRODUCT_COLUMNS: &str =
    "id, name, description, secret_hash, redirect_uris, permissions, client_version, created_at, owner";

fn row_to_product(r: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    let uris: String = r.get(4)?;
    Ok(Product {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        secret_hash: r.get(3)?,
        redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
        permissions: r.get::<_, i64>(5)? as u32,
        client_version: r.get::<_, i64>(6)? as u64,
        created_at: r.get(7)?,
        owner: r.get(8)?,
    })
}

const CODE_COLUMNS: &str = "hash, product_id, user_id, permissions, structures, client_version, redirect_uri, code_challenge, expires_at, token_hash";

fn to_hash(v: Vec<u8>) -> [u8; 32] {
    let mut h = [0u8; 32];
    if v.len() == 32 {
        h.copy_from_slice(&v);
    }
    h
}

fn row_to_code(r: &rusqlite::Row<'_>) -> rusqlite::Result<CodeRecord> {
    let structures: String = r.get(4)?;
    Ok(CodeRecord {
        hash: to_hash(r.get(0)?),
        product_id: r.get(1)?,
        user_id: r.get(2)?,
        permissions: r.get::<_, i64>(3)? as u32,
        structures: serde_json::from_str(&structures).unwrap_or_default(),
        client_version: r.get::<_, i64>(5)? as u64,
        redirect_uri: r.get(6)?,
        code_challenge: r.get(7)?,
        expires_at: r.get(8)?,
        token_hash: r.get::<_, Option<Vec<u8>>>(9)?.map(to_hash),
    })
}

/// How long idempotency keys are kept.
const IDEMPOTENCY_KEEP_SECS: i64 = 24 * 3600;

/// Records a key; `Some(revision)` of the earlier use when it was already recorded. Now and
/// then drops keys older than a day.
fn record_idempotency(conn: &Connection, key: &IdempotencyKey, revision: u64) -> Result<Option<u64>> {
    let now = chrono::Utc::now().timestamp();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO idempotency(scope, key, revision, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(scope, key) DO NOTHING",
        )
        .and_then(|mut st| st.execute(params![key.scope, key.key, revision as i64, now]))
        .map_err(backend)?;
    if inserted == 0 {
        let earlier: i64 = conn
            .query_row(
                "SELECT revision FROM idempotency WHERE scope = ?1 AND key = ?2",
                params![key.scope, key.key],
                |r| r.get(0),
            )
            .map_err(backend)?;
        return Ok(Some(earlier as u64));
    }
    if revision.is_multiple_of(64) {
        conn.prepare_cached("DELETE FROM idempotency WHERE created_at < ?1")
            .and_then(|mut st| st.execute([now - IDEMPOTENCY_KEEP_SECS]))
            .map_err(backend)?;
    }
    Ok(None)
}

fn insert_token_row(conn: &Connection, token: &TokenRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO tokens(hash, user_id, product_id, permissions, structures, client_version, created_at, label, device_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            token.hash.to_vec(),
            token.user_id,
            token.product_id,
            i64::from(token.permissions),
            serde_json::to_string(&token.structures).unwrap_or_default(),
            token.client_version as i64,
            token.created_at,
            token.label,
            token.device_id,
        ],
    )
    .map_err(backend)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The anchor spacing is spelled out in SQL (a partial index is used only when a query
    /// repeats its condition word for word); every spelling must be the constant's.
    #[test]
    fn every_anchor_condition_uses_the_same_spacing() {
        let source = include_str!("sqlite.rs");
        let spacings: Vec<&str> = source
            .match_indices("revision % ")
            .map(|(i, m)| &source[i + m.len()..])
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
            .collect();
        assert!(spacings.len() >= 4, "{spacings:?}");
        assert!(spacings.iter().all(|s| *s == ANCHOR_EVERY.to_string()), "{spacings:?} vs {ANCHOR_EVERY}");
    }

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
