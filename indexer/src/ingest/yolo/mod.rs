//! YOLO / Ultralytics data sets: `data.yaml` (`names` as a list or an id -> name map, `path`,
//! `train`/`val`/`test` as folders, image-list files or lists of them) and one `labels/*.txt`
//! per image, found as Ultralytics finds it (the last `/images/` of the image's path replaced by
//! `/labels/`, the extension by `.txt`). Without a `data.yaml`, `classes.txt` and `images/`.
//!
//! Rows are `class cx cy w h`, normalised to the image's displayed size, which is read from the
//! image's header; a polygon row (`class x1 y1 x2 y2 ...`, three points or more) becomes the box
//! around the polygon, keeping the polygon as its outline, except four points that are the
//! corners of an axis-aligned rectangle, which are that box (a segmentation export's plain box);
//! with `kpt_shape` in `data.yaml`, pose rows keep their box. A row that
//! cannot be read, or names an unknown class, is a problem and an uncertain annotation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::json;
use serde_norway::Value as Yaml;

use super::voc::{MAX_FILES, walk};
use super::{ImageEntry, Problem, Progress, RawBox, bbox_of_points};
use crate::IngestError;
use crate::record::UncertainAnnotation;

mod labels;
pub use labels::{Rows, parse_labels};

/// Largest `data.yaml`, `classes.txt` or image list read.
const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;
/// Largest label file read.
const MAX_LABEL_BYTES: u64 = 16 * 1024 * 1024;
/// Most classes accepted.
const MAX_CLASSES: usize = 100_000;

/// Class names by class id.
pub type Names = HashMap<i64, String>;

/// What a `data.yaml` says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Class names.
    pub names: Names,
    /// `path`, when given.
    pub path: Option<String>,
    /// `(split, entry)` for each of `train`, `val`, `test` (an entry per list element).
    pub splits: Vec<(String, String)>,
    /// Whether rows carry keypoints after the box (`kpt_shape`).
    pub keypoints: bool,
}

fn yaml_str(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses a `data.yaml`; unusable fields are problems, a text that is not a YAML mapping is
/// an error.
///
/// # Errors
/// A reason when the text is not YAML or not a mapping.
pub fn parse_config(
    text: &str,
    shown: &str,
    problems: &mut Vec<Problem>,
) -> Result<Config, String> {
    let doc: Yaml = serde_norway::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let Some(map) = doc.as_mapping() else {
        return Err("not a YOLO data.yaml: the top level is not a mapping".into());
    };
    let problem = |item: &str, reason: String| Problem {
        file: shown.to_owned(),
        item: item.to_owned(),
        reason,
    };
    let mut cfg = Config::default();
    match map.get("names") {
        Some(Yaml::Sequence(list)) => {
            for (i, n) in list.iter().take(MAX_CLASSES).enumerate() {
                match yaml_str(n)
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                {
                    Some(name) => {
                        cfg.names.insert(i as i64, name);
                    }
                    None => problems.push(problem(
                        &format!("names[{i}]"),
                        "class name is not a string; its boxes are kept as uncertain".into(),
                    )),
                }
            }
        }
        Some(Yaml::Mapping(m)) => {
            for (k, n) in m.iter().take(MAX_CLASSES) {
                let id = k
                    .as_i64()
                    .or_else(|| k.as_str().and_then(|s| s.trim().parse().ok()));
                let name = yaml_str(n)
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty());
                match (id, name) {
                    (Some(id), Some(name)) if id >= 0 => {
                        cfg.names.insert(id, name);
                    }
                    _ => problems.push(problem(
                        "names",
                        format!(
                            "entry {} is not a class id and a name; its boxes are kept as \
                             uncertain",
                            yaml_str(k).unwrap_or_else(|| "?".into())
                        ),
                    )),
                }
            }
        }
        None => problems.push(problem(
            "names",
            "no names; every box is kept as uncertain".into(),
        )),
        Some(_) => problems.push(problem(
            "names",
            "names is neither a list nor a map; every box is kept as uncertain".into(),
        )),
    }
    cfg.path = map
        .get("path")
        .and_then(yaml_str)
        .filter(|p| !p.trim().is_empty());
    for split in ["train", "val", "test"] {
        match map.get(split) {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Sequence(list)) => {
                for v in list.iter().take(1000) {
                    match yaml_str(v) {
                        Some(s) => cfg.splits.push((split.to_owned(), s)),
                        None => {
                            problems.push(problem(split, "entry is not a path; skipped".into()))
                        }
                    }
                }
            }
            Some(v) => match yaml_str(v) {
                Some(s) => cfg.splits.push((split.to_owned(), s)),
                None => problems.push(problem(split, "not a path; skipped".into())),
            },
        }
    }
    cfg.keypoints = map.get("kpt_shape").is_some_and(|v| !v.is_null());
    Ok(cfg)
}

