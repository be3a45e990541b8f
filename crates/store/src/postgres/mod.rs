//! The cluster backend: PostgreSQL, shared by every node.
//!
//! - `schema.rs`: the tables and the versioned migrations (applied at start under an
//!   advisory lock), including `roost_commit`, commits (a batch, column by column) as one
//!   server-side function.
//! - `changelog.rs`: structures, commits, the change log and the feed other nodes follow.
//! - `group.rs`: group commit (the commits waiting at once share one statement).
//! - `limits.rs`: counts under limits, shared between nodes.
//! - `accounts.rs`: users, tokens, products, codes and sessions.
//! - `wakeup.rs`: a NOTIFY after commits and a LISTEN connection, so other nodes read the
//!   feed at once rather than at their next poll.
//!
//! Why tokio-postgres with a deadpool pool (not sqlx): the commit is one call of a function
//! and most reads one statement, so what matters is a lean round trip with cached prepared
//! statements, which both give; tokio-postgres adds pipelining (concurrent queries on one
//! connection share its round trips) and hands LISTEN notifications to us through the
//! connection, whose loss we must see anyway to catch up from the log. sqlx would also pull
//! its own SQLite driver beside rusqlite (their `links` clash, see docs/scaling.md).
//!
//! Durability: every connection runs with `synchronous_commit=on`, whatever the server's
//! default, so a commit returns only after PostgreSQL flushed it to its WAL.

mod accounts;
mod changelog;
mod group;
mod limits;
mod schema;
mod wakeup;

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::{
    BoxFuture, ChangedSince, CodeRecord, Commit, IdempotencyKey, Product, Result, Session, Store, StoreError,
    StoredStructure, TokenRecord, User,
};

#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Change log entries kept per structure, at least (as `StoreOptions::changelog_keep`).
    pub changelog_keep: u64,
    /// Connections in the pool.
    pub pool_size: usize,
    /// A whole document is written every this many revisions; between, only merge patches.
    pub checkpoint_every: u64,
    /// Tell the other nodes of commits at once (a coalesced NOTIFY after commits, and a
    /// LISTEN connection). Off, nodes learn only by polling the feed: for a database reached
    /// through a pooler that cannot LISTEN (PgBouncer in transaction mode), and to measure
    /// what wake-ups cost.
    pub wakeups: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions { changelog_keep: 10_000, pool_size: 16, checkpoint_every: 32, wakeups: true }
    }
}

