//! The crate's only `unsafe` code: the dot products of a few input rows with many weight rows,
//! with AVX-512 or AVX2 + FMA chosen at run time, and the safe reference they are tested
//! against. Used by [`super::layers`] for matmuls of a few rows (a text query) where gemm's
//! packing of the whole weight matrix costs more than the product.
//!
//! The vector paths compute a tile of outputs at once (several weight rows against several
//! input rows): each loaded chunk of a weight row is used for every input row of the tile and
//! each chunk of an input row for every weight row, so a tile of `C` weight rows by `R` input
//! rows loads `C + R` vectors for `C * R` fused multiply-adds instead of two loads per one.
//!
//! The weights may be held in f32, f16 or bf16 ([`Weight`]): a half-precision weight is widened
//! to f32 as it is loaded and the arithmetic stays f32, so a product of f16 weights gives what
//! the f32 kernel gives on the same values widened (to rounding of the sums), from half the
//! bytes. A text query's products are bound by reading the weights (benches/README.md), so
//! half the bytes is most of half the time.

use half::{bf16, f16};

/// Which instructions [`dots`] uses; [`level`] says what this CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Plain Rust (the reference; the compiler vectorises it as it can).
    Scalar,
    /// AVX2, FMA and F16C: 8-float vectors, tiles of 2 weight rows by up to 4 input rows.
    Avx2,
    /// AVX-512F: 16-float vectors, tiles of 4 weight rows by up to 6 input rows.
    Avx512,
}

/// The widest [`Level`] this CPU runs (checked once per process by std).
pub(crate) fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return Level::Avx2;
        }
    }
    Level::Scalar
}

/// The vector kernel of one level for one weight type (a `#[target_feature]` function).
type Kernel<W> = unsafe fn(&[f32], &[W], usize, &mut [f32]);

/// A type weights are held in for [`dots`]: f32, or f16 / bf16 widened to f32 as they are read.
pub(crate) trait Weight: Copy + Send + Sync + 'static {
    /// The value as f32 (exact: both half types widen without rounding).
    fn to_f32(self) -> f32;
    /// The vector kernel of `level` for this type, if it has one.
    fn kernel(level: Level) -> Option<Kernel<Self>>;
}

/// [`Weight`] for `$t`, widened by `$v => $wide`, with the vector kernels `$avx2` / `$avx512`.
macro_rules! weight {
    ($t:ty, $avx2:ident, $avx512:ident, $v:ident => $wide:expr) => {
        impl Weight for $t {
            fn to_f32(self) -> f32 {
                let $v = self;
                $wide
            }
            fn kernel(level: Level) -> Option<Kernel<Self>> {
                match level {
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx2 => Some($avx2::dots),
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx512 => Some($avx512::dots),
                    _ => None,
                }
            }
        }
    };
}

weight!(f32, avx2, avx512, v => v);
weight!(f16, avx2_f16, avx512_f16, v => v.to_f32());
weight!(bf16, avx2_bf16, avx512_bf16, v => v.to_f32());

/// `out[j * m + i] = x_i . w_j` for every row `x_i` of `x` (`m` rows of `k`) and every row
/// `w_j` of `w` (`n` rows of `k`), `out` holding `n * m` values. The vector paths sum in
/// another order than the reference, so results differ in the last bits.
///
/// # Panics
/// When `k` is 0 or the lengths are not whole rows of `k` with `out.len() == n * m`.
pub(crate) fn dots<W: Weight>(x: &[f32], w: &[W], k: usize, out: &mut [f32], level: Level) {
    assert!(
        k > 0 && x.len().is_multiple_of(k) && w.len().is_multiple_of(k),
        "dots: rows of {k}"
    );
    let (m, n) = (x.len() / k, w.len() / k);
    assert_eq!(out.len(), n * m, "dots: output of {n} x {m}");
    match W::kernel(level) {
        // SAFETY: `level_available` checked that this CPU has the level's instructions (a
        // caller's stale or wrong `Level` falls back to the reference); the lengths were
        // checked above, which is all the kernels rely on.
        Some(kernel) if level_available(level) => unsafe { kernel(x, w, k, out) },
        _ => dots_scalar(x, w, k, out),
    }
}

