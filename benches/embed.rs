//! Embedding speed of a model with `openai/clip-vit-base-patch32`'s shapes and seeded random
//! weights (speed does not depend on the values), written by `models::tiny`.
//!
//! - `vision/pixel_values/{1,8,32}`: images/s of the vision tower on preprocessed 224x224
//!   pixel values (what `../shared/bench/peer_clip.py` measures for PyTorch and ONNX Runtime);
//! - `vision/end_to_end/8`: the same plus preprocessing of 640x480 RGB images;
//! - `text/{10,77}`: latency of one text of 10 and 77 tokens (start and end tokens included).
//!
//! Run: `cargo bench --bench embed`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use models::candle::{Device, Tensor};
use models::tiny::{self, TinyShapes};
use models::{ClipEmbedder, Embedder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    tiny::write_with_shapes(dir.path(), 0, &TinyShapes::vit_base_patch32()).expect("write model");
    let model = ClipEmbedder::load_dir(dir.path(), &Device::Cpu).expect("load model");
    let size = model.spec().image_size;
    let mut rng = StdRng::seed_from_u64(0);

    let mut g = c.benchmark_group("vision");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    for batch in [1usize, 8, 32] {
        let n = batch * 3 * size * size;
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.8f32..2.1)).collect();
        let pixels = Tensor::from_vec(data, (batch, 3, size, size), &Device::Cpu).expect("tensor");
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::new("pixel_values", batch), &pixels, |b, px| {
            b.iter(|| model.embed_pixel_values(px).expect("embed"))
        });
    }
    let images: Vec<image::RgbImage> = (0..8)
        .map(|i| {
            image::RgbImage::from_fn(640, 480, |x, y| {
                image::Rgb([(x + i) as u8, y as u8, (x ^ y) as u8])
            })
        })
        .collect();
    g.throughput(Throughput::Elements(images.len() as u64));
    g.bench_with_input(
        BenchmarkId::new("end_to_end", images.len()),
        &images,
        |b, imgs| b.iter(|| model.embed_images(imgs).expect("embed")),
    );
    g.finish();

    let mut g = c.benchmark_group("text");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for tokens in [10usize, 77] {
        // every word is one token; start and end tokens make up the rest
        let text = ["a", "dog", "on", "the", "beach", "at", "night"]
            .iter()
            .cycle()
            .take(tokens - 2)
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(model.tokenize(&text).expect("tokenize").len(), tokens);
        g.bench_with_input(BenchmarkId::from_parameter(tokens), &text, |b, t| {
            b.iter(|| model.embed_texts(&[t.as_str()]).expect("embed"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
