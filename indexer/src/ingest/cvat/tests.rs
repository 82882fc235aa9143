//! Unit tests of the parent module.

use proptest::prelude::*;

use super::*;

pub(crate) const VALID: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task><id>7</id><name>street</name><owner><username>ann</username></owner></task>
    <dumped>2024-03-04 05:06:07.123456+00:00</dumped>
  </meta>
  <image id="0" name="a.jpg" width="100" height="80" subset="train">
    <box label="car" source="manual" occluded="1" xtl="10.5" ytl="20" xbr="30.5" ybr="40" z_order="0">
      <attribute name="color">white</attribute>
    </box>
    <box label="face" occluded="0" xtl="40" ytl="40" xbr="60" ybr="50" rotation="90"/>
    <polygon label="plate" occluded="0" points="1,2;5,2;5,9.5;1,9" z_order="0"/>
    <points label="face" points="3,3"/>
    <polyline label="car" points="x,1"/>
    <box xtl="0" ytl="0" xbr="1" ybr="1"/>
    <tag label="night"><attribute name="sky">clear</attribute></tag>
  </image>
  <image id="1" name="dir/b.png" width="10" height="10"></image>
  <image id="2" width="10" height="10"></image>
</annotations>"#;

#[test]
fn a_cvat_file_reads_to_exactly_its_shapes_tags_and_meta() {
    let mut problems = Vec::new();
    let entries = parse(
        VALID.as_bytes(),
        "c.xml",
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    assert_eq!(entries.len(), 2);
    let a = &entries[0];
    assert_eq!(a.file_name, "a.jpg");
    assert_eq!((a.width, a.height), (Some(100), Some(80)));
    assert_eq!(a.annotators, ["ann"]);
    assert_eq!(
        a.annotated,
        Some(parse_date("2024-03-04T05:06:07.123456Z").unwrap())
    );
    assert_eq!(a.split.as_deref(), Some("train"));
    assert_eq!(a.source_id.as_deref(), Some("0"));
    assert_eq!(a.metadata["cvat_task"]["name"], json!("street"));
    assert_eq!(a.attributes["sky"], json!("clear"));
    assert!(!a.metadata.contains_key("tag_attributes"));
    assert_eq!(a.labels, ["night"]);
    let got: Vec<_> = a
        .boxes
        .iter()
        .map(|b| (b.label.as_str(), [b.x, b.y, b.w, b.h]))
        .collect();
    assert_eq!(
        got,
        [
            ("car", [10.5, 20.0, 20.0, 20.0]),
            ("face", [45.0, 35.0, 10.0, 20.0]),
            ("plate", [1.0, 2.0, 4.0, 7.5]),
            ("face", [3.0, 3.0, 0.0, 0.0]),
        ]
    );
    assert_eq!(
        a.boxes[0].attributes,
        BTreeMap::from([
            ("color".into(), json!("white")),
            ("occluded".into(), json!(true))
        ])
    );
    assert_eq!(a.boxes[1].attributes["rotation"], json!(90.0));
    assert_eq!(a.boxes[2].attributes["shape"], json!("polygon"));
    // The polygon's outline is kept with its box; the other shapes have none.
    assert_eq!(
        a.boxes[2].polygons,
        [vec![[1.0, 2.0], [5.0, 2.0], [5.0, 9.5], [1.0, 9.0]]]
    );
    assert!(a.boxes.iter().filter(|b| b.polygons.is_empty()).count() == 3);
    let u: Vec<_> = a
        .uncertain
        .iter()
        .map(|u| (u.labels.clone(), u.region))
        .collect();
    assert_eq!(
        u,
        [
            (vec!["car".to_owned()], None),
            (vec![], Some([0.0, 0.0, 1.0, 1.0]))
        ]
    );
    assert_eq!(entries[1].file_name, "dir/b.png");
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[2].reason.contains("without a name"));
}

