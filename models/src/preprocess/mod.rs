//! From bytes to the pixel values a CLIP vision tower takes.
//!
//! Owns decoding (any common format to 8-bit RGB, EXIF orientation applied, with limits against
//! decompression bombs), box crops, and a port of transformers' `CLIPImageProcessor`:
//! resize of the shortest edge with PIL's resampling filters, centre crop, rescale, normalise.
//! It does not know about tensors; [`to_pixel_values`] returns a plain CHW `Vec<f32>`.
//!
//! Parity notes (reference: transformers `image_processing_clip.py` + Pillow `Resample.c`):
//! - the resize is a port of Pillow's two-pass fixed-point convolution (`ImagingResample`,
//!   8 bits per channel, 22 fractional bits), so the resized pixels are the ones PIL gives;
//! - the alpha channel is dropped, not composited, as PIL's `convert("RGB")` does;
//! - unlike transformers (PIL does not rotate on open), EXIF orientation is applied: a photo is
//!   embedded the way people see it.
//!
//! Decoding and crops live in `decode/`, the Pillow resize port in `resample.rs`; this module
//! holds the `CLIPImageProcessor` settings and re-exports both, so callers use
//! `models::preprocess::*` paths only.

use std::borrow::Cow;
use std::path::Path;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::EmbedError;

mod decode;
mod resample;

pub use decode::{
    DEFAULT_MAX_PIXELS, DecodeLimits, Header, check_complete, crop_region, decode, decode_oriented,
    open, probe, probe_file, stored_point_to_displayed, stored_rect_to_displayed, stored_size,
    transposes,
};
pub use resample::{Resample, resize};

/// How the image is first resized (`size` in `preprocessor_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resize {
    /// Scale so that the shorter side has this length, keeping the aspect ratio
    /// (`{"shortest_edge": n}` or a bare integer).
    ShortestEdge(u32),
    /// Scale to exactly this size (`{"height": h, "width": w}`).
    Exact {
        /// Output height.
        height: u32,
        /// Output width.
        width: u32,
    },
}

/// transformers' `CLIPImageProcessor` settings (`preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// First resize; `None` when `do_resize` is false.
    pub resize: Option<Resize>,
    /// Filter of the resize.
    pub resample: Resample,
    /// Centre crop as `(height, width)`; `None` when `do_center_crop` is false.
    pub crop: Option<(u32, u32)>,
    /// Multiplier applied to 0..=255 samples (1/255); `None` when `do_rescale` is false.
    pub rescale_factor: Option<f32>,
    /// Per-channel `(mean, std)`; `None` when `do_normalize` is false.
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

