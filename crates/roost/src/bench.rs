//! `roost bench`: load generation and measurement, in one place.
//!
//! `roost bench run` seeds a fresh data dir with one home per client, starts `roost serve` on
//! it as a child process, and drives each scenario with keep-alive connections (one per
//! client, HTTP/1.1), printing progress every second and writing a JSON result file.
//! `roost bench http` drives any URL (for peers) with the same client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use roost_model::PermissionSet;
use roost_model::demo::{DemoIds, demo_home};
use roost_server::{admin, ids};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};

/// One request a client sends, over and over (bodies alternate to make every write real).
#[derive(Clone)]
pub struct RequestSpec {
    pub method: hyper::Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub bodies: Vec<Bytes>,
}

#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    /// Trust this CA (PEM) and speak TLS.
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Serialize, Clone)]
pub struct Stats {
    pub scenario: String,
    pub clients: usize,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target, tls: Option<&Arc<rustls::ClientConfig>>) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    match tls {
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())?;
            let stream = tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp).await?;
            let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            Ok(send)
        }
        None => {
            let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            Ok(send)
        }
    }
}

fn tls_config(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Runs `clients` connections, client `i` sending `specs[i % specs.len()]`, for `duration`
/// after a warm-up; returns the measured stats.
pub async fn load(
    name: &str,
    target: &Target,
    specs: &[RequestSpec],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let tls = match &target.tls_ca {
        Some(ca) => Some(tls_config(ca)?),
        None => None,
    };
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let spec = specs[i % specs.len()].clone();
        let mut send =
            connect(target, tls.as_ref()).await.with_context(|| format!("connecting to {}", target.addr))?;
        let (measuring, stop, done, errors) = (measuring.clone(), stop.clone(), done.clone(), errors.clone());
        let host = target.host.clone();
        let (target, tls) = (target.clone(), tls.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let body = spec.bodies.get(n % spec.bodies.len().max(1)).cloned().unwrap_or_default();
                n += 1;
                let mut req = hyper::Request::builder()
                    .method(spec.method.clone())
                    .uri(&spec.path)
                    .header("host", &host);
                for (k, v) in &spec.headers {
                    req = req.header(k, v);
                }
                let Ok(req) = req.body(Full::new(body)) else { break };
                let started = Instant::now();
                let ok = match async {
                    send.ready().await?;
                    send.send_request(req).await
                }
                .await
                {
                    Ok(resp) => {
                        let status = resp.status();
                        let drained = resp.into_body().collect().await.is_ok();
                        drained && status.is_success()
                    }
                    Err(_) => false,
                };
                let micros = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(micros);
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if !ok {
                    match connect(&target, tls.as_ref()).await {
                        Ok(s) => send = s,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1).min(duration.saturating_sub(started.elapsed()))).await;
        let now = done.load(Ordering::Relaxed);
        eprintln!(
            "bench {name}: {:>4.1}s  {:>8} req/s  ({} errors)",
            started.elapsed().as_secs_f64(),
            now - last,
            errors.load(Ordering::Relaxed)
        );
        last = now;
    }
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u32> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all[i]) / 1000.0
    };
    let requests = all.len() as u64;
    Ok(Stats {
        scenario: name.to_string(),
        clients,
        seconds,
        requests,
        errors: errors.load(Ordering::Relaxed),
        per_second: requests as f64 / seconds,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: all.last().map(|m| f64::from(*m) / 1000.0).unwrap_or(0.0),
    })
}

/// A seeded data dir and a running `roost serve` on it.
pub struct Bed {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub target: Target,
    pub homes: Vec<(DemoIds, String)>,
    pub dir: PathBuf,
}

