//! The `imagelens` command line: the contract other tools and the tests call.
//!
//! One file per subcommand; each is a thin call into [`crate::search`] or `indexer`. Errors go
//! to stderr with a non-zero exit; `--json` prints exactly one JSON document on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indexer::filter::{DateRange, FilenameMatch, RecordFilter};
use indexer::record::DateAxis;

use crate::app::AppSettings;

mod demo;
mod facets;
mod info;
mod ingest;
mod lookup;
mod search;

/// imagelens: find images in an annotated library by typing plain English.
#[derive(Debug, Parser)]
#[command(name = "imagelens", version, about, max_term_width = 100)]
pub struct Cli {
    /// Library data directory.
    #[arg(
        long,
        global = true,
        env = "IMAGELENS_DATA_DIR",
        default_value = "imagelens-data"
    )]
    pub data_dir: PathBuf,
    /// CLIP model: a local folder in the Hugging Face layout, or a hub repo id
    /// (default: the library's model, else openai/clip-vit-base-patch32).
    #[arg(long, global = true, env = "IMAGELENS_MODEL")]
    pub model: Option<String>,
    /// Do not load any model: keyword search, filters and look-ups only.
    #[arg(long, global = true, env = "IMAGELENS_NO_MODEL")]
    pub no_model: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest an annotation export and its images into the library.
    Ingest(ingest::IngestArgs),
    /// Search with a plain-English query (hybrid keyword + vector).
    Search(search::SearchArgs),
    /// Look records up by filename or date, without any model.
    Lookup(lookup::LookupArgs),
    /// Count records per label, dataset and month of each time axis.
    Facets(facets::FacetArgs),
    /// Show the library's model, counts and layout.
    Info(info::InfoArgs),
    /// Build a demo library from generated scenes and run example searches.
    Demo(demo::DemoArgs),
}

/// Filters shared by search, lookup and facets.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only records with this label (repeat: all must be present).
    #[arg(long = "label", value_name = "L")]
    pub labels: Vec<String>,
    /// Only records without this label (repeatable).
    #[arg(long = "no-label", value_name = "L")]
    pub no_labels: Vec<String>,
    /// Only records of this dataset (repeat: any of them).
    #[arg(long = "dataset", value_name = "D")]
    pub datasets: Vec<String>,
    /// Captured on or after DATE (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub captured_after: Option<String>,
    /// Captured on or before DATE (a bare day includes the whole day).
    #[arg(long, value_name = "DATE")]
    pub captured_before: Option<String>,
    /// File created on or after DATE.
    #[arg(long, value_name = "DATE")]
    pub created_after: Option<String>,
    /// File created on or before DATE.
    #[arg(long, value_name = "DATE")]
    pub created_before: Option<String>,
    /// Annotated/exported on or after DATE.
    #[arg(long, value_name = "DATE")]
    pub annotated_after: Option<String>,
    /// Annotated/exported on or before DATE.
    #[arg(long, value_name = "DATE")]
    pub annotated_before: Option<String>,
    /// Ingested on or after DATE.
    #[arg(long, value_name = "DATE")]
    pub ingested_after: Option<String>,
    /// Ingested on or before DATE.
    #[arg(long, value_name = "DATE")]
    pub ingested_before: Option<String>,
    /// File name: exact, or a glob when it contains * ? or [ (a pattern with / matches the
    /// path relative to the images folder).
    #[arg(long, value_name = "PATTERN", conflicts_with_all = ["filename_prefix", "filename_glob"])]
    pub filename: Option<String>,
    /// File name starts with P.
    #[arg(long, value_name = "P", conflicts_with = "filename_glob")]
    pub filename_prefix: Option<String>,
    /// File name matches the glob G.
    #[arg(long, value_name = "G")]
    pub filename_glob: Option<String>,
}

impl FilterArgs {
    /// The exact filter these flags describe.
    ///
    /// # Errors
    /// A bad date, naming the flag.
    pub fn to_filter(&self) -> anyhow::Result<RecordFilter> {
        let mut dates = Vec::new();
        let pairs = [
            (
                DateAxis::Captured,
                &self.captured_after,
                &self.captured_before,
            ),
            (DateAxis::Created, &self.created_after, &self.created_before),
            (
                DateAxis::Annotated,
                &self.annotated_after,
                &self.annotated_before,
            ),
            (
                DateAxis::Ingested,
                &self.ingested_after,
                &self.ingested_before,
            ),
        ];
        for (axis, after, before) in pairs {
            if after.is_none() && before.is_none() {
                continue;
            }
            let name = axis.name();
            let after = after
                .as_deref()
                .map(indexer::dates::parse_date)
                .transpose()
                .with_context(|| format!("--{name}-after"))?;
            let before = before
                .as_deref()
                .map(indexer::dates::parse_date_end)
                .transpose()
                .with_context(|| format!("--{name}-before"))?;
            dates.push(DateRange {
                axis,
                after,
                before,
            });
        }
        let filename = match (&self.filename, &self.filename_prefix, &self.filename_glob) {
            (Some(f), _, _) if f.contains(['*', '?', '[']) => Some(FilenameMatch::Glob(f.clone())),
            (Some(f), _, _) => Some(FilenameMatch::Exact(f.clone())),
            (_, Some(p), _) => Some(FilenameMatch::Prefix(p.clone())),
            (_, _, Some(g)) => Some(FilenameMatch::Glob(g.clone())),
            _ => None,
        };
        Ok(RecordFilter {
            labels: self.labels.clone(),
            no_labels: self.no_labels.clone(),
            datasets: self.datasets.clone(),
            dates,
            filename,
        })
    }
}

/// Runs the command line and maps errors to a message on stderr and exit code 1
/// (2 for usage errors, from clap).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IMAGELENS_LOG")
                // qdrant-edge warns about process-wide flags it never needs embedded.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,qdrant_edge=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command.
///
/// # Errors
/// Anything the command reports.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = AppSettings {
        data_dir: cli.data_dir,
        model: cli.model,
        no_model: cli.no_model,
        store: indexer::StoreSettings::Edge,
    };
    match cli.command {
        Command::Ingest(a) => ingest::run(&settings, a),
        Command::Search(a) => search::run(&settings, a),
        Command::Lookup(a) => lookup::run(&settings, a),
        Command::Facets(a) => facets::run(&settings, a),
        Command::Info(a) => info::run(&settings, a),
        Command::Demo(a) => demo::run(&settings, a),
    }
}

/// Prints one JSON document.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Shortens text to `n` characters for table cells.
fn cell(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(n.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// A date for tables (`2021-03-04`), or `-`.
fn day(d: Option<chrono::DateTime<chrono::Utc>>) -> String {
    d.map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "-".into())
}
