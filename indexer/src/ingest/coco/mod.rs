//! COCO exports (`instances_*.json`, `captions_*.json`, or one file with both) read into
//! [`ImageEntry`]s.
//!
//! The reader is lenient per item and strict per file: a file that is not JSON, or not a COCO
//! object, is an [`IngestError::Unreadable`]; a bad image entry, annotation or category is
//! reported as a [`Problem`] and skipped while everything else is kept. Several files are merged
//! by image `file_name`, so instances and captions of one release combine into one entry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ImageEntry, Problem, Progress, RawBox, attributes_of};
use crate::IngestError;
use crate::dates::parse_date;
use crate::record::UncertainAnnotation;

mod stream;

/// Image fields that have a place in the record; everything else goes to metadata.
const KNOWN_IMAGE_FIELDS: [&str; 5] = ["id", "file_name", "width", "height", "date_captured"];

/// Reads and merges COCO export files.
///
/// # Errors
/// [`IngestError::Unreadable`] when any file cannot be read or is not a COCO JSON object.
pub fn read_exports(
    files: &[impl AsRef<Path>],
    progress: &Progress,
) -> Result<(Vec<ImageEntry>, Vec<Problem>), IngestError> {
    let mut problems = Vec::new();
    let mut merged: Vec<ImageEntry> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for file in files {
        let file = file.as_ref();
        let entries = read_one(file, &mut problems, progress)?;
        for entry in entries {
            match by_name.get(&entry.file_name) {
                Some(&i) => merged[i].merge(entry),
                None => {
                    by_name.insert(entry.file_name.clone(), merged.len());
                    progress.images(1);
                    merged.push(entry);
                }
            }
        }
    }
    Ok((merged, problems))
}

