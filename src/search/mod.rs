//! Hybrid ranking for plain-English queries, look-ups and facets over one [`Library`].
//!
//! A query runs two ways and the ranked lists are fused with weighted reciprocal rank fusion
//! (RRF, k = 60 by default; Cormack, Clarke & Büttcher 2009):
//! - keyword: BM25 (tantivy) over labels, captions, file names and metadata text;
//! - vector: the CLIP text embedding (plus a "more like this" image, minus negative texts)
//!   against the `image`, `region` (box crops) and `text` (label/caption) vectors.
//!
//! By default the candidate depth is sized to the page (`cursor::page_tiers`: lists 500 deep
//! for the first 100 results when three or four lists run, 200 deep for the first 40 when one
//! or two do, deeper for later pages); every page is a slice of one fused
//! sequence, built tier by tier, so a cursor (an offset bound to the query) gives no repeats or
//! gaps whatever the page sizes. A fixed depth (`Fusion::depth`) takes one ranking that deep.
//! Cursors are `offset.tag`, the tag a keyed hash of the offset and the request (the key,
//! `cursor.key` in the data directory, never leaves it), so a cursor of another request or with
//! an edited offset is refused, and no offset reaches an allocation unless it lies within the
//! ranking depth ([`MAX_DEPTH`] at most). Filters are exact: the keyword side evaluates them in
//! tantivy, the vector side pushes what it can down to the store and checks every hit's payload
//! against the whole filter.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use indexer::filter::RecordFilter;
use indexer::keyword::Facets;
use indexer::points::{VectorName, image_point_id};
use indexer::record::{BoundingBox, Dates, Record};
use indexer::store::{Hit, VectorQuery};
use indexer::{Fault, Library};
use models::{Embedder, Embedding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod catalog;
mod cursor;
mod explain;
mod fusion;
mod rrf;

use catalog::page_size;
pub use catalog::{Catalog, LookupRequest, LookupResponse};
use cursor::request_key;
pub use explain::{MatchedBox, SearchHit, SideRank, Why};
pub use fusion::Fusion;

/// Longest query text accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;
/// Most negative texts per query.
pub const MAX_NEGATIVES: usize = 8;
/// Largest page.
pub const MAX_LIMIT: usize = 500;
/// Deepest ranked list (candidates per list); `depth` weights are clamped to
/// [`MIN_DEPTH`]`..=MAX_DEPTH`, and every page lies within the depth.
pub const MAX_DEPTH: usize = 10_000;
/// Shallowest ranked list.
pub const MIN_DEPTH: usize = 10;
/// Hex digits of a cursor's tag (64 bits of a keyed sha256).
const TAG_HEX: usize = 16;
/// Payload checks between two looks at the cancellation flag.
const CANCEL_EVERY: usize = 64;

/// Errors of the query service.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A request the caller must fix.
    #[error("{0}")]
    Invalid(String),
    /// The library cannot answer it (e.g. semantic search without vectors).
    #[error("{0}")]
    Unavailable(String),
    /// Lower layers failed.
    #[error(transparent)]
    Indexer(#[from] indexer::Error),
    /// The model failed.
    #[error(transparent)]
    Embed(#[from] models::EmbedError),
    /// The search was stopped by its [`Cancel`] (its request timed out or was abandoned).
    #[error("{0}")]
    Cancelled(String),
}

impl SearchError {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            SearchError::Invalid(_) | SearchError::Unavailable(_) => Fault::User,
            // Not the caller's input: the server gave up on it (an HTTP 503).
            SearchError::Cancelled(_) => Fault::Internal,
            SearchError::Indexer(e) => e.fault(),
            SearchError::Embed(e) => e.fault(),
        }
    }
}

impl From<indexer::keyword::KeywordError> for SearchError {
    fn from(e: indexer::keyword::KeywordError) -> Self {
        SearchError::Indexer(e.into())
    }
}

impl From<indexer::store::StoreError> for SearchError {
    fn from(e: indexer::store::StoreError) -> Self {
        SearchError::Indexer(e.into())
    }
}

