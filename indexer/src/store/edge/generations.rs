//! Shard generations of the [`EdgeStore`](super::EdgeStore): the `collection.json` manifest
//! (the commit point, written atomically), shard directories named by generation, creating and
//! flushing a shard, copying every live point into a fresh generation (compaction), and removing
//! the leftovers of an interrupted ensure or compact. See the parent module for the on-disk
//! layout and crash-safety contract these functions keep.

use std::collections::HashMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use qdrant_edge::{
    Distance, EdgeConfig, EdgeConfigBuilder, EdgeOptimizersConfig, EdgeShard,
    EdgeVectorParamsBuilder, FieldIndexOperations, HnswIndexConfig, PointInsertOperations,
    PointOperations, PointStruct, QuantizationConfig, ScrollRequest, UpdateOperation,
    VectorStructInternal, Vectors, WithPayloadInterface, WithVector,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{PAGE, backend};
use crate::json_file::{self, AtomicWrite, sync_dir};
use crate::store::{CollectionSpec, IndexSettings, Quantization, StoreError, StoreResult};

/// Name of the commit file inside the store directory.
pub(super) const COLLECTION_FILE: &str = "collection.json";
/// Version of the `collection.json` format.
pub(super) const FORMAT: u32 = 1;
/// Prefix of shard generation directories.
pub(super) const SHARD_PREFIX: &str = "shard-";
/// Name of the index settings file inside the store directory (absent in stores made before
/// it existed: they use [`IndexSettings::default`]).
pub(super) const INDEX_FILE: &str = "index.json";
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
    write_atomic(dir, COLLECTION_FILE, manifest)
}

/// Reads `index.json`; `defaults` when it is absent.
pub(super) fn read_index_settings(
    dir: &Path,
    defaults: &IndexSettings,
) -> StoreResult<IndexSettings> {
    let path = dir.join(INDEX_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(defaults.clone());
        }
        Err(err) => return Err(err.into()),
    };
    let settings: IndexSettings = serde_json::from_slice(&bytes)
        .map_err(|err| StoreError::Backend(format!("reading {}: {err}", path.display())))?;
    match settings.validate() {
        Err(StoreError::Backend(why)) => {
            Err(StoreError::Backend(format!("{}: {why}", path.display())))
        }
        other => other.map(|()| settings),
    }
}

/// Atomically replaces `index.json`.
pub(super) fn write_index_settings(dir: &Path, settings: &IndexSettings) -> StoreResult<()> {
    write_atomic(dir, INDEX_FILE, settings)
}

/// Atomically replaces `dir/name` with `value` as JSON ([`json_file::write_atomic_with`]
/// through `dir/name.tmp`, a directory that cannot be synced failing the write).
fn write_atomic(dir: &Path, name: &str, value: &impl Serialize) -> StoreResult<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|err| StoreError::Backend(format!("encoding {name}: {err}")))?;
    let how = AtomicWrite {
        tmp: Some(dir.join(format!("{name}.tmp"))),
        strict_dir_sync: true,
        ..AtomicWrite::default()
    };
    json_file::write_atomic_with(&dir.join(name), &bytes, &how).map_err(|err| match err {
        crate::Error::Io { source, .. } => StoreError::Io(source),
        other => StoreError::Backend(other.to_string()),
    })
}

