//! `roost sim`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use roost_server::admin;
use tokio_util::sync::CancellationToken;

use crate::cli::SimArgs;
use crate::sim;

/// `roost sim`: simulated devices against a running server.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let (url, ca, devices) = match (&args.data, &args.devices) {
        (Some(dir), None) => {
            let path = dir.join("demo.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {} (start `roost serve --demo` first)", path.display()))?;
            let demo: admin::DemoInfo = serde_json::from_str(&text).context("demo.json")?;
            (demo.url, demo.ca.map(PathBuf::from), demo.device_credentials)
        }
        (None, Some(file)) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let devices: Vec<admin::DeviceCredential> = match serde_json::from_str(&text) {
                Ok(list) => list,
                Err(_) => text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(serde_json::from_str)
                    .collect::<Result<_, _>>()
                    .context("--devices: expected device credentials as JSON")?,
            };
            let url = args.url.clone().ok_or_else(|| anyhow!("--url is needed with --devices"))?;
            (url, args.ca.clone(), devices)
        }
        _ => anyhow::bail!("give either --data DIR or --devices FILE --url URL"),
    };
    if devices.is_empty() {
        anyhow::bail!("no devices to simulate");
    }
    if !(0.0..=1.0).contains(&args.drop_rate) {
        anyhow::bail!("--drop-rate must be between 0 and 1");
    }
    if !(args.speed > 0.0 && args.speed <= 10_000.0) {
        anyhow::bail!("--speed must be above 0 and at most 10000");
    }
    let options = sim::Options {
        url,
        ca,
        devices,
        faults: sim::Faults {
            drop_rate: args.drop_rate,
            latency_ms: args.latency_ms,
            disconnect_secs: args.disconnect_secs,
            clock_skew_secs: args.clock_skew_secs,
            for_secs: args.faults_secs,
        },
        speed: args.speed,
        outside_f: args.outside_f,
        motion_per_hour: args.motion_per_hour,
        status: args.status,
        commands: true,
        seed: args.seed,
    };
    eprintln!(
        "sim: {} devices; commands on stdin (smoke|co <id> <state>, test <id>, person <id>, motion <id>, status)",
        options.devices.len()
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let seconds = args.seconds;
    tokio::spawn(async move {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        stop.cancel();
    });
    let term = shutdown.clone();
    tokio::spawn(async move {
        if let Ok(mut t) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            t.recv().await;
            term.cancel();
        }
    });
    sim::run(options, shutdown).await
}
