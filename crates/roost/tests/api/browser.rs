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

/// Runs a script of tests/browser with `args` and returns the JSON line it printed last.
async fn run_script(script: &str, args: &[&std::ffi::OsStr]) -> Value {
    let out = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(browser_dir())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{script}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// An argument for [`run_script`].
fn arg<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

#[tokio::test]
async fn a_browser_eventsource_gets_puts_and_resumes() {
    tools_ready();
    let app = TestApp::spawn().await;
    let thermostat = app.id("heat_pump_thermostat");
    let result = run_script("eventsource.mjs", &[arg(&app.url), arg(&app.token), arg(&thermostat)]).await;
    assert_eq!(result["first"], json!(68), "initial put");
    assert_eq!(result["second"], json!(72), "put after a write");
    assert_eq!(result["resumed"], json!(73), "resume gets exactly the missed change");
    assert_eq!(result["ids_increase"], json!(true));
}

#[tokio::test]
async fn oauth_login_consent_pin_and_web_flow_in_chromium() {
    tools_ready();
    let app = TestApp::spawn().await;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("consent.png");
    let _ = std::fs::remove_file(&shot);
    let d = &app.demo;
    let redirect = d["products"][0]["redirect_uris"][0].as_str().unwrap().to_string();
    let args = [
        arg(&app.url),
        arg(d["login"].as_str().unwrap()),
        arg(d["password"].as_str().unwrap()),
        arg(d["products"][1]["client_id"].as_str().unwrap()),
        arg(d["products"][0]["client_id"].as_str().unwrap()),
        arg(&redirect),
        arg(&shot),
    ];
    let r = run_script("consent.mjs", &args).await;
    assert_eq!(r["consent_lists_permissions"], json!(true));
    assert_eq!(r["consent_lists_home"], json!(true));
    assert_eq!(r["pin"].as_str().unwrap().len(), 8);
    assert_eq!(r["code"].as_str().unwrap().len(), 16);
    assert_eq!(r["state"], json!("xyz"));
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "the consent page screenshot was saved");
    // The PIN from the browser works at the token endpoint.
    let form = [
        ("client_id", d["products"][1]["client_id"].as_str().unwrap()),
        ("client_secret", d["products"][1]["client_secret"].as_str().unwrap()),
        ("code", r["pin"].as_str().unwrap()),
        ("grant_type", "authorization_code"),
    ];
    let resp = app.client.post(format!("{}/oauth2/access_token", app.url)).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// The home app (`/home`) in Chromium: sign in, the demo home live over one stream, a write
/// from the dial stored through the API, a change made elsewhere shown without a reload, a
/// rule's refusal next to the control with the control back on the stored value, no script
/// error or CSP violation; screenshots at desktop and phone width in target/test-artifacts.
#[tokio::test]
async fn the_home_app_is_live_and_writes_through_the_api() {
    tools_ready();
    let app = TestApp::spawn().await;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    for shot in ["home-desktop.png", "home-phone.png"] {
        let _ = std::fs::remove_file(artifacts.join(shot));
    }
    let d = &app.demo;
    let tid = app.id("heat_pump_thermostat");
    let protect = app.id("kitchen_protect");
    let paired = app.admin(&["device", "pair", "--device", &protect]);
    let protect_token = paired["device_token"].as_str().unwrap().to_string();
    let args = [
        arg(&app.url),
        arg(d["login"].as_str().unwrap()),
        arg(d["password"].as_str().unwrap()),
        arg(&app.token),
        arg(&tid),
        arg(&artifacts),
        arg(&protect_token),
        arg(&protect),
    ];
    let r = run_script("home.mjs", &args).await;
    assert_eq!(r["lists_home"], json!(true), "{r}");
    assert_eq!(r["first"], json!("68°F"), "{r}");
    assert_eq!(r["raised"], json!("69°F"), "{r}");
    assert_eq!(r["put_status"], json!(200), "{r}");
    assert!(r["refused"].as_str().unwrap().contains("emergency heat"), "{r}");
    assert_eq!(r["mode_after"], r["mode_before"], "the control shows the stored mode again: {r}");
    assert_eq!(r["errors"], json!([]), "no script error or CSP violation: {r}");
    // The dial works from the keyboard, and the focus survives the redraw.
    let k = &r["keyboard"];
    assert!(k["tabbed_to"].as_str().unwrap().starts_with("Raise the target of"), "{r}");
    assert_eq!(k["after"].as_i64().unwrap(), k["before"].as_i64().unwrap() + 1, "{r}");
    assert_eq!(k["focus_kept"], json!(true), "{r}");
    // Connected products are part of the home app; signing out revokes the page's token.
    assert!(r["products"].as_str().unwrap().starts_with("Connected products"), "{r}");
    assert_eq!(r["token_before_sign_out"], json!(200), "{r}");
    assert_eq!(r["signed_out_page"], json!(true), "back to the sign-in form: {r}");
    assert_eq!(r["token_after_sign_out"], json!(401), "{r}");
    // The alarm the device raised, on screen and impossible to miss (a role=alert banner).
    assert_eq!(r["alarm_status"], json!(200), "{r}");
    assert!(r["alarm"].as_str().unwrap().starts_with("SMOKE"), "{r}");
    // The history: the device's reports newest, the user's PUT of 72 before them.
    assert!(r["history_first"].as_str().unwrap().contains("The device"), "{r}");
    let history = r["history_text"].as_str().unwrap();
    assert!(history.contains("You: target_temperature_c 22, target_temperature_f 72"), "{r}");
    // What the page did is what is stored.
    let (_, t) = app.get_json(&format!("/devices/thermostats/{tid}")).await;
    assert_eq!(t["target_temperature_f"], json!(72), "{t}");
    assert_eq!(t["hvac_mode"], r["mode_before"], "the refused write changed nothing: {t}");
    for shot in ["home-desktop.png", "home-phone.png", "home-alarm.png"] {
        assert!(std::fs::metadata(artifacts.join(shot)).unwrap().len() > 1000, "{shot} saved");
    }
    eprintln!(
        "home app: interactive {} ms after sign-in, {} bytes transferred, a change elsewhere shown after {} ms",
        r["interactive_ms"], r["transferred_bytes"], r["elapsed_elsewhere_ms"]
    );
}

/// The API reference in Chromium with its CSP enforced: every schema field listed, a PUT, a
/// GET and a stream tried from the page, the document browsed as a tree.
#[tokio::test]
async fn the_reference_page_tries_the_api() {
    tools_ready();
    let app = TestApp::spawn().await;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let t = app.thermostat_path();
    let r = run_script("reference.mjs", &[arg(&app.url), arg(&app.token), arg(&t), arg(&artifacts)]).await;
    let listed: std::collections::BTreeSet<String> =
        r["fields"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    let expected = roost_model::schema::FIELDS.iter().filter(|f| !f.is_internal()).count();
    assert_eq!(listed.len(), expected, "every field the schema shows, once: {r}");
    assert!(r["put_status"].as_str().unwrap().contains("→ 200"), "{r}");
    assert_eq!(r["put_answer"], json!({"target_temperature_f": 70}), "the echo: {r}");
    assert_eq!(r["got"], json!(70), "{r}");
    assert_eq!(r["streamed"], json!(true), "{r}");
    assert_eq!(r["tree"], json!(true), "{r}");
    assert_eq!(r["errors"], json!([]), "no script error or CSP violation: {r}");
    for shot in ["reference-desktop.png", "reference-phone.png"] {
        assert!(std::fs::metadata(artifacts.join(shot)).unwrap().len() > 1000, "{shot} saved");
    }
}

/// axe-core on every page a person sees, at desktop and phone width: no serious or critical
/// violation.
#[tokio::test]
async fn every_page_passes_axe_without_serious_violations() {
    tools_ready();
    let app = TestApp::spawn().await;
    let d = &app.demo;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let args = [
        arg(&app.url),
        arg(d["login"].as_str().unwrap()),
        arg(d["password"].as_str().unwrap()),
        arg(d["products"][1]["client_id"].as_str().unwrap()),
        arg(&artifacts),
    ];
    let r = run_script("a11y.mjs", &args).await;
    let pages = r.as_object().unwrap();
    assert_eq!(pages.len(), 14, "seven pages at two widths: {r}");
    for (page, violations) in pages {
        assert_eq!(violations, &json!([]), "{page}: {violations}");
        // Each page's screenshot at that width is kept with the test's artifacts.
        let file = format!(
            "page-{}.png",
            page.trim_start_matches('/')
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '@' && c != '-', "-")
        );
        assert!(
            std::fs::metadata(artifacts.join(&file)).map(|m| m.len() > 1000).unwrap_or(false),
            "{file} saved"
        );
    }
}

/// The home app's stream resumes by itself after the server restarts: the page is never
/// reloaded, says it is reconnecting, and shows a write made after the restart.
#[tokio::test]
async fn the_home_app_resumes_after_the_server_restarts() {
    use crate::helpers::Options;
    use tokio::io::AsyncBufReadExt;
    tools_ready();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let options = Options { listen: Some(format!("127.0.0.1:{port}")), ..Options::default() };
    let mut app = TestApp::start(dir.path().to_path_buf(), None, options.clone()).await;
    let d = app.demo.clone();
    let tid = app.id("heat_pump_thermostat");
    let mut node = tokio::process::Command::new("node")
        .arg("resume.mjs")
        .args([app.url.as_str(), d["login"].as_str().unwrap(), d["password"].as_str().unwrap(), &tid])
        .current_dir(browser_dir())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the page never got live")
            .unwrap()
            .expect("the script ended before it was ready");
        if line == "READY" {
            break;
        }
    }
    app.kill();
    let app = TestApp::start(dir.path().to_path_buf(), None, options).await;
    assert_eq!(app.put_json(&app.thermostat_path(), json!({"target_temperature_f": 75})).await.0, 200);
    let last = tokio::time::timeout(std::time::Duration::from_secs(90), async {
        let mut last = String::new();
        while let Some(l) = lines.next_line().await.unwrap() {
            last = l;
        }
        last
    })
    .await
    .expect("the page never showed the write made after the restart");
    assert!(node.wait().await.unwrap().success(), "{last}");
    let r: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(r["before"], json!("68°F"), "{r}");
    assert_eq!(r["after"], json!("75°F"), "{r}");
    assert_eq!(r["reloaded"], json!(false), "{r}");
    assert!(r["statuses"].as_array().unwrap().contains(&json!("Reconnecting…")), "{r}");
}