/// Deletes every `shard-*` directory except generation `keep`, and a stray manifest temp file.
pub(super) fn remove_stale_shards(dir: &Path, keep: Option<u64>) -> StoreResult<()> {
    let keep = keep.map(|g| format!("{SHARD_PREFIX}{g}"));
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == format!("{COLLECTION_FILE}.tmp") || name == format!("{INDEX_FILE}.tmp") {
            fs::remove_file(entry.path())?;
        } else if name.starts_with(SHARD_PREFIX) && Some(name) != keep.as_deref() {
            tracing::warn!(path = %entry.path().display(), "removing uncommitted vector shard");
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(sync_dir(dir)?)
}

/// The qdrant settings that carry `settings` for a collection of `spec` holding `points`
/// points: the graph's shape (its full-scan threshold grown with the points, see
/// [`IndexSettings::full_scan_kb_for`]), the optimizer thresholds (which segments get a graph)
/// and the quantization.
pub(super) fn qdrant_index(
    spec: &CollectionSpec,
    settings: &IndexSettings,
    points: usize,
) -> StoreResult<(
    HnswIndexConfig,
    EdgeOptimizersConfig,
    Option<QuantizationConfig>,
)> {
    settings.validate()?;
    let hnsw = HnswIndexConfig {
        m: settings.m,
        ef_construct: settings.ef_construct,
        full_scan_threshold: settings.full_scan_kb_for(points, spec.dim),
        ..HnswIndexConfig::default()
    };
    let indexing_threshold = settings.indexing_threshold_kb(spec.dim);
    let optimizers = EdgeOptimizersConfig {
        // `compact` rebuilds instead of vacuuming, but when `optimize` runs, vacuum any
        // segment with deletions rather than waiting for 20% of 1000 points.
        deleted_threshold: Some(0.0),
        vacuum_min_vector_number: Some(0),
        indexing_threshold: Some(indexing_threshold),
        ..EdgeOptimizersConfig::default()
    };
    let quantization = match settings.quantization {
        Quantization::None => None,
        Quantization::Int8 => Some(
            serde_json::from_value(json!({
                "scalar": {"type": "int8", "quantile": 0.99, "always_ram": true}
            }))
            .map_err(|err| StoreError::Backend(format!("int8 quantization config: {err}")))?,
        ),
    };
    Ok((hnsw, optimizers, quantization))
}

/// Sets where `config` keeps each named vector's full vectors (on disk, memory-mapped, or in
/// RAM; see [`IndexSettings::on_disk`]); answers whether anything changed. A shard made before
/// the setting existed has no value (qdrant's default: RAM).
pub(super) fn place_vectors(config: &mut EdgeConfig, on_disk: bool) -> bool {
    let mut changed = false;
    for params in config.vectors.values_mut() {
        if params.on_disk.unwrap_or(false) != on_disk {
            params.on_disk = Some(on_disk);
            changed = true;
        }
    }
    changed
}

/// Creates shard generation `generation` for `spec` with its payload indexes and the qdrant
/// form of `settings` for `points` points (the ones it is made to hold: 0 for a new
/// collection, the live points for a compaction's copy; see [`qdrant_index`]), flushed.
pub(super) fn create_shard(
    dir: &Path,
    generation: u64,
    spec: &CollectionSpec,
    settings: &IndexSettings,
    points: usize,
) -> StoreResult<EdgeShard> {
    let (hnsw, optimizers, quantization) = qdrant_index(spec, settings, points)?;
    let path = shard_dir(dir, generation);
    if path.exists() {
        fs::remove_dir_all(&path)?;
    }
    fs::create_dir_all(&path)?;
    let mut config = EdgeConfigBuilder::new().optimizers(optimizers);
    for name in &spec.vectors {
        config = config.vector(
            name.clone(),
            EdgeVectorParamsBuilder::new(spec.dim, Distance::Cosine)
                .on_disk(settings.on_disk)
                .build(),
        );
    }
    let mut config = config.build();
    config.hnsw_config = hnsw;
    config.quantization_config = quantization;
    let shard = EdgeShard::new(&path, config).map_err(backend)?;
    create_payload_indexes(&shard, &spec.keyword_fields, &spec.integer_fields)?;
    flush_shard(&shard)?;
    Ok(shard)
}

/// Builds a payload index on each of these keyword and integer fields of `shard`.
///
/// Integer (range-filtered) fields get no payload-aware graph links (`enable_hnsw: false`,
/// see [`crate::store::RANGE_FIELD_LINKS`]); keyword fields keep qdrant's default.
pub(super) fn create_payload_indexes(
    shard: &EdgeShard,
    keyword: &[String],
    integer: &[String],
) -> StoreResult<()> {
    let integer_schema = json!({
        "type": "integer",
        "lookup": true,
        "range": true,
        "enable_hnsw": crate::store::RANGE_FIELD_LINKS,
    });
    let fields = keyword
        .iter()
        .map(|f| (f, json!("keyword")))
        .chain(integer.iter().map(|f| (f, integer_schema.clone())));
    for (field, schema) in fields {
        let create =
            serde_json::from_value(json!({"field_name": field, "field_schema": schema}))
                .map_err(|err| StoreError::Backend(format!("payload index on {field:?}: {err}")))?;
        update(
            shard,
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(create)),
        )?;
    }
    Ok(())
}

