//! The device side: device credentials, intended vs reported state, idempotent and late
//! reports, connectivity from a killed device process, Home/Away Assist, safety shutoff, the
//! simulator converging on a faulty network, and the demo home alive.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, roost};
use crate::streams::Events;

/// A device's own client: its credential on the app's URL.
struct DeviceClient<'a> {
    app: &'a TestApp,
    token: String,
    path: String,
}

impl DeviceClient<'_> {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.app.client.request(method, format!("{}{path}", self.app.url)).bearer_auth(&self.token)
    }

    async fn report(&self, body: Value, key: Option<&str>, measured: Option<&str>) -> reqwest::Response {
        let mut r = self.req(reqwest::Method::PUT, &self.path).body(body.to_string());
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        if let Some(m) = measured {
            r = r.header("roost-measured-at", m);
        }
        r.send().await.unwrap()
    }
}

/// Pairs a demo device through the admin command.
fn pair<'a>(app: &'a TestApp, name: &str) -> (DeviceClient<'a>, Value) {
    let c = app.admin(&["device", "pair", "--device", &app.id(name)]);
    let client = DeviceClient {
        app,
        token: c["device_token"].as_str().unwrap().to_string(),
        path: format!("/devices/{}/{}", c["kind"].as_str().unwrap(), c["device_id"].as_str().unwrap()),
    };
    (client, c)
}

