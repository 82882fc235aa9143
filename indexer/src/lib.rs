//! Turns annotation exports plus their images into a searchable library.
//!
//! - [`ingest`](mod@ingest): export formats (COCO, Pascal VOC, YOLO, CVAT, Label Studio,
//!   CSV/JSONL) -> format-neutral entries -> [`record::Record`]s.
//! - [`keyword`]: the tantivy index, record of truth for records, filters, look-ups, facets.
//! - [`store`]: the [`store::VectorStore`] seam, qdrant-edge by default.
//! - [`points`]: the point schema (vector names, payload keys, point ids, payload, collection).
//! - [`pipeline`]: batches, embedding, and the two-store consistency protocol ([`report`]:
//!   what an ingest did).
//! - [`library`]: one data directory with its manifest.
//! - [`synth`]: seeded synthetic scenes and COCO exports (tests, benches, `imagelens demo`).
#![warn(missing_docs)]

pub mod dates;
mod error;
pub mod filter;
pub mod ingest;
pub mod json_file;
pub mod keyword;
pub mod library;
pub mod pipeline;
pub mod points;
pub mod record;
pub mod report;
pub mod store;
pub mod synth;

pub use error::{Error, Fault, IngestError, Result};
pub use library::{Library, ServerSettings, StoreSettings, VectorLayout};
pub use pipeline::{IngestOptions, ingest};
pub use report::IngestReport;
