//! Composition root: from command-line settings to an open, locked data directory ([`App`]:
//! the library, collections, accounts, audit trail, retention policy and model, each opened
//! once per process).
//!
//! Both front ends start here: every CLI command that governs the library opens one [`App`],
//! and `serve` opens one and hands it to the HTTP state. A new front end does the same and
//! gets the one-writer rule, the trail and the [`Desk`] use cases for free.
//!
//! # One writer per data directory
//!
//! A data directory is opened by one process at a time. [`lock_data_dir`] takes an exclusive
//! OS lock on `<data-dir>/lock` ([`LOCK_FILE`], mode `0600`; the directory itself is created
//! `0700`) and writes the holder's pid, start time and command into it, so that a refused
//! process can say who holds the library. `imagelens serve` holds it for its whole life; every
//! other command that opens the directory holds it until it ends (the CLI takes it in
//! [`crate::cli::run`] before dispatching). The kernel drops the lock when the holder exits,
//! even on `kill -9`, so there is no stale lock to clean up.
//!
//! Why: accounts, tokens, retention policy and collections are read into memory once when a
//! process opens the library and written back whole on each change. With two writers, the
//! server would keep serving a revoked token and later save its stale copy over the CLI's
//! change (a revocation lost, a legal hold bypassed); two trail writers could fork the hash
//! chain. With one writer per directory, no file is ever overwritten from a stale in-memory
//! copy, by construction: the only process that writes those files is the one that read them.
//! While a server runs, changes go through its HTTP API; the CLI refuses and names the route.
//!
//! The one exception is reading the trail without appending (`imagelens audit verify`), which
//! may run beside a server because the trail is append-only and read under a shared lock of
//! its own (see [`crate::governance::audit`]).
//!
//! The lock is advisory (`flock` on Unix, `LockFileEx` on Windows) and meant for local file
//! systems. [`open_library`] refuses to open a directory this process has not locked, so no
//! command can forget it.
//!
//! # Models
//!
//! Model resolution, in order: `--model` (a folder or hub id; failure is an error because the
//! user asked for it), else the model the library was built with, else the default hub model.
//! In the last two cases a failure (offline, nothing cached) is not an error: the service runs
//! without semantic search and says so. The model's precision is `--precision`, else the one
//! the library records, else the device's default (`Precision::default_for`: f16 on a GPU,
//! bf16 on a CPU with bf16 dot products, f32 on other CPUs); a library whose vectors were made
//! in another precision refuses the model (`ModelMismatch`), as it refuses other weights.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use anyhow::Context;
use chrono::{DateTime, Utc};
use indexer::{Library, StoreSettings};
use models::{ClipEmbedder, Embedder, ModelSource};

use crate::collections::{CollectionError, Collections};
use crate::governance::accounts::{AccountError, Accounts};
use crate::governance::audit::{AuditError, AuditLog};
use crate::governance::deletion::Stores;
use crate::governance::retention::{Retention, RetentionError};
use crate::governance::{Actor, Desk};

mod lock;
#[cfg(test)]
use lock::read_holder;
pub use lock::*;

/// Where the library lives and which model to use.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// Data directory of the library.
    pub data_dir: PathBuf,
    /// `--model`: a local CLIP folder or a hub repo id.
    pub model: Option<String>,
    /// Never load a model (keyword search, filters and look-ups only).
    pub no_model: bool,
    /// `--precision`: the number format the model computes in (default: the library's).
    pub precision: Option<models::Precision>,
    /// Vector store backend.
    pub store: StoreSettings,
    /// Default fusion weights (`[fusion]`); a search's own weights overlay them.
    pub fusion: crate::search::Fusion,
    /// API token of the account running the command (`--token`, `IMAGELENS_TOKEN`).
    pub token: Option<String>,
    /// Account name for password sign-in (`IMAGELENS_USER`, with `IMAGELENS_PASSWORD`).
    pub user: Option<String>,
    /// Purpose stated for the audit trail (`--purpose`).
    pub purpose: Option<String>,
}

/// A loaded model, or why there is none. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct ModelChoice {
    /// The model.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Why there is none (shown to the user).
    pub offline_reason: Option<String>,
}

/// Opens (or creates) the library in a data directory this process has locked with
/// [`lock_data_dir`].
///
/// # Errors
/// When the data directory is unusable or not locked by this process.
pub fn open_library(settings: &AppSettings) -> anyhow::Result<Library> {
    open_library_at(&settings.data_dir, &settings.store)
}