const VIDEO: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task><id>9</id><name>drive</name><size>6</size><mode>interpolation</mode>
      <original_size><width>640</width><height>360</height></original_size>
      <owner><username>ann</username></owner></task>
    <dumped>2024-03-04 05:06:07+00:00</dumped>
  </meta>
  <track id="0" label="car" source="manual">
    <box frame="0" outside="0" occluded="0" keyframe="1" xtl="10" ytl="20" xbr="110" ybr="70" z_order="0">
      <attribute name="color">white</attribute>
    </box>
    <box frame="1" outside="0" occluded="1" keyframe="0" xtl="12" ytl="20" xbr="112" ybr="70" z_order="0">
      <attribute name="color">white</attribute>
    </box>
    <box frame="2" outside="1" occluded="0" keyframe="1" xtl="14" ytl="20" xbr="114" ybr="70" z_order="0"/>
  </track>
  <track id="1" label="plate" source="manual">
    <polygon frame="1" outside="0" occluded="0" keyframe="1" points="1,2;5,2;5,9;1,9" z_order="0"/>
    <box outside="0" xtl="0" ytl="0" xbr="1" ybr="1"/>
  </track>
  <track id="2">
    <box frame="3" outside="0" xtl="0" ytl="0" xbr="4" ybr="4"/>
  </track>
  <tag frame="4" label="night" source="manual"><attribute name="sky">clear</attribute></tag>
  <tag label="face" source="manual"/>
</annotations>"#;

/// CVAT for video: each frame a track's shape is inside (not `outside`), or a tag names, is
/// an image with those boxes, and so is every other frame file of the images folder; the
/// frame's file name comes from that folder (CVAT's `frame_000000.PNG` otherwise).
#[test]
fn a_video_reads_to_a_record_per_frame_with_its_tracks_boxes() {
    let mut problems = Vec::new();
    let files = BTreeMap::from([
        (0, "frame_000000.jpg".to_owned()),
        (5, "frame_000005.jpg".to_owned()),
    ]);
    let entries = parse_with_frames(
        VIDEO.as_bytes(),
        "v.xml",
        &files,
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "frame_000000.jpg",
            "frame_000001.PNG",
            "frame_000003.PNG",
            "frame_000004.PNG",
            "frame_000005.jpg"
        ]
    );
    for (e, frame) in entries.iter().zip([0, 1, 3, 4, 5]) {
        assert_eq!((e.width, e.height), (Some(640), Some(360)));
        assert_eq!(e.source_id.as_deref(), Some(frame.to_string().as_str()));
        assert_eq!(e.metadata["cvat_frame"], json!(frame));
        assert_eq!(e.metadata["cvat_task"]["name"], json!("drive"));
        assert_eq!(e.annotators, ["ann"]);
    }
    let boxes = |e: &ImageEntry| -> Vec<(String, [f32; 4])> {
        e.boxes
            .iter()
            .map(|b| (b.label.clone(), [b.x, b.y, b.w, b.h]))
            .collect()
    };
    assert_eq!(
        boxes(&entries[0]),
        [("car".into(), [10.0, 20.0, 100.0, 50.0])]
    );
    assert_eq!(
        entries[0].boxes[0].attributes,
        BTreeMap::from([
            ("color".into(), json!("white")),
            ("keyframe".into(), json!(true)),
            ("track".into(), json!("0")),
        ])
    );
    assert_eq!(
        boxes(&entries[1]),
        [
            ("car".into(), [12.0, 20.0, 100.0, 50.0]),
            ("plate".into(), [1.0, 2.0, 4.0, 7.0])
        ]
    );
    // Interpolated (not a keyframe) and occluded; the polygon keeps its outline.
    assert_eq!(entries[1].boxes[0].attributes["occluded"], json!(true));
    assert!(entries[1].boxes[0].attributes.get("keyframe").is_none());
    assert_eq!(entries[1].boxes[1].attributes["track"], json!("1"));
    assert_eq!(
        entries[1].boxes[1].polygons,
        [vec![[1.0, 2.0], [5.0, 2.0], [5.0, 9.0], [1.0, 9.0]]]
    );
    // A shape without a label is uncertain on its frame; a tag is the frame's label.
    assert!(entries[2].boxes.is_empty());
    assert_eq!(entries[2].uncertain[0].region, Some([0.0, 0.0, 4.0, 4.0]));
    assert_eq!(entries[3].labels, ["night"]);
    assert_eq!(entries[3].attributes["sky"], json!("clear"));
    assert!(entries[4].boxes.is_empty() && entries[4].labels.is_empty());
    // The shape without a frame, the one without a label and the tag without a frame.
    // What has no frame could be on any frame: every frame holds it as uncertain (the
    // shape's box and label, the tag's label), so a sensitive label is redacted there
    // wherever it may be.
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].reason.contains("without a frame number"));
    assert!(problems[2].reason.contains("a tag without a frame number"));
    for e in &entries {
        let unplaced: Vec<_> = e.uncertain[e.uncertain.len() - 2..]
            .iter()
            .map(|u| (u.labels.clone(), u.region, u.item.clone()))
            .collect();
        assert_eq!(
            unplaced,
            [
                (
                    vec!["plate".to_owned()],
                    Some([0.0, 0.0, 1.0, 1.0]),
                    problems[0].item.clone()
                ),
                (vec!["face".to_owned()], None, problems[2].item.clone()),
            ],
            "{}",
            e.file_name
        );
    }
}

