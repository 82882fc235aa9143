//! Redaction of sensitive regions (faces, licence plates) in images the service hands out.
//!
//! Owns which labels are sensitive ([`Redaction`]) and how their boxes are obscured. Boxes are
//! pixelated into coarse blocks and the blocks then blurred: pixelation alone keeps low
//! frequencies that can sometimes be recovered, a blur alone can be partly inverted; together,
//! at a block size that scales with the box, nothing recognisable is left. Box coordinates are
//! in the record's pixel space and are scaled to the image being served (a thumbnail), so a
//! box always covers the same part of the picture whatever the size.
//!
//! Coordinates: a record's size and boxes are in the pixels of the image as displayed, after
//! its EXIF orientation (what annotation tools show and what [`models::preprocess::decode`]
//! returns). Redaction fails closed where that convention may not hold or a label is unknown:
//! - on an image with an EXIF orientation, each sensitive region is also obscured where it
//!   would be had the annotator drawn it on the stored, unturned pixels;
//! - an annotation whose category or box could not be read (`record.privacy.uncertain`) counts
//!   as sensitive unless every label it may carry is known not to be; one that cannot be placed
//!   makes the whole image obscured;
//! - an image whose file orientation or shape does not match its record (a record ingested
//!   before orientations were recorded) is obscured whole.

use image::{Rgb, RgbImage};
use indexer::record::{Record, UncertainAnnotation};
use models::preprocess::{stored_rect_to_displayed, stored_size};
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

    /// Whether an annotation that could not be read may be sensitive: when its labels are
    /// unknown, or any of them is sensitive.
    pub fn may_be_sensitive(&self, u: &UncertainAnnotation) -> bool {
        u.labels.is_empty() || u.labels.iter().any(|l| self.is_sensitive(l))
    }

    /// Whether anything in the record must be obscured: a sensitive box, or an annotation that
    /// could not be read and may be sensitive.
    pub fn applies_to(&self, record: &Record) -> bool {
        record.boxes.iter().any(|b| self.is_sensitive(&b.label))
            || record
                .privacy
                .uncertain
                .iter()
                .any(|u| self.may_be_sensitive(u))
    }

    /// What to obscure in the record's image, in the record's pixels, for a file whose EXIF
    /// orientation is `file_orientation` (as decoding found it).
    pub fn plan(&self, record: &Record, file_orientation: u8) -> Plan {
        if !self.applies_to(record) {
            return Plan::Regions(Vec::new());
        }
        if file_orientation != record.privacy.orientation {
            return Plan::Whole;
        }
        let uncertain = record
            .privacy
            .uncertain
            .iter()
            .filter(|u| self.may_be_sensitive(u));
        let mut regions = Vec::new();
        for u in uncertain {
            match u.region {
                Some(r) => regions.push(r),
                None => return Plan::Whole,
            }
        }
        regions.extend(
            record
                .boxes
                .iter()
                .filter(|b| self.is_sensitive(&b.label))
                .map(|b| [b.x, b.y, b.w, b.h]),
        );
        let orientation = record.privacy.orientation;
        if orientation != 1 {
            // The same numbers read as stored-pixel coordinates, turned for display.
            let (sw, sh) = stored_size(record.width, record.height, orientation);
            let turned: Vec<[f32; 4]> = regions
                .iter()
                .map(|r| stored_rect_to_displayed(*r, orientation, sw as f32, sh as f32))
                .collect();
            regions.extend(turned);
        }
        Plan::Regions(regions)
    }

    /// Obscures what [`Redaction::plan`] says in `img` (the record's image, decoded with EXIF
    /// orientation `file_orientation` applied, at any scale) and returns how many regions were
    /// obscured (1 for the whole image).
    pub fn apply(&self, img: &mut RgbImage, record: &Record, file_orientation: u8) -> usize {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return 0;
        }
        let plan = self.plan(record, file_orientation);
        // A picture of another shape than the record is not the picture its boxes describe.
        let (rw, rh) = (
            f64::from(record.width.max(1)),
            f64::from(record.height.max(1)),
        );
        let skew = (f64::from(w) * rh - f64::from(h) * rw).abs();
        let same_shape = skew <= 0.02 * f64::from(w.max(h)) * rw.max(rh) + rw.max(rh);
        let regions = match plan {
            Plan::Regions(r) if r.is_empty() => return 0,
            Plan::Regions(r) if same_shape => r,
            _ => {
                obscure(img, 0, 0, w, h);
                return 1;
            }
        };
        let sx = w as f32 / record.width.max(1) as f32;
        let sy = h as f32 / record.height.max(1) as f32;
        let mut n = 0;
        for [x, y, bw, bh] in regions {
            if ![x, y, bw, bh].iter().all(|v| v.is_finite()) {
                obscure(img, 0, 0, w, h);
                return 1;
            }
            // Round outwards so the whole box is covered after scaling.
            let x0 = ((x * sx).floor().max(0.0) as u32).min(w);
            let y0 = ((y * sy).floor().max(0.0) as u32).min(h);
            let x1 = (((x + bw) * sx).ceil().max(0.0) as u32).min(w);
            let y1 = (((y + bh) * sy).ceil().max(0.0) as u32).min(h);
            if x1 > x0 && y1 > y0 {
                obscure(img, x0, y0, x1, y1);
                n += 1;
            }
        }
        n
    }
}

