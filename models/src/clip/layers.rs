//! The layers CLIP's towers are built from: named, shape-checked weights, linear maps (with a
//! fused bias + activation kernel), layer norms and the activations `config.json` names.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle::{DType, Device, Tensor};
use candle_nn::LayerNorm;

use super::config::Activation;
use super::simd::PackedBf16;
use crate::{EmbedError, Precision};

/// The tensors of a safetensors file, looked up by name with shape checks.
pub(crate) struct Weights {
    tensors: HashMap<String, Tensor>,
    dtype: DType,
    /// A format every weight is rounded to before it is handed out as `dtype` (a reduced
    /// precision computed in f32 on the CPU), if any.
    round: Option<DType>,
}

impl Weights {
    /// Parses a safetensors buffer onto `device`; [`Weights::get`] hands tensors out in
    /// `precision`'s compute dtype on that device, their values rounded to `precision` first
    /// where the two differ ([`Precision::compute_dtype`]).
    pub(crate) fn from_buffer(
        bytes: &[u8],
        path: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, EmbedError> {
        let tensors =
            candle::safetensors::load_buffer(bytes, device).map_err(|e| EmbedError::Weights {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let dtype = precision.compute_dtype(device);
        Ok(Self {
            tensors,
            dtype,
            round: Some(precision.dtype()).filter(|r| *r != dtype),
        })
    }

    /// The dtype the weights' values are held in: the compute dtype, or the reduced precision
    /// they are rounded to (f16 / bf16 on a CPU), which [`Layout::View`]'s small-rows copy keeps.
    pub(super) fn value_dtype(&self) -> DType {
        self.round.unwrap_or(self.dtype)
    }

    /// The tensor `name` in the compute dtype, checked to have `shape`.
    pub(super) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, EmbedError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| EmbedError::MissingTensor { name: name.into() })?;
        if t.dims() != shape {
            return Err(EmbedError::TensorShape {
                name: name.into(),
                expected: shape.to_vec(),
                got: t.dims().to_vec(),
            });
        }
        if !matches!(
            t.dtype(),
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            return Err(EmbedError::Weights {
                path: name.into(),
                reason: format!(
                    "tensor {name:?} has dtype {:?}, expected a float type",
                    t.dtype()
                ),
            });
        }
        Ok(match self.round {
            Some(r) => t.to_dtype(r)?.to_dtype(self.dtype)?,
            None => t.to_dtype(self.dtype)?,
        })
    }
}

/// How a tower's weight matrices are laid out for gemm. Measured on a 2-core AVX2 machine
/// (candle 0.11 / gemm 0.19): with many rows (a batch of images, 1600 x 768 x 3072) a
/// contiguous `(in, out)` matrix is ~20% faster than the transposed view of `(out, in)`; with
/// few rows (a text, one image) the view is ~40% faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// `W^T` copied to a contiguous `(in, out)` matrix: for batched image inputs. With
    /// `bf16_dots`, on a CPU that has them ([`super::simd::bf16_dots_available`]), the weights
    /// are packed for [`super::simd::gemm_bf16`] instead, which then computes every product:
    /// inputs rounded to bf16 like the weights, summed in f32, twice f32's multiply-adds per
    /// instruction (benches/README.md, session 25).
    Transposed { bf16_dots: bool },
    /// `W^T` as a view of the stored `(out, in)` matrix: for short inputs. On the CPU, inputs of
    /// a few rows take [`SmallRows`], which reads the stored matrix in `small_rows`: f32 (the
    /// same storage as the view), or f16 / bf16 when the weights' values are rounded to one
    /// ([`Weights::value_dtype`]), a copy of half the bytes with the same values. With bf16 on
    /// a CPU that has bf16 dot products, every product takes [`super::simd::gemm_bf16`]
    /// instead (as [`Layout::Transposed`] with `bf16_dots`): a text of 10 tokens in 0.7x the
    /// time of the small-rows kernel, 77 tokens in 0.35x (benches/README.md, session 25).
    View { small_rows: DType },
}

/// `y = x W^T + b` on 2-D inputs.
#[derive(Debug, Clone)]
pub(super) struct Linear {
    /// The weights, as the kernel that computes the products needs them.
    w: Kernel,
    /// `(out,)`.
    b: Option<Tensor>,
}