/// Reads one file as it streams in (see [`stream`]): neither its bytes nor a JSON tree of it
/// are held whole. Annotations are counted in `progress` as they are read (images by the
/// caller, once per file name).
fn read_one(
    file: &Path,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, IngestError> {
    use serde::de::DeserializeSeed;
    use std::io::BufRead;
    let shown = file.display().to_string();
    let f = std::fs::File::open(file).map_err(|e| unreadable(&shown, e.to_string()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
    let head = reader
        .fill_buf()
        .map_err(|e| unreadable(&shown, e.to_string()))?;
    if head.starts_with(BOM) {
        reader.consume(BOM.len());
    }
    // What `serde_json::from_reader` does, with the counting seed.
    let mut de = serde_json::Deserializer::from_reader(reader);
    let top = stream::TopSeed(progress)
        .deserialize(&mut de)
        .and_then(|top| de.end().map(|()| top));
    let top = top.map_err(|e| {
        unreadable(
            &shown,
            if e.is_io() {
                e.to_string()
            } else {
                format!("malformed JSON: {e}")
            },
        )
    })?;
    entries_of(top, &shown, problems)
}

fn unreadable(shown: &str, reason: String) -> IngestError {
    IngestError::Unreadable {
        file: shown.to_owned(),
        reason,
    }
}

/// A UTF-8 byte order mark, skipped at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An integer id: a JSON integer, or a float that is exactly integral (`1.0`, as pandas and
/// many JSON writers emit). Strings and fractions are not ids.
fn as_id(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// Parses the text of one COCO export (`shown` names it in problems and errors). A UTF-8 byte
/// order mark at the start is skipped.
///
/// # Errors
/// [`IngestError::Unreadable`] when the bytes are not JSON or not a COCO object.
pub fn parse_export(
    bytes: &[u8],
    shown: &str,
    problems: &mut Vec<Problem>,
) -> Result<Vec<ImageEntry>, IngestError> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top =
        serde::de::DeserializeSeed::deserialize(stream::TopSeed(&Progress::default()), &mut de)
            .and_then(|top| de.end().map(|()| top))
            .map_err(|e| unreadable(shown, format!("malformed JSON: {e}")))?;
    entries_of(top, shown, problems)
}

/// The image entries of a parsed file.
fn entries_of(
    top: stream::Top,
    shown: &str,
    problems: &mut Vec<Problem>,
) -> Result<Vec<ImageEntry>, IngestError> {
    let stream::Top::Object(root) = top else {
        return Err(unreadable(
            shown,
            "not a COCO export: top level is not an object".into(),
        ));
    };
    let Some(images) = root.images.as_deref() else {
        return Err(unreadable(
            shown,
            "not a COCO export: no \"images\" array".into(),
        ));
    };
    let problem = |item: String, reason: String| Problem {
        file: shown.to_owned(),
        item,
        reason,
    };

    let info = root.info.as_ref().and_then(Value::as_object);
    let annotated: Option<DateTime<Utc>> = info
        .and_then(|i| i.get("date_created"))
        .and_then(Value::as_str)
        .and_then(|s| parse_date(s).ok());
    let contributor = info
        .and_then(|i| i.get("contributor"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned);

    // Categories: id -> (name, supercategory); a later definition of an id wins (as in
    // pycocotools), and every other name an id was given is remembered.
    let mut categories: HashMap<i64, (String, Option<String>)> = HashMap::new();
    let mut other_names: HashMap<i64, Vec<String>> = HashMap::new();
    for (i, cat) in root.categories.iter().enumerate() {
        let id = cat.get("id").and_then(as_id);
        let name = cat.get("name").and_then(Value::as_str).map(str::trim);
        match (id, name) {
            (Some(id), Some(name)) if !name.is_empty() => {
                let sup = cat
                    .get("supercategory")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned);
                if let Some((before, _)) = categories.get(&id)
                    && before != name
                {
                    problems.push(problem(
                        format!("categories[{i}]"),
                        format!(
                            "category id {id} is defined again, as {name:?} after {before:?}; \
                             its boxes are labelled {name:?} and redacted wherever either name \
                             is a sensitive label"
                        ),
                    ));
                    let others = other_names.entry(id).or_default();
                    if !others.contains(before) {
                        others.push(before.clone());
                    }
                }
                categories.insert(id, (name.to_owned(), sup));
            }
            _ => problems.push(problem(
                format!("categories[{i}]"),
                "category without an integer id and a name".into(),
            )),
        }
    }

    let mut entries: Vec<ImageEntry> = Vec::new();
    let mut by_id: HashMap<i64, usize> = HashMap::new();
    let mut names: HashSet<String> = HashSet::new();
    for (i, img) in images.iter().enumerate() {
        let id = img.get("id").and_then(as_id);
        let name = img
            .get("file_name")
            .and_then(Value::as_str)
            .map(|s| s.trim().replace('\\', "/"));
        let (Some(id), Some(name)) = (id, name.filter(|n| !n.is_empty())) else {
            problems.push(problem(
                format!("images[{i}]"),
                "image entry without an integer id and a file_name".into(),
            ));
            continue;
        };
        if by_id.contains_key(&id) || names.contains(&name) {
            problems.push(problem(
                format!("images[{i}] {name}"),
                format!("duplicate image entry (id {id}); the first one is kept"),
            ));
            continue;
        }
        let captured = match img.get("date_captured") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => match parse_date(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(problem(format!("images[{i}] {name}"), e.to_string()));
                    None
                }
            },
            Some(other) => {
                problems.push(problem(
                    format!("images[{i}] {name}"),
                    format!("date_captured is not a string: {other}"),
                ));
                None
            }
        };
        let mut metadata: BTreeMap<String, Value> = img
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, v)| !KNOWN_IMAGE_FIELDS.contains(&k.as_str()) && !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        // Not COCO's own field: imagelens' COCO export writes it, other tools do the same.
        let split = match metadata.remove("split") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
            Some(other) => {
                metadata.insert("split".into(), other);
                None
            }
            None => None,
        };
        // The annotation tool's image id, as imagelens' COCO export writes it.
        let source_id = match metadata.remove("source_id") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
            Some(other) => {
                metadata.insert("source_id".into(), other);
                None
            }
            None => None,
        };
        // Image attributes, as imagelens' COCO export writes them.
        let attributes = match metadata.remove("attributes") {
            Some(Value::Object(o)) => attributes_of(&o),
            Some(other) => {
                metadata.insert("attributes".into(), other);
                BTreeMap::new()
            }
            None => BTreeMap::new(),
        };
        // The labels the image is known not to hold, as imagelens' COCO export writes them: a
        // list of names; anything else stays metadata.
        let negative_labels = match metadata.remove("negative_labels") {
            Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
                let mut labels: Vec<String> = Vec::new();
                for n in list.iter().filter_map(|v| v.as_str().and_then(super::text)) {
                    if !labels.contains(&n) {
                        labels.push(n);
                    }
                }
                labels
            }
            Some(other) => {
                metadata.insert("negative_labels".into(), other);
                Vec::new()
            }
            None => Vec::new(),
        };
        by_id.insert(id, entries.len());
        names.insert(name.clone());
        entries.push(ImageEntry {
            source_id,
            file_name: name,
            width: img.get("width").and_then(Value::as_u64).map(|w| w as u32),
            height: img.get("height").and_then(Value::as_u64).map(|h| h as u32),
            captured,
            annotated,
            boxes: Vec::new(),
            captions: Vec::new(),
            split,
            negative_labels,
            attributes,
            metadata,
            annotators: contributor.iter().cloned().collect(),
            exports: vec![shown.to_owned()],
            uncertain: Vec::new(),
            labels: Vec::new(),
            root: None,
        });
    }

    for (i, ann) in root.annotations.into_iter().enumerate() {
        let item = format!("annotations[{i}]");
        let Some(image_id) = ann.image_id else {
            problems.push(problem(
                item,
                "annotation without an integer image_id".into(),
            ));
            continue;
        };
        let Some(&slot) = by_id.get(&image_id) else {
            problems.push(problem(
                item,
                format!("annotation refers to unknown image id {image_id}"),
            ));
            continue;
        };
        let entry = &mut entries[slot];
        match ann.caption {
            Some(Some(c)) => entry.captions.push(c),
            Some(None) => problems.push(problem(
                format!("{item} {}", entry.file_name),
                "caption is empty or not a string".into(),
            )),
            None => {}
        }
        if !ann.boxlike {
            continue;
        }
        let bbox = ann.bbox;
        let region = bbox.map(|b| b.map(|v| v as f32));
        let at = format!("{item} {}", entry.file_name);
        // An annotation that cannot be read is kept as uncertain, so redaction fails closed.
        let mut uncertain = |labels: Vec<String>, region: Option<[f32; 4]>, why: String| {
            let consequence = super::fails_closed(&labels, region.is_some());
            problems.push(problem(
                at.clone(),
                format!("{why}; box skipped, and {consequence}"),
            ));
            entry.uncertain.push(UncertainAnnotation {
                item: item.clone(),
                labels,
                region,
                reason: why,
            });
        };
        let Some(cat_id) = ann.category else {
            uncertain(
                Vec::new(),
                region,
                "box without an integer category_id".into(),
            );
            continue;
        };
        let Some((label, supercategory)) = categories.get(&cat_id).cloned() else {
            uncertain(Vec::new(), region, format!("unknown category id {cat_id}"));
            continue;
        };
        let alt_labels = other_names.get(&cat_id).cloned().unwrap_or_default();
        let Some([x, y, w, h]) = bbox else {
            let mut labels = vec![label];
            labels.extend(alt_labels);
            uncertain(labels, None, "bbox is not an array of 4 numbers".into());
            continue;
        };
        // Polygons as `segmentation` gives them (a list of flat [x1, y1, x2, y2, ...]
        // outlines); run-length masks are not outlines and leave the box as it is.
        let polygons = match ann.segmentation {
            stream::Segmentation::Rings(rings) => rings,
            stream::Segmentation::None => Vec::new(),
            stream::Segmentation::Bad => {
                problems.push(problem(
                    at.clone(),
                    "segmentation is not a list of polygons of 3 to 10,000 points; the box is \
                     kept without it"
                        .into(),
                ));
                Vec::new()
            }
        };
        entry.boxes.push(RawBox {
            polygons,
            label,
            supercategory,
            x: x as f32,
            y: y as f32,
            w: w as f32,
            h: h as f32,
            area: ann.area,
            iscrowd: ann.iscrowd,
            annotator: ann.annotator,
            item: at,
            alt_labels,
            // CVAT's and imagelens' COCO exports write a box's attributes here.
            attributes: ann.attributes.into(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
