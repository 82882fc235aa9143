//! Conformance suite for [`VectorStore`] implementations.
//!
//! Every case is a generic function over a [`Fixture`] (a store plus a way to reopen it), and
//! [`store_suite!`] instantiates all of them for one backend, in the manner of tantivy's
//! `directory/tests.rs` and ripgrep's `rgtest!`:
//!
//! - `edge`: [`EdgeStore`] in a fresh temporary directory per test;
//! - `partitioned`: a [`PartitionedStore`] of two edge stores, `image` and `text` in one and
//!   `region` in the other (the layout of a new embedded library);
//! - `server`: [`ServerStore`] against a real Qdrant server, only with `--features server`: each
//!   test starts `../shared/bin/qdrant` (or `$IMAGELENS_QDRANT_BIN`) on free loopback ports with
//!   a temporary storage folder and kills it when done, or uses the server at `QDRANT_URL` with
//!   a collection of its own. Without a binary or URL each test says why it skipped.
//!   Server-only cases (failure behaviour, layout, status) live in `tests/store_server.rs`;
//! - `partitioned_server`: a [`PartitionedStore`] of two server stores, collections
//!   `<c>.images` and `<c>.regions` of one server (the layout of a new server library).
//!
//! After the generic cases come edge-only ones: crash recovery after `kill -9` (the test binary
//! re-runs itself as the child to kill), leftovers of interrupted `ensure`/`compact`, and the
//! directory lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[cfg(feature = "server")]
use indexer::store::QdrantProcess;
use indexer::store::{
    CollectionSpec, Condition, EdgeStore, Hit, IndexKind, IndexSettings, Part, PartitionedStore,
    Payload, PointId, Quantization, ServerStore, StoreError, VectorFilter, VectorPoint,
    VectorQuery, VectorStore,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A store under test and how to reopen it.
struct Fixture {
    /// The open store (`None` only inside [`Fixture::reopen`]).
    store: Option<Box<dyn VectorStore>>,
    /// Opens the same collection again.
    open: Box<dyn Fn() -> Box<dyn VectorStore>>,
    /// Where the store keeps its files, when it is local (for byte-level checks).
    dir: Option<PathBuf>,
    /// Cleanup (temporary directory, server collection); dropped after the store.
    _guard: Box<dyn std::any::Any>,
}

impl Fixture {
    fn store(&self) -> &dyn VectorStore {
        self.store.as_deref().expect("store is open")
    }

    /// Drops the store (releasing its files) and opens it again.
    fn reopen(&mut self) {
        self.store = None;
        self.store = Some((self.open)());
    }
}

/// [`EdgeStore`] in a fresh temporary directory.
fn edge_in_tempdir() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("vectors");
    let open_dir = dir.clone();
    let open = move || -> Box<dyn VectorStore> {
        Box::new(EdgeStore::open(&open_dir).expect("open edge store"))
    };
    Fixture {
        store: Some(open()),
        open: Box::new(open),
        dir: Some(dir),
        _guard: Box::new(tmp),
    }
}

/// Two [`EdgeStore`]s under one temporary directory as one [`PartitionedStore`]: `images`
/// (vectors `image`, `text`) and `regions` (`region`).
fn partitioned_in_tempdir() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("vectors");
    let open_dir = dir.clone();
    let open = move || -> Box<dyn VectorStore> { Box::new(partitioned(&open_dir)) };
    Fixture {
        store: Some(open()),
        open: Box::new(open),
        dir: Some(dir),
        _guard: Box::new(tmp),
    }
}

fn partitioned(dir: &Path) -> PartitionedStore {
    partitioned_over(|name| {
        std::sync::Arc::new(EdgeStore::open(&dir.join(name)).expect("open edge store"))
    })
}

/// A [`PartitionedStore`] of `images` (vectors `image`, `text`) and `regions` (`region`), each
/// part opened by `open` from its name.
fn partitioned_over(open: impl Fn(&str) -> std::sync::Arc<dyn VectorStore>) -> PartitionedStore {
    let part = |name: &str, vectors: &[&str]| Part {
        name: name.to_owned(),
        vectors: vectors.iter().map(|v| (*v).to_owned()).collect(),
        store: open(name),
    };
    PartitionedStore::new(vec![
        part("images", &["image", "text"]),
        part("regions", &["region"]),
    ])
    .expect("parts")
}

/// [`ServerStore`] on a fresh collection of a real Qdrant server: the one at `QDRANT_URL` when
/// that is set, else a [`QdrantProcess`] started for this test (`../shared/bin/qdrant`, or
/// `$IMAGELENS_QDRANT_BIN`) and killed when the fixture drops. `None` (the test says it skipped)
/// only when there is neither.
#[cfg(feature = "server")]
fn server_fixture() -> Option<Fixture> {
    server_fixture_of(|url, collection| {
        Box::new(ServerStore::connect(url, collection).expect("connect to the server"))
    })
}

/// A [`PartitionedStore`] of two [`ServerStore`]s on one server (the layout of a new server
/// library: collections `<c>.images` and `<c>.regions`), set up as [`server_fixture`]'s.
#[cfg(feature = "server")]
fn partitioned_server_fixture() -> Option<Fixture> {
    server_fixture_of(|url, collection| {
        Box::new(partitioned_over(|part| {
            std::sync::Arc::new(
                ServerStore::connect(
                    url,
                    &indexer::library::server_part_collection(collection, part),
                )
                .expect("connect to the server"),
            )
        }))
    })
}

/// A fixture of the store `open` makes from a server URL and a fresh collection name (see
/// [`server_fixture`]).
#[cfg(feature = "server")]
fn server_fixture_of(
    open: impl Fn(&str, &str) -> Box<dyn VectorStore> + 'static,
) -> Option<Fixture> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    let (url, process) = match std::env::var("QDRANT_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let process = started_server()?;
            (process.grpc_url(), Some(process))
        }
    };
    let collection = format!(
        "store_suite_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
    );
    struct DropCollection(String, String, Option<QdrantProcess>);
    impl Drop for DropCollection {
        fn drop(&mut self) {
            // A server started for the test goes whole; a shared one loses the collection
            // (and its parts' collections, where the store is partitioned).
            if self.2.is_none() {
                let parts = ["images", "regions"]
                    .map(|p| indexer::library::server_part_collection(&self.1, p));
                for name in std::iter::once(self.1.clone()).chain(parts) {
                    if let Ok(store) = ServerStore::connect(&self.0, &name) {
                        let _ = store.drop_collection();
                    }
                }
            }
        }
    }
    let guard = DropCollection(url.clone(), collection.clone(), process);
    let open = move || open(&url, &collection);
    Some(Fixture {
        store: Some(open()),
        open: Box::new(open),
        dir: None,
        _guard: Box::new(guard),
    })
}

