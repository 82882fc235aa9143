use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use prost::Message;

use super::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clarifai")
}

#[test]
fn the_fixture_written_by_clarifai_grpc_reads_input_by_input() {
    let out = tempfile::tempdir().unwrap();
    let fx = fixture();
    assert!(is_archive(&fx.join("dataset-export.zip")));
    let mut problems = Vec::new();
    let entries = read_archive(
        &fx.join("dataset-export.zip"),
        &fx.join("images"),
        out.path(),
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    let by_id: BTreeMap<&str, &ImageEntry> = entries
        .iter()
        .map(|e| (e.source_id.as_deref().unwrap(), e))
        .collect();
    assert_eq!(
        by_id.keys().copied().collect::<Vec<_>>(),
        ["in-boat", "in-car", "in-face"]
    );
    // Carried bytes: written under extract_to, 64x48, the box in pixels.
    let boat = by_id["in-boat"];
    assert_eq!(boat.root.as_deref(), Some(out.path()));
    let written = out.path().join(&boat.file_name);
    assert!(written.is_file() && boat.file_name.ends_with(".png"));
    let b = &boat.boxes[0];
    assert_eq!(
        (b.label.as_str(), [b.x, b.y, b.w, b.h]),
        ("boat", [8.0, 12.0, 32.0, 24.0])
    );
    assert_eq!(boat.labels, ["boat"]);
    assert_eq!(boat.metadata["camera"], "pier-2");
    assert_eq!(boat.split.as_deref(), Some("train"));
    assert_eq!(
        boat.metadata["clarifai_dataset_ids"],
        json!(["harbour-set"])
    );
    assert_eq!(
        boat.annotated.unwrap().timestamp(),
        1_700_000_000,
        "modified_at"
    );
    // Matched by id in the images folder; the polygon's box in pixels of the local file.
    let face = by_id["in-face"];
    assert_eq!(face.root, None);
    assert_eq!(face.file_name, "in-face.jpg");
    let f = &face.boxes[0];
    assert_eq!(
        (f.label.as_str(), [f.x, f.y, f.w, f.h]),
        ("face", [10.0, 3.0, 20.0, 12.0])
    );
    // Matched by the file name in its metadata.
    assert_eq!(by_id["in-car"].file_name, "street/car-01.png");
    assert_eq!(by_id["in-car"].labels, ["car"]);
    // Its segmentation masks (16x16 PNGs for a 32x32 image): what the first paints, scaled to
    // the image; the second paints nothing and is uncertain (redacted whole if sensitive).
    let car = by_id["in-car"];
    let c = &car.boxes[0];
    assert_eq!(
        (c.label.as_str(), [c.x, c.y, c.w, c.h]),
        ("car", [4.0, 8.0, 16.0, 8.0])
    );
    assert_eq!(c.attributes["shape"], json!("mask"));
    assert_eq!(car.boxes.len(), 1);
    assert_eq!(car.uncertain.len(), 1, "{:?}", car.uncertain);
    assert_eq!(car.uncertain[0].labels, ["plate"]);
    assert_eq!(car.uncertain[0].region, None);
    assert!(car.uncertain[0].reason.contains("mask"));
    // The negative concept is never a label: it is kept as "not person". The missing image
    // is reported.
    assert!(!boat.labels.contains(&"person".to_owned()));
    assert_eq!(boat.negative_labels, ["person"]);
    assert!(
        problems.iter().any(|p| p.item.contains("in-gone")
            && p.reason.contains("never downloaded")
            && p.reason.contains("ghi789.jpg")),
        "{problems:?}"
    );
    // Read again: the carried image is not written twice.
    let mut again = Vec::new();
    let second = read_archive(
        &fx.join("dataset-export.zip"),
        &fx.join("images"),
        out.path(),
        &mut again,
        &Progress::default(),
    )
    .unwrap();
    assert_eq!(second.len(), 3);
    let files = std::fs::read_dir(out.path()).unwrap().count();
    assert_eq!(files, 1);
}

#[test]
fn a_zip_that_is_not_a_clarifai_export_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        z.start_file("mimetype", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut z, b"application/epub+zip").unwrap();
        z.finish().unwrap();
    }
    assert!(!is_archive(&path));
    let err = read_archive(
        &path,
        dir.path(),
        dir.path(),
        &mut Vec::new(),
        &Progress::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not a Clarifai dataset export"),
        "{err}"
    );
    std::fs::write(dir.path().join("junk.zip"), b"not a zip").unwrap();
    let err = read_archive(
        &dir.path().join("junk.zip"),
        dir.path(),
        dir.path(),
        &mut Vec::new(),
        &Progress::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a zip"), "{err}");
}

