//! Embedding speed of a model with `openai/clip-vit-base-patch32`'s shapes and seeded random
//! weights (speed does not depend on the values), written by `models::tiny`.
//!
//! - `vision/pixel_values/{1,8,32}`: images/s of the vision tower on preprocessed 224x224
//!   pixel values (what `../shared/bench/peer_clip.py` measures for PyTorch and ONNX Runtime);
//! - `vision/end_to_end/8`: the same plus preprocessing of 640x480 RGB images;
//! - `text/{10,77}`: latency of one text of 10 and 77 tokens (start and end tokens included).
//!
//! Other precisions than f32 add `_f16` / `_bf16` to each name (`vision/pixel_values_bf16/32`,
//! `text/bf16/10`).
//! Pixel values start in host memory, so on a GPU the copy to the device is timed too, as an
//! ingest pays it; every timed call ends with the embeddings back in host memory.
//!
//! Run: `cargo bench -p models --bench embed --features testing` (a bench of the models crate,
//! which is all it needs; add `cuda` for a GPU). Environment (all optional):
//! - `IMAGELENS_BENCH_DEVICE`: `cpu` (default) or `cuda` (build with `--features cuda`);
//! - `IMAGELENS_BENCH_PRECISIONS`: comma-separated, of `f32`, `f16`, `bf16` (default `f32`);
//! - `IMAGELENS_BENCH_BATCHES`: vision batch sizes (default `1,8,32`);
//! - `IMAGELENS_BENCH_SECS`: measurement seconds per case (default 8 for vision, half for text);
//! - `IMAGELENS_BENCH_AGREEMENT`: a number of images N: before timing, embed N structured
//!   images (`models::tiny::image_families`, 224x224) in every precision and print, for each one
//!   below f32, the least and mean cosine to the f32 embedding and the mean overlap of the
//!   top-10 neighbours (0 or unset: skipped).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use models::candle::{Device, Tensor};
use models::tiny::{self, TinyShapes};
use models::{ClipEmbedder, Embedder, Precision};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T>
where
    T::Err: std::fmt::Display,
{
    let text = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|e| panic!("{name}: cannot read {s:?}: {e}"))
        })
        .collect()
}

/// `name` for f32 (the names older runs used), `name_bf16` for the others.
fn named(name: &str, p: Precision) -> String {
    match p {
        Precision::F32 => name.to_owned(),
        p => format!("{name}_{p}"),
    }
}

fn agreement(models: &[(Precision, ClipEmbedder)], n: usize) {
    let images = tiny::image_families(n, 224);
    let Some((_, full)) = models.iter().find(|(p, _)| *p == Precision::F32) else {
        eprintln!("agreement: needs f32 among IMAGELENS_BENCH_PRECISIONS");
        return;
    };
    let base = full.embed_images(&images).expect("embed");
    for (p, m) in models.iter().filter(|(p, _)| *p != Precision::F32) {
        let got = m.embed_images(&images).expect("embed");
        let cos: Vec<f32> = got.iter().zip(&base).map(|(a, b)| a.cosine(b)).collect();
        let least = cos.iter().copied().fold(f32::INFINITY, f32::min);
        let mean = cos.iter().sum::<f32>() / cos.len() as f32;
        println!(
            "agreement {p} vs f32 on {:?}, {n} images: least cosine {least:.5}, mean cosine \
             {mean:.5}, mean top-10 overlap {:.4}",
            m.device(),
            tiny::neighbour_overlap(&got, &base, 10)
        );
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    tiny::write_with_shapes(dir.path(), 0, &TinyShapes::vit_base_patch32()).expect("write model");
    let device = tiny::device_from_env("IMAGELENS_BENCH_DEVICE");
    let precisions: Vec<Precision> = env_list("IMAGELENS_BENCH_PRECISIONS", "f32");
    let batches: Vec<usize> = env_list("IMAGELENS_BENCH_BATCHES", "1,8,32");
    let secs: f64 = std::env::var("IMAGELENS_BENCH_SECS")
        .ok()
        .map(|s| s.parse().expect("IMAGELENS_BENCH_SECS: seconds"))
        .unwrap_or(8.0);
    let models: Vec<(Precision, ClipEmbedder)> = precisions
        .iter()
        .map(|&p| {
            let m = ClipEmbedder::load_dir_as(dir.path(), &device, p).expect("load model");
            (p, m)
        })
        .collect();
    let n: usize = std::env::var("IMAGELENS_BENCH_AGREEMENT")
        .ok()
        .map(|s| {
            s.parse()
                .expect("IMAGELENS_BENCH_AGREEMENT: a number of images")
        })
        .unwrap_or(0);
    if n > 1 {
        agreement(&models, n);
    }
    let size = models[0].1.spec().image_size;
    let mut rng = StdRng::seed_from_u64(0);

    let mut g = c.benchmark_group("vision");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs_f64(secs));
    for &batch in &batches {
        let n = batch * 3 * size * size;
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.8f32..2.1)).collect();
        let pixels = Tensor::from_vec(data, (batch, 3, size, size), &Device::Cpu).expect("tensor");
        g.throughput(Throughput::Elements(batch as u64));
        for (p, model) in &models {
            g.bench_with_input(
                BenchmarkId::new(named("pixel_values", *p), batch),
                &pixels,
                |b, px| b.iter(|| model.embed_pixel_values(px).expect("embed")),
            );
        }
    }
    let images: Vec<image::RgbImage> = (0..8)
        .map(|i| {
            image::RgbImage::from_fn(640, 480, |x, y| {
                image::Rgb([(x + i) as u8, y as u8, (x ^ y) as u8])
            })
        })
        .collect();
    g.throughput(Throughput::Elements(images.len() as u64));
    for (p, model) in &models {
        g.bench_with_input(
            BenchmarkId::new(named("end_to_end", *p), images.len()),
            &images,
            |b, imgs| b.iter(|| model.embed_images(imgs).expect("embed")),
        );
    }
    g.finish();

    let mut g = c.benchmark_group("text");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs_f64(secs / 2.0));
    for tokens in [10usize, 77] {
        // every word is one token; start and end tokens make up the rest
        let text = ["a", "dog", "on", "the", "beach", "at", "night"]
            .iter()
            .cycle()
            .take(tokens - 2)
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        for (p, model) in &models {
            assert_eq!(model.tokenize(&text).expect("tokenize").len(), tokens);
            let id = match p {
                Precision::F32 => BenchmarkId::from_parameter(tokens),
                p => BenchmarkId::new(p.as_str(), tokens),
            };
            g.bench_with_input(id, &text, |b, t| {
                b.iter(|| model.embed_texts(&[t.as_str()]).expect("embed"))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