/// A Qdrant server for one test, or `None` after saying why not (no binary; set
/// `IMAGELENS_QDRANT_BIN` or `QDRANT_URL` to run the server suite). Fails instead when
/// `IMAGELENS_REQUIRE_QDRANT` is set.
#[cfg(feature = "server")]
fn started_server() -> Option<QdrantProcess> {
    QdrantProcess::start_or_skip()
}

/// Instantiates every generic case for one backend: `store_suite!(name, || Option<Fixture>)`.
macro_rules! store_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;

            fn fixture() -> Option<super::Fixture> {
                let make: fn() -> Option<super::Fixture> = $make;
                make()
            }

            store_suite!(@cases
                ensure_is_idempotent_and_refuses_a_different_spec_after_reopen,
                ensure_adds_the_payload_indexes_a_later_spec_names,
                methods_before_ensure_report_missing,
                upsert_then_search_returns_nearest_first_with_cosine_scores,
                upsert_same_id_replaces_vectors_and_payload,
                points_with_some_vectors_are_found_only_by_those_vectors,
                filters_are_exact_and_exact_search_equals_brute_force,
                dimension_mismatch_and_unknown_vectors_are_errors_that_store_nothing,
                deleted_points_never_come_back,
                delete_where_with_an_empty_filter_is_refused,
                distinct_returns_every_value_across_scroll_pages,
                data_survives_drop_and_reopen_after_flush,
                compact_keeps_live_points_and_purges_deleted_ones,
                optimize_keeps_every_point_and_every_answer,
                search_many_answers_each_query_like_search,
                large_upserts_are_batched_and_re_upserts_replace,
                index_settings_round_trip_survive_a_reopen_and_bad_ones_change_nothing,
            );
        }
    };
    (@cases $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if let Some(mut fixture) = fixture() {
                    super::$case(&mut fixture);
                }
            }
        )*
    };
}

store_suite!(edge, || Some(edge_in_tempdir()));

store_suite!(partitioned, || Some(partitioned_in_tempdir()));

#[cfg(feature = "server")]
store_suite!(server, server_fixture);
#[cfg(feature = "server")]
store_suite!(partitioned_server, partitioned_server_fixture);

