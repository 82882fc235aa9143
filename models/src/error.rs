//! Errors of the models crate: [`EmbedError`] for loading and running a model, [`ImageError`]
//! for turning bytes into pixels.
//!
//! Each enum can say whose fault an error is ([`Fault`]): the caller's input (a missing folder,
//! a corrupt image) or something inside us (a failing forward pass). Messages are lowercase,
//! without a trailing period, and name the bad value.

use std::path::PathBuf;

/// Whose fault an error is: decides between a 4xx and a 500 at the HTTP edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bad input or configuration given by the user (a missing file, a corrupt image).
    User,
    /// A bug or an environment failure on our side.
    Internal,
}

/// Errors while loading or running an embedding model.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model folder, or one file the model needs in it, does not exist.
    #[error("model file not found: {}", path.display())]
    MissingFile {
        /// The folder or file that is missing.
        path: PathBuf,
    },

    /// A model file exists but could not be read.
    #[error("cannot read model file {}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// `config.json` or `preprocessor_config.json` is not valid JSON, lacks a field, or holds
    /// values the network cannot be built from.
    #[error("ill-formed model config {}: {reason}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// `model.safetensors` is not a readable safetensors file (or holds an unsupported dtype).
    #[error("unreadable weights file {}: {reason}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor the architecture needs is absent from the weights file.
    #[error("weights file lacks tensor {name:?}")]
    MissingTensor {
        /// The safetensors name, e.g. `vision_model.post_layernorm.weight`.
        name: String,
    },

    /// A tensor has another shape than the config implies.
    #[error("tensor {name:?} has shape {got:?}, config.json implies {expected:?}")]
    TensorShape {
        /// The safetensors name.
        name: String,
        /// The shape implied by `config.json`.
        expected: Vec<usize>,
        /// The shape found in the file.
        got: Vec<usize>,
    },

    /// `tokenizer.json` could not be loaded, or tokenisation failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// A hub model was asked for but cannot be fetched and is not in the local cache.
    #[error(
        "model {repo:?} is not in the hub cache and cannot be downloaded ({reason}); \
         download it elsewhere and pass its folder with `--model /path/to/folder`"
    )]
    HubUnavailable {
        /// The hub repo id.
        repo: String,
        /// Why it could not be fetched (offline mode, network error, ...).
        reason: String,
    },

    /// An input has a shape the model cannot take (e.g. pixel values of the wrong size).
    #[error("invalid model input: {0}")]
    Input(String),

    /// The tensor computation failed.
    #[error("model forward pass failed")]
    Forward(#[from] candle::Error),
}

impl EmbedError {
    /// Whose fault this error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::MissingFile { .. }
            | Self::Config { .. }
            | Self::Weights { .. }
            | Self::MissingTensor { .. }
            | Self::TensorShape { .. }
            | Self::Tokenizer(_)
            | Self::HubUnavailable { .. }
            | Self::Input(_) => Fault::User,
            Self::Io { .. } | Self::Forward(_) => Fault::Internal,
        }
    }
}

/// Errors while reading and decoding an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The input holds no bytes at all.
    #[error("image is empty (0 bytes)")]
    Empty,

    /// The input is larger than the configured byte limit.
    #[error("image is {len} bytes, more than the limit of {max} bytes")]
    TooManyBytes {
        /// Size of the input.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// The bytes are not in a format we can decode (or no known format at all).
    #[error("unsupported or unknown image format{}", format.as_deref().map(|f| format!(" ({f})")).unwrap_or_default())]
    UnsupportedFormat {
        /// The format when it was recognised but cannot be decoded.
        format: Option<String>,
    },

    /// The header claims more pixels than allowed (a decompression bomb, or just too large).
    #[error("image is {width}x{height} pixels, more than the limit of {max} pixels")]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit in pixels.
        max: u64,
    },

    /// Decoding would need more memory or larger dimensions than the decoder's limits allow
    /// (the header declares an image or a frame too large to hold).
    #[error("image is too large to decode within the limits: {0}")]
    TooLarge(String),

    /// The data is corrupt or truncated.
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),

    /// Reading the file failed.
    #[error("cannot read image {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// Whose fault this error is: reading a file can fail on our side, the rest is bad input.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Io { source, .. } if source.kind() != std::io::ErrorKind::NotFound => {
                Fault::Internal
            }
            _ => Fault::User,
        }
    }
}
