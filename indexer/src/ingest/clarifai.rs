//! Clarifai dataset exports in the form the Clarifai Python SDK downloads them
//! (`InputAnnotationDownloader`), unpacked: `{split}/inputs/{input_id}.png` and
//! `{split}/annotations/{input_id}.json`, the JSON being a list of the input's
//! `{"metadata": ...}`, `data.regions` and `data.concepts` as protobuf's `MessageToDict` writes
//! them (camelCase, zero values left out); the metadata item joins the record's metadata.
//!
//! A concept with a value above 0 is an image-level label; a region's `regionInfo.boundingBox`
//! (`topRow`, `leftCol`, `bottomRow`, `rightCol`, fractions of the image's displayed size, read
//! from its header), `polygon` points or segmentation `mask` (the extent of what its PNG paints,
//! shape `mask`) become a box labelled with its positive concept. A
//! concept with value 0 (or none: `MessageToDict` leaves zeros out) is a negative label: an
//! image-level one is kept as the record's `negative_labels` ("not X"), never indexed as
//! present; a region's ("this region is not X") says nothing about the image and is named in a
//! problem. The export archive itself (`mimetype` + `InputBatch` entries) is read by
//! [`super::clarifai_archive`], which hands each input to [`read_annotations`].

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{ImageEntry, Problem, Progress, RawBox, bbox_of_points};
use crate::IngestError;
use crate::record::UncertainAnnotation;

