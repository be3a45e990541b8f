//! `TestApp`: a running `roost serve --demo` and a client that trusts its CA.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct TestApp {
    pub child: Child,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub url: String,
    pub token: String,
    pub demo: Value,
    pub client: reqwest::Client,
    pub front: Option<String>,
    /// The PostgreSQL database it keeps its data in (`None`: the embedded store).
    pub store: Option<String>,
}

pub fn roost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roost"))
}

#[derive(Default, Clone)]
pub struct Options {
    pub insecure_http: bool,
    pub keepalive_secs: Option<u64>,
    pub front: bool,
    pub body_limit: Option<usize>,
    pub changelog_keep: Option<u64>,
    pub max_streams_per_token: Option<usize>,
    pub code_ttl_secs: Option<u64>,
    /// Run the demo's built-in device simulator (off by default: tests want a still home).
    pub sim: bool,
    /// More `roost serve` flags.
    pub extra: Vec<String>,
    /// The data listener's address (a free port by default): a restart that clients must
    /// find again at the same URL.
    pub listen: Option<String>,
    /// A PostgreSQL connection string (`--store`); `None`: the embedded store.
    pub store: Option<String>,
    /// Start without `--demo` (a further node of a cluster: the data dir must already hold
    /// the first node's demo.json, which the test reads).
    pub no_demo: bool,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> TestApp {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        TestApp::start(dir, Some(tmp), opts).await
    }

    /// Starts (or restarts) a server on an existing data dir.
    pub async fn start(dir: PathBuf, tmp: Option<tempfile::TempDir>, opts: Options) -> TestApp {
        let mut cmd = roost();
        let listen = opts.listen.clone().unwrap_or_else(|| "127.0.0.1:0".into());
        cmd.args(["serve", "--listen", &listen, "--data"]).arg(&dir);
        if !opts.no_demo {
            cmd.arg("--demo");
        }
        if opts.insecure_http {
            cmd.arg("--insecure-http");
        }
        if !opts.sim {
            cmd.arg("--no-sim");
        }
        if let Some(k) = opts.keepalive_secs {
            cmd.args(["--keepalive-secs", &k.to_string()]);
        }
        if opts.front {
            cmd.args(["--front-listen", "127.0.0.1:0"]);
        }
        if let Some(b) = opts.body_limit {
            cmd.args(["--body-limit", &b.to_string()]);
        }
        if let Some(k) = opts.changelog_keep {
            cmd.args(["--changelog-keep", &k.to_string()]);
        }
        cmd.args(&opts.extra);
        if let Some(store) = &opts.store {
            cmd.args(["--store", store]);
        }
        if let Some(t) = opts.code_ttl_secs {
            cmd.args(["--code-ttl-secs", &t.to_string()]);
        }
        if let Some(m) = opts.max_streams_per_token {
            cmd.args(["--max-streams-per-token", &m.to_string()]);
        }
        cmd.env("ROOST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut url = None;
        let mut front = None;
        loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("server did not start");
            if let Some(u) = line.strip_prefix("roost: listening on ") {
                url = Some(u.to_string());
            }
            if let Some(f) = line.strip_prefix("roost: front door on ") {
                front = Some(f.split(' ').next().unwrap().to_string());
            }
            if line.starts_with("roost: ready") {
                break;
            }
        }
        let demo: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("demo.json")).unwrap()).unwrap();
        let client = client_for(&dir, false);
        TestApp {
            child,
            _tmp: tmp,
            url: url.unwrap(),
            token: demo["access_token"].as_str().unwrap().to_string(),
            demo,
            client,
            dir,
            front,
            store: opts.store,
        }
    }

    /// Another node on this one's PostgreSQL database, with `opts`: no demo of its own (the
    /// test uses this node's home and token through it).
    pub async fn join(&self, opts: Options) -> TestApp {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(self.dir.join("demo.json"), tmp.path().join("demo.json")).unwrap();
        let opts = Options { store: self.store.clone(), no_demo: true, ..opts };
        TestApp::start(tmp.path().to_path_buf(), Some(tmp), opts).await
    }

    pub fn id(&self, name: &str) -> String {
        self.demo["devices"][name].as_str().unwrap().to_string()
    }

    pub fn thermostat_path(&self) -> String {
        format!("/devices/thermostats/{}", self.id("heat_pump_thermostat"))
    }

    pub fn structure_path(&self) -> String {
        format!("/structures/{}", self.id("structure_id"))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.url)).bearer_auth(&self.token)
    }

    pub fn put(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        self.client.put(format!("{}{path}", self.url)).bearer_auth(&self.token).body(body.to_string())
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn put_json(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.put(path, body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Runs `roost admin --json ARGS` on this server's data dir and returns its JSON answer.
    pub fn admin(&self, args: &[&str]) -> Value {
        let mut cmd = roost();
        cmd.arg("admin").arg("--data").arg(&self.dir).arg("--json");
        if let Some(store) = &self.store {
            cmd.args(["--store", store]);
        }
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client that trusts the data dir's CA (and nothing else); `http1` forces HTTP/1.1.
pub fn client_for(dir: &Path, http1: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30));
    if let Ok(pem) = std::fs::read(dir.join("ca.pem")) {
        b = b.tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]);
    }
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// A fresh, empty database on the test run's PostgreSQL server (`ROOST_TEST_PG`, set by
/// scripts/test), as a connection string for `--store`.
pub async fn fresh_database() -> String {
    let server = std::env::var("ROOST_TEST_PG")
        .unwrap_or_else(|_| panic!("ROOST_TEST_PG is not set: run scripts/test, which starts PostgreSQL"));
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let name = format!("roost_it_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let base = server.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}
