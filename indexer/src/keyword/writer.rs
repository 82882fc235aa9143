//! The single writer of the keyword index: [`KeywordWriter`] adds, replaces and deletes
//! record documents (one document per record id: every write deletes the id's term first, in
//! the same commit), commits atomically, and merges segments so deletions are physically gone.

use tantivy::indexer::NoMergePolicy;
use tantivy::schema::Field;
use tantivy::{IndexWriter, TantivyDocument, Term};

use super::KResult;
use super::schema::{Fields, TEXT_WEIGHTS, filename_words, tantivy_date};
use crate::filter::normalize_label;
use crate::record::{DateAxis, Record};

/// Writer heap for one ingest: enough for large batches, small enough for a 2-core box.
pub(super) const WRITER_HEAP: usize = 64 * 1024 * 1024;

/// The single writer of a keyword index. Changes become visible and durable on [`commit`].
///
/// [`commit`]: KeywordWriter::commit
pub struct KeywordWriter {
    pub(super) writer: IndexWriter,
    pub(super) fields: Fields,
}

impl std::fmt::Debug for KeywordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeywordWriter").finish_non_exhaustive()
    }
}

impl KeywordWriter {
    /// Adds or replaces a record. `embedded` is the fingerprint of the model its vectors were
    /// written with, or empty.
    ///
    /// # Errors
    /// tantivy failures.
    pub fn upsert(&mut self, record: &Record, embedded: &str) -> KResult<()> {
        let f = &self.fields;
        self.writer
            .delete_term(Term::from_field_text(f.id, &record.id));
        let mut doc = TantivyDocument::default();
        doc.add_text(f.id, &record.id);
        doc.add_text(f.filename, &record.filename);
        doc.add_text(f.path, &record.path);
        for l in &record.labels {
            doc.add_text(f.label, normalize_label(l));
        }
        add_text(&mut doc, f.text, record);
        doc.add_text(f.dataset, &record.dataset);
        if let Some(s) = &record.source_id {
            doc.add_text(f.source_id, s);
        }
        if let Some(s) = &record.split {
            doc.add_text(f.split, s);
        }
        for a in record.attribute_terms() {
            doc.add_text(f.attr, a);
        }
        doc.add_text(f.fingerprint, record.fingerprint());
        doc.add_text(f.embedded, embedded);
        doc.add_text(
            f.record,
            serde_json::to_string(record).expect("a record always serialises"),
        );
        for (i, axis) in DateAxis::ALL.iter().enumerate() {
            if let Some(d) = axis.get(&record.dates) {
                doc.add_date(f.dates[i], tantivy_date(d.timestamp()));
            }
        }
        self.writer.add_document(doc)?;
        Ok(())
    }

    /// Deletes a record.
    pub fn delete(&mut self, id: &str) {
        self.writer
            .delete_term(Term::from_field_text(self.fields.id, id));
    }

    /// Makes every change since the last commit durable and visible, atomically.
    ///
    /// # Errors
    /// tantivy failures (the index stays as of the previous commit).
    pub fn commit(&mut self) -> KResult<()> {
        self.writer.commit()?;
        Ok(())
    }

    /// Merges every segment into one, so deleted documents are physically removed, then waits
    /// for merge threads to finish. The merges tantivy's merge policy started after earlier
    /// commits end first: merging a segment that a background merge is merging too fails the
    /// merge that ends second ("The segments that were merged could not be found in the
    /// SegmentManager"), which rebuilding a 1M-record index and a deletion after many commits
    /// could hit. The final merge runs on a writer of its own with no merge policy. Call it
    /// after [`KeywordWriter::commit`]: what was not committed is dropped.
    ///
    /// # Errors
    /// tantivy failures.
    pub fn merge_all(self) -> KResult<()> {
        let index = self.writer.index().clone();
        self.writer.wait_merging_threads()?;
        let mut writer: IndexWriter = index.writer_with_num_threads(1, WRITER_HEAP)?;
        writer.set_merge_policy(Box::new(NoMergePolicy));
        let ids = index.searchable_segment_ids()?;
        let deletes = index
            .searchable_segment_metas()?
            .iter()
            .any(tantivy::SegmentMeta::has_deletes);
        if ids.len() > 1 || deletes {
            writer.merge(&ids).wait()?;
        }
        writer.garbage_collect_files().wait()?;
        writer.wait_merging_threads()?;
        Ok(())
    }
}

/// Adds to `doc`'s BM25 text field each part of `record` as many times as [`TEXT_WEIGHTS`]
/// says: the words of its labels and their supercategories, its captions, the words of its
/// file name, its metadata.
fn add_text(doc: &mut TantivyDocument, text: Field, record: &Record) {
    let mut label_words = record.labels.join(" ");
    for s in &record.supercategories {
        label_words.push(' ');
        label_words.push_str(s);
    }
    let mut add = |times: usize, value: &str| {
        for _ in 0..times {
            doc.add_text(text, value);
        }
    };
    add(TEXT_WEIGHTS.labels, &label_words);
    for caption in &record.captions {
        add(TEXT_WEIGHTS.captions, caption);
    }
    add(TEXT_WEIGHTS.filename, &filename_words(&record.path));
    add(TEXT_WEIGHTS.metadata, &record.metadata_text());
}

#[cfg(test)]
mod tests {
    use crate::keyword::{KeywordIndex, test_record};

    /// Many commits leave many segments, and after each commit tantivy's merge policy merges
    /// some of them in the background. `merge_all` still ends with one segment and no deleted
    /// document: a segment merged twice at once fails the merge that ends second ("The
    /// segments that were merged could not be found"), which rebuilding a 1M-record index hit.
    #[test]
    fn merging_everything_after_many_commits_leaves_one_segment() {
        for _ in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let kw = KeywordIndex::open(dir.path()).unwrap();
            let mut writer = kw.writer().unwrap();
            for batch in 0..40u32 {
                for n in batch * 500..(batch + 1) * 500 {
                    writer.upsert(&test_record(n, "fleet", None), "").unwrap();
                }
                writer.commit().unwrap();
            }
            writer.delete(&format!("{:016x}", 3));
            writer.commit().unwrap();
            writer.merge_all().unwrap();
            kw.reload().unwrap();
            assert_eq!(kw.len(), 19_999);
            let searcher = kw.reader.searcher();
            assert_eq!(searcher.segment_readers().len(), 1);
            assert!(searcher.segment_readers()[0].alive_bitset().is_none());
        }
    }
}
