//! A test bed: a fresh data dir seeded with demo homes and a `roost serve` running on it
//! (the binary that runs the benchmark), and what one fsync costs on its disk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use roost_model::PermissionSet;
use roost_model::demo::{DemoIds, demo_home};
use roost_server::{admin, ids};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::client::Target;

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
