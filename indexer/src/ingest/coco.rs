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

use super::{ImageEntry, Problem, RawBox};
use crate::IngestError;
use crate::dates::parse_date;

/// Image fields that have a place in the record; everything else goes to metadata.
const KNOWN_IMAGE_FIELDS: [&str; 5] = ["id", "file_name", "width", "height", "date_captured"];

/// Reads and merges COCO export files.
///
/// # Errors
/// [`IngestError::Unreadable`] when any file cannot be read or is not a COCO JSON object.
pub fn read_exports(
    files: &[impl AsRef<Path>],
) -> Result<(Vec<ImageEntry>, Vec<Problem>), IngestError> {
    let mut problems = Vec::new();
    let mut merged: Vec<ImageEntry> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for file in files {
        let file = file.as_ref();
        let entries = read_one(file, &mut problems)?;
        for entry in entries {
            match by_name.get(&entry.file_name) {
                Some(&i) => merged[i].merge(entry),
                None => {
                    by_name.insert(entry.file_name.clone(), merged.len());
                    merged.push(entry);
                }
            }
        }
    }
    Ok((merged, problems))
}

fn read_one(file: &Path, problems: &mut Vec<Problem>) -> Result<Vec<ImageEntry>, IngestError> {
    let shown = file.display().to_string();
    let unreadable = |reason: String| IngestError::Unreadable {
        file: shown.clone(),
        reason,
    };
    let bytes = std::fs::read(file).map_err(|e| unreadable(e.to_string()))?;
    let root: Value =
        serde_json::from_slice(&bytes).map_err(|e| unreadable(format!("malformed JSON: {e}")))?;
    let Some(root) = root.as_object() else {
        return Err(unreadable(
            "not a COCO export: top level is not an object".into(),
        ));
    };
    let Some(images) = root.get("images").and_then(Value::as_array) else {
        return Err(unreadable("not a COCO export: no \"images\" array".into()));
    };
    let problem = |item: String, reason: String| Problem {
        file: shown.clone(),
        item,
        reason,
    };

    let info = root.get("info").and_then(Value::as_object);
    let annotated: Option<DateTime<Utc>> = info
        .and_then(|i| i.get("date_created"))
        .and_then(Value::as_str)
        .and_then(|s| parse_date(s).ok());
    let contributor = info
        .and_then(|i| i.get("contributor"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned);

    // Categories: id -> (name, supercategory).
    let mut categories: HashMap<i64, (String, Option<String>)> = HashMap::new();
    for (i, cat) in root
        .get("categories")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let id = cat.get("id").and_then(Value::as_i64);
        let name = cat.get("name").and_then(Value::as_str).map(str::trim);
        match (id, name) {
            (Some(id), Some(name)) if !name.is_empty() => {
                let sup = cat
                    .get("supercategory")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned);
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
        let id = img.get("id").and_then(Value::as_i64);
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
        let metadata: BTreeMap<String, Value> = img
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, v)| !KNOWN_IMAGE_FIELDS.contains(&k.as_str()) && !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        by_id.insert(id, entries.len());
        names.insert(name.clone());
        entries.push(ImageEntry {
            file_name: name,
            width: img.get("width").and_then(Value::as_u64).map(|w| w as u32),
            height: img.get("height").and_then(Value::as_u64).map(|h| h as u32),
            captured,
            annotated,
            boxes: Vec::new(),
            captions: Vec::new(),
            metadata,
            annotators: contributor.iter().cloned().collect(),
            exports: vec![shown.clone()],
        });
    }

    for (i, ann) in root
        .get("annotations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let item = format!("annotations[{i}]");
        let Some(image_id) = ann.get("image_id").and_then(Value::as_i64) else {
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
        if let Some(caption) = ann.get("caption") {
            match caption.as_str().map(str::trim) {
                Some(c) if !c.is_empty() => entry.captions.push(c.to_owned()),
                _ => problems.push(problem(
                    format!("{item} {}", entry.file_name),
                    "caption is empty or not a string".into(),
                )),
            }
        }
        if ann.get("bbox").is_none() && ann.get("category_id").is_none() {
            continue;
        }
        let Some(cat_id) = ann.get("category_id").and_then(Value::as_i64) else {
            problems.push(problem(
                format!("{item} {}", entry.file_name),
                "box without an integer category_id".into(),
            ));
            continue;
        };
        let Some((label, supercategory)) = categories.get(&cat_id).cloned() else {
            problems.push(problem(
                format!("{item} {}", entry.file_name),
                format!("unknown category id {cat_id}; box skipped"),
            ));
            continue;
        };
        let bbox: Option<Vec<f64>> = ann
            .get("bbox")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_f64).collect());
        let Some([x, y, w, h]) = bbox.as_deref().and_then(|b| <[f64; 4]>::try_from(b).ok()) else {
            problems.push(problem(
                format!("{item} {}", entry.file_name),
                "bbox is not an array of 4 numbers; box skipped".into(),
            ));
            continue;
        };
        let annotator = ["annotator", "created_by", "user"]
            .iter()
            .find_map(|k| ann.get(*k).and_then(Value::as_str))
            .map(str::to_owned);
        entry.boxes.push(RawBox {
            label,
            supercategory,
            x: x as f32,
            y: y as f32,
            w: w as f32,
            h: h as f32,
            area: ann.get("area").and_then(Value::as_f64).map(|a| a as f32),
            iscrowd: ann.get("iscrowd").and_then(Value::as_i64).unwrap_or(0) != 0,
            annotator,
            item: format!("{item} {}", entry.file_name),
        });
    }
    Ok(entries)
}
