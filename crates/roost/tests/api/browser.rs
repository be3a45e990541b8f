//! A real browser (headless Debian chromium, driven by playwright-core) against the real
//! server. `scripts/test` installs both.

use serde_json::{Value, json};

use crate::helpers::TestApp;

fn browser_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

fn tools_ready() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no chromium at {chromium}: run scripts/test, which installs it"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser has no node_modules: run scripts/test, which installs them"
    );
}

#[tokio::test]
async fn a_browser_eventsource_gets_puts_and_resumes() {
    tools_ready();
    let app = TestApp::spawn().await;
    let out = tokio::process::Command::new("node")
        .arg("eventsource.mjs")
        .args([&app.url, &app.token, &app.id("heat_pump_thermostat")])
        .current_dir(browser_dir())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["first"], json!(68), "initial put");
    assert_eq!(result["second"], json!(72), "put after a write");
    assert_eq!(result["resumed"], json!(73), "resume gets exactly the missed change");
    assert_eq!(result["ids_increase"], json!(true));
}
