//! Shard generations of the [`EdgeStore`](super::EdgeStore): the `collection.json` manifest
//! (the commit point, written atomically), shard directories named by generation, creating and
//! flushing a shard, copying every live point into a fresh generation (compaction), and removing
//! the leftovers of an interrupted ensure or compact. See the parent module for the on-disk
//! layout and crash-safety contract these functions keep.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use qdrant_edge::{
    Distance, EdgeConfigBuilder, EdgeOptimizersConfig, EdgeShard, EdgeVectorParamsBuilder,
    FieldIndexOperations, PointInsertOperations, PointOperations, PointStruct, ScrollRequest,
    UpdateOperation, VectorStructInternal, Vectors, WithPayloadInterface, WithVector,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{PAGE, backend};
use crate::store::{CollectionSpec, StoreError, StoreResult};

/// Name of the commit file inside the store directory.
pub(super) const COLLECTION_FILE: &str = "collection.json";
/// Version of the `collection.json` format.
pub(super) const FORMAT: u32 = 1;
/// Prefix of shard generation directories.
pub(super) const SHARD_PREFIX: &str = "shard-";
/// Contents of `collection.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub(super) format: u32,
    pub(super) generation: u64,
    pub(super) spec: CollectionSpec,
}

/// The directory of shard generation `generation`.
pub(super) fn shard_dir(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{SHARD_PREFIX}{generation}"))
}

/// Reads `collection.json`, if present.
pub(super) fn read_manifest(dir: &Path) -> StoreResult<Option<Manifest>> {
    let path = dir.join(COLLECTION_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| StoreError::Backend(format!("reading {}: {err}", path.display())))
}

/// Atomically replaces `collection.json`: temp file, fsync, rename, fsync of the directory.
pub(super) fn write_manifest(dir: &Path, manifest: &Manifest) -> StoreResult<()> {
    let bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|err| StoreError::Backend(format!("encoding {COLLECTION_FILE}: {err}")))?;
    let tmp = dir.join(format!("{COLLECTION_FILE}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(COLLECTION_FILE))?;
    sync_dir(dir)
}

/// Makes renames and deletions inside `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> StoreResult<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Deletes every `shard-*` directory except generation `keep`, and a stray manifest temp file.
pub(super) fn remove_stale_shards(dir: &Path, keep: Option<u64>) -> StoreResult<()> {
    let keep = keep.map(|g| format!("{SHARD_PREFIX}{g}"));
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == format!("{COLLECTION_FILE}.tmp") {
            fs::remove_file(entry.path())?;
        } else if name.starts_with(SHARD_PREFIX) && Some(name) != keep.as_deref() {
            tracing::warn!(path = %entry.path().display(), "removing uncommitted vector shard");
            fs::remove_dir_all(entry.path())?;
        }
    }
    sync_dir(dir)
}

/// Creates shard generation `generation` for `spec` with its payload indexes, flushed; with
/// `optimizers` (a compacted shard's settings) or ours.
pub(super) fn create_shard(
    dir: &Path,
    generation: u64,
    spec: &CollectionSpec,
    optimizers: Option<EdgeOptimizersConfig>,
) -> StoreResult<EdgeShard> {
    let path = shard_dir(dir, generation);
    if path.exists() {
        fs::remove_dir_all(&path)?;
    }
    fs::create_dir_all(&path)?;
    let mut config =
        EdgeConfigBuilder::new().optimizers(optimizers.unwrap_or(EdgeOptimizersConfig {
            // `compact` rebuilds instead of vacuuming, but when `optimize` runs, vacuum any
            // segment with deletions rather than waiting for 20% of 1000 points.
            deleted_threshold: Some(0.0),
            vacuum_min_vector_number: Some(0),
            // No HNSW graphs unless asked for (`EdgeStore::set_indexing_threshold_kb`): at
            // 100k random 512-d vectors an exact scan took 14 ms for the 1000 candidates the
            // ranking takes, the graph 15 ms at recall 0.58 (benches/README.md).
            indexing_threshold: Some(0),
            ..EdgeOptimizersConfig::default()
        }));
    for name in &spec.vectors {
        config = config.vector(
            name.clone(),
            EdgeVectorParamsBuilder::new(spec.dim, Distance::Cosine).build(),
        );
    }
    let shard = EdgeShard::new(&path, config.build()).map_err(backend)?;
    let fields = spec
        .keyword_fields
        .iter()
        .map(|f| (f, "keyword"))
        .chain(spec.integer_fields.iter().map(|f| (f, "integer")));
    for (field, schema) in fields {
        let create =
            serde_json::from_value(json!({"field_name": field, "field_schema": schema}))
                .map_err(|err| StoreError::Backend(format!("payload index on {field:?}: {err}")))?;
        update(
            &shard,
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(create)),
        )?;
    }
    flush_shard(&shard)?;
    Ok(shard)
}

/// Copies every live point (vectors and payload) of `from` into `to`, page by page.
pub(super) fn copy_points(from: &EdgeShard, to: &EdgeShard) -> StoreResult<()> {
    let mut offset = None;
    loop {
        let request = ScrollRequest {
            offset,
            limit: Some(PAGE),
            filter: None,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: WithVector::Bool(true),
            order_by: None,
        };
        let (records, next) = from.scroll(request).map_err(backend)?;
        let points: Vec<_> = records
            .into_iter()
            .map(|r| {
                let vectors = r
                    .vector
                    .unwrap_or_else(|| VectorStructInternal::Named(HashMap::new()));
                let payload = Value::Object(r.payload.map(|p| p.0).unwrap_or_default());
                PointStruct::new(r.id, Vectors(vectors), payload).into()
            })
            .collect();
        if !points.is_empty() {
            update(
                to,
                UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                    PointInsertOperations::PointsList(points),
                )),
            )?;
        }
        match next {
            Some(next) => offset = Some(next),
            None => return Ok(()),
        }
    }
}

/// Applies one update operation.
pub(super) fn update(shard: &EdgeShard, operation: UpdateOperation) -> StoreResult<()> {
    shard.update(operation).map_err(backend)
}

/// `EdgeShard::flush` panics on I/O errors (and on a busy lock, which our write lock rules out);
/// turn that into an error instead of taking the caller down.
pub(super) fn flush_shard(shard: &EdgeShard) -> StoreResult<()> {
    catch_unwind(AssertUnwindSafe(|| shard.flush()))
        .map_err(|_| StoreError::Backend("flushing the shard failed (see the panic above)".into()))
}
