//! The library record: one image, its file facts, every time axis and its annotations.
//!
//! A [`Record`] is what the keyword index stores (as JSON) and what look-ups return. Its id is
//! derived from the image bytes ([`record_id`]) so the same bytes never become two records, and
//! its [`Record::fingerprint`] changes exactly when something worth re-indexing changed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Length of a record id in hex characters (64 bits of the image's sha256).
pub const RECORD_ID_LEN: usize = 16;

/// The stable id of an image: the first 64 bits of its sha256, in hex.
pub fn record_id(sha256_hex: &str) -> String {
    sha256_hex[..RECORD_ID_LEN].to_owned()
}

/// The time axes of a record, kept apart. Every one is optional: exports rarely carry all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dates {
    /// When the picture was taken (COCO `date_captured`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<DateTime<Utc>>,
    /// When the image file was created on disk (falls back to modified where the OS lacks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// When the image file was last modified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<DateTime<Utc>>,
    /// When the annotations were made or exported (COCO `info.date_created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotated: Option<DateTime<Utc>>,
    /// When imagelens ingested this version of the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingested: Option<DateTime<Utc>>,
}

/// The time axes that can be filtered and faceted on.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DateAxis {
    /// [`Dates::captured`].
    Captured,
    /// [`Dates::created`].
    Created,
    /// [`Dates::annotated`].
    Annotated,
    /// [`Dates::ingested`].
    Ingested,
}

impl DateAxis {
    /// Every axis, in a fixed order.
    pub const ALL: [DateAxis; 4] = [
        DateAxis::Captured,
        DateAxis::Created,
        DateAxis::Annotated,
        DateAxis::Ingested,
    ];

    /// Field / payload name of the axis.
    pub const fn name(self) -> &'static str {
        match self {
            DateAxis::Captured => "captured",
            DateAxis::Created => "created",
            DateAxis::Annotated => "annotated",
            DateAxis::Ingested => "ingested",
        }
    }

    /// The axis's value in `dates`.
    pub fn get(self, dates: &Dates) -> Option<DateTime<Utc>> {
        match self {
            DateAxis::Captured => dates.captured,
            DateAxis::Created => dates.created,
            DateAxis::Annotated => dates.annotated,
            DateAxis::Ingested => dates.ingested,
        }
    }
}

/// A labelled bounding box in pixels (COCO convention: top-left corner, width, height).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BoundingBox {
    /// Category name.
    pub label: String,
    /// Category's supercategory, when the export has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supercategory: Option<String>,
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
    /// Area as the export states it (segmentation area for COCO), else `w * h`.
    pub area: f32,
    /// COCO `iscrowd`.
    #[serde(default)]
    pub iscrowd: bool,
    /// Who or what annotated it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotator: Option<String>,
    /// The annotation's attributes as the export gives them (CVAT `attribute`s and
    /// `occluded`, VOC `pose` / `truncated` / `difficult`, ...), filterable as
    /// [`attribute_term`]s.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// The outlines the export drew, when it drew polygons (COCO `segmentation` polygons,
    /// CVAT and Label Studio polygons, YOLO segment rows, Clarifai region polygons): points
    /// `[x, y]` in pixels of the displayed image, clipped to it. The box is the rectangle
    /// around them and is what crops and redaction use. Empty for a rectangle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Vec<Vec<f32>>>)]
    pub polygons: Vec<Vec<[f32; 2]>>,
}

/// An attribute as a filter term: `key=value`, both lower-cased and trimmed; a string value as
/// it is, any other value as its JSON text (`occluded=true`, `count=2`). `None` for an empty key
/// or a null, array or object value.
pub fn attribute_term(key: &str, value: &serde_json::Value) -> Option<String> {
    let key = key.trim().to_lowercase();
    let value = match value {
        serde_json::Value::String(s) => s.trim().to_lowercase(),
        serde_json::Value::Bool(_) | serde_json::Value::Number(_) => value.to_string(),
        _ => return None,
    };
    (!key.is_empty()).then(|| format!("{key}={value}"))
}

/// An annotation that could not be read or placed on the image (its category id or box is
/// unreadable, its category is defined twice with different names, its box lies outside the
/// image). Kept so that redaction fails closed: whoever serves the image treats it as possibly
/// sensitive (see `imagelens::redact`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UncertainAnnotation {
    /// Where in the export it came from (`annotations[17]`).
    pub item: String,
    /// The labels it may carry; empty when its category could not be read at all, in which case
    /// it may carry any label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The region it covers as `[x, y, w, h]` in the record's pixels, when that is known;
    /// `None` when it cannot be placed: then it may be anywhere in the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<[f32; 4]>,
    /// What is wrong with it.
    pub reason: String,
}

/// Facts about a record that redaction needs beyond its boxes.
///
/// Coordinate convention: a record's `width`, `height` and boxes are in the pixels of the image
/// as displayed, after its EXIF orientation is applied (what annotation tools show, and what the
/// server decodes). `orientation` says how the stored pixels are turned, so that a box an
/// annotator drew on the stored pixels can be redacted too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Privacy {
    /// EXIF orientation of the image file (1 to 8; 1 when it has none).
    #[serde(default = "no_orientation", skip_serializing_if = "is_no_orientation")]
    pub orientation: u8,
    /// Annotations that could not be read or placed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncertain: Vec<UncertainAnnotation>,
}

