//! The embedded backend: SQLite (WAL, `synchronous=FULL`) with group commit.
//!
//! - `schema.rs`: the tables, opening a connection, migrations of older data dirs.
//! - `writer.rs`: the writer thread (group commit, one savepoint per write that needs one),
//!   the reader threads and the WAL checkpoint thread.
//! - `changelog.rs`: structures and their change log (chained, anchored, checkpointed),
//!   commits, idempotency keys.
//! - `accounts.rs`: users, tokens, products, codes and sessions.
//!
//! This file holds the store itself (its threads and the async plumbing to them) and the
//! `Store` implementation, which calls the methods of the modules above.
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

mod accounts;
mod changelog;
mod schema;
mod writer;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use parking_lot::Mutex;
use rusqlite::Connection;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{
    BoxFuture, Change, ChangedSince, CodeRecord, Commit, IdempotencyKey, Product, Result, Session, Store,
    StoreError, StoredStructure, TokenRecord, User,
};
use schema::{SCHEMA, change_log_by_structure, migrate, open};
use writer::{
    Op, ReadJob, WAL_SIZE_LIMIT, WRITER_CHECKPOINT_PAGES, checkpoint_loop, reader_loop, run_op, writer_loop,
};

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

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

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
        self.writer.lock().take();
        let handle = self.writer_thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.reads.lock().take();
        let readers = std::mem::take(&mut *self.reader_threads.lock());
        for h in readers {
            let _ = h.join();
        }
        let checkpointer = self.checkpointer.lock().take();
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
            let guard = self.writer.lock();
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
        let queued = self
            .reads
            .lock()
            .as_ref()
            .ok_or(StoreError::Closed)
            .and_then(|r| r.send(job).map_err(|_| StoreError::Closed));
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

impl Store for SqliteStore {
    fn close(&self) {
        SqliteStore::close(self);
    }

