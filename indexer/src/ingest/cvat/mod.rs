//! CVAT XML (`annotations.xml`), read as a stream, one `<image>` or `<track>` at a time: CVAT
//! for images 1.1 and CVAT for video 1.1 (`tracks.rs`: a video's frames as images).
//!
//! `<box>` (`xtl ytl xbr ybr` in pixels, `rotation` in degrees clockwise about its centre: the
//! box kept is the upright box around the turned one), `<polygon>`, `<polyline>`, `<points>`,
//! `<ellipse>`, `<mask>`, `<cuboid>` and `<skeleton>` (the box around their points; `shapes.rs`), `<tag>`
//! (an image-level label, its attributes the image's `attributes`) and `<attribute>` children
//! (kept as the box's `attributes`, with `occluded`, `rotation` and the shape). The task or job in `<meta>` goes to each record's
//! metadata (`cvat_task`), its `dumped` time to the annotated date; `subset` to `split` and the
//! image id to `source_id`. A shape without a label or readable points is uncertain.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::xml::{Child, Element, XmlStream};
use super::{ImageEntry, Problem, Progress};
use crate::IngestError;
use crate::dates::parse_date;

mod shapes;
mod tracks;

use shapes::{SHAPES, attributes, num, read_shape};
use tracks::{Frames, frame_files};

/// Reads one CVAT XML file.
///
/// # Errors
/// [`IngestError::Unreadable`] when the file cannot be opened or is not a CVAT
/// `<annotations>` document.
pub fn read_file(
    path: &Path,
    images: &Path,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, IngestError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| IngestError::Unreadable {
        file: shown.clone(),
        reason: e.to_string(),
    })?;
    let frames = frame_files(images);
    let input = std::io::BufReader::new(file);
    parse_with_frames(input, &shown, &frames, problems, progress).map_err(|reason| {
        IngestError::Unreadable {
            file: shown.clone(),
            reason,
        }
    })
}

/// What `<meta>` says about every image.
#[derive(Debug, Default)]
struct Meta {
    task: Option<Value>,
    dumped: Option<DateTime<Utc>>,
    owner: Option<String>,
    /// A video task's frame size (`original_size`).
    frame_size: Option<(u32, u32)>,
    /// The task is a video's (`mode` interpolation).
    video: bool,
}

impl Meta {
    /// What every image of the document carries: the annotated date, the owner, the task.
    fn apply(&self, entry: &mut ImageEntry) {
        entry.annotated = self.dumped;
        entry.annotators.extend(self.owner.clone());
        if let Some(t) = &self.task {
            entry.metadata.insert("cvat_task".into(), t.clone());
        }
    }
}

/// A whole number of pixels, as an image's or a task's size says it.
fn dimension(v: Option<f64>) -> Option<u32> {
    v.filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX) && v.fract() == 0.0)
        .map(|v| v as u32)
}

fn read_meta(meta: &Element) -> Meta {
    let mut out = Meta {
        dumped: meta.text_of("dumped").and_then(|d| parse_date(d).ok()),
        ..Meta::default()
    };
    if let Some(task) = ["task", "job", "project"]
        .iter()
        .find_map(|k| meta.child(k).map(|t| (*k, t)))
    {
        let (kind, t) = task;
        let mut m = Map::new();
        m.insert("kind".into(), json!(kind));
        for f in ["id", "name", "created", "updated", "mode"] {
            if let Some(v) = t.text_of(f) {
                m.insert(f.into(), json!(v));
            }
        }
        out.owner = t
            .child("owner")
            .and_then(|o| o.text_of("username"))
            .map(str::to_owned);
        out.video = t.text_of("mode").map(str::trim) == Some("interpolation");
        out.frame_size = t.child("original_size").and_then(|o| {
            let side = |k: &str| dimension(o.text_of(k).and_then(|v| v.trim().parse().ok()));
            Some((side("width")?, side("height")?))
        });
        out.task = Some(Value::Object(m));
    }
    out
}

