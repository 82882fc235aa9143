//! CSV, TSV and JSONL manifests: one row per image or per box, for labels kept in a
//! spreadsheet. Rows of the same file are one image.
//!
//! Columns (names compared without case; the first present of each group is used):
//! - the image: `path`, `file_name`, `filename`, `image`, `image_path` or `file`
//!   (relative to the images folder);
//! - `label` (or `class`, `category`): with a box, the box's label; without one, an image-level
//!   label;
//! - the box, in pixels: `xmin`, `ymin`, `xmax`, `ymax`, or `x`, `y`, `w`, `h`;
//! - `caption` or `captions` (several captions in one cell separated by ` | `, as the CSV
//!   export writes them);
//! - `captured_at` (or `captured`, `date_captured`): when the picture was taken;
//! - `annotator`; `width` and `height`: the image's size as the manifest states it;
//! - `split` (or `subset`): the split the image is in (`train`, `val`, `test`, ...);
//! - `source_id`: the annotation tool's own id of the image;
//! - `attributes`: on a box row, the box's attributes as a JSON object (`{"color":"white"}`,
//!   as the CSV export writes them);
//! - `polygons`: on a box row, the box's outlines as JSON, `[[[x, y], ...], ...]` in pixels
//!   (as the CSV export writes them);
//! - `image_attributes`: the image's own attributes as a JSON object, on any of its rows (the
//!   CSV export repeats them on each; rows that disagree: the first row's value of a key
//!   stays, and the disagreement is a problem);
//! - `negative_labels`: labels the image is known not to hold ("not X", never present), a JSON
//!   list of names (as the CSV export writes them) or names separated by ` | `, on any of its
//!   rows;
//! - any other column is kept in the record's metadata.
//!
//! A row without a file name, a box with a missing or unreadable coordinate, or a date that
//! cannot be read is a problem; a box that cannot be read is an uncertain annotation.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Map, Value, json};

use super::{ImageEntry, Problem, Progress, RawBox};
use crate::IngestError;
use crate::dates::parse_date;
use crate::record::UncertainAnnotation;

const FILE_COLUMNS: [&str; 6] = [
    "path",
    "file_name",
    "filename",
    "image",
    "image_path",
    "file",
];
const LABEL_COLUMNS: [&str; 3] = ["label", "class", "category"];
const CAPTION_COLUMNS: [&str; 2] = ["caption", "captions"];
const DATE_COLUMNS: [&str; 3] = ["captured_at", "captured", "date_captured"];
const SPLIT_COLUMNS: [&str; 2] = ["split", "subset"];
const CORNERS: [&str; 4] = ["xmin", "ymin", "xmax", "ymax"];
const XYWH: [&str; 4] = ["x", "y", "w", "h"];
/// Longest JSONL line read.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// How one manifest is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Comma-separated, with a header row.
    Csv,
    /// Tab-separated, with a header row.
    Tsv,
    /// One JSON object a line.
    Jsonl,
}

impl Kind {
    /// The kind a file name says (`.tsv`, `.jsonl`/`.ndjson`, else CSV).
    pub fn of(path: &Path) -> Kind {
        match path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .as_deref()
        {
            Some("tsv") => Kind::Tsv,
            Some("jsonl" | "ndjson") => Kind::Jsonl,
            _ => Kind::Csv,
        }
    }
}

/// Reads one manifest file.
///
/// # Errors
/// [`IngestError::Unreadable`] when the file cannot be opened, or a CSV has no file name column.
pub fn read_file(
    path: &Path,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, IngestError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| IngestError::Unreadable {
        file: shown.clone(),
        reason: e.to_string(),
    })?;
    parse(file, Kind::of(path), &shown, problems, progress).map_err(|reason| {
        IngestError::Unreadable {
            file: shown.clone(),
            reason,
        }
    })
}

/// One row, as named cells.
type Row = Map<String, Value>;

