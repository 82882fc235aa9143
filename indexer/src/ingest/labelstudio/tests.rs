//! Unit tests of the parent module.

use proptest::prelude::*;

use super::*;

pub(crate) fn valid() -> Value {
    json!([
        {"id": 11, "data": {"image": "/data/local-files/?d=dir/a%20b.jpg", "site": "north"},
         "annotations": [{
            "id": 1, "completed_by": {"email": "ann@example.org"}, "was_cancelled": false,
            "updated_at": "2024-02-03T04:05:06.000000Z",
            "result": [
                {"id": "r1", "type": "rectanglelabels", "original_width": 200, "original_height": 100,
                 "value": {"x": 10, "y": 20, "width": 25, "height": 50, "rotation": 0, "rectanglelabels": ["car"]}},
                {"id": "r2", "type": "rectanglelabels", "original_width": 200, "original_height": 100,
                 "value": {"x": 50, "y": 50, "width": 10, "height": 20, "rotation": 90, "rectanglelabels": ["face"]}},
                {"type": "polygonlabels", "original_width": 200, "original_height": 100,
                 "value": {"points": [[10, 10], [20, 10], [15, 30]], "polygonlabels": ["plate"]}},
                {"type": "choices", "value": {"choices": ["night", "rain"]}},
                {"type": "textarea", "value": {"text": ["a car at night"]}},
                {"type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 1, "height": 1, "rectanglelabels": ["face"]}},
                {"type": "rectanglelabels", "original_width": 200, "original_height": 100, "value": {"x": 1, "y": 1, "width": 1, "height": 1}}
            ]},
            {"id": 2, "was_cancelled": true, "result": [
                {"type": "rectanglelabels", "original_width": 200, "original_height": 100,
                 "value": {"x": 0, "y": 0, "width": 5, "height": 5, "rectanglelabels": ["dog"]}}]}
         ],
         "predictions": [{"result": [{"type": "rectanglelabels", "original_width": 200, "original_height": 100,
            "value": {"x": 0, "y": 0, "width": 5, "height": 5, "rectanglelabels": ["cat"]}}]}]},
        {"id": 12, "data": {"image": "/data/upload/3/1a2b3c4d-b.png"}},
        {"id": 13, "data": {"text": "no image"}},
        "junk"
    ])
}

#[test]
fn a_label_studio_export_reads_to_exactly_its_results() {
    let mut problems = Vec::new();
    let bytes = serde_json::to_vec(&valid()).unwrap();
    let entries = parse(
        bytes.as_slice(),
        "ls.json",
        None,
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    assert_eq!(entries.len(), 2);
    let a = &entries[0];
    assert_eq!(a.file_name, "dir/a b.jpg");
    assert_eq!(a.source_id.as_deref(), Some("11"));
    assert_eq!(a.metadata["site"], json!("north"));
    assert_eq!(a.annotators, ["ann@example.org"]);
    assert_eq!(
        a.annotated,
        Some(parse_date("2024-02-03T04:05:06Z").unwrap())
    );
    assert_eq!(a.labels, ["night", "rain"]);
    assert_eq!(a.captions, ["a car at night"]);
    let got: Vec<_> = a
        .boxes
        .iter()
        .map(|b| (b.label.as_str(), [b.x, b.y, b.w, b.h]))
        .collect();
    assert_eq!(
        got,
        [
            ("car", [20.0, 20.0, 50.0, 50.0]),
            // 20 x 20 px turned 90 degrees about its top-left corner (100, 50).
            ("face", [80.0, 50.0, 20.0, 20.0]),
            ("plate", [20.0, 10.0, 20.0, 20.0]),
        ]
    );
    assert_eq!(a.boxes[0].annotator.as_deref(), Some("ann@example.org"));
    assert_eq!(a.boxes[1].attributes["rotation"], json!(90.0));
    // The polygon's points (percent of 200 x 100) in pixels, kept with its box.
    assert_eq!(
        a.boxes[2].polygons,
        [vec![[20.0, 10.0], [40.0, 10.0], [30.0, 30.0]]]
    );
    assert!(a.boxes[0].polygons.is_empty());
    let u: Vec<_> = a
        .uncertain
        .iter()
        .map(|u| (u.labels.clone(), u.region))
        .collect();
    assert_eq!(
        u,
        [
            (vec!["face".to_owned()], None),
            (vec![], Some([2.0, 1.0, 2.0, 1.0]))
        ]
    );
    assert_eq!(entries[1].file_name, "b.png");
    assert_eq!(problems.len(), 4, "{problems:?}");
}

#[test]
fn image_references_map_to_files() {
    assert_eq!(
        image_name("/data/upload/3/1a2b3c4d-b.png", None).unwrap(),
        "b.png"
    );
    assert_eq!(image_name("s3://bucket/x/y.jpg", None).unwrap(), "x/y.jpg");
    assert_eq!(
        image_name("https://h.org/i/y.jpg?sig=1", None).unwrap(),
        "i/y.jpg"
    );
    assert_eq!(image_name("data:image/png;base64,AAAA", None), None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("y.jpg"), b"x").unwrap();
    assert_eq!(
        image_name("https://h.org/i/y.jpg", Some(dir.path())).unwrap(),
        "y.jpg"
    );
}

#[test]
fn broken_json_keeps_the_tasks_before_the_break() {
    let text = serde_json::to_string(&valid()).unwrap();
    let cut = &text[..text.find("no image").unwrap()];
    let mut problems = Vec::new();
    let entries = parse(
        cut.as_bytes(),
        "ls.json",
        None,
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    assert_eq!(entries.len(), 2);
    assert!(problems.last().unwrap().reason.contains("not read"));
    assert!(
        parse(
            "[oops".as_bytes(),
            "ls.json",
            None,
            &mut problems,
            &Progress::default()
        )
        .is_err()
    );
    assert!(
        parse(
            "{\"images\": []}".as_bytes(),
            "ls.json",
            None,
            &mut problems,
            &Progress::default()
        )
        .is_err()
    );
    let one = parse(
        r#"{"data": {"image": "a.jpg"}}"#.as_bytes(),
        "t.json",
        None,
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    assert_eq!(one[0].file_name, "a.jpg");
}

proptest! {
    #![proptest_config(crate::ingest::proptest_config())]

    #[test]
    fn arbitrary_bytes_are_read_or_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse(bytes.as_slice(), "fuzz.json", None, &mut Vec::new(), &Progress::default()) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn mutated_exports_are_read_or_reported(edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..10, "[\\[\\]{}:,\"a-z0-9 .-]{0,6}"), 1..4)) {
        let mut text = serde_json::to_string(&valid()).unwrap();
        for (at, len, insert) in &edits {
            let i = at.index(text.len() + 1);
            let j = (i + len).min(text.len());
            text.replace_range(i..j, insert);
        }
        let mut problems = Vec::new();
        match parse(text.as_bytes(), "fuzz.json", None, &mut problems, &Progress::default()) {
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
