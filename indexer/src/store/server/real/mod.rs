//! The [`ServerStore`] on qdrant-client (feature `server`): connecting, the collection
//! layout, index settings and status.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qdrant_client::qdrant::{
    self, AcornSearchParamsBuilder, CollectionInfo, CollectionStatus, Condition as QCondition,
    CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeleteCollectionBuilder, DeleteFieldIndexCollectionBuilder, DeletePointsBuilder, Distance,
    FieldType, GetPointsBuilder, HnswConfigDiff, IntegerIndexParamsBuilder, OptimizersConfigDiff,
    PayloadIncludeSelector, PayloadSchemaType, PointStruct, PointsIdsList, Query,
    QueryBatchPointsBuilder, QueryPointsBuilder, ReplicaState, ScalarQuantization,
    ScrollPointsBuilder, SearchParamsBuilder, UpdateCollection, UpsertPointsBuilder,
    VectorParamsBuilder, VectorsConfigBuilder, VectorsSelector, WriteOrdering, WriteOrderingType,
    payload_index_params, point_id::PointIdOptions, quantization_config, quantization_config_diff,
    value::Kind, vector_output, vectors_config, vectors_output,
};
use qdrant_client::{Qdrant, QdrantError};
use serde_json::Value;

use super::{INDEX_METADATA_KEY, ServerOptions, ServerStatus, ShardReplica, UPSERT_BATCH, backend};
use crate::store::spec::{added_fields, check_vector, describe, normalize};
use crate::store::{
    CollectionSpec, Condition, Hit, IndexKind, IndexSettings, IndexState, Payload, PointId,
    Quantization, StoreError, StoreResult, VectorFilter, VectorPoint, VectorQuery, VectorStore,
};

/// Points per scroll page in [`VectorStore::distinct`].
const PAGE: u32 = 1_000;

/// How often [`VectorStore::optimize`] asks whether the server's optimizers are done.
const OPTIMIZE_POLL: Duration = Duration::from_millis(200);

/// After this store changed the collection (a write or new index settings), how long
/// [`VectorStore::optimize`] must see the collection green before it believes it: the
/// server answers an update before its new optimizers have started ("starting new
/// optimizers is not blocking", Qdrant's `recreate_optimizers_blocking`), and a status
/// asked for in between is green although a rebuild is about to start (seen in
/// `benches/server_index.rs`). Seeing it not green ends the wait for that start at once.
const SETTLE: Duration = Duration::from_secs(1);

/// Qdrant's `indexing_threshold` when a collection's optimizer config leaves it unset
/// (its documented default, in KiB).
const QDRANT_DEFAULT_INDEXING_KB: u64 = 10_000;

/// A collection on a Qdrant server or cluster.
pub struct ServerStore {
    client: Qdrant,
    url: String,
    collection: String,
    options: ServerOptions,
    runtime: tokio::runtime::Runtime,
    /// The collection's spec as read from the server; `None` until it exists.
    spec: RwLock<Option<CollectionSpec>>,
    /// The index settings as last read from (or written to) the collection; before the
    /// collection exists, the ones [`VectorStore::ensure`] will create it with.
    index: RwLock<IndexSettings>,
    /// Whether this store changed the collection since the last [`VectorStore::optimize`]
    /// (which then waits for the server's optimizers to start, see [`SETTLE`]).
    changed: AtomicBool,
}

