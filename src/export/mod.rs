//! Data-set export for curation tools: records plus their image files written as a COCO, YOLO,
//! Pascal VOC or CSV data set inside a zip or tar archive, with a `provenance.json` manifest.
//!
//! Owns the annotation writers, the archive layout and the checks that make a streamed export
//! predictable. It does not choose the records (search and collections do), read the library,
//! or speak HTTP: the server hands it records and an [`std::io::Write`] to stream into.
//!
//! Layout, in this order:
//! - `provenance.json`: [`Provenance`], with one [`ProvenanceRecord`] per exported record;
//! - `images/<record.path>`: the image files (stored, not deflated, in a zip): byte for byte in
//!   [`ImageMode::Originals`]; in [`ImageMode::Redacted`] (what every caller without the right
//!   to see sensitive regions gets) an image with sensitive regions is decoded, redacted as the
//!   server redacts it and re-encoded (PNG for PNG/WebP sources, JPEG otherwise), and the
//!   manifest marks it `redacted`;
//! - the annotation files of the [`DatasetFormat`] (see its variants).
//!
//! Invariants:
//! - every archive entry name is a normalised relative `/`-path without `..`, and no two entries
//!   share a name ([`check_export`]); nothing is written before these checks pass;
//! - every image is hashed while it is exported and must still match the record's sha256, so an
//!   archive never pairs annotations with a different picture;
//! - a failed export never ends in a valid-looking archive: once an error happens nothing more
//!   reaches the output, so the zip central directory or the tar end marker is never written
//!   (both crates would otherwise write them when dropped) and a client sees a broken download
//!   instead of a silently incomplete data set.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use indexer::Fault;
use indexer::record::Record;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod archive;
mod coco;
mod csv;
mod error;
mod format;
mod voc;
mod yolo;

use archive::*;
use coco::*;
use csv::*;
use voc::*;
use yolo::*;

pub use error::ExportError;
pub use format::{ArchiveFormat, DatasetFormat, UnknownFormat};

/// What an export came from and who asked: written as `provenance.json` at the archive root.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    /// When the export was made; also the modification time of every archive entry.
    pub created: DateTime<Utc>,
    /// Account or client name of whoever asked for it.
    pub requested_by: String,
    /// What selected the records, e.g. `{"collection": "x"}` or `{"search": {query, filters}}`.
    pub source: serde_json::Value,
    /// Identity of the library (counts, format version) as the caller gives it; never where
    /// it lives on the server.
    pub library: serde_json::Value,
    /// The embedding model of the library, when it has one.
    pub model: Option<models::EmbedderSpec>,
    /// Annotation format; [`write_dataset`] sets it to the format it writes.
    pub format: DatasetFormat,
    /// Whether sensitive regions of the images are redacted ([`ImageMode::Redacted`]);
    /// [`write_dataset_as`] sets it. Each record says whether its own file was changed.
    #[serde(default)]
    pub images_redacted: bool,
    /// The exported records; [`write_dataset`] fills it from its records, replacing any given.
    pub records: Vec<ProvenanceRecord>,
}

/// One exported record as `provenance.json` lists it: enough to find it in the library again
/// and to verify the image file beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceRecord {
    /// Record id in the library.
    pub id: String,
    /// File name (last path component).
    pub filename: String,
    /// Path relative to the images root, `/`-separated; the image is at `images/<path>`.
    pub path: String,
    /// sha256 of the image file, hex.
    pub sha256: String,
    /// Dataset / source name.
    pub dataset: String,
    /// Whether the archived image is a redacted re-encoding of the ingested one (whose sha256
    /// is `sha256`) rather than the file itself.
    #[serde(default)]
    pub redacted: bool,
}

impl From<&Record> for ProvenanceRecord {
    fn from(r: &Record) -> Self {
        ProvenanceRecord {
            id: r.id.clone(),
            filename: r.filename.clone(),
            path: r.path.clone(),
            sha256: r.sha256.clone(),
            dataset: r.dataset.clone(),
            redacted: false,
        }
    }
}