/// Rebuilds the payload index of each integer field of `shard` whose payload-aware graph
/// links differ from [`crate::store::RANGE_FIELD_LINKS`] (a library made before the constant
/// was `false` has them on), so that graphs built from now on (the next optimize of segments
/// without one) skip them; graphs already built keep theirs until their segment is rebuilt.
/// Returns the fields rebuilt.
pub(super) fn align_range_field_links(
    shard: &EdgeShard,
    integer: &[String],
) -> StoreResult<Vec<String>> {
    let schema = shard.info().payload_schema;
    let mut rebuilt = Vec::new();
    for field in integer {
        let Some(info) = schema
            .iter()
            .find(|(k, _)| k.to_string() == *field)
            .map(|(_, i)| i)
        else {
            continue;
        };
        let info = serde_json::to_value(info)
            .map_err(|err| StoreError::Backend(format!("payload index of {field:?}: {err}")))?;
        // No params: qdrant's defaults, links on.
        let links = info["params"]["enable_hnsw"].as_bool().unwrap_or(true);
        if links == crate::store::RANGE_FIELD_LINKS {
            continue;
        }
        let field_name = field
            .parse()
            .map_err(|err| StoreError::Backend(format!("field {field:?}: {err:?}")))?;
        update(
            shard,
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::DeleteIndex(field_name)),
        )?;
        create_payload_indexes(shard, &[], std::slice::from_ref(field))?;
        rebuilt.push(field.clone());
    }
    Ok(rebuilt)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard's integer fields are indexed without payload-aware graph links, its keyword
    /// fields with qdrant's default (links on), as `RANGE_FIELD_LINKS` says.
    #[test]
    fn range_fields_get_no_payload_graph_links() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CollectionSpec {
            dim: 4,
            vectors: vec!["image".into()],
            keyword_fields: vec!["labels".into()],
            integer_fields: vec!["captured".into()],
        };
        let shard = create_shard(dir.path(), 1, &spec, &IndexSettings::default(), 0).unwrap();
        let schema: HashMap<String, Value> = shard
            .info()
            .payload_schema
            .iter()
            .map(|(key, info)| (key.to_string(), serde_json::to_value(info).unwrap()))
            .collect();
        assert_eq!(schema["captured"]["data_type"], "integer");
        assert_eq!(
            schema["captured"]["params"]["enable_hnsw"],
            json!(crate::store::RANGE_FIELD_LINKS)
        );
        assert_eq!(schema["captured"]["params"]["range"], json!(true));
        assert_eq!(schema["labels"]["data_type"], "keyword");
        let keyword_links = &schema["labels"]["params"]["enable_hnsw"];
        assert!(keyword_links.is_null() || *keyword_links == json!(true));
    }

    /// A shard whose date index was made with links (qdrant's default, as libraries made before
    /// `RANGE_FIELD_LINKS` have it) gets it rebuilt to the constant, once; its points still
    /// match range filters through the rebuilt index.
    #[test]
    fn an_older_date_index_is_rebuilt_to_the_constant_once() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CollectionSpec {
            dim: 2,
            vectors: vec!["image".into()],
            keyword_fields: vec![],
            integer_fields: vec![],
        };
        let shard = create_shard(dir.path(), 1, &spec, &IndexSettings::default(), 0).unwrap();
        let old =
            serde_json::from_value(json!({"field_name": "captured", "field_schema": "integer"}))
                .unwrap();
        update(
            &shard,
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(old)),
        )
        .unwrap();
        let mut payload = crate::store::Payload::default();
        payload.insert("captured", 42i64);
        let point = super::super::convert::to_edge_point(crate::store::VectorPoint {
            id: 1,
            vectors: [("image".to_owned(), vec![1.0, 0.0])].into(),
            payload,
        });
        update(
            &shard,
            UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                PointInsertOperations::PointsList(vec![point]),
            )),
        )
        .unwrap();
        let integer = ["captured".to_owned()];
        let rebuilt = align_range_field_links(&shard, &integer).unwrap();
        assert_eq!(rebuilt.len(), usize::from(!crate::store::RANGE_FIELD_LINKS));
        assert!(
            align_range_field_links(&shard, &integer)
                .unwrap()
                .is_empty()
        );
        let info = serde_json::to_value(&shard.info().payload_schema).unwrap();
        assert_eq!(
            info["captured"]["params"]["enable_hnsw"],
            json!(crate::store::RANGE_FIELD_LINKS)
        );
        assert_eq!(info["captured"]["points"], 1, "{info}");
    }
}
