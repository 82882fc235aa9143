//! Pascal VOC: a folder of `<annotation>` XML files (`Annotations/`, one per image) beside
//! `JPEGImages/`, with `ImageSets/Main/{train,val,test,trainval}.txt` as splits.
//!
//! Coordinates are VOC's 1-based inclusive pixels: `xmin = 1, xmax = W` covers a whole image
//! `W` wide, so a box is `x = xmin - 1, w = xmax - xmin + 1` in our 0-based convention.
//! A file's image is `<filename>` in the same sub-folder of the images folder as the XML is in
//! `Annotations/`. A file that cannot be read or is not a VOC annotation is one problem; an
//! object without a name or a readable `bndbox` is kept as an uncertain annotation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::xml::{Element, XmlStream};
use super::{ImageEntry, Problem, Progress, RawBox, text};
use crate::IngestError;
use crate::record::UncertainAnnotation;

/// Largest annotation file read (one image's XML).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Most files walked in one folder tree.
pub(crate) const MAX_FILES: usize = 5_000_000;

/// Reads a VOC folder (with or without `Annotations/`) or one XML file.
///
/// # Errors
/// [`IngestError::Unreadable`] when the path cannot be read, holds no XML file, or (a single
/// file) is not a VOC annotation.
pub fn read_path(
    path: &Path,
    _images: &Path,
    problems: &mut Vec<Problem>,
    progress: &Progress,
) -> Result<Vec<ImageEntry>, IngestError> {
    let unreadable = |reason: String| IngestError::Unreadable {
        file: path.display().to_string(),
        reason,
    };
    if !path.is_dir() {
        let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        let shown = path.display().to_string();
        return match parse(&bytes, &shown, "", problems) {
            Ok(entry) => {
                entry.iter().for_each(|e| progress.entry(e));
                Ok(entry.into_iter().collect())
            }
            Err(reason) => Err(unreadable(reason)),
        };
    }
    let annotations = if path.join("Annotations").is_dir() {
        path.join("Annotations")
    } else {
        path.to_path_buf()
    };
    let files = walk(&annotations, "xml").map_err(unreadable)?;
    if files.is_empty() {
        return Err(unreadable(format!(
            "no .xml files in {}",
            annotations.display()
        )));
    }
    let splits = read_splits(path, problems);
    let mut entries = Vec::new();
    for file in files {
        let shown = file.display().to_string();
        let sub = file
            .parent()
            .and_then(|p| p.strip_prefix(&annotations).ok())
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let bytes = match std::fs::metadata(&file) {
            Ok(m) if m.len() > MAX_FILE_BYTES => Err(format!(
                "{} bytes, more than the limit of {MAX_FILE_BYTES}",
                m.len()
            )),
            _ => std::fs::read(&file).map_err(|e| e.to_string()),
        };
        let parsed = bytes.and_then(|b| parse(&b, &shown, &sub, problems));
        match parsed {
            Ok(Some(mut entry)) => {
                let stem = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match splits.get(&stem) {
                    Some(Value::String(one)) => entry.split = Some(one.clone()),
                    // Listed in several splits: no one split; the lists are kept.
                    Some(several) => {
                        entry.metadata.insert("splits".into(), several.clone());
                    }
                    None => {}
                }
                progress.entry(&entry);
                entries.push(entry);
            }
            Ok(None) => {}
            Err(reason) => problems.push(Problem {
                file: shown,
                item: "file".into(),
                reason: format!("{reason}; file skipped"),
            }),
        }
    }
    Ok(entries)
}

/// Every file with extension `ext` under `dir`, sorted, at most [`MAX_FILES`].
pub(crate) fn walk(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = todo.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| format!("cannot list {}: {e}", d.display()))?;
        for e in rd.filter_map(Result::ok) {
            seen += 1;
            if seen > MAX_FILES {
                return Err(format!(
                    "more than {MAX_FILES} files under {}",
                    dir.display()
                ));
            }
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                todo.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x.to_string_lossy().eq_ignore_ascii_case(ext))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `ImageSets/Main/{train,val,test}.txt` (and `trainval.txt` for ids in neither train nor
/// val): image id -> split name, or a list when an id is in several.
fn read_splits(root: &Path, problems: &mut Vec<Problem>) -> HashMap<String, Value> {
    let mut by_id: HashMap<String, Vec<String>> = HashMap::new();
    let dir = root.join("ImageSets").join("Main");
    for split in ["train", "val", "test", "trainval"] {
        let file = dir.join(format!("{split}.txt"));
        if !file.is_file() {
            continue;
        }
        let listed = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem {
                    file: file.display().to_string(),
                    item: "file".into(),
                    reason: format!("{e}; split list skipped"),
                });
                continue;
            }
        };
        for id in listed.lines().filter_map(|l| l.split_whitespace().next()) {
            let splits = by_id.entry(id.to_owned()).or_default();
            let covered = split == "trainval" && !splits.is_empty();
            if !covered && !splits.iter().any(|s| s == split) {
                splits.push(split.to_owned());
            }
        }
    }
    by_id
        .into_iter()
        .map(|(id, s)| {
            let v = if s.len() == 1 { json!(s[0]) } else { json!(s) };
            (id, v)
        })
        .collect()
}