/// How images go into an archive.
#[derive(Debug, Clone)]
pub enum ImageMode {
    /// Byte for byte as ingested: only for callers who may see sensitive regions.
    Originals,
    /// Images the redaction applies to are decoded (within `limits`), redacted and re-encoded;
    /// the others go byte for byte.
    Redacted {
        /// Which labels are sensitive.
        redaction: crate::governance::redact::Redaction,
        /// Decoding limits.
        limits: models::preprocess::DecodeLimits,
    },
}

impl ImageMode {
    /// Whether `r`'s image is changed (redacted) in this mode.
    pub fn redacts(&self, r: &Record) -> bool {
        match self {
            ImageMode::Originals => false,
            ImageMode::Redacted { redaction, .. } => redaction.applies_to(r),
        }
    }
}

/// Checks, before anything is streamed, that every record's image file exists and its path is
/// safe, so a streamed response does not fail half-way for a foreseeable reason.
///
/// Also refuses two records with the same path, and an image whose size differs from the
/// record's (cheap, catches most replaced files). The sha256 is only checked while
/// [`write_dataset`] reads each image, so a file rewritten with the same size is caught there.
/// Format-specific checks are in [`check_export`].
///
/// # Errors
/// [`ExportError::UnsafePath`], [`ExportError::DuplicatePath`], [`ExportError::MissingImage`],
/// [`ExportError::ChangedImage`] (size differs) or [`ExportError::ReadImage`], for the first
/// record that has the problem.
pub fn check_sources(records: &[Record]) -> Result<(), ExportError> {
    check_paths(records)?;
    for r in records {
        let file = source_file(r)?;
        match std::fs::metadata(&file) {
            Ok(meta) if meta.is_file() => {
                if meta.len() != r.bytes {
                    return Err(changed(r));
                }
            }
            Ok(_) => return Err(missing(r)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing(r)),
            Err(source) => return Err(unreadable(r, source)),
        }
    }
    Ok(())
}

/// [`check_sources`] plus the checks that depend on the format: in YOLO and VOC, two images
/// whose paths differ only in extension (`a.jpg`, `a.png`) would share one annotation file.
/// [`write_dataset`] runs this before it writes anything.
///
/// # Errors
/// As [`check_sources`], and [`ExportError::NameClash`].
pub fn check_export(records: &[Record], format: DatasetFormat) -> Result<(), ExportError> {
    check_paths(records)?;
    let annotation_file = match format {
        DatasetFormat::Yolo | DatasetFormat::YoloSeg => yolo_label_file,
        DatasetFormat::Voc => voc_annotation_file,
        DatasetFormat::Coco | DatasetFormat::Csv => return check_sources(records),
    };
    let mut seen: HashMap<String, &str> = HashMap::with_capacity(records.len());
    for r in records {
        let file = annotation_file(&r.path);
        if let Some(first) = seen.get(&file) {
            return Err(ExportError::NameClash {
                first: (*first).to_owned(),
                second: r.path.clone(),
                file,
            });
        }
        seen.insert(file, &r.path);
    }
    check_sources(records)
}

/// Writes the archive to `out` (any `std::io::Write`, not seekable: the server streams it).
/// Image bytes are read from images_root/path and their sha256 checked against the record.
///
/// Runs [`check_export`] first, so a foreseeable problem is reported before the first byte is
/// written. Memory use is about one image (zip: one entry) plus the annotation files, which are
/// built before streaming starts. `provenance` is written with `format` and with `records`
/// listed. `out` is flushed at the end; on error, nothing more is written to it (see the module
/// invariants), so the caller should abort the response.
///
/// # Errors
/// Those of [`check_export`]; [`ExportError::MissingImage`], [`ExportError::ChangedImage`] or
/// [`ExportError::ReadImage`] for an image that went away or changed after the check;
/// [`ExportError::Io`] when writing to `out` fails; [`ExportError::Archive`] when the archive
/// library refuses an entry.
pub fn write_dataset<W: Write>(
    out: W,
    records: &[Record],
    format: DatasetFormat,
    archive: ArchiveFormat,
    provenance: &Provenance,
) -> Result<(), ExportError> {
    write_dataset_as(
        out,
        records,
        format,
        archive,
        provenance,
        &ImageMode::Originals,
    )
}

