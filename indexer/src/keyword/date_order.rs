//! Each segment's dated documents in look-up order on one axis, sorted once and kept.
//!
//! An auditor's look-up is most often a date range on the axis it is sorted by ("captured
//! since 2020, newest first"). Tantivy answers a range over a date column by decoding every
//! value of the column (the dates are bit-packed in document order), so counting the matches
//! and finding the page each read the whole column: at 1M records about 1.3 ms each, most of
//! such a look-up's time (benches/README.md). A segment is immutable, so its dated documents
//! are sorted once by (date, id ordinal), the look-up order within a segment, into two arrays
//! (12 bytes a dated document: 12 MB an axis at 1M records), built on the first look-up that
//! needs them and kept until the segment leaves the index (`per_segment.rs`, as the id tables
//! are). A range is then two binary
//! searches, its page the documents at one end of it. Deleted documents stay in the arrays
//! and are skipped (a segment's deletions change; its documents do not).

use tantivy::{DocId, Searcher, SegmentOrdinal, SegmentReader};

use super::KResult;
use super::by_date::SegmentBest;
use super::per_segment::PerSegment;
use crate::record::DateAxis;

/// The sorted segments in use, by segment and axis (its place in [`DateAxis::ALL`]).
#[derive(Default)]
pub(crate) struct DateOrders {
    orders: PerSegment<usize, DateOrder>,
}

/// One segment's dated documents on one axis, by (date, id ordinal).
struct DateOrder {
    /// Seconds, ascending.
    dates: Vec<i64>,
    /// The document at each place.
    docs: Vec<DocId>,
}

impl DateOrder {
    fn build(reader: &SegmentReader, axis: DateAxis) -> KResult<Self> {
        let fast = reader.fast_fields();
        let column = fast.date(axis.name())?;
        let ids = fast.str("id")?;
        let mut rows: Vec<(i64, u64, DocId)> =
            Vec::with_capacity(column.values.num_vals() as usize);
        for doc in 0..reader.max_doc() {
            if let Some(date) = column.first(doc) {
                // The id's ordinal orders a segment's documents as their ids do.
                let ord = ids
                    .as_ref()
                    .and_then(|ids| ids.term_ords(doc).next())
                    .unwrap_or(0);
                rows.push((date.into_timestamp_secs(), ord, doc));
            }
        }
        rows.sort_unstable();
        Ok(DateOrder {
            dates: rows.iter().map(|r| r.0).collect(),
            docs: rows.iter().map(|r| r.2).collect(),
        })
    }
}

impl DateOrders {
    /// Each segment's live documents dated in `[lo, hi]` (seconds) on `axis`: how many, and
    /// the first `keep` of them in look-up order (newest first when `descending`; within a
    /// date by id, reversed with it), as the look-up's collector gives them.
    pub(crate) fn best(
        &self,
        searcher: &Searcher,
        axis: DateAxis,
        (lo, hi): (i64, i64),
        descending: bool,
        keep: usize,
    ) -> KResult<Vec<SegmentBest>> {
        let mut out = Vec::with_capacity(searcher.segment_readers().len());
        for (segment, reader) in searcher.segment_readers().iter().enumerate() {
            let segment = segment as SegmentOrdinal;
            let order = self
                .orders
                .get(searcher, segment, axis_index(axis), |reader| {
                    DateOrder::build(reader, axis)
                })?;
            let from = order.dates.partition_point(|&d| d < lo);
            let to = order.dates.partition_point(|&d| d <= hi).max(from);
            let places = from..to;
            let alive = reader.alive_bitset();
            let live = |&p: &usize| alive.is_none_or(|a| a.is_alive(order.docs[p]));
            let matched = match alive {
                None => places.len(),
                Some(_) => places.clone().filter(live).count(),
            };
            let pick = |p: usize| (order.docs[p], Some(order.dates[p]));
            let best: Vec<(DocId, Option<i64>)> = if descending {
                places.rev().filter(live).take(keep).map(pick).collect()
            } else {
                places.filter(live).take(keep).map(pick).collect()
            };
            out.push(SegmentBest {
                segment,
                matched,
                best,
            });
        }
        Ok(out)
    }

    /// How many segment orders are kept (for tests).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.orders.kept()
    }
}

fn axis_index(axis: DateAxis) -> usize {
    DateAxis::ALL
        .iter()
        .position(|a| *a == axis)
        .expect("every axis is in ALL")
}
