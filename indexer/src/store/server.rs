//! [`ServerStore`]: the [`VectorStore`](super::VectorStore) on a Qdrant server through
//! qdrant-client (cargo feature `server`).
//!
//! Without the feature this is a stub, in the manner of candle's dummy CUDA backend:
//! [`ServerStore::connect`] returns [`StoreError::NotCompiled`], so callers (`AnyStore`,
//! `app.rs`) need no `#[cfg]` of their own.
//!
//! With the feature, every qdrant-client type stays inside this file. The client is async; the
//! store owns a private one-worker tokio runtime and blocks on it, so like every store method
//! these block: from async code call them inside `tokio::task::spawn_blocking` (blocking on the
//! private runtime from a runtime thread panics).
//!
//! Invariants (shared with the edge store, checked by `tests/store_suite.rs`): writes use
//! `wait=true`, so they are applied and in the server's WAL when the call returns; the collection
//! spec is read back from the server's collection info (vector names, size, cosine distance,
//! payload index types), so a second process with another spec gets
//! [`StoreError::SpecMismatch`].

use super::StoreError;
#[cfg(not(feature = "server"))]
use super::{
    CollectionSpec, Hit, PointId, StoreResult, VectorFilter, VectorPoint, VectorQuery, VectorStore,
};
#[cfg(not(feature = "server"))]
use std::collections::BTreeSet;

#[cfg(feature = "server")]
pub use real::ServerStore;

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
        let _ = (url, collection);
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

/// Maps a client error to ours.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

#[cfg(feature = "server")]
mod real {
    use std::collections::{BTreeSet, HashMap};
    use std::future::Future;
    use std::sync::RwLock;

    use qdrant_client::Qdrant;
    use qdrant_client::qdrant::{
        self, Condition as QCondition, CountPointsBuilder, CreateCollectionBuilder,
        CreateFieldIndexCollectionBuilder, DeleteCollectionBuilder, DeletePointsBuilder, Distance,
        FieldType, GetPointsBuilder, PayloadIncludeSelector, PayloadSchemaType, PointStruct,
        PointsIdsList, Query, QueryPointsBuilder, ScrollPointsBuilder, SearchParamsBuilder,
        UpsertPointsBuilder, VectorParamsBuilder, VectorsConfigBuilder, VectorsSelector,
        point_id::PointIdOptions, value::Kind, vector_output, vectors_config, vectors_output,
    };
    use serde_json::Value;

    use super::backend;
    use crate::store::edge::{check_vector, describe, normalize};
    use crate::store::{
        CollectionSpec, Condition, Hit, Payload, PointId, StoreError, StoreResult, VectorFilter,
        VectorPoint, VectorQuery, VectorStore,
    };

    /// Points per scroll page in [`VectorStore::distinct`].
    const PAGE: u32 = 1_000;

    /// A collection on a Qdrant server.
    pub struct ServerStore {
        client: Qdrant,
        collection: String,
        runtime: tokio::runtime::Runtime,
        /// The collection's spec as read from the server; `None` until it exists.
        spec: RwLock<Option<CollectionSpec>>,
    }

