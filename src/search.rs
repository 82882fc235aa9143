//! Hybrid ranking for plain-English queries, look-ups and facets over one [`Library`].
//!
//! A query runs two ways and the ranked lists are fused with weighted reciprocal rank fusion
//! (RRF, k = 60 by default; Cormack, Clarke & Büttcher 2009):
//! - keyword: BM25 (tantivy) over labels, captions, file names and metadata text;
//! - vector: the CLIP text embedding (plus a "more like this" image, minus negative texts)
//!   against the `image`, `region` (box crops) and `text` (label/caption) vectors.
//!
//! Every list is taken to a fixed candidate depth that does not depend on the page asked for,
//! so the fused order is the same on every page and a cursor (an offset bound to the query)
//! gives no repeats or gaps. Cursors are `offset.tag`, the tag a keyed hash of the offset and
//! the request (the key, `cursor.key` in the data directory, never leaves it), so a cursor
//! of another request or with an edited offset is refused, and no offset reaches an allocation
//! unless it lies within the ranking depth ([`MAX_DEPTH`] at most). Filters are exact: the keyword side evaluates them in tantivy, the
//! vector side pushes what it can down to the store and checks every hit's payload against the
//! whole filter.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indexer::filter::RecordFilter;
use indexer::keyword::Facets;
use indexer::record::{BoundingBox, DateAxis, Dates, Record, image_point_id};
use indexer::store::{Hit, VectorQuery};
use indexer::{Fault, Library};
use models::{Embedder, Embedding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// Fusion weights per ranked list, and the RRF constant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fusion {
    /// RRF k.
    pub k: f32,
    /// BM25 list.
    pub keyword: f32,
    /// Whole-image vectors.
    pub image: f32,
    /// Box-region vectors.
    pub region: f32,
    /// Label/caption text vectors.
    pub text: f32,
    /// Candidates taken from each list (fixed per query so pages agree).
    pub depth: usize,
}

impl Default for Fusion {
    fn default() -> Self {
        Self {
            k: 60.0,
            keyword: 1.0,
            image: 1.0,
            region: 0.7,
            text: 0.5,
            depth: 1000,
        }
    }
}

impl Fusion {
    /// Parses `keyword=1,image=0.5,k=60,depth=500` over the defaults.
    ///
    /// # Errors
    /// [`SearchError::Invalid`] naming the bad entry.
    pub fn parse(spec: &str) -> SResult<Self> {
        let mut f = Fusion::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                SearchError::Invalid(format!("weight {part:?} is not name=value"))
            })?;
            let v: f32 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    SearchError::Invalid(format!(
                        "weight {key} must be a number >= 0, got {value:?}"
                    ))
                })?;
            match key.trim() {
                "k" => f.k = v.max(1.0),
                "keyword" => f.keyword = v,
                "image" => f.image = v,
                "region" => f.region = v,
                "text" => f.text = v,
                "depth" => f.depth = (v as usize).clamp(10, 10_000),
                other => {
                    return Err(SearchError::Invalid(format!(
                        "unknown weight {other:?} (known: k, keyword, image, region, text, depth)"
                    )));
                }
            }
        }
        Ok(f)
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

/// Rank and score of a hit on one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SideRank {
    /// 1-based rank in that list.
    pub rank: usize,
    /// That list's own score (BM25 or cosine).
    pub score: f32,
}

/// A box that matched the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MatchedBox {
    /// Index in the record's boxes.
    pub index: usize,
    /// The box.
    #[serde(flatten)]
    pub bbox: BoundingBox,
    /// Cosine of its region vector to the query, when it matched by vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// Whether its label shares a word with the query.
    pub label_matched: bool,
}

/// Why a hit is where it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Why {
    /// Fused RRF score.
    pub fused: f32,
    /// BM25 side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<SideRank>,
    /// Whole-image vector side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<SideRank>,
    /// Best box-region vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<SideRank>,
    /// Label/caption text vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<SideRank>,
    /// Label words of the record that matched the query.
    pub matched_labels: Vec<String>,
    /// Caption words of the record that matched the query.
    pub matched_caption_words: Vec<String>,
    /// Negative texts whose words the record's labels or captions contain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched_negatives: Vec<String>,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// Record id.
    pub id: String,
    /// File name.
    pub filename: String,
    /// Path relative to the images root.
    pub path: String,
    /// Dataset.
    pub dataset: String,
    /// Fused score (higher is better).
    pub score: f32,
    /// Labels.
    pub labels: Vec<String>,
    /// Time axes.
    pub dates: Dates,
    /// Boxes that matched (by region vector or label word).
    pub boxes: Vec<MatchedBox>,
    /// Explanation.
    pub why: Why,
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
}

