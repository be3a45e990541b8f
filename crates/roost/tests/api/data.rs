//! The data API over HTTPS: reads, writes, conditional writes, the front door, operations.

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, client_for};

#[tokio::test]
async fn reads_any_location() {
    let app = TestApp::spawn().await;
    let t = app.thermostat_path();
    let (s, v) = app.get_json(&format!("{t}/target_temperature_f")).await;
    assert_eq!((s, v), (200, json!(68)));
    let (s, v) = app.get_json(&t).await;
    assert_eq!(s, 200);
    assert_eq!(v["name_long"], json!("Living Room Thermostat (Heat pump)"));
    let (s, v) = app.get_json("/").await;
    assert_eq!(s, 200);
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["devices", "metadata", "structures"]);
    assert_eq!(v["metadata"]["access_token"], json!(app.token));
    let (s, v) = app.get_json(&format!("{}/away", app.structure_path())).await;
    assert_eq!((s, v), (200, json!("home")));
    let (s, v) = app.get_json("/metadata/client_version").await;
    assert_eq!((s, v), (200, json!(1)));
    let (s, v) = app.get_json("/devices/smoke_co_alarms").await;
    assert_eq!(s, 200);
    assert_eq!(v.as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn missing_locations_are_404_in_the_error_shape() {
    let app = TestApp::spawn().await;
    for path in [
        "/devices/thermostats/nope",
        "/nothing",
        "/structures/x/away",
        &format!("{}/warp", app.thermostat_path()),
    ] {
        let (s, v) = app.get_json(path).await;
        assert_eq!(s, 404, "{path}");
        assert_eq!(v["error"], json!("not found"));
        assert!(v["instance"].as_str().unwrap().len() >= 32);
        assert!(v["type"].as_str().unwrap().ends_with("#error-not-found"));
    }
}

#[tokio::test]
async fn writes_merge_and_echo() {
    let app = TestApp::spawn().await;
    let t = app.thermostat_path();
    let (s, v) = app.put_json(&t, json!({"target_temperature_f": 71})).await;
    assert_eq!((s, v), (200, json!({"target_temperature_f": 71})));
    let (_, v) = app.get_json(&t).await;
    assert_eq!(v["target_temperature_f"], json!(71));
    assert_eq!(v["target_temperature_c"], json!(21.5));
    assert_eq!(v["hvac_mode"], json!("heat"), "other fields stay");
    // PATCH is the same; a bare value at a leaf replaces it.
    let r = app
        .client
        .patch(format!("{}{t}", app.url))
        .bearer_auth(&app.token)
        .body(r#"{"label":"den"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = app.put_json(&format!("{t}/target_temperature_c"), json!(20)).await;
    assert_eq!((s, v), (200, json!(20)));
    let (_, v) = app.get_json(&t).await;
    assert_eq!(
        (v["target_temperature_f"].clone(), v["name"].clone()),
        (json!(68), json!("Living Room (den)"))
    );
}

#[tokio::test]
async fn auth_by_header_or_query_and_content_type_is_optional() {
    let app = TestApp::spawn().await;
    let t = app.thermostat_path();
    let r = app.client.get(format!("{}{t}/hvac_mode?auth={}", app.url, app.token)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!("heat"));
    // python-nest sends PUT bodies with no Content-Type; curl sends form encoding.
    for ct in [None, Some("application/x-www-form-urlencoded"), Some("application/json")] {
        let mut req = app
            .client
            .put(format!("{}{t}", app.url))
            .bearer_auth(&app.token)
            .body(r#"{"target_temperature_f":69}"#);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        assert_eq!(req.send().await.unwrap().status(), 200, "{ct:?}");
    }
}

#[tokio::test]
async fn rules_refuse_with_the_original_error_json() {
    let app = TestApp::spawn().await;
    let t = app.thermostat_path();
    let (s, v) = app.put_json(&t, json!({"hvac_mode": "cool"})).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], json!("Cannot change HVAC mode to cool while emergency heat is on"));
    let (s, v) = app.put_json(&t, json!({"target_temperature_f": 100})).await;
    assert_eq!(s, 400);
    assert_eq!(v["details"], json!({"tempF": "100.0"}));
    // A refused multi-device write changes nothing.
    let body = json!({app.id("heat_pump_thermostat"): {"target_temperature_f": 75}, app.id("heat_only_thermostat"): {"hvac_mode": "cool"}});
    let (s, _) = app.put_json("/devices/thermostats", body).await;
    assert_eq!(s, 400);
    let (_, v) = app.get_json(&format!("{t}/target_temperature_f")).await;
    assert_eq!(v, json!(68));
}

#[tokio::test]
async fn etag_and_if_match_protect_against_lost_updates() {
    let app = TestApp::spawn().await;
    let t = app.thermostat_path();
    let r = app.get(&t).send().await.unwrap();
    let tag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(tag, "\"1\"");
    let ok = app.put(&t, json!({"target_temperature_f": 70})).header("if-match", &tag).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["etag"], "\"2\"");
    let stale =
        app.put(&t, json!({"target_temperature_f": 72})).header("if-match", &tag).send().await.unwrap();
    assert_eq!(stale.status(), 412);
    let v: Value = stale.json().await.unwrap();
    assert_eq!(v["details"], json!({"revision": "2"}));
    let (_, v) = app.get_json(&format!("{t}/target_temperature_f")).await;
    assert_eq!(v, json!(70), "the stale write did not land");
    let star = app.put(&t, json!({"target_temperature_f": 72})).header("if-match", "*").send().await.unwrap();
    assert_eq!(star.status(), 200);
}

