//! The embedder seam: what every other crate sees of a model.
//!
//! Owns the object-safe [`Embedder`] trait, the persisted model identity [`EmbedderSpec`] and the
//! unit-length [`Embedding`]. It knows nothing of CLIP internals; see [`crate::clip`] for that.

use serde::{Deserialize, Serialize};

use crate::EmbedError;

/// Identity of a loaded model, persisted beside a library so it can refuse to mix models.
///
/// Two specs describe the same vector space only when every field is equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbedderSpec {
    /// Where the model came from: a hub repo id (`openai/clip-vit-base-patch32`) or a local folder.
    pub model_id: String,
    /// Hub revision when known, otherwise `sha256:<hex>` of the weights file.
    pub revision: String,
    /// Length of every embedding (the CLIP projection dimension).
    pub dim: usize,
    /// Side of the square image the vision tower sees.
    pub image_size: usize,
    /// The number format the network computed in. Absent in specs written before precisions
    /// existed, which were all f32.
    #[serde(default)]
    pub precision: Precision,
}

impl EmbedderSpec {
    /// A short stable fingerprint of the vector space (dimension + weights + precision), for
    /// comparisons: `512@sha256:...` for f32 (as before precisions existed, so older libraries
    /// keep their fingerprint), `512@sha256:...+bf16` otherwise.
    ///
    /// The model id is left out on purpose: the same weights loaded from the hub cache or from
    /// a copied folder produce the same vectors. The precision is in: vectors of the same
    /// weights computed in bf16 are near those computed in f32 (cosine >= 0.995 on the parity
    /// fixture) but not equal, and a library does not mix them without saying so.
    pub fn fingerprint(&self) -> String {
        match self.precision {
            Precision::F32 => format!("{}@{}", self.dim, self.revision),
            p => format!("{}@{}+{p}", self.dim, self.revision),
        }
    }
}

/// The embedder identity shown in reports, errors and `info`:
/// `model_id (revision, dim N, precision)`.
impl std::fmt::Display for EmbedderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, dim {}, {})",
            self.model_id, self.revision, self.dim, self.precision
        )
    }
}

/// The number format of a model's weights, and on a GPU of its arithmetic. Weights stored in
/// another format are converted once at load; pixel values and token ids enter in f32 / u32
/// and embeddings leave in f32 whatever the precision. On a GPU f16 / bf16 weights and
/// activations are computed in that format (tensor cores). On a CPU, where candle has no fast
/// half-precision kernels, the weights are rounded to it and computed in f32
/// ([`Precision::compute_dtype`]), so a reduced precision costs a CPU nothing and its vectors
/// agree with f32 at least as well as the GPU's; short inputs (a text) read the rounded
/// weights in their half-size format. On a CPU with bf16 dot products
/// ([`crate::cpu_has_bf16_dots`]) bf16's linear maps also round their inputs to bf16 and run
/// on those instructions (sums in f32), at twice f32's multiply-adds per instruction.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats: the reference (parity with transformers within 1e-4).
    #[default]
    F32,
    /// IEEE half precision: on a GPU about 2.4x f32's image throughput (H200, batch 32).
    F16,
    /// bfloat16: f32's range with 8 bits of mantissa; for GPUs and CPUs with bf16 units.
    Bf16,
}

impl Precision {
    /// Every precision, f32 first.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    /// The precision a library gets when it records none and none is asked for, the fastest
    /// that keeps the agreement with f32 (least cosine 0.995, top-10 overlap 0.95): f16 on a
    /// CUDA GPU (as fast as bf16 at the ingest's batch sizes on an H200, 2.4x f32, and closer
    /// to f32: top-10 overlap 0.998 against bf16's 0.987 on 1,000 images; benches/README.md);
    /// bf16 on a CPU with bf16 dot products ([`crate::cpu_has_bf16_dots`]: 1.5x f32's images/s
    /// and 0.5x its text latency on a Zen 4; least cosine to f32 0.99997, top-10 overlap 0.993
    /// on 1,000 images through ViT-B/32's shapes); f32 on other CPUs, where a reduced precision
    /// only rounds the weights ([`Precision::compute_dtype`]).
    pub fn default_for(device: candle::DeviceLocation) -> Precision {
        match device {
            candle::DeviceLocation::Cuda { .. } => Precision::F16,
            _ if crate::cpu_has_bf16_dots() => Precision::Bf16,
            _ => Precision::F32,
        }
    }

    /// The dtype a model in this precision computes in on `device`: [`Precision::dtype`] on a
    /// GPU; f32 on a CPU, with the weights rounded to [`Precision::dtype`] first (where the CPU
    /// has bf16 dot products, bf16's linear maps also round their inputs: see [`Precision`]).
    pub fn compute_dtype(self, device: &candle::Device) -> candle::DType {
        if device.is_cpu() {
            candle::DType::F32
        } else {
            self.dtype()
        }
    }

