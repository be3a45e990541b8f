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