/// One image and the split it was listed in.
#[derive(Debug)]
struct Listed {
    path: PathBuf,
    split: Option<String>,
}

/// Where a data set's files are.
#[derive(Debug)]
struct Layout {
    config: Config,
    /// Where `config` came from (`data.yaml` or `classes.txt`).
    config_file: String,
    /// Folders or list files of images, with their split.
    sources: Vec<(Option<String>, PathBuf)>,
}

fn read_small(path: &Path) -> Result<String, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_CONFIG_BYTES {
        return Err(format!(
            "{len} bytes, more than the limit of {MAX_CONFIG_BYTES}"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let bytes = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&bytes);
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn layout(path: &Path, problems: &mut Vec<Problem>) -> Result<Layout, String> {
    let yaml = if path.is_dir() {
        ["data.yaml", "data.yml"]
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file())
    } else {
        Some(path.to_path_buf())
    };
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let Some(yaml) = yaml else {
        // No data.yaml: classes.txt and images/.
        let classes = dir.join("classes.txt");
        let text =
            read_small(&classes).map_err(|e| format!("no data.yaml, and classes.txt: {e}"))?;
        let names = text
            .lines()
            .map(str::trim)
            .take(MAX_CLASSES)
            .enumerate()
            .filter(|(_, n)| !n.is_empty())
            .map(|(i, n)| (i as i64, n.to_owned()))
            .collect();
        let images = if dir.join("images").is_dir() {
            dir.join("images")
        } else {
            dir.clone()
        };
        return Ok(Layout {
            config: Config {
                names,
                ..Config::default()
            },
            config_file: classes.display().to_string(),
            sources: vec![(None, images)],
        });
    };
    let shown = yaml.display().to_string();
    let config = parse_config(&read_small(&yaml)?, &shown, problems)?;
    let base = match &config.path {
        Some(p) if Path::new(p).is_absolute() && Path::new(p).is_dir() => PathBuf::from(p),
        Some(p) if dir.join(p).is_dir() => dir.join(p),
        _ => dir.clone(),
    };
    let mut sources = Vec::new();
    for (split, entry) in &config.splits {
        let mut p = base.join(entry);
        if !p.exists() {
            // Roboflow writes `../train/images` relative to the data set's own folder.
            let trimmed = entry.trim_start_matches("../");
            if base.join(trimmed).exists() {
                p = base.join(trimmed);
            } else {
                problems.push(Problem {
                    file: shown.clone(),
                    item: split.clone(),
                    reason: format!("{entry} does not exist under {}; skipped", base.display()),
                });
                continue;
            }
        }
        sources.push((Some(split.clone()), p));
    }
    if config.splits.is_empty() && base.join("images").is_dir() {
        sources.push((None, base.join("images")));
    }
    Ok(Layout {
        config,
        config_file: shown,
        sources,
    })
}

fn is_image(p: &Path) -> bool {
    p.extension().is_some_and(|e| {
        super::IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str())
    })
}

fn list_images(layout: &Layout, problems: &mut Vec<Problem>) -> Vec<Listed> {
    let mut out = Vec::new();
    for (split, src) in &layout.sources {
        let found: Vec<PathBuf> = if src.is_dir() {
            let mut all = Vec::new();
            for ext in super::IMAGE_EXTENSIONS {
                match walk(src, ext) {
                    Ok(v) => all.extend(v),
                    Err(e) => {
                        problems.push(Problem {
                            file: src.display().to_string(),
                            item: "folder".into(),
                            reason: format!("{e}; skipped"),
                        });
                        break;
                    }
                }
            }
            all.sort();
            all.dedup();
            all
        } else {
            // An image list: one path a line, relative to the list's folder.
            let parent = src.parent().unwrap_or(Path::new("."));
            match read_small(src) {
                Ok(t) => t
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .take(MAX_FILES)
                    .map(|l| parent.join(l.trim_start_matches("./")))
                    .filter(|p| is_image(p))
                    .collect(),
                Err(e) => {
                    problems.push(Problem {
                        file: src.display().to_string(),
                        item: "image list".into(),
                        reason: format!("{e}; skipped"),
                    });
                    Vec::new()
                }
            }
        };
        out.extend(found.into_iter().map(|path| Listed {
            path,
            split: split.clone(),
        }));
    }
    out
}

