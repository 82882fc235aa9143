//! Composition root: from command-line settings to an open, locked data directory ([`App`]:
//! the library, collections, accounts, audit trail and retention policy, each opened once per
//! process) and an optional model.
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
//! without semantic search and says so.

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
    /// Default fusion weights (`[fusion]`); a search's own weights overlay them.
    pub fusion: crate::search::Fusion,
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

/// Everything a process opens in a data directory, each opened once: the governed files
/// (collections, accounts, trail, retention policy) when the app is opened, the library (its
/// keyword index and vector store) on first use, so commands that only govern (accounts,
/// tokens, the trail) never open the stores. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct App {
    dir: PathBuf,
    /// How to open the library on first use; `None` when it was given open ([`App::around`]).
    store: Option<StoreSettings>,
    library: Arc<std::sync::OnceLock<Arc<Library>>>,
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

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "lock";

/// Who holds a data directory: what `<data-dir>/lock` says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockHolder {
    /// Process id of the holder.
    pub pid: u32,
    /// When it took the lock.
    pub since: DateTime<Utc>,
    /// What it runs, e.g. `serve` or `token revoke`.
    pub command: String,
    /// Where a server listens, once it does (`http://127.0.0.1:7878`).
    pub url: Option<String>,
}

impl LockHolder {
    /// Whether the holder is `imagelens serve`.
    pub fn is_server(&self) -> bool {
        self.command == "serve"
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`imagelens {}` (pid {}, since {}",
            self.command,
            self.pid,
            self.since.format("%Y-%m-%dT%H:%M:%SZ")
        )?;
        if let Some(url) = &self.url {
            write!(f, ", on {url}")?;
        }
        write!(f, ")")
    }
}

/// The data directory is locked by another process.
#[derive(Debug, Clone)]
pub struct Busy {
    /// The data directory.
    pub dir: PathBuf,
    /// What its lock file says; `None` when it cannot be read (the holder is just starting).
    pub holder: Option<LockHolder>,
}

impl Busy {
    /// Why `command` is refused and what to do instead. `instead` names the HTTP route that
    /// makes the same change through a running server (e.g. `DELETE /v1/tokens/ID`); `None`
    /// when the API has no such route.
    pub fn refusal(&self, command: &str, instead: Option<&str>) -> String {
        let who = self.holder.as_ref().map_or_else(
            || "another imagelens process".to_owned(),
            ToString::to_string,
        );
        let head = format!(
            "the library in {} is in use by {who}, and one process at a time may open it: \
             `{command}` was not run and nothing was changed",
            self.dir.display()
        );
        match &self.holder {
            Some(h) if h.is_server() => match instead {
                Some(route) => format!(
                    "{head}. Make the change through the server's API instead ({route}), or \
                     stop the server (pid {}) and run the command again",
                    h.pid
                ),
                None => format!(
                    "{head}. Stop the server (pid {}) and run the command again",
                    h.pid
                ),
            },
            Some(_) => format!("{head}. Wait for it to finish and run the command again"),
            None => format!(
                "{head}. If a server runs on it, make the change through its API{}; otherwise \
                 wait for the other command to finish",
                instead.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
        }
    }
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.refusal("this command", None))
    }
}

/// Why a data directory cannot be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{0}")]
    Busy(Busy),
    /// The directory or its lock file cannot be created, opened or locked.
    #[error("cannot lock the data directory {dir}: {reason}")]
    Unusable {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The exclusive lock on a data directory, held for as long as this value or a clone of it
/// lives (see the module docs). Taking it again in the same process gives a clone, so nested
/// openers share it.
#[derive(Clone)]
pub struct DataDirLock {
    held: Arc<Held>,
}

impl std::fmt::Debug for DataDirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDirLock")
            .field("dir", &self.held.dir)
            .finish_non_exhaustive()
    }
}

struct Held {
    /// The lock file, locked exclusively; closing it releases the lock.
    file: Mutex<File>,
    /// The data directory, canonical.
    dir: PathBuf,
    holder: Mutex<LockHolder>,
}

/// Data directories this process holds, by canonical path.
static HELD: Mutex<Option<HashMap<PathBuf, Weak<Held>>>> = Mutex::new(None);

