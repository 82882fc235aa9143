//! imagelens: plain-English search over a curated library of annotated imagery.
//!
//! The binary's library half: [`search`] (hybrid ranking, look-ups, facets), [`app`] (opening
//! a library and its model), [`cli`] (the `imagelens` command), [`http`] (the API of
//! `imagelens serve`, with [`settings`]), [`collections`] (saved record sets) and [`export`]
//! (data sets as archives). [`params`] holds the filter parameters both front ends share, and
//! [`governance`] the one permission check and audit entry of both: an [`governance::Actor`]
//! requires an [`governance::Action`] (whose trail name and permission live in one table) and
//! records what it discloses; [`governance::accounts`], [`governance::audit`],
//! [`governance::retention`], [`governance::deletion`] and [`governance::redact`] keep the
//! accounts, the trail, retention and holds, deletion with receipts and redaction.
//! Ingest, stores and models live in the `indexer` and `models` crates.

pub mod app;
pub mod cli;
pub mod collections;
pub mod eval;
pub mod export;
pub mod governance;
pub mod http;
pub mod interpret;
pub mod params;
pub mod search;
pub mod settings;
