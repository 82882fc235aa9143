//! Which reader an input needs ([`locate`]: `--format auto` or a named one, plus the folder the
//! format keeps its images in) and the dispatch to it ([`read_annotations`]).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{
    ImageEntry, Problem, Progress, clarifai, clarifai_archive, coco, cvat, labelstudio, manifest,
    voc, yolo,
};
use crate::IngestError;

/// An annotation format imagelens reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// COCO instances/captions JSON ([`coco`]).
    Coco,
    /// Pascal VOC XML folder ([`voc`]).
    Voc,
    /// YOLO / Ultralytics folder with `data.yaml` ([`yolo`]).
    Yolo,
    /// CVAT for images 1.1 XML ([`cvat`]).
    Cvat,
    /// Label Studio JSON export ([`labelstudio`]).
    LabelStudio,
    /// CSV or JSONL manifest ([`manifest`]).
    Csv,
    /// Clarifai dataset export: the export archive itself ([`clarifai_archive`]) or the SDK's
    /// download of it, unpacked ([`clarifai`]).
    Clarifai,
}

impl Format {
    /// Every format, in the order `--format` lists them.
    pub const ALL: [Format; 7] = [
        Format::Coco,
        Format::Voc,
        Format::Yolo,
        Format::Cvat,
        Format::LabelStudio,
        Format::Csv,
        Format::Clarifai,
    ];

    /// The `--format` name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Coco => "coco",
            Format::Voc => "voc",
            Format::Yolo => "yolo",
            Format::Cvat => "cvat",
            Format::LabelStudio => "labelstudio",
            Format::Csv => "csv",
            Format::Clarifai => "clarifai",
        }
    }

    /// The names `--format` accepts, `auto` first.
    pub fn choices() -> String {
        let mut names = vec!["auto"];
        names.extend(Format::ALL.iter().map(|f| f.name()));
        names.join(", ")
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = IngestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "pascal" | "pascal_voc" | "pascalvoc" => "voc",
            "ultralytics" | "yolov8" | "yolov5" => "yolo",
            "cvat_images" | "cvat1.1" => "cvat",
            "label_studio" | "label-studio" | "ls" => "labelstudio",
            "jsonl" | "manifest" => "csv",
            other => other,
        };
        Format::ALL
            .into_iter()
            .find(|f| f.name() == alias)
            .ok_or_else(|| IngestError::Format(s.clone()))
    }
}

/// What [`locate`] found: the format, whether it was detected, and where images live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The format to read.
    pub format: Format,
    /// Whether `auto` chose it (and why, for the user).
    pub detected: Option<String>,
    /// The folder the format keeps its images in (used when `--images` is not given).
    pub images: PathBuf,
}

/// What `auto` looks for, listed in the error when nothing matches.
const LOOKED_FOR: &str = "a COCO JSON object with \"images\" (or a folder with annotations/*.json), \
     a Pascal VOC folder (Annotations/*.xml or *.xml with <annotation>), a YOLO folder \
     (data.yaml, or labels/ with classes.txt) or its data.yaml, a CVAT for images XML \
     (<annotations>), a Label Studio JSON export (a list of tasks with \"data\"), a CSV, TSV or \
     JSONL manifest (or a folder with annotations.csv), a Clarifai dataset export archive (a \
     zip whose mimetype entry reads application/x.clarifai-data+protobuf) or its unpacked SDK \
     download ({split}/inputs and {split}/annotations)";

/// Reads at most this many bytes of a file to recognise it.
const SNIFF_BYTES: u64 = 64 * 1024;

fn sniff(path: &Path) -> Result<String, IngestError> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(SNIFF_BYTES).read_to_end(&mut head))
        .map_err(|e| IngestError::Unreadable {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let head = head
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&head);
    Ok(String::from_utf8_lossy(head).into_owned())
}

/// The first element name of an XML text, skipping the declaration, comments and DOCTYPE.
fn xml_root(head: &str) -> Option<String> {
    let mut rest = head;
    loop {
        let at = rest.find('<')?;
        rest = &rest[at + 1..];
        if rest.starts_with('?') || rest.starts_with('!') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
            .collect();
        return Some(name);
    }
}

