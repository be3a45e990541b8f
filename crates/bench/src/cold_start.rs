//! `roost bench cold-start`: from `roost serve` to its first answer on a store of many homes
//! (the embedded store in a data dir, or PostgreSQL), then memory while clients touch homes
//! at random.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use roost_model::PermissionSet;
use roost_model::demo::demo_home;
use roost_server::{admin, ids};
use roost_store::Store;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::client::{Target, connect};

/// What to start on and what to do once it answers.
pub struct ColdStartOptions<'a> {
    pub homes: usize,
    /// Reuse (or keep) this data dir instead of a temporary one.
    pub data: Option<&'a Path>,
    /// PostgreSQL instead of the embedded store.
    pub store: Option<&'a str>,
    /// `roost serve --cache-homes`.
    pub cache_homes: Option<usize>,
    /// Requests touching random homes after the first answer (0: none).
    pub touches: usize,
}

/// Time from `roost serve` to its first answer, and memory as homes are touched.
#[derive(Debug, Serialize)]
pub struct ColdStart {
    pub homes: usize,
    pub store: &'static str,
    pub seed_seconds: f64,
    /// The embedded store's database file (0 on PostgreSQL).
    pub database_bytes: u64,
    /// From spawning the process to `/readyz` answering 200.
    pub first_answer_seconds: f64,
    /// The server's resident memory once ready.
    pub rss_mib: f64,
    pub cache_homes: Option<usize>,
    pub touched: Vec<Touched>,
}

/// The server after so many random touches.
#[derive(Debug, Serialize)]
pub struct Touched {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Homes the server holds (`/readyz`).
    pub held: u64,
    pub rss_mib: f64,
}

/// Homes per token for the touching clients: a token over 1,000 homes, as a large account.
const HOMES_PER_TOKEN: usize = 1_000;
const CLIENTS: usize = 4;
const SAMPLES: u64 = 4;

