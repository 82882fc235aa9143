//! CVAT for video 1.1: `<track>`s, each a label's shapes frame by frame, and tags on frames.
//! Every frame with a shape inside it (not `outside="1"`) or a tag is an image entry, and so is
//! every other frame whose file is in the images folder (a frame nobody annotated is still an
//! image of the data set). A frame's file is `frame_{N:06}` with the extension found in the
//! images folder (`.PNG`, as CVAT writes them, when it is not there); its size is the task's
//! `original_size`, its `source_id` the frame number, and each box keeps its track's id
//! (`track`) and whether CVAT stored it as a keyframe (interpolated boxes are read as drawn).
//! A shape or a labelled tag without a frame number could be on any frame: it is an uncertain
//! annotation of every frame, so redaction fails closed.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::super::xml::Element;
use super::super::{ImageEntry, Problem, fails_closed};
use super::Meta;
use super::shapes::{SHAPES, attributes, read_shape, shape_box};
use crate::record::UncertainAnnotation;

/// The frame files of an images folder, by frame number (`frame_000012.PNG` is frame 12).
pub(super) fn frame_files(images: &Path) -> BTreeMap<u64, String> {
    let Ok(dir) = std::fs::read_dir(images) else {
        return BTreeMap::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (stem, ext) = name.rsplit_once('.')?;
            let digits = stem.strip_prefix("frame_")?;
            let ok = !ext.is_empty()
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && e.file_type().is_ok_and(|t| t.is_file());
            Some((digits.parse::<u64>().ok().filter(|_| ok)?, name))
        })
        .collect()
}

/// The frames of a video document, filled track by track.
pub(super) struct Frames<'a> {
    shown: &'a str,
    files: &'a BTreeMap<u64, String>,
    entries: BTreeMap<u64, ImageEntry>,
    /// Annotations without a frame, uncertain on every frame.
    unplaced: Vec<UncertainAnnotation>,
}

impl<'a> Frames<'a> {
    pub(super) fn new(shown: &'a str, files: &'a BTreeMap<u64, String>) -> Self {
        Frames {
            shown,
            files,
            entries: BTreeMap::new(),
            unplaced: Vec::new(),
        }
    }

    /// An annotation without a frame number: reported, and kept as uncertain on every frame.
    fn unplaced(&mut self, annotation: UncertainAnnotation, problems: &mut Vec<Problem>) {
        problems.push(Problem {
            file: self.shown.to_owned(),
            item: annotation.item.clone(),
            reason: format!(
                "{}; skipped, and on every frame {}",
                annotation.reason,
                fails_closed(&annotation.labels, annotation.region.is_some())
            ),
        });
        self.unplaced.push(annotation);
    }

    fn entry(&mut self, frame: u64, meta: &Meta) -> &mut ImageEntry {
        let (shown, files) = (self.shown, self.files);
        self.entries.entry(frame).or_insert_with(|| {
            let name = files
                .get(&frame)
                .cloned()
                .unwrap_or_else(|| format!("frame_{frame:06}.PNG"));
            let mut entry = ImageEntry::new(name, shown);
            meta.apply(&mut entry);
            (entry.width, entry.height) = meta.frame_size.unzip();
            entry.source_id = Some(frame.to_string());
            entry.metadata.insert("cvat_frame".into(), json!(frame));
            entry
        })
    }

    /// The `frame` attribute of a track's shape or a frame's tag.
    fn frame_of(el: &Element) -> Option<u64> {
        el.attr("frame").and_then(|f| f.trim().parse::<u64>().ok())
    }

    /// Reads one `<track>`: each shape inside its frame becomes a box of that frame.
    pub(super) fn track(&mut self, el: &Element, meta: &Meta, problems: &mut Vec<Problem>) {
        let id = el.attr("id").unwrap_or("?").to_owned();
        let label = el.attr("label").and_then(super::super::text);
        let shown = self.shown;
        for (k, child) in el.children.iter().enumerate() {
            if !SHAPES.contains(&child.name.as_str())
                || child.attr("outside").map(str::trim) == Some("1")
            {
                continue;
            }
            let item = format!(
                "track {id} {}[{k}]{}",
                child.name,
                label
                    .as_deref()
                    .map(|l| format!(" {l}"))
                    .unwrap_or_default()
            );
            let Some(frame) = Self::frame_of(child) else {
                let annotation = UncertainAnnotation {
                    item,
                    labels: label.iter().cloned().collect(),
                    region: shape_box(child),
                    reason: "a track's shape without a frame number".into(),
                };
                self.unplaced(annotation, problems);
                continue;
            };
            let item = format!("{item} frame {frame}");
            let keyframe = child.attr("keyframe").map(str::trim) == Some("1");
            let entry = self.entry(frame, meta);
            if let Some(b) = read_shape(child, label.clone(), item, entry, shown, problems) {
                b.attributes.insert("track", json!(id));
                if keyframe {
                    b.attributes.insert("keyframe", json!(true));
                }
            }
        }
    }

    /// Reads a frame's `<tag>`: an image-level label of that frame, its attributes the frame's.
    pub(super) fn tag(&mut self, el: &Element, meta: &Meta, problems: &mut Vec<Problem>) {
        let item = format!("tag {}", el.attr("label").unwrap_or("?"));
        let Some(label) = el.attr("label").and_then(super::super::text) else {
            problems.push(Problem {
                file: self.shown.to_owned(),
                item,
                reason: "a tag without a label; skipped".into(),
            });
            return;
        };
        let Some(frame) = Self::frame_of(el) else {
            let annotation = UncertainAnnotation {
                item,
                labels: vec![label],
                region: None,
                reason: "a tag without a frame number".into(),
            };
            self.unplaced(annotation, problems);
            return;
        };
        let entry = self.entry(frame, meta);
        for (key, value) in attributes(el) {
            entry.attributes.entry(key).or_insert(value);
        }
        entry.add_label(&label);
    }

    /// Every frame read, and every other frame of the images folder, in frame order, each
    /// with the annotations that have no frame as uncertain.
    pub(super) fn finish(mut self, meta: &Meta) -> Vec<ImageEntry> {
        let files = self.files;
        for &frame in files.keys() {
            self.entry(frame, meta);
        }
        let unplaced = std::mem::take(&mut self.unplaced);
        self.entries
            .into_values()
            .map(|mut entry| {
                entry.uncertain.extend(unplaced.iter().cloned());
                entry
            })
            .collect()
    }
}
