//! Issue 12: every annotation format reads into the same records. The same generated scene
//! written as COCO, Pascal VOC, YOLO and CVAT ingests to the same records; each export format
//! imagelens writes (COCO, YOLO, VOC, CSV) ingests back into a fresh library unchanged; CVAT,
//! Label Studio and CSV fixtures ingest to the records they describe; the CLI detects formats.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use imagelens::export::{ArchiveFormat, DatasetFormat, Provenance, write_dataset};
use indexer::ingest::{Format, locate, read_annotations};
use indexer::record::Record;
use indexer::synth::{SynthLibrary, SynthOptions, write_library};
use indexer::{IngestOptions, IngestReport, Library, StoreSettings, ingest};
use serde_json::json;

use crate::common::{bin, ok_json, path_str, png};

const W: u32 = 64;
const H: u32 = 48;

fn synth(dir: &Path, count: usize) -> SynthLibrary {
    write_library(
        dir,
        &SynthOptions {
            count,
            width: W,
            height: H,
            seed: 23,
            jpeg: true,
        },
    )
    .unwrap()
}

/// Ingests `annotations` (format `auto` unless named) into a fresh library without a model;
/// `images` defaults to where the format keeps them. Returns the report and the records by
/// path.
/// `imagelens --data-dir DATA ARGS` without a model.
fn no_model_cli(data: &Path, args: &[&str]) -> std::process::Output {
    bin()
        .arg("--data-dir")
        .arg(data)
        .env("IMAGELENS_NO_MODEL", "true")
        .args(args)
        .output()
        .unwrap()
}

fn ingest_fresh(
    dir: &Path,
    format: &str,
    annotations: &[PathBuf],
    images: Option<&Path>,
) -> (IngestReport, BTreeMap<String, Record>) {
    let located = locate(format, annotations).unwrap();
    let data = tempfile::tempdir_in(dir).unwrap();
    let mut lib = Library::open(data.path(), StoreSettings::Edge).unwrap();
    let opts = IngestOptions {
        format: format.into(),
        annotations: annotations.to_vec(),
        images: images.map_or(located.images, Path::to_path_buf),
        dataset: "d".into(),
        progress: false,
        ..IngestOptions::default()
    };
    let report = ingest(&mut lib, None, &opts).unwrap();
    lib.keyword().reload().unwrap();
    let ids: Vec<String> = lib.keyword().ids().unwrap().into_iter().collect();
    let records = lib
        .keyword()
        .get_many(&ids)
        .unwrap()
        .into_iter()
        .map(|r| (r.path.clone(), r))
        .collect();
    (report, records)
}

type Shape = (String, Vec<String>, Vec<(String, [f32; 4])>);

/// What must agree between formats: id, labels and boxes, by path.
fn shape(records: &BTreeMap<String, Record>) -> BTreeMap<String, Shape> {
    records
        .iter()
        .map(|(p, r)| {
            let mut labels = r.labels.clone();
            labels.sort();
            let mut boxes: Vec<(String, [f32; 4])> = r
                .boxes
                .iter()
                .map(|b| (b.label.clone(), [b.x, b.y, b.w, b.h]))
                .collect();
            boxes.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            (p.clone(), (r.id.clone(), labels, boxes))
        })
        .collect()
}

fn assert_same(
    what: &str,
    got: &BTreeMap<String, Shape>,
    want: &BTreeMap<String, Shape>,
    tol: f32,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: paths"
    );
    for (path, (id, labels, boxes)) in want {
        let (gid, glabels, gboxes) = &got[path];
        assert_eq!((gid, glabels), (id, labels), "{what}: {path}");
        assert_eq!(gboxes.len(), boxes.len(), "{what}: {path} boxes");
        for ((gl, g), (l, b)) in gboxes.iter().zip(boxes) {
            assert_eq!(gl, l, "{what}: {path}");
            for k in 0..4 {
                assert!((g[k] - b[k]).abs() <= tol, "{what}: {path} {g:?} vs {b:?}");
            }
        }
    }
}

fn stem(path: &str) -> &str {
    path.rsplit_once('.').map_or(path, |(s, _)| s)
}

/// The scene as a VOC folder (1-based inclusive pixels) with its images in `JPEGImages/`.
fn write_voc(src: &SynthLibrary, root: &Path) {
    for s in &src.scenes {
        let (sub, name) = s.file_name.rsplit_once('/').unwrap_or(("", &s.file_name));
        let mut xml = format!(
            "<annotation><folder>VOC</folder><filename>{name}</filename>\
             <size><width>{W}</width><height>{H}</height><depth>3</depth></size>"
        );
        for b in &s.boxes {
            let [x, y, w, h] = b.bbox;
            xml.push_str(&format!(
                "<object><name>{}</name><pose>Unspecified</pose><truncated>0</truncated>\
                 <difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax>\
                 <ymax>{}</ymax></bndbox></object>",
                b.label,
                x + 1.0,
                y + 1.0,
                x + w,
                y + h
            ));
        }
        xml.push_str("</annotation>");
        let file = root
            .join("Annotations")
            .join(sub)
            .join(format!("{}.xml", stem(name)));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, xml).unwrap();
        let image = root.join("JPEGImages").join(&s.file_name);
        std::fs::create_dir_all(image.parent().unwrap()).unwrap();
        std::fs::copy(src.images.join(&s.file_name), image).unwrap();
    }
}

