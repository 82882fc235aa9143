//! Fixtures: a generated annotated library, a tiny seeded CLIP (unmarked: it ranks as a trained
//! model would), and a runner for the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use indexer::synth::{SynthLibrary, SynthOptions, write_library};
use tempfile::TempDir;

pub struct Fixture {
    pub dir: TempDir,
    pub synth: SynthLibrary,
    pub model: PathBuf,
    pub data: PathBuf,
}

/// `count` generated scenes plus a tiny CLIP, in a fresh temp dir.
pub fn fixture(count: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let synth = write_library(
        &dir.path().join("src"),
        &SynthOptions {
            count,
            width: 64,
            height: 48,
            seed: 11,
            jpeg: true,
        },
    )
    .unwrap();
    // Unmarked: these tests check the vector machinery, so the model's lists must take part
    // in ranking as a trained model's would (a marked one's text vectors are left out; the
    // tests of that use `models::tiny::write`).
    let model = models::tiny::write_unmarked(&dir.path().join("tiny-clip"), 5).unwrap();
    let data = dir.path().join("library");
    Fixture {
        dir,
        synth,
        model,
        data,
    }
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagelens"));
    // Never reach for a hub from tests: an empty cache and offline mode.
    c.env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("imagelens-test-empty-hf"),
        )
        .env_remove("IMAGELENS_MODEL")
        .env_remove("IMAGELENS_DATA_DIR")
        .env_remove("IMAGELENS_NO_MODEL")
        .env_remove("IMAGELENS_CONFIG")
        .env_remove("IMAGELENS_STORE");
    c
}

impl Fixture {
    /// Runs the binary on this fixture's library with its tiny model.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(true, args)
    }

    /// Runs the binary, with or without `--model`.
    pub fn run_with(&self, model: bool, args: &[&str]) -> Output {
        let mut c = bin();
        c.arg("--data-dir").arg(&self.data);
        if model {
            c.arg("--model").arg(&self.model);
        }
        c.args(args).output().unwrap()
    }

    /// Ingests both generated exports.
    pub fn ingest(&self, model: bool) -> serde_json::Value {
        let out = self.run_with(
            model,
            &[
                "ingest",
                "--annotations",
                self.synth.instances.to_str().unwrap(),
                self.synth.captions.to_str().unwrap(),
                "--images",
                self.synth.images.to_str().unwrap(),
                "--dataset",
                "synth",
                "--json",
            ],
        );
        ok_json(&out)
    }
}

/// Asserts success and parses stdout as one JSON document.
/// The fixture's model loaded as `App` loads it for `library`: in the precision the library's
/// vectors were made in (a CLI ingest uses this CPU's default, bf16 where it has bf16 dot
/// products).
pub fn embedder_for(library: &indexer::Library, model: &Path) -> Arc<dyn models::Embedder> {
    let precision = library
        .manifest()
        .model
        .as_ref()
        .map(|m| m.precision)
        .unwrap_or_default();
    Arc::new(
        models::ClipEmbedder::load_as(
            &models::ModelSource::Local(model.to_path_buf()),
            &models::Device::Cpu,
            precision,
        )
        .unwrap(),
    )
}

pub fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "command failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Ids of a search/lookup JSON result list.
pub fn ids(v: &serde_json::Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A `w` x `h` PNG with a gradient at `path` (folders made as needed).
pub fn png(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]))
        .save(path)
        .unwrap();
}
