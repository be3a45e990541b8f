//! Several `roost serve` nodes on one PostgreSQL database: what one node commits, the
//! others' streams show; rules hold when nodes write at once; revocation reaches every node.

use serde_json::json;

use crate::helpers::{Options, TestApp, fresh_database};
use crate::streams::Events;

/// `n` nodes on a fresh database: the first seeds the demo home, the others join it.
async fn cluster(n: usize) -> Vec<TestApp> {
    let store = fresh_database().await;
    let first = TestApp::spawn_with(Options { store: Some(store), ..Options::default() }).await;
    let mut nodes = vec![first];
    for _ in 1..n {
        let node = nodes[0].join(Options::default()).await;
        nodes.push(node);
    }
    nodes
}

/// Node C runs without wake-ups (`--store-wakeups false`, as behind a pooler that cannot
/// LISTEN): it learns of the write by polling the feed.
#[tokio::test]
async fn a_write_on_one_node_reaches_streams_on_the_others() {
    let mut nodes = cluster(2).await;
    let polling = Options { extra: vec!["--store-wakeups".into(), "false".into()], ..Options::default() };
    let c = nodes[0].join(polling).await;
    nodes.push(c);
    let t = nodes[0].thermostat_path();
    let mut on_b = Events::open(&nodes[1], &t).await;
    let mut on_c = Events::open(&nodes[2], &t).await;
    assert_eq!(on_b.next_put().await["target_temperature_f"], json!(68));
    assert_eq!(on_c.next_put().await["target_temperature_f"], json!(68));
    let (status, _) = nodes[0].put_json(&t, json!({"target_temperature_f": 72})).await;
    assert_eq!(status, 200);
    assert_eq!(on_b.next_put().await["target_temperature_f"], json!(72));
    assert_eq!(on_c.next_put().await["target_temperature_f"], json!(72));
    // And a read on any node answers the committed value.
    assert_eq!(nodes[2].get_json(&t).await.1["target_temperature_f"], json!(72));
    // How long the change took to reach node B is in its metrics.
    let metrics =
        nodes[1].client.get(format!("{}/metrics", nodes[1].url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("roost_cluster_change_lag_seconds"), "{metrics}");
}

/// Two nodes move the two ends of the heat-cool range at once, each move fine alone and the
/// pair too close together: whatever the interleaving, the stored range keeps the minimum
/// spread, because a node that loses the compare-and-set checks the rules again on the
/// newer state.
#[tokio::test]
async fn a_rule_holds_when_two_nodes_write_at_once() {
    let nodes = cluster(2).await;
    // A thermostat that can heat and cool (the demo's heat pump is on emergency heat).
    let sid = nodes[0].id("structure_id");
    let added =
        nodes[0].admin(&["device", "add", "--structure", &sid, "--kind", "thermostat", "--where", "Office"]);
    let t = format!("/devices/thermostats/{}", added["device_id"].as_str().unwrap());
    for node in &nodes {
        for _ in 0..50 {
            if node.get(&t).send().await.unwrap().status() == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let mut refused = 0;
    for _ in 0..12 {
        let (status, e) = nodes[0]
            .put_json(
                &t,
                json!({"hvac_mode": "heat-cool", "target_temperature_low_f": 66, "target_temperature_high_f": 74}),
            )
            .await;
        assert_eq!(status, 200, "{e}");
        let (a, b) = tokio::join!(
            nodes[0].put_json(&t, json!({"target_temperature_low_f": 71})),
            nodes[1].put_json(&t, json!({"target_temperature_high_f": 72})),
        );
        for (status, body) in [&a, &b] {
            assert!(*status == 200 || *status == 400, "{status} {body}");
        }
        refused += [a.0, b.0].iter().filter(|s| **s == 400).count();
        let (_, now) = nodes[1].get_json(&t).await;
        let (low, high) = (
            now["target_temperature_low_f"].as_f64().unwrap(),
            now["target_temperature_high_f"].as_f64().unwrap(),
        );
        assert!(high - low >= 3.0, "the spread rule was bypassed: {low}..{high}");
    }
    assert!(refused >= 12, "each round one of the two writes must be refused ({refused} refusals)");
}

#[tokio::test]
async fn revoking_on_one_node_ends_the_tokens_streams_on_every_node() {
    let nodes = cluster(3).await;
    // The same token on every node: node A's.
    let token = nodes[0].token.clone();
    let mut streams = Vec::new();
    for node in &nodes {
        let mut events = Events::open_as(node, &token, "/metadata").await;
        events.next_put().await;
        streams.push(events);
    }
    let r = nodes[0].admin(&["token", "revoke", &token]);
    assert_eq!(r["revoked"], json!(true), "{r}");
    for (i, events) in streams.iter_mut().enumerate() {
        loop {
            let e =
                events.next().await.unwrap_or_else(|| panic!("node {i}: stream ended without auth_revoked"));
            if e.name == "auth_revoked" {
                break;
            }
        }
    }
    let (status, _) = {
        let r = nodes[2]
            .client
            .get(format!("{}/metadata", nodes[2].url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 401, "the revoked token is refused on another node");
}

/// Limits hold for the cluster as a whole: a product's calls on node A count against its
/// budget on node B (learned at the next exchange of counts), and streams a token holds open
/// on A count against its stream limit on B, and stop counting once closed.
#[tokio::test]
async fn limits_hold_for_the_cluster_as_a_whole() {
    use crate::limits::{clear_of_minute_boundary, product_token};
    use std::time::{Duration, Instant};
    let extra =
        ["--calls-per-token-per-minute", "40", "--max-streams-per-token", "2"].map(String::from).to_vec();
    let options = Options { store: Some(fresh_database().await), extra, ..Options::default() };
    let a = TestApp::spawn_with(options.clone()).await;
    let b = a.join(options).await;
    let token = product_token(&a, 0);
    let call = |node: &TestApp| node.client.get(format!("{}/metadata", node.url)).bearer_auth(&token).send();
    clear_of_minute_boundary(Duration::from_secs(20)).await;
    for _ in 0..20 {
        assert_eq!(call(&a).await.unwrap().status(), 200);
    }
    // B learns of A's 20 calls: its budget shows them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut on_b = 0;
    loop {
        let r = call(&b).await.unwrap();
        assert_eq!(r.status(), 200);
        on_b += 1;
        let remaining: u32 = r.headers()["ratelimit-remaining"].to_str().unwrap().parse().unwrap();
        if remaining <= 40 - 20 - on_b {
            break;
        }
        assert!(Instant::now() < deadline, "node B never counted node A's calls");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // B spends the rest of the cluster's budget and no more.
    loop {
        let r = call(&b).await.unwrap();
        if r.status() == 429 {
            break;
        }
        assert_eq!(r.status(), 200);
        on_b += 1;
    }
    assert_eq!(20 + on_b, 40, "calls admitted by the two nodes together");
    // A learns of B's calls and refuses too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&a).await.unwrap().status() != 429 {
        assert!(Instant::now() < deadline, "node A never counted node B's calls");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Streams: two open on A (the operator's token; stream limits hold for every token).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut events = Events::open(&a, "/metadata").await;
        events.next_put().await;
        held.push(events);
    }
    let open_on_b = || b.get("/metadata").header("accept", "text/event-stream").send();
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let r = open_on_b().await.unwrap();
        if r.status() == 429 {
            break r.json::<serde_json::Value>().await.unwrap();
        }
        // A published its streams after B looked: let this one go and look again.
        assert_eq!(r.status(), 200);
        drop(r);
        assert!(Instant::now() < deadline, "node B never counted node A's streams");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused["error"], json!("blocked"), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("token"), "{refused}");
    // One closes on A: B opens one again.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = open_on_b().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(Instant::now() < deadline, "node B still counts the stream closed on A");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A PostgreSQL server of the test's own (scripts/pg), which it may stop and start.
struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg")
    }

    fn start() -> OwnPostgres {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(Self::script()).arg("start").arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let port = text
            .lines()
            .find_map(|l| l.strip_prefix("export ROOST_PG_PORT="))
            .and_then(|p| p.trim().parse().ok())
            .unwrap();
        OwnPostgres { dir, port }
    }

    fn stop(&self) {
        let out =
            std::process::Command::new(Self::script()).arg("stop").arg(self.dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts it again on the same port.
    fn restart(&self) {
        let out = std::process::Command::new(Self::script())
            .arg("start")
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://roost@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script()).arg("stop").arg(self.dir.path()).output();
    }
}

/// PostgreSQL stops under load and comes back: meanwhile writes fail fast with 503 in the
/// API's error shape and `/readyz` says so; afterwards both nodes serve again by themselves,
/// and every write a node acknowledged is in the database.
#[tokio::test]
async fn a_database_outage_refuses_writes_and_the_nodes_recover_by_themselves() {
    use std::time::{Duration, Instant};
    let pg = OwnPostgres::start();
    let (admin, connection) =
        tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    admin.batch_execute("CREATE DATABASE roost").await.unwrap();
    drop(admin);
    let url = pg.url("roost");
    let first = TestApp::spawn_with(Options { store: Some(url.clone()), ..Options::default() }).await;
    let second = first.join(Options::default()).await;
    let nodes = [first, second];
    let path = nodes[0].structure_path();
    // Writers on both nodes, each name unique; what each node acknowledged is kept.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, node) in nodes.iter().enumerate() {
        let (client, base, token, path, stop) =
            (node.client.clone(), node.url.clone(), node.token.clone(), path.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let name = format!("w{w}-{i}");
                let r = client
                    .put(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .body(json!({"name": name}).to_string())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => acknowledged.push(name),
                    Ok(r) => {
                        assert_eq!(r.status(), 503, "a write in the outage is 503");
                        let body: serde_json::Value = r.json().await.unwrap();
                        assert!(
                            body["error"].is_string() && body["type"].is_string(),
                            "the API's error shape: {body}"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("no answer: {e}"),
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.stop();
    // Writes fail fast, and the node says it is not ready.
    let started = Instant::now();
    let (status, _) = nodes[1].put_json(&path, json!({"name": "during"})).await;
    assert_eq!(status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "a write in the outage fails fast: {:?}",
        started.elapsed()
    );
    let ready = nodes[1].client.get(format!("{}/readyz", nodes[1].url)).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/readyz in the outage");
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.restart();
    // Both nodes serve again without a restart.
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = node.client.get(format!("{}/readyz", node.url)).send().await.unwrap();
            if r.status() == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "a node did not recover");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(acknowledged.len() > 10, "writes went through before and after: {}", acknowledged.len());
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let patches: Vec<String> =
        admin.query("SELECT patch FROM changes", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    let committed: std::collections::HashSet<String> = patches
        .iter()
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|p| p["structures"].as_object()?.values().next()?["name"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|n| !committed.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged but not in the database: {lost:?}");
}

/// A timed change is made by a node other than the one whose commit made it due: node A
/// takes a phone's presence (home) and dies; node B, which holds only a stale copy of the
/// home, finds it through the store's due index and turns it away when the quiet time is up.
#[tokio::test]
async fn a_timed_change_is_made_when_the_node_that_scheduled_it_is_gone() {
    use std::time::{Duration, Instant};
    let store = fresh_database().await;
    let extra = ["--assist-quiet-secs", "3", "--assist-hold-secs", "0", "--tick-ms", "200"]
        .map(String::from)
        .to_vec();
    let options = Options { store: Some(store.clone()), extra, ..Options::default() };
    let mut a = TestApp::spawn_with(options.clone()).await;
    let b = a.join(options).await;
    let s = b.structure_path();
    // The demo home has been quiet for minutes: a node turns it away.
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.get_json(&s).await.1["away"] != json!("away") {
        assert!(Instant::now() < deadline, "the quiet demo home never turned away");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A phone says someone is home, through node A, which then dies.
    let url = format!("{}/presence/{}", a.url, a.id("structure_id"));
    let r = a.client.put(url).bearer_auth(&a.token).body(r#"{"present": true}"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let home_at = Instant::now();
    a.kill();
    // Node B turns it away again after the quiet time. Watched in the database, not through
    // node B: a request would make B reload the home, and B must find it by itself.
    let (db, connection) = tokio_postgres::connect(&store, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let sid = b.id("structure_id");
    let latest = || async {
        let row = db
            .query_one(
                "SELECT revision, actor, patch FROM changes WHERE structure_id = $1 ORDER BY revision DESC LIMIT 1",
                &[&sid],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, String>(1), row.get::<_, String>(2))
    };
    let (presence_revision, _, patch) = latest().await;
    assert!(patch.contains("\"home\""), "the presence commit is the newest: {patch}");
    loop {
        let (revision, actor, patch) = latest().await;
        if revision > presence_revision {
            assert_eq!(actor, "service:assist", "{patch}");
            assert!(patch.contains("\"away\""), "{patch}");
            assert!(home_at.elapsed() >= Duration::from_secs(2), "not before the quiet time");
            break;
        }
        assert!(home_at.elapsed() < Duration::from_secs(20), "node B never made the timed change");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(b.get_json(&s).await.1["away"], json!("away"));
}

/// A stream's events as `(revision, name)` of the structure it follows.
async fn follow_names(
    mut events: Events,
    stop: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Vec<(u64, String)> {
    let mut seen = Vec::new();
    loop {
        let Some(e) = events.next_within(2_000).await else {
            if stop.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                return seen;
            }
            continue;
        };
        if e.name != "put" {
            continue;
        }
        let revision: u64 = e.id.as_deref().and_then(|id| id.rsplit(':').next()?.parse().ok()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        seen.push((revision, v["data"]["name"].as_str().unwrap_or_default().to_string()));
        let done = stop.load(std::sync::atomic::Ordering::Relaxed);
        if done > 0 && revision >= done {
            return seen;
        }
    }
}

/// The revisions of a structure that changed its name, with the name, from the change log.
async fn names_in_log(db: &tokio_postgres::Client, sid: &str) -> Vec<(u64, String)> {
    let rows = db
        .query("SELECT revision, patch FROM changes WHERE structure_id = $1 ORDER BY revision", &[&sid])
        .await
        .unwrap();
    rows.iter()
        .filter_map(|r| {
            let patch: serde_json::Value = serde_json::from_str(&r.get::<_, String>(1)).ok()?;
            let name = patch["structures"][sid]["name"].as_str()?.to_string();
            Some((r.get::<_, i64>(0) as u64, name))
        })
        .collect()
}

/// Three nodes, eight writers on each, all on the same two homes for 10 s, and a stream of
/// each home on every node: every stream sees every name the log committed, in order, none
/// skipped and none repeated, whichever node committed it.
#[tokio::test]
async fn three_nodes_of_writers_and_every_stream_sees_every_revision_in_order() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    let nodes = cluster(3).await;
    let user = nodes[0].demo["user_id"].as_str().unwrap().to_string();
    let second = nodes[0].admin(&["structure", "create", "--owner", &user, "--name", "Second"]);
    let homes = [nodes[0].id("structure_id"), second["structure_id"].as_str().unwrap().to_string()];
    let token =
        nodes[0].admin(&["token", "issue", "--user", &user])["access_token"].as_str().unwrap().to_string();
    let mut followers = Vec::new();
    let stops: Vec<Arc<AtomicU64>> = homes.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    for node in &nodes {
        for (h, home) in homes.iter().enumerate() {
            let events = Events::open_as(node, &token, &format!("/structures/{home}")).await;
            followers.push((h, tokio::spawn(follow_names(events, stops[h].clone()))));
        }
    }
    let writing = Arc::new(AtomicBool::new(true));
    let mut writers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..8 {
            let (client, url, token, homes, writing) =
                (node.client.clone(), node.url.clone(), token.clone(), homes.clone(), writing.clone());
            writers.push(tokio::spawn(async move {
                let (mut ok, mut busy) = (0, 0);
                let mut i = 0;
                while writing.load(Ordering::Relaxed) {
                    i += 1;
                    let home = &homes[(w + i) % 2];
                    let r = client
                        .put(format!("{url}/structures/{home}"))
                        .bearer_auth(&token)
                        .body(json!({"name": format!("n{n}w{w}i{i}")}).to_string())
                        .send()
                        .await
                        .unwrap();
                    match r.status().as_u16() {
                        200 => ok += 1,
                        503 => busy += 1,
                        other => panic!("write answered {other}"),
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                (ok, busy)
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    writing.store(false, Ordering::Relaxed);
    let (mut ok, mut busy) = (0, 0);
    for w in writers {
        let (o, b) = w.await.unwrap();
        ok += o;
        busy += b;
    }
    assert!(ok > 500, "the writers got through: {ok} acknowledged, {busy} busy");
    let (db, connection) =
        tokio_postgres::connect(nodes[0].store.as_deref().unwrap(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let mut logs = Vec::new();
    for (h, home) in homes.iter().enumerate() {
        let log = names_in_log(&db, home).await;
        stops[h].store(log.last().unwrap().0, Ordering::Relaxed);
        logs.push(log);
    }
    let started = Instant::now();
    for (f, (h, follower)) in followers.into_iter().enumerate() {
        let seen = tokio::time::timeout(Duration::from_secs(30), follower).await.unwrap().unwrap();
        // From the stream's first event on, every name the log committed, in order.
        let first = seen.first().unwrap().0;
        let expected: Vec<&(u64, String)> = logs[h].iter().filter(|(r, _)| *r > first).collect();
        let got: Vec<&(u64, String)> = seen.iter().skip(1).collect();
        let missing: Vec<&&(u64, String)> = expected.iter().filter(|e| !got.contains(e)).collect();
        assert!(
            missing.is_empty(),
            "stream {f} (node {}) missed {} of {} names: {:?}",
            f / 2,
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(5)]
        );
        assert!(seen.windows(2).all(|p| p[0].0 < p[1].0), "stream {f}: revisions in order, none repeated");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// A node with open streams is killed; the clients reconnect to another node with the last
/// event id they got and receive exactly the names they missed, then the live ones.
#[tokio::test]
async fn streams_resume_on_another_node_after_kill_9_with_exactly_what_they_missed() {
    use std::time::Duration;
    let mut nodes = cluster(2).await;
    let home = nodes[0].id("structure_id");
    let path = format!("/structures/{home}");
    let mut on_a = Events::open(&nodes[0], &path).await;
    let (b_client, b_url, b_token) = (nodes[1].client.clone(), nodes[1].url.clone(), nodes[1].token.clone());
    let writer = |i: u32| {
        let (client, url, token, path) = (b_client.clone(), b_url.clone(), b_token.clone(), path.clone());
        async move {
            let r = client
                .put(format!("{url}{path}"))
                .bearer_auth(&token)
                .body(json!({"name": format!("r{i}")}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    // Writes on B, seen on A.
    let mut last_id = String::new();
    for i in 0..5 {
        writer(i).await;
        loop {
            let e = on_a.next().await.unwrap();
            if e.name == "put" {
                let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
                last_id = e.id.clone().unwrap();
                if v["data"]["name"] == json!(format!("r{i}")) {
                    break;
                }
            }
        }
    }
    nodes[0].kill();
    // Missed while reconnecting.
    for i in 5..12 {
        writer(i).await;
    }
    let resumed = Events::open_with(&nodes[1], &path, Some(&last_id)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let follower = tokio::spawn(follow_names(resumed, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 12..15 {
        writer(i).await;
    }
    let (db, connection) =
        tokio_postgres::connect(nodes[1].store.as_deref().unwrap(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let log = names_in_log(&db, &home).await;
    stop.store(log.last().unwrap().0, std::sync::atomic::Ordering::Relaxed);
    let seen = tokio::time::timeout(Duration::from_secs(20), follower).await.unwrap().unwrap();
    let last_seen: u64 = last_id.rsplit(':').next().unwrap().parse().unwrap();
    let expected: Vec<(u64, String)> = log.into_iter().filter(|(r, _)| *r > last_seen).collect();
    let names: Vec<String> = expected.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(names, (5..15).map(|i| format!("r{i}")).collect::<Vec<_>>());
    assert_eq!(
        seen, expected,
        "exactly the missed names, then the live ones, nothing before the last event id"
    );
}

/// An OAuth PIN flow whose steps land on different nodes, as behind a front: the sign-in
/// page from node A, the sign-in and the consent on node B, the exchange on node C; the
/// token works on A; the PIN replayed on B is refused and revokes the token everywhere.
#[tokio::test]
async fn an_oauth_flow_continues_on_any_node() {
    let nodes = cluster(3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let product = &a.demo["products"][1];
    let (id, secret) = (product["client_id"].as_str().unwrap(), product["client_secret"].as_str().unwrap());
    // One cookie jar for the browser; the nodes' CAs are each trusted.
    let mut builder =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none());
    for node in [a, b, c] {
        let pem = std::fs::read(node.dir.join("ca.pem")).unwrap();
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    let browser = builder.build().unwrap();
    let hidden = |html: &str, name: &str| {
        let key = format!("name=\"{name}\" value=\"");
        let start = html.find(&key).unwrap_or_else(|| panic!("no {name} in {html}")) + key.len();
        html[start..].split('"').next().unwrap().to_string()
    };
    let query = format!("client_id={id}&state=S");
    let html =
        browser.get(format!("{}/login/oauth2?{query}", a.url)).send().await.unwrap().text().await.unwrap();
    let form = [
        ("login", a.demo["login"].as_str().unwrap().to_string()),
        ("password", a.demo["password"].as_str().unwrap().to_string()),
        ("csrf", hidden(&html, "csrf")),
        ("next", query.clone()),
    ];
    let r = browser.post(format!("{}/login", b.url)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303, "signed in on B with A's form: {}", r.text().await.unwrap_or_default());
    let back = r.headers()["location"].to_str().unwrap().to_string();
    let html = browser.get(format!("{}{back}", b.url)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("would like to connect"), "{html}");
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("request", query.clone()),
        ("decision", "allow".to_string()),
        ("home", a.id("structure_id")),
    ];
    let r = browser.post(format!("{}/login/oauth2", b.url)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let pin = html.split("id=\"pin\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    let exchange = |node: &TestApp| {
        let (client, url) = (node.client.clone(), node.url.clone());
        let form = [
            ("client_id", id.to_string()),
            ("client_secret", secret.to_string()),
            ("code", pin.clone()),
            ("grant_type", "authorization_code".to_string()),
        ];
        async move {
            let r = client.post(format!("{url}/oauth2/access_token")).form(&form).send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, v) = exchange(c).await;
    assert_eq!(status, 200, "{v}");
    let token = v["access_token"].as_str().unwrap().to_string();
    let r = a.client.get(format!("{}/structures", a.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "the token works on A");
    let (status, v) = exchange(b).await;
    assert_eq!(
        (status, v["error"].clone()),
        (400, json!("invalid_grant")),
        "the PIN is single use across nodes"
    );
    for node in [a, b, c] {
        let mut refused = false;
        for _ in 0..20 {
            let r =
                node.client.get(format!("{}/structures", node.url)).bearer_auth(&token).send().await.unwrap();
            if r.status() == 401 {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(refused, "the replay revoked the token on {}", node.url);
    }
}

/// `scripts/cluster` in a directory of the test's own, stopped when the test ends.
struct ScriptedCluster {
    dir: tempfile::TempDir,
}

impl ScriptedCluster {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster")
    }

    fn up() -> ScriptedCluster {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(Self::script())
            .arg("up")
            .arg(dir.path())
            .env("BIN", env!("CARGO_BIN_EXE_roost"))
            .output()
            .unwrap();
        let cluster = ScriptedCluster { dir };
        assert!(
            out.status.success(),
            "scripts/cluster up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }
}

impl Drop for ScriptedCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script()).arg("down").arg(self.dir.path()).output();
    }
}

/// The front: nginx with deploy/nginx-roost.conf before three nodes, as `scripts/cluster up`
/// starts them. TLS from the client to nginx and from nginx to the nodes; a write through it
/// reaches a stream through it at once (nothing buffered).
#[tokio::test]
async fn the_nginx_front_carries_requests_and_streams_to_the_nodes() {
    let cluster = ScriptedCluster::up();
    let dir = cluster.dir.path();
    let url = std::fs::read_to_string(dir.join("url")).unwrap().trim().to_string();
    let demo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("node1/demo.json")).unwrap()).unwrap();
    let token = demo["access_token"].as_str().unwrap();
    let leaf = format!(
        "/devices/thermostats/{}/target_temperature_f",
        demo["devices"]["heat_pump_thermostat"].as_str().unwrap()
    );
    let pem = std::fs::read(dir.join("node1/ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .http1_only()
        .build()
        .unwrap();
    let r = client.get(format!("{url}{leaf}")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), json!(68));
    let r = client
        .get(format!("{url}{leaf}"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut events = Events::from_response(r);
    assert_eq!(events.next_data().await.2, json!(68));
    let r = client.put(format!("{url}{leaf}")).bearer_auth(token).body("73").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(events.next_data().await.2, json!(73), "the stream through the front got the write");
    // Every node answers through the front (requests go round the three).
    for _ in 0..6 {
        let r = client.get(format!("{url}/structures")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}