impl From<indexer::filter::PatternError> for SearchError {
    fn from(e: indexer::filter::PatternError) -> Self {
        SearchError::Invalid(e.to_string())
    }
}

type SResult<T> = Result<T, SearchError>;

/// Stops a running search: set by whoever gave up on it (an HTTP handler whose request timed
/// out drops its [`CancelOnDrop`]), or past a deadline. The search looks at it between
/// candidate lists, every `CANCEL_EVERY` payload checks and before each explained hit, and
/// returns [`SearchError::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Cancel {
    /// Never cancelled until [`Cancel::cancel`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled at `deadline` at the latest.
    pub fn with_deadline(deadline: Instant) -> Self {
        Self {
            flag: Arc::default(),
            deadline: Some(deadline),
        }
    }

    /// Cancels every search holding a clone of this.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Whether the work should stop.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// A guard that cancels when dropped (hold it in the future that awaits the search).
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }

    fn check(&self) -> SResult<()> {
        if self.is_cancelled() {
            return Err(SearchError::Cancelled(
                "the search was stopped: it took longer than the server's timeout".into(),
            ));
        }
        Ok(())
    }
}

/// Cancels its [`Cancel`] when dropped, e.g. when a timed-out request's future is dropped
/// (after the work has finished this changes nothing).
#[derive(Debug)]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// "More like this": a record of the library, an image file, or an uploaded image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Like {
    /// A record id.
    Record(String),
    /// An image file.
    Image(PathBuf),
    /// An image already decoded by the caller (an HTTP upload).
    #[serde(skip_deserializing)]
    Upload(UploadedImage),
}

/// A decoded uploaded image. Only its content hash takes part in the request's identity (and so
/// in cursors): uploading the same bytes again continues the same result list.
#[derive(Debug, Clone)]
pub struct UploadedImage {
    /// sha256 of the uploaded bytes, hex.
    pub sha256: String,
    /// The pixels.
    pub image: Arc<image::RgbImage>,
}

impl PartialEq for UploadedImage {
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256
    }
}

impl Serialize for UploadedImage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.sha256)
    }
}

/// A search.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchRequest {
    /// Plain-English query.
    pub text: String,
    /// More like this.
    pub like: Option<Like>,
    /// Texts to push results away from.
    pub not: Vec<String>,
    /// Exact filter.
    pub filter: RecordFilter,
    /// Page size.
    pub limit: usize,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
    /// Fusion settings.
    pub fusion: Fusion,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResponse {
    /// Results of this page.
    pub results: Vec<SearchHit>,
    /// Cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
    /// Whether vectors took part.
    pub semantic: bool,
    /// A notice for the user (e.g. why semantic search is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Where the search spent its time (for metrics; not part of the answer).
    #[serde(skip)]
    pub stages: StageTimes,
}

/// Time a search spent in each stage, summed over the rankings it ran (a page past the first
/// tier ranks again, deeper). The query vector is made before, by the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// BM25 over labels and captions, with the filter.
    pub keyword: std::time::Duration,
    /// The vector lists (one `search_many` call) and their payload check.
    pub vectors: std::time::Duration,
    /// Reciprocal-rank fusion and sorting.
    pub fuse: std::time::Duration,
    /// Reading the page's records and explaining each hit.
    pub records: std::time::Duration,
    /// The deepest any ranking of the search took its lists (what its cost grows with).
    pub deepest: usize,
}

impl StageTimes {
    /// The stages by name, as `/metrics` labels them.
    pub fn named(&self) -> [(&'static str, std::time::Duration); 4] {
        [
            ("keyword", self.keyword),
            ("vectors", self.vectors),
            ("fuse", self.fuse),
            ("records", self.records),
        ]
    }
}

/// The query service over one library and an optional model.
pub struct SearchService {
    /// The library and its cursor key (what needs no model).
    catalog: Catalog,
    embedder: Option<Arc<dyn Embedder>>,
    offline_reason: Option<String>,
    /// Rankings of this service running now, searches waiting to rank, and the cores: a
    /// ranking that finds fewer rankings than cores running (itself included) and none waiting
    /// runs its keyword list on a second thread beside its vector lists (see
    /// `SearchService::ranked`).
    lanes: Lanes,
}

/// Counts the rankings running at once and the searches waiting to rank, to tell whether a
/// core is spare.
#[derive(Debug)]
pub(crate) struct Lanes {
    running: AtomicUsize,
    waiting: AtomicUsize,
    cores: usize,
}

impl Lanes {
    fn new() -> Self {
        Self::with_cores(std::thread::available_parallelism().map_or(1, usize::from))
    }