    impl std::fmt::Debug for ServerStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ServerStore")
                .field("collection", &self.collection)
                .finish_non_exhaustive()
        }
    }

    impl ServerStore {
        /// Connects to the gRPC endpoint `url` (e.g. `http://localhost:6334`) and reads the spec
        /// of `collection` if it exists.
        ///
        /// # Errors
        /// [`StoreError::Backend`] if the server is unreachable or the collection unreadable;
        /// [`StoreError::Io`] if the private runtime cannot start.
        pub fn connect(url: &str, collection: &str) -> StoreResult<Self> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("qdrant-client")
                .enable_all()
                .build()?;
            let client = Qdrant::from_url(url).build().map_err(backend)?;
            let store = Self {
                client,
                collection: collection.to_owned(),
                runtime,
                spec: RwLock::new(None),
            };
            let spec = store.read_spec()?;
            *store.spec.write().map_err(|_| poisoned())? = spec;
            Ok(store)
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

        fn block_on<T, E: std::fmt::Display>(
            &self,
            future: impl Future<Output = Result<T, E>>,
        ) -> StoreResult<T> {
            self.runtime.block_on(future).map_err(backend)
        }

        fn spec(&self) -> StoreResult<CollectionSpec> {
            self.spec
                .read()
                .map_err(|_| poisoned())?
                .clone()
                .ok_or(StoreError::Missing)
        }

        /// Reconstructs the spec from the server's collection info.
        fn read_spec(&self) -> StoreResult<Option<CollectionSpec>> {
            if !self.block_on(self.client.collection_exists(&self.collection))? {
                return Ok(None);
            }
            let info = self
                .block_on(self.client.collection_info(&self.collection))?
                .result
                .ok_or_else(|| StoreError::Backend("collection info is empty".into()))?;
            let params = info
                .config
                .and_then(|c| c.params)
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
            for (field, schema) in info.payload_schema {
                if schema.data_type == PayloadSchemaType::Keyword as i32 {
                    keyword_fields.push(field);
                } else if schema.data_type == PayloadSchemaType::Integer as i32 {
                    integer_fields.push(field);
                }
            }
            normalize(&CollectionSpec {
                dim,
                vectors,
                keyword_fields,
                integer_fields,
            })
            .map(Some)
        }
    }

    impl VectorStore for ServerStore {
        fn ensure(&self, spec: &CollectionSpec) -> StoreResult<()> {
            let spec = normalize(spec)?;
            let mut known = self.spec.write().map_err(|_| poisoned())?;
            if known.is_none() {
                *known = self.read_spec()?;
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
            self.block_on(self.client.create_collection(
                CreateCollectionBuilder::new(&self.collection).vectors_config(vectors),
            ))?;
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
            if points.is_empty() {
                return Ok(());
            }
            let points: Vec<PointStruct> = points
                .into_iter()
                .map(|p| {
                    let vectors: HashMap<String, Vec<f32>> = p.vectors.into_iter().collect();
                    let payload: HashMap<String, qdrant::Value> = p
                        .payload
                        .0
                        .into_iter()
                        .map(|(k, v)| (k, to_value(v)))
                        .collect();
                    PointStruct::new(p.id, vectors, qdrant_client::Payload::from(payload))
                })
                .collect();
            self.block_on(
                self.client
                    .upsert_points(UpsertPointsBuilder::new(&self.collection, points).wait(true)),
            )?;
            Ok(())
        }

        fn search(&self, query: &VectorQuery) -> StoreResult<Vec<Hit>> {
            let spec = self.spec()?;
            check_vector(&spec, &query.using, &query.vector)?;
            if query.limit == 0 {
                return Ok(Vec::new());
            }
            let mut request = QueryPointsBuilder::new(&self.collection)
                .query(Query::new_nearest(query.vector.clone()))
                .using(&query.using)
                .limit(query.limit as u64)
                .with_payload(true)
                .params(SearchParamsBuilder::default().exact(query.exact));
            if let Some(filter) = to_filter(&query.filter) {
                request = request.filter(filter);
            }
            let response = self.block_on(self.client.query(request))?;
            response
                .result
                .into_iter()
                .map(|p| {
                    Ok(Hit {
                        id: from_id(p.id)?,
                        score: p.score,
                        payload: to_payload(p.payload),
                    })
                })
                .collect()
        }

        fn retrieve(&self, ids: &[PointId]) -> StoreResult<Vec<Hit>> {
            self.spec()?;
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
            self.block_on(
                self.client.delete_points(
                    DeletePointsBuilder::new(&self.collection)
                        .points(ids)
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
            self.block_on(
                self.client.delete_points(
                    DeletePointsBuilder::new(&self.collection)
                        .points(filter)
                        .wait(true),
                ),
            )?;
            Ok(())
        }

        fn count(&self, filter: &VectorFilter) -> StoreResult<usize> {
            if self.spec.read().map_err(|_| poisoned())?.is_none() {
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
            if self.spec.read().map_err(|_| poisoned())?.is_none() {
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

        /// A no-op: the server builds HNSW graphs in the background once a segment passes the
        /// collection's indexing threshold.
        fn optimize(&self) -> StoreResult<()> {
            Ok(())
        }

        /// A no-op: the server's own optimizers vacuum segments in the background according to
        /// the collection's optimizer config; the API offers no synchronous purge.
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
