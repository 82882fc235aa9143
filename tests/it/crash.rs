//! Crash safety (issue 3): an ingest killed with SIGKILL at many points, then re-run, leaves
//! both stores in agreement with every record exactly once.
//!
//! The kill points are exact, not timed: the test binary is built with `indexer/testing`, whose
//! `IMAGELENS_PAUSE_AT=<point>:<n>` makes the child stop the n-th time it reaches a point of the
//! pipeline (after reconciliation; after decoding, embedding, the vector upsert, the vector
//! flush, the keyword write and the keyword commit of a batch) and say so; the test then
//! SIGKILLs it there.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use indexer::store::VectorFilter;
use indexer::{Library, StoreSettings};

use crate::common::{Fixture, bin, fixture, path_str};

fn spawn_ingest(fx: &Fixture, data: &std::path::Path, pause_at: Option<&str>) -> Child {
    let mut c = bin();
    if let Some(p) = pause_at {
        c.env("IMAGELENS_PAUSE_AT", p);
    }
    c.arg("--data-dir")
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
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the child says it paused (true) or ends without pausing (false).
fn paused(child: &mut Child) -> bool {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("imagelens-test: paused at") {
                let _ = tx.send(true);
                return;
            }
        }
        let _ = tx.send(false);
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the ingest neither paused nor ended within 2 minutes")
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
    // Reference: one uninterrupted ingest.
    let reference = fx.dir.path().join("reference");
    assert!(
        spawn_ingest(&fx, &reference, None)
            .wait()
            .unwrap()
            .success()
    );
    let (ref_ids, ref_docs, ref_store, ref_points) = state(&reference);
    assert_eq!(ref_ids.len(), 48);
    assert_eq!(ref_docs, 48);
    assert_eq!(ref_store, ref_ids);

    let data = fx.dir.path().join("crashing");
    let points = [
        "reconciled",
        "decoded",
        "embedded",
        "upserted",
        "flushed",
        "written",
        "committed",
    ];
    let kills = 24;
    let mut committed = 0u64;
    for i in 0..kills {
        // Every point of a batch, in the first or second batch of what is left (reconciliation
        // happens once per run); batches are one image, so work remains for all 24 runs.
        let point = points[i % points.len()];
        let nth = if point == "reconciled" {
            1
        } else {
            1 + (i / points.len()) % 2
        };
        let mut child = spawn_ingest(&fx, &data, Some(&format!("{point}:{nth}")));
        assert!(
            paused(&mut child),
            "kill {i}: the ingest ended before reaching {point} #{nth}"
        );
        child.kill().unwrap(); // SIGKILL, at exactly that point
        let _ = child.wait();
        let (ids, docs, _, _) = state(&data);
        assert_eq!(
            docs,
            ids.len() as u64,
            "no record twice after kill {i} at {point}"
        );
        assert!(
            docs >= committed,
            "kill {i} at {point} lost committed records ({docs} < {committed})"
        );
        assert!(ids.is_subset(&ref_ids));
        committed = docs;
    }
    assert!(committed < 48, "the kills left work for the final run");

    let status = spawn_ingest(&fx, &data, None).wait().unwrap();
    assert!(status.success());
    let (ids, docs, store_ids, points) = state(&data);
    assert_eq!(ids, ref_ids, "every record present");
    assert_eq!(docs, 48, "each record exactly once in the keyword index");
    assert_eq!(store_ids, ref_store, "no orphans and no missing vectors");
    assert_eq!(points, ref_points, "each point exactly once");
    // And a further run has nothing to do.
    let status = spawn_ingest(&fx, &data, None).wait().unwrap();
    assert!(status.success());
    assert_eq!(state(&data), (ref_ids, 48, ref_store, ref_points));
}
