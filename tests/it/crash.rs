//! Crash safety (issue 3): an ingest killed with SIGKILL at many points, then re-run, leaves
//! both stores in agreement with every record exactly once.

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::Instant;

use indexer::store::VectorFilter;
use indexer::{Library, StoreSettings};

use crate::common::{Fixture, bin, fixture, path_str};

fn spawn_ingest(fx: &Fixture, data: &std::path::Path) -> Child {
    bin()
        .arg("--data-dir")
        .arg(data)
        .arg("--model")
        .arg(&fx.model)
        .args([
            "ingest",
            "--annotations",
            path_str(&fx.synth.instances),
            path_str(&fx.synth.captions),
            "--images",
            path_str(&fx.synth.images),
            "--dataset",
            "synth",
            "--batch-size",
            "1",
            "--min-region",
            "16",
            "--no-progress",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// (keyword ids, number of keyword docs, vector record ids, vector points)
fn state(data: &std::path::Path) -> (BTreeSet<String>, u64, BTreeSet<String>, usize) {
    let lib = Library::open(data, StoreSettings::Edge).unwrap();
    let ids = lib.keyword().ids().unwrap();
    let docs = lib.keyword().len();
    if !lib.has_vectors() {
        return (ids, docs, BTreeSet::new(), 0);
    }
    let store_ids = lib.store().distinct("record_id").unwrap();
    let points = lib.store().count(&VectorFilter::default()).unwrap();
    (ids, docs, store_ids, points)
}

#[test]
fn ingest_killed_at_many_points_then_rerun_holds_each_record_exactly_once() {
    let fx = fixture(48);
    // Reference: one uninterrupted ingest, timed, then a re-run with nothing to do (start-up,
    // model load and reconciliation only).
    let reference = fx.dir.path().join("reference");
    let start = Instant::now();
    assert!(spawn_ingest(&fx, &reference).wait().unwrap().success());
    let full = start.elapsed();
    let start = Instant::now();
    assert!(spawn_ingest(&fx, &reference).wait().unwrap().success());
    let startup = start.elapsed();
    let per_image = full.saturating_sub(startup) / 48;
    let (ref_ids, ref_docs, ref_store, ref_points) = state(&reference);
    assert_eq!(ref_ids.len(), 48);
    assert_eq!(ref_docs, 48);
    assert_eq!(ref_store, ref_ids);

    let data = fx.dir.path().join("crashing");
    let kills = 24;
    let mut committed = 0u64;
    let mut killed_mid_run = 0;
    for i in 0..kills {
        let mut child = spawn_ingest(&fx, &data);
        // Kill points: during start-up/reconciliation (every fifth), else a varying fraction of
        // an image's work after start-up, so kills land in decoding, embedding, the vector
        // flush and the keyword commit alike, while work remains for the next run.
        let delay = if i % 5 == 0 {
            startup.mul_f64(0.2 + 0.15 * (i / 5) as f64)
        } else {
            startup + per_image.mul_f64(0.3 + 0.45 * (i % 5) as f64)
        };
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let (ids, docs, _, _) = state(&data);
        assert_eq!(docs, ids.len() as u64, "no record twice after kill {i}");
        assert!(
            docs >= committed,
            "kill {i} lost committed records ({docs} < {committed})"
        );
        assert!(ids.is_subset(&ref_ids));
        committed = docs;
    }
    assert!(
        killed_mid_run >= 20,
        "only {killed_mid_run} of {kills} kills landed mid-run"
    );
    assert!(committed < 48, "the kills left work for the final run");

    let status = spawn_ingest(&fx, &data).wait().unwrap();
    assert!(status.success());
    let (ids, docs, store_ids, points) = state(&data);
    assert_eq!(ids, ref_ids, "every record present");
    assert_eq!(docs, 48, "each record exactly once in the keyword index");
    assert_eq!(store_ids, ref_store, "no orphans and no missing vectors");
    assert_eq!(points, ref_points, "each point exactly once");
    // And a further run has nothing to do.
    let status = spawn_ingest(&fx, &data).wait().unwrap();
    assert!(status.success());
    assert_eq!(state(&data), (ref_ids, 48, ref_store, ref_points));
}
