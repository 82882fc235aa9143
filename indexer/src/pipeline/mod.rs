//! Records -> batches -> embed -> vector store + keyword index, with progress and resume.
//!
//! Consistency protocol (why a kill -9 at any point loses nothing committed and leaves no
//! duplicates or orphans):
//! 1. Before any work, [`reconcile`] compares the two stores: vector points whose record is not
//!    in the keyword index are orphans of an interrupted batch and are deleted; records marked
//!    embedded whose points are missing are marked for re-embedding.
//! 2. Each batch first replaces the records' points in the vector store and flushes it, then
//!    writes the records to the keyword index and commits. The keyword commit is the batch's
//!    commit point; point ids are deterministic, so redoing a batch overwrites, never adds.
//! 3. Change detection compares each record's fingerprint (and the model fingerprint its
//!    vectors were made with) to what the keyword index holds, so a re-run skips finished work.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use models::Embedder;
use models::preprocess::{DecodeLimits, crop_region};
use rayon::prelude::*;

use crate::ingest::{self, MAX_BOXES_PER_IMAGE, Problem, build_record, file_facts, resolve_inside};
use crate::json_file::write_atomic;
use crate::library::Library;
use crate::points;
use crate::record::Record;
use crate::report::IngestReport;
use crate::store::{VectorFilter, VectorPoint};
use crate::{Error, IngestError, Result};

mod batch;
use batch::run_batches;

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Annotation export format: `auto` or a [`ingest::Format`] name (`coco`, `voc`, ...).
    pub format: String,
    /// Annotation files.
    pub annotations: Vec<PathBuf>,
    /// Folder the exports' file names are relative to.
    pub images: PathBuf,
    /// Dataset name given to every record.
    pub dataset: String,
    /// Images per batch (one vector flush and one keyword commit per batch).
    pub batch_size: usize,
    /// Boxes smaller than this many pixels on either side get no region vector.
    pub min_region: f32,
    /// Context around a box region, as a fraction of its size on each side.
    pub region_context: f32,
    /// At most this many region vectors per image (largest boxes first).
    pub max_regions: usize,
    /// Decoding limits (also checked from each header at ingest, so what is ingested can be
    /// served under the same limits).
    pub limits: DecodeLimits,
    /// Most boxes one image may have; an image with more is withheld with a problem.
    pub max_boxes: usize,
    /// Draw a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Label Studio: read a task's `predictions` when no annotation covers it.
    pub predictions: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            format: "coco".into(),
            annotations: Vec::new(),
            images: PathBuf::from("."),
            dataset: "default".into(),
            batch_size: 32,
            min_region: 24.0,
            region_context: 0.1,
            max_regions: 32,
            limits: DecodeLimits::default(),
            max_boxes: MAX_BOXES_PER_IMAGE,
            progress: true,
            predictions: false,
        }
    }
}

/// Why a record is written in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Add,
    Update,
    EmbedOnly,
}

/// Ingests an export into the library. With `embedder` `None` only the keyword index is written
/// (semantic search stays off until a later ingest with a model adds the vectors).
///
/// # Errors
/// [`IngestError::Unreadable`] for unreadable input, [`IngestError::NothingIngested`] when no
/// record could be kept, [`Error::ModelMismatch`], and store failures. Per-item problems are
/// not errors: they are in the report.
pub fn ingest(
    lib: &mut Library,
    embedder: Option<&dyn Embedder>,
    opts: &IngestOptions,
) -> Result<IngestReport> {
    let mut plan = plan(lib, embedder, opts)?;
    run_batches(lib, embedder, opts, &mut plan)?;
    finish(lib, plan)
}

/// What a run will do: the records to write and why, and what it found so far.
struct Plan {
    /// Records to write, in order, with the reason.
    work: Vec<(Record, Work)>,
    /// Problems found so far, one per item.
    problems: Vec<Problem>,
    /// The report being filled in.
    report: IngestReport,
    /// The model's fingerprint, when there is a model.
    model_fp: Option<String>,
}

