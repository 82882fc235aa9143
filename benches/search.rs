//! Query latency and answer quality at library scale: p50/p99 of keyword-only,
//! vector-only, hybrid and hybrid + filter searches, exact scans against HNSW graphs (with and
//! without int8 quantization) in the same run, and the overlap of each mode's fused top-20 with
//! that of exact scans at the old fixed depth of 1,000.
//!
//! A bench binary (not criterion) because the figures wanted are percentiles:
//! `cargo bench --bench search`. Environment: `IMAGELENS_BENCH_RECORDS` (default 100000),
//! `IMAGELENS_BENCH_DATA` (`clustered`, `uniform` or `both`, the default), `IMAGELENS_BENCH_QUERIES`
//! (default 200 per case), `IMAGELENS_BENCH_OPTIMIZE` (`0`: no graph building, exact scans
//! only), `IMAGELENS_BENCH_M`, `IMAGELENS_BENCH_EF_CONSTRUCT`, `IMAGELENS_BENCH_FULL_SCAN_KB` and
//! `IMAGELENS_BENCH_FULL_SCAN_SHARE` (the graphs' shape and full-scan threshold, and the share
//! of the vector data it grows to: `0` keeps it fixed; default the layout's default; a library
//! built with others is kept under a directory of its own), `IMAGELENS_BENCH_LAYOUT` (`single`: image
//! and region points in one collection, as libraries made before session 26; else apart) and
//! `IMAGELENS_BENCH_MODES` and `IMAGELENS_BENCH_CASES` (below), `IMAGELENS_BENCH_VECTORS` (`disk`, the default, or `ram`:
//! where the full vectors live; a reused library of the other kind is rewritten by its first
//! optimize). Each library is built
//! once under `target/bench-search-<data>-<N>` (with graphs and int8 copies: the default auto
//! index with quantization on) and reused; `IMAGELENS_BENCH_LIBRARY=DIR` searches a clustered
//! library of N records that another bench built instead (the serve bench's, see [`open`]).
//! Text encoding is not included: query vectors come
//! from a stand-in embedder (see `common::BenchEmbedder`); `cargo bench -p models --bench embed --features testing`
//! times the text encoder itself.
//!
//! `IMAGELENS_BENCH_STORE=server` (or `both`), with the bench built with `--features server`:
//! the same library written to a local Qdrant server as well, and the same searches timed on
//! both stores in turn (issue 16: what the network and serialisation cost, as a ratio).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use common::{BenchEmbedder, DIM, Data, Generator, build, filters, memory, ms, percentile};
use imagelens::search::{Fusion, LookupRequest, SearchRequest, SearchService};
use indexer::Library;
use indexer::filter::{DateRange, FilenameMatch, RecordFilter};
use indexer::record::DateAxis;
use indexer::store::{IndexKind, IndexSettings, Quantization, VectorFilter, VectorQuery};
use indexer::synth::LABELS;
use models::{Embedder, EmbedderSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The settings the bench libraries are built with: graphs (`auto`) and int8 copies, so every
/// mode below can be measured on one build. The graph's shape is the default's unless
/// `IMAGELENS_BENCH_M` / `IMAGELENS_BENCH_EF_CONSTRUCT` say otherwise (such a library gets a
/// directory of its own, see [`open`]); every mode keeps it, so switching modes never asks the
/// optimizer for a rebuild.
fn built_settings() -> IndexSettings {
    let defaults = common::layout().0.index_defaults();
    let number = |var: &str, default: usize| match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var} is a whole number, not {v:?}")),
        Err(_) => default,
    };
    let on_disk = match std::env::var("IMAGELENS_BENCH_VECTORS").as_deref() {
        Ok("disk") => true,
        Ok("ram") => false,
        Ok(other) => panic!("IMAGELENS_BENCH_VECTORS is disk or ram, not {other:?}"),
        Err(_) => defaults.on_disk,
    };
    let settings = IndexSettings {
        kind: IndexKind::Auto,
        quantization: Quantization::Int8,
        m: number("IMAGELENS_BENCH_M", defaults.m),
        ef_construct: number("IMAGELENS_BENCH_EF_CONSTRUCT", defaults.ef_construct),
        full_scan_kb: number("IMAGELENS_BENCH_FULL_SCAN_KB", defaults.full_scan_kb),
        full_scan_share: match std::env::var("IMAGELENS_BENCH_FULL_SCAN_SHARE") {
            Ok(v) => v.parse().unwrap_or_else(|_| {
                panic!("IMAGELENS_BENCH_FULL_SCAN_SHARE is a number, not {v:?}")
            }),
            Err(_) => defaults.full_scan_share,
        },
        on_disk,
        ..defaults
    };
    settings
        .validate()
        .unwrap_or_else(|e| panic!("IMAGELENS_BENCH_M / _EF_CONSTRUCT / _FULL_SCAN_*: {e}"));
    settings
}