#[cfg(not(feature = "server"))]
#[test]
fn server_suite_skipped_without_the_server_feature() {
    assert!(
        std::env::var_os(indexer::store::REQUIRE_QDRANT_ENV).is_none(),
        "IMAGELENS_REQUIRE_QDRANT is set but this build has no `server` feature"
    );
    eprintln!("skipped: the server suite needs `--features server` (and ../shared/bin/qdrant)");
    let err = ServerStore::connect("http://localhost:6334", "x").expect_err("stub");
    assert!(matches!(err, StoreError::NotCompiled("server")), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Shared data

const DIM: usize = 8;
const LABELS: [&str; 6] = ["cat", "dog", "car", "tree", "boat", "bird"];
const DATASETS: [&str; 3] = ["coco", "voc", "openimages"];

fn spec() -> CollectionSpec {
    CollectionSpec {
        dim: DIM,
        vectors: vec!["image".into(), "region".into(), "text".into()],
        keyword_fields: vec![
            "dataset".into(),
            "kind".into(),
            "labels".into(),
            "record_id".into(),
        ],
        integer_fields: vec!["captured".into()],
    }
}

fn ensured(fixture: &Fixture) -> &dyn VectorStore {
    let store = fixture.store();
    store.ensure(&spec()).expect("ensure");
    store
}

fn payload(pairs: &[(&str, serde_json::Value)]) -> Payload {
    let mut payload = Payload::default();
    for (key, value) in pairs {
        payload.insert(key, value.clone());
    }
    payload
}

fn point(id: PointId, vectors: &[(&str, Vec<f32>)], payload: Payload) -> VectorPoint {
    VectorPoint {
        id,
        vectors: vectors
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect(),
        payload,
    }
}

fn random_vector(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn query(using: &str, vector: Vec<f32>, filter: VectorFilter, limit: usize) -> VectorQuery {
    VectorQuery {
        using: using.into(),
        vector,
        filter,
        limit,
        exact: true,
        payload_keys: None,
    }
}

fn ids(hits: &[Hit]) -> Vec<PointId> {
    hits.iter().map(|h| h.id).collect()
}

fn match_any(key: &str, any: &[&str]) -> Condition {
    Condition::MatchAny {
        key: key.into(),
        any: any.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn must(conditions: Vec<Condition>) -> VectorFilter {
    VectorFilter {
        must: conditions,
        must_not: Vec::new(),
    }
}

/// A generated point, kept in memory to compute expected answers by brute force.
#[derive(Clone)]
struct Sample {
    id: PointId,
    image: Vec<f32>,
    labels: Vec<String>,
    dataset: String,
    captured: i64,
}

impl Sample {
    fn point(&self) -> VectorPoint {
        point(
            self.id,
            &[("image", self.image.clone())],
            payload(&[
                ("record_id", format!("r{}", self.id).into()),
                ("labels", self.labels.clone().into()),
                ("dataset", self.dataset.clone().into()),
                ("captured", self.captured.into()),
            ]),
        )
    }

    fn satisfies(&self, condition: &Condition) -> bool {
        match condition {
            Condition::MatchAny { key, any } => match key.as_str() {
                "labels" => self.labels.iter().any(|l| any.contains(l)),
                "dataset" => any.contains(&self.dataset),
                other => panic!("no sample field {other}"),
            },
            Condition::Range { key, gte, lte } => {
                assert_eq!(key, "captured");
                gte.is_none_or(|g| self.captured >= g) && lte.is_none_or(|l| self.captured <= l)
            }
            Condition::HasId(ids) => ids.contains(&self.id),
        }
    }

    fn matches(&self, filter: &VectorFilter) -> bool {
        filter.must.iter().all(|c| self.satisfies(c))
            && !filter.must_not.iter().any(|c| self.satisfies(c))
    }
}

fn samples(seed: u64, n: u64) -> Vec<Sample> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|id| {
            let labels: Vec<String> = LABELS
                .iter()
                .filter(|_| rng.random_bool(0.3))
                .map(|l| (*l).to_owned())
                .collect();
            Sample {
                id: id * 7 + 3,
                image: random_vector(&mut rng, DIM),
                labels,
                dataset: DATASETS[rng.random_range(0..DATASETS.len())].to_owned(),
                captured: rng.random_range(0..=1_000),
            }
        })
        .collect()
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Generic cases

fn ensure_is_idempotent_and_refuses_a_different_spec_after_reopen(f: &mut Fixture) {
    let store = ensured(f);
    store.ensure(&spec()).expect("second ensure is a no-op");
    let mut reordered = spec();
    reordered.vectors.reverse();
    reordered.keyword_fields.reverse();
    store
        .ensure(&reordered)
        .expect("order of names does not matter");
    store
        .upsert(vec![point(
            1,
            &[("image", vec![1.0; DIM])],
            Payload::default(),
        )])
        .unwrap();
    store.flush().unwrap();

    f.reopen();
    let store = f.store();
    store.ensure(&spec()).expect("same spec after reopen");
    for other in [
        CollectionSpec {
            dim: DIM + 1,
            ..spec()
        },
        CollectionSpec {
            vectors: vec!["image".into()],
            ..spec()
        },
        CollectionSpec {
            keyword_fields: vec!["dataset".into()],
            ..spec()
        },
        CollectionSpec {
            integer_fields: Vec::new(),
            ..spec()
        },
    ] {
        let err = store.ensure(&other).expect_err("different spec");
        assert!(matches!(err, StoreError::SpecMismatch { .. }), "{err}");
    }
    assert_eq!(
        store.count(&VectorFilter::default()).unwrap(),
        1,
        "refusals change nothing"
    );
}

fn ensure_adds_the_payload_indexes_a_later_spec_names(f: &mut Fixture) {
    // A library made before a payload key was filtered on (`split`, added after `dataset`).
    let store = ensured(f);
    let points: Vec<VectorPoint> = (0..6u64)
        .map(|i| {
            let mut p = vec![("dataset", serde_json::json!("coco"))];
            if i % 3 != 2 {
                p.push((
                    "split",
                    serde_json::json!(["train", "val"][(i % 3) as usize]),
                ));
            }
            point(i, &[("image", vec![1.0 + i as f32; DIM])], payload(&p))
        })
        .collect();
    store.upsert(points).unwrap();
    store.flush().unwrap();
    let later = || {
        let mut s = spec();
        s.keyword_fields.push("split".into());
        s
    };
    store
        .ensure(&later())
        .expect("a spec that only adds an index");
    store.ensure(&later()).expect("idempotent");
    let val = must(vec![match_any("split", &["val"])]);
    assert_eq!(store.count(&val).unwrap(), 2);
    let hits = store
        .search(&query("image", vec![1.0; DIM], val, 10))
        .unwrap();
    assert_eq!(ids(&hits).len(), 2);
    store.flush().unwrap();

    // The added index is part of the collection now: the later spec stands after a reopen,
    // and dropping a field or changing anything else is still refused.
    f.reopen();
    let store = f.store();
    store.ensure(&later()).expect("the later spec after reopen");
    for other in [
        spec(),
        CollectionSpec {
            dim: DIM + 1,
            ..later()
        },
    ] {
        let err = store.ensure(&other).expect_err("not only an added index");
        assert!(matches!(err, StoreError::SpecMismatch { .. }), "{err}");
    }
    assert_eq!(store.count(&VectorFilter::default()).unwrap(), 6);
}

fn methods_before_ensure_report_missing(f: &mut Fixture) {
    let store = f.store();
    let missing =
        |r: Result<(), StoreError>| assert!(matches!(r, Err(StoreError::Missing)), "{r:?}");
    missing(store.upsert(vec![point(
        1,
        &[("image", vec![1.0; DIM])],
        Payload::default(),
    )]));
    missing(
        store
            .search(&query("image", vec![1.0; DIM], VectorFilter::default(), 3))
            .map(drop),
    );
    missing(store.retrieve(&[1]).map(drop));
    missing(store.vector(1, "image").map(drop));
    missing(store.delete(&[1]));
    assert_eq!(store.count(&VectorFilter::default()).unwrap(), 0);
    assert!(store.distinct("record_id").unwrap().is_empty());
}

fn upsert_then_search_returns_nearest_first_with_cosine_scores(f: &mut Fixture) {
    let store = ensured(f);
    let mut rng = StdRng::seed_from_u64(1);
    // Not unit length on purpose: cosine must not care about norms.
    let vectors: Vec<Vec<f32>> = (0..20).map(|_| random_vector(&mut rng, DIM)).collect();
    let points = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            point(
                i as PointId,
                &[("image", v.clone())],
                payload(&[("n", (i as i64).into())]),
            )
        })
        .collect();
    store.upsert(points).unwrap();

    let target = 7;
    let probe: Vec<f32> = vectors[target].iter().map(|x| x * 3.0).collect();
    for exact in [true, false] {
        let hits = store
            .search(&VectorQuery {
                exact,
                ..query("image", probe.clone(), VectorFilter::default(), 5)
            })
            .unwrap();
        assert_eq!(hits.len(), 5);
        assert_eq!(hits[0].id, target as PointId, "the point itself is nearest");
        assert!(
            (hits[0].score - 1.0).abs() < 1e-4,
            "cosine of parallel vectors is 1: {}",
            hits[0].score
        );
        assert_eq!(
            hits[0].payload.get_i64("n"),
            Some(target as i64),
            "payload comes back"
        );
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "best first"
        );
        for hit in &hits {
            let expected = cosine(&probe, &vectors[hit.id as usize]);
            assert!(
                (hit.score - expected).abs() < 1e-4,
                "score {} vs cosine {expected}",
                hit.score
            );
        }
    }
}

fn upsert_same_id_replaces_vectors_and_payload(f: &mut Fixture) {
    let store = ensured(f);
    let a = vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let b = vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    store
        .upsert(vec![point(
            5,
            &[("image", a.clone()), ("text", a.clone())],
            payload(&[("v", 1.into())]),
        )])
        .unwrap();
    store
        .upsert(vec![point(
            5,
            &[("image", b.clone())],
            payload(&[("v", 2.into()), ("w", "x".into())]),
        )])
        .unwrap();

    assert_eq!(
        store.count(&VectorFilter::default()).unwrap(),
        1,
        "replaced, not duplicated"
    );
    let hits = store.retrieve(&[5]).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].payload,
        payload(&[("v", 2.into()), ("w", "x".into())])
    );
    let image = store.vector(5, "image").unwrap().expect("image vector");
    assert!(
        cosine(&image, &b) > 0.9999,
        "image vector replaced: {image:?}"
    );
    assert_eq!(
        store.vector(5, "text").unwrap(),
        None,
        "vectors not in the new point are gone"
    );
    let hits = store
        .search(&query("text", a, VectorFilter::default(), 10))
        .unwrap();
    assert!(hits.is_empty(), "no text vector left to find: {hits:?}");
}

