//! A tiny seeded CLIP written by the project itself, for tests and benches (feature `testing`).
//!
//! [`write()`] produces a complete Hugging Face folder (config.json, model.safetensors,
//! tokenizer.json, preprocessor_config.json) with the real CLIP architecture and random
//! weights from a seeded [`StdRng`], so it loads through the very same
//! [`crate::ClipEmbedder::load_dir`] as a real model. [`write_with_shapes`] takes other shapes,
//! e.g. [`TinyShapes::vit_base_patch32`] for benches. Same seed and shapes, same bytes.
//!
//! The tokenizer is a word-level one over [`VOCAB`] (lowercased, split on whitespace and
//! punctuation), with `[UNK]` = 0, then `<|startoftext|>` and `<|endoftext|>` as the two highest
//! ids (CLIP pools at the end token).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::EmbedError;
use crate::clip::{Activation, CONFIG_FILE, PREPROCESSOR_FILE, TOKENIZER_FILE, WEIGHTS_FILE};

/// Words of the tiny tokenizer: common English plus labels tests are likely to use.
pub const VOCAB: &str = "a an the of on in at to and or with without by for from near under \
over behind beside between is are was were be been has have it its this that these those there \
here what which who one two three four five six many some no not very big small large little \
old new young tall short long wide open closed empty full dark light bright black white red blue \
green yellow orange purple brown grey gray pink silver gold wooden metal glass plastic photo \
picture image view close up top side front back left right middle background foreground \
cat cats dog dogs car cars truck trucks pickup van bus train plane airplane boat ship bicycle \
bike motorcycle person people man men woman women child children kid boy girl baby face hand \
tree trees house houses building buildings street road roads bridge city town village park \
garden field forest mountain mountains hill river lake sea ocean beach sand snow ice rain sky \
cloud clouds sun moon star stars night day morning evening sunset sunrise winter summer spring \
autumn fall water fire smoke grass flower flowers leaf leaves rock stone wall door window roof \
fence sign light lights lamp pole ladder table chair bed sofa desk computer phone screen book \
books bag bottle cup plate food apple banana pizza cake bird birds horse cow sheep elephant \
zebra giraffe bear fish animal animals container shipping stacked parked parking lot plate \
licence license number crowd group team player players ball game sport running walking \
standing sitting riding flying driving swimming eating holding looking lying sleeping playing \
snowy sunny cloudy rainy foggy wet dry hot cold warm cool indoor outdoor inside outside";

/// Shapes of the model [`write_with_shapes`] builds.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyShapes {
    /// Shared embedding size.
    pub projection_dim: usize,
    /// Text width.
    pub text_hidden: usize,
    /// Text MLP width.
    pub text_intermediate: usize,
    /// Text layers.
    pub text_layers: usize,
    /// Text heads.
    pub text_heads: usize,
    /// Text positions (longest sequence).
    pub max_positions: usize,
    /// Vocabulary size of the weights; at least the tokenizer's ([`VOCAB`] words plus 3).
    pub vocab_size: Option<usize>,
    /// Vision width.
    pub vision_hidden: usize,
    /// Vision MLP width.
    pub vision_intermediate: usize,
    /// Vision layers.
    pub vision_layers: usize,
    /// Vision heads.
    pub vision_heads: usize,
    /// Input image side.
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Activation of both towers.
    pub hidden_act: Activation,
    /// Layer-norm epsilon of both towers.
    pub layer_norm_eps: f64,
}