/// Reads the exports, reconciles the stores, reads every image file's facts and classifies
/// each record (add / update / embed-only / unchanged).
fn plan(lib: &mut Library, embedder: Option<&dyn Embedder>, opts: &IngestOptions) -> Result<Plan> {
    let format = if opts.format.trim().eq_ignore_ascii_case("auto") {
        ingest::locate("auto", &opts.annotations)?.format
    } else {
        opts.format.parse::<ingest::Format>()?
    };
    if !opts.images.is_dir() {
        return Err(IngestError::ImagesRoot(opts.images.display().to_string()).into());
    }
    let images_root = opts
        .images
        .canonicalize()
        .map_err(|e| Error::io(&opts.images, e))?;
    let annotation_files: Vec<PathBuf> = opts
        .annotations
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .collect();
    let read = reading_progress(opts.progress, format);
    let (entries, mut problems) = std::thread::scope(|scope| {
        read.show(scope);
        let out = ingest::read_annotations_with(
            format,
            &annotation_files,
            &images_root,
            &lib.dir().join(crate::library::CARRIED_IMAGES),
            ingest::ReadOptions {
                predictions: opts.predictions,
            },
            &read.counts,
        );
        read.finish();
        out
    })?;
    let mut report = IngestReport {
        entries: entries.len(),
        semantic: embedder.is_some(),
        ..IngestReport::default()
    };
    if let Some(e) = embedder {
        lib.adopt_model(e.spec())?;
    }
    report.orphans_removed = reconcile(lib)?;
    pause_point("reconciled");

    // Read every image file's facts in parallel (hash + header, no decoding).
    let now = Utc::now();
    let checked = files_bar(opts.progress, entries.len() as u64);
    let built: Vec<(Option<Record>, Vec<Problem>)> = entries
        .into_par_iter()
        .map(|entry| {
            checked.inc(1);
            let mut local = Vec::new();
            let file = entry.file_name.clone();
            // Images a Clarifai archive carried were written under the library.
            let root = entry.root.clone().unwrap_or_else(|| images_root.clone());
            let path = match resolve_inside(&root, &file) {
                Ok(p) => p,
                Err(reason) => {
                    local.push(Problem {
                        file,
                        item: "image".into(),
                        reason: format!("{reason}; record skipped"),
                    });
                    return (None, local);
                }
            };
            match file_facts(&path, &opts.limits) {
                Ok(facts) => {
                    let r = build_record(
                        entry,
                        &facts,
                        &root,
                        &opts.dataset,
                        now,
                        opts.max_boxes,
                        &mut local,
                    );
                    (r, local)
                }
                Err(reason) => {
                    local.push(Problem {
                        file,
                        item: "image".into(),
                        reason: format!("{reason}; record skipped"),
                    });
                    (None, local)
                }
            }
        })
        .collect();

    checked.finish_and_clear();
    let states = lib.keyword().states()?;
    let model_fp = embedder.map(|e| e.spec().fingerprint());
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut work: Vec<(Record, Work)> = Vec::new();
    for (record, local) in built {
        problems.extend(local);
        let Some(mut record) = record else { continue };
        if lib.is_deleted_image(&record.sha256) {
            // Counted, not listed: the report must not name what was deleted.
            report.withheld_deleted += 1;
            continue;
        }
        if let Some(first) = seen.get(&record.id) {
            problems.push(Problem {
                file: record.path.clone(),
                item: "image".into(),
                reason: format!(
                    "same image bytes as {first} (record {}); duplicate skipped",
                    record.id
                ),
            });
            continue;
        }
        seen.insert(record.id.clone(), record.path.clone());
        match states.get(&record.id) {
            None => work.push((record, Work::Add)),
            Some(state) if state.fingerprint != record.fingerprint() => {
                work.push((record, Work::Update));
            }
            Some(state) => match &model_fp {
                Some(fp) if &state.embedded != fp => {
                    // Keep the original ingest time: only vectors are added.
                    if let Some(old) = lib.keyword().get(&record.id)? {
                        record.dates.ingested = old.dates.ingested;
                    }
                    work.push((record, Work::EmbedOnly));
                }
                _ => report.unchanged += 1,
            },
        }
    }

    if !states.is_empty() {
        report.superseded = superseded(lib, &work, &mut problems)?;
    }
    Ok(Plan {
        work,
        problems,
        report,
        model_fp,
    })
}

