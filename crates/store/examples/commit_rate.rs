//! Durable commits per second through the store alone (no HTTP), with `clients` concurrent
//! committers each on its own structure, and optionally a small change-log window so that
//! trimming runs too. `cargo run --release -p roost-store --example commit_rate [CLIENTS [KEEP]]`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use roost_store::{Change, Commit, SqliteStore, Store, StoreOptions, User};
use serde_json::json;

#[tokio::main]
async fn main() {
    let clients: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let keep: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(StoreOptions::default().changelog_keep);
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { changelog_keep: keep, ..StoreOptions::default() };
    let store = SqliteStore::open(&dir.path().join("roost.db"), options).unwrap();
    store
        .create_user(User { id: "u".into(), login: "u".into(), password_hash: None, created_at: "t".into() })
        .await
        .unwrap();
    let doc = json!({"devices": {}, "structures": {}, "pad": "x".repeat(5000)});
    for i in 0..clients {
        store.create_structure("u", &format!("s{i}"), doc.clone(), "t").await.unwrap();
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let store: Arc<SqliteStore> = store.clone();
        let doc = doc.to_string();
        tasks.push(tokio::spawn(async move {
            let mut rev = 1;
            let mut n = 0u64;
            while started.elapsed() < Duration::from_secs(5) {
                let sid = format!("s{i}");
                let d = doc.clone();
                let commit = Commit {
                    structure_id: sid.clone(),
                    base_revision: rev,
                    doc: Box::new(move || d),
                    change: Change {
                        structure_id: sid,
                        revision: rev + 1,
                        at: "2026-11-27T12:00:00.000Z".into(),
                        actor: "bench".into(),
                        paths: vec!["/devices/thermostats/t/target_temperature_f".into()],
                        patch: json!({"devices": {"thermostats": {"t": {"target_temperature_f": 70 + rev % 2}}}}),
                        inverse: json!({"devices": {"thermostats": {"t": {"target_temperature_f": 70 + (rev + 1) % 2}}}}),
                    },
                    idempotency: None,
                    due_at: None,
                };
                rev = store.commit(commit).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    println!(
        "{clients} committers, change log window {keep}: {:.0} durable commits/s",
        total as f64 / started.elapsed().as_secs_f64()
    );
}