/// An archive with `batches` as its entries, written to `dir`.
fn archive(dir: &Path, batches: &[(&str, Vec<u8>)]) -> PathBuf {
    let path = dir.join("export.zip");
    std::fs::write(&path, archive_bytes(batches)).unwrap();
    path
}

/// An archive with `batches` as its entries, in memory.
fn archive_bytes(batches: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    z.start_file("mimetype", o).unwrap();
    std::io::Write::write_all(&mut z, MIMETYPE).unwrap();
    for (name, bytes) in batches {
        z.start_file(*name, o).unwrap();
        std::io::Write::write_all(&mut z, bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn a_broken_batch_is_one_problem_and_the_others_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut png = Vec::new();
    image::RgbImage::new(10, 10)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let good = proto::InputBatch {
        inputs: vec![proto::Input {
            id: "ok".into(),
            data: Some(proto::Data {
                image: Some(proto::Image {
                    base64: png,
                    ..Default::default()
                }),
                concepts: vec![proto::Concept {
                    id: "cat".into(),
                    name: "cat".into(),
                    value: 1.0,
                }],
                ..Default::default()
            }),
            ..Default::default()
        }],
    };
    let path = archive(
        dir.path(),
        &[
            ("train/a_n1", vec![0xff, 0xff, 0xff, 0x07]),
            ("train/b_n1", good.encode_to_vec()),
        ],
    );
    let mut problems = Vec::new();
    let got = read_archive(
        &path,
        dir.path(),
        &dir.path().join("out"),
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels, ["cat"]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].file.ends_with("train/a_n1"));
    assert!(problems[0].reason.contains("not an InputBatch"));
}

/// The fixture's batch of two inputs, read from its archive once.
fn fixture_batch() -> &'static [u8] {
    static BATCH: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BATCH.get_or_init(|| {
        let file = std::fs::File::open(fixture().join("dataset-export.zip")).unwrap();
        let mut zip = zip::ZipArchive::new(file).unwrap();
        let mut real = Vec::new();
        zip.by_name("train/0001_n2")
            .unwrap()
            .read_to_end(&mut real)
            .unwrap();
        real
    })
}

proptest! {
    // 10,000 cases by default, as for every reader (`IMAGELENS_PROPTEST_CASES` overrides);
    // the archive is built in memory.
    #![proptest_config(crate::ingest::proptest_config())]

    /// Arbitrary bytes as a batch, and the fixture's batch with bytes flipped or cut short:
    /// never a panic, and every batch and every input in it is accounted for: a batch that
    /// does not decode is one problem naming it; each input of one that does either ingests
    /// (its id, from that batch) or is a problem naming it.
    #[test]
    fn arbitrary_or_damaged_batches_are_read_or_reported(
        junk in proptest::collection::vec(any::<u8>(), 0..512),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<Option<prop::sample::Index>>(),
    ) {
        let out = tempfile::tempdir().unwrap();
        let fx = fixture();
        let mut real = fixture_batch().to_vec();
        for (i, b) in flips {
            let at = i.index(real.len());
            real[at] ^= b;
        }
        if let Some(c) = cut {
            real.truncate(c.index(real.len()));
        }
        let batches = [("train/junk_n1", junk), ("train/damaged_n2", real)];
        let zip = std::io::Cursor::new(archive_bytes(&batches));
        let mut problems = Vec::new();
        let got = read_archive_from(zip, "mem.zip", &fx.join("images"), out.path(), &mut problems, &Progress::default()).unwrap();
        let mut accounted = 0;
        for (name, bytes) in &batches {
            let file = format!("mem.zip:{name}");
            let Ok(batch) = proto::InputBatch::decode(bytes.as_slice()) else {
                prop_assert!(
                    problems.iter().any(|p| p.file == file && p.item == "batch" && p.reason.contains("not an InputBatch")),
                    "{name} does not decode and is no problem: {problems:?}"
                );
                continue;
            };
            for input in &batch.inputs {
                let id = input.id.trim();
                let read = got.iter().any(|e| e.source_id.as_deref() == Some(id) && e.exports.contains(&file));
                let reported = problems.iter().any(|p| p.file == file && p.item == format!("input {id:?}"));
                prop_assert!(read || reported, "input {id:?} of {name} neither read nor reported: {problems:?}");
                accounted += 1;
            }
        }
        prop_assert!(got.len() <= accounted);
        for e in &got {
            prop_assert!(!e.file_name.is_empty());
        }
    }
}