impl std::fmt::Debug for ServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerStore")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ServerStore {
    /// [`ServerStore::connect_with`] with default options.
    ///
    /// # Errors
    /// As [`ServerStore::connect_with`].
    pub fn connect(url: &str, collection: &str) -> StoreResult<Self> {
        Self::connect_with(url, collection, ServerOptions::default())
    }

    /// Connects to the gRPC endpoint `url` (`http://host:6334`, or `https://` for TLS) and
    /// reads the spec of `collection` if it exists.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the server cannot be reached within the deadline;
    /// [`StoreError::Backend`] for a bad URL or an unreadable collection;
    /// [`StoreError::Io`] if the private runtime cannot start.
    pub fn connect_with(url: &str, collection: &str, options: ServerOptions) -> StoreResult<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("qdrant-client")
            .enable_all()
            .build()?;
        let deadline = options.deadline();
        let client = Qdrant::from_url(url)
            .api_key(options.api_key.clone())
            .timeout(deadline)
            .connect_timeout(deadline.min(Duration::from_secs(10)))
            .skip_compatibility_check()
            .build()
            .map_err(|e| StoreError::Backend(format!("Qdrant url {url:?}: {e}")))?;
        let store = Self {
            client,
            url: url.to_owned(),
            collection: collection.to_owned(),
            options,
            runtime,
            spec: RwLock::new(None),
            index: RwLock::new(IndexSettings::default()),
            changed: AtomicBool::new(false),
        };
        if let Some((spec, index)) = store.read_collection()? {
            *store.spec.write().map_err(|_| poisoned())? = Some(spec);
            *store.index.write().map_err(|_| poisoned())? = index;
        }
        Ok(store)
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The collection name.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Deletes the whole collection on the server (tests and tooling).
    ///
    /// # Errors
    /// Backend failures.
    pub fn drop_collection(&self) -> StoreResult<()> {
        self.block_on(
            self.client
                .delete_collection(DeleteCollectionBuilder::new(&self.collection)),
        )?;
        *self.spec.write().map_err(|_| poisoned())? = None;
        Ok(())
    }

    /// The server's version and the collection's points, layout and replica states.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the server does not answer; backend failures.
    pub fn status(&self) -> StoreResult<ServerStatus> {
        let version = self.block_on(self.client.health_check())?.version;
        let mut status = ServerStatus {
            url: self.url.clone(),
            version,
            collection: self.collection.clone(),
            exists: false,
            status: "absent".into(),
            points: 0,
            indexed_vectors: 0,
            shard_number: 0,
            replication_factor: 0,
            write_consistency_factor: 0,
            replicas: Vec::new(),
        };
        if !self.block_on(self.client.collection_exists(&self.collection))? {
            return Ok(status);
        }
        let info = self
            .block_on(self.client.collection_info(&self.collection))?
            .result
            .ok_or_else(|| StoreError::Backend("collection info is empty".into()))?;
        status.exists = true;
        status.status = CollectionStatus::try_from(info.status)
            .map_or("unknown", |s| s.as_str_name())
            .to_ascii_lowercase();
        status.points = info.points_count.unwrap_or(0);
        status.indexed_vectors = info.indexed_vectors_count.unwrap_or(0);
        if let Some(params) = info.config.and_then(|c| c.params) {
            status.shard_number = params.shard_number;
            status.replication_factor = params.replication_factor.unwrap_or(1);
            status.write_consistency_factor = params.write_consistency_factor.unwrap_or(1);
        }
        let cluster = self.block_on(self.client.collection_cluster_info(&self.collection))?;
        let state = |s: i32| {
            ReplicaState::try_from(s)
                .map_or("Unknown", |s| s.as_str_name())
                .to_owned()
        };
        for local in &cluster.local_shards {
            status.replicas.push(ShardReplica {
                shard: local.shard_id,
                peer: cluster.peer_id,
                state: state(local.state),
                points: Some(local.points_count),
            });
        }
        for remote in &cluster.remote_shards {
            status.replicas.push(ShardReplica {
                shard: remote.shard_id,
                peer: remote.peer_id,
                state: state(remote.state),
                points: None,
            });
        }
        status.replicas.sort_by_key(|r| (r.shard, r.peer));
        Ok(status)
    }

    /// Runs a client call on the private runtime under the request deadline.
    fn block_on<T>(&self, future: impl Future<Output = Result<T, QdrantError>>) -> StoreResult<T> {
        let deadline = self.options.deadline();
        // The client's own deadline covers each gRPC call; this one also covers connecting
        // and the client's single retry, so no call outlives it by more than a second.
        let outer = deadline + Duration::from_secs(1);
        match self
            .runtime
            .block_on(async { tokio::time::timeout(outer, future).await })
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(self.classify(err)),
            Err(_) => Err(self.unavailable(format!(
                "no answer within {}s (the request timeout)",
                deadline.as_secs_f32()
            ))),
        }
    }

    /// The reason on one line (CLI errors are one line).
    fn unavailable(&self, reason: String) -> StoreError {
        StoreError::Unavailable {
            url: self.url.clone(),
            reason: reason.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }

    /// Unreachable, overloaded or too slow: [`StoreError::Unavailable`]; anything else
    /// (a request the server refused): [`StoreError::Backend`].
    fn classify(&self, err: QdrantError) -> StoreError {
        use tonic::Code;
        match &err {
            QdrantError::ResponseError { status } => match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                    self.unavailable(status.message().to_owned())
                }
                Code::Unauthenticated | Code::PermissionDenied => StoreError::Backend(format!(
                    "the Qdrant server at {} refused the API key: {}",
                    self.url,
                    status.message()
                )),
                // A connection that failed before any answer: the client's channel pool
                // reports it as `Internal` "Failed to connect to ..." (qdrant-client 1.20,
                // seen against a killed server), tonic as `Unknown` "transport error".
                Code::Internal | Code::Unknown
                    if status.message().contains("Failed to connect")
                        || status.message().contains("transport error") =>
                {
                    self.unavailable(status.message().to_owned())
                }
                _ => backend(err),
            },
            QdrantError::ResourceExhaustedError {
                retry_after_seconds,
                ..
            } => self.unavailable(format!(
                "the server is overloaded; it asks to retry after {retry_after_seconds}s"
            )),
            QdrantError::Io(e) => self.unavailable(e.to_string()),
            _ => backend(err),
        }
    }

    fn spec(&self) -> StoreResult<CollectionSpec> {
        self.spec
            .read()
            .map_err(|_| poisoned())?
            .clone()
            .ok_or(StoreError::Missing)
    }

    fn has_spec(&self) -> StoreResult<bool> {
        Ok(self.spec.read().map_err(|_| poisoned())?.is_some())
    }

    /// The collection's info; `None` when it does not exist.
    fn info(&self) -> StoreResult<Option<CollectionInfo>> {
        if !self.block_on(self.client.collection_exists(&self.collection))? {
            return Ok(None);
        }
        self.block_on(self.client.collection_info(&self.collection))?
            .result
            .map(Some)
            .ok_or_else(|| StoreError::Backend("collection info is empty".into()))
    }

    /// Builds a payload index on each of these keyword and integer fields, waiting for each;
    /// integer fields without payload-aware graph links, as the embedded store builds them
    /// ([`crate::store::RANGE_FIELD_LINKS`]).
    fn create_field_indexes(&self, keyword: &[String], integer: &[String]) -> StoreResult<()> {
        for field in keyword {
            self.block_on(
                self.client.create_field_index(
                    CreateFieldIndexCollectionBuilder::new(
                        &self.collection,
                        field,
                        FieldType::Keyword,
                    )
                    .wait(true),
                ),
            )?;
        }
        for field in integer {
            let params = IntegerIndexParamsBuilder::new(true, true)
                .enable_hnsw(crate::store::RANGE_FIELD_LINKS);
            self.block_on(
                self.client.create_field_index(
                    CreateFieldIndexCollectionBuilder::new(
                        &self.collection,
                        field,
                        FieldType::Integer,
                    )
                    .field_index_params(params)
                    .wait(true),
                ),
            )?;
        }
        Ok(())
    }

    /// Rebuilds each integer (date) index of the collection whose payload-aware graph links
    /// differ from [`crate::store::RANGE_FIELD_LINKS`] (a collection made before imagelens
    /// named them has qdrant's default, links on): dropped and created again with the
    /// constant's params, waiting for each. Returns the fields rebuilt. Graphs the server
    /// already built keep their extra links until the optimizers rebuild their segment;
    /// filters stay exact throughout (a field without an index is filtered by its values).
    fn align_range_field_links(&self, info: &CollectionInfo) -> StoreResult<Vec<String>> {
        let mut rebuilt = Vec::new();
        for (field, schema) in &info.payload_schema {
            if schema.data_type != PayloadSchemaType::Integer as i32 {
                continue;
            }
            let links = match schema.params.as_ref().and_then(|p| p.index_params.as_ref()) {
                Some(payload_index_params::IndexParams::IntegerIndexParams(params)) => {
                    params.enable_hnsw.unwrap_or(true)
                }
                _ => true,
            };
            if links == crate::store::RANGE_FIELD_LINKS {
                continue;
            }
            self.block_on(self.client.delete_field_index(
                DeleteFieldIndexCollectionBuilder::new(&self.collection, field).wait(true),
            ))?;
            self.create_field_indexes(&[], std::slice::from_ref(field))?;
            rebuilt.push(field.clone());
        }
        rebuilt.sort();
        Ok(rebuilt)
    }

    /// The spec and index settings of the collection, read from the server; `None` when
    /// it does not exist.
    fn read_collection(&self) -> StoreResult<Option<(CollectionSpec, IndexSettings)>> {
        let Some(info) = self.info()? else {
            return Ok(None);
        };
        let spec = self.spec_of(&info)?;
        let index = self.index_of(&info, &spec)?;
        Ok(Some((spec, index)))
    }

    /// Reconstructs the spec from the server's collection info.
    fn spec_of(&self, info: &CollectionInfo) -> StoreResult<CollectionSpec> {
        let params = info
            .config
            .as_ref()
            .and_then(|c| c.params.clone())
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config);
        let map = match params {
            Some(vectors_config::Config::ParamsMap(map)) => map.map,
            _ => {
                return Err(StoreError::Backend(format!(
                    "collection {:?} has no named vectors",
                    self.collection
                )));
            }
        };
        let mut dims = BTreeSet::new();
        let mut vectors = Vec::new();
        for (name, params) in map {
            if params.distance != Distance::Cosine as i32 {
                return Err(StoreError::Backend(format!(
                    "vector {name:?} of collection {:?} is not cosine",
                    self.collection
                )));
            }
            dims.insert(params.size);
            vectors.push(name);
        }
        let dim = match dims.into_iter().collect::<Vec<_>>()[..] {
            [dim] => usize::try_from(dim).map_err(backend)?,
            ref dims => {
                return Err(StoreError::Backend(format!("mixed vector sizes {dims:?}")));
            }
        };
        let mut keyword_fields = Vec::new();
        let mut integer_fields = Vec::new();
        for (field, schema) in &info.payload_schema {
            if schema.data_type == PayloadSchemaType::Keyword as i32 {
                keyword_fields.push(field.clone());
            } else if schema.data_type == PayloadSchemaType::Integer as i32 {
                integer_fields.push(field.clone());
            }
        }
        normalize(&CollectionSpec {
            dim,
            vectors,
            keyword_fields,
            integer_fields,
        })
    }

    /// The index settings of a collection: the ones recorded in its metadata
    /// ([`INDEX_METADATA_KEY`]; the defaults when there are none), corrected by what the
    /// collection's config says it does. The config is the truth for the graph shape
    /// (`m`, `ef_construct`, `full_scan_threshold`), the quantization and which segments
    /// get a graph (`indexing_threshold`): when the recorded kind no longer produces the
    /// configured threshold (someone changed the collection with another client, or it
    /// was made before imagelens kept settings), the kind is read from the threshold.
    fn index_of(&self, info: &CollectionInfo, spec: &CollectionSpec) -> StoreResult<IndexSettings> {
        let config = info.config.as_ref();
        let mut settings = match config.and_then(|c| c.metadata.get(INDEX_METADATA_KEY)) {
            None => IndexSettings::default(),
            Some(value) => {
                let recorded: IndexSettings = serde_json::from_value(from_value(value.clone()))
                    .map_err(|e| {
                        StoreError::Backend(format!(
                            "collection {:?}: metadata {INDEX_METADATA_KEY:?}: {e}",
                            self.collection
                        ))
                    })?;
                recorded.validate().map_err(|e| {
                    StoreError::Backend(format!(
                        "collection {:?}: metadata {INDEX_METADATA_KEY:?}: {e}",
                        self.collection
                    ))
                })?;
                recorded
            }
        };
        let number = |v: Option<u64>, what: &str| -> StoreResult<Option<usize>> {
            v.map(|v| {
                usize::try_from(v).map_err(|_| {
                    StoreError::Backend(format!("collection {what} {v} is out of range"))
                })
            })
            .transpose()
        };
        if let Some(hnsw) = config.and_then(|c| c.hnsw_config.as_ref()) {
            settings.m = number(hnsw.m, "hnsw m")?.unwrap_or(settings.m);
            settings.ef_construct =
                number(hnsw.ef_construct, "hnsw ef_construct")?.unwrap_or(settings.ef_construct);
            settings.full_scan_kb = number(hnsw.full_scan_threshold, "full_scan_threshold")?
                .unwrap_or(settings.full_scan_kb);
        }
        settings.quantization = match config
            .and_then(|c| c.quantization_config.as_ref())
            .and_then(|q| q.quantization.as_ref())
        {
            None => Quantization::None,
            Some(quantization_config::Quantization::Scalar(s))
                if s.r#type == qdrant::QuantizationType::Int8 as i32 =>
            {
                Quantization::Int8
            }
            Some(other) => {
                return Err(StoreError::Backend(format!(
                    "collection {:?} uses a quantization imagelens does not manage: {other:?}",
                    self.collection
                )));
            }
        };
        let threshold = config
            .and_then(|c| c.optimizer_config.as_ref())
            .and_then(|o| o.indexing_threshold)
            .unwrap_or(QDRANT_DEFAULT_INDEXING_KB);
        if settings.indexing_threshold_kb(spec.dim) as u64 != threshold {
            let kb_per_point = (spec.dim * 4) as f64 / 1024.0;
            settings.kind = match threshold {
                0 => IndexKind::Exact,
                1 => IndexKind::Hnsw,
                kb => {
                    settings.auto_threshold =
                        ((kb as f64 / kb_per_point).floor() as usize).clamp(1, 1_000_000_000);
                    IndexKind::Auto
                }
            };
        }
        // A collection changed by hand may hold numbers our bounds refuse: say so.
        settings
            .validate()
            .map_err(|e| StoreError::Backend(format!("collection {:?}: {e}", self.collection)))?;
        Ok(settings)
    }

    fn index(&self) -> StoreResult<IndexSettings> {
        self.index.read().map(|s| s.clone()).map_err(|_| poisoned())
    }

    /// The request for one search, with the index settings' search-time values exactly
    /// as [`EdgeStore`](crate::store::EdgeStore) uses them: an exact scan when the query or
    /// the kind asks for one, a beam of `max(ef, limit)`, and with int8 the quantized
    /// copies searched `oversampling` per hit and rescored with the original vectors (with
    /// quantization off, or an exact scan, quantized copies left from earlier settings are
    /// ignored).
    fn query_points(&self, query: &VectorQuery, settings: &IndexSettings) -> qdrant::QueryPoints {
        use qdrant::with_payload_selector::SelectorOptions;
        let exact = query.exact || settings.kind == IndexKind::Exact;
        let quantization = match settings.quantization {
            Quantization::None => qdrant::QuantizationSearchParams {
                ignore: Some(true),
                rescore: None,
                oversampling: None,
            },
            Quantization::Int8 => qdrant::QuantizationSearchParams {
                ignore: Some(exact),
                rescore: Some(true),
                oversampling: Some(settings.oversampling),
            },
        };
        let params = SearchParamsBuilder::default()
            .exact(exact)
            .hnsw_ef(settings.ef.max(query.limit) as u64)
            .quantization(quantization)
            .acorn(AcornSearchParamsBuilder::new(settings.acorn));
        let mut request = QueryPointsBuilder::new(&self.collection)
            .query(Query::new_nearest(query.vector.clone()))
            .using(&query.using)
            .limit(query.limit as u64)
            .with_payload(match query.returned_keys() {
                None => SelectorOptions::Enable(true),
                Some(keys) => SelectorOptions::Include(keys.into()),
            })
            .params(params);
        if let Some(filter) = to_filter(&query.filter) {
            request = request.filter(filter);
        }
        request.build()
    }

    /// The collection's config for `settings`: graph shape, which segments get a graph,
    /// and the int8 copies (quantile 0.99, kept in RAM) or none.
    #[allow(deprecated)] // `always_ram`: the 1.18 server does not know its successor `memory`.
    fn index_config(
        spec: &CollectionSpec,
        settings: &IndexSettings,
    ) -> (
        HnswConfigDiff,
        OptimizersConfigDiff,
        Option<ScalarQuantization>,
    ) {
        let hnsw = HnswConfigDiff {
            m: Some(settings.m as u64),
            ef_construct: Some(settings.ef_construct as u64),
            full_scan_threshold: Some(settings.full_scan_kb as u64),
            ..HnswConfigDiff::default()
        };
        let optimizers = OptimizersConfigDiff {
            indexing_threshold: Some(settings.indexing_threshold_kb(spec.dim) as u64),
            ..OptimizersConfigDiff::default()
        };
        let int8 = (settings.quantization == Quantization::Int8).then_some(ScalarQuantization {
            r#type: qdrant::QuantizationType::Int8 as i32,
            quantile: Some(0.99),
            always_ram: Some(true),
            memory: None,
        });
        (hnsw, optimizers, int8)
    }

    /// The settings as collection metadata.
    fn index_metadata(settings: &IndexSettings) -> StoreResult<HashMap<String, qdrant::Value>> {
        let json = serde_json::to_value(settings).map_err(backend)?;
        Ok(HashMap::from([(
            INDEX_METADATA_KEY.to_owned(),
            to_value(json),
        )]))
    }
}