    fn create_structure(&self, owner: &str, id: &str, doc: Value, at: &str) -> BoxFuture<'_, Result<u64>> {
        SqliteStore::create_structure(self, owner, id, doc, at)
    }

    fn revision(&self, id: &str) -> BoxFuture<'_, Result<Option<u64>>> {
        SqliteStore::revision(self, id)
    }

    fn due_structures(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<Vec<String>>> {
        SqliteStore::due_structures(self, now, limit)
    }

    fn record_due(&self, entries: Vec<(String, u64, i64)>) -> BoxFuture<'_, Result<usize>> {
        SqliteStore::record_due(self, entries)
    }

    fn upkeep_pending(&self, task: &str) -> BoxFuture<'_, Result<bool>> {
        SqliteStore::upkeep_pending(self, task)
    }

    fn upkeep_done(&self, task: &str) -> BoxFuture<'_, Result<()>> {
        SqliteStore::upkeep_done(self, task)
    }

    fn structure(&self, id: &str) -> BoxFuture<'_, Result<Option<StoredStructure>>> {
        SqliteStore::structure(self, id)
    }

    fn all_structures(&self) -> BoxFuture<'_, Result<Vec<StoredStructure>>> {
        SqliteStore::all_structures(self)
    }

    fn structure_ids(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        SqliteStore::structure_ids(self)
    }

    fn structures_between(
        &self,
        first: &str,
        last: &str,
        each: Box<dyn FnMut(StoredStructure) + Send>,
    ) -> BoxFuture<'_, Result<()>> {
        SqliteStore::structures_between(self, first, last, each)
    }

    fn structures_of(&self, user_id: &str) -> BoxFuture<'_, Result<Vec<String>>> {
        SqliteStore::structures_of(self, user_id)
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<u64>> {
        SqliteStore::commit(self, commit)
    }

    fn changes_after(
        &self,
        structure_id: &str,
        revision: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Change>>> {
        SqliteStore::changes_after(self, structure_id, revision, limit)
    }

    fn oldest_change(&self, structure_id: &str) -> BoxFuture<'_, Result<Option<u64>>> {
        SqliteStore::oldest_change(self, structure_id)
    }

    fn changed_since(&self, seq: u64) -> BoxFuture<'_, Result<ChangedSince>> {
        SqliteStore::changed_since(self, seq)
    }

    fn feed_head(&self) -> BoxFuture<'_, Result<u64>> {
        SqliteStore::feed_head(self)
    }

    fn create_user(&self, user: User) -> BoxFuture<'_, Result<()>> {
        SqliteStore::create_user(self, user)
    }

    fn user(&self, id: &str) -> BoxFuture<'_, Result<Option<User>>> {
        SqliteStore::user(self, id)
    }

    fn user_by_login(&self, login: &str) -> BoxFuture<'_, Result<Option<User>>> {
        SqliteStore::user_by_login(self, login)
    }

    fn users(&self) -> BoxFuture<'_, Result<Vec<User>>> {
        SqliteStore::users(self)
    }

    fn set_password(&self, user_id: &str, password_hash: &str) -> BoxFuture<'_, Result<()>> {
        SqliteStore::set_password(self, user_id, password_hash)
    }

    fn insert_token(&self, token: TokenRecord) -> BoxFuture<'_, Result<()>> {
        SqliteStore::insert_token(self, token)
    }

    fn token(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>>> {
        SqliteStore::token(self, hash)
    }

    fn revoke_token(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<bool>> {
        SqliteStore::revoke_token(self, hash)
    }

    fn device_tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>>> {
        SqliteStore::device_tokens(self)
    }

    fn revoke_device_tokens(&self, device_id: &str) -> BoxFuture<'_, Result<usize>> {
        SqliteStore::revoke_device_tokens(self, device_id)
    }

    fn idempotency(&self, key: &IdempotencyKey) -> BoxFuture<'_, Result<Option<u64>>> {
        SqliteStore::idempotency(self, key)
    }

    fn remember_idempotency(&self, key: IdempotencyKey, revision: u64) -> BoxFuture<'_, Result<()>> {
        SqliteStore::remember_idempotency(self, key, revision)
    }

    fn tokens_of(&self, user_id: &str) -> BoxFuture<'_, Result<Vec<TokenRecord>>> {
        SqliteStore::tokens_of(self, user_id)
    }

    fn revoked_since(&self, seq: u64) -> BoxFuture<'_, Result<(Vec<[u8; 32]>, u64)>> {
        SqliteStore::revoked_since(self, seq)
    }

    fn create_product(&self, product: Product) -> BoxFuture<'_, Result<()>> {
        SqliteStore::create_product(self, product)
    }

    fn product(&self, id: &str) -> BoxFuture<'_, Result<Option<Product>>> {
        SqliteStore::product(self, id)
    }

    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>>> {
        SqliteStore::products(self)
    }

    fn update_product_permissions(&self, id: &str, permissions: u32) -> BoxFuture<'_, Result<u64>> {
        SqliteStore::update_product_permissions(self, id, permissions)
    }

    fn insert_code(&self, code: CodeRecord) -> BoxFuture<'_, Result<()>> {
        SqliteStore::insert_code(self, code)
    }

    fn exchange_code(
        &self,
        hash: &[u8; 32],
        token: TokenRecord,
    ) -> BoxFuture<'_, Result<std::result::Result<CodeRecord, CodeRecord>>> {
        SqliteStore::exchange_code(self, hash, token)
    }

    fn code(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<CodeRecord>>> {
        SqliteStore::code(self, hash)
    }

    fn insert_session(&self, session: Session) -> BoxFuture<'_, Result<()>> {
        SqliteStore::insert_session(self, session)
    }

    fn session(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<Session>>> {
        SqliteStore::session(self, hash)
    }

    fn delete_session(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<()>> {
        SqliteStore::delete_session(self, hash)
    }
}
