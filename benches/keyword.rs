//! The BM25 list alone, at library scale: how long a keyword search takes to find its top
//! hits when it scores every record its terms find (`Bm25Walk::EveryMatch`, how every search
//! ran before session 23) and when it prunes with block-max WAND (`Bm25Walk::Pruned`), in the
//! same run, query by query in turn; and that both give the same list (ids, scores to the
//! last bit, ties in one order).
//!
//! `auto` (the default) chooses one of the two by the records inside the filter for each place
//! of the list, from a sample: the bench prints that estimate against the count and what it
//! costs, and the walk `auto` took in each row.
//!
//! Then the facet counts of the same filters (`KeywordIndex::facets`, what `/v1/facets`
//! answers), counted record by record as before session 23
//! (`KeywordIndex::facets_record_by_record`) and from the fast columns now, in turn.
//!
//! A bench binary (not criterion) because the figures wanted are percentiles:
//! `cargo bench --bench keyword -- --bench`. Environment: `IMAGELENS_BENCH_RECORDS` (default
//! 100000), `IMAGELENS_BENCH_QUERIES` (default 200). The keyword index alone (no vectors: it
//! builds in minutes where a whole 1M library takes an hour and a half) is built once under
//! `target/bench-keyword-<N>` from the same generated records as the search and serve benches'
//! clustered libraries (same generator, same seeds, committed every 2,000 records as they
//! are) and reused.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Data, Generator, filters, ms, percentile};
use indexer::filter::RecordFilter;
use indexer::keyword::{Bm25Walk, FILTER_SAMPLE, KeywordIndex};
use indexer::synth::LABELS;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The keyword index of `n` generated records, built unless a complete one is on disk.
fn open(n: usize, quick: bool) -> KeywordIndex {
    let dir = if quick {
        std::env::temp_dir().join(format!(
            "imagelens-bench-keyword-{n}-{}",
            std::process::id()
        ))
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-keyword-{n}"))
    };
    let complete = dir.join("complete");
    if complete.exists() {
        return KeywordIndex::open(&dir.join("keyword")).unwrap();
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    let kw = KeywordIndex::open(&dir.join("keyword")).unwrap();
    let generator = Generator::new(Data::Clustered);
    // The seed `common::build` draws the records with.
    let mut rng = StdRng::seed_from_u64(42);
    let mut writer = kw.writer().unwrap();
    let start = Instant::now();
    for first in (0..n).step_by(2_000) {
        for i in first..(first + 2_000).min(n) {
            writer
                .upsert(&generator.generate(i, &mut rng).record, "bench")
                .unwrap();
        }
        writer.commit().unwrap();
        eprint!(
            "\rkeyword index: {} / {n} records ({:.0?})",
            (first + 2_000).min(n),
            start.elapsed()
        );
    }
    eprintln!();
    drop(writer);
    kw.reload().unwrap();
    assert_eq!(kw.len(), n as u64, "every generated record is distinct");
    println!(
        "keyword index of {n} records written in {:.1?}",
        start.elapsed()
    );
    std::fs::write(&complete, b"").unwrap();
    kw
}

/// `count` seeded query texts as the search bench makes them ("dog with a truck at night":
/// two labels, a setting and the stop words between), then the serve bench's sentences.
fn query_texts(count: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(9);
    let mut texts: Vec<String> = (0..count)
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
    texts.extend(
        [
            "a red car on a street at night",
            "a dog in the park",
            "a person riding a bicycle",
            "a boat in the harbour during the day",
            "a truck with a ladder",
            "people on the beach during the day",
        ]
        .map(str::to_owned),
    );
    texts
}

/// The filters timed: none, then those of the search and serve benches' filtered cases.
fn filters() -> Vec<(&'static str, RecordFilter)> {
    vec![
        ("no filter", RecordFilter::default()),
        ("coast, no dog", filters::coast_no_dog()),
        ("person before mid-2021", filters::person_before_mid_2021()),
        ("truck since 2020", filters::truck_since_2020()),
        ("second quarter of 2021", filters::second_quarter_2021()),
        // Two filters near the share of the records from which `auto` pruned until session 30
        // (17 %, when the text was four fields).
        ("before March 2019", captured_before(2019, 3)),
        ("before July 2019", captured_before(2019, 7)),
    ]
}

/// Records captured before the first of a month: captured times are uniform over 2018-2023,
/// so before March 2019 keeps about 19 %, before July 2019 25 %.
fn captured_before(year: i32, month: u32) -> RecordFilter {
    RecordFilter {
        dates: vec![filters::captured(None, Some((year, month, 1)))],
        ..RecordFilter::default()
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries once: keep that path tiny.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("IMAGELENS_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3_000 } else { 100_000 });
    let queries: usize = if quick {
        5
    } else {
        std::env::var("IMAGELENS_BENCH_QUERIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200)
    };
    let kw = open(n, quick);
    let texts = query_texts(queries);
    let walks = [
        ("every match (before)", Bm25Walk::EveryMatch),
        ("pruned (WAND)", Bm25Walk::Pruned),
        ("auto (now)", Bm25Walk::Auto),
    ];
    println!(
        "{n} records, {} queries per row; p50 / p99 / mean; ratio = every match / this walk (p50, mean)",
        texts.len()
    );
    // What `auto` decides by: the estimate of each filter's records against their count, and
    // what the estimate costs.
    println!(
        "records inside each filter: counted / estimated (auto's sample of {FILTER_SAMPLE}), time of an estimate p50"
    );
    for (name, filter) in filters() {
        let count = kw.count(&filter).unwrap();
        let mut times = Vec::with_capacity(50);
        let mut estimate = 0.0;
        for _ in 0..50 {
            let start = Instant::now();
            estimate = kw.estimate_inside(&filter).unwrap();
            times.push(start.elapsed());
        }
        times.sort();
        println!(
            "inside  {name:<24} {count:>8} / {estimate:>10.0}  {:>9}",
            ms(percentile(&times, 0.5))
        );
    }
    // The depth of a keyword-only first page (`HEAD_DEPTH`), of a default hybrid search's first
    // pages (the first of `FEW_LIST_TIERS`), and the old fixed depth (still a query's facets').
    for depth in [100, 200, 1_000] {
        for (name, filter) in filters() {
            let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(texts.len()); walks.len()];
            for text in &texts {
                let mut lists = Vec::with_capacity(walks.len());
                for (w, (_, walk)) in walks.iter().enumerate() {
                    let start = Instant::now();
                    let hits = kw.search_by(text, &filter, depth, *walk).unwrap();
                    times[w].push(start.elapsed());
                    lists.push(hits);
                }
                for (w, list) in lists.iter().enumerate().skip(1) {
                    let same = list.len() == lists[0].len()
                        && list
                            .iter()
                            .zip(&lists[0])
                            .all(|(a, b)| a.id == b.id && a.score.to_bits() == b.score.to_bits());
                    assert!(
                        same,
                        "{:?} differs from every match for {text:?} ({name}, depth {depth})",
                        walks[w].0
                    );
                }
            }
            let mean = |t: &[Duration]| t.iter().sum::<Duration>() / t.len() as u32;
            for t in &mut times {
                t.sort();
            }
            let (base50, base_mean) = (percentile(&times[0], 0.5), mean(&times[0]));
            println!(
                "depth {depth:>5}  {name:<24} auto walks {:?} ({:.0} records a place)",
                kw.auto_walk(&filter, depth).unwrap(),
                kw.count(&filter).unwrap() as f64 / depth as f64
            );
            for ((walk, _), t) in walks.iter().zip(&times) {
                let (p50, m) = (percentile(t, 0.5), mean(t));
                println!(
                    "depth {depth:>5}  {name:<24} {walk:<22} {:>9} / {:>9} / {:>9}   {:.2}x / {:.2}x",
                    ms(p50),
                    ms(percentile(t, 0.99)),
                    ms(m),
                    base50.as_secs_f64() / p50.as_secs_f64(),
                    base_mean.as_secs_f64() / m.as_secs_f64(),
                );
            }
        }
    }
    // Facet counts over each filter's records (what `/v1/facets` answers), counted record by
    // record as before session 23 and from the fast columns now, in turn.
    let rounds = if quick { 2 } else { 20 };
    println!("facets, {rounds} rounds per row; p50 / max; ratio = record by record / now (p50)");
    for (name, filter) in filters() {
        let mut before = Vec::with_capacity(rounds);
        let mut after = Vec::with_capacity(rounds);
        let mut total = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            let mut old = kw.facets_record_by_record(&filter).unwrap();
            before.push(start.elapsed());
            let start = Instant::now();
            let new = kw.facets(&filter).unwrap();
            after.push(start.elapsed());
            if old.total == 0 {
                old.months = new.months.clone();
            }
            assert_eq!(old, new, "facets of {name}");
            total = new.total;
        }
        before.sort();
        after.sort();
        for (walk, t) in [
            ("record by record (before)", &before),
            ("fast columns (now)", &after),
        ] {
            println!(
                "facets  {name:<24} {total:>8} records  {walk:<26} {:>9} / {:>9}   {:.2}x",
                ms(percentile(t, 0.5)),
                ms(t[t.len() - 1]),
                percentile(&before, 0.5).as_secs_f64() / percentile(t, 0.5).as_secs_f64(),
            );
        }
    }
    if quick {
        let dir = std::env::temp_dir().join(format!(
            "imagelens-bench-keyword-{n}-{}",
            std::process::id()
        ));
        drop(kw);
        let _ = std::fs::remove_dir_all(dir);
    }
}
