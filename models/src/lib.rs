//! CLIP image and text encoders on candle: how pixels and words become vectors.
//!
//! - [`Embedder`] is the seam the rest of imagelens codes against; [`ClipEmbedder`] implements
//!   it for any CLIP model in the Hugging Face layout (a local folder or a hub repo, see
//!   [`ModelSource`]), matching transformers' outputs.
//! - [`preprocess`] turns untrusted image bytes into RGB (with limits against decompression
//!   bombs) and RGB into pixel values exactly as transformers' `CLIPImageProcessor`.
//! - [`tiny`] (feature `testing`) writes a small seeded CLIP for tests and benches.
//!
//! Nothing here is async: embedding is blocking, compute-bound work. CPU by default; the
//! `cuda` feature builds candle with CUDA (see [`best_device`]).

#![warn(missing_docs)]

pub mod clip;
mod embed;
mod error;
pub mod preprocess;
mod source;
#[cfg(feature = "testing")]
pub mod tiny;

pub use clip::{ClipEmbedder, best_device, cpu_has_bf16_dots};
pub use embed::*;
pub use error::{EmbedError, Fault, ImageError};
pub use source::{DEFAULT_HUB_MODEL, ModelSource, hub_cache_dir, hub_offline};

/// The tensor library, re-exported for [`ClipEmbedder::embed_pixel_values`] callers.
pub use candle;
/// Re-exported so callers can pick a device without depending on candle themselves.
pub use candle::Device;
