//! The command line: what `roost` and its subcommands take (settings are in [`crate::config`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{ConfigFile, RuleSettings, ServeSettings, StoreSettings};

#[derive(Parser)]
#[command(
    name = "roost",
    version,
    about = "Roost: a home data service (the Nest API architecture, and beyond)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(Box<ServeArgs>),
    /// Simulated devices, each a real client with its own device credential.
    Sim(SimArgs),
    /// Measure (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: roost_bench::BenchCommand,
    },
    /// Administer a data dir (works while the server runs; the server picks changes up).
    Admin(Box<AdminArgs>),
}

#[derive(clap::Args)]
pub struct SimArgs {
    /// A data dir whose demo.json names the server and the demo devices' credentials.
    #[arg(long, env = "ROOST_DATA")]
    pub data: Option<PathBuf>,
    /// Credentials as `roost admin device pair --json` prints them (a JSON object per line,
    /// or one JSON array); with --url.
    #[arg(long)]
    pub devices: Option<PathBuf>,
    /// The server's URL (with --devices).
    #[arg(long)]
    pub url: Option<String>,
    /// CA certificate to trust (with --devices).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Share of requests lost (0–1).
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Extra latency per request, uniformly up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Cut each device's stream this often (seconds).
    #[arg(long)]
    pub disconnect_secs: Option<u64>,
    /// The devices' clocks are off by this many seconds.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_skew_secs: i64,
    /// Faults stop after this many seconds (default: never).
    #[arg(long)]
    pub faults_secs: Option<u64>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 10.0)]
    pub speed: f64,
    /// Outside temperature (°F) that idle homes drift toward.
    #[arg(long, default_value_t = 45.0)]
    pub outside_f: f64,
    /// Motion events per device per simulated hour.
    #[arg(long, default_value_t = 6.0)]
    pub motion_per_hour: f64,
    /// Rewrite this JSON file with each device's counters every half second.
    #[arg(long)]
    pub status: Option<PathBuf>,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Seed of the simulated noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `roost serve`: every setting.
#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub file: ConfigFile,
    #[command(flatten)]
    pub serve: ServeSettings,
    #[command(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    pub rules: RuleSettings,
}

/// `roost admin`: the data dir and the settings that change what an admin write does, read
/// as `roost serve` reads them (flags, ROOST_* variables, the config file).
#[derive(clap::Args)]
pub struct AdminArgs {
    /// Print JSON for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Create the data dir when it does not exist (otherwise a missing one is an error, so a
    /// misspelled path does not quietly start an empty store).
    #[arg(long, global = true)]
    pub init: bool,
    #[command(flatten)]
    pub file: ConfigFile,
    #[command(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    pub rules: RuleSettings,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand)]
pub enum AdminCommand {
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
pub enum ProductCommand {
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
    /// Lists every product with its client id, permissions and redirect URIs.
    List,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Creates a user (prints its id).
    Create {
        /// The login name (1 to 254 characters).
        #[arg(long)]
        login: String,
        /// Password (omit for a user who cannot log in). Prefer ROOST_PASSWORD.
        #[arg(long, env = "ROOST_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Lists every user's id and login.
    List,
}

#[derive(Subcommand)]
pub enum StructureCommand {
    /// Creates a home owned by a user (prints its id).
    Create {
        /// Owner: user id or login.
        #[arg(long)]
        owner: String,
        #[arg(long, default_value = "Home")]
        name: String,
    },
    /// Lists every home with its owner, revision and name.
    List,
    /// Home/Away of a structure, set as the service (rules and home logic apply as to any write).
    Away {
        #[arg(long)]
        structure: String,
        /// home or away.
        #[arg(long)]
        state: String,
    },
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
        /// Enrolled in Rush Hour Rewards (true or false).
        #[arg(long)]
        enrolled: Option<bool>,
    },
}

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Adds a device with typical settings to a home (prints its id).
    Add {
        /// The home (structure id).
        #[arg(long)]
        structure: String,
        /// thermostat, protect or camera.
        #[arg(long)]
        kind: String,
        /// The room, created when new.
        #[arg(long = "where", default_value = "Living Room")]
        where_name: String,
        /// A label of its own (shown in its name).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Lists a home's devices with their kind.
    List {
        /// The home (structure id).
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
pub enum TokenCommand {
    /// Issues an access token to a user (printed once; only its hash is stored).
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
        /// What the token is for, shown by `token list`.
        #[arg(long, default_value = "admin")]
        label: String,
        /// Issue the token to a product (client id): it gets the product's permissions and
        /// its rate limits, as if the user had consented.
        #[arg(long)]
        product: Option<String>,
    },
    /// Revokes a token: give the token itself, or its id from `token list` with --user.
    Revoke {
        /// The token (`c.…`), or with --user its id (the first hex digits `token list` shows).
        token: String,
        /// The token's owner (user id or login), when revoking by id.
        #[arg(long)]
        user: Option<String>,
    },
    /// Lists a user's tokens: id, when issued, label, permissions, homes, revoked or not.
    List {
        /// User id or login.
        #[arg(long)]
        user: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand says what it does in `--help`.
    #[test]
    fn every_subcommand_has_help() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in c.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(name.clone());
                }
                walk(sub, &name, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "roost", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:?}");
    }
}
