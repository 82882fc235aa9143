//! Seeded synthetic scenes: images with labelled objects, a COCO export (instances and
//! captions) and varied dates and file names.
//!
//! Used by the test suite, the benches and `imagelens demo`, so nothing is downloaded. Every
//! object is drawn as a filled shape in its label's colour on a day or night background, so a
//! model can in principle tell scenes apart; boxes are exact.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use image::{Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Labels, their supercategory and drawing colour.
pub const LABELS: [(&str, &str, [u8; 3]); 10] = [
    ("car", "vehicle", [200, 30, 30]),
    ("truck", "vehicle", [240, 240, 240]),
    ("bicycle", "vehicle", [30, 30, 200]),
    ("boat", "vehicle", [30, 160, 200]),
    ("person", "person", [230, 180, 140]),
    ("dog", "animal", [140, 90, 40]),
    ("cat", "animal", [120, 120, 120]),
    ("bird", "animal", [240, 220, 40]),
    ("tree", "outdoor", [30, 140, 40]),
    ("ladder", "object", [180, 140, 60]),
];

const PLACES: [&str; 5] = ["street", "beach", "park", "harbour", "yard"];

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Number of images.
    pub count: usize,
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// Seed.
    pub seed: u64,
    /// Write JPEG (else PNG).
    pub jpeg: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            count: 24,
            width: 96,
            height: 72,
            seed: 7,
            jpeg: true,
        }
    }
}

/// One generated object.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthBox {
    /// Label.
    pub label: &'static str,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f32; 4],
}

/// One generated image.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthScene {
    /// COCO image id.
    pub id: u64,
    /// Path relative to the images folder.
    pub file_name: String,
    /// Objects.
    pub boxes: Vec<SynthBox>,
    /// Caption.
    pub caption: String,
    /// Capture time.
    pub captured: DateTime<Utc>,
    /// Night scene.
    pub night: bool,
    /// Place word used in the caption.
    pub place: &'static str,
}

impl SynthScene {
    /// Distinct labels.
    pub fn labels(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for b in &self.boxes {
            if !out.contains(&b.label) {
                out.push(b.label);
            }
        }
        out
    }
}

/// A generated library on disk.
#[derive(Debug, Clone)]
pub struct SynthLibrary {
    /// Images folder.
    pub images: PathBuf,
    /// `instances.json`.
    pub instances: PathBuf,
    /// `captions.json`.
    pub captions: PathBuf,
    /// Scenes, in id order.
    pub scenes: Vec<SynthScene>,
}

/// The date the synthetic export says it was annotated.
pub fn annotated_date() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 0, 0, 0).unwrap()
}

/// Generates scenes (no files).
pub fn scenes(opts: &SynthOptions) -> Vec<SynthScene> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let start = Utc.with_ymd_and_hms(2019, 1, 1, 0, 0, 0).unwrap();
    (0..opts.count)
        .map(|i| {
            let n = rng.random_range(1..=3);
            let mut boxes = Vec::new();
            for _ in 0..n {
                let (label, _, _) = LABELS[rng.random_range(0..LABELS.len())];
                let w = rng.random_range(opts.width as f32 * 0.25..opts.width as f32 * 0.6);
                let h = rng.random_range(opts.height as f32 * 0.25..opts.height as f32 * 0.6);
                let x = rng.random_range(0.0..(opts.width as f32 - w));
                let y = rng.random_range(0.0..(opts.height as f32 - h));
                boxes.push(SynthBox {
                    label,
                    bbox: [x.floor(), y.floor(), w.floor(), h.floor()],
                });
            }
            let night = rng.random_bool(0.4);
            let place = PLACES[rng.random_range(0..PLACES.len())];
            let labels: Vec<&str> = {
                let mut l: Vec<&str> = Vec::new();
                for b in &boxes {
                    if !l.contains(&b.label) {
                        l.push(b.label);
                    }
                }
                l
            };
            let caption = format!(
                "a {} on a {place} {}",
                labels.join(" and a "),
                if night { "at night" } else { "during the day" }
            );
            let captured = start + Duration::hours(rng.random_range(0..5 * 365 * 24));
            let stem = match i % 3 {
                0 => format!("{place}_{i:05}"),
                1 => format!("IMG_{}_{i:05}", captured.format("%Y%m%d")),
                _ => format!("{place}/{i:05}"),
            };
            let ext = if opts.jpeg { "jpg" } else { "png" };
            SynthScene {
                id: i as u64 + 1,
                file_name: format!("{stem}.{ext}"),
                boxes,
                caption,
                captured,
                night,
                place,
            }
        })
        .collect()
}

