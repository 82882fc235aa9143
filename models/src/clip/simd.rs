//! The crate's only `unsafe` code: the dot products of a few input rows with many weight rows,
//! with AVX-512 or AVX2 + FMA chosen at run time, and the safe reference they are tested
//! against. Used by [`super::layers`] for matmuls of a few rows (a text query) where gemm's
//! packing of the whole weight matrix costs more than the product.
//!
//! The vector paths compute a tile of outputs at once (several weight rows against several
//! input rows): each loaded chunk of a weight row is used for every input row of the tile and
//! each chunk of an input row for every weight row, so a tile of `C` weight rows by `R` input
//! rows loads `C + R` vectors for `C * R` fused multiply-adds instead of two loads per one.

/// Which instructions [`dots`] uses; [`level`] says what this CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Plain Rust (the reference; the compiler vectorises it as it can).
    Scalar,
    /// AVX2 and FMA: 8-float vectors, tiles of 2 weight rows by 4 input rows.
    Avx2,
    /// AVX-512F: 16-float vectors, tiles of 4 weight rows by 4 input rows.
    Avx512,
}

/// The widest [`Level`] this CPU runs (checked once per process by std).
pub(crate) fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    Level::Scalar
}

/// `out[j * m + i] = x_i . w_j` for every row `x_i` of `x` (`m` rows of `k`) and every row
/// `w_j` of `w` (`n` rows of `k`), `out` holding `n * m` values. The vector paths sum in
/// another order than the reference, so results differ in the last bits.
///
/// # Panics
/// When `k` is 0 or the lengths are not whole rows of `k` with `out.len() == n * m`.
pub(crate) fn dots(x: &[f32], w: &[f32], k: usize, out: &mut [f32], level: Level) {
    assert!(
        k > 0 && x.len().is_multiple_of(k) && w.len().is_multiple_of(k),
        "dots: rows of {k}"
    );
    let (m, n) = (x.len() / k, w.len() / k);
    assert_eq!(out.len(), n * m, "dots: output of {n} x {m}");
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Level::Avx2` comes from `level()` only where the CPU has AVX2 and FMA (or
        // from a test that checked the same); the lengths were checked above, which is all
        // `avx2::dots` relies on.
        Level::Avx2 if level_available(level) => unsafe { avx2::dots(x, w, k, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX-512F.
        Level::Avx512 if level_available(level) => unsafe { avx512::dots(x, w, k, out) },
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
pub(crate) fn dots_scalar(x: &[f32], w: &[f32], k: usize, out: &mut [f32]) {
    let m = x.len() / k;
    for (j, wj) in w.chunks_exact(k).enumerate() {
        for (i, xi) in x.chunks_exact(k).enumerate() {
            out[j * m + i] = dot_scalar(xi, wj);
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

/// One vector width's tiled kernel: `$tile` computes a `C x R` tile with `$lanes`-float
/// vectors; `dots` walks the output in tiles of `$c x $r`, then the leftover rows in tiles of
/// one. Every pointer read is inside a row of `x` or `w` (see the SAFETY comments).
#[cfg(target_arch = "x86_64")]
macro_rules! tiled {
    ($name:ident, $feature:literal, $vec:ty, $lanes:literal, $c:literal, $r:literal,
     $zero:ident, $load:ident, $fma:ident, $store:ident) => {
        pub(super) mod $name {
            use std::arch::x86_64::{$fma, $load, $store, $vec, $zero};

            /// See [`super::dots`].
            ///
            /// # Safety
            /// The CPU must have the module's instructions; `x.len()` and `w.len()` must be
            /// multiples of `k > 0`, and `out.len() == (w.len() / k) * (x.len() / k)`.
            #[target_feature(enable = $feature)]
            pub(crate) unsafe fn dots(x: &[f32], w: &[f32], k: usize, out: &mut [f32]) {
                let (m, n) = (x.len() / k, w.len() / k);
                let mut j = 0;
                while j < n {
                    let c = if n - j >= $c { $c } else { 1 };
                    let mut i = 0;
                    while i < m {
                        let r = if m - i >= $r { $r } else { 1 };
                        // SAFETY: rows j..j + c of w and i..i + r of x exist (c <= n - j,
                        // r <= m - i); the CPU has the instructions (this function's contract).
                        unsafe {
                            match (c, r) {
                                ($c, $r) => tile::<$c, $r>(x, w, k, i, j, m, out),
                                ($c, _) => tile::<$c, 1>(x, w, k, i, j, m, out),
                                (_, $r) => tile::<1, $r>(x, w, k, i, j, m, out),
                                _ => tile::<1, 1>(x, w, k, i, j, m, out),
                            }
                        }
                        i += r;
                    }
                    j += c;
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
                w: &[f32],
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
                        // SAFETY: as for x, inside row j + c of w.
                        let wv = unsafe { $load(w.as_ptr().add((j + c) * k + off)) };
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
                        let rest: f32 =
                            xr[tail..].iter().zip(&wr[tail..]).map(|(p, q)| p * q).sum();
                        out[(j + c) * m + i + r] = lanes.iter().sum::<f32>() + rest;
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
tiled!(
    avx2,
    "avx2,fma",
    __m256,
    8,
    2,
    4,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_fmadd_ps,
    _mm256_storeu_ps
);
#[cfg(target_arch = "x86_64")]
tiled!(
    avx512,
    "avx512f",
    __m512,
    16,
    4,
    4,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps
);

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
            for level in levels() {
                let mut out = vec![f32::NAN; n * m];
                dots(&x, &w, k, &mut out, level);
                for j in 0..n {
                    for i in 0..m {
                        let (xi, wj) = (&x[i * k..(i + 1) * k], &w[j * k..(j + 1) * k]);
                        let exact: f64 = xi.iter().zip(wj).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                        let scale: f64 = xi.iter().zip(wj).map(|(a, b)| f64::from((a * b).abs())).sum::<f64>() + 1.0;
                        let got = f64::from(out[j * m + i]);
                        prop_assert!((got - exact).abs() <= 1e-5 * scale, "{level:?} ({i}, {j}): {got} vs {exact}");
                    }
                }
            }
        }
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
