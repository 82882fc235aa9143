//! Annotation exports turned into our own types, and image files turned into [`Record`]s.
//!
//! Owns format readers ([`coco`]) that produce format-neutral [`ImageEntry`]s, the per-item
//! [`Problem`] report, and [`build_record`], which hashes and measures the image file and
//! validates boxes against the real image size. It does not embed or write anything; see
//! [`crate::pipeline`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::{BoundingBox, Dates, Record, record_id};

pub mod coco;

/// One problem with one item of the input, reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The export or image file concerned.
    pub file: String,
    /// Which item inside it (`images[3] a.jpg`, `annotations[17]`).
    pub item: String,
    /// What is wrong and what was done about it.
    pub reason: String,
}

/// A box as the export states it, before validation against the image.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBox {
    /// Category name.
    pub label: String,
    /// Supercategory.
    pub supercategory: Option<String>,
    /// Left.
    pub x: f32,
    /// Top.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
    /// Stated area.
    pub area: Option<f32>,
    /// COCO iscrowd.
    pub iscrowd: bool,
    /// Annotator, when known.
    pub annotator: Option<String>,
    /// Where in the export it came from, for problem reports.
    pub item: String,
}

/// An image as described by one or more exports, before its file is read.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEntry {
    /// Path relative to the images root, `/`-separated.
    pub file_name: String,
    /// Width the export states.
    pub width: Option<u32>,
    /// Height the export states.
    pub height: Option<u32>,
    /// Capture time.
    pub captured: Option<DateTime<Utc>>,
    /// Annotation/export time.
    pub annotated: Option<DateTime<Utc>>,
    /// Boxes.
    pub boxes: Vec<RawBox>,
    /// Captions.
    pub captions: Vec<String>,
    /// Free metadata.
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Annotators.
    pub annotators: Vec<String>,
    /// Export files that mention it.
    pub exports: Vec<String>,
}

impl ImageEntry {
    /// Folds another export's description of the same file into this one.
    pub fn merge(&mut self, other: ImageEntry) {
        self.width = self.width.or(other.width);
        self.height = self.height.or(other.height);
        self.captured = self.captured.or(other.captured);
        self.annotated = match (self.annotated, other.annotated) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.boxes.extend(other.boxes);
        self.captions.extend(other.captions);
        for (k, v) in other.metadata {
            self.metadata.entry(k).or_insert(v);
        }
        for a in other.annotators {
            if !self.annotators.contains(&a) {
                self.annotators.push(a);
            }
        }
        self.exports.extend(other.exports);
    }
}

/// Facts read from an image file: hash, size, dimensions, file times.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFacts {
    /// sha256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Width from the header.
    pub width: u32,
    /// Height from the header.
    pub height: u32,
    /// Creation time (modified time where the filesystem has none).
    pub created: Option<DateTime<Utc>>,
    /// Modified time.
    pub modified: Option<DateTime<Utc>>,
}

/// Reads an image file's facts without decoding its pixels.
///
/// # Errors
/// A human-readable reason: missing file, unreadable, or not an image header we understand.
pub fn file_facts(path: &Path) -> Result<FileFacts, String> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "image file is missing".to_owned(),
        _ => format!("cannot read image file: {e}"),
    })?;
    if bytes.is_empty() {
        return Err("image file is empty (0 bytes)".into());
    }
    let (width, height) = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read image header: {e}"))?
        .into_dimensions()
        .map_err(|e| format!("not a readable image: {e}"))?;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot stat image file: {e}"))?;
    let modified = meta.modified().ok().map(DateTime::<Utc>::from);
    let created = meta.created().ok().map(DateTime::<Utc>::from).or(modified);
    Ok(FileFacts {
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: bytes.len() as u64,
        width,
        height,
        created,
        modified,
    })
}

/// Joins a relative export path onto the images root, refusing paths that climb out of it.
///
/// # Errors
/// A reason when the path is absolute or contains `..`.
pub fn resolve_image_path(root: &Path, file_name: &str) -> Result<PathBuf, String> {
    let rel = Path::new(file_name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "file_name {file_name:?} points outside the images folder"
        ));
    }
    Ok(root.join(rel))
}

