//! Annotation exports turned into our own types, and image files turned into [`Record`]s.
//!
//! Owns format readers ([`coco`], [`voc`], [`yolo`], [`cvat`], [`labelstudio`], [`manifest`],
//! [`clarifai`])
//! that produce format-neutral [`ImageEntry`]s, format detection ([`locate`]) and dispatch
//! ([`read_annotations`]), the per-item [`Problem`] report, and [`build_record`], which hashes
//! and measures the image file and validates boxes against the real image size. It does not
//! embed or write anything; see [`crate::pipeline`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use models::preprocess::{
    DecodeLimits, check_complete, probe_file, stored_point_to_displayed, stored_rect_to_displayed,
    stored_size,
};

use crate::record::{BoundingBox, Dates, Privacy, Record, UncertainAnnotation, record_id};

pub use build::{
    FileFacts, MAX_BOXES_PER_IMAGE, build_record, file_facts, resolve_image_path, resolve_inside,
    validate_boxes,
};
use build::{fails_closed, skip_box};

mod build;
pub mod clarifai;
pub mod clarifai_archive;
pub mod coco;
pub mod cvat;
mod detect;
pub mod labelstudio;
pub mod manifest;
pub mod polygon;
mod progress;
pub mod voc;
mod xml;
pub mod yolo;

pub use detect::{Format, Located, ReadOptions, locate, read_annotations, read_annotations_with};
pub use progress::{Counts, Progress};

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
    /// Other names the export gives the box's category id (a category id defined twice with
    /// different names); the box is then redacted if any of its names is sensitive.
    pub alt_labels: Vec<String>,
    /// Attributes the export gives the box (occluded, pose, rotation, colour, ...); kept on the
    /// record's box ([`crate::record::BoundingBox::attributes`]).
    pub attributes: Attributes,
    /// Outlines in the same pixels as the box ([`polygon::ring`]); turned and clipped with
    /// it ([`crate::record::BoundingBox::polygons`]).
    pub polygons: Vec<Vec<[f32; 2]>>,
}

impl RawBox {
    /// A box of `label` at `[x, y, w, h]` (pixels), read from `item`; everything else empty.
    pub fn new(label: impl Into<String>, rect: [f32; 4], item: impl Into<String>) -> Self {
        let [x, y, w, h] = rect;
        Self {
            label: label.into(),
            supercategory: None,
            x,
            y,
            w,
            h,
            area: None,
            iscrowd: false,
            annotator: None,
            item: item.into(),
            alt_labels: Vec::new(),
            polygons: Vec::new(),
            attributes: Attributes::default(),
        }
    }
}

impl RawBox {
    /// Every label the box may carry.
    fn all_labels(&self) -> Vec<String> {
        let mut labels = vec![self.label.clone()];
        for l in &self.alt_labels {
            if !labels.contains(l) {
                labels.push(l.clone());
            }
        }
        labels
    }
}

/// A box's attributes as a reader gathers them, ordered by name: a list sized to what it holds
/// (most boxes have none, one or two), where a map costs a 600-byte node for one attribute;
/// a 2M-box export holds two million of them at once. The record keeps them as a map
/// ([`Attributes::into_map`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(Vec<(String, serde_json::Value)>);

impl Attributes {
    /// Sets `name` to `value`, returning the value it replaces.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: serde_json::Value,
    ) -> Option<serde_json::Value> {
        let name = name.into();
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&name)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Name and value, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The attributes as the record holds them.
    pub fn into_map(self) -> BTreeMap<String, serde_json::Value> {
        self.0.into_iter().collect()
    }
}

impl From<BTreeMap<String, serde_json::Value>> for Attributes {
    fn from(map: BTreeMap<String, serde_json::Value>) -> Self {
        // A map's keys are distinct and in order already.
        Self(map.into_iter().collect())
    }
}

impl std::ops::Index<&str> for Attributes {
    type Output = serde_json::Value;

    /// # Panics
    /// When there is no attribute of that name, as a map's index does.
    fn index(&self, name: &str) -> &serde_json::Value {
        self.get(name)
            .unwrap_or_else(|| panic!("no attribute {name:?}"))
    }
}

impl PartialEq<BTreeMap<String, serde_json::Value>> for Attributes {
    fn eq(&self, other: &BTreeMap<String, serde_json::Value>) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other)
                .all(|((a, x), (b, y))| a == b && x == y)
    }
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
    /// The split the export puts the image in (`train`, `val`, `test`, ...).
    pub split: Option<String>,
    /// The annotation tool's own id of the image ([`Record::source_id`]).
    pub source_id: Option<String>,
    /// Labels the annotation says are absent (a Clarifai concept with value 0).
    pub negative_labels: Vec<String>,
    /// Attributes of the image itself (a CVAT tag's attributes, ...).
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Free metadata.
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Annotators.
    pub annotators: Vec<String>,
    /// Export files that mention it.
    pub exports: Vec<String>,
    /// Annotations that could not be read; their `region`, when known, is as the export states
    /// it and is placed on the image by [`build_record`].
    pub uncertain: Vec<UncertainAnnotation>,
    /// Image-level labels (tags, classifications) without a region. A label that no box of the
    /// image carries is also kept as an unplaced [`UncertainAnnotation`], so an image tagged
    /// with a sensitive label is redacted whole.
    pub labels: Vec<String>,
    /// The folder `file_name` is relative to when it is not the run's images folder: images a
    /// Clarifai archive carries are written under the library and read from there.
    pub root: Option<PathBuf>,
}

