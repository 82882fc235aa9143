//! [`ServerStore`]: the [`VectorStore`](super::VectorStore) on a Qdrant server or cluster through
//! qdrant-client (cargo feature `server`), and [`QdrantProcess`], a real Qdrant server started on
//! loopback ports for tests and scripts.
//!
//! Without the feature [`ServerStore`] is a stub, in the manner of candle's dummy CUDA backend:
//! [`ServerStore::connect`] returns [`StoreError::NotCompiled`], so callers (`Library`, `app.rs`)
//! need no `#[cfg]` of their own.
//!
//! With the feature, every qdrant-client type stays inside this file. The client is async; the
//! store owns a private one-worker tokio runtime and blocks on it, so like every store method
//! these block: from async code call them inside `tokio::task::spawn_blocking` (blocking on the
//! private runtime from a runtime thread panics).
//!
//! # Invariants (shared with the edge store, checked by `tests/store_suite.rs`)
//!
//! - Every write (upsert, delete) is sent with `wait=true`: when the call returns it is applied
//!   (and in the server's WAL, which the server replays after a crash). Deletions also ask for
//!   `ordering=strong` (through the shard's permanent leader), so in a cluster a deletion that
//!   returned is applied on every replica that acknowledged it; a replica that did not is marked
//!   dead by the server and re-synchronised from a live one before it serves again.
//! - Upserts are checked whole before anything is sent (a bad vector stores nothing), then sent
//!   in batches of [`UPSERT_BATCH`] points, one at a time, each waited for: the server's
//!   acknowledgement is the back-pressure. Points have deterministic ids, so re-sending a batch
//!   after a failure replaces, never duplicates.
//! - The collection spec is read back from the server's collection info (vector names, size,
//!   cosine distance, payload index types), so a second process with another spec gets
//!   [`StoreError::SpecMismatch`]. Every filter field gets a payload index when the collection
//!   is created.
//! - Every request has a deadline ([`ServerOptions::timeout`]); a server that is down, refuses,
//!   or does not answer in time is [`StoreError::Unavailable`] naming the URL, never a hang.
//! - The [`IndexSettings`](super::IndexSettings) live with the collection: its HNSW, optimizer
//!   and quantization config carry them, and its user metadata ([`INDEX_METADATA_KEY`]) keeps
//!   the values the config has no field for. They are validated before anything is sent, and
//!   read back when a store connects; searches use them as the embedded store does.
//! - The client's version check is skipped: it prints to stdout (which would corrupt `--json`
//!   output) and the client (1.20) is two minor versions ahead of the server we test against
//!   (1.18.3); compatibility is established by the conformance suite running against that
//!   server instead.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::StoreError;
#[cfg(not(feature = "server"))]
use super::{
    CollectionSpec, Hit, PointId, StoreResult, VectorFilter, VectorPoint, VectorQuery, VectorStore,
};
#[cfg(not(feature = "server"))]
use std::collections::BTreeSet;

#[cfg(feature = "server")]
pub use real::ServerStore;

/// Points per upsert request.
pub const UPSERT_BATCH: usize = 256;

/// Key of a server collection's user metadata that holds its
/// [`IndexSettings`](super::IndexSettings) as JSON: the search-time values (`ef`,
/// `oversampling`), and the kind where the collection's config cannot tell `auto` from `hnsw`,
/// have no collection field of their own.
pub const INDEX_METADATA_KEY: &str = "imagelens_index";

/// Default deadline of one request to the server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest request deadline accepted (an hour): a user-controlled timeout stays bounded.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// How a [`ServerStore`] talks to its server and lays out a collection it creates.
///
/// The layout fields only matter when [`VectorStore::ensure`](super::VectorStore::ensure)
/// creates the collection; an existing collection keeps the layout it was created with.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// API key sent with every request (Qdrant's `api-key` header).
    pub api_key: Option<String>,
    /// Deadline of one request ([`DEFAULT_TIMEOUT`] when `None`, at most [`MAX_TIMEOUT`]).
    pub timeout: Option<Duration>,
    /// Shards of a new collection (the server's default, 1 per node, when `None`).
    pub shard_number: Option<u32>,
    /// Copies of each shard in a cluster.
    pub replication_factor: Option<u32>,
    /// Replicas that must acknowledge a write before it returns.
    pub write_consistency_factor: Option<u32>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("shard_number", &self.shard_number)
            .field("replication_factor", &self.replication_factor)
            .field("write_consistency_factor", &self.write_consistency_factor)
            .finish()
    }
}