/// What [`Redaction::plan`] obscures.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// These regions, `[x, y, w, h]` in the record's pixels (none: the image is served as is).
    Regions(Vec<[f32; 4]>),
    /// The whole image: something that may be sensitive cannot be placed.
    Whole,
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
    use indexer::record::{BoundingBox, Dates, Privacy};

    fn record_with(label: &str) -> Record {
        Record {
            source_id: None,
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
                polygons: Vec::new(),
                label: label.into(),
                supercategory: None,
                x: 20.0,
                y: 20.0,
                w: 40.0,
                h: 40.0,
                area: 1600.0,
                iscrowd: false,
                annotator: None,
                attributes: Default::default(),
            }],
            captions: vec![],
            split: None,
            negative_labels: Vec::new(),
            attributes: Default::default(),
            metadata: Default::default(),
            annotators: vec![],
            exports: vec![],
            privacy: Default::default(),
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
        assert_eq!(r.apply(&mut img, &record_with("face"), 1), 1);
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
        assert_eq!(r.apply(&mut img, &record_with("car"), 1), 0);
        assert_eq!(img, original);
    }

    fn uncertain(labels: &[&str], region: Option<[f32; 4]>) -> UncertainAnnotation {
        UncertainAnnotation {
            item: "annotations[0]".into(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            region,
            reason: "unreadable".into(),
        }
    }

    #[test]
    fn unreadable_annotations_fail_closed() {
        let r = Redaction::default();
        let mut rec = record_with("car");
        assert_eq!(r.plan(&rec, 1), Plan::Regions(vec![]));
        // A car whose box could not be read: nothing to hide.
        rec.privacy.uncertain = vec![uncertain(&["car"], None)];
        assert!(!r.applies_to(&rec));
        // A face that cannot be placed, or an annotation of unknown label: the whole image.
        rec.privacy.uncertain = vec![uncertain(&["face"], None)];
        assert_eq!(r.plan(&rec, 1), Plan::Whole);
        rec.privacy.uncertain = vec![uncertain(&[], None)];
        assert_eq!(r.plan(&rec, 1), Plan::Whole);
        // An unknown label with a known place, or a box whose category has the names car and
        // face: that region.
        rec.privacy.uncertain = vec![uncertain(&["car", "face"], Some([1.0, 2.0, 3.0, 4.0]))];
        assert_eq!(r.plan(&rec, 1), Plan::Regions(vec![[1.0, 2.0, 3.0, 4.0]]));
        let original = checkerboard(100);
        let mut img = original.clone();
        rec.privacy.uncertain = vec![uncertain(&[], None)];
        assert_eq!(r.apply(&mut img, &rec, 1), 1);
        assert_ne!(img.get_pixel(5, 5), original.get_pixel(5, 5));
        assert_ne!(img.get_pixel(95, 95), original.get_pixel(95, 95));
    }

    #[test]
    fn on_turned_images_both_readings_of_a_box_are_obscured() {
        let r = Redaction::default();
        let mut rec = record_with("face");
        // Displayed 100x100 from stored 100x100 turned by EXIF 6: the box [20, 20, 40, 40]
        // read as stored pixels lies at display x 40..80, y 20..60.
        rec.privacy = Privacy {
            orientation: 6,
            uncertain: vec![],
        };
        assert_eq!(
            r.plan(&rec, 6),
            Plan::Regions(vec![[20.0, 20.0, 40.0, 40.0], [40.0, 20.0, 40.0, 40.0]])
        );
        // A file whose orientation is not the record's (ingested before orientations were
        // recorded): the whole image.
        assert_eq!(r.plan(&rec, 1), Plan::Whole);
        rec.privacy.orientation = 1;
        assert_eq!(r.plan(&rec, 8), Plan::Whole);
        // A picture of another shape than its record: the whole image.
        let mut img = RgbImage::from_fn(100, 50, |x, y| {
            if (x + y) % 2 == 0 {
                Rgb([255, 255, 255])
            } else {
                Rgb([0, 0, 0])
            }
        });
        let before = img.clone();
        assert_eq!(r.apply(&mut img, &rec, 1), 1);
        assert_ne!(img.get_pixel(95, 45), before.get_pixel(95, 45));
    }
}