/// A linear map's weights and the kernel they are for.
#[derive(Debug, Clone)]
enum Kernel {
    /// candle's gemm, and [`SmallRows`] for few rows on the CPU.
    Gemm {
        /// `(in, out)`: contiguous or a transposed view (see [`Layout`]).
        w_t: Tensor,
        /// The stored `(out, in)` matrix, contiguous on the CPU, for [`SmallRows`]
        /// ([`Layout::View`] only).
        small: Option<Tensor>,
    },
    /// [`super::simd::gemm_bf16`] for every product ([`Layout::Transposed`] with `bf16_dots`,
    /// or a bf16 [`Layout::View`], on a CPU that has the instructions): the packed weights
    /// are the only copy kept.
    Bf16Dots(Arc<PackedBf16>),
}

impl Linear {
    pub(super) fn new(w: Tensor, b: Option<Tensor>, layout: Layout) -> Result<Self, EmbedError> {
        let w = w.contiguous()?;
        let kernel = match layout {
            Layout::Transposed { bf16_dots: true }
            | Layout::View {
                small_rows: DType::BF16,
            } if w.device().is_cpu() && super::simd::bf16_dots_available() => {
                let (n, k) = w.dims2()?;
                let values = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                Kernel::Bf16Dots(Arc::new(PackedBf16::new(&values, n, k)))
            }
            Layout::Transposed { .. } => Kernel::Gemm {
                w_t: w.t()?.contiguous()?,
                small: None,
            },
            Layout::View { small_rows } => {
                let small = match small_rows {
                    _ if !w.device().is_cpu() => None,
                    DType::F16 | DType::BF16 => Some(w.to_dtype(small_rows)?),
                    _ if w.dtype() == DType::F32 => Some(w.clone()),
                    _ => None,
                };
                Kernel::Gemm { w_t: w.t()?, small }
            }
        };
        Ok(Self { w: kernel, b })
    }

    pub(super) fn load(
        ws: &Weights,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        layout: Layout,
    ) -> Result<Self, EmbedError> {
        let w = ws.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
        let b = if bias {
            Some(ws.get(&format!("{prefix}.bias"), &[out_dim])?)
        } else {
            None
        };
        Self::new(w, b, layout)
    }

    /// `x`: `(n, in)` -> `(n, out)`.
    pub(super) fn forward(&self, x: &Tensor) -> candle::Result<Tensor> {
        self.forward_act(x, None)
    }

    /// `act(x W^T + b)`; on CPU the bias and activation are one multi-threaded pass over the
    /// matmul output instead of up to four single-threaded ones.
    pub(super) fn forward_act(
        &self,
        x: &Tensor,
        act: Option<Activation>,
    ) -> candle::Result<Tensor> {
        let y = match (&self.w, self.small_for(x)) {
            (Kernel::Bf16Dots(w), _) => x.contiguous()?.apply_op1_no_bwd(&Bf16Dots(w.clone()))?,
            (Kernel::Gemm { .. }, Some(w)) => x.apply_op2_no_bwd(w, &SmallRows)?,
            (Kernel::Gemm { w_t, .. }, None) => x.matmul(w_t)?,
        };
        let fusable = matches!(act, None | Some(Activation::QuickGelu));
        match &self.b {
            Some(b) if fusable && y.device().is_cpu() && y.dtype() == DType::F32 => y
                .apply_op2_no_bwd(
                    b,
                    &BiasAct {
                        quick_gelu: act.is_some(),
                    },
                ),
            Some(b) => match act {
                Some(act) => activate(act, &y.broadcast_add(b)?),
                None => y.broadcast_add(b),
            },
            None => match act {
                Some(act) => activate(act, &y),
                None => Ok(y),
            },
        }
    }
}

/// Inputs of at most this many rows (a text of up to CLIP's 77 tokens, a pooled row per image)
/// take [`SmallRows`] instead of gemm. A 77-token text through it took 0.6x gemm's time
/// (benches/README.md, session 25), so one text never reaches gemm; a batch of texts (an
/// ingest's captions) does.
const SMALL_ROWS: usize = 80;

impl Linear {
    /// The stored `(out, in)` matrix when `x` should take [`SmallRows`]: a [`Layout::View`]
    /// weight on the CPU and an f32 input of at most [`SMALL_ROWS`] contiguous rows.
    fn small_for(&self, x: &Tensor) -> Option<&Tensor> {
        let few = x.dtype() == DType::F32
            && x.rank() == 2
            && x.dims()[0] <= SMALL_ROWS
            && x.is_contiguous();
        match &self.w {
            Kernel::Gemm { small, .. } => small.as_ref().filter(|_| few && x.device().is_cpu()),
            Kernel::Bf16Dots(_) => None,
        }
    }

