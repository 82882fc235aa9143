//! A port of Pillow's two-pass fixed-point resampling (`ImagingResample` in `Resample.c`,
//! 8 bits per channel, 22 fractional bits): the [`Resample`] filters and their kernels, the
//! coefficient tables, and [`resize`], so the resized pixels are the ones PIL gives.

use std::borrow::Cow;

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// The resampling filter (`resample` in `preprocessor_config.json`, PIL's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resample {
    /// PIL `BILINEAR` (2): triangle filter, support 1.
    Bilinear,
    /// PIL `BICUBIC` (3): Keys cubic with a = -0.5, support 2. CLIP's choice.
    Bicubic,
    /// PIL `LANCZOS` (1): windowed sinc, support 3.
    Lanczos,
}

impl Resample {
    /// Maps PIL's resample number; `None` for filters we do not implement (nearest, box, hamming).
    pub fn from_pil(code: u64) -> Option<Self> {
        match code {
            1 => Some(Self::Lanczos),
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    /// The filter kernels of Pillow's `Resample.c`.
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Self::Bilinear => (1.0 - x).max(0.0),
            Self::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                let sinc = |x: f64| {
                    if x == 0.0 {
                        1.0
                    } else {
                        let x = x * std::f64::consts::PI;
                        x.sin() / x
                    }
                };
                if x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// Pillow's fixed-point precision for 8-bit resampling (`PRECISION_BITS` in `Resample.c`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per-output-pixel source window and fixed-point weights (`precompute_coeffs` +
/// `normalize_coeffs_8bpc` in Pillow's `Resample.c`).
struct Coeffs {
    /// `(first source index, number of taps)` per output pixel.
    bounds: Vec<(usize, usize)>,
    /// `ksize` weights per output pixel.
    weights: Vec<i32>,
    ksize: usize,
}

fn precompute_coeffs(in_size: u32, out_size: u32, filter: Resample) -> Coeffs {
    let scale = f64::from(in_size) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut weights = vec![0i32; out_size as usize * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for (x, out) in row.iter_mut().enumerate().take(n) {
            let w = if ww == 0.0 { k[x] } else { k[x] / ww };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            *out = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        bounds,
        weights,
        ksize,
    }
}

#[inline]
fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like Pillow's `Image.resize((width, height), resample)` on an RGB image: separable,
/// horizontal pass first (on the rows the vertical pass needs), 8-bit intermediate, support
/// scaled by the downscaling factor (antialiasing).
///
/// # Panics
/// When `width` or `height` is 0.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Resample) -> RgbImage {
    assert!(width > 0 && height > 0, "resize to an empty image");
    let (iw, ih) = img.dimensions();
    if (iw, ih) == (width, height) || iw == 0 || ih == 0 {
        return image::imageops::resize(img, width, height, image::imageops::FilterType::Nearest);
    }
    let need_h = width != iw;
    let need_v = height != ih;
    let vert = precompute_coeffs(ih, height, filter);
    let mut vbounds = vert.bounds.clone();

    let horizontal: Cow<'_, RgbImage>;
    if need_h {
        let hor = precompute_coeffs(iw, width, filter);
        let (first, last) = if need_v {
            let (lmin, ln) = vbounds[vbounds.len() - 1];
            (vbounds[0].0, lmin + ln)
        } else {
            (0, ih as usize)
        };
        if need_v {
            vbounds.iter_mut().for_each(|b| b.0 -= first);
        }
        let src = img.as_raw();
        let src_stride = iw as usize * 3;
        let mut out = vec![0u8; width as usize * (last - first) * 3];
        for (y, row) in out.chunks_exact_mut(width as usize * 3).enumerate() {
            let line = &src[(y + first) * src_stride..(y + first + 1) * src_stride];
            for (xx, px) in row.chunks_exact_mut(3).enumerate() {
                let (xmin, n) = hor.bounds[xx];
                let k = &hor.weights[xx * hor.ksize..xx * hor.ksize + n];
                let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
                for (x, &w) in k.iter().enumerate() {
                    let s = &line[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    for c in 0..3 {
                        ss[c] += i64::from(s[c]) * i64::from(w);
                    }
                }
                for c in 0..3 {
                    px[c] = clip8(ss[c]);
                }
            }
        }
        horizontal = Cow::Owned(
            RgbImage::from_raw(width, (last - first) as u32, out).expect("buffer has the size"),
        );
    } else {
        horizontal = Cow::Borrowed(img);
    }
    if !need_v {
        return horizontal.into_owned();
    }
    let src = horizontal.as_raw();
    let stride = horizontal.width() as usize * 3;
    let mut out = vec![0u8; stride * height as usize];
    for (yy, row) in out.chunks_exact_mut(stride).enumerate() {
        let (ymin, n) = vbounds[yy];
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
        for (i, px) in row.iter_mut().enumerate() {
            let mut ss = 1i64 << (PRECISION_BITS - 1);
            for (y, &w) in k.iter().enumerate() {
                ss += i64::from(src[(ymin + y) * stride + i]) * i64::from(w);
            }
            *px = clip8(ss);
        }
    }
    RgbImage::from_raw(horizontal.width(), height, out).expect("buffer has the size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_flat_colour_and_hits_size() {
        let img = RgbImage::from_pixel(37, 91, image::Rgb([10, 200, 255]));
        for (w, h) in [(10, 20), (64, 64), (100, 300), (37, 50), (20, 91)] {
            let out = resize(&img, w, h, Resample::Bicubic);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [10, 200, 255]), "{w}x{h}");
        }
    }

    #[test]
    fn bicubic_weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(200, 64), (64, 200), (7, 3), (3, 7)] {
            let c = precompute_coeffs(i, o, Resample::Bicubic);
            for xx in 0..o as usize {
                let s: i64 = c.weights[xx * c.ksize..(xx + 1) * c.ksize]
                    .iter()
                    .map(|&w| i64::from(w))
                    .sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= c.ksize as i64,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }
}