/// Whether this CPU runs `level` (so that a caller's stale or wrong `Level` cannot reach
/// instructions the CPU lacks).
fn level_available(level: Level) -> bool {
    match level {
        Level::Scalar => true,
        Level::Avx2 => matches!(self::level(), Level::Avx2 | Level::Avx512),
        Level::Avx512 => self::level() == Level::Avx512,
    }
}

/// The reference for [`dots`].
pub(crate) fn dots_scalar<W: Weight>(x: &[f32], w: &[W], k: usize, out: &mut [f32]) {
    let m = x.len() / k;
    let mut wide = vec![0f32; k];
    for (j, wj) in w.chunks_exact(k).enumerate() {
        for (v, q) in wide.iter_mut().zip(wj) {
            *v = q.to_f32();
        }
        for (i, xi) in x.chunks_exact(k).enumerate() {
            out[j * m + i] = dot_scalar(xi, &wide);
        }
    }
}

/// `sum(a[i] * b[i])` over the shorter length: eight partial sums (so the compiler can
/// vectorise it without FMA), then their total.
pub(crate) fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in ca.by_ref().zip(cb.by_ref()) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// One vector width's tiled kernel for one weight type: `tile` computes a `C x R` tile with
/// `$lanes`-float vectors, the weights read by `load_w` (`$p` => `$load_w`: `$lanes` weights
/// from `$p` as f32); `dots` walks the weight rows `$c` at a time (the last few one at a time)
/// and the input rows in even tiles of at most `$r` (`$r <= 6`). Every pointer read is inside a row of `x` or `w` (see the SAFETY comments).
#[cfg(target_arch = "x86_64")]
macro_rules! tiled {
    ($name:ident, $feature:literal, $wty:ty, $vec:ty, $lanes:literal, $c:literal, $r:literal,
     $zero:ident, $load:ident, $fma:ident, $store:ident, $p:ident => $load_w:expr) => {
        pub(super) mod $name {
            #[allow(unused_imports)]
            use half::{bf16, f16};
            #[allow(unused_imports)]
            use std::arch::x86_64::*;

            use super::Weight;

            /// `$lanes` weights from `$p` as f32.
            ///
            /// # Safety
            /// The CPU must have the module's instructions and `$lanes` weights must be readable
            /// from `$p` (unaligned loads need no alignment).
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn load_w($p: *const $wty) -> $vec {
                // SAFETY: this function's contract.
                unsafe { $load_w }
            }

            /// See [`super::dots`].
            ///
            /// # Safety
            /// The CPU must have the module's instructions; `x.len()` and `w.len()` must be
            /// multiples of `k > 0`, and `out.len() == (w.len() / k) * (x.len() / k)`.
            #[target_feature(enable = $feature)]
            pub(crate) unsafe fn dots(x: &[f32], w: &[$wty], k: usize, out: &mut [f32]) {
                let (m, n) = (x.len() / k, w.len() / k);
                // The input rows in as few tiles of at most $r as there can be, of even sizes
                // (10 rows: 5 and 5 with AVX-512, not 4, 4, 1 and 1): a tile of fewer rows
                // loads and widens each weight vector for fewer products.
                let tiles = m.div_ceil($r);
                let mut j = 0;
                while j < n {
                    let c = if n - j >= $c { $c } else { 1 };
                    let mut i = 0;
                    for t in 0..tiles {
                        let r = m / tiles + usize::from(t < m % tiles);
                        // SAFETY: rows j..j + c of w and i..i + r of x exist (c <= n - j, and
                        // the tiles' rows add up to m); the CPU has the instructions (this
                        // function's contract).
                        unsafe {
                            if c == $c {
                                rows::<$c>(r, x, w, k, i, j, m, out)
                            } else {
                                rows::<1>(r, x, w, k, i, j, m, out)
                            }
                        }
                        i += r;
                    }
                    j += c;
                }
            }

            /// [`tile`] of `C` weight rows by `r` input rows, `1 <= r <= 6`.
            ///
            /// # Safety
            /// As [`tile`].
            #[target_feature(enable = $feature)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn rows<const C: usize>(
                r: usize,
                x: &[f32],
                w: &[$wty],
                k: usize,
                i: usize,
                j: usize,
                m: usize,
                out: &mut [f32],
            ) {
                // SAFETY: this function's contract, passed on.
                unsafe {
                    match r {
                        1 => tile::<C, 1>(x, w, k, i, j, m, out),
                        2 => tile::<C, 2>(x, w, k, i, j, m, out),
                        3 => tile::<C, 3>(x, w, k, i, j, m, out),
                        4 => tile::<C, 4>(x, w, k, i, j, m, out),
                        5 => tile::<C, 5>(x, w, k, i, j, m, out),
                        _ => tile::<C, 6>(x, w, k, i, j, m, out),
                    }
                }
            }

            /// The `C x R` tile of outputs at weight rows `j..j + C`, input rows `i..i + R`.
            ///
            /// # Safety
            /// As [`dots`], and `j + C <= w.len() / k`, `i + R <= x.len() / k`.
            #[target_feature(enable = $feature)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn tile<const C: usize, const R: usize>(
                x: &[f32],
                w: &[$wty],
                k: usize,
                i: usize,
                j: usize,
                m: usize,
                out: &mut [f32],
            ) {
                let steps = k / $lanes;
                let mut acc: [[$vec; R]; C] = [[$zero(); R]; C];
                for s in 0..steps {
                    let off = s * $lanes;
                    let mut xv: [$vec; R] = [$zero(); R];
                    for (r, v) in xv.iter_mut().enumerate() {
                        // SAFETY: row i + r starts at (i + r) * k and off + $lanes <=
                        // steps * $lanes <= k: the floats read lie inside that row of x, which
                        // exists by the contract; unaligned loads need no alignment.
                        *v = unsafe { $load(x.as_ptr().add((i + r) * k + off)) };
                    }
                    for (c, row) in acc.iter_mut().enumerate() {
                        // SAFETY: as for x, the $lanes weights lie inside row j + c of w.
                        let wv = unsafe { load_w(w.as_ptr().add((j + c) * k + off)) };
                        for (a, v) in row.iter_mut().zip(&xv) {
                            *a = $fma(wv, *v, *a);
                        }
                    }
                }
                let tail = steps * $lanes;
                for (c, row) in acc.iter().enumerate() {
                    let wr = &w[(j + c) * k..(j + c + 1) * k];
                    for (r, a) in row.iter().enumerate() {
                        let xr = &x[(i + r) * k..(i + r + 1) * k];
                        let mut lanes = [0f32; $lanes];
                        // SAFETY: `lanes` is $lanes writable floats; unaligned stores need no
                        // alignment.
                        unsafe { $store(lanes.as_mut_ptr(), *a) };
                        let rest: f32 = xr[tail..]
                            .iter()
                            .zip(&wr[tail..])
                            .map(|(p, q)| p * Weight::to_f32(*q))
                            .sum();
                        out[(j + c) * m + i + r] = lanes.iter().sum::<f32>() + rest;
                    }
                }
            }
        }
    };
}

