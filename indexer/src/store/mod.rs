//! Where embeddings live. Knows nothing about models or annotations.
//!
//! The [`VectorStore`] trait is the seam between the library and a vector database: the
//! embedded qdrant-edge shard ([`EdgeStore`], the default) or a Qdrant server through
//! qdrant-client ([`ServerStore`], feature `server`). Only our own types cross it; the qdrant
//! crates' `PointStruct`/`Filter`/`Distance` never leave `edge/` / `server.rs`.
//!
//! Invariants every implementation keeps (checked by the conformance suite in
//! `tests/store_suite.rs`):
//! - upserting a point with an existing id replaces it (vectors and payload), never duplicates;
//! - a search with a filter only returns points that satisfy it (filters are exact);
//! - after `flush` returns, everything upserted or deleted before it survives a crash.
//!
//! Every method blocks: call it from `spawn_blocking` inside async code.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

mod edge;
mod partitioned;
mod server;
mod spec;

pub use edge::EdgeStore;
pub use partitioned::{Part, PartitionedStore};
pub use server::{
    ClusterRole, DEFAULT_TIMEOUT, INDEX_METADATA_KEY, MAX_TIMEOUT, QDRANT_BIN_ENV, QdrantProcess,
    REQUIRE_QDRANT_ENV, ServerOptions, ServerStatus, ServerStore, ShardReplica, UPSERT_BATCH,
};

/// Result type of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Errors from a vector store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A vector's length differs from the collection's dimension.
    #[error("vector {name:?} has {got} dimensions, collection expects {expected}")]
    DimensionMismatch {
        /// Named vector.
        name: String,
        /// Collection dimension.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A vector name that the collection does not define.
    #[error("unknown vector name {0:?}")]
    UnknownVector(String),
    /// An existing collection was created with another spec.
    #[error("vector store was created for {existing}, not {requested}")]
    SpecMismatch {
        /// What is on disk.
        existing: String,
        /// What was asked for.
        requested: String,
    },
    /// The collection has not been created ([`VectorStore::ensure`] was never called).
    #[error("vector store has no collection yet")]
    Missing,
    /// The backend was not compiled into this binary.
    #[error("the {0} vector store backend is not compiled in (rebuild with --features {0})")]
    NotCompiled(&'static str),
    /// Filesystem error around the store.
    #[error("vector store i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The backend failed.
    #[error("vector store backend: {0}")]
    Backend(String),
    /// A vector store server is down, overloaded or did not answer within the request timeout
    /// (retrying later may succeed; nothing was lost).
    #[error("the vector store at {url} is unavailable: {reason}")]
    Unavailable {
        /// The server's URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// [`VectorStore::optimize`] waited its deadline and the server's optimizers are still
    /// building (graphs, quantized copies). Nothing is lost: the points and settings are in
    /// place and searches answer meanwhile; waiting again (or longer) finishes it.
    #[error(
        "the vector store is still optimizing after {waited_secs:.0} s (collection status \
         {status}); the data and settings are in place and searches answer meanwhile: run \
         `imagelens optimize` again to wait for it, or raise the store timeout"
    )]
    StillOptimizing {
        /// The collection's status when the wait ended (`yellow`, `grey`).
        status: String,
        /// How long it waited.
        waited_secs: f32,
    },
}

/// Id of one point. Derived deterministically by the indexer, so re-upserts replace.
pub type PointId = u64;

/// Payload attached to a point: always a JSON object.
///
/// The stores treat keys as opaque; the keys the library writes and what they hold are
/// [`crate::points::key`] (and one integer per time axis, [`crate::points::INTEGER_KEYS`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payload(pub serde_json::Map<String, serde_json::Value>);

impl Payload {
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: &str, value: impl Into<serde_json::Value>) -> &mut Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }

    /// The string under `key`, if it is one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.as_str())
    }

    /// The integer under `key`, if it is one.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.0.get(key).and_then(|v| v.as_i64())
    }
}

/// One point: an id, some named vectors and a payload.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorPoint {
    /// Deterministic id.
    pub id: PointId,
    /// Named vectors (a subset of the collection's names).
    pub vectors: BTreeMap<String, Vec<f32>>,
    /// Payload object.
    pub payload: Payload,
}

