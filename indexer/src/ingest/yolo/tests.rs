//! Unit tests of the parent module.

use proptest::prelude::*;

use super::*;

fn names() -> Names {
    HashMap::from([(0, "face".to_owned()), (1, "car".to_owned())])
}

#[test]
fn names_are_read_as_a_list_or_a_map() {
    let mut p = Vec::new();
    let list = parse_config(
        "names: [face, car]\ntrain: images/train\nval: [a, b]\n",
        "d",
        &mut p,
    )
    .unwrap();
    assert_eq!(list.names, names());
    assert_eq!(
        list.splits,
        [("train", "images/train"), ("val", "a"), ("val", "b")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let map = parse_config(
        "names:\n  0: face\n  '1': car\nkpt_shape: [17, 3]\n",
        "d",
        &mut p,
    )
    .unwrap();
    assert_eq!(map.names, names());
    assert!(map.keypoints);
    assert!(p.is_empty(), "{p:?}");
    assert!(parse_config("- a\n- b\n", "d", &mut p).is_err());
    assert!(parse_config("names: [a", "d", &mut p).is_err());
}

#[test]
fn a_segment_row_that_is_a_rectangle_is_a_plain_box() {
    let mut problems = Vec::new();
    // The corners in any order and direction; a diamond of four points stays an outline.
    let text = "0 0.25 0.5 0.75 0.5 0.75 1 0.25 1\n\
                0 0.75 1 0.25 1 0.25 0.5 0.75 0.5\n\
                1 0.5 0 1 0.5 0.5 1 0 0.5\n";
    let rows = parse_labels(
        text,
        "l.txt",
        &names(),
        false,
        Some((200, 100)),
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems:?}");
    for b in &rows.boxes[..2] {
        assert_eq!([b.x, b.y, b.w, b.h], [50.0, 50.0, 100.0, 50.0]);
        assert!(b.polygons.is_empty() && b.attributes.is_empty(), "{b:?}");
    }
    let diamond = &rows.boxes[2];
    assert_eq!(
        [diamond.x, diamond.y, diamond.w, diamond.h],
        [0.0, 0.0, 200.0, 100.0]
    );
    assert_eq!(diamond.polygons.len(), 1);
    assert_eq!(diamond.attributes["shape"], json!("polygon"));
}

#[test]
fn rows_become_pixel_boxes_polygons_their_bounding_box() {
    let mut problems = Vec::new();
    let text = "0 0.5 0.5 0.5 0.25\n\n1 0.1 0.1 0.3 0.1 0.2 0.4\n7 0.5 0.5 0.1 0.1\n0 0.5 0.5\nx 1 1 1 1\n";
    let rows = parse_labels(
        text,
        "l.txt",
        &names(),
        false,
        Some((200, 100)),
        &mut problems,
    );
    let got: Vec<_> = rows
        .boxes
        .iter()
        .map(|b| (b.label.as_str(), [b.x, b.y, b.w, b.h], b.item.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("face", [50.0, 37.5, 100.0, 25.0], "line 1"),
            ("car", [20.0, 10.0, 40.0, 30.0], "line 3"),
        ]
    );
    assert_eq!(rows.boxes[1].attributes["shape"], json!("polygon"));
    assert_eq!(
        rows.boxes[1].polygons,
        [vec![[20.0, 10.0], [60.0, 10.0], [40.0, 40.0]]]
    );
    assert!(rows.boxes[0].polygons.is_empty());
    let u: Vec<_> = rows
        .uncertain
        .iter()
        .map(|u| (u.item.as_str(), u.labels.len(), u.region.is_some()))
        .collect();
    assert_eq!(
        u,
        [
            ("line 4", 0, true),
            ("line 5", 1, false),
            ("line 6", 0, true)
        ]
    );
    assert_eq!(problems.len(), 3);
    // Without the image's size nothing can be placed.
    let rows = parse_labels(
        "0 0.5 0.5 0.5 0.5\n",
        "l.txt",
        &names(),
        false,
        None,
        &mut problems,
    );
    assert!(rows.boxes.is_empty());
    assert_eq!(rows.uncertain[0].labels, ["face"]);
}

#[test]
fn label_files_are_found_as_ultralytics_finds_them() {
    assert_eq!(
        label_path(Path::new("/d/images/train/a.b.jpg")),
        Path::new("/d/labels/train/a.b.txt")
    );
    assert_eq!(
        label_path(Path::new("/d/images/x/images/a.png")),
        Path::new("/d/images/x/labels/a.txt")
    );
    assert_eq!(label_path(Path::new("/d/a.png")), Path::new("/d/a.txt"));
}

fn png(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::new(w, h).save(path).unwrap();
}

#[test]
fn a_data_set_reads_splits_sizes_and_background_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("data.yaml"),
        "path: .\ntrain: images/train\nval: images/val\nnames: {0: face, 1: car}\n",
    )
    .unwrap();
    png(&d.join("images/train/a.png"), 40, 20);
    png(&d.join("images/val/b.png"), 10, 10);
    std::fs::create_dir_all(d.join("labels/train")).unwrap();
    std::fs::write(d.join("labels/train/a.txt"), "1 0.5 0.5 0.5 0.5\n").unwrap();
    let root = images_root(d).unwrap();
    assert_eq!(root, d.join("images").canonicalize().unwrap());
    let mut problems = Vec::new();
    let entries = read_path(d, &root, &mut problems, &Progress::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].file_name, "train/a.png");
    assert_eq!(entries[0].split.as_deref(), Some("train"));
    assert_eq!((entries[0].width, entries[0].height), (Some(40), Some(20)));
    let b = &entries[0].boxes[0];
    assert_eq!(
        (b.label.as_str(), [b.x, b.y, b.w, b.h]),
        ("car", [10.0, 5.0, 20.0, 10.0])
    );
    assert_eq!(entries[1].file_name, "val/b.png");
    assert!(entries[1].boxes.is_empty());
    assert!(
        read_path(
            &d.join("images"),
            &root,
            &mut problems,
            &Progress::default()
        )
        .is_err()
    );
}

