//! Query latency at library scale (issue 4): p50/p99 of keyword-only, vector-only, hybrid and
//! hybrid + filter searches over generated records with random unit vectors.
//!
//! A bench binary (not criterion) because the figures wanted are percentiles:
//! `cargo bench --bench search` (env `IMAGELENS_BENCH_RECORDS`, default 100000; the library is
//! built once under `target/bench-search-<N>` and reused). Text encoding is not included here:
//! the query vector comes from a fixed random embedder; `cargo bench --bench embed` times the
//! text encoder itself.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::{DIM, FixedEmbedder, build, random_unit};
use imagelens::search::{Fusion, SearchRequest, SearchService};
use indexer::filter::{DateRange, RecordFilter};
use indexer::record::DateAxis;
use indexer::store::{EdgeStore, VectorFilter, VectorQuery};
use indexer::synth::LABELS;
use indexer::{Library, StoreSettings};
use models::{Embedder, EmbedderSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Recall of the approximate (HNSW) image-vector search against an exact scan, at the page
/// size and at the candidate depth the hybrid ranking takes.
fn recall(lib: &Library, probes: usize) {
    let mut rng = StdRng::seed_from_u64(17);
    for depth in [20, 1000] {
        let (mut found, mut wanted) = (0, 0);
        let (mut exact_time, mut approx_time) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..probes {
            let query = VectorQuery {
                using: "image".into(),
                vector: random_unit(&mut rng),
                filter: VectorFilter::default(),
                limit: depth,
                exact: true,
            };
            let start = Instant::now();
            let exact = lib.store().search(&query).unwrap();
            exact_time += start.elapsed();
            let start = Instant::now();
            let approximate = lib
                .store()
                .search(&VectorQuery {
                    exact: false,
                    ..query
                })
                .unwrap();
            approx_time += start.elapsed();
            let truth: HashSet<_> = exact.iter().map(|h| h.id).collect();
            wanted += truth.len();
            found += approximate.iter().filter(|h| truth.contains(&h.id)).count();
        }
        println!(
            "image vectors, top {depth}: HNSW recall {:.3} vs exact scan, mean {:.2?} (exact {:.2?}) over {probes} random queries",
            found as f64 / wanted.max(1) as f64,
            approx_time / probes as u32,
            exact_time / probes as u32,
        );
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries once: keep that path tiny.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("IMAGELENS_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 500 } else { 100_000 });
    let queries: usize = if quick { 5 } else { 200 };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("bench-search-{n}"));
    let spec = EmbedderSpec {
        model_id: "bench-random".into(),
        revision: "sha256:random".into(),
        dim: DIM,
        image_size: 224,
    };
    let mut lib = Library::open(&dir, StoreSettings::Edge).unwrap();
    if lib.manifest().counts.records != n as u64 {
        drop(lib);
        let _ = std::fs::remove_dir_all(&dir);
        lib = Library::open(&dir, StoreSettings::Edge).unwrap();
        build(&mut lib, &spec, n, |_, _| {});
    }
    // `IMAGELENS_BENCH_HNSW_KB=N` gives segments above N KiB an HNSW graph (off by default, as
    // in a library `imagelens ingest` makes); the setting stays with the cached library.
    let hnsw_kb: Option<usize> = std::env::var("IMAGELENS_BENCH_HNSW_KB").ok().map(|v| {
        v.parse()
            .expect("IMAGELENS_BENCH_HNSW_KB is a number of KiB")
    });
    if let Some(kb) = hnsw_kb {
        drop(lib);
        let store = EdgeStore::open(&dir.join("vectors")).unwrap();
        store.set_indexing_threshold_kb(kb).unwrap();
        drop(store);
        lib = Library::open(&dir, StoreSettings::Edge).unwrap();
    }
    // What `imagelens ingest` does at the end of a run (a no-op on a cached library).
    let start = Instant::now();
    lib.store().optimize().unwrap();
    println!("vector store optimised in {:.1?}", start.elapsed());
    if hnsw_kb.is_some() {
        recall(&lib, if quick { 3 } else { 50 });
    }
    let lib = Arc::new(lib);
    let embedder: Arc<dyn Embedder> = Arc::new(FixedEmbedder(spec));
    let keyword_only = SearchService::new(lib.clone(), None, None).unwrap();
    let hybrid = SearchService::new(lib.clone(), Some(embedder), None).unwrap();
    let filter = RecordFilter {
        labels: vec!["truck".into()],
        dates: vec![DateRange {
            axis: DateAxis::Captured,
            after: Some(Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap()),
            before: None,
        }],
        ..RecordFilter::default()
    };
    let vector_fusion = Fusion {
        keyword: 0.0,
        ..Fusion::default()
    };
    let mut rng = StdRng::seed_from_u64(9);
    let texts: Vec<String> = (0..queries)
        .map(|_| {
            let (a, _, _) = LABELS[rng.random_range(0..LABELS.len())];
            let (b, _, _) = LABELS[rng.random_range(0..LABELS.len())];
            let when = if rng.random_bool(0.5) {
                "at night"
            } else {
                "on a street"
            };
            format!("{a} with a {b} {when}")
        })
        .collect();
    println!("records: {n}, queries per case: {queries}, page size 20, candidate depth 1000");
    let cases: [(&str, &SearchService, Fusion, RecordFilter); 4] = [
        (
            "keyword-only",
            &keyword_only,
            Fusion::default(),
            RecordFilter::default(),
        ),
        (
            "vector-only",
            &hybrid,
            vector_fusion,
            RecordFilter::default(),
        ),
        (
            "hybrid",
            &hybrid,
            Fusion::default(),
            RecordFilter::default(),
        ),
        ("hybrid+filter", &hybrid, Fusion::default(), filter),
    ];
    for (name, service, fusion, filter) in cases {
        let mut times = Vec::with_capacity(queries);
        let mut returned = 0;
        for t in &texts {
            let req = SearchRequest {
                text: t.clone(),
                filter: filter.clone(),
                limit: 20,
                fusion,
                ..SearchRequest::default()
            };
            let start = Instant::now();
            let resp = service.search(&req).unwrap();
            times.push(start.elapsed());
            returned += resp.results.len();
        }
        times.sort();
        println!(
            "{name:<14} p50 {:>9.2?}  p99 {:>9.2?}  (mean results {:.1})",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            returned as f64 / queries as f64
        );
    }
}