/// [`write_dataset`] with the images written as `mode` says (redacted or originals); the
/// manifest says which.
///
/// # Errors
/// As [`write_dataset`], and [`ExportError::Redaction`] for an image that cannot be decoded
/// to be redacted.
pub fn write_dataset_as<W: Write>(
    out: W,
    records: &[Record],
    format: DatasetFormat,
    archive: ArchiveFormat,
    provenance: &Provenance,
    mode: &ImageMode,
) -> Result<(), ExportError> {
    check_export(records, format)?;

    let mut provenance = provenance.clone();
    provenance.format = format;
    provenance.images_redacted = matches!(mode, ImageMode::Redacted { .. });
    provenance.records = records
        .iter()
        .map(|r| ProvenanceRecord {
            redacted: mode.redacts(r),
            ..ProvenanceRecord::from(r)
        })
        .collect();
    let manifest = serde_json::to_vec_pretty(&provenance).map_err(io::Error::from)?;
    let annotations = annotation_files(records, format, provenance.created)?;

    let cut = Rc::new(Cell::new(false));
    let guarded = Guarded {
        inner: out,
        cut: Rc::clone(&cut),
    };
    let mut sink = Sink::new(guarded, archive, provenance.created);
    let written = write_entries(&mut sink, &manifest, records, &annotations, mode);
    if let Err(e) = written {
        // Cut before `sink` is dropped: the zip and tar writers finish the archive in `Drop`.
        cut.set(true);
        return Err(e);
    }
    let finished = sink.finish();
    if finished.is_err() {
        cut.set(true);
    }
    finished?;
    // The guard cuts itself on the first failed write and then discards; should a writer have
    // swallowed that error, the export is still a failure.
    if cut.get() {
        return Err(ExportError::Io(io::Error::other(
            "writing the export failed part-way",
        )));
    }
    Ok(())
}

fn write_entries<W: Write>(
    sink: &mut Sink<W>,
    manifest: &[u8],
    records: &[Record],
    annotations: &[(String, Vec<u8>)],
    mode: &ImageMode,
) -> Result<(), ExportError> {
    sink.add("provenance.json", manifest, Compress::Yes)?;
    for r in records {
        let mut bytes = read_verified(r)?;
        if let ImageMode::Redacted { redaction, limits } = mode
            && redaction.applies_to(r)
        {
            bytes = redacted(r, &bytes, redaction, limits)?;
        }
        sink.add(&format!("images/{}", r.path), &bytes, Compress::No)?;
    }
    for (name, data) in annotations {
        sink.add(name, data, Compress::Yes)?;
    }
    Ok(())
}

