//! [`EdgeStore`]: the embedded [`VectorStore`] on a qdrant-edge 0.7.0 shard.
//!
//! Owns one data directory and everything in it; knows nothing of models or annotations. Every
//! qdrant-edge type stays inside this module: our [`VectorFilter`], [`VectorPoint`] and
//! [`CollectionSpec`] are translated here (filters and index schemas go through qdrant's serde
//! representation, which is its stable REST shape).
//!
//! # On-disk layout
//!
//! ```text
//! <dir>/collection.json   {"format":1,"generation":G,"spec":{..}}: the commit point
//! <dir>/index.json        the IndexSettings (absent before they existed: defaults apply)
//! <dir>/shard-G/          the live EdgeShard (edge_config.json, wal/, segments/, ...)
//! <dir>/shard-*/          anything else is a leftover of an interrupted ensure/compact
//! ```
//!
//! # Invariants
//!
//! - `collection.json` is written atomically (temp file, fsync, rename, fsync of the directory),
//!   and only after the shard it names is fully created and flushed. A directory without it holds
//!   no committed data, so [`EdgeStore::open`] deletes leftover `shard-*` directories instead of
//!   trying to load a half-created shard.
//! - The collection's spec never changes: [`VectorStore::ensure`] with another spec is
//!   [`StoreError::SpecMismatch`].
//! - Mutations (`ensure`, `upsert`, `delete*`, `flush`, `compact`) hold the store's write lock,
//!   reads share the read lock. qdrant-edge's `EdgeShard::flush` *panics* when its WAL mutex is
//!   busy (`try_lock().expect(..)`), so flushing must never race an update.
//! - Only one process may open a directory at a time (the shard's WAL directory is `flock`ed,
//!   so a second [`EdgeStore::open`] of a live directory fails rather than corrupting it).
//!
//! # Crash safety (what qdrant-edge 0.7.0 actually does)
//!
//! Each update is appended to the shard's WAL and applied to the in-memory/mmapped segments.
//! `EdgeShard::flush` fsyncs the WAL and flushes every segment synchronously. **The WAL is never
//! replayed by `EdgeShard::load`** and never truncated (edge exposes no `ack`): what a reopened
//! shard contains is what the segments hold on disk, i.e. at least everything up to the last
//! [`VectorStore::flush`], plus possibly some later updates the kernel had already written back
//! before the process died. `load` discards segment directories without a `version.info`
//! (interrupted optimizer output) and repairs segment consistency. Hence the contract: after
//! `flush` returns, a `kill -9` loses nothing; updates after the last flush may be partially
//! present, so writers re-apply them (upserts are idempotent by id).
//!
//! # Compaction
//!
//! Deleting a point in qdrant only tombstones it, and because the 0.7.0 WAL is never truncated
//! its files keep every payload ever upserted, so vacuuming segments in place
//! (`EdgeShard::optimize`) cannot make deleted data physically disappear. [`VectorStore::compact`]
//! therefore rewrites the collection: it copies every live point into a fresh shard generation,
//! runs the optimizer on it, commits it in `collection.json` and deletes the old generation. The
//! cost is a full copy (like SQLite's `VACUUM`), so call it rarely.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use qdrant_edge::{
    AcornSearchParams, CountRequest, EdgeShard, NamedQuery, PointId as EdgeId,
    PointInsertOperations, PointOperations, QuantizationSearchParams, QueryEnum, ScrollRequest,
    SearchParams, SearchRequest, UpdateOperation, VectorInternal, WithPayloadInterface, WithVector,
};
use serde_json::Value;

mod convert;
mod generations;
mod store;

