//! Our CLIP network against candle-transformers' `models::clip`, the implementation it was
//! adapted from (see `src/clip/model.rs`).
//!
//! Upstream hard-codes quick_gelu, layer-norm epsilon 1e-5 and pooling at the highest token id;
//! on a model with exactly those settings (the default tiny CLIP) the two must agree, so the
//! speed changes (fused q/k/v, patch matmul, pooled-token last layer) changed no number. The
//! settings upstream cannot express (gelu, other epsilons, `eos_token_id` pooling) are tested
//! against transformers itself in `parity.rs` and in `src/tiny.rs`.

#![cfg(feature = "testing")]

mod common;

use candle::{DType, Device, Tensor};
use candle_transformers::models::clip::{
    ClipConfig as UpstreamConfig, ClipModel, text_model, vision_model,
};
use common::max_abs_diff;
use models::ClipEmbedder;
use models::tiny::{self, TinyShapes};

/// Max abs difference between the two implementations' projected features (both f32).
const TOL: f32 = 1e-4;

struct Pair {
    ours: ClipEmbedder,
    upstream: ClipModel,
    _dir: tempfile::TempDir,
}

/// The same seeded tiny CLIP loaded by our loader and by candle-transformers.
fn pair(shapes: &TinyShapes, seed: u64) -> Pair {
    let dir = tempfile::tempdir().expect("temp dir");
    tiny::write_with_shapes(dir.path(), seed, shapes).expect("tiny model written");
    let ours = ClipEmbedder::load_dir(dir.path(), &Device::Cpu).expect("our loader");

    let c = ours.config();
    let (t, v) = (&c.text_config, &c.vision_config);
    let config = UpstreamConfig {
        text_config: text_model::ClipTextConfig {
            vocab_size: t.vocab_size,
            embed_dim: t.hidden_size,
            activation: text_model::Activation::QuickGelu,
            intermediate_size: t.intermediate_size,
            max_position_embeddings: t.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            projection_dim: c.projection_dim,
        },
        vision_config: vision_model::ClipVisionConfig {
            embed_dim: v.hidden_size,
            activation: text_model::Activation::QuickGelu,
            intermediate_size: v.intermediate_size,
            num_hidden_layers: v.num_hidden_layers,
            num_attention_heads: v.num_attention_heads,
            projection_dim: c.projection_dim,
            num_channels: v.num_channels,
            image_size: v.image_size,
            patch_size: v.patch_size,
        },
        logit_scale_init_value: 2.6592,
        image_size: v.image_size,
    };
    let bytes = std::fs::read(dir.path().join(models::clip::WEIGHTS_FILE)).expect("weights");
    let vb = candle_nn::VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
        .expect("upstream var builder");
    let upstream = ClipModel::new(vb, &config).expect("upstream model");
    Pair {
        ours,
        upstream,
        _dir: dir,
    }
}

/// Seeded pixel values in the normalised range CLIP sees, `(n, 3, size, size)`.
fn pixels(n: usize, size: usize, seed: u32) -> Tensor {
    let len = n * 3 * size * size;
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let values: Vec<f32> = (0..len)
        .map(|_| {
            // xorshift32: deterministic, no extra dependency.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(values, (n, 3, size, size), &Device::Cpu).expect("pixel tensor")
}

fn assert_images_agree(p: &Pair, n: usize, seed: u32) {
    let size = p.ours.config().vision_config.image_size;
    let x = pixels(n, size, seed);
    let ours = p.ours.image_features(&x).expect("our forward");
    let theirs: Vec<Vec<f32>> = p
        .upstream
        .get_image_features(&x)
        .and_then(|t| t.to_vec2())
        .expect("upstream forward");
    assert_eq!(ours.len(), n);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let d = max_abs_diff(a, b);
        assert!(d < TOL, "image {i}: max abs difference {d} >= {TOL}");
    }
}

fn assert_texts_agree(p: &Pair, texts: &[&str]) {
    for text in texts {
        let ids = p.ours.tokenize(text).expect("tokenize");
        let ours = p
            .ours
            .text_features(std::slice::from_ref(&ids))
            .expect("ours");
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .expect("id tensor");
        let theirs: Vec<Vec<f32>> = p
            .upstream
            .get_text_features(&input)
            .and_then(|t| t.to_vec2())
            .expect("upstream forward");
        let d = max_abs_diff(&ours[0], &theirs[0]);
        assert!(d < TOL, "{text:?}: max abs difference {d} >= {TOL}");
    }
}

const TEXTS: &[&str] = &[
    "",
    "dog",
    "a white pickup truck with a ladder at night",
    "two people riding bicycles on a wet street in the rain, seen from a bridge",
];

#[test]
fn image_features_match_candle_transformers() {
    let p = pair(&TinyShapes::default(), 7);
    assert_images_agree(&p, 1, 1);
    assert_images_agree(&p, 3, 2);
}

#[test]
fn text_features_match_candle_transformers() {
    let p = pair(&TinyShapes::default(), 7);
    assert_texts_agree(&p, TEXTS);
}

#[test]
fn deeper_and_wider_model_matches_too() {
    // More layers and heads than the default, a non-square head split (48 / 6 = 8), another
    // seed, and a patch grid of 4x4: catches shape slips the default could hide.
    let shapes = TinyShapes {
        projection_dim: 24,
        text_hidden: 48,
        text_intermediate: 96,
        text_layers: 3,
        text_heads: 6,
        vision_hidden: 48,
        vision_intermediate: 80,
        vision_layers: 3,
        vision_heads: 6,
        image_size: 48,
        patch_size: 12,
        ..TinyShapes::default()
    };
    let p = pair(&shapes, 11);
    assert_images_agree(&p, 2, 3);
    assert_texts_agree(&p, TEXTS);
}