impl ServerOptions {
    /// The request deadline in force.
    pub fn deadline(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT).min(MAX_TIMEOUT)
    }
}

/// What `imagelens info` shows about a server-backed store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServerStatus {
    /// gRPC URL of the server.
    pub url: String,
    /// Server version (from its health check).
    pub version: String,
    /// Collection name.
    pub collection: String,
    /// Whether the collection exists yet (it is created by the first embedded ingest).
    pub exists: bool,
    /// Collection status: `green` (ready), `yellow` (optimizing), `grey`, `red`.
    pub status: String,
    /// Points in the collection (the server's approximate count).
    pub points: u64,
    /// Vectors already in an HNSW graph.
    pub indexed_vectors: u64,
    /// Shards of the collection.
    pub shard_number: u32,
    /// Copies of each shard.
    pub replication_factor: u32,
    /// Replicas that acknowledge each write.
    pub write_consistency_factor: u32,
    /// Every replica of every shard, as the answering peer sees it.
    pub replicas: Vec<ShardReplica>,
}

/// One replica of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShardReplica {
    /// Shard number.
    pub shard: u32,
    /// Peer (node) holding it.
    pub peer: u64,
    /// Replica state: `Active`, `Dead`, `Partial`, `Initializing`, ...
    pub state: String,
    /// Points in it; known only for replicas on the answering peer.
    pub points: Option<u64>,
}

/// Stand-in for the Qdrant server backend when the `server` feature is off: it cannot be
/// constructed ([`ServerStore::connect`] always fails with [`StoreError::NotCompiled`]).
#[cfg(not(feature = "server"))]
#[derive(Debug)]
pub struct ServerStore {
    _not_constructible: (),
}

#[cfg(not(feature = "server"))]
impl ServerStore {
    /// Always fails: this binary was built without `--features server`.
    ///
    /// # Errors
    /// Always [`StoreError::NotCompiled`]`("server")`.
    pub fn connect(url: &str, collection: &str) -> StoreResult<Self> {
        Self::connect_with(url, collection, ServerOptions::default())
    }

    /// Always fails: this binary was built without `--features server`.
    ///
    /// # Errors
    /// Always [`StoreError::NotCompiled`]`("server")`.
    pub fn connect_with(url: &str, collection: &str, options: ServerOptions) -> StoreResult<Self> {
        let _ = (url, collection, options);
        Err(not_compiled())
    }

    /// Never called: no stub can be constructed.
    ///
    /// # Errors
    /// Always [`StoreError::NotCompiled`]`("server")`.
    pub fn status(&self) -> StoreResult<ServerStatus> {
        Err(not_compiled())
    }

    /// Never called: no stub can be constructed.
    ///
    /// # Errors
    /// Always [`StoreError::NotCompiled`]`("server")`.
    pub fn drop_collection(&self) -> StoreResult<()> {
        Err(not_compiled())
    }
}

#[cfg(not(feature = "server"))]
fn not_compiled() -> StoreError {
    StoreError::NotCompiled("server")
}

#[cfg(not(feature = "server"))]
impl VectorStore for ServerStore {
    fn ensure(&self, _: &CollectionSpec) -> StoreResult<()> {
        Err(not_compiled())
    }
    fn upsert(&self, _: Vec<VectorPoint>) -> StoreResult<()> {
        Err(not_compiled())
    }
    fn search(&self, _: &VectorQuery) -> StoreResult<Vec<Hit>> {
        Err(not_compiled())
    }
    fn retrieve(&self, _: &[PointId]) -> StoreResult<Vec<Hit>> {
        Err(not_compiled())
    }
    fn vector(&self, _: PointId, _: &str) -> StoreResult<Option<Vec<f32>>> {
        Err(not_compiled())
    }
    fn delete(&self, _: &[PointId]) -> StoreResult<()> {
        Err(not_compiled())
    }
    fn delete_where(&self, _: &VectorFilter) -> StoreResult<()> {
        Err(not_compiled())
    }
    fn count(&self, _: &VectorFilter) -> StoreResult<usize> {
        Err(not_compiled())
    }
    fn distinct(&self, _: &str) -> StoreResult<BTreeSet<String>> {
        Err(not_compiled())
    }
    fn flush(&self) -> StoreResult<()> {
        Err(not_compiled())
    }
    fn optimize(&self) -> StoreResult<()> {
        Err(not_compiled())
    }
    fn compact(&self) -> StoreResult<()> {
        Err(not_compiled())
    }
}