pub async fn cold_start(o: ColdStartOptions<'_>) -> anyhow::Result<ColdStart> {
    let dir = match o.data {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("roost-cold-{}", ids::random_b64(6))),
    };
    std::fs::create_dir_all(&dir)?;
    let seeded = Instant::now();
    let store = roost_server::connect_store(&dir, o.store, 16, 10_000, false).await?;
    let user = seed(store.clone(), o.homes).await?;
    let tokens = if o.touches > 0 { issue_tokens(store.as_ref(), &user).await? } else { Vec::new() };
    store.close();
    drop(store);
    let seed_seconds = seeded.elapsed().as_secs_f64();
    let database_bytes = std::fs::metadata(dir.join("roost.db")).map(|m| m.len()).unwrap_or(0);

    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["serve", "--insecure-http", "--listen", "127.0.0.1:0", "--data"]).arg(&dir);
    if let Some(url) = o.store {
        cmd.args(["--store", url]);
    }
    if let Some(n) = o.cache_homes {
        cmd.args(["--cache-homes", &n.to_string()]);
    }
    let mut child = cmd.env("ROOST_LOG", "warn").stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
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
        if held(&target).await.is_ok() {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("no answer within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_answer_seconds = started.elapsed().as_secs_f64();
    let pid = child.id().unwrap_or(0);
    let rss_mib = rss_mib(pid);
    eprintln!(
        "bench cold-start: {} homes on {} ({:.0} MiB database file): first answer after {:.3} s, RSS {:.0} MiB",
        o.homes,
        if o.store.is_some() { "PostgreSQL" } else { "the embedded store" },
        database_bytes as f64 / 1048576.0,
        first_answer_seconds,
        rss_mib
    );
    let touched =
        if o.touches > 0 { touch(&target, pid, tokens, o.touches as u64).await? } else { Vec::new() };
    let _ = child.kill().await;
    if o.data.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(ColdStart {
        homes: o.homes,
        store: if o.store.is_some() { "postgres" } else { "embedded" },
        seed_seconds,
        database_bytes,
        first_answer_seconds,
        rss_mib,
        cache_homes: o.cache_homes,
        touched,
    })
}

/// Seeds demo homes owned by one user until the store holds `homes`; returns that user's id.
async fn seed(store: Arc<dyn Store>, homes: usize) -> anyhow::Result<String> {
    let have = store.structure_ids().await?.len();
    let user = match store.users().await?.into_iter().find(|u| u.login.starts_with("cold-")) {
        Some(u) => u,
        None => {
            admin::create_user(store.as_ref(), &format!("cold-{}@roost.local", ids::random_b64(6)), None)
                .await?
        }
    };
    let now = chrono::Utc::now();
    let mut done = have;
    // Many creations in flight at once: group commit puts them in few transactions.
    while done < homes {
        let batch = (homes - done).min(512);
        let mut tasks = Vec::with_capacity(batch);
        for _ in 0..batch {
            let (store, owner) = (store.clone(), user.id.clone());
            tasks.push(tokio::spawn(async move {
                let d = admin::random_demo_ids();
                let home = demo_home(&d, now);
                store.create_structure(&owner, &d.structure_id, home.into_json(), "bench").await
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
    Ok(user.id)
}

/// A token for every [`HOMES_PER_TOKEN`] homes, with the homes it covers. Written straight
/// to the store: the seeder knows whose homes they are, and `admin::issue_token` would list
/// every home of the user for each token to check.
async fn issue_tokens(store: &dyn Store, user: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let ids = store.structure_ids().await?;
    let mut tokens = Vec::new();
    for chunk in ids.chunks(HOMES_PER_TOKEN) {
        let token = ids::access_token();
        store
            .insert_token(roost_store::TokenRecord {
                hash: roost_server::auth::hash_token(&token),
                user_id: user.to_string(),
                product_id: None,
                permissions: PermissionSet::all().bits(),
                structures: chunk.to_vec(),
                client_version: 1,
                created_at: chrono::Utc::now().to_rfc3339(),
                label: "cold-start".into(),
                revoked: false,
                device_id: None,
            })
            .await?;
        tokens.push((token, chunk.to_vec()));
    }
    Ok(tokens)
}

/// [`CLIENTS`] clients read the name of random homes; every `touches / SAMPLES` requests the
/// server's held homes and RSS are taken.
async fn touch(
    target: &Target,
    pid: u32,
    tokens: Vec<(String, Vec<String>)>,
    touches: u64,
) -> anyhow::Result<Vec<Touched>> {
    let tokens = Arc::new(tokens);
    let (sent, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (tokens, sent, errors, target) = (tokens.clone(), sent.clone(), errors.clone(), target.clone());
        clients.push(tokio::spawn(async move {
            let mut send = connect(&target, None).await?;
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            while sent.fetch_add(1, Ordering::Relaxed) < touches {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let (token, homes) = &tokens[(rng % tokens.len() as u64) as usize];
                let home = &homes[((rng >> 32) % homes.len() as u64) as usize];
                let req = hyper::Request::get(format!("/structures/{home}/name"))
                    .header("host", &target.host)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::new(Bytes::new()))?;
                let r = send.send_request(req).await?;
                let ok = r.status().is_success();
                r.into_body().collect().await?;
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    let mut samples = Vec::new();
    for k in 1..=SAMPLES {
        let mark = touches * k / SAMPLES;
        while sent.load(Ordering::Relaxed) < mark && !clients.iter().all(|c| c.is_finished()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let s = Touched {
            requests: sent.load(Ordering::Relaxed).min(touches),
            errors: errors.load(Ordering::Relaxed),
            seconds: started.elapsed().as_secs_f64(),
            held: held(target).await?,
            rss_mib: rss_mib(pid),
        };
        eprintln!(
            "bench cold-start: {} touches in {:.1} s ({} errors): {} homes held, RSS {:.0} MiB",
            s.requests, s.seconds, s.errors, s.held, s.rss_mib
        );
        samples.push(s);
    }
    for c in clients {
        c.await??;
    }
    Ok(samples)
}

/// The homes the server holds, from `/readyz` (an error until it is ready).
async fn held(target: &Target) -> anyhow::Result<u64> {
    let mut send = connect(target, None).await?;
    let req = hyper::Request::get("/readyz").header("host", &target.host).body(Full::new(Bytes::new()))?;
    let r = send.send_request(req).await?;
    if !r.status().is_success() {
        bail!("not ready: {}", r.status());
    }
    let body = r.into_body().collect().await?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v["structures"].as_u64().unwrap_or(0))
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
