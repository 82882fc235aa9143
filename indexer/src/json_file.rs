//! [`JsonFile`]: one JSON document of the data directory, held in memory and written back
//! whole on every change, all or nothing.
//!
//! The accounts, collections and retention policy are each such a file. A change is made on a
//! copy, the copy is written with [`write_atomic`], and only then swapped in, so a failed write
//! changes neither the file nor what the process serves, and a panic in the middle of a change
//! cannot leave the state half-changed. One process writes a data directory (the root crate's
//! data-directory lock), so the in-memory copy never goes stale.
//!
//! The atomic write itself ([`write_atomic`], [`write_atomic_with`] for a chosen temporary
//! file, Unix mode or strict directory sync), [`read_json`] and [`sync_dir`] are the one
//! implementation of "temp file, fsync, rename, fsync of the directory" for every file of a
//! data directory that is replaced whole: the library's manifest, tombstones and reports, the
//! edge store's generation files, the audit trail's head and these documents.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// A JSON document kept in memory and in `path`.
#[derive(Debug)]
pub struct JsonFile<T> {
    path: PathBuf,
    private: bool,
    state: Mutex<T>,
}

impl<T: Clone + Serialize + DeserializeOwned + Default> JsonFile<T> {
    /// Opens `path`; an absent file is the default value (nothing is written until a change).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed ([`Error::Io`], [`Error::DataDir`]).
    pub fn open(path: PathBuf) -> Result<Self> {
        Self::open_checked(path, |_| Ok(()))
    }

    /// [`JsonFile::open`], refusing a document that `check` rejects (its message becomes an
    /// [`Error::DataDir`] naming the file).
    ///
    /// # Errors
    /// As [`JsonFile::open`], or `check` refuses.
    pub fn open_checked(
        path: PathBuf,
        check: impl FnOnce(&T) -> Result<(), String>,
    ) -> Result<Self> {
        let value = match read_json(&path)? {
            Some(value) => {
                check(&value).map_err(|reason| Error::DataDir {
                    path: path.display().to_string(),
                    reason,
                })?;
                value
            }
            None => T::default(),
        };
        Ok(Self {
            path,
            private: false,
            state: Mutex::new(value),
        })
    }

    /// Keeps the file readable by its owner only (mode 0600 on Unix), also while it is being
    /// written: for files holding secrets such as password hashes.
    #[must_use]
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// Where the document lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The document now, locked for the life of the guard: keep it short.
    pub fn read(&self) -> MutexGuard<'_, T> {
        // Every change is made on a copy and swapped in after the file is written, so a panic
        // while the lock was held cannot have left the document half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` to a copy of the document, writes the copy and swaps it in. When
    /// `change` fails or the write fails, nothing changed, in memory or on disk.
    ///
    /// # Errors
    /// What `change` returns, or the write failure.
    pub fn change<R, E: From<Error>>(
        &self,
        change: impl FnOnce(&mut T) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        self.change_if(|next| change(next).map(|out| (true, out)))
    }

    /// [`JsonFile::change`] that writes only when `change` says it changed something (its
    /// result is `(changed, out)`).
    ///
    /// # Errors
    /// As [`JsonFile::change`].
    pub fn change_if<R, E: From<Error>>(
        &self,
        change: impl FnOnce(&mut T) -> std::result::Result<(bool, R), E>,
    ) -> std::result::Result<R, E> {
        let mut guard = self.read();
        let mut next = guard.clone();
        let (changed, out) = change(&mut next)?;
        if changed {
            self.save(&next)?;
            *guard = next;
        }
        Ok(out)
    }

    fn save(&self, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::DataDir {
            path: self.path.display().to_string(),
            reason: format!("cannot encode: {e}"),
        })?;
        let how = AtomicWrite {
            mode: self.private.then_some(0o600),
            ..AtomicWrite::default()
        };
        write_atomic_with(&self.path, &bytes, &how)
    }
}

