//! The admin commands on a data dir, while the server runs: it picks up their changes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, roost};

#[tokio::test]
async fn admin_changes_reach_a_running_server() {
    let app = TestApp::spawn().await;
    let user = app.admin(&["user", "create", "--login", "ada@example.com"]);
    let uid = user["user_id"].as_str().unwrap().to_string();
    let s = app.admin(&["structure", "create", "--owner", "ada@example.com", "--name", "Cabin"]);
    let sid = s["structure_id"].as_str().unwrap().to_string();
    let d = app.admin(&["device", "add", "--structure", &sid, "--kind", "thermostat", "--where", "Attic"]);
    let did = d["device_id"].as_str().unwrap().to_string();
    let t = app.admin(&["token", "issue", "--user", &uid, "--permissions", "thermostat:read"]);
    let token = t["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("c."));
    // The server loaded the new structure written by another process.
    let mut got = None;
    for _ in 0..40 {
        let r = app
            .client
            .get(format!("{}/devices/thermostats/{did}/name", app.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            got = Some(r.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, Some(json!("Attic")));
    // thermostat:read cannot write.
    let r = app
        .client
        .put(format!("{}/devices/thermostats/{did}", app.url))
        .bearer_auth(&token)
        .body(r#"{"target_temperature_f":70}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Revoked from the CLI: 401 within a second.
    let v = app.admin(&["token", "revoke", &token]);
    assert_eq!(v, json!({"revoked": true}));
    let mut status = 0;
    for _ in 0..20 {
        let r = app.client.get(format!("{}/", app.url)).bearer_auth(&token).send().await.unwrap();
        status = r.status().as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 401);
    let list = app.admin(&["token", "list", "--user", "ada@example.com"]);
    assert_eq!(list[0]["revoked"], json!(true));
    let tokens = std::fs::read(app.dir.join("roost.db")).unwrap();
    assert!(!tokens.windows(token.len()).any(|w| w == token.as_bytes()), "tokens are stored only hashed");
}

#[test]
fn bad_settings_are_named() {
    let out = roost()
        .args(["serve", "--listen", "0.0.0.0:0", "--insecure-http", "--data"])
        .arg(std::env::temp_dir().join("roost-bad"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--insecure-http is allowed only on a loopback address")
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roost.toml");
    std::fs::write(&cfg, "listen = \"nowhere\"\n").unwrap();
    let out = roost().args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("config file setting 'listen': invalid socket address syntax")
    );
    std::fs::write(&cfg, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let out = roost().args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field `lisen`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_home_made_by_the_admin_answers_its_first_request() {
    let app = TestApp::spawn().await;
    let owner = app.demo["user_id"].as_str().unwrap().to_string();
    let s = app.admin(&["structure", "create", "--owner", &owner, "--name", "Boathouse"]);
    let sid = s["structure_id"].as_str().unwrap().to_string();
    let t = app.admin(&["token", "issue", "--user", &owner, "--permissions", "thermostat:read"]);
    let token = t["access_token"].as_str().unwrap().to_string();
    // At once, not after the poller's next look at the store: the grant names the new home,
    // so the server loads it for this request.
    let r = app
        .client
        .get(format!("{}/structures/{sid}/name", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!("Boathouse"));
}

/// `roost admin` reads the operator's settings as `roost serve` does: with `eco_on_away = false`
/// in the config file, a home set away by the admin leaves its thermostats' modes alone, as an
/// API write does; without it, both put them in eco.
#[tokio::test]
async fn admin_writes_honour_the_operators_settings_as_api_writes_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("roost.toml");
    std::fs::write(&config, "eco_on_away = false\n").unwrap();
    let opts = crate::helpers::Options {
        extra: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    };
    let app = TestApp::spawn_with(opts).await;
    let sid = app.id("structure_id");
    let mode_path = format!("/devices/thermostats/{}/hvac_mode", app.id("heat_only_thermostat"));
    assert_eq!(app.get_json(&mode_path).await.1, json!("heat"));
    let cfg = config.display().to_string();
    let set = |state: &str| {
        let out = roost()
            .args(["admin", "--json", "--config", &cfg, "--data"])
            .arg(&app.dir)
            .args(["structure", "away", "--structure", &sid, "--state", state])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    // Through the admin, with the operator's setting: the thermostat keeps heating.
    set("away");
    let mut seen = Value::Null;
    for _ in 0..40 {
        let (_, away) = app.get_json(&format!("{}/away", app.structure_path())).await;
        if away == json!("away") {
            seen = app.get_json(&mode_path).await.1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, json!("heat"), "admin honours eco_on_away = false");
    // Through the API: the same.
    let (status, _) = app.put_json(&app.structure_path(), json!({"away": "home"})).await;
    assert_eq!(status, 200);
    let (status, _) = app.put_json(&app.structure_path(), json!({"away": "away"})).await;
    assert_eq!(status, 200);
    assert_eq!(app.get_json(&mode_path).await.1, json!("heat"), "the API honours it too");
    // Without the file, the admin's default (eco on away) applies, as it would in the server.
    let (status, _) = app.put_json(&app.structure_path(), json!({"away": "home"})).await;
    assert_eq!(status, 200);
    let out = roost()
        .args(["admin", "--json", "--data"])
        .arg(&app.dir)
        .args(["structure", "away", "--structure", &sid, "--state", "away"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut eco = Value::Null;
    for _ in 0..40 {
        eco = app.get_json(&mode_path).await.1;
        if eco == json!("eco") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(eco, json!("eco"));
}

/// Admin commands refuse a data dir that does not exist (a typo must not start an empty
/// store), and a revocation that matched nothing exits non-zero.
#[tokio::test]
async fn admin_refuses_a_missing_data_dir_and_reports_a_failed_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("roost-dat");
    let out = roost().args(["admin", "--data"]).arg(&typo).args(["user", "list"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Roost data dir at"));
    assert!(!typo.exists(), "nothing was created");
    let out = roost().args(["admin", "--init", "--data"]).arg(&typo).args(["user", "list"]).output().unwrap();
    assert!(out.status.success(), "--init creates it");
    let app = TestApp::spawn().await;
    let out = roost()
        .args(["admin", "--data"])
        .arg(&app.dir)
        .args(["token", "revoke", "c.not-a-token-of-this-server"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active token matched"));
}

/// A second `roost serve` on a data dir that a server is using refuses to start, naming the
/// one that holds it; `roost admin` still works beside the first.
#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let app = TestApp::spawn().await;
    let out = roost()
        .args(["serve", "--insecure-http", "--listen", "127.0.0.1:0", "--data"])
        .arg(&app.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is in use by another `roost serve` (pid "), "{stderr}");
    assert!(stderr.contains(&app.child.id().to_string()), "names the holder: {stderr}");
    let users = app.admin(&["user", "list"]);
    assert!(users.as_array().is_some_and(|u| !u.is_empty()));
    let (status, _) = app.get_json("/").await;
    assert_eq!(status, 200, "the first server is untouched");
}

/// `token list` shows an id per token, and `token revoke ID --user` revokes that one token.
#[tokio::test]
async fn a_token_is_revoked_by_the_id_token_list_shows() {
    let app = TestApp::spawn().await;
    let owner = app.demo["user_id"].as_str().unwrap().to_string();
    let keep = app.admin(&["token", "issue", "--user", &owner, "--label", "keep"])["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let drop = app.admin(&["token", "issue", "--user", &owner, "--label", "drop"])["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let list = app.admin(&["token", "list", "--user", &owner]);
    let id_of = |label: &str| {
        list.as_array().unwrap().iter().find(|t| t["label"] == label).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let id = id_of("drop");
    assert_eq!(id.len(), 16);
    assert_ne!(id, id_of("keep"));
    assert_eq!(app.admin(&["token", "revoke", &id[..10], "--user", &owner]), json!({"revoked": true}));
    let list = app.admin(&["token", "list", "--user", &owner]);
    let revoked = |label: &str| {
        list.as_array().unwrap().iter().find(|t| t["label"] == label).unwrap()["revoked"].clone()
    };
    assert_eq!((revoked("drop"), revoked("keep")), (json!(true), json!(false)));
    let mut status = 0;
    for _ in 0..20 {
        status = app
            .client
            .get(format!("{}/", app.url))
            .bearer_auth(&drop)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 401);
    let r = app.client.get(format!("{}/", app.url)).bearer_auth(&keep).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
