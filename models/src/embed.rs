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
}

impl EmbedderSpec {
    /// A short stable fingerprint of the vector space (dimension + weights), for comparisons.
    ///
    /// The model id is left out on purpose: the same weights loaded from the hub cache or from
    /// a copied folder produce the same vectors.
    pub fn fingerprint(&self) -> String {
        format!("{}@{}", self.dim, self.revision)
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