/// The hits as ours. Qdrant applies filters exactly; every hit is still checked against
/// the filter, as [`EdgeStore`](crate::store::EdgeStore) does after a graph search
/// returned a point outside one, so filters stay exact whatever the index.
fn hits(points: Vec<qdrant::ScoredPoint>, filter: &VectorFilter) -> StoreResult<Vec<Hit>> {
    let mut hits = Vec::with_capacity(points.len());
    for p in points {
        let hit = Hit {
            id: from_id(p.id)?,
            score: p.score,
            payload: to_payload(p.payload),
        };
        if filter.matches(hit.id, &hit.payload) {
            hits.push(hit);
        }
    }
    Ok(hits)
}

/// The ordering of deletions: through the shard's dynamically elected leader (`medium`).
/// `strong` goes through the shard's permanent leader and so fails while that node is down
/// (the 3-node cluster test saw every deletion refused with one node killed). Medium's
/// caveat is a reordering of concurrent writes around a leader change; this store has one
/// writer per library (the data directory's lock) and waits for each write to be applied
/// (`wait=true`) before it sends the next, so its writes never overlap.
fn ordered() -> WriteOrdering {
    WriteOrdering {
        r#type: WriteOrderingType::Medium as i32,
    }
}

mod convert;
mod store;
use convert::*;
