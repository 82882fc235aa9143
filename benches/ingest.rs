//! End-to-end ingest throughput: images/s from a COCO export of generated 640x480
//! JPEGs into tantivy + qdrant-edge, next to the pure embedding rate of the same model on the
//! same images.
//!
//! A bench binary: `cargo bench --bench ingest`. Environment: `IMAGELENS_BENCH_IMAGES` (default
//! 64), `IMAGELENS_BENCH_PRECISIONS` (comma-separated of f32, f16, bf16; default f32: each is
//! run in turn on the same images), `IMAGELENS_BENCH_KEEP` (a folder to write the images to and
//! keep, so that `../shared/bench/peer_e2e.py` can time its peers on the same files and model).
//! The model has `openai/clip-vit-base-patch32`'s shapes with seeded random weights (speed does
//! not depend on the values); it is written once under `target/bench-models/`. Under
//! `cargo test --benches` (no `--bench` flag) it runs a quick smoke pass with the tiny model.

use std::time::Instant;

use indexer::synth::{SynthOptions, write_library};
use indexer::{IngestOptions, Library, StoreSettings, ingest};
use models::tiny::TinyShapes;
use models::{ClipEmbedder, Embedder, Precision};

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("IMAGELENS_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 4 } else { 64 });
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let (model_dir, shapes) = if quick {
        (target.join("bench-models/tiny"), TinyShapes::default())
    } else {
        (
            target.join("bench-models/vit-b32"),
            TinyShapes::vit_base_patch32(),
        )
    };
    if !model_dir.join("model.safetensors").exists() {
        eprintln!(
            "writing a random model with the chosen shapes to {}",
            model_dir.display()
        );
        models::tiny::write_with_shapes(&model_dir, 1, &shapes).unwrap();
    }
    let precisions: Vec<Precision> = std::env::var("IMAGELENS_BENCH_PRECISIONS")
        .unwrap_or_else(|_| "f32".into())
        .split(',')
        .map(|p| {
            p.trim()
                .parse()
                .expect("IMAGELENS_BENCH_PRECISIONS: f32, f16 or bf16")
        })
        .collect();

    let keep = std::env::var_os("IMAGELENS_BENCH_KEEP").map(std::path::PathBuf::from);
    let work = tempfile::tempdir().unwrap();
    let src = keep.clone().unwrap_or_else(|| work.path().join("src"));
    let synth = write_library(
        &src,
        &SynthOptions {
            count: n,
            width: 640,
            height: 480,
            seed: 3,
            jpeg: true,
        },
    )
    .unwrap();
    if keep.is_some() {
        println!(
            "images kept in {} (peer: python3 ../shared/bench/peer_e2e.py {} {})",
            synth.images.display(),
            model_dir.display(),
            synth.images.display()
        );
    }
    let images: Vec<image::RgbImage> = synth
        .scenes
        .iter()
        .map(|s| {
            models::preprocess::open(&synth.images.join(&s.file_name), &Default::default()).unwrap()
        })
        .collect();

    for (run, precision) in precisions.iter().enumerate() {
        let device = models::best_device(false);
        let embedder = ClipEmbedder::load_dir_as(&model_dir, &device, *precision).unwrap();

        // Pure embedding: decoded images, batches of 32, whole images only.
        let start = Instant::now();
        for chunk in images.chunks(32) {
            embedder.embed_images(chunk).unwrap();
        }
        let embed_rate = n as f64 / start.elapsed().as_secs_f64();

        // One ingest into a fresh library: the report and the seconds it took.
        let timed = |name: &str, annotations: Vec<std::path::PathBuf>, max_regions: usize| {
            let mut lib = Library::open(
                &work.path().join(format!("{name}-{run}")),
                StoreSettings::Edge,
            )
            .unwrap();
            let start = Instant::now();
            let report = ingest(
                &mut lib,
                Some(&embedder),
                &IngestOptions {
                    annotations,
                    images: synth.images.clone(),
                    dataset: "bench".into(),
                    progress: false,
                    max_regions,
                    ..IngestOptions::default()
                },
            )
            .unwrap();
            assert_eq!(report.added, n);
            (report, start.elapsed().as_secs_f64())
        };
        // End to end, whole images only (what `../shared/bench/peer_e2e.py` times for its
        // peers): read the export, hash, decode, embed each image, write both stores; no box
        // regions (`max_regions` 0) and no captions.
        let (whole, whole_secs) = timed("whole", vec![synth.instances.clone()], 0);
        assert_eq!(whole.regions, 0);
        // End to end: read export, hash, decode, embed images + box regions + texts, write both
        // stores with one commit per batch.
        let (report, secs) = timed(
            "library",
            vec![synth.instances.clone(), synth.captions.clone()],
            IngestOptions::default().max_regions,
        );
        println!(
            "model {} (dim {}) in {precision}, {n} images 640x480 JPEG, {} box regions",
            if quick {
                "tiny"
            } else {
                "ViT-B/32 shapes, random weights"
            },
            embedder.spec().dim,
            report.regions
        );
        println!("  pure image embedding (batch 32): {embed_rate:.2} images/s");
        println!(
            "  end-to-end ingest, whole images only: {:.2} images/s, {whole_secs:.1} s",
            n as f64 / whole_secs
        );
        println!(
            "  end-to-end ingest: {:.2} images/s ({:.2} embeddings/s counting regions), {secs:.1} s",
            n as f64 / secs,
            (n + report.regions) as f64 / secs
        );
    }
}