/// Parses a manifest, counting its rows (items) and files (images) in `progress`.
///
/// # Errors
/// A reason when a CSV/TSV has no header or no file name column.
pub fn parse<R: Read>(
    input: R,
    kind: Kind,
    shown: &str,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, String> {
    let mut out = Rows {
        shown,
        progress,
        entries: Vec::new(),
        by_name: HashMap::new(),
    };
    match kind {
        Kind::Csv | Kind::Tsv => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(if kind == Kind::Tsv { b'\t' } else { b',' })
                .flexible(true)
                .from_reader(input);
            let headers: Vec<String> = reader
                .byte_headers()
                .map_err(|e| format!("not a CSV file: {e}"))?
                .iter()
                .map(|h| {
                    let h = String::from_utf8_lossy(h);
                    h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase()
                })
                .collect();
            if !headers.iter().any(|h| FILE_COLUMNS.contains(&h.as_str())) {
                return Err(format!(
                    "no file name column; the header is {headers:?}, one of {FILE_COLUMNS:?} is \
                     needed"
                ));
            }
            let mut record = csv::ByteRecord::new();
            let mut n = 0usize;
            loop {
                n += 1;
                match reader.read_byte_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let row: Row = headers
                            .iter()
                            .zip(record.iter())
                            .filter(|(h, _)| !h.is_empty())
                            .map(|(h, v)| (h.clone(), json!(String::from_utf8_lossy(v).trim())))
                            .collect();
                        out.row(&row, &format!("row {n}"), problems);
                    }
                    Err(e) => {
                        problems.push(Problem {
                            file: shown.to_owned(),
                            item: format!("row {n}"),
                            reason: format!(
                                "{e}; the rows before it are kept, the rest are not read"
                            ),
                        });
                        break;
                    }
                }
            }
        }
        Kind::Jsonl => {
            let mut reader = BufReader::new(input);
            let mut line = Vec::new();
            let mut n = 0usize;
            loop {
                n += 1;
                line.clear();
                let read = (&mut reader)
                    .take(MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut line)
                    .map_err(|e| e.to_string())?;
                if read == 0 {
                    break;
                }
                let item = format!("line {n}");
                if line.len() > MAX_LINE {
                    problems.push(Problem {
                        file: shown.to_owned(),
                        item,
                        reason: format!(
                            "longer than {MAX_LINE} bytes; the lines before it are kept, the \
                             rest are not read"
                        ),
                    });
                    break;
                }
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_start_matches('\u{feff}').trim();
                if text.is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(o)) => {
                        let row: Row = o
                            .into_iter()
                            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v))
                            .collect();
                        out.row(&row, &item, problems);
                    }
                    Ok(_) => problems.push(Problem {
                        file: shown.to_owned(),
                        item,
                        reason: "not a JSON object; skipped".into(),
                    }),
                    Err(e) => problems.push(Problem {
                        file: shown.to_owned(),
                        item,
                        reason: format!("malformed JSON: {e}; skipped"),
                    }),
                }
            }
        }
    }
    Ok(out.entries)
}

struct Rows<'a> {
    shown: &'a str,
    progress: &'a Progress,
    entries: Vec<ImageEntry>,
    by_name: HashMap<String, usize>,
}

fn cell<'r, 'n>(row: &'r Row, names: &[&'n str]) -> Option<(&'n str, &'r Value)> {
    names
        .iter()
        .find_map(|n| row.get(*n).filter(|v| !is_blank(v)).map(|v| (*n, v)))
}

fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => super::text(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The JSON object in `column` (a JSONL object, or its text in a CSV cell), nulls left out;
/// `None` when the cell is absent or blank.
fn json_object(row: &Row, column: &str) -> Result<Option<BTreeMap<String, Value>>, String> {
    let bad = || format!("{column} is not a JSON object");
    match row.get(column).filter(|v| !is_blank(v)) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(super::attributes_of(o))),
        Some(Value::String(t)) => serde_json::from_str::<Map<String, Value>>(t)
            .map(|o| Some(super::attributes_of(&o)))
            .map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// The names in a row's `negative_labels` cell: a JSON list of names (a JSONL list, or its
/// text in a CSV cell), or text of names separated by ` | `; none when absent or blank.
fn negative_labels(row: &Row) -> Result<Vec<String>, String> {
    let bad = || "negative_labels is not a list of names".to_owned();
    let list = match row.get("negative_labels").filter(|v| !is_blank(v)) {
        None => return Ok(Vec::new()),
        Some(Value::String(t)) if t.trim_start().starts_with('[') => {
            serde_json::from_str::<Vec<Value>>(t).map_err(|_| bad())?
        }
        Some(Value::String(t)) => return Ok(t.split(" | ").filter_map(super::text).collect()),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(bad()),
    };
    list.iter()
        .map(|v| v.as_str().map(super::text).ok_or_else(bad))
        .filter_map(Result::transpose)
        .collect()
}

/// The outlines in a row's `polygons` cell (JSON `[[[x, y], ...], ...]`, or its text in a CSV
/// cell); none when the cell is absent or blank.
fn polygons(row: &Row) -> Result<Vec<Vec<[f32; 2]>>, String> {
    let bad = || {
        format!(
            "polygons is not a list of up to {} outlines of 3 to {} [x, y] points",
            super::polygon::MAX_RINGS,
            super::polygon::MAX_POINTS
        )
    };
    let parsed: Vec<Vec<(f64, f64)>> = match row.get("polygons").filter(|v| !is_blank(v)) {
        None => return Ok(Vec::new()),
        Some(Value::String(t)) => serde_json::from_str(t).map_err(|_| bad())?,
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| bad())?,
    };
    if parsed.len() > super::polygon::MAX_RINGS {
        return Err(bad());
    }
    parsed
        .iter()
        .map(|points| super::polygon::ring(points).ok_or_else(bad))
        .collect()
}

fn as_number(v: &Value) -> Option<f64> {
    let n: Option<f64> = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|f| f.is_finite())
}