fn valid_labels() -> String {
    "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.3 0.1 0.2 0.4\n1 0.25 0.75 0.5 0.5\n".to_owned()
}

proptest! {
    #![proptest_config(crate::ingest::proptest_config())]

    #[test]
    fn arbitrary_label_bytes_never_lose_a_row(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut problems = Vec::new();
        let rows = parse_labels(&text, "f.txt", &names(), false, Some((64, 48)), &mut problems);
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        prop_assert_eq!(rows.boxes.len() + rows.uncertain.len(), lines);
        prop_assert_eq!(problems.len(), rows.uncertain.len());
    }

    #[test]
    fn mutated_label_files_are_read_or_reported(edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..6, "[-0-9 .e\\nxa]{0,5}"), 1..4)) {
        let mut text = valid_labels();
        for (at, len, insert) in &edits {
            let i = at.index(text.len() + 1);
            let j = (i + len).min(text.len());
            text.replace_range(i..j, insert);
        }
        let mut problems = Vec::new();
        let rows = parse_labels(&text, "f.txt", &names(), false, Some((64, 48)), &mut problems);
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        prop_assert_eq!(rows.boxes.len() + rows.uncertain.len(), lines);
        for u in &rows.uncertain {
            prop_assert!(problems.iter().any(|p| p.item == u.item));
        }
    }

    #[test]
    fn arbitrary_yaml_is_read_or_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Err(e) = parse_config(&text, "d.yaml", &mut Vec::new()) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn mutated_yaml_is_read_or_refused_cleanly(edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..6, "[-:{}\\[\\], 0-9a-z\\n'\"]{0,5}"), 1..4)) {
        let mut text = "path: .\ntrain: images/train\nval: [images/val]\nnames:\n  0: face\n  1: car\n".to_owned();
        for (at, len, insert) in &edits {
            let i = at.index(text.len() + 1);
            let j = (i + len).min(text.len());
            text.replace_range(i..j, insert);
        }
        let mut problems = Vec::new();
        match parse_config(&text, "d.yaml", &mut problems) {
            Err(e) => prop_assert!(!e.is_empty()),
            Ok(cfg) => prop_assert!(cfg.names.len() <= MAX_CLASSES),
        }
    }
}