/// OpenAI CLIP's normalisation constants, transformers' `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`.
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// See [`OPENAI_CLIP_MEAN`].
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl PreprocessConfig {
    /// CLIP's defaults for a model whose vision tower takes `image_size` squares: shortest edge
    /// to `image_size` with bicubic, centre crop `image_size`, 1/255, OpenAI mean and std.
    pub fn clip_default(image_size: u32) -> Self {
        Self {
            resize: Some(Resize::ShortestEdge(image_size)),
            resample: Resample::Bicubic,
            crop: Some((image_size, image_size)),
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some((OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)),
        }
    }

    /// Parses `preprocessor_config.json` text; absent fields take CLIP's defaults for
    /// `image_size`. `path` is only used in error messages.
    ///
    /// # Errors
    /// [`EmbedError::Config`] when the JSON is malformed or a field has an unusable value.
    pub fn from_json(text: &str, path: &Path, image_size: u32) -> Result<Self, EmbedError> {
        let bad = |reason: String| EmbedError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("expected a JSON object".into()))?;
        let mut c = Self::clip_default(image_size);
        let flag = |key: &str| {
            obj.get(key)
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true)
        };
        let size_of = |key: &str, v: &serde_json::Value| -> Result<Resize, EmbedError> {
            let dim = |v: &serde_json::Value| {
                v.as_u64()
                    .filter(|&n| n > 0)
                    .and_then(|n| u32::try_from(n).ok())
            };
            if let Some(n) = dim(v) {
                return Ok(Resize::ShortestEdge(n));
            }
            if let Some(n) = v.get("shortest_edge").and_then(dim) {
                return Ok(Resize::ShortestEdge(n));
            }
            match (v.get("height").and_then(dim), v.get("width").and_then(dim)) {
                (Some(height), Some(width)) => Ok(Resize::Exact { height, width }),
                _ => Err(bad(format!("{key} {v} is not a size"))),
            }
        };
        if let Some(size) = obj.get("size") {
            c.resize = Some(size_of("size", size)?);
        }
        if !flag("do_resize") {
            c.resize = None;
        }
        if let Some(resample) = obj.get("resample") {
            c.resample = resample
                .as_u64()
                .and_then(Resample::from_pil)
                .ok_or_else(|| bad(format!("resample {resample} is not supported")))?;
        }
        if let Some(crop) = obj.get("crop_size") {
            c.crop = Some(match size_of("crop_size", crop)? {
                Resize::ShortestEdge(n) => (n, n),
                Resize::Exact { height, width } => (height, width),
            });
        }
        if !flag("do_center_crop") {
            c.crop = None;
        }
        if let Some(f) = obj.get("rescale_factor") {
            let f = f
                .as_f64()
                .ok_or_else(|| bad(format!("rescale_factor {f} is not a number")))?;
            c.rescale_factor = Some(f as f32);
        }
        if !flag("do_rescale") {
            c.rescale_factor = None;
        }
        let triple = |key: &str, default: [f32; 3]| -> Result<[f32; 3], EmbedError> {
            let Some(v) = obj.get(key) else {
                return Ok(default);
            };
            let parsed: Option<Vec<f32>> = match v {
                serde_json::Value::Number(n) => n.as_f64().map(|x| vec![x as f32; 3]),
                serde_json::Value::Array(a) => {
                    a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect()
                }
                _ => None,
            };
            parsed
                .and_then(|p| <[f32; 3]>::try_from(p).ok())
                .ok_or_else(|| bad(format!("{key} {v} is not three numbers")))
        };
        let mean = triple("image_mean", OPENAI_CLIP_MEAN)?;
        let std = triple("image_std", OPENAI_CLIP_STD)?;
        if std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(bad(format!(
                "image_std {std:?} has a zero or non-finite value"
            )));
        }
        c.normalize = flag("do_normalize").then_some((mean, std));
        Ok(c)
    }

    /// The `(height, width)` of what [`to_pixel_values`] returns for an image of `(w, h)`.
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        if let Some(crop) = self.crop {
            return crop;
        }
        let (w, h) = match self.resize {
            Some(r) => resized_size(r, width, height),
            None => (width, height),
        };
        (h, w)
    }
}

/// transformers' `get_resize_output_image_size(default_to_square=False)`: the short side
/// becomes `size`, the long side `int(size * long / short)` (truncated, as Python's `int`).
fn resized_size(resize: Resize, width: u32, height: u32) -> (u32, u32) {
    match resize {
        Resize::Exact { height, width } => (width, height),
        Resize::ShortestEdge(size) => {
            let (short, long) = if width <= height {
                (width, height)
            } else {
                (height, width)
            };
            let new_long = (f64::from(size) * f64::from(long) / f64::from(short.max(1))) as u32;
            let new_long = new_long.max(1);
            if width <= height {
                (size, new_long)
            } else {
                (new_long, size)
            }
        }
    }
}