/// Reads a JSON file (written with [`write_atomic`]); `None` when there is none.
///
/// # Errors
/// [`Error::Io`] when it cannot be read, [`Error::DataDir`] naming the file when it does not
/// parse.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::DataDir {
                path: path.display().to_string(),
                reason: format!("the file is not readable: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes a file so that readers see the old or the new content, never a torn one: the bytes
/// go to `<path>` with the extension `tmp`, are synced, renamed over `path`, and the directory
/// is synced (best effort).
///
/// # Errors
/// [`Error::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, bytes, &AtomicWrite::default())
}

/// How [`write_atomic_with`] writes; the defaults are [`write_atomic`]'s.
#[derive(Debug, Clone, Default)]
pub struct AtomicWrite {
    /// The temporary file written and renamed over the target; `None` is the target with the
    /// extension `tmp`. A name no other writer uses keeps two writers from renaming each
    /// other's file away.
    pub tmp: Option<PathBuf>,
    /// Unix permission bits of the file, also while it is being written (a temporary file left
    /// over from an earlier failure is restricted too); `None` leaves a new file to the umask.
    /// Ignored elsewhere.
    pub mode: Option<u32>,
    /// Whether a directory that cannot be synced after the rename fails the write; by default
    /// that sync is best effort, as not every platform can open a directory.
    pub strict_dir_sync: bool,
}

/// [`write_atomic`] with a chosen temporary file, mode or directory sync. A write that fails
/// removes its temporary file.
///
/// # Errors
/// [`Error::Io`] (naming the temporary file, the target for the rename, or the directory), and
/// no other variant.
pub fn write_atomic_with(path: &Path, bytes: &[u8], how: &AtomicWrite) -> Result<()> {
    let tmp = how
        .tmp
        .clone()
        .unwrap_or_else(|| path.with_extension("tmp"));
    let written = write_synced(&tmp, bytes, how.mode)
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    match path.parent().map(|dir| (dir, sync_dir(dir))) {
        Some((dir, Err(e))) if how.strict_dir_sync => Err(Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// Creates or truncates `path` (with `mode` on Unix, also when it exists), writes `bytes` and
/// syncs them.
fn write_synced(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if let Some(mode) = mode {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    if let Some(mode) = mode {
        // `mode` applies only when the file is new; a leftover file keeps its own.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes renames and deletions inside `dir` durable (on Unix; elsewhere there is nothing to
/// do).
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    type Doc = BTreeMap<String, u32>;

    #[test]
    fn a_change_is_written_whole_and_a_failed_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        let file = JsonFile::<Doc>::open(path.clone()).unwrap();
        assert!(file.read().is_empty());
        assert!(!path.exists(), "nothing is written before a change");

        file.change(|d| {
            d.insert("a".into(), 1);
            Ok::<_, Error>(())
        })
        .unwrap();
        let failed = file.change(|d| {
            d.insert("b".into(), 2);
            Err::<(), _>(Error::DataDir {
                path: "x".into(),
                reason: "refused".into(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(*file.read(), Doc::from([("a".into(), 1)]));
        let reopened = JsonFile::<Doc>::open(path.clone()).unwrap();
        assert_eq!(*reopened.read(), Doc::from([("a".into(), 1)]));

        let untouched = file.change_if(|_| Ok::<_, Error>((false, 7))).unwrap();
        assert_eq!(untouched, 7);
    }

    #[test]
    fn a_check_that_refuses_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        std::fs::write(&path, br#"{"a": 1}"#).unwrap();
        let err = JsonFile::<Doc>::open_checked(path, |_| Err("no".into())).unwrap_err();
        assert!(err.to_string().contains("doc.json"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_private_file_is_written_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        std::fs::write(path.with_extension("tmp"), b"").unwrap();
        std::fs::set_permissions(
            path.with_extension("tmp"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let file = JsonFile::<Doc>::open(path.clone()).unwrap().private();
        file.change(|d| {
            d.insert("k".into(), 1);
            Ok::<_, Error>(())
        })
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
