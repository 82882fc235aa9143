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
    CountRequest, EdgeShard, NamedQuery, PointId as EdgeId, PointInsertOperations, PointOperations,
    QuantizationSearchParams, QueryEnum, ScrollRequest, SearchParams, SearchRequest,
    UpdateOperation, VectorInternal, WithPayloadInterface, WithVector,
};
use serde_json::Value;

mod convert;
mod generations;

use super::spec::{added_fields, check_vector, describe, normalize};
use super::{
    CollectionSpec, Hit, IndexKind, IndexSettings, IndexState, PointId, Quantization, StoreError,
    StoreResult, VectorFilter, VectorPoint, VectorQuery, VectorStore,
};
use convert::{dense, from_edge_id, json_path, to_edge_filter, to_edge_point, to_payload};
use generations::{
    COLLECTION_FILE, FORMAT, Manifest, copy_points, create_payload_indexes, create_shard,
    flush_shard, qdrant_index, read_index_settings, read_manifest, remove_stale_shards, shard_dir,
    sync_dir, update, write_index_settings, write_manifest,
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
        fs::create_dir_all(dir)?;
        let settings = read_index_settings(dir)?;
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

    /// Brings the live shard's qdrant config to `settings` (graph shape, which segments get a
    /// graph, quantization). qdrant-edge 0.7.0 has no setter for quantization, so a change of
    /// it reloads the shard with the new config (reopened as it was if that fails). Graphs and
    /// quantized copies themselves are rebuilt by the shard's config-mismatch optimizer on the
    /// next `optimize`.
    fn apply(&self, state: &mut Option<Open>, settings: &IndexSettings) -> StoreResult<()> {
        let Some(open) = state.as_ref() else {
            return Ok(());
        };
        let (hnsw, optimizers, quantization) = qdrant_index(&open.spec, settings)?;
        let current = open.shard.config().clone();
        if current.quantization_config == quantization {
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
        let mut config = current;
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

impl VectorStore for EdgeStore {
    fn ensure(&self, spec: &CollectionSpec) -> StoreResult<()> {
        let spec = normalize(spec)?;
        let mut state = self.write()?;
        if let Some(open) = state.as_mut() {
            if open.spec == spec {
                return Ok(());
            }
            // A newer imagelens filters on a payload key an older one did not index: the
            // index is added (points without the key simply lack it), nothing else changes.
            let Some((keyword, integer)) = added_fields(&open.spec, &spec) else {
                return Err(StoreError::SpecMismatch {
                    existing: describe(&open.spec),
                    requested: describe(&spec),
                });
            };
            create_payload_indexes(&open.shard, &keyword, &integer)?;
            flush_shard(&open.shard)?;
            write_manifest(
                &self.dir,
                &Manifest {
                    format: FORMAT,
                    generation: open.generation,
                    spec: spec.clone(),
                },
            )?;
            open.spec = spec;
            return Ok(());
        }
        let generation = 0;
        let shard = create_shard(&self.dir, generation, &spec, &self.settings()?)?;
        write_manifest(
            &self.dir,
            &Manifest {
                format: FORMAT,
                generation,
                spec: spec.clone(),
            },
        )?;
        *state = Some(Open {
            spec,
            generation,
            shard,
        });
        Ok(())
    }

    fn upsert(&self, points: Vec<VectorPoint>) -> StoreResult<()> {
        let state = self.write()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        for point in &points {
            for (name, vector) in &point.vectors {
                check_vector(&open.spec, name, vector)?;
            }
        }
        if points.is_empty() {
            return Ok(());
        }
        let points = points.into_iter().map(to_edge_point).collect();
        update(
            &open.shard,
            UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                PointInsertOperations::PointsList(points),
            )),
        )
    }

    fn search(&self, query: &VectorQuery) -> StoreResult<Vec<Hit>> {
        let state = self.read()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        check_vector(&open.spec, &query.using, &query.vector)?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let settings = self.settings()?;
        let exact = query.exact || settings.kind == IndexKind::Exact;
        let quantization = match settings.quantization {
            // Segments quantized under earlier settings keep their copies until the next
            // optimize: do not use them.
            Quantization::None => Some(QuantizationSearchParams {
                ignore: true,
                rescore: None,
                oversampling: None,
            }),
            // Candidates from the int8 copies, `oversampling` per hit, rescored with the
            // original vectors, so scores (and the top-k of the candidates) are exact cosines.
            Quantization::Int8 => Some(QuantizationSearchParams {
                ignore: exact,
                rescore: Some(true),
                oversampling: Some(settings.oversampling),
            }),
        };
        let request = SearchRequest {
            query: QueryEnum::Nearest(NamedQuery::new(
                VectorInternal::Dense(query.vector.clone()),
                query.using.clone(),
            )),
            filter: to_edge_filter(&query.filter)?,
            params: Some(SearchParams {
                exact,
                // The beam is never narrower than the hits asked for.
                hnsw_ef: Some(settings.ef.max(query.limit)),
                quantization,
                ..SearchParams::default()
            }),
            limit: query.limit,
            offset: 0,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: Some(WithVector::Bool(false)),
            score_threshold: None,
        };
        let points = open.shard.search(request).map_err(backend)?;
        let mut hits = Vec::with_capacity(points.len());
        for p in points {
            let hit = Hit {
                id: from_edge_id(p.id)?,
                score: p.score,
                payload: to_payload(p.payload),
            };
            // qdrant-edge 0.7.0's graph search can return points outside the filter (seen with
            // a filter no point satisfies, `tests/index_settings.rs`): check every hit here so
            // filters stay exact whatever the index.
            if query.filter.matches(hit.id, &hit.payload) {
                hits.push(hit);
            }
        }
        Ok(hits)
    }

    /// The lists run on threads of their own: qdrant-edge searches a shard's segments one
    /// after the other on the calling thread, so a hybrid search's image, region and text
    /// lists would otherwise wait for each other.
    fn search_many(&self, queries: &[VectorQuery]) -> StoreResult<Vec<Vec<Hit>>> {
        if queries.len() < 2 {
            return queries.iter().map(|q| self.search(q)).collect();
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = queries
                .iter()
                .map(|q| scope.spawn(move || self.search(q)))
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }

    fn retrieve(&self, ids: &[PointId]) -> StoreResult<Vec<Hit>> {
        let state = self.read()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        let ids: Vec<EdgeId> = ids.iter().map(|&id| EdgeId::NumId(id)).collect();
        let records = open
            .shard
            .retrieve(
                &ids,
                Some(WithPayloadInterface::Bool(true)),
                Some(WithVector::Bool(false)),
            )
            .map_err(backend)?;
        records
            .into_iter()
            .map(|r| {
                Ok(Hit {
                    id: from_edge_id(r.id)?,
                    score: 0.0,
                    payload: to_payload(r.payload),
                })
            })
            .collect()
    }

    /// The stored vector: cosine collections normalize on write, so this is the unit-length
    /// version of what was upserted.
    fn vector(&self, id: PointId, using: &str) -> StoreResult<Option<Vec<f32>>> {
        let state = self.read()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        if !open.spec.vectors.iter().any(|v| v == using) {
            return Err(StoreError::UnknownVector(using.to_owned()));
        }
        let records = open
            .shard
            .retrieve(
                &[EdgeId::NumId(id)],
                Some(WithPayloadInterface::Bool(false)),
                Some(WithVector::Selector(vec![using.to_owned()])),
            )
            .map_err(backend)?;
        Ok(records
            .into_iter()
            .next()
            .and_then(|r| r.vector)
            .and_then(|v| dense(v, using)))
    }

    fn delete(&self, ids: &[PointId]) -> StoreResult<()> {
        let state = self.write()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.iter().map(|&id| EdgeId::NumId(id)).collect();
        update(
            &open.shard,
            UpdateOperation::PointOperation(PointOperations::DeletePoints { ids }),
        )
    }

    fn delete_where(&self, filter: &VectorFilter) -> StoreResult<()> {
        if filter.is_empty() {
            return Err(StoreError::Backend(
                "refusing to delete with an empty filter".into(),
            ));
        }
        let state = self.write()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        let filter = to_edge_filter(filter)?.expect("a non-empty filter translates to Some");
        update(
            &open.shard,
            UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter)),
        )
    }

    /// Exact count; 0 before [`VectorStore::ensure`].
    fn count(&self, filter: &VectorFilter) -> StoreResult<usize> {
        let state = self.read()?;
        let Some(open) = state.as_ref() else {
            return Ok(0);
        };
        let request = CountRequest {
            filter: to_edge_filter(filter)?,
            exact: true,
        };
        open.shard.count(request).map_err(backend)
    }

    /// Pages through every point with a payload selector of `key`. String values count, and so
    /// do the string elements of an array value (e.g. each of `labels`); other values are
    /// ignored. Empty before [`VectorStore::ensure`].
    fn distinct(&self, key: &str) -> StoreResult<BTreeSet<String>> {
        let state = self.read()?;
        let Some(open) = state.as_ref() else {
            return Ok(BTreeSet::new());
        };
        let path = json_path(key)?;
        let mut values = BTreeSet::new();
        let mut offset = None;
        loop {
            let request = ScrollRequest {
                offset,
                limit: Some(PAGE),
                filter: None,
                with_payload: Some(WithPayloadInterface::Fields(vec![path.clone()])),
                with_vector: WithVector::Bool(false),
                order_by: None,
            };
            let (records, next) = open.shard.scroll(request).map_err(backend)?;
            for record in records {
                match record.payload.as_ref().and_then(|p| p.0.get(key)) {
                    Some(Value::String(s)) => {
                        values.insert(s.clone());
                    }
                    Some(Value::Array(items)) => {
                        values.extend(items.iter().filter_map(|v| v.as_str().map(str::to_owned)));
                    }
                    _ => {}
                }
            }
            match next {
                Some(next) => offset = Some(next),
                None => return Ok(values),
            }
        }
    }

    /// Fsyncs the WAL and flushes every segment; a no-op before [`VectorStore::ensure`].
    fn flush(&self) -> StoreResult<()> {
        let state = self.write()?;
        match state.as_ref() {
            Some(open) => flush_shard(&open.shard),
            None => Ok(()),
        }
    }

    /// Runs qdrant's optimizers in-process until they have nothing left to do (segments above
    /// the indexing threshold get an HNSW graph, small ones are merged, ones with deletions
    /// vacuumed), then flushes. Searches keep answering meanwhile; an interrupted run leaves
    /// segment directories without `version.info`, which the next open discards.
    fn optimize(&self) -> StoreResult<()> {
        {
            let mut state = self.write()?;
            let settings = self.settings()?;
            self.apply(&mut state, &settings)?;
        }
        let state = self.read()?;
        let Some(open) = state.as_ref() else {
            return Ok(());
        };
        open.shard.optimize().map_err(backend)?;
        flush_shard(&open.shard)
    }

    fn index_settings(&self) -> StoreResult<IndexSettings> {
        self.settings()
    }

    /// Saves `settings` in `index.json` and applies them to the live shard's config; the next
    /// [`VectorStore::optimize`] builds (or drops) graphs and quantized copies to match.
    fn set_index_settings(&self, settings: &IndexSettings) -> StoreResult<()> {
        settings.validate()?;
        let mut state = self.write()?;
        write_index_settings(&self.dir, settings)?;
        *self.settings.write().map_err(|_| poisoned())? = settings.clone();
        self.apply(&mut state, settings)
    }

    fn index_state(&self) -> StoreResult<IndexState> {
        let settings = self.settings()?;
        let state = self.read()?;
        let (points, indexed_vectors, segments) = state.as_ref().map_or((0, 0, 0), |open| {
            let info = open.shard.info();
            (
                info.points_count,
                info.indexed_vectors_count,
                info.segments_count,
            )
        });
        Ok(IndexState {
            settings: Some(settings),
            points,
            indexed_vectors,
            segments,
            disk_bytes: Some(disk_usage(&self.dir)?),
        })
    }

    /// Rewrites the collection into a fresh shard generation holding only live points (with the
    /// store's index settings), runs the optimizer on it (merging, and HNSW graphs where
    /// the indexing threshold asks for them), commits it and deletes the old generation. See
    /// the module docs for why an in-place vacuum is not enough in qdrant-edge 0.7.0.
    fn compact(&self) -> StoreResult<()> {
        let mut state = self.write()?;
        let Some(open) = state.as_ref() else {
            return Ok(());
        };
        let generation = open.generation + 1;
        let fresh = create_shard(&self.dir, generation, &open.spec, &self.settings()?)?;
        copy_points(&open.shard, &fresh)?;
        fresh.optimize().map_err(backend)?;
        flush_shard(&fresh)?;
        write_manifest(
            &self.dir,
            &Manifest {
                format: FORMAT,
                generation,
                spec: open.spec.clone(),
            },
        )?;
        let old = state.take().expect("checked above");
        let old_path = shard_dir(&self.dir, old.generation);
        *state = Some(Open {
            spec: old.spec,
            generation,
            shard: fresh,
        });
        drop(old.shard);
        fs::remove_dir_all(&old_path)?;
        sync_dir(&self.dir)?;
        Ok(())
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
