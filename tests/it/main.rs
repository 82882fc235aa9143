//! The one integration-test binary (ripgrep/qdrant style): end to end through the CLI binary
//! and through the library crates, on data generated from seeds.

mod accounts_safety;
mod browser;
mod cli;
mod common;
mod crash;
mod fuzz;
mod generators;
mod http;
mod ingest;
mod privacy;
mod redaction;
mod search_safety;
mod web;
mod writers;
