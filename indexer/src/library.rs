//! A library on disk: one data directory holding the keyword index, the vector store and a
//! small manifest.
//!
//! Layout (see ARCHITECTURE.md): `manifest.json`, `keyword/` (tantivy), `vectors/`
//! (qdrant-edge shard, absent until the first embedded ingest), `reports/` (ingest reports).
//! The manifest is written atomically (temp file, fsync, rename) and pins the model: a library
//! never mixes vectors of two models.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use models::EmbedderSpec;
use serde::{Deserialize, Serialize};

use crate::keyword::KeywordIndex;
use crate::store::{CollectionSpec, EdgeStore, ServerStore, VectorStore};
use crate::{Error, Result};

/// Version of the on-disk layout; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

/// Named vectors of the collection.
pub const VECTOR_NAMES: [&str; 3] = ["image", "region", "text"];

/// Payload keys filtered as keywords.
pub const KEYWORD_FIELDS: [&str; 6] =
    ["record_id", "kind", "labels", "dataset", "filename", "path"];

/// Payload keys filtered as integer ranges (Unix seconds).
pub const INTEGER_FIELDS: [&str; 4] = ["captured", "created", "annotated", "ingested"];

/// Which vector store backs the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum StoreSettings {
    /// Embedded qdrant-edge shard under `<data-dir>/vectors` (the default).
    #[default]
    Edge,
    /// A Qdrant server or cluster (feature `server`).
    Server {
        /// gRPC url, e.g. `http://localhost:6334`.
        url: String,
        /// Collection name.
        collection: String,
    },
}

/// Record and vector counts, refreshed after each ingest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    /// Records.
    pub records: u64,
    /// Records with vectors.
    pub embedded_records: u64,
    /// Vector-store points (image + region).
    pub points: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version.
    pub format_version: u32,
    /// Model the vectors were made with; `None` until the first embedded ingest.
    pub model: Option<EmbedderSpec>,
    /// Vector store backend.
    #[serde(default)]
    pub store: StoreSettings,
    /// Counts.
    pub counts: Counts,
    /// When the library was created.
    pub created: DateTime<Utc>,
    /// Last change.
    pub updated: DateTime<Utc>,
}

/// An open library.
pub struct Library {
    dir: PathBuf,
    keyword: KeywordIndex,
    store: Arc<dyn VectorStore>,
    manifest: Manifest,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("dir", &self.dir)
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}

impl Library {
    /// Opens the library in `dir`, creating an empty one if the directory is new or empty.
    ///
    /// # Errors
    /// [`Error::DataDir`] when the directory holds something that is not a library or of another
    /// format version; keyword or store errors when those fail to open.
    pub fn open(dir: &Path, store: StoreSettings) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::DataDir {
            path: dir.display().to_string(),
            reason: format!("cannot create it: {e}"),
        })?;
        let manifest_path = dir.join("manifest.json");
        let manifest = if manifest_path.exists() {
            let bytes = std::fs::read(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::DataDir {
                path: dir.display().to_string(),
                reason: format!("manifest.json is not readable: {e}"),
            })?;
            if m.format_version != FORMAT_VERSION {
                return Err(Error::DataDir {
                    path: dir.display().to_string(),
                    reason: format!(
                        "library format {} is not supported by this build (expects {FORMAT_VERSION})",
                        m.format_version
                    ),
                });
            }
            m
        } else {
            let foreign = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .filter_map(|e| e.ok())
                .any(|e| {
                    !matches!(
                        e.file_name().to_str(),
                        Some("keyword" | "vectors" | "reports")
                    )
                });
            if foreign {
                return Err(Error::DataDir {
                    path: dir.display().to_string(),
                    reason: "it is not empty and holds no imagelens manifest.json; \
                             choose an empty or new directory"
                        .into(),
                });
            }
            let now = Utc::now();
            let m = Manifest {
                format_version: FORMAT_VERSION,
                model: None,
                store: store.clone(),
                counts: Counts::default(),
                created: now,
                updated: now,
            };
            write_atomic(
                &manifest_path,
                &serde_json::to_vec_pretty(&m).expect("serialises"),
            )?;
            m
        };
        let keyword = KeywordIndex::open(&dir.join("keyword"))?;
        let store: Arc<dyn VectorStore> = match &manifest.store {
            StoreSettings::Edge => Arc::new(EdgeStore::open(&dir.join("vectors"))?),
            StoreSettings::Server { url, collection } => {
                Arc::new(ServerStore::connect(url, collection)?)
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            keyword,
            store,
            manifest,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The keyword index.
    pub fn keyword(&self) -> &KeywordIndex {
        &self.keyword
    }

    /// The vector store (empty until the first embedded ingest).
    pub fn store(&self) -> &Arc<dyn VectorStore> {
        &self.store
    }

    /// The manifest as last saved.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether the library has vectors (semantic search possible with its model).
    pub fn has_vectors(&self) -> bool {
        self.manifest.model.is_some()
    }

    /// Refuses a model other than the library's.
    ///
    /// # Errors
    /// [`Error::ModelMismatch`].
    pub fn check_model(&self, spec: &EmbedderSpec) -> Result<()> {
        match &self.manifest.model {
            Some(m) if m.fingerprint() != spec.fingerprint() => Err(Error::ModelMismatch {
                library: format!("{} ({}, dim {})", m.model_id, m.revision, m.dim),
                given: format!("{} ({}, dim {})", spec.model_id, spec.revision, spec.dim),
            }),
            _ => Ok(()),
        }
    }

    /// The collection spec for a model's vectors.
    pub fn collection_spec(spec: &EmbedderSpec) -> CollectionSpec {
        CollectionSpec {
            dim: spec.dim,
            vectors: VECTOR_NAMES.iter().map(|s| s.to_string()).collect(),
            keyword_fields: KEYWORD_FIELDS.iter().map(|s| s.to_string()).collect(),
            integer_fields: INTEGER_FIELDS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Pins the model (first embedded ingest) and creates the collection.
    ///
    /// # Errors
    /// [`Error::ModelMismatch`], store errors.
    pub fn adopt_model(&mut self, spec: &EmbedderSpec) -> Result<()> {
        self.check_model(spec)?;
        self.store.ensure(&Self::collection_spec(spec))?;
        if self.manifest.model.is_none() {
            self.manifest.model = Some(spec.clone());
            self.save_manifest()?;
        }
        Ok(())
    }

    /// Refreshes counts from the stores and saves the manifest.
    ///
    /// # Errors
    /// Store or i/o errors.
    pub fn refresh_counts(&mut self) -> Result<()> {
        self.keyword.reload()?;
        let states = self.keyword.states()?;
        let fp = self.manifest.model.as_ref().map(|m| m.fingerprint());
        self.manifest.counts = Counts {
            records: states.len() as u64,
            embedded_records: states
                .values()
                .filter(|s| Some(&s.embedded) == fp.as_ref())
                .count() as u64,
            points: if self.has_vectors() {
                self.store.count(&Default::default())? as u64
            } else {
                0
            },
        };
        self.save_manifest()
    }

    fn save_manifest(&mut self) -> Result<()> {
        self.manifest.updated = Utc::now();
        let bytes = serde_json::to_vec_pretty(&self.manifest).expect("manifest serialises");
        write_atomic(&self.dir.join("manifest.json"), &bytes)
    }
}

/// Writes a file so that readers see the old or the new content, never a torn one.
///
/// # Errors
/// [`Error::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