/// One search mode: index settings switched at search time (no rebuild) and a candidate depth
/// (`None`: the service's page-sized default).
struct Mode {
    name: &'static str,
    settings: IndexSettings,
    depth: Option<usize>,
}

fn modes() -> Vec<Mode> {
    let exact = IndexSettings {
        kind: IndexKind::Exact,
        ..built_settings()
    };
    let graph = |ef, quantization| IndexSettings {
        ef,
        quantization,
        ..built_settings()
    };
    let all = vec![
        Mode {
            name: "exact, depth 1000 (before)",
            settings: exact.clone(),
            depth: Some(1000),
        },
        Mode {
            name: "exact, page-sized depth",
            settings: exact.clone(),
            depth: None,
        },
        Mode {
            name: "exact, depth 300",
            settings: exact.clone(),
            depth: Some(300),
        },
        Mode {
            name: "exact, depth 500",
            settings: exact,
            depth: Some(500),
        },
        Mode {
            name: "hnsw+int8 ef 128, depth 1000",
            settings: graph(128, Quantization::Int8),
            depth: Some(1000),
        },
        Mode {
            name: "hnsw+int8 ef 128, depth 500",
            settings: graph(128, Quantization::Int8),
            depth: Some(500),
        },
        Mode {
            name: "hnsw ef 128, page-sized",
            settings: graph(128, Quantization::None),
            depth: None,
        },
        Mode {
            name: "hnsw+int8 ef 128, page-sized",
            settings: graph(128, Quantization::Int8),
            depth: None,
        },
        Mode {
            name: "hnsw+int8 ef 64, page-sized",
            settings: graph(64, Quantization::Int8),
            depth: None,
        },
        // The first tier's depth with the default index: the default weights run two lists
        // (keyword and image), which may keep the top 20 at a shallower depth than four
        // (`cursor::page_tiers`).
        Mode {
            name: "hnsw+int8 ef 64, depth 100",
            settings: graph(64, Quantization::Int8),
            depth: Some(100),
        },
        Mode {
            name: "hnsw+int8 ef 64, depth 200",
            settings: graph(64, Quantization::Int8),
            depth: Some(200),
        },
        Mode {
            name: "hnsw+int8 ef 64, depth 300",
            settings: graph(64, Quantization::Int8),
            depth: Some(300),
        },
        // What a first page of the default weights ranked before the shallower first tier.
        Mode {
            name: "hnsw+int8 ef 64, depth 500",
            settings: graph(64, Quantization::Int8),
            depth: Some(500),
        },
        Mode {
            name: "hnsw+int8 ef 128, page-sized, no acorn",
            settings: IndexSettings {
                acorn: false,
                ..graph(128, Quantization::Int8)
            },
            depth: None,
        },
        Mode {
            name: "hnsw+int8 ef 128, page-sized, acorn under 0.4 (before)",
            settings: IndexSettings {
                acorn_selectivity: 0.4,
                ..graph(128, Quantization::Int8)
            },
            depth: None,
        },
        Mode {
            name: "hnsw+int8 ef 128, page-sized, acorn under 0.1",
            settings: IndexSettings {
                acorn_selectivity: 0.1,
                ..graph(128, Quantization::Int8)
            },
            depth: None,
        },
        Mode {
            name: "hnsw+int8 ef 128, page-sized, oversampling 1",
            settings: IndexSettings {
                oversampling: 1.0,
                ..graph(128, Quantization::Int8)
            },
            depth: None,
        },
        Mode {
            name: "hnsw+int8 ef 128, page-sized, oversampling 1.5",
            settings: IndexSettings {
                oversampling: 1.5,
                ..graph(128, Quantization::Int8)
            },
            depth: None,
        },
        Mode {
            name: "hnsw ef 128, page-sized, no acorn",
            settings: IndexSettings {
                acorn: false,
                ..graph(128, Quantization::None)
            },
            depth: None,
        },
    ];
    // `IMAGELENS_BENCH_MODES`: a comma-separated list of words; only modes whose name holds
    // one of them run (the reference answers are always computed).
    match std::env::var("IMAGELENS_BENCH_MODES") {
        Ok(wanted) => all
            .into_iter()
            .filter(|m| wanted.split(',').any(|w| m.name.contains(w.trim())))
            .collect(),
        Err(_) => all,
    }
}

/// Cosines of records' nearest other image (exact), to check the data's structure.
fn neighbour_cosines(lib: &Library, generator: &Generator, probes: usize) -> (f32, f32, f32) {
    let mut rng = StdRng::seed_from_u64(5);
    let mut cosines: Vec<f32> = (0..probes)
        .map(|_| {
            let g = generator.generate(rng.random_range(0..1_000_000), &mut rng);
            // A fresh point of the data's distribution; its nearest stored image.
            let hits = lib
                .store()
                .search(&VectorQuery {
                    using: "image".into(),
                    vector: g.image,
                    filter: VectorFilter::default(),
                    limit: 1,
                    exact: true,
                    payload_keys: None,
                })
                .unwrap();
            hits.first().map_or(0.0, |h| h.score)
        })
        .collect();
    cosines.sort_by(f32::total_cmp);
    let at = |p: f64| cosines[((cosines.len() - 1) as f64 * p).round() as usize];
    (at(0.1), at(0.5), at(0.9))
}