/// Checks boxes against the real image size: drops degenerate or fully outside boxes and clips
/// partly outside ones, reporting each change.
pub fn validate_boxes(
    boxes: Vec<RawBox>,
    width: u32,
    height: u32,
    file: &str,
    problems: &mut Vec<Problem>,
) -> Vec<BoundingBox> {
    let (iw, ih) = (width as f32, height as f32);
    let mut kept = Vec::with_capacity(boxes.len());
    for b in boxes {
        let finite = [b.x, b.y, b.w, b.h].iter().all(|v| v.is_finite());
        if !finite || b.w <= 0.0 || b.h <= 0.0 {
            problems.push(Problem {
                file: file.to_owned(),
                item: b.item,
                reason: format!(
                    "box [{}, {}, {}, {}] has no area; box skipped",
                    b.x, b.y, b.w, b.h
                ),
            });
            continue;
        }
        let (x0, y0) = (b.x.max(0.0), b.y.max(0.0));
        let (x1, y1) = ((b.x + b.w).min(iw), (b.y + b.h).min(ih));
        if x1 <= x0 || y1 <= y0 {
            problems.push(Problem {
                file: file.to_owned(),
                item: b.item,
                reason: format!(
                    "box [{}, {}, {}, {}] lies outside the {width}x{height} image; box skipped",
                    b.x, b.y, b.w, b.h
                ),
            });
            continue;
        }
        let clipped = (x0, y0, x1 - x0, y1 - y0) != (b.x, b.y, b.w, b.h);
        if clipped {
            problems.push(Problem {
                file: file.to_owned(),
                item: b.item.clone(),
                reason: format!(
                    "box [{}, {}, {}, {}] extends past the {width}x{height} image; clipped",
                    b.x, b.y, b.w, b.h
                ),
            });
        }
        let (w, h) = (x1 - x0, y1 - y0);
        kept.push(BoundingBox {
            label: b.label,
            supercategory: b.supercategory,
            x: x0,
            y: y0,
            w,
            h,
            area: if clipped {
                w * h
            } else {
                b.area.unwrap_or(w * h)
            },
            iscrowd: b.iscrowd,
            annotator: b.annotator,
        });
    }
    kept
}

/// Builds the record of one entry from its image file's facts.
pub fn build_record(
    entry: ImageEntry,
    facts: &FileFacts,
    images_root: &Path,
    dataset: &str,
    ingested: DateTime<Utc>,
    problems: &mut Vec<Problem>,
) -> Record {
    let file = entry.file_name.clone();
    if let (Some(w), Some(h)) = (entry.width, entry.height)
        && (w, h) != (facts.width, facts.height)
    {
        problems.push(Problem {
            file: file.clone(),
            item: "image size".into(),
            reason: format!(
                "export says {w}x{h}, file is {}x{}; the file's size is used",
                facts.width, facts.height
            ),
        });
    }
    let boxes = validate_boxes(entry.boxes, facts.width, facts.height, &file, problems);
    let mut labels: Vec<String> = Vec::new();
    let mut supercategories: Vec<String> = Vec::new();
    for b in &boxes {
        if !labels.contains(&b.label) {
            labels.push(b.label.clone());
        }
        if let Some(s) = &b.supercategory
            && !supercategories.contains(s)
        {
            supercategories.push(s.clone());
        }
    }
    let mut annotators = entry.annotators;
    for b in &boxes {
        if let Some(a) = &b.annotator
            && !annotators.contains(a)
        {
            annotators.push(a.clone());
        }
    }
    let filename = file.rsplit('/').next().unwrap_or(&file).to_owned();
    Record {
        id: record_id(&facts.sha256),
        filename,
        path: file,
        images_root: images_root.display().to_string(),
        width: facts.width,
        height: facts.height,
        bytes: facts.bytes,
        sha256: facts.sha256.clone(),
        dataset: dataset.to_owned(),
        dates: Dates {
            captured: entry.captured,
            created: facts.created,
            modified: facts.modified,
            annotated: entry.annotated,
            ingested: Some(ingested),
        },
        labels,
        supercategories,
        boxes,
        captions: entry.captions,
        metadata: entry.metadata,
        annotators,
        exports: entry.exports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(x: f32, y: f32, w: f32, h: f32) -> RawBox {
        RawBox {
            label: "cat".into(),
            supercategory: None,
            x,
            y,
            w,
            h,
            area: None,
            iscrowd: false,
            annotator: None,
            item: "annotations[0]".into(),
        }
    }

    #[test]
    fn boxes_are_kept_clipped_or_dropped_with_a_reason() {
        let mut problems = Vec::new();
        let kept = validate_boxes(
            vec![
                raw(1.0, 1.0, 5.0, 5.0),
                raw(90.0, 90.0, 20.0, 20.0),
                raw(200.0, 0.0, 5.0, 5.0),
                raw(0.0, 0.0, 0.0, 3.0),
                raw(f32::NAN, 0.0, 1.0, 1.0),
            ],
            100,
            100,
            "a.jpg",
            &mut problems,
        );
        assert_eq!(kept.len(), 2);
        assert_eq!((kept[1].w, kept[1].h), (10.0, 10.0));
        assert_eq!(problems.len(), 4);
        assert!(problems[0].reason.contains("clipped"));
        assert!(problems[1].reason.contains("outside"));
        assert!(problems[2].reason.contains("no area"));
    }

    #[test]
    fn image_paths_may_not_escape_the_root() {
        let root = Path::new("/lib");
        assert!(resolve_image_path(root, "../etc/passwd").is_err());
        assert!(resolve_image_path(root, "/etc/passwd").is_err());
        assert_eq!(
            resolve_image_path(root, "a/b.jpg").unwrap(),
            Path::new("/lib/a/b.jpg")
        );
    }
}
