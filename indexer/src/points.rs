//! The vector-store point schema, in one place: which named vectors a point holds, which
//! payload keys it carries and what they mean, how its id is derived, and the collection spec
//! that declares them to a store.
//!
//! A record becomes one **image point** (vectors `image` and, when the record has labels or
//! captions, `text`) and one **region point** per box (vector `region`). Every point carries
//! the payload the exact filters need ([`payload`]), so a vector search can filter by itself
//! with the same meaning as the keyword index (`tests/filter_equivalence.rs` checks the three
//! evaluators against each other). The stores are generic over names; only this module and its
//! callers know them, so a misspelt key is a compile error, not an empty result.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::filter::normalize_label;
use crate::record::{DateAxis, Record};
use crate::store::{CollectionSpec, Payload, PointId, VectorPoint};

/// The named vectors of a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VectorName {
    /// The whole image, on image points.
    Image,
    /// One box's crop, on region points.
    Region,
    /// The record's labels and captions as text, on image points.
    Text,
}

impl VectorName {
    /// Every vector name, in collection order.
    pub const ALL: [VectorName; 3] = [VectorName::Image, VectorName::Region, VectorName::Text];

    /// The name the store knows it by.
    pub const fn as_str(self) -> &'static str {
        match self {
            VectorName::Image => "image",
            VectorName::Region => "region",
            VectorName::Text => "text",
        }
    }
}

impl std::fmt::Display for VectorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts an embedded library's vector store keeps its points in
/// ([`crate::library::VectorLayout::Split`]): the directory under `vectors/` and the named
/// vectors of its points. Image points hold `image` and `text`, region points `region`, so each
/// vector has a slot only on the points that have it.
pub const VECTOR_PARTS: [(&str, &[VectorName]); 2] = [
    ("images", &[VectorName::Image, VectorName::Text]),
    ("regions", &[VectorName::Region]),
];

/// Payload keys of a point.
pub mod key {
    /// The record's id (string; every point).
    pub const RECORD_ID: &str = "record_id";
    /// `"image"` or `"region"` ([`super::PointKind`]).
    pub const KIND: &str = "kind";
    /// The record's labels, normalised ([`crate::filter::normalize_label`]); array of strings.
    pub const LABELS: &str = "labels";
    /// The record's dataset (string).
    pub const DATASET: &str = "dataset";
    /// The record's split (string; absent when the export gives none).
    pub const SPLIT: &str = "split";
    /// The annotation tool's id of the image (string; absent when the export gives none).
    pub const SOURCE_ID: &str = "source_id";
    /// The record's box attributes as `key=value` terms
    /// ([`crate::record::Record::attribute_terms`]); array of strings, absent when none.
    pub const ATTRS: &str = "attrs";
    /// The image's file name (string).
    pub const FILENAME: &str = "filename";
    /// The image's path under its images folder (string).
    pub const PATH: &str = "path";
    /// Region points: the box's index in the record (integer).
    pub const BOX: &str = "box";
    /// Region points: the box's label, normalised (string; not indexed).
    pub const BOX_LABEL: &str = "box_label";
}

/// Payload keys filtered as exact keywords (the store builds an index for each).
pub const KEYWORD_KEYS: [&str; 9] = [
    key::RECORD_ID,
    key::KIND,
    key::LABELS,
    key::DATASET,
    key::SPLIT,
    key::SOURCE_ID,
    key::ATTRS,
    key::FILENAME,
    key::PATH,
];

/// Payload keys filtered as integer ranges: one per time axis, Unix seconds, named as the axis
/// ([`DateAxis::name`]).
pub const INTEGER_KEYS: [&str; 4] = [
    DateAxis::ALL[0].name(),
    DateAxis::ALL[1].name(),
    DateAxis::ALL[2].name(),
    DateAxis::ALL[3].name(),
];

/// What a point stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    /// A whole image.
    Image,
    /// One box of an image.
    Region,
}

impl PointKind {
    /// The payload value under [`key::KIND`].
    pub const fn as_str(self) -> &'static str {
        match self {
            PointKind::Image => "image",
            PointKind::Region => "region",
        }
    }
}

