//! [`ServerStore`]: the [`VectorStore`](super::VectorStore) on a Qdrant server or cluster through
//! qdrant-client (cargo feature `server`), and [`QdrantProcess`], a real Qdrant server started on
//! loopback ports for tests and scripts.
//!
//! Without the feature [`ServerStore`] is a stub, in the manner of candle's dummy CUDA backend:
//! [`ServerStore::connect`] returns [`StoreError::NotCompiled`], so callers (`Library`, `app.rs`)
//! need no `#[cfg]` of their own.
//!
//! With the feature, every qdrant-client type stays inside `real/` (`mod.rs`: connecting,
//! collection layout and index settings; `store.rs`: the [`VectorStore`](super::VectorStore)
//! methods; `convert.rs`: filters and payloads to and from the client's types). The test
//! server process is `process.rs`. The client is async; the
//! store owns a private one-worker tokio runtime and blocks on it, so like every store method
//! these block: from async code call them inside `tokio::task::spawn_blocking` (blocking on the
//! private runtime from a runtime thread panics).
//!
//! # Invariants (shared with the edge store, checked by `tests/store_suite.rs`)
//!
//! - Every write (upsert, delete) is sent with `wait=true`: when the call returns it is applied
//!   (and in the server's WAL, which the server replays after a crash). Deletions also ask for
//!   `ordering=medium` (through the shard's elected leader: with `strong`, the permanent
//!   leader, every deletion was refused while that node was down), so in a cluster a deletion
//!   that returned is applied on every replica that acknowledged it; a replica that did not is marked
//!   dead by the server and re-synchronised from a live one before it serves again.
//! - Upserts are checked whole before anything is sent (a bad vector stores nothing), then sent
//!   in batches of [`UPSERT_BATCH`] points, one at a time, each waited for: the server's
//!   acknowledgement is the back-pressure. Points have deterministic ids, so re-sending a batch
//!   after a failure replaces, never duplicates.
//! - The collection spec is read back from the server's collection info (vector names, size,
//!   cosine distance, payload index types), so a second process with another spec gets
//!   [`StoreError::SpecMismatch`]. Every filter field gets a payload index when the collection
//!   is created.
//! - A collection it creates keeps each named vector's full vectors on disk (memory-mapped) and
//!   the int8 copies, when the index settings ask for them, in RAM; `optimize` moves the
//!   vectors of an older collection (made with them in RAM) to disk, and the server rewrites
//!   its segments.
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

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StoreError;
#[cfg(not(feature = "server"))]
use super::{
    CollectionSpec, Hit, PointId, StoreResult, VectorFilter, VectorPoint, VectorQuery, VectorStore,
};
#[cfg(not(feature = "server"))]
use std::collections::BTreeSet;

pub use process::{ClusterRole, QDRANT_BIN_ENV, QdrantProcess, REQUIRE_QDRANT_ENV};
#[cfg(feature = "server")]
pub use real::ServerStore;

mod process;
#[cfg(feature = "server")]
mod real;

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
    /// Collection name: the one collection, or for a library that keeps images and regions
    /// apart the name its store URL gives, from which [`ServerStatus::collections`] are named.
    pub collection: String,
    /// The collections on the server that hold the library's points.
    #[serde(default)]
    pub collections: Vec<String>,
    /// Whether the collection exists yet (it is created by the first embedded ingest); of
    /// several, whether every one does.
    pub exists: bool,
    /// Collection status: `green` (ready), `yellow` (optimizing), `grey`, `red`; of several,
    /// the first that is not green.
    pub status: String,
    /// Points in the collection (the server's approximate count; of several, the sum).
    pub points: u64,
    /// Vectors already in an HNSW graph (of several collections, the sum).
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

impl ServerStatus {
    /// One status for the collections of one library (`parts`, each as
    /// [`ServerStore::status`] answers for it), under the library's collection name `name`:
    /// every collection listed, points and indexed vectors summed, the first status that is
    /// not green, the shard layout of the first (every part is created with the same), and
    /// every replica of every collection.
    ///
    /// # Panics
    /// When `parts` is empty.
    pub fn merged(name: &str, parts: Vec<ServerStatus>) -> ServerStatus {
        let mut parts = parts.into_iter();
        let mut all = parts.next().expect("a library has at least one collection");
        all.collections = vec![std::mem::replace(&mut all.collection, name.to_owned())];
        for part in parts {
            all.collections.push(part.collection);
            all.exists &= part.exists;
            if all.status == "green" {
                all.status = part.status;
            }
            all.points += part.points;
            all.indexed_vectors += part.indexed_vectors;
            all.replicas.extend(part.replicas);
        }
        all
    }
}

/// One replica of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShardReplica {
    /// Collection the shard belongs to.
    #[serde(default)]
    pub collection: String,
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

    /// Always fails: this binary was built without `--features server`.
    ///
    /// # Errors
    /// Always [`StoreError::NotCompiled`]`("server")`.
    pub fn connect_with_defaults(
        url: &str,
        collection: &str,
        options: ServerOptions,
        defaults: &super::IndexSettings,
    ) -> StoreResult<Self> {
        let _ = (url, collection, options, defaults);
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
    fn collection_spec(&self) -> StoreResult<CollectionSpec> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(collection: &str, state: &str, points: u64, shards: u32) -> ServerStatus {
        ServerStatus {
            url: "http://localhost:6334".into(),
            version: "1.18.3".into(),
            collection: collection.into(),
            collections: vec![collection.into()],
            exists: true,
            status: state.into(),
            points,
            indexed_vectors: points / 2,
            shard_number: shards,
            replication_factor: 1,
            write_consistency_factor: 1,
            replicas: (0..shards)
                .map(|shard| ShardReplica {
                    collection: collection.into(),
                    shard,
                    peer: 7,
                    state: "Active".into(),
                    points: Some(points / u64::from(shards)),
                })
                .collect(),
        }
    }

    #[test]
    fn the_parts_of_a_library_merge_into_one_status_that_names_each_collection() {
        let merged = ServerStatus::merged(
            "lib",
            vec![
                status("lib.images", "green", 100, 2),
                status("lib.regions", "yellow", 300, 2),
            ],
        );
        assert_eq!(merged.collection, "lib");
        assert_eq!(merged.collections, ["lib.images", "lib.regions"]);
        assert_eq!((merged.points, merged.indexed_vectors), (400, 200));
        assert_eq!(merged.status, "yellow", "the first that is not green");
        assert!(merged.exists);
        assert_eq!(merged.shard_number, 2);
        assert_eq!(merged.replicas.len(), 4);
        assert_eq!(
            merged
                .replicas
                .iter()
                .filter(|r| r.collection == "lib.regions")
                .count(),
            2
        );

        // A part not created yet: the library's collections do not all exist.
        let mut absent = status("lib.regions", "absent", 0, 0);
        absent.exists = false;
        let merged = ServerStatus::merged("lib", vec![status("lib.images", "green", 5, 1), absent]);
        assert!(!merged.exists);
        assert_eq!(merged.status, "absent");
        assert_eq!(merged.points, 5);
    }
}