fn ext(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Recognises one file.
fn detect_file(path: &Path) -> Result<Option<(Format, String)>, IngestError> {
    let e = ext(path);
    let found = match e.as_str() {
        "csv" | "tsv" | "jsonl" | "ndjson" => Some((Format::Csv, format!("a .{e} manifest"))),
        "yaml" | "yml" => Some((Format::Yolo, "a YOLO data.yaml".to_owned())),
        "zip" if clarifai_archive::is_archive(path) => Some((
            Format::Clarifai,
            "a zip whose mimetype is application/x.clarifai-data+protobuf (Clarifai dataset \
             export)"
                .to_owned(),
        )),
        "xml" => match xml_root(&sniff(path)?).as_deref() {
            Some("annotations") => Some((Format::Cvat, "an XML with <annotations>".to_owned())),
            Some("annotation") => Some((Format::Voc, "an XML with <annotation>".to_owned())),
            _ => None,
        },
        "json" => {
            let head = sniff(path)?;
            match head.trim_start().chars().next() {
                Some('[') => Some((
                    Format::LabelStudio,
                    "a JSON list of tasks (Label Studio)".to_owned(),
                )),
                Some('{') if head.contains("\"images\"") => {
                    Some((Format::Coco, "a JSON object with \"images\"".to_owned()))
                }
                Some('{') if head.contains("\"data\"") => Some((
                    Format::LabelStudio,
                    "a JSON task with \"data\" (Label Studio)".to_owned(),
                )),
                // A COCO file whose images come after a large info block.
                Some('{') => Some((Format::Coco, "a JSON object".to_owned())),
                _ => None,
            }
        }
        _ => None,
    };
    Ok(found)
}

/// Recognises one folder.
fn detect_dir(dir: &Path) -> Option<(Format, String)> {
    let has = |name: &str| dir.join(name).exists();
    if has("data.yaml") || has("data.yml") || (has("labels") && has("classes.txt")) {
        return Some((
            Format::Yolo,
            "a folder with data.yaml or labels/".to_owned(),
        ));
    }
    if dir.join("Annotations").is_dir() {
        return Some((Format::Voc, "a folder with Annotations/".to_owned()));
    }
    if has("annotations.xml") {
        return Some((Format::Cvat, "a folder with annotations.xml".to_owned()));
    }
    if has("annotations.csv") {
        return Some((Format::Csv, "a folder with annotations.csv".to_owned()));
    }
    if !clarifai::split_dirs(dir).is_empty() {
        return Some((
            Format::Clarifai,
            "a folder with inputs/ (Clarifai SDK export)".to_owned(),
        ));
    }
    if dir.join("annotations").is_dir() {
        return Some((Format::Coco, "a folder with annotations/".to_owned()));
    }
    // A plain folder of VOC XML files.
    let xml = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| ext(p) == "xml")
        .take(8)
        .find_map(|p| sniff(&p).ok().and_then(|h| xml_root(&h)));
    (xml.as_deref() == Some("annotation"))
        .then(|| (Format::Voc, "a folder of <annotation> XML files".to_owned()))
}

/// Picks the reader for `paths` (`format` is `auto` or a [`Format`] name) and the folder the
/// format keeps its images in.
///
/// # Errors
/// [`IngestError::Format`] for an unknown name; [`IngestError::Unreadable`] for a path that
/// does not exist, or (with `auto`) paths that match no format or different formats.
pub fn locate(format: &str, paths: &[PathBuf]) -> Result<Located, IngestError> {
    let Some(first) = paths.first() else {
        return Err(IngestError::Unreadable {
            file: "(none)".into(),
            reason: "no annotation path given".into(),
        });
    };
    for p in paths {
        if !p.exists() {
            return Err(IngestError::Unreadable {
                file: p.display().to_string(),
                reason: "no such file or folder".into(),
            });
        }
    }
    let auto = format.trim().eq_ignore_ascii_case("auto");
    let (format, detected) = if auto {
        let mut found: Option<(Format, String)> = None;
        for p in paths {
            let this = if p.is_dir() {
                detect_dir(p)
            } else {
                detect_file(p)?
            };
            let Some((f, why)) = this else {
                return Err(IngestError::Unreadable {
                    file: p.display().to_string(),
                    reason: format!(
                        "no annotation format recognised; looked for {LOOKED_FOR}. Name one \
                         with --format ({})",
                        Format::choices()
                    ),
                });
            };
            match &found {
                Some((before, _)) if *before != f => {
                    return Err(IngestError::Unreadable {
                        file: p.display().to_string(),
                        reason: format!(
                            "looks like {f} while an earlier path looks like {before}; ingest \
                             one format at a time or name it with --format"
                        ),
                    });
                }
                Some(_) => {}
                None => found = Some((f, why)),
            }
        }
        let (f, why) = found.expect("at least one path");
        (f, Some(why))
    } else {
        (format.parse::<Format>()?, None)
    };
    let images = default_images(format, first);
    Ok(Located {
        format,
        detected,
        images,
    })
}

