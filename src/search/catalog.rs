//! What needs no model: look-ups by filename and date, facet counts.
//!
//! A [`Catalog`] is the library plus its cursor key. The CLI's `lookup` and `facets` open one
//! without loading a model; [`SearchService`](super::SearchService) holds one and adds ranking.

use std::sync::Arc;

use indexer::Library;
use indexer::filter::RecordFilter;
use indexer::keyword::Facets;
use indexer::record::{DateAxis, Record};
use serde::{Deserialize, Serialize};

use super::cursor::CursorKey;
use super::{MAX_LIMIT, SResult, SearchError};

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

/// Look-ups and facets over one library.
pub struct Catalog {
    pub(super) library: Arc<Library>,
    /// Key of cursor tags (look-ups' and searches').
    pub(super) cursors: CursorKey,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// The catalog of `library` (its cursor key is read from, or created in, its directory).
    pub fn new(library: Arc<Library>) -> Self {
        let cursors = CursorKey::load(library.dir());
        Self { library, cursors }
    }

    /// The library.
    pub fn library(&self) -> &Arc<Library> {
        &self.library
    }

    /// Full records by filename and/or date, sorted by date (then id; records without the
    /// date last, also when newest first).
    ///
    /// # Errors
    /// [`SearchError::Invalid`] for a bad cursor or page size.
    pub fn lookup(&self, req: &LookupRequest) -> SResult<LookupResponse> {
        let limit = page_size(req.limit)?;
        let key = format!(
            "lookup:{}",
            serde_json::to_string(&(&req.filter, req.sort, req.descending)).unwrap_or_default()
        );
        // A look-up's list is the whole filtered set: its offset is bounded by the tag alone (a
        // cursor is only issued for an offset below the set's size), and it sizes the heap of
        // `offset + limit` documents each segment keeps while the page is found.
        let offset = self.cursors.decode(req.cursor.as_deref(), &key, None)?;
        let axis = req
            .sort
            .or_else(|| req.filter.dates.first().map(|r| r.axis))
            .unwrap_or(DateAxis::Ingested);
        let kw = self.library.keyword();
        let page = kw.page_by_date(&req.filter, axis, req.descending, offset, limit)?;
        let results = kw.get_many(&page.ids)?;
        let next = offset.saturating_add(page.ids.len());
        Ok(LookupResponse {
            next_cursor: (next < page.total && !page.ids.is_empty())
                .then(|| self.cursors.encode(next, &key)),
            results,
            total: page.total,
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

/// The page size of `limit` (0 = the default of 20).
pub(super) fn page_size(limit: usize) -> SResult<usize> {
    match limit {
        0 => Ok(20),
        n if n > MAX_LIMIT => Err(SearchError::Invalid(format!(
            "limit {n} is above the maximum page size {MAX_LIMIT}"
        ))),
        n => Ok(n),
    }
}