// f32 weights: plain loads.
#[cfg(target_arch = "x86_64")]
tiled!(avx2, "avx2,fma", f32, __m256, 8, 2, 4, _mm256_setzero_ps, _mm256_loadu_ps,
    _mm256_fmadd_ps, _mm256_storeu_ps, p => _mm256_loadu_ps(p));
#[cfg(target_arch = "x86_64")]
tiled!(avx512, "avx512f", f32, __m512, 16, 4, 6, _mm512_setzero_ps, _mm512_loadu_ps,
    _mm512_fmadd_ps, _mm512_storeu_ps, p => _mm512_loadu_ps(p));
// f16 weights: 8 / 16 halves loaded as 128 / 256 bits and widened by the F16C / AVX-512F
// conversion (exact: every f16 is an f32).
#[cfg(target_arch = "x86_64")]
tiled!(avx2_f16, "avx2,fma,f16c", f16, __m256, 8, 2, 4, _mm256_setzero_ps, _mm256_loadu_ps,
    _mm256_fmadd_ps, _mm256_storeu_ps, p => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())));
#[cfg(target_arch = "x86_64")]
tiled!(avx512_f16, "avx512f", f16, __m512, 16, 4, 6, _mm512_setzero_ps, _mm512_loadu_ps,
    _mm512_fmadd_ps, _mm512_storeu_ps, p => _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())));
