//! What an ingest did ([`IngestReport`]): shown to the user, saved under `reports/`, and
//! scrubbed by the library when records are deleted.

use serde::{Deserialize, Serialize};

use crate::ingest::Problem;

/// What an ingest did, item by item where something went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReport {
    /// Image entries found in the exports.
    pub entries: usize,
    /// New records written.
    pub added: usize,
    /// Existing records whose annotations or file changed.
    pub updated: usize,
    /// Existing records that only needed vectors.
    pub embedded_only: usize,
    /// Records already up to date.
    pub unchanged: usize,
    /// Records written with vectors in this run.
    pub embedded: usize,
    /// Region vectors written in this run.
    pub regions: usize,
    /// Orphan vector points removed by reconciliation.
    pub orphans_removed: usize,
    /// Images not ingested because they were deleted from this library before.
    #[serde(default)]
    pub withheld_deleted: usize,
    /// New records whose export id named another image file in an earlier ingest (each is a
    /// problem naming both records); the old records stay.
    #[serde(default)]
    pub superseded: usize,
    /// Image copies an export archive carried that no record points at, removed from the
    /// library's own images folder (see `Library::sweep_carried_images`).
    #[serde(default)]
    pub carried_removed: usize,
    /// Whether vectors were written (a model was available).
    pub semantic: bool,
    /// Problems, one per item.
    pub problems: Vec<Problem>,
    /// Where the JSON report was saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_to: Option<String>,
}

impl IngestReport {
    /// Records that are now in the library from this input (written or already there).
    pub fn kept(&self) -> usize {
        self.added + self.updated + self.embedded_only + self.unchanged
    }
}
