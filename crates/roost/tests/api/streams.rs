//! REST streaming: initial put, puts only for relevant changes, keep-alive, auth_revoked.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp};

type EventStream = futures_util::stream::BoxStream<
    'static,
    Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>,
>;

/// A stream's events, parsed by a real SSE parser (text decoded across reads).
pub struct Events {
    stream: EventStream,
}

#[derive(Debug)]
pub struct Event {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

impl Events {
    pub async fn open(app: &TestApp, path: &str) -> Events {
        Events::open_with(app, path, None).await
    }

    /// A stream of `path` on `app`, opened with `token` instead of the app's own.
    pub async fn open_as(app: &TestApp, token: &str, path: &str) -> Events {
        let r = app
            .client
            .get(format!("{}{path}", app.url))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        Events::from_response(r)
    }

    pub fn from_response(r: reqwest::Response) -> Events {
        assert_eq!(r.status(), 200);
        Events { stream: r.bytes_stream().eventsource().boxed() }
    }

    pub async fn open_with(app: &TestApp, path: &str, last_event_id: Option<&str>) -> Events {
        let mut req = app.get(path).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Events { stream: r.bytes_stream().eventsource().boxed() }
    }

    /// The next `put` or `patch`: `(name, id, data)`.
    pub async fn next_data(&mut self) -> (String, String, Value) {
        loop {
            let e = self.next().await.expect("stream ended");
            if e.name == "put" || e.name == "patch" {
                let v: Value = serde_json::from_str(&e.data).unwrap();
                return (e.name, e.id.unwrap_or_default(), v["data"].clone());
            }
        }
    }

    /// The next event within `ms`, if any.
    pub async fn next_within(&mut self, ms: u64) -> Option<Event> {
        tokio::time::timeout(Duration::from_millis(ms), self.next()).await.ok().flatten()
    }

    pub async fn next(&mut self) -> Option<Event> {
        let e = tokio::time::timeout(Duration::from_secs(10), self.stream.next()).await.ok()??.ok()?;
        Some(Event { name: e.event, id: (!e.id.is_empty()).then_some(e.id), data: e.data })
    }

