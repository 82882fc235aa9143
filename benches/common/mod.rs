//! What the query and HTTP benches share: a stand-in model that costs nothing, so the figures
//! are those of the search service and not of CLIP (the embed bench times the model).

use models::{EmbedError, Embedder, EmbedderSpec, Embedding};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Dimension of the generated vectors (ViT-B/32's projection).
pub const DIM: usize = 512;

/// Returns a seeded random unit vector per text: the cost of search without the model's.
pub struct FixedEmbedder(pub EmbedderSpec);

/// A random unit vector of [`DIM`] dimensions.
pub fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Embedding::normalized(v).into_vec()
}

impl Embedder for FixedEmbedder {
    fn spec(&self) -> &EmbedderSpec {
        &self.0
    }
    fn embed_images(&self, batch: &[image::RgbImage]) -> Result<Vec<Embedding>, EmbedError> {
        let mut rng = StdRng::seed_from_u64(batch.len() as u64);
        Ok(batch
            .iter()
            .map(|_| Embedding::normalized(random_unit(&mut rng)))
            .collect())
    }
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(texts
            .iter()
            .map(|t| {
                let seed = t
                    .bytes()
                    .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
                Embedding::normalized(random_unit(&mut StdRng::seed_from_u64(seed)))
            })
            .collect())
    }
}
