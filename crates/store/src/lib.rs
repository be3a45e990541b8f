//! # roost-store: durable storage behind the [`Store`] trait
//!
//! What is stored: structures (one JSON document per structure, with its revision), the change
//! log (revision, changed paths, actor, time, merge patch) kept for a bounded window, users,
//! and access tokens (only their SHA-256).
//!
//! The trait is shaped for several servers sharing one database: a commit is a
//! compare-and-set on the structure's revision ([`StoreError::Conflict`] when another writer
//! got there first), and [`Store::changed_since`] lets a node learn of commits it did not make.
//! No truth lives only in one process.
//!
//! [`SqliteStore`] is the embedded default: SQLite in WAL mode with `synchronous=FULL`, one
//! writer thread doing **group commit** (every commit waiting when a transaction starts shares
//! its fsync), and a few read connections. [`PgStore`] is the cluster backend: PostgreSQL,
//! shared by every node, with `synchronous_commit=on`.
//!
//! Only this crate knows SQL.

mod postgres;
mod sqlite;

pub mod conformance;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use postgres::{PgOptions, PgStore, redacted};
pub use sqlite::{SqliteStore, StoreOptions};

/// Spreads document checkpoints of different structures over different revisions, so homes
/// written in step (a fleet, a benchmark) do not all write their whole documents in the
/// same transaction.
pub(crate) fn stagger(structure_id: &str) -> u64 {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    structure_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The structure's revision moved since the caller read it.
    #[error("revision conflict on structure {structure_id}: current revision is {current}")]
    Conflict { structure_id: String, current: u64 },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("storage failure: {0}")]
    Backend(String),
    #[error("the store is shut down")]
    Closed,
    /// The commit's idempotency key was used before, by the commit that made `revision`.
    #[error("idempotency key already used (revision {revision})")]
    Duplicate { revision: u64 },
}

/// `(structure id, revision)` of structures committed after a sequence number, and the
/// highest sequence number seen.
pub type ChangedSince = (Vec<(String, u64)>, u64);

/// A structure as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStructure {
    pub id: String,
    pub owner: String,
    pub revision: u64,
    pub doc: Value,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub structure_id: String,
    pub revision: u64,
    /// ISO 8601 UTC.
    pub at: String,
    /// Who wrote: `product:<id>`, `device:<id>`, `service`, `admin`.
    pub actor: String,
    /// Data locations that changed, e.g. `/devices/thermostats/t1/target_temperature_f`.
    pub paths: Vec<String>,
    /// RFC 7396 merge patch from the previous revision's document to this one.
    pub patch: Value,
    /// The merge patch back: from this revision's document to the previous one. With it a
    /// stream can rebuild any revision in the log from the current one.
    pub inverse: Value,
}

/// The new document as JSON text, produced only when the backend stores a checkpoint of it
/// (most commits store just the change's merge patch).
pub type DocText = Box<dyn FnOnce() -> String + Send>;

/// A commit of a structure's new document.
pub struct Commit {
    pub structure_id: String,
    /// The revision the change was computed against; the commit fails if it moved.
    pub base_revision: u64,
    pub doc: DocText,
    /// Its `patch` must turn the previous revision's document into the new one: documents
    /// are rebuilt from the last checkpoint and the patches after it.
    pub change: Change,
    /// Recorded in the same transaction, so a retried request never applies twice: a second
    /// commit with the same key fails with [`StoreError::Duplicate`].
    pub idempotency: Option<IdempotencyKey>,
    /// When the home next has a timed change due (Unix seconds; `None`: nothing pending), for
    /// [`Store::due_structures`].
    pub due_at: Option<i64>,
}

/// A client's key for one request (`Idempotency-Key`), scoped to who sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// `device:<id>` or `token:<hash prefix>`: keys of different senders never collide.
    pub scope: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub login: String,
    /// PHC string (Argon2id); `None` for users who cannot log in.
    pub password_hash: Option<String>,
    pub created_at: String,
}

/// An access token as stored: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub hash: [u8; 32],
    pub user_id: String,
    /// The product (OAuth client) it was issued to; `None` for admin-issued tokens.
    pub product_id: Option<String>,
    /// Permission bits (`roost_model::PermissionSet::bits`).
    pub permissions: u32,
    /// The structures the grant covers.
    pub structures: Vec<String>,
    pub client_version: u64,
    pub created_at: String,
    pub label: String,
    pub revoked: bool,
    /// Set for a device's own credential: the device it speaks for (no product, no user
    /// permissions; it reads and writes only its own element).
    #[serde(default)]
    pub device_id: Option<String>,
}

/// A product (OAuth client). Its secret is stored only as an Argon2id hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// The client id (a UUID).
    pub id: String,
    /// The user who registered it on the developer page (`None` for admin-created ones).
    #[serde(default)]
    pub owner: Option<String>,
    pub name: String,
    pub description: String,
    /// PHC string; `None` for public clients (which must use PKCE).
    pub secret_hash: Option<String>,
    /// Registered redirect URIs, matched exactly; none means the PIN flow.
    pub redirect_uris: Vec<String>,
    pub permissions: u32,
    /// Increases whenever the permissions change; users re-consent to the new set.
    pub client_version: u64,
    pub created_at: String,
}

