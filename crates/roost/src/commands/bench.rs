//! `roost bench`: dispatch to the load generators (see BENCHMARKS.md).

use std::path::Path;

use anyhow::anyhow;

use crate::cli::BenchCommand;
use crate::{bench, fanout};

pub fn write_json(out: Option<&Path>, v: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    println!("{text}");
    if let Some(out) = out {
        std::fs::write(out, text + "\n")?;
    }
    Ok(())
}

/// `roost bench …`.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Api { scenarios, clients, seconds, tls, out } => {
            let scenarios = if scenarios.is_empty() {
                ["get-leaf", "get-view", "put", "mixed"].map(String::from).to_vec()
            } else {
                scenarios
            };
            bench::run(&scenarios, clients.max(1), seconds.max(1), tls, out.as_deref()).await
        }
        BenchCommand::Fanout {
            peer,
            addr,
            setup,
            pid,
            subscribers,
            channels,
            rate,
            publishers,
            seconds,
            out,
        } => {
            let channels = channels.max(1);
            let stats = match peer.as_str() {
                "roost" => {
                    let (mut bed, p) = fanout::roost_bed(channels).await?;
                    let s = fanout::fanout(
                        "roost",
                        &p,
                        Some(bed.pid),
                        subscribers,
                        channels,
                        rate,
                        publishers,
                        seconds,
                    )
                    .await;
                    let _ = bed.child.kill().await;
                    let _ = std::fs::remove_dir_all(&bed.dir);
                    s?
                }
                "nchan" => {
                    let addr = addr.ok_or_else(|| anyhow!("--addr of the running nchan is needed"))?;
                    let p = fanout::Peer::Nchan { addr };
                    fanout::fanout("nchan", &p, pid, subscribers, channels, rate, publishers, seconds).await?
                }
                "pocketbase" => {
                    let path = setup
                        .ok_or_else(|| anyhow!("--setup: the file `scripts/peers/pocketbase.sh up` wrote"))?;
                    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
                    let records: Vec<String> = v["records"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                    if records.len() < channels {
                        anyhow::bail!(
                            "the setup has {} records; {channels} channels need one each",
                            records.len()
                        );
                    }
                    let p = fanout::Peer::PocketBase {
                        addr: v["addr"].as_str().unwrap_or_default().parse()?,
                        token: v["token"].as_str().unwrap_or_default().to_string(),
                        records,
                    };
                    let pid = pid.or_else(|| v["pid"].as_u64().map(|p| p as u32));
                    fanout::fanout("pocketbase", &p, pid, subscribers, channels, rate, publishers, seconds)
                        .await?
                }
                other => anyhow::bail!("--peer: unknown peer '{other}'; use roost, nchan or pocketbase"),
            };
            write_json(out.as_deref(), &stats)
        }
        BenchCommand::Peer { peer, scenarios, setup, addr, clients, seconds, out } => {
            bench::peer(
                &peer,
                &scenarios,
                setup.as_deref(),
                addr,
                clients.max(1),
                seconds.max(1),
                out.as_deref(),
            )
            .await
        }
        BenchCommand::ColdStart { homes, data, out } => {
            let s = bench::cold_start(homes, data.as_deref()).await?;
            write_json(out.as_deref(), &s)
        }
        BenchCommand::Revoke { streams, out } => {
            let (mut bed, _) = fanout::roost_bed(1).await?;
            let s = fanout::revoke(&bed, streams).await;
            let _ = bed.child.kill().await;
            let _ = std::fs::remove_dir_all(&bed.dir);
            write_json(out.as_deref(), &s?)
        }
        BenchCommand::Idle { streams, per_connection, out } => {
            let (mut bed, p) = fanout::roost_bed(1).await?;
            let s = fanout::idle(&p, bed.pid, streams, per_connection).await;
            let _ = bed.child.kill().await;
            let _ = std::fs::remove_dir_all(&bed.dir);
            write_json(out.as_deref(), &s?)
        }
    }
}
