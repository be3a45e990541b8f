//! Runs the conformance suite against every backend, and checks durability across reopen.
// Helpers shared by the tests below panic on failure, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use roost_store::{PgOptions, PgStore, SqliteStore, Store, StoreOptions};
use serde_json::json;

/// A fresh SQLite store with checkpoints every `every` revisions, its change log window,
/// and the directory it lives in.
fn sqlite(every: u64) -> (Arc<SqliteStore>, u64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { changelog_keep: 20, readers: 2, checkpoint_every: every };
    let store = SqliteStore::open(&dir.path().join("roost.db"), options).unwrap();
    (store, 20, dir)
}

/// The suite with the default spacing of whole documents in the log, and with the extremes.
mod sqlite_every_8 {
    async fn open() -> (std::sync::Arc<roost_store::SqliteStore>, u64, tempfile::TempDir) {
        super::sqlite(8)
    }
    roost_store::conformance_tests!(open);
}

mod sqlite_every_1 {
    async fn open() -> (std::sync::Arc<roost_store::SqliteStore>, u64, tempfile::TempDir) {
        super::sqlite(1)
    }
    roost_store::conformance_tests!(open);
}

mod sqlite_every_1000 {
    async fn open() -> (std::sync::Arc<roost_store::SqliteStore>, u64, tempfile::TempDir) {
        super::sqlite(1000)
    }
    roost_store::conformance_tests!(open);
}

/// The PostgreSQL server the tests use: `ROOST_TEST_PG`, a connection string to a database
/// the user may create databases from (`scripts/test` starts a server and sets it).
fn test_server() -> String {
    std::env::var("ROOST_TEST_PG").unwrap_or_else(|_| {
        panic!("ROOST_TEST_PG is not set: run scripts/test, which starts PostgreSQL for the tests")
    })
}

/// The PostgreSQL suite runs one test at a time: the feed's position is the oldest
/// transaction running in the whole server, so another test's transaction in flight would
/// hold it back and make the feed's "moves forward" check depend on timing.
static PG_ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh database on the test server (dropped at the end of the test run, with the server).
async fn fresh_database() -> String {
    let server = test_server();
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let name = format!("roost_test_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let mut config: tokio_postgres::Config = server.parse().unwrap();
    config.dbname(&name);
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    format!(
        "host={host} port={} user={} dbname={name}",
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_user().unwrap_or("postgres")
    )
}

async fn postgres() -> (Arc<PgStore>, u64, tokio::sync::MutexGuard<'static, ()>) {
    let turn = PG_ONE_AT_A_TIME.lock().await;
    let options = PgOptions { changelog_keep: 20, pool_size: 4, checkpoint_every: 8, wakeups: true };
    (PgStore::open(&fresh_database().await, options).await.unwrap(), 20, turn)
}

mod postgres {
    async fn open() -> (std::sync::Arc<roost_store::PgStore>, u64, tokio::sync::MutexGuard<'static, ()>) {
        super::postgres().await
    }
    roost_store::conformance_tests!(open);
}

/// Several nodes starting at once on an empty database: the migrations run once, every node
/// opens, and each sees the others' writes.
#[tokio::test]
async fn postgres_nodes_starting_together_migrate_once() {
    let _turn = PG_ONE_AT_A_TIME.lock().await;
    let url = fresh_database().await;
    let opens = (0..4).map(|_| PgStore::open(&url, PgOptions::default()));
    let nodes: Vec<Arc<PgStore>> = futures_util::future::try_join_all(opens).await.unwrap();
    let user =
        roost_store::User { id: "u".into(), login: "u".into(), password_hash: None, created_at: "t".into() };
    nodes[0].create_user(user.clone()).await.unwrap();
    assert_eq!(nodes[3].user("u").await.unwrap(), Some(user));
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client.query("SELECT version FROM roost_schema ORDER BY version", &[]).await.unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5], "each migration applied once, in order");
}

#[tokio::test]
async fn acknowledged_commits_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roost.db");
    {
        let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
        store
            .create_user(roost_store::User {
                id: "u".into(),
                login: "u".into(),
                password_hash: None,
                created_at: "t".into(),
            })
            .await
            .unwrap();
        store.create_structure("u", "s", json!({"v": 0}), "t").await.unwrap();
        for i in 0..50 {
            store.create_structure("u", &format!("x{i}"), json!({"i": i}), "t").await.unwrap();
        }
        store.close();
    }
    let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(store.all_structures().await.unwrap().len(), 51);
    assert!(store.create_structure("u", "late", json!({}), "t").await.is_ok());
    store.close();
    assert!(
        store.create_structure("u", "after-close", json!({}), "t").await.is_err(),
        "closed store refuses writes"
    );
}

