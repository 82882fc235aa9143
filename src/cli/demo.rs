//! `imagelens demo`: generates annotated scenes, ingests them into the embedded default
//! (tantivy + qdrant-edge, no server) and runs example searches and look-ups.
//!
//! When no real CLIP model is reachable (no `--model`, offline, nothing cached) the demo uses a
//! tiny CLIP with seeded random weights so ingest runs the whole vector path; its `config.json`
//! says the weights are random, so searches leave its vectors out of ranking query text (they
//! carry no meaning) and the examples rank as BM25 does. The demo says so.
//!
//! `demo --serve` then serves the demo library (API and web page), creating a `demo` admin
//! with a random password, printed once, when the library has no account yet.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use indexer::filter::{DateRange, FilenameMatch, RecordFilter};
use indexer::record::DateAxis;
use indexer::synth::{SynthOptions, write_library};
use indexer::{IngestOptions, ingest};
use models::{ClipEmbedder, Embedder};

use super::{cell, day};
use crate::app::{App, AppSettings, LockError, lock_data_dir};
use crate::governance::Actor;
use crate::governance::accounts::Role;
use crate::search::{LookupRequest, SearchRequest, SearchService};

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the generated scenes (`source/`) and the demo library (`library/`).
    #[arg(long, default_value = "imagelens-demo")]
    pub dir: PathBuf,
    /// Number of scenes to generate.
    #[arg(long, default_value_t = 60)]
    pub count: usize,
    /// Then serve the demo library (API and web page) on 127.0.0.1:7878 (or `--addr`), with a
    /// `demo` admin account whose password is printed once (when the library has none yet).
    #[arg(long)]
    pub serve: bool,
    /// Address for `--serve`.
    #[arg(long, requires = "serve")]
    pub addr: Option<std::net::SocketAddr>,
}

/// Runs `demo`, then `serve` on the demo library when asked.
///
/// # Errors
/// I/O, model or ingest failures; with `--serve`, whatever `serve` fails with.
pub fn run(
    settings: &AppSettings,
    file: crate::settings::Settings,
    args: DemoArgs,
) -> anyhow::Result<ExitCode> {
    let (serve, addr) = (args.serve, args.addr);
    // The demo's lock and stores are released when `build` returns, before `serve` opens them.
    let built = build(settings, args)?;
    if !serve {
        return Ok(ExitCode::SUCCESS);
    }
    match built.password {
        Some(password) => println!(
            "\nsign in on the page as `demo` with password {password} (shown once; an admin: \
             create other accounts with `imagelens --data-dir {} account create`)",
            built.library.display()
        ),
        None => println!("\nthe demo library already has accounts: sign in with one of them"),
    }
    let args = super::serve::ServeArgs {
        addr,
        max_body_bytes: None,
        request_timeout_secs: None,
        max_concurrent_embeds: None,
        max_concurrent_searches: None,
        max_page: None,
        header_read_timeout_secs: 10,
    };
    let model = settings
        .model
        .clone()
        .or_else(|| built.tiny.map(|p| p.display().to_string()));
    // The settings file's limits and privacy apply; the library is the demo's, on the
    // embedded store.
    let served = crate::settings::Settings {
        data_dir: built.library,
        model,
        store: crate::settings::StoreSection::default(),
        ..file
    };
    super::serve::run(served, args)
}

/// What `build` made: the library folder, the tiny model's folder when the demo used it, and
/// the `demo` admin's password when `--serve` created that account.
struct Built {
    library: PathBuf,
    tiny: Option<PathBuf>,
    password: Option<String>,
}

/// Creates the `demo` admin (with a random password, returned) when the library has no
/// account, as `imagelens account create` creates the first admin: through the [`Desk`], as
/// the local user, with the same trail entry.
///
/// [`Desk`]: crate::governance::Desk
fn demo_account(app: &App) -> anyhow::Result<Option<String>> {
    use rand::Rng;

    if !app.accounts().is_empty() {
        return Ok(None);
    }
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    let actor = Actor::local(&super::access::local_user(), None);
    app.desk(&actor)
        .create_account("demo", &password, Role::Admin)?;
    Ok(Some(password))
}