impl ImageEntry {
    /// An entry for `file_name` read from `export`, with nothing else known yet.
    pub fn new(file_name: impl Into<String>, export: &str) -> Self {
        Self {
            file_name: file_name.into(),
            width: None,
            height: None,
            captured: None,
            annotated: None,
            boxes: Vec::new(),
            captions: Vec::new(),
            split: None,
            source_id: None,
            negative_labels: Vec::new(),
            attributes: BTreeMap::new(),
            metadata: BTreeMap::new(),
            annotators: Vec::new(),
            exports: vec![export.to_owned()],
            uncertain: Vec::new(),
            labels: Vec::new(),
            root: None,
        }
    }

    /// How many annotations it holds: boxes (with polygons), captions, labels present and
    /// absent, and annotations that could not be read.
    pub fn annotations(&self) -> usize {
        self.boxes.len()
            + self.captions.len()
            + self.labels.len()
            + self.negative_labels.len()
            + self.uncertain.len()
    }

    /// Adds an image-level label once.
    pub fn add_label(&mut self, label: &str) {
        let label = label.trim();
        if !label.is_empty() && !self.labels.iter().any(|l| l == label) {
            self.labels.push(label.to_owned());
        }
    }
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
        self.uncertain.extend(other.uncertain);
        for l in other.labels {
            self.add_label(&l);
        }
    }
}

/// Merges entries that name the same file (several files of one export, or one file listed
/// twice), keeping the order in which files were first named.
pub fn merge_by_name(entries: Vec<ImageEntry>) -> Vec<ImageEntry> {
    let mut merged: Vec<ImageEntry> = Vec::with_capacity(entries.len());
    let mut by_name: std::collections::HashMap<(Option<PathBuf>, String), usize> =
        std::collections::HashMap::new();
    for entry in entries {
        let key = (entry.root.clone(), entry.file_name.clone());
        match by_name.get(&key) {
            Some(&i) => merged[i].merge(entry),
            None => {
                by_name.insert(key, merged.len());
                merged.push(entry);
            }
        }
    }
    merged
}

/// The axis-aligned box `[x, y, w, h]` around points, or `None` without a finite point.
pub fn bbox_of_points(points: &[(f64, f64)]) -> Option<[f32; 4]> {
    let finite: Vec<&(f64, f64)> = points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if finite.is_empty() || finite.len() != points.len() {
        return None;
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for (x, y) in finite {
        x0 = x0.min(*x);
        y0 = y0.min(*y);
        x1 = x1.max(*x);
        y1 = y1.max(*y);
    }
    Some([x0 as f32, y0 as f32, (x1 - x0) as f32, (y1 - y0) as f32])
}

/// The axis-aligned box around a `w` x `h` rectangle whose corner `(x, y)` is turned by
/// `degrees` (clockwise on screen, y down) about the point `(px, py)`.
pub fn rotated_bbox(rect: [f64; 4], degrees: f64, pivot: (f64, f64)) -> Option<[f32; 4]> {
    let [x, y, w, h] = rect;
    let (s, c) = degrees.to_radians().sin_cos();
    let (px, py) = pivot;
    let corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)].map(|(cx, cy)| {
        let (dx, dy) = (cx - px, cy - py);
        (px + dx * c - dy * s, py + dx * s + dy * c)
    });
    bbox_of_points(&corners)
}

/// File name extensions of the images the readers look for in folders (lowercase; a folder
/// is searched ignoring case, a file name probed in lower and upper case).
pub(crate) const IMAGE_EXTENSIONS: [&str; 8] =
    ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// A trimmed, non-empty text.
pub(crate) fn text(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// Attributes from a JSON object (a COCO image's or annotation's `attributes`, a manifest's
/// `attributes` / `image_attributes` cell), nulls left out: an attribute without a value is
/// none, whichever format it came in.
pub(crate) fn attributes_of(
    object: &serde_json::Map<String, serde_json::Value>,
) -> BTreeMap<String, serde_json::Value> {
    object
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Cases per property test: 10,000 by default; `IMAGELENS_PROPTEST_CASES` overrides.
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: std::env::var("IMAGELENS_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

#[cfg(test)]
mod tests;
