//! `imagelens lookup`: records by filename or date, for auditors. Never loads a model.

use std::process::ExitCode;

use clap::Args;
use indexer::record::DateAxis;

use super::{FilterArgs, access, cell, day};
use crate::app::AppSettings;
use crate::governance::Action;
use crate::params::audited_lookup;
use crate::search::{Catalog, LookupRequest};

/// Arguments of `lookup`.
#[derive(Debug, Args)]
pub struct LookupArgs {
    /// Filters (filename and date flags are the usual ones).
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Axis to sort by (default: the axis of the first date filter, else ingested).
    #[arg(long, value_enum)]
    pub sort: Option<AxisArg>,
    /// Newest first.
    #[arg(long)]
    pub desc: bool,
    /// Records per page.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Cursor from the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print one JSON document with the full records.
    #[arg(long)]
    pub json: bool,
}

/// A time axis on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AxisArg {
    /// Capture time.
    Captured,
    /// File creation time.
    Created,
    /// Annotation/export time.
    Annotated,
    /// Ingest time.
    Ingested,
}

impl From<AxisArg> for DateAxis {
    fn from(a: AxisArg) -> Self {
        match a {
            AxisArg::Captured => DateAxis::Captured,
            AxisArg::Created => DateAxis::Created,
            AxisArg::Annotated => DateAxis::Annotated,
            AxisArg::Ingested => DateAxis::Ingested,
        }
    }
}

/// Runs `lookup`.
///
/// # Errors
/// Bad dates, patterns or cursor; index failures.
pub fn run(settings: &AppSettings, args: LookupArgs) -> anyhow::Result<ExitCode> {
    let (app, caller) = access::open(settings)?;
    let audit = app.audit();
    caller.require(audit, Action::Lookup)?;
    let catalog = Catalog::new(app.library()?.clone());
    let req = LookupRequest {
        filter: args.filter.to_filter()?,
        sort: args.sort.map(Into::into),
        descending: args.desc,
        limit: args.limit,
        cursor: args.cursor,
    };
    let resp = catalog.lookup(&req)?;
    let query = audited_lookup(
        &args.filter,
        req.sort,
        req.descending,
        req.limit,
        req.cursor.as_deref(),
    );
    caller.audit(
        audit,
        Action::Lookup,
        query,
        resp.results.iter().map(|r| r.id.clone()).collect(),
    )?;
    if args.json {
        super::print_json(&resp)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} records match", resp.total);
    println!(
        "{:<16}  {:<32}  {:<10}  {:<10}  {:<10}  {:<10}  {:<12}  labels",
        "id", "path", "captured", "created", "annotated", "ingested", "sha256"
    );
    for r in &resp.results {
        println!(
            "{:<16}  {:<32}  {:<10}  {:<10}  {:<10}  {:<10}  {:<12}  {}",
            r.id,
            cell(&r.path, 32),
            day(r.dates.captured),
            day(r.dates.created),
            day(r.dates.annotated),
            day(r.dates.ingested),
            &r.sha256[..12.min(r.sha256.len())],
            r.labels.join(",")
        );
    }
    if let Some(c) = &resp.next_cursor {
        println!("next page: --cursor {c}");
    }
    Ok(ExitCode::SUCCESS)
}
