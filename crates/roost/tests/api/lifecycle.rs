//! Graceful shutdown, and the README's examples run as written against the demo.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Options, TestApp};
use crate::streams::Events;

#[tokio::test]
async fn sigterm_closes_streams_finishes_writes_and_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut app = TestApp::start(dir.clone(), None, Options::default()).await;
    let mut events = Events::open(&app, "/").await;
    events.next_put().await;
    let sid = app.id("structure_id");
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, url, token, sid) = (app.client.clone(), app.url.clone(), app.token.clone(), sid.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = 0u64;
            loop {
                let body = json!({"location": {"structure_id": sid}, "seq": acked + 1});
                match client
                    .put(format!("{url}/devices/acme/meter/g{w}"))
                    .bearer_auth(&token)
                    .body(body.to_string())
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => acked += 1,
                    _ => return acked,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = app.child.id().to_string();
    let stopped_at = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // The stream ends promptly (not after a keep-alive or the drain timeout).
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut last = None;
        while let Some(e) = events.next().await {
            last = Some(e);
        }
        last
    })
    .await;
    let last = ended.expect("stream did not end after SIGTERM").expect("an event before the end");
    assert_eq!(last.name, "error", "the stream says why it ends");
    assert!(last.data.contains("shutting down"), "{}", last.data);
    let status = tokio::task::spawn_blocking(move || app.child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(stopped_at.elapsed() < Duration::from_secs(10));
    let mut acked = Vec::new();
    for w in writers {
        acked.push(w.await.unwrap());
    }
    let app = TestApp::start(dir, None, Options::default()).await;
    for (w, n) in acked.iter().enumerate() {
        assert!(*n > 0);
        let (_, v) = app.get_json(&format!("/devices/acme/meter/g{w}/seq")).await;
        assert!(v.as_u64().unwrap() >= *n, "writer {w}: acknowledged {n}, stored {v}");
    }
    drop(tmp);
}

/// The shell block under "Try it" in the README, run as written (with curl and jq) against
/// a demo started the way the README says.
#[tokio::test]
async fn readme_examples_work_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("## Try it").nth(1).unwrap();
    let script = section.split("```sh").nth(1).unwrap().split("```").next().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // As the README starts it: with the demo's simulated devices running.
    let app =
        TestApp::start(tmp.path().join("roost-data"), None, Options { sim: true, ..Options::default() })
            .await;
    let out = tokio::process::Command::new("timeout")
        .args(["15", "bash", "-c", script])
        .current_dir(tmp.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The last command is a stream: it runs until the timeout ends it.
    assert_eq!(out.status.code(), Some(124), "{stdout}\n{stderr}");
    for expected in [
        "\"name_long\":\"Living Room Thermostat (Heat pump)\"",
        "{\"target_temperature_f\": 70}",
        "Cannot change HVAC mode to cool while emergency heat is on",
        "etag: \"",
        "\"error\":\"precondition failed\"",
        "event: put",
    ] {
        assert!(stdout.contains(expected), "missing {expected} in:\n{stdout}\n{stderr}");
    }
    drop(app);
}
