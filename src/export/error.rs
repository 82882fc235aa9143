//! Errors of an export, each with the fault it is (the caller's request or the library).

use super::*;

/// Errors of an export. `path` fields are record paths (relative to the images root), so the
/// messages can be shown to API users without revealing where the library lives.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The record's image file is not in the library any more.
    #[error("image {path} of record {id} is missing from the library")]
    MissingImage {
        /// Record id.
        id: String,
        /// Record path.
        path: String,
    },
    /// The record's image file differs from the one ingested (size or sha256); re-ingest it.
    #[error("image {path} of record {id} changed since it was ingested; re-ingest it first")]
    ChangedImage {
        /// Record id.
        id: String,
        /// Record path.
        path: String,
    },
    /// The record's path could escape the archive folder or is not a normalised relative path.
    #[error(
        "record {id} has path {path:?}, which is not a safe relative path \
         (no '..', '.', empty parts, leading '/', drive letter or backslash)"
    )]
    UnsafePath {
        /// Record id.
        id: String,
        /// Record path.
        path: String,
    },
    /// Two records would be written to the same archive entry.
    #[error("records {first} and {second} both have path {path:?}; export each only once")]
    DuplicatePath {
        /// Id of the record met first.
        first: String,
        /// Id of the record met second.
        second: String,
        /// The shared path.
        path: String,
    },
    /// Two images whose paths differ only in extension would share one YOLO or VOC
    /// annotation file.
    #[error(
        "images {first} and {second} would share the annotation file {file}; \
         export them as coco or csv, or separately"
    )]
    NameClash {
        /// Path of the image met first.
        first: String,
        /// Path of the image met second.
        second: String,
        /// The annotation file both map to.
        file: String,
    },
    /// The record's image file is a symbolic link that leads out of the images folder.
    #[error("image {path} of record {id} is a link out of the images folder; it is not exported")]
    OutsideImages {
        /// Record id.
        id: String,
        /// Record path.
        path: String,
    },
    /// The record's image could not be decoded for redaction; it is not exported as it is.
    #[error("image {path} of record {id} cannot be redacted: {reason}")]
    Redaction {
        /// Record id.
        id: String,
        /// Record path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The record's image file exists but cannot be read.
    #[error("cannot read image {path} of record {id}")]
    ReadImage {
        /// Record id.
        id: String,
        /// Record path.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed (for a streamed response: usually the client went away).
    #[error("cannot write the export")]
    Io(#[from] io::Error),
    /// The archive library refused an entry.
    #[error("cannot build the archive: {0}")]
    Archive(String),
}

impl ExportError {
    /// Whose fault it is. Records that cannot be exported as asked are the caller's to fix
    /// (leave the record out, re-ingest, pick another format), so they map to a 4xx whose
    /// message names the image; failing I/O is ours.
    pub fn fault(&self) -> Fault {
        match self {
            ExportError::MissingImage { .. }
            | ExportError::ChangedImage { .. }
            | ExportError::UnsafePath { .. }
            | ExportError::DuplicatePath { .. }
            | ExportError::NameClash { .. }
            | ExportError::Redaction { .. }
            | ExportError::OutsideImages { .. } => Fault::User,
            ExportError::ReadImage { .. } | ExportError::Io(_) | ExportError::Archive(_) => {
                Fault::Internal
            }
        }
    }
}

impl From<zip::result::ZipError> for ExportError {
    fn from(e: zip::result::ZipError) -> Self {
        match e {
            zip::result::ZipError::Io(e) => ExportError::Io(e),
            other => ExportError::Archive(other.to_string()),
        }
    }
}
