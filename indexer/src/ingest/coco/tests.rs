//! Unit tests of the parent module.

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn parse(v: &Value) -> (Vec<ImageEntry>, Vec<Problem>) {
    let mut problems = Vec::new();
    let entries = parse_export(&serde_json::to_vec(v).unwrap(), "x.json", &mut problems)
        .expect("a COCO object");
    (entries, problems)
}

fn export(categories: Value, annotations: Value) -> Value {
    json!({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
        "categories": categories,
        "annotations": annotations,
    })
}

#[test]
fn integral_float_ids_are_read_as_integers() {
    let (entries, problems) = parse(&json!({
        "images": [{"id": 1.0, "file_name": "a.jpg"}],
        "categories": [{"id": 1.0, "name": "face"}],
        "annotations": [{"image_id": 1.0, "category_id": 1.0, "bbox": [1, 2, 3, 4]}],
    }));
    assert_eq!(problems, vec![]);
    assert_eq!(entries[0].boxes[0].label, "face");
    assert!(entries[0].uncertain.is_empty());
}

#[test]
fn segmentation_polygons_are_kept_with_their_box_and_masks_are_not_outlines() {
    let (entries, problems) = parse(&export(
        json!([{"id": 1, "name": "car"}]),
        json!([
            // Two parts of one occluded object.
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20],
             "segmentation": [[10, 10, 20, 10, 20, 30], [30, 10, 40, 10, 40, 30, 30, 30]]},
            // A run-length mask: the box alone.
            {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4],
             "segmentation": {"counts": [1, 2], "size": [80, 100]}},
            // Not polygons: reported, the box kept.
            {"image_id": 1, "category_id": 1, "bbox": [5, 5, 5, 5], "segmentation": [[1, 2, 3]]},
            {"image_id": 1, "category_id": 1, "bbox": [6, 6, 5, 5], "segmentation": []},
        ]),
    ));
    let boxes = &entries[0].boxes;
    assert_eq!(boxes.len(), 4);
    assert_eq!(
        boxes[0].polygons,
        [
            vec![[10.0, 10.0], [20.0, 10.0], [20.0, 30.0]],
            vec![[30.0, 10.0], [40.0, 10.0], [40.0, 30.0], [30.0, 30.0]],
        ]
    );
    assert!(boxes[1..].iter().all(|b| b.polygons.is_empty()));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .reason
            .contains("segmentation is not a list of polygons")
    );
}

/// `negative_labels` on an image (imagelens' COCO export writes it) are the image's "not X"
/// labels, never present ones; a value that is not a list of names stays metadata.
#[test]
fn negative_labels_on_an_image_are_read_back_as_such() {
    let (entries, problems) = parse(&json!({
        "images": [
            {"id": 1, "file_name": "a.jpg", "negative_labels": ["person", " dog ", "person"]},
            {"id": 2, "file_name": "b.jpg", "negative_labels": "person"},
        ],
        "annotations": [],
    }));
    assert_eq!(problems, vec![]);
    assert_eq!(entries[0].negative_labels, ["person", "dog"]);
    assert!(entries[0].labels.is_empty());
    assert!(!entries[0].metadata.contains_key("negative_labels"));
    assert!(entries[1].negative_labels.is_empty());
    assert_eq!(entries[1].metadata["negative_labels"], json!("person"));
}

