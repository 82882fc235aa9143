//! Decoding of untrusted image bytes: the [`DecodeLimits`] checked before and while decoding
//! (against decompression bombs), header probing with the EXIF orientation, decoding any common
//! format to 8-bit RGB with the orientation applied, the completeness checks that refuse
//! truncated files rather than fill them with grey, and box crops. HTTP uploads, thumbnails and
//! ingest all decode through here.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use image::{
    DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage, metadata::Orientation,
};
use serde::{Deserialize, Serialize};

use crate::ImageError;

/// Default pixel limit of every decode: ingest, serving and uploads share it, so an image that
/// was ingested can always be served (`limits.max_image_pixels` of `serve` defaults to it).
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// Limits applied before and while decoding untrusted images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    /// Largest `width * height` accepted, checked from the header before decoding.
    pub max_pixels: u64,
    /// Largest encoded input accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    /// [`DEFAULT_MAX_PIXELS`] (64 megapixels) and 256 MiB: larger than nearly any photo a camera
    /// takes, small enough that a crafted header cannot make us allocate gigabytes.
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// What an image's header says, read without decoding any pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The container format.
    pub format: ImageFormat,
    /// Width as displayed, after the EXIF orientation is applied.
    pub width: u32,
    /// Height as displayed, after the EXIF orientation is applied.
    pub height: u32,
    /// EXIF orientation (1 to 8; 1 when the file has none).
    pub orientation: u8,
}

impl Header {
    /// The size of the stored pixels, before the orientation is applied.
    pub fn stored_size(&self) -> (u32, u32) {
        stored_size(self.width, self.height, self.orientation)
    }
}

/// Whether EXIF `orientation` swaps width and height (5 to 8: a quarter turn).
pub fn transposes(orientation: u8) -> bool {
    (5..=8).contains(&orientation)
}

