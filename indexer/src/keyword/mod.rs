//! The keyword index: which images are labelled "cat", captioned "at night", named `IMG_01*`?
//!
//! A tantivy index with one document per [`Record`]. It is the library's record of truth:
//! the full record is stored as JSON, every filterable attribute is an exact (raw) field with a
//! fast column, and labels, captions, file names and metadata are also tokenised (English
//! stemming) for BM25. Queries are built from terms, never from tantivy's query parser, so user
//! text cannot inject query syntax.
//!
//! Invariants: one document per record id (every write deletes the id's term first, in the same
//! commit); a commit is atomic, so a crash leaves the index as of the last commit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Datelike, Utc};
use rustc_hash::FxHashMap;
use tantivy::collector::{Count, DocSetCollector, TopDocs};
use tantivy::columnar::Cardinality;
use tantivy::query::{BooleanQuery, EnableScoring, Query, TermQuery, TermSetQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, DocId, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use crate::filter::RecordFilter;
use crate::record::{DateAxis, Record};

mod bm25;
mod by_date;
mod date_order;
mod ids;
mod migrate;
mod per_segment;
mod query;
mod schema;
mod writer;

pub use bm25::{Bm25Walk, FILTER_SAMPLE, PRUNE_FROM_RECORDS_PER_PLACE};
pub use by_date::DatePage;
use schema::{Fields, schema};
pub use writer::KeywordWriter;
use writer::WRITER_HEAP;

/// Errors of the keyword index.
#[derive(Debug, thiserror::Error)]
pub enum KeywordError {
    /// tantivy failed.
    #[error("keyword index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The index directory could not be opened.
    #[error("keyword index at {path}: {source}")]
    Open {
        /// Directory.
        path: String,
        /// Cause.
        source: tantivy::TantivyError,
    },
    /// A stored record could not be read back.
    #[error("keyword index holds a corrupt record {id}: {reason}")]
    Corrupt {
        /// Record id.
        id: String,
        /// Cause.
        reason: String,
    },
    /// A filename pattern that cannot be compiled.
    #[error("invalid filename pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
}

type KResult<T> = Result<T, KeywordError>;

/// What the index knows about a record's state, for change detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocState {
    /// [`Record::fingerprint`] of the stored version.
    pub fingerprint: String,
    /// Fingerprint of the model its vectors were written with; empty when it has none.
    pub embedded: String,
}

/// A BM25 hit.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordHit {
    /// Record id.
    pub id: String,
    /// BM25 score.
    pub score: f32,
}

/// Counts over a filtered set.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct Facets {
    /// Records matched.
    pub total: u64,
    /// Records per label.
    pub labels: BTreeMap<String, u64>,
    /// Records per dataset.
    pub datasets: BTreeMap<String, u64>,
    /// Records per split (absent when no record has one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub splits: BTreeMap<String, u64>,
    /// Records per box attribute, as `key=value` (absent when no box has one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, u64>,
    /// Per time axis (all four named, with no months when nothing matched), records per `YYYY-MM`.
    pub months: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The tantivy index of a library.
pub struct KeywordIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    ids: ids::IdTables,
    dates: date_order::DateOrders,
}

impl std::fmt::Debug for KeywordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeywordIndex").finish_non_exhaustive()
    }
}

impl KeywordIndex {
    /// Opens the index in `dir`, creating it when the directory is empty or missing, and
    /// rebuilding it from its stored records when it was written with another schema (see
    /// `migrate.rs`).
    ///
    /// # Errors
    /// [`KeywordError::Open`] when the directory holds something else or is unreadable.
    pub fn open(dir: &Path) -> KResult<Self> {
        let open_err = |source| KeywordError::Open {
            path: dir.display().to_string(),
            source,
        };
        migrate::recover(dir)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(tantivy::TantivyError::IoError(e.into())))?;
        let (schema, fields) = schema();
        let directory = |dir: &Path| {
            tantivy::directory::MmapDirectory::open(dir)
                .map_err(|e| open_err(tantivy::TantivyError::from(e)))
        };
        let here = directory(dir)?;
        let index = if Index::exists(&here).map_err(|e| open_err(e.into()))? {
            let existing = Index::open(here).map_err(open_err)?;
            if existing.schema() == schema {
                existing
            } else {
                // Written before the schema gained a field: rebuilt from its records.
                migrate::rebuild(dir, existing, &schema, fields)?;
                Index::open(directory(dir)?).map_err(open_err)?
            }
        } else {
            Index::open_or_create(here, schema).map_err(open_err)?
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(open_err)?;
        Ok(Self {
            index,
            reader,
            fields,
            ids: ids::IdTables::default(),
            dates: date_order::DateOrders::default(),
        })
    }

