//! The one integration-test binary: every test starts the real `roost` binary (TLS with the
//! generated CA, a temp data dir, port 0) and talks HTTPS to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod cli;
mod cluster;
mod compat;
mod crash;
mod data;
mod devices;
mod errors;
mod helpers;
mod history;
mod lifecycle;
mod limits;
mod oauth;
mod openapi;
mod permissions;
mod reference;
mod streams;
