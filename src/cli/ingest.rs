//! `imagelens ingest`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use indexer::{IngestOptions, ingest};

use super::access;
use crate::app::AppSettings;
use crate::governance::Action;

/// Arguments of `ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Annotation format: auto (detect from the files, the default), coco, voc, yolo, cvat,
    /// labelstudio, csv (also TSV and JSONL) or clarifai (an export archive or the SDK's unpacked
    /// download).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Annotation files or folders: COCO JSON files, a VOC or YOLO root folder (or a YOLO
    /// data.yaml), a CVAT XML, a Label Studio JSON, a CSV/TSV/JSONL manifest, a Clarifai
    /// export zip or unpacked SDK download.
    #[arg(long, required = true, num_args = 1.., value_name = "PATH")]
    pub annotations: Vec<PathBuf>,
    /// Folder the export's file names are relative to (default: where the format keeps its
    /// images: JPEGImages/ for VOC, the image folders of data.yaml for YOLO, an images/ folder
    /// beside the annotations otherwise).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Dataset name (default: the images folder's name when --images is given, else the
    /// export's folder name).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Images per batch (one commit per batch).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Boxes smaller than this many pixels on a side get no region vector.
    #[arg(long, default_value_t = 24.0)]
    pub min_region: f32,
    /// Label Studio: read a task's predictions when no annotation covers it (each box marked
    /// with annotator prediction:<model_version>); ignored otherwise.
    #[arg(long)]
    pub predictions: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ingest`: once the library has accounts, as an account with `manage_library` (an
/// admin); before, as the local user (the first run). The trail records each ingest (dataset,
/// format and counts, or that it failed) after it ran, and a refusal before.
///
/// # Errors
/// Unreadable input, nothing ingested, model mismatch, store failures, missing credentials or
/// permission.
pub fn run(settings: &AppSettings, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let located = indexer::ingest::locate(&args.format, &args.annotations)
        .context("cannot read the annotations")?;
    let chose = match &located.detected {
        Some(why) => format!("format {} (detected: {why})", located.format),
        None => format!("format {}", located.format),
    };
    if !args.json {
        println!("{chose}");
    }
    let images = args
        .images
        .clone()
        .unwrap_or_else(|| located.images.clone());
    let dataset = args.dataset.clone().unwrap_or_else(|| {
        let named = if args.images.is_some() {
            Some(images.clone())
        } else {
            export_folder(&args.annotations[0])
        };
        named
            .and_then(|p| p.canonicalize().ok())
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "default".into())
    });
    let (mut app, caller) = access::open(settings)?;
    caller.require(app.audit(), Action::Ingest)?;
    let model = app.model()?;
    let opts = IngestOptions {
        format: located.format.name().to_owned(),
        annotations: args.annotations.clone(),
        images,
        dataset,
        batch_size: args.batch_size,
        min_region: args.min_region,
        progress: !args.no_progress && !args.json,
        predictions: args.predictions,
        ..IngestOptions::default()
    };
    let library = app.library_mut()?;
    let dir = library.dir().to_owned();
    let ran = ingest(library, model.embedder.as_deref(), &opts);
    // What was asked (no paths: they name files), and what came of it.
    let query = serde_json::json!({ "dataset": opts.dataset, "format": opts.format });
    let detail = ran.as_ref().ok().map(|r| {
        serde_json::json!({
            "entries": r.entries, "added": r.added, "updated": r.updated,
            "unchanged": r.unchanged, "withheld_deleted": r.withheld_deleted,
            "problems": r.problems.len(), "semantic": r.semantic,
        })
    });
    caller.record_change(app.audit(), Action::Ingest, query, detail, ran.is_ok())?;
    let report = ran.context("ingest failed")?;
    let notice = (!report.semantic).then(|| {
        format!(
            "semantic search is off ({}); records were indexed for keyword search, filters and \
             look-ups. Run the same ingest with --model /path/to/clip-folder to add vectors",
            model.offline_reason.as_deref().unwrap_or("no model")
        )
    });
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["notice"] = serde_json::json!(notice);
        v["format"] = serde_json::json!(located.format.name());
        v["detected"] = serde_json::json!(located.detected);
        super::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "ingested {} image entries into {}: {} added, {} updated, {} vectors added, {} unchanged",
        report.entries,
        dir.display(),
        report.added,
        report.updated,
        report.embedded_only,
        report.unchanged
    );
    if report.semantic {
        println!(
            "embedded {} images and {} box regions",
            report.embedded, report.regions
        );
    }
    if report.withheld_deleted > 0 {
        println!(
            "withheld {} images that were deleted from this library before (see the deletion \
             receipts); they are not ingested again",
            report.withheld_deleted
        );
    }
    if report.superseded > 0 {
        println!(
            "{} images came under an export id that named another file before; the records of \
             the old files stay (see the problems for which, and how to delete them)",
            report.superseded
        );
    }
    if report.orphans_removed > 0 {
        println!(
            "removed vectors of {} records left by an interrupted ingest",
            report.orphans_removed
        );
    }
    if report.carried_removed > 0 {
        println!(
            "removed {} image copies from the library's images folder that no record uses \
             (carried for withheld or refused entries, or left by a failed run)",
            report.carried_removed
        );
    }
    if !report.problems.is_empty() {
        println!(
            "{} problems (each item skipped or fixed as said):",
            report.problems.len()
        );
        for p in report.problems.iter().take(20) {
            println!("  {} [{}]: {}", p.file, p.item, p.reason);
        }
        if report.problems.len() > 20 {
            println!("  … {} more", report.problems.len() - 20);
        }
    }
    if let Some(path) = &report.saved_to {
        println!("report: {path}");
    }
    if let Some(n) = notice {
        eprintln!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The folder an export is named after: the path itself when it is a folder, else the folder
/// holding the file (its parent when that is an `annotations` or `labels` folder).
fn export_folder(path: &Path) -> Option<PathBuf> {
    if path.is_dir() {
        return Some(path.to_path_buf());
    }
    let dir = path.canonicalize().ok()?.parent()?.to_path_buf();
    let name = dir.file_name()?.to_string_lossy().to_ascii_lowercase();
    if matches!(name.as_str(), "annotations" | "labels") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir)
    }
}