/// The library directory's suffix for a graph shape other than the default's (`-m12-efc64`),
/// so libraries built with other graphs are kept apart and each is reused as built.
fn graph_suffix() -> String {
    let (built, defaults) = (built_settings(), common::layout().0.index_defaults());
    let mut suffix = if (built.m, built.ef_construct) == (defaults.m, defaults.ef_construct) {
        String::new()
    } else {
        format!("-m{}-efc{}", built.m, built.ef_construct)
    };
    if built.full_scan_kb != defaults.full_scan_kb {
        suffix += &format!("-fs{}", built.full_scan_kb);
    }
    if built.full_scan_share != defaults.full_scan_share {
        suffix += &format!("-share{}", built.full_scan_share);
    }
    suffix
}

fn open(n: usize, data: Data, spec: &EmbedderSpec) -> (Library, Generator) {
    // `IMAGELENS_BENCH_LIBRARY=DIR`: search a library another bench built from the same
    // generator (the serve bench's `target/bench-serve-v2-<N>/library`: the same records and
    // vectors, only the image paths and the first 64 ids differ), so a 1M run needs one build,
    // not two. Never rebuilt: a library of another size or data is refused.
    let given = std::env::var_os("IMAGELENS_BENCH_LIBRARY").map(std::path::PathBuf::from);
    let dir = given.clone().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(format!(
                "bench-search-{}-{n}{}{}",
                data.name(),
                graph_suffix(),
                common::layout().1
            ))
    });
    let mut lib = common::open_library(&dir).unwrap();
    if let Some(given) = &given {
        let records = lib.manifest().counts.records;
        assert!(
            records == n as u64 && matches!(data, Data::Clustered),
            "IMAGELENS_BENCH_LIBRARY={} holds {records} records; it is searched only with \
             IMAGELENS_BENCH_RECORDS={records} IMAGELENS_BENCH_DATA=clustered (never rebuilt)",
            given.display()
        );
    }
    let generator = if lib.manifest().counts.records != n as u64 {
        drop(lib);
        let _ = std::fs::remove_dir_all(&dir);
        lib = common::open_library(&dir).unwrap();
        lib.store().set_index_settings(&built_settings()).unwrap();
        let start = Instant::now();
        let generator = build(&mut lib, spec, n, data, |_, _| {});
        println!(
            "{}: keyword index + vectors of {n} records written in {:.1?}",
            data.name(),
            start.elapsed()
        );
        generator
    } else {
        Generator::new(data)
    };
    // What `imagelens ingest` does at the end of a run: builds graphs and int8 copies (a
    // no-op on a reused library). `IMAGELENS_BENCH_OPTIMIZE=0` leaves the segments as written
    // (no graphs: every vector search is an exact scan), for exact-scan and keyword figures of
    // a library whose graphs would take longer to build than there is time for.
    let start = Instant::now();
    let optimise = std::env::var("IMAGELENS_BENCH_OPTIMIZE").as_deref() != Ok("0");
    if optimise {
        // A reused library may have been built with other settings (where its full vectors
        // live): this optimize brings it to the ones asked for.
        lib.store().set_index_settings(&built_settings()).unwrap();
        lib.store().optimize().unwrap();
    }
    let state = lib.store().index_state().unwrap();
    println!(
        "{}: {} in {:.1?}: {} points, {} vectors in graphs, {} segments, {:.0} MiB on disk",
        data.name(),
        if optimise {
            let built = built_settings();
            format!(
                "optimised (graphs m {}, ef_construct {})",
                built.m, built.ef_construct
            )
        } else {
            "not optimised (IMAGELENS_BENCH_OPTIMIZE=0)".to_owned()
        },
        start.elapsed(),
        state.points,
        state.indexed_vectors,
        state.segments,
        state.disk_bytes.unwrap_or(0) as f64 / (1 << 20) as f64
    );
    // Searched as a service opens it: closed and opened again, so the memory printed after
    // the searches is that of an opened library, not of the build.
    drop(lib);
    let lib = common::open_library(&dir).unwrap();
    (lib, generator)
}