pub async fn bed(dir: &Path, homes: usize, tls: bool, extra_args: &[&str]) -> anyhow::Result<Bed> {
    std::fs::create_dir_all(dir)?;
    let store = roost_server::open_store(dir, 10_000)?;
    let user = admin::create_user(store.as_ref(), &format!("bench-{}@roost.local", ids::random_b64(6)), None)
        .await?;
    let mut seeded = Vec::new();
    let now = chrono::Utc::now();
    for _ in 0..homes {
        let d = admin::random_demo_ids();
        let home = demo_home(&d, now);
        roost_store::Store::create_structure(
            store.as_ref(),
            &user.id,
            &d.structure_id,
            home.into_json(),
            "bench",
        )
        .await?;
        let token = admin::issue_token(
            store.as_ref(),
            &user.id,
            PermissionSet::all(),
            std::slice::from_ref(&d.structure_id),
            "bench",
        )
        .await?;
        seeded.push((d, token));
    }
    store.close();
    drop(store);
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(dir);
    if !tls {
        cmd.arg("--insecure-http");
    }
    cmd.args(extra_args);
    cmd.env("ROOST_LOG", "warn").stdout(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().context("starting roost serve")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut url = None;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await?? {
        if let Some(u) = line.strip_prefix("roost: listening on ") {
            url = Some(u.to_string());
        }
        if line.starts_with("roost: ready") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = url.ok_or_else(|| anyhow!("server did not say where it listens"))?;
    let hostport = url.split("://").nth(1).unwrap_or_default().to_string();
    let port: u16 = hostport.rsplit(':').next().unwrap_or("0").parse()?;
    let host = hostport.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
    let pid = child.id().unwrap_or(0);
    Ok(Bed {
        pid,
        child,
        target: Target {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            host,
            tls_ca: tls.then(|| dir.join("ca.pem")),
        },
        homes: seeded,
        dir: dir.to_path_buf(),
    })
}

fn auth(token: &str) -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {token}"))]
}

/// GET of one leaf (`target_temperature_f`), each client on its own home.
pub fn get_leaf(bed: &Bed) -> Vec<RequestSpec> {
    bed.homes
        .iter()
        .map(|(d, t)| RequestSpec {
            method: hyper::Method::GET,
            path: format!("/devices/thermostats/{}/target_temperature_f", d.heat_pump_thermostat),
            headers: auth(t),
            bodies: vec![Bytes::new()],
        })
        .collect()
}

/// GET of the whole view (`/`).
pub fn get_view(bed: &Bed) -> Vec<RequestSpec> {
    bed.homes
        .iter()
        .map(|(_, t)| RequestSpec {
            method: hyper::Method::GET,
            path: "/".into(),
            headers: auth(t),
            bodies: vec![Bytes::new()],
        })
        .collect()
}

/// Durable PUT of a target temperature, alternating values so every request commits.
pub fn put_target(bed: &Bed) -> Vec<RequestSpec> {
    bed.homes
        .iter()
        .map(|(d, t)| RequestSpec {
            method: hyper::Method::PUT,
            path: format!("/devices/thermostats/{}", d.heat_pump_thermostat),
            headers: auth(t),
            bodies: vec![
                Bytes::from_static(b"{\"target_temperature_f\":70}"),
                Bytes::from_static(b"{\"target_temperature_f\":71}"),
            ],
        })
        .collect()
}

/// Nine readers of a leaf to one writer of a target, each on its own home.
pub fn mixed(bed: &Bed) -> Vec<RequestSpec> {
    let (reads, writes) = (get_leaf(bed), put_target(bed));
    (0..reads.len()).map(|i| if i % 10 == 9 { writes[i].clone() } else { reads[i].clone() }).collect()
}

fn print_stats(stats: &Stats) {
    println!(
        "{:<10} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} requests, {} errors)",
        stats.scenario,
        stats.per_second,
        stats.p50_ms,
        stats.p99_ms,
        stats.max_ms,
        stats.requests,
        stats.errors
    );
}

/// The same scenarios against a peer, with the same client, concurrency and payload sizes.
pub async fn peer(
    peer: &str,
    scenarios: &[String],
    setup: Option<&Path>,
    addr: Option<SocketAddr>,
    clients: usize,
    seconds: u64,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let mut results = Vec::new();
    let mut info = serde_json::json!({"peer": peer});
    let duration = Duration::from_secs(seconds);
    match peer {
        "pocketbase" => {
            let path =
                setup.ok_or_else(|| anyhow!("--setup: the file `scripts/peers/pocketbase.sh up` wrote"))?;
            let setup: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
            let addr: SocketAddr = setup["addr"].as_str().unwrap_or_default().parse()?;
            let token = setup["token"].as_str().unwrap_or_default().to_string();
            let ids: Vec<String> = setup["records"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if ids.len() < clients {
                bail!("the setup has {} records; {clients} clients need one each", ids.len());
            }
            info["version"] = setup["version"].clone();
            let target = Target { addr, host: addr.to_string(), tls_ca: None };
            let headers = vec![
                ("authorization".to_string(), token),
                ("content-type".to_string(), "application/json".to_string()),
            ];
            let scenarios: Vec<String> =
                if scenarios.is_empty() { vec!["get-leaf".into(), "put".into()] } else { scenarios.to_vec() };
            for s in &scenarios {
                let specs: Vec<RequestSpec> = ids[..clients]
                    .iter()
                    .map(|id| match s.as_str() {
                        "put" => Ok(RequestSpec {
                            method: hyper::Method::PATCH,
                            path: format!("/api/collections/thermostats/records/{id}"),
                            headers: headers.clone(),
                            bodies: vec![
                                Bytes::from_static(b"{\"target_temperature_f\":70}"),
                                Bytes::from_static(b"{\"target_temperature_f\":71}"),
                            ],
                        }),
                        "get-leaf" => Ok(RequestSpec {
                            method: hyper::Method::GET,
                            path: format!(
                                "/api/collections/thermostats/records/{id}?fields=target_temperature_f"
                            ),
                            headers: headers.clone(),
                            bodies: vec![Bytes::new()],
                        }),
                        other => {
                            Err(anyhow!("unknown scenario '{other}' for pocketbase; known: get-leaf, put"))
                        }
                    })
                    .collect::<anyhow::Result<_>>()?;
                let stats = load(&format!("pocketbase {s}"), &target, &specs, clients, duration).await?;
                print_stats(&stats);
                results.push(stats);
            }
        }
        "nginx" => {
            let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8089)));
            let target = Target { addr, host: addr.to_string(), tls_ca: None };
            let spec = RequestSpec {
                method: hyper::Method::GET,
                path: "/static.json".into(),
                headers: Vec::new(),
                bodies: vec![Bytes::new()],
            };
            let stats = load("nginx get-leaf", &target, &[spec], clients, duration).await?;
            print_stats(&stats);
            results.push(stats);
        }
        other => bail!("--peer: unknown peer '{other}'; use pocketbase or nginx"),
    }
    info["results"] = serde_json::to_value(&results)?;
    info["http"] = "HTTP/1.1 keep-alive, one connection per client, plain HTTP".into();
    if let Some(out) = out {
        std::fs::write(out, serde_json::to_string_pretty(&info)? + "\n")?;
    }
    Ok(())
}

