//! # roost-bench: load generation and measurement (`roost bench`)
//!
//! Each benchmark seeds its own data dir and starts the `roost serve` of the binary running it
//! (or drives a peer started by `scripts/peers/`), with the same client for every peer. What
//! the numbers mean and the side-by-side runs are in BENCHMARKS.md.
//!
//! - `client.rs`: the HTTP/1.1 load client and its statistics;
//! - `bed.rs`: a seeded data dir with a server on it;
//! - `api.rs`: the data API's scenarios, against Roost or a peer;
//! - `fanout.rs`: streams under load (fan-out, idle streams over HTTP/2, revocation);
//! - `cold_start.rs`: the time to the first answer on a large data dir;
//! - `command.rs`: the `roost bench` subcommands.

mod api;
mod bed;
mod client;
mod cold_start;
mod command;
mod fanout;

pub use command::{BenchCommand, run};
