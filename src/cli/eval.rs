//! `imagelens eval`: how well the library's searches find what its own annotations say is
//! there ([`crate::eval`]), saved under `DIR/eval/` and compared with `--compare A B`.
//!
//! Every query is a search that reads record data, so each is audited (action `search`) as the
//! caller, with the purpose `imagelens eval` unless `--purpose` says otherwise, before its
//! figures are kept. A caption query is recorded by its record's keyed ref and the sha256 of
//! the caption, never the caption itself (deletion must leave no caption in the trail).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use sha2::{Digest, Sha256};

use super::access;
use crate::app::AppSettings;
use crate::eval::{EvalOptions, EvalReport, MAX_SAMPLE, QuerySet, System, compare, run};
use crate::governance::Action;
use crate::params::AuditedSearch;
use crate::search::{Fusion, SearchService};

/// Folder of saved reports, inside the data directory.
pub const EVAL_DIR: &str = "eval";

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Label-query template; `{label}` is replaced by each label.
    #[arg(long, default_value = "a photo of a {label}")]
    pub template: String,
    /// Labels with fewer records get no query.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub min_records: u64,
    /// Most queries per set (label, caption), picked by a seeded hash of each.
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SAMPLE as u64))]
    pub sample: u64,
    /// Seed of the sample.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Hybrid fusion weights, as `search --weights` (default: the search defaults).
    #[arg(long, value_name = "SPEC", default_value = "")]
    pub weights: String,
    /// Also search the fusion weights and k on a seeded half of the queries, report the gain
    /// on the other half, and print the `--weights` to adopt (never applied by itself).
    #[arg(long)]
    pub sweep: bool,
    /// Do not save the report under DIR/eval/.
    #[arg(long)]
    pub no_save: bool,
    /// Compare two saved reports (paths, or names under DIR/eval/) instead of running.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub compare: Option<Vec<String>>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Runs `eval`.