pub struct PgStore {
    pool: Pool,
    options: PgOptions,
    /// Signalled after each commit and revocation: the notifier tells the other nodes.
    committed: Arc<Notify>,
    /// Signalled when another node may have committed (and after the listener reconnects).
    wakeups: Arc<Notify>,
    /// The notifier and the listener.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The group committer's queue (`None` once closed: queued commits still finish).
    commits: parking_lot::Mutex<Option<tokio::sync::mpsc::Sender<group::Pending>>>,
    /// This node's name in notifications and shared counts; new at every start.
    node: String,
    /// Count exchanges so far (every so many sweeps old rows).
    exchanges: std::sync::atomic::AtomicU64,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A connection string with the password left out, for logs and errors.
pub fn redacted(url: &str) -> String {
    match tokio_postgres::Config::from_str(url) {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect();
            format!(
                "postgres://{}@{}/{}",
                c.get_user().unwrap_or(""),
                hosts.join(","),
                c.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "postgres://(unparsable)".into(),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`), applies the migrations
    /// that are missing and returns the store.
    pub async fn open(url: &str, options: PgOptions) -> Result<Arc<PgStore>> {
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| backend(format!("{}: {e}", redacted(url))))?;
        let extra = "-c synchronous_commit=on";
        let options_text = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {extra}"),
            _ => extra.to_string(),
        };
        config.options(&options_text);
        if config.get_application_name().is_none() {
            config.application_name("roost");
        }
        config.connect_timeout(std::time::Duration::from_secs(5));
        let mut listen_config = config.clone();
        // Named apart in pg_stat_activity, for operators (and the test that cuts it).
        listen_config
            .application_name(format!("{}-listener", config.get_application_name().unwrap_or("roost")));
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(backend)?;
        let mut client = pool.get().await.map_err(|e| backend(format!("database unreachable: {e}")))?;
        schema::migrate(&mut client).await?;
        drop(client);
        let committed = Arc::new(Notify::new());
        let wakeups = Arc::new(Notify::new());
        // Names this node in its notifications, so that it ignores its own.
        let node = format!("{:016x}", rand_node_id());
        let tasks = if options.wakeups {
            vec![
                tokio::spawn(wakeup::notifier(pool.clone(), committed.clone(), node.clone())),
                tokio::spawn(wakeup::listener(listen_config, wakeups.clone(), node.clone())),
            ]
        } else {
            Vec::new()
        };
        let (commits, queue) = tokio::sync::mpsc::channel(4 * group::MAX_BATCH);
        let queue: group::Queue = Arc::new(tokio::sync::Mutex::new(queue));
        // A few writers (each holds a connection only while its batch runs): fewer make larger
        // batches; on 2 cores 4 gave the most writes per second (BENCHMARKS.md).
        for _ in 0..(options.pool_size / 2).clamp(1, 4) {
            tokio::spawn(group::writer(pool.clone(), queue.clone()));
        }
        let commits = parking_lot::Mutex::new(Some(commits));
        Ok(Arc::new(PgStore {
            pool,
            options,
            committed,
            wakeups,
            tasks,
            commits,
            node,
            exchanges: Default::default(),
        }))
    }

    async fn client(&self) -> Result<Object> {
        if self.commits.lock().is_none() {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Closed => StoreError::Closed,
            e => backend(format!("database unreachable: {e}")),
        })
    }

    /// Stops taking commits (those queued still finish: the writers end once the queue is
    /// empty, and the pool's connections close as the last handle goes) and stops the
    /// notifier and the listener.
    pub fn close(&self) {
        self.commits.lock().take();
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Tells the other nodes (soon, coalesced) that something was committed.
    fn tell_other_nodes(&self) {
        self.committed.notify_one();
    }
}

/// A node id for notifications: distinct between processes (pid, time) and between stores
/// of one process (a counter); no secret.
fn rand_node_id() -> u64 {
    static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (nanos as u64)
        ^ (u64::from(std::process::id()) << 40)
        ^ OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Store for PgStore {
    fn close(&self) {
        PgStore::close(self);
    }

    fn wakeups(&self) -> Option<Arc<Notify>> {
        self.options.wakeups.then(|| self.wakeups.clone())
    }

    fn share_counts(&self, exchange: crate::CountExchange) -> BoxFuture<'_, Result<Vec<crate::SharedCount>>> {
        Box::pin(self.share_counts(exchange))
    }

    fn report_metrics(&self) {
        let status = self.pool.status();
        metrics::gauge!("roost_store_pool_connections").set(status.size as f64);
        metrics::gauge!("roost_store_pool_idle").set(status.available as f64);
        metrics::gauge!("roost_store_pool_waiting").set(status.waiting as f64);
    }

    fn create_structure(&self, owner: &str, id: &str, doc: Value, at: &str) -> BoxFuture<'_, Result<u64>> {
        let (owner, id, at) = (owner.to_string(), id.to_string(), at.to_string());
        Box::pin(async move {
            let revision = self.create_structure(&owner, &id, &doc, &at).await?;
            self.tell_other_nodes();
            Ok(revision)
        })
    }

    fn structure(&self, id: &str) -> BoxFuture<'_, Result<Option<StoredStructure>>> {
        let id = id.to_string();
        Box::pin(async move { self.structure(&id).await })
    }

    fn revision(&self, id: &str) -> BoxFuture<'_, Result<Option<u64>>> {
        let id = id.to_string();
        Box::pin(async move { self.revision(&id).await })
    }

    fn due_structures(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(self.due_structures(now, limit))
    }

    fn record_due(&self, entries: Vec<(String, u64, i64)>) -> BoxFuture<'_, Result<usize>> {
        Box::pin(self.record_due(entries))
    }

    fn upkeep_pending(&self, task: &str) -> BoxFuture<'_, Result<bool>> {
        let task = task.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one("SELECT EXISTS (SELECT 1 FROM upkeep WHERE task = $1)", &[&task])
                .await
                .map_err(backend)?;
            Ok(row.get(0))
        })
    }

    fn upkeep_done(&self, task: &str) -> BoxFuture<'_, Result<()>> {
        let task = task.to_string();
        Box::pin(async move {
            let client = self.client().await?;
            client.execute("DELETE FROM upkeep WHERE task = $1", &[&task]).await.map_err(backend)?;
            Ok(())
        })
    }

    fn all_structures(&self) -> BoxFuture<'_, Result<Vec<StoredStructure>>> {
        Box::pin(self.all_structures())
    }

    fn structure_ids(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(self.structure_ids())
    }

    fn structures_between(
        &self,
        first: &str,
        last: &str,
        each: Box<dyn FnMut(StoredStructure) + Send>,
    ) -> BoxFuture<'_, Result<()>> {
        let (first, last) = (first.to_string(), last.to_string());
        Box::pin(async move { self.structures_between(&first, &last, each).await })
    }

    fn structures_of(&self, user_id: &str) -> BoxFuture<'_, Result<Vec<String>>> {
        let user_id = user_id.to_string();
        Box::pin(async move { self.structures_of(&user_id).await })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let revision = self.commit(commit).await?;
            self.tell_other_nodes();
            Ok(revision)
        })
    }

    fn changes_after(
        &self,
        structure_id: &str,
        revision: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<crate::Change>>> {
        let structure_id = structure_id.to_string();
        Box::pin(async move { self.changes_after(&structure_id, revision, limit).await })
    }

    fn oldest_change(&self, structure_id: &str) -> BoxFuture<'_, Result<Option<u64>>> {
        let structure_id = structure_id.to_string();
        Box::pin(async move { self.oldest_change(&structure_id).await })
    }

    fn changed_since(&self, seq: u64) -> BoxFuture<'_, Result<ChangedSince>> {
        Box::pin(self.changed_since(seq))
    }

    fn feed_head(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.feed_head())
    }

    fn create_user(&self, user: User) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.create_user(user))
    }

    fn user(&self, id: &str) -> BoxFuture<'_, Result<Option<User>>> {
        let id = id.to_string();
        Box::pin(async move { self.user_where("id", &id).await })
    }

    fn user_by_login(&self, login: &str) -> BoxFuture<'_, Result<Option<User>>> {
        let login = login.to_string();
        Box::pin(async move { self.user_where("login", &login).await })
    }

    fn users(&self) -> BoxFuture<'_, Result<Vec<User>>> {
        Box::pin(self.users())
    }

    fn set_password(&self, user_id: &str, password_hash: &str) -> BoxFuture<'_, Result<()>> {
        let (id, hash) = (user_id.to_string(), password_hash.to_string());
        Box::pin(async move { self.set_password(&id, &hash).await })
    }

    fn insert_token(&self, token: TokenRecord) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.insert_token(token))
    }

    fn token(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>>> {
        let hash = *hash;
        Box::pin(async move { self.token(&hash).await })
    }

    fn revoke_token(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<bool>> {
        let hash = *hash;
        Box::pin(async move {
            let revoked = self.revoke_token(&hash).await?;
            self.tell_other_nodes();
            Ok(revoked)
        })
    }

    fn tokens_of(&self, user_id: &str) -> BoxFuture<'_, Result<Vec<TokenRecord>>> {
        let user_id = user_id.to_string();
        Box::pin(async move { self.tokens_of(&user_id).await })
    }

    fn device_tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>>> {
        Box::pin(self.device_tokens())
    }

    fn revoke_device_tokens(&self, device_id: &str) -> BoxFuture<'_, Result<usize>> {
        let device_id = device_id.to_string();
        Box::pin(async move {
            let revoked = self.revoke_device_tokens(&device_id).await?;
            self.tell_other_nodes();
            Ok(revoked)
        })
    }

    fn revoked_since(&self, seq: u64) -> BoxFuture<'_, Result<(Vec<[u8; 32]>, u64)>> {
        Box::pin(self.revoked_since(seq))
    }

    fn create_product(&self, product: Product) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.create_product(product))
    }

    fn product(&self, id: &str) -> BoxFuture<'_, Result<Option<Product>>> {
        let id = id.to_string();
        Box::pin(async move { self.product(&id).await })
    }

    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>>> {
        Box::pin(self.products())
    }

    fn update_product_permissions(&self, id: &str, permissions: u32) -> BoxFuture<'_, Result<u64>> {
        let id = id.to_string();
        Box::pin(async move { self.update_product_permissions(&id, permissions).await })
    }

    fn insert_code(&self, code: CodeRecord) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.insert_code(code))
    }

    fn exchange_code(
        &self,
        hash: &[u8; 32],
        token: TokenRecord,
    ) -> BoxFuture<'_, Result<std::result::Result<CodeRecord, CodeRecord>>> {
        let hash = *hash;
        Box::pin(async move {
            let exchanged = self.exchange_code(&hash, token).await?;
            // A replayed code revoked its first token.
            if exchanged.is_err() {
                self.tell_other_nodes();
            }
            Ok(exchanged)
        })
    }

    fn code(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<CodeRecord>>> {
        let hash = *hash;
        Box::pin(async move { self.code(&hash).await })
    }

    fn idempotency(&self, key: &IdempotencyKey) -> BoxFuture<'_, Result<Option<u64>>> {
        let key = key.clone();
        Box::pin(async move { self.idempotency(&key).await })
    }

    fn remember_idempotency(&self, key: IdempotencyKey, revision: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.remember_idempotency(key, revision))
    }

    fn insert_session(&self, session: Session) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.insert_session(session))
    }

    fn session(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<Session>>> {
        let hash = *hash;
        Box::pin(async move { self.session(&hash).await })
    }

    fn delete_session(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<()>> {
        let hash = *hash;
        Box::pin(async move { self.delete_session(&hash).await })
    }
}
