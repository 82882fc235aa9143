//! Label Studio JSON exports: a list of tasks, read one task at a time from the stream.
//!
//! A task's image is `data.image` (or the first string of `data` that looks like an image
//! path): `/data/local-files/?d=dir/a.jpg` is `dir/a.jpg`; an upload (`/data/upload/3/
//! 1a2b3c4d-a.jpg`), a URL or a bucket key is matched to a file of the images folder by its
//! path or its name (an upload's name with or without Label Studio's 8-hex prefix); nothing is
//! downloaded. Each annotation's `result` gives boxes (`rectanglelabels`, percent coordinates of
//! `original_width` x `original_height`, or of the image's own size; `rotation` in degrees
//! clockwise about the top-left corner: the upright box around it is kept), `polygonlabels`,
//! `ellipselabels` and `keypointlabels` (the box around them), `brushlabels` (the box around
//! the pixels its RLE mask paints: `brush.rs`), `choices` (image-level labels)
//! and `textarea` (captions). Cancelled annotations are not read, nor `predictions` unless asked
//! ([`read_file`]'s `predictions`, `imagelens ingest --predictions`): then a task that no
//! annotation (cancelled ones aside) covers takes its predictions' results, each box marked
//! with annotator `prediction:{model_version}` (`prediction` without one), which is also among
//! the record's annotators; a task a person annotated keeps only what the person gave. A result
//! that cannot be read is a problem, and an uncertain annotation where it may be a region.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::{Value, json};

use super::{ImageEntry, Problem, Progress, RawBox, bbox_of_points, rotated_bbox};
use crate::IngestError;
use crate::dates::parse_date;
use crate::record::UncertainAnnotation;

/// Image extensions taken as an image path in `data`.
const IMAGE_EXTS: [&str; 9] = [
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic",
];

/// Reads one Label Studio JSON export; with `predictions`, a task without an annotation takes
/// its predictions' results.
///
/// # Errors
/// [`IngestError::Unreadable`] when the file cannot be opened or is not a JSON list of tasks.
pub fn read_file(
    path: &Path,
    images: &Path,
    predictions: bool,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, IngestError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| IngestError::Unreadable {
        file: shown.clone(),
        reason: e.to_string(),
    })?;
    parse_with(
        BufReader::new(file),
        &shown,
        Some(images),
        predictions,
        problems,
        progress,
    )
    .map_err(|reason| IngestError::Unreadable {
        file: shown.clone(),
        reason,
    })
}

/// Feeds each element of a JSON array to `on_task` without holding the array.
struct Tasks<'a, F: FnMut(Value)> {
    on_task: &'a mut F,
}

impl<'de, F: FnMut(Value)> Visitor<'de> for Tasks<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of Label Studio tasks")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(task) = seq.next_element::<Value>()? {
            (self.on_task)(task);
        }
        Ok(())
    }
}

impl<'de, F: FnMut(Value)> DeserializeSeed<'de> for Tasks<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