/// [`open_library`] from the two settings it reads.
fn open_library_at(dir: &Path, store: &StoreSettings) -> anyhow::Result<Library> {
    if !holds_data_dir_lock(dir) {
        anyhow::bail!(
            "internal error: the library in {} was opened without its lock \
             (app::lock_data_dir)",
            dir.display()
        );
    }
    Library::open(dir, store.clone())
        .with_context(|| format!("cannot open library in {}", dir.display()))
}

/// Why a library's files could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `collections.json`.
    #[error("cannot open the collections: {0}")]
    Collections(#[from] CollectionError),
    /// `accounts.json`.
    #[error("cannot open the accounts: {0}")]
    Accounts(#[from] AccountError),
    /// `audit/`.
    #[error("cannot open the audit trail: {0}")]
    Audit(#[from] AuditError),
    /// `retention.json`.
    #[error("cannot open the retention policy: {0}")]
    Retention(#[from] RetentionError),
}

/// Which model to load ([`AppSettings::model`], `no_model`, `precision`).
#[derive(Debug, Clone)]
struct ModelSettings {
    model: Option<String>,
    no_model: bool,
    precision: Option<models::Precision>,
}

/// Everything a process opens in a data directory, each opened once: the governed files
/// (collections, accounts, trail, retention policy) when the app is opened, the library (its
/// keyword index and vector store) and the model on first use, so commands that only govern
/// (accounts, tokens, the trail) never open the stores or load a model. Cheap to clone (shared
/// handles).
#[derive(Clone)]
pub struct App {
    dir: PathBuf,
    /// How to open the library on first use; `None` when it was given open ([`App::around`]).
    store: Option<StoreSettings>,
    library: Arc<std::sync::OnceLock<Arc<Library>>>,
    /// Which model to load on first use; `None` when the library was given open
    /// ([`App::around`]: the caller holds its model).
    model_settings: Option<ModelSettings>,
    /// The model, loaded once on first use ([`App::model`]).
    model: Arc<Mutex<Option<ModelChoice>>>,
    collections: Arc<Collections>,
    accounts: Arc<Accounts>,
    audit: Arc<AuditLog>,
    retention: Arc<Retention>,
    /// Default fusion weights of this process's searches (`[fusion]`).
    fusion: crate::search::Fusion,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Opens (or creates) the library in a data directory this process has locked with
    /// [`lock_data_dir`], then its collections, accounts, trail and retention policy. A new
    /// directory becomes an (empty) library before anything else is written into it.
    ///
    /// # Errors
    /// The directory is not locked by this process, or a file cannot be read.
    pub fn open(settings: &AppSettings) -> anyhow::Result<Self> {
        let library = Arc::new(std::sync::OnceLock::new());
        if !settings.data_dir.join("manifest.json").exists() {
            let _ = library.set(Arc::new(open_library(settings)?));
        }
        let store = Some(settings.store.clone());
        let mut app = Self::with_files(settings.data_dir.clone(), store, library)?;
        app.fusion = settings.fusion;
        app.model_settings = Some(ModelSettings {
            model: settings.model.clone(),
            no_model: settings.no_model,
            precision: settings.precision,
        });
        Ok(app)
    }

    /// The same app with other default fusion weights (tests and callers of [`App::around`]).
    #[must_use]
    pub fn with_fusion(mut self, fusion: crate::search::Fusion) -> Self {
        self.fusion = fusion;
        self
    }

    /// Default fusion weights of this process's searches (`[fusion]`): a request's own
    /// `weights` overlay them.
    pub fn fusion(&self) -> crate::search::Fusion {
        self.fusion
    }

    /// Opens the governed files beside an open `library`. The caller holds the data
    /// directory's lock (as [`App::open`] checks), or is a test that owns the directory alone.
    ///
    /// # Errors
    /// A file cannot be read.
    pub fn around(library: Arc<Library>) -> Result<Self, OpenError> {
        let dir = library.dir().to_owned();
        Self::with_files(dir, None, Arc::new(std::sync::OnceLock::from(library)))
    }

    fn with_files(
        dir: PathBuf,
        store: Option<StoreSettings>,
        library: Arc<std::sync::OnceLock<Arc<Library>>>,
    ) -> Result<Self, OpenError> {
        Ok(Self {
            collections: Arc::new(Collections::open(&dir)?),
            accounts: Arc::new(Accounts::open(&dir)?),
            audit: Arc::new(AuditLog::open(&dir)?),
            retention: Arc::new(Retention::open(&dir)?),
            library,
            store,
            dir,
            model_settings: None,
            model: Arc::new(Mutex::new(None)),
            fusion: crate::search::Fusion::default(),
        })
    }

    /// The library (keyword index, vector store, reports), opened on first use.
    ///
    /// # Errors
    /// The first opening fails.
    pub fn library(&self) -> anyhow::Result<&Arc<Library>> {
        if let Some(library) = self.library.get() {
            return Ok(library);
        }
        let store = self
            .store
            .as_ref()
            .expect("an App without a store setting was given its library open");
        let opened = Arc::new(open_library_at(&self.dir, store)?);
        Ok(self.library.get_or_init(|| opened))
    }

    /// The library for writing (ingest, and the model it adopts), opened on first use. The
    /// writer is the process holding the data directory's lock, and within it this `App`
    /// alone: it must not have been cloned, nor its library handed out.
    ///
    /// # Errors
    /// The first opening fails, or the library is shared (an internal error).
    pub fn library_mut(&mut self) -> anyhow::Result<&mut Library> {
        self.library()?;
        let shared = || {
            anyhow::anyhow!(
                "internal error: the library in {} is shared, so it cannot be written (App::library_mut)",
                self.dir.display()
            )
        };
        let Some(cell) = Arc::get_mut(&mut self.library) else {
            return Err(shared());
        };
        let library = cell.get_mut().expect("opened above");
        match Arc::get_mut(library) {
            Some(library) => Ok(library),
            None => Err(shared()),
        }
    }

    /// The model, loaded on first use as the module docs describe and then shared: every
    /// later call answers the same model (or the same reason there is none). Opens the
    /// library, whose manifest names its model and precision.
    ///
    /// # Errors
    /// Only when `--model` was given and cannot be loaded, or the library cannot be opened.
    pub fn model(&self) -> anyhow::Result<ModelChoice> {
        let mut slot = self
            .model
            .lock()
            .map_err(|_| anyhow::anyhow!("internal error: a model load panicked"))?;
        if let Some(choice) = &*slot {
            return Ok(choice.clone());
        }
        let choice = match &self.model_settings {
            Some(settings) => load_model(settings, self.library()?)?,
            None => ModelChoice {
                embedder: None,
                offline_reason: Some("this process was given its library open".into()),
            },
        };
        *slot = Some(choice.clone());
        Ok(choice)
    }

    /// Saved collections.
    pub fn collections(&self) -> &Collections {
        &self.collections
    }

    /// Accounts and tokens.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The audit trail.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Retention schedules and legal holds.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// The administration use cases, as `actor`.
    pub fn desk<'a>(&'a self, actor: &'a Actor) -> Desk<'a> {
        Desk::new(&self.accounts, &self.audit, actor)
    }

    /// Every store a deletion purges.
    ///
    /// # Errors
    /// The library cannot be opened.
    pub fn deletion_stores(&self) -> anyhow::Result<Stores<'_>> {
        Ok(Stores {
            library: self.library()?,
            collections: &self.collections,
            retention: &self.retention,
            audit: &self.audit,
        })
    }
}

/// Loads the model as described in the module docs ([`App::model`] calls it once).
///
/// # Errors
/// Only when `--model` was given and cannot be loaded.
fn load_model(settings: &ModelSettings, library: &Library) -> anyhow::Result<ModelChoice> {
    if settings.no_model {
        return Ok(ModelChoice {
            embedder: None,
            offline_reason: Some("--no-model was given".into()),
        });
    }
    let device = models::best_device(cfg!(feature = "cuda"));
    // `--precision`, else the precision the library's vectors were made in, else the device's
    // default (f16 on a GPU; bf16 on a CPU with bf16 dot products, else f32:
    // `Precision::default_for`).
    let precision = settings
        .precision
        .or_else(|| library.manifest().model.as_ref().map(|m| m.precision))
        .unwrap_or_else(|| models::Precision::default_for(device.location()));
    if device.is_cpu() && precision == models::Precision::Bf16 && models::cpu_has_bf16_dots() {
        tracing::info!("the model computes in bf16 on this CPU's bf16 dot products");
    } else if device.is_cpu() && precision != models::Precision::F32 {
        tracing::info!(
            %precision,
            "on the CPU the model's {precision} weights are computed in f32 (as fast as f32)"
        );
    }
    if let Some(m) = &settings.model {
        let source = ModelSource::parse(m);
        let e = ClipEmbedder::load_as(&source, &device, precision)
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
    match ClipEmbedder::load_as(&source, &device, precision) {
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

#[cfg(test)]
mod tests;
