//! Where a model's files come from: a local folder, or a Hugging Face hub repo through the
//! local hub cache (downloading only when allowed and reachable).
//!
//! Owns the parsing of `--model` values and the hub cache look-up; it does not read the files.
//! Honours `HF_HUB_CACHE`, `HF_HOME`, `HF_HUB_OFFLINE`, `HF_ENDPOINT` and `HF_TOKEN` as the
//! Python `huggingface_hub` does, so a cache filled by Python is found here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hf_hub::{Cache, Repo, RepoType};

use crate::EmbedError;
use crate::clip::{CONFIG_FILE, PREPROCESSOR_FILE, TOKENIZER_FILE, WEIGHTS_FILE};

/// The hub repo used when none is given.
pub const DEFAULT_HUB_MODEL: &str = "openai/clip-vit-base-patch32";

/// The files fetched from a hub repo.
const HUB_FILES: [&str; 4] = [CONFIG_FILE, TOKENIZER_FILE, PREPROCESSOR_FILE, WEIGHTS_FILE];

/// Where to load a model from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder in the Hugging Face layout.
    Local(PathBuf),
    /// A hub repo id, at a branch, tag or commit (`main` when `None`).
    Hub {
        /// `owner/name`.
        repo: String,
        /// Branch, tag or commit hash.
        revision: Option<String>,
    },
}

impl Default for ModelSource {
    /// The hub's `openai/clip-vit-base-patch32` at `main`.
    fn default() -> Self {
        Self::Hub {
            repo: DEFAULT_HUB_MODEL.into(),
            revision: None,
        }
    }
}

impl ModelSource {
    /// Parses a `--model` value. An existing path, or anything starting with `/`, `.` or `~`
    /// (expanded to `$HOME`), is a local folder; otherwise it is a hub repo id, optionally
    /// followed by `@revision` (`openai/clip-vit-base-patch32@main`).
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s.starts_with(['/', '.', '~']) || Path::new(s).exists() {
            return Self::Local(expand_tilde(s));
        }
        match s.split_once('@') {
            Some((repo, rev)) if !rev.is_empty() => Self::Hub {
                repo: repo.into(),
                revision: Some(rev.into()),
            },
            _ => Self::Hub {
                repo: s.trim_end_matches('@').into(),
                revision: None,
            },
        }
    }

    /// The model id recorded in [`crate::EmbedderSpec`]: the repo id or the folder path.
    pub fn model_id(&self) -> String {
        match self {
            Self::Local(p) => p.display().to_string(),
            Self::Hub { repo, .. } => repo.clone(),
        }
    }

    /// The local folder holding the model's files.
    ///
    /// A local folder is returned as is (after checking it exists). A hub repo is looked up in
    /// the hub cache first (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`); only when some file is missing and `HF_HUB_OFFLINE` is not
    /// set is it downloaded into that cache.
    ///
    /// # Errors
    /// [`EmbedError::MissingFile`] for a missing local folder; [`EmbedError::HubUnavailable`]
    /// (which names the `--model /path/to/folder` option) when the repo is not cached and
    /// cannot be downloaded.
    pub fn resolve(&self) -> Result<PathBuf, EmbedError> {
        match self {
            Self::Local(dir) => {
                if dir.is_dir() {
                    Ok(dir.clone())
                } else {
                    Err(EmbedError::MissingFile { path: dir.clone() })
                }
            }
            Self::Hub { repo, revision } => {
                resolve_hub(repo, revision.as_deref(), &hub_cache_dir(), hub_offline())
            }
        }
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::Hub {
                repo,
                revision: None,
            } => write!(f, "{repo}"),
            Self::Hub {
                repo,
                revision: Some(r),
            } => write!(f, "{repo}@{r}"),
        }
    }
}

impl FromStr for ModelSource {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

fn expand_tilde(s: &str) -> PathBuf {
    if let Some(rest) = s.strip_prefix('~')
        && (rest.is_empty() || rest.starts_with('/'))
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest.trim_start_matches('/'));
    }
    PathBuf::from(s)
}

/// The hub cache folder, as `huggingface_hub` picks it.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join("hub");
    }
    Cache::from_env().path().clone()
}

