//! The `imagelens` command line: the contract other tools and the tests call.
//!
//! One file per subcommand; each parses its flags, opens what it needs through [`crate::app`]
//! and calls the use case in [`crate::governance`], [`crate::search`] or `indexer`. Errors go
//! to stderr with a non-zero exit; `--json` prints exactly one JSON document on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{AppSettings, LockError, lock_data_dir};
pub use crate::params::FilterParams as FilterArgs;
pub use crate::settings::DEFAULT_DATA_DIR;
use crate::settings::{Overrides, Settings};

mod access;
mod audit;
mod delete;
mod demo;
mod eval;
mod facets;
mod info;
mod ingest;
mod lookup;
mod optimize;
mod retention;
mod search;
mod serve;

/// imagelens: find images in an annotated library by typing plain English.
#[derive(Debug, Parser)]
#[command(name = "imagelens", version, about, max_term_width = 100)]
pub struct Cli {
    /// TOML settings file read by every command (data_dir, model, the store and fusion tables;
    /// serve's addr and its limits and privacy tables); flags and environment variables win.
    #[arg(long, global = true, env = "IMAGELENS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Library data directory [default: imagelens-data].
    #[arg(long, global = true, env = "IMAGELENS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// CLIP model: a local folder in the Hugging Face layout, or a hub repo id
    /// (default: the library's model, else openai/clip-vit-base-patch32).
    #[arg(long, global = true, env = "IMAGELENS_MODEL")]
    pub model: Option<String>,
    /// Do not load any model: keyword search, filters and look-ups only.
    #[arg(long, global = true, env = "IMAGELENS_NO_MODEL")]
    pub no_model: bool,
    /// Number format the model computes in: f32, f16 or bf16 (default: what the library
    /// records, else f16 on a GPU, bf16 on a CPU with bf16 dot products (AVX512_BF16), f32 on
    /// other CPUs); a library refuses vectors of another precision than its own.
    #[arg(long, global = true, env = "IMAGELENS_PRECISION", value_name = "P",
          value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<models::Precision>()))]
    pub precision: Option<models::Precision>,
    /// API token of your account (needed once the library has accounts).
    #[arg(long, global = true, env = "IMAGELENS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Account name for password sign-in (the password from IMAGELENS_PASSWORD).
    #[arg(long, global = true, env = "IMAGELENS_USER")]
    pub user: Option<String>,
    /// Why you are looking (recorded in the audit trail).
    #[arg(long, global = true, env = "IMAGELENS_PURPOSE")]
    pub purpose: Option<String>,
    /// Vector store: `edge` (embedded, the default) or `qdrant+http://HOST:6334[/COLLECTION]`
    /// (a Qdrant server or cluster, gRPC port; `qdrant+https` for TLS; API key from
    /// IMAGELENS_QDRANT_API_KEY). Recorded when a library is made; a library refuses another.
    #[arg(long, global = true, env = "IMAGELENS_STORE", value_name = "URL",
          value_parser = crate::settings::store_url)]
    pub store: Option<String>,
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
    /// Measure search quality on the library's own annotations (R@k, nDCG@10, MRR).
    Eval(eval::EvalArgs),
    /// Serve the HTTP API (see /v1/openapi.json).
    Serve(serve::ServeArgs),
    /// Manage accounts (the first admin is created here).
    Account(access::AccountArgs),
    /// Issue, list and revoke API tokens.
    Token(access::TokenArgs),
    /// Verify the audit trail and ask who saw what.
    Audit(audit::AuditArgs),
    /// Retention schedules, legal holds and retention runs.
    Retention(retention::RetentionArgs),
    /// Delete records from every store, with a receipt.
    Delete(delete::DeleteArgs),
    /// Set the vector index (exact / HNSW graphs, int8 quantization) and rebuild it.
    Optimize(optimize::OptimizeArgs),
    /// Print the settings a command runs with (defaults, then --config, then environment and
    /// flags) as TOML; the Qdrant API key is never printed.
    Settings(SettingsArgs),
}