    fn with_cores(cores: usize) -> Self {
        Self {
            running: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            cores: cores.max(1),
        }
    }

    /// Counts a ranking until the guard drops; says whether a core was spare for it: fewer
    /// rankings running than cores (itself included) and no search waiting to rank.
    pub(crate) fn enter(&self) -> (LaneGuard<'_>, bool) {
        let before = self.running.fetch_add(1, Ordering::Relaxed);
        let spare = before + 1 < self.cores && self.waiting.load(Ordering::Relaxed) == 0;
        (LaneGuard(&self.running), spare)
    }

    /// Counts a search waiting for its turn to rank until the guard drops.
    pub(crate) fn wait(&self) -> LaneGuard<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        LaneGuard(&self.waiting)
    }
}

/// A ranking running, or a search waiting to rank ([`SearchService::waiting`]), counted until
/// this drops.
#[derive(Debug)]
pub struct LaneGuard<'a>(&'a AtomicUsize);

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for SearchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchService")
            .field("library", &self.catalog.library)
            .field("semantic", &self.semantic())
            .finish_non_exhaustive()
    }
}

impl SearchService {
    /// A service; `embedder` must be the library's model (checked), `offline_reason` says why
    /// there is none.
    ///
    /// # Errors
    /// [`indexer::Error::ModelMismatch`].
    pub fn new(
        library: Arc<Library>,
        embedder: Option<Arc<dyn Embedder>>,
        offline_reason: Option<String>,
    ) -> SResult<Self> {
        if let Some(e) = &embedder {
            library.check_model(e.spec())?;
        }
        Ok(Self {
            catalog: Catalog::new(library),
            embedder,
            offline_reason,
            lanes: Lanes::new(),
        })
    }

    /// The same service with its rankings sharing `cores` cores (default: the machine's). A
    /// ranking that finds fewer rankings running than cores and no search
    /// [`waiting`](SearchService::waiting) runs its keyword list on a second thread beside its
    /// vector lists; with `cores` 1 every ranking runs its lists one after the other. The
    /// answers are the same either way.
    #[must_use]
    pub fn with_cores(mut self, cores: usize) -> Self {
        self.lanes = Lanes::with_cores(cores);
        self
    }

