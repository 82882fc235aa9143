//! One writer per data directory: the OS lock on `<data-dir>/lock`, who holds it, and the
//! refusal that names the holder (see the parent module for why).

use super::*;

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

pub(super) fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}
