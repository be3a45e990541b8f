//! `roost bench cold-start`: from `roost serve` to its first answer on a data dir of many
//! homes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use http_body_util::Full;
use roost_model::demo::demo_home;
use roost_server::{admin, ids};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::client::{Target, connect};

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