/// What a collection holds: one cosine space of `dim` with these named vectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// Dimension of every named vector.
    pub dim: usize,
    /// Names of the dense vectors (e.g. `image`, `region`, `text`).
    pub vectors: Vec<String>,
    /// Payload keys filtered as exact keywords (an index is built for each).
    pub keyword_fields: Vec<String>,
    /// Payload keys filtered as integer ranges (an index is built for each).
    pub integer_fields: Vec<String>,
}

/// A single filter clause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    /// The string (or array of strings) at `key` contains any of `any`.
    MatchAny {
        /// Payload key.
        key: String,
        /// Accepted values.
        any: Vec<String>,
    },
    /// The integer at `key` lies in `[gte, lte]` (either bound optional).
    Range {
        /// Payload key.
        key: String,
        /// Inclusive lower bound.
        gte: Option<i64>,
        /// Inclusive upper bound.
        lte: Option<i64>,
    },
    /// The point id is one of these.
    HasId(Vec<PointId>),
}

/// A conjunction of `must` clauses and negated `must_not` clauses. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VectorFilter {
    /// Every clause must hold.
    pub must: Vec<Condition>,
    /// No clause may hold.
    pub must_not: Vec<Condition>,
}

impl VectorFilter {
    /// Matches every point of these records (payload [`crate::points::key::RECORD_ID`]).
    pub fn records(ids: Vec<String>) -> Self {
        VectorFilter {
            must: vec![Condition::MatchAny {
                key: crate::points::key::RECORD_ID.into(),
                any: ids,
            }],
            must_not: vec![],
        }
    }

    /// Whether the filter has no clauses.
    pub fn is_empty(&self) -> bool {
        self.must.is_empty() && self.must_not.is_empty()
    }

    /// The payload keys its clauses read.
    pub fn keys(&self) -> Vec<&str> {
        self.must
            .iter()
            .chain(&self.must_not)
            .filter_map(|c| match c {
                Condition::MatchAny { key, .. } | Condition::Range { key, .. } => {
                    Some(key.as_str())
                }
                Condition::HasId(_) => None,
            })
            .collect()
    }

    /// Whether point `id` with `payload` satisfies the filter, evaluated here (the meaning the
    /// stores implement: a string or array-of-strings value matches `MatchAny` when any element
    /// is listed; `Range` needs an integer inside both bounds).
    pub fn matches(&self, id: PointId, payload: &Payload) -> bool {
        let holds = |c: &Condition| match c {
            Condition::MatchAny { key, any } => match payload.get(key) {
                Some(serde_json::Value::String(s)) => any.contains(s),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| any.iter().any(|a| a == s))),
                _ => false,
            },
            Condition::Range { key, gte, lte } => payload
                .get_i64(key)
                .is_some_and(|v| gte.is_none_or(|g| v >= g) && lte.is_none_or(|l| v <= l)),
            Condition::HasId(ids) => ids.contains(&id),
        };
        self.must.iter().all(holds) && !self.must_not.iter().any(holds)
    }
}

/// A nearest-neighbour query on one named vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorQuery {
    /// Which named vector to search.
    pub using: String,
    /// Query vector (unit length for cosine).
    pub vector: Vec<f32>,
    /// Exact filter over payloads.
    pub filter: VectorFilter,
    /// How many hits at most.
    pub limit: usize,
    /// Search exhaustively instead of through the HNSW graph (exact top-k).
    pub exact: bool,
    /// The payload keys the caller reads from the hits; `None` for the whole payload. A store
    /// returns these and the keys `filter` names (hits are re-checked against it), no others
    /// ([`Self::returned_keys`]). A search ranking thousands of candidates reads two keys of each
    /// (the record id and the box): sending, decoding and copying every payload cost more
    /// than the search itself on a Qdrant server (`cargo bench --bench search`).
    pub payload_keys: Option<Vec<String>>,
}

