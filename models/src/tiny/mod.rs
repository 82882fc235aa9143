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

/// Writes the default tiny model into `dir` (created if needed) and returns `dir`.
///
/// # Errors
/// [`EmbedError::Io`] when the files cannot be written.
pub fn write(dir: &Path, seed: u64) -> Result<PathBuf, EmbedError> {
    write_with_shapes(dir, seed, &TinyShapes::default())
}

/// Writes a CLIP of the given shapes with seeded random weights into `dir`; returns `dir`.
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

    let config = json!({
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
mod tests {
    use super::*;
    use crate::{ClipEmbedder, Embedder, Embedding};

    fn load(dir: &Path) -> ClipEmbedder {
        ClipEmbedder::load_dir(dir, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Embedding, b: &Embedding) -> f32 {
        a.as_slice()
            .iter()
            .zip(b.as_slice())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn scenes() -> Vec<image::RgbImage> {
        vec![
            image::RgbImage::from_fn(48, 40, |x, y| {
                image::Rgb([(x * 5) as u8, (y * 6) as u8, 90])
            }),
            image::RgbImage::from_pixel(40, 40, image::Rgb([200, 30, 30])),
            image::RgbImage::from_fn(30, 70, |x, y| {
                image::Rgb([((x ^ y) * 8) as u8, 250, (x * 8) as u8])
            }),
        ]
    }

    #[test]
    fn tiny_model_loads_through_the_real_loader_and_separates_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let m = load(&write(dir.path(), 7).unwrap());
        assert_eq!(m.spec().dim, 32);
        assert_eq!(m.spec().image_size, 32);

        let imgs = m.embed_images(&scenes()).unwrap();
        assert_eq!(imgs.len(), 3);
        assert!(imgs.iter().all(|e| e.is_unit() && e.as_slice().len() == 32));
        for (i, a) in imgs.iter().enumerate() {
            for b in &imgs[i + 1..] {
                assert!(
                    a.cosine(b) < 0.98,
                    "different images too close: {}",
                    a.cosine(b)
                );
            }
        }
        let texts = m
            .embed_texts(&["a red car", "two dogs on the beach at night", ""])
            .unwrap();
        assert!(texts.iter().all(Embedding::is_unit));
        assert!(texts[0].cosine(&texts[1]) < 0.98);
        assert!(texts[0].cosine(&texts[2]) < 0.98);
        // Batching (here: across length groups) never changes a result or its order.
        for (t, e) in ["a red car", "two dogs on the beach at night", ""]
            .iter()
            .zip(&texts)
        {
            assert!(
                max_diff(&m.embed_texts(&[t]).unwrap()[0], e) < 1e-5,
                "{t:?}"
            );
        }
        for (img, e) in scenes().iter().zip(&imgs) {
            assert!(max_diff(&m.embed_images(std::slice::from_ref(img)).unwrap()[0], e) < 1e-5);
        }
    }

    #[test]
    fn same_seed_same_model_other_seed_other_model() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let ma = load(&write(a.path(), 1).unwrap());
        let mb = load(&write(b.path(), 1).unwrap());
        let mc = load(&write(c.path(), 2).unwrap());
        assert_eq!(ma.spec().revision, mb.spec().revision);
        assert_ne!(ma.spec().revision, mc.spec().revision);
        assert_eq!(ma.spec().fingerprint(), mb.spec().fingerprint());
        let t = |m: &ClipEmbedder| m.embed_texts(&["a cat"]).unwrap().remove(0);
        assert_eq!(t(&ma), t(&mb));
        assert!(t(&ma).cosine(&t(&mc)) < 0.99);
    }

    #[test]
    fn tokenizer_truncates_keeping_the_end_token_and_handles_empty_and_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let m = load(&write(dir.path(), 3).unwrap());
        let n = words().len() as u32;
        let (bos, eos) = (n + 1, n + 2);
        assert_eq!(m.tokenize("").unwrap(), vec![bos, eos]);
        let ids = m.tokenize("Cat, DOG!  qwertyzzz").unwrap();
        // <|startoftext|> cat , dog ! qwertyzzz <|endoftext|>; "," "!" and "qwertyzzz" are unknown
        assert_eq!(ids.len(), 7, "{ids:?}");
        assert_eq!(ids[0], bos);
        assert_eq!(*ids.last().unwrap(), eos);
        assert!(ids.contains(&0), "unknown word maps to [UNK]: {ids:?}");
        let long = "cat ".repeat(500);
        let ids = m.tokenize(&long).unwrap();
        assert_eq!(ids.len(), 77);
        assert_eq!((ids[0], ids[76]), (bos, eos));
        // Long and empty texts embed fine.
        let e = m.embed_texts(&[&long, ""]).unwrap();
        assert!(e.iter().all(Embedding::is_unit));
    }

    #[test]
    fn loader_follows_the_config_activation_eps_and_shapes() {
        let base = TinyShapes {
            text_layers: 3,
            text_heads: 2,
            text_hidden: 16,
            text_intermediate: 40,
            vision_layers: 1,
            vision_heads: 2,
            vision_hidden: 24,
            vision_intermediate: 48,
            image_size: 16,
            patch_size: 4,
            projection_dim: 8,
            max_positions: 12,
            ..TinyShapes::default()
        };
        let run = |shapes: &TinyShapes| {
            let dir = tempfile::tempdir().unwrap();
            let m = load(&write_with_shapes(dir.path(), 5, shapes).unwrap());
            assert_eq!(m.spec().dim, 8);
            assert_eq!(m.spec().image_size, 16);
            assert_eq!(m.tokenize(&"dog ".repeat(40)).unwrap().len(), 12);
            let i = m.embed_images(&scenes()[..1]).unwrap().remove(0);
            let t = m.embed_texts(&["a dog near a tree"]).unwrap().remove(0);
            (i, t)
        };
        let (qi, qt) = run(&base);
        for variant in [
            TinyShapes {
                hidden_act: Activation::Gelu,
                ..base.clone()
            },
            TinyShapes {
                hidden_act: Activation::GeluNew,
                ..base.clone()
            },
            TinyShapes {
                layer_norm_eps: 0.5,
                ..base.clone()
            },
        ] {
            let (i, t) = run(&variant);
            // Same weights (same seed, same shapes): any difference comes from the config.
            assert!(
                max_diff(&i, &qi) > 1e-4,
                "{variant:?} ignored by the vision tower"
            );
            assert!(
                max_diff(&t, &qt) > 1e-4,
                "{variant:?} ignored by the text tower"
            );
        }
    }

    #[test]
    fn legacy_eos_token_id_2_pools_at_the_highest_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 11).unwrap();
        let before = load(&path).embed_texts(&["a boat on the lake"]).unwrap();
        let cfg_path = path.join(CONFIG_FILE);
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["text_config"]["eos_token_id"] = 2.into();
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        let after = load(&path).embed_texts(&["a boat on the lake"]).unwrap();
        assert!(max_diff(&before[0], &after[0]) < 1e-6);
    }

    #[test]
    fn crops_of_one_image_embed_as_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let m = load(&write(dir.path(), 4).unwrap());
        let img = &scenes()[0];
        let crops: Vec<_> = [(0.0, 0.0, 10.0, 10.0), (20.0, 10.0, 20.0, 25.0)]
            .iter()
            .filter_map(|&(x, y, w, h)| crate::preprocess::crop_region(img, x, y, w, h, 0.1))
            .collect();
        assert_eq!(crops.len(), 2);
        let e = m.embed_images(&crops).unwrap();
        assert_eq!(e.len(), 2);
        assert!(e[0].cosine(&e[1]) < 0.99);
        // Large batches are split internally and keep their order.
        let many: Vec<_> = (0..70).map(|i| scenes()[i % 3].clone()).collect();
        let e = m.embed_images(&many).unwrap();
        assert_eq!(e.len(), 70);
        assert!(max_diff(&e[0], &e[69]) < 1e-5);
        assert!(m.embed_images(&[]).unwrap().is_empty());
        assert!(m.embed_texts(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_model_folders_give_distinct_errors() {
        use crate::EmbedError as E;
        let fresh = |seed| {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), seed).unwrap();
            dir
        };
        let err = |dir: &Path| ClipEmbedder::load_dir(dir, &Device::Cpu).unwrap_err();

        assert!(matches!(
            err(Path::new("/no/such/model")),
            E::MissingFile { .. }
        ));

        let d = fresh(1);
        std::fs::remove_file(d.path().join(CONFIG_FILE)).unwrap();
        match err(d.path()) {
            E::MissingFile { path } => assert!(path.ends_with(CONFIG_FILE)),
            other => panic!("{other:?}"),
        }

        let d = fresh(1);
        std::fs::write(d.path().join(CONFIG_FILE), "{\"projection_dim\": ").unwrap();
        assert!(matches!(err(d.path()), E::Config { .. }));

        let d = fresh(1);
        std::fs::write(d.path().join(PREPROCESSOR_FILE), "{\"crop_size\": 99}").unwrap();
        assert!(
            matches!(err(d.path()), E::Config { .. }),
            "crop size differs from the model's"
        );

        let d = fresh(1);
        std::fs::remove_file(d.path().join(TOKENIZER_FILE)).unwrap();
        match err(d.path()) {
            E::MissingFile { path } => assert!(path.ends_with(TOKENIZER_FILE)),
            other => panic!("{other:?}"),
        }

        let d = fresh(1);
        std::fs::write(d.path().join(TOKENIZER_FILE), "{\"model\": 42}").unwrap();
        assert!(matches!(err(d.path()), E::Tokenizer(_)));

        let d = fresh(1);
        std::fs::remove_file(d.path().join(WEIGHTS_FILE)).unwrap();
        assert!(matches!(err(d.path()), E::MissingFile { .. }));

        let d = fresh(1);
        std::fs::write(d.path().join(WEIGHTS_FILE), b"definitely not safetensors").unwrap();
        assert!(matches!(err(d.path()), E::Weights { .. }));

        let d = fresh(1);
        let wpath = d.path().join(WEIGHTS_FILE);
        let mut tensors = candle::safetensors::load(&wpath, &Device::Cpu).unwrap();
        tensors.remove("vision_model.post_layernorm.bias").unwrap();
        candle::safetensors::save(&tensors, &wpath).unwrap();
        match err(d.path()) {
            E::MissingTensor { name } => assert_eq!(name, "vision_model.post_layernorm.bias"),
            other => panic!("{other:?}"),
        }

        // config.json says a bigger MLP than the weights have
        let d = fresh(1);
        let cpath = d.path().join(CONFIG_FILE);
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cpath).unwrap()).unwrap();
        cfg["vision_config"]["intermediate_size"] = 65.into();
        std::fs::write(&cpath, cfg.to_string()).unwrap();
        match err(d.path()) {
            E::TensorShape {
                name,
                expected,
                got,
            } => {
                assert!(
                    name.contains("vision_model") && name.contains("fc1"),
                    "{name}"
                );
                assert_eq!((expected[0], got[0]), (65, 64));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn half_precision_weights_load_and_compute_in_f32() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 9).unwrap();
        let f32_emb = load(&path).embed_texts(&["a cat"]).unwrap().remove(0);
        let wpath = path.join(WEIGHTS_FILE);
        for dtype in [candle::DType::F16, candle::DType::BF16] {
            let tensors: std::collections::HashMap<String, Tensor> =
                candle::safetensors::load(&wpath, &Device::Cpu)
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| (k, v.to_dtype(dtype).unwrap()))
                    .collect();
            let other = tempfile::tempdir().unwrap();
            for f in [CONFIG_FILE, TOKENIZER_FILE, PREPROCESSOR_FILE] {
                std::fs::copy(path.join(f), other.path().join(f)).unwrap();
            }
            candle::safetensors::save(&tensors, other.path().join(WEIGHTS_FILE)).unwrap();
            let e = load(other.path())
                .embed_texts(&["a cat"])
                .unwrap()
                .remove(0);
            assert!(
                e.cosine(&f32_emb) > 0.99,
                "{dtype:?}: cosine {}",
                e.cosine(&f32_emb)
            );
        }
    }
}
