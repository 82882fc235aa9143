use super::*;

fn raw(x: f32, y: f32, w: f32, h: f32) -> RawBox {
    RawBox {
        polygons: Vec::new(),
        label: "cat".into(),
        supercategory: None,
        x,
        y,
        w,
        h,
        area: None,
        iscrowd: false,
        annotator: None,
        item: "annotations[0]".into(),
        alt_labels: vec![],
        attributes: Default::default(),
    }
}

#[test]
fn boxes_are_kept_clipped_or_dropped_with_a_reason() {
    let mut problems = Vec::new();
    let (kept, uncertain) = validate_boxes(
        vec![
            raw(1.0, 1.0, 5.0, 5.0),
            raw(90.0, 90.0, 20.0, 20.0),
            raw(200.0, 0.0, 5.0, 5.0),
            raw(0.0, 0.0, 0.0, 3.0),
            raw(f32::NAN, 0.0, 1.0, 1.0),
        ],
        100,
        100,
        1,
        "a.jpg",
        &mut problems,
    );
    assert_eq!(kept.len(), 2);
    // The three dropped boxes stay as unplaceable annotations: redaction fails closed.
    assert_eq!(uncertain.len(), 3);
    assert!(
        uncertain
            .iter()
            .all(|u| u.region.is_none() && u.labels == ["cat"])
    );
    assert_eq!((kept[1].w, kept[1].h), (10.0, 10.0));
    assert_eq!(problems.len(), 4);
    assert!(problems[0].reason.contains("clipped"));
    assert!(problems[1].reason.contains("outside"));
    assert!(problems[2].reason.contains("no area"));
}

fn entry(boxes: Vec<RawBox>) -> ImageEntry {
    ImageEntry {
        source_id: None,
        file_name: "a.jpg".into(),
        width: None,
        height: None,
        captured: None,
        annotated: None,
        boxes,
        captions: vec![],
        split: None,
        negative_labels: Vec::new(),
        attributes: Default::default(),
        metadata: BTreeMap::new(),
        annotators: vec![],
        exports: vec![],
        uncertain: vec![],
        labels: vec![],
        root: None,
    }
}

fn facts(width: u32, height: u32, orientation: u8) -> FileFacts {
    FileFacts {
        sha256: "ab".repeat(32),
        bytes: 1,
        width,
        height,
        orientation,
        created: None,
        modified: None,
    }
}

#[test]
fn a_box_drawn_on_the_stored_pixels_of_a_turned_image_is_turned_with_it() {
    // Stored 200x150, EXIF 6: displayed 150x200. [150, 20, 40, 40] only fits the stored
    // pixels; there the block sits at display x 90..130, y 150..190.
    let mut problems = Vec::new();
    let (kept, uncertain) = validate_boxes(
        vec![raw(150.0, 20.0, 40.0, 40.0), raw(20.0, 130.0, 40.0, 40.0)],
        150,
        200,
        6,
        "a.jpg",
        &mut problems,
    );
    assert!(uncertain.is_empty());
    assert_eq!(
        [kept[0].x, kept[0].y, kept[0].w, kept[0].h],
        [90.0, 150.0, 40.0, 40.0]
    );
    assert!(problems[0].reason.contains("stored pixels"), "{problems:?}");
    // A box that fits the displayed image is taken as drawn on it.
    assert_eq!(
        [kept[1].x, kept[1].y, kept[1].w, kept[1].h],
        [20.0, 130.0, 40.0, 40.0]
    );
    assert_eq!(problems.len(), 1);
}

/// A box with the outline of its rectangle's top-left half (a right triangle).
fn outlined(x: f32, y: f32, w: f32, h: f32) -> RawBox {
    let mut b = raw(x, y, w, h);
    b.polygons = vec![vec![[x, y], [x + w, y], [x, y + h]]];
    b
}

