//! Structures and their change log: documents checkpointed every few revisions with merge
//! patches between, the log chained per structure with indexed anchors, commits as a
//! compare-and-set on the revision, and idempotency keys recorded with their commit.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::{SqliteStore, backend, unique_violation};
use crate::{BoxFuture, Change, ChangedSince, Commit, IdempotencyKey, Result, StoreError, StoredStructure};

pub(super) const STRUCTURE_COLUMNS: &str = "s.id, s.owner, s.revision, d.doc, s.doc_revision, s.last_seq";
pub(super) const STRUCTURE_FROM: &str = "structures s JOIN docs d ON d.structure_id = s.id";

/// A structure row, with the revision of its checkpointed document and the head of its log.
pub(super) struct StructureRow {
    structure: StoredStructure,
    doc_revision: u64,
    last_seq: Option<i64>,
}

pub(super) fn row_to_structure(row: &rusqlite::Row<'_>) -> rusqlite::Result<StructureRow> {
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
pub(super) const ANCHOR_EVERY: u64 = 16;

/// The seq of the structure's first anchor at or after `revision` (`None` past the last).
pub(super) fn anchor_at_or_after(
    c: &Connection,
    structure_id: &str,
    revision: u64,
) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(
        "SELECT seq FROM changes WHERE structure_id = ?1 AND revision % 16 = 0 AND revision >= ?2
         ORDER BY revision LIMIT 1",
    )?
    .query_row(params![structure_id, revision as i64], |r| r.get(0))
    .optional()
}