/// The file is read as it streams in; what it gives must be what the same bytes give in
/// memory, problems and refusals included.
#[test]
fn a_file_read_as_a_stream_gives_what_its_bytes_give() {
    let dir = tempfile::tempdir().unwrap();
    let valid = serde_json::to_vec(&valid()).unwrap();
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(&valid);
    let cases: Vec<Vec<u8>> = vec![
        valid.clone(),
        with_bom,
        br#"{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": null, "x": [1, {"y": 2}]}"#.to_vec(),
        br#"{"annotations": [{"image_id": 1}], "images": [{"id": 1, "file_name": "a.jpg"}], "categories": 3}"#.to_vec(),
        br#"{"images": 1}"#.to_vec(),
        br#"[{"images": []}]"#.to_vec(),
        b"\"text\"".to_vec(),
        br#"{"images": [], "annotations": [1, "two", null, {"image_id": 9}]}"#.to_vec(),
        br#"{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1"#.to_vec(),
    ];
    for (n, bytes) in cases.iter().enumerate() {
        let file = dir.path().join(format!("{n}.json"));
        std::fs::write(&file, bytes).unwrap();
        let mut p_mem = Vec::new();
        let mem = parse_export(bytes, &file.display().to_string(), &mut p_mem);
        let mut p_file = Vec::new();
        let progress = Progress::default();
        let streamed = read_one(&file, &mut p_file, &progress);
        if n < 2 {
            // Every annotation was counted as it was read.
            let annotations = self::valid()["annotations"].as_array().unwrap().len() as u64;
            assert_eq!(progress.counts().items, annotations, "case {n}");
        }
        match (mem, streamed) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "case {n}");
                assert_eq!(p_mem, p_file, "case {n}");
            }
            (Err(a), Err(b)) => {
                let (a, b) = (a.to_string(), b.to_string());
                // The position of a syntax error is said the same way by both.
                assert_eq!(a, b, "case {n}");
            }
            (a, b) => panic!("case {n}: {a:?} vs {b:?}"),
        }
    }
}

#[test]
fn unreadable_annotations_are_kept_as_uncertain_and_reported() {
    let (entries, problems) = parse(&export(
        json!([{"id": 1, "name": "face"}]),
        json!([
            {"image_id": 1, "category_id": "1", "bbox": [1, 2, 3, 4]},
            {"image_id": 1, "category_id": 1.5, "bbox": [1, 2, 3, 4]},
            {"image_id": 1, "category_id": 1, "bbox": ["60", "30", "40", "40"]},
            {"image_id": 1, "category_id": 9, "bbox": [5, 5, 5, 5]},
            {"image_id": 1, "bbox": [5, 5, 5, 5]},
        ]),
    ));
    let e = &entries[0];
    assert!(e.boxes.is_empty());
    let got: Vec<(Vec<String>, Option<[f32; 4]>)> = e
        .uncertain
        .iter()
        .map(|u| (u.labels.clone(), u.region))
        .collect();
    assert_eq!(
        got,
        vec![
            (vec![], Some([1.0, 2.0, 3.0, 4.0])),
            (vec![], Some([1.0, 2.0, 3.0, 4.0])),
            (vec!["face".to_owned()], None),
            (vec![], Some([5.0, 5.0, 5.0, 5.0])),
            (vec![], Some([5.0, 5.0, 5.0, 5.0])),
        ]
    );
    assert_eq!(problems.len(), 5);
    assert!(
        problems[2].reason.contains("whole image is redacted"),
        "{problems:?}"
    );
}

#[test]
fn a_category_id_defined_twice_is_reported_and_keeps_both_names() {
    let (entries, problems) = parse(&export(
        json!([{"id": 1, "name": "face"}, {"id": 1, "name": "car"}]),
        json!([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]),
    ));
    assert_eq!(problems.len(), 1);
    assert!(problems[0].reason.contains("defined again"), "{problems:?}");
    let b = &entries[0].boxes[0];
    assert_eq!(b.label, "car");
    assert_eq!(b.alt_labels, ["face"]);
}

#[test]
fn a_utf8_byte_order_mark_is_skipped() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(serde_json::to_vec(&export(json!([]), json!([]))).unwrap());
    let entries = parse_export(&bytes, "bom.json", &mut Vec::new()).unwrap();
    assert_eq!(entries.len(), 1);
}

// ---- property tests: any input is read or refused cleanly, and no annotation is dropped
// without a word. 10,000 cases each (`IMAGELENS_PROPTEST_CASES` overrides).

fn config() -> ProptestConfig {
    crate::ingest::proptest_config()
}

