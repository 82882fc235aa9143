//! The one integration-test binary (ripgrep/qdrant style): end to end through the CLI binary
//! and through the library crates, on data generated from seeds.

mod accounts_safety;
mod browser;
mod cli;
mod common;
mod crash;
mod eval;
mod formats;
mod fuzz;
mod generators;
mod http;
mod ingest;
mod interpret;
mod privacy;
mod redaction;
mod search_paging;
mod search_safety;
#[cfg(feature = "server")]
mod store_server;
mod web;
mod writers;