/// The filters of the serve bench's mix (`benches/serve.rs`) that restrict searches, with
/// their names: a wide dataset with a label excluded, and a common label before a date.
fn serve_filters() -> [(&'static str, RecordFilter); 2] {
    [
        ("hybrid+coast-no-dog (defaults)", filters::coast_no_dog()),
        (
            "hybrid+person-before (defaults)",
            filters::person_before_mid_2021(),
        ),
    ]
}

/// The four lists at the weights every table before session 17 used (the product's defaults
/// then): keyword 1, image 1, region 0.7, text 0.5, so "hybrid" rows stay comparable across
/// sessions and measure every list at scale.
fn all_lists() -> Fusion {
    Fusion {
        keyword: 1.0,
        image: 1.0,
        region: 0.7,
        text: 0.5,
        ..Fusion::default()
    }
}

/// The seven cases of every table (or those `IMAGELENS_BENCH_CASES` names): a name, the service (`S`: one, or one per store) without a
/// model or with one, the fusion weights and the filter. `hybrid (defaults)` is what a search
/// gets without weights now (keyword 1, image 0.5: region and text not searched).
fn cases<'s, S>(
    keyword_only: &'s S,
    hybrid: &'s S,
) -> Vec<(&'static str, &'s S, Fusion, RecordFilter)> {
    let vector_only = Fusion {
        keyword: 0.0,
        ..all_lists()
    };
    let all = [
        (
            "keyword-only",
            keyword_only,
            Fusion::default(),
            RecordFilter::default(),
        ),
        ("vector-only", hybrid, vector_only, RecordFilter::default()),
        ("hybrid", hybrid, all_lists(), RecordFilter::default()),
        (
            "hybrid+filter",
            hybrid,
            all_lists(),
            filters::truck_since_2020(),
        ),
        (
            "hybrid+quarter",
            hybrid,
            all_lists(),
            filters::second_quarter_2021(),
        ),
        (
            "hybrid (defaults)",
            hybrid,
            Fusion::default(),
            RecordFilter::default(),
        ),
        (
            "hybrid+filter (defaults)",
            hybrid,
            Fusion::default(),
            filters::truck_since_2020(),
        ),
    ];
    let [(coast, coast_filter), (person, person_filter)] = serve_filters();
    let year = RecordFilter {
        dates: vec![DateRange {
            axis: DateAxis::Captured,
            after: Some(Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap()),
            before: Some(Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap()),
        }],
        ..RecordFilter::default()
    };
    let all: Vec<_> = all
        .into_iter()
        .chain([
            ("hybrid+year", hybrid, all_lists(), year.clone()),
            ("hybrid+year (defaults)", hybrid, Fusion::default(), year),
            (coast, hybrid, Fusion::default(), coast_filter),
            (person, hybrid, Fusion::default(), person_filter),
        ])
        .collect();
    // `IMAGELENS_BENCH_CASES`: a comma-separated list of words; only cases whose name holds
    // one of them run (a 1M library's four-list exact references take seconds per query).
    match std::env::var("IMAGELENS_BENCH_CASES") {
        Ok(wanted) => all
            .into_iter()
            .filter(|c| wanted.split(',').any(|w| c.0.contains(w.trim())))
            .collect(),
        Err(_) => all,
    }
}

/// `count` seeded query texts: two labels and a setting ("dog with a truck at night").
fn query_texts(count: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(9);
    (0..count)
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
        .collect()
}

/// The stand-in model the bench libraries are adopted by.
fn bench_spec() -> EmbedderSpec {
    EmbedderSpec {
        model_id: "bench-random".into(),
        revision: "sha256:random".into(),
        dim: DIM,
        image_size: 224,
        precision: Default::default(),
    }
}