#[test]
fn polygons_are_turned_and_clipped_with_their_box() {
    let mut problems = Vec::new();
    // Stored 200x150, EXIF 6 (displayed 150x200), as above: the outline turns with its box.
    let (kept, _) = validate_boxes(
        vec![outlined(150.0, 20.0, 40.0, 40.0)],
        150,
        200,
        6,
        "a.jpg",
        &mut problems,
    );
    let b = &kept[0];
    assert_eq!([b.x, b.y, b.w, b.h], [90.0, 150.0, 40.0, 40.0]);
    // Stored (x, y) shows at (sh - y, x): the corners land inside the turned box.
    assert_eq!(
        b.polygons,
        [vec![[130.0, 150.0], [130.0, 190.0], [90.0, 150.0]]]
    );
    // The stated area wins; without one it is the outline's, not the rectangle's.
    assert_eq!(b.area, 800.0);
    // Half past the right edge of a 100x100 image: the box and its outline are clipped.
    let mut problems = Vec::new();
    let (kept, _) = validate_boxes(
        vec![
            outlined(80.0, 0.0, 40.0, 40.0),
            outlined(10.0, 10.0, 10.0, 10.0),
        ],
        100,
        100,
        1,
        "a.jpg",
        &mut problems,
    );
    assert_eq!(kept[0].w, 20.0);
    let clipped = &kept[0].polygons[0];
    assert!(clipped.iter().all(|p| p[0] <= 100.0), "{clipped:?}");
    assert_eq!(polygon::area(clipped), 600.0);
    assert_eq!(kept[0].area, 600.0);
    // Inside: unchanged.
    assert_eq!(
        kept[1].polygons,
        [vec![[10.0, 10.0], [20.0, 10.0], [10.0, 20.0]]]
    );
    // An outline wholly outside the image while its box is not: the box alone, reported.
    let mut b = raw(10.0, 10.0, 10.0, 10.0);
    b.polygons = vec![vec![[200.0, 200.0], [210.0, 200.0], [200.0, 210.0]]];
    let mut problems = Vec::new();
    let (kept, _) = validate_boxes(vec![b], 100, 100, 1, "a.jpg", &mut problems);
    assert!(kept[0].polygons.is_empty());
    assert!(
        problems[0]
            .reason
            .contains("polygon of 3 points lies outside")
    );
}

#[test]
fn more_boxes_than_the_limit_withhold_the_record() {
    let mut problems = Vec::new();
    let boxes = vec![raw(1.0, 1.0, 5.0, 5.0); 11];
    let none = build_record(
        entry(boxes.clone()),
        &facts(100, 100, 1),
        Path::new("/r"),
        "d",
        Utc::now(),
        10,
        &mut problems,
    );
    assert!(none.is_none());
    assert!(problems[0].reason.contains("withheld"), "{problems:?}");
    let some = build_record(
        entry(boxes[..10].to_vec()),
        &facts(100, 100, 1),
        Path::new("/r"),
        "d",
        Utc::now(),
        10,
        &mut problems,
    )
    .unwrap();
    assert_eq!(some.boxes.len(), 10);
}

