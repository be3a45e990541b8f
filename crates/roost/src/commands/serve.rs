//! `roost serve`.

use std::path::Path;

use clap::ArgMatches;
use roost_server::Server;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::{config, sim};

/// `roost serve`: the service, with the demo and its simulator when asked.
pub async fn run(args: ServeArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (config, sim_speed) = config::serve(&args.file, args.serve, args.store, args.rules, matches)?;
    let shutdown = CancellationToken::new();
    let server = Server::build(config, shutdown.clone()).await?;
    println!("roost: listening on {}", server.url());
    if let Some(ca) = server.ca() {
        println!("roost: CA certificate {}  (curl --cacert {})", ca.display(), ca.display());
    }
    if let Some(front) = server.front_addr() {
        println!("roost: front door on {front} (307 to {})", server.url());
    }
    if let Some(demo) = &server.demo {
        println!("roost: demo home {}; access token with every permission:", demo.structure_id);
        println!("roost: {}", demo.access_token);
        println!(
            "roost: try  curl {} -H 'Authorization: Bearer {}' {}/devices/thermostats/{}",
            server.ca().map(|c| format!("--cacert {}", c.display())).unwrap_or_default(),
            demo.access_token,
            server.url(),
            demo.devices.heat_pump_thermostat
        );
    }
    if let Some(demo) = &server.demo {
        println!("roost: demo login {} password {}", demo.login, demo.password);
        for p in &demo.products {
            println!(
                "roost: demo product '{}': client_id {} secret {}{}",
                p.name,
                p.client_id,
                p.client_secret.as_deref().unwrap_or("(public)"),
                p.redirect_uris
                    .first()
                    .map(|r| format!(" redirect {r}"))
                    .unwrap_or_else(|| " (PIN flow)".into())
            );
        }
    }
    if let (Some(demo), Some(speed)) = (server.demo.clone(), sim_speed) {
        let options = sim::Options {
            url: server.url().to_string(),
            ca: server.ca().map(Path::to_path_buf),
            devices: demo.device_credentials.clone(),
            faults: sim::Faults::default(),
            speed,
            outside_f: 45.0,
            motion_per_hour: 6.0,
            status: None,
            commands: false,
            seed: u64::from_le_bytes(*b"roostsim"),
        };
        println!(
            "roost: demo devices simulated ({}x time; `--no-sim` turns it off; `roost sim --data DIR` runs it apart)",
            speed
        );
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = sim::run(options, shutdown).await {
                eprintln!("roost: simulator stopped: {e:#}");
            }
        });
    }
    println!("roost: ready ({} structures)", server.structures());
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => return,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        shutdown.cancel();
    });
    server.run().await
}
