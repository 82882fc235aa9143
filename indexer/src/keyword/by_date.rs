//! Records in date order, for look-ups: one page of the records a filter matches, sorted by
//! their date on one axis, without sorting all of them.
//!
//! The order: by date then record id, records without a value on the axis last (by id);
//! newest first reverses the dated records (date and id) and still puts the undated last. A
//! page is found in one pass over the matching documents: each segment keeps its best
//! `offset + limit` documents by (date, id ordinal) in a bounded heap (a segment's id
//! ordinals sort as its ids do), only those are turned into ids, and the segments' survivors
//! are merged by (date, id). Sorting every match and turning every one into an id took 72 ms
//! for 66,502 records at 100k (benches/README.md).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use tantivy::collector::{Collector, DocSetCollector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use super::{KResult, KeywordIndex};
use crate::filter::RecordFilter;
use crate::record::DateAxis;

/// A page of a look-up: how many records match, and the page's ids in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatePage {
    /// Records matching the filter.
    pub total: usize,
    /// The ids at `offset..offset + limit` of the date order.
    pub ids: Vec<String>,
}

impl KeywordIndex {
    /// The ids at `offset..offset + limit` of the records matching `filter` in date order on
    /// `axis` (see the module documentation; `descending` = newest first), and how many match.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn page_by_date(
        &self,
        filter: &RecordFilter,
        axis: DateAxis,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> KResult<DatePage> {
        let searcher = self.reader.searcher();
        let q = self.filter_query(filter)?;
        let keep = offset.saturating_add(limit);
        let segments = searcher.search(
            &*q,
            &BestByDate {
                axis,
                descending,
                keep,
            },
        )?;
        let total = segments.iter().map(|s| s.matched).sum();
        let mut addrs = Vec::new();
        let mut dates = Vec::new();
        for s in segments {
            for key in s.best {
                addrs.push(DocAddress::new(s.segment, key.doc));
                dates.push(key.date);
            }
        }
        let mut rows: Vec<(Option<i64>, String)> = dates
            .into_iter()
            .zip(self.ids.ids_of(&searcher, &addrs)?)
            .collect();
        rows.sort_by(|a, b| date_order(a, b, descending));
        Ok(DatePage {
            total,
            ids: rows
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(_, id)| id)
                .collect(),
        })
    }

    /// Every record matching `filter`, as `(date on axis, id)`, in date order (ascending; see
    /// the module documentation). The straightforward form of [`KeywordIndex::page_by_date`]
    /// (every match sorted): its reference in tests and its baseline in the search bench.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn sorted_by_date(
        &self,
        filter: &RecordFilter,
        axis: DateAxis,
    ) -> KResult<Vec<(Option<i64>, String)>> {
        let searcher = self.reader.searcher();
        let q = self.filter_query(filter)?;
        let docs: Vec<DocAddress> = searcher
            .search(&*q, &DocSetCollector)?
            .into_iter()
            .collect();
        let mut columns = HashMap::new();
        let mut dates = Vec::with_capacity(docs.len());
        for addr in &docs {
            let col = match columns.entry(addr.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(
                    searcher
                        .segment_reader(addr.segment_ord)
                        .fast_fields()
                        .date(axis.name())?,
                ),
            };
            dates.push(col.first(addr.doc_id).map(|d| d.into_timestamp_secs()));
        }
        let mut out: Vec<(Option<i64>, String)> = dates
            .into_iter()
            .zip(self.ids.ids_of(&searcher, &docs)?)
            .collect();
        out.sort_by(|a, b| date_order(a, b, false));
        Ok(out)
    }
}

/// The look-up order of two `(date, id)` rows.
fn date_order(a: &(Option<i64>, String), b: &(Option<i64>, String), descending: bool) -> Ordering {
    match (a.0, b.0) {
        (Some(x), Some(y)) if descending => y.cmp(&x).then_with(|| b.1.cmp(&a.1)),
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.1.cmp(&b.1)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    }
}

/// A document's place in the look-up order within its segment: smaller comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SegmentKey {
    /// Undated documents come last.
    undated: bool,
    /// The date, bit-inverted when newest comes first (`!x` reverses the order of `i64`s
    /// without overflow).
    date_key: i64,
    /// The id's term ordinal, bit-inverted for dated documents when newest comes first.
    ord_key: u64,
    /// The document (unique within the segment, so keys never tie).
    doc: DocId,
    /// The date itself, in seconds.
    date: Option<i64>,
}

/// Collects each segment's best `keep` documents in look-up order.
struct BestByDate {
    axis: DateAxis,
    descending: bool,
    keep: usize,
}

/// One segment's survivors.
struct SegmentBest {
    segment: SegmentOrdinal,
    matched: usize,
    best: Vec<SegmentKey>,
}

struct SegmentBestCollector {
    segment: SegmentOrdinal,
    dates: Column<tantivy::DateTime>,
    ids: StrColumn,
    descending: bool,
    keep: usize,
    matched: usize,
    /// A max-heap of the best `keep` so far: its top is the first to go.
    heap: BinaryHeap<SegmentKey>,
}

impl Collector for BestByDate {
    type Fruit = Vec<SegmentBest>;
    type Child = SegmentBestCollector;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        let fast = reader.fast_fields();
        let ids = fast.str("id")?.ok_or_else(|| {
            tantivy::TantivyError::SchemaError(format!("segment {segment} has no id column"))
        })?;
        Ok(SegmentBestCollector {
            segment,
            dates: fast.date(self.axis.name())?,
            ids,
            descending: self.descending,
            keep: self.keep,
            matched: 0,
            heap: BinaryHeap::with_capacity(self.keep.min(4096) + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentBest>) -> tantivy::Result<Self::Fruit> {
        Ok(fruits)
    }
}

impl SegmentCollector for SegmentBestCollector {
    type Fruit = SegmentBest;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.matched += 1;
        if self.keep == 0 {
            return;
        }
        let date = self.dates.first(doc).map(|d| d.into_timestamp_secs());
        let ord = self.ids.term_ords(doc).next().unwrap_or(0);
        let key = match date {
            Some(d) if self.descending => SegmentKey {
                undated: false,
                date_key: !d,
                ord_key: !ord,
                doc,
                date,
            },
            Some(d) => SegmentKey {
                undated: false,
                date_key: d,
                ord_key: ord,
                doc,
                date,
            },
            None => SegmentKey {
                undated: true,
                date_key: 0,
                ord_key: ord,
                doc,
                date,
            },
        };
        if self.heap.len() < self.keep {
            self.heap.push(key);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && key < *worst
        {
            *worst = key;
        }
    }

    fn harvest(self) -> SegmentBest {
        SegmentBest {
            segment: self.segment,
            matched: self.matched,
            best: self.heap.into_vec(),
        }
    }
}
