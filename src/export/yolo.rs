//! The YOLO writer: one label file per image (normalised centre and size per box, or each
//! box's outline for segmentation), `classes.txt` and `data.yaml`.

use std::collections::HashMap;

use indexer::record::Record;

use super::*;

pub(super) fn yolo_label_file(path: &str) -> String {
    format!("labels/{}", replace_extension(path, "txt"))
}

/// What a label file's rows hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rows {
    /// `class cx cy w h` (detection).
    Boxes,
    /// `class x1 y1 x2 y2 ...` (segmentation), every box an outline.
    Outlines,
}

/// One label file per image (empty for an image without boxes, which YOLO trainers read as a
/// background image), `classes.txt` and `data.yaml`.
pub(super) fn yolo_files(records: &[Record], rows: Rows) -> Vec<(String, Vec<u8>)> {
    let labels = box_labels(records);
    let class: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    let mut files: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| {
            let mut text = String::new();
            for b in &r.boxes {
                let class = class[b.label.as_str()];
                let line = match rows {
                    Rows::Boxes => yolo_line(class, b, r.width, r.height),
                    Rows::Outlines => yolo_segment_line(class, b, r.width, r.height),
                };
                if let Some(line) = line {
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
         path: .\n",
    );
    let lists = split_lists(records);
    if lists.is_empty() {
        yaml.push_str("train: images\nval: images\n");
    }
    for (split, list) in lists {
        let name = format!("images/{split}.txt");
        yaml.push_str(&format!("{split}: {name}\n"));
        files.push((name, list.into_bytes()));
    }
    yaml.push_str(&format!("nc: {}\nnames:\n", labels.len()));
    for l in &labels {
        let quoted = serde_json::to_string(l).expect("a string always serialises");
        yaml.push_str(&format!("  - {quoted}\n"));
    }
    files.push(("data.yaml".to_owned(), yaml.into_bytes()));
    files
}

/// YOLO's splits, as `(split, image list)`: when some record is in `train`, `val` or `test`,
/// a list per split (`./{path}` a line, relative to the list, which lies in `images/`), with
/// the records in no such split in both `train` and `val` (the YOLO reader reads an image
/// listed twice as in no one split); `val` always, as Ultralytics requires it; `test` when any
/// record is in it. Empty when no record is in one of them (`data.yaml` then names `images`).
fn split_lists(records: &[Record]) -> Vec<(&'static str, String)> {
    const SPLITS: [&str; 3] = ["train", "val", "test"];
    let split_of = |r: &Record| SPLITS.into_iter().find(|s| r.split.as_deref() == Some(*s));
    if !records.iter().any(|r| split_of(r).is_some()) {
        return Vec::new();
    }
    SPLITS
        .into_iter()
        .filter_map(|split| {
            let mut list = String::new();
            for r in records {
                let listed = match split_of(r) {
                    Some(s) => s == split,
                    None => split != "test",
                };
                if listed {
                    list.push_str(&format!("./{}\n", r.path));
                }
            }
            (split != "test" || !list.is_empty()).then_some((split, list))
        })
        .collect()
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
    let [x0, y0, x1, y1] = clipped(b, width, height)?;
    let (iw, ih) = (f64::from(width), f64::from(height));
    let (cx, cy) = ((x0 + x1) / 2.0 / iw, (y0 + y1) / 2.0 / ih);
    let (w, h) = ((x1 - x0) / iw, (y1 - y0) / ih);
    Some(format!("{class} {cx:.6} {cy:.6} {w:.6} {h:.6}"))
}

/// The box clipped to a `width` x `height` image, `[x0, y0, x1, y1]` in pixels; `None` when
/// nothing of it is inside, or the image has no size.
fn clipped(b: &indexer::record::BoundingBox, width: u32, height: u32) -> Option<[f64; 4]> {
    let (iw, ih) = (f64::from(width), f64::from(height));
    let (x0, y0) = (f64::from(b.x).max(0.0), f64::from(b.y).max(0.0));
    let x1 = (f64::from(b.x) + f64::from(b.w)).min(iw);
    let y1 = (f64::from(b.y) + f64::from(b.h)).min(ih);
    (width > 0 && height > 0 && x1 > x0 && y1 > y0).then_some([x0, y0, x1, y1])
}

/// `class x1 y1 x2 y2 ...`, normalised by the image size, 6 decimals: the box's outline (its
/// parts joined into one by [`joined`]), or its rectangle when it has none; clipped to the
/// image. A box with nothing inside the image, or an image without a size, gives no line.
pub(super) fn yolo_segment_line(
    class: usize,
    b: &indexer::record::BoundingBox,
    width: u32,
    height: u32,
) -> Option<String> {
    let [x0, y0, x1, y1] = clipped(b, width, height)?;
    let (iw, ih) = (f64::from(width), f64::from(height));
    let outline: Vec<[f64; 2]> = if b.polygons.is_empty() {
        vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    } else {
        let parts: Vec<Vec<[f64; 2]>> = b
            .polygons
            .iter()
            .map(|ring| {
                ring.iter()
                    .map(|&[x, y]| [f64::from(x), f64::from(y)])
                    .collect()
            })
            .collect();
        joined(&parts)
    };
    let mut line = class.to_string();
    for [x, y] in outline {
        let (x, y) = ((x / iw).clamp(0.0, 1.0), (y / ih).clamp(0.0, 1.0));
        line.push_str(&format!(" {x:.6} {y:.6}"));
    }
    Some(line)
}

/// The parts of an outline as one ring, as Ultralytics' `merge_multi_segment` joins them (a
/// segment row holds one outline): each part is entered at its point nearest the previous part,
/// walked round to its point nearest the next, the next parts are visited, and the walk comes
/// back the same way, so every part is traced whole and consecutive parts are joined by a
/// zero-width seam between their nearest points. One part is returned as it is.
fn joined(parts: &[Vec<[f64; 2]>]) -> Vec<[f64; 2]> {
    let parts: Vec<&Vec<[f64; 2]>> = parts.iter().filter(|p| !p.is_empty()).collect();
    if parts.len() <= 1 {
        return parts.first().map(|p| p.to_vec()).unwrap_or_default();
    }
    // Between parts i and i + 1: the index of the nearest pair's point in each.
    let seams: Vec<(usize, usize)> = parts
        .windows(2)
        .map(|pair| {
            let mut best = (f64::INFINITY, 0, 0);
            for (i, a) in pair[0].iter().enumerate() {
                for (j, b) in pair[1].iter().enumerate() {
                    let d = (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2);
                    if d < best.0 {
                        best = (d, i, j);
                    }
                }
            }
            (best.1, best.2)
        })
        .collect();
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 2).sum());
    // Out: part i from where the walk entered it to its seam with part i + 1 (the last part
    // whole, back to its entry).
    let mut entry = seams[0].0;
    let mut back = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let n = part.len();
        match seams.get(i) {
            Some(&(exit, next_entry)) => {
                let forward = (exit + n - entry) % n;
                out.extend((0..=forward).map(|k| part[(entry + k) % n]));
                back.push((i, entry, exit, n - forward));
                entry = next_entry;
            }
            None => out.extend((0..=n).map(|k| part[(entry + k) % n])),
        }
    }
    // Back: part i from its seam round to where the walk entered it.
    for (i, entry, exit, rest) in back.into_iter().rev() {
        let part = parts[i];
        let n = part.len();
        out.extend((0..=rest).map(|k| part[(exit + k) % n]));
        debug_assert_eq!(out.last(), Some(&part[entry]));
    }
    out
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
    fn a_segment_line_is_the_outline_or_the_rectangle_normalised() {
        // No outline: the rectangle, clipped to the image, corner by corner.
        let b = bbox("cat", None, 12.0, -2.0, 8.0, 6.0, 48.0, false);
        assert_eq!(
            yolo_segment_line(1, &b, 16, 12).unwrap(),
            "1 0.750000 0.000000 1.000000 0.000000 1.000000 0.333333 0.750000 0.333333"
        );
        // An outline: its points.
        let mut b = bbox("cat", None, 2.0, 3.0, 8.0, 6.0, 48.0, false);
        b.polygons = vec![vec![[2.0, 3.0], [10.0, 3.0], [2.0, 9.0]]];
        assert_eq!(
            yolo_segment_line(0, &b, 16, 12).unwrap(),
            "0 0.125000 0.250000 0.625000 0.250000 0.125000 0.750000"
        );
        // Nothing inside the image, or no size: no line.
        let b = bbox("cat", None, 20.0, 0.0, 8.0, 6.0, 48.0, false);
        assert_eq!(yolo_segment_line(1, &b, 16, 12), None);
        assert_eq!(yolo_segment_line(1, &b, 0, 0), None);
    }

    /// The signed area of a ring (shoelace).
    fn signed_area(ring: &[[f64; 2]]) -> f64 {
        let n = ring.len();
        (0..n)
            .map(|i| {
                let ([x0, y0], [x1, y1]) = (ring[i], ring[(i + 1) % n]);
                x0 * y1 - x1 * y0
            })
            .sum::<f64>()
            / 2.0
    }

    #[test]
    fn two_squares_join_at_their_nearest_corners() {
        let a = vec![[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]];
        let b = vec![[5.0, 5.0], [7.0, 5.0], [7.0, 7.0], [5.0, 7.0]];
        let ring = joined(&[a.clone(), b.clone()]);
        // Into b at its corner nearest a, round b, back to a's corner nearest b, round a.
        assert_eq!(
            ring,
            [
                [2.0, 2.0],
                [5.0, 5.0],
                [7.0, 5.0],
                [7.0, 7.0],
                [5.0, 7.0],
                [5.0, 5.0],
                [2.0, 2.0],
                [0.0, 2.0],
                [0.0, 0.0],
                [2.0, 0.0],
                [2.0, 2.0],
            ]
        );
        assert_eq!(signed_area(&ring), signed_area(&a) + signed_area(&b));
        assert_eq!(joined(std::slice::from_ref(&a)), a);
    }

    proptest::proptest! {
        /// However many parts, of whatever shapes: every point of every part is on the joined
        /// ring, the ring closes where it starts, and it encloses the parts' areas (the seams,
        /// walked once each way, add none).
        #[test]
        fn joined_parts_keep_every_point_and_their_area(
            parts in proptest::collection::vec(
                proptest::collection::vec((0u16..1000, 0u16..1000), 3..12),
                1..6,
            )
        ) {
            let parts: Vec<Vec<[f64; 2]>> = parts
                .iter()
                .map(|p| p.iter().map(|&(x, y)| [f64::from(x), f64::from(y)]).collect())
                .collect();
            let ring = joined(&parts);
            for p in parts.iter().flatten() {
                proptest::prop_assert!(ring.contains(p));
            }
            if parts.len() > 1 {
                proptest::prop_assert_eq!(ring.first(), ring.last());
            }
            let want: f64 = parts.iter().map(|p| signed_area(p)).sum();
            proptest::prop_assert!((signed_area(&ring) - want).abs() <= 1e-6 * want.abs().max(1.0));
        }
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
            "train: images/train.txt",
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

    /// Splits become image lists in `images/` named by `data.yaml`; a record in no split is in
    /// both `train` and `val`, which the YOLO reader reads as no one split.
    #[test]
    fn yolo_export_lists_each_split() {
        let src = tempfile::tempdir().unwrap();
        let mut records = sample(src.path());
        records[0].split = Some("val".into());
        records[1].split = Some("test".into());
        let entries = tar_entries(&export(&records, DatasetFormat::Yolo, ArchiveFormat::Tar));
        let yaml = String::from_utf8(entries["data.yaml"].clone()).unwrap();
        for line in [
            "train: images/train.txt",
            "val: images/val.txt",
            "test: images/test.txt",
        ] {
            assert!(yaml.lines().any(|l| l == line), "{line:?} in\n{yaml}");
        }
        assert!(!yaml.lines().any(|l| l == "train: images"), "{yaml}");
        let list =
            |s: &str| String::from_utf8(entries[&format!("images/{s}.txt")].clone()).unwrap();
        let (one, two, three) = (&records[0].path, &records[1].path, &records[2].path);
        assert_eq!(list("train"), format!("./{three}\n"));
        assert_eq!(list("val"), format!("./{one}\n./{three}\n"));
        assert_eq!(list("test"), format!("./{two}\n"));
        // No record in a YOLO split: the whole images folder, no lists.
        for r in &mut records {
            r.split = None;
        }
        records[0].split = Some("holdout".into());
        let entries = tar_entries(&export(&records, DatasetFormat::Yolo, ArchiveFormat::Tar));
        let yaml = String::from_utf8(entries["data.yaml"].clone()).unwrap();
        assert!(yaml.contains("\ntrain: images\nval: images\n"), "{yaml}");
        assert!(
            !entries
                .keys()
                .any(|k| k.starts_with("images/") && k.ends_with(".txt"))
        );
    }
}