/// The stored pixel size of an image displayed at `width` x `height` under `orientation`.
pub fn stored_size(width: u32, height: u32, orientation: u8) -> (u32, u32) {
    if transposes(orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

/// Maps the point `(x, y)` given in the stored pixels of an image of `stored_w` x `stored_h`
/// to the displayed image under EXIF `orientation` (what [`decode`] returns). Orientations
/// outside 1 to 8 are treated as 1.
pub fn stored_point_to_displayed(
    point: [f32; 2],
    orientation: u8,
    stored_w: f32,
    stored_h: f32,
) -> [f32; 2] {
    let [px, py] = point;
    let (sw, sh) = (stored_w, stored_h);
    match orientation {
        2 => [sw - px, py],
        3 => [sw - px, sh - py],
        4 => [px, sh - py],
        5 => [py, px],
        6 => [sh - py, px],
        7 => [sh - py, sw - px],
        8 => [py, sw - px],
        _ => [px, py],
    }
}

/// Maps the rectangle `(x, y, w, h)` given in the stored pixels of an image of
/// `stored_w` x `stored_h` to the displayed image under EXIF `orientation` (what [`decode`]
/// returns). Orientations outside 1 to 8 are treated as 1.
pub fn stored_rect_to_displayed(
    rect: [f32; 4],
    orientation: u8,
    stored_w: f32,
    stored_h: f32,
) -> [f32; 4] {
    let [x, y, w, h] = rect;
    let map = |p| stored_point_to_displayed(p, orientation, stored_w, stored_h);
    let [ax, ay] = map([x, y]);
    let [bx, by] = map([x + w, y + h]);
    let (x0, x1) = (ax.min(bx), ax.max(bx));
    let (y0, y1) = (ay.min(by), ay.max(by));
    [x0, y0, x1 - x0, y1 - y0]
}

/// Reads the header of an encoded image (format, displayed size, EXIF orientation) and checks
/// it against `limits`, without decoding pixels. [`decode`] and ingest use this one reading, so
/// the size a record is given is the size of the picture served for it.
///
/// # Errors
/// [`ImageError::UnsupportedFormat`], [`ImageError::TooManyPixels`], [`ImageError::TooLarge`]
/// or [`ImageError::Corrupt`].
pub fn probe<R: BufRead + Seek>(reader: R, limits: &DecodeLimits) -> Result<Header, ImageError> {
    let reader = ImageReader::new(reader)
        .with_guessed_format()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let format = reader
        .format()
        .ok_or(ImageError::UnsupportedFormat { format: None })?;
    if !format.reading_enabled() {
        return Err(ImageError::UnsupportedFormat {
            format: Some(format!("{format:?}")),
        });
    }
    let mut decoder = reader.into_decoder().map_err(from_image_error)?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(ImageError::TooManyPixels {
            width: w,
            height: h,
            max: limits.max_pixels,
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(Orientation::NoTransforms)
        .to_exif();
    let (width, height) = if transposes(orientation) {
        (h, w)
    } else {
        (w, h)
    };
    Ok(Header {
        format,
        width,
        height,
        orientation,
    })
}

/// [`probe`] of a file: reads only as much of it as the header takes.
///
/// # Errors
/// [`ImageError::Io`], then as [`probe`].
pub fn probe_file(path: &Path, limits: &DecodeLimits) -> Result<Header, ImageError> {
    let file = std::fs::File::open(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    probe(std::io::BufReader::new(file), limits)
}

/// Decodes an encoded image (JPEG, PNG, WebP, GIF) to 8-bit RGB.
///
/// EXIF orientation is applied; 16-bit samples are scaled to 8 bits; grey is replicated to three
/// channels; alpha is dropped (as PIL's `convert("RGB")`, which CLIP's preprocessing uses);
/// CMYK JPEGs are converted to RGB; an animated GIF gives its first frame.
///
/// # Errors
/// [`ImageError::Empty`], [`ImageError::TooManyBytes`], [`ImageError::UnsupportedFormat`],
/// [`ImageError::TooManyPixels`] (checked from the header, before any pixel is decoded),
/// [`ImageError::TooLarge`] or [`ImageError::Corrupt`] for corrupt or truncated data (a JPEG
/// without its end is refused, as Pillow does, rather than decoded with grey rows).
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    decode_oriented(bytes, limits).map(|(img, _)| img)
}

/// [`decode`], also returning the EXIF orientation (1 to 8) that was applied.
///
/// # Errors
/// As [`decode`].
pub fn decode_oriented(bytes: &[u8], limits: &DecodeLimits) -> Result<(RgbImage, u8), ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let len = bytes.len() as u64;
    if len > limits.max_bytes {
        return Err(ImageError::TooManyBytes {
            len,
            max: limits.max_bytes,
        });
    }
    let header = probe(Cursor::new(bytes), limits)?;
    check_complete(bytes, header.format)?;
    let (width, height) = header.stored_size();
    let pixels = u64::from(width) * u64::from(height);

    let mut reader = ImageReader::with_format(Cursor::new(bytes), header.format);
    let mut image_limits = image::Limits::default();
    // The header was checked above; these limits make the decoder hold to it (a frame larger
    // than the header says is refused) and bound what it may allocate: 8 bytes a pixel covers
    // 16-bit RGBA, plus slack for the decoder's own buffers.
    image_limits.max_image_width = Some(width);
    image_limits.max_image_height = Some(height);
    image_limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(from_image_error)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = match DynamicImage::from_decoder(decoder) {
        Ok(img) => img,
        Err(image::ImageError::Limits(l))
            if l.kind() == image::error::LimitErrorKind::DimensionError =>
        {
            return Err(ImageError::Corrupt(format!(
                "the image holds a frame larger than the {width}x{height} pixels its header declares"
            )));
        }
        Err(e) => return Err(from_image_error(e)),
    };
    img.apply_orientation(orientation);
    let img = match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    Ok((img, orientation.to_exif()))
}

/// Reads and decodes an image file; see [`decode`].
///
/// # Errors
/// [`ImageError::Io`] when the file cannot be read, otherwise as [`decode`].
pub fn open(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > limits.max_bytes {
        return Err(ImageError::TooManyBytes {
            len,
            max: limits.max_bytes,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    decode(&bytes, limits)
}

fn from_image_error(e: image::ImageError) -> ImageError {
    match e {
        image::ImageError::Unsupported(u) => ImageError::UnsupportedFormat {
            format: Some(u.to_string()),
        },
        image::ImageError::Limits(l) => ImageError::TooLarge(l.to_string()),
        other => ImageError::Corrupt(other.to_string()),
    }
}

/// Checks that an encoded image is complete, by walking its structure (no decoding): a JPEG's
/// segments up to the end-of-image marker, a PNG's chunks (lengths and CRCs) up to `IEND`, a
/// GIF's blocks up to its trailer, a WebP's RIFF length. Decoders fill what is missing of a
/// truncated JPEG with grey rows and report nothing; this is what catches it. Other formats
/// pass.
///
/// # Errors
/// [`ImageError::Corrupt`] saying what is missing or wrong.
pub fn check_complete(bytes: &[u8], format: ImageFormat) -> Result<(), ImageError> {
    let result = match format {
        ImageFormat::Jpeg => jpeg_complete(bytes),
        ImageFormat::Png => png_complete(bytes),
        ImageFormat::Gif => gif_complete(bytes),
        ImageFormat::WebP => webp_complete(bytes),
        _ => Ok(()),
    };
    result.map_err(|why| ImageError::Corrupt(format!("{format:?}: {why}")))
}

fn jpeg_complete(b: &[u8]) -> Result<(), String> {
    const TRUNCATED: &str = "truncated: the file ends before its end-of-image marker";
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return Err("no start-of-image marker".into());
    }
    let mut i = 2;
    loop {
        // Fill bytes (0xFF) may precede a marker.
        if i >= b.len() {
            return Err(TRUNCATED.into());
        }
        if b[i] != 0xFF {
            return Err(format!("expected a marker at byte {i}"));
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return Err(TRUNCATED.into());
        };
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            0x01 | 0xD0..=0xD7 | 0xD8 => continue,
            0x00 => return Err(format!("stray 0xFF00 at byte {}", i - 2)),
            _ => {}
        }
        let Some(len) = b
            .get(i..i + 2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return Err(TRUNCATED.into());
        };
        if len < 2 {
            return Err(format!("segment length {len} at byte {i}"));
        }
        i += len;
        if i > b.len() {
            return Err(TRUNCATED.into());
        }
        if marker == 0xDA {
            // Entropy-coded data: runs until a marker other than a stuffed 0xFF00 or a restart.
            loop {
                let Some(p) = b[i..].iter().position(|&c| c == 0xFF) else {
                    return Err(TRUNCATED.into());
                };
                i += p;
                let mut j = i + 1;
                while j < b.len() && b[j] == 0xFF {
                    j += 1;
                }
                match b.get(j) {
                    None => return Err(TRUNCATED.into()),
                    Some(0x00 | 0xD0..=0xD7) => i = j + 1,
                    Some(_) => break,
                }
            }
        }
    }
}

fn png_complete(b: &[u8]) -> Result<(), String> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !b.starts_with(SIGNATURE) {
        return Err("no PNG signature".into());
    }
    let mut i = SIGNATURE.len();
    loop {
        let Some(head) = b.get(i..i + 8) else {
            return Err("truncated: the file ends before its IEND chunk".into());
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        let end = (i + 8)
            .checked_add(len)
            .and_then(|e| e.checked_add(4))
            .filter(|&e| e <= b.len())
            .ok_or_else(|| {
                format!(
                    "truncated: chunk {} at byte {i} runs past the end of the file",
                    String::from_utf8_lossy(kind)
                )
            })?;
        let crc = u32::from_be_bytes([b[end - 4], b[end - 3], b[end - 2], b[end - 1]]);
        if crc32(&b[i + 4..end - 4]) != crc {
            return Err(format!(
                "chunk {} at byte {i} fails its CRC",
                String::from_utf8_lossy(kind)
            ));
        }
        if kind == b"IEND" {
            return Ok(());
        }
        i = end;
    }
}

/// CRC-32 (ISO-HDLC), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (n, slot) in t.iter_mut().enumerate() {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc = table[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

fn gif_complete(b: &[u8]) -> Result<(), String> {
    const TRUNCATED: &str = "truncated: the file ends before its trailer";
    if b.len() < 13 || !(b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")) {
        return Err("no GIF header".into());
    }
    let colour_table = |flags: u8| {
        if flags & 0x80 != 0 {
            3usize << ((flags & 0x07) + 1)
        } else {
            0
        }
    };
    let mut i = 13 + colour_table(b[10]);
    // Data sub-blocks: a length byte, that many bytes, until a zero length.
    let sub_blocks = |mut i: usize| -> Result<usize, String> {
        loop {
            let Some(&n) = b.get(i) else {
                return Err(TRUNCATED.into());
            };
            i += 1 + usize::from(n);
            if n == 0 {
                return Ok(i);
            }
        }
    };
    loop {
        match b.get(i) {
            None => return Err(TRUNCATED.into()),
            Some(0x3B) => return Ok(()),
            Some(0x21) => i = sub_blocks(i + 2)?,
            Some(0x2C) => {
                let Some(&flags) = b.get(i + 9) else {
                    return Err(TRUNCATED.into());
                };
                // Descriptor (10 bytes), local colour table, LZW minimum code size, data.
                i = sub_blocks(i + 10 + colour_table(flags) + 1)?;
            }
            Some(other) => return Err(format!("unknown block 0x{other:02x} at byte {i}")),
        }
    }
}

fn webp_complete(b: &[u8]) -> Result<(), String> {
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WEBP" {
        return Err("no RIFF WEBP header".into());
    }
    let size = u64::from(u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
    if (b.len() as u64) < size + 8 {
        return Err(format!(
            "truncated: the file has {} bytes, its RIFF header says {}",
            b.len(),
            size + 8
        ));
    }
    Ok(())
}

/// Crops the box `(x, y, w, h)` (pixel coordinates, top-left origin) grown by `context` times
/// its size on each side, clamped to the image.
///
/// `context = 0.1` adds 10% of the box width left and right and 10% of its height above and
/// below, which gives CLIP some surroundings of a small object. Negative `context` counts as 0.
/// Fractional edges are rounded outwards so the crop covers the whole box.
///
/// Returns `None` when the clamped box is empty (outside the image, zero or negative size,
/// non-finite numbers).
pub fn crop_region(
    img: &RgbImage,
    x: f32,
    y: f32,
    w: f32,
    h: f32,
    context: f32,
) -> Option<RgbImage> {
    if ![x, y, w, h].iter().all(|v| v.is_finite()) || w <= 0.0 || h <= 0.0 {
        return None;
    }
    let context = if context.is_finite() {
        context.max(0.0)
    } else {
        0.0
    };
    let (iw, ih) = (img.width() as f32, img.height() as f32);
    let x0 = (x - w * context).floor().clamp(0.0, iw);
    let x1 = (x + w + w * context).ceil().clamp(0.0, iw);
    let y0 = (y - h * context).floor().clamp(0.0, ih);
    let y1 = (y + h + h * context).ceil().clamp(0.0, ih);
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (x0, y0) = (x0 as u32, y0 as u32);
    let (cw, ch) = (x1 as u32 - x0, y1 as u32 - y0);
    Some(image::imageops::crop_imm(img, x0, y0, cw, ch).to_image())
}

#[cfg(test)]
mod tests;
