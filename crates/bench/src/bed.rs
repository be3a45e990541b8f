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

/// A seeded data dir and a running `roost serve` on it (or several nodes on one PostgreSQL
/// database: [`bed_on`]).
pub struct Bed {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub target: Target,
    /// The other nodes of a cluster bed, each with its own data dir.
    pub others: Vec<(tokio::process::Child, Target)>,
    pub homes: Vec<(DemoIds, String)>,
    pub dir: PathBuf,
}

impl Bed {
    /// Every node's address, the first node's first.
    pub fn targets(&self) -> Vec<Target> {
        std::iter::once(self.target.clone()).chain(self.others.iter().map(|(_, t)| t.clone())).collect()
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
        for (child, _) in &mut self.others {
            let _ = child.kill().await;
        }
    }
}

/// Where a bed keeps its homes and how its tokens cover them.
pub struct BedOptions<'a> {
    /// PostgreSQL (`postgres://…`) instead of the embedded store in the data dir.
    pub store: Option<&'a str>,
    /// Servers on the store (several only with `store`).
    pub nodes: usize,
    /// Homes each token covers: its own and the ones after it (more homes are seeded when
    /// needed), as a user with many homes or an installer's product has.
    pub homes_per_token: usize,
}

impl Default for BedOptions<'_> {
    fn default() -> Self {
        BedOptions { store: None, nodes: 1, homes_per_token: 1 }
    }
}

/// `homes` demo homes, each with a token (covering `homes_per_token` homes from it on), in
/// the store the options name, and the servers on it.
pub async fn bed_on(
    dir: &Path,
    homes: usize,
    tls: bool,
    extra_args: &[&str],
    options: &BedOptions<'_>,
) -> anyhow::Result<Bed> {
    let (store_url, nodes) = (options.store, options.nodes);
    let per_token = options.homes_per_token.max(1);
    std::fs::create_dir_all(dir)?;
    let store = roost_server::connect_store(dir, store_url, 16, 10_000, true).await?;
    let user = admin::create_user(store.as_ref(), &format!("bench-{}@roost.local", ids::random_b64(6)), None)
        .await?;
    let now = chrono::Utc::now();
    let mut all = Vec::new();
    for _ in 0..homes.max(per_token) {
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
        all.push(d);
    }
    let mut seeded = Vec::new();
    for i in 0..homes {
        let covered: Vec<String> =
            (0..per_token).map(|k| all[(i + k) % all.len()].structure_id.clone()).collect();
        let token =
            admin::issue_token(store.as_ref(), &user.id, PermissionSet::all(), &covered, "bench").await?;
        seeded.push((all[i].clone(), token));
    }
    store.close();
    drop(store);
    let mut started = Vec::new();
    for n in 0..nodes.max(1) {
        let node_dir = if n == 0 { dir.to_path_buf() } else { dir.join(format!("node-{n}")) };
        let mut args: Vec<&str> = extra_args.to_vec();
        if let Some(url) = store_url {
            args.extend(["--store", url]);
        }
        started.push(start_node(&node_dir, tls, &args).await?);
    }
    let (child, target) = started.remove(0);
    Ok(Bed {
        pid: child.id().unwrap_or(0),
        child,
        target,
        others: started,
        homes: seeded,
        dir: dir.to_path_buf(),
    })
}

/// `roost serve` (the binary that runs the benchmark) on `dir`, once it is ready.
async fn start_node(
    dir: &Path,
    tls: bool,
    extra_args: &[&str],
) -> anyhow::Result<(tokio::process::Child, Target)> {
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
    let target = Target {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        host,
        tls_ca: tls.then(|| dir.join("ca.pem")),
    };
    Ok((child, target))
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