/// Arguments of `settings`.
#[derive(Debug, clap::Args)]
pub struct SettingsArgs {
    /// Print one JSON document instead of TOML.
    #[arg(long)]
    pub json: bool,
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
    // Defaults, then the settings file, then environment and flags: one tree for every command.
    let resolved = Settings::load(cli.config.as_deref())?.overlaid(Overrides {
        data_dir: cli.data_dir.clone(),
        model: cli.model.clone(),
        no_model: cli.no_model,
        precision: cli.precision,
        store: cli.store.clone(),
        api_key: qdrant_api_key(),
    });
    let command = match cli.command {
        Command::Serve(a) => return serve::run(resolved, a),
        Command::Settings(a) => return print_settings(resolved, &a),
        other => other,
    };
    resolved.validate()?;
    let store = match &command {
        // Demo makes a library of its own, on the embedded store.
        Command::Demo(_) => indexer::StoreSettings::Edge,
        _ => resolved.resolve_store()?,
    };
    let settings = AppSettings {
        data_dir: resolved.data_dir.clone(),
        model: resolved.model.clone(),
        no_model: resolved.no_model,
        precision: resolved.precision,
        store,
        fusion: resolved.fusion,
        token: cli.token.clone(),
        user: cli.user.clone(),
        purpose: cli.purpose.clone(),
    };
    // Demo builds a library of its own and locks that.
    let command = match command {
        Command::Demo(a) => return demo::run(&settings, resolved, a),
        other => other,
    };
    // One process at a time opens a data directory (see `app`): held until the command ends.
    let (what, instead) = describe(&command);
    let _lock = match lock_data_dir(&settings.data_dir, &what) {
        Ok(lock) => lock,
        Err(LockError::Busy(busy)) => {
            if let Command::Audit(audit::AuditArgs {
                command: audit::AuditCommand::Verify { json },
            }) = command
            {
                // Reading the trail without appending to it is safe beside its writer.
                return audit::verify_beside(&settings, &busy, json);
            }
            anyhow::bail!(busy.refusal(&what, instead.as_deref()));
        }
        Err(e) => return Err(e.into()),
    };
    match command {
        Command::Ingest(a) => ingest::run(&settings, a),
        Command::Search(a) => search::run(&settings, a),
        Command::Lookup(a) => lookup::run(&settings, a),
        Command::Facets(a) => facets::run(&settings, a),
        Command::Info(a) => info::run(&settings, a),
        Command::Eval(a) => eval::run_eval(&settings, a),
        Command::Demo(_) | Command::Serve(_) | Command::Settings(_) => {
            unreachable!("dispatched above")
        }
        Command::Account(a) => access::run_account(&settings, a),
        Command::Token(a) => access::run_token(&settings, a),
        Command::Audit(a) => audit::run(&settings, a),
        Command::Retention(a) => retention::run(&settings, a),
        Command::Delete(a) => delete::run(&settings, a),
        Command::Optimize(a) => optimize::run(&settings, a),
    }
}

/// A command's name for messages and the lock file (`token revoke`), and the HTTP route that
/// does the same through a running server, if there is one.
fn describe(command: &Command) -> (String, Option<String>) {
    use access::{AccountCommand as A, TokenCommand as T};
    use audit::AuditCommand as Au;
    use retention::RetentionCommand as R;
    let (what, route): (&str, Option<String>) = match command {
        Command::Ingest(_) => ("ingest", None),
        Command::Search(_) => ("search", Some("POST /v1/search".into())),
        Command::Lookup(_) => ("lookup", Some("GET /v1/lookup".into())),
        Command::Facets(_) => ("facets", Some("GET /v1/facets".into())),
        Command::Info(_) => ("info", Some("GET /v1/info".into())),
        Command::Demo(_) => ("demo", None),
        Command::Eval(_) => ("eval", None),
        Command::Serve(_) => ("serve", None),
        Command::Account(a) => match &a.command {
            A::Create { .. } => ("account create", Some("POST /v1/accounts".into())),
            A::List { .. } => ("account list", Some("GET /v1/accounts".into())),
            A::Set { name, .. } => ("account set", Some(format!("PATCH /v1/accounts/{name}"))),
            A::Delete { name } => (
                "account delete",
                Some(format!("DELETE /v1/accounts/{name}")),
            ),
        },
        Command::Token(t) => match &t.command {
            T::Issue { .. } => ("token issue", Some("POST /v1/tokens".into())),
            T::List { .. } => ("token list", Some("GET /v1/tokens".into())),
            T::Revoke { id } => ("token revoke", Some(format!("DELETE /v1/tokens/{id}"))),
        },
        Command::Audit(a) => match &a.command {
            Au::Verify { .. } => ("audit verify", Some("GET /v1/audit/verify".into())),
            Au::Query { .. } => ("audit query", Some("GET /v1/audit".into())),
            Au::Archive { .. } => ("audit archive", None),
        },
        Command::Retention(r) => match &r.command {
            R::Show { .. } => ("retention show", Some("GET /v1/retention".into())),
            R::Set { .. } => ("retention set", Some("PUT /v1/retention".into())),
            R::Unset { .. } => ("retention unset", Some("PUT /v1/retention".into())),
            R::Hold { .. } => ("retention hold", Some("PUT /v1/retention".into())),
            R::Release { .. } => ("retention release", Some("PUT /v1/retention".into())),
            R::Run { .. } => ("retention run", Some("POST /v1/retention/run".into())),
        },
        Command::Optimize(_) => ("optimize", None),
        Command::Settings(_) => ("settings", None),
        Command::Delete(_) => (
            "delete",
            Some("DELETE /v1/records/ID?reason=REF or POST /v1/deletions".into()),
        ),
    };
    (what.to_owned(), route)
}

/// Environment variable holding the Qdrant API key (never a flag: argv is visible to others).
pub const QDRANT_API_KEY_ENV: &str = "IMAGELENS_QDRANT_API_KEY";

/// The Qdrant API key from [`QDRANT_API_KEY_ENV`], if set and not empty.
fn qdrant_api_key() -> Option<String> {
    std::env::var(QDRANT_API_KEY_ENV)
        .ok()
        .filter(|k| !k.is_empty())
}

/// `imagelens settings`: the resolved settings, checked, without opening the library.
fn print_settings(settings: Settings, args: &SettingsArgs) -> anyhow::Result<ExitCode> {
    settings.validate()?;
    if args.json {
        print_json(&settings)?;
    } else {
        print!("{}", toml::to_string(&settings)?);
    }
    Ok(ExitCode::SUCCESS)
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
