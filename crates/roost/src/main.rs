//! `roost`: serve the home data service, administer a data dir.
//!
//! Settings come from flags, then `ROOST_*` environment variables, then a TOML config file
//! (`--config`), then defaults; an error names the setting and where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use roost_model::PermissionSet;
use roost_server::{Config, Server, admin};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

mod bench;
mod fanout;
mod sim;

/// The service allocates and frees many small JSON nodes per request; mimalloc does that
/// faster than the system allocator under threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "roost",
    version,
    about = "Roost: a home data service (the Nest API architecture, and beyond)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(Box<ServeArgs>),
    /// Simulated devices, each a real client with its own device credential.
    Sim(SimArgs),
    /// Measure (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Administer a data dir (works while the server runs; the server picks changes up).
    Admin {
        /// Data directory.
        #[arg(long, env = "ROOST_DATA", default_value = "roost-data", global = true)]
        data: PathBuf,
        /// Print JSON for scripts.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// TOML config file; flags and ROOST_* variables override it.
    #[arg(long, env = "ROOST_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database, certificates, demo.json).
    #[arg(long, env = "ROOST_DATA")]
    data: Option<PathBuf>,
    /// Address of the data listener (port 0 picks a free port).
    #[arg(long, env = "ROOST_LISTEN")]
    listen: Option<SocketAddr>,
    /// Serve plain HTTP (loopback only).
    #[arg(long, env = "ROOST_INSECURE_HTTP")]
    insecure_http: bool,
    /// Create (once) and print a demo user, home and token.
    #[arg(long, env = "ROOST_DEMO")]
    demo: bool,
    /// Certificate (PEM) instead of the generated one.
    #[arg(long, env = "ROOST_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "ROOST_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Front door: answers every request with a 307 to the data listener.
    #[arg(long, env = "ROOST_FRONT_LISTEN")]
    front_listen: Option<SocketAddr>,
    /// Host[:port] (or URL) put in the front door's Location.
    #[arg(long, env = "ROOST_FRONT_LOCATION")]
    front_location: Option<String>,
    /// Keep-alive interval of streams, in seconds.
    #[arg(long, env = "ROOST_KEEPALIVE_SECS")]
    keepalive_secs: Option<u64>,
    /// Largest request body in bytes.
    #[arg(long, env = "ROOST_BODY_LIMIT")]
    body_limit: Option<usize>,
    /// Change log entries kept per structure, at least (older ones go 16 at a time).
    #[arg(long, env = "ROOST_CHANGELOG_KEEP")]
    changelog_keep: Option<u64>,
    /// Connections open at once (default 19,000); past it, new ones wait to be accepted.
    #[arg(long, env = "ROOST_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Concurrent streams per token.
    #[arg(long, env = "ROOST_MAX_STREAMS_PER_TOKEN")]
    max_streams_per_token: Option<usize>,
    /// Concurrent streams per user.
    #[arg(long, env = "ROOST_MAX_STREAMS_PER_USER")]
    max_streams_per_user: Option<usize>,
    /// Products' calls per token per minute (0 = no limit; default 600).
    #[arg(long, env = "ROOST_CALLS_PER_TOKEN_PER_MINUTE")]
    calls_per_token_per_minute: Option<u32>,
    /// Products' stream opens per token per hour (default 120).
    #[arg(long, env = "ROOST_STREAM_OPENS_PER_TOKEN_PER_HOUR")]
    stream_opens_per_token_per_hour: Option<u32>,
    /// Writes per device per hour, shared by all products (default 360).
    #[arg(long, env = "ROOST_WRITES_PER_DEVICE_PER_HOUR")]
    writes_per_device_per_hour: Option<u32>,
    /// Writes per structure per hour, shared by all products (default 1200).
    #[arg(long, env = "ROOST_WRITES_PER_STRUCTURE_PER_HOUR")]
    writes_per_structure_per_hour: Option<u32>,
    /// Lifetime of web-flow authorization codes in seconds (default 600).
    #[arg(long, env = "ROOST_CODE_TTL_SECS", hide = true)]
    code_ttl_secs: Option<u64>,
    /// With --demo: do not run the built-in device simulator.
    #[arg(long, env = "ROOST_NO_SIM")]
    no_sim: bool,
    /// Simulated seconds per real second of the demo's simulator (default 10).
    #[arg(long, env = "ROOST_SIM_SPEED")]
    sim_speed: Option<f64>,
    /// A paired device with no stream and no request for this long is offline (default 120).
    #[arg(long, env = "ROOST_OFFLINE_TIMEOUT_SECS")]
    offline_timeout_secs: Option<u64>,
    /// Home/Away Assist: quiet time before a home turns away, in seconds (default 7200).
    #[arg(long, env = "ROOST_ASSIST_QUIET_SECS")]
    assist_quiet_secs: Option<i64>,
    /// Home/Away Assist: how long a person's own change of away is held (default 3600).
    #[arg(long, env = "ROOST_ASSIST_HOLD_SECS")]
    assist_hold_secs: Option<i64>,
    /// Security state relaxes from deter after this long without a person (default 900).
    #[arg(long, env = "ROOST_SECURITY_QUIET_SECS")]
    security_quiet_secs: Option<i64>,
    /// Turn Home/Away Assist off.
    #[arg(long, env = "ROOST_NO_ASSIST")]
    no_assist: bool,
    /// How often time-driven changes are written, in milliseconds (default 2000).
    #[arg(long, env = "ROOST_TICK_MS", hide = true)]
    tick_ms: Option<u64>,
}

