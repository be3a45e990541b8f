//! Settings: one struct per group, each field a flag, a `ROOST_*` variable and a key of the
//! TOML config file at once. A flag wins over a variable, a variable over the file, the file
//! over the default; an error names the setting and where it came from. The defaults are the
//! server's ([`roost_server::Config::default`]), shown by `--help`.
//!
//! `roost serve` reads every group; `roost admin` reads the same file and variables for the
//! groups that change what it does (the data dir, the change log window, the rules), so an
//! operator's setting changes an admin write exactly as it changes an API write.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;
use roost_model::RuleConfig;
use roost_server::Config;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The server's defaults (what `--help` shows).
fn d() -> Config {
    Config::default()
}

/// The config file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigFile {
    /// TOML config file with any of the settings below (by their long names, `_` for `-`);
    /// flags and ROOST_* variables override it.
    #[arg(long, env = "ROOST_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// Where the data lives.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone)]
#[command(next_help_heading = "Storage")]
pub struct StoreSettings {
    /// Data directory (database, certificates, demo.json).
    #[arg(long, env = "ROOST_DATA", default_value_os_t = d().data_dir, global = true)]
    pub data: PathBuf,
    /// PostgreSQL to keep the homes in, shared by several nodes (`postgres://user:password@host:port/db`);
    /// without it, the embedded store in the data dir.
    #[arg(long, env = "ROOST_STORE", global = true)]
    pub store: Option<String>,
    /// Homes held in memory at most; more load on first use and the least recently used are
    /// let go.
    #[arg(long, env = "ROOST_CACHE_HOMES", default_value_t = d().cache_homes, global = true)]
    pub cache_homes: usize,
    /// Connections to PostgreSQL (with --store).
    #[arg(long, env = "ROOST_STORE_POOL", default_value_t = d().database_pool, global = true)]
    pub store_pool: usize,
    /// Other nodes' commits wake this node at once (PostgreSQL NOTIFY/LISTEN, with --store);
    /// false: it learns of them by polling every 250 ms (for a pooler that cannot LISTEN).
    #[arg(long, env = "ROOST_STORE_WAKEUPS", default_value_t = d().database_wakeups,
          action = clap::ArgAction::Set, global = true)]
    pub store_wakeups: bool,
    /// Change log entries kept per structure, at least (older ones go 16 at a time).
    #[arg(long, env = "ROOST_CHANGELOG_KEEP", default_value_t = d().changelog_keep, global = true)]
    pub changelog_keep: u64,
}

impl StoreSettings {
    /// The PostgreSQL connection string, checked to be one.
    pub fn database(&self) -> anyhow::Result<Option<String>> {
        match &self.store {
            None => Ok(None),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Some(url.clone()))
            }
            Some(_) => bail!(
                "store must be a postgres:// connection string (the embedded store is the default: leave store out and use --data)"
            ),
        }
    }
}

/// The rules and home logic the original API left to the service.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone)]
#[command(next_help_heading = "Rules and home logic")]
pub struct RuleSettings {
    /// Minimum heat-cool spread in °F.
    #[arg(long, env = "ROOST_MIN_SPREAD_F", default_value_t = d().rules.min_spread_f, global = true)]
    pub min_spread_f: f64,
    /// Minimum heat-cool spread in °C.
    #[arg(long, env = "ROOST_MIN_SPREAD_C", default_value_t = d().rules.min_spread_c, global = true)]
    pub min_spread_c: f64,
    /// Away puts thermostats in eco, home restores them.
    #[arg(long, env = "ROOST_ECO_ON_AWAY", default_value_t = d().rules.eco_on_away,
          action = clap::ArgAction::Set, global = true)]
    pub eco_on_away: bool,
    /// Home/Away Assist.
    #[arg(long, env = "ROOST_ASSIST", default_value_t = d().rules.assist.enabled,
          action = clap::ArgAction::Set, global = true)]
    pub assist: bool,
    /// Turn Home/Away Assist off (the same as `--assist false`; kept for existing scripts).
    #[arg(long, env = "ROOST_NO_ASSIST", global = true)]
    pub no_assist: bool,
    /// Home/Away Assist: quiet time before a home turns away, in seconds.
    #[arg(long, env = "ROOST_ASSIST_QUIET_SECS", default_value_t = d().rules.assist.quiet_secs, global = true)]
    pub assist_quiet_secs: i64,
    /// Home/Away Assist: how long a person's own change of away is held, in seconds.
    #[arg(long, env = "ROOST_ASSIST_HOLD_SECS", default_value_t = d().rules.assist.hold_secs, global = true)]
    pub assist_hold_secs: i64,
    /// Security state relaxes from deter after this long without a person, in seconds.
    #[arg(long, env = "ROOST_SECURITY_QUIET_SECS", default_value_t = d().rules.assist.security_quiet_secs,
          global = true)]
    pub security_quiet_secs: i64,
}