/// A valid export with boxes, captions, categories and a bit of everything.
fn valid() -> Value {
    json!({
        "info": {"date_created": "2024-05-01", "contributor": "ann"},
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80,
             "date_captured": "2024-01-02T03:04:05Z", "licence": 3},
            {"id": 2, "file_name": "dir/b.png", "width": 10, "height": 10},
            {"id": 3, "file_name": "c.jpg"}
        ],
        "categories": [
            {"id": 1, "name": "face", "supercategory": "person"},
            {"id": 2, "name": "car"},
            {"id": 3, "name": "licence plate"}
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 50, 40], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [1.5, 2.5, 3, 4]},
            {"id": 4, "image_id": 1, "caption": "a face near a car"},
            {"id": 5, "image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1], "annotator": "x"}
        ]
    })
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "[a-z0-9 ./\\\\\\x00-\\x1f\u{feff}]{0,12}".prop_map(Value::String),
        Just(json!("1")),
        Just(json!(1.0)),
        Just(json!(["60", "30", "40", "40"])),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    Duplicate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Duplicate),
    ]
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// Applies `m` to the node of pre-order index `*k` (counting down); returns true once done.
fn apply(v: &mut Value, m: &Mutation, k: &mut usize) -> bool {
    if *k == 0 {
        match m {
            Mutation::Replace(_, new) => *v = new.clone(),
            Mutation::Remove(_) => match v {
                Value::Array(a) if !a.is_empty() => {
                    a.pop();
                }
                Value::Object(o) => {
                    let first = o.keys().next().cloned();
                    if let Some(key) = first {
                        o.remove(&key);
                    }
                }
                _ => *v = Value::Null,
            },
            Mutation::Duplicate(_) => {
                if let Value::Array(a) = v
                    && let Some(first) = a.first().cloned()
                {
                    a.push(first);
                }
            }
        }
        return true;
    }
    *k -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|c| apply(c, m, k)),
        Value::Object(o) => o.values_mut().any(|c| apply(c, m, k)),
        _ => false,
    }
}

fn mentions(item: &str, i: usize) -> bool {
    let head = format!("annotations[{i}]");
    item == head || item.starts_with(&format!("{head} "))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_are_read_or_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut problems = Vec::new();
        match parse_export(&bytes, "fuzz.json", &mut problems) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn mutated_exports_are_read_with_every_dropped_annotation_reported(
        mutations in prop::collection::vec(mutation(), 1..5)
    ) {
        let mut doc = valid();
        for m in &mutations {
            let i = match m {
                Mutation::Replace(i, _) | Mutation::Remove(i) | Mutation::Duplicate(i) => *i,
            };
            let mut k = i % count(&doc);
            apply(&mut doc, m, &mut k);
        }
        let bytes = serde_json::to_vec(&doc).unwrap();
        let mut problems = Vec::new();
        match parse_export(&bytes, "fuzz.json", &mut problems) {
            Err(e) => {
                // Only a file that is not a COCO object at all is refused as a whole.
                let coco = doc.get("images").is_some_and(Value::is_array);
                prop_assert!(!coco, "refused a COCO object: {e}");
                prop_assert!(!e.to_string().is_empty());
            }
            Ok(entries) => {
                // Every annotation that names a box or category is a box, an uncertain
                // annotation (which redaction treats as possibly sensitive) or a problem.
                let anns = doc.get("annotations").and_then(Value::as_array).cloned().unwrap_or_default();
                for (i, ann) in anns.iter().enumerate() {
                    if ann.get("bbox").is_none() && ann.get("category_id").is_none() {
                        continue;
                    }
                    let as_box = entries.iter().flat_map(|e| &e.boxes).any(|b| mentions(&b.item, i));
                    let reported = problems.iter().any(|p| mentions(&p.item, i));
                    prop_assert!(as_box || reported, "annotations[{}] vanished: {}", i, ann);
                }
                for e in &entries {
                    for u in &e.uncertain {
                        prop_assert!(problems.iter().any(|p| p.item.starts_with(&u.item)));
                    }
                }
            }
        }
    }
}