/// The scene as an Ultralytics data set: names as a map, one label file per image.
fn write_yolo(src: &SynthLibrary, root: &Path) -> Vec<String> {
    let mut names: Vec<String> = src
        .scenes
        .iter()
        .flat_map(|s| s.boxes.iter().map(|b| b.label.to_owned()))
        .collect();
    names.sort();
    names.dedup();
    let mut yaml = "path: .\ntrain: images/train\nnames:\n".to_owned();
    for (i, n) in names.iter().enumerate() {
        yaml.push_str(&format!("  {i}: {n}\n"));
    }
    std::fs::write(root.join("data.yaml"), yaml).unwrap();
    for s in &src.scenes {
        let mut text = String::new();
        for b in &s.boxes {
            let [x, y, w, h] = b.bbox;
            let class = names.iter().position(|n| n == b.label).unwrap();
            let (iw, ih) = (f64::from(W), f64::from(H));
            let (x, y, w, h) = (f64::from(x), f64::from(y), f64::from(w), f64::from(h));
            text.push_str(&format!(
                "{class} {:.6} {:.6} {:.6} {:.6}\n",
                (x + w / 2.0) / iw,
                (y + h / 2.0) / ih,
                w / iw,
                h / ih
            ));
        }
        let label = root
            .join("labels/train")
            .join(format!("{}.txt", stem(&s.file_name)));
        std::fs::create_dir_all(label.parent().unwrap()).unwrap();
        std::fs::write(label, text).unwrap();
        let image = root.join("images/train").join(&s.file_name);
        std::fs::create_dir_all(image.parent().unwrap()).unwrap();
        std::fs::copy(src.images.join(&s.file_name), image).unwrap();
    }
    names
}

/// The scene as CVAT for images 1.1, boxes as `<box>`, one as a `<polygon>`.
fn write_cvat(src: &SynthLibrary, file: &Path) {
    let mut xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<annotations><version>1.1</version>\
                   <meta><task><id>1</id><name>scene</name></task></meta>"
        .to_owned();
    for (i, s) in src.scenes.iter().enumerate() {
        xml.push_str(&format!(
            "<image id=\"{i}\" name=\"{}\" width=\"{W}\" height=\"{H}\">",
            s.file_name
        ));
        for (k, b) in s.boxes.iter().enumerate() {
            let [x, y, w, h] = b.bbox;
            if k == 1 {
                xml.push_str(&format!(
                    "<polygon label=\"{}\" occluded=\"0\" points=\"{x},{y};{},{y};{},{};{x},{}\"/>",
                    b.label,
                    x + w,
                    x + w / 2.0,
                    y + h,
                    y + h / 2.0
                ));
            } else {
                xml.push_str(&format!(
                    "<box label=\"{}\" occluded=\"0\" xtl=\"{x}\" ytl=\"{y}\" xbr=\"{}\" ybr=\"{}\"/>",
                    b.label,
                    x + w,
                    y + h
                ));
            }
        }
        xml.push_str("</image>");
    }
    xml.push_str("</annotations>");
    std::fs::write(file, xml).unwrap();
}