/// Sort and page for a look-up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LookupRequest {
    /// Exact filter (filename and dates are the usual ones).
    pub filter: RecordFilter,
    /// Axis to sort by (default: the first date filter's axis, else ingested).
    pub sort: Option<DateAxis>,
    /// Newest first.
    pub descending: bool,
    /// Page size.
    pub limit: usize,
    /// Cursor.
    pub cursor: Option<String>,
}

/// A page of full records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LookupResponse {
    /// Records of this page, sorted by the axis.
    pub results: Vec<Record>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
    /// Records matched in all.
    pub total: usize,
}

/// The query service over one library and an optional model.
pub struct SearchService {
    library: Arc<Library>,
    embedder: Option<Arc<dyn Embedder>>,
    offline_reason: Option<String>,
    /// Key of cursor tags.
    cursors: CursorKey,
}

impl std::fmt::Debug for SearchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchService")
            .field("library", &self.library)
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
        let cursors = CursorKey::load(library.dir());
        Ok(Self {
            library,
            embedder,
            offline_reason,
            cursors,
        })
    }

    /// The library.
    pub fn library(&self) -> &Arc<Library> {
        &self.library
    }

    /// The model, if one is loaded.
    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    /// Whether vector search is available (a model and vectors).
    pub fn semantic(&self) -> bool {
        self.embedder.is_some() && self.library.has_vectors()
    }

    /// Why semantic search is off, with how to turn it on; `None` when it is on.
    pub fn semantic_notice(&self) -> Option<String> {
        if self.semantic() {
            return None;
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
        self.query_vector(&text, req.like.as_ref(), &negatives)
    }

    /// Runs a search with the vector [`SearchService::query_embedding`] made for `req`.
    ///
    /// # Errors
    /// As [`SearchService::search`].
    pub fn search_with(
        &self,
        req: &SearchRequest,
        query: Option<Embedding>,
    ) -> SResult<SearchResponse> {
        self.search_cancellable(req, query, &Cancel::new())
    }

    /// [`SearchService::search_with`] that stops with [`SearchError::Cancelled`] soon after
    /// `cancel` is cancelled.
    ///
    /// # Errors
    /// As [`SearchService::search`], and [`SearchError::Cancelled`].
    pub fn search_cancellable(
        &self,
        req: &SearchRequest,
        query: Option<Embedding>,
        cancel: &Cancel,
    ) -> SResult<SearchResponse> {
        let (text, negatives) = clean_texts(req)?;
        let limit = page_size(req.limit)?;
        // Every size below comes from `depth` (clamped) and `limit` (at most MAX_LIMIT); the
        // cursor's offset is refused unless it lies within the depth.
        let depth = req.fusion.depth.clamp(MIN_DEPTH, MAX_DEPTH);
        let key = request_key(req);
        let offset = self
            .cursors
            .decode(req.cursor.as_deref(), &key, Some(depth))?;
        if text.trim().is_empty() && req.like.is_none() {
            return Err(SearchError::Invalid(
                "nothing to search for: give a query text or --like (use `lookup` to list records)"
                    .into(),
            ));
        }
        // Compiled once per request (a glob is a regular expression), before any work: a bad
        // pattern is the caller's error whichever lists run.
        let matcher = req.filter.compile()?;
        let fusion = req.fusion;
        let kw = self.library.keyword();
        cancel.check()?;

        // Keyword side.
        // A list with weight 0 cannot change the order: skip its work.
        let keyword_hits = if fusion.keyword > 0.0 {
            kw.search(&text, &req.filter, depth)?
        } else {
            Vec::new()
        };
        let negative_terms: Vec<(String, Vec<String>)> =
            negatives.iter().map(|n| (n.clone(), kw.terms(n))).collect();

        // Vector side.
        let mut image_list: Vec<Hit> = Vec::new();
        let mut region_list: Vec<Hit> = Vec::new();
        let mut text_list: Vec<Hit> = Vec::new();
        let semantic = self.semantic();
        if let Some(query) = query {
            let store = self.library.store();
            let pushed = req.filter.to_vector_filter();
            let over = if req.filter.fully_pushable() { 1 } else { 4 };
            let run = |using: &str| -> SResult<Vec<Hit>> {
                cancel.check()?;
                let hits = store.search(&VectorQuery {
                    using: using.into(),
                    vector: query.as_slice().to_vec(),
                    filter: pushed.clone(),
                    limit: depth.saturating_mul(over),
                    exact: false,
                })?;
                let mut kept = Vec::with_capacity(hits.len().min(depth));
                for (i, h) in hits.into_iter().enumerate() {
                    if i % CANCEL_EVERY == 0 {
                        cancel.check()?;
                    }
                    if matcher.matches(&h.payload) {
                        kept.push(h);
                    }
                }
                Ok(kept)
            };
            if fusion.image > 0.0 {
                image_list = run("image")?;
            }
            // "More like this" alone compares whole images; box regions and caption texts
            // answer words, so they join only when there is query text.
            let has_text = !text.trim().is_empty();
            if fusion.region > 0.0 && has_text {
                region_list = run("region")?;
            }
            if fusion.text > 0.0 && has_text {
                text_list = run("text")?;
            }
        }

        cancel.check()?;
        // Fuse.
        #[derive(Default)]
        struct Acc {
            fused: f32,
            why: Why,
            regions: Vec<(usize, f32)>,
        }
        let mut acc: HashMap<String, Acc> = HashMap::new();
        let k = fusion.k;
        for (i, h) in keyword_hits.iter().enumerate() {
            let a = acc.entry(h.id.clone()).or_default();
            a.fused += fusion.keyword / (k + (i + 1) as f32);
            a.why.keyword = Some(SideRank {
                rank: i + 1,
                score: h.score,
            });
        }
        let mut add_vector_list =
            |list: &[Hit], weight: f32, side: fn(&mut Why) -> &mut Option<SideRank>| {
                let mut rank = 0;
                for h in list {
                    let Some(id) = h.payload.get_str("record_id") else {
                        continue;
                    };
                    let a = acc.entry(id.to_owned()).or_default();
                    if let Some(b) = h.payload.get_i64("box") {
                        a.regions.push((b as usize, h.score));
                    }
                    let slot = side(&mut a.why);
                    if slot.is_some() {
                        continue; // a record counts once per list, at its best rank
                    }
                    rank += 1;
                    a.fused += weight / (k + rank as f32);
                    *slot = Some(SideRank {
                        rank,
                        score: h.score,
                    });
                }
            };
        add_vector_list(&image_list, fusion.image, |w| &mut w.image);
        add_vector_list(&region_list, fusion.region, |w| &mut w.region);
        add_vector_list(&text_list, fusion.text, |w| &mut w.text);

        // The liked record is the query, not an answer (as Elasticsearch's more_like_this and
        // Qdrant's recommend do).
        if let Some(Like::Record(id)) = &req.like {
            acc.remove(id);
        }
        let mut ranked: Vec<(String, Acc)> = acc.into_iter().collect();
        ranked.sort_by(|a, b| b.1.fused.total_cmp(&a.1.fused).then_with(|| a.0.cmp(&b.0)));
        let total = ranked.len().min(depth);
        let page: Vec<(String, Acc)> = ranked
            .into_iter()
            .take(total)
            .skip(offset)
            .take(limit)
            .collect();
        let next = offset.saturating_add(page.len());
        let next_cursor =
            (next < total && !page.is_empty()).then(|| self.cursors.encode(next, &key));

        let query_terms = kw.terms(&text);
        let mut results = Vec::with_capacity(page.len());
        for (id, mut a) in page {
            cancel.check()?;
            let Some(record) = kw.get(&id)? else { continue };
            a.why.fused = a.fused;
            let (labels_m, captions_m) = matched_words(kw, &record, &query_terms);
            a.why.matched_labels = labels_m;
            a.why.matched_caption_words = captions_m;
            a.why.matched_negatives = negative_terms
                .iter()
                .filter(|(_, terms)| {
                    let (l, c) = matched_words(kw, &record, terms);
                    !l.is_empty() || !c.is_empty()
                })
                .map(|(n, _)| n.clone())
                .collect();
            let boxes = matched_boxes(kw, &record, &query_terms, &a.regions);
            results.push(SearchHit {
                id: record.id.clone(),
                filename: record.filename.clone(),
                path: record.path.clone(),
                dataset: record.dataset.clone(),
                score: a.fused,
                labels: record.labels.clone(),
                dates: record.dates.clone(),
                boxes,
                why: a.why,
            });
        }
        Ok(SearchResponse {
            results,
            next_cursor,
            semantic,
            notice: self.semantic_notice(),
        })
    }

    /// The query vector: text, plus a liked image, minus negatives; `None` without vectors.
    fn query_vector(
        &self,
        text: &str,
        like: Option<&Like>,
        negatives: &[String],
    ) -> SResult<Option<Embedding>> {
        let Some(embedder) = self
            .embedder
            .as_ref()
            .filter(|_| self.library.has_vectors())
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
        if !text.trim().is_empty() {
            let t = embedder.embed_texts(&[text])?.remove(0);
            add(&mut q, t.as_slice(), 1.0);
            parts += 1;
        }
        match like {
            Some(Like::Record(id)) => {
                let v = self
                    .library
                    .store()
                    .vector(image_point_id(id), "image")?
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
        if !negatives.is_empty() {
            let refs: Vec<&str> = negatives.iter().map(String::as_str).collect();
            let n = embedder.embed_texts(&refs)?;
            let w = 0.5 / n.len() as f32;
            for v in &n {
                add(&mut q, v.as_slice(), -w * parts as f32);
            }
        }
        Ok(Some(Embedding::normalized(q)))
    }

    /// Full records by filename and/or date, sorted by date.
    ///
    /// # Errors
    /// [`SearchError::Invalid`] for a bad cursor or page size.
    pub fn lookup(&self, req: &LookupRequest) -> SResult<LookupResponse> {
        let limit = page_size(req.limit)?;
        let key = format!(
            "lookup:{}",
            serde_json::to_string(&(&req.filter, req.sort, req.descending)).unwrap_or_default()
        );
        // A look-up's list is the whole filtered set: its offsets are bounded by the tag alone
        // (they only ever skip, never allocate).
        let offset = self.cursors.decode(req.cursor.as_deref(), &key, None)?;
        let axis = req
            .sort
            .or_else(|| req.filter.dates.first().map(|r| r.axis))
            .unwrap_or(DateAxis::Ingested);
        let kw = self.library.keyword();
        let mut sorted = kw.sorted_by_date(&req.filter, axis)?;
        if req.descending {
            // Newest first, records without a date still last.
            let split = sorted
                .iter()
                .position(|(d, _)| d.is_none())
                .unwrap_or(sorted.len());
            sorted[..split].reverse();
        }
        let total = sorted.len();
        let ids: Vec<String> = sorted
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(_, id)| id)
            .collect();
        let results = kw.get_many(&ids)?;
        let next = offset.saturating_add(ids.len());
        Ok(LookupResponse {
            next_cursor: (next < total && !ids.is_empty()).then(|| self.cursors.encode(next, &key)),
            results,
            total,
        })
    }

    /// Facet counts over the filtered set.
    ///
    /// # Errors
    /// Pattern or index errors.
    pub fn facets(&self, filter: &RecordFilter) -> SResult<Facets> {
        Ok(self.library.keyword().facets(filter)?)
    }
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

fn page_size(limit: usize) -> SResult<usize> {
    match limit {
        0 => Ok(20),
        n if n > MAX_LIMIT => Err(SearchError::Invalid(format!(
            "limit {n} is above the maximum page size {MAX_LIMIT}"
        ))),
        n => Ok(n),
    }
}

/// Identity of a request for cursor binding: everything but the cursor and page size.
fn request_key(req: &SearchRequest) -> String {
    let key = serde_json::json!({
        "text": req.text, "like": req.like, "not": req.not, "filter": req.filter,
        "fusion": req.fusion,
    });
    key.to_string()
}

/// The secret that signs cursors (see [`CursorKey::load`]).
struct CursorKey([u8; 32]);

impl CursorKey {
    /// The tag of a cursor: a keyed sha256 of the offset and the request, so neither can be
    /// changed without the library's cursor key.
    fn tag(&self, offset: usize, key: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(offset.to_string().as_bytes());
        h.update(b"\n");
        h.update(key.as_bytes());
        let mut tag = hex::encode(h.finalize());
        tag.truncate(TAG_HEX);
        tag
    }

    /// A cursor is `<offset>.<tag>`: opaque to users, checkable by us.
    fn encode(&self, offset: usize, key: &str) -> String {
        format!("{offset}.{}", self.tag(offset, key))
    }

    /// The offset of `cursor` (0 without one), refused unless it is below `depth` (when the
    /// list has one) and its tag is the one this library gives that offset of this request.
    fn decode(&self, cursor: Option<&str>, key: &str, depth: Option<usize>) -> SResult<usize> {
        let Some(c) = cursor.filter(|c| !c.is_empty()) else {
            return Ok(0);
        };
        let bad = || {
            SearchError::Invalid(format!(
                "cursor {:?} is not valid for this request (pass the next_cursor of the \
                 previous page of the same request)",
                indexer::filter::shorten(c, 64)
            ))
        };
        let (offset, tag) = c.split_once('.').ok_or_else(bad)?;
        // Only the form we issue: decimal digits, no sign, no leading zero.
        if offset.is_empty()
            || offset.len() > 20
            || !offset.bytes().all(|b| b.is_ascii_digit())
            || (offset.len() > 1 && offset.starts_with('0'))
        {
            return Err(bad());
        }
        let offset: u64 = offset.parse().map_err(|_| bad())?;
        if let Some(depth) = depth
            && usize::try_from(offset).map_or(true, |o| o >= depth)
        {
            return Err(SearchError::Invalid(format!(
                "cursor offset {offset} is beyond the ranking depth {depth} of this request"
            )));
        }
        let offset = usize::try_from(offset).map_err(|_| bad())?;
        let expected = self.tag(offset, key);
        // Compare as bytes in constant time: the tag is a secret-keyed value.
        let same = tag.len() == expected.len()
            && tag
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(bad());
        }
        Ok(offset)
    }

    /// The library's cursor key: `cursor.key` in the data directory (32 random bytes in hex,
    /// mode 0600), created on first use. When it cannot be read or created (a read-only
    /// directory), a key of this process is used: cursors then work within one process only.
    fn load(dir: &Path) -> Self {
        Self(load_cursor_key(dir))
    }
}

fn load_cursor_key(dir: &Path) -> [u8; 32] {
    let path = dir.join("cursor.key");
    let parse = |text: &str| -> Option<[u8; 32]> {
        let bytes = hex::decode(text.trim()).ok()?;
        bytes.try_into().ok()
    };
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Some(key) = parse(&text)
    {
        return key;
    }
    let fresh: [u8; 32] = rand::random();
    match create_key_file(&path, &fresh) {
        Ok(()) => fresh,
        // Another process made it first: use theirs.
        Err(_) => match std::fs::read_to_string(&path)
            .ok()
            .as_deref()
            .and_then(parse)
        {
            Some(key) => key,
            None => {
                tracing::warn!(path = %path.display(), "cannot keep a cursor key; cursors will work within this process only");
                fresh
            }
        },
    }
}

/// Writes `key` to `path` unless the file exists (a private temp file, then a hard link, so a
/// reader never sees half a key and two processes never both win).
fn create_key_file(path: &Path, key: &[u8; 32]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!(
        "{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(hex::encode(key).as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Label and caption words of `record` whose terms are among `terms`.
fn matched_words(
    kw: &indexer::keyword::KeywordIndex,
    record: &Record,
    terms: &[String],
) -> (Vec<String>, Vec<String>) {
    if terms.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let hit = |word: &str| kw.terms(word).iter().any(|t| terms.contains(t));
    let mut labels: Vec<String> = record
        .labels
        .iter()
        .chain(&record.supercategories)
        .filter(|l| hit(l))
        .cloned()
        .collect();
    labels.dedup();
    let mut words: Vec<String> = Vec::new();
    // Each distinct word is tokenised once, however long the captions are.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for c in &record.captions {
        for w in c
            .split(|ch: char| !ch.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let lw = w.to_lowercase();
            if seen.insert(lw.clone()) && hit(&lw) {
                words.push(lw);
            }
        }
    }
    (labels, words)
}

/// Boxes that matched by region vector (best similarity) or by label word, best first.
fn matched_boxes(
    kw: &indexer::keyword::KeywordIndex,
    record: &Record,
    terms: &[String],
    regions: &[(usize, f32)],
) -> Vec<MatchedBox> {
    let mut best: BTreeMap<usize, f32> = BTreeMap::new();
    for &(i, s) in regions {
        let e = best.entry(i).or_insert(s);
        *e = e.max(s);
    }
    let mut out: Vec<MatchedBox> = Vec::new();
    // Each distinct label is tokenised once, however many boxes carry it.
    let mut label_hits: HashMap<&str, bool> = HashMap::new();
    for (i, b) in record.boxes.iter().enumerate() {
        let label_matched = !terms.is_empty()
            && *label_hits
                .entry(b.label.as_str())
                .or_insert_with(|| kw.terms(&b.label).iter().any(|t| terms.contains(t)));
        let similarity = best.get(&i).copied();
        if label_matched || similarity.is_some() {
            out.push(MatchedBox {
                index: i,
                bbox: b.clone(),
                similarity,
                label_matched,
            });
        }
    }
    out.sort_by(|a, b| {
        b.label_matched
            .cmp(&a.label_matched)
            .then(
                b.similarity
                    .unwrap_or(-1.0)
                    .total_cmp(&a.similarity.unwrap_or(-1.0)),
            )
            .then(a.index.cmp(&b.index))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_is_bound_to_its_request() {
        let k = CursorKey([7; 32]);
        let c = k.encode(40, "a");
        assert_eq!(k.decode(Some(&c), "a", Some(1000)).unwrap(), 40);
        assert!(k.decode(Some(&c), "b", Some(1000)).is_err());
        assert!(k.decode(Some("garbage"), "a", Some(1000)).is_err());
        assert_eq!(k.decode(None, "a", Some(1000)).unwrap(), 0);
        // Another library's key does not accept it.
        assert!(
            CursorKey([8; 32])
                .decode(Some(&c), "a", Some(1000))
                .is_err()
        );
    }

    #[test]
    fn a_cursor_tag_covers_its_offset() {
        let k = CursorKey([7; 32]);
        let c = k.encode(40, "a");
        let tag = c.split_once('.').unwrap().1;
        for forged in [
            format!("41.{tag}"),
            format!("040.{tag}"),
            format!("+40.{tag}"),
        ] {
            assert!(
                k.decode(Some(&forged), "a", Some(1000)).is_err(),
                "{forged}"
            );
        }
    }

    #[test]
    fn a_cursor_offset_at_or_beyond_the_depth_is_refused_before_anything_else() {
        let k = CursorKey([7; 32]);
        for offset in [1000u64, 1_000_000_000_000, u64::MAX] {
            let c = format!("{offset}.{}", k.tag(0, "a"));
            let e = k.decode(Some(&c), "a", Some(1000)).unwrap_err().to_string();
            assert!(e.contains("beyond the ranking depth 1000"), "{e}");
        }
        // Larger than u64: not a number we take.
        let e = k
            .decode(Some("99999999999999999999999.abc"), "a", Some(1000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid"), "{e}");
        // A look-up's list has no depth: the tag alone bounds it.
        let c = k.encode(5000, "a");
        assert_eq!(k.decode(Some(&c), "a", None).unwrap(), 5000);
    }

    #[test]
    fn a_huge_cursor_is_not_echoed_in_full() {
        let k = CursorKey([7; 32]);
        let c = "9".repeat(100_000);
        let e = k.decode(Some(&c), "a", Some(1000)).unwrap_err().to_string();
        assert!(e.len() < 300, "{} bytes", e.len());
    }

    #[test]
    fn the_cursor_key_is_kept_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_cursor_key(dir.path());
        let b = load_cursor_key(dir.path());
        assert_eq!(a, b, "the second process reads the first one's key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("cursor.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["cursor.key"]);
    }

    #[test]
    fn fusion_weights_parse_and_reject_nonsense() {
        let f = Fusion::parse("keyword=2, image=0.5,k=10").unwrap();
        assert_eq!((f.keyword, f.image, f.k), (2.0, 0.5, 10.0));
        assert!(Fusion::parse("keyword=-1").is_err());
        assert!(Fusion::parse("colour=1").is_err());
        assert!(Fusion::parse("keyword").is_err());
    }

    #[test]
    fn long_text_is_refused_and_control_characters_dropped() {
        assert!(clean_text(&"a".repeat(MAX_QUERY_CHARS + 1), "query").is_err());
        assert_eq!(clean_text("a\u{0}b\nc", "query").unwrap(), "a b c");
    }
}
