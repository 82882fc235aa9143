//! Parity with transformers: the tiny CLIP in `shared/fixtures/tiny-clip/` and the outputs
//! transformers computed for it (`reference.json`).
//!
//! The fixture folder comes from `IMAGELENS_FIXTURES` (default: `../shared/fixtures` beside the
//! workspace). When it is absent every test prints why and passes without checking. The tests
//! run on `IMAGELENS_TEST_DEVICE` (`cpu`, the default, or `cuda`; see `scripts/gpu-check`), f32
//! within 1e-4 of transformers, f16 and bf16 within a cosine of 0.995 of it and of our own f32.

use std::path::{Path, PathBuf};

mod common;

use candle::{Device, Tensor};
use common::max_abs_diff;
use models::preprocess::{self, DecodeLimits};
use models::{ClipEmbedder, Embedder, Embedding, Precision};
use serde_json::Value;

/// Max abs difference allowed between our outputs and transformers' (f32 on both sides).
const TOL: f32 = 1e-4;

/// Least cosine allowed between an f16 / bf16 embedding and the f32 one (ours or
/// transformers'), per embedding.
const REDUCED_COSINE: f32 = 0.995;

/// The precisions below f32.
const REDUCED: [Precision; 2] = [Precision::F16, Precision::Bf16];

/// The device the tests run on (`IMAGELENS_TEST_DEVICE`: cpu, the default, or cuda).
fn test_device() -> Device {
    models::tiny::device_from_env("IMAGELENS_TEST_DEVICE")
}

struct Fixture {
    dir: PathBuf,
    reference: Value,
    model: ClipEmbedder,
}

fn fixture() -> Option<Fixture> {
    fixture_as(Precision::F32)
}