impl VectorQuery {
    /// The payload keys a store returns for this query: `None` for all of them, else
    /// [`Self::payload_keys`] and every key the filter names, each once.
    pub fn returned_keys(&self) -> Option<Vec<String>> {
        let asked = self.payload_keys.as_ref()?;
        let mut keys: Vec<String> = asked.clone();
        keys.extend(self.filter.keys().into_iter().map(str::to_owned));
        keys.sort();
        keys.dedup();
        Some(keys)
    }
}

/// Whether the payload index of an integer (range-filtered) field also gets payload-aware graph
/// links (qdrant `enable_hnsw` on the field index). Qdrant builds them by default for every
/// indexed field: for an integer field it cuts the value range into overlapping blocks of about
/// `full_scan_threshold` points and builds a small graph over each, so every point is inserted
/// about twice more per integer field, and a library has four date fields on every point
/// (`benches/README.md`, "Graph building without date links", measures the build with and
/// without them). Without them a graph walk under a narrow date range falls apart (recall@20
/// 0.1 in `index_settings.rs`), which [`IndexSettings::acorn`] (on by default) mends (0.99).
/// Keyword fields keep qdrant's default (their blocks are one value each: a label, a dataset).
/// An embedded library made with the links gets its date indexes rebuilt on its next optimize.
pub const RANGE_FIELD_LINKS: bool = false;

/// How a collection searches its vectors: exact scans, or HNSW graphs (optionally over int8
/// quantized copies, rescored with the original vectors). Persisted by the store with its data
/// (`index.json` in an [`EdgeStore`] directory); a store that has none uses the default.
///
/// Every number is bounded by [`IndexSettings::validate`] before it reaches the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexSettings {
    /// Exact scans, HNSW graphs, or graphs once a segment holds [`Self::auto_threshold`] points.
    pub kind: IndexKind,
    /// With [`IndexKind::Auto`]: points (per segment) from which a graph is built.
    pub auto_threshold: usize,
    /// Edges per graph node (qdrant `m`).
    pub m: usize,
    /// Neighbours considered while building the graph (qdrant `ef_construct`).
    pub ef_construct: usize,
    /// A search (or the part of it a filter lets through) over less vector data than this, in
    /// KiB, scans exactly instead of walking the graph (qdrant `full_scan_threshold`; 10,000 KiB
    /// is about 5,000 vectors of 512 floats where every point of a segment has the vector, and
    /// more where some have not: qdrant averages the vector data over all the segment's points,
    /// see [`IndexSettings::for_parts`]). Fixed when a graph is built. With
    /// [`Self::full_scan_share`] this is the least threshold, raised as the collection grows.
    pub full_scan_kb: usize,
    /// The full-scan threshold grows with the collection: when the settings are applied (every
    /// optimize), it becomes [`Self::full_scan_kb`] times the largest power of 2 that keeps it
    /// within this share of the collection's vector data (0: never raised). A filter keeping
    /// fewer of a segment's points is then scored over the int8 copies instead of walking the
    /// graph, which under a narrow filter needs ACORN and grows dearer with the graph. At 1M
    /// records a scan over the int8 copies cost about 0.3 µs a point kept, and ACORN's walk
    /// about 18-20 ms for the image list and 30 ms for the region list whatever the filter, so
    /// filters keeping up to about 5-6 % of a part are answered sooner by the scan
    /// (`benches/README.md`, "A full-scan threshold that grows with the library"). A changed
    /// threshold rebuilds the segments at the next optimize (reusing their graphs: 822 s for
    /// both parts at 1M). Applied by the embedded store; a Qdrant server collection keeps
    /// [`Self::full_scan_kb`] (0 there).
    pub full_scan_share: f64,
    /// Beam width of a graph search; a query asking for more hits than this searches with a
    /// beam as wide as its limit.
    pub ef: usize,
    /// Quantized copies of the vectors searched first (graph segments only).
    pub quantization: Quantization,
    /// With quantization: candidates taken from the quantized vectors per hit wanted, all
    /// rescored with the original vectors.
    pub oversampling: f64,
    /// A filtered graph search whose filter keeps at most [`Self::acorn_selectivity`] of a
    /// segment's points also follows the neighbours of neighbours that fail the filter (qdrant
    /// ACORN), so a graph cut into pieces by a selective filter is still walked end to end;
    /// costs more per search, only with a filter. Search-time: changing it rebuilds nothing.
    pub acorn: bool,
    /// With [`Self::acorn`]: the largest share of a segment's points (0 to 1, as the payload
    /// index estimates it) a filter may keep for a graph search under it to use ACORN. Above
    /// it the plain walk keeps the exact answers as well at a fraction of the cost, since
    /// enough of every point's neighbours pass the filter (`benches/README.md`, "ACORN by the
    /// filter's selectivity"). Qdrant's default is 0.4. Search-time.
    pub acorn_selectivity: f64,
    /// The full-precision vectors stay on disk, memory-mapped and read as searches touch them
    /// (the kernel keeps the ones in use cached, and may drop them under memory pressure),
    /// instead of being read into memory when the library opens. With int8 copies, which stay
    /// in RAM, a graph search reads full vectors only to rescore its candidates, so a library
    /// whose vectors outgrow the machine's memory still searches from memory. Applied by the
    /// next optimize, which rewrites the segments stored the other way.
    pub on_disk: bool,
}