    /// Counts a search waiting for its turn to rank (a front end's queue for its ranking
    /// slots) until the guard drops: while any waits, rankings run their lists in turn, since
    /// every core will be needed for the searches queued.
    pub fn waiting(&self) -> LaneGuard<'_> {
        self.lanes.wait()
    }

    /// The library.
    pub fn library(&self) -> &Arc<Library> {
        &self.catalog.library
    }

    /// Look-ups and facets: the part of the service that needs no model.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The model, if one is loaded.
    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    /// Whether vector search is available (a model and vectors).
    pub fn semantic(&self) -> bool {
        self.embedder.is_some() && self.catalog.library.has_vectors()
    }

    /// Why the model's vectors carry no meaning, when it says so ([`Embedder::untrained`]):
    /// query text is then ranked by keywords alone, and only "more like this" uses vectors.
    pub fn untrained(&self) -> Option<&str> {
        self.embedder.as_deref().and_then(|e| e.untrained())
    }

    /// Why semantic search is off or limited, with how to turn it on; `None` when it is on.
    pub fn semantic_notice(&self) -> Option<String> {
        if self.semantic() {
            let why = self.untrained()?;
            let model = self.embedder.as_ref().map(|e| e.spec().model_id.as_str());
            return Some(format!(
                "the model {} is untrained: {why}. Its vectors carry no meaning, so query text \
                 is ranked by keywords (BM25) alone and only \"more like this\" compares \
                 images through it. For semantic search, ingest with a real CLIP: \
                 `imagelens --model /path/to/clip-folder ingest ...` (or a hub id with network \
                 access)",
                model.unwrap_or("in use")
            ));
        }
        let why = if self.embedder.is_none() {
            self.offline_reason
                .clone()
                .unwrap_or_else(|| "no model is loaded".into())
        } else {
            "this library has no vectors yet".into()
        };
        Some(format!(
            "semantic search is off ({why}); keyword search, filters and look-ups still work. \
             To turn it on, run `imagelens --model /path/to/clip-folder ingest ...` (or a hub id \
             with network access) so the vectors are added"
        ))
    }

    /// Runs a search.
    ///
    /// # Errors
    /// [`SearchError::Invalid`] for bad input (too long, bad cursor, nothing to search for),
    /// [`SearchError::Unavailable`] for "more like this" without vectors.
    pub fn search(&self, req: &SearchRequest) -> SResult<SearchResponse> {
        let query = self.query_embedding(req)?;
        self.search_with(req, query)
    }

    /// The model's part of a search: the query vector (text, plus a liked image, minus negative
    /// texts), or `None` when vectors take no part. Split from [`SearchService::search_with`]
    /// so a server can bound concurrent embedding without bounding the rest of the search.
    ///
    /// # Errors
    /// As [`SearchService::search`], for the query's texts and "more like this".
    pub fn query_embedding(&self, req: &SearchRequest) -> SResult<Option<Embedding>> {
        let (text, negatives) = clean_texts(req)?;
        // An untrained model's text vectors are noise: they take no part (see `untrained`).
        let words = self.untrained().is_none();
        self.query_vector(&text, req.like.as_ref(), &negatives, words)
    }

    /// The query vector a trained model would be asked for, made even when the model says it
    /// is untrained: for `imagelens eval`, which measures every list (an untrained model's at
    /// chance) whatever searches use. Searches use [`SearchService::query_embedding`].
    ///
    /// # Errors
    /// As [`SearchService::query_embedding`].
    pub fn measured_query_embedding(&self, req: &SearchRequest) -> SResult<Option<Embedding>> {
        let (text, negatives) = clean_texts(req)?;
        self.query_vector(&text, req.like.as_ref(), &negatives, true)
    }

    /// The query vector: text (when `words`), plus a liked image, minus negatives (when
    /// `words`); `None` without vectors or when nothing is left to embed.
    fn query_vector(
        &self,
        text: &str,
        like: Option<&Like>,
        negatives: &[String],
        words: bool,
    ) -> SResult<Option<Embedding>> {
        let Some(embedder) = self
            .embedder
            .as_ref()
            .filter(|_| self.catalog.library.has_vectors())
        else {
            if like.is_some() {
                return Err(SearchError::Unavailable(
                    self.semantic_notice().unwrap_or_default().replace(
                        "semantic search is off",
                        "more like this needs vectors, but semantic search is off",
                    ),
                ));
            }
            return Ok(None);
        };
        let dim = embedder.spec().dim;
        let mut q = vec![0.0f32; dim];
        let mut parts = 0;
        if words && !text.trim().is_empty() {
            let t = embedder.embed_texts(&[text])?.remove(0);
            add(&mut q, t.as_slice(), 1.0);
            parts += 1;
        }
        match like {
            Some(Like::Record(id)) => {
                let v = self
                    .catalog
                    .library
                    .store()
                    .vector(image_point_id(id), VectorName::Image.as_str())?
                    .ok_or_else(|| {
                        SearchError::Invalid(format!(
                            "no record with id {:?} has an image vector",
                            indexer::filter::shorten(id, 64)
                        ))
                    })?;
                add(&mut q, &v, 1.0);
                parts += 1;
            }
            Some(Like::Image(path)) => {
                let img = models::preprocess::open(path, &Default::default()).map_err(|e| {
                    SearchError::Invalid(format!("cannot use {} for --like: {e}", path.display()))
                })?;
                let v = embedder.embed_images(&[img])?.remove(0);
                add(&mut q, v.as_slice(), 1.0);
                parts += 1;
            }
            Some(Like::Upload(upload)) => {
                let v = embedder
                    .embed_images(std::slice::from_ref(upload.image.as_ref()))?
                    .remove(0);
                add(&mut q, v.as_slice(), 1.0);
                parts += 1;
            }
            None => {}
        }
        if parts == 0 {
            return Ok(None);
        }
        if words && !negatives.is_empty() {
            let refs: Vec<&str> = negatives.iter().map(String::as_str).collect();
            let n = embedder.embed_texts(&refs)?;
            let w = 0.5 / n.len() as f32;
            for v in &n {
                add(&mut q, v.as_slice(), -w * parts as f32);
            }
        }
        Ok(Some(Embedding::normalized(q)))
    }

    /// Facet counts over a search's candidate set: the records the fused ranking of `req`
    /// (text, "more like this", negatives, filter and weights; its page, cursor and depth are
    /// not used) holds when every list is taken [`FACET_DEPTH`] deep, at most [`FACET_DEPTH`]
    /// of them. These are the records a person can page through with that search at
    /// `depth=1000`. `query` is [`SearchService::query_embedding`] of `req`.
    ///
    /// # Errors
    /// As [`SearchService::search`], and [`SearchError::Cancelled`].
    pub fn query_facets(
        &self,
        req: &SearchRequest,
        query: Option<Embedding>,
        cancel: &Cancel,
    ) -> SResult<QueryFacets> {
        let (text, _) = clean_texts(req)?;
        if text.trim().is_empty() && req.like.is_none() {
            return Err(SearchError::Invalid(
                "query facets need a query text or a liked record (without one, the facets \
                 count the whole filtered set)"
                    .into(),
            ));
        }
        let matcher = req.filter.compile()?;
        let stages = std::cell::Cell::new(StageTimes::default());
        let ranking = self.ranked(
            &text,
            req,
            query.as_ref(),
            &matcher,
            FACET_DEPTH,
            cancel,
            &stages,
        )?;
        let ids: Vec<String> = ranking
            .ranked
            .into_iter()
            .take(FACET_DEPTH)
            .map(|(id, _)| id)
            .collect();
        cancel.check()?;
        let facets = self
            .catalog
            .library
            .keyword()
            .facets_within(&req.filter, &ids)?;
        Ok(QueryFacets {
            facets,
            candidates: ids.len(),
        })
    }
}