/// Builds a data dir with 40 revisions of one structure in today's form, lets `older_form`
/// turn it into an earlier release's form, reopens it, and checks that nothing was lost:
/// the document rebuilds from its patches, resume reads the same entries, new commits follow.
/// Returns the path for checks of the migrated schema.
async fn migrates_in_place(older_form: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    use roost_store::{Change, Commit};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roost.db");
    let options = StoreOptions { changelog_keep: 1000, readers: 1, checkpoint_every: 1000 };
    let commit = |revision: u64| Commit {
        structure_id: "s".into(),
        base_revision: revision - 1,
        doc: Box::new(move || json!({"v": revision}).to_string()),
        change: Change {
            structure_id: "s".into(),
            revision,
            at: format!("2026-11-27T12:00:{revision:02}.000Z"),
            actor: "test".into(),
            paths: vec!["/v".into()],
            patch: json!({"v": revision}),
            inverse: json!({"v": revision - 1}),
        },
        idempotency: None,
        due_at: None,
    };
    {
        let store = SqliteStore::open(&path, options.clone()).unwrap();
        let user = roost_store::User {
            id: "u".into(),
            login: "u".into(),
            password_hash: None,
            created_at: "t".into(),
        };
        store.create_user(user).await.unwrap();
        store.create_structure("u", "s", json!({"v": 1}), "2026-11-27T12:00:01.000Z").await.unwrap();
        for revision in 2..=40 {
            store.commit(commit(revision)).await.unwrap();
        }
        store.close();
    }
    rusqlite::Connection::open(&path).unwrap().execute_batch(older_form).unwrap();
    let store = SqliteStore::open(&path, options).unwrap();
    let s = store.structure("s").await.unwrap().unwrap();
    assert_eq!((s.revision, s.doc.clone()), (40, json!({"v": 40})));
    let log = store.changes_after("s", 0, 100).await.unwrap();
    assert_eq!(log.iter().map(|c| c.revision).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
    assert_eq!((log[2].actor.as_str(), &log[2].inverse), ("test", &json!({"v": 2})));
    let middle = store.changes_after("s", 10, 7).await.unwrap();
    assert_eq!(middle.iter().map(|c| c.revision).collect::<Vec<_>>(), (11..=17).collect::<Vec<_>>());
    assert_eq!(store.oldest_change("s").await.unwrap(), Some(1));
    store.commit(commit(41)).await.unwrap();
    assert_eq!(store.structure("s").await.unwrap().unwrap().doc, json!({"v": 41}));
    assert_eq!(store.changes_after("s", 39, 10).await.unwrap().len(), 2);
    store.close();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let full_index: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'changes_of_structure'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(full_index, 0, "the log has anchors only, not an index entry per commit");
    (dir, path)
}

fn count(path: &std::path::Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The first form: a log clustered by (structure, revision), and a sequence number per structure.
#[tokio::test]
async fn a_change_log_clustered_by_structure_is_migrated_in_place() {
    let (_dir, path) = migrates_in_place(
        "BEGIN;
         CREATE TABLE first_form(structure_id TEXT NOT NULL, revision INTEGER NOT NULL, at TEXT NOT NULL,
             actor TEXT NOT NULL, paths TEXT NOT NULL, patch TEXT NOT NULL, inverse TEXT NOT NULL,
             PRIMARY KEY(structure_id, revision)) WITHOUT ROWID;
         INSERT INTO first_form SELECT structure_id, revision, at, actor, paths, patch, inverse FROM changes;
         DROP TABLE changes;
         ALTER TABLE first_form RENAME TO changes;
         ALTER TABLE structures DROP COLUMN last_seq;
         ALTER TABLE structures ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
         CREATE INDEX structures_seq ON structures(seq);
         COMMIT;",
    )
    .await;
    let old_table = "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'changes_by_structure'";
    assert_eq!(count(&path, old_table), 0, "the old table is gone");
    let seq_column = "SELECT COUNT(*) FROM pragma_table_info('structures') WHERE name = 'seq'";
    assert_eq!(count(&path, seq_column), 0, "the commit order lives in the change log only");
}

/// The second form: the log in commit order, with a full (structure, revision) index and no chain.
#[tokio::test]
async fn a_change_log_with_a_full_index_is_chained_in_place() {
    migrates_in_place(
        "BEGIN;
         DROP INDEX changes_anchors;
         ALTER TABLE changes DROP COLUMN prev_seq;
         ALTER TABLE structures DROP COLUMN last_seq;
         CREATE UNIQUE INDEX changes_of_structure ON changes(structure_id, revision);
         COMMIT;",
    )
    .await;
}

/// The due-time backfill is a task only for a data dir that held homes before it had the
/// upkeep table (homes stored before due times were recorded); once done it stays done.
#[tokio::test]
async fn the_due_times_backfill_is_pending_only_for_homes_stored_before() {
    use roost_store::DUE_TIMES_BACKFILL;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roost.db");
    let open = || SqliteStore::open(&path, StoreOptions::default()).unwrap();
    let store = open();
    let user =
        roost_store::User { id: "u".into(), login: "u".into(), password_hash: None, created_at: "t".into() };
    store.create_user(user).await.unwrap();
    store.create_structure("u", "s", json!({"v": 0}), "t").await.unwrap();
    assert!(!store.upkeep_pending(DUE_TIMES_BACKFILL).await.unwrap(), "created after: nothing to do");
    store.close();
    drop(store);
    // The release before the upkeep table.
    rusqlite::Connection::open(&path).unwrap().execute_batch("DROP TABLE upkeep").unwrap();
    let store = open();
    assert!(store.upkeep_pending(DUE_TIMES_BACKFILL).await.unwrap(), "a home without a due time");
    store.upkeep_done(DUE_TIMES_BACKFILL).await.unwrap();
    assert!(!store.upkeep_pending(DUE_TIMES_BACKFILL).await.unwrap());
    store.close();
    drop(store);
    assert!(!open().upkeep_pending(DUE_TIMES_BACKFILL).await.unwrap(), "done stays done");
}

/// Trimming works in whole anchors: the log keeps the window, a little more, and no gaps.
#[tokio::test]
async fn the_change_log_is_trimmed_to_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roost.db");
    let keep = 20;
    let store =
        SqliteStore::open(&path, StoreOptions { changelog_keep: keep, readers: 1, checkpoint_every: 4 })
            .unwrap();
    let user =
        roost_store::User { id: "u".into(), login: "u".into(), password_hash: None, created_at: "t".into() };
    store.create_user(user).await.unwrap();
    store.create_structure("u", "s", json!({"v": 0}), "t").await.unwrap();
    let mut revision = 1;
    for v in 1..=300 {
        let commit = roost_store::Commit {
            structure_id: "s".into(),
            base_revision: revision,
            doc: Box::new(move || json!({"v": v}).to_string()),
            change: roost_store::Change {
                structure_id: "s".into(),
                revision: revision + 1,
                at: "t".into(),
                actor: "test".into(),
                paths: vec!["/v".into()],
                patch: json!({"v": v}),
                inverse: json!({"v": v - 1}),
            },
            idempotency: None,
            due_at: None,
        };
        revision = store.commit(commit).await.unwrap();
        let oldest = store.oldest_change("s").await.unwrap().unwrap();
        assert!(
            oldest <= (revision + 1).saturating_sub(keep).max(1),
            "revision {revision}: the window is kept (oldest {oldest})"
        );
        assert!(revision - oldest < keep + 2 * 16, "revision {revision}: trimmed (oldest {oldest})");
    }
    let log = store.changes_after("s", 0, 1000).await.unwrap();
    let oldest = log[0].revision;
    assert_eq!(log.iter().map(|c| c.revision).collect::<Vec<_>>(), (oldest..=revision).collect::<Vec<_>>());
    store.close();
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM changes"),
        (revision - oldest + 1) as i64,
        "nothing left behind"
    );
}

