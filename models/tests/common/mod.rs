//! Helpers shared by the models crate's integration tests.

/// Largest absolute difference between two equally long vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The device the parity tests run on, from `IMAGELENS_TEST_DEVICE`: `cpu` (the default) or
/// `cuda` (the first GPU; the crate must be built with `--features cuda`). Asking for a GPU
/// that cannot be used fails the test instead of quietly testing the CPU.
#[allow(dead_code)] // each test binary compiles this module; not every one uses it
pub fn test_device() -> candle::Device {
    match std::env::var("IMAGELENS_TEST_DEVICE").as_deref() {
        Err(_) | Ok("") | Ok("cpu") => candle::Device::Cpu,
        Ok("cuda") => candle::Device::new_cuda(0).unwrap_or_else(|e| {
            panic!("IMAGELENS_TEST_DEVICE=cuda, but no CUDA device can be used: {e}")
        }),
        Ok(other) => panic!("IMAGELENS_TEST_DEVICE={other:?}: expected cpu or cuda"),
    }
}
