//! One module per subcommand; each turns parsed arguments into calls of the library crates.

pub mod admin;
pub mod serve;
pub mod sim;
