//! The one integration-test binary (ripgrep/qdrant style): end to end through the CLI binary
//! and through the library crates, on data generated from seeds.

mod cli;
mod common;
mod crash;
mod http;
mod ingest;
mod privacy;
mod search_safety;