    pub async fn next_put(&mut self) -> Value {
        loop {
            let e = self.next().await.expect("stream ended");
            if e.name == "put" {
                let v: Value = serde_json::from_str(&e.data).unwrap();
                assert_eq!(v["path"], json!("/"));
                return v["data"].clone();
            }
        }
    }
}

#[tokio::test]
async fn initial_put_then_a_put_per_relevant_change() {
    let app = TestApp::spawn().await;
    let t = app.thermostat_path();
    let mut events = Events::open(&app, &t).await;
    let first = events.next_put().await;
    assert_eq!(first["target_temperature_f"], json!(68));
    // A change elsewhere (the structure's name) sends nothing to this stream.
    app.put_json(&app.structure_path(), json!({"name": "Elsewhere"})).await;
    app.put_json(&t, json!({"target_temperature_f": 70})).await;
    let second = events.next_put().await;
    assert_eq!(second["target_temperature_f"], json!(70));
    assert_eq!(second["target_temperature_c"], json!(21));
}

#[tokio::test]
async fn keep_alive_when_idle() {
    let app = TestApp::spawn_with(Options { keepalive_secs: Some(1), ..Options::default() }).await;
    let mut events = Events::open(&app, "/metadata").await;
    events.next_put().await;
    let e = events.next().await.unwrap();
    assert_eq!((e.name.as_str(), e.data.as_str()), ("keep-alive", "null"));
}

#[tokio::test]
async fn revocation_sends_auth_revoked_and_closes() {
    let app = TestApp::spawn().await;
    let mut events = Events::open(&app, "/").await;
    events.next_put().await;
    let out = crate::helpers::roost()
        .arg("admin")
        .arg("--data")
        .arg(&app.dir)
        .args(["token", "revoke", &app.token])
        .output()
        .unwrap();
    assert!(out.status.success());
    let e = events.next().await.unwrap();
    assert_eq!(e.name, "auth_revoked");
    assert_eq!(e.data, json!(app.token).to_string());
    assert!(events.next().await.is_none(), "the stream closed");
}

/// Streams look at their stop signals only after some stop was signalled; a revocation makes
/// every stream look, and only the revoked token's streams end.
#[tokio::test]
async fn revoking_one_token_leaves_other_tokens_streams_flowing() {
    let app = TestApp::spawn().await;
    let t = app.thermostat_path();
    let all = roost_model::PermissionSet::all().to_list().join(",");
    let issued =
        app.admin(&["token", "issue", "--user", app.demo["login"].as_str().unwrap(), "--permissions", &all]);
    let other = issued["access_token"].as_str().unwrap().to_string();
    let mut revoked = Events::open(&app, &t).await;
    revoked.next_put().await;
    let r =
        app.client.get(format!("{}{t}", app.url)).bearer_auth(&other).header("accept", "text/event-stream");
    let mut kept = Events::from_response(r.send().await.unwrap());
    kept.next_put().await;
    app.admin(&["token", "revoke", &app.token]);
    let e = revoked.next().await.unwrap();
    assert_eq!(e.name, "auth_revoked");
    let put = app
        .client
        .put(format!("{}{t}", app.url))
        .bearer_auth(&other)
        .body(json!({"target_temperature_f": 73}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    loop {
        let e = kept.next().await.expect("the other token's stream ended");
        assert_ne!(e.name, "auth_revoked");
        if e.name == "put" {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            if v["data"]["target_temperature_f"] == json!(73) {
                break;
            }
        }
    }
}

fn revision_of(id: &str) -> u64 {
    id.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn resume_with_last_event_id_gets_exactly_what_was_missed() {
    let app = TestApp::spawn().await;
    let t = app.thermostat_path();
    let mut events = Events::open(&app, &t).await;
    let (_, id, first) = events.next_data().await;
    assert_eq!(first["target_temperature_f"], json!(68));
    drop(events);
    // Missed while disconnected: three relevant changes and one elsewhere.
    for (i, f) in [70, 71, 72].iter().enumerate() {
        app.put_json(&t, json!({"target_temperature_f": f})).await;
        if i == 1 {
            app.put_json(&app.structure_path(), json!({"name": "Elsewhere"})).await;
        }
    }
    let mut events = Events::open_with(&app, &t, Some(&id)).await;
    let mut seen = Vec::new();
    let mut last_rev = revision_of(&id);
    while let Some(e) = events.next_within(1500).await {
        if e.name != "put" {
            continue;
        }
        let rev = revision_of(e.id.as_deref().unwrap());
        assert!(rev > last_rev, "revisions increase: {rev} after {last_rev}");
        last_rev = rev;
        let v: Value = serde_json::from_str(&e.data).unwrap();
        seen.push(v["data"]["target_temperature_f"].clone());
    }
    assert_eq!(seen, [json!(70), json!(71), json!(72)], "no gap, no duplicate");
    // The query parameter works too, and an up-to-date id replays nothing.
    let r = app
        .get(&format!("{t}?last_event_id={}", urlencode(&format!("{}:{last_rev}", app.id("structure_id")))))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut events = Events::from_response(r);
    assert!(
        events.next_within(800).await.is_none_or(|e| e.name == "keep-alive"),
        "nothing missed, nothing sent"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn resume_holds_across_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut app = TestApp::start(dir.clone(), None, Options::default()).await;
    let t = app.thermostat_path();
    app.put_json(&t, json!({"target_temperature_f": 69})).await;
    let mut events = Events::open(&app, &t).await;
    let (_, id, _) = events.next_data().await;
    drop(events);
    app.put_json(&t, json!({"target_temperature_f": 73})).await;
    app.kill();
    let app = TestApp::start(dir, None, Options::default()).await;
    app.put_json(&t, json!({"target_temperature_f": 74})).await;
    let mut events = Events::open_with(&app, &t, Some(&id)).await;
    let (_, _, a) = events.next_data().await;
    let (_, _, b) = events.next_data().await;
    assert_eq!(
        (a["target_temperature_f"].clone(), b["target_temperature_f"].clone()),
        (json!(73), json!(74))
    );
    assert!(events.next_within(800).await.is_none_or(|e| e.name == "keep-alive"));
    drop(tmp);
}

#[tokio::test]
async fn a_resume_the_log_cannot_serve_gets_resync_then_a_snapshot() {
    let app = TestApp::spawn_with(Options { changelog_keep: Some(2), ..Options::default() }).await;
    let t = app.thermostat_path();
    let mut events = Events::open(&app, &t).await;
    let (_, old_id, _) = events.next_data().await;
    drop(events);
    // The log keeps at least the window and every patch since the last whole-document
    // checkpoint (every 32 revisions), trimmed 16 revisions at a time: 100 writes are past
    // all of that whatever the structure's checkpoint offset.
    for i in 0..100 {
        app.put_json(&t, json!({"target_temperature_f": 60 + (i % 2)})).await;
    }
    for bad in [old_id.as_str(), "not-an-id", "elsewhere:1"] {
        let mut events = Events::open_with(&app, &t, Some(bad)).await;
        let e = events.next().await.unwrap();
        assert_eq!(e.name, "resync", "{bad}");
        let why: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(why["last_event_id"], json!(bad));
        let (name, _, data) = events.next_data().await;
        assert_eq!(name, "put");
        assert_eq!(data["target_temperature_f"], json!(61));
    }
}

#[tokio::test]
async fn delta_mode_reproduces_the_same_document_as_put_mode() {
    let app = TestApp::spawn().await;
    let mut puts = Events::open(&app, "/").await;
    let r = app.get("/?deltas=true").header("accept", "text/event-stream").send().await.unwrap();
    let mut deltas = Events::from_response(r);
    let (_, _, mut doc) = deltas.next_data().await;
    puts.next_data().await;
    let t = app.thermostat_path();
    let writes = [
        (t.clone(), json!({"target_temperature_f": 71})),
        (app.structure_path(), json!({"away": "away"})),
        (t.clone(), json!({"label": "den"})),
        (app.structure_path(), json!({"away": "home"})),
        (format!("/devices/cameras/{}", app.id("camera")), json!({"is_streaming": false})),
    ];
    for (path, body) in writes {
        let (s, _) = app.put_json(&path, body).await;
        assert_eq!(s, 200);
    }
    let (_, final_id, _) = {
        // Drain the put stream to its newest state.
        let mut last = puts.next_data().await;
        while let Some(e) = puts.next_within(700).await {
            if e.name == "put" {
                let v: Value = serde_json::from_str(&e.data).unwrap();
                last = ("put".into(), e.id.unwrap(), v["data"].clone());
            }
        }
        last
    };
    let (_, _, final_put) = {
        let mut p = Events::open(&app, "/").await;
        p.next_data().await
    };
    let mut patches = 0;
    loop {
        let Some(e) = deltas.next_within(700).await else { break };
        if e.name == "patch" {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            merge(&mut doc, &v["data"]);
            patches += 1;
            if e.id.as_deref() == Some(final_id.as_str()) {
                break;
            }
        }
    }
    assert!(patches >= 1);
    assert_eq!(doc, final_put, "patches rebuild the same document");
    assert_eq!(
        doc["devices"]["thermostats"][app.id("heat_pump_thermostat")]["name"],
        json!("Living Room (den)")
    );
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[tokio::test]
async fn no_change_falls_between_snapshot_and_subscription() {
    let app = TestApp::spawn_with(Options { max_streams_per_token: Some(1000), ..Options::default() }).await;
    let sid = app.id("structure_id");
    let (client, url, token) = (app.client.clone(), app.url.clone(), app.token.clone());
    let writer = tokio::spawn(async move {
        let mut n = 0;
        for i in 1..=150u64 {
            let body = json!({"location": {"structure_id": sid}, "seq": i});
            let r = client
                .put(format!("{url}/devices/acme/meter/m1"))
                .bearer_auth(&token)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            n = i;
        }
        n
    });
    // Streams open while the writes land; each must end on the final value.
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(Events::open(&app, "/devices/acme/meter/m1/seq").await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = writer.await.unwrap();
    for mut s in streams {
        let mut value = Value::Null;
        let mut prev = 0;
        while let Some(e) = s.next_within(1000).await {
            if e.name == "put" {
                let v: Value = serde_json::from_str(&e.data).unwrap();
                value = v["data"].clone();
                let n = value.as_u64().unwrap_or(0);
                assert!(n >= prev, "values never go back");
                prev = n;
                if n == last {
                    break;
                }
            }
        }
        assert_eq!(value, json!(last));
    }
}

#[tokio::test]
async fn a_slow_consumer_does_not_delay_a_fast_one_or_the_writers() {
    let app = TestApp::spawn().await;
    let h1 = crate::helpers::client_for(&app.dir, true);
    // The slow one never reads; on its own HTTP/1.1 connection its socket fills up.
    let slow = h1
        .get(format!("{}/", app.url))
        .bearer_auth(&app.token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut fast = Events::open(&app, "/").await;
    fast.next_data().await;
    let t = app.thermostat_path();
    let started = std::time::Instant::now();
    for i in 0..600 {
        let label = format!("{}{}", "x".repeat(40), i);
        let (s, _) = app.put_json(&t, json!({"label": label})).await;
        assert_eq!(s, 200);
    }
    let writes_took = started.elapsed();
    let mut newest = String::new();
    while let Some(e) = fast.next_within(1500).await {
        if e.name == "put" {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            newest = v["data"]["devices"]["thermostats"][app.id("heat_pump_thermostat")]["label"]
                .as_str()
                .unwrap()
                .to_string();
            if newest.ends_with("599") {
                break;
            }
        }
    }
    assert!(newest.ends_with("599"), "the fast stream reached the newest state: {newest}");
    assert!(writes_took < Duration::from_secs(60));
    drop(slow);
}

#[tokio::test]
async fn stream_limits_answer_429_blocked_with_retry_after() {
    let app = TestApp::spawn_with(Options { max_streams_per_token: Some(2), ..Options::default() }).await;
    let a = Events::open(&app, "/").await;
    let _b = Events::open(&app, "/metadata").await;
    let r = app.get("/").header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], json!("blocked"));
    drop(a);
    let mut ok = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = app.get("/").header("accept", "text/event-stream").send().await.unwrap();
        if r.status() == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "a closed stream frees its place");
}

#[tokio::test]
async fn many_streams_on_one_http2_connection_each_get_every_change_in_order() {
    // Past hyper's default of 200 streams per connection writes still get through, and with
    // more streams on one structure than a commit wakes at once, the rest are woken in chunks
    // while the next writes commit.
    let app = TestApp::spawn_with(Options { max_streams_per_token: Some(1000), ..Options::default() }).await;
    let mut streams = Vec::new();
    for _ in 0..300 {
        streams.push(Events::open(&app, &app.thermostat_path()).await);
    }
    for s in streams.iter_mut() {
        assert_eq!(s.next_data().await.2["target_temperature_f"], json!(68));
    }
    for target in [66, 67, 65] {
        let (status, _) = app.put_json(&app.thermostat_path(), json!({"target_temperature_f": target})).await;
        assert_eq!(status, 200);
    }
    for (i, s) in streams.iter_mut().enumerate() {
        let mut seen: Vec<Value> = Vec::new();
        while seen.last() != Some(&json!(65)) {
            let value = s.next_data().await.2["target_temperature_f"].clone();
            if seen.last() != Some(&value) {
                seen.push(value);
            }
        }
        assert_eq!(seen, vec![json!(66), json!(67), json!(65)], "stream {i}");
    }
}
