//! `roost bench api` and `roost bench peer`: the data API's scenarios (leaf GET, whole-view
//! GET, durable PUT, a mix) against Roost, and the same against a peer with the same client.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use roost_server::ids;

use crate::bed::{Bed, BedOptions, bed_on, fsync_cost};
use crate::client::{RequestSpec, Target, load, print_stats, scrape_batch_size};

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
            stream: false,
        })
        .collect()
}

/// Opening a stream of that leaf, until its first event (a new connection each time).
pub fn stream_open(bed: &Bed) -> Vec<RequestSpec> {
    get_leaf(bed)
        .into_iter()
        .map(|mut spec| {
            spec.headers.push(("accept".into(), "text/event-stream".into()));
            spec.stream = true;
            spec
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
            stream: false,
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
            stream: false,
        })
        .collect()
}

/// Nine readers of a leaf to one writer of a target, each on its own home.
pub fn mixed(bed: &Bed) -> Vec<RequestSpec> {
    let (reads, writes) = (get_leaf(bed), put_target(bed));
    (0..reads.len()).map(|i| if i % 10 == 9 { writes[i].clone() } else { reads[i].clone() }).collect()
}

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
                            stream: false,
                        }),
                        "get-leaf" => Ok(RequestSpec {
                            method: hyper::Method::GET,
                            path: format!(
                                "/api/collections/thermostats/records/{id}?fields=target_temperature_f"
                            ),
                            headers: headers.clone(),
                            bodies: vec![Bytes::new()],
                            stream: false,
                        }),
                        other => {
                            Err(anyhow!("unknown scenario '{other}' for pocketbase; known: get-leaf, put"))
                        }
                    })
                    .collect::<anyhow::Result<_>>()?;
                let stats = load(
                    &format!("pocketbase {s}"),
                    std::slice::from_ref(&target),
                    &specs,
                    clients,
                    duration,
                )
                .await?;
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
                stream: false,
            };
            let stats =
                load("nginx get-leaf", std::slice::from_ref(&target), &[spec], clients, duration).await?;
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

pub async fn run(
    scenarios: &[String],
    clients: usize,
    seconds: u64,
    tls: bool,
    backend: BedOptions<'_>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("roost-bench-{}", ids::random_b64(6)));
    let mut bed = bed_on(&tmp, clients, tls, &[], &backend).await?;
    let targets = bed.targets();
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
            "stream-open" => stream_open(&bed),
            other => bail!("unknown scenario '{other}'; known: get-leaf, get-view, put, mixed, stream-open"),
        };
        let stats = load(s, &targets, &specs, clients, duration).await?;
        print_stats(&stats);
        results.push(stats);
    }
    let batch = scrape_batch_size(&bed.target).await.unwrap_or(0.0);
    if batch > 0.0 {
        eprintln!("bench: average commit batch (writes per fsync): {batch:.1}");
    }
    bed.stop().await;
    let report = serde_json::json!({
        "store": if backend.store.is_some() { "postgres" } else { "embedded" },
        "nodes": targets.len(),
        "homes_per_token": backend.homes_per_token,
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