use super::partitioned::side_by_side;
use super::spec::{added_fields, check_vector, describe, normalize};
use super::{
    CollectionSpec, Hit, IndexKind, IndexSettings, IndexState, PointId, Quantization, StoreError,
    StoreResult, VectorFilter, VectorPoint, VectorQuery, VectorStore,
};
use crate::json_file::sync_dir;
use convert::{
    dense, from_edge_id, json_path, named_dense, to_edge_filter, to_edge_point, to_payload,
};
use generations::{
    COLLECTION_FILE, FORMAT, Manifest, align_range_field_links, copy_points,
    create_payload_indexes, create_shard, flush_shard, place_vectors, qdrant_index,
    read_index_settings, read_manifest, remove_stale_shards, shard_dir, update,
    write_index_settings, write_manifest,
};

/// Points per scroll page (`distinct`, `compact`).
const PAGE: usize = 1_000;
/// The embedded vector store: one qdrant-edge shard in one directory.
///
/// Cheap to share behind an `Arc`; every method blocks (call it from `spawn_blocking` in async
/// code). See the module docs for the on-disk layout and crash-safety contract.
pub struct EdgeStore {
    dir: PathBuf,
    state: RwLock<Option<Open>>,
    /// Lock order: `state` before `settings`.
    settings: RwLock<IndexSettings>,
}

/// A created collection: its spec, generation and live shard.
struct Open {
    spec: CollectionSpec,
    generation: u64,
    shard: EdgeShard,
}

impl std::fmt::Debug for EdgeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl EdgeStore {
    /// Opens the store in `dir` (created if missing).
    ///
    /// If `dir` holds a committed collection, its shard is loaded (this is also the recovery path
    /// after a crash: see the module docs). Otherwise the store is empty until
    /// [`VectorStore::ensure`]; leftovers of an interrupted `ensure` or `compact` are deleted.
    ///
    /// # Errors
    /// [`StoreError::Io`] if the directory cannot be created or read, [`StoreError::Backend`] if
    /// `collection.json` is unreadable or the shard fails to load (for instance because another
    /// process has it open).
    pub fn open(dir: &Path) -> StoreResult<Self> {
        Self::open_with_defaults(dir, &IndexSettings::default())
    }

    /// [`EdgeStore::open`], with `defaults` as the index settings while the directory holds
    /// none of its own (`index.json`; [`IndexSettings::for_parts`] for a part of a
    /// [`super::PartitionedStore`]).
    ///
    /// # Errors
    /// As [`EdgeStore::open`].
    pub fn open_with_defaults(dir: &Path, defaults: &IndexSettings) -> StoreResult<Self> {
        fs::create_dir_all(dir)?;
        let settings = read_index_settings(dir, defaults)?;
        let manifest = read_manifest(dir)?;
        remove_stale_shards(dir, manifest.as_ref().map(|m| m.generation))?;
        let state = match manifest {
            None => None,
            Some(Manifest {
                format,
                generation,
                spec,
            }) => {
                if format != FORMAT {
                    return Err(StoreError::Backend(format!(
                        "{} has format {format}, this build reads {FORMAT}",
                        dir.join(COLLECTION_FILE).display()
                    )));
                }
                let path = shard_dir(dir, generation);
                let shard = EdgeShard::load(&path, None).map_err(|err| {
                    StoreError::Backend(format!("loading shard {}: {err}", path.display()))
                })?;
                Some(Open {
                    spec,
                    generation,
                    shard,
                })
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            state: RwLock::new(state),
            settings: RwLock::new(settings),
        })
    }

