//! Structures and their change log on PostgreSQL: documents checkpointed every few revisions
//! with merge patches between (as the embedded store), commits through `roost_commit`, and
//! the feed other nodes follow.
//!
//! The feed (`changed_since`, `revoked_since`) is ordered by transaction id, not by a
//! sequence: ids and sequence values are taken before commit and become visible out of
//! order, so "everything above the last one seen" would pass over a commit that lands late.
//! The position handed back is the oldest transaction still running when the feed was read
//! (`pg_snapshot_xmin`): every transaction below it has finished, so nothing below it can
//! appear later. Entries at or above it that were already visible are handed out again next
//! time; the hub loads a structure only when its revision is newer, so a repeat costs a
//! lookup, never a wrong state. A transaction left open for long holds the position back and
//! makes each read longer, not wrong.

use serde_json::Value;
use tokio_postgres::Row;

use super::{PgStore, backend, unique_violation};
use crate::{Change, ChangedSince, Commit, IdempotencyKey, Result, StoreError, StoredStructure};

/// The structure's columns, with the patches after its checkpoint read in the same
/// statement (one snapshot: the row and the log agree).
const STRUCTURE_SELECT: &str = "SELECT s.id, s.owner, s.revision, s.doc,
    ARRAY(SELECT c.patch FROM changes c
          WHERE c.structure_id = s.id AND c.revision > s.doc_revision AND c.revision <= s.revision
          ORDER BY c.revision)
  FROM structures s";

/// A structure row made current: its checkpoint with the later patches applied.
fn to_structure(row: &Row) -> StoredStructure {
    let doc: String = row.get(3);
    let mut doc: Value = serde_json::from_str(&doc).unwrap_or(Value::Null);
    for patch in row.get::<_, Vec<String>>(4) {
        let patch: Value = serde_json::from_str(&patch).unwrap_or(Value::Null);
        roost_model::diff::json_merge(&mut doc, &patch);
    }
    StoredStructure { id: row.get(0), owner: row.get(1), revision: row.get::<_, i64>(2) as u64, doc }
}

/// The feed's position as the database spells a transaction id.
fn position(seq: u64) -> String {
    seq.to_string()
}

fn parse_position(text: &str) -> Result<u64> {
    text.parse().map_err(|_| backend(format!("unexpected transaction id {text:?}")))
}

/// Commits as `roost_commit` takes them: column by column, in one statement.
pub(super) const COMMIT_SQL: &str =
    "SELECT outcome, rev FROM roost_commit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// Commits, column by column, as [`COMMIT_SQL`] takes them.
pub(super) struct CommitArrays<'a> {
    ids: Vec<&'a str>,
    bases: Vec<i64>,
    docs: Vec<Option<&'a str>>,
    ats: Vec<&'a str>,
    actors: Vec<&'a str>,
    paths: Vec<&'a str>,
    patches: Vec<&'a str>,
    inverses: Vec<&'a str>,
    scopes: Vec<Option<&'a str>>,
    keys: Vec<Option<&'a str>>,
    keep: i64,
    dues: Vec<Option<i64>>,
}

impl<'a> CommitArrays<'a> {
    pub(super) fn of(rows: &[&'a CommitRow]) -> CommitArrays<'a> {
        CommitArrays {
            ids: rows.iter().map(|r| r.structure_id.as_str()).collect(),
            bases: rows.iter().map(|r| r.base).collect(),
            docs: rows.iter().map(|r| r.doc.as_deref()).collect(),
            ats: rows.iter().map(|r| r.at.as_str()).collect(),
            actors: rows.iter().map(|r| r.actor.as_str()).collect(),
            paths: rows.iter().map(|r| r.paths.as_str()).collect(),
            patches: rows.iter().map(|r| r.patch.as_str()).collect(),
            inverses: rows.iter().map(|r| r.inverse.as_str()).collect(),
            scopes: rows.iter().map(|r| r.scope.as_deref()).collect(),
            keys: rows.iter().map(|r| r.key.as_deref()).collect(),
            keep: rows.first().map(|r| r.keep).unwrap_or(1),
            dues: rows.iter().map(|r| r.due_at).collect(),
        }
    }

    pub(super) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 12] {
        [
            &self.ids,
            &self.bases,
            &self.docs,
            &self.ats,
            &self.actors,
            &self.paths,
            &self.patches,
            &self.inverses,
            &self.scopes,
            &self.keys,
            &self.keep,
            &self.dues,
        ]
    }
}

/// A commit's parameters, made (serialized) on the caller's task.
pub(super) struct CommitRow {
    pub(super) structure_id: String,
    base: i64,
    doc: Option<String>,
    at: String,
    actor: String,
    paths: String,
    patch: String,
    inverse: String,
    scope: Option<String>,
    pub(super) key: Option<String>,
    keep: i64,
    due_at: Option<i64>,
}

impl CommitRow {
    fn of(commit: Commit, options: &super::PgOptions) -> CommitRow {
        let Commit { structure_id, base_revision, doc, change, idempotency, due_at } = commit;
        let every = options.checkpoint_every.max(1);
        let new_revision = base_revision + 1;
        let checkpoint = (new_revision + crate::stagger(&structure_id) % every).is_multiple_of(every);
        let (scope, key) = match idempotency {
            Some(k) => (Some(k.scope), Some(k.key)),
            None => (None, None),
        };
        CommitRow {
            base: base_revision as i64,
            doc: checkpoint.then(doc),
            paths: serde_json::to_string(&change.paths).unwrap_or_default(),
            patch: roost_model::json_text(&change.patch),
            inverse: roost_model::json_text(&change.inverse),
            at: change.at,
            actor: change.actor,
            structure_id,
            scope,
            key,
            keep: options.changelog_keep.max(1) as i64,
            due_at,
        }
    }