/// CLIPImageProcessor on one image: resize, centre crop, rescale, normalise. Returns the
/// pixel values in CHW order (`3 * height * width` floats, see
/// [`PreprocessConfig::output_size`]).
///
/// The centre crop follows transformers: offset `(size - crop) // 2` (floor), and zero padding
/// (before rescaling) where the crop is larger than the image.
pub fn to_pixel_values(img: &RgbImage, config: &PreprocessConfig) -> Vec<f32> {
    let mut img = Cow::Borrowed(img);
    if let Some(r) = config.resize {
        let (w, h) = resized_size(r, img.width(), img.height());
        if (w, h) != img.dimensions() {
            img = Cow::Owned(resize(&img, w, h, config.resample));
        }
    }
    let (iw, ih) = (i64::from(img.width()), i64::from(img.height()));
    let (ch, cw) = config
        .crop
        .map_or((ih, iw), |(h, w)| (i64::from(h), i64::from(w)));
    let top = (ih - ch).div_euclid(2);
    let left = (iw - cw).div_euclid(2);
    let scale = config.rescale_factor.unwrap_or(1.0);
    let (mean, std) = config.normalize.unwrap_or(([0.0; 3], [1.0; 3]));
    let plane = (ch * cw) as usize;
    let mut out = vec![0f32; 3 * plane];
    let raw = img.as_raw();
    for oy in 0..ch {
        let sy = oy + top;
        for ox in 0..cw {
            let sx = ox + left;
            let inside = (0..ih).contains(&sy) && (0..iw).contains(&sx);
            let o = (oy * cw + ox) as usize;
            for c in 0..3 {
                let v = if inside {
                    f32::from(raw[((sy * iw + sx) * 3) as usize + c])
                } else {
                    0.0
                };
                out[c * plane + o] = (v * scale - mean[c]) / std[c];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_size_truncates_like_python_int() {
        assert_eq!(resized_size(Resize::ShortestEdge(64), 200, 120), (106, 64));
        assert_eq!(resized_size(Resize::ShortestEdge(64), 96, 160), (64, 106));
        assert_eq!(resized_size(Resize::ShortestEdge(64), 150, 220), (64, 93));
        assert_eq!(
            resized_size(Resize::ShortestEdge(224), 224, 224),
            (224, 224)
        );
    }

    #[test]
    fn pixel_values_are_chw_and_normalised() {
        let img = RgbImage::from_pixel(50, 30, image::Rgb([255, 0, 128]));
        let cfg = PreprocessConfig::clip_default(16);
        let px = to_pixel_values(&img, &cfg);
        assert_eq!(px.len(), 3 * 16 * 16);
        let expect = |c: usize, v: f32| (v / 255.0 - OPENAI_CLIP_MEAN[c]) / OPENAI_CLIP_STD[c];
        assert!((px[0] - expect(0, 255.0)).abs() < 1e-5);
        assert!((px[256] - expect(1, 0.0)).abs() < 1e-5);
        assert!((px[512 + 255] - expect(2, 128.0)).abs() < 1e-5);
    }

    #[test]
    fn crop_larger_than_image_pads_with_zero_pixels() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255]));
        let cfg = PreprocessConfig {
            resize: None,
            resample: Resample::Bicubic,
            crop: Some((4, 4)),
            rescale_factor: Some(1.0 / 255.0),
            normalize: None,
        };
        let px = to_pixel_values(&img, &cfg);
        // rows: pad, img, img, pad (top = (2 - 4) // 2 = -1)
        assert_eq!(&px[0..4], &[0.0; 4]);
        assert_eq!(&px[4..8], &[0.0, 1.0, 1.0, 0.0]);
        assert_eq!(&px[12..16], &[0.0; 4]);
    }

    #[test]
    fn preprocessor_config_fields_are_read() {
        let json = r#"{"size": {"height": 20, "width": 30}, "crop_size": 18, "resample": 2,
            "image_mean": [0.5, 0.5, 0.5], "image_std": 0.25, "rescale_factor": 0.5,
            "do_normalize": true}"#;
        let c = PreprocessConfig::from_json(json, Path::new("p.json"), 224).unwrap();
        assert_eq!(
            c.resize,
            Some(Resize::Exact {
                height: 20,
                width: 30
            })
        );
        assert_eq!(c.crop, Some((18, 18)));
        assert_eq!(c.resample, Resample::Bilinear);
        assert_eq!(c.rescale_factor, Some(0.5));
        assert_eq!(c.normalize, Some(([0.5; 3], [0.25; 3])));
        let c = PreprocessConfig::from_json(r#"{"size": 224}"#, Path::new("p.json"), 224).unwrap();
        assert_eq!(c, PreprocessConfig::clip_default(224));
        for bad in [
            r#"{"size": "big"}"#,
            r#"{"image_std": [1, 0, 1]}"#,
            "[1",
            r#"{"resample": 0}"#,
        ] {
            let e = PreprocessConfig::from_json(bad, Path::new("p.json"), 224).unwrap_err();
            assert!(matches!(e, EmbedError::Config { .. }), "{bad}");
        }
    }
}