/// New records whose export id (`source_id`, in the same dataset) named another image file in
/// an earlier ingest: a newer export of the same project whose image changed. The record of
/// the old file stays (an ingest never deletes: deletion is audited, leaves a receipt and
/// respects legal holds); each is a problem that names both and how to delete the old one.
fn superseded(
    lib: &Library,
    work: &[(Record, Work)],
    problems: &mut Vec<Problem>,
) -> Result<usize> {
    let mut count = 0;
    for (record, _) in work.iter().filter(|(_, w)| matches!(w, Work::Add)) {
        let Some(source_id) = &record.source_id else {
            continue;
        };
        let same = crate::filter::RecordFilter {
            source_ids: vec![source_id.clone()],
            datasets: vec![record.dataset.clone()],
            ..Default::default()
        };
        for old in lib.keyword().filter_ids(&same)? {
            if old == record.id {
                continue;
            }
            let was = lib
                .keyword()
                .get(&old)?
                .map_or_else(|| old.clone(), |r| r.path);
            count += 1;
            problems.push(Problem {
                file: record.path.clone(),
                item: "image".into(),
                reason: format!(
                    "the export's image id {source_id:?} named another file before ({was}, \
                     record {old}); that record stays: if this file replaces it, delete it with \
                     `imagelens delete --id {old} --reason ...`"
                ),
            });
        }
    }
    Ok(count)
}

/// Refreshes the counts, saves the report, and refuses a run that kept nothing.
fn finish(lib: &mut Library, plan: Plan) -> Result<IngestReport> {
    let Plan {
        problems,
        mut report,
        ..
    } = plan;
    lib.refresh_counts()?;
    // Images an archive carried for entries not kept (or left by an earlier run that failed)
    // must not outlive this run: a withheld image was deleted on purpose.
    report.carried_removed = lib.sweep_carried_images()?;
    report.problems = problems;
    report.saved_to = Some(save_report(lib.dir(), &report)?);
    // An export whose images were all deleted before is not bad input: there is just nothing
    // left in it to ingest.
    if report.kept() == 0 && report.withheld_deleted == 0 {
        let why = report
            .problems
            .first()
            .map(|p| {
                format!(
                    "{}: {} ({} problems in all)",
                    p.file,
                    p.reason,
                    report.problems.len()
                )
            })
            .unwrap_or_else(|| "the exports list no images".into());
        return Err(IngestError::NothingIngested(why).into());
    }
    Ok(report)
}

/// Brings the two stores into agreement after an interrupted run; returns orphans removed.
///
/// # Errors
/// Store and keyword failures.
pub fn reconcile(lib: &mut Library) -> Result<usize> {
    if !lib.has_vectors() {
        return Ok(0);
    }
    let in_store: BTreeSet<String> = lib.store().distinct(points::key::RECORD_ID)?;
    let states = lib.keyword().states()?;
    let orphans: Vec<String> = in_store
        .iter()
        .filter(|id| !states.contains_key(*id))
        .cloned()
        .collect();
    if !orphans.is_empty() {
        lib.store()
            .delete_where(&VectorFilter::records(orphans.clone()))?;
        lib.store().flush()?;
    }
    // Records marked embedded whose points are gone get their mark cleared, so this run
    // re-embeds them.
    let missing: HashSet<&String> = states
        .iter()
        .filter(|(id, s)| !s.embedded.is_empty() && !in_store.contains(*id))
        .map(|(id, _)| id)
        .collect();
    if !missing.is_empty() {
        let mut writer = lib.keyword().writer()?;
        for id in missing {
            if let Some(record) = lib.keyword().get(id)? {
                writer.upsert(&record, "")?;
            }
        }
        writer.commit()?;
        lib.keyword().reload()?;
    }
    Ok(orphans.len())
}

