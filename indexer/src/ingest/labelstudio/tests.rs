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

/// Brush masks written by Label Studio's own encoder (`scripts/make-labelstudio-brush-fixture.py`)
/// become the boxes around their painted pixels; a mask that paints nothing, or whose length is
/// not its image's, is a problem and an uncertain annotation.
#[test]
fn brush_masks_become_the_box_around_their_pixels() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/labelstudio-brush/tasks.json"
    );
    let mut problems = Vec::new();
    let entries = parse(
        std::fs::read(path).unwrap().as_slice(),
        "tasks.json",
        None,
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    let got: Vec<_> = entries[0]
        .boxes
        .iter()
        .map(|b| (b.label.as_str(), [b.x, b.y, b.w, b.h]))
        .collect();
    assert_eq!(
        got,
        [
            ("face", [5.0, 10.0, 20.0, 10.0]),
            ("plate", [40.0, 30.0, 20.0, 10.0]),
            // One run of pixels from row 2 to row 4: every column of those rows.
            ("person", [0.0, 2.0, 64.0, 3.0]),
        ]
    );
    assert_eq!(entries[0].boxes[0].attributes["shape"], json!("brush"));
    let u: Vec<_> = entries[0]
        .uncertain
        .iter()
        .map(|u| (u.labels.clone(), u.region))
        .collect();
    assert_eq!(
        u,
        [
            (vec!["car".to_owned()], None),
            (vec!["dog".to_owned()], None)
        ]
    );
    // (Each reason goes on to say the box was skipped and what redaction does instead.)
    let why: Vec<&str> = problems
        .iter()
        .map(|p| p.reason.split(';').next().unwrap())
        .collect();
    assert_eq!(
        why,
        [
            "brushlabels result: the mask paints no pixel",
            "brushlabels result: the mask holds 12288 values, not the 64 x 47 x 4 of its image",
        ]
    );
}

proptest! {
    /// A mask of any shape: its box is the extent of its pixels, encoded as Label Studio's
    /// encoder would (runs of equal values and literal stretches, as rle-pack writes them).
    #[test]
    fn any_mask_gives_the_box_around_its_pixels(
        (w, h, pixels) in (1u64..40, 1u64..30).prop_flat_map(|(w, h)| {
            (Just(w), Just(h), prop::collection::vec(any::<bool>(), (w * h) as usize))
        }),
        word in 8usize..12,
    ) {
        let values: Vec<u64> = pixels.iter().flat_map(|&p| [0, 0, 0, if p { 200 } else { 0 }]).collect();
        let rle = encode(&values, word);
        let painted: Vec<(u64, u64)> = (0..w * h).filter(|&i| pixels[i as usize]).map(|i| (i % w, i / w)).collect();
        let got = super::brush::extent(&rle, w, h);
        if painted.is_empty() {
            prop_assert!(got.is_err());
        } else {
            let x0 = painted.iter().map(|p| p.0).min().unwrap();
            let x1 = painted.iter().map(|p| p.0).max().unwrap();
            let y0 = painted.iter().map(|p| p.1).min().unwrap();
            let y1 = painted.iter().map(|p| p.1).max().unwrap();
            prop_assert_eq!(got.unwrap(), [x0 as f32, y0 as f32, (x1 - x0 + 1) as f32, (y1 - y0 + 1) as f32]);
        }
        // Any bytes: an extent or an error, never a panic.
        let _ = super::brush::extent(&rle[..rle.len() / 2], w, h);
    }
}