fn build(settings: &AppSettings, args: DemoArgs) -> anyhow::Result<Built> {
    let source = args.dir.join("source");
    let library_dir = args.dir.join("library");
    let opts = SynthOptions {
        count: args.count.clamp(1, 10_000),
        width: 160,
        height: 120,
        seed: 2024,
        jpeg: true,
    };
    println!(
        "generating {} annotated scenes in {}",
        opts.count,
        source.display()
    );
    // The demo library is a data directory like any other: one process at a time.
    let _lock = lock_data_dir(&library_dir, "demo").map_err(|e| match e {
        LockError::Busy(busy) => anyhow::anyhow!(busy.refusal("demo", None)),
        other => other.into(),
    })?;
    let synth = write_library(&source, &opts).context("cannot write demo scenes")?;
    // `cli::run` gives the demo the embedded store.
    let demo_settings = AppSettings {
        data_dir: library_dir.clone(),
        ..settings.clone()
    };
    let mut app = App::open(&demo_settings)?;
    let tiny = args.dir.join("tiny-clip");
    let tiny_weights = tiny.join(models::clip::WEIGHTS_FILE);
    // The demo's own tiny model from an older demo lacks the random-weights entry: when its
    // weights are byte for byte what the demo's seed writes, its config.json is replaced by the
    // marked one (the library's model identity, the weights' sha256, is unchanged). Anything
    // else in that folder is left alone.
    let config = tiny.join(models::clip::CONFIG_FILE);
    let marked =
        models::clip::ClipConfig::from_file(&config).is_ok_and(|c| c.random_weights.is_some());
    if tiny_weights.exists() && !marked {
        let fresh = args.dir.join(".tiny-clip.check");
        models::tiny::write(&fresh, 2024).context("cannot write the tiny demo model")?;
        let same =
            std::fs::read(fresh.join(models::clip::WEIGHTS_FILE))? == std::fs::read(&tiny_weights)?;
        if same {
            std::fs::copy(fresh.join(models::clip::CONFIG_FILE), &config)
                .with_context(|| format!("cannot update {}", config.display()))?;
        }
        std::fs::remove_dir_all(&fresh)
            .with_context(|| format!("cannot remove {}", fresh.display()))?;
    }
    let mut choice = app.model()?;
    let mut tiny_used = None;
    if choice.embedder.is_none() && !settings.no_model {
        if !tiny_weights.exists() {
            models::tiny::write(&tiny, 2024).context("cannot write the tiny demo model")?;
        }
        let e = ClipEmbedder::load_dir(&tiny, &models::best_device(false))?;
        println!(
            "note: no real CLIP model is reachable ({}); using a tiny CLIP with seeded random \
             weights from {} so ingest runs the vector path (see the next note)",
            choice.offline_reason.as_deref().unwrap_or("offline"),
            tiny.display()
        );
        choice.embedder = Some(Arc::new(e));
        tiny_used = Some(tiny);
    }
    let report = ingest(
        app.library_mut()?,
        choice.embedder.as_deref().map(|e| e as &dyn Embedder),
        &IngestOptions {
            annotations: vec![synth.instances.clone(), synth.captions.clone()],
            images: synth.images.clone(),
            dataset: "demo".into(),
            progress: false,
            ..IngestOptions::default()
        },
    )?;
    println!(
        "library {}: {} added, {} updated, {} unchanged, {} box regions embedded, {} problems",
        library_dir.display(),
        report.added,
        report.updated,
        report.unchanged,
        report.regions,
        report.problems.len()
    );
    let service = SearchService::new(
        app.library()?.clone(),
        choice.embedder,
        choice.offline_reason,
    )?;
    if let Some(n) = service.semantic_notice() {
        println!("note: {n}");
    }
    let examples: [(&str, RecordFilter); 3] = [
        (
            "white pickup truck with a ladder at night",
            RecordFilter::default(),
        ),
        ("a dog in the park", RecordFilter::default()),
        (
            "boat on the harbour",
            RecordFilter {
                dates: vec![DateRange {
                    axis: DateAxis::Captured,
                    after: Some(indexer::dates::parse_date("2021-01-01")?),
                    before: None,
                }],
                ..RecordFilter::default()
            },
        ),
    ];
    for (text, filter) in examples {
        let resp = service.search(&SearchRequest {
            text: text.into(),
            filter: filter.clone(),
            limit: 3,
            ..SearchRequest::default()
        })?;
        let shown = if filter.is_empty() {
            String::new()
        } else {
            " --captured-after 2021-01-01".into()
        };
        println!("\n$ imagelens search {text:?}{shown}");
        for h in &resp.results {
            println!(
                "  {:<16} {:<24} {:<10} {}",
                h.id,
                cell(&h.path, 24),
                day(h.dates.captured),
                h.labels.join(",")
            );
        }
    }
    let lookup = service.catalog().lookup(&LookupRequest {
        filter: RecordFilter {
            filename: Some(FilenameMatch::Prefix("street_".into())),
            ..RecordFilter::default()
        },
        sort: Some(DateAxis::Captured),
        limit: 3,
        ..LookupRequest::default()
    })?;
    println!(
        "\n$ imagelens lookup --filename-prefix street_ --sort captured   ({} match)",
        lookup.total
    );
    for r in &lookup.results {
        println!(
            "  {:<16} {:<24} {}",
            r.id,
            cell(&r.path, 24),
            day(r.dates.captured)
        );
    }
    let facets = service.catalog().facets(&RecordFilter::default())?;
    let mut top: Vec<_> = facets.labels.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1));
    println!(
        "\n$ imagelens facets   ({} records; labels: {})",
        facets.total,
        top.iter()
            .take(6)
            .map(|(l, n)| format!("{l} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "\nTry it yourself: imagelens --data-dir {} search \"truck at night\"",
        library_dir.display()
    );
    // Created while the demo holds the library's lock, before `serve` takes it.
    let password = if args.serve {
        demo_account(&app)?
    } else {
        None
    };
    Ok(Built {
        library: library_dir,
        tiny: tiny_used,
        password,
    })
}
