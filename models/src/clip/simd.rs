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

impl Weight for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn kernel(level: Level) -> Option<Kernel<Self>> {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => Some(avx2::dots),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => Some(avx512::dots),
            _ => None,
        }
    }
}

impl Weight for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn kernel(level: Level) -> Option<Kernel<Self>> {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => Some(avx2_f16::dots),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => Some(avx512_f16::dots),
            _ => None,
        }
    }
}

impl Weight for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn kernel(level: Level) -> Option<Kernel<Self>> {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => Some(avx2_bf16::dots),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => Some(avx512_bf16::dots),
            _ => None,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

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
            let mut state = seed | 1;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 8001) as f32 / 1000.0 - 4.0
            };
            let x: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let w: Vec<f32> = (0..n * k).map(|_| next()).collect();
            // The half types: each weight rounded, the exact sum taken of the rounded values.
            let w16: Vec<f16> = w.iter().map(|v| f16::from_f32(*v)).collect();
            let wb16: Vec<bf16> = w.iter().map(|v| bf16::from_f32(*v)).collect();
            check(&x, &w, k, m, n)?;
            check(&x, &w16, k, m, n)?;
            check(&x, &wb16, k, m, n)?;
        }
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
                    let (xi, wj) = (&x[i * k..(i + 1) * k], &wide[j * k..(j + 1) * k]);
                    let exact: f64 = xi
                        .iter()
                        .zip(wj)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum();
                    let scale: f64 = xi
                        .iter()
                        .zip(wj)
                        .map(|(a, b)| f64::from((a * b).abs()))
                        .sum::<f64>()
                        + 1.0;
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