/// Maps a client error that is not about reachability to ours.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

#[cfg(feature = "server")]
mod real {
    use std::collections::{BTreeSet, HashMap};
    use std::future::Future;
    use std::sync::RwLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use qdrant_client::qdrant::{
        self, CollectionInfo, CollectionStatus, Condition as QCondition, CountPointsBuilder,
        CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeleteCollectionBuilder,
        DeletePointsBuilder, Distance, FieldType, GetPointsBuilder, HnswConfigDiff,
        OptimizersConfigDiff, PayloadIncludeSelector, PayloadSchemaType, PointStruct,
        PointsIdsList, Query, QueryBatchPointsBuilder, QueryPointsBuilder, ReplicaState,
        ScalarQuantization, ScrollPointsBuilder, SearchParamsBuilder, UpdateCollection,
        UpsertPointsBuilder, VectorParamsBuilder, VectorsConfigBuilder, VectorsSelector,
        WriteOrdering, WriteOrderingType, point_id::PointIdOptions, quantization_config,
        quantization_config_diff, value::Kind, vector_output, vectors_config, vectors_output,
    };
    use qdrant_client::{Qdrant, QdrantError};
    use serde_json::Value;

    use super::{
        INDEX_METADATA_KEY, ServerOptions, ServerStatus, ShardReplica, UPSERT_BATCH, backend,
    };
    use crate::store::edge::{check_vector, describe, normalize};
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
        pub fn connect_with(
            url: &str,
            collection: &str,
            options: ServerOptions,
        ) -> StoreResult<Self> {
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
        fn block_on<T>(
            &self,
            future: impl Future<Output = Result<T, QdrantError>>,
        ) -> StoreResult<T> {
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
        fn index_of(
            &self,
            info: &CollectionInfo,
            spec: &CollectionSpec,
        ) -> StoreResult<IndexSettings> {
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
                settings.ef_construct = number(hnsw.ef_construct, "hnsw ef_construct")?
                    .unwrap_or(settings.ef_construct);
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
            settings.validate().map_err(|e| {
                StoreError::Backend(format!("collection {:?}: {e}", self.collection))
            })?;
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
        fn query_points(
            &self,
            query: &VectorQuery,
            settings: &IndexSettings,
        ) -> qdrant::QueryPoints {
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
                .quantization(quantization);
            let mut request = QueryPointsBuilder::new(&self.collection)
                .query(Query::new_nearest(query.vector.clone()))
                .using(&query.using)
                .limit(query.limit as u64)
                .with_payload(true)
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
            let int8 =
                (settings.quantization == Quantization::Int8).then_some(ScalarQuantization {
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

    impl VectorStore for ServerStore {
        fn ensure(&self, spec: &CollectionSpec) -> StoreResult<()> {
            let spec = normalize(spec)?;
            let mut known = self.spec.write().map_err(|_| poisoned())?;
            if known.is_none()
                && let Some((existing, index)) = self.read_collection()?
            {
                *known = Some(existing);
                *self.index.write().map_err(|_| poisoned())? = index;
            }
            if let Some(existing) = known.as_ref() {
                return if *existing == spec {
                    Ok(())
                } else {
                    Err(StoreError::SpecMismatch {
                        existing: describe(existing),
                        requested: describe(&spec),
                    })
                };
            }
            let mut vectors = VectorsConfigBuilder::default();
            for name in &spec.vectors {
                vectors.add_named_vector_params(
                    name,
                    VectorParamsBuilder::new(spec.dim as u64, Distance::Cosine),
                );
            }
            let settings = self.index()?;
            let (hnsw, optimizers, int8) = Self::index_config(&spec, &settings);
            let mut create = CreateCollectionBuilder::new(&self.collection)
                .vectors_config(vectors)
                .hnsw_config(hnsw)
                .optimizers_config(optimizers)
                .timeout(self.options.deadline().as_secs().max(1));
            if let Some(int8) = int8 {
                create =
                    create.quantization_config(quantization_config::Quantization::Scalar(int8));
            }
            if let Some(n) = self.options.shard_number {
                create = create.shard_number(n);
            }
            if let Some(n) = self.options.replication_factor {
                create = create.replication_factor(n);
            }
            if let Some(n) = self.options.write_consistency_factor {
                create = create.write_consistency_factor(n);
            }
            let mut create = create.build();
            create.metadata = Self::index_metadata(&settings)?;
            self.block_on(self.client.create_collection(create))?;
            let fields = spec
                .keyword_fields
                .iter()
                .map(|f| (f, FieldType::Keyword))
                .chain(spec.integer_fields.iter().map(|f| (f, FieldType::Integer)));
            for (field, kind) in fields {
                self.block_on(
                    self.client.create_field_index(
                        CreateFieldIndexCollectionBuilder::new(&self.collection, field, kind)
                            .wait(true),
                    ),
                )?;
            }
            *known = Some(spec);
            Ok(())
        }

        fn upsert(&self, points: Vec<VectorPoint>) -> StoreResult<()> {
            let spec = self.spec()?;
            for point in &points {
                for (name, vector) in &point.vectors {
                    check_vector(&spec, name, vector)?;
                }
            }
            let mut points = points.into_iter().map(|p| {
                let vectors: HashMap<String, Vec<f32>> = p.vectors.into_iter().collect();
                let payload: HashMap<String, qdrant::Value> = p
                    .payload
                    .0
                    .into_iter()
                    .map(|(k, v)| (k, to_value(v)))
                    .collect();
                PointStruct::new(p.id, vectors, qdrant_client::Payload::from(payload))
            });
            loop {
                let batch: Vec<PointStruct> = points.by_ref().take(UPSERT_BATCH).collect();
                if batch.is_empty() {
                    return Ok(());
                }
                self.changed.store(true, Ordering::Relaxed);
                self.block_on(
                    self.client.upsert_points(
                        UpsertPointsBuilder::new(&self.collection, batch).wait(true),
                    ),
                )?;
            }
        }

        fn search(&self, query: &VectorQuery) -> StoreResult<Vec<Hit>> {
            let spec = self.spec()?;
            check_vector(&spec, &query.using, &query.vector)?;
            if query.limit == 0 {
                return Ok(Vec::new());
            }
            let settings = self.index()?;
            let response = self.block_on(self.client.query(self.query_points(query, &settings)))?;
            hits(response.result, &query.filter)
        }

        /// One `QueryBatch` request for every list (the server runs them side by side).
        fn search_many(&self, queries: &[VectorQuery]) -> StoreResult<Vec<Vec<Hit>>> {
            let spec = self.spec()?;
            for query in queries {
                check_vector(&spec, &query.using, &query.vector)?;
            }
            // Empty answers for limit 0, without asking (the server refuses a zero limit).
            let asked: Vec<usize> = (0..queries.len())
                .filter(|&i| queries[i].limit > 0)
                .collect();
            let mut lists = vec![Vec::new(); queries.len()];
            if asked.is_empty() {
                return Ok(lists);
            }
            let settings = self.index()?;
            let requests: Vec<qdrant::QueryPoints> = asked
                .iter()
                .map(|&i| self.query_points(&queries[i], &settings))
                .collect();
            let response = self.block_on(
                self.client
                    .query_batch(QueryBatchPointsBuilder::new(&self.collection, requests)),
            )?;
            if response.result.len() != asked.len() {
                return Err(StoreError::Backend(format!(
                    "asked {} lists in one batch, got {}",
                    asked.len(),
                    response.result.len()
                )));
            }
            for (i, batch) in asked.into_iter().zip(response.result) {
                lists[i] = hits(batch.result, &queries[i].filter)?;
            }
            Ok(lists)
        }

        fn retrieve(&self, ids: &[PointId]) -> StoreResult<Vec<Hit>> {
            self.spec()?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<qdrant::PointId> = ids.iter().map(|&id| id.into()).collect();
            let response = self.block_on(
                self.client
                    .get_points(GetPointsBuilder::new(&self.collection, ids).with_payload(true)),
            )?;
            response
                .result
                .into_iter()
                .map(|p| {
                    Ok(Hit {
                        id: from_id(p.id)?,
                        score: 0.0,
                        payload: to_payload(p.payload),
                    })
                })
                .collect()
        }

        fn vector(&self, id: PointId, using: &str) -> StoreResult<Option<Vec<f32>>> {
            let spec = self.spec()?;
            if !spec.vectors.iter().any(|v| v == using) {
                return Err(StoreError::UnknownVector(using.to_owned()));
            }
            let response = self.block_on(
                self.client.get_points(
                    GetPointsBuilder::new(&self.collection, vec![id.into()])
                        .with_payload(false)
                        .with_vectors(VectorsSelector {
                            names: vec![using.to_owned()],
                        }),
                ),
            )?;
            let Some(point) = response.result.into_iter().next() else {
                return Ok(None);
            };
            let output = match point.vectors.and_then(|v| v.vectors_options) {
                Some(vectors_output::VectorsOptions::Vectors(mut named)) => {
                    named.vectors.remove(using)
                }
                Some(vectors_output::VectorsOptions::Vector(single)) => Some(single),
                None => None,
            };
            Ok(output.and_then(|v| match v.into_vector() {
                vector_output::Vector::Dense(dense) => Some(dense.data),
                _ => None,
            }))
        }

        fn delete(&self, ids: &[PointId]) -> StoreResult<()> {
            self.spec()?;
            if ids.is_empty() {
                return Ok(());
            }
            let ids = PointsIdsList {
                ids: ids.iter().map(|&id| id.into()).collect(),
            };
            self.changed.store(true, Ordering::Relaxed);
            self.block_on(
                self.client.delete_points(
                    DeletePointsBuilder::new(&self.collection)
                        .points(ids)
                        .ordering(ordered())
                        .wait(true),
                ),
            )?;
            Ok(())
        }

        fn delete_where(&self, filter: &VectorFilter) -> StoreResult<()> {
            let Some(filter) = to_filter(filter) else {
                return Err(StoreError::Backend(
                    "refusing to delete with an empty filter".into(),
                ));
            };
            self.spec()?;
            self.changed.store(true, Ordering::Relaxed);
            self.block_on(
                self.client.delete_points(
                    DeletePointsBuilder::new(&self.collection)
                        .points(filter)
                        .ordering(ordered())
                        .wait(true),
                ),
            )?;
            Ok(())
        }

        fn count(&self, filter: &VectorFilter) -> StoreResult<usize> {
            if !self.has_spec()? {
                return Ok(0);
            }
            let mut request = CountPointsBuilder::new(&self.collection).exact(true);
            if let Some(filter) = to_filter(filter) {
                request = request.filter(filter);
            }
            let count = self
                .block_on(self.client.count(request))?
                .result
                .map_or(0, |r| r.count);
            usize::try_from(count).map_err(backend)
        }

        fn distinct(&self, key: &str) -> StoreResult<BTreeSet<String>> {
            let mut values = BTreeSet::new();
            if !self.has_spec()? {
                return Ok(values);
            }
            let mut offset: Option<qdrant::PointId> = None;
            loop {
                let mut request = ScrollPointsBuilder::new(&self.collection)
                    .limit(PAGE)
                    .with_payload(PayloadIncludeSelector {
                        fields: vec![key.to_owned()],
                    });
                if let Some(offset) = offset.take() {
                    request = request.offset(offset);
                }
                let response = self.block_on(self.client.scroll(request))?;
                for point in response.result {
                    match point.payload.get(key).map(|v| from_value(v.clone())) {
                        Some(Value::String(s)) => {
                            values.insert(s);
                        }
                        Some(Value::Array(items)) => values.extend(
                            items
                                .into_iter()
                                .filter_map(|v| v.as_str().map(str::to_owned)),
                        ),
                        _ => {}
                    }
                }
                match response.next_page_offset {
                    Some(next) => offset = Some(next),
                    None => return Ok(values),
                }
            }
        }

        /// A no-op: every write already waited for the server to apply it and log it in its WAL,
        /// which the server replays after a crash.
        fn flush(&self) -> StoreResult<()> {
            Ok(())
        }

        /// Waits until the server's background optimizers are done with the collection
        /// (status green: segments merged, HNSW graphs and int8 copies built as the index
        /// settings ask), for at most the request deadline; past it the answer is
        /// [`StoreError::StillOptimizing`] (the collection answers correctly meanwhile, so a
        /// caller may go on and say so). After this store changed the collection, a
        /// green status counts only once the optimizers have visibly started (a status other
        /// than green) or it stayed green for a second. A collection whose optimizations are
        /// pending but not started (status grey, e.g. after a server restart) is nudged with an
        /// empty update, which is how Qdrant starts them.
        fn optimize(&self) -> StoreResult<()> {
            if !self.has_spec()? {
                return Ok(());
            }
            let start = Instant::now();
            let until = start + self.options.deadline();
            let mut settled = !self.changed.swap(false, Ordering::Relaxed);
            let mut green_since: Option<Instant> = None;
            let mut nudged = false;
            loop {
                let info = self
                    .block_on(self.client.collection_info(&self.collection))?
                    .result
                    .ok_or_else(|| StoreError::Backend("collection info is empty".into()))?;
                let now = Instant::now();
                if info.status == CollectionStatus::Green as i32 {
                    let since = *green_since.get_or_insert(now);
                    if settled || now.duration_since(since) >= SETTLE {
                        return Ok(());
                    }
                } else {
                    settled = true;
                    green_since = None;
                }
                if now >= until {
                    return Err(StoreError::StillOptimizing {
                        status: CollectionStatus::try_from(info.status)
                            .map_or("unknown", |s| s.as_str_name())
                            .to_ascii_lowercase(),
                        waited_secs: now.duration_since(start).as_secs_f32(),
                    });
                }
                if info.status == CollectionStatus::Grey as i32 && !nudged {
                    nudged = true;
                    self.block_on(self.client.update_collection(UpdateCollection {
                        collection_name: self.collection.clone(),
                        optimizers_config: Some(OptimizersConfigDiff::default()),
                        ..UpdateCollection::default()
                    }))?;
                }
                std::thread::sleep(OPTIMIZE_POLL);
            }
        }

        /// The settings read from the collection when this store connected or last changed
        /// them (the defaults a new collection gets, before it exists). Another process's
        /// change is seen after a reconnect; until then searches use the older search-time
        /// values, which changes their speed, not their correctness (filters stay exact,
        /// scores are rescored cosines).
        fn index_settings(&self) -> StoreResult<IndexSettings> {
            self.index()
        }

        /// Checks `settings`, then changes the collection in one update request: HNSW `m`,
        /// `ef_construct` and `full_scan_threshold`, the optimizer's `indexing_threshold`
        /// (0 = never build a graph, for exact; 1 KiB = every segment, for hnsw; the auto
        /// threshold's vector data otherwise), int8 scalar quantization (quantile 0.99, in
        /// RAM) or `Disabled`, and the settings themselves in the collection's metadata under
        /// [`INDEX_METADATA_KEY`], where a reconnecting process reads them back. The server's
        /// optimizers rebuild graphs and quantized copies in the background; [`Self::optimize`]
        /// waits for them. Invalid settings are refused before anything is sent. Before the
        /// collection exists they are kept here and given to the collection `ensure` creates.
        fn set_index_settings(&self, settings: &IndexSettings) -> StoreResult<()> {
            settings.validate()?;
            let spec = self.spec.read().map_err(|_| poisoned())?.clone();
            let Some(spec) = spec else {
                *self.index.write().map_err(|_| poisoned())? = settings.clone();
                return Ok(());
            };
            let (hnsw, optimizers, int8) = Self::index_config(&spec, settings);
            let quantization = match int8 {
                Some(int8) => quantization_config_diff::Quantization::Scalar(int8),
                None => quantization_config_diff::Quantization::Disabled(qdrant::Disabled {}),
            };
            let mut index = self.index.write().map_err(|_| poisoned())?;
            self.changed.store(true, Ordering::Relaxed);
            self.block_on(self.client.update_collection(UpdateCollection {
                collection_name: self.collection.clone(),
                optimizers_config: Some(optimizers),
                timeout: Some(self.options.deadline().as_secs().max(1)),
                hnsw_config: Some(hnsw),
                quantization_config: Some(qdrant::QuantizationConfigDiff {
                    quantization: Some(quantization),
                }),
                metadata: Self::index_metadata(settings)?,
                ..UpdateCollection::default()
            }))?;
            *index = settings.clone();
            Ok(())
        }

        /// Points, graph-indexed vectors (over every named vector) and segments from the
        /// collection info; disk use is unknown (the server's API does not report it).
        fn index_state(&self) -> StoreResult<IndexState> {
            let settings = self.index()?;
            if !self.has_spec()? {
                return Ok(IndexState {
                    settings: Some(settings),
                    ..IndexState::default()
                });
            }
            let info = self.info()?.ok_or(StoreError::Missing)?;
            let number = |v: u64| usize::try_from(v).map_err(backend);
            Ok(IndexState {
                settings: Some(settings),
                points: number(info.points_count.unwrap_or(0))?,
                indexed_vectors: number(info.indexed_vectors_count.unwrap_or(0))?,
                segments: number(info.segments_count)?,
                disk_bytes: None,
            })
        }

        /// A no-op: the server's own optimizers vacuum segments in the background according to
        /// the collection's optimizer config; the API offers no synchronous purge. Deleted points
        /// are gone from every answer as soon as the deletion returns.
        fn compact(&self) -> StoreResult<()> {
            Ok(())
        }
    }

    /// Our filter as the client's (`None` when empty).
    fn to_filter(filter: &VectorFilter) -> Option<qdrant::Filter> {
        if filter.is_empty() {
            return None;
        }
        let convert = |conditions: &[Condition]| conditions.iter().map(to_condition).collect();
        Some(qdrant::Filter {
            must: convert(&filter.must),
            must_not: convert(&filter.must_not),
            ..qdrant::Filter::default()
        })
    }

    fn to_condition(condition: &Condition) -> QCondition {
        match condition {
            Condition::MatchAny { key, any } => QCondition::matches(key.clone(), any.clone()),
            Condition::Range { key, gte, lte } => QCondition::range(
                key.clone(),
                qdrant::Range {
                    gte: gte.map(|v| v as f64),
                    lte: lte.map(|v| v as f64),
                    ..qdrant::Range::default()
                },
            ),
            Condition::HasId(ids) => QCondition::has_id(ids.iter().copied()),
        }
    }

    fn from_id(id: Option<qdrant::PointId>) -> StoreResult<PointId> {
        match id.and_then(|id| id.point_id_options) {
            Some(PointIdOptions::Num(id)) => Ok(id),
            other => Err(StoreError::Backend(format!(
                "unexpected point id {other:?}"
            ))),
        }
    }

    fn to_payload(payload: HashMap<String, qdrant::Value>) -> Payload {
        Payload(
            payload
                .into_iter()
                .map(|(k, v)| (k, from_value(v)))
                .collect(),
        )
    }

    /// JSON as a qdrant value (without the client's `serde` feature).
    fn to_value(value: Value) -> qdrant::Value {
        let kind = match value {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Kind::IntegerValue(i),
                None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Kind::StringValue(s),
            Value::Array(items) => Kind::ListValue(qdrant::ListValue {
                values: items.into_iter().map(to_value).collect(),
            }),
            Value::Object(map) => Kind::StructValue(qdrant::Struct {
                fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
            }),
        };
        qdrant::Value { kind: Some(kind) }
    }

    /// A qdrant value as JSON.
    fn from_value(value: qdrant::Value) -> Value {
        match value.kind {
            None | Some(Kind::NullValue(_)) => Value::Null,
            Some(Kind::BoolValue(b)) => Value::Bool(b),
            Some(Kind::IntegerValue(i)) => Value::from(i),
            Some(Kind::DoubleValue(d)) => Value::from(d),
            Some(Kind::StringValue(s)) => Value::String(s),
            Some(Kind::ListValue(list)) => {
                Value::Array(list.values.into_iter().map(from_value).collect())
            }
            Some(Kind::StructValue(s)) => Value::Object(
                s.fields
                    .into_iter()
                    .map(|(k, v)| (k, from_value(v)))
                    .collect(),
            ),
        }
    }

    fn poisoned() -> StoreError {
        StoreError::Backend("vector store lock poisoned by an earlier panic".into())
    }
}

// ---------------------------------------------------------------------------------------------
// A real Qdrant server process

/// Environment variable naming the Qdrant server binary for tests and scripts.
pub const QDRANT_BIN_ENV: &str = "IMAGELENS_QDRANT_BIN";

/// How long [`QdrantProcess::start`] waits for `GET /readyz` to answer 200 and the gRPC port.
const READY_WAIT: Duration = Duration::from_secs(60);

/// A Qdrant server (`../shared/bin/qdrant` by default) running as a child process on free
/// loopback ports with its own storage folder, for tests and scripts. Killed (SIGKILL) and its
/// folder removed when dropped, whatever happened.
#[derive(Debug)]
pub struct QdrantProcess {
    binary: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
    /// Remove `dir` on drop (not when the caller owns it).
    owns_dir: bool,
    http_port: u16,
    grpc_port: u16,
    p2p_port: Option<u16>,
    bootstrap: Option<u16>,
}

/// How a node joins a cluster.
#[derive(Debug, Clone, Copy)]
pub enum ClusterRole {
    /// A single server, not in a cluster.
    Single,
    /// The first node of a new cluster.
    First,
    /// A node joining through the first node's p2p port.
    Join(u16),
}

impl QdrantProcess {
    /// The server binary: `$IMAGELENS_QDRANT_BIN`, else `../shared/bin/qdrant` beside the
    /// workspace; `None` when that file does not exist.
    pub fn binary() -> Option<PathBuf> {
        let path = match std::env::var_os(QDRANT_BIN_ENV) {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bin/qdrant"),
        };
        path.is_file().then_some(path)
    }

    /// Starts a single server in a fresh temporary folder and waits until it is ready.
    ///
    /// # Errors
    /// When the binary is absent, or the server exits or is not ready within a minute (the
    /// message carries the end of its log).
    pub fn start() -> std::io::Result<Self> {
        Self::start_node(ClusterRole::Single)
    }

    /// Starts a server, or a cluster node, in a fresh temporary folder (removed on drop).
    ///
    /// # Errors
    /// As [`QdrantProcess::start`].
    pub fn start_node(role: ClusterRole) -> std::io::Result<Self> {
        let binary = Self::binary().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no Qdrant binary (set {QDRANT_BIN_ENV} or put one at ../shared/bin/qdrant)"
                ),
            )
        })?;
        let dir = fresh_dir()?;
        // Free ports can be taken by someone else between our probe and the server's bind:
        // try a few times with new ones.
        let mut last = None;
        for _ in 0..3 {
            let mut node = Self {
                binary: binary.clone(),
                child: None,
                dir: dir.clone(),
                owns_dir: true,
                http_port: free_port()?,
                grpc_port: free_port()?,
                p2p_port: match role {
                    ClusterRole::Single => None,
                    _ => Some(free_port()?),
                },
                bootstrap: match role {
                    ClusterRole::Join(port) => Some(port),
                    _ => None,
                },
            };
            match node.spawn() {
                Ok(()) => return Ok(node),
                Err(e) => {
                    node.owns_dir = false;
                    drop(node);
                    let _ = std::fs::remove_dir_all(dir.join("storage"));
                    last = Some(e);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last.unwrap_or_else(|| std::io::Error::other("qdrant did not start")))
    }

    /// gRPC URL for qdrant-client (`http://127.0.0.1:PORT`).
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// REST URL (`http://127.0.0.1:PORT`).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The p2p port of a cluster node.
    pub fn p2p_port(&self) -> Option<u16> {
        self.p2p_port
    }

    /// The child's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL (no chance to flush), keeping its storage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and storage and waits until it is ready.
    ///
    /// # Errors
    /// As [`QdrantProcess::start`].
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server with `kill(1)`: `STOP` makes a
    /// server that accepts connections and never answers.
    ///
    /// # Errors
    /// When it is not running or `kill` fails.
    pub fn signal(&self, signal: &str) -> std::io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| std::io::Error::other("qdrant is not running"))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill -{signal} {pid}: {status}"
            )))
        }
    }

    /// `GET path` on the REST port: the status code and body, within `timeout`.
    ///
    /// # Errors
    /// Connection or i/o failures.
    pub fn http_get(&self, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
        http_get(self.http_port, path, timeout)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("qdrant.log"))?;
        let mut command = Command::new(&self.binary);
        command
            .current_dir(&self.dir)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http_port.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc_port.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", self.dir.join("storage"))
            .env(
                "QDRANT__STORAGE__SNAPSHOTS_PATH",
                self.dir.join("snapshots"),
            )
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__LOG_LEVEL", "WARN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(p2p) = self.p2p_port {
            command
                .env("QDRANT__CLUSTER__ENABLED", "true")
                .env("QDRANT__CLUSTER__P2P__PORT", p2p.to_string())
                .arg("--uri")
                .arg(format!("http://127.0.0.1:{p2p}"));
            if let Some(first) = self.bootstrap {
                command
                    .arg("--bootstrap")
                    .arg(format!("http://127.0.0.1:{first}"));
            }
        }
        self.child = Some(command.spawn()?);
        let until = Instant::now() + READY_WAIT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(std::io::Error::other(format!(
                    "qdrant exited with {status} before it was ready; its log ends:\n{}",
                    self.log_tail()
                )));
            }
            // `/readyz` can answer before the gRPC port listens: wait for both.
            if matches!(
                http_get(self.http_port, "/readyz", Duration::from_secs(1)),
                Ok((200, _))
            ) && TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, self.grpc_port)),
                Duration::from_secs(1),
            )
            .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= until {
                self.kill();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "qdrant was not ready within {}s; its log ends:\n{}",
                        READY_WAIT.as_secs(),
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("qdrant.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for QdrantProcess {
    fn drop(&mut self) {
        self.kill();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A new empty folder under the system temp dir.
fn fresh_dir() -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "imagelens-qdrant-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A loopback port nobody listens on right now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A minimal HTTP/1.0 GET on loopback (no client crate needed for a readiness probe).
fn http_get(port: u16, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {response:.80}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((code, body))
}