/// A commit that took its transaction id first but commits last is still in the feed: the
/// position handed out never passes a transaction that is still running.
#[tokio::test]
async fn postgres_feed_never_passes_a_commit_that_lands_late() {
    use roost_store::{Change, Commit};
    let _turn = PG_ONE_AT_A_TIME.lock().await;
    let url = fresh_database().await;
    let store = PgStore::open(&url, PgOptions::default()).await.unwrap();
    let user =
        roost_store::User { id: "u".into(), login: "u".into(), password_hash: None, created_at: "t".into() };
    store.create_user(user).await.unwrap();
    for id in ["early", "late"] {
        store.create_structure("u", id, json!({"v": 0}), "t").await.unwrap();
    }
    let (_, start) = store.changed_since(0).await.unwrap();
    // Another node's commit: its transaction (and id) begins now, it commits at the end.
    let (mut other, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let slow = other.transaction().await.unwrap();
    slow.query(
        "SELECT * FROM roost_commit(ARRAY['late'], ARRAY[1::BIGINT], ARRAY[NULL::TEXT], ARRAY['t'], ARRAY['test'],
             ARRAY['[\"/v\"]'], ARRAY['{\"v\":1}'], ARRAY['{\"v\":0}'], ARRAY[NULL::TEXT], ARRAY[NULL::TEXT], 100,
             ARRAY[NULL::BIGINT])",
        &[],
    )
    .await
    .unwrap();
    // A later transaction commits first and is read.
    let commit = Commit {
        structure_id: "early".into(),
        base_revision: 1,
        doc: Box::new(|| json!({"v": 1}).to_string()),
        change: Change {
            structure_id: "early".into(),
            revision: 2,
            at: "t".into(),
            actor: "test".into(),
            paths: vec!["/v".into()],
            patch: json!({"v": 1}),
            inverse: json!({"v": 0}),
        },
        idempotency: None,
        due_at: None,
    };
    store.commit(commit).await.unwrap();
    let (seen, next) = store.changed_since(start).await.unwrap();
    assert_eq!(seen, vec![("early".to_string(), 2)]);
    slow.commit().await.unwrap();
    let (seen, _) = store.changed_since(next).await.unwrap();
    assert!(seen.contains(&("late".to_string(), 2)), "the late commit is in the feed: {seen:?}");
}

