//! `imagelens facets`.

use std::process::ExitCode;

use clap::Args;

use super::{FilterArgs, access};
use crate::app::AppSettings;
use crate::governance::Action;
use crate::params::audited_facets;
use crate::search::Catalog;

/// Arguments of `facets`.
#[derive(Debug, Args)]
pub struct FacetArgs {
    /// Filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Runs `facets`.
///
/// # Errors
/// Bad filters; index failures.
pub fn run(settings: &AppSettings, args: FacetArgs) -> anyhow::Result<ExitCode> {
    let (app, caller) = access::open(settings)?;
    let audit = app.audit();
    caller.require(audit, Action::Facets)?;
    let catalog = Catalog::new(app.library()?.clone());
    let filter = args.filter.to_filter()?;
    let facets = catalog.facets(&filter)?;
    caller.audit(audit, Action::Facets, audited_facets(&args.filter), vec![])?;
    if args.json {
        super::print_json(&facets)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} records", facets.total);
    let mut labels: Vec<_> = facets.labels.iter().collect();
    labels.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("labels:");
    for (l, n) in labels {
        println!("  {l:<24} {n}");
    }
    println!("datasets:");
    for (d, n) in &facets.datasets {
        println!("  {d:<24} {n}");
    }
    for (title, counts) in [
        ("splits", &facets.splits),
        ("box attributes", &facets.attrs),
    ] {
        if !counts.is_empty() {
            println!("{title}:");
            for (v, n) in counts {
                println!("  {v:<24} {n}");
            }
        }
    }
    for (axis, months) in &facets.months {
        if months.is_empty() {
            continue;
        }
        println!("{axis} by month:");
        for (m, n) in months {
            println!("  {m}  {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