/// A task made from part of a video (`start_frame` 10, every 5th frame): CVAT writes the
/// video's own frame numbers (`start_frame + i x step`, its `abs_frame_id`) both in the
/// shapes' `frame` and in the exported files' names, so frames are matched to files by that
/// number as they stand, with no offset or step applied.
#[test]
fn a_task_cut_from_a_video_keeps_the_videos_frame_numbers() {
    let xml = r#"<annotations><version>1.1</version><meta><task><id>3</id>
  <size>3</size><mode>interpolation</mode><start_frame>10</start_frame><stop_frame>20</stop_frame>
  <frame_filter>step=5</frame_filter>
  <original_size><width>64</width><height>48</height></original_size></task></meta>
  <track id="0" label="car">
    <box frame="10" outside="0" keyframe="1" xtl="1" ytl="1" xbr="9" ybr="9"/>
    <box frame="15" outside="0" keyframe="0" xtl="2" ytl="1" xbr="10" ybr="9"/>
    <box frame="20" outside="1" keyframe="1" xtl="3" ytl="1" xbr="11" ybr="9"/>
  </track>
</annotations>"#;
    let files = BTreeMap::from([
        (10, "frame_000010.PNG".to_owned()),
        (15, "frame_000015.PNG".to_owned()),
        (20, "frame_000020.PNG".to_owned()),
    ]);
    let mut problems = Vec::new();
    let entries = parse_with_frames(
        xml.as_bytes(),
        "v.xml",
        &files,
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let got: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.file_name.as_str(),
                e.boxes.iter().map(|b| b.x).collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("frame_000010.PNG", vec![1.0]),
            ("frame_000015.PNG", vec![2.0]),
            ("frame_000020.PNG", vec![])
        ]
    );
    assert_eq!(entries[1].metadata["cvat_frame"], json!(15));
}

#[test]
fn frame_files_are_the_frame_numbered_files_of_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "frame_000003.PNG",
        "frame_12.jpg",
        "other.png",
        "frame_x.png",
        "frame_.png",
    ] {
        std::fs::write(dir.path().join(name), b"").unwrap();
    }
    std::fs::create_dir(dir.path().join("frame_000007.png")).unwrap();
    assert_eq!(
        frame_files(dir.path()),
        BTreeMap::from([
            (3, "frame_000003.PNG".to_owned()),
            (12, "frame_12.jpg".to_owned())
        ])
    );
    assert!(frame_files(&dir.path().join("absent")).is_empty());
}