/// [`IndexSettings::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Graphs for segments holding at least [`IndexSettings::auto_threshold`] points; smaller
    /// ones are scanned exactly.
    Auto,
    /// Every search is an exact scan; no graph is built.
    Exact,
    /// Every segment gets a graph when the store is optimised.
    Hnsw,
}

/// [`IndexSettings::quantization`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// Full-precision vectors only.
    None,
    /// Scalar int8 copies kept in RAM (a quarter of the floats' size), rescored.
    Int8,
}

/// Graphs once a segment holds 20,000 points (`auto`), searched over int8 copies kept in RAM and
/// rescored with the full vectors, which stay on disk. On the clustered 100k bench library
/// (512-d), graph + int8 search at ef `max(128, depth)` returned the same fused top 20 as exact
/// scans at depths 500 and 1000 at a third of the vector-search time. With the full vectors on
/// disk the int8 copies are what keeps a large library's graph walk in memory: at 1M records a
/// search with the default weights took 24 ms p50 with int8 against 317 ms walking the graphs
/// over the on-disk floats (255 ms exact), both keeping the exact top 20 (benches/README.md).
/// The full vectors on disk: at 100k the served library took 0.54-0.58x the memory of the RAM
/// layout for 0.87-0.92x its requests per second, and a 1M library's vectors do not fit a 24
/// GiB machine's RAM beside the rest.
impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            kind: IndexKind::Auto,
            auto_threshold: 20_000,
            m: 16,
            ef_construct: 100,
            full_scan_kb: 10_000,
            full_scan_share: 0.0,
            ef: 128,
            quantization: Quantization::Int8,
            oversampling: 2.0,
            acorn: true,
            acorn_selectivity: 0.2,
            on_disk: true,
        }
    }
}

impl IndexSettings {
    /// The defaults of a store whose points all hold the same named vectors (each part of a
    /// [`PartitionedStore`], as a new embedded library keeps them): [`Default`] with
    /// [`Self::full_scan_kb`] 40,000 KiB (about 20,000 vectors of 512 floats), raised as the
    /// part grows ([`Self::full_scan_share`] 0.08, see [`Self::full_scan_kb_for`]).
    ///
    /// 40,000 KiB rather than 20,000: at 100k records a filter keeping 14 % of the images
    /// (a label and a date) was answered by ACORN's walk in about twice the time a scan of the
    /// records it keeps took, with the same fused top 20 (benches/README.md, "A full-scan
    /// threshold of 20,000 vectors below 250k points"). From 250,000 points on the threshold
    /// is what 20,000 KiB grew to (8 % of the part's vector data), and a part of fewer points
    /// scans at most 20,000 of them, which is what a search of a part too small for a graph
    /// (under [`Self::auto_threshold`] points) always scans.
    ///
    /// Qdrant turns `full_scan_kb` into a number of vectors when it builds a segment's graph,
    /// dividing by the segment's vector data per point, points without the vector included.
    /// In one collection of image and region points (1.8 regions a record in the bench data)
    /// the default 10,000 KiB therefore stood for about 14,000 `image` vectors and 7,800
    /// `region` vectors, and a filtered search kept within that many of a segment's vectors
    /// was scored exactly over the int8 copies instead of walking the graph. The same 10,000
    /// KiB over a part holding only its own points is 5,000 vectors, and filters between the
    /// two then walked the graph with ACORN at several times the cost (a four-list search
    /// under a quarter's dates, 1.9-2.4x). With 20,000 KiB, on the clustered 100k library, that
    /// case was back to one collection's time and the others as fast or faster within the
    /// run-to-run spread, with the same fused top 20 (benches/README.md, "Images and regions
    /// apart").
    pub fn for_parts() -> Self {
        IndexSettings {
            full_scan_kb: 40_000,
            full_scan_share: 0.08,
            ..IndexSettings::default()
        }
    }