/// The record's image, decoded, redacted and re-encoded.
fn redacted(
    r: &Record,
    bytes: &[u8],
    redaction: &crate::governance::redact::Redaction,
    limits: &models::preprocess::DecodeLimits,
) -> Result<Vec<u8>, ExportError> {
    let failed = |reason: String| ExportError::Redaction {
        id: r.id.clone(),
        path: r.path.clone(),
        reason,
    };
    let (mut img, orientation) =
        models::preprocess::decode_oriented(bytes, limits).map_err(|e| failed(e.to_string()))?;
    redaction.apply(&mut img, r, orientation);
    let mut out = io::Cursor::new(Vec::new());
    img.write_to(&mut out, crate::http::records::redacted_format(&r.path))
        .map_err(|e| failed(e.to_string()))?;
    Ok(out.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Sources: paths, files, hashes.

fn missing(r: &Record) -> ExportError {
    ExportError::MissingImage {
        id: r.id.clone(),
        path: r.path.clone(),
    }
}

fn changed(r: &Record) -> ExportError {
    ExportError::ChangedImage {
        id: r.id.clone(),
        path: r.path.clone(),
    }
}

fn unreadable(r: &Record, source: io::Error) -> ExportError {
    ExportError::ReadImage {
        id: r.id.clone(),
        path: r.path.clone(),
        source,
    }
}

/// Whether `path` is a normalised relative `/`-path that stays inside the folder it is joined
/// to, on any platform that unpacks the archive.
fn is_safe_path(path: &str) -> bool {
    let drive_letter = path.as_bytes().get(1) == Some(&b':');
    !path.is_empty()
        && !drive_letter
        && !path.starts_with('/')
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Unsafe and duplicate paths: pure checks, no file system access.
fn check_paths(records: &[Record]) -> Result<(), ExportError> {
    let mut seen: HashMap<&str, &str> = HashMap::with_capacity(records.len());
    for r in records {
        if !is_safe_path(&r.path) {
            return Err(ExportError::UnsafePath {
                id: r.id.clone(),
                path: r.path.clone(),
            });
        }
        if let Some(first) = seen.insert(&r.path, &r.id) {
            return Err(ExportError::DuplicatePath {
                first: first.to_owned(),
                second: r.id.clone(),
                path: r.path.clone(),
            });
        }
    }
    Ok(())
}

/// The image file of a record; its path has passed [`is_safe_path`]. A symbolic link that
/// leads out of the images folder is never followed.
fn source_file(r: &Record) -> Result<PathBuf, ExportError> {
    match indexer::ingest::resolve_inside(std::path::Path::new(&r.images_root), &r.path) {
        Ok(real) => Ok(real),
        Err(reason) if reason.contains("missing") => Err(missing(r)),
        Err(_) => Err(ExportError::OutsideImages {
            id: r.id.clone(),
            path: r.path.clone(),
        }),
    }
}

/// Reads a record's image and checks it is still the ingested one.
fn read_verified(r: &Record) -> Result<Vec<u8>, ExportError> {
    let bytes = match std::fs::read(source_file(r)?) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing(r)),
        Err(e) => return Err(unreadable(r, e)),
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    if !digest.eq_ignore_ascii_case(&r.sha256) {
        return Err(changed(r));
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Annotation files.

/// The annotation files of `format`, as (archive name, bytes), in archive order.
fn annotation_files(
    records: &[Record],
    format: DatasetFormat,
    created: DateTime<Utc>,
) -> Result<Vec<(String, Vec<u8>)>, ExportError> {
    Ok(match format {
        DatasetFormat::Coco => coco_files(records, created)?,
        DatasetFormat::Yolo => yolo_files(records, Rows::Boxes),
        DatasetFormat::YoloSeg => yolo_files(records, Rows::Outlines),
        DatasetFormat::Voc => voc_files(records),
        DatasetFormat::Csv => vec![("annotations.csv".to_owned(), csv_file(records)?)],
    })
}

/// `path` with the extension of its last component replaced by `ext` (or `ext` appended when
/// it has none; a leading dot does not start an extension).
fn replace_extension(path: &str, ext: &str) -> String {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    let stem_end = match path[name_start..].rfind('.') {
        Some(i) if i > 0 => name_start + i,
        _ => path.len(),
    };
    format!("{}.{ext}", &path[..stem_end])
}

fn rfc3339(d: DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Box labels of all records, sorted and distinct: COCO category ids and YOLO class indices.
fn box_labels(records: &[Record]) -> Vec<&str> {
    let set: BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.boxes.iter().map(|b| b.label.as_str()))
        .collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests;
