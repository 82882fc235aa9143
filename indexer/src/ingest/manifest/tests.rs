//! Unit tests of the parent module.

use proptest::prelude::*;

use super::*;

const VALID: &str = "filename,label,xmin,ymin,xmax,ymax,caption,captured_at,site\n\
    a.jpg,car,10,20,30,60,a red car,2024-01-02 03:04:05,north\n\
    a.jpg,face,1,2,3,4,a red car,,\n\
    a.jpg,night,,,,,,,\n\
    dir/b.png,,,,,,,2024-01-03,south\n\
    c.jpg,plate,1,x,3,4,,,\n\
    ,car,1,1,2,2,,,\n\
    c.jpg,,5,5,6,6,,bad date,\n";

fn parse_str(text: &str, kind: Kind) -> (Vec<ImageEntry>, Vec<Problem>) {
    let mut problems = Vec::new();
    let entries = parse(
        text.as_bytes(),
        kind,
        "m.csv",
        &mut problems,
        &Progress::default(),
    )
    .unwrap();
    (entries, problems)
}

#[test]
fn a_csv_manifest_reads_to_exactly_its_rows() {
    let (entries, problems) = parse_str(VALID, Kind::Csv);
    let names: Vec<_> = entries.iter().map(|e| e.file_name.as_str()).collect();
    assert_eq!(names, ["a.jpg", "dir/b.png", "c.jpg"]);
    let a = &entries[0];
    let boxes: Vec<_> = a
        .boxes
        .iter()
        .map(|b| (b.label.as_str(), [b.x, b.y, b.w, b.h]))
        .collect();
    assert_eq!(
        boxes,
        [
            ("car", [10.0, 20.0, 20.0, 40.0]),
            ("face", [1.0, 2.0, 2.0, 2.0])
        ]
    );
    assert_eq!(a.labels, ["night"]);
    assert_eq!(a.captions, ["a red car"]);
    assert_eq!(
        a.captured,
        Some(parse_date("2024-01-02T03:04:05Z").unwrap())
    );
    assert_eq!(
        a.metadata,
        BTreeMap::from([("site".into(), json!("north"))])
    );
    assert_eq!(entries[1].captured, Some(parse_date("2024-01-03").unwrap()));
    let c = &entries[2];
    let u: Vec<_> = c
        .uncertain
        .iter()
        .map(|u| (u.labels.clone(), u.region))
        .collect();
    assert_eq!(
        u,
        [
            (vec!["plate".to_owned()], None),
            (vec![], Some([5.0, 5.0, 1.0, 1.0]))
        ]
    );
    // The bad box, the row without a file, the box without a label, the bad date.
    assert_eq!(problems.len(), 4, "{problems:?}");
}

#[test]
fn jsonl_and_xywh_and_the_export_columns_read_alike() {
    let text = "{\"path\": \"d/a.jpg\", \"filename\": \"a.jpg\", \"label\": \"car\", \"x\": 1.5, \"y\": 2, \"w\": \"3\", \"h\": 4, \"captions\": \"one | two\", \"record_id\": \"ab\"}\n\
                \n[1]\n{oops\n{\"path\": \"d/a.jpg\", \"label\": \"cat\"}\n";
    let (entries, problems) = parse_str(text, Kind::Jsonl);
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.file_name, "d/a.jpg");
    assert_eq!(
        [e.boxes[0].x, e.boxes[0].y, e.boxes[0].w, e.boxes[0].h],
        [1.5, 2.0, 3.0, 4.0]
    );
    assert_eq!(e.captions, ["one", "two"]);
    assert_eq!(e.labels, ["cat"]);
    assert_eq!(e.metadata["record_id"], json!("ab"));
    assert_eq!(problems.len(), 2, "{problems:?}");
    let tsv = "file_name\tlabel\nq.jpg\tdog\n";
    let (entries, _) = parse_str(tsv, Kind::Tsv);
    assert_eq!(entries[0].labels, ["dog"]);
    let mut p = Vec::new();
    assert!(
        parse(
            "name,label\na,b\n".as_bytes(),
            Kind::Csv,
            "m.csv",
            &mut p,
            &Progress::default()
        )
        .is_err()
    );
}