    /// The full-scan threshold (KiB, qdrant's `full_scan_threshold`) a collection of `points`
    /// points, each with vectors of `dim` floats, is given: [`Self::full_scan_kb`] times the
    /// largest power of 2 that keeps it within [`Self::full_scan_share`] of the points' vector
    /// data, and never more than the largest accepted [`Self::full_scan_kb`]. With the parts'
    /// defaults (40,000 KiB, 0.08) and 512 floats: 20,000 vectors up to 499,999 points, then
    /// twice as many at 500,000, 1,000,000 (80,000 vectors), 2,000,000 points and so on:
    /// between 4 and 8 % of the points from 250,000 on.
    pub fn full_scan_kb_for(&self, points: usize, dim: usize) -> usize {
        // Whole KiB: `points * dim * 4 / 1024` exactly, then the share (a float rounded down
        // could put a library of exactly 1M points a step lower than its own threshold says).
        let data_kb = (points as u128 * dim as u128 * 4 / 1024) as f64;
        let cap = (self.full_scan_share * data_kb * (1.0 + 1e-12)).floor();
        let mut kb = self.full_scan_kb;
        while kb.saturating_mul(2) <= Self::MAX_FULL_SCAN_KB && (kb * 2) as f64 <= cap {
            kb *= 2;
        }
        kb
    }

    /// Largest accepted `m`.
    pub const MAX_M: usize = 128;
    /// Largest accepted `ef_construct` and `ef`.
    pub const MAX_EF: usize = 10_000;
    /// Largest accepted oversampling factor.
    pub const MAX_OVERSAMPLING: f64 = 16.0;
    /// Largest accepted `full_scan_kb` (about 5M vectors of 512 floats).
    pub const MAX_FULL_SCAN_KB: usize = 10_000_000;

    /// Checks every number against its bounds.
    ///
    /// # Errors
    /// [`StoreError::Backend`] naming the setting and its accepted range.
    pub fn validate(&self) -> StoreResult<()> {
        let bad = |what: &str, range: &str| {
            Err(StoreError::Backend(format!(
                "index setting {what} must lie in {range}"
            )))
        };
        if !(4..=Self::MAX_M).contains(&self.m) {
            return bad("m", "4..=128");
        }
        if !(4..=Self::MAX_EF).contains(&self.ef_construct) {
            return bad("ef_construct", "4..=10000");
        }
        if !(1..=Self::MAX_FULL_SCAN_KB).contains(&self.full_scan_kb) {
            return bad("full_scan_kb", "1..=10000000");
        }
        if !(0.0..=1.0).contains(&self.full_scan_share) {
            return bad("full_scan_share", "0.0..=1.0");
        }
        if !(1..=Self::MAX_EF).contains(&self.ef) {
            return bad("ef", "1..=10000");
        }
        if !(1..=1_000_000_000).contains(&self.auto_threshold) {
            return bad("auto_threshold", "1..=1000000000");
        }
        if !(1.0..=Self::MAX_OVERSAMPLING).contains(&self.oversampling) {
            return bad("oversampling", "1.0..=16.0");
        }
        if !(0.0..=1.0).contains(&self.acorn_selectivity) {
            return bad("acorn_selectivity", "0.0..=1.0");
        }
        Ok(())
    }