fn number(el: &Element, name: &str) -> Option<f64> {
    el.text_of(name)
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

fn flag(el: &Element, name: &str) -> Option<bool> {
    match el.text_of(name)? {
        "1" | "true" | "True" | "yes" => Some(true),
        "0" | "false" | "False" | "no" => Some(false),
        _ => None,
    }
}

/// Parses one VOC annotation file; `sub` is its folder below `Annotations/` (`""` at the top).
/// `Ok(None)` when the file names no image (reported).
///
/// # Errors
/// A reason when the bytes are not XML or not a VOC `<annotation>`.
pub fn parse(
    bytes: &[u8],
    shown: &str,
    sub: &str,
    problems: &mut Vec<Problem>,
) -> Result<Option<ImageEntry>, String> {
    let bytes = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(bytes);
    let (mut stream, root) = XmlStream::open(bytes)?;
    if root.name != "annotation" {
        return Err(format!(
            "not a VOC annotation: the root element is <{}>",
            root.name
        ));
    }
    let mut doc = root;
    while let Some(child) = stream.next_child()? {
        doc.children.push(child);
    }
    let problem = |item: &str, reason: String| Problem {
        file: shown.to_owned(),
        item: item.to_owned(),
        reason,
    };
    let Some(filename) = doc.text_of("filename").map(|f| f.replace('\\', "/")) else {
        problems.push(problem(
            "filename",
            "no <filename>; its image is unknown and the file is skipped".into(),
        ));
        return Ok(None);
    };
    let file_name = if sub.is_empty() {
        filename
    } else {
        format!("{sub}/{filename}")
    };
    let mut entry = ImageEntry::new(file_name, shown);
    if let Some(size) = doc.child("size") {
        let dim = |n: &str| {
            number(size, n)
                .filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX))
                .map(|v| v as u32)
        };
        entry.width = dim("width");
        entry.height = dim("height");
    }
    if let Some(db) = doc.child("source").and_then(|s| s.text_of("database")) {
        entry.metadata.insert("source".into(), json!(db));
    }
    if let Some(owner) = doc.child("owner").and_then(|o| o.text_of("name")) {
        entry.annotators.push(owner.to_owned());
    }
    for (i, obj) in doc.all("object").enumerate() {
        let name = obj.text_of("name").map(str::to_owned);
        let item = match &name {
            Some(n) => format!("object[{i}] {n}"),
            None => format!("object[{i}]"),
        };
        let bndbox = obj.child("bndbox").and_then(|b| {
            Some([
                number(b, "xmin")?,
                number(b, "ymin")?,
                number(b, "xmax")?,
                number(b, "ymax")?,
            ])
        });
        let rect = bndbox.map(|[x0, y0, x1, y1]| {
            [
                (x0 - 1.0) as f32,
                (y0 - 1.0) as f32,
                (x1 - x0 + 1.0) as f32,
                (y1 - y0 + 1.0) as f32,
            ]
        });
        let (Some(label), Some(rect)) = (name.clone(), rect) else {
            let why = if name.is_none() {
                "object without a <name>"
            } else {
                "object without a readable <bndbox> (xmin, ymin, xmax, ymax)"
            };
            let labels: Vec<String> = name.into_iter().collect();
            super::skip_box(
                problems,
                shown,
                &mut entry.uncertain,
                UncertainAnnotation {
                    item: item.clone(),
                    labels,
                    region: rect,
                    reason: why.into(),
                },
            );
            continue;
        };
        let mut b = RawBox::new(label, rect, item);
        let mut attrs: BTreeMap<String, Value> = BTreeMap::new();
        if let Some(pose) = obj.text_of("pose").filter(|p| *p != "Unspecified") {
            attrs.insert("pose".into(), json!(pose));
        }
        for f in ["truncated", "difficult", "occluded"] {
            if let Some(true) = flag(obj, f) {
                attrs.insert(f.into(), json!(true));
            }
        }
        // CVAT's and Roboflow's VOC flavour: <attributes><attribute><name/><value/></attribute>.
        if let Some(list) = obj.child("attributes") {
            for a in list.all("attribute") {
                if let (Some(k), Some(v)) = (a.text_of("name"), a.text_of("value")) {
                    attrs.insert(k.to_owned(), json!(v));
                }
            }
        }
        b.attributes = attrs.into();
        entry.boxes.push(b);
    }
    if let Some(seg) = doc.text_of("segmented").and_then(text)
        && seg != "0"
    {
        entry.metadata.insert("segmented".into(), json!(seg));
    }
    Ok(Some(entry))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const VALID: &str = r#"<annotation>
  <folder>VOC2007</folder>
  <filename>000005.jpg</filename>
  <source><database>The VOC2007 Database</database></source>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <segmented>0</segmented>
  <object>
    <name>chair</name><pose>Rear</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox>
  </object>
  <object>
    <name>face</name><pose>Unspecified</pose><truncated>1</truncated><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>500</xmax><ymax>375.5</ymax></bndbox>
  </object>
  <object><name>car</name><bndbox><xmin>x</xmin></bndbox></object>
  <object><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>