fn points_with_some_vectors_are_found_only_by_those_vectors(f: &mut Fixture) {
    let store = ensured(f);
    let v = vec![0.5; DIM];
    store
        .upsert(vec![
            point(1, &[("image", v.clone())], Payload::default()),
            point(2, &[("region", v.clone())], Payload::default()),
            point(
                3,
                &[("image", v.clone()), ("text", v.clone())],
                Payload::default(),
            ),
        ])
        .unwrap();
    let found = |using: &str| -> BTreeSet<PointId> {
        let hits = store
            .search(&query(using, v.clone(), VectorFilter::default(), 10))
            .unwrap();
        ids(&hits).into_iter().collect()
    };
    assert_eq!(found("image"), BTreeSet::from([1, 3]));
    assert_eq!(found("region"), BTreeSet::from([2]));
    assert_eq!(found("text"), BTreeSet::from([3]));
    assert_eq!(store.vector(1, "text").unwrap(), None);
    assert!(store.vector(3, "text").unwrap().is_some());
    assert_eq!(store.vector(99, "image").unwrap(), None, "missing point");
}

fn filters_are_exact_and_exact_search_equals_brute_force(f: &mut Fixture) {
    let store = ensured(f);
    let samples = samples(42, 300);
    store
        .upsert(samples.iter().map(Sample::point).collect())
        .unwrap();

    // Range bounds sitting exactly on stored values, to prove both ends are inclusive.
    let mut captured: Vec<i64> = samples.iter().map(|s| s.captured).collect();
    captured.sort_unstable();
    let (low, high) = (captured[60], captured[120]);
    let some_ids: Vec<PointId> = samples.iter().step_by(9).map(|s| s.id).collect();
    let filters = vec![
        must(vec![match_any("labels", &["cat", "boat"])]),
        must(vec![match_any("dataset", &["voc"])]),
        must(vec![Condition::Range {
            key: "captured".into(),
            gte: Some(low),
            lte: Some(high),
        }]),
        must(vec![Condition::Range {
            key: "captured".into(),
            gte: None,
            lte: Some(low),
        }]),
        must(vec![Condition::Range {
            key: "captured".into(),
            gte: Some(high),
            lte: None,
        }]),
        must(vec![Condition::HasId(some_ids.clone())]),
        VectorFilter {
            must: Vec::new(),
            must_not: vec![match_any("labels", &["dog"])],
        },
        VectorFilter {
            must: vec![
                match_any("dataset", &["coco", "openimages"]),
                Condition::HasId(some_ids),
            ],
            must_not: vec![Condition::Range {
                key: "captured".into(),
                gte: Some(low),
                lte: Some(high),
            }],
        },
        must(vec![match_any("labels", &["no-such-label"])]),
    ];
    let mut rng = StdRng::seed_from_u64(7);
    for filter in &filters {
        let expected: Vec<&Sample> = samples.iter().filter(|s| s.matches(filter)).collect();
        assert_eq!(
            store.count(filter).unwrap(),
            expected.len(),
            "count of {filter:?}"
        );
        let probe = random_vector(&mut rng, DIM);
        let mut brute: Vec<(f32, PointId)> = expected
            .iter()
            .map(|s| (cosine(&probe, &s.image), s.id))
            .collect();
        brute.sort_by(|a, b| b.0.total_cmp(&a.0));
        brute.truncate(25);

        let hits = store
            .search(&query("image", probe.clone(), filter.clone(), 25))
            .unwrap();
        assert_eq!(
            ids(&hits),
            brute.iter().map(|b| b.1).collect::<Vec<_>>(),
            "exact top-k of {filter:?}"
        );
        for (hit, (score, _)) in hits.iter().zip(&brute) {
            assert!((hit.score - score).abs() < 1e-4);
        }
        // Asking for the record id only: the same hits, each with the record id and the keys
        // the filter reads (the store re-checks hits against it), nothing else.
        let lean = store
            .search(&VectorQuery {
                payload_keys: Some(vec!["record_id".into()]),
                ..query("image", probe.clone(), filter.clone(), 25)
            })
            .unwrap();
        assert_eq!(ids(&lean), ids(&hits), "lean top-k of {filter:?}");
        let mut wanted: BTreeSet<&str> = filter.keys().into_iter().collect();
        wanted.insert("record_id");
        for (hit, full) in lean.iter().zip(&hits) {
            assert!((hit.score - full.score).abs() < 1e-6);
            assert_eq!(
                hit.payload.get("record_id"),
                full.payload.get("record_id"),
                "{filter:?}"
            );
            let keys: BTreeSet<&str> = hit.payload.0.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                wanted
                    .iter()
                    .copied()
                    .filter(|k| full.payload.get(k).is_some())
                    .collect(),
                "payload keys of a lean hit under {filter:?}"
            );
        }
        let approximate = store
            .search(&VectorQuery {
                exact: false,
                ..query("image", probe, filter.clone(), 25)
            })
            .unwrap();
        let by_id: BTreeMap<PointId, &Sample> = samples.iter().map(|s| (s.id, s)).collect();
        for hit in &approximate {
            assert!(
                by_id[&hit.id].matches(filter),
                "approximate hit {} violates {filter:?}",
                hit.id
            );
        }
    }
}