#[derive(clap::Args)]
struct SimArgs {
    /// A data dir whose demo.json names the server and the demo devices' credentials.
    #[arg(long, env = "ROOST_DATA")]
    data: Option<PathBuf>,
    /// Credentials as `roost admin device pair --json` prints them (a JSON object per line,
    /// or one JSON array); with --url.
    #[arg(long)]
    devices: Option<PathBuf>,
    /// The server's URL (with --devices).
    #[arg(long)]
    url: Option<String>,
    /// CA certificate to trust (with --devices).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Share of requests lost (0–1).
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Extra latency per request, uniformly up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Cut each device's stream this often (seconds).
    #[arg(long)]
    disconnect_secs: Option<u64>,
    /// The devices' clocks are off by this many seconds.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    clock_skew_secs: i64,
    /// Faults stop after this many seconds (default: never).
    #[arg(long)]
    faults_secs: Option<u64>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
    /// Outside temperature (°F) that idle homes drift toward.
    #[arg(long, default_value_t = 45.0)]
    outside_f: f64,
    /// Motion events per device per simulated hour.
    #[arg(long, default_value_t = 6.0)]
    motion_per_hour: f64,
    /// Rewrite this JSON file with each device's counters every half second.
    #[arg(long)]
    status: Option<PathBuf>,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long)]
    seconds: Option<u64>,
    /// Seed of the simulated noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The config file: the same settings as the flags.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    listen: Option<String>,
    insecure_http: Option<bool>,
    demo: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    hostnames: Option<Vec<String>>,
    front_listen: Option<String>,
    front_location: Option<String>,
    keepalive_secs: Option<u64>,
    body_limit: Option<usize>,
    changelog_keep: Option<u64>,
    max_connections: Option<usize>,
    max_streams_per_token: Option<usize>,
    max_streams_per_user: Option<usize>,
    calls_per_token_per_minute: Option<u32>,
    stream_opens_per_token_per_hour: Option<u32>,
    writes_per_device_per_hour: Option<u32>,
    writes_per_structure_per_hour: Option<u32>,
    min_spread_f: Option<f64>,
    min_spread_c: Option<f64>,
    eco_on_away: Option<bool>,
    no_sim: Option<bool>,
    sim_speed: Option<f64>,
    offline_timeout_secs: Option<u64>,
    assist: Option<bool>,
    assist_quiet_secs: Option<i64>,
    assist_hold_secs: Option<i64>,
    security_quiet_secs: Option<i64>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Data API: seeds a fresh data dir, starts a server on it and drives each scenario.
    Api {
        /// Scenarios: get-leaf, get-view, put, mixed (9 readers to 1 writer) (default: all).
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
    /// Cold start: seeds a data dir with this many demo homes, then times `roost serve` from
    /// start to its first answer.
    ColdStart {
        #[arg(long, default_value_t = 100_000)]
        homes: usize,
        /// Reuse (or keep) this data dir instead of a temporary one.
        #[arg(long)]
        data: Option<PathBuf>,
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

#[derive(Subcommand)]
enum AdminCommand {
    /// Users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Structures (homes).
    Structure {
        #[command(subcommand)]
        command: StructureCommand,
    },
    /// Devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Products (OAuth clients).
    Product {
        #[command(subcommand)]
        command: ProductCommand,
    },
}

#[derive(Subcommand)]
enum ProductCommand {
    /// Creates a product; prints its client id and secret (the secret is shown only now).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Registered redirect URI (repeat for several; none = PIN flow).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Comma-separated permissions, or `all`.
        #[arg(long)]
        permissions: String,
        /// A public client: no secret, PKCE required.
        #[arg(long)]
        public: bool,
    },
    /// Changes a product's permissions; its client version goes up and users re-consent.
    Update {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        permissions: String,
    },
    List,
}

#[derive(Subcommand)]
enum UserCommand {
    Create {
        #[arg(long)]
        login: String,
        /// Password (omit for a user who cannot log in). Prefer ROOST_PASSWORD.
        #[arg(long, env = "ROOST_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    List,
}

#[derive(Subcommand)]
enum StructureCommand {
    Create {
        /// Owner: user id or login.
        #[arg(long)]
        owner: String,
        #[arg(long, default_value = "Home")]
        name: String,
    },
    List,
    /// Rush Hour Rewards: the peak period and enrollment.
    RushHour {
        #[arg(long)]
        structure: String,
        /// Peak period start (ISO 8601 UTC).
        #[arg(long)]
        start: Option<String>,
        /// Peak period end (ISO 8601 UTC).
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        enrolled: Option<bool>,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    Add {
        #[arg(long)]
        structure: String,
        /// thermostat, protect or camera.
        #[arg(long)]
        kind: String,
        #[arg(long = "where", default_value = "Living Room")]
        where_name: String,
        #[arg(long, default_value = "")]
        label: String,
    },
    List {
        #[arg(long)]
        structure: String,
    },
    /// Issue a device its own credential (pairing); prints it once.
    Pair {
        #[arg(long)]
        device: String,
        /// The device's structure (faster: otherwise every structure is searched).
        #[arg(long)]
        structure: Option<String>,
    },
    /// Revoke every credential of a device (its streams end at once).
    Unpair {
        #[arg(long)]
        device: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    Issue {
        /// User id or login.
        #[arg(long)]
        user: String,
        /// Comma-separated permissions, or `all`.
        #[arg(long, default_value = "all")]
        permissions: String,
        /// Structures the token covers (default: all of the user's).
        #[arg(long = "structure")]
        structures: Vec<String>,
        #[arg(long, default_value = "admin")]
        label: String,
        /// Issue the token to a product (client id): it gets the product's permissions and
        /// its rate limits, as if the user had consented.
        #[arg(long)]
        product: Option<String>,
    },
    Revoke {
        token: String,
    },
    List {
        #[arg(long)]
        user: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("roost: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Admin { data, json, command } => admin_command(&data, json, command).await,
            Command::Bench { command } => bench_command(command).await,
            Command::Sim(args) => sim_command(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roost: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse_addr(value: &str, setting: &str) -> anyhow::Result<SocketAddr> {
    value.parse().map_err(|_| anyhow!("{setting}: '{value}' is not an address like 127.0.0.1:8443"))
}

fn load_config(args: ServeArgs) -> anyhow::Result<Config> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let data = args.data.or(file.data).unwrap_or_else(|| PathBuf::from("roost-data"));
    let mut c = Config::new(data);
    if let Some(l) = args.listen {
        c.listen = l;
    } else if let Some(l) = &file.listen {
        c.listen = parse_addr(l, "config file setting 'listen'")?;
    }
    c.insecure_http = args.insecure_http || file.insecure_http.unwrap_or(false);
    c.demo = args.demo || file.demo.unwrap_or(false);
    c.tls_cert = args.tls_cert.or(file.tls_cert);
    c.tls_key = args.tls_key.or(file.tls_key);
    c.hostnames = file.hostnames.unwrap_or_default();
    c.front_listen = match (args.front_listen, &file.front_listen) {
        (Some(a), _) => Some(a),
        (None, Some(s)) => Some(parse_addr(s, "config file setting 'front_listen'")?),
        _ => None,
    };
    c.front_location = args.front_location.or(file.front_location);
    if let Some(s) = args.keepalive_secs.or(file.keepalive_secs) {
        if s == 0 {
            anyhow::bail!("keepalive_secs must be at least 1");
        }
        c.keepalive = Duration::from_secs(s);
    }
    if let Some(b) = args.body_limit.or(file.body_limit) {
        c.body_limit = b;
    }
    if let Some(k) = args.changelog_keep.or(file.changelog_keep) {
        c.changelog_keep = k.max(1);
    }
    if let Some(v) = args.max_connections.or(file.max_connections) {
        c.max_connections = v.max(1);
    }
    if let Some(v) = args.max_streams_per_token.or(file.max_streams_per_token) {
        c.max_streams_per_token = v;
    }
    if let Some(v) = args.max_streams_per_user.or(file.max_streams_per_user) {
        c.max_streams_per_user = v;
    }
    let l = &mut c.limits;
    if let Some(v) = args.calls_per_token_per_minute.or(file.calls_per_token_per_minute) {
        l.calls_per_token_per_minute = v;
    }
    if let Some(v) = args.stream_opens_per_token_per_hour.or(file.stream_opens_per_token_per_hour) {
        l.stream_opens_per_token_per_hour = v;
    }
    if let Some(v) = args.writes_per_device_per_hour.or(file.writes_per_device_per_hour) {
        l.writes_per_device_per_hour = v;
    }
    if let Some(v) = args.writes_per_structure_per_hour.or(file.writes_per_structure_per_hour) {
        l.writes_per_structure_per_hour = v;
    }
    if let Some(v) = args.code_ttl_secs {
        c.code_ttl = Duration::from_secs(v);
    }
    if let Some(v) = file.min_spread_f {
        c.rules.min_spread_f = v;
    }
    if let Some(v) = file.min_spread_c {
        c.rules.min_spread_c = v;
    }
    if let Some(v) = file.eco_on_away {
        c.rules.eco_on_away = v;
    }
    if let Some(v) = args.offline_timeout_secs.or(file.offline_timeout_secs) {
        if v == 0 {
            anyhow::bail!("offline_timeout_secs must be at least 1");
        }
        c.offline_timeout = Duration::from_secs(v);
    }
    let a = &mut c.rules.assist;
    a.enabled = !args.no_assist && file.assist.unwrap_or(true);
    for (value, setting, slot) in [
        (args.assist_quiet_secs.or(file.assist_quiet_secs), "assist_quiet_secs", &mut a.quiet_secs),
        (args.assist_hold_secs.or(file.assist_hold_secs), "assist_hold_secs", &mut a.hold_secs),
        (
            args.security_quiet_secs.or(file.security_quiet_secs),
            "security_quiet_secs",
            &mut a.security_quiet_secs,
        ),
    ] {
        if let Some(v) = value {
            if v < 0 {
                anyhow::bail!("{setting} must not be negative");
            }
            *slot = v;
        }
    }
    if let Some(ms) = args.tick_ms {
        c.tick = Duration::from_millis(ms.max(10));
    }
    Ok(c)
}

/// The demo's simulator settings (only `serve --demo` reads them).
struct DemoSim {
    enabled: bool,
    speed: f64,
}

fn demo_sim(args: &ServeArgs) -> anyhow::Result<DemoSim> {
    let file: FileConfig = match &args.config {
        Some(path) => toml::from_str(&std::fs::read_to_string(path)?)?,
        None => FileConfig::default(),
    };
    let speed = args.sim_speed.or(file.sim_speed).unwrap_or(10.0);
    if !(speed > 0.0 && speed <= 10_000.0) {
        anyhow::bail!("sim_speed must be above 0 and at most 10000");
    }
    Ok(DemoSim { enabled: !args.no_sim && !file.no_sim.unwrap_or(false), speed })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let sim = demo_sim(&args)?;
    let config = load_config(args)?;
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
    if let Some(demo) = server.demo.clone().filter(|_| sim.enabled) {
        let options = sim::Options {
            url: server.url().to_string(),
            ca: server.ca().map(Path::to_path_buf),
            devices: demo.device_credentials.clone(),
            faults: sim::Faults::default(),
            speed: sim.speed,
            outside_f: 45.0,
            motion_per_hour: 6.0,
            status: None,
            commands: false,
            seed: u64::from_le_bytes(*b"roostsim"),
        };
        println!(
            "roost: demo devices simulated ({}x time; `--no-sim` turns it off; `roost sim --data DIR` runs it apart)",
            sim.speed
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

async fn sim_command(args: SimArgs) -> anyhow::Result<()> {
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

fn write_json(out: Option<&Path>, v: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    println!("{text}");
    if let Some(out) = out {
        std::fs::write(out, text + "\n")?;
    }
    Ok(())
}

async fn bench_command(command: BenchCommand) -> anyhow::Result<()> {
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

async fn admin_command(data: &Path, json: bool, command: AdminCommand) -> anyhow::Result<()> {
    let store = roost_server::open_store(data, 10_000)?;
    let s = store.as_ref();
    let out = |human: String, value: serde_json::Value| {
        if json {
            println!("{value}");
        } else {
            println!("{human}");
        }
    };
    match command {
        AdminCommand::User { command: UserCommand::Create { login, password } } => {
            let u = admin::create_user(s, &login, password.as_deref()).await?;
            out(
                format!("created user {} ({})", u.login, u.id),
                serde_json::json!({"user_id": u.id, "login": u.login}),
            );
        }
        AdminCommand::User { command: UserCommand::List } => {
            let users = roost_store::Store::users(s).await?;
            let v: Vec<_> =
                users.iter().map(|u| serde_json::json!({"user_id": u.id, "login": u.login})).collect();
            out(
                users.iter().map(|u| format!("{}  {}", u.id, u.login)).collect::<Vec<_>>().join("\n"),
                v.into(),
            );
        }
        AdminCommand::Structure { command: StructureCommand::Create { owner, name } } => {
            let id = admin::create_structure(s, &owner, &name).await?;
            out(format!("created structure {id}"), serde_json::json!({"structure_id": id}));
        }
        AdminCommand::Structure { command: StructureCommand::List } => {
            let all = roost_store::Store::all_structures(s).await?;
            let v: Vec<_> = all
                .iter()
                .map(|st| {
                    let name = st.doc.pointer(&format!("/structures/{}/name", st.id)).cloned().unwrap_or_default();
                    serde_json::json!({"structure_id": st.id, "owner": st.owner, "revision": st.revision, "name": name})
                })
                .collect();
            out(
                v.iter()
                    .map(|x| format!("{}  rev {}  {}", x["structure_id"], x["revision"], x["name"]))
                    .collect::<Vec<_>>()
                    .join("\n"),
                v.into(),
            );
        }
        AdminCommand::Device { command: DeviceCommand::Add { structure, kind, where_name, label } } => {
            let kind = admin::parse_kind(&kind)?;
            let id = admin::add_device(s, &structure, kind, &where_name, &label).await?;
            out(format!("added device {id}"), serde_json::json!({"device_id": id}));
        }
        AdminCommand::Device { command: DeviceCommand::Pair { device, structure } } => {
            let c = admin::pair_device(s, &device, structure.as_deref()).await?;
            out(
                format!(
                    "device {} ({} in {}): token {}",
                    c.device_id, c.kind, c.structure_id, c.device_token
                ),
                serde_json::to_value(&c)?,
            );
        }
        AdminCommand::Device { command: DeviceCommand::Unpair { device } } => {
            let n = admin::unpair_device(s, &device).await?;
            out(format!("revoked {n} credential(s) of {device}"), serde_json::json!({"revoked": n}));
        }
        AdminCommand::Structure {
            command: StructureCommand::RushHour { structure, start, end, enrolled },
        } => {
            let rev = admin::set_rush_hour(s, &structure, start.as_deref(), end.as_deref(), enrolled).await?;
            out(format!("structure {structure} at revision {rev}"), serde_json::json!({"revision": rev}));
        }
        AdminCommand::Device { command: DeviceCommand::List { structure } } => {
            let st = roost_store::Store::structure(s, &structure)
                .await?
                .ok_or_else(|| anyhow!("no structure '{structure}'"))?;
            let home = roost_model::Home::from_json(&st.id, st.doc)
                .ok_or_else(|| anyhow!("structure is damaged"))?;
            let v: Vec<_> = home
                .device_ids()
                .into_iter()
                .map(|(k, id)| serde_json::json!({"device_id": id, "kind": k.collection()}))
                .collect();
            out(
                v.iter().map(|x| format!("{}  {}", x["device_id"], x["kind"])).collect::<Vec<_>>().join("\n"),
                v.into(),
            );
        }
        AdminCommand::Token {
            command: TokenCommand::Issue { user, permissions, structures, label, product },
        } => {
            let perms = PermissionSet::parse_list(&permissions).map_err(|e| anyhow!("--permissions: {e}"))?;
            let token = match product {
                Some(p) => admin::issue_product_token(s, &user, &p, &structures).await?,
                None => admin::issue_token(s, &user, perms, &structures, &label).await?,
            };
            out(token.clone(), serde_json::json!({"access_token": token, "permissions": perms.to_list()}));
        }
        AdminCommand::Product {
            command: ProductCommand::Create { name, description, redirect_uris, permissions, public },
        } => {
            let perms = PermissionSet::parse_list(&permissions).map_err(|e| anyhow!("--permissions: {e}"))?;
            let p =
                admin::create_product(s, &name, &description, &redirect_uris, perms, public, None).await?;
            out(
                format!(
                    "created product {} (client id {}){}",
                    p.name,
                    p.client_id,
                    p.client_secret
                        .as_ref()
                        .map(|s| format!("\nclient secret (shown once): {s}"))
                        .unwrap_or_default()
                ),
                serde_json::to_value(&p)?,
            );
        }
        AdminCommand::Product { command: ProductCommand::Update { client_id, permissions } } => {
            let perms = PermissionSet::parse_list(&permissions).map_err(|e| anyhow!("--permissions: {e}"))?;
            let v = roost_store::Store::update_product_permissions(s, &client_id, perms.bits()).await?;
            out(
                format!("product {client_id} is now at client version {v}"),
                serde_json::json!({"client_id": client_id, "client_version": v}),
            );
        }
        AdminCommand::Product { command: ProductCommand::List } => {
            let products = roost_store::Store::products(s).await?;
            let v: Vec<_> = products
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "client_id": p.id, "name": p.name, "redirect_uris": p.redirect_uris,
                        "permissions": PermissionSet::from_bits(p.permissions).to_list(),
                        "client_version": p.client_version, "public": p.secret_hash.is_none(),
                    })
                })
                .collect();
            out(
                v.iter().map(|x| format!("{}  {}", x["client_id"], x["name"])).collect::<Vec<_>>().join("\n"),
                v.into(),
            );
        }
        AdminCommand::Token { command: TokenCommand::Revoke { token } } => {
            let was = admin::revoke_token(s, &token).await?;
            out(
                if was { "revoked".into() } else { "no active token matched".into() },
                serde_json::json!({"revoked": was}),
            );
        }
        AdminCommand::Token { command: TokenCommand::List { user } } => {
            let u = admin::find_user(s, &user).await?;
            let tokens = roost_store::Store::tokens_of(s, &u.id).await?;
            let v: Vec<_> = tokens
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "label": t.label, "created_at": t.created_at, "revoked": t.revoked,
                        "permissions": PermissionSet::from_bits(t.permissions).to_list(), "structures": t.structures,
                    })
                })
                .collect();
            out(
                v.iter()
                    .map(|x| format!("{}  {}  revoked={}", x["created_at"], x["label"], x["revoked"]))
                    .collect::<Vec<_>>()
                    .join("\n"),
                v.into(),
            );
        }
    }
    store.close();
    Ok(())
}
