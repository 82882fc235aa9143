//! The CSV writer: `annotations.csv`, a row per box, per box-less image-level label, and per
//! image with neither. A box's attributes and the image's are JSON objects in `attributes` and
//! `image_attributes`, a box's outlines `[[[x, y], ...], ...]` in `polygons`, the labels the
//! image is known not to hold a JSON list in `negative_labels`.

use indexer::record::Record;

use super::*;

/// The CSV header, in column order.
pub(super) const CSV_HEADER: [&str; 20] = [
    "record_id",
    "path",
    "filename",
    "dataset",
    "split",
    "source_id",
    "width",
    "height",
    "sha256",
    "captured",
    "image_attributes",
    "negative_labels",
    "label",
    "x",
    "y",
    "w",
    "h",
    "attributes",
    "polygons",
    "captions",
];

/// `annotations.csv`: a row per box; a row with only `label` for each image-level label no box
/// carries (CSV, unlike COCO, can say that); one row with empty label and box fields for an
/// image with neither. Image columns repeat on every row of the image.
pub(super) fn csv_file(records: &[Record]) -> Result<Vec<u8>, ExportError> {
    let csv_error = |e: ::csv::Error| ExportError::Archive(format!("csv: {e}"));
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER).map_err(csv_error)?;
    for r in records {
        let width = r.width.to_string();
        let height = r.height.to_string();
        let captured = r.dates.captured.map(rfc3339).unwrap_or_default();
        let captions = r.captions.join(" | ");
        let image_attributes = json_object(&r.attributes);
        let negative_labels = if r.negative_labels.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&r.negative_labels).expect("strings serialise")
        };
        let mut rows: Vec<[String; 7]> = r
            .boxes
            .iter()
            .map(|b| {
                let attributes = json_object(&b.attributes);
                let polygons = if b.polygons.is_empty() {
                    String::new()
                } else {
                    serde_json::to_string(&b.polygons).expect("points serialise")
                };
                [
                    b.label.clone(),
                    b.x.to_string(),
                    b.y.to_string(),
                    b.w.to_string(),
                    b.h.to_string(),
                    attributes,
                    polygons,
                ]
            })
            .collect();
        for l in &r.labels {
            if !r.boxes.iter().any(|b| &b.label == l) {
                let mut row: [String; 7] = Default::default();
                row[0].clone_from(l);
                rows.push(row);
            }
        }
        if rows.is_empty() {
            rows.push(Default::default());
        }
        for [label, x, y, bw, bh, attributes, polygons] in &rows {
            w.write_record([
                r.id.as_str(),
                &r.path,
                &r.filename,
                &r.dataset,
                r.split.as_deref().unwrap_or_default(),
                r.source_id.as_deref().unwrap_or_default(),
                &width,
                &height,
                &r.sha256,
                &captured,
                &image_attributes,
                &negative_labels,
                label,
                x,
                y,
                bw,
                bh,
                attributes,
                polygons,
                &captions,
            ])
            .map_err(csv_error)?;
        }
    }
    w.into_inner()
        .map_err(|e| ExportError::Archive(format!("csv: {}", e.error())))
}

/// Attributes as a JSON object's text, empty for none (the manifest reader reads it back).
fn json_object(attributes: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
    if attributes.is_empty() {
        String::new()
    } else {
        serde_json::to_string(attributes).expect("json values serialise")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::export::tests::*;

    #[test]
    fn csv_has_one_row_per_box_and_one_for_a_boxless_record() {
        let src = tempfile::tempdir().unwrap();
        let records = sample(src.path());
        let entries = tar_entries(&export(&records, DatasetFormat::Csv, ArchiveFormat::Tar));
        let mut reader =
            ::csv::Reader::from_reader(Cursor::new(entries["annotations.csv"].clone()));
        assert_eq!(reader.headers().unwrap(), CSV_HEADER.as_slice());
        let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 4);
        let column = |row: &::csv::StringRecord, name: &str| {
            row[CSV_HEADER.iter().position(|h| *h == name).unwrap()].to_owned()
        };
        assert_eq!(column(&rows[0], "path"), "a/one.png");
        assert_eq!(column(&rows[0], "split"), "val");
        assert_eq!(column(&rows[2], "split"), "");
        assert_eq!(column(&rows[0], "label"), "cat");
        assert_eq!(
            [&rows[1]].map(|r| ["label", "x", "y", "w", "h"].map(|c| column(r, c))),
            [["dog", "0.5", "0.25", "5.5", "3.75"].map(str::to_owned)]
        );
        assert_eq!(column(&rows[1], "captions"), "a cat & a dog | two animals");
        assert_eq!(column(&rows[1], "captured"), "2021-03-04T05:06:07.250Z");
        assert_eq!(column(&rows[2], "path"), "two.png");
        assert_eq!(column(&rows[3], "path"), "b/c/three.png");
        for c in ["label", "x", "y", "w", "h", "captured"] {
            assert_eq!(column(&rows[3], c), "", "{c}");
        }
        assert_eq!(column(&rows[3], "sha256"), records[2].sha256);
    }

    #[test]
    fn csv_lists_image_level_labels_without_boxes() {
        let src = tempfile::tempdir().unwrap();
        let mut r = image_record(src.path(), "x.png", 16, 12, 1);
        r.labels = vec!["indoor".into()];
        let text = String::from_utf8(csv_file(&[r]).unwrap()).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains(",indoor,,,,,"), "{row}");
    }

    /// Negative labels are a JSON list in their own column, on each of the image's rows, and
    /// never a `label`.
    #[test]
    fn csv_carries_negative_labels_as_a_json_list() {
        let src = tempfile::tempdir().unwrap();
        let mut r = with_boxes(
            image_record(src.path(), "x.png", 16, 12, 1),
            vec![bbox("cat", None, 1.0, 1.0, 4.0, 4.0, 16.0, false)],
        );
        r.labels = vec!["indoor".into()];
        r.negative_labels = vec!["person".into(), "dog, \"big\"".into()];
        let bytes = csv_file(&[r]).unwrap();
        let mut reader = ::csv::Reader::from_reader(Cursor::new(bytes));
        let at = CSV_HEADER
            .iter()
            .position(|h| *h == "negative_labels")
            .unwrap();
        let label = CSV_HEADER.iter().position(|h| *h == "label").unwrap();
        let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        for row in &rows {
            let list: Vec<String> = serde_json::from_str(&row[at]).unwrap();
            assert_eq!(list, ["person", "dog, \"big\""]);
            assert!(!["person", "dog"].contains(&&row[label]));
        }
    }
}