/// Parses an export (a JSON list of tasks, or one task object). `images` is where image sizes
/// are read when a result does not state them, and where file names are matched.
///
/// # Errors
/// A reason when the input is not JSON, or neither a list nor a task; JSON that breaks after
/// some tasks is a problem, and the tasks before it are kept.
pub fn parse<R: Read>(
    input: R,
    shown: &str,
    images: Option<&Path>,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, String> {
    parse_with(input, shown, images, false, problems, progress)
}

/// [`parse`], reading predictions for the tasks no annotation covers when `predictions`.
///
/// # Errors
/// As [`parse`].
pub fn parse_with<R: Read>(
    input: R,
    shown: &str,
    images: Option<&Path>,
    predictions: bool,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, String> {
    let mut input = BufReader::new(input);
    // Skip a byte order mark and white space to see whether this is a list or one task.
    let first = loop {
        let buf = input.fill_buf().map_err(|e| e.to_string())?;
        let Some(&b) = buf.first() else {
            return Err("empty file".into());
        };
        if b.is_ascii_whitespace() {
            input.consume(1);
        } else if buf.starts_with(b"\xEF\xBB\xBF") {
            input.consume(3);
        } else {
            break b;
        }
    };
    let mut entries = Vec::new();
    let mut index = 0usize;
    let mut on_task = |task: Value| {
        let i = index;
        index += 1;
        if let Some(e) = read_task(&task, i, shown, images, predictions, problems) {
            progress.entry(&e);
            entries.push(e);
        }
    };
    if first == b'{' {
        let task: Value =
            serde_json::from_reader(input).map_err(|e| format!("malformed JSON: {e}"))?;
        if task.get("data").is_none() {
            return Err("not a Label Studio export: an object without \"data\"".into());
        }
        on_task(task);
        return Ok(entries);
    }
    if first != b'[' {
        return Err("not a Label Studio export: not a JSON list of tasks".into());
    }
    let mut de = serde_json::Deserializer::from_reader(input);
    let outcome = Tasks {
        on_task: &mut on_task,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Err(e) = outcome {
        if index == 0 {
            return Err(format!("malformed JSON: {e}"));
        }
        problems.push(Problem {
            file: shown.to_owned(),
            item: format!("after task[{}]", index - 1),
            reason: format!(
                "malformed JSON: {e}; the tasks before it are kept, the rest are not read"
            ),
        });
    }
    Ok(entries)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        if bytes[i] == b'+' {
            out.push(b' ');
        } else {
            out.push(bytes[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The image file a task names: candidates in order of preference, the first that exists
/// under `images` wins (the first candidate otherwise).
fn image_name(reference: &str, images: Option<&Path>) -> Option<String> {
    let r = reference.trim();
    if r.is_empty() || r.starts_with("data:") {
        return None;
    }
    let mut candidates: Vec<String> = Vec::new();
    if let Some((_, q)) = r.split_once("?d=") {
        candidates.push(percent_decode(q.split('&').next().unwrap_or(q)));
    }
    let path = r.split(['?', '#']).next().unwrap_or(r);
    let key = match path.split_once("://") {
        // Host or bucket first, then the key.
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, k)| k),
        None => path.trim_start_matches('/'),
    };
    let key = percent_decode(key);
    let base = key.rsplit('/').next().unwrap_or(&key).to_owned();
    if key.starts_with("data/upload/") {
        // Label Studio renames uploads `<8 hex>-<name>`.
        if let Some((prefix, rest)) = base.split_once('-')
            && prefix.len() == 8
            && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        {
            candidates.push(rest.to_owned());
        }
        candidates.push(base.clone());
    } else if !key.is_empty() {
        candidates.push(key.clone());
        candidates.push(base.clone());
    }
    candidates.retain(|c| !c.is_empty() && !c.ends_with('/'));
    let found = images.and_then(|root| {
        candidates
            .iter()
            .find(|c| super::resolve_image_path(root, c).is_ok_and(|p| p.is_file()))
            .cloned()
    });
    found.or_else(|| candidates.into_iter().next())
}

fn is_image_ref(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    let l = l.split(['?', '#']).next().unwrap_or(&l);
    IMAGE_EXTS.iter().any(|e| l.ends_with(e)) || s.contains("/data/")
}

fn read_task(
    task: &Value,
    i: usize,
    shown: &str,
    images: Option<&Path>,
    predictions: bool,
    problems: &mut Vec<Problem>,
) -> Option<ImageEntry> {
    let problem = |item: String, reason: String| Problem {
        file: shown.to_owned(),
        item,
        reason,
    };
    let Some(data) = task.get("data").and_then(Value::as_object) else {
        problems.push(problem(
            format!("task[{i}]"),
            "task without a \"data\" object; skipped".into(),
        ));
        return None;
    };
    let (key, reference) = match data.get("image").and_then(Value::as_str) {
        Some(s) => ("image", s),
        None => match data.iter().find_map(|(k, v)| {
            v.as_str()
                .filter(|s| is_image_ref(s))
                .map(|s| (k.as_str(), s))
        }) {
            Some(kv) => kv,
            None => {
                problems.push(problem(
                    format!("task[{i}]"),
                    "no image in data (data.image); skipped".into(),
                ));
                return None;
            }
        },
    };
    let Some(name) = image_name(reference, images) else {
        problems.push(problem(
            format!("task[{i}]"),
            format!("data.{key} {reference:?} names no image file; skipped"),
        ));
        return None;
    };
    let mut entry = ImageEntry::new(name.clone(), shown);
    if let Some(id) = task.get("id").filter(|v| !v.is_null()) {
        entry.source_id = Some(match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    for (k, v) in data {
        if k != key && !v.is_null() {
            entry.metadata.insert(k.clone(), v.clone());
        }
    }
    if let Some(meta) = task
        .get("meta")
        .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()))
    {
        entry.metadata.insert("meta".into(), meta.clone());
    }
    let mut header_size: Option<Option<(u32, u32)>> = None;
    let mut image_size = || -> Option<(u32, u32)> {
        *header_size.get_or_insert_with(|| {
            let root = images?;
            let path = super::resolve_inside(root, &name).ok()?;
            models::preprocess::probe_file(&path, &models::preprocess::DecodeLimits::default())
                .ok()
                .map(|h| (h.width, h.height))
        })
    };
    let annotations = task
        .get("annotations")
        .or_else(|| task.get("completions"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut latest: Option<DateTime<Utc>> = None;
    let cancelled = |a: &Value| a.get("was_cancelled").and_then(Value::as_bool) == Some(true);
    // Predictions, when asked for, stand in for the annotations a task lacks.
    let (annotations, from) = match task.get("predictions").and_then(Value::as_array) {
        Some(p) if predictions && annotations.iter().all(cancelled) => {
            (p.as_slice(), "predictions")
        }
        _ => (annotations, "annotations"),
    };
    for (j, ann) in annotations.iter().enumerate() {
        if cancelled(ann) {
            continue;
        }
        let model = |v: &Value| match v {
            Value::String(s) if !s.trim().is_empty() => format!("prediction:{}", s.trim()),
            Value::Number(n) => format!("prediction:{n}"),
            _ => "prediction".to_owned(),
        };
        let annotator = match ann.get("completed_by") {
            _ if from == "predictions" => Some(model(&ann["model_version"])),
            Some(Value::Object(o)) => o
                .get("email")
                .or_else(|| o.get("username"))
                .or_else(|| o.get("id"))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
            Some(Value::Number(n)) => Some(format!("user {n}")),
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        };
        if let Some(a) = &annotator
            && !entry.annotators.contains(a)
        {
            entry.annotators.push(a.clone());
        }
        for k in ["updated_at", "created_at"] {
            if let Some(d) = ann
                .get(k)
                .and_then(Value::as_str)
                .and_then(|s| parse_date(s).ok())
            {
                latest = Some(latest.map_or(d, |l| l.max(d)));
                break;
            }
        }
        let results = ann
            .get("result")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (k, r) in results.iter().enumerate() {
            let item = format!("task[{i}] {name} {from}[{j}] result[{k}]");
            read_result(
                r,
                &item,
                annotator.as_deref(),
                &mut entry,
                &mut image_size,
                shown,
                problems,
            );
        }
    }
    entry.annotated = latest;
    // Every task of the export is held until the last is read: no spare capacity.
    entry.boxes.shrink_to_fit();
    Some(entry)
}

/// The box of a brush result: the extent of its mask (`value.rle`, or `rle` beside `value` as
/// older exports have it) in the image of `size`.
fn brush_extent(r: &Value, value: &Value, size: Option<(f64, f64)>) -> Result<[f32; 4], String> {
    let rle = value
        .get("rle")
        .or_else(|| r.get("rle"))
        .and_then(Value::as_array)
        .ok_or("no `rle` mask (only Label Studio's RLE brush format is read)")?;
    let bytes = rle
        .iter()
        .map(|v| v.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or("the mask's `rle` is not a list of bytes")?;
    let (w, h) = size
        .filter(|(w, h)| w.fract() == 0.0 && h.fract() == 0.0)
        .ok_or("the image size is unknown (no original_width/height, image not readable)")?;
    brush::extent(&bytes, w as u64, h as u64)
}

fn f(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64).filter(|x| x.is_finite())
}

fn read_result(
    r: &Value,
    item: &str,
    annotator: Option<&str>,
    entry: &mut ImageEntry,
    image_size: &mut impl FnMut() -> Option<(u32, u32)>,
    shown: &str,
    problems: &mut Vec<Problem>,
) {
    let kind = r.get("type").and_then(Value::as_str).unwrap_or("");
    let value = r.get("value").unwrap_or(&Value::Null);
    let strings = |key: &str| -> Vec<String> {
        value
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter_map(super::text)
                    .collect()
            })
            .unwrap_or_default()
    };
    match kind {
        "choices" => {
            for c in strings("choices") {
                entry.add_label(&c);
            }
            return;
        }
        "textarea" => {
            entry.captions.extend(strings("text"));
            return;
        }
        "rectanglelabels" | "rectangle" | "polygonlabels" | "polygon" | "ellipselabels"
        | "ellipse" | "keypointlabels" | "keypoint" | "brushlabels" | "brush" => {}
        // Text spans, ratings, relations and the like have no region and no label here.
        _ => return,
    }
    let labels = strings(kind.strip_suffix("labels").map_or("labels", |_| kind));
    let size = match (f(r, "original_width"), f(r, "original_height")) {
        (Some(w), Some(h)) if w >= 1.0 && h >= 1.0 => Some((w, h)),
        _ => image_size().map(|(w, h)| (f64::from(w), f64::from(h))),
    };
    let px = |x: f64, y: f64| size.map(|(w, h)| (x / 100.0 * w, y / 100.0 * h));
    let shape = kind.trim_end_matches("labels");
    // A polygon's points, in pixels.
    let outline: Option<Vec<(f64, f64)>> = (shape == "polygon")
        .then(|| value.get("points").and_then(Value::as_array))
        .flatten()
        .and_then(|pts| {
            pts.iter()
                .map(|p| {
                    let p = p.as_array()?;
                    px(p.first()?.as_f64()?, p.get(1)?.as_f64()?)
                })
                .collect::<Option<Vec<_>>>()
        })
        .filter(|p| !p.is_empty());
    let rect = match shape {
        "rectangle" => (|| {
            let (x, y) = px(f(value, "x")?, f(value, "y")?)?;
            let (w, h) = px(f(value, "width")?, f(value, "height")?)?;
            let rot = f(value, "rotation").unwrap_or(0.0);
            if rot % 360.0 == 0.0 {
                Some([x as f32, y as f32, w as f32, h as f32])
            } else {
                rotated_bbox([x, y, w, h], rot, (x, y))
            }
        })(),
        "polygon" => outline.as_deref().and_then(bbox_of_points),
        "ellipse" => (|| {
            let (cx, cy) = px(f(value, "x")?, f(value, "y")?)?;
            let (rx, ry) = px(f(value, "radiusX")?, f(value, "radiusY")?)?;
            let (s, c) = f(value, "rotation").unwrap_or(0.0).to_radians().sin_cos();
            let hw = ((rx * c).powi(2) + (ry * s).powi(2)).sqrt();
            let hh = ((rx * s).powi(2) + (ry * c).powi(2)).sqrt();
            bbox_of_points(&[(cx - hw, cy - hh), (cx + hw, cy + hh)])
        })(),
        "keypoint" => (|| {
            let (x, y) = px(f(value, "x")?, f(value, "y")?)?;
            Some([x as f32, y as f32, 0.0, 0.0])
        })(),
        _ => None,
    };
    // A brush mask is placed by its painted pixels' extent.
    let brush = (shape == "brush").then(|| brush_extent(r, value, size));
    let rect = match &brush {
        Some(Ok(b)) => Some(*b),
        _ => rect,
    };
    let why = if labels.is_empty() {
        Some(format!("{kind} result without a label"))
    } else if labels.len() > 1 {
        Some(format!("{kind} result with several labels"))
    } else if let Some(Err(e)) = brush {
        Some(format!("{kind} result: {e}"))
    } else if rect.is_none() {
        Some(if size.is_none() && shape != "brush" {
            format!(
                "{kind} result whose image size is unknown (no original_width/height, image not readable)"
            )
        } else {
            format!("{kind} result without readable coordinates")
        })
    } else {
        None
    };
    if let Some(why) = why {
        super::skip_box(
            problems,
            shown,
            &mut entry.uncertain,
            UncertainAnnotation {
                item: item.to_owned(),
                labels,
                region: rect,
                reason: why,
            },
        );
        return;
    }
    let (Some(rect), Some(label)) = (rect, labels.into_iter().next()) else {
        return;
    };
    let mut b = RawBox::new(label, rect, item);
    b.annotator = annotator.map(str::to_owned);
    b.polygons = outline
        .as_deref()
        .and_then(super::polygon::ring)
        .into_iter()
        .collect();
    if shape != "rectangle" {
        b.attributes.insert("shape", json!(shape));
    }
    if let Some(rot) = f(value, "rotation").filter(|r| r % 360.0 != 0.0) {
        b.attributes.insert("rotation", json!(rot));
    }
    if let Some(id) = r.get("id").and_then(Value::as_str) {
        b.attributes.insert("source_id", json!(id));
    }
    entry.boxes.push(b);
}

mod brush;
#[cfg(test)]
mod tests;