</annotation>"#;

    #[test]
    fn a_voc_file_reads_to_exactly_its_objects() {
        let mut problems = Vec::new();
        let e = parse(VALID.as_bytes(), "a.xml", "sub", &mut problems)
            .unwrap()
            .unwrap();
        assert_eq!(e.file_name, "sub/000005.jpg");
        assert_eq!((e.width, e.height), (Some(500), Some(375)));
        assert_eq!(e.metadata["source"], json!("The VOC2007 Database"));
        assert_eq!(e.boxes.len(), 2);
        let chair = &e.boxes[0];
        assert_eq!(chair.label, "chair");
        assert_eq!(
            [chair.x, chair.y, chair.w, chair.h],
            [262.0, 210.0, 62.0, 129.0]
        );
        assert_eq!(
            chair.attributes,
            BTreeMap::from([("pose".into(), json!("Rear"))])
        );
        let face = &e.boxes[1];
        assert_eq!([face.x, face.y, face.w, face.h], [0.0, 0.0, 500.0, 375.5]);
        assert_eq!(
            face.attributes,
            BTreeMap::from([
                ("difficult".into(), json!(true)),
                ("truncated".into(), json!(true))
            ])
        );
        // The unreadable objects are uncertain (redaction fails closed) and reported.
        let u: Vec<_> = e
            .uncertain
            .iter()
            .map(|u| (u.labels.clone(), u.region))
            .collect();
        assert_eq!(
            u,
            vec![
                (vec!["car".to_owned()], None),
                (vec![], Some([4.0, 4.0, 5.0, 5.0]))
            ]
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn a_folder_reads_sub_folders_splits_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("Annotations/d")).unwrap();
        std::fs::create_dir_all(root.join("ImageSets/Main")).unwrap();
        std::fs::write(root.join("Annotations/000005.xml"), VALID).unwrap();
        std::fs::write(
            root.join("Annotations/d/b.xml"),
            "<annotation><filename>b.png</filename></annotation>",
        )
        .unwrap();
        std::fs::write(root.join("Annotations/broken.xml"), "<annotation><a>").unwrap();
        std::fs::write(root.join("ImageSets/Main/train.txt"), "000005\n").unwrap();
        std::fs::write(root.join("ImageSets/Main/trainval.txt"), "000005\nb\n").unwrap();
        let mut problems = Vec::new();
        let entries = read_path(root, root, &mut problems, &Progress::default()).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.file_name.as_str()).collect();
        assert_eq!(names, ["000005.jpg", "d/b.png"]);
        assert_eq!(entries[0].split.as_deref(), Some("train"));
        assert_eq!(entries[1].split.as_deref(), Some("trainval"));
        assert!(
            problems
                .iter()
                .any(|p| p.file.ends_with("broken.xml") && p.reason.contains("skipped")),
            "{problems:?}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(
            read_path(
                empty.path(),
                empty.path(),
                &mut Vec::new(),
                &Progress::default()
            )
            .is_err()
        );
    }

    proptest! {
        #![proptest_config(crate::ingest::proptest_config())]

        #[test]
        fn arbitrary_bytes_are_read_or_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut problems = Vec::new();
            if let Err(e) = parse(&bytes, "fuzz.xml", "", &mut problems) {
                prop_assert!(!e.is_empty());
            }
        }

        #[test]
        fn mutated_files_are_read_or_reported(cuts in prop::collection::vec((any::<prop::sample::Index>(), 0usize..12, "[<>/a-z0-9 .&;-]{0,6}"), 1..4)) {
            let mut text = VALID.to_owned();
            for (at, len, insert) in &cuts {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) { i -= 1; }
                let mut j = (i + len).min(text.len());
                while !text.is_char_boundary(j) { j -= 1; }
                text.replace_range(i..j, insert);
            }
            let mut problems = Vec::new();
            match parse(text.as_bytes(), "fuzz.xml", "", &mut problems) {
                Err(e) => prop_assert!(!e.is_empty()),
                Ok(None) => prop_assert!(!problems.is_empty()),
                Ok(Some(e)) => {
                    // Every object is a box or an uncertain annotation that was reported.
                    let objects = text.matches("<object>").count();
                    prop_assert!(e.boxes.len() + e.uncertain.len() <= objects.max(text.matches("<object").count()));
                    for u in &e.uncertain {
                        prop_assert!(problems.iter().any(|p| p.item == u.item));
                    }
                }
            }
        }
    }
}
