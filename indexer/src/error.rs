//! The indexer's error type: one enum per area folded into [`Error`], each with a [`Fault`].

use crate::keyword::KeywordError;
use crate::store::StoreError;
pub use models::Fault;

/// Errors reading the input of an ingest.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An annotation file that cannot be read at all.
    #[error("cannot read annotations {file}: {reason}")]
    Unreadable {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The images folder does not exist or is not a folder.
    #[error("images folder {0} does not exist or is not a folder")]
    ImagesRoot(String),
    /// Nothing in the input could be ingested.
    #[error("nothing could be ingested: {0}")]
    NothingIngested(String),
    /// An unsupported export format name.
    #[error(
        "unsupported annotation format {0:?} (supported: auto, coco, voc, yolo, cvat, \
         labelstudio, csv, clarifai)"
    )]
    Format(String),
}

/// Every error of the indexer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input problems.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Keyword index failures.
    #[error(transparent)]
    Keyword(#[from] KeywordError),
    /// Vector store failures.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Model failures.
    #[error(transparent)]
    Embed(#[from] models::EmbedError),
    /// The library was built with another model.
    #[error(
        "this library's vectors were made with model {library}, not {given}; \
         use the same --model and --precision, or start a new --data-dir"
    )]
    ModelMismatch {
        /// The library's model.
        library: String,
        /// The model given now.
        given: String,
    },
    /// The data directory is not usable.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Filesystem failure.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// Path concerned.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the caller or the system is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Ingest(_) | Error::ModelMismatch { .. } | Error::DataDir { .. } => Fault::User,
            Error::Keyword(KeywordError::Pattern { .. }) => Fault::User,
            Error::Store(StoreError::SpecMismatch { .. } | StoreError::NotCompiled(_)) => {
                Fault::User
            }
            Error::Embed(e) => e.fault(),
            _ => Fault::Internal,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Result of indexer operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
