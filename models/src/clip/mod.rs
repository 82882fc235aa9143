//! [`ClipEmbedder`]: a Hugging Face CLIP folder loaded onto candle, behind [`Embedder`].
//!
//! Owns the loading of the four files of the HF layout (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `preprocessor_config.json`), tokenisation, batching, and turning network
//! outputs into unit-length [`Embedding`]s. The network itself is in [`model`](self) (private),
//! the pixel pipeline in [`crate::preprocess`], where a model comes from in
//! [`crate::ModelSource`].
//!
//! Invariants: every embedding has `spec().dim` components and unit norm; texts run at their
//! real token length (never padded), truncated to the model's positions with the end token kept
//! last.

pub mod config;
mod layers;
mod model;
// The crate's only unsafe code: the small-rows SIMD kernels, tested against their safe twin.
#[allow(unsafe_code)]
mod simd;

use std::collections::BTreeMap;
use std::path::Path;

use candle::{Device, Tensor};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

pub use config::{Activation, ClipConfig, ClipTextConfig, ClipVisionConfig, RandomWeights};

use crate::preprocess::{self, PreprocessConfig};
use crate::{EmbedError, Embedder, EmbedderSpec, Embedding, ModelSource, Precision};

/// File names of the Hugging Face layout.
pub const CONFIG_FILE: &str = "config.json";
/// See [`CONFIG_FILE`].
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// See [`CONFIG_FILE`].
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// See [`CONFIG_FILE`]. Optional: CLIP's defaults for the model's image size are used without it.
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

/// Largest number of images run through the network at once; bigger batches are split.
/// Past ~32 images throughput no longer grows on CPU, memory does.
const MAX_IMAGE_BATCH: usize = 64;