fn run(n: usize, data: Data, quick: bool) {
    // `IMAGELENS_BENCH_QUERIES` (default 200): fewer keep the exact baselines of a 1M run short.
    let queries: usize = if quick {
        5
    } else {
        std::env::var("IMAGELENS_BENCH_QUERIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200)
    };
    let spec = bench_spec();
    let (lib, generator) = open(n, data, &spec);
    let (p10, p50, p90) = neighbour_cosines(&lib, &generator, if quick { 5 } else { 200 });
    println!(
        "{}: nearest stored image of a fresh point: cosine p10 {p10:.3} / p50 {p50:.3} / p90 {p90:.3}",
        data.name()
    );
    let world = (data == Data::Clustered).then(|| generator.world().clone());
    let lib = Arc::new(lib);
    let embedder: Arc<dyn Embedder> = Arc::new(BenchEmbedder::new(spec, world));
    let keyword_only = SearchService::new(lib.clone(), None, None).unwrap();
    let hybrid = SearchService::new(lib.clone(), Some(embedder), None).unwrap();
    let texts = query_texts(queries);
    let cases = cases(&keyword_only, &hybrid);
    let request =
        |text: &str, fusion: Fusion, filter: &RecordFilter, depth: Option<usize>| SearchRequest {
            text: text.to_owned(),
            filter: filter.clone(),
            limit: 20,
            fusion: Fusion {
                depth: depth.unwrap_or(fusion.depth),
                ..fusion
            },
            ..SearchRequest::default()
        };
    println!(
        "\n{} data, {n} records, {queries} queries per case, page size 20\n",
        data.name()
    );
    println!(
        "| data | mode | case | p50 | p99 | top-20 overlap vs exact depth 1000 | settled at depth 100 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    // The reference answers: exact scans at the old fixed depth.
    let modes = modes();
    lib.store()
        .set_index_settings(&IndexSettings {
            kind: IndexKind::Exact,
            ..built_settings()
        })
        .unwrap();
    let reference: Vec<Vec<Vec<String>>> = cases
        .iter()
        .map(|(_, service, fusion, filter)| {
            texts
                .iter()
                .map(|t| {
                    let resp = service
                        .search(&request(t, *fusion, filter, Some(1000)))
                        .unwrap();
                    resp.results.into_iter().map(|r| r.id).collect()
                })
                .collect()
        })
        .collect();
    for mode in &modes {
        lib.store().set_index_settings(&mode.settings).unwrap();
        for (c, (name, service, fusion, filter)) in cases.iter().enumerate() {
            if *name == "keyword-only"
                && mode.depth.is_none()
                && mode.settings.kind != IndexKind::Exact
            {
                continue; // no vectors: the exact rows already time it
            }
            let mut times = Vec::with_capacity(queries);
            let mut overlap = 0.0;
            // Page-sized depth: how many first pages the head ranking alone answered.
            let mut shallow = 0;
            for (q, t) in texts.iter().enumerate() {
                let req = request(t, *fusion, filter, mode.depth);
                let start = Instant::now();
                let resp = service.search(&req).unwrap();
                times.push(start.elapsed());
                shallow += usize::from(resp.stages.deepest <= 100);
                let truth: HashSet<&String> = reference[c][q].iter().collect();
                let found = resp
                    .results
                    .iter()
                    .filter(|r| truth.contains(&r.id))
                    .count();
                overlap += if truth.is_empty() {
                    1.0
                } else {
                    found as f64 / truth.len() as f64
                };
            }
            times.sort();
            let settled = if mode.depth.is_none() {
                format!("{shallow} of {queries}")
            } else {
                "-".into()
            };
            println!(
                "| {} | {} | {name} | {} | {} | {:.3} | {settled} |",
                data.name(),
                mode.name,
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99)),
                overlap / queries as f64
            );
        }
    }
    println!(
        "\n{}: memory after the searches: {}\n",
        data.name(),
        memory().unwrap()
    );
    // `IMAGELENS_BENCH_ACORN=0` leaves out the ACORN table.
    if std::env::var("IMAGELENS_BENCH_ACORN").as_deref() != Ok("0") {
        acorn_by_selectivity(&lib, &generator, data, n, queries.min(100));
    }
    // Look-ups (no model, no vectors): an auditor's first page of a date range, and of the
    // whole library, newest first. Baseline of the same run: every match sorted by date
    // (`KeywordIndex::sorted_by_date`, how look-ups worked before), then the page taken.
    let since_2020 = RecordFilter {
        dates: vec![DateRange {
            axis: DateAxis::Captured,
            after: Some(Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap()),
            before: None,
        }],
        ..RecordFilter::default()
    };
    let kw = keyword_only.library().keyword();
    // By file name (one record; sorted as a look-up without a date sorts, by ingest date) and
    // by a file-name prefix (`street_0012`: 20 records of the first 1,300).
    let named = |m: FilenameMatch| RecordFilter {
        filename: Some(m),
        ..RecordFilter::default()
    };
    for (name, filter, axis) in [
        ("captured since 2020", since_2020, DateAxis::Captured),
        ("whole library", RecordFilter::default(), DateAxis::Ingested),
        (
            "by file name",
            named(FilenameMatch::Exact(common::filename(n / 2))),
            DateAxis::Ingested,
        ),
        (
            "by file-name prefix",
            named(FilenameMatch::Prefix("street_0012".into())),
            DateAxis::Ingested,
        ),
    ] {
        let rounds = queries.min(50);
        let time = |f: &dyn Fn() -> (usize, Vec<String>)| {
            let mut times = Vec::with_capacity(rounds);
            let mut last = (0, Vec::new());
            for _ in 0..rounds {
                let start = Instant::now();
                last = f();
                times.push(start.elapsed());
            }
            times.sort();
            (times, last)
        };
        let (before, expected) = time(&|| {
            let mut sorted = kw.sorted_by_date(&filter, axis).unwrap();
            let split = sorted
                .iter()
                .position(|(d, _)| d.is_none())
                .unwrap_or(sorted.len());
            sorted[..split].reverse();
            let total = sorted.len();
            let ids: Vec<String> = sorted.into_iter().take(20).map(|(_, id)| id).collect();
            let _ = kw.get_many(&ids).unwrap();
            (total, ids)
        });
        // The same page from one pass over every match (how paged look-ups ran before the
        // window at the order's end, session 18), its records read as the look-up reads them.
        let (one_pass, from_one_pass) = time(&|| {
            let page = kw
                .page_by_date_one_pass(&filter, axis, true, 0, 20)
                .unwrap();
            let _ = kw.get_many(&page.ids).unwrap();
            (page.total, page.ids)
        });
        assert_eq!(
            from_one_pass, expected,
            "one pass returns the full sort's page"
        );
        let (after, got) = time(&|| {
            let page = keyword_only
                .catalog()
                .lookup(&LookupRequest {
                    filter: filter.clone(),
                    sort: Some(axis),
                    descending: true,
                    limit: 20,
                    cursor: None,
                })
                .unwrap();
            (page.total, page.results.into_iter().map(|r| r.id).collect())
        });
        assert_eq!(
            got, expected,
            "the paged look-up returns the full sort's page"
        );
        let total = got.0;
        for (mode, times) in [
            ("full sort (before)", &before),
            ("paged, one pass (session 17)", &one_pass),
            ("paged, window at the end (now)", &after),
        ] {
            println!(
                "| {} | look-up, newest first, {mode} | {name} ({total} records) | {} | {} | {:.3}x |",
                data.name(),
                ms(percentile(times, 0.5)),
                ms(percentile(times, 0.99)),
                percentile(times, 0.5).as_secs_f64() / percentile(&before, 0.5).as_secs_f64(),
            );
        }
    }
    // BM25 at the first tier's depth (500), unfiltered: the query's terms with English stop
    // words finding records (how it ran before) or only adding to the score of what the other
    // terms find (now), or left out; each ranked as the bare union tantivy prunes with
    // block-max WAND where the query is one, or intersected with a filter that matches every
    // record, which scores every match (how an unfiltered search ran before). The top 20 of
    // each is compared with the top 20 of the first row.
    let every = RecordFilter {
        no_labels: vec!["no such label".into()],
        ..RecordFilter::default()
    };
    #[derive(Clone, Copy)]
    enum Stop {
        Find,
        Score,
        Drop,
    }
    let bm25 = |stop: Stop, filter: &RecordFilter| {
        let mut times = Vec::with_capacity(texts.len());
        let mut tops = Vec::with_capacity(texts.len());
        let mut hits = 0;
        for t in &texts {
            let start = Instant::now();
            let found = match stop {
                Stop::Find => kw.search_terms(&kw.all_terms(t), &[], filter, 500),
                // What a search does.
                Stop::Score => kw.search(t, filter, 500),
                Stop::Drop => kw.search_terms(&kw.terms(t), &[], filter, 500),
            }
            .unwrap();
            times.push(start.elapsed());
            hits += found.len();
            tops.push(
                found
                    .into_iter()
                    .take(20)
                    .map(|h| h.id)
                    .collect::<HashSet<_>>(),
            );
        }
        times.sort();
        (times, hits, tops)
    };
    let before = bm25(Stop::Find, &every);
    let rows = [
        ("stop words find, every match scored (before)", &before),
        (
            "stop words find, block-max WAND",
            &bm25(Stop::Find, &RecordFilter::default()),
        ),
        (
            "stop words dropped, block-max WAND",
            &bm25(Stop::Drop, &RecordFilter::default()),
        ),
        (
            "stop words only scored (now)",
            &bm25(Stop::Score, &RecordFilter::default()),
        ),
    ];
    for (mode, (times, hits, tops)) in rows {
        let overlap = tops
            .iter()
            .zip(&before.2)
            .map(|(a, b)| a.intersection(b).count() as f64 / b.len().max(1) as f64)
            .sum::<f64>()
            / tops.len() as f64;
        println!(
            "| {} | BM25 top 500, {mode} | no filter ({:.0} hits a query; top-20 overlap with the first row {overlap:.3}) | {} | {} | {:.3}x |",
            data.name(),
            *hits as f64 / texts.len() as f64,
            ms(percentile(times, 0.5)),
            ms(percentile(times, 0.99)),
            percentile(times, 0.5).as_secs_f64() / percentile(&before.0, 0.5).as_secs_f64(),
        );
    }
    lib.store().set_index_settings(&built_settings()).unwrap();
}

