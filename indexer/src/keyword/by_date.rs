//! Records in date order, for look-ups: one page of the records a filter matches, sorted by
//! their date on one axis, without sorting all of them.
//!
//! The order: by date then record id, records without a value on the axis last (by id);
//! newest first reverses the dated records (date and id) and still puts the undated last. A
//! page is found in one pass over the matching documents: each segment keeps its best
//! `offset + limit` documents by (date, id ordinal) in a bounded heap (a segment's id
//! ordinals sort as its ids do), only those are turned into ids, and the segments' survivors
//! are merged by (date, id). Sorting every match and turning every one into an id took 72 ms
//! for 66,502 records at 100k (benches/README.md). A page near either end of the order is
//! looked for among the records dated in a window at that end first (see
//! [`KeywordIndex::page_by_date`]), so a first page does not visit every match.

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
        self.date_page(filter, axis, descending, offset, limit, true)
            .map(|(page, _)| page)
    }

    /// [`KeywordIndex::page_by_date`] without the window: one pass over every matching
    /// document (how look-ups ran before the window). The same page; its baseline in the
    /// search bench.
    ///
    /// # Errors
    /// As [`KeywordIndex::filter_query`].
    pub fn page_by_date_one_pass(
        &self,
        filter: &RecordFilter,
        axis: DateAxis,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> KResult<DatePage> {
        self.date_page(filter, axis, descending, offset, limit, false)
            .map(|(page, _)| page)
    }

    /// The page, and how many matching documents the pass that found it visited.
    fn date_page(
        &self,
        filter: &RecordFilter,
        axis: DateAxis,
        descending: bool,
        offset: usize,
        limit: usize,
        window: bool,
    ) -> KResult<(DatePage, usize)> {
        let searcher = self.reader.searcher();
        let q = self.filter_query(filter)?;
        let keep = offset.saturating_add(limit);
        // The window needs the number of matches up front; the one pass counts them as it
        // collects (so it is not asked for twice).
        let counted = if window {
            Some(q.count(&searcher)?)
        } else {
            None
        };
        let best = |q: &dyn tantivy::query::Query| {
            searcher.search(
                q,
                &BestByDate {
                    axis,
                    descending,
                    keep,
                },
            )
        };
        // The page lies among the newest (oldest) records: look among the matches dated in a
        // window at that end of the library's dates (within the filter's bounds on the axis)
        // first, sized for about four times the records the page needs if dates were spread
        // evenly, eight times wider each time it holds fewer than `keep` matches. Every match
        // outside a window is dated before (after) every match inside it, so a window holding
        // `keep` matches holds the page. Only the window's near edge is new (its far side is
        // the filter's own bound, or open), so it is right whatever the column's bounds say.
        // The whole match set is collected only when the window would cover the span, which
        // also brings in the undated records (last in the order).
        let mut segments = None;
        if let Some(total) = counted
            && keep > 0
            && keep < total
            && let Some((first, last)) = self.date_span(&searcher, axis)?
        {
            // The filter's own bounds on the axis (its ranges on it intersected) narrow the
            // span the window is sized in, and the window is one range with them, so the
            // axis's column is scanned once per window, not once per range.
            // (Option's order puts None first: `max` is the latest lower bound.)
            let earliest = |a: Option<_>, b: Option<_>| match (a, b) {
                (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                (a, b) => a.or(b),
            };
            let (mut lo, mut hi) = (None, None);
            for range in filter.dates.iter().filter(|r| r.axis == axis) {
                lo = lo.max(range.after);
                hi = earliest(hi, range.before);
            }
            let first = lo.map_or(first, |d| first.max(d.timestamp()));
            let last = hi.map_or(last, |d| last.min(d.timestamp()));
            let mut others = filter.clone();
            others.dates.retain(|r| r.axis != axis);
            let span = last.saturating_sub(first).max(0);
            let mut width = ((span as f64) * (4.0 * keep as f64 / total as f64)).ceil() as i64;
            while width < span {
                let edge = chrono::DateTime::from_timestamp(
                    if descending {
                        last - width
                    } else {
                        first + width
                    },
                    0,
                );
                let mut windowed = others.clone();
                windowed.dates.push(crate::filter::DateRange {
                    axis,
                    after: if descending { lo.max(edge) } else { lo },
                    before: if descending { hi } else { earliest(hi, edge) },
                });
                let found = best(&*self.filter_query(&windowed)?)?;
                if found.iter().map(|s| s.matched).sum::<usize>() >= keep {
                    segments = Some(found);
                    break;
                }
                width = width.saturating_mul(8).max(1);
            }
        }
        let segments = match segments {
            Some(s) => s,
            None => best(&*q)?,
        };
        let visited = segments.iter().map(|s| s.matched).sum();
        let total = counted.unwrap_or(visited);
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
        let page = DatePage {
            total,
            ids: rows
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(_, id)| id)
                .collect(),
        };
        Ok((page, visited))
    }

    /// The earliest and latest date on `axis` in the index's columns (seconds), or `None`
    /// when no document has one. Deleted documents may widen it.
    fn date_span(
        &self,
        searcher: &tantivy::Searcher,
        axis: DateAxis,
    ) -> KResult<Option<(i64, i64)>> {
        let mut span: Option<(i64, i64)> = None;
        for reader in searcher.segment_readers() {
            let column = reader.fast_fields().date(axis.name())?;
            if column.values.num_vals() == 0 {
                continue;
            }
            let (lo, hi) = (
                column.min_value().into_timestamp_secs(),
                column.max_value().into_timestamp_secs(),
            );
            span = Some(span.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
        Ok(span)
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
    /// Dates of the block being collected (reused between blocks).
    block: Vec<Option<tantivy::DateTime>>,
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
            block: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentBest>) -> tantivy::Result<Self::Fruit> {
        Ok(fruits)
    }
}

impl SegmentBestCollector {
    /// Offers one matching document with its date to the heap. The id's ordinal (a column
    /// read) is looked at only when the date alone does not rule the document out: once the
    /// heap is full, a document dated after (before, newest first) the worst kept one cannot
    /// enter, and at 1M records almost every match is such a one.
    fn offer(&mut self, doc: DocId, date: Option<i64>) {
        let (undated, date_key) = match date {
            Some(d) if self.descending => (false, !d),
            Some(d) => (false, d),
            None => (true, 0),
        };
        if self.heap.len() >= self.keep
            && let Some(worst) = self.heap.peek()
            && (undated, date_key) > (worst.undated, worst.date_key)
        {
            return;
        }
        let ord = self.ids.term_ords(doc).next().unwrap_or(0);
        let key = SegmentKey {
            undated,
            date_key,
            ord_key: if date.is_some() && self.descending {
                !ord
            } else {
                ord
            },
            doc,
            date,
        };
        if self.heap.len() < self.keep {
            self.heap.push(key);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && key < *worst
        {
            *worst = key;
        }
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
        self.offer(doc, date);
    }

    /// A block of matches (tantivy hands a segment without deletions over in blocks): the
    /// dates are read from the column in one call.
    fn collect_block(&mut self, docs: &[DocId]) {
        self.matched += docs.len();
        if self.keep == 0 {
            return;
        }
        let mut dates = std::mem::take(&mut self.block);
        dates.clear();
        dates.resize(docs.len(), None);
        self.dates.first_vals(docs, &mut dates);
        for (&doc, date) in docs.iter().zip(&dates) {
            self.offer(doc, date.map(|d| d.into_timestamp_secs()));
        }
        self.block = dates;
    }

    fn harvest(self) -> SegmentBest {
        SegmentBest {
            segment: self.segment,
            matched: self.matched,
            best: self.heap.into_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::filter::{DateRange, RecordFilter};
    use crate::keyword::test_record;

    /// 2,000 records captured an hour apart (every 50th undated), in two segments, with
    /// every tenth in dataset "rare".
    fn index(dir: &std::path::Path) -> KeywordIndex {
        let keyword = KeywordIndex::open(dir).unwrap();
        let start = Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap();
        for half in [0u32..1_000, 1_000..2_000] {
            let mut writer = keyword.writer().unwrap();
            for n in half {
                let dataset = if n % 10 == 0 { "rare" } else { "fleet" };
                let mut r = test_record(n, dataset, None);
                r.dates.captured =
                    (n % 50 != 7).then(|| start + chrono::Duration::hours(i64::from(n)));
                writer.upsert(&r, "").unwrap();
            }
            writer.commit().unwrap();
        }
        keyword.reload().unwrap();
        keyword
    }

    #[test]
    fn a_page_at_either_end_is_found_in_a_window_and_equals_the_one_pass_page() {
        let dir = tempfile::tempdir().unwrap();
        let kw = index(dir.path());
        let rare = RecordFilter {
            datasets: vec!["rare".into()],
            ..RecordFilter::default()
        };
        let since = RecordFilter {
            dates: vec![DateRange {
                axis: DateAxis::Captured,
                after: Some(Utc.with_ymd_and_hms(2021, 2, 1, 0, 0, 0).unwrap()),
                before: None,
            }],
            ..RecordFilter::default()
        };
        // Two ranges on the axis (intersected): 1 February to 15 March.
        let mut between = since.clone();
        between.dates.push(DateRange {
            axis: DateAxis::Captured,
            after: None,
            before: Some(Utc.with_ymd_and_hms(2021, 3, 15, 0, 0, 0).unwrap()),
        });
        for filter in [RecordFilter::default(), rare, since, between] {
            for descending in [true, false] {
                for (offset, limit) in [(0, 20), (20, 20), (0, 1), (100, 50), (1_990, 20)] {
                    let (page, visited) = kw
                        .date_page(&filter, DateAxis::Captured, descending, offset, limit, true)
                        .unwrap();
                    let (one_pass, all) = kw
                        .date_page(
                            &filter,
                            DateAxis::Captured,
                            descending,
                            offset,
                            limit,
                            false,
                        )
                        .unwrap();
                    let case = format!("{filter:?} desc {descending} {offset}+{limit}");
                    assert_eq!(page, one_pass, "{case}");
                    assert_eq!(all, page.total, "one pass visits every match: {case}");
                    if (offset + limit) * 8 <= page.total {
                        // A page near the end visits a window's matches, not every match.
                        assert!(
                            visited < page.total,
                            "visited {visited} of {}: {case}",
                            page.total
                        );
                        assert!(visited >= offset + limit, "{case}");
                    }
                }
            }
        }
        // Pages past the dated records reach the undated ones (last in either order).
        let (page, _) = kw
            .date_page(
                &RecordFilter::default(),
                DateAxis::Captured,
                true,
                1_950,
                50,
                true,
            )
            .unwrap();
        assert_eq!(page.ids.len(), 50);
        assert_eq!(page.ids.last(), Some(&format!("{:016x}", 1_957)));
    }
}
