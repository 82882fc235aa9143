//! `imagelens optimize`: changes the library's vector index settings and (re)builds its graphs.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indexer::store::{IndexKind, IndexSettings, IndexState, Quantization};

use super::access;
use crate::app::AppSettings;
use crate::governance::Action;

/// Arguments of `optimize`.
#[derive(Debug, Args)]
pub struct OptimizeArgs {
    /// Index kind: `auto` (HNSW graphs for storage segments of at least --auto-threshold
    /// points, exact scans below), `exact` (no graphs) or `hnsw` (graphs everywhere).
    #[arg(long, value_parser = ["auto", "exact", "hnsw"])]
    pub index: Option<String>,
    /// With `--index auto`: points per segment from which a graph is built.
    #[arg(long)]
    pub auto_threshold: Option<usize>,
    /// Edges per graph node (4 to 128).
    #[arg(long)]
    pub m: Option<usize>,
    /// Neighbours considered while building a graph (4 to 10000).
    #[arg(long)]
    pub ef_construct: Option<usize>,
    /// Searches over less vector data than this (KiB) scan exactly instead of using a graph.
    /// With --full-scan-share, the least such threshold.
    #[arg(long)]
    pub full_scan_kb: Option<usize>,
    /// Grow the full-scan threshold with the library: at each optimize, --full-scan-kb times
    /// the largest power of 2 within this share (0 to 1) of a collection's vector data, so a
    /// filter keeping few records scores them over the int8 copies instead of walking the
    /// graph (0: never grown; a new library's default is 0.08; embedded libraries only).
    #[arg(long)]
    pub full_scan_share: Option<f64>,
    /// Beam width of a graph search (1 to 10000; a query wanting more hits uses its limit).
    #[arg(long)]
    pub ef: Option<usize>,
    /// Quantized vector copies searched first and rescored: `int8` (the default; kept in RAM)
    /// or `none` (the graphs are walked over the full vectors).
    #[arg(long, value_parser = ["none", "int8"])]
    pub quantization: Option<String>,
    /// With int8: candidates per hit wanted, rescored with the full vectors (1 to 16).
    #[arg(long)]
    pub oversampling: Option<f64>,
    /// Filtered graph searches also follow neighbours of neighbours (qdrant ACORN): `on` or
    /// `off`; search-time, nothing is rebuilt.
    #[arg(long, value_parser = ["on", "off"])]
    pub acorn: Option<String>,
    /// With ACORN on: the largest share of a segment's points (0 to 1) a filter may keep for
    /// its graph searches to use ACORN; wider filters walk the graph plainly. Search-time.
    #[arg(long)]
    pub acorn_selectivity: Option<f64>,
    /// Where the full vectors live: `disk` (memory-mapped, read as searches touch them; the
    /// default) or `ram` (read into memory when the library opens).
    #[arg(long, value_parser = ["disk", "ram"])]
    pub vectors: Option<String>,
    /// `split`: move a library of one collection (image and region points together, as every
    /// library was made before library format 2) to images and regions apart, as new libraries
    /// are made: every point is copied, counted and optimised before the library switches,
    /// then the one collection is deleted. Needs free disk for the copy; an embedded library
    /// only.
    #[arg(long, value_parser = ["split"])]
    pub layout: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

impl OptimizeArgs {
    /// `current` with the flags given applied.
    fn apply(&self, current: &IndexSettings) -> anyhow::Result<IndexSettings> {
        let word = |w: &str| serde_json::Value::String(w.to_owned());
        let mut s = current.clone();
        if let Some(kind) = &self.index {
            s.kind = serde_json::from_value::<IndexKind>(word(kind))?;
        }
        if let Some(q) = &self.quantization {
            s.quantization = serde_json::from_value::<Quantization>(word(q))?;
        }
        s.auto_threshold = self.auto_threshold.unwrap_or(s.auto_threshold);
        s.m = self.m.unwrap_or(s.m);
        s.ef_construct = self.ef_construct.unwrap_or(s.ef_construct);
        s.ef = self.ef.unwrap_or(s.ef);
        s.full_scan_kb = self.full_scan_kb.unwrap_or(s.full_scan_kb);
        s.full_scan_share = self.full_scan_share.unwrap_or(s.full_scan_share);
        s.oversampling = self.oversampling.unwrap_or(s.oversampling);
        if let Some(acorn) = &self.acorn {
            s.acorn = acorn == "on";
        }
        s.acorn_selectivity = self.acorn_selectivity.unwrap_or(s.acorn_selectivity);
        if let Some(vectors) = &self.vectors {
            s.on_disk = vectors == "disk";
        }
        Ok(s)
    }
}

/// Runs `optimize`: saves the settings given (refused with the reason, and nothing changed,
/// when a number is out of range), then runs the store's optimizer, which builds the graphs and
/// quantized copies the settings ask for, and prints the index state. Once the library has
/// accounts, it needs an account with `manage_library` (an admin); the trail records the
/// settings asked for and whether the change and the rebuild went through.
///
/// # Errors
/// Invalid settings; store failures; missing credentials or permission.
pub fn run(settings: &AppSettings, args: OptimizeArgs) -> anyhow::Result<ExitCode> {
    let (mut app, caller) = access::open(settings)?;
    caller.require(app.audit(), Action::Optimize)?;
    let mut split = None;
    if args.layout.is_some() {
        let start = Instant::now();
        let ran = app.library_mut()?.split_vectors();
        caller.record_change(
            app.audit(),
            Action::Optimize,
            serde_json::json!({ "layout": "split" }),
            ran.as_ref()
                .ok()
                .map(|n| serde_json::json!({ "points_copied": n })),
            ran.is_ok(),
        )?;
        let copied = ran.context("vectors not split")?;
        if !args.json {
            println!(
                "layout       {} ({copied} points copied in {:.1?})",
                app.library()?.manifest().vector_layout,
                start.elapsed()
            );
        }
        split = Some(copied);
    }
    let store = app.library()?.store();
    let current = store.index_settings()?;
    let wanted = args.apply(&current)?;
    let changed = wanted != current;
    let ran = optimize(store.as_ref(), &wanted, changed);
    let query = serde_json::json!({ "settings": wanted });
    let detail = serde_json::json!({ "changed": changed });
    caller.record_change(
        app.audit(),
        Action::Optimize,
        query,
        Some(detail),
        ran.is_ok(),
    )?;
    let took = ran?;
    let state = store.index_state()?;
    if args.json {
        super::print_json(&serde_json::json!({
            "seconds": took.as_secs_f64(),
            "index": state,
            "layout": app.library()?.manifest().vector_layout,
            "points_copied": split,
        }))?;
    } else {
        println!("optimised in {took:.1?}");
        println!("index        {}", describe(&state));
    }
    Ok(ExitCode::SUCCESS)
}

/// Saves `wanted` when it `changed` (refused, and nothing changed, when a number is out of
/// range), then runs the store's optimizer; answers how long the optimizer took.
fn optimize(
    store: &dyn indexer::store::VectorStore,
    wanted: &IndexSettings,
    changed: bool,
) -> anyhow::Result<std::time::Duration> {
    if changed {
        store
            .set_index_settings(wanted)
            .context("index settings not changed")?;
    }
    let start = Instant::now();
    match store.optimize() {
        Err(e @ indexer::store::StoreError::StillOptimizing { .. }) => Err(anyhow::Error::new(e)
            .context(if changed {
                "index settings applied, but the index is not built yet"
            } else {
                "the index is not built yet"
            })),
        other => {
            other?;
            Ok(start.elapsed())
        }
    }
}

/// One line for `info` and `optimize`: kind, graph parameters, quantization, graph coverage
/// and disk use.
pub(super) fn describe(state: &IndexState) -> String {
    let settings = state.settings.as_ref();
    let kind = match settings.map(|s| (s.kind, s.auto_threshold)) {
        Some((IndexKind::Auto, t)) => format!("auto (graphs from {t} points per segment)"),
        Some((IndexKind::Exact, _)) => "exact scans".into(),
        Some((IndexKind::Hnsw, _)) => "hnsw".into(),
        None => "backend default".into(),
    };
    let params = settings.map_or(String::new(), |s| {
        let q = match s.quantization {
            Quantization::None => "no quantization".to_owned(),
            Quantization::Int8 => format!("int8 x{} rescored", s.oversampling),
        };
        let acorn = if s.acorn {
            format!("acorn under {}", s.acorn_selectivity)
        } else {
            "no acorn".to_owned()
        };
        let vectors = if s.on_disk {
            "vectors on disk"
        } else {
            "vectors in RAM"
        };
        format!(
            ", m {} ef_construct {} ef {} ({acorn}), {q}, {vectors}",
            s.m, s.ef_construct, s.ef
        )
    });
    let full_scan = match state.full_scan_kb.as_slice() {
        [] => String::new(),
        kbs => format!(
            ", full scans under {} KiB",
            kbs.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    };
    let disk = state.disk_bytes.map_or(
        "disk use unknown (not reported by the server)".into(),
        |b| format!("{:.1} MiB on disk", b as f64 / (1u64 << 20) as f64),
    );
    format!(
        "{kind}{params}{full_scan}; {} points, {} vectors in graphs, {} segments, {disk}",
        state.points, state.indexed_vectors, state.segments,
    )
}
