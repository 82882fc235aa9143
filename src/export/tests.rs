use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::Path;

use chrono::TimeZone;
use indexer::ingest::file_facts;
use indexer::record::{BoundingBox, Dates};

use super::*;

/// Writes a small PNG under `root/path` (contents vary with `seed`) and returns a record
/// of it with no annotations.
pub(super) fn image_record(root: &Path, path: &str, width: u32, height: u32, seed: u8) -> Record {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 13) as u8, (y * 17) as u8, seed])
    })
    .save(&file)
    .unwrap();
    let facts = file_facts(&file, &Default::default()).unwrap();
    Record {
        source_id: None,
        id: facts.sha256[..16].to_owned(),
        filename: path.rsplit('/').next().unwrap().to_owned(),
        path: path.to_owned(),
        images_root: root.display().to_string(),
        width: facts.width,
        height: facts.height,
        bytes: facts.bytes,
        sha256: facts.sha256,
        dataset: "test".into(),
        dates: Dates::default(),
        labels: vec![],
        supercategories: vec![],
        boxes: vec![],
        captions: vec![],
        split: None,
        negative_labels: Vec::new(),
        attributes: Default::default(),
        metadata: BTreeMap::new(),
        annotators: vec![],
        exports: vec![],
        privacy: Default::default(),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn bbox(
    label: &str,
    supercategory: Option<&str>,
    x: f32,
    y: f32,
    w: f32,
    h: f32,
    area: f32,
    iscrowd: bool,
) -> BoundingBox {
    BoundingBox {
        polygons: Vec::new(),
        label: label.into(),
        supercategory: supercategory.map(str::to_owned),
        x,
        y,
        w,
        h,
        area,
        iscrowd,
        annotator: None,
        attributes: Default::default(),
    }
}

pub(super) fn with_boxes(mut r: Record, boxes: Vec<BoundingBox>) -> Record {
    for b in &boxes {
        if !r.labels.contains(&b.label) {
            r.labels.push(b.label.clone());
        }
    }
    r.boxes = boxes;
    r
}

pub(super) fn provenance() -> Provenance {
    Provenance {
        created: Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap(),
        requested_by: "tester".into(),
        source: serde_json::json!({"collection": "x"}),
        library: serde_json::json!({"records": 3}),
        model: None,
        format: DatasetFormat::Csv,
        images_redacted: false,
        records: vec![],
    }
}

pub(super) fn export(records: &[Record], format: DatasetFormat, archive: ArchiveFormat) -> Vec<u8> {
    let mut out = Vec::new();
    write_dataset(&mut out, records, format, archive, &provenance()).unwrap();
    out
}

/// Every entry of a tar archive, by name.
pub(super) fn tar_entries(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(Cursor::new(bytes));
    let mut entries = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.insert(name, data);
    }
    entries
}

/// Three records: two boxes, captions, a capture date and metadata; one box, no date; no
/// box, one caption. All share an annotated date.
pub(super) fn sample(root: &Path) -> Vec<Record> {
    let annotated = Utc.with_ymd_and_hms(2020, 1, 2, 3, 4, 5).unwrap();
    let mut one = with_boxes(
        image_record(root, "a/one.png", 16, 12, 1),
        vec![
            BoundingBox {
                annotator: Some("ann".into()),
                ..bbox("cat", Some("animal"), 2.0, 3.0, 8.0, 6.0, 40.5, false)
            },
            bbox("dog", None, 0.5, 0.25, 5.5, 3.75, 20.625, true),
        ],
    );
    one.supercategories = vec!["animal".into()];
    one.split = Some("val".into());
    one.captions = vec!["a cat & a dog".into(), "two animals".into()];
    one.dates.captured = Some(
        Utc.with_ymd_and_hms(2021, 3, 4, 5, 6, 7).unwrap() + chrono::Duration::milliseconds(250),
    );
    one.metadata.insert("license".into(), serde_json::json!(3));
    one.metadata
        .insert("coco_url".into(), serde_json::json!("http://x/1.png"));
    let mut two = with_boxes(
        image_record(root, "two.png", 12, 16, 2),
        vec![bbox(
            "cat",
            Some("animal"),
            1.0,
            1.0,
            10.0,
            14.0,
            140.0,
            false,
        )],
    );
    two.supercategories = vec!["animal".into()];
    let mut three = image_record(root, "b/c/three.png", 16, 12, 3);
    three.captions = vec!["an empty room".into()];
    let mut records = vec![one, two, three];
    for r in &mut records {
        r.dates.annotated = Some(annotated);
    }
    records
}