/// Polls `path` until `check` holds (or panics after `secs`).
async fn eventually(app: &TestApp, path: &str, secs: u64, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, v) = app.get_json(path).await;
        if status == 200 && check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{path} never matched; last: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_device_credential_sees_and_writes_only_its_own_device() {
    let app = TestApp::spawn().await;
    let (dev, cred) = pair(&app, "heat_pump_thermostat");
    assert_eq!(cred["structure_id"], json!(app.id("structure_id")));
    // Pairing a device that is not there (or not in the named structure) fails clearly.
    for extra in [vec![], vec!["--structure", cred["structure_id"].as_str().unwrap()]] {
        let out = roost()
            .args(["admin", "--data"])
            .arg(&app.dir)
            .args(["device", "pair", "--device", "no-such-device"])
            .args(&extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no device 'no-such-device'"));
    }
    // Its view: only itself, at its usual place; nothing else exists for it.
    let r = dev.req(reqwest::Method::GET, "/").send().await.unwrap();
    let view: Value = r.json().await.unwrap();
    let hp = app.id("heat_pump_thermostat");
    assert_eq!(view["devices"]["thermostats"].as_object().unwrap().len(), 1);
    assert!(view["devices"]["thermostats"][&hp]["target_temperature_f"].is_number());
    assert!(view.get("structures").is_none() && view.get("metadata").is_none());
    assert!(!view.to_string().contains("reported_at"), "internal fields stay internal");
    for other in [app.structure_path(), format!("/devices/thermostats/{}", app.id("heat_only_thermostat"))] {
        let r = dev.req(reqwest::Method::GET, &other).send().await.unwrap();
        assert_eq!(r.status(), 404, "{other}");
    }
    // It reports its measurements; products cannot.
    let r = dev
        .report(json!({"ambient_temperature_f": 66, "humidity": 45, "hvac_state": "heating"}), None, None)
        .await;
    assert_eq!(r.status(), 200);
    let (_, t) = app.get_json(&app.thermostat_path()).await;
    assert_eq!((t["ambient_temperature_f"].clone(), t["humidity"].clone()), (json!(66), json!(45)));
    let (status, e) = app.put_json(&app.thermostat_path(), json!({"ambient_temperature_f": 80})).await;
    assert_eq!(
        (status, e["error"].clone()),
        (400, json!("No write permission(s) for field(s): ambient_temperature_f"))
    );
    // Not another device, not the structure, not what the service keeps.
    let other = format!("/devices/thermostats/{}", app.id("heat_only_thermostat"));
    let r =
        dev.req(reqwest::Method::PUT, &other).body(r#"{"ambient_temperature_f": 60}"#).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = dev.report(json!({"is_online": false}), None, None).await;
    assert_eq!(r.status(), 400);
    // Unpairing revokes it: requests are refused and its stream ends with auth_revoked.
    let r =
        dev.req(reqwest::Method::GET, &dev.path).header("accept", "text/event-stream").send().await.unwrap();
    let mut events = Events::from_response(r);
    events.next_put().await;
    app.admin(&["device", "unpair", "--device", &hp]);
    loop {
        let e = events.next().await.expect("stream ended without auth_revoked");
        if e.name == "auth_revoked" {
            break;
        }
    }
    let r = dev.req(reqwest::Method::GET, &dev.path).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn intended_state_is_pending_until_the_device_applies_it() {
    let app = TestApp::spawn().await;
    let (dev, _) = pair(&app, "heat_pump_thermostat");
    let path = app.thermostat_path();
    let (_, t) = app.get_json(&path).await;
    assert_eq!(t["sync_state"], json!("synced"));
    let v0 = t["intended_version"].as_u64().unwrap();
    // A product changes the target: pending, and the device hears it on its stream.
    let r =
        dev.req(reqwest::Method::GET, &dev.path).header("accept", "text/event-stream").send().await.unwrap();
    let mut events = Events::from_response(r);
    events.next_put().await;
    let (status, _) = app.put_json(&path, json!({"target_temperature_f": 73})).await;
    assert_eq!(status, 200);
    let (_, t) = app.get_json(&path).await;
    assert_eq!((t["sync_state"].clone(), t["intended_version"].clone()), (json!("pending"), json!(v0 + 1)));
    let heard = events.next_put().await;
    assert_eq!(
        (heard["target_temperature_f"].clone(), heard["intended_version"].clone()),
        (json!(73), json!(v0 + 1))
    );
    // Acknowledging a version that does not exist is refused; the right one syncs.
    let r = dev.report(json!({"applied_version": v0 + 5}), None, None).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["type"].as_str().unwrap().ends_with("#error-applied-ahead"), "{e}");
    let r = dev.report(json!({"applied_version": v0 + 1, "hvac_state": "heating"}), None, None).await;
    assert_eq!(r.status(), 200);
    let (_, t) = app.get_json(&path).await;
    assert_eq!((t["sync_state"].clone(), t["applied_version"].clone()), (json!("synced"), json!(v0 + 1)));
    // A change at the dial is intended and applied at once, under the same rules.
    let r = dev.report(json!({"target_temperature_f": 70}), None, None).await;
    assert_eq!(r.status(), 200);
    let (_, t) = app.get_json(&path).await;
    assert_eq!((t["target_temperature_f"].clone(), t["sync_state"].clone()), (json!(70), json!("synced")));
    let r = dev.report(json!({"target_temperature_f": 95}), None, None).await;
    assert_eq!(r.status(), 400, "the dial passes the same range rule");
}

#[tokio::test]
async fn a_retried_report_applies_once_and_a_late_one_never_overwrites() {
    let app = TestApp::spawn().await;
    let (dev, _) = pair(&app, "heat_pump_thermostat");
    let path = app.thermostat_path();
    let r = dev.report(json!({"humidity": 50}), Some("r-1"), None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("idempotent-replayed").is_none());
    // Another report changes it; then the first is retried (its answer was lost).
    dev.report(json!({"humidity": 55}), Some("r-2"), None).await;
    let r = dev.report(json!({"humidity": 50}), Some("r-1"), None).await;
    assert_eq!((r.status().as_u16(), r.headers()["idempotent-replayed"].to_str().unwrap()), (200, "true"));
    let (_, t) = app.get_json(&path).await;
    assert_eq!(t["humidity"], json!(55), "the retry did not apply again");
    // A key from another device does not collide.
    let (other, _) = pair(&app, "heat_only_thermostat");
    let r = other.report(json!({"humidity": 35}), Some("r-1"), None).await;
    assert!(r.headers().get("idempotent-replayed").is_none());
    // Late: measured before what is stored.
    let now = chrono::Utc::now();
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let r = dev.report(json!({"ambient_temperature_f": 71}), Some("m-1"), Some(&fmt(now))).await;
    assert_eq!(r.status(), 200);
    let late = fmt(now - chrono::Duration::seconds(30));
    let r =
        dev.report(json!({"ambient_temperature_f": 60, "hvac_state": "off"}), Some("m-2"), Some(&late)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["roost-stale-fields"].to_str().unwrap(), format!("{path}/ambient_temperature_f"));
    let (_, t) = app.get_json(&path).await;
    assert_eq!((t["ambient_temperature_f"].clone(), t["hvac_state"].clone()), (json!(71), json!("off")));
    // Malformed headers get a clear error and change nothing.
    for (h, v) in [("idempotency-key", ""), ("roost-measured-at", "yesterday")] {
        let r = dev
            .req(reqwest::Method::PUT, &dev.path)
            .header(h, v)
            .body(r#"{"humidity": 20}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{h}");
        let e: Value = r.json().await.unwrap();
        assert!(e["type"].as_str().unwrap().ends_with("#error-invalid-header"), "{e}");
    }
    let (_, t) = app.get_json(&path).await;
    assert_eq!(t["humidity"], json!(55));
    // Products may send keys too (a retried PUT from an app).
    for _ in 0..2 {
        let r = app
            .put(&path, json!({"target_temperature_f": 72}))
            .header("idempotency-key", "app-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The change log names each applied request's key with its writer, once.
    let store =
        roost_store::SqliteStore::open(&app.dir.join("roost.db"), roost_store::StoreOptions::default())
            .unwrap();
    let changes =
        roost_store::Store::changes_after(store.as_ref(), &app.id("structure_id"), 0, 100_000).await.unwrap();
    let hp = app.id("heat_pump_thermostat");
    let count = |actor: String| changes.iter().filter(|c| c.actor == actor).count();
    assert_eq!(count(format!("device:{hp} key:r-1")), 1);
    assert_eq!(count(format!("device:{hp} key:r-2")), 1);
    assert_eq!(count(format!("device:{} key:r-1", app.id("heat_only_thermostat"))), 1);
    assert_eq!(changes.iter().filter(|c| c.actor.ends_with(" key:app-1")).count(), 1);
}

/// A `roost sim` process, killed when dropped (also when a test fails).
struct Sim(Child);

impl Sim {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `roost sim` on credentials written to a file.
fn start_sim(app: &TestApp, creds: &[Value], extra: &[&str]) -> (Sim, std::path::PathBuf) {
    let file = app.dir.join(format!("creds-{}.json", creds.len()));
    std::fs::write(&file, Value::Array(creds.to_vec()).to_string()).unwrap();
    let status = app.dir.join("sim-status.json");
    let child = roost()
        .args(["sim", "--devices"])
        .arg(&file)
        .args(["--url", &app.url, "--ca"])
        .arg(app.dir.join("ca.pem"))
        .arg("--status")
        .arg(&status)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    (Sim(child), status)
}

#[tokio::test]
async fn online_and_offline_follow_a_killed_device_process() {
    let opts = Options {
        extra: vec!["--offline-timeout-secs".into(), "2".into(), "--tick-ms".into(), "200".into()],
        ..Options::default()
    };
    let app = TestApp::spawn_with(opts).await;
    let (_, cred) = pair(&app, "heat_only_thermostat");
    let path = format!("/devices/thermostats/{}", app.id("heat_only_thermostat"));
    // Paired but silent: offline after the timeout.
    let off = eventually(&app, &path, 15, |t| t["is_online"] == json!(false)).await;
    let went_off = off["last_is_online_change"].as_str().unwrap().to_string();
    // The device process connects: online, last_connection now.
    let (mut sim, _) = start_sim(&app, std::slice::from_ref(&cred), &[]);
    let on = eventually(&app, &path, 15, |t| t["is_online"] == json!(true)).await;
    assert!(on["last_is_online_change"].as_str().unwrap() > went_off.as_str());
    assert_eq!(on["last_connection"], on["last_is_online_change"]);
    // kill -9: its stream drops without a goodbye; offline after the timeout.
    sim.kill();
    let killed = Instant::now();
    let off = eventually(&app, &path, 15, |t| t["is_online"] == json!(false)).await;
    assert!(killed.elapsed() >= Duration::from_secs(2), "not before the timeout");
    assert!(off["last_is_online_change"].as_str().unwrap() > on["last_is_online_change"].as_str().unwrap());
    // Back again.
    let (mut sim, _) = start_sim(&app, &[cred], &[]);
    eventually(&app, &path, 15, |t| t["is_online"] == json!(true)).await;
    sim.kill();
}

/// `PUT /presence/<the app's structure>` with `body`, as `token`.
async fn put_presence(app: &TestApp, token: &str, body: &'static str) -> reqwest::Response {
    let url = format!("{}/presence/{}", app.url, app.id("structure_id"));
    app.client.put(url).bearer_auth(token).body(body).send().await.unwrap()
}

#[tokio::test]
async fn home_away_assist_eco_presence_and_security_over_the_api() {
    let opts = Options {
        extra: [
            "--assist-quiet-secs",
            "3",
            "--assist-hold-secs",
            "0",
            "--security-quiet-secs",
            "2",
            "--tick-ms",
            "200",
        ]
        .map(String::from)
        .to_vec(),
        ..Options::default()
    };
    let app = TestApp::spawn_with(opts).await;
    let s = app.structure_path();
    let hp = app.thermostat_path();
    // The demo's heat-pump thermostat heats; its last motion was minutes ago: quiet, so the
    // home turns away (perhaps already) and eco follows.
    let before = json!({"hvac_mode": "heat"});
    let away = eventually(&app, &s, 20, |v| v["away"] == json!("away")).await;
    assert_eq!(away["away_set_by"], json!("assist"));
    let (_, t) = app.get_json(&hp).await;
    assert_eq!(
        (t["hvac_mode"].clone(), t["previous_hvac_mode"].clone()),
        (json!("eco"), before["hvac_mode"].clone())
    );
    assert_eq!(t["sync_state"], json!("pending"), "the thermostat has eco to apply");
    // A person at the camera of the away home: deter, and the home stays away.
    let (cam, _) = pair(&app, "camera");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let r = cam
        .report(json!({"last_event": {"has_person": true, "has_motion": true, "start_time": now, "end_time": now}}), None, None)
        .await;
    assert_eq!(r.status(), 200);
    let (_, v) = app.get_json(&s).await;
    assert_eq!((v["wwn_security_state"].clone(), v["away"].clone()), (json!("deter"), json!("away")));
    // Quiet relaxes it.
    eventually(&app, &s, 10, |v| v["wwn_security_state"] == json!("ok")).await;
    // A phone says someone is home: home, eco undone.
    let r = put_presence(&app, &app.token, r#"{"present": true}"#).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!((answer["away"].clone(), answer["away_set_by"].clone()), (json!("home"), json!("assist")));
    let (_, t) = app.get_json(&hp).await;
    assert_eq!(t["hvac_mode"], before["hvac_mode"]);
    // Presence needs away:write; a device credential cannot use it; bad bodies are refused.
    let r = put_presence(&app, &cam.token, r#"{"present": true}"#).await;
    assert_eq!(r.status(), 404);
    let r = put_presence(&app, &app.token, r#"{"present": "yes"}"#).await;
    assert_eq!(r.status(), 400);
    // A person's own "away" is kept (hold 0 here means: until a newer signal).
    let (status, _) = app.put_json(&s, json!({"away": "away"})).await;
    assert_eq!(status, 200);
    let (_, v) = app.get_json(&s).await;
    assert_eq!(v["away_set_by"], json!("user"));
}

#[tokio::test]
async fn rush_hour_is_set_by_the_operator_and_read_with_energy() {
    let app = TestApp::spawn().await;
    let sid = app.id("structure_id");
    let r = app.admin(&[
        "structure",
        "rush-hour",
        "--structure",
        &sid,
        "--start",
        "2026-12-01T22:00:00.000Z",
        "--end",
        "2026-12-02T01:00:00Z",
        "--enrolled",
        "true",
    ]);
    assert!(r["revision"].as_u64().unwrap() > 1);
    let s = eventually(&app, &app.structure_path(), 10, |s| s["rhr_enrollment"] == json!(true)).await;
    assert_eq!(
        (s["peak_period_start_time"].clone(), s["peak_period_end_time"].clone()),
        (json!("2026-12-01T22:00:00.000Z"), json!("2026-12-02T01:00:00.000Z"))
    );
    // Products cannot set them; a bad time is refused by the command.
    let (status, _) = app.put_json(&app.structure_path(), json!({"rhr_enrollment": false})).await;
    assert_eq!(status, 400);
    let out = roost()
        .args(["admin", "--data"])
        .arg(&app.dir)
        .args(["structure", "rush-hour", "--structure", &sid, "--start", "tonight"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--start (peak_period_start_time): 'tonight'"));
}

#[tokio::test]
async fn a_protect_emergency_shuts_the_hvac_off_for_products() {
    let app = TestApp::spawn().await;
    let (protect, _) = pair(&app, "kitchen_protect");
    let r = protect.report(json!({"smoke_alarm_state": "emergency"}), None, None).await;
    assert_eq!(r.status(), 200);
    let (_, s) = app.get_json(&app.structure_path()).await;
    assert_eq!(s["smoke_alarm_state"], json!("emergency"));
    let (status, e) = app.put_json(&app.thermostat_path(), json!({"fan_timer_active": true})).await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = app.put_json(&app.thermostat_path(), json!({"hvac_mode": "cool"})).await;
    assert_eq!(status, 400, "{e}");
    // Clear: allowed again.
    protect.report(json!({"smoke_alarm_state": "ok"}), None, None).await;
    let (status, _) = app.put_json(&app.thermostat_path(), json!({"fan_timer_active": true})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn simulated_devices_converge_after_a_faulty_network() {
    let app = TestApp::spawn().await;
    // More devices: a second home of thermostats, besides the demo's five.
    let owner = app.demo["user_id"].as_str().unwrap().to_string();
    let second = app.admin(&["structure", "create", "--owner", &owner, "--name", "Cabin"])["structure_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ids: Vec<String> =
        ["heat_pump_thermostat", "heat_only_thermostat", "kitchen_protect", "hallway_protect", "camera"]
            .iter()
            .map(|n| app.id(n))
            .collect();
    for i in 0..8 {
        let d = app.admin(&[
            "device",
            "add",
            "--structure",
            &second,
            "--kind",
            "thermostat",
            "--where",
            &format!("Room {i}"),
        ]);
        ids.push(d["device_id"].as_str().unwrap().to_string());
    }
    // The demo's devices are found by search, the cabin's with their structure named.
    let creds: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| match i {
            0..5 => app.admin(&["device", "pair", "--device", id]),
            _ => app.admin(&["device", "pair", "--device", id, "--structure", &second]),
        })
        .collect();
    assert!(creds[5..].iter().all(|c| c["structure_id"] == json!(second)));
    // The app's token was issued before the second home existed: a fresh one covers both.
    let token = app.admin(&[
        "token",
        "issue",
        "--user",
        &owner,
        "--permissions",
        "thermostat:write,camera:write,smoke_co:read",
    ])["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let faults = [
        "--drop-rate",
        "0.3",
        "--latency-ms",
        "100",
        "--disconnect-secs",
        "2",
        "--clock-skew-secs",
        "-20",
        "--faults-secs",
        "8",
        "--speed",
        "20",
    ];
    let (mut sim, status_file) = start_sim(&app, &creds, &faults);
    // While the network is bad, a product keeps changing what is intended.
    let thermostats: Vec<&Value> = creds.iter().filter(|c| c["kind"] == json!("thermostats")).collect();
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(8) {
        for (i, c) in thermostats.iter().enumerate() {
            let path = format!("/devices/thermostats/{}", c["device_id"].as_str().unwrap());
            let target = 66 + ((round + i) % 8) as i64;
            let r = app
                .client
                .put(format!("{}{path}", app.url))
                .bearer_auth(&token)
                .body(json!({"target_temperature_f": target}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let cam = creds.iter().find(|c| c["kind"] == json!("cameras")).unwrap();
        let path = format!("/devices/cameras/{}", cam["device_id"].as_str().unwrap());
        app.client
            .put(format!("{}{path}", app.url))
            .bearer_auth(&token)
            .body(json!({"is_streaming": round % 2 == 0}).to_string())
            .send()
            .await
            .unwrap();
        round += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Faults are over: within a bounded time every device has applied what is intended, and
    // the service holds exactly what the device last reported (the devices keep living, so
    // each is judged when a look at both sides catches it between two reports).
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = crate::helpers::client_for(&app.dir, false);
    let mut converged = std::collections::HashSet::new();
    loop {
        let status: Value = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let mut behind = Vec::new();
        for c in &creds {
            let id = c["device_id"].as_str().unwrap();
            if converged.contains(id) {
                continue;
            }
            let path = format!("/devices/{}/{id}", c["kind"].as_str().unwrap());
            let r = client.get(format!("{}{path}", app.url)).bearer_auth(&token).send().await.unwrap();
            let doc: Value = r.json().await.unwrap();
            let s = &status[id];
            let reported_match = s["reported"].as_object().is_some_and(|rep| {
                rep.iter().filter(|(k, _)| k.as_str() != "applied_version").all(|(k, v)| &doc[k] == v)
            });
            let settled = doc["sync_state"] == json!("synced")
                && doc["applied_version"] == doc["intended_version"]
                && s["pending"] == json!(0)
                && s["reports"] == s["acknowledged"]
                && reported_match;
            if settled {
                converged.insert(id.to_string());
            } else {
                behind.push(format!("{id}: doc {} / sim {s}", json!({"sync": doc["sync_state"], "i": doc["intended_version"], "a": doc["applied_version"]})));
            }
        }
        if behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not converged 30 s after the faults stopped:\n{}",
            behind.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status: Value = serde_json::from_str(&std::fs::read_to_string(&status_file).unwrap()).unwrap();
    let dropped: u64 = status.as_object().unwrap().values().map(|s| s["dropped"].as_u64().unwrap()).sum();
    let replayed: u64 = status.as_object().unwrap().values().map(|s| s["replayed"].as_u64().unwrap()).sum();
    let connects: u64 = status.as_object().unwrap().values().map(|s| s["connects"].as_u64().unwrap()).sum();
    assert!(dropped > 0, "the network dropped nothing: {status}");
    assert!(replayed > 0, "no retry reached the server after its first try was applied: {status}");
    assert!(connects > creds.len() as u64, "no stream was cut: {status}");
    sim.kill();
    // No report applied twice: in the change log, each request key appears at most once.
    let store =
        roost_store::SqliteStore::open(&app.dir.join("roost.db"), roost_store::StoreOptions::default())
            .unwrap();
    for sid in [app.id("structure_id"), second.clone()] {
        let changes = roost_store::Store::changes_after(store.as_ref(), &sid, 0, 1_000_000).await.unwrap();
        let mut keys = std::collections::HashSet::new();
        for c in changes {
            if let Some(k) = c.actor.split(" key:").nth(1) {
                assert!(keys.insert(k.to_string()), "key {k} applied twice in {sid}");
            }
        }
        assert!(!keys.is_empty());
    }
}

#[tokio::test]
async fn the_demo_home_is_alive_within_a_minute() {
    let app = TestApp::spawn_with(Options { sim: true, ..Options::default() }).await;
    let path = app.thermostat_path();
    let (_, t) = app.get_json(&path).await;
    let start = t["ambient_temperature_f"].as_i64().unwrap();
    assert_eq!(t["hvac_state"], json!("heating"));
    assert!(start < t["target_temperature_f"].as_i64().unwrap());
    let mut events = Events::open(&app, &path).await;
    events.next_put().await;
    // The stream shows the ambient temperature rising…
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let data = tokio::time::timeout(Duration::from_secs(60), events.next_put())
            .await
            .expect("no put within a minute");
        if data["ambient_temperature_f"].as_i64().unwrap() > start {
            break;
        }
        assert!(Instant::now() < deadline, "ambient did not rise within a minute");
    }
    // …and so does a GET; the devices are online.
    let (_, t) = app.get_json(&path).await;
    assert!(t["ambient_temperature_f"].as_i64().unwrap() > start);
    assert_eq!(t["is_online"], json!(true));
}