/// The fixture model computing in `precision` on the test device.
fn fixture_as(precision: Precision) -> Option<Fixture> {
    let root = std::env::var_os("IMAGELENS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    let dir = root.join("tiny-clip");
    if !dir.is_dir() {
        eprintln!(
            "skipping parity test: fixture folder {} is absent (set IMAGELENS_FIXTURES)",
            dir.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    let reference: Value = serde_json::from_str(&text).expect("reference.json is JSON");
    let model =
        ClipEmbedder::load_dir_as(&dir, &test_device(), precision).expect("fixture model loads");
    Some(Fixture {
        dir,
        reference,
        model,
    })
}

fn floats(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number") as f32],
        other => panic!("not a number array: {other}"),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn entries<'a>(f: &'a Fixture, key: &str) -> &'a Vec<Value> {
    f.reference[key]
        .as_array()
        .expect("array in reference.json")
}

#[test]
fn spec_describes_the_fixture_model() {
    let Some(f) = fixture() else { return };
    let spec = f.model.spec();
    assert_eq!(
        spec.dim as u64,
        f.reference["model"]["projection_dim"].as_u64().unwrap()
    );
    assert_eq!(
        spec.image_size as u64,
        f.reference["model"]["image_size"].as_u64().unwrap()
    );
    assert!(
        spec.revision.starts_with("sha256:") && spec.revision.len() == 7 + 64,
        "{}",
        spec.revision
    );
    assert_eq!(spec.model_id, f.dir.display().to_string());
}

#[test]
fn token_ids_match_transformers_for_every_reference_text() {
    let Some(f) = fixture() else { return };
    for t in entries(&f, "texts") {
        let text = t["text"].as_str().unwrap();
        let expected: Vec<u32> = t["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(f.model.tokenize(text).unwrap(), expected, "text {text:?}");
    }
}

#[test]
fn text_embeddings_match_transformers() {
    let Some(f) = fixture() else { return };
    let texts: Vec<&str> = entries(&f, "texts")
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| f.model.tokenize(t).unwrap()).collect();
    let raw = f.model.text_features(&ids).unwrap();
    let embedded = f.model.embed_texts(&texts).unwrap();
    for ((t, raw), emb) in entries(&f, "texts").iter().zip(&raw).zip(&embedded) {
        let text = t["text"].as_str().unwrap();
        let d = max_abs_diff(raw, &floats(&t["embedding"]));
        assert!(d <= TOL, "raw text embedding of {text:?} off by {d}");
        let d = max_abs_diff(emb.as_slice(), &floats(&t["embedding_normalized"]));
        assert!(d <= TOL, "normalized text embedding of {text:?} off by {d}");
        assert!(emb.is_unit());
    }
    // One at a time gives the same as the batch (grouped by length, never padded).
    for (text, emb) in texts.iter().zip(&embedded) {
        let one = f.model.embed_texts(&[text]).unwrap();
        assert!(
            max_abs_diff(one[0].as_slice(), emb.as_slice()) < 1e-6,
            "{text:?}"
        );
    }
}

#[test]
fn image_embeddings_from_reference_pixel_values_match_transformers() {
    let Some(f) = fixture() else { return };
    let size = f.model.spec().image_size;
    let images = entries(&f, "images");
    let pixels: Vec<f32> = images
        .iter()
        .flat_map(|i| floats(&i["pixel_values"]))
        .collect();
    let nchw = Tensor::from_vec(pixels, (images.len(), 3, size, size), &Device::Cpu).unwrap();
    // The model runs where the test asked (each `test_device()` call opens a new handle, so
    // compare where, not which handle).
    assert_eq!(f.model.device().location(), test_device().location());
    let raw = f.model.image_features(&nchw).unwrap();
    let embedded = f.model.embed_pixel_values(&nchw).unwrap();
    for ((img, raw), emb) in images.iter().zip(&raw).zip(&embedded) {
        let file = img["file"].as_str().unwrap();
        let d = max_abs_diff(raw, &floats(&img["embedding"]));
        assert!(d <= TOL, "raw image embedding of {file} off by {d}");
        let d = max_abs_diff(emb.as_slice(), &floats(&img["embedding_normalized"]));
        assert!(d <= TOL, "normalized image embedding of {file} off by {d}");
    }
}

#[test]
fn image_files_through_our_preprocessing_match_transformers() {
    let Some(f) = fixture() else { return };
    let limits = DecodeLimits::default();
    let mut decoded = Vec::new();
    for img in entries(&f, "images") {
        let file = img["file"].as_str().unwrap();
        let rgb = preprocess::open(&f.dir.join(file), &limits).unwrap();
        let ours = preprocess::to_pixel_values(&rgb, f.model.preprocess_config());
        let theirs = floats(&img["pixel_values"]);
        // One 8-bit step is 1/255/std ~= 0.015 after normalisation. PNG decoding is exact and
        // the resize is Pillow's, so PNGs are within one step; JPEG decoders (zune-jpeg here,
        // libjpeg in PIL) differ by a few steps in places, so for JPEG the mean is checked.
        let max = max_abs_diff(&ours, &theirs);
        let mean = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / ours.len() as f32;
        eprintln!("{file}: pixel_values max abs diff {max}, mean {mean}");
        if file.ends_with(".png") {
            assert!(max < 0.02, "{file}: pixel values off by {max}");
        } else {
            assert!(mean < 0.01, "{file}: pixel values off by {mean} on average");
        }
        decoded.push(rgb);
    }
    let embedded = f.model.embed_images(&decoded).unwrap();
    for (img, emb) in entries(&f, "images").iter().zip(&embedded) {
        let file = img["file"].as_str().unwrap();
        let c = cosine(emb.as_slice(), &floats(&img["embedding_normalized"]));
        eprintln!("{file}: cosine to transformers {c}");
        assert!(c >= 0.995, "{file}: cosine {c} < 0.995");
    }
}

/// Reference pixel values of every fixture image, `(n, 3, size, size)` on the CPU.
fn reference_pixels(f: &Fixture) -> Tensor {
    let size = f.model.spec().image_size;
    let images = entries(f, "images");
    let pixels: Vec<f32> = images
        .iter()
        .flat_map(|i| floats(&i["pixel_values"]))
        .collect();
    Tensor::from_vec(pixels, (images.len(), 3, size, size), &Device::Cpu).unwrap()
}

#[test]
fn f16_and_bf16_agree_with_transformers_and_with_f32() {
    let Some(full) = fixture() else { return };
    let texts: Vec<&str> = entries(&full, "texts")
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    let full_texts = full.model.embed_texts(&texts).unwrap();
    let full_images = full
        .model
        .embed_pixel_values(&reference_pixels(&full))
        .unwrap();
    for precision in REDUCED {
        let f = fixture_as(precision).unwrap();
        assert_eq!(f.model.spec().precision, precision);
        assert_ne!(
            f.model.spec().fingerprint(),
            full.model.spec().fingerprint()
        );
        let mut least = f32::INFINITY;
        // Against transformers' f32 output and against ours in f32, per embedding.
        let mut check = |what: &str, emb: &Embedding, theirs: &Value, ours32: &Embedding| {
            assert!(emb.is_unit(), "{precision} {what}");
            let c = cosine(emb.as_slice(), &floats(theirs));
            assert!(
                c >= REDUCED_COSINE,
                "{precision} {what}: cosine {c} to transformers"
            );
            let c32 = emb.cosine(ours32);
            assert!(
                c32 >= REDUCED_COSINE,
                "{precision} {what}: cosine {c32} to f32"
            );
            least = least.min(c).min(c32);
        };
        let embedded = f.model.embed_texts(&texts).unwrap();
        for ((t, emb), ours32) in entries(&f, "texts").iter().zip(&embedded).zip(&full_texts) {
            let what = format!("text {:?}", t["text"].as_str().unwrap());
            check(&what, emb, &t["embedding_normalized"], ours32);
        }
        let embedded = f.model.embed_pixel_values(&reference_pixels(&f)).unwrap();
        for ((img, emb), ours32) in entries(&f, "images")
            .iter()
            .zip(&embedded)
            .zip(&full_images)
        {
            check(
                img["file"].as_str().unwrap(),
                emb,
                &img["embedding_normalized"],
                ours32,
            );
        }
        eprintln!(
            "{precision} on {:?}: least cosine {least}",
            f.model.device()
        );
    }
}

#[test]
fn f16_and_bf16_keep_the_top_10_neighbours_of_1000_images() {
    let Some(full) = fixture() else { return };
    let images = models::tiny::image_families(1000, 64);
    let base = full.model.embed_images(&images).unwrap();
    for precision in REDUCED {
        let f = fixture_as(precision).unwrap();
        let got = f.model.embed_images(&images).unwrap();
        let least = got
            .iter()
            .zip(&base)
            .map(|(a, b)| a.cosine(b))
            .fold(f32::INFINITY, f32::min);
        let overlap = models::tiny::neighbour_overlap(&got, &base, 10);
        eprintln!(
            "{precision} on {:?}: least cosine to f32 {least}, mean top-10 overlap {overlap:.4}",
            f.model.device()
        );
        assert!(least >= REDUCED_COSINE, "{precision}: least cosine {least}");
        assert!(overlap >= 0.95, "{precision}: top-10 overlap {overlap}");
    }
}
