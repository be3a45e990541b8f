//! Counts under limits, shared between nodes: every node upserts its own rows (absolute
//! counts, so a retry changes nothing) and sums the other nodes' rows for the keys it follows.

use super::{PgStore, backend};
use crate::{CountExchange, Result, SharedCount};

/// Rows past their end are swept about once in this many exchanges.
const SWEEP_EVERY: u64 = 64;

impl PgStore {
    pub(super) async fn share_counts(&self, x: CountExchange) -> Result<Vec<SharedCount>> {
        let client = self.client().await?;
        let node = self.node.as_str();
        client
            .execute(
                "INSERT INTO nodes(node, seen_at) VALUES ($1, $2)
                 ON CONFLICT (node) DO UPDATE SET seen_at = EXCLUDED.seen_at",
                &[&node, &x.now_ms],
            )
            .await
            .map_err(backend)?;
        if !x.mine.is_empty() {
            let keys: Vec<&str> = x.mine.iter().map(|(c, _)| c.key.as_str()).collect();
            let starts: Vec<i64> = x.mine.iter().map(|(c, _)| c.window_start).collect();
            let counts: Vec<i64> = x.mine.iter().map(|(c, _)| c.count.min(i64::MAX as u64) as i64).collect();
            let ends: Vec<i64> = x.mine.iter().map(|(_, end)| *end).collect();
            client
                .execute(
                    "INSERT INTO limit_counts(key, window_start, node, count, expires_at)
                     SELECT k, w, $1, c, e FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS m(k, w, c, e)
                     ON CONFLICT (key, window_start, node)
                     DO UPDATE SET count = EXCLUDED.count, expires_at = EXCLUDED.expires_at",
                    &[&node, &keys, &starts, &counts, &ends],
                )
                .await
                .map_err(backend)?;
        }
        if self.exchanges.fetch_add(1, std::sync::atomic::Ordering::Relaxed).is_multiple_of(SWEEP_EVERY) {
            // Ended windows, and every row of a node gone for an hour.
            client
                .batch_execute(&format!(
                    "DELETE FROM limit_counts WHERE expires_at < {now};
                     DELETE FROM limit_counts c USING nodes n
                      WHERE c.node = n.node AND n.seen_at < {gone};
                     DELETE FROM nodes WHERE seen_at < {gone};",
                    now = x.now_ms,
                    gone = x.now_ms - 3_600_000
                ))
                .await
                .map_err(backend)?;
        }
        if x.ask.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = x.ask.iter().map(|(k, _)| k.as_str()).collect();
        let starts: Vec<i64> = x.ask.iter().map(|(_, w)| *w).collect();
        let rows = client
            .query(
                "SELECT c.key, c.window_start, SUM(c.count)::BIGINT
                   FROM unnest($2::text[], $3::bigint[]) AS a(key, window_start)
                   JOIN limit_counts c ON c.key = a.key AND c.window_start = a.window_start
                   JOIN nodes n ON n.node = c.node
                  WHERE c.node <> $1 AND c.expires_at > $4
                    AND (c.window_start > 0 OR n.seen_at > $4 - $5)
                  GROUP BY c.key, c.window_start",
                &[&node, &keys, &starts, &x.now_ms, &x.alive_ms],
            )
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| SharedCount {
                key: r.get(0),
                window_start: r.get(1),
                count: r.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }
}