#[test]
fn zip_export_opens_and_lists_provenance_images_and_annotations() {
    let src = tempfile::tempdir().unwrap();
    let records = sample(src.path());
    let bytes = export(&records, DatasetFormat::Coco, ArchiveFormat::Zip);
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let names: Vec<&str> = zip.file_names().collect();
    for name in [
        "provenance.json",
        "images/a/one.png",
        "images/two.png",
        "images/b/c/three.png",
        "annotations/instances.json",
        "annotations/captions.json",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert_eq!(zip.len(), 6);

    let mut image = zip.by_name("images/a/one.png").unwrap();
    assert_eq!(image.compression(), zip::CompressionMethod::Stored);
    let mut data = Vec::new();
    image.read_to_end(&mut data).unwrap();
    drop(image);
    assert_eq!(data, std::fs::read(src.path().join("a/one.png")).unwrap());

    let mut manifest = zip.by_name("provenance.json").unwrap();
    assert_eq!(manifest.compression(), zip::CompressionMethod::Deflated);
    let mut text = String::new();
    manifest.read_to_string(&mut text).unwrap();
    let manifest: Provenance = serde_json::from_str(&text).unwrap();
    assert_eq!(manifest.format, DatasetFormat::Coco);
    assert_eq!(manifest.requested_by, "tester");
    assert_eq!(
        manifest.records,
        records
            .iter()
            .map(ProvenanceRecord::from)
            .collect::<Vec<_>>()
    );
}

#[test]
fn redacted_exports_obscure_sensitive_regions_and_say_so() {
    let src = tempfile::tempdir().unwrap();
    let face = with_boxes(
        image_record(src.path(), "face.png", 40, 30, 1),
        vec![bbox("face", None, 8.0, 6.0, 16.0, 12.0, 192.0, false)],
    );
    let car = with_boxes(
        image_record(src.path(), "car.png", 40, 30, 2),
        vec![bbox("car", None, 8.0, 6.0, 16.0, 12.0, 192.0, false)],
    );
    let records = vec![face, car];
    let mode = ImageMode::Redacted {
        redaction: crate::governance::redact::Redaction::default(),
        limits: Default::default(),
    };
    let mut out = Vec::new();
    write_dataset_as(
        &mut out,
        &records,
        DatasetFormat::Coco,
        ArchiveFormat::Tar,
        &provenance(),
        &mode,
    )
    .unwrap();
    let entries = tar_entries(&out);
    let original = std::fs::read(src.path().join("face.png")).unwrap();
    let exported = &entries["images/face.png"];
    assert_ne!(
        exported, &original,
        "the face image is not exported as it is"
    );
    let before = image::load_from_memory(&original).unwrap().to_rgb8();
    let after = image::load_from_memory(exported).unwrap().to_rgb8();
    assert_eq!(after.dimensions(), before.dimensions());
    assert_ne!(
        after.get_pixel(15, 11),
        before.get_pixel(15, 11),
        "inside the box"
    );
    assert_eq!(
        after.get_pixel(35, 25),
        before.get_pixel(35, 25),
        "outside the box"
    );
    assert_eq!(
        entries["images/car.png"],
        std::fs::read(src.path().join("car.png")).unwrap()
    );
    let manifest: Provenance = serde_json::from_slice(&entries["provenance.json"]).unwrap();
    assert!(manifest.images_redacted);
    let flags: Vec<bool> = manifest.records.iter().map(|r| r.redacted).collect();
    assert_eq!(flags, [true, false]);

    // Originals go out byte for byte, and the manifest says nothing was redacted.
    let mut out = Vec::new();
    write_dataset_as(
        &mut out,
        &records,
        DatasetFormat::Coco,
        ArchiveFormat::Tar,
        &provenance(),
        &ImageMode::Originals,
    )
    .unwrap();
    let entries = tar_entries(&out);
    assert_eq!(entries["images/face.png"], original);
    let manifest: Provenance = serde_json::from_slice(&entries["provenance.json"]).unwrap();
    assert!(!manifest.images_redacted && manifest.records.iter().all(|r| !r.redacted));
}

#[test]
fn tar_entries_are_ordered_with_mode_and_export_time() {
    let src = tempfile::tempdir().unwrap();
    let records = sample(src.path());
    let bytes = export(&records, DatasetFormat::Csv, ArchiveFormat::Tar);
    let mut archive = tar::Archive::new(Cursor::new(bytes));
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().mode().unwrap(), 0o644);
        assert_eq!(
            entry.header().mtime().unwrap(),
            provenance().created.timestamp() as u64
        );
        names.push(entry.path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(
        names,
        [
            "provenance.json",
            "images/a/one.png",
            "images/two.png",
            "images/b/c/three.png",
            "annotations.csv"
        ]
    );
}

#[test]
fn a_missing_image_is_reported_by_check_sources_and_write_dataset() {
    let src = tempfile::tempdir().unwrap();
    let records = sample(src.path());
    std::fs::remove_file(src.path().join("two.png")).unwrap();
    let err = check_sources(&records).unwrap_err();
    assert!(
        matches!(&err, ExportError::MissingImage { path, .. } if path == "two.png"),
        "{err:?}"
    );
    assert_eq!(err.fault(), Fault::User);
    for archive in ArchiveFormat::ALL {
        let mut out = Vec::new();
        let err = write_dataset(
            &mut out,
            &records,
            DatasetFormat::Coco,
            archive,
            &provenance(),
        )
        .unwrap_err();
        assert!(matches!(err, ExportError::MissingImage { .. }), "{err:?}");
        assert!(out.is_empty(), "nothing is written before the checks pass");
    }
}

#[test]
fn a_path_that_could_escape_gives_unsafe_path() {
    let src = tempfile::tempdir().unwrap();
    let good = image_record(src.path(), "ok.png", 16, 12, 1);
    for bad in [
        "../ok.png",
        "a/../../ok.png",
        "/ok.png",
        "a\\ok.png",
        "./ok.png",
        "a//ok.png",
        "C:/ok.png",
        "",
    ] {
        let r = Record {
            path: bad.into(),
            ..good.clone()
        };
        let err = check_sources(std::slice::from_ref(&r)).unwrap_err();
        assert!(
            matches!(err, ExportError::UnsafePath { .. }),
            "{bad:?}: {err:?}"
        );
        let mut out = Vec::new();
        let err = write_dataset(
            &mut out,
            &[r],
            DatasetFormat::Csv,
            ArchiveFormat::Tar,
            &provenance(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ExportError::UnsafePath { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(out.is_empty());
    }
    assert!(check_sources(&[good]).is_ok());
}

#[test]
fn a_modified_image_gives_changed_image() {
    let src = tempfile::tempdir().unwrap();
    let records = sample(src.path());
    let file = src.path().join("two.png");
    let mut bytes = std::fs::read(&file).unwrap();
    // Same size: only the hash, checked while exporting, can tell.
    *bytes.last_mut().unwrap() ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    check_sources(&records).unwrap();
    let err = write_dataset(
        Vec::new(),
        &records,
        DatasetFormat::Coco,
        ArchiveFormat::Tar,
        &provenance(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ExportError::ChangedImage { path, .. } if path == "two.png"),
        "{err:?}"
    );
    // Another size: check_sources sees it before anything is streamed.
    bytes.push(0);
    std::fs::write(&file, &bytes).unwrap();
    let err = check_sources(&records).unwrap_err();
    assert!(matches!(err, ExportError::ChangedImage { .. }), "{err:?}");
}

#[test]
fn a_failed_zip_export_does_not_end_in_a_valid_archive() {
    let src = tempfile::tempdir().unwrap();
    let records = sample(src.path());
    let file = src.path().join("b/c/three.png");
    let mut bytes = std::fs::read(&file).unwrap();
    *bytes.last_mut().unwrap() ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let mut out = Vec::new();
    let err = write_dataset(
        &mut out,
        &records,
        DatasetFormat::Coco,
        ArchiveFormat::Zip,
        &provenance(),
    )
    .unwrap_err();
    assert!(matches!(err, ExportError::ChangedImage { .. }), "{err:?}");
    assert!(!out.is_empty(), "earlier entries were streamed");
    assert!(zip::ZipArchive::new(Cursor::new(out)).is_err());
}

/// Accepts `room` bytes, fails one write, then accepts everything again: whatever reaches
/// it after the failure shows in `written`.
struct FailingWriter {
    room: usize,
    failed: bool,
    written: Vec<u8>,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 && !self.failed {
            self.failed = true;
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "client went away",
            ));
        }
        let n = if self.failed {
            buf.len()
        } else {
            buf.len().min(self.room)
        };
        self.room = self.room.saturating_sub(n);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_output_failure_is_returned_and_nothing_more_is_written() {
    let src = tempfile::tempdir().unwrap();
    let records = sample(src.path());
    for archive in ArchiveFormat::ALL {
        let mut out = FailingWriter {
            room: 700,
            failed: false,
            written: Vec::new(),
        };
        let err = write_dataset(
            &mut out,
            &records,
            DatasetFormat::Coco,
            archive,
            &provenance(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ExportError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe),
            "{archive}: {err:?}"
        );
        assert_eq!(err.fault(), Fault::Internal);
        assert_eq!(out.written.len(), 700, "{archive}");
    }
}

#[test]
fn duplicate_paths_and_yolo_name_clashes_are_refused_up_front() {
    let src = tempfile::tempdir().unwrap();
    let a = image_record(src.path(), "x/a.png", 16, 12, 1);
    let b = image_record(src.path(), "x/a.jpg", 16, 12, 2);
    let err = check_sources(&[a.clone(), a.clone()]).unwrap_err();
    assert!(matches!(err, ExportError::DuplicatePath { .. }), "{err:?}");
    let both = [a, b];
    check_sources(&both).unwrap();
    check_export(&both, DatasetFormat::Coco).unwrap();
    for format in [
        DatasetFormat::Yolo,
        DatasetFormat::YoloSeg,
        DatasetFormat::Voc,
    ] {
        let err = check_export(&both, format).unwrap_err();
        assert!(matches!(err, ExportError::NameClash { .. }), "{err:?}");
    }
}

#[test]
fn formats_parse_case_insensitively_and_name_the_choices_otherwise() {
    assert_eq!(
        "COCO".parse::<DatasetFormat>().unwrap(),
        DatasetFormat::Coco
    );
    assert_eq!(
        " voc ".parse::<DatasetFormat>().unwrap(),
        DatasetFormat::Voc
    );
    assert_eq!("Tar".parse::<ArchiveFormat>().unwrap(), ArchiveFormat::Tar);
    let err = "json".parse::<DatasetFormat>().unwrap_err().to_string();
    assert!(
        err.contains("coco, yolo, yolo-seg, voc, csv") && err.contains("json"),
        "{err}"
    );
    let err = "rar".parse::<ArchiveFormat>().unwrap_err().to_string();
    assert!(err.contains("zip, tar"), "{err}");
    assert_eq!(
        serde_json::to_string(&DatasetFormat::Yolo).unwrap(),
        "\"yolo\""
    );
    assert_eq!(
        serde_json::to_string(&DatasetFormat::YoloSeg).unwrap(),
        "\"yolo-seg\""
    );
    assert_eq!(
        "YOLO-seg".parse::<DatasetFormat>().unwrap(),
        DatasetFormat::YoloSeg
    );
    assert_eq!(ArchiveFormat::Zip.content_type(), "application/zip");
    assert_eq!(ArchiveFormat::Tar.extension(), "tar");
}

#[test]
fn annotation_files_replace_only_the_last_extension() {
    assert_eq!(yolo_label_file("a/b.c/d.png"), "labels/a/b.c/d.txt");
    assert_eq!(yolo_label_file("x.tar.gz"), "labels/x.tar.txt");
    assert_eq!(voc_annotation_file(".hidden"), "Annotations/.hidden.xml");
    assert_eq!(voc_annotation_file("noext"), "Annotations/noext.xml");
}