/// The service's listeners, limits and timers.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone)]
#[command(next_help_heading = "Service")]
pub struct ServeSettings {
    /// Address of the data listener (port 0 picks a free port).
    #[arg(long, env = "ROOST_LISTEN", default_value_t = d().listen)]
    pub listen: SocketAddr,
    /// Serve plain HTTP (loopback only).
    #[arg(long, env = "ROOST_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Create (once) and print a demo user, home and token; run simulated devices.
    #[arg(long, env = "ROOST_DEMO")]
    pub demo: bool,
    /// Certificate (PEM) instead of the generated one.
    #[arg(long, env = "ROOST_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "ROOST_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Extra names for the generated server certificate (comma-separated or repeated).
    #[arg(long, env = "ROOST_HOSTNAMES", value_delimiter = ',')]
    pub hostnames: Vec<String>,
    /// Front door: answers every request with a 307 to the data listener.
    #[arg(long, env = "ROOST_FRONT_LISTEN")]
    pub front_listen: Option<SocketAddr>,
    /// Host[:port] (or URL) put in the front door's Location.
    #[arg(long, env = "ROOST_FRONT_LOCATION")]
    pub front_location: Option<String>,
    /// Keep-alive interval of streams, in seconds.
    #[arg(long, env = "ROOST_KEEPALIVE_SECS", default_value_t = d().keepalive.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive_secs: u64,
    /// Largest request body in bytes.
    #[arg(long, env = "ROOST_BODY_LIMIT", default_value_t = d().body_limit)]
    pub body_limit: usize,
    /// Connections open at once; past it, new ones wait to be accepted.
    #[arg(long, env = "ROOST_MAX_CONNECTIONS", default_value_t = d().max_connections)]
    pub max_connections: usize,
    /// Concurrent streams per token.
    #[arg(long, env = "ROOST_MAX_STREAMS_PER_TOKEN", default_value_t = d().max_streams_per_token)]
    pub max_streams_per_token: usize,
    /// Concurrent streams per user.
    #[arg(long, env = "ROOST_MAX_STREAMS_PER_USER", default_value_t = d().max_streams_per_user)]
    pub max_streams_per_user: usize,
    /// Products' calls per token per minute (0: no limit).
    #[arg(long, env = "ROOST_CALLS_PER_TOKEN_PER_MINUTE", default_value_t = d().limits.calls_per_token_per_minute)]
    pub calls_per_token_per_minute: u32,
    /// Products' stream opens per token per hour (0: no limit).
    #[arg(long, env = "ROOST_STREAM_OPENS_PER_TOKEN_PER_HOUR",
          default_value_t = d().limits.stream_opens_per_token_per_hour)]
    pub stream_opens_per_token_per_hour: u32,
    /// Writes per device per hour, shared by all products (0: no limit).
    #[arg(long, env = "ROOST_WRITES_PER_DEVICE_PER_HOUR", default_value_t = d().limits.writes_per_device_per_hour)]
    pub writes_per_device_per_hour: u32,
    /// Writes per structure per hour, shared by all products (0: no limit).
    #[arg(long, env = "ROOST_WRITES_PER_STRUCTURE_PER_HOUR",
          default_value_t = d().limits.writes_per_structure_per_hour)]
    pub writes_per_structure_per_hour: u32,
    /// Lifetime of web-flow authorization codes, in seconds.
    #[arg(long, env = "ROOST_CODE_TTL_SECS", default_value_t = d().code_ttl.as_secs(), hide = true)]
    pub code_ttl_secs: u64,
    /// With --demo: do not run the built-in device simulator.
    #[arg(long, env = "ROOST_NO_SIM")]
    pub no_sim: bool,
    /// Simulated seconds per real second of the demo's simulator (above 0, at most 10000).
    #[arg(long, env = "ROOST_SIM_SPEED", default_value_t = 10.0)]
    pub sim_speed: f64,
    /// A paired device with no stream and no request for this long is offline, in seconds.
    #[arg(long, env = "ROOST_OFFLINE_TIMEOUT_SECS", default_value_t = d().offline_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub offline_timeout_secs: u64,
    /// How often time-driven changes are written, in milliseconds.
    #[arg(long, env = "ROOST_TICK_MS", default_value_t = d().tick.as_millis() as u64, hide = true)]
    pub tick_ms: u64,
}