fn dimension_mismatch_and_unknown_vectors_are_errors_that_store_nothing(f: &mut Fixture) {
    let store = ensured(f);
    let good = point(1, &[("image", vec![1.0; DIM])], Payload::default());
    let short = point(2, &[("image", vec![1.0; DIM - 1])], Payload::default());
    let unknown = point(3, &[("sketch", vec![1.0; DIM])], Payload::default());

    let err = store
        .upsert(vec![good.clone(), short])
        .expect_err("short vector");
    assert!(
        matches!(&err, StoreError::DimensionMismatch { name, expected: DIM, got } if name == "image" && *got == DIM - 1),
        "{err}"
    );
    let err = store
        .upsert(vec![good, unknown])
        .expect_err("unknown vector");
    assert!(
        matches!(&err, StoreError::UnknownVector(name) if name == "sketch"),
        "{err}"
    );
    assert_eq!(
        store.count(&VectorFilter::default()).unwrap(),
        0,
        "a bad batch stores nothing"
    );

    let err = store
        .search(&query("image", vec![1.0; 3], VectorFilter::default(), 1))
        .expect_err("dim");
    assert!(matches!(err, StoreError::DimensionMismatch { .. }), "{err}");
    let err = store
        .search(&query("sketch", vec![1.0; DIM], VectorFilter::default(), 1))
        .expect_err("name");
    assert!(matches!(err, StoreError::UnknownVector(_)), "{err}");
    let err = store.vector(1, "sketch").expect_err("name");
    assert!(matches!(err, StoreError::UnknownVector(_)), "{err}");
}

fn deleted_points_never_come_back(f: &mut Fixture) {
    let store = ensured(f);
    let samples = samples(3, 120);
    store
        .upsert(samples.iter().map(Sample::point).collect())
        .unwrap();
    let by_id: Vec<PointId> = samples.iter().take(10).map(|s| s.id).collect();
    store.delete(&by_id).unwrap();
    store.delete(&[]).unwrap();
    store.delete(&[999_999]).expect("missing ids are ignored");
    let voc = must(vec![match_any("dataset", &["voc"])]);
    store.delete_where(&voc).unwrap();

    let live: Vec<&Sample> = samples[10..]
        .iter()
        .filter(|s| s.dataset != "voc")
        .collect();
    let dead: Vec<PointId> = samples
        .iter()
        .filter(|s| !live.iter().any(|l| l.id == s.id))
        .map(|s| s.id)
        .collect();
    assert!(dead.len() > 20, "the seed deletes a fair share");

    let check = |store: &dyn VectorStore, when: &str| {
        assert_eq!(
            store.count(&VectorFilter::default()).unwrap(),
            live.len(),
            "count {when}"
        );
        assert_eq!(store.count(&voc).unwrap(), 0, "filtered count {when}");
        assert!(store.retrieve(&dead).unwrap().is_empty(), "retrieve {when}");
        for &id in &dead {
            assert_eq!(store.vector(id, "image").unwrap(), None, "vector {when}");
        }
        let hits = store
            .search(&query(
                "image",
                vec![0.3; DIM],
                VectorFilter::default(),
                500,
            ))
            .unwrap();
        let found: BTreeSet<PointId> = ids(&hits).into_iter().collect();
        assert_eq!(found, live.iter().map(|s| s.id).collect(), "search {when}");
        let expected: BTreeSet<String> = live.iter().map(|s| format!("r{}", s.id)).collect();
        assert_eq!(
            store.distinct("record_id").unwrap(),
            expected,
            "distinct {when}"
        );
    };
    check(f.store(), "after delete");
    f.store().flush().unwrap();
    f.reopen();
    check(f.store(), "after reopen");
    f.store().compact().unwrap();
    check(f.store(), "after compact");
    f.reopen();
    check(f.store(), "after compact and reopen");
}

fn delete_where_with_an_empty_filter_is_refused(f: &mut Fixture) {
    let store = ensured(f);
    store
        .upsert(samples(5, 10).iter().map(Sample::point).collect())
        .unwrap();
    let err = store
        .delete_where(&VectorFilter::default())
        .expect_err("empty filter");
    assert!(
        matches!(&err, StoreError::Backend(msg) if msg.contains("empty filter")),
        "{err}"
    );
    assert_eq!(store.count(&VectorFilter::default()).unwrap(), 10);
}

fn distinct_returns_every_value_across_scroll_pages(f: &mut Fixture) {
    let store = ensured(f);
    // 2,500 points, two per record: more than two pages of any sensible scroll size.
    let points: Vec<VectorPoint> = (0..2_500u64)
        .map(|i| {
            point(
                i,
                &[("region", vec![1.0 + i as f32; DIM])],
                payload(&[
                    ("record_id", format!("record-{:05}", i / 2).into()),
                    ("labels", vec![LABELS[(i % 6) as usize], "any"].into()),
                ]),
            )
        })
        .collect();
    for chunk in points.chunks(500) {
        store.upsert(chunk.to_vec()).unwrap();
    }
    let expected: BTreeSet<String> = (0..1_250).map(|r| format!("record-{r:05}")).collect();
    assert_eq!(store.distinct("record_id").unwrap(), expected);
    let labels: BTreeSet<String> = LABELS
        .iter()
        .chain(&["any"])
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(
        store.distinct("labels").unwrap(),
        labels,
        "string elements of arrays count"
    );
    assert!(store.distinct("no_such_key").unwrap().is_empty());
}

fn data_survives_drop_and_reopen_after_flush(f: &mut Fixture) {
    let store = ensured(f);
    let samples = samples(11, 200);
    store
        .upsert(samples.iter().map(Sample::point).collect())
        .unwrap();
    store.flush().unwrap();
    f.reopen();

    let store = f.store();
    store.ensure(&spec()).unwrap();
    assert_eq!(
        store.count(&VectorFilter::default()).unwrap(),
        samples.len()
    );
    let sample = &samples[17];
    let hits = store.retrieve(&[sample.id]).unwrap();
    assert_eq!(hits[0].payload, sample.point().payload);
    let stored = store.vector(sample.id, "image").unwrap().expect("vector");
    assert!(cosine(&stored, &sample.image) > 0.9999);
    let hits = store
        .search(&query(
            "image",
            sample.image.clone(),
            VectorFilter::default(),
            1,
        ))
        .unwrap();
    assert_eq!(ids(&hits), vec![sample.id]);
}