#[tokio::test]
async fn the_front_door_redirects_with_307() {
    let app = TestApp::spawn_with(Options { front: true, ..Options::default() }).await;
    let front = app.front.clone().unwrap();
    let r = app
        .client
        .get(format!("https://localhost:{}{}?x=1", front.rsplit(':').next().unwrap(), app.thermostat_path()))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(loc, format!("{}{}?x=1", app.url, app.thermostat_path()));
    let r = app.client.get(&loc).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn operations_endpoints() {
    let app = TestApp::spawn().await;
    let r = app.client.get(format!("{}/healthz", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(format!("{}/readyz", app.url)).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ready", "structures": 1}));
    app.put_json(&app.thermostat_path(), json!({"target_temperature_f": 70})).await;
    let text = app.client.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("roost_http_requests_total"), "{text}");
    assert!(text.contains("roost_store_commit_batch_size"), "{text}");
    assert!(text.contains("roost_store_write_queue_seconds_count"), "{text}");
    assert!(text.contains("roost_store_write_seconds_count"), "{text}");
    assert!(text.contains("roost_writes_total"), "{text}");
}

#[tokio::test]
async fn http1_and_http2_and_plain_http_on_loopback() {
    let app = TestApp::spawn().await;
    let h1 = client_for(&app.dir, true);
    let r = h1.get(format!("{}/", app.url)).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
    let r = app.get("/").send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    drop(app);
    let plain = TestApp::spawn_with(Options { insecure_http: true, ..Options::default() }).await;
    assert!(plain.url.starts_with("http://127.0.0.1:"));
    let (s, _) = plain.get_json("/").await;
    assert_eq!(s, 200);
}

/// Data requests skip the router (`roost_server::Front`); a path only the router's fallback
/// takes (a percent-encoded first segment) reaches the same handler through it. Both must
/// answer alike: status, body, length, `HEAD` without a body, and the request metrics.
#[tokio::test]
async fn data_requests_answer_alike_with_or_without_the_router() {
    let app = TestApp::spawn().await;
    let id = app.id("heat_pump_thermostat");
    let direct = format!("/devices/thermostats/{id}");
    let routed = format!("/%64evices/thermostats/{id}");
    let metrics = || async {
        let text = app.client.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find(|l| {
                l.starts_with("roost_http_requests_total")
                    && l.contains("method=\"GET\"")
                    && l.contains("status=\"200\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = metrics().await;
    let mut answers = Vec::new();
    for path in [&direct, &routed] {
        let r = app.get(path).send().await.unwrap();
        let status = r.status().as_u16();
        let length = r.headers().get("content-length").map(|v| v.to_str().unwrap().to_string());
        let body = r.bytes().await.unwrap();
        assert_eq!(length.as_deref(), Some(body.len().to_string().as_str()), "{path}");
        let head =
            app.client.head(format!("{}{path}", app.url)).bearer_auth(&app.token).send().await.unwrap();
        assert_eq!(head.status().as_u16(), 200, "{path}");
        let head_length = head.headers().get("content-length").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(head_length, length, "{path}");
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
        let (missing, error) = app.get_json(&format!("{path}/no_such_field")).await;
        answers.push((
            status,
            serde_json::from_slice::<Value>(&body).unwrap(),
            missing,
            error["error"].clone(),
        ));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[0].2, 404);
    // The two data GETs answered 200, and the first /metrics read (a request counts once
    // answered, so a read never sees itself; the HEADs count under their own method).
    assert_eq!(metrics().await, before + 3);
}

/// A token over several homes: a request for one element reaches it in whichever home it is
/// (through the server's index of devices, also for a device another process added later),
/// reads, writes and streams alike; another user's element stays 404.
#[tokio::test]
async fn a_token_over_several_homes_reaches_each_homes_elements() {
    let app = TestApp::spawn().await;
    let user = app.demo["user_id"].as_str().unwrap().to_string();
    let homes: Vec<String> = (0..3)
        .map(|i| {
            let h = app.admin(&["structure", "create", "--owner", &user, "--name", &format!("Home {i}")]);
            h["structure_id"].as_str().unwrap().to_string()
        })
        .collect();
    let token = app.admin(&["token", "issue", "--user", &user])["access_token"].as_str().unwrap().to_string();
    let added =
        app.admin(&["device", "add", "--structure", &homes[2], "--kind", "thermostat", "--where", "Office"]);
    let device = added["device_id"].as_str().unwrap();
    let leaf = format!("/devices/thermostats/{device}/target_temperature_f");
    let get = |path: String| {
        let (client, url, token) = (app.client.clone(), app.url.clone(), token.clone());
        async move {
            let r = client.get(format!("{url}{path}")).bearer_auth(&token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The server learns of the admin's device within a poll.
    let mut status = 0;
    for _ in 0..50 {
        status = get(leaf.clone()).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the added device is reached");
    let mut events = crate::streams::Events::open_as(&app, &token, &leaf).await;
    events.next_data().await;
    let r = app.client.put(format!("{}{leaf}", app.url)).bearer_auth(&token).body("71").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(leaf.clone()).await.1, json!(71));
    assert_eq!(events.next_data().await.2, json!(71), "the leaf's stream saw the write");
    // The demo home's devices and every home's structure element, with the same token.
    assert_eq!(get(format!("{}/target_temperature_f", app.thermostat_path())).await.0, 200);
    for h in &homes {
        assert_eq!(get(format!("/structures/{h}/name")).await.0, 200, "{h}");
    }
    // Another user's home and device: 404 as before.
    app.admin(&["user", "create", "--login", "other@example.com"]);
    let theirs = app.admin(&["structure", "create", "--owner", "other@example.com"]);
    let theirs = theirs["structure_id"].as_str().unwrap();
    let their_device =
        app.admin(&["device", "add", "--structure", theirs, "--kind", "thermostat", "--where", "Den"]);
    let their_device = their_device["device_id"].as_str().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(get(format!("/devices/thermostats/{their_device}")).await.0, 404);
    assert_eq!(get(format!("/structures/{theirs}")).await.0, 404);
}

/// Homes load on first use and, past `--cache-homes`, the least recently used that no stream
/// follows are let go: they answer as before (loaded again), and a followed home keeps
/// sending its stream every change.
#[tokio::test]
async fn homes_load_on_first_use_and_the_least_used_are_let_go() {
    use std::time::{Duration, Instant};
    let app = TestApp::spawn_with(Options {
        extra: vec!["--cache-homes".into(), "2".into()],
        ..Options::default()
    })
    .await;
    let user = app.demo["user_id"].as_str().unwrap().to_string();
    let homes: Vec<String> = (0..4)
        .map(|i| {
            let h = app.admin(&["structure", "create", "--owner", &user, "--name", &format!("Home {i}")]);
            h["structure_id"].as_str().unwrap().to_string()
        })
        .collect();
    let token = app.admin(&["token", "issue", "--user", &user])["access_token"].as_str().unwrap().to_string();
    let held = || async {
        let r = app.client.get(format!("{}/readyz", app.url)).send().await.unwrap();
        r.json::<Value>().await.unwrap()["structures"].as_u64().unwrap()
    };
    assert!(held().await <= 1, "start-up loads no home (the demo's may be loaded by the clock)");
    let name = |h: String| {
        let (client, url, token) = (app.client.clone(), app.url.clone(), token.clone());
        async move {
            let r =
                client.get(format!("{url}/structures/{h}/name")).bearer_auth(&token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    for (i, h) in homes.iter().enumerate() {
        assert_eq!(name(h.clone()).await, json!(format!("Home {i}")));
    }
    assert!(held().await >= 4, "each home loaded on first use");
    let followed = &homes[3];
    let mut events =
        crate::streams::Events::open_as(&app, &token, &format!("/structures/{followed}/name")).await;
    events.next_data().await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while held().await > 2 {
        assert!(Instant::now() < deadline, "homes past the bound were never let go");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (i, h) in homes.iter().enumerate() {
        assert_eq!(name(h.clone()).await, json!(format!("Home {i}")), "let go, then loaded again");
    }
    let r = app
        .client
        .put(format!("{}/structures/{followed}", app.url))
        .bearer_auth(&token)
        .body(r#"{"name": "Still followed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(events.next_data().await.2, json!("Still followed"), "the followed home was kept");
}
