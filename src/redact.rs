//! Redaction of sensitive regions (faces, licence plates) in images the service hands out.
//!
//! Owns which labels are sensitive ([`Redaction`]) and how their boxes are obscured. Boxes are
//! pixelated into coarse blocks and the blocks then blurred: pixelation alone keeps low
//! frequencies that can sometimes be recovered, a blur alone can be partly inverted; together,
//! at a block size that scales with the box, nothing recognisable is left. Box coordinates are
//! in the record's pixel space and are scaled to the image being served (a thumbnail), so a
//! box always covers the same part of the picture whatever the size.

use image::{Rgb, RgbImage};
use indexer::record::Record;
use serde::{Deserialize, Serialize};

/// Which labels are sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redaction {
    /// Labels whose boxes are obscured unless the viewer may, and asks to, see them
    /// (compared case-insensitively, `_`/`-` as spaces).
    pub sensitive_labels: Vec<String>,
}

impl Default for Redaction {
    fn default() -> Self {
        Self {
            sensitive_labels: ["face", "person's face", "licence plate", "license plate"]
                .map(String::from)
                .to_vec(),
        }
    }
}

fn norm(label: &str) -> String {
    label
        .trim()
        .to_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl Redaction {
    /// Whether `label` is sensitive.
    pub fn is_sensitive(&self, label: &str) -> bool {
        let l = norm(label);
        self.sensitive_labels.iter().any(|s| norm(s) == l)
    }

    /// Whether any box of the record is sensitive.
    pub fn applies_to(&self, record: &Record) -> bool {
        record.boxes.iter().any(|b| self.is_sensitive(&b.label))
    }

    /// Obscures every sensitive box of `record` in `img` (the record's image at any scale) and
    /// returns how many boxes were obscured.
    pub fn apply(&self, img: &mut RgbImage, record: &Record) -> usize {
        let (w, h) = img.dimensions();
        let sx = w as f32 / record.width.max(1) as f32;
        let sy = h as f32 / record.height.max(1) as f32;
        let mut n = 0;
        for b in record.boxes.iter().filter(|b| self.is_sensitive(&b.label)) {
            // Round outwards so the whole box is covered after scaling.
            let x0 = ((b.x * sx).floor().max(0.0) as u32).min(w);
            let y0 = ((b.y * sy).floor().max(0.0) as u32).min(h);
            let x1 = (((b.x + b.w) * sx).ceil().max(0.0) as u32).min(w);
            let y1 = (((b.y + b.h) * sy).ceil().max(0.0) as u32).min(h);
            if x1 > x0 && y1 > y0 {
                obscure(img, x0, y0, x1, y1);
                n += 1;
            }
        }
        n
    }
}

/// Pixelates the rectangle `[x0, x1) x [y0, y1)` into blocks of about an eighth of its longer
/// side (at least 4 px), then blurs it.
fn obscure(img: &mut RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) {
    let block = ((x1 - x0).max(y1 - y0) / 8).max(4);
    let mut by = y0;
    while by < y1 {
        let bh = block.min(y1 - by);
        let mut bx = x0;
        while bx < x1 {
            let bw = block.min(x1 - bx);
            let mut sum = [0u64; 3];
            for y in by..by + bh {
                for x in bx..bx + bw {
                    let p = img.get_pixel(x, y).0;
                    for c in 0..3 {
                        sum[c] += u64::from(p[c]);
                    }
                }
            }
            let count = u64::from(bw * bh);
            let mean = Rgb(sum.map(|s| (s / count) as u8));
            for y in by..by + bh {
                for x in bx..bx + bw {
                    img.put_pixel(x, y, mean);
                }
            }
            bx += bw;
        }
        by += bh;
    }
    let region = image::imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image();
    let blurred = image::imageops::blur(&region, block as f32 / 2.0);
    image::imageops::replace(img, &blurred, i64::from(x0), i64::from(y0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexer::record::{BoundingBox, Dates};

    fn record_with(label: &str) -> Record {
        Record {
            id: "0".repeat(16),
            filename: "a.png".into(),
            path: "a.png".into(),
            images_root: "/".into(),
            width: 100,
            height: 100,
            bytes: 1,
            sha256: "0".repeat(64),
            dataset: "d".into(),
            dates: Dates::default(),
            labels: vec![label.into()],
            supercategories: vec![],
            boxes: vec![BoundingBox {
                label: label.into(),
                supercategory: None,
                x: 20.0,
                y: 20.0,
                w: 40.0,
                h: 40.0,
                area: 1600.0,
                iscrowd: false,
                annotator: None,
            }],
            captions: vec![],
            metadata: Default::default(),
            annotators: vec![],
            exports: vec![],
        }
    }

    fn checkerboard(size: u32) -> RgbImage {
        RgbImage::from_fn(size, size, |x, y| {
            if (x + y) % 2 == 0 {
                Rgb([255, 255, 255])
            } else {
                Rgb([0, 0, 0])
            }
        })
    }

    #[test]
    fn sensitive_boxes_are_obscured_and_the_rest_is_untouched() {
        let r = Redaction::default();
        assert!(r.is_sensitive("Licence_Plate"));
        assert!(r.is_sensitive("face"));
        assert!(!r.is_sensitive("car"));
        let original = checkerboard(200); // served at twice the record's size
        let mut img = original.clone();
        assert_eq!(r.apply(&mut img, &record_with("face")), 1);
        // Inside the box (40..120 at this scale) the checkerboard is gone.
        for (x, y) in [(41, 41), (80, 80), (119, 119)] {
            let p = img.get_pixel(x, y).0;
            assert!(p[0] > 40 && p[0] < 215, "pixel {x},{y} is still {p:?}");
        }
        // Outside, every pixel is as it was.
        for (x, y) in [(10, 10), (39, 80), (120, 120), (199, 0)] {
            assert_eq!(img.get_pixel(x, y), original.get_pixel(x, y));
        }
        let mut img = original.clone();
        assert_eq!(r.apply(&mut img, &record_with("car")), 0);
        assert_eq!(img, original);
    }
}
