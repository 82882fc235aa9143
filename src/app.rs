//! Composition root: from command-line settings to an open [`Library`] and an optional model.
//!
//! Model resolution, in order: `--model` (a folder or hub id; failure is an error because the
//! user asked for it), else the model the library was built with, else the default hub model.
//! In the last two cases a failure (offline, nothing cached) is not an error: the service runs
//! without semantic search and says so.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use indexer::{Library, StoreSettings};
use models::{ClipEmbedder, Embedder, ModelSource};

/// Where the library lives and which model to use.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// Data directory of the library.
    pub data_dir: PathBuf,
    /// `--model`: a local CLIP folder or a hub repo id.
    pub model: Option<String>,
    /// Never load a model (keyword search, filters and look-ups only).
    pub no_model: bool,
    /// Vector store backend.
    pub store: StoreSettings,
    /// API token of the account running the command (`--token`, `IMAGELENS_TOKEN`).
    pub token: Option<String>,
    /// Account name for password sign-in (`IMAGELENS_USER`, with `IMAGELENS_PASSWORD`).
    pub user: Option<String>,
    /// Purpose stated for the audit trail (`--purpose`).
    pub purpose: Option<String>,
}

/// A loaded model, or why there is none.
pub struct ModelChoice {
    /// The model.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Why there is none (shown to the user).
    pub offline_reason: Option<String>,
}

/// Opens (or creates) the library.
///
/// # Errors
/// When the data directory is unusable.
pub fn open_library(settings: &AppSettings) -> anyhow::Result<Library> {
    Library::open(&settings.data_dir, settings.store.clone())
        .with_context(|| format!("cannot open library in {}", settings.data_dir.display()))
}

/// Loads the model as described in the module docs.
///
/// # Errors
/// Only when `--model` was given and cannot be loaded.
pub fn load_model(settings: &AppSettings, library: &Library) -> anyhow::Result<ModelChoice> {
    if settings.no_model {
        return Ok(ModelChoice {
            embedder: None,
            offline_reason: Some("--no-model was given".into()),
        });
    }
    let device = models::best_device(cfg!(feature = "cuda"));
    if let Some(m) = &settings.model {
        let source = ModelSource::parse(m);
        let e = ClipEmbedder::load(&source, &device)
            .with_context(|| format!("cannot load model {m:?}"))?;
        return Ok(ModelChoice {
            embedder: Some(Arc::new(e)),
            offline_reason: None,
        });
    }
    let source = match &library.manifest().model {
        Some(spec) => ModelSource::parse(&spec.model_id),
        None => ModelSource::default(),
    };
    match ClipEmbedder::load(&source, &device) {
        Ok(e) => Ok(ModelChoice {
            embedder: Some(Arc::new(e)),
            offline_reason: None,
        }),
        Err(err) => {
            tracing::info!(error = %err, "no model; semantic search is off");
            Ok(ModelChoice {
                embedder: None,
                offline_reason: Some(format!("no model could be loaded: {err}")),
            })
        }
    }
}
