//! imagelens: plain-English search over a curated library of annotated imagery.
//!
//! The binary's library half: [`search`] (hybrid ranking, look-ups, facets), [`app`] (opening
//! a library and its model) and [`cli`] (the `imagelens` command). Ingest, stores and models
//! live in the `indexer` and `models` crates.

pub mod app;
pub mod cli;
pub mod search;
