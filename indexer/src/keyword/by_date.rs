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
//! [`KeywordIndex::page_by_date`]), so a first page does not visit every match. A filter that
//! is only a date range on the axis the look-up is sorted by is counted and paged from each
//! segment's documents sorted by that date instead (`date_order.rs`: at 1M records a first
//! page of two thirds of the library in about 0.05 ms against 2.6 ms).

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
    /// The first look-up of a date range on its own axis sorts each segment's dates on that
    /// axis (about 0.17 s at 1M records), kept for later ones.
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
        let keep = offset.saturating_add(limit);
        // A range on the order's own axis and nothing else ("captured since 2020, newest
        // first"): counted and paged from each segment's documents sorted by that date
        // (`date_order.rs`), without decoding the date column.
        if window
            && let Some((on, lo, hi)) = one_axis_range(filter)
            && on == axis
        {
            let segments = self
                .dates
                .best(&searcher, axis, (lo, hi), descending, keep)?;
            let total = segments.iter().map(|s| s.matched).sum();
            let visited = segments.iter().map(|s| s.best.len()).sum();
            let page = self.page_of(&searcher, segments, total, descending, offset, limit)?;
            return Ok((page, visited));
        }
        let q = self.filter_query(filter)?;
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
        let page = self.page_of(&searcher, segments, total, descending, offset, limit)?;
        Ok((page, visited))
    }

    /// The page at `offset..offset + limit` of the look-up order from each segment's best
    /// documents, `total` matching in all.
    fn page_of(
        &self,
        searcher: &tantivy::Searcher,
        segments: Vec<SegmentBest>,
        total: usize,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> KResult<DatePage> {
        let mut addrs = Vec::new();
        let mut dates = Vec::new();
        for s in segments {
            for (doc, date) in s.best {
                addrs.push(DocAddress::new(s.segment, doc));
                dates.push(date);
            }
        }
        let mut rows: Vec<(Option<i64>, String)> = dates
            .into_iter()
            .zip(self.ids.ids_of(searcher, &addrs)?)
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
        Ok(page)
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

/// A filter that is date ranges on one axis and nothing else, as that axis and the inclusive
/// bounds (seconds) of the ranges intersected, each end as [`KeywordIndex::filter_query`]
/// bounds it (an open end still asks for a date: the earliest or latest stored one), in
/// tantivy's range as the index stores dates; `None` for any other filter.
fn one_axis_range(filter: &RecordFilter) -> Option<(DateAxis, i64, i64)> {
    let axis = filter.dates.first()?.axis;
    let only_dates = RecordFilter {
        dates: Vec::new(),
        ..filter.clone()
    }
    .is_empty();
    if !only_dates || filter.dates.iter().any(|r| r.axis != axis) {
        return None;
    }
    let mut lo = super::schema::MIN_DATE_SECS;
    let mut hi = i64::MAX;
    for range in &filter.dates {
        if let Some(after) = range.after {
            lo = lo.max(after.timestamp());
        }
        if let Some(before) = range.before {
            hi = hi.min(before.timestamp());
        }
    }
    let clamped = |secs| super::schema::tantivy_date(secs).into_timestamp_secs();
    Some((axis, clamped(lo), clamped(hi)))
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

/// One segment's survivors: how many documents matched, and the best of them in look-up
/// order with their dates (seconds).
pub(super) struct SegmentBest {
    pub(super) segment: SegmentOrdinal,
    pub(super) matched: usize,
    pub(super) best: Vec<(DocId, Option<i64>)>,
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
            best: self
                .heap
                .into_vec()
                .into_iter()
                .map(|key| (key.doc, key.date))
                .collect(),
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

    /// A look-up of a date range on its own axis, answered from the segments' sorted dates,
    /// gives the page and count the one pass over every match gives: open and closed ends,
    /// ranges intersected, a reversed range, one instant, bounds past either end of tantivy's
    /// range, either order, pages at either end and inside, before and after deletions; the
    /// count is the query's. A filter with another clause or on a second axis is not
    /// answered so.
    #[test]
    fn a_date_range_on_its_own_axis_is_paged_from_sorted_dates_as_the_one_pass_pages_it() {
        let dir = tempfile::tempdir().unwrap();
        let kw = index(dir.path());
        let at = |y, m, d| Some(Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap());
        let range = |axis, after, before| DateRange {
            axis,
            after,
            before,
        };
        let c = DateAxis::Captured;
        let cases: Vec<Vec<DateRange>> = vec![
            vec![range(c, at(2021, 2, 1), None)],
            vec![range(c, None, at(2021, 2, 1))],
            vec![range(c, None, None)],
            vec![range(c, at(2021, 2, 1), at(2021, 1, 1))],
            vec![
                range(c, at(2021, 2, 1), None),
                range(c, None, at(2021, 3, 15)),
            ],
            vec![range(c, at(2021, 1, 1), at(2021, 1, 1))],
            vec![range(c, at(1500, 1, 1), at(2900, 1, 1))],
            vec![range(c, at(2900, 1, 1), at(2950, 1, 1))],
        ];
        let check = |kw: &KeywordIndex| -> Vec<usize> {
            let mut totals = Vec::new();
            for dates in &cases {
                let filter = RecordFilter {
                    dates: dates.clone(),
                    ..RecordFilter::default()
                };
                assert!(one_axis_range(&filter).is_some(), "{filter:?}");
                let q = kw.filter_query(&filter).unwrap();
                let count = kw
                    .reader
                    .searcher()
                    .search(&*q, &tantivy::collector::Count)
                    .unwrap();
                for descending in [true, false] {
                    for (offset, limit) in [(0, 20), (20, 20), (0, 1), (300, 50), (1_990, 20)] {
                        let sorted = kw
                            .date_page(&filter, c, descending, offset, limit, true)
                            .unwrap()
                            .0;
                        let (one_pass, _) = kw
                            .date_page(&filter, c, descending, offset, limit, false)
                            .unwrap();
                        let case = format!("{filter:?} desc {descending} {offset}+{limit}");
                        assert_eq!(sorted, one_pass, "{case}");
                        assert_eq!(sorted.total, count, "{case}");
                    }
                }
                totals.push(count);
            }
            totals
        };
        let before = check(&kw);
        assert_eq!(before[2], 2_000 - 40, "every dated record");
        assert_eq!(before[3], 0, "a reversed range");
        assert_eq!(before[5], 1, "the first record, captured at midnight");
        assert_eq!(before[6], before[2]);
        assert!(before[0] > 0 && before[0] < before[2]);
        let mut writer = kw.writer().unwrap();
        for n in (5..2_000).step_by(13) {
            writer.delete(&format!("{n:016x}"));
        }
        writer.commit().unwrap();
        kw.reload().unwrap();
        let after = check(&kw);
        assert!(after[2] < before[2], "deleted records are not counted");
        // Orders are kept for the segments in use only (one axis here).
        let live = kw.reader.searcher().segment_readers().len();
        assert!(
            kw.dates.kept() <= live,
            "{} orders for {live} segments",
            kw.dates.kept()
        );
        for filter in [
            RecordFilter {
                datasets: vec!["rare".into()],
                dates: vec![range(c, at(2021, 2, 1), None)],
                ..RecordFilter::default()
            },
            RecordFilter {
                dates: vec![
                    range(c, at(2021, 2, 1), None),
                    range(DateAxis::Ingested, None, None),
                ],
                ..RecordFilter::default()
            },
        ] {
            assert!(one_axis_range(&filter).is_none(), "{filter:?}");
        }
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