    /// Takes the index's single writer (tantivy locks it: one writer per data dir).
    ///
    /// # Errors
    /// [`KeywordError::Tantivy`] when another process holds the writer.
    pub fn writer(&self) -> KResult<KeywordWriter> {
        let writer = self.index.writer_with_num_threads(1, WRITER_HEAP)?;
        Ok(KeywordWriter {
            writer,
            fields: self.fields,
        })
    }

    /// Sees the latest commit.
    ///
    /// # Errors
    /// tantivy failures.
    pub fn reload(&self) -> KResult<()> {
        Ok(self.reader.reload()?)
    }

    /// What the reader sees, as text that changes whenever the index's content does (its
    /// segments and their deletions): a key for caches derived from the whole index.
    pub fn content_key(&self) -> String {
        format!("{:?}", self.reader.searcher().generation().segments())
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether the index holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The record with this id.
    ///
    /// # Errors
    /// tantivy failures, or a stored record that does not parse.
    pub fn get(&self, id: &str) -> KResult<Option<Record>> {
        let searcher = self.reader.searcher();
        let q = TermQuery::new(
            Term::from_field_text(self.fields.id, id),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(&q, &TopDocs::with_limit(1).order_by_score())?;
        match top.first() {
            Some((_, addr)) => Ok(Some(self.record_at(*addr)?)),
            None => Ok(None),
        }
    }

    /// The records with these ids, in the given order; unknown ids are skipped.
    ///
    /// # Errors
    /// As [`KeywordIndex::get`].
    pub fn get_many(&self, ids: &[String]) -> KResult<Vec<Record>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.get(id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn record_at(&self, addr: DocAddress) -> KResult<Record> {
        let doc: TantivyDocument = self.reader.searcher().doc(addr)?;
        let id = doc
            .get_first(self.fields.id)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let json = doc
            .get_first(self.fields.record)
            .and_then(|v| v.as_str())
            .ok_or_else(|| KeywordError::Corrupt {
                id: id.clone(),
                reason: "no stored record".into(),
            })?;
        serde_json::from_str(json).map_err(|e| KeywordError::Corrupt {
            id,
            reason: e.to_string(),
        })
    }

    /// Every record's change-detection state, by id.
    ///
    /// # Errors
    /// tantivy failures.
    pub fn states(&self) -> KResult<HashMap<String, DocState>> {
        let searcher = self.reader.searcher();
        let mut out = HashMap::new();
        for segment in searcher.segment_readers() {
            let ff = segment.fast_fields();
            let (Some(ids), Some(fps), Some(emb)) =
                (ff.str("id")?, ff.str("fingerprint")?, ff.str("embedded")?)
            else {
                continue;
            };
            for doc in segment.doc_ids_alive() {
                out.insert(
                    first_str(&ids, doc)?,
                    DocState {
                        fingerprint: first_str(&fps, doc)?,
                        embedded: first_str(&emb, doc)?,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Every record's image path (relative to its images root).
    ///
    /// # Errors
    /// tantivy failures.
    pub fn paths(&self) -> KResult<HashSet<String>> {
        let searcher = self.reader.searcher();
        let mut out = HashSet::new();
        for segment in searcher.segment_readers() {
            let Some(paths) = segment.fast_fields().str("path")? else {
                continue;
            };
            for doc in segment.doc_ids_alive() {
                out.insert(first_str(&paths, doc)?);
            }
        }
        Ok(out)
    }

    /// Every record id.
    ///
    /// # Errors
    /// tantivy failures.
    pub fn ids(&self) -> KResult<BTreeSet<String>> {
        Ok(self.states()?.into_keys().collect())
    }

    /// Ids of every record matching the filter.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn filter_ids(&self, filter: &RecordFilter) -> KResult<BTreeSet<String>> {
        let searcher = self.reader.searcher();
        let q = self.filter_query(filter)?;
        let docs = searcher.search(&*q, &DocSetCollector)?;
        let docs: Vec<DocAddress> = docs.into_iter().collect();
        Ok(self.ids.ids_of(&searcher, &docs)?.into_iter().collect())
    }

    /// Number of records matching the filter.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn count(&self, filter: &RecordFilter) -> KResult<u64> {
        let q = self.filter_query(filter)?;
        Ok(self.reader.searcher().search(&*q, &Count)? as u64)
    }

    /// Facet counts over every record matching `filter`.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn facets(&self, filter: &RecordFilter) -> KResult<Facets> {
        let q = self.filter_query(filter)?;
        self.facets_of(&*q)
    }

    /// Facet counts over the records among `ids` that match `filter` (unknown ids count for
    /// nothing, each record counts once however often its id is given): the counts of a
    /// candidate set, such as the records a search ranks, counted as [`KeywordIndex::facets`]
    /// counts the whole filtered set.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn facets_within(&self, filter: &RecordFilter, ids: &[String]) -> KResult<Facets> {
        let within = TermSetQuery::new(
            ids.iter()
                .map(|id| Term::from_field_text(self.fields.id, id)),
        );
        let q = BooleanQuery::intersection(vec![self.filter_query(filter)?, Box::new(within)]);
        self.facets_of(&q)
    }

    /// [`KeywordIndex::facets`] counted record by record (how facets were counted before
    /// session 23: every match collected into a set, each record's values looked up, a month
    /// name formatted per record and axis): the same counts but for the months of axes where
    /// nothing matched; its baseline in the keyword bench.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn facets_record_by_record(&self, filter: &RecordFilter) -> KResult<Facets> {
        let q = self.filter_query(filter)?;
        let searcher = self.reader.searcher();
        let docs = searcher.search(&*q, &DocSetCollector)?;
        let mut by_segment: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for addr in &docs {
            by_segment
                .entry(addr.segment_ord)
                .or_default()
                .push(addr.doc_id);
        }
        let mut facets = Facets {
            total: docs.len() as u64,
            ..Facets::default()
        };
        let mut buf = String::new();
        for (seg, doc_ids) in by_segment {
            let ff = searcher.segment_reader(seg).fast_fields();
            for (name, target) in [
                ("label", &mut facets.labels),
                ("dataset", &mut facets.datasets),
                ("split", &mut facets.splits),
                ("attr", &mut facets.attrs),
            ] {
                let Some(col) = ff.str(name)? else { continue };
                let mut per_ord: HashMap<u64, u64> = HashMap::new();
                for &d in &doc_ids {
                    let mut seen = BTreeSet::new();
                    for ord in col.term_ords(d) {
                        if seen.insert(ord) {
                            *per_ord.entry(ord).or_default() += 1;
                        }
                    }
                }
                for (ord, n) in per_ord {
                    buf.clear();
                    col.ord_to_str(ord, &mut buf)
                        .map_err(|e| KeywordError::Tantivy(e.into()))?;
                    *target.entry(buf.clone()).or_default() += n;
                }
            }
            for axis in DateAxis::ALL {
                let col = ff.date(axis.name())?;
                let months = facets.months.entry(axis.name().to_owned()).or_default();
                for &d in &doc_ids {
                    if let Some(v) = col.first(d)
                        && let Some(t) = DateTime::<Utc>::from_timestamp(v.into_timestamp_secs(), 0)
                    {
                        *months
                            .entry(format!("{:04}-{:02}", t.year(), t.month()))
                            .or_default() += 1;
                    }
                }
            }
        }
        Ok(facets)
    }

    /// The counts of the records `q` matches, read from the fast columns segment by segment:
    /// each string column counted by term ordinal into an array (a record's values counted
    /// once), each date column read in blocks and counted by day, the names of terms and
    /// months made once per segment and per day, not once per record.
    fn facets_of(&self, q: &dyn Query) -> KResult<Facets> {
        let searcher = self.reader.searcher();
        let weight = q.weight(EnableScoring::disabled_from_searcher(&searcher))?;
        // Every time axis is named, with no months when nothing matched.
        let mut facets = Facets {
            months: DateAxis::ALL
                .iter()
                .map(|axis| (axis.name().to_owned(), BTreeMap::new()))
                .collect(),
            ..Facets::default()
        };
        let mut days: Vec<FxHashMap<i64, u64>> = vec![FxHashMap::default(); DateAxis::ALL.len()];
        let mut docs: Vec<DocId> = Vec::new();
        let mut buf = String::new();
        for reader in searcher.segment_readers() {
            docs.clear();
            let alive = reader.alive_bitset();
            weight.for_each_no_score(reader, &mut |batch| {
                docs.extend(
                    batch
                        .iter()
                        .copied()
                        .filter(|&d| alive.is_none_or(|a| a.is_alive(d))),
                );
            })?;
            facets.total += docs.len() as u64;
            let ff = reader.fast_fields();
            for (name, target) in [
                ("label", &mut facets.labels),
                ("dataset", &mut facets.datasets),
                ("split", &mut facets.splits),
                ("attr", &mut facets.attrs),
            ] {
                let Some(col) = ff.str(name)? else { continue };
                let mut per_ord = vec![0u64; col.num_terms()];
                if col.ords().get_cardinality() == Cardinality::Multivalued {
                    let mut ords: Vec<u64> = Vec::new();
                    for &d in &docs {
                        ords.clear();
                        ords.extend(col.term_ords(d));
                        if ords.len() > 1 {
                            ords.sort_unstable();
                            ords.dedup();
                        }
                        for &o in &ords {
                            per_ord[o as usize] += 1;
                        }
                    }
                } else {
                    each_first(col.ords(), &docs, |o| per_ord[o as usize] += 1);
                }
                for (ord, &n) in per_ord.iter().enumerate() {
                    if n > 0 {
                        buf.clear();
                        col.ord_to_str(ord as u64, &mut buf)
                            .map_err(|e| KeywordError::Tantivy(e.into()))?;
                        *target.entry(buf.clone()).or_default() += n;
                    }
                }
            }
            for (axis, by_day) in DateAxis::ALL.iter().zip(&mut days) {
                let col = ff.date(axis.name())?;
                each_first(&col, &docs, |v| {
                    *by_day
                        .entry(v.into_timestamp_secs().div_euclid(86_400))
                        .or_default() += 1;
                });
            }
        }
        for (axis, by_day) in DateAxis::ALL.iter().zip(days) {
            let months = facets.months.entry(axis.name().to_owned()).or_default();
            for (day, n) in by_day {
                if let Some(t) = DateTime::<Utc>::from_timestamp(day * 86_400, 0) {
                    *months
                        .entry(format!("{:04}-{:02}", t.year(), t.month()))
                        .or_default() += n;
                }
            }
        }
        Ok(facets)
    }
}

/// Calls `f` with the first value of `col` of each of `docs` that has one, reading the column
/// a block of documents at a time.
fn each_first<T>(col: &tantivy::columnar::Column<T>, docs: &[DocId], mut f: impl FnMut(T))
where
    T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static,
{
    let mut vals: Vec<Option<T>> = vec![None; 1_024];
    for block in docs.chunks(1_024) {
        let out = &mut vals[..block.len()];
        // `first_vals` leaves the slot of a document without a value as it was.
        out.fill(None);
        col.first_vals(block, out);
        for v in out.iter().flatten() {
            f(*v);
        }
    }
}

/// A small record numbered `n` (id and sha256 from `n`, label `car`), for the keyword index's
/// own tests.
#[cfg(test)]
pub(crate) fn test_record(n: u32, dataset: &str, split: Option<&str>) -> Record {
    serde_json::from_value(serde_json::json!({
        "id": format!("{n:016x}"),
        "filename": format!("img_{n}.jpg"),
        "path": format!("a/img_{n}.jpg"),
        "images_root": "/images",
        "width": 64, "height": 48, "bytes": 100,
        "sha256": format!("{n:064x}"),
        "dataset": dataset,
        "dates": {},
        "labels": ["car"],
        "split": split,
    }))
    .expect("a valid record")
}

/// The first value of a string fast column for `doc` (empty when it has none).
fn first_str(col: &tantivy::columnar::StrColumn, doc: tantivy::DocId) -> KResult<String> {
    let mut s = String::new();
    if let Some(ord) = col.term_ords(doc).next() {
        col.ord_to_str(ord, &mut s)
            .map_err(|e| KeywordError::Tantivy(e.into()))?;
    }
    Ok(s)
}