/// The TOML file's table (empty when no file is given).
fn read_file(path: Option<&Path>) -> anyhow::Result<toml::Table> {
    let Some(path) = path else { return Ok(toml::Table::new()) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    text.parse::<toml::Table>().with_context(|| format!("config file {}", path.display()))
}

/// `parsed` (flags, variables and defaults as clap found them) with every setting that came
/// from a default replaced by the file's value, when the file has one.
fn layered<T: Serialize + DeserializeOwned>(
    parsed: T,
    matches: &ArgMatches,
    file: &toml::Table,
) -> anyhow::Result<T> {
    let serde_json::Value::Object(mut values) = serde_json::to_value(&parsed)? else {
        bail!("settings are not a table");
    };
    for (key, value) in file {
        if !values.contains_key(key) {
            continue;
        }
        let from_default = matches!(matches.value_source(key), None | Some(ValueSource::DefaultValue));
        if !from_default {
            continue;
        }
        let mut one = values.clone();
        one.insert(key.clone(), serde_json::to_value(value)?);
        // Checked alone, so that the error names the setting.
        if let Err(e) = serde_json::from_value::<T>(serde_json::Value::Object(one)) {
            bail!("config file setting '{key}': {e}");
        }
        values.insert(key.clone(), serde_json::to_value(value)?);
    }
    Ok(serde_json::from_value(serde_json::Value::Object(values))?)
}

/// A file key that no group knows is an error (a misspelled setting must not pass silently).
fn check_keys(file: &toml::Table) -> anyhow::Result<()> {
    use clap::Args;
    // The settings' argument ids are their field names, which are the file's keys.
    let command = ServeSettings::augment_args(RuleSettings::augment_args(StoreSettings::augment_args(
        clap::Command::new("roost"),
    )));
    let known: BTreeSet<&str> = command.get_arguments().map(|a| a.get_id().as_str()).collect();
    if let Some(unknown) = file.keys().find(|k| !known.contains(k.as_str())) {
        bail!("config file: unknown field `{unknown}` (settings are the long flag names with `_` for `-`)");
    }
    Ok(())
}

/// What `roost admin` reads: the store and rule settings, layered.
pub struct AdminSettings {
    pub store: StoreSettings,
    pub rules: RuleConfig,
}

pub fn admin(
    file: &ConfigFile,
    store: StoreSettings,
    rules: RuleSettings,
    matches: &ArgMatches,
) -> anyhow::Result<AdminSettings> {
    let table = read_file(file.config.as_deref())?;
    check_keys(&table)?;
    let store = layered(store, matches, &table)?;
    let rules = rule_config(layered(rules, matches, &table)?)?;
    Ok(AdminSettings { store, rules })
}

/// What `roost serve` reads: everything, layered, as the server's [`Config`]; and the demo
/// simulator's speed (`None` when it is off).
pub fn serve(
    file: &ConfigFile,
    serve: ServeSettings,
    store: StoreSettings,
    rules: RuleSettings,
    matches: &ArgMatches,
) -> anyhow::Result<(Config, Option<f64>)> {
    let table = read_file(file.config.as_deref())?;
    check_keys(&table)?;
    let s = layered(serve, matches, &table)?;
    let store = layered(store, matches, &table)?;
    let rules = rule_config(layered(rules, matches, &table)?)?;
    if s.keepalive_secs == 0 {
        bail!("keepalive_secs must be at least 1");
    }
    if s.offline_timeout_secs == 0 {
        bail!("offline_timeout_secs must be at least 1");
    }
    if !(s.sim_speed > 0.0 && s.sim_speed <= 10_000.0) {
        bail!("sim_speed must be above 0 and at most 10000");
    }
    let database = store.database()?;
    let mut c = Config::new(store.data);
    c.database = database;
    c.database_pool = store.store_pool.max(1);
    c.database_wakeups = store.store_wakeups;
    c.cache_homes = store.cache_homes.max(1);
    c.changelog_keep = store.changelog_keep.max(1);
    c.rules = rules;
    c.listen = s.listen;
    c.insecure_http = s.insecure_http;
    c.demo = s.demo;
    c.tls_cert = s.tls_cert;
    c.tls_key = s.tls_key;
    c.hostnames = s.hostnames;
    c.front_listen = s.front_listen;
    c.front_location = s.front_location;
    c.keepalive = Duration::from_secs(s.keepalive_secs);
    c.body_limit = s.body_limit;
    c.max_connections = s.max_connections.max(1);
    c.max_streams_per_token = s.max_streams_per_token;
    c.max_streams_per_user = s.max_streams_per_user;
    c.limits.calls_per_token_per_minute = s.calls_per_token_per_minute;
    c.limits.stream_opens_per_token_per_hour = s.stream_opens_per_token_per_hour;
    c.limits.writes_per_device_per_hour = s.writes_per_device_per_hour;
    c.limits.writes_per_structure_per_hour = s.writes_per_structure_per_hour;
    c.code_ttl = Duration::from_secs(s.code_ttl_secs);
    c.offline_timeout = Duration::from_secs(s.offline_timeout_secs);
    c.tick = Duration::from_millis(s.tick_ms.max(10));
    let sim = (c.demo && !s.no_sim).then_some(s.sim_speed);
    Ok((c, sim))
}

fn rule_config(r: RuleSettings) -> anyhow::Result<RuleConfig> {
    let mut c = RuleConfig {
        min_spread_f: r.min_spread_f,
        min_spread_c: r.min_spread_c,
        eco_on_away: r.eco_on_away,
        ..RuleConfig::default()
    };
    c.assist.enabled = r.assist && !r.no_assist;
    for (value, setting, slot) in [
        (r.assist_quiet_secs, "assist_quiet_secs", &mut c.assist.quiet_secs),
        (r.assist_hold_secs, "assist_hold_secs", &mut c.assist.hold_secs),
        (r.security_quiet_secs, "security_quiet_secs", &mut c.assist.security_quiet_secs),
    ] {
        if value < 0 {
            return Err(anyhow!("{setting} must not be negative"));
        }
        *slot = value;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    /// `roost serve ARGS` read as the binary reads it (no config file).
    fn serve_config(args: &[&str]) -> super::Config {
        let matches = crate::cli::Cli::command().get_matches_from(args);
        let Some(("serve", sub)) = matches.subcommand() else { panic!("not serve") };
        let a = crate::cli::ServeArgs::from_arg_matches(sub).expect("serve arguments");
        super::serve(&a.file, a.serve, a.store, a.rules, sub).expect("settings").0
    }

    /// `--no-assist` (the flag of earlier releases) still turns Home/Away Assist off.
    #[test]
    fn no_assist_flag_of_earlier_releases_still_works() {
        assert!(serve_config(&["roost", "serve"]).rules.assist.enabled);
        assert!(!serve_config(&["roost", "serve", "--no-assist"]).rules.assist.enabled);
        assert!(!serve_config(&["roost", "serve", "--assist", "false"]).rules.assist.enabled);
    }
}
