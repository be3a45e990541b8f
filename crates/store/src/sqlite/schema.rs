//! The tables, opening a connection (WAL, `synchronous=FULL`), and the migrations that bring
//! a data dir made by an earlier release to today's form.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::backend;
use crate::Result;

pub(super) fn open(path: &Path) -> Result<Connection> {
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

pub(super) fn has_table(conn: &Connection, table: &str) -> Result<bool> {
    conn.query_row("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1", [table], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n > 0)
    .map_err(backend)
}

pub(super) fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    conn.query_row("SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2", [table, column], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n > 0)
    .map_err(backend)
}

/// Whether the change log still has its first form: clustered by structure, so each write
/// of a batch dirtied a page of its own (data dirs created before the log was in commit order).
pub(super) fn change_log_by_structure(conn: &Connection) -> Result<bool> {
    Ok(has_table(conn, "changes")? && !has_column(conn, "changes", "seq")?)
}

/// Columns and tables changed after the first release, for data dirs created before them.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
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
    if !has_column(conn, "structures", "due_at")? {
        conn.execute_batch(
            "ALTER TABLE structures ADD COLUMN due_at INTEGER;
             CREATE INDEX IF NOT EXISTS structures_due ON structures(due_at) WHERE due_at IS NOT NULL;",
        )
        .map_err(backend)?;
    }
    if !has_table(conn, "upkeep")? {
        // One-time tasks over the data (`Store::upkeep_pending`): due times for homes stored
        // before they were recorded, only if there are such homes.
        conn.execute_batch(
            "CREATE TABLE upkeep(task TEXT PRIMARY KEY);
             INSERT INTO upkeep(task) SELECT 'record-due-times'
                 WHERE EXISTS (SELECT 1 FROM structures WHERE due_at IS NULL);",
        )
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

pub(super) const SCHEMA: &str = "
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