///
/// # Errors
/// Bad options, unreadable reports, search or audit failures.
pub fn run_eval(settings: &AppSettings, args: EvalArgs) -> anyhow::Result<ExitCode> {
    if let Some(pair) = &args.compare {
        return run_compare(&settings.data_dir, &pair[0], &pair[1], args.json);
    }
    let mut settings = settings.clone();
    settings
        .purpose
        .get_or_insert_with(|| "imagelens eval".to_owned());
    let (app, caller) = access::open(&settings)?;
    let audit = app.audit();
    caller.require(audit, Action::Search)?;
    let library = app.library()?.clone();
    let model = app.model()?;
    let service = SearchService::new(library, model.embedder, model.offline_reason)?;
    let opts = EvalOptions {
        template: args.template.clone(),
        min_records: args.min_records,
        sample: usize::try_from(args.sample).unwrap_or(MAX_SAMPLE),
        seed: args.seed,
        fusion: settings.fusion.overlay(&args.weights)?,
        sweep: args.sweep,
    };
    opts.check()?;
    let report = run(&service, &opts, |q, systems, ids| -> anyhow::Result<()> {
        // A caption query is a record's caption: the trail names it by the record's keyed ref
        // and the text's digest, so that deleting the record leaves no caption behind.
        let known_item = q.set == QuerySet::Caption;
        let mut query = AuditedSearch {
            query: if known_item { "" } else { &q.text },
            limit: Some(crate::eval::DEPTH),
            weights: Some(&args.weights),
            ..Default::default()
        }
        .to_value();
        if let Some(m) = query.as_object_mut() {
            m.insert("eval".into(), q.set.name().into());
            let names: Vec<&str> = systems.iter().map(|s| s.name()).collect();
            m.insert("systems".into(), names.into());
            if known_item {
                m.remove("query");
                let refs: Vec<String> = q.relevant.iter().map(|id| audit.record_ref(id)).collect();
                m.insert("caption_of".into(), refs.into());
                m.insert(
                    "query_sha256".into(),
                    hex::encode(Sha256::digest(q.text.as_bytes())).into(),
                );
            }
        }
        caller.audit(audit, Action::Search, query, ids)
    })?;
    let saved = if args.no_save {
        None
    } else {
        Some(save(&settings.data_dir, &report)?)
    };
    if args.json {
        super::print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = service.semantic_notice() {
        eprintln!("note: {n}");
    }
    print_report(&report);
    if args.sweep {
        print_sweep(&report);
    }
    if let Some(p) = saved {
        println!("saved: {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the report as `DIR/eval/<time>.json` (atomically) and returns its path.
fn save(data_dir: &Path, report: &EvalReport) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join(EVAL_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = report.created.format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let path = dir.join(format!("{name}.json"));
    indexer::library::write_atomic(&path, &serde_json::to_vec_pretty(report)?)?;
    Ok(path)
}

/// A saved report by path, or by name under `DIR/eval/` (with or without `.json`).
fn load(data_dir: &Path, which: &str) -> anyhow::Result<EvalReport> {
    let direct = PathBuf::from(which);
    let path = if direct.is_file() {
        direct
    } else {
        let name = which.trim_end_matches(".json");
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            anyhow::bail!("no eval report {which:?}: give a file or a name under DIR/eval/");
        }
        data_dir.join(EVAL_DIR).join(format!("{name}.json"))
    };
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not an eval report", path.display()))
}

fn run_compare(data_dir: &Path, a: &str, b: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (ra, rb) = (load(data_dir, a)?, load(data_dir, b)?);
    let (rows, notes) = compare(&ra, &rb);
    if json {
        super::print_json(&serde_json::json!({ "differences": rows, "setup": notes }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("A = {a} ({})\nB = {b} ({})", ra.created, rb.created);
    for n in &notes {
        println!("differs: {n}");
    }
    println!(
        "{:<8} {:<8} {:<8} {:>7} {:>7} {:>8}",
        "set", "system", "metric", "A", "B", "B-A"
    );
    for r in rows {
        println!(
            "{:<8} {:<8} {:<8} {:>7.3} {:>7.3} {:>+8.3}",
            r.set.name(),
            r.system.name(),
            r.metric,
            r.a,
            r.b,
            r.b - r.a
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &EvalReport) {
    let model = r
        .model
        .as_ref()
        .map_or("none (keyword only)".to_owned(), |m| {
            format!("{} ({})", m.model_id, m.fingerprint())
        });
    println!(
        "eval: {} records, model {model}; label queries {:?} on labels with >= {} records; \
         MRR within {} results",
        r.library.records,
        r.options.template,
        r.options.min_records,
        crate::eval::DEPTH
    );
    println!(
        "{:<8} {:>7} {:<8} {:>6} {:>6} {:>6} {:>8} {:>6}",
        "set", "queries", "system", "R@1", "R@5", "R@10", "nDCG@10", "MRR"
    );
    for s in &r.sets {
        for x in &s.systems {
            let v = x.scores;
            println!(
                "{:<8} {:>7} {:<8} {:>6.3} {:>6.3} {:>6.3} {:>8.3} {:>6.3}",
                s.set.name(),
                format!("{}/{}", s.queries, s.available),
                x.system.name(),
                v.recall_1,
                v.recall_5,
                v.recall_10,
                v.ndcg_10,
                v.mrr
            );
        }
    }
    if r.labels.is_empty() {
        return;
    }
    let systems: Vec<System> = r.labels[0].systems.keys().copied().collect();
    println!("\nper label, nDCG@10 (worst first):");
    print!("{:<24} {:>7}", "label", "records");
    for s in &systems {
        print!(" {:>7}", s.name());
    }
    println!();
    for row in &r.labels {
        print!("{:<24} {:>7}", super::cell(&row.label, 24), row.records);
        for s in &systems {
            print!(" {:>7.3}", row.systems.get(s).map_or(0.0, |v| v.ndcg_10));
        }
        println!();
    }
}

fn print_sweep(r: &EvalReport) {
    let Some(s) = &r.sweep else {
        if r.untrained.is_some() {
            println!(
                "\nsweep: nothing to sweep (the model is untrained: its lists take no part in \
                 searches, so no weights for them mean anything)"
            );
        } else {
            println!(
                "\nsweep: nothing to sweep (it needs vectors, and queries for both halves of the \
                 split)"
            );
        }
        return;
    };
    println!(
        "\nsweep: {} settings on {} training queries; mean nDCG@10 per set, averaged:",
        s.settings_tried, s.train_queries
    );
    println!(
        "  training  best {:.3}  current {:.3}",
        s.train_best, s.train_current
    );
    println!(
        "  held out  best {:.3}  current {:.3}  gain {:+.3} ({} queries)",
        s.held_out_best, s.held_out_current, s.held_out_gain, s.held_out_queries
    );
    if s.current_kept {
        println!(
            "  no setting tried beats the current weights on the training queries: keep them \
             ({})",
            s.weights
        );
        return;
    }
    println!("  to adopt: --weights {} (not applied)", s.weights);
    // The same weights as a settings table, for every search of every command and the server.
    #[derive(serde::Serialize)]
    struct Table {
        fusion: Fusion,
    }
    if let Ok(table) = toml::to_string(&Table { fusion: s.best }) {
        println!("  or in the settings file (--config):");
        for line in table.lines() {
            println!("    {line}");
        }
    }
}