/// Reads a text file of the model folder, telling a missing file from an unreadable one.
pub(crate) fn read_to_string(path: &Path) -> Result<String, EmbedError> {
    std::fs::read_to_string(path).map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, e: std::io::Error) -> EmbedError {
    if e.kind() == std::io::ErrorKind::NotFound {
        EmbedError::MissingFile {
            path: path.to_path_buf(),
        }
    } else {
        EmbedError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// A CLIP model (vision and text towers) ready to embed images and texts into one space.
pub struct ClipEmbedder {
    spec: EmbedderSpec,
    untrained: Option<String>,
    config: ClipConfig,
    preprocess: PreprocessConfig,
    model: model::ClipModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for ClipEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipEmbedder")
            .field("spec", &self.spec)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl ClipEmbedder {
    /// Loads a model from a local folder or the hub (cache first; see [`ModelSource::resolve`]).
    /// The spec's `model_id` is the hub repo id, or the folder path.
    ///
    /// # Errors
    /// As [`ModelSource::resolve`] and [`ClipEmbedder::load_dir`].
    pub fn load(source: &ModelSource, device: &Device) -> Result<Self, EmbedError> {
        Self::load_as(source, device, Precision::F32)
    }

    /// As [`ClipEmbedder::load`], in `precision` (recorded in the spec, so a library tells
    /// vectors of two precisions apart; on a CPU computed in f32 on rounded weights, see
    /// [`Precision::compute_dtype`]).
    ///
    /// # Errors
    /// As [`ClipEmbedder::load`].
    pub fn load_as(
        source: &ModelSource,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, EmbedError> {
        let dir = source.resolve()?;
        Self::load_named(&dir, source.model_id(), device, precision)
    }

    /// Loads a model from a folder in the Hugging Face layout: `config.json`,
    /// `model.safetensors` (f32, f16 or bf16; computed in f32, see
    /// [`ClipEmbedder::load_dir_as`] for other precisions), `tokenizer.json`, and optionally
    /// `preprocessor_config.json`.
    ///
    /// # Errors
    /// [`EmbedError::MissingFile`] for a missing folder or file, [`EmbedError::Config`] for an
    /// ill-formed config, [`EmbedError::Weights`], [`EmbedError::MissingTensor`] or
    /// [`EmbedError::TensorShape`] for weights that do not fit the config,
    /// [`EmbedError::Tokenizer`] for a bad tokenizer.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self, EmbedError> {
        Self::load_dir_as(dir, device, Precision::F32)
    }

    /// As [`ClipEmbedder::load_dir`], in `precision`: the weights are converted once at load,
    /// whatever format the file stores (on a CPU to f32 holding values rounded to `precision`,
    /// see [`Precision::compute_dtype`]).
    ///
    /// # Errors
    /// As [`ClipEmbedder::load_dir`].
    pub fn load_dir_as(
        dir: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, EmbedError> {
        Self::load_named(dir, dir.display().to_string(), device, precision)
    }

    fn load_named(
        dir: &Path,
        model_id: String,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, EmbedError> {
        if !dir.is_dir() {
            return Err(EmbedError::MissingFile {
                path: dir.to_path_buf(),
            });
        }
        let config = ClipConfig::from_file(&dir.join(CONFIG_FILE))?;
        let image_size = config.vision_config.image_size;

        let pre_path = dir.join(PREPROCESSOR_FILE);
        let preprocess = match std::fs::read_to_string(&pre_path) {
            Ok(text) => PreprocessConfig::from_json(&text, &pre_path, image_size as u32)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %pre_path.display(), "no preprocessor config, using CLIP defaults");
                PreprocessConfig::clip_default(image_size as u32)
            }
            Err(e) => return Err(io_error(&pre_path, e)),
        };
        // Images of any aspect ratio must come out at the vision tower's size: a centre crop of
        // that size, or an exact resize to it without a crop.
        let side = image_size as u32;
        let fits = match (preprocess.crop, preprocess.resize) {
            (Some(crop), _) => crop == (side, side),
            (None, Some(preprocess::Resize::Exact { height, width })) => {
                (height, width) == (side, side)
            }
            (None, _) => false,
        };
        if !fits {
            return Err(EmbedError::Config {
                path: pre_path,
                reason: format!(
                    "preprocessing does not produce the {side}x{side} images the vision tower takes"
                ),
            });
        }

        let tok_path = dir.join(TOKENIZER_FILE);
        if !tok_path.is_file() {
            return Err(EmbedError::MissingFile { path: tok_path });
        }
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| EmbedError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.text_config.max_position_embeddings,
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;

        let weights_path = dir.join(WEIGHTS_FILE);
        // Read once: the bytes are both hashed (the model's identity) and parsed. Reading rather
        // than mapping keeps this crate free of `unsafe`.
        let bytes = std::fs::read(&weights_path).map_err(|e| io_error(&weights_path, e))?;
        let revision = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let weights = layers::Weights::from_buffer(&bytes, &weights_path, device, precision)?;
        drop(bytes);
        let model = model::ClipModel::load(&weights, &config)?;

        let spec = EmbedderSpec {
            model_id,
            revision,
            dim: config.projection_dim,
            image_size,
            precision,
        };
        tracing::info!(model = %spec.model_id, revision = %spec.revision, dim = spec.dim, %precision, "loaded CLIP model");
        let untrained = config.random_weights.as_ref().map(|r| {
            format!(
                "its config.json says its weights are seeded random numbers (seed {}) written by \
                 imagelens for demos and tests, not a trained CLIP",
                r.seed
            )
        });
        Ok(Self {
            spec,
            untrained,
            config,
            preprocess,
            model,
            tokenizer,
            device: device.clone(),
        })
    }

    /// The parsed `config.json`.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The parsed `preprocessor_config.json`.
    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token ids of `text` as the model sees them: start token, text, end token, truncated to
    /// `max_position_embeddings` with the end token kept last.
    ///
    /// # Errors
    /// [`EmbedError::Tokenizer`] when the tokenizer fails.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        let max = self.config.text_config.max_position_embeddings;
        if ids.len() > max {
            // A tokenizer.json without a post-processor that knows its special tokens could
            // overshoot; keep the end token last as CLIP pools there.
            let last = ids[ids.len() - 1];
            ids.truncate(max - 1);
            ids.push(last);
        }
        if ids.is_empty() {
            return Err(EmbedError::Tokenizer(format!("{text:?} gave no tokens")));
        }
        Ok(ids)
    }

    /// Embeds already preprocessed pixel values `(batch, channels, size, size)` (NCHW, as
    /// transformers' `pixel_values`), in one forward pass.
    ///
    /// # Errors
    /// [`EmbedError::Input`] for a wrong shape, [`EmbedError::Forward`] when candle fails.
    pub fn embed_pixel_values(&self, nchw: &Tensor) -> Result<Vec<Embedding>, EmbedError> {
        let features = self.model.vision.forward(nchw)?;
        Ok(model::rows(&features)?
            .into_iter()
            .map(Embedding::normalized)
            .collect())
    }

    /// Projected image features before normalisation (transformers' `get_image_features`).
    ///
    /// # Errors
    /// As [`ClipEmbedder::embed_pixel_values`].
    pub fn image_features(&self, nchw: &Tensor) -> Result<Vec<Vec<f32>>, EmbedError> {
        model::rows(&self.model.vision.forward(nchw)?)
    }

    /// Projected text features of token ids before normalisation (transformers'
    /// `get_text_features`), one sequence at a time at its own length.
    ///
    /// # Errors
    /// [`EmbedError::Input`] for out-of-vocabulary ids or too long sequences.
    pub fn text_features(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = vec![Vec::new(); ids.len()];
        // Group by length: equal lengths run as one batch, nothing is padded.
        let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, seq) in ids.iter().enumerate() {
            by_len.entry(seq.len()).or_default().push(i);
        }
        for members in by_len.values() {
            let batch: Vec<Vec<u32>> = members.iter().map(|&i| ids[i].clone()).collect();
            let features = model::rows(&self.model.text.forward(&batch)?)?;
            for (&i, f) in members.iter().zip(features) {
                out[i] = f;
            }
        }
        Ok(out)
    }

    /// Preprocesses images (in parallel) into one NCHW tensor.
    fn pixel_batch(&self, batch: &[image::RgbImage]) -> Result<Tensor, EmbedError> {
        let size = self.spec.image_size;
        let per_image: Vec<Vec<f32>> = batch
            .par_iter()
            .map(|img| preprocess::to_pixel_values(img, &self.preprocess))
            .collect();
        let channels = self.config.vision_config.num_channels;
        if channels != 3 {
            return Err(EmbedError::Input(format!(
                "the vision tower takes {channels} channels, images have 3"
            )));
        }
        Ok(Tensor::from_vec(
            per_image.concat(),
            (batch.len(), 3, size, size),
            &self.device,
        )?)
    }
}

impl Embedder for ClipEmbedder {
    fn spec(&self) -> &EmbedderSpec {
        &self.spec
    }

    fn untrained(&self) -> Option<&str> {
        self.untrained.as_deref()
    }

    fn embed_images(&self, batch: &[image::RgbImage]) -> Result<Vec<Embedding>, EmbedError> {
        if let Some(img) = batch.iter().find(|i| i.width() == 0 || i.height() == 0) {
            return Err(EmbedError::Input(format!(
                "image of size {}x{}",
                img.width(),
                img.height()
            )));
        }
        let mut out = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(MAX_IMAGE_BATCH) {
            out.extend(self.embed_pixel_values(&self.pixel_batch(chunk)?)?);
        }
        Ok(out)
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        let ids = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .text_features(&ids)?
            .into_iter()
            .map(Embedding::normalized)
            .collect())
    }
}

/// Whether this CPU has bf16 dot products (AVX-512F with AVX512_BF16: Intel since Cooper Lake,
/// AMD since Zen 4), on which a model in [`crate::Precision::Bf16`] computes its linear maps
/// with inputs and weights in bf16 and sums in f32, about 1.5x f32's images/s and 0.3-0.6x
/// its text latency (benches/README.md, session 25).
pub fn cpu_has_bf16_dots() -> bool {
    simd::bf16_dots_available()
}

/// The device to run on: the first CUDA GPU when `prefer_gpu` and the crate was built with the
/// `cuda` feature and one is present, otherwise the CPU.
pub fn best_device(prefer_gpu: bool) -> Device {
    if prefer_gpu {
        match Device::cuda_if_available(0) {
            Ok(d) => return d,
            Err(e) => tracing::warn!(error = %e, "no usable GPU, running on CPU"),
        }
    }
    Device::Cpu
}