fn no_orientation() -> u8 {
    1
}

fn is_no_orientation(o: &u8) -> bool {
    *o == 1
}

impl Default for Privacy {
    fn default() -> Self {
        Self {
            orientation: 1,
            uncertain: Vec::new(),
        }
    }
}

impl Privacy {
    /// Whether there is nothing to say (an upright image whose annotations were all read).
    pub fn is_plain(&self) -> bool {
        *self == Self::default()
    }
}

/// One image in the library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    /// Stable id from the image bytes ([`record_id`]).
    pub id: String,
    /// File name (last path component).
    pub filename: String,
    /// Path relative to the images root, `/`-separated.
    pub path: String,
    /// Absolute images root the path is relative to, at ingest time (the HTTP record view
    /// shows it, like `exports`, to auditors and admins only).
    pub images_root: String,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
    /// File size in bytes.
    pub bytes: u64,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// Dataset / source name.
    pub dataset: String,
    /// Every time axis.
    pub dates: Dates,
    /// Distinct category names present in the image (boxes' labels plus image-level labels).
    pub labels: Vec<String>,
    /// Distinct supercategories.
    #[serde(default)]
    pub supercategories: Vec<String>,
    /// Bounding boxes.
    #[serde(default)]
    pub boxes: Vec<BoundingBox>,
    /// Captions.
    #[serde(default)]
    pub captions: Vec<String>,
    /// The split the export puts the image in (`train`, `val`, `test`, ...), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// The annotation tool's own id of the image, when the export gives one (a Clarifai input
    /// id, a CVAT image id, a Label Studio task id): filterable (`--source-id`), and how a
    /// newer export of the same project finds the record of an image whose file changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// Labels the annotation says are absent ("not X": a Clarifai concept with value 0). Never
    /// among `labels`, never indexed or searched as present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negative_labels: Vec<String>,
    /// Attributes of the image itself (a CVAT tag's attributes, ...); a box's are on the box.
    /// Filterable as [`attribute_term`]s with the boxes'.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Free metadata from the export (licence, urls, source ids, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Who or what annotated the image, when the export says.
    #[serde(default)]
    pub annotators: Vec<String>,
    /// Annotation files this record came from.
    #[serde(default)]
    pub exports: Vec<String>,
    /// EXIF orientation and unreadable annotations (absent when there are none).
    #[serde(default, skip_serializing_if = "Privacy::is_plain")]
    pub privacy: Privacy,
}

impl Record {
    /// Every attribute of the image and of its boxes as an [`attribute_term`], once each,
    /// sorted: what an `attrs` filter matches (a record matches `color=white` when the image or
    /// any of its boxes has it).
    pub fn attribute_terms(&self) -> Vec<String> {
        let mut terms: Vec<String> = self
            .attributes
            .iter()
            .chain(self.boxes.iter().flat_map(|b| b.attributes.iter()))
            .filter_map(|(k, v)| attribute_term(k, v))
            .collect();
        terms.sort();
        terms.dedup();
        terms
    }

    /// Digest of everything except the ingest time: changes exactly when re-indexing is due.
    pub fn fingerprint(&self) -> String {
        let mut copy = self.clone();
        copy.dates.ingested = None;
        let json = serde_json::to_vec(&copy).expect("a record always serialises");
        hex::encode(&Sha256::digest(&json)[..12])
    }

    /// The text that describes the image in words: labels, supercategories and captions.
    /// Embedded as the record's `text` vector.
    pub fn description(&self) -> String {
        let mut parts = Vec::new();
        if !self.labels.is_empty() {
            parts.push(format!("a photo of {}", self.labels.join(", ")));
        }
        parts.extend(self.captions.iter().cloned());
        parts.join(". ")
    }

    /// Free metadata flattened to searchable text (`key value` pairs).
    pub fn metadata_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.metadata {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(k);
            out.push(' ');
            out.push_str(&v);
            out.push('\n');
        }
        // Box attributes are words about the image too ("white", "occluded").
        for t in self.attribute_terms() {
            out.push_str(&t.replacen('=', " ", 1));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_ingest_time_but_not_annotations() {
        let mut r = Record {
            source_id: None,
            id: "0123456789abcdef".into(),
            filename: "a.jpg".into(),
            path: "a.jpg".into(),
            images_root: "/x".into(),
            width: 1,
            height: 1,
            bytes: 1,
            sha256: "00".into(),
            dataset: "d".into(),
            dates: Dates::default(),
            labels: vec!["cat".into()],
            supercategories: vec![],
            boxes: vec![],
            captions: vec![],
            split: None,
            negative_labels: Vec::new(),
            attributes: Default::default(),
            metadata: BTreeMap::new(),
            annotators: vec![],
            exports: vec![],
            privacy: Privacy::default(),
        };
        let before = r.fingerprint();
        r.dates.ingested = Some(Utc::now());
        assert_eq!(before, r.fingerprint());
        r.captions.push("a cat".into());
        assert_ne!(before, r.fingerprint());
    }
}
