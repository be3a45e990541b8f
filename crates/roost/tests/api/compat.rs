//! python-nest 4.2.0 (PyPI), unchanged, against the real server: directly and through the
//! 307 front door. `scripts/test` installs it into `target/python-nest`.

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp};

fn python() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/python-nest/bin/python");
    assert!(p.exists(), "no python-nest venv at {}: run scripts/test, which installs it", p.display());
    p
}

/// A thermostat that can heat and cool (the demo's heat pump is on emergency heat).
fn add_heat_cool_thermostat(app: &TestApp) -> String {
    let sid = app.id("structure_id");
    let v = app.admin(&["device", "add", "--structure", &sid, "--kind", "thermostat", "--where", "Office"]);
    v["device_id"].as_str().unwrap().to_string()
}

async fn run_flow(app: &TestApp, api_url: &str) -> Value {
    let heat_cool = add_heat_cool_thermostat(app);
    // The server picks up the admin change within its refresh period.
    for _ in 0..50 {
        if app.get(&format!("/devices/thermostats/{heat_cool}")).send().await.unwrap().status() == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/python_nest_flow.py");
    let out = tokio::process::Command::new(python())
        .arg(script)
        .args([app.url.as_str(), app.dir.join("demo.json").to_str().unwrap(), api_url, &heat_cool])
        .current_dir(&app.dir)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn check(r: &Value, through_redirect: bool) {
    assert_eq!(r["token"], json!(true), "request_token with the PIN");
    assert_eq!(r["structure_name"], json!("Demo Home"));
    assert_eq!(r["thermostat_name"], json!("Living Room Thermostat (Heat pump)"));
    assert_eq!((r["protects"].clone(), r["cameras"].clone()), (json!(2), json!(1)));
    for seen in [
        "target_after_write",
        "scale_c",
        "target_c",
        "fan",
        "away_after_write",
        "eco_on_away",
        "eta_begin_set",
        "camera_off",
    ] {
        assert_eq!(r[seen], json!(true), "{seen} came back through the stream: {r}");
    }
    assert_eq!(
        r["rule_error"],
        json!("Cannot change HVAC mode to cool while emergency heat is on"),
        "APIError text"
    );
    // After revocation the token is refused with 401. python-nest turns a 401 into
    // AuthorizationError, except after following a 307, where it raises APIError with the
    // body's error text (its own behaviour).
    assert_eq!(r["stream_after_revoke"], json!("AuthorizationError"), "the stream's auth_revoked");
    if through_redirect {
        assert_eq!(r["write_after_revoke"], json!("APIError: unauthorized"));
        assert_eq!(r["check_after_revoke"], json!("APIError: unauthorized"));
    } else {
        assert_eq!(r["write_after_revoke"], json!("AuthorizationError"));
        assert_eq!(r["check_after_revoke"], json!("authorization required"));
    }
}

#[tokio::test]
async fn python_nest_runs_unchanged_directly() {
    let app = TestApp::spawn().await;
    let r = run_flow(&app, &app.url).await;
    check(&r, false);
}

#[tokio::test]
async fn python_nest_runs_unchanged_through_the_307_front_door() {
    let app = TestApp::spawn_with(Options { front: true, ..Options::default() }).await;
    let port = app.front.clone().unwrap().rsplit(':').next().unwrap().to_string();
    let r = run_flow(&app, &format!("https://localhost:{port}")).await;
    check(&r, true);
}

/// The original curl usage against the demo: Bearer header, `?auth=`, `-L` through the front
/// door (`--location-trusted` to resend the header), `Accept: text/event-stream`.
#[tokio::test]
async fn the_original_curl_usage_works() {
    let app = TestApp::spawn_with(Options { front: true, ..Options::default() }).await;
    let port = app.front.clone().unwrap().rsplit(':').next().unwrap().to_string();
    let front = format!("https://localhost:{port}");
    let t = app.thermostat_path();
    let ca = app.dir.join("ca.pem");
    let curl = |args: Vec<String>| {
        let out = std::process::Command::new("curl")
            .arg("-sS")
            .arg("--cacert")
            .arg(&ca)
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bearer = format!("Authorization: Bearer {}", app.token);
    assert_eq!(curl(vec!["-H".into(), bearer.clone(), format!("{}{t}/target_temperature_f", app.url)]), "68");
    assert_eq!(curl(vec![format!("{}{t}/hvac_mode?auth={}", app.url, app.token)]), "\"heat\"");
    assert_eq!(curl(vec!["-L".into(), format!("{front}{t}/hvac_mode?auth={}", app.token)]), "\"heat\"");
    assert_eq!(
        curl(vec![
            "--location-trusted".into(),
            "-H".into(),
            bearer.clone(),
            format!("{front}{t}/target_temperature_f")
        ]),
        "68"
    );
    let put = curl(vec![
        "--location-trusted".into(),
        "-X".into(),
        "PUT".into(),
        "-H".into(),
        bearer.clone(),
        "-d".into(),
        "{\"target_temperature_f\": 70}".into(),
        format!("{front}{t}"),
    ]);
    assert_eq!(put, "{\"target_temperature_f\": 70}");
    // A stream never ends by itself: curl stops it after 2 s (exit 28), with what it got.
    let out = std::process::Command::new("curl")
        .args(["-sN", "--max-time", "2", "--cacert"])
        .arg(&ca)
        .args(["-H", &bearer, "-H", "Accept: text/event-stream", &format!("{}{t}", app.url)])
        .output()
        .unwrap();
    let stream = String::from_utf8_lossy(&out.stdout);
    assert!(stream.contains("event: put") && stream.contains("\"target_temperature_f\":70"), "{stream}");
}

/// docs/compatibility.md names every endpoint and every error anchor the server has.
#[test]
fn docs_name_every_endpoint_and_error() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compatibility.md")).unwrap();
    let anchors = [
        "no-write-permission",
        "invalid-content-sent",
        "format-error",
        "high-f-value",
        "low-f-value",
        "high-c-value",
        "low-c-value",
        "low-high-error",
        "mode-error",
        "incompatible-mode",
        "safety-shutoff-on",
        "auth-error",
        "blocked",
        "service-unavailable",
        "internal-error",
        "spread-error",
        "emergency-heat",
        "invalid-value",
        "no-fan",
        "fan-duration",
        "multiple-structures",
        "unknown-field",
        "not-found",
        "method-not-allowed",
        "precondition-failed",
        "payload-too-large",
        "invalid-location",
        "eta-window",
        "applied-ahead",
        "invalid-header",
    ];
    for a in anchors {
        assert!(doc.contains(&format!("#{a}")), "docs/compatibility.md does not name #{a}");
    }
    for e in [
        "/login/oauth2",
        "/oauth2/access_token",
        "/oauth2/access_tokens/{token}",
        "/oauth2/revoke",
        "/.well-known/oauth-authorization-server",
    ] {
        assert!(doc.contains(e), "docs/compatibility.md does not name {e}");
    }
    // Every anchor the model can produce is in the list above.
    let model = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../model/src/rules.rs"))
        .unwrap()
        + &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../model/src/error.rs")).unwrap()
        + &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../model/src/write.rs")).unwrap();
    for line in model.lines() {
        for (i, _) in line.match_indices("ApiError::new(") {
            let rest = &line[i..];
            if let Some(anchor) = rest.split('"').nth(1)
                && anchor.chars().all(|c| c.is_ascii_lowercase() || c == '-' || c.is_ascii_digit())
            {
                assert!(anchors.contains(&anchor), "anchor {anchor} is missing from the list and the doc");
            }
        }
    }
}