#[test]
fn the_same_scene_from_coco_voc_yolo_and_cvat_gives_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth(&dir.path().join("coco"), 9);
    let (report, coco) = ingest_fresh(
        dir.path(),
        "auto",
        &[src.instances.clone(), src.captions.clone()],
        Some(&src.images),
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(coco.len(), 9);
    let want = shape(&coco);

    let voc = dir.path().join("voc");
    write_voc(&src, &voc);
    assert_eq!(
        locate("auto", std::slice::from_ref(&voc)).unwrap().format,
        Format::Voc
    );
    let (report, got) = ingest_fresh(dir.path(), "auto", std::slice::from_ref(&voc), None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_same("voc", &shape(&got), &want, 0.0);

    let yolo = dir.path().join("yolo");
    std::fs::create_dir_all(&yolo).unwrap();
    write_yolo(&src, &yolo);
    let (report, got) = ingest_fresh(dir.path(), "auto", std::slice::from_ref(&yolo), None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // Six decimals of a fraction of 64 pixels.
    assert_same("yolo", &shape(&got), &want, 0.001);
    assert!(got.values().all(|r| r.split.as_deref() == Some("train")));

    let cvat = dir.path().join("annotations.xml");
    write_cvat(&src, &cvat);
    let (report, got) = ingest_fresh(
        dir.path(),
        "auto",
        std::slice::from_ref(&cvat),
        Some(&src.images),
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_same("cvat", &shape(&got), &want, 0.0);

    // What the parse stage's progress line counts: every image once, and every annotation
    // (for COCO, each object of both files' `annotations`, captions included).
    let coco_annotations: usize = [&src.instances, &src.captions]
        .iter()
        .map(|f| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            v["annotations"].as_array().unwrap().len()
        })
        .sum();
    let carried = tempfile::tempdir().unwrap();
    for paths in [
        vec![src.instances.clone(), src.captions.clone()],
        vec![voc],
        vec![yolo],
        vec![cvat],
    ] {
        let located = locate("auto", &paths).unwrap();
        let (format, images) = match located.format {
            Format::Coco | Format::Cvat => (located.format, src.images.clone()),
            _ => (located.format, located.images),
        };
        let progress = indexer::ingest::Progress::default();
        let (entries, problems) =
            read_annotations(format, &paths, &images, carried.path(), &progress).unwrap();
        assert!(problems.is_empty(), "{format:?}: {problems:?}");
        let counts = progress.counts();
        assert_eq!(counts.images, 9, "{format:?}");
        assert_eq!(entries.len(), 9, "{format:?}");
        let annotations: usize = entries.iter().map(|e| e.annotations()).sum();
        let items = if format == Format::Coco {
            coco_annotations
        } else {
            annotations
        };
        assert!(items > 9, "{format:?}: {items} annotations");
        assert_eq!(counts.items, items as u64, "{format:?}");
    }
}

fn export_to(records: &[Record], format: DatasetFormat, dir: &Path) {
    let provenance = Provenance {
        created: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
        requested_by: "test".into(),
        source: json!({"test": true}),
        library: json!({}),
        model: None,
        format,
        images_redacted: false,
        records: vec![],
    };
    let mut bytes = Vec::new();
    write_dataset(&mut bytes, records, format, ArchiveFormat::Tar, &provenance).unwrap();
    tar::Archive::new(bytes.as_slice()).unpack(dir).unwrap();
}

#[test]
fn exports_ingest_back_into_a_fresh_library_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth(&dir.path().join("src"), 7);
    let (_, original) = ingest_fresh(
        dir.path(),
        "coco",
        &[src.instances.clone(), src.captions.clone()],
        Some(&src.images),
    );
    // Splits as another tool's export would have given them, one record without.
    let mut records: Vec<Record> = original.values().cloned().collect();
    for (i, r) in records.iter_mut().enumerate() {
        r.split = match i % 3 {
            0 => Some("train".into()),
            1 => Some("val".into()),
            _ => None,
        };
    }
    let splits: BTreeMap<String, Option<String>> = records
        .iter()
        .map(|r| (r.path.clone(), r.split.clone()))
        .collect();
    assert!(splits.values().any(Option::is_none) && splits.values().any(Option::is_some));
    // Box attributes as a CVAT export would have given them, on every third record's boxes,
    // and an image attribute on every fourth record.
    for r in records.iter_mut().step_by(3) {
        for b in &mut r.boxes {
            b.attributes.insert("color".into(), json!("white"));
            b.attributes.insert("occluded".into(), json!(true));
        }
    }
    for r in records.iter_mut().step_by(4) {
        r.attributes.insert("weather".into(), json!("rain"));
    }
    // Negative labels ("not X"), as a Clarifai export would have given them, on every third
    // record from the second.
    for r in records.iter_mut().skip(1).step_by(3) {
        r.negative_labels = vec!["unicorn".into(), "person, seated".into()];
    }
    let negative: BTreeMap<String, Vec<String>> = records
        .iter()
        .map(|r| (r.path.clone(), r.negative_labels.clone()))
        .collect();
    assert!(negative.values().any(|n| !n.is_empty()));
    // The tool's image ids, as a Clarifai or CVAT export would have given them, on most.
    for (i, r) in records.iter_mut().enumerate() {
        r.source_id = (i % 5 != 0).then(|| format!("input-{i}"));
    }
    // Outlines on every other record's first box: a triangle in its box's top-left half.
    for r in records.iter_mut().step_by(2) {
        if let Some(b) = r.boxes.first_mut() {
            b.polygons = vec![vec![[b.x, b.y], [b.x + b.w, b.y], [b.x, b.y + b.h]]];
        }
    }
    let outlines: BTreeMap<String, Vec<Vec<Vec<[f32; 2]>>>> = records
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.boxes.iter().map(|b| b.polygons.clone()).collect(),
            )
        })
        .collect();
    assert!(outlines.values().flatten().any(|p| !p.is_empty()));
    type Attributes = (
        BTreeMap<String, serde_json::Value>,
        Vec<BTreeMap<String, serde_json::Value>>,
    );
    let attributes: BTreeMap<String, Attributes> = records
        .iter()
        .map(|r| {
            let boxes = r.boxes.iter().map(|b| b.attributes.clone()).collect();
            (r.path.clone(), (r.attributes.clone(), boxes))
        })
        .collect();
    assert!(attributes.values().any(|a| !a.0.is_empty()));
    assert!(
        attributes
            .values()
            .any(|a| a.1.iter().any(|b| !b.is_empty()))
    );
    let want = shape(&original);
    for (format, tol, captions, dates) in [
        (DatasetFormat::Coco, 0.0, true, true),
        (DatasetFormat::Yolo, 0.001, false, false),
        (DatasetFormat::YoloSeg, 0.001, false, false),
        (DatasetFormat::Voc, 0.0, false, false),
        (DatasetFormat::Csv, 0.0, true, true),
    ] {
        let out = dir.path().join(format!("export-{}", format.as_str()));
        export_to(&records, format, &out);
        // `auto` finds the format in the export's folder and its images where it keeps them.
        let located = locate("auto", std::slice::from_ref(&out)).unwrap();
        // YOLO for segmentation is read by the YOLO reader.
        let reader = match format {
            DatasetFormat::YoloSeg => "yolo",
            other => other.as_str(),
        };
        assert_eq!(located.format.name(), reader);
        assert_eq!(
            located.images.canonicalize().unwrap(),
            out.join("images").canonicalize().unwrap()
        );
        let (report, back) = ingest_fresh(dir.path(), "auto", &[out], None);
        assert!(
            report.problems.is_empty(),
            "{format:?}: {:?}",
            report.problems
        );
        assert_same(format.as_str(), &shape(&back), &want, tol);
        for (path, r) in &back {
            let o = &original[path];
            assert_eq!(r.filename, o.filename);
            assert_eq!(r.sha256, o.sha256);
            if captions {
                assert_eq!(r.captions, o.captions, "{format:?} {path}");
            }
            if dates {
                assert_eq!(r.dates.captured, o.dates.captured, "{format:?} {path}");
            }
            // Every format holds the split: COCO and CSV as a field, YOLO as data.yaml's image
            // lists, VOC as ImageSets/Main lists.
            assert_eq!(r.split, splits[path], "{format:?} {path}");
            if !matches!(format, DatasetFormat::Yolo | DatasetFormat::YoloSeg) {
                // COCO holds box attributes (on each annotation, as CVAT writes them), CSV as
                // a JSON column on each box row, VOC as its own fields and CVAT's VOC
                // `<attributes>`; COCO the image's on the image, CSV in a JSON column
                // repeated on the image's rows. YOLO holds none, VOC no image's.
                let boxes: Vec<_> = r.boxes.iter().map(|b| b.attributes.clone()).collect();
                assert_eq!(boxes, attributes[path].1, "{format:?} {path}");
            }
            if matches!(format, DatasetFormat::Coco | DatasetFormat::Csv) {
                assert_eq!(r.attributes, attributes[path].0, "{format:?} {path}");
                let want = records.iter().find(|o| &o.path == path).unwrap();
                assert_eq!(r.source_id, want.source_id, "{format:?} {path}");
                // Every column the reader knows lands in its field, not in metadata too.
                for k in [
                    "polygons",
                    "source_id",
                    "attributes",
                    "image_attributes",
                    "split",
                    "negative_labels",
                ] {
                    assert!(!r.metadata.contains_key(k), "{format:?} {path}: {k}");
                }
                // Negative labels: on the COCO image, in a CSV column; never labels.
                assert_eq!(r.negative_labels, negative[path], "{format:?} {path}");
                assert!(
                    !r.labels.iter().any(|l| l == "unicorn"),
                    "{format:?} {path}"
                );
                // COCO holds outlines as `segmentation`, CSV in a `polygons` column.
                let got: Vec<_> = r.boxes.iter().map(|b| b.polygons.clone()).collect();
                assert_eq!(got, outlines[path], "{format:?} {path}");
            }
            if format == DatasetFormat::YoloSeg {
                // Segment rows hold the outlines (to 6 decimals of the image's size); a box
                // without one was written as its rectangle and reads back as a plain box.
                let got: Vec<_> = r.boxes.iter().map(|b| b.polygons.clone()).collect();
                assert_eq!(got.len(), outlines[path].len(), "{path}");
                for (g, w) in got.iter().zip(&outlines[path]) {
                    assert_eq!(g.len(), w.len(), "{path}: {g:?} against {w:?}");
                    for (g, w) in g.iter().zip(w) {
                        assert_eq!(g.len(), w.len(), "{path}: {g:?} against {w:?}");
                        for (p, q) in g.iter().zip(w) {
                            assert!(
                                (p[0] - q[0]).abs() < 0.01 && (p[1] - q[1]).abs() < 0.01,
                                "{path}: {g:?} against {w:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn cvat_label_studio_and_csv_fixtures_ingest_to_the_records_they_describe() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    png(&images.join("street/a.png"), 200, 100);
    png(&images.join("b.png"), 50, 40);

    // CVAT: a box with attributes, a turned box, a polygon, a tag.
    let cvat = dir.path().join("cvat.xml");
    std::fs::write(
        &cvat,
        r#"<annotations><version>1.1</version>
  <meta><task><id>4</id><name>street</name></task><dumped>2024-03-04 05:06:07+00:00</dumped></meta>
  <image id="0" name="street/a.png" width="200" height="100" subset="val">
    <box label="car" occluded="1" xtl="10" ytl="20" xbr="60" ybr="70"><attribute name="color">white</attribute></box>
    <box label="licence plate" occluded="0" xtl="100" ytl="40" xbr="120" ybr="50" rotation="90"/>
    <polygon label="person" occluded="0" points="150,10;190,10;170,90"/>
    <tag label="night"><attribute name="sky">Clear</attribute></tag>
  </image>
  <image id="1" name="b.png" width="50" height="40"><tag label="face"/></image>
</annotations>"#,
    )
    .unwrap();
    let (report, got) = ingest_fresh(dir.path(), "auto", &[cvat], Some(&images));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let a = &got["street/a.png"];
    assert_eq!(a.labels, ["car", "licence plate", "person", "night"]);
    let boxes: Vec<_> = a
        .boxes
        .iter()
        .map(|b| (b.label.as_str(), [b.x, b.y, b.w, b.h]))
        .collect();
    assert_eq!(
        boxes,
        [
            ("car", [10.0, 20.0, 50.0, 50.0]),
            ("licence plate", [105.0, 35.0, 10.0, 20.0]),
            ("person", [150.0, 10.0, 40.0, 80.0]),
        ]
    );
    assert_eq!(a.split.as_deref(), Some("val"));
    // The polygon keeps its outline beside its box, in the record as stored.
    assert_eq!(
        a.boxes[2].polygons,
        [vec![[150.0, 10.0], [190.0, 10.0], [170.0, 90.0]]]
    );
    assert!(a.boxes[..2].iter().all(|b| b.polygons.is_empty()));
    assert_eq!(a.boxes[2].area, 1600.0, "the outline's area");
    assert_eq!(a.source_id.as_deref(), Some("0"));
    assert_eq!(a.metadata["cvat_task"]["name"], json!("street"));
    let attributes: Vec<serde_json::Value> = a
        .boxes
        .iter()
        .map(|b| serde_json::to_value(&b.attributes).unwrap())
        .collect();
    assert_eq!(
        attributes,
        [
            json!({"color": "white", "occluded": true}),
            json!({"rotation": 90.0}),
            json!({"shape": "polygon"}),
        ]
    );
    assert_eq!(
        a.attributes["sky"],
        json!("Clear"),
        "the tag's attribute is the image's"
    );
    assert_eq!(
        a.attribute_terms(),
        [
            "color=white",
            "occluded=true",
            "rotation=90.0",
            "shape=polygon",
            "sky=clear"
        ]
    );
    // The attributes are a filter, from the command line and the API alike: any box's.
    let data = dir.path().join("cvat-lib");
    let run = |args: &[&str]| no_model_cli(&data, args);
    ok_json(&run(&[
        "ingest",
        "--annotations",
        path_str(&dir.path().join("cvat.xml")),
        "--images",
        path_str(&images),
        "--json",
    ]));
    let paths = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["lookup", "--json"];
        a.extend_from_slice(args);
        ok_json(&run(&a))["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(paths(&["--attr", "color=white"]), ["street/a.png"]);
    assert_eq!(paths(&["--attr", "Color = White"]), ["street/a.png"]);
    assert_eq!(
        paths(&["--attr", "color=white", "--attr", "rotation=90.0"]),
        ["street/a.png"]
    );
    assert!(paths(&["--attr", "color=red"]).is_empty());
    // The image's own attributes (a tag's) count as well as its boxes'.
    assert_eq!(
        paths(&["--attr", "sky=clear", "--attr", "color=white"]),
        ["street/a.png"]
    );
    let facets = ok_json(&run(&["facets", "--json"]));
    assert_eq!(
        facets["attrs"],
        json!({"color=white": 1, "occluded=true": 1, "rotation=90.0": 1, "shape=polygon": 1, "sky=clear": 1}),
        "{facets}"
    );
    assert!(paths(&["--attr", "occluded=false"]).is_empty());
    let hits = ok_json(&run(&[
        "search",
        "white car",
        "--attr",
        "occluded=true",
        "--json",
    ]));
    assert_eq!(crate::common::ids(&hits).len(), 1);
    // The tool's image ids are a filter too: CVAT's image ids here.
    assert_eq!(paths(&["--source-id", "0"]), ["street/a.png"]);
    assert_eq!(paths(&["--source-id", "1"]), ["b.png"]);
    assert_eq!(paths(&["--source-id", "0", "--source-id", "1"]).len(), 2);
    assert!(paths(&["--source-id", "9"]).is_empty());
    // A newer export of the same task whose image 0 is another file: a new record, and the
    // old one stays, named in a problem with how to delete it.
    image::RgbImage::from_pixel(200, 100, image::Rgb([9, 9, 9]))
        .save(images.join("street/a.png"))
        .unwrap();
    let again = ok_json(&run(&[
        "ingest",
        "--annotations",
        path_str(&dir.path().join("cvat.xml")),
        "--images",
        path_str(&images),
        "--json",
    ]));
    assert_eq!(again["superseded"], 1, "{again}");
    assert_eq!(again["added"], 1, "{again}");
    let old_id = a.id.clone();
    assert!(
        again["problems"].as_array().unwrap().iter().any(|p| {
            let r = p["reason"].as_str().unwrap();
            r.contains("named another file before")
                && r.contains(&old_id)
                && r.contains(&format!("imagelens delete --id {old_id}"))
        }),
        "{again}"
    );
    assert_eq!(
        paths(&["--source-id", "0"]).len(),
        2,
        "both records keep the id"
    );
    let bad = run(&["lookup", "--attr", "color"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--attrs value 1 is not key=value"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert_eq!(
        a.dates.annotated,
        Some(Utc.with_ymd_and_hms(2024, 3, 4, 5, 6, 7).unwrap())
    );
    // The image-level tag has no region: kept unplaced, so a sensitive tag fails closed.
    let b = &got["b.png"];
    assert_eq!(b.labels, ["face"]);
    assert!(b.boxes.is_empty());
    assert_eq!(b.privacy.uncertain.len(), 1);
    assert_eq!(
        (
            b.privacy.uncertain[0].labels.clone(),
            b.privacy.uncertain[0].region
        ),
        (vec!["face".to_owned()], None)
    );

    // Label Studio: percent boxes, a caption, choices, an upload name; predictions ignored.
    let ls = dir.path().join("ls.json");
    std::fs::write(
        &ls,
        serde_json::to_vec(&json!([
            {"id": 5, "data": {"image": "/data/local-files/?d=street/a.png"},
             "annotations": [{"completed_by": {"email": "ann@x.org"}, "result": [
                {"type": "rectanglelabels", "original_width": 200, "original_height": 100,
                 "value": {"x": 5, "y": 20, "width": 25, "height": 50, "rectanglelabels": ["car"]}},
                {"type": "textarea", "value": {"text": ["a white car"]}},
                {"type": "choices", "value": {"choices": ["night"]}}]}],
             "predictions": [{"result": [{"type": "rectanglelabels", "original_width": 200, "original_height": 100,
                 "value": {"x": 0, "y": 0, "width": 10, "height": 10, "rectanglelabels": ["dog"]}}]}]},
            {"id": 6, "data": {"image": "/data/upload/1/0a1b2c3d-b.png"},
             "annotations": [{"result": [
                {"type": "polygonlabels", "value": {"points": [[10, 25], [50, 25], [30, 75]], "polygonlabels": ["face"]}}]}]}
        ]))
        .unwrap(),
    )
    .unwrap();
    let (report, got) = ingest_fresh(dir.path(), "auto", &[ls], Some(&images));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let a = &got["street/a.png"];
    assert_eq!(a.labels, ["car", "night"]);
    assert_eq!(a.captions, ["a white car"]);
    assert_eq!(a.annotators, ["ann@x.org"]);
    assert_eq!(
        [a.boxes[0].x, a.boxes[0].y, a.boxes[0].w, a.boxes[0].h],
        [10.0, 20.0, 50.0, 50.0]
    );
    assert_eq!(a.source_id.as_deref(), Some("5"));
    // No original size in the result: the size is read from the image (50 x 40).
    let b = &got["b.png"];
    assert_eq!(b.boxes[0].label, "face");
    assert_eq!(
        [b.boxes[0].x, b.boxes[0].y, b.boxes[0].w, b.boxes[0].h],
        [5.0, 10.0, 20.0, 20.0]
    );

    // CSV: corners, an image-level label, a caption, a capture date, extra columns.
    let csv = dir.path().join("labels.csv");
    std::fs::write(
        &csv,
        "filename,label,xmin,ymin,xmax,ymax,caption,captured_at,camera\n\
         street/a.png,car,10,20,60,70,a car,2023-07-08 09:10:11,cam-3\n\
         street/a.png,outdoor,,,,,a car,,\n\
         b.png,,,,,,,,cam-4\n",
    )
    .unwrap();
    let (report, got) = ingest_fresh(dir.path(), "auto", &[csv], Some(&images));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let a = &got["street/a.png"];
    assert_eq!(a.labels, ["car", "outdoor"]);
    assert_eq!(
        [a.boxes[0].x, a.boxes[0].y, a.boxes[0].w, a.boxes[0].h],
        [10.0, 20.0, 50.0, 50.0]
    );
    assert_eq!(a.captions, ["a car"]);
    assert_eq!(
        a.dates.captured,
        Some(Utc.with_ymd_and_hms(2023, 7, 8, 9, 10, 11).unwrap())
    );
    assert_eq!(a.metadata["camera"], json!("cam-3"));
    assert_eq!(got["b.png"].metadata["camera"], json!("cam-4"));
    assert!(got["b.png"].labels.is_empty());
}

#[test]
fn the_cli_detects_the_format_and_names_what_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth(&dir.path().join("coco"), 3);
    let voc = dir.path().join("voc");
    write_voc(&src, &voc);
    let data = dir.path().join("lib");
    let run = |args: &[&str]| no_model_cli(&data, args);
    let out = run(&[
        "ingest",
        "--annotations",
        voc.to_str().unwrap(),
        "--json",
        "--no-progress",
    ]);
    let v = ok_json(&out);
    assert_eq!(v["format"], json!("voc"));
    assert!(
        v["detected"].as_str().unwrap().contains("Annotations"),
        "{v}"
    );
    assert_eq!(v["added"], json!(3));

    let stray = dir.path().join("notes.txt");
    std::fs::write(&stray, "not annotations").unwrap();
    let out = run(&["ingest", "--annotations", stray.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("looked for") && err.contains("Pascal VOC") && err.contains("--format"),
        "{err}"
    );
    let out = run(&[
        "ingest",
        "--format",
        "tfrecord",
        "--annotations",
        voc.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("supported"));
}

#[test]
fn an_unpacked_clarifai_sdk_export_ingests_with_negative_concepts_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("clarifai");
    png(&root.join("train/inputs/in1.png"), 200, 100);
    png(&root.join("valid/inputs/in2.png"), 40, 30);
    std::fs::create_dir_all(root.join("train/annotations")).unwrap();
    std::fs::create_dir_all(root.join("valid/annotations")).unwrap();
    // As the SDK writes them: [{"metadata": ...}] + MessageToDict of data.regions /
    // data.concepts (zero values omitted).
    std::fs::write(
        root.join("train/annotations/in1.json"),
        serde_json::to_vec(&json!([
            {"metadata": {"camera": "pier-2", "shift": {"n": 3}}},
            {"id": "r1", "regionInfo": {"boundingBox": {"topRow": 0.2, "leftCol": 0.1, "bottomRow": 0.7, "rightCol": 0.35}},
             "data": {"concepts": [{"id": "face", "name": "face", "value": 1.0, "appId": "a"}]}},
            {"id": "r2", "regionInfo": {"boundingBox": {"topRow": 0.0, "leftCol": 0.5, "bottomRow": 0.5, "rightCol": 1.0}},
             "data": {"concepts": [{"id": "car", "name": "car"}]}}
        ]))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        root.join("valid/annotations/in2.json"),
        serde_json::to_vec(&json!([
            {"id": "street", "name": "street", "value": 1.0},
            {"id": "dog", "name": "dog"}
        ]))
        .unwrap(),
    )
    .unwrap();
    let located = locate("auto", std::slice::from_ref(&root)).unwrap();
    assert_eq!(located.format, Format::Clarifai);
    let (report, got) = ingest_fresh(dir.path(), "auto", &[root], None);
    let a = &got["train/inputs/in1.png"];
    assert_eq!(a.labels, ["face"]);
    assert_eq!(
        [a.boxes[0].x, a.boxes[0].y, a.boxes[0].w, a.boxes[0].h],
        [20.0, 20.0, 50.0, 50.0]
    );
    assert_eq!(a.split.as_deref(), Some("train"));
    assert_eq!(a.source_id.as_deref(), Some("in1"));
    // The leading metadata item is the input's metadata, not a concept.
    assert_eq!(a.metadata["camera"], json!("pier-2"));
    assert_eq!(a.metadata["shift"], json!({"n": 3}));
    let b = &got["valid/inputs/in2.png"];
    assert_eq!(b.labels, ["street"]);
    // Value-0 concepts are never labels. The image's own "not dog" is kept as a negative
    // label; a region's "not car" says nothing about the image, and the report names it.
    for name in ["car", "dog"] {
        assert!(got.values().all(|r| !r.labels.iter().any(|l| l == name)));
    }
    assert_eq!(b.negative_labels, ["dog"]);
    assert!(a.negative_labels.is_empty());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.reason.contains("negative region concept(s) car")),
        "{:?}",
        report.problems
    );
    assert!(
        !report.problems.iter().any(|p| p.reason.contains("dog")),
        "{:?}",
        report.problems
    );
}

/// Copies the Clarifai fixture (the export archive written by clarifai-grpc's own classes, and
/// the local copies of the images it links to) into `dir`.
fn clarifai_fixture(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("indexer/tests/fixtures/clarifai");
    let dst = dir.join("clarifai");
    std::fs::create_dir_all(dst.join("images/street")).unwrap();
    for f in [
        "dataset-export.zip",
        "images/in-face.jpg",
        "images/street/car-01.png",
    ] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dst.join("dataset-export.zip")
}

#[test]
fn a_clarifai_export_archive_ingests_from_the_cli_with_carried_and_matched_images() {
    let dir = tempfile::tempdir().unwrap();
    let zip = clarifai_fixture(dir.path());
    let data = dir.path().join("lib");
    let run = |args: &[&str]| no_model_cli(&data, args);
    let ingest_args = [
        "ingest",
        "--annotations",
        zip.to_str().unwrap(),
        "--json",
        "--no-progress",
    ];
    let v = ok_json(&run(&ingest_args));
    assert_eq!(v["format"], json!("clarifai"), "{v}");
    assert!(v["detected"].as_str().unwrap().contains("mimetype"), "{v}");
    assert_eq!(v["added"], json!(3), "{v}");
    let problems = v["problems"].to_string();
    assert!(
        problems.contains("in-gone") && problems.contains("never downloaded"),
        "{problems}"
    );
    assert!(!problems.contains("negative"), "{problems}");

    // Searchable by the labels the archive gave, with the boxes in pixels.
    let hits = ok_json(&run(&["search", "boat", "--json"]));
    let boat = hits["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["labels"].as_array().unwrap().contains(&json!("boat")))
        .unwrap_or_else(|| panic!("{hits}"))
        .clone();
    let boat_id = boat["id"].as_str().unwrap().to_owned();
    // Its "not person" is kept as a negative label, shown in the look-up, never searched as a
    // label; the split of the batch it came in is filterable.
    let record = ok_json(&run(&["lookup", "--json", "--limit", "10"]));
    let looked = record["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == boat_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(looked["negative_labels"], json!(["person"]), "{looked}");
    let split = looked["split"]
        .as_str()
        .expect("the batch's split")
        .to_owned();
    let in_split = ok_json(&run(&["lookup", "--split", &split, "--json"]));
    assert!(crate::common::ids(&in_split).contains(&boat_id));
    let other = ok_json(&run(&["lookup", "--split", "no-such-split", "--json"]));
    assert_eq!(other["total"], json!(0));
    // Plain English reads the library's split names as the same filter.
    let read = ok_json(&run(&[
        "search",
        &format!("boat in the {split} split"),
        "--json",
    ]));
    assert_eq!(
        read["interpreted"]["filters"][0]["kind"],
        json!("split"),
        "{read}"
    );
    assert_eq!(
        read["interpreted"]["filters"][0]["value"],
        json!(split.as_str())
    );
    assert_eq!(read["interpreted"]["text"], json!("boat"));
    assert!(crate::common::ids(&read).contains(&boat_id));
    let person = ok_json(&run(&["lookup", "--label", "person", "--json"]));
    assert!(!crate::common::ids(&person).contains(&boat_id));
    // The carried image now lives in the library's own images folder.
    let carried: Vec<PathBuf> = std::fs::read_dir(data.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(carried.len(), 1, "{carried:?}");
    assert!(
        carried[0].to_string_lossy().ends_with(".png"),
        "{carried:?}"
    );
    // A second ingest of the same archive changes nothing.
    let again = ok_json(&run(&ingest_args));
    assert_eq!(again["added"], json!(0), "{again}");
    assert_eq!(std::fs::read_dir(data.join("images")).unwrap().count(), 1);

    // Deleting the record removes the library's copy of its image.
    let out = run(&["delete", "--id", &boat_id, "--reason", "test", "--json"]);
    ok_json(&out);
    assert_eq!(std::fs::read_dir(data.join("images")).unwrap().count(), 0);
    // Ingesting the archive again withholds the deleted image, and the copy the reader wrote
    // of it is swept: no trace of a deleted image stays in the library. A half-written copy
    // of an interrupted run goes too; a file of the user's own naming stays.
    let partial = data
        .join("images")
        .join(format!(".{}.png.partial", "ab".repeat(32)));
    std::fs::write(&partial, b"half").unwrap();
    std::fs::write(data.join("images").join("notes.txt"), b"mine").unwrap();
    let third = ok_json(&run(&ingest_args));
    assert_eq!(third["withheld_deleted"], json!(1), "{third}");
    assert_eq!(third["carried_removed"], json!(2), "{third}");
    let left: Vec<String> = std::fs::read_dir(data.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    // The images matched in the user's folder are left alone by deletions.
    assert!(zip.with_file_name("images").join("in-face.jpg").is_file());
}

/// A CVAT for video export as CVAT writes it (`annotations.xml` beside `images/frame_*.PNG`):
/// `auto` finds it and the frames' folder, every frame is a record (one nobody annotated too),
/// and each record's boxes are the tracks' shapes inside that frame.
#[test]
fn a_cvat_video_export_ingests_a_record_per_frame() {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("task");
    std::fs::create_dir_all(task.join("images")).unwrap();
    for frame in 0..3u8 {
        image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([x as u8 * 4, y as u8 * 5, frame * 80])
        })
        .save_with_format(
            task.join(format!("images/frame_{frame:06}.PNG")),
            image::ImageFormat::Png,
        )
        .unwrap();
    }
    std::fs::write(
        task.join("annotations.xml"),
        r#"<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><id>1</id><name>clip</name><size>3</size><mode>interpolation</mode>
    <original_size><width>64</width><height>48</height></original_size></task></meta>
  <track id="0" label="car" source="manual">
    <box frame="0" outside="0" occluded="0" keyframe="1" xtl="4" ytl="4" xbr="24" ybr="20" z_order="0"/>
    <box frame="1" outside="0" occluded="0" keyframe="0" xtl="8" ytl="4" xbr="28" ybr="20" z_order="0"/>
    <box frame="2" outside="1" occluded="0" keyframe="1" xtl="12" ytl="4" xbr="32" ybr="20" z_order="0"/>
  </track>
</annotations>
"#,
    )
    .unwrap();
    let located = locate("auto", std::slice::from_ref(&task)).unwrap();
    assert_eq!(located.format.name(), "cvat");
    let (report, records) = ingest_fresh(dir.path(), "auto", &[task], None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let got: Vec<(&str, Vec<[f32; 4]>)> = records
        .values()
        .map(|r| {
            (
                r.path.as_str(),
                r.boxes.iter().map(|b| [b.x, b.y, b.w, b.h]).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("frame_000000.PNG", vec![[4.0, 4.0, 20.0, 16.0]]),
            ("frame_000001.PNG", vec![[8.0, 4.0, 20.0, 16.0]]),
            ("frame_000002.PNG", vec![]),
        ]
    );
    let first = &records["frame_000000.PNG"];
    assert_eq!(first.source_id.as_deref(), Some("0"));
    assert_eq!(first.boxes[0].attributes["track"], json!("0"));
}

/// `imagelens ingest --predictions`: a Label Studio task nobody annotated takes its
/// predictions, each box marked `prediction:{model_version}`; without the flag it has none,
/// and an annotated task keeps only the person's boxes either way.
#[test]
fn label_studio_predictions_are_read_only_with_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("media");
    png(&images.join("a.png"), 200, 100);
    png(&images.join("b.png"), 100, 50);
    let rect = |label: &str, w: u32, h: u32| {
        json!({"type": "rectanglelabels", "original_width": w, "original_height": h,
               "value": {"x": 10, "y": 20, "width": 30, "height": 40, "rectanglelabels": [label]}})
    };
    let export = dir.path().join("project.json");
    std::fs::write(
        &export,
        serde_json::to_vec(&json!([
            {"id": 1, "data": {"image": "/data/local-files/?d=a.png"},
             "annotations": [{"completed_by": 5, "result": [rect("person", 200, 100)]}],
             "predictions": [{"model_version": "det-2", "result": [rect("car", 200, 100)]}]},
            {"id": 2, "data": {"image": "/data/local-files/?d=b.png"},
             "predictions": [{"model_version": "det-2", "result": [rect("dog", 100, 50)]}]}
        ]))
        .unwrap(),
    )
    .unwrap();
    for flag in [false, true] {
        let data = dir.path().join(format!("lib-{flag}"));
        let mut args = vec![
            "ingest",
            "--annotations",
            path_str(&export),
            "--images",
            path_str(&images),
            "--json",
            "--no-progress",
        ];
        if flag {
            args.push("--predictions");
        }
        let v = ok_json(&no_model_cli(&data, &args));
        assert_eq!(v["added"], json!(2), "{v}");
        let lib = Library::open(&data, StoreSettings::Edge).unwrap();
        let ids: Vec<String> = lib.keyword().ids().unwrap().into_iter().collect();
        let got: BTreeMap<String, Record> = lib
            .keyword()
            .get_many(&ids)
            .unwrap()
            .into_iter()
            .map(|r| (r.path.clone(), r))
            .collect();
        let boxes = |path: &str| -> Vec<(String, Option<String>, [f32; 4])> {
            got[path]
                .boxes
                .iter()
                .map(|b| (b.label.clone(), b.annotator.clone(), [b.x, b.y, b.w, b.h]))
                .collect()
        };
        assert_eq!(
            boxes("a.png"),
            [(
                "person".into(),
                Some("user 5".into()),
                [20.0, 20.0, 60.0, 40.0]
            )]
        );
        if flag {
            assert_eq!(
                boxes("b.png"),
                [(
                    "dog".into(),
                    Some("prediction:det-2".into()),
                    [10.0, 10.0, 30.0, 20.0]
                )]
            );
            assert_eq!(got["b.png"].annotators, ["prediction:det-2"]);
        } else {
            assert!(boxes("b.png").is_empty());
        }
    }
}