/// The collection a library's points live in, for a model of `dim` dimensions.
pub fn collection_spec(dim: usize) -> CollectionSpec {
    CollectionSpec {
        dim,
        vectors: VectorName::ALL
            .iter()
            .map(|v| v.as_str().to_owned())
            .collect(),
        keyword_fields: KEYWORD_KEYS.iter().map(|s| (*s).to_owned()).collect(),
        integer_fields: INTEGER_KEYS.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Deterministic id of a record's image point (a re-upsert replaces it).
pub fn image_point_id(record_id: &str) -> PointId {
    point_id(record_id, PointKind::Image, 0)
}

/// Deterministic id of the region point of box `index` of a record.
pub fn region_point_id(record_id: &str, index: usize) -> PointId {
    point_id(record_id, PointKind::Region, index)
}

fn point_id(record_id: &str, kind: PointKind, index: usize) -> PointId {
    let digest = Sha256::digest(format!("{record_id}:{}:{index}", kind.as_str()).as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The payload every point of a record carries (`region`: the box's index for a region
/// point), so vector search can filter by itself.
pub fn payload(record: &Record, region: Option<usize>) -> Payload {
    let kind = if region.is_some() {
        PointKind::Region
    } else {
        PointKind::Image
    };
    let mut p = Payload::default();
    p.insert(key::RECORD_ID, record.id.clone())
        .insert(key::KIND, kind.as_str())
        .insert(
            key::LABELS,
            record
                .labels
                .iter()
                .map(|l| normalize_label(l))
                .collect::<Vec<_>>(),
        )
        .insert(key::DATASET, record.dataset.clone())
        .insert(key::FILENAME, record.filename.clone())
        .insert(key::PATH, record.path.clone());
    if let Some(s) = &record.split {
        p.insert(key::SPLIT, s.clone());
    }
    if let Some(s) = &record.source_id {
        p.insert(key::SOURCE_ID, s.clone());
    }
    let attrs = record.attribute_terms();
    if !attrs.is_empty() {
        p.insert(key::ATTRS, attrs);
    }
    if let Some(b) = region {
        p.insert(key::BOX, b as u64)
            .insert(key::BOX_LABEL, normalize_label(&record.boxes[b].label));
    }
    for axis in DateAxis::ALL {
        if let Some(d) = axis.get(&record.dates) {
            p.insert(axis.name(), d.timestamp());
        }
    }
    p
}

/// A record's image point: its `image` vector and, when the record has text, its `text` one.
pub fn image_point(record: &Record, image: Vec<f32>, text: Option<Vec<f32>>) -> VectorPoint {
    let mut vectors = BTreeMap::new();
    vectors.insert(VectorName::Image.as_str().to_owned(), image);
    if let Some(t) = text {
        vectors.insert(VectorName::Text.as_str().to_owned(), t);
    }
    VectorPoint {
        id: image_point_id(&record.id),
        vectors,
        payload: payload(record, None),
    }
}

/// The region point of box `index` of a record, with the crop's vector.
pub fn region_point(record: &Record, index: usize, region: Vec<f32>) -> VectorPoint {
    VectorPoint {
        id: region_point_id(&record.id, index),
        vectors: BTreeMap::from([(VectorName::Region.as_str().to_owned(), region)]),
        payload: payload(record, Some(index)),
    }
}

/// What a search hit's payload says it is: the record and, for a region point, the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HitRef<'a> {
    /// The record's id.
    pub record_id: &'a str,
    /// The box's index, for a region point.
    pub region: Option<usize>,
}

impl<'a> HitRef<'a> {
    /// Reads a hit's payload; `None` when it carries no record id (not one of ours).
    pub fn from_payload(payload: &'a Payload) -> Option<Self> {
        Some(Self {
            record_id: payload.get_str(key::RECORD_ID)?,
            region: payload
                .get_i64(key::BOX)
                .and_then(|b| usize::try_from(b).ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BoundingBox, Dates, Privacy};

    fn record() -> Record {
        Record {
            source_id: Some("in1".into()),
            id: "0123456789abcdef".into(),
            filename: "a.jpg".into(),
            path: "sub/a.jpg".into(),
            images_root: "/x".into(),
            width: 10,
            height: 10,
            bytes: 1,
            sha256: "00".into(),
            dataset: "d".into(),
            dates: Dates {
                captured: Some(chrono::DateTime::from_timestamp(1_600_000_000, 0).unwrap()),
                ..Dates::default()
            },
            labels: vec!["Licence_Plate".into()],
            supercategories: vec![],
            boxes: vec![BoundingBox {
                polygons: Vec::new(),
                label: "Licence_Plate".into(),
                supercategory: None,
                x: 1.0,
                y: 1.0,
                w: 2.0,
                h: 2.0,
                area: 4.0,
                iscrowd: false,
                annotator: None,
                attributes: BTreeMap::from([("Color".into(), serde_json::json!(" White "))]),
            }],
            captions: vec![],
            split: Some("val".into()),
            negative_labels: Vec::new(),
            attributes: Default::default(),
            metadata: std::collections::BTreeMap::new(),
            annotators: vec![],
            exports: vec![],
            privacy: Privacy::default(),
        }
    }

    #[test]
    fn point_ids_are_stable_and_distinct_per_kind_and_box() {
        let id = "0123456789abcdef";
        assert_ne!(image_point_id(id), region_point_id(id, 0));
        assert_ne!(region_point_id(id, 0), region_point_id(id, 1));
        assert_eq!(region_point_id(id, 3), region_point_id(id, 3));
        // The derivation is part of the on-disk format: libraries made before this module
        // must keep their ids.
        let digest = Sha256::digest(b"0123456789abcdef:image:0");
        assert_eq!(
            image_point_id(id),
            u64::from_le_bytes(digest[..8].try_into().unwrap())
        );
    }

    #[test]
    fn every_indexed_key_is_in_the_payload_and_hits_read_back() {
        let r = record();
        let spec = collection_spec(8);
        assert_eq!(spec.vectors, ["image", "region", "text"]);
        let image = payload(&r, None);
        let region = payload(&r, Some(0));
        for p in [&image, &region] {
            for k in KEYWORD_KEYS {
                assert!(p.get(k).is_some(), "{k}");
            }
            assert_eq!(p.get_i64("captured"), Some(1_600_000_000));
            assert_eq!(p.get("labels"), Some(&serde_json::json!(["licence_plate"])));
        }
        assert_eq!(image.get_str(key::KIND), Some("image"));
        assert_eq!(region.get_str(key::KIND), Some("region"));
        assert_eq!(region.get_str(key::BOX_LABEL), Some("licence_plate"));
        assert_eq!(
            HitRef::from_payload(&region),
            Some(HitRef {
                record_id: &r.id,
                region: Some(0)
            })
        );
        assert_eq!(HitRef::from_payload(&image).unwrap().region, None);
        assert_eq!(HitRef::from_payload(&Payload::default()), None);
        let p = image_point(&r, vec![1.0; 8], None);
        assert_eq!(p.vectors.keys().collect::<Vec<_>>(), ["image"]);
        let p = region_point(&r, 0, vec![1.0; 8]);
        assert_eq!(p.id, region_point_id(&r.id, 0));
        assert_eq!(p.vectors.keys().collect::<Vec<_>>(), ["region"]);
    }
}