/// How deep a search's candidate set goes for [`SearchService::query_facets`]: the records a
/// person can page through (50 pages of 20).
pub const FACET_DEPTH: usize = 1_000;

/// Facet counts over a search's candidate set.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryFacets {
    /// The counts (its `total` is the candidates still in the library when counted).
    pub facets: Facets,
    /// Records the ranking held (at most [`FACET_DEPTH`]).
    pub candidates: usize,
}

fn add(acc: &mut [f32], v: &[f32], w: f32) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += w * b;
    }
}

/// The query text and negative texts, checked and cleaned.
fn clean_texts(req: &SearchRequest) -> SResult<(String, Vec<String>)> {
    let text = clean_text(&req.text, "query")?;
    if req.not.len() > MAX_NEGATIVES {
        return Err(SearchError::Invalid(format!(
            "at most {MAX_NEGATIVES} negative texts are allowed, got {}",
            req.not.len()
        )));
    }
    let negatives = req
        .not
        .iter()
        .map(|n| clean_text(n, "negative text"))
        .collect::<SResult<_>>()?;
    Ok((text, negatives))
}

/// Rejects over-long text and removes control characters (they carry no meaning in a query).
fn clean_text(text: &str, what: &str) -> SResult<String> {
    let n = text.chars().count();
    if n > MAX_QUERY_CHARS {
        return Err(SearchError::Invalid(format!(
            "{what} is {n} characters long; the limit is {MAX_QUERY_CHARS}"
        )));
    }
    Ok(text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect())
}

#[cfg(test)]
mod tests;