/// The folder that holds every image of the data set at `path` (its image folders' deepest
/// common folder), when its layout can be read.
pub fn images_root(path: &Path) -> Option<PathBuf> {
    let layout = layout(path, &mut Vec::new()).ok()?;
    let dirs: Vec<PathBuf> = layout
        .sources
        .iter()
        .map(|(_, s)| {
            if s.is_dir() {
                s.clone()
            } else {
                s.parent().unwrap_or(Path::new(".")).to_path_buf()
            }
        })
        .filter_map(|d| d.canonicalize().ok())
        .collect();
    let mut common = dirs.first()?.clone();
    for d in &dirs[1..] {
        while !d.starts_with(&common) {
            common = common.parent()?.to_path_buf();
        }
    }
    Some(common)
}

/// The label file of an image, as Ultralytics finds it.
pub fn label_path(image: &Path) -> PathBuf {
    let s = image.to_string_lossy().replace('\\', "/");
    let swapped = match s.rfind("/images/") {
        Some(i) => format!("{}/labels/{}", &s[..i], &s[i + "/images/".len()..]),
        None => s,
    };
    Path::new(&swapped).with_extension("txt")
}

/// Reads a YOLO data set (its folder or its `data.yaml`); entries are named relative to
/// `images`.
///
/// # Errors
/// [`IngestError::Unreadable`] when neither a readable `data.yaml` nor `classes.txt` is there.
pub fn read_path(
    path: &Path,
    images: &Path,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, IngestError> {
    let layout = layout(path, problems).map_err(|reason| IngestError::Unreadable {
        file: path.display().to_string(),
        reason,
    })?;
    let root = images
        .canonicalize()
        .unwrap_or_else(|_| images.to_path_buf());
    let limits = models::preprocess::DecodeLimits::default();
    // An image listed by several splits (one folder used for train and val) has no one split.
    let listed = list_images(&layout, problems);
    let mut splits: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for l in &listed {
        let s = splits.entry(l.path.clone()).or_default();
        if let Some(split) = &l.split
            && !s.contains(split)
        {
            s.push(split.clone());
        }
    }
    let mut entries = Vec::new();
    for (image, split) in splits {
        let real = image.canonicalize().unwrap_or_else(|_| image.clone());
        let Ok(rel) = real.strip_prefix(&root) else {
            problems.push(Problem {
                file: image.display().to_string(),
                item: "image".into(),
                reason: format!(
                    "outside the images folder {}; skipped (pass --images)",
                    root.display()
                ),
            });
            continue;
        };
        let file_name = rel.to_string_lossy().replace('\\', "/");
        let labels = label_path(&image);
        let shown = labels.display().to_string();
        let mut entry = ImageEntry::new(file_name, &layout.config_file);
        if let [one] = split.as_slice() {
            entry.split = Some(one.clone());
        }
        let text = match std::fs::metadata(&labels) {
            Err(_) => None, // An image without a label file has no objects.
            Ok(m) if m.len() > MAX_LABEL_BYTES => {
                problems.push(Problem {
                    file: shown.clone(),
                    item: "file".into(),
                    reason: format!(
                        "{} bytes, more than the limit of {MAX_LABEL_BYTES}; the image is \
                         skipped (its boxes cannot be read)",
                        m.len()
                    ),
                });
                continue;
            }
            Ok(_) => match std::fs::read(&labels) {
                Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Err(e) => {
                    problems.push(Problem {
                        file: shown.clone(),
                        item: "file".into(),
                        reason: format!("{e}; the image is skipped (its boxes cannot be read)"),
                    });
                    continue;
                }
            },
        };
        if let Some(text) = text {
            entry.exports.push(shown.clone());
            let size = if text.trim().is_empty() {
                None
            } else {
                match models::preprocess::probe_file(&real, &limits) {
                    Ok(h) => Some((h.width, h.height)),
                    Err(e) => {
                        problems.push(Problem {
                            file: entry.file_name.clone(),
                            item: "image size".into(),
                            reason: format!("cannot read the image's header: {e}"),
                        });
                        None
                    }
                }
            };
            let rows = parse_labels(
                &text,
                &shown,
                &layout.config.names,
                layout.config.keypoints,
                size,
                problems,
            );
            entry.width = size.map(|s| s.0);
            entry.height = size.map(|s| s.1);
            entry.boxes = rows.boxes;
            entry.uncertain = rows.uncertain;
        }
        progress.entry(&entry);
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