impl DataDirLock {
    /// The data directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.held.dir
    }

    /// What the lock file says about this process.
    pub fn holder(&self) -> LockHolder {
        self.held
            .holder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records where a server listens, so that refused commands can name it.
    ///
    /// # Errors
    /// When the lock file cannot be written.
    pub fn set_url(&self, url: &str) -> std::io::Result<()> {
        let mut holder = self.held.holder.lock().unwrap_or_else(|p| p.into_inner());
        holder.url = Some(url.to_owned());
        let file = self.held.file.lock().unwrap_or_else(|p| p.into_inner());
        write_holder(&file, &holder)
    }
}

/// Takes the exclusive lock on the data directory `dir` for `command` (e.g. `serve`, `token
/// revoke`), creating the directory (`0700`) when it does not exist. In a process that already
/// holds it, returns the same lock.
///
/// A directory that exists, is not empty and is not a library is refused before anything is
/// written into it.
///
/// # Errors
/// [`LockError::Busy`] when another process holds it, naming that process;
/// [`LockError::Unusable`] when the directory or lock file cannot be made or locked.
pub fn lock_data_dir(dir: &Path, command: &str) -> Result<DataDirLock, LockError> {
    let unusable = |reason: String| LockError::Unusable {
        dir: dir.to_owned(),
        reason,
    };
    create_private_dir(dir).map_err(|e| unusable(format!("cannot create it: {e}")))?;
    let canonical = dir
        .canonicalize()
        .map_err(|e| unusable(format!("cannot resolve it: {e}")))?;
    let mut registry = HELD.lock().unwrap_or_else(|p| p.into_inner());
    let registry = registry.get_or_insert_with(HashMap::new);
    if let Some(held) = registry.get(&canonical).and_then(Weak::upgrade) {
        return Ok(DataDirLock { held });
    }
    let lock_path = canonical.join(LOCK_FILE);
    if !lock_path.exists() {
        refuse_foreign(&canonical).map_err(unusable)?;
    }
    let mut options = OpenOptions::new();
    // Never truncate on open: the holder's note must survive a refused opener.
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&lock_path)
        .map_err(|e| unusable(format!("cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = read_holder(&mut file);
            return Err(LockError::Busy(Busy {
                dir: dir.to_owned(),
                holder,
            }));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(unusable(format!(
                "cannot lock {}: {e}",
                lock_path.display()
            )));
        }
    }
    let holder = LockHolder {
        pid: std::process::id(),
        since: Utc::now(),
        command: command.to_owned(),
        url: None,
    };
    write_holder(&file, &holder)
        .map_err(|e| unusable(format!("cannot write {}: {e}", lock_path.display())))?;
    let held = Arc::new(Held {
        file: Mutex::new(file),
        dir: canonical.clone(),
        holder: Mutex::new(holder),
    });
    registry.retain(|_, w| w.strong_count() > 0);
    registry.insert(canonical, Arc::downgrade(&held));
    Ok(DataDirLock { held })
}

/// Whether this process holds the lock of `dir` (taken with [`lock_data_dir`] and not yet
/// dropped).
pub fn holds_data_dir_lock(dir: &Path) -> bool {
    let Ok(canonical) = dir.canonicalize() else {
        return false;
    };
    HELD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(&canonical))
        .is_some_and(|w| w.strong_count() > 0)
}

/// Creates `dir` (and missing parents) readable by the owner alone; an existing directory is
/// left as it is.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    // File names and captions are in there: nobody else should list or read them.
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Refuses a directory that holds something other than an (unfinished) library, so that no
/// lock file is left in, say, a home directory given by mistake. `Library::open` makes the
/// same check; this one runs before the lock file is created.
fn refuse_foreign(dir: &Path) -> Result<(), String> {
    if dir.join("manifest.json").exists() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list it: {e}"))?;
    let foreign = entries.filter_map(Result::ok).any(|e| {
        !matches!(
            e.file_name().to_str(),
            Some("keyword" | "vectors" | "reports" | "tombstones.json" | LOCK_FILE)
        )
    });
    if foreign {
        return Err(
            "it is not empty and holds no imagelens manifest.json; choose an empty or \
                    new directory"
                .into(),
        );
    }
    Ok(())
}

fn write_holder(mut file: &File, holder: &LockHolder) -> std::io::Result<()> {
    let mut text = serde_json::to_vec(holder).map_err(std::io::Error::other)?;
    text.push(b'\n');
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&text)?;
    file.sync_data()
}

fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests;
