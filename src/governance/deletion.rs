//! Deletion of records from every place they live, with a receipt for data owners.
//!
//! One entry point, [`delete`], used by `imagelens delete`, `imagelens retention run` and the
//! HTTP API. It refuses records on legal hold, removes the records from the vector store
//! (points deleted, shard compacted), the keyword index (documents deleted, segments merged,
//! old files collected), the ingest reports and every collection, then appends an audit entry
//! that holds the receipt's digest. The library never copies images and keeps no thumbnail
//! cache, so there is nothing else to purge; the originals in the images folder belong to
//! whoever curates it and are left alone (the receipt says so).
//!
//! The receipt itself (ids, file names, hashes) is returned to the caller and not kept in the
//! data directory: keeping it would be exactly the residue deletion removes. Its digest in the
//! audit trail lets anyone holding the receipt prove it is the one the library issued.

use chrono::{DateTime, Utc};
use indexer::Library;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::collections::Collections;
use crate::governance::Action;
use crate::governance::audit::{AuditLog, NewEntry};
use crate::governance::retention::Retention;

/// Where a deleted record was removed from.
pub const STORES: [&str; 4] = [
    "keyword index (documents deleted, segments merged, old files removed)",
    "vector store (points deleted, shard compacted into a fresh generation)",
    "collections",
    "ingest reports",
];

/// One deleted record, as the receipt lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeletedRecord {
    /// Record id.
    pub id: String,
    /// File name.
    pub filename: String,
    /// Path under the images folder.
    pub path: String,
    /// sha256 of the image file.
    pub sha256: String,
    /// Dataset.
    pub dataset: String,
}

/// Proof of a deletion, for data owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeletionReceipt {
    /// When the records were deleted.
    pub time: DateTime<Utc>,
    /// Who deleted them.
    pub actor: String,
    /// Why (request reference, retention rule).
    pub reason: String,
    /// The records.
    pub records: Vec<DeletedRecord>,
    /// Ids asked for that were not in the library.
    pub not_found: Vec<String>,
    /// Where they were removed from.
    pub removed_from: Vec<String>,
    /// What was not touched, and why.
    pub note: String,
    /// Sequence number of the audit entry that records this deletion.
    pub audit_seq: u64,
    /// sha256 of this receipt's JSON with `digest` empty; the audit entry holds it too.
    pub digest: String,
}

impl DeletionReceipt {
    /// The digest of the receipt's content (everything but `digest` and `audit_seq`).
    pub fn compute_digest(&self) -> String {
        let mut copy = self.clone();
        copy.digest = String::new();
        copy.audit_seq = 0;
        hex::encode(Sha256::digest(
            serde_json::to_vec(&copy).expect("receipt serialises"),
        ))
    }
}

/// Why a deletion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    /// Some records are on legal hold; nothing was deleted.
    #[error("{} record(s) are on legal hold and were not deleted: {}", held.len(), held.join("; "))]
    Held {
        /// `id (reason)` per held record.
        held: Vec<String>,
    },
    /// Nothing to delete.
    #[error("none of the {0} id(s) is in the library")]
    NothingFound(usize),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] indexer::Error),
    /// Collections could not be updated.
    #[error(transparent)]
    Collections(#[from] crate::collections::CollectionError),
    /// The records are deleted but the audit entry could not be written; the caller reports
    /// this as a failure so the operator repairs the trail.
    #[error(transparent)]
    Audit(#[from] crate::governance::audit::AuditError),
}

/// The stores a deletion touches.
#[derive(Debug, Clone, Copy)]
pub struct Stores<'a> {
    /// The library (keyword index, vector store, reports).
    pub library: &'a Library,
    /// Saved collections.
    pub collections: &'a Collections,
    /// Holds.
    pub retention: &'a Retention,
    /// The audit trail.
    pub audit: &'a AuditLog,
}

/// Ids of every record of `dataset` (what "delete a dataset" deletes).
///
/// # Errors
/// Index failures.
pub fn dataset_ids(library: &Library, dataset: &str) -> Result<Vec<String>, DeletionError> {
    let filter = indexer::filter::RecordFilter {
        datasets: vec![dataset.to_owned()],
        ..Default::default()
    };
    let ids = library
        .keyword()
        .filter_ids(&filter)
        .map_err(indexer::Error::from)?;
    Ok(ids.into_iter().collect())
}

/// Deletes `ids` everywhere and returns the receipt.
///
/// # Errors
/// [`DeletionError::Held`] (nothing deleted) when any record is on hold,
/// [`DeletionError::NothingFound`], store failures.
pub fn delete(
    stores: Stores<'_>,
    ids: &[String],
    actor: &str,
    reason: &str,
    audit_context: NewEntry,
) -> Result<DeletionReceipt, DeletionError> {
    let records = stores
        .library
        .keyword()
        .get_many(ids)
        .map_err(indexer::Error::from)?;
    if records.is_empty() {
        return Err(DeletionError::NothingFound(ids.len()));
    }
    let held: Vec<String> = records
        .iter()
        .filter_map(|r| {
            stores
                .retention
                .hold_of(&r.id, &stores.audit.record_ref(&r.id), &r.dataset)
                .map(|h| format!("{} ({})", r.id, h.reason))
        })
        .collect();
    if !held.is_empty() {
        return Err(DeletionError::Held { held });
    }
    let found: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let not_found: Vec<String> = ids.iter().filter(|i| !found.contains(i)).cloned().collect();
    stores.library.delete_records(&found)?;
    stores.collections.remove_everywhere(&records)?;
    let mut receipt = DeletionReceipt {
        time: Utc::now(),
        actor: actor.to_owned(),
        reason: reason.to_owned(),
        records: records
            .iter()
            .map(|r| DeletedRecord {
                id: r.id.clone(),
                filename: r.filename.clone(),
                path: r.path.clone(),
                sha256: r.sha256.clone(),
                dataset: r.dataset.clone(),
            })
            .collect(),
        not_found,
        removed_from: STORES.map(String::from).to_vec(),
        note: "the library holds no copies of images and no thumbnail cache; the original \
               files in the curated images folder were not touched"
            .into(),
        audit_seq: 0,
        digest: String::new(),
    };
    receipt.digest = receipt.compute_digest();
    let entry = stores.audit.append(NewEntry {
        actor: actor.to_owned(),
        action: Action::Delete.name().into(),
        records: found,
        outcome: "ok".into(),
        detail: Some(serde_json::json!({
            "reason": reason,
            "count": receipt.records.len(),
            "receipt_digest": receipt.digest,
        })),
        ..audit_context
    })?;
    receipt.audit_seq = entry.seq;
    Ok(receipt)
}