#[test]
fn image_labels_and_box_attributes_reach_the_record() {
    let mut b = raw(1.0, 1.0, 5.0, 5.0);
    b.attributes.insert("occluded", serde_json::json!(true));
    let mut e = entry(vec![raw(200.0, 0.0, 5.0, 5.0), b]);
    e.add_label("cat");
    e.add_label(" face ");
    e.add_label("cat");
    let r = build_record(
        e,
        &facts(100, 100, 1),
        Path::new("/r"),
        "d",
        Utc::now(),
        10,
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(r.labels, ["cat", "face"]);
    // The attributes stay on their box (the first box was dropped), and are filter terms.
    assert_eq!(r.boxes.len(), 1);
    assert_eq!(r.boxes[0].attributes["occluded"], serde_json::json!(true));
    assert_eq!(r.attribute_terms(), ["occluded=true"]);
    assert!(!r.metadata.contains_key("box_attributes"));
    assert!(r.metadata_text().contains("occluded true"));
    // "face" has no box: it is an unplaced annotation, so redaction covers the image.
    let tags: Vec<_> = r
        .privacy
        .uncertain
        .iter()
        .filter(|u| u.item == "image label")
        .map(|u| (u.labels.clone(), u.region))
        .collect();
    assert_eq!(tags, [(vec!["face".to_owned()], None)]);
}

#[test]
fn rotated_and_polygon_boxes_are_the_upright_box_around_them() {
    assert_eq!(
        bbox_of_points(&[(1.0, 5.0), (4.0, 2.0), (3.0, 9.0)]),
        Some([1.0, 2.0, 3.0, 7.0])
    );
    assert_eq!(bbox_of_points(&[(1.0, f64::NAN)]), None);
    assert_eq!(bbox_of_points(&[]), None);
    let turned = rotated_bbox([0.0, 0.0, 20.0, 10.0], 90.0, (10.0, 5.0)).unwrap();
    let want = [5.0, -5.0, 10.0, 20.0];
    for k in 0..4 {
        assert!((turned[k] - want[k]).abs() < 1e-4, "{turned:?}");
    }
    let same = rotated_bbox([3.0, 4.0, 5.0, 6.0], 360.0, (3.0, 4.0)).unwrap();
    assert!((same[2] - 5.0).abs() < 1e-4 && (same[3] - 6.0).abs() < 1e-4);
}

#[test]
fn unreadable_annotations_are_placed_on_the_image_or_left_unplaced() {
    let mut e = entry(vec![]);
    for region in [
        Some([10.0, 10.0, 5.0, 5.0]),
        Some([500.0, 0.0, 5.0, 5.0]),
        None,
    ] {
        e.uncertain.push(UncertainAnnotation {
            item: "annotations[0]".into(),
            labels: vec![],
            region,
            reason: "x".into(),
        });
    }
    let r = build_record(
        e,
        &facts(100, 100, 1),
        Path::new("/r"),
        "d",
        Utc::now(),
        10,
        &mut Vec::new(),
    )
    .unwrap();
    let regions: Vec<_> = r.privacy.uncertain.iter().map(|u| u.region).collect();
    assert_eq!(regions, [Some([10.0, 10.0, 5.0, 5.0]), None, None]);
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, 7]))
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

#[test]
fn file_facts_give_the_displayed_size_and_refuse_truncated_or_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let limits = DecodeLimits::default();
    let full = jpeg(40, 20);
    // EXIF orientation 6 after SOI.
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend([0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend(tiff);
    let mut turned = full[..2].to_vec();
    turned.extend([0xff, 0xe1]);
    turned.extend(((app1.len() + 2) as u16).to_be_bytes());
    turned.extend(app1);
    turned.extend(&full[2..]);
    let p = dir.path().join("turned.jpg");
    std::fs::write(&p, &turned).unwrap();
    let f = file_facts(&p, &limits).unwrap();
    assert_eq!((f.width, f.height, f.orientation), (20, 40, 6));

    let p = dir.path().join("cut.jpg");
    std::fs::write(&p, &full[..full.len() / 3]).unwrap();
    let err = file_facts(&p, &limits).unwrap_err();
    assert!(err.contains("truncated"), "{err}");

    let p = dir.path().join("big.png");
    std::fs::write(&p, vec![b'x'; 1 << 20]).unwrap();
    let err = file_facts(&p, &limits).unwrap_err();
    assert!(err.contains("not a readable image"), "{err}");

    let p = dir.path().join("ok.jpg");
    std::fs::write(&p, &full).unwrap();
    let few = DecodeLimits {
        max_pixels: 100,
        ..limits
    };
    let err = file_facts(&p, &few).unwrap_err();
    assert!(err.contains("more than the limit"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_link_out_of_the_images_folder_is_not_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(dir.path().join("secret.jpg"), jpeg(4, 4)).unwrap();
    std::fs::write(root.join("in.jpg"), jpeg(4, 4)).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.jpg"), root.join("out.jpg")).unwrap();
    std::os::unix::fs::symlink(root.join("in.jpg"), root.join("alias.jpg")).unwrap();
    let err = resolve_inside(&root, "out.jpg").unwrap_err();
    assert!(err.contains("outside the images folder"), "{err}");
    assert!(resolve_inside(&root, "alias.jpg").is_ok());
    assert!(resolve_inside(&root, "in.jpg").is_ok());
    assert!(
        resolve_inside(&root, "gone.jpg")
            .unwrap_err()
            .contains("missing")
    );
}

#[test]
fn image_paths_may_not_escape_the_root() {
    let root = Path::new("/lib");
    assert!(resolve_image_path(root, "../etc/passwd").is_err());
    assert!(resolve_image_path(root, "/etc/passwd").is_err());
    assert_eq!(
        resolve_image_path(root, "a/b.jpg").unwrap(),
        Path::new("/lib/a/b.jpg")
    );
}