/// An authorization code or PIN, stored only as its SHA-256, single use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub hash: [u8; 32],
    pub product_id: String,
    pub user_id: String,
    pub permissions: u32,
    pub structures: Vec<String>,
    pub client_version: u64,
    /// The redirect URI of the request (empty for PINs).
    pub redirect_uri: String,
    /// PKCE S256 challenge, when the request had one.
    pub code_challenge: Option<String>,
    /// Unix seconds.
    pub expires_at: i64,
    /// Set once the code was exchanged: the token it produced (to revoke on reuse).
    pub token_hash: Option<[u8; 32]>,
}

/// A browser session of a logged-in user, with its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub hash: [u8; 32],
    pub user_id: String,
    pub csrf: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// The upkeep task of recording when homes are next due ([`Store::record_due`]) for homes
/// stored before due times were recorded.
pub const DUE_TIMES_BACKFILL: &str = "record-due-times";

/// One node's count under a limit, shared so that the limit holds for the cluster as a whole
/// ([`Store::share_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCount {
    /// What is counted (`calls:<token>`, `open-streams-user:<user>`…).
    pub key: String,
    /// Unix milliseconds at which the counting window started, the same on every node; 0
    /// for a gauge (streams open now), which counts only while its node is alive.
    pub window_start: i64,
    pub count: u64,
}

/// What a node tells the others about its counts, and what it asks of theirs.
#[derive(Debug, Clone, Default)]
pub struct CountExchange {
    /// Unix milliseconds on this node.
    pub now_ms: i64,
    /// This node's counts that changed (absolute, so a retried exchange is harmless), each
    /// with when it stops meaning anything (a window's end).
    pub mine: Vec<(SharedCount, i64)>,
    /// Keys (with window starts) whose counts on other nodes this node wants.
    pub ask: Vec<(String, i64)>,
    /// A node silent for longer than this is gone: its gauges no longer count.
    pub alive_ms: i64,
}

