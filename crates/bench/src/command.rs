//! `roost bench …`: the subcommands and what each runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Subcommand;

use crate::{api as bench, cold_start, fanout};

pub fn write_json(out: Option<&Path>, v: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    println!("{text}");
    if let Some(out) = out {
        std::fs::write(out, text + "\n")?;
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Data API: seeds a fresh data dir, starts a server on it and drives each scenario.
    Api {
        /// Scenarios: get-leaf, get-view, put, mixed (9 readers to 1 writer), stream-open (a
        /// stream of a leaf until its first event) (default: all but stream-open).
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// Concurrent clients (one keep-alive connection and one home each).
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Measured seconds per scenario (after a 1 s warm-up).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Speak TLS to the server (default: plain HTTP on loopback).
        #[arg(long)]
        tls: bool,
        /// Keep the homes in this PostgreSQL database (`postgres://…`, emptied by no one: give a
        /// fresh one) instead of the embedded store.
        #[arg(long)]
        store: Option<String>,
        /// Servers on the database (with --store), the clients spread over them in turn.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// Homes each client's token covers (its own and the next ones): the cost of a request
        /// must not grow with it.
        #[arg(long, default_value_t = 1)]
        homes_per_token: usize,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Stream fan-out: subscribers over channels, publishers with send times in each event.
    Fanout {
        /// roost (starts its own server), nchan (give --addr of a running nchan) or pocketbase
        /// (give --setup).
        #[arg(long, default_value = "roost")]
        peer: String,
        #[arg(long)]
        addr: Option<SocketAddr>,
        /// The PocketBase setup file (`scripts/peers/pocketbase.sh up` writes it).
        #[arg(long)]
        setup: Option<PathBuf>,
        /// nginx master pid, to report nchan's memory.
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Channels (structures for Roost).
        #[arg(long, default_value_t = 1)]
        channels: usize,
        /// Published events per second in all (0: as fast as the publishers go).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Roost on this PostgreSQL database with two nodes: publishers write to one,
        /// subscribers listen on the other (delivery across nodes).
        #[arg(long)]
        store: Option<String>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A peer with the same client, payload sizes and concurrency: pocketbase (record GET and
    /// PATCH; `scripts/peers/pocketbase.sh up` writes its setup file) or nginx (a static JSON
    /// file; `scripts/peers/nchan.sh up` serves it).
    Peer {
        /// pocketbase or nginx.
        #[arg(long)]
        peer: String,
        /// Scenarios: get-leaf, put (pocketbase only) (default: get-leaf, and put for pocketbase).
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// The peer's setup file (pocketbase).
        #[arg(long)]
        setup: Option<PathBuf>,
        /// The peer's address (nginx; default 127.0.0.1:8089).
        #[arg(long)]
        addr: Option<SocketAddr>,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Cold start: seeds a store with this many demo homes, times `roost serve` from start to
    /// its first answer, then (with --touches) reads random homes and samples homes held and
    /// RSS.
    ColdStart {
        #[arg(long, default_value_t = 100_000)]
        homes: usize,
        /// Reuse (or keep) this data dir instead of a temporary one.
        #[arg(long)]
        data: Option<PathBuf>,
        /// PostgreSQL to seed and serve from (`postgres://…`) instead of the embedded store.
        #[arg(long)]
        store: Option<String>,
        /// The server's `--cache-homes`.
        #[arg(long)]
        cache_homes: Option<usize>,
        /// Requests reading random homes (4 clients, tokens over 1,000 homes each) after the
        /// first answer.
        #[arg(long, default_value_t = 0)]
        touches: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revocation latency: streams of one token, revoke it, time to each auth_revoked.
    Revoke {
        #[arg(long, default_value_t = 100)]
        streams: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Idle streams held by one server, multiplexed over HTTP/2; memory per stream.
    Idle {
        #[arg(long, default_value_t = 100_000)]
        streams: usize,
        #[arg(long, default_value_t = 1000)]
        per_connection: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs one `roost bench` subcommand.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Api { scenarios, clients, seconds, tls, store, nodes, homes_per_token, out } => {
            let scenarios = if scenarios.is_empty() {
                ["get-leaf", "get-view", "put", "mixed"].map(String::from).to_vec()
            } else {
                scenarios
            };
            if nodes > 1 && store.is_none() {
                anyhow::bail!("--nodes needs --store: several nodes share a PostgreSQL database");
            }
            let backend = crate::bed::BedOptions {
                store: store.as_deref(),
                nodes: nodes.max(1),
                homes_per_token: homes_per_token.max(1),
            };
            bench::run(&scenarios, clients.max(1), seconds.max(1), tls, backend, out.as_deref()).await
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
            store,
            seconds,
            out,
        } => {
            let channels = channels.max(1);
            let stats = match peer.as_str() {
                "roost" => {
                    let (mut bed, p) = fanout::roost_bed(channels, store.as_deref()).await?;
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
                    bed.stop().await;
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
        BenchCommand::ColdStart { homes, data, store, cache_homes, touches, out } => {
            let options = cold_start::ColdStartOptions {
                homes,
                data: data.as_deref(),
                store: store.as_deref(),
                cache_homes,
                touches,
            };
            let s = cold_start::cold_start(options).await?;
            write_json(out.as_deref(), &s)
        }
        BenchCommand::Revoke { streams, out } => {
            let (mut bed, _) = fanout::roost_bed(1, None).await?;
            let s = fanout::revoke(&bed, streams).await;
            let _ = bed.child.kill().await;
            let _ = std::fs::remove_dir_all(&bed.dir);
            write_json(out.as_deref(), &s?)
        }
        BenchCommand::Idle { streams, per_connection, out } => {
            let (mut bed, p) = fanout::roost_bed(1, None).await?;
            let s = fanout::idle(&p, bed.pid, streams, per_connection).await;
            let _ = bed.child.kill().await;
            let _ = std::fs::remove_dir_all(&bed.dir);
            write_json(out.as_deref(), &s?)
        }
    }
}