    /// What `roost_commit` answered for this commit, as the trait says it.
    pub(super) fn outcome(&self, row: std::result::Result<Row, tokio_postgres::Error>) -> Result<u64> {
        let row = row.map_err(|e| match e.as_db_error() {
            Some(db) if db.code().code() == "R0001" => {
                StoreError::Duplicate { revision: db.detail().and_then(|d| d.parse().ok()).unwrap_or(0) }
            }
            _ => backend(e),
        })?;
        let (outcome, revision): (String, i64) = (row.get(0), row.get(1));
        match outcome.as_str() {
            "ok" => Ok(revision as u64),
            "conflict" => Err(StoreError::Conflict {
                structure_id: self.structure_id.clone(),
                current: revision as u64,
            }),
            _ => Err(StoreError::NotFound(self.structure_id.clone())),
        }
    }
}

impl PgStore {
    pub(super) async fn create_structure(&self, owner: &str, id: &str, doc: &Value, at: &str) -> Result<u64> {
        let text = roost_model::json_text(doc);
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "WITH s AS (INSERT INTO structures(id, owner, revision, doc_revision, doc)
                            VALUES ($1, $2, 1, 1, $3) RETURNING id)
                 INSERT INTO changes(structure_id, revision, at, actor, paths, patch, inverse)
                 SELECT id, 1, $4, 'admin', '[\"/\"]', $3, 'null' FROM s",
            )
            .await
            .map_err(backend)?;
        client.execute(&st, &[&id, &owner, &text, &at]).await.map_err(|e| {
            if unique_violation(&e) { StoreError::AlreadyExists(id.to_string()) } else { backend(e) }
        })?;
        Ok(1)
    }

    pub(super) async fn structure(&self, id: &str) -> Result<Option<StoredStructure>> {
        let client = self.client().await?;
        let st =
            client.prepare_cached(&format!("{STRUCTURE_SELECT} WHERE s.id = $1")).await.map_err(backend)?;
        Ok(client.query_opt(&st, &[&id]).await.map_err(backend)?.as_ref().map(to_structure))
    }

    pub(super) async fn revision(&self, id: &str) -> Result<Option<u64>> {
        let client = self.client().await?;
        let st =
            client.prepare_cached("SELECT revision FROM structures WHERE id = $1").await.map_err(backend)?;
        Ok(client.query_opt(&st, &[&id]).await.map_err(backend)?.map(|r| r.get::<_, i64>(0) as u64))
    }

    pub(super) async fn all_structures(&self) -> Result<Vec<StoredStructure>> {
        let client = self.client().await?;
        let rows = client.query(&format!("{STRUCTURE_SELECT} ORDER BY s.id"), &[]).await.map_err(backend)?;
        Ok(rows.iter().map(to_structure).collect())
    }

    pub(super) async fn structure_ids(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = client.query("SELECT id FROM structures ORDER BY id", &[]).await.map_err(backend)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn structures_between(
        &self,
        first: &str,
        last: &str,
        mut each: Box<dyn FnMut(StoredStructure) + Send>,
    ) -> Result<()> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!("{STRUCTURE_SELECT} WHERE s.id >= $1 AND s.id <= $2 ORDER BY s.id"))
            .await
            .map_err(backend)?;
        for row in client.query(&st, &[&first, &last]).await.map_err(backend)? {
            each(to_structure(&row));
        }
        Ok(())
    }

    pub(super) async fn due_structures(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "SELECT id FROM structures WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at LIMIT $2",
            )
            .await
            .map_err(backend)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(client.query(&st, &[&now, &limit]).await.map_err(backend)?.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn record_due(&self, entries: Vec<(String, u64, i64)>) -> Result<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let st = tx
            .prepare_cached(
                "UPDATE structures SET due_at = $3 WHERE id = $1 AND revision = $2 AND due_at IS NULL",
            )
            .await
            .map_err(backend)?;
        let mut recorded = 0;
        for (id, revision, due_at) in &entries {
            recorded += tx.execute(&st, &[id, &(*revision as i64), due_at]).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(recorded as usize)
    }

    pub(super) async fn structures_of(&self, user_id: &str) -> Result<Vec<String>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT id FROM structures WHERE owner = $1 ORDER BY id")
            .await
            .map_err(backend)?;
        Ok(client.query(&st, &[&user_id]).await.map_err(backend)?.iter().map(|r| r.get(0)).collect())
    }

    /// A commit: alone when it carries an idempotency key (a used key aborts its transaction),
    /// otherwise through the group committer, which puts the commits waiting at once into one
    /// transaction.
    pub(super) async fn commit(&self, commit: Commit) -> Result<u64> {
        let row = CommitRow::of(commit, &self.options);
        if row.key.is_some() {
            let client = self.client().await?;
            let st = client.prepare_cached(COMMIT_SQL).await.map_err(backend)?;
            let result = client.query_one(&st, &CommitArrays::of(&[&row]).params()).await;
            return row.outcome(result);
        }
        self.group_commit(row).await
    }

    pub(super) async fn changes_after(
        &self,
        structure_id: &str,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<Change>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "SELECT structure_id, revision, at, actor, paths, patch, inverse FROM changes
                 WHERE structure_id = $1 AND revision > $2 ORDER BY revision LIMIT $3",
            )
            .await
            .map_err(backend)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client.query(&st, &[&structure_id, &(revision as i64), &limit]).await.map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| Change {
                structure_id: r.get(0),
                revision: r.get::<_, i64>(1) as u64,
                at: r.get(2),
                actor: r.get(3),
                paths: serde_json::from_str(r.get(4)).unwrap_or_default(),
                patch: serde_json::from_str(r.get(5)).unwrap_or(Value::Null),
                inverse: serde_json::from_str(r.get(6)).unwrap_or(Value::Null),
            })
            .collect())
    }

    pub(super) async fn oldest_change(&self, structure_id: &str) -> Result<Option<u64>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT MIN(revision) FROM changes WHERE structure_id = $1")
            .await
            .map_err(backend)?;
        let row = client.query_one(&st, &[&structure_id]).await.map_err(backend)?;
        Ok(row.get::<_, Option<i64>>(0).map(|v| v as u64))
    }

    pub(super) async fn changed_since(&self, seq: u64) -> Result<ChangedSince> {
        let client = self.client().await?;
        // One statement, one snapshot: the position and the entries agree.
        let st = client
            .prepare_cached(
                "WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::TEXT AS x)
                 SELECT c.structure_id, MAX(c.revision), NULL FROM changes c
                  WHERE c.xid >= $1::TEXT::XID8 GROUP BY c.structure_id
                 UNION ALL SELECT NULL, NULL, x FROM snap",
            )
            .await
            .map_err(backend)?;
        let mut changed = Vec::new();
        let mut next = seq;
        for row in client.query(&st, &[&position(seq)]).await.map_err(backend)? {
            match row.get::<_, Option<String>>(2) {
                Some(x) => next = parse_position(&x)?.max(seq),
                None => changed.push((row.get(0), row.get::<_, i64>(1) as u64)),
            }
        }
        Ok((changed, next))
    }

    pub(super) async fn feed_head(&self) -> Result<u64> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT pg_snapshot_xmin(pg_current_snapshot())::TEXT")
            .await
            .map_err(backend)?;
        let row = client.query_one(&st, &[]).await.map_err(backend)?;
        parse_position(row.get(0))
    }

    pub(super) async fn idempotency(&self, key: &IdempotencyKey) -> Result<Option<u64>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT revision FROM idempotency WHERE scope = $1 AND key = $2")
            .await
            .map_err(backend)?;
        let row = client.query_opt(&st, &[&key.scope, &key.key]).await.map_err(backend)?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    pub(super) async fn remember_idempotency(&self, key: IdempotencyKey, revision: u64) -> Result<()> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "INSERT INTO idempotency(scope, key, revision, created_at)
                 VALUES ($1, $2, $3, extract(epoch FROM now())::BIGINT) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(backend)?;
        client.execute(&st, &[&key.scope, &key.key, &(revision as i64)]).await.map_err(backend)?;
        Ok(())
    }

    /// The feed of revocations: see the module's note on positions.
    pub(super) async fn revoked_since(&self, seq: u64) -> Result<(Vec<[u8; 32]>, u64)> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::TEXT AS x)
                 SELECT hash, NULL FROM tokens WHERE revoked_xid >= $1::TEXT::XID8
                 UNION ALL SELECT NULL, x FROM snap",
            )
            .await
            .map_err(backend)?;
        let mut revoked = Vec::new();
        let mut next = seq;
        for row in client.query(&st, &[&position(seq)]).await.map_err(backend)? {
            match row.get::<_, Option<String>>(1) {
                Some(x) => next = parse_position(&x)?.max(seq),
                None => revoked.push(super::accounts::to_hash(row.get(0))),
            }
        }
        Ok((revoked, next))
    }
}