/// A node's commit wakes the other nodes; a listener connection cut by the database
/// (`pg_terminate_backend`) is re-established and wakes its node, which then reads the feed
/// and finds what was committed while it was away.
#[tokio::test]
async fn postgres_wakeups_survive_a_cut_listener() {
    use std::time::Duration;
    let _turn = PG_ONE_AT_A_TIME.lock().await;
    let url = fresh_database().await;
    let a = PgStore::open(&url, PgOptions::default()).await.unwrap();
    let b = PgStore::open(&url, PgOptions::default()).await.unwrap();
    let wake_a = a.wakeups().unwrap();
    // The first wake-up says the listener is connected.
    tokio::time::timeout(Duration::from_secs(10), wake_a.notified()).await.expect("listener connected");
    let user =
        roost_store::User { id: "u".into(), login: "u".into(), password_hash: None, created_at: "t".into() };
    b.create_user(user).await.unwrap();
    let (_, start) = a.changed_since(0).await.unwrap();
    b.create_structure("u", "s1", json!({"v": 0}), "t").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), wake_a.notified()).await.expect("b's commit woke a");
    // Cut every listener; commit while they are down.
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let cut: i64 = admin
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'roost-listener'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cut, 2, "both nodes' listeners");
    b.create_structure("u", "s2", json!({"v": 0}), "t").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), wake_a.notified())
        .await
        .expect("a woke after reconnecting");
    let (changed, _) = a.changed_since(start).await.unwrap();
    assert!(changed.contains(&("s2".to_string(), 1)), "committed while cut: {changed:?}");
    let listening: i64 = admin
        .query_one("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'roost-listener'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(listening >= 1, "a listener is back");
}

/// Counts under limits are shared between nodes: each sees the sum of the others' counts of
/// a window (a retried report replaces, never adds), ended windows stop counting, and the
/// gauges of a node that went silent stop counting while its windows still do.
#[tokio::test]
async fn postgres_counts_are_shared_between_nodes() {
    use roost_store::{CountExchange, SharedCount};
    let _turn = PG_ONE_AT_A_TIME.lock().await;
    let url = fresh_database().await;
    let a = PgStore::open(&url, PgOptions::default()).await.unwrap();
    let b = PgStore::open(&url, PgOptions::default()).await.unwrap();
    let c = PgStore::open(&url, PgOptions::default()).await.unwrap();
    let count = |key: &str, window_start, count| SharedCount { key: key.into(), window_start, count };
    let report =
        |now_ms, mine: Vec<(SharedCount, i64)>| CountExchange { now_ms, mine, ask: vec![], alive_ms: 5_000 };
    a.share_counts(report(
        61_000,
        vec![(count("calls:t", 60_000, 7), 120_000), (count("open:t", 0, 2), i64::MAX)],
    ))
    .await
    .unwrap();
    // A retry of the same report.
    a.share_counts(report(61_000, vec![(count("calls:t", 60_000, 7), 120_000)])).await.unwrap();
    b.share_counts(report(
        61_500,
        vec![(count("calls:t", 60_000, 5), 120_000), (count("open:t", 0, 1), i64::MAX)],
    ))
    .await
    .unwrap();
    let ask = |now_ms| CountExchange {
        now_ms,
        mine: vec![],
        ask: vec![("calls:t".into(), 60_000), ("open:t".into(), 0), ("calls:other".into(), 60_000)],
        alive_ms: 5_000,
    };
    let mut seen = c.share_counts(ask(62_000)).await.unwrap();
    seen.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(seen, vec![count("calls:t", 60_000, 12), count("open:t", 0, 3)], "a's and b's, summed");
    let seen_by_a = a.share_counts(ask(62_000)).await.unwrap();
    assert!(seen_by_a.contains(&count("calls:t", 60_000, 5)), "only b's: {seen_by_a:?}");
    // At 69 s: a and b have been silent for over 5 s, so their open streams no longer count;
    // their calls in the window do, until the window ends.
    let seen = c.share_counts(ask(69_000)).await.unwrap();
    assert_eq!(seen, vec![count("calls:t", 60_000, 12)]);
    assert_eq!(c.share_counts(ask(120_001)).await.unwrap(), vec![], "the window ended");
}
