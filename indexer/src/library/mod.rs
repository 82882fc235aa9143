//! A library on disk: one data directory holding the keyword index, the vector store and a
//! small manifest.
//!
//! Layout (see ARCHITECTURE.md): `manifest.json`, `keyword/` (tantivy), `vectors/`
//! (qdrant-edge shards: `images/` and `regions/`, or one shard in libraries made before
//! [`VectorLayout::Split`]; empty until the first embedded ingest), `reports/` (ingest reports).
//! The manifest is written atomically (temp file, fsync, rename) and pins the model: a library
//! never mixes vectors of two models.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use chrono::{DateTime, Utc};
use models::EmbedderSpec;
use serde::{Deserialize, Serialize};

use crate::keyword::KeywordIndex;
// Re-exported for callers that still name them here; they live in `json_file`.
pub use crate::json_file::{read_json, write_atomic};
use crate::record::Record;
use crate::report::IngestReport;
use crate::store::{
    CollectionSpec, EdgeStore, IndexSettings, Part, PartitionedStore, ServerOptions, ServerStatus,
    ServerStore, VectorFilter, VectorStore,
};
use crate::{Error, Result};

mod store_settings;
pub use store_settings::{DEFAULT_COLLECTION, MAX_SHARDS, ServerSettings, StoreSettings};

/// The parts of a [`VectorLayout::Split`] library's store, under `vectors`.
fn open_parts(vectors: &Path) -> Result<PartitionedStore> {
    parts_of(|name| {
        Ok(Arc::new(EdgeStore::open_with_defaults(
            &vectors.join(name),
            &IndexSettings::for_parts(),
        )?))
    })
}