fn compact_keeps_live_points_and_purges_deleted_ones(f: &mut Fixture) {
    let store = ensured(f);
    let marker = format!("purge-me-{:016x}", StdRng::from_os_rng().random::<u64>());
    let samples = samples(13, 300);
    let doomed: BTreeSet<PointId> = samples.iter().step_by(3).map(|s| s.id).collect();
    let points = samples
        .iter()
        .map(|s| {
            let mut p = s.point();
            if doomed.contains(&p.id) {
                p.payload
                    .insert("kind", "doomed")
                    .insert("note", marker.clone());
            }
            p
        })
        .collect();
    store.upsert(points).unwrap();
    store.flush().unwrap();
    if let Some(dir) = &f.dir {
        assert!(
            !files_containing(dir, marker.as_bytes()).is_empty(),
            "the marker is on disk before"
        );
    }

    store
        .delete_where(&must(vec![match_any("kind", &["doomed"])]))
        .unwrap();
    store.compact().unwrap();
    let live: Vec<&Sample> = samples.iter().filter(|s| !doomed.contains(&s.id)).collect();
    assert_eq!(store.count(&VectorFilter::default()).unwrap(), live.len());
    for s in &live {
        let stored = store
            .vector(s.id, "image")
            .unwrap()
            .expect("live vector kept");
        assert!(cosine(&stored, &s.image) > 0.9999);
    }
    let s = live[5];
    let hits = store
        .search(&query("image", s.image.clone(), VectorFilter::default(), 1))
        .unwrap();
    assert_eq!(ids(&hits), vec![s.id]);
    assert_eq!(
        store.retrieve(&[s.id]).unwrap()[0].payload,
        s.point().payload
    );

    // Still writable after compaction.
    store
        .upsert(vec![point(
            1_000_000,
            &[("image", vec![1.0; DIM])],
            Payload::default(),
        )])
        .unwrap();
    assert_eq!(
        store.count(&VectorFilter::default()).unwrap(),
        live.len() + 1
    );
    store.flush().unwrap();
    f.reopen();
    assert_eq!(
        f.store().count(&VectorFilter::default()).unwrap(),
        live.len() + 1
    );
    f.store = None;

    match &f.dir {
        Some(dir) => {
            let leaks = files_containing(dir, marker.as_bytes());
            assert!(
                leaks.is_empty(),
                "deleted payload still on disk in {leaks:?}"
            );
        }
        None => eprintln!("skipped the on-disk purge check: this store keeps no local files"),
    }
}

fn optimize_keeps_every_point_and_every_answer(f: &mut Fixture) {
    let store = ensured(f);
    store.optimize().expect("optimize of an empty collection");
    let samples = samples(21, 400);
    store
        .upsert(samples.iter().map(Sample::point).collect())
        .unwrap();
    let filter = must(vec![match_any("labels", &["cat", "dog"])]);
    let mut rng = StdRng::seed_from_u64(5);
    let probes: Vec<Vec<f32>> = (0..5).map(|_| random_vector(&mut rng, DIM)).collect();
    let answers = |store: &dyn VectorStore| -> Vec<Vec<PointId>> {
        probes
            .iter()
            .map(|p| {
                ids(&store
                    .search(&query("image", p.clone(), filter.clone(), 20))
                    .unwrap())
            })
            .collect()
    };
    let before = answers(store);

    store.optimize().unwrap();
    assert_eq!(
        store.count(&VectorFilter::default()).unwrap(),
        samples.len()
    );
    assert_eq!(answers(store), before, "exact answers unchanged");
    for s in samples.iter().step_by(37) {
        assert_eq!(
            store.retrieve(&[s.id]).unwrap()[0].payload,
            s.point().payload
        );
    }
    // Writes after an optimize land and are found.
    store
        .upsert(vec![point(
            1_000_001,
            &[("image", vec![0.5; DIM])],
            Payload::default(),
        )])
        .unwrap();
    store.flush().unwrap();
    f.reopen();
    let store = f.store();
    assert_eq!(
        store.count(&VectorFilter::default()).unwrap(),
        samples.len() + 1
    );
    assert_eq!(answers(store), before, "answers survive a reopen");
}

fn search_many_answers_each_query_like_search(f: &mut Fixture) {
    let store = ensured(f);
    let samples = samples(31, 200);
    // Each sample as an image point and a region point of its own (as the library writes
    // them, and as a partitioned store keeps them).
    store
        .upsert(
            samples
                .iter()
                .flat_map(|s| {
                    let mut region = s.point();
                    region.id += 1_000_000;
                    region.vectors = BTreeMap::from([(
                        "region".to_owned(),
                        s.image.iter().rev().copied().collect(),
                    )]);
                    [s.point(), region]
                })
                .collect(),
        )
        .unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let queries = vec![
        query(
            "image",
            random_vector(&mut rng, DIM),
            VectorFilter::default(),
            10,
        ),
        query(
            "region",
            random_vector(&mut rng, DIM),
            must(vec![match_any("labels", &["cat"])]),
            7,
        ),
        query(
            "text",
            random_vector(&mut rng, DIM),
            VectorFilter::default(),
            5,
        ),
        query(
            "image",
            random_vector(&mut rng, DIM),
            VectorFilter::default(),
            0,
        ),
    ];
    let lists = store.search_many(&queries).unwrap();
    assert_eq!(lists.len(), queries.len(), "one list per query");
    for (q, list) in queries.iter().zip(&lists) {
        assert_eq!(ids(list), ids(&store.search(q).unwrap()), "{}", q.using);
    }
    assert_eq!(lists[0].len(), 10);
    assert!(!lists[1].is_empty());
    assert!(lists[2].is_empty(), "no point has a text vector");
    assert!(lists[3].is_empty(), "limit 0");
    assert!(store.search_many(&[]).unwrap().is_empty());
    let err = store
        .search_many(&[query("image", vec![1.0; 3], VectorFilter::default(), 1)])
        .expect_err("bad dimension in one query");
    assert!(matches!(err, StoreError::DimensionMismatch { .. }), "{err}");
}

fn large_upserts_are_batched_and_re_upserts_replace(f: &mut Fixture) {
    let store = ensured(f);
    // More than a few of the server store's batches, and an odd size.
    let samples = samples(17, 1_337);
    let points: Vec<VectorPoint> = samples.iter().map(Sample::point).collect();
    store.upsert(points.clone()).unwrap();
    assert_eq!(
        store.count(&VectorFilter::default()).unwrap(),
        samples.len()
    );
    // An interrupted ingest re-sends what it had sent: nothing doubles.
    store.upsert(points[..700].to_vec()).unwrap();
    store.upsert(points).unwrap();
    assert_eq!(
        store.count(&VectorFilter::default()).unwrap(),
        samples.len()
    );
    let last = samples.last().unwrap();
    assert_eq!(
        store.retrieve(&[last.id]).unwrap()[0].payload,
        last.point().payload
    );
}

// ---------------------------------------------------------------------------------------------
// Edge-only cases

