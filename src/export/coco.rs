//! The COCO writer: `annotations/instances.json` and `annotations/captions.json`, written so
//! that the COCO reader of ingest reads the same records back.

use std::collections::{BTreeMap, HashMap};
use std::io;

use chrono::{DateTime, Utc};
use indexer::record::Record;
use serde::Serialize;

use super::*;

/// Image fields the COCO writer sets itself; metadata keys with these names are not copied
/// (the reader keeps everything else as metadata, so the rest round-trips).
pub(super) const COCO_IMAGE_FIELDS: [&str; 9] = [
    "id",
    "file_name",
    "width",
    "height",
    "date_captured",
    "split",
    "source_id",
    "attributes",
    "negative_labels",
];

#[derive(Serialize)]
pub(super) struct CocoFile<'a, A> {
    info: &'a CocoInfo,
    images: &'a [CocoImage<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    categories: Option<Vec<CocoCategory<'a>>>,
    annotations: Vec<A>,
}

#[derive(Serialize)]
pub(super) struct CocoInfo {
    description: String,
    date_created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    contributor: Option<String>,
}

#[derive(Serialize)]
pub(super) struct CocoImage<'a> {
    id: usize,
    file_name: &'a str,
    width: u32,
    height: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    date_captured: Option<String>,
    /// Not COCO's own field: the split, which the COCO reader of ingest reads back.
    #[serde(skip_serializing_if = "Option::is_none")]
    split: Option<&'a str>,
    /// Not COCO's own field: the annotation tool's image id, read back likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    source_id: Option<&'a str>,
    /// Not COCO's own field: the image's own attributes, read back likewise.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    attributes: &'a BTreeMap<String, serde_json::Value>,
    /// Not COCO's own field: the labels the image is known not to hold ("not X"), read back
    /// likewise.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    negative_labels: &'a [String],
    #[serde(flatten)]
    metadata: BTreeMap<&'a str, &'a serde_json::Value>,
}

#[derive(Serialize)]
pub(super) struct CocoCategory<'a> {
    id: usize,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    supercategory: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct CocoBox<'a> {
    id: usize,
    image_id: usize,
    category_id: usize,
    bbox: [f32; 4],
    area: f32,
    iscrowd: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotator: Option<&'a str>,
    /// The box's attributes, as CVAT's COCO export writes them (the reader reads them back).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    attributes: &'a BTreeMap<String, serde_json::Value>,
    /// The box's outlines as COCO polygons (flat `[x1, y1, x2, y2, ...]` each); absent for a
    /// rectangle.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    segmentation: Vec<Vec<f32>>,
}

#[derive(Serialize)]
pub(super) struct CocoCaption<'a> {
    id: usize,
    image_id: usize,
    caption: &'a str,
}