/// A [`PartitionedStore`] of the parts [`crate::points::VECTOR_PARTS`] names, each opened by
/// `open` from the part's name.
fn parts_of(
    mut open: impl FnMut(&str) -> Result<Arc<dyn VectorStore>>,
) -> Result<PartitionedStore> {
    let parts = crate::points::VECTOR_PARTS
        .iter()
        .map(|(name, names)| {
            Ok(Part {
                name: (*name).to_owned(),
                vectors: names.iter().map(|v| v.as_str().to_owned()).collect(),
                store: open(name)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PartitionedStore::new(parts)?)
}

/// The collections of a [`VectorLayout::Split`] library on a Qdrant server, named from the
/// collection its store URL gives: `{collection}.images` and `{collection}.regions`. A store
/// URL's collection cannot hold a `.`, so no library's collection can be another's part.
pub fn server_part_collection(collection: &str, part: &str) -> String {
    format!("{collection}.{part}")
}

/// Qdrant's longest collection name.
const MAX_SERVER_COLLECTION: usize = 255;

/// The store a library searches, and the server collections behind it when it is a Qdrant
/// server's (for [`Library::server_status`]; none for the embedded store).
type OpenedStore = (Arc<dyn VectorStore>, Vec<Arc<ServerStore>>);

/// The store of a library on a Qdrant server: the one collection itself, or the parts as a
/// [`PartitionedStore`], with the server stores of each collection. Each collection not made
/// yet gets its layout's [`VectorLayout::index_defaults`], as an embedded part does.
fn open_server(
    recorded: &ServerSettings,
    options: &ServerOptions,
    layout: VectorLayout,
) -> Result<OpenedStore> {
    let connect = |collection: &str| -> Result<Arc<ServerStore>> {
        Ok(Arc::new(ServerStore::connect_with_defaults(
            &recorded.url,
            collection,
            options.clone(),
            &layout.index_defaults(),
        )?))
    };
    match layout {
        VectorLayout::Single => {
            let server = connect(&recorded.collection)?;
            Ok((server.clone(), vec![server]))
        }
        VectorLayout::Split => {
            let mut servers = Vec::new();
            let store = parts_of(|part| {
                let server = connect(&server_part_collection(&recorded.collection, part))?;
                servers.push(server.clone());
                Ok(server)
            })?;
            Ok((Arc::new(store), servers))
        }
    }
}

/// Deletes the part directories under `vectors` (in a [`VectorLayout::Single`] library they
/// can only be the copies of a split that did not commit).
fn remove_parts(vectors: &Path) -> Result<()> {
    for (name, _) in crate::points::VECTOR_PARTS {
        let dir = vectors.join(name);
        if dir.exists() {
            tracing::warn!(path = %dir.display(), "removing the parts of an unfinished split");
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    Ok(())
}

/// Deletes the one collection under `vectors` (its manifest, settings and shards) once a split
/// has committed, leaving the part directories.
fn remove_single_collection(vectors: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(vectors) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(vectors, e)),
    };
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(vectors, e))?;
        let name = entry.file_name();
        if crate::points::VECTOR_PARTS
            .iter()
            .any(|(part, _)| name.to_str() == Some(*part))
        {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        } else {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        removed = true;
    }
    // Every open of a split library comes here: sync only when something went.
    if removed {
        crate::json_file::sync_dir(vectors).map_err(|e| Error::io(vectors, e))?;
    }
    Ok(())
}

/// Marks of deleted images (see `Tombstones`).
const TOMBSTONES_FILE: &str = "tombstones.json";

/// Version of the on-disk layout; bumped on incompatible changes. 2: the vectors kept in parts
/// ([`VectorLayout::Split`]), which a build that reads only format 1 must refuse (it would
/// find no collection in `vectors/` and take the library for one without vectors) rather
/// than open. Libraries of one collection stay format 1 ([`VectorLayout::format_version`]).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format this build opens: 1, every library before [`VectorLayout::Split`].
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Folder (under the data directory) of the images the library holds itself: those a Clarifai
/// export archive carried inside it. Content-addressed (`{sha256}.{ext}`); a deletion removes
/// a deleted record's file.
pub const CARRIED_IMAGES: &str = "images";

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

/// How a library's vector store keeps its points (recorded in the manifest when the library is
/// made; [`Library::split_vectors`] moves one collection apart, nothing moves it back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorLayout {
    /// One collection holds image and region points (every point takes a slot of each named
    /// vector): libraries made before `Split` existed (embedded ones, and on a Qdrant server
    /// those made before server libraries were split too), which keep working as they are.
    #[default]
    Single,
    /// Every new library: image points (`image`, `text`) apart from region points (`region`),
    /// so no vector has slots for points without it ([`crate::points::VECTOR_PARTS`],
    /// [`crate::store::PartitionedStore`]): embedded in `vectors/images/` and
    /// `vectors/regions/`, on a Qdrant server in the collections
    /// [`server_part_collection`] names.
    Split,
}

impl VectorLayout {
    /// The manifest's `format_version` of a library of this layout: 1 for one collection (as
    /// every library before), [`FORMAT_VERSION`] (2) apart.
    pub fn format_version(self) -> u32 {
        match self {
            VectorLayout::Single => OLDEST_FORMAT_VERSION,
            VectorLayout::Split => FORMAT_VERSION,
        }
    }

    /// The index settings of a library of this layout while it has none of its own:
    /// [`IndexSettings::default`] for one collection, [`IndexSettings::for_parts`] apart.
    pub fn index_defaults(self) -> IndexSettings {
        match self {
            VectorLayout::Single => IndexSettings::default(),
            VectorLayout::Split => IndexSettings::for_parts(),
        }
    }
}

impl std::fmt::Display for VectorLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VectorLayout::Single => "one collection",
            VectorLayout::Split => "images and regions apart",
        })
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version.
    pub format_version: u32,
    /// Model the vectors were made with; `None` until the first embedded ingest.
    pub model: Option<EmbedderSpec>,
    /// How the vector store keeps the points ([`VectorLayout::Single`] in libraries made
    /// before the layout was recorded).
    #[serde(default)]
    pub vector_layout: VectorLayout,
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
    /// The server collections behind the store when it is a Qdrant server: the one
    /// collection, or the parts' (for [`Library::server_status`]).
    servers: Vec<Arc<ServerStore>>,
    /// The same store when it is one embedded collection (for [`Library::split_vectors`]).
    single_edge: Option<Arc<EdgeStore>>,
    // Behind a lock so a serving process can delete records (and refresh counts) through a
    // shared `&Library`; every change is written to disk before it is visible here.
    manifest: RwLock<Manifest>,
    tombstones: RwLock<Tombstones>,
}

/// `tombstones.json`: images deleted from the library, so that re-ingesting the same export does
/// not bring them back. Each is `sha256(salt || image sha256)`: it recognises the same bytes
/// again without keeping the record's id, hash or anything else that identifies it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tombstones {
    salt: String,
    images: std::collections::BTreeSet<String>,
}

