//! Unit tests of the parent module.

use super::*;
use crate::clip::RandomWeights;
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
fn the_written_config_says_the_weights_are_random_unless_asked_not_to() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let marked = load(&write(a.path(), 3).unwrap());
    let unmarked = load(&write_unmarked(b.path(), 3).unwrap());
    let why = marked
        .untrained()
        .expect("a generated model says it is untrained");
    assert!(
        why.contains("seeded random") && why.contains("seed 3"),
        "{why}"
    );
    assert_eq!(
        marked.config().random_weights,
        Some(RandomWeights { seed: 3 })
    );
    assert_eq!(unmarked.untrained(), None);
    assert_eq!(unmarked.config().random_weights, None);
    // The entry is in config.json only: same weights, same identity, same vectors.
    assert_eq!(marked.spec().revision, unmarked.spec().revision);
    assert_eq!(
        marked.embed_texts(&["a cat"]).unwrap(),
        unmarked.embed_texts(&["a cat"]).unwrap()
    );
    let text = std::fs::read_to_string(a.path().join(CONFIG_FILE)).unwrap();
    assert!(text.contains("\"imagelens_random_weights\""), "{text}");
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

#[test]
fn neighbour_overlap_is_one_for_the_same_vectors_and_falls_when_neighbours_change() {
    let v: Vec<Embedding> = (0..6)
        .map(|i| Embedding::normalized(vec![1.0, i as f32 * 0.1, 0.0]))
        .collect();
    assert_eq!(super::neighbour_overlap(&v, &v, 2), 1.0);
    // Moving item 0 far from the rest changes every list it was in.
    let mut w = v.clone();
    w[0] = Embedding::normalized(vec![0.0, 0.0, 1.0]);
    let o = super::neighbour_overlap(&v, &w, 2);
    assert!(o < 1.0 && o > 0.0, "{o}");
    // Families are deterministic and as many as asked.
    let a = super::image_families(25, 32);
    assert_eq!(a.len(), 25);
    assert_eq!(a, super::image_families(25, 32));
    assert!(a.iter().all(|i| i.dimensions() == (32, 32)));
}