    /// Whether the products run on bf16 dot products.
    #[cfg(test)]
    fn packed(&self) -> bool {
        matches!(self.w, Kernel::Bf16Dots(_))
    }
}

/// CPU kernel for `x W^T` when `x` has few rows: each weight row is read once and dotted with
/// every row of `x` (which stays in cache), instead of gemm packing the whole weight matrix
/// for a handful of rows. The weights may be f32, f16 or bf16 (widened as they are read,
/// [`super::simd::Weight`]); `x` and the output are f32. Measured in benches/README.md (one
/// text of 10 tokens).
struct SmallRows;

impl candle::CustomOp2 for SmallRows {
    fn name(&self) -> &'static str {
        "small-rows-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &candle::CpuStorage,
        l1: &candle::Layout,
        s2: &candle::CpuStorage,
        l2: &candle::Layout,
    ) -> candle::Result<(candle::CpuStorage, candle::Shape)> {
        use candle::backend::BackendStorage;
        let x = slice::<f32>(s1, l1, self.name())?;
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle::bail!("small-rows matmul: ({m}, {k}) x ({n}, {k2})^T")
        }
        let name = self.name();
        let out = match s2.dtype() {
            DType::F32 => small_rows(x, slice::<f32>(s2, l2, name)?, m, n, k),
            DType::F16 => small_rows(x, slice::<half::f16>(s2, l2, name)?, m, n, k),
            DType::BF16 => small_rows(x, slice::<half::bf16>(s2, l2, name)?, m, n, k),
            other => candle::bail!("small-rows matmul: weights of {other:?}"),
        };
        Ok((candle::CpuStorage::F32(out), (m, n).into()))
    }
}

/// `x W^T` of `x` `(m, k)` and the stored `w` `(n, k)`, row-major `(m, n)`.
fn small_rows<W: super::simd::Weight>(
    x: &[f32],
    w: &[W],
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return out;
    }
    let level = super::simd::level();
    // 64 weight rows a task: enough tasks to balance two or more threads, each task's
    // output a (rows x m) block written back below.
    const BLOCK: usize = 64;
    let blocks: Vec<Vec<f32>> = w
        .par_chunks(BLOCK * k)
        .map(|rows| {
            let mut part = vec![0f32; rows.len() / k * m];
            super::simd::dots(x, rows, k, &mut part, level);
            part
        })
        .collect();
    for (b, part) in blocks.iter().enumerate() {
        for (jj, column) in part.chunks_exact(m).enumerate() {
            for (i, v) in column.iter().enumerate() {
                out[i * n + b * BLOCK + jj] = *v;
            }
        }
    }
    out
}

/// CPU kernel for `x W^T` with bf16 dot products ([`super::simd::gemm_bf16`]): `x` f32
/// `(m, in)`, rounded to bf16 as it is read; the output f32 `(m, out)`.
struct Bf16Dots(Arc<PackedBf16>);

impl candle::CustomOp1 for Bf16Dots {
    fn name(&self) -> &'static str {
        "bf16-dots-matmul"
    }

    fn cpu_fwd(
        &self,
        s: &candle::CpuStorage,
        l: &candle::Layout,
    ) -> candle::Result<(candle::CpuStorage, candle::Shape)> {
        let x = slice::<f32>(s, l, self.name())?;
        let (m, k) = l.shape().dims2()?;
        let (n, k2) = (self.0.n(), self.0.k());
        if k != k2 {
            candle::bail!("bf16-dots matmul: ({m}, {k}) x ({n}, {k2})^T")
        }
        let mut out = vec![0f32; m * n];
        super::simd::gemm_bf16(x, m, &self.0, &mut out);
        Ok((candle::CpuStorage::F32(out), (m, n).into()))
    }
}

/// The values of a contiguous CPU tensor of `T`, for the custom ops here.
fn slice<'a, T: candle::WithDType>(
    s: &'a candle::CpuStorage,
    l: &candle::Layout,
    op: &str,
) -> candle::Result<&'a [T]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle::bail!("{op} needs contiguous inputs")
    };
    Ok(&s.as_slice::<T>()?[start..end])
}