    /// The dtype the weights hold (their values; see [`Precision::compute_dtype`]).
    pub fn dtype(self) -> candle::DType {
        match self {
            Precision::F32 => candle::DType::F32,
            Precision::F16 => candle::DType::F16,
            Precision::Bf16 => candle::DType::BF16,
        }
    }

    /// The name used in settings, flags and fingerprints.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown precision {s:?}: f32, f16 or bf16"))
    }
}

/// A unit-length (L2 norm 1) f32 vector. Constructed only through [`Embedding::normalized`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Normalises `v` to unit length. A zero (or non-finite) vector stays as given, since it has
    /// no direction; callers can detect it with [`Embedding::is_unit`].
    pub fn normalized(mut v: Vec<f32>) -> Self {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm.is_finite() && norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        Self(v)
    }

    /// Whether the vector has norm 1 (within 1e-3).
    pub fn is_unit(&self) -> bool {
        let norm = self.0.iter().map(|x| x * x).sum::<f32>().sqrt();
        (norm - 1.0).abs() < 1e-3
    }

    /// The components.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Takes the components out.
    pub fn into_vec(self) -> Vec<f32> {
        self.0
    }

    /// Cosine similarity with another unit vector (their dot product).
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum()
    }
}

/// Maps images and texts into one unit-length vector space.
///
/// Blocking and compute-bound: call it from `spawn_blocking` or a rayon pool, never directly on
/// an async runtime thread. Object-safe on purpose so services can hold `Arc<dyn Embedder>`.
pub trait Embedder: Send + Sync {
    /// The identity of the model behind this embedder.
    fn spec(&self) -> &EmbedderSpec;

    /// Why this model's vectors carry no meaning, when its own files say so (a model whose
    /// weights are seeded random numbers, as `imagelens demo` writes when no real CLIP is
    /// reachable); `None` for a trained model. Searches then keep its text vectors out of the
    /// ranking. Nothing is measured here: a trained model is taken at its word.
    fn untrained(&self) -> Option<&str> {
        None
    }

    /// Embeds decoded RGB images of any size (each is resized and cropped as the model expects).
    ///
    /// # Errors
    /// [`EmbedError`] when the forward pass fails.
    fn embed_images(&self, batch: &[image::RgbImage]) -> Result<Vec<Embedding>, EmbedError>;

    /// Embeds texts; each is tokenised and truncated to the model's maximum length.
    ///
    /// # Errors
    /// [`EmbedError`] when tokenisation or the forward pass fails.
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_precision_is_f16_on_a_gpu_bf16_on_a_cpu_with_bf16_dots_and_f32_elsewhere() {
        assert_eq!(
            Precision::default_for(candle::DeviceLocation::Cuda { gpu_id: 0 }),
            Precision::F16
        );
        assert_eq!(
            Precision::default_for(candle::DeviceLocation::Cpu),
            if crate::cpu_has_bf16_dots() {
                Precision::Bf16
            } else {
                Precision::F32
            }
        );
        for p in Precision::ALL {
            assert_eq!(p.compute_dtype(&candle::Device::Cpu), candle::DType::F32);
        }
    }

    #[test]
    fn a_spec_displays_as_id_revision_dim_and_precision() {
        let spec = EmbedderSpec {
            model_id: "openai/clip-vit-base-patch32".into(),
            revision: "abc".into(),
            dim: 512,
            image_size: 224,
            precision: Precision::Bf16,
        };
        assert_eq!(
            spec.to_string(),
            "openai/clip-vit-base-patch32 (abc, dim 512, bf16)"
        );
    }

    #[test]
    fn a_spec_written_before_precisions_reads_as_f32_with_its_old_fingerprint() {
        let old = r#"{"model_id":"m","revision":"sha256:ab","dim":512,"image_size":224}"#;
        let spec: EmbedderSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec.precision, Precision::F32);
        assert_eq!(spec.fingerprint(), "512@sha256:ab");
        let bf16 = EmbedderSpec {
            precision: Precision::Bf16,
            ..spec.clone()
        };
        assert_eq!(bf16.fingerprint(), "512@sha256:ab+bf16");
        let back: EmbedderSpec =
            serde_json::from_str(&serde_json::to_string(&bf16).unwrap()).unwrap();
        assert_eq!(back, bf16);
        assert!(
            serde_json::to_string(&bf16)
                .unwrap()
                .contains(r#""precision":"bf16""#)
        );
    }

    #[test]
    fn precisions_parse_by_name() {
        for p in Precision::ALL {
            assert_eq!(p.as_str().parse::<Precision>().unwrap(), p);
            assert_eq!(p.as_str().to_uppercase().parse::<Precision>().unwrap(), p);
        }
        let err = "int8".parse::<Precision>().unwrap_err();
        assert!(err.contains("f32, f16 or bf16"), "{err}");
    }
}
