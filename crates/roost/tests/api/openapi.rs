//! `/openapi.json`: the document validates (openapi-spec-validator), and schemathesis drives
//! every operation against a live server with the demo's token (and the demo home's ids):
//! no 5xx, no response outside the document. `scripts/test` installs both tools (PyPI).

use crate::helpers::TestApp;

fn tool(name: &str) -> std::path::PathBuf {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/openapi-tools/bin").join(name);
    assert!(path.exists(), "no {} : run scripts/test, which installs it", path.display());
    path
}

#[tokio::test]
async fn the_openapi_document_validates_and_the_server_keeps_to_it() {
    let app = TestApp::spawn().await;
    let r = app.client.get(format!("{}/openapi.json", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], serde_json::json!("3.1.0"));
    for path in
        ["/devices/thermostats/{device_id}", "/history/{structure_id}", "/oauth2/access_token", "/readyz"]
    {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = std::process::Command::new(tool("openapi-spec-validator")).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The demo home's ids, so that calls reach the home rather than 404.
    let d = &app.demo["devices"];
    let config = format!(
        "[parameters]\n\"path.structure_id\" = \"{}\"\n\n\
         [[operations]]\ninclude-path-regex = \"^/devices/thermostats/\"\nparameters = {{ \"path.device_id\" = \"{}\" }}\n\n\
         [[operations]]\ninclude-path-regex = \"^/devices/cameras/\"\nparameters = {{ \"path.device_id\" = \"{}\" }}\n\n\
         [[operations]]\ninclude-path-regex = \"^/devices/smoke_co_alarms/\"\nparameters = {{ \"path.device_id\" = \"{}\" }}\n",
        d["structure_id"].as_str().unwrap(),
        d["heat_pump_thermostat"].as_str().unwrap(),
        d["camera"].as_str().unwrap(),
        d["kitchen_protect"].as_str().unwrap(),
    );
    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config).unwrap();
    let ca = app.dir.join("ca.pem");
    let out = tokio::process::Command::new(tool("schemathesis"))
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(&file)
        .args(["--url", &app.url, "--tls-verify"])
        .arg(&ca)
        .args(["-H", &format!("Authorization: Bearer {}", app.token)])
        // Every check but "a schema-valid request is accepted": the home's rules refuse
        // well-formed writes (a target while the mode is off, say) with a documented 400.
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "20", "--seed", "1", "--generation-database", "none"])
        .env("NO_COLOR", "1")
        // Its caches go to the test's temporary dir, not the source tree.
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary = &report[report.find("SUMMARY").unwrap_or(0)..];
    let selected = summary.lines().find(|l| l.contains("Selected:")).unwrap_or("");
    let tested = summary.lines().find(|l| l.contains("Tested:")).unwrap_or("");
    let operations = selected.split('/').next_back().unwrap_or("").trim().to_string();
    assert!(
        tested.trim().ends_with(&operations),
        "every operation exercised: {selected} / {tested}\n{summary}"
    );
    assert!(!summary.contains("Failures:"), "{summary}");
}