// bf16 weights: a bf16 is the top half of an f32, so widening is a zero-extension to 32 bits and
// a shift by 16 (exact).
#[cfg(target_arch = "x86_64")]
tiled!(avx2_bf16, "avx2,fma", bf16, __m256, 8, 2, 4, _mm256_setzero_ps, _mm256_loadu_ps,
    _mm256_fmadd_ps, _mm256_storeu_ps,
    p => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))));
#[cfg(target_arch = "x86_64")]
tiled!(avx512_bf16, "avx512f", bf16, __m512, 16, 4, 6, _mm512_setzero_ps, _mm512_loadu_ps,
    _mm512_fmadd_ps, _mm512_storeu_ps,
    p => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())))));

/// Weights packed for [`gemm_bf16`]: `W` `(n, k)` rounded to bf16, in panels of [`PANEL`]
/// output columns; within a panel, for each pair of inputs `(2p, 2p + 1)`, the [`PANEL`]
/// columns' two weights as one `u32` (`w[c][2p]` in the low half). An odd `k` and the last
/// panel's missing columns are padded with zeros.
#[derive(Debug, Clone)]
pub(crate) struct PackedBf16 {
    n: usize,
    k: usize,
    data: Vec<u32>,
}

/// Output columns per panel of [`PackedBf16`] (two 16-float vectors).
pub(crate) const PANEL: usize = 32;

/// `(lo, hi)` as a bf16 pair, `lo` in the low half (the order `vdpbf16ps` pairs them in).
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(bf16::from_f32(lo).to_bits()) | (u32::from(bf16::from_f32(hi).to_bits()) << 16)
}

impl PackedBf16 {
    /// Packs `w`, `n` rows of `k` (the stored `(out, in)` matrix of a linear map).
    ///
    /// # Panics
    /// When `k` is 0 or `w.len() != n * k`.
    pub(crate) fn new(w: &[f32], n: usize, k: usize) -> Self {
        assert!(k > 0 && w.len() == n * k, "PackedBf16: {n} rows of {k}");
        let pairs = k.div_ceil(2);
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0u32; panels * pairs * PANEL];
        for (c, row) in w.chunks_exact(k).enumerate() {
            let (panel, col) = (c / PANEL, c % PANEL);
            for p in 0..pairs {
                let hi = row.get(2 * p + 1).copied().unwrap_or(0.0);
                data[(panel * pairs + p) * PANEL + col] = pair(row[2 * p], hi);
            }
        }
        Self { n, k, data }
    }

    /// Output columns (the map's `out`).
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Inputs per row (the map's `in`).
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// The weight of output `c`, input `i`, as packed (rounded to bf16), widened to f32.
    fn get(&self, c: usize, i: usize) -> f32 {
        let pairs = self.k.div_ceil(2);
        let v = self.data[((c / PANEL) * pairs + i / 2) * PANEL + c % PANEL];
        let bits = if i.is_multiple_of(2) {
            v & 0xffff
        } else {
            v >> 16
        };
        bf16::from_bits(bits as u16).to_f32()
    }
}