/// Time from `roost serve` to its first answer, on a data dir holding `homes` demo homes.
#[derive(Debug, Serialize)]
pub struct ColdStart {
    pub homes: usize,
    pub seed_seconds: f64,
    pub database_bytes: u64,
    /// From spawning the process to `/readyz` answering 200.
    pub first_answer_seconds: f64,
    /// The server's resident memory once ready.
    pub rss_mib: f64,
}

pub async fn cold_start(homes: usize, data: Option<&Path>) -> anyhow::Result<ColdStart> {
    let dir = match data {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("roost-cold-{}", ids::random_b64(6))),
    };
    std::fs::create_dir_all(&dir)?;
    let seeded = Instant::now();
    let store = roost_server::open_store(&dir, 10_000)?;
    let have = roost_store::Store::structure_ids(store.as_ref()).await?.len();
    if have < homes {
        let user =
            admin::create_user(store.as_ref(), &format!("cold-{}@roost.local", ids::random_b64(6)), None)
                .await?;
        let now = chrono::Utc::now();
        let store_ref = store.clone();
        let mut done = have;
        // Many commits in flight at once: group commit puts them in few transactions.
        while done < homes {
            let batch = (homes - done).min(512);
            let mut tasks = Vec::with_capacity(batch);
            for _ in 0..batch {
                let (store, owner) = (store_ref.clone(), user.id.clone());
                tasks.push(tokio::spawn(async move {
                    let d = admin::random_demo_ids();
                    let home = demo_home(&d, now);
                    roost_store::Store::create_structure(
                        store.as_ref(),
                        &owner,
                        &d.structure_id,
                        home.into_json(),
                        "bench",
                    )
                    .await
                }));
            }
            for t in tasks {
                t.await??;
            }
            done += batch;
            if done % 10_000 < 512 {
                eprintln!("bench cold-start: seeded {done} of {homes} homes");
            }
        }
    }
    store.close();
    drop(store);
    let seed_seconds = seeded.elapsed().as_secs_f64();
    let database_bytes = std::fs::metadata(dir.join("roost.db")).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["serve", "--insecure-http", "--listen", "127.0.0.1:0", "--data"])
        .arg(&dir)
        .env("ROOST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = None;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(600), lines.next_line()).await?? {
        if let Some(u) = line.strip_prefix("roost: listening on http://") {
            addr = Some(u.parse::<SocketAddr>()?);
            break;
        }
    }
    let addr = addr.ok_or_else(|| anyhow!("the server did not say where it listens"))?;
    let target = Target { addr, host: addr.to_string(), tls_ca: None };
    loop {
        if let Ok(mut send) = connect(&target, None).await {
            let req = hyper::Request::get("/readyz")
                .header("host", addr.to_string())
                .body(Full::new(Bytes::new()))?;
            if let Ok(r) = send.send_request(req).await
                && r.status().is_success()
            {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("no answer within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_answer_seconds = started.elapsed().as_secs_f64();
    let pid = child.id().unwrap_or(0);
    let rss_mib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0);
    let _ = child.kill().await;
    if data.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let s = ColdStart { homes, seed_seconds, database_bytes, first_answer_seconds, rss_mib };
    eprintln!(
        "bench cold-start: {homes} homes ({:.0} MiB database): first answer after {:.2} s, RSS {:.0} MiB",
        database_bytes as f64 / 1048576.0,
        first_answer_seconds,
        rss_mib
    );
    Ok(s)
}

/// Writes per transaction (one fsync each), from the server's /metrics.
async fn scrape_batch_size(target: &Target) -> anyhow::Result<f64> {
    let tls = match &target.tls_ca {
        Some(ca) => Some(tls_config(ca)?),
        None => None,
    };
    let mut send = connect(target, tls.as_ref()).await?;
    let req = hyper::Request::builder()
        .uri("/metrics")
        .header("host", &target.host)
        .body(Full::new(Bytes::new()))?;
    let body = send.send_request(req).await?.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0)
    };
    let count = value("roost_store_commit_batch_size_count");
    let tx = value("roost_store_commit_seconds_count").max(1.0);
    eprintln!(
        "bench: writer: {:.0} transactions, {:.3} ms each, of which {:.3} ms in COMMIT (WAL write + fsync)",
        tx,
        value("roost_store_commit_seconds_sum") / tx * 1000.0,
        value("roost_store_sync_seconds_sum") / tx * 1000.0
    );
    let mean_ms = |histogram: &str| {
        value(&format!("{histogram}_sum")) / value(&format!("{histogram}_count")).max(1.0) * 1000.0
    };
    eprintln!(
        "bench: a write waited {:.3} ms on average for its transaction to start, and its request \
         resumed {:.3} ms after queueing it",
        mean_ms("roost_store_write_queue_seconds"),
        mean_ms("roost_store_write_seconds")
    );
    Ok(if count > 0.0 { value("roost_store_commit_batch_size_sum") / count } else { 0.0 })
}

