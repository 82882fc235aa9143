//! The [`ServerStore`] on qdrant-client (feature `server`): connecting, errors, the request one
//! search sends, and status; the collection layout in `layout.rs`, [`VectorStore`] in `store.rs`,
//! the conversions to and from qdrant's types in `convert.rs`.

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
        Self::connect_with_defaults(url, collection, options, &IndexSettings::default())
    }

    /// [`ServerStore::connect_with`], with `defaults` as the index settings while `collection`
    /// does not exist (those [`VectorStore::ensure`] creates it with;
    /// [`IndexSettings::for_parts`] for a part of a
    /// [`PartitionedStore`](crate::store::PartitionedStore)); an existing collection's own
    /// settings are read back as always. The twin of `EdgeStore::open_with_defaults`.
    ///
    /// # Errors
    /// As [`ServerStore::connect_with`].
    pub fn connect_with_defaults(
        url: &str,
        collection: &str,
        options: ServerOptions,
        defaults: &IndexSettings,
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
            // A server collection's full-scan threshold is the one given: it is not grown
            // with the collection (`IndexSettings::full_scan_share`).
            index: RwLock::new(IndexSettings {
                full_scan_share: 0.0,
                ..defaults.clone()
            }),
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
            collections: vec![self.collection.clone()],
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
                collection: self.collection.clone(),
                shard: local.shard_id,
                peer: cluster.peer_id,
                state: state(local.state),
                points: Some(local.points_count),
            });
        }
        for remote in &cluster.remote_shards {
            status.replicas.push(ShardReplica {
                collection: self.collection.clone(),
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
                Code::Unauthenticated | Code::PermissionDenied => {
                    let message = status.message().split_whitespace().collect::<Vec<_>>();
                    StoreError::Backend(match self.options.api_key {
                        None => format!(
                            "the Qdrant server at {} asks for an API key (set \
                             IMAGELENS_QDRANT_API_KEY or [store] api_key): {}",
                            self.url,
                            message.join(" ")
                        ),
                        Some(_) => format!(
                            "the Qdrant server at {} refused the API key: {}",
                            self.url,
                            message.join(" ")
                        ),
                    })
                }
                // TLS the client will not trust or cannot set up: not an outage, so not
                // `Unavailable` (retrying will not help); say what to do.
                Code::Internal if tls_failure(status.message()).is_some() => {
                    let why = tls_failure(status.message()).unwrap_or_default();
                    StoreError::Backend(format!(
                        "the Qdrant server at {} {why}; to trust a private CA, set SSL_CERT_FILE \
                         to its PEM certificate (the system's roots are then not used)",
                        self.url
                    ))
                }
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
            .acorn(
                AcornSearchParamsBuilder::new(settings.acorn)
                    .max_selectivity(settings.acorn_selectivity),
            );
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
}

/// What went wrong with TLS in a client error message, if that is what it is: the
/// certificate the server presented failed verification (qdrant-client trusts the roots
/// `rustls-native-certs` loads: the system's, or only those in `SSL_CERT_FILE` /
/// `SSL_CERT_DIR` when set), or no root certificate was found at all.
fn tls_failure(message: &str) -> Option<String> {
    if let Some(start) = message.find("InvalidCertificate(") {
        let rest = &message[start + "InvalidCertificate(".len()..];
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .unwrap_or(rest.len());
        return Some(format!(
            "presented a TLS certificate this machine does not trust ({})",
            &rest[..end]
        ));
    }
    (message.contains("Failed to create TLS config") || message.contains("NativeCertsNotFound"))
        .then(|| {
            format!(
                "needs TLS, and no trusted root certificate was found ({})",
                message.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })
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
mod layout;
mod store;
use convert::*;