impl Tombstones {
    fn mark(&self, sha256: &str) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(format!("{}:{sha256}", self.salt).as_bytes()))
    }
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("dir", &self.dir)
            .field("manifest", &*self.manifest_lock())
            .finish_non_exhaustive()
    }
}

impl Library {
    /// Opens the library in `dir`, creating an empty one if the directory is new or empty.
    ///
    /// A new library records `store` in its manifest (once the store answered); an existing one
    /// must be opened with the store it records (see [`StoreSettings::resolve`]).
    ///
    /// # Errors
    /// [`Error::DataDir`] when the directory holds something that is not a library, is of
    /// another format version, or records another store; keyword or store errors when those
    /// fail to open (a server that cannot be reached is `StoreError::Unavailable`).
    pub fn open(dir: &Path, store: StoreSettings) -> Result<Self> {
        Self::open_with_layout(dir, store, VectorLayout::Split)
    }

    /// [`Library::open`], giving a new library `layout` instead of [`VectorLayout::Split`]
    /// (an existing library keeps its own): for tests and benches that compare the layouts or
    /// make a library as builds before made them.
    ///
    /// # Errors
    /// As [`Library::open`].
    pub fn open_with_layout(
        dir: &Path,
        store: StoreSettings,
        layout: VectorLayout,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::DataDir {
            path: dir.display().to_string(),
            reason: format!("cannot create it: {e}"),
        })?;
        let manifest_path = dir.join("manifest.json");
        let is_new = !manifest_path.exists();
        let manifest = if !is_new {
            let bytes = std::fs::read(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::DataDir {
                path: dir.display().to_string(),
                reason: format!("manifest.json is not readable: {e}"),
            })?;
            if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&m.format_version)
                || m.format_version != m.vector_layout.format_version()
            {
                return Err(Error::DataDir {
                    path: dir.display().to_string(),
                    reason: format!(
                        "library format {} with {} vectors is not supported by this build \
                         (it reads formats {OLDEST_FORMAT_VERSION} with one collection and \
                         {FORMAT_VERSION} with images and regions apart)",
                        m.format_version, m.vector_layout
                    ),
                });
            }
            if !m.store.same_store(&store) {
                return Err(Error::DataDir {
                    path: dir.display().to_string(),
                    reason: format!(
                        "this library keeps its vectors in {}, not {store}; a library never \
                         switches vector stores: give --store {} (or none), or use a new \
                         --data-dir",
                        m.store, m.store
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
                        // `lock`: the data-directory lock, taken before the library is made.
                        Some("keyword" | "vectors" | "reports" | "lock" | TOMBSTONES_FILE)
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
            if let (StoreSettings::Server(s), VectorLayout::Split) = (&store, layout) {
                let longest = crate::points::VECTOR_PARTS
                    .iter()
                    .map(|(part, _)| server_part_collection(&s.collection, part).len())
                    .max()
                    .unwrap_or(0);
                if longest > MAX_SERVER_COLLECTION {
                    return Err(Error::DataDir {
                        path: dir.display().to_string(),
                        reason: format!(
                            "collection {:?} is too long for its parts' collections \
                             ({longest} characters, Qdrant takes {MAX_SERVER_COLLECTION}): \
                             give a shorter one",
                            s.collection
                        ),
                    });
                }
            }
            let now = Utc::now();
            Manifest {
                format_version: layout.format_version(),
                model: None,
                vector_layout: layout,
                store: store.recorded(),
                counts: Counts::default(),
                created: now,
                updated: now,
            }
        };
        let keyword = KeywordIndex::open(&dir.join("keyword"))?;
        let vectors = dir.join("vectors");
        let mut single_edge = None;
        let (store, servers): OpenedStore = match (&manifest.store, &store) {
            (StoreSettings::Server(recorded), StoreSettings::Server(asked)) => {
                // The recorded layout; this run's key and timeout.
                let options = ServerOptions {
                    api_key: asked.api_key.clone(),
                    timeout: asked.timeout_secs.map(std::time::Duration::from_secs),
                    ..recorded.options()
                };
                open_server(recorded, &options, manifest.vector_layout)?
            }
            _ => match manifest.vector_layout {
                VectorLayout::Single => {
                    // Parts of a split that never committed hold copies of the points.
                    remove_parts(&vectors)?;
                    let edge = Arc::new(EdgeStore::open(&vectors)?);
                    single_edge = Some(edge.clone());
                    (edge, Vec::new())
                }
                VectorLayout::Split => {
                    // The one collection a committed split replaced, if its removal was cut.
                    remove_single_collection(&vectors)?;
                    (Arc::new(open_parts(&vectors)?), Vec::new())
                }
            },
        };
        // Recorded only once its store answered: a store that cannot be reached (or is not
        // compiled in) leaves no library pinned to it.
        if is_new {
            write_atomic(
                &manifest_path,
                &serde_json::to_vec_pretty(&manifest).expect("serialises"),
            )?;
        }
        let tombstones = read_json(&dir.join(TOMBSTONES_FILE))?.unwrap_or_default();
        Ok(Self {
            dir: dir.to_owned(),
            keyword,
            store,
            servers,
            single_edge,
            manifest: RwLock::new(manifest),
            tombstones: RwLock::new(tombstones),
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

    /// The Qdrant server's version and the collection's points, shards and replica states (of
    /// a library with images and regions apart, both collections' as one,
    /// [`ServerStatus::merged`]); `None` for the embedded store.
    ///
    /// # Errors
    /// The server does not answer.
    pub fn server_status(&self) -> Result<Option<ServerStatus>> {
        let mut statuses = self
            .servers
            .iter()
            .map(|s| s.status())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if statuses.len() < 2 {
            return Ok(statuses.pop());
        }
        let name = match &self.manifest_lock().store {
            StoreSettings::Server(s) => s.collection.clone(),
            StoreSettings::Edge => String::new(),
        };
        Ok(Some(ServerStatus::merged(&name, statuses)))
    }

    /// The manifest as last saved.
    pub fn manifest(&self) -> Manifest {
        self.manifest_lock().clone()
    }

    fn manifest_lock(&self) -> RwLockReadGuard<'_, Manifest> {
        // Changes are made on a copy and swapped in whole, so a poisoned lock still holds a
        // consistent manifest.
        self.manifest.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the library has vectors (semantic search possible with its model).
    pub fn has_vectors(&self) -> bool {
        self.manifest_lock().model.is_some()
    }

    /// Refuses a model other than the library's.
    ///
    /// # Errors
    /// [`Error::ModelMismatch`].
    pub fn check_model(&self, spec: &EmbedderSpec) -> Result<()> {
        match &self.manifest_lock().model {
            Some(m) if m.fingerprint() != spec.fingerprint() => Err(Error::ModelMismatch {
                library: m.to_string(),
                given: spec.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Moves an embedded library of one collection ([`VectorLayout::Single`], every library
    /// made before the layout was recorded) to images and regions apart
    /// ([`VectorLayout::Split`]): every live point is copied into `vectors/images/` or
    /// `vectors/regions/`, the copy is counted against the original and optimised (graphs and
    /// int8 copies under the library's index settings; a `full_scan_kb` left at the old
    /// default becomes [`IndexSettings::for_parts`]'s, with its `full_scan_share`), and only
    /// then does the manifest say `split`; the one collection is deleted after that.
    /// Interrupted before the manifest changes, the library is as it was (the next open deletes
    /// the partial parts); after, it is split (the next open deletes what is left of the one
    /// collection). Answers the points copied; 0 for a library already split.
    ///
    /// # Errors
    /// [`Error::DataDir`] for a library of one collection on a Qdrant server or when the
    /// copy's count differs from the original's (nothing changed); store and i/o errors.
    pub fn split_vectors(&mut self) -> Result<u64> {
        if self.manifest_lock().vector_layout == VectorLayout::Split {
            return Ok(0);
        }
        let Some(old) = self.single_edge.clone() else {
            return Err(Error::DataDir {
                path: self.dir.display().to_string(),
                reason: "its vectors are in one collection on a Qdrant server, and only an \
                         embedded library is moved apart (a new library on a server keeps images \
                         and regions apart from the start)"
                    .into(),
            });
        };
        let vectors = self.dir.join("vectors");
        remove_parts(&vectors)?;
        let parts = open_parts(&vectors)?;
        let mut settings = old.index_settings()?;
        if settings.full_scan_kb == IndexSettings::default().full_scan_kb {
            settings.full_scan_kb = IndexSettings::for_parts().full_scan_kb;
            settings.full_scan_share = IndexSettings::for_parts().full_scan_share;
        }
        parts.set_index_settings(&settings)?;
        let copied = match old.collection_spec() {
            Err(crate::store::StoreError::Missing) => 0,
            Err(err) => return Err(err.into()),
            Ok(spec) => {
                parts.ensure(&spec)?;
                let mut from = None;
                let mut copied = 0u64;
                loop {
                    let (points, next) = old.points_page(from, 1_000)?;
                    copied += points.len() as u64;
                    parts.upsert(points)?;
                    match next {
                        Some(next) => from = Some(next),
                        None => break,
                    }
                }
                parts.flush()?;
                let all = VectorFilter::default();
                let (before, after) = (old.count(&all)?, parts.count(&all)?);
                if before != after || after as u64 != copied {
                    return Err(Error::DataDir {
                        path: self.dir.display().to_string(),
                        reason: format!(
                            "splitting its vectors copied {after} of {before} points; the \
                             library is unchanged (run it again)"
                        ),
                    });
                }
                parts.optimize()?;
                copied
            }
        };
        self.save_manifest(|m| {
            m.vector_layout = VectorLayout::Split;
            m.format_version = VectorLayout::Split.format_version();
        })?;
        self.store = Arc::new(parts);
        self.single_edge = None;
        // The last handle: the shard closes (its lock released) before its files go.
        drop(old);
        remove_single_collection(&vectors)?;
        Ok(copied)
    }

    /// The collection spec for a model's vectors.
    pub fn collection_spec(spec: &EmbedderSpec) -> CollectionSpec {
        crate::points::collection_spec(spec.dim)
    }

    /// Pins the model (first embedded ingest) and creates the collection.
    ///
    /// # Errors
    /// [`Error::ModelMismatch`], store errors.
    pub fn adopt_model(&mut self, spec: &EmbedderSpec) -> Result<()> {
        self.check_model(spec)?;
        self.store.ensure(&Self::collection_spec(spec))?;
        if !self.has_vectors() {
            self.save_manifest(|m| m.model = Some(spec.clone()))?;
        }
        Ok(())
    }

    /// Refreshes counts from the stores and saves the manifest.
    ///
    /// # Errors
    /// Store or i/o errors.
    pub fn refresh_counts(&self) -> Result<()> {
        self.keyword.reload()?;
        let states = self.keyword.states()?;
        let fp = self.manifest_lock().model.as_ref().map(|m| m.fingerprint());
        let counts = Counts {
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
        self.save_manifest(|m| m.counts = counts)
    }

    /// Deletes records from every store of the library and returns what was deleted (unknown
    /// ids are skipped).
    ///
    /// Order and purging, so that a deleted record leaves no residue in the data directory:
    /// 1. the vector store drops every point of the records, flushes, and is compacted into a
    ///    fresh generation (qdrant-edge keeps deleted payloads in its WAL otherwise);
    /// 2. tantivy deletes the documents, commits, merges all segments (deleted documents are
    ///    physically dropped, not just tombstoned) and garbage-collects the old segment files;
    /// 3. ingest reports are rewritten without the problems that name the records' files;
    /// 4. images the library holds itself (those a Clarifai archive carried, under
    ///    [`CARRIED_IMAGES`]) are removed; images in the user's own folders are left alone.
    ///
    /// Vectors go first: an interruption between the steps leaves the record visible (and the
    /// deletion can simply be run again) rather than a record whose vectors silently vanished
    /// after it was reported deleted. Needs the index writer: not while an ingest runs.
    ///
    /// # Errors
    /// Store, index or i/o failures; records already purged from a finished step stay purged.
    pub fn delete_records(&self, ids: &[String]) -> Result<Vec<Record>> {
        let records = self.keyword.get_many(ids)?;
        if records.is_empty() {
            return Ok(records);
        }
        let found: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        // Marked first: if anything below is interrupted, the next ingest cannot resurrect a
        // record whose deletion was asked for.
        self.add_tombstones(&records)?;
        if self.has_vectors() {
            self.store
                .delete_where(&VectorFilter::records(found.clone()))?;
            self.store.flush()?;
            self.store.compact()?;
        }
        let mut writer = self.keyword.writer()?;
        for id in &found {
            writer.delete(id);
        }
        writer.commit()?;
        writer.merge_all()?;
        self.keyword.reload()?;
        self.scrub_reports(&records)?;
        self.remove_carried_images(&records)?;
        self.refresh_counts()?;
        Ok(records)
    }

    /// Removes the image files of `records` that live under the library's own
    /// [`CARRIED_IMAGES`] folder.
    fn remove_carried_images(&self, records: &[Record]) -> Result<()> {
        let Ok(carried) = self.dir.join(CARRIED_IMAGES).canonicalize() else {
            return Ok(()); // The library holds no images of its own.
        };
        for r in records {
            let root = Path::new(&r.images_root);
            if root.canonicalize().is_ok_and(|c| c.starts_with(&carried))
                && let Ok(file) = crate::ingest::resolve_inside(root, &r.path)
            {
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&file, e)),
                }
            }
        }
        Ok(())
    }

    /// Removes the files under [`CARRIED_IMAGES`] that no record points at, and returns how
    /// many: images an archive carried for entries that were not kept (withheld because the
    /// image was deleted before, or refused with a problem), or written by an ingest that
    /// failed before its records were committed, and half-written `.partial` files. Only
    /// names the archive reader writes (`{sha256}.{ext}`, `.{sha256}.{ext}.partial`) are
    /// considered; a file some record's path names is kept. Run after an ingest commits.
    ///
    /// # Errors
    /// Index or i/o failures.
    pub fn sweep_carried_images(&self) -> Result<usize> {
        let dir = self.dir.join(CARRIED_IMAGES);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let content_addressed = |n: &str| {
            n.split_once('.').is_some_and(|(stem, ext)| {
                stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) && !ext.is_empty()
            })
        };
        // (path, name when a record may still point at it; None for a `.partial`).
        let mut candidates = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".partial"))
            {
                Some(n) if content_addressed(n) => candidates.push((entry.path(), None)),
                None if content_addressed(&name) => candidates.push((entry.path(), Some(name))),
                _ => {}
            }
        }
        // Every record's path is read only when a carried image might be an orphan.
        let kept = if candidates.iter().any(|(_, name)| name.is_some()) {
            self.keyword.paths()?
        } else {
            Default::default()
        };
        let mut removed = 0;
        for (path, name) in candidates {
            if name.is_some_and(|n| kept.contains(&n)) {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Ok(removed)
    }

    /// Whether an image with this sha256 was deleted from the library (ingest withholds it).
    pub fn is_deleted_image(&self, sha256: &str) -> bool {
        let t = self.tombstones.read().unwrap_or_else(|p| p.into_inner());
        !t.images.is_empty() && t.images.contains(&t.mark(sha256))
    }

    fn add_tombstones(&self, records: &[Record]) -> Result<()> {
        let mut guard = self.tombstones.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        if next.salt.is_empty() {
            let salt: [u8; 32] = rand::random();
            next.salt = hex::encode(salt);
        }
        for r in records {
            let mark = next.mark(&r.sha256);
            next.images.insert(mark);
        }
        let bytes = serde_json::to_vec_pretty(&next).expect("tombstones serialise");
        write_atomic(&self.dir.join(TOMBSTONES_FILE), &bytes)?;
        *guard = next;
        Ok(())
    }

    /// Drops, from every saved ingest report, the problems that name one of these records'
    /// files or ids. Reports are examined as parsed JSON (never as text, where `"`, tabs and
    /// newlines are escaped), and a report is rewritten only when a problem was dropped.
    fn scrub_reports(&self, records: &[Record]) -> Result<()> {
        let dir = self.dir.join("reports");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let names: Vec<&str> = records
            .iter()
            .flat_map(|r| [r.id.as_str(), r.path.as_str(), r.filename.as_str()])
            .filter(|n| !n.is_empty())
            .collect();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let mut report: IngestReport =
                serde_json::from_slice(&bytes).map_err(|e| Error::DataDir {
                    path: path.display().to_string(),
                    reason: format!("ingest report is not readable: {e}"),
                })?;
            let before = report.problems.len();
            report.problems.retain(|p| {
                !names
                    .iter()
                    .any(|n| p.file.contains(n) || p.item.contains(n) || p.reason.contains(n))
            });
            if report.problems.len() == before {
                continue;
            }
            let bytes = serde_json::to_vec_pretty(&report).expect("report serialises");
            write_atomic(&path, &bytes)?;
        }
        Ok(())
    }

    /// Applies `change` to a copy of the manifest, writes it, then makes it the current one.
    fn save_manifest(&self, change: impl FnOnce(&mut Manifest)) -> Result<()> {
        let mut guard = self.manifest.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        change(&mut next);
        next.updated = Utc::now();
        let bytes = serde_json::to_vec_pretty(&next).expect("manifest serialises");
        write_atomic(&self.dir.join("manifest.json"), &bytes)?;
        *guard = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