fn index_settings_round_trip_survive_a_reopen_and_bad_ones_change_nothing(f: &mut Fixture) {
    let store = ensured(f);
    assert_eq!(store.index_settings().unwrap(), IndexSettings::default());
    let samples = samples(41, 300);
    store
        .upsert(samples.iter().map(Sample::point).collect())
        .unwrap();
    let wanted = IndexSettings {
        kind: IndexKind::Hnsw,
        m: 24,
        ef_construct: 64,
        full_scan_kb: 1,
        ef: 77,
        quantization: Quantization::Int8,
        oversampling: 3.0,
        ..IndexSettings::default()
    };
    store.set_index_settings(&wanted).unwrap();
    assert_eq!(store.index_settings().unwrap(), wanted);
    store.optimize().unwrap();
    let state = store.index_state().unwrap();
    assert_eq!(state.settings.as_ref(), Some(&wanted));
    assert_eq!(state.points, samples.len());
    assert!(state.indexed_vectors >= samples.len(), "{state:?}");
    let filter = must(vec![match_any("labels", &["cat", "dog"])]);
    let probe = vec![0.3; DIM];
    let exact = ids(&store
        .search(&query("image", probe.clone(), filter.clone(), 10))
        .unwrap());

    for bad in [
        IndexSettings {
            m: 1_000,
            ..wanted.clone()
        },
        IndexSettings {
            ef: 0,
            kind: IndexKind::Exact,
            ..wanted.clone()
        },
        IndexSettings {
            oversampling: 0.5,
            quantization: Quantization::None,
            ..wanted.clone()
        },
    ] {
        let err = store.set_index_settings(&bad).unwrap_err().to_string();
        assert!(err.contains("must lie in"), "{err}");
        assert_eq!(store.index_settings().unwrap(), wanted, "nothing changed");
    }

    // Auto with a threshold that, for these small vectors, asks qdrant for the same graphs as
    // hnsw: the kind itself is kept, not guessed back from the qdrant config.
    let auto = IndexSettings {
        kind: IndexKind::Auto,
        auto_threshold: 5,
        ..wanted.clone()
    };
    store.set_index_settings(&auto).unwrap();
    store.flush().unwrap();
    f.reopen();
    let store = f.store();
    assert_eq!(store.index_settings().unwrap(), auto);
    assert_eq!(store.index_state().unwrap().settings, Some(auto.clone()));
    store.set_index_settings(&wanted).unwrap();
    f.reopen();
    let store = f.store();
    assert_eq!(store.index_settings().unwrap(), wanted);
    assert_eq!(
        ids(&store.search(&query("image", probe, filter, 10)).unwrap()),
        exact,
        "exact answers after a reopen"
    );
}

fn edge_spec_store(dir: &Path) -> EdgeStore {
    let store = EdgeStore::open(dir).expect("open");
    store.ensure(&spec()).expect("ensure");
    store
}

#[test]
fn edge_second_open_of_a_live_directory_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = edge_spec_store(tmp.path());
    let err = EdgeStore::open(tmp.path()).expect_err("directory is locked by the first store");
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
}

#[test]
fn edge_open_discards_leftovers_of_an_interrupted_ensure_and_compact() {
    let tmp = tempfile::tempdir().unwrap();
    // A half-created shard with no commit file: an `ensure` killed midway.
    std::fs::create_dir_all(tmp.path().join("shard-0/segments")).unwrap();
    std::fs::write(tmp.path().join("shard-0/edge_config.json"), b"{ truncated").unwrap();
    std::fs::write(tmp.path().join("collection.json.tmp"), b"{").unwrap();
    let store = EdgeStore::open(tmp.path()).expect("open ignores uncommitted leftovers");
    assert_eq!(store.count(&VectorFilter::default()).unwrap(), 0);
    store.ensure(&spec()).unwrap();
    store
        .upsert(samples(1, 30).iter().map(Sample::point).collect())
        .unwrap();
    store.flush().unwrap();
    drop(store);

    // A half-written next generation: a `compact` killed before its commit.
    std::fs::create_dir_all(tmp.path().join("shard-1/wal")).unwrap();
    let store = EdgeStore::open(tmp.path()).expect("open");
    assert!(
        !tmp.path().join("shard-1").exists(),
        "uncommitted generation removed"
    );
    assert_eq!(store.count(&VectorFilter::default()).unwrap(), 30);
    store.compact().unwrap();
    assert_eq!(store.count(&VectorFilter::default()).unwrap(), 30);
    assert!(!tmp.path().join("shard-0").exists() && tmp.path().join("shard-1").exists());
}

const CHILD_DIR: &str = "STORE_SUITE_CRASH_DIR";
const FLUSHED: u64 = 300;

/// The child half of [`edge_flushed_data_survives_kill_9`]: writes and flushes `FLUSHED` points,
/// says so, then keeps writing (unflushed) until it is killed.
#[test]
#[ignore = "run as a child process by edge_flushed_data_survives_kill_9"]
fn edge_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = EdgeStore::open(&dir.join("store")).expect("child open");
    store.ensure(&spec()).expect("child ensure");
    let samples = samples(99, FLUSHED);
    store
        .upsert(samples.iter().map(Sample::point).collect())
        .unwrap();
    store.flush().unwrap();
    std::fs::write(dir.join("ready"), b"flushed").unwrap();
    let mut rng = StdRng::seed_from_u64(std::process::id().into());
    for round in 0u64.. {
        // Unflushed churn: new points, replacements of flushed ones, deletions.
        let batch: Vec<VectorPoint> = (0..50)
            .map(|i| {
                let id = if i % 2 == 0 {
                    1_000_000 + round * 50 + i
                } else {
                    samples[rng.random_range(0..samples.len())].id
                };
                let sample = samples.iter().find(|s| s.id == id).cloned();
                match sample {
                    Some(s) => s.point(),
                    None => point(
                        id,
                        &[("image", random_vector(&mut rng, DIM))],
                        payload(&[("record_id", format!("r{id}").into())]),
                    ),
                }
            })
            .collect();
        store.upsert(batch).unwrap();
        store.delete(&[1_000_000 + round * 50]).unwrap();
    }
}

