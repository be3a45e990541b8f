//! Runs the conformance suite against every backend, and checks durability across reopen.

use roost_store::{SqliteStore, Store, StoreOptions, conformance};
use serde_json::json;

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        &dir.path().join("roost.db"),
        StoreOptions { changelog_keep: 20, readers: 2, checkpoint_every: 8 },
    )
    .unwrap();
    conformance::run(store.as_ref(), 20).await;
}

#[tokio::test]
async fn sqlite_passes_with_every_checkpoint_setting() {
    for every in [1, 3, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions { changelog_keep: 10, readers: 1, checkpoint_every: every };
        let store = SqliteStore::open(&dir.path().join("roost.db"), options).unwrap();
        conformance::run(store.as_ref(), 10).await;
    }
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

/// A data dir made before the change log was kept in commit order (and structures carried
/// their own sequence numbers) opens with its history intact: documents rebuild from their patches, resume reads the same entries, and new
/// commits follow.
#[tokio::test]
async fn a_change_log_clustered_by_structure_is_migrated_in_place() {
    use roost_store::{Change, Commit};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roost.db");
    let options = StoreOptions { changelog_keep: 100, readers: 1, checkpoint_every: 1000 };
    let commit = |revision: u64| Commit {
        structure_id: "s".into(),
        base_revision: revision - 1,
        doc: Box::new(move || json!({"v": revision}).to_string()),
        change: Change {
            structure_id: "s".into(),
            revision,
            at: format!("2026-11-27T12:00:0{revision}.000Z"),
            actor: "test".into(),
            paths: vec!["/v".into()],
            patch: json!({"v": revision}),
            inverse: json!({"v": revision - 1}),
        },
        idempotency: None,
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
        store.create_structure("u", "s", json!({"v": 1}), "t").await.unwrap();
        for revision in 2..=4 {
            store.commit(commit(revision)).await.unwrap();
        }
        store.close();
    }
    // Put the log back in its first form: a table clustered by (structure, revision).
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE first_form(structure_id TEXT NOT NULL, revision INTEGER NOT NULL, at TEXT NOT NULL,
                 actor TEXT NOT NULL, paths TEXT NOT NULL, patch TEXT NOT NULL, inverse TEXT NOT NULL,
                 PRIMARY KEY(structure_id, revision)) WITHOUT ROWID;
             INSERT INTO first_form SELECT structure_id, revision, at, actor, paths, patch, inverse FROM changes;
             DROP TABLE changes;
             ALTER TABLE first_form RENAME TO changes;
             ALTER TABLE structures ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
             CREATE INDEX structures_seq ON structures(seq);
             COMMIT;",
        )
        .unwrap();
        let has_seq: i64 = conn
            .query_row("SELECT COUNT(*) FROM pragma_table_info('changes') WHERE name = 'seq'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(has_seq, 0, "the test really made the first form");
    }
    let store = SqliteStore::open(&path, options).unwrap();
    let s = store.structure("s").await.unwrap().unwrap();
    assert_eq!((s.revision, s.doc.clone()), (4, json!({"v": 4})));
    let log = store.changes_after("s", 0, 100).await.unwrap();
    assert_eq!(log.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(log[2].actor, "test");
    assert_eq!(log[2].inverse, json!({"v": 2}));
    store.commit(commit(5)).await.unwrap();
    assert_eq!(store.structure("s").await.unwrap().unwrap().doc, json!({"v": 5}));
    store.close();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'changes_by_structure'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 0, "the old table is gone");
    let seq_columns: i64 = conn
        .query_row("SELECT COUNT(*) FROM pragma_table_info('structures') WHERE name = 'seq'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(seq_columns, 0, "the commit order lives in the change log only");
}
