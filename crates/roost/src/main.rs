//! `roost`: serve the home data service, administer a data dir, simulate devices, measure.
//!
//! `cli` is what the command line takes (`roost bench` is the roost-bench crate), `config` how settings are layered (flags, `ROOST_*`
//! variables, a TOML file, defaults), `commands` what each subcommand does.

use clap::{CommandFactory, FromArgMatches};

mod cli;
mod commands;
mod config;
mod sim;

/// The service allocates and frees many small JSON nodes per request; mimalloc does that
/// faster than the system allocator under threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let matches = cli::Cli::command().get_matches();
    let parsed = cli::Cli::from_arg_matches(&matches).map_err(|e| e.exit());
    let Ok(cli) = parsed;
    // Settings are layered against the innermost subcommand's matches, where clap puts the
    // values of global flags.
    let mut leaf = &matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("roost: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::Serve(args) => commands::serve::run(*args, leaf).await,
            cli::Command::Admin(args) => commands::admin::run(*args, leaf).await,
            cli::Command::Bench { command } => roost_bench::run(command).await,
            cli::Command::Sim(args) => commands::sim::run(args).await,
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