/// Where `format` keeps the images of the export at `path`.
fn default_images(format: Format, path: &Path) -> PathBuf {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let first_dir = |candidates: &[PathBuf]| {
        candidates
            .iter()
            .find(|c| c.is_dir())
            .cloned()
            .unwrap_or_else(|| dir.clone())
    };
    match format {
        Format::Yolo => yolo::images_root(path).unwrap_or_else(|| dir.clone()),
        Format::Voc => {
            let root = if path.is_dir() && path.join("Annotations").is_dir() {
                dir.clone()
            } else {
                dir.parent().map_or_else(|| dir.clone(), Path::to_path_buf)
            };
            first_dir(&[
                root.join("JPEGImages"),
                root.join("images"),
                dir.join("JPEGImages"),
                dir.join("images"),
            ])
        }
        Format::Coco => {
            // The imagelens / common layout: <root>/annotations/*.json beside <root>/images.
            let root = if path.is_dir() {
                dir.clone()
            } else {
                dir.parent().map_or_else(|| dir.clone(), Path::to_path_buf)
            };
            first_dir(&[root.join("images"), dir.join("images")])
        }
        Format::Cvat | Format::LabelStudio | Format::Csv => first_dir(&[dir.join("images")]),
        Format::Clarifai if path.is_dir() => dir.clone(),
        Format::Clarifai => first_dir(&[dir.join("images")]),
    }
}

/// The annotation files of a COCO folder (`annotations/*.json`, else `*.json`), sorted.
fn coco_files(dir: &Path) -> Vec<PathBuf> {
    let list = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && ext(p) == "json")
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let inner = list(&dir.join("annotations"));
    if inner.is_empty() { list(dir) } else { inner }
}

/// What the readers read beyond an export's annotations, when asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Label Studio: a task no annotation covers takes its `predictions` (boxes marked with
    /// annotator `prediction:{model_version}`).
    pub predictions: bool,
}

/// Reads `paths` as `format`; `images` is the folder the entries' file names are relative to
/// (readers that need image sizes, such as YOLO, read the headers there); `extract_to` is
/// where images an export carries inside it (a Clarifai archive) are written. The readers
/// count what they read in `progress` as they go.
///
/// # Errors
/// [`IngestError::Unreadable`] when an input cannot be read at all.
pub fn read_annotations(
    format: Format,
    paths: &[PathBuf],
    images: &Path,
    extract_to: &Path,
    progress: &Progress,
) -> Result<(Vec<ImageEntry>, Vec<Problem>), IngestError> {
    read_annotations_with(
        format,
        paths,
        images,
        extract_to,
        ReadOptions::default(),
        progress,
    )
}