impl Default for TinyShapes {
    /// Small enough for debug-build tests: 32-d embeddings, 32x32 images, two layers a tower.
    fn default() -> Self {
        Self {
            projection_dim: 32,
            text_hidden: 32,
            text_intermediate: 64,
            text_layers: 2,
            text_heads: 4,
            max_positions: 77,
            vocab_size: None,
            vision_hidden: 32,
            vision_intermediate: 64,
            vision_layers: 2,
            vision_heads: 4,
            image_size: 32,
            patch_size: 8,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl TinyShapes {
    /// `openai/clip-vit-base-patch32`'s shapes (about 150 M parameters, 600 MB in f32); the
    /// tokenizer stays the tiny one, the token embedding has the real 49408 rows.
    pub fn vit_base_patch32() -> Self {
        Self {
            projection_dim: 512,
            text_hidden: 512,
            text_intermediate: 2048,
            text_layers: 12,
            text_heads: 8,
            max_positions: 77,
            vocab_size: Some(49408),
            vision_hidden: 768,
            vision_intermediate: 3072,
            vision_layers: 12,
            vision_heads: 12,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

/// The tokenizer's words, deduplicated, in a stable order.
fn words() -> Vec<&'static str> {
    let mut seen = std::collections::BTreeSet::new();
    VOCAB
        .split_whitespace()
        .filter(|w| seen.insert(*w))
        .collect()
}

/// Writes the default tiny model into `dir` (created if needed) and returns `dir`. Its
/// `config.json` says the weights are random ([`crate::clip::RandomWeights`]), so searches keep
/// its text vectors out of the ranking ([`crate::Embedder::untrained`]).
///
/// # Errors
/// [`EmbedError::Io`] when the files cannot be written.
pub fn write(dir: &Path, seed: u64) -> Result<PathBuf, EmbedError> {
    write_with_shapes(dir, seed, &TinyShapes::default())
}

/// [`write()`] without the random-weights entry in `config.json`: the model then loads as a
/// trained one would and every vector list ranks with it. For tests and benches of the vector
/// machinery (fusion, paging, explanations), which need lists that take part, whatever they
/// mean; a person is never given such a model.
///
/// # Errors
/// As [`write()`].
pub fn write_unmarked(dir: &Path, seed: u64) -> Result<PathBuf, EmbedError> {
    write_model(dir, seed, &TinyShapes::default(), false)
}

/// Writes a CLIP of the given shapes with seeded random weights into `dir`, marked as random
/// as [`write()`] marks them; returns `dir`.
///
/// Weights are drawn uniformly with the standard deviation of a Xavier-style init (about
/// `1/sqrt(fan_in)`), so activations neither explode nor collapse and different inputs give
/// clearly different embeddings.
///
/// # Errors
/// [`EmbedError::Io`] when the files cannot be written, [`EmbedError::Config`] for shapes no
/// CLIP can have (e.g. a hidden size not divisible by the head count).
pub fn write_with_shapes(
    dir: &Path,
    seed: u64,
    shapes: &TinyShapes,
) -> Result<PathBuf, EmbedError> {
    write_model(dir, seed, shapes, true)
}

fn write_model(
    dir: &Path,
    seed: u64,
    shapes: &TinyShapes,
    marked: bool,
) -> Result<PathBuf, EmbedError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EmbedError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let words = words();
    let vocab_size = shapes
        .vocab_size
        .unwrap_or(words.len() + 3)
        .max(words.len() + 3);
    let s = shapes;

    let mut config = json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": s.projection_dim,
        "logit_scale_init_value": 2.6592,
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": vocab_size,
            "hidden_size": s.text_hidden,
            "intermediate_size": s.text_intermediate,
            "num_hidden_layers": s.text_layers,
            "num_attention_heads": s.text_heads,
            "max_position_embeddings": s.max_positions,
            "hidden_act": s.hidden_act,
            "layer_norm_eps": s.layer_norm_eps,
            "bos_token_id": words.len() + 1,
            "eos_token_id": words.len() + 2,
            "pad_token_id": words.len() + 2,
            "projection_dim": s.projection_dim,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": s.vision_hidden,
            "intermediate_size": s.vision_intermediate,
            "num_hidden_layers": s.vision_layers,
            "num_attention_heads": s.vision_heads,
            "num_channels": 3,
            "image_size": s.image_size,
            "patch_size": s.patch_size,
            "hidden_act": s.hidden_act,
            "layer_norm_eps": s.layer_norm_eps,
            "projection_dim": s.projection_dim,
        },
    });
    if marked {
        config["imagelens_random_weights"] = json!({ "seed": seed });
    }
    let config_text = serde_json::to_string_pretty(&config).expect("json values serialise");
    // Check the shapes the same way the loader will, before writing 600 MB of weights.
    let parsed = crate::clip::ClipConfig::from_json(&config_text, &dir.join(CONFIG_FILE))?;
    write_file(&dir.join(CONFIG_FILE), config_text.as_bytes())?;

    let preprocessor = json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": true,
        "size": {"shortest_edge": s.image_size},
        "resample": 3,
        "do_center_crop": true,
        "crop_size": {"height": s.image_size, "width": s.image_size},
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": crate::preprocess::OPENAI_CLIP_MEAN,
        "image_std": crate::preprocess::OPENAI_CLIP_STD,
        "do_convert_rgb": true,
    });
    write_file(
        &dir.join(PREPROCESSOR_FILE),
        serde_json::to_string_pretty(&preprocessor)
            .expect("json values serialise")
            .as_bytes(),
    )?;
    write_file(&dir.join(TOKENIZER_FILE), tokenizer_json(&words).as_bytes())?;

    // safetensors orders tensors itself (by dtype, then name): same seed, same bytes.
    let tensors: std::collections::HashMap<String, Tensor> =
        weights(&parsed, seed)?.into_iter().collect();
    let path = dir.join(WEIGHTS_FILE);
    candle::safetensors::save(&tensors, &path).map_err(|e| EmbedError::Weights {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(dir.to_path_buf())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), EmbedError> {
    std::fs::write(path, bytes).map_err(|source| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A word-level tokenizer.json in the shape of CLIP's (same normaliser idea, same template).
fn tokenizer_json(words: &[&str]) -> String {
    let mut vocab = BTreeMap::new();
    vocab.insert("[UNK]".to_string(), 0usize);
    for (i, w) in words.iter().enumerate() {
        vocab.insert((*w).to_string(), i + 1);
    }
    let bos = words.len() + 1;
    let eos = words.len() + 2;
    vocab.insert("<|startoftext|>".into(), bos);
    vocab.insert("<|endoftext|>".into(), eos);
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "[UNK]"), special(bos, "<|startoftext|>"), special(eos, "<|endoftext|>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "<|startoftext|>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}
            ],
            "pair": [
                {"Sequence": {"id": "A", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}}
            ],
            "special_tokens": {
                "<|startoftext|>": {"id": "<|startoftext|>", "ids": [bos], "tokens": ["<|startoftext|>"]},
                "<|endoftext|>": {"id": "<|endoftext|>", "ids": [eos], "tokens": ["<|endoftext|>"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    serde_json::to_string_pretty(&tokenizer).expect("json values serialise")
}

/// Draws seeded tensors into a name -> tensor map.
struct Gen {
    rng: StdRng,
    out: BTreeMap<String, Tensor>,
}

impl Gen {
    /// Uniform values around `mean` with standard deviation `std` (uniform on [-a, a] has
    /// std a/sqrt(3)).
    fn put(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        std: f32,
        mean: f32,
    ) -> Result<(), EmbedError> {
        let n: usize = shape.iter().product();
        let a = std * 3f32.sqrt();
        let data: Vec<f32> = (0..n)
            .map(|_| mean + self.rng.random_range(-a..=a))
            .collect();
        self.out
            .insert(name.into(), Tensor::from_vec(data, shape, &Device::Cpu)?);
        Ok(())
    }

    /// A layer norm close to the identity, but not exactly (so a wrong epsilon or a swapped
    /// weight shows).
    fn layer_norm(&mut self, prefix: &str, d: usize) -> Result<(), EmbedError> {
        self.put(format!("{prefix}.weight"), &[d], 0.1, 1.0)?;
        self.put(format!("{prefix}.bias"), &[d], 0.02, 0.0)
    }

    fn encoder(
        &mut self,
        prefix: &str,
        d: usize,
        inter: usize,
        layers: usize,
    ) -> Result<(), EmbedError> {
        let wd = 1.0 / (d as f32).sqrt();
        for l in 0..layers {
            let p = format!("{prefix}.encoder.layers.{l}");
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                self.put(format!("{p}.self_attn.{proj}.weight"), &[d, d], wd, 0.0)?;
                self.put(format!("{p}.self_attn.{proj}.bias"), &[d], 0.02, 0.0)?;
            }
            self.layer_norm(&format!("{p}.layer_norm1"), d)?;
            self.layer_norm(&format!("{p}.layer_norm2"), d)?;
            self.put(format!("{p}.mlp.fc1.weight"), &[inter, d], wd, 0.0)?;
            self.put(format!("{p}.mlp.fc1.bias"), &[inter], 0.02, 0.0)?;
            self.put(
                format!("{p}.mlp.fc2.weight"),
                &[d, inter],
                1.0 / (inter as f32).sqrt(),
                0.0,
            )?;
            self.put(format!("{p}.mlp.fc2.bias"), &[d], 0.02, 0.0)?;
        }
        Ok(())
    }
}

/// Seeded tensors with the names and shapes of transformers' `CLIPModel`.
fn weights(c: &crate::clip::ClipConfig, seed: u64) -> Result<BTreeMap<String, Tensor>, EmbedError> {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        out: BTreeMap::new(),
    };
    let t = &c.text_config;
    let v = &c.vision_config;
    let p = c.projection_dim;
    let (td, vd) = (t.hidden_size, v.hidden_size);
    g.put(
        "text_model.embeddings.token_embedding.weight",
        &[t.vocab_size, td],
        1.0,
        0.0,
    )?;
    g.put(
        "text_model.embeddings.position_embedding.weight",
        &[t.max_position_embeddings, td],
        0.3,
        0.0,
    )?;
    g.encoder("text_model", td, t.intermediate_size, t.num_hidden_layers)?;
    g.layer_norm("text_model.final_layer_norm", td)?;
    g.put(
        "text_projection.weight",
        &[p, td],
        1.0 / (td as f32).sqrt(),
        0.0,
    )?;

    let patch_in = v.num_channels * v.patch_size * v.patch_size;
    g.put("vision_model.embeddings.class_embedding", &[vd], 1.0, 0.0)?;
    g.put(
        "vision_model.embeddings.patch_embedding.weight",
        &[vd, v.num_channels, v.patch_size, v.patch_size],
        1.0 / (patch_in as f32).sqrt(),
        0.0,
    )?;
    g.put(
        "vision_model.embeddings.position_embedding.weight",
        &[v.num_positions(), vd],
        0.3,
        0.0,
    )?;
    g.layer_norm("vision_model.pre_layrnorm", vd)?;
    g.encoder("vision_model", vd, v.intermediate_size, v.num_hidden_layers)?;
    g.layer_norm("vision_model.post_layernorm", vd)?;
    g.put(
        "visual_projection.weight",
        &[p, vd],
        1.0 / (vd as f32).sqrt(),
        0.0,
    )?;
    g.out
        .insert("logit_scale".into(), Tensor::new(2.6592f32, &Device::Cpu)?);
    Ok(g.out)
}

#[cfg(test)]
mod tests;

/// `n` square images of `side` pixels in `n / 10` families: each family a 4x4 layout of coloured
/// blocks, its members the layout shifted and tinted a little. Seeded, so the same every time;
/// for measuring whether two ways of embedding keep the same nearest neighbours (families give
/// every image near neighbours that are not ties).
pub fn image_families(n: usize, side: u32) -> Vec<image::RgbImage> {
    let mut rng = StdRng::seed_from_u64(0x1ce_1e25);
    let families: Vec<Vec<[u8; 3]>> = (0..n.div_ceil(10))
        .map(|_| (0..16).map(|_| rng.random::<[u8; 3]>()).collect())
        .collect();
    let cell = side.div_ceil(4).max(1);
    (0..n)
        .map(|i| {
            let blocks = &families[i / 10];
            let (dx, dy) = (
                rng.random_range(0..=cell / 2),
                rng.random_range(0..=cell / 2),
            );
            let tint: [u32; 3] = std::array::from_fn(|_| rng.random_range(0..31));
            image::RgbImage::from_fn(side, side, |x, y| {
                let b = blocks[(((y + dy) / cell % 4) * 4 + (x + dx) / cell % 4) as usize];
                image::Rgb(std::array::from_fn(|c| {
                    (u32::from(b[c]) + tint[c]).min(255) as u8
                }))
            })
        })
        .collect()
}

/// Mean overlap, over every vector, of its `k` nearest others (by cosine, itself excluded; ties
/// broken by index) in `a` and in `b`: 1.0 when two ways of embedding the same items agree on
/// every neighbour list.
///
/// # Panics
/// When `a` and `b` differ in length.
pub fn neighbour_overlap(a: &[crate::Embedding], b: &[crate::Embedding], k: usize) -> f64 {
    assert_eq!(a.len(), b.len(), "the same items embedded twice");
    let top = |v: &[crate::Embedding], i: usize| -> Vec<usize> {
        let mut order: Vec<(f32, usize)> = (0..v.len())
            .filter(|&j| j != i)
            .map(|j| (v[i].cosine(&v[j]), j))
            .collect();
        order.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        order.into_iter().take(k).map(|(_, j)| j).collect()
    };
    if a.is_empty() || k == 0 {
        return 1.0;
    }
    (0..a.len())
        .map(|i| {
            let (ta, tb) = (top(a, i), top(b, i));
            ta.iter().filter(|j| tb.contains(j)).count() as f64 / ta.len().max(1) as f64
        })
        .sum::<f64>()
        / a.len() as f64
}

/// The device a test or bench asks for in the environment variable `var`: `cpu` (also when unset
/// or empty) or `cuda` (the first GPU; the crate must be built with `--features cuda`). Unlike
/// [`crate::best_device`], asking for a GPU that cannot be used panics instead of quietly
/// measuring the CPU.
///
/// # Panics
/// When `var` names a GPU that cannot be used, or anything but `cpu` or `cuda`.
pub fn device_from_env(var: &str) -> Device {
    match std::env::var(var).as_deref() {
        Err(_) | Ok("") | Ok("cpu") => Device::Cpu,
        Ok("cuda") => Device::new_cuda(0)
            .unwrap_or_else(|e| panic!("{var}=cuda, but no CUDA device can be used: {e}")),
        Ok(other) => panic!("{var}={other:?}: expected cpu or cuda"),
    }
}