/// rle-pack's encoder (thi-ng/umbrella `rle-pack` `encode`): runs of a repeated value, and
/// stretches of literal values, each with a 2-bit size class.
fn encode(src: &[u64], word: usize) -> Vec<u8> {
    let sizes = [3usize, 4, 8, 16];
    let mut bits: Vec<bool> = Vec::new();
    let put = |v: u64, n: usize, bits: &mut Vec<bool>| {
        for k in (0..n).rev() {
            bits.push((v >> k) & 1 == 1);
        }
    };
    put(src.len() as u64, 32, &mut bits);
    put(word as u64 - 1, 5, &mut bits);
    for s in sizes {
        put(s as u64 - 1, 4, &mut bits);
    }
    let class = |n: usize| sizes.iter().position(|&s| n - 1 < 1 << s).unwrap();
    let mut i = 0;
    while i < src.len() {
        let mut j = i + 1;
        while j < src.len() && src[j] == src[i] && j - i < 1 << 16 {
            j += 1;
        }
        if j - i > 1 {
            let n = j - i;
            put(1, 1, &mut bits);
            put(class(n) as u64, 2, &mut bits);
            put((n - 1) as u64, sizes[class(n)], &mut bits);
            put(src[i], word, &mut bits);
        } else {
            // A literal stretch up to the next repeat.
            let mut k = i + 1;
            while k < src.len() && (k + 1 >= src.len() || src[k] != src[k + 1]) && k - i < 1 << 16 {
                k += 1;
            }
            let n = k - i;
            put(0, 1, &mut bits);
            put(class(n) as u64, 2, &mut bits);
            put((n - 1) as u64, sizes[class(n)], &mut bits);
            for &v in &src[i..k] {
                put(v, word, &mut bits);
            }
            j = k;
        }
        i = j;
    }
    bits.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (k, &bit)| b | (u8::from(bit) << (7 - k)))
        })
        .collect()
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

/// Predictions are read only when asked, and only for a task no annotation covers (a cancelled
/// one does not): its boxes and labels marked with annotator `prediction:{model_version}`.
#[test]
fn predictions_stand_in_for_missing_annotations_only_when_asked() {
    let pred = |label: &str, version: Value| {
        json!({"model_version": version, "score": 0.9, "result": [
            {"type": "rectanglelabels", "original_width": 200, "original_height": 100,
             "value": {"x": 10, "y": 10, "width": 50, "height": 50, "rectanglelabels": [label]}},
            {"type": "choices", "value": {"choices": [format!("{label}-scene")]}}]})
    };
    let human = json!({"completed_by": 3, "result": [
        {"type": "rectanglelabels", "original_width": 200, "original_height": 100,
         "value": {"x": 0, "y": 0, "width": 10, "height": 10, "rectanglelabels": ["person"]}}]});
    let tasks = json!([
        {"id": 1, "data": {"image": "a.jpg"}, "annotations": [human],
         "predictions": [pred("car", json!("yolo-v8"))]},
        {"id": 2, "data": {"image": "b.jpg"}, "predictions": [pred("dog", json!("yolo-v8")), pred("cat", json!(null))]},
        {"id": 3, "data": {"image": "c.jpg"},
         "annotations": [{"was_cancelled": true, "result": []}],
         "predictions": [pred("bus", json!(7))]}
    ]);
    let bytes = serde_json::to_vec(&tasks).unwrap();
    let read = |predictions: bool| {
        let mut problems = Vec::new();
        let entries = parse_with(
            bytes.as_slice(),
            "ls.json",
            None,
            predictions,
            &mut problems,
            &Progress::default(),
        )
        .unwrap();
        assert_eq!(problems, vec![]);
        entries
    };
    let boxes = |e: &ImageEntry| -> Vec<(String, Option<String>)> {
        e.boxes
            .iter()
            .map(|b| (b.label.clone(), b.annotator.clone()))
            .collect()
    };
    // Not asked: predictions are not read at all.
    let plain = read(false);
    assert_eq!(boxes(&plain[0]), [("person".into(), Some("user 3".into()))]);
    assert!(
        plain[1..]
            .iter()
            .all(|e| e.boxes.is_empty() && e.labels.is_empty())
    );
    // Asked: the annotated task is unchanged; the others take their predictions.
    let got = read(true);
    assert_eq!(boxes(&got[0]), boxes(&plain[0]));
    assert_eq!(got[0].labels, plain[0].labels);
    assert_eq!(
        boxes(&got[1]),
        [
            ("dog".into(), Some("prediction:yolo-v8".into())),
            ("cat".into(), Some("prediction".into()))
        ]
    );
    assert_eq!(got[1].labels, ["dog-scene", "cat-scene"]);
    assert_eq!(got[1].annotators, ["prediction:yolo-v8", "prediction"]);
    assert_eq!(
        boxes(&got[2]),
        [("bus".into(), Some("prediction:7".into()))]
    );
    let b = &got[1].boxes[0];
    assert_eq!([b.x, b.y, b.w, b.h], [20.0, 10.0, 100.0, 50.0]);
}