/// Largest annotation file read.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The split folders of an unpacked SDK export: `root` itself when it has `inputs/`, else each
/// sub-folder that has one.
pub fn split_dirs(root: &Path) -> Vec<PathBuf> {
    if root.join("inputs").is_dir() {
        return vec![root.to_path_buf()];
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("inputs").is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Reads an unpacked SDK export rooted at `root` (file names are relative to it).
///
/// # Errors
/// [`IngestError::Unreadable`] when `root` has no `inputs/` folder, directly or in a split.
pub fn read_dir(
    root: &Path,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, IngestError> {
    let splits = split_dirs(root);
    if splits.is_empty() {
        return Err(IngestError::Unreadable {
            file: root.display().to_string(),
            reason: "no inputs/ folder (Clarifai SDK export: {split}/inputs, {split}/annotations)"
                .into(),
        });
    }
    let mut entries = Vec::new();
    for dir in splits {
        let split = (dir != root)
            .then(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .flatten();
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir.join("inputs"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        inputs.sort();
        for image in inputs.into_iter().take(super::voc::MAX_FILES) {
            let Some(id) = image.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            let rel = image
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_else(|_| id.clone());
            let ann = dir.join("annotations").join(format!("{id}.json"));
            let shown = ann.display().to_string();
            let mut entry = ImageEntry::new(rel, &shown);
            entry.source_id = Some(id.clone());
            entry.split.clone_from(&split);
            if ann.is_file() {
                let size = models::preprocess::probe_file(
                    &image,
                    &models::preprocess::DecodeLimits::default(),
                )
                .ok()
                .map(|h| (h.width, h.height));
                let bytes = match std::fs::metadata(&ann) {
                    Ok(m) if m.len() > MAX_FILE_BYTES => Err(format!(
                        "{} bytes, more than the limit of {MAX_FILE_BYTES}",
                        m.len()
                    )),
                    _ => std::fs::read(&ann).map_err(|e| e.to_string()),
                };
                match bytes.and_then(|b| {
                    serde_json::from_slice::<Value>(&b).map_err(|e| format!("malformed JSON: {e}"))
                }) {
                    Ok(doc) => read_annotations(&doc, size, &shown, &mut entry, problems),
                    Err(reason) => {
                        // The image's annotations are unknown: it is not ingested.
                        problems.push(Problem {
                            file: shown,
                            item: "file".into(),
                            reason: format!("{reason}; the input is skipped"),
                        });
                        continue;
                    }
                }
            }
            progress.entry(&entry);
            entries.push(entry);
        }
    }
    Ok(entries)
}

fn concepts(v: Option<&Value>) -> Vec<(String, bool)> {
    v.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|c| {
                    let name = ["name", "id"]
                        .iter()
                        .find_map(|k| c.get(*k).and_then(Value::as_str).and_then(super::text))?;
                    let value = c.get("value").and_then(Value::as_f64).unwrap_or(0.0);
                    Some((name, value > 0.0))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a region's `mask` paints: `[top, left, bottom, right]` as fractions of the mask's
/// height and width, from the image in `mask.image.base64` (base64 text in the SDK's JSON, bytes
/// in the archive, which [`super::clarifai_archive`] hands over as base64 too), decoded within
/// the default limits. A pixel is painted when it is not black (a transparent one decodes to
/// its colour, which masks leave black). `None` when there is no such image, it cannot be
/// decoded, or it paints nothing.
pub(super) fn mask_extent(mask: &Value) -> Option<[f64; 4]> {
    use base64::Engine as _;
    let text = field(mask, "image", "image")?.get("base64")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let img =
        models::preprocess::decode(&bytes, &models::preprocess::DecodeLimits::default()).ok()?;
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if p.0 != [0, 0, 0] {
            (x0, y0) = (x0.min(x), y0.min(y));
            (x1, y1) = (x1.max(x + 1), y1.max(y + 1));
        }
    }
    if x0 == u32::MAX {
        return None;
    }
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    Some([
        f64::from(y0) / h,
        f64::from(x0) / w,
        f64::from(y1) / h,
        f64::from(x1) / w,
    ])
}

fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

/// Reads one annotation document: a list of concepts, regions and `{"metadata": {...}}` items
/// (current clarifai-python writes `[{"metadata": ...}] + regions + concepts`), or an object
/// holding `concepts`, `regions` and `metadata`. Metadata joins the entry's.
pub fn read_annotations(
    doc: &Value,
    size: Option<(u32, u32)>,
    shown: &str,
    entry: &mut ImageEntry,
    problems: &mut Vec<Problem>,
) {
    let mut merge = |m: &serde_json::Map<String, Value>| {
        for (k, v) in m {
            entry.metadata.entry(k.clone()).or_insert_with(|| v.clone());
        }
    };
    let mut items: Vec<(String, &Value)> = Vec::new();
    match doc {
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                // The input's metadata: an item with `metadata` that is neither a region nor
                // a concept (a concept's own `metadata` is the concept's, not the image's).
                match v.get("metadata") {
                    Some(Value::Object(m))
                        if ["regionInfo", "region_info", "name", "id"]
                            .iter()
                            .all(|k| v.get(*k).is_none()) =>
                    {
                        merge(m);
                    }
                    _ => items.push((format!("[{i}]"), v)),
                }
            }
        }
        Value::Object(o) => {
            if let Some(Value::Object(m)) = o.get("metadata") {
                merge(m);
            }
            for key in ["concepts", "regions"] {
                if let Some(Value::Array(list)) = o.get(key) {
                    items.extend(
                        list.iter()
                            .enumerate()
                            .map(|(i, v)| (format!("{key}[{i}]"), v)),
                    );
                }
            }
        }
        _ => {}
    }
    // Image-level concepts with value 0 say the image holds no X; a region's say that region
    // is not X, which says nothing about the image.
    let mut negative: Vec<String> = Vec::new();
    let mut region_negative: Vec<String> = Vec::new();
    for (at, item) in items {
        let at = format!("{at} {}", entry.file_name);
        let Some(info) = field(item, "regionInfo", "region_info") else {
            for (name, present) in concepts(Some(&Value::Array(vec![item.clone()]))) {
                if present {
                    entry.add_label(&name);
                } else if !negative.contains(&name) {
                    negative.push(name);
                }
            }
            continue;
        };
        let region_concepts = concepts(field(item, "data", "data").and_then(|d| d.get("concepts")));
        let positive: Vec<String> = region_concepts
            .iter()
            .filter(|c| c.1)
            .map(|c| c.0.clone())
            .collect();
        for (n, present) in &region_concepts {
            if !present && !region_negative.contains(n) {
                region_negative.push(n.clone());
            }
        }
        // A region polygon's points, in pixels (rows and columns are fractions of the image).
        let outline: Option<Vec<(f64, f64)>> = size.and_then(|(w, h)| {
            let (w, h) = (f64::from(w), f64::from(h));
            field(info, "polygon", "polygon")?
                .get("points")?
                .as_array()?
                .iter()
                .map(|p| Some((p.get("col")?.as_f64()? * w, p.get("row")?.as_f64()? * h)))
                .collect()
        });
        // A segmentation mask (a PNG carried in `mask.image.base64`): the extent of what it
        // paints, as fractions of its own size, which may differ from the image's.
        let mask = field(info, "mask", "mask");
        let rect = size.and_then(|(w, h)| {
            let (w, h) = (f64::from(w), f64::from(h));
            if let Some(b) = field(info, "boundingBox", "bounding_box") {
                let g = |c: &str, s: &str| field(b, c, s).and_then(Value::as_f64).unwrap_or(0.0);
                let (top, left) = (g("topRow", "top_row"), g("leftCol", "left_col"));
                let (bottom, right) = (g("bottomRow", "bottom_row"), g("rightCol", "right_col"));
                bbox_of_points(&[(left * w, top * h), (right * w, bottom * h)])
            } else if outline.is_some() {
                bbox_of_points(outline.as_deref()?)
            } else {
                let [top, left, bottom, right] = mask_extent(mask?)?;
                bbox_of_points(&[(left * w, top * h), (right * w, bottom * h)])
            }
        });
        if positive.is_empty() && !region_concepts.is_empty() {
            continue; // Only negative concepts: the region is "not X", reported below.
        }
        match (positive.as_slice(), rect) {
            ([label], Some(rect)) => {
                let mut b = RawBox::new(label.clone(), rect, at);
                b.polygons = outline
                    .as_deref()
                    .and_then(super::polygon::ring)
                    .into_iter()
                    .collect();
                if let Some(id) = item.get("id").and_then(Value::as_str) {
                    b.attributes.insert("source_id", json!(id));
                }
                if mask.is_some() && b.polygons.is_empty() {
                    b.attributes.insert("shape", json!("mask"));
                }
                entry.boxes.push(b);
            }
            (labels, rect) => {
                let why = if labels.is_empty() {
                    "region without a concept"
                } else if rect.is_none() && mask.is_some() {
                    "region whose mask cannot be decoded or paints nothing"
                } else if rect.is_none() {
                    "region whose box cannot be read or placed"
                } else {
                    "region with several concepts"
                };
                super::skip_box(
                    problems,
                    shown,
                    &mut entry.uncertain,
                    UncertainAnnotation {
                        item: at,
                        labels: labels.to_vec(),
                        region: rect,
                        reason: why.into(),
                    },
                );
            }
        }
    }
    for n in negative {
        if !entry.negative_labels.contains(&n) {
            entry.negative_labels.push(n);
        }
    }
    if !region_negative.is_empty() {
        problems.push(Problem {
            file: shown.to_owned(),
            item: format!("region concepts {}", entry.file_name),
            reason: format!(
                "negative region concept(s) {} (value 0): a region said not to be that; not \
                 kept (a record's negative labels are the image's)",
                region_negative.join(", ")
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn valid() -> Value {
        json!([
            {"id": "r1", "regionInfo": {"boundingBox": {"topRow": 0.1, "leftCol": 0.25, "bottomRow": 0.5, "rightCol": 0.75}},
             "data": {"concepts": [{"id": "car", "name": "car", "value": 1.0}]}},
            {"id": "r2", "regionInfo": {"polygon": {"points": [{"row": 0.2, "col": 0.1}, {"row": 0.6, "col": 0.3}, {"row": 0.2, "col": 0.3}]}},
             "data": {"concepts": [{"id": "face", "name": "face", "value": 1}]}},
            {"id": "r3", "regionInfo": {"boundingBox": {"topRow": 0.0, "leftCol": 0.0, "bottomRow": 0.1, "rightCol": 0.1}},
             "data": {"concepts": [{"id": "dog", "name": "dog"}]}},
            {"id": "r4", "regionInfo": {"boundingBox": {"topRow": 0.0, "leftCol": 0.0, "bottomRow": 0.1, "rightCol": 0.1}}}
        ])
    }

    #[test]
    fn regions_become_boxes_and_zero_concepts_are_never_labels() {
        let mut entry = ImageEntry::new("train/inputs/x.png", "a.json");
        let mut problems = Vec::new();
        read_annotations(
            &valid(),
            Some((200, 100)),
            "a.json",
            &mut entry,
            &mut problems,
        );
        let got: Vec<_> = entry
            .boxes
            .iter()
            .map(|b| (b.label.as_str(), [b.x, b.y, b.w, b.h]))
            .collect();
        assert_eq!(
            got,
            [
                ("car", [50.0, 10.0, 100.0, 40.0]),
                ("face", [20.0, 20.0, 40.0, 40.0])
            ]
        );
        // The polygon region keeps its outline in pixels (col x 200, row x 100).
        assert!(entry.boxes[0].polygons.is_empty());
        assert_eq!(
            entry.boxes[1].polygons,
            [vec![[20.0, 20.0], [60.0, 60.0], [60.0, 20.0]]]
        );
        assert_eq!(entry.uncertain.len(), 1);
        assert!(entry.labels.is_empty());
        assert!(
            problems
                .iter()
                .any(|p| p.reason.contains("negative region concept(s) dog")),
            "{problems:?}"
        );
        assert!(
            entry.negative_labels.is_empty(),
            "a region's 'not dog' is not the image's"
        );

        let mut entry = ImageEntry::new("x.png", "a.json");
        let concepts =
            json!([{"id": "cat", "name": "cat", "value": 1}, {"id": "dog", "name": "dog"}]);
        read_annotations(&concepts, None, "a.json", &mut entry, &mut problems);
        assert_eq!(entry.labels, ["cat"]);
        assert_eq!(entry.negative_labels, ["dog"]);
    }

    /// clarifai-python's current form: `[{"metadata": {...}}] + regions + concepts`. The
    /// metadata item joins the input's metadata (not a concept, not dropped); a concept's own
    /// `metadata` stays the concept's.
    #[test]
    fn a_leading_metadata_item_is_the_inputs_metadata() {
        let mut doc = json!([
            {"metadata": {"camera": "pier-2", "filename": "boat.png", "site": {"n": 3}}},
            {"id": "cat", "name": "cat", "value": 1, "metadata": {"source": "concept's own"}},
            {"id": "dog", "name": "dog"}
        ]);
        doc.as_array_mut()
            .unwrap()
            .extend(valid().as_array().unwrap().iter().cloned());
        let mut entry = ImageEntry::new("x.png", "a.json");
        let mut problems = Vec::new();
        read_annotations(&doc, Some((200, 100)), "a.json", &mut entry, &mut problems);
        assert_eq!(
            entry.metadata.keys().collect::<Vec<_>>(),
            ["camera", "filename", "site"]
        );
        assert_eq!(entry.metadata["camera"], json!("pier-2"));
        assert_eq!(entry.metadata["site"], json!({"n": 3}));
        assert_eq!(entry.labels, ["cat"]);
        assert_eq!(entry.negative_labels, ["dog"]);
        assert_eq!(entry.boxes.len(), 2, "the regions after it are read");
        assert!(
            !problems.iter().any(|p| p.item.starts_with("[0]")),
            "{problems:?}"
        );
    }

    /// A PNG mask of `w` x `h`, base64 as the SDK's JSON carries it, painting `painted`
    /// (x0, y0, x1, y1, ends excluded) in `colour` on black (or transparent when `alpha`).
    fn mask_png(w: u32, h: u32, painted: Option<[u32; 4]>, alpha: bool) -> String {
        use base64::Engine as _;
        let img = image::RgbaImage::from_fn(w, h, |x, y| {
            let inside = painted
                .is_some_and(|[x0, y0, x1, y1]| (x0..x1).contains(&x) && (y0..y1).contains(&y));
            match (inside, alpha) {
                (true, _) => image::Rgba([255, 255, 255, 255]),
                (false, true) => image::Rgba([0, 0, 0, 0]),
                (false, false) => image::Rgba([0, 0, 0, 255]),
            }
        });
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        base64::engine::general_purpose::STANDARD.encode(png.into_inner())
    }

    /// A segmentation mask (the SDK's JSON form: base64 text) becomes the box around what it
    /// paints, scaled from the mask's size to the image's, with shape `mask`; a mask that paints
    /// nothing, or is not an image, stays an uncertain region of the whole image.
    #[test]
    fn masks_become_the_box_around_what_they_paint() {
        let region = |id: &str, label: &str, base64: &str| {
            json!({"id": id, "regionInfo": {"mask": {"image": {"base64": base64}}},
                   "data": {"concepts": [{"id": label, "name": label, "value": 1.0}]}})
        };
        let doc = json!([
            region("m1", "face", &mask_png(10, 10, Some([2, 1, 5, 4]), false)),
            region("m2", "car", &mask_png(8, 4, Some([0, 2, 8, 4]), true)),
            region("m3", "plate", &mask_png(10, 10, None, false)),
            region("m4", "plate", "bm90IGFuIGltYWdl"),
        ]);
        let mut entry = ImageEntry::new("a.png", "a.json");
        let mut problems = Vec::new();
        read_annotations(&doc, Some((200, 100)), "a.json", &mut entry, &mut problems);
        let got: Vec<_> = entry
            .boxes
            .iter()
            .map(|b| {
                (
                    b.label.as_str(),
                    [b.x, b.y, b.w, b.h],
                    b.attributes["shape"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("face", [40.0, 10.0, 60.0, 30.0], json!("mask")),
                ("car", [0.0, 50.0, 200.0, 50.0], json!("mask")),
            ]
        );
        assert_eq!(entry.uncertain.len(), 2);
        for u in &entry.uncertain {
            assert_eq!(
                (u.labels.as_slice(), u.region),
                (&["plate".to_owned()][..], None)
            );
            assert!(
                u.reason
                    .contains("mask cannot be decoded or paints nothing")
            );
        }
    }

    #[test]
    fn an_unpacked_sdk_export_reads_splits_inputs_and_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("train/inputs")).unwrap();
        std::fs::create_dir_all(d.join("train/annotations")).unwrap();
        image::RgbImage::new(200, 100)
            .save(d.join("train/inputs/in1.png"))
            .unwrap();
        image::RgbImage::new(20, 10)
            .save(d.join("train/inputs/in2.png"))
            .unwrap();
        std::fs::write(
            d.join("train/annotations/in1.json"),
            serde_json::to_vec(&valid()).unwrap(),
        )
        .unwrap();
        let mut problems = Vec::new();
        let entries = read_dir(d, &mut problems, &Progress::default()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].file_name, "train/inputs/in1.png");
        assert_eq!(entries[0].split.as_deref(), Some("train"));
        assert_eq!(entries[0].source_id.as_deref(), Some("in1"));
        assert_eq!(entries[0].boxes.len(), 2);
        assert!(entries[1].boxes.is_empty());
        assert!(
            read_dir(
                &d.join("train/annotations"),
                &mut problems,
                &Progress::default()
            )
            .is_err()
        );
    }

    proptest! {
        #![proptest_config(crate::ingest::proptest_config())]

        #[test]
        fn arbitrary_json_never_loses_a_region(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(doc) = serde_json::from_slice::<Value>(&bytes) {
                let mut entry = ImageEntry::new("x.png", "a.json");
                read_annotations(&doc, Some((64, 48)), "a.json", &mut entry, &mut Vec::new());
            }
        }

        #[test]
        fn mutated_annotations_are_read_or_reported(edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..8, "[\\[\\]{}:,\"a-z0-9 .]{0,5}"), 1..4)) {
            let mut text = serde_json::to_string(&valid()).unwrap();
            for (at, len, insert) in &edits {
                let i = at.index(text.len() + 1);
                let j = (i + len).min(text.len());
                text.replace_range(i..j, insert);
            }
            if let Ok(doc) = serde_json::from_str::<Value>(&text) {
                let mut entry = ImageEntry::new("x.png", "a.json");
                let mut problems = Vec::new();
                read_annotations(&doc, Some((64, 48)), "a.json", &mut entry, &mut problems);
                for u in &entry.uncertain {
                    prop_assert!(problems.iter().any(|p| p.item == u.item));
                }
            }
        }
    }
}