/// [`read_annotations`] with `options`.
///
/// # Errors
/// As [`read_annotations`].
pub fn read_annotations_with(
    format: Format,
    paths: &[PathBuf],
    images: &Path,
    extract_to: &Path,
    options: ReadOptions,
    progress: &Progress,
) -> Result<(Vec<ImageEntry>, Vec<Problem>), IngestError> {
    let mut entries: Vec<ImageEntry> = Vec::new();
    let mut problems = Vec::new();
    match format {
        Format::Coco => {
            let mut files = Vec::new();
            for p in paths {
                if p.is_dir() {
                    let found = coco_files(p);
                    if found.is_empty() {
                        return Err(IngestError::Unreadable {
                            file: p.display().to_string(),
                            reason: "a folder without annotations/*.json or *.json".into(),
                        });
                    }
                    files.extend(found);
                } else {
                    files.push(p.clone());
                }
            }
            return coco::read_exports(&files, progress);
        }
        Format::Voc => {
            for p in paths {
                entries.extend(voc::read_path(p, images, &mut problems, progress)?);
            }
        }
        Format::Yolo => {
            for p in paths {
                entries.extend(yolo::read_path(p, images, &mut problems, progress)?);
            }
        }
        Format::Cvat => {
            for p in paths {
                let file = if p.is_dir() {
                    p.join("annotations.xml")
                } else {
                    p.clone()
                };
                entries.extend(cvat::read_file(&file, images, &mut problems, progress)?);
            }
        }
        Format::LabelStudio => {
            for p in paths {
                entries.extend(labelstudio::read_file(
                    p,
                    images,
                    options.predictions,
                    &mut problems,
                    progress,
                )?);
            }
        }
        Format::Csv => {
            for p in paths {
                let file = if p.is_dir() {
                    p.join("annotations.csv")
                } else {
                    p.clone()
                };
                entries.extend(manifest::read_file(&file, &mut problems, progress)?);
            }
        }
        Format::Clarifai => {
            for p in paths {
                if p.is_file() {
                    entries.extend(clarifai_archive::read_archive(
                        p,
                        images,
                        extract_to,
                        &mut problems,
                        progress,
                    )?);
                } else {
                    entries.extend(clarifai::read_dir(p, &mut problems, progress)?);
                }
            }
        }
    }
    Ok((super::merge_by_name(entries), problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_and_aliases_parse() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
        assert_eq!(
            "Label-Studio".parse::<Format>().unwrap(),
            Format::LabelStudio
        );
        assert_eq!("jsonl".parse::<Format>().unwrap(), Format::Csv);
        assert!("tfrecord".parse::<Format>().is_err());
    }

    #[test]
    fn auto_detects_each_format_and_lists_what_it_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |name: &str, text: &str| {
            let p = d.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        };
        let cases = [
            (write("c.json", "{\"info\":{},\"images\":[]}"), Format::Coco),
            (write("ls.json", " [ {\"data\":{}} ]"), Format::LabelStudio),
            (
                write(
                    "cvat.xml",
                    "<?xml version=\"1.0\"?>\n<annotations><version>1.1</version></annotations>",
                ),
                Format::Cvat,
            ),
            (
                write(
                    "one.xml",
                    "<!-- x --><annotation><filename>a.jpg</filename></annotation>",
                ),
                Format::Voc,
            ),
            (write("m.csv", "filename,label\n"), Format::Csv),
            (write("m.jsonl", "{}\n"), Format::Csv),
            (write("y/data.yaml", "names: [a]\n"), Format::Yolo),
        ];
        for (path, want) in &cases {
            let got = locate("auto", std::slice::from_ref(path)).unwrap();
            assert_eq!(got.format, *want, "{path:?}");
            assert!(got.detected.is_some());
        }
        assert_eq!(locate("auto", &[d.join("y")]).unwrap().format, Format::Yolo);
        std::fs::create_dir_all(d.join("cl/train/inputs")).unwrap();
        assert_eq!(
            locate("auto", &[d.join("cl")]).unwrap().format,
            Format::Clarifai
        );
        std::fs::create_dir_all(d.join("v/Annotations")).unwrap();
        assert_eq!(locate("auto", &[d.join("v")]).unwrap().format, Format::Voc);

        let other = write("notes.txt", "hello");
        let err = locate("auto", &[other]).unwrap_err().to_string();
        for wanted in [
            "COCO",
            "Pascal VOC",
            "YOLO",
            "CVAT",
            "Label Studio",
            "CSV",
            "--format",
        ] {
            assert!(err.contains(wanted), "{wanted} missing from: {err}");
        }
        // A folder that matches no format: the error names it, everything looked for, and
        // every --format choice.
        let plain = d.join("photos");
        std::fs::create_dir_all(plain.join("sub")).unwrap();
        std::fs::write(plain.join("a.png"), b"\x89PNG").unwrap();
        std::fs::write(plain.join("sub/readme.txt"), "hello").unwrap();
        let err = locate("auto", std::slice::from_ref(&plain)).unwrap_err();
        let IngestError::Unreadable { file, reason } = &err else {
            panic!("{err}")
        };
        assert_eq!(file, &plain.display().to_string());
        assert!(
            reason.starts_with("no annotation format recognised; looked for "),
            "{reason}"
        );
        assert!(reason.contains(LOOKED_FOR), "{reason}");
        assert!(reason.contains(&Format::choices()), "{reason}");
        for f in Format::ALL {
            assert!(reason.contains(f.name()), "{f} missing from: {reason}");
        }
        let err = locate("auto", &[d.join("gone.json")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
        let err = locate("auto", &[cases[0].0.clone(), cases[2].0.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("one format at a time"), "{err}");
        // A named format is taken as given.
        let named = locate("voc", std::slice::from_ref(&cases[0].0)).unwrap();
        assert_eq!((named.format, named.detected), (Format::Voc, None));
    }
}