    /// Qdrant's optimizer `indexing_threshold` (KiB of vector data per segment, per named
    /// vector, from which a segment gets a graph) carrying [`Self::kind`] for vectors of `dim`
    /// floats: 0 (qdrant's "never build a graph") for exact scans, 1 (the smallest non-zero
    /// value: every segment) for hnsw, and `auto_threshold` points' worth of vector data for auto.
    pub(crate) fn indexing_threshold_kb(&self, dim: usize) -> usize {
        match self.kind {
            IndexKind::Exact => 0,
            IndexKind::Hnsw => 1,
            IndexKind::Auto => {
                // qdrant compares segment sizes in KiB.
                let kb_per_point = (dim * 4) as f64 / 1024.0;
                ((self.auto_threshold as f64 * kb_per_point).ceil() as usize).max(1)
            }
        }
    }
}

/// What a store reports about its index (for `imagelens info`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexState {
    /// The settings in force.
    pub settings: Option<IndexSettings>,
    /// Points stored.
    pub points: usize,
    /// Vectors reachable through a graph, over every named vector.
    pub indexed_vectors: usize,
    /// Storage segments (over every shard, for a server collection).
    pub segments: usize,
    /// Bytes on disk under the store's directory; `None` when unknown (a Qdrant server
    /// reports no disk use through its API).
    pub disk_bytes: Option<u64>,
    /// The full-scan threshold (KiB) each collection's graphs are built with (one per part of
    /// a [`PartitionedStore`], in order): [`IndexSettings::full_scan_kb`], grown with the
    /// collection by [`IndexSettings::full_scan_share`]. Empty when none is configured yet.
    #[serde(default)]
    pub full_scan_kb: Vec<usize>,
}

/// A scored point.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The point.
    pub id: PointId,
    /// Cosine similarity (higher is closer).
    pub score: f32,
    /// Its payload.
    pub payload: Payload,
}

/// A vector database holding one collection.
pub trait VectorStore: Send + Sync {
    /// Creates the collection, or checks an existing one has the same spec.
    ///
    /// # Errors
    /// [`StoreError::SpecMismatch`] when an existing collection differs.
    fn ensure(&self, spec: &CollectionSpec) -> StoreResult<()>;

    /// The collection's spec as created (canonical order: [`VectorStore::ensure`] sorts it).
    ///
    /// # Errors
    /// [`StoreError::Missing`] before the collection exists.
    fn collection_spec(&self) -> StoreResult<CollectionSpec>;

    /// Inserts or replaces points.
    ///
    /// # Errors
    /// [`StoreError::DimensionMismatch`] / [`StoreError::UnknownVector`] for bad vectors.
    fn upsert(&self, points: Vec<VectorPoint>) -> StoreResult<()>;

    /// Nearest neighbours of `query.vector` among points having `query.using`, best first.
    ///
    /// # Errors
    /// Backend failures.
    fn search(&self, query: &VectorQuery) -> StoreResult<Vec<Hit>>;

    /// Several searches at once, one answer list per query in the same order (hybrid ranking's
    /// image, region and text lists). A server store sends them in one request; the default
    /// runs them one after the other.
    ///
    /// # Errors
    /// As [`VectorStore::search`], for any of the queries.
    fn search_many(&self, queries: &[VectorQuery]) -> StoreResult<Vec<Vec<Hit>>> {
        queries.iter().map(|q| self.search(q)).collect()
    }

    /// Reads points by id (payload only); missing ids are skipped.
    ///
    /// # Errors
    /// Backend failures.
    fn retrieve(&self, ids: &[PointId]) -> StoreResult<Vec<Hit>>;

    /// Reads the named vector of a point, if the point exists and has it.
    ///
    /// # Errors
    /// Backend failures.
    fn vector(&self, id: PointId, using: &str) -> StoreResult<Option<Vec<f32>>>;

    /// Deletes points by id; missing ids are ignored.
    ///
    /// # Errors
    /// Backend failures.
    fn delete(&self, ids: &[PointId]) -> StoreResult<()>;

