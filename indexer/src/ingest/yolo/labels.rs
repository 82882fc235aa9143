//! One YOLO label file's rows: `class cx cy w h` boxes, polygon (segment) rows kept as the
//! outline of their bounding box, pose rows' boxes, and the rows that cannot be placed.

use super::*;

/// Pixels a coordinate may lie outside the image and still be taken as its edge: YOLO files
/// round to six decimals, which is a hundredth of a pixel on a 10,000-pixel side.
const ROUNDING_SLACK: f64 = 0.01;

/// `v` moved onto the edge of `0..=max` when it lies outside by no more than rounding.
fn snap(v: f64, max: f64) -> f64 {
    if (-ROUNDING_SLACK..0.0).contains(&v) {
        0.0
    } else if v > max && v <= max + ROUNDING_SLACK {
        max
    } else {
        v
    }
}

/// `[cx, cy, w, h]` of a segment row's four points when they are the corners of an
/// axis-aligned rectangle (each corner once, in any order), else `None`.
fn rectangle(v: &[f64]) -> Option<[f64; 4]> {
    if v.len() != 8 {
        return None;
    }
    let xs = [v[0], v[2], v[4], v[6]];
    let ys = [v[1], v[3], v[5], v[7]];
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = (
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)];
    let every = corners.iter().all(|c| (0..4).any(|i| (xs[i], ys[i]) == *c));
    (x0 < x1 && y0 < y1 && every).then(|| [(x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0])
}

/// The parsed rows of one label file.
#[derive(Debug, Default, PartialEq)]
pub struct Rows {
    /// Boxes in pixels.
    pub boxes: Vec<RawBox>,
    /// Rows that could not be read or placed.
    pub uncertain: Vec<UncertainAnnotation>,
}

/// Parses one label file's text. `size` is the image's displayed size; without it, no row can
/// be placed and every row is uncertain.
pub fn parse_labels(
    text: &str,
    shown: &str,
    names: &Names,
    keypoints: bool,
    size: Option<(u32, u32)>,
    problems: &mut Vec<Problem>,
) -> Rows {
    let mut rows = Rows::default();
    for (n, line) in text.lines().enumerate() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.is_empty() {
            continue;
        }
        let item = format!("line {}", n + 1);
        let class = tokens[0]
            .parse::<f64>()
            .ok()
            .filter(|c| c.is_finite() && c.fract() == 0.0 && *c >= 0.0 && *c < 1e15)
            .map(|c| c as i64);
        let label = class.and_then(|c| names.get(&c)).cloned();
        let values: Option<Vec<f64>> = tokens[1..]
            .iter()
            .map(|t| t.parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect();
        let shape = match values.as_deref() {
            Some(v) if keypoints && v.len() >= 4 => Some(("box", v[..4].to_vec())),
            Some(v) if v.len() == 4 => Some(("box", v.to_vec())),
            // A segment row that is its own bounding rectangle (what a segmentation export
            // writes for a plain box) is that box.
            Some(v) => match rectangle(v) {
                Some(b) => Some(("box", b.to_vec())),
                None if v.len() >= 6 && v.len() % 2 == 0 => Some(("polygon", v.to_vec())),
                None => None,
            },
            None => None,
        };
        let rect = match (&shape, size) {
            (Some(("box", v)), Some((w, h))) => {
                let (iw, ih) = (f64::from(w), f64::from(h));
                let (cx, cy, bw, bh) = (v[0] * iw, v[1] * ih, v[2] * iw, v[3] * ih);
                let x0 = snap(cx - bw / 2.0, iw);
                let y0 = snap(cy - bh / 2.0, ih);
                let (x1, y1) = (snap(cx + bw / 2.0, iw), snap(cy + bh / 2.0, ih));
                Some([x0 as f32, y0 as f32, (x1 - x0) as f32, (y1 - y0) as f32])
            }
            (Some((_, v)), Some((w, h))) => {
                let (iw, ih) = (f64::from(w), f64::from(h));
                let points: Vec<(f64, f64)> = v
                    .chunks(2)
                    .map(|p| (snap(p[0] * iw, iw), snap(p[1] * ih, ih)))
                    .collect();
                bbox_of_points(&points)
            }
            _ => None,
        };
        let why = if class.is_none() {
            Some(format!("class {:?} is not a class id", tokens[0]))
        } else if label.is_none() {
            Some(format!("class {} has no name in the data set", tokens[0]))
        } else if shape.is_none() {
            Some(format!(
                "{} values after the class: neither a box (4) nor a polygon (3 points or more)",
                tokens.len() - 1
            ))
        } else if size.is_none() {
            Some("the image's size could not be read, so the row cannot be placed".into())
        } else {
            None
        };
        match (why, label, rect) {
            (None, Some(label), Some(rect)) => {
                let mut b = RawBox::new(label, rect, item);
                if let Some(("polygon", v)) = &shape {
                    b.attributes.insert("shape", json!("polygon"));
                    b.attributes.insert("points", json!(v.len() / 2));
                    if let Some((w, h)) = size {
                        let (iw, ih) = (f64::from(w), f64::from(h));
                        let points: Vec<(f64, f64)> = v
                            .chunks(2)
                            .map(|p| (snap(p[0] * iw, iw), snap(p[1] * ih, ih)))
                            .collect();
                        b.polygons = crate::ingest::polygon::ring(&points).into_iter().collect();
                    }
                }
                if keypoints {
                    b.attributes.insert("keypoints", json!(true));
                }
                rows.boxes.push(b);
            }
            (why, label, rect) => {
                let why = why.unwrap_or_else(|| "the row cannot be placed".into());
                let labels: Vec<String> = label.into_iter().collect();
                crate::ingest::skip_box(
                    problems,
                    shown,
                    &mut rows.uncertain,
                    UncertainAnnotation {
                        item,
                        labels,
                        region: rect,
                        reason: why,
                    },
                );
            }
        }
    }
    rows
}