/// The oldest revision left in a structure's log: its first anchor's chain walked to the end
/// (at most 15 links), or the whole chain of a structure younger than one anchor.
pub(super) fn oldest_revision(
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
pub(super) fn rebuild(c: &Connection, row: StructureRow) -> rusqlite::Result<StoredStructure> {
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

/// How long idempotency keys are kept.
pub(super) const IDEMPOTENCY_KEEP_SECS: i64 = 24 * 3600;

/// Records a key; `Some(revision)` of the earlier use when it was already recorded. Now and
/// then drops keys older than a day.
pub(super) fn record_idempotency(
    conn: &Connection,
    key: &IdempotencyKey,
    revision: u64,
) -> Result<Option<u64>> {
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

impl SqliteStore {
    pub(super) fn create_structure(
        &self,
        owner: &str,
        id: &str,
        doc: Value,
        at: &str,
    ) -> BoxFuture<'_, Result<u64>> {
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

    pub(super) fn structure(&self, id: &str) -> BoxFuture<'_, Result<Option<StoredStructure>>> {
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

    pub(super) fn revision(&self, id: &str) -> BoxFuture<'_, Result<Option<u64>>> {
        let id = id.to_string();
        let r = self.read(move |c| {
            c.prepare_cached("SELECT revision FROM structures WHERE id = ?1")?
                .query_row([id], |r| r.get::<_, i64>(0))
                .optional()
        });
        Box::pin(async move { r.await.map(|o| o.map(|v| v as u64)) })
    }

    pub(super) fn all_structures(&self) -> BoxFuture<'_, Result<Vec<StoredStructure>>> {
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

    pub(super) fn structure_ids(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        let r = self.read(move |c| {
            let mut st = c.prepare_cached("SELECT id FROM structures ORDER BY id")?;
            st.query_map([], |r| r.get(0))?.collect()
        });
        Box::pin(r)
    }

    pub(super) fn structures_between(
        &self,
        first: &str,
        last: &str,
        mut each: Box<dyn FnMut(StoredStructure) + Send>,
    ) -> BoxFuture<'_, Result<()>> {
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
            for row in rows {
                each(rebuild(&tx, row)?);
            }
            Ok(())
        });
        Box::pin(r)
    }

    pub(super) fn due_structures(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<Vec<String>>> {
        let r = self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id FROM structures WHERE due_at IS NOT NULL AND due_at <= ?1 ORDER BY due_at LIMIT ?2",
            )?;
            st.query_map(params![now, limit as i64], |r| r.get(0))?.collect()
        });
        Box::pin(r)
    }

    pub(super) fn record_due(&self, entries: Vec<(String, u64, i64)>) -> BoxFuture<'_, Result<usize>> {
        Box::pin(self.write(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "UPDATE structures SET due_at = ?3 WHERE id = ?1 AND revision = ?2 AND due_at IS NULL",
                )
                .map_err(backend)?;
            let mut recorded = 0;
            for (id, revision, due_at) in &entries {
                recorded += st.execute(params![id, *revision as i64, due_at]).map_err(backend)?;
            }
            Ok(recorded)
        }))
    }

    pub(super) fn upkeep_pending(&self, task: &str) -> BoxFuture<'_, Result<bool>> {
        let task = task.to_string();
        let r = self.read(move |c| {
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM upkeep WHERE task = ?1)")?
                .query_row([task], |r| r.get(0))
        });
        Box::pin(r)
    }

    pub(super) fn upkeep_done(&self, task: &str) -> BoxFuture<'_, Result<()>> {
        let task = task.to_string();
        Box::pin(self.write(move |conn| {
            conn.execute("DELETE FROM upkeep WHERE task = ?1", [task]).map_err(backend)?;
            Ok(())
        }))
    }

    pub(super) fn structures_of(&self, user_id: &str) -> BoxFuture<'_, Result<Vec<String>>> {
        let user_id = user_id.to_string();
        let r = self.read(move |c| {
            let mut st = c.prepare_cached("SELECT id FROM structures WHERE owner = ?1 ORDER BY id")?;
            st.query_map([user_id], |r| r.get(0))?.collect()
        });
        Box::pin(r)
    }

    pub(super) fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<u64>> {
        let keep = self.options.changelog_keep.max(1);
        let every = self.options.checkpoint_every.max(1);
        // Serialized here, on the caller's task: the writer thread is the one serial step.
        let Commit { structure_id, base_revision, doc, change, idempotency, due_at } = commit;
        let paths = serde_json::to_string(&change.paths).unwrap_or_default();
        let patch = roost_model::json_text(&change.patch);
        let inverse = roost_model::json_text(&change.inverse);
        let (at, actor) = (change.at, change.actor);
        drop((change.patch, change.inverse));
        let new_revision = base_revision + 1;
        let checkpoint = (new_revision + crate::stagger(&structure_id) % every).is_multiple_of(every);
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
                "UPDATE structures SET revision = ?1, last_seq = last_insert_rowid(), doc_revision = ?1, due_at = ?3 WHERE id = ?2"
            } else {
                "UPDATE structures SET revision = ?1, last_seq = last_insert_rowid(), due_at = ?3 WHERE id = ?2"
            };
            conn.prepare_cached(update)
                .and_then(|mut st| st.execute(params![new_revision as i64, structure_id, due_at]))
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

    pub(super) fn changes_after(
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

    pub(super) fn oldest_change(&self, structure_id: &str) -> BoxFuture<'_, Result<Option<u64>>> {
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

    pub(super) fn changed_since(&self, seq: u64) -> BoxFuture<'_, Result<ChangedSince>> {
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

    pub(super) fn feed_head(&self) -> BoxFuture<'_, Result<u64>> {
        let r = self.read(|c| {
            c.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM changes")?
                .query_row([], |r| r.get::<_, i64>(0))
        });
        Box::pin(async move { r.await.map(|v| v as u64) })
    }

    pub(super) fn idempotency(&self, key: &IdempotencyKey) -> BoxFuture<'_, Result<Option<u64>>> {
        let key = key.clone();
        let r = self.read(move |c| {
            c.prepare_cached("SELECT revision FROM idempotency WHERE scope = ?1 AND key = ?2")?
                .query_row(params![key.scope, key.key], |r| r.get::<_, i64>(0))
                .optional()
        });
        Box::pin(async move { r.await.map(|o| o.map(|v| v as u64)) })
    }

    pub(super) fn remember_idempotency(
        &self,
        key: IdempotencyKey,
        revision: u64,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| record_idempotency(conn, &key, revision).map(|_| ())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The anchor spacing is spelled out in SQL (a partial index is used only when a query
    /// repeats its condition word for word); every spelling must be the constant's.
    #[test]
    fn every_anchor_condition_uses_the_same_spacing() {
        // The index (schema.rs) and the queries that use it (here).
        let source = concat!(include_str!("schema.rs"), include_str!("changelog.rs"));
        let spacings: Vec<&str> = source
            .match_indices("revision % ")
            .map(|(i, m)| &source[i + m.len()..])
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
            .collect();
        assert!(spacings.len() >= 4, "{spacings:?}");
        assert!(spacings.iter().all(|s| *s == ANCHOR_EVERY.to_string()), "{spacings:?} vs {ANCHOR_EVERY}");
    }
}