/// A `<track>` over the XML reader's bound on one element's nodes is one problem, and the
/// images after it are still read: with the real bound (200,000), and a small one.
#[test]
fn a_track_over_the_bound_is_one_problem_and_the_images_after_it_are_read() {
    let doc = |boxes: usize| {
        format!(
            "<annotations><version>1.1</version>\
             <image id=\"0\" name=\"a.jpg\" width=\"64\" height=\"48\">\
             <box label=\"car\" xtl=\"1\" ytl=\"2\" xbr=\"11\" ybr=\"12\"/></image>\
             <track id=\"7\" label=\"person\">{}</track>\
             <image id=\"1\" name=\"b.jpg\" width=\"64\" height=\"48\">\
             <box label=\"dog\" xtl=\"4\" ytl=\"4\" xbr=\"14\" ybr=\"24\"/>\
             <tag label=\"outdoor\"/></image></annotations>",
            "<box frame=\"0\"/>".repeat(boxes)
        )
    };
    let check = |entries: Vec<ImageEntry>, problems: Vec<Problem>, bound: usize| {
        let names: Vec<&str> = entries.iter().map(|e| e.file_name.as_str()).collect();
        assert_eq!(names, ["a.jpg", "b.jpg"], "{problems:?}");
        let b = &entries[1];
        assert_eq!(
            (b.boxes[0].label.as_str(), [b.boxes[0].x, b.boxes[0].y]),
            ("dog", [4.0, 4.0])
        );
        assert_eq!(b.labels, ["outdoor"]);
        assert_eq!(b.source_id.as_deref(), Some("1"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!(p.item, "<track> after image[1] id=\"7\" label=\"person\"");
        assert_eq!(
            p.reason,
            format!("more than {bound} elements; skipped, the rest is read")
        );
    };
    let mut problems = Vec::new();
    let big = doc(200_000);
    let entries = parse(big.as_bytes(), "c.xml", &mut problems, &Progress::default()).unwrap();
    check(entries, problems, 200_000);
    let mut problems = Vec::new();
    let small = doc(20);
    let (stream, root) = XmlStream::open(small.as_bytes()).unwrap();
    let entries = parse_stream(
        stream.with_max_nodes(10),
        root,
        "c.xml",
        &BTreeMap::new(),
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    check(entries, problems, 10);
}

#[test]
fn a_file_that_breaks_keeps_the_images_before_the_break() {
    let cut = &VALID[..VALID.find("<image id=\"2\"").unwrap() + 10];
    let mut problems = Vec::new();
    let entries = parse(cut.as_bytes(), "c.xml", &mut problems, &Progress::default()).unwrap();
    assert_eq!(entries.len(), 2);
    assert!(
        problems.last().unwrap().reason.contains("not read"),
        "{problems:?}"
    );
    assert!(
        parse(
            "<annotation/>".as_bytes(),
            "c.xml",
            &mut problems,
            &Progress::default()
        )
        .is_err()
    );
    assert!(
        parse(
            "{}".as_bytes(),
            "c.xml",
            &mut problems,
            &Progress::default()
        )
        .is_err()
    );
}

proptest! {
    #![proptest_config(crate::ingest::proptest_config())]

    #[test]
    fn arbitrary_bytes_are_read_or_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse(bytes.as_slice(), "fuzz.xml", &mut Vec::new(), &Progress::default()) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn mutated_files_are_read_or_reported(video in any::<bool>(), edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..12, "[<>/=\"a-z0-9 .,;-]{0,6}"), 1..4)) {
        // A CVAT for images or a CVAT for video document (ASCII both: any cut is a char
        // boundary).
        let mut text = if video { VIDEO } else { VALID }.to_owned();
        for (at, len, insert) in &edits {
            let i = at.index(text.len() + 1);
            let j = (i + len).min(text.len());
            text.replace_range(i..j, insert);
        }
        let mut problems = Vec::new();
        match parse(text.as_bytes(), "fuzz.xml", &mut problems, &Progress::default()) {
            Err(e) => prop_assert!(!e.is_empty()),
            Ok(entries) => {
                for e in &entries {
                    for u in &e.uncertain {
                        prop_assert!(problems.iter().any(|p| p.item == u.item));
                    }
                }
            }
        }
    }
}
