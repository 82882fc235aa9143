//! Something derived from one segment, made once and kept while the segment is in use.
//!
//! A segment is immutable, so what is computed from its columns (the decoded id dictionary of
//! `ids.rs`, the date orders of `date_order.rs`) stays right until tantivy drops the segment
//! (a merge, or a deletion's compaction). Deletions change a segment's alive set, not its
//! documents: what is kept here must be read with the searcher's alive set.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::index::SegmentId;
use tantivy::{Searcher, SegmentOrdinal, SegmentReader};

use super::KResult;

/// Values by segment and `K` (one per segment where `K` is `()`).
pub(crate) struct PerSegment<K, V> {
    kept: Mutex<HashMap<(SegmentId, K), Arc<V>>>,
}

impl<K, V> Default for PerSegment<K, V> {
    fn default() -> Self {
        PerSegment {
            kept: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Copy + Eq + Hash, V> PerSegment<K, V> {
    /// The value of `key` for segment `segment` of `searcher`, made by `make` now when it is
    /// not kept yet. Values of segments `searcher` no longer holds are dropped then. Made under
    /// the lock: callers that need the same segment wait for it instead of making it again.
    pub(crate) fn get(
        &self,
        searcher: &Searcher,
        segment: SegmentOrdinal,
        key: K,
        make: impl FnOnce(&SegmentReader) -> KResult<V>,
    ) -> KResult<Arc<V>> {
        let reader = searcher.segment_reader(segment);
        let at = (reader.segment_id(), key);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = kept.get(&at) {
            return Ok(Arc::clone(v));
        }
        let value = Arc::new(make(reader)?);
        let live: Vec<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(SegmentReader::segment_id)
            .collect();
        kept.retain(|(id, _), _| live.contains(id));
        kept.insert(at, Arc::clone(&value));
        Ok(value)
    }

    /// How many values are kept (for tests).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