/// Crash-test hook (feature `testing` only): with `IMAGELENS_PAUSE_AT=<point>:<n>`, the n-th
/// time the ingest reaches `point` it says so on stderr and stops there, so a test can SIGKILL
/// it at exactly that point instead of guessing with timers.
#[cfg(feature = "testing")]
fn pause_point(point: &str) {
    use std::sync::Mutex;
    static HITS: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());
    let Ok(spec) = std::env::var("IMAGELENS_PAUSE_AT") else {
        return;
    };
    let Some((want, n)) = spec.split_once(':') else {
        return;
    };
    if want != point {
        return;
    }
    let hits = {
        let mut h = HITS.lock().unwrap_or_else(|p| p.into_inner());
        match h.iter_mut().find(|(p, _)| p == point) {
            Some((_, c)) => {
                *c += 1;
                *c
            }
            None => {
                h.push((point.to_owned(), 1));
                1
            }
        }
    };
    if n.parse() == Ok(hits) {
        eprintln!("imagelens-test: paused at {point} #{hits}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(not(feature = "testing"))]
fn pause_point(_point: &str) {}

fn save_report(dir: &Path, report: &IngestReport) -> Result<String> {
    let reports = dir.join("reports");
    std::fs::create_dir_all(&reports).map_err(|e| Error::io(&reports, e))?;
    let path = reports.join(format!(
        "ingest-{}.json",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    write_atomic(
        &path,
        &serde_json::to_vec_pretty(report).expect("report serialises"),
    )?;
    Ok(path.display().to_string())
}

/// The bar of the write stage: images written, and (the message) the boxes embedded with them.
fn progress_bar(enabled: bool, len: u64) -> ProgressBar {
    bar(
        enabled,
        len,
        "{spinner} ingest [{elapsed_precise}] {bar:32} {pos}/{len} images{msg} {per_sec} ETA {eta}",
    )
}

/// The bar of the stage that reads every image file's facts (hash and header).
fn files_bar(enabled: bool, len: u64) -> ProgressBar {
    bar(
        enabled,
        len,
        "{spinner} checking image files [{elapsed_precise}] {bar:32} {pos}/{len} {per_sec} ETA {eta}",
    )
}

/// A bar of `len` steps drawn with `template`, or a hidden one.
fn bar(enabled: bool, len: u64, template: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len)
        .with_style(ProgressStyle::with_template(template).expect("valid template"))
}

/// What the parse stage shows: the readers' live counts of images and items (annotations),
/// redrawn five times a second on a thread of its own while the exports are read.
struct ReadingProgress {
    counts: ingest::Progress,
    bar: ProgressBar,
    done: std::sync::atomic::AtomicBool,
}

fn reading_progress(enabled: bool, format: ingest::Format) -> ReadingProgress {
    let bar = if enabled {
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} reading the {} export [{{elapsed_precise}}] {{msg}}",
                format.name()
            ))
            .expect("valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    ReadingProgress {
        counts: ingest::Progress::default(),
        bar,
        done: std::sync::atomic::AtomicBool::new(false),
    }
}

impl ReadingProgress {
    /// The line shown for the counts so far.
    fn line(&self) -> String {
        let c = self.counts.counts();
        format!("{} items of {} images", c.items, c.images)
    }

    /// Starts redrawing on a scoped thread until [`Self::finish`] (only when shown).
    fn show<'s>(&'s self, scope: &'s std::thread::Scope<'s, '_>) {
        if self.bar.is_hidden() {
            return;
        }
        scope.spawn(move || {
            while !self.done.load(std::sync::atomic::Ordering::Relaxed) {
                self.bar.set_message(self.line());
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        });
    }

    /// Stops redrawing; the final counts stay on screen as a line of their own.
    fn finish(&self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        self.bar.println(format!(
            "read {} in {:.1?}",
            self.line(),
            self.bar.elapsed()
        ));
        self.bar.finish_and_clear();
    }
}

fn spinner(enabled: bool, message: &'static str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner().with_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    spinner
}