/// Issue 16: the network and serialisation cost of a Qdrant server. The same library (the same
/// seed) is written to a local `../shared/bin/qdrant` (or `$IMAGELENS_QDRANT_BIN`, started on
/// loopback with a temporary storage folder and killed at the end) and searched through the
/// same `SearchService` as the embedded shard, query by query in turn (so the machine's noise
/// falls on both alike), with exact scans and with the default graphs + int8 copies at ef 64.
/// The server's ranking is checked against the embedded one (top-20 overlap).
#[cfg(feature = "server")]
fn against_server(n: usize, data: Data, quick: bool) {
    use indexer::store::QdrantProcess;
    if QdrantProcess::binary().is_none() {
        println!(
            "no Qdrant server binary (../shared/bin/qdrant or $IMAGELENS_QDRANT_BIN): no server rows"
        );
        return;
    }
    let queries: usize = if quick { 5 } else { 200 };
    let spec = bench_spec();
    let (embedded, generator) = open(n, data, &spec);
    let process = QdrantProcess::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The server builds graphs for minutes at 100k; `optimize` waits for them up to the timeout.
    let url: indexer::StoreSettings = format!("qdrant+{}/bench?timeout=3600", process.grpc_url())
        .parse()
        .unwrap();
    // The layout asked for (`IMAGELENS_BENCH_LAYOUT`), as the embedded library's.
    let mut remote = Library::open_with_layout(dir.path(), url, common::layout().0).unwrap();
    remote
        .store()
        .set_index_settings(&built_settings())
        .unwrap();
    let start = Instant::now();
    build(&mut remote, &spec, n, data, |_, _| {});
    let written = start.elapsed();
    let start = Instant::now();
    remote.store().optimize().unwrap();
    let state = remote.store().index_state().unwrap();
    println!(
        "{}: server library of {n} records written in {written:.1?} (keyword index here, vectors over gRPC), optimised (graphs) in {:.1?}: {} points, {} vectors in graphs",
        data.name(),
        start.elapsed(),
        state.points,
        state.indexed_vectors,
    );
    let world = (data == Data::Clustered).then(|| generator.world().clone());
    let embedder: Arc<dyn Embedder> = Arc::new(BenchEmbedder::new(spec, world));
    let libraries = [Arc::new(embedded), Arc::new(remote)];
    let service = |lib: &Arc<Library>, embedder: Option<Arc<dyn Embedder>>| {
        SearchService::new(lib.clone(), embedder, None).unwrap()
    };
    let keyword_only = libraries.each_ref().map(|lib| service(lib, None));
    let hybrid = libraries
        .each_ref()
        .map(|lib| service(lib, Some(embedder.clone())));
    let cases = cases(&keyword_only, &hybrid);
    let texts = query_texts(queries);
    println!(
        "\n{} data, {n} records, {queries} queries per case, page size 20, embedded shard against a local Qdrant server\n",
        data.name()
    );
    println!(
        "| data | mode | case | embedded p50 | server p50 | server p99 | server / embedded (p50) | top-20 overlap |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let exact = IndexSettings {
        kind: IndexKind::Exact,
        ..built_settings()
    };
    let graph = IndexSettings {
        ef: 64,
        ..built_settings()
    };
    for (mode, settings) in [
        ("exact, page-sized depth", exact),
        ("hnsw+int8 ef 64, page-sized (default)", graph),
    ] {
        for lib in &libraries {
            lib.store().set_index_settings(&settings).unwrap();
            lib.store().optimize().unwrap();
        }
        for (name, services, fusion, filter) in &cases {
            let mut times = [Vec::new(), Vec::new()];
            let mut overlap = 0.0;
            for text in &texts {
                let request = SearchRequest {
                    text: text.clone(),
                    filter: filter.clone(),
                    limit: 20,
                    fusion: *fusion,
                    ..SearchRequest::default()
                };
                let answers = [0, 1].map(|s| {
                    let start = Instant::now();
                    let response = services[s].search(&request).unwrap();
                    times[s].push(start.elapsed());
                    response
                        .results
                        .into_iter()
                        .map(|r| r.id)
                        .collect::<HashSet<_>>()
                });
                overlap += if answers[0].is_empty() {
                    1.0
                } else {
                    answers[0].intersection(&answers[1]).count() as f64 / answers[0].len() as f64
                };
            }
            for t in &mut times {
                t.sort();
            }
            let [local, server] = &times;
            println!(
                "| {} | {mode} | {name} | {} | {} | {} | {:.2}x | {:.3} |",
                data.name(),
                ms(percentile(local, 0.5)),
                ms(percentile(server, 0.5)),
                ms(percentile(server, 0.99)),
                percentile(server, 0.5).as_secs_f64() / percentile(local, 0.5).as_secs_f64(),
                overlap / queries as f64
            );
        }
    }
    libraries[0]
        .store()
        .set_index_settings(&built_settings())
        .unwrap();
}

