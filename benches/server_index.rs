//! Index settings on a Qdrant server collection (issues 16 and 11): the latency (p50/p99) and
//! recall@k of exact scans, HNSW graphs, and HNSW graphs over int8 copies (rescored), on one
//! collection of a real local Qdrant server in the same run, with exact scans as the baseline
//! of every ratio and the reference of recall. Also the time `optimize` waits for the server to
//! build the graphs and int8 copies after each settings change.
//!
//! A bench binary (percentiles, not criterion): `cargo bench --features server --bench
//! server_index`. Starts `../shared/bin/qdrant` (or `$IMAGELENS_QDRANT_BIN`) on free loopback
//! ports and kills it at the end; says so and exits when there is none. Environment:
//! `IMAGELENS_BENCH_RECORDS` (points, default 20,000, at most 1,000,000). Data: clustered
//! vectors (400 cluster centres on the 256-d sphere, Zipf-sized clusters, nearest-neighbour
//! cosines about 0.8), queries near stored points; random vectors say nothing about a graph.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::{gaussian, ms, percentile, unit};
use indexer::store::{
    CollectionSpec, IndexKind, IndexSettings, MAX_TIMEOUT, Payload, QdrantProcess, Quantization,
    ServerOptions, ServerStore, VectorFilter, VectorPoint, VectorQuery, VectorStore,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIM: usize = 256;
const CLUSTERS: usize = 400;
const MAX_POINTS: usize = 1_000_000;

fn noisy(rng: &mut StdRng, centre: &[f32], spread: f32) -> Vec<f32> {
    unit(centre.iter().map(|x| x + spread * gaussian(rng)).collect())
}

/// p50, p99 and recall@`limit` of `queries` against `truth` under the store's settings.
fn measure(
    store: &ServerStore,
    queries: &[Vec<f32>],
    limit: usize,
    truth: Option<&[HashSet<u64>]>,
) -> (Duration, Duration, f64, Vec<HashSet<u64>>) {
    let mut times = Vec::with_capacity(queries.len());
    let mut answers = Vec::with_capacity(queries.len());
    for q in queries {
        let start = Instant::now();
        let hits = store
            .search(&VectorQuery {
                using: "image".into(),
                vector: q.clone(),
                filter: VectorFilter::default(),
                limit,
                exact: false,
                payload_keys: None,
            })
            .unwrap();
        times.push(start.elapsed());
        answers.push(hits.iter().map(|h| h.id).collect::<HashSet<u64>>());
    }
    times.sort();
    let recall = truth.map_or(1.0, |truth| {
        let found: usize = truth
            .iter()
            .zip(&answers)
            .map(|(t, a)| t.intersection(a).count())
            .sum();
        found as f64 / truth.iter().map(HashSet::len).sum::<usize>() as f64
    });
    (
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        recall,
        answers,
    )
}

fn main() {
    // `cargo test --benches` runs bench binaries once: keep that path tiny.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("IMAGELENS_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 500 } else { 20_000 })
        .clamp(1, MAX_POINTS);
    let queries_wanted = if quick { 5 } else { 200 };
    if QdrantProcess::binary().is_none() {
        eprintln!(
            "skipped: no Qdrant server binary at ../shared/bin/qdrant (IMAGELENS_QDRANT_BIN)"
        );
        return;
    }
    let server = QdrantProcess::start().expect("start qdrant");
    // `optimize` waits for the server's optimizers at most the request timeout: give graph
    // building on a large collection time to finish, so no mode is measured mid-build.
    let store = ServerStore::connect_with(
        &server.grpc_url(),
        "bench",
        ServerOptions {
            timeout: Some(MAX_TIMEOUT),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    store
        .ensure(&CollectionSpec {
            dim: DIM,
            vectors: vec!["image".into()],
            keyword_fields: vec![],
            integer_fields: vec![],
        })
        .unwrap();

    let mut rng = StdRng::seed_from_u64(7);
    let centres: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| unit((0..DIM).map(|_| gaussian(&mut rng)).collect()))
        .collect();
    // Zipf cluster sizes: cluster i drawn with weight 1 / (i + 1).
    let weights: Vec<f64> = (0..CLUSTERS).map(|i| 1.0 / (i + 1) as f64).collect();
    let total: f64 = weights.iter().sum();
    let spread = 0.5 / (DIM as f32).sqrt();
    let pick = |rng: &mut StdRng| {
        let mut x = rng.random_range(0.0..total);
        weights
            .iter()
            .position(|w| {
                x -= w;
                x <= 0.0
            })
            .unwrap_or(CLUSTERS - 1)
    };
    let start = Instant::now();
    let mut stored: Vec<Vec<f32>> = Vec::with_capacity(n);
    for chunk in (0..n as u64).collect::<Vec<_>>().chunks(2_000) {
        let points = chunk
            .iter()
            .map(|&id| {
                let cluster = pick(&mut rng);
                let v = noisy(&mut rng, &centres[cluster], spread);
                stored.push(v.clone());
                VectorPoint {
                    id,
                    vectors: BTreeMap::from([("image".to_owned(), v)]),
                    payload: Payload::default(),
                }
            })
            .collect();
        store.upsert(points).unwrap();
    }
    println!(
        "{n} clustered {DIM}-d points upserted in {:.1?} (Qdrant {})",
        start.elapsed(),
        store.status().unwrap().version
    );
    let queries: Vec<Vec<f32>> = (0..queries_wanted)
        .map(|_| {
            let near = &stored[rng.random_range(0..stored.len())];
            noisy(&mut rng, near, spread / 2.0)
        })
        .collect();

    let modes = [
        (
            "exact scans (baseline)",
            IndexSettings {
                kind: IndexKind::Exact,
                ..IndexSettings::default()
            },
        ),
        (
            "hnsw m 16 ef 128",
            IndexSettings {
                kind: IndexKind::Hnsw,
                m: 16,
                ef: 128,
                quantization: Quantization::None,
                ..IndexSettings::default()
            },
        ),
        (
            "hnsw m 16 ef 128 + int8 x2 rescored",
            IndexSettings {
                kind: IndexKind::Hnsw,
                m: 16,
                ef: 128,
                quantization: Quantization::Int8,
                ..IndexSettings::default()
            },
        ),
    ];
    println!();
    println!("| mode | limit | p50 | p99 | p50 vs exact | recall@limit | optimize waited |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for limit in [20, 100] {
        let mut baseline: Option<(Duration, Vec<HashSet<u64>>)> = None;
        for (name, settings) in &modes {
            store.set_index_settings(settings).unwrap();
            let start = Instant::now();
            store.optimize().unwrap();
            let waited = start.elapsed();
            let status = store.status().unwrap().status;
            assert_eq!(
                status, "green",
                "{name}: measured only once the server is done"
            );
            // Warm-up: the first queries after a rebuild load segments.
            measure(&store, &queries[..queries.len().min(5)], limit, None);
            let truth = baseline.as_ref().map(|(_, t)| t.as_slice());
            let (p50, p99, recall, answers) = measure(&store, &queries, limit, truth);
            let ratio = baseline
                .as_ref()
                .map_or(1.0, |(b, _)| p50.as_secs_f64() / b.as_secs_f64());
            println!(
                "| {name} | {limit} | {} | {} | {ratio:.2}x | {recall:.3} | {waited:.1?} |",
                ms(p50),
                ms(p99)
            );
            if baseline.is_none() {
                baseline = Some((p50, answers));
            }
        }
    }
    let state = store.index_state().unwrap();
    println!(
        "\nfinal state: {} points, {} vectors in graphs, {} segments",
        state.points, state.indexed_vectors, state.segments
    );
}
