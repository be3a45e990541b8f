//! The tables and the versioned migrations that create them. Every node applies what is
//! missing at start, under an advisory lock, so nodes starting together do not race: the
//! first applies, the others wait and then find nothing left to do.

use deadpool_postgres::Object;

use super::backend;
use crate::Result;

/// Any constant works; this one spells "Roost". Held only while migrating.
const MIGRATION_LOCK: i64 = 0x0052_6f6f_7374;

/// Schema versions, applied in order, each in its own transaction. Never edit a released one:
/// add the next.
const MIGRATIONS: &[(i32, &str)] = &[(1, V1), (2, V2), (3, V3), (4, V4), (5, V5)];

/// Brings the database to the newest schema version.
pub(super) async fn migrate(client: &mut Object) -> Result<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(backend)?;
    let outcome = apply(client).await;
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.map_err(backend);
    outcome.and(unlocked.map(|_| ()))
}

async fn apply(client: &mut Object) -> Result<()> {
    let exists: bool = client
        .query_one("SELECT to_regclass('roost_schema') IS NOT NULL", &[])
        .await
        .map_err(backend)?
        .get(0);
    if !exists {
        client
            .batch_execute(
                "CREATE TABLE roost_schema(
                     version INTEGER PRIMARY KEY,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(backend)?;
    }
    let current: i32 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM roost_schema", &[])
        .await
        .map_err(backend)?
        .get(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = client.transaction().await.map_err(backend)?;
        tx.batch_execute(sql).await.map_err(backend)?;
        tx.execute("INSERT INTO roost_schema(version) VALUES ($1)", &[version]).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        tracing::info!(version, "database schema migrated");
    }
    client.batch_execute(COMMIT_FUNCTION).await.map_err(backend)?;
    Ok(())
}

/// Documents and change-log entries are JSON text: the database never looks inside them,
/// and text skips jsonb's parse on every write.
///
/// `changes.xid` is the writing transaction's id. Commits become visible out of id order, so
/// a node following the log reads by transaction id up to the oldest one still running (see
/// `changed_since`), never "every entry above the last one seen".
const V1: &str = "
CREATE TABLE users(
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    created_at TEXT NOT NULL
);
-- The whole document as of doc_revision (a checkpoint, rewritten every few revisions); the
-- revisions after it are merge patches in changes.
CREATE TABLE structures(
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES users(id),
    revision BIGINT NOT NULL,
    doc_revision BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX structures_owner ON structures(owner);
CREATE TABLE changes(
    structure_id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    xid XID8 NOT NULL DEFAULT pg_current_xact_id(),
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    paths TEXT NOT NULL,
    patch TEXT NOT NULL,
    inverse TEXT NOT NULL,
    PRIMARY KEY(structure_id, revision)
);
CREATE INDEX changes_xid ON changes(xid);
CREATE TABLE tokens(
    hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    product_id TEXT,
    permissions BIGINT NOT NULL,
    structures TEXT NOT NULL,
    client_version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    label TEXT NOT NULL,
    device_id TEXT,
    -- The revoking transaction (NULL while the token is live); nodes follow it as they
    -- follow changes.xid.
    revoked_xid XID8
);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE INDEX tokens_device ON tokens(device_id);
CREATE INDEX tokens_revoked ON tokens(revoked_xid);
CREATE TABLE products(
    id TEXT PRIMARY KEY,
    owner TEXT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    secret_hash TEXT,
    redirect_uris TEXT NOT NULL,
    permissions BIGINT NOT NULL,
    client_version BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE codes(
    hash BYTEA PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    permissions BIGINT NOT NULL,
    structures TEXT NOT NULL,
    client_version BIGINT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT,
    expires_at BIGINT NOT NULL,
    token_hash BYTEA
);
CREATE TABLE idempotency(
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY(scope, key)
);
CREATE INDEX idempotency_age ON idempotency(created_at);
CREATE TABLE sessions(
    hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

";

/// When each home next has a timed change due, for the clock (`due_structures`).
const V2: &str = "
ALTER TABLE structures ADD COLUMN due_at BIGINT;
CREATE INDEX structures_due ON structures(due_at) WHERE due_at IS NOT NULL;
-- The commit function of the first schema took eleven arguments; today's is COMMIT_FUNCTION.
DROP FUNCTION IF EXISTS roost_commit(TEXT, BIGINT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT);
";

/// Counts under limits shared between nodes (`share_counts`): each node writes its own rows,
/// and reads the others'. `nodes` says which node was last heard from when, so the open
/// streams of a node that died stop counting.
const V3: &str = "
CREATE TABLE limit_counts(
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    node TEXT NOT NULL,
    count BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY(key, window_start, node)
);
CREATE INDEX limit_counts_expiry ON limit_counts(expires_at);
CREATE TABLE nodes(
    node TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
";

/// One-time tasks over the data (`upkeep_pending`): due times for homes stored before they
/// were recorded, only if there are such homes; a database created since has none.
const V4: &str = "
CREATE TABLE upkeep(task TEXT PRIMARY KEY);
INSERT INTO upkeep(task) SELECT 'record-due-times' WHERE EXISTS (SELECT 1 FROM structures WHERE due_at IS NULL);
";

/// The commit function of schemas 2–4 took one commit; today's takes arrays (COMMIT_FUNCTION).
const V5: &str = "
DROP FUNCTION IF EXISTS roost_commit(TEXT, BIGINT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT);
";

/// Commits in one statement (one round trip, one transaction): for each, in the order given,
/// the compare-and-set on the revision, the change-log entry, the checkpoint when there is
/// one, when the home is next due, the idempotency key, trimming the log; one answer row
/// each. The group committer sends a batch sorted by structure id, so row locks are taken in
/// one order on every node. A used key raises R0001 (its earlier revision in DETAIL) so that
/// nothing of the statement stays: keyed commits come alone. Code, not data: (re)created at
/// every start after the migrations, so it is always the one this build calls.
const COMMIT_FUNCTION: &str = "
CREATE OR REPLACE FUNCTION roost_commit(
    p_ids TEXT[], p_bases BIGINT[], p_docs TEXT[], p_ats TEXT[], p_actors TEXT[], p_paths TEXT[],
    p_patches TEXT[], p_inverses TEXT[], p_scopes TEXT[], p_keys TEXT[], p_keep BIGINT, p_dues BIGINT[]
) RETURNS TABLE(outcome TEXT, rev BIGINT) LANGUAGE plpgsql AS $$
DECLARE
    new_rev BIGINT;
    doc_rev BIGINT;
    cur BIGINT;
    earlier BIGINT;
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_ids, 1), 0) LOOP
        new_rev := p_bases[i] + 1;
        UPDATE structures s
           SET revision = new_rev,
               doc_revision = CASE WHEN p_docs[i] IS NULL THEN s.doc_revision ELSE new_rev END,
               doc = COALESCE(p_docs[i], s.doc),
               due_at = p_dues[i]
         WHERE s.id = p_ids[i] AND s.revision = p_bases[i]
        RETURNING s.doc_revision INTO doc_rev;
        IF NOT FOUND THEN
            cur := NULL;
            SELECT s.revision INTO cur FROM structures s WHERE s.id = p_ids[i];
            outcome := CASE WHEN cur IS NULL THEN 'missing' ELSE 'conflict' END;
            rev := COALESCE(cur, 0);
            RETURN NEXT;
            CONTINUE;
        END IF;
        INSERT INTO changes(structure_id, revision, at, actor, paths, patch, inverse)
            VALUES (p_ids[i], new_rev, p_ats[i], p_actors[i], p_paths[i], p_patches[i], p_inverses[i]);
        IF p_keys[i] IS NOT NULL THEN
            INSERT INTO idempotency(scope, key, revision, created_at)
                VALUES (p_scopes[i], p_keys[i], new_rev, extract(epoch FROM now())::BIGINT)
                ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                SELECT x.revision INTO earlier FROM idempotency x WHERE x.scope = p_scopes[i] AND x.key = p_keys[i];
                RAISE EXCEPTION 'idempotency key already used' USING ERRCODE = 'R0001', DETAIL = earlier::TEXT;
            END IF;
            IF new_rev % 64 = 0 THEN
                DELETE FROM idempotency WHERE created_at < extract(epoch FROM now())::BIGINT - 86400;
            END IF;
        END IF;
        -- Keep the window, and always every patch after the checkpoint.
        IF new_rev > p_keep AND new_rev % 16 = 0 THEN
            DELETE FROM changes c WHERE c.structure_id = p_ids[i] AND c.revision <= LEAST(new_rev - p_keep, doc_rev);
        END IF;
        outcome := 'ok';
        rev := new_rev;
        RETURN NEXT;
    END LOOP;
END
$$;
";