/// ACORN by the filter's selectivity: for date ranges of growing width (date fields get no
/// payload-aware graph links, `indexer::store::RANGE_FIELD_LINKS`) and the serve mix's two
/// wide filters, the image and region lists' graph top 100 (one list, as a first tier asks)
/// with ACORN off and with ACORN on whatever the selectivity, against the exact top 100 under
/// the same filter: recall and time per search. Where the plain walk keeps the recall, ACORN
/// only costs; the default `acorn_selectivity` sits below the narrowest such filter.
fn acorn_by_selectivity(
    lib: &Library,
    generator: &Generator,
    data: Data,
    n: usize,
    queries: usize,
) {
    let captured = |from: (i32, u32), to: (i32, u32)| RecordFilter {
        dates: vec![DateRange {
            axis: DateAxis::Captured,
            after: Some(Utc.with_ymd_and_hms(from.0, from.1, 1, 0, 0, 0).unwrap()),
            before: Some(Utc.with_ymd_and_hms(to.0, to.1, 1, 0, 0, 0).unwrap()),
        }],
        ..RecordFilter::default()
    };
    let [(coast, coast_filter), (person, person_filter)] = serve_filters();
    let filters = [
        ("captured in a month", captured((2021, 3), (2021, 4))),
        ("captured in a quarter", captured((2021, 4), (2021, 7))),
        ("captured in half a year", captured((2021, 1), (2021, 7))),
        ("captured in a year", captured((2021, 1), (2022, 1))),
        ("captured in two years", captured((2020, 1), (2022, 1))),
        (coast, coast_filter),
        (person, person_filter),
    ];
    let graph = |acorn, acorn_selectivity, ef| IndexSettings {
        acorn,
        acorn_selectivity,
        ef,
        ..built_settings()
    };
    let settings = [
        (
            "exact",
            IndexSettings {
                kind: IndexKind::Exact,
                ..built_settings()
            },
        ),
        ("graph, no acorn", graph(false, 0.0, 128)),
        ("graph, acorn", graph(true, 1.0, 128)),
        ("graph, no acorn, ef 256", graph(false, 0.0, 256)),
        ("graph, no acorn, ef 512", graph(false, 0.0, 512)),
    ];
    let mut rng = StdRng::seed_from_u64(33);
    let probes: Vec<Vec<f32>> = (0..queries)
        .map(|_| generator.generate(rng.random_range(0..n), &mut rng).image)
        .collect();
    let kw = lib.keyword();
    println!(
        "\n{} data, {n} records: ACORN by the filter's selectivity (top 100 of one list, {queries} queries; recall against the exact top 100 under the filter)\n",
        data.name()
    );
    println!(
        "| filter | records kept | list | exact p50 | no acorn p50 | no acorn recall | acorn p50 | acorn recall | no acorn ef 256 | no acorn ef 512 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, filter) in &filters {
        let kept = kw
            .page_by_date_one_pass(filter, DateAxis::Captured, true, 0, 1)
            .unwrap()
            .total;
        let pushed = filter.to_vector_filter();
        for using in ["image", "region"] {
            let mut times = [const { Vec::new() }; 5];
            let mut answers: [Vec<HashSet<_>>; 5] = Default::default();
            for (i, (_, s)) in settings.iter().enumerate() {
                lib.store().set_index_settings(s).unwrap();
                for probe in &probes {
                    let query = VectorQuery {
                        using: using.into(),
                        vector: probe.clone(),
                        filter: pushed.clone(),
                        limit: 100,
                        exact: false,
                        payload_keys: Some(vec![]),
                    };
                    let start = Instant::now();
                    let hits = lib.store().search(&query).unwrap();
                    times[i].push(start.elapsed());
                    answers[i].push(hits.into_iter().map(|h| h.id).collect());
                }
                times[i].sort();
            }
            let recall = |i: usize| {
                let (found, wanted) = answers[i]
                    .iter()
                    .zip(&answers[0])
                    .fold((0, 0), |(f, w), (got, truth)| {
                        (f + got.intersection(truth).count(), w + truth.len())
                    });
                if wanted == 0 {
                    1.0
                } else {
                    found as f64 / wanted as f64
                }
            };
            println!(
                "| {name} | {:.1} % | {using} | {} | {} | {:.3} | {} | {:.3} | {} / {:.3} | {} / {:.3} |",
                100.0 * kept as f64 / n as f64,
                ms(percentile(&times[0], 0.5)),
                ms(percentile(&times[1], 0.5)),
                recall(1),
                ms(percentile(&times[2], 0.5)),
                recall(2),
                ms(percentile(&times[3], 0.5)),
                recall(3),
                ms(percentile(&times[4], 0.5)),
                recall(4),
            );
        }
    }
    lib.store().set_index_settings(&built_settings()).unwrap();
}