impl Rows<'_> {
    fn row(&mut self, row: &Row, item: &str, problems: &mut Vec<Problem>) {
        let problem = |item: &str, reason: String| Problem {
            file: self.shown.to_owned(),
            item: item.to_owned(),
            reason,
        };
        let Some(name) = cell(row, &FILE_COLUMNS)
            .and_then(|(_, v)| as_text(v))
            .map(|n| n.replace('\\', "/"))
        else {
            problems.push(problem(item, "row without a file name; skipped".into()));
            return;
        };
        self.progress.items(1);
        let slot = match self.by_name.get(&name) {
            Some(&i) => i,
            None => {
                self.by_name.insert(name.clone(), self.entries.len());
                self.entries.push(ImageEntry::new(name.clone(), self.shown));
                self.progress.images(1);
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[slot];
        let item = format!("{item} {name}");
        let label = cell(row, &LABEL_COLUMNS).and_then(|(_, v)| as_text(v));
        // The box, as corners or as x, y, w, h: every coordinate or none.
        let (columns, shape) = if CORNERS
            .iter()
            .any(|c| row.get(*c).is_some_and(|v| !is_blank(v)))
        {
            (CORNERS, "corners")
        } else {
            (XYWH, "xywh")
        };
        let given: Vec<Option<&Value>> = columns
            .iter()
            .map(|c| row.get(*c).filter(|v| !is_blank(v)))
            .collect();
        if given.iter().any(Option::is_some) {
            let values: Option<Vec<f64>> = given.iter().map(|v| v.and_then(as_number)).collect();
            let rect = values.map(|v| match shape {
                "corners" => [v[0], v[1], v[2] - v[0], v[3] - v[1]],
                _ => [v[0], v[1], v[2], v[3]],
            });
            let rect = rect.map(|r| r.map(|x| x as f32));
            match (label.clone(), rect) {
                (Some(label), Some(rect)) => {
                    let mut b = RawBox::new(label, rect, item.clone());
                    b.annotator = row.get("annotator").and_then(as_text);
                    // A JSON object of the box's attributes (as the CSV export writes them);
                    // a cell that is not one is reported and the box kept without them.
                    match json_object(row, "attributes") {
                        Ok(Some(o)) => b.attributes = o.into(),
                        Ok(None) => {}
                        Err(why) => problems.push(problem(
                            &item,
                            format!("{why}; the box is kept without them"),
                        )),
                    }
                    match polygons(row) {
                        Ok(p) => b.polygons = p,
                        Err(why) => problems.push(problem(
                            &item,
                            format!("{why}; the box is kept without them"),
                        )),
                    }
                    entry.boxes.push(b);
                }
                (label, rect) => {
                    let why = if label.is_none() {
                        "box without a label".to_owned()
                    } else {
                        format!(
                            "box with a missing or unreadable coordinate ({})",
                            columns.join(", ")
                        )
                    };
                    let labels: Vec<String> = label.into_iter().collect();
                    super::skip_box(
                        problems,
                        self.shown,
                        &mut entry.uncertain,
                        UncertainAnnotation {
                            item: item.clone(),
                            labels,
                            region: rect,
                            reason: why,
                        },
                    );
                }
            }
        } else {
            if let Some(l) = &label {
                entry.add_label(l);
            }
            if json_object(row, "attributes").is_ok_and(|o| o.is_some()) {
                problems.push(problem(
                    &item,
                    "attributes on a row without a box belong to no box; not kept (an image's \
                     own go in image_attributes)"
                        .into(),
                ));
            }
        }
        match json_object(row, "image_attributes") {
            Ok(Some(o)) => {
                for (k, v) in o {
                    match entry.attributes.get(&k) {
                        Some(kept) if *kept != v => problems.push(problem(
                            &item,
                            format!("image attribute {k:?} differs from an earlier row's; the first is kept"),
                        )),
                        Some(_) => {}
                        None => {
                            entry.attributes.insert(k, v);
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(why) => problems.push(problem(&item, format!("{why}; not kept"))),
        }
        match negative_labels(row) {
            Ok(names) => {
                for n in names {
                    if !entry.negative_labels.contains(&n) {
                        entry.negative_labels.push(n);
                    }
                }
            }
            Err(why) => problems.push(problem(&item, format!("{why}; not kept"))),
        }
        if let Some((column, v)) = cell(row, &CAPTION_COLUMNS) {
            let all: Vec<String> = match v {
                Value::Array(a) => a.iter().filter_map(as_text).collect(),
                v => as_text(v)
                    .map(|t| {
                        if column == "captions" {
                            t.split(" | ").filter_map(super::text).collect()
                        } else {
                            vec![t]
                        }
                    })
                    .unwrap_or_default(),
            };
            for c in all {
                if !entry.captions.contains(&c) {
                    entry.captions.push(c);
                }
            }
        }
        if let Some((_, v)) = cell(row, &DATE_COLUMNS) {
            match as_text(v).map(|t| parse_date(&t)) {
                Some(Ok(d)) => entry.captured = entry.captured.or(Some(d)),
                Some(Err(e)) => problems.push(problem(&item, format!("{e}; date not kept"))),
                None => problems.push(problem(&item, "date is not text; not kept".into())),
            }
        }
        if let Some(a) = row.get("annotator").and_then(as_text)
            && !entry.annotators.contains(&a)
        {
            entry.annotators.push(a);
        }
        let dim = |k: &str| {
            row.get(k)
                .and_then(as_number)
                .filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX) && v.fract() == 0.0)
                .map(|v| v as u32)
        };
        if let Some((_, v)) = cell(row, &SPLIT_COLUMNS)
            && let Some(s) = as_text(v)
        {
            entry.split = entry.split.take().or(Some(s));
        }
        if let Some(s) = row.get("source_id").and_then(as_text) {
            entry.source_id = entry.source_id.take().or(Some(s));
        }
        entry.width = entry.width.or(dim("width"));
        entry.height = entry.height.or(dim("height"));
        let known: Vec<&str> = [
            FILE_COLUMNS.as_slice(),
            &LABEL_COLUMNS,
            &CAPTION_COLUMNS,
            &DATE_COLUMNS,
            &SPLIT_COLUMNS,
            &CORNERS,
            &XYWH,
            &[
                "annotator",
                "width",
                "height",
                "attributes",
                "image_attributes",
                "polygons",
                "source_id",
                "negative_labels",
            ],
        ]
        .concat();
        let extra: BTreeMap<String, Value> = row
            .iter()
            .filter(|(k, v)| !known.contains(&k.as_str()) && !is_blank(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in extra {
            entry.metadata.entry(k).or_insert(v);
        }
    }
}

#[cfg(test)]
mod tests;
