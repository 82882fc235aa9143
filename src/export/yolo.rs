//! The YOLO writer: one label file per image (normalised centre and size per box),
//! `classes.txt` and `data.yaml`.

use std::collections::HashMap;

use indexer::record::Record;

use super::*;

pub(super) fn yolo_label_file(path: &str) -> String {
    format!("labels/{}", replace_extension(path, "txt"))
}

/// One label file per image (empty for an image without boxes, which YOLO trainers read as a
/// background image), `classes.txt` and `data.yaml`.
pub(super) fn yolo_files(records: &[Record]) -> Vec<(String, Vec<u8>)> {
    let labels = box_labels(records);
    let class: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    let mut files: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| {
            let mut text = String::new();
            for b in &r.boxes {
                if let Some(line) = yolo_line(class[b.label.as_str()], b, r.width, r.height) {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            (yolo_label_file(&r.path), text.into_bytes())
        })
        .collect();

    // One name per line: a line break inside a label would shift every later class.
    let one_line = |l: &str| l.replace(['\n', '\r'], " ");
    let mut classes = String::new();
    for l in &labels {
        classes.push_str(&one_line(l));
        classes.push('\n');
    }
    files.push(("classes.txt".to_owned(), classes.into_bytes()));

    // `val` is required by Ultralytics' loader even when it is the training set. Names are
    // written as JSON strings, which are valid YAML double-quoted scalars whatever they hold.
    let mut yaml = String::from(
        "# YOLO data set written by imagelens. Paths are relative to this file's folder;\n\
         # set `path` to its absolute location if your trainer resolves it elsewhere.\n\
         path: .\ntrain: images\nval: images\n",
    );
    yaml.push_str(&format!("nc: {}\nnames:\n", labels.len()));
    for l in &labels {
        let quoted = serde_json::to_string(l).expect("a string always serialises");
        yaml.push_str(&format!("  - {quoted}\n"));
    }
    files.push(("data.yaml".to_owned(), yaml.into_bytes()));
    files
}

/// `class cx cy w h`, normalised by the image size, 6 decimals. The box is first clipped to the
/// image (ingest already does, this keeps every value in [0, 1] regardless); a box with nothing
/// left, or an image without a size, gives no line.
pub(super) fn yolo_line(
    class: usize,
    b: &indexer::record::BoundingBox,
    width: u32,
    height: u32,
) -> Option<String> {
    let (iw, ih) = (f64::from(width), f64::from(height));
    let (x0, y0) = (f64::from(b.x).max(0.0), f64::from(b.y).max(0.0));
    let x1 = (f64::from(b.x) + f64::from(b.w)).min(iw);
    let y1 = (f64::from(b.y) + f64::from(b.h)).min(ih);
    if width == 0 || height == 0 || x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (cx, cy) = ((x0 + x1) / 2.0 / iw, (y0 + y1) / 2.0 / ih);
    let (w, h) = ((x1 - x0) / iw, (y1 - y0) / ih);
    Some(format!("{class} {cx:.6} {cy:.6} {w:.6} {h:.6}"))
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::export::tests::*;

    #[test]
    fn yolo_line_is_the_normalised_centre_and_size() {
        let b = bbox("cat", None, 2.0, 3.0, 8.0, 6.0, 48.0, false);
        assert_eq!(
            yolo_line(0, &b, 16, 12).unwrap(),
            "0 0.375000 0.500000 0.500000 0.500000"
        );
        let b = bbox("cat", None, 0.0, 0.0, 5.0, 3.0, 15.0, false);
        assert_eq!(
            yolo_line(4, &b, 16, 12).unwrap(),
            "4 0.156250 0.125000 0.312500 0.250000"
        );
        // Clipped to the image, and nothing at all outside it.
        let b = bbox("cat", None, 12.0, -2.0, 8.0, 6.0, 48.0, false);
        assert_eq!(
            yolo_line(1, &b, 16, 12).unwrap(),
            "1 0.875000 0.166667 0.250000 0.333333"
        );
        let b = bbox("cat", None, 20.0, 0.0, 8.0, 6.0, 48.0, false);
        assert_eq!(yolo_line(1, &b, 16, 12), None);
    }

    #[test]
    fn yolo_export_has_a_label_file_per_image_and_sorted_classes() {
        let src = tempfile::tempdir().unwrap();
        let records = sample(src.path());
        let entries = tar_entries(&export(&records, DatasetFormat::Yolo, ArchiveFormat::Tar));
        assert_eq!(entries["classes.txt"], b"cat\ndog\n");
        let one = String::from_utf8(entries["labels/a/one.txt"].clone()).unwrap();
        assert_eq!(
            one,
            "0 0.375000 0.500000 0.500000 0.500000\n1 0.203125 0.177083 0.343750 0.312500\n"
        );
        assert_eq!(entries["labels/b/c/three.txt"], b"");
        let yaml = String::from_utf8(entries["data.yaml"].clone()).unwrap();
        for line in [
            "path: .",
            "train: images",
            "nc: 2",
            "names:",
            "  - \"cat\"",
            "  - \"dog\"",
        ] {
            assert!(
                yaml.lines().any(|l| l == line),
                "{line:?} missing in\n{yaml}"
            );
        }
    }
}