/// Whether `HF_HUB_OFFLINE` asks for no network access.
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// The cached snapshot folder of `repo` holding every file in [`HUB_FILES`], if any.
fn cached_snapshot(repo: &str, revision: Option<&str>, cache_dir: &Path) -> Option<PathBuf> {
    let cache = Cache::new(cache_dir.to_path_buf());
    let hf_repo = hf_repo(repo, revision);
    let via_ref = HUB_FILES
        .iter()
        .map(|f| cache.repo(hf_repo.clone()).get(f))
        .collect::<Option<Vec<_>>>()
        .and_then(|paths| paths[0].parent().map(Path::to_path_buf));
    if via_ref.is_some() {
        return via_ref;
    }
    // A commit hash has no refs/ entry: its snapshot folder is named after it.
    let rev = revision?;
    let snapshot = cache_dir
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(rev);
    HUB_FILES
        .iter()
        .all(|f| snapshot.join(f).is_file())
        .then_some(snapshot)
}

fn hf_repo(repo: &str, revision: Option<&str>) -> Repo {
    match revision {
        Some(r) => Repo::with_revision(repo.into(), RepoType::Model, r.into()),
        None => Repo::new(repo.into(), RepoType::Model),
    }
}

fn resolve_hub(
    repo: &str,
    revision: Option<&str>,
    cache_dir: &Path,
    offline: bool,
) -> Result<PathBuf, EmbedError> {
    if let Some(dir) = cached_snapshot(repo, revision, cache_dir) {
        return Ok(dir);
    }
    let unavailable = |reason: String| EmbedError::HubUnavailable {
        repo: repo.into(),
        reason,
    };
    if offline {
        return Err(unavailable(format!(
            "HF_HUB_OFFLINE is set and {} does not hold it",
            cache_dir.display()
        )));
    }
    let mut builder =
        hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(cache_dir.to_path_buf()))
            .with_progress(false);
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().map_err(|e| unavailable(e.to_string()))?;
    let api_repo = api.repo(hf_repo(repo, revision));
    let mut dir = None;
    for file in HUB_FILES {
        tracing::info!(repo, file, "fetching from the hub");
        let path = api_repo
            .get(file)
            .map_err(|e| unavailable(format!("{file}: {e}")))?;
        dir = path.parent().map(Path::to_path_buf);
    }
    dir.ok_or_else(|| unavailable("no files".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tells_folders_from_repo_ids() {
        assert_eq!(
            ModelSource::parse("/models/clip"),
            ModelSource::Local("/models/clip".into())
        );
        assert_eq!(
            ModelSource::parse("./clip"),
            ModelSource::Local("./clip".into())
        );
        assert_eq!(
            ModelSource::parse("openai/clip-vit-base-patch32"),
            ModelSource::default()
        );
        assert_eq!(
            ModelSource::parse("openai/clip-vit-base-patch16@v1"),
            ModelSource::Hub {
                repo: "openai/clip-vit-base-patch16".into(),
                revision: Some("v1".into())
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().to_str().unwrap();
        assert_eq!(ModelSource::parse(s), ModelSource::Local(dir.path().into()));
        assert_eq!(ModelSource::parse(s).to_string(), s);
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                ModelSource::parse("~/m"),
                ModelSource::Local(PathBuf::from(home).join("m"))
            );
        }
    }

    #[test]
    fn missing_local_folder_is_missing_file() {
        let err = ModelSource::parse("/no/such/model/folder")
            .resolve()
            .unwrap_err();
        assert!(matches!(err, EmbedError::MissingFile { .. }), "{err}");
    }

    #[test]
    fn offline_without_cache_names_the_local_folder_option() {
        let cache = tempfile::tempdir().unwrap();
        let err =
            resolve_hub("openai/clip-vit-base-patch32", None, cache.path(), true).unwrap_err();
        assert!(matches!(err, EmbedError::HubUnavailable { .. }));
        let msg = err.to_string();
        assert!(msg.contains("--model /path/to/folder"), "{msg}");
        assert!(msg.contains("openai/clip-vit-base-patch32"), "{msg}");
    }

    #[test]
    fn cached_repo_resolves_without_network() {
        let cache = tempfile::tempdir().unwrap();
        let repo_dir = cache.path().join("models--org--clip");
        let hash = "0123456789abcdef0123456789abcdef01234567";
        let snap = repo_dir.join("snapshots").join(hash);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
        std::fs::write(repo_dir.join("refs/main"), hash).unwrap();
        for f in HUB_FILES {
            std::fs::write(snap.join(f), "{}").unwrap();
        }
        // offline = true: any network attempt would be an error
        assert_eq!(
            resolve_hub("org/clip", None, cache.path(), true).unwrap(),
            snap
        );
        assert_eq!(
            resolve_hub("org/clip", Some(hash), cache.path(), true).unwrap(),
            snap
        );
        // a partial snapshot is not enough
        std::fs::remove_file(snap.join(WEIGHTS_FILE)).unwrap();
        assert!(resolve_hub("org/clip", None, cache.path(), true).is_err());
    }
}