/// Average time of a 4 KiB write + fdatasync in `dir`: what one durable commit costs here.
pub fn fsync_cost(dir: &Path, rounds: usize) -> anyhow::Result<f64> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![7u8; 4096];
    let started = Instant::now();
    for _ in 0..rounds {
        f.write_all(&block)?;
        f.sync_data()?;
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(per)
}

pub async fn run(
    scenarios: &[String],
    clients: usize,
    seconds: u64,
    tls: bool,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("roost-bench-{}", ids::random_b64(6)));
    let mut bed = bed(&tmp, clients, tls, &[]).await?;
    let fsync_us = fsync_cost(&tmp, 500)?;
    eprintln!(
        "bench: {clients} clients, {seconds}s per scenario, {}; fsync of 4 KiB: {fsync_us:.0} µs",
        if tls { "TLS" } else { "plain HTTP" }
    );
    let duration = Duration::from_secs(seconds);
    let mut results = Vec::new();
    for s in scenarios {
        let specs = match s.as_str() {
            "get-leaf" => get_leaf(&bed),
            "get-view" => get_view(&bed),
            "put" => put_target(&bed),
            "mixed" => mixed(&bed),
            other => bail!("unknown scenario '{other}'; known: get-leaf, get-view, put, mixed"),
        };
        let stats = load(s, &bed.target, &specs, clients, duration).await?;
        print_stats(&stats);
        results.push(stats);
    }
    let batch = scrape_batch_size(&bed.target).await.unwrap_or(0.0);
    if batch > 0.0 {
        eprintln!("bench: average commit batch (writes per fsync): {batch:.1}");
    }
    let _ = bed.child.kill().await;
    let report = serde_json::json!({
        "writes_per_fsync": batch,
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "tls": tls,
        "http": "HTTP/1.1 keep-alive, one connection per client",
        "fsync_4k_us": fsync_us,
        "results": results,
    });
    if let Some(out) = out {
        std::fs::write(out, serde_json::to_string_pretty(&report)? + "\n")?;
        eprintln!("bench: results in {}", out.display());
    }
    let _ = std::fs::remove_dir_all(&bed.dir);
    Ok(())
}
