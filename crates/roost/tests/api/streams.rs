//! REST streaming: initial put, puts only for relevant changes, keep-alive, auth_revoked.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp};

pub struct Events {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

#[derive(Debug)]
pub struct Event {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

impl Events {
    pub async fn open(app: &TestApp, path: &str) -> Events {
        let r = app.get(path).header("accept", "text/event-stream").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Events { stream: r.bytes_stream().boxed(), buf: String::new() }
    }

    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..i + 2).collect();
                let mut e = Event { name: "message".into(), id: None, data: String::new() };
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        e.name = v.into();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        e.id = Some(v.into());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        e.data.push_str(v);
                    }
                }
                return Some(e);
            }
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), self.stream.next()).await.ok()??.ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
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