#[test]
fn edge_flushed_data_survives_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let samples = samples(99, FLUSHED);
    for (attempt, delay_ms) in [0u64, 15, 60, 150].into_iter().enumerate() {
        let _ = std::fs::remove_file(tmp.path().join("ready"));
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "edge_crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !tmp.path().join("ready").exists() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "child never flushed"
            );
            if let Some(status) = child.try_wait().unwrap() {
                panic!("child exited early with {status} on attempt {attempt}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = EdgeStore::open(&tmp.path().join("store")).expect("reopen after kill -9");
        store.ensure(&spec()).unwrap();
        let found = store
            .retrieve(&samples.iter().map(|s| s.id).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(
            found.len(),
            samples.len(),
            "flushed points survive (attempt {attempt})"
        );
        for (hit, sample) in found.iter().zip(&samples) {
            assert_eq!(hit.payload, sample.point().payload, "attempt {attempt}");
        }
        let s = &samples[42];
        let hits = store
            .search(&query(
                "image",
                s.image.clone(),
                must(vec![Condition::HasId(vec![s.id])]),
                1,
            ))
            .unwrap();
        assert_eq!(ids(&hits), vec![s.id]);
        // Re-applying the flushed batch (what a resumed ingest does) keeps one copy of each.
        store
            .upsert(samples.iter().map(Sample::point).collect())
            .unwrap();
        let filter = must(vec![Condition::HasId(
            samples.iter().map(|s| s.id).collect(),
        )]);
        assert_eq!(store.count(&filter).unwrap(), samples.len());
        store.flush().unwrap();
    }
}

#[test]
fn edge_optimize_builds_an_hnsw_graph_only_when_settings_ask_and_search_uses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = edge_spec_store(tmp.path());
    let samples = samples(77, 3_000);
    store
        .upsert(samples.iter().map(Sample::point).collect())
        .unwrap();
    store.optimize().unwrap();
    assert_eq!(
        store.indexed_vectors().unwrap(),
        0,
        "no graph below the auto threshold"
    );
    store
        .set_index_settings(&IndexSettings {
            kind: IndexKind::Hnsw,
            ..IndexSettings::default()
        })
        .unwrap();
    store.optimize().unwrap();
    let indexed = store.indexed_vectors().unwrap();
    assert!(indexed >= samples.len(), "{indexed} vectors in a graph");

    // Approximate search through the graph finds what brute force finds.
    let mut rng = StdRng::seed_from_u64(9);
    let (mut found, mut wanted) = (0, 0);
    for _ in 0..30 {
        let probe = random_vector(&mut rng, DIM);
        let exact: BTreeSet<PointId> = ids(&store
            .search(&query("image", probe.clone(), VectorFilter::default(), 10))
            .unwrap())
        .into_iter()
        .collect();
        let approximate = store
            .search(&VectorQuery {
                exact: false,
                ..query("image", probe, VectorFilter::default(), 10)
            })
            .unwrap();
        wanted += exact.len();
        found += approximate.iter().filter(|h| exact.contains(&h.id)).count();
    }
    let recall = found as f64 / wanted as f64;
    assert!(recall >= 0.95, "recall@10 {recall:.3}");

    // Filters stay exact on the indexed segments.
    let filter = must(vec![match_any("dataset", &["voc"])]);
    let by_id: BTreeMap<PointId, &Sample> = samples.iter().map(|s| (s.id, s)).collect();
    let hits = store
        .search(&VectorQuery {
            exact: false,
            ..query("image", vec![0.3; DIM], filter.clone(), 50)
        })
        .unwrap();
    assert_eq!(hits.len(), 50);
    assert!(hits.iter().all(|h| by_id[&h.id].matches(&filter)));

    // The settings and the graph survive compaction and a reopen.
    store.delete(&[samples[0].id]).unwrap();
    store.compact().unwrap();
    assert!(store.indexed_vectors().unwrap() >= samples.len() - 1);
    drop(store);
    let store = EdgeStore::open(tmp.path()).unwrap();
    assert!(store.indexed_vectors().unwrap() >= samples.len() - 1);
    assert_eq!(
        store.count(&VectorFilter::default()).unwrap(),
        samples.len() - 1
    );
}

// ---------------------------------------------------------------------------------------------
// Partitioned-only cases

#[test]
fn a_partitioned_store_keeps_each_point_in_its_part_and_refuses_a_bad_batch_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vectors");
    let store = partitioned(&dir);
    store.ensure(&spec()).unwrap();
    let v = vec![0.5; DIM];
    // A point with vectors of both parts, and a bad vector bound for one part beside good
    // points for the other: nothing is stored anywhere.
    let mixed = point(
        1,
        &[("image", v.clone()), ("region", v.clone())],
        Payload::default(),
    );
    let err = store.upsert(vec![mixed]).expect_err("two parts");
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("two parts")),
        "{err}"
    );
    let err = store
        .upsert(vec![
            point(2, &[("image", v.clone())], Payload::default()),
            point(3, &[("region", vec![1.0; DIM + 1])], Payload::default()),
        ])
        .expect_err("short region");
    assert!(matches!(err, StoreError::DimensionMismatch { .. }), "{err}");
    assert_eq!(store.count(&VectorFilter::default()).unwrap(), 0);

    store
        .upsert(vec![
            point(
                2,
                &[("image", v.clone()), ("text", v.clone())],
                Payload::default(),
            ),
            point(3, &[("region", v.clone())], Payload::default()),
            point(4, &[("region", v.clone())], Payload::default()),
        ])
        .unwrap();
    store.flush().unwrap();
    assert_eq!(store.count(&VectorFilter::default()).unwrap(), 3);
    let state = store.index_state().unwrap();
    assert_eq!(state.points, 3);
    assert!(state.disk_bytes.unwrap() > 0);
    // A spec one part would refuse changes neither part.
    let err = store
        .ensure(&CollectionSpec {
            vectors: vec!["image".into(), "text".into()],
            ..spec()
        })
        .expect_err("no region");
    assert!(matches!(err, StoreError::SpecMismatch { .. }), "{err}");
    drop(store);

    let images = EdgeStore::open(&dir.join("images")).unwrap();
    let regions = EdgeStore::open(&dir.join("regions")).unwrap();
    assert_eq!(images.count(&VectorFilter::default()).unwrap(), 1);
    assert_eq!(regions.count(&VectorFilter::default()).unwrap(), 2);
    assert_eq!(images.collection_spec().unwrap().vectors, ["image", "text"]);
    assert_eq!(regions.collection_spec().unwrap().vectors, ["region"]);
    assert_eq!(
        regions.collection_spec().unwrap().keyword_fields,
        spec().keyword_fields
    );
}
