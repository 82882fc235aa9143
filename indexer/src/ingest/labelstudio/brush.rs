//! Label Studio's brush masks. Its editor stores a mask as the RLE of thi-ng's `rle-pack`
//! (`value.rle`, a list of bytes): the mask drawn as RGBA, four values per pixel, where the
//! alpha value says what the brush painted (label-studio-converter's `decode_rle` reads it the
//! same way). The stream is read only as far as the mask's extent, run by run, so a mask costs
//! the size of its encoding, not of its image.

/// Reads bits most significant first.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    /// The next `n` bits (at most 32) as a number, or `None` past the end.
    fn read(&mut self, n: usize) -> Option<u64> {
        if self.at + n > self.bytes.len() * 8 {
            return None;
        }
        let mut v = 0u64;
        for k in self.at..self.at + n {
            v = (v << 1) | u64::from((self.bytes[k / 8] >> (7 - k % 8)) & 1);
        }
        self.at += n;
        Some(v)
    }
}

/// The painted pixels' bounding box so far (inclusive pixel coordinates).
struct Extent {
    width: u64,
    bounds: Option<[u64; 4]>,
}

impl Extent {
    /// Values `from..to` of the RGBA stream hold a nonzero value: their alpha values paint.
    fn paint(&mut self, from: u64, to: u64) {
        // The first and last alpha position (index 3 of a pixel's four) in from..to.
        let first = from + (7 - from % 4) % 4;
        if to == 0 || first > to - 1 {
            return;
        }
        let last = (to - 1) - (to % 4);
        let (a, b) = (first / 4, last / 4);
        let (ya, yb) = (a / self.width, b / self.width);
        let (x0, x1) = if ya == yb {
            (a % self.width, b % self.width)
        } else {
            (0, self.width - 1)
        };
        self.bounds = Some(match self.bounds {
            None => [x0, ya, x1, yb],
            Some([bx0, by0, bx1, by1]) => [bx0.min(x0), by0.min(ya), bx1.max(x1), by1.max(yb)],
        });
    }
}

/// The box around the painted pixels of a `width` x `height` brush mask, `[x, y, w, h]` in
/// pixels; an error says why there is none (a stream that is cut short or whose length is not
/// the image's, or a mask with nothing painted).
pub(super) fn extent(rle: &[u8], width: u64, height: u64) -> Result<[f32; 4], String> {
    let cut = || "the mask's RLE stream ends early".to_owned();
    let mut bits = Bits { bytes: rle, at: 0 };
    let num = bits.read(32).ok_or_else(cut)?;
    let want = width.checked_mul(height).and_then(|p| p.checked_mul(4));
    if want != Some(num) {
        return Err(format!(
            "the mask holds {num} values, not the {width} x {height} x 4 of its image"
        ));
    }
    let word = bits.read(5).ok_or_else(cut)? as usize + 1;
    let mut sizes = [0usize; 4];
    for s in &mut sizes {
        *s = bits.read(4).ok_or_else(cut)? as usize + 1;
    }
    let mut extent = Extent {
        width,
        bounds: None,
    };
    let mut i = 0u64;
    while i < num {
        let repeat = bits.read(1).ok_or_else(cut)? == 1;
        let size = sizes[bits.read(2).ok_or_else(cut)? as usize];
        let j = (i + 1 + bits.read(size).ok_or_else(cut)?).min(num);
        if repeat {
            if bits.read(word).ok_or_else(cut)? != 0 {
                extent.paint(i, j);
            }
            i = j;
        } else {
            while i < j {
                if bits.read(word).ok_or_else(cut)? != 0 {
                    extent.paint(i, i + 1);
                }
                i += 1;
            }
        }
    }
    let [x0, y0, x1, y1] = extent
        .bounds
        .ok_or_else(|| "the mask paints no pixel".to_owned())?;
    Ok([
        x0 as f32,
        y0 as f32,
        (x1 - x0 + 1) as f32,
        (y1 - y0 + 1) as f32,
    ])
}