/// Draws one scene.
pub fn render(scene: &SynthScene, width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = StdRng::seed_from_u64(seed ^ scene.id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let base: [u8; 3] = if scene.night {
        [15, 15, 40]
    } else {
        [140, 190, 235]
    };
    let mut img = RgbImage::from_fn(width, height, |_, y| {
        let shade = (y * 40 / height.max(1)) as u8;
        Rgb([
            base[0].saturating_add(shade),
            base[1].saturating_add(shade),
            base[2].saturating_sub(shade),
        ])
    });
    for b in &scene.boxes {
        let colour = LABELS
            .iter()
            .find(|(l, _, _)| *l == b.label)
            .map(|(_, _, c)| *c)
            .unwrap_or([128, 128, 128]);
        let [x, y, w, h] = b.bbox;
        for py in y as u32..(y + h) as u32 {
            for px in x as u32..(x + w) as u32 {
                if px < width && py < height {
                    let jitter: i16 = rng.random_range(-12..=12);
                    let c = colour.map(|v| (v as i16 + jitter).clamp(0, 255) as u8);
                    img.put_pixel(px, py, Rgb(c));
                }
            }
        }
    }
    img
}

/// Writes images plus `instances.json` and `captions.json` under `dir`.
///
/// # Errors
/// I/O or encoding failures.
pub fn write_library(dir: &Path, opts: &SynthOptions) -> std::io::Result<SynthLibrary> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images)?;
    let scenes = scenes(opts);
    for s in &scenes {
        let path = images.join(&s.file_name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        render(s, opts.width, opts.height, opts.seed)
            .save(&path)
            .map_err(std::io::Error::other)?;
    }
    let instances = dir.join("instances.json");
    let captions = dir.join("captions.json");
    std::fs::write(
        &instances,
        serde_json::to_vec_pretty(&instances_json(&scenes, opts))?,
    )?;
    std::fs::write(
        &captions,
        serde_json::to_vec_pretty(&captions_json(&scenes, opts))?,
    )?;
    Ok(SynthLibrary {
        images,
        instances,
        captions,
        scenes,
    })
}

fn info() -> serde_json::Value {
    json!({
        "description": "imagelens synthetic scenes",
        "contributor": "imagelens synth",
        "date_created": annotated_date().format("%Y/%m/%d").to_string(),
        "version": "1.0"
    })
}

fn images_json(scenes: &[SynthScene], opts: &SynthOptions) -> serde_json::Value {
    scenes
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "file_name": s.file_name,
                "width": opts.width,
                "height": opts.height,
                "date_captured": s.captured.format("%Y-%m-%d %H:%M:%S").to_string(),
                "license": 1,
                "location": s.place,
            })
        })
        .collect()
}

/// The COCO instances document for `scenes`.
pub fn instances_json(scenes: &[SynthScene], opts: &SynthOptions) -> serde_json::Value {
    let categories: Vec<_> = LABELS
        .iter()
        .enumerate()
        .map(|(i, (name, sup, _))| json!({"id": i + 1, "name": name, "supercategory": sup}))
        .collect();
    let mut annotations = Vec::new();
    for s in scenes {
        for b in &s.boxes {
            let cat = LABELS.iter().position(|(l, _, _)| *l == b.label).unwrap() + 1;
            annotations.push(json!({
                "id": annotations.len() + 1,
                "image_id": s.id,
                "category_id": cat,
                "bbox": b.bbox,
                "area": b.bbox[2] * b.bbox[3],
                "iscrowd": 0,
            }));
        }
    }
    json!({
        "info": info(),
        "images": images_json(scenes, opts),
        "annotations": annotations,
        "categories": categories,
    })
}

/// The COCO captions document for `scenes`.
pub fn captions_json(scenes: &[SynthScene], opts: &SynthOptions) -> serde_json::Value {
    let annotations: Vec<_> = scenes
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"id": i + 1, "image_id": s.id, "caption": s.caption}))
        .collect();
    json!({
        "info": info(),
        "images": images_json(scenes, opts),
        "annotations": annotations,
    })
}
