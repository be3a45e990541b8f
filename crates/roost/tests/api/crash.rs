//! `kill -9` under concurrent acknowledged writes, restart, and check that every acknowledged
//! write is there. Repeated in one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp};

const WRITERS: usize = 8;

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut acked: Vec<u64> = vec![0; WRITERS];
    for round in 0..3 {
        let mut app = TestApp::start(dir.clone(), None, Options::default()).await;
        let sid = app.id("structure_id");
        // Everything acknowledged before this restart is still there.
        for (w, seq) in acked.iter().enumerate() {
            if *seq > 0 {
                let (s, v) = app.get_json(&format!("/devices/acme/meter/w{w}/seq")).await;
                assert_eq!(s, 200, "round {round} writer {w}");
                assert!(v.as_u64().unwrap() >= *seq, "round {round} writer {w}: {v} < acknowledged {seq}");
            }
        }
        let counters: Vec<Arc<AtomicU64>> = acked.iter().map(|s| Arc::new(AtomicU64::new(*s))).collect();
        let mut tasks = Vec::new();
        for (w, counter) in counters.iter().enumerate() {
            let (client, url, token, sid, counter) =
                (app.client.clone(), app.url.clone(), app.token.clone(), sid.clone(), counter.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let next = counter.load(Ordering::SeqCst) + 1;
                    let body = json!({"location": {"structure_id": sid}, "seq": next});
                    let r = client
                        .put(format!("{url}/devices/acme/meter/w{w}"))
                        .bearer_auth(&token)
                        .body(body.to_string())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => counter.store(next, Ordering::SeqCst),
                        _ => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        app.kill();
        for t in tasks {
            let _ = t.await;
        }
        for (w, c) in counters.iter().enumerate() {
            acked[w] = c.load(Ordering::SeqCst);
        }
        assert!(acked.iter().all(|s| *s > 0), "every writer got writes acknowledged: {acked:?}");
    }
    let app = TestApp::start(dir, None, Options::default()).await;
    for (w, seq) in acked.iter().enumerate() {
        let (_, v): (u16, Value) = app.get_json(&format!("/devices/acme/meter/w{w}/seq")).await;
        assert!(v.as_u64().unwrap() >= *seq);
    }
    drop(tmp);
}
