//! Record ids by document, decoded once per segment.
//!
//! Every ranked list of the keyword index (BM25 hits, a look-up's page, a filter's matches)
//! ends by turning tantivy document addresses into record ids. The `id` fast column keeps them
//! in a zstd-compressed term dictionary: resolving a few hundred scattered ordinals
//! decompressed a dictionary block for almost each of them (with a fresh zstd context each
//! time), which was most of a 500-deep BM25 search's time (a profile of the serve bench at
//! 100k records: 7.2 % of the server's CPU in `ids_of` against 8.7 % for the whole BM25
//! search). A segment is immutable, so its dictionary is decoded once into one string arena
//! indexed by term ordinal (about 20 bytes a record: 20 MB at 1M records) and kept until the
//! segment leaves the index (a merge or a deletion's compaction replaces it).

use tantivy::DocAddress;
use tantivy::columnar::StrColumn;

use super::per_segment::PerSegment;
use super::{KResult, KeywordError};

/// The decoded `id` dictionaries of the segments in use.
#[derive(Default)]
pub(crate) struct IdTables {
    tables: PerSegment<(), IdTable>,
}

/// One segment's record ids by term ordinal: `arena[ends[o - 1]..ends[o]]`.
struct IdTable {
    arena: String,
    ends: Vec<usize>,
}

/// A segment whose `id` column cannot be read as record ids.
fn corrupt(segment: u32, reason: impl Into<String>) -> KeywordError {
    KeywordError::Corrupt {
        id: format!("segment {segment}"),
        reason: reason.into(),
    }
}

impl IdTable {
    fn build(col: &StrColumn, segment: u32) -> KResult<Self> {
        let dictionary = col.dictionary();
        let mut stream = dictionary
            .stream()
            .map_err(|e| KeywordError::Tantivy(e.into()))?;
        let terms = dictionary.num_terms();
        let mut table = IdTable {
            arena: String::with_capacity(terms * crate::record::RECORD_ID_LEN),
            ends: Vec::with_capacity(terms),
        };
        while stream.advance() {
            // Ordinals are the positions in the sorted stream.
            debug_assert_eq!(stream.term_ord() as usize, table.ends.len());
            let id = std::str::from_utf8(stream.key())
                .map_err(|_| corrupt(segment, "a record id that is not UTF-8"))?;
            table.arena.push_str(id);
            table.ends.push(table.arena.len());
        }
        Ok(table)
    }

    fn get(&self, ord: u64) -> Option<&str> {
        let o = usize::try_from(ord).ok()?;
        let end = *self.ends.get(o)?;
        let start = if o == 0 { 0 } else { self.ends[o - 1] };
        Some(&self.arena[start..end])
    }
}

impl IdTables {
    /// The record ids of the documents at `addrs`, in the same order, from the `id` fast
    /// column; a document without an id gets "".
    pub(crate) fn ids_of(
        &self,
        searcher: &tantivy::Searcher,
        addrs: &[DocAddress],
    ) -> KResult<Vec<String>> {
        let mut out = vec![String::new(); addrs.len()];
        let mut by_segment: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for (i, addr) in addrs.iter().enumerate() {
            by_segment.entry(addr.segment_ord).or_default().push(i);
        }
        for (segment, positions) in by_segment {
            let col = searcher
                .segment_reader(segment)
                .fast_fields()
                .str("id")?
                .ok_or_else(|| corrupt(segment, "no id column"))?;
            // Decoded once per segment, kept while the segment is in use.
            let table = self
                .tables
                .get(searcher, segment, (), |_| IdTable::build(&col, segment))?;
            for i in positions {
                if let Some(ord) = col.term_ords(addrs[i].doc_id).next() {
                    let id = table.get(ord).ok_or_else(|| {
                        corrupt(segment, format!("id ordinal {ord} beyond its dictionary"))
                    })?;
                    id.clone_into(&mut out[i]);
                }
            }
        }
        Ok(out)
    }

    /// How many segments' tables are kept (for tests).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.tables.kept()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::filter::RecordFilter;
    use crate::keyword::{KeywordIndex, test_record};

    fn ids(range: impl IntoIterator<Item = u32>) -> BTreeSet<String> {
        range.into_iter().map(|n| format!("{n:016x}")).collect()
    }

    #[test]
    fn ids_stay_right_across_commits_deletions_and_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let kw = KeywordIndex::open(dir.path()).unwrap();
        let mut w = kw.writer().unwrap();
        // Three commits: three segments (until the merge policy joins them).
        for batch in 0..3u32 {
            for n in batch * 40..(batch + 1) * 40 {
                w.upsert(&test_record(n, "fleet", None), "").unwrap();
            }
            w.commit().unwrap();
            kw.reload().unwrap();
            assert_eq!(
                kw.filter_ids(&RecordFilter::default()).unwrap(),
                ids(0..(batch + 1) * 40)
            );
        }
        // Deleted records leave; rewritten ones move to a new segment with their new dataset.
        for n in 0..10 {
            w.delete(&format!("{n:016x}"));
        }
        for n in 100..110 {
            w.upsert(&test_record(n, "harbour", None), "").unwrap();
        }
        w.commit().unwrap();
        kw.reload().unwrap();
        assert_eq!(
            kw.filter_ids(&RecordFilter::default()).unwrap(),
            ids(10..120)
        );
        let harbour = RecordFilter {
            datasets: vec!["harbour".into()],
            ..RecordFilter::default()
        };
        assert_eq!(kw.filter_ids(&harbour).unwrap(), ids(100..110));
        let hits = kw.search("car", &harbour, 50).unwrap();
        let found: BTreeSet<String> = hits.into_iter().map(|h| h.id).collect();
        assert_eq!(
            found,
            ids(100..110),
            "BM25 hits resolve through the same tables"
        );
        // Only segments the index still holds keep a table.
        let live = kw.reader.searcher().segment_readers().len();
        assert!(
            kw.ids.kept() <= live,
            "{} tables for {live} segments",
            kw.ids.kept()
        );
    }
}
