//! The crate's only `unsafe` code: an f32 dot product with AVX2 + FMA, chosen at run time, and
//! the safe fallback it is tested against. Used by [`super::layers`] for matmuls of a few rows
//! (a text query) where gemm's packing of the whole weight matrix costs more than the product.

/// `sum(a[i] * b[i])` over the shorter length, with AVX2 + FMA when `fast` (see [`has_fma`]).
/// The sum is in another order than a plain loop's, so the result differs in the last bits.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32], fast: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: `fast` is true only when `has_fma()` said the CPU has AVX2 and FMA, which is
        // everything `dot_avx2` needs; it reads only within both slices (see there).
        return unsafe { dot_avx2(a, b) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = fast; // no fast path to choose here
    dot_scalar(a, b)
}

/// Whether this CPU runs [`dot`]'s AVX2 + FMA path (checked once per process by std).
pub(crate) fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The reference: eight partial sums (so the compiler can vectorise it without FMA), then
/// their total.
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

/// Four 8-lane FMA accumulators over 32 floats a step, then the tail one by one.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let n = a.len().min(b.len());
    let steps = n / 32;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
    for s in 0..steps {
        for (u, acc) in acc.iter_mut().enumerate() {
            let off = s * 32 + u * 8;
            // SAFETY: off + 8 <= steps * 32 <= n <= a.len(), b.len(): the eight floats read
            // from each pointer are inside its slice; unaligned loads need no alignment.
            let (va, vb) = unsafe { (_mm256_loadu_ps(pa.add(off)), _mm256_loadu_ps(pb.add(off))) };
            *acc = _mm256_fmadd_ps(va, vb, *acc);
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` is eight writable floats; unaligned stores need no alignment.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    let tail: f32 = a[steps * 32..n]
        .iter()
        .zip(&b[steps * 32..n])
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Every length (the 32-float steps, the tail, both), unequal lengths and values of
        /// mixed sign and size: the fast path agrees with the reference to rounding.
        #[test]
        fn the_fma_path_agrees_with_the_reference(
            a in prop::collection::vec(-4.0f32..4.0, 0..300),
            b in prop::collection::vec(-4.0f32..4.0, 0..300),
        ) {
            let reference = dot_scalar(&a, &b);
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            let scale: f64 = a.iter().zip(&b).map(|(x, y)| f64::from((x * y).abs())).sum::<f64>() + 1.0;
            prop_assert!((f64::from(reference) - exact).abs() <= 1e-5 * scale);
            let fast = dot(&a, &b, has_fma());
            prop_assert!((f64::from(fast) - exact).abs() <= 1e-5 * scale, "{fast} vs {exact}");
        }
    }

    #[test]
    fn empty_and_short_inputs() {
        assert_eq!(dot(&[], &[1.0], has_fma()), 0.0);
        assert_eq!(dot(&[2.0, 3.0], &[4.0, 5.0, 6.0], has_fma()), 23.0);
        let a: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let want: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot(&a, &a, has_fma()), want);
        assert_eq!(dot_scalar(&a, &a), want);
    }
}