fn main() {
    // `cargo test --benches` runs bench binaries once: keep that path tiny.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("IMAGELENS_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 500 } else { 100_000 });
    let data = std::env::var("IMAGELENS_BENCH_DATA").unwrap_or_else(|_| "both".into());
    let kinds: Vec<Data> = match data.as_str() {
        "clustered" => vec![Data::Clustered],
        "uniform" => vec![Data::Uniform],
        "both" => vec![Data::Clustered, Data::Uniform],
        other => panic!("IMAGELENS_BENCH_DATA is clustered, uniform or both, not {other:?}"),
    };
    // `IMAGELENS_BENCH_STORE`: `embedded` (the default), `server` (only the comparison with a
    // local Qdrant server; feature `server`) or `both`.
    let store = std::env::var("IMAGELENS_BENCH_STORE").unwrap_or_else(|_| "embedded".into());
    let (embedded, server) = match store.as_str() {
        "embedded" => (true, false),
        "server" => (false, true),
        "both" => (true, true),
        other => panic!("IMAGELENS_BENCH_STORE is embedded, server or both, not {other:?}"),
    };
    if server && !cfg!(feature = "server") {
        panic!("IMAGELENS_BENCH_STORE={store} needs the bench built with `--features server`");
    }
    for data in kinds {
        if embedded {
            run(n, data, quick);
        }
        #[cfg(feature = "server")]
        if server {
            against_server(n, data, quick);
        }
    }
}