#[test]
fn image_attributes_are_the_images_own_and_nulls_are_no_attribute() {
    let text = "filename,label,x,y,w,h,attributes,image_attributes\n\
                a.jpg,car,1,2,3,4,\"{\"\"color\"\": null}\",\"{\"\"weather\"\": \"\"rain\"\", \"\"night\"\": null}\"\n\
                a.jpg,dog,5,6,7,8,,\"{\"\"weather\"\": \"\"rain\"\", \"\"indoor\"\": false}\"\n\
                a.jpg,bus,5,6,7,8,,\"{\"\"weather\"\": \"\"sun\"\"}\"\n\
                b.jpg,cat,,,,,\"{\"\"color\"\": \"\"black\"\"}\",[1]\n";
    let (entries, problems) = parse_str(text, Kind::Csv);
    assert_eq!(entries.len(), 2);
    // A null is no attribute, as COCO's reader has it.
    assert!(entries[0].boxes[0].attributes.is_empty());
    // Merged over the image's rows; the first value of a key stays.
    assert_eq!(
        entries[0].attributes,
        BTreeMap::from([
            ("weather".to_owned(), json!("rain")),
            ("indoor".to_owned(), json!(false)),
        ])
    );
    assert!(!entries[0].metadata.contains_key("image_attributes"));
    let reasons: Vec<&str> = problems.iter().map(|p| p.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("\"weather\" differs")),
        "{reasons:?}"
    );
    // A box-less row's attributes belong to no box; a cell that is no object is refused.
    assert_eq!(entries[1].labels, ["cat"]);
    assert!(entries[1].attributes.is_empty());
    assert!(
        reasons.iter().any(|r| r.contains("row without a box")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("image_attributes is not a JSON object")),
        "{reasons:?}"
    );
}

#[test]
fn a_box_rows_attributes_column_is_a_json_object_or_a_problem() {
    let text = "filename,label,x,y,w,h,attributes,split\n\
                a.jpg,car,1,2,3,4,\"{\"\"color\"\": \"\"white\"\", \"\"occluded\"\": true}\",val\n\
                b.jpg,dog,1,2,3,4,not json,\n";
    let (entries, problems) = parse_str(text, Kind::Csv);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].boxes[0].attributes["color"], json!("white"));
    assert_eq!(entries[0].boxes[0].attributes["occluded"], json!(true));
    assert_eq!(entries[0].split.as_deref(), Some("val"));
    assert!(entries[1].boxes[0].attributes.is_empty());
    assert!(!entries[1].metadata.contains_key("attributes"));
    assert!(
        problems
            .iter()
            .any(|p| p.reason.contains("attributes is not a JSON object")),
        "{problems:?}"
    );
}

proptest! {
    #![proptest_config(crate::ingest::proptest_config())]

    #[test]
    fn arbitrary_bytes_are_read_or_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512), jsonl in any::<bool>()) {
        let kind = if jsonl { Kind::Jsonl } else { Kind::Csv };
        if let Err(e) = parse(bytes.as_slice(), kind, "fuzz", &mut Vec::new(), &Progress::default()) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn mutated_manifests_are_read_or_reported(edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..8, "[,\"\\na-z0-9 .:-]{0,6}"), 1..4)) {
        let mut text = VALID.to_owned();
        for (at, len, insert) in &edits {
            let i = at.index(text.len() + 1);
            let j = (i + len).min(text.len());
            text.replace_range(i..j, insert);
        }
        let mut problems = Vec::new();
        match parse(text.as_bytes(), Kind::Csv, "fuzz.csv", &mut problems, &Progress::default()) {
            Err(e) => prop_assert!(e.contains("file name column") || e.contains("CSV")),
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

/// `negative_labels`: a JSON list (the CSV export's form, or a JSONL list) or ` | `-separated
/// names, gathered over the image's rows; never a label, never metadata; a list of other things
/// is a problem.
#[test]
fn negative_labels_are_read_as_not_x() {
    let csv = "filename,label,negative_labels\n\
        a.jpg,car,\"[\"\"person\"\", \"\"dog, big\"\"]\"\n\
        a.jpg,,\"[\"\"person\"\"]\"\n\
        b.jpg,,cat | bird\n\
        c.jpg,,[1]\n";
    let (entries, problems) = parse_str(csv, Kind::Csv);
    assert_eq!(entries[0].negative_labels, ["person", "dog, big"]);
    assert_eq!(entries[0].labels, ["car"]);
    assert_eq!(entries[1].negative_labels, ["cat", "bird"]);
    assert!(entries[1].labels.is_empty());
    assert!(entries[2].negative_labels.is_empty());
    assert!(
        entries
            .iter()
            .all(|e| !e.metadata.contains_key("negative_labels"))
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .reason
            .contains("negative_labels is not a list of names")
    );
    let jsonl = "{\"file_name\": \"d.jpg\", \"negative_labels\": [\"person\"]}\n";
    let (entries, problems) = parse_str(jsonl, Kind::Jsonl);
    assert_eq!(problems, vec![]);
    assert_eq!(entries[0].negative_labels, ["person"]);
}