/// Whether this CPU has the bf16 dot products [`gemm_bf16`] runs on (AVX-512F and
/// AVX512_BF16: Intel since Cooper Lake, AMD since Zen 4).
pub(crate) fn bf16_dots_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out = x W^T` for `x` `(m, k)` f32 row-major and `W` packed, `out` `(m, n)` row-major, with
/// `x` rounded to bf16 and the products summed in f32 (`vdpbf16ps`): twice the multiply-adds
/// per instruction of f32 FMA. Without the instructions (see [`bf16_dots_available`]) the safe
/// reference computes the same rounded values in f32. Rows are split across rayon's threads.
///
/// # Panics
/// When `x.len() != m * w.k()` or `out.len() != m * w.n()`.
pub(crate) fn gemm_bf16(x: &[f32], m: usize, w: &PackedBf16, out: &mut [f32]) {
    use rayon::prelude::*;
    let (n, k) = (w.n, w.k);
    assert!(
        x.len() == m * k && out.len() == m * n,
        "gemm_bf16: ({m}, {k}) x ({n}, {k})^T"
    );
    if m == 0 || n == 0 {
        return;
    }
    let pairs = k.div_ceil(2);
    // Rows a task: whole tiles, about four tasks a thread so that uneven tasks even out.
    let tasks = rayon::current_num_threads() * 4;
    let rows = m
        .div_ceil(tasks)
        .next_multiple_of(bf16_dots::ROWS)
        .max(bf16_dots::ROWS);
    let fast = bf16_dots_available();
    out.par_chunks_mut(rows * n)
        .zip(x.par_chunks(rows * k))
        .for_each(|(out, x)| {
            let m = x.len() / k;
            if fast {
                let mut a = vec![0u32; m * pairs];
                // SAFETY: the CPU has AVX-512F and AVX512_BF16 (checked above); `x` is `m`
                // rows of `k`, `a` `m` rows of `pairs`, `out` `m` rows of `n`, and `w` holds
                // `n.div_ceil(PANEL)` panels of `pairs` pairs, which is all the kernel reads.
                unsafe {
                    bf16_dots::to_pairs(x, k, &mut a);
                    bf16_dots::gemm(&a, m, pairs, w, out);
                }
            } else {
                gemm_bf16_scalar(x, m, w, out);
            }
        });
}

/// The reference for [`gemm_bf16`]: the same bf16-rounded inputs and weights, in f32.
pub(crate) fn gemm_bf16_scalar(x: &[f32], m: usize, w: &PackedBf16, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    let mut wide = vec![0f32; k];
    let xr: Vec<f32> = x.iter().map(|v| bf16::from_f32(*v).to_f32()).collect();
    for c in 0..n {
        for (i, v) in wide.iter_mut().enumerate() {
            *v = w.get(c, i);
        }
        for r in 0..m {
            out[r * n + c] = dot_scalar(&xr[r * k..(r + 1) * k], &wide);
        }
    }
}

/// The AVX512_BF16 kernel of [`gemm_bf16`]: tiles of [`bf16_dots::ROWS`] input rows by a
/// [`PANEL`] of 32 output columns (24 vector accumulators), over blocks of the inputs small
/// enough that a tile's inputs and the panel's weights stay in the first-level cache.
#[cfg(target_arch = "x86_64")]
mod bf16_dots {
    use std::arch::x86_64::*;

    use super::{PANEL, PackedBf16, pair};

    /// Input rows per tile.
    pub(super) const ROWS: usize = 12;
    /// Input pairs per block (512 inputs: a tile's 24 KiB of inputs and the panel's 64 KiB of
    /// weights fit the second-level cache, the panel's block streams through the first).
    const BLOCK: usize = 256;

    /// `x` (`m` rows of `k` f32) rounded to bf16 pairs, `a` `m` rows of `k.div_ceil(2)` pairs.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX512_BF16; `a.len() == (x.len() / k) * k.div_ceil(2)`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn to_pairs(x: &[f32], k: usize, a: &mut [u32]) {
        let pairs = k.div_ceil(2);
        for (row, dst) in x.chunks_exact(k).zip(a.chunks_exact_mut(pairs)) {
            let whole = k / 32;
            for v in 0..whole {
                // SAFETY: 32 floats at v * 32 lie inside `row` (v < k / 32) and 16 pairs at
                // v * 16 inside `dst` (16 * whole <= pairs); unaligned loads and stores. The
                // transmute is between two 512-bit vector types (32 bf16 and 16 i32 lanes of the
                // same bits; std has no cast intrinsic for bf16 vectors).
                unsafe {
                    let lo = _mm512_loadu_ps(row.as_ptr().add(v * 32));
                    let hi = _mm512_loadu_ps(row.as_ptr().add(v * 32 + 16));
                    let bh = _mm512_cvtne2ps_pbh(hi, lo);
                    _mm512_storeu_si512(
                        dst.as_mut_ptr().add(v * 16).cast(),
                        std::mem::transmute::<__m512bh, __m512i>(bh),
                    );
                }
            }
            for p in whole * 16..pairs {
                let hi = row.get(2 * p + 1).copied().unwrap_or(0.0);
                dst[p] = pair(row[2 * p], hi);
            }
        }
    }

    /// `out = a W^T` for `a` `m` rows of `pairs` bf16 pairs.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX512_BF16; `a.len() == m * pairs`, `out.len() == m *
    /// w.n()`, `pairs == w.k().div_ceil(2)`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn gemm(a: &[u32], m: usize, pairs: usize, w: &PackedBf16, out: &mut [f32]) {
        let n = w.n();
        for panel in 0..n.div_ceil(PANEL) {
            let cols = (n - panel * PANEL).min(PANEL);
            let b = &w.data[panel * pairs * PANEL..(panel + 1) * pairs * PANEL];
            let mut p0 = 0;
            while p0 < pairs {
                let len = (pairs - p0).min(BLOCK);
                let mut r = 0;
                while r < m {
                    let rows = (m - r).min(ROWS);
                    let t = Tile {
                        a,
                        pairs,
                        b,
                        p0,
                        len,
                        r,
                        n,
                        col0: panel * PANEL,
                        cols,
                        first: p0 == 0,
                    };
                    // SAFETY: rows r..r + rows of `a` and `out` exist (rows <= m - r); pairs
                    // p0..p0 + len of each (len <= pairs - p0) and of the panel's `b`; columns
                    // col0..col0 + cols of `out` (cols <= n - col0); the CPU has the
                    // instructions (this function's contract).
                    unsafe {
                        match rows {
                            12 => t.run::<12>(out),
                            11 => t.run::<11>(out),
                            10 => t.run::<10>(out),
                            9 => t.run::<9>(out),
                            8 => t.run::<8>(out),
                            7 => t.run::<7>(out),
                            6 => t.run::<6>(out),
                            5 => t.run::<5>(out),
                            4 => t.run::<4>(out),
                            3 => t.run::<3>(out),
                            2 => t.run::<2>(out),
                            _ => t.run::<1>(out),
                        }
                    }
                    r += rows;
                }
                p0 += len;
            }
        }
    }

    /// One tile's work: rows `r..r + R` of `a` and `out`, pairs `p0..p0 + len`, the panel `b`
    /// (columns `col0..col0 + cols` of `out`); `first` when `out` is to be overwritten rather
    /// than added to.
    struct Tile<'a> {
        a: &'a [u32],
        pairs: usize,
        b: &'a [u32],
        p0: usize,
        len: usize,
        r: usize,
        n: usize,
        col0: usize,
        cols: usize,
        first: bool,
    }

    impl Tile<'_> {
        /// # Safety
        /// The CPU has AVX-512F and AVX512_BF16; rows `r..r + R` of `a` (`pairs` each) and of
        /// `out` (`n` each) exist, `p0 + len <= pairs`, `b` holds `pairs * PANEL` pairs and
        /// `col0 + cols <= n`, `cols <= PANEL`.
        #[target_feature(enable = "avx512f,avx512bf16")]
        unsafe fn run<const R: usize>(&self, out: &mut [f32]) {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            // Which of each vector's 16 columns exist (the last panel may be short).
            let lo_mask: __mmask16 = if self.cols >= 16 {
                0xffff
            } else {
                (1u16 << self.cols) - 1
            };
            let hi_mask: __mmask16 = if self.cols >= 32 {
                0xffff
            } else if self.cols > 16 {
                (1u16 << (self.cols - 16)) - 1
            } else {
                0
            };
            if !self.first {
                for (i, acc) in acc.iter_mut().enumerate() {
                    let o = (self.r + i) * self.n + self.col0;
                    // SAFETY: row r + i of `out` exists and the masks keep the loads within
                    // columns col0..col0 + cols of it (the contract); masked-off lanes are
                    // not read.
                    unsafe {
                        acc[0] = _mm512_maskz_loadu_ps(lo_mask, out.as_ptr().add(o));
                        acc[1] = _mm512_maskz_loadu_ps(hi_mask, out.as_ptr().add(o + 16));
                    }
                }
            }
            let a = self.a.as_ptr();
            let b = self.b.as_ptr();
            for p in self.p0..self.p0 + self.len {
                // SAFETY: pair p of the panel's 32 columns lies inside `b` (p < pairs), and
                // pair p of rows r..r + R inside `a` (the contract); unaligned loads. The
                // transmutes reinterpret 512 bits of bf16 pairs as the bf16 vector type.
                unsafe {
                    let b0: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(b.add(p * PANEL).cast()));
                    let b1: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(b.add(p * PANEL + 16).cast()));
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(
                            *a.add((self.r + i) * self.pairs + p) as i32,
                        ));
                        acc[0] = _mm512_dpbf16_ps(acc[0], x, b0);
                        acc[1] = _mm512_dpbf16_ps(acc[1], x, b1);
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                let o = (self.r + i) * self.n + self.col0;
                // SAFETY: as for the loads above, masked stores within the tile's columns.
                unsafe {
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(o), lo_mask, acc[0]);
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(o + 16), hi_mask, acc[1]);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod bf16_dots {
    pub(super) const ROWS: usize = 12;
    pub(super) unsafe fn to_pairs(_: &[f32], _: usize, _: &mut [u32]) {
        unreachable!("bf16_dots_available() is false off x86_64")
    }
    pub(super) unsafe fn gemm(_: &[u32], _: usize, _: usize, _: &super::PackedBf16, _: &mut [f32]) {
        unreachable!("bf16_dots_available() is false off x86_64")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `a` then `b` values in [-4, 4] in steps of 0.001 (mixed sign and size), from `seed`.
    fn values(seed: u64, a: usize, b: usize) -> (Vec<f32>, Vec<f32>) {
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 8001) as f32 / 1000.0 - 4.0
        };
        let x = (0..a).map(|_| next()).collect();
        let w = (0..b).map(|_| next()).collect();
        (x, w)
    }

    /// Every level this CPU runs, the reference first.
    fn levels() -> Vec<Level> {
        [Level::Scalar, Level::Avx2, Level::Avx512]
            .into_iter()
            .filter(|l| level_available(*l))
            .collect()
    }

    proptest! {
        /// Every shape (tiles, leftover rows of either side, the vector steps and the tail of
        /// each row) and values of mixed sign and size: every level agrees with the exact sum
        /// to rounding.
        #[test]
        fn every_level_agrees_with_the_exact_sum(
            k in 1usize..80,
            m in 1usize..10,
            n in 1usize..11,
            seed in any::<u64>(),
        ) {
            let (x, w) = values(seed, m * k, n * k);
            // The half types: each weight rounded, the exact sum taken of the rounded values.
            let w16: Vec<f16> = w.iter().map(|v| f16::from_f32(*v)).collect();
            let wb16: Vec<bf16> = w.iter().map(|v| bf16::from_f32(*v)).collect();
            check(&x, &w, k, m, n)?;
            check(&x, &w16, k, m, n)?;
            check(&x, &wb16, k, m, n)?;
        }
    }

    /// `a . b` summed exactly (in f64, where every product of two f32 is exact), and the sum
    /// of the products' magnitudes plus one, the scale a rounding error is measured against.
    fn exact_sum(a: &[f32], b: &[f32]) -> (f64, f64) {
        let products = a.iter().zip(b).map(|(p, q)| f64::from(*p) * f64::from(*q));
        let exact = products.clone().sum();
        (exact, products.map(f64::abs).sum::<f64>() + 1.0)
    }

    /// Every level's [`dots`] of `x` and `w` against the exact sum of the widened values.
    fn check<W: Weight + std::fmt::Debug>(
        x: &[f32],
        w: &[W],
        k: usize,
        m: usize,
        n: usize,
    ) -> Result<(), TestCaseError> {
        let wide: Vec<f32> = w.iter().map(|v| v.to_f32()).collect();
        for level in levels() {
            let mut out = vec![f32::NAN; n * m];
            dots(x, w, k, &mut out, level);
            for j in 0..n {
                for i in 0..m {
                    let (exact, scale) =
                        exact_sum(&x[i * k..(i + 1) * k], &wide[j * k..(j + 1) * k]);
                    let got = f64::from(out[j * m + i]);
                    prop_assert!(
                        (got - exact).abs() <= 1e-5 * scale,
                        "{} {level:?} ({i}, {j}): {got} vs {exact}",
                        std::any::type_name::<W>()
                    );
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// bf16 dot products: every shape (whole and partial tiles of rows, short last panels,
        /// odd inputs, inputs across blocks) against the exact sum of the bf16-rounded inputs
        /// and weights, both with the instructions and with the safe reference.
        #[test]
        fn bf16_gemm_agrees_with_the_exact_sum_of_rounded_values(
            k in 1usize..1100,
            m in 1usize..30,
            n in 1usize..70,
            seed in any::<u64>(),
        ) {
            let (x, w) = values(seed, m * k, n * k);
            let packed = PackedBf16::new(&w, n, k);
            let round = |v: &[f32]| -> Vec<f32> { v.iter().map(|v| bf16::from_f32(*v).to_f32()).collect() };
            let (xr, wr) = (round(&x), round(&w));
            let mut fast = vec![f32::NAN; m * n];
            gemm_bf16(&x, m, &packed, &mut fast);
            let mut reference = vec![f32::NAN; m * n];
            gemm_bf16_scalar(&x, m, &packed, &mut reference);
            for r in 0..m {
                for c in 0..n {
                    let (exact, scale) = exact_sum(&xr[r * k..(r + 1) * k], &wr[c * k..(c + 1) * k]);
                    for (name, got) in [("gemm_bf16", fast[r * n + c]), ("reference", reference[r * n + c])] {
                        let got = f64::from(got);
                        prop_assert!(
                            (got - exact).abs() <= 1e-5 * scale,
                            "{name} ({r}, {c}) of ({m}, {k}) x ({n}, {k}): {got} vs {exact}"
                        );
                    }
                }
            }
        }
    }

    /// Small integers are exact in bf16 and their sums exact in f32: the bf16 kernel gives
    /// the very products, whatever its order (whether or not this CPU has the instructions).
    #[test]
    fn bf16_gemm_is_exact_on_small_integers() {
        let (m, n, k) = (13, 35, 515);
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let packed = PackedBf16::new(&w, n, k);
        let mut out = vec![0f32; m * n];
        gemm_bf16(&x, m, &packed, &mut out);
        for r in 0..m {
            for c in 0..n {
                let want: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                assert_eq!(out[r * n + c], want, "({r}, {c})");
            }
        }
        println!("bf16 dots on this CPU: {}", bf16_dots_available());
    }

    #[test]
    fn short_rows_and_known_sums() {
        // k = 3 (no whole vector), two rows each: the tail alone.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        for level in levels() {
            let mut out = [0f32; 4];
            dots(&x, &w, 3, &mut out, level);
            assert_eq!(out, [4.0, 10.0, 2.0, 5.0], "{level:?}");
        }
        // k = 64 of integers: exact in every order.
        let a: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let want: f32 = a.iter().map(|v| v * v).sum();
        for level in levels() {
            let mut out = [0f32; 1];
            dots(&a, &a, 64, &mut out, level);
            assert_eq!(out[0], want, "{level:?}");
            // Integers up to 63 are exact in f16 and bf16 alike.
            let h: Vec<f16> = a.iter().map(|v| f16::from_f32(*v)).collect();
            dots(&a, &h, 64, &mut out, level);
            assert_eq!(out[0], want, "f16 {level:?}");
            let b: Vec<bf16> = a.iter().map(|v| bf16::from_f32(*v)).collect();
            dots(&a, &b, 64, &mut out, level);
            assert_eq!(out[0], want, "bf16 {level:?}");
        }
    }

    #[test]
    fn a_level_the_cpu_lacks_falls_back_to_the_reference() {
        let x = [1.0f32; 40];
        let w = [0.5f32; 80];
        let mut out = [0f32; 2];
        for level in [Level::Scalar, Level::Avx2, Level::Avx512] {
            dots(&x, &w, 40, &mut out, level);
            assert_eq!(out, [20.0, 20.0], "{level:?}");
        }
    }
}