/// Storage of structures, the change log, users and tokens.
///
/// Every method is async and never blocks the calling task's thread: a backend runs its I/O on
/// threads of its own (or an async driver). The conformance suite ([`conformance`]) is what a
/// backend must pass.
pub trait Store: Send + Sync + 'static {
    /// Stops taking writes, finishes every write already queued (their callers get their
    /// acknowledgements) and releases the backend's threads and connections.
    fn close(&self);

    /// Wakes when another node may have committed or revoked something: a hint to read the
    /// feeds ([`Store::changed_since`], [`Store::revoked_since`]) now, which stay the truth.
    /// `None` (the default): the backend has no such signal, and nodes learn by polling.
    fn wakeups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Sets the backend's gauges (a connection pool's use, say); called now and then.
    fn report_metrics(&self) {}

    /// Publishes this node's counts and returns the other nodes' counts of the keys asked
    /// (summed over nodes; keys no other node counts are left out). The default, for a
    /// backend no other node shares (the embedded store): nothing, as this node's counts are
    /// the totals.
    fn share_counts(&self, exchange: CountExchange) -> BoxFuture<'_, Result<Vec<SharedCount>>> {
        let _ = exchange;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Creates a structure at revision 1 (fails if the id exists).
    fn create_structure(&self, owner: &str, id: &str, doc: Value, at: &str) -> BoxFuture<'_, Result<u64>>;
    fn structure(&self, id: &str) -> BoxFuture<'_, Result<Option<StoredStructure>>>;
    /// The structure's revision alone (`None` when there is no such structure): how a node
    /// checks that its copy is the newest before it refuses a write or calls it a no-op.
    fn revision(&self, id: &str) -> BoxFuture<'_, Result<Option<u64>>>;
    /// Every structure (cold start).
    fn all_structures(&self) -> BoxFuture<'_, Result<Vec<StoredStructure>>>;
    fn structures_of(&self, user_id: &str) -> BoxFuture<'_, Result<Vec<String>>>;
    /// Every structure id, in order (cold start splits the loading by it).
    fn structure_ids(&self) -> BoxFuture<'_, Result<Vec<String>>>;
    /// The structures with `first <= id <= last`, in id order, each handed to `each` as it is
    /// read, on the thread that built its document: what `each` makes of it (cold start: a
    /// home) is allocated and the document freed where it was allocated, and a range is never
    /// held whole. (Handing the documents to another thread made freeing them a third of cold
    /// start's allocator time.)
    fn structures_between(
        &self,
        first: &str,
        last: &str,
        each: Box<dyn FnMut(StoredStructure) + Send>,
    ) -> BoxFuture<'_, Result<()>>;
    /// Durably commits a change; returns the new revision. Acknowledged only after fsync.
    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<u64>>;
    /// Structures whose next timed change is due at `now` (Unix seconds) or before, as their
    /// last commit said (at most `limit`): how the clock finds homes it does not hold.
    fn due_structures(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<Vec<String>>>;
    /// Records `(id, revision, due_at)` for homes that have no due time recorded and are
    /// still at that revision (homes last written before due times were recorded); returns
    /// how many it recorded. A newer commit's own due time always wins.
    fn record_due(&self, entries: Vec<(String, u64, i64)>) -> BoxFuture<'_, Result<usize>>;
    /// Whether a one-time task over the stored data is still to be done: set by the migration
    /// that made it needed, so a database created since never has it. [`DUE_TIMES_BACKFILL`]
    /// is the one task today.
    fn upkeep_pending(&self, task: &str) -> BoxFuture<'_, Result<bool>>;
    /// The task is done (on every node: doing it again is harmless, only wasted).
    fn upkeep_done(&self, task: &str) -> BoxFuture<'_, Result<()>>;
    /// Change log entries after `revision`, oldest first (at most `limit`).
    fn changes_after(
        &self,
        structure_id: &str,
        revision: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Change>>>;
    /// The oldest revision still in the change log (`None` when the log is empty).
    fn oldest_change(&self, structure_id: &str) -> BoxFuture<'_, Result<Option<u64>>>;
    /// Structures committed after the global sequence number `seq`: `(id, revision)` and the
    /// highest sequence seen. How a node learns of other writers' commits.
    fn changed_since(&self, seq: u64) -> BoxFuture<'_, Result<ChangedSince>>;
    /// The feed's position now, without reading it: [`Store::changed_since`] from here finds
    /// every commit made after this call. A node starts following the feed here.
    fn feed_head(&self) -> BoxFuture<'_, Result<u64>>;

    fn create_user(&self, user: User) -> BoxFuture<'_, Result<()>>;
    fn user(&self, id: &str) -> BoxFuture<'_, Result<Option<User>>>;
    fn user_by_login(&self, login: &str) -> BoxFuture<'_, Result<Option<User>>>;
    fn users(&self) -> BoxFuture<'_, Result<Vec<User>>>;
    /// Sets a user's password hash.
    fn set_password(&self, user_id: &str, password_hash: &str) -> BoxFuture<'_, Result<()>>;

    fn insert_token(&self, token: TokenRecord) -> BoxFuture<'_, Result<()>>;
    /// A token that is not revoked.
    fn token(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>>>;
    /// Revokes; true if it was active.
    fn revoke_token(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<bool>>;
    fn tokens_of(&self, user_id: &str) -> BoxFuture<'_, Result<Vec<TokenRecord>>>;
    /// Every live device credential (connectivity tracks paired devices from the start).
    fn device_tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>>>;
    /// Revokes every live credential of a device; returns how many.
    fn revoke_device_tokens(&self, device_id: &str) -> BoxFuture<'_, Result<usize>>;
    /// Tokens revoked after the global sequence number `seq`, with the highest seen.
    fn revoked_since(&self, seq: u64) -> BoxFuture<'_, Result<(Vec<[u8; 32]>, u64)>>;

    fn create_product(&self, product: Product) -> BoxFuture<'_, Result<()>>;
    fn product(&self, id: &str) -> BoxFuture<'_, Result<Option<Product>>>;
    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>>>;
    /// Changes a product's permissions; its client version goes up by one (users re-consent
    /// to the new set; their existing grants keep what they consented to). Returns the new
    /// version.
    fn update_product_permissions(&self, id: &str, permissions: u32) -> BoxFuture<'_, Result<u64>>;

    fn insert_code(&self, code: CodeRecord) -> BoxFuture<'_, Result<()>>;
    /// Exchanges a code exactly once: inserts `token` and marks the code used in one
    /// transaction. `Ok(Ok(code))` on success; `NotFound` when there is no such code;
    /// `Ok(Err(code))` when the code was already used: then the token its first use produced
    /// is revoked in the same transaction (a replayed code means it leaked), and an error
    /// leaves both the code and that token as they were.
    fn exchange_code(
        &self,
        hash: &[u8; 32],
        token: TokenRecord,
    ) -> BoxFuture<'_, Result<std::result::Result<CodeRecord, CodeRecord>>>;
    fn code(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<CodeRecord>>>;

    /// The revision an idempotency key produced, if it was used (keys are kept for a day).
    fn idempotency(&self, key: &IdempotencyKey) -> BoxFuture<'_, Result<Option<u64>>>;
    /// Records a key whose request changed nothing (no commit carried it).
    fn remember_idempotency(&self, key: IdempotencyKey, revision: u64) -> BoxFuture<'_, Result<()>>;

    fn insert_session(&self, session: Session) -> BoxFuture<'_, Result<()>>;
    fn session(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<Session>>>;
    fn delete_session(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<()>>;
}