/// Parses a CVAT XML document (for images or for video) without an images folder (a video's
/// frames are named `frame_{N:06}.PNG`).
///
/// # Errors
/// A reason when the input is not XML or its root is not `<annotations>`. The XML breaking
/// later is a problem: the images read before it are kept.
pub fn parse<R: BufRead>(
    input: R,
    shown: &str,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, String> {
    parse_with_frames(input, shown, &BTreeMap::new(), problems, progress)
}

/// Parses a CVAT XML document; `frames` are the frame files of the images folder by frame
/// number (a video's frames take their names from it, and its frames nobody annotated are
/// images too).
///
/// # Errors
/// A reason when the input is not XML or its root is not `<annotations>`. The XML breaking
/// later is a problem: the images read before it are kept.
fn parse_with_frames<R: BufRead>(
    input: R,
    shown: &str,
    frames: &BTreeMap<u64, String>,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, String> {
    let (stream, root) = XmlStream::open(input)?;
    parse_stream(stream, root, shown, frames, problems, progress)
}

/// [`parse_with_frames`] of an opened stream.
fn parse_stream<R: BufRead>(
    mut stream: XmlStream<R>,
    root: Element,
    shown: &str,
    frames: &BTreeMap<u64, String>,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, String> {
    if root.name != "annotations" {
        return Err(format!(
            "not a CVAT for images XML: the root element is <{}>",
            root.name
        ));
    }
    let problem = |item: String, reason: String| Problem {
        file: shown.to_owned(),
        item,
        reason,
    };
    let mut meta = Meta::default();
    let mut entries = Vec::new();
    let mut n = 0usize;
    // A video's frames, and whether the document is one (a track, a frame's tag, or a video
    // task without `<image>`s).
    let mut video = Frames::new(shown, frames);
    let mut tracks = false;
    loop {
        let el = match stream.next_item() {
            Ok(Some(Child::Read(el))) => el,
            // Over the reader's bounds (a track of a million frames): that element alone is a
            // problem; the images and tracks after it are read.
            Ok(Some(Child::Skipped(el, why))) => {
                let mut item = format!("<{}> after image[{n}]", el.name);
                for key in ["id", "name", "label"] {
                    if let Some(v) = el.attr(key) {
                        item.push_str(&format!(" {key}={v:?}"));
                    }
                }
                if el.name == "image" {
                    n += 1;
                }
                problems.push(problem(item, format!("{why}; skipped, the rest is read")));
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                problems.push(problem(
                    format!("after image[{n}]"),
                    format!("{e}; the images before it are kept, the rest are not read"),
                ));
                break;
            }
        };
        match el.name.as_str() {
            "meta" => meta = read_meta(&el),
            "version" if el.text.trim() != "1.1" => {
                problems.push(problem(
                    "version".into(),
                    format!("version {:?}, read as 1.1", el.text.trim()),
                ));
            }
            "image" => {
                let i = n;
                n += 1;
                if let Some(entry) = read_image(&el, i, &meta, shown, problems) {
                    progress.entry(&entry);
                    entries.push(entry);
                }
            }
            "track" => {
                tracks = true;
                video.track(&el, &meta, problems);
            }
            // A video's tags name their frame; an image's are inside the `<image>`.
            "tag" => {
                tracks = true;
                video.tag(&el, &meta, problems);
            }
            _ => {}
        }
    }
    if tracks || (meta.video && n == 0) {
        for entry in video.finish(&meta) {
            progress.entry(&entry);
            entries.push(entry);
        }
    }
    Ok(entries)
}

fn read_image(
    el: &Element,
    i: usize,
    meta: &Meta,
    shown: &str,
    problems: &mut Vec<Problem>,
) -> Option<ImageEntry> {
    let problem = |item: String, reason: String| Problem {
        file: shown.to_owned(),
        item,
        reason,
    };
    let Some(name) = el
        .attr("name")
        .map(|n| n.trim().replace('\\', "/"))
        .filter(|n| !n.is_empty())
    else {
        problems.push(problem(
            format!("image[{i}]"),
            "image without a name; skipped".into(),
        ));
        return None;
    };
    let mut entry = ImageEntry::new(name.clone(), shown);
    entry.width = dimension(num(el, "width"));
    entry.height = dimension(num(el, "height"));
    meta.apply(&mut entry);
    if let Some(id) = el.attr("id") {
        entry.source_id = Some(id.to_owned());
    }
    if let Some(s) = el.attr("subset").and_then(super::text) {
        entry.split = Some(s);
    }
    for (k, child) in el.children.iter().enumerate() {
        let label = child.attr("label").and_then(super::text);
        let item = format!(
            "image[{i}] {name} {}[{k}]{}",
            child.name,
            label
                .as_deref()
                .map(|l| format!(" {l}"))
                .unwrap_or_default()
        );
        if child.name == "tag" {
            match label {
                Some(l) => {
                    // A tag is an image-level label: its attributes are the image's.
                    for (key, value) in attributes(child) {
                        entry.attributes.entry(key).or_insert(value);
                    }
                    entry.add_label(&l);
                }
                None => problems.push(problem(item, "tag without a label; skipped".into())),
            }
            continue;
        }
        if SHAPES.contains(&child.name.as_str()) {
            read_shape(child, label, item, &mut entry, shown, problems);
        }
    }
    Some(entry)
}

#[cfg(test)]
mod tests;