/// CPU kernel for `x + bias` (row-wise) optionally followed by quick_gelu, on f32.
struct BiasAct {
    quick_gelu: bool,
}

impl candle::CustomOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &candle::CpuStorage,
        l1: &candle::Layout,
        s2: &candle::CpuStorage,
        l2: &candle::Layout,
    ) -> candle::Result<(candle::CpuStorage, candle::Shape)> {
        use rayon::prelude::*;
        let x = slice::<f32>(s1, l1, self.name())?;
        let bias = slice::<f32>(s2, l2, self.name())?;
        let n = bias.len();
        if n == 0 || x.len() % n != 0 || l1.dims().last() != Some(&n) {
            candle::bail!("bias-act: bias of {n} does not match input {:?}", l1.dims())
        }
        let mut out = vec![0f32; x.len()];
        // ~16k elements per task: enough work to amortise rayon, enough tasks to balance.
        let rows = (16_384 / n).max(1);
        out.par_chunks_mut(rows * n)
            .zip(x.par_chunks(rows * n))
            .for_each(|(o, x)| {
                for (o, x) in o.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
                    if self.quick_gelu {
                        for ((o, &x), &b) in o.iter_mut().zip(x).zip(bias) {
                            *o = quick_gelu(x + b);
                        }
                    } else {
                        for ((o, &x), &b) in o.iter_mut().zip(x).zip(bias) {
                            *o = x + b;
                        }
                    }
                }
            });
        Ok((candle::CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `v * sigmoid(1.702 v)`, CLIP's activation, with [`exp`] (which the compiler vectorises).
fn quick_gelu(v: f32) -> f32 {
    v / (1.0 + exp(-1.702 * v))
}

/// `e^x` to within 2 units in the last place (checked against std's in the tests), written
/// without branches or calls so that a loop of it vectorises (std's `exp` is a call per value:
/// 8 % of an image batch's time in bf16 went to it). `x` is clamped to `[-87, 88]`, where the
/// result is a normal f32; CLIP's activation needs no more.
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts: the first has few enough bits that `n * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer in the low bits of the mantissa.
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    // Plain products and sums, not `mul_add`: without FMA in the build's target that is a
    // call per value.
    let t = x * LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // e^r on |r| <= ln2 / 2: Taylor to degree 7 (error below 2^-26 relative).
    let mut p: f32 = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // 2^n from its exponent bits: n is the integer in t's low mantissa bits.
    let n = (t.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    p * f32::from_bits(((n + 127) << 23) as u32)
}

pub(super) fn layer_norm(
    ws: &Weights,
    prefix: &str,
    dim: usize,
    eps: f64,
) -> Result<LayerNorm, EmbedError> {
    Ok(LayerNorm::new(
        ws.get(&format!("{prefix}.weight"), &[dim])?,
        ws.get(&format!("{prefix}.bias"), &[dim])?,
        eps,
    ))
}

fn activate(act: Activation, x: &Tensor) -> candle::Result<Tensor> {
    match act {
        Activation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702f64)?)?,
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluNew => x.gelu(),
        Activation::Relu => x.relu(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reduced precision on the CPU: weights handed out in f32 holding exactly the values the
    /// reduced format can represent (what the GPU computes with), not the file's f32 values.
    #[test]
    fn weights_rounded_to_a_reduced_precision_are_handed_out_in_f32() {
        let dev = Device::Cpu;
        let t = Tensor::new(&[[1.0f32 + 1e-4, 2.71, -2.0e-3, 65504.0]], &dev).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.safetensors");
        candle::safetensors::save(&HashMap::from([("w".to_owned(), t.clone())]), &file).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        let plain = Weights::from_buffer(&bytes, Path::new("w"), &dev, Precision::F32).unwrap();
        assert_eq!(
            plain.get("w", &[1, 4]).unwrap().to_vec2::<f32>().unwrap(),
            t.to_vec2::<f32>().unwrap()
        );
        for precision in [Precision::F16, Precision::Bf16] {
            let ws = Weights::from_buffer(&bytes, Path::new("w"), &dev, precision).unwrap();
            let got = ws.get("w", &[1, 4]).unwrap();
            assert_eq!(got.dtype(), DType::F32);
            let want = t
                .to_dtype(precision.dtype())
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            assert_eq!(
                got.to_vec2::<f32>().unwrap(),
                want.to_vec2::<f32>().unwrap()
            );
            assert_ne!(got.to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
        }
    }

    /// [`exp`] against std's over CLIP's range and beyond, and [`quick_gelu`] against its
    /// definition.
    #[test]
    fn the_vectorisable_exp_is_within_two_units_in_the_last_place() {
        let mut worst = 0f32;
        for i in -870_000..=880_000 {
            let x = i as f32 / 10_000.0;
            let (got, want) = (exp(x), x.exp());
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 2, "exp({x}) = {got}, std {want}");
            let v = x / 4.0;
            let gelu = v / (1.0 + (-1.702 * v).exp());
            worst = worst.max((quick_gelu(v) - gelu).abs() / gelu.abs().max(1e-30));
        }
        assert!(worst < 1e-6, "quick_gelu: relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), (-87f32).exp());
        assert!(exp(1000.0).is_finite());
    }

    /// Linear maps of 1 to 90 rows (either side of [`SMALL_ROWS`]), odd and even sizes: the
    /// small-rows kernel gives gemm's answer to rounding, with and without bias and activation,
    /// with its weights held in f32, f16 or bf16 (against gemm on the same rounded values).
    #[test]
    fn small_rows_matmul_matches_gemm() {
        let dev = Device::Cpu;
        for (rows, inp, out) in [
            (1, 7, 5),
            (3, 64, 130),
            (10, 512, 1536),
            (32, 96, 33),
            (40, 48, 65),
            (77, 64, 70),
            (90, 48, 65),
        ] {
            let x = Tensor::randn(0f32, 1.0, (rows, inp), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (out, inp), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, out, &dev).unwrap();
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                // The values a reduced precision holds, as `Weights::get` hands them out.
                let w = w.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
                let reference = x.matmul(&w.t().unwrap()).unwrap();
                if rows <= SMALL_ROWS {
                    let stored = w.to_dtype(dtype).unwrap();
                    let small = x.apply_op2_no_bwd(&stored, &SmallRows).unwrap();
                    let d = (small - &reference)
                        .unwrap()
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap();
                    assert!(
                        d.to_scalar::<f32>().unwrap() < 1e-3,
                        "{dtype:?} {rows}x{inp}x{out}: {d}"
                    );
                }
                let view = Linear::new(
                    w.clone(),
                    Some(b.clone()),
                    Layout::View { small_rows: dtype },
                )
                .unwrap();
                let dots = super::super::simd::bf16_dots_available();
                let small = view.small_for(&x);
                if dots && dtype == DType::BF16 {
                    assert!(small.is_none() && view.packed());
                } else {
                    assert_eq!(small.is_some(), rows <= SMALL_ROWS);
                    assert_eq!(small.map(|t| t.dtype()).unwrap_or(dtype), dtype);
                }
                let transposed = Linear::new(
                    w.clone(),
                    Some(b.clone()),
                    Layout::Transposed { bf16_dots: false },
                )
                .unwrap();
                assert!(transposed.small_for(&x).is_none());
                // With bf16 dot products ([`Bf16Dots`], taken by a bf16 view where the CPU has
                // them, and by a transposed map that asks for them) the inputs are rounded to
                // bf16 too: the reference is gemm on the rounded inputs.
                let packed =
                    Linear::new(w, Some(b.clone()), Layout::Transposed { bf16_dots: true })
                        .unwrap();
                assert_eq!(packed.packed(), dots);
                assert_eq!(view.packed(), dots && dtype == DType::BF16);
                let rounded = x
                    .to_dtype(DType::BF16)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap();
                for act in [None, Some(Activation::QuickGelu), Some(Activation::Gelu)] {
                    let reference = |packed: bool| {
                        let x = if packed { &rounded } else { &x };
                        transposed.forward_act(x, act).unwrap()
                    };
                    // (A packed map's weights are the bf16 values only when they were rounded
                    // to bf16 first, as `Weights::get` hands them out in bf16.)
                    let maps = if dtype == DType::BF16 {
                        vec![("view", &view), ("packed", &packed)]
                    } else {
                        vec![("view", &view)]
                    };
                    for (name, map) in maps {
                        let a = map.forward_act(&x, act).unwrap();
                        let c = reference(map.packed());
                        let d = (a - c).unwrap().abs().unwrap().max_all().unwrap();
                        assert!(
                            d.to_scalar::<f32>().unwrap() < 1e-3,
                            "{name} {dtype:?} {rows} rows, {act:?}: {d}"
                        );
                    }
                }
            }
        }
    }
}