    /// Deletes every point matching `filter` (an empty filter is refused to avoid accidents).
    ///
    /// # Errors
    /// Backend failures; [`StoreError::Backend`] for an empty filter.
    fn delete_where(&self, filter: &VectorFilter) -> StoreResult<()>;

    /// Number of points matching `filter` (exact).
    ///
    /// # Errors
    /// Backend failures.
    fn count(&self, filter: &VectorFilter) -> StoreResult<usize>;

    /// Distinct values of the string payload `key` over all points (e.g. every `record_id`).
    ///
    /// # Errors
    /// Backend failures.
    fn distinct(&self, key: &str) -> StoreResult<BTreeSet<String>>;

    /// Makes everything before it durable.
    ///
    /// # Errors
    /// Backend failures.
    fn flush(&self) -> StoreResult<()>;

    /// Reorganises storage after a batch of writes, durably: merges small segments, vacuums
    /// deleted points and, where the backend is configured to, builds HNSW graphs (searches
    /// without one are exact scans). Call it after a run of writes, not per write: with graphs
    /// on, a large collection takes minutes.
    ///
    /// # Errors
    /// Backend failures.
    fn optimize(&self) -> StoreResult<()>;

    /// The index settings in force (the default for a backend without its own).
    ///
    /// # Errors
    /// Backend failures.
    fn index_settings(&self) -> StoreResult<IndexSettings> {
        Ok(IndexSettings::default())
    }

    /// Replaces the index settings, durably. Search-time settings (`ef`, `oversampling`) act
    /// at once; graphs and quantized copies are (re)built by the next [`Self::optimize`].
    ///
    /// # Errors
    /// Invalid settings; [`StoreError::Backend`] where the backend has no such settings.
    fn set_index_settings(&self, settings: &IndexSettings) -> StoreResult<()> {
        settings.validate()?;
        Err(StoreError::Backend(
            "this vector store backend has no index settings".into(),
        ))
    }

    /// Points, graph-indexed vectors, segments and disk use.
    ///
    /// # Errors
    /// Backend failures.
    fn index_state(&self) -> StoreResult<IndexState> {
        Ok(IndexState {
            points: self.count(&VectorFilter::default())?,
            ..IndexState::default()
        })
    }

    /// Rewrites storage so deleted points are physically gone (not just tombstoned).
    ///
    /// # Errors
    /// Backend failures.
    fn compact(&self) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::IndexSettings;

    /// The parts' defaults give the thresholds their docs promise at 512 floats: 40,000 KiB
    /// (20,000 vectors) up to 499,999 points, then twice as much at 500,000, 1,000,000 and
    /// 2,000,000 points (what 20,000 KiB had grown to from 250,000 points on); a share of 0
    /// never grows it, and it never exceeds the largest accepted `full_scan_kb`.
    #[test]
    fn the_full_scan_threshold_grows_in_steps_of_two_within_its_share() {
        let parts = IndexSettings::for_parts();
        let at = |points| parts.full_scan_kb_for(points, 512);
        assert_eq!(at(0), 40_000);
        assert_eq!(at(100_000), 40_000);
        assert_eq!(at(249_999), 40_000);
        assert_eq!(at(250_000), 40_000);
        assert_eq!(at(499_999), 40_000);
        assert_eq!(at(500_000), 80_000);
        assert_eq!(at(999_999), 80_000);
        assert_eq!(at(1_000_000), 160_000);
        assert_eq!(at(1_798_900), 160_000);
        assert_eq!(at(2_000_000), 320_000);
        assert_eq!(at(usize::MAX / 4096), 5_120_000);
        let never = IndexSettings {
            full_scan_share: 0.0,
            ..parts.clone()
        };
        assert_eq!(never.full_scan_kb_for(10_000_000, 512), 40_000);
        assert_eq!(
            IndexSettings::default().full_scan_kb_for(10_000_000, 512),
            10_000
        );
        let all = IndexSettings {
            full_scan_share: 1.0,
            ..parts
        };
        assert!(all.full_scan_kb_for(usize::MAX / 4096, 512) <= IndexSettings::MAX_FULL_SCAN_KB);
    }
}
