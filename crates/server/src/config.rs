//! Everything `roost serve` can be told, and every default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use roost_model::RuleConfig;

use crate::{api, clock, ratelimit};

/// Everything `roost serve` can be told.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// A PostgreSQL connection string (`postgres://…`): the cluster backend, shared with other
    /// nodes. `None`: the embedded store in the data dir.
    pub database: Option<String>,
    /// Connections to it (each a PostgreSQL backend process).
    pub database_pool: usize,
    /// Other nodes' commits wake this node at once (NOTIFY/LISTEN); off: it polls the feed.
    pub database_wakeups: bool,
    /// Homes held in memory at most (homes load on first use; past it, the least recently
    /// used that no stream follows are let go).
    pub cache_homes: usize,
    pub listen: SocketAddr,
    /// Plain HTTP (loopback only).
    pub insecure_http: bool,
    /// Certificate and key files; generated into the data dir when absent.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Extra names for the generated server certificate.
    pub hostnames: Vec<String>,
    /// The optional front door that answers every request with a 307 to the data listener.
    pub front_listen: Option<SocketAddr>,
    /// Host (and port) put in the front door's `Location`; the data listener's by default.
    pub front_location: Option<String>,
    pub body_limit: usize,
    pub keepalive: Duration,
    pub changelog_keep: u64,
    pub h2_max_streams: u32,
    /// Connections open at once over all listeners; past it, new ones wait to be accepted.
    pub max_connections: usize,
    /// Concurrent streams one token may hold open.
    pub max_streams_per_token: usize,
    /// Concurrent streams one user may hold open over all tokens.
    pub max_streams_per_user: usize,
    /// Rate limits for products' tokens.
    pub limits: ratelimit::Limits,
    /// Lifetime of a web-flow authorization code (the original: 10 minutes).
    pub code_ttl: Duration,
    /// Lifetime of a PIN (the original: 48 hours).
    pub pin_ttl: Duration,
    pub rules: RuleConfig,
    pub demo: bool,
    /// A paired device with no stream and no request for this long is offline.
    pub offline_timeout: Duration,
    /// How often the clock writes what time makes due (connectivity, Home/Away Assist).
    pub tick: Duration,
}

impl Config {
    /// The defaults with another data dir.
    pub fn new(data_dir: PathBuf) -> Config {
        Config { data_dir, ..Config::default() }
    }
}

/// Every default of the service, in one place (`roost serve --help` shows these).
impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("roost-data"),
            database: None,
            database_pool: 16,
            database_wakeups: true,
            cache_homes: 100_000,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            insecure_http: false,
            tls_cert: None,
            tls_key: None,
            hostnames: Vec::new(),
            front_listen: None,
            front_location: None,
            body_limit: 64 * 1024,
            keepalive: api::KEEPALIVE_DEFAULT,
            changelog_keep: 10_000,
            h2_max_streams: 10_000,
            // Below the 20,000 open files a process may hold here; `listen::Gate` lowers it
            // further under a smaller open-file limit.
            max_connections: 19_000,
            max_streams_per_token: 100,
            max_streams_per_user: 1_000,
            limits: ratelimit::Limits::default(),
            code_ttl: Duration::from_secs(600),
            pin_ttl: Duration::from_secs(48 * 3600),
            rules: RuleConfig::default(),
            demo: false,
            offline_timeout: Duration::from_secs(120),
            tick: clock::TICK_DEFAULT,
        }
    }
}