    /// The directory this store owns.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Up to `limit` live points with their vectors and payloads, in id order from `from`
    /// (`None`: the first), and the id the next page starts at (`None` after the last). For
    /// copying a collection elsewhere (`Library::split_vectors`); the vectors are as stored
    /// (cosine collections keep them normalised).
    ///
    /// # Errors
    /// [`StoreError::Missing`] before [`VectorStore::ensure`]; backend failures.
    pub fn points_page(
        &self,
        from: Option<PointId>,
        limit: usize,
    ) -> StoreResult<(Vec<VectorPoint>, Option<PointId>)> {
        let state = self.read()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        let request = ScrollRequest {
            offset: from.map(EdgeId::NumId),
            limit: Some(limit.max(1)),
            filter: None,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: WithVector::Bool(true),
            order_by: None,
        };
        let (records, next) = open.shard.scroll(request).map_err(backend)?;
        let points = records
            .into_iter()
            .map(|r| {
                let vectors = r.vector.map(named_dense).unwrap_or_default();
                Ok(VectorPoint {
                    id: from_edge_id(r.id)?,
                    vectors,
                    payload: to_payload(r.payload),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((points, next.map(from_edge_id).transpose()?))
    }

    /// Vectors searchable through an HNSW graph, over every named vector (0 until
    /// [`VectorStore::optimize`] has met a segment that [`IndexSettings`] gives a graph; 0
    /// before [`VectorStore::ensure`]).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store's lock is poisoned.
    pub fn indexed_vectors(&self) -> StoreResult<usize> {
        let state = self.read()?;
        Ok(state
            .as_ref()
            .map_or(0, |open| open.shard.info().indexed_vectors_count))
    }

    fn settings(&self) -> StoreResult<IndexSettings> {
        self.settings
            .read()
            .map(|s| s.clone())
            .map_err(|_| poisoned())
    }

    /// Brings the live shard's qdrant config to `settings` for the points it holds now (graph
    /// shape and full-scan threshold, which segments get a graph, quantization, where the full
    /// vectors live). qdrant-edge 0.7.0 has no setter for quantization or a vector's storage,
    /// so a change of either reloads the shard with the new config (reopened as it was if that
    /// fails). Graphs, quantized copies and segments stored the other way are rebuilt by the
    /// shard's config-mismatch optimizer on the next `optimize`.
    fn apply(&self, state: &mut Option<Open>, settings: &IndexSettings) -> StoreResult<()> {
        let Some(open) = state.as_ref() else {
            return Ok(());
        };
        let points = open.shard.info().points_count;
        let (hnsw, optimizers, quantization) = qdrant_index(&open.spec, settings, points)?;
        let current = open.shard.config().clone();
        let mut config = current.clone();
        let moved = place_vectors(&mut config, settings.on_disk);
        if current.quantization_config == quantization && !moved {
            if current.hnsw_config != hnsw {
                open.shard.set_hnsw_config(hnsw).map_err(backend)?;
            }
            if current.optimizers != optimizers {
                open.shard
                    .set_optimizers_config(optimizers)
                    .map_err(backend)?;
            }
            return Ok(());
        }
        config.hnsw_config = hnsw;
        config.optimizers = optimizers;
        config.quantization_config = quantization;
        let Open {
            spec,
            generation,
            shard,
        } = state.take().expect("checked above");
        let path = shard_dir(&self.dir, generation);
        // Dropping flushes the shard and releases its WAL lock, which `load` takes again.
        drop(shard);
        let (shard, result) = match EdgeShard::load(&path, Some(config)) {
            Ok(shard) => (shard, Ok(())),
            Err(err) => {
                let shard = EdgeShard::load(&path, None).map_err(|again| {
                    StoreError::Backend(format!(
                        "reloading shard {} after a failed config change ({err}): {again}",
                        path.display()
                    ))
                })?;
                (shard, Err(backend(err)))
            }
        };
        *state = Some(Open {
            spec,
            generation,
            shard,
        });
        result
    }

    fn read(&self) -> StoreResult<RwLockReadGuard<'_, Option<Open>>> {
        self.state.read().map_err(|_| poisoned())
    }

    fn write(&self) -> StoreResult<RwLockWriteGuard<'_, Option<Open>>> {
        self.state.write().map_err(|_| poisoned())
    }
}

/// Bytes of every file under `dir` (symbolic links are not followed).
fn disk_usage(dir: &Path) -> StoreResult<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// Maps a qdrant error to ours.
fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn poisoned() -> StoreError {
    StoreError::Backend("vector store lock poisoned by an earlier panic".into())
}