/// `annotations/instances.json` and `annotations/captions.json`. Image ids are 1-based record
/// positions; category ids are 1-based positions in the sorted box labels.
pub(super) fn coco_files(
    records: &[Record],
    created: DateTime<Utc>,
) -> Result<Vec<(String, Vec<u8>)>, ExportError> {
    // The reader takes `info.date_created` as every image's annotated date, so only a date all
    // records share can be written without changing theirs.
    let annotated = match records.first().and_then(|r| r.dates.annotated) {
        Some(d) if records.iter().all(|r| r.dates.annotated == Some(d)) => d,
        _ => created,
    };
    // Likewise the contributor becomes every image's annotator.
    let contributor = match records.first() {
        Some(first)
            if !first.annotators.is_empty()
                && records.iter().all(|r| r.annotators == first.annotators) =>
        {
            Some(first.annotators.join(", "))
        }
        _ => None,
    };
    let info = CocoInfo {
        description: format!("imagelens export of {} images", records.len()),
        date_created: rfc3339(annotated),
        contributor,
    };

    let images: Vec<CocoImage<'_>> = records
        .iter()
        .enumerate()
        .map(|(i, r)| CocoImage {
            id: i + 1,
            file_name: &r.path,
            width: r.width,
            height: r.height,
            date_captured: r.dates.captured.map(rfc3339),
            split: r.split.as_deref(),
            // A record ingested before the field held it in metadata.
            source_id: r.source_id.as_deref().or_else(|| {
                r.metadata
                    .get("source_id")
                    .and_then(serde_json::Value::as_str)
            }),
            attributes: &r.attributes,
            negative_labels: &r.negative_labels,
            metadata: r
                .metadata
                .iter()
                .filter(|(k, v)| !COCO_IMAGE_FIELDS.contains(&k.as_str()) && !v.is_null())
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
        })
        .collect();

    let labels = box_labels(records);
    let category_id: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (*l, i + 1))
        .collect();
    let categories: Vec<CocoCategory<'_>> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| CocoCategory {
            id: i + 1,
            name: label,
            // A category has one supercategory; the first record that names one decides.
            supercategory: records
                .iter()
                .flat_map(|r| &r.boxes)
                .filter(|b| b.label == *label)
                .find_map(|b| b.supercategory.as_deref()),
        })
        .collect();

    let mut boxes = Vec::new();
    let mut captions = Vec::new();
    for (i, r) in records.iter().enumerate() {
        for b in &r.boxes {
            boxes.push(CocoBox {
                id: boxes.len() + 1,
                image_id: i + 1,
                category_id: category_id[b.label.as_str()],
                bbox: [b.x, b.y, b.w, b.h],
                area: b.area,
                iscrowd: u8::from(b.iscrowd),
                annotator: b.annotator.as_deref(),
                attributes: &b.attributes,
                segmentation: b
                    .polygons
                    .iter()
                    .map(|ring| ring.iter().flatten().copied().collect())
                    .collect(),
            });
        }
        for c in &r.captions {
            captions.push(CocoCaption {
                id: captions.len() + 1,
                image_id: i + 1,
                caption: c,
            });
        }
    }

    let instances = CocoFile {
        info: &info,
        images: &images,
        categories: Some(categories),
        annotations: boxes,
    };
    let captions = CocoFile {
        info: &info,
        images: &images,
        categories: None,
        annotations: captions,
    };
    Ok(vec![
        (
            "annotations/instances.json".to_owned(),
            serde_json::to_vec(&instances).map_err(io::Error::from)?,
        ),
        (
            "annotations/captions.json".to_owned(),
            serde_json::to_vec(&captions).map_err(io::Error::from)?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use indexer::ingest::{build_record, coco, file_facts, resolve_image_path};

    use super::*;
    use crate::export::tests::*;

    #[test]
    fn coco_export_round_trips_through_the_coco_reader() {
        let src = tempfile::tempdir().unwrap();
        let records = sample(src.path());
        let bytes = export(&records, DatasetFormat::Coco, ArchiveFormat::Tar);

        let dst = tempfile::tempdir().unwrap();
        tar::Archive::new(Cursor::new(bytes))
            .unpack(dst.path())
            .unwrap();
        let ann = dst.path().join("annotations");
        let (entries, problems) = coco::read_exports(
            &[ann.join("instances.json"), ann.join("captions.json")],
            &indexer::ingest::Progress::default(),
        )
        .unwrap();
        assert_eq!(problems, vec![]);
        assert_eq!(entries.len(), records.len());

        let images = dst.path().join("images");
        let mut problems = Vec::new();
        for entry in entries {
            let file = resolve_image_path(&images, &entry.file_name).unwrap();
            let facts = file_facts(&file, &Default::default()).unwrap();
            let back = build_record(
                entry,
                &facts,
                &images,
                "back",
                Utc::now(),
                indexer::ingest::MAX_BOXES_PER_IMAGE,
                &mut problems,
            )
            .unwrap();
            let orig = records.iter().find(|r| r.path == back.path).unwrap();
            assert_eq!(back.sha256, orig.sha256, "{}", orig.path);
            assert_eq!((back.width, back.height), (orig.width, orig.height));
            assert_eq!(back.labels, orig.labels, "{}", orig.path);
            assert_eq!(back.supercategories, orig.supercategories, "{}", orig.path);
            assert_eq!(back.boxes, orig.boxes, "{}", orig.path);
            assert_eq!(back.captions, orig.captions, "{}", orig.path);
            assert_eq!(back.dates.captured, orig.dates.captured, "{}", orig.path);
            assert_eq!(back.dates.annotated, orig.dates.annotated, "{}", orig.path);
            assert_eq!(back.metadata, orig.metadata, "{}", orig.path);
        }
        assert_eq!(problems, vec![]);
    }

    #[test]
    fn coco_categories_are_sorted_by_name_with_their_supercategory() {
        let src = tempfile::tempdir().unwrap();
        let records = sample(src.path());
        let entries = tar_entries(&export(&records, DatasetFormat::Coco, ArchiveFormat::Tar));
        let instances: serde_json::Value =
            serde_json::from_slice(&entries["annotations/instances.json"]).unwrap();
        assert_eq!(
            instances["categories"],
            serde_json::json!([
                {"id": 1, "name": "cat", "supercategory": "animal"},
                {"id": 2, "name": "dog"},
            ])
        );
        assert_eq!(instances["info"]["date_created"], "2020-01-02T03:04:05Z");
        assert_eq!(
            instances["images"][0]["date_captured"],
            "2021-03-04T05:06:07.250Z"
        );
    }
}
